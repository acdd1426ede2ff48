package crypto

import (
	"bytes"
	gocrypto "crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"

	"goswan/ike/message"
)

type testKeys struct {
	rsa                *rsa.PrivateKey
	p256, p384, p521   *ecdsa.PrivateKey
	ed25519            ed25519.PrivateKey
	rsaOther, p256Othr gocrypto.Signer
}

var (
	sigKeysOnce sync.Once
	sigKeys     testKeys
)

func keys(t testing.TB) *testKeys {
	sigKeysOnce.Do(func() {
		var err error
		must := func(e error) {
			if e != nil && err == nil {
				err = e
			}
		}
		k := &sigKeys
		k.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
		var e error
		k.p256, e = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(e)
		k.p384, e = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		must(e)
		k.p521, e = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		must(e)
		_, k.ed25519, e = ed25519.GenerateKey(rand.Reader)
		must(e)
		k.rsaOther, e = rsa.GenerateKey(rand.Reader, 2048)
		must(e)
		k.p256Othr, e = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(e)
		if err != nil {
			panic(err)
		}
	})
	return &sigKeys
}

func h2b(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.NewReplacer(" ", "", "\n", "", "\t", "").Replace(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var octets = append(bytes.Repeat([]byte("IKE_SA_INIT message"), 20), "nonce|maced-id"...)

func TestSignVerifyRoundTrip(t *testing.T) {
	k := keys(t)
	all := []SignatureHash{SignatureHashSHA256, SignatureHashSHA384, SignatureHashSHA512}
	type tc struct {
		name   string
		method message.AuthMethod
		key    gocrypto.Signer
		other  gocrypto.Signer // a different key of the same type
		hash   SignatureHash
		opts   SignOptions
		wantAI string // the AlgorithmIdentifier for method 14
	}
	var cases []tc
	for _, h := range all {
		cases = append(cases,
			tc{name: "rsa-pss-" + h.String(), method: message.AuthDigitalSignature, key: k.rsa, other: k.rsaOther, hash: h},
			tc{name: "rsa-pkcs1-" + h.String(), method: message.AuthDigitalSignature, key: k.rsa, other: k.rsaOther, hash: h, opts: SignOptions{RSAPKCS1v15: true}},
			tc{name: "ecdsa-p256-" + h.String(), method: message.AuthDigitalSignature, key: k.p256, other: k.p256Othr, hash: h},
			tc{name: "ecdsa-p384-" + h.String(), method: message.AuthDigitalSignature, key: k.p384, other: k.p256Othr, hash: h},
			tc{name: "ecdsa-p521-" + h.String(), method: message.AuthDigitalSignature, key: k.p521, other: k.p256Othr, hash: h},
		)
	}
	_, otherEd, _ := ed25519.GenerateKey(rand.Reader)
	cases = append(cases,
		tc{name: "ed25519", method: message.AuthDigitalSignature, key: k.ed25519, other: otherEd, hash: SignatureHashIdentity},
		tc{name: "method1", method: message.AuthRSASig, key: k.rsa, other: k.rsaOther},
		tc{name: "method9", method: message.AuthECDSASHA256P256, key: k.p256, other: k.p256Othr},
		tc{name: "method10", method: message.AuthECDSASHA384P384, key: k.p384, other: k.p256Othr},
		tc{name: "method11", method: message.AuthECDSASHA512P521, key: k.p521, other: k.p256Othr},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			auth, err := SignAuthWith(c.method, c.key, c.hash, octets, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			pub := c.key.Public()
			if err := VerifyAuth(c.method, auth, pub, octets, nil); err != nil {
				t.Fatalf("verify: %v", err)
			}
			// Legacy ECDSA: fixed-size r | s.
			if m, ok := legacyECDSA[c.method]; ok {
				if n := (m.curve.Params().BitSize + 7) / 8; len(auth) != 2*n {
					t.Errorf("r|s is %d octets, want %d", len(auth), 2*n)
				}
			}
			tampered := bytes.Clone(octets)
			tampered[len(tampered)/2] ^= 1
			if err := VerifyAuth(c.method, auth, pub, tampered, nil); !errors.Is(err, ErrSignatureMismatch) {
				t.Errorf("tampered octets: err = %v, want ErrSignatureMismatch", err)
			}
			bad := bytes.Clone(auth)
			bad[len(bad)-1] ^= 0x40
			if err := VerifyAuth(c.method, bad, pub, octets, nil); err == nil {
				t.Error("tampered signature verified")
			}
			if err := VerifyAuth(c.method, auth, c.other.Public(), octets, nil); err == nil {
				t.Error("verified with another key")
			}
		})
	}
}

// The AlgorithmIdentifiers we send, byte for byte. The PKCS#1 v1.5, ECDSA
// ones are RFC 7427 appendix A.1 and A.3; RSASSA-PSS is A.4.3's encoding
// without the trailerField (which DER omits as it is the default),
// Ed25519 is RFC 8410's (as RFC 8420 uses).
func TestAlgorithmIdentifierBlobs(t *testing.T) {
	pss := func(h, salt string) string {
		return "30 41 06 09 2a 86 48 86 f7 0d 01 01 0a 30 34" +
			"a0 0f 30 0d 06 09 60 86 48 01 65 03 04 02" + h + "05 00" +
			"a1 1c 30 1a 06 09 2a 86 48 86 f7 0d 01 01 08 30 0d 06 09 60 86 48 01 65 03 04 02" + h + "05 00" +
			"a2 03 02 01" + salt
	}
	for _, c := range []struct {
		alg  sigAlg
		want string
	}{
		{sigAlg{family: familyRSAPKCS1, hash: SignatureHashSHA1}, "30 0d 06 09 2a 86 48 86 f7 0d 01 01 05 05 00"},
		{sigAlg{family: familyRSAPKCS1, hash: SignatureHashSHA256}, "30 0d 06 09 2a 86 48 86 f7 0d 01 01 0b 05 00"},
		{sigAlg{family: familyRSAPKCS1, hash: SignatureHashSHA384}, "30 0d 06 09 2a 86 48 86 f7 0d 01 01 0c 05 00"},
		{sigAlg{family: familyRSAPKCS1, hash: SignatureHashSHA512}, "30 0d 06 09 2a 86 48 86 f7 0d 01 01 0d 05 00"},
		{sigAlg{family: familyECDSA, hash: SignatureHashSHA1}, "30 09 06 07 2a 86 48 ce 3d 04 01"},
		{sigAlg{family: familyECDSA, hash: SignatureHashSHA256}, "30 0a 06 08 2a 86 48 ce 3d 04 03 02"},
		{sigAlg{family: familyECDSA, hash: SignatureHashSHA384}, "30 0a 06 08 2a 86 48 ce 3d 04 03 03"},
		{sigAlg{family: familyECDSA, hash: SignatureHashSHA512}, "30 0a 06 08 2a 86 48 ce 3d 04 03 04"},
		{sigAlg{family: familyEd25519, hash: SignatureHashIdentity}, "30 05 06 03 2b 65 70"},
		{sigAlg{family: familyRSAPSS, hash: SignatureHashSHA256, salt: 32}, pss("01", "20")},
		{sigAlg{family: familyRSAPSS, hash: SignatureHashSHA384, salt: 48}, pss("02", "30")},
		{sigAlg{family: familyRSAPSS, hash: SignatureHashSHA512, salt: 64}, pss("03", "40")},
	} {
		want := h2b(t, c.want)
		got := c.alg.algorithmIdentifier()
		if !bytes.Equal(got, want) {
			t.Errorf("%v: AlgorithmIdentifier\n got % x\nwant % x", c.alg, got, want)
		}
		back, err := parseAlgorithmIdentifier(want)
		if err != nil || back != c.alg {
			t.Errorf("%v: parsed back as %v, %v", c.alg, back, err)
		}
	}
}

// Encodings that peers send and that we must read.
func TestParseAlgorithmIdentifierPeerEncodings(t *testing.T) {
	for _, c := range []struct {
		name, der string
		want      sigAlg
		err       string
	}{
		// RFC 7427 A.4.3, with the explicit trailerField.
		{"rfc7427-A.4.3", "30 46 06 09 2a 86 48 86 f7 0d 01 01 0a 30 39 a0 0f 30 0d 06 09 60 86 48 01 65 03 04 02 01 05 00" +
			"a1 1c 30 1a 06 09 2a 86 48 86 f7 0d 01 01 08 30 0d 06 09 60 86 48 01 65 03 04 02 01 05 00" +
			"a2 03 02 01 20 a3 03 02 01 01", sigAlg{family: familyRSAPSS, hash: SignatureHashSHA256, salt: 32}, ""},
		// Hash AlgorithmIdentifiers without NULL inside the PSS parameters.
		{"pss-no-null", "30 3d 06 09 2a 86 48 86 f7 0d 01 01 0a 30 30 a0 0d 30 0b 06 09 60 86 48 01 65 03 04 02 01" +
			"a1 1a 30 18 06 09 2a 86 48 86 f7 0d 01 01 08 30 0b 06 09 60 86 48 01 65 03 04 02 01" +
			"a2 03 02 01 20", sigAlg{family: familyRSAPSS, hash: SignatureHashSHA256, salt: 32}, ""},
		// RFC 7427 A.4.1: RSASSA-PSS with empty parameters = SHA-1, salt 20.
		{"pss-empty", "30 0d 06 09 2a 86 48 86 f7 0d 01 01 0a 30 00", sigAlg{family: familyRSAPSS, hash: SignatureHashSHA1, salt: 20}, ""},
		{"sha256WithRSA-no-null", "30 0b 06 09 2a 86 48 86 f7 0d 01 01 0b", sigAlg{family: familyRSAPKCS1, hash: SignatureHashSHA256}, ""},
		{"ecdsa-null", "30 0c 06 08 2a 86 48 ce 3d 04 03 02 05 00", sigAlg{family: familyECDSA, hash: SignatureHashSHA256}, ""},
		{"pss-mgf-mismatch", "30 41 06 09 2a 86 48 86 f7 0d 01 01 0a 30 34 a0 0f 30 0d 06 09 60 86 48 01 65 03 04 02 01 05 00" +
			"a1 1c 30 1a 06 09 2a 86 48 86 f7 0d 01 01 08 30 0d 06 09 60 86 48 01 65 03 04 02 03 05 00" +
			"a2 03 02 01 20", sigAlg{}, "MGF1 with SHA2_512"},
		{"pss-trailer-2", "30 46 06 09 2a 86 48 86 f7 0d 01 01 0a 30 39 a0 0f 30 0d 06 09 60 86 48 01 65 03 04 02 01 05 00" +
			"a1 1c 30 1a 06 09 2a 86 48 86 f7 0d 01 01 08 30 0d 06 09 60 86 48 01 65 03 04 02 01 05 00" +
			"a2 03 02 01 20 a3 03 02 01 02", sigAlg{}, "trailerField 2"},
		{"pss-no-params", "30 0b 06 09 2a 86 48 86 f7 0d 01 01 0a", sigAlg{}, "without parameters"},
		{"ed25519-null", "30 07 06 03 2b 65 70 05 00", sigAlg{}, "absent parameters"},
		{"ed448", "30 05 06 03 2b 65 71", sigAlg{}, "ed448"},
		{"md5WithRSA", "30 0d 06 09 2a 86 48 86 f7 0d 01 01 04 05 00", sigAlg{}, "unsupported signature algorithm"},
		{"trailing", "30 0a 06 08 2a 86 48 ce 3d 04 03 02 00", sigAlg{}, "malformed"},
		{"truncated", "30 0a 06 08 2a 86 48 ce 3d 04", sigAlg{}, "malformed"},
	} {
		got, err := parseAlgorithmIdentifier(h2b(t, c.der))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err = %v, want %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: got %v %+v, %v; want %+v", c.name, got, got, err, c.want)
		}
	}
}

