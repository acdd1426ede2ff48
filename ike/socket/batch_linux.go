//go:build linux

package socket

// Batched I/O on the NAT-T sockets (Linux): ESP in UDP is the data plane's
// traffic, so those sockets read with recvmmsg and UDP GRO (the kernel
// hands over runs of same-sized datagrams of one flow coalesced into one
// buffer, with the segment size in a UDP_GRO control message; we split
// them again) and send batches with sendmsg and UDP GSO (UDP_SEGMENT: one
// call hands the kernel up to 64 datagrams of one size, the last one
// maybe shorter). The IKE port keeps the simple per-datagram reader.
//
// Each NAT-T socket's reader goroutine owns its batchReader (buffers,
// headers, control buffers: allocated once). Senders take a batchSender
// from a pool, so SendESPBatch may be called from several goroutines and
// allocates nothing per call once warm.

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	readBatch   = 16    // datagrams (GRO: coalesced runs) per recvmmsg
	gsoMaxSegs  = 64    // UDP_MAX_SEGMENTS of older kernels
	gsoMaxBytes = 65000 // below the 65507-octet UDP payload limit of IPv4
	oobLen      = 128
)

type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// startReader starts the goroutine that reads so.
func (s *Sockets) startReader(so *sock) {
	s.wg.Add(1)
	if !so.natt {
		go s.read(so)
		return
	}
	rc, err := so.conn.SyscallConn()
	if err != nil {
		go s.read(so)
		return
	}
	// UDP GRO: best effort (kernels before 5.0 do not have it; then
	// every datagram comes alone and there is nothing to split).
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1)
	})
	so.rc = rc
	r := newBatchReader(s, so, rc)
	go r.loop()
}

type batchReader struct {
	s     *Sockets
	so    *sock
	rc    syscall.RawConn
	msgs  [readBatch]mmsghdr
	iovs  [readBatch]unix.Iovec
	names [readBatch]unix.RawSockaddrInet6
	bufs  [readBatch][]byte
	oob   [readBatch][oobLen]byte
	n     int
	err   error
	fn    func(fd uintptr) bool

	pend         [][]byte // ESP packets of one (local, remote) waiting for OnESPBatch
	pendL, pendR netip.AddrPort
}

func newBatchReader(s *Sockets, so *sock, rc syscall.RawConn) *batchReader {
	r := &batchReader{s: s, so: so, rc: rc, pend: make([][]byte, 0, 64)}
	for i := range r.msgs {
		r.bufs[i] = make([]byte, MaxDatagram)
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(MaxDatagram)
		h := &r.msgs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
		h.Control = &r.oob[i][0]
	}
	r.fn = r.recv
	return r
}

func (r *batchReader) recv(fd uintptr) bool {
	for i := range r.msgs {
		h := &r.msgs[i].hdr
		h.Namelen = unix.SizeofSockaddrInet6
		h.SetControllen(oobLen)
		h.Flags = 0
		r.msgs[i].n = 0
	}
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.msgs[0])), readBatch, 0, 0, 0)
	if e == unix.EAGAIN || e == unix.EWOULDBLOCK {
		return false
	}
	if e == unix.EINTR {
		return false
	}
	r.n, r.err = int(n), nil
	if e != 0 {
		r.n, r.err = 0, e
	}
	return true
}

func (r *batchReader) loop() {
	defer r.s.wg.Done()
	for {
		if err := r.rc.Read(r.fn); err != nil {
			if errors.Is(err, net.ErrClosed) || errors.Is(err, unix.EBADF) {
				return
			}
			r.s.cfg.Logf("IKE socket %s: %v", r.so.local, err)
			continue
		}
		if r.err != nil {
			r.s.cfg.Logf("IKE socket %s: %v", r.so.local, r.err)
			continue
		}
		for i := 0; i < r.n; i++ {
			r.message(i)
		}
		r.flush()
	}
}

