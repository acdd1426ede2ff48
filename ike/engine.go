// Package ike is the IKEv2 engine (RFC 7296): the connection table, the
// IKE SA and Child SA state machines for IKE_SA_INIT, IKE_AUTH (pre-shared
// keys and NULL authentication) and INFORMATIONAL, retransmission, NAT
// traversal, and the installation of the negotiated Child SAs through the
// SA-install interface (kernel.IPsec). It owns no sockets and no clock:
// the daemon feeds it datagrams (Receive), timer ticks (Tick) and commands
// (Initiate, Terminate), and it answers through Options.Send and the
// progress callbacks.
//
// # Flow
//
// Receive does a cheap header check (length, version, SPIs) and hands the
// datagram to the worker that owns the IKE SA. Ownership is by a hash of
// the initiator's SPI, which every message of an IKE SA carries, so every
// message of one SA lands on the same worker and an SA's state is only
// ever touched by its worker. The worker decodes the message
// (ike/message), finds the SA (by our own SPI; an IKE_SA_INIT request by
// the peer's SPI and address), and runs the exchange:
//
//	initiator                               responder
//	Initiate ── IKE_SA_INIT request ──────▶ pick proposal, DH, keys
//	DH, keys ◀─ IKE_SA_INIT response ────── (half-open until IKE_AUTH)
//	AUTH, GetSPI ── IKE_AUTH request ─────▶ conn by ID, check AUTH,
//	                                        TS, GetSPI, install SAs
//	check AUTH, ◀── IKE_AUTH response ───── established
//	install SAs, progress Done
//
// A responder never does the same work twice: a retransmitted request
// gets the cached response. An initiator keeps one request outstanding
// (window 1) and Tick retransmits it with exponential back-off until the
// conn's retransmit-timeout. Tick also expires half-open responder SAs,
// sends liveness checks (dpddelay=) and forgets IKE SAs whose Delete went
// unanswered. Deleting an IKE SA removes its Child SAs from the kernel at
// once and keeps the IKE SA as DELETING only until the peer answers.
//
// Beyond the first exchanges: CREATE_CHILD_SA rekeys Child SAs and the
// IKE SA (rekey.go), liveness, NAT-T keep-alives and NAT mapping changes
// (liveness.go), IKE fragmentation (frag.go), cookies, trap policies and
// the data plane's events (events.go), INITIAL_CONTACT and uniqueids
// (peers.go).
//
// # Concurrency
//
// With Options.Workers == N > 0 there are N worker goroutines, each with a
// bounded job queue and the IKE SAs whose SPIi hashes to it. The expensive
// work (key exchange, key derivation, AUTH) runs there, off the socket
// reader. Commands that concern many SAs (Terminate, DeleteConn, Tick,
// Close) post one job to every worker. With Workers == 0 one "worker"
// without a goroutine runs everything on the caller's goroutine, which
// keeps the tests deterministic.
//
// Each worker's state is guarded by its own mutex, which only its owner
// takes on the packet path, so it is uncontended there; Status takes it
// briefly to copy a snapshot. No lock is held across shards, and no
// engine-wide lock is held across cryptography: the connection table is an
// immutable snapshot behind an atomic pointer, and the counters are
// atomics. Progress callbacks run after the worker's mutex is released, so
// they may call back into the engine.
package ike

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"goswan/config"
	"goswan/ike/crypto"
	"goswan/ike/message"
	"goswan/kernel"
	"goswan/logging"
)

// DefaultHalfOpenTimeout is how long a responder keeps an IKE SA whose
// IKE_SA_INIT it answered but whose IKE_AUTH never came: Libreswan's
// MAXIMUM_RESPONDER_WAIT_DELAY.
const DefaultHalfOpenTimeout = 200 * time.Second

