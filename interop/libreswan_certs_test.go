package interop

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"goswan/internal/peers"
	"goswan/internal/testnet"
	"goswan/pki/pkitest"
)

// TestLibreswanECDSACertificate: we (ECDSA P-256 certificate) initiate to
// Libreswan (ECDSA P-384 certificate); Libreswan's NSS database gets the
// root as a trusted CA and its own certificate and key from a PKCS#12
// file (certutil, pk12util). As elsewhere with Libreswan on this kernel,
// only the IKE SA can come up: its ESP SA cannot be installed.
//
// The conn needs authby=ecdsa (LibreswanConn.AuthBy): with the harness's
// default authby=secret, pluto 4.10 refuses it ("failed to add
// connection: leftauth=ecdsa expects authby=ECDSA") in its log only,
// while addconn still exits 0 without a word.
func TestLibreswanECDSACertificate(t *testing.T) {
	peers.RequireLibreswan(t)
	testnet.Require(t, "pk12util")
	testnet.Require(t, "openssl")
	p, err := pkitest.New(pkitest.Options{Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := p.P256, p.P384
	ns1, ns2, _ := testnet.Pair(t, "ours", "lsw")
	ns1.AddLoopbackAddr(t, netip.MustParseAddr("10.0.1.1"))
	ns2.AddLoopbackAddr(t, netip.MustParseAddr("10.0.2.1"))
	nss := t.TempDir()
	if err := p.WriteStore(nss, ours); err != nil {
		t.Fatal(err)
	}
	theirDN := "C=CH, O=Example, OU=VPN, CN=p384.example.org"
	conf := "conn interop\n\tleft=192.0.2.1\n\tleftcert=p256\n\tleftid=@p256.example.org\n\tleftsubnet=10.0.1.0/24\n" +
		"\tright=192.0.2.2\n\trightid=\"" + theirDN + "\"\n\trightsubnet=10.0.2.0/24\n" +
		"\tencapsulation=yes\n\tauto=add\n\tretransmit-timeout=5s\n\tleftsendcert=always\n"
	pl := peers.StartPluto(t, ns1, peers.PlutoConfig{BinDir: binDir, Conf: conf,
		Args: []string{"--use-netstack", "--listen", "192.0.2.1", "--nssdir", nss}, Env: memoryKernel})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("our pluto's log:\n%s", testnet.Tail(pl.Log(), 40))
		}
	})
	ls := peers.StartLibreswan(t, ns2, peers.LibreswanConn{
		Name: "interop", Left: "192.0.2.2", Right: "192.0.2.1", LeftID: "%fromcert", RightID: "@p256.example.org",
		LeftSubnet: "10.0.2.0/24", RightSubnet: "10.0.1.0/24", Encapsulation: "yes", Auto: "ignore", AuthBy: "ecdsa",
		Extra: map[string]string{"keyingtries": "1", "leftcert": "theirs", "leftauth": "ecdsa", "rightauth": "ecdsa", "leftsendcert": "always"},
	})
	// Fill Libreswan's NSS database, then add the conn.
	db := "sql:" + filepath.Join(ls.Dir, "nss")
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	run := func(name string, args ...string) {
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	root := write("root.pem", p.Root.CertPEM())
	inter := write("inter.pem", p.Intermediate.CertPEM())
	cert := write("theirs.pem", theirs.CertPEM())
	key := write("theirs.key", theirs.KeyPEM())
	p12 := filepath.Join(dir, "theirs.p12")
	run("openssl", "pkcs12", "-export", "-in", cert, "-inkey", key, "-name", "theirs", "-out", p12, "-passout", "pass:")
	run("certutil", "-A", "-d", db, "-n", "root", "-t", "CT,,", "-a", "-i", root)
	run("certutil", "-A", "-d", db, "-n", "intermediate", "-t", ",,", "-a", "-i", inter)
	run("pk12util", "-i", p12, "-d", db, "-W", "")
	if out, err := ls.Whack("--rereadall"); err != nil {
		t.Logf("whack --rereadall: %v\n%s", err, out)
	}
	// The harness left the conn out (auto=ignore) because the database
	// was still empty: now add it.
	b, err := os.ReadFile(ls.ConfPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ls.ConfPath, []byte(strings.Replace(string(b), "auto=ignore", "auto=add", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	// addconn may say why it did not add a conn on its output, with exit
	// 0; pluto may say it only in its log (see above).
	add := exec.Command(filepath.Join(ls.Root, "usr/libexec/ipsec/addconn"), "--verbose", "--config", ls.ConfPath, "--ctlsocket", ls.CtlSocket, "interop")
	add.Env = append(os.Environ(), "IPSEC_EXECDIR="+filepath.Join(ls.Root, "usr/libexec/ipsec"), "IPSEC_CONF="+ls.ConfPath)
	if out, err := add.CombinedOutput(); err != nil || strings.Contains(string(out), "failed") {
		t.Fatalf("Libreswan addconn: %v\n%s", err, out)
	}
	if err := ls.Debug("base"); err != nil {
		t.Fatal(err)
	}
	if out, err := ls.Whack("--status"); err != nil || !strings.Contains(out, `"interop":`) {
		var why []string
		for _, line := range strings.Split(ls.Log(), "\n") {
			if strings.Contains(line, "failed to add connection") {
				why = append(why, line)
			}
		}
		t.Fatalf("Libreswan did not load the conn: %v\n%s\npluto: %s\nLibreswan's log:\n%s", err, out, strings.Join(why, "\n"), testnet.Tail(ls.Log(), 30))
	}

	err = pl.Up("interop")
	if err == nil || !strings.Contains(err.Error(), "IKE SA established but the Child SA failed") {
		t.Fatalf("up: %v\nwant the IKE SA established (Libreswan cannot add its Child SA here)\nLibreswan:\n%s", err, testnet.Tail(ls.Log(), 40))
	}
	ev, err := ls.WaitIKEAuth("interop", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Role != "responder" || !strings.Contains(ev.Line, "'@p256.example.org'") {
		t.Errorf("Libreswan's IKE_AUTH: %s", ev.Line)
	}
	if err := pl.WaitLog("peer authenticated with certificate "+theirDN+" (ECDSA P-384 key", 2*time.Second); err != nil {
		t.Error(err)
	}
	t.Logf("Libreswan: %s", ev.Line)
	ls.Terminate("interop")
}
