package ctl

// The server side.
//
// Flow: Serve accepts connections. Each connection gets two goroutines:
//
//   - serveConn runs the connection's requests one after another: it takes a
//     frame from the reader, decodes and validates it, calls the Handler with
//     a log function that streams lines back, then writes the result.
//   - readLoop owns every read from the socket. It reads the next frame while
//     the current request runs, and hands it over an unbuffered channel, so at
//     most one request is read ahead. Because it is always reading, it notices
//     a client that hangs up mid-request (EOF) and cancels the connection's
//     context, which cancels the running request's ctx.
//
// Deadlines: between requests a connection may be idle for IdleTimeout, then
// it is dropped. Once the first byte of a frame has arrived, the rest of the
// frame must follow within FrameTimeout. While a request runs, the idle
// deadline is only a poll: the connection is not dropped for being quiet.
// Every write has WriteTimeout, so a client that stops reading cannot block a
// handler for longer than that; a failed write marks the client gone,
// cancels its request and drops the rest of its log lines.
//
// Locking: Server.mu guards closed, active; srvConn.wmu serialises writes to
// one connection (a Handler may call log from several goroutines) and guards
// the per-request done flag, so a log line written after the handler
// returned is dropped instead of landing after the result.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Handler runs one request. It may call log any number of times, from any
// goroutine, until it returns; lines logged after it returns are dropped.
// ctx is cancelled when the client hangs up or the server closes; a Handler
// must honour it, since Server.Close waits for running handlers. A nil
// result is answered as StatusFailed. A Handler must not call Server.Close
// itself (Close waits for it): to stop the daemon on CmdShutdown, return a
// result and signal the daemon's main goroutine.
type Handler func(ctx context.Context, req *Request, log func(line string)) *Result

// Defaults of the Server's tunables.
const (
	DefaultMaxConns     = 64
	DefaultIdleTimeout  = 5 * time.Minute
	DefaultFrameTimeout = 30 * time.Second
	DefaultWriteTimeout = 30 * time.Second
)

// Server answers control requests on a listener with a Handler.
type Server struct {
	// MaxConns bounds the connections served at once; one more is answered
	// with StatusFailed and closed. Set before Serve.
	MaxConns int
	// IdleTimeout is how long a connection may wait between requests.
	IdleTimeout time.Duration
	// FrameTimeout is how long a client may take to finish sending a frame
	// it has begun.
	FrameTimeout time.Duration
	// WriteTimeout bounds each write of a log line or result.
	WriteTimeout time.Duration

	ln   net.Listener
	h    Handler
	logf func(format string, args ...any)

	ctx    context.Context // cancelled by Close; parent of every request's ctx
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	active int            // connections being served
	wg     sync.WaitGroup // one per connection being served
}

// NewServer returns a Server that will answer requests on ln with h. logf
// receives the server's own diagnostics (handler panics, dropped clients);
// it may be nil.
func NewServer(ln net.Listener, h Handler, logf func(format string, args ...any)) *Server {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		MaxConns:     DefaultMaxConns,
		IdleTimeout:  DefaultIdleTimeout,
		FrameTimeout: DefaultFrameTimeout,
		WriteTimeout: DefaultWriteTimeout,
		ln:           ln,
		h:            h,
		logf:         logf,
		ctx:          ctx,
		cancel:       cancel,
	}
}

// Serve accepts connections until Close, then returns nil. It returns the
// listener's error if accepting fails for another reason.
func (s *Server) Serve() error {
	var delay time.Duration
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			if isTemporary(err) {
				// Out of file descriptors and the like: back off, as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logf("ctl: accept: %v; retrying in %v", err, delay)
				select {
				case <-time.After(delay):
				case <-s.ctx.Done():
				}
				continue
			}
			return err
		}
		delay = 0
		switch s.admit() {
		case admitClosed:
			conn.Close()
			return nil
		case admitFull:
			s.logf("ctl: refusing a control connection: %d already open", s.MaxConns)
			s.refuse(conn, Errorf(StatusFailed, "too many control connections (limit %d); try again", s.MaxConns))
			continue
		}
		go func() {
			defer s.release()
			s.serveConn(conn)
		}()
	}
}

// Close stops accepting, cancels the ctx of every running request, drops
// idle connections and waits until every handler has returned and its
// result has been written (or failed to). It removes no files.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.ln.Close()
	s.cancel()
	s.wg.Wait()
	return err
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

type admission int

const (
	admitOK admission = iota
	admitFull
	admitClosed
)

// admit counts a new connection in, if the server is open and not full.
func (s *Server) admit() admission {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return admitClosed
	}
	limit := s.MaxConns
	if limit <= 0 {
		limit = DefaultMaxConns
	}
	if s.active >= limit {
		return admitFull
	}
	s.active++
	s.wg.Add(1)
	return admitOK
}

func (s *Server) release() {
	s.mu.Lock()
	s.active--
	s.mu.Unlock()
	s.wg.Done()
}

// refuse answers a connection it will not serve and closes it.
func (s *Server) refuse(conn net.Conn, res *Result) {
	b, err := json.Marshal(message{Type: msgResult, Result: res})
	if err == nil {
		conn.SetWriteDeadline(time.Now().Add(time.Second))
		conn.Write(appendFrame(nil, b))
	}
	conn.Close()
}

