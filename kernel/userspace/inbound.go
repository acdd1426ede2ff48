package userspace

// The inbound path. By default (Config.InboundWorkers <= 0) DeliverESP
// opens the packet on the caller's goroutine (the NAT-T socket's reader)
// into a pooled buffer and writes it to the device before it returns
// (deliverSerial). With InboundWorkers >= 1 it is a pipeline, as
// wireguard-go's receive side: DeliverESP copies the datagram into
// a pooled element, locks the element and queues it twice: on inWork,
// which the open workers drain (Open, then unlock), and on inOrder,
// which one writer goroutine drains in arrival order, waiting on each
// element's lock, and writes the opened packets to the device in batches.
// So reading the socket, opening and writing the device run on three
// cores, and the device sees the packets in the order they arrived.
// DeliverESP blocks when the queues are full, which slows the socket
// reader rather than dropping.
//
// Why more than one open worker is not the default: esp.SA.Open checks and updates the
// replay window as it opens, so two workers that open one SA's packets
// out of order by more than the window (a worker descheduled while the
// other runs ahead) lose the late packet. wireguard-go can open in
// parallel because its window is thousands of packets wide; an IKE peer
// asks for 32 to 128. Parallel opening that keeps order needs the engine
// to split Open into decrypt (parallel) and a replay commit in order.
//
// Elements come from a sync.Pool and their buffers are kept, so a packet
// allocates nothing (a datagram larger than the buffers grows them once).

import (
	"net/netip"
	"sync"

	"goswan/esp"
)

const (
	inQueueLen = 1024
	inBatchMax = 128
	elemCap    = 2048 // initial buffer size: an MTU-sized packet and more
)

type inElem struct {
	mu   sync.Mutex // held from DeliverESP until a worker opened the packet
	in   []byte     // the ESP packet, copied
	out  []byte     // headroom + the inner packet, after Open
	ok   bool
	bufs [][]byte // serial path: Write's argument
}

func newInElem() *inElem {
	return &inElem{in: make([]byte, 0, elemCap), out: make([]byte, headroom+elemCap+esp.ScratchLen), bufs: make([][]byte, 1)}
}

// DeliverESP takes one received ESP-in-UDP payload (from the SPI on, the
// non-ESP marker already told apart) that arrived from remote on local.
// pkt is not kept after return. It may be called from several goroutines.
// The outer addresses are not checked: a peer behind a NAT may move, and
// the ICV and replay checks decide.
func (b *Backend) DeliverESP(local, remote netip.AddrPort, pkt []byte) {
	if b.serialIn {
		b.deliverSerial(pkt)
		return
	}
	b.inMu.RLock()
	defer b.inMu.RUnlock()
	if b.inClosed {
		return
	}
	el := b.inPool.Get().(*inElem)
	el.in = append(el.in[:0], pkt...)
	el.mu.Lock()
	b.inOrder <- el
	b.inWork <- el
}

// DeliverRawESP takes one received raw ESP packet (IP protocol 50; pkt
// is the ESP packet from the SPI on, the IP header stripped) that arrived
// from remote on local: the daemon wires its raw ESP socket to it. It is
// DeliverESP otherwise (pkt is not kept; the outer addresses are not
// checked, the ICV and replay checks decide). A raw socket sees every
// protocol-50 packet to the host: packets of SAs this back end does not
// hold are dropped and counted as in DeliverESP.
func (b *Backend) DeliverRawESP(local, remote netip.Addr, pkt []byte) {
	if b.cfg.SendRawESP == nil {
		b.st.inDrops.Add(1)
		return
	}
	b.DeliverESP(netip.AddrPortFrom(local, 0), netip.AddrPortFrom(remote, 0), pkt)
}

func (b *Backend) openWorker() {
	defer b.inWG.Done()
	for el := range b.inWork {
		out, err := b.open(el.out[:headroom], el.in)
		if err == nil {
			el.out, el.ok = out[:cap(out)][:len(out)], true
		} else {
			el.ok = false
		}
		el.mu.Unlock()
	}
}

