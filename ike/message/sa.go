package message

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"goswan/proposal"
)

// Limits on an SA payload, well above anything a real peer sends
// (Libreswan and strongSwan send at most a few dozen proposals).
const (
	MaxProposals  = 64
	MaxTransforms = 255 // per proposal: the count field is one octet
)

// SA is the Security Association payload (RFC 7296 §3.3): one or more
// proposals.
type SA struct {
	Proposals []Proposal
}

// Proposal is a proposal substructure (RFC 7296 §3.3.1):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Last Substruc |   RESERVED    |         Proposal Length       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Proposal Num  |  Protocol ID  |    SPI Size   |Num  Transforms|
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                        SPI (variable)                         ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                        <Transforms>                           ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Last Substruc is 0 on the last proposal and 2 on the others. The first
// proposal number is 1 in a request; each next one is the same or one
// more. The SPI is empty or 8 bytes for IKE, 4 bytes for AH and ESP.
type Proposal struct {
	Number     uint8
	Protocol   ProtocolID
	SPI        []byte
	Transforms []Transform
}

// Transform is a transform substructure (RFC 7296 §3.3.2):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Last Substruc |   RESERVED    |        Transform Length       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Transform Type |   RESERVED    |          Transform ID         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                      Transform Attributes                     ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Last Substruc is 0 on the last transform of a proposal and 3 on the
// others. ID is one of proposal.EncrID, PRFID, IntegID, DHGroup or ESNNo
// and ESNYes, by Type.
type Transform struct {
	Type       TransformType
	ID         uint16
	Attributes []Attribute
}

// Attribute is a transform attribute (RFC 7296 §3.3.5):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|A|       Attribute Type        |    AF=0  Attribute Length     |
//	|F|                             |    AF=1  Attribute Value      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                   AF=0  Attribute Value                       |
//	|                   AF=1  Not Transmitted                       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// TV (AF=1) attributes carry Value; TLV (AF=0) ones carry Data. Key
// Length (14) must be TV.
type Attribute struct {
	Type  AttributeType // 15 bits
	TV    bool
	Value uint16
	Data  []byte
}

// KeyLengthAttribute is the Key Length attribute for a key of bits bits.
func KeyLengthAttribute(bits uint16) Attribute {
	return Attribute{Type: AttributeKeyLength, TV: true, Value: bits}
}

// KeyLength returns the Key Length attribute's value in bits.
func (t *Transform) KeyLength() (bits int, ok bool) {
	for _, a := range t.Attributes {
		if a.Type == AttributeKeyLength && a.TV {
			return int(a.Value), true
		}
	}
	return 0, false
}

// String is the transform as Libreswan logs it, for example
// ENCR=AES_GCM_16_256 or KE=DH19.
func (t *Transform) String() string {
	var id string
	switch t.Type {
	case TransformENCR:
		id = proposal.EncrID(t.ID).String()
		if bits, ok := t.KeyLength(); ok {
			id += "_" + strconv.Itoa(bits)
		}
	case TransformPRF:
		id = proposal.PRFID(t.ID).String()
	case TransformINTEG:
		id = proposal.IntegID(t.ID).String()
	case TransformKE:
		id = proposal.DHGroup(t.ID).String()
	case TransformESN:
		switch t.ID {
		case ESNNo:
			id = "NO"
		case ESNYes:
			id = "YES"
		default:
			id = strconv.Itoa(int(t.ID))
		}
	default:
		if t.Type >= TransformADDKE1 && t.Type <= TransformADDKE7 {
			id = proposal.DHGroup(t.ID).String()
		} else {
			id = strconv.Itoa(int(t.ID))
		}
	}
	return t.Type.String() + "=" + id
}

// String is the proposal as Libreswan logs it:
// "1:IKE:ENCR=AES_GCM_16_256;PRF=HMAC_SHA2_256;KE=DH19".
func (p *Proposal) String() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(int(p.Number)))
	b.WriteString(":")
	b.WriteString(p.Protocol.String())
	if len(p.SPI) > 0 {
		fmt.Fprintf(&b, ":SPI=%x", p.SPI)
	}
	for i := range p.Transforms {
		if i == 0 {
			b.WriteByte(':')
		} else {
			b.WriteByte(';')
		}
		b.WriteString(p.Transforms[i].String())
	}
	return b.String()
}

func (*SA) Type() PayloadType           { return PayloadSA }
func (*SA) abbrev(response bool) string { return "SA" }

