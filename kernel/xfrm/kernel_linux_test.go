package xfrm

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"goswan/kernel"
	"goswan/proposal"
)

func TestGetSPI(t *testing.T) {
	ns := newNS(t)
	b := ns.backend(t, Config{})
	ctx := ctxT(t)
	for _, c := range []struct{ src, dst string }{
		{"192.0.2.2", "192.0.2.1"},
		{"2001:db8::2", "2001:db8::1"},
	} {
		src, dst := netip.MustParseAddr(c.src), netip.MustParseAddr(c.dst)
		reqid := ourReqID(7)
		seen := map[uint32]bool{}
		for range 4 {
			spi, err := b.GetSPI(ctx, src, dst, kernel.ESP, reqid)
			if err != nil {
				t.Fatalf("GetSPI %v -> %v: %v", src, dst, err)
			}
			if spi < 0x100 {
				t.Errorf("GetSPI gave %#x, below 0x100", spi)
			}
			if seen[spi] {
				t.Errorf("GetSPI gave %#x twice", spi)
			}
			seen[spi] = true
		}
		out := ns.ip(t, "xfrm", "state")
		for spi := range seen {
			if !strings.Contains(out, fmt.Sprintf("spi 0x%08x reqid %d", spi, reqid)) {
				t.Errorf("ip xfrm state lacks the larval state spi %#x reqid %d:\n%s", spi, reqid, out)
			}
			// The independent decoder sees it too, with our addresses.
			st, err := ns.vnl(t).XfrmStateGet(&netlink.XfrmState{Dst: net.IP(dst.AsSlice()), Proto: netlink.XFRM_PROTO_ESP, Spi: int(spi)})
			if err != nil {
				t.Fatalf("netlink get spi %#x: %v", spi, err)
			}
			if !st.Src.Equal(net.IP(src.AsSlice())) || st.Reqid != int(reqid) {
				t.Errorf("larval state: src %v reqid %#x, want %v %#x", st.Src, st.Reqid, src, reqid)
			}
			id := kernel.SAID{Dst: dst, SPI: spi, Proto: kernel.ESP}
			if _, err := b.QuerySA(ctx, id); err != nil {
				t.Errorf("QuerySA of the larval state %v: %v", id, err)
			}
			if err := b.DeleteSA(ctx, id); err != nil {
				t.Fatalf("DeleteSA %v: %v", id, err)
			}
			if err := b.DeleteSA(ctx, id); !errors.Is(err, kernel.ErrNotFound) {
				t.Errorf("second DeleteSA %v: %v, want ErrNotFound", id, err)
			}
			if _, err := b.QuerySA(ctx, id); !errors.Is(err, kernel.ErrNotFound) {
				t.Errorf("QuerySA after delete %v: %v, want ErrNotFound", id, err)
			}
		}
		if out := ns.ip(t, "xfrm", "state"); strings.TrimSpace(out) != "" {
			t.Errorf("states left after DeleteSA:\n%s", out)
		}
	}
}

func testPolicies() []kernel.Policy {
	v4 := kernel.Selector{Src: pfx("10.1.0.0/16"), Dst: pfx("10.2.0.0/16")}
	v4in := kernel.Selector{Src: pfx("10.2.0.0/16"), Dst: pfx("10.1.0.0/16")}
	v6 := kernel.Selector{Src: pfx("2001:db8:1::/48"), Dst: pfx("2001:db8:2::/48"), Proto: 6, DstPorts: kernel.PortRange{Lo: 443, Hi: 443}}
	tun4 := kernel.Template{Src: addr("192.0.2.1"), Dst: addr("192.0.2.2"), Proto: kernel.ESP, Mode: kernel.Tunnel, ReqID: ourReqID(1)}
	tun4in := kernel.Template{Src: addr("192.0.2.2"), Dst: addr("192.0.2.1"), Proto: kernel.ESP, Mode: kernel.Tunnel, ReqID: ourReqID(1)}
	tun6 := kernel.Template{Src: addr("2001:db8::1"), Dst: addr("2001:db8::2"), Proto: kernel.ESP, Mode: kernel.Tunnel, ReqID: ourReqID(2)}
	return []kernel.Policy{
		{Dir: kernel.Out, Selector: v4, Action: kernel.Protect, Priority: 1000, Template: tun4},
		{Dir: kernel.In, Selector: v4in, Action: kernel.Protect, Priority: 1000, Template: tun4in},
		{Dir: kernel.Fwd, Selector: v4in, Action: kernel.Protect, Priority: 1000, Template: tun4in},
		{Dir: kernel.Out, Selector: v6, Action: kernel.Protect, Template: tun6}, // priority computed
		{Dir: kernel.Out, Selector: kernel.Selector{Src: pfx("192.0.2.1/32"), Dst: pfx("192.0.2.9/32"), Proto: 17, SrcPorts: kernel.PortRange{Lo: 1024, Hi: 2047}},
			Action: kernel.Protect, Priority: 77, Template: kernel.Template{Proto: kernel.ESP, Mode: kernel.Transport, ReqID: ourReqID(3)}},
		{Dir: kernel.Out, Selector: kernel.Selector{Src: pfx("10.1.0.0/16"), Dst: pfx("10.3.0.0/16")}, Action: kernel.Block, Priority: 500},
		{Dir: kernel.Out, Selector: kernel.Selector{Src: pfx("10.1.0.0/16"), Dst: pfx("10.4.0.0/24")}, Action: kernel.Bypass, Priority: 400},
		{Dir: kernel.In, Selector: kernel.Selector{Src: pfx("2001:db8:9::/64"), Dst: pfx("::/0")}, Action: kernel.Bypass, Priority: 10},
		{Dir: kernel.Out, Selector: v4, Action: kernel.Protect, Priority: 900, Template: tun4,
			Mark: &kernel.Mark{Value: 0x42, Mask: 0xff}, IfID: 9},
	}
}

