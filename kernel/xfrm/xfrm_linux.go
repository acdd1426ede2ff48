package xfrm

// The back end: two netlink sockets, opened by New in the network
// namespace of the calling thread. One carries requests, one at a time
// (conn's mutex); the other is bound to the ACQUIRE and EXPIRE multicast
// groups and read by one goroutine that turns messages into kernel.Events.
// b.mu guards the table of what this Backend installed (sas), which holds
// what the kernel needs to find an SA again (its mark) and what UpdateSA
// needs to rebuild it (its keys).

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"goswan/kernel"
)

// Backend drives the kernel's XFRM tables. It implements kernel.IPsec.
type Backend struct {
	cfg    Config
	req    *conn
	mcast  *os.File
	events chan kernel.Event
	done   chan struct{} // closed when the event reader has returned

	mu     sync.Mutex
	sas    map[kernel.SAID]*saRecord
	closed bool

	dropped atomic.Uint64
}

// saRecord is what the Backend keeps of an SA it reserved or installed.
type saRecord struct {
	larval bool      // reserved by GetSPI, not yet added
	sa     kernel.SA // as installed (a copy, keys included)
}

var _ kernel.IPsec = (*Backend)(nil)

// New opens the netlink sockets in the calling thread's network namespace
// and starts reading events.
func New(cfg Config) (*Backend, error) {
	if cfg.EventBuffer <= 0 {
		cfg.EventBuffer = 256
	}
	req, err := dial()
	if err != nil {
		return nil, noXFRM(err)
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_XFRM)
	if err != nil {
		req.close()
		return nil, noXFRM(fmt.Errorf("opening an XFRM netlink socket for events: %w", err))
	}
	groups := uint32(1<<(groupAcquire-1) | 1<<(groupExpire-1))
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		req.close()
		return nil, fmt.Errorf("xfrm: joining the ACQUIRE and EXPIRE groups: %w", err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	b := &Backend{
		cfg:    cfg,
		req:    req,
		mcast:  os.NewFile(uintptr(fd), "xfrm-events"),
		events: make(chan kernel.Event, cfg.EventBuffer),
		done:   make(chan struct{}),
		sas:    map[kernel.SAID]*saRecord{},
	}
	go b.readEvents()
	return b, nil
}

func noXFRM(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return &kernel.UnavailableError{Backend: kernel.XFRM,
			Reason:  fmt.Sprintf("no permission to use XFRM netlink (%v): it needs root or CAP_NET_ADMIN", err),
			Instead: []kernel.Backend{kernel.Netstack}}
	}
	if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT) {
		return &kernel.UnavailableError{Backend: kernel.XFRM,
			Reason:  fmt.Sprintf("this kernel has no XFRM netlink (%v)", err),
			Instead: []kernel.Backend{kernel.Userspace, kernel.Netstack}}
	}
	return fmt.Errorf("xfrm: %w", err)
}

func (b *Backend) logf(format string, args ...any) {
	if b.cfg.Logf != nil {
		b.cfg.Logf(format, args...)
	}
}

// Dropped is the number of events that found the Events channel full.
func (b *Backend) Dropped() uint64 { return b.dropped.Load() }

func (b *Backend) Events() <-chan kernel.Event { return b.events }

// Close closes the sockets and, once the reader has stopped, the Events
// channel. It removes nothing from the kernel.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	err := b.mcast.Close()
	<-b.done
	close(b.events)
	if err2 := b.req.close(); err == nil {
		err = err2
	}
	return err
}

func (b *Backend) do(ctx context.Context, typ uint16, payload []byte) error {
	_, err := b.req.request(ctx, typ, unix.NLM_F_ACK, payload, 0)
	return err
}

