package esp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"testing"
	"time"

	"goswan/proposal"
)

type suiteCase struct {
	name  string
	encr  proposal.EncrID
	ekey  int
	integ proposal.IntegID
	ikey  int
}

var suites = []suiteCase{
	{"aes128gcm", proposal.EncrAESGCM16, 20, proposal.IntegNone, 0},
	{"aes256gcm", proposal.EncrAESGCM16, 36, proposal.IntegNone, 0},
	{"chacha20poly1305", proposal.EncrChaCha20Poly1305, 36, proposal.IntegNone, 0},
	{"aes128cbc-sha256", proposal.EncrAESCBC, 16, proposal.IntegHMACSHA2256128, 32},
	{"aes256cbc-sha384", proposal.EncrAESCBC, 32, proposal.IntegHMACSHA2384192, 48},
	{"aes256cbc-sha512", proposal.EncrAESCBC, 32, proposal.IntegHMACSHA2512256, 64},
	{"null-sha256", proposal.EncrNull, 0, proposal.IntegHMACSHA2256128, 32},
}

func keyOf(n int, b byte) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

func (s suiteCase) config(spi uint32) SAConfig {
	return SAConfig{SPI: spi, Encr: s.encr, EncrKey: keyOf(s.ekey, 1), Integ: s.integ, IntegKey: keyOf(s.ikey, 7),
		AllowNullEncryption: s.encr == proposal.EncrNull, ReplayWindow: 128, Clock: testClock}
}

// pair returns an outbound and an inbound SA with the same keys.
func pair(t testing.TB, cfg SAConfig) (out, in *SA) {
	return mustSA(t, cfg), mustSA(t, cfg)
}

func udp4(src, dst string, sport, dport uint16, n int) []byte {
	p := make([]byte, 28+n)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
	p[8], p[9] = 64, ProtoUDP
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	setIPv4Checksum(p[:20])
	binary.BigEndian.PutUint16(p[20:], sport)
	binary.BigEndian.PutUint16(p[22:], dport)
	binary.BigEndian.PutUint16(p[24:], uint16(8+n))
	for i := 28; i < len(p); i++ {
		p[i] = byte(i)
	}
	return p
}

func udp6(src, dst string, sport, dport uint16, n int) []byte {
	p := make([]byte, 48+n)
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:6], uint16(8+n))
	p[6], p[7] = ProtoUDP, 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	binary.BigEndian.PutUint16(p[40:], sport)
	binary.BigEndian.PutUint16(p[42:], dport)
	binary.BigEndian.PutUint16(p[44:], uint16(8+n))
	for i := 48; i < len(p); i++ {
		p[i] = byte(i)
	}
	return p
}

func TestRoundTrip(t *testing.T) {
	for _, s := range suites {
		for _, mode := range []Mode{Tunnel, Transport} {
			for _, fam := range []string{"v4", "v6"} {
				for _, encap := range []bool{false, true} {
					name := fmt.Sprintf("%s/%v/%s/encap=%v", s.name, mode, fam, encap)
					t.Run(name, func(t *testing.T) {
						cfg := s.config(0x1234)
						cfg.Mode = mode
						if encap {
							cfg.Encap = &UDPEncap{LocalPort: 4500, RemotePort: 4501}
						}
						if fam == "v4" {
							cfg.Local, cfg.Remote = netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
						} else {
							cfg.Local, cfg.Remote = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
						}
						out, in := pair(t, cfg)
						for _, n := range []int{0, 1, 2, 3, 13, 14, 15, 16, 17, 100, 1400} {
							var pkt []byte
							if fam == "v4" {
								pkt = udp4("10.1.0.1", "10.2.0.1", 1000, 53, n)
							} else {
								pkt = udp6("fd00:1::1", "fd00:2::1", 1000, 53, n)
							}
							buf := make([]byte, 0, 2048)
							sealed, err := out.Seal(buf, pkt)
							if err != nil {
								t.Fatal(err)
							}
							if mode == Tunnel && len(sealed) > len(pkt)+out.Overhead(len(pkt)) {
								t.Fatalf("overhead %d > %d", len(sealed)-len(pkt), out.Overhead(len(pkt)))
							}
							if mode == Transport {
								if ps, ok := ParsePacketSelector(sealed); !ok || (encap && ps.Proto != ProtoUDP) || (!encap && ps.Proto != ProtoESP) {
									t.Fatalf("transport header %x", sealed[:40])
								}
								if fam == "v4" && checksum(sealed[:20], 0) != 0xffff {
									t.Fatal("bad IPv4 checksum")
								}
							}
							got, err := in.Open(make([]byte, 0, 2048), sealed)
							if err != nil {
								t.Fatalf("n=%d: %v", n, err)
							}
							if !bytes.Equal(got, pkt) {
								t.Fatalf("n=%d:\n got %x\nwant %x", n, got, pkt)
							}
						}
						if c := in.Counters(); c.Packets != 11 {
							t.Fatalf("counters %+v", c)
						}
					})
				}
			}
		}
	}
}

