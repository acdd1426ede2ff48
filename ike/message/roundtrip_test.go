package message

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"

	"goswan/proposal"
)

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }

// roundTripPayloads is one or more of every payload type, with edge sizes.
func roundTripPayloads() map[string]Payload {
	many := make([]Proposal, MaxProposals)
	for i := range many {
		many[i] = Proposal{Number: uint8(i + 1), Protocol: ProtocolESP, SPI: []byte{0, 0, 0, byte(i)},
			Transforms: []Transform{{Type: TransformENCR, ID: uint16(proposal.EncrAESCBC), Attributes: []Attribute{KeyLengthAttribute(128)}}}}
	}
	manyT := make([]Transform, MaxTransforms)
	for i := range manyT {
		manyT[i] = Transform{Type: TransformKE, ID: uint16(i)}
	}
	return map[string]Payload{
		"SA ike": &SA{Proposals: []Proposal{
			{Number: 1, Protocol: ProtocolIKE, Transforms: []Transform{
				{Type: TransformENCR, ID: uint16(proposal.EncrAESGCM16), Attributes: []Attribute{KeyLengthAttribute(256)}},
				{Type: TransformENCR, ID: uint16(proposal.EncrAESGCM16), Attributes: []Attribute{KeyLengthAttribute(128)}},
				{Type: TransformPRF, ID: uint16(proposal.PRFHMACSHA2512)},
				{Type: TransformKE, ID: uint16(proposal.DHCurve25519)},
				{Type: TransformADDKE1, ID: 35},
			}},
			{Number: 2, Protocol: ProtocolIKE, Transforms: []Transform{
				{Type: TransformENCR, ID: uint16(proposal.EncrChaCha20Poly1305)},
				{Type: TransformPRF, ID: uint16(proposal.PRFHMACSHA2256)},
				{Type: TransformKE, ID: uint16(proposal.DHECP384)},
			}},
		}},
		"SA rekey IKE SPI": &SA{Proposals: []Proposal{{Number: 3, Protocol: ProtocolIKE, SPI: []byte{1, 2, 3, 4, 5, 6, 7, 8},
			Transforms: []Transform{{Type: TransformENCR, ID: 20, Attributes: []Attribute{
				KeyLengthAttribute(256), {Type: 17, TV: true, Value: 9}, {Type: 18, Data: []byte{1, 2, 3}}, {Type: 19}}}}}}},
		"SA AH":              &SA{Proposals: []Proposal{{Number: 1, Protocol: ProtocolAH, SPI: []byte{1, 2, 3, 4}, Transforms: []Transform{{Type: TransformINTEG, ID: 12}, {Type: TransformESN, ID: ESNNo}}}}},
		"SA max proposals":   &SA{Proposals: many},
		"SA max transforms":  &SA{Proposals: []Proposal{{Number: 1, Protocol: ProtocolIKE, Transforms: manyT}}},
		"SA unknown proto":   &SA{Proposals: []Proposal{{Number: 1, Protocol: 9, SPI: []byte{1, 2}, Transforms: []Transform{{Type: 200, ID: 65535}}}}},
		"KE DH19":            &KE{Group: proposal.DHECP256, Data: rep(1, 64)},
		"KE MODP8192":        &KE{Group: proposal.DHMODP8192, Data: rep(2, 1024)},
		"KE unknown group":   &KE{Group: 1234, Data: rep(3, 3)},
		"KE none empty":      &KE{Group: proposal.DHNone},
		"IDi fqdn":           &Identification{IDType: IDFQDN, Data: []byte("east.example.org")},
		"IDr ipv4":           &Identification{Responder: true, IDType: IDIPv4Addr, Data: []byte{192, 0, 2, 1}},
		"IDi ipv6":           &Identification{IDType: IDIPv6Addr, Data: mustAddr("2001:db8::1").AsSlice()},
		"IDi rfc822":         &Identification{IDType: IDRFC822Addr, Data: []byte("a@example.org")},
		"IDr DN":             &Identification{Responder: true, IDType: IDDERASN1DN, Data: []byte{0x30, 0}},
		"IDi GN":             &Identification{IDType: IDDERASN1GN, Data: []byte{0x82, 1, 'a'}},
		"IDi keyid reserved": &Identification{IDType: IDKeyID, Reserved: [3]byte{1, 2, 3}, Data: []byte{9}},
		"IDi NULL":           &Identification{IDType: IDNull},
		"CERT":               &Cert{Encoding: CertX509Signature, Data: rep(0x30, 1200)},
		"CERT empty":         &Cert{Encoding: CertHashURLX509},
		"CERTREQ":            &CertReq{Encoding: CertX509Signature, Data: rep(7, 40)},
		"CERTREQ empty":      &CertReq{Encoding: CertX509Signature},
		"AUTH":               &Auth{Method: AuthPSK, Data: rep(4, 32)},
		"AUTH NULL":          &Auth{Method: AuthNull, Data: rep(4, 32)},
		"Nonce 16":           &Nonce{Data: rep(5, 16)},
		"Nonce 256":          &Nonce{Data: rep(5, 256)},
		"N empty":            &Notify{NotifyType: MOBIKESupported},
		"N cookie":           &Notify{NotifyType: Cookie, Data: rep(6, 64)},
		"N rekey ESP":        &Notify{Protocol: ProtocolESP, SPI: []byte{1, 2, 3, 4}, NotifyType: RekeySA},
		"N error with data":  &Notify{NotifyType: InvalidKEPayload, Data: []byte{0, 19}},
		"N unknown status":   &Notify{Protocol: ProtocolIKE, SPI: rep(1, 8), NotifyType: 40000, Data: []byte{1}},
		"D IKE":              &Delete{Protocol: ProtocolIKE},
		"D ESP":              &Delete{Protocol: ProtocolESP, SPIs: []uint32{1, 0xdeadbeef, 3}},
		"D AH none":          &Delete{Protocol: ProtocolAH},
		"V":                  &VendorID{Data: []byte("strongSwan")},
		"V empty":            &VendorID{},
		"TSi v4":             &TrafficSelectors{Selectors: []TrafficSelector{SelectorFromPrefix(mustPrefix("0.0.0.0/0"), 0, 0, 65535)}},
		"TSr mixed": &TrafficSelectors{Responder: true, Selectors: []TrafficSelector{
			SelectorFromPrefix(mustPrefix("192.0.2.7/32"), 17, 500, 500),
			SelectorFromPrefix(mustPrefix("2001:db8::/32"), 6, 0, 65535),
			{TSType: TSIPv4AddrRange, IPProtocol: 1, StartPort: 0x0800, EndPort: 0x08ff, Start: mustAddr("10.0.0.1"), End: mustAddr("10.0.0.5")},
			{TSType: TSIPv6AddrRange, StartPort: 65535, EndPort: 0, Start: mustAddr("::"), End: mustAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")},
			{TSType: TSSecLabel, Raw: []byte("system_u:object_r:ipsec_spd_t:s0\x00")},
			{TSType: 200, IPProtocol: 9},
		}},
		"SK":            &Encrypted{InnerFirst: PayloadIDi, Body: rep(8, 100)},
		"SK empty":      &Encrypted{},
		"SKF first":     &EncryptedFragment{InnerFirst: PayloadIDi, Number: 1, Total: 3, Body: rep(9, 50)},
		"SKF last":      &EncryptedFragment{Number: 65535, Total: 65535},
		"CP request":    &Config{CFGType: CFGRequest, Attributes: []ConfigAttribute{{Type: INTERNAL_IP4_ADDRESS}, {Type: INTERNAL_IP4_DNS}, {Type: INTERNAL_IP6_ADDRESS}}},
		"CP reply":      &Config{CFGType: CFGReply, Attributes: []ConfigAttribute{{Type: INTERNAL_IP4_ADDRESS, Value: []byte{10, 9, 0, 2}}, {Type: INTERNAL_DNS_DOMAIN, Value: []byte("example.org")}}},
		"CP ack empty":  &Config{CFGType: CFGAck},
		"EAP":           &EAP{Data: []byte{1, 1, 0, 5, 1}},
		"EAP empty":     &EAP{},
		"unknown":       &Unknown{PayloadType: 200, Body: []byte{1, 2, 3}},
		"unknown empty": &Unknown{PayloadType: PayloadGSPM},
	}
}

func TestRoundTripPayloads(t *testing.T) {
	for name, p := range roundTripPayloads() {
		t.Run(name, func(t *testing.T) {
			m := &Message{SPIi: [8]byte{1, 2}, Exchange: INFORMATIONAL, Flags: FlagInitiator | FlagResponse, MessageID: 7, MinorVersion: 1}
			outer := p.Type() == PayloadSK || p.Type() == PayloadSKF
			if outer {
				m.Payloads = []Payload{&VendorID{Data: []byte("x")}, p}
			} else {
				m.Payloads = []Payload{p, &Notify{NotifyType: InitialContact}}
			}
			b, err := m.Encode()
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("%v\n%x", err, b)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("decoded\n%#v\nwant\n%#v", got.Payloads[0], m.Payloads[0])
			}
			if outer {
				return
			}
			first, body, err := EncodePayloads([]Payload{p})
			if err != nil || first != p.Type() {
				t.Fatal(first, err)
			}
			ps, err := DecodePayloads(first, body)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ps, []Payload{p}) {
				t.Fatalf("inner decoded %#v", ps[0])
			}
			// decode(encode(decode(x))) == decode(x)
			b2, err := got.Encode()
			if err != nil || !bytes.Equal(b2, b) {
				t.Fatalf("re-encode differs: %v", err)
			}
			_ = FormatPayloads(ps, true)
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	for name, ps := range map[string][]Payload{
		"SK not last":        {&Encrypted{}, &Nonce{Data: rep(1, 16)}},
		"short nonce":        {&Nonce{Data: rep(1, 15)}},
		"long nonce":         {&Nonce{Data: rep(1, 257)}},
		"KE size":            {&KE{Group: proposal.DHECP256, Data: rep(1, 63)}},
		"payload over 64KiB": {&VendorID{Data: make([]byte, 65532)}},
		"SA empty":           {&SA{}},
		"SA ESP SPI size":    {&SA{Proposals: []Proposal{{Number: 1, Protocol: ProtocolESP, Transforms: []Transform{{}}}}}},
		"SA no transforms":   {&SA{Proposals: []Proposal{{Number: 1, Protocol: ProtocolIKE}}}},
		"TLV key length":     {&SA{Proposals: []Proposal{{Number: 1, Protocol: ProtocolIKE, Transforms: []Transform{{Attributes: []Attribute{{Type: AttributeKeyLength}}}}}}}},
		"TS empty":           {&TrafficSelectors{}},
		"TS reversed":        {&TrafficSelectors{Selectors: []TrafficSelector{{TSType: TSIPv4AddrRange, Start: mustAddr("10.0.0.2"), End: mustAddr("10.0.0.1")}}}},
		"TS family":          {&TrafficSelectors{Selectors: []TrafficSelector{{TSType: TSIPv4AddrRange, Start: mustAddr("::1"), End: mustAddr("::2")}}}},
		"delete IKE SPIs":    {&Delete{Protocol: ProtocolIKE, SPIs: []uint32{1}}},
		"delete unknown":     {&Delete{Protocol: 7}},
		"SKF zero":           {&EncryptedFragment{Number: 0, Total: 1}},
		"unknown known type": {&Unknown{PayloadType: PayloadNonce}},
		"nil payload":        {nil},
		"ID ipv4 wrong size": {&Identification{IDType: IDIPv4Addr, Data: []byte{1}}},
	} {
		m := &Message{Exchange: IKE_SA_INIT, Payloads: ps}
		if b, err := m.Encode(); err == nil {
			t.Errorf("%s: encoded %x", name, b)
		}
	}
	if _, _, err := EncodePayloads([]Payload{&Encrypted{}}); err == nil {
		t.Error("EncodePayloads accepted SK")
	}
	if _, err := (&Message{}).AppendAssociatedData(nil, 10); err == nil {
		t.Error("AppendAssociatedData without SK")
	}
}

func TestFragmentAssociatedData(t *testing.T) {
	m := &Message{Exchange: IKE_AUTH, MessageID: 1, Flags: FlagInitiator,
		Payloads: []Payload{&EncryptedFragment{InnerFirst: PayloadIDi, Number: 1, Total: 2}}}
	ad, err := m.AppendAssociatedData([]byte("x"), 50)
	if err != nil {
		t.Fatal(err)
	}
	ad = ad[1:]
	if len(ad) != 36 || Header(ad).Length() != 86 || Header(ad).NextPayload() != PayloadSKF ||
		!bytes.Equal(ad[28:], unhex("23 00 003a 0001 0002")) {
		t.Fatalf("SKF associated data %x", ad)
	}
	pkt := append(ad, rep(1, 50)...)
	got, err := Decode(pkt)
	if err != nil {
		t.Fatal(err)
	}
	f := got.Fragment()
	if f == nil || f.Number != 1 || f.Total != 2 || f.InnerFirst != PayloadIDi || len(f.Body) != 50 || !got.Protected() {
		t.Fatalf("%+v", got.Payloads)
	}
	if s := got.String(); s != "IKE_AUTH request #1: SKF(1/2)" {
		t.Errorf("String() = %q", s)
	}
}

func TestTrafficSelectorPrefix(t *testing.T) {
	for _, s := range []string{"0.0.0.0/0", "10.0.0.0/8", "192.0.2.0/24", "192.0.2.9/32", "::/0", "2001:db8::/32", "2001:db8::1/128", "::ffff:10.0.0.0/104"} {
		p := mustPrefix(s)
		ts := SelectorFromPrefix(p, 0, 0, 65535)
		got, ok := ts.Prefix()
		if !ok || got != p {
			t.Errorf("%s: Prefix() = %v %v (range %v-%v)", s, got, ok, ts.Start, ts.End)
		}
	}
	ts := SelectorFromPrefix(mustPrefix("10.1.2.3/24"), 6, 80, 80)
	if ts.Start != mustAddr("10.1.2.0") || ts.End != mustAddr("10.1.2.255") || ts.TSType != TSIPv4AddrRange || ts.String() != "10.1.2.0/24:6/80-80" {
		t.Errorf("SelectorFromPrefix: %+v %s", ts, ts.String())
	}
	for _, r := range [][2]string{{"10.0.0.1", "10.0.0.5"}, {"10.0.0.0", "10.0.1.254"}, {"10.0.0.1", "10.0.0.0"}, {"10.0.0.0", "::1"}, {"0.0.0.1", "255.255.255.255"}} {
		ts := TrafficSelector{TSType: TSIPv4AddrRange, Start: mustAddr(r[0]), End: mustAddr(r[1])}
		if ts.IsPrefix() {
			t.Errorf("%v-%v is a prefix?", r[0], r[1])
		}
	}
	if (&TrafficSelector{}).IsPrefix() {
		t.Error("zero selector is a prefix")
	}
}

func TestNames(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{NATDetectionSourceIP.String(), "NAT_DETECTION_SOURCE_IP"},
		{InvalidSyntax.String(), "INVALID_SYNTAX"},
		{NotifyType(8000).String(), "ERROR_8000"},
		{NotifyType(50000).String(), "STATUS_50000"},
		{IKE_INTERMEDIATE.String(), "IKE_INTERMEDIATE"},
		{ExchangeType(99).String(), "EXCHANGE_99"},
		{PayloadSKF.String(), "SKF"},
		{PayloadType(99).String(), "PAYLOAD_99"},
		{IDNull.String(), "ID_NULL"},
		{AuthDigitalSignature.String(), "DIGITAL_SIGNATURE"},
		{CFGReply.String(), "CFG_REPLY"},
		{INTERNAL_IP4_DNS.String(), "INTERNAL_IP4_DNS"},
		{TSIPv6AddrRange.String(), "TS_IPV6_ADDR_RANGE"},
		{CertX509Signature.String(), "X509_SIGNATURE"},
		{TransformADDKE1.String(), "ADDKE1"},
		{AttributeKeyLength.String(), "KEY_LENGTH"},
		{ProtocolESP.String(), "ESP"},
		{(FlagInitiator | FlagResponse | 1).String(), "I+R+0x01"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	for typ, name := range notifyNames {
		if typ.String() != name || name == "" {
			t.Errorf("notify %d named %q", typ, typ.String())
		}
	}
	if !IKE_AUTH.Protected() || IKE_SA_INIT.Protected() {
		t.Error("Protected")
	}
}
