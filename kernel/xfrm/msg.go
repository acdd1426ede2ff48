package xfrm

// The XFRM netlink structures, encoded and decoded by hand at fixed
// offsets. The layouts are those of the kernel's
// include/uapi/linux/xfrm.h on 64-bit Linux; numbers are in the host's byte
// order except where the kernel says __be (addresses, SPIs, ports). Every
// decoder checks the length first and never panics on short input.
//
// This file has no build tag: the tests of the encoding run everywhere.

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"goswan/kernel"
)

var ne = binary.NativeEndian

// Netlink message types of NETLINK_XFRM (XFRM_MSG_*).
const (
	msgNewSA       = 0x10
	msgDelSA       = 0x11
	msgGetSA       = 0x12
	msgNewPolicy   = 0x13
	msgDelPolicy   = 0x14
	msgGetPolicy   = 0x15
	msgAllocSPI    = 0x16
	msgAcquire     = 0x17
	msgExpire      = 0x18
	msgUpdPolicy   = 0x19
	msgUpdSA       = 0x1a
	msgPolExpire   = 0x1b
	msgFlushSA     = 0x1c
	msgFlushPolicy = 0x1d
)

// Attribute types (XFRMA_*).
const (
	attrAlgAuth      = 1
	attrAlgCrypt     = 2
	attrEncap        = 4
	attrTmpl         = 5
	attrLtimeVal     = 9
	attrReplayVal    = 10
	attrSrcAddr      = 13
	attrLastUsed     = 15
	attrPolicyType   = 16
	attrAlgAEAD      = 18
	attrAlgAuthTrunc = 20
	attrMark         = 21
	attrReplayESNVal = 23
	attrIfID         = 31
)

// Multicast groups (XFRMNLGRP_*), as bits for bind(2).
const (
	groupAcquire = 1
	groupExpire  = 2
)

// XFRM constants.
const (
	modeTransport = 0
	modeTunnel    = 1

	stateAFUnspec = 32  // XFRM_STATE_AF_UNSPEC: the selector's family follows the packet
	stateESN      = 128 // XFRM_STATE_ESN

	policyAllow = 0
	policyBlock = 1

	udpEncapESPInUDP = 2 // UDP_ENCAP_ESPINUDP (RFC 3948)

	afInet  = 2
	afInet6 = 10

	xfrmInf = ^uint64(0) // XFRM_INF: no limit

	// replayESNMaxBits is XFRMA_REPLAY_ESN_MAX: the kernel takes bitmaps
	// of up to 128 words.
	replayESNMaxBits = 4096
)

// Sizes of the structures.
const (
	sizeofSelector     = 56  // struct xfrm_selector
	sizeofID           = 24  // struct xfrm_id
	sizeofLifetimeCfg  = 64  // struct xfrm_lifetime_cfg
	sizeofLifetimeCur  = 32  // struct xfrm_lifetime_cur
	sizeofUsersaInfo   = 224 // struct xfrm_usersa_info
	sizeofUsersaID     = 24  // struct xfrm_usersa_id
	sizeofUserspiInfo  = 232 // struct xfrm_userspi_info
	sizeofPolicyInfo   = 168 // struct xfrm_userpolicy_info
	sizeofPolicyID     = 64  // struct xfrm_userpolicy_id
	sizeofUserTmpl     = 64  // struct xfrm_user_tmpl
	sizeofUserAcquire  = 280 // struct xfrm_user_acquire
	sizeofUserExpire   = 232 // struct xfrm_user_expire
	sizeofEncapTmpl    = 24  // struct xfrm_encap_tmpl
	sizeofMark         = 8   // struct xfrm_mark
	sizeofReplayState  = 12  // struct xfrm_replay_state
	sizeofReplayESN    = 24  // struct xfrm_replay_state_esn without its bitmap
	sizeofAlgoHeader   = 68  // struct xfrm_algo without its key
	sizeofAlgoAuthHdr  = 72  // struct xfrm_algo_auth / xfrm_algo_aead without the key
	algNameLen         = 64
	sizeofXfrmAddress  = 16
	offSelFamily       = 40
	offUsersaLft       = 96
	offUsersaCurlft    = 160
	offPolicyLft       = 56
	offPolicyCurlft    = 120
	offAcquireSelector = 40
	offAcquirePolicy   = 96
)

