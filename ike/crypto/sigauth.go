package crypto

// Signature AUTH payloads (RFC 7296 §2.15 and §3.8, RFC 4754, RFC 7427,
// RFC 8420).
//
// The Authentication Data of each method:
//
//	method 1  RSA Digital Signature: RSASSA-PKCS1-v1_5 with SHA-1 over the
//	          signed octets (RFC 7296 §3.8).
//	method 9  ECDSA with SHA-256 on P-256 (RFC 4754): r | s, 32 octets each.
//	method 10 ECDSA with SHA-384 on P-384: r | s, 48 octets each.
//	method 11 ECDSA with SHA-512 on P-521: r | s, 66 octets each.
//	method 14 Digital Signature (RFC 7427 §3):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| ASN.1 Length  | AlgorithmIdentifier ASN.1 object              |
//	+-+-+-+-+-+-+-+-+                                               +
//	~        AlgorithmIdentifier ASN.1 object continuing            ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                         Signature Value                       ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// where the AlgorithmIdentifier is the DER of RFC 5280's structure naming
// the signature algorithm, and the Signature Value is what that algorithm
// produces: the RSA signature for RSASSA-PKCS1-v1_5 and RSASSA-PSS, the
// DER ECDSA-Sig-Value SEQUENCE { r, s } for ECDSA (RFC 7427 §3, unlike
// methods 9-11), the 64 octets of Ed25519 (RFC 8420, which signs the
// octets themselves: the Identity hash).
//
// We send RSASSA-PSS with the salt length equal to the hash length and
// MGF1 with the same hash (RFC 8247 §3.2, as strongSwan and Libreswan do),
// encoded as DER without the default trailerField. We accept what peers
// send: PKCS#1 v1.5 identifiers with and without NULL parameters, PSS
// parameters with any salt length and an explicit trailerField (RFC 7427
// appendix A.4.3 writes one), ECDSA identifiers with absent or NULL
// parameters.
//
// Verification works on public data only, so there is no secret to
// compare in constant time here; the shared key method's comparison is in
// auth.go.

import (
	gocrypto "crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strconv"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"goswan/ike/message"
)

// SignatureHash is a hash algorithm of the SIGNATURE_HASH_ALGORITHMS
// notification (RFC 7427 §4, IANA "IKEv2 Hash Algorithms").
type SignatureHash uint16

// Hash algorithms of RFC 7427 §4 and RFC 8420.
const (
	SignatureHashSHA1     SignatureHash = 1
	SignatureHashSHA256   SignatureHash = 2
	SignatureHashSHA384   SignatureHash = 3
	SignatureHashSHA512   SignatureHash = 4
	SignatureHashIdentity SignatureHash = 5 // RFC 8420: the signature algorithm hashes (Ed25519)
)

// DefaultSignatureHashes are the hashes this implementation announces and
// accepts unless configured otherwise: the SHA-2 family and Identity.
// SHA-1 is refused (RFC 8247 §3.2: MUST NOT for method 14).
var DefaultSignatureHashes = []SignatureHash{SignatureHashSHA256, SignatureHashSHA384, SignatureHashSHA512, SignatureHashIdentity}

var signatureHashNames = map[SignatureHash]string{
	SignatureHashSHA1:     "SHA1",
	SignatureHashSHA256:   "SHA2_256",
	SignatureHashSHA384:   "SHA2_384",
	SignatureHashSHA512:   "SHA2_512",
	SignatureHashIdentity: "IDENTITY",
}

func (h SignatureHash) String() string {
	if s, ok := signatureHashNames[h]; ok {
		return s
	}
	return "HASH_" + strconv.Itoa(int(h))
}

// goHash is the crypto.Hash of h, 0 for Identity or an unknown value.
func (h SignatureHash) goHash() gocrypto.Hash {
	switch h {
	case SignatureHashSHA1:
		return gocrypto.SHA1
	case SignatureHashSHA256:
		return gocrypto.SHA256
	case SignatureHashSHA384:
		return gocrypto.SHA384
	case SignatureHashSHA512:
		return gocrypto.SHA512
	}
	return 0
}

