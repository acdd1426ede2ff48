package tun

// A SOCKS5 proxy (RFC 1928) whose connections leave from the netstack:
// a host program pointed at it reaches the far side of the tunnel. It
// offers no authentication (bind it to a loopback address), CONNECT for
// TCP and UDP ASSOCIATE for UDP; BIND is refused. Destinations must be IP
// addresses: a domain name is answered with "host unreachable" because
// there is no resolver inside the tunnel.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// SOCKS5 reply codes (RFC 1928 §6).
const (
	socksOK             = 0x00
	socksFailure        = 0x01
	socksNetUnreachable = 0x03
	socksHostUnreach    = 0x04
	socksRefused        = 0x05
	socksCmdUnsupported = 0x07
	socksAddrUnsupport  = 0x08
)

const (
	socksCmdConnect  = 0x01
	socksCmdUDPAssoc = 0x03
	socksAtypIPv4    = 0x01
	socksAtypDomain  = 0x03
	socksAtypIPv6    = 0x04
)

// ServeSOCKS5 starts a SOCKS5 proxy listening on the host at listenAddr
// ("127.0.0.1:1080"; port 0 picks one, see Server.Addr).
func (ns *Netstack) ServeSOCKS5(listenAddr string) (*Server, error) {
	s := newServer("socks5 "+listenAddr, ns.Logf)
	if err := ns.track(s); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", listenAddr)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("socks5: %w", err)
	}
	s.addListener(l)
	s.goFunc(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if !s.track(c) {
				return
			}
			s.goFunc(func() {
				defer s.untrack(c)
				if err := ns.socksConn(s, c); err != nil {
					s.logf("socks5 %v: %v", c.RemoteAddr(), err)
				}
			})
		}
	})
	return s, nil
}

// readSocksAddr reads ATYP, address and port. For a domain name it returns
// ok=false after consuming it.
func readSocksAddr(r io.Reader) (ap netip.AddrPort, atyp byte, err error) {
	var b [1 + 255 + 2]byte
	if _, err = io.ReadFull(r, b[:1]); err != nil {
		return
	}
	atyp = b[0]
	var n int
	switch atyp {
	case socksAtypIPv4:
		n = 4
	case socksAtypIPv6:
		n = 16
	case socksAtypDomain:
		if _, err = io.ReadFull(r, b[:1]); err != nil {
			return
		}
		n = int(b[0])
	default:
		return ap, atyp, fmt.Errorf("address type %d is not 1, 3 or 4", atyp)
	}
	if _, err = io.ReadFull(r, b[:n+2]); err != nil {
		return
	}
	port := binary.BigEndian.Uint16(b[n : n+2])
	switch atyp {
	case socksAtypIPv4:
		ap = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), port)
	case socksAtypIPv6:
		ap = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[:16])).Unmap(), port)
	case socksAtypDomain:
		// An IP literal written as a name is fine.
		if a, perr := netip.ParseAddr(string(b[:n])); perr == nil {
			ap = netip.AddrPortFrom(a.Unmap(), port)
		}
	}
	return ap, atyp, nil
}

func appendSocksAddr(b []byte, ap netip.AddrPort) []byte {
	a := ap.Addr().Unmap()
	if a.Is4() {
		b = append(b, socksAtypIPv4)
	} else {
		b = append(b, socksAtypIPv6)
	}
	b = append(b, a.AsSlice()...)
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

func socksReply(c net.Conn, code byte, bound netip.AddrPort) error {
	if !bound.IsValid() {
		bound = netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	}
	_, err := c.Write(appendSocksAddr([]byte{5, code, 0}, bound))
	return err
}

func dialErrCode(err error) byte {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return socksHostUnreach
	case err != nil && containsAny(err.Error(), "refused"):
		return socksRefused
	case err != nil && containsAny(err.Error(), "unreachable", "no route"):
		return socksNetUnreachable
	}
	return socksFailure
}

func containsAny(s string, subs ...string) bool {
	for _, x := range subs {
		for i := 0; i+len(x) <= len(s); i++ {
			if s[i:i+len(x)] == x {
				return true
			}
		}
	}
	return false
}