func isTemporary(err error) bool {
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EINTR) {
		return true
	}
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// srvConn is one client connection.
type srvConn struct {
	s    *Server
	conn net.Conn

	// pending counts requests handed to serveConn and not yet answered;
	// while it is non-zero the connection is not idle.
	pending atomic.Int32

	wmu  sync.Mutex
	dead bool // a write failed: the client is gone
}

// frameIn is what readLoop hands to serveConn.
type frameIn struct {
	body []byte
	err  error // only ErrFrameTooLarge; other read errors cancel the conn
}

// serveConn serves one connection until the client hangs up, a framing
// error, an idle timeout or Close.
func (s *Server) serveConn(conn net.Conn) {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	c := &srvConn{s: s, conn: conn}
	frames := make(chan frameIn)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		c.readLoop(ctx, cancel, frames)
	}()
	defer func() {
		cancel()
		conn.Close() // unblocks readLoop
		<-readerDone
	}()
	for {
		var f frameIn
		select {
		case f = <-frames:
		case <-ctx.Done():
			return
		}
		if f.err != nil {
			s.logf("ctl: dropping a control client: %v", f.err)
			c.writeResult(Errorf(StatusBadRequest, "%v", f.err))
			return
		}
		req, res := DecodeRequest(f.body)
		if res == nil {
			res = c.run(ctx, req)
		}
		ok := c.writeResult(res)
		c.pending.Add(-1)
		if !ok {
			return
		}
	}
}

// readLoop reads frames and hands them to serveConn. On EOF, a read error
// or a timeout it cancels the connection and returns.
func (c *srvConn) readLoop(ctx context.Context, cancel context.CancelFunc, frames chan<- frameIn) {
	defer cancel()
	idle := c.s.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	frameTimeout := c.s.FrameTimeout
	if frameTimeout <= 0 {
		frameTimeout = DefaultFrameTimeout
	}
	for {
		var hdr [frameHeaderLen]byte
		c.conn.SetReadDeadline(time.Now().Add(idle))
		n, err := c.conn.Read(hdr[:1])
		if err != nil {
			if isTimeout(err) && c.pending.Load() > 0 {
				continue // quiet while its request runs: not idle
			}
			return
		}
		if n == 0 {
			continue
		}
		c.conn.SetReadDeadline(time.Now().Add(frameTimeout))
		if _, err := readFull(c.conn, hdr[1:]); err != nil {
			return
		}
		body, err := readFrameBody(c.conn, hdr, MaxRequestSize)
		if err != nil {
			if !errors.Is(err, ErrFrameTooLarge) {
				return
			}
			c.pending.Add(1)
			select {
			case frames <- frameIn{err: err}:
			case <-ctx.Done():
			}
			// The stream is out of step now: read no more. serveConn
			// answers and closes; keep ctx alive until then.
			<-ctx.Done()
			return
		}
		c.pending.Add(1)
		select {
		case frames <- frameIn{body: body}:
		case <-ctx.Done():
			return
		}
	}
}

func readFull(conn net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := conn.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// run calls the handler for one valid request, streaming its log lines.
func (c *srvConn) run(ctx context.Context, req *Request) (res *Result) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lg := &requestLog{c: c, cancel: cancel}
	defer lg.finish()
	defer func() {
		if p := recover(); p != nil {
			c.s.logf("ctl: handler for %q panicked: %v\n%s", req.Command, p, debug.Stack())
			res = Errorf(StatusFailed, "internal error while running %q (see pluto's log)", req.Command)
		}
	}()
	res = c.s.h(ctx, req, lg.log)
	if res == nil {
		c.s.logf("ctl: handler for %q returned no result", req.Command)
		res = Errorf(StatusFailed, "internal error: no result for %q", req.Command)
	}
	return res
}

// requestLog is the log function handed to one Handler call.
type requestLog struct {
	c      *srvConn
	cancel context.CancelFunc
	done   bool // guarded by c.wmu
}

func (l *requestLog) log(line string) {
	l.c.wmu.Lock()
	defer l.c.wmu.Unlock()
	if l.done || l.c.dead {
		return
	}
	if !l.c.writeLocked(message{Type: msgLog, Line: line}) {
		l.cancel() // the client is gone: stop working for it
	}
}

func (l *requestLog) finish() {
	l.c.wmu.Lock()
	l.done = true
	l.c.wmu.Unlock()
}

// writeResult sends the final result; it reports whether the client can
// still be written to.
func (c *srvConn) writeResult(res *Result) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.dead {
		return false
	}
	return c.writeLocked(message{Type: msgResult, Result: res})
}

// writeLocked writes one message; c.wmu must be held. A failed write marks
// the connection dead.
func (c *srvConn) writeLocked(m message) bool {
	b, err := json.Marshal(m)
	if err == nil && len(b) > MaxReplySize {
		err = fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, len(b), MaxReplySize)
	}
	if err != nil {
		c.s.logf("ctl: cannot encode a %s message: %v", m.Type, err)
		if m.Type != msgResult {
			return true // drop the line, keep the client
		}
		b, _ = json.Marshal(message{Type: msgResult,
			Result: Errorf(StatusFailed, "internal error: cannot encode the result: %v", err)})
	}
	timeout := c.s.WriteTimeout
	if timeout <= 0 {
		timeout = DefaultWriteTimeout
	}
	c.conn.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.conn.Write(appendFrame(make([]byte, 0, frameHeaderLen+len(b)), b)); err != nil {
		c.dead = true
		return false
	}
	return true
}
