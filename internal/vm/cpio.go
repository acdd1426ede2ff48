package vm

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// entry is one file of an initramfs: a regular file (data), a directory or
// a symbolic link (link).
type entry struct {
	mode fs.FileMode // permission bits plus fs.ModeDir or fs.ModeSymlink
	data []byte      // regular files
	link string      // symbolic links
}

// tree is an initramfs under construction, keyed by absolute guest path
// ("/bin/sh"). Parent directories are added on demand.
type tree map[string]*entry

func cleanGuestPath(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("guest path %q is not absolute", p)
	}
	c := path.Clean(p)
	if c == "/" {
		return "", fmt.Errorf("guest path %q names the root", p)
	}
	return c, nil
}

func (t tree) mkdirAll(dir string) {
	for d := dir; d != "/" && d != "."; d = path.Dir(d) {
		if _, ok := t[d]; ok {
			continue
		}
		t[d] = &entry{mode: fs.ModeDir | 0o755}
	}
}

func (t tree) addFile(p string, mode fs.FileMode, data []byte) {
	t.mkdirAll(path.Dir(p))
	t[p] = &entry{mode: mode.Perm(), data: data}
}

func (t tree) addSymlink(p, target string) {
	t.mkdirAll(path.Dir(p))
	t[p] = &entry{mode: fs.ModeSymlink | 0o777, link: target}
}

func (t tree) addDir(p string, perm fs.FileMode) {
	t.mkdirAll(path.Dir(p))
	t[p] = &entry{mode: fs.ModeDir | perm}
}

// writeCPIO writes t as an uncompressed cpio archive in the "newc" format
// the kernel unpacks into its initial root file system. Uncompressed on
// purpose: under TCG the guest would spend seconds in gunzip. Entries are
// sorted so that a directory always precedes what it holds; the output is
// the same for the same tree.
func (t tree) writeCPIO(w io.Writer) error {
	names := make([]string, 0, len(t))
	for n := range t {
		names = append(names, n)
	}
	sort.Strings(names) // "/a" < "/a/b": parents first
	bw := bufio.NewWriterSize(w, 1<<20)
	ino := uint32(1000)
	for _, n := range names {
		e := t[n]
		ino++
		var mode uint32
		var body []byte
		switch {
		case e.mode&fs.ModeDir != 0:
			mode = 0o040000
		case e.mode&fs.ModeSymlink != 0:
			mode = 0o120000
			body = []byte(e.link)
		default:
			mode = 0o100000
			body = e.data
		}
		mode |= uint32(e.mode.Perm())
		nlink := uint32(1)
		if e.mode&fs.ModeDir != 0 {
			nlink = 2
		}
		if err := writeCPIOEntry(bw, ino, mode, nlink, strings.TrimPrefix(n, "/"), body); err != nil {
			return err
		}
	}
	if err := writeCPIOEntry(bw, 0, 0, 1, "TRAILER!!!", nil); err != nil {
		return err
	}
	return bw.Flush()
}

func writeCPIOEntry(w io.Writer, ino, mode, nlink uint32, name string, body []byte) error {
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize, check: 13 fields of 8 hex
	// digits after the 6-byte magic, 110 bytes in all.
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, len(body), 0, 0, 0, 0, len(name)+1, 0)
	if _, err := io.WriteString(w, hdr); err != nil {
		return err
	}
	if _, err := io.WriteString(w, name+"\x00"); err != nil {
		return err
	}
	if err := pad4(w, len(hdr)+len(name)+1); err != nil {
		return err
	}
	if _, err := w.Write(body); err != nil {
		return err
	}
	return pad4(w, len(body))
}

func pad4(w io.Writer, n int) error {
	if r := n % 4; r != 0 {
		_, err := w.Write(make([]byte, 4-r))
		return err
	}
	return nil
}
