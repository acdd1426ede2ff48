package userspace

import (
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"goswan/esp"
	"goswan/kernel"
)

// rawWire carries raw ESP from one back end to the other, recording the
// outer addresses each packet was sent with.
type rawWire struct {
	to   *Backend
	sent chan rawSent
}

type rawSent struct {
	local, remote netip.Addr
	spi           uint32
}

func (w *rawWire) send(local, remote netip.Addr, pkt []byte) error {
	w.sent <- rawSent{local, remote, binary.BigEndian.Uint32(pkt)}
	w.to.DeliverRawESP(remote, local, pkt)
	return nil
}

// TestRawESP: SAs without UDP encapsulation go out through SendRawESP
// (never the UDP path) from and to their outer addresses, come in through
// DeliverRawESP, and an UpdateSA that adds encapsulation (a NAT found by
// MOBIKE) moves the SA to ESP in UDP.
func TestRawESP(t *testing.T) {
	wAB := &rawWire{sent: make(chan rawSent, 64)}
	wBA := &rawWire{sent: make(chan rawSent, 64)}
	udp := make(chan sent, 64)
	mk := func(w *rawWire) (*Backend, *memDev) {
		dev := newMemDev(1400)
		b, err := New(Config{Device: dev, Logf: t.Logf, AcquireInterval: time.Hour,
			SendESP: func(l, r netip.AddrPort, p []byte) error {
				udp <- sent{l, r, append([]byte(nil), p...)}
				return nil
			},
			SendRawESP: w.send,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b, dev
	}
	a, devA := mk(wAB)
	b, devB := mk(wBA)
	wAB.to, wBA.to = b, a
	sa := side{outer: outerA, subnet: subA}
	sb := side{outer: outerB, subnet: subB}
	ab, ba := childSA(t, a, b, sa, sb, 7, kernel.Lifetime{})

	hA, hB := netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.2.0.9")
	expect := func(w *rawWire, dev *memDev, local, remote netip.Addr, spi uint32, size int) {
		t.Helper()
		select {
		case s := <-w.sent:
			if s.local != local || s.remote != remote || s.spi != spi {
				t.Errorf("raw ESP sent %v -> %v SPI %#x, want %v -> %v SPI %#x", s.local, s.remote, s.spi, local, remote, spi)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no raw ESP sent")
		}
		select {
		case p := <-dev.out:
			if len(p) != size {
				t.Errorf("delivered %d octets, want %d", len(p), size)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("nothing delivered to the peer's device")
		}
	}
	for i := 0; i < 3; i++ {
		devA.inject(udpPacket(hA, hB, 1000, 2000, 300+i))
		expect(wAB, devB, outerA, outerB, ab.SPI, 300+i)
		devB.inject(udpPacket(hB, hA, 2000, 1000, 200+i))
		expect(wBA, devA, outerB, outerA, ba.SPI, 200+i)
	}
	select {
	case s := <-udp:
		t.Fatalf("raw SA sent ESP in UDP %v -> %v", s.l, s.r)
	default:
	}
	if st, err := a.QuerySA(context.Background(), ab); err != nil || st.Packets != 3 {
		t.Errorf("A's out SA: %+v, %v; want 3 packets", st, err)
	}
	if st, err := b.QuerySA(context.Background(), ab); err != nil || st.Packets != 3 {
		t.Errorf("B's in SA: %+v, %v; want 3 packets", st, err)
	}
	if d := drops(t, b, ab); d != (esp.DropCounts{}) {
		t.Errorf("B's in SA drops: %+v", d)
	}

	// Garbage on the raw socket (another SPI) is dropped and counted.
	before := b.Stats().InDrops
	junk := make([]byte, 64)
	binary.BigEndian.PutUint32(junk, 0xdead)
	b.DeliverRawESP(outerB, outerA, junk)
	if got := b.Stats().InDrops; got != before+1 {
		t.Errorf("InDrops %d after an unknown SPI, want %d", got, before+1)
	}

	// A NAT appears: the SA moves to ESP in UDP.
	upd := outSA(ab.SPI, 7, kernel.Lifetime{})
	upd.Encap = &kernel.Encap{SrcPort: 4500, DstPort: 4500}
	if err := a.UpdateSA(context.Background(), ab, upd); err != nil {
		t.Fatal(err)
	}
	devA.inject(udpPacket(hA, hB, 1000, 2000, 100))
	select {
	case s := <-udp:
		if s.l != netip.AddrPortFrom(outerA, 4500) || s.r != netip.AddrPortFrom(outerB, 4500) || binary.BigEndian.Uint32(s.p) != ab.SPI {
			t.Errorf("after UpdateSA: ESP in UDP %v -> %v SPI %#x", s.l, s.r, binary.BigEndian.Uint32(s.p))
		}
	case s := <-wAB.sent:
		t.Fatalf("after UpdateSA with encapsulation: raw ESP %v -> %v", s.local, s.remote)
	case <-time.After(5 * time.Second):
		t.Fatal("nothing sent after UpdateSA")
	}
}

// TestRawESPRefusedWithoutSender: without SendRawESP, SAs without UDP
// encapsulation are refused and raw ESP delivered is dropped.
func TestRawESPRefusedWithoutSender(t *testing.T) {
	b, _, _ := newMemBackend(t)
	raw := outSA(0x5000, 1, kernel.Lifetime{})
	raw.Encap = nil
	if err := b.AddSA(context.Background(), raw); err == nil {
		t.Error("raw ESP SA accepted without SendRawESP")
	}
	b.DeliverRawESP(outerA, outerB, make([]byte, 64))
	if n := b.Stats().InDrops; n != 1 {
		t.Errorf("InDrops = %d, want 1", n)
	}
}
