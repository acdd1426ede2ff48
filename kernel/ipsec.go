package kernel

// The SA-install interface: the one seam between the IKE code and a data
// plane. It has the shape of strongSwan's kernel_ipsec_t and Libreswan's
// kernel_ops: SPIs, SAs, policies and events. The IKE code calls it and
// never knows which back end is behind it.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"goswan/esp"
	"goswan/proposal"
)

// IPsec is implemented by every data plane. Methods may be called from
// many goroutines at once. A method that fails leaves the back end as it
// was (an SA or policy half added is removed again).
type IPsec interface {
	// GetSPI reserves an SPI, unique on this host for proto and dst, for
	// an inbound SA from src to dst. The reservation holds until AddSA
	// installs an SA with it or DeleteSA releases it.
	GetSPI(ctx context.Context, src, dst netip.Addr, proto Proto, reqid uint32) (uint32, error)

	// AddSA installs sa. An inbound SA must use an SPI from GetSPI.
	AddSA(ctx context.Context, sa *SA) error

	// UpdateSA changes the outer addresses or the UDP encapsulation of an
	// installed SA (a NAT mapping that moved), keeping its keys, counters
	// and replay state. The SA is found by id, which holds its old
	// destination.
	UpdateSA(ctx context.Context, id SAID, sa *SA) error

	// QuerySA returns the traffic counters of an installed SA.
	QuerySA(ctx context.Context, id SAID) (SAStats, error)

	// DeleteSA removes an SA or releases a reserved SPI. Deleting one that
	// is not there returns an error wrapping ErrNotFound.
	DeleteSA(ctx context.Context, id SAID) error

	// AddPolicy installs p, or replaces the policy with the same
	// selector, direction and mark (as XFRM's update).
	AddPolicy(ctx context.Context, p *Policy) error

	// DeletePolicy removes the policy with p's selector, direction and
	// mark.
	DeletePolicy(ctx context.Context, p *Policy) error

	// Events delivers acquires and expiries. The channel is closed by
	// Close. A back end drops (and counts) events nobody reads rather
	// than blocking its data path.
	Events() <-chan Event

	// Close removes nothing the daemon installed (the daemon deletes its
	// SAs and policies first) and frees the back end's resources.
	Close() error
}

// ErrNotFound is wrapped by errors about SAs and policies that are not
// installed.
var ErrNotFound = errors.New("not found")

// Proto is the IPsec protocol of an SA.
type Proto uint8

const (
	ESP Proto = 50
	AH  Proto = 51
)

func (p Proto) String() string {
	switch p {
	case ESP:
		return "esp"
	case AH:
		return "ah"
	}
	return fmt.Sprintf("proto%d", uint8(p))
}

// Mode is tunnel or transport mode.
type Mode uint8

const (
	Tunnel Mode = iota
	Transport
)

func (m Mode) String() string {
	if m == Transport {
		return "transport"
	}
	return "tunnel"
}

// Direction says which way a policy or SA faces.
type Direction uint8

const (
	In Direction = iota
	Out
	Fwd // XFRM's forward policies, for traffic routed through this host
)

func (d Direction) String() string {
	switch d {
	case In:
		return "in"
	case Out:
		return "out"
	}
	return "fwd"
}

// Selector picks packets by addresses, protocol and ports, as an XFRM
// selector or a PF_KEY address extension does.
type (
	Selector  = esp.Selector
	PortRange = esp.PortRange
)

// SAID names an installed SA as the kernels do: destination, SPI and
// protocol.
type SAID struct {
	Dst   netip.Addr
	SPI   uint32
	Proto Proto
}

func (id SAID) String() string { return fmt.Sprintf("%s:%08x@%s", id.Proto, id.SPI, id.Dst) }

// Encap is the UDP encapsulation of an SA (RFC 3948): the ports on the
// outer UDP header, source and destination as this SA sends or receives.
type Encap struct {
	SrcPort, DstPort uint16
}

// Limits bound an SA's life; zero means no limit of that kind.
type Limits struct {
	Bytes, Packets uint64
	Time           time.Duration
}

