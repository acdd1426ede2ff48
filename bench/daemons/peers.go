package daemons

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/curve25519"

	"goswan/bench/lab"
	"goswan/internal/peers"
)

// Paths of the peers' programs.
const (
	CharonPath  = peers.CharonPath
	SwanctlPath = peers.SwanctlPath
	LibipsecSO  = "/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so"
)

// HaveCharon says whether strongSwan with kernel-libipsec can run here, and
// why not.
func HaveCharon() (bool, string) {
	for _, p := range []string{CharonPath, SwanctlPath, LibipsecSO, "/dev/net/tun"} {
		if _, err := os.Stat(p); err != nil {
			return false, fmt.Sprintf("strongSwan: %s missing (Debian: strongswan-charon strongswan-swanctl libcharon-extra-plugins)", p)
		}
	}
	if !lab.IsRoot() {
		return false, "strongSwan: kernel-libipsec needs root (TUN, private /run)"
	}
	return true, ""
}

// WireguardGo finds the wireguard-go binary: $WIREGUARD_GO, then
// wireguard-go or wireguard (the name `go install
// golang.zx2c4.com/wireguard@latest` gives) on PATH or in $GOPATH/bin.
func WireguardGo() string {
	if p := os.Getenv("WIREGUARD_GO"); p != "" {
		return p
	}
	for _, n := range []string{"wireguard-go", "wireguard"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		home, _ := os.UserHomeDir()
		gopath = filepath.Join(home, "go")
	}
	for _, n := range []string{"wireguard-go", "wireguard"} {
		if p := filepath.Join(gopath, "bin", n); lab.Have(p) {
			return p
		}
	}
	return ""
}

// HaveWireguard says whether wireguard-go and wg can run here, and why not.
func HaveWireguard() (bool, string) {
	if WireguardGo() == "" {
		return false, "wireguard-go: not installed (go install golang.zx2c4.com/wireguard@latest)"
	}
	if !lab.Have("wg") {
		return false, "wireguard-go: no wg (Debian: wireguard-tools)"
	}
	if !lab.IsRoot() || !lab.Have("nsenter") {
		return false, "wireguard-go: needs root and nsenter (TUN, private /run)"
	}
	return true, ""
}

// Charon is a strongSwan charon in a namespace.
type Charon struct {
	NS       *lab.Namespace
	Dir      string
	ConfPath string
	ViciURI  string
	Proc     *lab.Process
}

