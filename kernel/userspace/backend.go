// Package userspace is the data plane in this process: the kernel.IPsec
// back end that moves packets between a packet device (a kernel TUN or a
// gVisor netstack, package tun) and ESP-in-UDP datagrams (RFC 3948) sent
// and received on the daemon's NAT-T socket, or raw ESP (IP protocol 50)
// on a raw socket of the daemon's when Config.SendRawESP is set (SAs
// without UDP encapsulation: out through SendRawESP, in through
// DeliverRawESP), with the engine of package esp doing the cryptography.
//
// # Flow
//
// Outbound (device → network), one goroutine, outbound.go: Read a batch of
// packets from the device into fixed buffers, each packet at offset
// headroom; for each, SPD.Lookup; Protect: runs of packets of one SA get
// consecutive sequence numbers (esp.SA.ReserveSeq), are sealed in place
// (SealSeq: the ESP header goes into the headroom, so nothing is copied)
// and go to Config.SendESPBatch (UDP GSO) or SendESP from the SA's outer
// addresses and encapsulation ports; Acquire: raise kernel.Acquire
// at most once per policy per AcquireInterval and drop; Bypass, Block, no
// policy: drop and count (a TUN has no clear path out).
//
// Bypass out-policies (type=passthrough) therefore keep their traffic out
// of the device instead: with Config.AddBypassRoute the back end asks for
// a route to each one's destination prefix that leads where the host would
// send it without the device's routes (a kernel TUN copies its best other
// route, (*tun.KernelTUN).AddBypassRoute), so it is more specific than the
// tunnel route it punches through and the packets never reach the device.
//
// Inbound (network → device), inbound.go: DeliverESP, called on the
// socket's reading goroutine, opens the datagram with the SA its SPI names
// (SADB.Open: replay, ICV, the RFC 4301 §5.2 selector check) into a pooled
// buffer and writes the inner packet to the device before it returns, so
// packets reach the device in the order they arrived. DeliverESPBatch
// (the NAT-T socket's OnESPBatch: recvmmsg and UDP GRO) does the same for
// a batch and writes it to the device in one call, which a kernel TUN
// coalesces (GRO). Config.InboundWorkers
// turns on a pipeline instead (queue, open worker, batching writer).
//
// Transport mode (transport.go) needs Config.AddHostRoute: the host's own
// packets to the peer are routed into the device while the daemon's IKE
// and ESP-in-UDP datagrams to the same address pass by; the back end
// frames the engine's transport-mode output and input as ESP in UDP.
// Without the hook (a netstack) transport-mode SAs are refused.
//
// # Locking
//
// The packet paths take no lock of the back end: the SADB and the map from
// an outbound esp.SA to its outer addresses are copy-on-write behind atomic
// pointers, the SPD has its own read lock, and a policy's SA is an atomic
// pointer. mu guards the control state (SAs, policies, reserved SPIs,
// routes) that the kernel.IPsec methods change; packet paths take it only
// to raise an event. acqMu guards the acquire rate limiter.
package userspace

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"goswan/esp"
	"goswan/kernel"
	"goswan/tun"
)

