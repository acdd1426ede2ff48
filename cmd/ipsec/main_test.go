package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"goswan/ctl"
)

// fake is a ctl.Server on a temporary run directory that records the
// requests it gets and answers them by command.
type fake struct {
	rundir string
	socket string
	mu     sync.Mutex
	reqs   []ctl.Request
	// keepPid: shutdown leaves the pid file in place.
	keepPid bool
}

func startFake(t *testing.T) *fake {
	t.Helper()
	dir, err := os.MkdirTemp("", "ipsec")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fake{rundir: dir, socket: filepath.Join(dir, "pluto.ctl")}
	if err := os.WriteFile(filepath.Join(dir, "pluto.pid"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := ctl.Listen(f.socket, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	s := ctl.NewServer(ln, f.handle, t.Logf)
	go s.Serve()
	t.Cleanup(func() { s.Close() })
	return f
}

func (f *fake) handle(ctx context.Context, req *ctl.Request, log func(string)) *ctl.Result {
	f.mu.Lock()
	f.reqs = append(f.reqs, *req)
	f.mu.Unlock()
	if req.Name == "missing" {
		return ctl.Errorf(ctl.StatusNotFound, "no connection named %q", req.Name)
	}
	switch req.Command {
	case ctl.CmdUp:
		log("initiating " + req.Name)
		log("established " + req.Name)
		return ctl.OK(req.Name + " is up")
	case ctl.CmdStatus, ctl.CmdBriefStatus, ctl.CmdGlobalStatus, ctl.CmdTrafficStatus,
		ctl.CmdConnectionStatus, ctl.CmdShowStates:
		res, _ := ctl.WithData("human "+req.Command, map[string]any{"command": req.Command})
		return res
	case ctl.CmdShutdown:
		if !f.keepPid {
			time.AfterFunc(100*time.Millisecond, func() { os.Remove(filepath.Join(f.rundir, "pluto.pid")) })
		}
		return ctl.OK("")
	case ctl.CmdListen:
		return ctl.Errorf(ctl.StatusNotImplemented, "listen is not implemented yet")
	}
	return ctl.OK("")
}

func (f *fake) requests() []ctl.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ctl.Request(nil), f.reqs...)
}

func runIPsec(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code = run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func describe(reqs []ctl.Request) string {
	var s []string
	for _, r := range reqs {
		d := r.Command
		if r.Name != "" {
			d += " name=" + r.Name
		}
		if r.Config != "" {
			d += " config=" + r.Config
		}
		if r.JSON {
			d += " json"
		}
		if r.Version != ctl.Version {
			d += fmt.Sprintf(" v=%d", r.Version)
		}
		s = append(s, d)
	}
	return strings.Join(s, "; ")
}

func TestRequests(t *testing.T) {
	wd, _ := os.Getwd()
	rel := filepath.Join(wd, "rel.conf")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"add", "a"}, "add name=a config=/etc/ipsec.conf"},
		{[]string{"add", "--config", "rel.conf", "a"}, "add name=a config=" + rel},
		{[]string{"replace", "a", "--config=/x/ipsec.conf"}, "replace name=a config=/x/ipsec.conf"},
		{[]string{"delete", "a"}, "delete name=a"},
		{[]string{"up", "a"}, "up name=a"},
		{[]string{"down", "a"}, "down name=a"},
		{[]string{"status"}, "status"},
		{[]string{"status", "--json"}, "status json"},
		{[]string{"briefstatus"}, "briefstatus"},
		{[]string{"globalstatus", "--json"}, "globalstatus json"},
		{[]string{"trafficstatus"}, "trafficstatus"},
		{[]string{"connectionstatus"}, "connectionstatus"},
		{[]string{"connectionstatus", "a", "--json"}, "connectionstatus name=a json"},
		{[]string{"showstates"}, "showstates"},
		{[]string{"rereadsecrets"}, "rereadsecrets"},
		{[]string{"rereadall"}, "rereadall config=/etc/ipsec.conf"},
	} {
		f := startFake(t)
		code, _, stderr := runIPsec(t, append(tc.args, "--ctlsocket", f.socket)...)
		if code != 0 {
			t.Errorf("%q: exit %d: %s", tc.args, code, stderr)
		}
		if got := describe(f.requests()); got != tc.want {
			t.Errorf("%q sent %q, want %q", tc.args, got, tc.want)
		}
	}
	// --rundir finds the socket.
	f := startFake(t)
	if code, _, stderr := runIPsec(t, "status", "--rundir", f.rundir); code != 0 || len(f.requests()) != 1 {
		t.Errorf("--rundir: exit %d: %s", code, stderr)
	}
}

