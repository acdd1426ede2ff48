package message

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// wrap puts a raw payload chain behind a valid IKE header.
func wrap(first PayloadType, chain string) []byte {
	body := unhex(chain)
	b := make([]byte, HeaderLen, HeaderLen+len(body))
	h := Header(b)
	h.SetSPIi([8]byte{1, 2, 3, 4, 5, 6, 7, 8})
	h.SetNextPayload(first)
	h.SetVersion(2, 0)
	h.SetExchangeType(IKE_SA_INIT)
	h.SetFlags(FlagInitiator)
	b = append(b, body...)
	Header(b).SetLength(uint32(len(b)))
	return b
}

// mutate returns a copy of b with f applied.
func mutate(b []byte, f func([]byte) []byte) []byte {
	return f(append([]byte(nil), b...))
}

const nonce16 = "00 00 0014 00112233445566778899aabbccddeeff"

func TestMalformed(t *testing.T) {
	_, resp := handResponse()
	for _, c := range []struct {
		name    string
		b       []byte
		notify  NotifyType
		payload PayloadType
		data    []byte
	}{
		{"empty", nil, 0, 0, nil},
		{"truncated header", resp[:27], 0, 0, nil},
		{"length one more than datagram", mutate(resp, func(b []byte) []byte { Header(b).SetLength(265); return b }), 0, 0, nil},
		{"length one less than datagram", mutate(resp, func(b []byte) []byte { Header(b).SetLength(263); return b }), 0, 0, nil},
		{"length below header", mutate(resp[:28], func(b []byte) []byte { Header(b).SetLength(20); return b }), 0, 0, nil},
		{"IKEv1", mutate(resp, func(b []byte) []byte { b[17] = 0x10; return b }), 0, 0, nil},
		{"major version 3", mutate(resp, func(b []byte) []byte { b[17] = 0x30; return b }), InvalidMajorVersion, 0, nil},
		{"major version 3 short", mutate(resp[:28], func(b []byte) []byte { b[17] = 0x30; return b }), InvalidMajorVersion, 0, nil},
		{"payload length < 4", mutate(resp, func(b []byte) []byte { b[31] = 3; return b }), InvalidSyntax, PayloadSA, nil},
		{"payload length 0", mutate(resp, func(b []byte) []byte { b[30], b[31] = 0, 0; return b }), InvalidSyntax, PayloadSA, nil},
		{"payload overruns message", mutate(resp, func(b []byte) []byte { b[257] = 11; return b }), InvalidSyntax, PayloadVendorID, nil},
		{"bytes after last payload", mutate(resp, func(b []byte) []byte { b[257] = 9; return b }), InvalidSyntax, 0, nil},
		{"next payload missing", mutate(resp, func(b []byte) []byte { b[254] = uint8(PayloadNonce); return b }), InvalidSyntax, PayloadNonce, nil},
		{"header claims payload, none", wrap(PayloadNonce, ""), InvalidSyntax, PayloadNonce, nil},
		{"truncated payload header", wrap(PayloadNonce, "00 00"), InvalidSyntax, PayloadNonce, nil},
		{"transform overruns proposal", mutate(resp, func(b []byte) []byte { b[63] = 0x10; return b }), InvalidSyntax, PayloadSA, nil},
		{"proposal overruns SA", mutate(resp, func(b []byte) []byte { b[35] = 0x28; return b }), InvalidSyntax, PayloadSA, nil},
		{"proposal shorter than transforms", mutate(resp, func(b []byte) []byte { b[35] = 0x20; return b }), InvalidSyntax, PayloadSA, nil},
		{"transform count too high", mutate(resp, func(b []byte) []byte { b[39] = 4; return b }), InvalidSyntax, PayloadSA, nil},
		{"transform count too low", mutate(resp, func(b []byte) []byte { b[39] = 2; return b }), InvalidSyntax, PayloadSA, nil},
		{"zero transforms", wrap(PayloadSA, "00 00 000c 00 00 0008 01 01 00 00"), InvalidSyntax, PayloadSA, nil},
		{"last proposal marked more", mutate(resp, func(b []byte) []byte { b[32] = 2; return b }), InvalidSyntax, PayloadSA, nil},
		{"bad Last Substruc", mutate(resp, func(b []byte) []byte { b[32] = 1; return b }), InvalidSyntax, PayloadSA, nil},
		{"transform marked last early", mutate(resp, func(b []byte) []byte { b[40] = 0; return b }), InvalidSyntax, PayloadSA, nil},
		{"attribute overruns transform", wrap(PayloadSA, "00 00 0016 00 00 0012 01 01 00 01 00 00 000a 01 00 0014 800e"), InvalidSyntax, PayloadSA, nil},
		{"TLV attribute overruns transform", wrap(PayloadSA, "00 00 001a 00 00 0016 01 01 00 01 00 00 000e 01 00 0014 0011 0004 0102"), InvalidSyntax, PayloadSA, nil},
		{"proposal number 0", mutate(resp, func(b []byte) []byte { b[36] = 0; return b }), InvalidSyntax, PayloadSA, nil},
		{"IKE SPI size 4", wrap(PayloadSA, "00 00 0014 00 00 0010 01 01 04 01 01020304 00 00 0008 01 00 0014"), InvalidSyntax, PayloadSA, nil},
		{"ESP SPI size 0", wrap(PayloadSA, "00 00 0010 00 00 000c 01 03 00 01 00 00 0008 01 00 0014"), InvalidSyntax, PayloadSA, nil},
		{"zero proposals", wrap(PayloadSA, "00 00 0004"), InvalidSyntax, PayloadSA, nil},
		{"proposal numbers jump", wrap(PayloadSA, "00 00 0024 02 00 0010 01 01 00 01 00 00 0008 01 00 0014 00 00 0010 03 01 00 01 00 00 0008 01 00 0014"), InvalidSyntax, PayloadSA, nil},
		{"key length TLV", wrap(PayloadSA, "00 00 0018 00 00 0014 01 01 00 01 00 00 000c 01 00 0014 000e 0000"), InvalidSyntax, PayloadSA, nil},
		{"two key lengths", wrap(PayloadSA, "00 00 001c 00 00 0018 01 01 00 01 00 00 0010 01 00 0014 800e 0080 800e 0100"), InvalidSyntax, PayloadSA, nil},
		{"KE wrong size for group", mutate(resp, func(b []byte) []byte { b[73] = 14; return b }), InvalidSyntax, PayloadKE, nil},
		{"KE too short", wrap(PayloadKE, "00 00 0006 0013"), InvalidSyntax, PayloadKE, nil},
		{"nonce 15 bytes", wrap(PayloadNonce, "00 00 0013 00112233445566778899aabbccddee"), InvalidSyntax, PayloadNonce, nil},
		{"nonce 257 bytes", wrap(PayloadNonce, "00 00 0105"+string(bytes.Repeat([]byte("00"), 257))), InvalidSyntax, PayloadNonce, nil},
		{"notify SPI overrun", wrap(PayloadNotify, "00 00 0008 03 04 4009"), InvalidSyntax, PayloadNotify, nil},
		{"delete ESP bad SPI size", wrap(PayloadDelete, "00 00 000c 03 08 0001 01020304"), InvalidSyntax, PayloadDelete, nil},
		{"delete ESP count mismatch", wrap(PayloadDelete, "00 00 000c 03 04 0002 01020304"), InvalidSyntax, PayloadDelete, nil},
		{"delete IKE with SPI", wrap(PayloadDelete, "00 00 000c 01 04 0001 01020304"), InvalidSyntax, PayloadDelete, nil},
		{"ID IPv4 wrong size", wrap(PayloadIDi, "00 00 000b 01 000000 0a0000"), InvalidSyntax, PayloadIDi, nil},
		{"TS start addr > end", wrap(PayloadTSi, "00 00 0018 01 000000 07 00 0010 0000 ffff 0a000002 0a000001"), InvalidSyntax, PayloadTSi, nil},
		{"TS start port > end", wrap(PayloadTSi, "00 00 0018 01 000000 07 00 0010 0050 0010 0a000001 0a000002"), InvalidSyntax, PayloadTSi, nil},
		{"TS v4 wrong length", wrap(PayloadTSr, "00 00 0024 01 000000 07 00 001c 0000 ffff 0a000001 0a000002 00000000 00000000 00000000"), InvalidSyntax, PayloadTSr, nil},
		{"TS count too high", wrap(PayloadTSi, "00 00 0018 02 000000 07 00 0010 0000 ffff 0a000001 0a000002"), InvalidSyntax, PayloadTSi, nil},
		{"TS count huge", wrap(PayloadTSi, "00 00 0018 ff 000000 07 00 0010 0000 ffff 0a000001 0a000002"), InvalidSyntax, PayloadTSi, nil},
		{"TS zero selectors", wrap(PayloadTSi, "00 00 0008 00 000000"), InvalidSyntax, PayloadTSi, nil},
		{"TS trailing bytes", wrap(PayloadTSi, "00 00 001a 01 000000 07 00 0010 0000 ffff 0a000001 0a000002 0000"), InvalidSyntax, PayloadTSi, nil},
		{"CP attribute overrun", wrap(PayloadCP, "00 00 000c 01 000000 0001 0008"), InvalidSyntax, PayloadCP, nil},
		{"critical unknown payload", wrap(200, "28 80 0005 ff"+nonce16), UnsupportedCriticalPayload, 200, []byte{200}},
		{"critical GSPM", wrap(PayloadGSPM, "00 80 0004"), UnsupportedCriticalPayload, PayloadGSPM, []byte{byte(PayloadGSPM)}},
		{"SK not last", wrap(PayloadSK, "00 00 0008 00000000 ff"), InvalidSyntax, PayloadSK, nil},
		{"SKF number 0", wrap(PayloadSKF, "00 00 0008 0000 0001"), 0, PayloadSKF, nil},
		{"SKF number > total", wrap(PayloadSKF, "00 00 0008 0003 0002"), 0, PayloadSKF, nil},
		{"SKF truncated", wrap(PayloadSKF, "00 00 0006 0001"), InvalidSyntax, PayloadSKF, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := Decode(c.b)
			if err == nil {
				t.Fatalf("decoded %v", m)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v", err, err)
			}
			if e.Notify != c.notify || e.Payload != c.payload || !bytes.Equal(e.Data, c.data) || NotifyFor(err) != c.notify {
				t.Fatalf("got %v (notify %v, payload %v, data %x), want notify %v payload %v data %x",
					err, e.Notify, e.Payload, e.Data, c.notify, c.payload, c.data)
			}
			if e.Notify != 0 && !Header(c.b).IsValid() {
				t.Fatal("an answer is asked for but the header is not there")
			}
		})
	}
}

