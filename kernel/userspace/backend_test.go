package userspace

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"goswan/esp"
	"goswan/kernel"
	"goswan/proposal"
)

type sent struct {
	l, r netip.AddrPort
	p    []byte
}

func newMemBackend(t *testing.T) (*Backend, *memDev, chan sent) {
	t.Helper()
	dev := newMemDev(1400)
	out := make(chan sent, 1024)
	b, err := New(Config{Device: dev, Logf: t.Logf, AcquireInterval: time.Hour, SendESP: func(l, r netip.AddrPort, p []byte) error {
		out <- sent{l, r, append([]byte(nil), p...)}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, dev, out
}

func nextEvent(t *testing.T, b *Backend) kernel.Event {
	t.Helper()
	select {
	case ev := <-b.Events():
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event in 5 s")
	}
	return kernel.Event{}
}

func noEvent(t *testing.T, b *Backend) {
	t.Helper()
	select {
	case ev := <-b.Events():
		t.Fatalf("unexpected event %+v", ev)
	case <-time.After(50 * time.Millisecond):
	}
}

var (
	outerA = netip.MustParseAddr("192.0.2.1")
	outerB = netip.MustParseAddr("192.0.2.2")
	subA   = netip.MustParsePrefix("10.1.0.0/24")
	subB   = netip.MustParsePrefix("10.2.0.0/24")
)

func outSA(spi, reqid uint32, lt kernel.Lifetime) *kernel.SA {
	return &kernel.SA{
		SPI: spi, Proto: kernel.ESP, Mode: kernel.Tunnel, Dir: kernel.Out,
		Src: outerA, Dst: outerB, Encap: &kernel.Encap{SrcPort: 4500, DstPort: 4501},
		Encr: proposal.EncrAESGCM16, EncrKey: make([]byte, 20), ReplayWindow: 64,
		Lifetime: lt, ReqID: reqid,
	}
}

func protect(reqid uint32) *kernel.Policy {
	return &kernel.Policy{Dir: kernel.Out, Selector: kernel.Selector{Src: subA, Dst: subB}, Action: kernel.Protect,
		Template: kernel.Template{Src: outerA, Dst: outerB, Proto: kernel.ESP, ReqID: reqid}}
}

func TestAcquire(t *testing.T) {
	b, dev, out := newMemBackend(t)
	ctx := context.Background()
	if err := b.AddPolicy(ctx, protect(42)); err != nil {
		t.Fatal(err)
	}
	pkt := udpPacket(netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.2.0.9"), 1111, 53, 100)
	dev.inject(pkt)
	ev := nextEvent(t, b)
	want := kernel.Selector{Src: netip.MustParsePrefix("10.1.0.5/32"), Dst: netip.MustParsePrefix("10.2.0.9/32"),
		Proto: 17, SrcPorts: kernel.PortRange{Lo: 1111, Hi: 1111}, DstPorts: kernel.PortRange{Lo: 53, Hi: 53}}
	if ev.Kind != kernel.Acquire || ev.ReqID != 42 || ev.Selector != want {
		t.Fatalf("event %+v, want an acquire for reqid 42 and %+v", ev, want)
	}
	// Once per policy per interval.
	dev.inject(pkt)
	dev.inject(pkt)
	waitFor(t, 5*time.Second, "3 acquire drops", func() bool { return b.Stats().OutAcquire == 3 })
	noEvent(t, b)

	// The SA arrives: the packets go out, from the SA's addresses and ports.
	if err := b.AddSA(ctx, outSA(0x1000, 42, kernel.Lifetime{})); err != nil {
		t.Fatal(err)
	}
	dev.inject(pkt)
	s := <-out
	if s.l != netip.MustParseAddrPort("192.0.2.1:4500") || s.r != netip.MustParseAddrPort("192.0.2.2:4501") {
		t.Errorf("sent from %v to %v", s.l, s.r)
	}
	if spi := uint32(s.p[0])<<24 | uint32(s.p[1])<<16 | uint32(s.p[2])<<8 | uint32(s.p[3]); spi != 0x1000 {
		t.Errorf("sent SPI %#x, want 0x1000", spi)
	}
	if st := b.Stats(); st.Acquires != 1 || st.OutPackets != 1 {
		t.Errorf("stats %+v", st)
	}

	// A packet no policy covers is dropped and counted.
	dev.inject(udpPacket(netip.MustParseAddr("10.9.0.5"), netip.MustParseAddr("10.2.0.9"), 1, 2, 60))
	waitFor(t, 5*time.Second, "a no-policy drop", func() bool { return b.Stats().OutNoPolicy == 1 })
}

func TestLifetimeEvents(t *testing.T) {
	b, dev, out := newMemBackend(t)
	ctx := context.Background()
	sa := outSA(0x2000, 5, kernel.Lifetime{Soft: kernel.Limits{Packets: 3}, Hard: kernel.Limits{Packets: 5}})
	if err := b.AddSA(ctx, sa); err != nil {
		t.Fatal(err)
	}
	if err := b.AddPolicy(ctx, protect(5)); err != nil {
		t.Fatal(err)
	}
	pkt := udpPacket(netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.2.0.9"), 1111, 53, 100)
	for i := 0; i < 3; i++ {
		dev.inject(pkt)
		<-out
	}
	ev := nextEvent(t, b)
	if ev.Kind != kernel.SoftExpire || ev.SA != sa.ID() || ev.ReqID != 5 {
		t.Fatalf("event %+v, want soft expire of %v", ev, sa.ID())
	}
	for i := 0; i < 2; i++ {
		dev.inject(pkt)
		<-out
	}
	ev = nextEvent(t, b)
	if ev.Kind != kernel.HardExpire || ev.SA != sa.ID() {
		t.Fatalf("event %+v, want hard expire of %v", ev, sa.ID())
	}
	// The dead SA carries nothing more: the policy traps again.
	dev.inject(pkt)
	if ev = nextEvent(t, b); ev.Kind != kernel.Acquire {
		t.Fatalf("event %+v, want an acquire after the hard expiry", ev)
	}
	st, err := b.QuerySA(ctx, sa.ID())
	if err != nil || st.Packets != 5 {
		t.Fatalf("QuerySA = %+v, %v; want 5 packets", st, err)
	}

	// Time lifetimes fire on an idle SA through the lifetime loop.
	clk := esp.NewClock(time.Now())
	dev2 := newMemDev(1400)
	b2, err := New(Config{Device: dev2, SendESP: func(l, r netip.AddrPort, p []byte) error { return nil },
		Clock: clk, LifetimeInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	sa2 := outSA(0x3000, 6, kernel.Lifetime{Soft: kernel.Limits{Time: time.Minute}, Hard: kernel.Limits{Time: 2 * time.Minute}})
	if err := b2.AddSA(ctx, sa2); err != nil {
		t.Fatal(err)
	}
	clk.Set(time.Now().Add(90 * time.Second))
	if ev := nextEvent(t, b2); ev.Kind != kernel.SoftExpire || ev.SA != sa2.ID() {
		t.Fatalf("event %+v, want soft expire (time)", ev)
	}
}

func TestRekeyNewestSAWins(t *testing.T) {
	b, dev, out := newMemBackend(t)
	ctx := context.Background()
	if err := b.AddSA(ctx, outSA(0x1111, 9, kernel.Lifetime{})); err != nil {
		t.Fatal(err)
	}
	if err := b.AddPolicy(ctx, protect(9)); err != nil {
		t.Fatal(err)
	}
	pkt := udpPacket(netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.2.0.9"), 1, 2, 80)
	spiOf := func() uint32 {
		dev.inject(pkt)
		s := <-out
		return uint32(s.p[0])<<24 | uint32(s.p[1])<<16 | uint32(s.p[2])<<8 | uint32(s.p[3])
	}
	if got := spiOf(); got != 0x1111 {
		t.Fatalf("SPI %#x, want 0x1111", got)
	}
	if err := b.AddSA(ctx, outSA(0x2222, 9, kernel.Lifetime{})); err != nil {
		t.Fatal(err)
	}
	if got := spiOf(); got != 0x2222 {
		t.Fatalf("after rekey SPI %#x, want the new 0x2222", got)
	}
	if err := b.DeleteSA(ctx, kernel.SAID{Dst: outerB, SPI: 0x2222, Proto: kernel.ESP}); err != nil {
		t.Fatal(err)
	}
	if got := spiOf(); got != 0x1111 {
		t.Fatalf("after deleting the new SA, SPI %#x, want the old 0x1111", got)
	}
	// UpdateSA moves the outer end point (NAT mapping changed).
	moved := outSA(0x1111, 9, kernel.Lifetime{})
	moved.Encap.DstPort = 6000
	if err := b.UpdateSA(ctx, kernel.SAID{Dst: outerB, SPI: 0x1111, Proto: kernel.ESP}, moved); err != nil {
		t.Fatal(err)
	}
	dev.inject(pkt)
	if s := <-out; s.r.Port() != 6000 {
		t.Fatalf("after UpdateSA sent to %v, want port 6000", s.r)
	}
}

func TestAddSARefusals(t *testing.T) {
	b, _, _ := newMemBackend(t)
	ctx := context.Background()
	raw := outSA(0x5000, 1, kernel.Lifetime{})
	raw.Encap = nil
	if err := b.AddSA(ctx, raw); err == nil || !strings.Contains(err.Error(), "UDP encapsulation") {
		t.Errorf("raw ESP SA: err = %v, want one about UDP encapsulation", err)
	}
	tr := outSA(0x5001, 1, kernel.Lifetime{})
	tr.Mode = kernel.Transport
	if err := b.AddSA(ctx, tr); err == nil {
		t.Error("transport mode SA accepted")
	}
	in := outSA(0x5002, 1, kernel.Lifetime{})
	in.Dir = kernel.In
	if err := b.AddSA(ctx, in); err == nil || !strings.Contains(err.Error(), "GetSPI") {
		t.Errorf("inbound SA without GetSPI: err = %v", err)
	}
	spi, err := b.GetSPI(ctx, outerB, outerA, kernel.ESP, 1)
	if err != nil || spi < 256 {
		t.Fatalf("GetSPI = %#x, %v", spi, err)
	}
	if err := b.DeleteSA(ctx, kernel.SAID{Dst: outerA, SPI: spi, Proto: kernel.ESP}); err != nil {
		t.Errorf("releasing a reserved SPI: %v", err)
	}
	if err := b.DeleteSA(ctx, kernel.SAID{Dst: outerA, SPI: spi, Proto: kernel.ESP}); !errors.Is(err, kernel.ErrNotFound) {
		t.Errorf("deleting twice: %v, want ErrNotFound", err)
	}
	if err := b.DeletePolicy(ctx, protect(1)); !errors.Is(err, kernel.ErrNotFound) {
		t.Errorf("deleting a missing policy: %v, want ErrNotFound", err)
	}
}

func TestRoutesAndPolicies(t *testing.T) {
	dev := newMemDev(1400)
	var added, deleted []netip.Prefix
	b, err := New(Config{Device: dev, SendESP: func(l, r netip.AddrPort, p []byte) error { return nil },
		AddRoute:    func(p netip.Prefix) error { added = append(added, p); return nil },
		DeleteRoute: func(p netip.Prefix) error { deleted = append(deleted, p); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	p := protect(3)
	for i := 0; i < 2; i++ { // the second replaces the first
		if err := b.AddPolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	bl := &kernel.Policy{Dir: kernel.Out, Selector: kernel.Selector{Src: subA, Dst: netip.MustParsePrefix("10.3.0.0/16")}, Action: kernel.Block}
	if err := b.AddPolicy(ctx, bl); err != nil {
		t.Fatal(err)
	}
	if len(added) != 1 || added[0] != subB {
		t.Fatalf("routes added %v, want [%v]", added, subB)
	}
	if n := len(b.Policies()); n != 2 {
		t.Fatalf("%d policies, want 2", n)
	}
	dev.inject(udpPacket(netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.3.1.1"), 1, 2, 60))
	waitFor(t, 5*time.Second, "a block drop", func() bool { return b.Stats().OutBlocked == 1 })
	if err := b.DeletePolicy(ctx, p); err != nil {
		t.Fatal(err)
	}
	if len(deleted) != 1 || deleted[0] != subB {
		t.Fatalf("routes deleted %v, want [%v]", deleted, subB)
	}
}

// TestBypassRoutes checks that outbound Bypass policies hold a route past
// the device per destination prefix (the first adds it, the last deletes
// it), that a failed add is logged without failing the policy or being
// deleted later, and that a Device with the methods is used when the
// hooks are nil.
func TestBypassRoutes(t *testing.T) {
	ctx := context.Background()
	pass := func(dst string) *kernel.Policy {
		return &kernel.Policy{Dir: kernel.Out, Selector: kernel.Selector{Src: subA, Dst: netip.MustParsePrefix(dst)}, Action: kernel.Bypass}
	}
	var added, deleted []netip.Prefix
	fail := false
	b, err := New(Config{Device: newMemDev(1400), SendESP: func(l, r netip.AddrPort, p []byte) error { return nil },
		AddBypassRoute: func(p netip.Prefix) error {
			if fail {
				return errors.New("no route")
			}
			added = append(added, p)
			return nil
		},
		DeleteBypassRoute: func(p netip.Prefix) error { deleted = append(deleted, p); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	five := netip.MustParsePrefix("10.2.0.5/32")
	p1, p2 := pass("10.2.0.5/32"), pass("10.2.0.5/32")
	p2.Selector.Src = netip.MustParsePrefix("10.1.1.0/24")
	for _, p := range []*kernel.Policy{p1, p1, p2} { // p1 twice: a replacement
		if err := b.AddPolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	in := pass("10.2.0.6/32")
	in.Dir = kernel.In
	if err := b.AddPolicy(ctx, in); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(added, []netip.Prefix{five}) || len(deleted) != 0 {
		t.Fatalf("after adding: added %v, deleted %v; want [%v], []", added, deleted, five)
	}
	if err := b.DeletePolicy(ctx, p1); err != nil {
		t.Fatal(err)
	}
	if len(deleted) != 0 {
		t.Fatalf("deleted %v while p2 still holds it", deleted)
	}
	if err := b.DeletePolicy(ctx, p2); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(deleted, []netip.Prefix{five}) {
		t.Fatalf("deleted %v, want [%v]", deleted, five)
	}
	fail = true
	if err := b.AddPolicy(ctx, p1); err != nil {
		t.Fatalf("a failed bypass route failed the policy: %v", err)
	}
	fail = false
	if err := b.AddPolicy(ctx, p2); err != nil {
		t.Fatal(err)
	}
	if err := b.DeletePolicy(ctx, p1); err != nil {
		t.Fatal(err)
	}
	if len(deleted) != 1 {
		t.Fatalf("deleting the policy whose route failed deleted p2's: %v", deleted)
	}

	// A device with the methods, no hooks.
	dev := &bypassDev{memDev: newMemDev(1400)}
	b2, err := New(Config{Device: dev, SendESP: func(l, r netip.AddrPort, p []byte) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if err := b2.AddPolicy(ctx, p1); err != nil {
		t.Fatal(err)
	}
	if err := b2.DeletePolicy(ctx, p1); err != nil {
		t.Fatal(err)
	}
	if dev.adds != 1 || dev.dels != 1 {
		t.Errorf("device bypass routes: %d adds, %d deletes; want 1, 1", dev.adds, dev.dels)
	}
}

type bypassDev struct {
	*memDev
	adds, dels int
}

func (d *bypassDev) AddBypassRoute(netip.Prefix) error    { d.adds++; return nil }
func (d *bypassDev) DeleteBypassRoute(netip.Prefix) error { d.dels++; return nil }
