package ike

// Data-plane events (kernel.Event), trap policies and the conns without
// IKE (type=passthrough, drop, reject), and DoS protection with cookies.
//
// A conn with auto=ondemand gets trap policies when it is added: outbound
// Protect policies with a template and no SA, so that the first packet
// makes the data plane raise an Acquire, which HandleEvent turns into an
// Initiate (one at a time per conn). A Child SA's policies replace the
// traps (same selectors); when the last Child SA with them goes,
// deletePolicy puts the trap back instead of removing the policy.
// dpdaction=hold leaves such traps behind too. type=passthrough installs
// Bypass policies, type=drop and type=reject Block policies, both ways.

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"goswan/kernel"
)

// cookieRotation is how often the cookie secret changes.
const cookieRotation = 2 * time.Minute

// busy reports whether IKE_SA_INIT requests need a cookie now.
func (e *Engine) busy() bool {
	if e.o.ForceBusy {
		return true
	}
	return e.o.DDoSThreshold > 0 && e.halfOpenCount.Load() >= int64(e.o.DDoSThreshold)
}

// HalfOpen is the number of responder IKE SAs waiting for IKE_AUTH.
func (e *Engine) HalfOpen() int { return int(e.halfOpenCount.Load()) }

func (e *Engine) rotateCookies(now time.Time) {
	last := e.cookieRotated.Load()
	if last != 0 && now.Sub(time.Unix(0, last)) < cookieRotation {
		return
	}
	if e.cookieRotated.CompareAndSwap(last, now.UnixNano()) && last != 0 {
		if err := e.cookies.Rotate(); err != nil {
			e.log.Warnf("rotating the cookie secret: %v", err)
		}
	}
}

// HandleEvent takes an event of the data plane (kernel.IPsec.Events):
// Acquire initiates the auto=ondemand conn whose trap matched (unless it
// is being initiated already), SoftExpire rekeys the Child SA of the SA,
// HardExpire deletes it (with the peer). The daemon calls it with every
// event it reads; it must not be called from a progress callback or from
// Send.
func (e *Engine) HandleEvent(ev kernel.Event) {
	if e.closed.Load() {
		return
	}
	switch ev.Kind {
	case kernel.Acquire:
		c := e.acquireConn(ev)
		if c == nil {
			e.log.Logf("acquire for %v (reqid %d): no conn with auto=ondemand covers it", ev.Selector, ev.ReqID)
			return
		}
		e.acqMu.Lock()
		if e.acquiring[c.name] {
			e.acqMu.Unlock()
			return
		}
		e.acquiring[c.name] = true
		e.acqMu.Unlock()
		e.log.Logf("%s: acquire for %v: initiating", c.name, ev.Selector)
		name := c.name
		err := e.Initiate(name, func(p Progress) {
			if p.Done {
				e.acqMu.Lock()
				delete(e.acquiring, name)
				e.acqMu.Unlock()
			}
		})
		if err != nil {
			e.acqMu.Lock()
			delete(e.acquiring, name)
			e.acqMu.Unlock()
			e.log.Warnf("%s: acquire: %v", name, err)
		}
	case kernel.SoftExpire, kernel.HardExpire:
		e.each(func(w *worker) { w.expire(ev) })
	}
}

// acquireConn finds the conn whose trap an acquire came from.
func (e *Engine) acquireConn(ev kernel.Event) *conn {
	for _, c := range e.connList() {
		if c.ondemand && ev.ReqID != 0 && ev.ReqID == c.trapReqID {
			return c
		}
	}
	for _, c := range e.connList() {
		if !c.ondemand {
			continue
		}
		sels, err := selectors(c.localTS, c.remoteTS)
		if err != nil {
			continue
		}
		for _, s := range sels {
			if covers(s, ev.Selector) {
				return c
			}
		}
	}
	return nil
}

// covers reports whether policy selector s covers packet selector p.
func covers(s, p kernel.Selector) bool {
	if !s.Src.Contains(p.Src.Addr()) || !s.Dst.Contains(p.Dst.Addr()) {
		return false
	}
	if s.Proto != 0 && s.Proto != p.Proto {
		return false
	}
	in := func(r, x kernel.PortRange) bool { return r == (kernel.PortRange{}) || (r.Lo <= x.Lo && x.Hi <= r.Hi) }
	return in(s.SrcPorts, p.SrcPorts) && in(s.DstPorts, p.DstPorts)
}

