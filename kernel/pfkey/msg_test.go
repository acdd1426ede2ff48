package pfkey

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"goswan/kernel"
	"goswan/proposal"
)

// The byte-exact messages below are written out by hand from the C
// headers (linux/pfkeyv2.h, FreeBSD's net/pfkeyv2.h) for a little-endian
// host, field by field.

var (
	linuxLE   = withOrder(Linux)
	freebsdLE = withOrder(FreeBSD)
	netbsdLE  = withOrder(NetBSD)
)

func withOrder(l Layout) *Layout {
	l.Order = binary.LittleEndian
	return &l
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

var zero8 = make([]byte, 8)

func checkBytes(t *testing.T, name string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got %x\nwant %x", name, got, want)
		for i := 0; i < len(got) && i < len(want); i++ {
			if got[i] != want[i] {
				t.Errorf("%s: first difference at byte %d", name, i)
				break
			}
		}
	}
}

func mustEncode(t *testing.T, m *Message, l *Layout) []byte {
	t.Helper()
	b, err := m.Encode(l)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	hostA = netip.MustParseAddr("192.0.2.1")
	hostB = netip.MustParseAddr("198.51.100.2")
)

func getSPIRequest() *Message {
	return &Message{Type: MsgGetSPI, SAType: SATypeESP, Seq: 7, PID: 1234,
		Src: saAddress(hostA), Dst: saAddress(netip.MustParseAddr("192.0.2.2")),
		SPIRange: &SPIRange{Min: 0x100, Max: 0xffffffff},
		SA2:      &SA2{Mode: ModeAny, ReqID: 0x67000001}}
}

