package userspace

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"goswan/esp"
	"goswan/kernel"
	"goswan/tun"
)

type pair struct {
	a, b       *Backend
	nsA, nsB   *tun.Netstack
	ab, ba     *link
	sa, sb     side
	idAB, idBA kernel.SAID
}

var (
	innerA = netip.MustParseAddr("10.1.0.1")
	innerB = netip.MustParseAddr("10.2.0.1")
)

// newPair builds two back ends, each on its own netstack, joined by
// in-process links, with one Child SA (AES-GCM-128) between them. workers
// is Config.InboundWorkers; -1 means serial with the batch APIs
// (SendESPBatch, DeliverESPBatch).
func newPair(t *testing.T, workers int) *pair {
	t.Helper()
	p := &pair{
		sa: side{outer: netip.MustParseAddr("192.0.2.1"), port: 4500, subnet: netip.MustParsePrefix("10.1.0.0/24")},
		sb: side{outer: netip.MustParseAddr("192.0.2.2"), port: 4500, subnet: netip.MustParsePrefix("10.2.0.0/24")},
	}
	var devA, devB tun.Device
	var err error
	if p.nsA, devA, err = tun.NewNetstack([]netip.Addr{innerA}, 1400); err != nil {
		t.Fatal(err)
	}
	if p.nsB, devB, err = tun.NewNetstack([]netip.Addr{innerB}, 1400); err != nil {
		t.Fatal(err)
	}
	p.ab, p.ba = newLink(), newLink()
	cfgA := Config{Device: devA, SendESP: p.ab.send, Logf: t.Logf, InboundWorkers: workers}
	cfgB := Config{Device: devB, SendESP: p.ba.send, Logf: t.Logf, InboundWorkers: workers}
	if workers < 0 {
		cfgA.SendESPBatch, cfgB.SendESPBatch = p.ab.sendBatch, p.ba.sendBatch
		p.ab.batch, p.ba.batch = true, true
	}
	if p.a, err = New(cfgA); err != nil {
		t.Fatal(err)
	}
	if p.b, err = New(cfgB); err != nil {
		t.Fatal(err)
	}
	p.ab.to.Store(p.b)
	p.ba.to.Store(p.a)
	p.idAB, p.idBA = childSA(t, p.a, p.b, p.sa, p.sb, 7, kernel.Lifetime{})
	t.Cleanup(func() {
		p.nsA.Close()
		p.nsB.Close()
		p.a.Close()
		p.b.Close()
		p.ab.close()
		p.ba.close()
	})
	return p
}