func TestOuterHeader(t *testing.T) {
	for _, encap := range []bool{false, true} {
		for _, fam := range []string{"192.0.2.1/198.51.100.1", "2001:db8::1/2001:db8::2"} {
			cfg := suites[0].config(0x2000)
			var l, r string
			fmt.Sscanf(fam, "%s", &l)
			for i := range fam {
				if fam[i] == '/' {
					l, r = fam[:i], fam[i+1:]
				}
			}
			cfg.Local, cfg.Remote = netip.MustParseAddr(l), netip.MustParseAddr(r)
			if encap {
				cfg.Encap = &UDPEncap{LocalPort: 4500, RemotePort: 31000}
			}
			out, in := pair(t, cfg)
			hl := out.OuterHeaderLen()
			inner := udp4("10.0.0.1", "10.0.0.2", 1, 2, 50)
			pkt, err := out.Seal(make([]byte, hl, 2048), inner)
			if err != nil {
				t.Fatal(err)
			}
			if err := out.PutOuterHeader(pkt); err != nil {
				t.Fatal(err)
			}
			ps, ok := ParsePacketSelector(pkt)
			if !ok || ps.Src != cfg.Local || ps.Dst != cfg.Remote {
				t.Fatalf("outer %+v %v", ps, ok)
			}
			var esp []byte
			if encap {
				sp, dp, payload, ok := ParseUDPEncap(pkt)
				if !ok || sp != 4500 || dp != 31000 {
					t.Fatalf("udp %v %d %d", ok, sp, dp)
				}
				k, e := ClassifyUDP(payload)
				if k != DatagramESP {
					t.Fatal(k)
				}
				esp = e
				if cfg.Local.Is6() {
					// The UDP checksum over the pseudo-header must verify.
					s := uint32(checksum(pkt[8:40], 0)) + uint32(len(pkt)-40) + ProtoUDP
					if checksum(pkt[40:], s) != 0xffff {
						t.Fatal("bad UDP checksum")
					}
				}
			} else {
				_, e, proto, ok := splitIP(pkt)
				if !ok || proto != ProtoESP {
					t.Fatal("not ESP")
				}
				esp = e
			}
			if got, err := in.Open(nil, esp); err != nil || !bytes.Equal(got, inner) {
				t.Fatalf("open: %v", err)
			}
		}
	}
}

func TestZeroCopySeal(t *testing.T) {
	out, in := pair(t, suites[0].config(0x3000))
	inner := udp4("10.0.0.1", "10.0.0.2", 1, 2, 1000)
	buf := make([]byte, 4096)
	h := out.HeaderLen()
	copy(buf[h:], inner)
	sealed, err := out.Seal(buf[:0], buf[h:h+len(inner)])
	if err != nil {
		t.Fatal(err)
	}
	if &sealed[0] != &buf[0] {
		t.Fatal("reallocated")
	}
	if got, err := in.Open(nil, sealed); err != nil || !bytes.Equal(got, inner) {
		t.Fatal(err)
	}
}

