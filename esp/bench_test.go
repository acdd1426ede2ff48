package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
)

var benchSizes = []int{64, 512, 1400, 9000}

// BenchmarkAEADBaseline is the bare crypto/cipher AES-128-GCM seal of 1400
// octets, the yardstick for BenchmarkSeal/aes128gcm/1400.
func BenchmarkAEADBaseline(b *testing.B) {
	blk, _ := aes.NewCipher(make([]byte, 16))
	g, _ := cipher.NewGCM(blk)
	buf := make([]byte, 1400+16+12+8)
	nonce := buf[1416:1428]
	ad := buf[1428:1436]
	b.SetBytes(1400)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint64(nonce[4:], uint64(i))
		g.Seal(buf[:0], nonce, buf[:1400], ad)
	}
}

func benchInner(n int) []byte {
	if n < 28 {
		n = 28
	}
	return udp4("10.0.0.1", "10.0.0.2", 1, 2, n-28)
}

func BenchmarkSeal(b *testing.B) {
	for _, s := range suites {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", s.name, n), func(b *testing.B) {
				cfg := s.config(0x1000)
				cfg.ESN = true // no 2^32 limit for long runs
				sa := mustSA(b, cfg)
				inner := benchInner(n)
				buf := make([]byte, 0, n+256)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := sa.Seal(buf, inner); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// sealRing seals k consecutive packets for the Open benchmarks.
func sealRing(b *testing.B, cfg SAConfig, n, k int) [][]byte {
	out := mustSA(b, cfg)
	inner := benchInner(n)
	ring := make([][]byte, k)
	for i := range ring {
		p, err := out.Seal(nil, inner)
		if err != nil {
			b.Fatal(err)
		}
		ring[i] = p
	}
	return ring
}

// BenchmarkOpen opens a ring of distinct packets with the replay window
// on; it resets the window when the ring comes round (every 1024 packets).
func BenchmarkOpen(b *testing.B) {
	for _, s := range suites {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", s.name, n), func(b *testing.B) {
				cfg := s.config(0x1000)
				cfg.ReplayWindow = 1024
				const k = 1024
				ring := sealRing(b, cfg, n, k)
				in := mustSA(b, cfg)
				buf := make([]byte, 0, n+256)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if i == k {
						in.replay.reset()
						i = 0
					}
					if _, err := in.Open(buf, ring[i]); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		}
	}
}

// BenchmarkSealParallel and BenchmarkOpenParallel use one AES-128-GCM SA
// from all goroutines (GOMAXPROCS), 1400-octet packets.
func BenchmarkSealParallel(b *testing.B) {
	cfg := suites[0].config(0x1000)
	cfg.ESN = true
	sa := mustSA(b, cfg)
	inner := benchInner(1400)
	b.SetBytes(1400)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 0, 2048)
		for pb.Next() {
			if _, err := sa.Seal(buf, inner); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkOpenParallel(b *testing.B) {
	cfg := suites[0].config(0x1000)
	cfg.ReplayWindow = 4096
	k := b.N
	if k > 1<<17 {
		k = 1 << 17
	}
	ring := sealRing(b, cfg, 1400, k)
	in := mustSA(b, cfg)
	var next atomic.Int64
	b.SetBytes(1400)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 0, 2048)
		for pb.Next() {
			i := next.Add(1) - 1
			// Past the ring, packets repeat and drop as replays; size
			// -benchtime (e.g. 100000x) to stay within it.
			in.Open(buf, ring[int(i)%k])
		}
	})
	if d := in.Counters().Drops; d[DropReplay] > uint64(b.N)/100 {
		b.Logf("%d of %d opens dropped as replays (ring %d, window 4096)", d[DropReplay], b.N, k)
	}
}
