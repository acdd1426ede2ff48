package ike

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"goswan/config"
	"goswan/ike/message"
	"goswan/kernel"
	"goswan/kernel/memory"
	"goswan/logging"
)

var (
	westAddr = netip.MustParseAddr("192.0.2.1")
	eastAddr = netip.MustParseAddr("192.0.2.2")
	natAddr  = netip.MustParseAddr("198.51.100.1")
)

// testNet carries datagrams between engines in memory, in order, with
// knobs to drop or duplicate the Nth datagram and a NAT in front of one
// address.
type testNet struct {
	mu      sync.Mutex
	q       []Packet
	engines map[netip.Addr]*Engine
	n       int
	drop    func(n int, p Packet) bool
	dup     map[int]bool
	nat     *testNAT
	sent    []Packet // every datagram offered, for inspection
}

// testNAT rewrites the source of datagrams from inside to public, with a
// new public port per inside address and port, and back for answers.
type testNAT struct {
	inside, public netip.Addr
	out, in        map[netip.AddrPort]netip.AddrPort
	next           uint16
}

func newNAT(inside, public netip.Addr) *testNAT {
	return &testNAT{inside: inside, public: public, out: map[netip.AddrPort]netip.AddrPort{}, in: map[netip.AddrPort]netip.AddrPort{}, next: 31000}
}

func (n *testNet) send(p Packet) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.n++
	cp := p
	cp.Data = bytes.Clone(p.Data)
	n.sent = append(n.sent, cp)
	if n.drop != nil && n.drop(n.n, cp) {
		return
	}
	n.q = append(n.q, cp)
	if n.dup[n.n] {
		n.q = append(n.q, cp)
	}
}

// pump delivers datagrams until none are left.
func (n *testNet) pump() {
	for i := 0; i < 100000; i++ {
		n.mu.Lock()
		if len(n.q) == 0 {
			n.mu.Unlock()
			return
		}
		p := n.q[0]
		n.q = n.q[1:]
		n.mu.Unlock()
		n.deliver(p)
	}
	panic("testNet: endless conversation")
}

func (n *testNet) deliver(p Packet) {
	src, dst := p.Local, p.Remote
	if nat := n.nat; nat != nil {
		if src.Addr() == nat.inside {
			pub, ok := nat.out[src]
			if !ok {
				pub = netip.AddrPortFrom(nat.public, nat.next)
				nat.next++
				nat.out[src], nat.in[pub] = pub, src
			}
			src = pub
		}
		if dst.Addr() == nat.public {
			inside, ok := nat.in[dst]
			if !ok {
				return
			}
			dst = inside
		}
	}
	e := n.engines[dst.Addr()]
	if e == nil || p.Keepalive {
		return
	}
	e.Receive(Packet{Local: dst, Remote: src, Data: p.Data})
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// bed is two engines, west (192.0.2.1, the initiator) and east
// (192.0.2.2), each with its own memory kernel, on one testNet.
type bed struct {
	t                  testing.TB
	net                *testNet
	clk                *clock
	west, east         *Engine
	wk, ek             *memory.Backend
	wSecrets, eSecrets *config.Secrets
	eastLog            *lineLog
	westLog            *lineLog
}

type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) add(s string) { l.mu.Lock(); l.lines = append(l.lines, s); l.mu.Unlock() }
func (l *lineLog) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func parseConn(t testing.TB, body string) *config.Conn {
	t.Helper()
	var b strings.Builder
	b.WriteString("conn test\n")
	for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
		b.WriteString("\t" + strings.TrimSpace(l) + "\n")
	}
	cfg, err := config.Parse("test.conf", []byte(b.String()))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, b.String())
	}
	return cfg.Conns[0]
}

const baseConn = `
left=192.0.2.1
leftsubnet=10.1.0.0/24
right=192.0.2.2
rightsubnet=10.2.0.0/24
authby=secret
`

func psk(entries ...string) *config.Secrets {
	s := &config.Secrets{}
	for _, e := range entries {
		ids, key, _ := strings.Cut(e, " : ")
		s.Entries = append(s.Entries, &config.Secret{Kind: config.PSK, IDs: strings.Fields(ids), PSK: []byte(strings.TrimSpace(key))})
	}
	return s
}

// newBed makes the two engines with the conns west and east (east's is
// written from west's point of view too: IsLocal swaps it).
func newBed(t testing.TB, west, east string) *bed {
	t.Helper()
	return newBedAddrs(t, westAddr, eastAddr, west, east)
}

func newBedAddrs(t testing.TB, westAddr, eastAddr netip.Addr, west, east string) *bed {
	t.Helper()
	return newBedWith(t, westAddr, eastAddr, west, east, nil)
}

