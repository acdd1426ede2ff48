// Package logging is pluto's log: the destinations of --stderrlog,
// --logfile and syslog, the line formats, --log-no-time, --log-no-append,
// --log-no-ip, --log-no-audit, the debug classes of --debug and
// plutodebug=, and the sinks that stream lines to control clients.
//
// Other packages do not import a global logger: they take a Logf (or a
// *Logger) from their caller.
//
// # Destinations
//
// As Libreswan 5's switch_log() (programs/pluto/log.c), a Logger writes
// to exactly one destination: the log file when Options.File is set
// (even with Options.Stderr; a file that cannot be opened is an error
// from New), else standard error when Options.Stderr is set, else syslog
// when Options.Syslog is set. With none of them, lines reach only the
// sinks. Syslog is never written alongside a file or standard error.
//
// # Line formats
//
// To a file or standard error, each line is
//
//	Nov  7 04:59:00.123456: text
//
// that is strftime "%b %e %T" plus ".%06ld: " as Libreswan writes it (the
// day is padded with a space), in the location of Options.Now's time
// (local time by default); with NoTime the prefix is left out. To syslog
// the line goes without a timestamp (syslog adds its own), tag "pluto",
// facility authpriv, with severity info for normal and audit lines,
// warning for Warnf and debug for Debugf. The text is:
//
//	normal   text
//	warning  WARNING: text
//	debug    | text
//	audit    audit: text
//
// A message holding newlines is written as one line per newline (each
// with the prefix, so a peer's string cannot forge a line); other control
// characters but tab are written as '?'.
//
// # Masking
//
// With NoIP every address in every line, whatever the caller formatted,
// is replaced by MaskedAddress or MaskedEndpoint (see MaskAddresses); the
// timestamp is added after masking. Audit lines are masked too: unlike
// Libreswan's, whose audit records go to the Linux audit subsystem with
// their addresses, ours are written to this log.
//
// # Locking
//
// A Logger is safe for concurrent use. One mutex serializes the writes
// to the destination so lines never interleave; the debug set is an
// atomic so Enabled costs one load. Sinks are called outside that mutex,
// each under its own mutex (see AddSink).
package logging

