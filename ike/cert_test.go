package ike

import (
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"goswan/config"
	"goswan/ike/message"
	"goswan/pki"
	"goswan/pki/pkitest"
)

var (
	testPKIOnce sync.Once
	testPKI     *pkitest.PKI
	otherPKI    *pkitest.PKI // another root, which the test stores do not trust
	testPKIErr  error
)

func getPKI(t testing.TB) *pkitest.PKI {
	t.Helper()
	testPKIOnce.Do(func() {
		if testPKI, testPKIErr = pkitest.New(pkitest.Options{}); testPKIErr == nil {
			otherPKI, testPKIErr = pkitest.New(pkitest.Options{RSAKeyType: pkitest.RSA2048, Domain: "other.example"})
		}
	})
	if testPKIErr != nil {
		t.Fatal(testPKIErr)
	}
	return testPKI
}

// certStore writes p's store (all end entities) to a new folder and
// returns the Certificates on it, with a Validator at p's time.
func certStore(t testing.TB, p *pkitest.PKI, secrets func() *config.Secrets, cfg pki.ValidatorConfig, mod func(dir string)) Certificates {
	t.Helper()
	dir := t.TempDir()
	if err := p.WriteStore(dir); err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(dir)
	}
	st, err := pki.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return p.Now }
	}
	return NewCertificates(pki.NewValidator(st, cfg), secrets)
}

// certBed is a bed whose engines have trust stores of the test PKI;
// wmod and emod may change each store's folder before it is loaded.
func certBed(t testing.TB, west, east string, wmod, emod func(dir string)) *bed {
	t.Helper()
	p := getPKI(t)
	var b *bed
	b = newBedWith(t, westAddr, eastAddr, west, east, func(name string, o *Options) {
		if name == "west" {
			o.Certificates = certStore(t, p, func() *config.Secrets { return b.wSecrets }, pki.ValidatorConfig{}, wmod)
		} else {
			o.Certificates = certStore(t, p, func() *config.Secrets { return b.eSecrets }, pki.ValidatorConfig{}, emod)
		}
	})
	return b
}

// certConn is a conn where west (left) proves itself with leftcert=w and
// ID @w.example.org, east with rightcert=e and its subject DN; extra
// lines are appended.
func certConn(w, e string, extra ...string) string {
	return fmt.Sprintf(`
left=192.0.2.1
leftsubnet=10.1.0.0/24
right=192.0.2.2
rightsubnet=10.2.0.0/24
leftcert=%s
leftid=@%s.example.org
rightcert=%s
rightid="C=CH, O=Example, OU=VPN, CN=%s.example.org"
%s`, w, w, e, e, strings.Join(extra, "\n"))
}

func TestCertKeyTypes(t *testing.T) {
	for _, tc := range []struct {
		name, w, e string
		pkcs1      bool
		method     string
	}{
		{"rsa-pss", "rsa", "p256", false, "RSA-3072 key, digital signature rsa-pss-sha256"},
		{"rsa-pkcs1", "rsa", "p384", true, "RSA-3072 key, digital signature rsa-pkcs1-sha256"},
		{"p256", "p256", "rsa", false, "ECDSA P-256 key, digital signature ecdsa-sha256"},
		{"p384", "p384", "ed25519", false, "ECDSA P-384 key, digital signature ecdsa-sha384"},
		{"ed25519", "ed25519", "p256", false, "Ed25519 key, digital signature ed25519"},
	} {
		for _, reverse := range []bool{false, true} {
			w, e := tc.w, tc.e
			if reverse {
				w, e = e, w
			}
			t.Run(fmt.Sprintf("%s/%s-%s", tc.name, w, e), func(t *testing.T) {
				conn := certConn(w, e)
				b := certBed(t, conn, conn, nil, nil)
				b.west.rsaPKCS1, b.east.rsaPKCS1 = tc.pkcs1, tc.pkcs1
				b.mustUp()
				wantOn := b.eastLog
				if reverse {
					wantOn = b.westLog
				}
				if !wantOn.has(tc.method) {
					t.Errorf("no %q in the log of the side verifying %s:\nwest:\n%s\neast:\n%s", tc.method, tc.w, b.westLog, b.eastLog)
				}
				ws, es := b.west.Status().IKESAs[0], b.east.Status().IKESAs[0]
				if ws.RemoteID != "C=CH, O=Example, OU=VPN, CN="+e+".example.org" || es.RemoteID != "@"+w+".example.org" {
					t.Errorf("IDs: west sees %q, east sees %q", ws.RemoteID, es.RemoteID)
				}
				if ws.LocalID != es.RemoteID || es.LocalID != ws.RemoteID {
					t.Errorf("IDs: west %q/%q east %q/%q", ws.LocalID, ws.RemoteID, es.LocalID, es.RemoteID)
				}
				if err := b.west.Terminate("test", nil); err != nil {
					t.Fatal(err)
				}
				b.net.pump()
				b.empty(t)
			})
		}
	}
}