func TestEncodeGetSPI(t *testing.T) {
	base := []byte{
		0x02,       // sadb_msg_version = PF_KEY_V2
		0x01,       // sadb_msg_type = SADB_GETSPI
		0x00,       // sadb_msg_errno
		0x03,       // sadb_msg_satype = SADB_SATYPE_ESP
		0x0c, 0x00, // sadb_msg_len = 96/8
		0x00, 0x00, // sadb_msg_reserved
		0x07, 0x00, 0x00, 0x00, // sadb_msg_seq = 7
		0xd2, 0x04, 0x00, 0x00, // sadb_msg_pid = 1234
	}
	tail := []byte{
		0x02, 0x00, 0x10, 0x00, // sadb_spirange_len = 2, exttype = SADB_EXT_SPIRANGE (16)
		0x00, 0x01, 0x00, 0x00, // sadb_spirange_min = 0x100
		0xff, 0xff, 0xff, 0xff, // sadb_spirange_max
		0x00, 0x00, 0x00, 0x00, // sadb_spirange_reserved
		0x02, 0x00, 0x13, 0x00, // sadb_x_sa2_len = 2, exttype = SADB_X_EXT_SA2 (19)
		0x00, 0x00, 0x00, 0x00, // sadb_x_sa2_mode = IPSEC_MODE_ANY, reserved1, reserved2
		0x00, 0x00, 0x00, 0x00, // sadb_x_sa2_sequence
		0x01, 0x00, 0x00, 0x67, // sadb_x_sa2_reqid = 0x67000001
	}
	addrHdr := func(ext byte) []byte {
		return []byte{
			0x03, 0x00, ext, 0x00, // sadb_address_len = 3 (8 + 16), exttype
			0xff,       // sadb_address_proto = IPSEC_ULPROTO_ANY
			0x20,       // sadb_address_prefixlen = 32
			0x00, 0x00, // sadb_address_reserved
		}
	}
	linux := cat(base,
		addrHdr(5),
		[]byte{0x02, 0x00, 0x00, 0x00, 192, 0, 2, 1}, zero8, // sockaddr_in: family AF_INET (u16), port 0, 192.0.2.1, sin_zero
		addrHdr(6),
		[]byte{0x02, 0x00, 0x00, 0x00, 192, 0, 2, 2}, zero8,
		tail)
	freebsd := cat(base,
		addrHdr(5),
		[]byte{0x10, 0x02, 0x00, 0x00, 192, 0, 2, 1}, zero8, // sockaddr_in: sin_len 16, AF_INET, port 0, address, sin_zero
		addrHdr(6),
		[]byte{0x10, 0x02, 0x00, 0x00, 192, 0, 2, 2}, zero8,
		tail)
	checkBytes(t, "linux", mustEncode(t, getSPIRequest(), linuxLE), linux)
	checkBytes(t, "freebsd", mustEncode(t, getSPIRequest(), freebsdLE), freebsd)
	for _, c := range []struct {
		l *Layout
		b []byte
	}{{linuxLE, linux}, {freebsdLE, freebsd}} {
		m, err := Decode(c.l, c.b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(m, withVersion(getSPIRequest())) {
			t.Errorf("%s: decoded %+v", c.l.Name, m)
		}
	}
}

func withVersion(m *Message) *Message {
	m.Version = Version
	return m
}

// gcmSA is an outbound tunnel-mode ESP SA with AES-128-GCM-16 behind NAT.
func gcmSA() *kernel.SA {
	key := make([]byte, 20) // 16 bytes of key, 4 of salt
	for i := range key {
		key[i] = byte(i + 1)
	}
	return &kernel.SA{SPI: 0xc0ffee01, Proto: kernel.ESP, Mode: kernel.Tunnel, Dir: kernel.Out,
		Src: hostA, Dst: hostB, Encap: &kernel.Encap{SrcPort: 4500, DstPort: 4501},
		Encr: proposal.EncrAESGCM16, EncrKey: key, Integ: proposal.IntegNone,
		ReplayWindow: 64, ESN: true,
		Lifetime: kernel.Lifetime{Hard: kernel.Limits{Time: time.Hour}, Soft: kernel.Limits{Time: 50 * time.Minute}},
		ReqID:    0x67000001}
}

// addGCMTail is everything of the ADD after the addresses, the same in
// both layouts.
var addGCMTail = []byte{
	0x04, 0x00, 0x09, 0x00, // sadb_key_len = 4 (8 + 20, padded to 32), exttype = SADB_EXT_KEY_ENCRYPT (9)
	0xa0, 0x00, // sadb_key_bits = 160: the 128-bit key and the 32-bit salt
	0x00, 0x00, // sadb_key_reserved
	1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, // key
	17, 18, 19, 20, // salt
	0x00, 0x00, 0x00, 0x00, // padding
	0x02, 0x00, 0x13, 0x00, // sadb_x_sa2_len = 2, exttype = SADB_X_EXT_SA2 (19)
	0x02, 0x00, 0x00, 0x00, // sadb_x_sa2_mode = IPSEC_MODE_TUNNEL, reserved1, reserved2
	0x00, 0x00, 0x00, 0x00, // sadb_x_sa2_sequence
	0x01, 0x20, 0x00, 0x00, // sadb_x_sa2_reqid = 0x2001
	0x01, 0x00, 0x14, 0x00, // sadb_x_nat_t_type_len = 1, exttype = SADB_X_EXT_NAT_T_TYPE (20)
	0x02, 0x00, 0x00, 0x00, // sadb_x_nat_t_type_type = UDP_ENCAP_ESPINUDP, reserved[3]
	0x01, 0x00, 0x15, 0x00, // sadb_x_nat_t_port_len = 1, exttype = SADB_X_EXT_NAT_T_SPORT (21)
	0x11, 0x94, 0x00, 0x00, // sadb_x_nat_t_port_port = 4500 (network order), reserved
	0x01, 0x00, 0x16, 0x00, // ... SADB_X_EXT_NAT_T_DPORT (22)
	0x11, 0x95, 0x00, 0x00, // port 4501
}

// addGCMHead is the base header, SA and lifetimes of the ADD.
func addGCMHead(replay byte, flags byte) []byte {
	return []byte{
		0x02, 0x03, 0x00, 0x03, // version 2, SADB_ADD, errno 0, SADB_SATYPE_ESP
		0x1b, 0x00, 0x00, 0x00, // sadb_msg_len = 216/8 = 27, reserved
		0x09, 0x00, 0x00, 0x00, // seq 9
		0xd2, 0x04, 0x00, 0x00, // pid 1234
		0x02, 0x00, 0x01, 0x00, // sadb_sa_len = 2, exttype = SADB_EXT_SA (1)
		0xc0, 0xff, 0xee, 0x01, // sadb_sa_spi, network order
		replay,                  // sadb_sa_replay
		0x01,                    // sadb_sa_state = SADB_SASTATE_MATURE
		0x00,                    // sadb_sa_auth = SADB_AALG_NONE
		0x14,                    // sadb_sa_encrypt = 20: AES-GCM with a 16-byte ICV
		0x00, flags, 0x00, 0x00, // sadb_sa_flags
		0x04, 0x00, 0x03, 0x00, // sadb_lifetime_len = 4, exttype = SADB_EXT_LIFETIME_HARD (3)
		0x00, 0x00, 0x00, 0x00, // sadb_lifetime_allocations
		0, 0, 0, 0, 0, 0, 0, 0, // sadb_lifetime_bytes
		0x10, 0x0e, 0, 0, 0, 0, 0, 0, // sadb_lifetime_addtime = 3600
		0, 0, 0, 0, 0, 0, 0, 0, // sadb_lifetime_usetime
		0x04, 0x00, 0x04, 0x00, // ... SADB_EXT_LIFETIME_SOFT (4)
		0x00, 0x00, 0x00, 0x00,
		0, 0, 0, 0, 0, 0, 0, 0,
		0xb8, 0x0b, 0, 0, 0, 0, 0, 0, // addtime = 3000
		0, 0, 0, 0, 0, 0, 0, 0,
	}
}

func TestEncodeAddGCMNATT(t *testing.T) {
	addr := func(ext byte, sockaddr ...byte) []byte {
		return cat([]byte{0x03, 0x00, ext, 0x00, 0xff, 0x20, 0x00, 0x00}, sockaddr, zero8)
	}
	// FreeBSD: the message SAMessage makes of the SA: replay 64 packets =
	// 8 bytes of bitmap, ESN flag 0x400.
	freebsd := cat(addGCMHead(0x08, 0x04),
		addr(5, 0x10, 0x02, 0x00, 0x00, 192, 0, 2, 1), // sin_len, AF_INET, port 0, 192.0.2.1
		addr(6, 0x10, 0x02, 0x00, 0x00, 198, 51, 100, 2),
		addGCMTail)
	m, err := freebsdLE.SAMessage(MsgAdd, gcmSA(), 0x2001)
	if err != nil {
		t.Fatal(err)
	}
	m.Seq, m.PID = 9, 1234
	checkBytes(t, "freebsd", mustEncode(t, m, freebsdLE), freebsd)
	d, err := Decode(freebsdLE, freebsd)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d, withVersion(m)) {
		t.Errorf("freebsd: decoded %+v\nwant %+v", d, m)
	}

	// Linux: the same fields, replay in packets (32 at most), no ESN, and
	// Linux sockaddrs. Linux's af_key would refuse the SA (AEAD), so the
	// message is written by hand here.
	if _, err := linuxLE.SAMessage(MsgAdd, gcmSA(), 0x2001); err == nil || !strings.Contains(err.Error(), "--use-xfrm") {
		t.Errorf("linux: SAMessage of an AES-GCM SA: %v, want a refusal naming --use-xfrm", err)
	}
	linux := cat(addGCMHead(0x20, 0x00),
		addr(5, 0x02, 0x00, 0x00, 0x00, 192, 0, 2, 1), // AF_INET as u16, port 0, 192.0.2.1
		addr(6, 0x02, 0x00, 0x00, 0x00, 198, 51, 100, 2),
		addGCMTail)
	m.SA.Replay, m.SA.Flags = 32, 0
	checkBytes(t, "linux", mustEncode(t, m, linuxLE), linux)
	if d, err := Decode(linuxLE, linux); err != nil || !reflect.DeepEqual(d, withVersion(m)) {
		t.Errorf("linux: decoded %+v, %v", d, err)
	}
}

