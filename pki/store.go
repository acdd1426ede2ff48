package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DefaultDir is pluto's default --nssdir.
const DefaultDir = "/var/lib/ipsec/nss"

// Sub-folders of the store.
const (
	CACertsDir = "cacerts"
	CertsDir   = "certs"
	PrivateDir = "private"
	CRLsDir    = "crls"
)

// maxFileSize bounds the files the store reads.
const maxFileSize = 16 << 20

// storeExts are the file name endings the store reads.
var storeExts = []string{".pem", ".crt", ".cer", ".der", ".key", ".crl", ".p8"}

// Cert is a certificate held by the store.
type Cert struct {
	*x509.Certificate
	// File is the file it came from, relative to the store's folder
	// ("certs/gw.pem").
	File string
	// Nickname is the file's base name without its extension ("gw"),
	// or, for a further certificate of a bundle, that with "#2", "#3".
	Nickname string
}

// privateKey is a key of private/.
type privateKey struct {
	file string
	key  crypto.Signer // nil when encrypted
	err  error         // why key is nil
}

// CRL is a certificate revocation list held by the store or fetched.
type CRL struct {
	*x509.RevocationList
	// Source is the file relative to the store ("crls/ca.crl") or the
	// URL it was fetched from.
	Source string
	// Fetched is when it was fetched; zero for a file.
	Fetched time.Time
}

// Store is a loaded trust store (see the package documentation for the
// layout). It does not change after Load and is safe for concurrent use;
// reload with Load and swap.
type Store struct {
	dir   string
	cas   []*Cert // cacerts/
	certs []*Cert // certs/: the first certificate of each file
	chain []*Cert // certs/: the further certificates of the files
	keys  []privateKey
	crls  []*CRL
	roots *x509.CertPool
}

// Load reads the trust store in dir. The error names every file that
// could not be read; a missing dir fails with an error wrapping
// fs.ErrNotExist.
func Load(dir string) (*Store, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("trust store: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("trust store %s is not a folder", dir)
	}
	s := &Store{dir: dir, roots: x509.NewCertPool()}
	var errs []error
	each := func(sub string, f func(rel string, data []byte) error) {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, fs.ErrNotExist) {
			return
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("trust store %s: %w", filepath.Join(dir, sub), err))
			return
		}
		for _, e := range ents {
			name := e.Name()
			if strings.HasPrefix(name, ".") || !slices.Contains(storeExts, strings.ToLower(filepath.Ext(name))) {
				continue
			}
			path := filepath.Join(dir, sub, name)
			fi, err := os.Stat(path) // follows links
			if err != nil {
				errs = append(errs, fmt.Errorf("trust store %s: %w", path, err))
				continue
			}
			if !fi.Mode().IsRegular() {
				continue
			}
			if fi.Size() > maxFileSize {
				errs = append(errs, fmt.Errorf("trust store %s: %d bytes is too large", path, fi.Size()))
				continue
			}
			data, err := os.ReadFile(path)
			if err == nil {
				err = f(sub+"/"+name, data)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("trust store %s: %w", path, err))
			}
		}
	}
	nick := func(rel string) string {
		b := filepath.Base(rel)
		return strings.TrimSuffix(b, filepath.Ext(b))
	}
	each(CACertsDir, func(rel string, data []byte) error {
		cs, err := ParseCertificates(data)
		if err != nil {
			return err
		}
		for i, c := range cs {
			n := nick(rel)
			if i > 0 {
				n = fmt.Sprintf("%s#%d", n, i+1)
			}
			s.cas = append(s.cas, &Cert{Certificate: c, File: rel, Nickname: n})
			s.roots.AddCert(c)
		}
		return nil
	})
	each(CertsDir, func(rel string, data []byte) error {
		cs, err := ParseCertificates(data)
		if err != nil {
			return err
		}
		for i, c := range cs {
			if i == 0 {
				s.certs = append(s.certs, &Cert{Certificate: c, File: rel, Nickname: nick(rel)})
			} else if !slices.ContainsFunc(s.chain, func(x *Cert) bool { return x.Equal(c) }) {
				s.chain = append(s.chain, &Cert{Certificate: c, File: rel, Nickname: fmt.Sprintf("%s#%d", nick(rel), i+1)})
			}
		}
		return nil
	})
	each(PrivateDir, func(rel string, data []byte) error {
		k, err := ParsePrivateKey(data, nil)
		if errors.Is(err, ErrEncryptedKey) {
			s.keys = append(s.keys, privateKey{file: rel, err: err})
			return nil
		}
		if err != nil {
			return err
		}
		s.keys = append(s.keys, privateKey{file: rel, key: k})
		return nil
	})
	each(CRLsDir, func(rel string, data []byte) error {
		ls, err := ParseCRLs(data)
		if err != nil {
			return err
		}
		for _, l := range ls {
			s.crls = append(s.crls, &CRL{RevocationList: l, Source: rel})
		}
		return nil
	})
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// Dir is the folder the store was loaded from.
func (s *Store) Dir() string { return s.dir }