// GetSPI reserves an SPI with XFRM_MSG_ALLOCSPI, which leaves a larval
// state in the kernel. Note that the kernel deletes a larval state after
// net.core.xfrm_acq_expires seconds (30 by default) and reports it as a
// hard expiry.
func (b *Backend) GetSPI(ctx context.Context, src, dst netip.Addr, proto kernel.Proto, reqid uint32) (uint32, error) {
	src, dst = src.Unmap(), dst.Unmap()
	if !src.IsValid() || !dst.IsValid() || family(src) != family(dst) {
		return 0, fmt.Errorf("xfrm: get SPI %v -> %v: want two addresses of one family", src, dst)
	}
	info := usersaInfo{
		Daddr: dst, Saddr: src, Proto: uint8(proto), Family: family(dst),
		ReqID: reqid, Mode: modeTunnel, Lft: infLifetime(),
	}
	p := make([]byte, sizeofUserspiInfo)
	info.put(p)
	ne.PutUint32(p[224:], 0x100) // 1-255 are reserved (RFC 4303 §2.1)
	ne.PutUint32(p[228:], 0xffffffff)
	msgs, err := b.req.request(ctx, msgAllocSPI, 0, p, msgNewSA)
	if err != nil {
		return 0, fmt.Errorf("xfrm: get SPI for %v %v -> %v: %w", proto, src, dst, err)
	}
	if len(msgs) != 1 {
		return 0, fmt.Errorf("xfrm: get SPI for %v %v -> %v: %d answers from the kernel", proto, src, dst, len(msgs))
	}
	st, err := getUsersaInfo(msgs[0])
	if err != nil {
		return 0, fmt.Errorf("xfrm: get SPI: %w", err)
	}
	id := kernel.SAID{Dst: dst, SPI: st.SPI, Proto: proto}
	b.mu.Lock()
	b.sas[id] = &saRecord{larval: true, sa: kernel.SA{SPI: st.SPI, Proto: proto, Src: src, Dst: dst, ReqID: reqid, Dir: kernel.In}}
	b.mu.Unlock()
	return st.SPI, nil
}

// AddSA installs sa. An inbound SA whose SPI came from GetSPI replaces its
// larval state (XFRM_MSG_UPDSA, as Libreswan and strongSwan do); any other
// is added (XFRM_MSG_NEWSA).
func (b *Backend) AddSA(ctx context.Context, sa *kernel.SA) error {
	id := normID(sa.ID())
	p, err := encodeState(sa, nil)
	if err != nil {
		return fmt.Errorf("xfrm: add SA %v: %w", id, err)
	}
	b.mu.Lock()
	rec := b.sas[id]
	b.mu.Unlock()
	typ := uint16(msgNewSA)
	if rec != nil && rec.larval {
		typ = msgUpdSA
	}
	err = b.do(ctx, typ, p)
	if typ == msgUpdSA && errors.Is(err, unix.ESRCH) {
		// The reservation outlived net.core.xfrm_acq_expires and the
		// kernel dropped it: the SPI is free again unless someone took
		// it, which NEWSA finds out.
		err = b.do(ctx, msgNewSA, p)
	}
	if err != nil {
		return stateError("add", id, sa, err)
	}
	cp := *sa
	cp.Src, cp.Dst = sa.Src.Unmap(), id.Dst
	cp.EncrKey = append([]byte(nil), sa.EncrKey...)
	cp.IntegKey = append([]byte(nil), sa.IntegKey...)
	cp.Selectors = append([]kernel.Selector(nil), sa.Selectors...)
	if sa.Encap != nil {
		e := *sa.Encap
		cp.Encap = &e
	}
	if sa.Mark != nil {
		m := *sa.Mark
		cp.Mark = &m
	}
	b.mu.Lock()
	b.sas[id] = &saRecord{sa: cp}
	b.mu.Unlock()
	return nil
}

func normID(id kernel.SAID) kernel.SAID {
	id.Dst = id.Dst.Unmap()
	return id
}

