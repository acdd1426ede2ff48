package ike

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"goswan/kernel"
	"goswan/kernel/memory"
)

// recKernel records the SA operations of a memory back end in order and
// lets a test set the LastUsed time of an SA.
type recKernel struct {
	*memory.Backend
	mu       sync.Mutex
	ops      []string
	lastUsed map[uint32]time.Time
}

func newRec() *recKernel { return &recKernel{Backend: memory.New(), lastUsed: map[uint32]time.Time{}} }

func (k *recKernel) log(s string) { k.mu.Lock(); k.ops = append(k.ops, s); k.mu.Unlock() }

func (k *recKernel) AddSA(ctx context.Context, sa *kernel.SA) error {
	err := k.Backend.AddSA(ctx, sa)
	if err == nil {
		k.log(fmt.Sprintf("add %v %08x", sa.Dir, sa.SPI))
	}
	return err
}

func (k *recKernel) DeleteSA(ctx context.Context, id kernel.SAID) error {
	dir := "?"
	for _, sa := range k.Backend.SAs() {
		if sa.ID() == id {
			dir = sa.Dir.String()
		}
	}
	err := k.Backend.DeleteSA(ctx, id)
	if err == nil && dir != "?" {
		k.log(fmt.Sprintf("del %s %08x", dir, id.SPI))
	}
	return err
}

func (k *recKernel) QuerySA(ctx context.Context, id kernel.SAID) (kernel.SAStats, error) {
	st, err := k.Backend.QuerySA(ctx, id)
	k.mu.Lock()
	if t, ok := k.lastUsed[id.SPI]; ok {
		st.LastUsed = t
	} else {
		st.LastUsed = time.Time{}
	}
	k.mu.Unlock()
	return st, err
}

func (k *recKernel) index(op string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Index(k.ops, op)
}

// recBed is a bed whose kernels record their operations.
func recBed(t *testing.T, west, east string, mod func(string, *Options)) (*bed, *recKernel, *recKernel) {
	t.Helper()
	wr, er := newRec(), newRec()
	b := newBedWith(t, westAddr, eastAddr, west, east, func(name string, o *Options) {
		if name == "west" {
			o.Kernel = wr
		} else {
			o.Kernel = er
		}
		if mod != nil {
			mod(name, o)
		}
	})
	b.wk, b.ek = wr.Backend, er.Backend
	return b, wr, er
}

func childOf(t testing.TB, e *Engine) ChildSAStatus {
	t.Helper()
	cs := e.Status().ChildSAs
	if len(cs) != 1 {
		t.Fatalf("%d Child SAs, want 1: %+v", len(cs), cs)
	}
	return cs[0]
}

const rekeyConn = baseConn + `
ipsec-lifetime=100s
rekeymargin=20s
rekeyfuzz=0%
`

// checkMakeBeforeBreak checks that k installed the new SAs before it
// removed the old outbound one.
func checkMakeBeforeBreak(t *testing.T, who string, k *recKernel, old, nu ChildSAStatus) {
	t.Helper()
	addIn, addOut := k.index(fmt.Sprintf("add in %08x", nu.SPIIn)), k.index(fmt.Sprintf("add out %08x", nu.SPIOut))
	delOut, delIn := k.index(fmt.Sprintf("del out %08x", old.SPIOut)), k.index(fmt.Sprintf("del in %08x", old.SPIIn))
	if addIn < 0 || addOut < 0 || delOut < 0 || delIn < 0 {
		t.Fatalf("%s: missing operations (add in %d, add out %d, del out %d, del in %d): %q", who, addIn, addOut, delOut, delIn, k.ops)
	}
	if !(addIn < addOut && addOut < delOut && delOut <= delIn+1) || addIn > delIn {
		t.Errorf("%s: not make-before-break: %q", who, k.ops)
	}
}

func TestChildRekeyByTimer(t *testing.T) {
	b, wr, er := recBed(t, rekeyConn, rekeyConn, nil)
	b.mustUp()
	w0, e0 := childOf(t, b.west), childOf(t, b.east)
	dh := b.west.Status().Counters.DHOps
	b.tick(79 * time.Second)
	if c := childOf(t, b.west); c.SPIIn != w0.SPIIn {
		t.Fatalf("rekeyed before lifetime - rekeymargin")
	}
	b.tick(2 * time.Second) // 81 s: west (which made the Child SA) rekeys; east would at 90 s
	w1, e1 := childOf(t, b.west), childOf(t, b.east)
	if w1.SPIIn == w0.SPIIn || w1.SPIOut == w0.SPIOut || w1.ReqID != w0.ReqID || e1.ReqID != e0.ReqID {
		t.Errorf("not rekeyed: %+v -> %+v", w0, w1)
	}
	if w1.SPIIn != e1.SPIOut || w1.SPIOut != e1.SPIIn {
		t.Errorf("SPIs do not pair: %+v / %+v", w1, e1)
	}
	checkPair(t, b.wk, b.ek, kernel.Tunnel)
	checkMakeBeforeBreak(t, "west", wr, w0, w1)
	checkMakeBeforeBreak(t, "east", er, e0, e1)
	if got := b.west.Status().Counters.DHOps - dh; got != 2 {
		t.Errorf("west did %d DH operations in the rekey, want 2 (PFS)", got)
	}
	if !b.westLog.has("rekeyed Child SA") || !b.eastLog.has("the peer rekeyed Child SA") {
		t.Errorf("logs:\n%s\n%s", b.westLog, b.eastLog)
	}
	// And again, from the new SA's own timer.
	b.tick(81 * time.Second)
	if w2 := childOf(t, b.west); w2.SPIIn == w1.SPIIn {
		t.Errorf("second rekey did not happen")
	}
	checkPair(t, b.wk, b.ek, kernel.Tunnel)
	b.west.Terminate("test", nil)
	b.net.pump()
	b.empty(t)
}

