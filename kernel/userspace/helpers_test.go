package userspace

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"goswan/esp"
	"goswan/kernel"
	"goswan/proposal"
)

// memDev is an in-memory Device: the test pushes packets for Read with
// inject and takes what the back end writes from out.
type memDev struct {
	in     chan []byte
	out    chan []byte
	closed chan struct{}
	once   sync.Once
	mtu    int
}

func newMemDev(mtu int) *memDev {
	return &memDev{in: make(chan []byte, 64), out: make(chan []byte, 1024), closed: make(chan struct{}), mtu: mtu}
}

func (d *memDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case p := <-d.in:
		sizes[0] = copy(bufs[0][offset:], p)
		return 1, nil
	case <-d.closed:
		return 0, os.ErrClosed
	}
}

func (d *memDev) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		select {
		case d.out <- append([]byte(nil), b[offset:]...):
		default:
		}
	}
	return len(bufs), nil
}

func (d *memDev) MTU() (int, error)     { return d.mtu, nil }
func (d *memDev) Name() (string, error) { return "mem", nil }
func (d *memDev) BatchSize() int        { return 1 }
func (d *memDev) Close() error          { d.once.Do(func() { close(d.closed) }); return nil }
func (d *memDev) inject(p []byte)       { d.in <- p }

// udpPacket builds an IPv4 UDP packet of size octets.
func udpPacket(src, dst netip.Addr, sport, dport uint16, size int) []byte {
	p := make([]byte, size)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:4], uint16(size))
	p[8] = 64
	p[9] = 17
	s4, d4 := src.As4(), dst.As4()
	copy(p[12:16], s4[:])
	copy(p[16:20], d4[:])
	binary.BigEndian.PutUint16(p[20:22], sport)
	binary.BigEndian.PutUint16(p[22:24], dport)
	binary.BigEndian.PutUint16(p[24:26], uint16(size-20))
	var c uint32
	for i := 0; i < 20; i += 2 {
		c += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for c > 0xffff {
		c = c>>16 + c&0xffff
	}
	binary.BigEndian.PutUint16(p[10:12], ^uint16(c))
	return p
}

// side describes one end of a test tunnel.
type side struct {
	outer  netip.Addr // outer (NAT-T) address
	port   uint16
	subnet netip.Prefix // inner subnet behind this end
}

// childSA installs one Child SA between a and b as the IKE code would:
// each side reserves its inbound SPI, adds its inbound SA, its outbound SA
// and the out and in policies with one reqid. It returns the SA ids:
// a's out (= b's in) and b's out (= a's in).
func childSA(t testing.TB, a, b *Backend, sa, sb side, reqid uint32, lt kernel.Lifetime) (ab, ba kernel.SAID) {
	t.Helper()
	ctx := context.Background()
	key := func() []byte { k := make([]byte, 20); rand.Read(k); return k }
	kab, kba := key(), key()
	spiB, err := b.GetSPI(ctx, sa.outer, sb.outer, kernel.ESP, reqid) // b receives a->b
	if err != nil {
		t.Fatal(err)
	}
	spiA, err := a.GetSPI(ctx, sb.outer, sa.outer, kernel.ESP, reqid)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(spi uint32, dir kernel.Direction, src, dst side, k []byte) *kernel.SA {
		var encap *kernel.Encap
		if src.port != 0 || dst.port != 0 { // both 0: raw ESP
			encap = &kernel.Encap{SrcPort: src.port, DstPort: dst.port}
		}
		return &kernel.SA{
			SPI: spi, Proto: kernel.ESP, Mode: kernel.Tunnel, Dir: dir,
			Src: src.outer, Dst: dst.outer, Encap: encap,
			Encr: proposal.EncrAESGCM16, EncrKey: k, ReplayWindow: 128, ESN: true,
			Lifetime:  lt,
			Selectors: []kernel.Selector{{Src: src.subnet, Dst: dst.subnet}},
			ReqID:     reqid,
		}
	}
	install := func(be *Backend, in, out *kernel.SA, local, remote side) {
		for _, s := range []*kernel.SA{in, out} {
			if err := be.AddSA(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		tmpl := kernel.Template{Src: local.outer, Dst: remote.outer, Proto: kernel.ESP, Mode: kernel.Tunnel, ReqID: reqid}
		if err := be.AddPolicy(ctx, &kernel.Policy{Dir: kernel.Out, Selector: kernel.Selector{Src: local.subnet, Dst: remote.subnet}, Action: kernel.Protect, Template: tmpl}); err != nil {
			t.Fatal(err)
		}
		tmpl.Src, tmpl.Dst = remote.outer, local.outer
		if err := be.AddPolicy(ctx, &kernel.Policy{Dir: kernel.In, Selector: kernel.Selector{Src: remote.subnet, Dst: local.subnet}, Action: kernel.Protect, Template: tmpl}); err != nil {
			t.Fatal(err)
		}
	}
	inB, outA := mk(spiB, kernel.In, sa, sb, kab), mk(spiB, kernel.Out, sa, sb, kab)
	inA, outB := mk(spiA, kernel.In, sb, sa, kba), mk(spiA, kernel.Out, sb, sa, kba)
	install(a, inA, outA, sa, sb)
	install(b, inB, outB, sb, sa)
	return outA.ID(), outB.ID()
}

// link carries ESP from one back end to another in order, decoupled by a
// queue (never dropping), with a hook to tamper with packets.
type link struct {
	q      chan linkPkt
	to     atomic.Pointer[Backend]
	n      atomic.Uint64
	tamper atomic.Pointer[func(n uint64, l, r netip.AddrPort, pkt []byte) bool] // true: handled
	batch  bool                                                                 // deliver with DeliverESPBatch (untampered packets only)
	done   chan struct{}
}

type linkPkt struct {
	l, r netip.AddrPort
	p    []byte
}

func newLink() *link {
	l := &link{q: make(chan linkPkt, 4096), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for p := range l.q {
			n := l.n.Add(1)
			if f := l.tamper.Load(); f != nil && (*f)(n, p.l, p.r, p.p) {
				continue
			}
			if !l.batch {
				l.to.Load().DeliverESP(p.r, p.l, p.p)
				continue
			}
			// Batched: hand over what is queued, as the NAT-T socket's
			// reader does; a tampered packet ends the batch.
			batch := [][]byte{p.p}
		more:
			for len(batch) < 32 {
				select {
				case q, ok := <-l.q:
					if !ok {
						break more
					}
					n := l.n.Add(1)
					if f := l.tamper.Load(); f != nil {
						l.to.Load().DeliverESPBatch(p.r, p.l, batch)
						batch = batch[:0]
						if (*f)(n, q.l, q.r, q.p) {
							break more
						}
					}
					batch = append(batch, q.p)
				default:
					break more
				}
			}
			l.to.Load().DeliverESPBatch(p.r, p.l, batch)
		}
	}()
	return l
}

func (l *link) send(local, remote netip.AddrPort, pkt []byte) error {
	l.q <- linkPkt{local, remote, append([]byte(nil), pkt...)}
	return nil
}

func (l *link) sendBatch(local, remote netip.AddrPort, pkts [][]byte) error {
	for _, p := range pkts {
		l.q <- linkPkt{local, remote, append([]byte(nil), p...)}
	}
	return nil
}

func (l *link) close() { close(l.q); <-l.done }

// waitFor polls f for up to d.
func waitFor(t testing.TB, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func drops(t testing.TB, b *Backend, id kernel.SAID) esp.DropCounts {
	t.Helper()
	d, err := b.SADrops(id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
