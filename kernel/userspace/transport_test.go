package userspace

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"goswan/kernel"
	"goswan/proposal"
)

// udpPacket6 builds an IPv6 UDP packet of size octets (checksum left 0:
// nothing on this path checks it).
func udpPacket6(src, dst netip.Addr, sport, dport uint16, size int) []byte {
	p := make([]byte, size)
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:6], uint16(size-40))
	p[6] = 17
	p[7] = 64
	s, d := src.As16(), dst.As16()
	copy(p[8:24], s[:])
	copy(p[24:40], d[:])
	binary.BigEndian.PutUint16(p[40:42], sport)
	binary.BigEndian.PutUint16(p[42:44], dport)
	binary.BigEndian.PutUint16(p[44:46], uint16(size-40))
	for i := 48; i < size; i++ {
		p[i] = byte(i)
	}
	return p
}

type hostRoute struct {
	dst netip.Prefix
	src netip.Addr
}

// routeLog records the host-route hooks' calls.
type routeLog struct {
	mu         sync.Mutex
	add, del   []hostRoute
	tunnelAdds int
}

func (r *routeLog) config(c *Config) {
	c.AddHostRoute = func(dst netip.Prefix, src netip.Addr) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.add = append(r.add, hostRoute{dst, src})
		return nil
	}
	c.DeleteHostRoute = func(dst netip.Prefix, src netip.Addr) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.del = append(r.del, hostRoute{dst, src})
		return nil
	}
	c.AddRoute = func(netip.Prefix) error { r.mu.Lock(); r.tunnelAdds++; r.mu.Unlock(); return nil }
}

