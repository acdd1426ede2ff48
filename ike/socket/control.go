package socket

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Control runs fn on the file descriptor of every bound socket, with its
// address family (unix.AF_INET or unix.AF_INET6) and whether it is a
// NAT-T socket. A kernel data plane uses it to take ESP in UDP from the
// NAT-T sockets and to exempt the IKE sockets from its policies.
func (s *Sockets) Control(fn func(fd uintptr, family int, natt bool) error) error {
	var errs []error
	for _, so := range s.socks {
		rc, err := so.conn.SyscallConn()
		if err != nil {
			errs = append(errs, fmt.Errorf("IKE socket %s: %v", so.local, err))
			continue
		}
		family := unix.AF_INET
		if so.pc4 == nil {
			family = unix.AF_INET6
		}
		var ferr error
		if err := rc.Control(func(fd uintptr) { ferr = fn(fd, family, so.natt) }); err != nil {
			ferr = err
		}
		if ferr != nil {
			errs = append(errs, fmt.Errorf("IKE socket %s: %v", so.local, ferr))
		}
	}
	return errors.Join(errs...)
}
