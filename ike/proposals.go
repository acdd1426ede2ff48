package ike

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"goswan/ike/crypto"
	"goswan/ike/message"
	"goswan/proposal"
)

// ikeChoice is a negotiated IKE SA suite.
type ikeChoice struct {
	suite crypto.Suite
	group proposal.DHGroup
}

func (c ikeChoice) String() string {
	return suiteString(c.suite, true) + "-" + c.group.String()
}

// espChoice is a negotiated Child SA suite.
type espChoice struct {
	suite crypto.Suite
	esn   bool
}

func (c espChoice) String() string {
	s := suiteString(c.suite, false)
	if c.esn {
		s += "-ESN"
	}
	return s
}

func suiteString(s crypto.Suite, prf bool) string {
	var b strings.Builder
	b.WriteString(s.Encr.String())
	if bits := s.KeyBits; bits != 0 && s.Encr.HasKeyLengthAttribute() {
		fmt.Fprintf(&b, "_%d", bits)
	}
	if !s.Encr.AEAD() {
		b.WriteString("-" + s.Integ.String())
	}
	if prf {
		b.WriteString("-" + s.PRF.String())
	}
	return b.String()
}

func encrTransforms(ts []message.Transform, encrs []proposal.Encr) []message.Transform {
	for _, e := range encrs {
		for _, bits := range e.KeyLengths() {
			t := message.Transform{Type: message.TransformENCR, ID: uint16(e.ID)}
			if e.ID.HasKeyLengthAttribute() {
				t.Attributes = []message.Attribute{message.KeyLengthAttribute(uint16(bits))}
			}
			ts = append(ts, t)
		}
	}
	return ts
}

// ikeOffer turns ike= proposals into the SA payload's proposals.
func ikeOffer(ps []proposal.IKEProposal) ([]message.Proposal, error) {
	if len(ps) > message.MaxProposals {
		return nil, fmt.Errorf("%d proposals, at most %d", len(ps), message.MaxProposals)
	}
	var out []message.Proposal
	for i, p := range ps {
		if len(p.Encr) == 0 || len(p.PRF) == 0 || len(p.DH) == 0 {
			return nil, fmt.Errorf("proposal %s lacks an encryption algorithm, PRF or DH group", p)
		}
		for _, e := range p.Encr {
			if e.ID.ESPOnly() || len(e.ID.KeyLengths()) == 0 {
				return nil, fmt.Errorf("%v cannot protect IKE", e)
			}
		}
		for _, f := range p.PRF {
			if _, err := crypto.NewPRF(f); err != nil {
				return nil, err
			}
		}
		for _, g := range p.DH {
			if _, err := crypto.GroupFor(g); err != nil {
				return nil, err
			}
		}
		ts := encrTransforms(nil, p.Encr)
		for _, f := range p.PRF {
			ts = append(ts, message.Transform{Type: message.TransformPRF, ID: uint16(f)})
		}
		if !p.AEAD() {
			for _, in := range p.Integ {
				if in != proposal.IntegNone {
					ts = append(ts, message.Transform{Type: message.TransformINTEG, ID: uint16(in)})
				}
			}
		}
		for _, g := range p.DH {
			ts = append(ts, message.Transform{Type: message.TransformKE, ID: uint16(g)})
		}
		out = append(out, message.Proposal{Number: uint8(i + 1), Protocol: message.ProtocolIKE, Transforms: ts})
	}
	return out, nil
}

// espOffer turns esp= proposals into the Child SA's proposals for
// IKE_AUTH (no KE transforms there, RFC 7296 §1.2) with our inbound SPI.
func espOffer(ps []proposal.ESPProposal, esn []uint16, spi uint32) ([]message.Proposal, error) {
	if len(ps) > message.MaxProposals {
		return nil, fmt.Errorf("%d proposals, at most %d", len(ps), message.MaxProposals)
	}
	spiB := binary.BigEndian.AppendUint32(nil, spi)
	var out []message.Proposal
	for i, p := range ps {
		if len(p.Encr) == 0 {
			return nil, fmt.Errorf("proposal %s lacks an encryption algorithm", p)
		}
		ts := encrTransforms(nil, p.Encr)
		if !p.AEAD() {
			if len(p.Integ) == 0 {
				return nil, fmt.Errorf("proposal %s lacks an integrity algorithm", p)
			}
			for _, in := range p.Integ {
				ts = append(ts, message.Transform{Type: message.TransformINTEG, ID: uint16(in)})
			}
		}
		for _, e := range esn {
			ts = append(ts, message.Transform{Type: message.TransformESN, ID: e})
		}
		out = append(out, message.Proposal{Number: uint8(i + 1), Protocol: message.ProtocolESP, SPI: spiB, Transforms: ts})
	}
	return out, nil
}

