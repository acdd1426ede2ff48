package interop

import (
	"crypto/x509/pkix"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"goswan/internal/peers"
	"goswan/internal/testnet"
	"goswan/pki/pkitest"
)

// certCase is one certificate interop case: our certificate and
// strongSwan's, the words each log must show for the other's signature.
type certCase struct {
	name        string
	ours        func(p *pkitest.PKI) *pkitest.Cert
	theirs      func(p *pkitest.PKI) *pkitest.Cert
	charonExtra string // strongswan.conf lines inside charon { }
	ourLog      string // how we log the verified strongSwan signature
	theirLog    string // how charon logs our verified signature
}

var certCases = []certCase{
	{
		name: "rsa-pss",
		ours: func(p *pkitest.PKI) *pkitest.Cert { return p.RSA },
		theirs: func(p *pkitest.PKI) *pkitest.Cert {
			return mustIssue(p, pkitest.Template{Name: "theirs", KeyType: pkitest.RSA3072, DNSNames: []string{"theirs.example.org"},
				Subject: pkix.Name{Country: []string{"CH"}, Organization: []string{"Example"}, OrganizationalUnit: []string{"VPN"}, CommonName: "theirs.example.org"}})
		},
		charonExtra: "  rsa_pss = yes",
		ourLog:      "(RSA-3072 key, digital signature rsa-pss-sha256",
		theirLog:    "authentication of 'rsa.example.org' with RSA_EMSA_PSS_SHA2_256",
	},
	{
		// strongSwan's default for RSA: PKCS#1 v1.5 in method 14; we
		// still send RSASSA-PSS.
		name: "rsa-pkcs1",
		ours: func(p *pkitest.PKI) *pkitest.Cert { return p.RSA },
		theirs: func(p *pkitest.PKI) *pkitest.Cert {
			return mustIssue(p, pkitest.Template{Name: "theirs", KeyType: pkitest.RSA2048, DNSNames: []string{"theirs.example.org"},
				Subject: pkix.Name{Country: []string{"CH"}, Organization: []string{"Example"}, OrganizationalUnit: []string{"VPN"}, CommonName: "theirs.example.org"}})
		},
		ourLog:   "(RSA-2048 key, digital signature rsa-pkcs1-sha256",
		theirLog: "authentication of 'rsa.example.org' with RSA_EMSA_PSS_SHA2_256",
	},
	{
		name: "ecdsa",
		ours: func(p *pkitest.PKI) *pkitest.Cert { return p.P256 },
		theirs: func(p *pkitest.PKI) *pkitest.Cert {
			return mustIssue(p, pkitest.Template{Name: "theirs", KeyType: pkitest.ECDSAP384, DNSNames: []string{"theirs.example.org"},
				Subject: pkix.Name{Country: []string{"CH"}, Organization: []string{"Example"}, OrganizationalUnit: []string{"VPN"}, CommonName: "theirs.example.org"}})
		},
		ourLog:   "(ECDSA P-384 key, digital signature ecdsa-sha384",
		theirLog: "authentication of 'p256.example.org' with ECDSA_WITH_SHA256_DER successful",
	},
}

func mustIssue(p *pkitest.PKI, t pkitest.Template) *pkitest.Cert {
	c, err := p.Intermediate.Issue(t)
	if err != nil {
		panic(err)
	}
	return c
}

