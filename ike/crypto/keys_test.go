package crypto

import (
	"bytes"
	"crypto/hmac"
	"testing"

	"goswan/proposal"
)

// kdfVector is one IKEv2 KDF known answer in the layout of NIST's CAVS
// SP 800-135 "IKEv2" test files: SKEYSEED, DKM = prf+(SKEYSEED, Ni | Nr |
// SPIi | SPIr), DKM(Child SA) = prf+(SK_d, Ni | Nr), DKM(Child SA D-H) =
// prf+(SK_d, g^ir (new) | Ni | Nr) and SKEYSEED(Rekey) = prf(SK_d,
// g^ir (new) | Ni | Nr), SK_d being the first PRF-size bytes of DKM.
type kdfVector struct {
	name                                string
	prf                                 proposal.PRFID
	ni, nr, gir, girNew, spii, spir     string
	skeyseed, dkm, dkmChild, dkmChildDH string
	skeyseedRekey                       string
}

var kdfVectors = []kdfVector{
	{
		// NIST CAVS IKEv2 sample (SHA-256), as carried in NSS's
		// gtests/common/testvectors/ike-sha256-vectors.h (cases 6, 7, 8).
		name: "NIST SHA-256", prf: proposal.PRFHMACSHA2256,
		ni: "3f302be1abcb28e1", nr: "8c332ee006064c9b",
		gir:    "0f4d257d7a58fc4545c7d7a88119eee5d5c9690c5b4c989171d3abbfd99d1d29",
		girNew: "25f3b12d6f282739256e39bf54eda53b60ffcf379bb7bcc90c27b4c4c578616c",
		spii:   "40dac39e1e1a8640", spir: "8619a1cf9a6e4c07",
		skeyseed: "5f00d1bd2c58ec224b1e6b71fa0f19a1faa7a193952c444411b47c1a9d8ba6fe",
		dkm: "0b137d669b0947d7d026d593f0305ad401ff0c471357d695778a9c7f4b4869ece98aca531" +
			"188d16041b3bb936d2dbb3b4993a6e768a809160de45d0283f273a6cdf6854379e31be72b" +
			"8d3d1fa990cf9c5b015ca9f918a7df6253c958114a09d4e1c19bdcd4db14b29d98db1a74a" +
			"d405c588662c14a04d0d36aa4ab55e90f8986d12d4aad",
		skeyseedRekey: "2d63f6debc92048b4fef3889c4c99ca67d6496e0fac14a2bca9a2d6566ff2398",
	},
	{
		// NIST CAVS IKEv2 (SHA-1) case run through Libreswan's KDF CAVS
		// driver, programs/pluto/cavp_ikev2.c (libreswan-ikev2-cavs example).
		name: "CAVS SHA-1", prf: proposal.PRFHMACSHA1,
		ni: "32b50d5f4a3763f3", nr: "9206a04b26564cb1",
		gir:    "4b2c1f971981a8ad8d0abeafabf38cf75fc8349c148142465ed9c8b516b8be52",
		girNew: "863f3c9d06efd39d2b907b97f8699e5dd5251ef64a2a176f36ee40c87d4f9330",
		spii:   "34c9e7c188868785", spir: "3ff77d760d2b2199",
		skeyseed:      "a9a7b222b59f8f48645f28a1db5b5f5d7479cba7",
		dkm:           "a14293677cc80ff8f9cc0eee30d895da9d8f405666e30ef0dfcb63c634a46002a2a63080e514a062768b76606f9fa5e992204fc5a670bde3f10d6b027113936a5c55b648a194ae587b0088d52204b702c979fa280870d2ed41efa9c549fd11198af1670b143d384bd275c5f594cf266b05ebadca855e4249520a441a81157435a7a56cc4",
		dkmChild:      "8059e3ee8810e6c3a91bc8bcd2a7a41151b8d0e6ae239c7b38093ad85ef4c5811a8e7b5d1cdabd9560b2d5e092d1f24e2d4b85eccdf0ad0dc9abd94b51ee71814ca6dbc8bb51b6309f5b9545c7eb35cf5580b1e521a8fe20754a2d883ba0c2cf285f524aea6545b33106bc03e614296d319d41d4b50b3f510b1c0a22f3e664994d234cb4",
		dkmChildDH:    "bb43244c1860ad65ee1e211ffe8bb3661750c8f89cb9f547df7f4fa61d37301628190e38c66232eab4b3ab14c400a5197dd3730ed4820a8a10394d51e1c0400052f63ebd36b0e7ef53aaed31eba4a5080d7d4b5666023a8bbb5ffb7857240f9a05884d1b7d2f933708450b7b3288f1fc863ab49fa901227cffc06e27899c7054d56fd74c",
		skeyseedRekey: "63e81194946ebd05df7df5ebf5d8750056bf1f1d",
	},
}

