package message

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Message is an IKEv2 message: the IKE header's fields and the payload
// chain. The header's Next Payload and Length are derived from Payloads
// when encoding. When the message is protected, its last payload is an
// *Encrypted or *EncryptedFragment.
type Message struct {
	SPIi, SPIr   [8]byte
	MinorVersion uint8 // the major version is always 2
	Exchange     ExchangeType
	Flags        Flags
	MessageID    uint32
	Payloads     []Payload
}

// IsResponse reports whether the Response flag is set.
func (m *Message) IsResponse() bool { return m.Flags&FlagResponse != 0 }

// IsInitiator reports whether the Initiator flag is set: the message comes
// from the original initiator of the IKE SA.
func (m *Message) IsInitiator() bool { return m.Flags&FlagInitiator != 0 }

// Encrypted returns the message's SK payload, or nil.
func (m *Message) Encrypted() *Encrypted {
	if n := len(m.Payloads); n > 0 {
		if sk, ok := m.Payloads[n-1].(*Encrypted); ok {
			return sk
		}
	}
	return nil
}

// Fragment returns the message's SKF payload, or nil.
func (m *Message) Fragment() *EncryptedFragment {
	if n := len(m.Payloads); n > 0 {
		if skf, ok := m.Payloads[n-1].(*EncryptedFragment); ok {
			return skf
		}
	}
	return nil
}

// Protected reports whether the message carries an SK or SKF payload. A
// message of an exchange whose ExchangeType.Protected is true but which is
// not itself protected must not be acted on (RFC 7296 §2.21.2, §3.14); the
// caller decides what to log.
func (m *Message) Protected() bool { return m.Encrypted() != nil || m.Fragment() != nil }

// Decode decodes a whole datagram: the IKE header and the payloads up to
// and including SK or SKF, whose bodies are kept raw. The result aliases
// b.
//
// The header checks come first and fail without answer (Error.Notify 0),
// except a major version above 2, which fails with INVALID_MAJOR_VERSION:
// b shorter than the header, a major version below 2, a Length field other
// than len(b).
func Decode(b []byte) (*Message, error) {
	if len(b) < HeaderLen {
		return nil, dropf("datagram of %d bytes is shorter than the IKE header", len(b))
	}
	h := Header(b)
	switch v := h.MajorVersion(); {
	case v > MajorVersion:
		return nil, &Error{Notify: InvalidMajorVersion, Offset: hdrVersion, Reason: fmt.Sprintf("major version %d", v)}
	case v < MajorVersion:
		return nil, &Error{Offset: hdrVersion, Reason: fmt.Sprintf("major version %d", v)}
	}
	if n := h.Length(); n != uint32(len(b)) {
		return nil, &Error{Offset: hdrLength, Reason: fmt.Sprintf("header length %d in a datagram of %d bytes", n, len(b))}
	}
	m := &Message{
		SPIi:         h.SPIi(),
		SPIr:         h.SPIr(),
		MinorVersion: h.MinorVersion(),
		Exchange:     h.ExchangeType(),
		Flags:        h.Flags(),
		MessageID:    h.MessageID(),
	}
	ps, err := decodeChain(h.NextPayload(), b, HeaderLen, true)
	if err != nil {
		return nil, err
	}
	m.Payloads = ps
	return m, nil
}

// DecodePayloads decodes the plaintext of an SK payload (or of reassembled
// SKF fragments): a chain of payloads starting with one of type first,
// which must fill b exactly. SK and SKF cannot nest. The result aliases b.
func DecodePayloads(first PayloadType, b []byte) ([]Payload, error) {
	return decodeChain(first, b, 0, false)
}

