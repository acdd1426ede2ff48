package message

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"goswan/proposal"
)

// Payload is one IKEv2 payload: *SA, *KE, *Identification, *Cert,
// *CertReq, *Auth, *Nonce, *Notify, *Delete, *VendorID, *TrafficSelectors,
// *Encrypted, *EncryptedFragment, *Config, *EAP or *Unknown.
type Payload interface {
	// Type is the payload type that goes in the preceding Next Payload.
	Type() PayloadType
	// appendBody appends the payload's body, without the generic header.
	appendBody(b []byte) ([]byte, error)
	// decodeBody fills the payload from its body.
	decodeBody(body []byte) *Error
	// abbrev is the payload's name in a message summary.
	abbrev(response bool) string
}

// sub returns b[i:j] with its capacity clipped, or nil when empty, so that
// decoded byte fields compare equal to hand-built ones and an append to
// one cannot write into its neighbour.
func sub(b []byte, i, j int) []byte {
	if i == j {
		return nil
	}
	return b[i:j:j]
}

// KE is the Key Exchange payload (RFC 7296 §3.4):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   Diffie-Hellman Group Num    |           RESERVED            |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                       Key Exchange Data                       ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// For a group whose public value size proposal.DHGroup.PublicKeySize
// knows, the data must be exactly that long.
type KE struct {
	Group proposal.DHGroup
	Data  []byte
}

func (*KE) Type() PayloadType           { return PayloadKE }
func (*KE) abbrev(response bool) string { return "KE" }

func (p *KE) checkLen(n int) *Error {
	if want := p.Group.PublicKeySize(); want != 0 && n != want {
		return syntaxf("KE data is %d bytes, group %v needs %d", n, p.Group, want)
	}
	return nil
}

func (p *KE) appendBody(b []byte) ([]byte, error) {
	if err := p.checkLen(len(p.Data)); err != nil {
		return b, err
	}
	b = binary.BigEndian.AppendUint16(b, uint16(p.Group))
	b = append(b, 0, 0)
	return append(b, p.Data...), nil
}

func (p *KE) decodeBody(body []byte) *Error {
	if len(body) < 4 {
		return syntaxf("KE body is %d bytes, want at least 4", len(body))
	}
	p.Group = proposal.DHGroup(binary.BigEndian.Uint16(body))
	p.Data = sub(body, 4, len(body))
	return p.checkLen(len(p.Data))
}

// Identification is the IDi or IDr payload (RFC 7296 §3.5):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   ID Type     |                 RESERVED                      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                   Identification Data                         ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The reserved octets are part of the AUTH computation (RFC 7296 §2.15:
// RestOfInitIDPayload), so they are kept.
type Identification struct {
	Responder bool // IDr rather than IDi
	IDType    IDType
	Reserved  [3]byte
	Data      []byte
}

func (p *Identification) Type() PayloadType {
	if p.Responder {
		return PayloadIDr
	}
	return PayloadIDi
}

func (p *Identification) abbrev(bool) string { return p.Type().String() }

func (p *Identification) check() *Error {
	switch p.IDType {
	case IDIPv4Addr:
		if len(p.Data) != 4 {
			return syntaxf("ID_IPV4_ADDR is %d bytes, want 4", len(p.Data))
		}
	case IDIPv6Addr:
		if len(p.Data) != 16 {
			return syntaxf("ID_IPV6_ADDR is %d bytes, want 16", len(p.Data))
		}
	}
	return nil
}

func (p *Identification) appendBody(b []byte) ([]byte, error) {
	if err := p.check(); err != nil {
		return b, err
	}
	b = append(b, uint8(p.IDType), p.Reserved[0], p.Reserved[1], p.Reserved[2])
	return append(b, p.Data...), nil
}

func (p *Identification) decodeBody(body []byte) *Error {
	if len(body) < 4 {
		return syntaxf("ID body is %d bytes, want at least 4", len(body))
	}
	p.IDType = IDType(body[0])
	copy(p.Reserved[:], body[1:4])
	p.Data = sub(body, 4, len(body))
	return p.check()
}

