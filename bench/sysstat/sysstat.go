// Package sysstat reads what the benchmarks need from /proc: how busy the
// machine is (/proc/stat), how much CPU time and memory a process used
// (/proc/PID/stat, /proc/PID/status), and waits, within a bound, for a
// quiet machine before a measurement.
package sysstat

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ClockTick is USER_HZ, the unit of the times in /proc (100 on Linux).
const ClockTick = 100

// CPUTimes is the "cpu" line of /proc/stat, in ticks.
type CPUTimes struct {
	Busy, Total uint64
}

// ParseProcStat reads the aggregate "cpu" line of a /proc/stat text.
// Busy is everything but idle and iowait.
func ParseProcStat(text []byte) (CPUTimes, error) {
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[0] != "cpu" {
			continue
		}
		var t CPUTimes
		for i, s := range f[1:] {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return CPUTimes{}, fmt.Errorf("/proc/stat: field %d of the cpu line is %q", i+1, s)
			}
			if i >= 8 { // guest and guest_nice are already in user and nice
				break
			}
			t.Total += v
			if i != 3 && i != 4 { // idle, iowait
				t.Busy += v
			}
		}
		return t, nil
	}
	return CPUTimes{}, fmt.Errorf("/proc/stat: no aggregate cpu line")
}

// ReadCPU reads /proc/stat.
func ReadCPU() (CPUTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPUTimes{}, err
	}
	return ParseProcStat(b)
}

// Busy is the fraction (0..1) of all cores' time that was busy between a
// and b.
func Busy(a, b CPUTimes) float64 {
	if b.Total <= a.Total {
		return 0
	}
	return float64(b.Busy-a.Busy) / float64(b.Total-a.Total)
}

// ProcTimes is a process's CPU time (all its threads, children not
// included).
type ProcTimes struct {
	User, System time.Duration
}

// CPU is User+System.
func (p ProcTimes) CPU() time.Duration { return p.User + p.System }

// ParsePIDStat reads utime and stime from a /proc/PID/stat text. The
// command name, in parentheses, may itself hold spaces and parentheses.
func ParsePIDStat(text []byte) (ProcTimes, error) {
	i := bytes.LastIndexByte(text, ')')
	if i < 0 {
		return ProcTimes{}, fmt.Errorf("/proc/PID/stat: no ')' in %q", text)
	}
	f := strings.Fields(string(text[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return ProcTimes{}, fmt.Errorf("/proc/PID/stat: %d fields after the name, want at least 13", len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return ProcTimes{}, fmt.Errorf("/proc/PID/stat: utime %q stime %q", f[11], f[12])
	}
	tick := time.Second / ClockTick
	return ProcTimes{User: time.Duration(u) * tick, System: time.Duration(s) * tick}, nil
}

// ReadPID reads /proc/PID/stat.
func ReadPID(pid int) (ProcTimes, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcTimes{}, err
	}
	return ParsePIDStat(b)
}

// ParseRSS reads VmRSS, in bytes, from a /proc/PID/status text.
func ParseRSS(text []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "VmRSS:") {
			continue
		}
		f := strings.Fields(l[len("VmRSS:"):])
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc/PID/status: VmRSS line %q", l)
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		return kb * 1024, err
	}
	return 0, fmt.Errorf("/proc/PID/status: no VmRSS line")
}

// RSS reads a process's resident set size in bytes.
func RSS(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return ParseRSS(b)
}

// Noise is how busy the machine was around one measurement.
type Noise struct {
	BusyBefore float64       `json:"busy_before"` // over the second before the run, 0..1
	BusyDuring float64       `json:"busy_during"` // over the run, all processes (ours included)
	Waited     time.Duration `json:"waited_ns"`   // how long we waited for quiet
	Quiet      bool          `json:"quiet"`       // BusyBefore was under the bound
}

// WaitQuiet samples the machine in 500 ms steps until it is at most
// maxBusy busy over a step, or maxWait has passed, and reports the last
// sample.
func WaitQuiet(maxBusy float64, maxWait time.Duration) Noise {
	start := time.Now()
	var n Noise
	for {
		a, err := ReadCPU()
		if err != nil {
			return n
		}
		time.Sleep(500 * time.Millisecond)
		b, _ := ReadCPU()
		n.BusyBefore = Busy(a, b)
		n.Waited = time.Since(start)
		n.Quiet = n.BusyBefore <= maxBusy
		if n.Quiet || n.Waited >= maxWait {
			return n
		}
	}
}

// Meter measures the machine and some processes over one run.
type Meter struct {
	start time.Time
	cpu   CPUTimes
	pids  []int
	procs []ProcTimes
}

// StartMeter samples /proc/stat and each pid's times.
func StartMeter(pids ...int) *Meter {
	m := &Meter{start: time.Now(), pids: pids}
	m.cpu, _ = ReadCPU()
	for _, p := range pids {
		t, _ := ReadPID(p)
		m.procs = append(m.procs, t)
	}
	return m
}

// Reading is what a Meter measured.
type Reading struct {
	Elapsed time.Duration
	Busy    float64         // the machine, 0..1
	CPU     []time.Duration // per pid, in StartMeter's order
}

// Stop samples again and returns the differences.
func (m *Meter) Stop() Reading {
	r := Reading{Elapsed: time.Since(m.start)}
	c, _ := ReadCPU()
	r.Busy = Busy(m.cpu, c)
	for i, p := range m.pids {
		t, err := ReadPID(p)
		if err != nil {
			r.CPU = append(r.CPU, 0)
			continue
		}
		r.CPU = append(r.CPU, t.CPU()-m.procs[i].CPU())
	}
	return r
}
