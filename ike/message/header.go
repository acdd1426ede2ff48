package message

import "encoding/binary"

// HeaderLen is the size of the IKE header.
const HeaderLen = 28

// Header is the IKE header (RFC 7296 §3.1):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                       IKE SA Initiator's SPI                  |
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                       IKE SA Responder's SPI                  |
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                          Message ID                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                            Length                             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The accessors need len(h) >= HeaderLen; IsValid says whether it is.
type Header []byte

const (
	hdrSPIi      = 0
	hdrSPIr      = 8
	hdrNext      = 16
	hdrVersion   = 17
	hdrExchange  = 18
	hdrFlags     = 19
	hdrMessageID = 20
	hdrLength    = 24
)

// MajorVersion is the IKE major version this package speaks.
const MajorVersion = 2

// IsValid reports whether h is long enough to hold an IKE header. It does
// not look at the version or the length: Decode does.
func (h Header) IsValid() bool { return len(h) >= HeaderLen }

// SPIi is the IKE SA initiator's SPI.
func (h Header) SPIi() (s [8]byte) { copy(s[:], h[hdrSPIi:]); return }

// SPIr is the IKE SA responder's SPI (zero in an IKE_SA_INIT request).
func (h Header) SPIr() (s [8]byte) { copy(s[:], h[hdrSPIr:]); return }

// NextPayload is the type of the first payload.
func (h Header) NextPayload() PayloadType { return PayloadType(h[hdrNext]) }

// MajorVersion is the high nibble of the version octet.
func (h Header) MajorVersion() uint8 { return h[hdrVersion] >> 4 }

// MinorVersion is the low nibble of the version octet.
func (h Header) MinorVersion() uint8 { return h[hdrVersion] & 0x0f }

// ExchangeType is the exchange the message belongs to.
func (h Header) ExchangeType() ExchangeType { return ExchangeType(h[hdrExchange]) }

// Flags is the flags octet, reserved bits included.
func (h Header) Flags() Flags { return Flags(h[hdrFlags]) }

// MessageID is the Message ID.
func (h Header) MessageID() uint32 { return binary.BigEndian.Uint32(h[hdrMessageID:]) }

// Length is the length of the whole message, header included.
func (h Header) Length() uint32 { return binary.BigEndian.Uint32(h[hdrLength:]) }

// SetSPIi sets the initiator's SPI.
func (h Header) SetSPIi(s [8]byte) { copy(h[hdrSPIi:], s[:]) }

// SetSPIr sets the responder's SPI.
func (h Header) SetSPIr(s [8]byte) { copy(h[hdrSPIr:], s[:]) }

// SetNextPayload sets the type of the first payload.
func (h Header) SetNextPayload(t PayloadType) { h[hdrNext] = uint8(t) }

// SetVersion sets the version octet.
func (h Header) SetVersion(major, minor uint8) { h[hdrVersion] = major<<4 | minor&0x0f }

// SetExchangeType sets the exchange type.
func (h Header) SetExchangeType(t ExchangeType) { h[hdrExchange] = uint8(t) }

// SetFlags sets the flags octet.
func (h Header) SetFlags(f Flags) { h[hdrFlags] = uint8(f) }

// SetMessageID sets the Message ID.
func (h Header) SetMessageID(id uint32) { binary.BigEndian.PutUint32(h[hdrMessageID:], id) }

// SetLength sets the message length.
func (h Header) SetLength(n uint32) { binary.BigEndian.PutUint32(h[hdrLength:], n) }

// Flags are the IKE header flags (RFC 7296 §3.1).
type Flags uint8

// The IKE header flags; the other bits are reserved and ignored on receive.
const (
	FlagInitiator Flags = 0x08 // sent by the original initiator of the IKE SA
	FlagVersion   Flags = 0x10 // sender could speak a higher major version
	FlagResponse  Flags = 0x20 // the message is a response
)

func (f Flags) String() string {
	s := ""
	add := func(n string) {
		if s != "" {
			s += "+"
		}
		s += n
	}
	if f&FlagInitiator != 0 {
		add("I")
	}
	if f&FlagVersion != 0 {
		add("V")
	}
	if f&FlagResponse != 0 {
		add("R")
	}
	if r := f &^ (FlagInitiator | FlagVersion | FlagResponse); r != 0 {
		add("0x" + hex8(uint8(r)))
	}
	if s == "" {
		return "none"
	}
	return s
}

func hex8(v uint8) string {
	const d = "0123456789abcdef"
	return string([]byte{d[v>>4], d[v&15]})
}

// GenericPayloadHeader is the header every payload starts with (RFC 7296
// §3.2):
//
//	                     1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| Next Payload  |C|  RESERVED   |         Payload Length        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The accessors need len(g) >= GenericPayloadHeaderLen.
type GenericPayloadHeader []byte

// GenericPayloadHeaderLen is the size of the generic payload header.
const GenericPayloadHeaderLen = 4

// IsValid reports whether g holds a header whose length is at least the
// header itself and fits in g.
func (g GenericPayloadHeader) IsValid() bool {
	if len(g) < GenericPayloadHeaderLen {
		return false
	}
	n := int(g.PayloadLength())
	return n >= GenericPayloadHeaderLen && n <= len(g)
}

// NextPayload is the type of the payload that follows.
func (g GenericPayloadHeader) NextPayload() PayloadType { return PayloadType(g[0]) }

// Critical is the critical bit; the seven reserved bits are ignored.
func (g GenericPayloadHeader) Critical() bool { return g[1]&0x80 != 0 }

// PayloadLength is the length of the payload, header included.
func (g GenericPayloadHeader) PayloadLength() uint16 { return binary.BigEndian.Uint16(g[2:]) }

// Encode writes the header.
func (g GenericPayloadHeader) Encode(next PayloadType, critical bool, length uint16) {
	g[0] = uint8(next)
	g[1] = 0
	if critical {
		g[1] = 0x80
	}
	binary.BigEndian.PutUint16(g[2:], length)
}
