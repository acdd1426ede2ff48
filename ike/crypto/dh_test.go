package crypto

import (
	"bytes"
	"errors"
	"math/big"
	"strings"
	"testing"

	"goswan/proposal"
)

// RFC 5903 §8.1, §8.2 and §8.3: i, g^i (X | Y), r, g^r, and g^ir whose x
// coordinate is the IKEv2 shared secret (RFC 5903 §7, §9). The values are
// the RFC's; they were found transcribed in public test code and are
// checked here against crypto/ecdh both ways.
var rfc5903 = []struct {
	id                             proposal.DHGroup
	i, gix, giy, r, grx, gry, girx string
}{
	{proposal.DHECP256,
		"c88f01f510d9ac3f70a292daa2316de544e9aab8afe84049c62a9c57862d1433",
		"dad0b65394221cf9b051e1feca5787d098dfe637fc90b9ef945d0c3772581180",
		"5271a0461cdb8252d61f1c456fa3e59ab1f45b33accf5f58389e0577b8990bb3",
		"c6ef9c5d78ae012a011164acb397ce2088685d8f06bf9be0b283ab46476bee53",
		"d12dfb5289c8d4f81208b70270398c342296970a0bccb74c736fc7554494bf63",
		"56fbf3ca366cc23e8157854c13c58d6aac23f046ada30f8353e74f33039872ab",
		"d6840f6b42f6edafd13116e0e12565202fef8e9ece7dce03812464d04b9442de"},
	{proposal.DHECP384,
		"099f3c7034d4a2c699884d73a375a67f7624ef7c6b3c0f160647b67414dce655e35b538041e649ee3faef896783ab194",
		"667842d7d180ac2cde6f74f37551f55755c7645c20ef73e31634fe72b4c55ee6de3ac808acb4bdb4c88732aee95f41aa",
		"9482ed1fc0eeb9cafc4984625ccfc23f65032149e0e144ada024181535a0f38eeb9fcff3c2c947dae69b4c634573a81c",
		"41cb0779b4bdb85d47846725fbec3c9430fab46cc8dc5060855cc9bda0aa2942e0308312916b8ed2960e4bd55a7448fc",
		"e558dbef53eecde3d3fccfc1aea08a89a987475d12fd950d83cfa41732bc509d0d1ac43a0336def96fda41d0774a3571",
		"dcfbec7aacf3196472169e838430367f66eebe3c6e70c416dd5f0c68759dd1fff83fa40142209dff5eaad96db9e6386c",
		"11187331c279962d93d604243fd592cb9d0a926f422e47187521287e7156c5c4d603135569b9e9d09cf5d4a270f59746"},
	{proposal.DHECP521,
		"0037ade9319a89f4dabdb3ef411aaccca5123c61acab57b5393dce47608172a095aa85a30fe1c2952c6771d937ba9777f5957b2639bab072462f68c27a57382d4a52",
		"0015417e84dbf28c0ad3c278713349dc7df153c897a1891bd98bab4357c9ecbee1e3bf42e00b8e380aeae57c2d107564941885942af5a7f4601723c4195d176ced3e",
		"017cae20b6641d2eeb695786d8c946146239d099e18e1d5a514c739d7cb4a10ad8a788015ac405d7799dc75e7b7d5b6cf2261a6a7f1507438bf01beb6ca3926f9582",
		"0145ba99a847af43793fdd0e872e7cdfa16be30fdc780f97bccc3f078380201e9c677d600b343757a3bdbf2a3163e4c2f869cca7458aa4a4effc311f5cb151685eb9",
		"00d0b3975ac4b799f5bea16d5e13e9af971d5e9b984c9f39728b5e5739735a219b97c356436adc6e95bb0352f6be64a6c2912d4ef2d0433ced2b6171640012d9460f",
		"015c68226383956e3bd066e797b623c27ce0eac2f551a10c2c724d9852077b87220b6536c5c408a1d2aebb8e86d678ae49cb57091f4732296579ab44fcd17f0fc56a",
		"01144c7d79ae6956bc8edb8e7c787c4521cb086fa64407f97894e5e6b2d79b04d1427e73ca4baa240a34786859810c06b3c715a3a8cc3151f2bee417996d19f3ddea"},
}