func (b *Backend) writeLoop() {
	defer b.inWG.Done()
	bufs := make([][]byte, 0, inBatchMax)
	elems := make([]*inElem, 0, inBatchMax)
	for el := range b.inOrder {
		elems = append(elems[:0], el)
	more:
		for len(elems) < inBatchMax {
			select {
			case e, ok := <-b.inOrder:
				if !ok {
					break more
				}
				elems = append(elems, e)
			default:
				break more
			}
		}
		bufs = bufs[:0]
		for _, e := range elems {
			e.mu.Lock() // wait for the worker
			if e.ok {
				bufs = append(bufs, e.out)
			} else {
				b.st.inDrops.Add(1)
			}
		}
		if len(bufs) > 0 {
			b.writeDevice(bufs)
		}
		for i, e := range elems {
			e.mu.Unlock()
			if len(e.out) > headroom+elemCap*4 { // let a jumbo buffer go
				e.out = make([]byte, headroom+elemCap+esp.ScratchLen)
			}
			e.ok = false
			b.inPool.Put(e)
			elems[i] = nil
		}
		for i := range bufs {
			bufs[i] = nil
		}
	}
}

func (b *Backend) writeDevice(bufs [][]byte) {
	var octets int
	for _, p := range bufs {
		octets += len(p) - headroom
	}
	if _, err := b.dev.Write(bufs, headroom); err != nil {
		if b.st.devWriteErrors.Add(1) == 1 && !b.closing.Load() {
			b.logf("userspace: write to the device: %v (further errors are only counted)", err)
		}
		return
	}
	b.st.inPackets.Add(uint64(len(bufs)))
	b.st.inBytes.Add(uint64(octets))
}

// deliverSerial opens and writes on the caller's goroutine.
func (b *Backend) deliverSerial(pkt []byte) {
	if b.closing.Load() {
		return
	}
	el := b.inPool.Get().(*inElem)
	out, err := b.open(el.out[:headroom], pkt)
	if err != nil {
		b.st.inDrops.Add(1)
		b.inPool.Put(el)
		return
	}
	el.out = out
	el.bufs[0] = out
	b.writeDevice(el.bufs)
	el.bufs[0] = nil
	b.inPool.Put(el)
}

// inBatchLen is the most packets DeliverESPBatch opens before it writes
// them to the device in one call.
const inBatchLen = 64

// groBufLen is the size of DeliverESPBatch's buffers: a kernel TUN with
// offloads coalesces the packets of one TCP flow into the first one's
// buffer (GRO) before it writes, up to 64 KiB.
const groBufLen = headroom + 65535 + esp.ScratchLen

// inBatch is DeliverESPBatch's state: buffers that can take a coalesced
// packet. A few are kept (one per socket reader is what is used); more
// callers at once allocate and drop the extras.
type inBatch struct {
	bufs [inBatchLen][]byte
	outs [][]byte
}

func (b *Backend) getInBatch() *inBatch {
	select {
	case ib := <-b.inBatches:
		return ib
	default:
	}
	ib := &inBatch{outs: make([][]byte, 0, inBatchLen)}
	for i := range ib.bufs {
		ib.bufs[i] = make([]byte, groBufLen)
	}
	return ib
}

func (b *Backend) putInBatch(ib *inBatch) {
	select {
	case b.inBatches <- ib:
	default:
	}
}

// DeliverESPBatch is DeliverESP for several ESP packets that arrived from
// remote on local, in arrival order: the daemon wires the NAT-T socket's
// OnESPBatch (recvmmsg, UDP GRO) to it. It opens them and writes the inner
// packets to the device in one call, which a kernel TUN with offloads
// coalesces (GRO) into few writes. pkts are not kept after return. It may
// be called from several goroutines.
func (b *Backend) DeliverESPBatch(local, remote netip.AddrPort, pkts [][]byte) {
	if !b.serialIn {
		for _, p := range pkts {
			b.DeliverESP(local, remote, p)
		}
		return
	}
	if b.closing.Load() || len(pkts) == 0 {
		return
	}
	ib := b.getInBatch()
	for len(pkts) > 0 {
		n := min(len(pkts), inBatchLen)
		for i, p := range pkts[:n] {
			out, err := b.open(ib.bufs[i][:headroom], p)
			if err != nil {
				b.st.inDrops.Add(1)
				continue
			}
			ib.outs = append(ib.outs, out)
		}
		if len(ib.outs) > 0 {
			b.writeDevice(ib.outs)
		}
		clear(ib.outs)
		ib.outs = ib.outs[:0]
		pkts = pkts[n:]
	}
	b.putInBatch(ib)
}
