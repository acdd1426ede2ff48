package sysstat

import (
	"os"
	"testing"
	"time"
)

const procStat = `cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0
cpu0 1393280 32966 462406 5830346 2291 0 13390 0 10000 0
intr 1462898
`

func TestParseProcStat(t *testing.T) {
	c, err := ParseProcStat([]byte(procStat))
	if err != nil {
		t.Fatal(err)
	}
	wantTotal := uint64(10132153 + 290696 + 3084719 + 46828483 + 16683 + 0 + 25195 + 0)
	wantBusy := wantTotal - 46828483 - 16683
	if c.Total != wantTotal || c.Busy != wantBusy {
		t.Errorf("got %+v, want busy %d total %d", c, wantBusy, wantTotal)
	}
	if b := Busy(CPUTimes{Busy: 0, Total: 0}, CPUTimes{Busy: 50, Total: 200}); b != 0.25 {
		t.Errorf("Busy = %v, want 0.25", b)
	}
	if _, err := ParseProcStat([]byte("intr 1\n")); err == nil {
		t.Errorf("no cpu line parsed without an error")
	}
}

func TestParsePIDStat(t *testing.T) {
	// A command name with spaces and a parenthesis, as the kernel shows it.
	line := "4242 (pl uto) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 123 456 789\n"
	p, err := ParsePIDStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if p.User != 2500*time.Millisecond || p.System != 750*time.Millisecond || p.CPU() != 3250*time.Millisecond {
		t.Errorf("got %+v", p)
	}
	if _, err := ParsePIDStat([]byte("1 (x) S 1 2")); err == nil {
		t.Errorf("short line parsed without an error")
	}
}

func TestParseRSS(t *testing.T) {
	n, err := ParseRSS([]byte("Name:\tpluto\nVmPeak:\t  100 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n"))
	if err != nil || n != 20480*1024 {
		t.Errorf("got %d, %v", n, err)
	}
	if _, err := ParseRSS([]byte("Name: x\n")); err == nil {
		t.Errorf("no VmRSS parsed without an error")
	}
}

func TestOwnProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	m := StartMeter(os.Getpid())
	for x, i := 0, 0; i < 1e7; i++ {
		x += i
	}
	r := m.Stop()
	if len(r.CPU) != 1 || r.Elapsed <= 0 {
		t.Errorf("reading %+v", r)
	}
	if rss, err := RSS(os.Getpid()); err != nil || rss == 0 {
		t.Errorf("RSS %d %v", rss, err)
	}
}
