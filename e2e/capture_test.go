//go:build linux

package e2e

// A packet capture on a veth with an AF_PACKET socket, classifying every
// frame: IKE, ESP in UDP and raw ESP (IP protocol 50; both by SPI), NAT-T
// keep-alives, neighbour discovery,
// and anything else ("clear" frames, which must not appear once a tunnel
// carries the traffic). Each frame is also searched for pieces of a known
// payload, so that clear text that leaks in any form (TCP, fragments, some
// other encapsulation) is seen.

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"goswan/internal/testnet"
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// The virtio-net header in front of each frame read from the capture
// socket (PACKET_VNET_HDR), and its UDP GSO types.
const (
	vnetHdrLen   = 10
	vnetGSOUDP   = 3 // VIRTIO_NET_HDR_GSO_UDP (UFO)
	vnetGSOUDPL4 = 5 // VIRTIO_NET_HDR_GSO_UDP_L4 (UDP_SEGMENT)
)

// needles finds pieces of a payload in frames: every 8-byte word of the
// payload at a multiple of needleStride is indexed, so any run of
// needleStride+8 payload bytes contains one.
type needles struct {
	payload []byte
	words   map[uint64]int // word -> offset in payload
}

const needleStride = 64

func newNeedles(payload []byte) *needles {
	n := &needles{payload: payload, words: make(map[uint64]int, len(payload)/needleStride+1)}
	for off := 0; off+8 <= len(payload); off += needleStride {
		n.words[binary.LittleEndian.Uint64(payload[off:])] = off
	}
	return n
}

// find returns the frame offset of a run of at least 24 payload bytes, or -1.
func (n *needles) find(frame []byte) int {
	for i := 0; i+24 <= len(frame); i++ {
		off, ok := n.words[binary.LittleEndian.Uint64(frame[i:])]
		if !ok || off+24 > len(n.payload) {
			continue
		}
		if string(frame[i:i+24]) == string(n.payload[off:off+24]) {
			return i
		}
	}
	return -1
}

// frameInfo is what the capture makes of one frame.
type frameInfo struct {
	kind     string // "ike", "esp", "rawesp", "keepalive", "arp", "nd", "clear"
	src, dst netip.AddrPort
	spi      uint32   // the first ESP packet's
	spis     []uint32 // every ESP packet's, when the frame is a UDP GSO batch of several
	outgoing bool
	desc     string
}

// parseFrame classifies an Ethernet frame. gsoSize is the segment size
// of a UDP GSO super-packet (from the virtio-net header the capture
// socket gets), 0 for a plain frame.
func parseFrame(f []byte, gsoSize int) frameInfo {
	if len(f) < 14 {
		return frameInfo{kind: "clear", desc: "runt frame"}
	}
	et := binary.BigEndian.Uint16(f[12:])
	p := f[14:]
	var src, dst netip.Addr
	var proto byte
	switch et {
	case 0x0806:
		return frameInfo{kind: "arp"}
	case 0x0800:
		if len(p) < 20 {
			return frameInfo{kind: "clear", desc: "short IPv4"}
		}
		ihl := int(p[0]&0x0f) * 4
		src, dst = netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20]))
		proto = p[9]
		if binary.BigEndian.Uint16(p[6:])&0x3fff != 0 {
			return frameInfo{kind: "clear", src: netip.AddrPortFrom(src, 0), dst: netip.AddrPortFrom(dst, 0), desc: fmt.Sprintf("IPv4 fragment proto %d %v->%v", proto, src, dst)}
		}
		if ihl < 20 || len(p) < ihl {
			return frameInfo{kind: "clear", desc: "bad IPv4 header"}
		}
		p = p[ihl:]
	case 0x86dd:
		if len(p) < 40 {
			return frameInfo{kind: "clear", desc: "short IPv6"}
		}
		src, dst = netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40]))
		proto = p[6]
		p = p[40:]
	default:
		return frameInfo{kind: "clear", desc: fmt.Sprintf("ethertype %#04x", et)}
	}
	fi := frameInfo{src: netip.AddrPortFrom(src, 0), dst: netip.AddrPortFrom(dst, 0)}
	if src.Is6() && (src.IsLinkLocalUnicast() || src.IsUnspecified()) && dst.IsLinkLocalMulticast() {
		// MLD reports, router and neighbour solicitations: the link's own
		// housekeeping.
		fi.kind = "nd"
		return fi
	}
	switch proto {
	case unix.IPPROTO_UDP:
		if len(p) < 8 {
			fi.kind, fi.desc = "clear", "short UDP"
			return fi
		}
		sp, dp := binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:])
		fi.src, fi.dst = netip.AddrPortFrom(src, sp), netip.AddrPortFrom(dst, dp)
		body := p[8:]
		switch {
		case sp == 500 || dp == 500:
			fi.kind = "ike"
		case sp == 4500 || dp == 4500:
			switch {
			case len(body) == 1 && body[0] == 0xff:
				fi.kind = "keepalive"
			case len(body) >= 4 && binary.BigEndian.Uint32(body) == 0:
				fi.kind = "ike" // non-ESP marker
			case len(body) >= 8:
				fi.kind, fi.spi = "esp", binary.BigEndian.Uint32(body)
				seg := len(body)
				if gsoSize > 0 {
					seg = gsoSize
				}
				for off := 0; off < len(body); off += seg {
					if len(body)-off < 8 {
						fi.kind, fi.desc = "clear", fmt.Sprintf("a %d-byte GSO segment on port 4500", len(body)-off)
						break
					}
					fi.spis = append(fi.spis, binary.BigEndian.Uint32(body[off:]))
				}
			default:
				fi.kind, fi.desc = "clear", fmt.Sprintf("%d-byte datagram on port 4500", len(body))
			}
		default:
			fi.kind, fi.desc = "clear", fmt.Sprintf("UDP %v->%v", fi.src, fi.dst)
		}
	case unix.IPPROTO_ESP:
		// Raw ESP (IP protocol 50), RFC 4303: SPI and sequence number at
		// least.
		if len(p) < 8 || binary.BigEndian.Uint32(p) == 0 {
			fi.kind, fi.desc = "clear", fmt.Sprintf("%d-byte IP protocol 50 packet %v->%v", len(p), src, dst)
			return fi
		}
		fi.kind, fi.spi = "rawesp", binary.BigEndian.Uint32(p)
		fi.spis = []uint32{fi.spi}
	case unix.IPPROTO_ICMPV6:
		if len(p) > 0 && p[0] >= 133 && p[0] <= 137 {
			fi.kind = "nd"
		} else {
			fi.kind, fi.desc = "clear", fmt.Sprintf("ICMPv6 type %d %v->%v", p[0], src, dst)
		}
	default:
		fi.kind, fi.desc = "clear", fmt.Sprintf("IP protocol %d %v->%v", proto, src, dst)
	}
	return fi
}