func query(t *testing.T, b *Backend, id kernel.SAID) kernel.SAStats {
	t.Helper()
	s, err := b.QuerySA(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTCPThroughTunnel moves 10 MB over TCP from one netstack to the
// other through ESP, tampers with the wire on the way (a flipped bit, a
// replay), and checks the bytes and that both ends' counters agree.
func TestTCPThroughTunnel(t *testing.T) {
	t.Run("serial", func(t *testing.T) { testTCPThroughTunnel(t, 0) })
	t.Run("pipelined", func(t *testing.T) { testTCPThroughTunnel(t, 1) })
	t.Run("batched", func(t *testing.T) { testTCPThroughTunnel(t, -1) })
}

func testTCPThroughTunnel(t *testing.T, workers int) {
	p := newPair(t, workers)
	const size = 10 << 20

	// The tamperer: packet 300 a->b goes first with a bit flipped (the
	// original follows, so the flow loses nothing), packet 600 is sent
	// twice (the copy is a replay).
	var tampered, replayed sync.WaitGroup
	tampered.Add(1)
	replayed.Add(1)
	f := func(n uint64, l, r netip.AddrPort, pkt []byte) bool {
		switch n {
		case 300:
			bad := append([]byte(nil), pkt...)
			bad[len(bad)/2] ^= 0x10
			p.b.DeliverESP(r, l, bad)
			p.b.DeliverESP(r, l, pkt)
			tampered.Done()
			return true
		case 600:
			p.b.DeliverESP(r, l, pkt)
			p.b.DeliverESP(r, l, pkt)
			replayed.Done()
			return true
		}
		return false
	}
	p.ab.tamper.Store(&f)

	l, err := p.nsB.ListenTCP(netip.AddrPortFrom(innerB, 5001))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type result struct {
		sum [32]byte
		n   int64
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		h := sha256.New()
		n, err := io.Copy(h, c)
		var r result
		copy(r.sum[:], h.Sum(nil))
		r.n, r.err = n, err
		got <- r
	}()

	data := make([]byte, size)
	rand.Read(data)
	want := sha256.Sum256(data)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := p.nsA.DialTCP(ctx, netip.AddrPortFrom(innerB, 5001))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	c.Close()
	var r result
	select {
	case r = <-got:
	case <-time.After(60 * time.Second):
		t.Fatal("transfer did not finish in 60 s")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.n != size || r.sum != want {
		t.Fatalf("received %d bytes, sha256 %x; sent %d, %x", r.n, r.sum, size, want)
	}
	t.Logf("10 MB in %v (%.0f MB/s)", time.Since(start), float64(size)/1e6/time.Since(start).Seconds())
	tampered.Wait()
	replayed.Wait()

	d := drops(t, p.b, p.idAB)
	if d[esp.DropAuth] != 1 {
		t.Errorf("authentication drops on b's inbound SA = %d, want 1", d[esp.DropAuth])
	}
	if d[esp.DropReplay] != 1 {
		t.Errorf("replay drops on b's inbound SA = %d, want 1", d[esp.DropReplay])
	}
	if s := p.b.Stats(); s.InDrops != 2 {
		t.Errorf("b's inbound drops = %d, want 2", s.InDrops)
	}

	// Counters: what one end sealed, the other opened (wait for the FIN
	// exchange to settle first).
	for _, dir := range []struct {
		name     string
		from, to *Backend
		id       kernel.SAID
	}{{"a->b", p.a, p.b, p.idAB}, {"b->a", p.b, p.a, p.idBA}} {
		var out, in kernel.SAStats
		waitFor(t, 5*time.Second, dir.name+" counters to agree", func() bool {
			out, in = query(t, dir.from, dir.id), query(t, dir.to, dir.id)
			return out.Packets == in.Packets && out.Bytes == in.Bytes
		})
		if out.Packets == 0 || out.LastUsed.IsZero() {
			t.Errorf("%s: no packets counted: %+v", dir.name, out)
		}
		t.Logf("%s: %d packets, %d bytes", dir.name, out.Packets, out.Bytes)
	}
	if in := query(t, p.b, p.idAB); in.Bytes < size {
		t.Errorf("b opened %d bytes, fewer than the %d sent", in.Bytes, size)
	}
}

// TestForwardExposeSOCKS reaches a TCP (and UDP) service on the host from
// the other end of the tunnel: through a forward on a's side and an expose
// on b's, and through a SOCKS5 proxy on a's side (CONNECT and UDP ASSOCIATE).
func TestForwardExposeSOCKS(t *testing.T) {
	p := newPair(t, 0)

	// Host services on 127.0.0.1: a TCP echo and a UDP echo.
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	ul, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := ul.ReadFrom(buf)
			if err != nil {
				return
			}
			ul.WriteTo(buf[:n], from)
		}
	}()
	hostTCP := netip.MustParseAddrPort(tl.Addr().String())
	hostUDP := netip.MustParseAddrPort(ul.LocalAddr().String())

	// b exposes the host services inside the tunnel at 10.2.0.1:7000.
	if _, err := p.nsB.Expose(tun.Expose{Network: "tcp", Port: 7000, Host: hostTCP}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.nsB.Expose(tun.Expose{Network: "udp", Port: 7000, Host: hostUDP}); err != nil {
		t.Fatal(err)
	}
	remote := netip.AddrPortFrom(innerB, 7000)

	// a forwards a host port to it.
	fw, err := p.nsA.Forward(tun.Forward{Network: "tcp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Remote: remote})
	if err != nil {
		t.Fatal(err)
	}
	echoTCP(t, fw.Addr().String(), nil)

	fwu, err := p.nsA.Forward(tun.Forward{Network: "udp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Remote: remote})
	if err != nil {
		t.Fatal(err)
	}
	uc, err := net.Dial("udp", fwu.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	echoUDP(t, uc, []byte("datagram through a forward"))

	// And through SOCKS5.
	sx, err := p.nsA.ServeSOCKS5("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echoTCP(t, sx.Addr().String(), func(c net.Conn) { socksConnect(t, c, remote) })
	socksUDPEcho(t, sx.Addr().String(), remote)
}

func echoTCP(t *testing.T, addr string, handshake func(net.Conn)) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if handshake != nil {
		handshake(c)
	}
	msg := make([]byte, 100000)
	rand.Read(msg)
	go c.Write(msg)
	back := make([]byte, len(msg))
	if _, err := io.ReadFull(c, back); err != nil {
		t.Fatalf("echo via %s: %v", addr, err)
	}
	if !bytes.Equal(back, msg) {
		t.Fatalf("echo via %s: bytes differ", addr)
	}
}

func echoUDP(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	buf := make([]byte, 2048)
	for try := 0; try < 20; try++ {
		c.Write(msg)
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil {
			if !bytes.Equal(buf[:n], msg) {
				t.Fatalf("UDP echo: got %q, want %q", buf[:n], msg)
			}
			return
		}
	}
	t.Fatal("UDP echo: no answer in 20 tries")
}

func socksHello(t *testing.T, c net.Conn) {
	t.Helper()
	c.Write([]byte{5, 1, 0})
	var r [2]byte
	if _, err := io.ReadFull(c, r[:]); err != nil || r != [2]byte{5, 0} {
		t.Fatalf("SOCKS5 method reply %v, %v", r, err)
	}
}

func socksRequest(t *testing.T, c net.Conn, cmd byte, dst netip.AddrPort) netip.AddrPort {
	t.Helper()
	req := []byte{5, cmd, 0, 1}
	a4 := dst.Addr().As4()
	req = append(req, a4[:]...)
	req = binary.BigEndian.AppendUint16(req, dst.Port())
	c.Write(req)
	var h [4]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		t.Fatal(err)
	}
	if h[1] != 0 {
		t.Fatalf("SOCKS5 request %d to %v: reply code %d", cmd, dst, h[1])
	}
	n := 4
	if h[3] == 4 {
		n = 16
	}
	b := make([]byte, n+2)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	a, _ := netip.AddrFromSlice(b[:n])
	return netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[n:]))
}

func socksConnect(t *testing.T, c net.Conn, dst netip.AddrPort) {
	socksHello(t, c)
	socksRequest(t, c, 1, dst)
}

func socksUDPEcho(t *testing.T, proxy string, dst netip.AddrPort) {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	socksHello(t, c)
	relay := socksRequest(t, c, 3, netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
	uc, err := net.Dial("udp", relay.String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	msg := []byte("datagram through SOCKS5")
	hdr := []byte{0, 0, 0, 1}
	a4 := dst.Addr().As4()
	hdr = append(hdr, a4[:]...)
	hdr = binary.BigEndian.AppendUint16(hdr, dst.Port())
	buf := make([]byte, 2048)
	for try := 0; try < 20; try++ {
		uc.Write(append(append([]byte(nil), hdr...), msg...))
		uc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := uc.Read(buf)
		if err != nil {
			continue
		}
		if n < len(hdr) || !bytes.Equal(buf[:len(hdr)], hdr) || !bytes.Equal(buf[len(hdr):n], msg) {
			t.Fatalf("SOCKS5 UDP reply %x, want header %x and %q", buf[:n], hdr, msg)
		}
		return
	}
	t.Fatal("SOCKS5 UDP: no answer in 20 tries")
}
