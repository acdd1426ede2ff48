package ike

import (
	"math/rand"
	"testing"
	"time"

	"goswan/kernel"
)

// pumpReordered delivers the queued datagrams in random order.
func (n *testNet) pumpReordered(rng *rand.Rand) {
	for i := 0; i < 100000; i++ {
		n.mu.Lock()
		if len(n.q) == 0 {
			n.mu.Unlock()
			return
		}
		j := rng.Intn(len(n.q))
		p := n.q[j]
		n.q = append(n.q[:j], n.q[j+1:]...)
		n.mu.Unlock()
		n.deliver(p)
	}
	panic("testNet: endless conversation")
}

// TestLossAndReordering sets up, rekeys the Child SA and the IKE SA, 200
// times, with 10% of the datagrams lost and the rest reordered.
func TestLossAndReordering(t *testing.T) {
	n := 200
	if testing.Short() {
		n = 40
	}
	rng := rand.New(rand.NewSource(7))
	var retrans uint64
	settle := func(b *bed, cond func() bool) bool {
		for i := 0; i < 400; i++ {
			b.net.pumpReordered(rng)
			if cond() {
				return true
			}
			now := b.clk.advance(250 * time.Millisecond)
			b.west.Tick(now)
			b.east.Tick(now)
		}
		return false
	}
	for i := 0; i < n; i++ {
		b := newBed(t, baseConn, baseConn)
		b.net.drop = func(int, Packet) bool { return rng.Intn(10) == 0 }
		r := &upResult{}
		if err := b.west.Initiate("test", r.progress); err != nil {
			t.Fatal(err)
		}
		if !settle(b, func() bool { return r.done > 0 }) || r.err != nil {
			t.Fatalf("setup %d: done %d err %v\n%s\n%s", i, r.done, r.err, b.westLog, b.eastLog)
		}
		paired := func() bool {
			ws, es := b.west.Status(), b.east.Status()
			return len(ws.ChildSAs) == 1 && len(es.ChildSAs) == 1 && len(ws.IKESAs) == 1 && len(es.IKESAs) == 1 &&
				ws.ChildSAs[0].SPIIn == es.ChildSAs[0].SPIOut && ws.ChildSAs[0].SPIOut == es.ChildSAs[0].SPIIn &&
				ws.IKESAs[0].SPIi == es.IKESAs[0].SPIi && ws.IKESAs[0].SPIr == es.IKESAs[0].SPIr &&
				len(b.wk.SAs()) == 2 && len(b.ek.SAs()) == 2
		}
		if !settle(b, paired) {
			t.Fatalf("setup %d: not paired: %+v / %+v", i, b.west.Status(), b.east.Status())
		}
		c0 := childOf(t, b.west)
		b.west.HandleEvent(kernel.Event{Kind: kernel.SoftExpire, SA: kernel.SAID{Dst: westAddr, SPI: c0.SPIIn, Proto: kernel.ESP}})
		if !settle(b, func() bool { return paired() && childOf(t, b.west).SPIIn != c0.SPIIn }) {
			t.Fatalf("child rekey %d: west %+v\neast %+v\n%s\n%s", i, b.west.Status(), b.east.Status(), b.westLog, b.eastLog)
		}
		i0 := b.west.Status().IKESAs[0]
		b.east.workers[0].exec(func(w *worker) {
			for _, sa := range w.sas {
				w.rekeyIKE(sa, 0, 0)
			}
		})
		if !settle(b, func() bool { return paired() && b.west.Status().IKESAs[0].SPIi != i0.SPIi }) {
			t.Fatalf("IKE rekey %d: west %+v\neast %+v\n%s\n%s", i, b.west.Status().IKESAs, b.east.Status().IKESAs, b.westLog, b.eastLog)
		}
		checkPair(t, b.wk, b.ek, kernel.Tunnel)
		retrans += b.west.Status().Counters.Retransmits + b.east.Status().Counters.Retransmits
	}
	t.Logf("%d retransmissions", retrans)
}
