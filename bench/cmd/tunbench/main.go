// Command tunbench measures tunnels end to end: two daemons of ours (and,
// with -compare, wireguard-go and strongSwan's charon with kernel-libipsec),
// one on each side, traffic from a load generator of its own through the
// tunnel, and figures per run: throughput, packets per second, CPU seconds
// per gigabyte for each daemon (/proc/PID/stat), latency percentiles (UDP
// ping-pong, and the kernel's TCP RTT under load) and loss.
//
// Set-ups:
//
//	userspace  root: two network namespaces joined by a veth pair, pluto
//	           --use-userspace (TUN) in each.
//	netstack   no root needed: two plutos with --use-netstack on loopback
//	           (127.0.0.1, 127.0.0.2), the traffic entering through
//	           --netstack-forward and leaving through --netstack-expose.
//	xfrm       root and a kernel with ESP: pluto --use-xfrm in namespaces.
//	wireguard  -compare: wireguard-go in namespaces, each with its own /run.
//	strongswan -compare: charon with kernel-libipsec in namespaces.
//
// The load generator is tunbench itself, re-executed with the hidden
// subcommand "__gen" under `ip netns exec`. Everything tunbench makes is
// named uniquely and removed at the end, on SIGINT/SIGTERM too.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"goswan/bench/daemons"
	"goswan/bench/lab"
	"goswan/bench/loadgen"
	"goswan/bench/report"
	"goswan/bench/sysstat"
	"goswan/internal/peers"
)

type options struct {
	backends  string
	compare   bool
	duration  time.Duration
	pingDur   time.Duration
	streams   int
	udpRate   int
	udpSize   int
	runs      int
	tests     string
	out       string
	binDir    string
	verbose   bool
	quietBusy float64
	quietWait time.Duration
	ike, esp  string
	swanIKE   string
	swanESP   string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "__gen" {
		os.Exit(genMain(os.Args[2:]))
	}
	var o options
	fs := flag.NewFlagSet("tunbench", flag.ExitOnError)
	defBackends := "netstack"
	if lab.IsRoot() {
		defBackends = "userspace,netstack"
	}
	fs.StringVar(&o.backends, "backends", defBackends, "our back ends to run: userspace, netstack, xfrm (comma-separated)")
	fs.BoolVar(&o.compare, "compare", false, "also run wireguard-go and strongSwan (kernel-libipsec) where installed, and print ratios ours/theirs")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "length of each TCP and UDP run")
	fs.DurationVar(&o.pingDur, "ping-duration", 2*time.Second, "length of each UDP ping-pong run")
	fs.IntVar(&o.streams, "streams", 4, "TCP streams of the multi-stream case (the single-stream case always runs)")
	fs.IntVar(&o.udpRate, "udp-rate", 20000, "UDP datagrams per second")
	fs.IntVar(&o.udpSize, "udp-size", 1200, "UDP payload bytes")
	fs.IntVar(&o.runs, "runs", 3, "runs of each case")
	fs.StringVar(&o.tests, "tests", "tcp1,tcpN,udp,ping", "cases: tcp1, tcpN, udp, ping")
	fs.StringVar(&o.out, "out", "", "write OUT.json, OUT.md and OUT.png (e.g. bench/results/tunbench)")
	fs.StringVar(&o.binDir, "bindir", "", "folder with pluto (default: build it)")
	fs.BoolVar(&o.verbose, "v", false, "say every step")
	fs.Float64Var(&o.quietBusy, "quiet-busy", 0.15, "before each run, wait until the machine is at most this busy (0..1)")
	fs.DurationVar(&o.quietWait, "quiet-wait", 10*time.Second, "but wait at most this long")
	fs.StringVar(&o.ike, "ike", "aes_gcm128-sha2_256-dh31", "our ike=")
	fs.StringVar(&o.esp, "esp", "aes_gcm128", "our esp=")
	fs.StringVar(&o.swanIKE, "swan-ike", "aes128gcm16-prfsha256-curve25519", "strongSwan's IKE proposal")
	fs.StringVar(&o.swanESP, "swan-esp", "aes128gcm16", "strongSwan's ESP proposal")
	fs.Parse(os.Args[1:])

	rep, err := run(o)
	if rep != nil {
		report.PrintSummary(os.Stdout, rep)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tunbench:", err)
		os.Exit(1)
	}
}

