package proposal

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseIKEGood(t *testing.T) {
	dflt := defaultGroups()
	prfs := []PRFID{PRFHMACSHA2512, PRFHMACSHA2256}
	tests := []struct {
		in   string
		want []IKEProposal
	}{
		{"aes_gcm256-sha2_512;dh19", []IKEProposal{{
			Encr: []Encr{{EncrAESGCM16, 256}}, PRF: []PRFID{PRFHMACSHA2512},
			Integ: []IntegID{IntegNone}, DH: []DHGroup{DHECP256}}}},
		{"aes128-sha2_256-modp2048", []IKEProposal{{
			Encr: []Encr{{EncrAESCBC, 128}}, PRF: []PRFID{PRFHMACSHA2256},
			Integ: []IntegID{IntegHMACSHA2256128}, DH: []DHGroup{DHMODP2048}}}},
		{"chacha20_poly1305", []IKEProposal{{
			Encr: []Encr{{EncrChaCha20Poly1305, 0}}, PRF: prfs,
			Integ: []IntegID{IntegNone}, DH: dflt}}},
		{"aes_gcm256", []IKEProposal{{
			Encr: []Encr{{EncrAESGCM16, 256}}, PRF: prfs,
			Integ: []IntegID{IntegNone}, DH: dflt}}},
		{"aes256-sha2", []IKEProposal{{
			Encr: []Encr{{EncrAESCBC, 256}}, PRF: []PRFID{PRFHMACSHA2256},
			Integ: []IntegID{IntegHMACSHA2256128}, DH: dflt}}},
		{"aes-sha1", []IKEProposal{{
			Encr: []Encr{{EncrAESCBC, 0}}, PRF: []PRFID{PRFHMACSHA1},
			Integ: []IntegID{IntegHMACSHA196}, DH: dflt}}},
		{"aes_gcm-null", []IKEProposal{{
			Encr: []Encr{{EncrAESGCM16, 0}}, PRF: prfs,
			Integ: []IntegID{IntegNone}, DH: dflt}}},
		{"aes_gcm-none-sha1-dh21", []IKEProposal{{
			Encr: []Encr{{EncrAESGCM16, 0}}, PRF: []PRFID{PRFHMACSHA1},
			Integ: []IntegID{IntegNone}, DH: []DHGroup{DHECP521}}}},
		{"aes128+aes256-sha2_256+sha2_512-dh19+dh20", []IKEProposal{{
			Encr: []Encr{{EncrAESCBC, 128}, {EncrAESCBC, 256}}, PRF: []PRFID{PRFHMACSHA2256, PRFHMACSHA2512},
			Integ: []IntegID{IntegHMACSHA2256128, IntegHMACSHA2512256}, DH: []DHGroup{DHECP256, DHECP384}}}},
		{"aes-256-sha384-ecp384", []IKEProposal{{
			Encr: []Encr{{EncrAESCBC, 256}}, PRF: []PRFID{PRFHMACSHA2384},
			Integ: []IntegID{IntegHMACSHA2384192}, DH: []DHGroup{DHECP384}}}},
		{"AES_GCM_16_128-HMAC_SHA2_256-DH31", []IKEProposal{{
			Encr: []Encr{{EncrAESGCM16, 128}}, PRF: []PRFID{PRFHMACSHA2256},
			Integ: []IntegID{IntegNone}, DH: []DHGroup{DHCurve25519}}}},
		{"aes_cbc-sha2_256_128-sha2_512-x25519", []IKEProposal{{
			Encr: []Encr{{EncrAESCBC, 0}}, PRF: []PRFID{PRFHMACSHA2512},
			Integ: []IntegID{IntegHMACSHA2256128}, DH: []DHGroup{DHCurve25519}}}},
		{"aesgcm_128;curve25519, chacha20poly1305-sha512", []IKEProposal{
			{Encr: []Encr{{EncrAESGCM16, 128}}, PRF: prfs, Integ: []IntegID{IntegNone}, DH: []DHGroup{DHCurve25519}},
			{Encr: []Encr{{EncrChaCha20Poly1305, 0}}, PRF: []PRFID{PRFHMACSHA2512}, Integ: []IntegID{IntegNone}, DH: dflt},
		}},
		{"3des-sha1-modp2048", []IKEProposal{{
			Encr: []Encr{{Encr3DES, 0}}, PRF: []PRFID{PRFHMACSHA1},
			Integ: []IntegID{IntegHMACSHA196}, DH: []DHGroup{DHMODP2048}}}},
	}
	for _, tt := range tests {
		got, err := ParseIKE(tt.in)
		if err != nil {
			t.Errorf("ParseIKE(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseIKE(%q)\n got %+v\nwant %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseESPGood(t *testing.T) {
	tests := []struct {
		in   string
		want []ESPProposal
	}{
		{"aes_gcm256", []ESPProposal{{Encr: []Encr{{EncrAESGCM16, 256}}, Integ: []IntegID{IntegNone}}}},
		{"aes_gcm-null", []ESPProposal{{Encr: []Encr{{EncrAESGCM16, 0}}, Integ: []IntegID{IntegNone}}}},
		{"aes", []ESPProposal{{Encr: []Encr{{EncrAESCBC, 0}}, Integ: []IntegID{IntegHMACSHA2512256, IntegHMACSHA2256128}}}},
		{"aes128-sha1", []ESPProposal{{Encr: []Encr{{EncrAESCBC, 128}}, Integ: []IntegID{IntegHMACSHA196}}}},
		{"aes128-sha2_256-modp2048", []ESPProposal{{Encr: []Encr{{EncrAESCBC, 128}},
			Integ: []IntegID{IntegHMACSHA2256128}, DH: []DHGroup{DHMODP2048}}}},
		{"aes_gcm256;dh19+dh31", []ESPProposal{{Encr: []Encr{{EncrAESGCM16, 256}},
			Integ: []IntegID{IntegNone}, DH: []DHGroup{DHECP256, DHCurve25519}}}},
		{"null-sha2_512", []ESPProposal{{Encr: []Encr{{EncrNull, 0}}, Integ: []IntegID{IntegHMACSHA2512256}}}},
		{"chacha20_poly1305-none-none", []ESPProposal{{Encr: []Encr{{EncrChaCha20Poly1305, 0}},
			Integ: []IntegID{IntegNone}, DH: []DHGroup{DHNone}}}},
		{"aes_ctr256-sha384", []ESPProposal{{Encr: []Encr{{EncrAESCTR, 256}}, Integ: []IntegID{IntegHMACSHA2384192}}}},
	}
	for _, tt := range tests {
		got, err := ParseESP(tt.in)
		if err != nil {
			t.Errorf("ParseESP(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseESP(%q)\n got %+v\nwant %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseBad(t *testing.T) {
	tests := []struct {
		ike     bool
		in, err string
	}{
		{true, "aes_gcm256-sha3", `ike="aes_gcm256-sha3": unknown PRF algorithm "sha3"`},
		{true, "", `ike="": ike proposal is empty`},
		{true, "aes,", `ike="aes,": empty proposal`},
		{true, "foo", `ike="foo": unknown encryption algorithm "foo"`},
		{true, "aes512", `key length 512 is not valid for AES_CBC (valid: 256, 192, 128)`},
		{true, "aes-0", `key length is zero`},
		{true, "null-sha2", `encryption algorithm "null" is not valid for IKE`},
		{true, "aes-sha2-none", `IKE DH algorithm NONE not permitted`},
		{true, "aes-sha2-dh5", `DH algorithm "dh5" is not supported`},
		{true, "aes-sha2-dh99", `unknown DH algorithm "dh99"`},
		{true, "aes-md5", `PRF algorithm "md5" is not supported`},
		{true, "aes+aes_gcm-sha2_256", `AEAD and non-AEAD encryption algorithms cannot be combined`},
		{true, "aes-none", `non-AEAD encryption algorithm AES_CBC cannot have NONE`},
		{true, "aes-sha2-dh19-dh20", `unexpected "dh20"`},
		{true, "aes--sha2", `PRF algorithm is empty`},
		{true, "aes_gcm256,aes-sha3", `ike="aes_gcm256,aes-sha3": proposal "aes-sha3": unknown PRF algorithm "sha3"`},
		{false, "aes_gcm-sha1", `esp="aes_gcm-sha1": AEAD encryption algorithm AES_GCM_16 must have NONE as the integrity algorithm`},
		{false, "aes-sha3", `esp="aes-sha3": unknown integrity algorithm "sha3"`},
		{false, "aes-none", `cannot have NONE`},
		{false, "camellia", `encryption algorithm "camellia" is not supported`},
		{false, "aes+", `encryption algorithm is empty`},
		{false, "3des192-sha1;", `DH algorithm is empty`},
	}
	for _, tt := range tests {
		var err error
		if tt.ike {
			_, err = ParseIKE(tt.in)
		} else {
			_, err = ParseESP(tt.in)
		}
		if err == nil {
			t.Errorf("%q: no error, want %q", tt.in, tt.err)
			continue
		}
		if !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%q: error %q, want %q", tt.in, err, tt.err)
		}
	}
}

func TestString(t *testing.T) {
	ike, err := ParseIKE("aes_gcm256,aes_cbc-sha2_256_128-sha2_512-dh19")
	if err != nil {
		t.Fatal(err)
	}
	want := "AES_GCM_16_256-HMAC_SHA2_512+HMAC_SHA2_256-DH19+DH20+DH21+DH31+MODP4096+MODP3072+MODP2048+MODP8192," +
		"AES_CBC-HMAC_SHA2_256_128-HMAC_SHA2_512-DH19"
	if got := FormatIKE(ike); got != want {
		t.Errorf("FormatIKE = %q, want %q", got, want)
	}
	esp, err := ParseESP("aes_gcm128;dh20,aes256")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := FormatESP(esp), "AES_GCM_16_128-NONE-DH20,AES_CBC_256-HMAC_SHA2_512_256+HMAC_SHA2_256_128"; got != want {
		t.Errorf("FormatESP = %q, want %q", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	ikes := []string{"aes_gcm256-sha2_512;dh19", "aes128-sha2_256-modp2048", "chacha20_poly1305", "aes-sha1",
		"aes_gcm-none-sha1-dh21", "aes128+aes256-sha2_256+sha2_512-dh19+dh20", "aes_cbc-sha2_256_128-sha2_512-x25519",
		"3des", "aes_ctr-sha384", "aes_gcm_8+aes_gcm_12"}
	for _, s := range ikes {
		p, err := ParseIKE(s)
		if err != nil {
			t.Fatalf("ParseIKE(%q): %v", s, err)
		}
		q, err := ParseIKE(FormatIKE(p))
		if err != nil {
			t.Fatalf("ParseIKE(%q): %v", FormatIKE(p), err)
		}
		if !reflect.DeepEqual(p, q) {
			t.Errorf("round trip %q -> %q: %+v != %+v", s, FormatIKE(p), p, q)
		}
	}
	esps := []string{"aes_gcm256", "aes", "aes128-sha1-none", "null-sha2", "aes_gcm;dh19+modp8192", "chacha20_poly1305-none"}
	for _, s := range esps {
		p, err := ParseESP(s)
		if err != nil {
			t.Fatalf("ParseESP(%q): %v", s, err)
		}
		q, err := ParseESP(FormatESP(p))
		if err != nil {
			t.Fatalf("ParseESP(%q): %v", FormatESP(p), err)
		}
		if !reflect.DeepEqual(p, q) {
			t.Errorf("round trip %q -> %q: %+v != %+v", s, FormatESP(p), p, q)
		}
	}
	for _, p := range [][]IKEProposal{DefaultIKE()} {
		q, err := ParseIKE(FormatIKE(p))
		if err != nil || !reflect.DeepEqual(p, q) {
			t.Errorf("DefaultIKE round trip: %v %+v", err, q)
		}
	}
	q, err := ParseESP(FormatESP(DefaultESP()))
	if err != nil || !reflect.DeepEqual(DefaultESP(), q) {
		t.Errorf("DefaultESP round trip: %v %+v", err, q)
	}
}

func TestDefaults(t *testing.T) {
	ike := DefaultIKE()
	want := "AES_GCM_16_256-HMAC_SHA2_512+HMAC_SHA2_256-DH19+DH20+DH21+DH31+MODP4096+MODP3072+MODP2048+MODP8192," +
		"AES_GCM_16_128-HMAC_SHA2_512+HMAC_SHA2_256-DH19+DH20+DH21+DH31+MODP4096+MODP3072+MODP2048+MODP8192," +
		"CHACHA20_POLY1305-HMAC_SHA2_512+HMAC_SHA2_256-DH19+DH20+DH21+DH31+MODP4096+MODP3072+MODP2048+MODP8192," +
		"AES_CBC_256-HMAC_SHA2_512+HMAC_SHA2_256-DH19+DH20+DH21+DH31+MODP4096+MODP3072+MODP2048+MODP8192," +
		"AES_CBC_128-HMAC_SHA2_512+HMAC_SHA2_256-DH19+DH20+DH21+DH31+MODP4096+MODP3072+MODP2048+MODP8192"
	if got := FormatIKE(ike); got != want {
		t.Errorf("DefaultIKE = %q\nwant %q", got, want)
	}
	if got, want := FormatESP(DefaultESP()), "AES_GCM_16_256-NONE,AES_GCM_16_128-NONE,CHACHA20_POLY1305-NONE,"+
		"AES_CBC_256-HMAC_SHA2_512_256+HMAC_SHA2_256_128,AES_CBC_128-HMAC_SHA2_512_256+HMAC_SHA2_256_128"; got != want {
		t.Errorf("DefaultESP = %q\nwant %q", got, want)
	}
	// The defaults are the same as parsing Libreswan's default strings.
	p, err := ParseIKE("AES_GCM_16_256,AES_GCM_16_128,CHACHA20_POLY1305,AES_CBC_256,AES_CBC_128")
	if err != nil || !reflect.DeepEqual(p, ike) {
		t.Errorf("parsed defaults differ: %v\n%+v", err, p)
	}
	e, err := ParseESP("AES_GCM_16_256,AES_GCM_16_128,CHACHA20_POLY1305,AES_CBC_256,AES_CBC_128")
	if err != nil || !reflect.DeepEqual(e, DefaultESP()) {
		t.Errorf("parsed ESP defaults differ: %v\n%+v", err, e)
	}
}

func TestAlgorithmFacts(t *testing.T) {
	if got := (Encr{ID: EncrAESCBC}).KeyLengths(); !reflect.DeepEqual(got, []int{256, 128}) {
		t.Errorf("aes key lengths %v", got)
	}
	if got := (Encr{ID: EncrChaCha20Poly1305}).KeyLengths(); !reflect.DeepEqual(got, []int{256}) {
		t.Errorf("chacha key lengths %v", got)
	}
	if !EncrAESGCM16.AEAD() || EncrAESCBC.AEAD() || EncrAESGCM8.ICVSize() != 8 {
		t.Error("AEAD facts")
	}
	if IntegHMACSHA2512256.ICVSize() != 32 || PRFHMACSHA2384.Integ() != IntegHMACSHA2384192 {
		t.Error("integ facts")
	}
	if DHCurve25519.PublicKeySize() != 32 || DHECP521.PublicKeySize() != 132 || !DHMODP2048.MODP() {
		t.Error("DH facts")
	}
	p, _ := ParseIKE("3des-sha1")
	if got := p[0].Deprecated(); !reflect.DeepEqual(got, []string{"3DES_CBC", "HMAC_SHA1", "HMAC_SHA1_96"}) {
		t.Errorf("Deprecated = %v", got)
	}
}

func FuzzParseIKE(f *testing.F) {
	for _, s := range []string{"aes_gcm256-sha2_512;dh19", "aes128-sha2_256-modp2048", "chacha20_poly1305",
		"aes-128+aes_256-sha2+sha1-dh19+dh31", "aes_gcm-none-sha1-dh21", ",", "-;+", "aes-", "aes_gcm_16_256"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseIKE(s)
		if err != nil {
			return
		}
		q, err := ParseIKE(FormatIKE(p))
		if err != nil || !reflect.DeepEqual(p, q) {
			t.Fatalf("%q -> %q does not round trip: %v", s, FormatIKE(p), err)
		}
	})
}

func FuzzParseESP(f *testing.F) {
	for _, s := range []string{"aes_gcm256", "aes128-sha1-none", "null-sha2", "aes_gcm;dh19+modp8192", "3des-md5",
		"aes-256-sha2_512_256", ";;", "+"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseESP(s)
		if err != nil {
			return
		}
		q, err := ParseESP(FormatESP(p))
		if err != nil || !reflect.DeepEqual(p, q) {
			t.Fatalf("%q -> %q does not round trip: %v", s, FormatESP(p), err)
		}
	})
}
