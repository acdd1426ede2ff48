package interop

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"goswan/internal/peers"
	"goswan/internal/testnet"
)

// Every message the daemon sends must be decoded by Wireshark's dissector
// (tshark) with no Malformed or Expert Info (Error…) items. These tests
// capture whole exchanges on the veth in our namespace and check every
// ISAKMP frame in them (the peer's too: a problem in strongSwan's messages
// would show up the same way, and none is expected).
//
// tshark cannot see inside the encrypted payload (SK) without the keys, so
// the check covers the IKE header, IKE_SA_INIT's payloads in full, and the
// framing of the encrypted messages (SK payload lengths, the non-ESP marker
// on port 4500).

// msgKey identifies one message, so that a retransmission (the same bytes
// again) counts once.
type msgKey struct {
	src                 netip.Addr
	exchange            int
	response, initiator bool
	id                  uint32
	spii, spir          string
	notify              string
	length, keGroup     int
}

// exchangeCounts counts the distinct messages each address sent, by
// exchange and request/response, e.g. "192.0.2.1 IKE_SA_INIT request" → 2.
func exchangeCounts(msgs []peers.ISAKMPMessage) map[string]int {
	seen := map[msgKey]bool{}
	counts := map[string]int{}
	for _, m := range msgs {
		k := msgKey{m.Src.Addr(), m.Exchange, m.Response, m.Initiator, m.MessageID, m.SPIi, m.SPIr, fmt.Sprint(m.Notify), m.Length, m.KEGroup}
		if seen[k] {
			continue
		}
		seen[k] = true
		counts[countKey(m.Src.Addr().String(), m.Exchange, m.Response)]++
	}
	return counts
}

func countKey(addr string, exchange int, response bool) string {
	kind := "request"
	if response {
		kind = "response"
	}
	return addr + " " + peers.ExchangeName(exchange) + " " + kind
}

// checkCapture stops c, checks tshark finds no problem in it and returns
// its IKE messages.
func checkCapture(t *testing.T, c *peers.Capture) []peers.ISAKMPMessage {
	t.Helper()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	rep, err := peers.CheckISAKMP(c.Path, peers.Dissect{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 {
		t.Errorf("tshark found problems:\n%s\n%s", strings.Join(rep.Problems, "\n"), rep.Summary)
	}
	msgs, err := peers.ISAKMPMessages(c.Path, peers.Dissect{})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != rep.Packets {
		t.Errorf("%d ISAKMP frames listed, %d dissected", len(msgs), rep.Packets)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("capture %s:\n%s", c.Path, rep.Summary)
		}
	})
	return msgs
}

// checkCounts compares exchangeCounts with want (keys as countKey makes
// them); keys not in want must not occur.
func checkCounts(t *testing.T, msgs []peers.ISAKMPMessage, want map[string]int) {
	t.Helper()
	got := exchangeCounts(msgs)
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d distinct messages in the capture, want %d", k, got[k], n)
		}
	}
	for k, n := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: %d unexpected messages in the capture", k, n)
		}
	}
}

// checkTransport: IKE_SA_INIT runs on port 500; everything after it on
// 4500 with the non-ESP marker (UDP encapsulation is forced on both ends),
// which tshark must have recognised to decode the frame as ISAKMP at all.
func checkTransport(t *testing.T, msgs []peers.ISAKMPMessage) {
	t.Helper()
	for _, m := range msgs {
		if m.Exchange == peers.ExchIKESAInit {
			if m.Src.Port() != 500 || m.Dst.Port() != 500 || m.NonESPMarker {
				t.Errorf("%v: want port 500 without the non-ESP marker", m)
			}
		} else if m.Src.Port() != 4500 || m.Dst.Port() != 4500 || !m.NonESPMarker {
			t.Errorf("%v: want port 4500 with the non-ESP marker (marker seen: %v)", m, m.NonESPMarker)
		}
	}
}

// checkFlags: every message from addr carries the I flag iff addr is the
// IKE SA's original initiator.
func checkFlags(t *testing.T, msgs []peers.ISAKMPMessage, addr string, initiator bool) {
	t.Helper()
	for _, m := range msgs {
		if m.Src.Addr().String() == addr && m.Initiator != initiator {
			t.Errorf("%v: I flag %v, want %v", m, m.Initiator, initiator)
		}
	}
}

