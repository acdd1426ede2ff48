package peers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"goswan/internal/testnet"
)

// DefaultLibreswanRoot is where .ci/run unpacks Debian's libreswan package
// (`apt-get download libreswan` + `dpkg -x`): it conflicts with strongSwan's
// packages, so it is not installed. GOSWAN_LIBRESWAN_ROOT overrides it.
const DefaultLibreswanRoot = "/var/cache/goswan/libreswan"

// LibreswanRoot returns the unpacked tree in use.
func LibreswanRoot() string {
	if r := os.Getenv("GOSWAN_LIBRESWAN_ROOT"); r != "" {
		return r
	}
	return DefaultLibreswanRoot
}

// RequireLibreswan checks for root, namespaces, the unpacked Libreswan tree
// and NSS's certutil.
func RequireLibreswan(t testing.TB) {
	t.Helper()
	root := LibreswanRoot()
	testnet.Require(t, "certutil")
	for _, p := range []string{"usr/libexec/ipsec/pluto", "usr/libexec/ipsec/whack", "usr/libexec/ipsec/addconn", "usr/sbin/ipsec"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			testnet.Unavailable(t, "peers: Libreswan is not unpacked in %s (see .ci/run: apt-get download libreswan; dpkg -x): %v", root, err)
		}
	}
	if out, err := exec.Command("ldd", filepath.Join(root, "usr/libexec/ipsec/pluto")).CombinedOutput(); err == nil && strings.Contains(string(out), "not found") {
		testnet.Unavailable(t, "peers: Libreswan's pluto lacks libraries (install libnss3-tools libunbound8 libldns3 libevent-core-2.1-7 libevent-pthreads-2.1-7 libcurl3-nss):\n%s", out)
	}
}

// LibreswanConn is one conn in ipsec.conf, with its PSK in ipsec.secrets.
// "left" is this side. Empty fields are left out.
type LibreswanConn struct {
	Name        string
	Left        string // left= (this side's address)
	Right       string // right=
	LeftID      string // leftid=, e.g. "@b.example"
	RightID     string // rightid=
	LeftSubnet  string // leftsubnet=
	RightSubnet string // rightsubnet=
	PSK         string // written to ipsec.secrets for LeftID RightID
	IKE         string // ike=, e.g. "aes_gcm128-sha2_256;dh19"
	ESP         string // esp=, e.g. "aes_gcm128"
	// Encapsulation is encapsulation= ("yes" to force ESP in UDP).
	Encapsulation string
	Type          string // type=: tunnel (default) or transport
	Auto          string // auto=: add (default), start, ondemand, ignore
	// AuthBy is authby=; empty means "secret". Pluto 4.10 refuses a conn
	// whose leftauth=/rightauth= disagrees with it ("leftauth=ecdsa
	// expects authby=ECDSA"), so certificate conns need e.g. "ecdsa".
	AuthBy string
	// Extra holds more conn settings, key=value.
	Extra map[string]string
}

// LibreswanConf renders ipsec.conf and ipsec.secrets for conns.
func LibreswanConf(conns []LibreswanConn) (conf, secrets string, err error) {
	var c, s strings.Builder
	c.WriteString("config setup\n\tplutodebug=none\n\tuniqueids=yes\n\n")
	for _, cn := range conns {
		if err := checkName("conn", cn.Name); err != nil {
			return "", "", err
		}
		fmt.Fprintf(&c, "conn %s\n", cn.Name)
		authby := cn.AuthBy
		if authby == "" {
			authby = "secret"
		}
		kv := [][2]string{
			{"ikev2", "insist"}, {"authby", authby},
			{"left", cn.Left}, {"leftid", cn.LeftID}, {"leftsubnet", cn.LeftSubnet},
			{"right", cn.Right}, {"rightid", cn.RightID}, {"rightsubnet", cn.RightSubnet},
			{"ike", cn.IKE}, {"esp", cn.ESP}, {"encapsulation", cn.Encapsulation},
			{"type", cn.Type}, {"auto", cn.Auto},
		}
		for _, k := range sortedKeys(cn.Extra) {
			kv = append(kv, [2]string{k, cn.Extra[k]})
		}
		for _, p := range kv {
			if p[1] == "" {
				continue
			}
			if strings.ContainsAny(p[1], "\n#") {
				return "", "", fmt.Errorf("ipsec.conf: conn %s: value %q for %s contains a newline or '#'", cn.Name, p[1], p[0])
			}
			fmt.Fprintf(&c, "\t%s=%s\n", p[0], p[1])
		}
		c.WriteString("\n")
		if cn.PSK != "" {
			if strings.ContainsAny(cn.PSK, "\"\n") {
				return "", "", fmt.Errorf("ipsec.secrets: conn %s: PSK must not contain '\"' or a newline", cn.Name)
			}
			fmt.Fprintf(&s, "%s %s : PSK \"%s\"\n", cn.LeftID, cn.RightID, cn.PSK)
		}
	}
	return c.String(), s.String(), nil
}

