// Package lab builds and tears down what one benchmark run needs: network
// namespaces joined by veth pairs, and processes started inside them.
//
// Everything a Lab makes is recorded on its cleanup stack as it is made and
// removed in reverse order by Close: processes are ended by their own PID
// (SIGTERM, then SIGKILL), namespaces are removed by their name, which holds
// the tool's PID and a counter ("gsb<pid>-<n>-<label>"), so a run never
// touches what it did not make. CloseOnSignal makes SIGINT and SIGTERM run
// the same cleanup before the tool exits.
//
// Unlike internal/testnet, nothing here needs a *testing.T: the tools under
// bench/cmd use it as well as their tests.
package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Prefix starts the name of every namespace a Lab makes.
const Prefix = "gsb"

var counter atomic.Uint64

// Lab owns what one run made.
type Lab struct {
	// Logf, when set, receives a line per step (verbose mode).
	Logf func(format string, args ...any)

	mu       sync.Mutex
	cleanups []func()
	closed   bool
	dir      string
}

// New returns an empty Lab with a private temporary directory.
func New() (*Lab, error) {
	dir, err := os.MkdirTemp("", "goswan-bench-")
	if err != nil {
		return nil, err
	}
	l := &Lab{dir: dir}
	l.Defer(func() {
		if os.Getenv("GOSWAN_BENCH_KEEP") != "" {
			fmt.Fprintf(os.Stderr, "lab: keeping %s (GOSWAN_BENCH_KEEP is set)\n", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return l, nil
}

// Dir is the Lab's private temporary directory (removed by Close).
func (l *Lab) Dir() string { return l.dir }

// Path returns a path inside Dir, making its parent folders.
func (l *Lab) Path(elem ...string) string {
	p := filepath.Join(append([]string{l.dir}, elem...)...)
	os.MkdirAll(filepath.Dir(p), 0o755)
	return p
}

func (l *Lab) logf(format string, args ...any) {
	if l.Logf != nil {
		l.Logf(format, args...)
	}
}

// Defer pushes f on the cleanup stack. If the Lab is already closed, f runs
// at once.
func (l *Lab) Defer(f func()) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		f()
		return
	}
	l.cleanups = append(l.cleanups, f)
	l.mu.Unlock()
}

// Close runs the cleanup stack, last in first out. It may be called more
// than once and from a signal handler's goroutine.
func (l *Lab) Close() {
	for {
		l.mu.Lock()
		l.closed = true
		n := len(l.cleanups)
		if n == 0 {
			l.mu.Unlock()
			return
		}
		f := l.cleanups[n-1]
		l.cleanups = l.cleanups[:n-1]
		l.mu.Unlock()
		f()
	}
}

// CloseOnSignal makes SIGINT, SIGTERM and SIGHUP close the Lab and exit
// the program with status 130. The returned function stops that.
func (l *Lab) CloseOnSignal() (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			fmt.Fprintf(os.Stderr, "\n%v: cleaning up what this run made\n", s)
			l.Close()
			os.Exit(130)
		case <-done:
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

// Run runs a command with a 20 s limit and returns its combined output; the
// error names the command and holds the output.
func Run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Namespace is a network namespace made by NewNamespace.
type Namespace struct {
	Name  string // under /run/netns
	Label string
}

// NewNamespace makes a namespace with lo up and IPv6 DAD off, and
// registers its removal (by name).
func (l *Lab) NewNamespace(label string) (*Namespace, error) {
	ns := &Namespace{Name: fmt.Sprintf("%s%d-%d-%s", Prefix, os.Getpid(), counter.Add(1), label), Label: label}
	if _, err := Run("ip", "netns", "add", ns.Name); err != nil {
		return nil, err
	}
	l.logf("namespace %s", ns.Name)
	l.Defer(func() {
		if _, err := Run("ip", "netns", "del", ns.Name); err != nil {
			fmt.Fprintf(os.Stderr, "lab: %v\n", err)
		}
	})
	for _, c := range [][]string{
		{"sh", "-c", "echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad; echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad"},
		{"ip", "link", "set", "lo", "up"},
	} {
		if _, err := ns.Run(c...); err != nil {
			return nil, err
		}
	}
	return ns, nil
}

// Exists reports whether the namespace is still there.
func (ns *Namespace) Exists() bool {
	_, err := os.Stat("/run/netns/" + ns.Name)
	return err == nil
}

// Command returns args to run inside the namespace (`ip netns exec`, which
// execs in place: the PID is that of args[0]).
func (ns *Namespace) Command(args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...)
}

// Run runs args inside the namespace (see Run).
func (ns *Namespace) Run(args ...string) (string, error) {
	return Run("ip", append([]string{"netns", "exec", ns.Name}, args...)...)
}

// Script runs a shell script inside the namespace.
func (ns *Namespace) Script(script string) (string, error) {
	return ns.Run("sh", "-ec", script)
}

// Connect joins a and b by a veth pair named "v<a>"/"v<b>" (cut to 15
// bytes), puts the prefixes on them and sets them up.
func Connect(a, b *Namespace, aAddr, bAddr string) (aDev, bDev string, err error) {
	aDev, bDev = ifName("v"+b.Label), ifName("v"+a.Label)
	if aDev == bDev {
		bDev = ifName("w" + a.Label)
	}
	if _, err := Run("ip", "link", "add", aDev, "netns", a.Name, "type", "veth", "peer", "name", bDev, "netns", b.Name); err != nil {
		return "", "", err
	}
	for _, s := range []struct{ ns, dev, addr string }{{a.Name, aDev, aAddr}, {b.Name, bDev, bAddr}} {
		if _, err := Run("ip", "-n", s.ns, "addr", "add", s.addr, "dev", s.dev); err != nil {
			return "", "", err
		}
		if _, err := Run("ip", "-n", s.ns, "link", "set", s.dev, "up"); err != nil {
			return "", "", err
		}
	}
	return aDev, bDev, nil
}

func ifName(s string) string {
	if len(s) > 15 {
		s = s[:15]
	}
	return s
}

// Leftovers lists the namespaces whose name says this process made them
// (for tests that check the cleanup).
func Leftovers(pid int) []string {
	ents, _ := os.ReadDir("/run/netns")
	var out []string
	pre := fmt.Sprintf("%s%d-", Prefix, pid)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), pre) {
			out = append(out, e.Name())
		}
	}
	return out
}