// ParseCertificates reads all certificates of data: PEM "CERTIFICATE"
// (also "X509 CERTIFICATE", "TRUSTED CERTIFICATE" without its trust
// suffix) blocks, or DER (one or more concatenated).
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	sawPEM := false
	for n := 1; ; n++ {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		sawPEM = true
		switch b.Type {
		case "CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE":
		default:
			continue
		}
		cs, err := x509.ParseCertificates(b.Bytes)
		if err != nil {
			// TRUSTED CERTIFICATE appends OpenSSL's trust settings.
			c, err2 := x509.ParseCertificate(firstDER(b.Bytes))
			if b.Type != "TRUSTED CERTIFICATE" || err2 != nil {
				return nil, fmt.Errorf("PEM block %d: %w", n, err)
			}
			cs = []*x509.Certificate{c}
		}
		out = append(out, cs...)
	}
	if !sawPEM {
		cs, err := x509.ParseCertificates(data)
		if err != nil {
			return nil, fmt.Errorf("neither PEM nor a DER certificate: %w", err)
		}
		out = cs
	}
	if len(out) == 0 {
		return nil, errors.New("no CERTIFICATE block")
	}
	return out, nil
}

// firstDER cuts the first DER element (SEQUENCE with a definite length)
// from b.
func firstDER(b []byte) []byte {
	if len(b) < 2 || b[0] != 0x30 {
		return b
	}
	l, hdr := int(b[1]), 2
	if l&0x80 != 0 {
		n := l & 0x7f
		if n == 0 || n > 3 || len(b) < 2+n {
			return b
		}
		l = 0
		for _, c := range b[2 : 2+n] {
			l = l<<8 | int(c)
		}
		hdr += n
	}
	if hdr+l > len(b) {
		return b
	}
	return b[:hdr+l]
}

