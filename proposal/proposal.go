package proposal

import "strings"

// IKEProposal is one proposal for an IKE SA: any of its encryption
// algorithms with any of its PRFs, integrity algorithms and DH groups.
// After parsing, every list is non-empty; for AEAD encryption Integ is
// [IntegNone].
type IKEProposal struct {
	Encr  []Encr
	PRF   []PRFID
	Integ []IntegID
	DH    []DHGroup
}

// ESPProposal is one proposal for an ESP Child SA. DH holds the PFS groups
// and may be empty (no group named: the caller decides from pfs= and the
// IKE SA). Extended sequence numbers are negotiated from the connection's
// esn= setting, not from here.
type ESPProposal struct {
	Encr  []Encr
	Integ []IntegID
	DH    []DHGroup
}

// AEAD reports whether the proposal's encryption is AEAD.
func (p IKEProposal) AEAD() bool { return len(p.Encr) > 0 && p.Encr[0].ID.AEAD() }

// AEAD reports whether the proposal's encryption is AEAD.
func (p ESPProposal) AEAD() bool { return len(p.Encr) > 0 && p.Encr[0].ID.AEAD() }

// String returns the proposal in Libreswan's form, for example
// AES_GCM_16_256-HMAC_SHA2_512+HMAC_SHA2_256-DH19+DH31. The integrity list
// is left out when it is the one Libreswan derives (NONE for AEAD, the
// PRFs' own hashes otherwise); when printed it comes before the PRFs, the
// order in which ParseIKE reads it back.
func (p IKEProposal) String() string {
	var b strings.Builder
	joinList(&b, p.Encr)
	if !p.integDerived() {
		joinList(&b, p.Integ)
	}
	joinList(&b, p.PRF)
	joinList(&b, p.DH)
	return b.String()
}

func (p IKEProposal) integDerived() bool {
	if p.AEAD() {
		return len(p.Integ) == 1 && p.Integ[0] == IntegNone
	}
	var derived []IntegID
	for _, prf := range p.PRF {
		derived = appendUnique(derived, prf.Integ())
	}
	if len(derived) != len(p.Integ) {
		return false
	}
	for i := range derived {
		if derived[i] != p.Integ[i] {
			return false
		}
	}
	return true
}

// String returns the proposal in Libreswan's form, for example
// AES_GCM_16_256-NONE or AES_CBC_128-HMAC_SHA2_256_128-DH19.
func (p ESPProposal) String() string {
	var b strings.Builder
	joinList(&b, p.Encr)
	joinList(&b, p.Integ)
	joinList(&b, p.DH)
	return b.String()
}

func joinList[T interface{ String() string }](b *strings.Builder, list []T) {
	if len(list) == 0 {
		return
	}
	if b.Len() > 0 {
		b.WriteByte('-')
	}
	for i, v := range list {
		if i > 0 {
			b.WriteByte('+')
		}
		b.WriteString(v.String())
	}
}

// FormatIKE joins proposals with commas, the inverse of ParseIKE.
func FormatIKE(ps []IKEProposal) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// FormatESP joins proposals with commas, the inverse of ParseESP.
func FormatESP(ps []ESPProposal) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// Deprecated lists the algorithms of the proposal that Libreswan 5 still
// accepts but considers legacy (3DES, SHA1), for a warning.
func (p IKEProposal) Deprecated() []string {
	var out []string
	for _, e := range p.Encr {
		if e.ID.Deprecated() {
			out = append(out, e.String())
		}
	}
	for _, f := range p.PRF {
		if f.Deprecated() {
			out = append(out, f.String())
		}
	}
	for _, in := range p.Integ {
		if in.Deprecated() {
			out = append(out, in.String())
		}
	}
	return out
}

// Deprecated lists the algorithms of the proposal that Libreswan 5 still
// accepts but considers legacy (3DES, SHA1, NULL encryption).
func (p ESPProposal) Deprecated() []string {
	var out []string
	for _, e := range p.Encr {
		if e.ID.Deprecated() || e.ID == EncrNull {
			out = append(out, e.String())
		}
	}
	for _, in := range p.Integ {
		if in.Deprecated() {
			out = append(out, in.String())
		}
	}
	return out
}

// defaultEncrs are Libreswan 5's default encryption algorithms for IKEv2
// IKE and ESP (FIPS mode off), one proposal each, in this order.
func defaultEncrs() []Encr {
	return []Encr{
		{ID: EncrAESGCM16, KeyBits: 256},
		{ID: EncrAESGCM16, KeyBits: 128},
		{ID: EncrChaCha20Poly1305},
		{ID: EncrAESCBC, KeyBits: 256},
		{ID: EncrAESCBC, KeyBits: 128},
	}
}

// defaultGroups are Libreswan 5's default IKEv2 key exchange groups.
func defaultGroups() []DHGroup {
	return []DHGroup{DHECP256, DHECP384, DHECP521, DHCurve25519, DHMODP4096, DHMODP3072, DHMODP2048, DHMODP8192}
}

// DefaultIKE returns Libreswan 5's default IKEv2 IKE proposals (FIPS mode
// off): one proposal per encryption algorithm AES_GCM_16_256,
// AES_GCM_16_128, CHACHA20_POLY1305, AES_CBC_256, AES_CBC_128; each with
// the PRFs HMAC_SHA2_512 and HMAC_SHA2_256, integrity derived from them
// (NONE for AEAD) and the groups 19, 20, 21, 31, 16, 15, 14, 18.
func DefaultIKE() []IKEProposal {
	var out []IKEProposal
	for _, e := range defaultEncrs() {
		p := IKEProposal{
			Encr: []Encr{e},
			PRF:  []PRFID{PRFHMACSHA2512, PRFHMACSHA2256},
			DH:   defaultGroups(),
		}
		if e.ID.AEAD() {
			p.Integ = []IntegID{IntegNone}
		} else {
			p.Integ = []IntegID{IntegHMACSHA2512256, IntegHMACSHA2256128}
		}
		out = append(out, p)
	}
	return out
}

// DefaultESP returns Libreswan 5's default IKEv2 ESP proposals (FIPS mode
// off): the encryption algorithms of DefaultIKE, one proposal each, with
// integrity HMAC_SHA2_512_256 and HMAC_SHA2_256_128 for the non-AEAD ones
// and no DH group (PFS follows the IKE SA's group).
func DefaultESP() []ESPProposal {
	var out []ESPProposal
	for _, e := range defaultEncrs() {
		p := ESPProposal{Encr: []Encr{e}}
		if e.ID.AEAD() {
			p.Integ = []IntegID{IntegNone}
		} else {
			p.Integ = []IntegID{IntegHMACSHA2512256, IntegHMACSHA2256128}
		}
		out = append(out, p)
	}
	return out
}
