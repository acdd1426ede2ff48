// Package espbench measures the ESP engine (package esp) alone, in
// process: Seal and Open of one SA from 1..N goroutines, against the bare
// AEAD (or AES-CBC plus HMAC) on the same number of cores, which is the
// limit the engine can reach.
package espbench

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"goswan/esp"
	"goswan/proposal"
)

// Transform is one ESP transform the tool knows.
type Transform struct {
	Name     string
	Encr     proposal.EncrID
	KeyLen   int // KEYMAT for the encryption (AEAD: key + 4-octet salt)
	Integ    proposal.IntegID
	IntegLen int
}

// Transforms are the ones measured by default.
var Transforms = []Transform{
	{"aes128gcm", proposal.EncrAESGCM16, 20, proposal.IntegNone, 0},
	{"aes256gcm", proposal.EncrAESGCM16, 36, proposal.IntegNone, 0},
	{"chacha20poly1305", proposal.EncrChaCha20Poly1305, 36, proposal.IntegNone, 0},
	{"aes128cbc-sha256", proposal.EncrAESCBC, 16, proposal.IntegHMACSHA2256128, 32},
}

// TransformByName finds a transform.
func TransformByName(name string) (Transform, bool) {
	for _, t := range Transforms {
		if t.Name == name {
			return t, true
		}
	}
	return Transform{}, false
}

func key(n int, b byte) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

// Config returns an SA configuration for t with fixed keys: tunnel mode,
// ESN on (no 2^32 limit), the replay window off (Open sees the same
// packets again and again: the replay check would drop them).
func (t Transform) Config() esp.SAConfig {
	return esp.SAConfig{SPI: 0x1000, Encr: t.Encr, EncrKey: key(t.KeyLen, 1), Integ: t.Integ, IntegKey: key(t.IntegLen, 7), ESN: true}
}

// InnerPacket is an IPv4/UDP packet of n octets in total (at least 28).
func InnerPacket(n int) []byte {
	n = max(n, 28)
	p := make([]byte, n)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:4], uint16(min(n, 65535)))
	p[8], p[9] = 64, 17
	copy(p[12:16], []byte{10, 0, 1, 1})
	copy(p[16:20], []byte{10, 0, 2, 1})
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(p[10:12], ^uint16(sum))
	binary.BigEndian.PutUint16(p[20:], 1)
	binary.BigEndian.PutUint16(p[22:], 2)
	binary.BigEndian.PutUint16(p[24:], uint16(min(n-20, 65535)))
	return p
}

// Figure is one measurement.
type Figure struct {
	Op        string  `json:"op"` // seal, open, aead-seal (the bare primitive)
	Transform string  `json:"transform"`
	Size      int     `json:"size"`
	Cores     int     `json:"cores"`
	Packets   uint64  `json:"packets"`
	Seconds   float64 `json:"seconds"`
	Gbps      float64 `json:"gbps"` // inner bytes
	PPS       float64 `json:"pps"`
	NsPerByte float64 `json:"ns_per_byte"` // CPU-time: cores × wall / bytes
	Allocs    float64 `json:"allocs_per_packet"`
}

// loop runs work on cores goroutines for about d and counts packets. work
// gets its worker index and returns false on error.
func loop(cores int, d time.Duration, work func(w int, n int) error) (uint64, time.Duration, float64, error) {
	var total atomic.Uint64
	var stop atomic.Bool
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	start := time.Now()
	for w := 0; w < cores; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			const batch = 64
			for !stop.Load() {
				if err := work(w, batch); err != nil {
					once.Do(func() { firstErr = err })
					stop.Store(true)
					return
				}
				total.Add(batch)
			}
		}(w)
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	el := time.Since(start)
	runtime.ReadMemStats(&m1)
	n := total.Load()
	allocs := 0.0
	if n > 0 {
		allocs = float64(m1.Mallocs-m0.Mallocs) / float64(n)
	}
	return n, el, allocs, firstErr
}

func figure(op string, t Transform, size, cores int, n uint64, el time.Duration, allocs float64) Figure {
	s := el.Seconds()
	bytes := float64(n) * float64(size)
	f := Figure{Op: op, Transform: t.Name, Size: size, Cores: cores, Packets: n, Seconds: s, Allocs: allocs}
	if s > 0 && n > 0 {
		f.Gbps = bytes * 8 / s / 1e9
		f.PPS = float64(n) / s
		f.NsPerByte = s * float64(cores) * 1e9 / bytes
	}
	return f
}

