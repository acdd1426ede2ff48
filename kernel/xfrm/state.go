package xfrm

// Encoding of SAs (XFRM states) and policies into the payloads of
// XFRM_MSG_NEWSA/UPDSA and XFRM_MSG_UPDPOLICY/DELPOLICY.

import (
	"fmt"
	"net/netip"
	"time"

	"goswan/kernel"
	"goswan/proposal"
)

// carried is the state of an installed SA that UpdateSA moves to its
// replacement: the anti-replay state and the counters.
type carried struct {
	esn    *replayESN // XFRMA_REPLAY_ESN_VAL, if the SA has one
	legacy []byte     // XFRMA_REPLAY_VAL (struct xfrm_replay_state), otherwise
	cur    lifetimeCur
}

// oseqMargin is how far UpdateSA advances an outbound SA's sequence number
// when it replaces the SA: packets sent between reading the old SA's
// counter and deleting it must not have their sequence numbers (and so
// their AEAD nonces) used again. Skipped numbers cost nothing.
const oseqMargin = 1 << 16

// replayWindow decides how the kernel keeps sa's anti-replay state: the
// legacy 32-bit field, or XFRMA_REPLAY_ESN_VAL (needed for ESN, and for
// windows wider than 32 packets even without ESN).
func replayWindow(sa *kernel.SA) (window uint32, useESNAttr bool, err error) {
	w := sa.ReplayWindow
	if w > replayESNMaxBits {
		return 0, false, fmt.Errorf("replay window %d: the kernel allows at most %d", w, replayESNMaxBits)
	}
	if sa.ESN {
		if w == 0 {
			if sa.Dir == kernel.In {
				return 0, false, fmt.Errorf("ESN with replay window 0: the kernel needs a replay window for an inbound ESN SA")
			}
			w = 32 // an outbound SA never checks it, but the kernel wants one
		}
		return w, true, nil
	}
	return w, w > 32, nil
}

