package kernel

import (
	"context"
	"fmt"
	"net/netip"
)

// Unavailable returns an IPsec whose every SA and policy operation fails
// with reason. pluto uses it for a back end that this build cannot drive
// yet, so that IKE still negotiates and "ipsec up" fails with words that
// say why, instead of pretending that traffic is protected.
func Unavailable(b Backend, reason string) IPsec {
	return &unavailable{err: fmt.Errorf("%s cannot install SAs: %s", b.Flag(), reason), events: make(chan Event)}
}

type unavailable struct {
	err    error
	events chan Event
	closed bool
}

func (u *unavailable) GetSPI(context.Context, netip.Addr, netip.Addr, Proto, uint32) (uint32, error) {
	return 0, u.err
}
func (u *unavailable) AddSA(context.Context, *SA) error               { return u.err }
func (u *unavailable) UpdateSA(context.Context, SAID, *SA) error      { return u.err }
func (u *unavailable) QuerySA(context.Context, SAID) (SAStats, error) { return SAStats{}, u.err }
func (u *unavailable) DeleteSA(context.Context, SAID) error           { return u.err }
func (u *unavailable) AddPolicy(context.Context, *Policy) error       { return u.err }
func (u *unavailable) DeletePolicy(context.Context, *Policy) error    { return u.err }
func (u *unavailable) Events() <-chan Event                           { return u.events }
func (u *unavailable) Close() error {
	if !u.closed {
		u.closed = true
		close(u.events)
	}
	return nil
}
