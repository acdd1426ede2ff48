package pki

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
)

// ErrEncryptedKey is wrapped by the errors for an encrypted private key
// read without a passphrase.
var ErrEncryptedKey = errors.New("private key is encrypted")

// ErrWrongPassphrase is wrapped by the errors for an encrypted private key
// that does not decrypt with the passphrase given.
var ErrWrongPassphrase = errors.New("wrong passphrase or corrupted private key")

// LoadPrivateKey reads a private key file as ipsec.secrets names it
// (`: RSA /path/key.pem "passphrase"`, likewise ECDSA and EDDSA): PEM or
// DER; PKCS#8, encrypted PKCS#8 (PBES2), PKCS#1, SEC1 or OpenSSL's legacy
// PEM encryption. passphrase is ignored for a key that is not encrypted;
// an empty one with an encrypted key fails with ErrEncryptedKey.
func LoadPrivateKey(path, passphrase string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var pass []byte
	if passphrase != "" {
		pass = []byte(passphrase)
	}
	k, err := ParsePrivateKey(data, pass)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ParsePrivateKey reads the first private key of data (PEM, or DER when
// data holds no PEM block). A nil passphrase with an encrypted key fails
// with ErrEncryptedKey.
func ParsePrivateKey(data, passphrase []byte) (crypto.Signer, error) {
	rest := data
	sawPEM := false
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		sawPEM = true
		switch b.Type {
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
			return parsePEMKey(b, passphrase)
		}
	}
	if sawPEM {
		return nil, errors.New("no PRIVATE KEY, RSA PRIVATE KEY, EC PRIVATE KEY or ENCRYPTED PRIVATE KEY block")
	}
	return parseDERKey(data, passphrase)
}

func parsePEMKey(b *pem.Block, passphrase []byte) (crypto.Signer, error) {
	der := b.Bytes
	//lint:ignore SA1019 legacy PEM encryption is what older OpenSSL wrote; we only read it.
	if x509.IsEncryptedPEMBlock(b) { //nolint:staticcheck
		if passphrase == nil {
			return nil, fmt.Errorf("%w (legacy PEM encryption %s); give its passphrase", ErrEncryptedKey, b.Headers["DEK-Info"])
		}
		var err error
		der, err = x509.DecryptPEMBlock(b, passphrase) //nolint:staticcheck
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrWrongPassphrase, err)
		}
	}
	switch b.Type {
	case "ENCRYPTED PRIVATE KEY":
		if passphrase == nil {
			return nil, fmt.Errorf("%w (PKCS#8); give its passphrase", ErrEncryptedKey)
		}
		return decryptPKCS8(der, passphrase)
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(der)
		if err != nil {
			return nil, fmt.Errorf("PKCS#1 RSA key: %w", err)
		}
		return k, nil
	case "EC PRIVATE KEY":
		k, err := x509.ParseECPrivateKey(der)
		if err != nil {
			return nil, fmt.Errorf("SEC1 EC key: %w", err)
		}
		return k, nil
	}
	return parsePKCS8(der)
}

// parseDERKey tries the DER encodings in turn.
func parseDERKey(der, passphrase []byte) (crypto.Signer, error) {
	if k, err := parsePKCS8(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	var epki encryptedPrivateKeyInfo
	if rest, err := asn1.Unmarshal(der, &epki); err == nil && len(rest) == 0 {
		if passphrase == nil {
			return nil, fmt.Errorf("%w (PKCS#8); give its passphrase", ErrEncryptedKey)
		}
		return decryptPKCS8(der, passphrase)
	}
	return nil, errors.New("not a private key (PEM or DER PKCS#8, PKCS#1, SEC1)")
}

func parsePKCS8(der []byte) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("PKCS#8 key: %w", err)
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("unsupported private key type %T", k)
}

