//go:build !linux

package loadgen

import (
	"net"
	"time"
)

// tcpRTT is unknown where TCP_INFO is not Linux's: 0.
func tcpRTT(c *net.TCPConn) time.Duration { return 0 }
