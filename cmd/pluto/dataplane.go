package main

// The user-space data planes: the ESP engine (kernel/userspace) on a
// gVisor netstack (--use-netstack) or a kernel TUN device
// (--use-userspace), wired to the NAT-T socket for ESP in UDP and, with
// --use-userspace when the daemon may open one (CAP_NET_RAW), to a raw
// socket for ESP (IP protocol 50): the engine then negotiates raw ESP
// unless a NAT is found or a conn says encapsulation=yes. --use-netstack
// runs unprivileged and always carries ESP in UDP.
//
// The netstack's addresses are the tunnel addresses of this host: each
// conn's leftsourceip=, or its leftsubnet= when that is one host. They are
// known once a conn is loaded, so the data plane starts with the first
// conn that gives one; the engine reaches it through lazyIPsec meanwhile.
//
// Transport mode (type=transport) protects the packets between this
// host's own address and the peer's. On a kernel TUN the back end routes
// the peer's address into the TUN through a routing table of its own, by
// policy routing that lets the daemon's IKE and NAT-T datagrams (their
// source ports) pass by (tun/hostroute_linux.go); a transport conn starts
// the data plane without tunnel addresses. A netstack cannot: its
// addresses are tunnel addresses, not the host's, so a transport conn is
// refused when it is loaded.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"goswan/config"
	"goswan/esp"
	"goswan/kernel"
	"goswan/kernel/userspace"
	"goswan/logging"
	"goswan/tun"
)

// tunnelMTU is the inner MTU of the user-space devices: what is left of a
// 1500-byte path after the outer IP (20 or 40), UDP (8) and ESP headers,
// IV, padding and ICV, with room to spare, as strongSwan's ipsec0 (1400).
const tunnelMTU = 1400

// dataPlane owns the device, the user-space back end and the servers on a
// netstack.
type dataPlane struct {
	s            *settings
	log          *logging.Logger
	sendESP      func(local, remote netip.AddrPort, pkt []byte) error
	sendESPBatch func(local, remote netip.AddrPort, pkts [][]byte) error // UDP GSO on Linux
	sendRawESP   func(local, remote netip.Addr, pkt []byte) error        // raw ESP socket; nil: ESP in UDP only
	forward      func(<-chan kernel.Event)                               // takes the back end's events once it runs

	mu    sync.Mutex
	us    *userspace.Backend // nil until started
	ns    *tun.Netstack      // --use-netstack
	ktun  *tun.KernelTUN     // --use-userspace
	addrs []netip.Addr       // the tunnel addresses in use
	err   error              // why it could not start, for the engine's errors
}

func newDataPlane(s *settings, log *logging.Logger, sendESP func(local, remote netip.AddrPort, pkt []byte) error) *dataPlane {
	return &dataPlane{s: s, log: log, sendESP: sendESP,
		err: fmt.Errorf("%s: no conn gives this host an address inside the tunnel yet (leftsourceip=, or a leftsubnet= of one host)", s.backend.Flag())}
}

// tunnelAddrs returns the tunnel addresses conn c gives this host.
// A transport conn's subnets are the host's own addresses, never tunnel
// addresses: only its sourceip= counts.
func tunnelAddrs(c *config.Conn, listen []netip.Addr) []netip.Addr {
	local := &c.Left
	if c.Right.Addr.IsValid() && isLocal(listen, c.Right.Addr) && !(c.Left.Addr.IsValid() && isLocal(listen, c.Left.Addr)) {
		local = &c.Right
	}
	if local.SourceIP.IsValid() {
		return []netip.Addr{local.SourceIP}
	}
	if isTransport(c) {
		return nil
	}
	var out []netip.Addr
	for _, p := range local.Subnets {
		if p.IsSingleIP() {
			out = append(out, p.Addr())
		}
	}
	return out
}

// addConn makes sure the data plane carries c's tunnel addresses: it
// starts the data plane with them, or adds them to a kernel TUN. A
// netstack cannot take addresses once made: a conn that needs a new one is
// refused with words that say so.
func (dp *dataPlane) addConn(c *config.Conn) error {
	transport := isTransport(c)
	if transport && dp.s.backend == kernel.Netstack {
		return fmt.Errorf("type=transport is not supported with %s: transport mode protects this host's own address, and the netstack's addresses are tunnel addresses, not the host's; use type=tunnel with leftsourceip= (or --use-userspace, or the kernel's XFRM)", dp.s.backend.Flag())
	}
	want := tunnelAddrs(c, dp.s.listen)
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if transport && dp.us == nil && dp.s.backend == kernel.Userspace {
		// The data plane need not have an address: start it.
		return dp.start(want)
	}
	var missing []netip.Addr
	for _, a := range want {
		if !slices.Contains(dp.addrs, a) {
			missing = append(missing, a)
		}
	}
	switch {
	case len(missing) == 0:
		return nil
	case dp.us == nil:
		return dp.start(missing)
	case dp.ktun != nil:
		for _, a := range missing {
			if err := dp.ktun.AddAddress(netip.PrefixFrom(a, a.BitLen())); err != nil {
				return err
			}
			dp.addrs = append(dp.addrs, a)
		}
		return nil
	}
	return fmt.Errorf("the netstack already runs with %v and cannot take %v as well: restart pluto with every conn in --config", dp.addrs, missing)
}

