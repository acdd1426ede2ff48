package testnet

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a long-running command started by Start: a daemon, a packet
// capture. Its stdout and stderr go, interleaved, to an in-memory buffer and
// to a log file. It is stopped (SIGTERM, then SIGKILL, by its PID only) by
// t.Cleanup if the test has not stopped it; if the test failed, the tail of
// its output is logged.
type Process struct {
	// Name labels the process in messages.
	Name string
	// LogPath is the file that receives its output.
	LogPath string

	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error // exit status, valid once done is closed
}

// Start starts cmd as a managed process. Its output goes to a file under
// t.TempDir() and to a buffer. cmd.Stdout, cmd.Stderr and cmd.SysProcAttr
// must be unset: Start sets them (the process gets SIGKILL if the test
// binary dies).
func Start(t testing.TB, name string, cmd *exec.Cmd) (*Process, error) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "proc-*.log")
	if err != nil {
		return nil, err
	}
	p := &Process{Name: name, LogPath: f.Name(), cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	w := io.MultiWriter(p.out, f)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s (%s): %v", name, strings.Join(cmd.Args, " "), err)
	}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		if err := p.Stop(5 * time.Second); err != nil {
			t.Errorf("testnet: %v", err)
		}
		if t.Failed() {
			t.Logf("testnet: output of %s (pid %d), last lines:\n%s", name, p.PID(), tail(p.Output(), 40))
		}
	})
	return p, nil
}

// PID is the process's ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Output returns everything the process wrote so far.
func (p *Process) Output() string { return p.out.String() }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits at most timeout for the process to end and returns its exit
// error (nil for status 0).
func (p *Process) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) still running after %v", p.Name, p.PID(), timeout)
	}
}

// Signal sends sig to the process (by its PID) unless it has ended.
func (p *Process) Signal(sig os.Signal) error {
	if p.Exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signalling %s (pid %d): %v", p.Name, p.PID(), err)
	}
	return nil
}

// Stop ends the process: SIGTERM, and SIGKILL if it is still there after
// grace. It returns an error only if the process could not be ended; how
// it exited is available from Wait.
func (p *Process) Stop(grace time.Duration) error {
	return p.StopWith(syscall.SIGTERM, grace)
}

// StopWith is Stop with another first signal (SIGINT for dumpcap, which then
// flushes its file).
func (p *Process) StopWith(sig os.Signal, grace time.Duration) error {
	if p.Exited() {
		return nil
	}
	if err := p.Signal(sig); err != nil {
		return err
	}
	if p.Wait(grace) == nil || p.Exited() {
		return nil
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) survived SIGKILL", p.Name, p.PID())
	}
}

// WaitOutput waits at most timeout until the output contains substr. It
// fails early if the process ends first.
func (p *Process) WaitOutput(substr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(p.Output(), substr) {
			return nil
		}
		if p.Exited() {
			if strings.Contains(p.Output(), substr) {
				return nil
			}
			return fmt.Errorf("%s (pid %d) ended (%v) before printing %q; output:\n%s", p.Name, p.PID(), p.err, substr, tail(p.Output(), 30))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (pid %d) did not print %q within %v; output:\n%s", p.Name, p.PID(), substr, timeout, tail(p.Output(), 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Tail returns the last n lines of s, for failure messages.
func Tail(s string, n int) string { return tail(s, n) }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func stringReader(s string) *strings.Reader { return strings.NewReader(s) }
