package ike

// IKE_AUTH (RFC 7296 §1.2, §2.15; RFC 7619 NULL authentication) with the
// first Child SA (§1.2, §2.9 traffic selectors, §1.3.1 transport mode).

import (
	"errors"
	"fmt"

	"goswan/ike/crypto"
	"goswan/ike/message"
	"goswan/kernel"
	"goswan/pki"
	"goswan/proposal"
)

// authData computes the AUTH payload data of the shared key or NULL
// method for one side: ours or the peer's. psk is nil for NULL.
func (sa *ikeSA) authData(ours bool, idp *message.Identification, psk []byte) []byte {
	in := sa.authInput(ours, idp)
	if psk == nil {
		return crypto.NullAuth(sa.prf, nil, in)
	}
	return crypto.SharedKeyAuth(sa.prf, nil, psk, in)
}

// psk looks up the pre-shared key for the IKE SA's IDs as Libreswan does.
func (w *worker) psk(sa *ikeSA, peer identity) ([]byte, error) {
	s := w.e.secrets()
	if s == nil {
		return nil, fmt.Errorf("no pre-shared key for IDs %s/%s (no secrets loaded)", sa.localID, peer)
	}
	k, ok := s.PSK(sa.localID.String(), peer.String())
	if !ok {
		return nil, fmt.Errorf("no pre-shared key for IDs %s/%s in ipsec.secrets", sa.localID, peer)
	}
	return k, nil
}

// ourAuth builds our AUTH payload.
func (w *worker) ourAuth(sa *ikeSA, idp *message.Identification) (*message.Auth, error) {
	if sa.conn.localAuth == authSig {
		return w.signAuth(sa, idp)
	}
	var psk []byte
	if sa.conn.localAuth == authPSK {
		var err error
		if psk, err = w.psk(sa, sa.remoteID); err != nil {
			return nil, err
		}
		defer clear(psk)
	}
	return &message.Auth{Method: sa.conn.localAuth.wire(), Data: sa.authData(true, idp, psk)}, nil
}

// verifyAuth checks the peer's AUTH payload (with the certificates of its
// CERT payloads for a signature). The error says why, in words.
func (w *worker) verifyAuth(sa *ikeSA, idp *message.Identification, auth *message.Auth, certs [][]byte) error {
	peer := payloadIdentity(idp)
	c := sa.conn
	if !c.remoteAuth.accepts(auth.Method, c.remoteSig) {
		want := c.remoteAuth.String()
		if c.remoteAuth == authSig {
			want = c.remoteSig.String()
		}
		return fmt.Errorf("peer authenticated with %v but conn %q wants rightauth=%s", auth.Method, c.name, want)
	}
	if c.remoteAuth == authSig {
		return w.verifySig(sa, idp, auth, certs)
	}
	var psk []byte
	if c.remoteAuth == authPSK {
		var err error
		if psk, err = w.psk(sa, peer); err != nil {
			return err
		}
		defer clear(psk)
	}
	if !equalConst(sa.authData(false, idp, psk), auth.Data) {
		if psk == nil {
			return fmt.Errorf("peer's NULL AUTH payload does not verify (IDs %s/%s)", sa.localID, peer)
		}
		return fmt.Errorf("peer's AUTH payload does not match the PSK for IDs %s/%s", sa.localID, peer)
	}
	return nil
}

func equalConst(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	var v byte
	for i := range a {
		v |= a[i] ^ b[i]
	}
	return v == 0
}

