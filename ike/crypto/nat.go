package crypto

import (
	"crypto/sha1"
	"encoding/binary"
	"net/netip"
)

// NATDetectionSize is the length of a NAT detection hash (SHA-1).
const NATDetectionSize = sha1.Size

// NATDetectionHash returns the data of a NAT_DETECTION_SOURCE_IP or
// NAT_DETECTION_DESTINATION_IP notification (RFC 7296 §2.23):
//
//	SHA-1 ( SPIi | SPIr | IP | Port )
//
// with the address as 4 or 16 octets and the port in network order. SPIr
// is zero in the IKE_SA_INIT request. An IPv4-mapped IPv6 address is hashed
// as IPv4, the form on the wire.
func NATDetectionHash(spii, spir [8]byte, ip netip.Addr, port uint16) [NATDetectionSize]byte {
	var b [8 + 8 + 16 + 2]byte
	n := copy(b[:], spii[:])
	n += copy(b[n:], spir[:])
	ip = ip.Unmap()
	if ip.Is4() {
		a := ip.As4()
		n += copy(b[n:], a[:])
	} else {
		a := ip.As16()
		n += copy(b[n:], a[:])
	}
	binary.BigEndian.PutUint16(b[n:], port)
	return sha1.Sum(b[:n+2])
}
