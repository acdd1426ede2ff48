package peers

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"goswan/ctl"
	"goswan/internal/testnet"
)

// SetprivPath is util-linux's setpriv, which StartPlutoAs runs pluto
// through to drop root.
const SetprivPath = "setpriv"

// StartPlutoAs is StartPluto for a daemon that runs as uid:gid (no
// supplementary groups, no capabilities) instead of root: its directory,
// configuration and secrets belong to that user, and it is started
// through setpriv(1), which execs pluto in place (the PID held is
// pluto's). cfg.BinDir and the directories above it must be searchable
// and its programs executable by that user. The test itself stays root,
// and so can use the control socket.
func StartPlutoAs(t testing.TB, ns *testnet.Namespace, cfg PlutoConfig, uid, gid int) *Pluto {
	t.Helper()
	dir, err := os.MkdirTemp("", "gsp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &Pluto{t: t, Dir: dir, Ctl: filepath.Join(dir, "run", "pluto.ctl"), Config: filepath.Join(dir, "ipsec.conf")}
	secrets := filepath.Join(dir, "ipsec.secrets")
	for _, f := range []struct {
		path, text string
		mode       os.FileMode
	}{{p.Config, cfg.Conf, 0o644}, {secrets, cfg.Secrets, 0o600}} {
		if err := os.WriteFile(f.path, []byte(f.text), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, path := range []string{dir, p.Config, secrets} {
		if err := os.Chown(path, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{SetprivPath, "--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(gid), "--clear-groups",
		"--inh-caps=-all", "--bounding-set=-all", "--", "env"}
	args = append(args, cfg.Env...)
	args = append(args, filepath.Join(cfg.BinDir, "pluto"), "--nofork", "--stderrlog", "--rundir", filepath.Join(dir, "run"),
		"--config", p.Config, "--secretsfile", secrets)
	args = append(args, cfg.Args...)
	p.proc, err = ns.Start(t, fmt.Sprintf("goswan-pluto(uid %d)", uid), args...)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.proc.WaitOutput("Pluto initialized", 10*time.Second); err != nil {
		t.Fatalf("our pluto (uid %d) did not start: %v\n%s", uid, err, p.proc.Output())
	}
	return p
}

// PID is the daemon's process ID.
func (p *Pluto) PID() int { return p.proc.PID() }

// Traffic is one entry of "ipsec trafficstatus --json".
type Traffic struct {
	Conn       string   `json:"conn"`
	SPIIn      string   `json:"spi_in"`
	SPIOut     string   `json:"spi_out"`
	BytesIn    uint64   `json:"bytes_in"`
	BytesOut   uint64   `json:"bytes_out"`
	PacketsIn  uint64   `json:"packets_in"`
	PacketsOut uint64   `json:"packets_out"`
	LocalTS    []string `json:"local_ts"`
	RemoteTS   []string `json:"remote_ts"`
}

// TrafficStatus reads "ipsec trafficstatus --json".
func (p *Pluto) TrafficStatus() ([]Traffic, error) {
	var list []Traffic
	res, _, err := p.Do(&ctl.Request{Command: ctl.CmdTrafficStatus, JSON: true}, 10*time.Second)
	if err != nil {
		return nil, err
	}
	if res.Status != ctl.StatusOK {
		return nil, fmt.Errorf("trafficstatus: %s", res.Error)
	}
	err = json.Unmarshal(res.Data, &list)
	return list, err
}

// StatusRaw reads "ipsec status --json" as generic JSON, for the fields
// PlutoStatus does not name (global, counters).
func (p *Pluto) StatusRaw() (map[string]any, error) {
	var m map[string]any
	res, _, err := p.Do(&ctl.Request{Command: ctl.CmdStatus, JSON: true}, 10*time.Second)
	if err != nil {
		return nil, err
	}
	if res.Status != ctl.StatusOK {
		return nil, fmt.Errorf("status: %s", res.Error)
	}
	err = json.Unmarshal(res.Data, &m)
	return m, err
}

// Exited reports whether the daemon has ended.
func (p *Pluto) Exited() bool { return p.proc.Exited() }