// newBedWith is newBedAddrs with a hook that may change each engine's
// options (name is "west" or "east") before it is made.
func newBedWith(t testing.TB, westAddr, eastAddr netip.Addr, west, east string, mod func(name string, o *Options)) *bed {
	t.Helper()
	b := &bed{t: t, net: &testNet{engines: map[netip.Addr]*Engine{}, dup: map[int]bool{}},
		clk: &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		wk:  memory.New(), ek: memory.New(), eastLog: &lineLog{}, westLog: &lineLog{}}
	b.wSecrets = psk("192.0.2.1 192.0.2.2 : secret-one", "@west @east : fqdn-secret", "@#0102 @east : keyid-secret", "alice@example.com @east : mail-secret")
	b.eSecrets = b.wSecrets
	mk := func(name string, addr netip.Addr, k *memory.Backend, sec **config.Secrets, ll *lineLog) *Engine {
		lg, err := logging.New(logging.Options{})
		if err != nil {
			t.Fatal(err)
		}
		lg.AddSink(ll.add)
		o := Options{
			Kernel: k, Secrets: func() *config.Secrets { return *sec }, Log: lg,
			Send: b.net.send, Now: b.clk.now, VendorID: "goswan-test",
			IsLocal: func(a netip.Addr) bool { return a == addr },
		}
		if mod != nil {
			mod(name, &o)
		}
		e, err := NewEngine(o)
		if err != nil {
			t.Fatal(err)
		}
		b.net.engines[addr] = e
		return e
	}
	b.west = mk("west", westAddr, b.wk, &b.wSecrets, b.westLog)
	b.east = mk("east", eastAddr, b.ek, &b.eSecrets, b.eastLog)
	if west != "" {
		if err := b.west.AddConn(parseConn(t, west)); err != nil {
			t.Fatal(err)
		}
	}
	if east != "" {
		if err := b.east.AddConn(parseConn(t, east)); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

type upResult struct {
	lines []string
	done  int
	err   error
}

func (r *upResult) progress(p Progress) {
	r.lines = append(r.lines, p.Line)
	if p.Done {
		r.done++
		r.err = p.Err
	}
}

func (r *upResult) has(sub string) bool {
	return slices.ContainsFunc(r.lines, func(s string) bool { return strings.Contains(s, sub) })
}

// up initiates west's conn and runs the network until it is quiet.
func (b *bed) up() *upResult {
	b.t.Helper()
	r := &upResult{}
	if err := b.west.Initiate("test", r.progress); err != nil {
		b.t.Fatal(err)
	}
	b.net.pump()
	return r
}

func (b *bed) mustUp() *upResult {
	b.t.Helper()
	r := b.up()
	if r.done != 1 || r.err != nil {
		b.t.Fatalf("up: done %d err %v\nprogress:\n%s\nwest log:\n%s\neast log:\n%s", r.done, r.err, strings.Join(r.lines, "\n"), b.westLog, b.eastLog)
	}
	return r
}

// tick advances the clock by d and ticks both engines, then runs the
// network.
func (b *bed) tick(d time.Duration) {
	now := b.clk.advance(d)
	b.west.Tick(now)
	b.east.Tick(now)
	b.net.pump()
}

func (b *bed) empty(t testing.TB) {
	t.Helper()
	for name, k := range map[string]*memory.Backend{"west": b.wk, "east": b.ek} {
		if n := len(k.SAs()); n != 0 {
			t.Errorf("%s kernel still has %d SAs: %+v", name, n, k.SAs())
		}
		if n := len(k.Policies()); n != 0 {
			t.Errorf("%s kernel still has %d policies", name, n)
		}
		if n := k.Reserved(); n != 0 {
			t.Errorf("%s kernel still has %d reserved SPIs", name, n)
		}
	}
}

func (b *bed) noIKE(t testing.TB) {
	t.Helper()
	if n := len(b.west.Status().IKESAs); n != 0 {
		t.Errorf("west still has %d IKE SAs: %+v", n, b.west.Status().IKESAs)
	}
	if n := len(b.east.Status().IKESAs); n != 0 {
		t.Errorf("east still has %d IKE SAs: %+v", n, b.east.Status().IKESAs)
	}
}

func saBy(k *memory.Backend, dir kernel.Direction) []kernel.SA {
	var out []kernel.SA
	for _, sa := range k.SAs() {
		if sa.Dir == dir {
			out = append(out, sa)
		}
	}
	return out
}

// checkPair checks that the two kernels hold one matching Child SA: our
// inbound SPI is their outbound one with the same keys, the selectors
// mirror each other, and each has its policies.
func checkPair(t testing.TB, wk, ek *memory.Backend, mode kernel.Mode) (wOut, eOut kernel.SA) {
	t.Helper()
	return checkPairNAT(t, wk, ek, mode, false)
}

// checkPairNAT is checkPair where a NAT may rewrite the outer addresses
// and ports between the ends.
func checkPairNAT(t testing.TB, wk, ek *memory.Backend, mode kernel.Mode, natted bool) (wOut, eOut kernel.SA) {
	t.Helper()
	wIn, wOutL, eIn, eOutL := saBy(wk, kernel.In), saBy(wk, kernel.Out), saBy(ek, kernel.In), saBy(ek, kernel.Out)
	if len(wIn) != 1 || len(wOutL) != 1 || len(eIn) != 1 || len(eOutL) != 1 {
		t.Fatalf("want one SA each way in each kernel: west in %d out %d, east in %d out %d", len(wIn), len(wOutL), len(eIn), len(eOutL))
	}
	pairs := [][2]kernel.SA{{wOutL[0], eIn[0]}, {eOutL[0], wIn[0]}}
	for _, p := range pairs {
		out, in := p[0], p[1]
		if out.SPI != in.SPI || (!natted && (out.Src != in.Src || out.Dst != in.Dst)) {
			t.Errorf("outbound %v (%v->%v) does not match inbound %v (%v->%v)", out.SPI, out.Src, out.Dst, in.SPI, in.Src, in.Dst)
		}
		if !bytes.Equal(out.EncrKey, in.EncrKey) || !bytes.Equal(out.IntegKey, in.IntegKey) || out.Encr != in.Encr || out.Integ != in.Integ {
			t.Errorf("SPI %08x: keys or algorithms differ between the ends", out.SPI)
		}
		if len(out.EncrKey) == 0 {
			t.Errorf("SPI %08x: no encryption key", out.SPI)
		}
		if !slices.Equal(out.Selectors, in.Selectors) {
			t.Errorf("SPI %08x: selectors %v vs %v", out.SPI, out.Selectors, in.Selectors)
		}
		if out.Mode != mode || in.Mode != mode {
			t.Errorf("SPI %08x: mode %v/%v, want %v", out.SPI, out.Mode, in.Mode, mode)
		}
		if (out.Encap == nil) != (in.Encap == nil) || (out.Encap != nil && !natted && *out.Encap != *in.Encap) {
			t.Errorf("SPI %08x: encapsulation %+v vs %+v", out.SPI, out.Encap, in.Encap)
		}
		if out.ReqID == 0 || out.ReplayWindow != 128 {
			t.Errorf("SPI %08x: reqid %d replay window %d", out.SPI, out.ReqID, out.ReplayWindow)
		}
	}
	if bytes.Equal(wOutL[0].EncrKey, eOutL[0].EncrKey) {
		t.Errorf("both directions use the same key")
	}
	// Selectors mirrored: west's outbound selectors are east's outbound
	// reversed.
	ws, es := wOutL[0].Selectors, eOutL[0].Selectors
	if len(ws) != 1 || len(es) != 1 || ws[0].Src != es[0].Dst || ws[0].Dst != es[0].Src {
		t.Errorf("selectors not mirrored: west %v east %v", ws, es)
	}
	want := 3
	if mode == kernel.Transport {
		want = 2
	}
	for name, k := range map[string]*memory.Backend{"west": wk, "east": ek} {
		ps := k.Policies()
		if len(ps) != want {
			t.Errorf("%s: %d policies, want %d: %+v", name, len(ps), want, ps)
		}
		for _, p := range ps {
			if p.Template.ReqID == 0 || p.Action != kernel.Protect {
				t.Errorf("%s: policy %+v", name, p)
			}
		}
	}
	return wOutL[0], eOutL[0]
}

func TestPSKWithAddressIDs(t *testing.T) {
	b := newBed(t, baseConn, baseConn)
	r := b.mustUp()
	wOut, _ := checkPair(t, b.wk, b.ek, kernel.Tunnel)
	if wOut.Selectors[0].Src != netip.MustParsePrefix("10.1.0.0/24") || wOut.Selectors[0].Dst != netip.MustParsePrefix("10.2.0.0/24") {
		t.Errorf("west outbound selector %v", wOut.Selectors)
	}
	if wOut.Src != westAddr || wOut.Dst != eastAddr || wOut.Encap != nil {
		t.Errorf("west outbound SA %v->%v encap %v", wOut.Src, wOut.Dst, wOut.Encap)
	}
	if !r.has("established Child SA") {
		t.Errorf("progress lines: %q", r.lines)
	}
	ws, es := b.west.Status(), b.east.Status()
	if len(ws.IKESAs) != 1 || len(es.IKESAs) != 1 || len(ws.ChildSAs) != 1 || len(es.ChildSAs) != 1 {
		t.Fatalf("status: west %+v east %+v", ws, es)
	}
	wi, ei := ws.IKESAs[0], es.IKESAs[0]
	if wi.State != "ESTABLISHED_IKE_SA" || ei.State != "ESTABLISHED_IKE_SA" || !wi.Initiator || ei.Initiator ||
		wi.SPIi != ei.SPIi || wi.SPIr != ei.SPIr || wi.RemoteID != "192.0.2.2" || ei.RemoteID != "192.0.2.1" {
		t.Errorf("IKE SAs: %+v / %+v", wi, ei)
	}
	if wi.Algorithms == "" || wi.Algorithms != ei.Algorithms {
		t.Errorf("algorithms %q vs %q", wi.Algorithms, ei.Algorithms)
	}
	wc, ec := ws.ChildSAs[0], es.ChildSAs[0]
	if wc.SPIIn != ec.SPIOut || wc.SPIOut != ec.SPIIn || wc.Mode != "tunnel" {
		t.Errorf("Child SAs %+v / %+v", wc, ec)
	}
	// Traffic counters come from the kernel.
	if err := b.wk.AddTraffic(kernel.SAID{Dst: eastAddr, SPI: wc.SPIOut, Proto: kernel.ESP}, 1000, 10); err != nil {
		t.Fatal(err)
	}
	if c := b.west.Status().ChildSAs[0]; c.BytesOut != 1000 || c.PacketsOut != 10 {
		t.Errorf("traffic counters %+v", c)
	}
	if len(ws.Conns) != 1 || ws.Conns[0].Name != "test" || es.Conns[0].Local != "192.0.2.2" {
		t.Errorf("conns %+v / %+v", ws.Conns, es.Conns)
	}
	if d := ws.Counters.Drops; len(d) != 0 {
		t.Errorf("west drops %v", d)
	}
	if d := es.Counters.Drops; len(d) != 0 {
		t.Errorf("east drops %v", d)
	}
}

func TestIPv6(t *testing.T) {
	conf := "left=2001:db8::1\nleftsubnet=2001:db8:1::/48\nright=2001:db8::2\nrightsubnet=2001:db8:2::/48\nauthby=secret"
	b := newBedAddrs(t, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), conf, conf)
	b.wSecrets = psk("2001:db8::1 2001:db8::2 : six")
	b.eSecrets = b.wSecrets
	b.mustUp()
	wOut, _ := checkPair(t, b.wk, b.ek, kernel.Tunnel)
	if wOut.Selectors[0].Dst != netip.MustParsePrefix("2001:db8:2::/48") {
		t.Errorf("selector %v", wOut.Selectors)
	}
	if got := b.east.Status().IKESAs[0].RemoteID; got != "2001:db8::1" {
		t.Errorf("peer ID %q", got)
	}
}

func TestPSKWithOtherIDs(t *testing.T) {
	for _, tc := range []struct{ name, ids string }{
		{"fqdn", "leftid=@west\nrightid=@east"},
		{"keyid", "leftid=@#0102\nrightid=@east"},
		{"rfc822", "leftid=alice@example.com\nrightid=@east"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBed(t, baseConn+tc.ids, baseConn+tc.ids)
			b.mustUp()
			checkPair(t, b.wk, b.ek, kernel.Tunnel)
			want := strings.TrimPrefix(strings.Split(tc.ids, "\n")[0], "leftid=")
			if got := b.east.Status().IKESAs[0].RemoteID; got != want {
				t.Errorf("east sees peer ID %q, want %q", got, want)
			}
		})
	}
}