func TestKDFVectors(t *testing.T) {
	for _, v := range kdfVectors {
		t.Run(v.name, func(t *testing.T) {
			p := mustPRF(t, v.prf)
			ni, nr, gir, girNew := unhex(t, v.ni), unhex(t, v.nr), unhex(t, v.gir), unhex(t, v.girNew)
			seed := SKEYSEED(p, nil, ni, nr, gir)
			if want := unhex(t, v.skeyseed); !bytes.Equal(seed, want) {
				t.Fatalf("SKEYSEED %x, want %x", seed, want)
			}
			want := unhex(t, v.dkm)
			dkm, err := p.Plus(nil, len(want), seed, ni, nr, unhex(t, v.spii), unhex(t, v.spir))
			if err != nil || !bytes.Equal(dkm, want) {
				t.Fatalf("DKM %x (%v), want %x", dkm, err, want)
			}
			skd := dkm[:p.Size()]
			if v.dkmChild != "" {
				want := unhex(t, v.dkmChild)
				got, _ := p.Plus(nil, len(want), skd, ni, nr)
				if !bytes.Equal(got, want) {
					t.Errorf("DKM(Child SA) %x, want %x", got, want)
				}
				want = unhex(t, v.dkmChildDH)
				got, _ = p.Plus(nil, len(want), skd, girNew, ni, nr)
				if !bytes.Equal(got, want) {
					t.Errorf("DKM(Child SA D-H) %x, want %x", got, want)
				}
			}
			if got, want := RekeySKEYSEED(p, nil, skd, girNew, ni, nr), unhex(t, v.skeyseedRekey); !bytes.Equal(got, want) {
				t.Errorf("SKEYSEED(Rekey) %x, want %x", got, want)
			}
		})
	}
}

