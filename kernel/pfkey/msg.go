package pfkey

// PF_KEY v2 messages as typed Go values (RFC 2367 §2, with the KAME
// extensions).
//
// A message is a base header followed by extensions, every one a multiple
// of 8 bytes long, its length counted in 64-bit units:
//
//	 0        1        2        3        4                 6                 8
//	+--------+--------+--------+--------+--------+--------+--------+--------+
//	|version |  type  | errno  | satype |   len (u64s)    |    reserved     |
//	+--------+--------+--------+--------+--------+--------+--------+--------+
//	|                 seq               |                pid                |
//	+--------+--------+--------+--------+--------+--------+--------+--------+
//	|  ext len (u64s) |    ext type     |  ext body ...                     |
//	+--------+--------+--------+--------+  (padded to 8)                    |
//
// Encode writes the extensions in ascending order of their type, which is
// what setkey does and every kernel accepts; Decode takes them in any order,
// rejects a repeated one and keeps the ones it does not model in Unknown.
// Decode never panics, whatever the input.

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

const (
	baseLen    = 16 // sizeof(struct sadb_msg)
	maxMsgLen  = 0xffff * 8
	combLen    = 72 // sizeof(struct sadb_comb)
	algLen     = 8  // sizeof(struct sadb_alg)
	lifetimeSz = 32
)

// Message is one PF_KEY message.
type Message struct {
	Version uint8 // 0 means Version when encoding
	Type    MsgType
	Errno   uint8 // set by the kernel in a reply that failed
	SAType  SAType
	Seq     uint32
	PID     uint32

	SA              *SA
	LifetimeCurrent *Lifetime
	LifetimeHard    *Lifetime
	LifetimeSoft    *Lifetime
	Src, Dst, Proxy *Address
	AuthKey         *Key
	EncryptKey      *Key
	SrcIdentity     *Identity
	DstIdentity     *Identity
	Sensitivity     *Sensitivity
	Proposal        *Proposal
	SupportedAuth   *Supported
	SupportedEncr   *Supported
	SPIRange        *SPIRange
	KMPrivate       *KMPrivate
	Policy          *Policy
	SA2             *SA2
	NATTType        *NATTType
	NATTSPort       *NATTPort
	NATTDPort       *NATTPort
	NATTOAI         *Address // Linux: SADB_X_EXT_NAT_T_OA
	NATTOAR         *Address // BSD only
	NATTFrag        *NATTFrag
	SAReplay        *SAReplay // FreeBSD only
	NewSrc, NewDst  *Address  // FreeBSD only

	Unknown []RawExt
}

// SA is sadb_sa.
type SA struct {
	SPI     uint32 // in host order here; network order on the wire
	Replay  uint8  // window: packets on Linux, bytes of bitmap on BSD
	State   uint8
	Auth    uint8
	Encrypt uint8
	Flags   uint32
}

// Lifetime is sadb_lifetime: a limit (HARD, SOFT) or the counters
// (CURRENT). Allocations counts packets on Linux and FreeBSD.
type Lifetime struct {
	Allocations uint32
	Bytes       uint64
	AddTime     uint64 // seconds; CURRENT: when added (Unix time)
	UseTime     uint64 // seconds; CURRENT: first use (Unix time)
}

// Address is sadb_address with its sockaddr.
type Address struct {
	Proto     uint8 // upper-layer protocol; ULProtoAny for any
	PrefixLen uint8
	Addr      netip.Addr
	Port      uint16
}

// Key is sadb_key: Bits of key material.
type Key struct {
	Bits uint16
	Data []byte
}

// Identity is sadb_ident and the string that follows it.
type Identity struct {
	Type uint16
	ID   uint64
	Data []byte // as sent, padding included
}

// Sensitivity is sadb_sens and its two bitmaps.
type Sensitivity struct {
	DPD        uint32
	SensLevel  uint8
	IntegLevel uint8
	Sens       []uint64
	Integ      []uint64
}

// Proposal is sadb_prop and its combinations.
type Proposal struct {
	Replay uint8
	Combs  []Comb
}

// Comb is sadb_comb.
type Comb struct {
	Auth, Encrypt                  uint8
	Flags                          uint16
	AuthMinBits, AuthMaxBits       uint16
	EncryptMinBits, EncryptMaxBits uint16
	SoftAllocations                uint32
	HardAllocations                uint32
	SoftBytes, HardBytes           uint64
	SoftAddTime, HardAddTime       uint64
	SoftUseTime, HardUseTime       uint64
}

