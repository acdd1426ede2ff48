//go:build linux

package e2e

// Living tunnels, ours against ours: DoS cookies, IKE fragmentation,
// on-demand tunnels, passthrough and drop conns, restarts with
// INITIAL_CONTACT, and setup and rekeys over a lossy link.

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"goswan/ike/message"
	"goswan/internal/peers"
	"goswan/internal/testnet"
	"goswan/proposal"

	"golang.org/x/sys/unix"
)

// memoryKernel keeps Child SAs in the test-only memory back end, for the
// tests that are about IKE only.
var memoryKernel = []string{"GOSWAN_PLUTO_TEST_KERNEL=memory"}

// lcConn is a conn between west (192.0.2.1, 10.0.1.0/24 with 10.0.1.1 on
// its TUN) and east (192.0.2.2, 10.0.2.0/24, 10.0.2.1), with lines added.
// Both daemons load the same text (each finds its side from --listen).
func lcConn(name string, lines ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "conn %s\n\tleft=192.0.2.1\n\tleftid=@west\n\tleftsubnet=10.0.1.0/24\n\tleftsourceip=10.0.1.1\n", name)
	b.WriteString("\tright=192.0.2.2\n\trightid=@east\n\trightsubnet=10.0.2.0/24\n\trightsourceip=10.0.2.1\n")
	fmt.Fprintf(&b, "\tauthby=secret\n\tike=%s\n\tesp=aes_gcm128\n", ikeProposal)
	auto := false
	for _, l := range lines {
		auto = auto || strings.HasPrefix(l, "auto=")
		fmt.Fprintf(&b, "\t%s\n", l)
	}
	if !auto {
		b.WriteString("\tauto=add\n")
	}
	return b.String()
}

// lcPair is two of our daemons in the namespaces of testnet.Pair.
type lcPair struct {
	west, east *testnet.Namespace
	veth       *testnet.Veth
	pw, pe     *peers.Pluto
}

// lcDaemon starts our pluto in ns (west or east of the pair) and logs its
// output if the test fails.
func lcDaemon(t *testing.T, ns *testnet.Namespace, who, addr, conf string, args, env []string) *peers.Pluto {
	t.Helper()
	p := peers.StartPluto(t, ns, peers.PlutoConfig{BinDir: binDir, Conf: conf, Secrets: secrets,
		Args: append([]string{"--listen", addr}, args...), Env: env})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s's log:\n%s", who, testnet.Tail(p.Log(), 80))
		}
	})
	return p
}

// newLCPair makes the namespaces and starts the daemons with the back end
// flag in args (--use-userspace, or --use-netstack with memoryKernel).
func newLCPair(t *testing.T, westConf, eastConf string, westArgs, eastArgs, env []string) *lcPair {
	t.Helper()
	testnet.Require(t, "ping", "nft")
	lp := &lcPair{}
	lp.west, lp.east, lp.veth = testnet.Pair(t, "west", "east")
	if eastConf != "" {
		lp.pe = lcDaemon(t, lp.east, "east", outer4.east, eastConf, eastArgs, env)
	}
	if westConf != "" {
		lp.pw = lcDaemon(t, lp.west, "west", outer4.west, westConf, westArgs, env)
	}
	return lp
}

// saView is one daemon's only IKE SA and Child SA.
type saView struct {
	spii, spir    string
	remote        string
	childIn, out  uint32
	ikeSAs, child int
}

func viewOf(p *peers.Pluto) (saView, error) {
	st, err := p.Status()
	if err != nil {
		return saView{}, err
	}
	v := saView{ikeSAs: len(st.IKESAs), child: len(st.ChildSAs)}
	if len(st.IKESAs) == 1 {
		v.spii, v.spir = st.IKESAs[0].SPIi, st.IKESAs[0].SPIr
	}
	if len(st.ChildSAs) == 1 {
		v.childIn, v.out = st.ChildSAs[0].SPIIn, st.ChildSAs[0].SPIOut
	}
	return v, nil
}

