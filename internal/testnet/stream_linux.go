package testnet

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// SeqStream sends numbered UDP datagrams at a steady rate from one
// namespace to an echo server in another, which notes each number it gets
// and sends the datagram back: the sender notes what returns. It tells
// loss on the way there from loss on the way back, and duplicates, with the
// time each missing datagram was sent (to line gaps up with rekeys).
type SeqStream struct {
	out, back   *seqLog
	send, echo  net.PacketConn
	dst         net.Addr
	interval    time.Duration
	size        int
	stop        chan struct{}
	stopOnce    sync.Once
	wg          sync.WaitGroup
	mu          sync.Mutex
	sentAt      []time.Time // by sequence number
	sendErrs    int
	lastSendErr error
}

type seqLog struct {
	mu   sync.Mutex
	seen map[uint32]int
	last time.Time
}

func (l *seqLog) note(seq uint32) {
	l.mu.Lock()
	l.seen[seq]++
	l.last = time.Now()
	l.mu.Unlock()
}

func (l *seqLog) count() (n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen)
}

// seqMagic marks the stream's datagrams.
const seqMagic = 0x5e9c0de5

// StartSeqStream starts the echo server on serverAddr (IP:port) inside to
// and the sender, bound to clientIP inside from, sending rate datagrams of
// size bytes (at least 8) per second until Stop. Both sockets are closed
// through t.Cleanup as well.
func StartSeqStream(t testing.TB, from *Namespace, clientIP string, to *Namespace, serverAddr string, rate, size int) *SeqStream {
	t.Helper()
	if size < 8 {
		size = 8
	}
	echo, err := to.ListenPacket("udp", serverAddr)
	if err != nil {
		t.Fatalf("testnet: UDP echo on %s in %s: %v", serverAddr, to.Name, err)
	}
	send, err := from.ListenPacket("udp", net.JoinHostPort(clientIP, "0"))
	if err != nil {
		echo.Close()
		t.Fatalf("testnet: UDP sender on %s in %s: %v", clientIP, from.Name, err)
	}
	s := &SeqStream{
		out: &seqLog{seen: map[uint32]int{}}, back: &seqLog{seen: map[uint32]int{}},
		send: send, echo: echo, dst: echo.LocalAddr(), interval: time.Second / time.Duration(rate), size: size,
		stop: make(chan struct{}),
	}
	t.Cleanup(func() {
		s.stopOnce.Do(func() { close(s.stop) })
		s.closeAll()
		s.wg.Wait()
	})
	s.wg.Add(3)
	go s.serve()
	go s.receive()
	go s.transmit()
	return s
}

func (s *SeqStream) serve() {
	defer s.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := s.echo.ReadFrom(buf)
		if err != nil {
			return
		}
		if n < 8 || binary.BigEndian.Uint32(buf) != seqMagic {
			continue
		}
		s.out.note(binary.BigEndian.Uint32(buf[4:]))
		s.echo.WriteTo(buf[:n], from)
	}
}

func (s *SeqStream) receive() {
	defer s.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, _, err := s.send.ReadFrom(buf)
		if err != nil {
			return
		}
		if n < 8 || binary.BigEndian.Uint32(buf) != seqMagic {
			continue
		}
		s.back.note(binary.BigEndian.Uint32(buf[4:]))
	}
}

func (s *SeqStream) transmit() {
	defer s.wg.Done()
	pkt := make([]byte, s.size)
	binary.BigEndian.PutUint32(pkt, seqMagic)
	start := time.Now()
	for seq := uint32(0); ; seq++ {
		// Keep to the schedule rather than to a ticker, so that a late
		// wake-up sends at once instead of dropping a beat.
		if d := time.Until(start.Add(time.Duration(seq) * s.interval)); d > 0 {
			select {
			case <-s.stop:
				return
			case <-time.After(d):
			}
		} else {
			select {
			case <-s.stop:
				return
			default:
			}
		}
		binary.BigEndian.PutUint32(pkt[4:], seq)
		s.mu.Lock()
		s.sentAt = append(s.sentAt, time.Now())
		s.mu.Unlock()
		if _, err := s.send.WriteTo(pkt, s.dst); err != nil {
			s.mu.Lock()
			s.sendErrs++
			s.lastSendErr = err
			s.mu.Unlock()
		}
	}
}