// normPolicy is p as the kernel gives it back: the computed priority, the
// full mark mask and no template for policies without one.
func normPolicy(p kernel.Policy) kernel.Policy {
	p.Priority = policyPriority(&p)
	if p.Action != kernel.Protect {
		p.Template = kernel.Template{}
	}
	if p.Mark != nil {
		m := xfrmMark(*p.Mark)
		p.Mark = &m
	}
	return p
}

func samePolicy(a, b kernel.Policy) bool {
	ma, mb := a.Mark, b.Mark
	a.Mark, b.Mark = nil, nil
	if a != b || (ma == nil) != (mb == nil) {
		return false
	}
	return ma == nil || *ma == *mb
}

func policyString(p kernel.Policy) string {
	s := fmt.Sprintf("%+v", p)
	if p.Mark != nil {
		s += fmt.Sprintf(" mark %#x/%#x", p.Mark.Value, p.Mark.Mask)
	}
	return s
}

func findPolicy(ps []kernel.Policy, want kernel.Policy) bool {
	for _, p := range ps {
		if samePolicy(p, want) {
			return true
		}
	}
	return false
}

func TestPolicies(t *testing.T) {
	ns := newNS(t)
	b := ns.backend(t, Config{})
	ctx := ctxT(t)
	want := testPolicies()
	for i := range want {
		if err := b.AddPolicy(ctx, &want[i]); err != nil {
			t.Fatalf("AddPolicy %s: %v", policyString(want[i]), err)
		}
	}
	got, err := b.Policies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("%d policies read back, want %d", len(got), len(want))
	}
	for _, w := range want {
		if !findPolicy(got, normPolicy(w)) {
			t.Errorf("policy not read back as installed: %s\nread back:", policyString(normPolicy(w)))
			for _, g := range got {
				t.Logf("  %s", policyString(g))
			}
		}
	}

	// The same, through vishvananda/netlink's decoder.
	vps, err := ns.vnl(t).XfrmPolicyList(netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		w = normPolicy(w)
		found := false
		for _, v := range vps {
			if !samePrefix(v.Src, w.Selector.Src) || !samePrefix(v.Dst, w.Selector.Dst) ||
				int(v.Dir) != int(policyDir[w.Dir]) || (v.Mark != nil) != (w.Mark != nil) {
				continue
			}
			found = true
			if v.Priority != int(w.Priority) {
				t.Errorf("%s: priority %d, want %d", policyString(w), v.Priority, w.Priority)
			}
			if int(v.Proto) != int(w.Selector.Proto) {
				t.Errorf("%s: proto %d", policyString(w), v.Proto)
			}
			if w.Selector.Proto == 6 && v.DstPort != 443 {
				t.Errorf("%s: dport %d", policyString(w), v.DstPort)
			}
			if w.Selector.Proto == 17 && v.SrcPort != 1024 {
				t.Errorf("%s: sport %d", policyString(w), v.SrcPort)
			}
			wantAction := netlink.XFRM_POLICY_ALLOW
			if w.Action == kernel.Block {
				wantAction = netlink.XFRM_POLICY_BLOCK
			}
			if v.Action != wantAction {
				t.Errorf("%s: action %v", policyString(w), v.Action)
			}
			if v.Ifid != int(w.IfID) {
				t.Errorf("%s: if_id %d", policyString(w), v.Ifid)
			}
			if w.Mark != nil && (v.Mark.Value != w.Mark.Value || v.Mark.Mask != w.Mark.Mask) {
				t.Errorf("%s: mark %v", policyString(w), v.Mark)
			}
			if w.Action != kernel.Protect {
				if len(v.Tmpls) != 0 {
					t.Errorf("%s: templates %v, want none", policyString(w), v.Tmpls)
				}
				continue
			}
			if len(v.Tmpls) != 1 {
				t.Errorf("%s: templates %v, want one", policyString(w), v.Tmpls)
				continue
			}
			tm := v.Tmpls[0]
			wantMode := netlink.XFRM_MODE_TUNNEL
			if w.Template.Mode == kernel.Transport {
				wantMode = netlink.XFRM_MODE_TRANSPORT
			}
			if tm.Reqid != int(w.Template.ReqID) || tm.Proto != netlink.XFRM_PROTO_ESP || tm.Mode != wantMode {
				t.Errorf("%s: template %v", policyString(w), tm)
			}
			if w.Template.Mode == kernel.Tunnel && (tm.Src.String() != w.Template.Src.String() || tm.Dst.String() != w.Template.Dst.String()) {
				t.Errorf("%s: template addresses %v -> %v", policyString(w), tm.Src, tm.Dst)
			}
		}
		if !found {
			t.Errorf("vishvananda/netlink does not see %s", policyString(w))
			for _, v := range vps {
				t.Logf("  %v", v)
			}
		}
	}
	t.Logf("ip xfrm policy:\n%s", ns.ip(t, "xfrm", "policy"))

	// Update: the same selector, direction and mark replace the policy.
	up := want[0]
	up.Priority = 1500
	up.Template.ReqID = ourReqID(11)
	if err := b.AddPolicy(ctx, &up); err != nil {
		t.Fatalf("AddPolicy (update): %v", err)
	}
	got, _ = b.Policies(ctx)
	if len(got) != len(want) {
		t.Errorf("%d policies after the update, want %d", len(got), len(want))
	}
	if !findPolicy(got, up) || findPolicy(got, want[0]) {
		t.Errorf("update did not replace %s", policyString(want[0]))
	}

	for i := range want {
		if err := b.DeletePolicy(ctx, &want[i]); err != nil {
			t.Errorf("DeletePolicy %s: %v", policyString(want[i]), err)
		}
	}
	if err := b.DeletePolicy(ctx, &want[0]); !errors.Is(err, kernel.ErrNotFound) {
		t.Errorf("second DeletePolicy: %v, want ErrNotFound", err)
	}
	if out := ns.ip(t, "xfrm", "policy"); strings.TrimSpace(out) != "" {
		t.Errorf("policies left:\n%s", out)
	}
}

