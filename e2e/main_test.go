//go:build linux

// Package e2e runs two of our daemons against each other with the
// user-space data planes and moves real traffic through their tunnels:
// over a kernel TUN in two network namespaces (--use-userspace), and on
// gVisor netstacks as an unprivileged user (--use-netstack). It needs
// root, iproute2, ping and setpriv; without them the tests skip on a
// developer's machine and fail under CI=true.
package e2e

import (
	"bufio"
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"goswan/internal/peers"
	"goswan/internal/testnet"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "goswan-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The unprivileged daemons must reach and run the binaries.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := peers.BuildGoswan(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const psk = "e2e test secret, long enough for anyone"

const secrets = "@west @east : PSK \"" + psk + "\"\n"

// ikeProposal is the same in every test: the ESP transform is what varies.
const ikeProposal = "aes_gcm128-sha2_256-dh31"

// family is one set of addresses: outer (the veth) or inner (the
// protected subnets and the hosts in them).
type outerAddrs struct{ west, east string }
type innerAddrs struct{ westNet, eastNet, westHost, eastHost string }

var (
	outer4 = outerAddrs{"192.0.2.1", "192.0.2.2"}
	outer6 = outerAddrs{"2001:db8::1", "2001:db8::2"}
	inner4 = innerAddrs{"10.0.1.0/24", "10.0.2.0/24", "10.0.1.1", "10.0.2.1"}
	inner6 = innerAddrs{"fd00:1::/64", "fd00:2::/64", "fd00:1::1", "fd00:2::1"}
)

// tunnelConf is the conn both daemons load (each finds its side from
// --listen). typ is "" (tunnel) or "transport"; a transport conn has no
// subnets, and gets leftsourceip=/rightsourceip= (which the user-space
// data plane needs to start) only when sourceIP is true. It says
// encapsulation=yes: ESP in UDP, as the tests of the NAT-T path want
// (rawConf takes it out).
func tunnelConf(o outerAddrs, in innerAddrs, esp, typ string, sourceIP bool) string {
	var b strings.Builder
	b.WriteString("conn e2e\n")
	fmt.Fprintf(&b, "\tleft=%s\n\tleftid=@west\n", o.west)
	if typ != "transport" {
		fmt.Fprintf(&b, "\tleftsubnet=%s\n", in.westNet)
	}
	if typ != "transport" || sourceIP {
		fmt.Fprintf(&b, "\tleftsourceip=%s\n", in.westHost)
	}
	fmt.Fprintf(&b, "\tright=%s\n\trightid=@east\n", o.east)
	if typ != "transport" {
		fmt.Fprintf(&b, "\trightsubnet=%s\n", in.eastNet)
	}
	if typ != "transport" || sourceIP {
		fmt.Fprintf(&b, "\trightsourceip=%s\n", in.eastHost)
	}
	fmt.Fprintf(&b, "\tauthby=secret\n\tike=%s\n\tesp=%s\n", ikeProposal, esp)
	if typ != "" {
		fmt.Fprintf(&b, "\ttype=%s\n", typ)
	}
	b.WriteString(encapYes)
	b.WriteString("\tretransmit-timeout=5s\n\tauto=add\n")
	return b.String()
}

const encapYes = "\tencapsulation=yes\n"

// rawConf is conf without encapsulation=yes: with --use-userspace (root,
// so a raw ESP socket) and no NAT, the Child SA is raw ESP (IP protocol
// 50).
func rawConf(conf string) string { return strings.Replace(conf, encapYes, "", 1) }

// testbed is two namespaces joined by a veth, each with one of our
// daemons on the user-space data plane (--use-userspace).
type testbed struct {
	west, east   *testnet.Namespace
	veth         *testnet.Veth
	pw, pe       *peers.Pluto
	outer        outerAddrs
	inner        innerAddrs
	cap          *capture
	payload      []byte
	conf         string
	raw          bool // the Child SA is raw ESP (IP protocol 50), not ESP in UDP
	westC, eastC childSA
}

// newUserspaceTestbed makes the namespaces, starts the capture on west's
// veth end (checked to see clear text first) and both daemons.
func newUserspaceTestbed(t *testing.T, o outerAddrs, in innerAddrs, esp string, payloadSize int) *testbed {
	return newUserspaceTestbedConf(t, o, in, tunnelConf(o, in, esp, "", false), payloadSize)
}

// newUserspaceTestbedConf is newUserspaceTestbed with the conn's text.
func newUserspaceTestbedConf(t *testing.T, o outerAddrs, in innerAddrs, conf string, payloadSize int) *testbed {
	t.Helper()
	testnet.Require(t, "ping")
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testnet.Unavailable(t, "e2e: --use-userspace needs /dev/net/tun: %v", err)
	}
	tb := &testbed{outer: o, inner: in, payload: randomPayload(payloadSize, 1)}
	tb.west, tb.east, tb.veth = testnet.Pair(t, "west", "east")
	tb.cap = startCapture(t, tb.west, tb.veth.AName, tb.payload)
	tb.cap.checkPositive(t, tb.west, tb.east, o.east, tb.payload)
	tb.conf = conf
	tb.raw = !strings.Contains(conf, encapYes)
	tb.pw = peers.StartPluto(t, tb.west, peers.PlutoConfig{BinDir: binDir, Conf: tb.conf, Secrets: secrets,
		Args: []string{"--use-userspace", "--listen", o.west}})
	tb.pe = peers.StartPluto(t, tb.east, peers.PlutoConfig{BinDir: binDir, Conf: tb.conf, Secrets: secrets,
		Args: []string{"--use-userspace", "--listen", o.east}})
	t.Cleanup(func() {
		if t.Failed() {
			tb.diagnose(t)
			t.Logf("west's log:\n%s", testnet.Tail(tb.pw.Log(), 60))
			t.Logf("east's log:\n%s", testnet.Tail(tb.pe.Log(), 60))
		}
	})
	return tb
}