// encodeState builds the payload of XFRM_MSG_NEWSA or XFRM_MSG_UPDSA for
// sa. carry, if not nil, is the state of the SA it replaces.
func encodeState(sa *kernel.SA, carry *carried) ([]byte, error) {
	if sa.SPI == 0 {
		return nil, fmt.Errorf("SPI 0")
	}
	if sa.Proto != kernel.ESP && sa.Proto != kernel.AH {
		return nil, fmt.Errorf("protocol %v: want esp or ah", sa.Proto)
	}
	src, dst := sa.Src.Unmap(), sa.Dst.Unmap()
	if !src.IsValid() || !dst.IsValid() || family(src) != family(dst) {
		return nil, fmt.Errorf("outer addresses %v -> %v: want two addresses of one family", sa.Src, sa.Dst)
	}
	fam := family(dst)
	info := usersaInfo{
		Daddr:  dst,
		SPI:    sa.SPI,
		Proto:  uint8(sa.Proto),
		Saddr:  src,
		ReqID:  sa.ReqID,
		Family: fam,
		Lft: lifetimeCfg{
			SoftBytes:   limitOrInf(sa.Lifetime.Soft.Bytes),
			HardBytes:   limitOrInf(sa.Lifetime.Hard.Bytes),
			SoftPackets: limitOrInf(sa.Lifetime.Soft.Packets),
			HardPackets: limitOrInf(sa.Lifetime.Hard.Packets),
			SoftAddSec:  seconds(sa.Lifetime.Soft.Time),
			HardAddSec:  seconds(sa.Lifetime.Hard.Time),
		},
	}
	switch sa.Mode {
	case kernel.Tunnel:
		// No selector: the policies decide what the SA carries, and
		// AF_UNSPEC lets it carry IPv4 and IPv6 alike (the kernel takes
		// the inner family from each packet).
		info.Mode = modeTunnel
		info.Flags |= stateAFUnspec
	case kernel.Transport:
		// The packets' addresses are the SA's own; the selector adds the
		// protocol and ports when there is exactly one.
		info.Mode = modeTransport
		bits := dst.BitLen()
		sel := kernel.Selector{Src: netip.PrefixFrom(src, bits), Dst: netip.PrefixFrom(dst, bits)}
		if len(sa.Selectors) == 1 {
			sel.Proto = sa.Selectors[0].Proto
			sel.SrcPorts, sel.DstPorts = sa.Selectors[0].SrcPorts, sa.Selectors[0].DstPorts
		}
		x, err := selectorToXFRM(sel)
		if err != nil {
			return nil, err
		}
		info.Sel = x
	default:
		return nil, fmt.Errorf("mode %v", sa.Mode)
	}

	window, useESNAttr, err := replayWindow(sa)
	if err != nil {
		return nil, err
	}
	if sa.ESN {
		info.Flags |= stateESN
	}
	if !useESNAttr {
		info.ReplayWindow = uint8(window)
	}

	b := make([]byte, sizeofUsersaInfo)
	info.put(b)

	switch sa.Proto {
	case kernel.ESP:
		name, aead, icv, err := encrAlgo(sa.Encr, sa.EncrKey)
		if err != nil {
			return nil, err
		}
		if aead {
			if sa.Integ != proposal.IntegNone {
				return nil, fmt.Errorf("%v is AEAD: integrity must be NONE, not %v", sa.Encr, sa.Integ)
			}
			b = appendAttr(b, attrAlgAEAD, algoAuthAttr(name, sa.EncrKey, icv))
		} else {
			b = appendAttr(b, attrAlgCrypt, algoAttr(name, sa.EncrKey))
			if sa.Integ != proposal.IntegNone {
				iname, trunc, err := integAlgo(sa.Integ, sa.IntegKey)
				if err != nil {
					return nil, err
				}
				b = appendAttr(b, attrAlgAuthTrunc, algoAuthAttr(iname, sa.IntegKey, trunc))
			} else if sa.Encr == proposal.EncrNull {
				return nil, fmt.Errorf("ESP with NULL encryption and no integrity protects nothing")
			}
		}
	case kernel.AH:
		if sa.Encr != 0 {
			return nil, fmt.Errorf("AH cannot encrypt (%v)", sa.Encr)
		}
		iname, trunc, err := integAlgo(sa.Integ, sa.IntegKey)
		if err != nil {
			return nil, err
		}
		b = appendAttr(b, attrAlgAuthTrunc, algoAuthAttr(iname, sa.IntegKey, trunc))
	}

	if sa.Encap != nil {
		if sa.Proto != kernel.ESP {
			return nil, fmt.Errorf("UDP encapsulation is for ESP only")
		}
		b = appendAttr(b, attrEncap, encapAttr(udpEncapESPInUDP, sa.Encap.SrcPort, sa.Encap.DstPort))
	}
	if sa.Mark != nil {
		b = appendAttr(b, attrMark, markAttr(xfrmMark(*sa.Mark)))
	}
	if sa.IfID != 0 {
		b = appendAttr(b, attrIfID, u32Attr(sa.IfID))
	}

	switch {
	case useESNAttr:
		r := newReplayESN(window)
		if carry != nil && carry.esn != nil && len(carry.esn.Bitmap) == len(r.Bitmap) {
			r = *carry.esn
			r.Window = window
		}
		if carry != nil && sa.Dir == kernel.Out {
			if err := advanceESN(&r, sa.ESN); err != nil {
				return nil, err
			}
		}
		b = appendAttr(b, attrReplayESNVal, r.bytes())
	case carry != nil && len(carry.legacy) >= sizeofReplayState:
		st := append([]byte(nil), carry.legacy[:sizeofReplayState]...)
		if sa.Dir == kernel.Out {
			oseq := uint64(ne.Uint32(st[0:])) + oseqMargin
			if oseq > 0xffffffff {
				return nil, fmt.Errorf("outbound sequence number %#x too close to its end to move the SA", oseq-oseqMargin)
			}
			ne.PutUint32(st[0:], uint32(oseq))
		}
		b = appendAttr(b, attrReplayVal, st)
	}
	if carry != nil {
		cur := make([]byte, sizeofLifetimeCur)
		carry.cur.put(cur)
		b = appendAttr(b, attrLtimeVal, cur)
	}
	return b, nil
}

func advanceESN(r *replayESN, esn bool) error {
	v := uint64(r.OSeqHi)<<32 | uint64(r.OSeq)
	v += oseqMargin
	if !esn && v > 0xffffffff {
		return fmt.Errorf("outbound sequence number %#x too close to its end to move the SA", v-oseqMargin)
	}
	r.OSeq, r.OSeqHi = uint32(v), uint32(v>>32)
	return nil
}

// xfrmMark fills in a zero mask: a mark with mask 0 would match every
// packet, which is not what a value asks for.
func xfrmMark(m kernel.Mark) kernel.Mark {
	if m.Mask == 0 {
		m.Mask = 0xffffffff
	}
	return m
}