// capture reads every frame on one device in one namespace.
type capture struct {
	fd      int
	needles *needles
	done    chan struct{}
	stop    chan struct{}

	mu        sync.Mutex
	kinds     map[string]int
	espBySPI  map[uint32]int
	clear     []string // descriptions of the first clear frames
	leaks     []string // frames that hold payload bytes
	keepFirst func(fi frameInfo, frame []byte) bool
	kept      [][]byte
	err       error // why the reader stopped early
}

// startCapture opens an AF_PACKET socket on dev inside ns and reads until
// the test ends. Frames that carry pieces of payload are reported by
// leaks.
func startCapture(t testing.TB, ns *testnet.Namespace, dev string, payload []byte) *capture {
	t.Helper()
	c := &capture{needles: newNeedles(payload), done: make(chan struct{}), stop: make(chan struct{}), fd: -1}
	c.reset()
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %v", err)
		}
		c.fd = fd
		// Frames come with a virtio-net header, whose gso_size splits
		// the UDP GSO batches the daemons send into their datagrams.
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
			return fmt.Errorf("PACKET_VNET_HDR: %v", err)
		}
		// A big buffer so that a fast transfer loses no frame; losses are
		// reported by drops.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20); err != nil {
			return fmt.Errorf("SO_RCVBUFFORCE: %v", err)
		}
		tv := unix.NsecToTimeval(int64(50 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		t.Fatalf("capture on %s in %s: %v", dev, ns.Name, err)
	}
	go c.loop()
	t.Cleanup(c.close)
	return c
}

func (c *capture) loop() {
	defer close(c.done)
	buf := make([]byte, 256<<10)
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			if err == unix.EAGAIN || err == unix.EINTR {
				continue
			}
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		if n < vnetHdrLen {
			continue
		}
		// struct virtio_net_hdr: flags, gso_type, hdr_len, gso_size,
		// csum_start, csum_offset (little-endian on this host).
		gsoType, gsoSize := buf[1]&^0x80, int(binary.LittleEndian.Uint16(buf[4:]))
		if gsoType != vnetGSOUDPL4 && gsoType != vnetGSOUDP {
			gsoSize = 0
		}
		frame := buf[vnetHdrLen:n]
		n -= vnetHdrLen
		fi := parseFrame(frame, gsoSize)
		if ll, ok := from.(*unix.SockaddrLinklayer); ok {
			fi.outgoing = ll.Pkttype == unix.PACKET_OUTGOING
		}
		leak := c.needles.find(frame)
		c.mu.Lock()
		c.kinds[fi.kind]++
		for _, spi := range fi.spis {
			c.espBySPI[spi]++
		}
		if fi.kind == "clear" && len(c.clear) < 20 {
			dir := "in"
			if fi.outgoing {
				dir = "out"
			}
			c.clear = append(c.clear, fmt.Sprintf("%s %d bytes: %s", dir, n, fi.desc))
		}
		if leak >= 0 && len(c.leaks) < 10 {
			c.leaks = append(c.leaks, fmt.Sprintf("%s frame of %d bytes (%s %v->%v) holds payload bytes at offset %d", fi.kind, n, fi.desc, fi.src, fi.dst, leak))
		}
		if c.keepFirst != nil && c.keepFirst(fi, frame) {
			c.kept = append(c.kept, append([]byte(nil), frame...))
		}
		c.mu.Unlock()
	}
}