// settledPair waits until both daemons hold exactly one established IKE
// SA and one Child SA, and that they agree.
func settledPair(t *testing.T, pw, pe *peers.Pluto, timeout time.Duration) (w, e saView) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var errW, errE error
		w, errW = viewOf(pw)
		e, errE = viewOf(pe)
		ok := errW == nil && errE == nil && w.ikeSAs == 1 && e.ikeSAs == 1 && w.child == 1 && e.child == 1 &&
			w.spii == e.spii && w.spir == e.spir && w.childIn == e.out && w.out == e.childIn
		if ok {
			return w, e
		}
		if time.Now().After(deadline) {
			stw, _ := pw.Status()
			ste, _ := pe.Status()
			t.Fatalf("the two daemons did not settle into one IKE SA and one Child SA each, agreeing, within %v:\nwest %+v (%v)\neast %+v (%v)",
				timeout, stw, errW, ste, errE)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// counters reads the engine's counters from "ipsec status --json".
func engineCounters(t *testing.T, p *peers.Pluto) map[string]any {
	t.Helper()
	m, err := p.StatusRaw()
	if err != nil {
		t.Fatal(err)
	}
	c, _ := m["counters"].(map[string]any)
	return c
}

// TestCookies checks the DoS defences of the responder (east):
//   - force-busy: with --force-busy east answers every IKE_SA_INIT with a
//     COOKIE; west sends it back and the tunnel still comes up, and east
//     counts the first IKE_SA_INIT as dropped for want of a cookie;
//   - flood: with ddos-ike-threshold=8, 20000 IKE_SA_INIT requests with
//     random SPIs from 20000 random source addresses (a raw socket in
//     west's namespace, 5000/s) leave east with at most 8 half-open IKE
//     SAs and a resident set that grew by less than 48 MiB; east counts
//     most of them as dropped for want of a cookie; and west, started in
//     the middle of the flood, still sets up a tunnel within a second.
func TestCookies(t *testing.T) {
	t.Run("force-busy", func(t *testing.T) {
		conf := lcConn("c", "retransmit-timeout=5s")
		lp := newLCPair(t, conf, conf, []string{"--use-netstack"}, []string{"--use-netstack", "--force-busy"}, memoryKernel)
		if err := lp.pw.Up("c"); err != nil {
			t.Fatalf("up against a --force-busy responder: %v", err)
		}
		settledPair(t, lp.pw, lp.pe, 5*time.Second)
		if !strings.Contains(lp.pw.Log(), "asked for a cookie") {
			t.Errorf("west's log does not say the responder asked for a cookie")
		}
		drops, _ := engineCounters(t, lp.pe)["Drops"].(map[string]any)
		if n, _ := drops["IKE_SA_INIT without a valid COOKIE while busy"].(float64); n < 1 {
			t.Errorf("east counted no IKE_SA_INIT dropped for want of a cookie: drops %v", drops)
		}
	})
	t.Run("flood", func(t *testing.T) {
		const threshold, flood, rate = 8, 20000, 5000
		conf := lcConn("c", "retransmit-timeout=5s")
		// East answers anybody (right=%any), as a gateway for road
		// warriors does: the flood's addresses all find the conn.
		eastConf := "config setup\n\tddos-ike-threshold=" + strconv.Itoa(threshold) + "\n" +
			"conn c\n\tleft=192.0.2.2\n\tleftid=@east\n\tleftsubnet=10.0.2.0/24\n\tright=%any\n\trightid=@west\n\trightsubnet=10.0.1.0/24\n" +
			"\tauthby=secret\n\tike=" + ikeProposal + "\n\tesp=aes_gcm128\n\tretransmit-timeout=5s\n\tauto=add\n"
		lp := newLCPair(t, conf, eastConf,
			[]string{"--use-netstack"}, []string{"--use-netstack"}, memoryKernel)
		// East must take datagrams from addresses it has no route to.
		lp.east.MustRun(t, "sh", "-c", "for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > $f; done")
		rss0, err := testnet.ProcessRSS(lp.pe.PID())
		if err != nil {
			t.Fatal(err)
		}
		msgs := floodMessages(t, 64)
		var wg sync.WaitGroup
		var sent int
		var floodErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent, floodErr = rawFlood(lp.west, netip.MustParseAddr(outer4.east), msgs, flood, rate)
		}()
		time.Sleep(2 * time.Second) // half-way
		maxHalfOpen := 0
		halfOpen := func() {
			if st, err := lp.pe.Status(); err == nil && len(st.IKESAs) > maxHalfOpen {
				maxHalfOpen = len(st.IKESAs)
			}
		}
		halfOpen()
		start := time.Now()
		err = lp.pw.Up("c")
		took := time.Since(start)
		halfOpen()
		wg.Wait()
		halfOpen()
		if floodErr != nil {
			t.Fatalf("the flood: %v (sent %d)", floodErr, sent)
		}
		if err != nil {
			t.Fatalf("up during the flood: %v", err)
		}
		t.Logf("west set up its tunnel in %v during a flood of %d IKE_SA_INITs", took.Round(time.Millisecond), sent)
		if took > time.Second {
			t.Errorf("west took %v to set up its tunnel during the flood; want under a second", took)
		}
		rss1, err := testnet.ProcessRSS(lp.pe.PID())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("east's resident set: %d MiB before, %d MiB after; at most %d IKE SAs listed", rss0>>20, rss1>>20, maxHalfOpen)
		if rss1 > rss0+48<<20 {
			t.Errorf("east's resident set grew from %d MiB to %d MiB under the flood", rss0>>20, rss1>>20)
		}
		// The real IKE SA of west is one of them.
		if maxHalfOpen > threshold+1 {
			t.Errorf("east held %d IKE SAs during the flood; ddos-ike-threshold=%d should keep the half-open ones at that", maxHalfOpen, threshold)
		}
		drops, _ := engineCounters(t, lp.pe)["Drops"].(map[string]any)
		if n, _ := drops["IKE_SA_INIT without a valid COOKIE while busy"].(float64); n < flood/2 {
			t.Errorf("east dropped %v IKE_SA_INITs for want of a cookie out of %d sent; drops: %v", n, sent, drops)
		}
		if !strings.Contains(lp.pw.Log(), "asked for a cookie") {
			t.Errorf("east was not busy when west came: west's log does not say it was asked for a cookie")
		}
		// East still holds the flood's half-open IKE SAs until they time
		// out; west's IKE SA must be among them, established.
		w, err := viewOf(lp.pw)
		if err != nil || w.ikeSAs != 1 || w.child != 1 {
			t.Fatalf("west after up: %+v (%v)", w, err)
		}
		st, err := lp.pe.Status()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, sa := range st.IKESAs {
			found = found || sa.SPIi == w.spii && !sa.Established.IsZero()
		}
		if !found || len(st.ChildSAs) != 1 {
			t.Errorf("east does not hold west's IKE SA %s established with one Child SA: %+v, %+v", w.spii, st.IKESAs, st.ChildSAs)
		}
	})
}