func TestResponderPicksConnByID(t *testing.T) {
	b := newBed(t, baseConn+"leftid=@west\nrightid=@east", "")
	// Two conns on east for the same addresses: the one whose rightid
	// (seen from west: leftid) matches is chosen.
	other := parseConn(t, baseConn+"leftid=@someone\nrightid=@east")
	other.Name = "other"
	if err := b.east.AddConn(other); err != nil {
		t.Fatal(err)
	}
	if err := b.east.AddConn(parseConn(t, baseConn+"leftid=@west\nrightid=@east")); err != nil {
		t.Fatal(err)
	}
	b.mustUp()
	if got := b.east.Status().IKESAs[0].Conn; got != "test" {
		t.Errorf("east chose conn %q", got)
	}
}

func TestProposalFamilies(t *testing.T) {
	for _, tc := range []struct{ ike, esp, want string }{
		{"aes256-sha256-modp2048", "aes256-sha256", "AES_CBC_256-HMAC_SHA2_256_128-HMAC_SHA2_256-MODP2048"},
		// Libreswan's spellings of aes128gcm16-prfsha256-ecp256 and so on
		// (package proposal does not read strongSwan's).
		{"aes_gcm16_128-sha2_256-ecp256", "aes_gcm16_128", "AES_GCM_16_128-HMAC_SHA2_256-DH19"},
		{"aes_gcm16_256-sha2_384-ecp384", "aes_gcm16_256", "AES_GCM_16_256-HMAC_SHA2_384-DH20"},
		{"chacha20poly1305-sha2_256-curve25519", "chacha20poly1305", "CHACHA20_POLY1305-HMAC_SHA2_256-DH31"},
		{"", "", "AES_GCM_16_256-HMAC_SHA2_512-DH19"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			conf := baseConn
			if tc.ike != "" {
				conf += "ike=" + tc.ike + "\nesp=" + tc.esp
			}
			b := newBed(t, conf, conf)
			b.mustUp()
			checkPair(t, b.wk, b.ek, kernel.Tunnel)
			if got := b.west.Status().IKESAs[0].Algorithms; got != tc.want {
				t.Errorf("IKE SA algorithms %q, want %q", got, tc.want)
			}
		})
	}
}