func hasTransform(p *message.Proposal, typ message.TransformType, id uint16, bits int) bool {
	for i := range p.Transforms {
		t := &p.Transforms[i]
		if t.Type != typ || t.ID != id {
			continue
		}
		got, ok := t.KeyLength()
		if !ok {
			got = 0
		}
		if got == bits {
			return true
		}
	}
	return false
}

func countType(p *message.Proposal, typ message.TransformType) int {
	n := 0
	for i := range p.Transforms {
		if p.Transforms[i].Type == typ {
			n++
		}
	}
	return n
}

// onlyTypes reports whether p has no transform type outside allowed
// (RFC 7296 §3.3.6: a proposal with an unknown type is rejected).
func onlyTypes(p *message.Proposal, allowed ...message.TransformType) bool {
	for i := range p.Transforms {
		if !slices.Contains(allowed, p.Transforms[i].Type) {
			return false
		}
	}
	return true
}

// pickEncr picks our first encryption algorithm and key length that the
// peer's proposal has.
func pickEncr(encrs []proposal.Encr, p *message.Proposal) (proposal.EncrID, int, bool) {
	for _, e := range encrs {
		for _, bits := range e.KeyLengths() {
			wire := bits
			if !e.ID.HasKeyLengthAttribute() {
				wire = 0
			}
			if hasTransform(p, message.TransformENCR, uint16(e.ID), wire) {
				return e.ID, wire, true
			}
		}
	}
	return 0, 0, false
}

// integOK reports whether an AEAD proposal's integrity transforms (none,
// or only NONE) are acceptable.
// pickInteg chooses the integrity transform to go with encr from ours,
// among those the peer's proposal p offers: none for an AEAD (when p offers
// no other), else the first of ours that p has.
func pickInteg(encr proposal.EncrID, ours []proposal.IntegID, p *message.Proposal) (proposal.IntegID, bool) {
	if encr.AEAD() {
		return proposal.IntegNone, aeadIntegOK(p)
	}
	for _, in := range ours {
		if in != proposal.IntegNone && hasTransform(p, message.TransformINTEG, uint16(in), 0) {
			return in, true
		}
	}
	return 0, false
}

func aeadIntegOK(p *message.Proposal) bool {
	for i := range p.Transforms {
		t := &p.Transforms[i]
		if t.Type == message.TransformINTEG && t.ID != uint16(proposal.IntegNone) {
			return false
		}
	}
	return true
}

// selectIKE picks the IKE SA's suite as Libreswan does: our proposals in
// our order, the first of the peer's that matches, and in it our
// preferred algorithms. The group is the KE payload's when the match
// allows it; otherwise wantGroup is the group to ask for with
// INVALID_KE_PAYLOAD. number is the peer's proposal number.
func selectIKE(ours []proposal.IKEProposal, theirs []message.Proposal, ke proposal.DHGroup) (c ikeChoice, number uint8, wantGroup proposal.DHGroup, ok bool) {
	for _, op := range ours {
		for i := range theirs {
			tp := &theirs[i]
			if tp.Protocol != message.ProtocolIKE || len(tp.SPI) != 0 ||
				!onlyTypes(tp, message.TransformENCR, message.TransformPRF, message.TransformINTEG, message.TransformKE) {
				continue
			}
			encr, bits, found := pickEncr(op.Encr, tp)
			if !found {
				continue
			}
			var prf proposal.PRFID
			for _, f := range op.PRF {
				if hasTransform(tp, message.TransformPRF, uint16(f), 0) {
					prf = f
					break
				}
			}
			if prf == 0 {
				continue
			}
			integ, found := pickInteg(encr, op.Integ, tp)
			if !found {
				continue
			}
			var first proposal.DHGroup
			group := proposal.DHGroup(0)
			for _, g := range op.DH {
				if hasTransform(tp, message.TransformKE, uint16(g), 0) {
					if first == 0 {
						first = g
					}
					if g == ke {
						group = g
					}
				}
			}
			if first == 0 {
				continue
			}
			c = ikeChoice{suite: crypto.Suite{Encr: encr, KeyBits: bits, PRF: prf, Integ: integ}, group: group}
			if group == 0 {
				return c, tp.Number, first, false
			}
			return c, tp.Number, 0, true
		}
	}
	return ikeChoice{}, 0, 0, false
}

