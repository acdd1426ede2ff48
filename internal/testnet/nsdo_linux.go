package testnet

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Do runs fn on an operating-system thread that has entered the namespace,
// and waits for it. Sockets that fn creates belong to the namespace for
// their whole life, so they can be used from any goroutine after Do
// returns. fn must create its sockets on its own goroutine (net.Listen,
// net.Dial of a literal address and raw sockets do); goroutines it starts
// do not run in the namespace.
//
// The thread goes back to its own namespace before it is unlocked: it
// must not end, because the processes Start forks get SIGKILL when the
// thread that forked them ends (Pdeathsig follows the parent thread), and
// any thread may have forked one. Only if it cannot go back is it left
// locked, and so ended, with fn's goroutine.
func (ns *Namespace) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("testnet: %v", err)
			return
		}
		defer home.Close()
		f, err := os.Open("/run/netns/" + ns.Name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("testnet: %v", err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("testnet: setns %s: %v", ns.Name, err)
			return
		}
		err = fn()
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// Listen opens a listener inside the namespace (network "tcp", "tcp4",
// "tcp6"; address as for net.Listen).
func (ns *Namespace) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := ns.Do(func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// ListenPacket opens a packet socket inside the namespace (as
// net.ListenPacket).
func (ns *Namespace) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := ns.Do(func() error {
		var err error
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}

// Dial connects from inside the namespace to a literal address (as
// net.Dialer.DialContext, with timeout).
func (ns *Namespace) Dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// StartTCPEcho serves a TCP echo (every connection gets back what it
// sends) on addr inside the namespace until the test ends, and returns the
// address it listens on.
func (ns *Namespace) StartTCPEcho(t testing.TB, addr string) net.Addr {
	t.Helper()
	l, err := ns.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("testnet: echo server on %s in %s: %v", addr, ns.Name, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return l.Addr()
}

// TCPEcho connects from inside the namespace to an echo server at dst
// and checks it with EchoRoundTrip.
func (ns *Namespace) TCPEcho(dst string, payload []byte, timeout time.Duration) error {
	c, err := ns.Dial("tcp", dst, timeout)
	if err != nil {
		return fmt.Errorf("connecting from %s to %s: %v", ns.Name, dst, err)
	}
	return EchoRoundTrip(c, payload, timeout)
}

// EchoRoundTrip sends payload on c (a TCP connection to an echo server,
// perhaps through a proxy) while it reads as many bytes back, and checks
// that they are payload, byte for byte, within timeout. It closes c.
func EchoRoundTrip(c net.Conn, payload []byte, timeout time.Duration) error {
	defer c.Close()
	dst := c.RemoteAddr()
	c.SetDeadline(time.Now().Add(timeout))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		werr <- err
	}()
	got := make([]byte, len(payload))
	n, err := io.ReadFull(c, got)
	if err != nil {
		got = got[:n]
		return fmt.Errorf("reading the echo from %s (got %d of %d bytes): %v", dst, len(got), len(payload), err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("sending to %s: %v", dst, err)
	}
	if !bytes.Equal(got, payload) {
		i := 0
		for i < len(got) && i < len(payload) && got[i] == payload[i] {
			i++
		}
		return fmt.Errorf("the echo from %s differs from what was sent: %d bytes back of %d, first difference at %d", dst, len(got), len(payload), i)
	}
	return nil
}