// The signing and checking happen on worker goroutines too.
func TestCertWorkers(t *testing.T) {
	p := getPKI(t)
	conn := certConn("p256", "rsa")
	var b *bed
	b = newBedWith(t, westAddr, eastAddr, conn, conn, func(name string, o *Options) {
		o.Workers = 2
		o.Certificates = certStore(t, p, nil, pki.ValidatorConfig{}, nil)
	})
	r := &upResult{}
	done := make(chan struct{})
	if err := b.west.Initiate("test", func(p Progress) {
		r.progress(p)
		if p.Done {
			close(done)
		}
	}); err != nil {
		t.Fatal(err)
	}
	for {
		b.net.pump()
		select {
		case <-done:
			if r.err != nil {
				t.Fatalf("up: %v\nwest:\n%s\neast:\n%s", r.err, b.westLog, b.eastLog)
			}
			return
		case <-time.After(time.Millisecond):
		}
	}
}

func TestCertAsymmetric(t *testing.T) {
	// West proves itself with a certificate, east with a PSK; and the
	// other way round.
	conn := `
left=192.0.2.1
leftsubnet=10.1.0.0/24
right=192.0.2.2
rightsubnet=10.2.0.0/24
leftauth=ecdsa
rightauth=secret
leftcert=p256
leftid=@p256.example.org
rightid=@east
`
	b := certBed(t, conn, conn, nil, nil)
	b.wSecrets = psk("@p256.example.org @east : an asymmetric secret")
	b.eSecrets = b.wSecrets
	b.mustUp()
	if !b.eastLog.has("peer authenticated with certificate C=CH, O=Example, OU=VPN, CN=p256.example.org") {
		t.Errorf("east log:\n%s", b.eastLog)
	}
	if got := b.west.Status().Conns[0].AuthBy; got != "signature/secret" {
		t.Errorf("west authby %q", got)
	}

	// The PSK side with a wrong key: refused by the certificate side.
	b = certBed(t, conn, conn, nil, nil)
	b.wSecrets = psk("@p256.example.org @east : an asymmetric secret")
	b.eSecrets = psk("@p256.example.org @east : another secret")
	r := b.up()
	if r.err == nil || !b.westLog.has("peer's AUTH payload does not match the PSK for IDs @p256.example.org/@east") {
		t.Errorf("up: %v\nwest log:\n%s", r.err, b.westLog)
	}
	if !b.eastLog.has("AUTHENTICATION_FAILED") {
		t.Errorf("east log:\n%s", b.eastLog)
	}
}