// ParseSignatureHashes reads the data of a SIGNATURE_HASH_ALGORITHMS
// notification: a list of 16-bit hash algorithm identifiers. Unknown
// values are kept (the caller intersects with what it supports).
func ParseSignatureHashes(data []byte) ([]SignatureHash, error) {
	if len(data)%2 != 0 {
		return nil, fmt.Errorf("SIGNATURE_HASH_ALGORITHMS data is %d octets, not a multiple of 2", len(data))
	}
	hs := make([]SignatureHash, 0, len(data)/2)
	for i := 0; i < len(data); i += 2 {
		hs = append(hs, SignatureHash(binary.BigEndian.Uint16(data[i:])))
	}
	return hs, nil
}

// AppendSignatureHashes appends the SIGNATURE_HASH_ALGORITHMS notification
// data for hs to dst.
func AppendSignatureHashes(dst []byte, hs []SignatureHash) []byte {
	for _, h := range hs {
		dst = binary.BigEndian.AppendUint16(dst, uint16(h))
	}
	return dst
}

// ChooseSignatureHash picks the hash for a method 14 signature with a key
// whose public half is pub, from the hashes the peer announced (peer) that
// we also support (ours; nil means DefaultSignatureHashes). Ed25519 needs
// Identity; ECDSA prefers the hash matching the curve's strength (SHA-256
// for P-256, SHA-384 for P-384, SHA-512 for P-521), then the strongest
// other; RSA prefers SHA-256, then SHA-384, SHA-512. ok is false when
// there is no common hash that fits the key.
func ChooseSignatureHash(pub gocrypto.PublicKey, peer, ours []SignatureHash) (h SignatureHash, ok bool) {
	if ours == nil {
		ours = DefaultSignatureHashes
	}
	common := func(c SignatureHash) bool { return slices.Contains(peer, c) && slices.Contains(ours, c) }
	var prefs []SignatureHash
	switch k := pub.(type) {
	case ed25519.PublicKey:
		prefs = []SignatureHash{SignatureHashIdentity}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P384():
			prefs = []SignatureHash{SignatureHashSHA384, SignatureHashSHA512, SignatureHashSHA256}
		case elliptic.P521():
			prefs = []SignatureHash{SignatureHashSHA512, SignatureHashSHA384, SignatureHashSHA256}
		default:
			prefs = []SignatureHash{SignatureHashSHA256, SignatureHashSHA384, SignatureHashSHA512}
		}
	case *rsa.PublicKey:
		prefs = []SignatureHash{SignatureHashSHA256, SignatureHashSHA384, SignatureHashSHA512}
	}
	for _, c := range prefs {
		if common(c) {
			return c, true
		}
	}
	return 0, false
}

// Object identifiers of the signature algorithms (RFC 3279, RFC 4055,
// RFC 5758, RFC 8410).
var (
	oidSHA1WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
	oidSHA256WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	oidRSASSAPSS     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidMGF1          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidSHA1          = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
	oidECDSAWithSHA1 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}
	oidECDSAWithSHA2 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA3 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSAWithSHA5 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidEd25519       = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidEd448         = asn1.ObjectIdentifier{1, 3, 101, 113}
)

// sigFamily is the kind of key a signature algorithm needs.
type sigFamily uint8

const (
	familyRSAPKCS1 sigFamily = iota + 1
	familyRSAPSS
	familyECDSA
	familyEd25519
)

// sigAlg is a parsed method 14 AlgorithmIdentifier.
type sigAlg struct {
	family sigFamily
	hash   SignatureHash
	salt   int // RSASSA-PSS salt length in octets
}

// String is the algorithm's name as errors and logs show it, in the
// style of Libreswan and strongSwan: rsa-pss-sha256, rsa-pkcs1-sha256,
// ecdsa-sha384, ed25519.
func (a sigAlg) String() string {
	h := map[SignatureHash]string{
		SignatureHashSHA1: "sha1", SignatureHashSHA256: "sha256",
		SignatureHashSHA384: "sha384", SignatureHashSHA512: "sha512",
	}[a.hash]
	switch a.family {
	case familyRSAPKCS1:
		return "rsa-pkcs1-" + h
	case familyRSAPSS:
		return "rsa-pss-" + h
	case familyECDSA:
		return "ecdsa-" + h
	case familyEd25519:
		return "ed25519"
	}
	return "unknown"
}

