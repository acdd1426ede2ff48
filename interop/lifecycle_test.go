//go:build linux

package interop

// Living tunnels with strongSwan: rekeying both ways under traffic,
// liveness (DPD) with dpdaction=clear and restart, and NAT traversal with
// keep-alives and a NAT mapping that changes mid-tunnel. Our daemon runs
// the user-space data plane (--use-userspace), so that real ESP in UDP
// flows between it and charon's kernel-libipsec while the SAs change.

import (
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"goswan/internal/peers"
	"goswan/internal/testnet"
)

// lcOpts is one living-tunnel set-up: extra lines for our conn, our extra
// pluto flags, and strongSwan's connection.
type lcOpts struct {
	ourLines []string // "key=value" lines added to our conn
	ourArgs  []string
	swan     func(*peers.SwanConn)
}

// lcBed is our pluto (--use-userspace, 10.0.1.1 on its TUN) and charon
// (kernel-libipsec, 10.0.2.1 on lo) joined by a veth, or by the NAT of
// testnet.NewNAT.
type lcBed struct {
	ours, theirs *testnet.Namespace
	pl           *peers.Pluto
	ch           *peers.Charon
	swan         peers.SwanConn
	nat          *testnet.NAT
	ourAddr      string
}

const lcIKE, lcESP = "aes_gcm128-sha2_256-dh19", "aes_gcm128"

func lcConf(our, their string, lines []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "conn lc\n\tleft=%s\n\tleftid=@ours.example\n\tleftsubnet=10.0.1.0/24\n\tleftsourceip=10.0.1.1\n", our)
	fmt.Fprintf(&b, "\tright=%s\n\trightid=@theirs.example\n\trightsubnet=10.0.2.0/24\n", their)
	fmt.Fprintf(&b, "\tauthby=secret\n\tencapsulation=yes\n\tike=%s\n\tesp=%s\n\tretransmit-timeout=10s\n", lcIKE, lcESP)
	for _, l := range lines {
		fmt.Fprintf(&b, "\t%s\n", l)
	}
	b.WriteString("\tauto=add\n")
	return b.String()
}

func lcSwanConn(local string, remote []string) peers.SwanConn {
	return peers.SwanConn{
		Name: "lc", LocalAddrs: []string{local}, RemoteAddrs: remote,
		LocalID: "theirs.example", RemoteID: "ours.example", PSK: psk, Encap: true,
		Proposals: []string{"aes128gcm16-prfsha256-ecp256"},
		Children: []peers.SwanChild{{Name: "lc", LocalTS: []string{"10.0.2.0/24"}, RemoteTS: []string{"10.0.1.0/24"},
			// PFS with the IKE SA's group, as our esp= without a group
			// does when it rekeys.
			ESPProposals: []string{"aes128gcm16-ecp256"}}},
	}
}

// newLCBed builds the set-up; with nat, our daemon is inside the NAT and
// charon outside.
func newLCBed(t *testing.T, o lcOpts, nat bool) *lcBed {
	t.Helper()
	peers.RequireCharon(t)
	testnet.Require(t, "ping", "nft")
	b := &lcBed{}
	their := "192.0.2.2"
	var remote []string
	if nat {
		b.nat = testnet.NewNAT(t, "lc")
		b.ours, b.theirs = b.nat.Inside, b.nat.Outside
		b.ourAddr, their = b.nat.InsideAddr.String(), b.nat.OutsideAddr.String()
	} else {
		b.ours, b.theirs, _ = testnet.Pair(t, "ours", "theirs")
		b.ourAddr = "192.0.2.1"
		remote = []string{b.ourAddr}
	}
	b.theirs.AddLoopbackAddr(t, netip.MustParseAddr("10.0.2.1"))
	b.pl = peers.StartPluto(t, b.ours, peers.PlutoConfig{
		BinDir: binDir, Conf: lcConf(b.ourAddr, their, o.ourLines),
		Secrets: "@ours.example @theirs.example : PSK \"" + psk + "\"\n",
		Args:    append([]string{"--use-userspace", "--listen", b.ourAddr}, o.ourArgs...),
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("our pluto's log:\n%s", testnet.Tail(b.pl.Log(), 120))
		}
	})
	b.swan = lcSwanConn(their, remote)
	if o.swan != nil {
		o.swan(&b.swan)
	}
	b.ch = peers.StartCharon(t, b.theirs, peers.CharonConfig{}, b.swan)
	return b
}

