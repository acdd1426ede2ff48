package crypto

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"

	"goswan/proposal"
)

// hmacState is HMAC (RFC 2104) over a hash whose two hash states and pads
// are kept between messages, so that keying, re-keying and each MAC cost
// no allocation. crypto/hmac would need a fresh hmac.New for every key.
type hmacState struct {
	inner, outer hash.Hash
	ipad, opad   []byte // block-sized
	scratch      []byte // inner digest, hash-sized
	long         []byte // copy of an over-long key, so the caller's does not escape
}

func newHMACState(newHash func() hash.Hash) *hmacState {
	in, out := newHash(), newHash()
	bs := in.BlockSize()
	buf := make([]byte, 2*bs+in.Size())
	return &hmacState{inner: in, outer: out, ipad: buf[:bs:bs], opad: buf[bs : 2*bs : 2*bs], scratch: buf[2*bs:]}
}

// setKey keys the HMAC and starts a message.
func (h *hmacState) setKey(key []byte) {
	bs := len(h.ipad)
	clear(h.ipad)
	if len(key) > bs {
		// A key longer than the block is hashed first (RFC 2104 §2).
		h.long = append(h.long[:0], key...)
		h.outer.Reset()
		h.outer.Write(h.long)
		h.outer.Sum(h.ipad[:0])
		clear(h.long)
	} else {
		copy(h.ipad, key)
	}
	copy(h.opad, h.ipad)
	for i := range h.ipad {
		h.ipad[i] ^= 0x36
		h.opad[i] ^= 0x5c
	}
	h.reset()
}

// reset starts a new message under the current key.
func (h *hmacState) reset() {
	h.inner.Reset()
	h.inner.Write(h.ipad)
}

func (h *hmacState) write(p []byte) { h.inner.Write(p) }

// sum appends the MAC of the message to dst and starts a new message.
func (h *hmacState) sum(dst []byte) []byte {
	in := h.inner.Sum(h.scratch[:0])
	h.outer.Reset()
	h.outer.Write(h.opad)
	h.outer.Write(in)
	dst = h.outer.Sum(dst)
	h.reset()
	return dst
}

// wipe clears the key material held by the state.
func (h *hmacState) wipe() {
	clear(h.ipad)
	clear(h.opad)
	clear(h.scratch)
	clear(h.long[:cap(h.long)])
	h.inner.Reset()
	h.outer.Reset()
}

func hashFor(id proposal.PRFID) func() hash.Hash {
	switch id {
	case proposal.PRFHMACSHA1:
		return sha1.New
	case proposal.PRFHMACSHA2256:
		return sha256.New
	case proposal.PRFHMACSHA2384:
		return sha512.New384
	case proposal.PRFHMACSHA2512:
		return sha512.New
	}
	return nil
}

// PRF is an IKEv2 pseudorandom function (RFC 7296 §2.13, RFC 4868 §2.1):
// HMAC with the PRF's hash and untruncated output. A PRF is keyed with
// SetKey and may be re-keyed any number of times; it reuses its HMAC state,
// so keying and computing allocate nothing. A PRF is not safe for
// concurrent use.
//
// The incremental form is SetKey (or Reset), any number of Write, then Sum.
type PRF struct {
	id  proposal.PRFID
	h   *hmacState
	t   []byte  // prf+ scratch: one output block
	ctr [1]byte // prf+ counter octet
	// key is scratch for keys built from parts (Ni | Nr, the inner
	// AUTH key) and mac for intermediate outputs; both live here because
	// whatever reaches a hash.Hash escapes to the heap.
	key []byte
	mac []byte
}

// ErrPRFPlusTooLong is returned when more than 255 PRF outputs of key
// material are asked of prf+ (RFC 7296 §2.13).
var ErrPRFPlusTooLong = errors.New("ike/crypto: prf+ limited to 255 iterations")

// NewPRF returns the PRF for id, unkeyed (keyed with the empty key). The
// HMAC-SHA1 PRF is accepted for recognition of old peers; proposals should
// prefer the SHA-2 ones.
func NewPRF(id proposal.PRFID) (*PRF, error) {
	nh := hashFor(id)
	if nh == nil {
		return nil, fmt.Errorf("ike/crypto: unsupported PRF %v (transform ID %d)", id, uint16(id))
	}
	p := &PRF{id: id, h: newHMACState(nh)}
	size := p.h.inner.Size()
	p.t = make([]byte, 0, size)
	p.mac = make([]byte, 0, size)
	p.h.setKey(nil)
	return p, nil
}

// ID returns the PRF's transform identifier.
func (p *PRF) ID() proposal.PRFID { return p.id }

// Size is the PRF's output size in bytes, which is also its preferred key
// size (RFC 7296 §2.13).
func (p *PRF) Size() int { return p.h.inner.Size() }

// SetKey keys the PRF and starts a new computation.
func (p *PRF) SetKey(key []byte) { p.h.setKey(key) }

// Reset starts a new computation under the current key.
func (p *PRF) Reset() { p.h.reset() }

// Write adds data to the current computation. It never fails.
func (p *PRF) Write(data []byte) (int, error) {
	p.h.write(data)
	return len(data), nil
}

// Sum appends the PRF output of the data written since SetKey or Reset to
// dst, and starts a new computation under the same key.
func (p *PRF) Sum(dst []byte) []byte { return p.h.sum(dst) }

// Compute appends prf(key, data[0] | data[1] | ...) to dst. The PRF stays
// keyed with key.
func (p *PRF) Compute(dst, key []byte, data ...[]byte) []byte {
	p.h.setKey(key)
	for _, d := range data {
		p.h.write(d)
	}
	return p.h.sum(dst)
}

// Plus appends n bytes of prf+(key, seed[0] | seed[1] | ...) (RFC 7296
// §2.13) to dst:
//
//	prf+ (K,S) = T1 | T2 | T3 | T4 | ...
//	T1 = prf (K, S | 0x01)
//	T2 = prf (K, T1 | S | 0x02)
//
// It fails with ErrPRFPlusTooLong when n needs more than 255 iterations.
// The PRF stays keyed with key.
func (p *PRF) Plus(dst []byte, n int, key []byte, seed ...[]byte) ([]byte, error) {
	size := p.Size()
	if n < 0 || n > 255*size {
		return dst, fmt.Errorf("%w: %d bytes asked of %v, at most %d", ErrPRFPlusTooLong, n, p.id, 255*size)
	}
	p.h.setKey(key)
	t := p.t[:0]
	for i := 1; n > 0; i++ {
		p.h.write(t)
		for _, s := range seed {
			p.h.write(s)
		}
		p.ctr[0] = byte(i)
		p.h.write(p.ctr[:])
		t = p.h.sum(t[:0])
		k := min(n, size)
		dst = append(dst, t[:k]...)
		n -= k
	}
	clear(t)
	return dst, nil
}

// Wipe clears the key material the PRF holds. The PRF may be keyed again.
func (p *PRF) Wipe() {
	p.h.wipe()
	clear(p.t[:cap(p.t)])
	clear(p.key[:cap(p.key)])
	clear(p.mac[:cap(p.mac)])
}