func hashOID(h SignatureHash) asn1.ObjectIdentifier {
	switch h {
	case SignatureHashSHA1:
		return oidSHA1
	case SignatureHashSHA256:
		return oidSHA256
	case SignatureHashSHA384:
		return oidSHA384
	case SignatureHashSHA512:
		return oidSHA512
	}
	return nil
}

func hashFromOID(oid asn1.ObjectIdentifier) (SignatureHash, bool) {
	for _, h := range []SignatureHash{SignatureHashSHA1, SignatureHashSHA256, SignatureHashSHA384, SignatureHashSHA512} {
		if oid.Equal(hashOID(h)) {
			return h, true
		}
	}
	return 0, false
}

// algorithmIdentifier returns the DER AlgorithmIdentifier we send for a.
func (a sigAlg) algorithmIdentifier() []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		switch a.family {
		case familyRSAPKCS1:
			b.AddASN1ObjectIdentifier(map[SignatureHash]asn1.ObjectIdentifier{
				SignatureHashSHA1: oidSHA1WithRSA, SignatureHashSHA256: oidSHA256WithRSA,
				SignatureHashSHA384: oidSHA384WithRSA, SignatureHashSHA512: oidSHA512WithRSA,
			}[a.hash])
			b.AddASN1NULL()
		case familyRSAPSS:
			hashAlg := func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(hashOID(a.hash))
					b.AddASN1NULL()
				})
			}
			b.AddASN1ObjectIdentifier(oidRSASSAPSS)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), hashAlg)
				b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(oidMGF1)
						hashAlg(b)
					})
				})
				b.AddASN1(cbasn1.Tag(2).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1Int64(int64(a.salt))
				})
			})
		case familyECDSA:
			b.AddASN1ObjectIdentifier(map[SignatureHash]asn1.ObjectIdentifier{
				SignatureHashSHA1: oidECDSAWithSHA1, SignatureHashSHA256: oidECDSAWithSHA2,
				SignatureHashSHA384: oidECDSAWithSHA3, SignatureHashSHA512: oidECDSAWithSHA5,
			}[a.hash])
		case familyEd25519:
			b.AddASN1ObjectIdentifier(oidEd25519)
		}
	})
	return b.BytesOrPanic()
}

// parseHashAlgorithm reads a DigestAlgorithmIdentifier (hash OID with
// absent or NULL parameters).
func parseHashAlgorithm(s cryptobyte.String) (SignatureHash, error) {
	var oid asn1.ObjectIdentifier
	if !s.ReadASN1ObjectIdentifier(&oid) {
		return 0, errors.New("malformed hash AlgorithmIdentifier")
	}
	if s.PeekASN1Tag(cbasn1.NULL) {
		var null cryptobyte.String
		s.ReadASN1(&null, cbasn1.NULL)
		if len(null) != 0 {
			return 0, errors.New("malformed NULL parameters")
		}
	}
	if !s.Empty() {
		return 0, fmt.Errorf("unexpected parameters of hash %v", oid)
	}
	h, ok := hashFromOID(oid)
	if !ok {
		return 0, fmt.Errorf("unsupported hash algorithm %v", oid)
	}
	return h, nil
}