// decodeChain decodes the payloads in b[off:]. When outer, the chain may
// end with SK or SKF, whose Next Payload names the inner first payload.
func decodeChain(next PayloadType, b []byte, off int, outer bool) ([]Payload, error) {
	// Count first: the slice takes one allocation, and the count is
	// bounded because each payload takes at least 4 bytes.
	n := 0
	for t, o := next, off; t != NoNextPayload && len(b)-o >= 4; n++ {
		l := int(binary.BigEndian.Uint16(b[o+2:]))
		if l < 4 || (outer && (t == PayloadSK || t == PayloadSKF)) {
			n++
			break
		}
		t, o = PayloadType(b[o]), o+l
	}
	var ps []Payload
	if n > 0 {
		ps = make([]Payload, 0, n)
	}
	for next != NoNextPayload {
		typ := next
		fail := func(e *Error) *Error {
			e.Payload, e.Offset = typ, off
			return e
		}
		if len(b)-off < GenericPayloadHeaderLen {
			return nil, fail(syntaxf("%d bytes left for a payload header", len(b)-off))
		}
		g := GenericPayloadHeader(b[off:])
		plen := int(g.PayloadLength())
		if plen < GenericPayloadHeaderLen || plen > len(b)-off {
			return nil, fail(syntaxf("payload length %d with %d bytes left", plen, len(b)-off))
		}
		body := b[off+GenericPayloadHeaderLen : off+plen]
		next = g.NextPayload()
		p := newPayload(typ)
		if p == nil {
			if g.Critical() {
				e := fail(&Error{Notify: UnsupportedCriticalPayload, Reason: "unsupported critical payload"})
				e.Data = []byte{uint8(typ)}
				return nil, e
			}
			p = &Unknown{PayloadType: typ}
		}
		switch typ {
		case PayloadSK, PayloadSKF:
			if !outer {
				return nil, fail(syntaxf("%v inside an encrypted payload", typ))
			}
			if off+plen != len(b) {
				return nil, fail(syntaxf("%d bytes after the %v payload", len(b)-off-plen, typ))
			}
		}
		if err := p.decodeBody(body); err != nil {
			return nil, fail(err)
		}
		switch q := p.(type) {
		case *Unknown:
			q.Critical = g.Critical()
		case *Encrypted:
			q.InnerFirst = next
			next = NoNextPayload
		case *EncryptedFragment:
			q.InnerFirst = next
			next = NoNextPayload
		}
		ps = append(ps, p)
		off += plen
	}
	if off != len(b) {
		return nil, &Error{Notify: InvalidSyntax, Offset: off, Reason: fmt.Sprintf("%d bytes after the last payload", len(b)-off)}
	}
	return ps, nil
}

// newPayload returns an empty payload of a type this package decodes, or
// nil.
func newPayload(t PayloadType) Payload {
	switch t {
	case PayloadSA:
		return &SA{}
	case PayloadKE:
		return &KE{}
	case PayloadIDi:
		return &Identification{}
	case PayloadIDr:
		return &Identification{Responder: true}
	case PayloadCERT:
		return &Cert{}
	case PayloadCERTREQ:
		return &CertReq{}
	case PayloadAUTH:
		return &Auth{}
	case PayloadNonce:
		return &Nonce{}
	case PayloadNotify:
		return &Notify{}
	case PayloadDelete:
		return &Delete{}
	case PayloadVendorID:
		return &VendorID{}
	case PayloadTSi:
		return &TrafficSelectors{}
	case PayloadTSr:
		return &TrafficSelectors{Responder: true}
	case PayloadSK:
		return &Encrypted{}
	case PayloadCP:
		return &Config{}
	case PayloadEAP:
		return &EAP{}
	case PayloadSKF:
		return &EncryptedFragment{}
	}
	return nil
}

// Encode returns the message on the wire.
func (m *Message) Encode() ([]byte, error) { return m.Append(nil) }

// Append appends the message on the wire to dst.
func (m *Message) Append(dst []byte) ([]byte, error) { return m.appendMessage(dst, -1) }

// AppendAssociatedData appends the message on the wire up to the body of
// its last payload, which must be SK or SKF, with the lengths set for a
// body of bodyLen bytes (IV, ciphertext, ICV). The bytes are the
// associated data of RFC 5282 §5.1 (for SKF, RFC 7383 §2.5: the fragment
// number and total too), and the crypto layer appends the body after them
// to finish the datagram. The Body field of the last payload is ignored.
func (m *Message) AppendAssociatedData(dst []byte, bodyLen int) ([]byte, error) {
	if bodyLen < 0 {
		return dst, errors.New("ikev2 message: negative SK body length")
	}
	if !m.Protected() {
		return dst, errors.New("ikev2 message: no SK or SKF payload to encrypt")
	}
	return m.appendMessage(dst, bodyLen)
}

