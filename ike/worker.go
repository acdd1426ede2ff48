package ike

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"goswan/ike/message"
)

// worker owns a shard of the IKE SAs: those whose SPIi hashes to it. All
// of its fields but jobs and tickPending are guarded by mu, which the
// worker holds while it runs a job; on the packet path nobody else wants
// it, so it costs an uncontended lock per job.
type worker struct {
	e           *Engine
	id          int
	jobs        chan job // nil with Workers == 0
	tickPending atomic.Bool

	mu sync.Mutex
	// sas holds every IKE SA of the shard by our own SPI (SPIi when we
	// initiated it, SPIr when we responded).
	sas map[uint64]*ikeSA
	// halfOpen finds a responder's IKE SA by the peer's SPIi and address
	// until the peer has learnt our SPI (a retransmitted IKE_SA_INIT).
	halfOpen map[halfOpenKey]*ikeSA
	// timed holds the SAs that have a timer running.
	timed map[*ikeSA]struct{}
	// callbacks are progress reports to make once mu is released.
	callbacks []func()
	// Scratch buffers, reused from message to message.
	plain []byte
	inner []byte
}

type halfOpenKey struct {
	spii   [8]byte
	remote netip.AddrPort
}

func newWorker(e *Engine, id int) *worker {
	return &worker{
		e: e, id: id,
		sas:      map[uint64]*ikeSA{},
		halfOpen: map[halfOpenKey]*ikeSA{},
		timed:    map[*ikeSA]struct{}{},
	}
}

func (w *worker) run() {
	defer w.e.wg.Done()
	for j := range w.jobs {
		if j.fn != nil {
			w.exec(j.fn)
		} else {
			w.mu.Lock()
			w.handlePacket(j.pkt)
			w.unlock()
		}
		if j.done != nil {
			close(j.done)
		}
	}
}

// exec runs fn with the worker's state, then the progress callbacks it
// queued.
func (w *worker) exec(fn func(w *worker)) {
	w.mu.Lock()
	fn(w)
	w.unlock()
}

// unlock releases mu and runs the queued callbacks.
func (w *worker) unlock() {
	cbs := w.callbacks
	w.callbacks = nil
	w.mu.Unlock()
	for _, f := range cbs {
		f()
	}
}

// later queues f to run once mu is released.
func (w *worker) later(f func()) { w.callbacks = append(w.callbacks, f) }

func spiKey(s [8]byte) uint64 { return binary.BigEndian.Uint64(s[:]) }

// handlePacket runs one datagram that passed Receive's header checks.
func (w *worker) handlePacket(p Packet) {
	e := w.e
	h := message.Header(p.Data)
	flags := h.Flags()
	exch := h.ExchangeType()
	spii, spir := h.SPIi(), h.SPIr()
	response := flags&message.FlagResponse != 0
	fromInitiator := flags&message.FlagInitiator != 0

	if exch == message.IKE_SA_INIT && !response && fromInitiator {
		if spir != ([8]byte{}) || h.MessageID() != 0 {
			e.drop(dropInvalidInit)
			return
		}
		if sa := w.halfOpen[halfOpenKey{spii, p.Remote}]; sa != nil {
			w.retransmitResponse(sa, p, 0)
			return
		}
		w.respondInit(p)
		return
	}

	var sa *ikeSA
	if fromInitiator {
		sa = w.sas[spiKey(spir)]
		if sa != nil && (sa.initiator || sa.spii != spii) {
			sa = nil
		}
	} else {
		sa = w.sas[spiKey(spii)]
		if sa != nil && (!sa.initiator || (sa.spir != spir && !(exch == message.IKE_SA_INIT && sa.spir == [8]byte{}))) {
			sa = nil
		}
	}
	if sa == nil {
		e.drop(dropUnknownSA)
		return
	}
	if exch == message.IKE_SA_INIT {
		if !response || !sa.initiator || sa.state != stateInitSent {
			e.drop(dropUnexpected)
			return
		}
		w.initResponse(sa, p)
		return
	}
	if !sa.keyed() {
		e.drop(dropUnexpected)
		return
	}
	msgid := h.MessageID()
	if response {
		if sa.out == nil || sa.out.msgid != msgid {
			e.drop(dropMessageID)
			return
		}
	} else {
		switch {
		case msgid == sa.peerNext:
		case sa.peerNext > 0 && msgid == sa.peerNext-1 && sa.lastResponse != nil:
			// RFC 7383 §2.6.1: a fragmented request is answered again
			// only for its first fragment.
			if m, err := message.Decode(p.Data); err == nil {
				if f := m.Fragment(); f != nil && f.Number != 1 {
					return
				}
			}
			w.retransmitResponse(sa, p, msgid)
			return
		default:
			e.drop(dropMessageID)
			return
		}
	}
	m, inner, ok := w.open(sa, p.Data, response, msgid)
	if !ok {
		return
	}
	sa.lastHeard = e.now()
	if sa.state == stateEstablished && (p.Remote != sa.remote || p.Local != sa.local) {
		w.followPeer(sa, p.Local, p.Remote)
	}
	if response {
		w.handleResponse(sa, p, m, inner)
	} else {
		w.handleRequest(sa, p, m, inner)
	}
}

