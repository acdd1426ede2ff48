package message

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"

	"goswan/proposal"
)

func unhex(s string) []byte {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if j := strings.IndexByte(l, '#'); j >= 0 {
			lines[i] = l[:j]
		}
	}
	s = strings.Map(func(r rune) rune {
		if strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return r
		}
		return -1
	}, strings.Join(lines, ""))
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// capturedSAInit is an IKE_SA_INIT request captured from a strongSwan
// initiator, published as test data of github.com/msgboxio/ike
// (protocol/protocol_test.go, "sa_init"). It proposes IKE
// CAMELLIA_CBC_256/HMAC_SHA2_256/MODP2048 with an 8-byte SPI and an ESP
// proposal, and carries KE (MODP2048) and a 32-byte nonce.
const capturedSAInit = `
92 8f 3f 58 1f 05 a5 63  00 00 00 00 00 00 00 00
21 20 22 08 00 00 00 00  00 00 01 a8 22 00 00 60
02 00 00 34 01 01 08 04  92 8f 3f 58 1f 05 a5 63
03 00 00 0c 01 00 00 17  80 0e 01 00 03 00 00 08
02 00 00 05 03 00 00 08  03 00 00 0c 00 00 00 08
04 00 00 0e 00 00 00 28  02 03 04 03 13 5a a9 69
03 00 00 0c 01 00 00 17  80 0e 01 00 03 00 00 08
05 00 00 01 00 00 00 08  03 00 00 0c 28 00 01 08
00 0e 00 00 ed cf 56 38  1a 58 71 62 48 fc b5 89
0d f2 08 19 91 af f3 16  39 1c 2f 16 80 ef 88 49
21 76 38 40 98 4d 44 73  71 ed 59 05 35 44 90 a0
2f ef f0 5a 0e 99 c9 e6  f0 06 d4 c2 e3 03 ab 62
01 7f 5b 34 94 ca 7d 30  7e 41 9a b2 96 21 e1 68
e3 da f1 66 4e 88 13 14  8f b0 9e a3 88 d7 7d 92
28 11 8e 47 67 d4 e5 f4  80 ce 22 ae 1f 70 c3 b0
eb 59 e5 c7 26 0d f9 69  81 96 e9 81 17 7a a2 55
2b a6 40 f0 cd 12 34 16  7b 9a ac 3d ca b2 07 39
cf cc 95 17 28 6b 79 5d  6b d5 03 36 50 a6 15 18
81 ae 8c d8 8d ec 42 5d  40 e2 96 0d d9 fe c0 3c
ef 8b 2e 3f 41 50 66 ad  00 bf df 6c 22 e4 1c b6
ad 2e 4f c7 7d 89 10 8d  b4 25 23 6e a9 b7 d7 d8
40 9a 53 04 31 33 c1 87  25 5c c0 fb 40 86 10 a9
f2 c2 98 98 2b fd 26 87  4c 57 b5 1f 38 dc 7f fc
6b f8 a4 cb 91 33 45 aa  aa a8 33 ff b9 33 51 aa
b6 7a f6 83 00 00 00 24  63 a0 2b 62 47 56 80 de
1c 50 af 97 a8 2a 7a bd  8d 46 4d 95 11 f8 7a c8
6a 3e 1e 42 17 40 5a fa
`

// capturedAuth is the IKE_AUTH request of the same capture ("auth_psk"):
// an SK payload whose inner chain starts with IDi.
const capturedAuth = `
92 8f 3f 58 1f 05 a5 63  00 00 00 00 00 00 00 00
2e 20 23 08 00 00 00 01  00 00 00 e0 23 00 00 c4
fc bb 4a 7a 26 d6 a6 6d  41 d3 72 ec d4 cf ae f3
c2 45 44 34 a1 d9 67 04  2f 87 ce f5 0e a8 b8 16
d4 55 a5 5a 7a 63 44 85  46 62 f6 3e 51 4b 06 73
c8 a4 af f7 06 d3 2a 11  11 7f 08 20 50 c8 ca ed
cc 31 b4 da d6 96 66 f4  53 55 45 17 32 d7 11 3a
6c d1 9a f9 2e f9 0f dc  44 c8 4e c7 c1 68 4f 1d
03 a2 ef 97 66 8b 80 73  3f a9 78 31 96 92 e7 26
cf 72 57 fc 6c bf d6 9a  c9 f8 41 14 2d 05 11 1b
b5 84 e6 5f 08 25 82 37  59 10 ca 0b c2 59 8a 65
8c 9e 47 4a 9f 25 f0 ae  e9 18 41 0b 6e ad d0 4f
c3 5f a1 23 9f 85 45 6a  ba 42 47 1e 37 d0 22 05
e2 51 6a e1 95 b6 72 60  a0 a3 41 27 ed 3c 59 d6
`