func seconds(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64((d + time.Second - 1) / time.Second)
}

var policyDir = map[kernel.Direction]uint8{kernel.In: 0, kernel.Out: 1, kernel.Fwd: 2}

// policyPriority is p's priority, or Libreswan's for a static connection
// when p leaves it 0.
func policyPriority(p *kernel.Policy) uint32 {
	if p.Priority != 0 {
		return p.Priority
	}
	return Priority(p.Selector, PriorityStatic, false)
}

// encodePolicy builds the payload of XFRM_MSG_UPDPOLICY for p.
func encodePolicy(p *kernel.Policy) ([]byte, error) {
	sel, err := selectorToXFRM(p.Selector)
	if err != nil {
		return nil, err
	}
	dir, ok := policyDir[p.Dir]
	if !ok {
		return nil, fmt.Errorf("direction %v", p.Dir)
	}
	info := policyInfo{
		Sel:      sel,
		Lft:      infLifetime(),
		Priority: policyPriority(p),
		Dir:      dir,
	}
	info.Lft.SoftBytes = ownerTag
	switch p.Action {
	case kernel.Protect, kernel.Bypass:
		info.Action = policyAllow
	case kernel.Block:
		info.Action = policyBlock
	default:
		return nil, fmt.Errorf("action %v", p.Action)
	}
	b := make([]byte, sizeofPolicyInfo)
	info.put(b)
	if p.Action == kernel.Protect {
		t := p.Template
		if t.Proto != kernel.ESP && t.Proto != kernel.AH {
			return nil, fmt.Errorf("template protocol %v: want esp or ah", t.Proto)
		}
		tmpl := userTmpl{
			Proto:  uint8(t.Proto),
			ReqID:  t.ReqID,
			AAlgos: ^uint32(0), EAlgos: ^uint32(0), CAlgos: ^uint32(0),
			Family: sel.Family,
		}
		switch t.Mode {
		case kernel.Tunnel:
			tsrc, tdst := t.Src.Unmap(), t.Dst.Unmap()
			if !tsrc.IsValid() || !tdst.IsValid() || family(tsrc) != family(tdst) {
				return nil, fmt.Errorf("tunnel template %v -> %v: want two addresses of one family", t.Src, t.Dst)
			}
			tmpl.Mode = modeTunnel
			tmpl.Saddr, tmpl.Daddr, tmpl.Family = tsrc, tdst, family(tdst)
		case kernel.Transport:
			tmpl.Mode = modeTransport
			if t.Src.IsValid() && t.Dst.IsValid() {
				tmpl.Saddr, tmpl.Daddr = t.Src.Unmap(), t.Dst.Unmap()
			}
		default:
			return nil, fmt.Errorf("template mode %v", t.Mode)
		}
		tb := make([]byte, sizeofUserTmpl)
		tmpl.put(tb)
		b = appendAttr(b, attrTmpl, tb)
	}
	b = appendPolicyKeys(b, p)
	return b, nil
}

// appendPolicyKeys appends what, besides selector and direction, tells one
// policy from another: the mark and the interface id.
func appendPolicyKeys(b []byte, p *kernel.Policy) []byte {
	if p.Mark != nil {
		b = appendAttr(b, attrMark, markAttr(xfrmMark(*p.Mark)))
	}
	if p.IfID != 0 {
		b = appendAttr(b, attrIfID, u32Attr(p.IfID))
	}
	return b
}

// encodePolicyID builds the payload of XFRM_MSG_DELPOLICY for p.
func encodePolicyID(p *kernel.Policy) ([]byte, error) {
	sel, err := selectorToXFRM(p.Selector)
	if err != nil {
		return nil, err
	}
	dir, ok := policyDir[p.Dir]
	if !ok {
		return nil, fmt.Errorf("direction %v", p.Dir)
	}
	b := make([]byte, sizeofPolicyID)
	putPolicyID(b, sel, 0, dir)
	return appendPolicyKeys(b, p), nil
}

// installedPolicy is a policy as a dump reports it.
type installedPolicy struct {
	Info  policyInfo
	Tmpls []userTmpl
	Mark  *kernel.Mark
	IfID  uint32
	Type  uint8 // XFRM_POLICY_TYPE_MAIN (0) or SUB
}

