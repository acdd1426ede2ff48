package crypto

import (
	"fmt"

	"goswan/proposal"
)

// Suite is the negotiated cryptographic suite of an IKE SA: its encryption
// algorithm and key length, PRF and integrity algorithm (IntegNone with an
// AEAD cipher). For a Child SA only Encr, KeyBits and Integ matter.
type Suite struct {
	Encr    proposal.EncrID
	KeyBits int // the Key Length attribute; 0 for a fixed-length cipher
	PRF     proposal.PRFID
	Integ   proposal.IntegID
}

// keyBits returns the cipher key length in bits, filling in the only
// length of a fixed-length cipher, and checks it against the algorithm.
func (s Suite) keyBits() (int, error) {
	lens := s.Encr.KeyLengths()
	if len(lens) == 0 {
		return 0, fmt.Errorf("ike/crypto: unsupported encryption algorithm %v (transform ID %d)", s.Encr, uint16(s.Encr))
	}
	bits := s.KeyBits
	if bits == 0 && len(lens) == 1 {
		bits = lens[0]
	}
	for _, l := range lens {
		if l == bits {
			return bits, nil
		}
	}
	return 0, fmt.Errorf("ike/crypto: %v has no %d-bit key (lengths %v)", s.Encr, s.KeyBits, lens)
}

// EncrKeySize is the number of bytes of key material the encryption
// algorithm takes from prf+ for one direction: the key and, for AES-GCM,
// AES-CTR and ChaCha20-Poly1305, the 4-byte salt after it (RFC 5282 §7.1,
// RFC 4106 §8.1, RFC 7634 §2 and §4). It is 0 for an invalid suite.
func (s Suite) EncrKeySize() int {
	bits, err := s.keyBits()
	if err != nil {
		return 0
	}
	return bits/8 + s.Encr.SaltSize()
}

// IntegKeySize is the integrity key size in bytes (0 for AEAD).
func (s Suite) IntegKeySize() int {
	if s.Encr.AEAD() {
		return 0
	}
	return s.Integ.KeySize()
}

// check validates the encryption and integrity part of the suite.
func (s Suite) check() error {
	if _, err := s.keyBits(); err != nil {
		return err
	}
	if s.Encr.AEAD() {
		if s.Integ != proposal.IntegNone {
			return fmt.Errorf("ike/crypto: AEAD %v takes integrity NONE, not %v", s.Encr, s.Integ)
		}
		return nil
	}
	if s.Integ.KeySize() == 0 {
		return fmt.Errorf("ike/crypto: %v needs an integrity algorithm, got %v", s.Encr, s.Integ)
	}
	return nil
}

// Keys are the seven secrets of an IKE SA (RFC 7296 §2.14). The slices
// share one buffer; Wipe clears it. SKai and SKar are empty with an AEAD
// cipher; SKei and SKer then end with the 4-byte salt.
type Keys struct {
	SKd, SKai, SKar, SKei, SKer, SKpi, SKpr []byte
	buf                                     []byte
}

// Wipe overwrites the keys with zeros and forgets them.
func (k *Keys) Wipe() {
	clear(k.buf)
	*k = Keys{}
}

// SKEYSEED appends SKEYSEED = prf(Ni | Nr, g^ir) (RFC 7296 §2.14) to dst.
func SKEYSEED(p *PRF, dst, ni, nr, gir []byte) []byte {
	p.key = append(append(p.key[:0], ni...), nr...)
	out := p.Compute(dst, p.key, gir)
	clear(p.key)
	return out
}

// RekeySKEYSEED appends the SKEYSEED of a new IKE SA made by rekeying
// (RFC 7296 §2.18) to dst: prf(SK_d (old), g^ir (new) | Ni | Nr), computed
// with the old IKE SA's PRF. Ni and Nr are the nonces of the
// CREATE_CHILD_SA exchange.
func RekeySKEYSEED(oldPRF *PRF, dst, oldSKd, gir, ni, nr []byte) []byte {
	return oldPRF.Compute(dst, oldSKd, gir, ni, nr)
}