// sendUDP sends one datagram from inside the namespace, with sendto on an
// unconnected socket so that the route (and the policy) is looked up for
// the packet; bypass gives the socket IKE's bypass policies first.
func sendUDP(t *testing.T, ns *testNS, from netip.Addr, dst netip.AddrPort, bypass bool) (local netip.AddrPort, sendErr error) {
	t.Helper()
	ns.do(t, func() {
		fam := unix.AF_INET
		if dst.Addr().Is6() {
			fam = unix.AF_INET6
		}
		fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("socket: %v", err)
		}
		defer unix.Close(fd)
		if bypass {
			if err := BypassSocket(uintptr(fd), fam); err != nil {
				t.Fatalf("BypassSocket: %v", err)
			}
		}
		sockaddr := func(ap netip.AddrPort) unix.Sockaddr {
			if fam == unix.AF_INET {
				return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
			}
			return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
		}
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(from, 0))); err != nil {
			t.Fatalf("bind %v: %v", from, err)
		}
		ls, _ := unix.Getsockname(fd)
		switch a := ls.(type) {
		case *unix.SockaddrInet4:
			local = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
		case *unix.SockaddrInet6:
			local = netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
		}
		sendErr = unix.Sendto(fd, []byte("trigger"), 0, sockaddr(dst))
	})
	return local, sendErr
}

func waitEvent(t *testing.T, b *Backend, d time.Duration) (kernel.Event, bool) {
	t.Helper()
	select {
	case ev := <-b.Events():
		return ev, true
	case <-time.After(d):
		return kernel.Event{}, false
	}
}

