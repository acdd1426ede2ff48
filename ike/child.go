package ike

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"goswan/ike/crypto"
	"goswan/ike/message"
	"goswan/kernel"
)

// childSA is one Child SA: a pair of ESP SAs and their policies.
type childSA struct {
	reqid             uint32
	inSPI, outSPI     uint32
	spiDst            netip.Addr // where inSPI was reserved
	transport         bool
	localTS, remoteTS []message.TrafficSelector
	choice            espChoice
	encap             *kernel.Encap // outbound view; nil: raw ESP
	installed         bool
	inID, outID       kernel.SAID
	policies          []kernel.Policy
	created           time.Time
	offer             []message.Proposal // initiator: the SA payload sent

	// outInstalled: the outbound SA is in the kernel. A Child SA made
	// by the peer's rekey keeps its outbound SA in pendingOut (keys
	// included) until the peer deletes the SA it replaces, so that we
	// never send with an SA the peer cannot open yet (deferOut).
	outInstalled bool
	deferOut     bool
	pendingOut   *kernel.SA

	// Lifetimes (rekey.go): rekeyAt (zero: never), expireAt (zero:
	// never); softLife is the kernel's soft limit.
	rekeyAt, expireAt time.Time
	softLife          time.Duration
	rekey             *childRekey     // our CREATE_CHILD_SA rekeying this Child SA is out
	collision         *childCollision // the peer's rekey of it, answered while ours was out
	replaced          bool            // a newer Child SA took over
	successor         *childSA        // that one, when its outbound SA waits for our Delete of this one
	lingerUntil       time.Time       // a replaced Child SA goes by then, Delete or not
}

// tsContains reports whether a covers all of b.
func tsContains(a, b *message.TrafficSelector) bool {
	if a.TSType != b.TSType || !a.Start.IsValid() || !b.Start.IsValid() {
		return false
	}
	if a.IPProtocol != 0 && a.IPProtocol != b.IPProtocol {
		return false
	}
	if a.StartPort > b.StartPort || a.EndPort < b.EndPort {
		return false
	}
	return a.Start.Compare(b.Start) <= 0 && a.End.Compare(b.End) >= 0
}

// tsIntersect returns the selector covering what both a and b cover.
func tsIntersect(a, b *message.TrafficSelector) (message.TrafficSelector, bool) {
	if a.TSType != b.TSType || !a.Start.IsValid() || !b.Start.IsValid() {
		return message.TrafficSelector{}, false
	}
	r := message.TrafficSelector{TSType: a.TSType}
	switch {
	case a.IPProtocol == b.IPProtocol || b.IPProtocol == 0:
		r.IPProtocol = a.IPProtocol
	case a.IPProtocol == 0:
		r.IPProtocol = b.IPProtocol
	default:
		return r, false
	}
	r.StartPort, r.EndPort = max(a.StartPort, b.StartPort), min(a.EndPort, b.EndPort)
	if r.StartPort > r.EndPort {
		return r, false
	}
	r.Start, r.End = a.Start, a.End
	if b.Start.Compare(r.Start) > 0 {
		r.Start = b.Start
	}
	if b.End.Compare(r.End) < 0 {
		r.End = b.End
	}
	if r.Start.Compare(r.End) > 0 {
		return r, false
	}
	return r, true
}

// narrowTS is the responder's answer to the peer's selectors theirs for
// its side ours (RFC 7296 §2.9, as Libreswan): theirs as proposed when
// each is within one of ours; with narrowing the intersections; else
// nothing.
func narrowTS(ours, theirs []message.TrafficSelector, narrowing bool) ([]message.TrafficSelector, bool) {
	all := len(theirs) > 0
	for i := range theirs {
		if !isAddrRange(&theirs[i]) {
			continue // TS_SECLABEL and the like: not ours to judge
		}
		in := false
		for j := range ours {
			if tsContains(&ours[j], &theirs[i]) {
				in = true
				break
			}
		}
		if !in {
			all = false
			break
		}
	}
	if all {
		out := addrRanges(theirs)
		return out, len(out) > 0
	}
	if !narrowing {
		return nil, false
	}
	var out []message.TrafficSelector
	for i := range theirs {
		for j := range ours {
			if r, ok := tsIntersect(&ours[j], &theirs[i]); ok {
				out = append(out, r)
			}
		}
	}
	return out, len(out) > 0
}

func isAddrRange(ts *message.TrafficSelector) bool {
	return ts.TSType == message.TSIPv4AddrRange || ts.TSType == message.TSIPv6AddrRange
}