func (ns *Netstack) socksConn(s *Server, c net.Conn) error {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return err
	}
	if h[0] != 5 {
		return fmt.Errorf("version %d is not SOCKS5", h[0])
	}
	methods := make([]byte, h[1])
	if _, err := io.ReadFull(c, methods); err != nil {
		return err
	}
	noAuth := false
	for _, m := range methods {
		noAuth = noAuth || m == 0
	}
	if !noAuth {
		c.Write([]byte{5, 0xff})
		return errors.New("the client offers no method this proxy has (only no-authentication)")
	}
	if _, err := c.Write([]byte{5, 0}); err != nil {
		return err
	}
	var req [3]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return err
	}
	if req[0] != 5 {
		return fmt.Errorf("request version %d is not SOCKS5", req[0])
	}
	dst, atyp, err := readSocksAddr(c)
	if err != nil {
		socksReply(c, socksAddrUnsupport, netip.AddrPort{})
		return err
	}
	switch req[1] {
	case socksCmdConnect:
		if !dst.IsValid() {
			socksReply(c, socksHostUnreach, netip.AddrPort{})
			return fmt.Errorf("CONNECT to a domain name (atyp %d): no name resolution inside the tunnel", atyp)
		}
		ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
		d, err := ns.DialTCP(ctx, dst)
		cancel()
		if err != nil {
			socksReply(c, dialErrCode(err), netip.AddrPort{})
			return fmt.Errorf("CONNECT %v: %w", dst, err)
		}
		if !s.track(d) {
			return nil
		}
		defer s.untrack(d)
		bound, _ := netip.ParseAddrPort(d.LocalAddr().String())
		if err := socksReply(c, socksOK, bound); err != nil {
			return err
		}
		c.SetDeadline(time.Time{})
		s.relay(c, d)
		return nil
	case socksCmdUDPAssoc:
		return ns.socksUDP(s, c)
	default:
		socksReply(c, socksCmdUnsupported, netip.AddrPort{})
		return fmt.Errorf("command %d is not supported (CONNECT and UDP ASSOCIATE are)", req[1])
	}
}

// socksUDP serves one UDP ASSOCIATE: a host UDP socket for the client's
// datagrams, netstack UDP sockets (one per family) towards the tunnel, for
// as long as the control connection c stays open.
func (ns *Netstack) socksUDP(s *Server, c net.Conn) error {
	lip, _ := netip.ParseAddrPort(c.LocalAddr().String())
	cip, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	hostPC, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lip.Addr(), 0)))
	if err != nil {
		socksReply(c, socksFailure, netip.AddrPort{})
		return fmt.Errorf("UDP ASSOCIATE: %w", err)
	}
	if !s.track(hostPC) {
		return nil
	}
	defer s.untrack(hostPC)
	bound, _ := netip.ParseAddrPort(hostPC.LocalAddr().String())
	if err := socksReply(c, socksOK, bound); err != nil {
		return err
	}
	c.SetDeadline(time.Time{})

	var (
		mu     sync.Mutex
		client netip.AddrPort // the client's UDP source, learned from its first datagram
		tunPC  [2]net.PacketConn
		wg     sync.WaitGroup
	)
	defer wg.Wait()
	tunnelSocket := func(dst netip.Addr) (net.PacketConn, error) {
		fam := 0
		if dst.Is6() {
			fam = 1
		}
		mu.Lock()
		defer mu.Unlock()
		if tunPC[fam] != nil {
			return tunPC[fam], nil
		}
		src, ok := ns.addrFor(dst)
		if !ok {
			return nil, fmt.Errorf("the netstack has no address of %v's family", dst)
		}
		pc, err := ns.ListenUDP(netip.AddrPortFrom(src, 0))
		if err != nil {
			return nil, err
		}
		if !s.track(pc) {
			return nil, net.ErrClosed
		}
		tunPC[fam] = pc
		wg.Add(1)
		go func() { // replies from the tunnel back to the client
			defer wg.Done()
			buf := make([]byte, 65535)
			for {
				n, from, err := pc.ReadFrom(buf[262:])
				if err != nil {
					return
				}
				fa, err := netip.ParseAddrPort(from.String())
				if err != nil {
					continue
				}
				h := appendSocksAddr([]byte{0, 0, 0}, fa)
				pkt := buf[262-len(h) : 262+n]
				copy(pkt, h)
				mu.Lock()
				to := client
				mu.Unlock()
				if to.IsValid() {
					hostPC.WriteToUDPAddrPort(pkt, to)
				}
			}
		}()
		return pc, nil
	}
	defer func() {
		mu.Lock()
		for _, pc := range tunPC {
			if pc != nil {
				s.untrack(pc)
			}
		}
		mu.Unlock()
	}()

	wg.Add(1)
	go func() { // datagrams from the client into the tunnel
		defer wg.Done()
		buf := make([]byte, 65535)
		for {
			n, from, err := hostPC.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if from.Addr().Unmap() != cip.Addr().Unmap() {
				continue // only the client of the control connection
			}
			mu.Lock()
			client = from
			mu.Unlock()
			p := buf[:n]
			if len(p) < 4 || p[2] != 0 {
				continue // short, or a fragment: not supported, dropped
			}
			r := &byteReader{b: p[3:]}
			dst, _, err := readSocksAddr(r)
			if err != nil || !dst.IsValid() {
				continue
			}
			pc, err := tunnelSocket(dst.Addr())
			if err != nil {
				s.logf("socks5 UDP to %v: %v", dst, err)
				continue
			}
			pc.WriteTo(r.b, net.UDPAddrFromAddrPort(dst))
		}
	}()
	// The association lasts as long as the control connection.
	io.Copy(io.Discard, c)
	hostPC.Close()
	mu.Lock()
	for _, pc := range tunPC {
		if pc != nil {
			pc.Close()
		}
	}
	mu.Unlock()
	return nil
}

type byteReader struct{ b []byte }

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}