func TestAcquire(t *testing.T) {
	ns := newNS(t)
	ns.ip(t, "addr", "add", "192.0.2.1/32", "dev", "lo")
	ns.ip(t, "route", "add", "198.51.100.0/24", "dev", "lo", "src", "192.0.2.1")
	ns.ip(t, "route", "add", "203.0.113.0/24", "dev", "lo", "src", "192.0.2.1")
	ns.ip(t, "addr", "add", "2001:db8::1/128", "dev", "lo", "nodad")
	ns.ip(t, "-6", "route", "add", "2001:db8:5::/64", "dev", "lo", "src", "2001:db8::1")
	b := ns.backend(t, Config{})
	ctx := ctxT(t)

	trap := func(sel kernel.Selector, tsrc, tdst string, reqid uint32) {
		p := kernel.Policy{Dir: kernel.Out, Selector: sel, Action: kernel.Protect,
			Template: kernel.Template{Src: addr(tsrc), Dst: addr(tdst), Proto: kernel.ESP, Mode: kernel.Tunnel, ReqID: reqid}}
		if err := b.AddPolicy(ctx, &p); err != nil {
			t.Fatalf("AddPolicy %v: %v", sel, err)
		}
	}
	// Another daemon's trap (a Libreswan reqid): its acquires are not ours.
	trap(kernel.Selector{Src: pfx("0.0.0.0/0"), Dst: pfx("203.0.113.0/24")}, "192.0.2.1", "192.0.2.77", 16384)
	trap(kernel.Selector{Src: pfx("0.0.0.0/0"), Dst: pfx("198.51.100.0/24")}, "192.0.2.1", "192.0.2.99", ourReqID(5))
	trap(kernel.Selector{Src: pfx("::/0"), Dst: pfx("2001:db8:5::/64")}, "2001:db8::1", "2001:db8::99", ourReqID(6))

	sendUDP(t, ns, addr("192.0.2.1"), netip.MustParseAddrPort("203.0.113.7:9999"), false)
	if ev, ok := waitEvent(t, b, 300*time.Millisecond); ok {
		t.Errorf("event for another daemon's reqid: %+v", ev)
	}

	for _, c := range []struct {
		dst       string
		tdst      string
		reqid     uint32
		localAddr string
	}{
		{"198.51.100.7:9999", "192.0.2.99", ourReqID(5), "192.0.2.1"},
		{"[2001:db8:5::7]:9999", "2001:db8::99", ourReqID(6), "2001:db8::1"},
	} {
		dst := netip.MustParseAddrPort(c.dst)
		local, err := sendUDP(t, ns, addr(c.localAddr), dst, false)
		t.Logf("send to %v from %v: %v", dst, local, err)
		ev, ok := waitEvent(t, b, 5*time.Second)
		if !ok {
			t.Fatalf("no acquire for %v", dst)
		}
		bits := dst.Addr().BitLen()
		want := kernel.Event{
			Kind: kernel.Acquire,
			SA:   kernel.SAID{Dst: addr(c.tdst), Proto: kernel.ESP},
			Selector: kernel.Selector{
				Src:      netip.PrefixFrom(addr(c.localAddr), bits),
				Dst:      netip.PrefixFrom(dst.Addr(), bits),
				Proto:    17,
				SrcPorts: kernel.PortRange{Lo: local.Port(), Hi: local.Port()},
				DstPorts: kernel.PortRange{Lo: dst.Port(), Hi: dst.Port()},
			},
			ReqID: c.reqid,
		}
		if ev != want {
			t.Errorf("acquire for %v:\n got %+v\nwant %+v", dst, ev, want)
		}
	}
}