func TestDecodePayloadsErrors(t *testing.T) {
	for _, c := range []struct {
		name   string
		first  PayloadType
		b      string
		notify NotifyType
	}{
		{"SK nested", PayloadSK, "00 00 0004", InvalidSyntax},
		{"SKF nested", PayloadSKF, "00 00 0008 0001 0001", InvalidSyntax},
		{"truncated", PayloadNonce, "00 00 00", InvalidSyntax},
		{"first but empty", PayloadIDi, "", InvalidSyntax},
		{"trailing", NoNextPayload, "00", InvalidSyntax},
		{"critical unknown", 250, "00 ff 0004", UnsupportedCriticalPayload},
	} {
		_, err := DecodePayloads(c.first, unhex(c.b))
		if NotifyFor(err) != c.notify {
			t.Errorf("%s: %v, want %v", c.name, err, c.notify)
		}
	}
	// Unknown non-critical payloads are kept; reserved bits are ignored.
	ps, err := DecodePayloads(250, unhex("28 7f 0006 abcd"+nonce16))
	if err != nil || len(ps) != 2 {
		t.Fatal(ps, err)
	}
	if u, ok := ps[0].(*Unknown); !ok || u.Critical || u.PayloadType != 250 || !bytes.Equal(u.Body, []byte{0xab, 0xcd}) {
		t.Fatalf("%#v", ps[0])
	}
	// The critical bit is ignored on a known payload (RFC 7296 §2.5).
	if _, err := DecodePayloads(PayloadNonce, unhex("00 80"+nonce16[5:])); err != nil {
		t.Fatal(err)
	}
	// An empty chain.
	if ps, err := DecodePayloads(NoNextPayload, nil); err != nil || ps != nil {
		t.Fatal(ps, err)
	}
}

