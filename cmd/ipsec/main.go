// Command ipsec is the front end people type, with Libreswan 5's verbs:
// "ipsec up west-east", "ipsec status", "ipsec stop", ...
//
// Most verbs are one request on pluto's control socket (package ctl); the
// table verbs below says which. The log lines pluto streams while a request
// runs are printed as they arrive, then the result, and ipsec exits with the
// result's status code. A few verbs run here instead: start, stop and
// restart run pluto, checkconfig reads the configuration without a daemon,
// and pluto and whack exec those programs, found next to ipsec first and
// then on $PATH.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"goswan/ctl"
)

// version is set at link time (-X main.version=...).
var version = "devel"

const (
	defaultRundir      = "/run/pluto"
	defaultConfig      = "/etc/ipsec.conf"
	defaultSecretsFile = "/etc/ipsec.secrets"
	defaultIPsecDir    = "/etc/ipsec.d"
	defaultStopTimeout = 30 * time.Second
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// argKind says what positional arguments a verb takes.
type argKind int

const (
	argNone    argKind = iota
	argName            // exactly one connection name
	argOptName         // at most one connection name
	argRaw             // everything after the verb goes, unparsed, to another program
)

// verb is one ipsec subcommand.
type verb struct {
	name string
	help string
	args argKind

	// A request verb sends command to pluto.
	command    string
	sendConfig bool // Request.Config = absolute --config
	json       bool // takes --json

	// A local verb runs here instead.
	local func(e *env) int
	// flags adds the local verb's own options.
	flags func(e *env, fs *pflag.FlagSet)
}

// verbs is every verb, in the order the help lists them.
var verbs []*verb

func init() {
	verbs = []*verb{
		{name: "start", help: "start pluto (pass more pluto options after --)", local: cmdStart},
		{name: "stop", help: "stop pluto and wait until it has exited", local: cmdStop, flags: stopFlags},
		{name: "restart", help: "stop pluto, if it runs, and start it again", local: cmdRestart, flags: stopFlags},
		{name: "add", args: argName, command: ctl.CmdAdd, sendConfig: true, help: "load connection NAME from the configuration"},
		{name: "replace", args: argName, command: ctl.CmdReplace, sendConfig: true, help: "delete connection NAME and load it again"},
		{name: "delete", args: argName, command: ctl.CmdDelete, help: "take connection NAME down and unload it"},
		{name: "up", args: argName, command: ctl.CmdUp, help: "bring connection NAME up, showing progress"},
		{name: "down", args: argName, command: ctl.CmdDown, help: "take connection NAME down"},
		{name: "status", command: ctl.CmdStatus, json: true, help: "show pluto's full status"},
		{name: "briefstatus", command: ctl.CmdBriefStatus, json: true, help: "show a brief status"},
		{name: "globalstatus", command: ctl.CmdGlobalStatus, json: true, help: "show pluto's global settings and counters"},
		{name: "trafficstatus", command: ctl.CmdTrafficStatus, json: true, help: "show traffic of the established Child SAs"},
		{name: "connectionstatus", args: argOptName, command: ctl.CmdConnectionStatus, json: true, help: "show the loaded connections, or just NAME"},
		{name: "showstates", command: ctl.CmdShowStates, json: true, help: "show the IKE and Child SAs"},
		{name: "listen", command: ctl.CmdListen, help: "look for new interfaces and listen on them"},
		{name: "rereadsecrets", command: ctl.CmdRereadSecrets, help: "reload ipsec.secrets"},
		{name: "rereadall", command: ctl.CmdRereadAll, sendConfig: true, help: "reload secrets and certificates"},
		{name: "listcerts", command: ctl.CmdListCerts, json: true, help: "list our certificates (--nssdir certs/)"},
		{name: "listcacerts", command: ctl.CmdListCACerts, json: true, help: "list the trusted CA certificates (--nssdir cacerts/)"},
		{name: "listcrls", command: ctl.CmdListCRLs, json: true, help: "list the CRLs, loaded from crls/ and fetched"},
		{name: "listpubkeys", command: ctl.CmdListPubKeys, json: true, help: "list the public keys of our certificates and keys"},
		{name: "fetchcrls", command: ctl.CmdFetchCRLs, help: "fetch the CRLs from their distribution points now"},
		{name: "checkconfig", local: cmdCheckConfig, flags: checkConfigFlags, help: "check ipsec.conf and ipsec.secrets (no daemon needed)"},
		{name: "pluto", args: argRaw, local: cmdPluto, help: "run the pluto daemon with the arguments given"},
		{name: "whack", args: argRaw, local: cmdWhack, help: "run the whack control client with the arguments given"},
	}
}

func findVerb(name string) *verb {
	for _, v := range verbs {
		if v.name == name {
			return v
		}
	}
	return nil
}

// env is what a verb runs with.
type env struct {
	ctx            context.Context
	stdout, stderr io.Writer
	verb           *verb

	rundir      string
	ctlsocket   string
	config      string
	json        bool
	secretsFile string
	ipsecDir    string
	stopTimeout time.Duration
	help        bool

	args  []string // positional arguments (start: those after --)
	flags *pflag.FlagSet
}

// socket is the control socket's path.
func (e *env) socket() string {
	if e.ctlsocket != "" {
		return e.ctlsocket
	}
	return filepath.Join(e.rundir, "pluto.ctl")
}

func (e *env) pidFile() string { return filepath.Join(e.rundir, "pluto.pid") }

func (e *env) errorf(format string, args ...any) {
	fmt.Fprintf(e.stderr, "ipsec: "+format+"\n", args...)
}

func (e *env) cli() ctl.CLI {
	return ctl.CLI{Prog: "ipsec", Socket: e.socket(), Stdout: e.stdout, Stderr: e.stderr, JSON: e.json}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return ctl.StatusBadRequest
	}
	switch args[0] {
	case "--help", "-h", "help":
		if len(args) > 1 {
			if v := findVerb(args[1]); v != nil {
				verbUsage(stdout, v, newFlagSet(&env{verb: v}))
				return ctl.StatusOK
			}
		}
		usage(stdout)
		return ctl.StatusOK
	case "--version", "version":
		fmt.Fprintf(stdout, "goswan %s\n", version)
		return ctl.StatusOK
	}
	v := findVerb(args[0])
	if v == nil {
		fmt.Fprintf(stderr, "ipsec: unknown command %q\nTry 'ipsec --help'.\n", args[0])
		return ctl.StatusUnknownCommand
	}
	e := &env{ctx: ctx, stdout: stdout, stderr: stderr, verb: v}
	if v.args == argRaw {
		e.args = args[1:]
		return v.local(e)
	}

	fs := newFlagSet(e)
	if err := fs.Parse(args[1:]); err != nil {
		e.errorf("%s: %v\nTry 'ipsec %s --help'.", v.name, err)
		return ctl.StatusBadRequest
	}
	if e.help {
		verbUsage(stdout, v, fs)
		return ctl.StatusOK
	}
	e.flags = fs
	e.args = fs.Args()
	if code, ok := checkArgs(e, fs); !ok {
		return code
	}
	if v.local != nil {
		return v.local(e)
	}
	return e.cli().Run(ctx, e.request())
}