func TestCapturedSAInit(t *testing.T) {
	b := unhex(capturedSAInit)
	if len(b) != 424 {
		t.Fatalf("capture is %d bytes", len(b))
	}
	h := Header(b)
	if !h.IsValid() || h.NextPayload() != PayloadSA || h.MajorVersion() != 2 || h.MinorVersion() != 0 ||
		h.ExchangeType() != IKE_SA_INIT || h.Flags() != FlagInitiator || h.MessageID() != 0 || h.Length() != 424 {
		t.Fatalf("header accessors: next %v ver %d.%d %v %v id %d len %d", h.NextPayload(),
			h.MajorVersion(), h.MinorVersion(), h.ExchangeType(), h.Flags(), h.MessageID(), h.Length())
	}
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	spi := [8]byte{0x92, 0x8f, 0x3f, 0x58, 0x1f, 0x05, 0xa5, 0x63}
	want := &Message{
		SPIi: spi, Exchange: IKE_SA_INIT, Flags: FlagInitiator,
		Payloads: []Payload{
			&SA{Proposals: []Proposal{
				{Number: 1, Protocol: ProtocolIKE, SPI: spi[:], Transforms: []Transform{
					{Type: TransformENCR, ID: 23, Attributes: []Attribute{KeyLengthAttribute(256)}},
					{Type: TransformPRF, ID: uint16(proposal.PRFHMACSHA2256)},
					{Type: TransformINTEG, ID: uint16(proposal.IntegHMACSHA2256128)},
					{Type: TransformKE, ID: uint16(proposal.DHMODP2048)},
				}},
				{Number: 2, Protocol: ProtocolESP, SPI: []byte{0x13, 0x5a, 0xa9, 0x69}, Transforms: []Transform{
					{Type: TransformENCR, ID: 23, Attributes: []Attribute{KeyLengthAttribute(256)}},
					{Type: TransformESN, ID: ESNYes},
					{Type: TransformINTEG, ID: uint16(proposal.IntegHMACSHA2256128)},
				}},
			}},
			// The KE data starts at 28 (header) + 96 (SA) + 8 (KE headers).
			&KE{Group: proposal.DHMODP2048, Data: b[132:388]},
			// The nonce: after the 264-byte KE payload and its own header.
			&Nonce{Data: b[392:424]},
		},
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("decoded\n%#v\nwant\n%#v", m, want)
	}
	if m.Payloads[1].(*KE).Data[0] != 0xed || m.Payloads[2].(*Nonce).Data[0] != 0x63 {
		t.Fatal("KE or nonce at the wrong offset")
	}
	if got, w := m.String(), "IKE_SA_INIT request #0: SA KE Ni"; got != w {
		t.Errorf("String() = %q, want %q", got, w)
	}
	if got, w := m.Payloads[0].(*SA).Proposals[0].String(),
		"1:IKE:SPI=928f3f581f05a563:ENCR=ENCR_23_256;PRF=HMAC_SHA2_256;INTEG=HMAC_SHA2_256_128;KE=MODP2048"; got != w {
		t.Errorf("proposal String() = %q, want %q", got, w)
	}
	enc, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, b) {
		t.Fatalf("re-encoded differs:\n%x\n%x", enc, b)
	}
}

func TestCapturedAuth(t *testing.T) {
	b := unhex(capturedAuth)
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.Exchange != IKE_AUTH || m.MessageID != 1 || !m.IsInitiator() || m.IsResponse() || !m.Protected() {
		t.Fatalf("header: %+v", m)
	}
	sk := m.Encrypted()
	if sk == nil || len(m.Payloads) != 1 || sk.InnerFirst != PayloadIDi || len(sk.Body) != 192 || !bytes.Equal(sk.Body, b[32:]) {
		t.Fatalf("SK payload: %+v", m.Payloads)
	}
	// The associated data is everything before the SK body.
	ad := b[:len(b)-len(sk.Body)]
	got, err := m.AppendAssociatedData(nil, len(sk.Body))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, ad) || len(ad) != 32 {
		t.Fatalf("associated data %x, want %x", got, ad)
	}
	enc, err := m.Encode()
	if err != nil || !bytes.Equal(enc, b) {
		t.Fatalf("re-encoded differs (%v)", err)
	}
	if got, w := m.String(), "IKE_AUTH request #1: SK"; got != w {
		t.Errorf("String() = %q, want %q", got, w)
	}
}

