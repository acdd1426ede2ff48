package tun

// Server is what ServeSOCKS5, Forward and Expose start: listeners, one
// goroutine accepting (or reading) on each, and one or two goroutines per
// relayed connection or UDP flow. Close stops them all and waits.

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// udpIdle is how long a relayed UDP flow lives without a datagram either way.
const udpIdle = 2 * time.Minute

// Server relays connections for one SOCKS5 proxy, forward or expose.
type Server struct {
	name   string
	logf   func(format string, args ...any)
	ctx    context.Context // cancelled by Close: ends dials in progress
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	closers   map[io.Closer]struct{} // listeners, packet conns and live connections
	addrs     []net.Addr
	onClose   func()
	closeOnce sync.Once
}

func newServer(name string, logf func(string, ...any)) *Server {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{name: name, logf: logf, ctx: ctx, cancel: cancel, closers: map[io.Closer]struct{}{}}
}

// Addr returns the (first) address the server listens on.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.addrs) == 0 {
		return nil
	}
	return s.addrs[0]
}

// Addrs returns every address the server listens on.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]net.Addr(nil), s.addrs...)
}

// String names the server as it was asked for.
func (s *Server) String() string { return s.name }

// Close stops the listeners and every relayed connection, and waits for
// the server's goroutines to end.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		cl := make([]io.Closer, 0, len(s.closers))
		for c := range s.closers {
			cl = append(cl, c)
		}
		s.mu.Unlock()
		s.cancel()
		for _, c := range cl {
			c.Close()
		}
		s.wg.Wait()
		if s.onClose != nil {
			s.onClose()
		}
	})
	return nil
}

// track adds c to what Close closes; false (and c closed) when the server
// is already closing.
func (s *Server) track(c io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return false
	}
	s.closers[c] = struct{}{}
	return true
}

func (s *Server) untrack(c io.Closer) {
	s.mu.Lock()
	delete(s.closers, c)
	s.mu.Unlock()
	c.Close()
}

// goFunc runs f on a goroutine that Close waits for; false when closing.
func (s *Server) goFunc(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

func (s *Server) addListener(l net.Listener) bool {
	if !s.track(l) {
		return false
	}
	s.mu.Lock()
	s.addrs = append(s.addrs, l.Addr())
	s.mu.Unlock()
	return true
}

func (s *Server) addPacketConn(pc net.PacketConn) bool {
	if !s.track(pc) {
		return false
	}
	s.mu.Lock()
	s.addrs = append(s.addrs, pc.LocalAddr())
	s.mu.Unlock()
	return true
}

// serveTCP accepts on l and relays each connection to what dial opens.
func (s *Server) serveTCP(l net.Listener, dial func(ctx context.Context) (net.Conn, error)) {
	s.goFunc(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				if !s.isClosed() {
					s.logf("%s: accept: %v", s.name, err)
				}
				return
			}
			if !s.track(c) {
				return
			}
			s.goFunc(func() {
				defer s.untrack(c)
				ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
				d, err := dial(ctx)
				cancel()
				if err != nil {
					s.logf("%s: %v", s.name, err)
					return
				}
				if !s.track(d) {
					return
				}
				defer s.untrack(d)
				s.relay(c, d)
			})
		}
	})
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

type closeWriter interface{ CloseWrite() error }

// relay copies a to b and b to a until both directions end, passing on
// half-closes where the connections support them.
func (s *Server) relay(a, b net.Conn) {
	done := make(chan struct{})
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if cw, ok := dst.(closeWriter); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go func() {
		cp(b, a)
		close(done)
	}()
	cp(a, b)
	<-done
}

// serveUDP reads datagrams on pc and relays each client address's flow
// through its own socket from dial; replies go back from pc.
func (s *Server) serveUDP(pc net.PacketConn, dial func() (net.Conn, error)) {
	type flow struct {
		c    net.Conn
		last atomic.Int64
	}
	var mu sync.Mutex
	flows := map[string]*flow{}
	s.goFunc(func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				if !s.isClosed() && !errors.Is(err, net.ErrClosed) {
					s.logf("%s: read: %v", s.name, err)
				}
				return
			}
			key := from.String()
			mu.Lock()
			f := flows[key]
			mu.Unlock()
			if f == nil {
				c, err := dial()
				if err != nil {
					s.logf("%s: %v", s.name, err)
					continue
				}
				if !s.track(c) {
					return
				}
				f = &flow{c: c}
				f.last.Store(time.Now().UnixNano())
				mu.Lock()
				flows[key] = f
				mu.Unlock()
				s.goFunc(func() {
					defer func() {
						mu.Lock()
						delete(flows, key)
						mu.Unlock()
						s.untrack(c)
					}()
					rb := make([]byte, 65535)
					for {
						c.SetReadDeadline(time.Now().Add(udpIdle))
						n, err := c.Read(rb)
						if err != nil {
							var ne net.Error
							if errors.As(err, &ne) && ne.Timeout() &&
								time.Since(time.Unix(0, f.last.Load())) < udpIdle {
								continue
							}
							return
						}
						f.last.Store(time.Now().UnixNano())
						if _, err := pc.WriteTo(rb[:n], from); err != nil {
							return
						}
					}
				})
			}
			f.last.Store(time.Now().UnixNano())
			if _, err := f.c.Write(buf[:n]); err != nil {
				s.logf("%s: send to %v: %v", s.name, f.c.RemoteAddr(), err)
			}
		}
	})
}
