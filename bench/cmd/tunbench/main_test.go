package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"goswan/bench/internal/toolstest"
	"goswan/bench/report"
	"goswan/internal/testnet"
)

var toolPath, binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tunbench-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	toolPath, binDir, err = toolstest.Build(dir, "goswan/bench/cmd/tunbench")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runTool runs a short tunbench with the given back end and returns its
// report, after checking that it left nothing behind.
func runTool(t *testing.T, backend string) *report.Report {
	t.Helper()
	out := filepath.Join(t.TempDir(), "tb")
	cmd := exec.Command(toolPath, "-backends", backend, "-bindir", binDir, "-runs", "1", "-duration", "1s",
		"-ping-duration", "300ms", "-tests", "tcp1,udp,ping", "-udp-rate", "2000", "-quiet-wait", "0", "-out", out)
	// The tool's own files (and so its daemons' command lines) live
	// under a folder of this test only.
	tmp := t.TempDir()
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	b, err := cmd.CombinedOutput()
	t.Logf("tunbench output:\n%s", b)
	if err != nil {
		t.Fatalf("tunbench: %v", err)
	}
	if left := toolstest.Leftovers(cmd.Process.Pid, tmp); len(left) > 0 {
		t.Errorf("tunbench left behind: %v", left)
	}
	var rep report.Report
	j, err := os.ReadFile(out + ".json")
	if err != nil || json.Unmarshal(j, &rep) != nil {
		t.Fatalf("reading %s.json: %v", out, err)
	}
	for _, ext := range []string{".md", ".png"} {
		if st, err := os.Stat(out + ext); err != nil || st.Size() == 0 {
			t.Errorf("no %s%s: %v", out, ext, err)
		}
	}
	return &rep
}

// checkPlausible: every case ran, figures are non-zero, and what went in
// came out.
func checkPlausible(t *testing.T, rep *report.Report, impl string) {
	t.Helper()
	seen := map[string]bool{}
	for _, s := range rep.Samples {
		if s.Impl != impl {
			continue
		}
		seen[s.Case] = true
		if s.Error != "" {
			t.Errorf("%s: %s", s.Case, s.Error)
			continue
		}
		m := s.Metrics
		switch {
		case s.Case == "tcp-1":
			if m["gbps"] <= 0 || m["recv_bytes"] <= 0 || m["recv_bytes"] != m["sent_bytes"] || m["cpu_s_per_gb_a"] <= 0 {
				t.Errorf("tcp-1: %v", m)
			}
			// The tunnel carried at least the payload, and the receiving
			// daemon opened everything the sending one sealed.
			if m["tunnel_out_bytes_a"] < m["sent_bytes"] || m["tunnel_out_bytes_a"] != m["tunnel_in_bytes_b"] || m["tunnel_out_pkts_a"] != m["tunnel_in_pkts_b"] {
				t.Errorf("tcp-1 tunnel counters: %v", m)
			}
		case s.Case == "ping":
			if m["rtt_p50_us"] <= 0 || m["rtt_p99_us"] < m["rtt_p50_us"] || m["loss_pct"] != 0 {
				t.Errorf("ping: %v", m)
			}
		default: // udp
			if m["pps"] <= 0 || m["recv_pkts"] <= 0 || m["recv_pkts"] > m["sent_pkts"] || m["loss_pct"] > 5 {
				t.Errorf("%s: %v", s.Case, m)
			}
		}
	}
	if len(seen) != 3 {
		t.Errorf("cases run: %v, want 3", seen)
	}
}

func TestNetstack(t *testing.T) {
	rep := runTool(t, "netstack")
	checkPlausible(t, rep, "goswan-netstack")
}

func TestUserspace(t *testing.T) {
	testnet.Require(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testnet.Unavailable(t, "no /dev/net/tun: %v", err)
	}
	rep := runTool(t, "userspace")
	checkPlausible(t, rep, "goswan-userspace")
}

// TestInterrupted stops tunbench with SIGINT in the middle of a run: it
// must remove everything it made and exit with 130.
func TestInterrupted(t *testing.T) {
	backend := "netstack"
	if os.Geteuid() == 0 {
		backend = "userspace"
	}
	tmp := t.TempDir()
	cmd := exec.Command(toolPath, "-backends", backend, "-bindir", binDir, "-runs", "1", "-duration", "20s", "-tests", "tcp1", "-quiet-wait", "0")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "tcp-1, run 1") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("tunbench did not start the TCP run:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if cmd.ProcessState.ExitCode() != 130 {
		t.Errorf("exit %v, want 130:\n%s", err, out.String())
	}
	time.Sleep(200 * time.Millisecond)
	if left := toolstest.Leftovers(cmd.Process.Pid, tmp); len(left) > 0 {
		t.Errorf("an interrupted tunbench left behind: %v", left)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