func TestChildRekeyResponderSoftExpireNoPFS(t *testing.T) {
	b, wr, er := recBed(t, baseConn+"pfs=no", baseConn+"pfs=no", nil)
	b.mustUp()
	w0, e0 := childOf(t, b.west), childOf(t, b.east)
	dh := b.east.Status().Counters.DHOps
	b.east.HandleEvent(kernel.Event{Kind: kernel.SoftExpire, SA: kernel.SAID{Dst: eastAddr, SPI: e0.SPIIn, Proto: kernel.ESP}})
	b.net.pump()
	w1, e1 := childOf(t, b.west), childOf(t, b.east)
	if e1.SPIIn == e0.SPIIn || w1.SPIIn != e1.SPIOut || w1.SPIOut != e1.SPIIn {
		t.Fatalf("not rekeyed: %+v -> %+v / %+v", e0, e1, w1)
	}
	if got := b.east.Status().Counters.DHOps; got != dh {
		t.Errorf("pfs=no rekey did %d DH operations", got-dh)
	}
	checkPair(t, b.wk, b.ek, kernel.Tunnel)
	checkMakeBeforeBreak(t, "east", er, e0, e1)
	checkMakeBeforeBreak(t, "west", wr, w0, w1)
	// A hard expiry deletes the Child SA with the peer.
	b.west.HandleEvent(kernel.Event{Kind: kernel.HardExpire, SA: kernel.SAID{Dst: westAddr, SPI: w1.SPIIn, Proto: kernel.ESP}})
	b.net.pump()
	if n := len(b.wk.SAs()) + len(b.ek.SAs()); n != 0 {
		t.Errorf("%d SAs left after the hard expiry", n)
	}
}

func TestChildRekeyInvalidKE(t *testing.T) {
	b := newBed(t, baseConn+"esp=aes_gcm256;dh19+dh31", baseConn+"esp=aes_gcm256;dh31")
	b.mustUp()
	w0 := childOf(t, b.west)
	b.west.HandleEvent(kernel.Event{Kind: kernel.SoftExpire, SA: kernel.SAID{Dst: eastAddr, SPI: w0.SPIOut, Proto: kernel.ESP}})
	b.net.pump()
	if w1 := childOf(t, b.west); w1.SPIIn == w0.SPIIn {
		t.Fatalf("not rekeyed\n%s\n%s", b.westLog, b.eastLog)
	}
	if !b.westLog.has("INVALID_KE_PAYLOAD") {
		t.Errorf("no INVALID_KE_PAYLOAD round:\n%s", b.westLog)
	}
	checkPair(t, b.wk, b.ek, kernel.Tunnel)
}

func TestRekeyNo(t *testing.T) {
	conf := baseConn + "ipsec-lifetime=60s\nrekey=no"
	b := newBed(t, conf, conf)
	b.mustUp()
	b.tick(59 * time.Second)
	if len(b.wk.SAs()) != 2 {
		t.Fatalf("SAs gone early")
	}
	b.tick(2 * time.Second)
	if n := len(b.wk.SAs()) + len(b.ek.SAs()); n != 0 {
		t.Errorf("%d SAs left after the lifetime with rekey=no", n)
	}
	if n := len(b.west.Status().ChildSAs) + len(b.east.Status().ChildSAs); n != 0 {
		t.Errorf("%d Child SAs left", n)
	}
	if len(b.west.Status().IKESAs) != 1 {
		t.Errorf("the IKE SA went too")
	}
}

