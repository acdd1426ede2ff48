package ike

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"goswan/config"
	"goswan/ike/message"
	"goswan/kernel"
	"goswan/pki"
	"goswan/proposal"
)

// authMethod is how an end proves its identity.
type authMethod uint8

const (
	authPSK authMethod = iota + 1
	authNull
	authSig // digital signature with a certificate (RFC 7427, methods 1, 9-11)
)

func (a authMethod) String() string {
	switch a {
	case authNull:
		return "null"
	case authSig:
		return "signature"
	}
	return "secret"
}

// wire is the AUTH method of PSK and NULL; signatures pick theirs per IKE
// SA (sign.go).
func (a authMethod) wire() message.AuthMethod {
	switch a {
	case authNull:
		return message.AuthNull
	case authSig:
		return message.AuthDigitalSignature
	}
	return message.AuthPSK
}

// accepts reports whether an AUTH payload of method m can prove an end
// that authenticates with a.
func (a authMethod) accepts(m message.AuthMethod, p sigPolicy) bool {
	if a != authSig {
		return m == a.wire()
	}
	switch m {
	case message.AuthDigitalSignature:
		return true
	case message.AuthRSASig:
		return p.rsa && p.rsaSHA1
	case message.AuthECDSASHA256P256, message.AuthECDSASHA384P384, message.AuthECDSASHA512P521:
		return p.ecdsa
	}
	return false
}

// conn is a validated connection, oriented so that local is this host. It
// is immutable once in the table; the SAs point at the one they were
// made for.
type conn struct {
	name          string
	cfg           *config.Conn
	local, remote config.End
	localID       identity
	remoteID      identity // any matches every peer
	// localAuth is how we prove our identity (leftauth=, else authby=),
	// remoteAuth how the peer must prove its own (rightauth=).
	localAuth, remoteAuth authMethod
	// remoteSig says which signatures the peer may use (authby=rsasig,
	// ecdsa, rsa-sha2, ...; all when authby= is not set).
	remoteSig sigPolicy
	// certName is leftcert=; ident our certificate and key from the
	// trust store (swapped by ReloadCertificates).
	certName      string
	ident         atomic.Pointer[pki.Identity]
	sendCert      string // alwayssend, sendifasked or never
	rightCA       string // rightca=, %same resolved
	ike           []proposal.IKEProposal
	esp           []proposal.ESPProposal
	ikeSA         []message.Proposal // the IKE_SA_INIT offer
	localTS       []message.TrafficSelector
	remoteTS      []message.TrafficSelector
	transport     bool
	encapForce    bool
	fragmentation bool
	narrowing     bool
	esn           []uint16 // ESN transform IDs to offer or accept, preferred first
	// shunt is the policy action of a conn without IKE (type=passthrough:
	// Bypass, drop and reject: Block); 0 for IKE conns.
	shunt     kernel.PolicyAction
	noIKE     bool
	ondemand  bool   // auto=ondemand: trap policies from AddConn on
	trapReqID uint32 // the reqid of its traps

	retransmitInterval time.Duration
	retransmitTimeout  time.Duration
}

// AddConn validates c and adds it to the table, replacing (and deleting
// the SAs of) a conn of the same name. Only IKEv2 with authby=secret or
// authby=null (or leftauth=/rightauth= of those) is supported.
func (e *Engine) AddConn(c *config.Conn) error {
	if c == nil {
		return errors.New("ike: nil conn")
	}
	nc, err := e.newConn(c)
	if err != nil {
		return err
	}
	e.connsMu.Lock()
	old := *e.conns.Load()
	next := make([]*conn, 0, len(old)+1)
	replaced := false
	for _, o := range old {
		if o.name == nc.name {
			next = append(next, nc)
			replaced = true
		} else {
			next = append(next, o)
		}
	}
	if !replaced {
		next = append(next, nc)
	}
	e.conns.Store(&next)
	e.connsMu.Unlock()
	if replaced {
		e.each(func(w *worker) { w.deleteConnSAs(nc.name, nc, "conn replaced", nil) })
		e.removeTraps(nc.name)
	}
	if nc.noIKE || nc.ondemand {
		action := nc.shunt
		if !nc.noIKE {
			action = kernel.Protect
		}
		ps, err := e.trapPolicies(nc, action)
		if err == nil {
			err = e.installTraps(nc.name, ps)
		}
		if err != nil {
			e.removeTraps(nc.name)
			return fmt.Errorf("%s: %v", where(c), err)
		}
	}
	if nc.noIKE {
		e.log.Logf("added %s connection %q", c.Type, nc.name)
		return nil
	}
	e.log.Logf("added IKEv2 connection %q", nc.name)
	return nil
}