// Config is what New needs.
type Config struct {
	// Device is the packet device; the Backend reads it from New on and
	// closes it in Close.
	Device tun.Device

	// SendESP sends one ESP packet (SPI to ICV) in a UDP datagram from
	// local to remote: the daemon wires it to (*socket.Sockets).SendESP.
	// It is called on the Backend's reader goroutine and must not keep
	// pkt after it returns.
	SendESP func(local, remote netip.AddrPort, pkt []byte) error

	// SendESPBatch, when set, is used instead of SendESP: it sends the
	// ESP packets of one SA, in order, from local to remote; the daemon
	// wires it to (*socket.Sockets).SendESPBatch (UDP GSO). Same rules
	// as SendESP: called on the Backend's reader goroutine, must not keep
	// pkts or the packets after it returns.
	SendESPBatch func(local, remote netip.AddrPort, pkts [][]byte) error

	// SendRawESP, when set, lets the back end carry SAs without UDP
	// encapsulation: it sends one ESP packet (SPI to ICV) from local to
	// remote as IP protocol 50 (the daemon wires it to
	// (*socket.RawESP).Send, a raw socket that needs CAP_NET_RAW), and
	// received raw ESP comes in through DeliverRawESP. Same rules as
	// SendESP. Without it SAs without UDP encapsulation are refused.
	SendRawESP func(local, remote netip.Addr, pkt []byte) error

	// Logf logs; nil is silent.
	Logf func(format string, args ...any)

	// MTU is the largest inner packet the device hands over; 0 takes
	// Device.MTU(). It sizes the packet buffers.
	MTU int

	// AddRoute and DeleteRoute, when set, are called with the destination
	// prefix of the first and after the last outbound Protect policy for
	// it, so that a kernel TUN gets the remote subnets routed into it
	// ((*tun.KernelTUN).AddRoute). A netstack needs none.
	AddRoute, DeleteRoute func(netip.Prefix) error

	// AddBypassRoute and DeleteBypassRoute, when set, are called with the
	// destination prefix of the first and after the last outbound Bypass
	// policy for it (type=passthrough), and must route that prefix past
	// the device, the way the host would without the device's routes
	// ((*tun.KernelTUN).AddBypassRoute): what a TUN receives it cannot
	// send in the clear. A failure is logged, not returned (the policy is
	// installed; its packets that still reach the device are dropped and
	// counted in OutBypass). When both are nil and Device has such
	// methods (a *tun.KernelTUN), those are used. Routes match on the
	// destination only: a Bypass prefix equal to a Protect one stays in
	// the device (the TUN route wins), and a more specific one takes all
	// the host's traffic to it out in the clear, whatever its source.
	AddBypassRoute, DeleteBypassRoute func(netip.Prefix) error

	// AddHostRoute and DeleteHostRoute, when set, let the back end carry
	// transport-mode SAs (transport.go). They are called with the
	// destination (the peer's address) and the source (this host's) of
	// the first and after the last outbound transport-mode Protect policy
	// for them, and must route the host's own packets to dst into the
	// device while the daemon's IKE and ESP-in-UDP datagrams to that same
	// address pass by ((*tun.KernelTUN).AddHostRoute does it with policy
	// routing). Without them transport-mode SAs and policies are refused:
	// a netstack has only tunnel addresses, never the host's.
	AddHostRoute, DeleteHostRoute func(dst netip.Prefix, src netip.Addr) error

	// AcquireInterval is the least time between two acquires for one
	// policy; 0 means 3 s.
	AcquireInterval time.Duration
	// LifetimeInterval is how often idle SAs are checked for their time
	// lifetimes; 0 means 1 s.
	LifetimeInterval time.Duration
	// Events is the size of the event channel; 0 means 256.
	Events int
	// Clock is the SAs' coarse clock; nil means esp.SystemClock().
	Clock *esp.Clock

	// InboundWorkers chooses how received packets are opened
	// (inbound.go). 0 or below: on the caller's goroutine (DeliverESP
	// opens and writes before it returns; no copy, no queue). 1: a
	// pipeline (DeliverESP copies and queues; one worker opens; one
	// writer writes the device in batches, in order). More than 1: that
	// many workers open in parallel, which may reorder an SA's packets by
	// more than a small replay window (esp.SA.Open updates the window as
	// it opens, so a packet a stalled worker holds falls left of it and
	// is dropped: as a replay, or with ESN as an ICV failure); use it
	// only with replay windows well above the queue length (1024).
	// Measured on 2 cores the serial path is the fastest (see
	// BenchmarkSealOpen), hence the default.
	InboundWorkers int
}

// headroom is the space left in front of every packet in a buffer: the
// device's own header (tun.Headroom) and the ESP header and IV that Seal
// writes there (8 + 16 octets at most).
const headroom = 64

// tailroom holds what Seal appends: padding, pad length, next header, ICV
// and its scratch.
const tailroom = 128

// Backend is the userspace kernel.IPsec.
type Backend struct {
	cfg      Config
	dev      tun.Device
	logf     func(string, ...any)
	mtu      int
	sadb     *esp.SADB
	spd      *esp.SPD
	acqEvery int64 // ns

	mu       sync.Mutex
	spis     map[uint32]struct{} // reserved by GetSPI; SPIs are unique host-wide (the SADB is keyed by SPI)
	sas      map[kernel.SAID]*saEntry
	policies map[policyKey]*policyEntry
	routes   map[routeKey]int
	addSeq   uint64

	// outSAs maps an outbound esp.SA to its entry (outer addresses) for
	// the reader; copy on write under mu.
	outSAs atomic.Pointer[map[*esp.SA]*saEntry]
	// trIn maps an inbound transport-mode esp.SA to its entry (outer
	// addresses, the inner packet's) for the inbound path; copy on write
	// under mu, empty without transport mode.
	trIn atomic.Pointer[map[*esp.SA]*saEntry]

	acqMu   sync.Mutex
	lastAcq map[*esp.Policy]int64
	acqReq  map[*esp.Policy]uint32

	evMu     sync.RWMutex
	evClosed bool
	events   chan kernel.Event

	st counters

	inPool    sync.Pool
	inBatches chan *inBatch // DeliverESPBatch's spare state
	serialIn  bool
	inMu      sync.RWMutex // DeliverESP holds it shared while it queues; Close takes it to close the queues
	inClosed  bool
	inWork    chan *inElem
	inOrder   chan *inElem
	inWG      sync.WaitGroup
	closing   atomic.Bool
	stop      chan struct{}
	wg        sync.WaitGroup
	closeMu   sync.Mutex
	closed    bool
}