func TestCertRefused(t *testing.T) {
	p := getPKI(t)
	other := func(dir string) {
		// West's store: a certificate of another PKI (with the test
		// PKI's root, to check east's).
		if err := otherPKI.WriteStore(dir, otherPKI.P256); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "cacerts", "root.pem"), p.Root.CertPEM(), 0o644)
	}
	for _, tc := range []struct {
		name, cert, id string
		wmod           func(dir string)
		extra          string
		want           string
	}{
		{"revoked", "revoked", "@revoked.example.org", nil, "", "was revoked"},
		{"expired", "expired", "@expired.example.org", nil, "", "expired at"},
		{"wrong-san", "wrongsan", "@wrongsan.example.org", nil, "", "is not proven by its certificate"},
		{"wrong-rightid", "p384", "@p384.example.org", nil, "", "does not match rightid=@p256.example.org"},
		{"untrusted-ca", "p256", "@p256.other.example", other, "", "peer's certificate refused"},
		{"rightca", "p256", "@p256.example.org", nil, `leftca="C=CH, O=Example, CN=Some Other CA"`, "peer's certificate refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// West uses the bad certificate; east wants a certificate
			// of the test PKI for @p256.example.org, except where the
			// case is about something else.
			rid := "@p256.example.org"
			if tc.name == "revoked" || tc.name == "expired" || tc.name == "wrong-san" || tc.name == "untrusted-ca" {
				rid = tc.id
			}
			west := fmt.Sprintf("left=192.0.2.1\nright=192.0.2.2\nleftcert=%s\nleftid=%s\nrightid=%%fromcert", tc.cert, tc.id)
			east := fmt.Sprintf("left=192.0.2.1\nright=192.0.2.2\nrightcert=p384\nleftid=%s\n%s", rid, tc.extra)
			b := certBed(t, west, east, tc.wmod, nil)
			r := b.up()
			if r.done != 1 || r.err == nil {
				t.Fatalf("up: done %d err %v", r.done, r.err)
			}
			if !b.eastLog.has(tc.want) || !b.eastLog.has("AUTHENTICATION_FAILED") {
				t.Errorf("east log has no %q:\n%s", tc.want, b.eastLog)
			}
			if !strings.Contains(r.err.Error(), "peer rejected our authentication (our certificate") {
				t.Errorf("west: %v", r.err)
			}
			b.noIKE(t)
			b.empty(t)
		})
	}

	// The initiator refuses the responder's certificate: both sides
	// say so.
	t.Run("responder-revoked", func(t *testing.T) {
		west := "left=192.0.2.1\nright=192.0.2.2\nleftcert=p256\nleftid=%fromcert\nrightid=%fromcert"
		east := "left=192.0.2.1\nright=192.0.2.2\nrightcert=revoked\nleftid=%fromcert"
		b := certBed(t, west, east, nil, nil)
		r := b.up()
		if r.err == nil || !strings.Contains(r.err.Error(), "was revoked") || !strings.Contains(r.err.Error(), "sent AUTHENTICATION_FAILED") {
			t.Fatalf("up: %v", r.err)
		}
		if !b.eastLog.has("the peer says our authentication failed") {
			t.Errorf("east log:\n%s", b.eastLog)
		}
		b.noIKE(t)
		b.empty(t)
	})
}

func TestCertSendCert(t *testing.T) {
	conn := certConn("p256", "p384")
	b := certBed(t, conn, conn, nil, nil)
	b.mustUp()
	for name, e := range map[string]*Engine{"west": b.west, "east": b.east} {
		n := 0
		for _, w := range e.workers {
			for _, sa := range w.sas {
				n++
				if !sa.peerCertReq {
					t.Errorf("%s: the peer sent no CERTREQ", name)
				}
				if len(sa.peerHashes) != 4 {
					t.Errorf("%s: peer's SIGNATURE_HASH_ALGORITHMS %v", name, sa.peerHashes)
				}
			}
		}
		if n == 0 {
			t.Errorf("%s: no IKE SA", name)
		}
	}

	// sendcert=never: the peer has no certificate to check.
	conn = certConn("p256", "p384", "leftsendcert=never")
	b = certBed(t, conn, conn, nil, nil)
	if r := b.up(); r.err == nil {
		t.Fatal("up with leftsendcert=never succeeded")
	}
	if !b.eastLog.has("peer sent no certificate (CERT payload) to prove ID @p256.example.org") {
		t.Errorf("east log:\n%s", b.eastLog)
	}

	// sendifasked without a CERTREQ (east trusts no CA): nothing sent;
	// alwayssend sends anyway (and east cannot check it).
	noCAs := func(dir string) { os.RemoveAll(filepath.Join(dir, "cacerts")) }
	for _, sc := range []string{"sendifasked", "alwayssend"} {
		conn = certConn("p256", "p384", "leftsendcert="+sc)
		b = certBed(t, conn, conn, nil, noCAs)
		b.up()
		want := "peer sent no certificate"
		if sc == "alwayssend" {
			want = "peer's certificate refused"
		}
		if !b.eastLog.has(want) {
			t.Errorf("%s: east log has no %q:\n%s", sc, want, b.eastLog)
		}
	}
}

