// Package socket owns the daemon's UDP sockets for IKE: the IKE port (500)
// and the NAT-T port (4500), on every --listen address or on the wildcard
// addresses of both families.
//
// Flow: one goroutine per socket reads datagrams. On the IKE port every
// datagram is IKE. On the NAT-T port (RFC 3948 §2.2) a single 0xff byte is
// a NAT keep-alive (dropped), four zero bytes (the non-ESP marker) start an
// IKE message (the marker is stripped), and anything else is ESP in UDP,
// handed to the data plane. Sending is the mirror image: a message sent
// from the NAT-T port gets the marker in front.
//
// Wildcard sockets learn each datagram's destination address from the
// kernel (IP_PKTINFO / IPV6_RECVPKTINFO, through x/net) and send replies
// from that same address, so that the IKE code always knows both ends.
package socket

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// SocketBuffer is the receive and send buffer size asked for each socket.
const SocketBuffer = 8 << 20

// MaxDatagram bounds what is read; IKE messages above it must be
// fragmented (RFC 7383) by the sender.
const MaxDatagram = 65535

// Config says what to bind and where received datagrams go. OnIKE and OnESP
// are called on the socket's reading goroutine with a buffer that is reused
// after they return: copy what must be kept.
type Config struct {
	Listen     []netip.Addr // empty: the wildcard address of each family
	IKEPort    int
	NATIKEPort int
	OnIKE      func(local, remote netip.AddrPort, msg []byte)
	OnESP      func(local, remote netip.AddrPort, pkt []byte) // nil: ESP is counted and dropped
	// OnESPBatch, when set, takes ESP instead of OnESP: the NAT-T socket's
	// reader (Linux: recvmmsg and UDP GRO) hands over the ESP packets of
	// each read that came from one remote to one local address together,
	// in the order they arrived. The packets are reused after it returns.
	OnESPBatch func(local, remote netip.AddrPort, pkts [][]byte)
	Logf       func(format string, args ...any)
}

// Counters are the sockets' statistics.
type Counters struct {
	IKEIn, ESPIn, Keepalives, Short, NoESPHandler, Out, SendErrors uint64
}

// Sockets is the set of bound sockets.
type Sockets struct {
	cfg   Config
	socks []*sock
	wg    sync.WaitGroup

	ikeIn, espIn, keepalives, short, noESP, out, sendErr atomic.Uint64
}

type sock struct {
	pktConn
	conn  *net.UDPConn
	local netip.AddrPort // bound address; unspecified address for wildcard
	natt  bool
	noGSO atomic.Bool     // UDP GSO failed once on this socket: send one by one
	rc    syscall.RawConn // NAT-T sockets with batched I/O (Linux)
}

// Open binds the sockets and starts reading. The ports must be free.
func Open(cfg Config) (*Sockets, error) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	s := &Sockets{cfg: cfg}
	addrs := cfg.Listen
	if len(addrs) == 0 {
		addrs = []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}
	}
	for _, a := range addrs {
		for _, port := range []int{cfg.IKEPort, cfg.NATIKEPort} {
			so, err := bind(a, port)
			if err != nil {
				if a.IsUnspecified() && a.Is6() && len(cfg.Listen) == 0 {
					cfg.Logf("no IPv6 IKE socket: %v", err)
					continue
				}
				s.closeSocks()
				return nil, err
			}
			so.natt = port == cfg.NATIKEPort
			s.socks = append(s.socks, so)
		}
	}
	for _, so := range s.socks {
		cfg.Logf("listening for IKE messages on %s%s", so.local, map[bool]string{true: " (NAT-T)"}[so.natt])
		s.startReader(so)
	}
	return s, nil
}

func bind(a netip.Addr, port int) (*sock, error) {
	network := "udp4"
	if a.Is6() && !a.Is4In6() {
		network = "udp6"
	}
	ap := netip.AddrPortFrom(a, uint16(port))
	conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, fmt.Errorf("binding IKE socket %s: %v", net.JoinHostPort(a.String(), strconv.Itoa(port)), err)
	}
	so := &sock{conn: conn, local: ap, pktConn: pktConn{wildcard: a.IsUnspecified()}}
	// ESP in UDP arrives in bursts on the NAT-T socket: ask for large
	// buffers (the kernel caps them at net.core.rmem_max / wmem_max
	// unless we may force more).
	setBuffers(conn, SocketBuffer)
	if network == "udp4" {
		so.pc4 = ipv4.NewPacketConn(conn)
		if so.wildcard {
			if err := so.pc4.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true); err != nil {
				conn.Close()
				return nil, fmt.Errorf("IKE socket %s: asking for destination addresses: %v", ap, err)
			}
		}
	} else {
		so.pc6 = ipv6.NewPacketConn(conn)
		if so.wildcard {
			if err := so.pc6.SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true); err != nil {
				conn.Close()
				return nil, fmt.Errorf("IKE socket %s: asking for destination addresses: %v", ap, err)
			}
		}
	}
	return so, nil
}