type saEntry struct {
	id    kernel.SAID // under Backend.mu
	dir   kernel.Direction
	reqid uint32
	src   netip.Addr // outer source (under mu), for policies without a reqid
	sa    *esp.SA
	added time.Time
	seq   uint64
	addrs atomic.Pointer[sendAddrs] // outbound: where SendESP sends from and to; inbound transport mode: local is our address, remote the peer's
}

type sendAddrs struct{ local, remote netip.AddrPort }

type policyKey struct {
	dir     kernel.Direction
	sel     kernel.Selector
	hasMark bool
	mark    kernel.Mark
}

func keyOf(p *kernel.Policy) policyKey {
	k := policyKey{dir: p.Dir, sel: p.Selector}
	if p.Mark != nil {
		k.hasMark, k.mark = true, *p.Mark
	}
	return k
}

type policyEntry struct {
	kp     kernel.Policy
	ep     *esp.Policy // outbound only
	route  routeKey    // outbound Protect or Bypass: its route
	routed bool        // route counted (routeRefLocked succeeded)
}

// routeKey is a route into the device: a tunnel's remote subnet (host
// false, src unset) or a transport-mode peer (host true); or with bypass
// a route past the device (a Bypass policy's destination).
type routeKey struct {
	dst    netip.Prefix
	src    netip.Addr
	host   bool
	bypass bool
}

// bypassRouter is a device that routes prefixes past itself.
type bypassRouter interface {
	AddBypassRoute(netip.Prefix) error
	DeleteBypassRoute(netip.Prefix) error
}

var _ kernel.IPsec = (*Backend)(nil)

// New starts a back end on cfg.Device.
func New(cfg Config) (*Backend, error) {
	if cfg.Device == nil {
		return nil, errors.New("userspace: Config.Device is nil")
	}
	if cfg.SendESP == nil {
		return nil, errors.New("userspace: Config.SendESP is nil")
	}
	if cfg.AddBypassRoute == nil && cfg.DeleteBypassRoute == nil {
		if br, ok := cfg.Device.(bypassRouter); ok {
			cfg.AddBypassRoute, cfg.DeleteBypassRoute = br.AddBypassRoute, br.DeleteBypassRoute
		}
	}
	b := &Backend{
		cfg:      cfg,
		dev:      cfg.Device,
		logf:     cfg.Logf,
		mtu:      cfg.MTU,
		sadb:     esp.NewSADB(),
		spd:      esp.NewSPD(esp.ActionDrop),
		spis:     map[uint32]struct{}{},
		sas:      map[kernel.SAID]*saEntry{},
		policies: map[policyKey]*policyEntry{},
		routes:   map[routeKey]int{},
		lastAcq:  map[*esp.Policy]int64{},
		acqReq:   map[*esp.Policy]uint32{},
		stop:     make(chan struct{}),
	}
	if b.logf == nil {
		b.logf = func(string, ...any) {}
	}
	if b.mtu == 0 {
		m, err := cfg.Device.MTU()
		if err != nil {
			return nil, fmt.Errorf("userspace: device MTU: %w", err)
		}
		b.mtu = m
	}
	if b.mtu < 576 || b.mtu > 65535 {
		return nil, fmt.Errorf("userspace: MTU %d is out of range 576-65535", b.mtu)
	}
	if cfg.Clock == nil {
		b.cfg.Clock = esp.SystemClock()
	}
	ai := cfg.AcquireInterval
	if ai <= 0 {
		ai = 3 * time.Second
	}
	b.acqEvery = int64(ai)
	n := cfg.Events
	if n <= 0 {
		n = 256
	}
	b.events = make(chan kernel.Event, n)
	empty := map[*esp.SA]*saEntry{}
	b.outSAs.Store(&empty)
	emptyIn := map[*esp.SA]*saEntry{}
	b.trIn.Store(&emptyIn)
	b.inPool.New = func() any { return newInElem() }
	b.inBatches = make(chan *inBatch, 2)
	workers := cfg.InboundWorkers
	if workers <= 0 {
		b.serialIn = true
	} else {
		b.inWork = make(chan *inElem, inQueueLen)
		b.inOrder = make(chan *inElem, inQueueLen)
		b.inWG.Add(workers + 1)
		for i := 0; i < workers; i++ {
			go b.openWorker()
		}
		go b.writeLoop()
	}

	b.wg.Add(2)
	go b.readLoop()
	go b.lifetimeLoop()
	return b, nil
}

