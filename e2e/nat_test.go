//go:build linux

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"goswan/internal/peers"
	"goswan/internal/testnet"
)

// TestNATMappingChange runs west behind the masquerading router of
// testnet.NewNAT (198.51.100.2 inside, 203.0.113.1 outside) and east
// outside (203.0.113.2, conn right=%any), both on the user-space data
// plane, with --keep-alive 1 and dpddelay=2s on west. It asserts that both
// detect the NAT (west: we are behind one; east: the peer is); that the
// idle tunnel sends NAT-T keep-alives from behind the NAT (one-octet
// 0xff datagrams to port 4500, counted on the router); and that when the
// mapping changes mid-tunnel (the masquerade moves to ports 40000-40999
// and the router's connection tracking is flushed) traffic flows again
// within 10 s on the same IKE SA and Child SA, east having followed west
// to its new public port (and said so in its log).
func TestNATMappingChange(t *testing.T) {
	testnet.Require(t, "ping", "nft")
	n := testnet.NewNAT(t, "n")
	westConf := "conn nat\n\tleft=198.51.100.2\n\tleftid=@west\n\tleftsubnet=10.0.1.0/24\n\tleftsourceip=10.0.1.1\n" +
		"\tright=203.0.113.2\n\trightid=@east\n\trightsubnet=10.0.2.0/24\n" +
		"\tauthby=secret\n\tike=" + ikeProposal + "\n\tesp=aes_gcm128\n\tdpddelay=2s\n\tdpdtimeout=10s\n\tretransmit-timeout=10s\n\tauto=add\n"
	eastConf := "conn nat\n\tleft=203.0.113.2\n\tleftid=@east\n\tleftsubnet=10.0.2.0/24\n\tleftsourceip=10.0.2.1\n" +
		"\tright=%any\n\trightid=@west\n\trightsubnet=10.0.1.0/24\n" +
		"\tauthby=secret\n\tike=" + ikeProposal + "\n\tesp=aes_gcm128\n\tretransmit-timeout=10s\n\tauto=add\n"
	pe := lcDaemon(t, n.Outside, "east", n.OutsideAddr.String(), eastConf, []string{"--use-userspace"}, nil)
	pw := lcDaemon(t, n.Inside, "west", n.InsideAddr.String(), westConf, []string{"--use-userspace", "--keep-alive", "1"}, nil)
	n.Router.NFT(t, `table inet gs_nat {
	counter keepalive { }
	chain ka {
		type filter hook forward priority 0; policy accept;
		udp dport 4500 udp length 9 @th,64,8 0xff counter name "keepalive"
	}
}
`)
	if err := pw.Up("nat"); err != nil {
		t.Fatal(err)
	}
	settledPair(t, pw, pe, 5*time.Second)
	stw, err := pw.Status()
	if err != nil {
		t.Fatal(err)
	}
	ste, err := pe.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !stw.IKESAs[0].NATUs || !ste.IKESAs[0].NATPeer {
		t.Errorf("NAT not detected: west NATUs=%v, east NATPeer=%v", stw.IKESAs[0].NATUs, ste.IKESAs[0].NATPeer)
	}
	first := ste.IKESAs[0]
	t.Logf("east sees west at %v", eastPeer(t, pe))
	ping(t, n.Inside, "10.0.2.1", 2)

	ka0 := n.Router.MustNFTCounter(t, "inet", "gs_nat", "keepalive")
	time.Sleep(3500 * time.Millisecond)
	ka := n.Router.MustNFTCounter(t, "inet", "gs_nat", "keepalive") - ka0
	t.Logf("%d NAT-T keep-alives in 3.5 s with --keep-alive 1", ka)
	if ka < 2 {
		t.Errorf("%d NAT-T keep-alives crossed the NAT in 3.5 s of idle tunnel with --keep-alive 1; want at least 2", ka)
	}

	stream := testnet.StartSeqStream(t, n.Inside, "10.0.1.1", n.Outside, "10.0.2.1:7004", 50, 100)
	if err := stream.WaitEchoed(10, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	n.Router.MustRun(t, "nft", "flush", "chain", "ip", "goswan_nat", "postrouting")
	n.Router.MustRun(t, "nft", "add", "rule", "ip", "goswan_nat", "postrouting", "oifname", n.OutsideLink.AName,
		"meta", "l4proto", "udp", "counter", "masquerade", "to", ":40000-40999")
	if err := n.Router.FlushConntrack(); err != nil {
		t.Fatal(err)
	}
	moved := time.Now()
	time.Sleep(500 * time.Millisecond)
	at := stream.Echoed()
	if err := stream.WaitEchoed(at+25, 10*time.Second); err != nil {
		t.Fatalf("the tunnel did not recover from the NAT mapping change: %v; east sees west at %v", err, eastPeer(t, pe))
	}
	t.Logf("traffic came back %v after the NAT mapping changed", time.Since(moved).Round(100*time.Millisecond))
	res := stream.Stop(500 * time.Millisecond)
	t.Logf("UDP stream across the change: %s", res)
	settledPair(t, pw, pe, 5*time.Second)
	eps, err := pe.Endpoints()
	if err != nil || len(eps) != 1 {
		t.Fatalf("east's IKE SAs: %+v (%v)", eps, err)
	}
	now := eps[0]
	if now.SPIi != first.SPIi {
		t.Errorf("the IKE SA was renegotiated (%s -> %s) rather than followed", first.SPIi, now.SPIi)
	}
	if p := now.Remote.Port(); p < 40000 || p > 40999 || now.Remote.Addr() != n.PublicAddr {
		t.Errorf("east sends to %v; the new mapping is %v:40000-40999", now.Remote, n.PublicAddr)
	}
	if !strings.Contains(pe.Log(), "NAT mapping changed") {
		t.Errorf("east's log does not say it followed the new mapping")
	}
	ping(t, n.Inside, "10.0.2.1", 3)
	ping(t, n.Outside, "10.0.1.1", 3)
}

func eastPeer(t *testing.T, p *peers.Pluto) string {
	eps, err := p.Endpoints()
	if err != nil || len(eps) == 0 {
		return fmt.Sprintf("(no IKE SA: %v)", err)
	}
	return eps[0].Remote.String()
}