// TestTsharkStrongSwan captures our daemon's exchanges with strongSwan, as
// initiator and as responder, each with an INVALID_KE_PAYLOAD round
// (strongSwan's KE group is not the one the responder wants), IKE_AUTH on
// 4500 and an INFORMATIONAL Delete, and checks every frame.
func TestTsharkStrongSwan(t *testing.T) {
	peers.RequireTshark(t)
	us, them := plan4.our, plan4.their
	t.Run("we-initiate", func(t *testing.T) {
		// We offer DH19 first (and so send a DH19 KE); strongSwan takes
		// only curve25519 and answers INVALID_KE_PAYLOAD.
		pc := proposalCase{name: "invalid-ke", ourIKE: "aes_gcm256-sha2_256-dh19+dh31", ourESP: "aes_gcm256",
			theirIKE: "aes256gcm16-prfsha256-curve25519", theirESP: "aes256gcm16", fqdn: true, wantTheirEncr: "AES_GCM_16"}
		tb := setupPlan(t, pc, "add", plan4)
		c := peers.StartCapture(t, tb.ours, tb.veth.AName, "udp")
		if err := tb.pl.Up("interop"); err != nil {
			t.Fatal(err)
		}
		checkEstablished(t, tb.pl, tb.ch, pc, true)
		if err := tb.pl.WaitLog("(INVALID_KE_PAYLOAD); trying again", time.Second); err != nil {
			t.Error(err)
		}
		// strongSwan deletes; we answer.
		if err := tb.ch.Terminate("interop"); err != nil {
			t.Fatal(err)
		}
		if err := tb.pl.WaitNoSAs(5 * time.Second); err != nil {
			t.Error(err)
		}
		msgs := checkCapture(t, c)
		checkCounts(t, msgs, map[string]int{
			countKey(us, peers.ExchIKESAInit, false):       2, // DH19, then DH31
			countKey(them, peers.ExchIKESAInit, true):      2, // INVALID_KE_PAYLOAD, then the real one
			countKey(us, peers.ExchIKEAuth, false):         1,
			countKey(them, peers.ExchIKEAuth, true):        1,
			countKey(them, peers.ExchInformational, false): 1, // Delete
			countKey(us, peers.ExchInformational, true):    1,
		})
		checkTransport(t, msgs)
		checkFlags(t, msgs, us, true)
		checkInvalidKE(t, msgs, them, 19, 31)
	})
	t.Run("we-respond", func(t *testing.T) {
		// strongSwan offers ECP-256 first (and sends its KE), then
		// curve25519; we take only curve25519 and answer
		// INVALID_KE_PAYLOAD.
		pc := proposalCase{name: "invalid-ke", ourIKE: "aes_gcm256-sha2_256-dh31", ourESP: "aes_gcm256",
			theirIKE: "aes256gcm16-prfsha256-ecp256-curve25519", theirESP: "aes256gcm16", fqdn: true, wantTheirEncr: "AES_GCM_16"}
		tb := setupPlan(t, pc, "add", plan4)
		c := peers.StartCapture(t, tb.ours, tb.veth.AName, "udp")
		if err := tb.ch.Initiate("interop"); err != nil {
			t.Fatalf("strongSwan initiate: %v", err)
		}
		checkEstablished(t, tb.pl, tb.ch, pc, false)
		if err := tb.pl.WaitLog("(INVALID_KE_PAYLOAD)", time.Second); err != nil {
			t.Error(err)
		}
		// We delete, as the IKE SA's responder.
		if err := tb.pl.Down("interop"); err != nil {
			t.Fatal(err)
		}
		if err := tb.ch.WaitNoSAs(5 * time.Second); err != nil {
			t.Error(err)
		}
		if err := tb.pl.WaitNoSAs(5 * time.Second); err != nil {
			t.Error(err)
		}
		msgs := checkCapture(t, c)
		checkCounts(t, msgs, map[string]int{
			countKey(them, peers.ExchIKESAInit, false):    2,
			countKey(us, peers.ExchIKESAInit, true):       2,
			countKey(them, peers.ExchIKEAuth, false):      1,
			countKey(us, peers.ExchIKEAuth, true):         1,
			countKey(us, peers.ExchInformational, false):  1, // Delete
			countKey(them, peers.ExchInformational, true): 1,
		})
		checkTransport(t, msgs)
		checkFlags(t, msgs, us, false)
		checkInvalidKE(t, msgs, us, 19, 31)
	})
}