// impl is one implementation's set-up.
type impl struct {
	name  string
	ours  bool
	setup func(l *lab.Lab, o options) (*tunnel, error)
}

// tunnel is a running set-up: where the generator's two ends run and how
// to reach the server, and the daemons to meter.
type tunnel struct {
	clientNS, serverNS *lab.Namespace // nil: the host
	client, server     loadgen.Addrs  // what the client dials; what the server listens on
	pids               [2]int         // daemon A (client side), daemon B
	// counters, when set, reads the sending and receiving daemons' ESP
	// (or WireGuard) counters: bytes and packets out of A and into B.
	counters func() (outBytes, outPkts, inBytes, inPkts uint64, err error)
}

type testCase struct {
	key, name string
	spec      loadgen.Spec
}

func run(o options) (*report.Report, error) {
	if o.runs < 1 {
		return nil, fmt.Errorf("-runs must be at least 1")
	}
	root, err := lab.New()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	stop := root.CloseOnSignal()
	defer stop()
	if o.verbose {
		root.Logf = func(f string, a ...any) { fmt.Fprintf(os.Stderr, "  "+f+"\n", a...) }
	}

	var cases []testCase
	for _, t := range strings.Split(o.tests, ",") {
		switch strings.TrimSpace(t) {
		case "tcp1":
			cases = append(cases, testCase{"tcp1", "tcp-1", loadgen.Spec{Test: "tcp", Streams: 1, Duration: o.duration}})
		case "tcpN":
			cases = append(cases, testCase{"tcpN", fmt.Sprintf("tcp-%d", o.streams), loadgen.Spec{Test: "tcp", Streams: o.streams, Duration: o.duration}})
		case "udp":
			cases = append(cases, testCase{"udp", fmt.Sprintf("udp-%dB-%dk", o.udpSize, o.udpRate/1000), loadgen.Spec{Test: "udp", Rate: o.udpRate, Size: o.udpSize, Duration: o.duration}})
		case "ping":
			cases = append(cases, testCase{"ping", "ping", loadgen.Spec{Test: "ping", Size: 64, Duration: o.pingDur}})
		case "":
		default:
			return nil, fmt.Errorf("unknown case %q (tcp1, tcpN, udp, ping)", t)
		}
	}

	rep := report.New("tunbench", map[string]any{
		"duration_s": o.duration.Seconds(), "ping_duration_s": o.pingDur.Seconds(), "streams": o.streams,
		"udp_rate": o.udpRate, "udp_size": o.udpSize, "runs": o.runs, "ike": o.ike, "esp": o.esp,
		"swan_ike": o.swanIKE, "swan_esp": o.swanESP,
	})
	for _, c := range cases {
		switch c.spec.Test {
		case "tcp":
			rep.Primary[c.name] = report.PrimaryMetric{Name: "gbps", Unit: "Gbit/s", HigherBetter: true}
			rep.Secondary[c.name] = []report.PrimaryMetric{{Name: "cpu_s_per_gb", Unit: "CPU s/GB"}, {Name: "tcp_rtt_us", Unit: "us"}}
		case "udp":
			rep.Primary[c.name] = report.PrimaryMetric{Name: "cpu_s_per_gb", Unit: "CPU s/GB (A+B)"}
			rep.Secondary[c.name] = []report.PrimaryMetric{{Name: "pps", Unit: "pkt/s", HigherBetter: true}}
		case "ping":
			rep.Primary[c.name] = report.PrimaryMetric{Name: "rtt_p50_us", Unit: "us"}
			rep.Secondary[c.name] = []report.PrimaryMetric{{Name: "rtt_p99_us", Unit: "us"}}
		}
	}

	var impls []impl
	for _, b := range strings.Split(o.backends, ",") {
		switch b = strings.TrimSpace(b); b {
		case "userspace", "xfrm":
			if !lab.IsRoot() {
				rep.Skipped = append(rep.Skipped, "goswan-"+b+": needs root (namespaces)")
				continue
			}
			if b == "xfrm" {
				if why := xfrmESPMissing(root); why != "" {
					rep.Skipped = append(rep.Skipped, "goswan-xfrm: "+why)
					continue
				}
			}
			impls = append(impls, impl{"goswan-" + b, true, func(l *lab.Lab, o options) (*tunnel, error) { return setupOursNS(l, o, b) }})
		case "netstack":
			impls = append(impls, impl{"goswan-netstack", true, setupNetstack})
		case "":
		default:
			return nil, fmt.Errorf("unknown back end %q (userspace, netstack, xfrm)", b)
		}
	}
	if o.compare {
		if ok, why := daemons.HaveWireguard(); ok {
			impls = append(impls, impl{"wireguard-go", false, setupWireguard})
		} else {
			rep.Skipped = append(rep.Skipped, why)
		}
		if ok, why := daemons.HaveCharon(); ok {
			impls = append(impls, impl{"strongswan", false, setupCharon})
		} else {
			rep.Skipped = append(rep.Skipped, why)
		}
	}
	for _, s := range rep.Skipped {
		fmt.Fprintf(os.Stderr, "tunbench: not running %s\n", s)
	}
	if len(impls) == 0 {
		return rep, fmt.Errorf("nothing to run")
	}
	needBin := false
	for _, im := range impls {
		needBin = needBin || im.ours
	}
	if needBin {
		if o.binDir == "" {
			fmt.Fprintf(os.Stderr, "tunbench: building pluto\n")
		}
		if o.binDir, err = daemons.FindGoswan(root, o.binDir); err != nil {
			return nil, err
		}
	}

	prog := report.NewProgress(os.Stderr, len(impls)*(1+o.runs*len(cases)))
	for _, im := range impls {
		prog.Step("%s: setting up", im.name)
		l, err := lab.New()
		if err != nil {
			return rep, err
		}
		l.Logf = root.Logf
		root.Defer(l.Close)
		tn, err := im.setup(l, o)
		if err == nil {
			err = startServer(l, tn)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "tunbench: %s: set-up failed: %v\n", im.name, err)
			for _, c := range cases {
				rep.Add(report.Sample{Case: c.name, Impl: im.name, Run: 1, Error: "set-up: " + report.FirstLine(err.Error())})
			}
			prog.Total -= o.runs * len(cases)
			l.Close()
			continue
		}
		for r := 1; r <= o.runs; r++ {
			for _, c := range cases {
				prog.Step("%s: %s, run %d of %d", im.name, c.name, r, o.runs)
				s := measure(l, o, tn, c)
				s.Impl, s.Run = im.name, r
				if s.Error != "" {
					fmt.Fprintf(os.Stderr, "tunbench:   failed: %s\n", s.Error)
				} else {
					fmt.Fprintf(os.Stderr, "tunbench:   %s\n", s.Line())
				}
				rep.Add(s)
			}
		}
		l.Close()
	}
	var ours, theirs []string
	for _, im := range impls {
		if im.ours {
			ours = append(ours, im.name)
		} else {
			theirs = append(theirs, im.name)
		}
	}
	rep.Compare(ours, theirs)
	if err := rep.Finish("tunbench", o.out); err != nil {
		return rep, err
	}
	if left := lab.Leftovers(os.Getpid()); len(left) > 0 {
		return rep, fmt.Errorf("namespaces left behind: %v", left)
	}
	return rep, nil
}

