package vm

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"goswan/internal/testnet"
)

// GoBinary builds the Go main package pkg (an import path such as
// "goswan/cmd/pluto", or a directory relative to the test's package such
// as "./testdata/afkey") as a static linux/amd64 binary (CGO_ENABLED=0) for
// the guest and returns its host path, in the test's temporary directory.
// The go command's build cache makes repeated builds fast.
func GoBinary(t testing.TB, pkg string) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		if root := os.Getenv("GOROOT"); root != "" {
			goCmd = filepath.Join(root, "bin", "go")
		}
		if _, serr := os.Stat(goCmd); goCmd == "" || serr != nil {
			testnet.Unavailable(t, "vm: the go command is not on PATH (needed to build %s for the guest)", pkg)
		}
	}
	out := filepath.Join(t.TempDir(), path.Base(strings.TrimSuffix(pkg, "/")))
	cmd := exec.Command(goCmd, "build", "-trimpath", "-buildvcs=false", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("vm: go build %s: %v\n%s", pkg, err, b)
	}
	return out
}
