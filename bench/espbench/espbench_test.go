package espbench

import (
	"testing"
	"time"
)

func TestFigures(t *testing.T) {
	for _, tr := range Transforms {
		for _, f := range []func(Transform, int, int, time.Duration) (Figure, error){Seal, Open, Bare} {
			fig, err := f(tr, 512, 2, 20*time.Millisecond)
			if err != nil {
				t.Fatalf("%s: %v", tr.Name, err)
			}
			if fig.Packets == 0 || fig.Gbps <= 0 || fig.PPS <= 0 || fig.NsPerByte <= 0 || fig.Cores != 2 {
				t.Errorf("%s %s: %+v", tr.Name, fig.Op, fig)
			}
			if fig.Op != "bare" && fig.Allocs > 0.5 {
				t.Errorf("%s %s: %.2f allocations per packet", tr.Name, fig.Op, fig.Allocs)
			}
		}
	}
}

func TestInnerPacket(t *testing.T) {
	p := InnerPacket(64)
	if len(p) != 64 || p[0] != 0x45 || int(p[2])<<8|int(p[3]) != 64 {
		t.Errorf("packet % x", p[:20])
	}
	if len(InnerPacket(10)) != 28 {
		t.Errorf("short sizes are raised to 28")
	}
}
