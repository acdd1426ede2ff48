//go:build linux

package userspace

// BenchmarkNetnsTCP measures TCP through the data plane end to end, as it
// runs in the daemon: two network namespaces joined by a veth pair, in
// each a process with a kernel TUN (package tun), the NAT-T socket
// (package ike/socket) and a Backend, one Child SA installed by hand, and
// iperf3 through the tunnel. The same run measures wireguard-go set up the
// same way (two processes, MTU 1400), so the ratio comes from one run.
//
// It needs root, ip, iperf3 and (for the yardstick) wireguard-go and wg:
//
//	apt-get install -y iperf3 wireguard-tools
//	GOBIN=/tmp/wgbin go install golang.zx2c4.com/wireguard@latest
//	PATH=$PATH:/tmp/wgbin go test -run '^$' -bench NetnsTCP -benchtime 1x ./kernel/userspace/
//
// GOSWAN_NETNS_SECONDS sets each transfer's length (default 10). Each
// sub-benchmark runs its transfer once, whatever b.N, and reports Gbit/s
// and the CPU seconds per GB of both data-plane processes together
// (utime+stime from /proc/PID/stat; iperf3 and the kernel's own TCP work
// on behalf of iperf3 are not counted).
//
// The data-plane processes are this test binary, started again under
// "ip netns exec" with GOSWAN_NETNS_NODE set (TestMain hands over to
// netnsNode).

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"goswan/ike/socket"
	"goswan/kernel"
	"goswan/proposal"
	"goswan/tun"
)

