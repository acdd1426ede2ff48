package tun

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestNetstackLocal runs the servers against one netstack that talks to
// itself (its own address is local): a host echo service exposed inside
// the stack, reached again from the host through a forward and through
// SOCKS5 CONNECT. The tunnel path is tested in kernel/userspace.
func TestNetstackLocal(t *testing.T) {
	self := netip.MustParseAddr("10.9.0.1")
	ns, dev, err := NewNetstack([]netip.Addr{self}, 1400)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	go func() { // drain the device as a back end would
		bufs, sizes := [][]byte{make([]byte, 2000)}, []int{0}
		for {
			if _, err := dev.Read(bufs, sizes, Headroom); err != nil {
				return
			}
		}
	}()
	ns.Logf = t.Logf
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hl.Close()
	go func() {
		for {
			c, err := hl.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	ex, err := ns.Expose(Expose{Network: "tcp", Port: 80, Host: netip.MustParseAddrPort(hl.Addr().String())})
	if err != nil {
		t.Fatal(err)
	}
	fw, err := ns.Forward(Forward{Network: "tcp", Listen: netip.MustParseAddrPort("127.0.0.1:0"), Remote: netip.AddrPortFrom(self, 80)})
	if err != nil {
		t.Fatal(err)
	}
	echo := func(c net.Conn) {
		t.Helper()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		msg := bytes.Repeat([]byte("goswan "), 5000)
		go c.Write(msg)
		back := make([]byte, len(msg))
		if _, err := io.ReadFull(c, back); err != nil || !bytes.Equal(back, msg) {
			t.Fatalf("echo: %v", err)
		}
	}
	c, err := net.Dial("tcp", fw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	echo(c)
	c.Close()

	sx, err := ns.ServeSOCKS5("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err = net.Dial("tcp", sx.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{5, 1, 0})
	req := []byte{5, 1, 0, 3, 8}
	req = append(req, "10.9.0.1"...) // an IP literal written as a name
	req = binary.BigEndian.AppendUint16(req, 80)
	c.Write(req)
	var rep [2 + 10]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil || rep[0] != 5 || rep[1] != 0 || rep[3] != 0 {
		t.Fatalf("SOCKS5 replies %v, %v", rep, err)
	}
	echo(c)

	// A name is refused with "host unreachable"; closing stops everything.
	c2, _ := net.Dial("tcp", sx.Addr().String())
	c2.Write([]byte{5, 1, 0})
	c2.Write(append([]byte{5, 1, 0, 3, 11}, "example.com\x00\x50"...))
	var r2 [12]byte
	if _, err := io.ReadFull(c2, r2[:]); err != nil || r2[3] != socksHostUnreach {
		t.Fatalf("SOCKS5 name: replies %v, %v", r2, err)
	}
	c2.Close()
	ex.Close()
	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", fw.Addr().String()); err == nil {
		t.Error("forward still listening after Netstack.Close")
	}
}

func TestNewNetstackErrors(t *testing.T) {
	if _, _, err := NewNetstack(nil, 1400); err == nil {
		t.Error("no addresses accepted")
	}
	if _, _, err := NewNetstack([]netip.Addr{netip.MustParseAddr("10.0.0.1")}, 100); err == nil {
		t.Error("MTU 100 accepted")
	}
}
