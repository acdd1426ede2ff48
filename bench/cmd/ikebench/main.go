// Command ikebench measures IKE: how many IKE SAs, each with its first
// Child SA, two daemons establish per second with C exchanges in flight
// and K in total, the latency of each, the memory each SA costs (daemon
// RSS before and after), how fast they are torn down, and, with -limit,
// how many SAs one daemon holds before it refuses one.
//
// How the load is made: K conns (bench-0001 ... bench-K) with distinct
// IDs and traffic selectors are generated into both daemons' ipsec.conf,
// and ikebench "up"s them over the initiator's control socket (goswan/ctl)
// from C goroutines, each with its own connection. Our daemons run with
// --use-netstack on loopback (no root needed), so each Child SA is really
// installed in the user-space ESP engine. With -compare, the same K
// connections go into two strongSwan charons (kernel-libipsec) in network
// namespaces, started with `swanctl --initiate` from C goroutines: each
// start pays for a swanctl process, which ours does not (noted in the
// report).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"goswan/bench/daemons"
	"goswan/bench/lab"
	"goswan/bench/report"
	"goswan/bench/sysstat"
	"goswan/ctl"
	"goswan/internal/peers"
)

// runTimeout bounds each phase (bringing SAs up, tearing them down): no
// new exchange starts after it.
var runTimeout = 60 * time.Second

type options struct {
	k, c, runs, limit int
	ike, esp          string
	swanIKE, swanESP  string
	proposal          string
	compare           bool
	out, binDir       string
	verbose           bool
	quietBusy         float64
	quietWait         time.Duration
	kernel            string
}

var presets = map[string][4]string{
	"x25519":   {"aes_gcm128-sha2_256-dh31", "aes_gcm128", "aes128gcm16-prfsha256-curve25519", "aes128gcm16"},
	"ecp256":   {"aes_gcm128-sha2_256-dh19", "aes_gcm128", "aes128gcm16-prfsha256-ecp256", "aes128gcm16"},
	"modp2048": {"aes_gcm128-sha2_256-modp2048", "aes_gcm128", "aes128gcm16-prfsha256-modp2048", "aes128gcm16"},
}

func main() {
	var o options
	flag.IntVar(&o.k, "k", 200, "IKE SAs in total per run")
	flag.IntVar(&o.c, "c", 16, "exchanges in flight (at most 60: the control socket serves 64 connections)")
	flag.IntVar(&o.runs, "runs", 3, "runs (each brings K up and tears them down)")
	flag.IntVar(&o.limit, "limit", 0, "after the runs, bring up SAs until one is refused or this many are held (0: skip)")
	flag.StringVar(&o.proposal, "proposal", "x25519", "preset proposal: x25519, ecp256, modp2048 (AES-GCM-128, SHA2-256)")
	flag.StringVar(&o.ike, "ike", "", "our ike= (overrides -proposal)")
	flag.StringVar(&o.esp, "esp", "", "our esp= (overrides -proposal)")
	flag.StringVar(&o.swanIKE, "swan-ike", "", "strongSwan's IKE proposal (overrides -proposal)")
	flag.StringVar(&o.swanESP, "swan-esp", "", "strongSwan's ESP proposal (overrides -proposal)")
	flag.BoolVar(&o.compare, "compare", false, "also run strongSwan's charon (kernel-libipsec) and print ratios")
	flag.StringVar(&o.out, "out", "", "write OUT.json, OUT.md and OUT.png")
	flag.StringVar(&o.binDir, "bindir", "", "folder with pluto (default: build it)")
	flag.StringVar(&o.kernel, "kernel", "netstack", "our data plane: netstack (SAs installed in the user-space engine) or memory (the test-only back end: IKE alone)")
	flag.DurationVar(&runTimeout, "run-timeout", runTimeout, "start no new exchange after this long in one phase (up, down)")
	flag.BoolVar(&o.verbose, "v", false, "say every step")
	flag.Float64Var(&o.quietBusy, "quiet-busy", 0.15, "before each run, wait until the machine is at most this busy (0..1)")
	flag.DurationVar(&o.quietWait, "quiet-wait", 10*time.Second, "but wait at most this long")
	flag.Parse()
	p, ok := presets[o.proposal]
	if !ok {
		fmt.Fprintf(os.Stderr, "ikebench: unknown -proposal %q\n", o.proposal)
		os.Exit(2)
	}
	for i, s := range []*string{&o.ike, &o.esp, &o.swanIKE, &o.swanESP} {
		if *s == "" {
			*s = p[i]
		}
	}
	o.c = max(1, min(o.c, 60))
	rep, err := run(o)
	if rep != nil {
		report.PrintSummary(os.Stdout, rep)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ikebench:", err)
		os.Exit(1)
	}
}

