// Package pfkey is the kernel.IPsec back end for PF_KEY v2 (RFC 2367) with
// the KAME extensions, as FreeBSD, NetBSD and Linux's af_key speak it
// (pluto's --use-bsdkame). msg.go turns messages into typed Go values and
// back; layout.go holds what differs between those kernels.
//
// # Flow
//
// New opens one PF_KEY socket and registers it for ESP, so that the kernel
// sends it ACQUIREs and EXPIREs. One reader goroutine (read) takes every
// message off the socket. A method of kernel.IPsec encodes its request with
// a fresh sadb_msg_seq and this process's pid, registers a waiter under the
// seq, writes the request and waits for the reply the reader hands it: the
// kernel copies seq and pid into its reply (and broadcasts successful
// replies to every PF_KEY socket, which is why the pid is checked too).
// DUMP and SPDDUMP replies come as a series whose seq counts down to 0;
// one dump runs at a time (dumpMu) and the reader collects it. ACQUIRE and
// EXPIRE become kernel.Events for the SAs and policies this back end
// installed; those of other daemons are ignored.
//
// # Reqids
//
// Linux and the BSDs replace a reqid above IPSEC_MANUAL_REQID_MAX (0x3fff)
// in a policy's ipsecrequest with one of their own, and goswan's reqids
// (kernel.ReqIDBase, 0x67xxxxxx) are far above it. So the back end maps
// each goswan reqid in use to a kernel reqid in [KernelReqIDMin,
// KernelReqIDMax] and uses that in both the SA (SA2) and the policy, which
// must agree for the policy to find the SA (level unique). Flush takes that
// range as the mark of what an earlier run of goswan left behind.
//
// # Locking
//
// mu guards the tables of SAs, policies and reqids; wmu the waiters and the
// dump in progress. No lock is held while waiting for the kernel: the reader
// needs mu to turn an EXPIRE into an event. A method therefore reserves what
// it needs under mu (a reqid), talks to the kernel without it, and records
// the outcome under mu again. evMu orders event delivery against Close.
package pfkey

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"goswan/kernel"
	"goswan/proposal"
)

// The kernel reqids this back end gives out; see the package comment.
const (
	KernelReqIDMin = 0x2000
	KernelReqIDMax = ReqIDManualMax
)

// Config is what New needs; the zero value works.
type Config struct {
	// Logf logs; nil is silent.
	Logf func(format string, args ...any)
	// Events is the size of the event channel; 0 means 256.
	Events int
	// Timeout bounds the wait for each reply of the kernel when the
	// context allows longer; 0 means 5 s.
	Timeout time.Duration
	// SPIMin and SPIMax bound the SPIs GetSPI asks for (SADB_EXT_SPIRANGE);
	// 0 means 0x100 and 0xffffffff.
	SPIMin, SPIMax uint32
}

// conn is the PF_KEY socket: one message per Send and per Recv. Close makes
// a blocked Recv return an error.
type conn interface {
	Send(b []byte) error
	Recv(b []byte) (int, error)
	Close() error
}

// Backend is the PF_KEY kernel.IPsec.
type Backend struct {
	l       *Layout
	c       conn
	logf    func(string, ...any)
	pid     uint32
	timeout time.Duration
	spiMin  uint32
	spiMax  uint32
	seq     atomic.Uint32
	larval  atomic.Uint32 // counter for Layout.GetSPIFreshReqID

	wmu     sync.Mutex
	waiters map[uint32]*waiter
	dump    *dumpState
	dumpMu  sync.Mutex

	mu       sync.Mutex
	sas      map[kernel.SAID]*saEntry
	policies map[policyKey]*policyEntry
	byID     map[uint32]*policyEntry // by the kernel's policy id
	reqids   reqidTable
	suppAuth []Alg
	suppEncr []Alg

	evMu     sync.RWMutex
	evClosed bool
	events   chan kernel.Event
	dropped  atomic.Uint64

	closeOnce  sync.Once
	done       chan struct{}
	readerDone chan struct{}
}

var _ kernel.IPsec = (*Backend)(nil)

// saEntry is an SA this back end installed or an SPI it reserved.
type saEntry struct {
	sa     kernel.SA // keys included: UpdateSA may have to add it again
	larval bool      // reserved by GetSPI, not yet completed by AddSA
	kreqid uint32    // the reqid the kernel knows it by
	ref    uint32    // the goswan reqid whose kernel reqid it holds; 0: none

	lastBytes uint64    // byte counter at the last QuerySA
	lastSeen  time.Time // when QuerySA first saw lastBytes
}

type policyKey struct {
	dir kernel.Direction
	sel kernel.Selector
}

type policyEntry struct {
	p   kernel.Policy
	id  uint32 // sadb_x_policy_id the kernel gave it
	ref uint32 // goswan reqid held, 0: none
}

type waiter struct {
	ch   chan *Message
	typ  MsgType
	dump bool // a dump's request: only an error reply comes with its seq
}

type dumpState struct {
	typ  MsgType
	msgs []*Message
	done chan struct{}
}

// Error is a request that failed: refused by the kernel (Errno) or not sent
// or not answered (Err). errors.Is sees the errno.
type Error struct {
	Type  MsgType
	Errno syscall.Errno
	Err   error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("pfkey %v: %v", e.Type, e.Err)
	}
	return fmt.Sprintf("pfkey %v: the kernel answered errno %d (%v)", e.Type, int(e.Errno), e.Errno)
}

func (e *Error) Unwrap() error {
	if e.Err != nil {
		return e.Err
	}
	return e.Errno
}

// unavailableError is what New returns when there is no PF_KEY here: a
// kernel.UnavailableError that names the flags to use instead, wrapping the
// errno of socket(2) as well.
type unavailableError struct {
	*kernel.UnavailableError
	err error
}