// Addr returns the address of an ID_IPV4_ADDR or ID_IPV6_ADDR.
func (p *Identification) Addr() (netip.Addr, bool) {
	switch p.IDType {
	case IDIPv4Addr, IDIPv6Addr:
		return netip.AddrFromSlice(p.Data)
	}
	return netip.Addr{}, false
}

// Cert is the Certificate payload (RFC 7296 §3.6): an encoding octet and
// the certificate data.
type Cert struct {
	Encoding CertEncoding
	Data     []byte
}

func (*Cert) Type() PayloadType           { return PayloadCERT }
func (*Cert) abbrev(response bool) string { return "CERT" }

func (p *Cert) appendBody(b []byte) ([]byte, error) {
	return append(append(b, uint8(p.Encoding)), p.Data...), nil
}

func (p *Cert) decodeBody(body []byte) *Error {
	if len(body) < 1 {
		return syntaxf("CERT body is empty")
	}
	p.Encoding = CertEncoding(body[0])
	p.Data = sub(body, 1, len(body))
	return nil
}

// CertReq is the Certificate Request payload (RFC 7296 §3.7): an encoding
// octet and the certification authority data (for X.509, concatenated
// SHA-1 hashes of the CAs' public keys).
type CertReq struct {
	Encoding CertEncoding
	Data     []byte
}

func (*CertReq) Type() PayloadType           { return PayloadCERTREQ }
func (*CertReq) abbrev(response bool) string { return "CERTREQ" }

func (p *CertReq) appendBody(b []byte) ([]byte, error) {
	return append(append(b, uint8(p.Encoding)), p.Data...), nil
}

func (p *CertReq) decodeBody(body []byte) *Error {
	if len(body) < 1 {
		return syntaxf("CERTREQ body is empty")
	}
	p.Encoding = CertEncoding(body[0])
	p.Data = sub(body, 1, len(body))
	return nil
}

// Auth is the Authentication payload (RFC 7296 §3.8):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Auth Method   |                RESERVED                       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                      Authentication Data                      ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type Auth struct {
	Method AuthMethod
	Data   []byte
}

func (*Auth) Type() PayloadType           { return PayloadAUTH }
func (*Auth) abbrev(response bool) string { return "AUTH" }

func (p *Auth) appendBody(b []byte) ([]byte, error) {
	return append(append(b, uint8(p.Method), 0, 0, 0), p.Data...), nil
}

func (p *Auth) decodeBody(body []byte) *Error {
	if len(body) < 4 {
		return syntaxf("AUTH body is %d bytes, want at least 4", len(body))
	}
	p.Method = AuthMethod(body[0])
	p.Data = sub(body, 4, len(body))
	return nil
}

// Nonce sizes allowed by RFC 7296 §3.9.
const (
	MinNonceLen = 16
	MaxNonceLen = 256
)

// Nonce is the Nonce payload (RFC 7296 §3.9): 16 to 256 bytes of data.
type Nonce struct {
	Data []byte
}

func (*Nonce) Type() PayloadType { return PayloadNonce }

func (*Nonce) abbrev(response bool) string {
	if response {
		return "Nr"
	}
	return "Ni"
}

func checkNonce(n int) *Error {
	if n < MinNonceLen || n > MaxNonceLen {
		return syntaxf("nonce is %d bytes, want %d..%d", n, MinNonceLen, MaxNonceLen)
	}
	return nil
}

func (p *Nonce) appendBody(b []byte) ([]byte, error) {
	if err := checkNonce(len(p.Data)); err != nil {
		return b, err
	}
	return append(b, p.Data...), nil
}

func (p *Nonce) decodeBody(body []byte) *Error {
	p.Data = sub(body, 0, len(body))
	return checkNonce(len(body))
}

// Notify is the Notify payload (RFC 7296 §3.10):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Protocol ID  |   SPI Size    |      Notify Message Type      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                Security Parameter Index (SPI)                 ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~                       Notification Data                       ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type Notify struct {
	Protocol   ProtocolID
	SPI        []byte
	NotifyType NotifyType
	Data       []byte
}