// method14 assembles method 14 Authentication Data.
func method14(ai, sig []byte) []byte {
	return append(append([]byte{byte(len(ai))}, ai...), sig...)
}

func TestVerifyPeerEncodings(t *testing.T) {
	k := keys(t)
	d := digest(SignatureHashSHA256, octets)
	// sha256WithRSAEncryption without NULL parameters.
	sig, err := rsa.SignPKCS1v15(rand.Reader, k.rsa, gocrypto.SHA256, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyAuth(message.AuthDigitalSignature, method14(h2b(t, "30 0b 06 09 2a 86 48 86 f7 0d 01 01 0b"), sig), &k.rsa.PublicKey, octets, nil); err != nil {
		t.Errorf("PKCS#1 without NULL: %v", err)
	}
	// RFC 7427 A.4.3 encoding (explicit trailerField).
	sig, err = rsa.SignPSS(rand.Reader, k.rsa, gocrypto.SHA256, d, &rsa.PSSOptions{SaltLength: 32})
	if err != nil {
		t.Fatal(err)
	}
	a43 := h2b(t, "30 46 06 09 2a 86 48 86 f7 0d 01 01 0a 30 39 a0 0f 30 0d 06 09 60 86 48 01 65 03 04 02 01 05 00"+
		"a1 1c 30 1a 06 09 2a 86 48 86 f7 0d 01 01 08 30 0d 06 09 60 86 48 01 65 03 04 02 01 05 00"+
		"a2 03 02 01 20 a3 03 02 01 01")
	if err := VerifyAuth(message.AuthDigitalSignature, method14(a43, sig), &k.rsa.PublicKey, octets, nil); err != nil {
		t.Errorf("RFC 7427 A.4.3: %v", err)
	}
}

func TestVerifyRefusals(t *testing.T) {
	k := keys(t)
	ecAuth, err := SignAuth(message.AuthDigitalSignature, k.p256, SignatureHashSHA256, octets)
	if err != nil {
		t.Fatal(err)
	}
	rsaAuth, err := SignAuth(message.AuthDigitalSignature, k.rsa, SignatureHashSHA384, octets)
	if err != nil {
		t.Fatal(err)
	}
	// A genuine rsa-pss-sha1 signature (empty parameters, RFC 7427 A.4.1).
	sha1sig, err := rsa.SignPSS(rand.Reader, k.rsa, gocrypto.SHA1, digest(SignatureHashSHA1, octets), &rsa.PSSOptions{SaltLength: 20})
	if err != nil {
		t.Fatal(err)
	}
	pssSHA1 := method14(h2b(t, "30 0d 06 09 2a 86 48 86 f7 0d 01 01 0a 30 00"), sha1sig)

	for _, c := range []struct {
		name    string
		method  message.AuthMethod
		data    []byte
		pub     gocrypto.PublicKey
		allowed []SignatureHash
		err     string
	}{
		{"ecdsa-with-rsa-key", message.AuthDigitalSignature, ecAuth, &k.rsa.PublicKey, nil, "peer signed with ecdsa-sha256 but its key is RSA-2048"},
		{"rsa-with-ec-key", message.AuthDigitalSignature, rsaAuth, &k.p256.PublicKey, nil, "rsa-pss-sha384 but its key is ECDSA P-256"},
		{"hash-not-allowed", message.AuthDigitalSignature, rsaAuth, &k.rsa.PublicKey, []SignatureHash{SignatureHashSHA256}, "peer signed with rsa-pss-sha384 which we do not accept"},
		{"pss-sha1", message.AuthDigitalSignature, pssSHA1, &k.rsa.PublicKey, nil, "peer signed with rsa-pss-sha1 which we do not accept"},
		{"ecdsa-other-key", message.AuthDigitalSignature, ecAuth, k.p256Othr.Public(), nil, "ECDSA signature (ecdsa-sha256) does not verify"},
		{"method9-p384-key", message.AuthECDSASHA256P256, make([]byte, 64), &k.p384.PublicKey, nil, "its key is ECDSA P-384"},
		{"method9-short", message.AuthECDSASHA256P256, make([]byte, 63), &k.p256.PublicKey, nil, "63 octets, want 64"},
		{"psk", message.AuthPSK, ecAuth, &k.p256.PublicKey, nil, "not a signature method"},
		{"empty", message.AuthDigitalSignature, nil, &k.p256.PublicKey, nil, "shorter than its AlgorithmIdentifier"},
		{"ai-overrun", message.AuthDigitalSignature, []byte{40, 0x30}, &k.p256.PublicKey, nil, "shorter than its AlgorithmIdentifier"},
	} {
		err := VerifyAuth(c.method, c.data, c.pub, octets, c.allowed)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.err)
		}
	}
	// With SHA-1 allowed, the same signature verifies.
	if err := VerifyAuth(message.AuthDigitalSignature, pssSHA1, &k.rsa.PublicKey, octets, []SignatureHash{SignatureHashSHA1}); err != nil {
		t.Errorf("rsa-pss-sha1 with SHA1 allowed: %v", err)
	}
}