// DeriveIKEKeys derives the keys of a new IKE SA (RFC 7296 §2.14):
//
//	SKEYSEED = prf(Ni | Nr, g^ir)
//	{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
//	                = prf+ (SKEYSEED, Ni | Nr | SPIi | SPIr)
//
// p must be the suite's PRF (it is re-keyed). gir is the shared secret as
// SharedSecret returns it.
func DeriveIKEKeys(p *PRF, s Suite, gir, ni, nr []byte, spii, spir [8]byte) (*Keys, error) {
	seed := SKEYSEED(p, p.mac[:0], ni, nr, gir)
	k, err := expandIKEKeys(p, s, seed, ni, nr, spii, spir)
	clear(seed)
	return k, err
}

// DeriveRekeyedIKEKeys derives the keys of the IKE SA that replaces an old
// one (RFC 7296 §2.18): SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)
// with oldPRF, the old IKE SA's PRF; the seven keys follow from it as in
// §2.14 with p, the new IKE SA's PRF, and the new SPIs.
func DeriveRekeyedIKEKeys(oldPRF *PRF, oldSKd []byte, p *PRF, s Suite, gir, ni, nr []byte, spii, spir [8]byte) (*Keys, error) {
	var sb [64]byte
	seed := append(sb[:0], RekeySKEYSEED(oldPRF, oldPRF.mac[:0], oldSKd, gir, ni, nr)...)
	clear(oldPRF.mac[:cap(oldPRF.mac)])
	k, err := expandIKEKeys(p, s, seed, ni, nr, spii, spir)
	clear(sb[:])
	return k, err
}

func expandIKEKeys(p *PRF, s Suite, skeyseed, ni, nr []byte, spii, spir [8]byte) (*Keys, error) {
	if s.PRF != p.ID() {
		return nil, fmt.Errorf("ike/crypto: suite PRF %v but the PRF given is %v", s.PRF, p.ID())
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	prfLen, ai, ei := p.Size(), s.IntegKeySize(), s.EncrKeySize()
	total := prfLen + 2*ai + 2*ei + 2*prfLen
	k := &Keys{}
	buf, err := p.Plus(make([]byte, 0, total), total, skeyseed, ni, nr, spii[:], spir[:])
	if err != nil {
		return nil, err
	}
	k.buf = buf
	cut := func(n int) []byte {
		b := buf[:n:n]
		buf = buf[n:]
		return b
	}
	k.SKd = cut(prfLen)
	k.SKai = cut(ai)
	k.SKar = cut(ai)
	k.SKei = cut(ei)
	k.SKer = cut(ei)
	k.SKpi = cut(prfLen)
	k.SKpr = cut(prfLen)
	return k, nil
}

// ChildKeys are the keys of a Child SA (RFC 7296 §2.17): for each
// direction, the encryption key (with its salt at the end for AES-GCM,
// AES-CTR and ChaCha20-Poly1305) and the integrity key (empty for AEAD).
// "I" is the direction from the initiator of the exchange that created
// the Child SA to its responder.
type ChildKeys struct {
	EncrI, IntegI, EncrR, IntegR []byte
	buf                          []byte
}

// Wipe overwrites the keys with zeros and forgets them.
func (k *ChildKeys) Wipe() {
	clear(k.buf)
	*k = ChildKeys{}
}

// DeriveChildKeys derives the keys of a Child SA (RFC 7296 §2.17):
//
//	KEYMAT = prf+(SK_d, Ni | Nr)                  (gir nil: no PFS)
//	KEYMAT = prf+(SK_d, g^ir (new) | Ni | Nr)     (CREATE_CHILD_SA with KE)
//
// taken in the order encryption i→r, integrity i→r, encryption r→i,
// integrity r→i. p is the IKE SA's PRF (it is re-keyed); s gives the
// Child SA's encryption and integrity (s.PRF is ignored). Ni and Nr are the
// nonces of the exchange that created the Child SA.
func DeriveChildKeys(p *PRF, skd []byte, s Suite, gir, ni, nr []byte) (*ChildKeys, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	ei, ai := s.EncrKeySize(), s.IntegKeySize()
	total := 2 * (ei + ai)
	buf, err := p.Plus(make([]byte, 0, total), total, skd, gir, ni, nr)
	if err != nil {
		return nil, err
	}
	k := &ChildKeys{buf: buf}
	cut := func(n int) []byte {
		b := buf[:n:n]
		buf = buf[n:]
		return b
	}
	k.EncrI = cut(ei)
	k.IntegI = cut(ai)
	k.EncrR = cut(ei)
	k.IntegR = cut(ai)
	return k, nil
}
