package ike

// Rekeying with CREATE_CHILD_SA (RFC 7296 §1.3.2, §1.3.3, §2.8, §2.18).
//
// Timing is Libreswan's: an SA that we made (as the initiator of its
// exchange) is rekeyed at lifetime - rekeymargin - a random part of
// rekeyfuzz% of rekeymargin; one the peer made at lifetime - rekeymargin/2,
// so the side that made an SA normally rekeys it first. With rekey=no
// nothing is rekeyed and an SA is deleted at its lifetime. The data
// plane's soft expiry (HandleEvent) rekeys at once, its hard expiry
// deletes.
//
// A Child SA is rekeyed make-before-break with the old one's reqid, so
// the policies follow the newest SA: the initiator installs the new
// inbound and outbound SAs on the response, removes the old outbound SA,
// and deletes the old Child SA with the peer, keeping the old inbound SA
// until the answer. The responder installs the new inbound SA at once and
// holds the new outbound SA back until the initiator's Delete of the old
// one arrives (or the linger time passes), so nothing is sent with an SA
// the initiator cannot open yet.
//
// An IKE SA is rekeyed into a new IKE SA with new SPIs and SKEYSEED =
// prf(SK_d (old), g^ir (new) | Ni | Nr); the Child SAs move to it and the
// rekey's initiator deletes the old IKE SA. The new IKE SA stays on the
// worker of the old one (Engine.moved routes its SPIi there when the peer
// chose it), so Child SAs never change worker.
//
// Simultaneous rekeys (§2.8.1): when we answer the peer's rekey of an SA
// while our own rekey of it is out, we note the peer's exchange; when our
// answer comes, the exchange with the lowest of the four nonces made the
// redundant SA, which its initiator deletes; the initiator of the other
// exchange deletes the old SA. The Child SAs stay on the old SA until we
// know which new one survives: the outcome of our exchange, a failure or
// timeout of it (then the peer's stands), or the peer's Delete of the old
// SA before any of those (under loss; the peer deletes the old SA only
// when its exchange made the survivor). A redundant SA that the peer made
// and fails to delete (its Delete is not retransmitted, or it never heard
// our answer) is deleted by us after the retransmit-timeout.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"goswan/ike/crypto"
	"goswan/ike/message"
	"goswan/kernel"
	"goswan/proposal"
)

// childRekey is our CREATE_CHILD_SA rekeying a Child SA.
type childRekey struct {
	ni    []byte
	dh    crypto.Private
	child *childSA // the new one; its inbound SPI is reserved
	tries int
}

// childCollision is the peer's rekey of a Child SA that we answered while
// ours of it was out.
type childCollision struct {
	ni, nr []byte
	child  *childSA
}

// ikeRekey is our CREATE_CHILD_SA rekeying the IKE SA.
type ikeRekey struct {
	ni    []byte
	dh    crypto.Private
	spi   [8]byte
	offer []message.Proposal
	tries int
}

// ikeCollision is the peer's rekey of the IKE SA that we answered while
// ours was out.
type ikeCollision struct {
	ni, nr []byte
	sa     *ikeSA
}

// rekeyRetry is how long we wait before trying a failed rekey again.
const rekeyRetry = 30 * time.Second

// lowestIsOurs applies §2.8.1: of the nonces of our exchange (ours) and
// the peer's (theirs), is the lowest one, compared octet by octet, in
// ours?
func lowestIsOurs(ours, theirs [2][]byte) bool {
	low := func(n [2][]byte) []byte {
		if bytes.Compare(n[1], n[0]) < 0 {
			return n[1]
		}
		return n[0]
	}
	return bytes.Compare(low(ours), low(theirs)) < 0
}

// margin returns how long before the end of lifetime an SA is rekeyed:
// rekeymargin plus a random part of rekeyfuzz% of it for an SA we made,
// half of rekeymargin for one the peer made (Libreswan).
func (w *worker) margin(sa *ikeSA, life time.Duration, ours bool) time.Duration {
	cfg := sa.conn.cfg
	m := cfg.RekeyMargin
	if ours {
		if f := cfg.RekeyFuzz; f > 0 && m > 0 {
			var b [8]byte
			if _, err := w.e.o.Rand.Read(b[:]); err == nil {
				frac := float64(binary.BigEndian.Uint64(b[:])>>11) / float64(1<<53)
				m += time.Duration(float64(m) * float64(f) / 100 * frac)
			}
		}
	} else {
		m /= 2
	}
	if m >= life {
		m = life / 2
	}
	return m
}

// scheduleChild sets c's rekey and expiry times from its creation; ours
// says whether we made it (initiated its exchange).
func (w *worker) scheduleChild(sa *ikeSA, c *childSA, ours bool) {
	life := sa.conn.cfg.IPsecLifetime
	if c.created.IsZero() {
		c.created = w.e.now()
	}
	if life <= 0 {
		return
	}
	c.expireAt = c.created.Add(life)
	if sa.conn.cfg.Rekey {
		c.softLife = life - w.margin(sa, life, ours)
		c.rekeyAt = c.created.Add(c.softLife)
	}
}

