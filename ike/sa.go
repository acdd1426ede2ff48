package ike

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"goswan/ike/crypto"
	"goswan/ike/message"
	"goswan/kernel"
)

// saState is where an IKE SA is in its life.
type saState uint8

const (
	stateInitSent    saState = iota + 1 // initiator: IKE_SA_INIT request out
	stateAuthSent                       // initiator: IKE_AUTH request out
	stateHalfOpen                       // responder: IKE_SA_INIT answered
	stateEstablished                    // IKE_AUTH done
	stateDeleting                       // our Delete of the IKE SA is out
)

func (s saState) String() string {
	switch s {
	case stateInitSent:
		return "IKE_SA_INIT_I"
	case stateAuthSent:
		return "IKE_AUTH_I"
	case stateHalfOpen:
		return "IKE_SA_INIT_R"
	case stateEstablished:
		return "ESTABLISHED_IKE_SA"
	case stateDeleting:
		return "DELETING"
	}
	return "UNKNOWN"
}

// ikeSA is one IKE SA. Only its worker touches it.
type ikeSA struct {
	w          *worker
	conn       *conn
	initiator  bool
	spii, spir [8]byte
	state      saState

	local, remote netip.AddrPort // as in use now (after a NAT-T float)
	natUs         bool           // we are behind a NAT
	natPeer       bool           // the peer is behind a NAT

	choice      ikeChoice
	keTries     int
	cookieTries int
	dh          crypto.Private
	ni, nr      []byte
	cookie      []byte
	ourInit     []byte // our IKE_SA_INIT message, for AUTH
	peerInit    []byte // the peer's IKE_SA_INIT message, for AUTH
	prf         *crypto.PRF
	keys        *crypto.Keys
	skOut, skIn *crypto.SK

	localID, remoteID identity
	// peerHashes is the peer's SIGNATURE_HASH_ALGORITHMS (nil when it
	// sent none: then only the older signature methods), peerCertReq
	// whether it sent a CERTREQ.
	peerHashes  []crypto.SignatureHash
	peerCertReq bool

	nextMsgID uint32   // our next request
	out       *request // our outstanding request (window 1)
	queue     []*request

	peerNext       uint32   // the peer's next request
	lastResponse   [][]byte // the answer to the peer's request peerNext-1 (its fragments)
	lastResponseID uint32

	fragPeer bool        // both ends announced IKEV2_FRAGMENTATION_SUPPORTED
	reasm    *reassembly // the fragments of a message being reassembled

	// Lifetimes (rekey.go). rekeyAt is when we rekey the IKE SA (zero:
	// never), expireAt when it is deleted if not rekeyed by then.
	rekeyAt, expireAt time.Time
	ikeRekey          *ikeRekey     // our CREATE_CHILD_SA rekeying this IKE SA is out
	peerIKERekey      *ikeCollision // the peer's rekey we answered while ours was out
	replaced          bool          // a rekey made its successor; waiting for the Delete
	// redundantBy: the peer made this IKE SA in a simultaneous rekey that
	// its exchange lost (§2.8.1); the peer deletes it, or we do by then.
	redundantBy time.Time
	lastSent    time.Time // for NAT-T keep-alives
	counted     bool      // counted in Engine.peers (established)
	movedHere   bool      // routed to this worker through Engine.moved

	children []*childSA
	pending  *childSA // initiator: the Child SA of IKE_AUTH

	progress        func(Progress)
	done            bool // the final progress report was made
	created         time.Time
	established     time.Time
	lastHeard       time.Time
	halfOpenExpires time.Time
	halfOpenRemote  netip.AddrPort // responder: the peer's address in IKE_SA_INIT
	deleteBy        time.Time      // stateDeleting: forget by then
}