// DeleteConn deletes the SAs of conn name with the peer, then forgets the
// conn.
func (e *Engine) DeleteConn(name string) error {
	e.connsMu.Lock()
	old := *e.conns.Load()
	i := slices.IndexFunc(old, func(c *conn) bool { return c.name == name })
	if i < 0 {
		e.connsMu.Unlock()
		return fmt.Errorf("no connection named %q", name)
	}
	next := slices.Delete(slices.Clone(old), i, i+1)
	e.conns.Store(&next)
	e.connsMu.Unlock()
	e.each(func(w *worker) { w.deleteConnSAs(name, nil, "conn deleted", nil) })
	e.removeTraps(name)
	e.log.Logf("deleted connection %q", name)
	return nil
}

func (e *Engine) conn(name string) *conn {
	for _, c := range *e.conns.Load() {
		if c.name == name {
			return c
		}
	}
	return nil
}

func (e *Engine) connList() []*conn { return *e.conns.Load() }

// where names the config line of a conn for error messages.
func where(c *config.Conn) string {
	if c.File != "" {
		return fmt.Sprintf("conn %q (%s:%d)", c.Name, c.File, c.Line)
	}
	return fmt.Sprintf("conn %q", c.Name)
}

func (e *Engine) newConn(c *config.Conn) (*conn, error) {
	if c.Name == "" {
		return nil, errors.New("ike: conn without a name")
	}
	local, remote := c.Left, c.Right
	if e.o.IsLocal != nil && remote.Addr.IsValid() && e.o.IsLocal(remote.Addr) &&
		!(local.Addr.IsValid() && e.o.IsLocal(local.Addr)) {
		local, remote = remote, local
	}
	nc := &conn{
		name: c.Name, cfg: c, local: local, remote: remote,
		ike: c.IKE, esp: c.ESP,
		narrowing:          c.Narrowing,
		retransmitInterval: c.RetransmitInterval,
		retransmitTimeout:  c.RetransmitTimeout,
	}
	if nc.retransmitInterval <= 0 {
		nc.retransmitInterval = 500 * time.Millisecond
	}
	if nc.retransmitTimeout <= 0 {
		nc.retransmitTimeout = 60 * time.Second
	}
	if c.KeyExchange != "" && c.KeyExchange != "ikev2" {
		return nil, fmt.Errorf("%s: keyexchange=%s is not supported (only ikev2)", where(c), c.KeyExchange)
	}
	switch c.Type {
	case "", "tunnel":
	case "transport":
		nc.transport = true
	case "passthrough", "pass":
		nc.noIKE, nc.shunt = true, kernel.Bypass
	case "drop", "reject":
		nc.noIKE, nc.shunt = true, kernel.Block
	default:
		return nil, fmt.Errorf("%s: type=%s is not supported by the IKE engine (tunnel, transport, passthrough, drop or reject)", where(c), c.Type)
	}
	nc.ondemand = c.Auto == "ondemand" || c.Auto == "route"
	nc.trapReqID = e.newReqID()
	if nc.noIKE {
		// No IKE: the policies are all there is.
		nc.localTS, nc.remoteTS = endTS(local), endTS(remote)
		if len(nc.localTS) == 0 || len(nc.remoteTS) == 0 {
			return nil, fmt.Errorf("%s: type=%s needs addresses or subnets on both ends", where(c), c.Type)
		}
		nc.ike, nc.esp = proposal.DefaultIKE(), proposal.DefaultESP()
		return nc, nil
	}
	switch c.Encapsulation {
	case "yes":
		nc.encapForce = true
	case "no":
		if e.o.ForceEncapsulation {
			return nil, fmt.Errorf("%s: encapsulation=no: this data plane only carries ESP in UDP (RFC 3948); remove encapsulation=no or use a kernel back end", where(c))
		}
	case "", "auto":
		nc.encapForce = e.o.ForceEncapsulation
	default:
		return nil, fmt.Errorf("%s: encapsulation=%s: want yes, no or auto", where(c), c.Encapsulation)
	}
	nc.fragmentation = c.Fragmentation != "no"
	switch c.ESN {
	case "yes":
		nc.esn = []uint16{message.ESNYes}
	case "no":
		nc.esn = []uint16{message.ESNNo}
	default:
		nc.esn = []uint16{message.ESNNo, message.ESNYes}
	}

	// Authentication: authby=, refined by leftauth=/rightauth=.
	var err error
	if nc.localAuth, nc.remoteAuth, nc.remoteSig, err = connAuth(c, local, remote); err != nil {
		return nil, err
	}
	null := nc.localAuth == authNull || nc.remoteAuth == authNull

	// Addresses.
	if !local.Addr.IsValid() && !isAnyHost(local.Host) {
		return nil, fmt.Errorf("%s: local end %q is not an IP address (DNS names and %%defaultroute must be resolved before the conn is added)", where(c), local.Host)
	}
	if !remote.Addr.IsValid() && !isAnyHost(remote.Host) {
		return nil, fmt.Errorf("%s: remote end %q is not an IP address or %%any (DNS names must be resolved before the conn is added)", where(c), remote.Host)
	}
	if local.Addr.IsValid() && remote.Addr.IsValid() && local.Addr.Is4() != remote.Addr.Is4() {
		return nil, fmt.Errorf("%s: left=%s and right=%s are of different address families", where(c), c.Left.Host, c.Right.Host)
	}

	// Certificates.
	if err := e.connCerts(nc, c, local, remote); err != nil {
		return nil, err
	}

	// Identities.
	if nc.localID, err = parseIdentity(local.ID, local.Addr, null); err != nil {
		return nil, fmt.Errorf("%s: local id: %v", where(c), err)
	}
	if id := nc.ident.Load(); id != nil && (local.ID == "" || nc.localID.fromCert) {
		// leftid=%fromcert, the default with leftcert=: the subject DN.
		nc.localID = identity{typ: message.IDDERASN1DN, data: id.Cert.RawSubject}
		nc.localID.dn, _ = pki.ParseDNDER(id.Cert.RawSubject)
	} else if nc.localID.fromCert {
		return nil, fmt.Errorf("%s: local id %%fromcert needs leftcert=", where(c))
	} else if id != nil {
		if nc.localID.typ == message.IDDERASN1DN && !nc.localID.wildcard() {
			// Send the certificate's own encoding of an equal DN, so
			// that a peer comparing octets agrees.
			if subject, err := pki.ParseDNDER(id.Cert.RawSubject); err == nil {
				if w, ok := pki.MatchDN(nc.localID.dn, subject); ok && w == 0 && len(subject) == len(nc.localID.dn) {
					nc.localID = identity{typ: message.IDDERASN1DN, data: id.Cert.RawSubject, dn: subject}
				}
			}
		}
		if pid, err := pki.IDFromPayload(uint8(nc.localID.typ), nc.localID.data); err == nil {
			if _, err := pki.MatchCert(id.Cert.Certificate, pid, pki.MatchOptions{}); err != nil {
				e.log.Warnf("%s: leftid=%s is not in leftcert=%s: the peer will refuse it (%v)", where(c), nc.localID, nc.certName, err)
			}
		}
	}
	if nc.localID.any {
		return nil, fmt.Errorf("%s: local id %q cannot be %%any (set leftid= or left= to an address)", where(c), local.ID)
	}
	if nc.remoteID, err = parseIdentity(remote.ID, remote.Addr, null); err != nil {
		return nil, fmt.Errorf("%s: remote id: %v", where(c), err)
	}
	if nc.remoteID.fromCert {
		if nc.remoteAuth != authSig {
			return nil, fmt.Errorf("%s: remote id %%fromcert needs the peer to authenticate with a certificate (rightauth=%s)", where(c), nc.remoteAuth)
		}
		nc.remoteID = identity{any: true}
	}
	if nc.remoteAuth == authNull && remote.ID == "" {
		nc.remoteID = identity{any: true}
	}

	// Proposals.
	if len(nc.ike) == 0 {
		nc.ike = proposal.DefaultIKE()
	}
	if len(nc.esp) == 0 {
		nc.esp = proposal.DefaultESP()
	}
	if nc.ikeSA, err = ikeOffer(nc.ike); err != nil {
		return nil, fmt.Errorf("%s: ike=: %v", where(c), err)
	}
	if _, err := espOffer(nc.esp, nc.esn, 0); err != nil {
		return nil, fmt.Errorf("%s: esp=: %v", where(c), err)
	}

	// Traffic selectors.
	nc.localTS = endTS(local)
	nc.remoteTS = endTS(remote)
	if nc.transport && (len(local.Subnets) > 0 || len(remote.Subnets) > 0) {
		return nil, fmt.Errorf("%s: type=transport with leftsubnet=/rightsubnet= is not supported", where(c))
	}
	return nc, nil
}

