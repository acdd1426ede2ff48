package logging

import (
	"net/netip"
	"strings"
)

// What --log-no-ip writes in place of an address, as Libreswan 5 does
// (jam_address_sensitive and jam_endpoint_sensitive in
// lib/libswan/ip_address.c and ip_endpoint.c).
const (
	MaskedAddress  = "<address>"  // an IPv4 or IPv6 address, with any %zone
	MaskedEndpoint = "<endpoint>" // address:port or [address]:port
)

// maxCandidate bounds the text tried as one address: the longest IPv6
// text (45) with a zone (IFNAMSIZ), brackets and a port fits well inside.
// Longer text is never parsed whole, which keeps masking linear.
const maxCandidate = 96

// MaskAddresses returns line with every IPv4 and IPv6 address replaced
// by MaskedAddress and every address:port by MaskedEndpoint. It is what
// --log-no-ip applies to each finished log line, so it does not depend on
// callers marking addresses.
//
// How a line is read:
//
//   - A candidate is a maximal run of hex digits, '.' and ':' (so
//     "dead:beef" and "04:59:00" are candidates too). A run followed by
//     '%' and a zone ([A-Za-z0-9_.-]+) is tried with the zone; a run
//     inside "[...]" followed by ":PORT" is tried as a bracketed endpoint.
//   - A run glued to a letter outside a-f or to '_' ("v1.2.3.4",
//     "Foo::Bar") is part of a word and left alone.
//   - A run is split at ".." (never inside an address), so
//     "1.2.3.4...5.6.7.8" holds two addresses.
//   - Each piece is an address when net/netip parses it (IPv4, IPv6
//     including "::1", "::ffff:1.2.3.4", "fe80::1%eth0"), or it is
//     IPv4:port, or a dotted quad with leading zeros; one '.' or ':' at
//     either edge may be punctuation ("from 1.2.3.4:500: ..." and
//     "to 1.2.3.4." both work).
//   - A piece that is not an address but holds one between colons
//     ("12:34:1.2.3.4") has that IPv4 address masked, and the text on
//     either side is read again as pieces.
//
// So "dead:beef::1" and "::1" are masked while "12:34:56", "dead:beef"
// and MAC addresses (six groups) are kept. Eight groups of hex separated
// by colons are always an IPv6 address, even when a hex dump meant them
// as bytes; they are masked: hiding too much is the safe side.
//
// MaskAddresses is its own fixpoint: masking its output changes nothing.
// It never panics and runs in time linear in len(line).
func MaskAddresses(line string) string {
	m := masker{s: line}
	m.scan()
	if m.b == nil {
		return line
	}
	m.b.WriteString(line[m.last:])
	return m.b.String()
}

type masker struct {
	s    string
	b    *strings.Builder // nil until the first replacement
	last int              // s[:last] has been written to b
}

func (m *masker) replace(from, to int, with string) {
	if m.b == nil {
		m.b = new(strings.Builder)
		m.b.Grow(len(m.s))
	}
	m.b.WriteString(m.s[m.last:from])
	m.b.WriteString(with)
	m.last = to
}

func isAddrChar(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' || c == '.' || c == ':'
}

// isWordChar: a letter or '_' that cannot be part of an address; a run
// touching one is part of a word.
func isWordChar(c byte) bool {
	return 'g' <= c && c <= 'z' || 'G' <= c && c <= 'Z' || c == '_'
}

