package ike

import (
	"testing"
	"time"

	"goswan/ike/message"
	"goswan/kernel"
)

// rekeyIKEOn starts e's rekey of its IKE SAs.
func rekeyIKEOn(e *Engine) {
	e.workers[0].exec(func(w *worker) {
		for _, sa := range w.sas {
			w.rekeyIKE(sa, 0, 0)
		}
	})
}

// settleRekey ticks the bed for a while (past the retransmit-timeout) and
// checks that both ends keep one IKE SA, the same, with the Child SA on it.
func settleRekey(t *testing.T, b *bed) {
	t.Helper()
	for i := 0; i < 150; i++ {
		b.tick(500 * time.Millisecond)
	}
	ws, es := b.west.Status(), b.east.Status()
	if len(ws.IKESAs) != 1 || len(es.IKESAs) != 1 || ws.IKESAs[0].SPIi != es.IKESAs[0].SPIi || ws.IKESAs[0].SPIr != es.IKESAs[0].SPIr ||
		ws.IKESAs[0].Children != 1 || es.IKESAs[0].Children != 1 {
		t.Fatalf("after the simultaneous IKE rekey: west %+v east %+v\n%s\n%s", ws.IKESAs, es.IKESAs, b.westLog, b.eastLog)
	}
	checkPair(t, b.wk, b.ek, kernel.Tunnel)
	// The Child SA still rekeys through the IKE SA both ends kept.
	w0 := childOf(t, b.west)
	b.west.HandleEvent(kernel.Event{Kind: kernel.SoftExpire, SA: kernel.SAID{Dst: westAddr, SPI: w0.SPIIn, Proto: kernel.ESP}})
	b.net.pump()
	b.tick(time.Second)
	if w1, e1 := childOf(t, b.west), childOf(t, b.east); w1.SPIIn == w0.SPIIn || w1.SPIIn != e1.SPIOut || w1.SPIOut != e1.SPIIn {
		t.Fatalf("Child SA rekey after the IKE rekey: west %+v east %+v\n%s\n%s", w1, e1, b.westLog, b.eastLog)
	}
	checkPair(t, b.wk, b.ek, kernel.Tunnel)
}

// TestSimultaneousIKERekeyOursLost: east's rekey of the IKE SA is lost;
// west rekeys it too and east answers (a simultaneous rekey for east);
// west, which never saw east's request, deletes the old IKE SA before
// east hears anything about its own request. The Child SA, rekeyed on the
// old IKE SA meanwhile, must stay, on west's new IKE SA.
func TestSimultaneousIKERekeyOursLost(t *testing.T) {
	b := newBed(t, baseConn, baseConn)
	b.mustUp()
	dropEast := true
	b.net.drop = func(_ int, p Packet) bool { return dropEast && p.Remote.Addr() == westAddr }
	rekeyIKEOn(b.east) // lost
	dropEast = false
	// West rekeys the Child SA on the old IKE SA while east's rekey is out.
	w0 := childOf(t, b.west)
	b.west.HandleEvent(kernel.Event{Kind: kernel.SoftExpire, SA: kernel.SAID{Dst: westAddr, SPI: w0.SPIIn, Proto: kernel.ESP}})
	b.net.pump()
	if w1 := childOf(t, b.west); w1.SPIIn == w0.SPIIn {
		t.Fatalf("Child SA not rekeyed\n%s\n%s", b.westLog, b.eastLog)
	}
	rekeyIKEOn(b.west)
	b.net.pump()
	if !b.eastLog.has("simultaneous rekey") {
		t.Fatalf("no simultaneous rekey at east:\n%s", b.eastLog)
	}
	settleRekey(t, b)
}

// TestSimultaneousIKERekeyResponseLost: both rekey requests cross, each
// end answers the other's, and west's answer to east is lost, so east
// hears of the outcome first through west's Delete (of the old IKE SA or
// of west's redundant one), then through its retransmission, if at all.
func TestSimultaneousIKERekeyResponseLost(t *testing.T) {
	for i := 0; i < 16; i++ { // the nonces decide; try both outcomes
		b := newBed(t, baseConn, baseConn)
		b.mustUp()
		dropped := false
		b.net.drop = func(_ int, p Packet) bool {
			h := message.Header(p.Data)
			if !dropped && p.Remote.Addr() == eastAddr && h.ExchangeType() == message.CREATE_CHILD_SA && h.Flags()&message.FlagResponse != 0 {
				dropped = true
				return true
			}
			return false
		}
		rekeyIKEOn(b.west)
		rekeyIKEOn(b.east)
		b.net.pump()
		if !dropped || !b.westLog.has("simultaneous rekey") || !b.eastLog.has("simultaneous rekey") {
			t.Fatalf("not a simultaneous rekey:\n%s\n%s", b.westLog, b.eastLog)
		}
		settleRekey(t, b)
		b.west.Terminate("test", nil)
		b.net.pump()
		b.empty(t)
	}
}
