//go:build !linux

package socket

import "net/netip"

func (s *Sockets) startReader(so *sock) {
	s.wg.Add(1)
	go s.read(so)
}

func (so *sock) sendBatch(src netip.Addr, dst netip.AddrPort, pkts [][]byte) (int, error) {
	return so.sendEach(src, dst, pkts)
}