func tunnelPolicy() *kernel.Policy {
	return &kernel.Policy{Dir: kernel.Out, Priority: 0x100, Action: kernel.Protect,
		Selector: kernel.Selector{Src: netip.MustParsePrefix("10.1.0.0/16"), Dst: netip.MustParsePrefix("10.2.0.0/16")},
		Template: kernel.Template{Src: hostA, Dst: hostB, Proto: kernel.ESP, Mode: kernel.Tunnel, ReqID: 0x67000001}}
}

func TestEncodeSPDAddTunnel(t *testing.T) {
	base := func(units byte) []byte {
		return []byte{
			0x02, 0x0e, 0x00, 0x00, // version 2, SADB_X_SPDADD (14), errno 0, SADB_SATYPE_UNSPEC
			units, 0x00, 0x00, 0x00, // sadb_msg_len, reserved
			0x0b, 0x00, 0x00, 0x00, // seq 11
			0xd2, 0x04, 0x00, 0x00, // pid 1234
		}
	}
	sel := func(ext, third byte, fam ...byte) []byte {
		return cat([]byte{
			0x03, 0x00, ext, 0x00, // sadb_address_len = 3, exttype
			0xff,       // sadb_address_proto = IPSEC_ULPROTO_ANY
			0x10,       // sadb_address_prefixlen = 16
			0x00, 0x00, // reserved
		}, fam, []byte{0x00, 0x00, 10, third, 0, 0}, zero8) // family, port 0 (any), 10.x.0.0
	}
	policyHead := func(units byte) []byte {
		return []byte{
			units, 0x00, 0x12, 0x00, // sadb_x_policy_len, exttype = SADB_X_EXT_POLICY (18)
			0x02, 0x00, // sadb_x_policy_type = IPSEC_POLICY_IPSEC
			0x02,                   // sadb_x_policy_dir = IPSEC_DIR_OUTBOUND
			0x00,                   // reserved (FreeBSD: scope)
			0x00, 0x00, 0x00, 0x00, // sadb_x_policy_id: the kernel picks it
			0x00, 0x01, 0x00, 0x00, // sadb_x_policy_priority = 0x100
		}
	}
	linux := cat(base(16),
		sel(5, 1, 0x02, 0x00), sel(6, 2, 0x02, 0x00),
		policyHead(8), // 16 + 48 = 64 bytes
		[]byte{
			0x30, 0x00, // sadb_x_ipsecrequest_len = 48 bytes (not u64s)
			0x32, 0x00, // sadb_x_ipsecrequest_proto = IPPROTO_ESP
			0x02,       // mode = IPSEC_MODE_TUNNEL
			0x03,       // level = IPSEC_LEVEL_UNIQUE
			0x00, 0x00, // reserved1
			0x01, 0x20, 0x00, 0x00, // reqid = 0x2001
			0x00, 0x00, 0x00, 0x00, // reserved2
			0x02, 0x00, 0x00, 0x00, 192, 0, 2, 1, // tunnel source sockaddr_in
		}, zero8,
		[]byte{0x02, 0x00, 0x00, 0x00, 198, 51, 100, 2}, zero8, // tunnel destination
	)
	freebsd := cat(base(15),
		sel(5, 1, 0x10, 0x02), sel(6, 2, 0x10, 0x02),
		policyHead(7), // 16 + 40 = 56 bytes
		[]byte{
			0x28, 0x00, // sadb_x_ipsecrequest_len = 40 bytes
			0x32, 0x00, // proto = IPPROTO_ESP
			0x02,       // mode = IPSEC_MODE_TUNNEL
			0x03,       // level = IPSEC_LEVEL_UNIQUE
			0x01, 0x20, // reqid = 0x2001 (16 bits)
			0x10, 0x02, 0x00, 0x00, 192, 0, 2, 1, // tunnel source, sa_len 16
		}, zero8,
		[]byte{0x10, 0x02, 0x00, 0x00, 198, 51, 100, 2}, zero8,
	)
	for _, c := range []struct {
		l    *Layout
		want []byte
	}{{linuxLE, linux}, {freebsdLE, freebsd}} {
		m, err := c.l.PolicyMessage(MsgSPDAdd, tunnelPolicy(), 0x2001)
		if err != nil {
			t.Fatal(err)
		}
		m.Seq, m.PID = 11, 1234
		checkBytes(t, c.l.Name, mustEncode(t, m, c.l), c.want)
		d, err := Decode(c.l, c.want)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(d, withVersion(m)) {
			t.Errorf("%s: decoded %+v\nwant %+v", c.l.Name, d.Policy, m.Policy)
		}
	}
	// NetBSD has no priority and no forward policies.
	m, err := netbsdLE.PolicyMessage(MsgSPDAdd, tunnelPolicy(), 0x2001)
	if err != nil || m.Policy.Priority != 0 {
		t.Errorf("netbsd: %+v, %v", m, err)
	}
	fwd := tunnelPolicy()
	fwd.Dir = kernel.Fwd
	if m, err := freebsdLE.PolicyMessage(MsgSPDAdd, fwd, 1); m != nil || err != nil {
		t.Errorf("freebsd fwd policy: %+v, %v; want nothing", m, err)
	}
	if m, err := linuxLE.PolicyMessage(MsgSPDAdd, fwd, 1); err != nil || m.Policy.Dir != DirForward {
		t.Errorf("linux fwd policy: %+v, %v", m, err)
	}
}

