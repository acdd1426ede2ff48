// Package proposal holds the IANA IKEv2 transform identifiers (RFC 7296
// §3.3.2 and the IANA "IKEv2 Parameters" registry), typed IKE and ESP
// proposals built from them, and the parser of Libreswan's ike= and esp=
// syntax with Libreswan 5's defaults.
//
// The package is a leaf: it imports only the standard library, so the IKE
// code, the ESP engine and the kernel back ends can all share its types.
package proposal

import "strconv"

// EncrID is an IKEv2 Transform Type 1 (Encryption Algorithm) identifier.
type EncrID uint16

// Encryption algorithm identifiers (IANA IKEv2 Transform Type 1).
const (
	Encr3DES             EncrID = 3
	EncrNull             EncrID = 11
	EncrAESCBC           EncrID = 12
	EncrAESCTR           EncrID = 13
	EncrAESGCM8          EncrID = 18
	EncrAESGCM12         EncrID = 19
	EncrAESGCM16         EncrID = 20
	EncrChaCha20Poly1305 EncrID = 28
)

// String returns the name Libreswan prints for the algorithm (its "fqn"),
// for example AES_GCM_16.
func (e EncrID) String() string {
	switch e {
	case Encr3DES:
		return "3DES_CBC"
	case EncrNull:
		return "NULL"
	case EncrAESCBC:
		return "AES_CBC"
	case EncrAESCTR:
		return "AES_CTR"
	case EncrAESGCM8:
		return "AES_GCM_8"
	case EncrAESGCM12:
		return "AES_GCM_12"
	case EncrAESGCM16:
		return "AES_GCM_16"
	case EncrChaCha20Poly1305:
		return "CHACHA20_POLY1305"
	}
	return "ENCR_" + strconv.Itoa(int(e))
}

// Known reports whether the identifier is one this package describes.
func (e EncrID) Known() bool {
	switch e {
	case Encr3DES, EncrNull, EncrAESCBC, EncrAESCTR, EncrAESGCM8,
		EncrAESGCM12, EncrAESGCM16, EncrChaCha20Poly1305:
		return true
	}
	return false
}

// AEAD reports whether the algorithm is an AEAD cipher (its integrity
// transform must be NONE).
func (e EncrID) AEAD() bool {
	switch e {
	case EncrAESGCM8, EncrAESGCM12, EncrAESGCM16, EncrChaCha20Poly1305:
		return true
	}
	return false
}

// ICVSize is the size in bytes of the AEAD integrity check value, or 0 for
// a non-AEAD algorithm.
func (e EncrID) ICVSize() int {
	switch e {
	case EncrAESGCM8:
		return 8
	case EncrAESGCM12:
		return 12
	case EncrAESGCM16, EncrChaCha20Poly1305:
		return 16
	}
	return 0
}

// KeyLengths lists the key lengths in bits the algorithm accepts, the
// strongest first. NULL has the single length 0.
func (e EncrID) KeyLengths() []int {
	switch e {
	case EncrAESCBC, EncrAESCTR, EncrAESGCM8, EncrAESGCM12, EncrAESGCM16:
		return []int{256, 192, 128}
	case Encr3DES:
		return []int{192}
	case EncrChaCha20Poly1305:
		return []int{256}
	case EncrNull:
		return []int{0}
	}
	return nil
}

// DefaultKeyBits is the key length Libreswan uses when none is given and
// only one can be chosen (its "keydeflen").
func (e EncrID) DefaultKeyBits() int {
	switch e {
	case EncrAESCBC, EncrAESCTR, EncrAESGCM8, EncrAESGCM12, EncrAESGCM16:
		return 128
	case Encr3DES:
		return 192
	case EncrChaCha20Poly1305:
		return 256
	}
	return 0
}

// HasKeyLengthAttribute reports whether the IKEv2 transform carries a Key
// Length attribute (RFC 7296 §3.3.5): true for the AES family, false for
// algorithms with a fixed key length.
func (e EncrID) HasKeyLengthAttribute() bool {
	switch e {
	case EncrAESCBC, EncrAESCTR, EncrAESGCM8, EncrAESGCM12, EncrAESGCM16:
		return true
	}
	return false
}