// scheduleIKE sets sa's rekey and expiry times.
func (w *worker) scheduleIKE(sa *ikeSA, ours bool) {
	life := sa.conn.cfg.IKELifetime
	if life <= 0 {
		return
	}
	start := sa.established
	if start.IsZero() {
		start = w.e.now()
	}
	if ours && !sa.created.IsZero() && sa.created.Before(start) {
		// Our IKE SA counts from our IKE_SA_INIT, as our Child SA from
		// our IKE_AUTH: the peer's clock starts later (by the exchange
		// and any retransmissions), so we rekey first as we should.
		start = sa.created
	}
	sa.expireAt = start.Add(life)
	if sa.conn.cfg.Rekey {
		sa.rekeyAt = start.Add(life - w.margin(sa, life, ours))
	}
}

// lifetimes fires sa's rekey and expiry timers and those of its Child
// SAs. It reports false when sa is gone.
func (w *worker) lifetimes(sa *ikeSA, now time.Time) bool {
	if !sa.expireAt.IsZero() && !now.Before(sa.expireAt) {
		w.deleteIKE(sa, "IKE SA lifetime expired", nil, true)
		return false
	}
	childBusy := false
	for _, c := range slices.Clone(sa.children) {
		switch {
		case c.replaced:
			if !c.lingerUntil.IsZero() && !now.Before(c.lingerUntil) {
				w.dropChild(sa, c)
			}
			continue
		case !c.expireAt.IsZero() && !now.Before(c.expireAt):
			w.e.log.Logf("%s: Child SA ESP %08x<->%08x reached its lifetime: deleting it", sa.conn.name, c.inSPI, c.outSPI)
			w.deleteChildWithPeer(sa, c)
			continue
		case c.rekey != nil:
			childBusy = true
		case !c.rekeyAt.IsZero() && !now.Before(c.rekeyAt) && sa.ikeRekey == nil:
			w.rekeyChild(sa, c, 0, 0)
			childBusy = childBusy || c.rekey != nil
		}
	}
	if !sa.rekeyAt.IsZero() && !now.Before(sa.rekeyAt) && sa.ikeRekey == nil && !childBusy {
		w.rekeyIKE(sa, 0, 0)
	}
	return true
}

// pfsGroups are the key exchange groups for PFS in CREATE_CHILD_SA: those
// of esp=, or else the IKE SA's (Libreswan).
func pfsGroups(sa *ikeSA) []proposal.DHGroup {
	var gs []proposal.DHGroup
	for _, p := range sa.conn.esp {
		for _, g := range p.DH {
			if g != 0 && !slices.Contains(gs, g) {
				gs = append(gs, g)
			}
		}
	}
	if len(gs) == 0 {
		gs = append(gs, sa.choice.group)
	}
	return gs
}

// espOfferKE is espOffer with the KE transforms of groups in every
// proposal (CREATE_CHILD_SA with PFS).
func espOfferKE(sa *ikeSA, spi uint32, groups []proposal.DHGroup) ([]message.Proposal, error) {
	ps, err := espOffer(sa.conn.esp, sa.conn.esn, spi)
	if err != nil || len(groups) == 0 {
		return ps, err
	}
	for i := range ps {
		for _, g := range groups {
			ps[i].Transforms = append(ps[i].Transforms, message.Transform{Type: message.TransformKE, ID: uint16(g)})
		}
	}
	return ps, nil
}

func keGroups(p *message.Proposal) []proposal.DHGroup {
	var gs []proposal.DHGroup
	for i := range p.Transforms {
		if t := &p.Transforms[i]; t.Type == message.TransformKE {
			gs = append(gs, proposal.DHGroup(t.ID))
		}
	}
	return gs
}

func spiBytes(spi uint32) []byte { return binary.BigEndian.AppendUint32(nil, spi) }