// PKCS#8 encryption: RFC 5208 EncryptedPrivateKeyInfo with PKCS#5 v2.1
// (RFC 8018) PBES2, key derivation PBKDF2 with HMAC-SHA1/SHA2, and the
// cipher AES-128/192/256-CBC or DES-EDE3-CBC. That covers what OpenSSL
// 1.1 and 3 write (`openssl genpkey -aes256`, `openssl pkcs8 -topk8`:
// PBKDF2-HMAC-SHA256 with AES-256-CBC by default).

type encryptedPrivateKeyInfo struct {
	Algo pkix.AlgorithmIdentifier
	Data []byte
}

type pbes2Params struct {
	KDF pkix.AlgorithmIdentifier
	Enc pkix.AlgorithmIdentifier
}

type pbkdf2Params struct {
	Salt      []byte
	Iter      int
	KeyLength int                      `asn1:"optional"`
	PRF       pkix.AlgorithmIdentifier `asn1:"optional"`
}

var (
	oidPBES2          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACWithSHA1   = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidHMACWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 10}
	oidHMACWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	oidAES128CBC      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidDESEDE3CBC     = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}
)

// maxPBKDF2Iterations bounds the work a key file can ask for.
var maxPBKDF2Iterations = 10_000_000

func decryptPKCS8(der, passphrase []byte) (crypto.Signer, error) {
	var epki encryptedPrivateKeyInfo
	if rest, err := asn1.Unmarshal(der, &epki); err != nil || len(rest) != 0 {
		return nil, errors.New("malformed EncryptedPrivateKeyInfo")
	}
	if !epki.Algo.Algorithm.Equal(oidPBES2) {
		return nil, fmt.Errorf("encrypted PKCS#8 with %v: only PBES2 is supported (re-encrypt with `openssl pkcs8 -topk8 -v2 aes256`)", epki.Algo.Algorithm)
	}
	var p pbes2Params
	if rest, err := asn1.Unmarshal(epki.Algo.Parameters.FullBytes, &p); err != nil || len(rest) != 0 {
		return nil, errors.New("malformed PBES2 parameters")
	}
	if !p.KDF.Algorithm.Equal(oidPBKDF2) {
		return nil, fmt.Errorf("PBES2 key derivation %v: only PBKDF2 is supported", p.KDF.Algorithm)
	}
	var kp pbkdf2Params
	if rest, err := asn1.Unmarshal(p.KDF.Parameters.FullBytes, &kp); err != nil || len(rest) != 0 {
		return nil, errors.New("malformed PBKDF2 parameters")
	}
	if kp.Iter < 1 || kp.Iter > maxPBKDF2Iterations {
		return nil, fmt.Errorf("PBKDF2 iteration count %d out of range", kp.Iter)
	}
	var prf func() hash.Hash
	switch alg := kp.PRF.Algorithm; {
	case len(alg) == 0, alg.Equal(oidHMACWithSHA1):
		prf = sha1.New
	case alg.Equal(oidHMACWithSHA256):
		prf = sha256.New
	case alg.Equal(oidHMACWithSHA384):
		prf = sha512.New384
	case alg.Equal(oidHMACWithSHA512):
		prf = sha512.New
	default:
		return nil, fmt.Errorf("PBKDF2 PRF %v is not supported", alg)
	}
	var keyLen int
	var newCipher func([]byte) (cipher.Block, error)
	switch alg := p.Enc.Algorithm; {
	case alg.Equal(oidAES128CBC):
		keyLen, newCipher = 16, aes.NewCipher
	case alg.Equal(oidAES192CBC):
		keyLen, newCipher = 24, aes.NewCipher
	case alg.Equal(oidAES256CBC):
		keyLen, newCipher = 32, aes.NewCipher
	case alg.Equal(oidDESEDE3CBC):
		keyLen, newCipher = 24, des.NewTripleDESCipher
	default:
		return nil, fmt.Errorf("PBES2 cipher %v is not supported (AES-CBC, DES-EDE3-CBC)", alg)
	}
	if kp.KeyLength != 0 && kp.KeyLength != keyLen {
		return nil, fmt.Errorf("PBKDF2 key length %d does not fit the cipher's %d", kp.KeyLength, keyLen)
	}
	var iv []byte
	if rest, err := asn1.Unmarshal(p.Enc.Parameters.FullBytes, &iv); err != nil || len(rest) != 0 {
		return nil, errors.New("malformed PBES2 cipher IV")
	}
	key, err := pbkdf2.Key(prf, string(passphrase), kp.Salt, kp.Iter, keyLen)
	if err != nil {
		return nil, fmt.Errorf("PBKDF2: %w", err)
	}
	block, err := newCipher(key)
	if err != nil {
		return nil, err
	}
	bs := block.BlockSize()
	if len(iv) != bs || len(epki.Data) == 0 || len(epki.Data)%bs != 0 {
		return nil, errors.New("malformed PBES2 ciphertext or IV")
	}
	plain := make([]byte, len(epki.Data))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, epki.Data)
	defer clear(plain)
	// PKCS#5 padding, checked without branching on each octet.
	pad := int(plain[len(plain)-1])
	good := subtle.ConstantTimeLessOrEq(1, pad) & subtle.ConstantTimeLessOrEq(pad, bs)
	for i := 0; i < bs; i++ {
		inPad := subtle.ConstantTimeLessOrEq(i+1, pad)
		match := subtle.ConstantTimeByteEq(plain[len(plain)-1-i], byte(pad))
		good &= 1 ^ (inPad & (1 ^ match)) // inPad ⇒ match
	}
	if good != 1 {
		return nil, ErrWrongPassphrase
	}
	k, err := parsePKCS8(plain[:len(plain)-pad])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrWrongPassphrase, err)
	}
	return k, nil
}