// TestStrongSwanCertificates authenticates both ends with certificates
// of one PKI (root, intermediate, end entities), with RSA-PSS and with
// ECDSA, we initiating and we responding. Each side sends its
// intermediate in a CERT payload and checks the other's chain to the
// root it trusts.
func TestStrongSwanCertificates(t *testing.T) {
	peers.RequireCharon(t)
	p, err := pkitest.New(pkitest.Options{Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	for _, cc := range certCases {
		ours, theirs := cc.ours(p), cc.theirs(p)
		for _, weInitiate := range []bool{true, false} {
			role := "we-respond"
			if weInitiate {
				role = "we-initiate"
			}
			t.Run(cc.name+"/"+role, func(t *testing.T) {
				pl, ch := setupCerts(t, p, cc, ours, theirs)
				if weInitiate {
					if err := pl.Up("interop"); err != nil {
						t.Fatalf("up: %v", err)
					}
				} else if err := ch.Initiate("interop"); err != nil {
					t.Fatalf("strongSwan initiate: %v", err)
				}
				checkEstablished(t, pl, ch, proposalCase{}, weInitiate)
				if err := pl.WaitLog("peer authenticated with certificate C=CH, O=Example, OU=VPN, CN=theirs.example.org "+cc.ourLog, 5*time.Second); err != nil {
					t.Errorf("our log: %v", err)
				}
				if !strings.Contains(ch.Log(), cc.theirLog) {
					t.Errorf("charon's log has no %q:\n%s", cc.theirLog, testnet.Tail(ch.Log(), 40))
				}
			})
		}
	}
}

// TestStrongSwanCertificateRevoked: strongSwan presents a certificate
// our store's CRL revokes; we refuse it and say why.
func TestStrongSwanCertificateRevoked(t *testing.T) {
	peers.RequireCharon(t)
	p, err := pkitest.New(pkitest.Options{Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	cc := certCases[2]
	pl, ch := setupCerts(t, p, cc, p.P256, p.Revoked)
	if err := ch.InitiateAsync("interop"); err != nil {
		t.Fatal(err)
	}
	if err := pl.WaitLog("was revoked at", 10*time.Second); err != nil {
		t.Errorf("our log: %v", err)
	}
	if err := pl.WaitLog("answering AUTHENTICATION_FAILED", 5*time.Second); err != nil {
		t.Errorf("our log: %v", err)
	}
}

// setupCerts starts our pluto (trust store in --nssdir) and charon
// (swanctl folders) in two namespaces.
func setupCerts(t *testing.T, p *pkitest.PKI, cc certCase, ours, theirs *pkitest.Cert) (*peers.Pluto, *peers.Charon) {
	t.Helper()
	ap := plan4
	ns1, ns2, _ := testnet.Pair(t, "ours", "theirs")
	ns1.AddLoopbackAddr(t, netip.MustParseAddr(ap.ourLo))
	ns2.AddLoopbackAddr(t, netip.MustParseAddr(ap.theirLo))

	nss := t.TempDir()
	if err := p.WriteStore(nss, ours); err != nil {
		t.Fatal(err)
	}
	theirName := theirs.Cert.Subject.CommonName
	ourName := ours.Cert.Subject.CommonName
	theirDN := "C=CH, O=Example, OU=VPN, CN=" + theirName
	conf := "conn interop\n\tleft=" + ap.our + "\n\tleftcert=" + ours.Name + "\n\tleftid=@" + ourName + "\n\tleftsubnet=" + ap.ourSubnet + "\n" +
		"\tright=" + ap.their + "\n\trightid=\"" + theirDN + "\"\n\trightsubnet=" + ap.theirSubnet + "\n" +
		"\tencapsulation=yes\n\tauto=add\n\tretransmit-timeout=10s\n"
	pl := peers.StartPluto(t, ns1, peers.PlutoConfig{
		BinDir: binDir, Conf: conf,
		Args: []string{"--use-netstack", "--listen", ap.our, "--nssdir", nss}, Env: memoryKernel,
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("our pluto's log:\n%s", testnet.Tail(pl.Log(), 80))
		}
	})

	ch := peers.StartCharon(t, ns2, peers.CharonConfig{Extra: cc.charonExtra})
	sw := filepath.Join(ch.Dir, "swanctl")
	if err := p.WriteSwanctl(sw, theirs); err != nil {
		t.Fatal(err)
	}
	swconf := fmt.Sprintf(`connections {
  interop {
    version = 2
    local_addrs = %s
    remote_addrs = %s
    encap = yes
    send_certreq = yes
    local {
      auth = pubkey
      certs = %s.pem
      id = "%s"
    }
    remote {
      auth = pubkey
      id = %s
    }
    children {
      interop {
        local_ts = %s
        remote_ts = %s
      }
    }
  }
}
`, ap.their, ap.our, theirs.Name, theirDN, ourName, ap.theirSubnet, ap.ourSubnet)
	path := filepath.Join(sw, "swanctl.conf")
	if err := os.WriteFile(path, []byte(swconf), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := ch.Swanctl("--load-all", "--file", path); err != nil {
		t.Fatalf("loading %s: %v\n%s", path, err, out)
	}
	return pl, ch
}
