// Command espbench measures the ESP engine alone, in process: for each
// transform and packet size, Seal and Open of one SA on 1..N cores, in
// Gbit/s of inner packets, packets per second, CPU nanoseconds per byte and
// allocations per packet, with the ratio to the bare primitive (the AEAD's
// Seal, or AES-CBC plus HMAC) on the same cores: the limit.
//
//	espbench [-transforms aes128gcm,...] [-sizes 64,512,1400,9000] [-cores 2] [-time 300ms] [-out bench/results/espbench]
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"goswan/bench/espbench"
	"goswan/bench/report"
	"goswan/bench/sysstat"
)

func main() {
	var names, sizes, out string
	var cores, runs int
	var d, quietWait time.Duration
	var quietBusy float64
	var all []string
	for _, t := range espbench.Transforms {
		all = append(all, t.Name)
	}
	flag.StringVar(&names, "transforms", strings.Join(all, ","), "transforms: "+strings.Join(all, ", "))
	flag.StringVar(&sizes, "sizes", "64,512,1400,9000", "inner packet sizes in bytes")
	flag.IntVar(&cores, "cores", runtime.NumCPU(), "measure on 1..cores goroutines")
	flag.IntVar(&runs, "runs", 1, "runs of each measurement")
	flag.DurationVar(&d, "time", 300*time.Millisecond, "length of each measurement")
	flag.StringVar(&out, "out", "", "write OUT.json, OUT.md and OUT.png")
	flag.Float64Var(&quietBusy, "quiet-busy", 0.15, "wait until the machine is at most this busy (0..1) before starting")
	flag.DurationVar(&quietWait, "quiet-wait", 10*time.Second, "but wait at most this long")
	flag.Parse()

	var ts []espbench.Transform
	for _, n := range strings.Split(names, ",") {
		t, ok := espbench.TransformByName(strings.TrimSpace(n))
		if !ok {
			fmt.Fprintf(os.Stderr, "espbench: unknown transform %q (%s)\n", n, strings.Join(all, ", "))
			os.Exit(2)
		}
		ts = append(ts, t)
	}
	var sz []int
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 28 || n > 65535 {
			fmt.Fprintf(os.Stderr, "espbench: size %q: want 28..65535\n", s)
			os.Exit(2)
		}
		sz = append(sz, n)
	}
	if runtime.GOMAXPROCS(0) < cores {
		runtime.GOMAXPROCS(cores)
	}

	rep := report.New("espbench", map[string]any{"time_s": d.Seconds(), "cores": cores, "runs": runs,
		"note": "one SA shared by all goroutines; Open with the replay window off (the same packets are opened again and again)"})
	noise := sysstat.WaitQuiet(quietBusy, quietWait)
	fmt.Fprintf(os.Stderr, "espbench: machine %.0f%% busy before the start (waited %v)\n", noise.BusyBefore*100, noise.Waited.Round(time.Millisecond))
	prog := report.NewProgress(os.Stderr, len(ts)*len(sz)*cores*runs)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "transform\tsize\tcores\tseal Gbit/s\tseal pkt/s\tseal ns/B\tseal allocs/pkt\topen Gbit/s\topen pkt/s\topen ns/B\topen allocs/pkt\tbare Gbit/s\tseal/bare\topen/bare\t")
	failed := false
	for run := 1; run <= runs; run++ {
		for _, t := range ts {
			for _, s := range sz {
				for c := 1; c <= cores; c++ {
					prog.Step("%s, %d bytes, %d cores, run %d", t.Name, s, c, run)
					cs := fmt.Sprintf("%s/%d/%dc", t.Name, s, c)
					rep.Primary[cs] = report.PrimaryMetric{Name: "gbps", Unit: "Gbit/s", HigherBetter: true}
					m0 := sysstat.StartMeter()
					var figs [3]espbench.Figure
					var errs [3]error
					figs[0], errs[0] = espbench.Seal(t, s, c, d)
					figs[1], errs[1] = espbench.Open(t, s, c, d)
					figs[2], errs[2] = espbench.Bare(t, s, c, d)
					busy := m0.Stop().Busy
					for i, f := range figs {
						smp := report.Sample{Case: cs, Impl: []string{"seal", "open", "bare"}[i], Run: run,
							Metrics: map[string]float64{"gbps": f.Gbps, "pps": f.PPS, "ns_per_byte": f.NsPerByte, "allocs_per_packet": f.Allocs},
							Noise:   sysstat.Noise{BusyBefore: noise.BusyBefore, BusyDuring: busy, Quiet: noise.Quiet}}
						if errs[i] != nil {
							smp.Error = errs[i].Error()
							failed = true
							fmt.Fprintf(os.Stderr, "espbench: %s %s: %v\n", cs, smp.Impl, errs[i])
						}
						rep.Add(smp)
					}
					ratio := func(a, b float64) string {
						if b == 0 {
							return "-"
						}
						return fmt.Sprintf("%.2f", a/b)
					}
					fmt.Fprintf(tw, "%s\t%d\t%d\t%.2f\t%.0f\t%.3f\t%.2f\t%.2f\t%.0f\t%.3f\t%.2f\t%.2f\t%s\t%s\t\n", t.Name, s, c,
						figs[0].Gbps, figs[0].PPS, figs[0].NsPerByte, figs[0].Allocs,
						figs[1].Gbps, figs[1].PPS, figs[1].NsPerByte, figs[1].Allocs,
						figs[2].Gbps, ratio(figs[0].Gbps, figs[2].Gbps), ratio(figs[1].Gbps, figs[2].Gbps))
				}
			}
		}
	}
	tw.Flush()
	rep.Compare([]string{"seal", "open"}, []string{"bare"})
	if out != "" {
		if err := rep.WriteAll(out); err != nil {
			fmt.Fprintln(os.Stderr, "espbench:", err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "espbench: wrote %s.json, %s.md, %s.png\n", out, out, out)
	}
	if failed {
		os.Exit(1)
	}
}