func TestVerbTable(t *testing.T) {
	_, help, _ := runIPsec(t, "--help")
	seen := map[string]bool{}
	for _, v := range verbs {
		if seen[v.name] {
			t.Errorf("verb %q twice", v.name)
		}
		seen[v.name] = true
		if !strings.Contains(help, "\n  "+v.name) {
			t.Errorf("help does not list %q", v.name)
		}
		if v.help == "" {
			t.Errorf("verb %q has no help", v.name)
		}
		if (v.command == "") == (v.local == nil) {
			t.Errorf("verb %q must be either a request or local", v.name)
		}
		if v.command != "" && !ctl.KnownCommand(v.command) {
			t.Errorf("verb %q sends unknown command %q", v.name, v.command)
		}
		if code, out, _ := runIPsec(t, v.name, "--help"); v.args != argRaw && (code != 0 || !strings.Contains(out, "Usage: ipsec "+v.name)) {
			t.Errorf("ipsec %s --help: exit %d, %q", v.name, code, out)
		}
	}
	for _, name := range []string{"start", "stop", "restart", "add", "replace", "delete", "up", "down",
		"status", "briefstatus", "globalstatus", "trafficstatus", "connectionstatus", "showstates",
		"listen", "rereadsecrets", "rereadall", "checkconfig", "pluto", "whack"} {
		if !seen[name] {
			t.Errorf("no verb %q", name)
		}
	}
}

func TestOutput(t *testing.T) {
	f := startFake(t)
	code, out, _ := runIPsec(t, "up", "a", "--ctlsocket", f.socket)
	if want := "initiating a\nestablished a\na is up\n"; code != 0 || out != want {
		t.Errorf("up: exit %d, stdout %q, want %q", code, out, want)
	}
	code, out, _ = runIPsec(t, "trafficstatus", "--ctlsocket", f.socket)
	if want := "human trafficstatus\n"; code != 0 || out != want {
		t.Errorf("trafficstatus: exit %d, stdout %q, want %q", code, out, want)
	}
	code, out, _ = runIPsec(t, "trafficstatus", "--json", "--ctlsocket", f.socket)
	if want := "{\"command\":\"trafficstatus\"}\n"; code != 0 || out != want {
		t.Errorf("trafficstatus --json: exit %d, stdout %q, want %q", code, out, want)
	}
}

func TestExitStatus(t *testing.T) {
	f := startFake(t)
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"up", "missing", "--ctlsocket", f.socket}, 5, `ipsec: no connection named "missing"`},
		{[]string{"listen", "--ctlsocket", f.socket}, 4, "not implemented"},
		{[]string{"frobnicate"}, 3, `unknown command "frobnicate"`},
		{[]string{"up"}, 2, "needs exactly one connection name"},
		{[]string{"up", "a", "b"}, 2, "needs exactly one connection name"},
		{[]string{"status", "a"}, 2, `unexpected argument "a"`},
		{[]string{"add", "a", "--json"}, 2, "unknown flag: --json"},
		{[]string{"start", "x"}, 2, "put pluto's options after --"},
		{nil, 2, "Usage: ipsec"},
	} {
		code, _, stderr := runIPsec(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.stderr) {
			t.Errorf("%q: exit %d, stderr %q; want %d, %q", tc.args, code, stderr, tc.code, tc.stderr)
		}
	}
	for _, args := range [][]string{{"--help"}, {"help"}, {"help", "up"}, {"--version"}} {
		if code, out, _ := runIPsec(t, args...); code != 0 || out == "" {
			t.Errorf("%q: exit %d, %q", args, code, out)
		}
	}
}

func TestNoDaemon(t *testing.T) {
	dir := t.TempDir()
	for _, verb := range []string{"status", "stop"} {
		code, _, stderr := runIPsec(t, verb, "--rundir", dir)
		want := "ipsec: cannot connect to pluto at " + filepath.Join(dir, "pluto.ctl") + ": is pluto running? ("
		if code != 1 || !strings.HasPrefix(stderr, want) {
			t.Errorf("%s: exit %d, stderr %q, want prefix %q", verb, code, stderr, want)
		}
	}
}

func TestStop(t *testing.T) {
	f := startFake(t)
	start := time.Now()
	code, _, stderr := runIPsec(t, "stop", "--rundir", f.rundir)
	if code != 0 {
		t.Fatalf("stop: exit %d: %s", code, stderr)
	}
	if time.Since(start) < 100*time.Millisecond {
		t.Error("stop did not wait for the pid file to go")
	}
	if _, err := os.Stat(filepath.Join(f.rundir, "pluto.pid")); err == nil {
		t.Error("pid file still there")
	}
	if got := describe(f.requests()); got != "shutdown" {
		t.Errorf("sent %q", got)
	}

	f = startFake(t)
	f.keepPid = true
	code, _, stderr = runIPsec(t, "stop", "--rundir", f.rundir, "--timeout", "200ms")
	if code != 1 || !strings.Contains(stderr, "did not exit within 200ms") {
		t.Errorf("stop with a pid file that stays: exit %d, %q", code, stderr)
	}
}