// Supported is sadb_supported and its algorithms.
type Supported struct {
	Algs []Alg
}

// Alg is sadb_alg.
type Alg struct {
	ID, IVLen        uint8
	MinBits, MaxBits uint16
}

// SPIRange is sadb_spirange.
type SPIRange struct {
	Min, Max uint32
}

// KMPrivate is sadb_x_kmprivate and what follows it.
type KMPrivate struct {
	Data []byte
}

// Policy is sadb_x_policy and, for PolicyIPsec, its requests.
type Policy struct {
	Type     uint16
	Dir      uint8
	Scope    uint8 // FreeBSD's sadb_x_policy_scope; reserved elsewhere
	ID       uint32
	Priority uint32 // reserved on NetBSD
	Requests []Request
}

// Request is sadb_x_ipsecrequest: one SA the policy's packets go through.
type Request struct {
	Proto uint16 // IPPROTO_ESP or IPPROTO_AH
	Mode  uint8
	Level uint8
	ReqID uint32 // 16 bits on the BSDs
	// Src and Dst are the tunnel end points; invalid for none (transport
	// mode).
	Src, Dst netip.Addr
}

// SA2 is sadb_x_sa2.
type SA2 struct {
	Mode     uint8
	Sequence uint32
	ReqID    uint32
}

// NATTType is sadb_x_nat_t_type.
type NATTType struct{ Type uint8 }

// NATTPort is sadb_x_nat_t_port.
type NATTPort struct{ Port uint16 }

// NATTFrag is sadb_x_nat_t_frag.
type NATTFrag struct{ FragLen uint16 }

// SAReplay is FreeBSD's sadb_x_sa_replay: a replay window in packets
// larger than sadb_sa_replay can say.
type SAReplay struct{ Replay uint32 }

// RawExt is an extension that Message does not model: its type and the
// bytes after the 4-byte extension header.
type RawExt struct {
	Type ExtType
	Data []byte
}

// --- encoding ---

type encoder struct {
	l   *Layout
	b   []byte
	err error
}

func (e *encoder) u8(v uint8)   { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16) { e.zero(2); e.l.order().PutUint16(e.b[len(e.b)-2:], v) }
func (e *encoder) u32(v uint32) { e.zero(4); e.l.order().PutUint32(e.b[len(e.b)-4:], v) }
func (e *encoder) u64(v uint64) { e.zero(8); e.l.order().PutUint64(e.b[len(e.b)-8:], v) }
func (e *encoder) zero(n int)   { e.b = append(e.b, make([]byte, n)...) }
func (e *encoder) pad8() {
	if r := len(e.b) % 8; r != 0 {
		e.zero(8 - r)
	}
}
func (e *encoder) fail(format string, args ...any) {
	if e.err == nil {
		e.err = fmt.Errorf(format, args...)
	}
}

// sockaddr appends a's sockaddr.
func (e *encoder) sockaddr(a netip.Addr, port uint16) {
	n := sockaddrLen(a)
	if n == 0 {
		e.fail("invalid address %v", a)
		return
	}
	start := len(e.b)
	e.zero(n)
	e.l.putSockaddr(e.b[start:], a, port)
}

type extWriter struct {
	t ExtType
	f func(*encoder)
}

