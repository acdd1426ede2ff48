// Package kernel holds the SA-install interface that the IKE code drives and
// the data-plane back ends behind it: the Linux kernel (XFRM over netlink),
// a BSD kernel (PF_KEY v2, "bsdkame") and the in-process ESP engine on a TUN
// device or a gVisor netstack.
//
// This file names the back ends and checks, at start-up, that the chosen one
// can work on this machine, so that the daemon fails early with a message
// that names the flag to use instead.
package kernel

import (
	"fmt"
	"strings"
)

// Backend names a data plane, as pluto's --use-* flags and the
// protostack= setting spell it.
type Backend string

const (
	XFRM      Backend = "xfrm"      // --use-xfrm: Linux kernel ESP, configured over netlink
	BSDKAME   Backend = "bsdkame"   // --use-bsdkame: PF_KEY v2 (FreeBSD, NetBSD, Linux af_key)
	Userspace Backend = "userspace" // --use-userspace: ESP in this process on a kernel TUN device
	Netstack  Backend = "netstack"  // --use-netstack: ESP in this process on a gVisor netstack
)

// Backends lists every back end, in the order --help shows them.
var Backends = []Backend{XFRM, BSDKAME, Userspace, Netstack}

// Flag is the pluto command-line flag that selects b.
func (b Backend) Flag() string { return "--use-" + string(b) }

// ParseBackend reads a protostack= value. "netkey" and "native" are
// Libreswan's old names for XFRM.
func ParseBackend(s string) (Backend, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "xfrm", "netkey", "native":
		return XFRM, nil
	case "bsdkame", "bsd", "kame", "pfkey":
		return BSDKAME, nil
	case "userspace":
		return Userspace, nil
	case "netstack":
		return Netstack, nil
	}
	return "", fmt.Errorf("unknown protostack %q: allowed values are xfrm (netkey), bsdkame, userspace, netstack", s)
}

// UnavailableError says why a back end cannot work here and which flags
// could be used instead.
type UnavailableError struct {
	Backend Backend
	Reason  string    // what was tried and what failed, in words
	Instead []Backend // back ends that do not need what is missing
}

func (e *UnavailableError) Error() string {
	var alts []string
	for _, b := range e.Instead {
		alts = append(alts, b.Flag())
	}
	msg := fmt.Sprintf("%s cannot work here: %s", e.Backend.Flag(), e.Reason)
	switch len(alts) {
	case 0:
	case 1:
		msg += "; use " + alts[0] + " instead"
	default:
		msg += "; use " + strings.Join(alts[:len(alts)-1], ", ") + " or " + alts[len(alts)-1] + " instead"
	}
	return msg
}

// Check reports whether b can work on this machine with this process's
// privileges. It returns nil or an *UnavailableError. The netstack back end
// needs nothing from the kernel and always passes.
func Check(b Backend) error {
	switch b {
	case Netstack:
		return nil
	case XFRM:
		return checkXFRM()
	case BSDKAME:
		return checkPFKEY()
	case Userspace:
		return checkTUN()
	}
	return fmt.Errorf("unknown back end %q", b)
}