// measure runs one case once.
func measure(l *lab.Lab, o options, tn *tunnel, c testCase) report.Sample {
	s := report.Sample{Case: c.name, Metrics: map[string]float64{}}
	s.Noise = sysstat.WaitQuiet(o.quietBusy, o.quietWait)
	var ob0, op0, ib0, ip0 uint64
	if tn.counters != nil {
		ob0, op0, ib0, ip0, _ = tn.counters()
	}
	meter := sysstat.StartMeter(tn.pids[0], tn.pids[1])
	res, err := runClient(tn, c.spec)
	rd := meter.Stop()
	s.Noise.BusyDuring = rd.Busy
	s.Metrics["busy_during"] = rd.Busy * 100
	if err != nil {
		s.Error = report.FirstLine(err.Error())
		return s
	}
	el := res.Elapsed.Seconds()
	gb := float64(res.RecvBytes) / 1e9
	s.Metrics["recv_bytes"] = float64(res.RecvBytes)
	s.Metrics["sent_bytes"] = float64(res.SentBytes)
	s.Metrics["cpu_s_a"] = rd.CPU[0].Seconds()
	s.Metrics["cpu_s_b"] = rd.CPU[1].Seconds()
	if gb > 0 && c.spec.Test != "ping" {
		s.Metrics["cpu_s_per_gb_a"] = rd.CPU[0].Seconds() / gb
		s.Metrics["cpu_s_per_gb_b"] = rd.CPU[1].Seconds() / gb
		s.Metrics["cpu_s_per_gb"] = (rd.CPU[0] + rd.CPU[1]).Seconds() / gb
	}
	switch c.spec.Test {
	case "tcp":
		s.Metrics["gbps"] = float64(res.RecvBytes) * 8 / el / 1e9
		s.Metrics["tcp_rtt_us"] = float64(res.TCPRTT.Microseconds())
	case "udp":
		s.Metrics["gbps"] = float64(res.RecvBytes) * 8 / el / 1e9
		s.Metrics["pps"] = float64(res.RecvPkts) / el
		s.Metrics["sent_pkts"] = float64(res.SentPkts)
		s.Metrics["recv_pkts"] = float64(res.RecvPkts)
		if res.SentPkts > 0 {
			s.Metrics["loss_pct"] = 100 * float64(res.Lost) / float64(res.SentPkts)
		}
	case "ping":
		s.Metrics["rtt_p50_us"] = float64(res.P50.Nanoseconds()) / 1e3
		s.Metrics["rtt_p90_us"] = float64(res.P90.Nanoseconds()) / 1e3
		s.Metrics["rtt_p99_us"] = float64(res.P99.Nanoseconds()) / 1e3
		s.Metrics["rtt_max_us"] = float64(res.Max.Nanoseconds()) / 1e3
		s.Metrics["pings"] = float64(res.SentPkts)
		if res.SentPkts > 0 {
			s.Metrics["loss_pct"] = 100 * float64(res.Lost) / float64(res.SentPkts)
		}
	}
	if tn.counters != nil {
		// Let the last packets and ACKs land before reading the counters.
		time.Sleep(200 * time.Millisecond)
		if ob, op, ib, ip, err := tn.counters(); err == nil {
			s.Metrics["tunnel_out_bytes_a"] = float64(ob - ob0)
			s.Metrics["tunnel_out_pkts_a"] = float64(op - op0)
			s.Metrics["tunnel_in_bytes_b"] = float64(ib - ib0)
			s.Metrics["tunnel_in_pkts_b"] = float64(ip - ip0)
			if c.spec.Test == "tcp" && op > op0 {
				s.Metrics["pps"] = float64(op-op0) / el
			}
		}
	}
	return s
}