// StartCharon writes a private strongswan.conf and swanctl.conf, starts
// charon in ns with a private /run (charon hard-codes /run/charon.pid),
// waits for vici and loads the connections.
func StartCharon(l *lab.Lab, ns *lab.Namespace, name string, conns []peers.SwanConn, extra string) (*Charon, error) {
	dir := filepath.Dir(l.Path("charon-"+name, "x"))
	c := &Charon{NS: ns, Dir: dir, ConfPath: filepath.Join(dir, "strongswan.conf"), ViciURI: "unix://" + filepath.Join(dir, "charon.vici")}
	sw, err := peers.SwanctlConf(conns)
	if err != nil {
		return nil, err
	}
	os.MkdirAll(filepath.Join(dir, "run"), 0o755)
	conf := fmt.Sprintf(`charon {
  load_modular = no
  load = %s
  dos_protection = no
  init_limit_half_open = 0
  ikesa_table_size = 4096
  plugins {
    vici {
      socket = %s
    }
  }
  filelog {
    main {
      path = %s
      default = 1
      ike = 1
    }
  }
  syslog {
    daemon {
      default = -1
    }
  }
%s
}
swanctl {
  load = pem pkcs1 pkcs8 x509 revocation constraints pubkey openssl random
}
`, strings.Join(peers.DefaultCharonPlugins, " "), c.ViciURI, filepath.Join(dir, "charon.log"), extra)
	if err := os.WriteFile(c.ConfPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	swPath := filepath.Join(dir, "swanctl.conf")
	if err := os.WriteFile(swPath, []byte(sw), 0o600); err != nil {
		return nil, err
	}
	script := fmt.Sprintf("mount --bind %s /run && exec env STRONGSWAN_CONF=%s %s",
		lab.ShellQuote(filepath.Join(dir, "run")), lab.ShellQuote(c.ConfPath), CharonPath)
	c.Proc, err = l.Start("charon-"+name, ns.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script))
	if err != nil {
		return nil, err
	}
	sock := strings.TrimPrefix(c.ViciURI, "unix://")
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			if _, err := c.Swanctl("--stats"); err == nil {
				break
			}
		}
		if c.Proc.Exited() || time.Now().After(deadline) {
			return nil, fmt.Errorf("charon %s: no vici socket: %s", name, lab.Tail(c.Proc.Output(), 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out, err := c.Swanctl("--load-all", "--file", swPath); err != nil {
		return nil, fmt.Errorf("charon %s: %v\n%s", name, err, out)
	}
	return c, nil
}

// PID is charon's process ID.
func (c *Charon) PID() int { return c.Proc.PID() }

// Swanctl runs swanctl COMMAND ARGS --uri VICI.
func (c *Charon) Swanctl(command string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	argv := append(append([]string{command}, args...), "--uri", c.ViciURI)
	cmd := exec.CommandContext(ctx, SwanctlPath, argv...)
	cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+c.ConfPath)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("swanctl %s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// ChildBytes sums the byte counters of every installed Child SA
// (swanctl --list-sas).
func (c *Charon) ChildBytes() (in, out uint64, err error) {
	text, err := c.Swanctl("--list-sas", "--pretty")
	if err != nil {
		return 0, 0, err
	}
	return SwanctlBytes(text)
}

// SwanctlBytes sums the Child SAs' bytes in `swanctl --list-sas --pretty`
// output.
func SwanctlBytes(text string) (in, out uint64, err error) {
	sas, err := peers.ParseListSAs(text)
	if err != nil {
		return 0, 0, err
	}
	for _, sa := range sas {
		for _, ch := range sa.Children {
			in += ch.BytesIn
			out += ch.BytesOut
		}
	}
	return in, out, nil
}

// Wireguard is one wireguard-go in a namespace with its own /run.
type Wireguard struct {
	NS   *lab.Namespace
	Dev  string
	Proc *lab.Process
}

// WGKeys makes a Curve25519 key pair in wg's base64 form.
func WGKeys() (priv, pub string, err error) {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return "", "", err
	}
	k[0] &= 248
	k[31] = k[31]&127 | 64
	p, err := curve25519.X25519(k[:], curve25519.Basepoint)
	if err != nil {
		return "", "", err
	}
	return base64.StdEncoding.EncodeToString(k[:]), base64.StdEncoding.EncodeToString(p), nil
}

// StartWireguard runs wireguard-go in the foreground in ns inside a
// private mount namespace whose /run is a tmpfs (the UAPI socket path is
// the same in every network namespace), and waits for its socket.
func StartWireguard(l *lab.Lab, ns *lab.Namespace, dev string) (*Wireguard, error) {
	script := fmt.Sprintf("mount -t tmpfs tmpfs /run && mkdir -p /run/wireguard && exec env WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 LOG_LEVEL=error %s -f %s",
		lab.ShellQuote(WireguardGo()), dev)
	p, err := l.Start("wireguard-go-"+ns.Label, ns.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script))
	if err != nil {
		return nil, err
	}
	w := &Wireguard{NS: ns, Dev: dev, Proc: p}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := w.WG("show", dev); err == nil {
			return w, nil
		}
		if p.Exited() || time.Now().After(deadline) {
			return nil, fmt.Errorf("wireguard-go in %s did not come up: %s", ns.Name, lab.Tail(p.Output(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// PID is wireguard-go's process ID.
func (w *Wireguard) PID() int { return w.Proc.PID() }

// WG runs wg inside the daemon's mount and network namespaces.
func (w *Wireguard) WG(args ...string) (string, error) {
	return lab.Run("nsenter", append([]string{"-t", strconv.Itoa(w.PID()), "-m", "-n", "wg"}, args...)...)
}

// WGTransfer is one peer's counters from `wg show DEV transfer`.
type WGTransfer struct {
	PublicKey string
	RX, TX    uint64
}

// ParseWGTransfer reads `wg show DEV transfer` (public key, received
// bytes, sent bytes, tab-separated, one peer a line).
func ParseWGTransfer(text string) ([]WGTransfer, error) {
	var out []WGTransfer
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("wg show transfer: line %q has %d fields, want 3", line, len(f))
		}
		rx, err1 := strconv.ParseUint(f[1], 10, 64)
		tx, err2 := strconv.ParseUint(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("wg show transfer: line %q: counters are not numbers", line)
		}
		out = append(out, WGTransfer{PublicKey: f[0], RX: rx, TX: tx})
	}
	return out, nil
}

// ParseSwanctlStatsIKE reads the number of IKE SAs from `swanctl --stats`
// ("IKE_SAs: 12 total, 0 half-open").
func ParseSwanctlStatsIKE(text string) (int, error) {
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if rest, ok := strings.CutPrefix(l, "IKE_SAs:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.Atoi(f[0])
			}
		}
	}
	return 0, fmt.Errorf("swanctl --stats: no IKE_SAs line in %q", text)
}