// family returns the AF_ number of an address, or 0 for an invalid one.
func family(a netip.Addr) uint16 {
	switch {
	case !a.IsValid():
		return 0
	case a.Unmap().Is4():
		return afInet
	}
	return afInet6
}

// putAddr writes a as an xfrm_address_t (16 bytes, an IPv4 address in the
// first 4).
func putAddr(b []byte, a netip.Addr) {
	clear(b[:sizeofXfrmAddress])
	if !a.IsValid() {
		return
	}
	a = a.Unmap()
	if a.Is4() {
		v := a.As4()
		copy(b, v[:])
		return
	}
	v := a.As16()
	copy(b, v[:])
}

// getAddr reads an xfrm_address_t of the given family.
func getAddr(b []byte, fam uint16) netip.Addr {
	switch fam {
	case afInet:
		return netip.AddrFrom4([4]byte(b[:4]))
	case afInet6:
		return netip.AddrFrom16([16]byte(b[:16]))
	}
	return netip.Addr{}
}

// xfrmSelector is struct xfrm_selector:
//
//	 0 daddr      xfrm_address_t
//	16 saddr      xfrm_address_t
//	32 dport      __be16   34 dport_mask __be16
//	36 sport      __be16   38 sport_mask __be16
//	40 family     u16      42 prefixlen_d u8   43 prefixlen_s u8
//	44 proto      u8       (3 bytes padding)
//	48 ifindex    int
//	52 user       uid_t
type xfrmSelector struct {
	Daddr, Saddr           netip.Addr
	Dport, DportMask       uint16
	Sport, SportMask       uint16
	Family                 uint16
	PrefixlenD, PrefixlenS uint8
	Proto                  uint8
	Ifindex                int32
	User                   uint32
}

func (s *xfrmSelector) put(b []byte) {
	clear(b[:sizeofSelector])
	putAddr(b[0:], s.Daddr)
	putAddr(b[16:], s.Saddr)
	binary.BigEndian.PutUint16(b[32:], s.Dport)
	binary.BigEndian.PutUint16(b[34:], s.DportMask)
	binary.BigEndian.PutUint16(b[36:], s.Sport)
	binary.BigEndian.PutUint16(b[38:], s.SportMask)
	ne.PutUint16(b[40:], s.Family)
	b[42] = s.PrefixlenD
	b[43] = s.PrefixlenS
	b[44] = s.Proto
	ne.PutUint32(b[48:], uint32(s.Ifindex))
	ne.PutUint32(b[52:], s.User)
}

func getSelector(b []byte) xfrmSelector {
	fam := ne.Uint16(b[40:])
	return xfrmSelector{
		Daddr:      getAddr(b[0:], fam),
		Saddr:      getAddr(b[16:], fam),
		Dport:      binary.BigEndian.Uint16(b[32:]),
		DportMask:  binary.BigEndian.Uint16(b[34:]),
		Sport:      binary.BigEndian.Uint16(b[36:]),
		SportMask:  binary.BigEndian.Uint16(b[38:]),
		Family:     fam,
		PrefixlenD: b[42],
		PrefixlenS: b[43],
		Proto:      b[44],
		Ifindex:    int32(ne.Uint32(b[48:])),
		User:       ne.Uint32(b[52:]),
	}
}

// portMask turns a port range into XFRM's port and mask. XFRM matches
// port&mask == port, so it can hold any port, one port, or an aligned
// block of 2^n ports.
func portMask(r kernel.PortRange) (port, mask uint16, err error) {
	if r == (kernel.PortRange{}) || r == (kernel.PortRange{Lo: 0, Hi: 65535}) {
		return 0, 0, nil
	}
	if r.Lo > r.Hi {
		return 0, 0, fmt.Errorf("port range %d-%d is empty", r.Lo, r.Hi)
	}
	span := uint32(r.Hi) - uint32(r.Lo) + 1
	if span&(span-1) != 0 || uint32(r.Lo)&(span-1) != 0 {
		return 0, 0, fmt.Errorf("port range %d-%d cannot be an XFRM selector: XFRM holds one port or an aligned block of 2^n ports", r.Lo, r.Hi)
	}
	return r.Lo, uint16(^(span - 1)), nil
}

