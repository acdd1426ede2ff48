package testnet

import (
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestPairPingAndCleanup(t *testing.T) {
	Require(t, "ping", "sleep")
	var a, b *Namespace
	var proc *Process
	t.Run("pair", func(t *testing.T) {
		var v *Veth
		a, b, v = Pair(t, "a", "b")
		a.AddLoopbackAddr(t, netip.MustParseAddr("10.0.1.1"))
		b.AddLoopbackAddr(t, netip.MustParseAddr("2001:db8:2::1"))
		if out := a.MustRun(t, "ip", "-o", "addr", "show", "dev", v.AName); !strings.Contains(out, "192.0.2.1/24") || !strings.Contains(out, "2001:db8::1/64") || strings.Contains(out, "tentative") {
			t.Fatalf("addresses on %s in %s:\n%s", v.AName, a.Name, out)
		}
		// IPv4 and IPv6 across the veth, at once (no DAD wait).
		for _, dst := range []string{"192.0.2.2", "2001:db8::2"} {
			if out, err := a.Run("ping", "-c", "1", "-W", "2", dst); err != nil {
				t.Fatalf("ping %s from %s: %v\n%s", dst, a.Name, err, out)
			}
		}
		// The loopback addresses exist only in their namespaces.
		if out := b.MustRun(t, "ip", "-o", "addr", "show", "dev", "lo"); !strings.Contains(out, "2001:db8:2::1/128") {
			t.Fatalf("lo in %s:\n%s", b.Name, out)
		}
		var err error
		proc, err = b.Start(t, "sleeper", "sh", "-c", "echo ready; exec sleep 300")
		if err != nil {
			t.Fatal(err)
		}
		if err := proc.WaitOutput("ready", 5*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	// The subtest's cleanups have run: process gone, namespaces gone.
	if proc == nil || !proc.Exited() {
		t.Fatalf("process not ended by cleanup")
	}
	for _, ns := range []*Namespace{a, b} {
		if ns != nil && ns.Exists() {
			t.Errorf("namespace %s still exists after cleanup", ns.Name)
		}
	}
}

func TestProcessStopKillsByPID(t *testing.T) {
	Require(t, "sleep")
	ns := NewNamespace(t, "p")
	// A process that ignores SIGTERM must still be ended (by SIGKILL).
	p, err := ns.Start(t, "stubborn", "sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.1; done")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitOutput("up", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := p.Stop(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if !p.Exited() || time.Since(start) > 3*time.Second {
		t.Fatalf("stubborn process not ended promptly (exited=%v after %v)", p.Exited(), time.Since(start))
	}
}

func TestNATMasquerades(t *testing.T) {
	Require(t, "ping", "nft")
	n := NewNAT(t, "n")
	if c, err := n.Masqueraded(); err != nil || c != 0 {
		t.Fatalf("masquerade counter before traffic: %d, %v", c, err)
	}
	if out, err := n.Inside.Run("ping", "-c", "2", "-i", "0.2", "-W", "2", n.OutsideAddr.String()); err != nil {
		t.Fatalf("ping through the NAT: %v\n%s", err, out)
	}
	if c, err := n.Masqueraded(); err != nil || c < 1 {
		t.Fatalf("masquerade counter after a ping: %d, %v", c, err)
	}
	// Without the NAT the outside could not answer: it has no route back.
	if out, err := n.Outside.Run("ip", "route", "get", n.InsideAddr.String()); err == nil || !regexp.MustCompile(`unreachable`).MatchString(out) {
		t.Errorf("outside has a route to the inside network (%v): %s", err, out)
	}
}
