package vmtest

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"goswan/kernel"
	"goswan/kernel/userspace"
	"goswan/proposal"
	"goswan/tun"
)

// The SA and policy install rate of the user-space back end, in process
// (it needs no kernel): the counterpart of vmtool rate, which measures
// XFRM and PF_KEY in the VM. Same SAs (AES-128-CBC, HMAC-SHA2-512, tunnel
// mode) and policies (a /32 selector each).

var (
	rateLocal  = netip.MustParseAddr("192.0.2.1")
	rateRemote = netip.MustParseAddr("192.0.2.2")
)

func rateSA(i int, spi uint32, dir kernel.Direction) *kernel.SA {
	src, dst := rateLocal, rateRemote
	if dir == kernel.In {
		src, dst = rateRemote, rateLocal
	}
	key, ikey := make([]byte, 16), make([]byte, 64)
	key[0], key[1], ikey[0] = byte(i), byte(i>>8), byte(i>>16)
	return &kernel.SA{
		SPI: spi, Proto: kernel.ESP, Mode: kernel.Tunnel, Dir: dir, Src: src, Dst: dst,
		Encap: &kernel.Encap{SrcPort: 4500, DstPort: 4500},
		Encr:  proposal.EncrAESCBC, EncrKey: key, Integ: proposal.IntegHMACSHA2512256, IntegKey: ikey,
		ReplayWindow: 32, ReqID: kernel.ReqIDBase | uint32(i/2+1),
		Lifetime: kernel.Lifetime{Soft: kernel.Limits{Time: time.Hour}, Hard: kernel.Limits{Time: 2 * time.Hour}},
	}
}

func ratePolicy(i int) *kernel.Policy {
	inner := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	return &kernel.Policy{
		Dir:      kernel.Out,
		Selector: kernel.Selector{Src: netip.PrefixFrom(inner, 32), Dst: netip.MustParsePrefix("172.16.0.0/16")},
		Action:   kernel.Protect,
		Template: kernel.Template{Src: rateLocal, Dst: rateRemote, Proto: kernel.ESP, Mode: kernel.Tunnel, ReqID: kernel.ReqIDBase | uint32(i%4096+1)},
	}
}

func newUserspaceRate(tb testing.TB) *userspace.Backend {
	tb.Helper()
	_, dev, err := tun.NewNetstack([]netip.Addr{netip.MustParseAddr("10.255.0.1")}, 1400)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := userspace.New(userspace.Config{Device: dev, MTU: 1400,
		SendESP: func(local, remote netip.AddrPort, pkt []byte) error { return nil }})
	if err != nil {
		dev.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Close() })
	return b
}

// installPhases runs the phases of vmtool rate on b: n SAs added and
// deleted, n policies added and deleted, n SPIs reserved and completed
// into inbound SAs, then deleted. It returns each phase's rate.
func installPhases(ctx context.Context, b kernel.IPsec, n int) ([]string, []float64, error) {
	var names []string
	var rates []float64
	phase := func(name string, f func(i int) error) error {
		start := time.Now()
		for i := range n {
			if err := f(i); err != nil {
				return fmt.Errorf("%s #%d: %w", name, i, err)
			}
		}
		names = append(names, name)
		rates = append(rates, float64(n)/time.Since(start).Seconds())
		return nil
	}
	const spiBase = 0x10000
	spis := make([]uint32, n)
	for _, p := range []struct {
		name string
		f    func(i int) error
	}{
		{"sa-add", func(i int) error { return b.AddSA(ctx, rateSA(i, spiBase+uint32(i), kernel.Out)) }},
		{"sa-del", func(i int) error {
			return b.DeleteSA(ctx, kernel.SAID{Dst: rateRemote, SPI: spiBase + uint32(i), Proto: kernel.ESP})
		}},
		{"policy-add", func(i int) error { return b.AddPolicy(ctx, ratePolicy(i)) }},
		{"policy-del", func(i int) error { return b.DeletePolicy(ctx, ratePolicy(i)) }},
		{"getspi+sa-add", func(i int) error {
			spi, err := b.GetSPI(ctx, rateRemote, rateLocal, kernel.ESP, kernel.ReqIDBase|uint32(i/2+1))
			if err != nil {
				return err
			}
			spis[i] = spi
			return b.AddSA(ctx, rateSA(i, spi, kernel.In))
		}},
		{"sa-del-in", func(i int) error {
			return b.DeleteSA(ctx, kernel.SAID{Dst: rateLocal, SPI: spis[i], Proto: kernel.ESP})
		}},
	} {
		if err := phase(p.name, p.f); err != nil {
			return names, rates, err
		}
	}
	return names, rates, nil
}

// TestUserspaceInstallRate logs the user-space back end's rates for
// 10,000 SAs and policies (in process, on this machine's cores: not
// comparable with the VM's TCG figures of TestKernelInstallRate).
func TestUserspaceInstallRate(t *testing.T) {
	b := newUserspaceRate(t)
	names, rates, err := installPhases(context.Background(), b, 10000)
	for i := range names {
		t.Logf("userspace %-14s 10000: %9.0f/s (in process, host)", names[i], rates[i])
	}
	if err != nil {
		t.Fatal(err)
	}
	if ps := b.Policies(); len(ps) != 0 {
		t.Errorf("%d policies left after the deletes", len(ps))
	}
}

// BenchmarkUserspaceInstall: one op is one SA added and deleted, one policy
// added and deleted, and one SPI reserved, completed and deleted.
func BenchmarkUserspaceInstall(b *testing.B) {
	be := newUserspaceRate(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := installPhases(ctx, be, 1); err != nil {
			b.Fatal(err)
		}
	}
}