// message hands over message i of the last recvmmsg, split into its GRO
// segments.
func (r *batchReader) message(i int) {
	m := &r.msgs[i]
	remote, ok := sockaddrAddrPort(&r.names[i], m.hdr.Namelen)
	if !ok {
		return
	}
	local, seg := r.so.local, 0
	oob := r.oob[i][:m.hdr.Controllen]
	for len(oob) >= unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			break
		}
		oob = rest
		switch {
		case h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && len(data) >= 2:
			seg = int(*(*uint16)(unsafe.Pointer(&data[0])))
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo && r.so.wildcard:
			pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
			local = netip.AddrPortFrom(netip.AddrFrom4(pi.Addr), local.Port())
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo && r.so.wildcard:
			pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0]))
			local = netip.AddrPortFrom(netip.AddrFrom16(pi.Addr).Unmap(), local.Port())
		}
	}
	b := r.bufs[i][:m.n]
	if seg <= 0 || seg >= len(b) {
		r.datagram(local, remote, b)
		return
	}
	for len(b) > 0 {
		n := min(seg, len(b))
		r.datagram(local, remote, b[:n])
		b = b[n:]
	}
}

func (r *batchReader) datagram(local, remote netip.AddrPort, pkt []byte) {
	s := r.s
	n := len(pkt)
	switch {
	case n == 1 && pkt[0] == 0xff:
		s.keepalives.Add(1)
	case n < 4:
		s.short.Add(1)
	case pkt[0] == 0 && pkt[1] == 0 && pkt[2] == 0 && pkt[3] == 0:
		s.ikeIn.Add(1)
		s.cfg.OnIKE(local, remote, pkt[4:])
	case s.cfg.OnESPBatch != nil:
		if len(r.pend) > 0 && (local != r.pendL || remote != r.pendR || len(r.pend) == cap(r.pend)) {
			r.flush()
		}
		r.pendL, r.pendR = local, remote
		r.pend = append(r.pend, pkt)
	case s.cfg.OnESP == nil:
		s.noESP.Add(1)
	default:
		s.espIn.Add(1)
		s.cfg.OnESP(local, remote, pkt)
	}
}

func (r *batchReader) flush() {
	if len(r.pend) == 0 {
		return
	}
	r.s.espIn.Add(uint64(len(r.pend)))
	r.s.cfg.OnESPBatch(r.pendL, r.pendR, r.pend)
	clear(r.pend)
	r.pend = r.pend[:0]
}

func sockaddrAddrPort(sa *unix.RawSockaddrInet6, n uint32) (netip.AddrPort, bool) {
	switch sa.Family {
	case unix.AF_INET:
		if n < unix.SizeofSockaddrInet4 {
			return netip.AddrPort{}, false
		}
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&s4.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), binary.BigEndian.Uint16(p[:])), true
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), binary.BigEndian.Uint16(p[:])), true
	}
	return netip.AddrPort{}, false
}

// batchSender is one sender's state; see sendBatch.
type batchSender struct {
	hdr  unix.Msghdr
	iovs [gsoMaxSegs]unix.Iovec
	name unix.RawSockaddrInet6
	oob  [64]byte
	err  error
	fn   func(fd uintptr) bool
}

var senders = sync.Pool{New: func() any {
	bs := new(batchSender)
	bs.fn = bs.send
	return bs
}}

func (bs *batchSender) send(fd uintptr) bool {
	_, _, e := unix.Syscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&bs.hdr)), 0)
	if e == unix.EAGAIN || e == unix.EWOULDBLOCK {
		return false
	}
	bs.err = nil
	if e != 0 {
		bs.err = e
	}
	return true
}

