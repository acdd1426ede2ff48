package xfrm

// A NETLINK_XFRM request socket. One request is in flight at a time (the
// mutex); each carries a fresh sequence number and the answer is read until
// its ACK, its error or, for dumps, NLMSG_DONE. The socket asks for the
// kernel's extended ACK, whose message ("Requested AEAD algorithm not
// found") goes into the error the caller sees.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	sizeofNlmsghdr = 16
	nlmsgError     = 2 // NLMSG_ERROR
	nlmsgDone      = 3 // NLMSG_DONE

	// requestTimeout bounds the wait for an answer when the context has
	// no deadline of its own.
	requestTimeout = 10 * time.Second
)

func errnoName(e syscall.Errno) string {
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return fmt.Sprintf("errno %d", int(e))
}

type conn struct {
	mu  sync.Mutex
	fd  int
	seq uint32
	buf []byte
}

func dial() (*conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_XFRM)
	if err != nil {
		return nil, fmt.Errorf("opening an XFRM netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("binding an XFRM netlink socket: %w", err)
	}
	// Both are best effort: old kernels answer without them.
	unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	return &conn{fd: fd, seq: uint32(time.Now().UnixNano()), buf: make([]byte, 1<<18)}, nil
}

func (c *conn) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

// request sends one message of type typ with payload and returns the
// payloads of the answers of type want (for a dump: all of them). The
// error of a refused request is a *NetlinkError.
func (c *conn) request(ctx context.Context, typ uint16, flags uint16, payload []byte, want uint16) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil, errors.New("xfrm back end closed")
	}
	c.seq++
	seq := c.seq
	msg := make([]byte, sizeofNlmsghdr, sizeofNlmsghdr+len(payload))
	ne.PutUint32(msg[0:], uint32(sizeofNlmsghdr+len(payload)))
	ne.PutUint16(msg[4:], typ)
	dump := flags&unix.NLM_F_DUMP == unix.NLM_F_DUMP
	if !dump {
		flags |= unix.NLM_F_ACK // the answer ends with the ACK, or is the error
	}
	ne.PutUint16(msg[6:], flags|unix.NLM_F_REQUEST)
	ne.PutUint32(msg[8:], seq)
	msg = append(msg, payload...)

	deadline := time.Now().Add(requestTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sending to the kernel: %w", err)
	}
	var out [][]byte
	for {
		wait := time.Until(deadline)
		if wait <= 0 {
			return nil, fmt.Errorf("no answer from the kernel: %w", context.DeadlineExceeded)
		}
		tv := unix.NsecToTimeval(wait.Nanoseconds())
		unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		n, from, err := unix.Recvfrom(c.fd, c.buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			return nil, fmt.Errorf("reading from the kernel: %w", err)
		}
		if sa, ok := from.(*unix.SockaddrNetlink); ok && sa.Pid != 0 {
			continue // not from the kernel
		}
		b := c.buf[:n]
		for len(b) >= sizeofNlmsghdr {
			l := int(ne.Uint32(b[0:]))
			if l < sizeofNlmsghdr || l > len(b) {
				return nil, fmt.Errorf("malformed netlink message of %d bytes in %d", l, len(b))
			}
			mtyp := ne.Uint16(b[4:])
			mflags := ne.Uint16(b[6:])
			mseq := ne.Uint32(b[8:])
			body := b[sizeofNlmsghdr:l]
			if nl := (l + 3) &^ 3; nl < len(b) {
				b = b[nl:]
			} else {
				b = nil
			}
			if mseq != seq {
				continue
			}
			switch mtyp {
			case nlmsgError:
				if err := parseNlmsgerr(body, mflags); err != nil {
					return nil, err
				}
				if !dump {
					return out, nil
				}
			case nlmsgDone:
				if dump {
					return out, nil
				}
			default:
				if mtyp == want {
					out = append(out, append([]byte(nil), body...))
				}
			}
		}
	}
}

// parseNlmsgerr reads struct nlmsgerr (error, then the request's header,
// capped) and the extended ACK attributes after it.
func parseNlmsgerr(b []byte, flags uint16) error {
	if len(b) < 4 {
		return errors.New("short netlink error message")
	}
	code := int32(ne.Uint32(b))
	if code == 0 {
		return nil
	}
	e := &NetlinkError{Errno: unix.Errno(-code)}
	if flags&unix.NLM_F_ACK_TLVS != 0 && len(b) >= 4+sizeofNlmsghdr {
		rest := b[4:]
		if flags&unix.NLM_F_CAPPED != 0 {
			rest = rest[sizeofNlmsghdr:]
		} else {
			l := int(ne.Uint32(rest))
			if l > len(rest) {
				return e
			}
			rest = rest[align4(l):]
		}
		attrs, _ := parseAttrs(rest)
		for _, a := range attrs {
			if a.typ == unix.NLMSGERR_ATTR_MSG {
				e.Msg = cString(a.data)
			}
		}
	}
	return e
}