// A flipped bit anywhere is an authentication failure (or, in the SPI, an
// unknown SA), is counted, and leaves the SA working and its window still.
func TestBitFlips(t *testing.T) {
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			out, in := pair(t, s.config(0x4000))
			inner := udp4("10.0.0.1", "10.0.0.2", 1, 2, 40)
			pkt, _ := out.Seal(nil, inner)
			before := GlobalDrops()
			flips, zeros := 0, 0
			for i := 0; i < len(pkt)*8; i++ {
				bad := bytes.Clone(pkt)
				bad[i/8] ^= 1 << (i % 8)
				_, err := in.Open(nil, bad)
				want := DropAuth
				switch {
				case i < 32:
					want = DropNoSA
				case binary.BigEndian.Uint32(bad[4:8]) == 0:
					want = DropReplay // sequence number 0 is never sent
					zeros++
				default:
					flips++
				}
				if err != want {
					t.Fatalf("bit %d: %v, want %v", i, err, want)
				}
			}
			if c := in.Counters(); c.Drops[DropAuth] != uint64(flips) || c.Packets != 0 {
				t.Fatalf("counters %+v", c)
			}
			if g := GlobalDrops(); g[DropAuth]-before[DropAuth] < uint64(flips) {
				t.Fatal("global counter")
			}
			if in.replay.top.Load() != 0 {
				t.Fatal("window moved")
			}
			if got, err := in.Open(nil, pkt); err != nil || !bytes.Equal(got, inner) {
				t.Fatalf("after flips: %v", err)
			}
			if _, err := in.Open(nil, pkt); err != DropReplay || in.Counters().Drops[DropReplay] != uint64(zeros)+1 {
				t.Fatalf("replay: %v", err)
			}
		})
	}
}

func TestBadPaddingAndNextHeader(t *testing.T) {
	// Build packets by hand with a bare transform so the trailer can be wrong.
	cfg := suites[0].config(0x5000)
	out, _ := pair(t, cfg)
	for _, tc := range []struct {
		name    string
		trailer []byte
		want    error
	}{
		{"nonmonotonic", []byte{1, 3, 2, 4}, DropPadding},
		{"padlen too long", []byte{200, 4}, DropPadding},
		{"next header 17 in tunnel", []byte{0, 17}, DropNextHeader},
		{"dummy", []byte{0, ProtoNone}, DropDummy},
		{"next header 4 but v6", []byte{0, ProtoIPIP}, DropMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := mustSA(t, cfg)
			inner := udp4("10.0.0.1", "10.0.0.2", 1, 2, 2)
			if tc.name == "next header 4 but v6" {
				inner = udp6("fd00::1", "fd00::2", 1, 2, 6)
			}
			seq := out.seqOut.Add(1)
			pt := append(bytes.Clone(inner), tc.trailer...)
			esp := make([]byte, 16, 16+len(pt)+16)
			binary.BigEndian.PutUint32(esp[0:], cfg.SPI)
			binary.BigEndian.PutUint32(esp[4:], uint32(seq))
			binary.BigEndian.PutUint64(esp[8:], seq)
			nonce := append(out.tr.salt[:], esp[8:16]...)
			esp = out.tr.aead.Seal(esp, nonce, pt, esp[:8])
			if _, err := in.Open(nil, esp); err != tc.want {
				t.Fatalf("%v, want %v", err, tc.want)
			}
			if in.Counters().Drops[tc.want.(DropReason)] != 1 {
				t.Fatal("not counted")
			}
		})
	}
}

func TestShortAndGarbage(t *testing.T) {
	for _, s := range suites {
		in := mustSA(t, s.config(0x6000))
		for n := 0; n < 80; n++ {
			b := make([]byte, n)
			if n >= 4 {
				binary.BigEndian.PutUint32(b, 0x6000)
			}
			if _, err := in.Open(nil, b); err == nil {
				t.Fatalf("%s: %d zero octets accepted", s.name, n)
			}
		}
	}
}