func isZoneChar(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' ||
		c == '_' || c == '-' || c == '.'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func (m *masker) scan() {
	s := m.s
	i := 0
	for i < len(s) {
		if !isAddrChar(s[i]) {
			i++
			continue
		}
		start := i
		for i < len(s) && isAddrChar(s[i]) {
			i++
		}
		runEnd := i
		end := runEnd // end of run plus zone
		if runEnd+1 < len(s) && s[runEnd] == '%' && isZoneChar(s[runEnd+1]) {
			end = runEnd + 1
			for end < len(s) && isZoneChar(s[end]) {
				end++
			}
		}
		// part of a word: leave it (the zone, if any, is rescanned).
		// Text just after a replacement follows its '>', not a word.
		if start > 0 && start != m.last && isWordChar(s[start-1]) || end < len(s) && isWordChar(s[end]) {
			continue
		}
		// [address]:port
		if start > 0 && s[start-1] == '[' && end < len(s) && s[end] == ']' &&
			end+2 < len(s) && s[end+1] == ':' && isDigit(s[end+2]) {
			p := end + 2
			for p < len(s) && isDigit(s[p]) {
				p++
			}
			if p-(start-1) <= maxCandidate {
				if _, err := netip.ParseAddrPort(s[start-1 : p]); err == nil {
					m.replace(start-1, p, MaskedEndpoint)
					i = p
					continue
				}
			}
		}
		// address%zone
		if end > runEnd && end-start <= maxCandidate {
			if with, from, to, ok := m.whole(start, end); ok {
				m.replace(from, to, with)
				i = end
				continue
			}
		}
		m.run(start, runEnd)
		// i stays at runEnd: a zone that was not masked with its
		// address is read as text of its own.
	}
}

// run splits s[from:to] at every "..", then reads each piece.
func (m *masker) run(from, to int) {
	s := m.s
	pieceStart := from
	i := from
	for i < to {
		if s[i] == '.' && i+1 < to && s[i+1] == '.' {
			m.piece(pieceStart, i)
			for i < to && s[i] == '.' {
				i++
			}
			pieceStart = i
			continue
		}
		i++
	}
	m.piece(pieceStart, to)
}

// piece masks s[from:to] if it is an address, else the IPv4 addresses
// between its colons, reading the text around each one as a piece again.
func (m *masker) piece(from, to int) {
	for from < to {
		if to-from <= maxCandidate {
			if with, a, b, ok := m.whole(from, to); ok {
				m.replace(a, b, with)
				return
			}
		}
		a, b, ok := m.firstIPv4Segment(from, to)
		if !ok {
			return
		}
		// [from,a) holds no IPv4 segment, so this does not recurse
		// further than one level.
		m.piece(from, a)
		m.replace(a, b, MaskedAddress)
		from = b
	}
}

// whole tries s[from:to] as one address or endpoint, allowing one '.' or
// ':' of punctuation at either edge. It returns the replacement and the
// span it covers.
func (m *masker) whole(from, to int) (with string, a, b int, ok bool) {
	s := m.s
	for _, trim := range [4][2]int{{0, 0}, {0, 1}, {1, 0}, {1, 1}} {
		a, b = from+trim[0], to-trim[1]
		if b-a < 2 {
			continue
		}
		if trim[0] == 1 && !isPunct(s[from]) || trim[1] == 1 && !isPunct(s[to-1]) {
			continue
		}
		if with, ok := classify(s[a:b]); ok {
			return with, a, b, true
		}
	}
	return "", 0, 0, false
}

func isPunct(c byte) bool { return c == '.' || c == ':' }

// classify says whether t is an address or an endpoint. It calls
// net/netip only for text that could be IPv6, so that lines without
// addresses cost no allocations (netip's errors allocate).
func classify(t string) (string, bool) {
	colon := strings.IndexByte(t, ':')
	if colon < 0 {
		if isDottedQuad(t) {
			return MaskedAddress, true
		}
		return "", false
	}
	if maybeIPv6(t) {
		if _, err := netip.ParseAddr(t); err == nil {
			return MaskedAddress, true
		}
	}
	// IPv4:port (IPv6 needs brackets to carry a port)
	if strings.IndexByte(t[colon+1:], ':') < 0 && isDottedQuad(t[:colon]) && isPort(t[colon+1:]) {
		return MaskedEndpoint, true
	}
	return "", false
}

// maybeIPv6 is a cheap test that t has the shape of IPv6 text: groups of
// at most four hex digits, seven colons or a single "::", an optional
// dotted IPv4 tail and an optional %zone. It accepts everything
// netip.ParseAddr accepts as IPv6, and some text it refuses.
func maybeIPv6(t string) bool {
	if i := strings.IndexByte(t, '%'); i >= 0 {
		if i == len(t)-1 {
			return false
		}
		t = t[:i]
	}
	if len(t) < 2 || len(t) > 45 {
		return false
	}
	colons, group, double, dotted := 0, 0, false, false
	for i := 0; i < len(t); i++ {
		switch c := t[i]; {
		case c == ':':
			if i > 0 && t[i-1] == ':' {
				if double {
					return false
				}
				double = true
			}
			if dotted {
				return false
			}
			colons++
			group = 0
		case c == '.':
			dotted = true
		default:
			group++
			if group > 4 && !dotted {
				return false
			}
		}
	}
	if dotted {
		colons++ // the IPv4 tail stands for two groups
	}
	if double {
		return colons <= 8
	}
	return colons == 7
}

// isDottedQuad accepts the IPv4 text netip refuses for its leading zeros
// ("192.168.001.010"): still an address to the person reading the log.
func isDottedQuad(t string) bool {
	parts := 0
	for len(t) > 0 {
		n, digits := 0, 0
		for digits < len(t) && isDigit(t[digits]) {
			n = n*10 + int(t[digits]-'0')
			digits++
			if digits > 3 {
				return false
			}
		}
		if digits == 0 || n > 255 {
			return false
		}
		parts++
		t = t[digits:]
		if len(t) == 0 {
			break
		}
		if t[0] != '.' || len(t) == 1 {
			return false
		}
		t = t[1:]
	}
	return parts == 4
}

func isPort(t string) bool {
	if len(t) == 0 || len(t) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(t); i++ {
		if !isDigit(t[i]) {
			return false
		}
		n = n*10 + int(t[i]-'0')
	}
	return n <= 65535
}

// firstIPv4Segment finds the first ':'-separated segment of s[from:to]
// that is an IPv4 address (with one '.' of punctuation allowed at either
// edge) and returns the address's span.
func (m *masker) firstIPv4Segment(from, to int) (a, b int, ok bool) {
	s := m.s
	segStart := from
	for i := from; i <= to; i++ {
		if i < to && s[i] != ':' {
			continue
		}
		if a, b, ok := ipv4Span(s, segStart, i); ok {
			return a, b, true
		}
		segStart = i + 1
	}
	return 0, 0, false
}

func ipv4Span(s string, from, to int) (a, b int, ok bool) {
	if to-from < 7 || to-from > 17 {
		return 0, 0, false
	}
	for _, trim := range [4][2]int{{0, 0}, {0, 1}, {1, 0}, {1, 1}} {
		a, b = from+trim[0], to-trim[1]
		if trim[0] == 1 && s[from] != '.' || trim[1] == 1 && s[to-1] != '.' {
			continue
		}
		if isDottedQuad(s[a:b]) {
			return a, b, true
		}
	}
	return 0, 0, false
}
