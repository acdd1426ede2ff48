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
)

// EncrID is an IKEv2 encryption transform identifier (Transform Type 1),
// with the IANA numbers; it has the same values as proposal.EncrID.
type EncrID uint16

// The encryption transforms the engine implements.
const (
	ENCR_NULL              EncrID = 11 // RFC 2410, only with an integrity algorithm and AllowNullEncryption
	ENCR_AES_CBC           EncrID = 12 // RFC 3602
	ENCR_AES_GCM_16        EncrID = 20 // RFC 4106, 16-octet ICV
	ENCR_CHACHA20_POLY1305 EncrID = 28 // RFC 7634
)

func (e EncrID) String() string {
	switch e {
	case ENCR_NULL:
		return "ENCR_NULL"
	case ENCR_AES_CBC:
		return "ENCR_AES_CBC"
	case ENCR_AES_GCM_16:
		return "ENCR_AES_GCM_16"
	case ENCR_CHACHA20_POLY1305:
		return "ENCR_CHACHA20_POLY1305"
	}
	return fmt.Sprintf("ENCR_%d", uint16(e))
}

// IntegID is an IKEv2 integrity transform identifier (Transform Type 3),
// with the IANA numbers; it has the same values as proposal.IntegID.
type IntegID uint16

// The integrity transforms the engine implements (RFC 4868).
const (
	AUTH_NONE              IntegID = 0
	AUTH_HMAC_SHA2_256_128 IntegID = 12
	AUTH_HMAC_SHA2_384_192 IntegID = 13
	AUTH_HMAC_SHA2_512_256 IntegID = 14
)

func (i IntegID) String() string {
	switch i {
	case AUTH_NONE:
		return "AUTH_NONE"
	case AUTH_HMAC_SHA2_256_128:
		return "AUTH_HMAC_SHA2_256_128"
	case AUTH_HMAC_SHA2_384_192:
		return "AUTH_HMAC_SHA2_384_192"
	case AUTH_HMAC_SHA2_512_256:
		return "AUTH_HMAC_SHA2_512_256"
	}
	return fmt.Sprintf("AUTH_%d", uint16(i))
}

// integParams returns the hash, the key length (RFC 4868 §2.1.1: the key
// is as long as the hash output) and the truncated ICV length.
func integParams(id IntegID) (func() hash.Hash, int, int, bool) {
	switch id {
	case AUTH_HMAC_SHA2_256_128:
		return sha256.New, 32, 16, true
	case AUTH_HMAC_SHA2_384_192:
		return sha512.New384, 48, 24, true
	case AUTH_HMAC_SHA2_512_256:
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
	case ENCR_AES_GCM_16, ENCR_CHACHA20_POLY1305:
		if cfg.Integ != AUTH_NONE {
			return nil, fmt.Errorf("esp: SPI %#08x: %v is an AEAD and takes no integrity algorithm, got %v", cfg.SPI, cfg.Encr, cfg.Integ)
		}
		k := cfg.EncrKey
		var err error
		if cfg.Encr == ENCR_AES_GCM_16 {
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
	case ENCR_AES_CBC, ENCR_NULL:
	default:
		return nil, fmt.Errorf("esp: SPI %#08x: encryption transform %v is not supported", cfg.SPI, cfg.Encr)
	}

	newHash, keyLen, icvLen, ok := integParams(cfg.Integ)
	if !ok {
		return nil, fmt.Errorf("esp: SPI %#08x: %v needs an integrity algorithm (AUTH_HMAC_SHA2_256_128, _384_192 or _512_256), got %v", cfg.SPI, cfg.Encr, cfg.Integ)
	}
	if len(cfg.IntegKey) != keyLen {
		return nil, fmt.Errorf("esp: SPI %#08x: %v needs a %d-octet key, got %d", cfg.SPI, cfg.Integ, keyLen, len(cfg.IntegKey))
	}
	t.icvLen = icvLen
	ikey := append([]byte(nil), cfg.IntegKey...)

	if cfg.Encr == ENCR_NULL {
		if !cfg.AllowNullEncryption {
			return nil, fmt.Errorf("esp: SPI %#08x: ENCR_NULL refused: set AllowNullEncryption to ask for it explicitly", cfg.SPI)
		}
		if len(cfg.EncrKey) != 0 {
			return nil, fmt.Errorf("esp: SPI %#08x: ENCR_NULL takes no key, got %d octets", cfg.SPI, len(cfg.EncrKey))
		}
		t.kind, t.ivLen, t.align = kindNull, 0, 4
		t.macs.New = func() any { return &macState{h: hmac.New(newHash, ikey)} }
		return t, nil
	}

	switch len(cfg.EncrKey) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("esp: SPI %#08x: ENCR_AES_CBC needs a 16, 24 or 32-octet key, got %d", cfg.SPI, len(cfg.EncrKey))
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
