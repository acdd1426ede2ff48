package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Value parsers shared by ipsec.conf keywords. Each returns an error whose
// text says what is allowed; the caller adds file, line and keyword.

var yesNo = map[string]bool{
	"yes": true, "no": false, "true": true, "false": false,
	"on": true, "off": false, "y": true, "n": false,
}

func parseBool(v string) (bool, error) {
	b, ok := yesNo[strings.ToLower(v)]
	if !ok {
		return false, errors.New("allowed values are yes, no")
	}
	return b, nil
}

// enum is a keyword's allowed words; aliases map extra spellings to one
// of them.
type enum struct {
	words   []string
	aliases map[string]string
}

func (e enum) parse(v string) (string, error) {
	l := strings.ToLower(v)
	for _, w := range e.words {
		if l == w {
			return w, nil
		}
	}
	if a, ok := e.aliases[l]; ok {
		return a, nil
	}
	return "", fmt.Errorf("allowed values are %s", strings.Join(e.words, ", "))
}

var durationUnits = []struct {
	suffix string
	unit   time.Duration
}{
	{"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute},
	{"h", time.Hour}, {"d", 24 * time.Hour}, {"w", 7 * 24 * time.Hour},
}

// parseDuration reads Libreswan's time values: a decimal number with an
// optional unit ms, s, m, h, d or w; a bare number is in units of bare
// (seconds for most keywords, milliseconds for retransmit-interval).
func parseDuration(v string, bare time.Duration) (time.Duration, error) {
	num, unit := v, bare
	for _, u := range durationUnits {
		if strings.HasSuffix(v, u.suffix) {
			num, unit = strings.TrimSuffix(v, u.suffix), u.unit
			break
		}
	}
	bad := fmt.Errorf("want a time such as 30s, 90m, 8h, 1d or a number of %s", unitName(bare))
	if num == "" || num[0] == '-' || num[0] == '+' {
		return 0, bad
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f > float64(1<<62)/float64(unit) {
		return 0, bad
	}
	return time.Duration(f * float64(unit)), nil
}

func unitName(d time.Duration) string {
	if d == time.Millisecond {
		return "milliseconds"
	}
	return "seconds"
}

func parseUint(v string, lo, hi uint64) (uint64, error) {
	n, err := strconv.ParseUint(v, 0, 64)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("want a number from %d to %d", lo, hi)
	}
	return n, nil
}

func parsePort(v string) (int, error) {
	n, err := parseUint(v, 1, 65535)
	return int(n), err
}

// parsePercent reads rekeyfuzz's "100%" (the % is optional).
func parsePercent(v string) (int, error) {
	n, err := strconv.ParseUint(strings.TrimSuffix(v, "%"), 10, 32)
	if err != nil {
		return 0, errors.New("want a percentage such as 100%")
	}
	return int(n), nil
}

// splitList splits a list value on commas and white space, dropping the
// {} braces Libreswan allows around subnets lists.
func splitList(v string) []string {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, "{") && strings.HasSuffix(v, "}") {
		v = v[1 : len(v)-1]
	}
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

// parseSubnet reads an address prefix; a bare address is a host prefix,
// %any4/%any6 (and %any, meaning IPv4) are the all-addresses prefixes.
func parseSubnet(s string) (netip.Prefix, error) {
	switch strings.ToLower(s) {
	case "%any", "%any4", "0/0":
		return netip.MustParsePrefix("0.0.0.0/0"), nil
	case "%any6", "::/0":
		return netip.MustParsePrefix("::/0"), nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a subnet (want ADDRESS/BITS)", s)
		}
		if p != p.Masked() {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set (did you mean %s?)", s, p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a subnet (want ADDRESS/BITS)", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parseSubnets(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range splitList(v) {
		p, err := parseSubnet(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, errors.New("empty subnet list")
	}
	return out, nil
}

func parseAddr(v string) (netip.Addr, error) {
	a, err := netip.ParseAddr(v)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", v)
	}
	return a, nil
}

// parseHost checks left=/right=: an IP address, one of the % words, or a
// DNS name (kept as a name; no lookup is done here).
func parseHost(v string) error {
	switch strings.ToLower(v) {
	case "%any", "%any4", "%any6", "%defaultroute", "%opportunistic", "%oppo",
		"%opportunisticgroup", "%oppogroup", "%group":
		return nil
	}
	if strings.HasPrefix(v, "%") {
		if len(v) > 1 && isDNSName(v[1:]) {
			return nil // %eth0: the address of an interface
		}
		return fmt.Errorf("allowed values are an IP address, a DNS name, %%any, %%any4, %%any6, %%defaultroute or %%INTERFACE")
	}
	if _, err := netip.ParseAddr(v); err == nil {
		return nil
	}
	if isDNSName(v) {
		return nil
	}
	return fmt.Errorf("not an IP address or DNS name")
}

func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return false
		}
	}
	return true
}

