//go:build linux

package e2e

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"goswan/internal/peers"
	"goswan/internal/testnet"
)

// nobody is the unprivileged user the netstack daemons run as.
const nobody = 65534

// Ports inside the test's own namespace: high, so that nobody may bind
// them, and private to the namespace, so that nothing else collides.
const (
	nsIKEPort   = 20500
	nsNATTPort  = 24500
	nsEchoPort  = 18000 // the host's echo service, exposed inside the tunnel on port 7000
	nsFwdPort   = 17000 // --netstack-forward on each side
	nsSOCKSPort = 11080 // --netstack-socks5 on west
)

// TestNetstackUnprivileged runs two of our daemons with --use-netstack as
// uid/gid 65534 (no capabilities) on 127.0.0.1 and 127.0.0.2 inside a
// namespace of the test's own, with high IKE and NAT-T ports. Each side
// exposes the host's TCP echo service inside the tunnel
// (--netstack-expose) and forwards a host port to the other side's
// (--netstack-forward); west also serves SOCKS5 (--netstack-socks5). It
// asserts that the daemons really run unprivileged, that 2 MiB echo back
// intact through the forward in both directions and through the SOCKS5
// proxy, that the Child SA is UDP-encapsulated, and that the counters of
// both sides agree with each other and with trafficstatus.
func TestNetstackUnprivileged(t *testing.T) {
	testnet.Require(t, peers.SetprivPath)
	ns := testnet.NewNamespace(t, "nstk")
	echo := ns.StartTCPEcho(t, fmt.Sprintf("127.0.0.1:%d", nsEchoPort))
	conf := tunnelConf(outerAddrs{"127.0.0.1", "127.0.0.2"}, inner4, "aes_gcm128", "", false)
	ports := []string{"--ikeport", fmt.Sprint(nsIKEPort), "--natikeport", fmt.Sprint(nsNATTPort)}
	start := func(self, fwdTo string) *peers.Pluto {
		args := append([]string{"--use-netstack", "--listen", self,
			"--netstack-expose", fmt.Sprintf("tcp:7000=%s", echo),
			"--netstack-forward", fmt.Sprintf("tcp:%s:%d=%s:7000", self, nsFwdPort, fwdTo)}, ports...)
		if self == "127.0.0.1" {
			args = append(args, "--netstack-socks5", fmt.Sprintf("%s:%d", self, nsSOCKSPort))
		}
		return peers.StartPlutoAs(t, ns, peers.PlutoConfig{BinDir: binDir, Conf: conf, Secrets: secrets, Args: args}, nobody, nobody)
	}
	pw := start("127.0.0.1", inner4.eastHost)
	pe := start("127.0.0.2", inner4.westHost)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("west's log:\n%s", testnet.Tail(pw.Log(), 60))
			t.Logf("east's log:\n%s", testnet.Tail(pe.Log(), 60))
		}
	})
	for who, p := range map[string]*peers.Pluto{"west": pw, "east": pe} {
		checkUnprivileged(t, who, p.PID())
	}
	if err := pw.Up("e2e"); err != nil {
		t.Fatalf("ipsec up: %v", err)
	}
	w, e := onlyChild(t, "west", pw), onlyChild(t, "east", pe)
	if w.SPIIn != e.SPIOut || w.SPIOut != e.SPIIn || !w.Encap || !e.Encap {
		t.Fatalf("Child SAs do not pair or are not UDP-encapsulated: west %+v, east %+v", w, e)
	}
	before := readUDPCounters(t, ns)

	payload := randomPayload(2<<20, 2)
	for _, dir := range []struct{ name, via string }{
		{"west to east (forward)", fmt.Sprintf("127.0.0.1:%d", nsFwdPort)},
		{"east to west (forward)", fmt.Sprintf("127.0.0.2:%d", nsFwdPort)},
	} {
		start := time.Now()
		if err := ns.TCPEcho(dir.via, payload, 30*time.Second); err != nil {
			t.Fatalf("%s: %v", dir.name, err)
		}
		t.Logf("%s: 2 MiB each way in %v", dir.name, time.Since(start).Round(time.Millisecond))
	}
	c, err := ns.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", nsSOCKSPort), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := socks5Connect(c, netip.AddrPortFrom(netip.MustParseAddr(inner4.eastHost), 7000)); err != nil {
		c.Close()
		t.Fatalf("SOCKS5 CONNECT to %s:7000 through west: %v", inner4.eastHost, err)
	}
	if err := testnet.EchoRoundTrip(c, payload, 30*time.Second); err != nil {
		t.Fatalf("through SOCKS5: %v", err)
	}

	w, e = stableCounters(t, pw, pe)
	checkTrafficStatus(t, "west", pw, w)
	checkTrafficStatus(t, "east", pe, e)
	t.Logf("west out %d B / %d pkts, in %d / %d; east out %d / %d, in %d / %d",
		w.BytesOut, w.PacketsOut, w.BytesIn, w.PacketsIn, e.BytesOut, e.PacketsOut, e.BytesIn, e.PacketsIn)
	lost := readUDPCounters(t, ns).sub(before).InErrors
	if min := 3 * uint64(len(payload)); w.BytesOut+e.BytesOut < 2*min {
		t.Errorf("counters too small for three 2 MiB echoes: west out %d, east out %d", w.BytesOut, e.BytesOut)
	}
	if lost == 0 {
		if w.PacketsOut != e.PacketsIn || e.PacketsOut != w.PacketsIn || w.BytesOut != e.BytesIn || e.BytesOut != w.BytesIn {
			t.Errorf("the two sides' counters disagree with nothing lost: west %+v, east %+v", w, e)
		}
	} else if w.PacketsOut-e.PacketsIn+e.PacketsOut-w.PacketsIn > lost {
		t.Errorf("more packets missing (west->east %d, east->west %d) than the kernel dropped from UDP buffers (%d)",
			w.PacketsOut-e.PacketsIn, e.PacketsOut-w.PacketsIn, lost)
	}
}

