package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"goswan/pki/pkitest"
)

// fixture is one test PKI for the whole package, with a loopback HTTP
// server that the end-entity certificates name as CRL distribution point
// (/crl) and OCSP responder (/ocsp).
type fixture struct {
	*pkitest.PKI
	srv *httptest.Server

	mu         sync.Mutex
	crl        []byte // served at /crl; nil: 404
	ocspStatus map[string]pkitest.OCSPStatus
	ocspDown   bool
	crlHits    atomic.Int64
	ocspHits   atomic.Int64
}

var (
	fixOnce sync.Once
	fix     *fixture
	fixErr  error
)

func getFixture(t testing.TB) *fixture {
	t.Helper()
	fixOnce.Do(func() {
		f := &fixture{ocspStatus: map[string]pkitest.OCSPStatus{}}
		mux := http.NewServeMux()
		f.srv = httptest.NewServer(mux)
		f.PKI, fixErr = pkitest.New(pkitest.Options{CRLURL: f.srv.URL + "/crl", OCSPURL: f.srv.URL + "/ocsp"})
		if fixErr != nil {
			return
		}
		f.crl = f.CRL
		mux.HandleFunc("/crl", func(w http.ResponseWriter, r *http.Request) {
			f.crlHits.Add(1)
			f.mu.Lock()
			body := f.crl
			f.mu.Unlock()
			if body == nil {
				http.NotFound(w, r)
				return
			}
			w.Write(body)
		})
		h := pkitest.OCSPHandler(f.Intermediate, func(serial *big.Int) pkitest.OCSPStatus {
			f.mu.Lock()
			defer f.mu.Unlock()
			if s, ok := f.ocspStatus[serial.String()]; ok {
				return s
			}
			return pkitest.OCSPStatus{Status: ocsp.Unknown}
		}, func() time.Time { return f.Now }, &f.ocspHits)
		responder := func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			down := f.ocspDown
			f.mu.Unlock()
			if down {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		}
		mux.HandleFunc("/ocsp/", responder)
		mux.HandleFunc("/ocsp", responder)
		fix = f
	})
	if fixErr != nil {
		t.Fatal(fixErr)
	}
	return fix
}

func (f *fixture) set(crl []byte, status map[*pkitest.Cert]int, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.crl = crl
	f.ocspStatus = map[string]pkitest.OCSPStatus{}
	for c, s := range status {
		f.ocspStatus[c.Cert.SerialNumber.String()] = pkitest.OCSPStatus{Status: s, RevokedAt: f.Now.Add(-time.Hour), Reason: 1}
	}
	f.ocspDown = down
}

