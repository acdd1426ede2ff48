package main

// Tests of the real pluto binary (and ipsec/whack against it): built once
// in TestMain, run as processes in private run directories.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"goswan/ctl"
	"goswan/ike"
	"goswan/kernel"

	"golang.org/x/sys/unix"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "goswan-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(dir, 0o755) // the unprivileged test runs them as nobody
	out, err := exec.Command("go", "build", "-o", dir+"/", "goswan/cmd/pluto", "goswan/cmd/ipsec", "goswan/cmd/whack").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building the binaries: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func bin(name string) string { return filepath.Join(binDir, name) }

// rundir makes a private run directory. It is short because a unix socket
// path must fit in 108 bytes.
func rundir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// pluto is a daemon started by a test with --nofork.
type pluto struct {
	t      *testing.T
	cmd    *exec.Cmd
	rundir string
	stderr *bytes.Buffer
	done   chan error
}

// startPluto runs pluto --nofork with args and waits for "Pluto
// initialized". The daemon is stopped (by its PID) when the test ends.
func startPluto(t *testing.T, dir string, args ...string) *pluto {
	t.Helper()
	args = append([]string{"--nofork", "--rundir", dir}, args...)
	if !hasFlag(args, "--use-") {
		args = append(args, "--use-netstack")
	}
	if !hasFlag(args, "--secretsfile") {
		args = append(args, "--secretsfile", filepath.Join(dir, "none.secrets"))
	}
	if !hasFlag(args, "--stderrlog") && !hasFlag(args, "--logfile") {
		args = append(args, "--stderrlog")
	}
	if !hasFlag(args, "--ikeport") && !hasFlag(args, "--config") {
		ike, natt := freePorts(t)
		args = append(args, "--ikeport", strconv.Itoa(ike), "--natikeport", strconv.Itoa(natt))
	}
	cmd := exec.Command(bin("pluto"), args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &pluto{t: t, cmd: cmd, rundir: dir, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "Pluto initialized" {
				ready <- sc.Text()
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() { p.done <- cmd.Wait() }()
	select {
	case <-ready:
	case err := <-p.done:
		t.Fatalf("pluto %v exited before it was initialized: %v\n%s", args, err, p.stderr)
	case <-time.After(10 * time.Second):
		t.Fatalf("pluto %v: no \"Pluto initialized\" in 10s\n%s", args, p.stderr)
	}
	return p
}

// freePorts finds two UDP ports free on every address now, so that tests
// never bind 500 and 4500 on the host.
func freePorts(t *testing.T) (int, int) {
	t.Helper()
	var ports []int
	for len(ports) < 2 {
		c, err := net.ListenUDP("udp", &net.UDPAddr{})
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, c.LocalAddr().(*net.UDPAddr).Port)
		c.Close()
	}
	return ports[0], ports[1]
}

// portArgs gives --ikeport and --natikeport flags with free ports.
func portArgs(t *testing.T) []string {
	ike, natt := freePorts(t)
	return []string{"--ikeport", strconv.Itoa(ike), "--natikeport", strconv.Itoa(natt)}
}

func hasFlag(args []string, prefix string) bool {
	for _, a := range args {
		if strings.HasPrefix(a, prefix) {
			return true
		}
	}
	return false
}

// signal sends sig to the daemon and waits for it to exit.
func (p *pluto) signalAndWait(sig syscall.Signal) (int, error) {
	p.cmd.Process.Signal(sig)
	return p.wait()
}

func (p *pluto) wait() (int, error) {
	select {
	case err := <-p.done:
		p.done <- err
		return p.cmd.ProcessState.ExitCode(), nil
	case <-time.After(10 * time.Second):
		return -1, fmt.Errorf("pluto did not exit within 10s")
	}
}

func (p *pluto) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if _, err := p.wait(); err != nil {
		p.cmd.Process.Kill()
		p.wait()
	}
}

func (p *pluto) do(req *ctl.Request) *ctl.Result {
	p.t.Helper()
	return ctlDo(p.t, filepath.Join(p.rundir, "pluto.ctl"), req, nil)
}

func ctlDo(t *testing.T, sock string, req *ctl.Request, logs *[]string) *ctl.Result {
	t.Helper()
	c, err := ctl.Dial(sock)
	if err != nil {
		t.Fatalf("dial %s: %v", sock, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Do(ctx, req, func(l string) {
		if logs != nil {
			*logs = append(*logs, l)
		}
	})
	if err != nil {
		t.Fatalf("%s: %v", req.Command, err)
	}
	return res
}

// runBin runs a binary to completion and returns its exit status and output.
func runBin(t *testing.T, env []string, name string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin(name), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s %v did not finish in 30s", name, args)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func readPID(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "pluto.pid"))
	if err != nil {
		t.Fatalf("reading the pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file holds %q: %v", b, err)
	}
	return pid
}

// processAlive says whether pid runs; a zombie (a detached daemon that
// exited and that nobody reaped) does not.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

func waitGone(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); os.IsNotExist(err) {
			return
		}
	}
	t.Fatalf("%s still exists after 10s", path)
}

// westEast is a config with conns for the tests; its config setup ports
// are replaced by free ones (westEastConf) so that tests never collide.
const westEast = `config setup
	ikeport=10500
	natikeport=14500

conn west-east
	left=192.0.2.1
	leftid=@west
	leftsubnet=10.0.1.0/24
	right=192.0.2.2
	rightid=@east
	rightsubnet=10.0.2.0/24
	authby=secret
	ike=aes_gcm256-sha2_512;dh31
	retransmit-interval=100ms
	retransmit-timeout=1s
	auto=add

conn ignored
	left=192.0.2.1
	right=192.0.2.3
	authby=secret
	auto=ignore
`

// westEastConf is westEast with free ports in config setup, and the IKE
// port it chose.
func westEastConf(t *testing.T) (string, int) {
	ike, natt := freePorts(t)
	conf := strings.Replace(westEast, "ikeport=10500", "ikeport="+strconv.Itoa(ike), 1)
	conf = strings.Replace(conf, "natikeport=14500", "natikeport="+strconv.Itoa(natt), 1)
	return conf, ike
}

func TestNoforkPIDFileSocketAndSIGTERM(t *testing.T) {
	dir := rundir(t)
	p := startPluto(t, dir)
	if pid := readPID(t, dir); pid != p.cmd.Process.Pid {
		t.Errorf("pid file holds %d, pluto is %d", pid, p.cmd.Process.Pid)
	}
	st, err := os.Stat(filepath.Join(dir, "pluto.ctl"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
		t.Errorf("pluto.ctl mode %v; want a socket with mode 0600", st.Mode())
	}
	if res := p.do(&ctl.Request{Command: ctl.CmdPing}); res.Status != 0 {
		t.Errorf("ping: %+v", res)
	}
	code, err := p.signalAndWait(syscall.SIGTERM)
	if err != nil || code != 0 {
		t.Fatalf("SIGTERM: exit %d, %v\n%s", code, err, p.stderr)
	}
	for _, f := range []string{"pluto.pid", "pluto.ctl"} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Errorf("%s left behind after SIGTERM (%v)", f, err)
		}
	}
	if !strings.Contains(p.stderr.String(), "shutting down on terminated") {
		t.Errorf("log does not say why it stopped:\n%s", p.stderr)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("run directory not clean after exit: %v", entries)
	}
}

