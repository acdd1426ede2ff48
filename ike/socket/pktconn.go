package socket

import (
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// pktConn is a socket of one address family read and written with control
// messages: the destination of what arrives (on wildcard sockets) and the
// source of what leaves. The UDP and the raw ESP sockets share it.
type pktConn struct {
	pc4      *ipv4.PacketConn // one of pc4/pc6 is set
	pc6      *ipv6.PacketConn
	wildcard bool // bound to the unspecified address: ask and set addresses per packet
}

// readFrom reads one packet; dst is its destination address when the
// kernel said (else invalid).
func (c *pktConn) readFrom(buf []byte) (n int, dst netip.Addr, src net.Addr, err error) {
	if c.pc4 != nil {
		var cm *ipv4.ControlMessage
		n, cm, src, err = c.pc4.ReadFrom(buf)
		if err == nil && cm != nil && cm.Dst != nil {
			dst, _ = netip.AddrFromSlice(cm.Dst.To4())
		}
		return n, dst, src, err
	}
	var cm *ipv6.ControlMessage
	n, cm, src, err = c.pc6.ReadFrom(buf)
	if err == nil && cm != nil && cm.Dst != nil {
		dst, _ = netip.AddrFromSlice(cm.Dst)
		dst = dst.Unmap()
	}
	return n, dst, src, err
}

// writeTo sends b to dst, from src when the socket is a wildcard one and
// src is a real address.
func (c *pktConn) writeTo(b []byte, src netip.Addr, dst net.Addr) error {
	setSrc := c.wildcard && src.IsValid() && !src.IsUnspecified()
	if c.pc4 != nil {
		var cm *ipv4.ControlMessage
		if setSrc {
			cm = &ipv4.ControlMessage{Src: src.AsSlice()}
		}
		_, err := c.pc4.WriteTo(b, cm, dst)
		return err
	}
	var cm *ipv6.ControlMessage
	if setSrc {
		cm = &ipv6.ControlMessage{Src: src.AsSlice()}
	}
	_, err := c.pc6.WriteTo(b, cm, dst)
	return err
}