// Process is a long-running command started by Start.
type Process struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
}

// Start starts cmd with its output in a log file under the Lab's directory
// and registers its end (by PID) on the cleanup stack. The process gets
// SIGKILL if this one dies.
func (l *Lab) Start(name string, cmd *exec.Cmd) (*Process, error) {
	logPath := l.Path("logs", fmt.Sprintf("%s-%d.log", name, counter.Add(1)))
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	if cmd.Stdout == nil {
		cmd.Stdout = f
	} else {
		cmd.Stdout = io.MultiWriter(cmd.Stdout, f)
	}
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s (%s): %v", name, strings.Join(cmd.Args, " "), err)
	}
	l.logf("started %s, pid %d: %s", name, cmd.Process.Pid, strings.Join(cmd.Args, " "))
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	l.Defer(func() { p.Stop(5 * time.Second) })
	return p, nil
}

// PID is the process's ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits at most d for the process to end.
func (p *Process) Wait(d time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		return fmt.Errorf("%s (pid %d) still running after %v", p.Name, p.PID(), d)
	}
}

// Output is what the process wrote so far.
func (p *Process) Output() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Stop sends SIGTERM, then SIGKILL after grace, to the process's PID.
func (p *Process) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if p.Wait(grace) == nil || p.Exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.Wait(5 * time.Second)
}

// WaitOutput waits until the output holds substr, the process ends, or d
// passes.
func (p *Process) WaitOutput(substr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		out := p.Output()
		if strings.Contains(out, substr) {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s (pid %d) ended (%v) before printing %q:\n%s", p.Name, p.PID(), p.err, substr, Tail(out, 30))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (pid %d) did not print %q within %v:\n%s", p.Name, p.PID(), substr, d, Tail(out, 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// IsRoot reports whether the tool runs as root.
func IsRoot() bool { return os.Geteuid() == 0 }

// Have reports whether prog is on PATH (or, with a slash, is executable).
func Have(prog string) bool {
	if strings.Contains(prog, "/") {
		st, err := os.Stat(prog)
		return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
	}
	_, err := exec.LookPath(prog)
	return err == nil
}

// ShellQuote quotes s for sh.
func ShellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
