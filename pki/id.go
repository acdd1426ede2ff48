package pki

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"unicode/utf8"
)

// AVA is one attribute of a distinguished name: type and value. A Value of
// "*" in a pattern (a DN from the configuration) matches any value.
type AVA struct {
	Type  asn1.ObjectIdentifier
	Value string
}

// dnAttr names a DN attribute type the way Libreswan's DN syntax spells
// it. The first entry of each OID is the one printed.
var dnAttrs = []struct {
	name string
	oid  asn1.ObjectIdentifier
}{
	{"CN", asn1.ObjectIdentifier{2, 5, 4, 3}},
	{"C", asn1.ObjectIdentifier{2, 5, 4, 6}},
	{"L", asn1.ObjectIdentifier{2, 5, 4, 7}},
	{"ST", asn1.ObjectIdentifier{2, 5, 4, 8}},
	{"O", asn1.ObjectIdentifier{2, 5, 4, 10}},
	{"OU", asn1.ObjectIdentifier{2, 5, 4, 11}},
	{"E", asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}},
	{"SN", asn1.ObjectIdentifier{2, 5, 4, 5}}, // serialNumber, as in Libreswan
	{"S", asn1.ObjectIdentifier{2, 5, 4, 4}},  // surname
	{"T", asn1.ObjectIdentifier{2, 5, 4, 12}},
	{"D", asn1.ObjectIdentifier{2, 5, 4, 13}},
	{"N", asn1.ObjectIdentifier{2, 5, 4, 41}},
	{"G", asn1.ObjectIdentifier{2, 5, 4, 42}},
	{"I", asn1.ObjectIdentifier{2, 5, 4, 43}},
	{"ID", asn1.ObjectIdentifier{2, 5, 4, 45}},
	{"DC", asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}},
	{"UID", asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}},
	{"UN", asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 2}},
	{"STREET", asn1.ObjectIdentifier{2, 5, 4, 9}},
	{"PC", asn1.ObjectIdentifier{2, 5, 4, 17}},
	// Aliases.
	{"emailAddress", asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}},
	{"Email", asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}},
	{"serialNumber", asn1.ObjectIdentifier{2, 5, 4, 5}},
	{"SP", asn1.ObjectIdentifier{2, 5, 4, 8}},
	{"unstructuredName", asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 2}},
	{"postalCode", asn1.ObjectIdentifier{2, 5, 4, 17}},
}

func attrName(oid asn1.ObjectIdentifier) string {
	for _, a := range dnAttrs {
		if a.oid.Equal(oid) {
			return a.name
		}
	}
	return oid.String()
}

func attrOID(name string) (asn1.ObjectIdentifier, bool) {
	for _, a := range dnAttrs {
		if strings.EqualFold(a.name, name) {
			return a.oid, true
		}
	}
	// A dotted OID.
	var oid asn1.ObjectIdentifier
	for _, p := range strings.Split(name, ".") {
		n := 0
		if p == "" || len(p) > 9 {
			return nil, false
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return nil, false
			}
			n = n*10 + int(c-'0')
		}
		oid = append(oid, n)
	}
	return oid, len(oid) >= 2
}

// ParseDNDER reads a DER Name (RDNSequence), as in a certificate's
// RawSubject or an ID_DER_ASN1_DN payload, flattening multi-valued RDNs.
func ParseDNDER(der []byte) ([]AVA, error) {
	var rdns pkix.RDNSequence
	rest, err := asn1.Unmarshal(der, &rdns)
	if err != nil {
		return nil, fmt.Errorf("malformed distinguished name: %w", err)
	}
	if len(rest) != 0 {
		return nil, errors.New("trailing data after distinguished name")
	}
	var out []AVA
	for _, rdn := range rdns {
		for _, atv := range rdn {
			out = append(out, AVA{Type: atv.Type, Value: avaValueString(atv.Value)})
		}
	}
	return out, nil
}

func avaValueString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return "#" + hex.EncodeToString(v)
	}
	return fmt.Sprint(v)
}