// floodMessages makes n IKE_SA_INIT requests as an initiator would send
// them (AES-GCM-128, PRF-HMAC-SHA2-256, X25519, a real-looking KE and
// nonce), each with its own random SPIi.
func floodMessages(t *testing.T, n int) [][]byte {
	t.Helper()
	var out [][]byte
	for i := 0; i < n; i++ {
		ke, nonce := make([]byte, 32), make([]byte, 32)
		rand.Read(ke)
		rand.Read(nonce)
		m := &message.Message{Exchange: message.IKE_SA_INIT, Flags: message.FlagInitiator, Payloads: []message.Payload{
			&message.SA{Proposals: []message.Proposal{{Number: 1, Protocol: message.ProtocolIKE, Transforms: []message.Transform{
				{Type: message.TransformENCR, ID: 20, Attributes: []message.Attribute{message.KeyLengthAttribute(128)}},
				{Type: message.TransformPRF, ID: 5},
				{Type: message.TransformKE, ID: 31},
			}}}},
			&message.KE{Group: proposal.DHGroup(31), Data: ke},
			&message.Nonce{Data: nonce},
		}}
		rand.Read(m.SPIi[:])
		b, err := m.Encode()
		if err != nil {
			t.Fatalf("encoding an IKE_SA_INIT: %v", err)
		}
		out = append(out, b)
	}
	return out
}

