// Command pluto is goswan's IKEv2 daemon, with the command line of
// Libreswan's ipsec-pluto(8).
//
// Start-up, in order: parse the flags; read --config; merge its `config
// setup` with the flags (the command line wins) and validate everything;
// without --nofork, re-execute this binary in a new session and wait for the
// child to report that it is initialized (Go cannot fork). The process that
// stays then creates RUNDIR/pluto.pid exclusively (exit 10 if it exists),
// opens the log, checks that the chosen back end can work here, creates
// RUNDIR/pluto.ctl and serves requests until SIGTERM or a shutdown request.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"
)

// Exit statuses, as the man page gives them.
const (
	exitOK       = 0
	exitError    = 1
	exitLockFile = 10
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "devel"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exitError carries a status other than 1 up to run.
type statusError struct {
	status int
	err    error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

func statusOf(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return se.status
	}
	return exitError
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		usage(stdout, o0().flags)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "pluto: %v\n", err)
		fmt.Fprintf(stderr, "pluto: see pluto --help\n")
		return exitError
	}
	if o.help {
		usage(stdout, o.flags)
		return exitOK
	}
	if o.version {
		fmt.Fprintf(stdout, "goswan pluto %s (IKEv2; Libreswan-compatible command line)\n", version)
		return exitOK
	}
	s, help, err := resolve(o)
	if err != nil {
		fmt.Fprintf(stderr, "pluto: %v\n", err)
		return exitError
	}
	if help != "" {
		fmt.Fprint(stdout, help)
		return exitOK
	}
	for _, w := range s.warnings {
		fmt.Fprintf(stderr, "pluto: warning: %s\n", w)
	}
	if !o.nofork && os.Getenv(childEnv) == "" {
		return detach(args, stderr, s)
	}
	if err := serve(s, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "pluto: %v\n", err)
		return statusOf(err)
	}
	return exitOK
}

// o0 gives a flag set for --help when parsing itself failed on -h.
func o0() *options {
	o := &options{}
	newFlagSet(o, io.Discard)
	return o
}
