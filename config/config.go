// Package config reads and validates Libreswan's ipsec.conf and
// ipsec.secrets files the way Libreswan 5 reads them.
//
// Parsing runs in three steps: the lexer (lex.go) turns each file, with
// its includes, into sections of key=value lines; every value is checked
// against the keyword tables (keywords.go) at the line where it is
// written; then each conn is resolved through also= and %default
// (resolve.go) into a typed Conn with Libreswan's defaults applied. All
// errors are collected, not just the first. The package does no network
// I/O: a DNS name in left= or right= stays a name.
package config

import (
	"net/netip"
	"time"

	"goswan/proposal"
)

// Config is a parsed ipsec.conf.
type Config struct {
	Setup    Setup
	Conns    []*Conn // in file order; conn %default is not one of them
	Warnings []*Diagnostic
	Files    []string // every file read, the main file first
}

// Conn returns the conn named name, or nil.
func (c *Config) Conn(name string) *Conn {
	for _, conn := range c.Conns {
		if conn.Name == name {
			return conn
		}
	}
	return nil
}

// Setup holds the config setup section. Fields not set in the file hold
// Libreswan's defaults; Set records the canonical keywords that were set,
// so that pluto's command line can override only the others.
type Setup struct {
	LogFile          string
	LogTime          bool // default yes
	LogAppend        bool // default yes
	LogIP            bool // default yes
	AuditLog         bool // default yes
	PlutoDebug       []string
	UniqueIDs        bool // default yes
	VirtualPrivate   VirtualPrivate
	KeepAlive        time.Duration // NAT-T keepalive interval, default 20s
	Listen           []netip.Addr
	NHelpers         int // -1 (default): one per CPU; 0: none
	SeedBits         int
	CRLStrict        bool
	CRLCheckInterval time.Duration
	// OCSP (ocsp-enable=, ocsp-strict=, ocsp-uri=, ocsp-timeout=
	// (default 2s), ocsp-method= get or post (default get),
	// ocsp-cache-min-age=, ocsp-cache-max-age=).
	OCSPEnable       bool
	OCSPStrict       bool
	OCSPURI          string
	OCSPTimeout      time.Duration
	OCSPMethod       string
	OCSPCacheMinAge  time.Duration
	OCSPCacheMaxAge  time.Duration
	IKEPort          int    // default 500
	NATIKEPort       int    // default 4500
	ProtoStack       string // xfrm (default), bsdkame, userspace, netstack
	DDoSIKEThreshold int    // default 25000

	// User-space data plane settings (goswan's own keywords), each a
	// space or comma separated list kept as written.
	NetstackSOCKS5  []string
	NetstackForward []string
	NetstackExpose  []string

	Set map[string]bool
}

// DefaultSetup returns the config setup values Libreswan uses when the
// file does not set them.
func DefaultSetup() Setup {
	return Setup{
		LogTime:          true,
		LogAppend:        true,
		LogIP:            true,
		AuditLog:         true,
		UniqueIDs:        true,
		KeepAlive:        20 * time.Second,
		NHelpers:         -1,
		IKEPort:          500,
		NATIKEPort:       4500,
		ProtoStack:       "xfrm",
		DDoSIKEThreshold: 25000,
		OCSPTimeout:      2 * time.Second,
		OCSPMethod:       "get",
		Set:              map[string]bool{},
	}
}

// End is one side (left or right) of a conn.
type End struct {
	// Host is left=/right= as written: an IP address, %any, %any4, %any6,
	// %defaultroute, %INTERFACE or a DNS name (not resolved here).
	Host string
	// Addr is Host when Host is an IP address.
	Addr netip.Addr
	// Subnets is subnet= followed by subnets=; empty means the host
	// itself.
	Subnets   []netip.Prefix
	ID        string // as written; "" when unset
	SourceIP  netip.Addr
	ProtoPort ProtoPort
	IKEPort   int    // 0: the default port
	Auth      string // never, secret, rsasig, ecdsa, eddsa, null, eaponly; "" when unset
	Cert      string // leftcert=: our certificate in the trust store
	SendCert  string // default sendifasked
	CA        string // rightca=: the DN of a CA that must issue the peer's chain; %same, %any
}

// Conn is one resolved conn section: its own keys, then its also=
// sections, then conn %default, with Libreswan's defaults for the rest.
type Conn struct {
	Name string
	File string // where the conn line is
	Line int

	Left, Right End

	Type   string   // tunnel (default), transport, passthrough, drop, reject
	Auto   string   // ignore (default), add, ondemand, start
	AuthBy []string // default rsasig, ecdsa

	IKE []proposal.IKEProposal // nil: proposal.DefaultIKE()
	ESP []proposal.ESPProposal // nil: proposal.DefaultESP()

	IKELifetime   time.Duration // default 8h
	IPsecLifetime time.Duration // default 8h
	Rekey         bool          // default yes
	RekeyMargin   time.Duration // default 9m
	RekeyFuzz     int           // percent, default 100

	DPDDelay   time.Duration // 0: liveness checks off
	DPDTimeout time.Duration
	DPDAction  string // hold (default), clear, restart

	Encapsulation string // auto (default), yes, no
	Fragmentation string // yes (default), no, force
	MOBIKE        bool
	PFS           bool   // default yes
	Narrowing     bool   // default no
	ReplayWindow  uint32 // default 128
	ESN           string // either (default), yes, no
	KeyExchange   string // always ikev2

	RetransmitInterval time.Duration // default 500ms
	RetransmitTimeout  time.Duration // default 60s

	Mark           *Mark // nil when unset
	VTIInterface   string
	IPsecInterface string

	// Raw is every key=value that applies to the conn after %default and
	// also=, keys in canonical spelling (salifetime= is ipsec-lifetime).
	Raw map[string]string
}
