//go:build !linux

package tun

import (
	"errors"
	"net/netip"
)

// DefaultName is the kernel TUN's name when none is given.
const DefaultName = "ipsec0"

// KernelTUN is a kernel TUN device; only Linux has it for now.
type KernelTUN struct{ Device }

var errNoKernelTUN = errors.New("tun: the kernel TUN back end is only implemented on Linux; use the netstack")

// NewKernelTUN fails on this system.
func NewKernelTUN(name string, mtu int) (*KernelTUN, error) { return nil, errNoKernelTUN }

// AddAddress fails on this system.
func (t *KernelTUN) AddAddress(p netip.Prefix) error { return errNoKernelTUN }

// AddRoute fails on this system.
func (t *KernelTUN) AddRoute(dst netip.Prefix) error { return errNoKernelTUN }

// DeleteRoute fails on this system.
func (t *KernelTUN) DeleteRoute(dst netip.Prefix) error { return errNoKernelTUN }

// AddBypassRoute fails on this system.
func (t *KernelTUN) AddBypassRoute(dst netip.Prefix) error { return errNoKernelTUN }

// DeleteBypassRoute fails on this system.
func (t *KernelTUN) DeleteBypassRoute(dst netip.Prefix) error { return errNoKernelTUN }

// PrepareHostRoutes fails on this system.
func (t *KernelTUN) PrepareHostRoutes(ports ...uint16) error { return errNoKernelTUN }

// AddHostRoute fails on this system.
func (t *KernelTUN) AddHostRoute(dst netip.Prefix, src netip.Addr) error { return errNoKernelTUN }

// DeleteHostRoute fails on this system.
func (t *KernelTUN) DeleteHostRoute(dst netip.Prefix, src netip.Addr) error { return errNoKernelTUN }
