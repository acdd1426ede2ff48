// Package xfrm is the Linux kernel back end of the SA-install interface
// (kernel.IPsec): it installs SAs and policies in the kernel's XFRM tables
// over NETLINK_XFRM and turns the kernel's ACQUIRE and EXPIRE messages into
// kernel.Events, as Libreswan's kernel_xfrm.c and strongSwan's
// kernel-netlink plugin do. ESP itself then runs in the kernel.
//
// The messages are encoded by hand (msg.go, state.go) rather
// than through vishvananda/netlink, which lacks the ACQUIRE parser, port
// masks, ESN replay bitmaps and the kernel's extended error messages.
//
// Ownership. Everything this back end installs carries goswan's reqids
// (kernel.OurReqID) or, for policies with no template, a tag in the
// policy's byte limits (ownerTag); Flush removes exactly that and never
// what another IKE daemon installed.
//
// Only Linux has XFRM: elsewhere New and the socket helpers return an
// error that says so.
package xfrm

import (
	"fmt"
	"net/netip"
	"syscall"

	"goswan/kernel"
	"goswan/proposal"
)

// Config configures a Backend.
type Config struct {
	// Logf, if set, receives one line per notable event (an event
	// dropped, a message that could not be parsed, what Flush removed).
	Logf func(format string, args ...any)

	// EventBuffer is the capacity of the Events channel; 0 means 256.
	// Events that find it full are dropped and counted (Dropped).
	EventBuffer int

	// AllReqIDs delivers acquires and expiries of every reqid, not only
	// goswan's (kernel.OurReqID). Tests and tools use it; the daemon
	// leaves it false so that it never reacts to another daemon's
	// policies.
	AllReqIDs bool
}

// ownerTag marks the policies goswan installs: it is written into the
// policy's soft byte limit, which the kernel stores and reports but does
// not enforce for policies (only the *_expires_seconds of a policy are
// timed). A policy with no template has no reqid, so this is how Flush
// finds goswan's bypass and block policies after a crash. "goswan" in
// ASCII, followed by 0xffff: some 7.4e18 bytes, never reached anyway.
const ownerTag uint64 = 0x676f7377616effff

// PriorityKind is the first and most significant field of a Libreswan
// policy priority.
type PriorityKind uint8

const (
	PriorityStatic                 PriorityKind = 1 // a configured connection
	PriorityOpportunistic          PriorityKind = 2 // opportunistic encryption
	PriorityOpportunisticAnonymous PriorityKind = 3 // OE with authby=null
)

// Priority computes a policy priority as Libreswan's pluto does
// (calculate_kernel_priority): lower wins, and more specific selectors
// get lower values, so that a narrow policy beats a wide one whatever the
// order they were installed in. From the most significant bits down:
//
//	kind (2 bits) | wildcard ports, 0-2 (2) | wildcard protocol (1) |
//	128 - source prefix length (8) | 128 - destination prefix length (8) |
//	not an instance (1)
//
// instance is true for a connection instantiated from a template (a road
// warrior's), which must win over its template.
func Priority(sel kernel.Selector, kind PriorityKind, instance bool) uint32 {
	var p uint32 = uint32(kind) & 3
	ports := uint32(0)
	if wildPort(sel.SrcPorts) || sel.Proto == 0 {
		ports++
	}
	if wildPort(sel.DstPorts) || sel.Proto == 0 {
		ports++
	}
	p = p<<2 | ports
	proto := uint32(0)
	if sel.Proto == 0 {
		proto = 1
	}
	p = p<<1 | proto
	p = p<<8 | uint32(128-prefixBits(sel.Src))
	p = p<<8 | uint32(128-prefixBits(sel.Dst))
	inst := uint32(1)
	if instance {
		inst = 0
	}
	return p<<1 | inst
}

func wildPort(r kernel.PortRange) bool {
	return r == (kernel.PortRange{}) || r == (kernel.PortRange{Lo: 0, Hi: 65535})
}