// storeDir writes the fixture's store into a new folder; without lists
// the sub-folders to remove afterwards.
func (f *fixture) storeDir(t *testing.T, without ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := f.WriteStore(dir); err != nil {
		t.Fatal(err)
	}
	for _, w := range without {
		if err := os.RemoveAll(filepath.Join(dir, w)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func (f *fixture) store(t *testing.T, without ...string) *Store {
	t.Helper()
	s, err := Load(f.storeDir(t, without...))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func payloads(cs ...*pkitest.Cert) [][]byte {
	var out [][]byte
	for _, c := range cs {
		out = append(out, c.DER())
	}
	return out
}

func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Errorf("no error, want %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("error %q\n does not contain %q", err, want)
	}
}

func TestLoadAndList(t *testing.T) {
	f := getFixture(t)
	dir := f.storeDir(t)
	// Files the store must ignore.
	os.WriteFile(filepath.Join(dir, "certs", "README.txt"), []byte("not a cert"), 0o644)
	os.WriteFile(filepath.Join(dir, "certs", ".hidden.pem"), []byte("junk"), 0o644)
	os.Mkdir(filepath.Join(dir, "certs", "old"), 0o755)
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	certs := s.Certs()
	if len(certs) != 7 {
		t.Fatalf("%d certs, want 7", len(certs))
	}
	byNick := map[string]CertInfo{}
	for _, c := range certs {
		byNick[c.Nickname] = c
		if !c.HasPrivateKey {
			t.Errorf("%s: no private key", c.Nickname)
		}
	}
	rsaInfo := byNick["rsa"]
	if rsaInfo.KeyType != "RSA" || rsaInfo.KeySize != 3072 || rsaInfo.Source != "certs/rsa.pem" {
		t.Errorf("rsa: %+v", rsaInfo)
	}
	if got := byNick["p384"]; got.KeyType != "ECDSA" || got.Curve != "P-384" || got.KeySize != 384 {
		t.Errorf("p384: %+v", got)
	}
	if got := byNick["ed25519"]; got.KeyType != "Ed25519" {
		t.Errorf("ed25519: %+v", got)
	}
	if got := rsaInfo.Subject; got != "C=CH, O=Example, OU=VPN, CN=rsa.example.org" {
		t.Errorf("subject %q", got)
	}
	if got := rsaInfo.Issuer; got != "C=CH, O=Example, CN=Example Intermediate CA" {
		t.Errorf("issuer %q", got)
	}
	if want := []string{"DNS:rsa.example.org", "email:rsa@example.org", "IP:192.0.2.1"}; strings.Join(rsaInfo.SubjectAltNames, " ") != strings.Join(want, " ") {
		t.Errorf("SANs %v", rsaInfo.SubjectAltNames)
	}
	kid := sha1.Sum(f.RSA.Cert.RawSubjectPublicKeyInfo)
	if rsaInfo.KeyID != hex.EncodeToString(kid[:]) {
		t.Errorf("key id %s", rsaInfo.KeyID)
	}
	fp := sha1.Sum(f.RSA.DER())
	if rsaInfo.SHA1 != colonHex(fp[:]) || len(rsaInfo.SHA256) != 32*3-1 {
		t.Errorf("fingerprints %s %s", rsaInfo.SHA1, rsaInfo.SHA256)
	}
	if rsaInfo.NotAfter.IsZero() || rsaInfo.Serial == "" || rsaInfo.CA {
		t.Errorf("%+v", rsaInfo)
	}
	if len(rsaInfo.CRLDistributionPoints) != 1 || len(rsaInfo.OCSPServers) != 1 {
		t.Errorf("CDP %v OCSP %v", rsaInfo.CRLDistributionPoints, rsaInfo.OCSPServers)
	}

	cas := s.CACerts()
	if len(cas) != 2 || cas[0].Subject != "C=CH, O=Example, CN=Example Root CA" || !cas[0].CA ||
		cas[1].Subject != "C=CH, O=Example, CN=Example Intermediate CA" || cas[1].PathLen == nil || *cas[1].PathLen != 0 {
		t.Errorf("CA certs: %+v", cas)
	}
	crls := s.CRLs()
	if len(crls) != 2 {
		t.Fatalf("%d CRLs", len(crls))
	}
	var inter CRLInfo
	for _, c := range crls {
		if c.Source == "crls/intermediate.crl" {
			inter = c
		}
	}
	if inter.Issuer != "C=CH, O=Example, CN=Example Intermediate CA" || len(inter.Revoked) != 1 ||
		inter.Revoked[0].Serial != colonHex(f.Revoked.Cert.SerialNumber.Bytes()) || inter.Revoked[0].Reason != "keyCompromise" || inter.Number != "1" {
		t.Errorf("CRL %+v", inter)
	}
	pks := s.PublicKeys()
	if len(pks) != 7 || pks[0].KeyID == "" || !pks[0].HasPrivateKey {
		t.Errorf("public keys %+v", pks)
	}
	// JSON-friendly.
	for _, v := range []any{certs, cas, crls, pks} {
		b, err := json.Marshal(v)
		if err != nil || !bytes.Contains(b, []byte(`"subject"`)) && !bytes.Contains(b, []byte(`"issuer"`)) && !bytes.Contains(b, []byte(`"key_id"`)) {
			t.Errorf("json: %s %v", b, err)
		}
	}
	if b, _ := json.Marshal(inter); bytes.Contains(b, []byte("fetched")) {
		t.Errorf("zero fetch time in JSON: %s", b)
	}
}

func TestLoadErrors(t *testing.T) {
	f := getFixture(t)
	if _, err := Load(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing dir: %v", err)
	}
	empty := t.TempDir()
	s, err := Load(empty)
	if err != nil || len(s.Certs()) != 0 || len(s.CertReqData()) != 0 {
		t.Errorf("empty store: %v", err)
	}
	dir := f.storeDir(t)
	os.WriteFile(filepath.Join(dir, "certs", "broken.pem"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "crls", "broken.crl"), []byte("garbage"), 0o644)
	os.WriteFile(filepath.Join(dir, "private", "broken.key"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
	_, err = Load(dir)
	for _, want := range []string{"certs/broken.pem", "crls/broken.crl", "private/broken.key"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}

func TestIdentity(t *testing.T) {
	f := getFixture(t)
	s := f.store(t)
	for _, name := range []string{"p256", "p256.pem", "certs/p256.pem", "p256.example.org", "C=CH, O=Example, OU=VPN, CN=p256.example.org", "CN=p256.example.org, OU=VPN, O=Example, C=CH"} {
		id, err := s.Identity(name)
		if err != nil {
			t.Errorf("%q: %v", name, err)
			continue
		}
		if !id.Cert.Equal(f.P256.Cert) || id.KeyFile != "private/p256.pem" {
			t.Errorf("%q: got %s %s", name, id.Cert.File, id.KeyFile)
		}
		if len(id.Chain) != 1 || !id.Chain[0].Equal(f.Intermediate.Cert) || id.Anchor == nil || !id.Anchor.Equal(f.Root.Cert) {
			t.Errorf("%q: chain %d anchor %v", name, len(id.Chain), id.Anchor != nil)
		}
		if p := id.CertPayloads(); len(p) != 2 || !bytes.Equal(p[0], f.P256.DER()) {
			t.Errorf("payloads")
		}
		if id.ID().String() != "C=CH, O=Example, OU=VPN, CN=p256.example.org" || id.IssuerDN() != "C=CH, O=Example, CN=Example Intermediate CA" {
			t.Errorf("ID %s issuer %s", id.ID(), id.IssuerDN())
		}
		if ty, data, _ := id.ID().Payload(); ty != IDTypeDERASN1DN || !bytes.Equal(data, f.P256.Cert.RawSubject) {
			t.Errorf("ID payload")
		}
	}
	_, err := s.Identity("nobody")
	wantErr(t, err, `no certificate "nobody"`)

	// Without private/: the key comes from ipsec.secrets.
	s = f.store(t, PrivateDir)
	_, err = s.Identity("rsa")
	if !errors.Is(err, ErrNoPrivateKey) {
		t.Errorf("no key: %v", err)
	}
	id, err := s.IdentityWithKey("rsa", f.RSA.Key, "/etc/ipsec.d/rsa.key")
	if err != nil || id.Key == nil {
		t.Errorf("with key: %v", err)
	}
	_, err = s.IdentityWithKey("rsa", f.P256.Key, "/etc/ipsec.d/p256.key")
	wantErr(t, err, "does not belong to certificate C=CH, O=Example, OU=VPN, CN=rsa.example.org")

	// An encrypted key in private/ is listed, and named in the error.
	dir := f.storeDir(t, PrivateDir)
	blk, err := EncryptPKCS8PrivateKey(f.RSA.Key, []byte("secret"), 1000)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, PrivateDir), 0o700)
	os.WriteFile(filepath.Join(dir, PrivateDir, "rsa.pem"), pem.EncodeToMemory(blk), 0o600)
	s, err = Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Identity("rsa")
	wantErr(t, err, "encrypted keys private/rsa.pem may hold it")
}

func TestCertReq(t *testing.T) {
	f := getFixture(t)
	s := f.store(t)
	rootID := KeyID(f.Root.Cert)
	interID := KeyID(f.Intermediate.Cert)
	if !bytes.Equal(s.CertReqData(), rootID[:]) {
		t.Errorf("CERTREQ data % x", s.CertReqData())
	}
	id, err := s.Identity("rsa")
	if err != nil {
		t.Fatal(err)
	}
	other := bytes.Repeat([]byte{7}, 20)
	for _, c := range []struct {
		data []byte
		want bool
	}{
		{rootID[:], true},
		{interID[:], true},
		{append(other, rootID[:]...), true},
		{other, false},
		{nil, true},
		{rootID[:19], false},
	} {
		if got := id.MatchesCertReq(c.data); got != c.want {
			t.Errorf("MatchesCertReq(% x) = %v", c.data, got)
		}
	}
	if MatchCertReq(rootID[:], []*Identity{id}) != id || MatchCertReq(other, []*Identity{id}) != nil {
		t.Error("MatchCertReq")
	}
	hs, err := ParseCertReq(append(rootID[:], interID[:]...))
	if err != nil || len(hs) != 2 || hs[1] != interID {
		t.Errorf("ParseCertReq %v %v", hs, err)
	}
}

func TestVerifyChain(t *testing.T) {
	f := getFixture(t)
	full := f.store(t)
	anchorsOnly := f.store(t, CertsDir, PrivateDir)

	// More certificates for the error cases.
	mk := func(issuer *pkitest.Cert, tm pkitest.Template) *pkitest.Cert {
		t.Helper()
		c, err := issuer.Issue(tm)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	otherRoot, err := pkitest.NewRoot(pkitest.Template{Name: "other-root", CommonName: "Other Root CA"})
	if err != nil {
		t.Fatal(err)
	}
	foreign := mk(otherRoot, pkitest.Template{Name: "foreign", CommonName: "foreign.example.org"})
	notCA := mk(f.Root, pkitest.Template{Name: "notca", CommonName: "Not A CA", KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature})
	underNotCA := mk(notCA, pkitest.Template{Name: "under-notca", CommonName: "under.example.org"})
	subCA := mk(f.Intermediate, pkitest.Template{Name: "sub", CommonName: "Sub CA", IsCA: true})
	underSub := mk(subCA, pkitest.Template{Name: "under-sub", CommonName: "deep.example.org"})
	encOnly := mk(f.Intermediate, pkitest.Template{Name: "enc", CommonName: "enc.example.org", KeyUsage: x509.KeyUsageKeyEncipherment})
	nonRep := mk(f.Intermediate, pkitest.Template{Name: "nonrep", CommonName: "nonrep.example.org", KeyUsage: x509.KeyUsageContentCommitment})
	clientOnly := mk(f.Intermediate, pkitest.Template{Name: "client", CommonName: "client.example.org", ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	ipsecEKU := mk(f.Intermediate, pkitest.Template{Name: "ipsec", CommonName: "ipsec.example.org", ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageIPSECEndSystem}})
	oldInter := mk(f.Root, pkitest.Template{Name: "old-inter", CommonName: "Old Intermediate CA", IsCA: true,
		NotBefore: f.Now.AddDate(-3, 0, 0), NotAfter: f.Now.AddDate(0, -2, 0)})
	underOld := mk(oldInter, pkitest.Template{Name: "under-old", CommonName: "old.example.org",
		NotBefore: f.Now.AddDate(-1, 0, 0), NotAfter: f.Now.AddDate(1, 0, 0)})
	future := mk(f.Intermediate, pkitest.Template{Name: "future", CommonName: "future.example.org",
		NotBefore: f.Now.AddDate(0, 1, 0), NotAfter: f.Now.AddDate(1, 0, 0)})

	for _, c := range []struct {
		name  string
		store *Store
		certs [][]byte
		ca    string
		err   string
	}{
		{"rsa", full, payloads(f.RSA), "", ""},
		{"p256", full, payloads(f.P256), "", ""},
		{"p384", full, payloads(f.P384), "", ""},
		{"ed25519", full, payloads(f.Ed25519), "", ""},
		{"intermediate from peer", anchorsOnly, payloads(f.RSA, f.Intermediate), "", ""},
		{"peer also sends root", anchorsOnly, payloads(f.P256, f.Intermediate, f.Root), "", ""},
		{"intermediate missing", anchorsOnly, payloads(f.RSA), "",
			"certificate C=CH, O=Example, OU=VPN, CN=rsa.example.org is issued by C=CH, O=Example, CN=Example Intermediate CA, which is not a trusted CA"},
		{"foreign CA", full, payloads(foreign), "", "CN=foreign.example.org is issued by CN=Other Root CA, which is not a trusted CA"},
		{"expired", full, payloads(f.Expired), "", "certificate C=CH, O=Example, OU=VPN, CN=expired.example.org expired at 2026-05-01 12:00:00Z (now 2026-06-01 12:00:00Z)"},
		{"not yet valid", full, payloads(future), "", "certificate CN=future.example.org is not valid before 2026-07-01"},
		{"expired intermediate", full, payloads(underOld, oldInter), "", "certificate CN=Old Intermediate CA expired at 2026-04-01"},
		{"issuer not a CA", full, payloads(underNotCA, notCA), "", "issuer CN=Not A CA is not a CA"},
		{"path length", full, payloads(underSub, subCA), "", "path length constraint (pathlen 0) of CA C=CH, O=Example, CN=Example Intermediate CA exceeded by the chain of CN=deep.example.org"},
		{"key usage", full, payloads(encOnly), "", "may not sign: its key usage (keyEncipherment) has neither digitalSignature nor nonRepudiation"},
		{"nonRepudiation only", full, payloads(nonRep), "", ""},
		{"clientAuth EKU", full, payloads(clientOnly), "", ""},
		{"ipsecEndSystem EKU", full, payloads(ipsecEKU), "", ""},
		{"rightca intermediate", full, payloads(f.RSA), "C=CH, O=Example, CN=Example Intermediate CA", ""},
		{"rightca root any order", full, payloads(f.RSA), "CN=Example Root CA, O=Example, C=CH", ""},
		{"rightca wildcard", full, payloads(f.RSA), "C=CH, O=Example, CN=*", ""},
		{"rightca %any", full, payloads(f.RSA), "%any", ""},
		{"rightca other", full, payloads(f.RSA), "C=CH, O=Example, CN=Other CA",
			"is not issued by rightca=C=CH, O=Example, CN=Other CA (its chain: C=CH, O=Example, CN=Example Intermediate CA <- C=CH, O=Example, CN=Example Root CA)"},
		{"garbage", full, [][]byte{{0x30, 0x03, 1, 2, 3}}, "", "peer's CERT payload 1"},
		{"none", full, nil, "", "peer sent no certificate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := NewValidator(c.store, ValidatorConfig{Now: func() time.Time { return f.Now }})
			pc, err := v.VerifyPeer(context.Background(), c.certs, PeerOptions{RightCA: c.ca})
			wantErr(t, err, c.err)
			if err == nil {
				if len(pc.Chain) < 3 || !pc.Chain[len(pc.Chain)-1].Equal(f.Root.Cert) || pc.PublicKey() == nil {
					t.Errorf("chain of %d", len(pc.Chain))
				}
			}
		})
	}
}

func TestMatchCert(t *testing.T) {
	f := getFixture(t)
	cn := mustIssue(t, f.Intermediate, pkitest.Template{Name: "cn-only", CommonName: "cn-only.example.org"})
	for _, c := range []struct {
		cert *pkitest.Cert
		id   string
		opts MatchOptions
		wild int
		err  string
	}{
		{f.RSA, "%fromcert", MatchOptions{}, 0, ""},
		{f.RSA, "%any", MatchOptions{}, 0, ""},
		{f.RSA, "C=CH, O=Example, OU=VPN, CN=rsa.example.org", MatchOptions{}, 0, ""},
		{f.RSA, "CN=rsa.example.org, OU=VPN, O=Example, C=CH", MatchOptions{}, 0, ""},
		{f.RSA, "c=ch, o=example, ou=vpn, cn=RSA.example.org", MatchOptions{}, 0, ""},
		{f.RSA, "C=CH, O=Example, OU=*, CN=*", MatchOptions{}, 2, ""},
		{f.RSA, "C=CH, O=Example, CN=rsa.example.org", MatchOptions{}, 0, "does not match the certificate's subject C=CH, O=Example, OU=VPN, CN=rsa.example.org"},
		{f.RSA, "C=CH, O=Example, OU=VPN, CN=p256.example.org", MatchOptions{}, 0, "does not match"},
		{f.RSA, "C=CH, O=Example, OU=VPN, OU=*", MatchOptions{}, 0, "does not match"},
		{f.RSA, "@rsa.example.org", MatchOptions{}, 0, ""},
		{f.RSA, "@RSA.Example.Org.", MatchOptions{}, 0, ""},
		{f.RSA, "rsa.example.org", MatchOptions{}, 0, ""},
		{f.RSA, "rsa@example.org", MatchOptions{}, 0, ""},
		{f.RSA, "192.0.2.1", MatchOptions{}, 0, ""},
		{f.RSA, "192.0.2.2", MatchOptions{}, 0, "identity 192.0.2.2 is not in the subjectAltName of certificate C=CH, O=Example, OU=VPN, CN=rsa.example.org (DNS:rsa.example.org, email:rsa@example.org, IP:192.0.2.1)"},
		{f.WrongSAN, "@wrongsan.example.org", MatchOptions{}, 0, "(DNS:other.example.org)"},
		{f.WrongSAN, "@wrongsan.example.org", MatchOptions{CN: true}, 0, ""},
		{cn, "@cn-only.example.org", MatchOptions{}, 0, "which has no subjectAltName"},
		{cn, "@cn-only.example.org", MatchOptions{CN: true}, 0, ""},
		{f.RSA, "@#0102", MatchOptions{}, 0, "KEY_ID"},
	} {
		id, err := ParseID(c.id)
		if err != nil {
			t.Errorf("ParseID(%q): %v", c.id, err)
			continue
		}
		w, err := MatchCert(c.cert.Cert, id, c.opts)
		if c.err == "" && w != c.wild {
			t.Errorf("%s vs %s: %d wildcards, want %d", c.id, c.cert.Name, w, c.wild)
		}
		if err == nil && c.err != "" || err != nil && (c.err == "" || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s vs %s: err %v, want %q", c.id, c.cert.Name, err, c.err)
		}
	}
}

func mustIssue(t *testing.T, ca *pkitest.Cert, tm pkitest.Template) *pkitest.Cert {
	t.Helper()
	c, err := ca.Issue(tm)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseDN(t *testing.T) {
	for _, c := range []struct {
		in, out string
		err     string
	}{
		{"C=CH, O=Example, CN=gw", "C=CH, O=Example, CN=gw", ""},
		{"c=CH,o=Example,cn=gw", "C=CH, O=Example, CN=gw", ""},
		{"/C=CH/O=Example/CN=gw", "C=CH, O=Example, CN=gw", ""},
		{`O="Example, Inc", CN=gw`, `O=Example\, Inc, CN=gw`, ""},
		{`O=Example\, Inc, CN=gw`, `O=Example\, Inc, CN=gw`, ""},
		{`O=Example\2C Inc, CN=gw`, `O=Example\, Inc, CN=gw`, ""},
		{"E=admin@example.org, emailAddress=x@y, SN=1234, S=Doe, DC=org, UID=u1", "E=admin@example.org, E=x@y, SN=1234, S=Doe, DC=org, UID=u1", ""},
		{"2.5.4.3=gw", "CN=gw", ""},
		{"CN=*", "CN=*", ""},
		{"CN=a+b", `CN=a\+b`, ""},
		{"", "", "empty"},
		{"CN", "", "has no '='"},
		{"XX=1", "", `unknown attribute "XX"`},
		{"CN=gw,", "", "ends in a separator"},
		{`CN="gw`, "", "unterminated quote"},
		{`CN=gw\`, "", `ends in '\'`},
	} {
		dn, err := ParseDN(c.in)
		if c.err != "" {
			wantErr(t, err, c.err)
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if got := FormatDN(dn); got != c.out {
			t.Errorf("%q: formatted %q, want %q", c.in, got, c.out)
		}
		// Round trip through DER.
		der, err := MarshalDN(dn)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseDNDER(der)
		if err != nil || FormatDN(back) != c.out {
			t.Errorf("%q: DER round trip %q %v", c.in, FormatDN(back), err)
		}
	}
	// MarshalDN agrees with crypto/x509 for a plain name.
	want, _ := asn1MarshalName(pkix.Name{Country: []string{"CH"}, Organization: []string{"Example"}, CommonName: "gw"})
	dn, _ := ParseDN("C=CH, O=Example, CN=gw")
	if got, _ := MarshalDN(dn); !bytes.Equal(got, want) {
		t.Errorf("MarshalDN\n% x\n% x", got, want)
	}
}

func asn1MarshalName(n pkix.Name) ([]byte, error) {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: n}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return c.RawSubject, nil
}

func TestIDs(t *testing.T) {
	for _, c := range []struct {
		in   string
		kind IDKind
		out  string
		ty   uint8
	}{
		{"%any", IDAny, "%any", 0},
		{"%fromcert", IDFromCert, "%fromcert", 0},
		{"@gw.example.org", IDFQDN, "@gw.example.org", IDTypeFQDN},
		{"gw.example.org", IDFQDN, "@gw.example.org", IDTypeFQDN},
		{"user@example.org", IDUserFQDN, "user@example.org", IDTypeRFC822Addr},
		{"192.0.2.1", IDIP, "192.0.2.1", IDTypeIPv4Addr},
		{"2001:db8::1", IDIP, "2001:db8::1", IDTypeIPv6Addr},
		{"@#0a0b", IDKeyID, "@#0a0b", IDTypeKeyID},
		{"C=CH, CN=gw", IDDN, "C=CH, CN=gw", IDTypeDERASN1DN},
	} {
		id, err := ParseID(c.in)
		if err != nil || id.Kind != c.kind || id.String() != c.out {
			t.Errorf("%q: %v %v %q", c.in, err, id.Kind, id)
			continue
		}
		if c.ty == 0 {
			if _, _, err := id.Payload(); err == nil {
				t.Errorf("%q has a payload", c.in)
			}
			continue
		}
		ty, data, err := id.Payload()
		if err != nil || ty != c.ty {
			t.Errorf("%q: payload type %d %v", c.in, ty, err)
			continue
		}
		back, err := IDFromPayload(ty, data)
		if err != nil || back.String() != c.out {
			t.Errorf("%q: back %q %v", c.in, back, err)
		}
		if _, ok := MatchID(id, back); !ok {
			t.Errorf("%q does not match itself", c.in)
		}
	}
	for _, bad := range []string{"", "@#zz", "@", "a b, c"} {
		if _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) accepted", bad)
		}
	}
	for _, c := range []struct {
		ty   uint8
		data []byte
	}{{IDTypeIPv4Addr, []byte{1, 2, 3}}, {IDTypeIPv6Addr, []byte{1, 2, 3, 4}}, {IDTypeFQDN, nil}, {IDTypeDERASN1DN, []byte{0x30, 0x05}}, {42, []byte{1}}} {
		if _, err := IDFromPayload(c.ty, c.data); err == nil {
			t.Errorf("IDFromPayload(%d, % x) accepted", c.ty, c.data)
		}
	}
	pat, _ := ParseID("C=CH, O=*, CN=gw")
	peer, _ := ParseID("CN=gw, O=Example, C=CH")
	if w, ok := MatchID(pat, peer); !ok || w != 1 {
		t.Errorf("MatchID wildcard: %d %v", w, ok)
	}
	if _, ok := MatchID(pat, ID{Kind: IDFQDN, Name: "gw"}); ok {
		t.Error("DN matched FQDN")
	}
	if _, ok := MatchID(ID{Kind: IDFromCert}, peer); !ok {
		t.Errorf("%%fromcert did not match")
	}
}

func TestCRL(t *testing.T) {
	f := getFixture(t)
	now := f.Now
	staleCRL, _ := f.Intermediate.CRL(nil, 2, now.AddDate(0, 0, -10), now.AddDate(0, 0, -3))
	otherCA, _ := pkitest.NewRoot(pkitest.Template{Name: "x", Subject: f.Intermediate.Cert.Subject})
	forgedCRL, _ := otherCA.CRL(nil, 9, now.Add(-time.Hour), now.AddDate(0, 0, 7)) // same issuer name, wrong key

	withCRLs := func(t *testing.T, crls ...[]byte) *Store {
		dir := f.storeDir(t, CRLsDir)
		os.MkdirAll(filepath.Join(dir, CRLsDir), 0o755)
		for i, c := range crls {
			os.WriteFile(filepath.Join(dir, CRLsDir, fmt.Sprintf("%d.crl", i)), c, 0o644) // DER
		}
		s, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, c := range []struct {
		name   string
		crls   [][]byte
		strict bool
		cert   *pkitest.Cert
		err    string
		logged string
	}{
		{"revoked", [][]byte{f.CRL}, false, f.Revoked, "certificate C=CH, O=Example, OU=VPN, CN=revoked.example.org (serial " + colonHex(f.Revoked.Cert.SerialNumber.Bytes()) + ") was revoked at 2026-06-01 10:00:00Z (keyCompromise), says the CRL of C=CH, O=Example, CN=Example Intermediate CA from crls/0.crl", ""},
		{"revoked strict", [][]byte{f.CRL, f.RootCRL}, true, f.Revoked, "was revoked", ""},
		{"good", [][]byte{f.CRL}, false, f.P256, "", ""},
		{"good strict", [][]byte{f.CRL, f.RootCRL}, true, f.P256, "", ""},
		{"strict without root CRL", [][]byte{f.CRL}, true, f.P256, "certificate C=CH, O=Example, CN=Example Intermediate CA: no CRL of C=CH, O=Example, CN=Example Root CA is available (crl-strict=yes)", ""},
		{"no CRL", nil, false, f.Revoked, "", ""},
		{"no CRL strict", nil, true, f.P256, "no CRL of C=CH, O=Example, CN=Example Intermediate CA is available", ""},
		{"stale", [][]byte{staleCRL, f.RootCRL}, false, f.P256, "", "is stale: its nextUpdate was 2026-05-29 12:00:00Z"},
		{"stale strict", [][]byte{staleCRL, f.RootCRL}, true, f.P256, "is stale: its nextUpdate was 2026-05-29 12:00:00Z (now 2026-06-01 12:00:00Z) (crl-strict=yes)", ""},
		{"newest wins", [][]byte{staleCRL, f.CRL}, false, f.Revoked, "was revoked", ""},
		{"forged CRL ignored", [][]byte{forgedCRL, f.RootCRL}, true, f.P256, "no CRL of C=CH, O=Example, CN=Example Intermediate CA", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := withCRLs(t, c.crls...)
			var logs []string
			v := NewValidator(s, ValidatorConfig{Now: func() time.Time { return now }, CRLStrict: c.strict,
				Log: func(format string, args ...any) { logs = append(logs, fmt.Sprintf(format, args...)) }})
			_, err := v.VerifyPeer(context.Background(), payloads(c.cert), PeerOptions{})
			wantErr(t, err, c.err)
			if c.logged != "" && !strings.Contains(strings.Join(logs, "\n"), c.logged) {
				t.Errorf("logs %q lack %q", logs, c.logged)
			}
		})
	}
}

func TestCRLFetch(t *testing.T) {
	f := getFixture(t)
	now := f.Now
	s := f.store(t, CRLsDir)
	clock := now
	var logs []string
	v := NewValidator(s, ValidatorConfig{Now: func() time.Time { return clock }, FetchCRLs: true,
		Fetcher: &Fetcher{Timeout: 2 * time.Second},
		Log:     func(format string, args ...any) { logs = append(logs, fmt.Sprintf(format, args...)) }})
	ctx := context.Background()
	f.set(f.CRL, nil, false)
	f.crlHits.Store(0)

	_, err := v.VerifyPeer(ctx, payloads(f.Revoked), PeerOptions{})
	wantErr(t, err, "from "+f.srv.URL+"/crl")
	if _, err := v.VerifyPeer(ctx, payloads(f.P256), PeerOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := f.crlHits.Load(); n != 1 {
		t.Errorf("%d fetches, want 1 (cached)", n)
	}
	if l := v.FetchedCRLs(); len(l) != 1 || l[0].Source != f.srv.URL+"/crl" || len(l[0].Revoked) != 1 || l[0].Fetched.IsZero() {
		t.Errorf("fetched CRLs %+v", l)
	}

	// The CA un-revokes (a newer CRL); Refresh picks it up.
	newer, _ := f.Intermediate.CRL(nil, 2, now, now.AddDate(0, 0, 7))
	f.set(newer, nil, false)
	if err := v.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.crlHits.Load(); n != 2 {
		t.Errorf("%d fetches after Refresh, want 2", n)
	}
	if _, err := v.VerifyPeer(ctx, payloads(f.Revoked), PeerOptions{}); err != nil {
		t.Errorf("after refresh: %v", err)
	}

	// A failing distribution point: Refresh reports it, the cached CRL stays.
	f.set(nil, nil, false)
	err = v.Refresh(ctx)
	wantErr(t, err, "HTTP 404")
	if l := v.FetchedCRLs(); len(l) != 1 || l[0].Number != "2" {
		t.Errorf("cached CRL lost: %+v", l)
	}

	// Time passes beyond nextUpdate: a stale CRL is re-fetched on use.
	clock = now.AddDate(0, 0, 8)
	f.set(nil, nil, false)
	f.crlHits.Store(0)
	vs := NewValidator(f.store(t, CRLsDir), ValidatorConfig{Now: func() time.Time { return clock }, FetchCRLs: true, CRLStrict: true})
	_, err = vs.VerifyPeer(ctx, payloads(f.P256), PeerOptions{})
	wantErr(t, err, "no CRL of C=CH, O=Example, CN=Example Intermediate CA is available (crl-strict=yes)")
	if f.crlHits.Load() == 0 {
		t.Error("strict mode did not try to fetch")
	}
	// Strict with a fetched, fresh CRL for the end entity and the root's
	// CRL in the store.
	clock = now
	fresh, _ := f.Intermediate.CRL(nil, 3, now.Add(-time.Minute), now.AddDate(0, 0, 1))
	f.set(fresh, nil, false)
	dir := f.storeDir(t, CRLsDir)
	os.MkdirAll(filepath.Join(dir, CRLsDir), 0o755)
	os.WriteFile(filepath.Join(dir, CRLsDir, "root.crl"), pkitest.CRLPEM(f.RootCRL), 0o644)
	s2, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	vs = NewValidator(s2, ValidatorConfig{Now: func() time.Time { return clock }, FetchCRLs: true, CRLStrict: true})
	if _, err := vs.VerifyPeer(ctx, payloads(f.P256), PeerOptions{}); err != nil {
		t.Errorf("strict with fetched CRL: %v", err)
	}
	// A stale fetched CRL is refused in strict mode.
	staleCRL, _ := f.Intermediate.CRL(nil, 4, now.AddDate(0, 0, -10), now.AddDate(0, 0, -1))
	f.set(staleCRL, nil, false)
	vs = NewValidator(s2, ValidatorConfig{Now: func() time.Time { return clock }, FetchCRLs: true, CRLStrict: true})
	_, err = vs.VerifyPeer(ctx, payloads(f.P256), PeerOptions{})
	wantErr(t, err, "is stale")
	f.set(f.CRL, nil, false)
}

func TestOCSP(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	s := f.store(t, CRLsDir)
	for _, post := range []bool{false, true} {
		for _, c := range []struct {
			name   string
			cert   *pkitest.Cert
			status map[*pkitest.Cert]int
			down   bool
			strict bool
			err    string
		}{
			{"good", f.P256, map[*pkitest.Cert]int{f.P256: ocsp.Good}, false, false, ""},
			{"good strict", f.P256, map[*pkitest.Cert]int{f.P256: ocsp.Good}, false, true, ""},
			{"revoked", f.Revoked, map[*pkitest.Cert]int{f.Revoked: ocsp.Revoked}, false, false,
				"certificate C=CH, O=Example, OU=VPN, CN=revoked.example.org (serial " + colonHex(f.Revoked.Cert.SerialNumber.Bytes()) + ") was revoked at 2026-06-01 11:00:00Z (keyCompromise), says OCSP responder"},
			{"unknown", f.P384, nil, false, false, ""},
			{"unknown strict", f.P384, nil, false, true, "does not know certificate C=CH, O=Example, OU=VPN, CN=p384.example.org (ocsp-strict=yes)"},
			{"down", f.P256, nil, true, false, ""},
			{"down strict", f.P256, nil, true, true, "HTTP 503"},
		} {
			t.Run(fmt.Sprintf("%s/post=%v", c.name, post), func(t *testing.T) {
				f.set(f.CRL, c.status, c.down)
				f.ocspHits.Store(0)
				v := NewValidator(s, ValidatorConfig{Now: func() time.Time { return f.Now }, OCSP: true, OCSPStrict: c.strict, OCSPPost: post})
				_, err := v.VerifyPeer(ctx, payloads(c.cert), PeerOptions{})
				wantErr(t, err, c.err)
				// Again: answered from the cache when the answer was good or revoked.
				_, err2 := v.VerifyPeer(ctx, payloads(c.cert), PeerOptions{})
				if (err == nil) != (err2 == nil) {
					t.Errorf("second verification differs: %v", err2)
				}
				st, known := c.status[c.cert]
				cached := known && !c.down && (st == ocsp.Good || st == ocsp.Revoked)
				if n := f.ocspHits.Load(); cached && n != 1 {
					t.Errorf("%d OCSP requests, want 1", n)
				}
			})
		}
	}
	// An answer signed by someone else is refused.
	other, _ := pkitest.NewRoot(pkitest.Template{Name: "rogue", CommonName: "Rogue"})
	rogue := httptest.NewServer(pkitest.OCSPHandler(other, func(*big.Int) pkitest.OCSPStatus { return pkitest.OCSPStatus{Status: ocsp.Good} },
		func() time.Time { return f.Now }, nil))
	defer rogue.Close()
	v := NewValidator(s, ValidatorConfig{Now: func() time.Time { return f.Now }, OCSP: true, OCSPStrict: true, OCSPURI: rogue.URL})
	_, err := v.VerifyPeer(ctx, payloads(f.P256), PeerOptions{})
	wantErr(t, err, "invalid answer from "+rogue.URL)
	f.set(f.CRL, nil, false)
}

func TestFetcherLimits(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Write(bytes.Repeat([]byte{'x'}, 2000))
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "/chunked":
			for range 5 {
				w.Write(bytes.Repeat([]byte{'y'}, 500))
				w.(http.Flusher).Flush()
			}
		default:
			w.Write([]byte("ok"))
		}
	}))
	defer srv.Close()
	f := &Fetcher{Timeout: 200 * time.Millisecond, MaxSize: 1000}
	ctx := context.Background()
	if b, err := f.Get(ctx, srv.URL+"/"); err != nil || string(b) != "ok" {
		t.Errorf("get: %q %v", b, err)
	}
	_, err := f.Get(ctx, srv.URL+"/big")
	wantErr(t, err, "over the limit of 1000")
	_, err = f.Get(ctx, srv.URL+"/chunked")
	wantErr(t, err, "over the limit of 1000")
	start := time.Now()
	_, err = f.Get(ctx, srv.URL+"/slow")
	if err == nil || time.Since(start) > 3*time.Second {
		t.Errorf("slow: %v after %v", err, time.Since(start))
	}
	_, err = f.Get(ctx, "ldap://ldap.example.org/cn=CA?certificateRevocationList")
	wantErr(t, err, `scheme "ldap" is not supported`)
}

// An encrypted key written by `openssl genpkey -algorithm EC -pkeyopt
// ec_paramgen_curve:P-256 -aes256 -pass pass:goswan-test` (OpenSSL 3.0:
// PBES2, PBKDF2-HMAC-SHA256 with 2048 iterations, AES-256-CBC), made for
// this test only, and its public key.
const opensslEncryptedKey = `-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAg4kVcBGA1epwICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEG6pXNQnsebNeU+nGvZ2OSsEgZAS
W8qhp3nvUVGTWVMwTxjwTnXsh98exHvV1nVLcbef7EWf5LSv6myA+nCZtv1mUIi6
2FeEUyrr/WhgUhAL3NExc71ZA4LWFOj9xa5EFRlvnNfZlopWOTXbb7xZg+mFY22S
dMMTqdnmIDTD+PeJ1qpG5PRWPX8pORxMgm4VT4ed7I9p7ndXeFirGUWwWlyX7UQ=
-----END ENCRYPTED PRIVATE KEY-----
`

const opensslPublicKey = `-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEGCEQ6OWydxveETC7QBroit2DGrgh
HBovl+6XPmEa3oX6pLf6UPOqL5Z1YnzjuEHIeb+Zi7TJd1sUQhlhbkOkWQ==
-----END PUBLIC KEY-----
`

func TestPrivateKeys(t *testing.T) {
	f := getFixture(t)
	// OpenSSL's PBES2.
	k, err := ParsePrivateKey([]byte(opensslEncryptedKey), []byte("goswan-test"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode([]byte(opensslPublicKey))
	pub, _ := x509.ParsePKIXPublicKey(b.Bytes)
	if !keyMatches(k, pub) {
		t.Error("OpenSSL key decrypted to the wrong key")
	}
	if _, err := ParsePrivateKey([]byte(opensslEncryptedKey), []byte("wrong")); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("wrong passphrase: %v", err)
	}
	if _, err := ParsePrivateKey([]byte(opensslEncryptedKey), nil); !errors.Is(err, ErrEncryptedKey) {
		t.Errorf("no passphrase: %v", err)
	}

	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rsaKey := f.RSA.Key.(*rsa.PrivateKey)
	ecKey := f.P256.Key.(*ecdsa.PrivateKey)
	ecDER, _ := x509.MarshalECPrivateKey(ecKey)
	//lint:ignore SA1019 testing the legacy format on purpose
	legacyRSA, err := x509.EncryptPEMBlock(rand.Reader, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey), []byte("pw"), x509.PEMCipherAES256) //nolint:staticcheck
	if err != nil {
		t.Fatal(err)
	}
	legacyEC, err := x509.EncryptPEMBlock(rand.Reader, "EC PRIVATE KEY", ecDER, []byte("pw"), x509.PEMCipherAES128) //nolint:staticcheck
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		data []byte
		pass string
		want crypto.Signer
		err  error
	}{
		{"pkcs8", f.Ed25519.KeyPEM(), "", f.Ed25519.Key, nil},
		{"pkcs1", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), "", rsaKey, nil},
		{"sec1", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}), "ignored", ecKey, nil},
		{"der", x509.MarshalPKCS1PrivateKey(rsaKey), "", rsaKey, nil},
		{"legacy rsa", pem.EncodeToMemory(legacyRSA), "pw", rsaKey, nil},
		{"legacy ec", pem.EncodeToMemory(legacyEC), "pw", ecKey, nil},
		{"legacy wrong", pem.EncodeToMemory(legacyEC), "nope", nil, ErrWrongPassphrase},
		{"legacy none", pem.EncodeToMemory(legacyRSA), "", nil, ErrEncryptedKey},
		{"cert only", f.RSA.CertPEM(), "", nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := write(c.name+".pem", c.data)
			k, err := LoadPrivateKey(p, c.pass)
			if c.want == nil && c.err == nil {
				if err == nil {
					t.Error("accepted")
				}
				return
			}
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Errorf("err %v, want %v", err, c.err)
				}
				return
			}
			if err != nil || !keyMatches(k, c.want.Public()) {
				t.Errorf("%v", err)
			}
		})
	}
	// Our own PBES2 writer, for each key type.
	for _, c := range []*pkitest.Cert{f.RSA, f.P384, f.Ed25519} {
		blk, err := EncryptPKCS8PrivateKey(c.Key, []byte("s3cret"), 2048)
		if err != nil {
			t.Fatal(err)
		}
		k, err := ParsePrivateKey(pem.EncodeToMemory(blk), []byte("s3cret"))
		if err != nil || !keyMatches(k, c.Key.Public()) {
			t.Errorf("%s: %v", c.Name, err)
		}
		if _, err := ParsePrivateKey(pem.EncodeToMemory(blk), []byte("s3cret!")); !errors.Is(err, ErrWrongPassphrase) {
			t.Errorf("%s wrong passphrase: %v", c.Name, err)
		}
		// And DER, which OpenSSL also writes (-outform DER).
		if k, err := ParsePrivateKey(blk.Bytes, []byte("s3cret")); err != nil || !keyMatches(k, c.Key.Public()) {
			t.Errorf("%s DER: %v", c.Name, err)
		}
		p := write(c.Name+".enc.pem", pem.EncodeToMemory(blk))
		if k, err := LoadPrivateKey(p, "s3cret"); err != nil || !keyMatches(k, c.Key.Public()) {
			t.Errorf("%s LoadPrivateKey: %v", c.Name, err)
		}
	}
}

