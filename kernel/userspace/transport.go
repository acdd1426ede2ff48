package userspace

// Transport mode. A transport-mode SA protects the packets between this
// host's own address and the peer's: the inner packet's addresses are the
// outer ones. The engine (esp) seals a whole IP packet into the same IP
// header followed by the ESP packet, and opens such a packet back; the
// back end carries ESP in UDP (RFC 3948) on the daemon's NAT-T socket, or
// raw ESP on its raw socket (Config.SendRawESP: the kernel writes the IP
// header, the host-route rules let protocol 50 pass by the TUN), so it
// gives the engine SAs without UDP encapsulation and does the framing
// itself:
//
//   - Outbound, the device hands over the host's packet to the peer (the
//     host route of Config.AddHostRoute sent it there); Seal in place puts
//     the packet's IP header (protocol 50) in front of the ESP packet, and
//     what goes to SendESP is the ESP packet behind it, from the SA's
//     outer addresses and ports, as in tunnel mode.
//   - Inbound, the ESP-in-UDP payload gets an IP header rebuilt in front of
//     it (source: the peer, destination: us, as the SA's outer addresses
//     say; protocol 50; TTL 64; DF), which costs one copy of the packet,
//     and Open gives back the packet with the upper-layer protocol, which
//     goes to the device: the kernel takes it as arriving on the TUN. The
//     outer header's TOS/traffic class, TTL and IPv4 identification are
//     not kept (the socket does not report them).
//
// The inner TCP and UDP checksums are the peer's, computed over the
// addresses in the IP header: without NAT they are the outer addresses and
// the checksums hold. Behind a NAT the peer's own address differs from
// the one its datagrams come from; RFC 3948 §3.1.2 then asks the receiver
// to fix or ignore the checksums using NAT-OA, which this back end does
// not do (nor does it rewrite the addresses): transport mode through a
// NAT is not supported.
//
// IPv4 fragments and IPv6 packets with extension headers are dropped by
// the engine (DropUnsupported); the device's MTU keeps the host's own
// packets below fragmentation.

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"

	"goswan/esp"
	"goswan/kernel"
)

var errNoTransport = errors.New("transport mode needs host routes into the device that the daemon's own IKE and ESP-in-UDP packets pass by: a kernel TUN (--use-userspace) has them; this device does not (a netstack's addresses are tunnel addresses, not the host's)")

// transportOK says whether the back end can carry transport-mode SAs.
func (b *Backend) transportOK() bool {
	return b.cfg.AddHostRoute != nil && b.cfg.DeleteHostRoute != nil
}

// inAddrs are an inbound SA's outer addresses as the inbound path uses
// them: local is ours (the rebuilt header's destination), remote the
// peer's (its source).
func inAddrs(sa *kernel.SA) *sendAddrs {
	var lp, rp uint16
	if sa.Encap != nil {
		lp, rp = sa.Encap.DstPort, sa.Encap.SrcPort
	}
	return &sendAddrs{local: netip.AddrPortFrom(sa.Dst.Unmap(), lp), remote: netip.AddrPortFrom(sa.Src.Unmap(), rp)}
}

// setTransportIn adds (e != nil) or removes an inbound transport SA. mu
// is held.
func (b *Backend) setTransportIn(sa *esp.SA, e *saEntry) {
	m := make(map[*esp.SA]*saEntry, len(*b.trIn.Load())+1)
	for k, v := range *b.trIn.Load() {
		m[k] = v
	}
	if e != nil {
		m[sa] = e
	} else {
		delete(m, sa)
	}
	b.trIn.Store(&m)
}

// open opens one ESP-in-UDP payload with the SA its SPI names and
// appends the inner packet to dst. Without transport SAs it is
// SADB.Open.
func (b *Backend) open(dst, pkt []byte) ([]byte, error) {
	if m := *b.trIn.Load(); len(m) > 0 && len(pkt) >= 8 {
		if sa := b.sadb.Lookup(binary.BigEndian.Uint32(pkt)); sa != nil && sa.Mode() == esp.Transport {
			return b.openTransport(dst, pkt, sa, m[sa])
		}
	}
	out, _, err := b.sadb.Open(dst, pkt)
	return out, err
}

// trBufs holds the scratch buffers of openTransport.
var trBufs = sync.Pool{New: func() any { b := make([]byte, 0, 40+elemCap); return &b }}

// openTransport rebuilds the IP header in front of pkt and opens it.
func (b *Backend) openTransport(dst, pkt []byte, sa *esp.SA, e *saEntry) ([]byte, error) {
	if e == nil {
		return dst, esp.DropNoSA // being deleted
	}
	a := e.addrs.Load()
	src, to := a.remote.Addr(), a.local.Addr()
	bp := trBufs.Get().(*[]byte)
	defer trBufs.Put(bp)
	var hl int
	if src.Is4() {
		hl = 20
	} else {
		hl = 40
	}
	if (hl == 20 && hl+len(pkt) > 65535) || len(pkt) > 65535 { // IPv4 total length, IPv6 payload length
		return dst, esp.DropMalformed
	}
	need := hl + len(pkt)
	buf := *bp
	if cap(buf) < need {
		buf = make([]byte, need)
	}
	buf = buf[:need]
	*bp = buf
	clear(buf[:hl])
	copy(buf[hl:], pkt)
	h := buf[:hl]
	if hl == 20 {
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:4], uint16(len(buf)))
		h[6] = 0x40 // DF
		h[8] = 64
		h[9] = esp.ProtoESP
		s4, d4 := src.As4(), to.As4()
		copy(h[12:16], s4[:])
		copy(h[16:20], d4[:])
	} else {
		h[0] = 0x60
		binary.BigEndian.PutUint16(h[4:6], uint16(len(pkt)))
		h[6] = esp.ProtoESP
		h[7] = 64
		s16, d16 := src.As16(), to.As16()
		copy(h[8:24], s16[:])
		copy(h[24:40], d16[:])
	}
	return sa.Open(dst, buf)
}

// ipHeaderLen is the length of pkt's IP header as the engine's transport
// mode takes it, 0 if it is no IP packet.
func ipHeaderLen(pkt []byte) int {
	if len(pkt) == 0 {
		return 0
	}
	switch pkt[0] >> 4 {
	case 4:
		if n := int(pkt[0]&0x0f) * 4; n >= 20 && n <= len(pkt) {
			return n
		}
	case 6:
		if len(pkt) >= 40 {
			return 40
		}
	}
	return 0
}