// ikeAnswer is the SA payload proposal that answers with choice c.
func ikeAnswer(c ikeChoice, number uint8) message.Proposal {
	ts := []message.Transform{{Type: message.TransformENCR, ID: uint16(c.suite.Encr)}}
	if c.suite.Encr.HasKeyLengthAttribute() {
		ts[0].Attributes = []message.Attribute{message.KeyLengthAttribute(uint16(c.suite.KeyBits))}
	}
	ts = append(ts, message.Transform{Type: message.TransformPRF, ID: uint16(c.suite.PRF)})
	if !c.suite.Encr.AEAD() {
		ts = append(ts, message.Transform{Type: message.TransformINTEG, ID: uint16(c.suite.Integ)})
	}
	ts = append(ts, message.Transform{Type: message.TransformKE, ID: uint16(c.group)})
	return message.Proposal{Number: number, Protocol: message.ProtocolIKE, Transforms: ts}
}

// acceptedIKE checks the responder's answer against our offer and reads
// the suite from it.
func acceptedIKE(offer []message.Proposal, sa *message.SA) (ikeChoice, error) {
	if sa == nil || len(sa.Proposals) != 1 {
		return ikeChoice{}, errors.New("the IKE_SA_INIT response must carry an SA payload with exactly one proposal")
	}
	got := &sa.Proposals[0]
	ours := offerNumber(offer, got.Number)
	if ours == nil || got.Protocol != message.ProtocolIKE {
		return ikeChoice{}, fmt.Errorf("the responder chose proposal %v, which we did not offer", got)
	}
	var c ikeChoice
	for i := range got.Transforms {
		t := &got.Transforms[i]
		bits, _ := t.KeyLength()
		if !hasTransform(ours, t.Type, t.ID, bits) {
			return ikeChoice{}, fmt.Errorf("the responder chose %v, which we did not offer", t)
		}
	}
	for _, typ := range []message.TransformType{message.TransformENCR, message.TransformPRF, message.TransformKE} {
		if countType(got, typ) != 1 {
			return ikeChoice{}, fmt.Errorf("the responder's proposal %v has %d %v transforms, want 1", got, countType(got, typ), typ)
		}
	}
	for i := range got.Transforms {
		t := &got.Transforms[i]
		switch t.Type {
		case message.TransformENCR:
			c.suite.Encr = proposal.EncrID(t.ID)
			c.suite.KeyBits, _ = t.KeyLength()
		case message.TransformPRF:
			c.suite.PRF = proposal.PRFID(t.ID)
		case message.TransformINTEG:
			c.suite.Integ = proposal.IntegID(t.ID)
		case message.TransformKE:
			c.group = proposal.DHGroup(t.ID)
		}
	}
	if !c.suite.Encr.AEAD() && c.suite.Integ == 0 {
		return ikeChoice{}, fmt.Errorf("the responder's proposal %v has no integrity algorithm", got)
	}
	if c.suite.Encr.AEAD() {
		c.suite.Integ = proposal.IntegNone
	}
	return c, nil
}

func offerNumber(offer []message.Proposal, n uint8) *message.Proposal {
	for i := range offer {
		if offer[i].Number == n {
			return &offer[i]
		}
	}
	return nil
}

