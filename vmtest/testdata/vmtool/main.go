// Command vmtool measures, in the test VM, how fast a kernel back end of
// goswan installs and removes SAs and policies:
//
//	vmtool rate xfrm|pfkey N M
//	vmtool tcp-recv PORT
//	vmtool tcp-send HOST PORT BYTES
//
// It opens the back end (kernel/xfrm or kernel/pfkey) in the current
// network namespace, then adds N outbound ESP SAs (AES-128-CBC with
// HMAC-SHA2-512, tunnel mode, reqids in goswan's range), deletes them, adds
// N outbound policies (one /32 selector each), deletes them, then reserves
// N inbound SPIs and completes them into SAs (GetSPI then AddSA, what a
// responder does) and deletes those. Each phase prints one line
//
//	rate BACKEND OP COUNT SECONDS PER_SECOND
//
// and the tool exits non-zero, with a line starting "vmtool: ", on the
// first error.
//
// tcp-recv and tcp-send move a short TCP stream through a tunnel (busybox
// nc ends when its own standard input does, cutting the stream short):
// tcp-recv listens on PORT (IPv4 and IPv6), prints "tcp-recv: listening",
// takes one connection, reads to its end and answers with the SHA-256 of
// what it read; tcp-send sends BYTES pseudo-random bytes, closes its
// sending side, reads the answer and prints "tcp-send: ok N bytes in S
// seconds" when it matches the digest of what was sent (exit status 1
// otherwise). tcp-recv waits 15 seconds for the connection, both give up
// after 30.
//
// Built static (vm.GoBinary).
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"goswan/kernel"
	"goswan/kernel/pfkey"
	"goswan/kernel/xfrm"
	"goswan/proposal"
)

func main() {
	switch {
	case len(os.Args) == 3 && os.Args[1] == "tcp-recv":
		tcpRecv(os.Args[2])
		return
	case len(os.Args) == 5 && os.Args[1] == "tcp-send":
		tcpSend(os.Args[2], os.Args[3], os.Args[4])
		return
	}
	if len(os.Args) != 5 || os.Args[1] != "rate" {
		fmt.Fprintln(os.Stderr, "usage: vmtool rate xfrm|pfkey N M")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[3])
	m, err2 := strconv.Atoi(os.Args[4])
	if err != nil || err2 != nil || n <= 0 || n > 1<<20 || m <= 0 || m > 1<<20 {
		fmt.Fprintln(os.Stderr, "vmtool: bad counts", os.Args[3], os.Args[4])
		os.Exit(2)
	}
	var b kernel.IPsec
	switch os.Args[2] {
	case "xfrm":
		b, err = xfrm.New(xfrm.Config{})
	case "pfkey":
		b, err = pfkey.New(pfkey.Config{})
	default:
		fmt.Fprintln(os.Stderr, "vmtool: unknown back end", os.Args[2])
		os.Exit(2)
	}
	if err != nil {
		fail("opening the back end: %v", err)
	}
	defer b.Close()
	rate(os.Args[2], b, n, m)
}

func fail(format string, args ...any) {
	fmt.Printf("vmtool: "+format+"\n", args...)
	os.Exit(1)
}

var (
	local  = netip.MustParseAddr("192.0.2.1")
	remote = netip.MustParseAddr("192.0.2.2")
)

func sa(i int, spi uint32, dir kernel.Direction) *kernel.SA {
	src, dst := local, remote
	if dir == kernel.In {
		src, dst = remote, local
	}
	key := make([]byte, 16)
	ikey := make([]byte, 64)
	key[0], key[1], ikey[0] = byte(i), byte(i>>8), byte(i>>16)
	return &kernel.SA{
		SPI: spi, Proto: kernel.ESP, Mode: kernel.Tunnel, Dir: dir,
		Src: src, Dst: dst,
		Encr: proposal.EncrAESCBC, EncrKey: key,
		Integ: proposal.IntegHMACSHA2512256, IntegKey: ikey, // af_key cuts SHA2-256 to 96 bits
		ReplayWindow: 32,
		// Two SAs (one Child SA) per reqid: PF_KEY on Linux has 8192
		// kernel reqids for goswan's.
		ReqID:    kernel.ReqIDBase | uint32(i/2+1),
		Lifetime: kernel.Lifetime{Soft: kernel.Limits{Time: time.Hour}, Hard: kernel.Limits{Time: 2 * time.Hour}},
	}
}

