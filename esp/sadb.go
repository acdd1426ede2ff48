package esp

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
)

const sadbShards = 64

// SADB maps inbound SPIs to SAs. Lookup is lock-free: each of 64 shards is
// an atomic pointer to an immutable map, which Add and Remove replace under
// the shard's mutex (copy on write, so a write costs one shard's size).
type SADB struct {
	shards [sadbShards]sadbShard
}

type sadbShard struct {
	mu sync.Mutex
	m  atomic.Pointer[map[uint32]*SA]
	_  [40]byte // keep shards on their own cache lines
}

func shardOf(spi uint32) uint32 { return (spi * 0x9e3779b1) >> 26 }

// NewSADB returns an empty SADB.
func NewSADB() *SADB { return &SADB{} }

// Add installs sa; it fails if its SPI is taken.
func (db *SADB) Add(sa *SA) error {
	s := &db.shards[shardOf(sa.spi)]
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.m.Load()
	var n map[uint32]*SA
	if old == nil {
		n = make(map[uint32]*SA, 1)
	} else {
		if _, dup := (*old)[sa.spi]; dup {
			return fmt.Errorf("esp: SPI %#08x is already in the SADB", sa.spi)
		}
		n = make(map[uint32]*SA, len(*old)+1)
		for k, v := range *old {
			n[k] = v
		}
	}
	n[sa.spi] = sa
	s.m.Store(&n)
	return nil
}

// Remove deletes the SA with spi and returns it (nil if none).
func (db *SADB) Remove(spi uint32) *SA {
	s := &db.shards[shardOf(spi)]
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.m.Load()
	if old == nil {
		return nil
	}
	sa, ok := (*old)[spi]
	if !ok {
		return nil
	}
	n := make(map[uint32]*SA, len(*old))
	for k, v := range *old {
		if k != spi {
			n[k] = v
		}
	}
	s.m.Store(&n)
	return sa
}

// Lookup returns the SA with spi, or nil.
func (db *SADB) Lookup(spi uint32) *SA {
	m := db.shards[shardOf(spi)].m.Load()
	if m == nil {
		return nil
	}
	return (*m)[spi]
}

// Len returns the number of SAs.
func (db *SADB) Len() int {
	n := 0
	for i := range db.shards {
		if m := db.shards[i].m.Load(); m != nil {
			n += len(*m)
		}
	}
	return n
}

// Range calls f for every SA until f returns false.
func (db *SADB) Range(f func(*SA) bool) {
	for i := range db.shards {
		if m := db.shards[i].m.Load(); m != nil {
			for _, sa := range *m {
				if !f(sa) {
					return
				}
			}
		}
	}
}

// CheckLifetimes runs CheckLifetime on every SA.
func (db *SADB) CheckLifetimes() {
	db.Range(func(sa *SA) bool { sa.CheckLifetime(); return true })
}

// Open finds the SA for an ESP packet (SPI first; the payload of a NAT-T
// datagram or of an IP-protocol-50 packet) and opens it with that SA. For
// transport-mode SAs, which take the whole IP packet, look the SA up with
// Lookup and call its Open. Drops without an SA count only globally.
func (db *SADB) Open(dst, esp []byte) ([]byte, *SA, error) {
	if len(esp) < espHeaderLen {
		return dst, nil, countGlobal(DropShort)
	}
	sa := db.Lookup(binary.BigEndian.Uint32(esp[0:4]))
	if sa == nil {
		return dst, nil, countGlobal(DropNoSA)
	}
	if sa.mode != Tunnel {
		return dst, sa, sa.drop(DropMalformed)
	}
	out, err := sa.Open(dst, esp)
	return out, sa, err
}
