package vm

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// hostProgram finds a host program by name on PATH (or as given, when it
// contains a slash) and resolves symbolic links.
func hostProgram(name string) (string, error) {
	p := name
	if !strings.Contains(name, "/") {
		var err error
		if p, err = exec.LookPath(name); err != nil {
			return "", fmt.Errorf("program %s not found on PATH", name)
		}
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", err
	}
	return real, nil
}

// isDynamic reports whether the ELF executable at p has a program
// interpreter (is dynamically linked).
func isDynamic(p string) (bool, error) {
	f, err := elf.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return false, fmt.Errorf("%s is not an x86-64 program (%v)", p, f.Machine)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return true, nil
		}
	}
	return false, nil
}

// sharedLibs returns the shared libraries (and the program interpreter) a
// dynamically linked program needs, as `ldd` names them: absolute paths,
// which are also their paths in the guest.
func sharedLibs(p string) ([]string, error) {
	out, err := exec.Command("ldd", p).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %v: %s", p, err, strings.TrimSpace(string(out)))
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if _, after, ok := strings.Cut(line, "=> "); ok {
			line = after
		}
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "/") {
			continue // linux-vdso.so.1 and the like
		}
		libs = append(libs, f[0])
	}
	if strings.Contains(string(out), "not found") {
		return nil, fmt.Errorf("ldd %s: missing libraries:\n%s", p, out)
	}
	return libs, nil
}

// addProgram copies the host program host to guest (an absolute path), and
// its shared libraries to the paths ldd gives them.
func (t tree) addProgram(host, guest string) error {
	data, err := os.ReadFile(host)
	if err != nil {
		return err
	}
	t.addFile(guest, 0o755, data)
	dyn, err := isDynamic(host)
	if err != nil || !dyn {
		return err
	}
	libs, err := sharedLibs(host)
	if err != nil {
		return err
	}
	for _, lib := range libs {
		if _, ok := t[lib]; ok {
			continue
		}
		data, err := os.ReadFile(lib) // follows symbolic links
		if err != nil {
			return err
		}
		t.addFile(lib, 0o755, data)
	}
	return nil
}