// portRange is portMask's inverse; mask 0 gives the zero PortRange (any).
func portRange(port, mask uint16) kernel.PortRange {
	if mask == 0 {
		return kernel.PortRange{}
	}
	return kernel.PortRange{Lo: port & mask, Hi: port | ^mask}
}

func isICMP(proto uint8) bool { return proto == 1 || proto == 58 }

// selectorToXFRM encodes a traffic selector. Either prefix may be left
// invalid (the zero netip.Prefix), meaning any address of the other's
// family. For ICMP and ICMPv6 the selector's SrcPorts carry type<<8|code
// (as in IKEv2 traffic selectors, RFC 7296 §3.13.1) and XFRM wants the
// type in sport and the code in dport, as Libreswan does.
func selectorToXFRM(s kernel.Selector) (xfrmSelector, error) {
	var x xfrmSelector
	src, dst := s.Src, s.Dst
	switch {
	case !src.IsValid() && !dst.IsValid():
		return x, fmt.Errorf("selector %v: no address family", s)
	case !src.IsValid():
		src = netip.PrefixFrom(anyAddr(dst.Addr()), 0)
	case !dst.IsValid():
		dst = netip.PrefixFrom(anyAddr(src.Addr()), 0)
	}
	src, dst = unmapPrefix(src), unmapPrefix(dst)
	if family(src.Addr()) != family(dst.Addr()) {
		return x, fmt.Errorf("selector %v -> %v: mixes IPv4 and IPv6", src, dst)
	}
	x.Family = family(dst.Addr())
	x.Saddr, x.PrefixlenS = src.Masked().Addr(), uint8(src.Bits())
	x.Daddr, x.PrefixlenD = dst.Masked().Addr(), uint8(dst.Bits())
	x.Proto = s.Proto
	if s.Proto == 0 {
		return x, nil
	}
	if isICMP(s.Proto) {
		r := s.SrcPorts
		if r == (kernel.PortRange{}) || r == (kernel.PortRange{Lo: 0, Hi: 65535}) {
			return x, nil
		}
		typeLo, typeHi := r.Lo>>8, r.Hi>>8
		switch {
		case typeLo == typeHi: // one type: one code or all of them
			x.Sport, x.SportMask = typeLo, 0xffff
			codes := kernel.PortRange{Lo: r.Lo & 0xff, Hi: r.Hi & 0xff}
			if codes != (kernel.PortRange{Lo: 0, Hi: 255}) {
				if codes.Lo != codes.Hi {
					return x, fmt.Errorf("ICMP selector %#04x-%#04x: XFRM holds one code or all codes of a type", r.Lo, r.Hi)
				}
				x.Dport, x.DportMask = codes.Lo, 0xffff
			}
		case r.Lo&0xff == 0 && r.Hi&0xff == 0xff: // whole types
			p, m, err := portMask(kernel.PortRange{Lo: typeLo, Hi: typeHi})
			if err != nil {
				return x, fmt.Errorf("ICMP types %d-%d: %v", typeLo, typeHi, err)
			}
			x.Sport, x.SportMask = p, m|0xff00
		default:
			return x, fmt.Errorf("ICMP selector %#04x-%#04x cannot be an XFRM selector", r.Lo, r.Hi)
		}
		return x, nil
	}
	var err error
	if x.Sport, x.SportMask, err = portMask(s.SrcPorts); err != nil {
		return x, fmt.Errorf("source ports: %v", err)
	}
	if x.Dport, x.DportMask, err = portMask(s.DstPorts); err != nil {
		return x, fmt.Errorf("destination ports: %v", err)
	}
	return x, nil
}

