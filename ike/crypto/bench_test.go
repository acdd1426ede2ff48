package crypto

import (
	"bytes"
	"testing"

	"goswan/proposal"
)

func benchDH(b *testing.B, id proposal.DHGroup) {
	g := mustGroup(b, id)
	peer, _ := g.Generate(nil)
	pub := peer.Public()
	b.ReportAllocs()
	for b.Loop() {
		k, err := g.Generate(nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := k.SharedSecret(pub); err != nil {
			b.Fatal(err)
		}
	}
}

// Key generation plus shared secret: one side's DH work for an IKE SA.
func BenchmarkDHX25519(b *testing.B)   { benchDH(b, proposal.DHCurve25519) }
func BenchmarkDHP256(b *testing.B)     { benchDH(b, proposal.DHECP256) }
func BenchmarkDHP384(b *testing.B)     { benchDH(b, proposal.DHECP384) }
func BenchmarkDHMODP2048(b *testing.B) { benchDH(b, proposal.DHMODP2048) }
func BenchmarkDHMODP3072(b *testing.B) { benchDH(b, proposal.DHMODP3072) }

// SKEYSEED and the seven keys for AES-GCM-256 with PRF-HMAC-SHA2-512.
func BenchmarkDeriveIKEKeysGCM256SHA512(b *testing.B) {
	s := Suite{proposal.EncrAESGCM16, 256, proposal.PRFHMACSHA2512, proposal.IntegNone}
	p := mustPRF(b, s.PRF)
	ni, nr, gir := make([]byte, 32), make([]byte, 32), make([]byte, 32)
	b.ReportAllocs()
	for b.Loop() {
		k, err := DeriveIKEKeys(p, s, gir, ni, nr, [8]byte{1}, [8]byte{2})
		if err != nil {
			b.Fatal(err)
		}
		k.Wipe()
	}
}

func BenchmarkDeriveChildKeysGCM256(b *testing.B) {
	s := Suite{proposal.EncrAESGCM16, 256, proposal.PRFHMACSHA2512, proposal.IntegNone}
	p := mustPRF(b, s.PRF)
	skd, ni, nr := make([]byte, 64), make([]byte, 32), make([]byte, 32)
	b.ReportAllocs()
	for b.Loop() {
		k, _ := DeriveChildKeys(p, skd, s, nil, ni, nr)
		k.Wipe()
	}
}

func BenchmarkPSKAuthSHA256(b *testing.B) {
	p := mustPRF(b, proposal.PRFHMACSHA2256)
	in := AuthInput{Message: make([]byte, 500), PeerNonce: make([]byte, 32), IDBody: make([]byte, 24), SKp: make([]byte, 32)}
	out := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		SharedKeyAuth(p, out[:0], []byte("secret"), in)
	}
}

// SK protection of a 300-byte IKE_AUTH body.
func benchSK(b *testing.B, s Suite, decrypt bool) {
	enc, dec := newSKPair(b, s)
	aad := bytes.Repeat([]byte{0x2e}, 32)
	plain := make([]byte, 300)
	body, _ := enc.Encrypt(nil, aad, plain)
	out := make([]byte, 0, 512)
	b.SetBytes(300)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if decrypt {
			_, err = dec.Decrypt(out[:0], aad, body)
		} else {
			_, err = enc.Encrypt(out[:0], aad, plain)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

var (
	gcm256  = Suite{proposal.EncrAESGCM16, 256, proposal.PRFHMACSHA2512, proposal.IntegNone}
	chacha  = Suite{proposal.EncrChaCha20Poly1305, 0, proposal.PRFHMACSHA2256, proposal.IntegNone}
	cbc256  = Suite{proposal.EncrAESCBC, 256, proposal.PRFHMACSHA2256, proposal.IntegHMACSHA2256128}
	cbc256b = Suite{proposal.EncrAESCBC, 256, proposal.PRFHMACSHA2512, proposal.IntegHMACSHA2512256}
)

func BenchmarkSKEncryptGCM256(b *testing.B)           { benchSK(b, gcm256, false) }
func BenchmarkSKDecryptGCM256(b *testing.B)           { benchSK(b, gcm256, true) }
func BenchmarkSKEncryptChaCha20Poly1305(b *testing.B) { benchSK(b, chacha, false) }
func BenchmarkSKDecryptChaCha20Poly1305(b *testing.B) { benchSK(b, chacha, true) }
func BenchmarkSKEncryptCBC256SHA256(b *testing.B)     { benchSK(b, cbc256, false) }
func BenchmarkSKDecryptCBC256SHA256(b *testing.B)     { benchSK(b, cbc256, true) }
func BenchmarkSKEncryptCBC256SHA512(b *testing.B)     { benchSK(b, cbc256b, false) }
func BenchmarkSKDecryptCBC256SHA512(b *testing.B)     { benchSK(b, cbc256b, true) }