// transportChild installs a transport-mode Child SA between hosts a (at
// ha) and b (at hb), as the IKE code does for type=transport: host
// selectors, no forward policy, UDP encapsulation. It returns the policies
// it added on a and the SA ids (a's out, b's out).
func transportChild(t *testing.T, a, b *Backend, ha, hb netip.Addr, reqid uint32) (pols []*kernel.Policy, ab, ba kernel.SAID) {
	t.Helper()
	ctx := context.Background()
	host := func(x netip.Addr) netip.Prefix { return netip.PrefixFrom(x, x.BitLen()) }
	key := func() []byte { k := make([]byte, 20); rand.Read(k); return k }
	kab, kba := key(), key()
	spiB, err := b.GetSPI(ctx, ha, hb, kernel.ESP, reqid)
	if err != nil {
		t.Fatal(err)
	}
	spiA, err := a.GetSPI(ctx, hb, ha, kernel.ESP, reqid)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(spi uint32, dir kernel.Direction, src, dst netip.Addr, k []byte) *kernel.SA {
		return &kernel.SA{
			SPI: spi, Proto: kernel.ESP, Mode: kernel.Transport, Dir: dir,
			Src: src, Dst: dst, Encap: &kernel.Encap{SrcPort: 4500, DstPort: 4500},
			Encr: proposal.EncrAESGCM16, EncrKey: k, ReplayWindow: 128, ESN: true,
			Selectors: []kernel.Selector{{Src: host(src), Dst: host(dst)}},
			ReqID:     reqid,
		}
	}
	install := func(be *Backend, in, out *kernel.SA, local, remote netip.Addr) []*kernel.Policy {
		for _, s := range []*kernel.SA{in, out} {
			if err := be.AddSA(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		tmpl := kernel.Template{Src: local, Dst: remote, Proto: kernel.ESP, Mode: kernel.Transport, ReqID: reqid}
		po := &kernel.Policy{Dir: kernel.Out, Selector: kernel.Selector{Src: host(local), Dst: host(remote)}, Action: kernel.Protect, Template: tmpl}
		tmpl.Src, tmpl.Dst = remote, local
		pi := &kernel.Policy{Dir: kernel.In, Selector: kernel.Selector{Src: host(remote), Dst: host(local)}, Action: kernel.Protect, Template: tmpl}
		for _, p := range []*kernel.Policy{po, pi} {
			if err := be.AddPolicy(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		return []*kernel.Policy{po, pi}
	}
	inB, outA := mk(spiB, kernel.In, ha, hb, kab), mk(spiB, kernel.Out, ha, hb, kab)
	inA, outB := mk(spiA, kernel.In, hb, ha, kba), mk(spiA, kernel.Out, hb, ha, kba)
	pols = install(a, inA, outA, ha, hb)
	install(b, inB, outB, hb, ha)
	return pols, outA.ID(), outB.ID()
}

// TestTransportMode runs transport-mode SAs between two back ends on fake
// devices, IPv4 and IPv6, on each inbound path: the host's packet to the
// peer comes out of the peer's device with the same addresses, protocol
// and payload; the wire carries only the ESP packet (SPI first, the
// payload not in clear); the routes asked for are host routes from our
// address to the peer's; both ends' counters agree; deleting the policies
// removes the routes.
func TestTransportMode(t *testing.T) {
	fams := []struct {
		name   string
		ha, hb netip.Addr
		pkt    func(src, dst netip.Addr, sp, dp uint16, n int) []byte
	}{
		{"ipv4", netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), udpPacket},
		{"ipv6", netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), udpPacket6},
	}
	paths := []struct {
		name    string
		workers int
	}{{"serial", 0}, {"batch", -1}, {"pipeline", 1}}
	for _, f := range fams {
		for _, path := range paths {
			t.Run(f.name+"/"+path.name, func(t *testing.T) {
				devA, devB := newMemDev(1400), newMemDev(1400)
				ab, ba := newLink(), newLink()
				var ra, rb routeLog
				cfgA := Config{Device: devA, SendESP: ab.send, Logf: t.Logf, InboundWorkers: path.workers}
				cfgB := Config{Device: devB, SendESP: ba.send, Logf: t.Logf, InboundWorkers: path.workers}
				if path.workers < 0 {
					cfgA.SendESPBatch, cfgB.SendESPBatch = ab.sendBatch, ba.sendBatch
					ab.batch, ba.batch = true, true
				}
				ra.config(&cfgA)
				rb.config(&cfgB)
				a, err := New(cfgA)
				if err != nil {
					t.Fatal(err)
				}
				b, err := New(cfgB)
				if err != nil {
					t.Fatal(err)
				}
				ab.to.Store(b)
				ba.to.Store(a)
				defer func() { a.Close(); b.Close(); ab.close(); ba.close() }()

				var wire sync.Mutex
				var onWire [][]byte
				spy := func(n uint64, l, r netip.AddrPort, p []byte) bool {
					wire.Lock()
					onWire = append(onWire, append([]byte(nil), p...))
					wire.Unlock()
					return false
				}
				ab.tamper.Store(&spy)

				pols, idAB, idBA := transportChild(t, a, b, f.ha, f.hb, 9)
				host := func(x netip.Addr) netip.Prefix { return netip.PrefixFrom(x, x.BitLen()) }
				if want := []hostRoute{{host(f.hb), f.ha}}; len(ra.add) != 1 || ra.add[0] != want[0] || ra.tunnelAdds != 0 {
					t.Fatalf("a's routes: host %v, tunnel %d; want %v and no tunnel route", ra.add, ra.tunnelAdds, want)
				}

				const n = 20
				for i := 0; i < n; i++ {
					p := f.pkt(f.ha, f.hb, 1000, 2000+uint16(i), 100+i*50)
					devA.inject(p)
					select {
					case got := <-devB.out:
						checkSamePacket(t, got, p)
					case <-time.After(5 * time.Second):
						t.Fatalf("packet %d did not come out of b's device (a: %+v, b: %+v)", i, a.Stats(), b.Stats())
					}
					back := f.pkt(f.hb, f.ha, 2000, 1000, 64+i)
					devB.inject(back)
					select {
					case got := <-devA.out:
						checkSamePacket(t, got, back)
					case <-time.After(5 * time.Second):
						t.Fatalf("answer %d did not come out of a's device", i)
					}
				}
				wire.Lock()
				for _, w := range onWire {
					if spi := binary.BigEndian.Uint32(w); spi != idAB.SPI {
						t.Errorf("on the wire: SPI %08x, want %08x", spi, idAB.SPI)
					}
					if bytes.Contains(w, f.ha.AsSlice()) || bytes.Contains(w, f.hb.AsSlice()) {
						t.Errorf("an address in clear on the wire: % x", w)
					}
				}
				if len(onWire) != n {
					t.Errorf("%d ESP packets a->b on the wire, want %d", len(onWire), n)
				}
				wire.Unlock()
				for _, x := range []struct{ out, in *Backend }{{a, b}, {b, a}} {
					id := idAB
					if x.out == b {
						id = idBA
					}
					o, i := query(t, x.out, id), query(t, x.in, id)
					if o.Packets != n || i.Packets != n || o.Bytes != i.Bytes || o.Bytes == 0 {
						t.Errorf("SA %08x: sealed %d packets %d bytes, opened %d packets %d bytes", id.SPI, o.Packets, o.Bytes, i.Packets, i.Bytes)
					}
				}
				if st := b.Stats(); st.InDrops != 0 || st.OutSealDrops != 0 {
					t.Errorf("b's drops: %+v", st)
				}

				// A packet not between the two hosts has no policy.
				devA.inject(f.pkt(f.ha, f.ha.Next().Next().Next(), 1, 2, 80))
				waitFor(t, 5*time.Second, "a no-policy drop", func() bool { return a.Stats().OutNoPolicy == 1 })

				for _, p := range pols {
					if err := a.DeletePolicy(context.Background(), p); err != nil {
						t.Fatal(err)
					}
				}
				if len(ra.del) != 1 || ra.del[0] != ra.add[0] {
					t.Errorf("a's deleted host routes %v, want %v", ra.del, ra.add)
				}
			})
		}
	}
}

// checkSamePacket compares the packet that came out of the peer's device
// with the one sent: addresses, protocol, length and payload.
func checkSamePacket(t *testing.T, got, sent []byte) {
	t.Helper()
	if len(got) != len(sent) {
		t.Fatalf("got %d octets, sent %d", len(got), len(sent))
	}
	if got[0]>>4 == 4 {
		if !bytes.Equal(got[12:20], sent[12:20]) || got[9] != sent[9] || !bytes.Equal(got[20:], sent[20:]) {
			t.Fatalf("got\n% x\nsent\n% x", got, sent)
		}
		var c uint32
		for i := 0; i < 20; i += 2 {
			c += uint32(binary.BigEndian.Uint16(got[i:]))
		}
		for c > 0xffff {
			c = c>>16 + c&0xffff
		}
		if c != 0xffff {
			t.Fatalf("IPv4 header checksum wrong: % x", got[:20])
		}
		return
	}
	if !bytes.Equal(got[4:7], sent[4:7]) || !bytes.Equal(got[8:], sent[8:]) {
		t.Fatalf("got\n% x\nsent\n% x", got, sent)
	}
}

// TestTransportRefusedWithoutHostRoutes: a device without host routes (a
// netstack) refuses transport-mode SAs and policies, saying why.
func TestTransportRefusedWithoutHostRoutes(t *testing.T) {
	b, _, _ := newMemBackend(t)
	ctx := context.Background()
	tr := outSA(0x5001, 1, kernel.Lifetime{})
	tr.Mode = kernel.Transport
	if err := b.AddSA(ctx, tr); err == nil || !strings.Contains(err.Error(), "transport mode needs host routes") {
		t.Errorf("transport SA: err = %v", err)
	}
	p := protect(1)
	p.Template.Mode = kernel.Transport
	if err := b.AddPolicy(ctx, p); err == nil || !strings.Contains(err.Error(), "transport mode needs host routes") {
		t.Errorf("transport policy: err = %v", err)
	}
}