// Options configure an Engine.
type Options struct {
	// Kernel installs the negotiated Child SAs and their policies.
	Kernel kernel.IPsec
	// Secrets returns the current secrets (ipsec.secrets, reloadable). It
	// may return nil, or be nil: then no PSK is known.
	Secrets func() *config.Secrets
	// Log receives the engine's log lines; nil logs nothing.
	Log *logging.Logger
	// Workers is the number of worker goroutines (--nhelpers). 0 runs
	// everything inline on the caller's goroutine (tests); a negative
	// number means one per CPU less one, at least one (pluto's -1).
	Workers int
	// Send transmits a datagram. It is called from the workers (or the
	// caller with Workers == 0) and must not block for long. The engine
	// does not touch p.Data after Send returns.
	Send func(p Packet)
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Rand is the source of SPIs, nonces and key pairs; nil is
	// crypto/rand.
	Rand io.Reader
	// VendorID is sent in IKE_SA_INIT when not empty.
	VendorID string
	// IKEPort and NATIKEPort are our ports (default 500 and 4500).
	IKEPort, NATIKEPort int
	// HalfOpenTimeout bounds a responder's wait for IKE_AUTH (default
	// DefaultHalfOpenTimeout).
	HalfOpenTimeout time.Duration
	// IsLocal, when set, says whether an address is one of this host's;
	// AddConn then swaps left and right of a conn whose right end is
	// local and whose left end is not, as Libreswan orients conns. When
	// nil, left is always this host.
	IsLocal func(netip.Addr) bool
	// ForceEncapsulation makes every conn behave as encapsulation=yes:
	// the user-space data planes speak only ESP in UDP. A conn that asks
	// for encapsulation=no is then refused.
	ForceEncapsulation bool
	// KeepAlive is the NAT-T keep-alive interval (pluto's --keep-alive,
	// config setup keep-alive=): an IKE SA that found us behind a NAT
	// sends a one-octet 0xFF datagram (a Packet with Keepalive set) from
	// the NAT-T port when it sent nothing else for that long. 0 sends
	// none.
	KeepAlive time.Duration
	// DDoSThreshold is the number of half-open IKE SAs above which a
	// responder asks every new initiator for a COOKIE (RFC 7296 §2.6)
	// before it keeps any state (pluto's --ddos-ike-threshold). 0 is
	// DefaultDDoSThreshold; negative never asks.
	DDoSThreshold int
	// ForceBusy asks every new initiator for a COOKIE (--ddos-mode busy,
	// --impair... in Libreswan: "force-busy").
	ForceBusy bool
	// UniqueIDs (config setup uniqueids=, Libreswan's default yes): a new
	// IKE SA of a conn for a peer ID replaces the older ones of that conn
	// and peer ID, which are deleted with the peer.
	UniqueIDs bool
	// Certificates is the trust store for certificate authentication
	// (leftcert=, rightauth=rsasig/ecdsa/eddsa); nil allows only PSK and
	// NULL authentication.
	Certificates Certificates
	// VerifyTimeout bounds the validation of one peer certificate, CRL
	// and OCSP fetches included (default DefaultVerifyTimeout).
	VerifyTimeout time.Duration
	// VirtualPrivate (config setup virtual-private=) lists the private
	// networks a peer behind a NAT may claim as its traffic selector
	// where its conn has no rightsubnet= (the host end is then what the
	// peer says, within these networks).
	VirtualPrivate config.VirtualPrivate
}

// DefaultDDoSThreshold is Libreswan's --ddos-ike-threshold default.
const DefaultDDoSThreshold = 25000

// Packet is one IKE datagram.
//
// Data is the IKE message without the 4-byte non-ESP marker: the socket
// layer adds the marker to a Packet sent from the NAT-T port (Local.Port()
// == NATIKEPort) and strips it from one received there.
//
// Keepalive marks a NAT-T keep-alive (RFC 3948 §2.3): Data is the single
// octet 0xFF, sent from the NAT-T port as is, without the non-ESP marker.
type Packet struct {
	Local, Remote netip.AddrPort
	Data          []byte
	Keepalive     bool
}

// Progress is one report of an Initiate or Terminate in progress. The last
// report has Done set, with Err nil on success.
type Progress struct {
	Line string
	Done bool
	Err  error
}