func TestLockFileExists(t *testing.T) {
	for _, mode := range []string{"--nofork", "daemon"} {
		t.Run(mode, func(t *testing.T) {
			dir := rundir(t)
			writeFile(t, filepath.Join(dir, "pluto.pid"), "12345\n", 0o644)
			args := append([]string{"--rundir", dir, "--use-netstack", "--stderrlog", "--secretsfile", dir + "/none"}, portArgs(t)...)
			if mode == "--nofork" {
				args = append(args, "--nofork")
			}
			code, stdout, stderr := runBin(t, nil, "pluto", args...)
			if code != 10 {
				t.Fatalf("exit %d; want 10\nstdout: %s\nstderr: %s", code, stdout, stderr)
			}
			want := "remove it (rm " + filepath.Join(dir, "pluto.pid") + ")"
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr does not say how to remove the lock file (%q):\n%s", want, stderr)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "pluto.pid")); string(b) != "12345\n" {
				t.Errorf("the existing lock file was changed: %q", b)
			}
			if _, err := os.Stat(filepath.Join(dir, "pluto.ctl")); !os.IsNotExist(err) {
				t.Errorf("pluto.ctl created although the lock failed")
			}
		})
	}
}

func TestDaemonModeHandOver(t *testing.T) {
	dir := rundir(t)
	code, stdout, stderr := runBin(t, nil, "pluto", append([]string{"--rundir", dir, "--use-netstack",
		"--logfile", filepath.Join(dir, "log"), "--secretsfile", dir + "/none"}, portArgs(t)...)...)
	if code != 0 {
		t.Fatalf("daemon start: exit %d\n%s%s", code, stdout, stderr)
	}
	// The parent has exited 0, so the child must already be serving.
	pid := readPID(t, dir)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if !processAlive(pid) {
		t.Fatalf("daemon pid %d is not running", pid)
	}
	if sid, _ := unix.Getsid(pid); sid != pid {
		t.Errorf("daemon is not a session leader (sid %d, pid %d)", sid, pid)
	}
	if res := ctlDo(t, filepath.Join(dir, "pluto.ctl"), &ctl.Request{Command: ctl.CmdPing}, nil); res.Status != 0 {
		t.Fatalf("ping: %+v", res)
	}
	if strings.Contains(stdout, "Pluto initialized") {
		t.Errorf("daemon mode printed %q; only --nofork does", stdout)
	}
	if res := ctlDo(t, filepath.Join(dir, "pluto.ctl"), &ctl.Request{Command: ctl.CmdShutdown}, nil); res.Status != 0 {
		t.Fatalf("shutdown: %+v", res)
	}
	waitGone(t, filepath.Join(dir, "pluto.pid"))
	for deadline := time.Now().Add(5 * time.Second); processAlive(pid) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if processAlive(pid) {
		t.Errorf("daemon %d still running after shutdown", pid)
	}
}

func TestDaemonModeFailures(t *testing.T) {
	dir := rundir(t)
	bad := writeFile(t, filepath.Join(dir, "bad.conf"), "conn x\n\tleft=192.0.2.1\n\tright=192.0.2.2\n\tdpdaction=explode\n", 0o644)
	code, _, stderr := runBin(t, nil, "pluto", "--rundir", dir, "--use-netstack", "--config", bad, "--stderrlog")
	if code != 1 || !strings.Contains(stderr, "bad.conf:4") || !strings.Contains(stderr, "dpdaction") {
		t.Errorf("bad config: exit %d; want 1 and an error naming bad.conf:4 and dpdaction:\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "pluto.pid")); !os.IsNotExist(err) {
		t.Errorf("pid file left by a failed start")
	}

	// A failure in the child (here: a back end that cannot work) reaches the
	// parent's exit status and its standard error.
	if kernel.Check(kernel.BSDKAME) == nil {
		t.Skip("this kernel has PF_KEY; no back end is known to fail here")
	}
	code, _, stderr = runBin(t, nil, "pluto", append([]string{"--rundir", dir, "--use-bsdkame", "--logfile", filepath.Join(dir, "log"), "--secretsfile", dir + "/none"}, portArgs(t)...)...)
	if code != 1 || !strings.Contains(stderr, "--use-bsdkame cannot work here") || !strings.Contains(stderr, "--use-netstack") {
		t.Errorf("unavailable back end in the child: exit %d; want 1 and a message naming other flags:\n%s", code, stderr)
	}
	waitGone(t, filepath.Join(dir, "pluto.pid"))
}

func TestBackendFlags(t *testing.T) {
	dir := rundir(t)
	code, _, stderr := runBin(t, nil, "pluto", "--nofork", "--rundir", dir, "--use-xfrm", "--use-netstack")
	if code != 1 || !strings.Contains(stderr, "--use-xfrm and --use-netstack are mutually exclusive") {
		t.Errorf("two back ends: exit %d\n%s", code, stderr)
	}
	// Whatever this machine allows, each back end either starts or fails
	// with a message naming another flag.
	for _, b := range []kernel.Backend{kernel.XFRM, kernel.BSDKAME, kernel.Userspace} {
		want := kernel.Check(b)
		if want == nil {
			t.Logf("%s works on this machine", b.Flag())
			p := startPluto(t, dir, b.Flag())
			if code, err := p.signalAndWait(syscall.SIGTERM); code != 0 || err != nil {
				t.Errorf("%s: exit %d, %v\n%s", b.Flag(), code, err, p.stderr)
			}
			continue
		}
		code, _, stderr := runBin(t, nil, "pluto", append([]string{"--nofork", "--rundir", dir, b.Flag(), "--stderrlog", "--secretsfile", dir + "/none"}, portArgs(t)...)...)
		if code != 1 || !strings.Contains(stderr, want.Error()) {
			t.Errorf("%s: exit %d; want 1 and %q\n%s", b.Flag(), code, want, stderr)
		}
	}
}

// TestUnprivileged runs pluto as nobody: --use-netstack works, and
// --use-userspace refuses with a message that names --use-netstack.
func TestUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		dir := rundir(t)
		p := startPluto(t, dir, "--use-netstack")
		p.stop()
		return
	}
	dir := rundir(t)
	os.Chmod(dir, 0o777)
	nobody := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd := exec.Command(bin("pluto"), append([]string{"--nofork", "--rundir", dir, "--use-userspace", "--stderrlog", "--secretsfile", dir + "/none"}, portArgs(t)...)...)
	cmd.SysProcAttr = nobody
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "use --use-netstack instead") {
		t.Errorf("--use-userspace as nobody: exit %d; want 1 naming --use-netstack:\n%s", cmd.ProcessState.ExitCode(), out)
	}
	cmd = exec.Command(bin("pluto"), append([]string{"--rundir", dir, "--use-netstack", "--logfile", dir + "/log", "--secretsfile", dir + "/none"}, portArgs(t)...)...)
	cmd.SysProcAttr = nobody
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("--use-netstack as nobody: %v\n%s", err, out)
	}
	pid := readPID(t, dir)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if res := ctlDo(t, dir+"/pluto.ctl", &ctl.Request{Command: ctl.CmdGlobalStatus}, nil); res.Status != 0 || !strings.Contains(res.Text, "config.setup.protostack=netstack") {
		t.Errorf("globalstatus: %+v", res)
	}
	syscall.Kill(pid, syscall.SIGTERM)
	waitGone(t, dir+"/pluto.pid")
}