// parsePSSParams reads RSASSA-PSS-params (RFC 4055 §3.1), applying the
// defaults (SHA-1, MGF1 with SHA-1, salt 20, trailer 1) for absent fields.
func parsePSSParams(params cryptobyte.String) (sigAlg, error) {
	a := sigAlg{family: familyRSAPSS, hash: SignatureHashSHA1, salt: 20}
	mgfHash := SignatureHashSHA1
	var seq cryptobyte.String
	if !params.ReadASN1(&seq, cbasn1.SEQUENCE) || !params.Empty() {
		return a, errors.New("malformed RSASSA-PSS parameters")
	}
	var field cryptobyte.String
	var present bool
	tag := func(n uint8) cbasn1.Tag { return cbasn1.Tag(n).Constructed().ContextSpecific() }
	if !seq.ReadOptionalASN1(&field, &present, tag(0)) {
		return a, errors.New("malformed RSASSA-PSS hashAlgorithm")
	}
	if present {
		var alg cryptobyte.String
		if !field.ReadASN1(&alg, cbasn1.SEQUENCE) || !field.Empty() {
			return a, errors.New("malformed RSASSA-PSS hashAlgorithm")
		}
		h, err := parseHashAlgorithm(alg)
		if err != nil {
			return a, fmt.Errorf("RSASSA-PSS hashAlgorithm: %w", err)
		}
		a.hash = h
	}
	if !seq.ReadOptionalASN1(&field, &present, tag(1)) {
		return a, errors.New("malformed RSASSA-PSS maskGenAlgorithm")
	}
	if present {
		var mgf, mgfAlg cryptobyte.String
		var oid asn1.ObjectIdentifier
		if !field.ReadASN1(&mgf, cbasn1.SEQUENCE) || !field.Empty() ||
			!mgf.ReadASN1ObjectIdentifier(&oid) ||
			!mgf.ReadASN1(&mgfAlg, cbasn1.SEQUENCE) || !mgf.Empty() {
			return a, errors.New("malformed RSASSA-PSS maskGenAlgorithm")
		}
		if !oid.Equal(oidMGF1) {
			return a, fmt.Errorf("RSASSA-PSS mask generation function %v is not MGF1", oid)
		}
		h, err := parseHashAlgorithm(mgfAlg)
		if err != nil {
			return a, fmt.Errorf("RSASSA-PSS MGF1: %w", err)
		}
		mgfHash = h
	}
	if !seq.ReadOptionalASN1(&field, &present, tag(2)) {
		return a, errors.New("malformed RSASSA-PSS saltLength")
	}
	if present {
		var salt int64
		if !field.ReadASN1Int64WithTag(&salt, cbasn1.INTEGER) || !field.Empty() {
			return a, errors.New("malformed RSASSA-PSS saltLength")
		}
		if salt < 0 || salt > 1024 {
			return a, fmt.Errorf("RSASSA-PSS salt length %d out of range", salt)
		}
		a.salt = int(salt)
	}
	if !seq.ReadOptionalASN1(&field, &present, tag(3)) {
		return a, errors.New("malformed RSASSA-PSS trailerField")
	}
	if present {
		var trailer int64
		if !field.ReadASN1Int64WithTag(&trailer, cbasn1.INTEGER) || !field.Empty() {
			return a, errors.New("malformed RSASSA-PSS trailerField")
		}
		if trailer != 1 {
			return a, fmt.Errorf("RSASSA-PSS trailerField %d is not 1 (trailerFieldBC)", trailer)
		}
	}
	if !seq.Empty() {
		return a, errors.New("trailing data in RSASSA-PSS parameters")
	}
	if mgfHash != a.hash {
		return a, fmt.Errorf("RSASSA-PSS with hash %v but MGF1 with %v", a.hash, mgfHash)
	}
	return a, nil
}