// ParseCRLs reads all CRLs of data: PEM "X509 CRL" blocks or DER.
func ParseCRLs(data []byte) ([]*x509.RevocationList, error) {
	var out []*x509.RevocationList
	rest := data
	sawPEM := false
	for n := 1; ; n++ {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		sawPEM = true
		if b.Type != "X509 CRL" {
			continue
		}
		l, err := x509.ParseRevocationList(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		out = append(out, l)
	}
	if !sawPEM {
		l, err := x509.ParseRevocationList(data)
		if err != nil {
			return nil, fmt.Errorf("neither PEM nor a DER CRL: %w", err)
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, errors.New("no X509 CRL block")
	}
	return out, nil
}

// Roots is the pool of the trust anchors (cacerts/).
func (s *Store) Roots() *x509.CertPool { return s.roots }

// KeyID is the SHA-1 hash of a certificate's SubjectPublicKeyInfo, the
// value CERTREQ payloads carry (RFC 7296 §3.7).
func KeyID(c *x509.Certificate) [sha1.Size]byte {
	return sha1.Sum(c.RawSubjectPublicKeyInfo)
}

// CertReqData is the Certification Authority data of our CERTREQ
// payloads (X.509 Certificate - Signature encoding): the concatenated
// KeyIDs of the trust anchors, each once.
func (s *Store) CertReqData() []byte {
	var out []byte
	seen := map[[sha1.Size]byte]bool{}
	for _, c := range s.cas {
		k := KeyID(c.Certificate)
		if !seen[k] {
			seen[k] = true
			out = append(out, k[:]...)
		}
	}
	return out
}

// ParseCertReq splits a CERTREQ payload's Certification Authority data
// into SHA-1 hashes.
func ParseCertReq(data []byte) ([][sha1.Size]byte, error) {
	if len(data)%sha1.Size != 0 {
		return nil, fmt.Errorf("CERTREQ data of %d octets is not a list of SHA-1 hashes", len(data))
	}
	out := make([][sha1.Size]byte, len(data)/sha1.Size)
	for i := range out {
		copy(out[i][:], data[i*sha1.Size:])
	}
	return out, nil
}

// Identity is our certificate with its key and chain, as leftcert= names
// it.
type Identity struct {
	// Cert is our end-entity certificate.
	Cert *Cert
	// Key is its private key.
	Key crypto.Signer
	// KeyFile is where Key came from (private/ or ipsec.secrets).
	KeyFile string
	// Chain holds the intermediate CAs from Cert's issuer up, without
	// a self-signed root: what to send after Cert (sendcert= and
	// CERTREQ decide whether). Built from certs/ and cacerts/.
	Chain []*x509.Certificate
	// Anchor is the self-signed root the chain ends in when the store
	// has it, nil otherwise.
	Anchor *x509.Certificate
}

// ID is the identity %fromcert stands for: Cert's subject DN.
func (id *Identity) ID() ID { return SubjectID(id.Cert.Certificate) }

// IssuerDN is Cert's issuer in Libreswan's DN syntax (what rightca=%same
// on the other end of a connection means).
func (id *Identity) IssuerDN() string { return DNString(id.Cert.RawIssuer) }

// CertPayloads is the data of the CERT payloads to send (encoding 4, X.509
// Certificate - Signature): Cert first, then Chain.
func (id *Identity) CertPayloads() [][]byte {
	out := [][]byte{id.Cert.Raw}
	for _, c := range id.Chain {
		out = append(out, c.Raw)
	}
	return out
}

// MatchesCertReq reports whether a peer's CERTREQ data (concatenated
// SHA-1 hashes of CA public keys) names a CA of our chain: an
// intermediate or the anchor. Empty data (a CERTREQ without CAs) matches.
func (id *Identity) MatchesCertReq(data []byte) bool {
	hs, err := ParseCertReq(data)
	if err != nil {
		return false
	}
	if len(hs) == 0 {
		return true
	}
	cas := slices.Clone(id.Chain)
	if id.Anchor != nil {
		cas = append(cas, id.Anchor)
	}
	for _, c := range cas {
		k := KeyID(c)
		for _, h := range hs {
			if h == k {
				return true
			}
		}
	}
	return false
}

// MatchCertReq picks, of candidates, the first whose chain a peer's
// CERTREQ data names; nil if none does.
func MatchCertReq(data []byte, candidates []*Identity) *Identity {
	for _, id := range candidates {
		if id.MatchesCertReq(data) {
			return id
		}
	}
	return nil
}

// ErrNoPrivateKey is wrapped by Identity's error when private/ holds no
// key for the certificate.
var ErrNoPrivateKey = errors.New("no private key for the certificate")

// findCert finds our certificate as leftcert= names it: file name
// (gw.pem or certs/gw.pem), nickname (gw), subject CN, or subject DN.
func (s *Store) findCert(name string) (*Cert, error) {
	name = strings.TrimSpace(name)
	var found []*Cert
	var dn []AVA
	if strings.Contains(name, "=") {
		dn, _ = ParseDN(name)
	}
	for _, c := range s.certs {
		match := c.File == name || filepath.Base(c.File) == name || c.Nickname == name
		if !match {
			for _, cn := range commonNames(c.Certificate) {
				if cn == name {
					match = true
				}
			}
		}
		if !match && dn != nil {
			sub, _ := ParseDNDER(c.RawSubject)
			_, match = MatchDN(dn, sub)
		}
		if match {
			found = append(found, c)
		}
	}
	switch len(found) {
	case 0:
		var have []string
		for _, c := range s.certs {
			have = append(have, c.Nickname)
		}
		return nil, fmt.Errorf("no certificate %q in %s (have: %s)", name, filepath.Join(s.dir, CertsDir), strings.Join(have, ", "))
	case 1:
		return found[0], nil
	}
	var files []string
	for _, c := range found {
		files = append(files, c.File)
	}
	return nil, fmt.Errorf("certificate %q is ambiguous: %s", name, strings.Join(files, ", "))
}

// Identity finds our certificate named certName (see findCert), its
// private key in private/ and its chain. Without a key in private/ the
// error wraps ErrNoPrivateKey: the key may be in ipsec.secrets, then use
// IdentityWithKey.
func (s *Store) Identity(certName string) (*Identity, error) {
	c, err := s.findCert(certName)
	if err != nil {
		return nil, err
	}
	var locked []string
	for _, k := range s.keys {
		if k.key == nil {
			locked = append(locked, k.file)
			continue
		}
		if keyMatches(k.key, c.PublicKey) {
			return s.identity(c, k.key, k.file), nil
		}
	}
	hint := ""
	if len(locked) > 0 {
		hint = fmt.Sprintf("; encrypted keys %s may hold it: name the right one with its passphrase in ipsec.secrets", strings.Join(locked, ", "))
	}
	return nil, fmt.Errorf("certificate %s (%s): %w in %s%s", DNString(c.RawSubject), c.File, ErrNoPrivateKey, filepath.Join(s.dir, PrivateDir), hint)
}

// IdentityWithKey is Identity with the private key given (from an
// ipsec.secrets entry read with LoadPrivateKey); keyFile names it in
// messages. The key must belong to the certificate.
func (s *Store) IdentityWithKey(certName string, key crypto.Signer, keyFile string) (*Identity, error) {
	c, err := s.findCert(certName)
	if err != nil {
		return nil, err
	}
	if key == nil || !keyMatches(key, c.PublicKey) {
		return nil, fmt.Errorf("private key %s does not belong to certificate %s (%s)", keyFile, DNString(c.RawSubject), c.File)
	}
	return s.identity(c, key, keyFile), nil
}

func (s *Store) identity(c *Cert, key crypto.Signer, keyFile string) *Identity {
	id := &Identity{Cert: c, Key: key, KeyFile: keyFile}
	// Same-file chain certificates first, then the rest of certs/, then
	// the anchors.
	var pool []*x509.Certificate
	for _, x := range s.chain {
		if x.File == c.File {
			pool = append(pool, x.Certificate)
		}
	}
	for _, x := range s.chain {
		if x.File != c.File {
			pool = append(pool, x.Certificate)
		}
	}
	for _, x := range s.cas {
		pool = append(pool, x.Certificate)
	}
	cur := c.Certificate
	for range 8 {
		if isSelfSigned(cur) {
			break
		}
		var issuer *x509.Certificate
		for _, p := range pool {
			if bytes.Equal(p.RawSubject, cur.RawIssuer) && cur.CheckSignatureFrom(p) == nil {
				issuer = p
				break
			}
		}
		if issuer == nil {
			break
		}
		if isSelfSigned(issuer) {
			id.Anchor = issuer
			break
		}
		if slices.ContainsFunc(id.Chain, issuer.Equal) {
			break
		}
		id.Chain = append(id.Chain, issuer)
		cur = issuer
	}
	return id
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}

// CertInfo is a certificate's summary for `ipsec listcerts` and
// `listcacerts` (and their --json).
type CertInfo struct {
	Source                string    `json:"source,omitempty"` // file in the store, or empty for a peer's
	Nickname              string    `json:"nickname,omitempty"`
	Subject               string    `json:"subject"`
	Issuer                string    `json:"issuer"`
	Serial                string    `json:"serial"`
	NotBefore             time.Time `json:"not_before"`
	NotAfter              time.Time `json:"not_after"`
	KeyType               string    `json:"key_type"` // RSA, ECDSA, Ed25519
	KeySize               int       `json:"key_size"` // bits
	Curve                 string    `json:"curve,omitempty"`
	SubjectAltNames       []string  `json:"subject_alt_names,omitempty"`
	CA                    bool      `json:"ca"`
	PathLen               *int      `json:"path_len,omitempty"`
	KeyUsage              []string  `json:"key_usage,omitempty"`
	ExtKeyUsage           []string  `json:"ext_key_usage,omitempty"`
	CRLDistributionPoints []string  `json:"crl_distribution_points,omitempty"`
	OCSPServers           []string  `json:"ocsp_servers,omitempty"`
	SHA1                  string    `json:"sha1_fingerprint"`
	SHA256                string    `json:"sha256_fingerprint"`
	KeyID                 string    `json:"key_id"` // SHA-1 of the SubjectPublicKeyInfo, as CERTREQ names a CA
	HasPrivateKey         bool      `json:"has_private_key,omitempty"`
}

// SummarizeCert is the CertInfo of c (a peer's, or one of ours).
func SummarizeCert(c *x509.Certificate) CertInfo {
	kt, size, curve := keyInfo(c.PublicKey)
	s1 := sha1.Sum(c.Raw)
	s256 := sha256.Sum256(c.Raw)
	kid := KeyID(c)
	ci := CertInfo{
		Subject:               DNString(c.RawSubject),
		Issuer:                DNString(c.RawIssuer),
		Serial:                colonHex(serialBytes(c.SerialNumber)),
		NotBefore:             c.NotBefore.UTC(),
		NotAfter:              c.NotAfter.UTC(),
		KeyType:               kt,
		KeySize:               size,
		Curve:                 curve,
		SubjectAltNames:       SANs(c),
		CA:                    c.BasicConstraintsValid && c.IsCA,
		KeyUsage:              keyUsageNames(c.KeyUsage),
		ExtKeyUsage:           extKeyUsageNames(c.ExtKeyUsage),
		CRLDistributionPoints: c.CRLDistributionPoints,
		OCSPServers:           c.OCSPServer,
		SHA1:                  colonHex(s1[:]),
		SHA256:                colonHex(s256[:]),
		KeyID:                 hex.EncodeToString(kid[:]),
	}
	if ci.CA && (c.MaxPathLen > 0 || c.MaxPathLenZero) {
		n := c.MaxPathLen
		ci.PathLen = &n
	}
	return ci
}

func serialBytes(n *big.Int) []byte {
	if n == nil {
		return nil
	}
	b := n.Bytes()
	if len(b) == 0 {
		return []byte{0}
	}
	return b
}

func colonHex(b []byte) string {
	var sb strings.Builder
	for i, c := range b {
		if i > 0 {
			sb.WriteByte(':')
		}
		fmt.Fprintf(&sb, "%02x", c)
	}
	return sb.String()
}

func keyInfo(pub crypto.PublicKey) (kind string, bits int, curve string) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "RSA", k.N.BitLen(), ""
	case *ecdsa.PublicKey:
		return "ECDSA", k.Curve.Params().BitSize, k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519", 256, ""
	}
	return fmt.Sprintf("%T", pub), 0, ""
}

