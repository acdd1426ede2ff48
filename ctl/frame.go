package ctl

import (
	"encoding/binary"
	"fmt"
	"io"
)

// frameHeaderLen is the size of the big-endian length before each JSON
// object.
const frameHeaderLen = 4

// appendFrame appends body, prefixed with its length, to dst.
func appendFrame(dst, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	return append(dst, body...)
}

// readFrameBody reads the body of a frame whose header hdr has already been
// read. It returns ErrFrameTooLarge, without reading the body, when the
// length is over max.
func readFrameBody(r io.Reader, hdr [frameHeaderLen]byte, max int) ([]byte, error) {
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return body, nil
}

// readFrame reads one whole frame of at most max bytes of body. A clean end
// of stream before the header is io.EOF.
func readFrame(r io.Reader, max int) ([]byte, error) {
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	return readFrameBody(r, hdr, max)
}
