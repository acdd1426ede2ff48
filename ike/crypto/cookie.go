package crypto

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"net/netip"
	"sync"
)

// CookieSize is the length of the cookies a CookieJar makes: a 4-octet
// secret version and a SHA-256 hash (RFC 7296 §2.6 allows 1 to 64).
const CookieSize = 4 + sha256.Size

// CookieJar makes and checks the stateless cookies of RFC 7296 §2.6:
//
//	Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)
//
// It keeps the current secret and the one before, so a cookie handed out
// just before Rotate is still accepted; rotate it every few minutes. A
// CookieJar is safe for concurrent use.
type CookieJar struct {
	mu        sync.RWMutex
	rand      io.Reader
	cur, prev cookieSecret
	pool      sync.Pool // hash.Hash
}

type cookieSecret struct {
	version uint32
	key     [32]byte
	valid   bool
}

// NewCookieJar returns a jar with a fresh secret from rand
// (crypto/rand.Reader when nil).
func NewCookieJar(r io.Reader) (*CookieJar, error) {
	j := &CookieJar{rand: randOrDefault(r)}
	j.pool.New = func() any { return sha256.New() }
	if err := j.Rotate(); err != nil {
		return nil, err
	}
	return j, nil
}

// Rotate makes a new current secret; the current one becomes the previous
// one and the previous one is forgotten.
func (j *CookieJar) Rotate() error {
	var s cookieSecret
	if _, err := io.ReadFull(j.rand, s.key[:]); err != nil {
		return fmt.Errorf("ike/crypto: new cookie secret: %w", err)
	}
	s.valid = true
	j.mu.Lock()
	s.version = j.cur.version + 1
	j.prev = j.cur
	j.cur = s
	j.mu.Unlock()
	return nil
}

func (j *CookieJar) hash(dst []byte, s *cookieSecret, ni []byte, ipi netip.Addr, spii [8]byte) []byte {
	h := j.pool.Get().(hash.Hash)
	h.Reset()
	h.Write(ni)
	ip := ipi.Unmap().AsSlice()
	h.Write(ip)
	h.Write(spii[:])
	h.Write(s.key[:])
	dst = h.Sum(dst)
	j.pool.Put(h)
	return dst
}

// Make appends the cookie for an IKE_SA_INIT request with nonce ni from
// address ipi and initiator SPI spii to dst.
func (j *CookieJar) Make(dst, ni []byte, ipi netip.Addr, spii [8]byte) []byte {
	j.mu.RLock()
	s := j.cur
	j.mu.RUnlock()
	dst = binary.BigEndian.AppendUint32(dst, s.version)
	return j.hash(dst, &s, ni, ipi, spii)
}

// Verify reports whether cookie was made by this jar, under the current or
// the previous secret, for the same ni, ipi and spii.
func (j *CookieJar) Verify(cookie, ni []byte, ipi netip.Addr, spii [8]byte) bool {
	if len(cookie) != CookieSize {
		return false
	}
	v := binary.BigEndian.Uint32(cookie)
	j.mu.RLock()
	var s cookieSecret
	switch {
	case j.cur.valid && j.cur.version == v:
		s = j.cur
	case j.prev.valid && j.prev.version == v:
		s = j.prev
	}
	j.mu.RUnlock()
	if !s.valid {
		return false
	}
	var b [sha256.Size]byte
	want := j.hash(b[:0], &s, ni, ipi, spii)
	return subtle.ConstantTimeCompare(want, cookie[4:]) == 1
}