// stateError explains the kernel's refusal of an SA. A kernel built without
// ESP (or without the transform) refuses with ENOSYS ("Requested AEAD
// algorithm not found"), EPROTONOSUPPORT ("Requested type not found") and
// the like; the error then names the data planes that do not need it.
func stateError(op string, id kernel.SAID, sa *kernel.SA, err error) error {
	var ne *NetlinkError
	if errors.As(err, &ne) && noESP(ne) {
		what := "ESP"
		if sa.Proto == kernel.AH {
			what = "AH"
		}
		alg := ""
		if name, _, _, e := encrAlgo(sa.Encr, sa.EncrKey); e == nil && sa.Proto == kernel.ESP {
			alg = name
			if sa.Integ != 0 {
				if iname, _, e := integAlgo(sa.Integ, sa.IntegKey); e == nil {
					alg += " with " + iname
				}
			}
		}
		reason := fmt.Sprintf("the kernel refused an %s state (%v): it lacks %s support", what, ne, what)
		if alg != "" {
			reason += " or the " + alg + " transform"
		}
		return fmt.Errorf("xfrm: %s SA %v: %w", op, id, &kernelLacksError{
			UnavailableError: kernel.UnavailableError{Backend: kernel.XFRM, Reason: reason,
				Instead: []kernel.Backend{kernel.Userspace, kernel.Netstack}},
			err: ne,
		})
	}
	if errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("xfrm: %s SA %v: %w (%v)", op, id, kernel.ErrNotFound, err)
	}
	return fmt.Errorf("xfrm: %s SA %v: %w", op, id, err)
}

// kernelLacksError is a kernel.UnavailableError that also unwraps to the
// kernel's own error.
type kernelLacksError struct {
	kernel.UnavailableError
	err error
}

func (e *kernelLacksError) Unwrap() []error { return []error{&e.UnavailableError, e.err} }

func noESP(e *NetlinkError) bool {
	msg := strings.ToLower(e.Msg)
	if strings.Contains(msg, "algorithm not found") || strings.Contains(msg, "type not found") {
		return true
	}
	switch e.Errno {
	case unix.ENOSYS, unix.EPROTONOSUPPORT, unix.EOPNOTSUPP:
		return e.Msg == "" || strings.Contains(msg, "not found") || strings.Contains(msg, "not supported")
	}
	return false
}

// UpdateSA moves an installed SA to new outer addresses or a new UDP
// encapsulation. When only the encapsulation ports change the kernel
// updates the SA in place (XFRM_MSG_UPDSA). Otherwise the SA is read back,
// with its replay state and counters, and installed anew under the new
// addresses, and the old one is deleted; an outbound SA's sequence
// number moves on by oseqMargin so that no number is sent twice.
func (b *Backend) UpdateSA(ctx context.Context, id kernel.SAID, sa *kernel.SA) error {
	id = normID(id)
	b.mu.Lock()
	rec := b.sas[id]
	b.mu.Unlock()
	if rec == nil || rec.larval {
		return fmt.Errorf("xfrm: update SA %v: %w", id, kernel.ErrNotFound)
	}
	old := rec.sa
	nsa := old
	nsa.Src, nsa.Dst, nsa.Encap = sa.Src.Unmap(), sa.Dst.Unmap(), sa.Encap
	nid := normID(nsa.ID())

	if nsa.Src == old.Src && nsa.Dst == old.Dst && nsa.Encap != nil && old.Encap != nil {
		p, err := encodeState(&nsa, nil)
		if err != nil {
			return fmt.Errorf("xfrm: update SA %v: %w", id, err)
		}
		if err := b.do(ctx, msgUpdSA, p); err != nil {
			return stateError("update", id, &nsa, err)
		}
		b.mu.Lock()
		b.sas[id] = &saRecord{sa: nsa}
		b.mu.Unlock()
		return nil
	}

	st, err := b.getState(ctx, id, old.Mark)
	if err != nil {
		return stateError("update", id, &old, err)
	}
	carry := &carried{esn: st.ESN, legacy: st.Legacy, cur: st.Info.Cur}
	p, err := encodeState(&nsa, carry)
	if err != nil {
		return fmt.Errorf("xfrm: update SA %v: %w", id, err)
	}
	if nid != id {
		// A new name: add the new SA first, so that a refusal changes
		// nothing.
		if err := b.do(ctx, msgNewSA, p); err != nil {
			return stateError("update", nid, &nsa, err)
		}
		if err := b.delState(ctx, id, old.Mark); err != nil {
			b.logf("xfrm: update SA %v -> %v: deleting the old SA: %v", id, nid, err)
		}
	} else {
		// Same name (only the source or the encapsulation changed): the
		// old SA must go first; if the new one is refused, the old one
		// comes back.
		if err := b.delState(ctx, id, old.Mark); err != nil {
			return stateError("update", id, &old, err)
		}
		if err := b.do(ctx, msgNewSA, p); err != nil {
			if q, e := encodeState(&old, carry); e == nil {
				if e := b.do(ctx, msgNewSA, q); e != nil {
					b.logf("xfrm: update SA %v: putting the old SA back: %v", id, e)
				}
			}
			return stateError("update", id, &nsa, err)
		}
	}
	b.mu.Lock()
	delete(b.sas, id)
	b.sas[nid] = &saRecord{sa: nsa}
	b.mu.Unlock()
	return nil
}