func policy(i int) *kernel.Policy {
	inner := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	return &kernel.Policy{
		Dir:      kernel.Out,
		Selector: kernel.Selector{Src: netip.PrefixFrom(inner, 32), Dst: netip.MustParsePrefix("172.16.0.0/16")},
		Action:   kernel.Protect,
		Template: kernel.Template{Src: local, Dst: remote, Proto: kernel.ESP, Mode: kernel.Tunnel, ReqID: kernel.ReqIDBase | uint32(i%4096+1)},
	}
}

func phase(backend, op string, n int, f func(i int) error) {
	start := time.Now()
	for i := range n {
		if err := f(i); err != nil {
			fail("%s %s #%d: %v", backend, op, i, err)
		}
	}
	d := time.Since(start)
	fmt.Printf("rate %s %s %d %.3f %.0f\n", backend, op, n, d.Seconds(), float64(n)/d.Seconds())
}

func rate(backend string, b kernel.IPsec, n, m int) {
	ctx := context.Background()
	const spiBase = 0x10000
	phase(backend, "sa-add", n, func(i int) error { return b.AddSA(ctx, sa(i, spiBase+uint32(i), kernel.Out)) })
	phase(backend, "sa-del", n, func(i int) error {
		return b.DeleteSA(ctx, kernel.SAID{Dst: remote, SPI: spiBase + uint32(i), Proto: kernel.ESP})
	})
	phase(backend, "policy-add", m, func(i int) error { return b.AddPolicy(ctx, policy(i)) })
	phase(backend, "policy-del", m, func(i int) error { return b.DeletePolicy(ctx, policy(i)) })
	spis := make([]uint32, m)
	phase(backend, "getspi+sa-add", m, func(i int) error {
		spi, err := b.GetSPI(ctx, remote, local, kernel.ESP, kernel.ReqIDBase|uint32(i/2+1))
		if err != nil {
			return err
		}
		spis[i] = spi
		return b.AddSA(ctx, sa(i, spi, kernel.In))
	})
	phase(backend, "sa-del-in", m, func(i int) error {
		return b.DeleteSA(ctx, kernel.SAID{Dst: local, SPI: spis[i], Proto: kernel.ESP})
	})
}

func tcpRecv(port string) {
	ln, err := net.Listen("tcp", net.JoinHostPort("::", port))
	if err != nil {
		fail("tcp-recv: %v", err)
	}
	fmt.Println("tcp-recv: listening")
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(15 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		fail("tcp-recv: %v", err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		fail("tcp-recv: after %d bytes from %v: %v", n, c.RemoteAddr(), err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	fmt.Fprintf(c, "%s\n", sum)
	c.Close()
	fmt.Printf("tcp-recv: %d bytes from %v sha256 %s\n", n, c.RemoteAddr(), sum)
}

func tcpSend(host, port, bytes string) {
	n, err := strconv.Atoi(bytes)
	if err != nil || n < 0 {
		fail("tcp-send: bad byte count %q", bytes)
	}
	start := time.Now()
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host, port), 10*time.Second)
	if err != nil {
		fail("tcp-send: %v", err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	data := make([]byte, n)
	r := rand.NewChaCha8([32]byte{'g', 'o', 's', 'w', 'a', 'n'})
	r.Read(data)
	want := sha256.Sum256(data)
	if _, err := c.Write(data); err != nil {
		fail("tcp-send: writing: %v", err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		fail("tcp-send: %v", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fail("tcp-send: reading the digest: %v", err)
	}
	if got := line[:len(line)-1]; got != hex.EncodeToString(want[:]) {
		fail("tcp-send: the receiver read sha256 %s, sent %x", got, want)
	}
	fmt.Printf("tcp-send: ok %d bytes in %.3f seconds\n", n, time.Since(start).Seconds())
}
