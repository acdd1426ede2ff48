package ike

import (
	"context"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"goswan/config"
	"goswan/kernel/memory"
)

const benchConn = baseConn + `
ike=aes_gcm16_256-sha2_256-curve25519
esp=aes_gcm16_128
`

// BenchmarkSetup measures IKE SA + Child SA setups (Curve25519, AES-GCM)
// between two engines in one goroutine (Workers == 0): setups/s, the
// allocations per setup, and the heap kept per established pair (both
// engines and both memory kernels together).
func BenchmarkSetup(b *testing.B) {
	bd := newBed(b, benchConn, benchConn)
	bd.west.log, bd.east.log = nil, nil
	r := &upResult{}
	progress := r.progress
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		r.done, r.err, r.lines = 0, nil, r.lines[:0]
		if err := bd.west.Initiate("test", progress); err != nil {
			b.Fatal(err)
		}
		bd.net.pump()
		if r.done != 1 || r.err != nil {
			b.Fatalf("setup %d: %v", i, r.err)
		}
		bd.net.sent = bd.net.sent[:0]
	}
	el := time.Since(start)
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(b.N)/el.Seconds(), "setups/s")
	b.ReportMetric(float64(int64(ms1.HeapAlloc)-int64(ms0.HeapAlloc))/float64(b.N), "heapB/SA")
	if n := len(bd.ek.SAs()); n != 2*b.N {
		b.Fatalf("east kernel has %d SAs, want %d", n, 2*b.N)
	}
}

// BenchmarkSetupWorkers is BenchmarkSetup with worker goroutines
// (Workers = GOMAXPROCS on each engine) and up to 64 setups in flight.
func BenchmarkSetupWorkers(b *testing.B) {
	var mu sync.Mutex
	engines := map[netip.Addr]*Engine{}
	send := func(p Packet) {
		mu.Lock()
		e := engines[p.Remote.Addr()]
		mu.Unlock()
		e.Receive(Packet{Local: p.Remote, Remote: p.Local, Data: p.Data})
	}
	sec := psk("192.0.2.1 192.0.2.2 : secret-one")
	mk := func(addr netip.Addr) *Engine {
		e, err := NewEngine(Options{Kernel: memory.New(), Workers: runtime.GOMAXPROCS(0), Send: send,
			Secrets: func() *config.Secrets { return sec }, IsLocal: func(a netip.Addr) bool { return a == addr }})
		if err != nil {
			b.Fatal(err)
		}
		if err := e.AddConn(parseConn(b, benchConn)); err != nil {
			b.Fatal(err)
		}
		mu.Lock()
		engines[addr] = e
		mu.Unlock()
		return e
	}
	west, east := mk(westAddr), mk(eastAddr)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var failed sync.Once
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		sem <- struct{}{}
		wg.Add(1)
		west.Initiate("test", func(p Progress) {
			if p.Done {
				if p.Err != nil {
					failed.Do(func() { b.Error(p.Err) })
				}
				<-sem
				wg.Done()
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "setups/s")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	west.Close(ctx)
	east.Close(ctx)
}
