package xfrm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The tests that need the kernel run as root in a network namespace of
// their own (gsx<pid>-<n>), which they delete by name at the end; they
// never touch the host's XFRM tables. Without root they skip, except under
// CI=true, where skipping would hide them: there they fail.

var nsSeq atomic.Int32

func needRoot(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root (network namespaces, XFRM)"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "needs the ip command (iproute2)"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s; CI=true does not allow skipping", why)
	}
	t.Skip(why)
}

type testNS struct {
	name string
	h    netns.NsHandle
}

// newNS makes a fresh network namespace with lo up.
func newNS(t *testing.T) *testNS {
	t.Helper()
	needRoot(t)
	name := fmt.Sprintf("gsx%d-%d", os.Getpid(), nsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("opening namespace %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close() })
	ns := &testNS{name: name, h: h}
	ns.ip(t, "link", "set", "lo", "up")
	// IPv4 never looks up XFRM policies for routes through lo
	// (disable_xfrm is 1 on loopback devices); the acquire tests route
	// their traffic there.
	if out, err := exec.Command("ip", "netns", "exec", name, "sysctl", "-qw",
		"net.ipv4.conf.lo.disable_xfrm=0").CombinedOutput(); err != nil {
		t.Fatalf("sysctl in %s: %v: %s", name, err, out)
	}
	return ns
}

// ip runs "ip -n <ns> args..." and returns its output.
func (ns *testNS) ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns.name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", ns.name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// do runs fn on a thread that is in the namespace.
func (ns *testNS) do(t *testing.T, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("netns.Get: %v", err)
	}
	defer orig.Close()
	if err := netns.Set(ns.h); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("entering %s: %v", ns.name, err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with this goroutine
			// instead of serving others in the wrong namespace.
			t.Errorf("leaving %s: %v", ns.name, err)
			return
		}
		runtime.UnlockOSThread()
	}()
	fn()
}

// backend opens a Backend in the namespace.
func (ns *testNS) backend(t *testing.T, cfg Config) *Backend {
	t.Helper()
	var b *Backend
	var err error
	if cfg.Logf == nil {
		cfg.Logf = t.Logf
	}
	ns.do(t, func() { b, err = New(cfg) })
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// vnl is an independent reader of the namespace's XFRM tables
// (vishvananda/netlink's own decoder), to check ours against.
func (ns *testNS) vnl(t *testing.T) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns.h, unix.NETLINK_XFRM)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", ns.name, err)
	}
	t.Cleanup(h.Close)
	return h
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
