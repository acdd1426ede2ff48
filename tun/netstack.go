package tun

// The unprivileged device: a gVisor TCP/IP stack in this process
// (golang.zx2c4.com/wireguard/tun/netstack). Its "TUN" side is the Device
// that the ESP back end reads and writes; its socket side is what the
// servers in this package (SOCKS5, forwards, exposes) use to open
// connections that leave from, or listen on, the tunnel's addresses.
//
// Every server started from a Netstack is closed by Netstack.Close, after
// which the device is closed too.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"golang.zx2c4.com/wireguard/tun/netstack"
)

// Netstack is a gVisor network stack whose addresses are the inner
// (tunnel) addresses of this host.
type Netstack struct {
	// Logf, when set before servers start, receives their errors (a
	// failed dial, a broken relay). Nil: silent.
	Logf func(format string, args ...any)

	net   *netstack.Net
	dev   Device
	addrs []netip.Addr
	mtu   int

	mu      sync.Mutex
	servers map[*Server]struct{}
	closed  bool
}

// NewNetstack makes a network stack with addrs (at least one) and mtu. The
// Device it returns is the stack's packet side, for the ESP back end; the
// Netstack dials and listens inside the tunnel.
func NewNetstack(addrs []netip.Addr, mtu int) (*Netstack, Device, error) {
	if len(addrs) == 0 {
		return nil, nil, errors.New("tun: netstack needs at least one address")
	}
	if mtu < 576 || mtu > 65535 {
		return nil, nil, fmt.Errorf("tun: netstack MTU %d is out of range 576-65535", mtu)
	}
	for _, a := range addrs {
		if !a.IsValid() || a.IsUnspecified() || a.Is4In6() {
			return nil, nil, fmt.Errorf("tun: netstack address %v is not a usable IPv4 or IPv6 address", a)
		}
	}
	dev, n, err := netstack.CreateNetTUN(addrs, nil, mtu)
	if err != nil {
		return nil, nil, fmt.Errorf("tun: netstack: %w", err)
	}
	od := &onceDevice{Device: dev}
	ns := &Netstack{net: n, dev: od, addrs: append([]netip.Addr(nil), addrs...), mtu: mtu,
		servers: map[*Server]struct{}{}}
	return ns, od, nil
}

// Addrs returns the stack's addresses.
func (ns *Netstack) Addrs() []netip.Addr { return append([]netip.Addr(nil), ns.addrs...) }

// MTU returns the stack's MTU.
func (ns *Netstack) MTU() int { return ns.mtu }

// addrFor returns the stack's first address of dst's family.
func (ns *Netstack) addrFor(dst netip.Addr) (netip.Addr, bool) {
	for _, a := range ns.addrs {
		if a.Is4() == dst.Unmap().Is4() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// DialTCP opens a TCP connection from the stack to dst, through the tunnel.
func (ns *Netstack) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if _, ok := ns.addrFor(dst.Addr()); !ok {
		return nil, fmt.Errorf("tun: dial tcp %v: the netstack has no address of that family", dst)
	}
	c, err := ns.net.DialContextTCPAddrPort(ctx, dst)
	if err != nil {
		return nil, err // gonet's *net.OpError names the address
	}
	return c, nil
}

// DialUDP opens a connected UDP socket from the stack to dst.
func (ns *Netstack) DialUDP(dst netip.AddrPort) (net.Conn, error) {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	src, ok := ns.addrFor(dst.Addr())
	if !ok {
		return nil, fmt.Errorf("tun: dial udp %v: the netstack has no address of that family", dst)
	}
	c, err := ns.net.DialUDPAddrPort(netip.AddrPortFrom(src, 0), dst)
	if err != nil {
		return nil, fmt.Errorf("tun: dial udp %v: %w", dst, err)
	}
	return c, nil
}

// ListenTCP listens on the stack at ap (an address of the stack).
func (ns *Netstack) ListenTCP(ap netip.AddrPort) (net.Listener, error) {
	l, err := ns.net.ListenTCPAddrPort(ap)
	if err != nil {
		return nil, fmt.Errorf("tun: netstack listen tcp %v: %w", ap, err)
	}
	return l, nil
}

// ListenUDP opens an unconnected UDP socket on the stack at ap (port 0:
// any free port).
func (ns *Netstack) ListenUDP(ap netip.AddrPort) (net.PacketConn, error) {
	c, err := ns.net.ListenUDPAddrPort(ap)
	if err != nil {
		return nil, fmt.Errorf("tun: netstack listen udp %v: %w", ap, err)
	}
	return c, nil
}

// Close stops every server started on the stack and then the stack and
// its device.
func (ns *Netstack) Close() error {
	ns.mu.Lock()
	if ns.closed {
		ns.mu.Unlock()
		return nil
	}
	ns.closed = true
	srvs := make([]*Server, 0, len(ns.servers))
	for s := range ns.servers {
		srvs = append(srvs, s)
	}
	ns.mu.Unlock()
	for _, s := range srvs {
		s.Close()
	}
	return ns.dev.Close()
}

// track registers s so that Close stops it.
func (ns *Netstack) track(s *Server) error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.closed {
		return errors.New("tun: netstack is closed")
	}
	ns.servers[s] = struct{}{}
	s.onClose = func() {
		ns.mu.Lock()
		delete(ns.servers, s)
		ns.mu.Unlock()
	}
	return nil
}
