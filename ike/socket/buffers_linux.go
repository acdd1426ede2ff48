package socket

import (
	"net"

	"golang.org/x/sys/unix"
)

// setBuffers sets both socket buffers to n bytes, beyond the sysctl limits
// where this process may (CAP_NET_ADMIN), else as far as they allow.
func setBuffers(c *net.UDPConn, n int) {
	c.SetReadBuffer(n)
	c.SetWriteBuffer(n)
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, n)
	})
}
