package socket

// Raw ESP (IP protocol 50, RFC 4303) for a data plane in this process: one
// raw socket per address family (or per --listen address), which needs
// CAP_NET_RAW. The kernel hands a raw IPv4 socket whole packets, IP header
// included, and a raw IPv6 socket only the payload; x/net's PacketConn
// strips the IPv4 header, so both give the ESP packet (SPI to ICV), and
// the destination comes with IP_PKTINFO / IPV6_RECVPKTINFO. Sending gives
// the kernel the ESP packet and the peer's address: the kernel writes the
// IP header (protocol 50), and on a wildcard socket IP_PKTINFO /
// IPV6_PKTINFO picks the source address.
//
// A raw socket gets a copy of every protocol-50 packet the host receives
// (to its addresses), whatever else takes them: the data plane tells its
// own by the SPI and drops the rest.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// ProtoESP is the IP protocol number of ESP.
const ProtoESP = 50

// RawESPConfig says what to bind and where received ESP goes.
type RawESPConfig struct {
	Listen []netip.Addr // empty: the wildcard address of each family
	// OnESP takes each received ESP packet (SPI to ICV; the IP header
	// stripped) that arrived from remote on local. It is called on the
	// socket's reading goroutine with a buffer that is reused after it
	// returns.
	OnESP func(local, remote netip.Addr, pkt []byte)
	Logf  func(format string, args ...any)
}

// RawESPCounters are the raw sockets' statistics.
type RawESPCounters struct {
	In, Out, SendErrors uint64
}

// RawESP is a set of raw ESP sockets.
type RawESP struct {
	cfg   RawESPConfig
	socks []*rawSock
	wg    sync.WaitGroup

	in, out, sendErr atomic.Uint64
}

type rawSock struct {
	pktConn
	conn  *net.IPConn
	local netip.Addr // unspecified for wildcard
}

// OpenRawESP opens the raw ESP sockets and starts reading. Without
// CAP_NET_RAW it fails (EPERM): the caller carries ESP in UDP only.
// A missing IPv6 on a host without --listen addresses is logged, not an
// error.
func OpenRawESP(cfg RawESPConfig) (*RawESP, error) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.OnESP == nil {
		return nil, errors.New("raw ESP socket: RawESPConfig.OnESP is nil")
	}
	r := &RawESP{cfg: cfg}
	addrs := cfg.Listen
	if len(addrs) == 0 {
		addrs = []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}
	}
	for _, a := range addrs {
		so, err := openRaw(a.Unmap())
		if err != nil {
			if a.IsUnspecified() && a.Is6() && len(cfg.Listen) == 0 && len(r.socks) > 0 {
				cfg.Logf("no IPv6 raw ESP socket: %v", err)
				continue
			}
			r.closeSocks()
			return nil, err
		}
		r.socks = append(r.socks, so)
	}
	for _, so := range r.socks {
		cfg.Logf("listening for raw ESP (IP protocol 50) on %s", so.local)
		r.wg.Add(1)
		go r.read(so)
	}
	return r, nil
}

func openRaw(a netip.Addr) (*rawSock, error) {
	network := "ip4:50"
	if a.Is6() {
		network = "ip6:50"
	}
	conn, err := net.ListenIP(network, &net.IPAddr{IP: a.AsSlice()})
	if err != nil {
		return nil, fmt.Errorf("raw ESP socket on %s: %w", a, err)
	}
	setBuffersRaw(conn, SocketBuffer)
	so := &rawSock{conn: conn, local: a, pktConn: pktConn{wildcard: a.IsUnspecified()}}
	if a.Is4() {
		so.pc4 = ipv4.NewPacketConn(conn)
		if err := so.pc4.SetControlMessage(ipv4.FlagDst, true); err != nil {
			conn.Close()
			return nil, fmt.Errorf("raw ESP socket on %s: asking for destination addresses: %w", a, err)
		}
	} else {
		so.pc6 = ipv6.NewPacketConn(conn)
		if err := so.pc6.SetControlMessage(ipv6.FlagDst, true); err != nil {
			conn.Close()
			return nil, fmt.Errorf("raw ESP socket on %s: asking for destination addresses: %w", a, err)
		}
	}
	return so, nil
}

func setBuffersRaw(c *net.IPConn, n int) {
	c.SetReadBuffer(n)
	c.SetWriteBuffer(n)
}

func (r *RawESP) read(so *rawSock) {
	defer r.wg.Done()
	buf := make([]byte, MaxDatagram)
	for {
		n, local, remote, err := so.recv(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.cfg.Logf("raw ESP socket %s: %v", so.local, err)
			continue
		}
		if n < 8 { // SPI and sequence number at least
			continue
		}
		r.in.Add(1)
		r.cfg.OnESP(local, remote, buf[:n])
	}
}

// recv reads one ESP packet (the IPv4 header stripped by x/net) and says
// which local address it was sent to.
func (so *rawSock) recv(buf []byte) (int, netip.Addr, netip.Addr, error) {
	local := so.local
	n, dst, src, err := so.readFrom(buf)
	if dst.IsValid() {
		local = dst
	}
	if err != nil {
		return 0, local, netip.Addr{}, err
	}
	ia, ok := src.(*net.IPAddr)
	if !ok {
		return 0, local, netip.Addr{}, fmt.Errorf("packet from a non-IP address %v", src)
	}
	remote, ok := netip.AddrFromSlice(ia.IP)
	if !ok {
		return 0, local, netip.Addr{}, fmt.Errorf("packet from a bad address %v", src)
	}
	return n, local, remote.Unmap(), nil
}

// Send transmits one ESP packet (SPI to ICV) from local to remote in an IP
// packet of protocol 50 that the kernel builds. local must be a bound
// address, or any address of a family bound by a wildcard socket. pkt is
// not kept.
func (r *RawESP) Send(local, remote netip.Addr, pkt []byte) error {
	local, remote = local.Unmap(), remote.Unmap()
	so := r.find(local)
	if so == nil {
		r.sendErr.Add(1)
		return fmt.Errorf("no raw ESP socket bound to %s", local)
	}
	if err := so.writeTo(pkt, local, &net.IPAddr{IP: remote.AsSlice()}); err != nil {
		r.sendErr.Add(1)
		return fmt.Errorf("sending raw ESP to %s from %s: %w", remote, local, err)
	}
	r.out.Add(1)
	return nil
}

// find picks the socket for a local address: an exact binding first, then
// a wildcard socket of the same family.
func (r *RawESP) find(a netip.Addr) *rawSock {
	var wild *rawSock
	for _, so := range r.socks {
		if so.local == a {
			return so
		}
		if so.wildcard && so.local.Is4() == a.Is4() {
			wild = so
		}
	}
	return wild
}

// Counters returns the statistics so far.
func (r *RawESP) Counters() RawESPCounters {
	return RawESPCounters{In: r.in.Load(), Out: r.out.Load(), SendErrors: r.sendErr.Load()}
}

// Close stops reading and closes every socket.
func (r *RawESP) Close() error {
	r.closeSocks()
	r.wg.Wait()
	return nil
}

func (r *RawESP) closeSocks() {
	for _, so := range r.socks {
		so.conn.Close()
	}
}
