// Package tun holds the packet devices of the user-space data plane: a
// kernel TUN device (Linux, root or CAP_NET_ADMIN) and a gVisor netstack
// that needs no privilege at all, plus the ways a user reaches an
// unprivileged netstack from the host (a SOCKS5 proxy, port forwards and
// exposed ports).
//
// Both devices move whole IP packets (no link-layer header) in batches, as
// golang.zx2c4.com/wireguard/tun does; Device is the subset of that
// interface the ESP back end needs, so any wireguard tun.Device fits.
package tun

import (
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// Device is a source and sink of IP packets. Read and Write may be called
// from different goroutines at once; two concurrent Reads are not allowed.
type Device interface {
	// Read reads up to len(bufs) packets, each into bufs[i][offset:], and
	// sets sizes[i] to its length; len(sizes) >= len(bufs). It returns the
	// number of packets read. It blocks until at least one is there, and
	// returns an error (os.ErrClosed or one wrapping it, typically) once
	// the device is closed. ErrTooManySegments means n packets were read
	// but more were lost; the caller goes on reading.
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)

	// Write writes the packets bufs[i][offset:]. The device may use the
	// octets before offset (a kernel TUN puts its virtio-net header
	// there, so offset must be at least Headroom) and may change the
	// buffers. It returns the number of packets written.
	Write(bufs [][]byte, offset int) (int, error)

	// MTU returns the largest packet the device reads or takes.
	MTU() (int, error)

	// Name returns the device's name ("go" for a netstack).
	Name() (string, error)

	// BatchSize is the most packets one Read returns or one Write should
	// take; it never changes.
	BatchSize() int

	// Close stops the device; a blocked Read returns an error.
	Close() error
}

// Headroom is the least offset a caller must leave in front of each
// packet for every Device in this package (the virtio-net header of a
// kernel TUN with offloads takes 10 octets).
const Headroom = 16

// ErrTooManySegments is returned by Read when a kernel TUN handed over a
// GSO super-packet that split into more packets than bufs could hold.
var ErrTooManySegments = wgtun.ErrTooManySegments

var _ Device = wgtun.Device(nil)
