// Package peers runs real IKEv2 implementations — strongSwan's charon and
// Libreswan's pluto — inside network namespaces made by package testnet, to
// test goswan against them, and checks captured IKE traffic with Wireshark's
// dissector (tshark).
//
// Each helper writes its own private configuration under t.TempDir(), gives
// its daemon a private /run (a bind mount in a private mount namespace), and
// is stopped by PID through t.Cleanup. Tests that use it need root and the
// Debian packages that .ci/run installs; the Require* functions skip without
// CI=true and fail under it.
package peers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"goswan/internal/testnet"
)

// Paths of strongSwan's programs in Debian's packages.
const (
	CharonPath  = "/usr/lib/ipsec/charon"
	SwanctlPath = "/usr/sbin/swanctl"
)

// DefaultCharonPlugins is the plugin list (charon.load, with load_modular =
// no) that strongSwan 5.9.8 needs for PSK and certificate authentication
// with AES-GCM/CBC, SHA-1/2 and ECP/MODP/X25519 groups (X25519 comes from
// openssl: there is no separate curve25519 plugin in Debian's build), ESP in
// user space (kernel-libipsec, which must come before kernel-netlink),
// the vici control socket and the updown hook.
var DefaultCharonPlugins = []string{
	"random", "nonce", "openssl", "pem", "pkcs1", "pkcs8", "x509", "revocation",
	"constraints", "pubkey", "gmp", "hmac", "aes", "sha1", "sha2", "kdf",
	"kernel-libipsec", "kernel-netlink", "socket-default", "vici", "updown",
}

// RequireCharon checks for root, namespaces and strongSwan's programs (see
// testnet.Unavailable for what happens when something is missing).
func RequireCharon(t testing.TB) {
	t.Helper()
	testnet.Require(t, CharonPath, SwanctlPath)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testnet.Unavailable(t, "peers: kernel-libipsec needs /dev/net/tun: %v", err)
	}
	if _, err := os.Stat("/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so"); err != nil {
		testnet.Unavailable(t, "peers: strongSwan's kernel-libipsec plugin is missing (Debian package libcharon-extra-plugins): %v", err)
	}
}

// CharonConfig is the daemon-wide part of a charon's set-up.
type CharonConfig struct {
	// Port and NATTPort are charon.port and charon.port_nat_t; 0 means 500
	// and 4500.
	Port, NATTPort int
	// Plugins is charon.load; nil means DefaultCharonPlugins.
	Plugins []string
	// LogLevels are the file logger's levels per subsystem; nil means
	// default 1, ike 2, cfg 2, knl 2.
	LogLevels map[string]int
	// Extra is copied verbatim into the charon { } section.
	Extra string
}

// Charon is a running strongSwan charon in a namespace, with its vici
// socket and configuration in Dir.
type Charon struct {
	NS          *testnet.Namespace
	Dir         string // private files: strongswan.conf, swanctl.conf, charon.log, run/
	ConfPath    string // strongswan.conf
	SwanctlConf string // swanctl.conf
	LogPath     string // charon's file log
	ViciURI     string // unix:///.../charon.vici
	Conns       []SwanConn

	proc *testnet.Process
}

