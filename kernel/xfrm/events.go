package xfrm

import (
	"fmt"

	"goswan/kernel"
)

// eventFromMessage turns an XFRM multicast message into an Event. ok is
// false for messages that are no event of ours: other types, expiries of
// the larval states that the kernel makes for acquires (SPI 0), and,
// unless all is set, anything whose reqid is not goswan's.
func eventFromMessage(typ uint16, body []byte, all bool) (ev kernel.Event, ok bool, err error) {
	switch typ {
	case msgAcquire:
		a, err := parseAcquire(body)
		if err != nil {
			return ev, false, err
		}
		ev = kernel.Event{
			Kind:     kernel.Acquire,
			SA:       kernel.SAID{Dst: a.Daddr, Proto: kernel.Proto(a.Proto)},
			Selector: selectorFromXFRM(a.Sel),
			ReqID:    a.reqID(),
		}
	case msgExpire:
		e, err := parseExpire(body)
		if err != nil {
			return ev, false, err
		}
		if e.State.SPI == 0 {
			return ev, false, nil
		}
		ev = kernel.Event{
			Kind:  kernel.SoftExpire,
			SA:    kernel.SAID{Dst: e.State.Daddr, SPI: e.State.SPI, Proto: kernel.Proto(e.State.Proto)},
			ReqID: e.State.ReqID,
		}
		if e.Hard {
			ev.Kind = kernel.HardExpire
		}
	default:
		return ev, false, nil
	}
	if !ev.SA.Dst.IsValid() && ev.Kind != kernel.Acquire {
		return ev, false, fmt.Errorf("%v without an address", ev.Kind)
	}
	if !all && !kernel.OurReqID(ev.ReqID) {
		return ev, false, nil
	}
	return ev, true, nil
}
