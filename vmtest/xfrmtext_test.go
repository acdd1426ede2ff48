package vmtest

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// iproute2 6.1 (Debian 12, what the guest runs) takes -j for xfrm but still
// prints text: these parse `ip -s xfrm state` and `ip xfrm policy`.

// xState is one SA as `ip -s xfrm state` prints it.
type xState struct {
	Src, Dst         string
	Proto            string
	SPI              uint32
	ReqID            uint32
	Mode             string
	Aead, Enc, Auth  string // transform names: "rfc4106(gcm(aes))", "cbc(aes)", "hmac(sha256)"
	AuthTrunc        int    // ICV bits of auth-trunc (or of aead)
	Encap            string // "espinudp 4500 4500", or "" for raw ESP
	Bytes, Packets   uint64
	SelSrc, SelDst   string
	raw              []string
	hasLifetimeStats bool
}

func (s xState) String() string { return strings.Join(s.raw, "\n") }

// xPolicy is one policy as `ip xfrm policy` prints it.
type xPolicy struct {
	Src, Dst string // the selector's prefixes
	Dir      string // in, out, fwd
	Socket   bool   // a per-socket policy ("socket in")
	Action   string // "" (allow) or "block"
	Tmpls    []xTmpl
	raw      []string
}

type xTmpl struct {
	Src, Dst    string
	Proto, Mode string
	ReqID       uint32
}

func (p xPolicy) String() string { return strings.Join(p.raw, "\n") }

// records splits ip's output into records: a line that does not start
// with white space starts one.
func records(text string) [][]string {
	var out [][]string
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		l := sc.Text()
		if strings.TrimSpace(l) == "" {
			continue
		}
		if l[0] != ' ' && l[0] != '\t' {
			out = append(out, nil)
		}
		if len(out) == 0 {
			continue
		}
		out[len(out)-1] = append(out[len(out)-1], l)
	}
	return out
}

// field returns the word after key in f, or "".
func field(f []string, key string) string {
	for i := 0; i+1 < len(f); i++ {
		if f[i] == key {
			return f[i+1]
		}
	}
	return ""
}

// number parses "0x67000001", "1728053249", or either with "(...)"
// appended (ip -s prints both forms).
func number(s string) (uint64, error) {
	if i := strings.IndexByte(s, '('); i > 0 {
		s = s[:i]
	}
	return strconv.ParseUint(s, 0, 64)
}

func parseStates(text string) ([]xState, error) {
	var out []xState
	for _, r := range records(text) {
		f0 := strings.Fields(r[0])
		if len(f0) < 4 || f0[0] != "src" || f0[2] != "dst" {
			return nil, fmt.Errorf("unexpected SA record %q", r[0])
		}
		s := xState{Src: f0[1], Dst: f0[3], raw: r}
		for i, l := range r[1:] {
			f := strings.Fields(l)
			if len(f) == 0 {
				continue
			}
			switch f[0] {
			case "proto":
				s.Proto = f[1]
				spi, err := number(field(f, "spi"))
				if err != nil {
					return nil, fmt.Errorf("SA %q: spi: %v", l, err)
				}
				s.SPI = uint32(spi)
				reqid, err := number(field(f, "reqid"))
				if err != nil {
					return nil, fmt.Errorf("SA %q: reqid: %v", l, err)
				}
				s.ReqID = uint32(reqid)
				s.Mode = field(f, "mode")
			case "aead":
				s.Aead = f[1]
				if len(f) >= 4 {
					s.AuthTrunc, _ = strconv.Atoi(f[len(f)-1])
				}
			case "enc":
				s.Enc = f[1]
			case "auth-trunc", "auth":
				s.Auth = f[1]
				if f[0] == "auth-trunc" {
					s.AuthTrunc, _ = strconv.Atoi(f[len(f)-1])
				}
			case "encap":
				s.Encap = field(f, "type") + " " + field(f, "sport") + " " + field(f, "dport")
			case "sel":
				s.SelSrc, s.SelDst = field(f, "src"), field(f, "dst")
			case "lifetime":
				if len(f) > 1 && f[1] == "current:" && i+2 < len(r) {
					// "  252(bytes), 3(packets)"
					g := strings.Fields(strings.NewReplacer(",", " ").Replace(r[i+2]))
					for _, w := range g {
						if v, ok := strings.CutSuffix(w, "(bytes)"); ok {
							s.Bytes, _ = strconv.ParseUint(v, 10, 64)
						}
						if v, ok := strings.CutSuffix(w, "(packets)"); ok {
							s.Packets, _ = strconv.ParseUint(v, 10, 64)
						}
					}
					s.hasLifetimeStats = true
				}
			}
		}
		out = append(out, s)
	}
	return out, nil
}