func rep(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

// handSAInitResponse is an IKE_SA_INIT response built by hand from the
// field layouts of RFC 7296 §3, with every offset noted.
const handSAInitResponse = `
928f3f581f05a563 0102030405060708  # 0: SPIi, 8: SPIr
21 20 22 20 00000000 00000108      # 16: next SA, v2.0, IKE_SA_INIT, R; 20: msgid 0; 24: length 264
22 00 0028                         # 28: SA, next KE, length 40
  00 00 0024 01 01 00 03           # 32: last proposal, length 36, #1 IKE, no SPI, 3 transforms
    03 00 000c 01 00 0014 800e 0100  # 40: ENCR AES_GCM_16 (20), KEY_LENGTH 256
    03 00 0008 02 00 0005            # 52: PRF HMAC_SHA2_256
    00 00 0008 04 00 0013            # 60: last, KE DH19
28 00 0048 0013 0000               # 68: KE, next Nonce, length 72, group 19; 76: 64 bytes data
`

func handResponse() (*Message, []byte) {
	b := unhex(handSAInitResponse)
	b = append(b, rep(0x11, 64)...)
	b = append(b, unhex("29 00 0024")...) // 140: Nonce, next N, length 36
	b = append(b, rep(0x22, 32)...)
	b = append(b, unhex("29 00 001c 00 00 4004")...) // 176: N(NAT_DETECTION_SOURCE_IP), length 28
	b = append(b, rep(0x33, 20)...)
	b = append(b, unhex("29 00 001c 00 00 4005")...) // 204: N(NAT_DETECTION_DESTINATION_IP)
	b = append(b, rep(0x44, 20)...)
	b = append(b, unhex("29 00 0008 00 00 402e")...)                // 232: N(IKEV2_FRAGMENTATION_SUPPORTED)
	b = append(b, unhex("2b 00 000e 00 00 402f 0002 0003 0004")...) // 240: N(SIGNATURE_HASH_ALGORITHMS), next V
	b = append(b, unhex("00 00 000a")...)                           // 254: V, last, length 10
	b = append(b, "goswan"...)                                      // 258..264
	m := &Message{
		SPIi:     [8]byte{0x92, 0x8f, 0x3f, 0x58, 0x1f, 0x05, 0xa5, 0x63},
		SPIr:     [8]byte{1, 2, 3, 4, 5, 6, 7, 8},
		Exchange: IKE_SA_INIT,
		Flags:    FlagResponse,
		Payloads: []Payload{
			&SA{Proposals: []Proposal{{Number: 1, Protocol: ProtocolIKE, Transforms: []Transform{
				{Type: TransformENCR, ID: uint16(proposal.EncrAESGCM16), Attributes: []Attribute{KeyLengthAttribute(256)}},
				{Type: TransformPRF, ID: uint16(proposal.PRFHMACSHA2256)},
				{Type: TransformKE, ID: uint16(proposal.DHECP256)},
			}}}},
			&KE{Group: proposal.DHECP256, Data: rep(0x11, 64)},
			&Nonce{Data: rep(0x22, 32)},
			&Notify{NotifyType: NATDetectionSourceIP, Data: rep(0x33, 20)},
			&Notify{NotifyType: NATDetectionDestinationIP, Data: rep(0x44, 20)},
			&Notify{NotifyType: IKEv2FragmentationSupported},
			&Notify{NotifyType: SignatureHashAlgorithms, Data: []byte{0, 2, 0, 3, 0, 4}},
			&VendorID{Data: []byte("goswan")},
		},
	}
	return m, b
}

func TestHandBuiltSAInitResponse(t *testing.T) {
	m, b := handResponse()
	if len(b) != 264 {
		t.Fatalf("vector is %d bytes", len(b))
	}
	enc, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, b) {
		for i := range min(len(enc), len(b)) {
			if enc[i] != b[i] {
				t.Fatalf("encoded differs first at offset %d: %#x, want %#x\n%x", i, enc[i], b[i], enc)
			}
		}
		t.Fatalf("encoded %d bytes, want %d", len(enc), len(b))
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("decoded\n%#v\nwant\n%#v", got, m)
	}
	// Spot-check the offsets against the decoded aliases.
	if &got.Payloads[1].(*KE).Data[0] != &b[76] || &got.Payloads[2].(*Nonce).Data[0] != &b[144] ||
		&got.Payloads[3].(*Notify).Data[0] != &b[184] || &got.Payloads[7].(*VendorID).Data[0] != &b[258] {
		t.Error("decoded fields do not alias the documented offsets")
	}
	w := "IKE_SA_INIT response #0: SA KE Nr N(NAT_DETECTION_SOURCE_IP) N(NAT_DETECTION_DESTINATION_IP) N(IKEV2_FRAGMENTATION_SUPPORTED) N(SIGNATURE_HASH_ALGORITHMS) V"
	if s := got.String(); s != w {
		t.Errorf("String() = %q\nwant        %q", s, w)
	}
	if s := got.Payloads[0].(*SA).Proposals[0].String(); s != "1:IKE:ENCR=AES_GCM_16_256;PRF=HMAC_SHA2_256;KE=DH19" {
		t.Errorf("proposal String() = %q", s)
	}
}