// A Linux ACQUIRE as af_key's pfkey_send_acquire writes it: addresses with
// proto 0, the policy with its id, a proposal with one combination.
var linuxAcquire = cat(
	[]byte{
		0x02, 0x06, 0x00, 0x03, // version 2, SADB_ACQUIRE, errno 0, ESP
		0x14, 0x00, 0x00, 0x00, // len = 160/8
		0x05, 0x00, 0x00, 0x00, // seq = 5 (the acquire's)
		0x00, 0x00, 0x00, 0x00, // pid = 0: from the kernel
		0x03, 0x00, 0x05, 0x00, 0x00, 0x20, 0x00, 0x00, // ADDRESS_SRC, proto 0, /32
		0x02, 0x00, 0x00, 0x00, 192, 0, 2, 1,
	}, zero8,
	[]byte{
		0x03, 0x00, 0x06, 0x00, 0x00, 0x20, 0x00, 0x00, // ADDRESS_DST
		0x02, 0x00, 0x00, 0x00, 198, 51, 100, 2,
	}, zero8,
	[]byte{
		0x02, 0x00, 0x12, 0x00, // sadb_x_policy_len = 2, SADB_X_EXT_POLICY
		0x02, 0x00, 0x02, 0x00, // type IPSEC, dir OUTBOUND, reserved
		0x69, 0x00, 0x00, 0x00, // id = 0x69
		0x00, 0x01, 0x00, 0x00, // priority
		0x0a, 0x00, 0x0d, 0x00, // sadb_prop_len = 10 (8 + 72), SADB_EXT_PROPOSAL
		0x20, 0x00, 0x00, 0x00, // sadb_prop_replay = 32, reserved
		0x05,       // sadb_comb_auth = SHA2-256
		0x0c,       // sadb_comb_encrypt = AES-CBC
		0x00, 0x00, // flags
		0x00, 0x01, 0x00, 0x01, // auth min/max bits 256
		0x80, 0x00, 0x00, 0x01, // encrypt min 128, max 256
		0x00, 0x00, 0x00, 0x00, // reserved
		0x00, 0x00, 0x00, 0x00, // soft allocations
		0x00, 0x00, 0x00, 0x00, // hard allocations
		0, 0, 0, 0, 0, 0, 0, 0, // soft bytes
		0, 0, 0, 0, 0, 0, 0, 0, // hard bytes
		0x40, 0x19, 0x01, 0, 0, 0, 0, 0, // soft addtime 72000
		0x80, 0x51, 0x01, 0, 0, 0, 0, 0, // hard addtime 86400
		0x70, 0x62, 0, 0, 0, 0, 0, 0, // soft usetime 25200
		0x80, 0x70, 0, 0, 0, 0, 0, 0, // hard usetime 28800
	})