// rekeyChild starts our rekey of c, with the KE of group (0: the first
// PFS group) when PFS is on.
func (w *worker) rekeyChild(sa *ikeSA, c *childSA, group proposal.DHGroup, tries int) {
	e := w.e
	if sa.state != stateEstablished || sa.replaced || c.replaced || c.rekey != nil || !c.installed {
		return
	}
	now := e.now()
	local, remote := sa.local.Addr().Unmap(), sa.remote.Addr().Unmap()
	nc := &childSA{reqid: c.reqid, transport: c.transport, localTS: c.localTS, remoteTS: c.remoteTS}
	spi, err := e.o.Kernel.GetSPI(bg, remote, local, kernel.ESP, c.reqid)
	if err != nil {
		e.log.Warnf("%s: cannot rekey Child SA %08x: no SPI from the kernel: %v", sa.conn.name, c.inSPI, err)
		c.rekeyAt = now.Add(rekeyRetry)
		return
	}
	nc.inSPI, nc.spiDst = spi, local
	var groups []proposal.DHGroup
	if sa.conn.cfg.PFS {
		groups = pfsGroups(sa)
		if group != 0 {
			groups = append([]proposal.DHGroup{group}, slices.DeleteFunc(groups, func(g proposal.DHGroup) bool { return g == group })...)
		}
	}
	r := &childRekey{child: nc, tries: tries}
	fail := func(err error) {
		w.releaseSPI(sa, nc)
		e.log.Warnf("%s: cannot rekey Child SA %08x: %v", sa.conn.name, c.inSPI, err)
		c.rekeyAt = now.Add(rekeyRetry)
	}
	if nc.offer, err = espOfferKE(sa, spi, groups); err != nil {
		fail(err)
		return
	}
	if r.ni, err = w.newNonce(); err != nil {
		fail(err)
		return
	}
	if len(groups) > 0 {
		if r.dh, err = w.newKey(groups[0]); err != nil {
			fail(err)
			return
		}
	}
	c.rekey = r
	ps := []message.Payload{&message.Notify{Protocol: message.ProtocolESP, SPI: spiBytes(c.inSPI), NotifyType: message.RekeySA}}
	if c.transport {
		ps = append(ps, &message.Notify{NotifyType: message.UseTransportMode})
	}
	ps = append(ps, &message.SA{Proposals: nc.offer}, &message.Nonce{Data: r.ni})
	if r.dh != nil {
		ps = append(ps, &message.KE{Group: r.dh.Group().ID(), Data: r.dh.Public()})
	}
	ps = append(ps, &message.TrafficSelectors{Selectors: c.localTS},
		&message.TrafficSelectors{Responder: true, Selectors: c.remoteTS})
	e.log.Logf("%s: rekeying Child SA ESP %08x<->%08x%s", sa.conn.name, c.inSPI, c.outSPI, pfsWord(r.dh))
	w.request(sa, &request{exchange: message.CREATE_CHILD_SA, payloads: ps,
		onResponse: func(w *worker, sa *ikeSA, _ *message.Message, inner []message.Payload) {
			w.childRekeyResponse(sa, c, r, inner)
		}})
}

func pfsWord(dh crypto.Private) string {
	if dh == nil {
		return ""
	}
	return fmt.Sprintf(" (PFS %v)", dh.Group().ID())
}

// childAnswer is the payloads of a CREATE_CHILD_SA message.
type childAnswer struct {
	sa        *message.SA
	nonce     *message.Nonce
	ke        *message.KE
	tsi, tsr  *message.TrafficSelectors
	transport bool
	rekeySPI  *uint32
	errN      *message.Notify
}

func parseChild(inner []message.Payload) childAnswer {
	var a childAnswer
	for _, pl := range inner {
		switch x := pl.(type) {
		case *message.SA:
			a.sa = x
		case *message.Nonce:
			a.nonce = x
		case *message.KE:
			a.ke = x
		case *message.TrafficSelectors:
			if x.Responder {
				a.tsr = x
			} else {
				a.tsi = x
			}
		case *message.Notify:
			switch {
			case x.NotifyType == message.UseTransportMode:
				a.transport = true
			case x.NotifyType == message.RekeySA && len(x.SPI) == 4:
				spi := binary.BigEndian.Uint32(x.SPI)
				a.rekeySPI = &spi
			case x.NotifyType.IsError() && a.errN == nil:
				a.errN = x
			}
		}
	}
	return a
}