func addrRanges(ts []message.TrafficSelector) []message.TrafficSelector {
	out := make([]message.TrafficSelector, 0, len(ts))
	for i := range ts {
		if isAddrRange(&ts[i]) {
			t := ts[i]
			t.Raw = nil
			out = append(out, t)
		}
	}
	return out
}

// withinTS reports whether every selector of got is within one of ours,
// and whether they are exactly ours.
func withinTS(ours, got []message.TrafficSelector) (within, equal bool) {
	if len(got) == 0 {
		return false, false
	}
	equal = len(ours) == len(got)
	for i := range got {
		in := false
		for j := range ours {
			if tsContains(&ours[j], &got[i]) {
				in = true
				break
			}
		}
		if !in {
			return false, false
		}
		if equal && !tsEqual(&ours[i], &got[i]) {
			equal = false
		}
	}
	return true, equal
}

func tsEqual(a, b *message.TrafficSelector) bool {
	return a.TSType == b.TSType && a.IPProtocol == b.IPProtocol && a.StartPort == b.StartPort &&
		a.EndPort == b.EndPort && a.Start == b.Start && a.End == b.End
}

func tsString(ts []message.TrafficSelector) string {
	s := make([]string, len(ts))
	for i := range ts {
		s[i] = ts[i].String()
	}
	return strings.Join(s, " ")
}

// selector turns two traffic selectors into a kernel selector.
func selector(src, dst *message.TrafficSelector) (kernel.Selector, error) {
	sp, ok1 := src.Prefix()
	dp, ok2 := dst.Prefix()
	if !ok1 || !ok2 {
		return kernel.Selector{}, fmt.Errorf("traffic selectors %v -> %v are not address prefixes", src, dst)
	}
	proto := src.IPProtocol
	if proto == 0 {
		proto = dst.IPProtocol
	}
	return kernel.Selector{
		Src: sp, Dst: dp, Proto: proto,
		SrcPorts: kernel.PortRange{Lo: src.StartPort, Hi: src.EndPort},
		DstPorts: kernel.PortRange{Lo: dst.StartPort, Hi: dst.EndPort},
	}, nil
}