func TestResponderPreference(t *testing.T) {
	// West prefers CBC, east prefers GCM: east's order wins.
	b := newBed(t, baseConn+"ike=aes256-sha256-modp2048,aes_gcm16_256-sha256-modp2048",
		baseConn+"ike=aes_gcm16_256-sha256-modp2048,aes256-sha256-modp2048")
	b.mustUp()
	if got := b.west.Status().IKESAs[0].Algorithms; !strings.HasPrefix(got, "AES_GCM_16_256") {
		t.Errorf("algorithms %q, want east's first choice", got)
	}
}

func TestNullAuth(t *testing.T) {
	conf := strings.Replace(baseConn, "authby=secret", "authby=null", 1)
	b := newBed(t, conf, conf)
	b.wSecrets, b.eSecrets = nil, nil
	b.mustUp()
	checkPair(t, b.wk, b.ek, kernel.Tunnel)
	if got := b.east.Status().IKESAs[0].RemoteID; got != "ID_NULL" {
		t.Errorf("peer ID %q", got)
	}
}

func TestWrongPSK(t *testing.T) {
	b := newBed(t, baseConn, baseConn)
	b.eSecrets = psk("192.0.2.1 192.0.2.2 : another-secret")
	r := b.up()
	if r.done != 1 || r.err == nil || !strings.Contains(r.err.Error(), "peer rejected our authentication (PSK mismatch for IDs 192.0.2.1/192.0.2.2?)") {
		t.Fatalf("up: done %d err %v", r.done, r.err)
	}
	if !b.eastLog.has("peer's AUTH payload does not match the PSK for IDs 192.0.2.2/192.0.2.1") {
		t.Errorf("east log:\n%s", b.eastLog)
	}
	b.empty(t)
	b.noIKE(t)
}

func TestWrongPSKResponderSide(t *testing.T) {
	// East has no secret for west's ID... but knows one for a wildcard:
	// west accepts east's AUTH only if the PSKs match. Here east uses
	// the right PSK to check west and a wrong one... is not possible
	// with one table, so break west's check instead: the initiator
	// verifies east's AUTH with a different PSK by changing its secrets
	// after sending IKE_AUTH.
	b := newBed(t, baseConn, baseConn)
	b.net.drop = func(n int, p Packet) bool {
		if n == 3 { // IKE_AUTH request sent: now west's secret changes
			b.wSecrets = psk("192.0.2.1 192.0.2.2 : changed")
		}
		return false
	}
	r := b.up()
	if r.err == nil || !strings.Contains(r.err.Error(), "peer's AUTH payload does not match the PSK for IDs 192.0.2.1/192.0.2.2") {
		t.Fatalf("up: %v", r.err)
	}
	// West told east with AUTHENTICATION_FAILED, and east deleted what it
	// had installed.
	b.empty(t)
	b.noIKE(t)
}

func TestNoProposalChosen(t *testing.T) {
	b := newBed(t, baseConn+"ike=aes128-sha256-modp2048", baseConn+"ike=aes_gcm16_256-sha384-ecp384")
	r := b.up()
	if r.err == nil || !strings.Contains(r.err.Error(), "NO_PROPOSAL_CHOSEN") {
		t.Fatalf("up: %v", r.err)
	}
	b.empty(t)
	b.noIKE(t)
}

func TestInvalidKE(t *testing.T) {
	b := newBed(t, baseConn+"ike=aes256-sha256-modp2048+ecp256", baseConn+"ike=aes256-sha256-ecp256")
	r := b.mustUp()
	if !r.has("INVALID_KE_PAYLOAD") {
		t.Errorf("progress: %q", r.lines)
	}
	if got := b.west.Status().IKESAs[0].Algorithms; !strings.HasSuffix(got, "DH19") {
		t.Errorf("algorithms %q", got)
	}
	checkPair(t, b.wk, b.ek, kernel.Tunnel)
	if d := b.east.Status().IKESAs; len(d) != 1 {
		t.Errorf("east keeps %d IKE SAs", len(d))
	}
}

