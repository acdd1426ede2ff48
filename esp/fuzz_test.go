package esp

import (
	"bytes"
	"net/netip"
	"testing"

	"goswan/proposal"
)

// FuzzOpen feeds random bytes and mutated valid packets to fixed SAs of
// every transform and both modes: nothing may panic, an error must leave
// dst alone, and a success must be an authenticated packet.
func FuzzOpen(f *testing.F) {
	type fixture struct{ out, in *SA }
	var fx []fixture
	for _, s := range suites {
		for _, mode := range []Mode{Tunnel, Transport} {
			cfg := s.config(0xf000)
			cfg.Mode = mode
			cfg.ESN = s.encr == proposal.EncrAESGCM16
			cfg.Local, cfg.Remote = netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
			cfg.Selectors = []Selector{{Src: netip.MustParsePrefix("0.0.0.0/0"), Dst: netip.MustParsePrefix("0.0.0.0/0")}}
			out, err := NewSA(cfg)
			if err != nil {
				f.Fatal(err)
			}
			in, _ := NewSA(cfg)
			fx = append(fx, fixture{out, in})
		}
	}
	for i, x := range fx {
		for _, n := range []int{0, 1, 30, 200} {
			p, _ := x.out.Seal(nil, udp4("10.0.0.1", "10.0.0.2", 1, 2, n))
			f.Add(uint8(i), p)
		}
	}
	f.Add(uint8(0), []byte{})
	f.Add(uint8(1), []byte{0x45, 0, 0, 20})
	f.Fuzz(func(t *testing.T, which uint8, pkt []byte) {
		x := fx[int(which)%len(fx)]
		dst := []byte("prefix")
		out, err := x.in.Open(dst, pkt)
		if err != nil {
			if len(out) != len(dst) || !bytes.Equal(out, []byte("prefix")) {
				t.Fatalf("dst changed on error %v", err)
			}
			if _, ok := err.(DropReason); !ok {
				t.Fatalf("error %v is not a DropReason", err)
			}
			return
		}
		if _, ok := ParsePacketSelector(out[len(dst):]); !ok {
			t.Fatalf("accepted a non-IP inner packet %x", out)
		}
	})
}