// Lifetime holds the soft limit (rekey) and the hard one (delete).
type Lifetime struct {
	Soft, Hard Limits
}

// Mark is an XFRM mark: a packet matches when packet&Mask == Value.
type Mark struct {
	Value, Mask uint32
}

// SA is one IPsec SA: one direction of a Child SA.
type SA struct {
	SPI   uint32
	Proto Proto
	Mode  Mode
	Dir   Direction // In: we receive with it; Out: we send with it

	// Src and Dst are the outer addresses as packets of this SA carry
	// them: for an inbound SA Src is the peer.
	Src, Dst netip.Addr
	Encap    *Encap // nil: raw ESP

	Encr     proposal.EncrID
	EncrKey  []byte // for AEAD transforms: the key then the salt, as KEYMAT gives them
	Integ    proposal.IntegID
	IntegKey []byte

	ReplayWindow uint32 // 0: no anti-replay
	ESN          bool
	Lifetime     Lifetime

	// Selectors are the traffic this SA may carry, Src and Dst as the
	// inner packets of this SA carry them; an inbound SA checks what it
	// opens against them (RFC 4301 §5.2).
	Selectors []Selector

	ReqID uint32
	Mark  *Mark
	IfID  uint32 // XFRM interface id; 0: none
}

// Every reqid goswan gives out lies in one range: r&ReqIDMask == ReqIDBase.
// A kernel back end finds what an earlier run of ours left behind by it,
// and never touches SAs and policies of another daemon (Libreswan's start
// at 16384, strongSwan's at 1).
const (
	ReqIDBase uint32 = 0x67000000 // 'g'
	ReqIDMask uint32 = 0xff000000
)

// OurReqID says whether reqid is in goswan's range.
func OurReqID(reqid uint32) bool { return reqid&ReqIDMask == ReqIDBase }

// ID returns the name the back ends key sa by.
func (sa *SA) ID() SAID { return SAID{Dst: sa.Dst, SPI: sa.SPI, Proto: sa.Proto} }

// SAStats are an SA's traffic counters.
type SAStats struct {
	Bytes, Packets uint64
	LastUsed       time.Time // zero if never used
	Added          time.Time
}

// PolicyAction is what a policy does with the packets it selects.
type PolicyAction uint8

const (
	// Protect sends the packets through the SA that the template names;
	// with no such SA yet, the back end raises an Acquire (a trap).
	Protect PolicyAction = iota
	// Bypass lets the packets pass in the clear (type=passthrough).
	Bypass
	// Block drops the packets (type=drop, reject).
	Block
)

func (a PolicyAction) String() string {
	switch a {
	case Bypass:
		return "bypass"
	case Block:
		return "block"
	}
	return "protect"
}

// Template says which SA protects a policy's packets.
type Template struct {
	Src, Dst netip.Addr // the SA's outer addresses (tunnel mode)
	Proto    Proto
	Mode     Mode
	ReqID    uint32
}

// Policy is one security policy.
type Policy struct {
	Dir      Direction
	Selector Selector
	Action   PolicyAction
	Priority uint32 // lower wins, as in XFRM
	Template Template
	Mark     *Mark
	IfID     uint32
}

// EventKind says what an Event reports.
type EventKind uint8

const (
	// Acquire: a packet matched a Protect policy that has no SA yet; the
	// daemon should negotiate one (auto=ondemand).
	Acquire EventKind = iota
	// SoftExpire: an SA reached its soft limit; the daemon should rekey.
	SoftExpire
	// HardExpire: an SA reached its hard limit and is gone or unusable.
	HardExpire
)

func (k EventKind) String() string {
	switch k {
	case SoftExpire:
		return "soft-expire"
	case HardExpire:
		return "hard-expire"
	}
	return "acquire"
}

// Event is an acquire or an expiry raised by a back end.
type Event struct {
	Kind     EventKind
	SA       SAID     // the SA for expiries
	Selector Selector // the packet's selector for an acquire
	ReqID    uint32   // the policy's or SA's reqid, when known
}