// newFlagSet returns the options of e.verb, bound to e.
func newFlagSet(e *env) *pflag.FlagSet {
	v := e.verb
	fs := pflag.NewFlagSet("ipsec "+v.name, pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	fs.StringVar(&e.rundir, "rundir", defaultRundir, "pluto's run directory `DIR` (control socket, pid file)")
	fs.StringVar(&e.ctlsocket, "ctlsocket", "", "pluto's control socket `PATH` (default RUNDIR/pluto.ctl)")
	fs.StringVar(&e.config, "config", defaultConfig, "the ipsec.conf `FILE`")
	if v.json {
		fs.BoolVar(&e.json, "json", false, "print the status in machine form (JSON)")
	}
	if v.flags != nil {
		v.flags(e, fs)
	}
	fs.BoolVar(&e.help, "help", false, "show this help")
	return fs
}

// checkArgs checks the positional arguments against the verb's argKind.
func checkArgs(e *env, fs *pflag.FlagSet) (int, bool) {
	v := e.verb
	args := e.args
	if v.name == "start" || v.name == "restart" {
		// Only what follows -- is allowed: it goes to pluto.
		dash := fs.ArgsLenAtDash()
		if dash < 0 {
			dash = len(args)
		}
		if dash > 0 {
			e.errorf("%s: unexpected argument %q (put pluto's options after --)", v.name, args[0])
			return ctl.StatusBadRequest, false
		}
		return 0, true
	}
	switch {
	case v.args == argName && len(args) != 1:
		e.errorf("%s: needs exactly one connection name\nUsage: ipsec %s NAME", v.name, v.name)
		return ctl.StatusBadRequest, false
	case v.args == argOptName && len(args) > 1:
		e.errorf("%s: takes at most one connection name", v.name)
		return ctl.StatusBadRequest, false
	case v.args == argNone && len(args) > 0:
		e.errorf("%s: unexpected argument %q", v.name, args[0])
		return ctl.StatusBadRequest, false
	}
	return 0, true
}

// request builds the request of a request verb.
func (e *env) request() *ctl.Request {
	v := e.verb
	req := &ctl.Request{Command: v.command, JSON: e.json}
	if len(e.args) > 0 {
		req.Name = e.args[0]
	}
	if v.sendConfig && e.config != "" {
		cfg, err := filepath.Abs(e.config)
		if err != nil {
			cfg = e.config
		}
		req.Config = cfg
	}
	return req
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: ipsec COMMAND [OPTIONS] [NAME]\n\nCommands:\n")
	width := 0
	for _, v := range verbs {
		width = max(width, len(v.name+argUsage(v)))
	}
	for _, v := range verbs {
		fmt.Fprintf(w, "  %-*s  %s\n", width, v.name+argUsage(v), v.help)
	}
	fmt.Fprintf(w, `  %-*s  %s
  %-*s  %s

Every command takes --rundir DIR (default %s), --ctlsocket PATH
(default RUNDIR/pluto.ctl) and --config FILE (default %s);
the status commands take --json. See 'ipsec help COMMAND'.
The exit status is pluto's status code: 0 ok, 1 failed, 2 bad request,
3 unknown command, 4 not implemented, 5 no such connection.
`, width, "--version", "show the version", width, "--help", "show this help", defaultRundir, defaultConfig)
}

func argUsage(v *verb) string {
	switch v.args {
	case argName:
		return " NAME"
	case argOptName:
		return " [NAME]"
	case argRaw:
		return " ARGS..."
	}
	if v.name == "start" || v.name == "restart" {
		return " [-- PLUTO-ARGS]"
	}
	return ""
}

func verbUsage(w io.Writer, v *verb, fs *pflag.FlagSet) {
	fmt.Fprintf(w, "Usage: ipsec %s%s\n\n%s.\n", v.name, argUsage(v), strings.ToUpper(v.help[:1])+v.help[1:])
	if v.args != argRaw {
		fmt.Fprintf(w, "\nOptions:\n%s", fs.FlagUsages())
	}
}