// sendAuth sends the initiator's IKE_AUTH request with the first Child SA.
func (w *worker) sendAuth(sa *ikeSA) {
	e := w.e
	c := sa.conn
	child := &childSA{reqid: e.newReqID(), transport: c.transport, created: e.now()}
	spi, err := e.o.Kernel.GetSPI(bg, sa.remote.Addr().Unmap(), sa.local.Addr().Unmap(), kernel.ESP, child.reqid)
	if err != nil {
		w.deleteIKE(sa, "no SPI", fmt.Errorf("cannot get an SPI from the kernel: %v", err), false)
		return
	}
	child.inSPI, child.spiDst = spi, sa.local.Addr().Unmap()
	if child.offer, err = espOffer(c.esp, c.esn, spi); err != nil {
		sa.pending = child
		w.forget(sa, err)
		return
	}
	child.localTS, child.remoteTS = c.localTS, c.remoteTS
	sa.pending = child

	idp := sa.localID.payload(false)
	auth, err := w.ourAuth(sa, idp)
	if err != nil {
		w.forget(sa, fmt.Errorf("cannot authenticate: %v", err))
		return
	}
	ps := make([]message.Payload, 0, 12)
	ps = append(ps, idp)
	ps = append(ps, sa.certPayloads()...)
	if cr := e.certReq(c); cr != nil {
		ps = append(ps, cr)
	}
	if !sa.remoteID.any && sa.remoteID.typ != message.IDNull && !sa.remoteID.wildcard() {
		ps = append(ps, sa.remoteID.payload(true))
	}
	if e.firstContact(c) {
		// RFC 7296 §2.4: our first IKE SA with this peer; it may drop
		// whatever it kept from an earlier life of ours.
		ps = append(ps, &message.Notify{NotifyType: message.InitialContact})
	}
	ps = append(ps, auth)
	if child.transport {
		ps = append(ps, &message.Notify{NotifyType: message.UseTransportMode})
	}
	ps = append(ps, &message.SA{Proposals: child.offer},
		&message.TrafficSelectors{Selectors: child.localTS},
		&message.TrafficSelectors{Responder: true, Selectors: child.remoteTS})
	sa.state = stateAuthSent
	w.request(sa, &request{exchange: message.IKE_AUTH, payloads: ps, onResponse: (*worker).authResponse})
	w.report(sa, "sent IKE_AUTH request to %v (ID %s, auth %v)", sa.remote, sa.localID, auth.Method)
}

// childRequest is the Child SA part of a request.
type childRequest struct {
	sa        *message.SA
	tsi, tsr  *message.TrafficSelectors
	transport bool
}

// authRequest handles IKE_AUTH on the responder.
func (w *worker) authRequest(sa *ikeSA, p Packet, m *message.Message, inner []message.Payload) {
	e := w.e
	if sa.state != stateHalfOpen {
		e.drop(dropUnexpected)
		return
	}
	var (
		idi     *message.Identification
		auth    *message.Auth
		cr      childRequest
		contact bool
		certs   [][]byte
	)
	for _, pl := range inner {
		switch x := pl.(type) {
		case *message.Identification:
			if !x.Responder {
				idi = x
			}
		case *message.Auth:
			auth = x
		case *message.Cert:
			if x.Encoding == message.CertX509Signature {
				certs = append(certs, x.Data)
			}
		case *message.CertReq:
			sa.peerCertReq = true
		case *message.SA:
			cr.sa = x
		case *message.TrafficSelectors:
			if x.Responder {
				cr.tsr = x
			} else {
				cr.tsi = x
			}
		case *message.Notify:
			switch x.NotifyType {
			case message.UseTransportMode:
				cr.transport = true
			case message.InitialContact:
				contact = true
			}
		}
	}
	// The request authenticated (it decrypted): follow the peer's
	// address, which a NAT may have changed (RFC 7296 §2.23).
	// The half-open entry stays until the SA goes, so that a late
	// duplicate IKE_SA_INIT finds this SA instead of opening another.
	sa.local, sa.remote = p.Local, p.Remote
	if idi == nil || auth == nil {
		w.respond(sa, message.IKE_AUTH, m.MessageID, []message.Payload{&message.Notify{NotifyType: message.InvalidSyntax}})
		w.forget(sa, errors.New("IKE_AUTH request without IDi or AUTH"))
		return
	}
	peer := payloadIdentity(idi)
	// Refine the conn by the peer's ID (and the Child SA's selectors).
	if c := w.refineConn(sa, peer, auth.Method, &cr); c != nil {
		sa.conn, sa.localID, sa.remoteID = c, c.localID, c.remoteID
	}
	if !sa.remoteID.matches(peer) {
		e.log.Logf("%s: peer ID %s does not match rightid=%s: answering AUTHENTICATION_FAILED", sa.conn.name, peer, sa.remoteID)
		w.authFailed(sa, m.MessageID)
		return
	}
	if err := w.verifyAuth(sa, idi, auth, certs); err != nil {
		e.log.Logf("%s: %v: answering AUTHENTICATION_FAILED", sa.conn.name, err)
		w.authFailed(sa, m.MessageID)
		return
	}
	sa.remoteID = peer
	idr := sa.localID.payload(true)
	ourAuth, err := w.ourAuth(sa, idr)
	if err != nil {
		e.log.Logf("%s: cannot authenticate ourselves: %v", sa.conn.name, err)
		w.authFailed(sa, m.MessageID)
		return
	}
	now := e.now()
	sa.state = stateEstablished
	e.halfOpenCount.Add(-1)
	sa.established = now
	sa.halfOpenExpires = now
	e.ctr.ikeEstablished.Add(1)
	w.scheduleIKE(sa, false)
	if contact {
		w.initialContact(sa)
	}
	if e.o.UniqueIDs {
		w.uniqueIDs(sa)
	}
	ps := make([]message.Payload, 0, 12)
	ps = append(ps, idr)
	ps = append(ps, sa.certPayloads()...)
	ps = append(ps, ourAuth)
	ps = w.respondChild(sa, &cr, ps)
	w.respond(sa, message.IKE_AUTH, m.MessageID, ps)
	sa.ourInit, sa.peerInit = nil, nil
	w.updateTimer(sa)
	e.log.Logf("%s: established IKE SA %s with %v (peer ID %s, %s%s)", sa.conn.name, sa, sa.remote, peer, sa.choice, natWords(sa))
}