// lcState is both sides' view of the one IKE SA and Child SA.
type lcState struct {
	ourSPIi, ourSPIr     string
	ourIn, ourOut        uint32
	theirIn, theirOut    uint32
	theirSPIi, theirSPIr string
	theirRemote          string
	theirRemotePort      int
}

// settled waits until each side holds exactly one IKE SA with one Child
// SA (what a rekey leaves behind once the old SAs are deleted), that the
// two agree, and returns it.
func (b *lcBed) settled(t *testing.T, timeout time.Duration) lcState {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var why string
	for {
		st, why2 := b.state()
		if why2 == "" {
			return st
		}
		why = why2
		if time.Now().After(deadline) {
			t.Fatalf("the SAs did not settle into one IKE SA and one Child SA on each side, agreeing, within %v: %s", timeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *lcBed) state() (lcState, string) {
	var s lcState
	st, err := b.pl.Status()
	if err != nil {
		return s, fmt.Sprintf("our status: %v", err)
	}
	if len(st.IKESAs) != 1 || len(st.ChildSAs) != 1 || st.IKESAs[0].Established.IsZero() {
		return s, fmt.Sprintf("we hold IKE SAs %+v, Child SAs %+v", st.IKESAs, st.ChildSAs)
	}
	s.ourSPIi, s.ourSPIr = st.IKESAs[0].SPIi, st.IKESAs[0].SPIr
	s.ourIn, s.ourOut = st.ChildSAs[0].SPIIn, st.ChildSAs[0].SPIOut
	sas, err := b.ch.ListSAs()
	if err != nil {
		return s, fmt.Sprintf("strongSwan: %v", err)
	}
	if len(sas) != 1 || sas[0].State != "ESTABLISHED" || len(sas[0].Children) != 1 {
		return s, fmt.Sprintf("strongSwan holds %+v", sas)
	}
	c, ok := sas[0].Child("lc")
	if !ok {
		return s, fmt.Sprintf("strongSwan's child is not INSTALLED: %+v", sas[0].Children)
	}
	s.theirIn, s.theirOut = c.SPIIn, c.SPIOut
	s.theirSPIi, s.theirSPIr = fmt.Sprintf("%016x", sas[0].InitiatorSPI), fmt.Sprintf("%016x", sas[0].ResponderSPI)
	s.theirRemote, s.theirRemotePort = sas[0].RemoteHost, sas[0].RemotePort
	if s.ourIn != s.theirOut || s.ourOut != s.theirIn {
		return s, fmt.Sprintf("Child SA SPIs do not pair: ours in/out %08x/%08x, strongSwan's %08x/%08x", s.ourIn, s.ourOut, s.theirIn, s.theirOut)
	}
	if s.ourSPIi != s.theirSPIi || s.ourSPIr != s.theirSPIr {
		return s, fmt.Sprintf("IKE SPIs differ: ours %s:%s, strongSwan's %s:%s", s.ourSPIi, s.ourSPIr, s.theirSPIi, s.theirSPIr)
	}
	return s, ""
}

func lcPing(t *testing.T, ns *testnet.Namespace, dst string) {
	t.Helper()
	out, err := ns.Run("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", dst)
	if err != nil || !strings.Contains(out, " 3 received") {
		t.Fatalf("ping %s from %s: %v\n%s", dst, ns.Label, err, out)
	}
}

// TestStrongSwanRekey rekeys the Child SA and the IKE SA under a steady
// UDP stream (200 datagrams/s, each echoed back) between the protected
// hosts, with our daemon as the initiator of the tunnel:
//   - we-rekey-first: our salifetime=12s, ikelifetime=18s, rekeymargin=4s,
//     rekeyfuzz=0% against strongSwan's rekey_time of a minute: we must
//     rekey both SAs (our log says "rekeyed Child SA", "rekeyed IKE SA");
//   - they-rekey-first: strongSwan's child rekey_time=8s and IKE
//     rekey_time=14s against our lifetimes of a minute: strongSwan
//     rekeys both and we follow ("the peer rekeyed ...").
//
// After each, both sides hold exactly one IKE SA and one Child SA, the
// Child SA SPIs and IKE SPIs differ from the first ones and pair up
// between the sides, pings pass, and not one datagram of the stream was
// lost or duplicated either way (make-before-break).
func TestStrongSwanRekey(t *testing.T) {
	cases := []struct {
		name     string
		o        lcOpts
		childLog string
		ikeLog   string
	}{
		{"we-rekey-first", lcOpts{
			ourLines: []string{"salifetime=12s", "ikelifetime=18s", "rekeymargin=4s", "rekeyfuzz=0%"},
			swan: func(c *peers.SwanConn) {
				c.RekeyTime = "60s"
				c.Children[0].RekeyTime, c.Children[0].LifeTime = "60s", "70s"
			},
		}, ": rekeyed Child SA", ": rekeyed IKE SA"},
		{"they-rekey-first", lcOpts{
			ourLines: []string{"salifetime=60s", "ikelifetime=60s", "rekeymargin=10s"},
			swan: func(c *peers.SwanConn) {
				// rand_time defaults to over_time (IKE) and life_time -
				// rekey_time (child): larger than rekey_time it makes
				// strongSwan's schedule meaningless.
				c.RekeyTime, c.OverTime, c.Extra = "14s", "20s", map[string]string{"rand_time": "2s"}
				c.Children[0].RekeyTime, c.Children[0].LifeTime = "8s", "40s"
				c.Children[0].Extra = map[string]string{"rand_time": "2s"}
			},
		}, ": the peer rekeyed Child SA", ": the peer rekeyed IKE SA"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			b := newLCBed(t, tc.o, false)
			if err := b.pl.Up("lc"); err != nil {
				t.Fatal(err)
			}
			first := b.settled(t, 10*time.Second)
			lcPing(t, b.ours, "10.0.2.1")
			stream := testnet.StartSeqStream(t, b.ours, "10.0.1.1", b.theirs, "10.0.2.1:7001", 200, 100)
			if err := stream.WaitEchoed(10, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			for _, l := range []string{tc.childLog, tc.ikeLog} {
				if err := b.pl.WaitLog(l, 30*time.Second); err != nil {
					t.Fatalf("no rekey: %v", err)
				}
				t.Logf("%q after %v", l, time.Since(start).Round(100*time.Millisecond))
			}
			// Traffic must go on after the rekeys, over the new SAs.
			after := stream.Echoed()
			if err := stream.WaitEchoed(after+200, 5*time.Second); err != nil {
				t.Errorf("after the rekeys: %v", err)
			}
			res := stream.Stop(time.Second)
			t.Logf("UDP stream through the rekeys: %s", res)
			now := b.settled(t, 15*time.Second)
			t.Logf("Child SA ours in/out %08x/%08x -> %08x/%08x; IKE SA %s:%s -> %s:%s",
				first.ourIn, first.ourOut, now.ourIn, now.ourOut, first.ourSPIi, first.ourSPIr, now.ourSPIi, now.ourSPIr)
			if now.ourIn == first.ourIn || now.ourOut == first.ourOut || now.theirIn == first.theirIn || now.theirOut == first.theirOut {
				t.Errorf("Child SA SPIs did not all change: ours in/out %08x/%08x -> %08x/%08x, strongSwan's %08x/%08x -> %08x/%08x",
					first.ourIn, first.ourOut, now.ourIn, now.ourOut, first.theirIn, first.theirOut, now.theirIn, now.theirOut)
			}
			if now.ourSPIi == first.ourSPIi || now.ourSPIr == first.ourSPIr {
				t.Errorf("IKE SPIs did not change: %s:%s -> %s:%s", first.ourSPIi, first.ourSPIr, now.ourSPIi, now.ourSPIr)
			}
			if res.Lost() != 0 || res.DupThere != 0 || res.DupBack != 0 || res.SendErrors != 0 {
				t.Errorf("the UDP stream through the rekeys was not clean: %s", res)
			}
			lcPing(t, b.ours, "10.0.2.1")
			lcPing(t, b.theirs, "10.0.1.1")
			t.Logf("%s: %v", tc.name, time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestStrongSwanLiveness checks dead peer detection against strongSwan:
// with strongSwan's dpd_delay=2s and our dpddelay=2s, liveness checks go
// (either way: hearing one resets the other side's timer) and are
// answered, so the idle tunnel stays up; then charon is killed (SIGKILL: no Delete) and our
// dpddelay=2s, dpdtimeout=6s find the peer dead:
//   - clear: dpdaction=clear removes all our SAs, between dpdtimeout and
//     dpddelay+dpdtimeout+3s after the kill, and says so in the log;
//   - restart: a new charon is started at once in the same namespace;
//     dpdaction=restart brings the tunnel up again with it (new IKE SPIs),
//     and pings pass.
func TestStrongSwanLiveness(t *testing.T) {
	for _, action := range []string{"clear", "restart"} {
		t.Run(action, func(t *testing.T) {
			b := newLCBed(t, lcOpts{
				ourLines: []string{"dpddelay=2s", "dpdtimeout=6s", "dpdaction=" + action},
				swan:     func(c *peers.SwanConn) { c.DPDDelay = "2s" },
			}, false)
			if err := b.pl.Up("lc"); err != nil {
				t.Fatal(err)
			}
			first := b.settled(t, 10*time.Second)
			lcPing(t, b.ours, "10.0.2.1")
			// Idle for three of strongSwan's DPD intervals: it asks, we
			// answer, nobody declares anybody dead.
			time.Sleep(6500 * time.Millisecond)
			// Each side checks only when it heard nothing for its delay,
			// and hearing the other's check counts: who asks depends on
			// the phase of the two timers.
			theirs, ours := strings.Count(b.ch.Log(), "sending DPD request"), strings.Count(b.ch.Log(), "parsed INFORMATIONAL request")
			answered := strings.Count(b.ch.Log(), "parsed INFORMATIONAL response")
			t.Logf("liveness checks in 6.5 s idle: %d from strongSwan (%d answered), %d from us", theirs, answered, ours)
			if theirs+ours < 2 {
				t.Errorf("%d liveness checks in 6.5 s of idle tunnel with dpd_delay=2s and dpddelay=2s; want at least 2", theirs+ours)
			}
			if answered < theirs-1 {
				t.Errorf("we answered %d of strongSwan's %d DPD requests", answered, theirs)
			}
			if strings.Contains(b.ch.Log(), "giving up after") || strings.Contains(b.pl.Log(), "is not answering") {
				t.Fatalf("a side declared the other dead while both were up")
			}
			b.settled(t, time.Second)

			if err := syscall.Kill(b.ch.PID(), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed := time.Now()
			if action == "restart" {
				b.ch = peers.StartCharon(t, b.theirs, peers.CharonConfig{}, b.swan)
			}
			if err := b.pl.WaitLog("dpdaction="+action, 15*time.Second); err != nil {
				t.Fatalf("we did not find the dead peer: %v", err)
			}
			dead := time.Since(killed)
			t.Logf("the peer declared dead %v after the kill", dead.Round(100*time.Millisecond))
			if !strings.Contains(b.pl.Log(), "is not answering") {
				t.Errorf("our log does not say the peer is not answering")
			}
			if dead < 5*time.Second || dead > 11*time.Second {
				t.Errorf("declared dead %v after the kill; with dpddelay=2s, dpdtimeout=6s want between 5 s and 11 s", dead)
			}
			switch action {
			case "clear":
				if err := b.pl.WaitNoSAs(2 * time.Second); err != nil {
					t.Errorf("dpdaction=clear: %v", err)
				}
			case "restart":
				if _, err := b.ch.WaitEstablished("lc", 15*time.Second, "lc"); err != nil {
					t.Fatalf("dpdaction=restart: the new charon has no tunnel: %v", err)
				}
				now := b.settled(t, 10*time.Second)
				if now.ourSPIi == first.ourSPIi {
					t.Errorf("the IKE SA after the restart has the old SPIi %s", now.ourSPIi)
				}
				lcPing(t, b.ours, "10.0.2.1")
				lcPing(t, b.theirs, "10.0.1.1")
			}
		})
	}
}

// TestStrongSwanNAT puts our daemon behind the masquerading router of
// testnet.NewNAT (198.51.100.2 inside, 203.0.113.1 outside) and charon
// outside (203.0.113.2). It asserts that we find ourselves behind the NAT
// and charon sees us at the router's address; that with --keep-alive 1 the
// idle tunnel sends NAT-T keep-alives (one-octet 0xff datagrams to port
// 4500, counted on the router); and that when the NAT mapping changes
// mid-tunnel (the masquerade rule moves to ports 40000-40999 and the
// router's connection tracking is flushed) the tunnel recovers by itself
// within 15 s, on the same IKE SA and Child SA, with charon following us
// to the new port.
func TestStrongSwanNAT(t *testing.T) {
	b := newLCBed(t, lcOpts{
		ourLines: []string{"dpddelay=2s", "dpdtimeout=10s"},
		ourArgs:  []string{"--keep-alive", "1"},
	}, true)
	b.nat.Router.NFT(t, `table inet gs_lc {
	counter keepalive { }
	chain ka {
		type filter hook forward priority 0; policy accept;
		udp dport 4500 udp length 9 @th,64,8 0xff counter name "keepalive"
	}
}
`)
	if err := b.pl.Up("lc"); err != nil {
		t.Fatal(err)
	}
	first := b.settled(t, 10*time.Second)
	st, err := b.pl.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !st.IKESAs[0].NATUs {
		t.Errorf("we do not see that we are behind a NAT: %+v", st.IKESAs[0])
	}
	if first.theirRemote != b.nat.PublicAddr.String() {
		t.Errorf("strongSwan sees us at %s:%d, want the router's %v", first.theirRemote, first.theirRemotePort, b.nat.PublicAddr)
	}
	lcPing(t, b.ours, "10.0.2.1")

	// Idle: keep-alives every second.
	ka0 := b.nat.Router.MustNFTCounter(t, "inet", "gs_lc", "keepalive")
	time.Sleep(3500 * time.Millisecond)
	ka := b.nat.Router.MustNFTCounter(t, "inet", "gs_lc", "keepalive") - ka0
	t.Logf("%d NAT-T keep-alives in 3.5 s with --keep-alive 1", ka)
	if ka < 2 {
		t.Errorf("%d NAT-T keep-alives crossed the NAT in 3.5 s of idle tunnel with --keep-alive 1; want at least 2", ka)
	}

	stream := testnet.StartSeqStream(t, b.ours, "10.0.1.1", b.theirs, "10.0.2.1:7001", 50, 100)
	if err := stream.WaitEchoed(10, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	b.nat.Router.MustRun(t, "nft", "flush chain ip goswan_nat postrouting")
	b.nat.Router.MustRun(t, "nft", "add", "rule", "ip", "goswan_nat", "postrouting", "oifname", b.nat.OutsideLink.AName,
		"meta", "l4proto", "udp", "counter", "masquerade", "to", ":40000-40999")
	if err := b.nat.Router.FlushConntrack(); err != nil {
		t.Fatal(err)
	}
	moved := time.Now()
	time.Sleep(500 * time.Millisecond)
	at := stream.Echoed()
	if err := stream.WaitEchoed(at+25, 15*time.Second); err != nil {
		t.Fatalf("the tunnel did not recover from the NAT mapping change: %v\nthe router's rules: %s\nstrongSwan on it:\n%s", err,
			b.nat.Router.MustRun(t, "nft", "list", "ruleset"), grepLines(b.ch.Log(), "changed", "NAT", "updat", "rekey", "CHILD_SA"))
	}
	t.Logf("traffic came back %v after the NAT mapping changed", time.Since(moved).Round(100*time.Millisecond))
	res := stream.Stop(500 * time.Millisecond)
	t.Logf("UDP stream across the change: %s", res)
	now := b.settled(t, 5*time.Second)
	if now.theirRemotePort < 40000 || now.theirRemotePort > 40999 {
		t.Errorf("strongSwan still sends to %s:%d; the new mapping is on ports 40000-40999", now.theirRemote, now.theirRemotePort)
	}
	// The IKE SA must be the same one, followed to the new port. The
	// Child SA may have been rekeyed by strongSwan: kernel-libipsec cannot
	// move an SA to a new port, so charon rekeys it after a mapping change.
	if now.ourSPIi != first.ourSPIi {
		t.Errorf("the IKE SA was renegotiated (IKE SPIi %s -> %s) rather than followed", first.ourSPIi, now.ourSPIi)
	}
	if now.ourIn != first.ourIn && !strings.Contains(b.pl.Log(), "the peer rekeyed Child SA") {
		t.Errorf("the Child SA changed (%08x -> %08x) without a rekey by the peer", first.ourIn, now.ourIn)
	}
	lcPing(t, b.ours, "10.0.2.1")
	lcPing(t, b.theirs, "10.0.1.1")
}

// grepLines returns the lines of text that hold any of words, for
// failure messages.
func grepLines(text string, words ...string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	if len(out) > 80 {
		out = out[len(out)-80:]
	}
	return strings.Join(out, "\n")
}