func caseName(o options) string { return fmt.Sprintf("ike-%s-c%d-k%d", o.proposal, o.c, o.k) }

func run(o options) (*report.Report, error) {
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
	rep := report.New("ikebench", map[string]any{"k": o.k, "c": o.c, "runs": o.runs, "limit": o.limit, "ike": o.ike, "esp": o.esp,
		"swan_ike": o.swanIKE, "swan_esp": o.swanESP, "kernel": o.kernel,
		"method": "K generated conns, up/initiate from C goroutines; ours over the control socket, strongSwan through swanctl processes"})
	cn := caseName(o)
	rep.Primary[cn] = report.PrimaryMetric{Name: "rate_per_s", Unit: "SAs/s", HigherBetter: true}
	rep.Secondary[cn] = []report.PrimaryMetric{{Name: "lat_p50_ms", Unit: "ms"}, {Name: "lat_p99_ms", Unit: "ms"},
		{Name: "down_per_s", Unit: "SAs/s", HigherBetter: true}, {Name: "rss_per_sa_kib", Unit: "KiB"}}

	type impl struct {
		name string
		ours bool
		run  func(l *lab.Lab, prog *report.Progress) ([]report.Sample, error)
	}
	impls := []impl{{"goswan-" + o.kernel, true, func(l *lab.Lab, p *report.Progress) ([]report.Sample, error) { return runOurs(l, o, p) }}}
	if o.compare {
		if ok, why := daemons.HaveCharon(); ok {
			impls = append(impls, impl{"strongswan", false, func(l *lab.Lab, p *report.Progress) ([]report.Sample, error) { return runCharon(l, o, p) }})
		} else {
			rep.Skipped = append(rep.Skipped, why)
			fmt.Fprintf(os.Stderr, "ikebench: not running %s\n", why)
		}
	}
	if o.binDir == "" {
		fmt.Fprintln(os.Stderr, "ikebench: building pluto")
	}
	if o.binDir, err = daemons.FindGoswan(root, o.binDir); err != nil {
		return nil, err
	}
	steps := len(impls) * (1 + o.runs)
	if o.limit > 0 {
		steps += len(impls)
	}
	prog := report.NewProgress(os.Stderr, steps)
	var ours, theirs []string
	for _, im := range impls {
		l, err := lab.New()
		if err != nil {
			return rep, err
		}
		l.Logf = root.Logf
		root.Defer(l.Close)
		prog.Step("%s: setting up %d conns", im.name, max(o.k, o.limit))
		ss, err := im.run(l, prog)
		for _, s := range ss {
			s.Impl = im.name
			if s.Case == "" {
				s.Case = cn
			}
			rep.Add(s)
			fmt.Fprintf(os.Stderr, "ikebench:   %s %s run %d: %v %s%s\n", s.Case, im.name, s.Run, s.Line(), s.Error, s.Note)
		}
		l.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "ikebench: %s: %v\n", im.name, err)
			rep.Add(report.Sample{Case: cn, Impl: im.name, Error: report.FirstLine(err.Error())})
		}
		if im.ours {
			ours = append(ours, im.name)
		} else {
			theirs = append(theirs, im.name)
		}
	}
	rep.Compare(ours, theirs)
	if err := rep.Finish("ikebench", o.out); err != nil {
		return rep, err
	}
	if left := lab.Leftovers(os.Getpid()); len(left) > 0 {
		return rep, fmt.Errorf("namespaces left behind: %v", left)
	}
	return rep, nil
}

const psk = "goswan ikebench pre-shared key, long enough"

func connName(i int) string { return fmt.Sprintf("bench-%04d", i) }

// subnetOf gives conn i its own protected host on B's side.
func subnetOf(i int) string { return fmt.Sprintf("10.%d.%d.%d/32", 64+i>>16, (i>>8)&255, i&255) }