// checkInvalidKE: the first IKE_SA_INIT response, from responder, is
// INVALID_KE_PAYLOAD alone (RFC 7296 §1.2: no SPI of the responder's), and
// the last is a full one; the first request's KE is of group firstKE, the
// last's of lastKE.
func checkInvalidKE(t *testing.T, msgs []peers.ISAKMPMessage, responder string, firstKE, lastKE int) {
	t.Helper()
	var req, resp []peers.ISAKMPMessage
	for _, m := range msgs {
		if m.Exchange != peers.ExchIKESAInit {
			continue
		}
		if m.Response && m.Src.Addr().String() == responder {
			resp = append(resp, m)
		} else if !m.Response && m.Dst.Addr().String() == responder {
			req = append(req, m)
		}
	}
	if len(req) < 2 || len(resp) < 2 {
		t.Fatalf("IKE_SA_INIT with %s: requests %v, responses %v", responder, req, resp)
	}
	if first := resp[0]; len(first.Notify) != 1 || !first.HasNotify(peers.NotifyInvalidKE) || first.SPIr != "0000000000000000" || first.KEGroup != 0 {
		t.Errorf("first IKE_SA_INIT response: %v; want INVALID_KE_PAYLOAD alone with a zero responder SPI", first)
	}
	if last := resp[len(resp)-1]; last.HasNotify(peers.NotifyInvalidKE) || !last.HasNotify(peers.NotifyNATDSource) || last.SPIr == "0000000000000000" || last.KEGroup != lastKE {
		t.Errorf("last IKE_SA_INIT response: %v; want a full response with KE group %d", last, lastKE)
	}
	if req[0].KEGroup != firstKE || req[len(req)-1].KEGroup != lastKE {
		t.Errorf("IKE_SA_INIT requests' KE groups %d ... %d; want %d ... %d", req[0].KEGroup, req[len(req)-1].KEGroup, firstKE, lastKE)
	}
}

// goswanPair runs our pluto in two namespaces ("a" 192.0.2.1 and "b"
// 192.0.2.2, UDP encapsulation forced) with conn "pair" between them; each
// side's PSK is given, and extraA is added to a's conn.
func goswanPair(t *testing.T, pskA, pskB, extraA string) (a, b *peers.Pluto, c *peers.Capture) {
	t.Helper()
	peers.RequireTshark(t)
	testnet.Require(t)
	na, nb, veth := testnet.Pair(t, "a", "b")
	conf := func(me, peer, meID, peerID, extra string) string {
		return "conn pair\n\tleft=" + me + "\n\tleftid=" + meID + "\n\tright=" + peer + "\n\trightid=" + peerID + "\n" +
			"\tauthby=secret\n\tencapsulation=yes\n\tauto=add\n\tretransmit-timeout=5s\n\tike=aes_gcm128-sha2_256-dh31\n" + extra
	}
	start := func(ns *testnet.Namespace, me, peer, meID, peerID, key, extra string) *peers.Pluto {
		pl := peers.StartPluto(t, ns, peers.PlutoConfig{
			BinDir: binDir, Conf: conf(me, peer, meID, peerID, extra),
			Secrets: meID + " " + peerID + " : PSK \"" + key + "\"\n",
			Args:    []string{"--use-netstack", "--listen", me}, Env: memoryKernel,
		})
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("pluto in %s:\n%s", ns.Label, testnet.Tail(pl.Log(), 30))
			}
		})
		return pl
	}
	a = start(na, "192.0.2.1", "192.0.2.2", "@a.example", "@b.example", pskA, extraA)
	b = start(nb, "192.0.2.2", "192.0.2.1", "@b.example", "@a.example", pskB, "")
	c = peers.StartCapture(t, na, veth.AName, "udp")
	return a, b, c
}

