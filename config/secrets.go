package config

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// SecretKind is the kind of an ipsec.secrets entry.
type SecretKind int

// The kinds of secret.
const (
	PSK SecretKind = iota + 1
	RSA
	ECDSA
	EDDSA
)

func (k SecretKind) String() string {
	switch k {
	case PSK:
		return "PSK"
	case RSA:
		return "RSA"
	case ECDSA:
		return "ECDSA"
	case EDDSA:
		return "EDDSA"
	}
	return fmt.Sprintf("SecretKind(%d)", int(k))
}

// Secret is one ipsec.secrets entry.
type Secret struct {
	IDs        []string // as written (DN quotes removed); empty matches any
	Kind       SecretKind
	PSK        []byte // for PSK
	KeyFile    string // for RSA, ECDSA, EDDSA: absolute path
	Passphrase string // for a key file, may be empty
	File       string
	Line       int
}

// Secrets is a parsed set of ipsec.secrets files.
type Secrets struct {
	Entries  []*Secret
	Warnings []*Diagnostic
	Files    []string
}

// LoadSecrets reads every file matching the glob pattern (and the files
// they include). Relative key file names are resolved against ipsecdir.
// A file readable by group or others gives a warning. On any error it
// returns the Secrets read so far and an Errors; no message contains a
// secret.
func LoadSecrets(pattern, ipsecdir string) (*Secrets, error) {
	return loadSecrets(pattern, ipsecdir, osSource, true)
}

func loadSecrets(pattern, ipsecdir string, src source, checkMode bool) (*Secrets, error) {
	p := &secretsParser{src: src, ipsecdir: ipsecdir, checkMode: checkMode, out: &Secrets{}}
	p.includeGlob("", 0, pattern)
	if len(p.errs) > 0 {
		return p.out, p.errs
	}
	return p.out, nil
}

type secretsParser struct {
	src       source
	ipsecdir  string
	checkMode bool
	out       *Secrets
	errs      Errors
	stack     []string
}