func writeFile(t *testing.T, path, text string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "ipsec.conf")
	secrets := filepath.Join(dir, "ipsec.secrets")
	writeFile(t, conf, `config setup
	uniqueids=yes

conn west-east
	left=192.0.2.1
	right=192.0.2.2
	authby=secret
	auto=add
`, 0o644)
	writeFile(t, secrets, "192.0.2.1 192.0.2.2 : PSK \"not a real secret\"\n", 0o600)
	code, out, stderr := runIPsec(t, "checkconfig", "--config", conf, "--secretsfile", secrets, "--ipsecdir", dir)
	if code != 0 || !strings.Contains(out, conf+": 1 conn; "+secrets+": 1 secret;") || !strings.HasSuffix(out, ": OK\n") {
		t.Errorf("valid config: exit %d, stdout %q, stderr %q", code, out, stderr)
	}

	bad := filepath.Join(dir, "bad.conf")
	writeFile(t, bad, `conn broken
	left=192.0.2.1
	right=192.0.2.2
	no-such-keyword=1
	auto=explode
`, 0o644)
	code, out, stderr = runIPsec(t, "checkconfig", "--config", bad, "--secretsfile", secrets)
	if code != 1 || !strings.Contains(stderr, bad+":4: ") || !strings.Contains(stderr, bad+":5: ") || out != "" {
		t.Errorf("bad config: exit %d, stdout %q, stderr %q", code, out, stderr)
	}

	code, _, stderr = runIPsec(t, "checkconfig", "--config", filepath.Join(dir, "none.conf"), "--secretsfile", secrets)
	if code != 1 || !strings.Contains(stderr, "none.conf") {
		t.Errorf("missing config: exit %d, stderr %q", code, stderr)
	}
}

// binDir holds ipsec and whack built from this tree, next to a fake pluto
// script that prints its arguments and exits 7.
func binDir(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds binaries")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	dir := t.TempDir()
	cmd := exec.Command(gobin, "build", "-o", dir+"/", "goswan/cmd/ipsec", "goswan/cmd/whack")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	writeFile(t, filepath.Join(dir, "pluto"), "#!/bin/sh\necho \"pluto $*\"\nexit 7\n", 0o755)
	return dir
}

func TestBinary(t *testing.T) {
	dir := binDir(t)
	f := startFake(t)
	ipsec := filepath.Join(dir, "ipsec")
	// start passes the default /etc/ipsec.conf only when it exists.
	defConf := ""
	if _, err := os.Stat("/etc/ipsec.conf"); err == nil {
		defConf = "--config /etc/ipsec.conf "
	}
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"up", "a", "--ctlsocket", f.socket}, 0, "initiating a\nestablished a\na is up\n", ""},
		{[]string{"down", "missing", "--ctlsocket", f.socket}, 5, "", "ipsec: no connection named \"missing\"\n"},
		{[]string{"status", "--rundir", filepath.Join(dir, "nowhere")}, 1, "",
			"ipsec: cannot connect to pluto at " + filepath.Join(dir, "nowhere", "pluto.ctl") + ": is pluto running?"},
		// start runs pluto (found next to ipsec) and exits with its status.
		{[]string{"start", "--rundir", "/r", "--", "--stderrlog", "--nhelpers", "0"}, 7,
			"pluto --rundir /r " + defConf + "--stderrlog --nhelpers 0\n", ""},
		{[]string{"start"}, 7, "pluto " + strings.TrimSpace(defConf) + "\n", ""},
		// pluto and whack are exec'd with the arguments as given.
		{[]string{"pluto", "--nofork", "--config", "x"}, 7, "pluto --nofork --config x\n", ""},
		{[]string{"whack", "--ctlsocket", f.socket, "--name", "missing", "--initiate"}, 5, "", "whack: no connection named"},
		{[]string{"whack", "--ctlsocket", f.socket, "--name", "b", "--initiate"}, 0, "b is up\n", ""},
	} {
		cmd := exec.Command(ipsec, tc.args...)
		cmd.Env = append(os.Environ(), "PATH=/nonexistent")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) {
			t.Errorf("ipsec %q: exit %d, stdout %q, stderr %q; want %d, %q, %q",
				tc.args, code, out.String(), errb.String(), tc.code, tc.stdout, tc.stderr)
		}
	}
	if got := describe(f.requests()); got != "up name=a; down name=missing; up name=missing; up name=b" {
		t.Errorf("daemon saw %q", got)
	}

	// Without a pluto anywhere, start says so.
	os.Remove(filepath.Join(dir, "pluto"))
	cmd := exec.Command(ipsec, "start")
	cmd.Env = append(os.Environ(), "PATH=/nonexistent")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "cannot find pluto") {
		t.Errorf("start without pluto: %v, %q", err, out)
	}
}