func (c *capture) close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
	unix.Close(c.fd)
}

// reset forgets what was seen so far.
func (c *capture) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kinds, c.espBySPI, c.clear, c.leaks, c.kept = map[string]int{}, map[uint32]int{}, nil, nil, nil
}

// settle waits until no frame arrived for quiet (or max passed), so that
// the counts include everything sent so far.
func (c *capture) settle(quiet, max time.Duration) {
	deadline := time.Now().Add(max)
	last := -1
	for time.Now().Before(deadline) {
		c.mu.Lock()
		n := 0
		for _, v := range c.kinds {
			n += v
		}
		c.mu.Unlock()
		if n == last {
			return
		}
		last = n
		time.Sleep(quiet)
	}
}

// drops returns how many frames the socket lost since the last call
// (PACKET_STATISTICS).
func (c *capture) drops() uint32 {
	st, err := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return ^uint32(0)
	}
	return st.Drops
}

// summary describes the counts for messages.
func (c *capture) summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var keys []string
	for k := range c.kinds {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, c.kinds[k])
	}
	var spis []string
	for s, n := range c.espBySPI {
		spis = append(spis, fmt.Sprintf("%08x:%d", s, n))
	}
	sort.Strings(spis)
	fmt.Fprintf(&b, "esp by SPI [%s]", strings.Join(spis, " "))
	if c.err != nil {
		fmt.Fprintf(&b, "; THE CAPTURE STOPPED: %v", c.err)
	}
	return b.String()
}

func (c *capture) counts() (kinds map[string]int, bySPI map[uint32]int, clear, leaks []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	kinds, bySPI = map[string]int{}, map[uint32]int{}
	for k, v := range c.kinds {
		kinds[k] = v
	}
	for k, v := range c.espBySPI {
		bySPI[k] = v
	}
	return kinds, bySPI, append([]string(nil), c.clear...), append([]string(nil), c.leaks...)
}

// keep makes the capture copy the frames for which sel returns true (nil:
// none), until the next call.
func (c *capture) keep(sel func(fi frameInfo, frame []byte) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keepFirst, c.kept = sel, nil
}

func (c *capture) keptFrames() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.kept...)
}

// checkPositive proves that the capture sees clear text: a datagram that
// holds payload bytes, sent outside any tunnel from ns to port 9 of dst in
// peer (where a socket takes it, so no ICMP error follows), must show up
// as a leak. Then the capture forgets it.
func (c *capture) checkPositive(t testing.TB, ns, peer *testnet.Namespace, dst string, payload []byte) {
	t.Helper()
	sink, err := peer.ListenPacket("udp", ":9")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	pc, err := ns.ListenPacket("udp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ua := net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(dst), 9))
	if _, err := pc.WriteTo(payload[:512], ua); err != nil {
		t.Fatalf("positive control: sending clear text to %s: %v", dst, err)
	}
	sink.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, _, err := sink.ReadFrom(make([]byte, 1024)); err != nil {
		t.Fatalf("positive control: the clear-text datagram did not arrive: %v", err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, _, clear, leaks := c.counts()
		if len(leaks) > 0 && len(clear) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("positive control: the capture did not see the clear-text datagram to %s (%s)", dst, c.summary())
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.reset()
}

// inject sends frame, unchanged, out of dev inside ns with an AF_PACKET
// socket: to the other end of a veth it looks as if the peer had sent it.
func inject(ns *testnet.Namespace, dev string, frame []byte) error {
	return ns.Do(func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6, Protocol: htons(binary.BigEndian.Uint16(frame[12:]))}
		copy(sa.Addr[:], frame[0:6])
		return unix.Sendto(fd, frame, 0, sa)
	})
}

// fixUDPChecksum recomputes the UDP checksum of an Ethernet frame that
// holds IPv4 or IPv6 and UDP without extension headers (a captured frame
// may carry a partial checksum that the sending device was to finish).
func fixUDPChecksum(frame []byte) {
	p := frame[14:]
	var pseudo []byte
	var udp []byte
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800:
		ihl := int(p[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(p[2:]))
		udp = p[ihl:total]
		pseudo = append(append([]byte{}, p[12:20]...), 0, unix.IPPROTO_UDP, byte(len(udp)>>8), byte(len(udp)))
		// The IPv4 header checksum too.
		p[10], p[11] = 0, 0
		binary.BigEndian.PutUint16(p[10:], checksum(p[:ihl], 0))
	case 0x86dd:
		plen := int(binary.BigEndian.Uint16(p[4:]))
		udp = p[40 : 40+plen]
		pseudo = append(append([]byte{}, p[8:40]...), 0, 0, byte(len(udp)>>8), byte(len(udp)), 0, 0, 0, unix.IPPROTO_UDP)
	}
	udp[6], udp[7] = 0, 0
	sum := checksum(udp, sumWords(pseudo))
	if sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(udp[6:], sum)
}

func sumWords(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func checksum(b []byte, initial uint32) uint16 {
	s := initial + sumWords(b)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