func (p *secretsParser) errorf(file string, line int, format string, args ...any) {
	p.errs = append(p.errs, &Diagnostic{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (p *secretsParser) includeGlob(from string, line int, pattern string) {
	if from != "" && !filepath.IsAbs(pattern) {
		pattern = filepath.Join(filepath.Dir(from), pattern)
	}
	if len(p.stack) >= maxIncludeDepth {
		p.errorf(from, line, "include %s: includes nested more than %d deep", pattern, maxIncludeDepth)
		return
	}
	matches, err := p.src.glob(pattern)
	if err != nil {
		p.errorf(from, line, "%s: %v", pattern, err)
		return
	}
	if len(matches) == 0 && !strings.ContainsAny(pattern, "*?[") {
		p.errorf(from, line, "%s: no such file", pattern)
	}
	for _, m := range matches {
		clean := filepath.Clean(m)
		for i, s := range p.stack {
			if s == clean {
				p.errorf(from, line, "include loop: %s", strings.Join(append(append([]string{}, p.stack[i:]...), clean), " -> "))
				return
			}
		}
		b, err := p.src.readFile(m)
		if err != nil {
			p.errorf(from, line, "%v", err)
			continue
		}
		if p.checkMode {
			if st, err := os.Stat(m); err == nil && st.Mode().Perm()&0o077 != 0 {
				p.out.Warnings = append(p.out.Warnings, &Diagnostic{File: m,
					Msg: fmt.Sprintf("file is readable by group or others (mode %04o); it should be 0600", st.Mode().Perm())})
			}
		}
		p.parseFile(m, b)
	}
}

// parseFile reads one secrets file: an entry starts at column 0 and
// continues on the indented lines below it.
func (p *secretsParser) parseFile(name string, b []byte) {
	p.out.Files = append(p.out.Files, name)
	p.stack = append(p.stack, filepath.Clean(name))
	defer func() { p.stack = p.stack[:len(p.stack)-1] }()

	var entry []string
	var start int
	flush := func() {
		if entry != nil {
			p.parseEntry(name, start, strings.Join(entry, " "))
			entry = nil
		}
	}
	for i, text := range strings.Split(string(b), "\n") {
		n := i + 1
		text = strings.TrimSuffix(text, "\r")
		trimmed := strings.TrimSpace(text)
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		if text[0] == ' ' || text[0] == '\t' {
			if entry == nil {
				p.errorf(name, n, "indented line does not continue an entry")
				continue
			}
			entry = append(entry, trimmed)
			continue
		}
		flush()
		if f := strings.Fields(stripComment(trimmed)); len(f) > 0 && f[0] == "include" {
			if len(f) != 2 {
				p.errorf(name, n, "want include PATTERN")
				continue
			}
			p.includeGlob(name, n, f[1])
			continue
		}
		entry, start = []string{trimmed}, n
	}
	flush()
}

// secretToken is a word of an entry; quoted words keep their content
// verbatim.
type secretToken struct {
	text   string
	quoted bool
}

func tokenizeSecret(s string) ([]secretToken, error) {
	var toks []secretToken
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == ' ' || c == '\t':
			i++
		case c == '#':
			return toks, nil
		case c == '"' || c == '\'':
			end := strings.IndexByte(s[i+1:], c)
			if end < 0 {
				return nil, fmt.Errorf("unterminated quoted string")
			}
			toks = append(toks, secretToken{text: s[i+1 : i+1+end], quoted: true})
			i += end + 2
		default:
			j := i
			for j < len(s) && s[j] != ' ' && s[j] != '\t' && s[j] != '"' && s[j] != '\'' {
				j++
			}
			toks = append(toks, secretToken{text: s[i:j]})
			i = j
		}
	}
	return toks, nil
}

func (p *secretsParser) parseEntry(file string, line int, text string) {
	toks, err := tokenizeSecret(text)
	if err != nil {
		p.errorf(file, line, "%v", err)
		return
	}
	colon := -1
	for i, t := range toks {
		if !t.quoted && t.text == ":" {
			colon = i
			break
		}
	}
	if colon < 0 {
		p.errorf(file, line, "missing \" : \" between the IDs and the secret kind")
		return
	}
	s := &Secret{File: file, Line: line}
	for _, t := range toks[:colon] {
		s.IDs = append(s.IDs, t.text)
	}
	rest := toks[colon+1:]
	if len(rest) == 0 {
		p.errorf(file, line, "missing secret kind after \":\" (PSK, RSA, ECDSA, EDDSA)")
		return
	}
	kind, args := strings.ToUpper(rest[0].text), rest[1:]
	switch kind {
	case "PSK":
		s.Kind = PSK
		if len(args) != 1 {
			p.errorf(file, line, "PSK wants one value: \"quoted\", 0xHEX or 0sBASE64")
			return
		}
		psk, err := decodePSK(args[0])
		if err != nil {
			p.errorf(file, line, "PSK: %v", err)
			return
		}
		s.PSK = psk
	case "RSA", "ECDSA", "EDDSA":
		s.Kind = map[string]SecretKind{"RSA": RSA, "ECDSA": ECDSA, "EDDSA": EDDSA}[kind]
		if len(args) == 0 || len(args) > 2 || (!args[0].quoted && strings.HasPrefix(args[0].text, "{")) {
			p.errorf(file, line, "%s wants a key file and an optional passphrase", kind)
			return
		}
		s.KeyFile = args[0].text
		if !filepath.IsAbs(s.KeyFile) {
			s.KeyFile = filepath.Join(p.ipsecdir, s.KeyFile)
		}
		if abs, err := filepath.Abs(s.KeyFile); err == nil {
			s.KeyFile = abs
		}
		if len(args) == 2 {
			s.Passphrase = args[1].text
		}
	case "XAUTH", "PIN", "PPKS":
		p.out.Warnings = append(p.out.Warnings, &Diagnostic{File: file, Line: line,
			Msg: fmt.Sprintf("secret kind %s is not supported by goswan; ignored", kind)})
		return
	default:
		p.errorf(file, line, "unknown secret kind %q (want PSK, RSA, ECDSA or EDDSA)", rest[0].text)
		return
	}
	p.out.Entries = append(p.out.Entries, s)
}

// decodePSK decodes a PSK value; errors never quote it.
func decodePSK(t secretToken) ([]byte, error) {
	var b []byte
	switch {
	case t.quoted:
		b = []byte(t.text)
	case strings.HasPrefix(t.text, "0x") || strings.HasPrefix(t.text, "0X"):
		h := strings.ReplaceAll(t.text[2:], "_", "")
		d, err := hex.DecodeString(h)
		if err != nil {
			return nil, fmt.Errorf("bad hexadecimal value")
		}
		b = d
	case strings.HasPrefix(t.text, "0s"):
		d, err := base64.StdEncoding.DecodeString(t.text[2:])
		if err != nil {
			return nil, fmt.Errorf("bad base64 value")
		}
		b = d
	default:
		return nil, fmt.Errorf("the value must be \"quoted\", 0xHEX or 0sBASE64")
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("empty value")
	}
	return b, nil
}

// Match strength, as in Libreswan's lsw_get_secret(): higher is better.
const (
	matchDefault = 1 << iota // no IDs, or local matched the only ID
	matchAny                 // an ID is %any
	matchRemote              // an ID equals the remote ID
	matchLocal               // an ID equals the local ID
)

// PSK returns the pre-shared key for the local and remote IDs, following
// Libreswan's rules: an entry with no IDs matches anything; an entry
// whose only ID is the local one matches any peer; %any (0.0.0.0, ::)
// matches either side; the best match is the one naming both IDs, then
// local with %any, local alone, remote with %any, then no IDs. Among
// equally good entries the first wins. IDs compare as identities: FQDNs
// (@ optional) ignoring case and a trailing dot, IP addresses by value.
func (s *Secrets) PSK(local, remote string) ([]byte, bool) {
	lid, rid := normalizeID(local), normalizeID(remote)
	best, bestMatch := (*Secret)(nil), 0
	for _, e := range s.Entries {
		if e.Kind != PSK {
			continue
		}
		m := 0
		if len(e.IDs) == 0 {
			m = matchDefault
		} else {
			for _, id := range e.IDs {
				n := normalizeID(id)
				if n == anyID {
					m |= matchAny
				} else if n == lid {
					m |= matchLocal
				}
				if n == rid && n != anyID {
					m |= matchRemote
				}
			}
			if m == matchLocal && len(e.IDs) == 1 {
				m |= matchDefault
			}
		}
		switch m {
		case matchDefault, matchLocal | matchDefault, matchLocal | matchAny,
			matchRemote | matchAny, matchLocal | matchRemote:
			// Other combinations (for example all three of local,
			// remote and %any) do not count, as in Libreswan.
			if m > bestMatch {
				best, bestMatch = e, m
			}
		}
	}
	if best == nil {
		return nil, false
	}
	return bytes.Clone(best.PSK), true
}

const anyID = "any"

// normalizeID returns a canonical type:value form of an ID.
func normalizeID(id string) string {
	id = strings.TrimSpace(strings.Trim(id, `"`))
	switch strings.ToLower(id) {
	case "", "%any", "%any4", "%any6", "0.0.0.0", "::":
		return anyID
	}
	if strings.HasPrefix(id, "@#") {
		return "keyid:" + strings.ToLower(id[2:])
	}
	if strings.HasPrefix(id, "@") {
		return "fqdn:" + strings.TrimSuffix(strings.ToLower(id[1:]), ".")
	}
	if a, err := netip.ParseAddr(id); err == nil {
		return "ip:" + a.Unmap().String()
	}
	if strings.Contains(id, "=") {
		parts := strings.Split(id, ",")
		for i, part := range parts {
			k, v, _ := strings.Cut(part, "=")
			parts[i] = strings.ToLower(strings.TrimSpace(k)) + "=" + strings.TrimSpace(v)
		}
		return "dn:" + strings.Join(parts, ",")
	}
	if strings.Contains(id, "@") {
		return "user:" + strings.ToLower(id)
	}
	return "fqdn:" + strings.TrimSuffix(strings.ToLower(id), ".")
}
