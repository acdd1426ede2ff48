// Package vm boots Debian's own kernel under qemu (TCG) with a small
// initramfs holding test programs, for tests that need kernel features this
// machine's kernel lacks: ESP and AH in XFRM, PF_KEY.
//
// The kernel is Debian's linux-image-6.1.0-*-amd64 package, unpacked (not
// installed) with `dpkg -x` into KernelDir() (/var/cache/goswan/vm/linux;
// CI's .ci/run does that once). Build assembles an uncompressed cpio
// initramfs: busybox (static), dash as /bin/sh, iproute2's ip (with its
// shared libraries), the kernel modules asked for with their dependencies
// (and a modules.dep/modules.alias for busybox's modprobe, so the kernel's
// own module autoloading works too), an /init, and the caller's files and
// script; that takes some 50 ms. Run boots it with qemu and returns the
// console output and the script's exit status. qemu boots the kernel's
// uncompressed vmlinux through its PVH entry point with the qboot firmware
// (extracted once with xz and cached under CacheDir()/kernel): /init runs
// about 2 s after qemu starts, against 5 s for the bzImage with SeaBIOS.
//
// The guest has no network device: tests build what they need inside it
// (network namespaces, veth pairs). /init mounts proc, sys, devtmpfs and
// tmpfs on /tmp and /run, loads the modules (the RNG chain sha3_generic,
// jitterentropy_rng, drbg first: without it no `xfrm state add` works),
// brings lo up and runs the script with /bin/sh (dash) in /goswan. It then
// prints "GOSWAN-VM-EXIT <status>" and powers off.
//
// Missing prerequisites (qemu-system-x86_64, the unpacked kernel, busybox,
// dash, ip) skip the test on a developer's machine and fail it under
// CI=true. qemu needs no root.
package vm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"goswan/internal/testnet"
)

// DefaultModules are loaded at boot when Options.Modules is nil, in this
// order: the RNG chain that the kernel's crypto needs before any SA can be
// added, the ESP algorithms (AES-GCM, ChaCha20-Poly1305, AES-CBC/CTR with
// HMAC-SHA1/SHA2, ESN), ESP and XFRM for IPv4 and IPv6, veth and tun.
var DefaultModules = []string{
	"sha3_generic", "jitterentropy_rng", "drbg",
	"ctr", "gcm", "ghash_generic", "chacha20poly1305", "chacha_generic", "poly1305_generic",
	"authenc", "authencesn", "echainiv", "seqiv", "sha512_generic",
	"xfrm_user", "esp4", "esp6", "veth", "tun",
}

// AvailableModules are put into the image without being loaded when
// Options.Available is nil: the script loads them with modprobe, or the
// kernel does on first use (socket(AF_KEY) loads af_key).
var AvailableModules = []string{
	"af_key", "ah4", "ah6", "ipcomp", "ipcomp6", "xfrm_interface",
	"xfrm4_tunnel", "xfrm6_tunnel", "esp4_offload", "esp6_offload",
	"aesni_intel", "ghash_clmulni_intel", "chacha_x86_64", "poly1305_x86_64",
	"sha256_ssse3", "sha512_ssse3", "cmac", "xcbc", "md5", "sha1_generic",
}

// Options describe an image.
type Options struct {
	// Script is run by /bin/sh (dash) as root in /goswan once the guest is
	// up. Its exit status is Result.ExitCode. Write `set -e` or `set -eux`
	// as needed.
	Script string
	// Files maps absolute guest paths to host files copied into the image
	// with their permission bits, for example a static Go binary from
	// GoBinary.
	Files map[string]string
	// Data maps absolute guest paths to contents; files whose contents
	// start with "#!" are executable.
	Data map[string][]byte
	// Programs are host programs (names on PATH, or paths) copied to /bin
	// in the guest with their shared libraries, in addition to dash and
	// ip. They must run on a Debian 12 kernel with what the image holds.
	Programs []string
	// Modules are the kernel modules loaded at boot, in order (with their
	// dependencies first). Nil means DefaultModules.
	Modules []string
	// Available are more modules put into the image, not loaded. Nil means
	// AvailableModules.
	Available []string
	// MemoryMiB is the guest's memory (default 512); CPUs its processors
	// (default 2).
	MemoryMiB int
	CPUs      int
	// Append is added to the kernel command line.
	Append string
	// KernelDir is where the kernel package is unpacked; empty means
	// KernelDir().
	KernelDir string
}

// Image is an initramfs plus the kernel to boot it with, made by Build.
type Image struct {
	Kernel *Kernel
	// Initrd is the path of the initramfs (under the test's temporary
	// directory).
	Initrd string
	// Qemu is the path of qemu-system-x86_64.
	Qemu string
	// KernelFile is what qemu boots: an uncompressed vmlinux entered
	// through PVH where one could be made, else Kernel.Image.
	KernelFile string
	// BIOS is qemu's firmware: qboot (much quicker than SeaBIOS) where
	// Debian's qemu-system-data has it, else "" for qemu's default.
	BIOS string

	opts Options
}

