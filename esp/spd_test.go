package esp

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestSPDMostSpecific(t *testing.T) {
	spd := NewSPD(ActionDrop)
	mk := func(src, dst string, proto uint8, dports PortRange, a Action) *Policy {
		p := &Policy{Selector: Selector{Src: netip.MustParsePrefix(src), Dst: netip.MustParsePrefix(dst), Proto: proto, DstPorts: dports}, Action: a}
		if err := spd.Add(p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	saA := mustSA(t, suites[0].config(0x100))
	saB := mustSA(t, suites[0].config(0x101))
	wide := mk("0.0.0.0/0", "10.0.0.0/8", 0, PortRange{}, ActionProtect)
	wide.SetSA(saA)
	narrow := mk("0.0.0.0/0", "10.1.0.0/16", 0, PortRange{}, ActionProtect)
	narrow.SetSA(saB)
	dns := mk("0.0.0.0/0", "10.1.0.0/16", ProtoUDP, PortRange{53, 53}, ActionBypass)
	host := mk("192.168.0.0/16", "10.1.2.3/32", 0, PortRange{}, ActionDrop)
	trap := mk("0.0.0.0/0", "10.9.0.0/16", 0, PortRange{}, ActionProtect)
	trap.OnDemand = true
	v6 := mk("::/0", "fd00::/8", 0, PortRange{}, ActionBypass)

	for _, tc := range []struct {
		pkt    []byte
		action Action
		policy *Policy
	}{
		{udp4("172.16.0.1", "10.5.0.1", 1, 80, 0), ActionProtect, wide},
		{udp4("172.16.0.1", "10.1.0.1", 1, 80, 0), ActionProtect, narrow},
		{udp4("172.16.0.1", "10.1.0.1", 1, 53, 0), ActionBypass, dns},
		{udp4("192.168.1.1", "10.1.2.3", 1, 53, 0), ActionDrop, host},
		{udp4("172.16.0.1", "10.1.2.3", 1, 53, 0), ActionBypass, dns}, // host policy's src does not match
		{udp4("172.16.0.1", "10.9.9.9", 1, 53, 0), ActionAcquire, trap},
		{udp4("172.16.0.1", "11.0.0.1", 1, 53, 0), ActionDrop, nil},
		{udp6("fd00::1", "fd00::2", 1, 2, 0), ActionBypass, v6},
		{udp6("fd00::1", "2001:db8::2", 1, 2, 0), ActionDrop, nil},
	} {
		r := spd.Lookup(tc.pkt)
		if r.Action != tc.action || r.Policy != tc.policy {
			t.Errorf("%v: got %v %p, want %v %p", r.Selector.Dst, r.Action, r.Policy, tc.action, tc.policy)
		}
		if r.Action == ActionAcquire && (r.Selector.Dst != netip.MustParseAddr("10.9.9.9") || r.Selector.DstPort != 53 || r.Selector.Proto != ProtoUDP) {
			t.Errorf("acquire selector %+v", r.Selector)
		}
	}
	c := spd.Counters()
	if c.Acquires != 1 || c.Drops[DropNoPolicy] != 2 || c.Drops[DropPolicyDrop] != 1 {
		t.Fatalf("counters %+v", c)
	}
	// Rekey: swap the SA; expiry: protect without a live SA drops.
	narrow.SetSA(saA)
	if r := spd.Lookup(udp4("1.1.1.1", "10.1.0.1", 1, 80, 0)); r.SA != saA {
		t.Fatal("SetSA")
	}
	if !spd.Remove(narrow) || spd.Remove(narrow) {
		t.Fatal("Remove")
	}
	if r := spd.Lookup(udp4("1.1.1.1", "10.1.0.1", 1, 80, 0)); r.Policy != wide {
		t.Fatal("after Remove")
	}
	if spd.Len() != 5 {
		t.Fatal(spd.Len())
	}
	// Acquire as the default.
	od := NewSPD(ActionAcquire)
	if r := od.Lookup(udp4("1.1.1.1", "2.2.2.2", 1, 2, 0)); r.Action != ActionAcquire {
		t.Fatal(r.Action)
	}
}

func manyPolicies(tb testing.TB, n int) (*SPD, []*Policy) {
	spd := NewSPD(ActionDrop)
	sa := mustSA(tb, suites[0].config(0x100))
	var ps []*Policy
	for i := 0; i < n; i++ {
		dst := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		p := &Policy{Selector: Selector{Src: netip.MustParsePrefix("192.168.0.0/16"), Dst: netip.PrefixFrom(dst, 32)}, Action: ActionProtect}
		p.SetSA(sa)
		if err := spd.Add(p); err != nil {
			tb.Fatal(err)
		}
		ps = append(ps, p)
	}
	for i := 0; i < 50; i++ { // some subnet policies too
		p := &Policy{Selector: Selector{Src: netip.MustParsePrefix("0.0.0.0/0"), Dst: netip.MustParsePrefix(fmt.Sprintf("172.%d.0.0/16", i))}, Action: ActionBypass}
		spd.Add(p)
	}
	return spd, ps
}

func TestSPDMany(t *testing.T) {
	spd, ps := manyPolicies(t, 10000)
	for i := 0; i < 10000; i += 97 {
		dst := ps[i].Selector.Dst.Addr().String()
		if r := spd.Lookup(udp4("192.168.1.1", dst, 1, 2, 0)); r.Policy != ps[i] {
			t.Fatalf("%s: %p", dst, r.Policy)
		}
	}
	pkt := udp4("192.168.1.1", "10.0.20.20", 1, 2, 0)
	if n := testing.AllocsPerRun(100, func() { spd.Lookup(pkt) }); n != 0 {
		t.Fatalf("%v allocs per lookup", n)
	}
}

func BenchmarkSPDLookup10k(b *testing.B) {
	spd, _ := manyPolicies(b, 10000)
	pkt := udp4("192.168.1.1", "10.0.20.20", 1, 2, 0)
	b.ReportAllocs()
	for b.Loop() {
		spd.Lookup(pkt)
	}
}
