package main

// Wiring the IKE engine to the sockets, the back end, the timers and the
// control requests.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"goswan/config"
	"goswan/ctl"
	"goswan/ike"
	"goswan/ike/socket"
	"goswan/kernel"
	"goswan/kernel/memory"
	"goswan/kernel/pfkey"
	"goswan/kernel/xfrm"
	"goswan/logging"
	"goswan/pki"
)

// testKernelEnv, set to "memory", makes pluto keep its SAs in memory
// instead of a data plane: no packet is protected. Tests of the IKE
// exchanges use it on machines where no data plane can work; it is not a
// command-line option because it is not a data plane.
const testKernelEnv = "GOSWAN_PLUTO_TEST_KERNEL"

// tickInterval is how often the engine's timers are looked at.
const tickInterval = 50 * time.Millisecond

// newIPsec returns the SA-install back end for the settings, and the
// user-space data plane when there is one.
func newIPsec(s *settings, log *logging.Logger, sendESP func(local, remote netip.AddrPort, pkt []byte) error) (kernel.IPsec, *dataPlane, error) {
	switch v := os.Getenv(testKernelEnv); v {
	case "":
	case "memory":
		log.Warnf("TEST ONLY (%s=memory): SAs are kept in memory and protect no traffic", testKernelEnv)
		return memory.New(), nil, nil
	default:
		return nil, nil, fmt.Errorf("%s=%q: the only test back end is \"memory\"", testKernelEnv, v)
	}
	switch s.backend {
	case kernel.Netstack, kernel.Userspace:
		dp := newDataPlane(s, log, sendESP)
		return newLazyIPsec(dp), dp, nil
	case kernel.XFRM:
		b, err := xfrm.New(xfrm.Config{Logf: log.Logf})
		if err != nil {
			return nil, nil, err
		}
		flushLeftovers(log, b.Flush)
		return b, nil, nil
	case kernel.BSDKAME:
		b, err := pfkey.New(pfkey.Config{Logf: log.Logf})
		if err != nil {
			return nil, nil, err
		}
		flushLeftovers(log, b.Flush)
		return b, nil, nil
	}
	return nil, nil, fmt.Errorf("unknown back end %q", s.backend)
}

// flushLeftovers removes the SAs and policies an earlier run of ours left
// in the kernel (found by our reqids), never another daemon's.
func flushLeftovers(log *logging.Logger, flush func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := flush(ctx); err != nil {
		log.Warnf("removing what an earlier run left in the kernel: %v", err)
	}
}

// ikeStack is the engine with what it needs: the back end, the sockets
// and the timer goroutine.
type ikeStack struct {
	kern  kernel.IPsec
	dp    *dataPlane // nil without a user-space data plane
	eng   *ike.Engine
	socks *socket.Sockets
	raw   *socket.RawESP // raw ESP (IP protocol 50) for --use-userspace; nil: ESP in UDP only
	stop  chan struct{}
	wg    sync.WaitGroup

	// validator holds the trust store and the fetched CRLs and OCSP
	// answers; cancelFetch ends its fetches at shutdown.
	validator   *pki.Validator
	cancelFetch context.CancelFunc

	closeOnce sync.Once
	leftover  int // SAs the engine still held after Close, for the leak detective
}

