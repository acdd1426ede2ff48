// Package loadgen is tunbench's own traffic generator: no iperf3 needed.
//
// A Server listens on four ports: a TCP control port (JSON lines: "reset",
// "count"), a TCP sink that counts what it reads, a UDP sink that counts
// datagrams, and a UDP echo. A client test (TCP, UDP, Ping) talks to it
// through the tunnel, the control connection included, and returns a Result
// in which what the client sent and what the server received can be
// compared: nothing the tunnel lost goes unnoticed.
//
// tunbench runs both ends as its own hidden subcommand ("tunbench __gen
// serve|client ...") under `ip netns exec`, so each end runs in its
// namespace; Serve and RunClient are what that subcommand calls.
package loadgen

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Addrs are the four ports, as host:port.
type Addrs struct {
	Ctl, TCP, UDP, Echo string
}

// Counts is what the server has received since the last reset.
type Counts struct {
	TCPBytes  uint64 `json:"tcp_bytes"`
	TCPConns  uint64 `json:"tcp_conns"`
	UDPPkts   uint64 `json:"udp_pkts"`
	UDPBytes  uint64 `json:"udp_bytes"`
	EchoPkts  uint64 `json:"echo_pkts"`
	EchoBytes uint64 `json:"echo_bytes"`
}

// Server is the receiving end.
type Server struct {
	tcpBytes, tcpConns, udpPkts, udpBytes, echoPkts, echoBytes atomic.Uint64
}

// Serve listens on a and serves until ctx is done. ready is called once all
// four ports listen.
func Serve(ctx context.Context, a Addrs, ready func()) error {
	s := &Server{}
	ctl, err := net.Listen("tcp", a.Ctl)
	if err != nil {
		return err
	}
	data, err := net.Listen("tcp", a.TCP)
	if err != nil {
		return err
	}
	sink, err := net.ListenPacket("udp", a.UDP)
	if err != nil {
		return err
	}
	echo, err := net.ListenPacket("udp", a.Echo)
	if err != nil {
		return err
	}
	for _, pc := range []net.PacketConn{sink, echo} {
		if u, ok := pc.(*net.UDPConn); ok {
			u.SetReadBuffer(4 << 20)
		}
	}
	go func() {
		<-ctx.Done()
		ctl.Close()
		data.Close()
		sink.Close()
		echo.Close()
	}()
	go accept(ctl, s.control)
	go accept(data, func(c net.Conn) {
		s.tcpConns.Add(1)
		buf := make([]byte, 256<<10)
		for {
			n, err := c.Read(buf)
			s.tcpBytes.Add(uint64(n))
			if err != nil {
				c.Close()
				return
			}
		}
	})
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := sink.ReadFrom(buf)
			if err != nil {
				return
			}
			s.udpPkts.Add(1)
			s.udpBytes.Add(uint64(n))
		}
	}()
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			s.echoPkts.Add(1)
			s.echoBytes.Add(uint64(n))
			echo.WriteTo(buf[:n], from)
		}
	}()
	if ready != nil {
		ready()
	}
	<-ctx.Done()
	return nil
}

func accept(l net.Listener, f func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go f(c)
	}
}

type ctlRequest struct {
	Op string `json:"op"`
}

func (s *Server) control(c net.Conn) {
	defer c.Close()
	sc := bufio.NewScanner(c)
	enc := json.NewEncoder(c)
	for sc.Scan() {
		var req ctlRequest
		if json.Unmarshal(sc.Bytes(), &req) != nil {
			return
		}
		switch req.Op {
		case "reset":
			for _, v := range []*atomic.Uint64{&s.tcpBytes, &s.tcpConns, &s.udpPkts, &s.udpBytes, &s.echoPkts, &s.echoBytes} {
				v.Store(0)
			}
		}
		enc.Encode(Counts{TCPBytes: s.tcpBytes.Load(), TCPConns: s.tcpConns.Load(), UDPPkts: s.udpPkts.Load(),
			UDPBytes: s.udpBytes.Load(), EchoPkts: s.echoPkts.Load(), EchoBytes: s.echoBytes.Load()})
	}
}