// StartCharon writes strongswan.conf and swanctl.conf (from conns) for a
// charon in ns, starts it with a private /run, waits for its vici socket and
// loads the configuration (swanctl --load-all). Failures fail the test.
func StartCharon(t testing.TB, ns *testnet.Namespace, cfg CharonConfig, conns ...SwanConn) *Charon {
	t.Helper()
	dir := t.TempDir()
	c := &Charon{
		NS:          ns,
		Dir:         dir,
		ConfPath:    filepath.Join(dir, "strongswan.conf"),
		SwanctlConf: filepath.Join(dir, "swanctl.conf"),
		LogPath:     filepath.Join(dir, "charon.log"),
		ViciURI:     "unix://" + filepath.Join(dir, "charon.vici"),
		Conns:       conns,
	}
	swanctl, err := SwanctlConf(conns)
	if err != nil {
		t.Fatalf("peers: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.ConfPath, []byte(c.strongswanConf(cfg)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.SwanctlConf, []byte(swanctl), 0o600); err != nil {
		t.Fatal(err)
	}
	// ip netns exec → unshare (private mount namespace) → sh mounts our run
	// directory over /run (charon hard-codes /run/charon.pid) and execs
	// charon: every step execs, so the PID we hold is charon's.
	script := fmt.Sprintf("mount --bind %s /run && exec env STRONGSWAN_CONF=%s %s",
		shellQuote(filepath.Join(dir, "run")), shellQuote(c.ConfPath), CharonPath)
	c.proc, err = ns.Start(t, "charon@"+ns.Label, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	if err != nil {
		t.Fatalf("peers: %v", err)
	}
	if err := c.waitVici(10 * time.Second); err != nil {
		t.Fatalf("peers: %v\n%s", err, c.Log())
	}
	if len(conns) > 0 {
		if out, err := c.Swanctl("--load-all", "--file", c.SwanctlConf); err != nil {
			t.Fatalf("peers: loading %s: %v\n%s", c.SwanctlConf, err, out)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("peers: charon log in %s (%s), last lines:\n%s", ns.Name, c.LogPath, testnet.Tail(c.Log(), 60))
		}
	})
	return c
}

// strongswanConf renders the private strongswan.conf.
func (c *Charon) strongswanConf(cfg CharonConfig) string {
	port, natt := cfg.Port, cfg.NATTPort
	if port == 0 {
		port = 500
	}
	if natt == 0 {
		natt = 4500
	}
	plugins := cfg.Plugins
	if plugins == nil {
		plugins = DefaultCharonPlugins
	}
	levels := cfg.LogLevels
	if levels == nil {
		levels = map[string]int{"default": 1, "ike": 2, "cfg": 2, "knl": 2}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# written by goswan/internal/peers for namespace %s\n", c.NS.Name)
	b.WriteString("charon {\n")
	b.WriteString("  load_modular = no\n")
	fmt.Fprintf(&b, "  load = %s\n", strings.Join(plugins, " "))
	b.WriteString("  dos_protection = no\n  init_limit_half_open = 0\n")
	fmt.Fprintf(&b, "  port = %d\n  port_nat_t = %d\n", port, natt)
	fmt.Fprintf(&b, "  plugins {\n    vici {\n      socket = %s\n    }\n  }\n", c.ViciURI)
	fmt.Fprintf(&b, "  filelog {\n    main {\n      path = %s\n      append = no\n      flush_line = yes\n      time_format = %%H:%%M:%%S\n", c.LogPath)
	for _, k := range sortedKeys(levels) {
		fmt.Fprintf(&b, "      %s = %d\n", k, levels[k])
	}
	b.WriteString("    }\n  }\n")
	b.WriteString("  syslog {\n    daemon {\n      default = -1\n    }\n  }\n")
	if cfg.Extra != "" {
		b.WriteString(cfg.Extra)
		b.WriteString("\n")
	}
	b.WriteString("}\n")
	// swanctl reads this file too: give it only the plugins it needs, so
	// that it does not complain about the ones Debian did not build.
	b.WriteString("swanctl {\n  load = pem pkcs1 pkcs8 x509 revocation constraints pubkey openssl random\n}\n")
	return b.String()
}

func (c *Charon) waitVici(timeout time.Duration) error {
	sock := strings.TrimPrefix(c.ViciURI, "unix://")
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(sock); err == nil {
			if _, err := c.Swanctl("--stats"); err == nil {
				return nil
			}
		}
		if c.proc.Exited() {
			return fmt.Errorf("charon in %s exited during start-up: %v\n%s", c.NS.Name, c.proc.Wait(0), c.proc.Output())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("charon in %s: no vici socket %s after %v", c.NS.Name, sock, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Swanctl runs `swanctl COMMAND ARGS... --uri VICI` against this charon
// (the command must come first) and returns its standard output; the error
// carries standard error. It times out after 20 s.
func (c *Charon) Swanctl(command string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	argv := append([]string{command}, args...)
	argv = append(argv, "--uri", c.ViciURI)
	cmd := exec.CommandContext(ctx, SwanctlPath, argv...)
	cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+c.ConfPath)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("swanctl %s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()+"\n"+stdout.String()))
	}
	return stdout.String(), nil
}

// Initiate starts the named child SA (and its IKE SA) and waits for the
// result, at most 15 s.
func (c *Charon) Initiate(child string) error {
	_, err := c.Swanctl("--initiate", "--child", child, "--timeout", "15")
	return err
}

// InitiateAsync asks charon to start the child and returns at once, for
// when the peer is not expected to answer in a way charon accepts.
func (c *Charon) InitiateAsync(child string) error {
	_, err := c.Swanctl("--initiate", "--child", child, "--timeout", "-1")
	return err
}

// Terminate deletes the named IKE SA (with its children) and waits, at
// most 15 s, for the peer's answer.
func (c *Charon) Terminate(ike string) error {
	_, err := c.Swanctl("--terminate", "--ike", ike, "--timeout", "15")
	return err
}

// ListSAs returns the IKE SAs charon knows now.
func (c *Charon) ListSAs() ([]IKESA, error) {
	out, err := c.Swanctl("--list-sas", "--pretty")
	if err != nil {
		return nil, err
	}
	return ParseListSAs(out)
}

// WaitEstablished waits at most timeout until the IKE SA named ike is
// ESTABLISHED and each named child SA of it is INSTALLED, and returns it.
func (c *Charon) WaitEstablished(ike string, timeout time.Duration, children ...string) (IKESA, error) {
	deadline := time.Now().Add(timeout)
	var last []IKESA
	for {
		sas, err := c.ListSAs()
		if err != nil {
			return IKESA{}, err
		}
		last = sas
		for _, sa := range sas {
			if sa.Name == ike && sa.State == "ESTABLISHED" && sa.hasInstalled(children) {
				return sa, nil
			}
		}
		if c.proc.Exited() {
			return IKESA{}, fmt.Errorf("charon in %s exited: %v", c.NS.Name, c.proc.Wait(0))
		}
		if time.Now().After(deadline) {
			return IKESA{}, fmt.Errorf("charon in %s: IKE SA %q with children %v not established within %v; SAs now: %+v", c.NS.Name, ike, children, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitNoSAs waits at most timeout until charon lists no IKE SA at all.
func (c *Charon) WaitNoSAs(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		sas, err := c.ListSAs()
		if err != nil {
			return err
		}
		if len(sas) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("charon in %s still has SAs after %v: %+v", c.NS.Name, timeout, sas)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Log returns charon's log file and anything it printed, for failure
// messages.
func (c *Charon) Log() string {
	b, _ := os.ReadFile(c.LogPath)
	s := string(b)
	if c.proc != nil {
		if out := c.proc.Output(); out != "" {
			s += "\n--- charon stdout/stderr ---\n" + out
		}
	}
	return s
}

// PID is charon's process ID.
func (c *Charon) PID() int { return c.proc.PID() }

// Stop ends charon (SIGTERM by PID, then SIGKILL).
func (c *Charon) Stop() error { return c.proc.Stop(5 * time.Second) }

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