// rawFlood sends count IPv4/UDP datagrams to dst port 500 from a raw
// socket in ns, each from a random source address in 100.64.0.0/10 and
// port, with one of msgs (its SPIi made random), at rate per second.
func rawFlood(ns *testnet.Namespace, dst netip.Addr, msgs [][]byte, count, rate int) (int, error) {
	var fd int
	err := ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("raw socket: %v", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrInet4{Addr: dst.As4()}
	buf := make([]byte, 2048)
	rnd := make([]byte, 16)
	start := time.Now()
	for i := 0; i < count; i++ {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
			time.Sleep(d)
		}
		msg := msgs[i%len(msgs)]
		rand.Read(rnd)
		n := 28 + len(msg)
		p := buf[:n]
		clear(p[:28])
		p[0] = 0x45
		binary.BigEndian.PutUint16(p[2:], uint16(n))
		p[8] = 64
		p[9] = unix.IPPROTO_UDP
		p[12], p[13], p[14], p[15] = 100, 64|rnd[0]&0x3f, rnd[1], rnd[2]|1
		copy(p[16:20], to.Addr[:])
		binary.BigEndian.PutUint16(p[20:], 1024+binary.BigEndian.Uint16(rnd[3:])%60000)
		binary.BigEndian.PutUint16(p[22:], 500)
		binary.BigEndian.PutUint16(p[24:], uint16(8+len(msg)))
		// UDP checksum 0: none (IPv4). The kernel fills in the IP
		// header's checksum and ID.
		copy(p[28:], msg)
		copy(p[28:36], rnd[8:16])
		if err := unix.Sendto(fd, p, 0, to); err != nil && err != unix.ENOBUFS {
			return i, fmt.Errorf("sendto: %v", err)
		}
	}
	return count, nil
}

