package logging

import (
	"net/netip"
	"strings"
	"testing"
)

func TestMaskAddresses(t *testing.T) {
	tests := []struct{ in, want string }{
		// IPv4
		{"packet from 192.0.2.1", "packet from <address>"},
		{"192.0.2.1", "<address>"},
		{"to 192.0.2.1.", "to <address>."},
		{"peer=192.0.2.1,", "peer=<address>,"},
		{"(192.0.2.1)", "(<address>)"},
		{"192.0.2.0/24===10.0.0.0/8", "<address>/24===<address>/8"},
		{"192.0.2.1-192.0.2.10", "<address>-<address>"},
		{"192.168.001.010 with leading zeros", "<address> with leading zeros"},
		{"1.2.3.4...5.6.7.8", "<address>...<address>"},
		{"...192.1.2.23", "...<address>"},
		{"0.0.0.0 and 255.255.255.255", "<address> and <address>"},
		// endpoints
		{"packet from 192.0.2.1:500: bad", "packet from <endpoint>: bad"},
		{"192.0.2.1:4500", "<endpoint>"},
		{"192.1.2.45:500-->192.1.2.23:500", "<endpoint>--><endpoint>"},
		{"[2001:db8::1]:500", "<endpoint>"},
		{"from [fe80::1%eth0]:4500 ok", "from <endpoint> ok"},
		{"[2001:db8::1] no port", "[<address>] no port"},
		// IPv6
		{"::1", "<address>"},
		{"listening on :: port 500", "listening on <address> port 500"},
		{"2001:db8::1", "<address>"},
		{"2001:DB8:0:0:8:800:200C:417A", "<address>"},
		{"dead:beef::1", "<address>"},
		{"fe80::1%eth0 up", "<address> up"},
		{"fe80::1%eth0.100:", "<address>:"},
		{"::ffff:192.0.2.1", "<address>"},
		{"::ffff:192.0.2.1.", "<address>."},
		{"2001:db8::/32", "<address>/32"},
		{"2001:db8:1:2::45...2001:db8:1:2::23", "<address>...<address>"},
		{"2001:db8::1, 2001:db8::2", "<address>, <address>"},
		// IPv4 held between colons of something that is not an address
		{"12:34:1.2.3.4", "12:34:<address>"},
		{"1.2.3.4:5.6.7.8", "<address>:<address>"},
		{"1:2:3:4:5:6:7:8:9.9.9.9", "<address>:<address>"},
		{"1.2.3.4%eth0", "<address>%eth0"},
		{"12%1.2.3.4", "12%<address>"},
		// kept
		{"Nov 27 04:59:00.123456: hello", "Nov 27 04:59:00.123456: hello"},
		{"12:34:56", "12:34:56"},
		{"dead:beef", "dead:beef"},
		{"deadbeef cafe 12345", "deadbeef cafe 12345"},
		{"mac 00:11:22:33:44:55", "mac 00:11:22:33:44:55"},
		{"version 5.2.1", "version 5.2.1"},
		{"oid 1.2.840.113549.1.1.11", "oid 1.2.840.113549.1.1.11"},
		{"v1.2.3.4 host1.2.3.4", "v1.2.3.4 host1.2.3.4"},
		{"Foo::Bar", "Foo::Bar"},
		{"1.2.3.4.5", "1.2.3.4.5"},
		{"256.1.1.1", "256.1.1.1"},
		{"50% done", "50% done"},
		{"SPI 0x12345678", "SPI 0x12345678"},
		{"", ""},
		{"<address> <endpoint>", "<address> <endpoint>"},
		{"ü 192.0.2.1 ü", "ü <address> ü"},
	}
	for _, tt := range tests {
		got := MaskAddresses(tt.in)
		if got != tt.want {
			t.Errorf("MaskAddresses(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if again := MaskAddresses(got); again != got {
			t.Errorf("MaskAddresses(%q) is not a fixpoint: %q", got, again)
		}
	}
}

func TestMaskAddressesNoAllocWithoutAddress(t *testing.T) {
	line := "| processing: start state #1 connection \"west\" dead:beef 04:59:00"
	n := testing.AllocsPerRun(100, func() { MaskAddresses(line) })
	if n != 0 {
		t.Errorf("MaskAddresses allocated %v times on a line without addresses", n)
	}
}

func TestMaskAddressesLinear(t *testing.T) {
	// pathological runs must not go quadratic; with 64 KiB of them this
	// would take seconds if they did.
	for _, unit := range []string{"1.1.1.1:", "1:", ".", ":", "a", "1.1.1.1..", "::1:"} {
		line := strings.Repeat(unit, 65536/len(unit))
		out := MaskAddresses(line)
		if MaskAddresses(out) != out {
			t.Errorf("not a fixpoint for %q repeated", unit)
		}
	}
}

// tokens are the maximal runs of address characters in s that do not
// touch a word character: an independent, simpler reading of the
// contract than the masker's.
func tokens(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		if !isAddrChar(s[i]) {
			i++
			continue
		}
		start := i
		for i < len(s) && isAddrChar(s[i]) {
			i++
		}
		if start > 0 && isWordChar(s[start-1]) || i < len(s) && isWordChar(s[i]) {
			continue
		}
		out = append(out, s[start:i])
	}
	return out
}

func parses(tok string) bool {
	if _, err := netip.ParseAddr(tok); err == nil {
		return true
	}
	_, err := netip.ParseAddrPort(tok)
	return err == nil
}

func FuzzMaskAddresses(f *testing.F) {
	for _, s := range []string{
		"packet from 192.0.2.1:500: bad",
		"[2001:db8::1]:500 fe80::1%eth0 ::ffff:1.2.3.4",
		"Nov 27 04:59:00.123456: 12:34:56 dead:beef dead:beef::1",
		"1.2.3.4...5.6.7.8 12:34:1.2.3.4 1:2:3:4:5:6:7:8:9.9.9.9",
		"[fe80::1%eth0]:4500 12%1.2.3.4 1.2.3.4%eth0",
		"::", ":::", "[::]:0", "%", "[", "]:1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 4096 {
			return
		}
		out := MaskAddresses(s)
		if again := MaskAddresses(out); again != out {
			t.Fatalf("not a fixpoint:\n in  %q\n out %q\n again %q", s, out, again)
		}
		outTokens := map[string]bool{}
		for _, tok := range tokens(out) {
			outTokens[tok] = true
			if parses(tok) {
				t.Fatalf("output token %q parses as an address:\n in  %q\n out %q", tok, s, out)
			}
		}
		for _, tok := range tokens(s) {
			if parses(tok) && outTokens[tok] {
				t.Fatalf("address %q survived:\n in  %q\n out %q", tok, s, out)
			}
		}
	})
}

func BenchmarkMaskAddresses(b *testing.B) {
	for _, bc := range []struct{ name, line string }{
		{"none", `"westnet-eastnet"[1] #2: sent IKE_AUTH request; dead:beef 04:59:00 0x1234abcd`},
		{"some", `"westnet-eastnet"[1] 192.1.2.23 #2: initiating IKE_SA_INIT to 192.1.2.23:500 from [2001:db8::45]:4500`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.line)))
			for b.Loop() {
				MaskAddresses(bc.line)
			}
		})
	}
}