// Close stops the back end's goroutines, closes the device and the event
// channel. It removes no SA or policy (there is nothing outside the
// process to clean; the device's Close takes its routes and rules).
func (b *Backend) Close() error {
	b.closeMu.Lock()
	defer b.closeMu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	b.closing.Store(true)
	close(b.stop)
	if !b.serialIn {
		b.inMu.Lock()
		b.inClosed = true
		close(b.inWork)
		close(b.inOrder)
		b.inMu.Unlock()
		b.inWG.Wait()
	}
	err := b.dev.Close()
	b.wg.Wait()
	b.evMu.Lock()
	b.evClosed = true
	close(b.events)
	b.evMu.Unlock()
	return err
}

// Events delivers acquires and expiries; closed by Close.
func (b *Backend) Events() <-chan kernel.Event { return b.events }

// raise sends ev without blocking; a full channel drops and counts it.
func (b *Backend) raise(ev kernel.Event) {
	b.evMu.RLock()
	defer b.evMu.RUnlock()
	if b.evClosed {
		return
	}
	select {
	case b.events <- ev:
	default:
		b.st.eventsDropped.Add(1)
	}
}

func (b *Backend) lifetimeLoop() {
	defer b.wg.Done()
	every := b.cfg.LifetimeInterval
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		b.mu.Lock()
		all := make([]*esp.SA, 0, len(b.sas))
		for _, e := range b.sas {
			all = append(all, e.sa)
		}
		b.mu.Unlock()
		for _, sa := range all {
			sa.CheckLifetime()
		}
	}
}

// GetSPI reserves a random SPI (>= 256) that no inbound SA and no other
// reservation uses.
func (b *Backend) GetSPI(ctx context.Context, src, dst netip.Addr, proto kernel.Proto, reqid uint32) (uint32, error) {
	if proto != kernel.ESP {
		return 0, fmt.Errorf("userspace: get SPI for %v: only ESP is supported", proto)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errors.New("userspace: back end is closed")
	}
	var r [4]byte
	for {
		if _, err := rand.Read(r[:]); err != nil {
			return 0, fmt.Errorf("userspace: get SPI: %w", err)
		}
		spi := binary.BigEndian.Uint32(r[:])
		if spi < 0x100 {
			continue // 1-255 reserved, 0 not an SPI (RFC 4303 §2.1)
		}
		if _, taken := b.spis[spi]; taken || b.sadb.Lookup(spi) != nil {
			continue
		}
		b.spis[spi] = struct{}{}
		return spi, nil
	}
}

