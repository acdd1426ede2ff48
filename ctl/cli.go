package ctl

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// CLI is the part of a command-line client that whack and ipsec share:
// send requests, print what comes back, turn the status into an exit code.
type CLI struct {
	Prog   string    // the program's name, the prefix of its messages
	Socket string    // the control socket's path
	Stdout io.Writer // log lines and results
	Stderr io.Writer // errors
	// JSON prints a result's Data, where it has one, instead of its Text.
	JSON bool
}

// Run connects, sends reqs one after another on one connection, printing
// each log line as it arrives and then each result, and stops at the first
// result that is not StatusOK. It returns the exit status: the last
// result's status, or 1 when pluto could not be reached or the connection
// failed.
func (c CLI) Run(ctx context.Context, reqs ...*Request) int {
	cl, err := Dial(c.Socket)
	if err != nil {
		fmt.Fprintf(c.Stderr, "%s: cannot connect to pluto at %s: is pluto running? (%v)\n", c.Prog, c.Socket, err)
		return StatusFailed
	}
	defer cl.Close()
	onLog := func(line string) { fmt.Fprintln(c.Stdout, line) }
	for _, req := range reqs {
		res, err := cl.Do(ctx, req, onLog)
		if err != nil {
			fmt.Fprintf(c.Stderr, "%s: %s: %v\n", c.Prog, req.Command, err)
			return StatusFailed
		}
		c.Print(res)
		if res.Status != StatusOK {
			return ExitCode(res.Status)
		}
	}
	return StatusOK
}

// Print writes a result: Data (with JSON) or Text to Stdout, and for a
// failure the error to Stderr.
func (c CLI) Print(res *Result) {
	switch {
	case c.JSON && len(res.Data) > 0:
		fmt.Fprintf(c.Stdout, "%s\n", res.Data)
	case res.Text != "":
		io.WriteString(c.Stdout, res.Text)
		if !strings.HasSuffix(res.Text, "\n") {
			io.WriteString(c.Stdout, "\n")
		}
	}
	if res.Status != StatusOK {
		msg := res.Error
		if msg == "" {
			msg = StatusText(res.Status)
		}
		fmt.Fprintf(c.Stderr, "%s: %s\n", c.Prog, msg)
	}
}

// ExitCode maps a status to a process exit code: the status itself when it
// fits, else 1.
func ExitCode(status int) int {
	if status < 0 || status > 125 {
		return StatusFailed
	}
	return status
}
