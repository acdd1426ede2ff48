package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"io"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"

	"goswan/proposal"
)

// integParams returns the hash, the key length (RFC 4868 §2.1.1: the key
// is as long as the hash output) and the truncated ICV length.
func integParams(id proposal.IntegID) (func() hash.Hash, int, int, bool) {
	switch id {
	case proposal.IntegHMACSHA2256128:
		return sha256.New, 32, 16, true
	case proposal.IntegHMACSHA2384192:
		return sha512.New384, 48, 24, true
	case proposal.IntegHMACSHA2512256:
		return sha512.New, 64, 32, true
	}
	return nil, 0, 0, false
}

type transformKind uint8

const (
	kindAEAD transformKind = iota + 1 // AES-GCM, ChaCha20-Poly1305
	kindCBC                           // AES-CBC + HMAC
	kindNull                          // NULL + HMAC
)

// transform holds the keyed primitives of one SA. Everything in it is
// read-only after newTransform, except the pools, so Seal and Open can run
// on many goroutines at once.
type transform struct {
	kind   transformKind
	ivLen  int // explicit IV carried in the packet
	icvLen int
	align  int // the ciphertext (payload+padding+2) is a multiple of this

	aead cipher.AEAD // kindAEAD
	salt [4]byte     // kindAEAD: the last four octets of KEYMAT (RFC 4106 §8.1, RFC 7634 §2)

	block   cipher.Block // kindCBC: the encryption key
	ivBlock cipher.Block // kindCBC: a random per-SA key; IV = AES(ivKey, seq)

	// macs holds *macState: a keyed HMAC and scratch, one per goroutine
	// at a time. sync.Pool keeps it per P, so steady state allocates nothing.
	macs sync.Pool
}

// macState is the per-call scratch of the CBC/NULL transforms.
type macState struct {
	h   hash.Hash
	sum [64]byte
	hi  [4]byte
	enc cbcMode
	dec cbcMode
}

// cbcMode is the BlockMode that crypto/cipher returns for AES, which can
// be re-keyed with a new IV without allocating (crypto/tls relies on it too).
type cbcMode interface {
	cipher.BlockMode
	SetIV([]byte)
}

func newTransform(cfg *SAConfig) (*transform, error) {
	t := &transform{}
	switch cfg.Encr {
	case proposal.EncrAESGCM16, proposal.EncrChaCha20Poly1305:
		if cfg.Integ != proposal.IntegNone {
			return nil, fmt.Errorf("esp: SPI %#08x: %v is an AEAD and takes no integrity algorithm, got %v", cfg.SPI, cfg.Encr, cfg.Integ)
		}
		k := cfg.EncrKey
		var err error
		if cfg.Encr == proposal.EncrAESGCM16 {
			if len(k) != 16+4 && len(k) != 24+4 && len(k) != 32+4 {
				return nil, fmt.Errorf("esp: SPI %#08x: %v needs 20, 28 or 36 octets of KEYMAT (key then 4-octet salt), got %d", cfg.SPI, cfg.Encr, len(k))
			}
			var b cipher.Block
			if b, err = aes.NewCipher(k[:len(k)-4]); err == nil {
				t.aead, err = cipher.NewGCM(b)
			}
		} else {
			if len(k) != chacha20poly1305.KeySize+4 {
				return nil, fmt.Errorf("esp: SPI %#08x: %v needs 36 octets of KEYMAT (key then 4-octet salt), got %d", cfg.SPI, cfg.Encr, len(k))
			}
			t.aead, err = chacha20poly1305.New(k[:32])
		}
		if err != nil {
			return nil, fmt.Errorf("esp: SPI %#08x: %v: %w", cfg.SPI, cfg.Encr, err)
		}
		copy(t.salt[:], k[len(k)-4:])
		t.kind, t.ivLen, t.icvLen, t.align = kindAEAD, 8, 16, 4
		return t, nil
	case proposal.EncrAESCBC, proposal.EncrNull:
	default:
		return nil, fmt.Errorf("esp: SPI %#08x: encryption transform %v is not supported", cfg.SPI, cfg.Encr)
	}

	newHash, keyLen, icvLen, ok := integParams(cfg.Integ)
	if !ok {
		return nil, fmt.Errorf("esp: SPI %#08x: %v needs an integrity algorithm (proposal.IntegHMACSHA2256128, _384_192 or _512_256), got %v", cfg.SPI, cfg.Encr, cfg.Integ)
	}
	if len(cfg.IntegKey) != keyLen {
		return nil, fmt.Errorf("esp: SPI %#08x: %v needs a %d-octet key, got %d", cfg.SPI, cfg.Integ, keyLen, len(cfg.IntegKey))
	}
	t.icvLen = icvLen
	ikey := append([]byte(nil), cfg.IntegKey...)

	if cfg.Encr == proposal.EncrNull {
		if !cfg.AllowNullEncryption {
			return nil, fmt.Errorf("esp: SPI %#08x: proposal.EncrNull refused: set AllowNullEncryption to ask for it explicitly", cfg.SPI)
		}
		if len(cfg.EncrKey) != 0 {
			return nil, fmt.Errorf("esp: SPI %#08x: proposal.EncrNull takes no key, got %d octets", cfg.SPI, len(cfg.EncrKey))
		}
		t.kind, t.ivLen, t.align = kindNull, 0, 4
		t.macs.New = func() any { return &macState{h: hmac.New(newHash, ikey)} }
		return t, nil
	}

	switch len(cfg.EncrKey) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("esp: SPI %#08x: proposal.EncrAESCBC needs a 16, 24 or 32-octet key, got %d", cfg.SPI, len(cfg.EncrKey))
	}
	var err error
	if t.block, err = aes.NewCipher(cfg.EncrKey); err != nil {
		return nil, err
	}
	var ivKey [16]byte
	r := cfg.Rand
	if r == nil {
		r = rand.Reader
	}
	if _, err := io.ReadFull(r, ivKey[:]); err != nil {
		return nil, fmt.Errorf("esp: SPI %#08x: reading the IV key: %w", cfg.SPI, err)
	}
	if t.ivBlock, err = aes.NewCipher(ivKey[:]); err != nil {
		return nil, err
	}
	var zero [16]byte
	if _, ok := cipher.NewCBCEncrypter(t.block, zero[:]).(cbcMode); !ok {
		return nil, fmt.Errorf("esp: this Go's AES-CBC cannot be re-keyed with a new IV")
	}
	t.kind, t.ivLen, t.align = kindCBC, 16, 16
	blk := t.block
	t.macs.New = func() any {
		return &macState{
			h:   hmac.New(newHash, ikey),
			enc: cipher.NewCBCEncrypter(blk, zero[:]).(cbcMode),
			dec: cipher.NewCBCDecrypter(blk, zero[:]).(cbcMode),
		}
	}
	return t, nil
}