func (e *unavailableError) Unwrap() []error { return []error{e.UnavailableError, e.err} }

// New opens a PF_KEY socket and registers it for ESP. Where the kernel has
// no PF_KEY (Linux without af_key) or the process may not open one, the
// error is a *kernel.UnavailableError that names the flags to use instead.
func New(cfg Config) (*Backend, error) {
	if Native == nil {
		return nil, &kernel.UnavailableError{Backend: kernel.BSDKAME,
			Reason:  "this system has no KAME PF_KEY that goswan speaks (only FreeBSD, NetBSD and Linux's af_key)",
			Instead: []kernel.Backend{kernel.Userspace, kernel.Netstack}}
	}
	c, err := openSocket()
	if err != nil {
		return nil, err
	}
	return newBackend(cfg, Native, c)
}

func newBackend(cfg Config, l *Layout, c conn) (*Backend, error) {
	b := &Backend{
		l:          l,
		c:          c,
		logf:       cfg.Logf,
		pid:        uint32(os.Getpid()),
		timeout:    cfg.Timeout,
		spiMin:     cfg.SPIMin,
		spiMax:     cfg.SPIMax,
		waiters:    map[uint32]*waiter{},
		sas:        map[kernel.SAID]*saEntry{},
		policies:   map[policyKey]*policyEntry{},
		byID:       map[uint32]*policyEntry{},
		reqids:     reqidTable{byOurs: map[uint32]*reqidRef{}, byKernel: map[uint32]uint32{}},
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
	}
	if b.logf == nil {
		b.logf = func(string, ...any) {}
	}
	if b.timeout <= 0 {
		b.timeout = 5 * time.Second
	}
	if b.spiMin == 0 {
		b.spiMin = 0x100
	}
	if b.spiMax == 0 {
		b.spiMax = math.MaxUint32
	}
	n := cfg.Events
	if n <= 0 {
		n = 256
	}
	b.events = make(chan kernel.Event, n)
	var r [4]byte
	rand.Read(r[:])
	b.seq.Store(binary.BigEndian.Uint32(r[:]))

	go b.read()
	reply, err := b.request(context.Background(), &Message{Type: MsgRegister, SAType: SATypeESP})
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("pfkey: registering for ESP: %w", err)
	}
	if reply.SupportedAuth != nil {
		b.suppAuth = reply.SupportedAuth.Algs
	}
	if reply.SupportedEncr != nil {
		b.suppEncr = reply.SupportedEncr.Algs
	}
	return b, nil
}

// Layout is the dialect the back end speaks.
func (b *Backend) Layout() *Layout { return b.l }

// Supported returns the algorithms the kernel listed in its answer to
// SADB_REGISTER.
func (b *Backend) Supported() (auth, encr []Alg) { return b.suppAuth, b.suppEncr }

// Dropped is the number of events nobody read in time.
func (b *Backend) Dropped() uint64 { return b.dropped.Load() }

// Events delivers acquires and expiries of what this back end installed.
func (b *Backend) Events() <-chan kernel.Event { return b.events }

// Close stops the reader and closes the socket; SAs and policies stay in
// the kernel.
func (b *Backend) Close() error {
	var err error
	b.closeOnce.Do(func() {
		close(b.done)
		err = b.c.Close()
		<-b.readerDone
		b.evMu.Lock()
		b.evClosed = true
		close(b.events)
		b.evMu.Unlock()
	})
	return err
}

func (b *Backend) closed() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// --- talking to the kernel ---

func (b *Backend) nextSeq() uint32 {
	for {
		if s := b.seq.Add(1); s != 0 {
			return s
		}
	}
}

// request sends m and returns the kernel's reply; a reply with an errno
// is an *Error.
func (b *Backend) request(ctx context.Context, m *Message) (*Message, error) {
	w := &waiter{ch: make(chan *Message, 1), typ: m.Type}
	if err := b.send(m, w); err != nil {
		return nil, err
	}
	defer b.unwait(m.Seq)
	t := time.NewTimer(b.timeout)
	defer t.Stop()
	select {
	case r := <-w.ch:
		if r.Errno != 0 {
			return r, &Error{Type: m.Type, Errno: syscall.Errno(r.Errno)}
		}
		return r, nil
	case <-ctx.Done():
		return nil, &Error{Type: m.Type, Err: ctx.Err()}
	case <-t.C:
		return nil, &Error{Type: m.Type, Err: fmt.Errorf("no answer from the kernel in %v", b.timeout)}
	case <-b.done:
		return nil, &Error{Type: m.Type, Err: errors.New("back end closed")}
	}
}

func (b *Backend) send(m *Message, w *waiter) error {
	if b.closed() {
		return &Error{Type: m.Type, Err: errors.New("back end closed")}
	}
	m.Seq, m.PID = b.nextSeq(), b.pid
	buf, err := m.Encode(b.l)
	if err != nil {
		return err
	}
	b.wmu.Lock()
	b.waiters[m.Seq] = w
	b.wmu.Unlock()
	if err := b.c.Send(buf); err != nil {
		b.unwait(m.Seq)
		return &Error{Type: m.Type, Err: err}
	}
	return nil
}

func (b *Backend) unwait(seq uint32) {
	b.wmu.Lock()
	delete(b.waiters, seq)
	b.wmu.Unlock()
}

