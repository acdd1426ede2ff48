package esp

import "encoding/binary"

// Port is the IKE NAT-T port that carries UDP-encapsulated ESP (RFC 3948).
const Port = 4500

// DatagramKind is what a UDP datagram on port 4500 carries (RFC 3948 §2).
type DatagramKind uint8

const (
	DatagramInvalid   DatagramKind = iota // none of the below: drop
	DatagramKeepalive                     // NAT-keepalive: one octet 0xFF
	DatagramIKE                           // non-ESP marker (4 zero octets), then an IKE message
	DatagramESP                           // an ESP packet, non-zero SPI first
)

func (k DatagramKind) String() string {
	switch k {
	case DatagramKeepalive:
		return "keepalive"
	case DatagramIKE:
		return "IKE"
	case DatagramESP:
		return "ESP"
	}
	return "invalid"
}

// NonESPMarkerLen is the length of the non-ESP marker that precedes IKE
// messages on port 4500.
const NonESPMarkerLen = 4

// ClassifyUDP sorts the payload of a datagram received on port 4500 and
// returns what follows the framing: the IKE message without its non-ESP
// marker, the ESP packet as it is, or nil.
func ClassifyUDP(payload []byte) (DatagramKind, []byte) {
	switch {
	case len(payload) == 1 && payload[0] == 0xff:
		return DatagramKeepalive, nil
	case len(payload) < espHeaderLen:
		// Shorter than an ESP header and not a keepalive: nothing valid.
		// (An IKE header alone is 28 octets.)
		return DatagramInvalid, nil
	case binary.BigEndian.Uint32(payload[0:4]) == 0:
		return DatagramIKE, payload[NonESPMarkerLen:]
	}
	return DatagramESP, payload
}

// AppendIKE appends the non-ESP marker and an IKE message: the payload of
// an IKE datagram on port 4500.
func AppendIKE(dst, ikeMsg []byte) []byte {
	dst = append(dst, 0, 0, 0, 0)
	return append(dst, ikeMsg...)
}

// Keepalive is the payload of a NAT-keepalive datagram (RFC 3948 §2.3).
var Keepalive = [1]byte{0xff}

// UDPHeader is an 8-octet UDP header (RFC 768): source port, destination
// port, length, checksum.
type UDPHeader []byte

func (u UDPHeader) SrcPort() uint16  { return binary.BigEndian.Uint16(u[0:2]) }
func (u UDPHeader) DstPort() uint16  { return binary.BigEndian.Uint16(u[2:4]) }
func (u UDPHeader) Length() uint16   { return binary.BigEndian.Uint16(u[4:6]) }
func (u UDPHeader) Checksum() uint16 { return binary.BigEndian.Uint16(u[6:8]) }

// IsValid reports whether u holds a header whose length field fits.
func (u UDPHeader) IsValid() bool {
	return len(u) >= udpHeaderLen && int(u.Length()) >= udpHeaderLen && int(u.Length()) <= len(u)
}

// ParseUDPEncap takes a whole IPv4 or IPv6 packet (as a raw socket or a
// netstack hands it over) and returns its UDP ports and payload when it is
// a UDP datagram; classify the payload with ClassifyUDP. The UDP checksum
// is not verified (RFC 3948 §3.1.2 lets a receiver skip it for ESP).
func ParseUDPEncap(pkt []byte) (src, dst uint16, payload []byte, ok bool) {
	_, p, proto, ok := splitIP(pkt)
	if !ok || proto != ProtoUDP {
		return 0, 0, nil, false
	}
	u := UDPHeader(p)
	if !u.IsValid() {
		return 0, 0, nil, false
	}
	return u.SrcPort(), u.DstPort(), p[udpHeaderLen:u.Length()], true
}

// AppendUDPEncap appends a UDP header for the SA's ports (checksum 0, as
// RFC 3948 §2.1 allows over IPv4) and the ESP packet.
func (sa *SA) AppendUDPEncap(dst, esp []byte) []byte {
	var lp, rp uint16 = Port, Port
	if sa.encap != nil {
		lp, rp = sa.encap.LocalPort, sa.encap.RemotePort
	}
	dst = binary.BigEndian.AppendUint16(dst, lp)
	dst = binary.BigEndian.AppendUint16(dst, rp)
	dst = binary.BigEndian.AppendUint16(dst, uint16(udpHeaderLen+len(esp)))
	dst = append(dst, 0, 0)
	return append(dst, esp...)
}
