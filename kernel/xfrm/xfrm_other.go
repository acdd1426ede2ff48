//go:build !linux

package xfrm

import (
	"context"
	"fmt"
	"net/netip"
	"syscall"

	"goswan/kernel"
)

// errNotLinux is what every entry point returns off Linux.
var errNotLinux = &kernel.UnavailableError{
	Backend: kernel.XFRM,
	Reason:  "XFRM is the Linux kernel's IPsec interface and this is not Linux",
	Instead: []kernel.Backend{kernel.BSDKAME, kernel.Userspace, kernel.Netstack},
}

// Backend is the XFRM back end; off Linux it cannot be made.
type Backend struct{ events chan kernel.Event }

var _ kernel.IPsec = (*Backend)(nil)

// New fails off Linux.
func New(cfg Config) (*Backend, error) { return nil, errNotLinux }

// SetESPInUDP fails off Linux.
func SetESPInUDP(fd uintptr) error { return errNotLinux }

// PrepareIKESocket fails off Linux.
func PrepareIKESocket(fd uintptr, family int, natt bool) error { return errNotLinux }

// BypassSocket fails off Linux.
func BypassSocket(fd uintptr, family int) error { return errNotLinux }

func (b *Backend) GetSPI(context.Context, netip.Addr, netip.Addr, kernel.Proto, uint32) (uint32, error) {
	return 0, errNotLinux
}
func (b *Backend) AddSA(context.Context, *kernel.SA) error                 { return errNotLinux }
func (b *Backend) UpdateSA(context.Context, kernel.SAID, *kernel.SA) error { return errNotLinux }
func (b *Backend) QuerySA(context.Context, kernel.SAID) (kernel.SAStats, error) {
	return kernel.SAStats{}, errNotLinux
}
func (b *Backend) DeleteSA(context.Context, kernel.SAID) error        { return errNotLinux }
func (b *Backend) AddPolicy(context.Context, *kernel.Policy) error    { return errNotLinux }
func (b *Backend) DeletePolicy(context.Context, *kernel.Policy) error { return errNotLinux }
func (b *Backend) Events() <-chan kernel.Event                        { return b.events }
func (b *Backend) Close() error                                       { return nil }
func (b *Backend) Flush(context.Context) error                        { return errNotLinux }
func (b *Backend) Dropped() uint64                                    { return 0 }
func (b *Backend) Policies(context.Context) ([]kernel.Policy, error)  { return nil, errNotLinux }

func errnoName(e syscall.Errno) string { return fmt.Sprintf("errno %d", int(e)) }
