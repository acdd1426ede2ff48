package peers

import (
	"context"
	"fmt"
	"net/netip"
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

// captureSettle is how long StartCapture waits after dumpcap's "Capturing
// on", and Stop before it signals dumpcap.
const captureSettle = 300 * time.Millisecond

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
	// dumpcap says "Capturing on" a little before packets reach its file:
	// in a namespace made a moment earlier, frames sent in the next few
	// milliseconds (sometimes much longer) were missing from the capture.
	time.Sleep(captureSettle)
	return c
}

// Stop ends the capture (SIGINT by PID, so that dumpcap flushes the file)
// and checks that the file exists.
func (c *Capture) Stop() error {
	// Let the last packets reach the ring buffer before asking it to stop.
	time.Sleep(captureSettle)
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
	decode := d.decodeArgs()
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

// IKE exchange types (RFC 7296 §3.1), as isakmp.exchangetype gives them.
const (
	ExchIKESAInit     = 34
	ExchIKEAuth       = 35
	ExchCreateChildSA = 36
	ExchInformational = 37
)

// Notify message types (RFC 7296 §3.10.1, RFC 7383, RFC 7427), as
// isakmp.notify.msgtype gives them.
const (
	NotifyInvalidKE    = 17 // INVALID_KE_PAYLOAD
	NotifyAuthFailed   = 24 // AUTHENTICATION_FAILED
	NotifyNATDSource   = 16388
	NotifyNATDDest     = 16389
	NotifyCookie       = 16390
	NotifyFragSupport  = 16430
	NotifySigHashAlgos = 16431
)

// ExchangeName names an IKEv2 exchange type.
func ExchangeName(n int) string {
	switch n {
	case ExchIKESAInit:
		return "IKE_SA_INIT"
	case ExchIKEAuth:
		return "IKE_AUTH"
	case ExchCreateChildSA:
		return "CREATE_CHILD_SA"
	case ExchInformational:
		return "INFORMATIONAL"
	}
	return "exchange " + strconv.Itoa(n)
}

// ISAKMPMessage is one IKE message in a capture, as tshark decodes it.
type ISAKMPMessage struct {
	Frame    int
	Src, Dst netip.AddrPort
	// NonESPMarker: the message came in a UDP-encapsulation frame with the
	// 4-byte non-ESP marker (port 4500) that tshark handed to ISAKMP.
	NonESPMarker bool
	Exchange     int  // isakmp.exchangetype
	Initiator    bool // the I flag: sent by the original initiator
	Response     bool // the R flag
	MessageID    uint32
	SPIi, SPIr   string // hex
	// Notify holds the types of the notify payloads tshark could see: those
	// outside the encrypted payload (IKE_SA_INIT's).
	Notify []int
	Length int // the IKE header's message length
	// KEGroup is the KE payload's group (IKE_SA_INIT), 0 if none.
	KEGroup int
}

// String is a short description for failure messages.
func (m ISAKMPMessage) String() string {
	kind := "request"
	if m.Response {
		kind = "response"
	}
	return fmt.Sprintf("frame %d %v->%v %s %s #%d %s:%s len %d KE %d notify %v", m.Frame, m.Src, m.Dst, ExchangeName(m.Exchange), kind, m.MessageID, m.SPIi, m.SPIr, m.Length, m.KEGroup, m.Notify)
}

// HasNotify reports whether the message carries a (visible) notify of type n.
func (m ISAKMPMessage) HasNotify(n int) bool {
	for _, x := range m.Notify {
		if x == n {
			return true
		}
	}
	return false
}

// ISAKMPMessages lists the IKE messages in pcap, one per frame (it assumes
// no frame holds two: true of IKE over UDP).
func ISAKMPMessages(pcap string, d Dissect) ([]ISAKMPMessage, error) {
	fields := []string{"frame.number", "ip.src", "ipv6.src", "udp.srcport", "ip.dst", "ipv6.dst", "udp.dstport",
		"udpencap.non_esp_marker", "isakmp.exchangetype", "isakmp.flag_i", "isakmp.flag_r", "isakmp.messageid",
		"isakmp.ispi", "isakmp.rspi", "isakmp.notify.msgtype", "isakmp.length", "isakmp.key_exchange.dh_group"}
	args := append([]string{"-r", pcap, "-n"}, d.decodeArgs()...)
	args = append(args, "-Y", "isakmp", "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,")
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := tshark(args...)
	if err != nil {
		return nil, err
	}
	var msgs []ISAKMPMessage
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != len(fields) {
			return nil, fmt.Errorf("tshark: %d fields in %q, want %d", len(f), line, len(fields))
		}
		m, err := parseISAKMPFields(f)
		if err != nil {
			return nil, fmt.Errorf("tshark line %q: %v", line, err)
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

func parseISAKMPFields(f []string) (ISAKMPMessage, error) {
	var m ISAKMPMessage
	var err error
	first := func(s string) string { v, _, _ := strings.Cut(s, ","); return v }
	num := func(s string) uint64 {
		if err != nil {
			return 0
		}
		var n uint64
		n, err = strconv.ParseUint(first(s), 0, 32)
		return n
	}
	addr := func(v4, v6, port string) netip.AddrPort {
		a := first(v4)
		if a == "" {
			a = first(v6)
		}
		ip, perr := netip.ParseAddr(a)
		if perr != nil && err == nil {
			err = perr
		}
		return netip.AddrPortFrom(ip, uint16(num(port)))
	}
	m.Frame = int(num(f[0]))
	m.Src = addr(f[1], f[2], f[3])
	m.Dst = addr(f[4], f[5], f[6])
	m.NonESPMarker = f[7] != ""
	m.Exchange = int(num(f[8]))
	m.Initiator = first(f[9]) == "1" || first(f[9]) == "True"
	m.Response = first(f[10]) == "1" || first(f[10]) == "True"
	m.MessageID = uint32(num(f[11]))
	m.SPIi, m.SPIr = strings.ReplaceAll(first(f[12]), ":", ""), strings.ReplaceAll(first(f[13]), ":", "")
	if f[14] != "" {
		for _, n := range strings.Split(f[14], ",") {
			m.Notify = append(m.Notify, int(num(n)))
		}
	}
	m.Length = int(num(f[15]))
	if f[16] != "" {
		m.KEGroup = int(num(f[16]))
	}
	return m, err
}

func (d Dissect) decodeArgs() []string {
	var decode []string
	for _, p := range d.IKEPorts {
		decode = append(decode, "-d", "udp.port=="+strconv.Itoa(p)+",isakmp")
	}
	for _, p := range d.NATTPorts {
		decode = append(decode, "-d", "udp.port=="+strconv.Itoa(p)+",udpencap")
	}
	return decode
}