func (*Notify) Type() PayloadType { return PayloadNotify }

func (p *Notify) abbrev(bool) string { return "N(" + p.NotifyType.String() + ")" }

func (p *Notify) appendBody(b []byte) ([]byte, error) {
	if len(p.SPI) > 255 {
		return b, fmt.Errorf("notify %v: SPI of %d bytes", p.NotifyType, len(p.SPI))
	}
	b = append(b, uint8(p.Protocol), uint8(len(p.SPI)))
	b = binary.BigEndian.AppendUint16(b, uint16(p.NotifyType))
	b = append(b, p.SPI...)
	return append(b, p.Data...), nil
}

func (p *Notify) decodeBody(body []byte) *Error {
	if len(body) < 4 {
		return syntaxf("Notify body is %d bytes, want at least 4", len(body))
	}
	p.Protocol = ProtocolID(body[0])
	n := int(body[1])
	p.NotifyType = NotifyType(binary.BigEndian.Uint16(body[2:]))
	if 4+n > len(body) {
		return syntaxf("notify %v: SPI size %d overruns the %d-byte payload", p.NotifyType, n, len(body)+4)
	}
	p.SPI = sub(body, 4, 4+n)
	p.Data = sub(body, 4+n, len(body))
	return nil
}

// Delete is the Delete payload (RFC 7296 §3.11):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Protocol ID   |   SPI Size    |          Num of SPIs          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~               Security Parameter Index(es) (SPI)              ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Deleting the IKE SA carries no SPI (size 0, count 0); deleting AH or
// ESP SAs carries their 4-byte inbound SPIs.
type Delete struct {
	Protocol ProtocolID
	SPIs     []uint32
}

func (*Delete) Type() PayloadType           { return PayloadDelete }
func (*Delete) abbrev(response bool) string { return "D" }

func (p *Delete) appendBody(b []byte) ([]byte, error) {
	switch p.Protocol {
	case ProtocolIKE:
		if len(p.SPIs) != 0 {
			return b, fmt.Errorf("delete IKE with %d SPIs", len(p.SPIs))
		}
		return append(b, uint8(ProtocolIKE), 0, 0, 0), nil
	case ProtocolAH, ProtocolESP:
		if len(p.SPIs) > 0xffff {
			return b, fmt.Errorf("delete with %d SPIs", len(p.SPIs))
		}
		b = append(b, uint8(p.Protocol), 4)
		b = binary.BigEndian.AppendUint16(b, uint16(len(p.SPIs)))
		for _, s := range p.SPIs {
			b = binary.BigEndian.AppendUint32(b, s)
		}
		return b, nil
	}
	return b, fmt.Errorf("delete of protocol %v", p.Protocol)
}

func (p *Delete) decodeBody(body []byte) *Error {
	if len(body) < 4 {
		return syntaxf("Delete body is %d bytes, want at least 4", len(body))
	}
	p.Protocol = ProtocolID(body[0])
	size, n := int(body[1]), int(binary.BigEndian.Uint16(body[2:]))
	switch p.Protocol {
	case ProtocolIKE:
		if size != 0 || n != 0 || len(body) != 4 {
			return syntaxf("delete IKE with SPI size %d, %d SPIs, %d bytes", size, n, len(body)-4)
		}
		return nil
	case ProtocolAH, ProtocolESP:
	default:
		return syntaxf("delete of protocol %v", p.Protocol)
	}
	if size != 4 {
		return syntaxf("delete %v with SPI size %d, want 4", p.Protocol, size)
	}
	if len(body)-4 != 4*n {
		return syntaxf("delete %v of %d SPIs in %d bytes", p.Protocol, n, len(body)-4)
	}
	if n > 0 {
		p.SPIs = make([]uint32, n)
		for i := range p.SPIs {
			p.SPIs[i] = binary.BigEndian.Uint32(body[4+4*i:])
		}
	}
	return nil
}

// VendorID is the Vendor ID payload (RFC 7296 §3.12).
type VendorID struct {
	Data []byte
}

