// Package memory is a back end of the SA-install interface that keeps SAs
// and policies in memory and moves no packets. It serves the tests of the
// IKE code until, and besides, the real data planes; pluto offers no flag
// that selects it.
package memory

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"goswan/kernel"
)

// Backend is an in-memory kernel.IPsec. The zero value is not usable; call
// New.
type Backend struct {
	mu       sync.Mutex
	spis     map[kernel.SAID]bool // reserved by GetSPI, not yet added
	sas      map[kernel.SAID]*entry
	policies []*kernel.Policy
	events   chan kernel.Event
	closed   bool
	dropped  uint64 // events nobody read
}

type entry struct {
	sa    kernel.SA
	stats kernel.SAStats
}

var _ kernel.IPsec = (*Backend)(nil)

// New returns an empty back end whose event channel holds up to 64 events.
func New() *Backend {
	return &Backend{
		spis:   map[kernel.SAID]bool{},
		sas:    map[kernel.SAID]*entry{},
		events: make(chan kernel.Event, 64),
	}
}

func (b *Backend) GetSPI(ctx context.Context, src, dst netip.Addr, proto kernel.Proto, reqid uint32) (uint32, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, fmt.Errorf("memory back end closed")
	}
	for {
		var r [4]byte
		rand.Read(r[:])
		spi := binary.BigEndian.Uint32(r[:])
		if spi < 0x100 { // 1..255 are reserved (RFC 4303 §2.1)
			continue
		}
		id := kernel.SAID{Dst: dst, SPI: spi, Proto: proto}
		if b.spis[id] || b.sas[id] != nil {
			continue
		}
		b.spis[id] = true
		return spi, nil
	}
}

func (b *Backend) AddSA(ctx context.Context, sa *kernel.SA) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := sa.ID()
	if b.sas[id] != nil {
		return fmt.Errorf("add SA %v: already installed", id)
	}
	if sa.Dir == kernel.In && !b.spis[id] {
		return fmt.Errorf("add inbound SA %v: SPI was not reserved with GetSPI", id)
	}
	delete(b.spis, id)
	e := &entry{sa: *sa, stats: kernel.SAStats{Added: time.Now()}}
	e.sa.EncrKey = slices.Clone(sa.EncrKey)
	e.sa.IntegKey = slices.Clone(sa.IntegKey)
	e.sa.Selectors = slices.Clone(sa.Selectors)
	b.sas[id] = e
	return nil
}

func (b *Backend) UpdateSA(ctx context.Context, id kernel.SAID, sa *kernel.SA) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.sas[id]
	if e == nil {
		return fmt.Errorf("update SA %v: %w", id, kernel.ErrNotFound)
	}
	delete(b.sas, id)
	e.sa.Src, e.sa.Dst, e.sa.Encap = sa.Src, sa.Dst, sa.Encap
	b.sas[e.sa.ID()] = e
	return nil
}

func (b *Backend) QuerySA(ctx context.Context, id kernel.SAID) (kernel.SAStats, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.sas[id]
	if e == nil {
		return kernel.SAStats{}, fmt.Errorf("query SA %v: %w", id, kernel.ErrNotFound)
	}
	return e.stats, nil
}

func (b *Backend) DeleteSA(ctx context.Context, id kernel.SAID) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.spis[id] {
		delete(b.spis, id)
		return nil
	}
	if b.sas[id] == nil {
		return fmt.Errorf("delete SA %v: %w", id, kernel.ErrNotFound)
	}
	delete(b.sas, id)
	return nil
}

func samePolicy(a, b *kernel.Policy) bool {
	return a.Dir == b.Dir && a.Selector == b.Selector && (a.Mark == nil) == (b.Mark == nil) &&
		(a.Mark == nil || *a.Mark == *b.Mark)
}

func (b *Backend) AddPolicy(ctx context.Context, p *kernel.Policy) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	cp := *p
	for i, q := range b.policies {
		if samePolicy(q, p) {
			b.policies[i] = &cp
			return nil
		}
	}
	b.policies = append(b.policies, &cp)
	return nil
}

func (b *Backend) DeletePolicy(ctx context.Context, p *kernel.Policy) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, q := range b.policies {
		if samePolicy(q, p) {
			b.policies = slices.Delete(b.policies, i, i+1)
			return nil
		}
	}
	return fmt.Errorf("delete %s policy %v: %w", p.Dir, p.Selector, kernel.ErrNotFound)
}

func (b *Backend) Events() <-chan kernel.Event { return b.events }

func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		close(b.events)
	}
	return nil
}

// Raise delivers ev on the event channel, or counts it as dropped when the
// channel is full, as a real back end does.
func (b *Backend) Raise(ev kernel.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	select {
	case b.events <- ev:
	default:
		b.dropped++
	}
}

// AddTraffic adds to an SA's counters, standing in for packets.
func (b *Backend) AddTraffic(id kernel.SAID, bytes, packets uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.sas[id]
	if e == nil {
		return fmt.Errorf("SA %v: %w", id, kernel.ErrNotFound)
	}
	e.stats.Bytes += bytes
	e.stats.Packets += packets
	e.stats.LastUsed = time.Now()
	return nil
}

// SAs returns copies of the installed SAs.
func (b *Backend) SAs() []kernel.SA {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]kernel.SA, 0, len(b.sas))
	for _, e := range b.sas {
		out = append(out, e.sa)
	}
	return out
}

// Policies returns copies of the installed policies.
func (b *Backend) Policies() []kernel.Policy {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]kernel.Policy, 0, len(b.policies))
	for _, p := range b.policies {
		out = append(out, *p)
	}
	return out
}

// Reserved is the number of SPIs reserved and not yet used by an SA.
func (b *Backend) Reserved() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.spis)
}