func startIKE(s *settings, log *logging.Logger, secrets func() *config.Secrets) (*ikeStack, error) {
	st := &ikeStack{stop: make(chan struct{})}
	store, err := loadTrustStore(s, log)
	if err != nil {
		return nil, err
	}
	st.validator = newValidator(s, store, log)
	kern, dp, err := newIPsec(s, log, func(local, remote netip.AddrPort, pkt []byte) error {
		return st.socks.SendESP(local, remote, pkt)
	})
	if err != nil {
		return nil, err
	}
	st.kern, st.dp = kern, dp
	if dp != nil {
		dp.sendESPBatch = func(local, remote netip.AddrPort, pkts [][]byte) error {
			return st.socks.SendESPBatch(local, remote, pkts)
		}
	}
	if dp != nil && s.backend == kernel.Userspace {
		st.openRawESP(s, log)
	}
	st.eng, err = ike.NewEngine(ike.Options{
		// A user-space data plane without a raw ESP socket carries ESP
		// only in UDP.
		ForceEncapsulation: dp != nil && st.raw == nil,
		KeepAlive:          s.keepAlive,
		DDoSThreshold:      s.ddosIKEThreshold,
		ForceBusy:          s.forceBusy,
		UniqueIDs:          s.uniqueids,
		VirtualPrivate:     s.virtualPrivate,
		Kernel:             kern,
		Secrets:            secrets,
		Certificates:       ike.NewCertificates(st.validator, secrets),
		Log:                log,
		Workers:            s.nhelpers,
		Send:               st.send,
		VendorID:           s.vendorid,
		IKEPort:            s.ikeport,
		NATIKEPort:         s.natikeport,
		IsLocal:            func(a netip.Addr) bool { return isLocal(s.listen, a) },
	})
	if err != nil {
		st.closeRaw()
		kern.Close()
		return nil, err
	}
	st.socks, err = socket.Open(socket.Config{
		Listen:     s.listen,
		IKEPort:    s.ikeport,
		NATIKEPort: s.natikeport,
		OnIKE: func(local, remote netip.AddrPort, msg []byte) {
			// The socket reuses its buffer: Receive copies what it
			// queues for a worker.
			st.eng.Receive(ike.Packet{Local: local, Remote: remote, Data: msg})
		},
		OnESP:      st.onESP(),
		OnESPBatch: st.onESPBatch(),
		Logf:       log.Logf,
	})
	if err != nil {
		st.eng.Close(context.Background())
		st.closeRaw()
		kern.Close()
		return nil, err
	}
	if (s.backend == kernel.XFRM || s.backend == kernel.BSDKAME && runtime.GOOS == "linux") && os.Getenv(testKernelEnv) == "" {
		// The kernel takes ESP in UDP from the NAT-T sockets, and IKE
		// must pass by our own policies. On Linux the same socket options
		// serve both keying interfaces (XFRM and af_key).
		if err := st.socks.Control(xfrm.PrepareIKESocket); err != nil {
			st.close()
			return nil, fmt.Errorf("preparing the IKE sockets for XFRM: %v", err)
		}
	}
	st.wg.Add(2)
	go st.tick()
	go st.events()
	fetchCtx, cancel := context.WithCancel(context.Background())
	st.cancelFetch = cancel
	if s.crlCheckInterval > 0 {
		st.wg.Add(1)
		go st.refreshCRLs(fetchCtx, s.crlCheckInterval, log)
	}
	return st, nil
}

// events hands the data plane's acquires and expiries to the engine, until
// the back end closes its event channel.
func (st *ikeStack) events() {
	defer st.wg.Done()
	evs := st.kern.Events()
	for {
		select {
		case ev, ok := <-evs:
			if !ok {
				return
			}
			st.eng.HandleEvent(ev)
		case <-st.stop:
			return
		}
	}
}

// isLocal says whether a is an address of this host as pluto sees it: one
// of --listen's when given, else one on an interface (any 127/8 address is
// on lo). The engine orients conns by it, as Libreswan does.
func isLocal(listen []netip.Addr, a netip.Addr) bool {
	a = a.Unmap()
	if len(listen) > 0 {
		return slices.Contains(listen, a)
	}
	if a.IsLoopback() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ia := range addrs {
		if ipn, ok := ia.(*net.IPNet); ok {
			if b, ok := netip.AddrFromSlice(ipn.IP); ok && b.Unmap() == a {
				return true
			}
		}
	}
	return false
}

// openRawESP opens the raw ESP sockets of --use-userspace on the --listen
// addresses (or the wildcards), wired to the data plane. They need
// CAP_NET_RAW: without it the data plane carries ESP in UDP only, as with
// --use-netstack, which the log says.
func (st *ikeStack) openRawESP(s *settings, log *logging.Logger) {
	raw, err := socket.OpenRawESP(socket.RawESPConfig{
		Listen: s.listen,
		OnESP:  st.dp.deliverRawESP,
		Logf:   log.Logf,
	})
	if err != nil {
		log.Logf("%s: no raw ESP socket (%v): ESP is carried in UDP only (as encapsulation=yes)", s.backend.Flag(), err)
		return
	}
	st.raw = raw
	st.dp.sendRawESP = raw.Send
}

