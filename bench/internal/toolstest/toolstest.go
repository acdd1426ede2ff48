// Package toolstest builds the bench tools and our daemons for the tools'
// end-to-end tests and checks that a run left nothing behind.
package toolstest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"goswan/bench/lab"
	"goswan/internal/peers"
)

// Build builds the tool (a package path such as goswan/bench/cmd/tunbench)
// and, unless $GOSWAN_BENCH_BINDIR names a folder with them, pluto, ipsec
// and whack into dir. It returns the tool's path and the daemons' folder.
func Build(dir, tool string) (toolPath, binDir string, err error) {
	toolPath = filepath.Join(dir, filepath.Base(tool))
	if out, err := exec.Command("go", "build", "-o", toolPath, tool).CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("building %s: %v\n%s", tool, err, out)
	}
	if d := os.Getenv("GOSWAN_BENCH_BINDIR"); d != "" {
		return toolPath, d, nil
	}
	binDir = filepath.Join(dir, "goswan")
	if err := peers.BuildGoswan(binDir); err != nil {
		return "", "", err
	}
	return toolPath, binDir, nil
}

// Leftovers lists what a finished tool run (process pid) left: its
// namespaces, and processes whose command line mentions mark (the folder
// its temporary files are in, say).
func Leftovers(pid int, mark string) []string {
	out := lab.Leftovers(pid)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, mark) {
			st, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
			if strings.Contains(string(st), ") Z ") {
				continue // a zombie: ended, not yet reaped by its parent
			}
			out = append(out, fmt.Sprintf("pid %d: %s", p, cmd))
		}
	}
	return out
}