func isAnyHost(h string) bool {
	switch strings.ToLower(h) {
	case "%any", "%any4", "%any6":
		return true
	}
	return false
}

// sigPolicy is what a conn accepts of a peer's signatures.
type sigPolicy struct {
	rsa, ecdsa, eddsa bool // key types
	rsaSHA1           bool // RSA with SHA-1 (auth method 1): authby=rsasig, rsa-sha1
}

func (p sigPolicy) add(q sigPolicy) sigPolicy {
	return sigPolicy{rsa: p.rsa || q.rsa, ecdsa: p.ecdsa || q.ecdsa, eddsa: p.eddsa || q.eddsa, rsaSHA1: p.rsaSHA1 || q.rsaSHA1}
}

func (p sigPolicy) String() string {
	var w []string
	if p.rsa {
		w = append(w, "rsasig")
	}
	if p.ecdsa {
		w = append(w, "ecdsa")
	}
	if p.eddsa {
		w = append(w, "eddsa")
	}
	return strings.Join(w, "+")
}

// authWord reads one authby= or leftauth= word.
func authWord(s string) (authMethod, sigPolicy, bool) {
	switch {
	case s == "secret" || s == "psk":
		return authPSK, sigPolicy{}, true
	case s == "null":
		return authNull, sigPolicy{}, true
	case s == "rsasig" || s == "rsa" || s == "rsa-sha1":
		return authSig, sigPolicy{rsa: true, rsaSHA1: true}, true
	case strings.HasPrefix(s, "rsa-sha2"):
		return authSig, sigPolicy{rsa: true}, true
	case strings.HasPrefix(s, "ecdsa"):
		return authSig, sigPolicy{ecdsa: true}, true
	case s == "eddsa":
		return authSig, sigPolicy{eddsa: true}, true
	}
	return 0, sigPolicy{}, false
}