// authHint guesses, for our log, why the peer refused our AUTH.
func authHint(sa *ikeSA) string {
	c := sa.conn
	switch c.localAuth {
	case authSig:
		if id := c.ident.Load(); id != nil {
			return fmt.Sprintf("our certificate %s, ID %s: untrusted, revoked, expired or not its rightid?", pki.DNString(id.Cert.RawSubject), sa.localID)
		}
		return "our certificate"
	case authNull:
		return "NULL authentication"
	}
	if c.remoteAuth != authPSK {
		return fmt.Sprintf("PSK mismatch for ID %s, or its rightauth= is not secret?", sa.localID)
	}
	return fmt.Sprintf("PSK mismatch for IDs %s/%s?", sa.localID, sa.remoteID)
}

// authFailed answers AUTHENTICATION_FAILED and forgets the SA.
func (w *worker) authFailed(sa *ikeSA, msgid uint32) {
	w.respond(sa, message.IKE_AUTH, msgid, []message.Payload{&message.Notify{NotifyType: message.AuthenticationFailed}})
	w.forget(sa, errors.New("authentication failed"))
}

// refineConn picks, among the conns that match the IKE SA's addresses,
// the one whose rightid matches the peer's ID (an exact match before
// %any), preferring one whose selectors fit the request.
func (w *worker) refineConn(sa *ikeSA, peer identity, method message.AuthMethod, cr *childRequest) *conn {
	var best *conn
	bestScore := -1
	for _, c := range w.e.connList() {
		if !c.matchesAddrs(sa.local.Addr(), sa.halfOpenRemote.Addr()) && !c.matchesAddrs(sa.local.Addr(), sa.remote.Addr()) {
			continue
		}
		if !c.remoteAuth.accepts(method, c.remoteSig) || !c.remoteID.matches(peer) {
			continue
		}
		score := 1
		if !c.remoteID.any {
			score += 2
		}
		if cr.tsi != nil && cr.tsr != nil {
			rts := c.remoteTS
			if len(rts) == 0 {
				rts = hostTS(sa.remote.Addr(), c.remote)
			}
			_, ok1 := narrowTS(rts, cr.tsi.Selectors, c.narrowing)
			_, ok2 := narrowTS(c.localTS, cr.tsr.Selectors, c.narrowing)
			if ok1 && ok2 {
				score += 4
			}
		}
		if c == sa.conn {
			score++ // ties go to the conn of IKE_SA_INIT
		}
		if score > bestScore {
			best, bestScore = c, score
		}
	}
	return best
}

