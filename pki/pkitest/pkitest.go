// Package pkitest makes test PKIs: CAs, end-entity certificates of every
// key type the daemon supports, CRLs, an OCSP responder, and the files of
// goswan's trust store and strongSwan's swanctl folders. It is for tests
// (the pki package's, the daemon's end-to-end tests, the interop tests
// against strongSwan and Libreswan), never for production keys.
package pkitest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ocsp"
)

// KeyType is the kind of key a certificate gets.
type KeyType string

// Key types.
const (
	RSA3072   KeyType = "rsa3072"
	RSA2048   KeyType = "rsa2048"
	ECDSAP256 KeyType = "p256"
	ECDSAP384 KeyType = "p384"
	ECDSAP521 KeyType = "p521"
	Ed25519   KeyType = "ed25519"
)

// NewKey makes a key of type t.
func NewKey(t KeyType) (crypto.Signer, error) {
	switch t {
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case ECDSAP256, "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case ECDSAP521:
		return ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("pkitest: unknown key type %q", t)
}

// Cert is a certificate with its key.
type Cert struct {
	// Name is the nickname: the file name without extension in the
	// store folders.
	Name   string
	Cert   *x509.Certificate
	Key    crypto.Signer
	Issuer *Cert // nil for a self-signed root
}

// DER is the certificate's encoding.
func (c *Cert) DER() []byte { return c.Cert.Raw }

// CertPEM is the certificate in PEM.
func (c *Cert) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Cert.Raw})
}

// ChainPEM is the certificate followed by its issuers up to, not
// including, the self-signed root.
func (c *Cert) ChainPEM() []byte {
	out := c.CertPEM()
	for i := c.Issuer; i != nil && i.Issuer != nil; i = i.Issuer {
		out = append(out, i.CertPEM()...)
	}
	return out
}

// KeyPEM is the private key in PKCS#8 PEM.
func (c *Cert) KeyPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// Template describes a certificate to make.
type Template struct {
	// Name is the nickname; CommonName defaults to it.
	Name       string
	CommonName string
	// Subject, when its CommonName or any other field is set, is the
	// whole subject (CommonName filled in from above when empty).
	Subject pkix.Name
	KeyType KeyType
	// Key, when set, is used instead of a new key of KeyType.
	Key crypto.Signer

	IsCA bool
	// MaxPathLen for a CA: -1 (or 0 with MaxPathLenZero false) means
	// unlimited.
	MaxPathLen     int
	MaxPathLenZero bool

	DNSNames []string
	Emails   []string
	IPs      []net.IP

	// NotBefore and NotAfter default to the issuer's (or 2025-01-01
	// and 2035-01-01 for a root).
	NotBefore, NotAfter time.Time
	// KeyUsage defaults to certSign|cRLSign for a CA and
	// digitalSignature for an end entity.
	KeyUsage    x509.KeyUsage
	ExtKeyUsage []x509.ExtKeyUsage

	CRLDistributionPoints []string
	OCSPServer            []string
	// Serial defaults to a counter.
	Serial int64
}

var serials atomic.Int64