// saConfig maps a kernel.SA onto the engine's configuration.
func (b *Backend) saConfig(sa *kernel.SA) (esp.SAConfig, error) {
	id := sa.ID()
	if sa.Proto != kernel.ESP {
		return esp.SAConfig{}, fmt.Errorf("userspace: SA %v: protocol %v is not supported (ESP only)", id, sa.Proto)
	}
	mode := esp.Tunnel
	switch sa.Mode {
	case kernel.Tunnel:
	case kernel.Transport:
		if !b.transportOK() {
			return esp.SAConfig{}, fmt.Errorf("userspace: SA %v: %w", id, errNoTransport)
		}
		mode = esp.Transport
	default:
		return esp.SAConfig{}, fmt.Errorf("userspace: SA %v: %v mode is not supported", id, sa.Mode)
	}
	if sa.Dir != kernel.In && sa.Dir != kernel.Out {
		return esp.SAConfig{}, fmt.Errorf("userspace: SA %v: direction %v is not in or out", id, sa.Dir)
	}
	if sa.Encap == nil && b.cfg.SendRawESP == nil {
		return esp.SAConfig{}, fmt.Errorf("userspace: SA %v: %w", id, errNoRaw)
	}
	if sa.Encap != nil && (sa.Encap.SrcPort == 0 || sa.Encap.DstPort == 0) {
		return esp.SAConfig{}, fmt.Errorf("userspace: SA %v: UDP encapsulation ports %d->%d: a port is 0", id, sa.Encap.SrcPort, sa.Encap.DstPort)
	}
	if !sa.Src.IsValid() || !sa.Dst.IsValid() || sa.Src.Unmap().Is4() != sa.Dst.Unmap().Is4() {
		return esp.SAConfig{}, fmt.Errorf("userspace: SA %v: outer addresses %v and %v are missing or of two families", id, sa.Src, sa.Dst)
	}
	c := esp.SAConfig{
		SPI:          sa.SPI,
		Mode:         mode,
		Encr:         sa.Encr,
		EncrKey:      sa.EncrKey,
		Integ:        sa.Integ,
		IntegKey:     sa.IntegKey,
		ESN:          sa.ESN,
		ReplayWindow: sa.ReplayWindow,
		Selectors:    sa.Selectors,
		Clock:        b.cfg.Clock,
		Lifetime: esp.Lifetime{
			Soft: esp.Limits{Bytes: sa.Lifetime.Soft.Bytes, Packets: sa.Lifetime.Soft.Packets, Time: sa.Lifetime.Soft.Time},
			Hard: esp.Limits{Bytes: sa.Lifetime.Hard.Bytes, Packets: sa.Lifetime.Hard.Packets, Time: sa.Lifetime.Hard.Time},
		},
	}
	if sa.Dir == kernel.Out {
		c.Local, c.Remote = sa.Src, sa.Dst
		if sa.Encap != nil {
			c.Encap = &esp.UDPEncap{LocalPort: sa.Encap.SrcPort, RemotePort: sa.Encap.DstPort}
		}
	} else {
		c.Local, c.Remote = sa.Dst, sa.Src
		if sa.Encap != nil {
			c.Encap = &esp.UDPEncap{LocalPort: sa.Encap.DstPort, RemotePort: sa.Encap.SrcPort}
		}
	}
	if mode == esp.Transport {
		// The back end frames the UDP itself, as in tunnel mode: the
		// engine seals to and opens from an IP header with protocol 50
		// (transport.go).
		c.Encap = nil
	}
	return c, nil
}

// outAddrs are an outbound SA's outer addresses and UDP ports; ports 0
// mean raw ESP (IP protocol 50, Config.SendRawESP).
func outAddrs(sa *kernel.SA) *sendAddrs {
	var lp, rp uint16
	if sa.Encap != nil {
		lp, rp = sa.Encap.SrcPort, sa.Encap.DstPort
	}
	return &sendAddrs{
		local:  netip.AddrPortFrom(sa.Src.Unmap(), lp),
		remote: netip.AddrPortFrom(sa.Dst.Unmap(), rp),
	}
}

// raw says whether the addresses are those of raw ESP.
func (a *sendAddrs) raw() bool { return a.remote.Port() == 0 }

var errNoRaw = errors.New("no UDP encapsulation, and raw ESP (IP protocol 50) needs a raw socket, which this data plane has not (it needs CAP_NET_RAW and --use-userspace): negotiate encapsulation=yes")

// AddSA installs sa. Inbound SAs must use an SPI from GetSPI; an outbound
// SA becomes the SA of every outbound policy with its reqid (the newest SA
// of a reqid wins, for make-before-break rekeying).
func (b *Backend) AddSA(ctx context.Context, sa *kernel.SA) error {
	cfg, err := b.saConfig(sa)
	if err != nil {
		return err
	}
	id := sa.ID()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("userspace: back end is closed")
	}
	if b.sas[id] != nil {
		return fmt.Errorf("userspace: add SA %v: already installed", id)
	}
	if _, ok := b.spis[sa.SPI]; sa.Dir == kernel.In && !ok {
		return fmt.Errorf("userspace: add inbound SA %v: SPI was not reserved with GetSPI", id)
	}
	e := &saEntry{id: id, dir: sa.Dir, reqid: sa.ReqID, src: sa.Src, added: time.Now()}
	cfg.OnEvent = func(ev esp.Event) { b.onSAEvent(e, ev) }
	esa, err := esp.NewSA(cfg)
	if err != nil {
		return fmt.Errorf("userspace: add SA %v: %w", id, err)
	}
	e.sa = esa
	b.addSeq++
	e.seq = b.addSeq
	if sa.Dir == kernel.In {
		if cfg.Mode == esp.Transport {
			// Before the SADB: the inbound path finds the entry of every
			// transport SA it can look up.
			e.addrs.Store(inAddrs(sa))
			b.setTransportIn(esa, e)
		}
		if err := b.sadb.Add(esa); err != nil {
			if cfg.Mode == esp.Transport {
				b.setTransportIn(esa, nil)
			}
			return fmt.Errorf("userspace: add SA %v: %w", id, err)
		}
		delete(b.spis, sa.SPI)
	} else {
		e.addrs.Store(outAddrs(sa))
		b.setOutSA(esa, e)
	}
	b.sas[id] = e
	if sa.Dir == kernel.Out {
		b.reattachLocked(func(pe *policyEntry) bool { return policyWants(pe, e) })
	}
	return nil
}

