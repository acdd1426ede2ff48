package peers

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"goswan/internal/testnet"
)

// charonPair builds two namespaces "l" (192.0.2.1, 10.0.1.1 on lo) and "r"
// (192.0.2.2, 10.0.2.1 on lo) and returns their swanctl connections.
func charonConns() (l, r SwanConn) {
	mk := func(local, remote, lid, rid, lts, rts string) SwanConn {
		return SwanConn{
			Name: "t", LocalAddrs: []string{local}, RemoteAddrs: []string{remote},
			LocalID: lid, RemoteID: rid, PSK: "goswan-interop-test-psk-0123456789",
			Proposals: []string{"aes128gcm16-prfsha256-ecp256"}, Encap: true,
			Children: []SwanChild{{
				Name: "c", LocalTS: []string{lts}, RemoteTS: []string{rts},
				ESPProposals: []string{"aes128gcm16"}, Mode: "tunnel", StartAction: "none",
			}},
		}
	}
	return mk("192.0.2.1", "192.0.2.2", "l.example", "r.example", "10.0.1.0/24", "10.0.2.0/24"),
		mk("192.0.2.2", "192.0.2.1", "r.example", "l.example", "10.0.2.0/24", "10.0.1.0/24")
}

func TestCharonToCharon(t *testing.T) {
	RequireCharon(t)
	RequireTshark(t)
	testnet.Require(t, "ping")
	start := time.Now()

	nl, nr, veth := testnet.Pair(t, "l", "r")
	nl.AddLoopbackAddr(t, netip.MustParseAddr("10.0.1.1"))
	nr.AddLoopbackAddr(t, netip.MustParseAddr("10.0.2.1"))
	cl, cr := charonConns()
	left := StartCharon(t, nl, CharonConfig{}, cl)
	right := StartCharon(t, nr, CharonConfig{}, cr)
	capture := StartCapture(t, nl, veth.AName, "udp")

	if err := left.Initiate("c"); err != nil {
		t.Fatalf("initiate: %v", err)
	}
	lsa, err := left.WaitEstablished("t", 10*time.Second, "c")
	if err != nil {
		t.Fatal(err)
	}
	rsa, err := right.WaitEstablished("t", 10*time.Second, "c")
	if err != nil {
		t.Fatal(err)
	}
	if !lsa.Initiator || rsa.Initiator {
		t.Errorf("initiator flags: left %v, right %v", lsa.Initiator, rsa.Initiator)
	}
	if lsa.InitiatorSPI == 0 || lsa.InitiatorSPI != rsa.InitiatorSPI || lsa.ResponderSPI != rsa.ResponderSPI {
		t.Errorf("IKE SPIs differ: left %x/%x, right %x/%x", lsa.InitiatorSPI, lsa.ResponderSPI, rsa.InitiatorSPI, rsa.ResponderSPI)
	}
	const wantIKE = "AES_GCM_16-128/PRF_HMAC_SHA2_256/ECP_256"
	if lsa.Proposal != wantIKE || rsa.Proposal != wantIKE {
		t.Errorf("IKE proposal: left %q, right %q, want %q", lsa.Proposal, rsa.Proposal, wantIKE)
	}
	if lsa.LocalID != "l.example" || lsa.RemoteID != "r.example" {
		t.Errorf("left IDs: %q / %q", lsa.LocalID, lsa.RemoteID)
	}
	lc, _ := lsa.Child("c")
	rc, _ := rsa.Child("c")
	if lc.SPIIn == 0 || lc.SPIIn != rc.SPIOut || lc.SPIOut != rc.SPIIn {
		t.Errorf("child SPIs do not pair up: left in %08x out %08x, right in %08x out %08x", lc.SPIIn, lc.SPIOut, rc.SPIIn, rc.SPIOut)
	}
	if lc.Proposal != "AES_GCM_16-128" || !lc.Encap || lc.Mode != "TUNNEL" {
		t.Errorf("left child: proposal %q encap %v mode %q", lc.Proposal, lc.Encap, lc.Mode)
	}
	if strings.Join(lc.LocalTS, ",") != "10.0.1.0/24" || strings.Join(lc.RemoteTS, ",") != "10.0.2.0/24" {
		t.Errorf("left child TS: %v === %v", lc.LocalTS, lc.RemoteTS)
	}

	// Traffic through the tunnel (kernel-libipsec: TUN ipsec0, routes in
	// table 220 with source 10.0.1.1).
	if out, err := nl.Run("ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", "10.0.1.1", "10.0.2.1"); err != nil {
		t.Fatalf("ping through the tunnel: %v\n%s\nroutes (table 220): %s", err, out, nl.MustRun(t, "ip", "route", "show", "table", "220"))
	}
	lsa2, err := left.WaitEstablished("t", 2*time.Second, "c")
	if err != nil {
		t.Fatal(err)
	}
	rsa2, err := right.WaitEstablished("t", 2*time.Second, "c")
	if err != nil {
		t.Fatal(err)
	}
	lc2, _ := lsa2.Child("c")
	rc2, _ := rsa2.Child("c")
	if lc2.PacketsOut < 3 || lc2.PacketsIn < 3 || lc2.BytesOut <= lc.BytesOut || lc2.BytesIn <= lc.BytesIn {
		t.Errorf("left child counters did not grow: before in %d/out %d bytes, after in %d (%d pkts)/out %d (%d pkts)",
			lc.BytesIn, lc.BytesOut, lc2.BytesIn, lc2.PacketsIn, lc2.BytesOut, lc2.PacketsOut)
	}
	if rc2.BytesIn != lc2.BytesOut || rc2.PacketsIn != lc2.PacketsOut {
		t.Errorf("right received %d bytes/%d packets, left sent %d/%d", rc2.BytesIn, rc2.PacketsIn, lc2.BytesOut, lc2.PacketsOut)
	}

	// Terminate from the right side: both agree nothing remains.
	if err := right.Terminate("t"); err != nil {
		t.Fatalf("terminate: %v", err)
	}
	for _, c := range []*Charon{left, right} {
		if err := c.WaitNoSAs(5 * time.Second); err != nil {
			t.Error(err)
		}
	}

	// Wireshark's verdict on strongSwan's own messages: clean.
	if err := capture.Stop(); err != nil {
		t.Fatal(err)
	}
	rep, err := CheckISAKMP(capture.Path, Dissect{})
	if err != nil {
		t.Fatal(err)
	}
	// IKE_SA_INIT, IKE_AUTH and INFORMATIONAL (delete): request and response each.
	if rep.Packets < 6 {
		t.Errorf("tshark saw %d ISAKMP packets, want at least 6:\n%s", rep.Packets, rep.Summary)
	}
	if len(rep.Problems) > 0 {
		t.Errorf("tshark found problems in strongSwan's messages:\n%s", strings.Join(rep.Problems, "\n"))
	}
	for _, want := range []string{"IKE_SA_INIT", "IKE_AUTH", "INFORMATIONAL"} {
		if !strings.Contains(rep.Summary, want) {
			t.Errorf("no %s in the capture:\n%s", want, rep.Summary)
		}
	}
	t.Logf("charon↔charon: %d ISAKMP packets, %v", rep.Packets, time.Since(start))
}