// dumpAll sends a DUMP or SPDDUMP and collects the series of replies. An
// empty table is ENOENT from every kernel; that is no error here.
func (b *Backend) dumpAll(ctx context.Context, m *Message) ([]*Message, error) {
	b.dumpMu.Lock()
	defer b.dumpMu.Unlock()
	d := &dumpState{typ: m.Type, done: make(chan struct{})}
	b.wmu.Lock()
	b.dump = d
	b.wmu.Unlock()
	defer func() {
		b.wmu.Lock()
		b.dump = nil
		b.wmu.Unlock()
	}()
	w := &waiter{ch: make(chan *Message, 1), typ: m.Type, dump: true}
	if err := b.send(m, w); err != nil {
		return nil, err
	}
	defer b.unwait(m.Seq)
	t := time.NewTimer(4 * b.timeout)
	defer t.Stop()
	select {
	case r := <-w.ch:
		if syscall.Errno(r.Errno) == syscall.ENOENT {
			return nil, nil
		}
		return nil, &Error{Type: m.Type, Errno: syscall.Errno(r.Errno)}
	case <-d.done:
		b.wmu.Lock()
		defer b.wmu.Unlock()
		return d.msgs, nil
	case <-ctx.Done():
		return nil, &Error{Type: m.Type, Err: ctx.Err()}
	case <-t.C:
		return nil, &Error{Type: m.Type, Err: fmt.Errorf("dump not finished in %v", 4*b.timeout)}
	case <-b.done:
		return nil, &Error{Type: m.Type, Err: errors.New("back end closed")}
	}
}