// childRekeyResponse finishes our rekey r of c.
func (w *worker) childRekeyResponse(sa *ikeSA, c *childSA, r *childRekey, inner []message.Payload) {
	e := w.e
	nc := r.child
	if c.rekey != r || !slices.Contains(sa.children, c) {
		w.releaseSPI(sa, nc)
		return
	}
	c.rekey = nil
	now := e.now()
	a := parseChild(inner)
	lost := func(why string) {
		w.releaseSPI(sa, nc)
		e.log.Logf("%s: rekey of Child SA %08x failed: %s", sa.conn.name, c.inSPI, why)
		if col := c.collision; col != nil {
			// The peer's rekey of it stands.
			c.collision = nil
			c.replaced, c.successor, c.lingerUntil = true, col.child, now.Add(sa.conn.retransmitTimeout)
			return
		}
		c.rekeyAt = now.Add(rekeyRetry)
	}
	if a.errN != nil {
		if a.errN.NotifyType == message.InvalidKEPayload && len(a.errN.Data) == 2 && r.dh != nil && r.tries < maxInvalidKE && c.collision == nil {
			g := proposal.DHGroup(binary.BigEndian.Uint16(a.errN.Data))
			if slices.Contains(pfsGroups(sa), g) && g != r.dh.Group().ID() {
				w.releaseSPI(sa, nc)
				e.log.Logf("%s: the peer wants key exchange %v for the Child SA rekey (INVALID_KE_PAYLOAD); trying again", sa.conn.name, g)
				w.rekeyChild(sa, c, g, r.tries+1)
				return
			}
		}
		lost(fmt.Sprintf("the peer answered %v", a.errN.NotifyType))
		return
	}
	if a.sa == nil || a.nonce == nil || a.tsi == nil || a.tsr == nil {
		lost("the response lacks SA, Nr, TSi or TSr")
		return
	}
	choice, peerSPI, err := acceptedESP(nc.offer, a.sa)
	if err != nil {
		lost(err.Error())
		return
	}
	var gir []byte
	if r.dh != nil {
		gs := keGroups(&a.sa.Proposals[0])
		if a.ke == nil || len(gs) != 1 || gs[0] != r.dh.Group().ID() || a.ke.Group != gs[0] {
			lost("the response does not answer our KE (PFS)")
			return
		}
		if gir, err = w.sharedSecret(r.dh, a.ke.Data); err != nil {
			lost(err.Error())
			return
		}
		defer clear(gir)
	}
	if in1, _ := withinTS(nc.localTS, a.tsi.Selectors); !in1 {
		lost("the peer's traffic selectors changed")
		return
	}
	if in2, _ := withinTS(nc.remoteTS, a.tsr.Selectors); !in2 {
		lost("the peer's traffic selectors changed")
		return
	}
	nc.localTS, nc.remoteTS = addrRanges(a.tsi.Selectors), addrRanges(a.tsr.Selectors)
	nc.choice, nc.outSPI = choice, peerSPI
	nr := a.nonce.Data
	if col := c.collision; col != nil {
		c.collision = nil
		if lowestIsOurs([2][]byte{r.ni, nr}, [2][]byte{col.ni, col.nr}) {
			// Ours is the redundant one: we made it, we delete it.
			spi := nc.inSPI
			w.releaseSPI(sa, nc)
			e.log.Logf("%s: simultaneous rekey of Child SA %08x: ours has the lowest nonce; deleting it (%08x)", sa.conn.name, c.inSPI, spi)
			w.request(sa, &request{exchange: message.INFORMATIONAL,
				payloads:   []message.Payload{&message.Delete{Protocol: message.ProtocolESP, SPIs: []uint32{spi}}},
				onResponse: func(*worker, *ikeSA, *message.Message, []message.Payload) {}})
			c.replaced, c.successor, c.lingerUntil = true, col.child, now.Add(sa.conn.retransmitTimeout)
			return
		}
		e.log.Logf("%s: simultaneous rekey of Child SA %08x: the peer's has the lowest nonce; it deletes its own", sa.conn.name, c.inSPI)
	}
	nc.created = now
	w.scheduleChild(sa, nc, true)
	keys, err := crypto.DeriveChildKeys(sa.prf, sa.keys.SKd, choice.suite, gir, r.ni, nr)
	if err != nil {
		lost(err.Error())
		return
	}
	err = w.installChild(sa, nc, keys, true)
	keys.Wipe()
	if err != nil {
		lost(fmt.Sprintf("kernel: %v", err))
		return
	}
	sa.children = append(sa.children, nc)
	e.ctr.childEstablished.Add(1)
	e.log.Logf("%s: rekeyed Child SA ESP %08x<->%08x into %08x<->%08x %s%s", sa.conn.name, c.inSPI, c.outSPI, nc.inSPI, nc.outSPI, choice, pfsWord(r.dh))
	w.retireChild(sa, c)
}

// retireChild ends c after we rekeyed it: its outbound SA goes at once
// (the new one serves), the peer is asked to delete it, and its inbound
// SA stays for packets in flight until the answer (or the linger time).
func (w *worker) retireChild(sa *ikeSA, c *childSA) {
	c.replaced = true
	c.lingerUntil = w.e.now().Add(sa.conn.retransmitTimeout)
	if c.outInstalled {
		if err := w.e.o.Kernel.DeleteSA(bg, c.outID); err != nil && !errors.Is(err, kernel.ErrNotFound) {
			w.e.log.Warnf("%s: removing outbound SA %v: %v", sa.conn.name, c.outID, err)
		}
		c.outInstalled = false
	}
	w.request(sa, &request{exchange: message.INFORMATIONAL,
		payloads:   []message.Payload{&message.Delete{Protocol: message.ProtocolESP, SPIs: []uint32{c.inSPI}}},
		onResponse: func(w *worker, sa *ikeSA, _ *message.Message, _ []message.Payload) { w.dropChild(sa, c) }})
}