// oursConf generates n conns for our two daemons (the same file on both).
func oursConf(o options, n int, left, right string) (conf, secrets string) {
	var c, s strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&c, `conn %s
	left=%s
	leftid=@a-%04d
	leftsubnet=10.0.1.1/32
	leftsourceip=10.0.1.1
	right=%s
	rightid=@b-%04d
	rightsubnet=%s
	rightsourceip=10.0.2.1
	authby=secret
	ike=%s
	esp=%s
	rekey=no
	auto=add

`, connName(i), left, i, right, i, subnetOf(i), o.ike, o.esp)
		fmt.Fprintf(&s, "@a-%04d @b-%04d : PSK \"%s\"\n", i, i, psk)
	}
	return c.String(), s.String()
}

func freeUDPPorts(n int) ([]int, error) {
	var out []int
	for tries := 0; len(out) < n && tries < 100; tries++ {
		u, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		p := u.LocalAddr().(*net.UDPAddr).Port
		u2, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.2", strconv.Itoa(p)))
		u.Close()
		if err == nil {
			u2.Close()
			out = append(out, p)
		}
	}
	if len(out) < n {
		return nil, fmt.Errorf("no free UDP ports on loopback")
	}
	return out, nil
}

// pool runs f(i) for i in [from, to) on c goroutines, each with its own
// state from mk, and returns the latencies of the calls that succeeded and
// the errors.
func pool[S any](from, to, c int, mk func() (S, error), done func(S), f func(s S, i int) error, stopOnErr bool) ([]time.Duration, []error) {
	deadline := time.Now().Add(runTimeout)
	var next atomic.Int64
	next.Store(int64(from))
	var mu sync.Mutex
	var lats []time.Duration
	var errs []error
	var failed atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := mk()
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			defer done(s)
			for {
				i := int(next.Add(1) - 1)
				if i >= to || (stopOnErr && failed.Load()) {
					return
				}
				if time.Now().After(deadline) {
					mu.Lock()
					errs = append(errs, fmt.Errorf("%s: not started: -run-timeout %v passed", connName(i), runTimeout))
					mu.Unlock()
					continue
				}
				t0 := time.Now()
				err := f(s, i)
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", connName(i), err))
					failed.Store(true)
				} else {
					lats = append(lats, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return lats, errs
}

func latencyMetrics(m map[string]float64, lats []time.Duration) {
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }
	m["lat_p50_ms"] = ms(report.Percentile(lats, 50))
	m["lat_p90_ms"] = ms(report.Percentile(lats, 90))
	m["lat_p99_ms"] = ms(report.Percentile(lats, 99))
	if len(lats) > 0 {
		m["lat_max_ms"] = ms(lats[len(lats)-1])
	}
}

// target is one implementation's pair of daemons, driven through up and
// down by conn index.
type target struct {
	pids     [2]int
	mkClient func() (any, error)
	close    func(any)
	up       func(c any, i int) error
	down     func(c any, i int) error
	count    func() (a, b int, err error) // established IKE SAs on each side
}

// measureRuns brings K SAs up and down o.runs times, then probes the limit.
func measureRuns(o options, t target, prog *report.Progress) ([]report.Sample, error) {
	var out []report.Sample
	for r := 1; r <= o.runs; r++ {
		prog.Step("run %d of %d: %d IKE SAs, %d in flight", r, o.runs, o.k, o.c)
		s := report.Sample{Run: r, Metrics: map[string]float64{}}
		s.Noise = sysstat.WaitQuiet(o.quietBusy, o.quietWait)
		rssA0, _ := sysstat.RSS(t.pids[0])
		rssB0, _ := sysstat.RSS(t.pids[1])
		meter := sysstat.StartMeter(t.pids[0], t.pids[1])
		t0 := time.Now()
		lats, errs := pool(1, o.k+1, o.c, t.mkClient, t.close, t.up, false)
		el := time.Since(t0)
		rd := meter.Stop()
		s.Noise.BusyDuring = rd.Busy
		s.Metrics["busy_during"] = rd.Busy * 100
		s.Metrics["established"] = float64(len(lats))
		s.Metrics["failed"] = float64(len(errs))
		s.Metrics["rate_per_s"] = float64(len(lats)) / el.Seconds()
		s.Metrics["cpu_ms_per_sa_a"] = rd.CPU[0].Seconds() * 1e3 / float64(max(len(lats), 1))
		s.Metrics["cpu_ms_per_sa_b"] = rd.CPU[1].Seconds() * 1e3 / float64(max(len(lats), 1))
		latencyMetrics(s.Metrics, lats)
		if ca, cb, err := t.count(); err == nil {
			s.Metrics["ike_sas_a"], s.Metrics["ike_sas_b"] = float64(ca), float64(cb)
			if ca != len(lats) || cb != len(lats) {
				errs = append(errs, fmt.Errorf("after %d successful ups the initiator lists %d IKE SAs and the responder %d", len(lats), ca, cb))
			}
		}
		rssA1, _ := sysstat.RSS(t.pids[0])
		rssB1, _ := sysstat.RSS(t.pids[1])
		// Memory per SA from the first fill only: later runs reuse what the
		// Go runtime (or malloc) kept from the first.
		if len(lats) > 0 && r == 1 {
			s.Metrics["rss_per_sa_kib"] = (float64(rssA1) - float64(rssA0)) / 1024 / float64(len(lats))
			s.Metrics["rss_per_sa_kib_resp"] = (float64(rssB1) - float64(rssB0)) / 1024 / float64(len(lats))
		}
		s.Metrics["rss_a_mib"], s.Metrics["rss_b_mib"] = float64(rssA1)/(1<<20), float64(rssB1)/(1<<20)
		t1 := time.Now()
		dl, derrs := pool(1, o.k+1, o.c, t.mkClient, t.close, t.down, false)
		errs = append(errs, derrs...)
		// Both sides must have let go of everything.
		deadline := time.Now().Add(15 * time.Second)
		for {
			ca, cb, err := t.count()
			if err == nil && ca == 0 && cb == 0 {
				// Torn down: both sides hold nothing any more.
				s.Metrics["down_per_s"] = float64(len(dl)) / time.Since(t1).Seconds()
				break
			}
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("after tearing down, the initiator still lists %d IKE SAs and the responder %d (%v)", ca, cb, err))
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(errs) > 0 {
			msg := fmt.Sprintf("%d errors, first: %v", len(errs), report.FirstLine(errs[0].Error()))
			if len(lats) == 0 {
				s.Error = msg
			} else {
				s.Note = msg // the figures of what did come up still count
			}
		}
		out = append(out, s)
	}
	if o.limit > 0 {
		prog.Step("limit: bringing up SAs until refused or %d held", o.limit)
		s := report.Sample{Case: "ike-held", Run: 1, Metrics: map[string]float64{}}
		lats, errs := pool(1, o.limit+1, o.c, t.mkClient, t.close, t.up, true)
		s.Metrics["held"] = float64(len(lats))
		if ca, _, err := t.count(); err == nil {
			s.Metrics["held"] = float64(ca)
		}
		if rss, err := sysstat.RSS(t.pids[0]); err == nil {
			s.Metrics["rss_a_mib"] = float64(rss) / (1 << 20)
		}
		if len(errs) > 0 {
			s.Metrics["refused_at"] = s.Metrics["held"] + 1
			s.Error = "refused: " + report.FirstLine(errs[0].Error())
		}
		t1 := time.Now()
		dl, _ := pool(1, o.limit+1, o.c, t.mkClient, t.close, t.down, false)
		s.Metrics["down_per_s"] = float64(len(dl)) / time.Since(t1).Seconds()
		out = append(out, s)
	}
	return out, nil
}

func runOurs(l *lab.Lab, o options, prog *report.Progress) ([]report.Sample, error) {
	n := max(o.k, o.limit)
	ports, err := freeUDPPorts(2)
	if err != nil {
		return nil, err
	}
	conf, secrets := oursConf(o, n, "127.0.0.1", "127.0.0.2")
	var env []string
	flagBackend := "--use-netstack"
	if o.kernel == "memory" {
		env = []string{"GOSWAN_PLUTO_TEST_KERNEL=memory"}
	}
	var ps [2]*daemons.Pluto
	for i, s := range []struct{ name, addr string }{{"a", "127.0.0.1"}, {"b", "127.0.0.2"}} {
		ps[i], err = daemons.StartPluto(l, nil, daemons.PlutoConfig{BinDir: o.binDir, Name: "ike-" + s.name, Conf: conf, Secrets: secrets, Env: env,
			Args: []string{flagBackend, "--listen", s.addr, "--ikeport", strconv.Itoa(ports[0]), "--natikeport", strconv.Itoa(ports[1])}})
		if err != nil {
			return nil, err
		}
	}
	bg := context.Background()
	count := func() (int, int, error) {
		ctx, cancel := context.WithTimeout(bg, 20*time.Second)
		defer cancel()
		var c [2]int
		for i, p := range ps {
			st, err := p.Status(ctx)
			if err != nil {
				return 0, 0, err
			}
			for _, sa := range st.IKESAs {
				if !sa.Established.IsZero() {
					c[i]++
				}
			}
		}
		return c[0], c[1], nil
	}
	do := func(c any, cmd string, i int) error {
		ctx, cancel := context.WithTimeout(bg, 60*time.Second)
		defer cancel()
		res, err := c.(*ctl.Client).Do(ctx, &ctl.Request{Command: cmd, Name: connName(i)}, nil)
		if err != nil {
			return err
		}
		if res.Status != ctl.StatusOK {
			return fmt.Errorf("%s: %s", cmd, res.Error)
		}
		return nil
	}
	t := target{
		pids:     [2]int{ps[0].PID(), ps[1].PID()},
		mkClient: func() (any, error) { return ctl.Dial(ps[0].Ctl) },
		close:    func(c any) { c.(*ctl.Client).Close() },
		up:       func(c any, i int) error { return do(c, ctl.CmdUp, i) },
		down:     func(c any, i int) error { return do(c, ctl.CmdDown, i) },
		count:    count,
	}
	return measureRuns(o, t, prog)
}

func runCharon(l *lab.Lab, o options, prog *report.Progress) ([]report.Sample, error) {
	n := max(o.k, o.limit)
	a, err := l.NewNamespace("ia")
	if err != nil {
		return nil, err
	}
	b, err := l.NewNamespace("ib")
	if err != nil {
		return nil, err
	}
	if _, _, err := lab.Connect(a, b, "192.0.2.1/24", "192.0.2.2/24"); err != nil {
		return nil, err
	}
	// kernel-libipsec routes each Child SA through an address of its own
	// inside the local traffic selector: put them on lo.
	var batch strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&batch, "addr add %s dev lo\n", subnetOf(i))
	}
	cmd := b.Command("ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("adding addresses to lo: %v: %s", err, out)
	}
	if _, err := a.Run("ip", "addr", "add", "10.0.1.1/32", "dev", "lo"); err != nil {
		return nil, err
	}
	mk := func(local, remote string, initiator bool) []peers.SwanConn {
		var cs []peers.SwanConn
		for i := 1; i <= n; i++ {
			lid, rid := fmt.Sprintf("a-%04d.example", i), fmt.Sprintf("b-%04d.example", i)
			lts, rts := "10.0.1.1/32", subnetOf(i)
			if !initiator {
				lid, rid, lts, rts = rid, lid, rts, lts
			}
			cs = append(cs, peers.SwanConn{Name: connName(i), LocalAddrs: []string{local}, RemoteAddrs: []string{remote},
				LocalID: lid, RemoteID: rid, PSK: psk, Proposals: []string{o.swanIKE}, Encap: true, RekeyTime: "0",
				Children: []peers.SwanChild{{Name: connName(i), LocalTS: []string{lts}, RemoteTS: []string{rts},
					ESPProposals: []string{o.swanESP}, StartAction: "none", RekeyTime: "0"}}})
		}
		return cs
	}
	ca, err := daemons.StartCharon(l, a, "ia", mk("192.0.2.1", "192.0.2.2", true), "")
	if err != nil {
		return nil, err
	}
	cb, err := daemons.StartCharon(l, b, "ib", mk("192.0.2.2", "192.0.2.1", false), "")
	if err != nil {
		return nil, err
	}
	count := func() (int, int, error) {
		var c [2]int
		for i, ch := range []*daemons.Charon{ca, cb} {
			out, err := ch.Swanctl("--stats")
			if err != nil {
				return 0, 0, err
			}
			c[i], err = daemons.ParseSwanctlStatsIKE(out)
			if err != nil {
				return 0, 0, err
			}
		}
		return c[0], c[1], nil
	}
	t := target{
		pids:     [2]int{ca.PID(), cb.PID()},
		mkClient: func() (any, error) { return nil, nil },
		close:    func(any) {},
		up: func(_ any, i int) error {
			_, err := ca.Swanctl("--initiate", "--child", connName(i), "--timeout", "20")
			return err
		},
		down: func(_ any, i int) error {
			_, err := ca.Swanctl("--terminate", "--ike", connName(i), "--timeout", "20")
			return err
		},
		count: count,
	}
	return measureRuns(o, t, prog)
}
