package xfrm

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// SetESPInUDP marks a UDP socket bound to the NAT-T port (4500) for
// ESP in UDP (RFC 3948): the kernel then takes the ESP packets that
// arrive on it (those without the 4-byte non-ESP marker) into its own SAs
// and passes the IKE packets (marker included) to the socket as before.
// One-byte NAT keepalives (0xff) are eaten by the kernel and never reach
// the socket. Works for IPv4 and, since Linux 5.8, IPv6 sockets.
func SetESPInUDP(fd uintptr) error {
	if err := unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_ENCAP, unix.UDP_ENCAP_ESPINUDP); err != nil {
		return fmt.Errorf("xfrm: setting UDP_ENCAP_ESPINUDP on the NAT-T socket: %w", err)
	}
	return nil
}

// BypassSocket gives an IKE socket per-socket policies that let its
// packets pass in the clear in both directions, so that a policy that
// protects all traffic to the peer (or a catch-all one) does not catch
// IKE itself. family is unix.AF_INET or unix.AF_INET6, as the socket's.
// This is what Libreswan and strongSwan do to their IKE sockets.
func BypassSocket(fd uintptr, family int) error {
	level, opt := unix.IPPROTO_IP, unix.IP_XFRM_POLICY
	switch family {
	case unix.AF_INET:
	case unix.AF_INET6:
		level, opt = unix.IPPROTO_IPV6, unix.IPV6_XFRM_POLICY
	default:
		return fmt.Errorf("xfrm: bypass socket: address family %d: want AF_INET or AF_INET6", family)
	}
	for _, dir := range []uint8{0, 1} { // XFRM_POLICY_IN, XFRM_POLICY_OUT
		p := policyInfo{
			Sel:    xfrmSelector{Family: uint16(family)},
			Lft:    infLifetime(),
			Dir:    dir,
			Action: policyAllow,
		}
		b := make([]byte, sizeofPolicyInfo)
		p.put(b)
		if err := unix.SetsockoptString(int(fd), level, opt, string(b)); err != nil {
			return fmt.Errorf("xfrm: bypass policy (%s) on the IKE socket: %w", []string{"in", "out"}[dir], err)
		}
	}
	return nil
}

// PrepareIKESocket does for one IKE socket what the kernel back end needs:
// the bypass policies always, and ESP in UDP for a NAT-T socket (port
// 4500). It is the hook the daemon calls on each socket it opens.
func PrepareIKESocket(fd uintptr, family int, natt bool) error {
	if err := BypassSocket(fd, family); err != nil {
		return err
	}
	if natt {
		return SetESPInUDP(fd)
	}
	return nil
}