// request is one of our requests: sent, waiting for its response.
type request struct {
	msgid      uint32
	exchange   message.ExchangeType
	payloads   []message.Payload // inner payloads, for requests queued
	frags      [][]byte          // the datagrams: one, or the SKF fragments
	firstSent  time.Time
	nextSend   time.Time
	interval   time.Duration
	noRetrans  bool
	timeout    time.Duration // 0: the conn's retransmit-timeout
	onResponse func(w *worker, sa *ikeSA, m *message.Message, inner []message.Payload)
	onTimeout  func(w *worker, sa *ikeSA)
	rekeysIKE  bool // our CREATE_CHILD_SA rekeying the IKE SA
}

func (sa *ikeSA) keyed() bool { return sa.skIn != nil }

func (sa *ikeSA) ourSPI() uint64 {
	if sa.initiator {
		return spiKey(sa.spii)
	}
	return spiKey(sa.spir)
}

// String names the IKE SA as Libreswan's logs do: conn name and SPIs.
func (sa *ikeSA) String() string {
	return fmt.Sprintf("%q %s:%s", sa.conn.name, hex.EncodeToString(sa.spii[:]), hex.EncodeToString(sa.spir[:]))
}

// report sends a progress line to the initiator's caller.
func (w *worker) report(sa *ikeSA, format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	w.e.log.Logf("%s: %s", sa.conn.name, line)
	if p := sa.progress; p != nil && !sa.done {
		w.later(func() { p(Progress{Line: line}) })
	}
}

// finish makes the final progress report (once).
func (w *worker) finish(sa *ikeSA, err error) {
	if sa.done {
		return
	}
	sa.done = true
	if err != nil {
		w.e.log.Warnf("%s: %v", sa.conn.name, err)
	}
	if p := sa.progress; p != nil {
		line := "established"
		if err != nil {
			line = err.Error()
		}
		w.later(func() { p(Progress{Line: line, Done: true, Err: err}) })
	}
}

// seal builds a protected message of sa with inner payloads.
func (w *worker) seal(sa *ikeSA, exch message.ExchangeType, response bool, msgid uint32, inner []message.Payload) ([]byte, error) {
	first, pt, err := message.AppendPayloads(w.inner[:0], inner)
	if err != nil {
		return nil, err
	}
	w.inner = pt[:0]
	flags := message.Flags(0)
	if sa.initiator {
		flags |= message.FlagInitiator
	}
	if response {
		flags |= message.FlagResponse
	}
	m := message.Message{SPIi: sa.spii, SPIr: sa.spir, Exchange: exch, Flags: flags, MessageID: msgid,
		Payloads: []message.Payload{&message.Encrypted{InnerFirst: first}}}
	n := sa.skOut.SealedSize(len(pt))
	out := make([]byte, 0, message.HeaderLen+message.GenericPayloadHeaderLen+n)
	out, err = m.AppendAssociatedData(out, n)
	if err != nil {
		return nil, err
	}
	return sa.skOut.Encrypt(out, out, pt)
}

// respond answers the peer's request msgid and caches the answer.
func (w *worker) respond(sa *ikeSA, exch message.ExchangeType, msgid uint32, inner []message.Payload) {
	frags, err := w.sealMsg(sa, exch, true, msgid, inner)
	if err != nil {
		w.e.log.Warnf("%s: cannot build %v response: %v", sa.conn.name, exch, err)
		return
	}
	if msgid == sa.peerNext {
		sa.peerNext++
	}
	sa.lastResponse, sa.lastResponseID = frags, msgid
	w.sendFrags(sa, frags)
}

// sendFrags sends the datagrams of one message of sa.
func (w *worker) sendFrags(sa *ikeSA, frags [][]byte) {
	sa.lastSent = w.e.now()
	for _, b := range frags {
		w.e.send(Packet{Local: sa.local, Remote: sa.remote, Data: b})
	}
}

// request sends (or queues behind the outstanding one) a request of sa.
func (w *worker) request(sa *ikeSA, r *request) {
	if sa.out != nil {
		sa.queue = append(sa.queue, r)
		return
	}
	w.sendRequest(sa, r)
}

