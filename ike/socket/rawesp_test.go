package socket

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestRawESPLoopback sends raw ESP to 127.0.0.1 on a wildcard socket and
// reads it back: the IPv4 header is stripped, the addresses learned. It
// needs CAP_NET_RAW and skips without it.
func TestRawESPLoopback(t *testing.T) {
	type got struct {
		local, remote netip.Addr
		pkt           []byte
	}
	const spi = 0x7a11e5e1
	ch := make(chan got, 16)
	r, err := OpenRawESP(RawESPConfig{
		Listen: []netip.Addr{netip.IPv4Unspecified()},
		OnESP: func(local, remote netip.Addr, pkt []byte) {
			if binary.BigEndian.Uint32(pkt) == spi { // others' ESP is not ours
				ch <- got{local, remote, append([]byte(nil), pkt...)}
			}
		},
		Logf: t.Logf,
	})
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, os.ErrPermission) {
			t.Skipf("no CAP_NET_RAW: %v", err)
		}
		t.Fatal(err)
	}
	defer r.Close()
	pkt := make([]byte, 64)
	binary.BigEndian.PutUint32(pkt, spi)
	binary.BigEndian.PutUint32(pkt[4:], 1)
	lo := netip.MustParseAddr("127.0.0.1")
	if err := r.Send(lo, lo, pkt); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-ch:
		if g.local != lo || g.remote != lo || string(g.pkt) != string(pkt) {
			t.Errorf("got %v -> %v %x, want %v -> %v %x", g.remote, g.local, g.pkt, lo, lo, pkt)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("raw ESP not received")
	}
	if err := r.Send(netip.MustParseAddr("::1"), netip.MustParseAddr("::1"), pkt); err == nil {
		t.Error("sent IPv6 on an IPv4-only set of sockets")
	}
	if c := r.Counters(); c.Out != 1 || c.In < 1 || c.SendErrors != 1 {
		t.Errorf("counters %+v", c)
	}
}