// selectors pairs every local selector with every remote one of the same
// family: (src, dst) as outbound packets carry them.
func selectors(local, remote []message.TrafficSelector) ([]kernel.Selector, error) {
	var out []kernel.Selector
	for i := range local {
		for j := range remote {
			if local[i].TSType != remote[j].TSType {
				continue
			}
			s, err := selector(&local[i], &remote[j])
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no pair of traffic selectors of one address family")
	}
	return out, nil
}

func mirror(ss []kernel.Selector) []kernel.Selector {
	out := make([]kernel.Selector, len(ss))
	for i, s := range ss {
		out[i] = kernel.Selector{Src: s.Dst, Dst: s.Src, Proto: s.Proto, SrcPorts: s.DstPorts, DstPorts: s.SrcPorts}
	}
	return out
}

// installChild installs c through the kernel: the inbound SA, the
// outbound SA, then the out, in and fwd policies. On failure everything
// installed is removed again.
// weInitiated says whether we started the exchange that made this Child
// SA (IKE_AUTH or CREATE_CHILD_SA): KEYMAT's first keys are for the
// exchange initiator's outbound direction (RFC 7296 §2.17), which is not
// always the IKE SA's initiator.
func (w *worker) installChild(sa *ikeSA, c *childSA, keys *crypto.ChildKeys, weInitiated bool) error {
	k := w.e.o.Kernel
	cfg := sa.conn.cfg
	local, remote := sa.local.Addr().Unmap(), sa.remote.Addr().Unmap()
	outSel, err := selectors(c.localTS, c.remoteTS)
	if err != nil {
		return err
	}
	inSel := mirror(outSel)
	mode := kernel.Tunnel
	if c.transport {
		mode = kernel.Transport
	}
	var inEncap, outEncap *kernel.Encap
	if sa.natUs || sa.natPeer || sa.conn.encapForce {
		outEncap = &kernel.Encap{SrcPort: sa.local.Port(), DstPort: sa.remote.Port()}
		inEncap = &kernel.Encap{SrcPort: sa.remote.Port(), DstPort: sa.local.Port()}
	}
	c.encap = outEncap
	var life kernel.Lifetime
	if cfg.IPsecLifetime > 0 {
		life.Hard.Time = cfg.IPsecLifetime
		life.Soft.Time = cfg.IPsecLifetime
		if c.softLife > 0 && c.softLife < cfg.IPsecLifetime {
			life.Soft.Time = c.softLife
		}
	}
	outEncr, outInteg, inEncr, inInteg := keys.EncrI, keys.IntegI, keys.EncrR, keys.IntegR
	if !weInitiated {
		outEncr, outInteg, inEncr, inInteg = inEncr, inInteg, outEncr, outInteg
	}
	var mark *kernel.Mark
	if m := cfg.Mark; m != nil && !m.Unique {
		mark = &kernel.Mark{Value: m.Value, Mask: m.Mask}
	}
	in := &kernel.SA{
		SPI: c.inSPI, Proto: kernel.ESP, Mode: mode, Dir: kernel.In,
		Src: remote, Dst: local, Encap: inEncap,
		Encr: c.choice.suite.Encr, EncrKey: inEncr, Integ: c.choice.suite.Integ, IntegKey: inInteg,
		ReplayWindow: cfg.ReplayWindow, ESN: c.choice.esn, Lifetime: life,
		Selectors: inSel, ReqID: c.reqid, Mark: mark,
	}
	out := &kernel.SA{
		SPI: c.outSPI, Proto: kernel.ESP, Mode: mode, Dir: kernel.Out,
		Src: local, Dst: remote, Encap: outEncap,
		Encr: c.choice.suite.Encr, EncrKey: outEncr, Integ: c.choice.suite.Integ, IntegKey: outInteg,
		ReplayWindow: cfg.ReplayWindow, ESN: c.choice.esn, Lifetime: life,
		Selectors: outSel, ReqID: c.reqid, Mark: mark,
	}
	if c.choice.suite.Integ == 0 {
		in.Integ, out.Integ = 0, 0
	}
	if err := k.AddSA(bg, in); err != nil {
		return fmt.Errorf("adding inbound SA %v: %w", in.ID(), err)
	}
	c.inID = in.ID()
	c.outID = out.ID()
	if c.deferOut {
		out.EncrKey, out.IntegKey = bytes.Clone(out.EncrKey), bytes.Clone(out.IntegKey)
		out.Selectors = slices.Clone(out.Selectors)
		c.pendingOut = out
	} else {
		if err := k.AddSA(bg, out); err != nil {
			k.DeleteSA(bg, c.inID)
			return fmt.Errorf("adding outbound SA %v: %w", out.ID(), err)
		}
		c.outInstalled = true
	}
	c.installed = true
	for i, s := range outSel {
		prio := policyPriority(s)
		tmplOut := kernel.Template{Src: local, Dst: remote, Proto: kernel.ESP, Mode: mode, ReqID: c.reqid}
		tmplIn := kernel.Template{Src: remote, Dst: local, Proto: kernel.ESP, Mode: mode, ReqID: c.reqid}
		ps := []kernel.Policy{
			{Dir: kernel.Out, Selector: s, Action: kernel.Protect, Priority: prio, Template: tmplOut, Mark: mark},
			{Dir: kernel.In, Selector: inSel[i], Action: kernel.Protect, Priority: prio, Template: tmplIn, Mark: mark},
		}
		if !c.transport {
			ps = append(ps, kernel.Policy{Dir: kernel.Fwd, Selector: inSel[i], Action: kernel.Protect, Priority: prio, Template: tmplIn, Mark: mark})
		}
		for _, p := range ps {
			if err := w.e.addPolicy(&p); err != nil {
				w.removeChild(sa, c)
				return fmt.Errorf("adding %v policy %v: %w", p.Dir, p.Selector, err)
			}
			c.policies = append(c.policies, p)
		}
	}
	return nil
}

// policyPriority puts more specific selectors first (lower wins).
func policyPriority(s kernel.Selector) uint32 {
	p := uint32(1<<16) - uint32(s.Src.Bits()+s.Dst.Bits())*4
	if s.Proto != 0 {
		p--
	}
	return p
}

// removeChild removes c's policies and SAs from the kernel.
func (w *worker) removeChild(sa *ikeSA, c *childSA) {
	k := w.e.o.Kernel
	warn := func(what string, err error) {
		if err != nil && !errors.Is(err, kernel.ErrNotFound) {
			w.e.log.Warnf("%s: removing %s: %v", sa.conn.name, what, err)
		}
	}
	if !sharesPolicies(sa, c) {
		for i := range c.policies {
			warn("policy", w.e.deletePolicy(&c.policies[i]))
		}
	}
	c.policies = nil
	w.wipePendingOut(c)
	if c.installed {
		if c.outInstalled {
			warn("outbound SA", k.DeleteSA(bg, c.outID))
			c.outInstalled = false
		}
		warn("inbound SA", k.DeleteSA(bg, c.inID))
		c.installed = false
		c.inSPI = 0
	} else {
		w.releaseSPI(sa, c)
	}
	if r := c.rekey; r != nil {
		c.rekey = nil
		w.releaseSPI(sa, r.child)
	}
}

// removeChildren removes every Child SA of sa, one by one, so that the
// last of those sharing a reqid (a rekeyed one and its successor) takes
// their policies with it.
func (w *worker) removeChildren(sa *ikeSA) {
	for len(sa.children) > 0 {
		c := sa.children[len(sa.children)-1]
		sa.children = sa.children[:len(sa.children)-1]
		w.removeChild(sa, c)
	}
}

func (w *worker) wipePendingOut(c *childSA) {
	if p := c.pendingOut; p != nil {
		clear(p.EncrKey)
		clear(p.IntegKey)
		c.pendingOut = nil
	}
}

// activateOut installs the outbound SA that c kept back: the peer now
// sends with c (it deleted the SA that c replaces), so it can open what
// we send with it.
func (w *worker) activateOut(sa *ikeSA, c *childSA) {
	p := c.pendingOut
	if p == nil || !c.installed {
		return
	}
	c.pendingOut = nil
	if err := w.e.o.Kernel.AddSA(bg, p); err != nil {
		w.e.log.Warnf("%s: adding outbound SA %v: %v", sa.conn.name, p.ID(), err)
	} else {
		c.outInstalled = true
		c.outID = p.ID()
	}
	clear(p.EncrKey)
	clear(p.IntegKey)
}

// sharesPolicies reports whether another Child SA of sa has c's reqid,
// and with it c's policies.
func sharesPolicies(sa *ikeSA, c *childSA) bool {
	for _, o := range sa.children {
		if o != c && o.reqid == c.reqid && len(o.policies) > 0 {
			return true
		}
	}
	return false
}

// dropChild removes c from sa and the kernel. The Child SA that replaced
// c gets its outbound SA first.
func (w *worker) dropChild(sa *ikeSA, c *childSA) {
	i := slices.Index(sa.children, c)
	if i < 0 {
		return
	}
	sa.children = slices.Delete(sa.children, i, i+1)
	if s := c.successor; s != nil {
		c.successor = nil
		w.activateOut(sa, s)
	}
	w.removeChild(sa, c)
}

// deleteChildWithPeer asks the peer to delete c (INFORMATIONAL Delete of
// our inbound SPI) and removes it here.
func (w *worker) deleteChildWithPeer(sa *ikeSA, c *childSA) {
	spi := c.inSPI
	w.dropChild(sa, c)
	if spi == 0 || !sa.keyed() {
		return
	}
	w.request(sa, &request{
		exchange:   message.INFORMATIONAL,
		payloads:   []message.Payload{&message.Delete{Protocol: message.ProtocolESP, SPIs: []uint32{spi}}},
		onResponse: func(*worker, *ikeSA, *message.Message, []message.Payload) {},
	})
}

// policyKey identifies a kernel policy as the back ends do: direction,
// selector and mark.
type policyKey struct {
	dir  kernel.Direction
	sel  kernel.Selector
	mark kernel.Mark
	has  bool
}

func keyOf(p *kernel.Policy) policyKey {
	k := policyKey{dir: p.Dir, sel: p.Selector}
	if p.Mark != nil {
		k.mark, k.has = *p.Mark, true
	}
	return k
}

// addPolicy installs p (replacing a policy with the same key, as the
// back ends do) and records that it now belongs to p's reqid.
func (e *Engine) addPolicy(p *kernel.Policy) error {
	e.policyMu.Lock()
	defer e.policyMu.Unlock()
	if err := e.o.Kernel.AddPolicy(bg, p); err != nil {
		return err
	}
	e.policyOwner[keyOf(p)] = p.Template.ReqID
	return nil
}

// deletePolicy removes p unless a newer Child SA with the same selectors
// took it over: two Child SAs of one conn (a second "up", a peer that
// restarted) share their policies' keys, and the older one's going must
// not remove the newer one's policy.
func (e *Engine) deletePolicy(p *kernel.Policy) error {
	e.policyMu.Lock()
	defer e.policyMu.Unlock()
	k := keyOf(p)
	if owner, ok := e.policyOwner[k]; ok && owner != p.Template.ReqID {
		return nil
	}
	if t, ok := e.traps[k]; ok {
		// A standing policy of the conn takes the place back.
		if err := e.o.Kernel.AddPolicy(bg, &t); err != nil {
			return err
		}
		e.policyOwner[k] = t.Template.ReqID
		return nil
	}
	delete(e.policyOwner, k)
	return e.o.Kernel.DeletePolicy(bg, p)
}
