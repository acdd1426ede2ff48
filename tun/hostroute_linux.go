//go:build linux

package tun

// Host routes for transport mode. A transport-mode SA protects the
// packets between this host's own address and the peer's: to catch them,
// the peer's address (a /32 or /128) must be routed into the TUN, but the
// daemon's own IKE and ESP-in-UDP datagrams go to that same address and
// must not enter the TUN (they would loop). The routes therefore live in a
// table of their own, consulted by policy routing:
//
//	prio HostRulePriority:   ipproto udp sport <IKE port>   lookup main   (one per port, both families)
//	prio HostRulePriority:   ipproto esp                    lookup main   (both families)
//	prio HostRulePriority+1: iif lo                         lookup HostRouteTable
//
// The first rule lets the daemon's datagrams (sent from its IKE and NAT-T
// ports: 500 and 4500 unless --ikeport/--natikeport say otherwise), and
// the raw ESP (IP protocol 50) a raw socket of the daemon sends, pass by
// the host routes; the second sends every other packet this host
// originates ("iif lo": forwarded traffic keeps its routes) through the
// table, which holds only the peers' host routes into the TUN, each with
// this host's address as the preferred source. What the table lacks falls
// through to the next rules (main). No socket option and no firewall mark
// is needed, so the daemon's sockets stay as they are.
//
// The rules are added with the first host route and removed with the last
// one and at Close. The table and the priorities are fixed and identify
// goswan: PrepareHostRoutes removes what a crashed earlier run left.
//
// Inbound, the opened packets (source: the peer) arrive on the TUN while
// the main table routes the peer out of another interface: a strict
// reverse-path filter would drop them, so the TUN's rp_filter is set to
// loose (2), which wins over net.ipv4.conf.all.rp_filter (the kernel takes
// the larger of the two).

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const (
	// HostRouteTable is the routing table of the transport-mode host
	// routes ('g','s').
	HostRouteTable = 0x6773
	// HostRulePriority is the priority of the rules that let the daemon's
	// IKE and NAT-T datagrams bypass HostRouteTable; the rule that looks
	// the table up has HostRulePriority+1. Both come before the main
	// table (32766).
	HostRulePriority = 0x6772
)

// PrepareHostRoutes readies t for AddHostRoute: ports are the daemon's UDP
// source ports (IKE and NAT-T) that must bypass the host routes. It
// removes the rules and routes a crashed earlier run left.
func (t *KernelTUN) PrepareHostRoutes(ports ...uint16) error {
	t.hmu.Lock()
	defer t.hmu.Unlock()
	if len(ports) == 0 {
		return errors.New("tun: host routes need the daemon's UDP ports to exempt")
	}
	t.bypass = slices.Clone(ports)
	return RemoveHostRouteLeftovers()
}

// RemoveHostRouteLeftovers deletes goswan's host-route rules and the
// routes in HostRouteTable, in both families.
func RemoveHostRouteLeftovers() error {
	var errs []error
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rules, err := netlink.RuleList(fam)
		if err != nil {
			errs = append(errs, fmt.Errorf("tun: list rules: %w", err))
			continue
		}
		for i := range rules {
			r := &rules[i]
			if ours(r) {
				if err := netlink.RuleDel(r); err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("tun: delete rule %v: %w", r, err))
				}
			}
		}
		routes, err := netlink.RouteListFiltered(fam, &netlink.Route{Table: HostRouteTable}, netlink.RT_FILTER_TABLE)
		if err != nil {
			errs = append(errs, fmt.Errorf("tun: list routes of table %d: %w", HostRouteTable, err))
			continue
		}
		for i := range routes {
			if err := netlink.RouteDel(&routes[i]); err != nil && !errors.Is(err, errNoRoute) {
				errs = append(errs, fmt.Errorf("tun: delete route %v: %w", routes[i].Dst, err))
			}
		}
	}
	return errors.Join(errs...)
}

func ours(r *netlink.Rule) bool {
	switch r.Priority {
	case HostRulePriority:
		return r.Table == unix.RT_TABLE_MAIN && (r.IPProto == unix.IPPROTO_UDP && r.Sport != nil || r.IPProto == unix.IPPROTO_ESP)
	case HostRulePriority + 1:
		return r.Table == HostRouteTable
	}
	return false
}

