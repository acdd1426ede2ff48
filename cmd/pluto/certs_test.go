package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"goswan/pki"
	"goswan/pki/pkitest"
)

// certConf is a conn where west (127.0.0.1) proves itself with the P-256
// certificate and its DNS name, east (127.0.0.2) with the RSA-3072 one and
// its subject DN.
const certConf = `conn west-east
	left=127.0.0.1
	leftcert=p256
	leftid=@p256.example.org
	leftsubnet=10.0.1.0/24
	right=127.0.0.2
	rightcert=rsa
	rightid="C=CH, O=Example, OU=VPN, CN=rsa.example.org"
	rightsubnet=10.0.2.0/24
	ike=aes_gcm128-sha2_256-dh31
	esp=aes_gcm128
	retransmit-timeout=5s
	auto=add
`

func newTestPKI(t *testing.T, o pkitest.Options) *pkitest.PKI {
	t.Helper()
	o.Now = time.Now()
	p, err := pkitest.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// nssdirs writes a trust store for each side and returns the flags.
func nssdirs(t *testing.T, p *pkitest.PKI, mod func(dir string)) (west, east []string) {
	t.Helper()
	dir := rundir(t)
	for _, side := range []string{"west", "east"} {
		d := filepath.Join(dir, side)
		if err := p.WriteStore(d); err != nil {
			t.Fatal(err)
		}
		if mod != nil {
			mod(d)
		}
	}
	return []string{"--nssdir", filepath.Join(dir, "west")}, []string{"--nssdir", filepath.Join(dir, "east")}
}

func logOf(t *testing.T, run string) string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(filepath.Dir(run), filepath.Base(run)+".log"))
	return string(b)
}

func ipsecUp(t *testing.T, run string) (int, string) {
	t.Helper()
	code, out, errOut := runBin(t, nil, "ipsec", "up", "west-east", "--rundir", run)
	return code, out + errOut
}

