package testnet

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var counter atomic.Uint64

// uniqueName returns "gs<pid>-<n>-<label>": unique to this test binary and
// run, so that cleanup only ever touches what this run created.
func uniqueName(label string) string {
	return fmt.Sprintf("gs%d-%d-%s", os.Getpid(), counter.Add(1), label)
}

// Namespace is a network namespace created by NewNamespace. Its loopback
// device is up and IPv6 duplicate address detection is off, so addresses are
// usable as soon as they are added.
type Namespace struct {
	// Name is the namespace's name under /run/netns (as `ip netns` uses it).
	Name string
	// Label is the short label the test gave it.
	Label string
}

// commandTimeout bounds each `ip` configuration command.
const commandTimeout = 10 * time.Second

// NewNamespace creates a namespace whose name contains label and registers
// its removal with t.Cleanup. It fails the test on error.
func NewNamespace(t testing.TB, label string) *Namespace {
	t.Helper()
	ns := &Namespace{Name: uniqueName(label), Label: label}
	if _, err := run("ip", "netns", "add", ns.Name); err != nil {
		t.Fatalf("testnet: %v", err)
	}
	t.Cleanup(func() {
		if _, err := run("ip", "netns", "del", ns.Name); err != nil {
			t.Errorf("testnet: removing namespace: %v", err)
		}
	})
	// Disable DAD before any other link exists so that every device made
	// later inherits it from "default".
	for _, cmd := range [][]string{
		{"sh", "-c", "echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad && echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad"},
		{"ip", "link", "set", "lo", "up"},
	} {
		if _, err := ns.Run(cmd...); err != nil {
			t.Fatalf("testnet: %v", err)
		}
	}
	return ns
}

// Exists reports whether the namespace is still listed by `ip netns`.
func (ns *Namespace) Exists() bool {
	_, err := os.Stat("/run/netns/" + ns.Name)
	return err == nil
}

// Command returns an unstarted command that runs args inside the namespace
// (through `ip netns exec`, which execs args in place: the started process's
// PID is that of args[0]).
func (ns *Namespace) Command(args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...)
}

// Run runs args inside the namespace, waits at most 10 s and returns its
// combined output. The error names the command and includes the output.
func (ns *Namespace) Run(args ...string) (string, error) {
	return run("ip", append([]string{"netns", "exec", ns.Name}, args...)...)
}

// MustRun is Run that fails the test on error.
func (ns *Namespace) MustRun(t testing.TB, args ...string) string {
	t.Helper()
	out, err := ns.Run(args...)
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	return out
}

// AddLoopbackAddr puts addr on the namespace's `lo` as a host address
// (/32 or /128): the way to give a namespace extra addresses, since the
// kernel here has no `dummy` link type.
func (ns *Namespace) AddLoopbackAddr(t testing.TB, addr netip.Addr) {
	t.Helper()
	pfx := netip.PrefixFrom(addr, addr.BitLen())
	args := []string{"-n", ns.Name, "addr", "add", pfx.String(), "dev", "lo"}
	if addr.Is6() {
		args = append(args, "nodad")
	}
	if _, err := run("ip", args...); err != nil {
		t.Fatalf("testnet: %v", err)
	}
}

// Veth is a veth pair that joins two namespaces.
type Veth struct {
	A, B         *Namespace
	AName, BName string         // the device names inside A and B
	AAddrs       []netip.Prefix // addresses on AName
	BAddrs       []netip.Prefix // addresses on BName
}

// Connect joins a and b with a veth pair, adds the given addresses (IPv6
// ones without DAD) and sets both ends up. The devices are called
// "v-"+b.Label inside a and "v-"+a.Label inside b (cut to 15 bytes). They
// go away with their namespaces.
func Connect(t testing.TB, a, b *Namespace, aAddrs, bAddrs []netip.Prefix) *Veth {
	t.Helper()
	v := &Veth{A: a, B: b, AName: ifName("v-" + b.Label), BName: ifName("v-" + a.Label), AAddrs: aAddrs, BAddrs: bAddrs}
	if v.AName == v.BName {
		v.BName = ifName("w-" + a.Label)
	}
	if _, err := run("ip", "link", "add", v.AName, "netns", a.Name, "type", "veth", "peer", "name", v.BName, "netns", b.Name); err != nil {
		t.Fatalf("testnet: %v", err)
	}
	for _, side := range []struct {
		ns    *Namespace
		dev   string
		addrs []netip.Prefix
	}{{a, v.AName, aAddrs}, {b, v.BName, bAddrs}} {
		for _, p := range side.addrs {
			args := []string{"-n", side.ns.Name, "addr", "add", p.String(), "dev", side.dev}
			if p.Addr().Is6() {
				args = append(args, "nodad")
			}
			if _, err := run("ip", args...); err != nil {
				t.Fatalf("testnet: %v", err)
			}
		}
		if _, err := run("ip", "-n", side.ns.Name, "link", "set", side.dev, "up"); err != nil {
			t.Fatalf("testnet: %v", err)
		}
	}
	return v
}

func ifName(s string) string {
	if len(s) > 15 {
		s = s[:15]
	}
	return s
}

// Documentation addresses used by Pair: only ever inside the namespaces.
var (
	PairA4 = netip.MustParsePrefix("192.0.2.1/24")
	PairB4 = netip.MustParsePrefix("192.0.2.2/24")
	PairA6 = netip.MustParsePrefix("2001:db8::1/64")
	PairB6 = netip.MustParsePrefix("2001:db8::2/64")
)

// Pair creates two namespaces labelled la and lb joined by a veth pair with
// PairA4/PairA6 on the first and PairB4/PairB6 on the second.
func Pair(t testing.TB, la, lb string) (a, b *Namespace, v *Veth) {
	t.Helper()
	a = NewNamespace(t, la)
	b = NewNamespace(t, lb)
	v = Connect(t, a, b, []netip.Prefix{PairA4, PairA6}, []netip.Prefix{PairB4, PairB6})
	return a, b, v
}

// run runs a command with commandTimeout and returns its combined output.
func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Start runs args inside the namespace as a managed Process (see Start).
func (ns *Namespace) Start(t testing.TB, name string, args ...string) (*Process, error) {
	t.Helper()
	return Start(t, name, ns.Command(args...))
}
