package peers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"goswan/internal/testnet"
)

// RequireTshark checks for root, namespaces, tshark and dumpcap.
func RequireTshark(t testing.TB) {
	t.Helper()
	testnet.Require(t, "tshark", "dumpcap")
}

// Capture is a running dumpcap writing a pcapng file.
type Capture struct {
	Path string // the capture file
	proc *testnet.Process
}

// StartCapture runs dumpcap on iface inside ns (on the host's interface when
// ns is nil; use "lo" for loopback) with an optional capture filter, and
// returns once dumpcap says it is capturing. Stop it with Stop; t.Cleanup
// stops it too.
func StartCapture(t testing.TB, ns *testnet.Namespace, iface, filter string) *Capture {
	t.Helper()
	c := &Capture{Path: filepath.Join(t.TempDir(), iface+".pcapng")}
	args := []string{"dumpcap", "-q", "-i", iface, "-w", c.Path}
	if filter != "" {
		args = append(args, "-f", filter)
	}
	var cmd *exec.Cmd
	if ns != nil {
		cmd = ns.Command(args...)
	} else {
		cmd = exec.Command(args[0], args[1:]...)
	}
	var err error
	c.proc, err = testnet.Start(t, "dumpcap@"+iface, cmd)
	if err != nil {
		t.Fatalf("peers: %v", err)
	}
	if err := c.proc.WaitOutput("Capturing on", 10*time.Second); err != nil {
		t.Fatalf("peers: %v", err)
	}
	return c
}

// Stop ends the capture (SIGINT by PID, so that dumpcap flushes the file)
// and checks that the file exists.
func (c *Capture) Stop() error {
	// Let the last packets reach the ring buffer before asking it to stop.
	time.Sleep(200 * time.Millisecond)
	if err := c.proc.StopWith(os.Interrupt, 5*time.Second); err != nil {
		return err
	}
	if _, err := os.Stat(c.Path); err != nil {
		return fmt.Errorf("dumpcap wrote no file: %v; output:\n%s", err, c.proc.Output())
	}
	return nil
}

// Dissect says which UDP ports tshark should decode as IKE beyond its
// defaults (500 as ISAKMP; 4500 as UDP encapsulation, which hands packets
// with the non-ESP marker to ISAKMP).
type Dissect struct {
	IKEPorts  []int // decoded as isakmp
	NATTPorts []int // decoded as udpencap (non-ESP marker, then ISAKMP)
}

// ISAKMPReport is what CheckISAKMP found.
type ISAKMPReport struct {
	// Packets is the number of frames with an ISAKMP layer.
	Packets int
	// Problems are the dissector's complaints: each line of the detailed
	// dissection that contains "Malformed" or "Expert Info (Error",
	// prefixed with its frame number.
	Problems []string
	// Summary is tshark's one-line-per-frame listing of those frames.
	Summary string
}

// CheckISAKMP dissects the capture in pcap with tshark and reports the
// ISAKMP frames and every malformed-packet or error-level expert item in
// them.
func CheckISAKMP(pcap string, d Dissect) (ISAKMPReport, error) {
	var decode []string
	for _, p := range d.IKEPorts {
		decode = append(decode, "-d", "udp.port=="+strconv.Itoa(p)+",isakmp")
	}
	for _, p := range d.NATTPorts {
		decode = append(decode, "-d", "udp.port=="+strconv.Itoa(p)+",udpencap")
	}
	var rep ISAKMPReport
	summary, err := tshark(append(append([]string{"-r", pcap, "-n"}, decode...), "-Y", "isakmp")...)
	if err != nil {
		return rep, err
	}
	rep.Summary = summary
	for _, l := range strings.Split(summary, "\n") {
		if strings.TrimSpace(l) != "" {
			rep.Packets++
		}
	}
	detail, err := tshark(append(append([]string{"-r", pcap, "-n", "-V"}, decode...), "-Y", "isakmp")...)
	if err != nil {
		return rep, err
	}
	rep.Problems = scanProblems(detail)
	return rep, nil
}

// scanProblems returns the lines of tshark -V output that report a
// malformed packet or an error-level expert item, each prefixed with the
// frame it belongs to.
func scanProblems(detail string) []string {
	var problems []string
	frame := "?"
	for _, l := range strings.Split(detail, "\n") {
		if strings.HasPrefix(l, "Frame ") {
			if n, _, ok := strings.Cut(strings.TrimPrefix(l, "Frame "), ":"); ok {
				frame = n
			}
		}
		if strings.Contains(l, "Malformed") || strings.Contains(l, "Expert Info (Error") {
			problems = append(problems, "frame "+frame+": "+strings.TrimSpace(l))
		}
	}
	return problems
}

func tshark(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "tshark", args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("tshark %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