// start makes the device and the back end. dp.mu is held.
func (dp *dataPlane) start(addrs []netip.Addr) error {
	var dev tun.Device
	switch dp.s.backend {
	case kernel.Netstack:
		ns, d, err := tun.NewNetstack(addrs, tunnelMTU)
		if err != nil {
			return err
		}
		ns.Logf = dp.log.Logf
		dp.ns, dev = ns, d
	case kernel.Userspace:
		kt, err := tun.NewKernelTUN(dp.s.tunName, tunnelMTU)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if err := kt.AddAddress(netip.PrefixFrom(a, a.BitLen())); err != nil {
				kt.Close()
				return err
			}
		}
		dp.ktun, dev = kt, kt
	default:
		return fmt.Errorf("%s is not a user-space data plane", dp.s.backend.Flag())
	}
	cfg := userspace.Config{Device: dev, SendESP: dp.sendESP, SendESPBatch: dp.sendESPBatch, SendRawESP: dp.sendRawESP, Logf: dp.log.Logf, MTU: tunnelMTU}
	if dp.ktun != nil {
		cfg.AddRoute, cfg.DeleteRoute = dp.ktun.AddRoute, dp.ktun.DeleteRoute
		// Transport mode: host routes that the daemon's own IKE and
		// NAT-T datagrams pass by. Also removes the rules a crashed
		// earlier run left.
		if err := dp.ktun.PrepareHostRoutes(uint16(dp.s.ikeport), uint16(dp.s.natikeport)); err != nil {
			dp.log.Warnf("transport mode on %s: %v", dp.s.tunName, err)
		} else {
			cfg.AddHostRoute, cfg.DeleteHostRoute = dp.ktun.AddHostRoute, dp.ktun.DeleteHostRoute
		}
	}
	us, err := userspace.New(cfg)
	if err != nil {
		dev.Close()
		return err
	}
	dp.us, dp.addrs, dp.err = us, append(dp.addrs, addrs...), nil
	if dp.forward != nil {
		dp.forward(us.Events())
	}
	name, _ := dev.Name()
	if len(addrs) == 0 {
		dp.log.Logf("user-space data plane up on %s without a tunnel address (transport mode)", name)
	} else {
		dp.log.Logf("user-space data plane up on %s with tunnel addresses %v", name, addrs)
	}
	if dp.ns != nil {
		dp.startServers()
	}
	return nil
}

// isTransport says whether c asks for transport-mode Child SAs.
func isTransport(c *config.Conn) bool { return strings.EqualFold(c.Type, "transport") }

// startServers starts what --netstack-socks5, --netstack-forward and
// --netstack-expose ask for. A server that cannot start is logged.
func (dp *dataPlane) startServers() {
	for _, a := range dp.s.netstackSOCKS5 {
		if srv, err := dp.ns.ServeSOCKS5(a); err != nil {
			dp.log.Warnf("--netstack-socks5 %s: %v", a, err)
		} else {
			dp.log.Logf("SOCKS5 proxy into the tunnel on %v", srv.Addrs())
		}
	}
	for _, f := range dp.s.netstackForward {
		if srv, err := dp.ns.Forward(f); err != nil {
			dp.log.Warnf("--netstack-forward %v: %v", f, err)
		} else {
			dp.log.Logf("forwarding %v into the tunnel (%v)", srv.Addrs(), f)
		}
	}
	for _, x := range dp.s.netstackExpose {
		if srv, err := dp.ns.Expose(x); err != nil {
			dp.log.Warnf("--netstack-expose %v: %v", x, err)
		} else {
			dp.log.Logf("exposing %v inside the tunnel (%v)", srv.Addrs(), x)
		}
	}
}

// deliverESP takes ESP in UDP from the NAT-T socket.
func (dp *dataPlane) deliverESP(local, remote netip.AddrPort, pkt []byte) {
	dp.mu.Lock()
	us := dp.us
	dp.mu.Unlock()
	if us != nil {
		us.DeliverESP(local, remote, pkt)
	}
}

// deliverESPBatch takes a batch of ESP in UDP from the NAT-T socket
// (recvmmsg with UDP GRO); the back end writes it to the device at once.
func (dp *dataPlane) deliverESPBatch(local, remote netip.AddrPort, pkts [][]byte) {
	dp.mu.Lock()
	us := dp.us
	dp.mu.Unlock()
	if us != nil {
		us.DeliverESPBatch(local, remote, pkts)
	}
}

// deliverRawESP takes ESP (IP protocol 50, the IP header stripped) from
// the raw ESP socket.
func (dp *dataPlane) deliverRawESP(local, remote netip.Addr, pkt []byte) {
	dp.mu.Lock()
	us := dp.us
	dp.mu.Unlock()
	if us != nil {
		us.DeliverRawESP(local, remote, pkt)
	}
}