func TestSignRefusals(t *testing.T) {
	k := keys(t)
	for _, c := range []struct {
		name   string
		method message.AuthMethod
		key    gocrypto.Signer
		hash   SignatureHash
		err    string
	}{
		{"ed25519-sha256", message.AuthDigitalSignature, k.ed25519, SignatureHashSHA256, "Identity hash"},
		{"rsa-identity", message.AuthDigitalSignature, k.rsa, SignatureHashIdentity, "RSA cannot sign with hash IDENTITY"},
		{"method1-ec", message.AuthRSASig, k.p256, 0, "needs an RSA key"},
		{"method10-p256", message.AuthECDSASHA384P384, k.p256, 0, "needs an ECDSA P-384 key, not ECDSA P-256"},
		{"nil-key", message.AuthDigitalSignature, nil, SignatureHashSHA256, "no private key"},
		{"null-method", message.AuthNull, k.p256, SignatureHashSHA256, "not a signature method"},
	} {
		_, err := SignAuth(c.method, c.key, c.hash, octets)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.err)
		}
	}
}

// ecdsaSigDER encodes r and s as an ECDSA-Sig-Value, with optional raw
// replacement for malformed encodings.
func ecdsaSigDER(r, s *big.Int) []byte {
	b, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
	if err != nil {
		panic(err)
	}
	return b
}

