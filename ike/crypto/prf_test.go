package crypto

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"hash"
	"strings"
	"testing"

	"goswan/proposal"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func mustPRF(t testing.TB, id proposal.PRFID) *PRF {
	t.Helper()
	p, err := NewPRF(id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// RFC 4868 §2.7.1 PRF test cases (the RFC 4231 ones) and §2.7.2.1 test
// case 1 for the 32-byte-key integrity form (truncation is checked in the
// SK tests).
func TestPRFVectors(t *testing.T) {
	tests := []struct {
		id        proposal.PRFID
		key, data string
		want      string
	}{
		// RFC 4868 §2.7.1 test case PRF-1 ("Hi There").
		{proposal.PRFHMACSHA2256, strings.Repeat("0b", 20), "4869205468657265",
			"b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
		{proposal.PRFHMACSHA2384, strings.Repeat("0b", 20), "4869205468657265",
			"afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6"},
		{proposal.PRFHMACSHA2512, strings.Repeat("0b", 20), "4869205468657265",
			"87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"},
		// PRF-2 ("Jefe", "what do ya want for nothing?").
		{proposal.PRFHMACSHA2256, "4a656665", "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
			"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		// RFC 4868 §2.7.2.1 AUTH256-1: 32-byte key of 0x0b.
		{proposal.PRFHMACSHA2256, strings.Repeat("0b", 32), "4869205468657265",
			"198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7"},
		// RFC 2202 test case 1 for HMAC-SHA1.
		{proposal.PRFHMACSHA1, strings.Repeat("0b", 20), "4869205468657265",
			"b617318655057264e28bc0b6fb378c8ef146be00"},
	}
	for _, tc := range tests {
		p := mustPRF(t, tc.id)
		got := p.Compute(nil, unhex(t, tc.key), unhex(t, tc.data))
		if want := unhex(t, tc.want); !bytes.Equal(got, want) {
			t.Errorf("%v key %s: got %x want %x", tc.id, tc.key, got, want)
		}
		// Re-keying and the incremental form give the same answer.
		p.SetKey([]byte("something else"))
		p.Compute(nil, []byte("other"), []byte("data"))
		p.SetKey(unhex(t, tc.key))
		d := unhex(t, tc.data)
		p.Write(d[:3])
		p.Write(d[3:])
		if got2 := p.Sum(nil); !bytes.Equal(got2, got) {
			t.Errorf("%v incremental: got %x want %x", tc.id, got2, got)
		}
	}
}

func stdHash(id proposal.PRFID) func() hash.Hash {
	return map[proposal.PRFID]func() hash.Hash{
		proposal.PRFHMACSHA1: sha1.New, proposal.PRFHMACSHA2256: sha256.New,
		proposal.PRFHMACSHA2384: sha512.New384, proposal.PRFHMACSHA2512: sha512.New,
	}[id]
}

// refPRFPlus is prf+ written plainly from RFC 7296 §2.13 on crypto/hmac.
func refPRFPlus(id proposal.PRFID, key, seed []byte, n int) []byte {
	var out, t []byte
	for i := byte(1); len(out) < n; i++ {
		m := hmac.New(stdHash(id), key)
		m.Write(t)
		m.Write(seed)
		m.Write([]byte{i})
		t = m.Sum(nil)
		out = append(out, t...)
	}
	return out[:n]
}

func TestPRFAgainstStdlib(t *testing.T) {
	ids := []proposal.PRFID{proposal.PRFHMACSHA1, proposal.PRFHMACSHA2256, proposal.PRFHMACSHA2384, proposal.PRFHMACSHA2512}
	for _, id := range ids {
		p := mustPRF(t, id)
		for _, kl := range []int{0, 1, 20, 64, 127, 128, 129, 300} {
			key := bytes.Repeat([]byte{byte(kl + 1)}, kl)
			data := bytes.Repeat([]byte{0xa5}, kl*3)
			m := hmac.New(stdHash(id), key)
			m.Write(data)
			if got, want := p.Compute(nil, key, data), m.Sum(nil); !bytes.Equal(got, want) {
				t.Errorf("%v key %d: got %x want %x", id, kl, got, want)
			}
			for _, n := range []int{1, p.Size(), p.Size() + 1, 132, 255 * p.Size()} {
				got, err := p.Plus(nil, n, key, data[:kl], []byte("seed"))
				if err != nil {
					t.Fatal(err)
				}
				want := refPRFPlus(id, key, append(append([]byte{}, data[:kl]...), "seed"...), n)
				if !bytes.Equal(got, want) {
					t.Errorf("%v prf+ %d bytes differs from the reference", id, n)
				}
			}
		}
		if _, err := p.Plus(nil, 255*p.Size()+1, []byte("k"), nil); err == nil {
			t.Errorf("%v: prf+ beyond 255 blocks accepted", id)
		}
	}
	if _, err := NewPRF(proposal.PRFID(4)); err == nil || !strings.Contains(err.Error(), "PRF_4") {
		t.Errorf("unknown PRF: err = %v", err)
	}
}

func TestPRFNoAllocs(t *testing.T) {
	p := mustPRF(t, proposal.PRFHMACSHA2256)
	key, data := make([]byte, 32), make([]byte, 100)
	out := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() {
		p.Compute(out[:0], key, data)
		p.Plus(out[:0], 200, key, data)
	}); n != 0 {
		t.Errorf("PRF allocates %v times per use", n)
	}
}
