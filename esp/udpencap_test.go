package esp

import (
	"bytes"
	"testing"
)

func TestClassifyUDP(t *testing.T) {
	ike := bytes.Repeat([]byte{0x11}, 28)
	for _, tc := range []struct {
		in   []byte
		kind DatagramKind
		rest []byte
	}{
		{[]byte{0xff}, DatagramKeepalive, nil},
		{nil, DatagramInvalid, nil},
		{[]byte{0}, DatagramInvalid, nil},
		{[]byte{0xff, 0xff}, DatagramInvalid, nil},
		{[]byte{0, 0, 0, 0}, DatagramInvalid, nil},
		{AppendIKE(nil, ike), DatagramIKE, ike},
		{[]byte{0, 0, 1, 0, 0, 0, 0, 1}, DatagramESP, []byte{0, 0, 1, 0, 0, 0, 0, 1}},
	} {
		k, rest := ClassifyUDP(tc.in)
		if k != tc.kind || !bytes.Equal(rest, tc.rest) {
			t.Errorf("%x: %v %x", tc.in, k, rest)
		}
	}
}

func TestAppendUDPEncap(t *testing.T) {
	cfg := suites[0].config(0x300)
	cfg.Encap = &UDPEncap{LocalPort: 4500, RemotePort: 1234}
	sa := mustSA(t, cfg)
	b := sa.AppendUDPEncap(nil, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	u := UDPHeader(b)
	if !u.IsValid() || u.SrcPort() != 4500 || u.DstPort() != 1234 || u.Length() != 16 || u.Checksum() != 0 {
		t.Fatalf("%x", b)
	}
	if sa.Encap().RemotePort != 1234 {
		t.Fatal("Encap")
	}
}

func FuzzClassifyUDP(f *testing.F) {
	f.Add([]byte{0xff})
	f.Add([]byte{0, 0, 0, 0, 1, 2, 3})
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, rest := ClassifyUDP(b)
		switch k {
		case DatagramESP:
			if len(rest) < 8 || rest[0]|rest[1]|rest[2]|rest[3] == 0 {
				t.Fatalf("ESP %x", b)
			}
		case DatagramIKE:
			if len(rest) != len(b)-4 {
				t.Fatal("IKE")
			}
		}
		ParseUDPEncap(b)
		ParsePacketSelector(b)
	})
}