// Engine is the IKEv2 daemon's protocol engine. Its methods are safe for
// concurrent use.
type Engine struct {
	o   Options
	log *logging.Logger

	conns   atomic.Pointer[[]*conn] // immutable snapshot, replaced under connsMu
	connsMu sync.Mutex

	workers []*worker
	wg      sync.WaitGroup
	closed  atomic.Bool
	// closeMu orders posting jobs (read side) before Close closes the
	// job queues (write side).
	closeMu sync.RWMutex

	reqid atomic.Uint32
	ctr   counters

	// policyMu guards policyOwner and orders the policy calls to the
	// kernel (not crypto; a few per Child SA).
	policyMu    sync.Mutex
	policyOwner map[policyKey]uint32 // reqid of the Child SA a policy serves
	// traps are the policies a conn keeps while no Child SA serves their
	// selectors (auto=ondemand traps, dpdaction=hold, type=passthrough
	// and drop): deletePolicy puts them back. Guarded by policyMu.
	traps     map[policyKey]kernel.Policy
	connTraps map[string][]policyKey

	// moved routes the IKE SAs that a rekey made with a peer-chosen SPIi
	// to the worker of the IKE SA they replace (so that its Child SAs
	// never change worker). nmoved counts its entries so that Receive
	// looks only when there are any.
	moved  sync.Map // [8]byte -> *worker
	nmoved atomic.Int64

	halfOpenCount atomic.Int64
	cookies       *crypto.CookieJar
	cookieRotated atomic.Int64 // unix nanoseconds of the last rotation

	peers peerTable

	acqMu     sync.Mutex
	acquiring map[string]bool // conns being initiated for an acquire

	// fragSize overrides the fragment size (tests).
	fragSize int
	// rsaPKCS1 signs method 14 RSA AUTH payloads with PKCS#1 v1.5
	// instead of RSASSA-PSS, and noSigHashes leaves
	// SIGNATURE_HASH_ALGORITHMS out of IKE_SA_INIT, as a pre-RFC 7427
	// peer does (tests).
	rsaPKCS1, noSigHashes bool
}

// NewEngine checks o and starts the workers.
func NewEngine(o Options) (*Engine, error) {
	if o.Kernel == nil {
		return nil, errors.New("ike: Options.Kernel is nil")
	}
	if o.Send == nil {
		return nil, errors.New("ike: Options.Send is nil")
	}
	if o.Workers < 0 {
		o.Workers = max(runtime.NumCPU()-1, 1) // --nhelpers -1: one per CPU less one
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.IKEPort == 0 {
		o.IKEPort = 500
	}
	if o.NATIKEPort == 0 {
		o.NATIKEPort = 4500
	}
	if o.HalfOpenTimeout <= 0 {
		o.HalfOpenTimeout = DefaultHalfOpenTimeout
	}
	if o.VerifyTimeout <= 0 {
		o.VerifyTimeout = DefaultVerifyTimeout
	}
	if o.DDoSThreshold == 0 {
		o.DDoSThreshold = DefaultDDoSThreshold
	}
	jar, err := crypto.NewCookieJar(o.Rand)
	if err != nil {
		return nil, err
	}
	e := &Engine{o: o, log: o.Log, policyOwner: map[policyKey]uint32{}, traps: map[policyKey]kernel.Policy{},
		connTraps: map[string][]policyKey{}, cookies: jar, acquiring: map[string]bool{}}
	e.conns.Store(&[]*conn{})
	n := max(o.Workers, 1)
	for i := 0; i < n; i++ {
		w := newWorker(e, i)
		e.workers = append(e.workers, w)
		if o.Workers > 0 {
			w.jobs = make(chan job, 1024)
			e.wg.Add(1)
			go w.run()
		}
	}
	return e, nil
}

// job is one unit of work for a worker: a received datagram, or a
// function to run with the worker's state.
type job struct {
	pkt  Packet
	fn   func(w *worker)
	done chan struct{} // closed after fn ran, when not nil
}

// workerFor returns the worker that owns the IKE SA with initiator SPI
// spii.
func (e *Engine) workerFor(spii [8]byte) *worker {
	if len(e.workers) == 1 {
		return e.workers[0]
	}
	if e.nmoved.Load() > 0 {
		if w, ok := e.moved.Load(spii); ok {
			return w.(*worker)
		}
	}
	return e.homeWorker(spii)
}

// homeWorker is the worker that spii hashes to.
func (e *Engine) homeWorker(spii [8]byte) *worker {
	h := binary.LittleEndian.Uint64(spii[:])
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return e.workers[h%uint64(len(e.workers))]
}

// do runs fn on w: inline with Workers == 0, else as a job, waiting for
// it when wait is set. It reports false when the engine is closed.
func (e *Engine) do(w *worker, wait bool, fn func(w *worker)) bool {
	if w.jobs == nil {
		w.exec(fn)
		return true
	}
	j := job{fn: fn}
	if wait {
		j.done = make(chan struct{})
	}
	if !e.post(w, j, true) {
		return false
	}
	if wait {
		<-j.done
	}
	return true
}

// post queues j on w's queue, waiting for room when block is set. It
// fails once the engine is closed (or, without block, when the queue is
// full).
func (e *Engine) post(w *worker, j job, block bool) bool {
	e.closeMu.RLock()
	defer e.closeMu.RUnlock()
	if e.closed.Load() {
		return false
	}
	if block {
		w.jobs <- j
		return true
	}
	select {
	case w.jobs <- j:
		return true
	default:
		return false
	}
}

// each runs fn on every worker and waits for all of them.
func (e *Engine) each(fn func(w *worker)) {
	if len(e.workers) == 1 || e.o.Workers == 0 {
		for _, w := range e.workers {
			e.do(w, true, fn)
		}
		return
	}
	var wg sync.WaitGroup
	for _, w := range e.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.do(w, true, fn)
		}()
	}
	wg.Wait()
}

