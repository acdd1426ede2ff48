package message

import (
	"errors"
	"reflect"
	"testing"
)

// seeds are whole datagrams: the captures, the hand-built vector, one
// message of every payload type, and the malformed table's inputs.
func seeds() [][]byte {
	_, resp := handResponse()
	out := [][]byte{unhex(capturedSAInit), unhex(capturedAuth), resp}
	for _, p := range roundTripPayloads() {
		m := &Message{Exchange: IKE_AUTH, Payloads: []Payload{p}}
		if b, err := m.Encode(); err == nil {
			out = append(out, b)
		}
	}
	out = append(out,
		wrap(PayloadSA, "00 00 0016 00 00 0012 01 01 00 01 00 00 000a 01 00 0014 800e"),
		wrap(200, "28 80 0005 ff"+nonce16),
		wrap(PayloadSKF, "00 00 0008 0003 0002"),
		wrap(PayloadTSi, "00 00 0018 ff 000000 07 00 0010 0000 ffff 0a000001 0a000002"),
	)
	return out
}

// checkDecoded is the property shared by both fuzz targets: an error is an
// *Error; a success re-encodes, and decoding that gives the same result.
func checkError(t *testing.T, err error) {
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T: %v", err, err)
	}
	if e.Notify == UnsupportedCriticalPayload && len(e.Data) != 1 {
		t.Fatalf("UNSUPPORTED_CRITICAL_PAYLOAD without the type: %v", err)
	}
	_ = e.Error()
}

func FuzzDecode(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			checkError(t, err)
			if NotifyFor(err) != 0 && !Header(b).IsValid() {
				t.Fatal("answer asked for without a header")
			}
			return
		}
		_ = m.String()
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("re-encode of %v: %v", m, err)
		}
		if len(enc) != len(b) {
			t.Fatalf("re-encoded %d bytes from %d", len(enc), len(b))
		}
		m2, err := Decode(enc)
		if err != nil {
			t.Fatalf("decode of re-encoded: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("decode(encode(decode(x))) != decode(x)\n%#v\n%#v", m, m2)
		}
		if m.Protected() {
			if _, err := m.AppendAssociatedData(nil, 0); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func FuzzDecodePayloads(f *testing.F) {
	for _, s := range seeds() {
		if len(s) > HeaderLen {
			f.Add(uint8(Header(s).NextPayload()), s[HeaderLen:])
		}
	}
	for _, p := range roundTripPayloads() {
		if first, b, err := EncodePayloads([]Payload{p, &Notify{NotifyType: Cookie}}); err == nil {
			f.Add(uint8(first), b)
		}
	}
	f.Fuzz(func(t *testing.T, first uint8, b []byte) {
		ps, err := DecodePayloads(PayloadType(first), b)
		if err != nil {
			checkError(t, err)
			return
		}
		_ = FormatPayloads(ps, false)
		first2, enc, err := EncodePayloads(ps)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if len(enc) != len(b) || (len(ps) > 0 && first2 != PayloadType(first)) {
			t.Fatalf("re-encoded %d bytes from %d, first %v", len(enc), len(b), first2)
		}
		ps2, err := DecodePayloads(first2, enc)
		if err != nil {
			t.Fatalf("decode of re-encoded: %v", err)
		}
		if !reflect.DeepEqual(ps, ps2) {
			t.Fatalf("decode(encode(decode(x))) != decode(x)\n%#v\n%#v", ps, ps2)
		}
	})
}
