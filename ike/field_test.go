package ike

import (
	"encoding/binary"
	"math/rand"
	"net/netip"
	"strings"
	"testing"
	"time"

	"goswan/kernel"
)

func TestDPDSkipsProbeWithTraffic(t *testing.T) {
	b, wr, _ := recBed(t, baseConn+"dpddelay=10s\ndpdtimeout=30s", baseConn, nil)
	b.mustUp()
	c := childOf(t, b.west)
	before := b.east.Status().Counters.Received
	for i := 0; i < 5; i++ {
		wr.mu.Lock()
		wr.lastUsed[c.SPIIn] = b.clk.now().Add(5 * time.Second)
		wr.mu.Unlock()
		b.tick(6 * time.Second)
	}
	if got := b.east.Status().Counters.Received; got != before {
		t.Errorf("west probed %d times although ESP came in", got-before)
	}
	b.tick(11 * time.Second)
	if got := b.east.Status().Counters.Received; got != before+1 {
		t.Errorf("west sent %d probes after the traffic stopped, want 1", got-before)
	}
}

func TestDPDActions(t *testing.T) {
	for _, action := range []string{"clear", "hold", "restart"} {
		t.Run(action, func(t *testing.T) {
			b := newBed(t, baseConn+"dpddelay=10s\ndpdtimeout=20s\ndpdaction="+action, baseConn)
			b.mustUp()
			b.net.drop = func(int, Packet) bool { return true }
			for i := 0; i < 10 && !b.westLog.has("not answering"); i++ {
				b.tick(5 * time.Second)
			}
			if !b.westLog.has("not answering") {
				t.Fatalf("no dead peer detected:\n%s", b.westLog)
			}
			b.net.drop = nil
			b.net.pump()
			b.tick(time.Second)
			ps := b.wk.Policies()
			switch action {
			case "clear":
				if len(b.wk.SAs()) != 0 || len(ps) != 0 || len(b.west.Status().IKESAs) != 0 {
					t.Errorf("clear left %d SAs, %d policies", len(b.wk.SAs()), len(ps))
				}
			case "hold":
				if len(b.wk.SAs()) != 0 || len(ps) != 1 || ps[0].Dir != kernel.Out || ps[0].Action != kernel.Protect {
					t.Errorf("hold: SAs %d, policies %+v", len(b.wk.SAs()), ps)
				}
			case "restart":
				ws := b.west.Status()
				if len(ws.IKESAs) != 1 || ws.IKESAs[0].State != "ESTABLISHED_IKE_SA" || len(ws.ChildSAs) != 1 {
					t.Errorf("restart: %+v\n%s", ws.IKESAs, b.westLog)
				}
			}
			b.west.Close(t.Context())
			if n := len(b.wk.Policies()); n != 0 {
				t.Errorf("%d policies after Close", n)
			}
		})
	}
}

func natBed(t *testing.T, mod func(string, *Options)) *bed {
	t.Helper()
	inside := netip.MustParseAddr("192.168.1.10")
	west := strings.Replace(baseConn, "left=192.0.2.1", "left=192.168.1.10", 1) + "leftid=@west\nrightid=@east"
	east := strings.Replace(baseConn, "left=192.0.2.1", "left=%any", 1) + "leftid=@west\nrightid=@east"
	b := newBedWith(t, inside, eastAddr, west, east, mod)
	b.net.nat = newNAT(inside, natAddr)
	b.net.engines[natAddr] = nil
	return b
}

func TestKeepAlive(t *testing.T) {
	b := natBed(t, func(name string, o *Options) { o.KeepAlive = 20 * time.Second })
	b.mustUp()
	n0 := len(b.net.sent)
	b.tick(21 * time.Second)
	var ka []Packet
	for _, p := range b.net.sent[n0:] {
		if p.Keepalive {
			ka = append(ka, p)
		}
	}
	if len(ka) != 1 || string(ka[0].Data) != "\xff" || ka[0].Local.Port() != 4500 || ka[0].Remote != netip.AddrPortFrom(eastAddr, 4500) {
		t.Fatalf("keep-alives: %+v", ka)
	}
	for _, p := range b.net.sent[n0:] {
		if p.Keepalive && p.Local.Addr() == eastAddr {
			t.Errorf("east (not behind the NAT) sent a keep-alive")
		}
	}
}

