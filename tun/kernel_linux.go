//go:build linux

package tun

// The kernel TUN device (root or CAP_NET_ADMIN): golang.zx2c4.com/wireguard/tun
// opens /dev/net/tun with the virtio-net header, so the kernel hands over
// TSO super-packets split into MTU-sized packets by Read and takes
// coalesced (GRO) packets from Write. Links, addresses and routes are set
// over netlink.

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// DefaultName is the kernel TUN's name when none is given.
const DefaultName = "ipsec0"

// KernelTUN is a kernel TUN device. It is a Device, with methods to give
// it addresses and to route remote subnets into it.
type KernelTUN struct {
	wgtun.Device
	name string

	// Host routes (transport mode), hostroute_linux.go.
	hmu        sync.Mutex
	bypass     []uint16 // the daemon's UDP source ports
	rulesOn    bool
	hostRoutes int

	// Bypass routes (type=passthrough), bypassroute_linux.go: by
	// destination; nil where the host's own route does it.
	bmu          sync.Mutex
	bypassRoutes map[netip.Prefix]*netlink.Route
}

// NewKernelTUN creates the TUN device name (DefaultName when empty) with
// mtu and sets it up.
func NewKernelTUN(name string, mtu int) (*KernelTUN, error) {
	if name == "" {
		name = DefaultName
	}
	if len(name) > 15 {
		return nil, fmt.Errorf("tun: interface name %q is longer than 15 characters", name)
	}
	if mtu < 576 || mtu > 65535 {
		return nil, fmt.Errorf("tun: %s: MTU %d is out of range 576-65535", name, mtu)
	}
	dev, err := wgtun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("tun: create %s (needs root or CAP_NET_ADMIN and /dev/net/tun): %w", name, err)
	}
	real, err := dev.Name()
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("tun: %s: %w", name, err)
	}
	t := &KernelTUN{Device: dev, name: real}
	link, err := t.link()
	if err != nil {
		dev.Close()
		return nil, err
	}
	if err := netlink.LinkSetUp(link); err != nil {
		dev.Close()
		return nil, fmt.Errorf("tun: set %s up: %w", real, err)
	}
	// Best effort: a route a crashed earlier run left is found again
	// and deleted by nothing else.
	RemoveBypassRouteLeftovers()
	return t, nil
}

func (t *KernelTUN) link() (netlink.Link, error) {
	l, err := netlink.LinkByName(t.name)
	if err != nil {
		return nil, fmt.Errorf("tun: find link %s: %w", t.name, err)
	}
	return l, nil
}

// Name returns the interface name.
func (t *KernelTUN) Name() (string, error) { return t.name, nil }

// AddAddress gives the device an address (the host's inner address).
func (t *KernelTUN) AddAddress(p netip.Prefix) error {
	l, err := t.link()
	if err != nil {
		return err
	}
	a, err := netlink.ParseAddr(p.String())
	if err != nil {
		return fmt.Errorf("tun: address %v: %w", p, err)
	}
	if err := netlink.AddrReplace(l, a); err != nil {
		return fmt.Errorf("tun: add address %v to %s: %w", p, t.name, err)
	}
	return nil
}

// AddRoute routes dst into the device (the remote subnet of a tunnel),
// replacing a route to the same prefix.
func (t *KernelTUN) AddRoute(dst netip.Prefix) error {
	l, err := t.link()
	if err != nil {
		return err
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: prefixNet(dst), Scope: netlink.SCOPE_LINK}
	if err := netlink.RouteReplace(r); err != nil {
		return fmt.Errorf("tun: route %v via %s: %w", dst, t.name, err)
	}
	return nil
}

// DeleteRoute removes the route to dst through the device; a route that
// is already gone is not an error.
func (t *KernelTUN) DeleteRoute(dst netip.Prefix) error {
	l, err := t.link()
	if err != nil {
		return err
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: prefixNet(dst), Scope: netlink.SCOPE_LINK}
	if err := netlink.RouteDel(r); err != nil && !errors.Is(err, errNoRoute) {
		return fmt.Errorf("tun: delete route %v via %s: %w", dst, t.name, err)
	}
	return nil
}
