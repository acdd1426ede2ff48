package ike

// IKE message fragmentation (RFC 7383). When both ends announced
// IKEV2_FRAGMENTATION_SUPPORTED in IKE_SA_INIT, a protected message
// (IKE_AUTH and later) whose datagram would reach Libreswan's limit is
// sent at once as SKF fragments, each encrypted and authenticated on its
// own with the IKE SA's keys. The limit is Libreswan's: 576 - 28 - 24 =
// 524 octets for IPv4 and 1280 - 48 - 40 = 1192 for IPv6, counting the
// non-ESP marker on the NAT-T port. A retransmission sends every
// fragment again. Reassembly keeps one message per IKE SA, at most
// maxFragments fragments and maxReassembly octets of plaintext, for at
// most the conn's retransmit-timeout.

import (
	"bytes"
	"fmt"
	"time"

	"goswan/ike/message"
)

const (
	fragLimitIPv4 = 548 - 24  // Libreswan ISAKMP_V2_FRAG_MAXLEN_IPv4
	fragLimitIPv6 = 1232 - 40 // Libreswan ISAKMP_V2_FRAG_MAXLEN_IPv6
	maxFragments  = 32        // Libreswan MAX_IKE_FRAGMENTS
	maxReassembly = 64 << 10
)

// reassembly collects the fragments of one message.
type reassembly struct {
	msgid    uint32
	response bool
	total    uint16
	first    message.PayloadType
	parts    [][]byte
	got      int
	size     int
	started  time.Time
}

// fragLimit is the largest datagram sa sends unfragmented (and the size
// of its fragments), without the non-ESP marker.
func (w *worker) fragLimit(sa *ikeSA) int {
	n := fragLimitIPv4
	if sa.remote.Addr().Is6() && !sa.remote.Addr().Is4In6() {
		n = fragLimitIPv6
	}
	if w.e.fragSize > 0 {
		n = w.e.fragSize
	}
	if int(sa.local.Port()) == w.e.o.NATIKEPort {
		n -= 4
	}
	return n
}

// sealMsg builds a protected message of sa: one datagram, or its SKF
// fragments when fragmentation was negotiated and the message is too
// large for one.
func (w *worker) sealMsg(sa *ikeSA, exch message.ExchangeType, response bool, msgid uint32, inner []message.Payload) ([][]byte, error) {
	b, err := w.seal(sa, exch, response, msgid, inner)
	if err != nil {
		return nil, err
	}
	limit := w.fragLimit(sa)
	if !sa.fragPeer || !sa.conn.fragmentation || len(b) < limit {
		return [][]byte{b}, nil
	}
	first, pt, err := message.AppendPayloads(nil, inner)
	if err != nil {
		return nil, err
	}
	flags := message.Flags(0)
	if sa.initiator {
		flags |= message.FlagInitiator
	}
	if response {
		flags |= message.FlagResponse
	}
	// A fragment is the header, the SKF header with number and total,
	// and the sealed chunk.
	avail := limit - message.HeaderLen - message.GenericPayloadHeaderLen - 4
	chunk := avail - sa.skOut.Overhead()
	for chunk > 0 && sa.skOut.SealedSize(chunk) > avail {
		chunk--
	}
	if chunk < 16 {
		return nil, fmt.Errorf("fragment size %d leaves no room for data", limit)
	}
	total := (len(pt) + chunk - 1) / chunk
	if total > maxFragments {
		return nil, fmt.Errorf("a %d-octet message needs %d fragments of %d, more than %d", len(pt), total, chunk, maxFragments)
	}
	out := make([][]byte, 0, total)
	for i := 0; i < total; i++ {
		part := pt[i*chunk : min((i+1)*chunk, len(pt))]
		f := &message.EncryptedFragment{Number: uint16(i + 1), Total: uint16(total)}
		if i == 0 {
			f.InnerFirst = first
		}
		m := message.Message{SPIi: sa.spii, SPIr: sa.spir, Exchange: exch, Flags: flags, MessageID: msgid,
			Payloads: []message.Payload{f}}
		n := sa.skOut.SealedSize(len(part))
		d := make([]byte, 0, message.HeaderLen+message.GenericPayloadHeaderLen+4+n)
		d, err = m.AppendAssociatedData(d, n)
		if err != nil {
			return nil, err
		}
		if d, err = sa.skOut.Encrypt(d, d, part); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	clear(pt)
	return out, nil
}

// addFragment verifies and keeps one fragment of the message msgid. When
// the message is complete it returns its inner plaintext and first
// payload type with done set.
func (w *worker) addFragment(sa *ikeSA, b []byte, f *message.EncryptedFragment, response bool, msgid uint32) (pt []byte, first message.PayloadType, done bool) {
	e := w.e
	if !sa.fragPeer || !sa.conn.fragmentation || f.Total > maxFragments {
		e.drop(dropFragment)
		return nil, 0, false
	}
	aad := b[:len(b)-len(f.Body)]
	plain, err := sa.skIn.Decrypt(nil, aad, f.Body)
	if err != nil {
		e.drop(dropIntegrity)
		return nil, 0, false
	}
	ra := sa.reasm
	if ra != nil && (ra.msgid != msgid || ra.response != response || ra.total != f.Total) {
		ra = nil // a newer message, or the sender fragmented it again differently
	}
	if ra == nil {
		ra = &reassembly{msgid: msgid, response: response, total: f.Total, parts: make([][]byte, f.Total), started: e.now()}
		sa.reasm = ra
	}
	i := int(f.Number) - 1
	if ra.parts[i] != nil {
		return nil, 0, false // a duplicate
	}
	if ra.size+len(plain) > maxReassembly {
		sa.reasm = nil
		e.drop(dropFragment)
		return nil, 0, false
	}
	ra.parts[i] = plain
	ra.got++
	ra.size += len(plain)
	if f.Number == 1 {
		ra.first = f.InnerFirst
	}
	if ra.got < int(ra.total) {
		return nil, 0, false
	}
	sa.reasm = nil
	return bytes.Join(ra.parts, nil), ra.first, true
}
