package proposal

import (
	"fmt"
	"strconv"
	"strings"
)

// The parser follows Libreswan 5's IKEv2 proposal parser
// (lib/libswan/v2_proposals.c): a value is a comma-separated list of
// proposals, each a list of tokens separated by '-', ';' and '+':
//
//	ENCR[+ENCR...][-PRF[+PRF...]][-DH[+DH...]]            (IKE)
//	ENCR[+ENCR...][-INTEG[+INTEG...]][-PRF...][-DH...]    (IKE, explicit integrity)
//	ENCR[+ENCR...][-INTEG[+INTEG...]][-DH[+DH...]]        (ESP)
//
// A ';' before a token says it is the DH list, so "aes_gcm256;dh19" is
// encryption and DH only. For IKE the token after the encryption is first
// tried as a PRF list and, when that fails, as an integrity list followed
// by an optional PRF list; errors then report the PRF lookup. An
// encryption token may carry a key length: aes256, aes_256 or aes-256.
// Missing parts get Libreswan 5's defaults (see DefaultIKE, DefaultESP).

// ParseError is the error returned by ParseIKE and ParseESP.
type ParseError struct {
	Protocol string // "ike" or "esp"
	Input    string // the whole value
	Proposal string // the comma-separated proposal at fault
	Msg      string // what was wrong, naming the bad token
}

// Error formats the error as ike="value": msg, naming the proposal too
// when the value holds several.
func (e *ParseError) Error() string {
	if e.Proposal != "" && e.Proposal != strings.TrimSpace(e.Input) {
		return fmt.Sprintf("%s=%q: proposal %q: %s", e.Protocol, e.Input, e.Proposal, e.Msg)
	}
	return fmt.Sprintf("%s=%q: %s", e.Protocol, e.Input, e.Msg)
}

