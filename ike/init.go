package ike

// IKE_SA_INIT (RFC 7296 §1.2, §2.23 NAT detection, §1.2 INVALID_KE_PAYLOAD).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"

	"goswan/ike/crypto"
	"goswan/ike/message"
	"goswan/logging"
	"goswan/proposal"
)

const nonceSize = 32

// maxInvalidKE bounds how often an initiator follows INVALID_KE_PAYLOAD
// (Libreswan's MAXIMUM_INVALID_KE_RETRANS).
const maxInvalidKE = 3

// maxCookies bounds how often an initiator follows a COOKIE request (a
// responder may rotate its secret between two of them).
const maxCookies = 3

// signatureHashAlgorithms is the SIGNATURE_HASH_ALGORITHMS data (RFC 7427
// §4, RFC 8420): SHA2-256, SHA2-384, SHA2-512, Identity (Ed25519).
var signatureHashAlgorithms = crypto.AppendSignatureHashes(nil, crypto.DefaultSignatureHashes)

// peerSigHashes reads the peer's SIGNATURE_HASH_ALGORITHMS, if any: nil
// when it sent none (an empty one counts as none).
func peerSigHashes(ps []message.Payload) []crypto.SignatureHash {
	for _, p := range ps {
		if n, ok := p.(*message.Notify); ok && n.NotifyType == message.SignatureHashAlgorithms {
			hs, err := crypto.ParseSignatureHashes(n.Data)
			if err != nil || len(hs) == 0 {
				return nil
			}
			return hs
		}
	}
	return nil
}

// hasCertReq reports whether ps holds a CERTREQ payload.
func hasCertReq(ps []message.Payload) bool {
	for _, p := range ps {
		if _, ok := p.(*message.CertReq); ok {
			return true
		}
	}
	return false
}

func (w *worker) newNonce() ([]byte, error) {
	n := make([]byte, nonceSize)
	if _, err := io.ReadFull(w.e.o.Rand, n); err != nil {
		return nil, fmt.Errorf("reading nonce: %w", err)
	}
	return n, nil
}

func (w *worker) newKey(g proposal.DHGroup) (crypto.Private, error) {
	grp, err := crypto.GroupFor(g)
	if err != nil {
		return nil, err
	}
	w.e.ctr.dhOps.Add(1)
	return grp.Generate(w.e.o.Rand)
}

func (w *worker) sharedSecret(k crypto.Private, peer []byte) ([]byte, error) {
	w.e.ctr.dhOps.Add(1)
	return k.SharedSecret(peer)
}

// natHashes returns the NAT_DETECTION_SOURCE_IP and _DESTINATION_IP
// notifications for a message from src to dst.
func natHashes(spii, spir [8]byte, src, dst netip.AddrPort) (*message.Notify, *message.Notify) {
	s := crypto.NATDetectionHash(spii, spir, src.Addr(), src.Port())
	d := crypto.NATDetectionHash(spii, spir, dst.Addr(), dst.Port())
	return &message.Notify{NotifyType: message.NATDetectionSourceIP, Data: s[:]},
		&message.Notify{NotifyType: message.NATDetectionDestinationIP, Data: d[:]}
}

// checkNAT compares the peer's NAT detection notifications with the
// addresses the datagram carried (RFC 7296 §2.23). ok is false when the
// peer sent none.
func checkNAT(spii, spir [8]byte, m []message.Payload, local, remote netip.AddrPort) (natUs, natPeer, ok bool) {
	var srcSeen, dstSeen bool
	srcMatch := false
	want := crypto.NATDetectionHash(spii, spir, remote.Addr(), remote.Port())
	for _, p := range m {
		n, isN := p.(*message.Notify)
		if !isN {
			continue
		}
		switch n.NotifyType {
		case message.NATDetectionSourceIP:
			srcSeen = true
			if bytes.Equal(n.Data, want[:]) {
				srcMatch = true
			}
		case message.NATDetectionDestinationIP:
			dstSeen = true
			h := crypto.NATDetectionHash(spii, spir, local.Addr(), local.Port())
			natUs = !bytes.Equal(n.Data, h[:])
		}
	}
	if !srcSeen || !dstSeen {
		return false, false, false
	}
	return natUs, !srcMatch, true
}