// Receive takes a datagram from the socket layer. It checks the IKE
// header and hands the datagram to the worker that owns its IKE SA (or
// processes it inline with Workers == 0). Receive does not keep p.Data
// after it returns.
func (e *Engine) Receive(p Packet) {
	e.ctr.received.Add(1)
	if e.closed.Load() {
		return
	}
	b := p.Data
	if len(b) < message.HeaderLen {
		e.drop(dropShort)
		return
	}
	h := message.Header(b)
	if h.MajorVersion() != message.MajorVersion {
		e.drop(dropVersion)
		return
	}
	if h.Length() != uint32(len(b)) {
		e.drop(dropLength)
		return
	}
	spii := h.SPIi()
	if spii == ([8]byte{}) {
		e.drop(dropZeroSPI)
		return
	}
	w := e.workerFor(spii)
	if w.jobs == nil {
		w.mu.Lock()
		w.handlePacket(p)
		w.unlock()
		return
	}
	p.Data = slices.Clone(b)
	if !e.post(w, job{pkt: p}, false) {
		e.drop(dropQueueFull)
	}
}

// Initiate starts negotiating the IKE SA and the first Child SA of conn
// name. It returns at once; progress (which may be nil) gets lines as the
// exchange goes and exactly one report with Done set.
func (e *Engine) Initiate(name string, progress func(Progress)) error {
	if e.closed.Load() {
		return errors.New("ike: engine closed")
	}
	c := e.conn(name)
	if c == nil {
		return fmt.Errorf("no connection named %q", name)
	}
	if err := c.canInitiate(); err != nil {
		return err
	}
	spii, err := e.newSPI()
	if err != nil {
		return err
	}
	w := e.workerFor(spii)
	if !e.do(w, false, func(w *worker) { w.initiate(c, spii, progress) }) {
		return errors.New("ike: engine closed")
	}
	return nil
}

// Terminate deletes the IKE SAs of conn name (and with them their Child
// SAs): an INFORMATIONAL Delete to the peer, then locally (the Child SAs
// leave the kernel at once; the IKE SA lingers as DELETING until the
// peer's answer or a few seconds). progress (which may be nil) gets
// exactly one report with Done set, before Terminate returns.
//
// Terminate, AddConn, DeleteConn and Close wait for every worker, so they
// must not be called from a progress callback or from Send (with Workers >
// 0 those run on a worker); Initiate and Status may be.
func (e *Engine) Terminate(name string, progress func(Progress)) error {
	c := e.conn(name)
	if c == nil {
		return fmt.Errorf("no connection named %q", name)
	}
	var n atomic.Int32
	e.each(func(w *worker) {
		n.Add(int32(w.deleteConnSAs(name, nil, "terminated by request", progress)))
	})
	if progress != nil {
		if n.Load() == 0 {
			progress(Progress{Line: fmt.Sprintf("%q: no IKE SA to delete", name), Done: true})
		} else {
			progress(Progress{Line: fmt.Sprintf("%q: deleted %d IKE SA(s)", name, n.Load()), Done: true})
		}
	}
	return nil
}

