package ctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// Client is one connection to the daemon's control socket. Its requests run
// one after another; Do is safe to call from several goroutines but they
// take turns.
type Client struct {
	mu     sync.Mutex
	conn   net.Conn
	r      *bufio.Reader
	broken error // set once the stream is out of step; later Do calls fail
}

// Dial connects to the control socket at path.
func Dial(path string) (*Client, error) {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	return NewClient(conn), nil
}

// NewClient speaks the protocol over an established connection.
func NewClient(conn net.Conn) *Client {
	return &Client{conn: conn, r: bufio.NewReader(conn)}
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Do sends req (filling in Version when zero), calls onLog (which may be
// nil) for each log line as it arrives, and returns the final result. The
// error is non-nil only when no result came: the connection failed or ctx
// was done. Cancelling ctx hangs up, which cancels the request in the
// daemon, and leaves the Client unusable.
func (c *Client) Do(ctx context.Context, req *Request, onLog func(line string)) (*Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return nil, c.broken
	}
	r := *req
	if r.Version == 0 {
		r.Version = Version
	}
	body, err := json.Marshal(&r)
	if err != nil {
		return nil, fmt.Errorf("ctl: encoding request: %w", err)
	}
	if len(body) > MaxRequestSize {
		return nil, fmt.Errorf("%w: request of %d bytes, limit %d", ErrFrameTooLarge, len(body), MaxRequestSize)
	}

	stop := context.AfterFunc(ctx, func() { c.conn.Close() })
	defer stop()
	res, err := c.exchange(appendFrame(nil, body), onLog)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		c.broken = fmt.Errorf("ctl: connection unusable after an earlier failure: %w", err)
		return nil, err
	}
	return res, nil
}

func (c *Client) exchange(frame []byte, onLog func(string)) (*Result, error) {
	if _, err := c.conn.Write(frame); err != nil {
		// The server may have answered and hung up before reading the
		// request (too many connections): its answer says more.
		if res, rerr := c.readReply(onLog); rerr == nil {
			return res, nil
		}
		return nil, fmt.Errorf("ctl: sending request: %w", opCause(err))
	}
	return c.readReply(onLog)
}

// readReply reads log messages until the result.
func (c *Client) readReply(onLog func(string)) (*Result, error) {
	for {
		b, err := readFrame(c.r, MaxReplySize)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, errors.New("ctl: pluto closed the connection before answering")
			}
			return nil, fmt.Errorf("ctl: reading reply: %w", opCause(err))
		}
		var m message
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("ctl: malformed reply: %w", err)
		}
		switch m.Type {
		case msgLog:
			if onLog != nil {
				onLog(m.Line)
			}
		case msgResult:
			if m.Result == nil {
				m.Result = &Result{}
			}
			return m.Result, nil
		default:
			// A newer server's message type (events, say): skip it.
		}
	}
}

// opCause strips a *net.OpError of the addresses it names: the socket's
// address is the path it was bound at, which says nothing to a user.
func opCause(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}