// respondChild negotiates the first Child SA on the responder and appends
// the answer's payloads to ps: SA, TSi, TSr, or an error notification.
func (w *worker) respondChild(sa *ikeSA, cr *childRequest, ps []message.Payload) []message.Payload {
	e := w.e
	c := sa.conn
	fail := func(n message.NotifyType, format string, args ...any) []message.Payload {
		e.log.Logf("%s: Child SA not established: %s: answering %v", c.name, fmt.Sprintf(format, args...), n)
		return append(ps, &message.Notify{NotifyType: n})
	}
	if cr.sa == nil || cr.tsi == nil || cr.tsr == nil {
		return ps // childless (RFC 6023) or not asked for
	}
	if c.transport != cr.transport {
		if c.transport {
			return fail(message.NoProposalChosen, "type=transport but the initiator asked for tunnel mode")
		}
		// The initiator asked for transport mode; we answer tunnel mode
		// by not echoing USE_TRANSPORT_MODE (RFC 7296 §1.3.1).
	}
	choice, number, peerSPI, ok := selectESP(c.esp, c.esn, cr.sa.Proposals)
	if !ok {
		return fail(message.NoProposalChosen, "no ESP proposal matches our esp=%s", proposal.FormatESP(c.esp))
	}
	remoteTS := w.peerTS(sa, cr.tsi.Selectors)
	tsi, ok1 := narrowTS(remoteTS, cr.tsi.Selectors, c.narrowing)
	tsr, ok2 := narrowTS(c.localTS, cr.tsr.Selectors, c.narrowing)
	if !ok1 || !ok2 {
		return fail(message.TSUnacceptable, "traffic selectors %s === %s do not fit ours %s === %s",
			tsString(cr.tsi.Selectors), tsString(cr.tsr.Selectors), tsString(remoteTS), tsString(c.localTS))
	}
	child := &childSA{reqid: e.newReqID(), outSPI: peerSPI, transport: c.transport, localTS: tsr, remoteTS: tsi, choice: choice, created: e.now()}
	w.scheduleChild(sa, child, false)
	spi, err := e.o.Kernel.GetSPI(bg, sa.remote.Addr().Unmap(), sa.local.Addr().Unmap(), kernel.ESP, child.reqid)
	if err != nil {
		return fail(message.TemporaryFailure, "cannot get an SPI from the kernel: %v", err)
	}
	child.inSPI, child.spiDst = spi, sa.local.Addr().Unmap()
	keys, err := crypto.DeriveChildKeys(sa.prf, sa.keys.SKd, choice.suite, nil, sa.ni, sa.nr)
	if err != nil {
		w.releaseSPI(sa, child)
		return fail(message.NoProposalChosen, "deriving keys: %v", err)
	}
	err = w.installChild(sa, child, keys, sa.initiator)
	keys.Wipe()
	if err != nil {
		w.releaseSPI(sa, child)
		return fail(message.TemporaryFailure, "kernel: %v", err)
	}
	sa.children = append(sa.children, child)
	e.ctr.childEstablished.Add(1)
	e.log.Logf("%s: established Child SA %s: ESP %08x<->%08x %s === %s %s%s", c.name, modeWord(child), child.inSPI, child.outSPI,
		tsString(tsr), tsString(tsi), choice, encapWord(child))
	if child.transport {
		ps = append(ps, &message.Notify{NotifyType: message.UseTransportMode})
	}
	return append(ps, &message.SA{Proposals: []message.Proposal{espAnswer(choice, number, spi)}},
		&message.TrafficSelectors{Selectors: tsi},
		&message.TrafficSelectors{Responder: true, Selectors: tsr})
}

func modeWord(c *childSA) string {
	if c.transport {
		return "transport mode"
	}
	return "tunnel mode"
}

func encapWord(c *childSA) string {
	if c.encap != nil {
		return fmt.Sprintf(" (UDP encapsulation %d->%d)", c.encap.SrcPort, c.encap.DstPort)
	}
	return ""
}

