// Command vmhelper does, in the test VM, what busybox and iproute2 cannot:
//
//	vmhelper afkey           socket(AF_KEY): SADB_REGISTER for ESP, then
//	                         SADB_DUMP; prints the algorithms and SPIs
//	vmhelper udpencap PORT   hold a UDP socket on PORT with UDP_ENCAP set
//	                         to ESP-in-UDP (RFC 3948), so that the kernel
//	                         takes ESP in UDP arriving there; runs until
//	                         killed
//
// Output lines start with the subcommand's name; the exit status is 0 on
// success. Built with CGO_ENABLED=0 (vm.GoBinary) so it needs no libraries.
package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "afkey":
		afkey()
	case "udpencap":
		if len(os.Args) != 3 {
			usage()
		}
		port, err := strconv.Atoi(os.Args[2])
		if err != nil || port <= 0 || port > 65535 {
			usage()
		}
		udpencap(port)
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: vmhelper afkey | vmhelper udpencap PORT")
	os.Exit(2)
}

const (
	solUDP            = 17  // SOL_UDP
	udpEncap          = 100 // UDP_ENCAP
	udpEncapESPInUDP  = 2   // UDP_ENCAP_ESPINUDP
	udpEncapReadyWord = "udpencap: ready"
)

// udpencap binds 0.0.0.0:port, marks the socket as an ESP-in-UDP
// encapsulation socket and reads (the non-ESP datagrams, IKE's, would
// arrive here) until killed.
func udpencap(port int) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		fail("socket", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port}); err != nil {
		fail(fmt.Sprintf("bind port %d", port), err)
	}
	if err := syscall.SetsockoptInt(fd, solUDP, udpEncap, udpEncapESPInUDP); err != nil {
		fail("setsockopt UDP_ENCAP", err)
	}
	fmt.Printf("%s on port %d\n", udpEncapReadyWord, port)
	buf := make([]byte, 65536)
	for {
		n, from, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			fail("recvfrom", err)
		}
		fmt.Printf("udpencap: %d bytes from %v (not ESP)\n", n, from)
	}
}