// TestFragmentation sets up a conn with 60 subnets on each side (an
// IKE_AUTH of about 2 KB each way) across a veth with MTU 1280 on which
// IP fragments are dropped (nftables, both ends). With fragmentation=yes
// (the default) the tunnel comes up with all 60x60 selectors, IKE_AUTH
// crossed as SKF payloads (RFC 7383) both ways, and no IP fragment was
// sent; with fragmentation=no on west, the same conn cannot come up (the
// control that shows the drop rule bites).
func TestFragmentation(t *testing.T) {
	var ls, rs []string
	for i := 0; i < 60; i++ {
		ls = append(ls, fmt.Sprintf("10.1.%d.0/24", i))
		rs = append(rs, fmt.Sprintf("10.2.%d.0/24", i))
	}
	conf := func(frag string) string {
		return fmt.Sprintf("conn f\n\tleft=192.0.2.1\n\tleftid=@west\n\tleftsubnet=%s\n\tright=192.0.2.2\n\trightid=@east\n\trightsubnet=%s\n"+
			"\tauthby=secret\n\tike=%s\n\tesp=aes_gcm128\n\tfragmentation=%s\n\tretransmit-timeout=3s\n\tauto=add\n",
			strings.Join(ls, ","), strings.Join(rs, ","), ikeProposal, frag)
	}
	const rules = `table inet gs_frag {
	counter skf { }
	counter ipfrag { }
	chain pre {
		type filter hook prerouting priority -450; policy accept;
		ip frag-off & 0x3fff != 0 counter name "ipfrag" drop
	}
	chain out {
		type filter hook output priority 0; policy accept;
		udp dport 500 @th,192,8 53 counter name "skf"
		udp dport 4500 @th,64,32 0 @th,224,8 53 counter name "skf"
	}
}
`
	for _, frag := range []string{"yes", "no"} {
		t.Run("fragmentation="+frag, func(t *testing.T) {
			lp := newLCPair(t, "", "", nil, nil, nil)
			for _, x := range []struct {
				ns  *testnet.Namespace
				dev string
			}{{lp.west, lp.veth.AName}, {lp.east, lp.veth.BName}} {
				x.ns.MustRun(t, "ip", "link", "set", x.dev, "mtu", "1280")
				x.ns.NFT(t, rules)
			}
			lp.pe = lcDaemon(t, lp.east, "east", outer4.east, conf("yes"), []string{"--use-netstack"}, memoryKernel)
			lp.pw = lcDaemon(t, lp.west, "west", outer4.west, conf(frag), []string{"--use-netstack"}, memoryKernel)
			err := lp.pw.Up("f")
			skfW := lp.west.MustNFTCounter(t, "inet", "gs_frag", "skf")
			skfE := lp.east.MustNFTCounter(t, "inet", "gs_frag", "skf")
			ipfW := lp.west.MustNFTCounter(t, "inet", "gs_frag", "ipfrag")
			ipfE := lp.east.MustNFTCounter(t, "inet", "gs_frag", "ipfrag")
			t.Logf("SKF datagrams sent: west %d, east %d; IP fragments dropped on arrival: west %d, east %d", skfW, skfE, ipfW, ipfE)
			if frag == "no" {
				if err == nil {
					t.Fatalf("a 2 KB IKE_AUTH came up without IKE fragmentation across a link that drops IP fragments")
				}
				if skfW != 0 {
					t.Errorf("west sent %d SKF datagrams with fragmentation=no", skfW)
				}
				if ipfE == 0 {
					t.Errorf("no IP fragment reached east: the big IKE_AUTH was not sent as one datagram")
				}
				return
			}
			if err != nil {
				t.Fatalf("up: %v", err)
			}
			settledPair(t, lp.pw, lp.pe, 5*time.Second)
			st, err := lp.pw.Status()
			if err != nil {
				t.Fatal(err)
			}
			if c := st.ChildSAs[0]; len(c.LocalTS) != 60 || len(c.RemoteTS) != 60 {
				t.Errorf("west's Child SA has %d local and %d remote selectors; want 60 and 60", len(c.LocalTS), len(c.RemoteTS))
			}
			if skfW < 2 || skfE < 2 {
				t.Errorf("IKE_AUTH was not fragmented both ways: SKF datagrams west %d, east %d", skfW, skfE)
			}
			if ipfW != 0 || ipfE != 0 {
				t.Errorf("IP fragments arrived: west %d, east %d", ipfW, ipfE)
			}
		})
	}
}

