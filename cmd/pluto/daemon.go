package main

// The daemon's life: detaching, the lock file, the control socket, signals,
// the crash report and the leak detective.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"goswan/ctl"
	"goswan/kernel"
	"goswan/logging"
)

// childEnv marks the re-executed child of a daemonizing pluto; its value is
// the number of the file descriptor on which the child reports start-up.
const childEnv = "GOSWAN_PLUTO_CHILD"

// testPanicEnv makes an initialized daemon panic, so that the tests can check
// the crash report. testLeakEnv makes it leak a goroutine, for the leak
// detective's test. Both are read only at start.
const (
	testPanicEnv = "GOSWAN_PLUTO_TEST_PANIC"
	testLeakEnv  = "GOSWAN_PLUTO_TEST_LEAK"
)

// detach re-executes pluto in a new session and waits until the child says
// it is initialized ("OK") or failed ("ERR status message"). The parent's
// exit status is 0 only after the child's "OK".
func detach(args []string, stderr io.Writer, s *settings) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "pluto: cannot find my own executable to detach: %v\n", err)
		return exitError
	}
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(stderr, "pluto: %v\n", err)
		return exitError
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), childEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if s.log.Stderr {
		cmd.Stderr = stderr // the user asked for the log on this terminal
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "pluto: starting the daemon: %v\n", err)
		return exitError
	}
	w.Close()
	line, _ := bufio.NewReader(r).ReadString('\n')
	r.Close()
	line = strings.TrimSpace(line)
	if line == "OK" {
		cmd.Process.Release()
		return exitOK
	}
	// The child failed: it exits on its own; reap it so it is not a zombie
	// for the life of a parent that is about to exit anyway.
	cmd.Wait()
	if rest, ok := strings.CutPrefix(line, "ERR "); ok {
		code, msg, _ := strings.Cut(rest, " ")
		status, err := strconv.Atoi(code)
		if err != nil || status == 0 {
			status = exitError
		}
		fmt.Fprintf(stderr, "pluto: %s\n", msg)
		return status
	}
	fmt.Fprintf(stderr, "pluto: the daemon exited before it was initialized\n")
	return exitError
}

// startReporter tells whoever started this process how start-up went: the
// waiting parent through the pipe it passed, or the user on standard output
// with --nofork.
type startReporter struct {
	pipe   *os.File
	stdout io.Writer
}

func newStartReporter(stdout io.Writer) *startReporter {
	r := &startReporter{stdout: stdout}
	if fd, err := strconv.Atoi(os.Getenv(childEnv)); err == nil && fd > 2 {
		r.pipe = os.NewFile(uintptr(fd), "pluto-start")
		os.Unsetenv(childEnv)
	}
	return r
}

func (r *startReporter) ok() {
	if r.pipe != nil {
		fmt.Fprintln(r.pipe, "OK")
		r.pipe.Close()
		r.pipe = nil
		return
	}
	fmt.Fprintln(r.stdout, "Pluto initialized")
}

func (r *startReporter) fail(err error) {
	if r.pipe != nil {
		msg := strings.ReplaceAll(err.Error(), "\n", "; ")
		fmt.Fprintf(r.pipe, "ERR %d %s\n", statusOf(err), msg)
		r.pipe.Close()
		r.pipe = nil
	}
}

