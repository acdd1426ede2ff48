package pfkey

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Sockaddrs as PF_KEY carries them after a sadb_address and in an
// ipsecrequest.
//
// BSD (sa_len first, one-byte family):
//
//	 0        1        2                 4                                 8
//	+--------+--------+--------+--------+--------+--------+--------+--------+
//	| len=16 | fam=2  |   port (net)    |         IPv4 address              |
//	+--------+--------+--------+--------+--------+--------+--------+--------+
//	|                            zero (8)                                   |
//	+--------+--------+--------+--------+--------+--------+--------+--------+
//
//	sockaddr_in6: len=28, fam=AF_INET6, port, flowinfo(4), address(16),
//	scope_id(4).
//
// Linux (two-byte family in host order, no length):
//
//	+--------+--------+--------+--------+-----------------------------------+
//	|  fam=2 (host)   |   port (net)    |         IPv4 address              |
//	+--------+--------+--------+--------+-----------------------------------+
//	|                            zero (8)                                   |
//	+-----------------------------------------------------------------------+
//
//	sockaddr_in6: fam=10, port, flowinfo(4), address(16), scope_id(4).
const (
	afInet      = 2
	sockaddrIn4 = 16 // sizeof(struct sockaddr_in)
	sockaddrIn6 = 28 // sizeof(struct sockaddr_in6)
)

// sockaddrLen is the size of the sockaddr that holds a, 0 if a is not an
// address.
func sockaddrLen(a netip.Addr) int {
	switch {
	case a.Is4():
		return sockaddrIn4
	case a.Is6():
		return sockaddrIn6
	}
	return 0
}

// putSockaddr writes a and port at the start of b, which is at least
// sockaddrLen(a) long and zeroed.
func (l *Layout) putSockaddr(b []byte, a netip.Addr, port uint16) {
	fam := uint16(afInet)
	if a.Is6() {
		fam = l.AFInet6
	}
	if l.SockaddrLen {
		b[0] = byte(sockaddrLen(a))
		b[1] = byte(fam)
	} else {
		l.order().PutUint16(b, fam)
	}
	binary.BigEndian.PutUint16(b[2:], port)
	if a.Is4() {
		v := a.As4()
		copy(b[4:8], v[:])
	} else {
		v := a.As16()
		copy(b[8:24], v[:])
	}
}

// parseSockaddr reads the sockaddr at the start of b and returns its
// address, port and size.
func (l *Layout) parseSockaddr(b []byte) (netip.Addr, uint16, int, error) {
	if len(b) < 4 {
		return netip.Addr{}, 0, 0, fmt.Errorf("sockaddr of %d bytes", len(b))
	}
	var fam uint16
	var salen int
	if l.SockaddrLen {
		salen, fam = int(b[0]), uint16(b[1])
	} else {
		fam = l.order().Uint16(b)
	}
	var want int
	switch fam {
	case afInet:
		want = sockaddrIn4
	case l.AFInet6:
		want = sockaddrIn6
	default:
		return netip.Addr{}, 0, 0, fmt.Errorf("sockaddr of unknown family %d", fam)
	}
	if l.SockaddrLen && salen != want {
		return netip.Addr{}, 0, 0, fmt.Errorf("sockaddr of family %d with sa_len %d, want %d", fam, salen, want)
	}
	if len(b) < want {
		return netip.Addr{}, 0, 0, fmt.Errorf("sockaddr of family %d truncated to %d bytes", fam, len(b))
	}
	port := binary.BigEndian.Uint16(b[2:])
	if fam == afInet {
		return netip.AddrFrom4([4]byte(b[4:8])), port, want, nil
	}
	return netip.AddrFrom16([16]byte(b[8:24])), port, want, nil
}