// checkUnprivileged reads /proc/PID/status: every uid and gid must be
// nobody's, and no capability effective or permitted.
func checkUnprivileged(t *testing.T, who string, pid int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%d\t%d\t%d\t%d", nobody, nobody, nobody, nobody)
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		switch k {
		case "Uid", "Gid":
			if v != want {
				t.Errorf("%s (pid %d) %s: %q, want %q", who, pid, k, v, want)
			}
		case "CapEff", "CapPrm":
			if strings.Trim(v, "0") != "" {
				t.Errorf("%s (pid %d) %s: %s, want none", who, pid, k, v)
			}
		case "Name":
			if v != "pluto" {
				t.Errorf("pid %d is %q, not pluto", pid, v)
			}
		}
	}
}

// socks5Connect does a SOCKS5 (RFC 1928) CONNECT without authentication
// on c.
func socks5Connect(c net.Conn, dst netip.AddrPort) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		return err
	}
	r := make([]byte, 2)
	if _, err := io.ReadFull(c, r); err != nil || r[0] != 5 || r[1] != 0 {
		return fmt.Errorf("greeting: reply %v, %v", r, err)
	}
	req := []byte{5, 1, 0, 1}
	if dst.Addr().Is6() {
		req[3] = 4
	}
	req = append(req, dst.Addr().AsSlice()...)
	req = append(req, byte(dst.Port()>>8), byte(dst.Port()))
	if _, err := c.Write(req); err != nil {
		return err
	}
	h := make([]byte, 4)
	if _, err := io.ReadFull(c, h); err != nil {
		return fmt.Errorf("CONNECT reply: %v", err)
	}
	if h[1] != 0 {
		return fmt.Errorf("CONNECT refused: reply code %d", h[1])
	}
	n := 4 + 2
	if h[3] == 4 {
		n = 16 + 2
	}
	_, err := io.ReadFull(c, make([]byte, n))
	return err
}