// EncryptPKCS8PrivateKey returns key as an "ENCRYPTED PRIVATE KEY" PEM
// block in the form `openssl genpkey -aes256` writes: PBES2 with
// PBKDF2-HMAC-SHA256 (iterations; 0 means 600000) and AES-256-CBC.
func EncryptPKCS8PrivateKey(key crypto.Signer, passphrase []byte, iterations int) (*pem.Block, error) {
	if iterations == 0 {
		iterations = 600_000
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	defer clear(der)
	salt := make([]byte, 16)
	iv := make([]byte, aes.BlockSize)
	if _, err := io.ReadFull(rand.Reader, salt); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(rand.Reader, iv); err != nil {
		return nil, err
	}
	k, err := pbkdf2.Key(sha256.New, string(passphrase), salt, iterations, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	pad := aes.BlockSize - len(der)%aes.BlockSize
	plain := append(bytes.Clone(der), bytes.Repeat([]byte{byte(pad)}, pad)...)
	defer clear(plain)
	ct := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, plain)

	raw := func(v any) asn1.RawValue {
		b, err2 := asn1.Marshal(v)
		if err2 != nil && err == nil {
			err = err2
		}
		return asn1.RawValue{FullBytes: b}
	}
	kdf := pkix.AlgorithmIdentifier{Algorithm: oidPBKDF2, Parameters: raw(pbkdf2Params{
		Salt: salt, Iter: iterations,
		PRF: pkix.AlgorithmIdentifier{Algorithm: oidHMACWithSHA256, Parameters: asn1.NullRawValue},
	})}
	enc := pkix.AlgorithmIdentifier{Algorithm: oidAES256CBC, Parameters: raw(iv)}
	out, err2 := asn1.Marshal(encryptedPrivateKeyInfo{
		Algo: pkix.AlgorithmIdentifier{Algorithm: oidPBES2, Parameters: raw(pbes2Params{KDF: kdf, Enc: enc})},
		Data: ct,
	})
	if err != nil {
		return nil, err
	}
	if err2 != nil {
		return nil, err2
	}
	return &pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: out}, nil
}

// keyMatches reports whether the public key pub is the public half of
// priv.
func keyMatches(priv crypto.Signer, pub crypto.PublicKey) bool {
	p, ok := priv.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && p.Equal(pub)
}
