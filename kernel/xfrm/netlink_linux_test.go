package xfrm

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"goswan/kernel"
	"goswan/proposal"
)

func TestNetlinkErrorMessage(t *testing.T) {
	needLittleEndian(t)
	// struct nlmsgerr: error -38 (ENOSYS), the request's header (capped),
	// then NLMSGERR_ATTR_MSG.
	b := []byte{0xda, 0xff, 0xff, 0xff}
	b = append(b, make([]byte, 16)...)
	b = appendAttr(b, 1, []byte("Requested AEAD algorithm not found\x00"))
	err := parseNlmsgerr(b, 0x100|0x200)
	var ne *NetlinkError
	if !errors.As(err, &ne) || ne.Errno != unix.ENOSYS || ne.Msg != "Requested AEAD algorithm not found" {
		t.Fatalf("parsed %#v", err)
	}
	if !noESP(ne) {
		t.Error("not recognised as a kernel without ESP")
	}
	if !strings.Contains(err.Error(), "ENOSYS") || !errors.Is(err, unix.ENOSYS) {
		t.Errorf("error %q", err)
	}
	if parseNlmsgerr([]byte{0, 0, 0, 0}, 0) != nil {
		t.Error("ACK taken for an error")
	}
	sa := &kernel.SA{SPI: 0x100, Proto: kernel.ESP, Dst: addr("192.0.2.1"), Encr: proposal.EncrChaCha20Poly1305, EncrKey: make([]byte, 36)}
	full := stateError("add", sa.ID(), sa, err)
	var ue *kernel.UnavailableError
	if !errors.As(full, &ue) || !errors.Is(full, unix.ENOSYS) {
		t.Errorf("%v: does not unwrap to both the UnavailableError and ENOSYS", full)
	}
	for _, w := range []string{"lacks ESP support", "rfc7539esp(chacha20,poly1305)", "--use-userspace or --use-netstack", "Requested AEAD algorithm not found"} {
		if !strings.Contains(full.Error(), w) {
			t.Errorf("%q lacks %q", full, w)
		}
	}
	other := stateError("add", sa.ID(), sa, &NetlinkError{Errno: unix.EEXIST})
	if errors.As(other, &ue) {
		t.Errorf("EEXIST taken for a kernel without ESP: %v", other)
	}
}

// TestLayoutsAgainstVishvananda reads what we encode with
// vishvananda/netlink's structs, which mirror the C layout in Go memory,
// as a second opinion on every offset.
func TestLayoutsAgainstVishvananda(t *testing.T) {
	sa := kernel.SA{SPI: 0xa1b2c3d4, Proto: kernel.ESP, Mode: kernel.Transport, Dir: kernel.Out,
		Src: addr("2001:db8::1"), Dst: addr("2001:db8::2"), Encr: proposal.EncrAESCBC, EncrKey: make([]byte, 16),
		Integ: proposal.IntegHMACSHA196, IntegKey: make([]byte, 20), ReplayWindow: 17, ReqID: ourReqID(0x1234),
		Lifetime:  kernel.Lifetime{Soft: kernel.Limits{Bytes: 1, Packets: 2, Time: 3 * time.Second}, Hard: kernel.Limits{Bytes: 4, Packets: 5, Time: 6 * time.Second}},
		Selectors: []kernel.Selector{{Proto: 17, SrcPorts: kernel.PortRange{Lo: 500, Hi: 500}, DstPorts: kernel.PortRange{Lo: 4500, Hi: 4500}}}}
	b, err := encodeState(&sa, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := nl.DeserializeXfrmUsersaInfo(b)
	if nl.Swap32(v.Id.Spi) != sa.SPI || v.Id.Proto != 50 || v.Id.Daddr.ToIP().String() != "2001:db8::2" || v.Saddr.ToIP().String() != "2001:db8::1" ||
		v.Reqid != sa.ReqID || v.Family != afInet6 || v.Mode != modeTransport || v.ReplayWindow != 17 || v.Flags != 0 {
		t.Errorf("usersa_info as vishvananda reads it: %+v", v)
	}
	if v.Lft.SoftByteLimit != 1 || v.Lft.SoftPacketLimit != 2 || v.Lft.SoftAddExpiresSeconds != 3 ||
		v.Lft.HardByteLimit != 4 || v.Lft.HardPacketLimit != 5 || v.Lft.HardAddExpiresSeconds != 6 {
		t.Errorf("lifetime as vishvananda reads it: %+v", v.Lft)
	}
	if s := v.Sel; s.Family != afInet6 || s.PrefixlenD != 128 || s.PrefixlenS != 128 || s.Proto != 17 ||
		nl.Swap16(s.Sport) != 500 || nl.Swap16(s.Dport) != 4500 || s.SportMask != 0xffff || s.DportMask != 0xffff {
		t.Errorf("selector as vishvananda reads it: %+v", s)
	}
	auth := nl.DeserializeXfrmAlgoAuth(findAttr(t, b[sizeofUsersaInfo:], attrAlgAuthTrunc))
	if nl.BytesToString(auth.AlgName[:]) != "hmac(sha1)" || auth.AlgKeyLen != 160 || auth.AlgTruncLen != 96 {
		t.Errorf("auth as vishvananda reads it: %+v", auth)
	}

	p := kernel.Policy{Dir: kernel.In, Selector: kernel.Selector{Src: pfx("10.2.0.0/16"), Dst: pfx("10.1.0.0/16")}, Action: kernel.Protect,
		Priority: 4242, Template: kernel.Template{Src: addr("192.0.2.2"), Dst: addr("192.0.2.1"), Proto: kernel.ESP, Mode: kernel.Tunnel, ReqID: ourReqID(9)}}
	b, err = encodePolicy(&p)
	if err != nil {
		t.Fatal(err)
	}
	pi := nl.DeserializeXfrmUserpolicyInfo(b)
	if pi.Priority != 4242 || pi.Dir != 0 || pi.Action != 0 || pi.Sel.Family != afInet || pi.Sel.PrefixlenD != 16 ||
		pi.Sel.Daddr.ToIP().String() != "10.1.0.0" || pi.Lft.SoftByteLimit != ownerTag || pi.Lft.HardByteLimit != ^uint64(0) {
		t.Errorf("userpolicy_info as vishvananda reads it: %+v", pi)
	}
	tm := nl.DeserializeXfrmUserTmpl(findAttr(t, b[sizeofPolicyInfo:], attrTmpl))
	if tm.Reqid != ourReqID(9) || tm.Mode != modeTunnel || tm.Family != afInet || tm.XfrmId.Proto != 50 ||
		tm.Saddr.ToIP().String() != "192.0.2.2" || tm.XfrmId.Daddr.ToIP().String() != "192.0.2.1" || tm.Aalgos != ^uint32(0) {
		t.Errorf("user_tmpl as vishvananda reads it: %+v", tm)
	}
}
