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

// fake is a ctl.Server on a temporary socket that records the requests it
// gets and answers them by command.
type fake struct {
	socket string
	mu     sync.Mutex
	reqs   []ctl.Request
}

func startFake(t *testing.T) *fake {
	t.Helper()
	dir, err := os.MkdirTemp("", "whack")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fake{socket: filepath.Join(dir, "pluto.ctl")}
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
	case ctl.CmdStatus, ctl.CmdTrafficStatus:
		res, _ := ctl.WithData("human "+req.Command, map[string]any{"command": req.Command})
		return res
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

func runWhack(t *testing.T, args ...string) (code int, stdout, stderr string) {
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
		if r.JSON {
			d += " json"
		}
		if r.Args[ctl.ArgSet] != "" {
			d += " set=" + r.Args[ctl.ArgSet]
		}
		if r.Version != ctl.Version {
			d += fmt.Sprintf(" v=%d", r.Version)
		}
		s = append(s, d)
	}
	return strings.Join(s, "; ")
}

func TestRequests(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--name", "a", "--initiate"}, "up name=a"},
		{[]string{"--name=a", "--terminate"}, "down name=a"},
		{[]string{"--name", "a", "--delete"}, "delete name=a"},
		{[]string{"--status"}, "status"},
		{[]string{"--status", "--json"}, "status json"},
		{[]string{"--trafficstatus", "--json"}, "trafficstatus json"},
		{[]string{"--trafficstatus", "--name", "a"}, "trafficstatus name=a"},
		{[]string{"--rereadsecrets"}, "rereadsecrets"},
		{[]string{"--rereadall"}, "rereadall"},
		{[]string{"--shutdown"}, "shutdown"},
		{[]string{"--debug", "base", "--debug", "no-crypt"}, "debug set=base no-crypt"},
		// Several actions run in a fixed order on one connection.
		{[]string{"--shutdown", "--status", "--name", "a", "--initiate", "--rereadsecrets", "--debug", "all"},
			"debug set=all; rereadsecrets; up name=a; status; shutdown"},
	} {
		f := startFake(t)
		code, _, stderr := runWhack(t, append([]string{"--ctlsocket", f.socket}, tc.args...)...)
		if code != 0 {
			t.Errorf("%q: exit %d: %s", tc.args, code, stderr)
		}
		if got := describe(f.requests()); got != tc.want {
			t.Errorf("%q sent %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestRundir(t *testing.T) {
	f := startFake(t)
	code, _, stderr := runWhack(t, "--rundir", filepath.Dir(f.socket), "--status")
	if code != 0 || len(f.requests()) != 1 {
		t.Fatalf("--rundir: exit %d, %d requests: %s", code, len(f.requests()), stderr)
	}
}

func TestOutput(t *testing.T) {
	f := startFake(t)
	code, out, _ := runWhack(t, "--ctlsocket", f.socket, "--name", "a", "--initiate")
	if want := "initiating a\nestablished a\na is up\n"; code != 0 || out != want {
		t.Errorf("--initiate: exit %d, stdout %q, want %q", code, out, want)
	}
	code, out, _ = runWhack(t, "--ctlsocket", f.socket, "--status")
	if want := "human status\n"; code != 0 || out != want {
		t.Errorf("--status: exit %d, stdout %q, want %q", code, out, want)
	}
	code, out, _ = runWhack(t, "--ctlsocket", f.socket, "--status", "--json")
	if want := "{\"command\":\"status\"}\n"; code != 0 || out != want {
		t.Errorf("--status --json: exit %d, stdout %q, want %q", code, out, want)
	}
}

func TestExitStatus(t *testing.T) {
	f := startFake(t)
	code, _, stderr := runWhack(t, "--ctlsocket", f.socket, "--name", "missing", "--initiate")
	if code != ctl.StatusNotFound || !strings.Contains(stderr, `no connection named "missing"`) {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	// The first failure stops the rest.
	code, _, _ = runWhack(t, "--ctlsocket", f.socket, "--listen", "--status")
	if code != ctl.StatusNotImplemented {
		t.Errorf("exit %d, want %d", code, ctl.StatusNotImplemented)
	}
	if got := describe(f.requests()); got != "up name=missing; listen" {
		t.Errorf("sent %q", got)
	}
}

func TestNoDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "pluto.ctl")
	code, _, stderr := runWhack(t, "--ctlsocket", sock, "--status")
	want := "whack: cannot connect to pluto at " + sock + ": is pluto running? ("
	if code != 1 || !strings.HasPrefix(stderr, want) {
		t.Errorf("exit %d, stderr %q, want prefix %q", code, stderr, want)
	}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"--help"}, 0, "Usage: whack", ""},
		{[]string{"--version"}, 0, "whack (goswan) ", ""},
		{nil, 2, "", "Usage: whack"},
		{[]string{"--initiate"}, 2, "", "--initiate needs --name"},
		{[]string{"--name", "a"}, 2, "", "--name needs an action"},
		{[]string{"--bogus"}, 2, "", "unknown flag: --bogus"},
		{[]string{"--status", "extra"}, 2, "", `unexpected argument "extra"`},
	} {
		code, out, errs := runWhack(t, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errs, tc.stderr) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", tc.args, code, out, errs)
		}
	}
}

// TestBinary runs the real program: exit status and the no-daemon message.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "whack")
	if out, err := exec.Command(gobin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f := startFake(t)
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"--ctlsocket", f.socket, "--name", "a", "--initiate"}, 0, "initiating a\nestablished a\na is up\n", ""},
		{[]string{"--ctlsocket", f.socket, "--name", "missing", "--terminate"}, 5, "", "whack: no connection named \"missing\"\n"},
		{[]string{"--ctlsocket", f.socket, "--listen"}, 4, "", "not implemented"},
		{[]string{"--rundir", filepath.Join(dir, "nowhere"), "--status"}, 1, "",
			"whack: cannot connect to pluto at " + filepath.Join(dir, "nowhere", "pluto.ctl") + ": is pluto running?"},
	} {
		cmd := exec.Command(bin, tc.args...)
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
			t.Errorf("whack %q: exit %d, stdout %q, stderr %q; want %d, %q, %q",
				tc.args, code, out.String(), errb.String(), tc.code, tc.stdout, tc.stderr)
		}
	}
}