// Result is what a boot produced.
type Result struct {
	// Output is the console output (kernel messages, /init's and the
	// script's output), with "\r\n" turned into "\n".
	Output string
	// ExitCode is the script's exit status, from the "GOSWAN-VM-EXIT"
	// line; -1 when the guest never printed one.
	ExitCode int
	// Boot is the time from starting qemu to /init's first line.
	Boot time.Duration
	// Total is the time from starting qemu to its exit.
	Total time.Duration
	// PID was qemu's process ID; the process is gone when Run returns.
	PID int
}

// ExitSentinel starts the line /init prints after the script ends; the
// script's exit status follows it.
const ExitSentinel = "GOSWAN-VM-EXIT "

// initSentinel starts the line /init prints first (with the guest's
// uptime).
const initSentinel = "GOSWAN-VM-INIT "

// qbootROM is qboot, a minimal firmware that boots in milliseconds (Debian
// package qemu-system-data, which qemu-system-x86 depends on).
const qbootROM = "/usr/share/qemu/qboot.rom"

// fetchHint says how to provide the kernel.
const fetchHint = "unpack Debian's kernel package there as .ci/run does: `apt-get download linux-image-6.1.0-NN-amd64` " +
	"(the package linux-image-amd64 depends on), then `dpkg -x` it into /var/cache/goswan/vm/linux, or set GOSWAN_VM_KERNEL"

// CacheDir is where the kernel package and the extracted vmlinux live:
// $GOSWAN_VM_CACHE, or /var/cache/goswan/vm.
func CacheDir() string {
	if d := os.Getenv("GOSWAN_VM_CACHE"); d != "" {
		return d
	}
	return "/var/cache/goswan/vm"
}

// KernelDir is where the kernel package is unpacked: $GOSWAN_VM_KERNEL, or
// CacheDir()/linux.
func KernelDir() string {
	if d := os.Getenv("GOSWAN_VM_KERNEL"); d != "" {
		return d
	}
	return filepath.Join(CacheDir(), "linux")
}

// prereqs is what Require found.
type prereqs struct {
	qemu    string
	kernel  *Kernel
	busybox string
	progs   map[string]string // guest /bin name -> host path
}

// Require ends the test through testnet.Unavailable (a skip, or a failure
// under CI=true) unless everything a VM needs is here: a linux/amd64 host,
// qemu-system-x86_64, the unpacked kernel package in KernelDir(), busybox,
// dash and ip, and the host programs named in programs. Build calls it;
// call it first when the test does costly work before Build.
func Require(t testing.TB, programs ...string) {
	t.Helper()
	require(t, "", programs)
}