func (p *SA) appendBody(b []byte) ([]byte, error) {
	if len(p.Proposals) == 0 {
		return b, fmt.Errorf("SA without proposals")
	}
	if len(p.Proposals) > MaxProposals {
		return b, fmt.Errorf("SA with %d proposals, at most %d", len(p.Proposals), MaxProposals)
	}
	for i := range p.Proposals {
		pr := &p.Proposals[i]
		if !pr.Protocol.spiSizeOK(len(pr.SPI)) || len(pr.SPI) > 255 {
			return b, fmt.Errorf("proposal %d: %v with a %d-byte SPI", pr.Number, pr.Protocol, len(pr.SPI))
		}
		if len(pr.Transforms) == 0 || len(pr.Transforms) > MaxTransforms {
			return b, fmt.Errorf("proposal %d: %d transforms", pr.Number, len(pr.Transforms))
		}
		start := len(b)
		last := uint8(2)
		if i == len(p.Proposals)-1 {
			last = 0
		}
		b = append(b, last, 0, 0, 0, pr.Number, uint8(pr.Protocol), uint8(len(pr.SPI)), uint8(len(pr.Transforms)))
		b = append(b, pr.SPI...)
		for j := range pr.Transforms {
			tr := &pr.Transforms[j]
			tstart := len(b)
			last := uint8(3)
			if j == len(pr.Transforms)-1 {
				last = 0
			}
			b = append(b, last, 0, 0, 0, uint8(tr.Type), 0)
			b = binary.BigEndian.AppendUint16(b, tr.ID)
			for _, a := range tr.Attributes {
				if a.Type > 0x7fff {
					return b, fmt.Errorf("attribute type %d", a.Type)
				}
				if a.TV {
					b = binary.BigEndian.AppendUint16(b, 0x8000|uint16(a.Type))
					b = binary.BigEndian.AppendUint16(b, a.Value)
					continue
				}
				if a.Type == AttributeKeyLength || len(a.Data) > 0xffff {
					return b, fmt.Errorf("TLV attribute %v of %d bytes", a.Type, len(a.Data))
				}
				b = binary.BigEndian.AppendUint16(b, uint16(a.Type))
				b = binary.BigEndian.AppendUint16(b, uint16(len(a.Data)))
				b = append(b, a.Data...)
			}
			if n := len(b) - tstart; n > 0xffff {
				return b, fmt.Errorf("transform of %d bytes", n)
			} else {
				binary.BigEndian.PutUint16(b[tstart+2:], uint16(n))
			}
		}
		if n := len(b) - start; n > 0xffff {
			return b, fmt.Errorf("proposal of %d bytes", n)
		} else {
			binary.BigEndian.PutUint16(b[start+2:], uint16(n))
		}
	}
	return b, nil
}

// decodeBody walks the proposals twice: once to check every length and
// count the transforms and attributes, then to fill one backing array of
// each, so that an SA payload costs three allocations whatever its size.
func (p *SA) decodeBody(body []byte) *Error {
	var nt, na int
	if err := walkSA(body, nil, &nt, &na); err != nil {
		return err
	}
	a := &saArena{}
	a.props = make([]Proposal, 0, countProposals(body))
	a.trans = make([]Transform, 0, nt)
	if na > 0 {
		a.attrs = make([]Attribute, 0, na)
	}
	walkSA(body, a, &nt, &na)
	p.Proposals = a.props
	return nil
}

type saArena struct {
	props []Proposal
	trans []Transform
	attrs []Attribute
}

func countProposals(b []byte) int {
	n := 0
	for off := 0; off+4 <= len(b); n++ {
		off += int(binary.BigEndian.Uint16(b[off+2:]))
	}
	return n
}

