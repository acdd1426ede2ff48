// Package esp is the ESP packet engine (RFC 4303) of the user-space data
// plane: SA state, seal and open, anti-replay with ESN, the SADB and SPD,
// and the UDP encapsulation framing of RFC 3948. It owns no sockets and no
// devices; the back end (TUN or netstack on one side, the NAT-T UDP socket
// or a raw ESP socket on the other) feeds it.
//
// # Flow
//
// Outbound: the back end reads an inner packet, asks SPD.Lookup which SA
// protects it, and calls (*SA).Seal, which appends the ESP packet to a
// buffer the caller owns:
//
//	tunnel mode:    dst + [SPI|seq|IV|E(inner|pad|padlen|nh)|ICV]
//	transport mode: dst + [IP header'|(UDP)|SPI|seq|IV|E(payload|pad|padlen|nh)|ICV]
//
// In tunnel mode the result is only the ESP bytes: exactly the payload of a
// NAT-T UDP datagram (RFC 3948) or of a raw IP-protocol-50 socket, so both
// need nothing more. When the caller needs a whole IP packet, it reserves
// OuterHeaderLen bytes in front (Seal(buf[:n], inner)) and fills them with
// PutOuterHeader. In transport mode the packet keeps its own IP header:
// Seal rewrites the protocol (50, or 17 with the UDP header of RFC 3948 when
// the SA is UDP-encapsulated), the length and the IPv4 checksum.
//
// For zero copies the caller reads the inner packet straight to
// buf[len(dst)+HeaderLen(mode):] and passes that slice; Seal sees it is
// already in place. Seal also uses up to ScratchLen bytes of dst's capacity
// beyond the result as scratch: with cap(dst) >= len(dst)+Overhead+len(pkt)
// (plus ScratchLen) nothing is allocated.
//
// Inbound: the back end classifies a UDP datagram (ClassifyUDP) or takes
// the payload of an IP-protocol-50 packet, finds the SA by SPI in the SADB
// and calls (*SA).Open (SADB.Open does both), which checks in this order:
// SPI, length, replay (read-only pre-check), ICV, replay window update,
// padding and next header, and the inner packet against the SA's traffic
// selectors. Open appends the inner packet to dst (which must not overlap
// the input). Transport-mode SAs take the whole IP packet and give it back
// with its original protocol.
//
// # Concurrency
//
// Seal and Open may run on any number of goroutines at once on the same SA.
// The send sequence number is one atomic counter (numbers are assigned in
// call order, so a caller that wants them on the wire in order keeps the
// order per SA, as wireguard-go does); the crypto state is read-only after
// NewSA (cipher.AEAD is safe for concurrent use; CBC/HMAC state comes from a
// per-SA sync.Pool); the replay window is lock-free for the pre-check and
// takes a short mutex for the update after the ICV verified; counters are
// atomics; lifetime events fire once, guarded by CompareAndSwap.
package esp

import (
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"sync/atomic"
	"time"
	"unsafe"

	"goswan/proposal"
)

// Mode is the IPsec mode of an SA.
type Mode uint8

const (
	Tunnel Mode = iota
	Transport
)

func (m Mode) String() string {
	if m == Transport {
		return "transport"
	}
	return "tunnel"
}

// Limits is one set of lifetime limits; zero means no limit.
type Limits struct {
	Bytes   uint64
	Packets uint64
	Time    time.Duration
}

// Lifetime holds the soft and hard limits of an SA (RFC 4301 §4.4.2.1).
// Crossing a soft limit raises SoftExpire once; crossing a hard limit
// raises HardExpire once and the SA then refuses every packet.
type Lifetime struct {
	Soft, Hard Limits
}

// UDPEncap holds the outer UDP ports of a NAT-T SA (RFC 3948).
type UDPEncap struct {
	LocalPort, RemotePort uint16
}

