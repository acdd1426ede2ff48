package esp

import (
	"sync"
	"sync/atomic"
)

// replayWindow is the receiver's anti-replay window (RFC 4303 §3.4.3) kept
// as the bitmap ring of RFC 6479: bit (seq mod ringBits) says whether seq
// was received; moving the right edge only clears the words it passes.
//
// Locking. check is read-only and lock-free (atomic loads of top and one
// word), so many goroutines can pre-check before they decrypt. update, run
// only after the ICV verified, takes mu, checks again (another goroutine
// may have accepted the same number meanwhile) and sets the bit; when it
// moves the right edge it clears the passed words before it publishes the
// new top, so a reader that sees the new top never sees a stale word. A
// reader that sees the old top may let a replay through check, which
// update then refuses: check may be wrong only towards "maybe".
type replayWindow struct {
	size  uint64 // W, in packets; 0 turns replay checking off
	mask  uint64 // ringBits-1
	top   atomic.Uint64
	words []atomic.Uint64
	mu    sync.Mutex
}

func newReplayWindow(size uint32) *replayWindow {
	w := &replayWindow{size: uint64(size)}
	if size == 0 {
		return w
	}
	// One spare word so that the word holding top never shares bits with
	// the left edge (RFC 6479 §2); a power of two for masking.
	n := uint64(1)
	for n*64 < uint64(size)+64 {
		n <<= 1
	}
	w.words = make([]atomic.Uint64, n)
	w.mask = n*64 - 1
	return w
}

// check reports whether seq may be new. It never changes the window.
func (w *replayWindow) check(seq uint64) bool {
	if seq == 0 {
		return false
	}
	if w.size == 0 {
		return true
	}
	top := w.top.Load()
	if seq > top {
		return true
	}
	if top-seq >= w.size {
		return false
	}
	bit := seq & w.mask
	return w.words[bit>>6].Load()&(1<<(bit&63)) == 0
}

// update records seq as received; false if it was not new after all.
func (w *replayWindow) update(seq uint64) bool {
	if seq == 0 {
		return false
	}
	if w.size == 0 {
		for {
			top := w.top.Load()
			if seq <= top || w.top.CompareAndSwap(top, seq) {
				return true
			}
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	top := w.top.Load()
	bit := seq & w.mask
	word := &w.words[bit>>6]
	if seq > top {
		// Clear the words between top's word and seq's word.
		nwords := uint64(len(w.words))
		from, to := top>>6, seq>>6
		if to-from >= nwords {
			for i := range w.words {
				w.words[i].Store(0)
			}
		} else {
			for i := from + 1; i <= to; i++ {
				w.words[i&(nwords-1)].Store(0)
			}
		}
		word.Or(1 << (bit & 63))
		w.top.Store(seq)
		return true
	}
	if top-seq >= w.size {
		return false
	}
	m := uint64(1) << (bit & 63)
	if word.Load()&m != 0 {
		return false
	}
	word.Or(m)
	return true
}

// reset forgets everything (tests and benchmarks).
func (w *replayWindow) reset() {
	w.mu.Lock()
	for i := range w.words {
		w.words[i].Store(0)
	}
	w.top.Store(0)
	w.mu.Unlock()
}

// inferSeq returns the full 64-bit sequence number of a packet that
// carries the low 32 bits seql, given the highest authenticated number top
// and the window size w (RFC 4303 Appendix A2.1). It returns 0, which no
// packet carries, when the number would fall below zero.
func inferSeq(top uint64, w uint32, seql uint32) uint64 {
	if w == 0 {
		w = 1
	}
	th, tl := uint32(top>>32), uint32(top)
	var sh uint32
	if tl >= w-1 {
		// Case A: the window lies within one 2^32 subspace.
		if seql >= tl-w+1 {
			sh = th
		} else {
			sh = th + 1
		}
	} else {
		// Case B: the window spans two subspaces.
		if seql >= tl-w+1 { // modulo 2^32: the left part, in the previous subspace
			if th == 0 {
				return 0
			}
			sh = th - 1
		} else {
			sh = th
		}
	}
	return uint64(sh)<<32 | uint64(seql)
}
