//go:build linux || freebsd || netbsd

package pfkey

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"goswan/kernel"
)

const pfKeyV2 = 2 // PF_KEY_V2, the protocol argument of socket(2)

// fileConn is a PF_KEY socket in non-blocking mode behind an *os.File, so
// that reads wait in the runtime's poller and Close wakes a blocked Read.
type fileConn struct{ f *os.File }

func (c *fileConn) Send(b []byte) error {
	_, err := c.f.Write(b)
	return err
}

func (c *fileConn) Recv(b []byte) (int, error) { return c.f.Read(b) }
func (c *fileConn) Close() error               { return c.f.Close() }

// openSocket opens socket(PF_KEY, SOCK_RAW, PF_KEY_V2).
func openSocket() (conn, error) {
	fd, err := unix.Socket(afKey, unix.SOCK_RAW|unix.SOCK_CLOEXEC, pfKeyV2)
	if err != nil {
		return nil, unavailable(err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("pfkey: %w", err)
	}
	// Dumps come as one message per SA or policy; give them room.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	return &fileConn{f: os.NewFile(uintptr(fd), "pfkey")}, nil
}

// unavailable explains a failed socket(2) and names the flags to use
// instead.
func unavailable(err error) error {
	instead := []kernel.Backend{kernel.Userspace, kernel.Netstack}
	if runtime.GOOS == "linux" {
		instead = append([]kernel.Backend{kernel.XFRM}, instead...)
	}
	reason := fmt.Sprintf("cannot open a PF_KEY socket (%v)", err)
	switch {
	case errors.Is(err, unix.EAFNOSUPPORT), errors.Is(err, unix.EPROTONOSUPPORT):
		if runtime.GOOS == "linux" {
			reason = fmt.Sprintf("this kernel has no PF_KEY: socket(AF_KEY) failed with %v (it needs CONFIG_NET_KEY, the af_key module)", err)
		} else {
			reason = fmt.Sprintf("this kernel has no PF_KEY: socket(PF_KEY) failed with %v (is it built with options IPSEC?)", err)
		}
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		reason = fmt.Sprintf("no permission to open a PF_KEY socket (%v): it needs root or CAP_NET_ADMIN", err)
		instead = []kernel.Backend{kernel.Netstack}
	}
	return &unavailableError{&kernel.UnavailableError{Backend: kernel.BSDKAME, Reason: reason, Instead: instead}, err}
}