func TestDecodeAcquire(t *testing.T) {
	m, err := Decode(linuxLE, linuxAcquire)
	if err != nil {
		t.Fatal(err)
	}
	want := &Message{Version: 2, Type: MsgAcquire, SAType: SATypeESP, Seq: 5,
		Src:    &Address{PrefixLen: 32, Addr: hostA},
		Dst:    &Address{PrefixLen: 32, Addr: hostB},
		Policy: &Policy{Type: PolicyIPsec, Dir: DirOutbound, ID: 0x69, Priority: 0x100},
		Proposal: &Proposal{Replay: 32, Combs: []Comb{{Auth: 5, Encrypt: 12,
			AuthMinBits: 256, AuthMaxBits: 256, EncryptMinBits: 128, EncryptMaxBits: 256,
			SoftAddTime: 72000, HardAddTime: 86400, SoftUseTime: 25200, HardUseTime: 28800}}}}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got  %+v\nwant %+v", m, want)
	}
	// Encode writes the extensions in ascending order, PROPOSAL (13)
	// before X_POLICY (18), where af_key wrote the policy first.
	re := mustEncode(t, m, linuxLE)
	if len(re) != len(linuxAcquire) {
		t.Errorf("re-encoded %d bytes, want %d", len(re), len(linuxAcquire))
	}
	if d, err := Decode(linuxLE, re); err != nil || !reflect.DeepEqual(d, want) {
		t.Errorf("round trip: %+v, %v", d, err)
	}
}

