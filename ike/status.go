package ike

import (
	"encoding/hex"
	"net/netip"
	"sort"
	"strings"
	"time"

	"goswan/kernel"
	"goswan/proposal"
)

// Status is a snapshot of the engine for ipsec status, showstates and
// trafficstatus.
type Status struct {
	Conns    []ConnStatus
	IKESAs   []IKESAStatus
	ChildSAs []ChildSAStatus
	Counters Counters
}

// ConnStatus describes a loaded conn, oriented: Local is this host.
type ConnStatus struct {
	Name              string
	Local, Remote     string // left=/right= as written (or swapped)
	LocalID, RemoteID string
	AuthBy            string // secret or null
	Type              string // tunnel or transport
	IKE, ESP          string // proposals in Libreswan's notation
	LocalTS, RemoteTS []string
	Encapsulation     string
	Narrowing         bool
}

// IKESAStatus describes one IKE SA.
type IKESAStatus struct {
	Conn              string
	SPIi, SPIr        string // hex
	Initiator         bool   // we initiated it
	State             string
	Local, Remote     netip.AddrPort // in use now
	NATUs, NATPeer    bool           // "we are behind a NAT", "the peer is behind a NAT"
	Algorithms        string         // e.g. AES_GCM_16_256-HMAC_SHA2_256-DH31
	Created           time.Time
	Age               time.Duration
	Established       time.Time // zero until IKE_AUTH completed
	Lifetime          time.Duration
	LocalID, RemoteID string
	Children          int
}

// ChildSAStatus describes one Child SA, with its traffic counters from
// the kernel.
type ChildSAStatus struct {
	Conn                    string
	IKESPIi, IKESPIr        string
	ReqID                   uint32
	SPIIn, SPIOut           uint32
	Mode                    string // tunnel or transport
	LocalTS, RemoteTS       []string
	Algorithms              string
	ESN                     bool
	Encap                   bool // UDP encapsulation (NAT-T)
	Created                 time.Time
	Age                     time.Duration
	Lifetime                time.Duration
	BytesIn, BytesOut       uint64
	PacketsIn, PacketsOut   uint64
	LastUsedIn, LastUsedOut time.Time
}

// Counters are the engine's message counters. Drops counts the datagrams
// dropped, by reason.
type Counters struct {
	Received, Sent   uint64
	Retransmits      uint64 // our requests sent again
	CachedResponses  uint64 // retransmitted requests answered from the cache
	DHOps            uint64 // key pairs made and shared secrets computed
	IKEEstablished   uint64
	ChildEstablished uint64
	Drops            map[string]uint64
}

// Status returns a snapshot of conns, SAs and counters. It is safe to call
// concurrently with everything else (but not from a Send callback).
func (e *Engine) Status() Status {
	var st Status
	now := e.now()
	for _, c := range e.connList() {
		cs := ConnStatus{
			Name: c.name, Local: c.local.Host, Remote: c.remote.Host,
			LocalID: c.localID.String(), RemoteID: c.remoteID.String(),
			AuthBy: authByString(c), Type: "tunnel",
			IKE: proposal.FormatIKE(c.ike), ESP: proposal.FormatESP(c.esp),
			Encapsulation: c.cfg.Encapsulation, Narrowing: c.narrowing,
		}
		if c.transport {
			cs.Type = "transport"
		}
		for i := range c.localTS {
			cs.LocalTS = append(cs.LocalTS, c.localTS[i].String())
		}
		for i := range c.remoteTS {
			cs.RemoteTS = append(cs.RemoteTS, c.remoteTS[i].String())
		}
		st.Conns = append(st.Conns, cs)
	}
	type query struct {
		idx     int
		in, out kernel.SAID
	}
	var queries []query
	for _, w := range e.workers {
		w.mu.Lock()
		for _, sa := range w.sas {
			is := IKESAStatus{
				Conn: sa.conn.name, SPIi: hex.EncodeToString(sa.spii[:]), SPIr: hex.EncodeToString(sa.spir[:]),
				Initiator: sa.initiator, State: sa.state.String(), Local: sa.local, Remote: sa.remote,
				NATUs: sa.natUs, NATPeer: sa.natPeer, Created: sa.created, Age: now.Sub(sa.created),
				Established: sa.established, Lifetime: sa.conn.cfg.IKELifetime,
				LocalID: sa.localID.String(), RemoteID: sa.remoteID.String(), Children: len(sa.children),
			}
			if sa.keyed() {
				is.Algorithms = sa.choice.String()
			}
			st.IKESAs = append(st.IKESAs, is)
			for _, c := range sa.children {
				cs := ChildSAStatus{
					Conn: sa.conn.name, IKESPIi: is.SPIi, IKESPIr: is.SPIr, ReqID: c.reqid,
					SPIIn: c.inSPI, SPIOut: c.outSPI, Mode: "tunnel", Algorithms: c.choice.String(),
					ESN: c.choice.esn, Encap: c.encap != nil, Created: c.created, Age: now.Sub(c.created),
					Lifetime: sa.conn.cfg.IPsecLifetime,
				}
				if c.transport {
					cs.Mode = "transport"
				}
				for i := range c.localTS {
					cs.LocalTS = append(cs.LocalTS, c.localTS[i].String())
				}
				for i := range c.remoteTS {
					cs.RemoteTS = append(cs.RemoteTS, c.remoteTS[i].String())
				}
				st.ChildSAs = append(st.ChildSAs, cs)
				if c.installed {
					queries = append(queries, query{len(st.ChildSAs) - 1, c.inID, c.outID})
				}
			}
		}
		w.mu.Unlock()
	}
	// The kernel is asked outside the workers' locks.
	for _, q := range queries {
		cs := &st.ChildSAs[q.idx]
		if s, err := e.o.Kernel.QuerySA(bg, q.in); err == nil {
			cs.BytesIn, cs.PacketsIn, cs.LastUsedIn = s.Bytes, s.Packets, s.LastUsed
		}
		if s, err := e.o.Kernel.QuerySA(bg, q.out); err == nil {
			cs.BytesOut, cs.PacketsOut, cs.LastUsedOut = s.Bytes, s.Packets, s.LastUsed
		}
	}
	sort.Slice(st.IKESAs, func(i, j int) bool {
		a, b := &st.IKESAs[i], &st.IKESAs[j]
		if a.Conn != b.Conn {
			return a.Conn < b.Conn
		}
		return a.Created.Before(b.Created) || (a.Created.Equal(b.Created) && strings.Compare(a.SPIi, b.SPIi) < 0)
	})
	sort.SliceStable(st.ChildSAs, func(i, j int) bool { return st.ChildSAs[i].Conn < st.ChildSAs[j].Conn })
	c := &e.ctr
	st.Counters = Counters{
		Received: c.received.Load(), Sent: c.sent.Load(), Retransmits: c.retransmits.Load(),
		CachedResponses: c.cachedResponses.Load(), DHOps: c.dhOps.Load(),
		IKEEstablished: c.ikeEstablished.Load(), ChildEstablished: c.childEstablished.Load(),
		Drops: map[string]uint64{},
	}
	for i := range c.drops {
		if n := c.drops[i].Load(); n > 0 {
			st.Counters.Drops[dropNames[i]] = n
		}
	}
	return st
}

// authByString is how the conn authenticates, ours then the peer's when
// they differ: "secret", "signature/secret".
func authByString(c *conn) string {
	if c.localAuth == c.remoteAuth {
		return c.localAuth.String()
	}
	return c.localAuth.String() + "/" + c.remoteAuth.String()
}