func TestNarrowing(t *testing.T) {
	west := strings.Replace(baseConn, "10.1.0.0/24", "10.1.0.0/16", 1) + "narrowing=yes"
	b := newBed(t, west, baseConn+"narrowing=yes")
	b.mustUp()
	wOut, _ := checkPair(t, b.wk, b.ek, kernel.Tunnel)
	if got := wOut.Selectors[0].Src; got != netip.MustParsePrefix("10.1.0.0/24") {
		t.Errorf("west's outbound selector source %v, want the narrowed 10.1.0.0/24", got)
	}
}

func TestTSUnacceptable(t *testing.T) {
	west := strings.Replace(baseConn, "10.1.0.0/24", "10.1.0.0/16", 1)
	b := newBed(t, west, baseConn)
	r := b.up()
	if r.err == nil || !strings.Contains(r.err.Error(), "TS_UNACCEPTABLE") || !strings.Contains(r.err.Error(), "IKE SA established") {
		t.Fatalf("up: %v", r.err)
	}
	b.empty(t)
	if len(b.west.Status().IKESAs) != 1 || len(b.east.Status().IKESAs) != 1 {
		t.Errorf("the IKE SA should stay up on both ends")
	}
	// Disjoint subnets fail the same way even with narrowing.
	west = strings.Replace(baseConn, "10.1.0.0/24", "10.9.0.0/24", 1) + "narrowing=yes"
	b = newBed(t, west, baseConn+"narrowing=yes")
	if r := b.up(); r.err == nil || !strings.Contains(r.err.Error(), "TS_UNACCEPTABLE") {
		t.Fatalf("disjoint: %v", r.err)
	}
	b.empty(t)
}

func TestInitiatorRejectsNarrowing(t *testing.T) {
	west := strings.Replace(baseConn, "10.1.0.0/24", "10.1.0.0/16", 1)
	b := newBed(t, west, baseConn+"narrowing=yes")
	r := b.up()
	if r.err == nil || !strings.Contains(r.err.Error(), "narrowing=no") {
		t.Fatalf("up: %v", r.err)
	}
	b.empty(t) // the Child SA was deleted with the peer
}

func TestTransportMode(t *testing.T) {
	conf := "left=192.0.2.1\nright=192.0.2.2\nauthby=secret\ntype=transport\nleftprotoport=tcp\nrightprotoport=tcp/80"
	b := newBed(t, conf, conf)
	b.mustUp()
	wOut, _ := checkPair(t, b.wk, b.ek, kernel.Transport)
	s := wOut.Selectors[0]
	if s.Src != netip.MustParsePrefix("192.0.2.1/32") || s.Dst != netip.MustParsePrefix("192.0.2.2/32") || s.Proto != 6 ||
		s.DstPorts != (kernel.PortRange{Lo: 80, Hi: 80}) {
		t.Errorf("selector %+v", s)
	}

	// Transport against tunnel: the initiator fails, nothing stays.
	b = newBed(t, conf, "left=192.0.2.1\nright=192.0.2.2\nauthby=secret")
	if r := b.up(); r.err == nil || !strings.Contains(r.err.Error(), "tunnel mode") {
		t.Fatalf("transport vs tunnel: %v", r.err)
	}
	b.empty(t)
	// Tunnel against transport: the responder refuses.
	b = newBed(t, "left=192.0.2.1\nright=192.0.2.2\nauthby=secret", conf)
	if r := b.up(); r.err == nil || !strings.Contains(r.err.Error(), "NO_PROPOSAL_CHOSEN") {
		t.Fatalf("tunnel vs transport: %v", r.err)
	}
	b.empty(t)
}

func TestDelete(t *testing.T) {
	for _, side := range []string{"west", "east"} {
		t.Run(side, func(t *testing.T) {
			b := newBed(t, baseConn, baseConn)
			b.mustUp()
			e := b.west
			if side == "east" {
				e = b.east
			}
			var done []Progress
			if err := e.Terminate("test", func(p Progress) { done = append(done, p) }); err != nil {
				t.Fatal(err)
			}
			b.net.pump()
			if len(done) == 0 || !done[len(done)-1].Done || done[len(done)-1].Err != nil {
				t.Errorf("terminate progress %+v", done)
			}
			b.empty(t)
			b.noIKE(t)
			for name, e := range map[string]*Engine{"west": b.west, "east": b.east} {
				if d := e.Status().Counters.Drops; len(d) != 0 {
					t.Errorf("%s dropped %v", name, d)
				}
			}
		})
	}
}

func TestDeleteChild(t *testing.T) {
	b := newBed(t, baseConn, baseConn)
	b.mustUp()
	w := b.east.workers[0]
	w.exec(func(w *worker) {
		for _, sa := range w.sas {
			w.deleteChildWithPeer(sa, sa.children[0])
		}
	})
	b.net.pump()
	b.empty(t)
	if len(b.west.Status().IKESAs) != 1 || len(b.east.Status().IKESAs) != 1 {
		t.Errorf("the IKE SA should stay")
	}
	if len(b.west.Status().ChildSAs) != 0 {
		t.Errorf("west still lists a Child SA")
	}
}

func TestDeleteConnAndClose(t *testing.T) {
	b := newBed(t, baseConn, baseConn)
	b.mustUp()
	if err := b.west.DeleteConn("test"); err != nil {
		t.Fatal(err)
	}
	b.net.pump()
	b.empty(t)
	b.noIKE(t)
	if err := b.west.Initiate("test", nil); err == nil {
		t.Error("initiating a deleted conn")
	}
	b.west.AddConn(parseConn(t, baseConn))
	b.mustUp()
	b.east.Close(context.Background())
	b.net.pump()
	b.empty(t)
	b.noIKE(t)
}

