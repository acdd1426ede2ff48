// Package report holds the figures of a benchmark run and writes them out:
// a JSON file of every sample, a Markdown table, and a PNG bar chart drawn
// with the standard library and a built-in 5x7 font. It also computes the
// comparison ratios (ours / theirs, paired run by run, with min, median and
// max) and prints progress with an estimate of the time left.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"goswan/bench/sysstat"
)

// Sample is one run of one case by one implementation.
type Sample struct {
	Case    string             `json:"case"`
	Impl    string             `json:"impl"`
	Run     int                `json:"run"`
	Metrics map[string]float64 `json:"metrics"`
	Noise   sysstat.Noise      `json:"noise"`
	Error   string             `json:"error,omitempty"`
	// Note says what went partly wrong in a run that still counts.
	Note string `json:"note,omitempty"`
}

// Ratio compares one of our implementations with a peer on one case and
// metric: Ours/Theirs per paired run.
type Ratio struct {
	Case         string  `json:"case"`
	Metric       string  `json:"metric"`
	Ours         string  `json:"ours"`
	Theirs       string  `json:"theirs"`
	OursMedian   float64 `json:"ours_median"`
	TheirsMedian float64 `json:"theirs_median"`
	Min          float64 `json:"min"`
	Median       float64 `json:"median"`
	Max          float64 `json:"max"`
	Runs         int     `json:"runs"`
	HigherBetter bool    `json:"higher_is_better"`
}

// Report is everything one tool run measured.
type Report struct {
	Tool     string            `json:"tool"`
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
	Host     map[string]string `json:"host"`
	Params   map[string]any    `json:"params"`
	Samples  []Sample          `json:"samples"`
	Ratios   []Ratio           `json:"ratios,omitempty"`
	Skipped  []string          `json:"skipped,omitempty"` // implementations or cases not run, and why
	// Primary names, per case, the metric the chart and ratios use, and
	// whether higher is better for it.
	Primary map[string]PrimaryMetric `json:"primary"`
	// Secondary names more metrics per case that get ratios too.
	Secondary map[string][]PrimaryMetric `json:"secondary,omitempty"`
}

// PrimaryMetric is the metric a case is judged by.
type PrimaryMetric struct {
	Name         string `json:"name"`
	Unit         string `json:"unit"`
	HigherBetter bool   `json:"higher_is_better"`
}

// New starts a report.
func New(tool string, params map[string]any) *Report {
	return &Report{Tool: tool, Started: time.Now(), Host: HostInfo(), Params: params, Primary: map[string]PrimaryMetric{}, Secondary: map[string][]PrimaryMetric{}}
}

// HostInfo describes the machine and the build.
func HostInfo() map[string]string {
	h := map[string]string{
		"go":    runtime.Version(),
		"cpus":  fmt.Sprint(runtime.NumCPU()),
		"goos":  runtime.GOOS,
		"arch":  runtime.GOARCH,
		"model": cpuModel(),
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h["kernel"] = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		h["commit"] = strings.TrimSpace(string(out))
	}
	return h
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			if i := strings.IndexByte(l, ':'); i > 0 {
				return strings.TrimSpace(l[i+1:])
			}
		}
	}
	return ""
}

// Add records a sample.
func (r *Report) Add(s Sample) { r.Samples = append(r.Samples, s) }

// Values returns metric m of impl on case c, in run order, skipping failed
// runs.
func (r *Report) Values(c, impl, m string) []float64 {
	var v []float64
	for _, s := range r.Samples {
		if s.Case == c && s.Impl == impl && s.Error == "" {
			if x, ok := s.Metrics[m]; ok {
				v = append(v, x)
			}
		}
	}
	return v
}

// Cases and Impls list what the samples hold, in first-seen order.
func (r *Report) Cases() []string { return r.distinct(func(s Sample) string { return s.Case }) }

// Impls lists the implementations in first-seen order.
func (r *Report) Impls() []string { return r.distinct(func(s Sample) string { return s.Impl }) }

