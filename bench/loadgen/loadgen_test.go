package loadgen

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// TestLoopback runs each test against a server on loopback: what the
// client sent, the server received.
func TestLoopback(t *testing.T) {
	a := Addrs{Ctl: "127.0.0.1:" + freePort(t), TCP: "127.0.0.1:" + freePort(t), UDP: "127.0.0.1:" + freePort(t), Echo: "127.0.0.1:" + freePort(t)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	go Serve(ctx, a, func() { close(ready) })
	<-ready
	res, err := RunClient(ctx, a, Spec{Test: "tcp", Streams: 2, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.SentBytes == 0 || res.RecvBytes != res.SentBytes || res.Streams != 2 {
		t.Errorf("tcp: %+v", res)
	}
	res, err = RunClient(ctx, a, Spec{Test: "udp", Rate: 2000, Size: 100, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.SentPkts < 300 || res.RecvPkts == 0 || res.RecvPkts > res.SentPkts || res.RecvBytes != 100*res.RecvPkts {
		t.Errorf("udp: %+v", res)
	}
	res, err = RunClient(ctx, a, Spec{Test: "ping", Size: 64, Duration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.RecvPkts == 0 || res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 {
		t.Errorf("ping: %+v", res)
	}
	if _, err := RunClient(ctx, a, Spec{Test: "nope"}); err == nil {
		t.Errorf("unknown test accepted")
	}
}