func TestErrorString(t *testing.T) {
	_, err := Decode(wrap(PayloadNonce, "00 00 0013 00112233445566778899aabbccddee"))
	if got := err.Error(); got != "ikev2 message: Nonce payload at offset 28: nonce is 15 bytes, want 16..256 (answer INVALID_SYNTAX)" {
		t.Errorf("Error() = %q", got)
	}
	_, err = Decode(make([]byte, 3))
	if got := err.Error(); got != "ikev2 message: datagram of 3 bytes is shorter than the IKE header (drop)" {
		t.Errorf("Error() = %q", got)
	}
}

// TestLengthFieldsBounded checks that no length or count field makes the
// decoder allocate more than the datagram can hold.
func TestLengthFieldsBounded(t *testing.T) {
	b := wrap(PayloadTSi, "00 00 0008 ff 000000")
	allocs := testing.AllocsPerRun(10, func() { Decode(b) })
	if allocs > 5 {
		t.Errorf("%v allocations for a bogus TS count", allocs)
	}
	big := wrap(PayloadDelete, "00 00 0008 03 04 ffff")
	if _, err := Decode(big); NotifyFor(err) != InvalidSyntax {
		t.Fatal(err)
	}
	// A 64-proposal limit.
	var sa []byte
	for i := 0; i < MaxProposals+1; i++ {
		last := byte(2)
		if i == MaxProposals {
			last = 0
		}
		sa = append(sa, last, 0, 0, 16, 1, 1, 0, 1, 0, 0, 0, 8, 1, 0, 0, 20)
	}
	chain := binary.BigEndian.AppendUint16([]byte{0, 0}, uint16(4+len(sa)))
	chain = append(chain, sa...)
	b = wrap(PayloadSA, "")
	b = append(b, chain...)
	Header(b).SetLength(uint32(len(b)))
	if _, err := Decode(b); NotifyFor(err) != InvalidSyntax {
		t.Fatalf("65 proposals: %v", err)
	}
}