// SaltSize is the number of bytes of keying material taken beyond the key
// itself for the nonce salt (RFC 4106 §8.1, RFC 3686 §5.1, RFC 7634 §2).
func (e EncrID) SaltSize() int {
	switch e {
	case EncrAESGCM8, EncrAESGCM12, EncrAESGCM16, EncrAESCTR, EncrChaCha20Poly1305:
		return 4
	}
	return 0
}

// IVSize is the size in bytes of the explicit IV carried in each packet.
func (e EncrID) IVSize() int {
	switch e {
	case EncrAESCBC:
		return 16
	case Encr3DES, EncrAESCTR, EncrAESGCM8, EncrAESGCM12, EncrAESGCM16, EncrChaCha20Poly1305:
		return 8
	}
	return 0
}

// BlockSize is the cipher's block size in bytes for padding (1 for stream
// and counter modes).
func (e EncrID) BlockSize() int {
	switch e {
	case EncrAESCBC:
		return 16
	case Encr3DES:
		return 8
	}
	return 1
}

// Deprecated reports whether Libreswan 5 considers the algorithm legacy:
// accepted, but never proposed by default and worth a warning.
func (e EncrID) Deprecated() bool { return e == Encr3DES }

// ESPOnly reports whether the algorithm may only be used for ESP, never for
// the IKE SA.
func (e EncrID) ESPOnly() bool { return e == EncrNull }

// Encr is an encryption algorithm with its key length in bits. KeyBits 0
// means the key length was not given: Libreswan then proposes the
// strongest and the default length (256 and 128 for AES), see KeyLengths.
type Encr struct {
	ID      EncrID
	KeyBits int
}

// KeyLengths returns the key lengths to propose for e: KeyBits when set,
// otherwise the strongest and the default length of the algorithm (both
// equal for fixed-length algorithms, then listed once).
func (e Encr) KeyLengths() []int {
	if e.KeyBits != 0 {
		return []int{e.KeyBits}
	}
	all := e.ID.KeyLengths()
	if len(all) == 0 {
		return nil
	}
	if def := e.ID.DefaultKeyBits(); def != all[0] {
		return []int{all[0], def}
	}
	return []int{all[0]}
}

// String returns Libreswan's form, for example AES_CBC_256 or AES_GCM_16.
func (e Encr) String() string {
	if e.KeyBits == 0 {
		return e.ID.String()
	}
	return e.ID.String() + "_" + strconv.Itoa(e.KeyBits)
}

// PRFID is an IKEv2 Transform Type 2 (Pseudorandom Function) identifier.
type PRFID uint16

// PRF identifiers (IANA IKEv2 Transform Type 2).
const (
	PRFHMACSHA1    PRFID = 2
	PRFHMACSHA2256 PRFID = 5
	PRFHMACSHA2384 PRFID = 6
	PRFHMACSHA2512 PRFID = 7
)

// String returns Libreswan's name, for example HMAC_SHA2_256.
func (p PRFID) String() string {
	switch p {
	case PRFHMACSHA1:
		return "HMAC_SHA1"
	case PRFHMACSHA2256:
		return "HMAC_SHA2_256"
	case PRFHMACSHA2384:
		return "HMAC_SHA2_384"
	case PRFHMACSHA2512:
		return "HMAC_SHA2_512"
	}
	return "PRF_" + strconv.Itoa(int(p))
}

// Known reports whether the identifier is one this package describes.
func (p PRFID) Known() bool { return p.OutputSize() != 0 }

// OutputSize is the PRF output (and preferred key) size in bytes.
func (p PRFID) OutputSize() int {
	switch p {
	case PRFHMACSHA1:
		return 20
	case PRFHMACSHA2256:
		return 32
	case PRFHMACSHA2384:
		return 48
	case PRFHMACSHA2512:
		return 64
	}
	return 0
}

// Integ returns the integrity algorithm built on the same hash, which
// Libreswan uses when an IKE proposal names only the PRF.
func (p PRFID) Integ() IntegID {
	switch p {
	case PRFHMACSHA1:
		return IntegHMACSHA196
	case PRFHMACSHA2256:
		return IntegHMACSHA2256128
	case PRFHMACSHA2384:
		return IntegHMACSHA2384192
	case PRFHMACSHA2512:
		return IntegHMACSHA2512256
	}
	return IntegNone
}

// Deprecated reports whether Libreswan 5 considers the PRF legacy.
func (p PRFID) Deprecated() bool { return p == PRFHMACSHA1 }