var timestamp = regexp.MustCompile(`^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d\.\d{6}: `)

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

func TestLogFileOptions(t *testing.T) {
	dir := rundir(t)
	conf := writeFile(t, filepath.Join(dir, "ipsec.conf"), func() string { c, _ := westEastConf(t); return c }(), 0o644)
	logf := filepath.Join(dir, "pluto.log")
	writeFile(t, logf, "an earlier line\n", 0o600)

	// Appended, with timestamps, addresses shown, audit lines written.
	p := startPluto(t, dir, "--logfile", logf, "--config", conf, "--listen", "127.0.0.1")
	p.stop()
	lines := readLines(t, logf)
	if lines[0] != "an earlier line" {
		t.Errorf("--logfile did not append: first line %q", lines[0])
	}
	for _, l := range lines[1:] {
		if !timestamp.MatchString(l) {
			t.Errorf("line without a timestamp: %q", l)
		}
	}
	all := strings.Join(lines, "\n")
	for _, want := range []string{"192.0.2.1[@west]", "IKE will listen on 127.0.0.1 only", "audit: op=start", "audit: op=stop"} {
		if !strings.Contains(all, want) {
			t.Errorf("log lacks %q:\n%s", want, all)
		}
	}

	// Truncated, no timestamps, no addresses, no audit.
	p = startPluto(t, dir, "--logfile", logf, "--config", conf, "--listen", "127.0.0.1",
		"--log-no-append", "--log-no-time", "--log-no-ip", "--log-no-audit")
	p.stop()
	lines = readLines(t, logf)
	all = strings.Join(lines, "\n")
	if strings.Contains(all, "an earlier line") || strings.Contains(all, "op=start pid=") && strings.Count(all, "Starting goswan pluto") > 1 {
		t.Errorf("--log-no-append kept the old content:\n%s", all)
	}
	for _, l := range lines {
		if timestamp.MatchString(l) {
			t.Errorf("--log-no-time: line with a timestamp: %q", l)
		}
	}
	for _, leak := range []string{"192.0.2.1", "192.0.2.2", "127.0.0.1", "audit:"} {
		if strings.Contains(all, leak) {
			t.Errorf("log contains %q despite --log-no-ip/--log-no-audit:\n%s", leak, all)
		}
	}
	if !strings.Contains(all, "added IKEv2 connection \"west-east\"") {
		t.Errorf("the masked log lost the line itself:\n%s", all)
	}

	// config setup: logfile= and logtime=no, with the command line winning.
	other := filepath.Join(dir, "from-config.log")
	conf2 := writeFile(t, filepath.Join(dir, "log.conf"), "config setup\n\tlogfile="+other+"\n\tlogtime=no\n", 0o644)
	p = startPluto(t, dir, "--config", conf2, "--logfile", other)
	p.stop()
	for _, l := range readLines(t, other) {
		if timestamp.MatchString(l) {
			t.Errorf("logtime=no in config setup ignored: %q", l)
		}
	}
}

func TestStderrAndDebugLines(t *testing.T) {
	dir := rundir(t)
	p := startPluto(t, dir, "--stderrlog", "--log-no-time", "--debug", "base")
	p.do(&ctl.Request{Command: ctl.CmdPing})
	res := p.do(&ctl.Request{Command: ctl.CmdDebug, Args: map[string]string{ctl.ArgSet: "none"}})
	if res.Status != 0 {
		t.Fatalf("debug none: %+v", res)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.stderr.String(), "SIGHUP") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if res := p.do(&ctl.Request{Command: ctl.CmdPing}); res.Status != 0 {
		t.Fatalf("pluto did not survive SIGHUP: %+v", res)
	}
	p.stop()
	out := p.stderr.String()
	if !strings.Contains(out, `perhaps you meant "ipsec listen"`) {
		t.Errorf("SIGHUP did not suggest ipsec listen:\n%s", out)
	}
	if !strings.Contains(out, "debug classes now: none") {
		t.Errorf("debug change not logged:\n%s", out)
	}
	// With --debug base the ping and the debug request are logged as debug
	// lines; after "debug none" the next ping is not.
	if n := strings.Count(out, "\n| control request"); n != 2 || !strings.Contains(out, "\n| control request \"ping\"") {
		t.Errorf("want exactly 2 '| control request' debug lines (ping, debug), got %d:\n%s", n, out)
	}
	if timestamp.MatchString(strings.SplitN(out, "\n", 2)[0]) {
		t.Errorf("--log-no-time ignored on stderr:\n%s", out)
	}
}