// TestBypassSocket: under a trap for everything, a socket with IKE's
// bypass policies sends in the clear and raises no acquire.
func TestBypassSocket(t *testing.T) {
	ns := newNS(t)
	ns.ip(t, "addr", "add", "192.0.2.1/32", "dev", "lo")
	ns.ip(t, "route", "add", "198.51.100.0/24", "dev", "lo", "src", "192.0.2.1")
	ns.ip(t, "addr", "add", "2001:db8::1/128", "dev", "lo", "nodad")
	ns.ip(t, "-6", "route", "add", "2001:db8:5::/64", "dev", "lo", "src", "2001:db8::1")
	b := ns.backend(t, Config{})
	ctx := ctxT(t)
	for _, sel := range []kernel.Selector{
		{Src: pfx("0.0.0.0/0"), Dst: pfx("198.51.100.0/24")},
		{Src: pfx("::/0"), Dst: pfx("2001:db8:5::/64")},
	} {
		tsrc, tdst := "192.0.2.1", "192.0.2.99"
		if sel.Src.Addr().Is6() {
			tsrc, tdst = "2001:db8::1", "2001:db8::99"
		}
		p := kernel.Policy{Dir: kernel.Out, Selector: sel, Action: kernel.Protect,
			Template: kernel.Template{Src: addr(tsrc), Dst: addr(tdst), Proto: kernel.ESP, Mode: kernel.Tunnel, ReqID: ourReqID(1)}}
		if err := b.AddPolicy(ctx, &p); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ from, dst string }{{"192.0.2.1", "198.51.100.7:500"}, {"2001:db8::1", "[2001:db8:5::7]:500"}} {
		from, dst := addr(c.from), c.dst
		_, err := sendUDP(t, ns, from, netip.MustParseAddrPort(dst), true)
		if err != nil {
			t.Errorf("bypassed send to %s: %v", dst, err)
		}
		if ev, ok := waitEvent(t, b, 300*time.Millisecond); ok {
			t.Errorf("bypassed socket raised %+v", ev)
		}
		sendUDP(t, ns, from, netip.MustParseAddrPort(dst), false)
		if _, ok := waitEvent(t, b, 5*time.Second); !ok {
			t.Errorf("a socket without bypass raised no acquire for %s", dst)
		}
	}
}

func TestSetESPInUDP(t *testing.T) {
	ns := newNS(t)
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		ns.do(t, func() {
			fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			if err := SetESPInUDP(uintptr(fd)); err != nil {
				t.Fatalf("family %d: %v", fam, err)
			}
			v, err := unix.GetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_ENCAP)
			if err != nil || v != unix.UDP_ENCAP_ESPINUDP {
				t.Errorf("family %d: UDP_ENCAP reads %d, %v", fam, v, err)
			}
			fd2, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd2)
			if err := PrepareIKESocket(uintptr(fd2), fam, true); err != nil {
				t.Fatalf("PrepareIKESocket family %d: %v", fam, err)
			}
			if v, err := unix.GetsockoptInt(fd2, unix.IPPROTO_UDP, unix.UDP_ENCAP); err != nil || v != unix.UDP_ENCAP_ESPINUDP {
				t.Errorf("PrepareIKESocket family %d: UDP_ENCAP reads %d, %v", fam, v, err)
			}
		})
	}
}

// testSAs are SAs with every transform and option; on a kernel with ESP
// they are installed and read back, on one without (this project's
// machines) each must fail with the error that names the other flags.
func testSAs() []kernel.SA {
	key := func(n int, seed byte) []byte {
		k := make([]byte, n)
		for i := range k {
			k[i] = seed + byte(i)
		}
		return k
	}
	sel := []kernel.Selector{{Src: pfx("10.1.0.0/16"), Dst: pfx("10.2.0.0/16")}}
	return []kernel.SA{
		{SPI: 0x1001, Proto: kernel.ESP, Mode: kernel.Tunnel, Dir: kernel.Out, Src: addr("192.0.2.1"), Dst: addr("192.0.2.2"),
			Encr: proposal.EncrAESGCM16, EncrKey: key(36, 1), ReplayWindow: 128, ESN: true, ReqID: ourReqID(1), Selectors: sel,
			Lifetime: kernel.Lifetime{Soft: kernel.Limits{Bytes: 1 << 30, Packets: 1 << 20, Time: 50 * time.Minute}, Hard: kernel.Limits{Bytes: 1 << 31, Packets: 1 << 21, Time: time.Hour}}},
		{SPI: 0x1002, Proto: kernel.ESP, Mode: kernel.Tunnel, Dir: kernel.Out, Src: addr("192.0.2.1"), Dst: addr("192.0.2.2"),
			Encr: proposal.EncrChaCha20Poly1305, EncrKey: key(36, 2), ReplayWindow: 32, ReqID: ourReqID(1),
			Encap: &kernel.Encap{SrcPort: 4500, DstPort: 4501}, Mark: &kernel.Mark{Value: 7, Mask: 0xff}, IfID: 3},
		{SPI: 0x1003, Proto: kernel.ESP, Mode: kernel.Transport, Dir: kernel.Out, Src: addr("2001:db8::1"), Dst: addr("2001:db8::2"),
			Encr: proposal.EncrAESCBC, EncrKey: key(32, 3), Integ: proposal.IntegHMACSHA2256128, IntegKey: key(32, 4), ReplayWindow: 64, ReqID: ourReqID(2),
			Selectors: []kernel.Selector{{Src: pfx("2001:db8::1/128"), Dst: pfx("2001:db8::2/128"), Proto: 6, DstPorts: kernel.PortRange{Lo: 80, Hi: 80}}}},
		{SPI: 0x1004, Proto: kernel.ESP, Mode: kernel.Tunnel, Dir: kernel.Out, Src: addr("192.0.2.1"), Dst: addr("192.0.2.2"),
			Encr: proposal.EncrAESCBC, EncrKey: key(16, 5), Integ: proposal.IntegHMACSHA2384192, IntegKey: key(48, 6), ReqID: ourReqID(3)},
		{SPI: 0x1005, Proto: kernel.ESP, Mode: kernel.Tunnel, Dir: kernel.Out, Src: addr("192.0.2.1"), Dst: addr("192.0.2.2"),
			Encr: proposal.EncrAESCBC, EncrKey: key(24, 7), Integ: proposal.IntegHMACSHA2512256, IntegKey: key(64, 8), ReplayWindow: 4096, ESN: true, ReqID: ourReqID(4)},
	}
}