// A FreeBSD soft EXPIRE as key_expire writes it.
var freebsdExpire = cat(
	[]byte{
		0x02, 0x08, 0x00, 0x03, // version 2, SADB_EXPIRE, errno 0, ESP
		0x14, 0x00, 0x00, 0x00, // len = 160/8
		0x00, 0x00, 0x00, 0x00, // seq 0
		0x00, 0x00, 0x00, 0x00, // pid 0
		0x02, 0x00, 0x01, 0x00, // SADB_EXT_SA
		0xc0, 0xff, 0xee, 0x02, // spi
		0x08, 0x02, 0x05, 0x0c, // replay 8 bytes, state DYING, auth SHA2-256, encrypt AES-CBC
		0x00, 0x00, 0x00, 0x00, // flags
		0x02, 0x00, 0x13, 0x00, // SADB_X_EXT_SA2
		0x02, 0x00, 0x00, 0x00, // tunnel
		0x00, 0x00, 0x00, 0x00, // sequence
		0x05, 0x20, 0x00, 0x00, // reqid 0x2005
		0x04, 0x00, 0x02, 0x00, // SADB_EXT_LIFETIME_CURRENT
		0x0a, 0x00, 0x00, 0x00, // allocations 10
		0x39, 0x30, 0, 0, 0, 0, 0, 0, // bytes 12345
		0x00, 0x5e, 0xd0, 0xb2, 0, 0, 0, 0, // addtime 3000000000
		0x0a, 0x5e, 0xd0, 0xb2, 0, 0, 0, 0, // usetime 3000000010
		0x04, 0x00, 0x04, 0x00, // SADB_EXT_LIFETIME_SOFT
		0x00, 0x00, 0x00, 0x00,
		0, 0, 0, 0, 0, 0, 0, 0,
		0xb8, 0x0b, 0, 0, 0, 0, 0, 0, // addtime 3000
		0, 0, 0, 0, 0, 0, 0, 0,
		0x03, 0x00, 0x05, 0x00, 0xff, 0x20, 0x00, 0x00, // ADDRESS_SRC
		0x10, 0x02, 0x00, 0x00, 198, 51, 100, 2,
	}, zero8,
	[]byte{
		0x03, 0x00, 0x06, 0x00, 0xff, 0x20, 0x00, 0x00, // ADDRESS_DST
		0x10, 0x02, 0x00, 0x00, 192, 0, 2, 1,
	}, zero8)