// createChildRequest answers the peer's CREATE_CHILD_SA request: an IKE
// SA rekey, a Child SA rekey, or a new Child SA.
func (w *worker) createChildRequest(sa *ikeSA, m *message.Message, inner []message.Payload) {
	e := w.e
	a := parseChild(inner)
	answer := func(n message.NotifyType, data []byte) {
		w.respond(sa, m.Exchange, m.MessageID, []message.Payload{&message.Notify{NotifyType: n, Data: data}})
	}
	if sa.state != stateEstablished || sa.replaced {
		answer(message.TemporaryFailure, nil)
		return
	}
	if a.sa == nil || a.nonce == nil {
		answer(message.InvalidSyntax, nil)
		return
	}
	if len(a.sa.Proposals) > 0 && a.sa.Proposals[0].Protocol == message.ProtocolIKE {
		w.rekeyIKERequest(sa, m, a)
		return
	}
	c := sa.conn
	fail := func(n message.NotifyType, format string, args ...any) {
		e.log.Logf("%s: CREATE_CHILD_SA from the peer: %s: answering %v", c.name, fmt.Sprintf(format, args...), n)
		answer(n, nil)
	}
	if a.tsi == nil || a.tsr == nil {
		fail(message.InvalidSyntax, "no TSi or TSr")
		return
	}
	var old *childSA
	if a.rekeySPI != nil {
		old = findChildByOut(sa, *a.rekeySPI)
		if old == nil {
			e.log.Logf("%s: the peer rekeys Child SA %08x, which we do not have: answering CHILD_SA_NOT_FOUND", c.name, *a.rekeySPI)
			w.respond(sa, m.Exchange, m.MessageID, []message.Payload{&message.Notify{Protocol: message.ProtocolESP,
				SPI: spiBytes(*a.rekeySPI), NotifyType: message.ChildSANotFound}})
			return
		}
		if old.replaced {
			fail(message.TemporaryFailure, "Child SA %08x is being replaced already", old.inSPI)
			return
		}
	}
	if c.transport != a.transport && c.transport {
		fail(message.NoProposalChosen, "type=transport but the peer asked for tunnel mode")
		return
	}
	choice, number, peerSPI, ok := selectESP(c.esp, c.esn, a.sa.Proposals)
	if !ok {
		fail(message.NoProposalChosen, "no ESP proposal matches our esp=%s", proposal.FormatESP(c.esp))
		return
	}
	// PFS: the peer's KE, if its proposal has KE transforms.
	var group proposal.DHGroup
	if tp := offerNumber(a.sa.Proposals, number); tp != nil {
		theirs := keGroups(tp)
		allowed := pfsGroups(sa)
		switch {
		case len(theirs) == 0 || slices.Contains(theirs, 0) && (a.ke == nil || !c.cfg.PFS):
		case a.ke != nil && slices.Contains(theirs, a.ke.Group) && slices.Contains(allowed, a.ke.Group):
			group = a.ke.Group
		default:
			for _, g := range allowed {
				if slices.Contains(theirs, g) {
					e.log.Logf("%s: CREATE_CHILD_SA: asking for key exchange %v (INVALID_KE_PAYLOAD)", c.name, g)
					answer(message.InvalidKEPayload, binary.BigEndian.AppendUint16(nil, uint16(g)))
					return
				}
			}
			fail(message.NoProposalChosen, "none of the peer's PFS groups is ours")
			return
		}
	}
	remoteTS := w.peerTS(sa, a.tsi.Selectors)
	tsi, ok1 := narrowTS(remoteTS, a.tsi.Selectors, c.narrowing)
	tsr, ok2 := narrowTS(c.localTS, a.tsr.Selectors, c.narrowing)
	if !ok1 || !ok2 {
		fail(message.TSUnacceptable, "traffic selectors %s === %s do not fit ours", tsString(a.tsi.Selectors), tsString(a.tsr.Selectors))
		return
	}
	now := e.now()
	reqid := e.newReqID()
	if old != nil {
		reqid = old.reqid
	}
	nc := &childSA{reqid: reqid, outSPI: peerSPI, transport: c.transport, localTS: tsr, remoteTS: tsi, choice: choice, created: now,
		deferOut: old != nil}
	w.scheduleChild(sa, nc, false)
	spi, err := e.o.Kernel.GetSPI(bg, sa.remote.Addr().Unmap(), sa.local.Addr().Unmap(), kernel.ESP, reqid)
	if err != nil {
		fail(message.TemporaryFailure, "cannot get an SPI from the kernel: %v", err)
		return
	}
	nc.inSPI, nc.spiDst = spi, sa.local.Addr().Unmap()
	nr, err := w.newNonce()
	if err != nil {
		w.releaseSPI(sa, nc)
		fail(message.TemporaryFailure, "%v", err)
		return
	}
	var (
		gir []byte
		dh  crypto.Private
	)
	if group != 0 {
		if dh, err = w.newKey(group); err == nil {
			gir, err = w.sharedSecret(dh, a.ke.Data)
		}
		if err != nil {
			w.releaseSPI(sa, nc)
			fail(message.InvalidSyntax, "key exchange %v: %v", group, err)
			return
		}
		defer clear(gir)
	}
	keys, err := crypto.DeriveChildKeys(sa.prf, sa.keys.SKd, choice.suite, gir, a.nonce.Data, nr)
	if err != nil {
		w.releaseSPI(sa, nc)
		fail(message.NoProposalChosen, "deriving keys: %v", err)
		return
	}
	err = w.installChild(sa, nc, keys, false)
	keys.Wipe()
	if err != nil {
		w.releaseSPI(sa, nc)
		fail(message.TemporaryFailure, "kernel: %v", err)
		return
	}
	sa.children = append(sa.children, nc)
	e.ctr.childEstablished.Add(1)
	if old != nil {
		if old.rekey != nil {
			old.collision = &childCollision{ni: bytes.Clone(a.nonce.Data), nr: nr, child: nc}
		} else {
			old.replaced, old.successor, old.lingerUntil = true, nc, now.Add(c.retransmitTimeout)
		}
		e.log.Logf("%s: the peer rekeyed Child SA ESP %08x<->%08x into %08x<->%08x %s%s", c.name, old.inSPI, old.outSPI, nc.inSPI, nc.outSPI, choice, pfsWord(dh))
	} else {
		e.log.Logf("%s: established Child SA %s: ESP %08x<->%08x %s === %s %s%s", c.name, modeWord(nc), nc.inSPI, nc.outSPI,
			tsString(tsr), tsString(tsi), choice, encapWord(nc))
	}
	ps := make([]message.Payload, 0, 6)
	if nc.transport {
		ps = append(ps, &message.Notify{NotifyType: message.UseTransportMode})
	}
	ans := espAnswer(choice, number, spi)
	if dh != nil {
		ans.Transforms = append(ans.Transforms, message.Transform{Type: message.TransformKE, ID: uint16(group)})
	}
	ps = append(ps, &message.SA{Proposals: []message.Proposal{ans}}, &message.Nonce{Data: nr})
	if dh != nil {
		ps = append(ps, &message.KE{Group: group, Data: dh.Public()})
	}
	ps = append(ps, &message.TrafficSelectors{Selectors: tsi}, &message.TrafficSelectors{Responder: true, Selectors: tsr})
	w.respond(sa, m.Exchange, m.MessageID, ps)
}

