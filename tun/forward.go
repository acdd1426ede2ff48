package tun

// Port forwards and exposes, and the spec strings that name them:
//
//	forward  tcp|udp:[LISTENADDR:]PORT=REMOTEADDR:PORT
//	         listen on the host at LISTENADDR:PORT (127.0.0.1 when left
//	         out) and connect, from the netstack, through the tunnel to
//	         REMOTEADDR:PORT.
//	expose   tcp|udp:PORT=HOSTADDR:PORT
//	         listen on the netstack's addresses at PORT, inside the
//	         tunnel, and connect from the host to the service at
//	         HOSTADDR:PORT.
//
// Addresses are IP literals (IPv6 in brackets: [fd00::1]:80); there is no
// name resolution inside the tunnel.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Forward is a parsed forward spec.
type Forward struct {
	Network string         // "tcp" or "udp"
	Listen  netip.AddrPort // on the host
	Remote  netip.AddrPort // through the tunnel
}

func (f Forward) String() string { return fmt.Sprintf("%s:%v=%v", f.Network, f.Listen, f.Remote) }

// Expose is a parsed expose spec.
type Expose struct {
	Network string         // "tcp" or "udp"
	Port    uint16         // on the netstack's addresses
	Host    netip.AddrPort // the service on the host
}

func (e Expose) String() string { return fmt.Sprintf("%s:%d=%v", e.Network, e.Port, e.Host) }

// splitSpec splits "NET:LEFT=RIGHT".
func splitSpec(kind, s string) (network, left, right string, err error) {
	network, rest, ok := strings.Cut(s, ":")
	if !ok {
		return "", "", "", fmt.Errorf("%s %q: want tcp:... or udp:..., found no \":\" after the protocol", kind, s)
	}
	if network != "tcp" && network != "udp" {
		return "", "", "", fmt.Errorf("%s %q: protocol %q is neither tcp nor udp", kind, s, network)
	}
	left, right, ok = strings.Cut(rest, "=")
	if !ok {
		return "", "", "", fmt.Errorf("%s %q: no \"=\" between the listening and the target side", kind, s)
	}
	if strings.Contains(right, "=") {
		return "", "", "", fmt.Errorf("%s %q: more than one \"=\"", kind, s)
	}
	return network, left, right, nil
}

func parsePort(kind, s, what, p string) (uint16, error) {
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%s %q: %s port %q is not a number from 1 to 65535", kind, s, what, p)
	}
	return uint16(n), nil
}

// parseAddrPort reads ADDR:PORT ([v6]:PORT), naming what is wrong.
func parseAddrPort(kind, s, what, v string) (netip.AddrPort, error) {
	i := strings.LastIndexByte(v, ':')
	if i < 0 {
		return netip.AddrPort{}, fmt.Errorf("%s %q: %s %q is not ADDRESS:PORT", kind, s, what, v)
	}
	host, port := v[:i], v[i+1:]
	p, err := parsePort(kind, s, what, port)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if strings.HasPrefix(host, "[") != strings.HasSuffix(host, "]") {
		return netip.AddrPort{}, fmt.Errorf("%s %q: %s address %q has unbalanced brackets", kind, s, what, host)
	}
	bracketed := strings.HasPrefix(host, "[")
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%s %q: %s address %q is not an IP address", kind, s, what, host)
	}
	if a.Is6() && !bracketed {
		return netip.AddrPort{}, fmt.Errorf("%s %q: %s IPv6 address %q must be in brackets: [%s]:%d", kind, s, what, host, host, p)
	}
	if a.Is4In6() {
		a = a.Unmap()
	}
	return netip.AddrPortFrom(a, p), nil
}