// serve runs the daemon in this process until it is told to stop.
func serve(s *settings, stdout, stderr io.Writer) (err error) {
	rep := newStartReporter(stdout)
	detached := rep.pipe != nil
	defer func() {
		if err != nil {
			rep.fail(err)
		}
	}()
	if detached {
		// Standard input and output lead nowhere now; standard error stays
		// only if the log goes there.
		devnull, derr := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if derr == nil {
			syscall.Dup2(int(devnull.Fd()), 0)
			syscall.Dup2(int(devnull.Fd()), 1)
			if !s.log.Stderr {
				syscall.Dup2(int(devnull.Fd()), 2)
			}
			devnull.Close()
		}
	}

	if err := os.MkdirAll(s.rundir, 0o755); err != nil {
		return fmt.Errorf("creating the run directory: %v", err)
	}
	pidPath := filepath.Join(s.rundir, "pluto.pid")
	lock, err := os.OpenFile(pidPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return &statusError{exitLockFile, fmt.Errorf("lock file %q already exists: another pluto is running, or one died; if none is running, remove it (rm %s)", pidPath, pidPath)}
		}
		return fmt.Errorf("creating the lock file: %v", err)
	}
	fmt.Fprintf(lock, "%d\n", os.Getpid())
	lock.Close()
	defer os.Remove(pidPath)

	log, err := logging.New(s.log)
	if err != nil && s.log.Syslog {
		// No syslog here (a container, say): carry on on standard error.
		fallback := s.log
		fallback.Syslog, fallback.Stderr = false, true
		if log, err = logging.New(fallback); err == nil {
			log.Warnf("cannot reach syslog, logging to standard error instead")
		}
	}
	if err != nil {
		return fmt.Errorf("opening the log: %v", err)
	}
	defer log.Close()
	log.Logf("Starting goswan pluto %s, pid %d", version, os.Getpid())
	log.Auditf("op=start pid=%d", os.Getpid())
	defer log.Auditf("op=stop pid=%d", os.Getpid())
	if len(s.listen) > 0 {
		var addrs []string
		for _, a := range s.listen {
			addrs = append(addrs, a.String())
		}
		log.Logf("IKE will listen on %s only (--listen)", strings.Join(addrs, ", "))
	}
	for _, w := range s.warnings {
		log.Warnf("%s", w)
	}
	if s.efenceProtect {
		log.Logf("--efence-protect has nothing to do: Go checks memory bounds itself")
	}

	crash, err := openCrashReport(s.coredir)
	if err != nil {
		log.Warnf("no crash report will be written: %v", err)
	}
	defer crash.close()

	if err := kernel.Check(s.backend); err != nil {
		if !s.log.Stderr { // else the caller prints it there
			log.Warnf("%v", err)
		}
		return err
	}
	log.Logf("using the %s back end (%s)", s.backend, s.backend.Flag())

	// The leak detective's baseline: what runs before the daemon's own
	// goroutines start (the signal watcher among them).
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	baseline := runtime.NumGoroutine()

	d := newDaemon(s, log)
	d.loadSecrets(true)
	if d.ike, err = startIKE(s, log, d.currentSecrets); err != nil {
		return err
	}
	defer d.close()
	autoStart := d.loadConfigConns()

	ctlPath := filepath.Join(s.rundir, "pluto.ctl")
	mode := os.FileMode(0o600)
	if s.ctlGroup != "" {
		mode = 0o660
	}
	ln, err := ctl.Listen(ctlPath, mode, s.ctlGroup)
	if err != nil {
		return fmt.Errorf("creating the control socket: %v", err)
	}
	defer os.Remove(ctlPath)
	srv := ctl.NewServer(ln, d.handle, log.Logf)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(); err != nil {
			log.Warnf("control socket: %v", err)
		}
	}()

	log.Logf("listening on the control socket %s", ctlPath)
	rep.ok()
	d.initiateAtStart(autoStart)

	if os.Getenv(testLeakEnv) != "" {
		go func() { select {} }()
	}
	if os.Getenv(testPanicEnv) != "" {
		go func() { panic("test panic requested with " + testPanicEnv) }()
	}

	for stop := false; !stop; {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				log.Logf(`pluto ignores SIGHUP; perhaps you meant "ipsec listen"?`)
				continue
			}
			log.Logf("shutting down on %v", sig)
			stop = true
		case <-d.shutdown:
			log.Logf("shutting down on request")
			stop = true
		}
	}

	srv.Close()
	wg.Wait()
	d.close()
	if s.leakDetective {
		if err := detectLeaks(log, d, baseline); err != nil {
			return err
		}
	}
	log.Logf("pluto stopped")
	return nil
}

// detectLeaks reports what was not released by shutdown: SAs still in the
// daemon's tables and goroutines beyond those that existed before serving.
// Goroutines get a moment to finish, since closing only asks them to.
func detectLeaks(log *logging.Logger, d *daemon, baseline int) error {
	var leaks []string
	if n := d.saCount(); n > 0 {
		leaks = append(leaks, fmt.Sprintf("%d SAs not deleted", n))
	}
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(2 * time.Second); n > baseline && time.Now().Before(deadline); n = runtime.NumGoroutine() {
		time.Sleep(10 * time.Millisecond)
	}
	if n > baseline {
		leaks = append(leaks, fmt.Sprintf("%d goroutines still running", n-baseline))
		var b strings.Builder
		pprof.Lookup("goroutine").WriteTo(&b, 1)
		for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
			log.Logf("leak-detective: %s", line)
		}
	}
	if len(leaks) == 0 {
		log.Logf("leak-detective: no leaks found")
		return nil
	}
	return fmt.Errorf("leak-detective found leaks: %s", strings.Join(leaks, ", "))
}

// crashReport is the file the Go runtime writes a fatal panic's report to,
// with every goroutine's stack. It is removed at a clean exit if empty.
type crashReport struct{ f *os.File }

func openCrashReport(dir string) (*crashReport, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return &crashReport{}, err
	}
	name := filepath.Join(dir, fmt.Sprintf("pluto-crash.%d.txt", os.Getpid()))
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return &crashReport{}, err
	}
	debug.SetTraceback("all")
	if err := debug.SetCrashOutput(f, debug.CrashOptions{}); err != nil {
		f.Close()
		os.Remove(name)
		return &crashReport{}, err
	}
	return &crashReport{f: f}, nil
}

func (c *crashReport) close() {
	if c.f == nil {
		return
	}
	debug.SetCrashOutput(nil, debug.CrashOptions{})
	if st, err := c.f.Stat(); err == nil && st.Size() == 0 {
		os.Remove(c.f.Name())
	}
	c.f.Close()
}

// ctxDone reports whether ctx is finished; handlers use it to stop early
// when their client hangs up.
func ctxDone(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	default:
		return false
	}
}