func TestNATMappingChange(t *testing.T) {
	b := natBed(t, nil)
	b.west.AddConn(parseConn(t, strings.Replace(baseConn, "left=192.0.2.1", "left=192.168.1.10", 1)+"leftid=@west\nrightid=@east\ndpddelay=10s"))
	b.mustUp()
	before := b.east.Status().IKESAs[0].Remote
	// The NAT forgets its mapping; the next datagram gets a new port.
	nat := b.net.nat
	nat.out, nat.in, nat.next = map[netip.AddrPort]netip.AddrPort{}, map[netip.AddrPort]netip.AddrPort{}, 40000
	b.tick(11 * time.Second) // west's liveness check goes out through the new mapping
	after := b.east.Status().IKESAs[0].Remote
	if after == before || after.Port() != 40000 {
		t.Fatalf("east did not follow: %v -> %v\n%s", before, after, b.eastLog)
	}
	for _, sa := range b.ek.SAs() {
		switch sa.Dir {
		case kernel.Out:
			if sa.Dst != natAddr || sa.Encap == nil || sa.Encap.DstPort != 40000 {
				t.Errorf("east outbound SA %v -> %v encap %+v", sa.Src, sa.Dst, sa.Encap)
			}
		case kernel.In:
			if sa.Encap == nil || sa.Encap.SrcPort != 40000 {
				t.Errorf("east inbound SA encap %+v", sa.Encap)
			}
		}
	}
	// And the tunnel still works both ways: a rekey from east.
	ec := childOf(t, b.east)
	b.east.HandleEvent(kernel.Event{Kind: kernel.SoftExpire, SA: kernel.SAID{Dst: eastAddr, SPI: ec.SPIIn, Proto: kernel.ESP}})
	b.net.pump()
	if c := childOf(t, b.east); c.SPIIn == ec.SPIIn {
		t.Errorf("rekey after the NAT change failed\n%s", b.eastLog)
	}
}

func TestVirtualPrivate(t *testing.T) {
	inside := netip.MustParseAddr("192.168.1.10")
	west := "left=192.168.1.10\nleftsubnet=192.168.1.10/32\nright=192.0.2.2\nrightsubnet=10.2.0.0/24\nauthby=secret\nleftid=@west\nrightid=@east"
	east := "left=%any\nright=192.0.2.2\nrightsubnet=10.2.0.0/24\nauthby=secret\nleftid=@west\nrightid=@east"
	for _, vp := range []string{"%v4:192.168.0.0/16", ""} {
		b := newBedWith(t, inside, eastAddr, west, east, func(name string, o *Options) {
			if vp != "" {
				o.VirtualPrivate.Include = []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16")}
			}
		})
		b.net.nat = newNAT(inside, natAddr)
		r := b.up()
		if vp != "" && (r.err != nil || len(b.east.Status().ChildSAs) != 1) {
			t.Errorf("virtual-private=%s: %v\n%s", vp, r.err, b.eastLog)
		}
		if vp == "" && len(b.east.Status().ChildSAs) != 0 {
			t.Errorf("without virtual-private the peer's private subnet was accepted")
		}
	}
}

func TestUniqueIDs(t *testing.T) {
	b := newBedWith(t, westAddr, eastAddr, baseConn, baseConn, func(name string, o *Options) { o.UniqueIDs = name == "east" })
	b.mustUp()
	b.mustUp()
	if n, m := len(b.east.Status().IKESAs), len(b.west.Status().IKESAs); n != 1 || m != 1 {
		t.Fatalf("uniqueids: east %d west %d IKE SAs", n, m)
	}
	checkPair(t, b.wk, b.ek, kernel.Tunnel)
}

