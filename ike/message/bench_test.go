package message

import "testing"

// BenchmarkDecodeSAInit decodes a typical IKE_SA_INIT request: the
// captured strongSwan one (two proposals, MODP2048 KE, nonce).
func BenchmarkDecodeSAInit(b *testing.B) {
	pkt := unhex(capturedSAInit)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if _, err := Decode(pkt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeSAInitResponse decodes the hand-built response with its
// NAT detection and capability notifies.
func BenchmarkDecodeSAInitResponse(b *testing.B) {
	_, pkt := handResponse()
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if _, err := Decode(pkt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeSAInitResponse(b *testing.B) {
	m, pkt := handResponse()
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if _, err := m.Append(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