func (w *worker) sendRequest(sa *ikeSA, r *request) {
	r.msgid = sa.nextMsgID
	b, err := w.sealMsg(sa, r.exchange, false, r.msgid, r.payloads)
	if err != nil {
		err = fmt.Errorf("cannot build %v request: %v", r.exchange, err)
		if sa.state == stateAuthSent || sa.state == stateDeleting {
			w.forget(sa, err) // nothing else would end the exchange
			return
		}
		w.e.log.Warnf("%s: %v", sa.conn.name, err)
		return
	}
	sa.nextMsgID++
	r.frags = b
	r.payloads = nil
	w.transmit(sa, r)
}

// transmit sends r for the first time and arms its retransmission.
func (w *worker) transmit(sa *ikeSA, r *request) {
	now := w.e.now()
	r.firstSent = now
	r.interval = sa.conn.retransmitInterval
	r.nextSend = now.Add(r.interval)
	sa.out = r
	w.timed[sa] = struct{}{}
	w.sendFrags(sa, r.frags)
}

// responded ends the outstanding request and sends the next queued one.
func (w *worker) responded(sa *ikeSA) {
	sa.out = nil
	w.updateTimer(sa)
	if len(sa.queue) > 0 && w.sas[sa.ourSPI()] == sa {
		r := sa.queue[0]
		sa.queue = sa.queue[1:]
		w.sendRequest(sa, r)
	}
}

// updateTimer keeps sa among the SAs that Tick looks at: every SA the
// worker holds has some timer (retransmission, half-open expiry,
// rekeying, expiry, liveness, keep-alives).
func (w *worker) updateTimer(sa *ikeSA) {
	if w.sas[sa.ourSPI()] == sa {
		w.timed[sa] = struct{}{}
	}
}

// tickSA fires sa's due timers.
func (w *worker) tickSA(sa *ikeSA, now time.Time) {
	e := w.e
	if (sa.state == stateDeleting || sa.replaced) && !sa.deleteBy.IsZero() && !now.Before(sa.deleteBy) {
		w.forget(sa, nil)
		return
	}
	if sa.state == stateHalfOpen && !now.Before(sa.halfOpenExpires) {
		e.log.Logf("%s: deleting half-open IKE SA %s: no IKE_AUTH request within %v", sa.conn.name, sa, e.o.HalfOpenTimeout)
		w.forget(sa, errors.New("half-open IKE SA expired"))
		return
	}
	if ra := sa.reasm; ra != nil && now.Sub(ra.started) >= sa.conn.retransmitTimeout {
		sa.reasm = nil
		e.drop(dropFragment)
	}
	if r := sa.out; r != nil && !r.noRetrans && !now.Before(r.nextSend) {
		limit := sa.conn.retransmitTimeout
		if r.timeout > 0 {
			limit = r.timeout
		}
		if now.Sub(r.firstSent) >= limit {
			err := fmt.Errorf("no response to our %v request after %v (retransmit-timeout): giving up", r.exchange, limit)
			if r.onTimeout != nil {
				r.onTimeout(w, sa)
			}
			if sa.state == stateEstablished && !sa.replaced {
				w.peerDead(sa, err)
				return
			}
			w.forget(sa, err)
			return
		}
		e.ctr.retransmits.Add(1)
		r.interval *= 2
		r.nextSend = now.Add(r.interval)
		if sa.state == stateInitSent || sa.state == stateAuthSent {
			w.report(sa, "retransmitting %v request (%v since the first)", r.exchange, now.Sub(r.firstSent).Round(time.Millisecond))
		}
		w.sendFrags(sa, r.frags)
	}
	if sa.state != stateEstablished || sa.replaced {
		return
	}
	if !sa.redundantBy.IsZero() && !now.Before(sa.redundantBy) {
		sa.redundantBy = time.Time{}
		if len(sa.children) == 0 && sa.out == nil && len(sa.queue) == 0 {
			w.deleteIKE(sa, "redundant (simultaneous rekey), not deleted by the peer", nil, true)
			return
		}
	}
	if !w.lifetimes(sa, now) {
		return
	}
	w.liveness(sa, now)
	w.keepAlive(sa, now)
}