func (w *worker) initPayloads(sa *ikeSA, response bool, saPayload *message.SA) []message.Payload {
	nonce := sa.ni
	if response {
		nonce = sa.nr
	}
	ps := make([]message.Payload, 0, 9)
	if sa.cookie != nil && !response {
		ps = append(ps, &message.Notify{NotifyType: message.Cookie, Data: sa.cookie})
	}
	ps = append(ps, saPayload,
		&message.KE{Group: sa.dh.Group().ID(), Data: sa.dh.Public()},
		&message.Nonce{Data: nonce})
	src, dst := natHashes(sa.spii, sa.spir, sa.local, sa.remote)
	ps = append(ps, src, dst)
	if (!response && sa.conn.fragmentation) || (response && sa.fragPeer) {
		ps = append(ps, &message.Notify{NotifyType: message.IKEv2FragmentationSupported})
	}
	if response {
		// RFC 7296 §3.7: the responder asks for the initiator's
		// certificate here, the initiator in IKE_AUTH.
		if cr := w.e.responderCertReq(sa); cr != nil {
			ps = append(ps, cr)
		}
	}
	if !w.e.noSigHashes {
		ps = append(ps, &message.Notify{NotifyType: message.SignatureHashAlgorithms, Data: signatureHashAlgorithms})
	}
	if v := w.e.o.VendorID; v != "" {
		ps = append(ps, &message.VendorID{Data: []byte(v)})
	}
	return ps
}

// initiate starts IKE_SA_INIT for conn c with our SPI spii.
func (w *worker) initiate(c *conn, spii [8]byte, progress func(Progress)) {
	e := w.e
	now := e.now()
	remotePort := uint16(e.o.IKEPort)
	if c.remote.IKEPort != 0 {
		remotePort = uint16(c.remote.IKEPort)
	}
	localPort := uint16(e.o.IKEPort)
	if c.local.IKEPort != 0 {
		localPort = uint16(c.local.IKEPort)
	}
	if c.encapForce && remotePort == uint16(e.o.NATIKEPort) {
		localPort = uint16(e.o.NATIKEPort) // RFC 7296 §2.23 allows starting on 4500
	}
	sa := &ikeSA{
		w: w, conn: c, initiator: true, spii: spii, state: stateInitSent,
		local:   netip.AddrPortFrom(c.local.Addr, localPort),
		remote:  netip.AddrPortFrom(c.remote.Addr, remotePort),
		localID: c.localID, remoteID: c.remoteID,
		progress: progress, created: now, lastHeard: now,
	}
	if w.sas[spiKey(spii)] != nil {
		w.finish(sa, errors.New("IKE SPI collision, try again"))
		return
	}
	w.sas[spiKey(spii)] = sa
	e.peerUp(sa)
	var err error
	if sa.ni, err = w.newNonce(); err != nil {
		w.forget(sa, err)
		return
	}
	g := c.ike[0].DH[0]
	if sa.dh, err = w.newKey(g); err != nil {
		w.forget(sa, fmt.Errorf("key exchange %v: %w", g, err))
		return
	}
	w.report(sa, "initiating IKEv2 connection to %v (IKE SA %s, KE %v)", sa.remote, hex8(spii), g)
	w.sendInit(sa)
}

func hex8(s [8]byte) string { return fmt.Sprintf("%x", s[:]) }

// sendInit (re)sends the initiator's IKE_SA_INIT request.
func (w *worker) sendInit(sa *ikeSA) {
	m := message.Message{SPIi: sa.spii, Exchange: message.IKE_SA_INIT, Flags: message.FlagInitiator,
		Payloads: w.initPayloads(sa, false, &message.SA{Proposals: sa.conn.ikeSA})}
	b, err := m.Encode()
	if err != nil {
		w.forget(sa, fmt.Errorf("building IKE_SA_INIT request: %w", err))
		return
	}
	sa.ourInit = b
	sa.nextMsgID = 1
	w.transmit(sa, &request{msgid: 0, exchange: message.IKE_SA_INIT, frags: [][]byte{b}})
}