func (t Template) make(issuer *Cert) (*Cert, error) {
	key := t.Key
	if key == nil {
		var err error
		if key, err = NewKey(t.KeyType); err != nil {
			return nil, err
		}
	}
	subj := t.Subject
	if subj.CommonName == "" {
		subj.CommonName = t.CommonName
		if subj.CommonName == "" {
			subj.CommonName = t.Name
		}
	}
	if t.Serial == 0 {
		t.Serial = 1000 + serials.Add(1)
	}
	nb, na := t.NotBefore, t.NotAfter
	if nb.IsZero() {
		nb = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		if issuer != nil {
			nb = issuer.Cert.NotBefore
		}
	}
	if na.IsZero() {
		na = time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC)
		if issuer != nil {
			na = issuer.Cert.NotAfter
		}
	}
	ku := t.KeyUsage
	if ku == 0 {
		if t.IsCA {
			ku = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		} else {
			ku = x509.KeyUsageDigitalSignature
		}
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	skid := sha1.Sum(spki)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(t.Serial),
		Subject:               subj,
		NotBefore:             nb,
		NotAfter:              na,
		KeyUsage:              ku,
		ExtKeyUsage:           t.ExtKeyUsage,
		BasicConstraintsValid: true,
		IsCA:                  t.IsCA,
		MaxPathLen:            t.MaxPathLen,
		MaxPathLenZero:        t.MaxPathLenZero,
		DNSNames:              t.DNSNames,
		EmailAddresses:        t.Emails,
		IPAddresses:           t.IPs,
		CRLDistributionPoints: t.CRLDistributionPoints,
		OCSPServer:            t.OCSPServer,
		SubjectKeyId:          skid[:],
	}
	if t.IsCA && t.MaxPathLen == 0 && !t.MaxPathLenZero {
		tmpl.MaxPathLen = -1
	}
	parent, signer := tmpl, key
	if issuer != nil {
		parent, signer = issuer.Cert, issuer.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("pkitest: making %s: %w", t.Name, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Cert{Name: t.Name, Cert: c, Key: key, Issuer: issuer}, nil
}

// NewRoot makes a self-signed CA.
func NewRoot(t Template) (*Cert, error) {
	t.IsCA = true
	return t.make(nil)
}

// Issue makes a certificate signed by ca.
func (ca *Cert) Issue(t Template) (*Cert, error) { return t.make(ca) }

// CRL makes a CRL signed by ca listing revoked (with reason
// keyCompromise, revoked at thisUpdate - 1 h).
func (ca *Cert) CRL(revoked []*Cert, number int64, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	var entries []x509.RevocationListEntry
	for _, r := range revoked {
		entries = append(entries, x509.RevocationListEntry{
			SerialNumber:   r.Cert.SerialNumber,
			RevocationTime: thisUpdate.Add(-time.Hour),
			ReasonCode:     1,
		})
	}
	return x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(number),
		ThisUpdate:                thisUpdate,
		NextUpdate:                nextUpdate,
		RevokedCertificateEntries: entries,
	}, ca.Cert, ca.Key)
}

// CRLPEM is CRL in PEM.
func CRLPEM(der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}) }

// Options shape New's PKI.
type Options struct {
	// Now is the instant everything is valid at (except Expired);
	// default 2026-06-01.
	Now time.Time
	// CRLURL and OCSPURL go into the intermediate-issued end-entity
	// certificates (a test server's address).
	CRLURL, OCSPURL string
	// RSAKeyType is the key of the RSA certificate; default RSA3072.
	RSAKeyType KeyType
	// Domain names the hosts; default example.org.
	Domain string
}

// PKI is a two-level test PKI: Root (ECDSA P-384) signs Intermediate
// (ECDSA P-256), which signs the end entities.
type PKI struct {
	Now          time.Time
	Root         *Cert
	Intermediate *Cert
	// End entities, each with DNS SAN <name>.<domain>, email
	// <name>@<domain>, and for RSA and P256 an IP SAN (192.0.2.1,
	// 192.0.2.2). Subject: C=CH, O=Example, OU=VPN, CN=<name>.<domain>.
	RSA, P256, P384, Ed25519 *Cert
	// Revoked is on CRL and answered revoked by OCSPHandler.
	Revoked *Cert
	// Expired expired a month before Now.
	Expired *Cert
	// WrongSAN has only DNS:other.<domain> in its subjectAltName.
	WrongSAN *Cert
	// CRL is the intermediate's CRL (DER) listing Revoked, valid from
	// Now - 1 h to Now + 7 days. RootCRL is the root's, listing nothing.
	CRL, RootCRL []byte
}