// open decodes a protected message and decrypts and decodes its SK
// payload. Drops are counted; a malformed inner chain of a request is
// answered with INVALID_SYNTAX (RFC 7296 §2.21.2: only inside a protected
// exchange).
func (w *worker) open(sa *ikeSA, b []byte, response bool, msgid uint32) (*message.Message, []message.Payload, bool) {
	e := w.e
	m, err := message.Decode(b)
	if err != nil {
		e.drop(dropMalformed)
		return nil, nil, false
	}
	sk := m.Encrypted()
	var (
		pt    []byte
		first message.PayloadType
	)
	if sk == nil {
		f := m.Fragment()
		if f == nil {
			e.drop(dropUnprotected)
			return nil, nil, false
		}
		var done bool
		if pt, first, done = w.addFragment(sa, b, f, response, msgid); !done {
			return nil, nil, false
		}
	} else {
		aad := b[:len(b)-len(sk.Body)]
		pt, err = sa.skIn.Decrypt(w.plain[:0], aad, sk.Body)
		if err != nil {
			e.drop(dropIntegrity)
			return nil, nil, false
		}
		w.plain = pt[:0]
		first = sk.InnerFirst
	}
	inner, err := message.DecodePayloads(first, pt)
	if err != nil {
		e.drop(dropMalformed)
		if !m.IsResponse() {
			n := message.NotifyFor(err)
			if n == 0 {
				n = message.InvalidSyntax
			}
			var data []byte
			if me, ok := err.(*message.Error); ok {
				data = me.Data
			}
			w.respond(sa, m.Exchange, m.MessageID, []message.Payload{&message.Notify{NotifyType: n, Data: data}})
		}
		return nil, nil, false
	}
	return m, inner, true
}

// retransmitResponse answers a retransmitted request with the response
// cached for it, without redoing any work.
func (w *worker) retransmitResponse(sa *ikeSA, p Packet, msgid uint32) {
	if sa.lastResponse == nil || sa.lastResponseID != msgid {
		w.e.drop(dropMessageID)
		return
	}
	w.e.ctr.cachedResponses.Add(1)
	w.sendFrags(sa, sa.lastResponse)
}

// tick fires the timers of the shard's SAs.
func (w *worker) tick(now time.Time) {
	for sa := range w.timed {
		w.tickSA(sa, now)
	}
}

// deleteConnSAs deletes the IKE SAs of conn name (but not those of the
// conn keep) with their peers, then locally, and returns how many there
// were.
func (w *worker) deleteConnSAs(name string, keep *conn, why string, progress func(Progress)) int {
	n := 0
	for _, sa := range w.sas {
		if sa.conn.name != name || sa.conn == keep {
			continue
		}
		n++
		if progress != nil {
			line := "deleting IKE SA " + sa.String() + " (" + why + ")"
			w.later(func() { progress(Progress{Line: line}) })
		}
		w.deleteIKE(sa, why, nil, true)
	}
	return n
}

// deleteAll deletes every IKE SA of the shard with its peer and forgets
// it without waiting for the answer (the engine is closing).
func (w *worker) deleteAll(why string) {
	for _, sa := range w.sas {
		if sa.state == stateEstablished && !sa.replaced {
			w.deleteIKE(sa, why, nil, true)
		}
		w.forget(sa, nil)
	}
}

// broadcast runs fn on every worker: at once on w (the caller's), as a
// job without waiting on the others (from a worker, waiting could
// deadlock).
func (w *worker) broadcast(fn func(w *worker)) {
	fn(w)
	for _, o := range w.e.workers {
		if o == w {
			continue
		}
		go w.e.do(o, false, fn)
	}
}