// connAuth reads authby= and leftauth=/rightauth= as Libreswan does: an
// end's auth= wins over authby=; authby= lists one method (secret, null)
// or signature kinds (rsasig, ecdsa, rsa-sha2, ...), and with a
// certificate on our end a signature kind wins over secret.
func connAuth(c *config.Conn, local, remote config.End) (la, ra authMethod, rp sigPolicy, err error) {
	var byMethod authMethod
	var byPolicy sigPolicy
	hasSig, hasOther := false, authMethod(0)
	for _, a := range c.AuthBy {
		m, p, ok := authWord(a)
		if !ok {
			return 0, 0, rp, fmt.Errorf("%s: authby=%s is not supported (use secret, null, rsasig, ecdsa, rsa-sha2, eddsa)", where(c), strings.Join(c.AuthBy, ","))
		}
		if m == authSig {
			hasSig = true
			byPolicy = byPolicy.add(p)
		} else if hasOther == 0 {
			hasOther = m
		}
	}
	if c.Raw["authby"] == "" {
		byPolicy = sigPolicy{rsa: true, ecdsa: true, eddsa: true, rsaSHA1: true}
	}
	switch {
	case hasSig && (hasOther == 0 || local.Cert != ""):
		byMethod = authSig
	case hasOther != 0:
		byMethod = hasOther
	default:
		return 0, 0, rp, fmt.Errorf("%s: authby= is empty", where(c))
	}
	end := func(e config.End, side string) (authMethod, sigPolicy, error) {
		if e.Auth == "" {
			return byMethod, byPolicy, nil
		}
		m, p, ok := authWord(e.Auth)
		if !ok {
			return 0, p, fmt.Errorf("%s: %sauth=%s is not supported (use secret, null, rsasig, ecdsa or eddsa)", where(c), side, e.Auth)
		}
		return m, p, nil
	}
	var lp sigPolicy
	if la, lp, err = end(local, "left"); err != nil {
		return
	}
	_ = lp
	if ra, rp, err = end(remote, "right"); err != nil {
		return
	}
	if (la == authNull) != (ra == authNull) {
		return 0, 0, rp, fmt.Errorf("%s: leftauth=%s rightauth=%s: NULL authentication must be on both ends", where(c), la, ra)
	}
	return la, ra, rp, nil
}