func TestLiveness(t *testing.T) {
	b := newBed(t, baseConn+"dpddelay=10s\ndpdtimeout=30s", baseConn)
	b.mustUp()
	before := b.east.Status().Counters.Received
	b.tick(11 * time.Second)
	if got := b.east.Status().Counters.Received; got != before+1 {
		t.Errorf("east received %d datagrams, want one liveness request", got-before)
	}
	if len(b.west.Status().IKESAs) != 1 {
		t.Errorf("west lost its IKE SA")
	}
	// With east gone, the liveness check times out and west cleans up.
	b.net.drop = func(int, Packet) bool { return true }
	for i := 0; i < 100 && len(b.west.Status().IKESAs) > 0; i++ {
		b.tick(5 * time.Second)
	}
	if len(b.west.Status().IKESAs) != 0 || len(b.wk.SAs()) != 0 {
		t.Errorf("west kept its SAs after the peer went away")
	}
}

func TestRetransmitFromCache(t *testing.T) {
	for _, n := range []int{2, 4} { // the IKE_SA_INIT response, the IKE_AUTH response
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			b := newBed(t, baseConn, baseConn)
			b.net.drop = func(i int, p Packet) bool { return i == n }
			r := &upResult{}
			b.west.Initiate("test", r.progress)
			b.net.pump()
			if r.done != 0 {
				t.Fatalf("done before the retransmission: %v", r.err)
			}
			dh := b.east.Status().Counters.DHOps
			b.tick(500 * time.Millisecond)
			if r.done != 1 || r.err != nil {
				t.Fatalf("after retransmission: done %d err %v", r.done, r.err)
			}
			es := b.east.Status().Counters
			if es.DHOps != dh || es.CachedResponses != 1 {
				t.Errorf("east: DH ops %d -> %d, cached responses %d", dh, es.DHOps, es.CachedResponses)
			}
			if ws := b.west.Status().Counters; ws.Retransmits != 1 {
				t.Errorf("west retransmits %d", ws.Retransmits)
			}
			checkPair(t, b.wk, b.ek, kernel.Tunnel)
		})
	}
}

func TestDuplicates(t *testing.T) {
	b := newBed(t, baseConn, baseConn)
	b.net.dup = map[int]bool{1: true, 2: true, 3: true, 4: true}
	b.mustUp()
	checkPair(t, b.wk, b.ek, kernel.Tunnel)
	if len(b.east.Status().IKESAs) != 1 {
		t.Errorf("east has %d IKE SAs", len(b.east.Status().IKESAs))
	}
}

func TestRetransmitTimeout(t *testing.T) {
	b := newBed(t, baseConn, baseConn)
	b.net.drop = func(i int, p Packet) bool { return p.Remote.Addr() == eastAddr && i > 2 } // IKE_AUTH never arrives
	r := &upResult{}
	b.west.Initiate("test", r.progress)
	b.net.pump()
	var sends int
	for i := 0; i < 400 && r.done == 0; i++ {
		b.tick(250 * time.Millisecond)
		sends++
	}
	if r.done != 1 || r.err == nil || !strings.Contains(r.err.Error(), "retransmit-timeout") {
		t.Fatalf("done %d err %v", r.done, r.err)
	}
	// 0.5+1+2+4+8+16+32 s: 7 retransmissions before 60 s.
	if n := b.west.Status().Counters.Retransmits; n != 6 && n != 7 {
		t.Errorf("%d retransmissions", n)
	}
	if len(b.west.Status().IKESAs) != 0 || len(b.wk.SAs()) != 0 || b.wk.Reserved() != 0 {
		t.Errorf("west kept state")
	}
}

func TestHalfOpenExpiry(t *testing.T) {
	b := newBed(t, baseConn, baseConn)
	b.net.drop = func(i int, p Packet) bool { return i >= 3 }
	b.west.Initiate("test", nil)
	b.net.pump()
	if st := b.east.Status().IKESAs; len(st) != 1 || st[0].State != "IKE_SA_INIT_R" {
		t.Fatalf("east: %+v", st)
	}
	b.tick(DefaultHalfOpenTimeout - time.Second)
	if len(b.east.Status().IKESAs) != 1 {
		t.Fatalf("expired early")
	}
	b.tick(2 * time.Second)
	if n := len(b.east.Status().IKESAs); n != 0 {
		t.Errorf("east still has %d half-open IKE SAs", n)
	}
}

func TestNAT(t *testing.T) {
	east := strings.Replace(baseConn, "left=192.0.2.1", "left=%any", 1)
	b := newBed(t, baseConn, east)
	b.net.nat = newNAT(westAddr, natAddr)
	b.mustUp()
	wOut, _ := checkPairNAT(t, b.wk, b.ek, kernel.Tunnel, true)
	ws, es := b.west.Status().IKESAs[0], b.east.Status().IKESAs[0]
	if !ws.NATUs || ws.NATPeer || es.NATUs || !es.NATPeer {
		t.Errorf("NAT flags: west us %v peer %v, east us %v peer %v", ws.NATUs, ws.NATPeer, es.NATUs, es.NATPeer)
	}
	if ws.Local.Port() != 4500 || ws.Remote.Port() != 4500 || es.Local.Port() != 4500 || es.Remote.Addr() != natAddr {
		t.Errorf("after the float: west %v->%v, east %v->%v", ws.Local, ws.Remote, es.Local, es.Remote)
	}
	if wOut.Encap == nil || wOut.Encap.SrcPort != 4500 || wOut.Encap.DstPort != 4500 {
		t.Errorf("west outbound encap %+v", wOut.Encap)
	}
	eo := saBy(b.ek, kernel.Out)[0]
	if eo.Encap == nil || eo.Encap.DstPort != es.Remote.Port() || eo.Dst != natAddr {
		t.Errorf("east outbound SA to %v encap %+v", eo.Dst, eo.Encap)
	}
	// Only IKE_SA_INIT went over port 500.
	for i, p := range b.net.sent {
		if i >= 2 && (p.Local.Port() != 4500 || p.Remote.Port() == 500) {
			t.Errorf("datagram %d after the float: %v -> %v", i+1, p.Local, p.Remote)
		}
	}
}

