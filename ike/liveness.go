package ike

// Liveness (dpddelay=, dpdtimeout=, dpdaction=), NAT-T keep-alives and
// following a peer whose NAT mapping moved (RFC 7296 §2.4, §2.23).
//
// An established IKE SA that heard nothing from the peer for dpddelay
// first asks the data plane: an inbound SA used since then counts as
// hearing from the peer. Otherwise it sends an empty INFORMATIONAL
// request; no answer within dpdtimeout (or, without one, the conn's
// retransmit-timeout) declares the peer dead, as does any request of an
// established IKE SA that times out. Then dpdaction=clear deletes
// everything, hold (the default) leaves trap policies in place of the
// Child SAs' policies so traffic brings the tunnel up again on demand
// (HandleEvent's Acquire), and restart initiates the conn again.

import (
	"net/netip"
	"slices"
	"time"

	"goswan/ike/message"
	"goswan/kernel"
)

// liveness sends a liveness check when one is due.
func (w *worker) liveness(sa *ikeSA, now time.Time) {
	d := sa.conn.cfg.DPDDelay
	if d <= 0 || sa.out != nil || len(sa.queue) > 0 || now.Sub(sa.lastHeard) < d {
		return
	}
	for _, c := range sa.children {
		if !c.installed {
			continue
		}
		if st, err := w.e.o.Kernel.QuerySA(bg, c.inID); err == nil && st.LastUsed.After(sa.lastHeard) {
			sa.lastHeard = st.LastUsed
		}
	}
	if now.Sub(sa.lastHeard) < d {
		return
	}
	w.request(sa, &request{exchange: message.INFORMATIONAL, timeout: sa.conn.cfg.DPDTimeout,
		onResponse: func(*worker, *ikeSA, *message.Message, []message.Payload) {}})
}

// peerDead applies dpdaction= to sa, whose peer stopped answering.
func (w *worker) peerDead(sa *ikeSA, err error) {
	e := w.e
	c := sa.conn
	action := c.cfg.DPDAction
	if action == "" {
		action = "hold"
	}
	e.log.Logf("%s: the peer %v is not answering (%v): dpdaction=%s", c.name, sa.remote, err, action)
	switch action {
	case "hold":
		for _, ch := range sa.children {
			e.holdPolicies(c, ch)
		}
	case "restart":
		name := c.name
		if c.local.Addr.IsValid() && c.remote.Addr.IsValid() {
			w.later(func() {
				if err := e.Initiate(name, nil); err != nil {
					e.log.Warnf("%s: dpdaction=restart: %v", name, err)
				}
			})
		}
	}
	w.forget(sa, err)
}

// keepAlive sends a NAT-T keep-alive when sa found us behind a NAT and
// sent nothing for Options.KeepAlive.
func (w *worker) keepAlive(sa *ikeSA, now time.Time) {
	ka := w.e.o.KeepAlive
	if ka <= 0 || !sa.natUs || int(sa.local.Port()) != w.e.o.NATIKEPort || now.Sub(sa.lastSent) < ka {
		return
	}
	sa.lastSent = now
	w.e.send(Packet{Local: sa.local, Remote: sa.remote, Data: []byte{0xff}, Keepalive: true})
}

// followPeer moves sa and its Child SAs to the addresses of an
// authenticated message that came from elsewhere: the peer's NAT mapping
// changed (RFC 7296 §2.23). Only a peer behind a NAT is followed.
func (w *worker) followPeer(sa *ikeSA, local, remote netip.AddrPort) {
	if !sa.natPeer {
		return
	}
	e := w.e
	e.log.Logf("%s: the peer moved from %v to %v (NAT mapping changed): following it", sa.conn.name, sa.remote, remote)
	oldRemote := sa.remote.Addr().Unmap()
	sa.local, sa.remote = local, remote
	l, r := local.Addr().Unmap(), remote.Addr().Unmap()
	for _, c := range sa.children {
		if !c.installed {
			continue
		}
		var inEncap, outEncap *kernel.Encap
		if c.encap != nil {
			outEncap = &kernel.Encap{SrcPort: local.Port(), DstPort: remote.Port()}
			inEncap = &kernel.Encap{SrcPort: remote.Port(), DstPort: local.Port()}
			c.encap = outEncap
		}
		in := &kernel.SA{SPI: c.inSPI, Proto: kernel.ESP, Dir: kernel.In, Src: r, Dst: l, Encap: inEncap}
		if err := e.o.Kernel.UpdateSA(bg, c.inID, in); err != nil {
			e.log.Warnf("%s: moving inbound SA %v: %v", sa.conn.name, c.inID, err)
		} else {
			c.inID = in.ID()
		}
		out := &kernel.SA{SPI: c.outSPI, Proto: kernel.ESP, Dir: kernel.Out, Src: l, Dst: r, Encap: outEncap}
		switch {
		case c.pendingOut != nil:
			c.pendingOut.Src, c.pendingOut.Dst, c.pendingOut.Encap = l, r, outEncap
			c.outID = c.pendingOut.ID()
		case c.outInstalled:
			if err := e.o.Kernel.UpdateSA(bg, c.outID, out); err != nil {
				e.log.Warnf("%s: moving outbound SA %v: %v", sa.conn.name, c.outID, err)
			} else {
				c.outID = out.ID()
			}
		}
		if r != oldRemote && !c.transport {
			for i := range c.policies {
				p := &c.policies[i]
				if p.Dir == kernel.Out {
					p.Template.Dst = r
				} else {
					p.Template.Src = r
				}
				if err := e.addPolicy(p); err != nil {
					e.log.Warnf("%s: moving %v policy %v: %v", sa.conn.name, p.Dir, p.Selector, err)
				}
			}
		}
	}
}

// peerTS is what the peer may claim as its traffic selectors: the conn's
// rightsubnet=, or else its address; for a peer behind a NAT with no
// rightsubnet=, also the private networks of virtual-private= that it
// claims (tsi).
func (w *worker) peerTS(sa *ikeSA, tsi []message.TrafficSelector) []message.TrafficSelector {
	c := sa.conn
	if len(c.remoteTS) > 0 {
		return c.remoteTS
	}
	host := hostTS(sa.remote.Addr(), c.remote)
	vp := w.e.o.VirtualPrivate
	if !sa.natPeer || len(vp.Include) == 0 {
		return host
	}
	out := slices.Clone(host)
	for i := range tsi {
		if p, ok := tsi[i].Prefix(); ok && vp.Allows(p) {
			out = append(out, addrRanges(tsi[i:i+1])...)
		}
	}
	return out
}
