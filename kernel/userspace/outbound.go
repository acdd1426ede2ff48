package userspace

// The outbound path: one goroutine reads the device in batches and seals
// and sends each packet before reading the next batch. Sealing and sending
// on one goroutine keeps every SA's sequence numbers in order on the wire
// (esp.SA.Seal assigns the number as it is called, so sealing one SA's
// packets on several goroutines would reorder them past a small replay
// window); the buffers are allocated once, so a packet costs no
// allocation.

import (
	"errors"
	"net/netip"
	"os"
	"time"

	"goswan/esp"
	"goswan/kernel"
	"goswan/tun"
)

func (b *Backend) readLoop() {
	defer b.wg.Done()
	bs := b.dev.BatchSize()
	if bs < 1 {
		bs = 1
	}
	bufSize := headroom + b.mtu + tailroom
	bufs := make([][]byte, bs)
	for i := range bufs {
		bufs[i] = make([]byte, bufSize)
	}
	sizes := make([]int, bs)
	for {
		n, err := b.dev.Read(bufs, sizes, headroom)
		for i := 0; i < n; i++ {
			b.sendOne(bufs[i], sizes[i])
		}
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

// sendOne handles the packet at buf[headroom:headroom+size].
func (b *Backend) sendOne(buf []byte, size int) {
	pkt := buf[headroom : headroom+size]
	r := b.spd.Lookup(pkt)
	switch r.Action {
	case esp.ActionProtect:
		e := (*b.outSAs.Load())[r.SA]
		if e == nil { // deleted between the lookup and now
			b.st.outNoSA.Add(1)
			return
		}
		hl := r.SA.HeaderLen()
		// Seal in place: the ESP header and IV go into the headroom right
		// in front of the packet, which Seal then finds already in place.
		out, err := r.SA.Seal(buf[:headroom-hl], pkt)
		if err != nil {
			b.st.outSealDrops.Add(1)
			return
		}
		a := e.addrs.Load()
		if err := b.cfg.SendESP(a.local, a.remote, out[headroom-hl:]); err != nil {
			if b.st.sendErrors.Add(1) == 1 {
				b.logf("userspace: send ESP %v -> %v: %v (further errors are only counted)", a.local, a.remote, err)
			}
			return
		}
		b.st.outPackets.Add(1)
		b.st.outBytes.Add(uint64(size))
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
