//go:build linux

package tun

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestKernelTUN creates ipsec-t<pid> in a fresh network namespace, checks
// it is up with the MTU asked, gives it an address and a route, and
// removes it. It needs root; without root it skips, except under CI=true.
// The test re-runs its own binary inside the namespace (ip netns exec), so
// no thread of this process changes namespace.
func TestKernelTUN(t *testing.T) {
	if os.Getenv("GOSWAN_TUN_IN_NETNS") == "1" {
		kernelTUNInNamespace(t)
		return
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but not root: the kernel TUN test must run as root in CI")
		}
		t.Skip("not root: the kernel TUN test needs root (CAP_NET_ADMIN) and ip netns")
	}
	ipCmd, err := exec.LookPath("ip")
	if err != nil {
		t.Fatalf("ip (iproute2) not found: %v", err)
	}
	name := fmt.Sprintf("goswan-tun-%d", os.Getpid())
	if out, err := exec.Command(ipCmd, "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	defer func() {
		if out, err := exec.Command(ipCmd, "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	}()
	cmd := exec.Command(ipCmd, "netns", "exec", name, os.Args[0], "-test.run=^TestKernelTUN$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "GOSWAN_TUN_IN_NETNS=1", fmt.Sprintf("GOSWAN_TUN_NAME=ipsec-t%d", os.Getpid()))
	out, err := cmd.CombinedOutput()
	t.Logf("in namespace %s:\n%s", name, out)
	if err != nil {
		t.Fatalf("the test inside the namespace failed: %v", err)
	}
}

func kernelTUNInNamespace(t *testing.T) {
	name := os.Getenv("GOSWAN_TUN_NAME")
	const mtu = 1380
	tn, err := NewKernelTUN(name, mtu)
	if err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if a := l.Attrs(); a.MTU != mtu || a.Flags&net.FlagUp == 0 {
		t.Fatalf("%s: MTU %d flags %v; want MTU %d and up", name, a.MTU, a.Flags, mtu)
	}
	if m, _ := tn.MTU(); m != mtu {
		t.Errorf("Device.MTU() = %d, want %d", m, mtu)
	}
	if bs := tn.BatchSize(); bs < 1 {
		t.Errorf("BatchSize %d", bs)
	}
	if err := tn.AddAddress(netip.MustParsePrefix("10.1.0.1/32")); err != nil {
		t.Fatal(err)
	}
	remote := netip.MustParsePrefix("10.2.0.0/24")
	if err := tn.AddRoute(remote); err != nil {
		t.Fatal(err)
	}
	routes, err := netlink.RouteList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range routes {
		found = found || (r.Dst != nil && r.Dst.String() == remote.String())
	}
	if !found {
		t.Fatalf("route to %v not found on %s: %v", remote, name, routes)
	}
	if err := tn.DeleteRoute(remote); err != nil {
		t.Fatal(err)
	}
	if err := tn.DeleteRoute(remote); err != nil {
		t.Errorf("deleting a route twice: %v", err)
	}
	hostRoutesInNamespace(t, tn, name)
	bypassRoutesInNamespace(t, tn, l.Attrs().Index)
	if err := tn.Close(); err != nil {
		t.Fatal(err)
	}
	if rs := bypassRoutes(t); len(rs) != 0 {
		t.Errorf("bypass routes left after Close: %v", rs)
	}
	if n := countOurRules(t); n != 0 {
		t.Errorf("%d host-route rules left after Close", n)
	}
	if _, err := netlink.LinkByName(name); err == nil {
		t.Fatalf("%s still there after Close", name)
	}
	t.Logf("%s: up, MTU %d, address and route set, removed", name, mtu)
}

// countOurRules counts goswan's host-route rules, both families.
func countOurRules(t *testing.T) int {
	t.Helper()
	n := 0
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rules, err := netlink.RuleList(fam)
		if err != nil {
			t.Fatal(err)
		}
		for i := range rules {
			if ours(&rules[i]) {
				n++
			}
		}
	}
	return n
}

func tableRoutes(t *testing.T) []netlink.Route {
	t.Helper()
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: HostRouteTable}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// hostRoutesInNamespace checks the transport-mode host routes: leftovers
// of a crashed run go at PrepareHostRoutes, the first route brings the
// rules (bypass per port and family, then the table) and a loose
// rp_filter, the last one takes them away.
func hostRoutesInNamespace(t *testing.T, tn *KernelTUN, name string) {
	if err := tn.AddHostRoute(netip.MustParsePrefix("10.9.9.9/32"), netip.Addr{}); err == nil {
		t.Error("AddHostRoute before PrepareHostRoutes succeeded")
	}
	// What a crashed run leaves: its rules.
	left := netlink.NewRule()
	left.Priority, left.Table, left.IifName = HostRulePriority+1, HostRouteTable, "lo"
	if err := netlink.RuleAdd(left); err != nil {
		t.Fatal(err)
	}
	left = netlink.NewRule()
	left.Priority, left.Table, left.IPProto, left.Sport = HostRulePriority, 254, 17, netlink.NewRulePortRange(500, 500)
	if err := netlink.RuleAdd(left); err != nil {
		t.Fatal(err)
	}
	if n := countOurRules(t); n != 2 {
		t.Fatalf("%d leftover rules set up, want 2", n)
	}
	if err := tn.PrepareHostRoutes(500, 4500); err != nil {
		t.Fatal(err)
	}
	if n := countOurRules(t); n != 0 {
		t.Fatalf("%d leftover rules after PrepareHostRoutes, want 0", n)
	}
	src := netip.MustParseAddr("10.1.0.1")
	a, b := netip.MustParsePrefix("10.9.9.9/32"), netip.MustParsePrefix("10.9.9.10/32")
	for _, p := range []netip.Prefix{a, b} {
		if err := tn.AddHostRoute(p, src); err != nil {
			t.Fatal(err)
		}
	}
	if n := countOurRules(t); n != 8 { // 2 ports + ESP + the table, 2 families
		t.Errorf("%d rules with two host routes, want 8", n)
	}
	rs := tableRoutes(t)
	if len(rs) != 2 || !rs[0].Src.Equal(src.AsSlice()) {
		t.Errorf("table %d: %v, want two routes from %v", HostRouteTable, rs, src)
	}
	if v, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + name + "/rp_filter"); err != nil || string(v) != "2\n" {
		t.Errorf("rp_filter of %s: %q, %v; want 2", name, v, err)
	}
	if err := tn.DeleteHostRoute(a, src); err != nil {
		t.Fatal(err)
	}
	if n := countOurRules(t); n != 8 {
		t.Errorf("%d rules with one host route left, want 8", n)
	}
	if err := tn.DeleteHostRoute(b, src); err != nil {
		t.Fatal(err)
	}
	if n, rs := countOurRules(t), tableRoutes(t); n != 0 || len(rs) != 0 {
		t.Errorf("after the last host route: %d rules, routes %v; want none", n, rs)
	}
	// Close takes away what is left.
	if err := tn.AddHostRoute(a, src); err != nil {
		t.Fatal(err)
	}
}