// Encode returns m as l's kernel reads it.
func (m *Message) Encode(l *Layout) ([]byte, error) {
	var exts []extWriter
	add := func(t ExtType, f func(*encoder)) { exts = append(exts, extWriter{t, f}) }
	addOpt := func(name string, t ExtType, f func(*encoder)) error {
		if t == 0 {
			return fmt.Errorf("pfkey: %s has no %s extension", l.Name, name)
		}
		add(t, f)
		return nil
	}
	if m.SA != nil {
		sa := *m.SA
		add(ExtSA, func(e *encoder) {
			e.b = append(e.b, byte(sa.SPI>>24), byte(sa.SPI>>16), byte(sa.SPI>>8), byte(sa.SPI))
			e.u8(sa.Replay)
			e.u8(sa.State)
			e.u8(sa.Auth)
			e.u8(sa.Encrypt)
			e.u32(sa.Flags)
		})
	}
	for _, lt := range []struct {
		t ExtType
		v *Lifetime
	}{{ExtLifetimeCurrent, m.LifetimeCurrent}, {ExtLifetimeHard, m.LifetimeHard}, {ExtLifetimeSoft, m.LifetimeSoft}} {
		if lt.v != nil {
			v := *lt.v
			add(lt.t, func(e *encoder) {
				e.u32(v.Allocations)
				e.u64(v.Bytes)
				e.u64(v.AddTime)
				e.u64(v.UseTime)
			})
		}
	}
	addr := func(t ExtType, a *Address) {
		if a != nil {
			v := *a
			add(t, func(e *encoder) {
				e.u8(v.Proto)
				e.u8(v.PrefixLen)
				e.u16(0)
				e.sockaddr(v.Addr, v.Port)
			})
		}
	}
	addr(ExtAddressSrc, m.Src)
	addr(ExtAddressDst, m.Dst)
	addr(ExtAddressProxy, m.Proxy)
	key := func(t ExtType, k *Key) {
		if k != nil {
			v := *k
			add(t, func(e *encoder) {
				if int(v.Bits+7)/8 > len(v.Data) {
					e.fail("key of %d bits with %d bytes", v.Bits, len(v.Data))
				}
				e.u16(v.Bits)
				e.u16(0)
				e.b = append(e.b, v.Data[:min(len(v.Data), int(v.Bits+7)/8)]...)
			})
		}
	}
	key(ExtKeyAuth, m.AuthKey)
	key(ExtKeyEncrypt, m.EncryptKey)
	ident := func(t ExtType, id *Identity) {
		if id != nil {
			v := *id
			add(t, func(e *encoder) {
				e.u16(v.Type)
				e.u16(0)
				e.u64(v.ID)
				e.b = append(e.b, v.Data...)
			})
		}
	}
	ident(ExtIdentitySrc, m.SrcIdentity)
	ident(ExtIdentityDst, m.DstIdentity)
	if s := m.Sensitivity; s != nil {
		v := *s
		add(ExtSensitivity, func(e *encoder) {
			if len(v.Sens) > 255 || len(v.Integ) > 255 {
				e.fail("sensitivity bitmap too long")
			}
			e.u32(v.DPD)
			e.u8(v.SensLevel)
			e.u8(uint8(len(v.Sens)))
			e.u8(v.IntegLevel)
			e.u8(uint8(len(v.Integ)))
			e.u32(0)
			for _, x := range v.Sens {
				e.u64(x)
			}
			for _, x := range v.Integ {
				e.u64(x)
			}
		})
	}
	if p := m.Proposal; p != nil {
		v := *p
		add(ExtProposal, func(e *encoder) {
			e.u8(v.Replay)
			e.zero(3)
			for _, c := range v.Combs {
				e.u8(c.Auth)
				e.u8(c.Encrypt)
				e.u16(c.Flags)
				e.u16(c.AuthMinBits)
				e.u16(c.AuthMaxBits)
				e.u16(c.EncryptMinBits)
				e.u16(c.EncryptMaxBits)
				e.u32(0)
				e.u32(c.SoftAllocations)
				e.u32(c.HardAllocations)
				e.u64(c.SoftBytes)
				e.u64(c.HardBytes)
				e.u64(c.SoftAddTime)
				e.u64(c.HardAddTime)
				e.u64(c.SoftUseTime)
				e.u64(c.HardUseTime)
			}
		})
	}
	supp := func(t ExtType, s *Supported) {
		if s != nil {
			v := *s
			add(t, func(e *encoder) {
				e.u32(0)
				for _, a := range v.Algs {
					e.u8(a.ID)
					e.u8(a.IVLen)
					e.u16(a.MinBits)
					e.u16(a.MaxBits)
					e.u16(0)
				}
			})
		}
	}
	supp(ExtSupportedAuth, m.SupportedAuth)
	supp(ExtSupportedEncr, m.SupportedEncr)
	if r := m.SPIRange; r != nil {
		v := *r
		add(ExtSPIRange, func(e *encoder) {
			e.u32(v.Min)
			e.u32(v.Max)
			e.u32(0)
		})
	}
	if k := m.KMPrivate; k != nil {
		v := *k
		add(ExtKMPrivate, func(e *encoder) {
			e.u32(0)
			e.b = append(e.b, v.Data...)
		})
	}
	if p := m.Policy; p != nil {
		v := *p
		add(ExtPolicy, func(e *encoder) {
			e.u16(v.Type)
			e.u8(v.Dir)
			e.u8(v.Scope)
			e.u32(v.ID)
			e.u32(v.Priority)
			for _, r := range v.Requests {
				e.request(r)
			}
		})
	}
	if s := m.SA2; s != nil {
		v := *s
		add(ExtSA2, func(e *encoder) {
			e.u8(v.Mode)
			e.u8(0)
			e.u16(0)
			e.u32(v.Sequence)
			e.u32(v.ReqID)
		})
	}
	if t := m.NATTType; t != nil {
		v := *t
		add(ExtNATTType, func(e *encoder) {
			e.u8(v.Type)
			e.zero(3)
		})
	}
	port := func(t ExtType, p *NATTPort) {
		if p != nil {
			v := *p
			add(t, func(e *encoder) {
				e.b = append(e.b, byte(v.Port>>8), byte(v.Port))
				e.u16(0)
			})
		}
	}
	port(ExtNATTSPort, m.NATTSPort)
	port(ExtNATTDPort, m.NATTDPort)
	addr(ExtNATTOA, m.NATTOAI)
	var err error
	optAddr := func(name string, t ExtType, a *Address) {
		if a != nil && err == nil {
			v := *a
			err = addOpt(name, t, func(e *encoder) {
				e.u8(v.Proto)
				e.u8(v.PrefixLen)
				e.u16(0)
				e.sockaddr(v.Addr, v.Port)
			})
		}
	}
	optAddr("NAT_T_OAR", l.ExtNATTOAR, m.NATTOAR)
	optAddr("NEW_ADDRESS_SRC", l.ExtNewAddrSrc, m.NewSrc)
	optAddr("NEW_ADDRESS_DST", l.ExtNewAddrDst, m.NewDst)
	if f := m.NATTFrag; f != nil && err == nil {
		v := *f
		err = addOpt("NAT_T_FRAG", l.ExtNATTFrag, func(e *encoder) {
			e.u16(v.FragLen)
			e.u16(0)
		})
	}
	if r := m.SAReplay; r != nil && err == nil {
		v := *r
		err = addOpt("SA_REPLAY", l.ExtSAReplay, func(e *encoder) { e.u32(v.Replay) })
	}
	if err != nil {
		return nil, err
	}
	for _, u := range m.Unknown {
		v := u
		add(v.Type, func(e *encoder) { e.b = append(e.b, v.Data...) })
	}
	slices.SortStableFunc(exts, func(a, b extWriter) int { return cmp.Compare(a.t, b.t) })
	for i := 1; i < len(exts); i++ {
		if exts[i].t == exts[i-1].t {
			return nil, fmt.Errorf("pfkey: extension %d twice in one message", exts[i].t)
		}
	}

	e := &encoder{l: l, b: make([]byte, 0, 256)}
	ver := m.Version
	if ver == 0 {
		ver = Version
	}
	e.u8(ver)
	e.u8(uint8(m.Type))
	e.u8(m.Errno)
	e.u8(uint8(m.SAType))
	e.u16(0) // length, set below
	e.u16(0)
	e.u32(m.Seq)
	e.u32(m.PID)
	for _, x := range exts {
		start := len(e.b)
		e.u16(0)
		e.u16(uint16(x.t))
		x.f(e)
		e.pad8()
		n := (len(e.b) - start) / 8
		if n > 0xffff {
			e.fail("extension %d of %d bytes is too long", x.t, len(e.b)-start)
			break
		}
		l.order().PutUint16(e.b[start:], uint16(n))
	}
	if e.err != nil {
		return nil, fmt.Errorf("pfkey: encoding %v: %w", m.Type, e.err)
	}
	if len(e.b) > maxMsgLen {
		return nil, fmt.Errorf("pfkey: %v of %d bytes is too long", m.Type, len(e.b))
	}
	l.order().PutUint16(e.b[4:], uint16(len(e.b)/8))
	return e.b, nil
}