func TestLibreswanPlutoStarts(t *testing.T) {
	RequireLibreswan(t)
	ns := testnet.NewNamespace(t, "p")
	ns.AddLoopbackAddr(t, netip.MustParseAddr("192.0.2.9"))
	l := StartLibreswan(t, ns, LibreswanConn{
		Name: "solo", Left: "192.0.2.9", Right: "192.0.2.10", LeftID: "@p.example", RightID: "@q.example",
		PSK: "goswan-interop-test-psk-0123456789", IKE: "aes_gcm128-sha2_256;dh19", ESP: "aes_gcm128",
	})
	st, err := l.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Loaded != 1 || len(st.Conns) != 1 || st.Conns[0] != "solo" || st.IKESAs != 0 {
		t.Fatalf("ipsec status: conns %v, loaded %d, IKE SAs %d\n%s", st.Conns, st.Loaded, st.IKESAs, st.Raw)
	}
	if !strings.Contains(st.Raw, "192.0.2.9") {
		t.Errorf("ipsec status does not mention our address:\n%s", st.Raw)
	}
}

func TestLibreswanCharonIKEAuth(t *testing.T) {
	RequireLibreswan(t)
	RequireCharon(t)
	RequireTshark(t)
	nl, nr, veth := testnet.Pair(t, "sw", "ls")
	nl.AddLoopbackAddr(t, netip.MustParseAddr("10.0.1.1"))
	nr.AddLoopbackAddr(t, netip.MustParseAddr("10.0.2.1"))
	cl, _ := charonConns()
	cl.RemoteID = "r.example"
	charon := StartCharon(t, nl, CharonConfig{}, cl)
	pluto := StartLibreswan(t, nr, LibreswanConn{
		Name: "t", Left: "192.0.2.2", Right: "192.0.2.1", LeftID: "@r.example", RightID: "@l.example",
		LeftSubnet: "10.0.2.0/24", RightSubnet: "10.0.1.0/24", PSK: cl.PSK,
		IKE: "aes_gcm128-sha2_256;dh19", ESP: "aes_gcm128", Encapsulation: "yes",
	})
	capture := StartCapture(t, nl, veth.AName, "udp")

	// strongSwan initiates; pluto answers IKE_AUTH, then cannot add its
	// ESP SA on this kernel and refuses the child (TS_UNACCEPTABLE), but
	// both have authenticated each other.
	if err := charon.InitiateAsync("c"); err != nil {
		t.Fatal(err)
	}
	ev, err := pluto.WaitIKEAuth("t", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Role != "responder" {
		t.Errorf("pluto's role: %q (%s)", ev.Role, ev.Line)
	}
	sa, err := charon.WaitEstablished("t", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if sa.RemoteID != "r.example" || sa.Proposal != "AES_GCM_16-128/PRF_HMAC_SHA2_256/ECP_256" {
		t.Errorf("charon's IKE SA with pluto: remote %q, proposal %q", sa.RemoteID, sa.Proposal)
	}
	if err := capture.Stop(); err != nil {
		t.Fatal(err)
	}
	rep, err := CheckISAKMP(capture.Path, Dissect{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Packets < 4 || len(rep.Problems) > 0 {
		t.Errorf("tshark: %d ISAKMP packets, problems:\n%s\n%s", rep.Packets, strings.Join(rep.Problems, "\n"), rep.Summary)
	}
}