// FormatDN writes a DN in Libreswan's syntax: the attributes in their
// encoded order (usually C first), joined by ", ", with ',' '+' '"' '\'
// '<' '>' ';' '=' and leading or trailing spaces escaped by '\'.
func FormatDN(dn []AVA) string {
	var b strings.Builder
	for i, a := range dn {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(attrName(a.Type))
		b.WriteByte('=')
		for j, r := range a.Value {
			switch {
			case strings.ContainsRune(",+\"\\<>;=", r),
				r == ' ' && (j == 0 || j == len(a.Value)-1),
				r == '#' && j == 0:
				b.WriteByte('\\')
				b.WriteRune(r)
			case r < 0x20 || r == 0x7f:
				fmt.Fprintf(&b, "\\%02x", r)
			default:
				b.WriteRune(r)
			}
		}
	}
	return b.String()
}

// DNString is FormatDN of a DER Name, or a hex dump if it does not parse.
func DNString(der []byte) string {
	dn, err := ParseDNDER(der)
	if err != nil {
		return "#" + hex.EncodeToString(der)
	}
	return FormatDN(dn)
}

// ParseDN reads a DN in Libreswan's syntax: "C=CH, O=Example, CN=gw".
// Attributes are separated by ',' (or '/' when the string begins with
// one, as strongSwan and OpenSSL write). Names are
// case-insensitive (CN, cn); values may be quoted ("O=\"Example, Inc\"")
// or escape a character with '\' or two hex digits ('\2C'). Spaces around
// names and values are dropped.
func ParseDN(s string) ([]AVA, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty distinguished name")
	}
	sep := byte(',')
	if s[0] == '/' {
		sep = '/'
		s = s[1:]
	}
	var out []AVA
	i := 0
	for i <= len(s) {
		// Attribute name.
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			return nil, fmt.Errorf("distinguished name %q: %q has no '='", s, strings.TrimSpace(s[i:]))
		}
		name := strings.TrimSpace(s[i : i+eq])
		oid, ok := attrOID(name)
		if !ok {
			return nil, fmt.Errorf("distinguished name %q: unknown attribute %q", s, name)
		}
		i += eq + 1
		for i < len(s) && s[i] == ' ' {
			i++
		}
		// Value.
		var v []byte
		quoted := false
		trailingEscaped := 0 // length of v that must not be trimmed
		if i < len(s) && s[i] == '"' {
			quoted = true
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				v = append(v, s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("distinguished name %q: unterminated quote", s)
			}
			i++
		}
		for ; i < len(s) && s[i] != sep; i++ {
			if quoted {
				if s[i] != ' ' {
					return nil, fmt.Errorf("distinguished name %q: text after a quoted value", s)
				}
				continue
			}
			if s[i] == '\\' {
				if i+1 >= len(s) {
					return nil, fmt.Errorf("distinguished name %q ends in '\\'", s)
				}
				if i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
					b, _ := hex.DecodeString(s[i+1 : i+3])
					v = append(v, b[0])
					i += 2
				} else {
					v = append(v, s[i+1])
					i++
				}
				trailingEscaped = len(v)
				continue
			}
			v = append(v, s[i])
		}
		val := string(v)
		if !quoted {
			trimmed := strings.TrimRight(val, " ")
			if len(trimmed) < trailingEscaped {
				trimmed = val[:trailingEscaped]
			}
			val = trimmed
		}
		if !utf8.ValidString(val) {
			return nil, fmt.Errorf("distinguished name %q: value of %s is not UTF-8", s, name)
		}
		out = append(out, AVA{Type: oid, Value: val})
		if i >= len(s) {
			break
		}
		i++ // separator
		if strings.TrimSpace(s[i:]) == "" {
			return nil, fmt.Errorf("distinguished name %q ends in a separator", s)
		}
	}
	return out, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// MarshalDN encodes a DN as DER, one attribute per RDN, in order: C as
// PrintableString, E and DC as IA5String, the rest as PrintableString
// when they fit and UTF8String otherwise.
func MarshalDN(dn []AVA) ([]byte, error) {
	var rdns pkix.RDNSequence
	for _, a := range dn {
		var v any = a.Value
		switch {
		case a.Type.Equal(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}),
			a.Type.Equal(asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}):
			v = asn1.RawValue{Tag: asn1.TagIA5String, Bytes: []byte(a.Value)}
		case isPrintable(a.Value):
			v = asn1.RawValue{Tag: asn1.TagPrintableString, Bytes: []byte(a.Value)}
		default:
			v = asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte(a.Value)}
		}
		rdns = append(rdns, pkix.RelativeDistinguishedNameSET{{Type: a.Type, Value: v}})
	}
	return asn1.Marshal(rdns)
}

func isPrintable(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(" '()+,-./:=?", c) >= 0) {
			return false
		}
	}
	return true
}

