package vm

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Kernel is a Debian kernel package unpacked with `dpkg -x`.
type Kernel struct {
	// Root is the directory the package was unpacked into.
	Root string
	// Version is the kernel release ("6.1.0-56-amd64"), the name of its
	// directory under lib/modules.
	Version string
	// Image is the path of the bootable image (boot/vmlinuz-VERSION).
	Image string
	// ModDir is lib/modules/VERSION under Root.
	ModDir string

	modules map[string]string // module name ("ghash_generic") -> path relative to ModDir
	builtin map[string]bool   // modules built into the image
}

// FindKernel looks for an unpacked kernel package in dir (KernelDir() when
// dir is empty). The error says what is missing and how to provide it.
func FindKernel(dir string) (*Kernel, error) {
	if dir == "" {
		dir = KernelDir()
	}
	images, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(images) == 0 {
		return nil, fmt.Errorf("no kernel image %s/boot/vmlinuz-* (%s)", dir, fetchHint)
	}
	sort.Strings(images)
	img := images[len(images)-1]
	version := strings.TrimPrefix(filepath.Base(img), "vmlinuz-")
	k := &Kernel{
		Root:    dir,
		Version: version,
		Image:   img,
		ModDir:  filepath.Join(dir, "lib", "modules", version),
		modules: map[string]string{},
		builtin: map[string]bool{},
	}
	kdir := filepath.Join(k.ModDir, "kernel")
	err := filepath.WalkDir(kdir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.HasSuffix(p, ".ko") {
			rel, _ := filepath.Rel(k.ModDir, p)
			k.modules[modName(p)] = rel
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kernel %s: listing its modules: %v (%s)", version, err, fetchHint)
	}
	if b, err := os.ReadFile(filepath.Join(k.ModDir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			k.builtin[modName(l)] = true
		}
	}
	return k, nil
}

// modName turns a module's file name or name into its canonical name:
// "kernel/crypto/ghash-generic.ko" -> "ghash_generic".
func modName(p string) string {
	return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(p), ".ko"), "-", "_")
}

// modInfo is the part of a module's .modinfo section that matters here.
type modInfo struct {
	depends []string
	aliases []string
}

func (k *Kernel) modInfo(name string) (modInfo, error) {
	f, err := elf.Open(filepath.Join(k.ModDir, k.modules[name]))
	if err != nil {
		return modInfo{}, err
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return modInfo{}, fmt.Errorf("module %s has no .modinfo section", name)
	}
	data, err := sec.Data()
	if err != nil {
		return modInfo{}, fmt.Errorf("module %s: %v", name, err)
	}
	var mi modInfo
	for _, kv := range bytes.Split(data, []byte{0}) {
		key, val, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch key {
		case "depends":
			for _, d := range strings.Split(val, ",") {
				if d != "" {
					mi.depends = append(mi.depends, modName(d))
				}
			}
		case "alias":
			mi.aliases = append(mi.aliases, val)
		}
	}
	return mi, nil
}

// moduleSet is a dependency-closed set of modules ready to be put into an
// image: the files plus the modules.dep and modules.alias that busybox's
// modprobe reads (so that modprobe and the kernel's own module autoloading,
// through /sbin/modprobe, work in the guest).
type moduleSet struct {
	names   []string // canonical names in load order (dependencies first), builtins left out
	files   map[string]string
	dep     []byte
	alias   []byte
	builtin []byte
}

// resolve computes the closure of names under "depends". Names of modules
// built into the kernel are accepted and left out; unknown names are an
// error.
func (k *Kernel) resolve(names []string) (*moduleSet, error) {
	infos := map[string]modInfo{}
	var order []string
	state := map[string]int{} // 1: visiting, 2: done
	var visit func(n string, from string) error
	visit = func(n, from string) error {
		switch state[n] {
		case 1:
			return fmt.Errorf("module dependency cycle at %s", n)
		case 2:
			return nil
		}
		if _, ok := k.modules[n]; !ok {
			if k.builtin[n] {
				state[n] = 2
				return nil
			}
			if from != "" {
				return fmt.Errorf("module %s (needed by %s) is not in kernel %s", n, from, k.Version)
			}
			return fmt.Errorf("module %s is not in kernel %s (neither as a module nor built in)", n, k.Version)
		}
		state[n] = 1
		mi, err := k.modInfo(n)
		if err != nil {
			return err
		}
		infos[n] = mi
		for _, d := range mi.depends {
			if err := visit(d, n); err != nil {
				return err
			}
		}
		state[n] = 2
		order = append(order, n)
		return nil
	}
	for _, n := range names {
		if err := visit(modName(n), ""); err != nil {
			return nil, err
		}
	}
	ms := &moduleSet{names: order, files: map[string]string{}}
	// modules.dep lists, for each module, every module it needs (all of
	// the closure), in the order modprobe must load them: the last one
	// first. closure(n) returns n's dependencies, dependencies first.
	var closure func(n string, seen map[string]bool, out *[]string)
	closure = func(n string, seen map[string]bool, out *[]string) {
		for _, d := range infos[n].depends {
			if _, ok := infos[d]; !ok || seen[d] {
				continue
			}
			seen[d] = true
			closure(d, seen, out)
			*out = append(*out, d)
		}
	}
	var dep, alias bytes.Buffer
	for _, n := range order {
		ms.files[n] = k.modules[n]
		var deps []string
		closure(n, map[string]bool{}, &deps)
		fmt.Fprintf(&dep, "%s:", k.modules[n])
		for i := len(deps) - 1; i >= 0; i-- {
			fmt.Fprintf(&dep, " %s", k.modules[deps[i]])
		}
		dep.WriteByte('\n')
		for _, a := range infos[n].aliases {
			fmt.Fprintf(&alias, "alias %s %s\n", a, n)
		}
	}
	ms.dep = dep.Bytes()
	ms.alias = alias.Bytes()
	ms.builtin, _ = os.ReadFile(filepath.Join(k.ModDir, "modules.builtin"))
	return ms, nil
}