// SAConfig is what the IKE code hands over for one Child SA, in one
// direction.
type SAConfig struct {
	SPI  uint32
	Mode Mode

	// Encr and EncrKey: for AEAD transforms EncrKey is the KEYMAT slice as
	// IKEv2 gives it, the key followed by the 4-octet salt (RFC 4106 §8.1,
	// RFC 7634 §2). For AES-CBC it is the key alone; proposal.EncrNull has none.
	Encr    proposal.EncrID
	EncrKey []byte
	// Integ and IntegKey: proposal.IntegNone for AEAD transforms.
	Integ    proposal.IntegID
	IntegKey []byte
	// AllowNullEncryption must be set for proposal.EncrNull to be accepted.
	AllowNullEncryption bool

	ESN          bool   // 64-bit extended sequence numbers (esn=yes)
	ReplayWindow uint32 // replay-window=; 0 turns anti-replay checking off

	// Local and Remote are the outer addresses (tunnel end points; in
	// transport mode, the hosts). Encap, when not nil, makes the SA
	// UDP-encapsulated.
	Local, Remote netip.Addr
	Encap         *UDPEncap

	// Selectors are the packets the SA carries, as they appear on the wire
	// in the SA's direction: for an inbound SA Src is the peer's side.
	// Open drops inner packets that match none (RFC 4301 §5.2). Empty: no
	// check.
	Selectors []Selector

	Lifetime Lifetime
	// OnEvent is called, on the packet path or in CheckLifetime, once per
	// soft and once per hard expiry. It must not block.
	OnEvent func(Event)
	// Clock is the coarse clock for last-use times and time lifetimes;
	// nil means SystemClock().
	Clock *Clock
	// Rand seeds the CBC IV key; nil means crypto/rand.
	Rand io.Reader
}

// EventKind says what an Event reports.
type EventKind uint8

const (
	SoftExpire EventKind = iota + 1
	HardExpire
)