// respondInit answers an IKE_SA_INIT request that opens a new IKE SA.
func (w *worker) respondInit(p Packet) {
	e := w.e
	m, err := message.Decode(p.Data)
	if err != nil {
		e.drop(dropMalformed) // never INVALID_SYNTAX to an unprotected message
		return
	}
	var (
		saP    *message.SA
		ke     *message.KE
		nonce  *message.Nonce
		cookie []byte
		frag   bool
	)
	for _, pl := range m.Payloads {
		switch x := pl.(type) {
		case *message.SA:
			saP = x
		case *message.KE:
			ke = x
		case *message.Nonce:
			nonce = x
		case *message.Notify:
			switch x.NotifyType {
			case message.Cookie:
				cookie = x.Data
			case message.IKEv2FragmentationSupported:
				frag = true
			}
		}
	}
	if saP == nil || ke == nil || nonce == nil {
		e.drop(dropInvalidInit)
		return
	}
	// RFC 7296 §2.6: while busy, no state (and no key exchange) for an
	// initiator that has not shown it receives at its address.
	if e.busy() && (cookie == nil || !e.cookies.Verify(cookie, nonce.Data, p.Remote.Addr(), m.SPIi)) {
		e.drop(dropCookie)
		w.initError(m, p, message.Cookie, e.cookies.Make(nil, nonce.Data, p.Remote.Addr(), m.SPIi))
		return
	}
	var c *conn
	for _, cand := range e.connList() {
		if cand.matchesAddrs(p.Local.Addr(), p.Remote.Addr()) {
			c = cand
			break
		}
	}
	if c == nil {
		e.drop(dropNoConn)
		e.log.Debugf(logging.Base, "IKE_SA_INIT from %v to %v: no connection for these addresses", p.Remote, p.Local)
		return
	}
	choice, number, want, ok := selectIKE(c.ike, saP.Proposals, ke.Group)
	if !ok {
		if want != 0 {
			e.log.Logf("%s: IKE_SA_INIT from %v: KE is %v, asking for %v (INVALID_KE_PAYLOAD)", c.name, p.Remote, ke.Group, want)
			w.initError(m, p, message.InvalidKEPayload, binary.BigEndian.AppendUint16(nil, uint16(want)))
		} else {
			e.log.Logf("%s: IKE_SA_INIT from %v: no proposal chosen (our ike=%s)", c.name, p.Remote, proposal.FormatIKE(c.ike))
			w.initError(m, p, message.NoProposalChosen, nil)
		}
		return
	}
	now := e.now()
	spir, err := e.newSPI()
	if err == nil && w.sas[spiKey(spir)] != nil {
		spir, err = e.newSPI() // a collision of 64 random bits: once more
	}
	if err != nil || w.sas[spiKey(spir)] != nil {
		e.log.Warnf("%s: no fresh IKE SPI for the IKE_SA_INIT from %v", c.name, p.Remote)
		return
	}
	sa := &ikeSA{
		w: w, conn: c, spii: m.SPIi, spir: spir, state: stateHalfOpen,
		local: p.Local, remote: p.Remote, choice: choice,
		localID: c.localID, remoteID: c.remoteID,
		created: now, lastHeard: now, halfOpenExpires: now.Add(e.o.HalfOpenTimeout),
		halfOpenRemote: p.Remote, peerNext: 1, nextMsgID: 0,
	}
	sa.natUs, sa.natPeer, _ = checkNAT(m.SPIi, [8]byte{}, m.Payloads, p.Local, p.Remote)
	sa.fragPeer = frag && c.fragmentation
	sa.peerHashes = peerSigHashes(m.Payloads)
	sa.peerCertReq = hasCertReq(m.Payloads)
	if sa.nr, err = w.newNonce(); err != nil {
		return
	}
	sa.ni = bytes.Clone(nonce.Data)
	if sa.dh, err = w.newKey(choice.group); err != nil {
		e.log.Warnf("%s: key exchange %v: %v", c.name, choice.group, err)
		return
	}
	gir, err := w.sharedSecret(sa.dh, ke.Data)
	if err != nil {
		e.drop(dropInvalidInit)
		e.log.Logf("%s: IKE_SA_INIT from %v: %v", c.name, p.Remote, err)
		return
	}
	if err := w.deriveKeys(sa, gir); err != nil {
		e.log.Warnf("%s: %v", c.name, err)
		return
	}
	clear(gir)
	resp := message.Message{SPIi: sa.spii, SPIr: sa.spir, Exchange: message.IKE_SA_INIT, Flags: message.FlagResponse,
		Payloads: w.initPayloads(sa, true, &message.SA{Proposals: []message.Proposal{ikeAnswer(choice, number)}})}
	b, err := resp.Encode()
	if err != nil {
		e.log.Warnf("%s: building IKE_SA_INIT response: %v", c.name, err)
		return
	}
	sa.dh = nil
	sa.ourInit = b
	sa.peerInit = bytes.Clone(p.Data)
	sa.lastResponse, sa.lastResponseID = [][]byte{b}, 0
	w.sas[spiKey(spir)] = sa
	w.halfOpen[halfOpenKey{sa.spii, p.Remote}] = sa
	w.timed[sa] = struct{}{}
	e.halfOpenCount.Add(1)
	e.peerUp(sa)
	e.log.Debugf(logging.Base, "%s: IKE_SA_INIT from %v answered with %s", c.name, p.Remote, choice)
	e.send(Packet{Local: p.Local, Remote: p.Remote, Data: b})
}

