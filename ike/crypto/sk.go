package crypto

// SK payload protection (RFC 7296 §3.14, RFC 5282, RFC 7634).
//
// The body of an Encrypted payload (and of each Encrypted Fragment, RFC
// 7383) after its generic payload header is
//
//	+---------------+---------------------------+---------------------+
//	| IV            | encrypted: inner payloads | Integrity Check     |
//	|               | | Padding | Pad Length    | Value (ICV)         |
//	+---------------+---------------------------+---------------------+
//
// The associated data, aad below, is every byte of the message before the
// IV: the IKE header (with its final Length) and the SK payload's generic
// header (with its final Payload Length). AEAD ciphers take it as AAD
// (RFC 5282 §5.1); with AES-CBC the ICV is the truncated HMAC of
// aad | IV | ciphertext, which is exactly "from the first octet of the IKE
// header through the last octet of the encrypted content". The caller
// learns the final lengths from SealedSize before building aad.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"golang.org/x/crypto/chacha20poly1305"

	"goswan/proposal"
)

// Errors of Decrypt. Both say only that the body is not acceptable, as an
// attacker who learns more from the answer learns too much.
var (
	// ErrAuthFailed: the ICV or AEAD tag did not verify.
	ErrAuthFailed = errors.New("ike/crypto: SK payload integrity check failed")
	// ErrMalformed: the body is too short, not a whole number of cipher
	// blocks, or its Pad Length runs past the decrypted data.
	ErrMalformed = errors.New("ike/crypto: malformed SK payload body")
	// ErrIVExhausted: the AEAD IV counter of this SA direction is used up;
	// the IKE SA must be rekeyed (RFC 5282 §3 forbids IV reuse).
	ErrIVExhausted = errors.New("ike/crypto: AEAD IV counter exhausted, rekey the IKE SA")
)

// SK protects and unprotects Encrypted payloads for one direction of one
// IKE SA: build one with the initiator's keys (SK_ei, SK_ai) and one with
// the responder's (SK_er, SK_ar). An SK is not safe for concurrent use.
type SK struct {
	encr      proposal.EncrID
	integ     proposal.IntegID
	ivSize    int
	icvSize   int
	blockSize int

	block cipher.Block // AES-CBC
	mac   *hmacState   // AES-CBC
	macB  []byte       // untruncated MAC scratch

	aead  cipher.AEAD // AES-GCM, ChaCha20-Poly1305
	salt  [4]byte
	nonce [12]byte // salt | IV (RFC 5282 §4, RFC 7634 §2)
	ivCtr uint64   // next AEAD IV; all ones once exhausted
	used  bool     // ivCtr wrapped

	rand io.Reader // CBC IVs
}

// NewSK makes the protection for one direction from the suite's encryption
// algorithm and key length and integrity algorithm. encKey is SK_ei or
// SK_er (for AEAD, ending in the 4-byte salt) and integKey SK_ai or SK_ar
// (nil for AEAD). The keys are copied into the cipher state; the caller
// may wipe its copies.
func NewSK(s Suite, encKey, integKey []byte) (*SK, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if len(encKey) != s.EncrKeySize() {
		return nil, fmt.Errorf("ike/crypto: %v-%d needs %d bytes of key material, got %d", s.Encr, mustBits(s), s.EncrKeySize(), len(encKey))
	}
	sk := &SK{encr: s.Encr, integ: s.Integ, ivSize: s.Encr.IVSize(), blockSize: s.Encr.BlockSize(), rand: rand.Reader}
	switch s.Encr {
	case proposal.EncrAESCBC:
		b, err := aes.NewCipher(encKey)
		if err != nil {
			return nil, err
		}
		if len(integKey) != s.Integ.KeySize() {
			return nil, fmt.Errorf("ike/crypto: %v needs a %d-byte key, got %d", s.Integ, s.Integ.KeySize(), len(integKey))
		}
		var nh func() hash.Hash
		switch s.Integ {
		case proposal.IntegHMACSHA196:
			nh = sha1.New
		case proposal.IntegHMACSHA2256128:
			nh = sha256.New
		case proposal.IntegHMACSHA2384192:
			nh = sha512.New384
		case proposal.IntegHMACSHA2512256:
			nh = sha512.New
		default:
			return nil, fmt.Errorf("ike/crypto: unsupported integrity algorithm %v", s.Integ)
		}
		sk.block = b
		sk.mac = newHMACState(nh)
		sk.mac.setKey(integKey)
		sk.macB = make([]byte, 0, sk.mac.inner.Size())
		sk.icvSize = s.Integ.ICVSize()
	case proposal.EncrAESGCM8:
		// crypto/cipher's GCM takes 12- to 16-octet tags only.
		return nil, fmt.Errorf("ike/crypto: %v (8-octet ICV) is not supported", s.Encr)
	case proposal.EncrAESGCM12, proposal.EncrAESGCM16:
		key, salt := encKey[:len(encKey)-4], encKey[len(encKey)-4:]
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		a, err := cipher.NewGCMWithTagSize(b, s.Encr.ICVSize())
		if err != nil {
			return nil, err
		}
		sk.aead = a
		copy(sk.salt[:], salt)
		copy(sk.nonce[:4], salt)
		sk.icvSize = s.Encr.ICVSize()
	case proposal.EncrChaCha20Poly1305:
		key, salt := encKey[:32], encKey[32:]
		a, err := chacha20poly1305.New(key)
		if err != nil {
			return nil, err
		}
		sk.aead = a
		copy(sk.salt[:], salt)
		copy(sk.nonce[:4], salt)
		sk.icvSize = chacha20poly1305.Overhead
	default:
		return nil, fmt.Errorf("ike/crypto: %v cannot protect IKE messages", s.Encr)
	}
	return sk, nil
}

