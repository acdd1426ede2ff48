package ctl

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sockDir returns a short temporary directory: unix socket paths are
// limited to 108 bytes, and t.TempDir's names grow with the test's name.
func sockDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

type testLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *testLog) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *testLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// startServer serves h on a fresh socket and returns its path.
func startServer(t testing.TB, h Handler, tune func(*Server)) (string, *Server, *testLog) {
	t.Helper()
	path := filepath.Join(sockDir(t), "pluto.ctl")
	ln, err := Listen(path, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	lg := &testLog{}
	s := NewServer(ln, h, lg.logf)
	if tune != nil {
		tune(s)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after Close")
		}
	})
	return path, s, lg
}

func dial(t testing.TB, path string) *Client {
	t.Helper()
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// echo answers with the request as Data.
func echo(ctx context.Context, req *Request, log func(string)) *Result {
	res, err := WithData("did "+req.Command, req)
	if err != nil {
		return Errorf(StatusFailed, "%v", err)
	}
	return res
}

func TestRoundTrip(t *testing.T) {
	path, _, _ := startServer(t, echo, nil)
	c := dial(t, path)
	reqs := []*Request{
		{Command: CmdUp, Name: "west-east", Config: "/etc/ipsec.conf", Args: map[string]string{"k": "v"}},
		{Command: CmdStatus, JSON: true},
		{Command: CmdDebug, Args: map[string]string{ArgSet: "base no-crypt"}},
	}
	for _, req := range reqs {
		res, err := c.Do(ctxT(t), req, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != StatusOK || res.Text != "did "+req.Command {
			t.Fatalf("%s: got %+v", req.Command, res)
		}
		var got Request
		if err := json.Unmarshal(res.Data, &got); err != nil {
			t.Fatal(err)
		}
		want := *req
		want.Version = Version
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("server saw %+v, want %+v", got, want)
		}
	}
}

func TestWireFormat(t *testing.T) {
	b, err := json.Marshal(&Request{Version: 1, Command: CmdUp, Name: "a", JSON: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"v":1,"command":"up","name":"a","json":true}`; string(b) != want {
		t.Errorf("request encodes as %s, want %s", b, want)
	}
	b, _ = json.Marshal(message{Type: msgLog, Line: "x"})
	if want := `{"type":"log","line":"x"}`; string(b) != want {
		t.Errorf("log encodes as %s, want %s", b, want)
	}
	b, _ = json.Marshal(message{Type: msgResult, Result: &Result{Status: 5, Error: "no"}})
	if want := `{"type":"result","status":5,"error":"no"}`; string(b) != want {
		t.Errorf("result encodes as %s, want %s", b, want)
	}
}

func TestLogsStreamBeforeResult(t *testing.T) {
	const n = 200
	firstSeen := make(chan struct{})
	h := func(ctx context.Context, req *Request, log func(string)) *Result {
		log("line 0")
		// The result must not be needed to see a log line: wait for the
		// client to have received the first one.
		select {
		case <-firstSeen:
		case <-ctx.Done():
			return Errorf(StatusFailed, "cancelled")
		case <-time.After(5 * time.Second):
			return Errorf(StatusFailed, "log line was not streamed")
		}
		for i := 1; i < n; i++ {
			log(fmt.Sprintf("line %d", i))
		}
		return OK("done")
	}
	path, _, _ := startServer(t, h, nil)
	c := dial(t, path)
	var got []string
	res, err := c.Do(ctxT(t), &Request{Command: CmdUp, Name: "x"}, func(line string) {
		if len(got) == 0 {
			close(firstSeen)
		}
		got = append(got, line)
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusOK {
		t.Fatalf("result %+v", res)
	}
	if len(got) != n {
		t.Fatalf("got %d lines, want %d", len(got), n)
	}
	for i, line := range got {
		if line != fmt.Sprintf("line %d", i) {
			t.Fatalf("line %d is %q", i, line)
		}
	}
}

// rawConn sends hand-made frames.
type rawConn struct {
	t    testing.TB
	conn net.Conn
}

func rawDial(t testing.TB, path string) *rawConn {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t, conn}
}

func (r *rawConn) send(body string) {
	r.t.Helper()
	if _, err := r.conn.Write(appendFrame(nil, []byte(body))); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) result() *Result {
	r.t.Helper()
	for {
		b, err := readFrame(r.conn, MaxReplySize)
		if err != nil {
			r.t.Fatalf("reading reply: %v", err)
		}
		var m message
		if err := json.Unmarshal(b, &m); err != nil {
			r.t.Fatal(err)
		}
		if m.Type == msgResult {
			return m.Result
		}
	}
}

func (r *rawConn) wantEOF() {
	r.t.Helper()
	var b [1]byte
	if _, err := r.conn.Read(b[:]); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		r.t.Fatalf("want the connection closed, got %v", err)
	}
}

func TestBadRequests(t *testing.T) {
	path, _, _ := startServer(t, echo, nil)
	r := rawDial(t, path)
	for _, tc := range []struct {
		body   string
		status int
		errHas string
	}{
		{`{not json`, StatusBadRequest, "malformed"},
		{``, StatusBadRequest, "malformed"},
		{`[1,2]`, StatusBadRequest, "malformed"},
		{`{"v":1,"command":"up"} trailing`, StatusBadRequest, "malformed"},
		{`{"v":1,"command":7}`, StatusBadRequest, "malformed"},
		{`{"command":"status"}`, StatusBadRequest, "version 0 (supported: 1)"},
		{`{"v":2,"command":"status"}`, StatusBadRequest, "version 2 (supported: 1)"},
		{`null`, StatusBadRequest, "version 0"},
		{`{"v":1}`, StatusBadRequest, "no command"},
		{`{"v":1,"command":"frobnicate"}`, StatusUnknownCommand, `unknown command "frobnicate"`},
		{`{"v":1,"command":"up"}`, StatusBadRequest, "needs a connection name"},
		{`{"v":1,"command":"debug"}`, StatusBadRequest, `needs argument "set"`},
		{`{"v":1,"command":"ping"}`, StatusOK, ""},
	} {
		r.send(tc.body)
		res := r.result()
		if res.Status != tc.status || !strings.Contains(res.Error, tc.errHas) {
			t.Errorf("%s: got status %d %q, want %d %q", tc.body, res.Status, res.Error, tc.status, tc.errHas)
		}
	}
}

func TestOversize(t *testing.T) {
	path, _, _ := startServer(t, echo, nil)
	r := rawDial(t, path)
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], MaxRequestSize+1)
	if _, err := r.conn.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	res := r.result()
	if res.Status != StatusBadRequest || !strings.Contains(res.Error, "too large") {
		t.Fatalf("got %+v", res)
	}
	r.wantEOF()

	// The daemon goes on.
	res, err := dial(t, path).Do(ctxT(t), &Request{Command: CmdPing}, nil)
	if err != nil || res.Status != StatusOK {
		t.Fatalf("after an oversized request: %+v, %v", res, err)
	}

	// Exactly the limit is fine (and malformed, here).
	r = rawDial(t, path)
	r.send(strings.Repeat(" ", MaxRequestSize))
	if res := r.result(); res.Status != StatusBadRequest || !strings.Contains(res.Error, "malformed") {
		t.Fatalf("got %+v", res)
	}
	// The client refuses to send an oversized request.
	big := &Request{Command: CmdPing, Args: map[string]string{"x": strings.Repeat("x", MaxRequestSize)}}
	if _, err := dial(t, path).Do(ctxT(t), big, nil); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("client sent an oversized request: %v", err)
	}
}

func TestHangUpCancelsRequest(t *testing.T) {
	before := runtime.NumGoroutine()
	started := make(chan struct{})
	cancelled := make(chan struct{})
	h := func(ctx context.Context, req *Request, log func(string)) *Result {
		close(started)
		<-ctx.Done()
		close(cancelled)
		for range 100 {
			log("talking to nobody") // must be dropped, not panic or block
		}
		return OK("too late")
	}
	path, s, _ := startServer(t, h, nil)
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Do(ctx, &Request{Command: CmdUp, Name: "x"}, nil)
		errc <- err
	}()
	<-started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Do after cancel: %v", err)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("handler's ctx not cancelled after the client hung up")
	}
	if _, err := c.Do(context.Background(), &Request{Command: CmdPing}, nil); err == nil {
		t.Error("a client is usable after a cancelled Do")
	}
	c.Close()
	s.Close()
	// No goroutine is left behind.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

func TestPanickingHandler(t *testing.T) {
	h := func(ctx context.Context, req *Request, log func(string)) *Result {
		if req.Command == CmdUp {
			log("about to fall over")
			panic("boom")
		}
		if req.Command == CmdDown {
			return nil
		}
		return OK("pong")
	}
	path, _, lg := startServer(t, h, nil)
	c := dial(t, path)
	res, err := c.Do(ctxT(t), &Request{Command: CmdUp, Name: "x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusFailed || !strings.Contains(res.Error, "internal error") {
		t.Errorf("got %+v", res)
	}
	if !strings.Contains(lg.String(), "panicked: boom") {
		t.Errorf("panic not logged: %q", lg.String())
	}
	res, err = c.Do(ctxT(t), &Request{Command: CmdDown, Name: "x"}, nil)
	if err != nil || res.Status != StatusFailed {
		t.Errorf("nil result: %+v, %v", res, err)
	}
	// The same connection goes on working.
	res, err = c.Do(ctxT(t), &Request{Command: CmdPing}, nil)
	if err != nil || res.Text != "pong" {
		t.Fatalf("after a panic: %+v, %v", res, err)
	}
}

func TestLateLogLinesDropped(t *testing.T) {
	release := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	h := func(ctx context.Context, req *Request, log func(string)) *Result {
		if req.Command == CmdUp {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-release
				log("late line")
			}()
			return OK("up")
		}
		close(release)
		time.Sleep(50 * time.Millisecond)
		return OK("pong")
	}
	path, _, _ := startServer(t, h, nil)
	c := dial(t, path)
	if _, err := c.Do(ctxT(t), &Request{Command: CmdUp, Name: "x"}, nil); err != nil {
		t.Fatal(err)
	}
	var lines []string
	if _, err := c.Do(ctxT(t), &Request{Command: CmdPing}, func(l string) { lines = append(lines, l) }); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 0 {
		t.Errorf("a line from an earlier request leaked into a later one: %q", lines)
	}
}

func TestCloseCancelsAndWaits(t *testing.T) {
	started := make(chan struct{})
	var returned bool
	h := func(ctx context.Context, req *Request, log func(string)) *Result {
		if req.Command == CmdPing {
			return OK("pong")
		}
		close(started)
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond)
		returned = true
		return Errorf(StatusFailed, "pluto is shutting down")
	}
	path, s, _ := startServer(t, h, nil)
	c := dial(t, path)
	idle := dial(t, path) // an idle connection must not hold Close up
	if _, err := idle.Do(ctxT(t), &Request{Command: CmdPing}, nil); err != nil {
		t.Fatal(err)
	}
	resc := make(chan *Result, 1)
	go func() {
		res, _ := c.Do(context.Background(), &Request{Command: CmdUp, Name: "x"}, nil)
		resc <- res
	}()
	<-started
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !returned {
		t.Error("Close returned before the handler")
	}
	if res := <-resc; res == nil || !strings.Contains(res.Error, "shutting down") {
		t.Errorf("client got %+v, want the handler's result", res)
	}
	if _, err := Dial(path); err == nil {
		t.Error("still accepting after Close")
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("Close removed the socket: %v", err)
	}
}

func TestIdleTimeout(t *testing.T) {
	path, _, _ := startServer(t, echo, func(s *Server) {
		s.IdleTimeout = 50 * time.Millisecond
		s.FrameTimeout = 50 * time.Millisecond
	})
	rawDial(t, path).wantEOF()
	// A half-sent frame is dropped too.
	r := rawDial(t, path)
	r.conn.Write([]byte{0, 0})
	r.wantEOF()
}

func TestQuietWhileRunningIsNotIdle(t *testing.T) {
	h := func(ctx context.Context, req *Request, log func(string)) *Result {
		select {
		case <-time.After(300 * time.Millisecond):
			return OK("slow but fine")
		case <-ctx.Done():
			return Errorf(StatusFailed, "cancelled")
		}
	}
	path, _, _ := startServer(t, h, func(s *Server) { s.IdleTimeout = 50 * time.Millisecond })
	res, err := dial(t, path).Do(ctxT(t), &Request{Command: CmdUp, Name: "x"}, nil)
	if err != nil || res.Status != StatusOK {
		t.Fatalf("got %+v, %v", res, err)
	}
}

func TestMaxConns(t *testing.T) {
	path, _, _ := startServer(t, echo, func(s *Server) { s.MaxConns = 2 })
	for range 2 {
		if _, err := dial(t, path).Do(ctxT(t), &Request{Command: CmdPing}, nil); err != nil {
			t.Fatal(err)
		}
	}
	res, err := dial(t, path).Do(ctxT(t), &Request{Command: CmdPing}, nil)
	if err != nil || res.Status != StatusFailed || !strings.Contains(res.Error, "too many") {
		t.Fatalf("third connection: %+v, %v", res, err)
	}
}

func TestListenMode(t *testing.T) {
	dir := sockDir(t)
	check := func(path string, mode os.FileMode, gid int) {
		t.Helper()
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want socket %v", path, fi.Mode(), mode)
		}
		if st := fi.Sys().(*syscall.Stat_t); gid >= 0 && int(st.Gid) != gid {
			t.Errorf("%s: gid %d, want %d", path, st.Gid, gid)
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".ctl") {
				t.Errorf("left behind %s", e.Name())
			}
		}
	}

	p := filepath.Join(dir, "a.ctl")
	ln, err := Listen(p, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	check(p, 0o600, -1)
	if got := ln.Addr().String(); got != p {
		t.Errorf("Addr %s, want %s", got, p)
	}
	// It answers at its final path.
	go func(ln net.Listener) {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}(ln)
	c, err := net.Dial("unix", p)
	if err != nil {
		t.Fatalf("dialling the socket: %v", err)
	}
	c.Close()
	ln.Close()

	gid := os.Getgid()
	p = filepath.Join(dir, "b.ctl")
	ln, err = Listen(p, 0, strconv.Itoa(gid))
	if err != nil {
		t.Fatal(err)
	}
	check(p, 0o660, gid)
	ln.Close()

	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		p = filepath.Join(dir, "c.ctl")
		ln, err = Listen(p, 0o640, g.Name)
		if err != nil {
			t.Fatal(err)
		}
		check(p, 0o640, gid)
		ln.Close()
	}

	for _, bad := range []struct {
		mode  os.FileMode
		group string
	}{{0o666, ""}, {0o602, ""}, {0o1600, ""}, {0, "no-such-group-goswan"}} {
		p := filepath.Join(dir, "bad.ctl")
		if ln, err := Listen(p, bad.mode, bad.group); err == nil {
			ln.Close()
			t.Errorf("Listen(%v, %q) succeeded", bad.mode, bad.group)
		}
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("Listen(%v, %q) failed but left %s", bad.mode, bad.group, p)
		}
	}
}

func TestListenStale(t *testing.T) {
	dir := sockDir(t)
	path := filepath.Join(dir, "pluto.ctl")

	// A socket that nothing answers on, left by a daemon that died.
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close()
	ln, err := Listen(path, 0, "")
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	// A live one is left alone.
	if ln2, err := Listen(path, 0, ""); err == nil {
		ln2.Close()
		t.Fatal("Listen took over a live socket")
	} else if !strings.Contains(err.Error(), "in use") {
		t.Errorf("error %q does not say the socket is in use", err)
	}
	if c, err := net.Dial("unix", path); err != nil {
		t.Errorf("live socket broken: %v", err)
	} else {
		c.Close()
	}

	// A file that is not a socket is never removed.
	file := filepath.Join(dir, "file.ctl")
	os.WriteFile(file, []byte("precious"), 0o600)
	if ln3, err := Listen(file, 0, ""); err == nil {
		ln3.Close()
		t.Fatal("Listen replaced a regular file")
	}
	if b, _ := os.ReadFile(file); string(b) != "precious" {
		t.Error("regular file changed")
	}
}

func TestClientServerGone(t *testing.T) {
	dir := sockDir(t)
	path := filepath.Join(dir, "pluto.ctl")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := ln.Accept()
		if err == nil {
			readFrame(c, MaxRequestSize)
			c.Write(appendFrame(nil, []byte(`{"type":"log","line":"x"}`)))
			c.Close()
		}
	}()
	defer ln.Close()
	c := dial(t, path)
	if _, err := c.Do(ctxT(t), &Request{Command: CmdPing}, nil); err == nil || !strings.Contains(err.Error(), "closed the connection") {
		t.Errorf("got %v", err)
	}
}