// Seal measures (*esp.SA).Seal of one SA from cores goroutines.
func Seal(t Transform, size, cores int, d time.Duration) (Figure, error) {
	sa, err := esp.NewSA(t.Config())
	if err != nil {
		return Figure{}, err
	}
	inner := InnerPacket(size)
	bufs := make([][]byte, cores)
	for i := range bufs {
		bufs[i] = make([]byte, 0, size+256)
	}
	n, el, allocs, err := loop(cores, d, func(w, k int) error {
		for i := 0; i < k; i++ {
			if _, err := sa.Seal(bufs[w], inner); err != nil {
				return err
			}
		}
		return nil
	})
	return figure("seal", t, size, cores, n, el, allocs), err
}

// Open measures (*esp.SA).Open of one SA from cores goroutines, each
// opening a ring of distinct sealed packets.
func Open(t Transform, size, cores int, d time.Duration) (Figure, error) {
	out, err := esp.NewSA(t.Config())
	if err != nil {
		return Figure{}, err
	}
	in, err := esp.NewSA(t.Config())
	if err != nil {
		return Figure{}, err
	}
	inner := InnerPacket(size)
	const ring = 256
	pkts := make([][]byte, ring)
	for i := range pkts {
		if pkts[i], err = out.Seal(nil, inner); err != nil {
			return Figure{}, err
		}
	}
	bufs := make([][]byte, cores)
	idx := make([]int, cores)
	for i := range bufs {
		bufs[i] = make([]byte, 0, size+256)
		idx[i] = i * 17
	}
	n, el, allocs, err := loop(cores, d, func(w, k int) error {
		for i := 0; i < k; i++ {
			idx[w] = (idx[w] + 1) % ring
			if _, err := in.Open(bufs[w], pkts[idx[w]]); err != nil {
				return fmt.Errorf("open: %w", err)
			}
		}
		return nil
	})
	return figure("open", t, size, cores, n, el, allocs), err
}

// Bare measures the primitive alone on the same payload: the AEAD's Seal
// (nonce and 8 octets of associated data as ESP uses them), or AES-CBC
// encryption plus HMAC for the CBC transforms. It is the limit for Seal.
func Bare(t Transform, size, cores int, d time.Duration) (Figure, error) {
	// The ESP payload is the inner packet plus the 2-octet trailer, padded.
	plen := size + 2
	type worker func(k int)
	mk := func() (worker, error) {
		k := key(t.KeyLen, 1)
		switch t.Encr {
		case proposal.EncrAESGCM16, proposal.EncrChaCha20Poly1305:
			var a cipher.AEAD
			if t.Encr == proposal.EncrAESGCM16 {
				b, err := aes.NewCipher(k[:len(k)-4])
				if err != nil {
					return nil, err
				}
				if a, err = cipher.NewGCM(b); err != nil {
					return nil, err
				}
			} else {
				var err error
				if a, err = chacha20poly1305.New(k[:32]); err != nil {
					return nil, err
				}
			}
			plen = (plen + 3) &^ 3
			buf := make([]byte, plen+a.Overhead())
			nonce := make([]byte, a.NonceSize())
			ad := make([]byte, 8)
			var seq uint64
			return func(n int) {
				for i := 0; i < n; i++ {
					seq++
					binary.BigEndian.PutUint64(nonce[len(nonce)-8:], seq)
					a.Seal(buf[:0], nonce, buf[:plen], ad)
				}
			}, nil
		case proposal.EncrAESCBC:
			b, err := aes.NewCipher(k)
			if err != nil {
				return nil, err
			}
			plen = (plen + 15) &^ 15
			buf := make([]byte, 8+16+plen)
			iv := make([]byte, 16)
			mac := hmac.New(sha256.New, key(t.IntegLen, 7))
			sum := make([]byte, 0, 64)
			return func(n int) {
				for i := 0; i < n; i++ {
					cipher.NewCBCEncrypter(b, iv).CryptBlocks(buf[24:], buf[24:])
					mac.Reset()
					mac.Write(buf)
					sum = mac.Sum(sum[:0])
				}
			}, nil
		}
		return nil, fmt.Errorf("no bare primitive for %s", t.Name)
	}
	ws := make([]worker, cores)
	for i := range ws {
		w, err := mk()
		if err != nil {
			return Figure{}, err
		}
		ws[i] = w
	}
	n, el, allocs, err := loop(cores, d, func(w, k int) error { ws[w](k); return nil })
	return figure("bare", t, size, cores, n, el, allocs), err
}