// initError answers an IKE_SA_INIT request with an error notification,
// keeping no state.
func (w *worker) initError(req *message.Message, p Packet, n message.NotifyType, data []byte) {
	resp := message.Message{SPIi: req.SPIi, Exchange: message.IKE_SA_INIT, Flags: message.FlagResponse,
		Payloads: []message.Payload{&message.Notify{NotifyType: n, Data: data}}}
	b, err := resp.Encode()
	if err != nil {
		return
	}
	w.e.send(Packet{Local: p.Local, Remote: p.Remote, Data: b})
}

// deriveKeys computes SKEYSEED and the IKE SA's keys and SK protection.
func (w *worker) deriveKeys(sa *ikeSA, gir []byte) error {
	prf, err := crypto.NewPRF(sa.choice.suite.PRF)
	if err != nil {
		return err
	}
	keys, err := crypto.DeriveIKEKeys(prf, sa.choice.suite, gir, sa.ni, sa.nr, sa.spii, sa.spir)
	if err != nil {
		return err
	}
	return sa.setKeys(prf, keys)
}

// setKeys makes the SK protection of sa from its keys.
func (sa *ikeSA) setKeys(prf *crypto.PRF, keys *crypto.Keys) error {
	var err error
	ei, ai, er, ar := keys.SKei, keys.SKai, keys.SKer, keys.SKar
	outE, outA, inE, inA := ei, ai, er, ar
	if !sa.initiator {
		outE, outA, inE, inA = er, ar, ei, ai
	}
	if sa.skOut, err = crypto.NewSK(sa.choice.suite, outE, nilIfEmpty(outA)); err != nil {
		return err
	}
	if sa.skIn, err = crypto.NewSK(sa.choice.suite, inE, nilIfEmpty(inA)); err != nil {
		return err
	}
	sa.prf, sa.keys = prf, keys
	return nil
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// initResponse handles the responder's answer to our IKE_SA_INIT.
func (w *worker) initResponse(sa *ikeSA, p Packet) {
	e := w.e
	m, err := message.Decode(p.Data)
	if err != nil {
		e.drop(dropMalformed)
		return
	}
	var (
		saP   *message.SA
		ke    *message.KE
		nonce *message.Nonce
		frag  bool
	)
	for _, pl := range m.Payloads {
		switch x := pl.(type) {
		case *message.SA:
			saP = x
		case *message.KE:
			ke = x
		case *message.Nonce:
			nonce = x
		case *message.Notify:
			switch x.NotifyType {
			case message.IKEv2FragmentationSupported:
				frag = true
			case message.InvalidKEPayload:
				w.invalidKE(sa, x)
				return
			case message.Cookie:
				if len(x.Data) == 0 || len(x.Data) > 64 || bytes.Equal(x.Data, sa.cookie) || sa.cookieTries >= maxCookies {
					e.drop(dropUnexpected)
					return
				}
				sa.cookieTries++
				sa.cookie = bytes.Clone(x.Data)
				w.report(sa, "responder asked for a cookie; sending IKE_SA_INIT again with it")
				w.sendInit(sa)
				return
			default:
				if x.NotifyType.IsError() {
					why := fmt.Sprintf("IKE_SA_INIT failed: the peer answered %v", x.NotifyType)
					if x.NotifyType == message.NoProposalChosen {
						why = fmt.Sprintf("IKE_SA_INIT failed: the peer accepts none of our IKE proposals (NO_PROPOSAL_CHOSEN); ours: ike=%s", proposal.FormatIKE(sa.conn.ike))
					}
					w.forget(sa, errors.New(why))
					return
				}
			}
		}
	}
	if saP == nil || ke == nil || nonce == nil || m.SPIr == ([8]byte{}) {
		e.drop(dropMalformed)
		return
	}
	choice, err := acceptedIKE(sa.conn.ikeSA, saP)
	if err == nil && ke.Group != choice.group {
		err = fmt.Errorf("the responder's KE is %v but it chose %v", ke.Group, choice.group)
	}
	if err == nil && choice.group != sa.dh.Group().ID() {
		err = fmt.Errorf("the responder chose %v but our KE is %v", choice.group, sa.dh.Group().ID())
	}
	if err != nil {
		w.forget(sa, fmt.Errorf("IKE_SA_INIT failed: %v", err))
		return
	}
	gir, err := w.sharedSecret(sa.dh, ke.Data)
	if err != nil {
		w.forget(sa, fmt.Errorf("IKE_SA_INIT failed: %v", err))
		return
	}
	sa.spir = m.SPIr
	sa.choice = choice
	sa.fragPeer = frag && sa.conn.fragmentation
	sa.peerHashes = peerSigHashes(m.Payloads)
	sa.peerCertReq = hasCertReq(m.Payloads)
	sa.nr = bytes.Clone(nonce.Data)
	if err := w.deriveKeys(sa, gir); err != nil {
		clear(gir)
		w.forget(sa, fmt.Errorf("IKE_SA_INIT failed: %v", err))
		return
	}
	clear(gir)
	sa.dh = nil
	sa.peerInit = bytes.Clone(p.Data)
	sa.natUs, sa.natPeer, _ = checkNAT(sa.spii, sa.spir, m.Payloads, p.Local, p.Remote)
	sa.out = nil
	w.report(sa, "IKE_SA_INIT done: %s%s", choice, natWords(sa))
	if sa.natUs || sa.natPeer || sa.conn.encapForce {
		nat := uint16(e.o.NATIKEPort)
		if sa.local.Port() != nat {
			sa.local = netip.AddrPortFrom(sa.local.Addr(), nat)
		}
		if sa.remote.Port() == uint16(e.o.IKEPort) {
			sa.remote = netip.AddrPortFrom(sa.remote.Addr(), nat)
		}
	}
	w.sendAuth(sa)
}

func natWords(sa *ikeSA) string {
	switch {
	case sa.natUs && sa.natPeer:
		return "; NAT: we and the peer are behind NATs"
	case sa.natUs:
		return "; NAT: we are behind a NAT"
	case sa.natPeer:
		return "; NAT: the peer is behind a NAT"
	}
	return ""
}

// invalidKE follows the responder's INVALID_KE_PAYLOAD: a new IKE_SA_INIT
// (message ID 0 again, same SPIi) with the group it asked for, if we
// offered that group.
func (w *worker) invalidKE(sa *ikeSA, n *message.Notify) {
	if len(n.Data) != 2 {
		w.forget(sa, errors.New("IKE_SA_INIT failed: INVALID_KE_PAYLOAD without a group"))
		return
	}
	g := proposal.DHGroup(binary.BigEndian.Uint16(n.Data))
	offered := false
	for _, p := range sa.conn.ike {
		if slices.Contains(p.DH, g) {
			offered = true
		}
	}
	if !offered || g == sa.dh.Group().ID() {
		w.forget(sa, fmt.Errorf("IKE_SA_INIT failed: the peer wants key exchange %v (INVALID_KE_PAYLOAD), which we did not offer", g))
		return
	}
	sa.keTries++
	if sa.keTries > maxInvalidKE {
		w.forget(sa, errors.New("IKE_SA_INIT failed: too many INVALID_KE_PAYLOAD answers"))
		return
	}
	k, err := w.newKey(g)
	if err != nil {
		w.forget(sa, fmt.Errorf("key exchange %v: %w", g, err))
		return
	}
	w.report(sa, "the peer wants key exchange %v instead of %v (INVALID_KE_PAYLOAD); trying again", g, sa.dh.Group().ID())
	sa.dh = k
	sa.out = nil
	w.sendInit(sa)
}