// ikeOfferSPI is the conn's IKE offer with our new SPI.
func ikeOfferSPI(sa *ikeSA, spi [8]byte) []message.Proposal {
	ps := slices.Clone(sa.conn.ikeSA)
	for i := range ps {
		ps[i].SPI = spi[:]
	}
	return ps
}

func stripSPIs(ps []message.Proposal) []message.Proposal {
	out := slices.Clone(ps)
	for i := range out {
		out[i].SPI = nil
	}
	return out
}

// newLocalSPI returns a fresh IKE SPI of ours that hashes to w.
func (w *worker) newLocalSPI() ([8]byte, error) {
	for i := 0; ; i++ {
		s, err := w.e.newSPI()
		if err != nil {
			return s, err
		}
		if w.e.homeWorker(s) == w && w.sas[spiKey(s)] == nil {
			return s, nil
		}
		if i > 64*len(w.e.workers) {
			return s, errors.New("no IKE SPI for this worker")
		}
	}
}

// rekeyIKE starts our rekey of the IKE SA.
func (w *worker) rekeyIKE(sa *ikeSA, group proposal.DHGroup, tries int) {
	e := w.e
	if sa.state != stateEstablished || sa.replaced || sa.ikeRekey != nil {
		return
	}
	now := e.now()
	spi, err := w.newLocalSPI()
	if err != nil {
		sa.rekeyAt = now.Add(rekeyRetry)
		return
	}
	if group == 0 {
		group = sa.choice.group
	}
	r := &ikeRekey{spi: spi, tries: tries, offer: ikeOfferSPI(sa, spi)}
	if r.ni, err = w.newNonce(); err == nil {
		r.dh, err = w.newKey(group)
	}
	if err != nil {
		e.log.Warnf("%s: cannot rekey IKE SA %s: %v", sa.conn.name, sa, err)
		sa.rekeyAt = now.Add(rekeyRetry)
		return
	}
	sa.ikeRekey = r
	e.log.Logf("%s: rekeying IKE SA %s (new SPIi %s)", sa.conn.name, sa, hex8(spi))
	w.request(sa, &request{exchange: message.CREATE_CHILD_SA, rekeysIKE: true,
		payloads: []message.Payload{&message.SA{Proposals: r.offer}, &message.Nonce{Data: r.ni},
			&message.KE{Group: group, Data: r.dh.Public()}},
		onResponse: func(w *worker, sa *ikeSA, _ *message.Message, inner []message.Payload) {
			w.ikeRekeyResponse(sa, r, inner)
		},
		onTimeout: func(w *worker, sa *ikeSA) {
			if sa.ikeRekey == r {
				w.collisionStands(sa, "no response to ours")
			}
		}})
}

// newRekeyedSA makes the IKE SA that replaces old.
func (w *worker) newRekeyedSA(old *ikeSA, initiator bool, spii, spir [8]byte, choice ikeChoice, ni, nr, gir []byte) (*ikeSA, error) {
	prf, err := crypto.NewPRF(choice.suite.PRF)
	if err != nil {
		return nil, err
	}
	keys, err := crypto.DeriveRekeyedIKEKeys(old.prf, old.keys.SKd, prf, choice.suite, gir, ni, nr, spii, spir)
	if err != nil {
		return nil, err
	}
	now := w.e.now()
	ns := &ikeSA{w: w, conn: old.conn, initiator: initiator, spii: spii, spir: spir, state: stateEstablished,
		local: old.local, remote: old.remote, natUs: old.natUs, natPeer: old.natPeer, choice: choice,
		ni: bytes.Clone(ni), nr: bytes.Clone(nr), localID: old.localID, remoteID: old.remoteID, fragPeer: old.fragPeer,
		created: now, established: now, lastHeard: now, done: true, halfOpenRemote: old.halfOpenRemote}
	if err := ns.setKeys(prf, keys); err != nil {
		keys.Wipe()
		return nil, err
	}
	return ns, nil
}