// IntegID is an IKEv2 Transform Type 3 (Integrity Algorithm) identifier.
type IntegID uint16

// Integrity algorithm identifiers (IANA IKEv2 Transform Type 3).
const (
	IntegNone           IntegID = 0
	IntegHMACSHA196     IntegID = 2
	IntegHMACSHA2256128 IntegID = 12
	IntegHMACSHA2384192 IntegID = 13
	IntegHMACSHA2512256 IntegID = 14
)

// String returns Libreswan's name, for example HMAC_SHA2_256_128.
func (i IntegID) String() string {
	switch i {
	case IntegNone:
		return "NONE"
	case IntegHMACSHA196:
		return "HMAC_SHA1_96"
	case IntegHMACSHA2256128:
		return "HMAC_SHA2_256_128"
	case IntegHMACSHA2384192:
		return "HMAC_SHA2_384_192"
	case IntegHMACSHA2512256:
		return "HMAC_SHA2_512_256"
	}
	return "AUTH_" + strconv.Itoa(int(i))
}

// Known reports whether the identifier is one this package describes.
func (i IntegID) Known() bool {
	switch i {
	case IntegNone, IntegHMACSHA196, IntegHMACSHA2256128, IntegHMACSHA2384192, IntegHMACSHA2512256:
		return true
	}
	return false
}

// KeySize is the integrity key size in bytes.
func (i IntegID) KeySize() int {
	switch i {
	case IntegHMACSHA196:
		return 20
	case IntegHMACSHA2256128:
		return 32
	case IntegHMACSHA2384192:
		return 48
	case IntegHMACSHA2512256:
		return 64
	}
	return 0
}

// ICVSize is the truncated MAC (integrity check value) size in bytes.
func (i IntegID) ICVSize() int {
	switch i {
	case IntegHMACSHA196:
		return 12
	case IntegHMACSHA2256128:
		return 16
	case IntegHMACSHA2384192:
		return 24
	case IntegHMACSHA2512256:
		return 32
	}
	return 0
}

// Deprecated reports whether Libreswan 5 considers the algorithm legacy.
func (i IntegID) Deprecated() bool { return i == IntegHMACSHA196 }

// DHGroup is an IKEv2 Transform Type 4 (Key Exchange Method) identifier.
type DHGroup uint16

// Key exchange method identifiers (IANA IKEv2 Transform Type 4).
const (
	DHNone       DHGroup = 0
	DHMODP2048   DHGroup = 14
	DHMODP3072   DHGroup = 15
	DHMODP4096   DHGroup = 16
	DHMODP8192   DHGroup = 18
	DHECP256     DHGroup = 19
	DHECP384     DHGroup = 20
	DHECP521     DHGroup = 21
	DHCurve25519 DHGroup = 31
)

// String returns Libreswan's name: MODPnnnn for the MODP groups, DHnn for
// the elliptic curve groups, NONE.
func (g DHGroup) String() string {
	switch g {
	case DHNone:
		return "NONE"
	case DHMODP2048:
		return "MODP2048"
	case DHMODP3072:
		return "MODP3072"
	case DHMODP4096:
		return "MODP4096"
	case DHMODP8192:
		return "MODP8192"
	case DHECP256, DHECP384, DHECP521, DHCurve25519:
		return "DH" + strconv.Itoa(int(g))
	}
	return "DH" + strconv.Itoa(int(g))
}

// Known reports whether the identifier is one this package describes.
func (g DHGroup) Known() bool {
	return g == DHNone || g.PublicKeySize() != 0
}

// PublicKeySize is the size in bytes of the Key Exchange payload data for
// the group (RFC 7296 §3.4, RFC 5903 §7, RFC 8031 §4).
func (g DHGroup) PublicKeySize() int {
	switch g {
	case DHMODP2048:
		return 256
	case DHMODP3072:
		return 384
	case DHMODP4096:
		return 512
	case DHMODP8192:
		return 1024
	case DHECP256:
		return 64
	case DHECP384:
		return 96
	case DHECP521:
		return 132
	case DHCurve25519:
		return 32
	}
	return 0
}

// MODP reports whether the group is a finite-field (MODP) group.
func (g DHGroup) MODP() bool {
	switch g {
	case DHMODP2048, DHMODP3072, DHMODP4096, DHMODP8192:
		return true
	}
	return false
}