func TestPolicyCheck(t *testing.T) {
	cfg := suites[0].config(0x7000)
	cfg.Selectors = []Selector{{
		Src: netip.MustParsePrefix("10.1.0.0/16"), Dst: netip.MustParsePrefix("10.2.0.0/16"),
		Proto: ProtoUDP, DstPorts: PortRange{53, 53},
	}}
	out, in := pair(t, cfg)
	for _, tc := range []struct {
		pkt []byte
		ok  bool
	}{
		{udp4("10.1.2.3", "10.2.3.4", 999, 53, 10), true},
		{udp4("10.1.2.3", "10.2.3.4", 999, 54, 10), false},
		{udp4("10.9.2.3", "10.2.3.4", 999, 53, 10), false},
		{udp4("10.1.2.3", "10.3.3.4", 999, 53, 10), false},
		{udp6("fd00::1", "fd00::2", 999, 53, 10), false},
	} {
		sealed, err := out.Seal(nil, tc.pkt)
		if err != nil {
			t.Fatal(err)
		}
		_, err = in.Open(nil, sealed)
		if tc.ok != (err == nil) || (!tc.ok && err != DropPolicy) {
			t.Fatalf("%x: %v", tc.pkt[12:20], err)
		}
	}
	if in.Counters().Drops[DropPolicy] != 4 {
		t.Fatal("policy drops not counted")
	}
}

func TestReplayWindow(t *testing.T) {
	w := newReplayWindow(64)
	accept := func(seq uint64) bool { return w.check(seq) && w.update(seq) }
	for _, s := range []uint64{1, 2, 3, 5, 4, 100} {
		if !accept(s) {
			t.Fatalf("%d refused", s)
		}
	}
	for _, s := range []uint64{0, 1, 5, 100, 36} {
		if accept(s) {
			t.Fatalf("%d accepted", s)
		}
	}
	if !accept(37) || !accept(99) || accept(99) {
		t.Fatal("edge of window")
	}
	if !accept(100000) || accept(100000-64) || !accept(100000-63) {
		t.Fatal("jump")
	}
	// Large windows, bitmap ring wrap.
	for _, size := range []uint32{1, 32, 64, 65, 1000, 4096, 8192} {
		w := newReplayWindow(size)
		for s := uint64(1); s < 20000; s += 3 {
			if !w.check(s) || !w.update(s) {
				t.Fatalf("size %d: %d refused", size, s)
			}
			if w.update(s) {
				t.Fatalf("size %d: %d twice", size, s)
			}
			old := s - uint64(size)
			if s > uint64(size) && (w.check(old) && w.update(old)) {
				t.Fatalf("size %d: %d (left of window) accepted", size, old)
			}
		}
	}
	// Off: everything but 0.
	w = newReplayWindow(0)
	if !accept(5) || !accept(5) || accept(0) {
		t.Fatal("window off")
	}
}