// selectorFromXFRM decodes what selectorToXFRM encodes (and what the
// kernel reports, for example the exact flow of an ACQUIRE).
func selectorFromXFRM(x xfrmSelector) kernel.Selector {
	var s kernel.Selector
	if x.Family != afInet && x.Family != afInet6 {
		return s
	}
	s.Src = netip.PrefixFrom(x.Saddr, int(x.PrefixlenS))
	s.Dst = netip.PrefixFrom(x.Daddr, int(x.PrefixlenD))
	s.Proto = x.Proto
	if x.Proto == 0 {
		return s
	}
	if isICMP(x.Proto) {
		if x.SportMask == 0 {
			return s
		}
		t := portRange(x.Sport, x.SportMask)
		switch {
		case x.SportMask == 0xffff && x.DportMask == 0xffff:
			v := x.Sport<<8 | x.Dport&0xff
			s.SrcPorts = kernel.PortRange{Lo: v, Hi: v}
		default:
			s.SrcPorts = kernel.PortRange{Lo: t.Lo << 8, Hi: t.Hi<<8 | 0xff}
		}
		return s
	}
	s.SrcPorts = portRange(x.Sport, x.SportMask)
	s.DstPorts = portRange(x.Dport, x.DportMask)
	return s
}

func anyAddr(like netip.Addr) netip.Addr {
	if like.Unmap().Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() {
		bits := p.Bits() - 96
		if bits < 0 {
			bits = 0
		}
		return netip.PrefixFrom(p.Addr().Unmap(), bits)
	}
	return p
}

// lifetimeCfg is struct xfrm_lifetime_cfg; zero limits are sent as
// XFRM_INF, zero times as 0 (the kernel's "none").
type lifetimeCfg struct {
	SoftBytes, HardBytes     uint64
	SoftPackets, HardPackets uint64
	SoftAddSec, HardAddSec   uint64
	SoftUseSec, HardUseSec   uint64
}

func (l *lifetimeCfg) put(b []byte) {
	for i, v := range []uint64{l.SoftBytes, l.HardBytes, l.SoftPackets, l.HardPackets,
		l.SoftAddSec, l.HardAddSec, l.SoftUseSec, l.HardUseSec} {
		ne.PutUint64(b[8*i:], v)
	}
}

func getLifetimeCfg(b []byte) lifetimeCfg {
	return lifetimeCfg{
		ne.Uint64(b[0:]), ne.Uint64(b[8:]), ne.Uint64(b[16:]), ne.Uint64(b[24:]),
		ne.Uint64(b[32:]), ne.Uint64(b[40:]), ne.Uint64(b[48:]), ne.Uint64(b[56:]),
	}
}

func infLifetime() lifetimeCfg {
	return lifetimeCfg{SoftBytes: xfrmInf, HardBytes: xfrmInf, SoftPackets: xfrmInf, HardPackets: xfrmInf}
}

func limitOrInf(v uint64) uint64 {
	if v == 0 {
		return xfrmInf
	}
	return v
}

// lifetimeCur is struct xfrm_lifetime_cur: counters and times in seconds
// since the epoch.
type lifetimeCur struct {
	Bytes, Packets, AddTime, UseTime uint64
}

func getLifetimeCur(b []byte) lifetimeCur {
	return lifetimeCur{ne.Uint64(b[0:]), ne.Uint64(b[8:]), ne.Uint64(b[16:]), ne.Uint64(b[24:])}
}

func (c *lifetimeCur) put(b []byte) {
	ne.PutUint64(b[0:], c.Bytes)
	ne.PutUint64(b[8:], c.Packets)
	ne.PutUint64(b[16:], c.AddTime)
	ne.PutUint64(b[24:], c.UseTime)
}

// usersaInfo is struct xfrm_usersa_info:
//
//	  0 sel           struct xfrm_selector (56)
//	 56 id            struct xfrm_id: daddr(16) spi(__be32) proto(u8) (24)
//	 80 saddr         xfrm_address_t
//	 96 lft           struct xfrm_lifetime_cfg (64)
//	160 curlft        struct xfrm_lifetime_cur (32)
//	192 stats         struct xfrm_stats: replay_window replay integrity_failed (12)
//	204 seq  u32      208 reqid u32
//	212 family u16    214 mode u8   215 replay_window u8   216 flags u8
//	(size 224)
type usersaInfo struct {
	Sel          xfrmSelector
	Daddr        netip.Addr
	SPI          uint32
	Proto        uint8
	Saddr        netip.Addr
	Lft          lifetimeCfg
	Cur          lifetimeCur
	Seq, ReqID   uint32
	Family       uint16
	Mode         uint8
	ReplayWindow uint8
	Flags        uint8
}