func (b *Backend) getState(ctx context.Context, id kernel.SAID, mark *kernel.Mark) (*installedState, error) {
	p := make([]byte, sizeofUsersaID)
	putUsersaID(p, id.Dst, id.SPI, uint8(id.Proto))
	if mark != nil {
		p = appendAttr(p, attrMark, markAttr(xfrmMark(*mark)))
	}
	msgs, err := b.req.request(ctx, msgGetSA, 0, p, msgNewSA)
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, unix.ESRCH
	}
	return parseState(msgs[0])
}

func (b *Backend) delState(ctx context.Context, id kernel.SAID, mark *kernel.Mark) error {
	p := make([]byte, sizeofUsersaID)
	putUsersaID(p, id.Dst, id.SPI, uint8(id.Proto))
	if mark != nil {
		p = appendAttr(p, attrMark, markAttr(xfrmMark(*mark)))
	}
	return b.do(ctx, msgDelSA, p)
}

func (b *Backend) markOf(id kernel.SAID) *kernel.Mark {
	b.mu.Lock()
	defer b.mu.Unlock()
	if rec := b.sas[id]; rec != nil {
		return rec.sa.Mark
	}
	return nil
}

// QuerySA reads an SA's counters. LastUsed is the kernel's XFRMA_LASTUSED
// (the latest packet), or curlft.use_time (the first) on kernels that do
// not report it.
func (b *Backend) QuerySA(ctx context.Context, id kernel.SAID) (kernel.SAStats, error) {
	id = normID(id)
	st, err := b.getState(ctx, id, b.markOf(id))
	if err != nil {
		if errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) {
			return kernel.SAStats{}, fmt.Errorf("xfrm: query SA %v: %w", id, kernel.ErrNotFound)
		}
		return kernel.SAStats{}, fmt.Errorf("xfrm: query SA %v: %w", id, err)
	}
	return st.stats(), nil
}

// DeleteSA removes an SA or a larval state left by GetSPI.
func (b *Backend) DeleteSA(ctx context.Context, id kernel.SAID) error {
	id = normID(id)
	err := b.delState(ctx, id, b.markOf(id))
	b.mu.Lock()
	delete(b.sas, id)
	b.mu.Unlock()
	if err != nil {
		if errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("xfrm: delete SA %v: %w", id, kernel.ErrNotFound)
		}
		return fmt.Errorf("xfrm: delete SA %v: %w", id, err)
	}
	return nil
}

// AddPolicy installs or replaces p (XFRM_MSG_UPDPOLICY). A Priority of 0
// is replaced by Libreswan's priority for p's selector (Priority with
// PriorityStatic).
func (b *Backend) AddPolicy(ctx context.Context, p *kernel.Policy) error {
	msg, err := encodePolicy(p)
	if err != nil {
		return fmt.Errorf("xfrm: add %v policy %v: %w", p.Dir, p.Selector, err)
	}
	if err := b.do(ctx, msgUpdPolicy, msg); err != nil {
		return fmt.Errorf("xfrm: add %v policy %v: %w", p.Dir, p.Selector, err)
	}
	return nil
}

// DeletePolicy removes the policy with p's selector, direction, mark and
// interface id.
func (b *Backend) DeletePolicy(ctx context.Context, p *kernel.Policy) error {
	msg, err := encodePolicyID(p)
	if err != nil {
		return fmt.Errorf("xfrm: delete %v policy %v: %w", p.Dir, p.Selector, err)
	}
	if err := b.do(ctx, msgDelPolicy, msg); err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("xfrm: delete %v policy %v: %w", p.Dir, p.Selector, kernel.ErrNotFound)
		}
		return fmt.Errorf("xfrm: delete %v policy %v: %w", p.Dir, p.Selector, err)
	}
	return nil
}

