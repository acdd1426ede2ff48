//go:build linux

package tun

// Bypass routes for type=passthrough. A tunnel's remote subnet is routed
// into the TUN (AddRoute), but what a passthrough conn covers inside it
// must leave in the clear, and a TUN has no clear path out. So for each
// Bypass out-policy's destination prefix a more specific route is added
// to the main table (where AddRoute's routes are) that copies the route
// the host would use without the TUN: the main table's longest-prefix
// route to the prefix whose device is not the TUN (its gateway, device,
// preferred source and scope). Those packets never reach the TUN.
//
// The routes carry BypassRouteProtocol, so that the lookup skips them and
// a crashed earlier run's are found (NewKernelTUN removes them), and
// BypassRouteMetric, so that a TUN route to the very same prefix (metric
// 0) wins over them: routes match on the destination only, and a
// Protect policy for the same prefix must not leak in the clear. A
// prefix the host already routes exactly, past the TUN, gets no route.
// The copy is taken when the route is added: later changes to the host's
// routing do not follow it.

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const (
	// BypassRouteProtocol marks goswan's bypass routes (rtm_protocol).
	BypassRouteProtocol netlink.RouteProtocol = 0x67
	// BypassRouteMetric is their metric: above AddRoute's (0), so a
	// tunnel route to the same prefix keeps the packets in the TUN.
	BypassRouteMetric = 0x6773
)

// AddBypassRoute routes dst past the device, the way the host would route
// it without the device's routes (a Bypass policy, type=passthrough). A
// prefix already added, or one the host routes exactly past the device,
// is left as it is. It fails when the host has no unicast route to dst
// other than through the device.
func (t *KernelTUN) AddBypassRoute(dst netip.Prefix) error {
	dst = dst.Masked()
	t.bmu.Lock()
	defer t.bmu.Unlock()
	if _, ok := t.bypassRoutes[dst]; ok {
		return nil
	}
	l, err := t.link()
	if err != nil {
		return err
	}
	fam := netlink.FAMILY_V4
	if !dst.Addr().Is4() {
		fam = netlink.FAMILY_V6
	}
	routes, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("tun: bypass route %v: list routes: %w", dst, err)
	}
	best, bestBits := (*netlink.Route)(nil), -1
	for i := range routes {
		r := &routes[i]
		if r.Protocol == BypassRouteProtocol || throughLink(r, l.Attrs().Index) {
			continue
		}
		p, ok := routePrefix(r, dst.Addr().BitLen())
		if !ok || p.Bits() > dst.Bits() || !p.Contains(dst.Addr()) {
			continue
		}
		if p.Bits() > bestBits || p.Bits() == bestBits && r.Priority < best.Priority {
			best, bestBits = r, p.Bits()
		}
	}
	if best == nil || best.Type != unix.RTN_UNICAST {
		return fmt.Errorf("tun: bypass route %v: the host has no unicast route to it other than through %s", dst, t.name)
	}
	if t.bypassRoutes == nil {
		t.bypassRoutes = map[netip.Prefix]*netlink.Route{}
	}
	if bestBits == dst.Bits() {
		t.bypassRoutes[dst] = nil // the host's own route does it
		return nil
	}
	r := &netlink.Route{
		Dst: prefixNet(dst), LinkIndex: best.LinkIndex, Gw: best.Gw, Via: best.Via, MultiPath: best.MultiPath,
		Src: best.Src, Scope: best.Scope, Flags: best.Flags, Type: unix.RTN_UNICAST,
		Table: unix.RT_TABLE_MAIN, Protocol: BypassRouteProtocol, Priority: BypassRouteMetric,
	}
	if err := netlink.RouteAdd(r); err != nil {
		return fmt.Errorf("tun: bypass route %v (as %v): %w", dst, best, err)
	}
	t.bypassRoutes[dst] = r
	return nil
}

// DeleteBypassRoute removes what AddBypassRoute added for dst; a route
// that is gone, or was never added, is not an error.
func (t *KernelTUN) DeleteBypassRoute(dst netip.Prefix) error {
	dst = dst.Masked()
	t.bmu.Lock()
	defer t.bmu.Unlock()
	r, ok := t.bypassRoutes[dst]
	if !ok {
		return nil
	}
	delete(t.bypassRoutes, dst)
	return delBypassRoute(r)
}

// deleteBypassRoutes removes every bypass route (Close).
func (t *KernelTUN) deleteBypassRoutes() error {
	t.bmu.Lock()
	defer t.bmu.Unlock()
	var errs []error
	for dst, r := range t.bypassRoutes {
		errs = append(errs, delBypassRoute(r))
		delete(t.bypassRoutes, dst)
	}
	return errors.Join(errs...)
}

func delBypassRoute(r *netlink.Route) error {
	if r == nil {
		return nil
	}
	if err := netlink.RouteDel(r); err != nil && !errors.Is(err, errNoRoute) {
		return fmt.Errorf("tun: delete bypass route %v: %w", r.Dst, err)
	}
	return nil
}

// RemoveBypassRouteLeftovers deletes the main table's routes with
// BypassRouteProtocol, in both families (what a crashed run left).
func RemoveBypassRouteLeftovers() error {
	var errs []error
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN, Protocol: BypassRouteProtocol},
			netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			errs = append(errs, fmt.Errorf("tun: list bypass routes: %w", err))
			continue
		}
		for i := range routes {
			errs = append(errs, delBypassRoute(&routes[i]))
		}
	}
	return errors.Join(errs...)
}

// throughLink says whether r sends anything out of the link index.
func throughLink(r *netlink.Route, index int) bool {
	if r.LinkIndex == index {
		return true
	}
	for _, nh := range r.MultiPath {
		if nh.LinkIndex == index {
			return true
		}
	}
	return false
}

// routePrefix is r's destination; nil is the default route of a family
// whose addresses have bits bits.
func routePrefix(r *netlink.Route, bits int) (netip.Prefix, bool) {
	if r.Dst == nil {
		if bits == 32 {
			return netip.PrefixFrom(netip.IPv4Unspecified(), 0), true
		}
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0), true
	}
	a, ok := netip.AddrFromSlice(r.Dst.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, size := r.Dst.Mask.Size()
	a = a.Unmap()
	if size != a.BitLen() || a.BitLen() != bits {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}
