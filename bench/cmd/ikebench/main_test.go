package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"goswan/bench/internal/toolstest"
	"goswan/bench/report"
)

var toolPath, binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ikebench-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	toolPath, binDir, err = toolstest.Build(dir, "goswan/bench/cmd/ikebench")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestShortRun brings 20 IKE SAs up and down between two of our daemons,
// then 30 for the limit probe, and checks the figures and the cleanup.
func TestShortRun(t *testing.T) {
	out := filepath.Join(t.TempDir(), "ib")
	cmd := exec.Command(toolPath, "-k", "20", "-c", "4", "-runs", "1", "-limit", "30", "-bindir", binDir, "-quiet-wait", "0", "-out", out)
	// The tool's own files (and so its daemons' command lines) live
	// under a folder of this test only.
	tmp := t.TempDir()
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	b, err := cmd.CombinedOutput()
	t.Logf("ikebench output:\n%s", b)
	if err != nil {
		t.Fatalf("ikebench: %v", err)
	}
	if left := toolstest.Leftovers(cmd.Process.Pid, tmp); len(left) > 0 {
		t.Errorf("ikebench left behind: %v", left)
	}
	var rep report.Report
	j, err := os.ReadFile(out + ".json")
	if err != nil || json.Unmarshal(j, &rep) != nil {
		t.Fatalf("reading %s.json: %v", out, err)
	}
	var runs, held int
	for _, s := range rep.Samples {
		m := s.Metrics
		switch s.Case {
		case "ike-x25519-c4-k20":
			runs++
			if s.Error != "" || s.Note != "" || m["established"] != 20 || m["rate_per_s"] <= 0 || m["lat_p50_ms"] <= 0 || m["lat_p99_ms"] < m["lat_p50_ms"] ||
				m["ike_sas_a"] != 20 || m["ike_sas_b"] != 20 || m["down_per_s"] <= 0 {
				t.Errorf("run: %v %s", m, s.Error)
			}
		case "ike-held":
			held++
			if m["held"] != 30 {
				t.Errorf("limit probe: held %v, want 30 (%s)", m["held"], s.Error)
			}
		}
	}
	if runs != 1 || held != 1 {
		t.Errorf("samples: %+v", rep.Samples)
	}
}

func TestConfGeneration(t *testing.T) {
	conf, secrets := oursConf(options{ike: "aes_gcm128-sha2_256-dh31", esp: "aes_gcm128"}, 300, "127.0.0.1", "127.0.0.2")
	if n := countLines(conf, "conn bench-"); n != 300 {
		t.Errorf("%d conns", n)
	}
	if n := countLines(secrets, "@a-"); n != 300 {
		t.Errorf("%d secrets", n)
	}
	if subnetOf(1) != "10.64.0.1/32" || subnetOf(300) != "10.64.1.44/32" || subnetOf(70000) != "10.65.17.112/32" {
		t.Errorf("subnets %s %s %s", subnetOf(1), subnetOf(300), subnetOf(70000))
	}
}

func countLines(s, prefix string) int {
	n := 0
	for i := 0; i+len(prefix) <= len(s); i++ {
		if (i == 0 || s[i-1] == '\n') && s[i:i+len(prefix)] == prefix {
			n++
		}
	}
	return n
}