func TestDebugHelpAndBadClass(t *testing.T) {
	code, stdout, _ := runBin(t, nil, "pluto", "--debug", "help")
	if code != 0 || !strings.Contains(stdout, "base") || !strings.Contains(stdout, "cpu-usage") {
		t.Errorf("--debug help: exit %d\n%s", code, stdout)
	}
	code, _, stderr := runBin(t, nil, "pluto", "--nofork", "--debug", "bogus-class")
	if code != 1 || !strings.Contains(stderr, "bogus-class") {
		t.Errorf("--debug bogus-class: exit %d\n%s", code, stderr)
	}
	code, _, stderr = runBin(t, nil, "pluto", "--nofork", "--no-debug", "bogus2")
	if code != 1 || !strings.Contains(stderr, "bogus2") {
		t.Errorf("--no-debug bogus2: exit %d\n%s", code, stderr)
	}
}

func TestSyslog(t *testing.T) {
	dir := rundir(t)
	sock := filepath.Join(dir, "log.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cmd := exec.Command(bin("pluto"), append([]string{"--nofork", "--rundir", dir, "--use-netstack", "--secretsfile", dir + "/none"}, portArgs(t)...)...)
	cmd.Env = append(os.Environ(), syslogEnv+"=unixgram:"+sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no syslog message: %v", err)
	}
	msg := string(buf[:n])
	// authpriv (10) * 8 + info (6) = 86.
	if !strings.HasPrefix(msg, "<86>") || !strings.Contains(msg, "pluto") || !strings.Contains(msg, "Starting goswan pluto") {
		t.Errorf("syslog message %q; want <86> (authpriv.info) from pluto", msg)
	}
	// Keep reading: a unix datagram socket holds only a few messages, and
	// a full one blocks the daemon's next log line.
	go func() {
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
		}
	}()
	conn.SetReadDeadline(time.Time{})
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}

func TestCrashReport(t *testing.T) {
	dir := rundir(t)
	core := filepath.Join(dir, "core")
	cmd := exec.Command(bin("pluto"), append([]string{"--nofork", "--rundir", dir, "--coredir", core, "--use-netstack", "--stderrlog", "--secretsfile", dir + "/none"}, portArgs(t)...)...)
	cmd.Env = append(os.Environ(), testPanicEnv+"=1")
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() == 0 {
		t.Fatalf("pluto survived its test panic:\n%s", out)
	}
	files, _ := filepath.Glob(filepath.Join(core, "pluto-crash.*.txt"))
	if len(files) != 1 {
		t.Fatalf("crash reports in --coredir: %v", files)
	}
	report, _ := os.ReadFile(files[0])
	for _, want := range []string{"panic: test panic requested", "goroutine "} {
		if !strings.Contains(string(report), want) {
			t.Errorf("crash report lacks %q:\n%s", want, report)
		}
	}
}