func TestEncapsulationYes(t *testing.T) {
	conf := baseConn + "encapsulation=yes"
	b := newBed(t, conf, conf)
	b.mustUp()
	wOut, _ := checkPair(t, b.wk, b.ek, kernel.Tunnel)
	if wOut.Encap == nil || *wOut.Encap != (kernel.Encap{SrcPort: 4500, DstPort: 4500}) {
		t.Errorf("encap %+v", wOut.Encap)
	}
	if st := b.west.Status().IKESAs[0]; st.NATUs || st.NATPeer {
		t.Errorf("NAT reported without a NAT")
	}
	if p := b.net.sent[0]; p.Local.Port() != 500 {
		t.Errorf("IKE_SA_INIT from port %d", p.Local.Port())
	}

	// With rightikeport=4500 it starts on the NAT-T port.
	conf = baseConn + "encapsulation=yes\nrightikeport=4500"
	b = newBed(t, conf, baseConn+"encapsulation=yes")
	b.mustUp()
	if p := b.net.sent[0]; p.Local.Port() != 4500 || p.Remote.Port() != 4500 {
		t.Errorf("IKE_SA_INIT %v -> %v", p.Local, p.Remote)
	}
	checkPair(t, b.wk, b.ek, kernel.Tunnel)
}

func TestKernelFailure(t *testing.T) {
	b := newBed(t, baseConn, baseConn)
	fk := &failingKernel{Backend: b.wk, failOut: true}
	b.west.o.Kernel = fk
	r := b.up()
	if r.err == nil || !strings.Contains(r.err.Error(), "kernel: adding outbound SA") {
		t.Fatalf("up: %v", r.err)
	}
	b.empty(t)
}

func TestResponderKernelFailure(t *testing.T) {
	b := newBed(t, baseConn, baseConn)
	b.east.o.Kernel = &failingKernel{Backend: b.ek, failOut: true}
	r := b.up()
	if r.err == nil || !strings.Contains(r.err.Error(), "TEMPORARY_FAILURE") {
		t.Fatalf("up: %v", r.err)
	}
	if !b.eastLog.has("kernel: adding outbound SA") {
		t.Errorf("east log:\n%s", b.eastLog)
	}
	b.empty(t)
}

type failingKernel struct {
	*memory.Backend
	failOut bool
}

func (k *failingKernel) AddSA(ctx context.Context, sa *kernel.SA) error {
	if k.failOut && sa.Dir == kernel.Out {
		return errors.New("injected failure")
	}
	return k.Backend.AddSA(ctx, sa)
}

func TestAddConnErrors(t *testing.T) {
	e, _ := NewEngine(Options{Kernel: memory.New(), Send: func(Packet) {}})
	for _, tc := range []struct{ conf, want string }{
		{"left=192.0.2.1\nright=192.0.2.2", "set leftcert="},
		{"left=192.0.2.1\nright=192.0.2.2\nauthby=secret\nleftcert=gw", "no trust store"},
		{"left=192.0.2.1\nright=192.0.2.2\nauthby=secret\nrightauth=ecdsa", "no trust store"},
		{"left=192.0.2.1\nright=peer.example.com\nauthby=secret", "not an IP address"},
		{"left=192.0.2.1\nright=2001:db8::1\nauthby=secret", "different address families"},
		{"left=192.0.2.1\nright=192.0.2.2\nauthby=secret\nrightid=%fromcert", "%fromcert needs"},
		{"left=192.0.2.1\nright=192.0.2.2\nauthby=secret\nrightid=\"C=CH, XX=x\"", "remote id"},
		{"left=192.0.2.1\nright=192.0.2.2\nauthby=secret\ntype=transport\nleftsubnet=10.0.0.0/24", "type=transport with leftsubnet"},
	} {
		err := e.AddConn(parseConn(t, tc.conf))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.conf, err, tc.want)
		}
	}
	if err := e.Initiate("nope", nil); err == nil {
		t.Error("Initiate of an unknown conn")
	}
	if err := e.AddConn(parseConn(t, "left=192.0.2.1\nright=%any\nauthby=secret")); err != nil {
		t.Fatal(err)
	}
	if err := e.Initiate("test", nil); err == nil || !strings.Contains(err.Error(), "peer's address is not known") {
		t.Errorf("Initiate to %%any: %v", err)
	}
}

func TestMalformed(t *testing.T) {
	b := newBed(t, baseConn, baseConn)
	b.mustUp()
	from := netip.AddrPortFrom(westAddr, 500)
	to := netip.AddrPortFrom(eastAddr, 500)
	inputs := [][]byte{
		nil, {1, 2, 3},
		bytes.Repeat([]byte{0xff}, 28),
		append(make([]byte, 17), 0x10, 34, 8, 0, 0, 0, 0, 0, 0, 0, 28), // IKEv1
	}
	for _, p := range b.net.sent {
		for i := 0; i < len(p.Data); i += 7 {
			d := bytes.Clone(p.Data)
			d[i] ^= 0x55
			inputs = append(inputs, d)
		}
		inputs = append(inputs, p.Data[:len(p.Data)/2])
	}
	for _, in := range inputs {
		b.east.Receive(Packet{Local: to, Remote: from, Data: in})
		b.west.Receive(Packet{Local: from, Remote: to, Data: in})
	}
	b.net.pump()
	st := b.east.Status()
	var total uint64
	for _, n := range st.Counters.Drops {
		total += n
	}
	if total == 0 {
		t.Errorf("no drops counted: %+v", st.Counters)
	}
	t.Logf("east drops: %v", st.Counters.Drops)
	// The established SAs survive the garbage (mutated IKE_SA_INIT
	// requests may open half-open SAs, as they would from any sender).
	est := 0
	for _, sa := range st.IKESAs {
		if sa.State == "ESTABLISHED_IKE_SA" {
			est++
		}
	}
	if est != 1 || len(st.ChildSAs) != 1 || len(b.ek.SAs()) != 2 {
		t.Errorf("east lost its SAs: %+v", st.IKESAs)
	}
}