// ParseForward reads "tcp|udp:[LISTENADDR:]PORT=REMOTEADDR:PORT".
func ParseForward(s string) (Forward, error) {
	const kind = "forward"
	network, left, right, err := splitSpec(kind, s)
	if err != nil {
		return Forward{}, err
	}
	f := Forward{Network: network}
	if !strings.Contains(left, ":") {
		p, err := parsePort(kind, s, "listening", left)
		if err != nil {
			return Forward{}, err
		}
		f.Listen = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), p)
	} else if f.Listen, err = parseAddrPort(kind, s, "listening", left); err != nil {
		return Forward{}, err
	}
	if f.Remote, err = parseAddrPort(kind, s, "remote", right); err != nil {
		return Forward{}, err
	}
	if f.Remote.Addr().IsUnspecified() {
		return Forward{}, fmt.Errorf("%s %q: remote address %v is unspecified", kind, s, f.Remote.Addr())
	}
	return f, nil
}

// ParseExpose reads "tcp|udp:PORT=HOSTADDR:PORT".
func ParseExpose(s string) (Expose, error) {
	const kind = "expose"
	network, left, right, err := splitSpec(kind, s)
	if err != nil {
		return Expose{}, err
	}
	e := Expose{Network: network}
	if e.Port, err = parsePort(kind, s, "tunnel-side", left); err != nil {
		return Expose{}, err
	}
	if e.Host, err = parseAddrPort(kind, s, "host", right); err != nil {
		return Expose{}, err
	}
	if e.Host.Addr().IsUnspecified() {
		return Expose{}, fmt.Errorf("%s %q: host address %v is unspecified", kind, s, e.Host.Addr())
	}
	return e, nil
}

// Forward listens on the host at f.Listen and relays each connection (TCP)
// or client flow (UDP) through the tunnel to f.Remote.
func (ns *Netstack) Forward(f Forward) (*Server, error) {
	if _, ok := ns.addrFor(f.Remote.Addr()); !ok {
		return nil, fmt.Errorf("forward %v: the netstack has no address of the remote's family", f)
	}
	s := newServer("forward "+f.String(), ns.Logf)
	if err := ns.track(s); err != nil {
		return nil, err
	}
	switch f.Network {
	case "tcp":
		l, err := net.Listen("tcp", f.Listen.String())
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("forward %v: %w", f, err)
		}
		s.addListener(l)
		s.serveTCP(l, func(ctx context.Context) (net.Conn, error) { return ns.DialTCP(ctx, f.Remote) })
	case "udp":
		pc, err := net.ListenPacket("udp", f.Listen.String())
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("forward %v: %w", f, err)
		}
		s.addPacketConn(pc)
		s.serveUDP(pc, func() (net.Conn, error) { return ns.DialUDP(f.Remote) })
	default:
		s.Close()
		return nil, fmt.Errorf("forward %v: unknown protocol %q", f, f.Network)
	}
	return s, nil
}

// Expose listens inside the tunnel, on every address of the netstack at
// e.Port, and relays each connection or flow to e.Host from the host.
func (ns *Netstack) Expose(e Expose) (*Server, error) {
	s := newServer("expose "+e.String(), ns.Logf)
	if err := ns.track(s); err != nil {
		return nil, err
	}
	var d net.Dialer
	for _, a := range ns.addrs {
		ap := netip.AddrPortFrom(a, e.Port)
		switch e.Network {
		case "tcp":
			l, err := ns.ListenTCP(ap)
			if err != nil {
				s.Close()
				return nil, fmt.Errorf("expose %v: %w", e, err)
			}
			s.addListener(l)
			s.serveTCP(l, func(ctx context.Context) (net.Conn, error) {
				return d.DialContext(ctx, "tcp", e.Host.String())
			})
		case "udp":
			pc, err := ns.ListenUDP(ap)
			if err != nil {
				s.Close()
				return nil, fmt.Errorf("expose %v: %w", e, err)
			}
			s.addPacketConn(pc)
			s.serveUDP(pc, func() (net.Conn, error) { return d.Dial("udp", e.Host.String()) })
		default:
			s.Close()
			return nil, fmt.Errorf("expose %v: unknown protocol %q", e, e.Network)
		}
	}
	return s, nil
}
