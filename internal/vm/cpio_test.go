package vm

import (
	"bytes"
	"io/fs"
	"strconv"
	"testing"

	"goswan/internal/testnet"
)

// readCPIO parses a newc archive (as the kernel does) into name -> entry.
func readCPIO(t *testing.T, b []byte) map[string]*entry {
	t.Helper()
	out := map[string]*entry{}
	off := 0
	field := func(i int) int {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("field %d at %d: %v", i, off, err)
		}
		return int(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("no newc header at offset %d", off)
		}
		mode, size, namesize := field(1), field(6), field(11)
		name := string(b[off+110 : off+110+namesize-1])
		dataOff := align(off + 110 + namesize)
		data := b[dataOff : dataOff+size]
		off = align(dataOff + size)
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		e := &entry{mode: fs.FileMode(mode & 0o777)}
		switch mode & 0o170000 {
		case 0o040000:
			e.mode |= fs.ModeDir
		case 0o120000:
			e.mode |= fs.ModeSymlink
			e.link = string(data)
		case 0o100000:
			e.data = data
		default:
			t.Fatalf("%s: unexpected mode %o", name, mode)
		}
		out[name] = e
	}
}

func TestCPIO(t *testing.T) {
	tr := tree{}
	tr.addFile("/bin/busybox", 0o755, []byte("12345"))
	tr.addSymlink("/bin/ls", "busybox")
	tr.addFile("/goswan/script", 0o644, []byte("abc"))
	tr.addDir("/tmp", 0o1777&0o777)
	var buf bytes.Buffer
	if err := tr.writeCPIO(&buf); err != nil {
		t.Fatal(err)
	}
	got := readCPIO(t, buf.Bytes())
	want := map[string]string{"bin": "d", "bin/busybox": "f12345", "bin/ls": "lbusybox", "goswan": "d", "goswan/script": "fabc", "tmp": "d"}
	if len(got) != len(want) {
		t.Errorf("got %d entries, want %d", len(got), len(want))
	}
	for name, w := range want {
		e, ok := got[name]
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		var g string
		switch {
		case e.mode.IsDir():
			g = "d"
		case e.mode&fs.ModeSymlink != 0:
			g = "l" + e.link
		default:
			g = "f" + string(e.data)
		}
		if g != w {
			t.Errorf("%s = %q, want %q", name, g, w)
		}
	}
	if m := got["bin/busybox"].mode.Perm(); m != 0o755 {
		t.Errorf("bin/busybox mode %o", m)
	}
	// Same tree, same bytes.
	var again bytes.Buffer
	if err := tr.writeCPIO(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("writeCPIO is not deterministic")
	}
}

func TestCleanGuestPath(t *testing.T) {
	for in, want := range map[string]string{"/a/b/../c": "/a/c", "/x/": "/x", "rel": "", "/": "", "/..": ""} {
		got, err := cleanGuestPath(in)
		if (err != nil) != (want == "") || got != want {
			t.Errorf("cleanGuestPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestResolveModules checks the dependency closure and the modules.dep it
// writes, on the unpacked kernel when there is one.
func TestResolveModules(t *testing.T) {
	k, err := FindKernel("")
	if err != nil {
		if testnet.InCI() {
			t.Fatal(err)
		}
		t.Skipf("%v (skipping; under CI=true this fails)", err)
	}
	ms, err := k.resolve([]string{"esp4", "ghash-generic", "aes_generic"})
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, n := range ms.names {
		pos[n] = i
	}
	if _, ok := pos["aes_generic"]; ok {
		t.Error("built-in aes_generic listed as a module")
	}
	for _, pair := range [][2]string{{"xfrm_algo", "esp4"}, {"gf128mul", "ghash_generic"}} {
		d, okd := pos[pair[0]]
		m, okm := pos[pair[1]]
		if !okd || !okm || d > m {
			t.Errorf("%s should come before %s in %v", pair[0], pair[1], ms.names)
		}
	}
	if !bytes.Contains(ms.dep, []byte("kernel/net/ipv4/esp4.ko: kernel/net/xfrm/xfrm_algo.ko")) {
		t.Errorf("modules.dep:\n%s", ms.dep)
	}
	if !bytes.Contains(ms.alias, []byte("alias crypto-ghash ghash_generic")) {
		t.Errorf("modules.alias lacks crypto-ghash:\n%s", ms.alias)
	}
	if _, err := k.resolve([]string{"no_such_module"}); err == nil {
		t.Error("resolve accepted an unknown module")
	}
}
