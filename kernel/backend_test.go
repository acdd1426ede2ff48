package kernel

import (
	"errors"
	"strings"
	"testing"
)

func TestParseBackend(t *testing.T) {
	for in, want := range map[string]Backend{"xfrm": XFRM, "netkey": XFRM, "native": XFRM, "bsdkame": BSDKAME, "userspace": Userspace, "NETSTACK": Netstack} {
		got, err := ParseBackend(in)
		if err != nil || got != want {
			t.Errorf("ParseBackend(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	_, err := ParseBackend("klips")
	if err == nil || !strings.Contains(err.Error(), `"klips"`) || !strings.Contains(err.Error(), "netstack") {
		t.Errorf("ParseBackend(klips) error = %v; want one naming the value and the allowed ones", err)
	}
}

func TestUnavailableErrorNamesAlternatives(t *testing.T) {
	err := &UnavailableError{XFRM, "no ESP", []Backend{Userspace, Netstack}}
	want := "--use-xfrm cannot work here: no ESP; use --use-userspace or --use-netstack instead"
	if err.Error() != want {
		t.Errorf("got %q\nwant %q", err.Error(), want)
	}
}

// TestCheckOnThisMachine runs every probe for real. Whatever this kernel and
// these privileges allow, a refusal must be an *UnavailableError that names
// other flags, and the netstack must always pass.
func TestCheckOnThisMachine(t *testing.T) {
	if err := Check(Netstack); err != nil {
		t.Fatalf("Check(netstack) = %v; it needs nothing from the kernel", err)
	}
	for _, b := range []Backend{XFRM, BSDKAME, Userspace} {
		err := Check(b)
		t.Logf("%s: %v", b.Flag(), err)
		if err == nil {
			continue
		}
		var ue *UnavailableError
		if !errors.As(err, &ue) {
			t.Errorf("Check(%s) = %v (%T); want an *UnavailableError", b, err, err)
			continue
		}
		if len(ue.Instead) == 0 || !strings.Contains(err.Error(), "--use-netstack") {
			t.Errorf("Check(%s) = %q; it must name --use-netstack as a way out", b, err)
		}
	}
}
