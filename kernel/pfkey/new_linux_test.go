package pfkey

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"goswan/kernel"
)

// TestNewWithoutAFKey checks the constructor's error on a kernel without
// af_key, as on the build machines: it names the back ends to use instead.
func TestNewWithoutAFKey(t *testing.T) {
	b, err := New(Config{})
	if err == nil {
		b.Close()
		t.Skip("this kernel has af_key")
	}
	t.Log(err)
	var ue *kernel.UnavailableError
	if !errors.As(err, &ue) || ue.Backend != kernel.BSDKAME {
		t.Fatalf("error %v is not a *kernel.UnavailableError for bsdkame", err)
	}
	if !errors.Is(err, unix.EAFNOSUPPORT) && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EACCES) {
		t.Skipf("socket(AF_KEY) failed otherwise: %v", err)
	}
	want := []string{"--use-xfrm", "--use-userspace", "--use-netstack"}
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		want = []string{"--use-netstack"}
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %s", err, w)
		}
	}
	if errors.Is(err, unix.EAFNOSUPPORT) && !strings.Contains(err.Error(), "no PF_KEY") {
		t.Errorf("error %q does not say the kernel has no PF_KEY", err)
	}
}
