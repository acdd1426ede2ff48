package esp

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// Action is what an outbound policy does with the packets it covers.
type Action uint8

const (
	ActionProtect Action = iota + 1 // seal with Policy.SA (acquire if there is none yet)
	ActionBypass                    // send in the clear
	ActionDrop                      // discard
	ActionAcquire                   // on-demand trap: ask the daemon for an SA
)

func (a Action) String() string {
	switch a {
	case ActionProtect:
		return "protect"
	case ActionBypass:
		return "bypass"
	case ActionDrop:
		return "drop"
	case ActionAcquire:
		return "acquire"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// Policy is one outbound SPD entry.
type Policy struct {
	Selector Selector
	Action   Action
	// SA protects the packets of an ActionProtect policy. It may be set
	// and swapped (rekey) at any time with SetSA; nil turns the policy into
	// an on-demand trap when OnDemand is set, into a drop otherwise.
	sa       atomic.Pointer[SA]
	OnDemand bool
	Priority uint32 // tie-break among equally specific selectors, lower first
	seq      uint64
}

// SetSA installs (or, with nil, removes) the SA of a protect policy.
func (p *Policy) SetSA(sa *SA) { p.sa.Store(sa) }

// SA returns the policy's current SA.
func (p *Policy) SA() *SA { return p.sa.Load() }

// Result is the answer of an SPD lookup.
type Result struct {
	Action   Action // ActionProtect (SA set), ActionBypass, ActionDrop or ActionAcquire
	SA       *SA
	Policy   *Policy        // nil when no policy matched
	Selector PacketSelector // the packet's selector, for an acquire
	Reason   DropReason     // for ActionDrop and ActionAcquire
}

// SPD is the outbound security policy database. Lookup finds the most
// specific policy for a packet: the longest destination prefix first, then
// the longest source prefix, then a set protocol, then the narrowest
// ports, then Priority, then the order of Add.
//
// Index: for each address family, a hash map per destination prefix
// length that is in use, keyed by the masked prefix, holding the policies
// of that destination prefix sorted by specificity. A lookup walks the
// lengths in use from long to short (at most 33 or 129, usually a few),
// one map probe each, and scans the short list. With 10,000 host (/32)
// policies that is one probe and one comparison; nothing is allocated.
//
// Locking: lookups take a read lock, Add and Remove the write lock.
type SPD struct {
	mu       sync.RWMutex
	fam      [2]spdFamily // 0: IPv4, 1: IPv6
	n        uint64
	noMatch  Action // what to do when no policy matches: ActionDrop or ActionAcquire
	drops    dropCounters
	lookups  atomic.Uint64
	acquires atomic.Uint64
}

type spdFamily struct {
	lens []int // prefix lengths in use, longest first
	m    map[netip.Prefix][]*Policy
	cnt  map[int]int // policies per prefix length
}

// NewSPD returns an empty SPD. noMatch says what happens to a packet no
// policy covers: ActionDrop, or ActionAcquire for a daemon that starts IKE
// on demand for everything (Libreswan's %trap on a catch-all).
func NewSPD(noMatch Action) *SPD {
	if noMatch != ActionAcquire {
		noMatch = ActionDrop
	}
	return &SPD{noMatch: noMatch}
}

func famOf(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 0
	}
	return 1
}

// Add installs p. Its selector's prefixes must be of one family.
func (s *SPD) Add(p *Policy) error {
	sel := &p.Selector
	if !sel.Dst.IsValid() || !sel.Src.IsValid() || sel.Dst.Addr().Is4() != sel.Src.Addr().Is4() {
		return fmt.Errorf("esp: policy %v -> %v: prefixes missing or of two families", sel.Src, sel.Dst)
	}
	switch p.Action {
	case ActionProtect, ActionBypass, ActionDrop, ActionAcquire:
	default:
		return fmt.Errorf("esp: policy %v -> %v: unknown action %v", sel.Src, sel.Dst, p.Action)
	}
	sel.Src, sel.Dst = sel.Src.Masked(), sel.Dst.Masked()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	p.seq = s.n
	f := &s.fam[famOf(sel.Dst)]
	if f.m == nil {
		f.m = map[netip.Prefix][]*Policy{}
		f.cnt = map[int]int{}
	}
	l := append(f.m[sel.Dst], p)
	slices.SortStableFunc(l, comparePolicies)
	f.m[sel.Dst] = l
	if f.cnt[sel.Dst.Bits()]++; f.cnt[sel.Dst.Bits()] == 1 {
		f.lens = append(f.lens, sel.Dst.Bits())
		slices.Sort(f.lens)
		slices.Reverse(f.lens)
	}
	return nil
}

// Remove deletes p; false if it was not installed.
func (s *SPD) Remove(p *Policy) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &s.fam[famOf(p.Selector.Dst)]
	l := f.m[p.Selector.Dst]
	i := slices.Index(l, p)
	if i < 0 {
		return false
	}
	l = slices.Delete(slices.Clone(l), i, i+1)
	if len(l) == 0 {
		delete(f.m, p.Selector.Dst)
	} else {
		f.m[p.Selector.Dst] = l
	}
	b := p.Selector.Dst.Bits()
	if f.cnt[b]--; f.cnt[b] == 0 {
		delete(f.cnt, b)
		f.lens = slices.DeleteFunc(f.lens, func(x int) bool { return x == b })
	}
	return true
}

