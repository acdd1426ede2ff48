package peers

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"goswan/ctl"
	"goswan/internal/testnet"
)

// BuildGoswan builds bin/pluto, bin/ipsec and bin/whack of this module into
// dir (for a TestMain).
func BuildGoswan(dir string) error {
	out, err := exec.Command("go", "build", "-o", dir+"/", "goswan/cmd/pluto", "goswan/cmd/ipsec", "goswan/cmd/whack").CombinedOutput()
	if err != nil {
		return fmt.Errorf("building goswan: %v\n%s", err, out)
	}
	return nil
}

// Pluto is one of our daemons running in a namespace with --nofork.
type Pluto struct {
	t      testing.TB
	Dir    string // its config, secrets and run directory
	Ctl    string // the control socket
	proc   *testnet.Process
	Config string
}

// PlutoConfig says how to run our pluto.
type PlutoConfig struct {
	BinDir  string   // where BuildGoswan put the binaries
	Conf    string   // ipsec.conf text
	Secrets string   // ipsec.secrets text
	Args    []string // more pluto flags (a --use-* flag is required)
	Env     []string // extra environment, e.g. the test-only memory back end
}

// StartPluto runs our pluto in ns and waits for "Pluto initialized".
func StartPluto(t testing.TB, ns *testnet.Namespace, cfg PlutoConfig) *Pluto {
	t.Helper()
	dir, err := os.MkdirTemp("", "gsp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &Pluto{t: t, Dir: dir, Ctl: filepath.Join(dir, "run", "pluto.ctl"), Config: filepath.Join(dir, "ipsec.conf")}
	if err := os.WriteFile(p.Config, []byte(cfg.Conf), 0o644); err != nil {
		t.Fatal(err)
	}
	secrets := filepath.Join(dir, "ipsec.secrets")
	if err := os.WriteFile(secrets, []byte(cfg.Secrets), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"env"}
	args = append(args, cfg.Env...)
	args = append(args, filepath.Join(cfg.BinDir, "pluto"), "--nofork", "--stderrlog", "--rundir", filepath.Join(dir, "run"),
		"--config", p.Config, "--secretsfile", secrets)
	args = append(args, cfg.Args...)
	p.proc, err = ns.Start(t, "goswan-pluto", args...)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.proc.WaitOutput("Pluto initialized", 10*time.Second); err != nil {
		t.Fatalf("our pluto did not start: %v\n%s", err, p.proc.Output())
	}
	return p
}

// Do sends one control request and returns the result and the streamed
// lines.
func (p *Pluto) Do(req *ctl.Request, timeout time.Duration) (*ctl.Result, []string, error) {
	c, err := ctl.Dial(p.Ctl)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var lines []string
	res, err := c.Do(ctx, req, func(l string) { lines = append(lines, l) })
	return res, lines, err
}

// Up runs "ipsec up name" and fails the test's expectations through the
// returned error.
func (p *Pluto) Up(name string) error {
	res, lines, err := p.Do(&ctl.Request{Command: ctl.CmdUp, Name: name}, 30*time.Second)
	if err != nil {
		return err
	}
	if res.Status != ctl.StatusOK {
		return fmt.Errorf("up %s: status %d: %s\n%s", name, res.Status, res.Error, strings.Join(lines, "\n"))
	}
	return nil
}

// Down runs "ipsec down name".
func (p *Pluto) Down(name string) error {
	res, lines, err := p.Do(&ctl.Request{Command: ctl.CmdDown, Name: name}, 30*time.Second)
	if err != nil {
		return err
	}
	if res.Status != ctl.StatusOK {
		return fmt.Errorf("down %s: status %d: %s\n%s", name, res.Status, res.Error, strings.Join(lines, "\n"))
	}
	return nil
}

// PlutoStatus is the part of "ipsec status --json" the tests read.
type PlutoStatus struct {
	IKESAs []struct {
		Conn, SPIi, SPIr, State, Algorithms string
		Initiator                           bool
		Established                         time.Time
		NATUs, NATPeer                      bool
	} `json:"ike_sas"`
	ChildSAs []struct {
		Conn                  string
		SPIIn, SPIOut         uint32
		Mode                  string
		Encap                 bool
		Algorithms            string
		LocalTS, RemoteTS     []string
		BytesIn, BytesOut     uint64
		PacketsIn, PacketsOut uint64
	} `json:"child_sas"`
}

// Status reads "ipsec status --json".
func (p *Pluto) Status() (PlutoStatus, error) {
	var st PlutoStatus
	res, _, err := p.Do(&ctl.Request{Command: ctl.CmdStatus, JSON: true}, 10*time.Second)
	if err != nil {
		return st, err
	}
	if res.Status != ctl.StatusOK {
		return st, fmt.Errorf("status: %s", res.Error)
	}
	err = json.Unmarshal(res.Data, &st)
	return st, err
}

// WaitNoSAs waits until our daemon holds no SA.
func (p *Pluto) WaitNoSAs(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := p.Status()
		if err == nil && len(st.IKESAs) == 0 && len(st.ChildSAs) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("our pluto still has SAs after %v: %+v (%v)", timeout, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitLog waits until the daemon's log holds substr.
func (p *Pluto) WaitLog(substr string, timeout time.Duration) error {
	return p.proc.WaitOutput(substr, timeout)
}

// Log is what the daemon wrote (it logs to standard error).
func (p *Pluto) Log() string { return p.proc.Output() }

// Stop ends the daemon with SIGTERM.
func (p *Pluto) Stop() error { return p.proc.Stop(10 * time.Second) }
