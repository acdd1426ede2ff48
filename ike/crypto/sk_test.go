package crypto

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"goswan/proposal"
)

var skSuites = []Suite{
	{proposal.EncrAESCBC, 128, proposal.PRFHMACSHA2256, proposal.IntegHMACSHA2256128},
	{proposal.EncrAESCBC, 256, proposal.PRFHMACSHA2256, proposal.IntegHMACSHA2256128},
	{proposal.EncrAESCBC, 256, proposal.PRFHMACSHA2384, proposal.IntegHMACSHA2384192},
	{proposal.EncrAESCBC, 256, proposal.PRFHMACSHA2512, proposal.IntegHMACSHA2512256},
	{proposal.EncrAESCBC, 128, proposal.PRFHMACSHA1, proposal.IntegHMACSHA196},
	{proposal.EncrAESGCM16, 128, proposal.PRFHMACSHA2256, proposal.IntegNone},
	{proposal.EncrAESGCM16, 256, proposal.PRFHMACSHA2512, proposal.IntegNone},
	{proposal.EncrAESGCM12, 192, proposal.PRFHMACSHA2256, proposal.IntegNone},
	{proposal.EncrChaCha20Poly1305, 0, proposal.PRFHMACSHA2256, proposal.IntegNone},
}

func newSKPair(t testing.TB, s Suite) (*SK, *SK) {
	t.Helper()
	ek := make([]byte, s.EncrKeySize())
	ak := make([]byte, s.IntegKeySize())
	rand.Read(ek)
	rand.Read(ak)
	a, err := NewSK(s, ek, ak)
	if err != nil {
		t.Fatalf("%+v: %v", s, err)
	}
	b, err := NewSK(s, ek, ak)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

// RFC 7634 Appendix B: an INFORMATIONAL request carrying SET_WINDOW_SIZE
// protected with ChaCha20-Poly1305. The message is also strongSwan's
// test_message_chapoly.c expectation.
func TestRFC7634IKEv2Example(t *testing.T) {
	key := unhex(t, "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f a0a1a2a3")
	msg := unhex(t, `c0c1c2c3c4c5c6c7 d0d1d2d3d4d5d6d7 2e202500 00000009 00000045 29000029
		1011121314151617 6103947 01f8d017f 7c129248 896b71bf e25236ef d7cdc670 66906315 b2`)
	plain := unhex(t, "0000000c 00004001 0000000a")
	s := Suite{Encr: proposal.EncrChaCha20Poly1305, PRF: proposal.PRFHMACSHA2256}
	sk, err := NewSK(s, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	aad, body := msg[:32], msg[32:]
	got, err := sk.Decrypt(nil, aad, body)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Decrypt: %x %v", got, err)
	}
	if sk.SealedSize(len(plain)) != len(body) {
		t.Errorf("SealedSize %d, body %d", sk.SealedSize(len(plain)), len(body))
	}
	sk.ivCtr = 0x1011121314151617
	enc, err := sk.Encrypt(nil, aad, plain)
	if err != nil || !bytes.Equal(enc, body) {
		t.Errorf("Encrypt: %x %v\nwant %x", enc, err, body)
	}
}

type fixedReader []byte

func (r fixedReader) Read(p []byte) (int, error) { return copy(p, r), nil }

// RFC 3602 §4 cases 1 and 2 (AES-128-CBC): with the IV fixed, the
// ciphertext blocks of the SK body start with the RFC's.
func TestRFC3602(t *testing.T) {
	cases := []struct{ key, iv, plain, ct string }{
		{"06a9214036b8a15b512e03d534120006", "3dafba429d9eb430b422da802c9fac41",
			"53696e676c6520626c6f636b206d7367", "e353779c1079aeb82708942dbe77181a"},
		{"c286696d887c9aa0611bbb3e2025a45a", "562e17996d093d28ddb3ba695a2e6f58",
			"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
			"d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1"},
	}
	s := Suite{proposal.EncrAESCBC, 128, proposal.PRFHMACSHA2256, proposal.IntegHMACSHA2256128}
	for _, c := range cases {
		sk, err := NewSK(s, unhex(t, c.key), make([]byte, 32))
		if err != nil {
			t.Fatal(err)
		}
		iv := unhex(t, c.iv)
		sk.SetRand(fixedReader(iv))
		plain := unhex(t, c.plain)
		body, err := sk.Encrypt(nil, []byte("hdr"), plain)
		if err != nil {
			t.Fatal(err)
		}
		ct := unhex(t, c.ct)
		if !bytes.Equal(body[:16], iv) || !bytes.Equal(body[16:16+len(ct)], ct) {
			t.Errorf("ciphertext %x, want %x", body[16:16+len(ct)], ct)
		}
		// A whole block of padding follows a block-aligned payload.
		if len(body) != 16+len(plain)+16+16 {
			t.Errorf("body length %d", len(body))
		}
	}
}

func TestSKRoundTrip(t *testing.T) {
	for _, s := range skSuites {
		enc, dec := newSKPair(t, s)
		aad := bytes.Repeat([]byte{0x2e}, 32)
		for _, n := range []int{0, 1, 15, 16, 17, 300, 1200} {
			plain := make([]byte, n)
			rand.Read(plain)
			body, err := enc.Encrypt([]byte("prefix"), aad, plain)
			if err != nil {
				t.Fatal(err)
			}
			if string(body[:6]) != "prefix" {
				t.Fatal("Encrypt clobbered dst")
			}
			body = body[6:]
			if len(body) != enc.SealedSize(n) || len(body)-n > enc.Overhead() {
				t.Errorf("%+v n=%d: body %d, SealedSize %d, Overhead %d", s, n, len(body), enc.SealedSize(n), enc.Overhead())
			}
			got, err := dec.Decrypt(nil, aad, body)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("%+v n=%d: round trip: %v", s, n, err)
			}
			if n != 300 {
				continue
			}
			// A flipped bit anywhere in aad or body fails.
			for i := 0; i < 8*(len(aad)+len(body)); i += 7 {
				a, b := bytes.Clone(aad), bytes.Clone(body)
				if i < 8*len(a) {
					a[i/8] ^= 1 << (i % 8)
				} else {
					j := i - 8*len(a)
					b[j/8] ^= 1 << (j % 8)
				}
				got, err := dec.Decrypt([]byte("kept"), a, b)
				if !errors.Is(err, ErrAuthFailed) || string(got) != "kept" {
					t.Fatalf("%+v: bit %d flipped: err = %v, dst %q", s, i, err, got)
				}
			}
			// Truncations fail without panicking.
			for l := 0; l < len(body); l++ {
				if _, err := dec.Decrypt(nil, aad, body[:l]); err == nil {
					t.Fatalf("%+v: truncated to %d accepted", s, l)
				}
			}
		}
		// Each AEAD message has a fresh IV.
		if s.Encr.AEAD() {
			b1, _ := enc.Encrypt(nil, aad, []byte("x"))
			b2, _ := enc.Encrypt(nil, aad, []byte("x"))
			if bytes.Equal(b1[:8], b2[:8]) {
				t.Errorf("%+v: IV reused", s)
			}
		}
	}
}