// parseAlgorithmIdentifier reads a method 14 AlgorithmIdentifier.
func parseAlgorithmIdentifier(der []byte) (sigAlg, error) {
	s := cryptobyte.String(der)
	var seq cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() || !seq.ReadASN1ObjectIdentifier(&oid) {
		return sigAlg{}, errors.New("malformed AlgorithmIdentifier")
	}
	params := seq
	absentOrNULL := func() bool {
		return len(params) == 0 || (len(params) == 2 && params[0] == 0x05 && params[1] == 0)
	}
	for _, c := range []struct {
		oid asn1.ObjectIdentifier
		alg sigAlg
	}{
		{oidSHA1WithRSA, sigAlg{family: familyRSAPKCS1, hash: SignatureHashSHA1}},
		{oidSHA256WithRSA, sigAlg{family: familyRSAPKCS1, hash: SignatureHashSHA256}},
		{oidSHA384WithRSA, sigAlg{family: familyRSAPKCS1, hash: SignatureHashSHA384}},
		{oidSHA512WithRSA, sigAlg{family: familyRSAPKCS1, hash: SignatureHashSHA512}},
		{oidECDSAWithSHA1, sigAlg{family: familyECDSA, hash: SignatureHashSHA1}},
		{oidECDSAWithSHA2, sigAlg{family: familyECDSA, hash: SignatureHashSHA256}},
		{oidECDSAWithSHA3, sigAlg{family: familyECDSA, hash: SignatureHashSHA384}},
		{oidECDSAWithSHA5, sigAlg{family: familyECDSA, hash: SignatureHashSHA512}},
		{oidEd25519, sigAlg{family: familyEd25519, hash: SignatureHashIdentity}},
	} {
		if oid.Equal(c.oid) {
			if !absentOrNULL() {
				return sigAlg{}, fmt.Errorf("unexpected parameters for %v", c.alg)
			}
			if c.alg.family == familyEd25519 && len(params) != 0 {
				return sigAlg{}, errors.New("ed25519 AlgorithmIdentifier must have absent parameters (RFC 8410)")
			}
			return c.alg, nil
		}
	}
	switch {
	case oid.Equal(oidRSASSAPSS):
		if len(params) == 0 {
			return sigAlg{}, errors.New("RSASSA-PSS AlgorithmIdentifier without parameters")
		}
		return parsePSSParams(params)
	case oid.Equal(oidEd448):
		return sigAlg{}, errors.New("peer signed with ed448, which is not supported")
	}
	return sigAlg{}, fmt.Errorf("unsupported signature algorithm %v", oid)
}

// legacyECDSA describes the RFC 4754 methods.
var legacyECDSA = map[message.AuthMethod]struct {
	curve elliptic.Curve
	hash  SignatureHash
}{
	message.AuthECDSASHA256P256: {elliptic.P256(), SignatureHashSHA256},
	message.AuthECDSASHA384P384: {elliptic.P384(), SignatureHashSHA384},
	message.AuthECDSASHA512P521: {elliptic.P521(), SignatureHashSHA512},
}

func digest(h SignatureHash, data []byte) []byte {
	switch h {
	case SignatureHashSHA1:
		d := sha1.Sum(data)
		return d[:]
	case SignatureHashSHA256:
		d := sha256.Sum256(data)
		return d[:]
	case SignatureHashSHA384:
		d := sha512.Sum384(data)
		return d[:]
	case SignatureHashSHA512:
		d := sha512.Sum512(data)
		return d[:]
	}
	return nil
}

func keyTypeName(pub gocrypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	case nil:
		return "no key"
	}
	return fmt.Sprintf("%T", pub)
}

// SignOptions adjusts SignAuthWith.
type SignOptions struct {
	// RSAPKCS1v15 makes a method 14 RSA signature RSASSA-PKCS1-v1_5
	// (sha*WithRSAEncryption) instead of RSASSA-PSS, for peers that do
	// not verify PSS.
	RSAPKCS1v15 bool
	// Rand is the randomness for RSASSA-PSS salts and ECDSA; nil means
	// crypto/rand.Reader.
	Rand io.Reader
}

// SignAuth returns the Authentication Data of an AUTH payload with method
// (1, 9, 10, 11 or 14) signing signedOctets (see SignedOctets) with key.
// hash is the method 14 hash (one the peer announced in
// SIGNATURE_HASH_ALGORITHMS; Identity for Ed25519); methods 1, 9, 10 and
// 11 fix their hash and ignore it. Method 14 RSA signatures are
// RSASSA-PSS; see SignAuthWith for PKCS#1 v1.5.
func SignAuth(method message.AuthMethod, key gocrypto.Signer, hash SignatureHash, signedOctets []byte) ([]byte, error) {
	return SignAuthWith(method, key, hash, signedOctets, SignOptions{})
}

