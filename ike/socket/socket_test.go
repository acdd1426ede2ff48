package socket

import (
	"bytes"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

type got struct {
	local, remote netip.AddrPort
	data          []byte
	esp           bool
}

func recvOne(t *testing.T, ch chan got) got {
	t.Helper()
	select {
	case g := <-ch:
		return g
	case <-time.After(5 * time.Second):
		t.Fatal("nothing received in 5s")
	}
	return got{}
}

func freePorts(t *testing.T) (int, int) {
	t.Helper()
	a, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	b, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	pa, pb := a.LocalAddr().(*net.UDPAddr).Port, b.LocalAddr().(*net.UDPAddr).Port
	a.Close()
	b.Close()
	return pa, pb
}

func TestFramingAndDispatch(t *testing.T) {
	ike, natt := freePorts(t)
	ch := make(chan got, 16)
	s, err := Open(Config{
		Listen: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, IKEPort: ike, NATIKEPort: natt,
		OnIKE: func(l, r netip.AddrPort, m []byte) { ch <- got{l, r, bytes.Clone(m), false} },
		OnESP: func(l, r netip.AddrPort, m []byte) { ch <- got{l, r, bytes.Clone(m), true} },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	peerAP := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	to := func(port int) *net.UDPAddr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port} }

	peer.WriteToUDP([]byte("ike on 500"), to(ike))
	if g := recvOne(t, ch); g.esp || string(g.data) != "ike on 500" || g.remote != peerAP || g.local.Port() != uint16(ike) {
		t.Errorf("IKE port: %+v", g)
	}
	peer.WriteToUDP([]byte{0xff}, to(natt))                         // keep-alive: dropped
	peer.WriteToUDP([]byte{0, 0}, to(natt))                         // too short: dropped
	peer.WriteToUDP(append([]byte{0, 0, 0, 0}, "ike"...), to(natt)) // non-ESP marker
	if g := recvOne(t, ch); g.esp || string(g.data) != "ike" {
		t.Errorf("NAT-T IKE: %+v", g)
	}
	peer.WriteToUDP([]byte{0x12, 0x34, 0x56, 0x78, 0, 0, 0, 1}, to(natt))
	if g := recvOne(t, ch); !g.esp || len(g.data) != 8 || g.data[0] != 0x12 {
		t.Errorf("ESP in UDP: %+v", g)
	}
	c := s.Counters()
	if c.Keepalives != 1 || c.Short != 1 || c.IKEIn != 2 || c.ESPIn != 1 {
		t.Errorf("counters %+v", c)
	}

	// Sending from the NAT-T port adds the marker; from the IKE port not.
	buf := make([]byte, 100)
	s.Send(netip.MustParseAddrPort("127.0.0.1:"+itoa(natt)), peerAP, []byte("reply"))
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := peer.ReadFromUDP(buf)
	if err != nil || !bytes.Equal(buf[:n], append([]byte{0, 0, 0, 0}, "reply"...)) || from.Port != natt {
		t.Errorf("NAT-T send: %q from %v, %v", buf[:n], from, err)
	}
	s.Send(netip.MustParseAddrPort("127.0.0.1:"+itoa(ike)), peerAP, []byte("reply"))
	n, from, err = peer.ReadFromUDP(buf)
	if err != nil || string(buf[:n]) != "reply" || from.Port != ike {
		t.Errorf("IKE send: %q from %v, %v", buf[:n], from, err)
	}
	if err := s.Send(netip.MustParseAddrPort("127.0.0.1:1"), peerAP, []byte("x")); err == nil {
		t.Errorf("send from an unbound port succeeded")
	}
}

// TestWildcardLearnsLocalAddress sends to 127.0.0.2 on a wildcard socket:
// the IKE code must see 127.0.0.2 as the local address, and a reply from it
// must leave from 127.0.0.2.
func TestWildcardLearnsLocalAddress(t *testing.T) {
	ike, natt := freePorts(t)
	ch := make(chan got, 16)
	s, err := Open(Config{IKEPort: ike, NATIKEPort: natt,
		OnIKE: func(l, r netip.AddrPort, m []byte) { ch <- got{l, r, bytes.Clone(m), false} }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	peer, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer peer.Close()
	peer.WriteToUDP([]byte("hello"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: ike})
	g := recvOne(t, ch)
	if g.local != netip.MustParseAddrPort("127.0.0.2:"+itoa(ike)) {
		t.Fatalf("local address %v; want 127.0.0.2:%d", g.local, ike)
	}
	if err := s.Send(g.local, g.remote, []byte("back")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := peer.ReadFromUDP(buf)
	if err != nil || string(buf[:n]) != "back" || !from.IP.Equal(net.IPv4(127, 0, 0, 2)) {
		t.Errorf("reply %q from %v (%v); want it from 127.0.0.2", buf[:n], from, err)
	}
}

func TestBindConflict(t *testing.T) {
	ike, natt := freePorts(t)
	s, err := Open(Config{Listen: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, IKEPort: ike, NATIKEPort: natt, OnIKE: func(netip.AddrPort, netip.AddrPort, []byte) {}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Open(Config{Listen: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, IKEPort: ike, NATIKEPort: natt + 1, OnIKE: func(netip.AddrPort, netip.AddrPort, []byte) {}}); err == nil {
		t.Errorf("a second daemon bound the same IKE port")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestSendKeepalive(t *testing.T) {
	ike, natt := freePorts(t)
	s, err := Open(Config{Listen: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, IKEPort: ike, NATIKEPort: natt,
		OnIKE: func(netip.AddrPort, netip.AddrPort, []byte) {}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	peer, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer peer.Close()
	if err := s.SendKeepalive(netip.MustParseAddrPort("127.0.0.1:"+itoa(natt)), peer.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := peer.ReadFromUDP(buf)
	if err != nil || n != 1 || buf[0] != 0xff || from.Port != natt {
		t.Errorf("keep-alive %x from %v (%v); want ff from port %d", buf[:n], from, err, natt)
	}
	if err := s.SendKeepalive(netip.MustParseAddrPort("127.0.0.1:"+itoa(ike)), peer.LocalAddr().(*net.UDPAddr).AddrPort()); err == nil {
		t.Errorf("a keep-alive from the IKE port was sent")
	}
}
