//go:build linux

package e2e

import (
	"strings"
	"testing"
	"time"

	"goswan/internal/testnet"
)

// soakDuration is how long TestRekeySoak keeps traffic and rekeys going.
const soakDuration = 45 * time.Second

// TestRekeySoak runs two of our daemons on the user-space data plane with
// a Child SA lifetime of 6 s (rekeymargin=2s, rekeyfuzz=0%: a rekey every
// 4 s) and an IKE SA lifetime of 20 s, and keeps a UDP stream of 200
// numbered datagrams per second, each echoed back, going through the
// tunnel for 45 s. It asserts that not one datagram was lost or
// duplicated either way, that at least 9 Child SA rekeys and 2 IKE SA
// rekeys happened, that each side ends with exactly one IKE SA and one
// Child SA, agreeing, and that no Child SA reached its hard lifetime.
func TestRekeySoak(t *testing.T) {
	conf := lcConn("soak", "salifetime=6s", "ikelifetime=20s", "rekeymargin=2s", "rekeyfuzz=0%", "retransmit-timeout=5s")
	lp := newLCPair(t, conf, conf, []string{"--use-userspace"}, []string{"--use-userspace"}, nil)
	if err := lp.pw.Up("soak"); err != nil {
		t.Fatal(err)
	}
	settledPair(t, lp.pw, lp.pe, 5*time.Second)
	ping(t, lp.west, "10.0.2.1", 2)
	udp0w, udp0e := readUDPCounters(t, lp.west), readUDPCounters(t, lp.east)
	stream := testnet.StartSeqStream(t, lp.west, "10.0.1.1", lp.east, "10.0.2.1:7003", 200, 200)
	start := time.Now()
	for time.Since(start) < soakDuration {
		time.Sleep(time.Second)
		if lp.pw.Exited() || lp.pe.Exited() {
			t.Fatalf("a daemon died during the soak")
		}
	}
	res := stream.Stop(time.Second)
	t.Logf("UDP stream: %s", res)
	log := lp.pw.Log() + lp.pe.Log()
	childRekeys := strings.Count(log, "soak: rekeyed Child SA")
	ikeRekeys := strings.Count(log, "soak: rekeyed IKE SA")
	t.Logf("%d Child SA rekeys, %d IKE SA rekeys in %v", childRekeys, ikeRekeys, soakDuration)
	if childRekeys < 9 || ikeRekeys < 2 {
		t.Errorf("%d Child SA rekeys and %d IKE SA rekeys in %v; want at least 9 and 2", childRekeys, ikeRekeys, soakDuration)
	}
	if n := strings.Count(log, "reached its hard lifetime") + strings.Count(log, "reached its lifetime"); n != 0 {
		t.Errorf("%d Child SAs reached their hard lifetime instead of being rekeyed", n)
	}
	if res.Lost() != 0 || res.DupThere != 0 || res.DupBack != 0 || res.SendErrors != 0 {
		dw, de := readUDPCounters(t, lp.west).sub(udp0w), readUDPCounters(t, lp.east).sub(udp0e)
		t.Errorf("the stream through the rekeys was not clean: %s\nUDP receive errors during it: west %+v, east %+v", res, dw, de)
	}
	settledPair(t, lp.pw, lp.pe, 10*time.Second)
}