// avaValueEqual compares attribute values as Libreswan and strongSwan do
// for the string types: case-insensitively, spaces at the ends ignored.
func avaValueEqual(a, b string) bool {
	return strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b))
}

// MatchDN reports whether dn matches pattern: the same number of
// attributes, each attribute of the pattern equal to one of dn's with the
// same type, in any order (Libreswan's match_dn_any_order_wild), where a
// pattern value of "*" matches any value. wildcards counts the "*" used,
// so a caller can prefer the most specific of several matches.
func MatchDN(pattern, dn []AVA) (wildcards int, ok bool) {
	if len(pattern) != len(dn) {
		return 0, false
	}
	used := make([]bool, len(dn))
	// Exact values first, then the wildcards take what is left of their
	// type: any assignment of the wildcards then works.
	for _, p := range pattern {
		if p.Value == "*" {
			continue
		}
		found := false
		for j, d := range dn {
			if !used[j] && p.Type.Equal(d.Type) && avaValueEqual(p.Value, d.Value) {
				used[j], found = true, true
				break
			}
		}
		if !found {
			return 0, false
		}
	}
	for _, p := range pattern {
		if p.Value != "*" {
			continue
		}
		found := false
		for j, d := range dn {
			if !used[j] && p.Type.Equal(d.Type) {
				used[j], found = true, true
				break
			}
		}
		if !found {
			return 0, false
		}
		wildcards++
	}
	return wildcards, true
}

// IDKind is the kind of an identity.
type IDKind uint8

// Identity kinds. IDFromCert and IDAny exist only in configuration.
const (
	IDAny      IDKind = iota + 1 // %any: anyone (only as rightid=)
	IDFromCert                   // %fromcert: the subject DN of the certificate
	IDDN                         // ID_DER_ASN1_DN
	IDFQDN                       // ID_FQDN: @gw.example.org
	IDUserFQDN                   // ID_RFC822_ADDR: user@example.org
	IDIP                         // ID_IPV4_ADDR, ID_IPV6_ADDR
	IDKeyID                      // ID_KEY_ID: @#0a0b...
)

// ID payload types (RFC 7296 §3.5), for IDFromPayload and ID.Payload.
const (
	IDTypeIPv4Addr   uint8 = 1
	IDTypeFQDN       uint8 = 2
	IDTypeRFC822Addr uint8 = 3
	IDTypeIPv6Addr   uint8 = 5
	IDTypeDERASN1DN  uint8 = 9
	IDTypeKeyID      uint8 = 11
)

// ID is an IKE identity: a leftid=/rightid= setting or the content of an
// ID payload.
type ID struct {
	Kind IDKind
	// DN is the distinguished name of IDDN.
	DN []AVA
	// RawDN is the DER of DN as received or as in a certificate, sent
	// as is so the peer compares the very octets; nil for a DN from the
	// configuration, which Payload encodes with MarshalDN.
	RawDN []byte
	// Name is the FQDN of IDFQDN (without '@') or the address of
	// IDUserFQDN.
	Name string
	// Addr is the address of IDIP.
	Addr netip.Addr
	// KeyID is the opaque value of IDKeyID.
	KeyID []byte
}

// ParseID reads an identity in Libreswan's syntax (ipsec.conf(5) leftid=):
//
//	%any, %fromcert       anyone; the certificate's subject DN
//	@gw.example.org       ID_FQDN (also a bare name with a dot and no '=')
//	user@example.org      ID_RFC822_ADDR
//	192.0.2.1, 2001:db8::1  ID_IPV4_ADDR, ID_IPV6_ADDR
//	@#0a1b2c              ID_KEY_ID in hex
//	C=CH, O=Example, CN=gw  ID_DER_ASN1_DN (any string with '=')
//
// Libreswan resolves a bare host name through DNS to an address; here it
// is an FQDN and resolving is the caller's business.
func ParseID(s string) (ID, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return ID{}, errors.New("empty identity")
	case s == "%any" || s == "%any6" || s == "0.0.0.0" || s == "::":
		return ID{Kind: IDAny}, nil
	case s == "%fromcert":
		return ID{Kind: IDFromCert}, nil
	case strings.HasPrefix(s, "@#"):
		b, err := hex.DecodeString(s[2:])
		if err != nil || len(b) == 0 {
			return ID{}, fmt.Errorf("identity %q: KEY_ID is not hex", s)
		}
		return ID{Kind: IDKeyID, KeyID: b}, nil
	case strings.HasPrefix(s, "@"):
		name := strings.TrimPrefix(strings.TrimPrefix(s, "@"), "@")
		if name == "" {
			return ID{}, fmt.Errorf("identity %q: empty name", s)
		}
		return ID{Kind: IDFQDN, Name: name}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return ID{Kind: IDIP, Addr: a.Unmap()}, nil
	}
	if strings.Contains(s, "=") {
		dn, err := ParseDN(s)
		if err != nil {
			return ID{}, err
		}
		return ID{Kind: IDDN, DN: dn}, nil
	}
	if i := strings.IndexByte(s, '@'); i > 0 && i < len(s)-1 {
		return ID{Kind: IDUserFQDN, Name: s}, nil
	}
	if strings.ContainsAny(s, " ,\"") {
		return ID{}, fmt.Errorf("identity %q is neither a name, an address nor a DN", s)
	}
	return ID{Kind: IDFQDN, Name: s}, nil
}

