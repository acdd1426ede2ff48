package kernel

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DefaultBackend is the back end used when no --use-* flag or protostack=
// names one: XFRM on Linux, as in Libreswan.
const DefaultBackend = XFRM

// checkXFRM proves that the kernel will take an ESP state: it adds one
// between two TEST-NET-1 addresses (RFC 5737) with no policy pointing at it,
// so no packet can ever use it, and deletes it again at once.
func checkXFRM() error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_XFRM)
	if err != nil {
		return &UnavailableError{XFRM, fmt.Sprintf("no XFRM netlink in this kernel (%v)", err), []Backend{Userspace, Netstack}}
	}
	unix.Close(fd)
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	spi := int(binary.BigEndian.Uint32(b[:])|0x100) & 0x7fffffff
	key := make([]byte, 20) // AES-128 key + 4-byte salt
	st := &netlink.XfrmState{
		Src:   net.IPv4(192, 0, 2, 1),
		Dst:   net.IPv4(192, 0, 2, 2),
		Proto: netlink.XFRM_PROTO_ESP,
		Mode:  netlink.XFRM_MODE_TUNNEL,
		Spi:   spi,
		Aead:  &netlink.XfrmStateAlgo{Name: "rfc4106(gcm(aes))", Key: key, ICVLen: 128},
	}
	if err := netlink.XfrmStateAdd(st); err != nil {
		switch {
		case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
			return &UnavailableError{XFRM, fmt.Sprintf("no permission to configure XFRM (%v): it needs root or CAP_NET_ADMIN", err), []Backend{Netstack}}
		default:
			return &UnavailableError{XFRM, fmt.Sprintf("the kernel refused an ESP state with AES-GCM (%v): it has no ESP support", err), []Backend{Userspace, Netstack}}
		}
	}
	if err := netlink.XfrmStateDel(st); err != nil {
		return fmt.Errorf("--use-xfrm: could not delete the test ESP state (SPI %#x): %v", spi, err)
	}
	return nil
}

// checkPFKEY opens a PF_KEY v2 socket; Linux has one only with af_key.
func checkPFKEY() error {
	const afKey, pfKeyV2 = 15, 2
	fd, err := unix.Socket(afKey, unix.SOCK_RAW|unix.SOCK_CLOEXEC, pfKeyV2)
	if err != nil {
		reason := fmt.Sprintf("cannot open a PF_KEY socket (%v)", err)
		if errors.Is(err, unix.EAFNOSUPPORT) {
			reason = "this kernel has no PF_KEY (af_key) support"
		} else if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			reason = fmt.Sprintf("no permission to open a PF_KEY socket (%v): it needs root", err)
			return &UnavailableError{BSDKAME, reason, []Backend{Netstack}}
		}
		return &UnavailableError{BSDKAME, reason, []Backend{XFRM, Userspace, Netstack}}
	}
	unix.Close(fd)
	return nil
}

// checkTUN makes sure /dev/net/tun opens and that this process holds
// CAP_NET_ADMIN, which creating and configuring the device needs.
func checkTUN() error {
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		return &UnavailableError{Userspace, fmt.Sprintf("cannot open /dev/net/tun (%v)", err), []Backend{Netstack}}
	}
	f.Close()
	ok, err := hasCapNetAdmin()
	if err != nil {
		return err
	}
	if !ok {
		return &UnavailableError{Userspace, "creating a TUN device needs root or CAP_NET_ADMIN, which this process does not have", []Backend{Netstack}}
	}
	return nil
}

// hasCapNetAdmin reads the effective capability set from /proc/self/status.
func hasCapNetAdmin() (bool, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false, fmt.Errorf("reading capabilities: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return false, fmt.Errorf("reading capabilities: CapEff %q: %v", v, err)
			}
			return caps&(1<<unix.CAP_NET_ADMIN) != 0, nil
		}
	}
	return false, fmt.Errorf("reading capabilities: no CapEff line in /proc/self/status")
}