// TestSA installs SAs in the namespace (never on the host). On a kernel
// without ESP (this project's machines) every AddSA must fail with the
// error that names --use-userspace and --use-netstack; on one with ESP
// (Debian's, under qemu) every transform is installed, read back through
// vishvananda/netlink, moved with UpdateSA and deleted.
func TestSA(t *testing.T) {
	ns := newNS(t)
	b := ns.backend(t, Config{})
	ctx := ctxT(t)

	// Inbound: GetSPI, then AddSA replaces the larval state.
	in := kernel.SA{Proto: kernel.ESP, Mode: kernel.Tunnel, Dir: kernel.In, Src: addr("192.0.2.2"), Dst: addr("192.0.2.1"),
		Encr: proposal.EncrAESGCM16, EncrKey: make([]byte, 20), ReplayWindow: 64, ESN: true, ReqID: ourReqID(9)}
	spi, err := b.GetSPI(ctx, in.Src, in.Dst, kernel.ESP, in.ReqID)
	if err != nil {
		t.Fatal(err)
	}
	in.SPI = spi
	err = b.AddSA(ctx, &in)
	var ue *kernel.UnavailableError
	if err != nil && errors.As(err, &ue) {
		t.Logf("this kernel has no ESP; AddSA says: %v", err)
		testNoESP(t, b, &in, err)
		return
	}
	if err != nil {
		t.Fatalf("AddSA inbound: %v", err)
	}
	t.Log("this kernel has ESP: checking the installed states")
	testWithESP(t, ns, b, &in)
}

func testNoESP(t *testing.T, b *Backend, in *kernel.SA, err error) {
	ctx := ctxT(t)
	for _, w := range []string{"--use-userspace", "--use-netstack", "lacks ESP support"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("AddSA error does not say %q: %v", w, err)
		}
	}
	var nle *NetlinkError
	if !errors.As(err, &nle) {
		t.Errorf("AddSA error does not carry the kernel's: %v", err)
	}
	// A failed AddSA leaves the reservation as it was.
	if _, err := b.QuerySA(ctx, in.ID()); err != nil {
		t.Errorf("the larval state is gone after the failed AddSA: %v", err)
	}
	if err := b.DeleteSA(ctx, in.ID()); err != nil {
		t.Errorf("DeleteSA of the reservation: %v", err)
	}
	for _, sa := range testSAs() {
		err := b.AddSA(ctx, &sa)
		var ue *kernel.UnavailableError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--use-userspace or --use-netstack") {
			t.Errorf("AddSA %v %v: %v, want the kernel-lacks-ESP error", sa.ID(), sa.Encr, err)
		}
	}
}