// SubjectID is the identity %fromcert stands for: the subject DN.
func SubjectID(c *x509.Certificate) ID {
	dn, _ := ParseDNDER(c.RawSubject)
	return ID{Kind: IDDN, DN: dn, RawDN: c.RawSubject}
}

// IDFromPayload reads an ID payload's type and identification data.
func IDFromPayload(idType uint8, data []byte) (ID, error) {
	switch idType {
	case IDTypeIPv4Addr, IDTypeIPv6Addr:
		a, ok := netip.AddrFromSlice(data)
		if !ok || (idType == IDTypeIPv4Addr) != (len(data) == 4) {
			return ID{}, fmt.Errorf("ID payload address of %d octets for type %d", len(data), idType)
		}
		return ID{Kind: IDIP, Addr: a.Unmap()}, nil
	case IDTypeFQDN, IDTypeRFC822Addr:
		if len(data) == 0 || !utf8.Valid(data) || bytes.IndexByte(data, 0) >= 0 {
			return ID{}, fmt.Errorf("ID payload name %q is empty or not text", data)
		}
		if idType == IDTypeFQDN {
			return ID{Kind: IDFQDN, Name: string(data)}, nil
		}
		return ID{Kind: IDUserFQDN, Name: string(data)}, nil
	case IDTypeDERASN1DN:
		dn, err := ParseDNDER(data)
		if err != nil {
			return ID{}, fmt.Errorf("ID payload: %w", err)
		}
		return ID{Kind: IDDN, DN: dn, RawDN: bytes.Clone(data)}, nil
	case IDTypeKeyID:
		return ID{Kind: IDKeyID, KeyID: bytes.Clone(data)}, nil
	}
	return ID{}, fmt.Errorf("unsupported ID type %d", idType)
}

// Payload returns the ID payload's type and identification data for id.
// IDFromCert and IDAny have none: resolve %fromcert with SubjectID first.
func (id ID) Payload() (idType uint8, data []byte, err error) {
	switch id.Kind {
	case IDIP:
		if id.Addr.Is4() {
			b := id.Addr.As4()
			return IDTypeIPv4Addr, b[:], nil
		}
		b := id.Addr.As16()
		return IDTypeIPv6Addr, b[:], nil
	case IDFQDN:
		return IDTypeFQDN, []byte(id.Name), nil
	case IDUserFQDN:
		return IDTypeRFC822Addr, []byte(id.Name), nil
	case IDKeyID:
		return IDTypeKeyID, id.KeyID, nil
	case IDDN:
		if id.RawDN != nil {
			return IDTypeDERASN1DN, id.RawDN, nil
		}
		der, err := MarshalDN(id.DN)
		return IDTypeDERASN1DN, der, err
	}
	return 0, nil, fmt.Errorf("identity %v has no ID payload", id)
}

func (id ID) String() string {
	switch id.Kind {
	case IDAny:
		return "%any"
	case IDFromCert:
		return "%fromcert"
	case IDDN:
		return FormatDN(id.DN)
	case IDFQDN:
		return "@" + id.Name
	case IDUserFQDN:
		return id.Name
	case IDIP:
		return id.Addr.String()
	case IDKeyID:
		return "@#" + hex.EncodeToString(id.KeyID)
	}
	return "(no identity)"
}

