//go:build freebsd || netbsd || openbsd || darwin

package kernel

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// pfKeyFamily is the address family of PF_KEY sockets (pseudo_AF_KEY).
var pfKeyFamily = map[string]int{"freebsd": 27, "darwin": 29, "netbsd": 29, "openbsd": 30}[runtime.GOOS]

const pfKeyV2 = 2

// DefaultBackend is the back end used when no --use-* flag or protostack=
// names one: PF_KEY on the BSDs, as in Libreswan.
const DefaultBackend = BSDKAME

func checkXFRM() error {
	return &UnavailableError{XFRM, "XFRM is Linux's interface and this is not Linux", []Backend{BSDKAME, Userspace, Netstack}}
}

func checkPFKEY() error {
	fd, err := unix.Socket(pfKeyFamily, unix.SOCK_RAW, pfKeyV2)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return &UnavailableError{BSDKAME, fmt.Sprintf("no permission to open a PF_KEY socket (%v): it needs root", err), []Backend{Netstack}}
		}
		return &UnavailableError{BSDKAME, fmt.Sprintf("cannot open a PF_KEY socket (%v): is the kernel built with IPSEC?", err), []Backend{Userspace, Netstack}}
	}
	unix.Close(fd)
	return nil
}

func checkTUN() error {
	f, err := os.OpenFile("/dev/tun", os.O_RDWR, 0)
	if err != nil {
		return &UnavailableError{Userspace, fmt.Sprintf("cannot open /dev/tun (%v)", err), []Backend{Netstack}}
	}
	f.Close()
	return nil
}