// TestOnDemand loads west's conn with auto=ondemand on the user-space data
// plane: nothing is negotiated until west sends to east's subnet. Then 20
// datagrams sent at once start exactly one IKE SA (one acquire at a time
// per conn), the tunnel comes up, and a ping passes. Whether the datagrams
// sent before the Child SA existed were delivered is logged: the data plane
// drops them (kernel/userspace counts OutAcquire; pluto does not show it).
func TestOnDemand(t *testing.T) {
	lp := newLCPair(t, lcConn("od", "auto=ondemand", "retransmit-timeout=5s"), lcConn("od"),
		[]string{"--use-userspace"}, []string{"--use-userspace"}, nil)
	time.Sleep(500 * time.Millisecond)
	if st, err := lp.pw.Status(); err != nil || len(st.IKESAs) != 0 {
		t.Fatalf("west negotiated before any traffic: %+v (%v)", st.IKESAs, err)
	}
	srv, err := lp.east.ListenPacket("udp", "10.0.2.1:7002")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	got := make(chan int, 100)
	go func() {
		buf := make([]byte, 100)
		for {
			n, _, err := srv.ReadFrom(buf)
			if err != nil {
				close(got)
				return
			}
			if n == 2 {
				got <- int(binary.BigEndian.Uint16(buf))
			}
		}
	}()
	cli, err := lp.west.ListenPacket("udp", "10.0.1.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	dst := srv.LocalAddr()
	sent := time.Now()
	for i := 0; i < 20; i++ {
		if _, err := cli.WriteTo(binary.BigEndian.AppendUint16(nil, uint16(i)), dst); err != nil {
			t.Fatalf("sending the trigger: %v", err)
		}
	}
	settledPair(t, lp.pw, lp.pe, 10*time.Second)
	t.Logf("tunnel up %v after the first datagram", time.Since(sent).Round(time.Millisecond))
	if err := lp.pw.WaitLog("od: acquire for", time.Second); err != nil {
		t.Errorf("west's log does not show the acquire: %v", err)
	}
	if n := strings.Count(lp.pw.Log(), "initiating IKEv2 connection"); n != 1 {
		t.Errorf("20 datagrams started %d IKE SAs; want 1", n)
	}
	ping(t, lp.west, "10.0.2.1", 3)
	if _, err := cli.WriteTo(binary.BigEndian.AppendUint16(nil, 1000), dst); err != nil {
		t.Fatal(err)
	}
	var early []int
	timeout := time.After(2 * time.Second)
wait:
	for {
		select {
		case n, ok := <-got:
			if !ok {
				break wait
			}
			if n == 1000 {
				break wait
			}
			early = append(early, n)
		case <-timeout:
			t.Fatalf("a datagram sent once the tunnel was up did not arrive")
		}
	}
	t.Logf("of the 20 datagrams sent before the Child SA existed, %d arrived: %v (the others were dropped by the data plane)", len(early), early)
}

// TestPassthroughDrop loads, on west with the user-space data plane, an
// auto=ondemand tunnel conn for 10.0.1.0/24 <-> 10.0.2.0/24, a
// type=passthrough conn for 10.0.2.5 and a type=drop conn for 10.0.2.6
// inside it. East runs no IKE and counts the echo requests that reach
// 10.0.2.5, .6 and .7 in the clear. Pings to .6 are dropped (none reaches
// east, and no acquire is raised for them); pings to .7 are held by the
// tunnel's trap (none reaches east in the clear, and the acquire makes
// west start IKE); pings to .5 must pass in the clear.
//
// West's clear path is a default route via east. The tunnel conn routes
// 10.0.2.0/24 into the TUN; the passthrough conn's Bypass policy makes
// the data plane add 10.0.2.5/32 via the default route's gateway
// (tun.KernelTUN.AddBypassRoute), so those pings never enter the TUN. The
// route must be gone once west's daemon has stopped.
func TestPassthroughDrop(t *testing.T) {
	testnet.Require(t, "ping", "nft")
	west, east, _ := testnet.Pair(t, "west", "east")
	for _, a := range []string{"10.0.2.5", "10.0.2.6", "10.0.2.7"} {
		east.AddLoopbackAddr(t, netip.MustParseAddr(a))
	}
	east.MustRun(t, "ip", "route", "add", "10.0.1.0/24", "via", outer4.west)
	// West's clear path to the remote subnet (its default gateway): the
	// tunnel's route into the TUN overrides it, and the passthrough
	// conn's bypass route must lead back to it.
	west.MustRun(t, "ip", "route", "add", "default", "via", outer4.east)
	east.NFT(t, `table inet gs_pd {
	counter to5 { }
	counter to6 { }
	counter to7 { }
	chain in {
		type filter hook input priority 0; policy accept;
		ip daddr 10.0.2.5 icmp type echo-request counter name "to5"
		ip daddr 10.0.2.6 icmp type echo-request counter name "to6"
		ip daddr 10.0.2.7 icmp type echo-request counter name "to7"
	}
}
`)
	conf := "conn tun\n\tleft=192.0.2.1\n\tleftid=@west\n\tleftsubnet=10.0.1.0/24\n\tleftsourceip=10.0.1.1\n" +
		"\tright=192.0.2.2\n\trightid=@east\n\trightsubnet=10.0.2.0/24\n" +
		"\tauthby=secret\n\tike=" + ikeProposal + "\n\tesp=aes_gcm128\n\tretransmit-timeout=3s\n\tauto=ondemand\n" +
		"conn pass\n\tleft=192.0.2.1\n\tleftsubnet=10.0.1.0/24\n\tright=192.0.2.2\n\trightsubnet=10.0.2.5/32\n\ttype=passthrough\n\tauto=ondemand\n" +
		"conn block\n\tleft=192.0.2.1\n\tleftsubnet=10.0.1.0/24\n\tright=192.0.2.2\n\trightsubnet=10.0.2.6/32\n\ttype=drop\n\tauto=ondemand\n"
	pw := lcDaemon(t, west, "west", outer4.west, conf, []string{"--use-userspace"}, nil)
	pingN := func(dst string) (string, error) {
		return west.Run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", "-I", "10.0.1.1", dst)
	}
	out5, err5 := pingN("10.0.2.5")
	if out, err := pingN("10.0.2.6"); err == nil && !strings.Contains(out, " 0 received") {
		t.Errorf("ping through the drop conn got answers:\n%s", out)
	}
	if strings.Contains(pw.Log(), "acquire for") {
		t.Errorf("pings to the passthrough and drop conns raised an acquire:\n%s", pw.Log())
	}
	if out, err := pingN("10.0.2.7"); err == nil && !strings.Contains(out, " 0 received") {
		t.Errorf("ping into the on-demand tunnel (no peer) got answers in the clear:\n%s", out)
	}
	to5 := east.MustNFTCounter(t, "inet", "gs_pd", "to5")
	to6 := east.MustNFTCounter(t, "inet", "gs_pd", "to6")
	to7 := east.MustNFTCounter(t, "inet", "gs_pd", "to7")
	t.Logf("echo requests that reached east in the clear: .5 %d, .6 %d, .7 %d", to5, to6, to7)
	if to6 != 0 {
		t.Errorf("%d echo requests reached 10.0.2.6; want 0 (type=drop)", to6)
	}
	if to7 != 0 {
		t.Errorf("%d echo requests reached 10.0.2.7 in the clear; want 0 (trapped by the tunnel conn)", to7)
	}
	if err := pw.WaitLog("tun: acquire for", 3*time.Second); err != nil {
		t.Errorf("the trapped ping did not start IKE: %v", err)
	}
	if to5 != 3 || err5 != nil || !strings.Contains(out5, " 3 received") {
		t.Errorf("ping through the passthrough conn: %d of 3 echo requests reached east in the clear; ping: %v\n%s", to5, err5, out5)
	}
	// The bypass route copies the default route, past the TUN, and goes
	// with the daemon.
	if out, err := west.Run("ip", "route", "get", "10.0.2.5"); err != nil || !strings.Contains(out, "via "+outer4.east) || strings.Contains(out, "ipsec0") {
		t.Errorf("west's route to 10.0.2.5 (passthrough): %v\n%s", err, out)
	}
	if out, err := west.Run("ip", "route", "get", "10.0.2.7"); err != nil || !strings.Contains(out, "ipsec0") {
		t.Errorf("west's route to 10.0.2.7 (tunnel) does not lead into the TUN: %v\n%s", err, out)
	}
	if err := pw.Stop(); err != nil {
		t.Errorf("stop west: %v", err)
	}
	if out, err := west.Run("ip", "route", "show", "10.0.2.5/32"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("the bypass route outlived the daemon: %v\n%s", err, out)
	}
}

// TestRestartInitialContact kills west (SIGKILL, so east hears nothing)
// while its tunnel to east is up, and starts it again with auto=start. East
// has no dpddelay: only INITIAL_CONTACT in the new IKE_AUTH can tell it
// the old IKE SA is gone. Within 3 s of the restart east must hold exactly
// the new IKE SA and Child SA (it logs that it forgot the old one), and
// pings pass both ways.
func TestRestartInitialContact(t *testing.T) {
	conf := lcConn("rs", "auto=start", "retransmit-timeout=5s")
	lp := newLCPair(t, conf, lcConn("rs", "retransmit-timeout=5s"), []string{"--use-userspace"}, []string{"--use-userspace"}, nil)
	first, _ := settledPair(t, lp.pw, lp.pe, 10*time.Second)
	ping(t, lp.west, "10.0.2.1", 2)
	if err := syscall.Kill(lp.pw.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); !lp.pw.Exited(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("west survived SIGKILL")
		}
	}
	// The TUN goes away with the process that held it.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := lp.west.Run("ip", "link", "show", "ipsec0"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("west's ipsec0 outlived its daemon")
		}
	}
	if v, err := viewOf(lp.pe); err != nil || v.ikeSAs != 1 {
		t.Fatalf("east before west's restart: %+v (%v)", v, err)
	}
	restarted := time.Now()
	lp.pw = lcDaemon(t, lp.west, "west (restarted)", outer4.west, conf, []string{"--use-userspace"}, nil)
	w, _ := settledPair(t, lp.pw, lp.pe, 3*time.Second)
	t.Logf("east holds only the new IKE SA %v after the restart", time.Since(restarted).Round(time.Millisecond))
	if w.spii == first.spii {
		t.Errorf("the IKE SA after the restart is the old one (%s)", w.spii)
	}
	if !strings.Contains(lp.pe.Log(), "sent INITIAL_CONTACT") || !strings.Contains(lp.pe.Log(), "forgetting IKE SA") {
		t.Errorf("east's log does not show INITIAL_CONTACT clearing the old IKE SA")
	}
	ping(t, lp.west, "10.0.2.1", 3)
	ping(t, lp.east, "10.0.1.1", 3)
}