// up brings the conn up from west and checks both sides hold one Child SA
// each, paired, UDP-encapsulated (raw ESP for a testbed without
// encapsulation=yes).
func (tb *testbed) up(t *testing.T) {
	t.Helper()
	if err := tb.pw.Up("e2e"); err != nil {
		t.Fatalf("ipsec up: %v", err)
	}
	w, e := onlyChild(t, "west", tb.pw), onlyChild(t, "east", tb.pe)
	if w.SPIIn != e.SPIOut || w.SPIOut != e.SPIIn {
		t.Fatalf("Child SA SPIs do not pair: west in/out %08x/%08x, east in/out %08x/%08x", w.SPIIn, w.SPIOut, e.SPIIn, e.SPIOut)
	}
	if w.Encap == tb.raw || e.Encap == tb.raw {
		t.Errorf("encapsulation: west %v, east %v; want %v", w.Encap, e.Encap, !tb.raw)
	}
	tb.westC, tb.eastC = w, e
	t.Logf("Child SA: %s %s, west in/out %08x/%08x", w.Mode, w.Algorithms, w.SPIIn, w.SPIOut)
}

// childSA is the part of a Child SA's status the tests compare.
type childSA struct {
	SPIIn, SPIOut         uint32
	Mode, Algorithms      string
	Encap                 bool
	BytesIn, BytesOut     uint64
	PacketsIn, PacketsOut uint64
}

func onlyChild(t *testing.T, who string, p *peers.Pluto) childSA {
	t.Helper()
	st, err := p.Status()
	if err != nil {
		t.Fatalf("%s: status: %v", who, err)
	}
	if len(st.ChildSAs) != 1 {
		t.Fatalf("%s: want one Child SA, have %+v", who, st.ChildSAs)
	}
	c := st.ChildSAs[0]
	return childSA{c.SPIIn, c.SPIOut, c.Mode, c.Algorithms, c.Encap, c.BytesIn, c.BytesOut, c.PacketsIn, c.PacketsOut}
}

// stableCounters reads both sides until two readings 200 ms apart are the
// same (the last packets have landed).
func stableCounters(t *testing.T, pw, pe *peers.Pluto) (w, e childSA) {
	t.Helper()
	w, e = onlyChild(t, "west", pw), onlyChild(t, "east", pe)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		w2, e2 := onlyChild(t, "west", pw), onlyChild(t, "east", pe)
		if w2 == w && e2 == e {
			return w, e
		}
		w, e = w2, e2
	}
	t.Fatalf("counters still moving after 5 s: west %+v, east %+v", w, e)
	return
}