func require(t testing.TB, kernelDir string, programs []string) *prereqs {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		testnet.Unavailable(t, "vm: needs a linux/amd64 host (its dash and ip are copied into the guest); this is %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	p := &prereqs{progs: map[string]string{}}
	var missing []string
	var err error
	if p.qemu, err = exec.LookPath("qemu-system-x86_64"); err != nil {
		missing = append(missing, "qemu-system-x86_64 (Debian package qemu-system-x86)")
	}
	if p.busybox, err = hostProgram("busybox"); err != nil {
		missing = append(missing, "busybox (Debian package busybox-static)")
	}
	for _, name := range append([]string{"dash", "ip"}, programs...) {
		hp, err := hostProgram(name)
		if err != nil {
			missing = append(missing, name)
			continue
		}
		p.progs[path.Base(name)] = hp
	}
	if p.kernel, err = FindKernel(kernelDir); err != nil {
		missing = append(missing, err.Error())
	}
	if len(missing) > 0 {
		testnet.Unavailable(t, "vm: missing: %s", strings.Join(missing, "; "))
	}
	return p
}

// Build makes an image from opts. It ends the test through
// testnet.Unavailable (skip, or fail under CI=true) when something Require
// checks is missing, and fails it on other errors.
func Build(t testing.TB, opts Options) *Image {
	t.Helper()
	p := require(t, opts.KernelDir, opts.Programs)
	k, qemu, busybox, progs := p.kernel, p.qemu, p.busybox, p.progs

	start := time.Now()
	load := opts.Modules
	if load == nil {
		load = DefaultModules
	}
	avail := opts.Available
	if avail == nil {
		avail = AvailableModules
	}
	ms, err := k.resolve(append(append([]string{}, load...), avail...))
	if err != nil {
		t.Fatalf("vm: %v", err)
	}
	var loadNames []string
	for _, n := range load {
		if n = modName(n); !k.builtin[n] {
			loadNames = append(loadNames, n)
		}
	}

	// Assembling the tree reads about 7 MiB and takes some 50 ms: not
	// worth a cache.
	tr, err := buildBase(k, busybox, progs, ms, loadNames)
	if err != nil {
		t.Fatalf("vm: building the initramfs: %v", err)
	}
	tr.addFile("/goswan/script", 0o755, []byte(opts.Script))
	for guest, host := range opts.Files {
		g, err := cleanGuestPath(guest)
		if err != nil {
			t.Fatalf("vm: Files: %v", err)
		}
		st, err := os.Stat(host)
		if err != nil {
			t.Fatalf("vm: Files[%s]: %v", guest, err)
		}
		data, err := os.ReadFile(host)
		if err != nil {
			t.Fatalf("vm: Files[%s]: %v", guest, err)
		}
		tr.addFile(g, st.Mode().Perm(), data)
	}
	for guest, data := range opts.Data {
		g, err := cleanGuestPath(guest)
		if err != nil {
			t.Fatalf("vm: Data: %v", err)
		}
		mode := os.FileMode(0o644)
		if bytes.HasPrefix(data, []byte("#!")) {
			mode = 0o755
		}
		tr.addFile(g, mode, data)
	}

	initrd := filepath.Join(t.TempDir(), "initrd.cpio")
	f, err := os.Create(initrd)
	if err == nil {
		err = tr.writeCPIO(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatalf("vm: writing the initramfs: %v", err)
	}
	size := int64(0)
	if st, err := os.Stat(initrd); err == nil {
		size = st.Size()
	}
	img := &Image{Kernel: k, Initrd: initrd, Qemu: qemu, opts: opts}
	var how string
	img.KernelFile, how = k.bootImage()
	if _, err := os.Stat(qbootROM); err == nil {
		img.BIOS = qbootROM
	}
	t.Logf("vm: kernel %s as %s, initramfs %.1f MiB, made in %v",
		k.Version, how, float64(size)/(1<<20), time.Since(start).Round(time.Millisecond))
	return img
}

// writableCacheDir returns a writable directory sub under CacheDir() (or,
// failing that, under the user's cache directory), or "".
func writableCacheDir(sub string) string {
	candidates := []string{filepath.Join(CacheDir(), sub)}
	if d, err := os.UserCacheDir(); err == nil {
		candidates = append(candidates, filepath.Join(d, "goswan-vm", sub))
	}
	for _, d := range candidates {
		if err := os.MkdirAll(d, 0o755); err != nil {
			continue
		}
		f, err := os.CreateTemp(d, ".probe-*")
		if err != nil {
			continue
		}
		f.Close()
		os.Remove(f.Name())
		return d
	}
	return ""
}

// buildBase assembles what every image holds: busybox, the programs, the
// modules and /init.
func buildBase(k *Kernel, busybox string, progs map[string]string, ms *moduleSet, load []string) (tree, error) {
	t := tree{}
	for _, d := range []string{"/bin", "/dev", "/proc", "/sys", "/run", "/root", "/etc", "/goswan", "/lib", "/lib64"} {
		t.addDir(d, 0o755)
	}
	t.addDir("/tmp", 0o1777)
	t.addSymlink("/sbin", "bin")
	t.addSymlink("/usr/bin", "../bin")
	t.addSymlink("/usr/sbin", "../bin")
	t.addSymlink("/var/run", "../run")
	t.addDir("/var/tmp", 0o1777)
	t.addFile("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	t.addFile("/etc/group", 0o644, []byte("root:x:0:\n"))
	t.addFile("/etc/hosts", 0o644, []byte("127.0.0.1 localhost\n::1 localhost\n"))

	// busybox and its applets, except the ones a real program replaces
	// (busybox's ip has no xfrm; /bin/sh is dash).
	if err := t.addProgram(busybox, "/bin/busybox"); err != nil {
		return nil, err
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %v", busybox, err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if _, ok := progs[applet]; ok || applet == "sh" || applet == "busybox" {
			continue
		}
		t.addSymlink("/bin/"+applet, "busybox")
	}
	for name, host := range progs {
		if err := t.addProgram(host, "/bin/"+name); err != nil {
			return nil, err
		}
	}
	t.addSymlink("/bin/sh", "dash")

	md := "/lib/modules/" + k.Version
	for _, n := range ms.names {
		data, err := os.ReadFile(filepath.Join(k.ModDir, ms.files[n]))
		if err != nil {
			return nil, err
		}
		t.addFile(md+"/"+filepath.ToSlash(ms.files[n]), 0o644, data)
	}
	t.addFile(md+"/modules.dep", 0o644, ms.dep)
	t.addFile(md+"/modules.alias", 0o644, ms.alias)
	t.addFile(md+"/modules.builtin", 0o644, ms.builtin)
	t.addFile("/goswan/modules", 0o644, []byte(strings.Join(load, "\n")+"\n"))
	t.addFile("/init", 0o755, []byte(initScript))
	return t, nil
}

// initScript is the guest's /init, run by dash.
const initScript = `#!/bin/sh
export PATH=/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
read up idle </proc/uptime
echo "` + initSentinel + `$up"
finish() {
	echo "` + ExitSentinel + `$1"
	poweroff -f
	echo o >/proc/sysrq-trigger
	exit "$1"
}
echo /sbin/modprobe >/proc/sys/kernel/modprobe
for m in $(cat /goswan/modules); do
	modprobe "$m" || { echo "goswan-vm: modprobe $m failed"; finish 255; }
done
read up idle </proc/uptime
echo "goswan-vm: modules loaded at $up"
ip link set lo up
cd /goswan
/bin/sh /goswan/script </dev/null
finish $?
`

// Run boots the image and waits for the script to end and the guest to
// power off, at most timeout in all. It returns an error, with the result
// so far, when qemu fails, the timeout passes or the guest stops without
// printing the exit sentinel; a script that fails is not an error here:
// check Result.ExitCode. The qemu process is killed (by its PID) on timeout
// and when the test ends.
func (img *Image) Run(t testing.TB, timeout time.Duration) (*Result, error) {
	t.Helper()
	mem := img.opts.MemoryMiB
	if mem == 0 {
		mem = 512
	}
	cpus := img.opts.CPUs
	if cpus == 0 {
		cpus = 2
	}
	appendArgs := "console=ttyS0 quiet panic=-1 mitigations=off"
	if img.opts.Append != "" {
		appendArgs += " " + img.opts.Append
	}
	args := []string{
		// kvm on these machines is kvm_pvm, on which Debian's kernel
		// hangs: TCG always. -erms/-fsrm make the guest's copies much
		// faster under TCG.
		"-accel", "tcg,thread=multi",
		"-cpu", "max,-erms,-fsrm",
		"-m", strconv.Itoa(mem) + "M",
		"-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-user-config",
		"-display", "none",
		"-serial", "stdio",
		"-no-reboot",
		"-kernel", img.KernelFile,
		"-initrd", img.Initrd,
		"-append", appendArgs,
	}
	if img.BIOS != "" {
		args = append([]string{"-bios", img.BIOS}, args...)
	}
	cmd := exec.Command(img.Qemu, args...)
	cmd.Stdin = nil
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw

	res := &Result{ExitCode: -1}
	var (
		mu  sync.Mutex
		out bytes.Buffer
	)
	sentinel := make(chan struct{})
	readDone := make(chan struct{})
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("vm: starting %s: %v", img.Qemu, err)
	}
	pid := cmd.Process.Pid
	res.PID = pid
	var killOnce sync.Once
	kill := func() { killOnce.Do(func() { _ = cmd.Process.Kill() }) }
	waitDone := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		pw.Close()
		waitDone <- err
	}()
	t.Cleanup(func() {
		kill()
		<-readDone
	})
	verbose := testing.Verbose()
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sawExit := false
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			mu.Lock()
			out.WriteString(line)
			out.WriteByte('\n')
			if res.Boot == 0 && strings.HasPrefix(line, initSentinel) {
				res.Boot = time.Since(start)
			}
			if rest, ok := strings.CutPrefix(line, ExitSentinel); ok && !sawExit {
				if code, err := strconv.Atoi(strings.TrimSpace(rest)); err == nil {
					res.ExitCode = code
					sawExit = true
					close(sentinel)
				}
			}
			mu.Unlock()
			if verbose {
				t.Logf("vm| %s", line)
			}
		}
		io.Copy(io.Discard, pr)
	}()

	var err error
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	select {
	case werr := <-waitDone:
		if werr != nil {
			err = fmt.Errorf("vm: qemu (pid %d) exited: %v", pid, werr)
		}
	case <-sentinel:
		// The guest powers off right after; give it a moment.
		select {
		case <-waitDone:
		case <-time.After(10 * time.Second):
			kill()
			<-waitDone
		}
	case <-deadline.C:
		kill()
		<-waitDone
		err = fmt.Errorf("vm: no exit status within %v: killed qemu (pid %d)", timeout, pid)
	}
	<-readDone
	res.Total = time.Since(start)
	mu.Lock()
	res.Output = out.String()
	mu.Unlock()
	if err == nil && res.ExitCode == -1 {
		err = errors.New("vm: the guest stopped without printing its exit status")
	}
	if err != nil {
		err = fmt.Errorf("%v; console output ends:\n%s", err, tail(res.Output, 40))
	}
	return res, err
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
