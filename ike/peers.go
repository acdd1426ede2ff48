package ike

// Peers: INITIAL_CONTACT (RFC 7296 §2.4) and uniqueids=.
//
// The engine counts the IKE SAs of each conn, from their first message
// to their end. IKE_AUTH carries INITIAL_CONTACT when the conn has no
// other, so a peer that still holds IKE SAs with us from before our
// restart drops them at once. A responder that gets INITIAL_CONTACT
// forgets (without a Delete: the peer no longer knows them) every IKE SA
// with the same peer ID that began before this one.
// With Options.UniqueIDs a new IKE SA of a conn replaces the older ones
// of the same conn and peer ID, which are deleted with the peer.

import "sync"

type peerTable struct {
	mu sync.Mutex
	n  map[string]int // IKE SAs by conn name
}

// peerUp counts sa.
func (e *Engine) peerUp(sa *ikeSA) {
	if sa.counted {
		return
	}
	sa.counted = true
	e.peers.mu.Lock()
	if e.peers.n == nil {
		e.peers.n = map[string]int{}
	}
	e.peers.n[sa.conn.name]++
	e.peers.mu.Unlock()
}

// peerGone uncounts sa.
func (e *Engine) peerGone(sa *ikeSA) {
	if !sa.counted {
		return
	}
	sa.counted = false
	e.peers.mu.Lock()
	if e.peers.n[sa.conn.name]--; e.peers.n[sa.conn.name] <= 0 {
		delete(e.peers.n, sa.conn.name)
	}
	e.peers.mu.Unlock()
}

// firstContact reports whether conn c has no IKE SA but the one asking.
func (e *Engine) firstContact(c *conn) bool {
	e.peers.mu.Lock()
	defer e.peers.mu.Unlock()
	return e.peers.n[c.name] <= 1
}

// initialContact honours the peer's INITIAL_CONTACT in sa's IKE_AUTH.
func (w *worker) initialContact(sa *ikeSA) {
	id := sa.remoteID.String()
	keep, since := sa, sa.created
	w.e.log.Logf("%s: the peer %s sent INITIAL_CONTACT: forgetting its other IKE SAs", sa.conn.name, id)
	w.broadcast(func(w *worker) {
		for _, o := range w.sas {
			if o == keep || o.state != stateEstablished || o.remoteID.String() != id || !o.created.Before(since) {
				continue
			}
			w.e.log.Logf("%s: forgetting IKE SA %s (INITIAL_CONTACT from the peer)", o.conn.name, o)
			w.forget(o, nil)
		}
	})
}

// uniqueIDs deletes the older IKE SAs of sa's conn and peer ID.
func (w *worker) uniqueIDs(sa *ikeSA) {
	id, name := sa.remoteID.String(), sa.conn.name
	keep, since := sa, sa.established
	w.broadcast(func(w *worker) {
		for _, o := range w.sas {
			if o == keep || o.state != stateEstablished || o.replaced || o.conn.name != name || o.remoteID.String() != id {
				continue
			}
			if o.established.After(since) {
				continue
			}
			w.deleteIKE(o, "replaced by a new IKE SA for the same peer ID (uniqueids)", nil, true)
		}
	})
}