// read takes every message off the socket until Close.
func (b *Backend) read() {
	defer close(b.readerDone)
	buf := make([]byte, maxMsgLen+8)
	for {
		n, err := b.c.Recv(buf)
		if err != nil {
			if b.closed() {
				return
			}
			b.logf("pfkey: reading the PF_KEY socket: %v", err)
			select {
			case <-b.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		m, err := Decode(b.l, buf[:n])
		if err != nil {
			b.logf("pfkey: dropping a message from the kernel: %v", err)
			continue
		}
		b.dispatch(m)
	}
}

func (b *Backend) dispatch(m *Message) {
	if m.PID == b.pid {
		b.wmu.Lock()
		w := b.waiters[m.Seq]
		if w != nil && (m.Type == w.typ || (w.typ == MsgGet && m.Type == MsgDump)) && (!w.dump || m.Errno != 0) {
			delete(b.waiters, m.Seq)
			b.wmu.Unlock()
			w.ch <- m
			return
		}
		if d := b.dump; d != nil && m.Type == d.typ && m.Errno == 0 {
			select {
			case <-d.done:
			default:
				d.msgs = append(d.msgs, m)
				if m.Seq == 0 {
					close(d.done)
				}
			}
			b.wmu.Unlock()
			return
		}
		b.wmu.Unlock()
	}
	if m.Errno != 0 {
		return
	}
	switch m.Type {
	case MsgAcquire:
		b.acquired(m)
	case MsgExpire:
		b.expired(m)
	}
}

func (b *Backend) emit(ev kernel.Event) {
	b.evMu.RLock()
	defer b.evMu.RUnlock()
	if b.evClosed {
		return
	}
	select {
	case b.events <- ev:
	default:
		b.dropped.Add(1)
	}
}

// acquired turns an ACQUIRE for one of our policies into an event. Neither
// Linux nor FreeBSD send the packet's selector, only the SA's end points
// and the policy id, so the event carries the policy's selector.
func (b *Backend) acquired(m *Message) {
	if m.Policy == nil {
		b.logf("pfkey: ACQUIRE without a policy extension, seq %d", m.Seq)
		return
	}
	b.mu.Lock()
	e := b.byID[m.Policy.ID]
	var ev kernel.Event
	if e != nil {
		ev = kernel.Event{Kind: kernel.Acquire, Selector: e.p.Selector, ReqID: e.p.Template.ReqID}
	}
	b.mu.Unlock()
	if e == nil {
		return // another daemon's policy
	}
	b.emit(ev)
}

// expired turns an EXPIRE of one of our SAs into an event. A hard expiry
// means the kernel has removed the SA. The kernels give a larval SA (a
// reservation of GetSPI) 30 s; its expiry only ends the reservation, and
// AddSA then adds instead of updating.
func (b *Backend) expired(m *Message) {
	if m.SA == nil || m.Dst == nil {
		return
	}
	proto, ok := protoOf(m.SAType)
	if !ok {
		return
	}
	hard := m.LifetimeHard != nil || m.LifetimeSoft == nil
	id := kernel.SAID{Dst: m.Dst.Addr, SPI: m.SA.SPI, Proto: proto}
	b.mu.Lock()
	e := b.findSA(id)
	if e == nil {
		b.mu.Unlock()
		return
	}
	ev := kernel.Event{Kind: kernel.SoftExpire, SA: e.sa.ID(), ReqID: e.sa.ReqID}
	if hard {
		ev.Kind = kernel.HardExpire
		b.dropSA(e.sa.ID(), e)
	}
	larval := e.larval
	b.mu.Unlock()
	if larval {
		b.logf("pfkey: the reservation of SPI %#08x for %v expired", id.SPI, id.Dst)
		return
	}
	b.emit(ev)
}

// findSA finds our entry for id, whose Dst may be written unmapped.
func (b *Backend) findSA(id kernel.SAID) *saEntry {
	if e := b.sas[id]; e != nil {
		return e
	}
	for k, e := range b.sas {
		if k.SPI == id.SPI && k.Proto == id.Proto && k.Dst.Unmap() == id.Dst.Unmap() {
			return e
		}
	}
	return nil
}

// dropSA forgets e, filed under id; mu is held.
func (b *Backend) dropSA(id kernel.SAID, e *saEntry) {
	if b.sas[id] == e {
		delete(b.sas, id)
		b.reqids.put(e.ref)
	}
}

// --- kernel.IPsec ---

func saType(p kernel.Proto) (SAType, error) {
	switch p {
	case kernel.ESP:
		return SATypeESP, nil
	case kernel.AH:
		return SATypeAH, nil
	}
	return 0, fmt.Errorf("PF_KEY has no SA type for protocol %v", p)
}

func protoOf(t SAType) (kernel.Proto, bool) {
	switch t {
	case SATypeESP:
		return kernel.ESP, true
	case SATypeAH:
		return kernel.AH, true
	}
	return 0, false
}

// saAddress is the address extension of an SA's end point.
func saAddress(a netip.Addr) *Address {
	a = a.Unmap()
	return &Address{Proto: ULProtoAny, PrefixLen: uint8(a.BitLen()), Addr: a}
}

func unspecified(like netip.Addr) netip.Addr {
	if like.Unmap().Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

func checkPair(src, dst netip.Addr) error {
	if !src.IsValid() || !dst.IsValid() {
		return fmt.Errorf("addresses %v and %v: both must be set", src, dst)
	}
	if src.Unmap().Is4() != dst.Unmap().Is4() {
		return fmt.Errorf("addresses %v and %v are of different families", src, dst)
	}
	return nil
}

func notFound(err error) bool {
	return errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ENOENT)
}

// GetSPI reserves an SPI: SADB_GETSPI makes a larval SA that AddSA
// completes with SADB_UPDATE. The kernels drop a larval SA after 30 s.
func (b *Backend) GetSPI(ctx context.Context, src, dst netip.Addr, proto kernel.Proto, reqid uint32) (uint32, error) {
	satype, err := saType(proto)
	if err == nil {
		err = checkPair(src, dst)
	}
	if err != nil {
		return 0, fmt.Errorf("get SPI from %v to %v: %w", src, dst, err)
	}
	var kreqid, ref uint32
	if b.l.GetSPIFreshReqID {
		kreqid = kernel.ReqIDBase | b.larval.Add(1)&^kernel.ReqIDMask
	} else {
		b.mu.Lock()
		kreqid, err = b.reqids.get(reqid)
		b.mu.Unlock()
		if err != nil {
			return 0, fmt.Errorf("get SPI from %v to %v: %w", src, dst, err)
		}
		ref = reqid
	}
	m := &Message{Type: MsgGetSPI, SAType: satype, Src: saAddress(src), Dst: saAddress(dst),
		SPIRange: &SPIRange{Min: b.spiMin, Max: b.spiMax},
		SA2:      &SA2{Mode: ModeAny, ReqID: kreqid}}
	r, err := b.request(ctx, m)
	if err == nil && r.SA == nil {
		err = errors.New("the kernel's answer has no SA extension")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.reqids.put(ref)
		return 0, fmt.Errorf("get SPI from %v to %v: %w", src, dst, err)
	}
	id := kernel.SAID{Dst: dst, SPI: r.SA.SPI, Proto: proto}
	if old := b.sas[id]; old != nil {
		b.reqids.put(ref)
		return 0, fmt.Errorf("get SPI from %v to %v: the kernel gave SPI %#08x, which is taken", src, dst, id.SPI)
	}
	b.sas[id] = &saEntry{
		sa:     kernel.SA{SPI: id.SPI, Proto: proto, Dir: kernel.In, Src: src, Dst: dst, ReqID: reqid},
		larval: true, kreqid: kreqid, ref: ref,
	}
	return id.SPI, nil
}

// AddSA installs sa: SADB_UPDATE when it completes a reservation of
// GetSPI, SADB_ADD otherwise.
func (b *Backend) AddSA(ctx context.Context, sa *kernel.SA) error {
	id := sa.ID()
	b.mu.Lock()
	old := b.sas[id]
	if old != nil && !old.larval {
		b.mu.Unlock()
		return fmt.Errorf("add SA %v: already installed", id)
	}
	kreqid, err := b.reqids.get(sa.ReqID)
	b.mu.Unlock()
	if err != nil {
		return fmt.Errorf("add SA %v: %w", id, err)
	}
	typ := MsgAdd
	if old != nil {
		typ = MsgUpdate
	}
	m, err := b.l.SAMessage(typ, sa, kreqid)
	if err == nil {
		_, err = b.request(ctx, m)
		if typ == MsgUpdate && notFound(err) { // the reservation expired
			m.Type = MsgAdd
			_, err = b.request(ctx, m)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.reqids.put(sa.ReqID)
		return fmt.Errorf("add SA %v: %w", id, err)
	}
	if cur := b.sas[id]; cur != nil {
		b.dropSA(id, cur)
	}
	e := &saEntry{sa: *sa, kreqid: kreqid, ref: sa.ReqID}
	e.sa.EncrKey = append([]byte(nil), sa.EncrKey...)
	e.sa.IntegKey = append([]byte(nil), sa.IntegKey...)
	e.sa.Selectors = append([]kernel.Selector(nil), sa.Selectors...)
	b.sas[id] = e
	return nil
}

// SAMessage is the SADB_ADD or SADB_UPDATE that installs sa with the
// kernel reqid kreqid in this dialect.
func (l *Layout) SAMessage(typ MsgType, sa *kernel.SA, kreqid uint32) (*Message, error) {
	satype, err := saType(sa.Proto)
	if err != nil {
		return nil, err
	}
	if err := checkPair(sa.Src, sa.Dst); err != nil {
		return nil, err
	}
	if sa.Mark != nil || sa.IfID != 0 {
		return nil, errors.New("PF_KEY has no marks or interface ids")
	}
	encr, ok := l.Encr[sa.Encr]
	if !ok {
		return nil, fmt.Errorf("%s's PF_KEY has no encryption algorithm for %v", l.Name, sa.Encr)
	}
	integ, ok := l.Integ[sa.Integ]
	if !ok {
		return nil, fmt.Errorf("%s's PF_KEY has no integrity algorithm for %v", l.Name, sa.Integ)
	}
	if sa.Integ == proposal.IntegHMACSHA2256128 && l.SHA256Trunc96 {
		return nil, fmt.Errorf("%s's PF_KEY installs HMAC-SHA2-256 with a 96-bit ICV, not the 128 bits of RFC 4868 "+
			"that %v means and the peer uses; use --use-xfrm, or another integrity algorithm (sha2_512, sha2_384, sha1)", l.Name, sa.Integ)
	}
	if sa.Encr.AEAD() {
		if l.AEADRefused {
			return nil, fmt.Errorf("%s's PF_KEY refuses AEAD transforms such as %v (af_key answers ENOSYS); use --use-xfrm or a proposal without AEAD", l.Name, sa.Encr)
		}
		if sa.Integ != proposal.IntegNone {
			return nil, fmt.Errorf("AEAD transform %v with integrity %v", sa.Encr, sa.Integ)
		}
	}
	if salt := sa.Encr.SaltSize(); salt > 0 && len(sa.EncrKey) <= salt {
		return nil, fmt.Errorf("%v key of %d bytes: want the key and a %d-byte salt", sa.Encr, len(sa.EncrKey), salt)
	}
	if len(sa.EncrKey)*8 > math.MaxUint16 || len(sa.IntegKey)*8 > math.MaxUint16 {
		return nil, errors.New("key too long")
	}
	var flags uint32
	if sa.ESN {
		if l.ESNFlag == 0 {
			return nil, fmt.Errorf("%s's PF_KEY has no extended sequence numbers", l.Name)
		}
		flags |= l.ESNFlag
	}
	mode := ModeTunnel
	if sa.Mode == kernel.Transport {
		mode = ModeTransport
	}
	m := &Message{Type: typ, SAType: satype,
		SA:  &SA{SPI: sa.SPI, State: StateMature, Auth: integ, Encrypt: encr, Flags: flags},
		Src: saAddress(sa.Src), Dst: saAddress(sa.Dst),
		SA2: &SA2{Mode: mode, ReqID: kreqid},
	}
	w := sa.ReplayWindow
	if l.ReplayBytes {
		m.SA.Replay = uint8(min((uint64(w)+7)/8, 255))
		if uint64(w) > uint64(l.ReplayMax) && l.ExtSAReplay != 0 {
			m.SAReplay = &SAReplay{Replay: w}
		}
	} else {
		m.SA.Replay = uint8(min(w, l.ReplayMax, 255))
	}
	if sa.Proto == kernel.ESP {
		// ESP needs KEY_ENCRYPT even for NULL, with no bits.
		m.EncryptKey = &Key{Bits: uint16(len(sa.EncrKey) * 8), Data: sa.EncrKey}
	}
	if integ != AAlgNone {
		m.AuthKey = &Key{Bits: uint16(len(sa.IntegKey) * 8), Data: sa.IntegKey}
	}
	if sa.Lifetime.Hard != (kernel.Limits{}) || sa.Lifetime.Soft != (kernel.Limits{}) {
		m.LifetimeHard = lifetime(sa.Lifetime.Hard)
		m.LifetimeSoft = lifetime(sa.Lifetime.Soft)
	}
	if sa.Encap != nil {
		if sa.Proto != kernel.ESP {
			return nil, errors.New("UDP encapsulation of a protocol other than ESP")
		}
		m.NATTType = &NATTType{Type: UDPEncapESPInUDP}
		m.NATTSPort = &NATTPort{Port: sa.Encap.SrcPort}
		m.NATTDPort = &NATTPort{Port: sa.Encap.DstPort}
	}
	return m, nil
}

func lifetime(l kernel.Limits) *Lifetime {
	secs := uint64(0)
	if l.Time > 0 {
		secs = uint64((l.Time + time.Second - 1) / time.Second)
	}
	return &Lifetime{Allocations: uint32(min(l.Packets, math.MaxUint32)), Bytes: l.Bytes, AddTime: secs}
}

// UpdateSA moves an SA to new outer addresses or UDP ports. FreeBSD does it
// in place (SADB_UPDATE with NEW_ADDRESS_SRC/DST, counters and replay state
// kept); Linux changes the NAT-T ports of an SA that keeps its addresses
// in place. Otherwise an inbound SA is added anew and the old one deleted,
// which restarts its counters and replay window; an outbound SA is refused
// (its sequence numbers would restart and the peer would drop them as
// replays): rekey the Child SA instead.
func (b *Backend) UpdateSA(ctx context.Context, id kernel.SAID, sa *kernel.SA) error {
	b.mu.Lock()
	e := b.findSA(id)
	var cur kernel.SA
	var kreqid uint32
	if e != nil && !e.larval {
		cur, kreqid = e.sa, e.kreqid
	}
	b.mu.Unlock()
	if e == nil || e.larval {
		return fmt.Errorf("update SA %v: %w", id, kernel.ErrNotFound)
	}
	next := cur
	next.Src, next.Dst, next.Encap = sa.Src, sa.Dst, sa.Encap
	if err := checkPair(next.Src, next.Dst); err != nil {
		return fmt.Errorf("update SA %v: %w", id, err)
	}
	moved := cur.Src.Unmap() != next.Src.Unmap() || cur.Dst.Unmap() != next.Dst.Unmap()
	var err error
	switch {
	case b.l.UpdateMoves && (moved || next.Encap != nil):
		err = b.updateInPlace(ctx, &cur, &next, kreqid)
	case b.l.UpdatePorts && !moved && cur.Encap != nil && next.Encap != nil:
		var m *Message
		if m, err = b.l.SAMessage(MsgUpdate, &next, kreqid); err == nil {
			_, err = b.request(ctx, m)
		}
	case !moved && encapEqual(cur.Encap, next.Encap):
		// nothing to change
	case next.Dir == kernel.Out:
		err = fmt.Errorf("%s's PF_KEY cannot move an outbound SA without restarting its sequence numbers; rekey instead: %w", b.l.Name, errors.ErrUnsupported)
	default:
		err = b.readd(ctx, &cur, &next, kreqid)
	}
	if err != nil {
		return fmt.Errorf("update SA %v: %w", id, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sas[id] == e {
		delete(b.sas, id)
	}
	e.sa = next
	b.sas[next.ID()] = e
	return nil
}

func encapEqual(a, b *kernel.Encap) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// updateInPlace is FreeBSD's SADB_UPDATE of a mature SA: no keys, the old
// addresses, the new ones, and NAT-T if the SA is to keep or get it.
func (b *Backend) updateInPlace(ctx context.Context, cur, next *kernel.SA, kreqid uint32) error {
	m, err := b.l.SAMessage(MsgUpdate, cur, kreqid)
	if err != nil {
		return err
	}
	m.EncryptKey, m.AuthKey = nil, nil // a mature SA's keys may not change
	m.LifetimeHard, m.LifetimeSoft, m.SAReplay = nil, nil, nil
	m.NATTType, m.NATTSPort, m.NATTDPort = nil, nil, nil
	if cur.Src.Unmap() != next.Src.Unmap() {
		m.NewSrc = saAddress(next.Src)
	}
	if cur.Dst.Unmap() != next.Dst.Unmap() {
		m.NewDst = saAddress(next.Dst)
	}
	if next.Encap != nil {
		m.NATTType = &NATTType{Type: UDPEncapESPInUDP}
		m.NATTSPort = &NATTPort{Port: next.Encap.SrcPort}
		m.NATTDPort = &NATTPort{Port: next.Encap.DstPort}
	}
	_, err = b.request(ctx, m)
	return err
}

// readd replaces cur by next: add first where the two differ in
// destination (another SAID), else delete first and put cur back if next
// fails.
func (b *Backend) readd(ctx context.Context, cur, next *kernel.SA, kreqid uint32) error {
	add, err := b.l.SAMessage(MsgAdd, next, kreqid)
	if err != nil {
		return err
	}
	del := deleteMessage(cur.ID(), cur.Src)
	if cur.Dst.Unmap() != next.Dst.Unmap() {
		if _, err := b.request(ctx, add); err != nil {
			return err
		}
		if _, err := b.request(ctx, del); err != nil && !notFound(err) {
			b.logf("pfkey: deleting SA %v after moving it: %v", cur.ID(), err)
		}
		return nil
	}
	if _, err := b.request(ctx, del); err != nil && !notFound(err) {
		return err
	}
	if _, err := b.request(ctx, add); err != nil {
		if back, err2 := b.l.SAMessage(MsgAdd, cur, kreqid); err2 == nil {
			if _, err2 = b.request(ctx, back); err2 != nil {
				b.logf("pfkey: putting SA %v back after a failed move: %v", cur.ID(), err2)
			}
		}
		return err
	}
	return nil
}

func deleteMessage(id kernel.SAID, src netip.Addr) *Message {
	satype, _ := saType(id.Proto)
	if !src.IsValid() {
		src = unspecified(id.Dst)
	}
	return &Message{Type: MsgDelete, SAType: satype, SA: &SA{SPI: id.SPI, State: StateMature},
		Src: saAddress(src), Dst: saAddress(id.Dst)}
}

// QuerySA reads an SA's counters with SADB_GET. The kernels count packets
// in the 32-bit allocations field and keep the time of first use only;
// LastUsed is that time or, once the byte count has grown between two
// queries, the time of the query that saw it grow.
func (b *Backend) QuerySA(ctx context.Context, id kernel.SAID) (kernel.SAStats, error) {
	if _, err := saType(id.Proto); err != nil {
		return kernel.SAStats{}, fmt.Errorf("query SA %v: %w", id, err)
	}
	b.mu.Lock()
	e := b.findSA(id)
	src := netip.Addr{}
	if e != nil {
		src = e.sa.Src
	}
	b.mu.Unlock()
	m := deleteMessage(id, src)
	m.Type = MsgGet
	r, err := b.request(ctx, m)
	if err != nil {
		if notFound(err) {
			return kernel.SAStats{}, fmt.Errorf("query SA %v: %w: %w", id, kernel.ErrNotFound, err)
		}
		return kernel.SAStats{}, fmt.Errorf("query SA %v: %w", id, err)
	}
	var st kernel.SAStats
	c := r.LifetimeCurrent
	if c == nil {
		return st, nil
	}
	st.Bytes, st.Packets = c.Bytes, uint64(c.Allocations)
	if c.AddTime != 0 {
		st.Added = time.Unix(int64(min(c.AddTime, math.MaxInt64)), 0)
	}
	if c.UseTime != 0 {
		st.LastUsed = time.Unix(int64(min(c.UseTime, math.MaxInt64)), 0)
	}
	if e != nil {
		b.mu.Lock()
		if c.Bytes != e.lastBytes {
			e.lastBytes, e.lastSeen = c.Bytes, time.Now()
		}
		if e.lastSeen.After(st.LastUsed) && c.Bytes != 0 {
			st.LastUsed = e.lastSeen
		}
		b.mu.Unlock()
	}
	return st, nil
}

// DeleteSA removes an SA or a reservation with SADB_DELETE.
func (b *Backend) DeleteSA(ctx context.Context, id kernel.SAID) error {
	if _, err := saType(id.Proto); err != nil {
		return fmt.Errorf("delete SA %v: %w", id, err)
	}
	b.mu.Lock()
	e := b.findSA(id)
	src := netip.Addr{}
	if e != nil {
		src = e.sa.Src
	}
	b.mu.Unlock()
	_, err := b.request(ctx, deleteMessage(id, src))
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil && !notFound(err) {
		return fmt.Errorf("delete SA %v: %w", id, err)
	}
	if e != nil {
		b.dropSA(e.sa.ID(), e)
		if err != nil && e.larval {
			return nil // the reservation had run out already
		}
	}
	if err != nil {
		return fmt.Errorf("delete SA %v: %w: %w", id, kernel.ErrNotFound, err)
	}
	return nil
}

// PolicyMessage is the X_SPDUPDATE (typ) or X_SPDDELETE that installs or
// removes p with the kernel reqid kreqid; nil, nil for a forward policy
// on a kernel without them.
func (l *Layout) PolicyMessage(typ MsgType, p *kernel.Policy, kreqid uint32) (*Message, error) {
	if p.Mark != nil || p.IfID != 0 {
		return nil, errors.New("PF_KEY has no marks or interface ids")
	}
	var dir uint8
	switch p.Dir {
	case kernel.In:
		dir = DirInbound
	case kernel.Out:
		dir = DirOutbound
	default:
		if !l.FwdDir {
			return nil, nil
		}
		dir = DirForward
	}
	sel := p.Selector
	if !sel.Src.IsValid() || !sel.Dst.IsValid() || sel.Src.Addr().Unmap().Is4() != sel.Dst.Addr().Unmap().Is4() {
		return nil, fmt.Errorf("selector %v -> %v: both prefixes must be set and of one family", sel.Src, sel.Dst)
	}
	src, err := selectorAddress(sel.Src, sel.SrcPorts, sel.Proto)
	if err != nil {
		return nil, err
	}
	dst, err := selectorAddress(sel.Dst, sel.DstPorts, sel.Proto)
	if err != nil {
		return nil, err
	}
	xp := &Policy{Dir: dir}
	if l.PolicyPriority {
		xp.Priority = p.Priority
	}
	switch p.Action {
	case kernel.Bypass:
		xp.Type = PolicyNone
	case kernel.Block:
		xp.Type = PolicyDiscard
	default:
		xp.Type = PolicyIPsec
		t := p.Template
		proto := uint16(t.Proto)
		if proto == 0 {
			proto = uint16(kernel.ESP)
		}
		req := Request{Proto: proto, Mode: ModeTunnel, Level: LevelRequire}
		if kreqid != 0 {
			req.Level, req.ReqID = LevelUnique, kreqid
		}
		if t.Mode == kernel.Transport {
			req.Mode = ModeTransport
		} else {
			if err := checkPair(t.Src, t.Dst); err != nil {
				return nil, fmt.Errorf("tunnel end points: %w", err)
			}
			req.Src, req.Dst = t.Src.Unmap(), t.Dst.Unmap()
		}
		xp.Requests = []Request{req}
	}
	return &Message{Type: typ, SAType: SATypeUnspec, Src: src, Dst: dst, Policy: xp}, nil
}

// selectorAddress is one side of a selector as a sadb_address: a prefix,
// one port or all of them, and the upper-layer protocol.
func selectorAddress(pfx netip.Prefix, ports kernel.PortRange, proto uint8) (*Address, error) {
	bits := pfx.Bits()
	a := pfx.Masked().Addr()
	if a.Is4In6() {
		a, bits = a.Unmap(), max(bits-96, 0)
	}
	var port uint16
	switch {
	case ports == kernel.PortRange{} || ports == kernel.PortRange{Lo: 0, Hi: 65535}:
	case ports.Lo == ports.Hi:
		port = ports.Lo
	default:
		return nil, fmt.Errorf("selector %v with ports %d-%d: PF_KEY selectors take one port or all", pfx, ports.Lo, ports.Hi)
	}
	if proto == 0 {
		proto = ULProtoAny
	}
	return &Address{Proto: proto, PrefixLen: uint8(bits), Addr: a, Port: port}, nil
}

// AddPolicy installs or replaces p with X_SPDUPDATE. A forward policy is
// not installed on the BSDs, which check forwarded packets against their
// inbound and outbound policies.
func (b *Backend) AddPolicy(ctx context.Context, p *kernel.Policy) error {
	var ref uint32
	if p.Action == kernel.Protect {
		ref = p.Template.ReqID
	}
	b.mu.Lock()
	kreqid, err := b.reqids.get(ref)
	b.mu.Unlock()
	if err != nil {
		return fmt.Errorf("add %s policy %v: %w", p.Dir, p.Selector, err)
	}
	m, err := b.l.PolicyMessage(MsgSPDUpdate, p, kreqid)
	var r *Message
	if err == nil && m != nil {
		r, err = b.request(ctx, m)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil || m == nil {
		b.reqids.put(ref)
		if err != nil {
			return fmt.Errorf("add %s policy %v: %w", p.Dir, p.Selector, err)
		}
		return nil
	}
	key := policyKey{p.Dir, p.Selector}
	if old := b.policies[key]; old != nil {
		b.dropPolicy(key, old)
	}
	e := &policyEntry{p: *p, ref: ref}
	if r.Policy != nil {
		e.id = r.Policy.ID
		b.byID[e.id] = e
	}
	b.policies[key] = e
	return nil
}

// dropPolicy forgets e, filed under key; mu is held.
func (b *Backend) dropPolicy(key policyKey, e *policyEntry) {
	if b.policies[key] != e {
		return
	}
	delete(b.policies, key)
	if b.byID[e.id] == e {
		delete(b.byID, e.id)
	}
	b.reqids.put(e.ref)
}

// DeletePolicy removes the policy with p's selector and direction with
// X_SPDDELETE.
func (b *Backend) DeletePolicy(ctx context.Context, p *kernel.Policy) error {
	m, err := b.l.PolicyMessage(MsgSPDDelete, p, 0)
	if err != nil {
		return fmt.Errorf("delete %s policy %v: %w", p.Dir, p.Selector, err)
	}
	if m == nil {
		return nil
	}
	m.Policy.Requests = nil
	_, err = b.request(ctx, m)
	b.mu.Lock()
	defer b.mu.Unlock()
	key := policyKey{p.Dir, p.Selector}
	if err != nil {
		if notFound(err) {
			if e := b.policies[key]; e != nil {
				b.dropPolicy(key, e)
			}
			return fmt.Errorf("delete %s policy %v: %w: %w", p.Dir, p.Selector, kernel.ErrNotFound, err)
		}
		return fmt.Errorf("delete %s policy %v: %w", p.Dir, p.Selector, err)
	}
	if e := b.policies[key]; e != nil {
		b.dropPolicy(key, e)
	}
	return nil
}

// OursReqID says whether a reqid found in the kernel is goswan's: one this
// back end maps goswan's reqids to, or a reservation's (Linux).
func OursReqID(k uint32) bool {
	return k >= KernelReqIDMin && k <= KernelReqIDMax || kernel.OurReqID(k)
}

// Flush removes the policies and SAs whose reqid is goswan's (OursReqID),
// and nothing else: what an earlier run left behind, or all this one
// installed. It dumps the SPD and the SAD (X_SPDDUMP, DUMP) and deletes
// the policies by id (X_SPDDELETE2) and the SAs one by one.
func (b *Backend) Flush(ctx context.Context) error {
	var errs []error
	pols, err := b.dumpAll(ctx, &Message{Type: MsgSPDDump})
	if err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	for _, m := range pols {
		if m.Policy == nil || !policyOurs(m.Policy) {
			continue
		}
		del := &Message{Type: MsgSPDDelete2, Policy: &Policy{Type: m.Policy.Type, Dir: m.Policy.Dir, ID: m.Policy.ID}}
		if _, err := b.request(ctx, del); err != nil && !notFound(err) {
			errs = append(errs, fmt.Errorf("policy %d: %w", m.Policy.ID, err))
			continue
		}
		b.mu.Lock()
		if e := b.byID[m.Policy.ID]; e != nil {
			b.dropPolicy(policyKey{e.p.Dir, e.p.Selector}, e)
		}
		b.mu.Unlock()
	}
	sas, err := b.dumpAll(ctx, &Message{Type: MsgDump, SAType: SATypeUnspec})
	if err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	for _, m := range sas {
		if m.SA == nil || m.SA2 == nil || m.Src == nil || m.Dst == nil || !OursReqID(m.SA2.ReqID) {
			continue
		}
		del := &Message{Type: MsgDelete, SAType: m.SAType, SA: &SA{SPI: m.SA.SPI, State: StateMature},
			Src: saAddress(m.Src.Addr), Dst: saAddress(m.Dst.Addr)}
		if _, err := b.request(ctx, del); err != nil && !notFound(err) {
			errs = append(errs, fmt.Errorf("SA %08x@%v: %w", m.SA.SPI, m.Dst.Addr, err))
			continue
		}
		if proto, ok := protoOf(m.SAType); ok {
			b.mu.Lock()
			if e := b.findSA(kernel.SAID{Dst: m.Dst.Addr, SPI: m.SA.SPI, Proto: proto}); e != nil {
				b.dropSA(e.sa.ID(), e)
			}
			b.mu.Unlock()
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("flush: %w", errors.Join(errs...))
	}
	return nil
}

func policyOurs(p *Policy) bool {
	for _, r := range p.Requests {
		if r.ReqID != 0 && OursReqID(r.ReqID) {
			return true
		}
	}
	return false
}

// --- reqids ---

// reqidTable maps each goswan reqid in use to a kernel reqid, counting the
// SAs, reservations and policies that use it.
type reqidTable struct {
	byOurs   map[uint32]*reqidRef
	byKernel map[uint32]uint32
}

type reqidRef struct {
	k uint32
	n int
}

// get returns the kernel reqid for r, taking a reference; 0 for 0. The
// first choice is KernelReqIDMin plus r modulo the range, so that the
// kernel's reqid says which goswan reqid it stands for.
func (t *reqidTable) get(r uint32) (uint32, error) {
	if r == 0 {
		return 0, nil
	}
	if ref := t.byOurs[r]; ref != nil {
		ref.n++
		return ref.k, nil
	}
	const span = KernelReqIDMax - KernelReqIDMin + 1
	for i := range uint32(span) {
		k := KernelReqIDMin + (r+i)%span
		if _, used := t.byKernel[k]; !used {
			t.byOurs[r] = &reqidRef{k: k, n: 1}
			t.byKernel[k] = r
			return k, nil
		}
	}
	return 0, fmt.Errorf("all %d kernel reqids from %#x to %#x are in use", span, KernelReqIDMin, KernelReqIDMax)
}

// put drops a reference taken by get.
func (t *reqidTable) put(r uint32) {
	ref := t.byOurs[r]
	if r == 0 || ref == nil {
		return
	}
	if ref.n--; ref.n <= 0 {
		delete(t.byOurs, r)
		delete(t.byKernel, ref.k)
	}
}