func TestReplayConcurrent(t *testing.T) {
	w := newReplayWindow(4096)
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[uint64]int{}
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := uint64(1); s < 5000; s++ {
				if w.check(s) && w.update(s) {
					mu.Lock()
					seen[s]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for s, n := range seen {
		if n != 1 {
			t.Fatalf("%d accepted %d times", s, n)
		}
	}
}

func TestInferSeq(t *testing.T) {
	const W = 64
	for _, tc := range []struct {
		top  uint64
		seql uint32
		want uint64
	}{
		{100, 101, 101},
		{100, 50, 50},
		{100, 37, 37},         // the left edge
		{100, 36, 1<<32 | 36}, // left of the window: taken as the next subspace (fails auth if wrong)
		{1<<32 | 10, 5, 1<<32 | 5},
		{1<<32 | 10, 0xfffffff0, 0xfffffff0}, // Case B: previous subspace
		{1<<32 | 10, 0xfffffff0 - 64, 1<<32 | 0xffffffb0}, // too far left: this subspace
		{0xffffffff, 3, 1<<32 | 3},                        // wrap-around forward
		{0xfffffff0, 0xfffffff5, 0xfffffff5},
		{5, 0xfffffff0, 0}, // nothing before 0
		{3<<32 | 0xffffffff, 1, 4<<32 | 1},
	} {
		if got := inferSeq(tc.top, W, tc.seql); got != tc.want {
			t.Errorf("top %#x seql %#x: got %#x want %#x", tc.top, tc.seql, got, tc.want)
		}
	}
}

func TestESNWrap(t *testing.T) {
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			cfg := s.config(0x8000)
			cfg.ESN = true
			out, in := pair(t, cfg)
			start := uint64(math.MaxUint32 - 5)
			out.seqOut.Store(start)
			in.replay.update(start) // as if the earlier packets arrived
			inner := udp4("10.0.0.1", "10.0.0.2", 1, 2, 20)
			var pkts [][]byte
			for i := 0; i < 12; i++ {
				p, err := out.Seal(nil, inner)
				if err != nil {
					t.Fatal(err)
				}
				pkts = append(pkts, p)
			}
			// Deliver out of order across the 2^32 boundary.
			for _, i := range []int{0, 7, 3, 11, 4, 5, 6, 1, 2, 9, 8, 10} {
				if _, err := in.Open(nil, pkts[i]); err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
			}
			if top := in.replay.top.Load(); top != start+12 {
				t.Fatalf("top %#x", top)
			}
			for i := range pkts {
				if _, err := in.Open(nil, pkts[i]); err != DropReplay {
					t.Fatalf("replay %d: %v", i, err)
				}
			}
			// Without ESN the high bits are not in the ICV: a packet sealed
			// by an ESN sender with high bits 1 fails on a receiver whose
			// top is still in subspace 0... check the ICV covers them.
			cfg2 := cfg
			in2 := mustSA(t, cfg2)
			if _, err := in2.Open(nil, pkts[11]); err != DropAuth {
				t.Fatalf("high bits not authenticated: %v", err)
			}
		})
	}
}

func TestSeqOverflow(t *testing.T) {
	var events []Event
	cfg := suites[0].config(0x9000)
	cfg.OnEvent = func(e Event) { events = append(events, e) }
	out := mustSA(t, cfg)
	out.seqOut.Store(math.MaxUint32 - 1)
	inner := udp4("10.0.0.1", "10.0.0.2", 1, 2, 20)
	p, err := out.Seal(nil, inner)
	if err != nil || binary.BigEndian.Uint32(p[4:8]) != math.MaxUint32 {
		t.Fatalf("last number: %v", err)
	}
	for i := 0; i < 3; i++ {
		if _, err := out.Seal(nil, inner); err != DropExpired && err != DropSeqOverflow {
			t.Fatalf("wrapped: %v", err)
		}
	}
	if len(events) != 2 || events[0].Kind != SoftExpire || events[1].Kind != HardExpire || events[1].Reason != ReasonSequence {
		t.Fatalf("events %+v", events)
	}
	if !out.Expired() {
		t.Fatal("not expired")
	}
}