// New makes a PKI.
func New(o Options) (*PKI, error) {
	if o.Now.IsZero() {
		o.Now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	}
	if o.RSAKeyType == "" {
		o.RSAKeyType = RSA3072
	}
	if o.Domain == "" {
		o.Domain = "example.org"
	}
	p := &PKI{Now: o.Now}
	var err error
	start := o.Now.AddDate(-1, 0, 0)
	end := o.Now.AddDate(5, 0, 0)
	p.Root, err = NewRoot(Template{Name: "root", KeyType: ECDSAP384, NotBefore: start, NotAfter: end,
		Subject: pkix.Name{Country: []string{"CH"}, Organization: []string{"Example"}, CommonName: "Example Root CA"}})
	if err != nil {
		return nil, err
	}
	p.Intermediate, err = p.Root.Issue(Template{Name: "intermediate", KeyType: ECDSAP256, IsCA: true, MaxPathLenZero: true,
		Subject: pkix.Name{Country: []string{"CH"}, Organization: []string{"Example"}, CommonName: "Example Intermediate CA"}})
	if err != nil {
		return nil, err
	}
	ee := func(name string, kt KeyType, ips []net.IP, mod func(*Template)) (*Cert, error) {
		host := name + "." + o.Domain
		t := Template{
			Name: name, KeyType: kt,
			Subject:  pkix.Name{Country: []string{"CH"}, Organization: []string{"Example"}, OrganizationalUnit: []string{"VPN"}, CommonName: host},
			DNSNames: []string{host}, Emails: []string{name + "@" + o.Domain}, IPs: ips,
		}
		if o.CRLURL != "" {
			t.CRLDistributionPoints = []string{o.CRLURL}
		}
		if o.OCSPURL != "" {
			t.OCSPServer = []string{o.OCSPURL}
		}
		if mod != nil {
			mod(&t)
		}
		return p.Intermediate.Issue(t)
	}
	steps := []struct {
		dst  **Cert
		name string
		kt   KeyType
		ips  []net.IP
		mod  func(*Template)
	}{
		{&p.RSA, "rsa", o.RSAKeyType, []net.IP{net.ParseIP("192.0.2.1")}, nil},
		{&p.P256, "p256", ECDSAP256, []net.IP{net.ParseIP("192.0.2.2")}, nil},
		{&p.P384, "p384", ECDSAP384, nil, nil},
		{&p.Ed25519, "ed25519", Ed25519, nil, nil},
		{&p.Revoked, "revoked", ECDSAP256, nil, nil},
		{&p.Expired, "expired", ECDSAP256, nil, func(t *Template) {
			t.NotBefore, t.NotAfter = o.Now.AddDate(-1, 0, 0), o.Now.AddDate(0, -1, 0)
		}},
		{&p.WrongSAN, "wrongsan", ECDSAP256, nil, func(t *Template) {
			t.DNSNames, t.Emails = []string{"other." + o.Domain}, nil
		}},
	}
	for _, s := range steps {
		if *s.dst, err = ee(s.name, s.kt, s.ips, s.mod); err != nil {
			return nil, err
		}
	}
	if p.CRL, err = p.Intermediate.CRL([]*Cert{p.Revoked}, 1, o.Now.Add(-time.Hour), o.Now.AddDate(0, 0, 7)); err != nil {
		return nil, err
	}
	if p.RootCRL, err = p.Root.CRL(nil, 1, o.Now.Add(-time.Hour), o.Now.AddDate(0, 0, 7)); err != nil {
		return nil, err
	}
	return p, nil
}

// EndEntities lists the end-entity certificates.
func (p *PKI) EndEntities() []*Cert {
	return []*Cert{p.RSA, p.P256, p.P384, p.Ed25519, p.Revoked, p.Expired, p.WrongSAN}
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, data, mode)
}