func TestLeakDetective(t *testing.T) {
	dir := rundir(t)
	p := startPluto(t, dir, "--leak-detective", "--log-no-time")
	if code, err := p.signalAndWait(syscall.SIGTERM); code != 0 || err != nil {
		t.Fatalf("clean run: exit %d, %v\n%s", code, err, p.stderr)
	}
	if !strings.Contains(p.stderr.String(), "leak-detective: no leaks found") {
		t.Errorf("no leak report:\n%s", p.stderr)
	}

	cmd := exec.Command(bin("pluto"), append([]string{"--nofork", "--rundir", dir, "--leak-detective", "--use-netstack", "--stderrlog", "--secretsfile", dir + "/none"}, portArgs(t)...)...)
	cmd.Env = append(os.Environ(), testLeakEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, _ := cmd.StdoutPipe()
	cmd.Start()
	bufio.NewReader(stdout).ReadString('\n') // Pluto initialized
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(stderr.String(), "goroutines still running") {
		t.Errorf("leaked goroutine: exit %d; want 1 and a report:\n%s", cmd.ProcessState.ExitCode(), stderr.String())
	}
}

func TestEfenceProtectAndEveryOption(t *testing.T) {
	dir := rundir(t)
	ikeP, nattP := freePorts(t)
	stats := writeFile(t, filepath.Join(dir, "stats.sh"), "#!/bin/sh\n", 0o755)
	p := startPluto(t, dir,
		"--ctlgroup", "0", "--leak-detective", "--efence-protect", "--stderrlog", "--log-no-time",
		"--log-no-append", "--log-no-audit", "--secretsfile", dir+"/*.secrets", "--ipsecdir", dir,
		"--nssdir", dir, "--coredir", dir, "--vendorid", "goswan-test", "--uniqueids",
		"--virtual-private", "%v4:10.0.0.0/8,%v6:fd00::/8,%v4:!10.1.0.0/16", "--keep-alive", "30",
		"--force-busy", "--crl-strict", "--crlcheckinterval", "600", "--listen", "127.0.0.1,::1",
		"--nhelpers", "0", "--seedbits", "256", "--statsbin", stats, "--secctx-attr-type", "32002",
		"--use-netstack", "--ikeport", strconv.Itoa(ikeP), "--natikeport", strconv.Itoa(nattP), "--debug", "base", "--no-debug", "base")
	res := p.do(&ctl.Request{Command: ctl.CmdGlobalStatus, JSON: true})
	var kv map[string]any
	if err := json.Unmarshal(res.Data, &kv); err != nil {
		t.Fatalf("globalstatus --json: %v (%+v)", err, res)
	}
	for k, want := range map[string]any{
		"config.setup.ikeport": float64(ikeP), "config.setup.natikeport": float64(nattP), "config.setup.nhelpers": 0.0,
		"config.setup.keep-alive": "30s", "config.setup.crl-strict": true, "config.setup.uniqueids": true,
		"config.setup.virtual-private": "%v4:10.0.0.0/8,%v6:fd00::/8,%v4:!10.1.0.0/16", "config.setup.plutodebug": "none",
	} {
		if kv[k] != want {
			t.Errorf("%s = %v (%T); want %v", k, kv[k], kv[k], want)
		}
	}
	st, _ := os.Stat(filepath.Join(dir, "pluto.ctl"))
	if st.Mode().Perm() != 0o660 {
		t.Errorf("with --ctlgroup the socket is %v; want 0660", st.Mode().Perm())
	}
	if code, _ := p.signalAndWait(syscall.SIGTERM); code != 0 {
		t.Errorf("exit %d\n%s", code, p.stderr)
	}
	if n := strings.Count(p.stderr.String(), "--efence-protect"); n != 1 {
		t.Errorf("--efence-protect logged %d times; want once:\n%s", n, p.stderr)
	}
}

func TestBadOptionValues(t *testing.T) {
	dir := rundir(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--virtual-private", "%v4:10.0.0.0/33"}, "--virtual-private"},
		{[]string{"--nhelpers", "-2"}, "--nhelpers -2"},
		{[]string{"--ikeport", "70000"}, "--ikeport 70000"},
		{[]string{"--ikeport", "4500"}, "must differ"},
		{[]string{"--listen", "not-an-address"}, `--listen "not-an-address"`},
		{[]string{"--secctx-attr-type", "5"}, "--secctx-attr-type 5"},
		{[]string{"--seedbits", "-1"}, "--seedbits -1"},
		{[]string{"--statsbin", "/nonexistent/x"}, "--statsbin"},
		{[]string{"--keep-alive", "-5"}, "--keep-alive -5"},
		{[]string{"--bogus-flag"}, "bogus-flag"},
		{[]string{"stray"}, `unexpected argument "stray"`},
	} {
		args := append([]string{"--nofork", "--rundir", dir, "--use-netstack"}, tc.args...)
		code, _, stderr := runBin(t, nil, "pluto", args...)
		if code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("pluto %v: exit %d; want 1 and %q in:\n%s", tc.args, code, tc.want, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "pluto.pid")); !os.IsNotExist(err) {
		t.Errorf("a refused start left a pid file")
	}
}

func TestHelpAndVersion(t *testing.T) {
	code, stdout, _ := runBin(t, nil, "pluto", "--help")
	if code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	for _, flag := range []string{"--nofork", "--rundir", "--leak-detective", "--efence-protect", "--stderrlog", "--logfile",
		"--log-no-time", "--log-no-append", "--log-no-ip", "--log-no-audit", "--config", "--secretsfile", "--ipsecdir",
		"--nssdir", "--coredir", "--vendorid", "--uniqueids", "--virtual-private", "--keep-alive", "--force-busy",
		"--crl-strict", "--crlcheckinterval", "--listen", "--nhelpers", "--seedbits", "--statsbin", "--secctx-attr-type",
		"--use-xfrm", "--use-bsdkame", "--use-userspace", "--use-netstack", "--ikeport", "--natikeport", "--debug", "--no-debug"} {
		if !strings.Contains(stdout, flag+" ") {
			t.Errorf("--help does not list %s", flag)
		}
	}
	if !strings.Contains(stdout, "PEM") {
		t.Errorf("--help does not say --nssdir is a folder of PEM files")
	}
	code, stdout, _ = runBin(t, nil, "pluto", "--version")
	if code != 0 || !strings.Contains(stdout, "goswan pluto") {
		t.Errorf("--version: exit %d %q", code, stdout)
	}
}

func TestConfigSetupAndCommandLine(t *testing.T) {
	dir := rundir(t)
	text, port := westEastConf(t)
	conf := writeFile(t, filepath.Join(dir, "ipsec.conf"), text, 0o644)
	ikeport := func(args ...string) any {
		p := startPluto(t, dir, append([]string{"--config", conf}, args...)...)
		defer p.stop()
		res := p.do(&ctl.Request{Command: ctl.CmdGlobalStatus, JSON: true})
		var kv map[string]any
		json.Unmarshal(res.Data, &kv)
		return kv["config.setup.ikeport"]
	}
	if got := ikeport(); got != float64(port) {
		t.Errorf("ikeport from config setup = %v; want %d", got, port)
	}
	if got := ikeport("--ikeport", "11500"); got != 11500.0 {
		t.Errorf("ikeport with --ikeport 11500 = %v; the command line must win", got)
	}
}

// TestControlRequests drives the daemon through the control socket: conns
// loaded at start by auto=, add/delete/replace, statuses in both forms, and
// verbs this build cannot carry out yet.
func TestControlRequests(t *testing.T) {
	dir := rundir(t)
	conf := writeFile(t, filepath.Join(dir, "ipsec.conf"), func() string { c, _ := westEastConf(t); return c }(), 0o644)
	secrets := writeFile(t, filepath.Join(dir, "ipsec.secrets"), "@west @east : PSK \"sekret\"\n", 0o600)
	p := startPluto(t, dir, "--config", conf, "--secretsfile", secrets)
	sock := filepath.Join(dir, "pluto.ctl")

	res := p.do(&ctl.Request{Command: ctl.CmdStatus, JSON: true})
	var st struct {
		Connections []struct {
			Name  string
			Left  struct{ Host, ID string }
			Right struct{ Host string }
		}
	}
	if err := json.Unmarshal(res.Data, &st); err != nil {
		t.Fatalf("status --json: %v %+v", err, res)
	}
	if len(st.Connections) != 1 || st.Connections[0].Name != "west-east" || st.Connections[0].Left.ID != "@west" {
		t.Errorf("conns loaded at start: %+v; want only west-east (auto=add), not ignored (auto=ignore)", st.Connections)
	}
	if !strings.Contains(res.Text, `"west-east": 10.0.1.0/24===192.0.2.1[@west]...192.0.2.2[@east]===10.0.2.0/24`) {
		t.Errorf("status text:\n%s", res.Text)
	}

	var logs []string
	res = ctlDo(t, sock, &ctl.Request{Command: ctl.CmdAdd, Name: "ignored", Config: conf}, &logs)
	if res.Status != 0 || !strings.Contains(strings.Join(logs, "\n"), `added IKEv2 connection "ignored"`) {
		t.Errorf("add ignored: %+v, logs %q", res, logs)
	}
	if res := p.do(&ctl.Request{Command: ctl.CmdAdd, Name: "nope", Config: conf}); res.Status != ctl.StatusNotFound {
		t.Errorf("add of a conn not in the file: %+v; want status %d", res, ctl.StatusNotFound)
	}
	logs = nil
	res = ctlDo(t, sock, &ctl.Request{Command: ctl.CmdReplace, Name: "ignored", Config: conf}, &logs)
	if res.Status != 0 || !strings.Contains(strings.Join(logs, "\n"), "replacing older connection") {
		t.Errorf("replace: %+v, logs %q", res, logs)
	}
	if res := p.do(&ctl.Request{Command: ctl.CmdDelete, Name: "ignored"}); res.Status != 0 {
		t.Errorf("delete: %+v", res)
	}
	if res := p.do(&ctl.Request{Command: ctl.CmdDelete, Name: "ignored"}); res.Status != ctl.StatusNotFound {
		t.Errorf("second delete: %+v; want not found", res)
	}
	// Nobody answers at 192.0.2.2: up fails once retransmit-timeout=1s
	// has passed, with words that say so.
	logs = nil
	res = ctlDo(t, sock, &ctl.Request{Command: ctl.CmdUp, Name: "west-east"}, &logs)
	if res.Status != ctl.StatusFailed || !strings.Contains(res.Error, "west-east") {
		t.Errorf("up with no peer: %+v; want status %d naming the conn", res, ctl.StatusFailed)
	}
	t.Logf("up with no peer: %s; progress: %q", res.Error, logs)
	if res := p.do(&ctl.Request{Command: ctl.CmdUp, Name: "nope"}); res.Status != ctl.StatusNotFound {
		t.Errorf("up of an unknown conn: %+v", res)
	}
	if res := p.do(&ctl.Request{Command: ctl.CmdConnectionStatus, Name: "west-east"}); res.Status != 0 || !strings.Contains(res.Text, "ike=aes_gcm256-sha2_512;dh31") {
		t.Errorf("connectionstatus: %+v", res)
	}
	for _, cmd := range []string{ctl.CmdBriefStatus, ctl.CmdShowStates, ctl.CmdTrafficStatus, ctl.CmdGlobalStatus} {
		res := p.do(&ctl.Request{Command: cmd, JSON: true})
		if res.Status != 0 || !json.Valid(res.Data) {
			t.Errorf("%s --json: %+v", cmd, res)
		}
	}

	// rereadsecrets: a broken file is refused and the old secrets stay.
	if res := p.do(&ctl.Request{Command: ctl.CmdRereadSecrets}); res.Status != 0 {
		t.Errorf("rereadsecrets: %+v", res)
	}
	writeFile(t, secrets, "@west @east : PSK\n", 0o600)
	if res := p.do(&ctl.Request{Command: ctl.CmdRereadSecrets}); res.Status != ctl.StatusFailed || !strings.Contains(res.Error, "ipsec.secrets:1") {
		t.Errorf("rereadsecrets of a broken file: %+v; want failure naming ipsec.secrets:1", res)
	}

	// Malformed input leaves the daemon serving.
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte{0, 0, 0, 5, '{', 'x', 'x', 'x', '}'})
	hdr := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, hdr); err != nil {
		t.Errorf("no reply to a malformed request: %v", err)
	}
	c.Close()
	c, _ = net.Dial("unix", sock)
	c.Write([]byte{0xff, 0xff, 0xff, 0xff}) // a 4 GiB frame: oversized
	c.Close()
	if res := p.do(&ctl.Request{Command: "frobnicate"}); res.Status != ctl.StatusUnknownCommand {
		t.Errorf("unknown command: %+v", res)
	}
	if res := p.do(&ctl.Request{Command: ctl.CmdPing}); res.Status != 0 {
		t.Fatalf("daemon stopped serving after bad requests: %+v", res)
	}
}

