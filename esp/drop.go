package esp

import (
	"fmt"
	"sync/atomic"
)

// DropReason says why the engine refused a packet. It is also the error
// that Seal, Open and the SPD return, so callers can switch on it (or use
// errors.Is) without allocating: a DropReason converts to an error for free.
type DropReason uint8

// The drop reasons. Every drop is counted once per SA (where one is known)
// and once in the package-wide counters.
const (
	DropNone        DropReason = iota
	DropNoSA                   // no SA for the SPI (or the SPI does not match the SA)
	DropShort                  // shorter than the ESP header, IV, ICV and trailer, or not a whole number of cipher blocks
	DropReplay                 // sequence number already seen or left of the window
	DropAuth                   // ICV / AEAD tag did not verify
	DropPadding                // pad length too long or padding not 1, 2, 3, ...
	DropNextHeader             // next header does not fit the mode or the inner packet
	DropPolicy                 // inner packet outside the SA's traffic selectors (RFC 4301 §5.2)
	DropExpired                // the SA passed its hard lifetime
	DropSeqOverflow            // the sequence number would wrap (RFC 4303 §3.3.3)
	DropMalformed              // inner (or transport-mode) IP header not valid
	DropDummy                  // next header 59: a TFC dummy packet, discarded by design
	DropUnsupported            // valid but not handled (IPv6 extension headers in transport mode, fragments)
	DropNoPolicy               // SPD: no policy covers an outbound packet
	DropAcquire                // SPD: on-demand policy without an SA; the daemon should start IKE
	DropPolicyDrop             // SPD: a policy says drop
	numDropReasons
)

var dropNames = [numDropReasons]string{
	DropNone:        "none",
	DropNoSA:        "no SA",
	DropShort:       "short packet",
	DropReplay:      "replay",
	DropAuth:        "authentication failed",
	DropPadding:     "bad padding",
	DropNextHeader:  "bad next header",
	DropPolicy:      "policy mismatch",
	DropExpired:     "SA expired",
	DropSeqOverflow: "sequence number overflow",
	DropMalformed:   "malformed IP packet",
	DropDummy:       "dummy packet",
	DropUnsupported: "unsupported packet",
	DropNoPolicy:    "no policy",
	DropAcquire:     "acquire",
	DropPolicyDrop:  "policy drop",
}

func (r DropReason) String() string {
	if r < numDropReasons {
		return dropNames[r]
	}
	return fmt.Sprintf("drop(%d)", uint8(r))
}

// Error makes a DropReason an error: "esp: replay".
func (r DropReason) Error() string { return "esp: " + r.String() }

// NumDropReasons is the length of DropCounts.
const NumDropReasons = int(numDropReasons)

// DropCounts holds one counter per DropReason, indexed by it.
type DropCounts [NumDropReasons]uint64

type dropCounters [numDropReasons]atomic.Uint64

func (d *dropCounters) snapshot() (c DropCounts) {
	for i := range d {
		c[i] = d[i].Load()
	}
	return c
}

// global counts every drop in the process, whether or not an SA is known.
var global dropCounters

// GlobalDrops returns the process-wide drop counters.
func GlobalDrops() DropCounts { return global.snapshot() }

func countGlobal(r DropReason) DropReason {
	global[r].Add(1)
	return r
}
