// Package testnet builds small, private networks for tests: network
// namespaces joined by veth pairs, addresses on their loopback devices, and
// processes run inside them.
//
// Everything a test creates here is named uniquely for this test binary (its
// PID and a counter) and is removed through t.Cleanup, processes first and
// namespaces last, whether the test passes or fails. Processes are ended by
// their own PID only.
//
// Tests that use this package need root, iproute2's `ip` and network
// namespace support. Require checks that; without those it skips the test on
// a developer's machine and fails it under CI=true.
package testnet

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// InCI reports whether the tests run in CI (the environment variable CI is
// "true"), where a missing prerequisite is a failure rather than a skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// Unavailable ends the test because something it needs is missing: it skips
// the test, or fails it when InCI reports true. The message says what is
// missing.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("%s (CI=true, so a missing prerequisite is a failure)", msg)
	}
	t.Skipf("%s (skipping; under CI=true this fails)", msg)
}

var (
	probeOnce sync.Once
	probeErr  error
)

// Require ends the test through Unavailable unless it runs as root, `ip`
// and `unshare` are on PATH and a network namespace can be created. Extra
// names the other programs the test needs (looked up on PATH, or checked as
// paths when they contain a slash).
func Require(t testing.TB, extra ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "testnet: needs root (running as uid %d)", os.Geteuid())
	}
	var missing []string
	for _, prog := range append([]string{"ip", "unshare"}, extra...) {
		if !haveProgram(prog) {
			missing = append(missing, prog)
		}
	}
	if len(missing) > 0 {
		Unavailable(t, "testnet: missing programs: %s", strings.Join(missing, ", "))
	}
	probeOnce.Do(func() { probeErr = probeNetns() })
	if probeErr != nil {
		Unavailable(t, "testnet: no network namespace support: %v", probeErr)
	}
}

func haveProgram(prog string) bool {
	if strings.Contains(prog, "/") {
		st, err := os.Stat(prog)
		return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
	}
	_, err := exec.LookPath(prog)
	return err == nil
}

// probeNetns creates and removes one namespace of our own.
func probeNetns() error {
	name := uniqueName("probe")
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