// setOutSA adds (e != nil) or removes the reader's view of an outbound SA.
func (b *Backend) setOutSA(sa *esp.SA, e *saEntry) {
	m := maps.Clone(*b.outSAs.Load())
	if e != nil {
		m[sa] = e
	} else {
		delete(m, sa)
	}
	b.outSAs.Store(&m)
}

// policyWants says whether out SA e may carry the packets of policy pe:
// same reqid, or, for a template without one, the same outer addresses.
func policyWants(pe *policyEntry, e *saEntry) bool {
	if pe.ep == nil || pe.kp.Action != kernel.Protect || e.dir != kernel.Out {
		return false
	}
	t := &pe.kp.Template
	if t.ReqID != 0 {
		return e.reqid == t.ReqID
	}
	return t.Dst.IsValid() && t.Dst.Unmap() == e.id.Dst.Unmap() && (!t.Src.IsValid() || t.Src.Unmap() == e.src.Unmap())
}

// reattachLocked gives each outbound policy that sel picks the newest
// live SA it wants, or none.
func (b *Backend) reattachLocked(sel func(*policyEntry) bool) {
	for _, pe := range b.policies {
		if !sel(pe) {
			continue
		}
		var best *saEntry
		for _, e := range b.sas {
			if policyWants(pe, e) && !e.sa.Expired() && (best == nil || e.seq > best.seq) {
				best = e
			}
		}
		if best == nil {
			pe.ep.SetSA(nil)
		} else {
			pe.ep.SetSA(best.sa)
		}
	}
}

// onSAEvent turns the engine's lifetime events into kernel events. It
// runs on a packet path or in the lifetime loop.
func (b *Backend) onSAEvent(e *saEntry, ev esp.Event) {
	b.mu.Lock()
	id := e.id
	if ev.Kind == esp.HardExpire && e.dir == kernel.Out {
		// The SA refuses packets now: move its policies to another SA of
		// the reqid if one is there.
		b.reattachLocked(func(pe *policyEntry) bool { return pe.ep != nil && pe.ep.SA() == e.sa })
	}
	b.mu.Unlock()
	k := kernel.SoftExpire
	if ev.Kind == esp.HardExpire {
		k = kernel.HardExpire
	}
	b.logf("userspace: SA %v: %v (%v)", id, ev.Kind, ev.Reason)
	b.raise(kernel.Event{Kind: k, SA: id, ReqID: e.reqid})
}