func (u *usersaInfo) put(b []byte) {
	clear(b[:sizeofUsersaInfo])
	u.Sel.put(b[0:])
	putAddr(b[56:], u.Daddr)
	binary.BigEndian.PutUint32(b[72:], u.SPI)
	b[76] = u.Proto
	putAddr(b[80:], u.Saddr)
	u.Lft.put(b[offUsersaLft:])
	u.Cur.put(b[offUsersaCurlft:])
	ne.PutUint32(b[204:], u.Seq)
	ne.PutUint32(b[208:], u.ReqID)
	ne.PutUint16(b[212:], u.Family)
	b[214] = u.Mode
	b[215] = u.ReplayWindow
	b[216] = u.Flags
}

func getUsersaInfo(b []byte) (usersaInfo, error) {
	if len(b) < sizeofUsersaInfo {
		return usersaInfo{}, fmt.Errorf("xfrm_usersa_info: %d bytes, want %d", len(b), sizeofUsersaInfo)
	}
	fam := ne.Uint16(b[212:])
	return usersaInfo{
		Sel:          getSelector(b[0:]),
		Daddr:        getAddr(b[56:], fam),
		SPI:          binary.BigEndian.Uint32(b[72:]),
		Proto:        b[76],
		Saddr:        getAddr(b[80:], fam),
		Lft:          getLifetimeCfg(b[offUsersaLft:]),
		Cur:          getLifetimeCur(b[offUsersaCurlft:]),
		Seq:          ne.Uint32(b[204:]),
		ReqID:        ne.Uint32(b[208:]),
		Family:       fam,
		Mode:         b[214],
		ReplayWindow: b[215],
		Flags:        b[216],
	}, nil
}

// usersaID is struct xfrm_usersa_id: daddr(16) spi(__be32) family(u16)
// proto(u8), 24 bytes.
func putUsersaID(b []byte, dst netip.Addr, spi uint32, proto uint8) {
	clear(b[:sizeofUsersaID])
	putAddr(b[0:], dst)
	binary.BigEndian.PutUint32(b[16:], spi)
	ne.PutUint16(b[20:], family(dst))
	b[22] = proto
}

// policyInfo is struct xfrm_userpolicy_info:
//
//	  0 sel       struct xfrm_selector (56)
//	 56 lft       struct xfrm_lifetime_cfg (64)
//	120 curlft    struct xfrm_lifetime_cur (32)
//	152 priority u32  156 index u32
//	160 dir u8  161 action u8  162 flags u8  163 share u8
//	(size 168)
type policyInfo struct {
	Sel      xfrmSelector
	Lft      lifetimeCfg
	Cur      lifetimeCur
	Priority uint32
	Index    uint32
	Dir      uint8
	Action   uint8
	Flags    uint8
	Share    uint8
}

func (p *policyInfo) put(b []byte) {
	clear(b[:sizeofPolicyInfo])
	p.Sel.put(b[0:])
	p.Lft.put(b[offPolicyLft:])
	p.Cur.put(b[offPolicyCurlft:])
	ne.PutUint32(b[152:], p.Priority)
	ne.PutUint32(b[156:], p.Index)
	b[160] = p.Dir
	b[161] = p.Action
	b[162] = p.Flags
	b[163] = p.Share
}

func getPolicyInfo(b []byte) (policyInfo, error) {
	if len(b) < sizeofPolicyInfo {
		return policyInfo{}, fmt.Errorf("xfrm_userpolicy_info: %d bytes, want %d", len(b), sizeofPolicyInfo)
	}
	return policyInfo{
		Sel:      getSelector(b[0:]),
		Lft:      getLifetimeCfg(b[offPolicyLft:]),
		Cur:      getLifetimeCur(b[offPolicyCurlft:]),
		Priority: ne.Uint32(b[152:]),
		Index:    ne.Uint32(b[156:]),
		Dir:      b[160],
		Action:   b[161],
		Flags:    b[162],
		Share:    b[163],
	}, nil
}