func parsePolicies(text string) ([]xPolicy, error) {
	var out []xPolicy
	for _, r := range records(text) {
		f0 := strings.Fields(r[0])
		if len(f0) < 4 || f0[0] != "src" || f0[2] != "dst" {
			return nil, fmt.Errorf("unexpected policy record %q", r[0])
		}
		p := xPolicy{Src: f0[1], Dst: f0[3], raw: r}
		for _, l := range r[1:] {
			f := strings.Fields(l)
			if len(f) == 0 {
				continue
			}
			switch f[0] {
			case "dir":
				p.Dir = f[1]
				p.Action = field(f, "action")
			case "socket":
				p.Socket, p.Dir = true, f[1]
			case "tmpl":
				p.Tmpls = append(p.Tmpls, xTmpl{Src: field(f, "src"), Dst: field(f, "dst")})
			case "proto":
				if len(p.Tmpls) > 0 {
					t := &p.Tmpls[len(p.Tmpls)-1]
					t.Proto, t.Mode = f[1], field(f, "mode")
					reqid, err := number(field(f, "reqid"))
					if err != nil {
						return nil, fmt.Errorf("policy %q: reqid: %v", l, err)
					}
					t.ReqID = uint32(reqid)
				}
			}
		}
		out = append(out, p)
	}
	return out, nil
}

func TestParseXFRMText(t *testing.T) {
	states, err := parseStates(`src 192.168.0.1 dst 192.168.0.2
	proto esp spi 0xe9c2d466(3921859686) reqid 1728053249(0x67000001) mode tunnel
	replay-window 0 seq 0x00000000 flag af-unspec (0x00100000)
	aead rfc4106(gcm(aes)) 0xfb9a7488c7f8936cdf63b5f61170a47a65f86c90 (160 bits) 128
	encap type espinudp sport 4500 dport 4500 addr 0.0.0.0
	lifetime current:
	  252(bytes), 3(packets)
	  add 2026-11-27 05:50:36 use 2026-11-27 05:50:36
src 192.168.0.2 dst 192.168.0.1
	proto esp spi 0x00001002 reqid 8193 mode transport
	enc cbc(aes) 0x0123456789abcdef0123456789abcdef
	auth-trunc hmac(sha256) 0x0123 128
	sel src 192.168.0.2/32 dst 192.168.0.1/32 
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 2 {
		t.Fatalf("%d states", len(states))
	}
	s := states[0]
	if s.SPI != 0xe9c2d466 || s.ReqID != 0x67000001 || s.Mode != "tunnel" || s.Aead != "rfc4106(gcm(aes))" ||
		s.AuthTrunc != 128 || s.Encap != "espinudp 4500 4500" || s.Bytes != 252 || s.Packets != 3 {
		t.Errorf("first: %+v", s)
	}
	s = states[1]
	if s.SPI != 0x1002 || s.ReqID != 8193 || s.Mode != "transport" || s.Enc != "cbc(aes)" || s.Auth != "hmac(sha256)" ||
		s.AuthTrunc != 128 || s.Encap != "" || s.SelSrc != "192.168.0.2/32" {
		t.Errorf("second: %+v", s)
	}
	pols, err := parsePolicies(`src 10.0.2.0/24 dst 10.0.1.0/24 
	dir fwd priority 65344 ptype main 
	tmpl src 192.168.0.2 dst 192.168.0.1
		proto esp reqid 1728053249 mode tunnel
src 0.0.0.0/0 dst 0.0.0.0/0 
	socket out priority 0 ptype main 
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(pols) != 2 || pols[0].Dir != "fwd" || len(pols[0].Tmpls) != 1 || pols[0].Tmpls[0].ReqID != 0x67000001 ||
		pols[0].Tmpls[0].Src != "192.168.0.2" || pols[0].Tmpls[0].Mode != "tunnel" || !pols[1].Socket || pols[1].Dir != "out" {
		t.Errorf("policies: %+v", pols)
	}
}