func TestDecodeExpire(t *testing.T) {
	m, err := Decode(freebsdLE, freebsdExpire)
	if err != nil {
		t.Fatal(err)
	}
	want := &Message{Version: 2, Type: MsgExpire, SAType: SATypeESP,
		SA:              &SA{SPI: 0xc0ffee02, Replay: 8, State: StateDying, Auth: 5, Encrypt: 12},
		SA2:             &SA2{Mode: ModeTunnel, ReqID: 0x2005},
		LifetimeCurrent: &Lifetime{Allocations: 10, Bytes: 12345, AddTime: 3000000000, UseTime: 3000000010},
		LifetimeSoft:    &Lifetime{AddTime: 3000},
		Src:             &Address{Proto: 255, PrefixLen: 32, Addr: hostB},
		Dst:             &Address{Proto: 255, PrefixLen: 32, Addr: hostA}}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got  %+v\nwant %+v", m, want)
	}
	// Re-encoded in ascending extension order: SA, LIFETIME_CURRENT,
	// LIFETIME_SOFT, addresses, SA2.
	re := mustEncode(t, m, freebsdLE)
	if d, err := Decode(freebsdLE, re); err != nil || !reflect.DeepEqual(d, want) {
		t.Errorf("round trip: %+v, %v", d, err)
	}
}

func TestIPv6AndBSDExtensions(t *testing.T) {
	a6 := netip.MustParseAddr("2001:db8::1")
	b6 := netip.MustParseAddr("2001:db8::2")
	m := &Message{Type: MsgUpdate, SAType: SATypeESP,
		SA: &SA{SPI: 1}, Src: saAddress(a6), Dst: saAddress(b6),
		NewSrc: saAddress(b6), NewDst: saAddress(a6),
		NATTOAR: saAddress(a6), NATTFrag: &NATTFrag{FragLen: 1200}, SAReplay: &SAReplay{Replay: 4096},
		Policy: &Policy{Type: PolicyIPsec, Dir: DirInbound, Requests: []Request{
			{Proto: 50, Mode: ModeTunnel, Level: LevelUnique, ReqID: 0x2002, Src: a6, Dst: b6},
			{Proto: 50, Mode: ModeTransport, Level: LevelRequire}}}}
	b := mustEncode(t, m, freebsdLE)
	// sockaddr_in6 on FreeBSD: sin6_len 28, AF_INET6 28.
	if i := bytes.Index(b, []byte{28, 28, 0, 0, 0, 0, 0, 0, 0x20, 0x01, 0x0d, 0xb8}); i < 0 {
		t.Errorf("no FreeBSD sockaddr_in6 in %x", b)
	}
	d, err := Decode(freebsdLE, b)
	if err != nil || !reflect.DeepEqual(d, withVersion(m)) {
		t.Fatalf("freebsd round trip: %+v, %v", d, err)
	}
	// Linux has none of these.
	if _, err := m.Encode(linuxLE); err == nil {
		t.Error("linux encoded NEW_ADDRESS_SRC")
	}
	m.NewSrc, m.NewDst, m.NATTOAR, m.NATTFrag, m.SAReplay = nil, nil, nil, nil, nil
	b = mustEncode(t, m, linuxLE)
	if i := bytes.Index(b, []byte{10, 0, 0, 0, 0, 0, 0, 0, 0x20, 0x01, 0x0d, 0xb8}); i < 0 {
		t.Errorf("no Linux sockaddr_in6 in %x", b)
	}
	if d, err := Decode(linuxLE, b); err != nil || !reflect.DeepEqual(d, withVersion(m)) {
		t.Fatalf("linux round trip: %+v, %v", d, err)
	}
	// A 16-bit BSD reqid cannot hold more.
	m.Policy.Requests[0].ReqID = 0x10000
	if _, err := m.Encode(freebsdLE); err == nil {
		t.Error("freebsd encoded a 17-bit reqid")
	}
}