// Negative cases in the manner of Wycheproof's ecdsa_secp256r1_sha256
// tests, written from their descriptions.
func TestECDSAWycheproofStyle(t *testing.T) {
	k := keys(t)
	pub := &k.p256.PublicKey
	n := elliptic.P256().Params().N
	good, err := ecdsa.SignASN1(rand.Reader, k.p256, digest(SignatureHashSHA256, octets))
	if err != nil {
		t.Fatal(err)
	}
	var sv struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(good, &sv); err != nil {
		t.Fatal(err)
	}
	r, s := sv.R, sv.S
	ai := sigAlg{family: familyECDSA, hash: SignatureHashSHA256}.algorithmIdentifier()
	zero, one := big.NewInt(0), big.NewInt(1)
	nPlus := func(x *big.Int) *big.Int { return new(big.Int).Add(x, n) }

	if err := VerifyAuth(message.AuthDigitalSignature, method14(ai, good), pub, octets, nil); err != nil {
		t.Fatalf("valid signature: %v", err)
	}
	// Wycheproof treats s and n - s as both valid for plain ECDSA.
	if err := VerifyAuth(message.AuthDigitalSignature, method14(ai, ecdsaSigDER(r, new(big.Int).Sub(n, s))), pub, octets, nil); err != nil {
		t.Errorf("n - s (malleable but valid): %v", err)
	}

	longLen := append([]byte{0x30, 0x81, byte(len(good) - 2)}, good[2:]...) // BER long form length
	cases := map[string][]byte{
		"r = 0":                  ecdsaSigDER(zero, s),
		"s = 0":                  ecdsaSigDER(r, zero),
		"r = s = 0":              ecdsaSigDER(zero, zero),
		"s = n":                  ecdsaSigDER(r, n),
		"r = n":                  ecdsaSigDER(n, s),
		"r + n":                  ecdsaSigDER(nPlus(r), s),
		"s + n":                  ecdsaSigDER(r, nPlus(s)),
		"r = 1, s = 1":           ecdsaSigDER(one, one),
		"r = -r":                 ecdsaSigDER(new(big.Int).Neg(r), s),
		"long form length":       longLen,
		"trailing garbage":       append(bytes.Clone(good), 0),
		"truncated":              good[:len(good)-1],
		"empty":                  nil,
		"swapped r and s":        ecdsaSigDER(s, r),
		"raw r|s in method 14":   append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...),
		"sequence of one int":    h2b(t, "30 03 02 01 01"),
		"integer with leading 0": append([]byte{0x30, byte(len(good) - 1), 0x02, good[3] + 1, 0x00}, good[4:]...),
	}
	for name, sig := range cases {
		if err := VerifyAuth(message.AuthDigitalSignature, method14(ai, sig), pub, octets, nil); err == nil {
			t.Errorf("%s: verified", name)
		}
	}

	// The same for RFC 4754's r | s.
	raw := func(r, s *big.Int) []byte {
		out := make([]byte, 64)
		if r.Sign() >= 0 && r.BitLen() <= 256 {
			r.FillBytes(out[:32])
		}
		if s.Sign() >= 0 && s.BitLen() <= 256 {
			s.FillBytes(out[32:])
		}
		return out
	}
	if err := VerifyAuth(message.AuthECDSASHA256P256, raw(r, s), pub, octets, nil); err != nil {
		t.Fatalf("valid r|s: %v", err)
	}
	for name, sig := range map[string][]byte{
		"r = 0": raw(zero, s), "s = 0": raw(r, zero), "s = n": raw(r, n), "r = n": raw(n, s),
		"all ones": bytes.Repeat([]byte{0xff}, 64), "swapped": raw(s, r),
	} {
		if err := VerifyAuth(message.AuthECDSASHA256P256, sig, pub, octets, nil); err == nil {
			t.Errorf("r|s %s: verified", name)
		}
	}
}

