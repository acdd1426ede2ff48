package userspace

import "sync/atomic"

// Stats are the back end's own counters; the engine's per-SA and per-reason
// drop counters are in QuerySA, SADrops and esp.GlobalDrops.
type Stats struct {
	OutPackets, OutBytes uint64 // sealed and handed to SendESP (inner octets)
	OutNoPolicy          uint64 // no outbound policy covers the packet
	OutBlocked           uint64 // a Block policy
	OutBypass            uint64 // a Bypass policy: no clear path out of a TUN, dropped
	OutAcquire           uint64 // a Protect policy without an SA: dropped (acquire raised at most once per interval)
	OutNoSA              uint64 // the SA went away during the lookup
	OutSealDrops         uint64 // Seal refused (expired, sequence overflow, malformed)
	SendErrors           uint64 // SendESP failed
	OutReadErrors        uint64 // device read errors (including lost GSO segments)
	InPackets, InBytes   uint64 // opened and written to the device (inner octets)
	InDrops              uint64 // Open refused: no SA, replay, ICV, padding, selectors...
	DeviceWriteErrors    uint64
	Acquires             uint64 // acquire events raised
	EventsDropped        uint64 // events lost to a full channel
}

type counters struct {
	outPackets, outBytes, outNoPolicy, outBlocked, outBypass, outAcquire atomic.Uint64
	outNoSA, outSealDrops, sendErrors, outReadErrors                     atomic.Uint64
	_                                                                    [64]byte // inbound counters on other cache lines
	inPackets, inBytes, inDrops, devWriteErrors                          atomic.Uint64
	acquires, eventsDropped                                              atomic.Uint64
}

// Stats returns a snapshot of the back end's counters.
func (b *Backend) Stats() Stats {
	c := &b.st
	return Stats{
		OutPackets: c.outPackets.Load(), OutBytes: c.outBytes.Load(),
		OutNoPolicy: c.outNoPolicy.Load(), OutBlocked: c.outBlocked.Load(),
		OutBypass: c.outBypass.Load(), OutAcquire: c.outAcquire.Load(),
		OutNoSA: c.outNoSA.Load(), OutSealDrops: c.outSealDrops.Load(),
		SendErrors: c.sendErrors.Load(), OutReadErrors: c.outReadErrors.Load(),
		InPackets: c.inPackets.Load(), InBytes: c.inBytes.Load(), InDrops: c.inDrops.Load(),
		DeviceWriteErrors: c.devWriteErrors.Load(),
		Acquires:          c.acquires.Load(), EventsDropped: c.eventsDropped.Load(),
	}
}