// TestIpsecAndWhackAgainstPluto drives a real daemon with the real clients,
// the way a user does: start, add, status, up, delete, stop.
func TestIpsecAndWhackAgainstPluto(t *testing.T) {
	dir := rundir(t)
	conf := writeFile(t, filepath.Join(dir, "ipsec.conf"), func() string { c, _ := westEastConf(t); return c }(), 0o644)
	secrets := writeFile(t, filepath.Join(dir, "ipsec.secrets"), "@west @east : PSK \"sekret\"\n", 0o600)
	run := filepath.Join(dir, "run")
	ipsec := func(args ...string) (int, string, string) {
		t.Helper()
		return runBin(t, nil, "ipsec", append(args, "--rundir", run)...)
	}
	code, out, errOut := runBin(t, nil, "ipsec", append([]string{"start", "--rundir", run, "--config", conf, "--",
		"--use-netstack", "--secretsfile", secrets, "--logfile", filepath.Join(dir, "pluto.log")}, portArgs(t)...)...)
	if code != 0 {
		t.Fatalf("ipsec start: exit %d\n%s%s", code, out, errOut)
	}
	pid := readPID(t, run)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })

	code, out, _ = ipsec("status", "--json")
	var st struct{ Connections []struct{ Name string } }
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st.Connections) != 1 || st.Connections[0].Name != "west-east" {
		t.Errorf("ipsec status --json: exit %d\n%s", code, out)
	}
	if code, out, _ = ipsec("add", "ignored", "--config", conf); code != 0 || !strings.Contains(out, `added IKEv2 connection "ignored"`) {
		t.Errorf("ipsec add ignored: exit %d\n%s", code, out)
	}
	if code, out, _ = ipsec("status"); code != 0 || !strings.Contains(out, "Total IPsec connections: loaded 2") {
		t.Errorf("ipsec status: exit %d\n%s", code, out)
	}
	if code, _, errOut = ipsec("up", "west-east"); code != 1 || !strings.Contains(errOut, "west-east") {
		t.Errorf("ipsec up with no peer: exit %d; want 1 and an error naming the conn\n%s", code, errOut)
	}
	if code, _, errOut = ipsec("up", "nope"); code != 5 {
		t.Errorf("ipsec up nope: exit %d; want 5\n%s", code, errOut)
	}
	if code, out, _ = ipsec("trafficstatus", "--json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("ipsec trafficstatus --json: exit %d %q", code, out)
	}
	if code, out, _ = runBin(t, nil, "whack", "--rundir", run, "--name", "ignored", "--delete"); code != 0 {
		t.Errorf("whack --delete: exit %d\n%s", code, out)
	}
	if code, out, _ = runBin(t, nil, "whack", "--rundir", run, "--status"); code != 0 || !strings.Contains(out, "loaded 1") {
		t.Errorf("whack --status: exit %d\n%s", code, out)
	}
	if code, out, _ = runBin(t, nil, "whack", "--rundir", run, "--debug", "base"); code != 0 {
		t.Errorf("whack --debug base: exit %d\n%s", code, out)
	}
	if code, out, errOut = ipsec("stop"); code != 0 {
		t.Fatalf("ipsec stop: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(run, "pluto.pid")); !os.IsNotExist(err) {
		t.Errorf("pid file still there after ipsec stop")
	}
	if code, _, errOut = ipsec("status"); code != 1 || !strings.Contains(errOut, "is pluto running") {
		t.Errorf("ipsec status without a daemon: exit %d\n%s", code, errOut)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "pluto.log"))
	if !strings.Contains(string(log), "debug classes now: base") {
		t.Errorf("whack --debug did not reach the daemon's log:\n%s", log)
	}
}