func TestDecodeRejects(t *testing.T) {
	good := mustEncode(t, getSPIRequest(), linuxLE)
	for name, b := range map[string][]byte{
		"short":       good[:10],
		"truncated":   good[:len(good)-8],
		"version":     append([]byte{1}, good[1:]...),
		"zero ext":    cat(good[:16], []byte{0, 0, 5, 0}, good[20:]),
		"long ext":    cat(good[:16], []byte{0xff, 0, 5, 0}, good[20:]),
		"duplicate":   cat([]byte{2, 1, 0, 3, 14, 0, 0, 0}, good[8:], good[16+48:16+64]),
		"bad family":  cat(good[:24], []byte{7, 0}, good[26:]),
		"prefix > 32": cat(good[:21], []byte{33}, good[22:]),
	} {
		if _, err := Decode(linuxLE, b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func TestLifetimeAndReplay(t *testing.T) {
	sa := gcmSA()
	sa.Encr, sa.EncrKey = proposal.EncrAESCBC, make([]byte, 16)
	sa.Integ, sa.IntegKey = proposal.IntegHMACSHA2256128, make([]byte, 32)
	sa.ESN = false
	sa.ReplayWindow = 4096
	sa.Lifetime.Hard.Packets = 1 << 40
	m, err := freebsdLE.SAMessage(MsgAdd, sa, 7)
	if err != nil {
		t.Fatal(err)
	}
	if m.SA.Replay != 255 || m.SAReplay == nil || m.SAReplay.Replay != 4096 {
		t.Errorf("freebsd replay %d, SA_REPLAY %+v", m.SA.Replay, m.SAReplay)
	}
	if m.LifetimeHard.Allocations != 0xffffffff || m.AuthKey.Bits != 256 || m.SA.Auth != AAlgSHA2_256 || m.SA.Encrypt != EAlgAESCBC {
		t.Errorf("freebsd: %+v %+v %+v", m.SA, m.LifetimeHard, m.AuthKey)
	}
	m, err = netbsdLE.SAMessage(MsgAdd, sa, 7)
	if err != nil || m.SA.Replay != 255 || m.SAReplay != nil {
		t.Errorf("netbsd: %+v, %v", m, err)
	}
	sa.Integ, sa.IntegKey = proposal.IntegHMACSHA2512256, make([]byte, 64) // Linux: SHA2-256 has 96 bits there
	m, err = linuxLE.SAMessage(MsgAdd, sa, 7)
	if err != nil || m.SA.Replay != 32 || m.SAReplay != nil {
		t.Errorf("linux: %+v, %v", m, err)
	}
	sa.ESN = true
	for _, l := range []*Layout{linuxLE, netbsdLE} {
		if _, err := l.SAMessage(MsgAdd, sa, 7); err == nil {
			t.Errorf("%s took ESN", l.Name)
		}
	}
	sa.Encr, sa.EncrKey, sa.Integ = proposal.EncrChaCha20Poly1305, make([]byte, 36), proposal.IntegNone
	if m, err := freebsdLE.SAMessage(MsgAdd, sa, 7); err != nil || m.SA.Encrypt != 15 || m.EncryptKey.Bits != 288 {
		t.Errorf("freebsd chacha: %+v, %v", m, err)
	}
	if _, err := netbsdLE.SAMessage(MsgAdd, sa, 7); err == nil {
		t.Error("netbsd took ChaCha20-Poly1305")
	}
}