func TestIKERekey(t *testing.T) {
	conf := baseConn + "ikelifetime=100s\nrekeymargin=20s\nrekeyfuzz=0%"
	b := newBed(t, conf, conf)
	b.mustUp()
	i0 := b.west.Status().IKESAs[0]
	c0 := childOf(t, b.west)
	b.tick(81 * time.Second)
	ws, es := b.west.Status(), b.east.Status()
	if len(ws.IKESAs) != 1 || len(es.IKESAs) != 1 {
		t.Fatalf("IKE SAs: west %+v east %+v\n%s\n%s", ws.IKESAs, es.IKESAs, b.westLog, b.eastLog)
	}
	i1, e1 := ws.IKESAs[0], es.IKESAs[0]
	if i1.SPIi == i0.SPIi || i1.SPIr == i0.SPIr || i1.SPIi != e1.SPIi || i1.SPIr != e1.SPIr || !i1.Initiator || e1.Initiator {
		t.Errorf("IKE SA not rekeyed: %+v -> %+v / %+v", i0, i1, e1)
	}
	if i1.Children != 1 || e1.Children != 1 {
		t.Errorf("Child SAs did not move: %d / %d", i1.Children, e1.Children)
	}
	if c1 := childOf(t, b.west); c1.SPIIn != c0.SPIIn {
		t.Errorf("the Child SA changed")
	}
	checkPair(t, b.wk, b.ek, kernel.Tunnel)
	// The new IKE SA works: the peer rekeys the Child SA through it,
	// and then it is rekeyed itself (east made nothing: it rekeys at
	// lifetime - margin/2 = 90 s, west first at 80 s).
	ec := childOf(t, b.east)
	b.east.HandleEvent(kernel.Event{Kind: kernel.SoftExpire, SA: kernel.SAID{Dst: eastAddr, SPI: ec.SPIIn, Proto: kernel.ESP}})
	b.net.pump()
	if c2 := childOf(t, b.east); c2.SPIIn == ec.SPIIn {
		t.Errorf("Child SA rekey through the rekeyed IKE SA failed\n%s", b.eastLog)
	}
	checkPair(t, b.wk, b.ek, kernel.Tunnel)
	b.tick(81 * time.Second)
	if i2 := b.west.Status().IKESAs; len(i2) != 1 || i2[0].SPIi == i1.SPIi {
		t.Errorf("second IKE rekey: %+v", i2)
	}
	b.west.Terminate("test", nil)
	b.net.pump()
	b.empty(t)
	b.noIKE(t)
}

func TestIKERekeyByResponder(t *testing.T) {
	conf := baseConn + "ikelifetime=100s\nrekeymargin=20s\nrekeyfuzz=0%"
	b := newBed(t, baseConn, conf) // west never rekeys
	b.mustUp()
	b.tick(91 * time.Second)
	ws, es := b.west.Status(), b.east.Status()
	if len(ws.IKESAs) != 1 || len(es.IKESAs) != 1 || ws.IKESAs[0].Initiator || !es.IKESAs[0].Initiator || ws.IKESAs[0].SPIi != es.IKESAs[0].SPIi {
		t.Fatalf("IKE SAs: west %+v east %+v", ws.IKESAs, es.IKESAs)
	}
	checkPair(t, b.wk, b.ek, kernel.Tunnel)
	b.west.Terminate("test", nil)
	b.net.pump()
	b.empty(t)
	b.noIKE(t)
}

func TestSimultaneousChildRekey(t *testing.T) {
	for i := 0; i < 8; i++ { // the nonces decide; try both outcomes
		b := newBed(t, baseConn, baseConn)
		b.mustUp()
		w0, e0 := childOf(t, b.west), childOf(t, b.east)
		b.west.HandleEvent(kernel.Event{Kind: kernel.SoftExpire, SA: kernel.SAID{Dst: westAddr, SPI: w0.SPIIn, Proto: kernel.ESP}})
		b.east.HandleEvent(kernel.Event{Kind: kernel.SoftExpire, SA: kernel.SAID{Dst: eastAddr, SPI: e0.SPIIn, Proto: kernel.ESP}})
		b.net.pump()
		b.tick(time.Second)
		w1, e1 := childOf(t, b.west), childOf(t, b.east)
		if w1.SPIIn == w0.SPIIn || w1.SPIIn != e1.SPIOut || w1.SPIOut != e1.SPIIn {
			t.Fatalf("after simultaneous rekey: west %+v east %+v\n%s\n%s", w1, e1, b.westLog, b.eastLog)
		}
		checkPair(t, b.wk, b.ek, kernel.Tunnel)
	}
}

func TestSimultaneousIKERekey(t *testing.T) {
	for i := 0; i < 8; i++ {
		b := newBed(t, baseConn, baseConn)
		b.mustUp()
		for _, e := range []*Engine{b.west, b.east} {
			e.workers[0].exec(func(w *worker) {
				for _, sa := range w.sas {
					w.rekeyIKE(sa, 0, 0)
				}
			})
		}
		b.net.pump()
		b.tick(time.Second)
		ws, es := b.west.Status(), b.east.Status()
		if len(ws.IKESAs) != 1 || len(es.IKESAs) != 1 || ws.IKESAs[0].SPIi != es.IKESAs[0].SPIi || ws.IKESAs[0].Children != 1 || es.IKESAs[0].Children != 1 {
			t.Fatalf("after simultaneous IKE rekey: west %+v east %+v\n%s\n%s", ws.IKESAs, es.IKESAs, b.westLog, b.eastLog)
		}
		checkPair(t, b.wk, b.ek, kernel.Tunnel)
		b.west.Terminate("test", nil)
		b.net.pump()
		b.empty(t)
	}
}

var _ = strings.Contains