// UpdateSA moves an installed SA to new outer addresses or encapsulation
// ports, keeping keys, counters and replay state.
func (b *Backend) UpdateSA(ctx context.Context, id kernel.SAID, sa *kernel.SA) error {
	if sa.Encap == nil && b.cfg.SendRawESP == nil {
		return fmt.Errorf("userspace: update SA %v: %w", id, errNoRaw)
	}
	if sa.Encap != nil && (sa.Encap.SrcPort == 0 || sa.Encap.DstPort == 0) {
		return fmt.Errorf("userspace: update SA %v: UDP encapsulation ports %d->%d: a port is 0", id, sa.Encap.SrcPort, sa.Encap.DstPort)
	}
	if !sa.Src.IsValid() || !sa.Dst.IsValid() || sa.Src.Unmap().Is4() != sa.Dst.Unmap().Is4() {
		return fmt.Errorf("userspace: update SA %v: outer addresses %v and %v are missing or of two families", id, sa.Src, sa.Dst)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.sas[id]
	if e == nil {
		return fmt.Errorf("userspace: update SA %v: %w", id, kernel.ErrNotFound)
	}
	nid := kernel.SAID{Dst: sa.Dst, SPI: id.SPI, Proto: id.Proto}
	if nid != id && b.sas[nid] != nil {
		return fmt.Errorf("userspace: update SA %v to %v: that SA is already installed", id, nid)
	}
	delete(b.sas, id)
	e.id, e.src = nid, sa.Src
	b.sas[nid] = e
	if e.dir == kernel.Out {
		e.addrs.Store(outAddrs(sa))
		b.reattachLocked(func(pe *policyEntry) bool { return pe.ep != nil })
	} else if e.addrs.Load() != nil {
		e.addrs.Store(inAddrs(sa))
	}
	return nil
}

// QuerySA returns an SA's counters: inner packets and their octets,
// sealed (out) or opened (in).
func (b *Backend) QuerySA(ctx context.Context, id kernel.SAID) (kernel.SAStats, error) {
	b.mu.Lock()
	e := b.sas[id]
	b.mu.Unlock()
	if e == nil {
		return kernel.SAStats{}, fmt.Errorf("userspace: query SA %v: %w", id, kernel.ErrNotFound)
	}
	c := e.sa.Counters()
	st := kernel.SAStats{Bytes: c.Bytes, Packets: c.Packets, Added: e.added}
	if c.Packets > 0 {
		st.LastUsed = c.LastUse
	}
	return st, nil
}

// SADrops returns the engine's per-reason drop counters of an SA.
func (b *Backend) SADrops(id kernel.SAID) (esp.DropCounts, error) {
	b.mu.Lock()
	e := b.sas[id]
	b.mu.Unlock()
	if e == nil {
		return esp.DropCounts{}, fmt.Errorf("userspace: SA %v: %w", id, kernel.ErrNotFound)
	}
	return e.sa.Counters().Drops, nil
}

// DeleteSA removes an SA or releases a reserved SPI.
func (b *Backend) DeleteSA(ctx context.Context, id kernel.SAID) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.sas[id]
	if e == nil {
		if _, ok := b.spis[id.SPI]; ok {
			delete(b.spis, id.SPI)
			return nil
		}
		return fmt.Errorf("userspace: delete SA %v: %w", id, kernel.ErrNotFound)
	}
	delete(b.sas, id)
	if e.dir == kernel.In {
		b.sadb.Remove(e.sa.SPI())
		if e.sa.Mode() == esp.Transport {
			b.setTransportIn(e.sa, nil)
		}
		return nil
	}
	b.setOutSA(e.sa, nil)
	b.reattachLocked(func(pe *policyEntry) bool { return policyWants(pe, e) || (pe.ep != nil && pe.ep.SA() == e.sa) })
	return nil
}

func espAction(a kernel.PolicyAction) (esp.Action, error) {
	switch a {
	case kernel.Protect:
		return esp.ActionProtect, nil
	case kernel.Bypass:
		return esp.ActionBypass, nil
	case kernel.Block:
		return esp.ActionDrop, nil
	}
	return 0, fmt.Errorf("unknown action %v", a)
}

// AddPolicy installs p or replaces the one with its selector, direction
// and mark. Outbound policies go into the SPD (a Protect policy takes the
// newest SA of its template's reqid, and raises acquires while it has
// none); inbound and forward policies are kept for listing, because each
// inbound SA already checks what it opens against its own selectors.
// Marks and interface ids are kept but not used.
func (b *Backend) AddPolicy(ctx context.Context, p *kernel.Policy) error {
	sel := p.Selector
	if !sel.Src.IsValid() || !sel.Dst.IsValid() || sel.Src.Addr().Is4() != sel.Dst.Addr().Is4() {
		return fmt.Errorf("userspace: %v policy %v -> %v: prefixes missing or of two families", p.Dir, sel.Src, sel.Dst)
	}
	act, err := espAction(p.Action)
	if err != nil {
		return fmt.Errorf("userspace: %v policy %v -> %v: %w", p.Dir, sel.Src, sel.Dst, err)
	}
	if p.Action == kernel.Protect && p.Template.Proto != 0 && p.Template.Proto != kernel.ESP {
		return fmt.Errorf("userspace: %v policy %v -> %v: template protocol %v is not supported (ESP only)", p.Dir, sel.Src, sel.Dst, p.Template.Proto)
	}
	if p.Action == kernel.Protect && p.Template.Mode == kernel.Transport && !b.transportOK() {
		return fmt.Errorf("userspace: %v policy %v -> %v: %w", p.Dir, sel.Src, sel.Dst, errNoTransport)
	}
	key := keyOf(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("userspace: back end is closed")
	}
	pe := &policyEntry{kp: *p}
	if p.Dir == kernel.Out {
		pe.ep = &esp.Policy{Selector: sel, Action: act, OnDemand: act == esp.ActionProtect, Priority: p.Priority}
		if act == esp.ActionProtect {
			pe.route = routeOf(p)
			if err := b.routeRefLocked(pe.route, +1); err != nil {
				return fmt.Errorf("userspace: %v policy %v -> %v: %w", p.Dir, sel.Src, sel.Dst, err)
			}
			pe.routed = true
		}
		if act == esp.ActionBypass {
			pe.route = routeKey{dst: sel.Dst.Masked(), bypass: true}
			if err := b.routeRefLocked(pe.route, +1); err != nil {
				b.logf("userspace: %v policy %v -> %v (bypass): %v; its packets that the device receives are dropped", p.Dir, sel.Src, sel.Dst, err)
			} else {
				pe.routed = true
			}
		}
		if err := b.spd.Add(pe.ep); err != nil {
			if pe.routed {
				b.routeRefLocked(pe.route, -1)
			}
			return fmt.Errorf("userspace: %w", err)
		}
		b.acqMu.Lock()
		b.acqReq[pe.ep] = p.Template.ReqID
		b.acqMu.Unlock()
	}
	if old := b.policies[key]; old != nil {
		b.removePolicyLocked(old)
	}
	b.policies[key] = pe
	if pe.ep != nil && act == esp.ActionProtect {
		b.reattachLocked(func(x *policyEntry) bool { return x == pe })
	}
	return nil
}

