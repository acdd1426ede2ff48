package message

import (
	"encoding/binary"
	"fmt"
)

// Config is the Configuration payload (RFC 7296 §3.15):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   CFG Type    |                    RESERVED                   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                   Configuration Attributes                    ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type Config struct {
	CFGType    CFGType
	Attributes []ConfigAttribute
}

// ConfigAttribute is a configuration attribute (RFC 7296 §3.15.1):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|R|         Attribute Type      |            Length             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                             Value                             ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// A request asks for an attribute with an empty value; the R bit is
// ignored on receive and sent as zero.
type ConfigAttribute struct {
	Type  ConfigAttributeType
	Value []byte
}

func (*Config) Type() PayloadType           { return PayloadCP }
func (*Config) abbrev(response bool) string { return "CP" }

func (p *Config) appendBody(b []byte) ([]byte, error) {
	b = append(b, uint8(p.CFGType), 0, 0, 0)
	for _, a := range p.Attributes {
		if a.Type > 0x7fff || len(a.Value) > 0xffff {
			return b, fmt.Errorf("configuration attribute %v of %d bytes", a.Type, len(a.Value))
		}
		b = binary.BigEndian.AppendUint16(b, uint16(a.Type))
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.Value)))
		b = append(b, a.Value...)
	}
	return b, nil
}

func (p *Config) decodeBody(body []byte) *Error {
	if len(body) < 4 {
		return syntaxf("CP body is %d bytes, want at least 4", len(body))
	}
	p.CFGType = CFGType(body[0])
	// Count first so the attributes take one allocation.
	n := 0
	for off := 4; off < len(body); n++ {
		if len(body)-off < 4 {
			return syntaxf("configuration attribute %d truncated", n+1)
		}
		l := int(binary.BigEndian.Uint16(body[off+2:]))
		if l > len(body)-off-4 {
			return syntaxf("configuration attribute %v length %d overruns the payload",
				ConfigAttributeType(binary.BigEndian.Uint16(body[off:])&0x7fff), l)
		}
		off += 4 + l
	}
	if n == 0 {
		return nil
	}
	p.Attributes = make([]ConfigAttribute, 0, n)
	for off := 4; off < len(body); {
		l := int(binary.BigEndian.Uint16(body[off+2:]))
		p.Attributes = append(p.Attributes, ConfigAttribute{
			Type:  ConfigAttributeType(binary.BigEndian.Uint16(body[off:]) & 0x7fff),
			Value: sub(body, off+4, off+4+l),
		})
		off += 4 + l
	}
	return nil
}