// TestLossyRekey drops IKE datagrams on their way out of both namespaces:
// one in ten at random (nftables numgen random mod 10) plus, for certain,
// the second one each side sends (the IKE_AUTH request and its response).
// Setup must still complete, and then a Child SA rekey and an IKE SA rekey
// (salifetime=8s, ikelifetime=12s, rekeymargin=3s) must too, leaving one
// IKE SA and one Child SA on each side with new SPIs that agree; west must
// have retransmitted.
func TestLossyRekey(t *testing.T) {
	conf := lcConn("lr", "salifetime=8s", "ikelifetime=12s", "rekeymargin=3s", "rekeyfuzz=0%", "retransmit-timeout=20s")
	lp := newLCPair(t, "", "", nil, nil, nil)
	for _, ns := range []*testnet.Namespace{lp.west, lp.east} {
		ns.NFT(t, `table inet gs_loss {
	counter lost { }
	chain out {
		type filter hook output priority 0; policy accept;
		udp dport { 500, 4500 } numgen inc mod 100000 1 counter name "lost" drop
		udp dport { 500, 4500 } numgen random mod 10 0 counter name "lost" drop
	}
}
`)
	}
	lp.pe = lcDaemon(t, lp.east, "east", outer4.east, conf, []string{"--use-netstack"}, memoryKernel)
	lp.pw = lcDaemon(t, lp.west, "west", outer4.west, conf, []string{"--use-netstack"}, memoryKernel)
	start := time.Now()
	if err := lp.pw.Up("lr"); err != nil {
		t.Fatalf("up over the lossy link: %v", err)
	}
	first, _ := settledPair(t, lp.pw, lp.pe, 10*time.Second)
	t.Logf("set up in %v", time.Since(start).Round(time.Millisecond))
	for _, l := range []string{"lr: rekeyed Child SA", "lr: rekeyed IKE SA"} {
		if err := lp.pw.WaitLog(l, 30*time.Second); err != nil {
			t.Fatalf("over the lossy link: %v", err)
		}
	}
	now, _ := settledPair(t, lp.pw, lp.pe, 20*time.Second)
	if now.spii == first.spii || now.childIn == first.childIn {
		t.Errorf("SPIs did not change: IKE %s -> %s, Child SA %08x -> %08x", first.spii, now.spii, first.childIn, now.childIn)
	}
	lostW := lp.west.MustNFTCounter(t, "inet", "gs_loss", "lost")
	lostE := lp.east.MustNFTCounter(t, "inet", "gs_loss", "lost")
	retr, _ := engineCounters(t, lp.pw)["Retransmits"].(float64)
	t.Logf("dropped: west %d, east %d datagrams; west retransmitted %v times; %v in all", lostW, lostE, retr, time.Since(start).Round(time.Millisecond))
	if lostW < 1 || lostE < 1 || retr < 1 {
		t.Errorf("the loss did not bite: dropped west %d, east %d; west retransmits %v", lostW, lostE, retr)
	}
}