func TestCheckconfig(t *testing.T) {
	dir := rundir(t)
	good := writeFile(t, filepath.Join(dir, "good.conf"), func() string { c, _ := westEastConf(t); return c }(), 0o644)
	secrets := writeFile(t, filepath.Join(dir, "ipsec.secrets"), "@west @east : PSK \"sekret\"\n", 0o600)
	if code, out, errOut := runBin(t, nil, "ipsec", "checkconfig", "--config", good, "--secretsfile", secrets); code != 0 {
		t.Errorf("checkconfig of a good config: exit %d\n%s%s", code, out, errOut)
	}
	bad := writeFile(t, filepath.Join(dir, "bad.conf"), "config setup\n\tikeport=0\nconn x\n\tleft=192.0.2.1\n\tright=192.0.2.2\n\tauto=sometimes\n\tkeyexchange=ikev1\n", 0o644)
	code, _, errOut := runBin(t, nil, "ipsec", "checkconfig", "--config", bad, "--secretsfile", secrets)
	if code != 1 {
		t.Errorf("checkconfig of a bad config: exit %d; want 1", code)
	}
	for _, want := range []string{"bad.conf:2:", "ikeport", "bad.conf:6:", "auto", "bad.conf:7:", "IKEv1"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("checkconfig output lacks %q:\n%s", want, errOut)
		}
	}
}

// twoPlutos starts west on 127.0.0.1 and east on 127.0.0.2, both on the
// same free high ports, with conf and secrets, and env for both.
func twoPlutos(t *testing.T, conf, westSecrets, eastSecrets string, env []string) (west, east string) {
	t.Helper()
	return twoPlutosArgs(t, conf, westSecrets, eastSecrets, env, nil, nil)
}

// twoPlutosArgs is twoPlutos with more flags for each side.
func twoPlutosArgs(t *testing.T, conf, westSecrets, eastSecrets string, env, westArgs, eastArgs []string) (west, east string) {
	t.Helper()
	dir := rundir(t)
	ports := portArgs(t)
	extra := map[string][]string{"west": westArgs, "east": eastArgs}
	start := func(name, addr, secrets string) string {
		run := filepath.Join(dir, name)
		cf := writeFile(t, filepath.Join(dir, name+".conf"), conf, 0o644)
		sf := writeFile(t, filepath.Join(dir, name+".secrets"), secrets, 0o600)
		args := append([]string{"--rundir", run, "--config", cf, "--secretsfile", sf, "--use-netstack",
			"--listen", addr, "--logfile", filepath.Join(dir, name+".log")}, ports...)
		args = append(args, extra[name]...)
		code, out, errOut := runBin(t, env, "pluto", args...)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", name, code, out, errOut)
		}
		pid := readPID(t, run)
		t.Cleanup(func() {
			// The daemon is not our child (it detached), so it may linger
			// as a zombie: its pid file going away says it has stopped.
			syscall.Kill(pid, syscall.SIGTERM)
			for i := 0; i < 500; i++ {
				if _, err := os.Stat(filepath.Join(run, "pluto.pid")); os.IsNotExist(err) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if t.Failed() || testing.Verbose() {
				log, _ := os.ReadFile(filepath.Join(dir, name+".log"))
				t.Logf("%s's log:\n%s", name, log)
			}
		})
		return run
	}
	return start("west", "127.0.0.1", westSecrets), start("east", "127.0.0.2", eastSecrets)
}

const loopbackConn = `conn west-east
	left=127.0.0.1
	leftid=@west
	leftsubnet=10.0.1.0/24
	right=127.0.0.2
	rightid=@east
	rightsubnet=10.0.2.0/24
	authby=secret
	ike=aes_gcm128-sha2_256-dh31
	esp=aes_gcm128
	retransmit-timeout=5s
	auto=add
`

type statusJSON struct {
	IKESAs   []ike.IKESAStatus   `json:"ike_sas"`
	ChildSAs []ike.ChildSAStatus `json:"child_sas"`
}

func ipsecStatus(t *testing.T, run string) statusJSON {
	t.Helper()
	code, out, errOut := runBin(t, nil, "ipsec", "status", "--json", "--rundir", run)
	var st statusJSON
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("ipsec status --json: exit %d\n%s%s", code, out, errOut)
	}
	return st
}