func (m *Message) appendMessage(dst []byte, skBodyLen int) ([]byte, error) {
	start := len(dst)
	dst = append(dst, make([]byte, HeaderLen)...)
	first, b, err := appendChain(dst, m.Payloads, true, skBodyLen)
	if err != nil {
		return dst[:start], err
	}
	total := len(b) - start
	if skBodyLen >= 0 {
		total += skBodyLen
	}
	if uint64(total) > 0xffffffff {
		return dst[:start], fmt.Errorf("ikev2 message of %d bytes", total)
	}
	h := Header(b[start:])
	h.SetSPIi(m.SPIi)
	h.SetSPIr(m.SPIr)
	h.SetNextPayload(first)
	h.SetVersion(MajorVersion, m.MinorVersion)
	h.SetExchangeType(m.Exchange)
	h.SetFlags(m.Flags)
	h.SetMessageID(m.MessageID)
	h.SetLength(uint32(total))
	return b, nil
}

// EncodePayloads encodes an inner chain, the plaintext that goes into an
// SK payload: first is the type for the SK payload's Next Payload field.
func EncodePayloads(ps []Payload) (first PayloadType, body []byte, err error) {
	return AppendPayloads(nil, ps)
}

// AppendPayloads is EncodePayloads appending to dst.
func AppendPayloads(dst []byte, ps []Payload) (first PayloadType, body []byte, err error) {
	return appendChain(dst, ps, false, -1)
}

// appendChain appends the payloads with their generic headers. When outer,
// the last payload may be SK or SKF; when skBodyLen >= 0 that payload's
// body is left out and its length computed for a body of that size.
func appendChain(b []byte, ps []Payload, outer bool, skBodyLen int) (PayloadType, []byte, error) {
	for i, p := range ps {
		if p == nil {
			return 0, b, fmt.Errorf("ikev2 message: payload %d is nil", i+1)
		}
		var next PayloadType
		if i+1 < len(ps) {
			next = ps[i+1].Type()
		}
		critical := false
		encrypted := false
		switch q := p.(type) {
		case *Encrypted:
			next, encrypted = q.InnerFirst, true
		case *EncryptedFragment:
			next, encrypted = q.InnerFirst, true
		case *Unknown:
			critical = q.Critical
			if newPayload(q.PayloadType) != nil || q.PayloadType == NoNextPayload {
				return 0, b, fmt.Errorf("ikev2 message: payload %d: unknown payload of known type %v", i+1, q.PayloadType)
			}
		}
		if encrypted && (!outer || i != len(ps)-1) {
			return 0, b, fmt.Errorf("ikev2 message: %v must be the last outer payload", p.Type())
		}
		start := len(b)
		b = append(b, 0, 0, 0, 0)
		var err error
		extra := 0
		if encrypted && skBodyLen >= 0 {
			extra = skBodyLen
			if f, ok := p.(*EncryptedFragment); ok {
				if err := f.check(); err != nil {
					return 0, b[:start], err
				}
				b = binary.BigEndian.AppendUint16(b, f.Number)
				b = binary.BigEndian.AppendUint16(b, f.Total)
			}
		} else {
			b, err = p.appendBody(b)
		}
		if err != nil {
			return 0, b[:start], fmt.Errorf("ikev2 message: %v payload: %w", p.Type(), err)
		}
		n := len(b) - start + extra
		if n > 0xffff {
			return 0, b[:start], fmt.Errorf("ikev2 message: %v payload of %d bytes", p.Type(), n)
		}
		GenericPayloadHeader(b[start:]).Encode(next, critical, uint16(n))
	}
	var first PayloadType
	if len(ps) > 0 {
		first = ps[0].Type()
	}
	return first, b, nil
}

// String summarises the message as Libreswan logs it:
// "IKE_SA_INIT request #0: SA KE Ni N(NAT_DETECTION_SOURCE_IP)".
func (m *Message) String() string {
	var b strings.Builder
	b.WriteString(m.Exchange.String())
	if m.IsResponse() {
		b.WriteString(" response #")
	} else {
		b.WriteString(" request #")
	}
	b.WriteString(strconv.FormatUint(uint64(m.MessageID), 10))
	b.WriteString(":")
	if len(m.Payloads) > 0 {
		b.WriteByte(' ')
		b.WriteString(FormatPayloads(m.Payloads, m.IsResponse()))
	}
	return b.String()
}

// FormatPayloads names the payloads of a chain, separated by spaces; for
// the inner chain of SK, pass the message's IsResponse so that the nonce
// reads Ni or Nr.
func FormatPayloads(ps []Payload, response bool) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(' ')
		}
		if p == nil {
			b.WriteString("<nil>")
			continue
		}
		b.WriteString(p.abbrev(response))
	}
	return b.String()
}
