package socket

import (
	"bytes"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// TestESPBatch sends runs of ESP packets between two socket sets with
// SendESPBatch (UDP GSO on Linux) and checks that OnESPBatch (recvmmsg,
// UDP GRO) hands over every packet, in order, with the right addresses,
// on bound and on wildcard sockets.
func TestESPBatch(t *testing.T) {
	for _, wildcard := range []bool{false, true} {
		name := map[bool]string{false: "bound", true: "wildcard"}[wildcard]
		t.Run(name, func(t *testing.T) {
			lo := netip.MustParseAddr("127.0.0.1")
			listen := []netip.Addr{lo}
			if wildcard {
				listen = []netip.Addr{netip.IPv4Unspecified()}
			}
			var mu sync.Mutex
			var got [][]byte
			var from, at netip.AddrPort
			done := make(chan struct{}, 1)
			const want = 2*50 + 3 + 1
			ike1, natt1 := freePorts(t)
			rx, err := Open(Config{Listen: listen, IKEPort: ike1, NATIKEPort: natt1,
				OnIKE: func(l, r netip.AddrPort, m []byte) {},
				OnESPBatch: func(l, r netip.AddrPort, pkts [][]byte) {
					mu.Lock()
					defer mu.Unlock()
					for _, p := range pkts {
						got = append(got, bytes.Clone(p))
					}
					from, at = r, l
					if len(got) == want {
						done <- struct{}{}
					}
				}})
			if err != nil {
				t.Fatal(err)
			}
			defer rx.Close()
			ike2, natt2 := freePorts(t)
			tx, err := Open(Config{Listen: listen, IKEPort: ike2, NATIKEPort: natt2, OnIKE: func(l, r netip.AddrPort, m []byte) {}})
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Close()

			var sent [][]byte
			mk := func(n int) []byte {
				p := make([]byte, n)
				p[0], p[1], p[2], p[3] = 0, 0, 0x10, byte(len(sent)+1) // an SPI, not the non-ESP marker
				for i := 4; i < n; i++ {
					p[i] = byte(len(sent) * i)
				}
				sent = append(sent, p)
				return p
			}
			var batch1, batch2 [][]byte
			for i := 0; i < 50; i++ {
				batch1 = append(batch1, mk(1436))
			}
			batch1 = append(batch1, mk(700)) // a short last one ends the GSO run
			for i := 0; i < 50; i++ {
				batch2 = append(batch2, mk(1436))
			}
			batch2 = append(batch2, mk(100), mk(200), mk(1436)) // runs of one
			local := netip.AddrPortFrom(lo, uint16(natt2))
			dst := netip.AddrPortFrom(lo, uint16(natt1))
			for _, b := range [][][]byte{batch1, batch2} {
				if err := tx.SendESPBatch(local, dst, b); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				mu.Lock()
				t.Fatalf("received %d of %d packets", len(got), want)
			}
			mu.Lock()
			defer mu.Unlock()
			for i := range sent {
				if !bytes.Equal(got[i], sent[i]) {
					t.Fatalf("packet %d: got %d octets, sent %d", i, len(got[i]), len(sent[i]))
				}
			}
			if from != local || at != dst {
				t.Fatalf("addresses %v -> %v, want %v -> %v", from, at, local, dst)
			}
			if c := rx.Counters(); c.ESPIn != want {
				t.Fatalf("ESPIn %d, want %d", c.ESPIn, want)
			}
		})
	}
}