// authResponse handles the IKE_AUTH response on the initiator.
func (w *worker) authResponse(sa *ikeSA, m *message.Message, inner []message.Payload) {
	e := w.e
	var (
		idr                 *message.Identification
		auth                *message.Auth
		csa                 *message.SA
		tsi, tsr            *message.TrafficSelectors
		transport           bool
		childErr, ikeErrors message.NotifyType
		certs               [][]byte
	)
	for _, pl := range inner {
		switch x := pl.(type) {
		case *message.Identification:
			if x.Responder {
				idr = x
			}
		case *message.Auth:
			auth = x
		case *message.Cert:
			if x.Encoding == message.CertX509Signature {
				certs = append(certs, x.Data)
			}
		case *message.SA:
			csa = x
		case *message.TrafficSelectors:
			if x.Responder {
				tsr = x
			} else {
				tsi = x
			}
		case *message.Notify:
			switch {
			case x.NotifyType == message.UseTransportMode:
				transport = true
			case x.NotifyType == message.AuthenticationFailed, x.NotifyType == message.InvalidSyntax,
				x.NotifyType == message.UnsupportedCriticalPayload:
				ikeErrors = x.NotifyType
			case x.NotifyType.IsError() && childErr == 0:
				childErr = x.NotifyType
			}
		}
	}
	if ikeErrors == message.AuthenticationFailed {
		w.forget(sa, fmt.Errorf("peer rejected our authentication (%s): it answered AUTHENTICATION_FAILED; its log says why", authHint(sa)))
		return
	}
	if ikeErrors != 0 {
		w.forget(sa, fmt.Errorf("IKE_AUTH failed: the peer answered %v", ikeErrors))
		return
	}
	if idr == nil || auth == nil {
		if childErr != 0 {
			w.forget(sa, fmt.Errorf("IKE_AUTH failed: the peer answered %v", childErr))
			return
		}
		w.forget(sa, errors.New("IKE_AUTH failed: the response has no IDr or AUTH payload"))
		return
	}
	peer := payloadIdentity(idr)
	var err error
	if !sa.remoteID.matches(peer) {
		err = fmt.Errorf("peer's ID %s does not match rightid=%s", peer, sa.remoteID)
	} else {
		err = w.verifyAuth(sa, idr, auth, certs)
	}
	if err != nil {
		// RFC 7296 §2.21.2: tell the peer in a separate INFORMATIONAL
		// exchange, then forget the IKE SA (and the Child SA the peer
		// may have installed goes with its IKE SA on its side).
		if b, serr := w.seal(sa, message.INFORMATIONAL, false, sa.nextMsgID, []message.Payload{&message.Notify{NotifyType: message.AuthenticationFailed}}); serr == nil {
			sa.nextMsgID++
			e.send(Packet{Local: sa.local, Remote: sa.remote, Data: b})
		}
		w.forget(sa, fmt.Errorf("%v: sent AUTHENTICATION_FAILED", err))
		return
	}
	now := e.now()
	sa.remoteID = peer
	sa.state = stateEstablished
	sa.established = now
	sa.ourInit, sa.peerInit = nil, nil
	e.ctr.ikeEstablished.Add(1)
	w.scheduleIKE(sa, true)
	if e.o.UniqueIDs {
		w.uniqueIDs(sa)
	}
	w.report(sa, "established IKE SA %s with %v (peer ID %s, %s%s)", sa, sa.remote, peer, sa.choice, natWords(sa))

	child := sa.pending
	sa.pending = nil
	if child == nil {
		w.finish(sa, nil)
		return
	}
	childFail := func(err error, withPeer bool) {
		if withPeer && child.installed {
			sa.children = append(sa.children, child)
			w.deleteChildWithPeer(sa, child)
		} else if withPeer {
			spi := child.inSPI
			w.removeChild(sa, child)
			if spi != 0 {
				w.request(sa, &request{exchange: message.INFORMATIONAL,
					payloads:   []message.Payload{&message.Delete{Protocol: message.ProtocolESP, SPIs: []uint32{spi}}},
					onResponse: func(*worker, *ikeSA, *message.Message, []message.Payload) {}})
			}
		} else {
			w.removeChild(sa, child)
		}
		w.finish(sa, fmt.Errorf("IKE SA established but the Child SA failed: %v", err))
	}
	if childErr != 0 {
		childFail(fmt.Errorf("the peer answered %v", childErr), false)
		return
	}
	if csa == nil || tsi == nil || tsr == nil {
		childFail(errors.New("the peer sent no Child SA (SA, TSi, TSr) and no error"), false)
		return
	}
	choice, peerSPI, err := acceptedESP(child.offer, csa)
	if err != nil {
		childFail(err, true)
		return
	}
	child.choice, child.outSPI = choice, peerSPI
	if transport != child.transport {
		if child.transport {
			childFail(errors.New("type=transport but the peer answered with tunnel mode (no USE_TRANSPORT_MODE)"), true)
		} else {
			childFail(errors.New("the peer answered USE_TRANSPORT_MODE to a tunnel mode request"), true)
		}
		return
	}
	in1, eq1 := withinTS(child.localTS, tsi.Selectors)
	in2, eq2 := withinTS(child.remoteTS, tsr.Selectors)
	switch {
	case !in1 || !in2:
		childFail(fmt.Errorf("the peer's traffic selectors %s === %s are not within ours %s === %s",
			tsString(tsi.Selectors), tsString(tsr.Selectors), tsString(child.localTS), tsString(child.remoteTS)), true)
		return
	case !(eq1 && eq2) && !sa.conn.narrowing:
		childFail(fmt.Errorf("the peer narrowed the traffic selectors to %s === %s but narrowing=no",
			tsString(tsi.Selectors), tsString(tsr.Selectors)), true)
		return
	}
	child.localTS, child.remoteTS = addrRanges(tsi.Selectors), addrRanges(tsr.Selectors)
	w.scheduleChild(sa, child, true)
	keys, err := crypto.DeriveChildKeys(sa.prf, sa.keys.SKd, choice.suite, nil, sa.ni, sa.nr)
	if err != nil {
		childFail(err, true)
		return
	}
	err = w.installChild(sa, child, keys, sa.initiator)
	keys.Wipe()
	if err != nil {
		childFail(fmt.Errorf("kernel: %v", err), true)
		return
	}
	sa.children = append(sa.children, child)
	e.ctr.childEstablished.Add(1)
	w.report(sa, "established Child SA %s: ESP %08x<->%08x %s === %s %s%s", modeWord(child), child.inSPI, child.outSPI,
		tsString(child.localTS), tsString(child.remoteTS), choice, encapWord(child))
	w.updateTimer(sa)
	w.finish(sa, nil)
}