func testWithESP(t *testing.T, ns *testNS, b *Backend, in *kernel.SA) {
	ctx := ctxT(t)
	h := ns.vnl(t)
	all := append([]kernel.SA{*in}, testSAs()...)
	for i := range all[1:] {
		if err := b.AddSA(ctx, &all[i+1]); err != nil {
			t.Fatalf("AddSA %v: %v", all[i+1].ID(), err)
		}
	}
	for _, sa := range all {
		q := &netlink.XfrmState{Dst: net.IP(sa.Dst.AsSlice()), Proto: netlink.XFRM_PROTO_ESP, Spi: int(sa.SPI)}
		if sa.Mark != nil {
			q.Mark = &netlink.XfrmMark{Value: sa.Mark.Value, Mask: sa.Mark.Mask}
		}
		st, err := h.XfrmStateGet(q)
		if err != nil {
			t.Errorf("netlink get %v: %v", sa.ID(), err)
			continue
		}
		name, aead, icv, _ := encrAlgo(sa.Encr, sa.EncrKey)
		switch {
		case aead:
			if st.Aead == nil || st.Aead.Name != name || st.Aead.ICVLen != int(icv) || string(st.Aead.Key) != string(sa.EncrKey) {
				t.Errorf("%v: aead %v", sa.ID(), st.Aead)
			}
		default:
			iname, trunc, _ := integAlgo(sa.Integ, sa.IntegKey)
			if st.Crypt == nil || st.Crypt.Name != name || string(st.Crypt.Key) != string(sa.EncrKey) {
				t.Errorf("%v: crypt %v", sa.ID(), st.Crypt)
			}
			if st.Auth == nil || st.Auth.Name != iname || st.Auth.TruncateLen != int(trunc) || string(st.Auth.Key) != string(sa.IntegKey) {
				t.Errorf("%v: auth %v", sa.ID(), st.Auth)
			}
		}
		if st.Reqid != int(sa.ReqID) || !st.Src.Equal(net.IP(sa.Src.AsSlice())) {
			t.Errorf("%v: reqid %#x src %v", sa.ID(), st.Reqid, st.Src)
		}
		if (sa.Mode == kernel.Tunnel) != (st.Mode == netlink.XFRM_MODE_TUNNEL) {
			t.Errorf("%v: mode %v", sa.ID(), st.Mode)
		}
		if sa.Encap != nil && (st.Encap == nil || st.Encap.SrcPort != int(sa.Encap.SrcPort) || st.Encap.DstPort != int(sa.Encap.DstPort) || st.Encap.Type != netlink.XFRM_ENCAP_ESPINUDP) {
			t.Errorf("%v: encap %v", sa.ID(), st.Encap)
		}
		if sa.IfID != 0 && st.Ifid != int(sa.IfID) {
			t.Errorf("%v: if_id %d", sa.ID(), st.Ifid)
		}
		if l := sa.Lifetime.Hard; l.Bytes != 0 && (st.Limits.ByteHard != l.Bytes || st.Limits.PacketHard != l.Packets || st.Limits.TimeHard != uint64(l.Time/time.Second)) {
			t.Errorf("%v: limits %+v", sa.ID(), st.Limits)
		}
		if _, err := b.QuerySA(ctx, sa.ID()); err != nil {
			t.Errorf("QuerySA %v: %v", sa.ID(), err)
		}
	}
	t.Logf("ip xfrm state:\n%s", ns.ip(t, "xfrm", "state"))
	for _, w := range []string{"flag af-unspec esn", "replay-window 0", "anti-replay esn context", "replay_window 128", "replay_window 4096", "encap type espinudp sport 4500 dport 4501", "if_id 0x3", "mark 0x7/0xff"} {
		if out := ns.ip(t, "xfrm", "state"); !strings.Contains(out, w) {
			t.Errorf("ip xfrm state lacks %q", w)
		}
	}

	// UpdateSA: new encapsulation ports in place, then a new peer address.
	out := all[2]
	moved := out
	moved.Encap = &kernel.Encap{SrcPort: 4500, DstPort: 6000}
	if err := b.UpdateSA(ctx, out.ID(), &moved); err != nil {
		t.Fatalf("UpdateSA ports: %v", err)
	}
	moved.Dst = addr("192.0.2.3")
	if err := b.UpdateSA(ctx, out.ID(), &moved); err != nil {
		t.Fatalf("UpdateSA address: %v", err)
	}
	if _, err := b.QuerySA(ctx, out.ID()); !errors.Is(err, kernel.ErrNotFound) {
		t.Errorf("the old SA is still there after the move: %v", err)
	}
	if _, err := b.QuerySA(ctx, moved.ID()); err != nil {
		t.Errorf("the moved SA: %v", err)
	}
	all[2] = moved
	for _, sa := range all {
		if err := b.DeleteSA(ctx, sa.ID()); err != nil {
			t.Errorf("DeleteSA %v: %v", sa.ID(), err)
		}
	}
	if s := ns.ip(t, "xfrm", "state"); strings.TrimSpace(s) != "" {
		t.Errorf("states left:\n%s", s)
	}
}