func mustGroup(t testing.TB, id proposal.DHGroup) Group {
	t.Helper()
	g, err := GroupFor(id)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestRFC5903(t *testing.T) {
	for _, v := range rfc5903 {
		g := mustGroup(t, v.id)
		i, err := g.NewPrivate(unhex(t, v.i))
		if err != nil {
			t.Fatal(err)
		}
		r, err := g.NewPrivate(unhex(t, v.r))
		if err != nil {
			t.Fatal(err)
		}
		gi, gr := unhex(t, v.gix+v.giy), unhex(t, v.grx+v.gry)
		if !bytes.Equal(i.Public(), gi) || !bytes.Equal(r.Public(), gr) {
			t.Errorf("%v: public values differ from the RFC", v.id)
		}
		for _, c := range []struct {
			k    Private
			peer []byte
		}{{i, gr}, {r, gi}} {
			z, err := c.k.SharedSecret(c.peer)
			if err != nil || !bytes.Equal(z, unhex(t, v.girx)) {
				t.Errorf("%v: shared %x (%v), want %s", v.id, z, err, v.girx)
			}
		}

		// Invalid points (RFC 6989 §2.3): off the curve, coordinates
		// out of range, the point at infinity's all-zero encoding.
		n := g.PublicSize() / 2
		offCurve := bytes.Clone(gr)
		offCurve[len(offCurve)-1] ^= 1
		bigCoord := bytes.Repeat([]byte{0xff}, 2*n)
		for name, bad := range map[string][]byte{"off curve": offCurve, "x,y >= p": bigCoord, "zero": make([]byte, 2*n)} {
			_, err := i.SharedSecret(bad)
			if !errors.Is(err, ErrInvalidPublic) || !strings.Contains(err.Error(), "not on curve") {
				t.Errorf("%v %s: err = %v", v.id, name, err)
			}
		}
	}
}

// RFC 7748 §6.1 (the X25519 exchange that RFC 8031 §3 refers to), and the
// low-order points whose shared secret is all zero: the list that
// Wycheproof's x25519 "low order public key" cases and libsodium's
// blocklist share (0, 1, two points of order 8, p-1, p, p+1).
func TestX25519(t *testing.T) {
	g := mustGroup(t, proposal.DHCurve25519)
	a, _ := g.NewPrivate(unhex(t, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
	b, _ := g.NewPrivate(unhex(t, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
	if want := unhex(t, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"); !bytes.Equal(a.Public(), want) {
		t.Errorf("Alice's public %x", a.Public())
	}
	if want := unhex(t, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"); !bytes.Equal(b.Public(), want) {
		t.Errorf("Bob's public %x", b.Public())
	}
	want := unhex(t, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
	for _, c := range []struct{ k, peer Private }{{a, b}, {b, a}} {
		if z, err := c.k.SharedSecret(c.peer.Public()); err != nil || !bytes.Equal(z, want) {
			t.Errorf("shared %x (%v)", z, err)
		}
	}
	for _, low := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	} {
		_, err := a.SharedSecret(unhex(t, low))
		if !errors.Is(err, ErrInvalidPublic) || !strings.Contains(err.Error(), "all-zero") {
			t.Errorf("low-order %s: err = %v", low, err)
		}
	}
}

func TestPublicLength(t *testing.T) {
	for _, id := range []proposal.DHGroup{14, 15, 16, 18, 19, 20, 21, 31} {
		g := mustGroup(t, id)
		if g.PublicSize() != id.PublicKeySize() || g.ID() != id {
			t.Errorf("%v: PublicSize %d, proposal says %d", id, g.PublicSize(), id.PublicKeySize())
		}
		k, err := g.Generate(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(k.Public()) != g.PublicSize() {
			t.Errorf("%v: public value of %d bytes", id, len(k.Public()))
		}
		_, err = k.SharedSecret(make([]byte, g.PublicSize()-1))
		want := id.String() + ": invalid key exchange public value: length " + itoa(g.PublicSize()-1) + ", want " + itoa(g.PublicSize())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: short value: err = %v", id, err)
		}
	}
	if _, err := GroupFor(proposal.DHGroup(2)); err == nil || !strings.Contains(err.Error(), "DH2") {
		t.Errorf("group 2: err = %v", err)
	}
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }

func TestMODP(t *testing.T) {
	for _, id := range []proposal.DHGroup{14, 15, 16, 18} {
		if testing.Short() && id > 14 {
			continue
		}
		g := mustGroup(t, id)
		a, _ := g.Generate(nil)
		b, _ := g.Generate(nil)
		za, err1 := a.SharedSecret(b.Public())
		zb, err2 := b.SharedSecret(a.Public())
		if err1 != nil || err2 != nil || !bytes.Equal(za, zb) || len(za) != g.PublicSize() {
			t.Errorf("%v: exchange failed: %v %v", id, err1, err2)
		}
		p := modpGroupFor(id).p
		pm1 := new(big.Int).Sub(p, big.NewInt(1))
		size := g.PublicSize()
		for name, y := range map[string]*big.Int{"0": big.NewInt(0), "1": big.NewInt(1), "p-1": pm1, "p": p} {
			_, err := a.SharedSecret(y.FillBytes(make([]byte, size)))
			if !errors.Is(err, ErrInvalidPublic) {
				t.Errorf("%v: y = %s accepted (%v)", id, name, err)
			}
		}
		if _, err := a.SharedSecret(bytes.Repeat([]byte{0xff}, size)); !errors.Is(err, ErrInvalidPublic) {
			t.Errorf("%v: y > p accepted", id)
		}
	}
	// Known answer: the exponents 2 and 3 give 2^6 = 64, left-padded.
	g := mustGroup(t, proposal.DHMODP2048)
	a, _ := g.NewPrivate([]byte{2})
	b, _ := g.NewPrivate([]byte{3})
	z, err := a.SharedSecret(b.Public())
	if err != nil || len(z) != 256 || z[255] != 64 || !bytes.Equal(z[:255], make([]byte, 255)) {
		t.Errorf("2^(2*3): %x %v", z, err)
	}
}

// TestMODPPrimes recomputes the RFC 3526 primes from their definition,
// p = 2^N - 2^(N-64) - 1 + 2^64 * (floor(2^(N-130) * pi) + k), and checks
// that each is a safe prime.
func TestMODPPrimes(t *testing.T) {
	const prec = 8300
	atanInv := func(x int64) *big.Int { // arctan(1/x) * 2^prec
		X2 := big.NewInt(x * x)
		term := new(big.Int).Div(new(big.Int).Lsh(big.NewInt(1), prec), big.NewInt(x))
		sum := new(big.Int).Set(term)
		t := new(big.Int)
		for k := int64(1); term.Sign() != 0; k++ {
			term.Div(term, X2)
			t.Div(term, big.NewInt(2*k+1))
			if k%2 == 1 {
				sum.Sub(sum, t)
			} else {
				sum.Add(sum, t)
			}
		}
		return sum
	}
	// Machin: pi = 16 arctan(1/5) - 4 arctan(1/239).
	pi := new(big.Int).Sub(new(big.Int).Lsh(atanInv(5), 4), new(big.Int).Lsh(atanInv(239), 2))
	for _, c := range []struct {
		id   proposal.DHGroup
		bits int
		k    int64
	}{{14, 2048, 124476}, {15, 3072, 1690314}, {16, 4096, 240904}, {18, 8192, 4743158}} {
		f := new(big.Int).Rsh(pi, uint(prec-(c.bits-130)))
		f.Add(f, big.NewInt(c.k)).Lsh(f, 64)
		p := new(big.Int).Lsh(big.NewInt(1), uint(c.bits))
		p.Sub(p, new(big.Int).Lsh(big.NewInt(1), uint(c.bits-64))).Sub(p, big.NewInt(1)).Add(p, f)
		if p.Cmp(modpGroupFor(c.id).p) != 0 {
			t.Errorf("%v: prime differs from RFC 3526's definition", c.id)
		}
		if !testing.Short() && !new(big.Int).Rsh(p, 1).ProbablyPrime(1) {
			t.Errorf("%v: (p-1)/2 is not prime", c.id)
		}
	}
}