func (*VendorID) Type() PayloadType           { return PayloadVendorID }
func (*VendorID) abbrev(response bool) string { return "V" }

func (p *VendorID) appendBody(b []byte) ([]byte, error) { return append(b, p.Data...), nil }

func (p *VendorID) decodeBody(body []byte) *Error {
	p.Data = sub(body, 0, len(body))
	return nil
}

// EAP is the EAP payload (RFC 7296 §3.16), kept raw: the EAP message
// (Code, Identifier, Length, Type, data) is the EAP layer's to parse.
type EAP struct {
	Data []byte
}

func (*EAP) Type() PayloadType           { return PayloadEAP }
func (*EAP) abbrev(response bool) string { return "EAP" }

func (p *EAP) appendBody(b []byte) ([]byte, error) { return append(b, p.Data...), nil }

func (p *EAP) decodeBody(body []byte) *Error {
	p.Data = sub(body, 0, len(body))
	return nil
}

// Encrypted is the Encrypted and Authenticated (SK) payload (RFC 7296
// §3.14). Body is everything after the generic header: IV, ciphertext
// (with padding and Pad Length), ICV. InnerFirst is the type of the first
// payload inside, carried in the SK payload's Next Payload field. The SK
// payload is always the last payload of a message.
type Encrypted struct {
	InnerFirst PayloadType
	Body       []byte
}

func (*Encrypted) Type() PayloadType           { return PayloadSK }
func (*Encrypted) abbrev(response bool) string { return "SK" }

func (p *Encrypted) appendBody(b []byte) ([]byte, error) { return append(b, p.Body...), nil }

func (p *Encrypted) decodeBody(body []byte) *Error {
	p.Body = sub(body, 0, len(body))
	return nil
}

// EncryptedFragment is the Encrypted and Authenticated Fragment (SKF)
// payload (RFC 7383 §2.5):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|        Fragment Number        |        Total Fragments        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	~          Initialization Vector, Encrypted content, ICV        ~
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// InnerFirst is non-zero only in fragment 1. A fragment number of 0, a
// total of 0 or a number above the total is dropped without answer
// (RFC 7383 §2.6).
type EncryptedFragment struct {
	InnerFirst PayloadType
	Number     uint16
	Total      uint16
	Body       []byte
}

func (*EncryptedFragment) Type() PayloadType { return PayloadSKF }

func (p *EncryptedFragment) abbrev(bool) string {
	return fmt.Sprintf("SKF(%d/%d)", p.Number, p.Total)
}

func (p *EncryptedFragment) check() *Error {
	if p.Number == 0 || p.Total == 0 || p.Number > p.Total {
		return dropf("fragment %d of %d", p.Number, p.Total)
	}
	return nil
}

func (p *EncryptedFragment) appendBody(b []byte) ([]byte, error) {
	if err := p.check(); err != nil {
		return b, err
	}
	b = binary.BigEndian.AppendUint16(b, p.Number)
	b = binary.BigEndian.AppendUint16(b, p.Total)
	return append(b, p.Body...), nil
}

func (p *EncryptedFragment) decodeBody(body []byte) *Error {
	if len(body) < 4 {
		return syntaxf("SKF body is %d bytes, want at least 4", len(body))
	}
	p.Number = binary.BigEndian.Uint16(body)
	p.Total = binary.BigEndian.Uint16(body[2:])
	p.Body = sub(body, 4, len(body))
	return p.check()
}

// Unknown is a payload of a type this package does not decode, kept with
// its critical bit. Only non-critical ones are ever decoded: a critical
// unknown payload fails the message with UNSUPPORTED_CRITICAL_PAYLOAD.
type Unknown struct {
	PayloadType PayloadType
	Critical    bool
	Body        []byte
}

func (p *Unknown) Type() PayloadType { return p.PayloadType }

func (p *Unknown) abbrev(bool) string { return p.PayloadType.String() }

func (p *Unknown) appendBody(b []byte) ([]byte, error) { return append(b, p.Body...), nil }

func (p *Unknown) decodeBody(body []byte) *Error {
	p.Body = sub(body, 0, len(body))
	return nil
}
