package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"syscall"
)

const (
	afKey          = 15 // AF_KEY
	pfKeyV2        = 2
	sadbRegister   = 7
	sadbDump       = 10
	satypeESP      = 3
	extSA          = 1
	extSupportAuth = 14
	extSupportEnc  = 15
)

// afkey opens socket(AF_KEY), registers for ESP and prints the algorithms
// the kernel offers, then dumps the ESP SAs and prints their SPIs.
func afkey() {
	fd, err := syscall.Socket(afKey, syscall.SOCK_RAW, pfKeyV2)
	if err != nil {
		fmt.Printf("afkey: socket(AF_KEY): %v\n", err)
		os.Exit(1)
	}
	defer syscall.Close(fd)
	tv := syscall.Timeval{Sec: 5}
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		fail("SO_RCVTIMEO", err)
	}
	fmt.Println("afkey: socket(AF_KEY) ok")

	// SADB_REGISTER: the reply lists the supported algorithms.
	send(fd, sadbRegister, satypeESP, 1)
	msg := recv(fd, sadbRegister)
	if errno := msg[2]; errno != 0 {
		fail("SADB_REGISTER", syscall.Errno(errno))
	}
	for _, ext := range extensions(msg) {
		var kind string
		switch binary.LittleEndian.Uint16(ext[2:]) {
		case extSupportAuth:
			kind = "auth"
		case extSupportEnc:
			kind = "encrypt"
		default:
			continue
		}
		var ids []int
		for off := 8; off+8 <= len(ext); off += 8 {
			ids = append(ids, int(ext[off]))
		}
		fmt.Printf("afkey: register: %d %s algorithms %v\n", len(ids), kind, ids)
	}

	// SADB_DUMP: one message per SA, the last with sequence number 0.
	send(fd, sadbDump, satypeESP, 2)
	n := 0
	for {
		msg := recv(fd, sadbDump)
		if errno := msg[2]; errno != 0 {
			if syscall.Errno(errno) == syscall.ENOENT {
				break // no SAs
			}
			fail("SADB_DUMP", syscall.Errno(errno))
		}
		for _, ext := range extensions(msg) {
			if binary.LittleEndian.Uint16(ext[2:]) == extSA && len(ext) >= 16 {
				n++
				fmt.Printf("afkey: dump: spi 0x%08x auth %d encrypt %d\n",
					binary.BigEndian.Uint32(ext[4:]), ext[10], ext[11])
			}
		}
		if binary.LittleEndian.Uint32(msg[8:]) == 0 {
			break
		}
	}
	fmt.Printf("afkey: dump: %d SAs\n", n)
}

func fail(what string, err error) {
	fmt.Printf("afkey: %s: %v\n", what, err)
	os.Exit(1)
}

// send writes a bare sadb_msg of type typ.
func send(fd int, typ, satype uint8, seq uint32) {
	b := make([]byte, 16)
	b[0] = pfKeyV2
	b[1] = typ
	b[3] = satype
	binary.LittleEndian.PutUint16(b[4:], 2) // length in 64-bit words
	binary.LittleEndian.PutUint32(b[8:], seq)
	binary.LittleEndian.PutUint32(b[12:], uint32(os.Getpid()))
	if _, err := syscall.Write(fd, b); err != nil {
		fail(fmt.Sprintf("write message type %d", typ), err)
	}
}

// recv reads messages until one of type typ for our PID arrives (the kernel
// broadcasts to registered sockets too). Dump replies carry the kernel's
// own sequence numbers, the last one 0.
func recv(fd int, typ uint8) []byte {
	buf := make([]byte, 1<<16)
	for {
		n, err := syscall.Read(fd, buf)
		if err != nil {
			fail("read", err)
		}
		if n < 16 {
			fail("read", fmt.Errorf("short message (%d bytes)", n))
		}
		msg := buf[:n]
		if binary.LittleEndian.Uint32(msg[12:]) != uint32(os.Getpid()) {
			continue
		}
		if msg[1] != typ {
			continue
		}
		return append([]byte(nil), msg...)
	}
}

// extensions splits the extensions after the 16-byte sadb_msg header.
func extensions(msg []byte) [][]byte {
	var exts [][]byte
	for off := 16; off+4 <= len(msg); {
		l := int(binary.LittleEndian.Uint16(msg[off:])) * 8
		if l < 8 || off+l > len(msg) {
			break
		}
		exts = append(exts, msg[off:off+l])
		off += l
	}
	return exts
}