// Bad padding behind a valid ICV: a Pad Length larger than the data.
func TestSKBadPadding(t *testing.T) {
	for _, s := range skSuites {
		enc, dec := newSKPair(t, s)
		raw := bytes.Repeat([]byte{0xff}, enc.BlockSize()) // Pad Length 255
		out := make([]byte, enc.IVSize()+len(raw)+enc.ICVSize())
		copy(out[enc.IVSize():], raw)
		if err := enc.protect(out, nil, len(raw)); err != nil {
			t.Fatal(err)
		}
		if _, err := dec.Decrypt(nil, nil, out); !errors.Is(err, ErrMalformed) {
			t.Errorf("%+v: Pad Length 255: err = %v", s, err)
		}
	}
}

func TestAEADExhaustion(t *testing.T) {
	enc, _ := newSKPair(t, skSuites[5])
	enc.ivCtr = ^uint64(0)
	if _, err := enc.Encrypt(nil, nil, []byte("last")); err != nil {
		t.Fatal(err)
	}
	if _, err := enc.Encrypt(nil, nil, []byte("one too many")); !errors.Is(err, ErrIVExhausted) {
		t.Errorf("err = %v", err)
	}
}

func TestNewSKErrors(t *testing.T) {
	s := skSuites[0]
	if _, err := NewSK(s, make([]byte, 15), make([]byte, 32)); err == nil {
		t.Error("short key accepted")
	}
	if _, err := NewSK(s, make([]byte, 16), make([]byte, 31)); err == nil {
		t.Error("short integrity key accepted")
	}
	if _, err := NewSK(Suite{Encr: proposal.EncrNull, Integ: proposal.IntegHMACSHA2256128}, nil, make([]byte, 32)); err == nil {
		t.Error("ENCR_NULL accepted for IKE")
	}
	if _, err := NewSK(Suite{Encr: proposal.EncrAESGCM8, KeyBits: 128}, make([]byte, 20), nil); err == nil {
		t.Error("AES_GCM_8 accepted")
	}
}

func FuzzDecrypt(f *testing.F) {
	key := bytes.Repeat([]byte{0x42}, 64)
	var sks []*SK
	for _, s := range skSuites {
		sk, err := NewSK(s, key[:s.EncrKeySize()], key[:s.IntegKeySize()])
		if err != nil {
			f.Fatal(err)
		}
		sks = append(sks, sk)
	}
	for i, sk := range sks {
		body, _ := sk.Encrypt(nil, []byte("aad"), []byte("payloads"))
		f.Add(uint8(i), []byte("aad"), body)
		f.Add(uint8(i), []byte("aad"), body[:len(body)-1])
	}
	f.Add(uint8(0), []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, which uint8, aad, body []byte) {
		sk := sks[int(which)%len(sks)]
		out, err := sk.Decrypt([]byte("dst"), aad, body)
		if string(out[:3]) != "dst" {
			t.Fatalf("Decrypt lost dst's contents")
		}
		pt := out[3:]
		if err != nil && len(pt) != 0 || len(pt) > len(body) {
			t.Fatalf("Decrypt returned %d bytes with err %v", len(pt), err)
		}
		// Valid bodies survive a round trip.
		if err == nil {
			again, err := sk.Encrypt(nil, aad, pt)
			if err != nil {
				t.Fatal(err)
			}
			if pt2, err := sk.Decrypt(nil, aad, again); err != nil || !bytes.Equal(pt2, pt) {
				t.Fatalf("round trip of fuzzed plaintext failed: %v", err)
			}
		}
	})
}