// genArgs renders loadgen addresses as flags.
func genArgs(a loadgen.Addrs) []string {
	return []string{"-ctl", a.Ctl, "-tcp", a.TCP, "-udp", a.UDP, "-echo", a.Echo}
}

func command(ns *lab.Namespace, args ...string) *exec.Cmd {
	exe, _ := os.Executable()
	args = append([]string{exe, "__gen"}, args...)
	if ns != nil {
		return ns.Command(args...)
	}
	return exec.Command(args[0], args[1:]...)
}

// startServer starts the generator's server end.
func startServer(l *lab.Lab, tn *tunnel) error {
	p, err := l.Start("gen-server", command(tn.serverNS, append([]string{"serve"}, genArgs(tn.server)...)...))
	if err != nil {
		return err
	}
	return p.WaitOutput("serving", 10*time.Second)
}

type clientOutput struct {
	Result *loadgen.Result `json:"result"`
	Error  string          `json:"error"`
}

func runClient(tn *tunnel, spec loadgen.Spec) (*loadgen.Result, error) {
	args := append([]string{"client", "-test", spec.Test, "-streams", strconv.Itoa(spec.Streams), "-duration", spec.Duration.String(),
		"-rate", strconv.Itoa(spec.Rate), "-size", strconv.Itoa(spec.Size)}, genArgs(tn.client)...)
	cmd := command(tn.clientNS, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return nil, fmt.Errorf("generator client: %v: %s", err, strings.TrimSpace(stderr.String()))
		}
	case <-time.After(spec.Duration + 60*time.Second):
		cmd.Process.Kill()
		<-done
		return nil, fmt.Errorf("generator client did not finish in %v", spec.Duration+60*time.Second)
	}
	var out clientOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("generator client printed %q: %v", stdout.String(), err)
	}
	if out.Error != "" {
		return out.Result, errors.New(out.Error)
	}
	return out.Result, nil
}