func TestInitialContact(t *testing.T) {
	b := newBed(t, baseConn, baseConn)
	b.mustUp()
	if !b.eastLog.has("INITIAL_CONTACT") {
		t.Errorf("the first IKE SA carried no INITIAL_CONTACT")
	}
	// West restarts: a new engine that knows nothing of the old SAs.
	old := b.west
	b2 := newBed(t, baseConn, "")
	b.west, b.wk = b2.west, b2.wk
	b.net.engines[westAddr] = b.west
	b2.west.o.Send = b.net.send
	b2.west.o.Now = b.clk.now
	b.clk.advance(time.Second)
	_ = old
	b.mustUp()
	es := b.east.Status()
	if len(es.IKESAs) != 1 || len(es.ChildSAs) != 1 {
		t.Fatalf("east kept the restarted peer's old SAs: %+v", es.IKESAs)
	}
	checkPair(t, b.wk, b.ek, kernel.Tunnel)
}

func TestCookieForceBusy(t *testing.T) {
	b := newBedWith(t, westAddr, eastAddr, baseConn, baseConn, func(name string, o *Options) { o.ForceBusy = name == "east" })
	r := b.mustUp()
	if !r.has("cookie") {
		t.Errorf("no cookie round: %q", r.lines)
	}
	checkPair(t, b.wk, b.ek, kernel.Tunnel)
}

func TestCookieFlood(t *testing.T) {
	const threshold = 50
	east := strings.Replace(baseConn, "left=192.0.2.1", "left=%any", 1)
	b := newBedWith(t, westAddr, eastAddr, baseConn, east, func(name string, o *Options) { o.DDoSThreshold = threshold })
	// One real IKE_SA_INIT as the template for the flood.
	b.net.drop = func(int, Packet) bool { return true }
	b.west.Initiate("test", nil)
	b.net.drop = nil
	tmpl := b.net.sent[0].Data
	b.net.mu.Lock()
	b.net.q = nil
	b.net.mu.Unlock()
	rng := rand.New(rand.NewSource(1))
	sends := 0
	b.net.drop = func(int, Packet) bool { sends++; return true } // the flood's answers go nowhere
	for i := 0; i < 100000; i++ {
		d := append([]byte(nil), tmpl...)
		binary.BigEndian.PutUint64(d[0:8], rng.Uint64()|1)
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(rng.Intn(256)), byte(rng.Intn(256)), byte(rng.Intn(256))}), 500)
		b.east.Receive(Packet{Local: netip.AddrPortFrom(eastAddr, 500), Remote: src, Data: d})
		if h := b.east.HalfOpen(); h > threshold {
			t.Fatalf("after %d INITs: %d half-open IKE SAs", i+1, h)
		}
	}
	if got := b.east.HalfOpen(); got != threshold {
		t.Errorf("%d half-open", got)
	}
	if n := len(b.east.workers[0].sas); n > threshold {
		t.Errorf("east holds %d IKE SAs", n)
	}
	// A real peer still gets through, with a cookie.
	b.net.drop = nil
	b2 := b.mustUp()
	if !b2.has("cookie") {
		t.Errorf("no cookie round: %q", b2.lines)
	}
	if b.east.Status().Counters.Drops["IKE_SA_INIT without a valid COOKIE while busy"] < 99000 {
		t.Errorf("drops: %v", b.east.Status().Counters.Drops)
	}
	// The half-open SAs time out.
	b.tick(DefaultHalfOpenTimeout + time.Second)
	if got := b.east.HalfOpen(); got != 0 {
		t.Errorf("%d half-open after the timeout", got)
	}
}