func (dp *dataPlane) backend() (*userspace.Backend, error) {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.us == nil {
		return nil, dp.err
	}
	return dp.us, nil
}

func (dp *dataPlane) close() error {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	var errs []error
	if dp.ns != nil {
		errs = append(errs, dp.ns.Close())
	}
	if dp.us != nil {
		errs = append(errs, dp.us.Close()) // closes the device
	}
	return errors.Join(errs...)
}

// lazyIPsec is the engine's view of the data plane: it forwards to the
// user-space back end once that runs, and fails with the reason before.
type lazyIPsec struct {
	dp        *dataPlane
	events    chan kernel.Event
	done      chan struct{}
	wg        sync.WaitGroup // the event forwarder
	closeOnce sync.Once
}

func newLazyIPsec(dp *dataPlane) *lazyIPsec {
	l := &lazyIPsec{dp: dp, events: make(chan kernel.Event), done: make(chan struct{})}
	dp.forward = func(ch <-chan kernel.Event) {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ev := range ch {
				select {
				case l.events <- ev:
				case <-l.done:
					return
				}
			}
		}()
	}
	return l
}

var _ kernel.IPsec = (*lazyIPsec)(nil)

func (l *lazyIPsec) GetSPI(ctx context.Context, src, dst netip.Addr, p kernel.Proto, reqid uint32) (uint32, error) {
	b, err := l.dp.backend()
	if err != nil {
		return 0, err
	}
	return b.GetSPI(ctx, src, dst, p, reqid)
}

func (l *lazyIPsec) AddSA(ctx context.Context, sa *kernel.SA) error {
	b, err := l.dp.backend()
	if err != nil {
		return err
	}
	return b.AddSA(ctx, sa)
}

func (l *lazyIPsec) UpdateSA(ctx context.Context, id kernel.SAID, sa *kernel.SA) error {
	b, err := l.dp.backend()
	if err != nil {
		return err
	}
	return b.UpdateSA(ctx, id, sa)
}

func (l *lazyIPsec) QuerySA(ctx context.Context, id kernel.SAID) (kernel.SAStats, error) {
	b, err := l.dp.backend()
	if err != nil {
		return kernel.SAStats{}, err
	}
	return b.QuerySA(ctx, id)
}

func (l *lazyIPsec) DeleteSA(ctx context.Context, id kernel.SAID) error {
	b, err := l.dp.backend()
	if err != nil {
		return err
	}
	return b.DeleteSA(ctx, id)
}

func (l *lazyIPsec) AddPolicy(ctx context.Context, p *kernel.Policy) error {
	b, err := l.dp.backend()
	if err != nil {
		return err
	}
	return b.AddPolicy(ctx, p)
}

func (l *lazyIPsec) DeletePolicy(ctx context.Context, p *kernel.Policy) error {
	b, err := l.dp.backend()
	if err != nil {
		return err
	}
	return b.DeletePolicy(ctx, p)
}

// Events delivers the back end's acquires and expiries once it runs.
func (l *lazyIPsec) Events() <-chan kernel.Event { return l.events }

// Close closes the back end, waits for the event forwarder, then closes
// the event channel.
func (l *lazyIPsec) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.dp.close()
		l.wg.Wait()
		close(l.events)
	})
	return err
}

// espStatus is the user-space data plane's part of "ipsec status": its
// packet counters and every drop by reason (replays, forgeries, packets
// with no SA or no policy...).
type espStatus struct {
	Dataplane userspace.Stats   `json:"dataplane"`
	Drops     map[string]uint64 `json:"drops"`
}

func (d *daemon) espStatus() *espStatus {
	if d.ike == nil || d.ike.dp == nil {
		return nil
	}
	us, err := d.ike.dp.backend()
	if err != nil {
		return nil
	}
	es := &espStatus{Dataplane: us.Stats(), Drops: map[string]uint64{}}
	for r, n := range esp.GlobalDrops() {
		if n > 0 {
			es.Drops[esp.DropReason(r).String()] = n
		}
	}
	return es
}

func (es *espStatus) text() string {
	var b strings.Builder
	st := es.Dataplane
	fmt.Fprintf(&b, "ESP data plane: out %d packets (%d bytes), in %d packets (%d bytes), dropped in %d, out: no policy %d, blocked %d, acquire %d, send errors %d\n",
		st.OutPackets, st.OutBytes, st.InPackets, st.InBytes, st.InDrops, st.OutNoPolicy, st.OutBlocked, st.OutAcquire, st.SendErrors)
	if len(es.Drops) > 0 {
		var parts []string
		for r, n := range es.Drops {
			parts = append(parts, fmt.Sprintf("%s %d", r, n))
		}
		slices.Sort(parts)
		fmt.Fprintf(&b, "ESP drops by reason: %s\n", strings.Join(parts, ", "))
	}
	return b.String()
}