// xzMagic starts an xz stream: Debian compresses its kernels with xz.
var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}

// bootImage returns the kernel file to hand to qemu's -kernel: the
// uncompressed vmlinux when it can be made (cached, extracted from the
// bzImage with the host's xz) and has a PVH entry point, which qemu then
// enters directly, skipping the BIOS's real-mode boot and the guest's own
// decompression (about 2.5 s under TCG); else the bzImage.
func (k *Kernel) bootImage() (string, string) {
	st, err := os.Stat(k.Image)
	if err != nil {
		return k.Image, "bzImage"
	}
	dir := writableCacheDir("kernel")
	if dir == "" {
		return k.Image, "bzImage (no writable cache directory for vmlinux)"
	}
	out := filepath.Join(dir, fmt.Sprintf("vmlinux-%s-%d-%d", k.Version, st.Size(), st.ModTime().Unix()))
	if hasPVHNote(out) {
		now := time.Now()
		_ = os.Chtimes(out, now, now)
		return out, "vmlinux (PVH, cached)"
	}
	if err := extractVmlinux(k.Image, out); err != nil {
		return k.Image, fmt.Sprintf("bzImage (no vmlinux: %v)", err)
	}
	// Drop vmlinux files of other kernels not used for a week.
	old, _ := filepath.Glob(filepath.Join(dir, "vmlinux-*"))
	for _, p := range old {
		if st, err := os.Stat(p); err == nil && p != out && time.Since(st.ModTime()) > 7*24*time.Hour {
			os.Remove(p)
		}
	}
	return out, "vmlinux (PVH, extracted)"
}

func extractVmlinux(bzImage, out string) error {
	xz, err := exec.LookPath("xz")
	if err != nil {
		return errors.New("xz not found on PATH")
	}
	data, err := os.ReadFile(bzImage)
	if err != nil {
		return err
	}
	tmp := out + fmt.Sprintf(".%d.tmp", os.Getpid())
	defer os.Remove(tmp)
	for off := 0; ; {
		i := bytes.Index(data[off:], xzMagic)
		if i < 0 {
			return fmt.Errorf("no xz stream in %s that holds a vmlinux with a PVH entry point", bzImage)
		}
		off += i
		f, err := os.Create(tmp)
		if err != nil {
			return err
		}
		cmd := exec.Command(xz, "-dc", "--single-stream")
		cmd.Stdin = bytes.NewReader(data[off:])
		cmd.Stdout = f
		err = cmd.Run()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil && hasPVHNote(tmp) {
			if err := os.Chmod(tmp, 0o644); err != nil {
				return err
			}
			return os.Rename(tmp, out)
		}
		off += len(xzMagic)
	}
}

// hasPVHNote reports whether p is an ELF kernel with the Xen
// XEN_ELFNOTE_PHYS32_ENTRY note that qemu's PVH boot needs.
func hasPVHNote(p string) bool {
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_NOTE {
			continue
		}
		b := make([]byte, prog.Filesz)
		if _, err := prog.ReadAt(b, 0); err != nil {
			continue
		}
		for len(b) >= 12 {
			namesz := int(binary.LittleEndian.Uint32(b))
			descsz := int(binary.LittleEndian.Uint32(b[4:]))
			typ := binary.LittleEndian.Uint32(b[8:])
			align4 := func(n int) int { return (n + 3) &^ 3 }
			end := 12 + align4(namesz) + align4(descsz)
			if end > len(b) || namesz > len(b)-12 {
				break
			}
			if typ == 18 && string(bytes.TrimRight(b[12:12+namesz], "\x00")) == "Xen" {
				return true
			}
			b = b[end:]
		}
	}
	return false
}