// control is a client's control connection.
type control struct {
	c net.Conn
	r *bufio.Scanner
}

func dialControl(addr string, wait time.Duration) (*control, error) {
	deadline := time.Now().Add(wait)
	for {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			ct := &control{c: c, r: bufio.NewScanner(c)}
			if _, err = ct.do("count"); err == nil {
				return ct, nil
			}
			c.Close()
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("loadgen: no control connection to %s through the tunnel within %v: %v", addr, wait, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (ct *control) do(op string) (Counts, error) {
	var n Counts
	ct.c.SetDeadline(time.Now().Add(10 * time.Second))
	b, _ := json.Marshal(ctlRequest{Op: op})
	if _, err := ct.c.Write(append(b, '\n')); err != nil {
		return n, err
	}
	if !ct.r.Scan() {
		err := ct.r.Err()
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return n, fmt.Errorf("loadgen: control %s: %w", op, err)
	}
	return n, json.Unmarshal(ct.r.Bytes(), &n)
}

// Spec says what a client runs.
type Spec struct {
	Test     string        `json:"test"` // tcp, udp, ping
	Streams  int           `json:"streams"`
	Duration time.Duration `json:"duration"`
	Rate     int           `json:"rate"` // udp: datagrams per second
	Size     int           `json:"size"` // udp, ping: payload bytes
}

// Result is what one client test measured. Sent is counted by the client,
// Received by the server (through the control connection).
type Result struct {
	Test      string        `json:"test"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	SentBytes uint64        `json:"sent_bytes"`
	SentPkts  uint64        `json:"sent_pkts"`
	RecvBytes uint64        `json:"recv_bytes"`
	RecvPkts  uint64        `json:"recv_pkts"`
	Streams   int           `json:"streams,omitempty"`
	TCPRTT    time.Duration `json:"tcp_rtt_ns,omitempty"` // kernel's smoothed RTT, mean over streams, at the end of the send
	RTTs      []int64       `json:"-"`
	P50       time.Duration `json:"p50_ns,omitempty"`
	P90       time.Duration `json:"p90_ns,omitempty"`
	P99       time.Duration `json:"p99_ns,omitempty"`
	Max       time.Duration `json:"max_ns,omitempty"`
	Lost      uint64        `json:"lost"`
}

// RunClient runs spec against the server behind a.
func RunClient(ctx context.Context, a Addrs, spec Spec) (*Result, error) {
	ct, err := dialControl(a.Ctl, 10*time.Second)
	if err != nil {
		return nil, err
	}
	defer ct.c.Close()
	if _, err := ct.do("reset"); err != nil {
		return nil, err
	}
	switch spec.Test {
	case "tcp":
		return runTCP(ctx, ct, a.TCP, spec)
	case "udp":
		return runUDP(ctx, ct, a.UDP, spec)
	case "ping":
		return runPing(ctx, ct, a.Echo, spec)
	}
	return nil, fmt.Errorf("loadgen: unknown test %q (tcp, udp, ping)", spec.Test)
}

func runTCP(ctx context.Context, ct *control, addr string, spec Spec) (*Result, error) {
	n := max(spec.Streams, 1)
	conns := make([]*net.TCPConn, n)
	for i := range conns {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return nil, fmt.Errorf("loadgen: TCP stream %d to %s: %v", i, addr, err)
		}
		conns[i] = c.(*net.TCPConn)
		defer c.Close()
	}
	var sent atomic.Uint64
	var rttSum atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(spec.Duration)
	for _, c := range conns {
		wg.Add(1)
		go func(c *net.TCPConn) {
			defer wg.Done()
			buf := make([]byte, 128<<10)
			c.SetWriteDeadline(deadline)
			for ctx.Err() == nil {
				k, err := c.Write(buf)
				sent.Add(uint64(k))
				if err != nil {
					break
				}
			}
			rttSum.Add(int64(tcpRTT(c)))
		}(c)
	}
	wg.Wait()
	// Whatever the kernel accepted still goes out after Close; wait until
	// the server has it all (or nothing moves for 5 s).
	for _, c := range conns {
		c.Close()
	}
	res := &Result{Test: "tcp", Streams: n, SentBytes: sent.Load(), TCPRTT: time.Duration(rttSum.Load() / int64(n))}
	var last uint64
	stall := time.Now()
	for {
		cnt, err := ct.do("count")
		if err != nil {
			return nil, err
		}
		res.RecvBytes = cnt.TCPBytes
		if cnt.TCPBytes >= res.SentBytes || time.Since(stall) > 5*time.Second || ctx.Err() != nil {
			break
		}
		if cnt.TCPBytes != last {
			last, stall = cnt.TCPBytes, time.Now()
		}
		time.Sleep(5 * time.Millisecond)
	}
	res.Elapsed = time.Since(start)
	if res.RecvBytes != res.SentBytes {
		return res, fmt.Errorf("loadgen: TCP: sent %d bytes, the server received %d", res.SentBytes, res.RecvBytes)
	}
	return res, nil
}

func runUDP(ctx context.Context, ct *control, addr string, spec Spec) (*Result, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	size := max(spec.Size, 16)
	rate := max(spec.Rate, 1)
	buf := make([]byte, size)
	res := &Result{Test: "udp"}
	start := time.Now()
	for time.Since(start) < spec.Duration && ctx.Err() == nil {
		due := uint64(time.Since(start).Seconds() * float64(rate))
		for res.SentPkts < due {
			binary.BigEndian.PutUint64(buf, res.SentPkts)
			if _, err := c.Write(buf); err != nil {
				// ENOBUFS and the like: the packet is lost on our side.
				if errors.Is(err, unix.ECONNREFUSED) {
					return nil, err
				}
			} else {
				res.SentBytes += uint64(size)
			}
			res.SentPkts++
		}
		time.Sleep(200 * time.Microsecond)
	}
	res.Elapsed = time.Since(start)
	// Let the last datagrams land, then read the count twice the same.
	var prev uint64 = ^uint64(0)
	for i := 0; i < 40; i++ {
		time.Sleep(50 * time.Millisecond)
		cnt, err := ct.do("count")
		if err != nil {
			return nil, err
		}
		res.RecvPkts, res.RecvBytes = cnt.UDPPkts, cnt.UDPBytes
		if cnt.UDPPkts == prev && i >= 4 {
			break
		}
		prev = cnt.UDPPkts
	}
	if res.RecvPkts < res.SentPkts {
		res.Lost = res.SentPkts - res.RecvPkts
	}
	return res, nil
}

func runPing(ctx context.Context, ct *control, addr string, spec Spec) (*Result, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	size := max(spec.Size, 16)
	buf := make([]byte, size)
	in := make([]byte, 65536)
	res := &Result{Test: "ping"}
	var rtts []time.Duration
	start := time.Now()
	for time.Since(start) < spec.Duration && ctx.Err() == nil {
		seq := res.SentPkts
		binary.BigEndian.PutUint64(buf, seq)
		t0 := time.Now()
		if _, err := c.Write(buf); err != nil {
			return nil, err
		}
		res.SentPkts++
		res.SentBytes += uint64(size)
		c.SetReadDeadline(t0.Add(500 * time.Millisecond))
		for {
			n, err := c.Read(in)
			if err != nil {
				res.Lost++
				break
			}
			if n >= 8 && binary.BigEndian.Uint64(in) == seq {
				rtts = append(rtts, time.Since(t0))
				res.RecvPkts++
				res.RecvBytes += uint64(n)
				break
			}
		}
		if spec.Rate > 0 {
			time.Sleep(time.Second / time.Duration(spec.Rate))
		}
	}
	res.Elapsed = time.Since(start)
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	pct := func(p float64) time.Duration {
		if len(rtts) == 0 {
			return 0
		}
		i := int(p/100*float64(len(rtts))+0.5) - 1
		return rtts[max(0, min(i, len(rtts)-1))]
	}
	res.P50, res.P90, res.P99 = pct(50), pct(90), pct(99)
	if len(rtts) > 0 {
		res.Max = rtts[len(rtts)-1]
	}
	if len(rtts) == 0 {
		return res, fmt.Errorf("loadgen: no echo came back from %s in %v", addr, spec.Duration)
	}
	return res, nil
}
