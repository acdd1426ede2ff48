package memory

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"goswan/kernel"
	"goswan/proposal"
)

func TestSALifecycle(t *testing.T) {
	ctx := context.Background()
	b := New()
	defer b.Close()
	peer, us := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.1")
	seen := map[uint32]bool{}
	var spi uint32
	for i := 0; i < 1000; i++ {
		s, err := b.GetSPI(ctx, peer, us, kernel.ESP, 7)
		if err != nil {
			t.Fatal(err)
		}
		if s < 0x100 || seen[s] {
			t.Fatalf("GetSPI gave %#x (reserved range or repeated)", s)
		}
		seen[s] = true
		spi = s
	}
	if b.Reserved() != 1000 {
		t.Errorf("reserved %d SPIs; want 1000", b.Reserved())
	}
	in := &kernel.SA{SPI: spi, Proto: kernel.ESP, Dir: kernel.In, Src: peer, Dst: us,
		Encr: proposal.EncrAESGCM16, EncrKey: make([]byte, 20), ReplayWindow: 128}
	if err := b.AddSA(ctx, in); err != nil {
		t.Fatal(err)
	}
	if err := b.AddSA(ctx, in); err == nil {
		t.Error("adding the same SA twice succeeded")
	}
	unreserved := *in
	unreserved.SPI = 0x1234
	if err := b.AddSA(ctx, &unreserved); err == nil {
		t.Error("an inbound SA with an SPI that GetSPI never gave was accepted")
	}
	if err := b.AddTraffic(in.ID(), 1400, 1); err != nil {
		t.Fatal(err)
	}
	st, err := b.QuerySA(ctx, in.ID())
	if err != nil || st.Bytes != 1400 || st.Packets != 1 || st.LastUsed.IsZero() {
		t.Errorf("QuerySA = %+v, %v", st, err)
	}
	moved := *in
	moved.Src = netip.MustParseAddr("198.51.100.7")
	moved.Encap = &kernel.Encap{SrcPort: 4500, DstPort: 4500}
	if err := b.UpdateSA(ctx, in.ID(), &moved); err != nil {
		t.Fatal(err)
	}
	if sas := b.SAs(); len(sas) != 1 || sas[0].Src != moved.Src || sas[0].Encap == nil {
		t.Errorf("after UpdateSA: %+v", sas)
	}
	if st, _ := b.QuerySA(ctx, in.ID()); st.Bytes != 1400 {
		t.Errorf("UpdateSA lost the counters: %+v", st)
	}
	if err := b.DeleteSA(ctx, in.ID()); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteSA(ctx, in.ID()); !errors.Is(err, kernel.ErrNotFound) {
		t.Errorf("second delete: %v; want ErrNotFound", err)
	}
}

func TestPoliciesAndEvents(t *testing.T) {
	ctx := context.Background()
	b := New()
	sel := kernel.Selector{Src: netip.MustParsePrefix("10.0.1.0/24"), Dst: netip.MustParsePrefix("10.0.2.0/24")}
	p := &kernel.Policy{Dir: kernel.Out, Selector: sel, Template: kernel.Template{ReqID: 1}}
	b.AddPolicy(ctx, p)
	p2 := *p
	p2.Template.ReqID = 2
	b.AddPolicy(ctx, &p2) // same selector and direction: replaces
	if ps := b.Policies(); len(ps) != 1 || ps[0].Template.ReqID != 2 {
		t.Errorf("policies %+v; want one with reqid 2", ps)
	}
	if err := b.DeletePolicy(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := b.DeletePolicy(ctx, p); !errors.Is(err, kernel.ErrNotFound) {
		t.Errorf("second policy delete: %v", err)
	}
	for i := 0; i < 100; i++ {
		b.Raise(kernel.Event{Kind: kernel.Acquire, Selector: sel, ReqID: uint32(i)})
	}
	if ev := <-b.Events(); ev.Kind != kernel.Acquire || ev.ReqID != 0 {
		t.Errorf("first event %+v", ev)
	}
	if b.dropped != 36 {
		t.Errorf("dropped %d events; want 36 beyond the 64 buffered", b.dropped)
	}
	b.Close()
	n := 0
	for range b.Events() {
		n++
	}
	if n != 63 {
		t.Errorf("%d events after the first; want 63 before the channel closed", n)
	}
}
