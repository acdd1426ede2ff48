package socket

import (
	"errors"
	"fmt"
	"net/netip"

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

// SendKeepalive sends a NAT-T keep-alive (RFC 3948 §2.3: one 0xFF octet,
// no non-ESP marker) from the NAT-T socket of local.
func (s *Sockets) SendKeepalive(local, remote netip.AddrPort) error {
	so := s.find(local)
	if so == nil || !so.natt {
		s.sendErr.Add(1)
		return fmt.Errorf("no NAT-T socket bound to %s", local)
	}
	if err := so.send(local.Addr(), remote, []byte{0xff}); err != nil {
		s.sendErr.Add(1)
		return fmt.Errorf("sending a keep-alive to %s from %s: %v", remote, local, err)
	}
	s.out.Add(1)
	return nil
}