// ParseIKE parses the value of an ike= keyword.
func ParseIKE(s string) ([]IKEProposal, error) {
	var out []IKEProposal
	err := parseAll("ike", s, func(toks []token) error {
		p, err := parseOne(toks, true)
		if err != nil {
			return err
		}
		out = append(out, IKEProposal{Encr: p.encr, PRF: p.prf, Integ: p.integ, DH: p.dh})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ParseESP parses the value of an esp= keyword. The DH groups of an ESP
// proposal are its PFS groups; none given leaves DH empty (the caller
// then uses the IKE SA's group when pfs=yes).
func ParseESP(s string) ([]ESPProposal, error) {
	var out []ESPProposal
	err := parseAll("esp", s, func(toks []token) error {
		p, err := parseOne(toks, false)
		if err != nil {
			return err
		}
		out = append(out, ESPProposal{Encr: p.encr, Integ: p.integ, DH: p.dh})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func parseAll(protocol, s string, one func([]token) error) error {
	fail := func(prop, msg string) error {
		return &ParseError{Protocol: protocol, Input: s, Proposal: prop, Msg: msg}
	}
	if strings.TrimSpace(s) == "" {
		return fail("", protocol+" proposal is empty")
	}
	for _, prop := range strings.Split(s, ",") {
		prop = strings.TrimSpace(prop)
		if prop == "" {
			return fail("", "empty proposal")
		}
		if err := one(tokenize(prop)); err != nil {
			return fail(prop, err.Error())
		}
	}
	return nil
}

// token is one algorithm name with the delimiters around it (0 at the
// ends of the proposal).
type token struct {
	text       string
	prev, term byte
}

func tokenize(s string) []token {
	var toks []token
	var prev byte
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && !strings.ContainsRune("-;+", rune(s[i])) {
			continue
		}
		var term byte
		if i < len(s) {
			term = s[i]
		}
		toks = append(toks, token{text: s[start:i], prev: prev, term: term})
		prev = term
		start = i + 1
	}
	return toks
}

type parsed struct {
	encr  []Encr
	prf   []PRFID
	integ []IntegID
	dh    []DHGroup
}

func parseOne(toks []token, ike bool) (parsed, error) {
	var p parsed
	i := 0
	// Encryption: at least one, more after '+'.
	for {
		e, n, err := parseEncr(toks[i:], ike)
		if err != nil {
			return p, err
		}
		p.encr = appendUnique(p.encr, e)
		i += n
		if i >= len(toks) || toks[i].prev != '+' {
			break
		}
	}
	more := func() bool { return i < len(toks) && toks[i].prev != ';' }

	var prfErr error
	if ike && more() {
		prf, n, err := parseList(toks[i:], lookupPRF)
		if err == nil {
			p.prf = prf
			i += n
		} else {
			prfErr = err
		}
	}
	if more() && len(p.prf) == 0 {
		integ, n, err := parseList(toks[i:], lookupInteg)
		if err != nil {
			if prfErr != nil {
				return p, prfErr
			}
			return p, err
		}
		p.integ = integ
		i += n
	}
	if ike && more() && len(p.prf) == 0 {
		prf, n, err := parseList(toks[i:], lookupPRF)
		if err != nil {
			return p, err
		}
		p.prf = prf
		i += n
	}
	if i < len(toks) {
		dh, n, err := parseList(toks[i:], lookupDH)
		if err != nil {
			return p, err
		}
		p.dh = dh
		i += n
	}
	if i < len(toks) {
		return p, fmt.Errorf("unexpected %q after the DH groups", toks[i].text)
	}
	if err := p.complete(ike); err != nil {
		return p, err
	}
	return p, nil
}

// complete merges in Libreswan 5's defaults and checks the combination.
func (p *parsed) complete(ike bool) error {
	aead, norm := true, true
	for _, e := range p.encr {
		if e.ID.AEAD() {
			norm = false
		} else {
			aead = false
		}
	}
	if !aead && !norm {
		return fmt.Errorf("AEAD and non-AEAD encryption algorithms cannot be combined")
	}
	if ike && len(p.prf) == 0 {
		p.prf = []PRFID{PRFHMACSHA2512, PRFHMACSHA2256}
	}
	if len(p.integ) == 0 {
		switch {
		case aead:
			p.integ = []IntegID{IntegNone}
		case ike:
			for _, prf := range p.prf {
				p.integ = appendUnique(p.integ, prf.Integ())
			}
		default:
			p.integ = []IntegID{IntegHMACSHA2512256, IntegHMACSHA2256128}
		}
	}
	none := true
	for _, in := range p.integ {
		if in != IntegNone {
			none = false
		}
	}
	if aead && !none {
		return fmt.Errorf("AEAD encryption algorithm %s must have NONE as the integrity algorithm", p.encr[0].ID)
	}
	if norm && none {
		return fmt.Errorf("non-AEAD encryption algorithm %s cannot have NONE as the integrity algorithm", p.encr[0].ID)
	}
	if ike && len(p.dh) == 0 {
		p.dh = defaultGroups()
	}
	if ike {
		for _, g := range p.dh {
			if g == DHNone {
				return fmt.Errorf("IKE DH algorithm NONE not permitted")
			}
		}
	}
	return nil
}

func appendUnique[T comparable](list []T, v T) []T {
	for _, x := range list {
		if x == v {
			return list
		}
	}
	return append(list, v)
}

// parseEncr parses one encryption token, or two for the <alg>-<keylen>
// form, returning the number of tokens used.
func parseEncr(toks []token, ike bool) (Encr, int, error) {
	t := toks[0]
	if t.text == "" {
		return Encr{}, 0, fmt.Errorf("encryption algorithm is empty")
	}
	n := 1
	name, bits := strings.ToLower(t.text), 0
	id, ok := encrNames[name]
	if t.term == '-' && len(toks) > 1 && toks[1].text != "" && isDigit(toks[1].text[0]) {
		// <ealg>-<eklen>
		var err error
		if bits, err = parseKeyLen(t.text+"-"+toks[1].text, toks[1].text); err != nil {
			return Encr{}, 0, err
		}
		n = 2
	} else if !ok {
		// <ealg><eklen> or <ealg>_<eklen>
		j := len(name)
		for j > 0 && isDigit(name[j-1]) {
			j--
		}
		if j < len(name) && j > 0 {
			var err error
			if bits, err = parseKeyLen(t.text, name[j:]); err != nil {
				return Encr{}, 0, err
			}
			name = strings.TrimSuffix(name[:j], "_")
		}
	}
	if id, ok = encrNames[name]; !ok {
		if unsupportedEncr[name] {
			return Encr{}, 0, fmt.Errorf("encryption algorithm %q is not supported", t.text)
		}
		return Encr{}, 0, fmt.Errorf("unknown encryption algorithm %q", t.text)
	}
	if ike && id.ESPOnly() {
		return Encr{}, 0, fmt.Errorf("encryption algorithm %q is not valid for IKE", t.text)
	}
	if bits != 0 {
		valid := false
		for _, k := range id.KeyLengths() {
			valid = valid || k == bits
		}
		if !valid {
			return Encr{}, 0, fmt.Errorf("encryption algorithm %q: key length %d is not valid for %s (valid: %s)",
				t.text, bits, id, joinInts(id.KeyLengths()))
		}
		if !id.HasKeyLengthAttribute() {
			bits = 0 // fixed length: nothing to negotiate
		}
	}
	return Encr{ID: id, KeyBits: bits}, n, nil
}

func parseKeyLen(print, digits string) (int, error) {
	v, err := strconv.Atoi(digits)
	if err != nil || v > 1<<16 {
		return 0, fmt.Errorf("encryption algorithm %q: bad key length %q", print, digits)
	}
	if v == 0 {
		return 0, fmt.Errorf("encryption algorithm %q: key length is zero", print)
	}
	return v, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}

// parseList parses NAME[+NAME...] starting at toks[0].
func parseList[T comparable](toks []token, lookup func(string) (T, error)) ([]T, int, error) {
	var out []T
	i := 0
	for {
		v, err := lookup(toks[i].text)
		if err != nil {
			return nil, 0, err
		}
		out = appendUnique(out, v)
		i++
		if i >= len(toks) || toks[i].prev != '+' {
			return out, i, nil
		}
	}
}

func lookupPRF(s string) (PRFID, error) {
	if s == "" {
		return 0, fmt.Errorf("PRF algorithm is empty")
	}
	if v, ok := prfNames[strings.ToLower(s)]; ok {
		return v, nil
	}
	if unsupportedHash[strings.ToLower(s)] {
		return 0, fmt.Errorf("PRF algorithm %q is not supported", s)
	}
	return 0, fmt.Errorf("unknown PRF algorithm %q", s)
}

func lookupInteg(s string) (IntegID, error) {
	if s == "" {
		return 0, fmt.Errorf("integrity algorithm is empty")
	}
	if v, ok := integNames[strings.ToLower(s)]; ok {
		return v, nil
	}
	if unsupportedHash[strings.ToLower(s)] {
		return 0, fmt.Errorf("integrity algorithm %q is not supported", s)
	}
	return 0, fmt.Errorf("unknown integrity algorithm %q", s)
}

func lookupDH(s string) (DHGroup, error) {
	if s == "" {
		return 0, fmt.Errorf("DH algorithm is empty")
	}
	if v, ok := dhNames[strings.ToLower(s)]; ok {
		return v, nil
	}
	if unsupportedDH[strings.ToLower(s)] {
		return 0, fmt.Errorf("DH algorithm %q is not supported", s)
	}
	return 0, fmt.Errorf("unknown DH algorithm %q", s)
}

// Names Libreswan accepts (lower case; lookups fold case). Each
// algorithm's String() form is among them so that printed proposals parse.
var encrNames = map[string]EncrID{
	"aes": EncrAESCBC, "aes_cbc": EncrAESCBC, "aescbc": EncrAESCBC,
	"aes_ctr": EncrAESCTR, "aesctr": EncrAESCTR,
	"aes_gcm": EncrAESGCM16, "aes_gcm_16": EncrAESGCM16, "aes_gcm16": EncrAESGCM16,
	"aesgcm": EncrAESGCM16, "aes_gcm_c": EncrAESGCM16,
	"aes_gcm_12": EncrAESGCM12, "aes_gcm12": EncrAESGCM12, "aes_gcm_b": EncrAESGCM12,
	"aes_gcm_8": EncrAESGCM8, "aes_gcm8": EncrAESGCM8, "aes_gcm_a": EncrAESGCM8,
	"3des": Encr3DES, "3des_cbc": Encr3DES,
	"chacha20_poly1305": EncrChaCha20Poly1305, "chacha20poly1305": EncrChaCha20Poly1305,
	"null": EncrNull,
}

var unsupportedEncr = map[string]bool{
	"des": true, "camellia": true, "camellia_cbc": true, "camellia_ctr": true,
	"aes_ccm": true, "aes_ccm_8": true, "aes_ccm_12": true, "aes_ccm_16": true,
	"aes_ccm_a": true, "aes_ccm_b": true, "aes_ccm_c": true,
	"null_auth_aes_gmac": true, "aes_gmac": true, "serpent": true, "twofish": true,
	"cast": true, "blowfish": true,
}

var prfNames = map[string]PRFID{
	"sha1": PRFHMACSHA1, "sha": PRFHMACSHA1, "hmac_sha1": PRFHMACSHA1,
	"sha2": PRFHMACSHA2256, "sha256": PRFHMACSHA2256, "sha2_256": PRFHMACSHA2256, "hmac_sha2_256": PRFHMACSHA2256,
	"sha384": PRFHMACSHA2384, "sha2_384": PRFHMACSHA2384, "hmac_sha2_384": PRFHMACSHA2384,
	"sha512": PRFHMACSHA2512, "sha2_512": PRFHMACSHA2512, "hmac_sha2_512": PRFHMACSHA2512,
}

var integNames = map[string]IntegID{
	"none": IntegNone, "null": IntegNone,
	"sha1": IntegHMACSHA196, "sha": IntegHMACSHA196, "sha1_96": IntegHMACSHA196,
	"hmac_sha1": IntegHMACSHA196, "hmac_sha1_96": IntegHMACSHA196,
	"sha2": IntegHMACSHA2256128, "sha256": IntegHMACSHA2256128, "sha2_256": IntegHMACSHA2256128,
	"sha2_256_128": IntegHMACSHA2256128, "hmac_sha2_256": IntegHMACSHA2256128, "hmac_sha2_256_128": IntegHMACSHA2256128,
	"sha384": IntegHMACSHA2384192, "sha2_384": IntegHMACSHA2384192, "sha2_384_192": IntegHMACSHA2384192,
	"hmac_sha2_384": IntegHMACSHA2384192, "hmac_sha2_384_192": IntegHMACSHA2384192,
	"sha512": IntegHMACSHA2512256, "sha2_512": IntegHMACSHA2512256, "sha2_512_256": IntegHMACSHA2512256,
	"hmac_sha2_512": IntegHMACSHA2512256, "hmac_sha2_512_256": IntegHMACSHA2512256,
}

var unsupportedHash = map[string]bool{
	"md5": true, "hmac_md5": true, "hmac_md5_96": true, "aes_xcbc": true, "aes128_xcbc": true,
	"aes_xcbc_96": true, "aes_cmac": true, "aes_cmac_96": true, "aes128_cmac": true,
}

var dhNames = map[string]DHGroup{
	"none": DHNone, "null": DHNone, "dh0": DHNone,
	"modp2048": DHMODP2048, "dh14": DHMODP2048,
	"modp3072": DHMODP3072, "dh15": DHMODP3072,
	"modp4096": DHMODP4096, "dh16": DHMODP4096,
	"modp8192": DHMODP8192, "dh18": DHMODP8192,
	"ecp256": DHECP256, "ecp_256": DHECP256, "dh19": DHECP256, "secp256r1": DHECP256,
	"ecp384": DHECP384, "ecp_384": DHECP384, "dh20": DHECP384, "secp384r1": DHECP384,
	"ecp521": DHECP521, "ecp_521": DHECP521, "dh21": DHECP521, "secp521r1": DHECP521,
	"curve25519": DHCurve25519, "x25519": DHCurve25519, "dh31": DHCurve25519,
}

var unsupportedDH = map[string]bool{
	"modp768": true, "dh1": true, "modp1024": true, "dh2": true, "modp1536": true, "dh5": true,
	"dh22": true, "dh23": true, "dh24": true, "curve448": true, "x448": true, "dh32": true,
}