// TestDeriveIKEKeysSplit checks the seven keys against prf+ written out
// from the RFC with crypto/hmac, for AEAD and non-AEAD suites.
func TestDeriveIKEKeysSplit(t *testing.T) {
	ni, nr := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	gir := bytes.Repeat([]byte{3}, 32)
	spii, spir := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, [8]byte{9, 10, 11, 12, 13, 14, 15, 16}
	suites := []struct {
		s             Suite
		encrLen, aLen int
	}{
		{Suite{proposal.EncrAESGCM16, 256, proposal.PRFHMACSHA2512, proposal.IntegNone}, 36, 0},
		{Suite{proposal.EncrAESGCM16, 128, proposal.PRFHMACSHA2256, proposal.IntegNone}, 20, 0},
		{Suite{proposal.EncrChaCha20Poly1305, 0, proposal.PRFHMACSHA2256, proposal.IntegNone}, 36, 0},
		{Suite{proposal.EncrAESCBC, 256, proposal.PRFHMACSHA2384, proposal.IntegHMACSHA2384192}, 32, 48},
		{Suite{proposal.EncrAESCBC, 128, proposal.PRFHMACSHA2256, proposal.IntegHMACSHA2256128}, 16, 32},
	}
	for _, tc := range suites {
		p := mustPRF(t, tc.s.PRF)
		k, err := DeriveIKEKeys(p, tc.s, gir, ni, nr, spii, spir)
		if err != nil {
			t.Fatalf("%+v: %v", tc.s, err)
		}
		m := hmac.New(stdHash(tc.s.PRF), append(append([]byte{}, ni...), nr...))
		m.Write(gir)
		seed := m.Sum(nil)
		ps := p.Size()
		total := 3*ps + 2*tc.aLen + 2*tc.encrLen
		s := append(append(append(append([]byte{}, ni...), nr...), spii[:]...), spir[:]...)
		ref := refPRFPlus(tc.s.PRF, seed, s, total)
		var got []byte
		for _, part := range [][]byte{k.SKd, k.SKai, k.SKar, k.SKei, k.SKer, k.SKpi, k.SKpr} {
			got = append(got, part...)
		}
		if !bytes.Equal(got, ref) || len(k.SKei) != tc.encrLen || len(k.SKai) != tc.aLen || len(k.SKpi) != ps {
			t.Errorf("%+v: keys do not match the reference split", tc.s)
		}

		// Child SA with and without PFS.
		for _, g := range [][]byte{nil, bytes.Repeat([]byte{7}, 64)} {
			ck, err := DeriveChildKeys(p, k.SKd, tc.s, g, ni, nr)
			if err != nil {
				t.Fatal(err)
			}
			want := refPRFPlus(tc.s.PRF, k.SKd, append(append(append([]byte{}, g...), ni...), nr...), 2*(tc.encrLen+tc.aLen))
			got := append(append(append(append([]byte{}, ck.EncrI...), ck.IntegI...), ck.EncrR...), ck.IntegR...)
			if !bytes.Equal(got, want) || len(ck.EncrI) != tc.encrLen || len(ck.IntegR) != tc.aLen {
				t.Errorf("%+v: child keys do not match", tc.s)
			}
			ck.Wipe()
			if ck.EncrI != nil {
				t.Error("ChildKeys.Wipe left keys")
			}
		}

		// Rekey: SKEYSEED with the old PRF (SHA-1 here), the rest with p.
		old := mustPRF(t, proposal.PRFHMACSHA1)
		oldSKd := bytes.Repeat([]byte{9}, 20)
		rk, err := DeriveRekeyedIKEKeys(old, oldSKd, p, tc.s, gir, ni, nr, spii, spir)
		if err != nil {
			t.Fatal(err)
		}
		m = hmac.New(stdHash(proposal.PRFHMACSHA1), oldSKd)
		m.Write(gir)
		m.Write(ni)
		m.Write(nr)
		ref = refPRFPlus(tc.s.PRF, m.Sum(nil), s, total)
		if !bytes.Equal(rk.SKd, ref[:ps]) || !bytes.Equal(rk.SKpr, ref[total-ps:]) {
			t.Errorf("%+v: rekeyed keys do not match", tc.s)
		}

		buf := k.buf
		k.Wipe()
		if k.SKd != nil || !bytes.Equal(buf, make([]byte, len(buf))) {
			t.Error("Keys.Wipe left key material")
		}
	}
}

func TestDeriveErrors(t *testing.T) {
	p := mustPRF(t, proposal.PRFHMACSHA2256)
	bad := []Suite{
		{proposal.EncrAESCBC, 100, proposal.PRFHMACSHA2256, proposal.IntegHMACSHA2256128},
		{proposal.EncrAESCBC, 128, proposal.PRFHMACSHA2256, proposal.IntegNone},
		{proposal.EncrAESGCM16, 128, proposal.PRFHMACSHA2256, proposal.IntegHMACSHA2256128},
		{proposal.EncrID(99), 128, proposal.PRFHMACSHA2256, proposal.IntegNone},
		{proposal.EncrAESGCM16, 128, proposal.PRFHMACSHA2512, proposal.IntegNone}, // PRF mismatch
	}
	for _, s := range bad {
		if _, err := DeriveIKEKeys(p, s, nil, nil, nil, [8]byte{}, [8]byte{}); err == nil {
			t.Errorf("%+v accepted", s)
		}
	}
}
