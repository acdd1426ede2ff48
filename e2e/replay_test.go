//go:build linux

package e2e

import (
	"encoding/binary"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"goswan/internal/peers"
)

// TestUserspaceReplayAndForgery captures one ESP-in-UDP packet that west
// sends to east, then, from west's namespace and west's address and port
// (the frame is re-sent as captured with an AF_PACKET socket on west's
// veth end), sends east:
//   - the same packet again (a replay), and
//   - a forgery: the same packet with its sequence number moved 2^20
//     ahead (so the replay window lets it through to the ICV check) and
//     one bit of its ciphertext flipped.
//
// For each it asserts that east's kernel delivered the datagram to the
// daemon's socket (UDP InDatagrams grew, no checksum error), that east
// did not open it (its Child SA's inbound packet and byte counters, in
// status and trafficstatus, did not move) and sent nothing in answer,
// and finally that the tunnel still carries pings both ways and a TCP
// echo, which also shows that the forgery did not advance the replay
// window. The engine's per-reason drop counters are not exposed by pluto
// (see reportDropCounters); the test logs what status shows.
func TestUserspaceReplayAndForgery(t *testing.T) {
	for _, esp := range []string{"aes_gcm128", "aes128-sha2_256"} {
		t.Run(esp, func(t *testing.T) {
			tb := newUserspaceTestbed(t, outer4, inner4, esp, 256<<10)
			tb.up(t)
			spi := tb.westC.SPIOut
			tb.cap.keep(func(fi frameInfo, frame []byte) bool {
				return fi.kind == "esp" && fi.spi == spi && len(fi.spis) == 1 && fi.outgoing && len(frame) <= 1514
			})
			ping(t, tb.west, inner4.eastHost, 1)
			tb.cap.settle(50*time.Millisecond, time.Second)
			frames := tb.cap.keptFrames()
			tb.cap.keep(nil)
			if len(frames) == 0 {
				t.Fatalf("captured no ESP packet with SPI %08x from west (%s)", spi, tb.cap.summary())
			}
			orig := frames[0]
			espOff := 14 + int(orig[14]&0x0f)*4 + 8
			seq := binary.BigEndian.Uint32(orig[espOff+4:])
			t.Logf("captured ESP SPI %08x seq %d, %d bytes of ESP", spi, seq, len(orig)-espOff)
			statusBefore := statusCounters(t, tb.pe)

			replay := append([]byte(nil), orig...)
			tb.injectAndCheckDropped(t, "the replayed packet", replay)

			forged := append([]byte(nil), orig...)
			binary.BigEndian.PutUint32(forged[espOff+4:], seq+1<<20)
			forged[espOff+8+(len(forged)-espOff-8)/2] ^= 0x10
			tb.injectAndCheckDropped(t, "the forged packet (sequence number 2^20 ahead, one ciphertext bit flipped)", forged)

			reportDropCounters(t, statusBefore, statusCounters(t, tb.pe))

			// The tunnel works on, in both directions: the forgery's
			// sequence number did not move the replay window.
			ping(t, tb.west, inner4.eastHost, 3)
			ping(t, tb.east, inner4.westHost, 3)
			echo := tb.east.StartTCPEcho(t, hostPort(inner4.eastHost, 7000))
			if err := tb.west.TCPEcho(echo.String(), tb.payload, 30*time.Second); err != nil {
				t.Fatalf("TCP through the tunnel after the replay and the forgery: %v", err)
			}
			w, e := stableCounters(t, tb.pw, tb.pe)
			checkTrafficStatus(t, "west", tb.pw, w)
			checkTrafficStatus(t, "east", tb.pe, e)
			if w.PacketsOut != e.PacketsIn || e.PacketsOut != w.PacketsIn || w.BytesOut != e.BytesIn || e.BytesOut != w.BytesIn {
				t.Errorf("after the test traffic the counters disagree (the injected packets must not count): west %+v, east %+v", w, e)
			}
		})
	}
}

// injectAndCheckDropped sends frame (checksums fixed) out of west's veth
// end and checks that east received the datagram but opened nothing.
func (tb *testbed) injectAndCheckDropped(t *testing.T, what string, frame []byte) {
	t.Helper()
	_, e0 := stableCounters(t, tb.pw, tb.pe)
	u0 := readUDPCounters(t, tb.east)
	fixUDPChecksum(frame)
	if err := inject(tb.west, tb.veth.AName, frame); err != nil {
		t.Fatalf("injecting %s: %v", what, err)
	}
	var du udpCounters
	for deadline := time.Now().Add(3 * time.Second); ; {
		du = readUDPCounters(t, tb.east).sub(u0)
		if du.InDatagrams > 0 || du.InErrors > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached a socket in east (UDP counters unchanged)", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if du.InErrors != 0 || du.InCsumErrors != 0 {
		t.Fatalf("east's kernel dropped %s itself (%+v): the test built a bad datagram", what, du)
	}
	time.Sleep(100 * time.Millisecond) // the daemon reads and drops it
	_, e1 := stableCounters(t, tb.pw, tb.pe)
	if e1.PacketsIn != e0.PacketsIn || e1.BytesIn != e0.BytesIn {
		t.Errorf("east opened %s: inbound counters went from %d packets / %d bytes to %d / %d",
			what, e0.PacketsIn, e0.BytesIn, e1.PacketsIn, e1.BytesIn)
	}
	if e1.PacketsOut != e0.PacketsOut {
		t.Errorf("east sent %d packets through the tunnel after %s", e1.PacketsOut-e0.PacketsOut, what)
	}
	checkTrafficStatus(t, "east", tb.pe, e1)
}

// statusCounters returns the "counters" object of "ipsec status --json"
// (and any other top-level object that is not a list of SAs or conns), as
// flat "path=value" lines.
func statusCounters(t *testing.T, p *peers.Pluto) map[string]string {
	t.Helper()
	m, err := p.StatusRaw()
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, v := range x {
				walk(prefix+"."+k, v)
			}
		default:
			b, _ := json.Marshal(x)
			out[prefix] = string(b)
		}
	}
	for k, v := range m {
		switch k {
		case "ike_sas", "child_sas", "connections", "global":
			continue
		}
		walk(k, v)
	}
	return out
}

// reportDropCounters checks pluto's ESP drop counters ("ipsec status
// --json": esp.drops by reason, esp.dataplane.InDrops) across the
// injections: the replay must be counted as a replay and the forgery as an
// authentication failure.
func reportDropCounters(t *testing.T, before, after map[string]string) {
	t.Helper()
	grew := func(k string) bool {
		b, _ := strconv.ParseUint(before[k], 10, 64)
		a, err := strconv.ParseUint(after[k], 10, 64)
		return err == nil && a > b
	}
	for _, k := range []string{"esp.drops.replay", "esp.drops.authentication failed", "esp.dataplane.InDrops"} {
		if !grew(k) {
			t.Errorf("%s did not grow with a replayed and a forged packet (before %q, after %q)", k, before[k], after[k])
		}
	}
}
