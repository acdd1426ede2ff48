package report

import (
	"bytes"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sample(c, impl string, run int, v float64) Sample {
	return Sample{Case: c, Impl: impl, Run: run, Metrics: map[string]float64{"gbps": v, "rtt_p50_us": 100 / v}}
}

func TestCompareAndWrite(t *testing.T) {
	r := New("tunbench", map[string]any{"runs": 3})
	r.Primary["tcp-1"] = PrimaryMetric{Name: "gbps", Unit: "Gbit/s", HigherBetter: true}
	r.Secondary["tcp-1"] = []PrimaryMetric{{Name: "rtt_p50_us", Unit: "us"}}
	for i, v := range []float64{1, 2, 3} {
		r.Add(sample("tcp-1", "ours", i+1, v))
		r.Add(sample("tcp-1", "theirs", i+1, 2))
	}
	r.Add(Sample{Case: "tcp-1", Impl: "theirs", Run: 4, Error: "boom"})
	r.Compare([]string{"ours"}, []string{"theirs"})
	if len(r.Ratios) != 2 {
		t.Fatalf("ratios: %+v", r.Ratios)
	}
	q := r.Ratios[0]
	if q.Metric != "gbps" || q.Min != 0.5 || q.Median != 1 || q.Max != 1.5 || q.Runs != 3 || q.OursMedian != 2 || q.TheirsMedian != 2 {
		t.Errorf("ratio %+v", q)
	}
	dir := t.TempDir()
	base := filepath.Join(dir, "sub", "tunbench")
	if err := r.WriteAll(base); err != nil {
		t.Fatal(err)
	}
	var back Report
	b, _ := os.ReadFile(base + ".json")
	if err := json.Unmarshal(b, &back); err != nil || len(back.Samples) != 7 {
		t.Errorf("JSON round trip: %v, %d samples", err, len(back.Samples))
	}
	md, _ := os.ReadFile(base + ".md")
	for _, want := range []string{"| tcp-1 | ours | 3 |", "(+1 failed)", "| tcp-1 | gbps | ours | theirs |", "boom"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	p, _ := os.ReadFile(base + ".png")
	img, err := png.Decode(bytes.NewReader(p))
	if err != nil || img.Bounds().Dx() < 100 {
		t.Errorf("PNG: %v", err)
	}
}

func TestStats(t *testing.T) {
	if lo, m, hi := MinMedMax([]float64{3, 1, 2, 10}); lo != 1 || m != 2.5 || hi != 10 {
		t.Errorf("MinMedMax = %v %v %v", lo, m, hi)
	}
	if _, m, _ := MinMedMax(nil); m != 0 {
		t.Errorf("median of nothing = %v", m)
	}
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	if Percentile(d, 50) != 50 || Percentile(d, 99) != 99 || Percentile(d, 100) != 100 || Percentile(nil, 50) != 0 {
		t.Errorf("percentiles %v %v", Percentile(d, 50), Percentile(d, 99))
	}
	for v, want := range map[float64]string{0: "0", 1.234: "1.23", 12.34: "12.3", 1234: "1234", 2.5e6: "2.5M"} {
		if got := Num(v); got != want {
			t.Errorf("Num(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestFontCoversLabels(t *testing.T) {
	for _, s := range []string{"0123456789", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", ".-/:%()_=+,@#<>"} {
		for _, r := range s {
			if _, ok := font5x7[r]; !ok {
				t.Errorf("no glyph for %q", r)
			}
		}
	}
}

func TestProgress(t *testing.T) {
	var b bytes.Buffer
	p := NewProgress(&b, 3)
	p.Step("one")
	p.Step("two %d", 2)
	if !strings.Contains(b.String(), "[1/3") || !strings.Contains(b.String(), "[2/3") || !strings.Contains(b.String(), "left] two 2") {
		t.Errorf("progress:\n%s", b.String())
	}
}