// request appends one sadb_x_ipsecrequest with its end points.
func (e *encoder) request(r Request) {
	start := len(e.b)
	e.u16(0) // length in bytes, set below
	e.u16(r.Proto)
	e.u8(r.Mode)
	e.u8(r.Level)
	if e.l.RequestHeaderLen == 16 {
		e.u16(0)
		e.u32(r.ReqID)
		e.u32(0)
	} else {
		if r.ReqID > 0xffff {
			e.fail("reqid %#x does not fit the 16 bits of a %s ipsecrequest", r.ReqID, e.l.Name)
		}
		e.u16(uint16(r.ReqID))
	}
	if r.Src.IsValid() || r.Dst.IsValid() {
		if r.Src.Is4() != r.Dst.Is4() {
			e.fail("ipsecrequest end points %v and %v of different families", r.Src, r.Dst)
		}
		e.sockaddr(r.Src, 0)
		e.sockaddr(r.Dst, 0)
	}
	e.pad8()
	n := len(e.b) - start
	if n > 0xffff {
		e.fail("ipsecrequest too long")
		return
	}
	e.l.order().PutUint16(e.b[start:], uint16(n))
}

// --- decoding ---

// ErrMalformed is wrapped by every error of Decode, which says what was
// wrong with the message.
var ErrMalformed = errors.New("malformed PF_KEY message")