func (c *conn) canInitiate() error {
	if c.noIKE {
		return fmt.Errorf("%s: type=%s has no IKE to initiate", where(c.cfg), c.cfg.Type)
	}
	if !c.local.Addr.IsValid() {
		return fmt.Errorf("%s: cannot initiate: the local address %q is not known", where(c.cfg), c.local.Host)
	}
	if !c.remote.Addr.IsValid() {
		return fmt.Errorf("%s: cannot initiate to %q: the peer's address is not known", where(c.cfg), c.remote.Host)
	}
	return nil
}

// matchesAddrs reports whether the conn can carry an IKE SA between local
// and remote.
func (c *conn) matchesAddrs(local, remote netip.Addr) bool {
	if c.noIKE {
		return false
	}
	if c.local.Addr.IsValid() && c.local.Addr != local.Unmap() {
		return false
	}
	if c.remote.Addr.IsValid() && c.remote.Addr != remote.Unmap() {
		return false
	}
	fam := func(h string, a netip.Addr) bool {
		switch strings.ToLower(h) {
		case "%any4":
			return a.Unmap().Is4()
		case "%any6":
			return a.Is6() && !a.Is4In6()
		}
		return true
	}
	return fam(c.local.Host, local) && fam(c.remote.Host, remote)
}

// endTS returns the traffic selectors of an end: its subnets, or its host
// address, with its protoport.
func endTS(end config.End) []message.TrafficSelector {
	proto := end.ProtoPort.Proto
	lo, hi := uint16(0), uint16(65535)
	if end.ProtoPort.Port != 0 && !end.ProtoPort.AnyPort {
		lo, hi = end.ProtoPort.Port, end.ProtoPort.Port
	}
	var out []message.TrafficSelector
	for _, p := range end.Subnets {
		out = append(out, message.SelectorFromPrefix(p, proto, lo, hi))
	}
	if len(out) == 0 && end.Addr.IsValid() {
		a := end.Addr.Unmap()
		out = append(out, message.SelectorFromPrefix(netip.PrefixFrom(a, a.BitLen()), proto, lo, hi))
	}
	return out
}

// hostTS is the TS of one address with the end's protoport, for a remote
// end of %any whose address is learnt from the peer.
func hostTS(a netip.Addr, end config.End) []message.TrafficSelector {
	end.Addr = a.Unmap()
	end.Subnets = nil
	return endTS(end)
}

// identity is an IKE identity (RFC 7296 §3.5).
type identity struct {
	any      bool // %any: matches every peer identity
	fromCert bool // %fromcert, before newConn resolves it
	typ      message.IDType
	data     []byte
	dn       []pki.AVA // a DN (typ IDDERASN1DN), "*" values are wildcards
}

