//go:build linux

package e2e

import (
	"strings"
	"testing"
	"time"

	"goswan/internal/testnet"
)

// The ESP transforms of the user-space engine, as esp= spells them.
var transforms = []string{"aes_gcm128", "aes_gcm256", "chacha20_poly1305", "aes128-sha2_256"}

// transferSize is what the TCP echo sends (and gets back) per case.
const transferSize = 3 << 20

type userspaceCase struct {
	name  string
	outer outerAddrs
	inner innerAddrs
	esp   string
}

func userspaceCases() []userspaceCase {
	var cs []userspaceCase
	for _, esp := range transforms {
		cs = append(cs,
			userspaceCase{"ipv4/" + esp, outer4, inner4, esp},
			userspaceCase{"ipv6/" + esp, outer6, inner6, esp})
	}
	// The inner family need not be the outer one.
	cs = append(cs,
		userspaceCase{"ipv6-in-ipv4/aes_gcm128", outer4, inner6, "aes_gcm128"},
		userspaceCase{"ipv4-in-ipv6/aes_gcm128", outer6, inner4, "aes_gcm128"})
	return cs
}

// TestUserspaceTunnel runs two of our daemons with --use-userspace in two
// namespaces joined by a veth and, for each transform and address family
// (inner and outer), moves pings both ways and a TCP echo of a few MB
// (content checked) between the protected hosts (the TUN addresses from
// leftsourceip=/rightsourceip=). It asserts that:
//   - the veth carries only IKE, ESP in UDP (port 4500, non-zero SPI, only
//     the two SPIs of the Child SA), neighbour discovery: no clear-text
//     frame, and no frame holds 24 bytes of the transferred payload (a
//     positive control proves the capture sees clear text);
//   - "ipsec status --json" and "ipsec trafficstatus --json" agree on
//     each side, and what one side sealed the other opened (packets and
//     bytes; packets the receiving kernel dropped from the UDP socket's
//     buffer are accounted for from /proc/net/snmp);
//   - the ESP packets on the wire per SPI are as many as the sender's
//     packet counter says.
func TestUserspaceTunnel(t *testing.T) {
	for _, tc := range userspaceCases() {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			tb := newUserspaceTestbed(t, tc.outer, tc.inner, tc.esp, transferSize)
			tb.up(t)
			tb.traffic(t, tc.inner.westHost, tc.inner.eastHost)
			tb.checkCounters(t)
			tb.checkWire(t)
			t.Logf("%s: %v", tc.name, time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestUserspaceRawESP is TestUserspaceTunnel without encapsulation=yes:
// pluto with --use-userspace runs as root and opens a raw ESP socket, so
// with no NAT between the peers the Child SA is raw ESP (IP protocol 50,
// RFC 4303), not ESP in UDP. It asserts the same: pings and the TCP echo
// pass, the veth carries IKE and IP protocol 50 packets with the Child
// SA's SPIs only (no ESP in UDP, no clear text, no payload bytes), and
// the counters agree with each other, trafficstatus and the capture.
func TestUserspaceRawESP(t *testing.T) {
	cases := []userspaceCase{
		{"ipv4/aes_gcm128", outer4, inner4, "aes_gcm128"},
		{"ipv6/aes_gcm128", outer6, inner6, "aes_gcm128"},
		{"ipv6-in-ipv4/aes128-sha2_256", outer4, inner6, "aes128-sha2_256"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			conf := rawConf(tunnelConf(tc.outer, tc.inner, tc.esp, "", false))
			tb := newUserspaceTestbedConf(t, tc.outer, tc.inner, conf, transferSize)
			if !tb.raw {
				t.Fatal("the raw ESP testbed still says encapsulation=yes")
			}
			tb.up(t)
			tb.traffic(t, tc.inner.westHost, tc.inner.eastHost)
			tb.checkCounters(t)
			tb.checkWire(t)
			t.Logf("%s: %v", tc.name, time.Since(start).Round(time.Millisecond))
		})
	}
}

// traffic pings both ways and runs the TCP echo from west to east.
func (tb *testbed) traffic(t *testing.T, westHost, eastHost string) {
	t.Helper()
	ping(t, tb.west, eastHost, 3)
	ping(t, tb.east, westHost, 3)
	echo := tb.east.StartTCPEcho(t, hostPort(eastHost, 7000))
	start := time.Now()
	if err := tb.west.TCPEcho(echo.String(), tb.payload, 60*time.Second); err != nil {
		t.Fatalf("TCP through the tunnel: %v", err)
	}
	d := time.Since(start)
	t.Logf("TCP echo of %d MiB each way in %v (%.0f Mbit/s each way)", len(tb.payload)>>20, d.Round(time.Millisecond),
		float64(len(tb.payload))*8/d.Seconds()/1e6)
}

// checkWire asserts what the capture on west's veth saw.
func (tb *testbed) checkWire(t *testing.T) {
	t.Helper()
	tb.cap.settle(100*time.Millisecond, 3*time.Second)
	kinds, bySPI, clear, leaks := tb.cap.counts()
	t.Logf("on the wire: %s", tb.cap.summary())
	if len(clear) > 0 {
		t.Errorf("clear-text frames on the veth (%d), e.g.:\n%s", kinds["clear"], strings.Join(clear, "\n"))
	}
	if len(leaks) > 0 {
		t.Errorf("payload bytes on the veth:\n%s", strings.Join(leaks, "\n"))
	}
	if tb.raw {
		if kinds["rawesp"] == 0 || kinds["esp"] != 0 {
			t.Errorf("raw ESP (IP protocol 50) frames %d, ESP in UDP %d: want raw ESP only", kinds["rawesp"], kinds["esp"])
		}
	} else if kinds["esp"] == 0 || kinds["rawesp"] != 0 {
		t.Errorf("ESP in UDP frames %d, raw ESP (IP protocol 50) %d: want ESP in UDP only", kinds["esp"], kinds["rawesp"])
	}
	for spi := range bySPI {
		if spi != tb.westC.SPIIn && spi != tb.westC.SPIOut {
			t.Errorf("ESP with SPI %08x on the veth: not one of the Child SA's (%08x, %08x)", spi, tb.westC.SPIIn, tb.westC.SPIOut)
		}
	}
}

// checkCounters compares the two daemons' counters with each other, with
// trafficstatus and with the capture.
func (tb *testbed) checkCounters(t *testing.T) {
	t.Helper()
	w, e := stableCounters(t, tb.pw, tb.pe)
	checkTrafficStatus(t, "west", tb.pw, w)
	checkTrafficStatus(t, "east", tb.pe, e)
	t.Logf("west out %d B / %d pkts, in %d / %d; east out %d / %d, in %d / %d",
		w.BytesOut, w.PacketsOut, w.BytesIn, w.PacketsIn, e.BytesOut, e.PacketsOut, e.BytesIn, e.PacketsIn)
	min := uint64(len(tb.payload))
	if w.BytesOut < min || e.BytesOut < min || w.BytesIn < min || e.BytesIn < min {
		t.Errorf("counters too small for %d bytes each way: west out %d in %d, east out %d in %d", min, w.BytesOut, w.BytesIn, e.BytesOut, e.BytesIn)
	}
	// Datagrams the receiving kernel dropped before the daemon read them
	// (its socket buffer was full) are the only loss on a veth.
	wl, el := readUDPCounters(t, tb.west), readUDPCounters(t, tb.east)
	if el.InErrors != 0 || wl.InErrors != 0 {
		t.Logf("UDP receive errors: west %+v, east %+v", wl, el)
	}
	pair := func(from, to string, out, in, outB, inB, lost uint64) {
		t.Helper()
		switch {
		case out < in || out-in > lost:
			t.Errorf("%s sealed %d packets, %s opened %d (%d datagrams lost to %s's UDP buffer)", from, out, to, in, lost, to)
		case lost == 0 && outB != inB:
			t.Errorf("%s sealed %d bytes, %s opened %d, and nothing was lost", from, outB, to, inB)
		case out != in:
			t.Logf("%s sealed %d packets, %s opened %d: %d lost to %s's full UDP buffer", from, out, to, in, out-in, to)
		}
	}
	pair("west", "east", w.PacketsOut, e.PacketsIn, w.BytesOut, e.BytesIn, el.InErrors)
	pair("east", "west", e.PacketsOut, w.PacketsIn, e.BytesOut, w.BytesIn, wl.InErrors)
	// Every packet sealed went out on the wire as one datagram. The
	// capture's reader may lag behind the socket: wait for it.
	var bySPI map[uint32]int
	for deadline := time.Now().Add(5 * time.Second); ; {
		_, bySPI, _, _ = tb.cap.counts()
		if uint64(bySPI[w.SPIOut]) >= w.PacketsOut && uint64(bySPI[e.SPIOut]) >= e.PacketsOut || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := tb.cap.drops(); d != 0 {
		t.Logf("the capture lost %d frames: not comparing its ESP counts", d)
		return
	}
	if got := uint64(bySPI[w.SPIOut]); got != w.PacketsOut {
		t.Errorf("west sealed %d packets for SPI %08x; the veth carried %d", w.PacketsOut, w.SPIOut, got)
	}
	if got := uint64(bySPI[e.SPIOut]); got != e.PacketsOut {
		t.Errorf("east sealed %d packets for SPI %08x; the veth carried %d", e.PacketsOut, e.SPIOut, got)
	}
}

// TestUserspaceTransport brings up a transport-mode Child SA between the
// two hosts' own (veth) addresses, IPv4 and IPv6, and moves pings both
// ways and the TCP echo between those very addresses. The daemons'
// own IKE and ESP-in-UDP datagrams go to the same addresses: they must
// pass by the host routes into the TUN (policy routing on their source
// ports), or nothing would work. It asserts what TestUserspaceTunnel
// does: only IKE and ESP in UDP on the veth (no clear-text packet between
// the hosts, no payload bytes), counters that agree with each other, with
// trafficstatus and with the capture. "sourceip" adds
// leftsourceip=/rightsourceip=, which give the TUN addresses of its own:
// the host route's preferred source must still be the veth address.
func TestUserspaceTransport(t *testing.T) {
	cases := []struct {
		name     string
		outer    outerAddrs
		sourceIP bool
		raw      bool // without encapsulation=yes: raw ESP (IP protocol 50)
	}{
		{"ipv4", outer4, false, false},
		{"ipv6", outer6, false, false},
		{"ipv4-sourceip", outer4, true, false},
		{"ipv4-rawesp", outer4, false, true},
		{"ipv6-rawesp", outer6, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			conf := tunnelConf(tc.outer, inner4, "aes_gcm128", "transport", tc.sourceIP)
			if tc.raw {
				conf = rawConf(conf)
			}
			tb := newUserspaceTestbedConf(t, tc.outer, inner4, conf, 1<<20)
			if err := tb.pw.Up("e2e"); err != nil {
				t.Fatalf("ipsec up (type=transport): %v", err)
			}
			w, e := onlyChild(t, "west", tb.pw), onlyChild(t, "east", tb.pe)
			if w.Mode != "transport" || e.Mode != "transport" {
				t.Fatalf("Child SA modes: west %q, east %q; want transport", w.Mode, e.Mode)
			}
			if w.SPIIn != e.SPIOut || w.SPIOut != e.SPIIn {
				t.Fatalf("Child SA SPIs do not pair: west in/out %08x/%08x, east in/out %08x/%08x", w.SPIIn, w.SPIOut, e.SPIIn, e.SPIOut)
			}
			if w.Encap == tb.raw || e.Encap == tb.raw {
				t.Errorf("encapsulation: west %v, east %v; want %v", w.Encap, e.Encap, !tb.raw)
			}
			tb.westC, tb.eastC = w, e
			tb.traffic(t, tc.outer.west, tc.outer.east)
			tb.checkCounters(t)
			tb.checkWire(t)
			// Taking the conn down removes the host routes and the rules:
			// the hosts then talk in clear again.
			if err := tb.pw.Down("e2e"); err != nil {
				t.Fatalf("ipsec down: %v", err)
			}
			for _, ns := range []*testnet.Namespace{tb.west, tb.east} {
				waitNoHostRoutes(t, ns)
			}
			ping(t, tb.west, tc.outer.east, 1)
			t.Logf("%s: %v", tc.name, time.Since(start).Round(time.Millisecond))
		})
	}
}

// waitNoHostRoutes waits until ns has neither goswan's rules nor routes in
// its host-route table.
func waitNoHostRoutes(t *testing.T, ns *testnet.Namespace) {
	t.Helper()
	var rules string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		rules = ns.MustRun(t, "ip", "rule", "show") + ns.MustRun(t, "ip", "-6", "rule", "show")
		if !strings.Contains(rules, "26482") && !strings.Contains(rules, "26483") {
			return
		}
	}
	t.Errorf("%s: goswan's rules are still there after ipsec down:\n%s", ns.Label, rules)
}