func (s *Sockets) read(so *sock) {
	defer s.wg.Done()
	buf := make([]byte, MaxDatagram)
	for {
		n, local, remote, err := so.recv(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.cfg.Logf("IKE socket %s: %v", so.local, err)
			continue
		}
		pkt := buf[:n]
		if !so.natt {
			s.ikeIn.Add(1)
			s.cfg.OnIKE(local, remote, pkt)
			continue
		}
		switch {
		case n == 1 && pkt[0] == 0xff:
			s.keepalives.Add(1)
		case n < 4:
			s.short.Add(1)
		case pkt[0] == 0 && pkt[1] == 0 && pkt[2] == 0 && pkt[3] == 0:
			s.ikeIn.Add(1)
			s.cfg.OnIKE(local, remote, pkt[4:])
		case s.cfg.OnESPBatch != nil:
			s.espIn.Add(1)
			one := [][]byte{pkt}
			s.cfg.OnESPBatch(local, remote, one)
		case s.cfg.OnESP == nil:
			s.noESP.Add(1)
		default:
			s.espIn.Add(1)
			s.cfg.OnESP(local, remote, pkt)
		}
	}
}

// recv reads one datagram and says which local address it was sent to.
func (so *sock) recv(buf []byte) (int, netip.AddrPort, netip.AddrPort, error) {
	local := so.local
	n, dst, src, err := so.readFrom(buf)
	if dst.IsValid() {
		local = netip.AddrPortFrom(dst, so.local.Port())
	}
	if err != nil {
		return 0, local, netip.AddrPort{}, err
	}
	ua, ok := src.(*net.UDPAddr)
	if !ok {
		return 0, local, netip.AddrPort{}, fmt.Errorf("datagram from a non-UDP address %v", src)
	}
	remote := ua.AddrPort()
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	return n, local, remote, nil
}

// Send transmits an IKE message from local to remote. A message from the
// NAT-T port gets the non-ESP marker. local must be a bound address, or
// any address of a family bound by a wildcard socket.
func (s *Sockets) Send(local, remote netip.AddrPort, msg []byte) error {
	so := s.find(local)
	if so == nil {
		s.sendErr.Add(1)
		return fmt.Errorf("no IKE socket bound to %s", local)
	}
	buf := msg
	if so.natt {
		buf = make([]byte, 4+len(msg))
		copy(buf[4:], msg)
	}
	if err := so.send(local.Addr(), remote, buf); err != nil {
		s.sendErr.Add(1)
		return fmt.Errorf("sending to %s from %s: %v", remote, local, err)
	}
	s.out.Add(1)
	return nil
}

// SendESP transmits an ESP-in-UDP packet from the NAT-T socket of local.
func (s *Sockets) SendESP(local, remote netip.AddrPort, pkt []byte) error {
	so := s.find(local)
	if so == nil || !so.natt {
		s.sendErr.Add(1)
		return fmt.Errorf("no NAT-T socket bound to %s", local)
	}
	return so.send(local.Addr(), remote, pkt)
}

// SendESPBatch transmits ESP-in-UDP packets, in order, from the NAT-T
// socket of local to remote: on Linux, runs of packets of one size go out
// in one system call with UDP GSO (UDP_SEGMENT), which is what a batch of
// segments of one TCP super-packet becomes. The packets are not kept.
func (s *Sockets) SendESPBatch(local, remote netip.AddrPort, pkts [][]byte) error {
	so := s.find(local)
	if so == nil || !so.natt {
		s.sendErr.Add(uint64(len(pkts)))
		return fmt.Errorf("no NAT-T socket bound to %s", local)
	}
	if len(pkts) == 0 {
		return nil
	}
	sent, err := so.sendBatch(local.Addr(), remote, pkts)
	if err != nil {
		s.sendErr.Add(uint64(len(pkts) - sent))
		return fmt.Errorf("sending ESP to %s from %s: %v", remote, local, err)
	}
	return nil
}

// sendEach sends pkts one by one.
func (so *sock) sendEach(src netip.Addr, dst netip.AddrPort, pkts [][]byte) (int, error) {
	for i, p := range pkts {
		if err := so.send(src, dst, p); err != nil {
			return i, err
		}
	}
	return len(pkts), nil
}

func (so *sock) send(src netip.Addr, dst netip.AddrPort, b []byte) error {
	return so.writeTo(b, src, net.UDPAddrFromAddrPort(dst))
}

// find picks the socket for a local address and port: an exact binding
// first, then a wildcard socket of the same family.
func (s *Sockets) find(local netip.AddrPort) *sock {
	a := local.Addr().Unmap()
	var wild *sock
	for _, so := range s.socks {
		if so.local.Port() != local.Port() {
			continue
		}
		if so.local.Addr() == a {
			return so
		}
		if so.wildcard && so.local.Addr().Is4() == a.Is4() {
			wild = so
		}
	}
	return wild
}

// Bound lists the bound addresses.
func (s *Sockets) Bound() []netip.AddrPort {
	var out []netip.AddrPort
	for _, so := range s.socks {
		out = append(out, so.local)
	}
	return out
}

// Counters returns the statistics so far.
func (s *Sockets) Counters() Counters {
	return Counters{
		IKEIn: s.ikeIn.Load(), ESPIn: s.espIn.Load(), Keepalives: s.keepalives.Load(), Short: s.short.Load(),
		NoESPHandler: s.noESP.Load(), Out: s.out.Load(), SendErrors: s.sendErr.Load(),
	}
}

// Close stops reading and closes every socket.
func (s *Sockets) Close() error {
	s.closeSocks()
	s.wg.Wait()
	return nil
}

func (s *Sockets) closeSocks() {
	for _, so := range s.socks {
		so.conn.Close()
	}
}
