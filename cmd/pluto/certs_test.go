package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
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

// certNetstackConf is a conn between west (127.0.0.1) and east
// (127.0.0.2), each with its certificate, for the user-space data plane:
// west names itself by its subject DN (leftid=%fromcert), east by the
// ID given; both require the other's chain to hold their own issuer
// (%same).
func certNetstackConf(westCert, eastCert, eastID string) string {
	return fmt.Sprintf(`conn west-east
	left=127.0.0.1
	leftcert=%s
	leftid=%%fromcert
	leftca=%%same
	leftsubnet=10.0.1.0/24
	leftsourceip=10.0.1.1
	right=127.0.0.2
	rightcert=%s
	rightid=%s
	rightca=%%same
	rightsubnet=10.0.2.0/24
	rightsourceip=10.0.2.1
	ike=aes_gcm128-sha2_256-dh31
	esp=aes_gcm128
	retransmit-timeout=5s
	auto=add
`, westCert, eastCert, eastID)
}

// tcpEcho serves an echo on the host until the test ends.
func tcpEcho(t *testing.T) net.Addr {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return l.Addr()
}

// netstackCertPair starts west and east with --use-netstack (no memory
// back end, as the test user), the trust store of every end entity on
// both sides, west forwarding 127.0.0.1:<fwd> to 10.0.2.1:7000 and east
// exposing that port as echo.
func netstackCertPair(t *testing.T, p *pkitest.PKI, echo net.Addr, westCert, eastCert, eastID string) (west, east string, fwd int) {
	t.Helper()
	wa, ea := nssdirs(t, p, nil)
	fwd = freeTCPPort(t)
	west, east = twoPlutosArgs(t, certNetstackConf(westCert, eastCert, eastID), "", "", nil,
		append(wa, "--netstack-forward", fmt.Sprintf("tcp:127.0.0.1:%d=10.0.2.1:7000", fwd)),
		append(ea, "--netstack-expose", "tcp:7000="+echo.String()))
	return west, east, fwd
}

// echoThrough sends n bytes through the forward and checks the echo.
func echoThrough(t *testing.T, fwd, n int) {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", fwd))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte(i*13 + i>>8)
	}
	go c.Write(payload)
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading the echo through the tunnel: %v", err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("the echo through the tunnel differs from what was sent")
	}
}

