package loadgen

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// tcpRTT is the kernel's smoothed RTT of c.
func tcpRTT(c *net.TCPConn) time.Duration {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var us uint32
	raw.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			us = info.Rtt
		}
	})
	return time.Duration(us) * time.Microsecond
}