func TestCertLegacyMethods(t *testing.T) {
	for _, tc := range []struct{ w, e, method string }{
		{"p256", "rsa", string(message.AuthECDSASHA256P256.String())},
		{"rsa", "p384", string(message.AuthRSASig.String())},
	} {
		conn := certConn(tc.w, tc.e)
		b := certBed(t, conn, conn, nil, nil)
		b.west.noSigHashes, b.east.noSigHashes = true, true
		r := b.mustUp()
		if !r.has("auth " + tc.method) {
			t.Errorf("west did not use %s:\n%s", tc.method, strings.Join(r.lines, "\n"))
		}
		if !b.eastLog.has("auth method " + tc.method) {
			t.Errorf("east log:\n%s", b.eastLog)
		}
	}

	// Ed25519 has no method without RFC 7427; rsa-sha2 refuses method 1.
	conn := certConn("ed25519", "p256")
	b := certBed(t, conn, conn, nil, nil)
	b.east.noSigHashes = true
	if r := b.up(); r.err == nil || !strings.Contains(r.err.Error(), "no other AUTH method") {
		t.Errorf("ed25519 without SIGNATURE_HASH_ALGORITHMS: %v", r.err)
	}
	conn = certConn("rsa", "p256", "authby=rsa-sha2,ecdsa")
	b = certBed(t, conn, conn, nil, nil)
	b.east.noSigHashes = true
	if r := b.up(); r.err == nil || !b.eastLog.has("wants rightauth=rsasig+ecdsa") {
		t.Errorf("authby=rsa-sha2 with method 1: %v\n%s", r.err, b.eastLog)
	}
}

func TestCertKeyInSecrets(t *testing.T) {
	p := getPKI(t)
	keyFile := filepath.Join(t.TempDir(), "p256.key")
	blk, err := pki.EncryptPKCS8PrivateKey(p.P256.Key, []byte("pass phrase"), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	noKey := func(dir string) { os.Remove(filepath.Join(dir, "private", "p256.pem")) }
	conn := certConn("p256", "p384")
	var b *bed
	secrets := &config.Secrets{Entries: []*config.Secret{{Kind: config.ECDSA, KeyFile: keyFile, Passphrase: "pass phrase"}}}
	b = newBedWith(t, westAddr, eastAddr, "", conn, func(name string, o *Options) {
		if name == "west" {
			o.Certificates = certStore(t, p, func() *config.Secrets { return secrets }, pki.ValidatorConfig{}, noKey)
		} else {
			o.Certificates = certStore(t, p, nil, pki.ValidatorConfig{}, nil)
		}
	})
	if err := b.west.AddConn(parseConn(t, conn)); err != nil {
		t.Fatal(err)
	}
	b.mustUp()

	// Without the secret the conn does not load.
	secrets = &config.Secrets{Entries: []*config.Secret{{Kind: config.ECDSA, KeyFile: keyFile, Passphrase: "wrong"}}}
	err = b.west.AddConn(parseConn(t, strings.Replace(conn, "conn test", "conn test", 1)))
	if err == nil || !strings.Contains(err.Error(), "no private key") {
		t.Errorf("AddConn with a wrong passphrase: %v", err)
	}
}