import (
	"errors"
	"fmt"
	"io"
	"log/syslog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Logf is the logging function other packages take: l.Logf (or
// l.DebugLogf(class)) satisfies it.
type Logf func(format string, args ...any)

// Discard is a Logf that writes nothing.
func Discard(string, ...any) {}

// Options say where and how a Logger writes. The zero value writes only
// to sinks.
type Options struct {
	// Stderr writes to standard error (--stderrlog).
	Stderr bool
	// File appends to this file (--logfile), creating it with mode
	// 0600; it takes precedence over Stderr and Syslog.
	File string
	// NoAppend truncates File instead of appending (--log-no-append).
	NoAppend bool
	// NoTime leaves the timestamp off file and stderr lines
	// (--log-no-time, logtime=no).
	NoTime bool
	// NoIP masks every IP address (--log-no-ip, logip=no).
	NoIP bool
	// NoAudit drops Auditf lines (--log-no-audit, audit-log=no).
	NoAudit bool
	// Syslog writes to syslog when neither File nor Stderr is set. The
	// caller decides; pluto sets it when neither --logfile nor
	// --stderrlog is given.
	Syslog bool
	// SyslogNetwork and SyslogAddr are passed to log/syslog.Dial; both
	// empty means the local syslog daemon (/dev/log). Tests point them
	// at a unixgram socket of their own.
	SyslogNetwork, SyslogAddr string
	// Debug is the initial set of debug classes.
	Debug Classes
	// Now gives the time for timestamps; nil means time.Now.
	Now func() time.Time
}

// Logger writes pluto's log lines. See the package comment for the
// destinations, formats and locking.
type Logger struct {
	noTime, noIP, noAudit bool
	now                   func() time.Time

	debug atomic.Uint64 // Classes

	// mu serializes writes to out and sys and guards closed.
	mu     sync.Mutex
	out    io.Writer      // file or stderr; nil when writing to syslog or nowhere
	file   *os.File       // to close; nil unless writing to a file
	sys    *syslog.Writer // nil unless writing to syslog
	closed bool

	// sinkMu serializes AddSink and removals; sinks is replaced, never
	// modified, so writers read it with one atomic load.
	sinkMu sync.Mutex
	sinks  atomic.Pointer[[]*sink]
}

type sink struct {
	mu      sync.Mutex // held while fn runs
	removed bool
	fn      func(line string)
}

// New opens the destination that o selects. It fails when the log file
// cannot be opened or syslog cannot be reached; pluto may then fall back
// to Stderr, as Libreswan does for a bad logfile=.
func New(o Options) (*Logger, error) {
	return newLogger(o, os.Stderr)
}

func newLogger(o Options, stderr io.Writer) (*Logger, error) {
	l := &Logger{
		noTime:  o.NoTime,
		noIP:    o.NoIP,
		noAudit: o.NoAudit,
		now:     o.Now,
	}
	if l.now == nil {
		l.now = time.Now
	}
	l.debug.Store(uint64(o.Debug))
	switch {
	case o.File != "":
		flags := os.O_WRONLY | os.O_CREATE | os.O_APPEND
		if o.NoAppend {
			flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		}
		f, err := os.OpenFile(o.File, flags, 0o600)
		if err != nil {
			return nil, fmt.Errorf("logging: cannot open logfile %q: %w", o.File, err)
		}
		l.file, l.out = f, f
	case o.Stderr:
		l.out = stderr
	case o.Syslog:
		w, err := syslog.Dial(o.SyslogNetwork, o.SyslogAddr, syslog.LOG_AUTHPRIV|syslog.LOG_INFO, "pluto")
		if err != nil {
			where := "the local syslog"
			if o.SyslogAddr != "" {
				where = fmt.Sprintf("syslog at %s %q", o.SyslogNetwork, o.SyslogAddr)
			}
			return nil, fmt.Errorf("logging: cannot connect to %s: %w", where, err)
		}
		l.sys = w
	}
	return l, nil
}

// kind is the stream a line belongs to.
type kind int

const (
	kindLog kind = iota
	kindWarning
	kindDebug
	kindAudit
)

var prefixes = [...]string{
	kindLog:     "",
	kindWarning: "WARNING: ",
	kindDebug:   "| ",
	kindAudit:   "audit: ",
}

// Logf writes a normal line.
func (l *Logger) Logf(format string, args ...any) {
	if l == nil {
		return
	}
	l.emit(kindLog, format, args)
}

// Warnf writes a line prefixed "WARNING: ", at syslog severity warning;
// use it for errors too.
func (l *Logger) Warnf(format string, args ...any) {
	if l == nil {
		return
	}
	l.emit(kindWarning, format, args)
}

// Debugf writes a line prefixed "| " when any class in c is on.
func (l *Logger) Debugf(c Classes, format string, args ...any) {
	if !l.Enabled(c) {
		return
	}
	l.emit(kindDebug, format, args)
}

// DebugLogf returns a Logf that writes debug lines under class c, for
// handing to a package that only knows Logf.
func (l *Logger) DebugLogf(c Classes) Logf {
	return func(format string, args ...any) { l.Debugf(c, format, args...) }
}

// Auditf writes an audit line (an IKE or IPsec SA started, stopped or
// failed) prefixed "audit: ", unless NoAudit.
func (l *Logger) Auditf(format string, args ...any) {
	if l == nil || l.noAudit {
		return
	}
	l.emit(kindAudit, format, args)
}

// Enabled says whether any class in c is on.
func (l *Logger) Enabled(c Classes) bool {
	return l != nil && Classes(l.debug.Load())&c != 0
}

// SetDebug replaces the set of debug classes (whack --debug).
func (l *Logger) SetDebug(c Classes) {
	if l != nil {
		l.debug.Store(uint64(c))
	}
}

// Debug returns the set of debug classes.
func (l *Logger) Debug() Classes {
	if l == nil {
		return None
	}
	return Classes(l.debug.Load())
}

// AddSink has fn called with every line written from now on, after
// masking and without the timestamp, until remove is called. Calls to
// one fn never overlap; once remove returns, fn is not running and will
// not be called again. fn must not log through this Logger nor call
// remove itself: either would deadlock. It should be quick, since the
// goroutine that logs waits for it.
func (l *Logger) AddSink(fn func(line string)) (remove func()) {
	s := &sink{fn: fn}
	l.sinkMu.Lock()
	var next []*sink
	if old := l.sinks.Load(); old != nil {
		next = append(next, *old...)
	}
	next = append(next, s)
	l.sinks.Store(&next)
	l.sinkMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.sinkMu.Lock()
			old := *l.sinks.Load()
			next := make([]*sink, 0, len(old)-1)
			for _, o := range old {
				if o != s {
					next = append(next, o)
				}
			}
			l.sinks.Store(&next)
			l.sinkMu.Unlock()
			// wait for a call in flight, and stop later ones
			// from writers that loaded the old slice
			s.mu.Lock()
			s.removed = true
			s.mu.Unlock()
		})
	}
}

