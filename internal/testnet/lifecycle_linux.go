package testnet

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// NFT loads rules (nft -f syntax) into the namespace's nftables and fails
// the test on error. The tables go away with the namespace.
func (ns *Namespace) NFT(t testing.TB, rules string) {
	t.Helper()
	cmd := ns.Command("nft", "-f", "-")
	cmd.Stdin = stringReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testnet: nft -f - in %s: %v: %s\nrules:\n%s", ns.Name, err, out, rules)
	}
}

var nftCounterRE = regexp.MustCompile(`packets (\d+) bytes (\d+)`)

// NFTCounter reads the named counter object (`counter NAME { }` in table
// family/table) of the namespace: its packets and bytes.
func (ns *Namespace) NFTCounter(family, table, name string) (packets, bytes uint64, err error) {
	out, err := ns.Run("nft", "list", "counter", family, table, name)
	if err != nil {
		return 0, 0, err
	}
	m := nftCounterRE.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("no counter values in:\n%s", out)
	}
	packets, _ = strconv.ParseUint(m[1], 10, 64)
	bytes, _ = strconv.ParseUint(m[2], 10, 64)
	return packets, bytes, nil
}

// MustNFTCounter is NFTCounter's packets that fails the test on error.
func (ns *Namespace) MustNFTCounter(t testing.TB, family, table, name string) uint64 {
	t.Helper()
	p, _, err := ns.NFTCounter(family, table, name)
	if err != nil {
		t.Fatalf("testnet: counter %s %s %s in %s: %v", family, table, name, ns.Name, err)
	}
	return p
}

// Netlink constants of nfnetlink_conntrack (linux/netfilter/nfnetlink.h,
// nfnetlink_conntrack.h), which x/sys/unix does not name.
const (
	nfnlSubsysCTNetlink = 1
	ipctnlMsgCTDelete   = 2
)

// FlushConntrack removes every IPv4 and IPv6 connection tracking entry of
// the namespace (as `conntrack -F` does, over nfnetlink): the next packet of
// a flow is tracked, and NATed, afresh.
func (ns *Namespace) FlushConntrack() error {
	return ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return fmt.Errorf("testnet: netlink netfilter socket: %v", err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return fmt.Errorf("testnet: bind netlink: %v", err)
		}
		for seq, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
			// nlmsghdr (16) + nfgenmsg (4): no attributes means all.
			msg := make([]byte, 20)
			binary.NativeEndian.PutUint32(msg[0:], 20)
			binary.NativeEndian.PutUint16(msg[4:], nfnlSubsysCTNetlink<<8|ipctnlMsgCTDelete)
			binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
			binary.NativeEndian.PutUint32(msg[8:], uint32(seq+1))
			msg[16] = family
			if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
				return fmt.Errorf("testnet: conntrack flush: %v", err)
			}
			buf := make([]byte, 4096)
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				return fmt.Errorf("testnet: conntrack flush answer: %v", err)
			}
			if n < 20 || binary.NativeEndian.Uint16(buf[4:]) != unix.NLMSG_ERROR {
				return fmt.Errorf("testnet: conntrack flush: unexpected answer of %d bytes", n)
			}
			if errno := int32(binary.NativeEndian.Uint32(buf[16:])); errno != 0 && unix.Errno(-errno) != unix.ENOENT {
				return fmt.Errorf("testnet: conntrack flush (family %d): %v", family, unix.Errno(-errno))
			}
		}
		return nil
	})
}

// ProcessRSS returns the resident set size of process pid, in bytes (VmRSS
// from /proc/PID/status).
func ProcessRSS(pid int) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("VmRSS line %q", sc.Text())
			}
			kb, err := strconv.ParseUint(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
