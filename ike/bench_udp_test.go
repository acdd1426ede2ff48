package ike

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"goswan/config"
	"goswan/ike/socket"
	"goswan/kernel/memory"
	"goswan/pki"
)

// BenchmarkSetupUDP measures IKE SA + first Child SA setups between two
// engines that talk over real UDP sockets on loopback (127.0.0.1 and
// 127.0.0.2, the daemon's socket layer), with worker goroutines on both
// sides and up to 64 setups in flight: what two pluto daemons on one
// machine do, less the control socket. It reports setups/s, the latency
// percentiles of one setup, and the heap kept per established IKE SA with
// its Child SA (per side: both engines' and kernels' heap, halved).
//
// The cert-* sub-benchmarks authenticate both ends with certificates of
// the test PKI (chain: end entity, intermediate, root; CERT payloads and
// CERTREQ, CRLs checked from the store) instead of a PSK.
func BenchmarkSetupUDP(b *testing.B) {
	for _, group := range []string{"curve25519", "modp2048"} {
		b.Run(group, func(b *testing.B) { benchSetupUDP(b, group, "") })
	}
	for _, cert := range []string{"p256", "rsa"} {
		name := "cert-" + cert
		if cert == "rsa" {
			name = "cert-rsa3072"
		}
		b.Run(name+"/curve25519", func(b *testing.B) { benchSetupUDP(b, "curve25519", cert) })
	}
}

func benchSetupUDP(b *testing.B, group, cert string) {
	auth := "authby=secret"
	if cert != "" {
		auth = "leftcert=" + cert + "\nleftid=%fromcert\nrightcert=" + cert + "\nrightid=%fromcert"
	}
	conn := `
left=127.0.0.1
leftsubnet=10.1.0.0/24
right=127.0.0.2
rightsubnet=10.2.0.0/24
` + auth + `
ike=aes_gcm16_256-sha2_256-` + group + `
esp=aes_gcm16_128
`
	ikePort, nattPort := freeUDPPorts(b)
	sec := psk("127.0.0.1 127.0.0.2 : a benchmark secret of some length")
	type side struct {
		e     *Engine
		socks *socket.Sockets
		k     *memory.Backend
	}
	mk := func(addr netip.Addr) *side {
		s := &side{k: memory.New()}
		var certs Certificates
		if cert != "" {
			certs = certStore(b, getPKI(b), nil, pki.ValidatorConfig{}, nil)
		}
		var err error
		s.e, err = NewEngine(Options{Kernel: s.k, Workers: runtime.GOMAXPROCS(0), Certificates: certs,
			Send:    func(p Packet) { s.socks.Send(p.Local, p.Remote, p.Data) },
			Secrets: func() *config.Secrets { return sec }, IsLocal: func(a netip.Addr) bool { return a == addr },
			IKEPort: ikePort, NATIKEPort: nattPort})
		if err != nil {
			b.Fatal(err)
		}
		s.socks, err = socket.Open(socket.Config{Listen: []netip.Addr{addr}, IKEPort: ikePort, NATIKEPort: nattPort,
			OnIKE: func(l, r netip.AddrPort, m []byte) { s.e.Receive(Packet{Local: l, Remote: r, Data: m}) }})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.e.AddConn(parseConn(b, conn)); err != nil {
			b.Fatal(err)
		}
		return s
	}
	west, east := mk(netip.MustParseAddr("127.0.0.1")), mk(netip.MustParseAddr("127.0.0.2"))
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		west.e.Close(ctx)
		east.e.Close(ctx)
		west.socks.Close()
		east.socks.Close()
	}()

	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	lat := make([]time.Duration, b.N)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var failed sync.Once
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		sem <- struct{}{}
		wg.Add(1)
		t0 := time.Now()
		err := west.e.Initiate("test", func(p Progress) {
			if p.Done {
				lat[i] = time.Since(t0)
				if p.Err != nil {
					failed.Do(func() { b.Error(p.Err) })
				}
				<-sem
				wg.Done()
			}
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	if n := len(east.k.SAs()); n != 2*b.N {
		b.Fatalf("east installed %d SAs; want %d", n, 2*b.N)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(b.N)/el.Seconds(), "setups/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(int64(ms1.HeapAlloc)-int64(ms0.HeapAlloc))/float64(2*b.N), "heapB/SA-side")
}

func freeUDPPorts(t testing.TB) (int, int) {
	t.Helper()
	var ports []int
	for len(ports) < 2 {
		c, err := net.ListenUDP("udp", &net.UDPAddr{})
		if err != nil {
			t.Fatal(err)
		}
		_, p, _ := net.SplitHostPort(c.LocalAddr().String())
		c.Close()
		n, _ := strconv.Atoi(p)
		ports = append(ports, n)
	}
	return ports[0], ports[1]
}