// putPolicyID writes struct xfrm_userpolicy_id: sel(56) index(u32) dir(u8).
func putPolicyID(b []byte, sel xfrmSelector, index uint32, dir uint8) {
	clear(b[:sizeofPolicyID])
	sel.put(b[0:])
	ne.PutUint32(b[56:], index)
	b[60] = dir
}

// userTmpl is struct xfrm_user_tmpl:
//
//	 0 id      struct xfrm_id: daddr(16) spi(__be32) proto(u8) (24)
//	24 family  u16   (2 bytes padding)
//	28 saddr   xfrm_address_t
//	44 reqid   u32
//	48 mode u8  49 share u8  50 optional u8  (1 byte padding)
//	52 aalgos u32  56 ealgos u32  60 calgos u32
//	(size 64)
type userTmpl struct {
	Daddr                  netip.Addr
	SPI                    uint32
	Proto                  uint8
	Family                 uint16
	Saddr                  netip.Addr
	ReqID                  uint32
	Mode, Share, Optional  uint8
	AAlgos, EAlgos, CAlgos uint32
}

func (t *userTmpl) put(b []byte) {
	clear(b[:sizeofUserTmpl])
	putAddr(b[0:], t.Daddr)
	binary.BigEndian.PutUint32(b[16:], t.SPI)
	b[20] = t.Proto
	ne.PutUint16(b[24:], t.Family)
	putAddr(b[28:], t.Saddr)
	ne.PutUint32(b[44:], t.ReqID)
	b[48] = t.Mode
	b[49] = t.Share
	b[50] = t.Optional
	ne.PutUint32(b[52:], t.AAlgos)
	ne.PutUint32(b[56:], t.EAlgos)
	ne.PutUint32(b[60:], t.CAlgos)
}

func getUserTmpl(b []byte) userTmpl {
	fam := ne.Uint16(b[24:])
	return userTmpl{
		Daddr:    getAddr(b[0:], fam),
		SPI:      binary.BigEndian.Uint32(b[16:]),
		Proto:    b[20],
		Family:   fam,
		Saddr:    getAddr(b[28:], fam),
		ReqID:    ne.Uint32(b[44:]),
		Mode:     b[48],
		Share:    b[49],
		Optional: b[50],
		AAlgos:   ne.Uint32(b[52:]),
		EAlgos:   ne.Uint32(b[56:]),
		CAlgos:   ne.Uint32(b[60:]),
	}
}

// getTmpls reads the XFRMA_TMPL attribute: an array of xfrm_user_tmpl.
func getTmpls(b []byte) []userTmpl {
	var ts []userTmpl
	for len(b) >= sizeofUserTmpl {
		ts = append(ts, getUserTmpl(b))
		b = b[sizeofUserTmpl:]
	}
	return ts
}

// encapTmpl is struct xfrm_encap_tmpl: type(u16) sport(__be16)
// dport(__be16) (2 bytes padding) oa(xfrm_address_t), 24 bytes.
func encapAttr(typ, sport, dport uint16) []byte {
	b := make([]byte, sizeofEncapTmpl)
	ne.PutUint16(b[0:], typ)
	binary.BigEndian.PutUint16(b[2:], sport)
	binary.BigEndian.PutUint16(b[4:], dport)
	return b
}

func getEncap(b []byte) (typ, sport, dport uint16, ok bool) {
	if len(b) < 6 {
		return 0, 0, 0, false
	}
	return ne.Uint16(b[0:]), binary.BigEndian.Uint16(b[2:]), binary.BigEndian.Uint16(b[4:]), true
}

func markAttr(m kernel.Mark) []byte {
	b := make([]byte, sizeofMark)
	ne.PutUint32(b[0:], m.Value)
	ne.PutUint32(b[4:], m.Mask)
	return b
}