// walkSA checks the SA body and, when a is not nil, fills a. It counts
// the transforms and attributes in *nt and *na.
func walkSA(b []byte, a *saArena, nt, na *int) *Error {
	if len(b) == 0 {
		return syntaxf("SA payload without proposals")
	}
	*nt, *na = 0, 0
	off, count := 0, 0
	var prevNum uint8
	for off < len(b) {
		count++
		if count > MaxProposals {
			return syntaxf("more than %d proposals", MaxProposals)
		}
		if len(b)-off < 8 {
			return syntaxf("proposal %d: %d bytes left, want at least 8", count, len(b)-off)
		}
		last := b[off]
		plen := int(binary.BigEndian.Uint16(b[off+2:]))
		if plen < 8 || plen > len(b)-off {
			return syntaxf("proposal %d: length %d, %d bytes left", count, plen, len(b)-off)
		}
		end := off + plen
		switch {
		case last == 0 && end != len(b):
			return syntaxf("proposal %d: marked last with %d bytes after it", count, len(b)-end)
		case last == 2 && end == len(b):
			return syntaxf("proposal %d: marked more but is the last", count)
		case last != 0 && last != 2:
			return syntaxf("proposal %d: Last Substruc %d", count, last)
		}
		num, proto, spiSize, ntrans := b[off+4], ProtocolID(b[off+5]), int(b[off+6]), int(b[off+7])
		switch {
		case num == 0:
			return syntaxf("proposal %d: number 0", count)
		case count > 1 && num != prevNum && num != prevNum+1:
			return syntaxf("proposal %d: number %d after %d", count, num, prevNum)
		case !proto.spiSizeOK(spiSize):
			return syntaxf("proposal %d: %v with SPI size %d", num, proto, spiSize)
		case 8+spiSize > plen:
			return syntaxf("proposal %d: SPI size %d overruns length %d", num, spiSize, plen)
		case ntrans == 0:
			return syntaxf("proposal %d: no transforms", num)
		}
		prevNum = num
		var pr *Proposal
		if a != nil {
			a.props = append(a.props, Proposal{Number: num, Protocol: proto, SPI: sub(b, off+8, off+8+spiSize)})
			pr = &a.props[len(a.props)-1]
		}
		firstT := *nt
		toff := off + 8 + spiSize
		for i := 0; i < ntrans; i++ {
			if end-toff < 8 {
				return syntaxf("proposal %d: transform %d overruns the proposal", num, i+1)
			}
			tlast := b[toff]
			tlen := int(binary.BigEndian.Uint16(b[toff+2:]))
			if tlen < 8 || tlen > end-toff {
				return syntaxf("proposal %d: transform %d length %d overruns the proposal (%d bytes left)", num, i+1, tlen, end-toff)
			}
			tend := toff + tlen
			switch {
			case i == ntrans-1 && tlast != 0:
				return syntaxf("proposal %d: last transform %d has Last Substruc %d", num, i+1, tlast)
			case i < ntrans-1 && tlast != 3:
				return syntaxf("proposal %d: transform %d has Last Substruc %d, want 3", num, i+1, tlast)
			}
			*nt++
			var tr *Transform
			if a != nil {
				a.trans = append(a.trans, Transform{Type: TransformType(b[toff+4]), ID: binary.BigEndian.Uint16(b[toff+6:])})
				tr = &a.trans[len(a.trans)-1]
			}
			firstA := *na
			keyLen := false
			for aoff := toff + 8; aoff < tend; {
				if tend-aoff < 4 {
					return syntaxf("proposal %d: transform %d: attribute overruns the transform", num, i+1)
				}
				typ := binary.BigEndian.Uint16(b[aoff:])
				val := binary.BigEndian.Uint16(b[aoff+2:])
				at := Attribute{Type: AttributeType(typ & 0x7fff), TV: typ&0x8000 != 0}
				if at.Type == AttributeKeyLength {
					if !at.TV {
						return syntaxf("proposal %d: transform %d: Key Length in TLV form", num, i+1)
					}
					if keyLen {
						return syntaxf("proposal %d: transform %d: two Key Length attributes", num, i+1)
					}
					keyLen = true
				}
				if at.TV {
					at.Value = val
					aoff += 4
				} else {
					if int(val) > tend-aoff-4 {
						return syntaxf("proposal %d: transform %d: attribute %v length %d overruns the transform", num, i+1, at.Type, val)
					}
					at.Data = sub(b, aoff+4, aoff+4+int(val))
					aoff += 4 + int(val)
				}
				*na++
				if a != nil {
					a.attrs = append(a.attrs, at)
				}
			}
			if tr != nil && *na > firstA {
				tr.Attributes = a.attrs[firstA:*na:*na]
			}
			toff = tend
		}
		if toff != end {
			return syntaxf("proposal %d: %d bytes after its %d transforms", num, end-toff, ntrans)
		}
		if pr != nil {
			pr.Transforms = a.trans[firstT:*nt:*nt]
		}
		off = end
	}
	return nil
}