func keyUsageNames(ku x509.KeyUsage) []string {
	names := []string{"digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment",
		"keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly"}
	var out []string
	for i, n := range names {
		if ku&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

func extKeyUsageNames(eku []x509.ExtKeyUsage) []string {
	names := map[x509.ExtKeyUsage]string{
		x509.ExtKeyUsageAny: "any", x509.ExtKeyUsageServerAuth: "serverAuth",
		x509.ExtKeyUsageClientAuth: "clientAuth", x509.ExtKeyUsageCodeSigning: "codeSigning",
		x509.ExtKeyUsageEmailProtection: "emailProtection", x509.ExtKeyUsageIPSECEndSystem: "ipsecEndSystem",
		x509.ExtKeyUsageIPSECTunnel: "ipsecTunnel", x509.ExtKeyUsageIPSECUser: "ipsecUser",
		x509.ExtKeyUsageTimeStamping: "timeStamping", x509.ExtKeyUsageOCSPSigning: "OCSPSigning",
	}
	var out []string
	for _, e := range eku {
		if n, ok := names[e]; ok {
			out = append(out, n)
		} else {
			out = append(out, fmt.Sprintf("eku-%d", e))
		}
	}
	return out
}

func (s *Store) hasKey(pub crypto.PublicKey) bool {
	for _, k := range s.keys {
		if k.key != nil && keyMatches(k.key, pub) {
			return true
		}
	}
	return false
}

// Certs summarizes our certificates (certs/, the first of each file) for
// `ipsec listcerts`.
func (s *Store) Certs() []CertInfo {
	var out []CertInfo
	for _, c := range s.certs {
		ci := SummarizeCert(c.Certificate)
		ci.Source, ci.Nickname = c.File, c.Nickname
		ci.HasPrivateKey = s.hasKey(c.PublicKey)
		out = append(out, ci)
	}
	return out
}

// CACerts summarizes the trust anchors (cacerts/) and then the
// intermediates of certs/ for `ipsec listcacerts`.
func (s *Store) CACerts() []CertInfo {
	var out []CertInfo
	for _, c := range append(slices.Clone(s.cas), s.chain...) {
		ci := SummarizeCert(c.Certificate)
		ci.Source, ci.Nickname = c.File, c.Nickname
		out = append(out, ci)
	}
	return out
}

// CRLInfo is a CRL's summary for `ipsec listcrls`.
type CRLInfo struct {
	Source     string        `json:"source"` // file in the store or URL
	Issuer     string        `json:"issuer"`
	Number     string        `json:"number,omitempty"`
	ThisUpdate time.Time     `json:"this_update"`
	NextUpdate time.Time     `json:"next_update,omitzero"`
	Fetched    time.Time     `json:"fetched,omitzero"`
	Revoked    []RevokedInfo `json:"revoked"`
}

// RevokedInfo is one entry of a CRL.
type RevokedInfo struct {
	Serial string    `json:"serial"`
	Time   time.Time `json:"time"`
	Reason string    `json:"reason,omitempty"`
}

// SummarizeCRL is the CRLInfo of l.
func SummarizeCRL(l *CRL) CRLInfo {
	ci := CRLInfo{
		Source:     l.Source,
		Issuer:     DNString(l.RawIssuer),
		ThisUpdate: l.ThisUpdate.UTC(),
		NextUpdate: l.NextUpdate.UTC(),
		Fetched:    l.Fetched.UTC(),
		Revoked:    []RevokedInfo{},
	}
	if l.Number != nil {
		ci.Number = l.Number.String()
	}
	for _, e := range l.RevokedCertificateEntries {
		ci.Revoked = append(ci.Revoked, RevokedInfo{
			Serial: colonHex(serialBytes(e.SerialNumber)),
			Time:   e.RevocationTime.UTC(),
			Reason: reasonName(e.ReasonCode),
		})
	}
	return ci
}

func reasonName(code int) string {
	names := []string{"unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
		"cessationOfOperation", "certificateHold", "", "removeFromCRL", "privilegeWithdrawn", "aACompromise"}
	if code > 0 && code < len(names) && names[code] != "" {
		return names[code]
	}
	return ""
}

// CRLs summarizes the CRLs of crls/ for `ipsec listcrls`; fetched ones are
// the Validator's (Validator.FetchedCRLs).
func (s *Store) CRLs() []CRLInfo {
	var out []CRLInfo
	for _, l := range s.crls {
		out = append(out, SummarizeCRL(l))
	}
	return out
}

// PublicKeyInfo is a public key's summary for `ipsec listpubkeys`.
type PublicKeyInfo struct {
	Source        string `json:"source"`            // the certificate or key file
	Subject       string `json:"subject,omitempty"` // of the certificate, if any
	KeyType       string `json:"key_type"`
	KeySize       int    `json:"key_size"`
	Curve         string `json:"curve,omitempty"`
	KeyID         string `json:"key_id"`      // SHA-1 of the SubjectPublicKeyInfo
	SHA256        string `json:"spki_sha256"` // SHA-256 of the SubjectPublicKeyInfo
	HasPrivateKey bool   `json:"has_private_key"`
}

// PublicKeys summarizes the public keys of our certificates and of the
// private keys in private/ that no certificate holds, for `ipsec
// listpubkeys`. Encrypted keys are listed by file only.
func (s *Store) PublicKeys() []PublicKeyInfo {
	var out []PublicKeyInfo
	add := func(src, subject string, pub crypto.PublicKey, spki []byte, priv bool) {
		kt, bits, curve := keyInfo(pub)
		k1 := sha1.Sum(spki)
		k256 := sha256.Sum256(spki)
		out = append(out, PublicKeyInfo{Source: src, Subject: subject, KeyType: kt, KeySize: bits, Curve: curve,
			KeyID: hex.EncodeToString(k1[:]), SHA256: hex.EncodeToString(k256[:]), HasPrivateKey: priv})
	}
	for _, c := range s.certs {
		add(c.File, DNString(c.RawSubject), c.PublicKey, c.RawSubjectPublicKeyInfo, s.hasKey(c.PublicKey))
	}
	for _, k := range s.keys {
		if k.key == nil {
			out = append(out, PublicKeyInfo{Source: k.file, KeyType: "encrypted", HasPrivateKey: true})
			continue
		}
		if slices.ContainsFunc(s.certs, func(c *Cert) bool { return keyMatches(k.key, c.PublicKey) }) {
			continue
		}
		spki, err := x509.MarshalPKIXPublicKey(k.key.Public())
		if err != nil {
			continue
		}
		add(k.file, "", k.key.Public(), spki, true)
	}
	return out
}