// checkTrafficStatus compares "ipsec trafficstatus --json" with what
// status said (both read once traffic stopped).
func checkTrafficStatus(t *testing.T, who string, p *peers.Pluto, c childSA) {
	t.Helper()
	ts, err := p.TrafficStatus()
	if err != nil {
		t.Fatalf("%s: trafficstatus: %v", who, err)
	}
	if len(ts) != 1 {
		t.Fatalf("%s: trafficstatus lists %d Child SAs, want 1: %+v", who, len(ts), ts)
	}
	x := ts[0]
	if x.Conn != "e2e" || x.SPIIn != fmt.Sprintf("%08x", c.SPIIn) || x.SPIOut != fmt.Sprintf("%08x", c.SPIOut) ||
		x.BytesIn != c.BytesIn || x.BytesOut != c.BytesOut || x.PacketsIn != c.PacketsIn || x.PacketsOut != c.PacketsOut {
		t.Errorf("%s: trafficstatus %+v disagrees with status %+v", who, x, c)
	}
}

// udpErrors reads the namespace's UDP receive errors (IPv4 and IPv6):
// datagrams the kernel dropped before a socket read them (full buffer,
// bad checksum).
type udpCounters struct {
	InDatagrams, InErrors, RcvbufErrors, InCsumErrors uint64
}

func (a udpCounters) sub(b udpCounters) udpCounters {
	return udpCounters{a.InDatagrams - b.InDatagrams, a.InErrors - b.InErrors, a.RcvbufErrors - b.RcvbufErrors, a.InCsumErrors - b.InCsumErrors}
}

func readUDPCounters(t *testing.T, ns *testnet.Namespace) udpCounters {
	t.Helper()
	var c udpCounters
	out := ns.MustRun(t, "cat", "/proc/net/snmp")
	var names []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i := 1; i < len(f) && i < len(names); i++ {
			v, _ := strconv.ParseUint(f[i], 10, 64)
			switch names[i] {
			case "InDatagrams":
				c.InDatagrams += v
			case "InErrors":
				c.InErrors += v
			case "RcvbufErrors":
				c.RcvbufErrors += v
			case "InCsumErrors":
				c.InCsumErrors += v
			}
		}
	}
	out6 := ns.MustRun(t, "cat", "/proc/net/snmp6")
	sc = bufio.NewScanner(strings.NewReader(out6))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "Udp6InDatagrams":
			c.InDatagrams += v
		case "Udp6InErrors":
			c.InErrors += v
		case "Udp6RcvbufErrors":
			c.RcvbufErrors += v
		case "Udp6InCsumErrors":
			c.InCsumErrors += v
		}
	}
	return c
}

// randomPayload is n bytes that no header or key material is going to
// look like, the same for a seed.
func randomPayload(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// ping runs ping inside ns and fails the test if no answer comes.
func ping(t *testing.T, ns *testnet.Namespace, dst string, count int) {
	t.Helper()
	args := []string{"ping", "-n", "-c", strconv.Itoa(count), "-i", "0.1", "-W", "3"}
	if strings.Contains(dst, ":") {
		args = append(args, "-6")
	}
	out, err := ns.Run(append(args, dst)...)
	if err != nil {
		t.Fatalf("ping %s from %s: %v", dst, ns.Label, err)
	}
	if !strings.Contains(out, fmt.Sprintf("%d received", count)) {
		t.Errorf("ping %s from %s lost packets:\n%s", dst, ns.Label, out)
	}
}

func hostPort(addr string, port int) string {
	return netip.AddrPortFrom(netip.MustParseAddr(addr), uint16(port)).String()
}

// diagnose logs what helps to tell why traffic did not pass: the capture,
// both daemons' Child SA counters, and each namespace's addresses, routes,
// TCP sockets and UDP counters.
func (tb *testbed) diagnose(t *testing.T) {
	_, _, clear, leaks := tb.cap.counts()
	t.Logf("capture: %s; clear frames: %q; leaks: %q", tb.cap.summary(), clear, leaks)
	for _, x := range []struct {
		who string
		ns  *testnet.Namespace
		p   *peers.Pluto
	}{{"west", tb.west, tb.pw}, {"east", tb.east, tb.pe}} {
		if ts, err := x.p.TrafficStatus(); err == nil {
			t.Logf("%s trafficstatus: %+v", x.who, ts)
		}
		for _, cmd := range [][]string{{"ip", "-s", "addr"}, {"ip", "route", "show", "table", "all"}, {"ss", "-tanoi"}, {"cat", "/proc/net/snmp"}} {
			out, err := x.ns.Run(cmd...)
			t.Logf("%s: %s (%v):\n%s", x.who, strings.Join(cmd, " "), err, out)
		}
	}
}