// sendBatch sends pkts, in order, from src to dst: runs of same-sized
// packets (the last one of a run may be shorter) go out in one sendmsg
// with UDP GSO.
func (so *sock) sendBatch(src netip.Addr, dst netip.AddrPort, pkts [][]byte) (sent int, err error) {
	rc := so.rc
	if rc == nil {
		return so.sendEach(src, dst, pkts)
	}
	bs := senders.Get().(*batchSender)
	defer senders.Put(bs)
	bs.hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&bs.name)), Iov: &bs.iovs[0]}
	if dst.Addr().Is4() && so.pc4 != nil {
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&bs.name))
		*s4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: dst.Addr().As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&s4.Port))[:], dst.Port())
		bs.hdr.Namelen = unix.SizeofSockaddrInet4
	} else {
		bs.name = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: dst.Addr().As16()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&bs.name.Port))[:], dst.Port())
		bs.hdr.Namelen = unix.SizeofSockaddrInet6
	}
	// Control: the source address on a wildcard socket, then UDP_SEGMENT.
	oob := bs.oob[:0]
	if so.wildcard && src.IsValid() && !src.IsUnspecified() {
		if so.pc4 != nil {
			h := (*unix.Cmsghdr)(unsafe.Pointer(&bs.oob[0]))
			h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
			h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
			pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&bs.oob[unix.CmsgLen(0)]))
			*pi = unix.Inet4Pktinfo{Spec_dst: src.Unmap().As4()}
			oob = bs.oob[:unix.CmsgSpace(unix.SizeofInet4Pktinfo)]
		} else {
			h := (*unix.Cmsghdr)(unsafe.Pointer(&bs.oob[0]))
			h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
			h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
			pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&bs.oob[unix.CmsgLen(0)]))
			*pi = unix.Inet6Pktinfo{Addr: src.As16()}
			oob = bs.oob[:unix.CmsgSpace(unix.SizeofInet6Pktinfo)]
		}
	}
	segAt := len(oob)
	for i := 0; i < len(pkts); {
		seg := len(pkts[i])
		j, total := i, 0
		maxSegs := gsoMaxSegs
		if so.noGSO.Load() {
			maxSegs = 1
		}
		for j < len(pkts) && j-i < maxSegs && len(pkts[j]) <= seg && total+len(pkts[j]) <= gsoMaxBytes {
			total += len(pkts[j])
			j++
			if len(pkts[j-1]) < seg {
				break // a shorter one ends the run
			}
		}
		if seg == 0 {
			i = j // an empty datagram: nothing to send
			continue
		}
		for k := i; k < j; k++ {
			bs.iovs[k-i].Base = &pkts[k][0]
			bs.iovs[k-i].SetLen(len(pkts[k]))
		}
		bs.hdr.SetIovlen(j - i)
		oobLen := segAt
		if j-i > 1 {
			o := bs.oob[segAt : segAt+unix.CmsgSpace(2)]
			h := (*unix.Cmsghdr)(unsafe.Pointer(&o[0]))
			h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
			h.SetLen(unix.CmsgLen(2))
			*(*uint16)(unsafe.Pointer(&o[unix.CmsgLen(0)])) = uint16(seg)
			oobLen += len(o)
		}
		bs.hdr.Control, bs.hdr.Controllen = nil, 0
		if oobLen > 0 {
			bs.hdr.Control = &bs.oob[0]
			bs.hdr.SetControllen(oobLen)
		}
		if err := rc.Write(bs.fn); err != nil {
			return i, err
		}
		for k := range bs.iovs[:j-i] {
			bs.iovs[k].Base = nil
		}
		if bs.err != nil {
			if j-i > 1 && (bs.err == unix.EIO || bs.err == unix.EINVAL || bs.err == unix.ENOPROTOOPT) {
				// No GSO on this path (a device without checksum
				// offload answers EIO): go on without it.
				so.noGSO.Store(true)
				if _, err := so.sendEach(src, dst, pkts[i:]); err != nil {
					return i, err
				}
				return len(pkts), nil
			}
			return i, bs.err
		}
		i = j
	}
	return len(pkts), nil
}