type reader struct {
	l   *Layout
	b   []byte
	off int
}

func (r *reader) left() int { return len(r.b) - r.off }
func (r *reader) u8() uint8 {
	v := r.b[r.off]
	r.off++
	return v
}
func (r *reader) u16() uint16 {
	v := r.l.order().Uint16(r.b[r.off:])
	r.off += 2
	return v
}
func (r *reader) be16() uint16 {
	v := uint16(r.b[r.off])<<8 | uint16(r.b[r.off+1])
	r.off += 2
	return v
}
func (r *reader) u32() uint32 {
	v := r.l.order().Uint32(r.b[r.off:])
	r.off += 4
	return v
}
func (r *reader) u64() uint64 {
	v := r.l.order().Uint64(r.b[r.off:])
	r.off += 8
	return v
}
func (r *reader) skip(n int) { r.off += n }
func (r *reader) rest() []byte {
	v := slices.Clone(r.b[r.off:])
	r.off = len(r.b)
	return v
}

// extMin is the least length of each modelled extension, header included.
var extMin = map[ExtType]int{
	ExtSA: 16, ExtLifetimeCurrent: lifetimeSz, ExtLifetimeHard: lifetimeSz, ExtLifetimeSoft: lifetimeSz,
	ExtAddressSrc: 8, ExtAddressDst: 8, ExtAddressProxy: 8, ExtKeyAuth: 8, ExtKeyEncrypt: 8,
	ExtIdentitySrc: 16, ExtIdentityDst: 16, ExtSensitivity: 16, ExtProposal: 8,
	ExtSupportedAuth: 8, ExtSupportedEncr: 8, ExtSPIRange: 16, ExtKMPrivate: 8, ExtPolicy: 16,
	ExtSA2: 16, ExtNATTType: 8, ExtNATTSPort: 8, ExtNATTDPort: 8, ExtNATTOA: 8,
}

// Decode parses one message as l's kernel writes it.
func Decode(l *Layout, b []byte) (*Message, error) {
	m, err := decode(l, b)
	if err != nil {
		return nil, fmt.Errorf("pfkey: %w: %v", ErrMalformed, err)
	}
	return m, nil
}

func decode(l *Layout, b []byte) (*Message, error) {
	if len(b) < baseLen {
		return nil, fmt.Errorf("%d bytes, shorter than sadb_msg", len(b))
	}
	r := &reader{l: l, b: b}
	m := &Message{}
	m.Version = r.u8()
	m.Type = MsgType(r.u8())
	m.Errno = r.u8()
	m.SAType = SAType(r.u8())
	n := int(r.u16()) * 8
	r.skip(2)
	m.Seq = r.u32()
	m.PID = r.u32()
	if m.Version != Version {
		return nil, fmt.Errorf("version %d", m.Version)
	}
	if n != len(b) {
		return nil, fmt.Errorf("%v says %d bytes, got %d", m.Type, n, len(b))
	}
	seen := map[ExtType]bool{}
	for r.left() > 0 {
		if r.left() < 4 {
			return nil, fmt.Errorf("%d stray bytes at the end", r.left())
		}
		elen := int(l.order().Uint16(r.b[r.off:])) * 8
		t := ExtType(l.order().Uint16(r.b[r.off+2:]))
		if elen == 0 || elen > r.left() {
			return nil, fmt.Errorf("extension %d of %d bytes with %d left", t, elen, r.left())
		}
		if t == 0 {
			return nil, fmt.Errorf("extension of type 0")
		}
		if seen[t] {
			return nil, fmt.Errorf("extension %d twice", t)
		}
		seen[t] = true
		if min := extMin[t]; elen < min {
			return nil, fmt.Errorf("extension %d of %d bytes, shorter than %d", t, elen, min)
		}
		er := &reader{l: l, b: r.b[r.off+4 : r.off+elen]}
		r.skip(elen)
		if err := m.decodeExt(l, t, er); err != nil {
			return nil, fmt.Errorf("extension %d: %w", t, err)
		}
	}
	return m, nil
}

