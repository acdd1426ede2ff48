// Command whack is the low-level control client of pluto: it maps its
// options to requests on the control socket (RUNDIR/pluto.ctl), prints the
// log lines pluto streams back as they arrive, then the result, and exits
// with the result's status code (see package ctl).
//
// Several actions may be given at once; they run in a fixed order on one
// connection (debug, terminate, delete, rereadsecrets, rereadall, listen,
// initiate, status, trafficstatus, shutdown) and whack stops at the first
// that fails.
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

	"github.com/spf13/pflag"

	"goswan/ctl"
)

// version is set at link time (-X main.version=...).
var version = "devel"

const defaultRundir = "/run/pluto"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// action is one request-making option, in the order actions run.
type action struct {
	flag      string
	command   string
	needsName bool // --name is required
	withName  bool // --name is sent when given
	json      bool // --json asks for Data
	help      string
}

var actions = []action{
	{flag: "terminate", command: ctl.CmdDown, needsName: true, help: "take connection --name down"},
	{flag: "delete", command: ctl.CmdDelete, needsName: true, help: "delete connection --name (taking it down first)"},
	{flag: "rereadsecrets", command: ctl.CmdRereadSecrets, help: "reload ipsec.secrets"},
	{flag: "rereadall", command: ctl.CmdRereadAll, help: "reload secrets and certificates"},
	{flag: "listen", command: ctl.CmdListen, help: "look for new interfaces and listen on them"},
	{flag: "initiate", command: ctl.CmdUp, needsName: true, help: "bring connection --name up"},
	{flag: "status", command: ctl.CmdStatus, json: true, help: "show pluto's status"},
	{flag: "trafficstatus", command: ctl.CmdTrafficStatus, withName: true, json: true, help: "show traffic of the established Child SAs"},
	{flag: "listcerts", command: ctl.CmdListCerts, json: true, help: "list our certificates"},
	{flag: "listcacerts", command: ctl.CmdListCACerts, json: true, help: "list the trusted CA certificates"},
	{flag: "listcrls", command: ctl.CmdListCRLs, json: true, help: "list the CRLs, loaded and fetched"},
	{flag: "listpubkeys", command: ctl.CmdListPubKeys, json: true, help: "list the public keys"},
	{flag: "fetchcrls", command: ctl.CmdFetchCRLs, help: "fetch the CRLs now"},
	{flag: "shutdown", command: ctl.CmdShutdown, help: "stop pluto"},
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("whack", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	var (
		ctlsocket = fs.String("ctlsocket", "", "pluto's control socket `PATH` (default RUNDIR/pluto.ctl)")
		rundir    = fs.String("rundir", defaultRundir, "pluto's run directory `DIR`")
		name      = fs.String("name", "", "the connection `NAME` an action is about")
		debug     = fs.StringArray("debug", nil, "set debugging to `SPEC`, such as \"base\", \"none\", \"no-crypt\" (repeatable)")
		asJSON    = fs.Bool("json", false, "print status in machine form (JSON)")
		help      = fs.Bool("help", false, "show this help")
		showVer   = fs.Bool("version", false, "show whack's version")
	)
	selected := make([]bool, len(actions))
	for i, a := range actions {
		fs.BoolVar(&selected[i], a.flag, false, a.help)
	}
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "whack: %v\nTry 'whack --help'.\n", err)
		return ctl.StatusBadRequest
	}
	if *help {
		usage(stdout, fs)
		return ctl.StatusOK
	}
	if *showVer {
		fmt.Fprintf(stdout, "whack (goswan) %s\n", version)
		return ctl.StatusOK
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "whack: unexpected argument %q\nTry 'whack --help'.\n", fs.Arg(0))
		return ctl.StatusBadRequest
	}

	var reqs []*ctl.Request
	if len(*debug) > 0 {
		reqs = append(reqs, &ctl.Request{
			Command: ctl.CmdDebug,
			Args:    map[string]string{ctl.ArgSet: strings.Join(*debug, " ")},
		})
	}
	for i, a := range actions {
		if !selected[i] {
			continue
		}
		if a.needsName && *name == "" {
			fmt.Fprintf(stderr, "whack: --%s needs --name\n", a.flag)
			return ctl.StatusBadRequest
		}
		req := &ctl.Request{Command: a.command, JSON: a.json && *asJSON}
		if a.needsName || a.withName {
			req.Name = *name
		}
		reqs = append(reqs, req)
	}
	if len(reqs) == 0 {
		if *name != "" {
			fmt.Fprintln(stderr, "whack: --name needs an action (--initiate, --terminate or --delete); to add a connection use 'ipsec add'")
		} else {
			usage(stderr, fs)
		}
		return ctl.StatusBadRequest
	}

	socket := *ctlsocket
	if socket == "" {
		socket = filepath.Join(*rundir, "pluto.ctl")
	}
	cli := ctl.CLI{Prog: "whack", Socket: socket, Stdout: stdout, Stderr: stderr, JSON: *asJSON}
	return cli.Run(ctx, reqs...)
}

func usage(w io.Writer, fs *pflag.FlagSet) {
	fmt.Fprintf(w, `Usage: whack [--ctlsocket PATH | --rundir DIR] ACTION...

Sends requests to pluto over its control socket and prints the answers.
The exit status is pluto's status code: 0 ok, 1 failed, 2 bad request,
3 unknown command, 4 not implemented, 5 no such connection.

Options:
%s`, fs.FlagUsages())
}