// TestTsharkGoswanPair captures exchanges between two of our daemons, so
// that every message in them is ours.
func TestTsharkGoswanPair(t *testing.T) {
	const a, b = "192.0.2.1", "192.0.2.2"
	t.Run("wrong-psk", func(t *testing.T) {
		// b cannot verify a's AUTH and answers IKE_AUTH with
		// AUTHENTICATION_FAILED (inside SK, so tshark sees the framing
		// only); a gives up.
		pa, pb, c := goswanPair(t, psk, "not "+psk, "")
		err := pa.Up("pair")
		if err == nil || !strings.Contains(err.Error(), "AUTHENTICATION_FAILED") {
			t.Fatalf("up with the wrong PSK: %v; want a failure naming AUTHENTICATION_FAILED", err)
		}
		if err := pb.WaitLog("AUTHENTICATION_FAILED", 2*time.Second); err != nil {
			t.Errorf("the responder's log does not say it refused: %v", err)
		}
		for _, p := range []*peers.Pluto{pa, pb} {
			if err := p.WaitNoSAs(5 * time.Second); err != nil {
				t.Error(err)
			}
		}
		msgs := checkCapture(t, c)
		checkCounts(t, msgs, map[string]int{
			countKey(a, peers.ExchIKESAInit, false): 1,
			countKey(b, peers.ExchIKESAInit, true):  1,
			countKey(a, peers.ExchIKEAuth, false):   1,
			countKey(b, peers.ExchIKEAuth, true):    1,
		})
		checkTransport(t, msgs)
		checkFlags(t, msgs, a, true)
		checkFlags(t, msgs, b, false)
	})
	t.Run("liveness", func(t *testing.T) {
		// dpddelay=1s on a: with no traffic, a sends an empty
		// INFORMATIONAL request a second after IKE_AUTH and b answers it;
		// then a's "down" sends the Delete.
		pa, pb, c := goswanPair(t, psk, psk, "\tdpddelay=1s\n")
		if err := pa.Up("pair"); err != nil {
			t.Fatal(err)
		}
		// Wait for the liveness exchange (message ID 2) in the capture.
		deadline := time.Now().Add(5 * time.Second)
		for {
			msgs, err := peers.ISAKMPMessages(c.Path, peers.Dissect{})
			if err == nil && exchangeCounts(msgs)[countKey(b, peers.ExchInformational, true)] >= 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no liveness exchange within 5 s (%v): %v", err, msgs)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err := pa.Down("pair"); err != nil {
			t.Fatal(err)
		}
		for _, p := range []*peers.Pluto{pa, pb} {
			if err := p.WaitNoSAs(5 * time.Second); err != nil {
				t.Error(err)
			}
		}
		msgs := checkCapture(t, c)
		// One liveness check, perhaps two if the capture was slow to
		// show the first; then the Delete.
		got := exchangeCounts(msgs)
		if n := got[countKey(a, peers.ExchInformational, false)]; n < 2 || n > 3 {
			t.Errorf("a sent %d INFORMATIONAL requests, want a liveness check (or two) and a Delete", n)
		}
		if got[countKey(b, peers.ExchInformational, true)] != got[countKey(a, peers.ExchInformational, false)] {
			t.Errorf("b answered %d of a's %d INFORMATIONAL requests", got[countKey(b, peers.ExchInformational, true)], got[countKey(a, peers.ExchInformational, false)])
		}
		want := map[string]int{
			countKey(a, peers.ExchIKESAInit, false):     1,
			countKey(b, peers.ExchIKESAInit, true):      1,
			countKey(a, peers.ExchIKEAuth, false):       1,
			countKey(b, peers.ExchIKEAuth, true):        1,
			countKey(a, peers.ExchInformational, false): got[countKey(a, peers.ExchInformational, false)],
			countKey(b, peers.ExchInformational, true):  got[countKey(a, peers.ExchInformational, false)],
		}
		checkCounts(t, msgs, want)
		checkTransport(t, msgs)
		checkFlags(t, msgs, a, true)
		checkFlags(t, msgs, b, false)
		// Message IDs: 0 IKE_SA_INIT, 1 IKE_AUTH, then 2, 3... for a's
		// INFORMATIONAL requests, each answered with the same ID.
		next := uint32(2)
		for _, m := range msgs {
			if m.Exchange == peers.ExchInformational && !m.Response {
				if m.MessageID < next-1 || m.MessageID > next {
					t.Errorf("%v: message ID out of sequence (want %d)", m, next)
				}
				if m.MessageID == next {
					next++
				}
			}
		}
	})
}