// deleteIKE deletes sa: with notify and an established SA, its Child SAs
// go from the kernel at once and the peer gets an INFORMATIONAL Delete;
// the IKE SA itself lingers in stateDeleting until the answer (or a short
// wait) so the answer is not counted as garbage. Otherwise it is
// forgotten at once.
func (w *worker) deleteIKE(sa *ikeSA, why string, err error, notify bool) {
	w.e.log.Logf("%s: deleting IKE SA %s (%s)", sa.conn.name, sa, why)
	if sa.state == stateDeleting {
		return
	}
	if err == nil && !sa.done && sa.progress != nil {
		err = fmt.Errorf("IKE SA deleted (%s)", why)
	}
	if !notify || !sa.keyed() || sa.state != stateEstablished {
		w.forget(sa, err)
		return
	}
	w.removeChildren(sa)
	w.finish(sa, err)
	sa.state = stateDeleting
	sa.out, sa.queue = nil, nil
	sa.deleteBy = w.e.now().Add(max(2*time.Second, 4*sa.conn.retransmitInterval))
	w.sendRequest(sa, &request{
		exchange:   message.INFORMATIONAL,
		payloads:   []message.Payload{&message.Delete{Protocol: message.ProtocolIKE}},
		noRetrans:  true,
		onResponse: func(w *worker, sa *ikeSA, _ *message.Message, _ []message.Payload) { w.forget(sa, nil) },
	})
	w.timed[sa] = struct{}{}
}

// forget removes sa and its Child SAs locally (kernel included) and makes
// the final progress report with err.
func (w *worker) forget(sa *ikeSA, err error) {
	w.removeChildren(sa)
	w.e.peerGone(sa)
	if sa.state == stateHalfOpen {
		w.e.halfOpenCount.Add(-1)
		sa.state = stateDeleting
	}
	if r := sa.ikeRekey; r != nil {
		sa.ikeRekey = nil
	}
	if sa.movedHere {
		sa.movedHere = false
		w.e.moved.Delete(sa.spii)
		w.e.nmoved.Add(-1)
	}
	if c := sa.pending; c != nil {
		w.releaseSPI(sa, c)
		sa.pending = nil
	}
	if w.sas[sa.ourSPI()] == sa {
		delete(w.sas, sa.ourSPI())
	}
	if k := (halfOpenKey{sa.spii, sa.initRemote()}); !sa.initiator && w.halfOpen[k] == sa {
		delete(w.halfOpen, k)
	}
	delete(w.timed, sa)
	sa.out, sa.queue = nil, nil
	if sa.keys != nil {
		sa.keys.Wipe()
	}
	if sa.prf != nil {
		sa.prf.Wipe()
	}
	if err == nil && !sa.done && sa.progress != nil {
		err = errors.New("IKE SA deleted")
	}
	w.finish(sa, err)
}

// initRemote is the peer's address of the IKE_SA_INIT request, the
// half-open table's key.
func (sa *ikeSA) initRemote() netip.AddrPort { return sa.halfOpenRemote }

var bg = context.Background()

// releaseSPI gives back the SPI reserved for a Child SA that was never
// installed.
func (w *worker) releaseSPI(sa *ikeSA, c *childSA) {
	if c.inSPI == 0 || c.installed {
		return
	}
	id := kernel.SAID{Dst: c.spiDst, SPI: c.inSPI, Proto: kernel.ESP}
	if err := w.e.o.Kernel.DeleteSA(bg, id); err != nil && !errors.Is(err, kernel.ErrNotFound) {
		w.e.log.Warnf("%s: releasing SPI %08x: %v", sa.conn.name, c.inSPI, err)
	}
	c.inSPI = 0
}
