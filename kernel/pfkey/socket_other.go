//go:build !linux && !freebsd && !netbsd

package pfkey

import "errors"

func openSocket() (conn, error) {
	return nil, errors.ErrUnsupported // New returns before: Native is nil
}