func (r *Report) distinct(f func(Sample) string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range r.Samples {
		if k := f(s); !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// Compare fills Ratios: for each case, each of ours against each of
// theirs, on the case's primary metric, paired by run index.
func (r *Report) Compare(ours, theirs []string) {
	r.Ratios = nil
	for _, c := range r.Cases() {
		pm, ok := r.Primary[c]
		if !ok {
			continue
		}
		for _, pm := range append([]PrimaryMetric{pm}, r.Secondary[c]...) {
			r.compareOne(c, pm, ours, theirs)
		}
	}
}

func (r *Report) compareOne(c string, pm PrimaryMetric, ours, theirs []string) {
	{
		for _, o := range ours {
			for _, th := range theirs {
				a, b := r.Values(c, o, pm.Name), r.Values(c, th, pm.Name)
				n := min(len(a), len(b))
				if n == 0 {
					continue
				}
				var q []float64
				for i := 0; i < n; i++ {
					if b[i] != 0 {
						q = append(q, a[i]/b[i])
					}
				}
				if len(q) == 0 {
					continue
				}
				lo, med, hi := MinMedMax(q)
				r.Ratios = append(r.Ratios, Ratio{Case: c, Metric: pm.Name, Ours: o, Theirs: th,
					OursMedian: Median(a), TheirsMedian: Median(b), Min: lo, Median: med, Max: hi, Runs: len(q), HigherBetter: pm.HigherBetter})
			}
		}
	}
}

// Median of v (0 for none).
func Median(v []float64) float64 {
	_, m, _ := MinMedMax(v)
	return m
}

// MinMedMax of v.
func MinMedMax(v []float64) (lo, med, hi float64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	med = s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return s[0], med, s[n-1]
}

// Percentile returns the p-th percentile (0..100) of sorted durations,
// nearest rank.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// WriteJSON writes the report.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(path, append(b, '\n'))
}

func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// MetricOrder lists the metrics the Markdown table shows, in order, with
// their headings; metrics not listed are in the JSON only.
var MetricOrder = []struct{ Key, Head string }{
	{"gbps", "Gbit/s"}, {"pps", "pkt/s"}, {"loss_pct", "loss %"},
	{"cpu_s_per_gb_a", "CPU s/GB (A)"}, {"cpu_s_per_gb_b", "CPU s/GB (B)"},
	{"rtt_p50_us", "p50 µs"}, {"rtt_p90_us", "p90 µs"}, {"rtt_p99_us", "p99 µs"}, {"tcp_rtt_us", "TCP RTT µs"},
	{"rate_per_s", "SAs/s"}, {"lat_p50_ms", "p50 ms"}, {"lat_p99_ms", "p99 ms"},
	{"rss_per_sa_kib", "KiB/SA (init)"}, {"rss_per_sa_kib_resp", "KiB/SA (resp)"}, {"held", "held"},
	{"down_per_s", "down/s"},
	{"busy_during", "busy %"},
}

// Markdown renders the medians per case and implementation, then the
// ratios.
func (r *Report) Markdown(w io.Writer) {
	fmt.Fprintf(w, "# %s, %s\n\n", r.Tool, r.Started.Format("2006-01-02 15:04"))
	var hk []string
	for k := range r.Host {
		hk = append(hk, k)
	}
	sort.Strings(hk)
	for _, k := range hk {
		fmt.Fprintf(w, "- %s: %s\n", k, r.Host[k])
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "- not run: %s\n", s)
	}
	fmt.Fprintln(w)
	// The columns: every metric some sample has.
	var cols []struct{ Key, Head string }
	for _, m := range MetricOrder {
		for _, s := range r.Samples {
			if _, ok := s.Metrics[m.Key]; ok {
				cols = append(cols, m)
				break
			}
		}
	}
	fmt.Fprintf(w, "Medians over the runs (runs counted; failed runs left out).\n\n| case | implementation | runs |")
	for _, c := range cols {
		fmt.Fprintf(w, " %s |", c.Head)
	}
	fmt.Fprintf(w, "\n|---|---|---|%s\n", strings.Repeat("---|", len(cols)))
	for _, c := range r.Cases() {
		for _, im := range r.Impls() {
			runs, fails := 0, 0
			for _, s := range r.Samples {
				if s.Case == c && s.Impl == im {
					if s.Error != "" {
						fails++
					} else {
						runs++
					}
				}
			}
			if runs+fails == 0 {
				continue
			}
			fmt.Fprintf(w, "| %s | %s | %d", c, im, runs)
			if fails > 0 {
				fmt.Fprintf(w, " (+%d failed)", fails)
			}
			fmt.Fprint(w, " |")
			for _, col := range cols {
				v := r.Values(c, im, col.Key)
				if len(v) == 0 {
					fmt.Fprint(w, " |")
					continue
				}
				fmt.Fprintf(w, " %s |", Num(Median(v)))
			}
			fmt.Fprintln(w)
		}
	}
	if len(r.Ratios) > 0 {
		fmt.Fprintf(w, "\nRatios ours / theirs, paired run by run (for latency and CPU lower is better).\n\n")
		fmt.Fprintf(w, "| case | metric | ours | theirs | ours (median) | theirs (median) | min | median | max | runs |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, q := range r.Ratios {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %.2f | %.2f | %.2f | %d |\n", q.Case, q.Metric, q.Ours, q.Theirs,
				Num(q.OursMedian), Num(q.TheirsMedian), q.Min, q.Median, q.Max, q.Runs)
		}
	}
	var errs []string
	for _, s := range r.Samples {
		if s.Error != "" {
			errs = append(errs, fmt.Sprintf("- %s / %s run %d: %s", s.Case, s.Impl, s.Run, s.Error))
		} else if s.Note != "" {
			errs = append(errs, fmt.Sprintf("- %s / %s run %d (counted): %s", s.Case, s.Impl, s.Run, s.Note))
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(w, "\nFailed runs, and runs with errors that still count:\n\n%s\n", strings.Join(errs, "\n"))
	}
}