// adopt enters ns, made by a rekey on w, into w's tables.
func (w *worker) adopt(ns *ikeSA, ours bool) {
	e := w.e
	w.sas[ns.ourSPI()] = ns
	if e.workerFor(ns.spii) != w {
		e.moved.Store(ns.spii, w)
		e.nmoved.Add(1)
		ns.movedHere = true
	}
	w.timed[ns] = struct{}{}
	e.ctr.ikeEstablished.Add(1)
	e.peerUp(ns)
	w.scheduleIKE(ns, ours)
}

// moveChildren hands the Child SAs of old, and its requests not sent
// yet (but a rekey of old itself), to ns.
func moveChildren(old, ns *ikeSA) {
	ns.children = append(ns.children, old.children...)
	old.children = nil
	for _, r := range old.queue {
		if !r.rekeysIKE {
			ns.queue = append(ns.queue, r)
		}
	}
	old.queue = nil
}

// alive reports whether sa is an established IKE SA of w that is not
// being replaced or deleted.
func (w *worker) alive(sa *ikeSA) bool {
	return sa != nil && w.sas[sa.ourSPI()] == sa && sa.state == stateEstablished && !sa.replaced
}

// collisionStands ends our rekey of sa, out while we answered the peer's
// rekey of it, without a new IKE SA of ours (it failed, timed out, or the
// peer deleted sa): the peer's new IKE SA takes the Child SAs. It reports
// whether there was such an SA.
func (w *worker) collisionStands(sa *ikeSA, why string) bool {
	col := sa.peerIKERekey
	sa.peerIKERekey = nil
	sa.ikeRekey = nil
	if col == nil || !w.alive(col.sa) {
		return false
	}
	w.e.log.Logf("%s: simultaneous rekey of IKE SA %s: %s; the peer's %s stands", sa.conn.name, sa, why, col.sa)
	moveChildren(sa, col.sa)
	sa.replaced = true
	if sa.deleteBy.IsZero() {
		sa.deleteBy = w.e.now().Add(sa.conn.retransmitTimeout)
	}
	return true
}

// peerDeletesIKE is the peer's Delete of sa: if we answered its rekey of
// sa while ours was out, the peer's exchange made the IKE SA that both
// ends keep (it deletes the old SA only then), and the Child SAs go
// there rather than with sa.
func (w *worker) peerDeletesIKE(sa *ikeSA) {
	if sa.peerIKERekey != nil {
		w.collisionStands(sa, "the peer deleted the old IKE SA")
	}
}

// ikeRekeyResponse finishes our rekey r of sa.
func (w *worker) ikeRekeyResponse(sa *ikeSA, r *ikeRekey, inner []message.Payload) {
	e := w.e
	if sa.ikeRekey != r {
		return
	}
	sa.ikeRekey = nil
	now := e.now()
	a := parseChild(inner)
	col := sa.peerIKERekey
	sa.peerIKERekey = nil
	lost := func(why string) {
		e.log.Logf("%s: rekey of IKE SA %s failed: %s", sa.conn.name, sa, why)
		if col != nil && w.alive(col.sa) {
			moveChildren(sa, col.sa)
			sa.replaced, sa.deleteBy = true, now.Add(sa.conn.retransmitTimeout)
			return
		}
		sa.rekeyAt = now.Add(rekeyRetry)
	}
	if a.errN != nil {
		if a.errN.NotifyType == message.InvalidKEPayload && len(a.errN.Data) == 2 && r.tries < maxInvalidKE && col == nil {
			g := proposal.DHGroup(binary.BigEndian.Uint16(a.errN.Data))
			offered := false
			for _, p := range sa.conn.ike {
				offered = offered || slices.Contains(p.DH, g)
			}
			if offered && g != r.dh.Group().ID() {
				w.rekeyIKE(sa, g, r.tries+1)
				return
			}
		}
		lost(fmt.Sprintf("the peer answered %v", a.errN.NotifyType))
		return
	}
	if a.sa == nil || a.nonce == nil || a.ke == nil || len(a.sa.Proposals) != 1 || len(a.sa.Proposals[0].SPI) != 8 {
		lost("the response lacks SA (with an SPI), Nr or KEr")
		return
	}
	choice, err := acceptedIKE(stripSPIs(r.offer), &message.SA{Proposals: stripSPIs(a.sa.Proposals)})
	if err == nil && (choice.group != r.dh.Group().ID() || a.ke.Group != choice.group) {
		err = fmt.Errorf("the responder's KE %v does not answer ours %v", a.ke.Group, r.dh.Group().ID())
	}
	if err != nil {
		lost(err.Error())
		return
	}
	var spir [8]byte
	copy(spir[:], a.sa.Proposals[0].SPI)
	gir, err := w.sharedSecret(r.dh, a.ke.Data)
	if err != nil {
		lost(err.Error())
		return
	}
	ns, err := w.newRekeyedSA(sa, true, r.spi, spir, choice, r.ni, a.nonce.Data, gir)
	clear(gir)
	if err != nil {
		lost(err.Error())
		return
	}
	w.adopt(ns, true)
	if col != nil && !w.alive(col.sa) {
		col = nil // the peer's new IKE SA went already: ours is the one
	}
	if col != nil && lowestIsOurs([2][]byte{r.ni, a.nonce.Data}, [2][]byte{col.ni, col.nr}) {
		e.log.Logf("%s: simultaneous rekey of IKE SA %s: ours has the lowest nonce; deleting it", sa.conn.name, sa)
		moveChildren(sa, col.sa)
		sa.replaced, sa.deleteBy = true, now.Add(sa.conn.retransmitTimeout)
		w.deleteIKE(ns, "redundant (simultaneous rekey)", nil, true)
		return
	}
	if col != nil {
		// The peer's new IKE SA is the redundant one: the peer deletes
		// it when our answer reaches it; if it does not, we do.
		e.log.Logf("%s: simultaneous rekey of IKE SA %s: the peer's has the lowest nonce; it deletes %s", sa.conn.name, sa, col.sa)
		col.sa.redundantBy = now.Add(sa.conn.retransmitTimeout)
	}
	e.log.Logf("%s: rekeyed IKE SA %s into %s %s", sa.conn.name, sa, ns, choice)
	moveChildren(sa, ns)
	w.retireIKE(sa)
}