// waitLog waits up to 5 s for the daemon's log to hold every one of
// want, and returns the log.
func waitLog(t *testing.T, run string, want ...string) (string, bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l := logOf(t, run)
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(l, w)
		}
		if ok || time.Now().After(deadline) {
			return l, ok
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCertsThroughNetstack runs our daemon against itself with
// certificate authentication and the user-space data plane: every key
// type authenticates and carries traffic, and a revoked, expired or
// mismatched certificate is refused with a clear line in both logs.
func TestCertsThroughNetstack(t *testing.T) {
	p := newTestPKI(t, pkitest.Options{})
	echo := tcpEcho(t)
	dn := func(c *pkitest.Cert) string { return pki.DNString(c.Cert.RawSubject) }
	san := func(c *pkitest.Cert) string { return "@" + c.Cert.DNSNames[0] }

	// Each key type is presented once by east (the responder) and once by
	// west (the initiator).
	for _, tc := range []struct {
		name             string
		west, east       *pkitest.Cert
		westKey, eastKey string
	}{
		{"RSA-3072", p.P256, p.RSA, "ECDSA P-256", "RSA-3072"},
		{"ECDSA-P256", p.P384, p.P256, "ECDSA P-384", "ECDSA P-256"},
		{"ECDSA-P384", p.Ed25519, p.P384, "Ed25519", "ECDSA P-384"},
		{"Ed25519", p.RSA, p.Ed25519, "RSA-3072", "Ed25519"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			west, east, fwd := netstackCertPair(t, p, echo, tc.west.Name, tc.east.Name, san(tc.east))
			if code, out := ipsecUp(t, west); code != 0 {
				t.Fatalf("ipsec up: exit %d\n%s", code, out)
			}
			echoThrough(t, fwd, 64<<10)
			w, e := ipsecStatus(t, west), ipsecStatus(t, east)
			if len(w.IKESAs) != 1 || len(e.IKESAs) != 1 || len(w.ChildSAs) != 1 || len(e.ChildSAs) != 1 {
				t.Fatalf("SAs: west %+v %+v\neast %+v %+v", w.IKESAs, w.ChildSAs, e.IKESAs, e.ChildSAs)
			}
			if w.IKESAs[0].RemoteID != san(tc.east) || e.IKESAs[0].RemoteID != dn(tc.west) {
				t.Errorf("IDs: west sees %q, east sees %q", w.IKESAs[0].RemoteID, e.IKESAs[0].RemoteID)
			}
			if w.ChildSAs[0].BytesOut < 64<<10 || e.ChildSAs[0].BytesOut < 64<<10 || !w.ChildSAs[0].Encap {
				t.Errorf("Child SA counters: west out %d, east out %d, encap %v", w.ChildSAs[0].BytesOut, e.ChildSAs[0].BytesOut, w.ChildSAs[0].Encap)
			}
			// ipsec status does not say how the peer authenticated: the log does.
			issuer := "issuer C=CH, O=Example, CN=Example Intermediate CA"
			if l, ok := waitLog(t, west, "peer authenticated with certificate "+dn(tc.east)+" ("+tc.eastKey+" key", issuer); !ok {
				t.Errorf("west's log lacks the authentication of east's %s certificate:\n%s", tc.eastKey, l)
			}
			if l, ok := waitLog(t, east, "peer authenticated with certificate "+dn(tc.west)+" ("+tc.westKey+" key", issuer); !ok {
				t.Errorf("east's log lacks the authentication of west's %s certificate:\n%s", tc.westKey, l)
			}
		})
	}

	// The refusals: one side presents a bad certificate; the other names
	// why in its log, and the refused one says it was refused.
	bad := []struct {
		name string
		cert *pkitest.Cert
		why  string // in the refusing side's log
	}{
		{"revoked", p.Revoked, "was revoked at"},
		{"expired", p.Expired, "expired at"},
		{"wrong SAN", p.WrongSAN, "is not proven by its certificate"},
	}
	for _, b := range bad {
		// East (the responder) presents it: west refuses the IKE_AUTH
		// response and tells east in an INFORMATIONAL.
		t.Run("east presents "+b.name, func(t *testing.T) {
			id := san(b.cert)
			if b.cert == p.WrongSAN {
				id = "@wrongsan.example.org"
			}
			west, east, fwd := netstackCertPair(t, p, echo, p.P256.Name, b.cert.Name, id)
			code, out := ipsecUp(t, west)
			if code == 0 || !strings.Contains(out, b.why) || !strings.Contains(out, "sent AUTHENTICATION_FAILED") {
				t.Errorf("ipsec up: exit %d; want a failure naming %q\n%s", code, b.why, out)
			}
			if l, ok := waitLog(t, west, "peer's ", b.why, "sent AUTHENTICATION_FAILED"); !ok {
				t.Errorf("west's log does not say why it refused east:\n%s", l)
			}
			if l, ok := waitLog(t, east, "the peer says our authentication failed (AUTHENTICATION_FAILED)"); !ok {
				t.Errorf("east's log does not say west refused it:\n%s", l)
			}
			noSAs(t, west, east)
			if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", fwd), time.Second); err == nil {
				c.SetDeadline(time.Now().Add(500 * time.Millisecond))
				c.Write([]byte("x"))
				if n, _ := c.Read(make([]byte, 1)); n > 0 {
					t.Errorf("data crossed a refused tunnel")
				}
				c.Close()
			}
		})
		// West (the initiator) presents it: east answers
		// AUTHENTICATION_FAILED.
		t.Run("west presents "+b.name, func(t *testing.T) {
			conf := strings.Replace(certNetstackConf(b.cert.Name, p.P384.Name, san(p.P384)), "leftid=%fromcert", "leftid="+san(b.cert), 1)
			if b.cert == p.WrongSAN {
				conf = strings.Replace(conf, "leftid="+san(b.cert), "leftid=@wrongsan.example.org", 1)
			}
			wa, ea := nssdirs(t, p, nil)
			west, east := twoPlutosArgs(t, conf, "", "", nil, wa, append(ea, "--netstack-expose", "tcp:7000="+echo.String()))
			code, out := ipsecUp(t, west)
			if code == 0 || !strings.Contains(out, "peer rejected our authentication") || !strings.Contains(out, "AUTHENTICATION_FAILED") {
				t.Errorf("ipsec up: exit %d; want a failure saying the peer rejected us\n%s", code, out)
			}
			if l, ok := waitLog(t, east, "peer's ", b.why, "answering AUTHENTICATION_FAILED"); !ok {
				t.Errorf("east's log does not say why it refused west:\n%s", l)
			}
			if l, ok := waitLog(t, west, "peer rejected our authentication (our certificate "+dn(b.cert)); !ok {
				t.Errorf("west's log does not say east refused it:\n%s", l)
			}
			noSAs(t, west, east)
		})
	}
}

// noSAs waits up to 5 s for both daemons to hold no SA.
func noSAs(t *testing.T, west, east string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		w, e := ipsecStatus(t, west), ipsecStatus(t, east)
		if len(w.IKESAs)+len(w.ChildSAs)+len(e.IKESAs)+len(e.ChildSAs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("SAs left after a refusal: west %+v %+v\neast %+v %+v", w.IKESAs, w.ChildSAs, e.IKESAs, e.ChildSAs)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
