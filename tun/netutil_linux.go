//go:build linux

package tun

import (
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// errNoRoute is what the kernel says when the route to delete is gone.
var errNoRoute = unix.ESRCH

func prefixNet(p netip.Prefix) *net.IPNet {
	p = p.Masked()
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