// parseIdentity reads a leftid=/rightid= value as Libreswan does; an empty
// one is the end's address (ID_NULL for authby=null).
func parseIdentity(s string, addr netip.Addr, null bool) (identity, error) {
	s = strings.TrimSpace(strings.Trim(s, `"`))
	switch strings.ToLower(s) {
	case "":
		if null {
			return identity{typ: message.IDNull}, nil
		}
		if !addr.IsValid() {
			return identity{any: true}, nil
		}
		return addrIdentity(addr), nil
	case "%any", "%any4", "%any6", "%none":
		return identity{any: true}, nil
	case "%null":
		return identity{typ: message.IDNull}, nil
	case "%fromcert":
		return identity{fromCert: true}, nil
	}
	if strings.HasPrefix(s, "@#") {
		b, err := hex.DecodeString(s[2:])
		if err != nil || len(b) == 0 {
			return identity{}, fmt.Errorf("%q: a @# key ID wants hex digits", s)
		}
		return identity{typ: message.IDKeyID, data: b}, nil
	}
	if strings.HasPrefix(s, "@[") && strings.HasSuffix(s, "]") {
		return identity{typ: message.IDKeyID, data: []byte(s[2 : len(s)-1])}, nil
	}
	if strings.HasPrefix(s, "@") {
		if len(s) == 1 {
			return identity{}, fmt.Errorf("%q: empty FQDN", s)
		}
		return identity{typ: message.IDFQDN, data: []byte(s[1:])}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return addrIdentity(a), nil
	}
	if strings.Contains(s, "=") {
		dn, err := pki.ParseDN(s)
		if err != nil {
			return identity{}, err
		}
		der, err := pki.MarshalDN(dn)
		if err != nil {
			return identity{}, fmt.Errorf("%q: %v", s, err)
		}
		return identity{typ: message.IDDERASN1DN, data: der, dn: dn}, nil
	}
	if strings.Contains(s, "@") {
		return identity{typ: message.IDRFC822Addr, data: []byte(s)}, nil
	}
	return identity{typ: message.IDFQDN, data: []byte(s)}, nil
}

func addrIdentity(a netip.Addr) identity {
	a = a.Unmap()
	if a.Is4() {
		return identity{typ: message.IDIPv4Addr, data: a.AsSlice()}
	}
	return identity{typ: message.IDIPv6Addr, data: a.AsSlice()}
}

func payloadIdentity(p *message.Identification) identity {
	return identity{typ: p.IDType, data: bytes.Clone(p.Data)}
}

// String is the identity as ipsec.conf and ipsec.secrets write it.
func (id identity) String() string {
	if id.any {
		return "%any"
	}
	switch id.typ {
	case message.IDIPv4Addr, message.IDIPv6Addr:
		if a, ok := netip.AddrFromSlice(id.data); ok {
			return a.String()
		}
	case message.IDFQDN:
		return "@" + printable(id.data)
	case message.IDRFC822Addr:
		return printable(id.data)
	case message.IDKeyID:
		return "@#" + hex.EncodeToString(id.data)
	case message.IDNull:
		return "ID_NULL"
	case message.IDDERASN1DN:
		if id.dn != nil {
			return pki.FormatDN(id.dn)
		}
		return printable([]byte(pki.DNString(id.data)))
	}
	return fmt.Sprintf("%v:%x", id.typ, id.data)
}

// printable keeps a peer's string from forging log lines.
func printable(b []byte) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, string(b))
}

// matches reports whether the peer's identity got is acceptable as id.
func (id identity) matches(got identity) bool {
	if id.any {
		return true
	}
	if id.typ != got.typ {
		return false
	}
	switch id.typ {
	case message.IDFQDN, message.IDRFC822Addr:
		return strings.EqualFold(strings.TrimSuffix(string(id.data), "."), strings.TrimSuffix(string(got.data), "."))
	case message.IDDERASN1DN:
		if bytes.Equal(id.data, got.data) {
			return true
		}
		pattern := id.dn
		if pattern == nil {
			var err error
			if pattern, err = pki.ParseDNDER(id.data); err != nil {
				return false
			}
		}
		dn, err := pki.ParseDNDER(got.data)
		if err != nil {
			return false
		}
		_, ok := pki.MatchDN(pattern, dn)
		return ok
	}
	return bytes.Equal(id.data, got.data)
}

// wildcard reports whether the identity is a DN pattern with "*" values,
// which is no identity to send as IDr.
func (id identity) wildcard() bool {
	for _, a := range id.dn {
		if a.Value == "*" {
			return true
		}
	}
	return false
}

// payload is the identity as an IDi (or IDr) payload.
func (id identity) payload(responder bool) *message.Identification {
	return &message.Identification{Responder: responder, IDType: id.typ, Data: id.data}
}

// body is the ID payload body that AUTH covers: type, reserved, data.
func idBody(p *message.Identification) []byte {
	b := make([]byte, 0, 4+len(p.Data))
	b = append(b, uint8(p.IDType), p.Reserved[0], p.Reserved[1], p.Reserved[2])
	return append(b, p.Data...)
}
