//go:build !linux && !freebsd && !netbsd

package pfkey

// Native is nil here: OpenBSD's PF_KEY has no KAME policy extensions
// (it keys flows with SADB_X_ADDFLOW instead of SADB_X_SPDADD), macOS
// keeps its own numbers, and the other systems have no PF_KEY at all.
var Native *Layout

const afKey = -1
