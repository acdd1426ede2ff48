package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodSecrets = `# comment
@west @east : PSK "west-east"
192.0.2.1 %any : PSK 0x6869   # "hi"
@west : PSK 0sYm9vdA==
: PSK "fallback"
@carol
	@dave : PSK "carol dave"
"C=CH, O=Test, CN=moon" : PSK "dn"
: RSA keys/moon.key "pass phrase"
: ECDSA /abs/e.key
: XAUTH "x"
include more/*.secrets
`

func TestSecrets(t *testing.T) {
	files := map[string]string{
		"/etc/ipsec.secrets":             goodSecrets,
		"/etc/more/x.secrets":            "@x.example.com. 2001:db8::1 : PSK \"six\"\n",
		"/etc/more/bad.secrets.disabled": "junk\n",
	}
	s, err := loadSecrets("/etc/ipsec.secrets", "/etc/ipsec.d", memSource(files), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Entries) != 9 || len(s.Files) != 2 {
		t.Fatalf("entries %d files %v", len(s.Entries), s.Files)
	}
	if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0].Error(), "/etc/ipsec.secrets:11: secret kind XAUTH is not supported") {
		t.Errorf("warnings %v", s.Warnings)
	}
	if e := s.Entries[4]; e.Line != 6 || len(e.IDs) != 2 || string(e.PSK) != "carol dave" {
		t.Errorf("continuation entry %+v", e)
	}
	if e := s.Entries[6]; e.Kind != RSA || e.KeyFile != "/etc/ipsec.d/keys/moon.key" || e.Passphrase != "pass phrase" {
		t.Errorf("rsa %+v", e)
	}
	if e := s.Entries[7]; e.Kind != ECDSA || e.KeyFile != "/abs/e.key" {
		t.Errorf("ecdsa %+v", e)
	}

	tests := []struct{ local, remote, want string }{
		{"@west", "@east", "west-east"},
		{"@east", "@west", "west-east"},
		{"west", "@EAST.", "west-east"},   // identities, not strings
		{"@west", "@other", "boot"},       // local is the only ID: any peer
		{"192.0.2.1", "@anyone", "hi"},    // local + %any beats local alone
		{"@nobody", "192.0.2.1", "hi"},    // remote + %any
		{"@nobody", "@else", "fallback"},  // no IDs
		{"@carol", "@dave", "carol dave"}, // continuation line
		{"C=CH,O=Test,CN=moon", "@x", "dn"},
		{"2001:db8:0::1", "@X.EXAMPLE.COM", "six"},
	}
	for _, tt := range tests {
		got, ok := s.PSK(tt.local, tt.remote)
		if !ok || string(got) != tt.want {
			t.Errorf("PSK(%q, %q) = %q, %v; want %q", tt.local, tt.remote, got, ok, tt.want)
		}
	}
	none := &Secrets{Entries: s.Entries[:1]}
	if _, ok := none.PSK("@a", "@b"); ok {
		t.Error("PSK matched with no matching entry")
	}
}

func TestSecretsBad(t *testing.T) {
	tests := []struct{ in, want string }{
		{"@a @b PSK \"topsecret\"\n", `s:1: missing " : "`},
		{"@a : PSK topsecret\n", `s:1: PSK: the value must be "quoted", 0xHEX or 0sBASE64`},
		{"@a : PSK 0xzz\n", `s:1: PSK: bad hexadecimal value`},
		{"@a : PSK 0s!!!\n", `s:1: PSK: bad base64 value`},
		{"@a : PSK \"unterminated\n", `s:1: unterminated quoted string`},
		{"\n@a : FOO \"x\"\n", `s:2: unknown secret kind "FOO"`},
		{"  @a : PSK \"x\"\n", `s:1: indented line does not continue an entry`},
		{"@a : RSA\n", `s:1: RSA wants a key file`},
		{"include nothere\n", `s:1: /nothere: no such file`},
	}
	for _, tt := range tests {
		_, err := loadSecrets("/s", "/", memSource(map[string]string{"/s": tt.in}), false)
		var errs Errors
		if !errors.As(err, &errs) || len(errs) != 1 {
			t.Errorf("%q: err = %v", tt.in, err)
			continue
		}
		if got := errs[0].Error(); !strings.Contains(got, tt.want) {
			t.Errorf("%q: error %q, want %q", tt.in, got, tt.want)
		}
		if strings.Contains(err.Error(), "topsecret") {
			t.Errorf("%q: error shows the secret: %v", tt.in, err)
		}
	}
}

func TestSecretsPermissions(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.secrets")
	closed := filepath.Join(dir, "closed.secrets")
	os.WriteFile(open, []byte(": PSK \"a\"\n"), 0o644)
	os.WriteFile(closed, []byte(": PSK \"b\"\n"), 0o600)
	os.Chmod(open, 0o644)
	s, err := LoadSecrets(filepath.Join(dir, "*.secrets"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Entries) != 2 || len(s.Warnings) != 1 ||
		s.Warnings[0].Error() != open+": file is readable by group or others (mode 0644); it should be 0600" {
		t.Errorf("entries %d warnings %v", len(s.Entries), s.Warnings)
	}
}

func FuzzSecrets(f *testing.F) {
	f.Add([]byte(goodSecrets))
	f.Add([]byte("@a\n\t@b : PSK 0x\n: RSA {\n}\ninclude /s\n"))
	f.Add([]byte(": PSK '\n\"x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := loadSecrets("/s", "/d", memSource(map[string]string{"/s": string(b)}), false)
		if s == nil {
			t.Fatal("nil secrets")
		}
		var errs Errors
		if err != nil && !errors.As(err, &errs) {
			t.Fatalf("error is %T", err)
		}
		s.PSK("@a", "192.0.2.1")
	})
}