func (b *Backend) dumpPolicies(ctx context.Context) ([]*installedPolicy, error) {
	msgs, err := b.req.request(ctx, msgGetPolicy, unix.NLM_F_DUMP, make([]byte, sizeofPolicyID), msgNewPolicy)
	if err != nil {
		return nil, err
	}
	var ps []*installedPolicy
	for _, m := range msgs {
		p, err := parsePolicy(m)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

func (b *Backend) dumpStates(ctx context.Context) ([]*installedState, error) {
	msgs, err := b.req.request(ctx, msgGetSA, unix.NLM_F_DUMP, make([]byte, sizeofUsersaID), msgNewSA)
	if err != nil {
		return nil, err
	}
	var ss []*installedState
	for _, m := range msgs {
		s, err := parseState(m)
		if err != nil {
			return nil, err
		}
		ss = append(ss, s)
	}
	return ss, nil
}

// Policies lists the policies in the kernel that goswan installed (by
// their reqid or their owner tag), in the interface's terms.
func (b *Backend) Policies(ctx context.Context) ([]kernel.Policy, error) {
	ps, err := b.dumpPolicies(ctx)
	if err != nil {
		return nil, fmt.Errorf("xfrm: listing policies: %w", err)
	}
	var out []kernel.Policy
	for _, p := range ps {
		if p.Info.Dir <= 2 && p.ours() {
			out = append(out, p.policy())
		}
	}
	return out, nil
}

// Flush removes every SA (larval ones included) whose reqid is goswan's
// and every policy that goswan installed, and leaves everything else
// alone. The daemon calls it at start, for what a crashed run left
// behind, and at shutdown.
func (b *Backend) Flush(ctx context.Context) error {
	var errs []error
	ps, err := b.dumpPolicies(ctx)
	if err != nil {
		return fmt.Errorf("xfrm: flush: listing policies: %w", err)
	}
	npol := 0
	for _, p := range ps {
		if p.Info.Dir > 2 || !p.ours() { // socket policies (dir 3-5) are the sockets' own
			continue
		}
		msg := make([]byte, sizeofPolicyID)
		putPolicyID(msg, p.Info.Sel, 0, p.Info.Dir)
		if p.Mark != nil {
			msg = appendAttr(msg, attrMark, markAttr(*p.Mark))
		}
		if p.IfID != 0 {
			msg = appendAttr(msg, attrIfID, u32Attr(p.IfID))
		}
		if p.Type != 0 {
			msg = appendAttr(msg, attrPolicyType, []byte{p.Type, 0, 0, 0, 0, 0})
		}
		if err := b.do(ctx, msgDelPolicy, msg); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("policy %v: %w", selectorFromXFRM(p.Info.Sel), err))
			continue
		}
		npol++
	}
	ss, err := b.dumpStates(ctx)
	if err != nil {
		return fmt.Errorf("xfrm: flush: listing SAs: %w", err)
	}
	nsa := 0
	for _, s := range ss {
		if !kernel.OurReqID(s.Info.ReqID) {
			continue
		}
		spi := s.Info.SPI
		if spi == 0 {
			// A larval state that the kernel made for an ACQUIRE (a
			// packet that hit one of our trap policies) has no SPI, and
			// XFRM_MSG_DELSA finds states by SPI only: give it one first.
			var err error
			if spi, err = b.spiForAcquire(ctx, s); err != nil {
				if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) {
					errs = append(errs, fmt.Errorf("larval SA for an acquire (seq %d) to %v: %w", s.Info.Seq, s.Info.Daddr, err))
				}
				continue
			}
		}
		msg := make([]byte, sizeofUsersaID)
		putUsersaID(msg, s.Info.Daddr, spi, s.Info.Proto)
		if s.Mark != nil {
			msg = appendAttr(msg, attrMark, markAttr(*s.Mark))
		}
		if err := b.do(ctx, msgDelSA, msg); err != nil {
			if !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("SA %v: %w", s.id(), err))
			}
			continue // gone meanwhile: not removed by us
		}
		nsa++
	}
	b.mu.Lock()
	clear(b.sas)
	b.mu.Unlock()
	if npol+nsa > 0 {
		b.logf("xfrm: flush removed %d policies and %d SAs of goswan's", npol, nsa)
	}
	if len(errs) > 0 {
		return fmt.Errorf("xfrm: flush: %w", errors.Join(errs...))
	}
	return nil
}