func (st *ikeStack) closeRaw() {
	if st.raw != nil {
		st.raw.Close()
	}
}

// onESP is the NAT-T socket's handler for ESP in UDP: the user-space data
// plane's, or none (the kernel takes ESP itself, or there is no data
// plane: the socket counts the drops).
func (st *ikeStack) onESP() func(local, remote netip.AddrPort, pkt []byte) {
	if st.dp == nil {
		return nil
	}
	return st.dp.deliverESP
}

// onESPBatch is the batch form of onESP, used where the socket reads in
// batches (recvmmsg on Linux).
func (st *ikeStack) onESPBatch() func(local, remote netip.AddrPort, pkts [][]byte) {
	if st.dp == nil {
		return nil
	}
	return st.dp.deliverESPBatch
}

func (st *ikeStack) send(p ike.Packet) {
	// Failures are counted by the sockets.
	if p.Keepalive {
		st.socks.SendKeepalive(p.Local, p.Remote)
		return
	}
	st.socks.Send(p.Local, p.Remote, p.Data)
}

func (st *ikeStack) tick() {
	defer st.wg.Done()
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			st.eng.Tick(now)
		case <-st.stop:
			return
		}
	}
}

// close deletes every SA with its peer (bounded), then stops the timers,
// the sockets and the back end, in that order: the deletes need the
// sockets.
func (st *ikeStack) close() {
	st.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st.eng.Close(ctx)
		cancel()
		es := st.eng.Status()
		st.leftover = len(es.IKESAs) + len(es.ChildSAs)
		if st.cancelFetch != nil {
			st.cancelFetch()
		}
		if st.stop != nil {
			select {
			case <-st.stop:
			default:
				close(st.stop)
			}
		}
		st.wg.Wait()
		st.socks.Close()
		st.closeRaw()
		if f, ok := st.kern.(interface{ Flush(context.Context) error }); ok {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			f.Flush(ctx)
			cancel()
		}
		st.kern.Close()
	})
}

// waitProgress streams an engine operation's progress to the client (the
// engine logs the same lines itself) and returns its result: nil, the
// operation's error, or ctx's.
func waitProgress(ctx context.Context, tell func(string), start func(func(ike.Progress)) error) error {
	done := make(chan error, 1)
	var once sync.Once
	err := start(func(p ike.Progress) {
		if p.Line != "" {
			tell(p.Line)
		}
		if p.Done {
			once.Do(func() { done <- p.Err })
		}
	})
	if err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("the client went away; the exchange goes on in the background")
	}
}

func (d *daemon) up(ctx context.Context, req *ctl.Request, tell func(string)) *ctl.Result {
	if d.findConn(req.Name) == nil {
		return ctl.Errorf(ctl.StatusNotFound, "no connection named %q is loaded (ipsec add %s first)", req.Name, req.Name)
	}
	err := waitProgress(ctx, tell, func(p func(ike.Progress)) error { return d.ike.eng.Initiate(req.Name, p) })
	if err != nil {
		return ctl.Errorf(ctl.StatusFailed, "%q: %v", req.Name, err)
	}
	return ctl.OK("")
}

func (d *daemon) down(ctx context.Context, req *ctl.Request, tell func(string)) *ctl.Result {
	if d.findConn(req.Name) == nil {
		return ctl.Errorf(ctl.StatusNotFound, "no connection named %q is loaded", req.Name)
	}
	err := waitProgress(ctx, tell, func(p func(ike.Progress)) error { return d.ike.eng.Terminate(req.Name, p) })
	if err != nil {
		return ctl.Errorf(ctl.StatusFailed, "%q: %v", req.Name, err)
	}
	return ctl.OK("")
}