func TestLifetimes(t *testing.T) {
	clk := NewClock(time.Unix(1000, 0))
	var mu sync.Mutex
	var events []Event
	cfg := suites[0].config(0xa000)
	cfg.Clock = clk
	cfg.Lifetime = Lifetime{Soft: Limits{Packets: 3, Time: time.Minute}, Hard: Limits{Packets: 5, Bytes: 1 << 20, Time: 2 * time.Minute}}
	cfg.OnEvent = func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }
	out, in := pair(t, cfg)
	inner := udp4("10.0.0.1", "10.0.0.2", 1, 2, 20)
	for i := 1; i <= 6; i++ {
		p, err := out.Seal(nil, inner)
		if i <= 5 && err != nil || i == 6 && err != DropExpired {
			t.Fatalf("packet %d: %v", i, err)
		}
		if err == nil {
			if _, err := in.Open(nil, p); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Both SAs (sender and receiver) report soft, then hard, once each.
	kinds := map[EventKind]int{}
	for _, e := range events {
		kinds[e.Kind]++
		if e.Reason != ReasonPackets || e.SPI != 0xa000 {
			t.Fatalf("events %+v", events)
		}
	}
	if len(events) != 4 || kinds[SoftExpire] != 2 || kinds[HardExpire] != 2 || events[0].Kind != SoftExpire {
		t.Fatalf("events %+v", events)
	}
	if out.Counters().Drops[DropExpired] != 1 {
		t.Fatal("expired drop not counted")
	}
	// Time: a fresh pair, the clock moves.
	events = nil
	cfg.Lifetime = Lifetime{Soft: Limits{Time: time.Minute}, Hard: Limits{Time: 2 * time.Minute}}
	out, in = pair(t, cfg)
	p, _ := out.Seal(nil, inner)
	clk.Set(time.Unix(1000+61, 0))
	in.CheckLifetime()
	if len(events) != 1 || events[0].Kind != SoftExpire || events[0].Reason != ReasonTime {
		t.Fatalf("events %+v", events)
	}
	if _, err := in.Open(nil, p); err != nil {
		t.Fatal(err)
	}
	clk.Set(time.Unix(1000+121, 0))
	if _, err := out.Seal(nil, inner); err != DropExpired {
		t.Fatalf("after hard time: %v", err)
	}
	if c := in.Counters(); !c.LastUse.Equal(time.Unix(1061, 0)) {
		t.Fatalf("last use %v", c.LastUse)
	}
}

func TestNewSAErrors(t *testing.T) {
	for _, cfg := range []SAConfig{
		{SPI: 1, Encr: proposal.EncrAESGCM16, EncrKey: make([]byte, 20)},
		{SPI: 0x1000, Encr: proposal.EncrAESGCM16, EncrKey: make([]byte, 16)},
		{SPI: 0x1000, Encr: proposal.EncrAESGCM16, EncrKey: make([]byte, 20), Integ: proposal.IntegHMACSHA2256128, IntegKey: make([]byte, 32)},
		{SPI: 0x1000, Encr: proposal.EncrNull, Integ: proposal.IntegHMACSHA2256128, IntegKey: make([]byte, 32)},
		{SPI: 0x1000, Encr: proposal.EncrAESCBC, EncrKey: make([]byte, 16)},
		{SPI: 0x1000, Encr: proposal.EncrAESCBC, EncrKey: make([]byte, 16), Integ: proposal.IntegHMACSHA2256128, IntegKey: make([]byte, 16)},
		{SPI: 0x1000, Encr: 3},
	} {
		if _, err := NewSA(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

func TestParallelOneSA(t *testing.T) {
	cfg := suites[0].config(0xb000)
	cfg.ReplayWindow = 8192
	out, in := pair(t, cfg)
	inner := udp4("10.0.0.1", "10.0.0.2", 1, 2, 500)
	const G, N = 8, 500
	ch := make(chan []byte, G*N)
	var wg sync.WaitGroup
	for g := 0; g < G; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < N; i++ {
				p, err := out.Seal(nil, inner)
				if err != nil {
					t.Error(err)
					return
				}
				ch <- p
			}
		}()
	}
	wg.Wait()
	close(ch)
	var ok sync.WaitGroup
	errs := make(chan error, G*N)
	for g := 0; g < G; g++ {
		ok.Add(1)
		go func() {
			defer ok.Done()
			for p := range ch {
				got, err := in.Open(nil, p)
				if err != nil || !bytes.Equal(got, inner) {
					errs <- fmt.Errorf("%v", err)
				}
			}
		}()
	}
	ok.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if c := in.Counters(); c.Packets != G*N {
		t.Fatalf("%d packets", c.Packets)
	}
}
