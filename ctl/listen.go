package ctl

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Listen creates the control socket at path and listens on it.
//
// mode is the socket's permission bits: 0 means 0600, or 0660 when group is
// given. A mode that would let others write (o+w) is refused: whoever can
// connect can stop the daemon. group, a name or a numeric gid, becomes the
// socket's group when set.
//
// An existing file at path is removed only when it is a socket that nothing
// answers on (a stale socket left by a daemon that died); a live socket or a
// file of another kind is an error.
//
// The socket is bound inside a fresh private (0700) directory next to path,
// given its mode and group there, and then linked into place, so it is never
// reachable with looser permissions than asked for. Closing the listener
// leaves the socket file in place: the daemon removes path when it exits,
// and a later Listen removes it as stale if it did not.
func Listen(path string, mode os.FileMode, group string) (net.Listener, error) {
	if mode == 0 {
		mode = 0o600
		if group != "" {
			mode = 0o660
		}
	}
	if mode&^os.ModePerm != 0 {
		return nil, fmt.Errorf("ctl: socket mode %v has bits beyond permissions", mode)
	}
	if mode&0o002 != 0 {
		return nil, fmt.Errorf("ctl: refusing to make %s world-writable (mode %#o)", path, uint32(mode))
	}
	gid := -1
	if group != "" {
		var err error
		if gid, err = lookupGroup(group); err != nil {
			return nil, err
		}
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}

	tmpdir, err := os.MkdirTemp(filepath.Dir(path), ".ctl")
	if err != nil {
		return nil, fmt.Errorf("ctl: creating %s: %w", path, err)
	}
	defer os.RemoveAll(tmpdir)
	tmp := filepath.Join(tmpdir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("ctl: listening on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		ln.Close()
		return nil, err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fail(fmt.Errorf("ctl: chmod %s: %w", path, err))
	}
	if gid >= 0 {
		if err := os.Chown(tmp, -1, gid); err != nil {
			return fail(fmt.Errorf("ctl: setting group of %s to %s: %w", path, group, err))
		}
	}
	// link(2) fails if path exists: a daemon that raced us keeps its socket.
	if err := os.Link(tmp, path); err != nil {
		return fail(fmt.Errorf("ctl: creating %s: %w", path, err))
	}
	return &unixListener{UnixListener: ln, addr: &net.UnixAddr{Name: path, Net: "unix"}}, nil
}

// unixListener reports the socket's final path as its address, not the
// private one it was bound at.
type unixListener struct {
	*net.UnixListener
	addr net.Addr
}

func (l *unixListener) Addr() net.Addr { return l.addr }

func lookupGroup(group string) (int, error) {
	if gid, err := strconv.Atoi(group); err == nil {
		if gid < 0 {
			return 0, fmt.Errorf("ctl: bad group id %d", gid)
		}
		return gid, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, fmt.Errorf("ctl: control socket group: %w", err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("ctl: group %q has non-numeric gid %q", group, g.Gid)
	}
	return gid, nil
}

// removeStale removes path if it is a socket that nothing answers on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ctl: %w", err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("ctl: %s exists and is not a socket (%v); not removing it", path, fi.Mode().Type())
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("ctl: %s is in use: another pluto answers on it", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ctl: cannot tell whether %s is stale: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ctl: removing stale %s: %w", path, err)
	}
	return nil
}
