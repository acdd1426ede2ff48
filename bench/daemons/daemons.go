// Package daemons starts the tunnel daemons the benchmarks measure, each in
// a lab.Namespace (or on the host's loopback for ours with --use-netstack):
// our pluto, strongSwan's charon with kernel-libipsec, and wireguard-go.
// Every process is registered with the Lab, which stops it by PID.
package daemons

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"goswan/bench/lab"
	"goswan/ctl"
	"goswan/internal/peers"
)

// BuildGoswan builds pluto, ipsec and whack of this module into dir. It
// must run inside the module (the tools are run from the repository).
func BuildGoswan(dir string) error { return peers.BuildGoswan(dir) }

// FindGoswan returns a folder with a pluto binary: dir if it has one,
// else ./bin, else it builds into a folder of the Lab.
func FindGoswan(l *lab.Lab, dir string) (string, error) {
	if dir != "" {
		if lab.Have(filepath.Join(dir, "pluto")) {
			return dir, nil
		}
		return "", fmt.Errorf("no pluto in %s", dir)
	}
	d := l.Path("bin")
	if err := BuildGoswan(d); err != nil {
		return "", err
	}
	return d, nil
}

// Pluto is one of our daemons.
type Pluto struct {
	Name string
	Dir  string
	Ctl  string
	Proc *lab.Process
}

// PlutoConfig says how to run it.
type PlutoConfig struct {
	BinDir  string
	Name    string
	Conf    string
	Secrets string
	Args    []string
	Env     []string
}

// StartPluto runs pluto --nofork in ns (nil: on the host) and waits for
// "Pluto initialized".
func StartPluto(l *lab.Lab, ns *lab.Namespace, cfg PlutoConfig) (*Pluto, error) {
	dir := l.Path("pluto-"+cfg.Name, "x")
	dir = filepath.Dir(dir)
	p := &Pluto{Name: cfg.Name, Dir: dir, Ctl: filepath.Join(dir, "run", "pluto.ctl")}
	conf, secrets := filepath.Join(dir, "ipsec.conf"), filepath.Join(dir, "ipsec.secrets")
	if err := os.WriteFile(conf, []byte(cfg.Conf), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(secrets, []byte(cfg.Secrets), 0o600); err != nil {
		return nil, err
	}
	args := append([]string{filepath.Join(cfg.BinDir, "pluto"), "--nofork", "--stderrlog", "--rundir", filepath.Join(dir, "run"),
		"--config", conf, "--secretsfile", secrets}, cfg.Args...)
	var cmd *exec.Cmd
	if ns != nil {
		cmd = ns.Command(args...)
	} else {
		cmd = exec.Command(args[0], args[1:]...)
	}
	cmd.Env = append(os.Environ(), cfg.Env...)
	proc, err := l.Start("pluto-"+cfg.Name, cmd)
	if err != nil {
		return nil, err
	}
	p.Proc = proc
	if err := proc.WaitOutput("Pluto initialized", 15*time.Second); err != nil {
		return nil, err
	}
	return p, nil
}

// PID is the daemon's process ID.
func (p *Pluto) PID() int { return p.Proc.PID() }

// Do sends one control request.
func (p *Pluto) Do(ctx context.Context, req *ctl.Request) (*ctl.Result, []string, error) {
	c, err := ctl.Dial(p.Ctl)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	var lines []string
	res, err := c.Do(ctx, req, func(s string) { lines = append(lines, s) })
	if err == nil && res.Status != ctl.StatusOK {
		err = fmt.Errorf("%s %s: status %d: %s\n%s", req.Command, req.Name, res.Status, res.Error, lab.Tail(strings.Join(lines, "\n"), 10))
	}
	return res, lines, err
}

// Up runs "ipsec up name".
func (p *Pluto) Up(ctx context.Context, name string) error {
	_, _, err := p.Do(ctx, &ctl.Request{Command: ctl.CmdUp, Name: name})
	return err
}

// Down runs "ipsec down name".
func (p *Pluto) Down(ctx context.Context, name string) error {
	_, _, err := p.Do(ctx, &ctl.Request{Command: ctl.CmdDown, Name: name})
	return err
}

// Status is the part of "ipsec status --json" the tools read (the fields
// of ike.IKESAStatus and ike.ChildSAStatus by name; kept here so the tools
// build while the IKE package changes).
type Status struct {
	IKESAs []struct {
		Conn        string
		SPIi, SPIr  string
		Initiator   bool
		State       string
		Established time.Time
	} `json:"ike_sas"`
	ChildSAs []struct {
		Conn                  string
		SPIIn, SPIOut         uint32
		Encap                 bool
		BytesIn, BytesOut     uint64
		PacketsIn, PacketsOut uint64
	} `json:"child_sas"`
}

// Status reads the daemon's SAs.
func (p *Pluto) Status(ctx context.Context) (Status, error) {
	var st Status
	res, _, err := p.Do(ctx, &ctl.Request{Command: ctl.CmdStatus, JSON: true})
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(res.Data, &st)
}