func prefixBits(p netip.Prefix) int {
	if !p.IsValid() {
		return 0
	}
	return unmapPrefix(p).Bits()
}

// encrAlgo names the kernel's transform for an ESP encryption algorithm
// and checks the key length. AEAD keys hold the salt at their end, as
// KEYMAT gives them (RFC 4106 §8.1, RFC 7634 §2).
func encrAlgo(id proposal.EncrID, key []byte) (name string, aead bool, icvBits uint32, err error) {
	n := len(key)
	switch id {
	case proposal.EncrAESGCM8, proposal.EncrAESGCM12, proposal.EncrAESGCM16:
		if n != 20 && n != 28 && n != 36 {
			return "", false, 0, fmt.Errorf("%v: key of %d bytes, want 16, 24 or 32 and a 4-byte salt", id, n)
		}
		return "rfc4106(gcm(aes))", true, uint32(id.ICVSize() * 8), nil
	case proposal.EncrChaCha20Poly1305:
		if n != 36 {
			return "", false, 0, fmt.Errorf("%v: key of %d bytes, want 32 and a 4-byte salt", id, n)
		}
		return "rfc7539esp(chacha20,poly1305)", true, 128, nil
	case proposal.EncrAESCBC:
		if n != 16 && n != 24 && n != 32 {
			return "", false, 0, fmt.Errorf("%v: key of %d bytes, want 16, 24 or 32", id, n)
		}
		return "cbc(aes)", false, 0, nil
	case proposal.EncrAESCTR:
		if n != 20 && n != 28 && n != 36 {
			return "", false, 0, fmt.Errorf("%v: key of %d bytes, want 16, 24 or 32 and a 4-byte nonce", id, n)
		}
		return "rfc3686(ctr(aes))", false, 0, nil
	case proposal.Encr3DES:
		if n != 24 {
			return "", false, 0, fmt.Errorf("%v: key of %d bytes, want 24", id, n)
		}
		return "cbc(des3_ede)", false, 0, nil
	case proposal.EncrNull:
		if n != 0 {
			return "", false, 0, fmt.Errorf("%v: key of %d bytes, want none", id, n)
		}
		return "ecb(cipher_null)", false, 0, nil
	}
	return "", false, 0, fmt.Errorf("encryption algorithm %v has no XFRM transform here", id)
}

// integAlgo names the kernel's transform for an integrity algorithm and
// its truncation (RFC 4868 §2.3: half the hash).
func integAlgo(id proposal.IntegID, key []byte) (name string, truncBits uint32, err error) {
	var want int
	switch id {
	case proposal.IntegHMACSHA196:
		name, truncBits, want = "hmac(sha1)", 96, 20
	case proposal.IntegHMACSHA2256128:
		name, truncBits, want = "hmac(sha256)", 128, 32
	case proposal.IntegHMACSHA2384192:
		name, truncBits, want = "hmac(sha384)", 192, 48
	case proposal.IntegHMACSHA2512256:
		name, truncBits, want = "hmac(sha512)", 256, 64
	default:
		return "", 0, fmt.Errorf("integrity algorithm %v has no XFRM transform here", id)
	}
	if len(key) != want {
		return "", 0, fmt.Errorf("%v: key of %d bytes, want %d", id, len(key), want)
	}
	return name, truncBits, nil
}

// NetlinkError is the kernel's refusal of a request. Errors of this
// package wrap it, so errors.Is(err, syscall.ENOENT) and the like work.
type NetlinkError struct {
	Errno syscall.Errno
	Msg   string // the extended ACK's message, if the kernel gave one
}

func (e *NetlinkError) Error() string {
	if e.Msg != "" {
		return fmt.Sprintf("%s (%s)", e.Msg, errnoName(e.Errno))
	}
	return fmt.Sprintf("%v (%s)", e.Errno.Error(), errnoName(e.Errno))
}

func (e *NetlinkError) Unwrap() error { return e.Errno }
