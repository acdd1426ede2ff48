package ike

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"goswan/config"
	"goswan/ike/message"
	"goswan/kernel"
	"goswan/proposal"
)

// authMethod is how an end proves its identity.
type authMethod uint8

const (
	authPSK authMethod = iota + 1
	authNull
)

func (a authMethod) String() string {
	if a == authNull {
		return "null"
	}
	return "secret"
}

func (a authMethod) wire() message.AuthMethod {
	if a == authNull {
		return message.AuthNull
	}
	return message.AuthPSK
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
	auth          authMethod
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
	auth, err := connAuth(c, local, remote)
	if err != nil {
		return nil, err
	}
	nc.auth = auth

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

	// Identities.
	if nc.localID, err = parseIdentity(local.ID, local.Addr, auth == authNull); err != nil {
		return nil, fmt.Errorf("%s: local id: %v", where(c), err)
	}
	if nc.localID.any {
		return nil, fmt.Errorf("%s: local id %q cannot be %%any (set leftid= or left= to an address)", where(c), local.ID)
	}
	if nc.remoteID, err = parseIdentity(remote.ID, remote.Addr, auth == authNull); err != nil {
		return nil, fmt.Errorf("%s: remote id: %v", where(c), err)
	}
	if auth == authNull && remote.ID == "" {
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

func connAuth(c *config.Conn, local, remote config.End) (authMethod, error) {
	pick := func(s string) (authMethod, bool) {
		switch s {
		case "secret", "psk":
			return authPSK, true
		case "null":
			return authNull, true
		}
		return 0, false
	}
	var auth authMethod
	if local.Auth != "" || remote.Auth != "" {
		la, lok := pick(local.Auth)
		ra, rok := pick(remote.Auth)
		if !lok || !rok || la != ra {
			return 0, fmt.Errorf("%s: leftauth=%s rightauth=%s: only secret or null, the same on both ends, are supported", where(c), local.Auth, remote.Auth)
		}
		return la, nil
	}
	for _, a := range c.AuthBy {
		if m, ok := pick(a); ok {
			auth = m
			break
		}
	}
	if auth == 0 {
		return 0, fmt.Errorf("%s: authby=%s is not supported (use authby=secret or authby=null)", where(c), strings.Join(c.AuthBy, ","))
	}
	return auth, nil
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
	any  bool // %any: matches every peer identity
	typ  message.IDType
	data []byte
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
		return identity{}, errors.New("%fromcert needs certificates, which are not supported yet")
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
		return identity{}, fmt.Errorf("%q: ASN.1 DN identities need certificates, which are not supported yet", s)
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
	}
	return bytes.Equal(id.data, got.data)
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