// Negative cases in the manner of Wycheproof's rsa_pss_*_test: the salt
// length declared in the parameters must be the one used.
func TestRSAPSSWycheproofStyle(t *testing.T) {
	k := keys(t)
	d := digest(SignatureHashSHA256, octets)
	sign := func(salt int) []byte {
		sig, err := rsa.SignPSS(rand.Reader, k.rsa, gocrypto.SHA256, d, &rsa.PSSOptions{SaltLength: salt})
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	ai := func(salt int) []byte {
		return sigAlg{family: familyRSAPSS, hash: SignatureHashSHA256, salt: salt}.algorithmIdentifier()
	}
	pub := &k.rsa.PublicKey
	for _, c := range []struct {
		name           string
		signed, stated int
		ok             bool
	}{
		{"salt 32 as stated", 32, 32, true},
		{"salt 0 as stated", 0, 0, true},
		{"salt 20 as stated", 20, 20, true},
		{"salt 20 stated 32", 20, 32, false},
		{"salt 32 stated 20", 32, 20, false},
		{"salt 0 stated 32", 0, 32, false},
		{"salt 33 stated 32", 33, 32, false},
	} {
		err := VerifyAuth(message.AuthDigitalSignature, method14(ai(c.stated), sign(c.signed)), pub, octets, nil)
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v", c.name, err)
		}
	}
	// A PKCS#1 v1.5 signature presented as PSS and vice versa.
	p1, _ := rsa.SignPKCS1v15(rand.Reader, k.rsa, gocrypto.SHA256, d)
	if VerifyAuth(message.AuthDigitalSignature, method14(ai(32), p1), pub, octets, nil) == nil {
		t.Error("PKCS#1 v1.5 signature verified as PSS")
	}
	pk1 := sigAlg{family: familyRSAPKCS1, hash: SignatureHashSHA256}.algorithmIdentifier()
	if VerifyAuth(message.AuthDigitalSignature, method14(pk1, sign(32)), pub, octets, nil) == nil {
		t.Error("PSS signature verified as PKCS#1 v1.5")
	}
	// A signature one octet short, and one equal to the modulus.
	sig := sign(32)
	if VerifyAuth(message.AuthDigitalSignature, method14(ai(32), sig[1:]), pub, octets, nil) == nil {
		t.Error("short signature verified")
	}
	if VerifyAuth(message.AuthDigitalSignature, method14(ai(32), pub.N.Bytes()), pub, octets, nil) == nil {
		t.Error("signature = n verified")
	}
}