// selectESP picks the Child SA's suite from the peer's ESP proposals, our
// preference first. It returns the peer's SPI.
func selectESP(ours []proposal.ESPProposal, esn []uint16, theirs []message.Proposal) (c espChoice, number uint8, peerSPI uint32, ok bool) {
	for _, op := range ours {
		for i := range theirs {
			tp := &theirs[i]
			if tp.Protocol != message.ProtocolESP || len(tp.SPI) != 4 ||
				!onlyTypes(tp, message.TransformENCR, message.TransformINTEG, message.TransformESN, message.TransformKE) {
				continue
			}
			encr, bits, found := pickEncr(op.Encr, tp)
			if !found {
				continue
			}
			integ, found := pickInteg(encr, op.Integ, tp)
			if !found {
				continue
			}
			esnID, esnOK := uint16(0), false
			if countType(tp, message.TransformESN) == 0 {
				esnID, esnOK = message.ESNNo, slices.Contains(esn, message.ESNNo)
			} else {
				for _, x := range esn {
					if hasTransform(tp, message.TransformESN, x, 0) {
						esnID, esnOK = x, true
						break
					}
				}
			}
			if !esnOK {
				continue
			}
			c = espChoice{suite: crypto.Suite{Encr: encr, KeyBits: bits, Integ: integ}, esn: esnID == message.ESNYes}
			return c, tp.Number, binary.BigEndian.Uint32(tp.SPI), true
		}
	}
	return espChoice{}, 0, 0, false
}

// espAnswer is the SA payload proposal that answers with choice c and our
// inbound SPI.
func espAnswer(c espChoice, number uint8, spi uint32) message.Proposal {
	ts := []message.Transform{{Type: message.TransformENCR, ID: uint16(c.suite.Encr)}}
	if c.suite.Encr.HasKeyLengthAttribute() {
		ts[0].Attributes = []message.Attribute{message.KeyLengthAttribute(uint16(c.suite.KeyBits))}
	}
	if !c.suite.Encr.AEAD() {
		ts = append(ts, message.Transform{Type: message.TransformINTEG, ID: uint16(c.suite.Integ)})
	}
	e := message.ESNNo
	if c.esn {
		e = message.ESNYes
	}
	ts = append(ts, message.Transform{Type: message.TransformESN, ID: e})
	return message.Proposal{Number: number, Protocol: message.ProtocolESP, SPI: binary.BigEndian.AppendUint32(nil, spi), Transforms: ts}
}

// acceptedESP checks the responder's Child SA answer against our offer
// and returns the suite and the peer's SPI.
func acceptedESP(offer []message.Proposal, sa *message.SA) (espChoice, uint32, error) {
	if sa == nil || len(sa.Proposals) != 1 {
		return espChoice{}, 0, errors.New("the IKE_AUTH response must carry an SA payload with exactly one proposal")
	}
	got := &sa.Proposals[0]
	ours := offerNumber(offer, got.Number)
	if ours == nil || got.Protocol != message.ProtocolESP || len(got.SPI) != 4 {
		return espChoice{}, 0, fmt.Errorf("the responder chose proposal %v, which we did not offer", got)
	}
	var c espChoice
	for i := range got.Transforms {
		t := &got.Transforms[i]
		bits, _ := t.KeyLength()
		if !hasTransform(ours, t.Type, t.ID, bits) {
			return espChoice{}, 0, fmt.Errorf("the responder chose %v, which we did not offer", t)
		}
		switch t.Type {
		case message.TransformENCR:
			c.suite.Encr = proposal.EncrID(t.ID)
			c.suite.KeyBits = bits
		case message.TransformINTEG:
			c.suite.Integ = proposal.IntegID(t.ID)
		case message.TransformESN:
			c.esn = t.ID == message.ESNYes
		}
	}
	if countType(got, message.TransformENCR) != 1 || countType(got, message.TransformINTEG) > 1 || countType(got, message.TransformESN) > 1 {
		return espChoice{}, 0, fmt.Errorf("the responder's proposal %v is not a single choice", got)
	}
	if c.suite.Encr.AEAD() {
		c.suite.Integ = proposal.IntegNone
	} else if c.suite.Integ == 0 {
		return espChoice{}, 0, fmt.Errorf("the responder's proposal %v has no integrity algorithm", got)
	}
	return c, binary.BigEndian.Uint32(got.SPI), nil
}