func TestFlush(t *testing.T) {
	ns := newNS(t)
	b := ns.backend(t, Config{})
	ctx := ctxT(t)
	// Another daemon's (Libreswan's reqids start at 16384).
	ns.ip(t, "xfrm", "policy", "add", "src", "10.9.0.0/16", "dst", "10.8.0.0/16", "dir", "out", "priority", "100",
		"tmpl", "src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp", "reqid", "16384", "mode", "tunnel")
	ns.ip(t, "xfrm", "policy", "add", "src", "10.9.0.0/16", "dst", "10.7.0.0/16", "dir", "out", "action", "block")
	ns.ip(t, "xfrm", "state", "allocspi", "src", "192.0.2.2", "dst", "192.0.2.1", "proto", "esp", "reqid", "16384", "mode", "tunnel")
	// Ours: policies with no SA behind them, a bypass, a block, a reservation.
	for _, p := range testPolicies() {
		if err := b.AddPolicy(ctx, &p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.GetSPI(ctx, addr("192.0.2.2"), addr("192.0.2.1"), kernel.ESP, ourReqID(1)); err != nil {
		t.Fatal(err)
	}
	// A second Backend, as after a restart, knows nothing of the first's.
	b2 := ns.backend(t, Config{})
	if err := b2.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	pol := ns.ip(t, "xfrm", "policy")
	if n := strings.Count(pol, "dir out"); n != 2 || !strings.Contains(pol, "reqid 16384") || !strings.Contains(pol, "10.7.0.0/16") {
		t.Errorf("after Flush, want exactly the two foreign policies:\n%s", pol)
	}
	if strings.Contains(pol, "dir in") || strings.Contains(pol, "dir fwd") {
		t.Errorf("after Flush, policies of ours are left:\n%s", pol)
	}
	st := ns.ip(t, "xfrm", "state")
	if n := strings.Count(st, "proto esp"); n != 1 || !strings.Contains(st, "reqid 16384") {
		t.Errorf("after Flush, want exactly the foreign state:\n%s", st)
	}
	if ps, _ := b.Policies(ctx); len(ps) != 0 {
		t.Errorf("Policies after Flush: %v", ps)
	}
}

func samePrefix(n *net.IPNet, p netip.Prefix) bool {
	if n == nil || n.String() == "0.0.0.0/0" {
		// vishvananda/netlink decodes ::/0 as 0.0.0.0/0
		return p.Bits() == 0 && p.Addr().IsUnspecified()
	}
	a, _ := netip.AddrFromSlice(n.IP)
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits) == p
}

// TestFlushAcquireState: a packet that hits a trap policy of ours leaves
// the kernel's larval state (SPI 0, our reqid) for the ACQUIRE; Flush
// removes it too (XFRM_MSG_DELSA alone cannot find a state with no SPI),
// and leaves another daemon's alone.
func TestFlushAcquireState(t *testing.T) {
	ns := newNS(t)
	ns.ip(t, "addr", "add", "192.0.2.1/32", "dev", "lo")
	ns.ip(t, "route", "add", "198.51.100.0/24", "dev", "lo", "src", "192.0.2.1")
	ns.ip(t, "route", "add", "203.0.113.0/24", "dev", "lo", "src", "192.0.2.1")
	b := ns.backend(t, Config{})
	ctx := ctxT(t)
	for _, p := range []kernel.Policy{
		{Dir: kernel.Out, Selector: kernel.Selector{Src: pfx("0.0.0.0/0"), Dst: pfx("198.51.100.0/24")}, Action: kernel.Protect,
			Template: kernel.Template{Src: addr("192.0.2.1"), Dst: addr("192.0.2.99"), Proto: kernel.ESP, Mode: kernel.Tunnel, ReqID: ourReqID(5)}},
		{Dir: kernel.Out, Selector: kernel.Selector{Src: pfx("0.0.0.0/0"), Dst: pfx("203.0.113.0/24")}, Action: kernel.Protect,
			Template: kernel.Template{Src: addr("192.0.2.1"), Dst: addr("192.0.2.77"), Proto: kernel.ESP, Mode: kernel.Tunnel, ReqID: 16384}},
	} {
		if err := b.AddPolicy(ctx, &p); err != nil {
			t.Fatal(err)
		}
	}
	sendUDP(t, ns, addr("192.0.2.1"), netip.MustParseAddrPort("198.51.100.7:9999"), false)
	sendUDP(t, ns, addr("192.0.2.1"), netip.MustParseAddrPort("203.0.113.7:9999"), false)
	if _, ok := waitEvent(t, b, 5*time.Second); !ok {
		t.Fatal("no acquire")
	}
	st := ns.ip(t, "xfrm", "state")
	if strings.Count(st, "spi 0x00000000") != 2 {
		t.Fatalf("want two larval states for the acquires, have:\n%s", st)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	st = ns.ip(t, "xfrm", "state")
	if strings.Count(st, "proto esp") != 1 || !strings.Contains(st, "reqid 16384") {
		t.Errorf("after Flush, want only the foreign larval state:\n%s", st)
	}
}
