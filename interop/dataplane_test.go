//go:build linux

package interop

import (
	"bufio"
	"math/rand"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"goswan/internal/peers"
	"goswan/internal/testnet"
)

// dpCase is one data-plane interop case: the ESP transform as each side
// spells it, and who initiates.
type dpCase struct {
	name             string
	ourESP, theirESP string
	weInitiate       bool
	ourIKE, theirIKE string
	wantTheirEncrAlg string
}

// TestStrongSwanDataPlane carries traffic between our user-space data
// plane (--use-userspace: ESP in this process over a TUN that has
// leftsourceip=10.0.1.1 and a route to 10.0.2.0/24) and strongSwan's
// kernel-libipsec (ESP in charon over its TUN ipsec0, routes in table 220,
// 10.0.2.1 on lo), ESP in UDP both ways, with us as initiator and as
// responder, for AES-GCM and for AES-CBC with HMAC-SHA-256. It asserts
// that pings go both ways, that a TCP echo of 2 MiB started from each side
// comes back intact, and that the counters agree: what each side sealed
// the other opened, in packets and in bytes of inner packets (packets that
// the receiving kernel dropped from a full UDP buffer, read from
// /proc/net/snmp, excepted), with our trafficstatus equal to our status.
func TestStrongSwanDataPlane(t *testing.T) {
	cases := []dpCase{
		{"aes128gcm16/we-initiate", "aes_gcm128", "aes128gcm16", true, "aes_gcm128-sha2_256-dh19", "aes128gcm16-prfsha256-ecp256", "AES_GCM_16"},
		{"aes128gcm16/we-respond", "aes_gcm128", "aes128gcm16", false, "aes_gcm128-sha2_256-dh19", "aes128gcm16-prfsha256-ecp256", "AES_GCM_16"},
		{"aes128-sha256/we-initiate", "aes128-sha2_256", "aes128-sha256", true, "aes_gcm128-sha2_256-dh19", "aes128gcm16-prfsha256-ecp256", "AES_CBC"},
		{"aes128-sha256/we-respond", "aes128-sha2_256", "aes128-sha256", false, "aes_gcm128-sha2_256-dh19", "aes128gcm16-prfsha256-ecp256", "AES_CBC"},
	}
	for _, dc := range cases {
		t.Run(dc.name, func(t *testing.T) {
			start := time.Now()
			dpRun(t, dc)
			t.Logf("%s: %v", dc.name, time.Since(start).Round(time.Millisecond))
		})
	}
}

func dpRun(t *testing.T, dc dpCase) {
	peers.RequireCharon(t)
	testnet.Require(t, "ping")
	ours, theirs, _ := testnet.Pair(t, "ours", "theirs")
	theirs.AddLoopbackAddr(t, netip.MustParseAddr("10.0.2.1"))
	conf := "conn dp\n\tleft=192.0.2.1\n\tleftid=@ours.example\n\tleftsubnet=10.0.1.0/24\n\tleftsourceip=10.0.1.1\n" +
		"\tright=192.0.2.2\n\trightid=@theirs.example\n\trightsubnet=10.0.2.0/24\n" +
		"\tauthby=secret\n\tencapsulation=yes\n\tike=" + dc.ourIKE + "\n\tesp=" + dc.ourESP + "\n\tauto=add\n"
	pl := peers.StartPluto(t, ours, peers.PlutoConfig{
		BinDir: binDir, Conf: conf, Secrets: "@ours.example @theirs.example : PSK \"" + psk + "\"\n",
		Args: []string{"--use-userspace", "--listen", "192.0.2.1"},
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("our pluto's log:\n%s", testnet.Tail(pl.Log(), 60))
		}
	})
	ch := peers.StartCharon(t, theirs, peers.CharonConfig{}, peers.SwanConn{
		Name: "dp", LocalAddrs: []string{"192.0.2.2"}, RemoteAddrs: []string{"192.0.2.1"},
		LocalID: "theirs.example", RemoteID: "ours.example", PSK: psk, Encap: true,
		Proposals: []string{dc.theirIKE},
		Children: []peers.SwanChild{{Name: "dp", LocalTS: []string{"10.0.2.0/24"}, RemoteTS: []string{"10.0.1.0/24"},
			ESPProposals: []string{dc.theirESP}}},
	})
	if dc.weInitiate {
		if err := pl.Up("dp"); err != nil {
			t.Fatal(err)
		}
	} else if err := ch.Initiate("dp"); err != nil {
		t.Fatalf("strongSwan initiate: %v", err)
	}
	sa, err := ch.WaitEstablished("dp", 10*time.Second, "dp")
	if err != nil {
		t.Fatal(err)
	}
	tc, _ := sa.Child("dp")
	oc := dpOurChild(t, pl)
	if oc.SPIIn != tc.SPIOut || oc.SPIOut != tc.SPIIn || !oc.Encap || !tc.Encap {
		t.Fatalf("Child SAs: ours in/out %08x/%08x encap %v, strongSwan in/out %08x/%08x encap %v",
			oc.SPIIn, oc.SPIOut, oc.Encap, tc.SPIIn, tc.SPIOut, tc.Encap)
	}
	if tc.EncrAlg != dc.wantTheirEncrAlg {
		t.Errorf("strongSwan's Child SA uses %s (%s), want %s", tc.EncrAlg, tc.Proposal, dc.wantTheirEncrAlg)
	}
	t.Logf("Child SA: ours %s, strongSwan %s", oc.Algorithms, tc.Proposal)
	udpOurs0, udpTheirs0 := dpUDPErrors(t, ours), dpUDPErrors(t, theirs)

	dpPing(t, ours, "10.0.2.1")
	dpPing(t, theirs, "10.0.1.1")
	payload := make([]byte, 2<<20)
	rand.New(rand.NewSource(3)).Read(payload)
	theirEcho := theirs.StartTCPEcho(t, "10.0.2.1:7000")
	ourEcho := ours.StartTCPEcho(t, "10.0.1.1:7000")
	for _, x := range []struct {
		from *testnet.Namespace
		to   string
		what string
	}{{ours, theirEcho.String(), "from us to strongSwan's side"}, {theirs, ourEcho.String(), "from strongSwan's side to us"}} {
		start := time.Now()
		if err := x.from.TCPEcho(x.to, payload, 60*time.Second); err != nil {
			t.Fatalf("TCP echo %s: %v", x.what, err)
		}
		t.Logf("TCP echo %s: 2 MiB each way in %v", x.what, time.Since(start).Round(time.Millisecond))
	}

	// Read both sides until two readings in a row agree.
	var o dpChild
	var th peers.ChildSA
	for deadline := time.Now().Add(5 * time.Second); ; {
		time.Sleep(300 * time.Millisecond)
		o2 := dpOurChild(t, pl)
		sa, err := ch.WaitEstablished("dp", time.Second, "dp")
		if err != nil {
			t.Fatal(err)
		}
		th2, _ := sa.Child("dp")
		stable := o2 == o && th2.BytesIn == th.BytesIn && th2.BytesOut == th.BytesOut && th2.PacketsIn == th.PacketsIn && th2.PacketsOut == th.PacketsOut
		o, th = o2, th2
		if stable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters still moving after 5 s")
		}
	}
	t.Logf("ours out %d B / %d pkts, in %d / %d; strongSwan out %d / %d, in %d / %d",
		o.BytesOut, o.PacketsOut, o.BytesIn, o.PacketsIn, th.BytesOut, th.PacketsOut, th.BytesIn, th.PacketsIn)
	ts, err := pl.TrafficStatus()
	if err != nil || len(ts) != 1 || ts[0].BytesIn != o.BytesIn || ts[0].BytesOut != o.BytesOut || ts[0].PacketsIn != o.PacketsIn || ts[0].PacketsOut != o.PacketsOut {
		t.Errorf("our trafficstatus %+v (%v) disagrees with our status %+v", ts, err, o)
	}
	min := uint64(2 * len(payload))
	if o.BytesOut < min || o.BytesIn < min || th.BytesOut < min || th.BytesIn < min {
		t.Errorf("counters too small for 2 MiB each way, twice")
	}
	lostAtUs, lostAtThem := dpUDPErrors(t, ours)-udpOurs0, dpUDPErrors(t, theirs)-udpTheirs0
	dpPair(t, "we", "strongSwan", o.PacketsOut, th.PacketsIn, o.BytesOut, th.BytesIn, lostAtThem)
	dpPair(t, "strongSwan", "we", th.PacketsOut, o.PacketsIn, th.BytesOut, o.BytesIn, lostAtUs)
}