// WriteMarkdown writes Markdown to path.
func (r *Report) WriteMarkdown(path string) error {
	var b strings.Builder
	r.Markdown(&b)
	return writeFile(path, []byte(b.String()))
}

// WriteAll writes base.json, base.md and base.png.
func (r *Report) WriteAll(base string) error {
	r.Finished = time.Now()
	if err := r.WriteJSON(base + ".json"); err != nil {
		return err
	}
	if err := r.WriteMarkdown(base + ".md"); err != nil {
		return err
	}
	return r.WritePNG(base + ".png")
}

// Num formats a figure with three significant digits or so.
func Num(v float64) string {
	a := v
	if a < 0 {
		a = -a
	}
	switch {
	case a == 0:
		return "0"
	case a >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// Progress prints what is running, how far along the work is and an
// estimate of what is left, from the average time of the steps so far.
type Progress struct {
	W     io.Writer
	Total int
	done  int
	start time.Time
}

// NewProgress starts counting total steps.
func NewProgress(w io.Writer, total int) *Progress {
	return &Progress{W: w, Total: total, start: time.Now()}
}

// Step announces the next step.
func (p *Progress) Step(format string, args ...any) {
	p.done++
	left := ""
	if p.done > 1 {
		per := time.Since(p.start) / time.Duration(p.done-1)
		left = fmt.Sprintf(", about %v left", (per * time.Duration(p.Total-p.done+1)).Round(time.Second))
	}
	fmt.Fprintf(p.W, "[%d/%d %v elapsed%s] %s\n", p.done, p.Total, time.Since(p.start).Round(time.Second), left, fmt.Sprintf(format, args...))
}

// PrintSummary writes the Markdown report to w (the tools print it at the
// end of a run).
func PrintSummary(w io.Writer, r *Report) {
	fmt.Fprintln(w)
	r.Markdown(w)
}

// Line renders the sample's metrics on one line, in MetricOrder, for the
// tools' progress output.
func (s Sample) Line() string {
	var b strings.Builder
	for _, m := range MetricOrder {
		if v, ok := s.Metrics[m.Key]; ok {
			fmt.Fprintf(&b, "%s %s  ", m.Head, Num(v))
		}
	}
	return b.String()
}

// FirstLine is s up to its first newline: a short error for a sample.
func FirstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Finish writes the report's JSON, Markdown and PNG to out (when set) and
// says so on standard error, prefixed with the tool's name.
func (r *Report) Finish(tool, out string) error {
	if out == "" {
		return nil
	}
	if err := r.WriteAll(out); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%s: wrote %s.json, %s.md, %s.png\n", tool, out, out, out)
	return nil
}