// genMain is the hidden subcommand: "serve" or "client".
func genMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "__gen serve|client ...")
		return 2
	}
	fs := flag.NewFlagSet("__gen "+args[0], flag.ExitOnError)
	var a loadgen.Addrs
	var spec loadgen.Spec
	fs.StringVar(&a.Ctl, "ctl", "", "")
	fs.StringVar(&a.TCP, "tcp", "", "")
	fs.StringVar(&a.UDP, "udp", "", "")
	fs.StringVar(&a.Echo, "echo", "", "")
	fs.StringVar(&spec.Test, "test", "tcp", "")
	fs.IntVar(&spec.Streams, "streams", 1, "")
	fs.DurationVar(&spec.Duration, "duration", 5*time.Second, "")
	fs.IntVar(&spec.Rate, "rate", 0, "")
	fs.IntVar(&spec.Size, "size", 0, "")
	fs.Parse(args[1:])
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	switch args[0] {
	case "serve":
		err := loadgen.Serve(ctx, a, func() { fmt.Println("serving"); os.Stdout.Sync() })
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	case "client":
		res, err := loadgen.RunClient(ctx, a, spec)
		out := clientOutput{Result: res}
		if err != nil {
			out.Error = err.Error()
		}
		json.NewEncoder(os.Stdout).Encode(out)
		return 0
	}
	return 2
}

// Ports of the generator inside the tunnel.
var tunnelPorts = [4]int{7000, 7001, 7002, 7003}

func addrsAt(host string) loadgen.Addrs {
	hp := func(p int) string { return net.JoinHostPort(host, strconv.Itoa(p)) }
	return loadgen.Addrs{Ctl: hp(tunnelPorts[0]), TCP: hp(tunnelPorts[1]), UDP: hp(tunnelPorts[2]), Echo: hp(tunnelPorts[3])}
}

// pair makes two namespaces A and B joined by a veth: A 192.0.2.1/24, B
// 192.0.2.2/24.
func pair(l *lab.Lab, la, lb string) (a, b *lab.Namespace, err error) {
	if a, err = l.NewNamespace(la); err != nil {
		return
	}
	if b, err = l.NewNamespace(lb); err != nil {
		return
	}
	_, _, err = lab.Connect(a, b, "192.0.2.1/24", "192.0.2.2/24")
	return
}

const psk = "goswan tunbench pre-shared key, long enough"

func oursConf(o options, left, right string, extra string) string {
	return fmt.Sprintf(`conn bench
	left=%s
	leftid=@a
	leftsubnet=10.0.1.0/24
	leftsourceip=10.0.1.1
	right=%s
	rightid=@b
	rightsubnet=10.0.2.0/24
	rightsourceip=10.0.2.1
	authby=secret
	ike=%s
	esp=%s
	rekey=no
	auto=add
%s`, left, right, o.ike, o.esp, extra)
}