func TestMain(m *testing.M) {
	if os.Getenv("GOSWAN_NETNS_NODE") != "" {
		if err := netnsNode(); err != nil {
			fmt.Fprintln(os.Stderr, "netns node:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const (
	nnOuterA = "192.168.231.1"
	nnOuterB = "192.168.231.2"
	nnInnerA = "10.231.1.1"
	nnInnerB = "10.231.2.1"
	nnMTU    = 1400
)

// netnsNode is one end: GOSWAN_NETNS_NODE=a or b, GOSWAN_NETNS_ENCR=aes
// or chacha. It prints "SPI n" (its inbound SPI), reads the peer's SPI
// from stdin, installs the SAs and policies, prints "READY", and runs
// until stdin closes; then it prints its counters to stderr.
func netnsNode() error {
	side := os.Getenv("GOSWAN_NETNS_NODE")
	local, remote := netip.MustParseAddr(nnOuterA), netip.MustParseAddr(nnOuterB)
	linner, rinner := netip.MustParseAddr(nnInnerA), netip.MustParseAddr(nnInnerB)
	if side == "b" {
		local, remote, linner, rinner = remote, local, rinner, linner
	}
	signal.Ignore(syscall.SIGINT)
	if dir := os.Getenv("GOSWAN_NETNS_PROF"); dir != "" {
		f, err := os.Create(filepath.Join(dir, "cpu-"+side+".pprof"))
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
		runtime.MemProfileRate = 1
		defer func() {
			runtime.GC()
			if f, err := os.Create(filepath.Join(dir, "allocs-"+side+".pprof")); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	kt, err := tun.NewKernelTUN("gsw"+side, nnMTU)
	if err != nil {
		return err
	}
	if err := kt.AddAddress(netip.PrefixFrom(linner, 32)); err != nil {
		kt.Close()
		return err
	}
	var socks *socket.Sockets
	cfg := Config{Device: kt, MTU: nnMTU, AddRoute: kt.AddRoute, DeleteRoute: kt.DeleteRoute,
		Logf:    func(f string, a ...any) { fmt.Fprintf(os.Stderr, side+": "+f+"\n", a...) },
		SendESP: func(l, r netip.AddrPort, p []byte) error { return socks.SendESP(l, r, p) },
	}
	netnsWire(&cfg, func() *socket.Sockets { return socks })
	be, err := New(cfg)
	if err != nil {
		kt.Close()
		return err
	}
	defer be.Close()
	scfg := socket.Config{Listen: []netip.Addr{local}, IKEPort: 500, NATIKEPort: 4500,
		OnIKE: func(l, r netip.AddrPort, m []byte) {}, OnESP: be.DeliverESP}
	netnsWireSocket(&scfg, be)
	socks, err = socket.Open(scfg)
	if err != nil {
		return err
	}
	defer socks.Close()

	ctx := context.Background()
	spiIn, err := be.GetSPI(ctx, remote, local, kernel.ESP, 1)
	if err != nil {
		return err
	}
	fmt.Printf("SPI %d\n", spiIn)
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadString('\n')
	if err != nil {
		return err
	}
	spiOut, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(line, "SPI ")), 10, 32)
	if err != nil {
		return err
	}
	encr, klen := proposal.EncrAESGCM16, 20
	if os.Getenv("GOSWAN_NETNS_ENCR") == "chacha" {
		encr, klen = proposal.EncrChaCha20Poly1305, 36
	}
	key := func(dir string) []byte {
		k := sha256.Sum256([]byte("netns " + dir))
		return append(k[:], k[:]...)[:klen]
	}
	kin, kout := key("b->a"), key("a->b")
	if side == "b" {
		kin, kout = kout, kin
	}
	lsub, rsub := netip.PrefixFrom(linner, 32), netip.PrefixFrom(rinner, 32)
	mk := func(spi uint32, dir kernel.Direction, src, dst netip.Addr, ssub, dsub netip.Prefix, k []byte) *kernel.SA {
		return &kernel.SA{SPI: spi, Proto: kernel.ESP, Mode: kernel.Tunnel, Dir: dir, Src: src, Dst: dst,
			Encap: &kernel.Encap{SrcPort: 4500, DstPort: 4500}, Encr: encr, EncrKey: k,
			ReplayWindow: 128, ESN: true, ReqID: 1,
			Selectors: []kernel.Selector{{Src: ssub, Dst: dsub}}}
	}
	if err := be.AddSA(ctx, mk(spiIn, kernel.In, remote, local, rsub, lsub, kin)); err != nil {
		return err
	}
	if err := be.AddSA(ctx, mk(uint32(spiOut), kernel.Out, local, remote, lsub, rsub, kout)); err != nil {
		return err
	}
	tmpl := kernel.Template{Src: local, Dst: remote, Proto: kernel.ESP, Mode: kernel.Tunnel, ReqID: 1}
	if err := be.AddPolicy(ctx, &kernel.Policy{Dir: kernel.Out, Selector: kernel.Selector{Src: lsub, Dst: rsub}, Action: kernel.Protect, Template: tmpl}); err != nil {
		return err
	}
	fmt.Println("READY")
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	io.Copy(io.Discard, in)
	runtime.ReadMemStats(&m1)
	st := be.Stats()
	fmt.Fprintf(os.Stderr, "%s: %+v sockets %+v\n", side, st, socks.Counters())
	fmt.Fprintf(os.Stderr, "%s: %d allocations for %d packets\n", side, m1.Mallocs-m0.Mallocs, st.OutPackets+st.InPackets)
	return nil
}

type nnEnv struct {
	b      *testing.B
	nsA    string
	nsB    string
	dir    string
	iperf3 string
}

func nnRun(b *testing.B, args ...string) {
	b.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func newNnEnv(b *testing.B) *nnEnv {
	if os.Geteuid() != 0 {
		b.Skip("needs root (network namespaces, TUN)")
	}
	if os.Getenv("CI") == "true" && os.Getenv("GOSWAN_NETNS_BENCH") == "" {
		b.Skip("CI: set GOSWAN_NETNS_BENCH=1 to run")
	}
	ip3, err := exec.LookPath("iperf3")
	if err != nil {
		b.Skip("needs iperf3 (apt-get install -y iperf3)")
	}
	id := strconv.Itoa(os.Getpid() % 100000)
	e := &nnEnv{b: b, nsA: "gsbA" + id, nsB: "gsbB" + id, dir: b.TempDir(), iperf3: ip3}
	nnRun(b, "ip", "netns", "add", e.nsA)
	b.Cleanup(func() { exec.Command("ip", "netns", "del", e.nsA).Run() })
	nnRun(b, "ip", "netns", "add", e.nsB)
	b.Cleanup(func() { exec.Command("ip", "netns", "del", e.nsB).Run() })
	nnRun(b, "ip", "link", "add", "vA"+id, "netns", e.nsA, "type", "veth", "peer", "name", "vB"+id, "netns", e.nsB)
	for _, c := range [][]string{
		{e.nsA, "addr", "add", nnOuterA + "/24", "dev", "vA" + id},
		{e.nsB, "addr", "add", nnOuterB + "/24", "dev", "vB" + id},
		{e.nsA, "link", "set", "vA" + id, "up"},
		{e.nsB, "link", "set", "vB" + id, "up"},
		{e.nsA, "link", "set", "lo", "up"},
		{e.nsB, "link", "set", "lo", "up"},
	} {
		nnRun(b, append([]string{"ip", "-n"}, c...)...)
	}
	return e
}

// proc is a started data-plane process.
type proc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	errb  strings.Builder
}

func (e *nnEnv) start(ns string, env []string, args ...string) *proc {
	b := e.b
	p := &proc{cmd: exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = &p.errb
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	so, err := p.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	p.out = bufio.NewReader(so)
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		p.stdin.Close()
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-done
		}
		if s := strings.TrimSpace(p.errb.String()); s != "" {
			b.Logf("%s", s)
		}
	})
	return p
}

func (p *proc) line(b *testing.B) string {
	s, err := p.out.ReadString('\n')
	if err != nil {
		b.Fatalf("data-plane process: %v\n%s", err, p.errb.String())
	}
	return strings.TrimSpace(s)
}

// cpu returns the process's user+system CPU time.
func cpu(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * time.Second / 100 // USER_HZ
}

// iperf runs iperf3 from a to b through the tunnel and returns the bytes
// received, the seconds and the CPU the pids used meanwhile.
func (e *nnEnv) iperf(pids ...int) (bytes, secs float64, used time.Duration) {
	b := e.b
	secsArg := os.Getenv("GOSWAN_NETNS_SECONDS")
	if secsArg == "" {
		secsArg = "10"
	}
	srv := exec.Command("ip", "netns", "exec", e.nsB, e.iperf3, "-s", "-1", "-B", nnInnerB)
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	time.Sleep(300 * time.Millisecond)
	var before time.Duration
	for _, p := range pids {
		before += cpu(p)
	}
	out, err := exec.Command("ip", "netns", "exec", e.nsA, e.iperf3, "-c", nnInnerB, "-B", nnInnerA, "-t", secsArg, "-J").Output()
	for _, p := range pids {
		used += cpu(p)
	}
	used -= before
	if err != nil {
		b.Fatalf("iperf3: %v\n%s", err, out)
	}
	var r struct {
		End struct {
			SumReceived struct {
				Bytes   float64 `json:"bytes"`
				Seconds float64 `json:"seconds"`
			} `json:"sum_received"`
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		b.Fatalf("iperf3 output: %v\n%s", err, out)
	}
	b.Logf("retransmits: %d", r.End.SumSent.Retransmits)
	return r.End.SumReceived.Bytes, r.End.SumReceived.Seconds, used
}

func report(b *testing.B, r nnResult) {
	bytes, secs, used := r.bytes, r.secs, r.used
	gbps := bytes * 8 / secs / 1e9
	cpg := used.Seconds() / (bytes / 1e9)
	b.ReportMetric(gbps, "Gbit/s")
	b.ReportMetric(cpg, "CPU-s/GB")
	b.ReportMetric(0, "ns/op")
	b.Logf("%.2f Gbit/s, %.2f CPU-s/GB (%.1f CPU-s over %.1f s)", gbps, cpg, used.Seconds(), secs)
}

func BenchmarkNetnsTCP(b *testing.B) {
	for _, encr := range []string{"aes", "chacha"} {
		b.Run("goswan-"+encr, func(b *testing.B) {
			e := newNnEnv(b)
			env := []string{"GOSWAN_NETNS_ENCR=" + encr}
			exe, err := os.Executable()
			if err != nil {
				b.Fatal(err)
			}
			pa := e.start(e.nsA, append(env, "GOSWAN_NETNS_NODE=a"), exe)
			pb := e.start(e.nsB, append(env, "GOSWAN_NETNS_NODE=b"), exe)
			sa, sb := pa.line(b), pb.line(b)
			fmt.Fprintln(pa.stdin, sb)
			fmt.Fprintln(pb.stdin, sa)
			if l := pa.line(b); l != "READY" {
				b.Fatal(l)
			}
			if l := pb.line(b); l != "READY" {
				b.Fatal(l)
			}
			report(b, e.iperfN(pa.cmd.Process.Pid, pb.cmd.Process.Pid))
		})
	}
	b.Run("wireguard-go", func(b *testing.B) {
		wggo, err := exec.LookPath("wireguard-go")
		if err != nil {
			b.Skip("needs wireguard-go in PATH (GOBIN=/tmp/wgbin go install golang.zx2c4.com/wireguard@latest)")
		}
		if _, err := exec.LookPath("wg"); err != nil {
			b.Skip("needs wg (apt-get install -y wireguard-tools)")
		}
		e := newNnEnv(b)
		key := func(name string) (priv, pub string) {
			k, err := exec.Command("wg", "genkey").Output()
			if err != nil {
				b.Fatal(err)
			}
			priv = filepath.Join(e.dir, name)
			os.WriteFile(priv, k, 0o600)
			c := exec.Command("wg", "pubkey")
			c.Stdin = strings.NewReader(string(k))
			pk, err := c.Output()
			if err != nil {
				b.Fatal(err)
			}
			return priv, strings.TrimSpace(string(pk))
		}
		privA, pubA := key("a")
		privB, pubB := key("b")
		var pids []int
		for _, s := range []struct{ ns, dev, priv, peer, peerOuter, inner, peerInner string }{
			{e.nsA, "wgba", privA, pubB, nnOuterB, nnInnerA, nnInnerB},
			{e.nsB, "wgbb", privB, pubA, nnOuterA, nnInnerB, nnInnerA},
		} {
			// Each instance gets its own /run: "ip netns exec" already
			// gives a mount namespace of its own (slave to the host's).
			p := e.start(s.ns, []string{"LOG_LEVEL=error"}, "sh", "-c",
				"mount -t tmpfs tmpfs /run && echo up && exec "+wggo+" -f "+s.dev)
			if l := p.line(b); l != "up" {
				b.Fatal(l)
			}
			pid := p.cmd.Process.Pid
			sock := fmt.Sprintf("/run/wireguard/%s.sock", s.dev)
			ok := false
			for i := 0; i < 100 && !ok; i++ {
				ok = exec.Command("nsenter", "-t", strconv.Itoa(pid), "-m", "test", "-S", sock).Run() == nil
				time.Sleep(20 * time.Millisecond)
			}
			nnRun(b, "nsenter", "-t", strconv.Itoa(pid), "-m", "-n", "wg", "set", s.dev, "listen-port", "51820",
				"private-key", s.priv, "peer", s.peer, "endpoint", s.peerOuter+":51820", "allowed-ips", s.peerInner+"/32")
			nnRun(b, "ip", "-n", s.ns, "addr", "add", s.inner+"/32", "dev", s.dev)
			nnRun(b, "ip", "-n", s.ns, "link", "set", s.dev, "mtu", strconv.Itoa(nnMTU), "up")
			nnRun(b, "ip", "-n", s.ns, "route", "add", s.peerInner+"/32", "dev", s.dev)
			pids = append(pids, pid)
		}
		report(b, e.iperfN(pids...))
	})
}

// iperfN runs the transfer once per benchmark run (b.N is ignored).
func (e *nnEnv) iperfN(pids ...int) nnResult {
	e.b.ResetTimer()
	bytes, secs, used := e.iperf(pids...)
	return nnResult{bytes, secs, used}
}

type nnResult struct {
	bytes, secs float64
	used        time.Duration
}

// netnsWire and netnsWireSocket wire the batch APIs, as cmd/pluto does.
func netnsWire(cfg *Config, socks func() *socket.Sockets) {
	if os.Getenv("GOSWAN_NETNS_NOBATCH") != "" {
		return
	}
	cfg.SendESPBatch = func(l, r netip.AddrPort, p [][]byte) error { return socks().SendESPBatch(l, r, p) }
}

func netnsWireSocket(cfg *socket.Config, be *Backend) {
	if os.Getenv("GOSWAN_NETNS_NOBATCH") != "" {
		return
	}
	cfg.OnESPBatch = be.DeliverESPBatch
}