// Libreswan is a running Libreswan pluto in a namespace.
type Libreswan struct {
	NS          *testnet.Namespace
	Root        string // the unpacked package
	Dir         string // private files: ipsec.conf, ipsec.secrets, nss/, run/
	ConfPath    string
	SecretsPath string
	CtlSocket   string // pluto.ctl, as seen from outside the mount namespace
	Conns       []LibreswanConn

	proc *testnet.Process
}

// StartLibreswan writes ipsec.conf and ipsec.secrets for conns, makes an
// empty NSS database, starts pluto in ns (--nofork --stderrlog, in a private
// mount namespace where the unpacked /usr/libexec and a private /run are
// bind-mounted), waits for its control socket, makes it listen and adds the
// conns. Failures fail the test.
func StartLibreswan(t testing.TB, ns *testnet.Namespace, conns ...LibreswanConn) *Libreswan {
	t.Helper()
	dir := t.TempDir()
	l := &Libreswan{
		NS:          ns,
		Root:        LibreswanRoot(),
		Dir:         dir,
		ConfPath:    filepath.Join(dir, "ipsec.conf"),
		SecretsPath: filepath.Join(dir, "ipsec.secrets"),
		CtlSocket:   filepath.Join(dir, "run", "pluto", "pluto.ctl"),
		Conns:       conns,
	}
	conf, secrets, err := LibreswanConf(conns)
	if err != nil {
		t.Fatalf("peers: %v", err)
	}
	nss := filepath.Join(dir, "nss")
	for _, d := range []string{nss, filepath.Join(dir, "run", "pluto")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(l.ConfPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.SecretsPath, []byte(secrets), 0o600); err != nil {
		t.Fatal(err)
	}
	certutil := exec.Command("certutil", "-N", "-d", "sql:"+nss, "--empty-password")
	if out, err := certutil.CombinedOutput(); err != nil {
		t.Fatalf("peers: certutil -N -d sql:%s: %v\n%s", nss, err, out)
	}
	script := fmt.Sprintf("mount --bind %s /usr/libexec && mount --bind %s /run && exec %s --nofork --stderrlog --rundir /run/pluto --config %s --secretsfile %s --nssdir %s",
		shellQuote(filepath.Join(l.Root, "usr/libexec")), shellQuote(filepath.Join(dir, "run")),
		"/usr/libexec/ipsec/pluto", shellQuote(l.ConfPath), shellQuote(l.SecretsPath), shellQuote(nss))
	l.proc, err = ns.Start(t, "pluto@"+ns.Label, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	if err != nil {
		t.Fatalf("peers: %v", err)
	}
	if err := l.waitCtl(10 * time.Second); err != nil {
		t.Fatalf("peers: %v", err)
	}
	if out, err := l.Whack("--listen"); err != nil {
		t.Fatalf("peers: %v\n%s", err, out)
	}
	for _, c := range conns {
		if c.Auto == "ignore" {
			continue
		}
		if err := l.Add(c.Name); err != nil {
			t.Fatalf("peers: %v", err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("peers: pluto log in %s, last lines:\n%s", ns.Name, testnet.Tail(l.Log(), 60))
		}
	})
	return l
}

func (l *Libreswan) waitCtl(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(l.CtlSocket); err == nil {
			if _, err := l.Whack("--status"); err == nil {
				return nil
			}
		}
		if l.proc.Exited() {
			return fmt.Errorf("pluto in %s exited during start-up: %v\n%s", l.NS.Name, l.proc.Wait(0), l.proc.Output())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pluto in %s: no control socket %s after %v\n%s", l.NS.Name, l.CtlSocket, timeout, l.proc.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// exe runs a program from the unpacked tree (outside the namespaces: it
// talks to pluto over the control socket only) with a 20 s limit.
func (l *Libreswan) exe(prog string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(l.Root, prog), args...)
	cmd.Env = append(os.Environ(), "IPSEC_EXECDIR="+filepath.Join(l.Root, "usr/libexec/ipsec"), "IPSEC_CONF="+l.ConfPath)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", prog, strings.Join(args, " "), err, strings.TrimSpace(testnet.Tail(string(out), 20)))
	}
	return string(out), nil
}

// Whack runs `whack --ctlsocket CTL ARGS...`.
func (l *Libreswan) Whack(args ...string) (string, error) {
	return l.exe("usr/libexec/ipsec/whack", append([]string{"--ctlsocket", l.CtlSocket}, args...)...)
}

// Ipsec runs the unpacked `ipsec --ctlsocket CTL ARGS...` (for example
// "status", "trafficstatus").
func (l *Libreswan) Ipsec(args ...string) (string, error) {
	return l.exe("usr/sbin/ipsec", append([]string{"--ctlsocket", l.CtlSocket}, args...)...)
}

// Add loads the named conn from ipsec.conf into pluto (addconn).
func (l *Libreswan) Add(conn string) error {
	_, err := l.exe("usr/libexec/ipsec/addconn", "--config", l.ConfPath, "--ctlsocket", l.CtlSocket, conn)
	return err
}

// Initiate asks pluto to bring up conn and returns at once.
func (l *Libreswan) Initiate(conn string) error {
	_, err := l.Whack("--initiate", "--asynchronous", "--name", conn)
	return err
}

// Terminate asks pluto to take conn down.
func (l *Libreswan) Terminate(conn string) error {
	_, err := l.Whack("--terminate", "--name", conn)
	return err
}

// Status runs `ipsec status` and parses it.
func (l *Libreswan) Status() (LibreswanStatus, error) {
	out, err := l.Ipsec("status")
	if err != nil {
		return LibreswanStatus{}, err
	}
	return ParseLibreswanStatus(out), nil
}

// Log returns what pluto has written (it logs to stderr).
func (l *Libreswan) Log() string { return l.proc.Output() }

// PID is pluto's process ID.
func (l *Libreswan) PID() int { return l.proc.PID() }

// Stop ends pluto (SIGTERM by PID, then SIGKILL).
func (l *Libreswan) Stop() error { return l.proc.Stop(5 * time.Second) }

// ikeEstablishedRE matches pluto 4.10's log line for a completed IKE_AUTH,
// as initiator or responder:
//
//	"t" #1: responder established IKE SA; authenticated peer using authby=secret and ID_FQDN '@a.example'
//	"t" #3: initiator established IKE SA; authenticated peer using authby=secret and ID_FQDN '@a.example'
var ikeEstablishedRE = regexp.MustCompile(`"([^"]+)"(?:\[\d+\])? #(\d+): (initiator|responder) established IKE SA`)

// IKEAuthEvent is one completed IKE_AUTH in pluto's log.
type IKEAuthEvent struct {
	Conn   string
	Serial int    // pluto's state number
	Role   string // "initiator" or "responder"
	Line   string
}

// IKEAuthCompleted returns the completed IKE_AUTH exchanges in pluto's log.
// On this kernel pluto deletes such an IKE SA right after (adding its ESP
// SA fails with errno 38), so the log is the only witness.
func (l *Libreswan) IKEAuthCompleted() []IKEAuthEvent { return ParseIKEAuthEvents(l.Log()) }

// ParseIKEAuthEvents finds the "established IKE SA" lines in pluto's log.
func ParseIKEAuthEvents(log string) []IKEAuthEvent {
	var evs []IKEAuthEvent
	for _, line := range strings.Split(log, "\n") {
		m := ikeEstablishedRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[2])
		evs = append(evs, IKEAuthEvent{Conn: m[1], Serial: n, Role: m[3], Line: strings.TrimSpace(line)})
	}
	return evs
}

// WaitIKEAuth waits at most timeout for a completed IKE_AUTH for conn in
// pluto's log.
func (l *Libreswan) WaitIKEAuth(conn string, timeout time.Duration) (IKEAuthEvent, error) {
	deadline := time.Now().Add(timeout)
	for {
		for _, ev := range l.IKEAuthCompleted() {
			if ev.Conn == conn {
				return ev, nil
			}
		}
		if l.proc.Exited() {
			return IKEAuthEvent{}, fmt.Errorf("pluto in %s exited: %v", l.NS.Name, l.proc.Wait(0))
		}
		if time.Now().After(deadline) {
			return IKEAuthEvent{}, fmt.Errorf("pluto in %s: no completed IKE_AUTH for %q within %v", l.NS.Name, conn, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// LibreswanStatus is the part of `ipsec status` the tests use.
type LibreswanStatus struct {
	// Conns are the names of the loaded connections.
	Conns []string
	// Loaded and Active are from "Total IPsec connections: loaded N, active M".
	Loaded, Active int
	// IKESAs and Authenticated are from "IKE SAs: total(N), ... authenticated(M)".
	IKESAs, Authenticated int
	// States are the lines of the state list ("#N: "conn"... STATE_...").
	States []LibreswanState
	Raw    string
}

// LibreswanState is one line of pluto's state list.
type LibreswanState struct {
	Serial int
	Conn   string
	State  string // e.g. STATE_V2_ESTABLISHED_IKE_SA
	Line   string
}

// Established reports whether an IKE SA is in an established state.
func (s LibreswanState) Established() bool {
	return strings.Contains(s.State, "ESTABLISHED_IKE_SA") || strings.Contains(s.Line, "established IKE SA")
}

var (
	statusConnRE  = regexp.MustCompile(`^(?:\d{3} )?"([^"]+)"(?:\[\d+\])?: `)
	statusTotalRE = regexp.MustCompile(`Total IPsec connections: loaded (\d+), active (\d+)`)
	statusIKERE   = regexp.MustCompile(`IKE SAs: total\((\d+)\).*authenticated\((\d+)\)`)
	statusStateRE = regexp.MustCompile(`^(?:\d{3} )?#(\d+): "([^"]+)"\S*\s+(STATE_\w+)`)
)

// ParseLibreswanStatus parses `ipsec status` (or `whack --status`, or
// `--showstates`) output.
func ParseLibreswanStatus(text string) LibreswanStatus {
	st := LibreswanStatus{Raw: text}
	seen := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, " \r")
		if m := statusStateRE.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			st.States = append(st.States, LibreswanState{Serial: n, Conn: m[2], State: m[3], Line: line})
			continue
		}
		if m := statusConnRE.FindStringSubmatch(line); m != nil && !seen[m[1]] {
			seen[m[1]] = true
			st.Conns = append(st.Conns, m[1])
		}
		if m := statusTotalRE.FindStringSubmatch(line); m != nil {
			st.Loaded, _ = strconv.Atoi(m[1])
			st.Active, _ = strconv.Atoi(m[2])
		}
		if m := statusIKERE.FindStringSubmatch(line); m != nil {
			st.IKESAs, _ = strconv.Atoi(m[1])
			st.Authenticated, _ = strconv.Atoi(m[2])
		}
	}
	return st
}

// ikeSPIsRE matches the debug line (plutodebug=base, or `whack --debug
// base` at run time) with which pluto 4.10 files a state under its IKE
// SPIs, initiator's then responder's:
//
//	| entry state hash_table_entries.ike_spis@0x55… "t" #1: 50 14 51 39  dc 1a d6 99  06 fb fb df  b1 d3 e4 0b added to hash table bucket 0x55…
//
// An initiator files its IKE SA twice: first with a zero responder SPI,
// then again once IKE_SA_INIT's response named it. Child states of an IKE
// SA are filed under the same SPIs.
var ikeSPIsRE = regexp.MustCompile(`hash_table_entries\.ike_spis@\S+ "([^"]+)"(?:\[\d+\])? #(\d+): ((?:[0-9a-f]{2}\s+){15}[0-9a-f]{2}) added to hash table`)

// ParseLibreswanIKESPIs returns the IKE SPIs (16 hex digits each, as our
// status prints them) under which pluto filed state serial of conn: the
// last such entry with a non-zero responder SPI. It needs the debug log.
func ParseLibreswanIKESPIs(log, conn string, serial int) (spii, spir string, ok bool) {
	for _, line := range strings.Split(log, "\n") {
		m := ikeSPIsRE.FindStringSubmatch(line)
		if m == nil || m[1] != conn || m[2] != strconv.Itoa(serial) {
			continue
		}
		hex := strings.Join(strings.Fields(m[3]), "")
		if hex[16:] == "0000000000000000" {
			continue
		}
		spii, spir, ok = hex[:16], hex[16:], true
	}
	return spii, spir, ok
}

// Debug sets pluto's debug classes at run time (`whack --debug CLASS`),
// e.g. "base", which IKESPIs needs.
func (l *Libreswan) Debug(classes ...string) error {
	args := make([]string, 0, 2*len(classes))
	for _, c := range classes {
		args = append(args, "--debug", c)
	}
	_, err := l.Whack(args...)
	return err
}

// IKESPIs returns the IKE SPIs of pluto's state serial for conn, from its
// debug log (see Debug and ParseLibreswanIKESPIs).
func (l *Libreswan) IKESPIs(conn string, serial int) (spii, spir string, err error) {
	spii, spir, ok := ParseLibreswanIKESPIs(l.Log(), conn, serial)
	if !ok {
		return "", "", fmt.Errorf("pluto in %s: no IKE SPIs for %q #%d in its log (is debugging on? see Debug)", l.NS.Name, conn, serial)
	}
	return spii, spir, nil
}

// WaitLog waits at most timeout until pluto's log holds substr.
func (l *Libreswan) WaitLog(substr string, timeout time.Duration) error {
	return l.proc.WaitOutput(substr, timeout)
}