// TestIKEAuthChain builds an IKE_AUTH request the way the daemon will:
// the inner chain with EncodePayloads, the associated data with
// AppendAssociatedData, then a stand-in for IV+ciphertext+ICV.
func TestIKEAuthChain(t *testing.T) {
	inner := []Payload{
		&Identification{IDType: IDFQDN, Data: []byte("west.example")},
		&Auth{Method: AuthDigitalSignature, Data: rep(0xaa, 40)},
		&Notify{NotifyType: InitialContact},
		&SA{Proposals: []Proposal{{Number: 1, Protocol: ProtocolESP, SPI: []byte{0xc0, 0, 0, 1}, Transforms: []Transform{
			{Type: TransformENCR, ID: uint16(proposal.EncrAESGCM16), Attributes: []Attribute{KeyLengthAttribute(128)}},
			{Type: TransformESN, ID: ESNNo},
		}}}},
		&TrafficSelectors{Selectors: []TrafficSelector{SelectorFromPrefix(mustPrefix("10.1.0.0/16"), 0, 0, 65535)}},
		&TrafficSelectors{Responder: true, Selectors: []TrafficSelector{SelectorFromPrefix(mustPrefix("10.2.0.0/16"), 0, 0, 65535)}},
	}
	first, plain, err := EncodePayloads(inner)
	if err != nil || first != PayloadIDi {
		t.Fatalf("EncodePayloads: %v %v", first, err)
	}
	// IDi: 4 + 4 + 12 bytes, next AUTH.
	if !bytes.Equal(plain[:8], unhex("27 00 0014 02 000000")) {
		t.Fatalf("IDi header %x", plain[:8])
	}
	m := &Message{SPIi: [8]byte{1}, SPIr: [8]byte{2}, Exchange: IKE_AUTH, Flags: FlagInitiator, MessageID: 1,
		Payloads: []Payload{&Encrypted{InnerFirst: first}}}
	body := append(rep(0x5a, 16), plain...) // "IV" + "ciphertext"
	body = append(body, rep(0xee, 16)...)   // "ICV"
	ad, err := m.AppendAssociatedData(nil, len(body))
	if err != nil {
		t.Fatal(err)
	}
	wantAD := append(unhex("0100000000000000 0200000000000000 2e 20 23 08 00000001"), 0, 0, 0, byte(32+len(body)))
	wantAD = append(wantAD, 0x23, 0, 0, byte(4+len(body)))
	if !bytes.Equal(ad, wantAD) {
		t.Fatalf("associated data\n%x\nwant\n%x", ad, wantAD)
	}
	pkt := append(ad, body...)
	got, err := Decode(pkt)
	if err != nil {
		t.Fatal(err)
	}
	sk := got.Encrypted()
	if sk == nil || sk.InnerFirst != PayloadIDi || !bytes.Equal(sk.Body, body) {
		t.Fatalf("SK: %+v", got.Payloads)
	}
	if !bytes.Equal(pkt[:len(pkt)-len(sk.Body)], ad) {
		t.Fatal("associated data of the received message differs")
	}
	// Full encode gives the same datagram.
	m.Payloads[0].(*Encrypted).Body = body
	if enc, err := m.Encode(); err != nil || !bytes.Equal(enc, pkt) {
		t.Fatalf("Encode differs from AppendAssociatedData+body (%v)", err)
	}
	dec, err := DecodePayloads(sk.InnerFirst, sk.Body[16:len(sk.Body)-16])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dec, inner) {
		t.Fatalf("inner chain\n%#v\nwant\n%#v", dec, inner)
	}
	if s := FormatPayloads(dec, false); s != "IDi AUTH N(INITIAL_CONTACT) SA TSi TSr" {
		t.Errorf("FormatPayloads = %q", s)
	}
}
