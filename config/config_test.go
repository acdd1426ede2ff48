package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"goswan/proposal"
)

// memSource serves files from a map, for tests and fuzzing.
func memSource(files map[string]string) source {
	return source{
		readFile: func(p string) ([]byte, error) {
			if s, ok := files[p]; ok {
				return []byte(s), nil
			}
			return nil, os.ErrNotExist
		},
		glob: func(pattern string) ([]string, error) {
			var out []string
			for name := range files {
				if ok, err := filepath.Match(pattern, name); err != nil {
					return nil, err
				} else if ok {
					out = append(out, name)
				}
			}
			sortStrings(out)
			return out, nil
		},
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

const goodConf = `# a comment
version 2

config setup
	logfile=/var/log/pluto.log   # trailing comment
	plutodebug="all crypt"
	virtual-private=%v4:10.0.0.0/8,%v6:fd00::/8,%v4:!10.1.0.0/16
	protostack=netkey
	nhelpers=-1
	keep-alive=30
	nat-ikeport=4501
	netstack-socks5=127.0.0.1:1080

conn %default
	ikelifetime=1h
	authby=secret
	esp=aes_gcm256

conn base
	leftid=@west
	rightid=@east
	ikelifetime=2h
	also=proto

conn proto
	ike=aes_gcm256-sha2_512;dh19
	leftid=@proto
	mobike=yes

conn west
	left=192.0.2.1
	right=%any
	leftsubnet=10.0.1.0/24
	rightsubnets={10.0.2.0/24 10.0.3.0/24}
	also=base
	ikelifetime=3h
	salifetime=30m
	dpddelay=10s
	dpdaction=restart
	auto=route
	leftprotoport=tcp/80
	rightprotoport=17/%any
	retransmit-interval=750
	mark=0x10/0xff
	x-custom="anything goes"

conn east
	left=vpn.example.com
	right=2001:db8::2
	esp=
`

func TestParseGood(t *testing.T) {
	cfg, err := Parse("ipsec.conf", []byte(goodConf))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
	st := cfg.Setup
	if st.LogFile != "/var/log/pluto.log" || !reflect.DeepEqual(st.PlutoDebug, []string{"all", "crypt"}) ||
		st.ProtoStack != "xfrm" || st.NHelpers != -1 || st.KeepAlive != 30*time.Second || st.NATIKEPort != 4501 ||
		st.IKEPort != 500 || !st.LogTime || !reflect.DeepEqual(st.NetstackSOCKS5, []string{"127.0.0.1:1080"}) {
		t.Errorf("setup = %+v", st)
	}
	if !st.Set["logfile"] || st.Set["logtime"] || !st.Set["nat-ikeport"] {
		t.Errorf("Set = %v", st.Set)
	}
	if !st.VirtualPrivate.Allows(netip.MustParsePrefix("10.2.0.0/24")) || st.VirtualPrivate.Allows(netip.MustParsePrefix("10.1.2.0/24")) {
		t.Errorf("virtual-private %v", st.VirtualPrivate)
	}
	var names []string
	for _, c := range cfg.Conns {
		names = append(names, c.Name)
	}
	if !reflect.DeepEqual(names, []string{"base", "proto", "west", "east"}) {
		t.Errorf("conns %v", names)
	}
	w := cfg.Conn("west")
	if w == nil || w.Line != 30 || w.File != "ipsec.conf" {
		t.Fatalf("west = %+v", w)
	}
	if w.Left.Addr != netip.MustParseAddr("192.0.2.1") || w.Right.Host != "%any" {
		t.Errorf("hosts %+v %+v", w.Left, w.Right)
	}
	if w.Left.ID != "@west" || w.Right.ID != "@east" {
		t.Errorf("ids: own also= beats nested also=: %q %q", w.Left.ID, w.Right.ID)
	}
	if w.IKELifetime != 3*time.Hour || w.IPsecLifetime != 30*time.Minute || !w.MOBIKE {
		t.Errorf("lifetimes %v %v mobike %v", w.IKELifetime, w.IPsecLifetime, w.MOBIKE)
	}
	if len(w.IKE) != 1 || w.IKE[0].String() != "AES_GCM_16_256-HMAC_SHA2_512-DH19" {
		t.Errorf("ike %v", w.IKE)
	}
	if proposal.FormatESP(w.ESP) != "AES_GCM_16_256-NONE" {
		t.Errorf("esp from %%default: %v", w.ESP)
	}
	if !reflect.DeepEqual(w.AuthBy, []string{"secret"}) || w.Auto != "ondemand" || w.DPDAction != "restart" || w.DPDDelay != 10*time.Second {
		t.Errorf("authby %v auto %v dpd %v %v", w.AuthBy, w.Auto, w.DPDAction, w.DPDDelay)
	}
	wantSubnets := []netip.Prefix{netip.MustParsePrefix("10.0.2.0/24"), netip.MustParsePrefix("10.0.3.0/24")}
	if !reflect.DeepEqual(w.Right.Subnets, wantSubnets) || w.Left.Subnets[0].String() != "10.0.1.0/24" {
		t.Errorf("subnets %v %v", w.Left.Subnets, w.Right.Subnets)
	}
	if (w.Left.ProtoPort != ProtoPort{Proto: 6, Port: 80}) || (w.Right.ProtoPort != ProtoPort{Proto: 17, AnyPort: true}) {
		t.Errorf("protoport %+v %+v", w.Left.ProtoPort, w.Right.ProtoPort)
	}
	if w.RetransmitInterval != 750*time.Millisecond || w.RetransmitTimeout != 60*time.Second {
		t.Errorf("retransmit %v %v", w.RetransmitInterval, w.RetransmitTimeout)
	}
	if w.Mark == nil || w.Mark.Value != 0x10 || w.Mark.Mask != 0xff {
		t.Errorf("mark %+v", w.Mark)
	}
	if w.Raw["ipsec-lifetime"] != "30m" || w.Raw["ikelifetime"] != "3h" || w.Raw["x-custom"] != "anything goes" || w.Raw["also"] != "" {
		t.Errorf("raw %v", w.Raw)
	}
	e := cfg.Conn("east")
	if e.Left.Host != "vpn.example.com" || e.Left.Addr.IsValid() || e.Right.Addr != netip.MustParseAddr("2001:db8::2") {
		t.Errorf("east %+v", e)
	}
	// Defaults.
	if e.ESP != nil || e.IKE != nil || e.IKELifetime != time.Hour || e.RekeyMargin != 9*time.Minute ||
		e.RekeyFuzz != 100 || e.Type != "tunnel" || e.Auto != "ignore" || !e.PFS || e.ReplayWindow != 128 ||
		e.Encapsulation != "auto" || e.Fragmentation != "yes" || e.Left.SendCert != "sendifasked" || e.KeyExchange != "ikev2" {
		t.Errorf("east defaults %+v", e)
	}
	if cfg.Conn("nope") != nil {
		t.Error("Conn(nope) not nil")
	}
}

func TestParseBad(t *testing.T) {
	tests := []struct {
		name, conf string
		want       []string // each error, in order
	}{
		{"bad enum", "conn west\n\tleft=1.2.3.4\n\tdpdaction=explode\n",
			[]string{`ipsec.conf:3: conn "west": dpdaction="explode": allowed values are clear, hold, restart`}},
		{"unknown keyword", "conn a\n\tfoo=bar\n", []string{`ipsec.conf:2: conn "a": foo="bar": unknown keyword`}},
		{"duplicate", "conn a\n\tleft=1.2.3.4\n\tleft=1.2.3.5\n",
			[]string{`ipsec.conf:3: conn "a": left="1.2.3.5": duplicate keyword, already set at ipsec.conf:2`}},
		{"duplicate alias", "conn a\n\tlifetime=1h\n\tsalifetime=2h\n",
			[]string{`ipsec.conf:3: conn "a": salifetime="2h": duplicate keyword`}},
		{"ikev1", "conn a\n\tkeyexchange=ikev1\n", []string{`ipsec.conf:2: conn "a": keyexchange="ikev1": IKEv1 is not supported`}},
		{"bad ike", "conn a\n\tike=aes_gcm256-sha3\n",
			[]string{`ipsec.conf:2: conn "a": ike="aes_gcm256-sha3": ike="aes_gcm256-sha3": unknown PRF algorithm "sha3"`}},
		{"bad esp", "conn a\n\tesp=aes_gcm-sha1\n", []string{`ipsec.conf:2: conn "a": esp="aes_gcm-sha1": esp="aes_gcm-sha1": AEAD`}},
		{"collect all", "config setup\n\tlogtime=maybe\n\tikeport=0\nconn a\n\trekeyfuzz=lots\n\tikelifetime=forever\n",
			[]string{`ipsec.conf:2: config setup: logtime="maybe": allowed values are yes, no`,
				`ipsec.conf:3: config setup: ikeport="0": want a number from 1 to 65535`,
				`ipsec.conf:5: conn "a": rekeyfuzz="lots": want a percentage`,
				`ipsec.conf:6: conn "a": ikelifetime="forever": want a time`}},
		{"setup key in conn", "conn a\n\tuniqueids=yes\n", []string{`ipsec.conf:2: conn "a": uniqueids="yes": not valid in a conn`}},
		{"conn key in setup", "config setup\n\tleft=1.2.3.4\n", []string{`ipsec.conf:2: config setup: left="1.2.3.4": not valid in config setup`}},
		{"also missing", "conn a\n\talso=b\n", []string{`ipsec.conf:2: conn "a": also="b": no conn named "b"`}},
		{"also loop", "conn a\n\talso=b\nconn b\n\talso=c\nconn c\n\talso=a\n",
			[]string{`ipsec.conf:6: conn "c": also="a": also= loop: a -> b -> c -> a`}},
		{"dup conn", "conn a\n\tleft=1.2.3.4\nconn a\n\tleft=1.2.3.5\n",
			[]string{`ipsec.conf:3: conn "a": conn "a" is already defined at ipsec.conf:1`}},
		{"not indented", "conn a\nleft=1.2.3.4\n", []string{`ipsec.conf:2: syntax error`}},
		{"indented outside", "  left=1.2.3.4\n", []string{`ipsec.conf:1: indented line "left=1.2.3.4" is not inside a section`}},
		{"unterminated", "conn a\n\tleftid=\"@x\n", []string{`ipsec.conf:2: conn "a": leftid: unterminated quoted value`}},
		{"space in value", "conn a\n\tleftid=@x @y\n", []string{`ipsec.conf:2: conn "a": leftid: unexpected "@y" after the value`}},
		{"bad subnet", "conn a\n\tleftsubnet=10.0.0.1/24\n", []string{`leftsubnet="10.0.0.1/24": "10.0.0.1/24" has host bits set (did you mean 10.0.0.0/24?)`}},
		{"bad host", "conn a\n\tright=bad!host\n", []string{`right="bad!host": not an IP address or DNS name`}},
		{"bad protoport", "conn a\n\tleftprotoport=tcp/http\n", []string{`leftprotoport="tcp/http": bad port "http"`}},
		{"bad replay", "conn a\n\treplay-window=4294967296\n", []string{`replay-window="4294967296": want a number from 0 to 4294967295`}},
		{"bad vp", "config setup\n\tvirtual-private=10.0.0.0/8\n", []string{`virtual-private="10.0.0.0/8": "10.0.0.0/8": want %v4:PREFIX`}},
		{"bad version", "version 3\n", []string{`ipsec.conf:1: only version 2 is supported`}},
		{"missing include", "include nothere.conf\n", []string{`ipsec.conf:1: include nothere.conf: no such file`}},
		{"bad id", "conn a\n\tleftid=@#abc\n", []string{`leftid="@#abc": a @# key ID wants an even number of hex digits`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse("ipsec.conf", []byte(tt.conf), memSource(nil))
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v, want Errors", err)
			}
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("error %d = %q, want %q", i, errs[i].Error(), w)
				}
			}
		})
	}
}