// WriteStore writes a goswan trust store (see package pki) to dir: the
// root in cacerts/root.pem, each of ours (default: all end entities) in
// certs/<name>.pem followed by the intermediate, its key in
// private/<name>.pem, and the CRLs in crls/.
func (p *PKI) WriteStore(dir string, ours ...*Cert) error {
	if len(ours) == 0 {
		ours = p.EndEntities()
	}
	if err := writeFile(filepath.Join(dir, "cacerts", "root.pem"), p.Root.CertPEM(), 0o644); err != nil {
		return err
	}
	for _, c := range ours {
		if err := writeFile(filepath.Join(dir, "certs", c.Name+".pem"), c.ChainPEM(), 0o644); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, "private", c.Name+".pem"), c.KeyPEM(), 0o600); err != nil {
			return err
		}
	}
	if err := writeFile(filepath.Join(dir, "crls", "intermediate.crl"), CRLPEM(p.CRL), 0o644); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, "crls", "root.crl"), CRLPEM(p.RootCRL), 0o644)
}

// WriteSwanctl writes strongSwan's swanctl folders under dir (usually
// /etc/swanctl): x509ca/ the root and the intermediate, x509/ ours
// (default: all end entities), private/ their keys (PKCS#8), x509crl/
// the CRLs.
func (p *PKI) WriteSwanctl(dir string, ours ...*Cert) error {
	if len(ours) == 0 {
		ours = p.EndEntities()
	}
	for _, ca := range []*Cert{p.Root, p.Intermediate} {
		if err := writeFile(filepath.Join(dir, "x509ca", ca.Name+".pem"), ca.CertPEM(), 0o644); err != nil {
			return err
		}
	}
	for _, c := range ours {
		if err := writeFile(filepath.Join(dir, "x509", c.Name+".pem"), c.CertPEM(), 0o644); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, "private", c.Name+".pem"), c.KeyPEM(), 0o600); err != nil {
			return err
		}
	}
	if err := writeFile(filepath.Join(dir, "x509crl", "intermediate.crl"), CRLPEM(p.CRL), 0o644); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, "x509crl", "root.crl"), CRLPEM(p.RootCRL), 0o644)
}

// OCSPStatus is a responder's answer about one serial number.
type OCSPStatus struct {
	Status    int // ocsp.Good, ocsp.Revoked, ocsp.Unknown
	RevokedAt time.Time
	Reason    int
}

// OCSPHandler is an OCSP responder (RFC 6960, GET and POST) for the
// certificates issuer issued, signing with issuer's key. status decides
// each answer; now is the clock (thisUpdate = now, nextUpdate = now + 1 h).
// Requests counts the requests served, if not nil.
func OCSPHandler(issuer *Cert, status func(serial *big.Int) OCSPStatus, now func() time.Time, requests *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests != nil {
			requests.Add(1)
		}
		var der []byte
		var err error
		switch r.Method {
		case http.MethodPost:
			der, err = io.ReadAll(io.LimitReader(r.Body, 1<<16))
		case http.MethodGet:
			var s string
			s, err = url.PathUnescape(r.URL.EscapedPath()[strings.LastIndexByte(r.URL.EscapedPath(), '/')+1:])
			if err == nil {
				der, err = base64.StdEncoding.DecodeString(s)
			}
		default:
			http.Error(w, "method", http.StatusMethodNotAllowed)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req, err := ocsp.ParseRequest(der)
		if err != nil {
			w.Header().Set("Content-Type", "application/ocsp-response")
			w.Write(ocsp.MalformedRequestErrorResponse)
			return
		}
		st := status(req.SerialNumber)
		t := now()
		resp, err := ocsp.CreateResponse(issuer.Cert, issuer.Cert, ocsp.Response{
			Status:           st.Status,
			SerialNumber:     req.SerialNumber,
			ThisUpdate:       t.Add(-time.Minute),
			NextUpdate:       t.Add(time.Hour),
			RevokedAt:        st.RevokedAt,
			RevocationReason: st.Reason,
		}, issuer.Key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		w.Write(resp)
	})
}