func parsePolicy(b []byte) (*installedPolicy, error) {
	info, err := getPolicyInfo(b)
	if err != nil {
		return nil, err
	}
	p := &installedPolicy{Info: info}
	attrs, err := parseAttrs(b[sizeofPolicyInfo:])
	if err != nil {
		return nil, err
	}
	for _, a := range attrs {
		switch a.typ {
		case attrTmpl:
			p.Tmpls = getTmpls(a.data)
		case attrMark:
			if len(a.data) >= sizeofMark {
				p.Mark = &kernel.Mark{Value: ne.Uint32(a.data), Mask: ne.Uint32(a.data[4:])}
			}
		case attrIfID:
			if len(a.data) >= 4 {
				p.IfID = ne.Uint32(a.data)
			}
		case attrPolicyType:
			if len(a.data) >= 1 {
				p.Type = a.data[0]
			}
		}
	}
	return p, nil
}

// ours says whether goswan installed the policy.
func (p *installedPolicy) ours() bool {
	if p.Info.Lft.SoftBytes == ownerTag {
		return true
	}
	for _, t := range p.Tmpls {
		if kernel.OurReqID(t.ReqID) {
			return true
		}
	}
	return false
}

// policy converts an installed policy back to the interface's terms.
func (p *installedPolicy) policy() kernel.Policy {
	kp := kernel.Policy{
		Selector: selectorFromXFRM(p.Info.Sel),
		Priority: p.Info.Priority,
		Mark:     p.Mark,
		IfID:     p.IfID,
	}
	for d, x := range policyDir {
		if x == p.Info.Dir {
			kp.Dir = d
		}
	}
	switch {
	case p.Info.Action == policyBlock:
		kp.Action = kernel.Block
	case len(p.Tmpls) == 0:
		kp.Action = kernel.Bypass
	default:
		kp.Action = kernel.Protect
		t := p.Tmpls[0]
		kp.Template = kernel.Template{Proto: kernel.Proto(t.Proto), ReqID: t.ReqID, Mode: kernel.Transport}
		if t.Mode == modeTunnel {
			kp.Template.Mode = kernel.Tunnel
			kp.Template.Src, kp.Template.Dst = t.Saddr, t.Daddr
		}
	}
	return kp
}

// installedState is an SA as a dump or a get reports it.
type installedState struct {
	Info     usersaInfo
	Mark     *kernel.Mark
	Encap    *kernel.Encap
	LastUsed uint64
	ESN      *replayESN
	Legacy   []byte
}

func parseState(b []byte) (*installedState, error) {
	info, err := getUsersaInfo(b)
	if err != nil {
		return nil, err
	}
	s := &installedState{Info: info}
	attrs, err := parseAttrs(b[sizeofUsersaInfo:])
	if err != nil {
		return nil, err
	}
	for _, a := range attrs {
		switch a.typ {
		case attrMark:
			if len(a.data) >= sizeofMark {
				s.Mark = &kernel.Mark{Value: ne.Uint32(a.data), Mask: ne.Uint32(a.data[4:])}
			}
		case attrEncap:
			if _, sp, dp, ok := getEncap(a.data); ok {
				s.Encap = &kernel.Encap{SrcPort: sp, DstPort: dp}
			}
		case attrLastUsed:
			if len(a.data) >= 8 {
				s.LastUsed = ne.Uint64(a.data)
			}
		case attrReplayESNVal:
			if r, err := getReplayESN(a.data); err == nil {
				s.ESN = &r
			}
		case attrReplayVal:
			if len(a.data) >= sizeofReplayState {
				s.Legacy = append([]byte(nil), a.data[:sizeofReplayState]...)
			}
		}
	}
	return s, nil
}

func (s *installedState) id() kernel.SAID {
	return kernel.SAID{Dst: s.Info.Daddr, SPI: s.Info.SPI, Proto: kernel.Proto(s.Info.Proto)}
}

func (s *installedState) stats() kernel.SAStats {
	st := kernel.SAStats{Bytes: s.Info.Cur.Bytes, Packets: s.Info.Cur.Packets}
	if s.Info.Cur.AddTime != 0 {
		st.Added = time.Unix(int64(s.Info.Cur.AddTime), 0)
	}
	// curlft.use_time is the first use; XFRMA_LASTUSED the latest.
	switch {
	case s.LastUsed != 0:
		st.LastUsed = time.Unix(int64(s.LastUsed), 0)
	case s.Info.Cur.UseTime != 0:
		st.LastUsed = time.Unix(int64(s.Info.Cur.UseTime), 0)
	}
	return st
}
