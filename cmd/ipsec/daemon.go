package main

// The verbs that run programs: start, stop, restart, pluto, whack.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"goswan/ctl"
)

func stopFlags(e *env, fs *pflag.FlagSet) {
	fs.DurationVar(&e.stopTimeout, "timeout", defaultStopTimeout, "`DURATION` to wait for pluto to exit")
}

// findProgram looks for one of goswan's programs next to this executable
// first, then on $PATH.
func findProgram(name string) (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return exec.LookPath(name)
}

// execProgram replaces this process with the named program; it returns
// only on failure.
func execProgram(e *env, name string, args []string) int {
	path, err := findProgram(name)
	if err != nil {
		e.errorf("cannot find %s next to ipsec or on $PATH: %v", name, err)
		return ctl.StatusFailed
	}
	err = syscall.Exec(path, append([]string{path}, args...), os.Environ())
	e.errorf("cannot run %s: %v", path, err)
	return ctl.StatusFailed
}

func cmdPluto(e *env) int { return execProgram(e, "pluto", e.args) }
func cmdWhack(e *env) int { return execProgram(e, "whack", e.args) }

// cmdStart runs pluto, which forks into the background once it is up (no
// --nofork), and exits with pluto's status.
func cmdStart(e *env) int {
	path, err := findProgram("pluto")
	if err != nil {
		e.errorf("cannot find pluto next to ipsec or on $PATH: %v", err)
		return ctl.StatusFailed
	}
	var args []string
	if e.flags.Changed("rundir") {
		args = append(args, "--rundir", e.rundir)
	}
	// As Libreswan's ipsec.service runs pluto with --config
	// /etc/ipsec.conf: the default file is used when it exists.
	if e.flags.Changed("config") {
		args = append(args, "--config", e.config)
	} else if _, err := os.Stat(e.config); err == nil {
		args = append(args, "--config", e.config)
	}
	args = append(args, e.args...)
	cmd := exec.Command(path, args...)
	cmd.Stdin = os.Stdin
	cmd.Stdout = e.stdout
	cmd.Stderr = e.stderr
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return ctl.ExitCode(exit.ExitCode())
		}
		e.errorf("cannot run %s: %v", path, err)
		return ctl.StatusFailed
	}
	return ctl.StatusOK
}

// cmdStop asks pluto to shut down and waits until its pid file is gone.
func cmdStop(e *env) int {
	if code := e.cli().Run(e.ctx, &ctl.Request{Command: ctl.CmdShutdown}); code != ctl.StatusOK {
		return code
	}
	return waitPidFileGone(e)
}

func waitPidFileGone(e *env) int {
	pid := e.pidFile()
	deadline := time.Now().Add(e.stopTimeout)
	for {
		if _, err := os.Stat(pid); errors.Is(err, fs.ErrNotExist) {
			return ctl.StatusOK
		}
		if time.Now().After(deadline) {
			e.errorf("pluto did not exit within %v (%s is still there)", e.stopTimeout, pid)
			return ctl.StatusFailed
		}
		select {
		case <-e.ctx.Done():
			e.errorf("stopped waiting for pluto to exit: %v", e.ctx.Err())
			return ctl.StatusFailed
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cmdRestart stops pluto if it answers, then starts it.
func cmdRestart(e *env) int {
	if c, err := ctl.Dial(e.socket()); err == nil {
		c.Close()
		if code := cmdStop(e); code != ctl.StatusOK {
			return code
		}
	} else {
		fmt.Fprintf(e.stderr, "ipsec: pluto was not running (%s)\n", e.socket())
	}
	return cmdStart(e)
}