// bypassRoutes lists the main table's IPv4 routes with BypassRouteProtocol.
func bypassRoutes(t *testing.T) []netlink.Route {
	t.Helper()
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: 254, Protocol: BypassRouteProtocol},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// bypassRoutesInNamespace gives the namespace a veth link with a default
// route, routes 10.2.0.0/24 into the TUN and checks that a bypass route
// for 10.2.0.5 copies the default route past it. It leaves one bypass
// route for Close to remove.
func bypassRoutesInNamespace(t *testing.T, tn *KernelTUN, tunIndex int) {
	five, remote := netip.MustParsePrefix("10.2.0.5/32"), netip.MustParsePrefix("10.2.0.0/24")
	if err := tn.AddBypassRoute(five); err == nil {
		t.Error("AddBypassRoute without any route past the TUN succeeded")
	}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "gs-veth0"}, PeerName: "gs-veth1"}
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatal(err)
	}
	dl, err := netlink.LinkByName("gs-veth0")
	if err != nil {
		t.Fatal(err)
	}
	peer, err := netlink.LinkByName("gs-veth1")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := netlink.ParseAddr("10.7.0.1/24")
	if err := netlink.LinkSetUp(peer); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(dl); err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(dl, a); err != nil {
		t.Fatal(err)
	}
	gw := net.ParseIP("10.7.0.254")
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: dl.Attrs().Index, Gw: gw}); err != nil {
		t.Fatal(err)
	}
	if err := tn.AddRoute(remote); err != nil {
		t.Fatal(err)
	}
	// What a crashed run leaves.
	left := &netlink.Route{LinkIndex: dl.Attrs().Index, Gw: gw, Dst: prefixNet(netip.MustParsePrefix("10.8.0.0/16")), Protocol: BypassRouteProtocol}
	if err := netlink.RouteAdd(left); err != nil {
		t.Fatal(err)
	}
	if err := RemoveBypassRouteLeftovers(); err != nil {
		t.Fatal(err)
	}
	if rs := bypassRoutes(t); len(rs) != 0 {
		t.Fatalf("RemoveBypassRouteLeftovers left %v", rs)
	}
	via := func(dst string) int {
		t.Helper()
		rs, err := netlink.RouteGet(net.ParseIP(dst))
		if err != nil || len(rs) == 0 {
			t.Fatalf("route get %s: %v %v", dst, rs, err)
		}
		return rs[0].LinkIndex
	}
	if via("10.2.0.5") != tunIndex {
		t.Fatal("10.2.0.5 is not routed into the TUN before the bypass route")
	}
	for range 2 { // the second is a no-op
		if err := tn.AddBypassRoute(five); err != nil {
			t.Fatal(err)
		}
	}
	if rs := bypassRoutes(t); len(rs) != 1 || !rs[0].Gw.Equal(gw) || rs[0].LinkIndex != dl.Attrs().Index || rs[0].Priority != BypassRouteMetric {
		t.Fatalf("bypass routes %v; want one to %v via %v dev gs-veth0 metric %d", rs, five, gw, BypassRouteMetric)
	}
	if via("10.2.0.5") != dl.Attrs().Index || via("10.2.0.6") != tunIndex {
		t.Fatal("the bypass route for 10.2.0.5 does not lead past the TUN, or takes 10.2.0.6 along")
	}
	// The host routes 10.7.0.0/24 itself: nothing to add, nothing to delete.
	onLink := netip.MustParsePrefix("10.7.0.0/24")
	if err := tn.AddBypassRoute(onLink); err != nil {
		t.Fatal(err)
	}
	if rs := bypassRoutes(t); len(rs) != 1 {
		t.Fatalf("bypass routes %v after a prefix the host routes itself", rs)
	}
	if err := tn.DeleteBypassRoute(onLink); err != nil {
		t.Fatal(err)
	}
	if via("10.7.0.9") != dl.Attrs().Index {
		t.Fatal("deleting the no-op bypass route took the host's route")
	}
	if err := tn.DeleteBypassRoute(five); err != nil {
		t.Fatal(err)
	}
	if rs := bypassRoutes(t); len(rs) != 0 || via("10.2.0.5") != tunIndex {
		t.Fatalf("after DeleteBypassRoute: %v", rs)
	}
	if err := tn.DeleteBypassRoute(five); err != nil {
		t.Errorf("deleting a bypass route twice: %v", err)
	}
	if err := tn.AddBypassRoute(five); err != nil { // for Close
		t.Fatal(err)
	}
}