func mustBits(s Suite) int { b, _ := s.keyBits(); return b }

// SetRand replaces the source of AES-CBC IVs (crypto/rand.Reader by
// default). It is meant for tests.
func (sk *SK) SetRand(r io.Reader) { sk.rand = r }

// IVSize is the length of the IV at the start of the body.
func (sk *SK) IVSize() int { return sk.ivSize }

// ICVSize is the length of the ICV or AEAD tag at the end of the body.
func (sk *SK) ICVSize() int { return sk.icvSize }

// BlockSize is the cipher's padding block (16 for AES-CBC, 1 for AEAD).
func (sk *SK) BlockSize() int { return sk.blockSize }

// Overhead is the most that protection adds to the inner payloads: IV,
// ICV, the Pad Length octet and the largest padding. A caller that splits
// a message into RFC 7383 fragments subtracts it (and the headers) from
// the fragment size.
func (sk *SK) Overhead() int { return sk.ivSize + sk.icvSize + 1 + sk.blockSize - 1 }

// SealedSize is the exact body length (IV through ICV) that Encrypt
// produces for n bytes of inner payloads. Add the 4-byte generic payload
// header for the SK Payload Length.
func (sk *SK) SealedSize(n int) int {
	return sk.ivSize + sk.paddedSize(n) + sk.icvSize
}

// paddedSize is the encrypted length: n plus padding plus the Pad Length
// octet, rounded up to the block. AEAD ciphers pad nothing (RFC 5282 §3).
func (sk *SK) paddedSize(n int) int {
	bs := sk.blockSize
	return (n + 1 + bs - 1) / bs * bs
}

// Encrypt appends the body of an Encrypted payload carrying plaintext (the
// inner payloads) to dst: IV | ciphertext | ICV, SealedSize(len(plaintext))
// bytes. aad is the message from the IKE header through the SK payload's
// generic header, with their final lengths. dst must not overlap aad or
// plaintext.
func (sk *SK) Encrypt(dst, aad, plaintext []byte) ([]byte, error) {
	n := sk.SealedSize(len(plaintext))
	start := len(dst)
	dst = grow(dst, n)
	out := dst[start : start+n]
	padded := sk.paddedSize(len(plaintext))
	body := out[sk.ivSize : sk.ivSize+padded]
	copy(body, plaintext)
	padLen := padded - len(plaintext) - 1
	clear(body[len(plaintext):])
	body[padded-1] = byte(padLen)

	if err := sk.protect(out, aad, padded); err != nil {
		return dst[:start], err
	}
	return dst, nil
}

// protect fills in the IV, encrypts out[ivSize:ivSize+padded] in place and
// writes the ICV after it. out is exactly SealedSize long.
func (sk *SK) protect(out, aad []byte, padded int) error {
	iv := out[:sk.ivSize]
	body := out[sk.ivSize : sk.ivSize+padded]
	if sk.aead != nil {
		if sk.used {
			return ErrIVExhausted
		}
		binary.BigEndian.PutUint64(iv, sk.ivCtr)
		sk.ivCtr++
		if sk.ivCtr == 0 {
			sk.used = true
		}
		copy(sk.nonce[4:], iv)
		sk.aead.Seal(body[:0], sk.nonce[:], body, aad)
		return nil
	}
	if _, err := io.ReadFull(sk.rand, iv); err != nil {
		return fmt.Errorf("ike/crypto: reading IV: %w", err)
	}
	cipher.NewCBCEncrypter(sk.block, iv).CryptBlocks(body, body)
	sk.mac.reset()
	sk.mac.write(aad)
	sk.mac.write(out[:sk.ivSize+padded])
	sk.macB = sk.mac.sum(sk.macB[:0])
	copy(out[sk.ivSize+padded:], sk.macB[:sk.icvSize])
	return nil
}

// Decrypt checks and decrypts the body of an Encrypted payload (IV through
// ICV) and appends the inner payloads, without padding and Pad Length, to
// dst. aad is the message bytes before the IV, as for Encrypt. The ICV (or
// AEAD tag) is checked before anything else is looked at; any failure
// returns ErrAuthFailed or ErrMalformed. dst must not overlap body.
func (sk *SK) Decrypt(dst, aad, body []byte) ([]byte, error) {
	minLen := sk.ivSize + sk.blockSize + sk.icvSize // at least the Pad Length block
	if len(body) < minLen {
		return dst, ErrMalformed
	}
	iv := body[:sk.ivSize]
	ct := body[sk.ivSize : len(body)-sk.icvSize]
	icv := body[len(body)-sk.icvSize:]
	start := len(dst)

	if sk.aead != nil {
		copy(sk.nonce[4:], iv)
		out, err := sk.aead.Open(dst, sk.nonce[:], body[sk.ivSize:], aad)
		if err != nil {
			return dst, ErrAuthFailed
		}
		dst = out
	} else {
		sk.mac.reset()
		sk.mac.write(aad)
		sk.mac.write(body[:len(body)-sk.icvSize])
		sk.macB = sk.mac.sum(sk.macB[:0])
		if subtle.ConstantTimeCompare(sk.macB[:sk.icvSize], icv) != 1 {
			return dst, ErrAuthFailed
		}
		if len(ct)%sk.blockSize != 0 {
			return dst, ErrMalformed
		}
		dst = grow(dst, len(ct))
		cipher.NewCBCDecrypter(sk.block, iv).CryptBlocks(dst[start:], ct)
	}
	pt := dst[start:]
	padLen := int(pt[len(pt)-1])
	if padLen+1 > len(pt) {
		clear(pt)
		return dst[:start], ErrMalformed
	}
	return dst[:len(dst)-padLen-1], nil
}

// grow extends b by n bytes, reallocating only when its capacity is short.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}
