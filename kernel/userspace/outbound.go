package userspace

// The outbound path: one goroutine reads the device in batches (a kernel
// TUN with offloads hands over a TCP super-packet split into its segments,
// up to BatchSize at once), looks up each packet's policy, and for each
// run of consecutive packets of one SA reserves that many sequence numbers
// at once (esp.SA.ReserveSeq), seals the packets in place with their
// numbers (esp.SA.SealSeq; the ESP header goes into the headroom in front
// of each packet, so nothing is copied) and hands the run to
// Config.SendESPBatch (sendmsg with UDP GSO), or to SendESP one by one.
// The numbers follow the order the packets go out on the wire, so the
// peer's replay window sees them in order. The buffers are allocated once,
// so a packet costs no allocation.

import (
	"errors"
	"net/netip"
	"os"
	"time"

	"goswan/esp"
	"goswan/kernel"
	"goswan/tun"
)

// outBatch is the reader's state: the read buffers and the run being
// gathered.
type outBatch struct {
	bufs  [][]byte
	sizes []int
	run   []int    // indices into bufs of the packets of runSA
	pkts  [][]byte // the sealed packets of the run, for SendESPBatch
	psz   []int    // their inner sizes
	runSA *esp.SA
	runE  *saEntry
}

func (b *Backend) readLoop() {
	defer b.wg.Done()
	bs := b.dev.BatchSize()
	if bs < 1 {
		bs = 1
	}
	bufSize := headroom + b.mtu + tailroom
	ob := &outBatch{bufs: make([][]byte, bs), sizes: make([]int, bs), run: make([]int, 0, bs), pkts: make([][]byte, 0, bs), psz: make([]int, 0, bs)}
	for i := range ob.bufs {
		ob.bufs[i] = make([]byte, bufSize)
	}
	for {
		n, err := b.dev.Read(ob.bufs, ob.sizes, headroom)
		for i := 0; i < n; i++ {
			b.classify(ob, i)
		}
		b.flushRun(ob)
		if err != nil {
			if b.closing.Load() || errors.Is(err, os.ErrClosed) {
				return
			}
			if errors.Is(err, tun.ErrTooManySegments) {
				b.st.outReadErrors.Add(1)
				continue
			}
			b.st.outReadErrors.Add(1)
			b.logf("userspace: read from the device: %v", err)
			select {
			case <-b.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

// classify looks up packet i's policy: a Protect packet joins the run (a
// new SA flushes the run first); the rest is handled at once.
func (b *Backend) classify(ob *outBatch, i int) {
	size := ob.sizes[i]
	pkt := ob.bufs[i][headroom : headroom+size]
	r := b.spd.Lookup(pkt)
	if r.Action != esp.ActionProtect {
		b.notProtected(&r)
		return
	}
	if r.SA != ob.runSA {
		b.flushRun(ob)
		e := (*b.outSAs.Load())[r.SA]
		if e == nil { // deleted between the lookup and now
			b.st.outNoSA.Add(1)
			return
		}
		ob.runSA, ob.runE = r.SA, e
	}
	ob.run = append(ob.run, i)
}

// flushRun seals the run with consecutive sequence numbers and sends it.
func (b *Backend) flushRun(ob *outBatch) {
	sa, e := ob.runSA, ob.runE
	if len(ob.run) == 0 {
		ob.runSA, ob.runE = nil, nil
		return
	}
	defer func() {
		ob.run = ob.run[:0]
		clear(ob.pkts)
		ob.pkts = ob.pkts[:0]
		ob.psz = ob.psz[:0]
		ob.runSA, ob.runE = nil, nil
	}()
	first, err := sa.ReserveSeq(len(ob.run))
	if err != nil {
		b.st.outSealDrops.Add(uint64(len(ob.run)))
		return
	}
	hl := sa.HeaderLen()
	transport := sa.Mode() == esp.Transport
	var octets uint64
	for k, i := range ob.run {
		buf, size := ob.bufs[i], ob.sizes[i]
		// Seal in place: the ESP header and IV go into the headroom right
		// in front of the packet, which Seal then finds already in place.
		// In transport mode the payload after the IP header is what stays
		// in place: Seal writes the IP header (ihl octets) in front of the
		// ESP header, so the ESP packet starts ihl octets later
		// (transport.go).
		ihl := 0
		if transport {
			if ihl = ipHeaderLen(buf[headroom : headroom+size]); ihl == 0 {
				b.st.outSealDrops.Add(1)
				continue
			}
		}
		out, err := sa.SealSeq(buf[:headroom-hl], buf[headroom:headroom+size], first+uint64(k))
		if err != nil {
			b.st.outSealDrops.Add(1)
			continue
		}
		ob.pkts = append(ob.pkts, out[headroom-hl+ihl:])
		ob.psz = append(ob.psz, size)
		octets += uint64(size)
	}
	if len(ob.pkts) == 0 {
		return
	}
	a := e.addrs.Load()
	if a.raw() {
		b.sendRaw(a, ob)
		return
	}
	if b.cfg.SendESPBatch != nil {
		if err := b.cfg.SendESPBatch(a.local, a.remote, ob.pkts); err != nil {
			if b.st.sendErrors.Add(1) == 1 {
				b.logf("userspace: send ESP %v -> %v: %v (further errors are only counted)", a.local, a.remote, err)
			}
			return
		}
		b.st.outPackets.Add(uint64(len(ob.pkts)))
		b.st.outBytes.Add(octets)
		return
	}
	for k, p := range ob.pkts {
		if err := b.cfg.SendESP(a.local, a.remote, p); err != nil {
			if b.st.sendErrors.Add(1) == 1 {
				b.logf("userspace: send ESP %v -> %v: %v (further errors are only counted)", a.local, a.remote, err)
			}
			continue
		}
		b.st.outPackets.Add(1)
		b.st.outBytes.Add(uint64(ob.psz[k]))
	}
}

// sendRaw sends the sealed run as raw ESP (IP protocol 50), one by one.
func (b *Backend) sendRaw(a *sendAddrs, ob *outBatch) {
	if b.cfg.SendRawESP == nil { // cannot be: saConfig refuses such SAs
		b.st.sendErrors.Add(uint64(len(ob.pkts)))
		return
	}
	for k, p := range ob.pkts {
		if err := b.cfg.SendRawESP(a.local.Addr(), a.remote.Addr(), p); err != nil {
			if b.st.sendErrors.Add(1) == 1 {
				b.logf("userspace: send raw ESP %v -> %v: %v (further errors are only counted)", a.local.Addr(), a.remote.Addr(), err)
			}
			continue
		}
		b.st.outPackets.Add(1)
		b.st.outBytes.Add(uint64(ob.psz[k]))
	}
}

// notProtected handles a packet that no SA protects.
func (b *Backend) notProtected(r *esp.Result) {
	switch r.Action {
	case esp.ActionAcquire:
		b.st.outAcquire.Add(1)
		b.acquire(r.Policy, r.Selector)
	case esp.ActionBypass:
		// A TUN (or netstack) has no clear path out: what the kernel
		// routed here, we can only drop.
		b.st.outBypass.Add(1)
	default:
		if r.Reason == esp.DropNoPolicy {
			b.st.outNoPolicy.Add(1)
		} else {
			b.st.outBlocked.Add(1)
		}
	}
}

// acquire raises kernel.Acquire for p, at most once per AcquireInterval.
func (b *Backend) acquire(p *esp.Policy, ps esp.PacketSelector) {
	now := time.Now().UnixNano()
	b.acqMu.Lock()
	last, seen := b.lastAcq[p]
	if seen && now-last < b.acqEvery {
		b.acqMu.Unlock()
		return
	}
	b.lastAcq[p] = now
	reqid := b.acqReq[p]
	b.acqMu.Unlock()
	b.st.acquires.Add(1)
	b.raise(kernel.Event{Kind: kernel.Acquire, Selector: hostSelector(ps), ReqID: reqid})
}

// hostSelector is the selector of exactly the packet's flow.
func hostSelector(ps esp.PacketSelector) kernel.Selector {
	src, dst := ps.Src.Unmap(), ps.Dst.Unmap()
	s := kernel.Selector{
		Src:   netip.PrefixFrom(src, src.BitLen()),
		Dst:   netip.PrefixFrom(dst, dst.BitLen()),
		Proto: ps.Proto,
	}
	if ps.Proto != 0 {
		s.SrcPorts = kernel.PortRange{Lo: ps.SrcPort, Hi: ps.SrcPort}
		s.DstPorts = kernel.PortRange{Lo: ps.DstPort, Hi: ps.DstPort}
	}
	return s
}