func u32Attr(v uint32) []byte {
	b := make([]byte, 4)
	ne.PutUint32(b, v)
	return b
}

// replayESN is struct xfrm_replay_state_esn:
//
//	 0 bmp_len        u32 (words in bmp)
//	 4 oseq           u32
//	 8 seq            u32
//	12 oseq_hi        u32
//	16 seq_hi         u32
//	20 replay_window  u32 (bits)
//	24 bmp[bmp_len]   u32
type replayESN struct {
	OSeq, Seq, OSeqHi, SeqHi uint32
	Window                   uint32
	Bitmap                   []uint32 // len is bmp_len
}

// newReplayESN returns the state of a fresh SA with a window of bits.
func newReplayESN(window uint32) replayESN {
	return replayESN{Window: window, Bitmap: make([]uint32, (window+31)/32)}
}

// bytes encodes r with its whole bitmap: the kernel wants the attribute
// at least as long as bmp_len says (xfrm_replay_state_esn_len).
func (r *replayESN) bytes() []byte {
	b := make([]byte, sizeofReplayESN+4*len(r.Bitmap))
	ne.PutUint32(b[0:], uint32(len(r.Bitmap)))
	ne.PutUint32(b[4:], r.OSeq)
	ne.PutUint32(b[8:], r.Seq)
	ne.PutUint32(b[12:], r.OSeqHi)
	ne.PutUint32(b[16:], r.SeqHi)
	ne.PutUint32(b[20:], r.Window)
	for i, w := range r.Bitmap {
		ne.PutUint32(b[sizeofReplayESN+4*i:], w)
	}
	return b
}

func getReplayESN(b []byte) (replayESN, error) {
	if len(b) < sizeofReplayESN {
		return replayESN{}, fmt.Errorf("xfrm_replay_state_esn: %d bytes", len(b))
	}
	n := ne.Uint32(b[0:])
	if n > replayESNMaxBits/32 || len(b) < sizeofReplayESN+4*int(n) {
		return replayESN{}, fmt.Errorf("xfrm_replay_state_esn: bmp_len %d in %d bytes", n, len(b))
	}
	r := replayESN{
		OSeq: ne.Uint32(b[4:]), Seq: ne.Uint32(b[8:]),
		OSeqHi: ne.Uint32(b[12:]), SeqHi: ne.Uint32(b[16:]),
		Window: ne.Uint32(b[20:]),
		Bitmap: make([]uint32, n),
	}
	for i := range r.Bitmap {
		r.Bitmap[i] = ne.Uint32(b[sizeofReplayESN+4*i:])
	}
	return r, nil
}

// algoAttr encodes struct xfrm_algo: name[64], key_len (bits), key.
func algoAttr(name string, key []byte) []byte {
	b := make([]byte, sizeofAlgoHeader+len(key))
	copy(b[:algNameLen-1], name)
	ne.PutUint32(b[64:], uint32(len(key)*8))
	copy(b[sizeofAlgoHeader:], key)
	return b
}

// algoAuthAttr encodes struct xfrm_algo_auth (trunc_len) or struct
// xfrm_algo_aead (icv_len): name[64], key_len (bits), a length in bits,
// key.
func algoAuthAttr(name string, key []byte, bits uint32) []byte {
	b := make([]byte, sizeofAlgoAuthHdr+len(key))
	copy(b[:algNameLen-1], name)
	ne.PutUint32(b[64:], uint32(len(key)*8))
	ne.PutUint32(b[68:], bits)
	copy(b[sizeofAlgoAuthHdr:], key)
	return b
}

// algName reads the NUL-terminated name of an xfrm_algo*.
func algName(b []byte) string {
	if len(b) > algNameLen {
		b = b[:algNameLen]
	}
	return cString(b)
}

