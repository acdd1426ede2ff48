package ike

import (
	"net/netip"
	"testing"
	"time"

	"goswan/ike/message"
)

// sealRaw builds a protected request of sa whose SK payload carries pt as
// is, with first as the inner Next Payload: any bytes reach the decoder
// of the inner chain with a valid ICV.
func sealRaw(sa *ikeSA, exch message.ExchangeType, msgid uint32, first message.PayloadType, pt []byte) []byte {
	m := message.Message{SPIi: sa.spii, SPIr: sa.spir, Exchange: exch, Flags: message.FlagInitiator, MessageID: msgid,
		Payloads: []message.Payload{&message.Encrypted{InnerFirst: first}}}
	n := sa.skOut.SealedSize(len(pt))
	out, err := m.AppendAssociatedData(nil, n)
	if err != nil {
		return nil
	}
	out, err = sa.skOut.Encrypt(out, out, pt)
	if err != nil {
		return nil
	}
	return out
}

// westSA returns west's established IKE SA, or nil.
func westSA(b *bed) *ikeSA {
	for _, w := range b.west.workers {
		for _, sa := range w.sas {
			if sa.state == stateEstablished {
				return sa
			}
		}
	}
	return nil
}

// FuzzReceive feeds datagrams to a responder engine that has an
// established IKE SA with the initiator. The first byte picks the form:
// even, the rest is a datagram as received on port 500 or 4500; odd, the
// rest (after an exchange type and an inner payload type) is the
// plaintext of a protected request of the established SA, so that the
// inner payload decoders and the exchange handlers see arbitrary input
// behind a valid ICV. Nothing may panic, and garbage must be counted.
func FuzzReceive(f *testing.F) {
	b := newBed(f, baseConn, baseConn)
	b.west.log, b.east.log = nil, nil
	b.mustUp()
	for _, p := range b.net.sent {
		f.Add(append([]byte{0}, p.Data...))
	}
	// Inner chains: an empty liveness request, a Delete of the Child SA,
	// a Delete of the IKE SA, a notify.
	f.Add([]byte{1, byte(message.INFORMATIONAL), 0})
	f.Add([]byte{1, byte(message.INFORMATIONAL), byte(message.PayloadDelete), 0, 0, 0, 12, 3, 4, 0, 1, 0, 0, 0, 1})
	f.Add([]byte{1, byte(message.INFORMATIONAL), byte(message.PayloadDelete), 0, 0, 0, 8, 1, 0, 0, 0})
	f.Add([]byte{1, byte(message.INFORMATIONAL), byte(message.PayloadNotify), 0, 0, 0, 8, 0, 0, 0, 24})
	f.Add([]byte{1, byte(message.IKE_AUTH), byte(message.PayloadIDi), 0, 0, 0, 12, 1, 0, 0, 0, 192, 0, 2, 1})
	f.Add([]byte{1, byte(message.CREATE_CHILD_SA), byte(message.PayloadSA), 0, 0, 0, 4})
	f.Add([]byte{2, 0, 0, 0})
	from := []netip.AddrPort{netip.AddrPortFrom(westAddr, 500), netip.AddrPortFrom(westAddr, 4500)}
	to := []netip.AddrPort{netip.AddrPortFrom(eastAddr, 500), netip.AddrPortFrom(eastAddr, 4500)}
	n := 0
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		n++
		if n%512 == 0 { // let half-open SAs expire now and then
			b.clk.advance(DefaultHalfOpenTimeout + time.Second)
			b.east.Tick(b.clk.now())
		}
		if data[0]%2 == 0 {
			b.east.Receive(Packet{Local: to[data[0]/2%2], Remote: from[data[0]/4%2], Data: data[1:]})
		} else {
			sa := westSA(b)
			if sa == nil {
				b.net.q = nil
				b.net.drop = nil
				r := b.up()
				if r.err != nil {
					t.Fatalf("re-establishing: %v", r.err)
				}
				if sa = westSA(b); sa == nil {
					t.Fatal("no IKE SA after up")
				}
			}
			if len(data) < 3 {
				return
			}
			d := sealRaw(sa, message.ExchangeType(data[1]), sa.nextMsgID, message.PayloadType(data[2]), data[3:])
			sa.nextMsgID++
			if d != nil {
				b.east.Receive(Packet{Local: sa.remote, Remote: sa.local, Data: d})
			}
		}
		// East's answers go nowhere: west must not act on them here.
		b.net.q = nil
	})
}