// TestTwoPlutosNegotiate brings a tunnel up and down between two daemons
// on loopback with the real clients. The SAs live in the test-only memory
// back end: no data plane moves packets here.
func TestTwoPlutosNegotiate(t *testing.T) {
	psk := "@west @east : PSK \"a shared secret of some length\"\n"
	west, east := twoPlutos(t, loopbackConn, psk, psk, []string{testKernelEnv + "=memory"})
	code, out, errOut := runBin(t, nil, "ipsec", "up", "west-east", "--rundir", west)
	if code != 0 {
		t.Fatalf("ipsec up: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("ipsec up:\n%s", out)
	w, e := ipsecStatus(t, west), ipsecStatus(t, east)
	if len(w.IKESAs) != 1 || len(e.IKESAs) != 1 || w.IKESAs[0].Established.IsZero() || e.IKESAs[0].Established.IsZero() {
		t.Fatalf("IKE SAs: west %+v\neast %+v", w.IKESAs, e.IKESAs)
	}
	if w.IKESAs[0].SPIi != e.IKESAs[0].SPIi || w.IKESAs[0].SPIr != e.IKESAs[0].SPIr || !w.IKESAs[0].Initiator || e.IKESAs[0].Initiator {
		t.Errorf("the two sides disagree on the IKE SA: %+v / %+v", w.IKESAs[0], e.IKESAs[0])
	}
	if len(w.ChildSAs) != 1 || len(e.ChildSAs) != 1 {
		t.Fatalf("Child SAs: west %+v\neast %+v", w.ChildSAs, e.ChildSAs)
	}
	wc, ec := w.ChildSAs[0], e.ChildSAs[0]
	if wc.SPIIn != ec.SPIOut || wc.SPIOut != ec.SPIIn {
		t.Errorf("Child SA SPIs do not pair: west in/out %08x/%08x, east in/out %08x/%08x", wc.SPIIn, wc.SPIOut, ec.SPIIn, ec.SPIOut)
	}
	if strings.Join(wc.LocalTS, ",") != strings.Join(ec.RemoteTS, ",") || !strings.Contains(strings.Join(wc.LocalTS, ","), "10.0.1.0/24") {
		t.Errorf("traffic selectors: west %v===%v, east %v===%v", wc.LocalTS, wc.RemoteTS, ec.LocalTS, ec.RemoteTS)
	}
	if code, out, _ := runBin(t, nil, "ipsec", "trafficstatus", "--rundir", west); code != 0 || !strings.Contains(out, `"west-east"`) {
		t.Errorf("trafficstatus: exit %d\n%s", code, out)
	}
	// Down from the responder's side: both agree that nothing is left.
	if code, out, errOut := runBin(t, nil, "ipsec", "down", "west-east", "--rundir", east); code != 0 {
		t.Fatalf("ipsec down on east: exit %d\n%s%s", code, out, errOut)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		w, e = ipsecStatus(t, west), ipsecStatus(t, east)
		if len(w.IKESAs)+len(w.ChildSAs)+len(e.IKESAs)+len(e.ChildSAs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SAs left after down: west %+v %+v\neast %+v %+v", w.IKESAs, w.ChildSAs, e.IKESAs, e.ChildSAs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTwoPlutosFailures(t *testing.T) {
	t.Run("wrong PSK", func(t *testing.T) {
		west, east := twoPlutos(t, loopbackConn, "@west @east : PSK \"the secret west believes in\"\n",
			"@west @east : PSK \"the secret east believes in\"\n", []string{testKernelEnv + "=memory"})
		code, out, errOut := runBin(t, nil, "ipsec", "up", "west-east", "--rundir", west)
		if code != 1 || !strings.Contains(out+errOut, "AUTHENTICATION_FAILED") && !strings.Contains(strings.ToLower(out+errOut), "authentication") {
			t.Errorf("ipsec up with the wrong PSK: exit %d; want 1 and words about authentication\n%s%s", code, out, errOut)
		}
		for name, run := range map[string]string{"west": west, "east": east} {
			if st := ipsecStatus(t, run); len(st.ChildSAs) != 0 {
				t.Errorf("%s has Child SAs after a failed authentication: %+v", name, st.ChildSAs)
			}
		}
	})
	t.Run("no data plane", func(t *testing.T) {
		psk := "@west @east : PSK \"a shared secret of some length\"\n"
		west, _ := twoPlutos(t, loopbackConn, psk, psk, nil)
		code, out, errOut := runBin(t, nil, "ipsec", "up", "west-east", "--rundir", west)
		if code != 1 || !strings.Contains(out+errOut, "--use-netstack: no conn gives this host an address inside the tunnel") {
			t.Errorf("ipsec up without a data plane: exit %d; want 1 and a message naming --use-netstack\n%s%s", code, out, errOut)
		}
	})
}

// TestNetstackTraffic runs two unprivileged-capable daemons with
// --use-netstack on loopback and moves data through the tunnel: a TCP
// echo service on the host, exposed inside the tunnel by east, reached by
// a port forward and by the SOCKS5 proxy of west. Both sides' counters
// must agree.
func TestNetstackTraffic(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	fwd, socks := freeTCPPort(t), freeTCPPort(t)
	conf := strings.Replace(loopbackConn, "\tauto=add\n", "\tleftsourceip=10.0.1.1\n\trightsourceip=10.0.2.1\n\tauto=add\n", 1)
	psk := "@west @east : PSK \"a shared secret of some length\"\n"
	west, east := twoPlutosArgs(t, conf, psk, psk, nil,
		[]string{"--netstack-forward", fmt.Sprintf("tcp:127.0.0.1:%d=10.0.2.1:7000", fwd), "--netstack-socks5", fmt.Sprintf("127.0.0.1:%d", socks)},
		[]string{"--netstack-expose", "tcp:7000=" + echo.Addr().String()})
	if code, out, errOut := runBin(t, nil, "ipsec", "up", "west-east", "--rundir", west); code != 0 {
		t.Fatalf("ipsec up: exit %d\n%s%s", code, out, errOut)
	}

	payload := make([]byte, 1<<20)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	roundTrip := func(c net.Conn) {
		t.Helper()
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		go c.Write(payload)
		got := make([]byte, len(payload))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("reading the echo through the tunnel: %v", err)
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("the echo through the tunnel differs from what was sent")
		}
	}
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", fwd))
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(c)

	// SOCKS5 CONNECT to 10.0.2.1:7000 (RFC 1928, no authentication).
	c, err = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", socks))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte{5, 1, 0})
	reply := make([]byte, 2)
	if _, err := io.ReadFull(c, reply); err != nil || reply[1] != 0 {
		t.Fatalf("SOCKS5 greeting: %v %v", reply, err)
	}
	c.Write([]byte{5, 1, 0, 1, 10, 0, 2, 1, 7000 >> 8, 7000 & 0xff})
	reply = make([]byte, 10)
	if _, err := io.ReadFull(c, reply); err != nil || reply[1] != 0 {
		t.Fatalf("SOCKS5 CONNECT: %v %v", reply, err)
	}
	roundTrip(c)

	// Read the counters once the last ACKs have landed: twice the same.
	var wc, ec ike.ChildSAStatus
	for deadline := time.Now().Add(5 * time.Second); ; {
		w, e := ipsecStatus(t, west), ipsecStatus(t, east)
		if len(w.ChildSAs) != 1 || len(e.ChildSAs) != 1 {
			t.Fatalf("Child SAs: west %+v, east %+v", w.ChildSAs, e.ChildSAs)
		}
		if w.ChildSAs[0].PacketsOut == wc.PacketsOut && e.ChildSAs[0].PacketsOut == ec.PacketsOut || time.Now().After(deadline) {
			wc, ec = w.ChildSAs[0], e.ChildSAs[0]
			break
		}
		wc, ec = w.ChildSAs[0], e.ChildSAs[0]
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("west out %d bytes / %d packets, in %d / %d; east out %d / %d, in %d / %d",
		wc.BytesOut, wc.PacketsOut, wc.BytesIn, wc.PacketsIn, ec.BytesOut, ec.PacketsOut, ec.BytesIn, ec.PacketsIn)
	if wc.BytesOut < 2*uint64(len(payload)) || ec.BytesOut < 2*uint64(len(payload)) {
		t.Errorf("counters too small for 2 MiB each way: west out %d, east out %d", wc.BytesOut, ec.BytesOut)
	}
	// Nothing is lost on loopback: what one side sealed the other opened.
	if wc.PacketsOut != ec.PacketsIn || ec.PacketsOut != wc.PacketsIn || wc.BytesOut != ec.BytesIn || ec.BytesOut != wc.BytesIn {
		t.Errorf("the two sides' counters disagree")
	}
	if !wc.Encap || !ec.Encap {
		t.Errorf("the user-space data plane must use ESP in UDP: encap west %v east %v", wc.Encap, ec.Encap)
	}
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
