package logging

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fixed is 7 Nov 2024 04:59:00.123456 in UTC: a one-digit day shows
// Libreswan's space-padded %e.
var fixed = time.Date(2024, time.November, 7, 4, 59, 0, 123456000, time.UTC)

func fixedNow() time.Time { return fixed }

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func equalLines(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestFileTimestamp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pluto.log")
	l, err := New(Options{File: path, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	l.Logf("Starting Pluto (goswan) pid:%d", 42)
	l.Warnf("cannot open %s", "x")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	equalLines(t, readLines(t, path), []string{
		"Nov  7 04:59:00.123456: Starting Pluto (goswan) pid:42",
		"Nov  7 04:59:00.123456: WARNING: cannot open x",
	})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("log file mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestFileAppendAndTruncate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pluto.log")
	write := func(o Options, msg string) {
		t.Helper()
		o.File, o.NoTime = path, true
		l, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		l.Logf("%s", msg)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	write(Options{}, "one")
	write(Options{}, "two")
	equalLines(t, readLines(t, path), []string{"one", "two"})
	write(Options{NoAppend: true}, "three")
	equalLines(t, readLines(t, path), []string{"three"})
	write(Options{}, "four")
	equalLines(t, readLines(t, path), []string{"three", "four"})
}

func TestFileError(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "no", "such", "dir", "pluto.log")
	_, err := New(Options{File: bad})
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("New with logfile %q: %v, want an error naming it", bad, err)
	}
}

// File wins over Stderr and Syslog, as in Libreswan's switch_log(): the
// unreachable syslog address is never dialled and stderr stays empty.
func TestDestinationPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pluto.log")
	var stderr bytes.Buffer
	l, err := newLogger(Options{
		File: path, Stderr: true, Syslog: true, NoTime: true,
		SyslogNetwork: "unixgram", SyslogAddr: filepath.Join(t.TempDir(), "nothing"),
	}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	l.Logf("to the file")
	l.Close()
	equalLines(t, readLines(t, path), []string{"to the file"})
	if stderr.Len() != 0 {
		t.Errorf("stderr got %q", stderr.String())
	}

	stderr.Reset()
	l, err = newLogger(Options{Stderr: true, Syslog: true, Now: fixedNow,
		SyslogNetwork: "unixgram", SyslogAddr: filepath.Join(t.TempDir(), "nothing")}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	l.Logf("to stderr")
	l.Close()
	if got, want := stderr.String(), "Nov  7 04:59:00.123456: to stderr\n"; got != want {
		t.Errorf("stderr got %q, want %q", got, want)
	}

	// nothing selected: sinks only
	l, err = newLogger(Options{}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	l.AddSink(func(line string) { got = append(got, line) })
	l.Logf("only to sinks")
	equalLines(t, got, []string{"only to sinks"})
}

func TestNoTimeDebugAndPrefixes(t *testing.T) {
	var out bytes.Buffer
	l, err := newLogger(Options{Stderr: true, NoTime: true, Debug: BaseAlias}, &out)
	if err != nil {
		t.Fatal(err)
	}
	l.Logf("normal")
	l.Debugf(Base, "base on")
	l.Debugf(Routing, "routing on")
	l.Debugf(Crypt, "crypt off")
	l.Debugf(Crypt|Base, "either on")
	if !l.Enabled(Base) || l.Enabled(Private) {
		t.Error("Enabled is wrong")
	}
	l.SetDebug(Crypt)
	if l.Debug() != Crypt {
		t.Errorf("Debug() = %v after SetDebug(crypt)", l.Debug())
	}
	l.Debugf(Base, "base now off")
	l.Debugf(Crypt, "crypt now on")
	dbg := l.DebugLogf(Crypt)
	dbg("via %s", "DebugLogf")
	l.Auditf("IKE SA established")
	l.Logf("two\nlines\n")
	l.Logf("bell\a and \r and tab\tkept")
	l.Logf("100%% printf rules")
	equalLines(t, strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"), []string{
		"normal",
		"| base on",
		"| routing on",
		"| either on",
		"| crypt now on",
		"| via DebugLogf",
		"audit: IKE SA established",
		"two",
		"lines",
		"bell? and ? and tab\tkept",
		"100% printf rules",
	})
}

func TestNoAudit(t *testing.T) {
	var out bytes.Buffer
	l, _ := newLogger(Options{Stderr: true, NoTime: true, NoAudit: true}, &out)
	var sunk []string
	l.AddSink(func(line string) { sunk = append(sunk, line) })
	l.Auditf("IKE SA established")
	l.Logf("kept")
	if out.String() != "kept\n" || len(sunk) != 1 {
		t.Errorf("with NoAudit wrote %q and sank %q", out.String(), sunk)
	}
}

func TestNoIP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pluto.log")
	l, err := New(Options{File: path, NoIP: true, Debug: BaseAlias, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	var sunk []string
	l.AddSink(func(line string) { sunk = append(sunk, line) })
	l.Logf("packet from %s: bad", "192.0.2.1:500")
	l.Debugf(Base, "sending to [%s]:4500 via %v", "2001:db8::1", "fe80::1%eth0")
	l.Warnf("peer %s at 04:59:00 dead:beef", "::1")
	l.Auditf("IKE SA established with 198.51.100.7")
	l.Close()
	want := []string{
		"packet from <endpoint>: bad",
		"| sending to <endpoint> via <address>",
		"WARNING: peer <address> at 04:59:00 dead:beef",
		"audit: IKE SA established with <address>",
	}
	var stamped []string
	for _, w := range want {
		stamped = append(stamped, "Nov  7 04:59:00.123456: "+w)
	}
	equalLines(t, readLines(t, path), stamped)
	equalLines(t, sunk, want)
}

func TestSyslog(t *testing.T) {
	dir, err := os.MkdirTemp("", "sl") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Skipf("no unixgram sockets here: %v", err)
	}
	defer conn.Close()

	l, err := New(Options{Syslog: true, SyslogNetwork: "unixgram", SyslogAddr: sock,
		NoIP: true, Debug: Base, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Logf("hello from %s", "192.0.2.1")
	l.Warnf("careful")
	l.Debugf(Base, "details")
	l.Auditf("SA up")

	want := []struct{ pri, text string }{
		{"<86>", "pluto[%d]: hello from <address>"}, // authpriv(10)*8 + info(6)
		{"<84>", "pluto[%d]: WARNING: careful"},     // warning(4)
		{"<87>", "pluto[%d]: | details"},            // debug(7)
		{"<86>", "pluto[%d]: audit: SA up"},
	}
	buf := make([]byte, 4096)
	for _, w := range want {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		msg := string(buf[:n])
		text := fmt.Sprintf(w.text, os.Getpid())
		if !strings.HasPrefix(msg, w.pri) || !strings.HasSuffix(msg, text+"\n") {
			t.Errorf("syslog got %q, want %s...%s", msg, w.pri, text)
		}
		if strings.Contains(msg, "Nov  7") {
			t.Errorf("syslog line carries our own timestamp: %q", msg)
		}
	}
}

func TestSyslogUnreachable(t *testing.T) {
	addr := filepath.Join(t.TempDir(), "nothing")
	_, err := New(Options{Syslog: true, SyslogNetwork: "unixgram", SyslogAddr: addr})
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("New with unreachable syslog: %v, want an error naming %s", err, addr)
	}
}

func TestSinks(t *testing.T) {
	var out bytes.Buffer
	l, _ := newLogger(Options{Stderr: true, Now: fixedNow}, &out)
	var a, b []string
	removeA := l.AddSink(func(line string) { a = append(a, line) })
	removeB := l.AddSink(func(line string) { b = append(b, line) })
	l.Logf("both")
	l.Debugf(Base, "debug off: nobody")
	l.SetDebug(Base)
	l.Debugf(Base, "debug on")
	removeA()
	removeA() // twice is harmless
	l.Warnf("only b")
	removeB()
	l.Logf("nobody")
	equalLines(t, a, []string{"both", "| debug on"})
	equalLines(t, b, []string{"both", "| debug on", "WARNING: only b"})
	if !strings.Contains(out.String(), "Nov  7 04:59:00.123456: nobody\n") {
		t.Errorf("stderr lacks the last line: %q", out.String())
	}
	// after Close, only sinks
	var c []string
	l.AddSink(func(line string) { c = append(c, line) })
	l.Close()
	out.Reset()
	l.Logf("after close")
	if out.Len() != 0 || len(c) != 1 {
		t.Errorf("after Close wrote %q and sank %q", out.String(), c)
	}
}

func TestNilLogger(t *testing.T) {
	var l *Logger
	l.Logf("x")
	l.Warnf("x")
	l.Debugf(All, "x")
	l.Auditf("x")
	l.SetDebug(All)
	if l.Enabled(All) || l.Debug() != None || l.Close() != nil {
		t.Error("nil Logger is not inert")
	}
}

// lockedBuffer lets the race detector see only the Logger's own locking.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func TestConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pluto.log")
	l, err := New(Options{File: path, NoIP: true})
	if err != nil {
		t.Fatal(err)
	}
	const writers, lines = 8, 200
	var wg sync.WaitGroup
	var sunk sync.Map
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				switch i % 4 {
				case 0:
					l.Logf("writer %d line %d from 192.0.2.%d", w, i, w)
				case 1:
					l.Debugf(Base, "writer %d line %d", w, i)
				case 2:
					l.SetDebug(l.Debug() ^ Base)
				case 3:
					remove := l.AddSink(func(line string) { sunk.Store(line, true) })
					l.Warnf("writer %d line %d", w, i)
					remove()
				}
			}
		}()
	}
	wg.Wait()
	l.Close()
	got := readLines(t, path)
	normal := 0
	for _, line := range got {
		// every line whole: timestamp, then one message
		if !strings.Contains(line, ": ") || strings.Count(line, "writer") != 1 {
			t.Fatalf("torn line %q", line)
		}
		if strings.Contains(line, "192.0.2.") {
			t.Fatalf("unmasked line %q", line)
		}
		if strings.Contains(line, " from <address>") {
			normal++
		}
	}
	if normal != writers*lines/4 {
		t.Errorf("got %d normal lines, want %d", normal, writers*lines/4)
	}
	n := 0
	sunk.Range(func(any, any) bool { n++; return true })
	if n < writers*lines/4 {
		t.Errorf("sinks saw %d distinct lines, want at least the %d warnings", n, writers*lines/4)
	}
}

func TestConcurrentStderr(t *testing.T) {
	var out lockedBuffer
	l, _ := newLogger(Options{Stderr: true, NoTime: true}, &out)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				l.Logf("w%d i%d", w, i)
			}
		}()
	}
	wg.Wait()
	if got := strings.Count(out.b.String(), "\n"); got != 400 {
		t.Errorf("got %d lines, want 400", got)
	}
}

func BenchmarkLogf(b *testing.B) {
	for _, noIP := range []bool{false, true} {
		b.Run(fmt.Sprintf("noip=%v", noIP), func(b *testing.B) {
			l, _ := newLogger(Options{Stderr: true, NoIP: noIP, Now: fixedNow}, discard{})
			b.ReportAllocs()
			for b.Loop() {
				l.Logf("%q #%d: initiating IKE_SA_INIT to %s", "west", 1, "192.1.2.23:500")
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