func (k EventKind) String() string {
	switch k {
	case SoftExpire:
		return "soft-expire"
	case HardExpire:
		return "hard-expire"
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// ExpireReason says which limit was crossed.
type ExpireReason uint8

const (
	ReasonBytes ExpireReason = iota + 1
	ReasonPackets
	ReasonTime
	ReasonSequence // the sequence number space is (nearly) used up
)

func (r ExpireReason) String() string {
	switch r {
	case ReasonBytes:
		return "bytes"
	case ReasonPackets:
		return "packets"
	case ReasonTime:
		return "time"
	case ReasonSequence:
		return "sequence number"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Event reports an SA lifetime crossing.
type Event struct {
	SPI    uint32
	Kind   EventKind
	Reason ExpireReason
}

// Counters is a snapshot of an SA's counters.
type Counters struct {
	Packets, Bytes uint64 // inner packets and their bytes, sealed or opened
	LastUse        time.Time
	Drops          DropCounts
}

// Sizes of the engine's framing.
const (
	espHeaderLen = 8  // SPI + sequence number
	udpHeaderLen = 8  // RFC 3948 encapsulation
	ScratchLen   = 32 // scratch Seal and Open use in dst's spare capacity
	// seqSoftLimit raises SoftExpire on the sequence number without ESN, so
	// that IKE rekeys well before the hard stop at 2^32-1.
	seqSoftLimit = math.MaxUint32 - 1<<24
)

// SA is one ESP security association in one direction.
type SA struct {
	spi       uint32
	mode      Mode
	esn       bool
	local     netip.Addr
	remote    netip.Addr
	encap     *UDPEncap
	selectors []Selector
	tr        *transform
	clock     *Clock
	onEvent   func(Event)

	// Limits, with 0 turned into "never" so the hot path just compares.
	softBytes, hardBytes, softPkts, hardPkts uint64
	softTime, hardTime                       int64 // Unix ns

	seqOut atomic.Uint64 // last sequence number used by Seal
	replay *replayWindow

	// Hot counters. They share cache lines between cores when one SA is
	// used in parallel; the cost is one atomic add each per packet.
	packets atomic.Uint64
	bytes   atomic.Uint64
	lastUse atomic.Int64
	drops   dropCounters

	softFired atomic.Bool
	hardFired atomic.Bool // also: the SA is dead
}

// NewSA checks cfg and builds an SA.
func NewSA(cfg SAConfig) (*SA, error) {
	if cfg.SPI < 256 {
		return nil, fmt.Errorf("esp: SPI %#08x is reserved (RFC 4303 §2.1: 1-255 are reserved, 0 is not an SPI)", cfg.SPI)
	}
	if cfg.Mode != Tunnel && cfg.Mode != Transport {
		return nil, fmt.Errorf("esp: SPI %#08x: unknown mode %d", cfg.SPI, cfg.Mode)
	}
	if cfg.Local.IsValid() != cfg.Remote.IsValid() || (cfg.Local.IsValid() && cfg.Local.Is4() != cfg.Remote.Is4()) {
		return nil, fmt.Errorf("esp: SPI %#08x: outer addresses %v and %v are not of one family", cfg.SPI, cfg.Local, cfg.Remote)
	}
	tr, err := newTransform(&cfg)
	if err != nil {
		return nil, err
	}
	sa := &SA{
		spi:       cfg.SPI,
		mode:      cfg.Mode,
		esn:       cfg.ESN,
		local:     cfg.Local.Unmap(),
		remote:    cfg.Remote.Unmap(),
		selectors: append([]Selector(nil), cfg.Selectors...),
		tr:        tr,
		clock:     cfg.Clock,
		onEvent:   cfg.OnEvent,
		replay:    newReplayWindow(cfg.ReplayWindow),
	}
	if cfg.Encap != nil {
		e := *cfg.Encap
		sa.encap = &e
	}
	if sa.clock == nil {
		sa.clock = SystemClock()
	}
	never := func(v uint64) uint64 {
		if v == 0 {
			return math.MaxUint64
		}
		return v
	}
	sa.softBytes, sa.hardBytes = never(cfg.Lifetime.Soft.Bytes), never(cfg.Lifetime.Hard.Bytes)
	sa.softPkts, sa.hardPkts = never(cfg.Lifetime.Soft.Packets), never(cfg.Lifetime.Hard.Packets)
	now := sa.clock.nanos()
	sa.softTime, sa.hardTime = math.MaxInt64, math.MaxInt64
	if d := cfg.Lifetime.Soft.Time; d > 0 {
		sa.softTime = now + int64(d)
	}
	if d := cfg.Lifetime.Hard.Time; d > 0 {
		sa.hardTime = now + int64(d)
	}
	sa.lastUse.Store(now)
	return sa, nil
}

// SPI returns the SA's SPI.
func (sa *SA) SPI() uint32 { return sa.spi }

// Mode returns the SA's mode.
func (sa *SA) Mode() Mode { return sa.mode }

// Encap returns the UDP encapsulation ports, or nil for raw ESP.
func (sa *SA) Encap() *UDPEncap { return sa.encap }

// Expired reports whether the SA passed a hard limit and refuses packets.
func (sa *SA) Expired() bool { return sa.hardFired.Load() }

// Counters returns a snapshot of the SA's counters.
func (sa *SA) Counters() Counters {
	return Counters{
		Packets: sa.packets.Load(),
		Bytes:   sa.bytes.Load(),
		LastUse: time.Unix(0, sa.lastUse.Load()),
		Drops:   sa.drops.snapshot(),
	}
}

// Overhead returns the most octets Seal adds to a packet of n octets
// (headers, IV, padding, trailer, ICV; in transport mode less the IP
// header, plus the UDP header when encapsulated).
func (sa *SA) Overhead(n int) int {
	t := sa.tr
	body := roundUp(n+2, t.align)
	o := espHeaderLen + t.ivLen + body - n + t.icvLen
	if sa.mode == Transport && sa.encap != nil {
		o += udpHeaderLen
	}
	return o
}

// HeaderLen returns the octets Seal writes before the encrypted payload in
// tunnel mode: a caller that reads the inner packet to dst[len(dst)+HeaderLen():]
// saves Seal a copy.
func (sa *SA) HeaderLen() int { return espHeaderLen + sa.tr.ivLen }

func roundUp(n, a int) int { return (n + a - 1) / a * a }

func (sa *SA) drop(r DropReason) error {
	sa.drops[r].Add(1)
	global[r].Add(1)
	return r
}

// account adds one packet of n octets and checks the lifetimes.
func (sa *SA) account(n int) {
	p := sa.packets.Add(1)
	b := sa.bytes.Add(uint64(n))
	now := sa.clock.nanos()
	if sa.lastUse.Load() != now {
		sa.lastUse.Store(now)
	}
	if p >= sa.softPkts || b >= sa.softBytes || now >= sa.softTime {
		sa.fire(SoftExpire, reasonOf(p >= sa.softPkts, b >= sa.softBytes))
	}
	if p >= sa.hardPkts || b >= sa.hardBytes || now >= sa.hardTime {
		sa.fire(HardExpire, reasonOf(p >= sa.hardPkts, b >= sa.hardBytes))
	}
}

func reasonOf(pkts, bytes bool) ExpireReason {
	switch {
	case pkts:
		return ReasonPackets
	case bytes:
		return ReasonBytes
	}
	return ReasonTime
}

func (sa *SA) fire(k EventKind, r ExpireReason) {
	flag := &sa.softFired
	if k == HardExpire {
		flag = &sa.hardFired
	}
	if flag.Load() || !flag.CompareAndSwap(false, true) {
		return
	}
	if k == HardExpire && sa.softFired.CompareAndSwap(false, true) && sa.onEvent != nil {
		// A hard limit implies the soft one; report it first, once.
		sa.onEvent(Event{SPI: sa.spi, Kind: SoftExpire, Reason: r})
	}
	if sa.onEvent != nil {
		sa.onEvent(Event{SPI: sa.spi, Kind: k, Reason: r})
	}
}

// CheckLifetime fires the time-based events of an SA that sees no traffic;
// the daemon calls it (or SADB.CheckLifetimes) about once a second.
func (sa *SA) CheckLifetime() {
	now := sa.clock.nanos()
	if now >= sa.softTime {
		sa.fire(SoftExpire, ReasonTime)
	}
	if now >= sa.hardTime {
		sa.fire(HardExpire, ReasonTime)
	}
}

// alive refuses packets once a hard limit (time included) is passed.
func (sa *SA) alive() bool {
	if sa.hardFired.Load() {
		return false
	}
	if sa.clock.nanos() >= sa.hardTime {
		sa.fire(HardExpire, ReasonTime)
		return false
	}
	return true
}

// grow makes sure b has room for n more octets past its length.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), len(b)+n)
	copy(nb, b)
	return nb
}

func samePlace(a, b []byte) bool {
	return len(a) > 0 && len(b) > 0 && unsafe.SliceData(a) == unsafe.SliceData(b)
}

// errInternal means a transform kind the switch does not know: a bug.
var errInternal = errors.New("esp: internal error")

// Seal encrypts pkt and appends the result to dst; see the package comment
// for the layout. pkt is an IPv4 or IPv6 packet. On error dst is returned
// unchanged with a DropReason.
func (sa *SA) Seal(dst, pkt []byte) ([]byte, error) {
	return sa.seal(dst, pkt, 0)
}

// ReserveSeq reserves n consecutive outbound sequence numbers, the first
// of which it returns, for SealSeq. A caller that seals in parallel
// reserves a batch's numbers in the order its packets are to go out, seals
// them on any goroutine, and sends them in that order, so the peer sees
// them in order whatever its replay window. A number reserved and not used
// is a gap the peer's window skips. Without ESN, a batch that would run
// past 2^32-1 fails with DropSeqOverflow and the SA expires (its soft
// expiry fired 2^24 numbers before).
func (sa *SA) ReserveSeq(n int) (first uint64, err error) {
	if n <= 0 {
		return 0, sa.drop(DropMalformed)
	}
	if !sa.alive() {
		return 0, sa.drop(DropExpired)
	}
	last := sa.seqOut.Add(uint64(n))
	first = last - uint64(n) + 1
	if !sa.esn {
		if last > math.MaxUint32 {
			sa.seqOut.Store(math.MaxUint32 + 1)
			sa.fire(HardExpire, ReasonSequence)
			return 0, sa.drop(DropSeqOverflow)
		}
		if last >= seqSoftLimit {
			sa.fire(SoftExpire, ReasonSequence)
		}
	} else if first == 0 || last < first {
		return 0, sa.drop(DropSeqOverflow)
	}
	return first, nil
}

// SealSeq is Seal with the sequence number seq, which ReserveSeq gave. It
// may run on any number of goroutines at once.
func (sa *SA) SealSeq(dst, pkt []byte, seq uint64) ([]byte, error) {
	if seq == 0 {
		return dst, sa.drop(DropSeqOverflow)
	}
	return sa.seal(dst, pkt, seq)
}

// seal seals pkt with seq, or with the next number when seq is 0.
func (sa *SA) seal(dst, pkt []byte, seq uint64) ([]byte, error) {
	if !sa.alive() {
		return dst, sa.drop(DropExpired)
	}
	var (
		payload []byte
		nh      byte
		hdr     [60]byte // transport mode: the IP header, copied before anything moves
		hdrLen  int
		isV6    bool
	)
	if len(pkt) == 0 {
		return dst, sa.drop(DropMalformed)
	}
	switch pkt[0] >> 4 {
	case 4:
		ihl, total, ok := parseIPv4(pkt)
		if !ok {
			return dst, sa.drop(DropMalformed)
		}
		if sa.mode == Tunnel {
			payload, nh = pkt[:total], ProtoIPIP
		} else {
			if ipv4Fragment(pkt) {
				return dst, sa.drop(DropUnsupported)
			}
			hdrLen = copy(hdr[:], pkt[:ihl])
			payload, nh = pkt[ihl:total], pkt[9]
		}
	case 6:
		total, ok := parseIPv6(pkt)
		if !ok {
			return dst, sa.drop(DropMalformed)
		}
		isV6 = true
		if sa.mode == Tunnel {
			payload, nh = pkt[:total], ProtoIPv6
		} else {
			switch pkt[6] {
			case 0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254:
				// Extension headers before the payload: not handled in
				// transport mode.
				return dst, sa.drop(DropUnsupported)
			}
			hdrLen = copy(hdr[:], pkt[:40])
			payload, nh = pkt[40:total], pkt[6]
		}
	default:
		return dst, sa.drop(DropMalformed)
	}

	if seq != 0 {
		// Reserved by ReserveSeq, which did the checks.
	} else if seq = sa.seqOut.Add(1); !sa.esn {
		if seq > math.MaxUint32 {
			sa.seqOut.Store(math.MaxUint32 + 1) // keep it from wrapping 64 bits
			sa.fire(HardExpire, ReasonSequence)
			return dst, sa.drop(DropSeqOverflow)
		}
		if seq >= seqSoftLimit {
			sa.fire(SoftExpire, ReasonSequence)
		}
	} else if seq == 0 {
		return dst, sa.drop(DropSeqOverflow)
	}

	t := sa.tr
	body := roundUp(len(payload)+2, t.align)
	padLen := body - len(payload) - 2
	prefix := hdrLen
	if hdrLen > 0 && sa.encap != nil {
		prefix += udpHeaderLen
	}
	espLen := espHeaderLen + t.ivLen + body + t.icvLen
	dst = grow(dst, prefix+espLen+ScratchLen)
	start := len(dst)
	out := dst[start : start+prefix+espLen]
	esp := out[prefix:]
	ct := esp[espHeaderLen+t.ivLen:]
	if !samePlace(ct, payload) {
		copy(ct, payload) // memmove: fine if the caller's packet overlaps
	}
	n := len(payload)
	for i := 0; i < padLen; i++ {
		ct[n+i] = byte(i + 1)
	}
	ct[n+padLen] = byte(padLen)
	ct[n+padLen+1] = nh
	binary.BigEndian.PutUint32(esp[0:4], sa.spi)
	binary.BigEndian.PutUint32(esp[4:8], uint32(seq))
	scratch := dst[start+len(out) : start+len(out)+ScratchLen]

	switch t.kind {
	case kindAEAD:
		iv := esp[8:16]
		binary.BigEndian.PutUint64(iv, seq)
		nonce := scratch[:12]
		copy(nonce, t.salt[:])
		copy(nonce[4:], iv)
		aad := esp[:8]
		if sa.esn {
			aad = scratch[12:24]
			binary.BigEndian.PutUint32(aad[0:4], sa.spi)
			binary.BigEndian.PutUint32(aad[4:8], uint32(seq>>32))
			binary.BigEndian.PutUint32(aad[8:12], uint32(seq))
		}
		t.aead.Seal(ct[:0], nonce, ct[:body], aad)
	case kindCBC, kindNull:
		ms := t.macs.Get().(*macState)
		if t.kind == kindCBC {
			iv := esp[8:24]
			// A unique, unpredictable IV without crypto/rand per packet:
			// the sequence number encrypted under a random per-SA key.
			binary.BigEndian.PutUint64(iv[0:8], seq)
			binary.BigEndian.PutUint64(iv[8:16], uint64(sa.spi))
			t.ivBlock.Encrypt(iv, iv)
			ms.enc.SetIV(iv)
			ms.enc.CryptBlocks(ct[:body], ct[:body])
		}
		icv := sa.mac(ms, esp[:len(esp)-t.icvLen], seq)
		copy(esp[len(esp)-t.icvLen:], icv)
		t.macs.Put(ms)
	default:
		return dst, errInternal
	}

	if hdrLen > 0 {
		h := out[:hdrLen]
		copy(h, hdr[:hdrLen])
		proto := byte(ProtoESP)
		if sa.encap != nil {
			proto = ProtoUDP
			u := out[hdrLen:prefix]
			binary.BigEndian.PutUint16(u[0:2], sa.encap.LocalPort)
			binary.BigEndian.PutUint16(u[2:4], sa.encap.RemotePort)
			binary.BigEndian.PutUint16(u[4:6], uint16(udpHeaderLen+espLen))
			u[6], u[7] = 0, 0
		}
		if isV6 {
			h[6] = proto
			binary.BigEndian.PutUint16(h[4:6], uint16(len(out)-40))
			if sa.encap != nil {
				putUDPChecksum6(h, out[hdrLen:])
			}
		} else {
			h[9] = proto
			binary.BigEndian.PutUint16(h[2:4], uint16(len(out)))
			setIPv4Checksum(h)
		}
	}
	sa.account(n)
	if !sa.esn && seq == math.MaxUint32 {
		sa.fire(HardExpire, ReasonSequence) // the last number went out
	}
	return dst[:start+len(out)], nil
}

// mac computes the truncated HMAC over b and, with ESN, the high half of
// the sequence number (RFC 4303 §2.2.1: it is covered but not sent).
func (sa *SA) mac(ms *macState, b []byte, seq uint64) []byte {
	ms.h.Reset()
	ms.h.Write(b)
	if sa.esn {
		binary.BigEndian.PutUint32(ms.hi[:], uint32(seq>>32))
		ms.h.Write(ms.hi[:])
	}
	return ms.h.Sum(ms.sum[:0])[:sa.tr.icvLen]
}

// Open authenticates and decrypts one ESP packet and appends the inner
// packet to dst. In tunnel mode pkt is the ESP packet (from the SPI on); in
// transport mode it is the whole IP packet. dst must not overlap pkt. On
// error dst is returned unchanged with a DropReason, and the SA's state
// (replay window included) is not touched by unauthenticated input.
func (sa *SA) Open(dst, pkt []byte) ([]byte, error) {
	out, _, err := sa.open(dst, pkt, true)
	return out, err
}

// OpenNoCommit is the parallel half of Open: it does every check Open does
// (the replay pre-check included, before it decrypts) except that it does
// not record the sequence number in the replay window nor count the
// packet. It returns the inner packet and the packet's (full, with ESN)
// sequence number, which the caller passes to CommitSeq, in the order the
// packets arrived, before it uses the packet. It may run on any number of
// goroutines at once.
func (sa *SA) OpenNoCommit(dst, pkt []byte) (out []byte, seq uint64, err error) {
	return sa.open(dst, pkt, false)
}

// CommitSeq records seq, which OpenNoCommit returned for a packet of n
// inner octets, in the replay window and counts the packet. It fails with
// DropReplay when the number is no longer new (a duplicate opened at the
// same time, or one that fell left of the window meanwhile): then the
// packet must be dropped.
func (sa *SA) CommitSeq(seq uint64, n int) error {
	if !sa.replay.update(seq) {
		return sa.drop(DropReplay)
	}
	sa.account(n)
	return nil
}

// open is Open, and with commit false OpenNoCommit.
func (sa *SA) open(dst, pkt []byte, commit bool) ([]byte, uint64, error) {
	if !sa.alive() {
		return dst, 0, sa.drop(DropExpired)
	}
	esp := pkt
	var ohdr []byte // transport mode: the outer (= the packet's own) IP header
	if sa.mode == Transport {
		var proto byte
		var ok bool
		ohdr, esp, proto, ok = splitIP(pkt)
		if !ok {
			return dst, 0, sa.drop(DropMalformed)
		}
		if proto == ProtoUDP && sa.encap != nil {
			if len(esp) < udpHeaderLen {
				return dst, 0, sa.drop(DropShort)
			}
			esp = esp[udpHeaderLen:]
		} else if proto != ProtoESP {
			return dst, 0, sa.drop(DropMalformed)
		}
	}
	t := sa.tr
	minLen := espHeaderLen + t.ivLen + t.align + t.icvLen // at least one aligned block (pad length + next header)
	if t.kind == kindAEAD {
		minLen = espHeaderLen + t.ivLen + 2 + t.icvLen
	}
	if len(esp) < minLen {
		return dst, 0, sa.drop(DropShort)
	}
	if binary.BigEndian.Uint32(esp[0:4]) != sa.spi {
		return dst, 0, sa.drop(DropNoSA)
	}
	ctLen := len(esp) - espHeaderLen - t.ivLen - t.icvLen
	if t.kind != kindAEAD && ctLen%t.align != 0 {
		return dst, 0, sa.drop(DropShort)
	}
	seql := binary.BigEndian.Uint32(esp[4:8])
	seq := uint64(seql)
	if sa.esn {
		w := uint32(sa.replay.size)
		if w == 0 {
			w = 1 << 31
		}
		seq = inferSeq(sa.replay.top.Load(), w, seql)
	}
	if !sa.replay.check(seq) {
		return dst, 0, sa.drop(DropReplay)
	}

	hl := len(ohdr)
	dst = grow(dst, hl+ctLen+t.icvLen+ScratchLen)
	start := len(dst)
	var pt []byte
	switch t.kind {
	case kindAEAD:
		so := start + hl + ctLen + t.icvLen
		scratch := dst[so : so+ScratchLen]
		nonce := scratch[:12]
		copy(nonce, t.salt[:])
		copy(nonce[4:], esp[8:16])
		aad := esp[:8]
		if sa.esn {
			aad = scratch[12:24]
			binary.BigEndian.PutUint32(aad[0:4], sa.spi)
			binary.BigEndian.PutUint32(aad[4:8], uint32(seq>>32))
			binary.BigEndian.PutUint32(aad[8:12], seql)
		}
		var err error
		pt, err = t.aead.Open(dst[start+hl:start+hl], nonce, esp[16:], aad)
		if err != nil {
			return dst[:start], 0, sa.drop(DropAuth)
		}
	case kindCBC, kindNull:
		ms := t.macs.Get().(*macState)
		icv := sa.mac(ms, esp[:len(esp)-t.icvLen], seq)
		if !hmac.Equal(icv, esp[len(esp)-t.icvLen:]) {
			t.macs.Put(ms)
			return dst[:start], 0, sa.drop(DropAuth)
		}
		pt = dst[start+hl : start+hl+ctLen]
		ct := esp[espHeaderLen+t.ivLen : espHeaderLen+t.ivLen+ctLen]
		if t.kind == kindCBC {
			ms.dec.SetIV(esp[8:24])
			ms.dec.CryptBlocks(pt, ct)
		} else {
			copy(pt, ct)
		}
		t.macs.Put(ms)
	default:
		return dst, 0, errInternal
	}
	if commit && !sa.replay.update(seq) {
		return dst[:start], 0, sa.drop(DropReplay)
	}

	// Trailer: padding 1, 2, 3, ..., pad length, next header.
	padLen := int(pt[len(pt)-2])
	nh := pt[len(pt)-1]
	if padLen+2 > len(pt) {
		return dst[:start], 0, sa.drop(DropPadding)
	}
	pad := pt[len(pt)-2-padLen : len(pt)-2]
	for i, b := range pad {
		if b != byte(i+1) {
			return dst[:start], 0, sa.drop(DropPadding)
		}
	}
	payload := pt[:len(pt)-2-padLen]

	if nh == ProtoNone {
		return dst[:start], 0, sa.drop(DropDummy)
	}
	if sa.mode == Tunnel {
		var total int
		var ok bool
		switch nh {
		case ProtoIPIP:
			_, total, ok = parseIPv4(payload)
		case ProtoIPv6:
			total, ok = parseIPv6(payload)
		default:
			return dst[:start], 0, sa.drop(DropNextHeader)
		}
		if !ok {
			// Also catches an IPv6 packet under next header 4 and back.
			return dst[:start], 0, sa.drop(DropMalformed)
		}
		payload = payload[:total] // drop TFC padding (RFC 4303 §2.7)
	} else {
		if nh == ProtoIPIP || nh == ProtoIPv6 {
			return dst[:start], 0, sa.drop(DropNextHeader)
		}
		h := dst[start : start+hl]
		copy(h, ohdr)
		if h[0]>>4 == 4 {
			h[9] = nh
			binary.BigEndian.PutUint16(h[2:4], uint16(hl+len(payload)))
			setIPv4Checksum(h)
		} else {
			h[6] = nh
			binary.BigEndian.PutUint16(h[4:6], uint16(len(payload)))
		}
		payload = dst[start : start+hl+len(payload)]
	}
	if len(sa.selectors) > 0 && !sa.allowed(payload) {
		return dst[:start], 0, sa.drop(DropPolicy)
	}
	if commit {
		// Count what Seal counts: the inner packet in tunnel mode, the
		// payload after the IP header in transport mode.
		sa.account(len(payload) - hl)
	}
	return dst[:start+len(payload)], seq, nil
}

// allowed is the inbound policy check of RFC 4301 §5.2.
func (sa *SA) allowed(pkt []byte) bool {
	ps, ok := ParsePacketSelector(pkt)
	if !ok {
		return false
	}
	for i := range sa.selectors {
		if sa.selectors[i].Matches(&ps) {
			return true
		}
	}
	return false
}

// splitIP returns the header and payload of an IPv4 or IPv6 packet (no
// IPv6 extension headers) and its protocol.
func splitIP(pkt []byte) (hdr, payload []byte, proto byte, ok bool) {
	if len(pkt) == 0 {
		return nil, nil, 0, false
	}
	switch pkt[0] >> 4 {
	case 4:
		ihl, total, ok := parseIPv4(pkt)
		if !ok || ipv4Fragment(pkt) {
			return nil, nil, 0, false
		}
		return pkt[:ihl], pkt[ihl:total], pkt[9], true
	case 6:
		total, ok := parseIPv6(pkt)
		if !ok {
			return nil, nil, 0, false
		}
		return pkt[:40], pkt[40:total], pkt[6], true
	}
	return nil, nil, 0, false
}

// OuterHeaderLen is the size of the IP (and UDP) header PutOuterHeader
// writes for a tunnel-mode SA: 20 or 40, plus 8 with UDP encapsulation.
func (sa *SA) OuterHeaderLen() int {
	n := 20
	if sa.remote.Is6() {
		n = 40
	}
	if sa.encap != nil {
		n += udpHeaderLen
	}
	return n
}

// PutOuterHeader writes the outer IP header (and the UDP header of RFC 3948
// when the SA is encapsulated) of a tunnel-mode packet into pkt[:OuterHeaderLen()],
// where pkt is that room followed by the ESP packet Seal made:
//
//	buf := make([]byte, n, n+2048) // n = sa.OuterHeaderLen()
//	pkt, err := sa.Seal(buf, inner)
//	sa.PutOuterHeader(pkt)
//
// It is meant for back ends that need whole IP packets; a NAT-T or raw ESP
// socket takes the ESP bytes alone.
func (sa *SA) PutOuterHeader(pkt []byte) error {
	hl := sa.OuterHeaderLen()
	if !sa.local.IsValid() || len(pkt) < hl || len(pkt) > 0xffff+40 {
		return fmt.Errorf("esp: SPI %#08x: cannot build an outer header (local %v, packet %d octets)", sa.spi, sa.local, len(pkt))
	}
	proto := byte(ProtoESP)
	if sa.encap != nil {
		proto = ProtoUDP
	}
	ipl := 20
	if sa.remote.Is6() {
		ipl = 40
		h := pkt[:40]
		clear(h)
		h[0] = 6 << 4
		binary.BigEndian.PutUint16(h[4:6], uint16(len(pkt)-40))
		h[6] = proto
		h[7] = 64
		s, d := sa.local.As16(), sa.remote.As16()
		copy(h[8:24], s[:])
		copy(h[24:40], d[:])
	} else {
		h := pkt[:20]
		clear(h)
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:4], uint16(len(pkt)))
		h[6] = 0x40 // DF; ID 0 is fine for an atomic datagram (RFC 6864)
		h[8] = 64
		h[9] = proto
		s, d := sa.local.As4(), sa.remote.As4()
		copy(h[12:16], s[:])
		copy(h[16:20], d[:])
		setIPv4Checksum(h)
	}
	if sa.encap != nil {
		u := pkt[ipl:]
		binary.BigEndian.PutUint16(u[0:2], sa.encap.LocalPort)
		binary.BigEndian.PutUint16(u[2:4], sa.encap.RemotePort)
		binary.BigEndian.PutUint16(u[4:6], uint16(len(u)))
		u[6], u[7] = 0, 0 // IPv4: no UDP checksum (RFC 3948 §2.1)
		if ipl == 40 {
			putUDPChecksum6(pkt[:40], u)
		}
	}
	return nil
}

// putUDPChecksum6 fills the UDP checksum of u, sent in the IPv6 header h.
func putUDPChecksum6(h, u []byte) {
	u[6], u[7] = 0, 0
	s := uint32(checksum(h[8:40], 0)) // addresses
	s += uint32(len(u)) + ProtoUDP
	c := ^checksum(u, s)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:8], c)
}