func TestWorkers(t *testing.T) {
	// The same exchange with worker goroutines, many SAs at once.
	var mu sync.Mutex
	engines := map[netip.Addr]*Engine{}
	send := func(p Packet) {
		mu.Lock()
		e := engines[p.Remote.Addr()]
		mu.Unlock()
		if e != nil {
			e.Receive(Packet{Local: p.Remote, Remote: p.Local, Data: p.Data})
		}
	}
	sec := psk("192.0.2.1 192.0.2.2 : secret-one")
	mk := func(addr netip.Addr, k kernel.IPsec) *Engine {
		e, err := NewEngine(Options{Kernel: k, Workers: 4, Send: send, Secrets: func() *config.Secrets { return sec },
			IsLocal: func(a netip.Addr) bool { return a == addr }})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.AddConn(parseConn(t, baseConn)); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		engines[addr] = e
		mu.Unlock()
		return e
	}
	wk, ek := memory.New(), memory.New()
	west, east := mk(westAddr, wk), mk(eastAddr, ek)
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		if err := west.Initiate("test", func(p Progress) {
			if p.Done {
				errs <- p.Err
				wg.Done()
			}
		}); err != nil {
			t.Fatal(err)
		}
		go east.Status()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := len(west.Status().IKESAs); got != n {
		t.Errorf("west has %d IKE SAs", got)
	}
	if got := len(ek.SAs()); got != 2*n {
		t.Errorf("east kernel has %d SAs", got)
	}
	done := make(chan struct{})
	west.Terminate("test", func(p Progress) {
		if p.Done {
			close(done)
		}
	})
	<-done
	time.Sleep(50 * time.Millisecond) // east handles the deletes on its workers
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	west.Close(ctx)
	east.Close(ctx)
	if len(wk.SAs()) != 0 || len(ek.SAs()) != 0 || len(ek.Policies()) != 0 {
		t.Errorf("SAs left: west %d east %d", len(wk.SAs()), len(ek.SAs()))
	}
}

func TestNarrowTS(t *testing.T) {
	ts := func(prefix string, proto uint8, lo, hi uint16) message.TrafficSelector {
		return message.SelectorFromPrefix(netip.MustParsePrefix(prefix), proto, lo, hi)
	}
	list := func(s ...message.TrafficSelector) []message.TrafficSelector { return s }
	ours := list(ts("10.0.0.0/16", 0, 0, 65535))
	for _, tc := range []struct {
		name      string
		theirs    []message.TrafficSelector
		narrowing bool
		want      []message.TrafficSelector
		ok        bool
	}{
		{"equal", ours, false, ours, true},
		{"subset", list(ts("10.0.1.0/24", 6, 80, 80)), false, list(ts("10.0.1.0/24", 6, 80, 80)), true},
		{"superset without narrowing", list(ts("10.0.0.0/8", 0, 0, 65535)), false, nil, false},
		{"superset narrowed", list(ts("10.0.0.0/8", 17, 0, 65535)), true, list(ts("10.0.0.0/16", 17, 0, 65535)), true},
		{"disjoint", list(ts("192.168.0.0/16", 0, 0, 65535)), true, nil, false},
		{"other family", list(ts("2001:db8::/32", 0, 0, 65535)), true, nil, false},
		{"only a security label", list(message.TrafficSelector{TSType: message.TSSecLabel, Raw: []byte("x")}), true, nil, false},
	} {
		got, ok := narrowTS(ours, tc.theirs, tc.narrowing)
		if ok != tc.ok || !slices.EqualFunc(got, tc.want, func(a, b message.TrafficSelector) bool { return tsEqual(&a, &b) }) {
			t.Errorf("%s: got %v %v, want %v %v", tc.name, tsString(got), ok, tsString(tc.want), tc.ok)
		}
	}
}

func TestSecondUpKeepsPolicies(t *testing.T) {
	b := newBed(t, baseConn, baseConn)
	b.mustUp()
	b.mustUp()
	if n := len(b.wk.SAs()); n != 4 {
		t.Fatalf("west kernel has %d SAs, want 4", n)
	}
	st := b.west.Status()
	newest := st.ChildSAs[0]
	for _, c := range st.ChildSAs {
		if c.ReqID > newest.ReqID {
			newest = c
		}
	}
	// The older IKE SA goes: the policies stay, serving the newer one.
	b.west.workers[0].exec(func(w *worker) {
		for _, sa := range w.sas {
			if sa.children[0].reqid != newest.ReqID {
				w.deleteIKE(sa, "test", nil, true)
			}
		}
	})
	b.net.pump()
	for name, k := range map[string]*memory.Backend{"west": b.wk, "east": b.ek} {
		if n := len(k.SAs()); n != 2 {
			t.Errorf("%s: %d SAs, want 2", name, n)
		}
		if n := len(k.Policies()); n != 3 {
			t.Errorf("%s: %d policies, want 3", name, n)
		}
	}
	for _, p := range b.wk.Policies() {
		if p.Template.ReqID != newest.ReqID {
			t.Errorf("policy %v serves reqid %d, want %d", p.Selector, p.Template.ReqID, newest.ReqID)
		}
	}
	b.west.Terminate("test", nil)
	b.net.pump()
	b.empty(t)
	b.noIKE(t)
}