// hostRules are the rules AddHostRoute needs.
func (t *KernelTUN) hostRules() []*netlink.Rule {
	var rs []*netlink.Rule
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		for _, p := range t.bypass {
			r := netlink.NewRule()
			r.Family, r.Priority, r.Table = fam, HostRulePriority, unix.RT_TABLE_MAIN
			r.IPProto = unix.IPPROTO_UDP
			r.Sport = netlink.NewRulePortRange(p, p)
			rs = append(rs, r)
		}
		r := netlink.NewRule()
		r.Family, r.Priority, r.Table = fam, HostRulePriority, unix.RT_TABLE_MAIN
		r.IPProto = unix.IPPROTO_ESP
		rs = append(rs, r)
		r = netlink.NewRule()
		r.Family, r.Priority, r.Table = fam, HostRulePriority+1, HostRouteTable
		r.IifName = "lo"
		rs = append(rs, r)
	}
	return rs
}

// rulesUpLocked adds the rules and loosens the TUN's reverse-path filter.
func (t *KernelTUN) rulesUpLocked() error {
	if t.rulesOn {
		return nil
	}
	if len(t.bypass) == 0 {
		return errors.New("tun: host routes without PrepareHostRoutes: the daemon's own datagrams would loop into the TUN")
	}
	if err := RemoveHostRouteLeftovers(); err != nil {
		return err
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+t.name+"/rp_filter", []byte("2"), 0); err != nil {
		return fmt.Errorf("tun: set %s's rp_filter to loose: %w", t.name, err)
	}
	for _, r := range t.hostRules() {
		if err := netlink.RuleAdd(r); err != nil && !errors.Is(err, unix.EEXIST) {
			t.rulesDownLocked()
			return fmt.Errorf("tun: add rule %v: %w", r, err)
		}
	}
	t.rulesOn = true
	return nil
}

// rulesDownLocked removes the rules (whatever AddHostRoute added).
func (t *KernelTUN) rulesDownLocked() error {
	var errs []error
	for _, r := range t.hostRules() {
		if err := netlink.RuleDel(r); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("tun: delete rule %v: %w", r, err))
		}
	}
	t.rulesOn = false
	return errors.Join(errs...)
}

func (t *KernelTUN) hostRoute(dst netip.Prefix, src netip.Addr) (*netlink.Route, error) {
	l, err := t.link()
	if err != nil {
		return nil, err
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: prefixNet(dst), Scope: netlink.SCOPE_LINK, Table: HostRouteTable}
	if src.IsValid() {
		r.Src = src.Unmap().AsSlice()
	}
	return r, nil
}

// AddHostRoute routes dst (a peer's address, for a transport-mode SA)
// into the device through HostRouteTable, with src as the preferred
// source address; the first one adds the policy-routing rules. The
// daemon's own datagrams bypass it (PrepareHostRoutes).
func (t *KernelTUN) AddHostRoute(dst netip.Prefix, src netip.Addr) error {
	t.hmu.Lock()
	defer t.hmu.Unlock()
	if err := t.rulesUpLocked(); err != nil {
		return err
	}
	r, err := t.hostRoute(dst, src)
	if err == nil {
		err = netlink.RouteReplace(r)
	}
	if err != nil {
		if t.hostRoutes == 0 {
			t.rulesDownLocked()
		}
		return fmt.Errorf("tun: host route %v via %s (table %d): %w", dst, t.name, HostRouteTable, err)
	}
	t.hostRoutes++
	return nil
}

// DeleteHostRoute removes a route AddHostRoute added; the last one takes
// the rules with it.
func (t *KernelTUN) DeleteHostRoute(dst netip.Prefix, src netip.Addr) error {
	t.hmu.Lock()
	defer t.hmu.Unlock()
	var errs []error
	r, err := t.hostRoute(dst, src)
	if err == nil {
		err = netlink.RouteDel(r)
	}
	if err != nil && !errors.Is(err, errNoRoute) {
		errs = append(errs, fmt.Errorf("tun: delete host route %v via %s: %w", dst, t.name, err))
	}
	if t.hostRoutes > 0 {
		t.hostRoutes--
	}
	if t.hostRoutes == 0 && t.rulesOn {
		errs = append(errs, t.rulesDownLocked())
	}
	return errors.Join(errs...)
}

// Close removes the host-route rules and the bypass routes, then closes
// the device (which takes its own routes with it).
func (t *KernelTUN) Close() error {
	t.hmu.Lock()
	var err error
	if t.rulesOn {
		err = t.rulesDownLocked()
	}
	t.hostRoutes = 0
	t.hmu.Unlock()
	return errors.Join(err, t.deleteBypassRoutes(), t.Device.Close())
}