func (m *Message) decodeExt(l *Layout, t ExtType, r *reader) error {
	var err error
	switch t {
	case ExtSA:
		sa := &SA{}
		sa.SPI = uint32(r.be16())<<16 | uint32(r.be16())
		sa.Replay = r.u8()
		sa.State = r.u8()
		sa.Auth = r.u8()
		sa.Encrypt = r.u8()
		sa.Flags = r.u32()
		m.SA = sa
	case ExtLifetimeCurrent, ExtLifetimeHard, ExtLifetimeSoft:
		lt := &Lifetime{Allocations: r.u32(), Bytes: r.u64(), AddTime: r.u64(), UseTime: r.u64()}
		switch t {
		case ExtLifetimeCurrent:
			m.LifetimeCurrent = lt
		case ExtLifetimeHard:
			m.LifetimeHard = lt
		default:
			m.LifetimeSoft = lt
		}
	case ExtAddressSrc:
		m.Src, err = decodeAddress(l, r)
	case ExtAddressDst:
		m.Dst, err = decodeAddress(l, r)
	case ExtAddressProxy:
		m.Proxy, err = decodeAddress(l, r)
	case ExtNATTOA:
		m.NATTOAI, err = decodeAddress(l, r)
	case ExtKeyAuth, ExtKeyEncrypt:
		k := &Key{Bits: r.u16()}
		r.skip(2)
		nb := (int(k.Bits) + 7) / 8
		if nb > r.left() {
			return fmt.Errorf("key of %d bits in %d bytes", k.Bits, r.left())
		}
		k.Data = slices.Clone(r.b[r.off : r.off+nb])
		if t == ExtKeyAuth {
			m.AuthKey = k
		} else {
			m.EncryptKey = k
		}
	case ExtIdentitySrc, ExtIdentityDst:
		id := &Identity{Type: r.u16()}
		r.skip(2)
		id.ID = r.u64()
		id.Data = r.rest()
		if t == ExtIdentitySrc {
			m.SrcIdentity = id
		} else {
			m.DstIdentity = id
		}
	case ExtSensitivity:
		s := &Sensitivity{DPD: r.u32(), SensLevel: r.u8()}
		ns := int(r.u8())
		s.IntegLevel = r.u8()
		ni := int(r.u8())
		r.skip(4)
		if (ns+ni)*8 > r.left() {
			return fmt.Errorf("bitmaps of %d+%d words in %d bytes", ns, ni, r.left())
		}
		for range ns {
			s.Sens = append(s.Sens, r.u64())
		}
		for range ni {
			s.Integ = append(s.Integ, r.u64())
		}
		m.Sensitivity = s
	case ExtProposal:
		p := &Proposal{Replay: r.u8()}
		r.skip(3)
		for r.left() >= combLen {
			var c Comb
			c.Auth, c.Encrypt, c.Flags = r.u8(), r.u8(), r.u16()
			c.AuthMinBits, c.AuthMaxBits = r.u16(), r.u16()
			c.EncryptMinBits, c.EncryptMaxBits = r.u16(), r.u16()
			r.skip(4)
			c.SoftAllocations, c.HardAllocations = r.u32(), r.u32()
			c.SoftBytes, c.HardBytes = r.u64(), r.u64()
			c.SoftAddTime, c.HardAddTime = r.u64(), r.u64()
			c.SoftUseTime, c.HardUseTime = r.u64(), r.u64()
			p.Combs = append(p.Combs, c)
		}
		m.Proposal = p
	case ExtSupportedAuth, ExtSupportedEncr:
		s := &Supported{Algs: []Alg{}}
		r.skip(4)
		for r.left() >= algLen {
			a := Alg{ID: r.u8(), IVLen: r.u8(), MinBits: r.u16(), MaxBits: r.u16()}
			r.skip(2)
			s.Algs = append(s.Algs, a)
		}
		if t == ExtSupportedAuth {
			m.SupportedAuth = s
		} else {
			m.SupportedEncr = s
		}
	case ExtSPIRange:
		m.SPIRange = &SPIRange{Min: r.u32(), Max: r.u32()}
	case ExtKMPrivate:
		r.skip(4)
		m.KMPrivate = &KMPrivate{Data: r.rest()}
	case ExtPolicy:
		m.Policy, err = decodePolicy(l, r)
	case ExtSA2:
		s := &SA2{Mode: r.u8()}
		r.skip(3)
		s.Sequence = r.u32()
		s.ReqID = r.u32()
		m.SA2 = s
	case ExtNATTType:
		m.NATTType = &NATTType{Type: r.u8()}
	case ExtNATTSPort:
		m.NATTSPort = &NATTPort{Port: r.be16()}
	case ExtNATTDPort:
		m.NATTDPort = &NATTPort{Port: r.be16()}
	default:
		switch {
		case t == l.ExtNATTOAR:
			m.NATTOAR, err = decodeAddress(l, r)
		case t == l.ExtNewAddrSrc:
			m.NewSrc, err = decodeAddress(l, r)
		case t == l.ExtNewAddrDst:
			m.NewDst, err = decodeAddress(l, r)
		case t == l.ExtNATTFrag && r.left() >= 4:
			m.NATTFrag = &NATTFrag{FragLen: r.u16()}
		case t == l.ExtSAReplay && r.left() >= 4:
			m.SAReplay = &SAReplay{Replay: r.u32()}
		default:
			m.Unknown = append(m.Unknown, RawExt{Type: t, Data: r.rest()})
		}
	}
	return err
}