// expire handles a soft or hard expiry of one of the shard's SAs.
func (w *worker) expire(ev kernel.Event) {
	for _, sa := range w.sas {
		for _, c := range sa.children {
			if !c.installed || (c.inID != ev.SA && c.outID != ev.SA) {
				continue
			}
			if ev.Kind == kernel.HardExpire {
				w.e.log.Logf("%s: SA %v reached its hard lifetime: deleting Child SA ESP %08x<->%08x", sa.conn.name, ev.SA, c.inSPI, c.outSPI)
				if c.replaced {
					w.dropChild(sa, c)
				} else {
					w.deleteChildWithPeer(sa, c)
				}
				return
			}
			if c.replaced || c.rekey != nil || !sa.conn.cfg.Rekey {
				return
			}
			w.e.log.Logf("%s: SA %v reached its soft lifetime: rekeying", sa.conn.name, ev.SA)
			c.rekeyAt = w.e.now()
			if sa.state == stateEstablished && sa.ikeRekey == nil && !sa.replaced {
				w.rekeyChild(sa, c, 0, 0)
			}
			return
		}
	}
}

// trapPolicies are the policies of conn c without an SA: traps for
// auto=ondemand (and dpdaction=hold), bypass or block for the types
// without IKE.
func (e *Engine) trapPolicies(c *conn, action kernel.PolicyAction) ([]kernel.Policy, error) {
	outSel, err := selectors(c.localTS, c.remoteTS)
	if err != nil {
		return nil, err
	}
	inSel := mirror(outSel)
	var mark *kernel.Mark
	if m := c.cfg.Mark; m != nil && !m.Unique {
		mark = &kernel.Mark{Value: m.Value, Mask: m.Mask}
	}
	mode := kernel.Tunnel
	if c.transport {
		mode = kernel.Transport
	}
	var ps []kernel.Policy
	for i, s := range outSel {
		prio := policyPriority(s)
		tmpl := kernel.Template{Src: c.local.Addr.Unmap(), Dst: c.remote.Addr.Unmap(), Proto: kernel.ESP, Mode: mode, ReqID: c.trapReqID}
		ps = append(ps, kernel.Policy{Dir: kernel.Out, Selector: s, Action: action, Priority: prio, Template: tmpl, Mark: mark})
		if action != kernel.Protect {
			tmpl := kernel.Template{ReqID: c.trapReqID}
			ps = append(ps, kernel.Policy{Dir: kernel.In, Selector: inSel[i], Action: action, Priority: prio, Template: tmpl, Mark: mark},
				kernel.Policy{Dir: kernel.Fwd, Selector: inSel[i], Action: action, Priority: prio, Template: tmpl, Mark: mark})
		}
	}
	return ps, nil
}

// installTraps installs ps as conn name's standing policies.
func (e *Engine) installTraps(name string, ps []kernel.Policy) error {
	e.policyMu.Lock()
	defer e.policyMu.Unlock()
	for i := range ps {
		p := &ps[i]
		k := keyOf(p)
		if _, ok := e.traps[k]; ok {
			continue
		}
		if _, busy := e.policyOwner[k]; !busy {
			if err := e.o.Kernel.AddPolicy(bg, p); err != nil {
				return fmt.Errorf("adding %v %v policy %v: %w", p.Action, p.Dir, p.Selector, err)
			}
			e.policyOwner[k] = p.Template.ReqID
		}
		e.traps[k] = *p
		e.connTraps[name] = append(e.connTraps[name], k)
	}
	return nil
}

// holdPolicies leaves traps in place of ch's outbound policies when its
// peer died with dpdaction=hold.
func (e *Engine) holdPolicies(c *conn, ch *childSA) {
	var ps []kernel.Policy
	for _, p := range ch.policies {
		if p.Dir == kernel.Out {
			p.Template.ReqID = c.trapReqID
			ps = append(ps, p)
		}
	}
	if err := e.installTraps(c.name, ps); err != nil {
		e.log.Warnf("%s: dpdaction=hold: %v", c.name, err)
	}
}

// removeTraps removes conn name's standing policies.
func (e *Engine) removeTraps(name string) {
	e.policyMu.Lock()
	defer e.policyMu.Unlock()
	for _, k := range e.connTraps[name] {
		p, ok := e.traps[k]
		if !ok {
			continue
		}
		delete(e.traps, k)
		if owner, ok := e.policyOwner[k]; ok && owner == p.Template.ReqID {
			delete(e.policyOwner, k)
			if err := e.o.Kernel.DeletePolicy(bg, &p); err != nil && !errors.Is(err, kernel.ErrNotFound) {
				e.log.Warnf("%s: removing %v policy %v: %v", name, p.Dir, p.Selector, err)
			}
		}
	}
	delete(e.connTraps, name)
}

func (e *Engine) removeAllTraps() {
	e.policyMu.Lock()
	names := make([]string, 0, len(e.connTraps))
	for n := range e.connTraps {
		names = append(names, n)
	}
	e.policyMu.Unlock()
	slices.Sort(names)
	for _, n := range names {
		e.removeTraps(n)
	}
}