func comparePolicies(a, b *Policy) int {
	if d := b.Selector.Src.Bits() - a.Selector.Src.Bits(); d != 0 {
		return d
	}
	ap, bp := a.Selector.Proto != 0, b.Selector.Proto != 0
	if ap != bp {
		if ap {
			return -1
		}
		return 1
	}
	if ap {
		as, ad := a.Selector.ports()
		bs, bd := b.Selector.ports()
		if d := (as.width() + ad.width()) - (bs.width() + bd.width()); d != 0 {
			return d
		}
	}
	if a.Priority != b.Priority {
		if a.Priority < b.Priority {
			return -1
		}
		return 1
	}
	if a.seq < b.seq {
		return -1
	}
	return 1
}

// Lookup finds the policy for an outbound IP packet.
func (s *SPD) Lookup(pkt []byte) Result {
	ps, ok := ParsePacketSelector(pkt)
	if !ok {
		s.drops[DropMalformed].Add(1)
		global[DropMalformed].Add(1)
		return Result{Action: ActionDrop, Reason: DropMalformed}
	}
	return s.LookupSelector(ps)
}

// LookupSelector is Lookup for a packet already parsed.
func (s *SPD) LookupSelector(ps PacketSelector) Result {
	s.lookups.Add(1)
	r := Result{Selector: ps}
	s.mu.RLock()
	p := s.find(&ps)
	s.mu.RUnlock()
	r.Policy = p
	action := s.noMatch
	if p != nil {
		action = p.Action
		if action == ActionProtect {
			if sa := p.sa.Load(); sa != nil && !sa.Expired() {
				r.Action, r.SA = ActionProtect, sa
				return r
			}
			action = ActionDrop
			if p.OnDemand {
				action = ActionAcquire
			}
		}
	}
	switch action {
	case ActionBypass:
		r.Action = ActionBypass
	case ActionAcquire:
		r.Action, r.Reason = ActionAcquire, DropAcquire
		s.acquires.Add(1)
	default:
		r.Action, r.Reason = ActionDrop, DropPolicyDrop
		if p == nil {
			r.Reason = DropNoPolicy
		}
	}
	if r.Reason != DropNone {
		s.drops[r.Reason].Add(1)
		global[r.Reason].Add(1)
	}
	return r
}

func (s *SPD) find(ps *PacketSelector) *Policy {
	dst := ps.Dst.Unmap()
	fi := 0
	if dst.Is6() {
		fi = 1
	}
	f := &s.fam[fi]
	for _, bits := range f.lens {
		key, err := dst.Prefix(bits)
		if err != nil {
			continue
		}
		for _, p := range f.m[key] {
			if p.Selector.Matches(ps) {
				return p
			}
		}
	}
	return nil
}

// SPDCounters is a snapshot of the SPD's counters.
type SPDCounters struct {
	Lookups, Acquires uint64
	Drops             DropCounts
}

// Counters returns the SPD's counters.
func (s *SPD) Counters() SPDCounters {
	return SPDCounters{Lookups: s.lookups.Load(), Acquires: s.acquires.Load(), Drops: s.drops.snapshot()}
}

// Len returns the number of policies.
func (s *SPD) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for i := range s.fam {
		for _, l := range s.fam[i].m {
			n += len(l)
		}
	}
	return n
}