// ProtoPort is a left/rightprotoport= value: an IP protocol and port.
// Proto 0 means any protocol; AnyPort is set for "%any"; Port 0 with
// AnyPort unset means the port was not given (any).
type ProtoPort struct {
	Proto   uint8
	Port    uint16
	AnyPort bool
}

var protoNames = map[string]uint8{"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132}

func parseProtoPort(v string) (ProtoPort, error) {
	var pp ProtoPort
	proto, port, hasPort := strings.Cut(v, "/")
	if n, ok := protoNames[strings.ToLower(proto)]; ok {
		pp.Proto = n
	} else if n, err := strconv.ParseUint(proto, 10, 8); err == nil {
		pp.Proto = uint8(n)
	} else {
		return pp, fmt.Errorf("unknown protocol %q (want PROTOCOL[/PORT], e.g. tcp/80, 17/%%any)", proto)
	}
	if !hasPort {
		return pp, nil
	}
	if strings.EqualFold(port, "%any") {
		pp.AnyPort = true
		return pp, nil
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return pp, fmt.Errorf("bad port %q (want 0 to 65535 or %%any)", port)
	}
	pp.Port = uint16(n)
	return pp, nil
}

// Mark is a mark= value, VALUE/MASK; Value -1 in Libreswan (unique) is
// kept as Unique.
type Mark struct {
	Value, Mask uint32
	Unique      bool
}

func parseMark(v string) (Mark, error) {
	m := Mark{Mask: 0xffffffff}
	val, mask, hasMask := strings.Cut(v, "/")
	if val == "-1" {
		m.Unique = true
	} else {
		n, err := strconv.ParseUint(val, 0, 32)
		if err != nil {
			return m, errors.New("want VALUE[/MASK], numbers up to 0xffffffff (VALUE may be -1)")
		}
		m.Value = uint32(n)
	}
	if hasMask {
		n, err := strconv.ParseUint(mask, 0, 32)
		if err != nil {
			return m, errors.New("want VALUE[/MASK], numbers up to 0xffffffff (VALUE may be -1)")
		}
		m.Mask = uint32(n)
	}
	return m, nil
}

// parseID checks leftid=/rightid= syntax: @fqdn, @#hex, @[raw],
// user@host, an IP address, %fromcert, %any, %none or an X.509 DN.
func parseID(v string) error {
	switch strings.ToLower(v) {
	case "%fromcert", "%any", "%none", "%null", "%myid":
		return nil
	}
	if strings.HasPrefix(v, "%") {
		return errors.New("allowed % words are %fromcert, %any, %none, %null")
	}
	if strings.HasPrefix(v, "@#") {
		h := v[2:]
		if h == "" || len(h)%2 != 0 || strings.Trim(strings.ToLower(h), "0123456789abcdef") != "" {
			return errors.New("a @# key ID wants an even number of hex digits")
		}
	}
	return nil
}