// oursCounters reads the Child SA counters of our two daemons.
func oursCounters(a, b *daemons.Pluto) func() (uint64, uint64, uint64, uint64, error) {
	return func() (ob, op, ib, ip uint64, err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sa, err := a.Status(ctx)
		if err != nil {
			return
		}
		sb, err := b.Status(ctx)
		if err != nil {
			return
		}
		for _, c := range sa.ChildSAs {
			ob += c.BytesOut
			op += c.PacketsOut
		}
		for _, c := range sb.ChildSAs {
			ib += c.BytesIn
			ip += c.PacketsIn
		}
		return
	}
}

// setupOursNS: pluto with --use-userspace or --use-xfrm in two namespaces.
func setupOursNS(l *lab.Lab, o options, backend string) (*tunnel, error) {
	a, b, err := pair(l, "a", "b")
	if err != nil {
		return nil, err
	}
	conf := oursConf(o, "192.0.2.1", "192.0.2.2", "")
	if backend == "userspace" {
		conf += "\tencapsulation=yes\n"
	}
	secrets := "@a @b : PSK \"" + psk + "\"\n"
	if backend == "xfrm" {
		// The kernel routes by policy; give each side its tunnel address
		// and a route that picks it as the source.
		for _, s := range []struct {
			ns         *lab.Namespace
			self, peer string
			net        string
		}{{a, "10.0.1.1", "192.0.2.2", "10.0.2.0/24"}, {b, "10.0.2.1", "192.0.2.1", "10.0.1.0/24"}} {
			if _, err := s.ns.Script(fmt.Sprintf("ip addr add %s/32 dev lo; ip route add %s via %s src %s", s.self, s.net, s.peer, s.self)); err != nil {
				return nil, err
			}
		}
	}
	var ps [2]*daemons.Pluto
	for i, s := range []struct {
		ns   *lab.Namespace
		addr string
	}{{a, "192.0.2.1"}, {b, "192.0.2.2"}} {
		ps[i], err = daemons.StartPluto(l, s.ns, daemons.PlutoConfig{BinDir: o.binDir, Name: s.ns.Label, Conf: conf, Secrets: secrets,
			Args: []string{"--use-" + backend, "--listen", s.addr}})
		if err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ps[0].Up(ctx, "bench"); err != nil {
		return nil, err
	}
	return &tunnel{clientNS: a, serverNS: b, client: addrsAt("10.0.2.1"), server: addrsAt("0.0.0.0"),
		pids: [2]int{ps[0].PID(), ps[1].PID()}, counters: oursCounters(ps[0], ps[1])}, nil
}

// freePorts returns n TCP+UDP ports free on 127.0.0.1 and 127.0.0.2.
func freePorts(n int) ([]int, error) {
	var out []int
	for tries := 0; len(out) < n && tries < 200; tries++ {
		u, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		p := u.LocalAddr().(*net.UDPAddr).Port
		ok := true
		var hold []interface{ Close() error }
		hold = append(hold, u)
		for _, h := range []string{"127.0.0.1", "127.0.0.2"} {
			t, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			hold = append(hold, t)
			if h != "127.0.0.1" {
				u2, err := net.ListenPacket("udp", net.JoinHostPort(h, strconv.Itoa(p)))
				if err != nil {
					ok = false
					break
				}
				hold = append(hold, u2)
			}
		}
		for _, h := range hold {
			h.Close()
		}
		if ok {
			out = append(out, p)
		}
	}
	if len(out) < n {
		return nil, fmt.Errorf("could not find %d free ports on loopback", n)
	}
	return out, nil
}

// setupNetstack: two plutos with --use-netstack on loopback, no root.
func setupNetstack(l *lab.Lab, o options) (*tunnel, error) {
	ports, err := freePorts(10)
	if err != nil {
		return nil, err
	}
	ike, natt := strconv.Itoa(ports[0]), strconv.Itoa(ports[1])
	fwd, svc := ports[2:6], ports[6:10]
	conf := oursConf(o, "127.0.0.1", "127.0.0.2", "")
	secrets := "@a @b : PSK \"" + psk + "\"\n"
	protos := [4]string{"tcp", "tcp", "udp", "udp"}
	var west, east []string
	for i := range 4 {
		west = append(west, "--netstack-forward", fmt.Sprintf("%s:127.0.0.1:%d=10.0.2.1:%d", protos[i], fwd[i], tunnelPorts[i]))
		east = append(east, "--netstack-expose", fmt.Sprintf("%s:%d=127.0.0.1:%d", protos[i], tunnelPorts[i], svc[i]))
	}
	var ps [2]*daemons.Pluto
	for i, s := range []struct {
		name, addr string
		extra      []string
	}{{"a", "127.0.0.1", west}, {"b", "127.0.0.2", east}} {
		args := append([]string{"--use-netstack", "--listen", s.addr, "--ikeport", ike, "--natikeport", natt}, s.extra...)
		ps[i], err = daemons.StartPluto(l, nil, daemons.PlutoConfig{BinDir: o.binDir, Name: "ns-" + s.name, Conf: conf, Secrets: secrets, Args: args})
		if err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ps[0].Up(ctx, "bench"); err != nil {
		return nil, err
	}
	hp := func(p int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)) }
	return &tunnel{
		client:   loadgen.Addrs{Ctl: hp(fwd[0]), TCP: hp(fwd[1]), UDP: hp(fwd[2]), Echo: hp(fwd[3])},
		server:   loadgen.Addrs{Ctl: hp(svc[0]), TCP: hp(svc[1]), UDP: hp(svc[2]), Echo: hp(svc[3])},
		pids:     [2]int{ps[0].PID(), ps[1].PID()},
		counters: oursCounters(ps[0], ps[1]),
	}, nil
}

