package esp

import (
	"encoding/binary"
	"net/netip"
)

// IP protocol numbers the engine needs.
const (
	ProtoICMP   = 1
	ProtoIPIP   = 4 // next header of an IPv4 packet in tunnel mode
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoIPv6   = 41 // next header of an IPv6 packet in tunnel mode
	ProtoESP    = 50
	ProtoICMPv6 = 58
	ProtoNone   = 59 // "no next header": TFC dummy packet
	ProtoSCTP   = 132
)

// ipv4Header is an IPv4 header in a []byte (RFC 791):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version|  IHL  |Type of Service|          Total Length         |
//	|         Identification        |Flags|      Fragment Offset    |
//	|  Time to Live |    Protocol   |         Header Checksum       |
//	|                       Source Address                          |
//	|                    Destination Address                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// parseIPv4 validates one and returns its header length and total length;
// ok is false on short or inconsistent input (never panics).
func parseIPv4(b []byte) (ihl, total int, ok bool) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return 0, 0, false
	}
	ihl = int(b[0]&0x0f) * 4
	total = int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < 20 || total < ihl || total > len(b) {
		return 0, 0, false
	}
	return ihl, total, true
}

// ipv4Fragment reports whether the header has MF set or a non-zero offset.
func ipv4Fragment(h []byte) bool { return binary.BigEndian.Uint16(h[6:8])&0x3fff != 0 }

// ipv6Header is the fixed IPv6 header (RFC 8200): version, traffic class,
// flow label (4 octets), payload length (2), next header (1), hop limit (1),
// source (16), destination (16).
func parseIPv6(b []byte) (total int, ok bool) {
	if len(b) < 40 || b[0]>>4 != 6 {
		return 0, false
	}
	total = 40 + int(binary.BigEndian.Uint16(b[4:6]))
	if total > len(b) {
		return 0, false
	}
	return total, true
}

// checksum is the Internet checksum (RFC 1071) of b, folded, not inverted,
// added to the partial sum initial.
func checksum(b []byte, initial uint32) uint16 {
	s := initial
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

func setIPv4Checksum(h []byte) {
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:12], ^checksum(h, 0))
}

// PacketSelector is what an IP packet offers to the SPD and to the inbound
// policy check: addresses, protocol and, for TCP, UDP and SCTP, the ports.
// For ICMP and ICMPv6, SrcPort holds type<<8|code and DstPort is 0 (the
// IKEv2 convention, RFC 7296 §3.13.1). A non-first fragment has no ports
// (both 0).
type PacketSelector struct {
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
}

// ParsePacketSelector reads the selector of an IPv4 or IPv6 packet. It
// walks IPv6 hop-by-hop, routing, destination-options and fragment
// headers. ok is false when the packet is not a valid IP packet.
func ParsePacketSelector(pkt []byte) (ps PacketSelector, ok bool) {
	if len(pkt) == 0 {
		return ps, false
	}
	var l4 []byte
	switch pkt[0] >> 4 {
	case 4:
		ihl, total, ok := parseIPv4(pkt)
		if !ok {
			return ps, false
		}
		ps.Src = netip.AddrFrom4([4]byte(pkt[12:16]))
		ps.Dst = netip.AddrFrom4([4]byte(pkt[16:20]))
		ps.Proto = pkt[9]
		if binary.BigEndian.Uint16(pkt[6:8])&0x1fff != 0 {
			return ps, true // non-first fragment: no ports
		}
		l4 = pkt[ihl:total]
	case 6:
		total, ok := parseIPv6(pkt)
		if !ok {
			return ps, false
		}
		ps.Src = netip.AddrFrom16([16]byte(pkt[8:24]))
		ps.Dst = netip.AddrFrom16([16]byte(pkt[24:40]))
		nh := pkt[6]
		rest := pkt[40:total]
		for i := 0; i < 8; i++ {
			switch nh {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if len(rest) < 8 {
					return ps, false
				}
				n := 8 + int(rest[1])*8
				if n > len(rest) {
					return ps, false
				}
				nh, rest = rest[0], rest[n:]
				continue
			case 44: // fragment
				if len(rest) < 8 {
					return ps, false
				}
				off := binary.BigEndian.Uint16(rest[2:4]) &^ 7
				nh, rest = rest[0], rest[8:]
				if off != 0 {
					ps.Proto = nh
					return ps, true
				}
				continue
			}
			break
		}
		ps.Proto = nh
		l4 = rest
	default:
		return ps, false
	}
	switch ps.Proto {
	case ProtoTCP, ProtoUDP, ProtoSCTP:
		if len(l4) >= 4 {
			ps.SrcPort = binary.BigEndian.Uint16(l4[0:2])
			ps.DstPort = binary.BigEndian.Uint16(l4[2:4])
		}
	case ProtoICMP, ProtoICMPv6:
		if len(l4) >= 2 {
			ps.SrcPort = uint16(l4[0])<<8 | uint16(l4[1])
		}
	}
	return ps, true
}

// PortRange is an inclusive range of ports; the zero value {0, 0} only
// matches port 0, AnyPort matches all.
type PortRange struct{ Lo, Hi uint16 }

// AnyPort is the full port range.
var AnyPort = PortRange{0, 65535}

func (r PortRange) contains(p uint16) bool { return r.Lo <= p && p <= r.Hi }
func (r PortRange) width() int             { return int(r.Hi) - int(r.Lo) }

// Selector is a traffic selector as the SPD and the SAs use it: a packet
// matches when its source is in Src, its destination in Dst, its protocol
// is Proto (0: any) and its ports are in the ranges (checked only when
// Proto is set; the zero PortRange is taken as any).
type Selector struct {
	Src, Dst           netip.Prefix
	Proto              uint8
	SrcPorts, DstPorts PortRange
}

func (s *Selector) ports() (PortRange, PortRange) {
	sp, dp := s.SrcPorts, s.DstPorts
	if sp == (PortRange{}) {
		sp = AnyPort
	}
	if dp == (PortRange{}) {
		dp = AnyPort
	}
	return sp, dp
}

// Matches reports whether the packet selector falls within s.
func (s *Selector) Matches(ps *PacketSelector) bool {
	if !s.Src.Contains(ps.Src) || !s.Dst.Contains(ps.Dst) {
		return false
	}
	if s.Proto == 0 {
		return true
	}
	if s.Proto != ps.Proto {
		return false
	}
	sp, dp := s.ports()
	return sp.contains(ps.SrcPort) && dp.contains(ps.DstPort)
}