func decodeAddress(l *Layout, r *reader) (*Address, error) {
	if r.left() < 4 {
		return nil, fmt.Errorf("address extension too short")
	}
	a := &Address{Proto: r.u8(), PrefixLen: r.u8()}
	r.skip(2)
	addr, port, _, err := l.parseSockaddr(r.b[r.off:])
	if err != nil {
		return nil, err
	}
	if int(a.PrefixLen) > addr.BitLen() {
		return nil, fmt.Errorf("prefix length %d for %v", a.PrefixLen, addr)
	}
	a.Addr, a.Port = addr, port
	return a, nil
}

func decodePolicy(l *Layout, r *reader) (*Policy, error) {
	p := &Policy{Type: r.u16(), Dir: r.u8(), Scope: r.u8(), ID: r.u32(), Priority: r.u32()}
	hl := l.RequestHeaderLen
	for r.left() > 0 {
		if r.left() < hl {
			return nil, fmt.Errorf("%d bytes left for an ipsecrequest", r.left())
		}
		rlen := int(l.order().Uint16(r.b[r.off:]))
		if rlen < hl || rlen > r.left() {
			return nil, fmt.Errorf("ipsecrequest of %d bytes with %d left", rlen, r.left())
		}
		rr := &reader{l: l, b: r.b[r.off : r.off+rlen]}
		r.skip(rlen)
		rr.skip(2)
		q := Request{Proto: rr.u16(), Mode: rr.u8(), Level: rr.u8()}
		if hl == 16 {
			rr.skip(2)
			q.ReqID = rr.u32()
			rr.skip(4)
		} else {
			q.ReqID = uint32(rr.u16())
		}
		if rr.left() > 0 && q.Mode == ModeTunnel {
			src, _, n, err := l.parseSockaddr(rr.b[rr.off:])
			if err != nil {
				return nil, fmt.Errorf("ipsecrequest source: %w", err)
			}
			rr.skip(n)
			dst, _, _, err := l.parseSockaddr(rr.b[rr.off:])
			if err != nil {
				return nil, fmt.Errorf("ipsecrequest destination: %w", err)
			}
			if src.Is4() != dst.Is4() {
				return nil, fmt.Errorf("ipsecrequest end points %v and %v", src, dst)
			}
			q.Src, q.Dst = src, dst
		}
		p.Requests = append(p.Requests, q)
	}
	return p, nil
}
