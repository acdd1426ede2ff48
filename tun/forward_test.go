package tun

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseForward(t *testing.T) {
	good := map[string]Forward{
		"tcp:127.0.0.1:8080=10.2.0.1:80": {"tcp", netip.MustParseAddrPort("127.0.0.1:8080"), netip.MustParseAddrPort("10.2.0.1:80")},
		"udp:8053=10.2.0.1:53":           {"udp", netip.MustParseAddrPort("127.0.0.1:8053"), netip.MustParseAddrPort("10.2.0.1:53")},
		"tcp:[::1]:8080=[fd00::2]:443":   {"tcp", netip.MustParseAddrPort("[::1]:8080"), netip.MustParseAddrPort("[fd00::2]:443")},
		"tcp:0.0.0.0:22=10.0.0.1:22":     {"tcp", netip.MustParseAddrPort("0.0.0.0:22"), netip.MustParseAddrPort("10.0.0.1:22")},
	}
	for s, want := range good {
		f, err := ParseForward(s)
		if err != nil || f != want {
			t.Errorf("ParseForward(%q) = %v, %v; want %v", s, f, err, want)
		}
		if g, err := ParseForward(f.String()); err != nil || g != f {
			t.Errorf("ParseForward(%q) (round trip) = %v, %v", f.String(), g, err)
		}
	}
	bad := map[string]string{
		"":                            "no \":\"",
		"sctp:1=10.0.0.1:1":           `protocol "sctp"`,
		"tcp:8080":                    `no "="`,
		"tcp:8080=10.0.0.1:80=x":      `more than one "="`,
		"tcp:http=10.0.0.1:80":        `listening port "http"`,
		"tcp:127.0.0.1:0=10.0.0.1:80": `listening port "0"`,
		"tcp:1=10.0.0.1:99999":        `remote port "99999"`,
		"tcp:1=example.com:80":        `remote address "example.com"`,
		"tcp:1=fd00::1:80":            "must be in brackets",
		"tcp:1=[fd00::1:80":           "unbalanced brackets",
		"tcp:1=0.0.0.0:80":            "unspecified",
		"tcp:1=10.0.0.1":              `remote "10.0.0.1" is not ADDRESS:PORT`,
	}
	for s, frag := range bad {
		_, err := ParseForward(s)
		if err == nil || !strings.Contains(err.Error(), frag) {
			t.Errorf("ParseForward(%q) error = %v, want one naming %s", s, err, frag)
		}
	}
}

func TestParseExpose(t *testing.T) {
	e, err := ParseExpose("tcp:80=127.0.0.1:8080")
	if err != nil || e != (Expose{"tcp", 80, netip.MustParseAddrPort("127.0.0.1:8080")}) {
		t.Fatalf("ParseExpose = %v, %v", e, err)
	}
	if g, err := ParseExpose(e.String()); err != nil || g != e {
		t.Errorf("round trip %v, %v", g, err)
	}
	for s, frag := range map[string]string{
		"tcp:127.0.0.1:80=127.0.0.1:8080": `tunnel-side port "127.0.0.1:80"`,
		"udp:53=localhost:53":             `host address "localhost"`,
		"tcp:80=127.0.0.1:":               `host port ""`,
	} {
		if _, err := ParseExpose(s); err == nil || !strings.Contains(err.Error(), frag) {
			t.Errorf("ParseExpose(%q) error = %v, want one naming %s", s, err, frag)
		}
	}
}

func FuzzParseSpecs(f *testing.F) {
	for _, s := range []string{"tcp:127.0.0.1:8080=10.2.0.1:80", "udp:53=[fd00::1]:53", "tcp:[::1]:1=[::2]:2", "tcp:80=127.0.0.1:8080", "x", "tcp:=", "udp:[::]:1=[::ffff:1.2.3.4]:5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if fw, err := ParseForward(s); err == nil {
			if g, err := ParseForward(fw.String()); err != nil || g != fw {
				t.Fatalf("ParseForward(%q) = %v; its String %q parses to %v, %v", s, fw, fw.String(), g, err)
			}
			if fw.Listen.Port() == 0 || fw.Remote.Port() == 0 || !fw.Remote.Addr().IsValid() {
				t.Fatalf("ParseForward(%q) = %v: a port is 0 or an address missing", s, fw)
			}
		}
		if e, err := ParseExpose(s); err == nil {
			if g, err := ParseExpose(e.String()); err != nil || g != e {
				t.Fatalf("ParseExpose(%q) = %v; round trip %v, %v", s, e, g, err)
			}
		}
	})
}