// Echoed is how many distinct datagrams came back so far.
func (s *SeqStream) Echoed() int { return s.back.count() }

// Sent is how many datagrams were sent so far.
func (s *SeqStream) Sent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sentAt)
}

// WaitEchoed waits at most timeout until more than n datagrams came back.
func (s *SeqStream) WaitEchoed(n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for s.Echoed() <= n {
		if time.Now().After(deadline) {
			return fmt.Errorf("the UDP stream: %d of %d datagrams came back, not more than %d, within %v", s.Echoed(), s.Sent(), n, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// SeqGap is a run of consecutive datagrams that did not arrive.
type SeqGap struct {
	First, N uint32
	SentAt   time.Time // when the first of them was sent
	Way      string    // "there" (lost before the echo) or "back"
}

func (g SeqGap) String() string {
	return fmt.Sprintf("%d datagrams lost %s from #%d (sent %s)", g.N, g.Way, g.First, g.SentAt.Format("15:04:05.000"))
}

// SeqResult is what Stop found.
type SeqResult struct {
	Sent                   int
	LostThere, LostBack    int // missing at the echo server; missing back at the sender though the server had them
	DupThere, DupBack      int // datagrams seen more than once
	Gaps                   []SeqGap
	SendErrors             int
	LastSendError          error
	Duration               time.Duration
	FirstSent, LastSent    time.Time
	ServerLast, ClientLast time.Time // when the last datagram arrived at each
}

// Lost is all the datagrams lost either way.
func (r SeqResult) Lost() int { return r.LostThere + r.LostBack }

func (r SeqResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d datagrams sent in %v: %d lost there, %d lost back, %d/%d duplicates, %d send errors",
		r.Sent, r.Duration.Round(time.Millisecond), r.LostThere, r.LostBack, r.DupThere, r.DupBack, r.SendErrors)
	if r.LastSendError != nil {
		fmt.Fprintf(&b, " (last: %v)", r.LastSendError)
	}
	for i, g := range r.Gaps {
		if i == 20 {
			fmt.Fprintf(&b, "\n  ... %d more gaps", len(r.Gaps)-20)
			break
		}
		b.WriteString("\n  " + g.String())
	}
	return b.String()
}

// Stop stops sending, waits drain for the last datagrams, closes the
// sockets and counts.
func (s *SeqStream) Stop(drain time.Duration) SeqResult {
	s.stopOnce.Do(func() { close(s.stop) })
	time.Sleep(drain)
	s.closeAll()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out.mu.Lock()
	defer s.out.mu.Unlock()
	s.back.mu.Lock()
	defer s.back.mu.Unlock()
	r := SeqResult{Sent: len(s.sentAt), SendErrors: s.sendErrs, LastSendError: s.lastSendErr,
		ServerLast: s.out.last, ClientLast: s.back.last}
	if r.Sent > 0 {
		r.FirstSent, r.LastSent = s.sentAt[0], s.sentAt[r.Sent-1]
		r.Duration = r.LastSent.Sub(r.FirstSent)
	}
	var cur *SeqGap
	for seq := 0; seq < r.Sent; seq++ {
		there, back := s.out.seen[uint32(seq)], s.back.seen[uint32(seq)]
		if there > 1 {
			r.DupThere += there - 1
		}
		if back > 1 {
			r.DupBack += back - 1
		}
		way := ""
		switch {
		case there == 0:
			r.LostThere++
			way = "there"
		case back == 0:
			r.LostBack++
			way = "back"
		}
		if way == "" {
			cur = nil
			continue
		}
		if cur != nil && cur.Way == way && cur.First+cur.N == uint32(seq) {
			cur.N++
			continue
		}
		r.Gaps = append(r.Gaps, SeqGap{First: uint32(seq), N: 1, SentAt: s.sentAt[seq], Way: way})
		cur = &r.Gaps[len(r.Gaps)-1]
	}
	return r
}

func (s *SeqStream) closeAll() {
	for _, c := range []net.PacketConn{s.send, s.echo} {
		c.Close()
	}
}