// Tick fires the timers due at now: retransmissions, the retransmit
// timeout, half-open expiry, liveness checks, NAT-T keep-alives, rekeying
// and expiry of IKE and Child SAs, and the rotation of the cookie secret.
func (e *Engine) Tick(now time.Time) {
	if e.closed.Load() {
		return
	}
	e.rotateCookies(now)
	for _, w := range e.workers {
		if w.jobs == nil {
			w.exec(func(w *worker) { w.tick(now) })
			continue
		}
		if w.tickPending.CompareAndSwap(false, true) {
			e.do(w, false, func(w *worker) {
				w.tickPending.Store(false)
				w.tick(now)
			})
		}
	}
}

// Close deletes every IKE SA with its peer (best effort: one Delete each,
// no wait for the answers), removes the Child SAs and policies from the
// kernel, and stops the workers. ctx bounds the wait for the workers.
func (e *Engine) Close(ctx context.Context) {
	if e.closed.Load() {
		return
	}
	e.each(func(w *worker) { w.deleteAll("shutting down") })
	e.removeAllTraps()
	e.closeMu.Lock()
	e.closed.Store(true)
	if e.o.Workers > 0 {
		for _, w := range e.workers {
			close(w.jobs)
		}
	}
	e.closeMu.Unlock()
	if e.o.Workers == 0 {
		return
	}
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func (e *Engine) now() time.Time { return e.o.Now() }

// newSPI returns a random non-zero IKE SPI.
func (e *Engine) newSPI() ([8]byte, error) {
	var s [8]byte
	for s == ([8]byte{}) {
		if _, err := io.ReadFull(e.o.Rand, s[:]); err != nil {
			return s, fmt.Errorf("ike: reading random SPI: %w", err)
		}
	}
	return s, nil
}

// newReqID gives each Child SA a reqid from goswan's own range (see
// kernel.ReqIDBase), so that a kernel back end can tell our SAs and
// policies from another daemon's.
func (e *Engine) newReqID() uint32 {
	for {
		if n := e.reqid.Add(1) &^ kernel.ReqIDMask; n != 0 {
			return kernel.ReqIDBase | n
		}
	}
}

func (e *Engine) send(p Packet) {
	e.ctr.sent.Add(1)
	e.o.Send(p)
}

func (e *Engine) secrets() *config.Secrets {
	if e.o.Secrets == nil {
		return nil
	}
	return e.o.Secrets()
}

// dropReason names why a datagram was dropped; Status counts them.
type dropReason int

const (
	dropShort dropReason = iota
	dropVersion
	dropLength
	dropZeroSPI
	dropQueueFull
	dropMalformed
	dropUnknownSA
	dropNoConn
	dropUnexpected
	dropUnprotected
	dropFragment
	dropIntegrity
	dropMessageID
	dropInvalidInit
	dropCookie
	numDropReasons
)

var dropNames = [numDropReasons]string{
	dropShort:       "shorter than the IKE header",
	dropVersion:     "not IKEv2",
	dropLength:      "length field does not match the datagram",
	dropZeroSPI:     "zero initiator SPI",
	dropQueueFull:   "worker queue full",
	dropMalformed:   "malformed message",
	dropUnknownSA:   "no IKE SA for the SPIs",
	dropNoConn:      "no connection for the addresses",
	dropUnexpected:  "unexpected in the IKE SA's state",
	dropUnprotected: "protected exchange without SK payload",
	dropFragment:    "IKE fragment not acceptable (not negotiated, over the limits or stale)",
	dropIntegrity:   "SK payload failed its integrity check",
	dropMessageID:   "message ID out of window",
	dropInvalidInit: "invalid IKE_SA_INIT request",
	dropCookie:      "IKE_SA_INIT without a valid COOKIE while busy",
}

type counters struct {
	received, sent, retransmits, cachedResponses atomic.Uint64
	dhOps                                        atomic.Uint64
	ikeEstablished, childEstablished             atomic.Uint64
	drops                                        [numDropReasons]atomic.Uint64
}

func (e *Engine) drop(r dropReason) { e.ctr.drops[r].Add(1) }