// retireIKE deletes sa with the peer after its Child SAs moved to the IKE
// SA that replaced it.
func (w *worker) retireIKE(sa *ikeSA) {
	sa.state = stateDeleting
	sa.out, sa.queue = nil, nil
	// The peer forgets sa when our Delete reaches it, and then never
	// answers a retransmission: a lost answer must not keep sa for the
	// whole retransmit-timeout (the peer drops its copy by then anyway).
	sa.deleteBy = w.e.now().Add(min(sa.conn.retransmitTimeout+time.Second, max(2*time.Second, 8*sa.conn.retransmitInterval)))
	w.sendRequest(sa, &request{
		exchange:   message.INFORMATIONAL,
		payloads:   []message.Payload{&message.Delete{Protocol: message.ProtocolIKE}},
		onResponse: func(w *worker, sa *ikeSA, _ *message.Message, _ []message.Payload) { w.forget(sa, nil) },
	})
}

// rekeyIKERequest answers the peer's rekey of sa.
func (w *worker) rekeyIKERequest(sa *ikeSA, m *message.Message, a childAnswer) {
	e := w.e
	c := sa.conn
	answer := func(n message.NotifyType, data []byte) {
		w.respond(sa, m.Exchange, m.MessageID, []message.Payload{&message.Notify{NotifyType: n, Data: data}})
	}
	for _, ch := range sa.children {
		if ch.rekey != nil {
			// RFC 7296 §2.25.2: not while we rekey one of its Child SAs.
			answer(message.TemporaryFailure, nil)
			return
		}
	}
	if a.ke == nil {
		answer(message.InvalidSyntax, nil)
		return
	}
	choice, number, want, ok := selectIKE(c.ike, stripSPIs(a.sa.Proposals), a.ke.Group)
	if !ok {
		if want != 0 {
			answer(message.InvalidKEPayload, binary.BigEndian.AppendUint16(nil, uint16(want)))
		} else {
			answer(message.NoProposalChosen, nil)
		}
		return
	}
	tp := offerNumber(a.sa.Proposals, number)
	if tp == nil || len(tp.SPI) != 8 {
		answer(message.InvalidSyntax, nil)
		return
	}
	var spii [8]byte
	copy(spii[:], tp.SPI)
	spir, err := e.newSPI()
	if err != nil || w.sas[spiKey(spir)] != nil {
		answer(message.TemporaryFailure, nil)
		return
	}
	nr, err := w.newNonce()
	if err != nil {
		answer(message.TemporaryFailure, nil)
		return
	}
	dh, err := w.newKey(choice.group)
	if err != nil {
		answer(message.TemporaryFailure, nil)
		return
	}
	gir, err := w.sharedSecret(dh, a.ke.Data)
	if err != nil {
		answer(message.InvalidSyntax, nil)
		return
	}
	ns, err := w.newRekeyedSA(sa, false, spii, spir, choice, a.nonce.Data, nr, gir)
	clear(gir)
	if err != nil {
		answer(message.NoProposalChosen, nil)
		return
	}
	ans := ikeAnswer(choice, number)
	ans.SPI = spir[:]
	w.respond(sa, m.Exchange, m.MessageID, []message.Payload{&message.SA{Proposals: []message.Proposal{ans}},
		&message.Nonce{Data: nr}, &message.KE{Group: choice.group, Data: dh.Public()}})
	w.adopt(ns, false)
	if sa.ikeRekey != nil {
		sa.peerIKERekey = &ikeCollision{ni: bytes.Clone(a.nonce.Data), nr: nr, sa: ns}
		e.log.Logf("%s: the peer rekeys IKE SA %s while we do (simultaneous rekey)", c.name, sa)
		return
	}
	e.log.Logf("%s: the peer rekeyed IKE SA %s into %s %s", c.name, sa, ns, choice)
	moveChildren(sa, ns)
	sa.replaced = true
	sa.deleteBy = e.now().Add(c.retransmitTimeout + time.Second)
}
