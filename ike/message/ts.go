package message

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// TrafficSelectors is the TSi or TSr payload (RFC 7296 §3.13):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Number of TSs |                 RESERVED                      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                       <Traffic Selectors>                     ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type TrafficSelectors struct {
	Responder bool // TSr rather than TSi
	Selectors []TrafficSelector
}

// TrafficSelector is one traffic selector (RFC 7296 §3.13.1):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   TS Type     |IP Protocol ID*|       Selector Length         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           Start Port*         |           End Port*           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                         Starting Address*                     ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                         Ending Address*                       ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The starred fields are those of TS_IPV4_ADDR_RANGE and
// TS_IPV6_ADDR_RANGE. A selector of another type (TS_SECLABEL, ...) keeps
// its second octet in IPProtocol and everything after the length in Raw.
//
// StartPort must not exceed EndPort, except for OPAQUE ports (start 65535,
// end 0); Start must not exceed End.
type TrafficSelector struct {
	TSType     TSType
	IPProtocol uint8 // 0 for any
	StartPort  uint16
	EndPort    uint16
	Start, End netip.Addr
	Raw        []byte
}

// SelectorFromPrefix returns the selector covering the prefix, the IP
// protocol (0 for any) and the ports (0, 65535 for any).
func SelectorFromPrefix(p netip.Prefix, ipProto uint8, startPort, endPort uint16) TrafficSelector {
	p = p.Masked()
	t := TSIPv4AddrRange
	if p.Addr().Is6() {
		t = TSIPv6AddrRange
	}
	return TrafficSelector{
		TSType: t, IPProtocol: ipProto, StartPort: startPort, EndPort: endPort,
		Start: p.Addr(), End: lastAddr(p),
	}
}

// lastAddr is the highest address in the prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As16()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	for i := bits; i < 128; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	if p.Addr().Is4() {
		return netip.AddrFrom16(a).Unmap()
	}
	return netip.AddrFrom16(a)
}

// Prefix returns the prefix whose addresses are exactly Start..End, if
// there is one.
func (ts *TrafficSelector) Prefix() (netip.Prefix, bool) {
	if !ts.Start.IsValid() || ts.Start.BitLen() != ts.End.BitLen() {
		return netip.Prefix{}, false
	}
	s, e := ts.Start.As16(), ts.End.As16()
	off := 128 - ts.Start.BitLen()
	bits := off
	for bits < 128 && (s[bits/8]^e[bits/8])&(0x80>>(bits%8)) == 0 {
		bits++
	}
	p := netip.PrefixFrom(ts.Start, bits-off)
	if p.Masked().Addr() != ts.Start || lastAddr(p) != ts.End {
		return netip.Prefix{}, false
	}
	return p, true
}

// IsPrefix reports whether Start..End is exactly one prefix.
func (ts *TrafficSelector) IsPrefix() bool {
	_, ok := ts.Prefix()
	return ok
}

// String is the selector as Libreswan logs it: 10.0.0.0/24:6/0-65535, or
// the address range when it is not a prefix.
func (ts *TrafficSelector) String() string {
	switch ts.TSType {
	case TSIPv4AddrRange, TSIPv6AddrRange:
	default:
		return fmt.Sprintf("%v[%x]", ts.TSType, ts.Raw)
	}
	addr := ts.Start.String() + "-" + ts.End.String()
	if p, ok := ts.Prefix(); ok {
		addr = p.String()
	}
	return fmt.Sprintf("%s:%d/%d-%d", addr, ts.IPProtocol, ts.StartPort, ts.EndPort)
}

func (p *TrafficSelectors) Type() PayloadType {
	if p.Responder {
		return PayloadTSr
	}
	return PayloadTSi
}

func (p *TrafficSelectors) abbrev(bool) string { return p.Type().String() }

// String lists the selectors.
func (p *TrafficSelectors) String() string {
	s := make([]string, len(p.Selectors))
	for i := range p.Selectors {
		s[i] = p.Selectors[i].String()
	}
	return p.Type().String() + "{" + strings.Join(s, " ") + "}"
}