// MatchID reports whether the peer's identity peer (from its ID payload)
// matches the configured pattern (rightid=). %any and %fromcert match any
// identity (%fromcert leaves the proof to MatchCert). wildcards counts the
// "*" of a DN pattern used.
func MatchID(pattern, peer ID) (wildcards int, ok bool) {
	switch pattern.Kind {
	case IDAny, IDFromCert:
		return 0, true
	}
	if pattern.Kind != peer.Kind {
		return 0, false
	}
	switch pattern.Kind {
	case IDDN:
		return MatchDN(pattern.DN, peer.DN)
	case IDFQDN:
		return 0, strings.EqualFold(strings.TrimSuffix(pattern.Name, "."), strings.TrimSuffix(peer.Name, "."))
	case IDUserFQDN:
		return 0, strings.EqualFold(pattern.Name, peer.Name)
	case IDIP:
		return 0, pattern.Addr == peer.Addr
	case IDKeyID:
		return 0, bytes.Equal(pattern.KeyID, peer.KeyID)
	}
	return 0, false
}

// MatchOptions adjust MatchCert.
type MatchOptions struct {
	// CN lets an FQDN or user@FQDN identity match the subject's common
	// name when no subjectAltName does (off by default, as in Libreswan
	// and strongSwan).
	CN bool
}

// MatchCert checks that the certificate proves the identity id: a DN (with
// "*" wildcards) against the subject, any order; an FQDN against a
// dNSName, user@FQDN against an rfc822Name, an address against an
// iPAddress of the subjectAltName. %fromcert and %any always match. The
// error says what the certificate holds instead.
func MatchCert(c *x509.Certificate, id ID, o MatchOptions) (wildcards int, err error) {
	subject := DNString(c.RawSubject)
	switch id.Kind {
	case IDAny, IDFromCert:
		return 0, nil
	case IDDN:
		dn, err := ParseDNDER(c.RawSubject)
		if err != nil {
			return 0, fmt.Errorf("certificate subject: %w", err)
		}
		if w, ok := MatchDN(id.DN, dn); ok {
			return w, nil
		}
		return 0, fmt.Errorf("identity %s does not match the certificate's subject %s", id, subject)
	case IDFQDN:
		name := strings.TrimSuffix(id.Name, ".")
		for _, d := range c.DNSNames {
			if strings.EqualFold(strings.TrimSuffix(d, "."), name) {
				return 0, nil
			}
		}
	case IDUserFQDN:
		for _, e := range c.EmailAddresses {
			if strings.EqualFold(e, id.Name) {
				return 0, nil
			}
		}
	case IDIP:
		for _, ip := range c.IPAddresses {
			if a, ok := netip.AddrFromSlice(ip); ok && a.Unmap() == id.Addr {
				return 0, nil
			}
		}
	case IDKeyID:
		return 0, fmt.Errorf("identity %s (KEY_ID) cannot be proven by certificate %s", id, subject)
	default:
		return 0, fmt.Errorf("identity %s cannot be matched to a certificate", id)
	}
	if o.CN && (id.Kind == IDFQDN || id.Kind == IDUserFQDN) {
		for _, cn := range commonNames(c) {
			if strings.EqualFold(cn, strings.TrimSuffix(id.Name, ".")) {
				return 0, nil
			}
		}
	}
	sans := SANs(c)
	if len(sans) == 0 {
		return 0, fmt.Errorf("identity %s is not in certificate %s, which has no subjectAltName", id, subject)
	}
	return 0, fmt.Errorf("identity %s is not in the subjectAltName of certificate %s (%s)", id, subject, strings.Join(sans, ", "))
}

func commonNames(c *x509.Certificate) []string {
	dn, _ := ParseDNDER(c.RawSubject)
	var out []string
	for _, a := range dn {
		if a.Type.Equal(asn1.ObjectIdentifier{2, 5, 4, 3}) {
			out = append(out, a.Value)
		}
	}
	return out
}

// SANs lists a certificate's subjectAltName entries as "DNS:name",
// "email:addr", "IP:addr", "URI:uri".
func SANs(c *x509.Certificate) []string {
	var out []string
	for _, d := range c.DNSNames {
		out = append(out, "DNS:"+d)
	}
	for _, e := range c.EmailAddresses {
		out = append(out, "email:"+e)
	}
	for _, ip := range c.IPAddresses {
		out = append(out, "IP:"+ip.String())
	}
	for _, u := range c.URIs {
		out = append(out, "URI:"+u.String())
	}
	return slices.Clip(out)
}