// SignAuthWith is SignAuth with options.
func SignAuthWith(method message.AuthMethod, key gocrypto.Signer, hash SignatureHash, signedOctets []byte, o SignOptions) ([]byte, error) {
	if key == nil {
		return nil, errors.New("no private key to sign the AUTH payload")
	}
	rnd := o.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	pub := key.Public()
	switch method {
	case message.AuthRSASig:
		if _, ok := pub.(*rsa.PublicKey); !ok {
			return nil, fmt.Errorf("auth method %v needs an RSA key, not %s", method, keyTypeName(pub))
		}
		return key.Sign(rnd, digest(SignatureHashSHA1, signedOctets), gocrypto.SHA1)

	case message.AuthECDSASHA256P256, message.AuthECDSASHA384P384, message.AuthECDSASHA512P521:
		m := legacyECDSA[method]
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || k.Curve != m.curve {
			return nil, fmt.Errorf("auth method %v needs an ECDSA %s key, not %s", method, m.curve.Params().Name, keyTypeName(pub))
		}
		der, err := key.Sign(rnd, digest(m.hash, signedOctets), m.hash.goHash())
		if err != nil {
			return nil, err
		}
		return ecdsaDERToRaw(der, m.curve)

	case message.AuthDigitalSignature:
		var a sigAlg
		var sig []byte
		var err error
		switch pub.(type) {
		case *rsa.PublicKey:
			h := hash.goHash()
			if h == 0 {
				return nil, fmt.Errorf("RSA cannot sign with hash %v", hash)
			}
			if o.RSAPKCS1v15 {
				a = sigAlg{family: familyRSAPKCS1, hash: hash}
				sig, err = key.Sign(rnd, digest(hash, signedOctets), h)
			} else {
				a = sigAlg{family: familyRSAPSS, hash: hash, salt: h.Size()}
				sig, err = key.Sign(rnd, digest(hash, signedOctets), &rsa.PSSOptions{SaltLength: h.Size(), Hash: h})
			}
		case *ecdsa.PublicKey:
			h := hash.goHash()
			if h == 0 {
				return nil, fmt.Errorf("ECDSA cannot sign with hash %v", hash)
			}
			a = sigAlg{family: familyECDSA, hash: hash}
			sig, err = key.Sign(rnd, digest(hash, signedOctets), h)
		case ed25519.PublicKey:
			if hash != SignatureHashIdentity {
				return nil, fmt.Errorf("Ed25519 signs with the Identity hash (RFC 8420), not %v", hash)
			}
			a = sigAlg{family: familyEd25519, hash: hash}
			sig, err = key.Sign(rnd, signedOctets, gocrypto.Hash(0))
		default:
			return nil, fmt.Errorf("unsupported key type %s for auth method %v", keyTypeName(pub), method)
		}
		if err != nil {
			return nil, fmt.Errorf("signing with %v: %w", a, err)
		}
		ai := a.algorithmIdentifier()
		out := make([]byte, 0, 1+len(ai)+len(sig))
		out = append(out, byte(len(ai)))
		out = append(out, ai...)
		return append(out, sig...), nil
	}
	return nil, fmt.Errorf("auth method %v is not a signature method", method)
}

// ecdsaDERToRaw turns an ECDSA-Sig-Value into RFC 4754's r | s.
func ecdsaDERToRaw(der []byte, c elliptic.Curve) ([]byte, error) {
	var r, s big.Int
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) || !seq.Empty() {
		return nil, errors.New("signer returned a malformed ECDSA signature")
	}
	n := (c.Params().BitSize + 7) / 8
	out := make([]byte, 2*n)
	r.FillBytes(out[:n])
	s.FillBytes(out[n:])
	return out, nil
}

// ErrSignatureMismatch is wrapped by VerifyAuth's error when a well-formed
// signature does not verify with the key.
var ErrSignatureMismatch = errors.New("signature does not verify")