// cString reads a string that ends at its first NUL or at the end of b.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// acquire is a parsed XFRM_MSG_ACQUIRE: struct xfrm_user_acquire
//
//	  0 id      struct xfrm_id (24): the SA wanted, daddr and proto
//	 24 saddr   xfrm_address_t
//	 40 sel     struct xfrm_selector (56): the packet's flow, /32 or /128
//	 96 policy  struct xfrm_userpolicy_info (168): the policy that trapped it
//	264 aalgos u32  268 ealgos u32  272 calgos u32  276 seq u32
//	(size 280)
//
// followed by attributes, among them XFRMA_TMPL with the policy's
// templates (their reqids), XFRMA_MARK and XFRMA_IF_ID.
type acquire struct {
	Daddr, Saddr netip.Addr
	Proto        uint8
	Sel          xfrmSelector
	Policy       policyInfo
	Seq          uint32
	Tmpls        []userTmpl
	Mark         *kernel.Mark
	IfID         uint32
}

func parseAcquire(b []byte) (*acquire, error) {
	if len(b) < sizeofUserAcquire {
		return nil, fmt.Errorf("XFRM_MSG_ACQUIRE: %d bytes, want at least %d", len(b), sizeofUserAcquire)
	}
	sel := getSelector(b[offAcquireSelector:])
	pol, _ := getPolicyInfo(b[offAcquirePolicy:])
	fam := sel.Family
	if fam == 0 {
		fam = pol.Sel.Family
	}
	a := &acquire{
		Daddr:  getAddr(b[0:], fam),
		Proto:  b[20],
		Saddr:  getAddr(b[24:], fam),
		Sel:    sel,
		Policy: pol,
		Seq:    ne.Uint32(b[276:]),
	}
	attrs, err := parseAttrs(b[sizeofUserAcquire:])
	if err != nil {
		return nil, fmt.Errorf("XFRM_MSG_ACQUIRE: %v", err)
	}
	for _, at := range attrs {
		switch at.typ {
		case attrTmpl:
			a.Tmpls = getTmpls(at.data)
		case attrMark:
			if len(at.data) >= sizeofMark {
				a.Mark = &kernel.Mark{Value: ne.Uint32(at.data), Mask: ne.Uint32(at.data[4:])}
			}
		case attrIfID:
			if len(at.data) >= 4 {
				a.IfID = ne.Uint32(at.data)
			}
		}
	}
	return a, nil
}

// reqID is the reqid of the policy's first template that has one.
func (a *acquire) reqID() uint32 {
	for _, t := range a.Tmpls {
		if t.ReqID != 0 {
			return t.ReqID
		}
	}
	return 0
}

// expire is a parsed XFRM_MSG_EXPIRE: struct xfrm_user_expire, the
// state's xfrm_usersa_info (224) then hard (u8).
type expire struct {
	State usersaInfo
	Hard  bool
}

func parseExpire(b []byte) (*expire, error) {
	if len(b) < sizeofUserExpire {
		return nil, fmt.Errorf("XFRM_MSG_EXPIRE: %d bytes, want at least %d", len(b), sizeofUserExpire)
	}
	st, err := getUsersaInfo(b)
	if err != nil {
		return nil, err
	}
	return &expire{State: st, Hard: b[224] != 0}, nil
}

// attr is one netlink attribute (struct rtattr / nlattr).
type attr struct {
	typ  uint16
	data []byte
}

func align4(n int) int { return (n + 3) &^ 3 }

// parseAttrs splits a run of attributes; it fails on a malformed length.
func parseAttrs(b []byte) ([]attr, error) {
	var as []attr
	for len(b) >= 4 {
		l := int(ne.Uint16(b[0:]))
		t := ne.Uint16(b[2:]) & 0x3fff // drop NLA_F_NESTED and NLA_F_NET_BYTEORDER
		if l < 4 || l > len(b) {
			return as, fmt.Errorf("attribute type %d: length %d in %d bytes", t, l, len(b))
		}
		as = append(as, attr{typ: t, data: b[4:l]})
		if align4(l) >= len(b) {
			break
		}
		b = b[align4(l):]
	}
	return as, nil
}

// appendAttr appends one attribute with its padding.
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	l := 4 + len(data)
	var h [4]byte
	ne.PutUint16(h[0:], uint16(l))
	ne.PutUint16(h[2:], typ)
	b = append(b, h[:]...)
	b = append(b, data...)
	for i := l; i < align4(l); i++ {
		b = append(b, 0)
	}
	return b
}