func TestFragmentation(t *testing.T) {
	b := newBed(t, baseConn, baseConn)
	b.west.fragSize, b.east.fragSize = 200, 200
	b.net.drop = func(n int, p Packet) bool { return n == 4 } // a fragment of IKE_AUTH
	r := &upResult{}
	b.west.Initiate("test", r.progress)
	b.net.pump()
	for i := 0; i < 10 && r.done == 0; i++ {
		b.tick(time.Second)
	}
	if r.done != 1 || r.err != nil {
		t.Fatalf("up: %v\n%s\n%s", r.err, b.westLog, b.eastLog)
	}
	frags := 0
	for _, p := range b.net.sent {
		if len(p.Data) > 200 && p.Data[18] != 34 { // not IKE_SA_INIT
			t.Errorf("datagram of %d octets", len(p.Data))
		}
		if p.Data[16] == 53 { // SKF
			frags++
		}
	}
	if frags < 4 {
		t.Errorf("%d fragments", frags)
	}
	checkPair(t, b.wk, b.ek, kernel.Tunnel)
	// A rekey goes in fragments too.
	w0 := childOf(t, b.west)
	b.west.HandleEvent(kernel.Event{Kind: kernel.SoftExpire, SA: kernel.SAID{Dst: westAddr, SPI: w0.SPIIn, Proto: kernel.ESP}})
	b.net.pump()
	if w1 := childOf(t, b.west); w1.SPIIn == w0.SPIIn {
		t.Errorf("fragmented rekey failed")
	}
	// Without fragmentation on one side, no fragments.
	b = newBed(t, baseConn+"fragmentation=no", baseConn)
	b.west.fragSize, b.east.fragSize = 200, 200
	b.mustUp()
	for _, p := range b.net.sent {
		if p.Data[16] == 53 {
			t.Errorf("fragment sent with fragmentation=no")
		}
	}
}

func TestOnDemand(t *testing.T) {
	b := newBed(t, baseConn+"auto=ondemand", baseConn)
	ps := b.wk.Policies()
	if len(ps) != 1 || ps[0].Action != kernel.Protect || ps[0].Dir != kernel.Out || len(b.wk.SAs()) != 0 {
		t.Fatalf("trap: %+v", ps)
	}
	ev := kernel.Event{Kind: kernel.Acquire, ReqID: ps[0].Template.ReqID,
		Selector: kernel.Selector{Src: netip.MustParsePrefix("10.1.0.5/32"), Dst: netip.MustParsePrefix("10.2.0.7/32")}}
	b.west.Receive(Packet{}) // nothing
	// Two acquires before the network runs: one IKE SA.
	b.west.HandleEvent(ev)
	b.west.HandleEvent(kernel.Event{Kind: kernel.Acquire, Selector: ev.Selector})
	b.net.pump()
	if n := len(b.west.Status().IKESAs); n != 1 {
		t.Fatalf("%d IKE SAs after two acquires\n%s", n, b.westLog)
	}
	checkPair(t, b.wk, b.ek, kernel.Tunnel)
	b.west.Terminate("test", nil)
	b.net.pump()
	ps = b.wk.Policies()
	if len(ps) != 1 || ps[0].Action != kernel.Protect || len(b.wk.SAs()) != 0 {
		t.Errorf("after down the trap should be back: %+v", ps)
	}
	// Acquire by selector alone.
	b.west.HandleEvent(kernel.Event{Kind: kernel.Acquire, Selector: ev.Selector})
	b.net.pump()
	if n := len(b.west.Status().ChildSAs); n != 1 {
		t.Errorf("acquire by selector: %d Child SAs", n)
	}
	b.west.DeleteConn("test")
	b.net.pump()
	b.empty(t)
}

func TestShuntTypes(t *testing.T) {
	for typ, action := range map[string]kernel.PolicyAction{"passthrough": kernel.Bypass, "drop": kernel.Block, "reject": kernel.Block} {
		b := newBed(t, baseConn+"type="+typ, "")
		ps := b.wk.Policies()
		if len(ps) != 3 {
			t.Errorf("%s: %d policies", typ, len(ps))
		}
		for _, p := range ps {
			if p.Action != action {
				t.Errorf("%s: policy %+v", typ, p)
			}
		}
		if err := b.west.Initiate("test", nil); err == nil {
			t.Errorf("%s: Initiate worked", typ)
		}
		b.west.DeleteConn("test")
		if n := len(b.wk.Policies()); n != 0 {
			t.Errorf("%s: %d policies after DeleteConn", typ, n)
		}
	}
}