// setupWireguard: wireguard-go in two namespaces.
func setupWireguard(l *lab.Lab, o options) (*tunnel, error) {
	a, b, err := pair(l, "wa", "wb")
	if err != nil {
		return nil, err
	}
	var keys [2][2]string
	for i := range keys {
		if keys[i][0], keys[i][1], err = daemons.WGKeys(); err != nil {
			return nil, err
		}
	}
	var wgs [2]*daemons.Wireguard
	for i, s := range []struct {
		ns               *lab.Namespace
		self, peerNet    string
		peerEP           string
		mine, peerPubKey string
	}{
		{a, "10.0.1.1", "10.0.2.0/24", "192.0.2.2:51820", keys[0][0], keys[1][1]},
		{b, "10.0.2.1", "10.0.1.0/24", "192.0.2.1:51820", keys[1][0], keys[0][1]},
	} {
		w, err := daemons.StartWireguard(l, s.ns, "wg0")
		if err != nil {
			return nil, err
		}
		wgs[i] = w
		kf := l.Path(fmt.Sprintf("wg-%s.key", s.ns.Label))
		if err := os.WriteFile(kf, []byte(s.mine+"\n"), 0o600); err != nil {
			return nil, err
		}
		if out, err := w.WG("set", "wg0", "private-key", kf, "listen-port", "51820", "peer", s.peerPubKey,
			"allowed-ips", s.peerNet, "endpoint", s.peerEP); err != nil {
			return nil, fmt.Errorf("%v: %s", err, out)
		}
		if _, err := s.ns.Script(fmt.Sprintf("ip addr add %s/32 dev wg0; ip link set wg0 up; ip route add %s dev wg0 src %s", s.self, s.peerNet, s.self)); err != nil {
			return nil, err
		}
	}
	counters := func() (ob, op, ib, ip uint64, err error) {
		ta, err := wgTransfer(wgs[0])
		if err != nil {
			return
		}
		tb, err := wgTransfer(wgs[1])
		if err != nil {
			return
		}
		return ta.TX, 0, tb.RX, 0, nil
	}
	return &tunnel{clientNS: a, serverNS: b, client: addrsAt("10.0.2.1"), server: addrsAt("0.0.0.0"),
		pids: [2]int{wgs[0].PID(), wgs[1].PID()}, counters: counters}, nil
}