func (ts *TrafficSelector) check() *Error {
	var alen int
	switch ts.TSType {
	case TSIPv4AddrRange:
		alen = 4
	case TSIPv6AddrRange:
		alen = 16
	default:
		return nil
	}
	if ts.Start.BitLen() != 8*alen || ts.End.BitLen() != 8*alen {
		return syntaxf("%v with addresses %v and %v", ts.TSType, ts.Start, ts.End)
	}
	if ts.StartPort > ts.EndPort && !(ts.StartPort == 65535 && ts.EndPort == 0) {
		return syntaxf("%v: start port %d above end port %d", ts.TSType, ts.StartPort, ts.EndPort)
	}
	if ts.End.Less(ts.Start) {
		return syntaxf("%v: start address %v above end address %v", ts.TSType, ts.Start, ts.End)
	}
	return nil
}

func (p *TrafficSelectors) appendBody(b []byte) ([]byte, error) {
	if len(p.Selectors) == 0 || len(p.Selectors) > 255 {
		return b, fmt.Errorf("%v with %d selectors", p.Type(), len(p.Selectors))
	}
	b = append(b, uint8(len(p.Selectors)), 0, 0, 0)
	for i := range p.Selectors {
		ts := &p.Selectors[i]
		if err := ts.check(); err != nil {
			return b, err
		}
		switch ts.TSType {
		case TSIPv4AddrRange, TSIPv6AddrRange:
			n := 8 + 2*ts.Start.BitLen()/8
			b = append(b, uint8(ts.TSType), ts.IPProtocol)
			b = binary.BigEndian.AppendUint16(b, uint16(n))
			b = binary.BigEndian.AppendUint16(b, ts.StartPort)
			b = binary.BigEndian.AppendUint16(b, ts.EndPort)
			b = appendAddr(b, ts.Start)
			b = appendAddr(b, ts.End)
		default:
			if len(ts.Raw) > 0xffff-4 {
				return b, fmt.Errorf("%v of %d bytes", ts.TSType, len(ts.Raw))
			}
			b = append(b, uint8(ts.TSType), ts.IPProtocol)
			b = binary.BigEndian.AppendUint16(b, uint16(4+len(ts.Raw)))
			b = append(b, ts.Raw...)
		}
	}
	return b, nil
}

func (p *TrafficSelectors) decodeBody(body []byte) *Error {
	if len(body) < 4 {
		return syntaxf("TS body is %d bytes, want at least 4", len(body))
	}
	n := int(body[0])
	if n == 0 {
		return syntaxf("no traffic selectors")
	}
	// Each selector takes at least 4 bytes: bound n by the payload
	// before allocating.
	if 4*n > len(body)-4 {
		return syntaxf("%d traffic selectors in %d bytes", n, len(body)-4)
	}
	p.Selectors = make([]TrafficSelector, n)
	off := 4
	for i := range p.Selectors {
		if len(body)-off < 4 {
			return syntaxf("traffic selector %d truncated", i+1)
		}
		ts := &p.Selectors[i]
		ts.TSType = TSType(body[off])
		ts.IPProtocol = body[off+1]
		slen := int(binary.BigEndian.Uint16(body[off+2:]))
		if slen < 4 || slen > len(body)-off {
			return syntaxf("traffic selector %d: length %d, %d bytes left", i+1, slen, len(body)-off)
		}
		switch ts.TSType {
		case TSIPv4AddrRange, TSIPv6AddrRange:
			alen := 4
			if ts.TSType == TSIPv6AddrRange {
				alen = 16
			}
			if slen != 8+2*alen {
				return syntaxf("%v: selector length %d, want %d", ts.TSType, slen, 8+2*alen)
			}
			s := body[off:]
			ts.StartPort = binary.BigEndian.Uint16(s[4:])
			ts.EndPort = binary.BigEndian.Uint16(s[6:])
			ts.Start, _ = netip.AddrFromSlice(s[8 : 8+alen])
			ts.End, _ = netip.AddrFromSlice(s[8+alen : 8+2*alen])
			if err := ts.check(); err != nil {
				return err
			}
		default:
			ts.Raw = sub(body, off+4, off+slen)
		}
		off += slen
	}
	if off != len(body) {
		return syntaxf("%d bytes after %d traffic selectors", len(body)-off, n)
	}
	return nil
}

// appendAddr appends the address's bytes without allocating.
func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		return append(b, v[:]...)
	}
	v := a.As16()
	return append(b, v[:]...)
}