func dpPair(t *testing.T, from, to string, out, in, outB, inB, lost uint64) {
	t.Helper()
	switch {
	case out < in || out-in > lost:
		t.Errorf("%s sealed %d packets (%d bytes), %s opened %d (%d bytes); %d datagrams were lost to %s's full UDP buffer",
			from, out, outB, to, in, inB, lost, to)
	case lost == 0 && outB != inB:
		t.Errorf("%s sealed %d bytes, %s opened %d, and nothing was lost", from, outB, to, inB)
	case out != in:
		t.Logf("%s sealed %d packets, %s opened %d: %d lost to %s's full UDP buffer", from, out, to, in, out-in, to)
	}
}

type dpChild struct {
	SPIIn, SPIOut         uint32
	Encap                 bool
	Algorithms            string
	BytesIn, BytesOut     uint64
	PacketsIn, PacketsOut uint64
}

func dpOurChild(t *testing.T, pl *peers.Pluto) dpChild {
	t.Helper()
	st, err := pl.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.ChildSAs) != 1 {
		t.Fatalf("our Child SAs: %+v", st.ChildSAs)
	}
	c := st.ChildSAs[0]
	return dpChild{c.SPIIn, c.SPIOut, c.Encap, c.Algorithms, c.BytesIn, c.BytesOut, c.PacketsIn, c.PacketsOut}
}

func dpPing(t *testing.T, ns *testnet.Namespace, dst string) {
	t.Helper()
	out, err := ns.Run("ping", "-n", "-c", "3", "-i", "0.1", "-W", "3", dst)
	if err != nil || !strings.Contains(out, "3 received") {
		t.Fatalf("ping %s from %s: %v\n%s", dst, ns.Label, err, out)
	}
}

// dpUDPErrors is the namespace's UDP InErrors (IPv4 and IPv6): datagrams
// its kernel dropped before a socket read them.
func dpUDPErrors(t *testing.T, ns *testnet.Namespace) uint64 {
	t.Helper()
	var n uint64
	var names []string
	sc := bufio.NewScanner(strings.NewReader(ns.MustRun(t, "cat", "/proc/net/snmp", "/proc/net/snmp6")))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) > 1 && f[0] == "Udp:" && names == nil:
			names = f
		case len(f) > 1 && f[0] == "Udp:":
			for i := 1; i < len(f) && i < len(names); i++ {
				if names[i] == "InErrors" {
					v, _ := strconv.ParseUint(f[i], 10, 64)
					n += v
				}
			}
		case len(f) == 2 && f[0] == "Udp6InErrors":
			v, _ := strconv.ParseUint(f[1], 10, 64)
			n += v
		}
	}
	return n
}
