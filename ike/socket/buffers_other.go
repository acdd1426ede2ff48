//go:build !linux

package socket

import "net"

// setBuffers sets both socket buffers to n bytes as far as the system
// allows.
func setBuffers(c *net.UDPConn, n int) {
	c.SetReadBuffer(n)
	c.SetWriteBuffer(n)
}