// initiateAtStart brings up the auto=start conns in the background,
// logging their progress.
func (d *daemon) initiateAtStart(names []string) {
	for _, name := range names {
		name := name
		err := d.ike.eng.Initiate(name, func(p ike.Progress) {
			// The engine logs the progress lines itself.
			if p.Done && p.Err != nil {
				d.log.Warnf("%q: auto=start: %v", name, p.Err)
			}
		})
		if err != nil {
			d.log.Warnf("%q: auto=start: %v", name, err)
		}
	}
}

// trafficInfo is the machine form of one line of trafficstatus.
type trafficInfo struct {
	Conn       string   `json:"conn"`
	SPIIn      string   `json:"spi_in"`
	SPIOut     string   `json:"spi_out"`
	BytesIn    uint64   `json:"bytes_in"`
	BytesOut   uint64   `json:"bytes_out"`
	PacketsIn  uint64   `json:"packets_in"`
	PacketsOut uint64   `json:"packets_out"`
	LocalTS    []string `json:"local_ts"`
	RemoteTS   []string `json:"remote_ts"`
}

func (d *daemon) trafficStatus(req *ctl.Request) *ctl.Result {
	st := d.ike.eng.Status()
	list := []trafficInfo{}
	var b strings.Builder
	for _, c := range st.ChildSAs {
		ti := trafficInfo{Conn: c.Conn, SPIIn: fmt.Sprintf("%08x", c.SPIIn), SPIOut: fmt.Sprintf("%08x", c.SPIOut),
			BytesIn: c.BytesIn, BytesOut: c.BytesOut, PacketsIn: c.PacketsIn, PacketsOut: c.PacketsOut,
			LocalTS: c.LocalTS, RemoteTS: c.RemoteTS}
		list = append(list, ti)
		// Libreswan's format: #N: "conn", type=ESP, add_time=..., inBytes=..., outBytes=...
		fmt.Fprintf(&b, "%q: type=ESP, esp.%s@in, esp.%s@out, inBytes=%d, outBytes=%d, inPackets=%d, outPackets=%d, %s===%s\n",
			c.Conn, ti.SPIIn, ti.SPIOut, c.BytesIn, c.BytesOut, c.PacketsIn, c.PacketsOut,
			strings.Join(c.LocalTS, ","), strings.Join(c.RemoteTS, ","))
	}
	return d.data(req, strings.TrimRight(b.String(), "\n"), list)
}

// saText renders the SAs as "ipsec status" and "showstates" print them.
func saText(st ike.Status) string {
	var b strings.Builder
	half, established := 0, 0
	for _, sa := range st.IKESAs {
		if sa.Established.IsZero() {
			half++
		} else {
			established++
		}
	}
	fmt.Fprintf(&b, "State Information: IKE SAs: total(%d), half-open(%d), open(0), authenticated(%d)\n", len(st.IKESAs), half, established)
	fmt.Fprintf(&b, "IPsec SAs: total(%d)\n", len(st.ChildSAs))
	for _, sa := range st.IKESAs {
		role := "responder"
		if sa.Initiator {
			role = "initiator"
		}
		nat := ""
		if sa.NATUs || sa.NATPeer {
			nat = fmt.Sprintf("; NAT: us=%v peer=%v", sa.NATUs, sa.NATPeer)
		}
		fmt.Fprintf(&b, "%q: IKE SA %s:%s %s %s; %s...%s; %s; %s...%s; age %s, lifetime %s%s\n", sa.Conn, sa.SPIi, sa.SPIr, role, sa.State,
			sa.Local, sa.Remote, sa.Algorithms, sa.LocalID, sa.RemoteID, sa.Age.Round(time.Second), sa.Lifetime, nat)
	}
	for _, c := range st.ChildSAs {
		encap := ""
		if c.Encap {
			encap = " (UDP-encapsulated)"
		}
		fmt.Fprintf(&b, "%q: Child SA esp.%08x@in esp.%08x@out %s%s; %s; %s===%s; inBytes=%d outBytes=%d; age %s, lifetime %s\n", c.Conn, c.SPIIn, c.SPIOut,
			c.Mode, encap, c.Algorithms, strings.Join(c.LocalTS, ","), strings.Join(c.RemoteTS, ","), c.BytesIn, c.BytesOut, c.Age.Round(time.Second), c.Lifetime)
	}
	return b.String()
}