func (b *Backend) removePolicyLocked(pe *policyEntry) {
	if pe.ep == nil {
		return
	}
	b.spd.Remove(pe.ep)
	pe.ep.SetSA(nil)
	if pe.routed {
		pe.routed = false
		if err := b.routeRefLocked(pe.route, -1); err != nil {
			b.logf("userspace: %v", err)
		}
	}
	b.acqMu.Lock()
	delete(b.acqReq, pe.ep)
	delete(b.lastAcq, pe.ep)
	b.acqMu.Unlock()
}

// routeOf is the route an outbound Protect policy needs: its destination
// prefix, or for a transport-mode policy a host route to the peer from
// this host's address.
func routeOf(p *kernel.Policy) routeKey {
	sel := p.Selector
	if p.Template.Mode != kernel.Transport {
		return routeKey{dst: sel.Dst.Masked()}
	}
	k := routeKey{dst: sel.Dst.Masked(), host: true}
	if sel.Src.IsSingleIP() {
		k.src = sel.Src.Addr().Unmap()
	}
	return k
}

// routeRefLocked counts the Protect (and Bypass) policies per route and
// calls the route hooks on the first and the last. A failed add counts
// nothing.
func (b *Backend) routeRefLocked(r routeKey, d int) error {
	n := b.routes[r]
	add, del := b.cfg.AddRoute, b.cfg.DeleteRoute
	what := "into the device"
	switch {
	case r.bypass:
		add, del = b.cfg.AddBypassRoute, b.cfg.DeleteBypassRoute
		what = "past the device"
	case r.host:
		add = func(p netip.Prefix) error { return b.cfg.AddHostRoute(p, r.src) }
		del = func(p netip.Prefix) error { return b.cfg.DeleteHostRoute(p, r.src) }
	}
	p := r.dst
	switch {
	case d > 0 && n == 0 && add != nil:
		if err := add(p); err != nil {
			return fmt.Errorf("route %v %s: %w", p, what, err)
		}
	case d < 0 && n == 1 && del != nil:
		defer func() {
			if err := del(p); err != nil {
				b.logf("userspace: delete route %v: %v", p, err)
			}
		}()
	}
	if n += d; n <= 0 {
		delete(b.routes, r)
	} else {
		b.routes[r] = n
	}
	return nil
}

// DeletePolicy removes the policy with p's selector, direction and mark.
func (b *Backend) DeletePolicy(ctx context.Context, p *kernel.Policy) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	key := keyOf(p)
	pe := b.policies[key]
	if pe == nil {
		return fmt.Errorf("userspace: delete %v policy %v -> %v: %w", p.Dir, p.Selector.Src, p.Selector.Dst, kernel.ErrNotFound)
	}
	delete(b.policies, key)
	b.removePolicyLocked(pe)
	return nil
}

// Policies returns copies of the installed policies (for status).
func (b *Backend) Policies() []kernel.Policy {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]kernel.Policy, 0, len(b.policies))
	for _, pe := range b.policies {
		out = append(out, pe.kp)
	}
	slices.SortFunc(out, func(a, c kernel.Policy) int { return int(a.Dir) - int(c.Dir) })
	return out
}