func TestTwoPlutosCertificates(t *testing.T) {
	p := newTestPKI(t, pkitest.Options{})
	wa, ea := nssdirs(t, p, nil)
	west, east := twoPlutosArgs(t, certConf, "", "", []string{testKernelEnv + "=memory"}, wa, ea)
	if code, out := ipsecUp(t, west); code != 0 {
		t.Fatalf("ipsec up: exit %d\n%s", code, out)
	}
	w, e := ipsecStatus(t, west), ipsecStatus(t, east)
	if len(w.IKESAs) != 1 || len(e.IKESAs) != 1 || len(w.ChildSAs) != 1 || len(e.ChildSAs) != 1 {
		t.Fatalf("SAs: west %+v %+v\neast %+v %+v", w.IKESAs, w.ChildSAs, e.IKESAs, e.ChildSAs)
	}
	if w.IKESAs[0].RemoteID != "C=CH, O=Example, OU=VPN, CN=rsa.example.org" || e.IKESAs[0].RemoteID != "@p256.example.org" {
		t.Errorf("IDs: west sees %q, east sees %q", w.IKESAs[0].RemoteID, e.IKESAs[0].RemoteID)
	}
	if l := logOf(t, east); !strings.Contains(l, "peer authenticated with certificate C=CH, O=Example, OU=VPN, CN=p256.example.org (ECDSA P-256 key") {
		t.Errorf("east's log:\n%s", l)
	}
	if l := logOf(t, west); !strings.Contains(l, "peer authenticated with certificate C=CH, O=Example, OU=VPN, CN=rsa.example.org (RSA-3072 key, digital signature rsa-pss-sha256") {
		t.Errorf("west's log:\n%s", l)
	}

	// The list verbs, in both forms.
	code, out, errOut := runBin(t, nil, "ipsec", "listcerts", "--json", "--rundir", west)
	var certs struct {
		Certs []pki.CertInfo `json:"certs"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &certs) != nil {
		t.Fatalf("listcerts --json: exit %d\n%s%s", code, out, errOut)
	}
	found := false
	for _, c := range certs.Certs {
		if c.Nickname == "p256" {
			found = c.HasPrivateKey && c.KeyType == "ECDSA" && strings.Contains(strings.Join(c.SubjectAltNames, ","), "DNS:p256.example.org")
		}
	}
	if !found || len(certs.Certs) != len(p.EndEntities()) {
		t.Errorf("listcerts --json: %s", out)
	}
	for verb, want := range map[string]string{
		"listcerts":   "subject: C=CH, O=Example, OU=VPN, CN=p256.example.org",
		"listcacerts": "Example Root CA",
		"listcrls":    "revoked certificates: 1",
		"listpubkeys": "has private key",
	} {
		code, out, errOut := runBin(t, nil, "ipsec", verb, "--rundir", west)
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("ipsec %s: exit %d, want %q\n%s%s", verb, code, want, out, errOut)
		}
		code, out, errOut = runBin(t, nil, "ipsec", verb, "--json", "--rundir", west)
		var v map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &v) != nil || len(v) != 1 {
			t.Errorf("ipsec %s --json: exit %d\n%s%s", verb, code, out, errOut)
		}
	}
	if code, out, errOut := runBin(t, nil, "ipsec", "rereadall", "--rundir", west); code != 0 {
		t.Errorf("rereadall: exit %d\n%s%s", code, out, errOut)
	}
}

func TestTwoPlutosCRLStrict(t *testing.T) {
	p := newTestPKI(t, pkitest.Options{})
	env := []string{testKernelEnv + "=memory"}
	t.Run("with CRL", func(t *testing.T) {
		wa, ea := nssdirs(t, p, nil)
		west, _ := twoPlutosArgs(t, certConf, "", "", env, append(wa, "--crl-strict"), append(ea, "--crl-strict"))
		if code, out := ipsecUp(t, west); code != 0 {
			t.Fatalf("ipsec up with --crl-strict and the CRLs loaded: exit %d\n%s", code, out)
		}
	})
	t.Run("without CRL", func(t *testing.T) {
		wa, ea := nssdirs(t, p, func(dir string) { os.RemoveAll(filepath.Join(dir, "crls")) })
		west, east := twoPlutosArgs(t, certConf, "", "", env, wa, append(ea, "--crl-strict"))
		code, out := ipsecUp(t, west)
		if code == 0 || !strings.Contains(out, "AUTHENTICATION_FAILED") {
			t.Errorf("ipsec up: exit %d; want a failure\n%s", code, out)
		}
		if l := logOf(t, east); !strings.Contains(l, "no CRL of C=CH, O=Example, CN=Example Intermediate CA is available (crl-strict=yes)") {
			t.Errorf("east's log:\n%s", l)
		}
	})
}

// TestTwoPlutosCRLFetch serves the intermediate's CRL over HTTP: east
// fetches it on the first up, refreshes it every second, and refuses
// west's certificate once the CRL revokes it.
func TestTwoPlutosCRLFetch(t *testing.T) {
	var crl atomic.Pointer[[]byte]
	var fetches atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Write(*crl.Load())
	}))
	defer srv.Close()
	p := newTestPKI(t, pkitest.Options{CRLURL: srv.URL + "/intermediate.crl"})
	now := time.Now()
	empty, err := p.Intermediate.CRL(nil, 10, now.Add(-time.Hour), now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	crl.Store(&empty)
	wa, ea := nssdirs(t, p, func(dir string) { os.Remove(filepath.Join(dir, "crls", "intermediate.crl")) })
	west, east := twoPlutosArgs(t, certConf, "", "", []string{testKernelEnv + "=memory"}, wa, append(ea, "--crlcheckinterval", "1", "--crl-strict"))
	if code, out := ipsecUp(t, west); code != 0 {
		t.Fatalf("first ipsec up: exit %d\n%s", code, out)
	}
	if fetches.Load() == 0 {
		t.Fatal("east fetched no CRL")
	}
	code, out, errOut := runBin(t, nil, "ipsec", "listcrls", "--json", "--rundir", east)
	if code != 0 || !strings.Contains(out, srv.URL) {
		t.Errorf("listcrls --json: exit %d\n%s%s", code, out, errOut)
	}

	// Revoke west's certificate; wait for east's refresh.
	revoked, err := p.Intermediate.CRL([]*pkitest.Cert{p.P256}, 11, now.Add(-time.Minute), now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	crl.Store(&revoked)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var v struct {
			CRLs []pki.CRLInfo `json:"crls"`
		}
		_, out, _ := runBin(t, nil, "ipsec", "listcrls", "--json", "--rundir", east)
		json.Unmarshal([]byte(out), &v)
		if len(v.CRLs) > 0 && len(v.CRLs[len(v.CRLs)-1].Revoked) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("east did not refresh the CRL in 10s (%d fetches):\n%s", fetches.Load(), out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, out, errOut := runBin(t, nil, "ipsec", "down", "west-east", "--rundir", west); code != 0 {
		t.Fatalf("ipsec down: exit %d\n%s%s", code, out, errOut)
	}
	code, out = ipsecUp(t, west)
	if code == 0 || !strings.Contains(out, "AUTHENTICATION_FAILED") {
		t.Errorf("ipsec up after the revocation: exit %d; want a failure\n%s", code, out)
	}
	if l := logOf(t, east); !strings.Contains(l, "CN=p256.example.org (serial") || !strings.Contains(l, "was revoked at") {
		t.Errorf("east's log:\n%s", l)
	}
}