func wgTransfer(w *daemons.Wireguard) (daemons.WGTransfer, error) {
	out, err := w.WG("show", w.Dev, "transfer")
	if err != nil {
		return daemons.WGTransfer{}, err
	}
	ts, err := daemons.ParseWGTransfer(out)
	if err != nil || len(ts) == 0 {
		return daemons.WGTransfer{}, fmt.Errorf("wg show transfer: %q %v", out, err)
	}
	return ts[0], nil
}

// setupCharon: strongSwan's charon with kernel-libipsec in two namespaces.
func setupCharon(l *lab.Lab, o options) (*tunnel, error) {
	a, b, err := pair(l, "sa", "sb")
	if err != nil {
		return nil, err
	}
	mk := func(local, remote, lid, rid, lts, rts string) peers.SwanConn {
		return peers.SwanConn{
			Name: "bench", LocalAddrs: []string{local}, RemoteAddrs: []string{remote},
			LocalID: lid, RemoteID: rid, PSK: psk, Proposals: []string{o.swanIKE}, Encap: true,
			Children: []peers.SwanChild{{Name: "bench", LocalTS: []string{lts}, RemoteTS: []string{rts},
				ESPProposals: []string{o.swanESP}, Mode: "tunnel", StartAction: "none"}},
		}
	}
	var cs [2]*daemons.Charon
	for i, s := range []struct {
		ns   *lab.Namespace
		lo   string
		conn peers.SwanConn
	}{
		{a, "10.0.1.1", mk("192.0.2.1", "192.0.2.2", "a.example", "b.example", "10.0.1.0/24", "10.0.2.0/24")},
		{b, "10.0.2.1", mk("192.0.2.2", "192.0.2.1", "b.example", "a.example", "10.0.2.0/24", "10.0.1.0/24")},
	} {
		if _, err := s.ns.Run("ip", "addr", "add", s.lo+"/32", "dev", "lo"); err != nil {
			return nil, err
		}
		if cs[i], err = daemons.StartCharon(l, s.ns, s.ns.Label, []peers.SwanConn{s.conn}, ""); err != nil {
			return nil, err
		}
	}
	if out, err := cs[0].Swanctl("--initiate", "--child", "bench", "--timeout", "20"); err != nil {
		return nil, fmt.Errorf("%v\n%s", err, out)
	}
	counters := func() (ob, op, ib, ip uint64, err error) {
		ta, err := cs[0].Swanctl("--list-sas", "--pretty")
		if err != nil {
			return
		}
		tb, err := cs[1].Swanctl("--list-sas", "--pretty")
		if err != nil {
			return
		}
		sa, err := peers.ParseListSAs(ta)
		if err != nil {
			return
		}
		sb, err := peers.ParseListSAs(tb)
		if err != nil {
			return
		}
		for _, s := range sa {
			for _, c := range s.Children {
				ob += c.BytesOut
				op += c.PacketsOut
			}
		}
		for _, s := range sb {
			for _, c := range s.Children {
				ib += c.BytesIn
				ip += c.PacketsIn
			}
		}
		return
	}
	return &tunnel{clientNS: a, serverNS: b, client: addrsAt("10.0.2.1"), server: addrsAt("0.0.0.0"),
		pids: [2]int{cs[0].PID(), cs[1].PID()}, counters: counters}, nil
}

// xfrmESPMissing tries to add an ESP state in a scratch namespace and says
// why it cannot ("" when the kernel has ESP with AES-GCM).
func xfrmESPMissing(l *lab.Lab) string {
	ns, err := l.NewNamespace("probe")
	if err != nil {
		return err.Error()
	}
	_, err = ns.Run("ip", "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp", "spi", "0x1000",
		"mode", "tunnel", "aead", "rfc4106(gcm(aes))", "0x"+strings.Repeat("11", 20), "128")
	if err != nil {
		return "the kernel has no ESP with AES-GCM (" + report.FirstLine(err.Error()) + ")"
	}
	return ""
}