func FuzzLoadPEM(f *testing.F) {
	fx := getFixture(f)
	f.Add(fx.RSA.ChainPEM())
	f.Add(fx.Ed25519.KeyPEM())
	f.Add(pkitest.CRLPEM(fx.CRL))
	f.Add(fx.CRL)
	f.Add(fx.P256.DER())
	f.Add([]byte(opensslEncryptedKey))
	f.Add([]byte("C=CH, O=\"Example, Inc\", CN=gw\\2c"))
	if blk, err := EncryptPKCS8PrivateKey(fx.P256.Key, []byte("x"), 1); err == nil {
		f.Add(pem.EncodeToMemory(blk))
	}
	old := maxPBKDF2Iterations
	maxPBKDF2Iterations = 5000
	f.Cleanup(func() { maxPBKDF2Iterations = old })
	f.Fuzz(func(t *testing.T, data []byte) {
		ParseCertificates(data)
		ParseCRLs(data)
		ParsePrivateKey(data, nil)
		ParsePrivateKey(data, []byte("x"))
		ParseDNDER(data)
		DNString(data)
		if dn, err := ParseDN(string(data)); err == nil {
			if der, err := MarshalDN(dn); err == nil {
				ParseDNDER(der)
			}
			FormatDN(dn)
		}
		if id, err := ParseID(string(data)); err == nil {
			id.Payload()
			_ = id.String()
		}
		for _, ty := range []uint8{1, 2, 3, 5, 9, 11} {
			IDFromPayload(ty, data)
		}
		ParseCertReq(data)
	})
}

func TestWriteSwanctl(t *testing.T) {
	f := getFixture(t)
	dir := t.TempDir()
	if err := f.WriteSwanctl(dir, f.RSA, f.Ed25519); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"x509ca/root.pem", "x509ca/intermediate.pem", "x509/rsa.pem", "x509/ed25519.pem",
		"private/rsa.pem", "private/ed25519.pem", "x509crl/intermediate.crl", "x509crl/root.crl"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Error(err)
			continue
		}
		switch filepath.Dir(name) {
		case "private":
			if _, err := ParsePrivateKey(data, nil); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		case "x509crl":
			if _, err := ParseCRLs(data); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		default:
			if cs, err := ParseCertificates(data); err != nil || len(cs) != 1 {
				t.Errorf("%s: %d certs, %v", name, len(cs), err)
			}
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "private", "rsa.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: %v %v", fi.Mode(), err)
	}
	if _, err := NewValidator(nil, ValidatorConfig{}).VerifyPeer(context.Background(), payloads(f.RSA), PeerOptions{}); err == nil {
		t.Error("validated without a store")
	}
}
