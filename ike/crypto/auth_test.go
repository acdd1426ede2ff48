package crypto

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"net/netip"
	"testing"

	"goswan/proposal"
)

// refAuth is RFC 7296 §2.15 written out with crypto/hmac.
func refAuth(id proposal.PRFID, secret []byte, in AuthInput) []byte {
	prf := func(k []byte, d ...[]byte) []byte {
		m := hmac.New(stdHash(id), k)
		for _, x := range d {
			m.Write(x)
		}
		return m.Sum(nil)
	}
	signed := append(append(bytes.Clone(in.Message), in.PeerNonce...), prf(in.SKp, in.IDBody)...)
	return prf(prf(secret, []byte("Key Pad for IKEv2")), signed)
}

func TestAuth(t *testing.T) {
	in := AuthInput{
		Message:   bytes.Repeat([]byte{0x21}, 400),
		PeerNonce: bytes.Repeat([]byte{0x4e}, 32),
		IDBody:    append([]byte{2, 0, 0, 0}, "vpn.example.org"...), // ID_FQDN
		SKp:       bytes.Repeat([]byte{0x5a}, 32),
	}
	for _, id := range []proposal.PRFID{proposal.PRFHMACSHA1, proposal.PRFHMACSHA2256, proposal.PRFHMACSHA2512} {
		p := mustPRF(t, id)
		secret := []byte("a shared secret that is long enough to be a key, longer than one hash block of 64 or 128 octets, really much longer")
		auth := SharedKeyAuth(p, nil, secret, in)
		if want := refAuth(id, secret, in); !bytes.Equal(auth, want) {
			t.Errorf("%v: PSK AUTH %x, want %x", id, auth, want)
		}
		if !VerifySharedKeyAuth(p, secret, in, auth) {
			t.Errorf("%v: own AUTH rejected", id)
		}
		bad := bytes.Clone(auth)
		bad[0] ^= 1
		if VerifySharedKeyAuth(p, secret, in, bad) || VerifySharedKeyAuth(p, secret, in, auth[:len(auth)-1]) {
			t.Errorf("%v: wrong AUTH accepted", id)
		}
		if VerifySharedKeyAuth(p, []byte("other"), in, auth) {
			t.Errorf("%v: wrong secret accepted", id)
		}
		// RFC 7619 §3: NULL auth is the shared key method keyed by SK_p.
		null := NullAuth(p, nil, in)
		if want := refAuth(id, in.SKp, in); !bytes.Equal(null, want) {
			t.Errorf("%v: NULL AUTH %x, want %x", id, null, want)
		}
		if !VerifyNullAuth(p, in, null) || VerifyNullAuth(p, in, auth) {
			t.Errorf("%v: NULL AUTH verification", id)
		}
		so := SignedOctets(p, nil, in)
		if len(so) != len(in.Message)+len(in.PeerNonce)+p.Size() || !bytes.Equal(so[:400], in.Message) {
			t.Errorf("%v: SignedOctets layout", id)
		}
	}
}

func TestAuthNoAllocs(t *testing.T) {
	p := mustPRF(t, proposal.PRFHMACSHA2256)
	in := AuthInput{Message: make([]byte, 300), PeerNonce: make([]byte, 32), IDBody: make([]byte, 20), SKp: make([]byte, 32)}
	auth := SharedKeyAuth(p, nil, []byte("secret"), in)
	if n := testing.AllocsPerRun(100, func() { VerifySharedKeyAuth(p, []byte("secret"), in, auth) }); n != 0 {
		t.Errorf("VerifySharedKeyAuth allocates %v times", n)
	}
}

func TestNATDetection(t *testing.T) {
	spii := [8]byte{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}
	spir := [8]byte{}
	for _, c := range []struct {
		ip   string
		wire []byte
	}{
		{"192.0.2.1", []byte{192, 0, 2, 1}},
		{"::ffff:192.0.2.1", []byte{192, 0, 2, 1}},
		{"2001:db8::1", netip.MustParseAddr("2001:db8::1").AsSlice()},
	} {
		got := NATDetectionHash(spii, spir, netip.MustParseAddr(c.ip), 500)
		buf := append(append(append(spii[:0:0], spii[:]...), spir[:]...), c.wire...)
		want := sha1.Sum(append(buf, 0x01, 0xf4))
		if got != want {
			t.Errorf("%s: %x, want %x", c.ip, got, want)
		}
	}
	a := NATDetectionHash(spii, spir, netip.MustParseAddr("192.0.2.1"), 500)
	if a == NATDetectionHash(spii, spir, netip.MustParseAddr("192.0.2.1"), 4500) {
		t.Error("port not hashed")
	}
}

func TestCookieJar(t *testing.T) {
	j, err := NewCookieJar(nil)
	if err != nil {
		t.Fatal(err)
	}
	ni := bytes.Repeat([]byte{1}, 32)
	ip := netip.MustParseAddr("198.51.100.7")
	spi := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	c := j.Make(nil, ni, ip, spi)
	if len(c) != CookieSize || !j.Verify(c, ni, ip, spi) {
		t.Fatal("fresh cookie rejected")
	}
	for name, ok := range map[string]bool{
		"other nonce": j.Verify(c, ni[1:], ip, spi),
		"other ip":    j.Verify(c, ni, netip.MustParseAddr("198.51.100.8"), spi),
		"other spi":   j.Verify(c, ni, ip, [8]byte{}),
		"truncated":   j.Verify(c[:len(c)-1], ni, ip, spi),
		"empty":       j.Verify(nil, ni, ip, spi),
	} {
		if ok {
			t.Errorf("%s accepted", name)
		}
	}
	j.Rotate()
	if !j.Verify(c, ni, ip, spi) {
		t.Error("cookie of the previous secret rejected")
	}
	if c2 := j.Make(nil, ni, ip, spi); bytes.Equal(c, c2) || !j.Verify(c2, ni, ip, spi) {
		t.Error("new secret's cookie")
	}
	j.Rotate()
	if j.Verify(c, ni, ip, spi) {
		t.Error("cookie two secrets old accepted")
	}
}
