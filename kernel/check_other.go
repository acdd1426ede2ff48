//go:build !linux && !freebsd && !netbsd && !openbsd && !darwin

package kernel

// DefaultBackend on systems with no kernel IPsec interface we drive: the
// netstack needs nothing from the kernel.
const DefaultBackend = Netstack

func checkXFRM() error {
	return &UnavailableError{XFRM, "XFRM is Linux's interface and this is not Linux", []Backend{Netstack}}
}

func checkPFKEY() error {
	return &UnavailableError{BSDKAME, "PF_KEY is not supported on this system", []Backend{Netstack}}
}

func checkTUN() error {
	return &UnavailableError{Userspace, "TUN devices are not supported on this system", []Backend{Netstack}}
}