// VerifyAuth checks the Authentication Data data of an AUTH payload with
// method (1, 9, 10, 11 or 14) against signedOctets (the peer's, see
// SignedOctets) and the peer's public key pub (from its certificate or a
// configured raw key).
//
// For method 14, allowed lists the hashes this side accepts, normally
// those it announced in SIGNATURE_HASH_ALGORITHMS; nil means
// DefaultSignatureHashes. A signature whose algorithm uses another hash,
// or that does not fit the key's type, is refused before any
// verification. Whether methods 1 and 9-11 are acceptable at all (method
// 1 implies SHA-1) is the caller's policy; allowed does not apply to them.
func VerifyAuth(method message.AuthMethod, data []byte, pub gocrypto.PublicKey, signedOctets []byte, allowed []SignatureHash) error {
	if allowed == nil {
		allowed = DefaultSignatureHashes
	}
	switch method {
	case message.AuthRSASig:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("peer used auth method %v but its key is %s", method, keyTypeName(pub))
		}
		if err := rsa.VerifyPKCS1v15(k, gocrypto.SHA1, digest(SignatureHashSHA1, signedOctets), data); err != nil {
			return fmt.Errorf("RSA (auth method 1, rsa-pkcs1-sha1) signature does not verify with the peer's key: %w", ErrSignatureMismatch)
		}
		return nil

	case message.AuthECDSASHA256P256, message.AuthECDSASHA384P384, message.AuthECDSASHA512P521:
		m := legacyECDSA[method]
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || k.Curve != m.curve {
			return fmt.Errorf("peer used auth method %v but its key is %s", method, keyTypeName(pub))
		}
		n := (m.curve.Params().BitSize + 7) / 8
		if len(data) != 2*n {
			return fmt.Errorf("auth method %v signature is %d octets, want %d (r | s)", method, len(data), 2*n)
		}
		r := new(big.Int).SetBytes(data[:n])
		s := new(big.Int).SetBytes(data[n:])
		if !ecdsa.Verify(k, digest(m.hash, signedOctets), r, s) {
			return fmt.Errorf("ECDSA signature (auth method %v) does not verify with the peer's key: %w", method, ErrSignatureMismatch)
		}
		return nil

	case message.AuthDigitalSignature:
		if len(data) < 1 || len(data) < 1+int(data[0]) {
			return fmt.Errorf("digital signature AUTH data of %d octets is shorter than its AlgorithmIdentifier", len(data))
		}
		a, err := parseAlgorithmIdentifier(data[1 : 1+int(data[0])])
		if err != nil {
			return fmt.Errorf("digital signature AUTH: %w", err)
		}
		sig := data[1+int(data[0]):]
		if !slices.Contains(allowed, a.hash) {
			return fmt.Errorf("peer signed with %v which we do not accept (hash %v not in %v)", a, a.hash, allowed)
		}
		switch a.family {
		case familyRSAPKCS1, familyRSAPSS:
			k, ok := pub.(*rsa.PublicKey)
			if !ok {
				return fmt.Errorf("peer signed with %v but its key is %s", a, keyTypeName(pub))
			}
			d := digest(a.hash, signedOctets)
			if a.family == familyRSAPKCS1 {
				err = rsa.VerifyPKCS1v15(k, a.hash.goHash(), d, sig)
			} else {
				err = rsa.VerifyPSS(k, a.hash.goHash(), d, sig, &rsa.PSSOptions{SaltLength: a.salt, Hash: a.hash.goHash()})
			}
			if err != nil {
				return fmt.Errorf("RSA signature (%v) does not verify with the peer's key: %w", a, ErrSignatureMismatch)
			}
		case familyECDSA:
			k, ok := pub.(*ecdsa.PublicKey)
			if !ok {
				return fmt.Errorf("peer signed with %v but its key is %s", a, keyTypeName(pub))
			}
			if !ecdsa.VerifyASN1(k, digest(a.hash, signedOctets), sig) {
				return fmt.Errorf("ECDSA signature (%v) does not verify with the peer's key: %w", a, ErrSignatureMismatch)
			}
		case familyEd25519:
			k, ok := pub.(ed25519.PublicKey)
			if !ok {
				return fmt.Errorf("peer signed with %v but its key is %s", a, keyTypeName(pub))
			}
			if len(k) != ed25519.PublicKeySize || !ed25519.Verify(k, signedOctets, sig) {
				return fmt.Errorf("Ed25519 signature does not verify with the peer's key: %w", ErrSignatureMismatch)
			}
		}
		return nil
	}
	return fmt.Errorf("auth method %v is not a signature method", method)
}