func TestCertificateKeywords(t *testing.T) {
	cfg, err := Parse("ipsec.conf", []byte("config setup\n\tocsp-enable=yes\n\tocsp-strict=yes\n\tocsp-timeout=5\n\tocsp-method=post\n\tocsp-uri=http://ocsp.example.org/\n"+
		"conn a\n\tleftcert=gw\n\trightca=%same\n\tleftauth=eddsa\n\trightauth=secret\n\tleftsendcert=always\n\tauthby=rsa-sha2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 0 {
		t.Fatalf("warnings %v", cfg.Warnings)
	}
	s := cfg.Setup
	if !s.OCSPEnable || !s.OCSPStrict || s.OCSPTimeout != 5*time.Second || s.OCSPMethod != "post" || s.OCSPURI != "http://ocsp.example.org/" {
		t.Errorf("setup %+v", s)
	}
	c := cfg.Conn("a")
	if c.Left.Cert != "gw" || c.Right.CA != "%same" || c.Left.Auth != "eddsa" || c.Right.Auth != "secret" || c.Left.SendCert != "alwayssend" || c.AuthBy[0] != "rsa-sha2" {
		t.Errorf("conn %+v", c)
	}
}

func TestWarnings(t *testing.T) {
	cfg, err := Parse("ipsec.conf", []byte("config setup\n\tinterfaces=%defaultroute\n\tocsp-trustname=x\nconn a\n\tleftupdown=/bin/true\n\tsendca=all\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`ipsec.conf:2: config setup: interfaces="%defaultroute": obsolete keyword; ignored`,
		`ipsec.conf:3: config setup: ocsp-trustname="x": Libreswan keyword not supported by goswan yet; ignored`,
		`ipsec.conf:5: conn "a": leftupdown="/bin/true": Libreswan keyword not supported`,
		`ipsec.conf:6: conn "a": sendca="all": Libreswan keyword not supported`,
	}
	if len(cfg.Warnings) != len(want) {
		t.Fatalf("warnings %v", cfg.Warnings)
	}
	for i, w := range want {
		if !strings.Contains(cfg.Warnings[i].Error(), w) {
			t.Errorf("warning %d = %q, want %q", i, cfg.Warnings[i], w)
		}
	}
}

func TestIncludes(t *testing.T) {
	files := map[string]string{
		"/etc/ipsec.conf":        "config setup\n\tlogfile=/tmp/x\ninclude ipsec.d/*.conf\nconn last\n\talso=b\n",
		"/etc/ipsec.d/a.conf":    "conn a\n\tleft=1.1.1.1\ninclude sub/*.inc\n",
		"/etc/ipsec.d/b.conf":    "conn b\n\tleft=2.2.2.2\n",
		"/etc/ipsec.d/sub/c.inc": "conn c\n\tleft=3.3.3.3\n",
	}
	cfg, err := parse("/etc/ipsec.conf", []byte(files["/etc/ipsec.conf"]), memSource(files))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/etc/ipsec.conf", "/etc/ipsec.d/a.conf", "/etc/ipsec.d/sub/c.inc", "/etc/ipsec.d/b.conf"}
	if !reflect.DeepEqual(cfg.Files, want) {
		t.Errorf("files %v", cfg.Files)
	}
	if c := cfg.Conn("c"); c == nil || c.File != "/etc/ipsec.d/sub/c.inc" || c.Line != 1 {
		t.Errorf("c = %+v", c)
	}
	if cfg.Conn("last").Left.Host != "2.2.2.2" {
		t.Errorf("also= across files")
	}

	loop := map[string]string{
		"/x/a.conf": "include b.conf\n",
		"/x/b.conf": "include a.conf\n",
	}
	_, err = parse("/x/a.conf", []byte(loop["/x/a.conf"]), memSource(loop))
	if err == nil || !strings.Contains(err.Error(), "/x/b.conf:1: include loop: /x/a.conf -> /x/b.conf -> /x/a.conf") {
		t.Errorf("loop err = %v", err)
	}
}

func TestLoadFromDisk(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "ipsec.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "ipsec.conf"), []byte("include ipsec.d/*.conf\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "ipsec.d", "w.conf"), []byte("conn w\n\tleft=1.2.3.4\n\tright=\"5.6.7.8\"\n"), 0o644)
	cfg, err := Load(filepath.Join(dir, "ipsec.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Files) != 2 || cfg.Conn("w").Right.Host != "5.6.7.8" {
		t.Errorf("cfg %+v", cfg)
	}
	if _, err := Load(filepath.Join(dir, "missing.conf")); err == nil {
		t.Error("missing file: no error")
	}
}

func TestDurations(t *testing.T) {
	tests := []struct {
		in   string
		bare time.Duration
		want time.Duration
	}{
		{"8h", time.Second, 8 * time.Hour}, {"3600", time.Second, time.Hour}, {"1d", time.Second, 24 * time.Hour},
		{"90m", time.Second, 90 * time.Minute}, {"500ms", time.Second, 500 * time.Millisecond},
		{"30s", time.Second, 30 * time.Second}, {"500", time.Millisecond, 500 * time.Millisecond},
		{"1.5h", time.Second, 90 * time.Minute},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in, tt.bare)
		if err != nil || got != tt.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "-1s", "h", "1x", "99999999999999999999d"} {
		if _, err := parseDuration(bad, time.Second); err == nil {
			t.Errorf("parseDuration(%q): no error", bad)
		}
	}
}

func TestVirtualPrivate(t *testing.T) {
	vp, err := ParseVirtualPrivate("%v4:10.0.0.0/8,%v6:fd00::/8,%v4:!10.1.0.0/16")
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]bool{
		"10.2.3.0/24": true, "10.1.0.0/24": false, "10.0.0.0/7": false, "192.168.0.0/24": false,
		"fd00:1::/64": true, "2001:db8::/64": false, "10.0.0.0/8": false,
	}
	for p, want := range tests {
		if got := vp.Allows(netip.MustParsePrefix(p)); got != want {
			t.Errorf("Allows(%s) = %v, want %v", p, got, want)
		}
	}
	if vp.String() != "%v4:10.0.0.0/8,%v6:fd00::/8,%v4:!10.1.0.0/16" {
		t.Errorf("String = %s", vp)
	}
	for _, bad := range []string{"10.0.0.0/8", "%v4:fd00::/8", "%v5:10.0.0.0/8", "%v4:10.0.0.1/8", "%v4:junk"} {
		if _, err := ParseVirtualPrivate(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(goodConf))
	f.Add([]byte("conn a\n\talso=b\nconn b\n\talso=a\n"))
	f.Add([]byte("include *.conf\ninclude /etc/passwd\nconn x\n\tleftid=\"unterminated\n"))
	f.Add([]byte("config setup\n\tvirtual-private=%v4:!0.0.0.0/0\n conn\n\t=\n"))
	files := map[string]string{"/fuzz/a.conf": "conn inc\n\tleft=1.2.3.4\ninclude a.conf\n"}
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := parse("/fuzz/ipsec.conf", b, memSource(files))
		if cfg == nil {
			t.Fatal("nil config")
		}
		var errs Errors
		if err != nil && !errors.As(err, &errs) {
			t.Fatalf("error is %T", err)
		}
	})
}
