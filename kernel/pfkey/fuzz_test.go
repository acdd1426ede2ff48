package pfkey

import (
	"cmp"
	"reflect"
	"slices"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the decoder of every dialect: it must
// never panic, and what it accepts must encode and decode again to the
// same message.
func FuzzDecode(f *testing.F) {
	for _, l := range []*Layout{linuxLE, freebsdLE} {
		f.Add(mustEncodeF(getSPIRequest(), l))
		m, _ := freebsdLE.SAMessage(MsgAdd, gcmSA(), 0x2001)
		m.SA.Flags = 0
		f.Add(mustEncodeF(m, l))
		p, _ := l.PolicyMessage(MsgSPDAdd, tunnelPolicy(), 0x2001)
		f.Add(mustEncodeF(p, l))
	}
	f.Add(linuxAcquire)
	f.Add(freebsdExpire)
	f.Add([]byte{2, 7, 0, 3, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, l := range []*Layout{linuxLE, freebsdLE, netbsdLE} {
			m, err := Decode(l, b)
			if err != nil {
				continue
			}
			re, err := m.Encode(l)
			if err != nil {
				t.Fatalf("%s: re-encoding %+v: %v", l.Name, m, err)
			}
			m2, err := Decode(l, re)
			if err != nil {
				t.Fatalf("%s: decoding the re-encoded message: %v", l.Name, err)
			}
			if !reflect.DeepEqual(normalize(m), normalize(m2)) {
				t.Fatalf("%s: round trip changed\n%+v\nto\n%+v", l.Name, m, m2)
			}
		}
	})
}

func mustEncodeF(m *Message, l *Layout) []byte {
	b, err := m.Encode(l)
	if err != nil {
		panic(err)
	}
	return b
}

// normalize drops what a round trip may legitimately change: the padding
// after an identity's string and a KMPRIVATE's data, and the order of the
// extensions it does not model (Encode sorts them).
func normalize(m *Message) *Message {
	c := *m
	for _, id := range []**Identity{&c.SrcIdentity, &c.DstIdentity} {
		if *id != nil {
			v := **id
			v.Data = nil
			*id = &v
		}
	}
	if c.KMPrivate != nil {
		c.KMPrivate = &KMPrivate{}
	}
	var u []RawExt
	for _, r := range c.Unknown {
		u = append(u, RawExt{Type: r.Type})
	}
	slices.SortFunc(u, func(a, b RawExt) int { return cmp.Compare(a.Type, b.Type) })
	c.Unknown = u
	return &c
}