// spiForAcquire gives the kernel's larval state s (SPI 0, made for an
// ACQUIRE) an SPI with XFRM_MSG_ALLOCSPI, which finds it by its sequence
// number (the acquire's), so that XFRM_MSG_DELSA can then remove it.
// Without this such a state outlives the daemon by up to
// net.core.xfrm_acq_expires seconds (30), and while it is there the
// kernel raises no new ACQUIRE for its flow: a restarted daemon's trap
// stays silent.
func (b *Backend) spiForAcquire(ctx context.Context, s *installedState) (uint32, error) {
	info := usersaInfo{
		Sel: s.Info.Sel, Daddr: s.Info.Daddr, Saddr: s.Info.Saddr, Proto: s.Info.Proto,
		Family: s.Info.Family, Seq: s.Info.Seq, ReqID: s.Info.ReqID, Mode: s.Info.Mode, Lft: infLifetime(),
	}
	p := make([]byte, sizeofUserspiInfo)
	info.put(p)
	ne.PutUint32(p[224:], 0x100)
	ne.PutUint32(p[228:], 0xffffffff)
	if s.Mark != nil {
		p = appendAttr(p, attrMark, markAttr(*s.Mark))
	}
	msgs, err := b.req.request(ctx, msgAllocSPI, 0, p, msgNewSA)
	if err != nil {
		return 0, err
	}
	if len(msgs) != 1 {
		return 0, fmt.Errorf("%d answers from the kernel", len(msgs))
	}
	st, err := getUsersaInfo(msgs[0])
	if err != nil {
		return 0, err
	}
	if st.SPI == 0 {
		return 0, errors.New("the kernel gave it no SPI")
	}
	return st.SPI, nil
}

// readEvents turns the multicast messages into Events until Close.
func (b *Backend) readEvents() {
	defer close(b.done)
	rc, err := b.mcast.SyscallConn()
	if err != nil {
		b.logf("xfrm: events: %v", err)
		return
	}
	buf := make([]byte, 1<<16)
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
			return rerr != unix.EAGAIN
		})
		if err != nil {
			return // closed
		}
		if rerr != nil {
			if rerr == unix.ENOBUFS {
				b.logf("xfrm: events: the kernel dropped events (socket buffer full)")
				b.dropped.Add(1)
				continue
			}
			if rerr == unix.EINTR {
				continue
			}
			b.logf("xfrm: events: %v", rerr)
			return
		}
		for _, ev := range b.parseEvents(buf[:n]) {
			if ev.Kind == kernel.HardExpire { // the kernel has deleted it
				b.mu.Lock()
				delete(b.sas, ev.SA)
				b.mu.Unlock()
			}
			select {
			case b.events <- ev:
			default:
				if n := b.dropped.Add(1); n&(n-1) == 0 { // log at 1, 2, 4, 8...
					b.logf("xfrm: events: channel full, %d events dropped", n)
				}
			}
		}
	}
}

// parseEvents reads the netlink messages in one datagram.
func (b *Backend) parseEvents(d []byte) []kernel.Event {
	var evs []kernel.Event
	for len(d) >= sizeofNlmsghdr {
		l := int(ne.Uint32(d[0:]))
		if l < sizeofNlmsghdr || l > len(d) {
			b.logf("xfrm: events: malformed message of %d bytes in %d", l, len(d))
			break
		}
		typ := ne.Uint16(d[4:])
		body := d[sizeofNlmsghdr:l]
		if ev, ok, err := eventFromMessage(typ, body, b.cfg.AllReqIDs); err != nil {
			b.logf("xfrm: events: %v", err)
		} else if ok {
			evs = append(evs, ev)
		}
		if nl := align4(l); nl < len(d) {
			d = d[nl:]
		} else {
			break
		}
	}
	return evs
}
