package userspace

import (
	"net/netip"
	"os"
	"sync/atomic"
	"testing"

	"goswan/kernel"
)

// genDev hands out copies of one packet, batch by batch, until left runs
// out, then blocks until closed; it counts what is written to it and
// closes done when want packets arrived.
type genDev struct {
	pkt     []byte
	batch   int
	start   chan struct{}
	left    atomic.Int64
	written atomic.Int64
	want    int64
	done    chan struct{}
	closed  chan struct{}
	closing atomic.Bool
}

func newGenDev(pkt []byte, batch int) *genDev {
	return &genDev{pkt: pkt, batch: batch, start: make(chan struct{}), done: make(chan struct{}), closed: make(chan struct{})}
}

func (d *genDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case <-d.start:
	case <-d.closed:
		return 0, os.ErrClosed
	}
	n := 0
	for n < len(bufs) && d.left.Load() > 0 {
		d.left.Add(-1)
		sizes[n] = copy(bufs[n][offset:], d.pkt)
		n++
	}
	if n == 0 {
		<-d.closed
		return 0, os.ErrClosed
	}
	return n, nil
}

func (d *genDev) Write(bufs [][]byte, offset int) (int, error) {
	if d.written.Add(int64(len(bufs))) == d.want {
		close(d.done)
	}
	return len(bufs), nil
}

func (d *genDev) MTU() (int, error)     { return 1500, nil }
func (d *genDev) Name() (string, error) { return "gen", nil }
func (d *genDev) BatchSize() int        { return d.batch }
func (d *genDev) Close() error {
	if d.closing.CompareAndSwap(false, true) {
		close(d.closed)
	}
	return nil
}

// BenchmarkSealOpen sends 1400-octet packets from a device through one
// back end's seal and SendESP, straight into the other's DeliverESP, open
// and device write, in process, on AES-128-GCM. "serial" opens on the
// sender's goroutine (the default), "pipelined" through the queues and
// one open worker (InboundWorkers 1).
func BenchmarkSealOpen(b *testing.B) {
	b.Run("serial", func(b *testing.B) { benchSealOpen(b, 0) })
	b.Run("pipelined", func(b *testing.B) { benchSealOpen(b, 1) })
}

func benchSealOpen(b *testing.B, workers int) {
	pkt := udpPacket(netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.2.0.1"), 1000, 2000, 1400)
	devA := newGenDev(pkt, 128)
	devB := newGenDev(nil, 1)
	devA.left.Store(int64(b.N))
	devB.want = int64(b.N)
	var bb atomic.Pointer[Backend]
	a, err := New(Config{Device: devA, SendESP: func(l, r netip.AddrPort, p []byte) error {
		bb.Load().DeliverESP(r, l, p)
		return nil
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	be, err := New(Config{InboundWorkers: workers, Device: devB, SendESP: func(l, r netip.AddrPort, p []byte) error { return nil }})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	bb.Store(be)
	sa := side{outer: netip.MustParseAddr("192.0.2.1"), port: 4500, subnet: netip.MustParsePrefix("10.1.0.0/24")}
	sb := side{outer: netip.MustParseAddr("192.0.2.2"), port: 4500, subnet: netip.MustParsePrefix("10.2.0.0/24")}
	childSA(b, a, be, sa, sb, 1, kernel.Lifetime{})

	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	b.ResetTimer()
	close(devA.start)
	<-devB.done
	b.StopTimer()
	if st := be.Stats(); st.InPackets != uint64(b.N) {
		b.Fatalf("delivered %d of %d (stats %+v)", st.InPackets, b.N, st)
	}
}