func TestSignatureHashes(t *testing.T) {
	data := AppendSignatureHashes(nil, DefaultSignatureHashes)
	if !bytes.Equal(data, []byte{0, 2, 0, 3, 0, 4, 0, 5}) {
		t.Errorf("notify data % x", data)
	}
	hs, err := ParseSignatureHashes([]byte{0, 1, 0, 2, 0, 9})
	if err != nil || len(hs) != 3 || hs[0] != SignatureHashSHA1 || hs[2] != 9 {
		t.Errorf("parse: %v %v", hs, err)
	}
	if _, err := ParseSignatureHashes([]byte{0, 1, 0}); err == nil {
		t.Error("odd length accepted")
	}
	if s := SignatureHash(9).String(); s != "HASH_9" {
		t.Error(s)
	}
	k := keys(t)
	peer := []SignatureHash{SignatureHashSHA256, SignatureHashSHA384, SignatureHashSHA512, SignatureHashIdentity}
	for _, c := range []struct {
		pub  gocrypto.PublicKey
		peer []SignatureHash
		want SignatureHash
		ok   bool
	}{
		{&k.rsa.PublicKey, peer, SignatureHashSHA256, true},
		{&k.p384.PublicKey, peer, SignatureHashSHA384, true},
		{&k.p521.PublicKey, peer, SignatureHashSHA512, true},
		{&k.p521.PublicKey, []SignatureHash{SignatureHashSHA256}, SignatureHashSHA256, true},
		{k.ed25519.Public(), peer, SignatureHashIdentity, true},
		{k.ed25519.Public(), peer[:3], 0, false},
		{&k.rsa.PublicKey, []SignatureHash{SignatureHashSHA1}, 0, false},
	} {
		h, ok := ChooseSignatureHash(c.pub, c.peer, nil)
		if h != c.want || ok != c.ok {
			t.Errorf("%s with %v: %v %v, want %v %v", keyTypeName(c.pub), c.peer, h, ok, c.want, c.ok)
		}
	}
}

func FuzzVerifyAuth(f *testing.F) {
	k := keys(f)
	for _, key := range []gocrypto.Signer{k.rsa, k.p256, k.ed25519} {
		h := SignatureHashSHA256
		if _, ok := key.(ed25519.PrivateKey); ok {
			h = SignatureHashIdentity
		}
		a, err := SignAuth(message.AuthDigitalSignature, key, h, octets)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(a)
	}
	pubs := []gocrypto.PublicKey{&k.rsa.PublicKey, &k.p256.PublicKey, k.ed25519.Public()}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, m := range []message.AuthMethod{message.AuthDigitalSignature, message.AuthRSASig, message.AuthECDSASHA256P256} {
			for _, p := range pubs {
				_ = VerifyAuth(m, data, p, octets, []SignatureHash{1, 2, 3, 4, 5}) // must not panic
			}
		}
	})
}