// Close closes the log file or the syslog connection. Lines logged after
// Close reach only the sinks.
func (l *Logger) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	var err error
	if l.file != nil {
		err = l.file.Close()
	}
	if l.sys != nil {
		err = errors.Join(err, l.sys.Close())
	}
	l.out, l.sys = nil, nil
	return err
}

func (l *Logger) emit(k kind, format string, args []any) {
	msg := format
	if len(args) > 0 || strings.IndexByte(format, '%') >= 0 {
		msg = fmt.Sprintf(format, args...)
	}
	msg = strings.TrimRight(msg, "\n")
	prefix := prefixes[k]
	for {
		line, rest, more := strings.Cut(msg, "\n")
		l.write(k, sanitize(prefix+line))
		if !more {
			return
		}
		msg = rest
	}
}

// sanitize replaces control characters other than tab with '?'.
func sanitize(line string) string {
	for i := 0; i < len(line); i++ {
		if c := line[i]; c < ' ' && c != '\t' || c == 0x7f {
			b := []byte(line)
			for j := i; j < len(b); j++ {
				if b[j] < ' ' && b[j] != '\t' || b[j] == 0x7f {
					b[j] = '?'
				}
			}
			return string(b)
		}
	}
	return line
}

// timestampLayout is Libreswan's "%b %e %T" followed by ".%06ld".
const timestampLayout = "Jan _2 15:04:05.000000"

func (l *Logger) write(k kind, line string) {
	if l.noIP {
		line = MaskAddresses(line)
	}
	l.mu.Lock()
	switch {
	case l.out != nil:
		var b []byte
		if !l.noTime {
			b = l.now().AppendFormat(make([]byte, 0, len(timestampLayout)+len(line)+3), timestampLayout)
			b = append(b, ": "...)
		}
		b = append(b, line...)
		b = append(b, '\n')
		l.out.Write(b) //nolint:errcheck // nowhere to report it
	case l.sys != nil:
		switch k {
		case kindWarning:
			l.sys.Warning(line) //nolint:errcheck
		case kindDebug:
			l.sys.Debug(line) //nolint:errcheck
		default:
			l.sys.Info(line) //nolint:errcheck
		}
	}
	l.mu.Unlock()
	if p := l.sinks.Load(); p != nil {
		for _, s := range *p {
			s.mu.Lock()
			if !s.removed {
				s.fn(line)
			}
			s.mu.Unlock()
		}
	}
}
