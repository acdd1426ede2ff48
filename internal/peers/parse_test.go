package peers

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"goswan/internal/testnet"
)

// Captured from strongSwan 5.9.8 (swanctl --list-sas --pretty).
const listSAsPretty = `list-sa event {
  t {
    uniqueid = 1
    version = 2
    state = ESTABLISHED
    local-host = 192.0.2.1
    local-port = 4500
    local-id = a.example
    remote-host = 192.0.2.2
    remote-port = 4500
    remote-id = b.example
    initiator = yes
    initiator-spi = f9bb4e1e6d25c9b5
    responder-spi = a3476c8f7cf4370e
    nat-remote = yes
    nat-any = yes
    encr-alg = AES_GCM_16
    encr-keysize = 128
    prf-alg = PRF_HMAC_SHA2_256
    dh-group = ECP_256
    established = 5
    rekey-time = 13912
    child-sas {
      c-1 {
        name = c
        uniqueid = 1
        reqid = 1
        state = INSTALLED
        mode = TUNNEL
        protocol = ESP
        encap = yes
        spi-in = 3baba2ed
        spi-out = 788945ec
        encr-alg = AES_GCM_16
        encr-keysize = 128
        bytes-in = 168
        packets-in = 2
        use-in = 0
        bytes-out = 168
        packets-out = 2
        use-out = 0
        rekey-time = 3250
        life-time = 3955
        install-time = 5
        local-ts = [
          10.0.1.0/24
        ]
        remote-ts = [
          10.0.2.0/24
        ]
      }
    }
  }
}
list-sas reply {
}
`

func TestParseListSAs(t *testing.T) {
	sas, err := ParseListSAs(listSAsPretty)
	if err != nil {
		t.Fatal(err)
	}
	if len(sas) != 1 {
		t.Fatalf("got %d IKE SAs, want 1", len(sas))
	}
	sa := sas[0]
	if sa.Name != "t" || sa.State != "ESTABLISHED" || sa.InitiatorSPI != 0xf9bb4e1e6d25c9b5 || sa.ResponderSPI != 0xa3476c8f7cf4370e ||
		sa.LocalPort != 4500 || !sa.Initiator || !sa.NATAny || sa.Proposal != "AES_GCM_16-128/PRF_HMAC_SHA2_256/ECP_256" {
		t.Errorf("IKE SA: %+v", sa)
	}
	c, ok := sa.Child("c")
	if !ok {
		t.Fatalf("no INSTALLED child c in %+v", sa.Children)
	}
	want := ChildSA{Name: "c", UniqueID: 1, ReqID: 1, State: "INSTALLED", Mode: "TUNNEL", Protocol: "ESP", Encap: true,
		SPIIn: 0x3baba2ed, SPIOut: 0x788945ec, EncrAlg: "AES_GCM_16", EncrKeysize: 128, Proposal: "AES_GCM_16-128",
		BytesIn: 168, PacketsIn: 2, BytesOut: 168, PacketsOut: 2, LocalTS: []string{"10.0.1.0/24"}, RemoteTS: []string{"10.0.2.0/24"}}
	c.Raw = nil
	if !reflect.DeepEqual(c, want) {
		t.Errorf("child:\n got %+v\nwant %+v", c, want)
	}
	if sas, err := ParseListSAs("list-sas reply {\n}\n"); err != nil || len(sas) != 0 {
		t.Errorf("empty listing: %v, %v", sas, err)
	}
	for _, bad := range []string{"list-sa event {\n  t {\n", "}\n", "list-sa event {\n  t {\n    junk\n  }\n}\n"} {
		if _, err := ParseListSAs(bad); err == nil {
			t.Errorf("ParseListSAs(%q): no error", bad)
		}
	}
}

func TestSwanctlConf(t *testing.T) {
	l, _ := charonConns()
	got, err := SwanctlConf([]SwanConn{l})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"connections {\n  t {\n    version = 2\n    local_addrs = 192.0.2.1\n",
		"    proposals = aes128gcm16-prfsha256-ecp256\n    encap = yes\n",
		"    local {\n      auth = psk\n      id = l.example\n    }\n",
		"      c {\n        local_ts = 10.0.1.0/24\n        remote_ts = 10.0.2.0/24\n        esp_proposals = aes128gcm16\n        mode = tunnel\n        start_action = none\n      }\n",
		"secrets {\n  ike-t {\n    id-local = l.example\n    id-remote = r.example\n    secret = \"goswan-interop-test-psk-0123456789\"\n  }\n}\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("swanctl.conf lacks\n%s\nin\n%s", want, got)
		}
	}
	l.LocalID = "a\n}"
	if _, err := SwanctlConf([]SwanConn{l}); err == nil {
		t.Error("a newline in an ID was accepted")
	}
	if _, err := SwanctlConf([]SwanConn{{Name: "a b"}}); err == nil {
		t.Error("a space in a connection name was accepted")
	}
}

// Captured from Libreswan 4.10's pluto.
const plutoLog = `Nov 27 05:16:24.201219: "t" #1: responder established IKE SA; authenticated peer using authby=secret and ID_FQDN '@a.example'
Nov 27 05:16:24.201656: ERROR: "t" #2: netlink response for Add SA esp.db61b1a4@192.0.2.1: Function not implemented (errno 38)
003 "t" #3: initiator established IKE SA; authenticated peer using authby=secret and ID_FQDN '@a.example'
`

func TestParseIKEAuthEvents(t *testing.T) {
	evs := ParseIKEAuthEvents(plutoLog)
	if len(evs) != 2 || evs[0].Conn != "t" || evs[0].Serial != 1 || evs[0].Role != "responder" || evs[1].Serial != 3 || evs[1].Role != "initiator" {
		t.Errorf("events: %+v", evs)
	}
}

func TestParseLibreswanStatus(t *testing.T) {
	text := `000 "t":   ike_life: 28800s; ipsec_life: 28800s;
000 "t":   IKE algorithms: AES_GCM_16_128-HMAC_SHA2_256-DH19
000  
000 Total IPsec connections: loaded 1, active 1
000 IKE SAs: total(1), half-open(0), open(0), authenticated(1), anonymous(0)
000 #1: "t":4500 STATE_V2_ESTABLISHED_IKE_SA (established IKE SA); REKEY in 27979s; REPLACE in 28799s; newest; idle;
`
	st := ParseLibreswanStatus(text)
	if !reflect.DeepEqual(st.Conns, []string{"t"}) || st.Loaded != 1 || st.Active != 1 || st.IKESAs != 1 || st.Authenticated != 1 {
		t.Errorf("status: %+v", st)
	}
	if len(st.States) != 1 || st.States[0].Serial != 1 || st.States[0].State != "STATE_V2_ESTABLISHED_IKE_SA" || !st.States[0].Established() {
		t.Errorf("states: %+v", st.States)
	}
}

// TestCheckISAKMPFindsMalformed proves the checker is not blind: an
// IKE_SA_INIT whose SA payload claims 200 bytes in a 40-byte message must
// be reported.
func TestCheckISAKMPFindsMalformed(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		testnet.Unavailable(t, "peers: tshark is not installed (Debian package tshark)")
	}
	isakmp := make([]byte, 28+12)
	copy(isakmp, []byte{1, 2, 3, 4, 5, 6, 7, 8}) // initiator SPI
	isakmp[16] = 33                              // next payload: SA
	isakmp[17] = 0x20                            // version 2.0
	isakmp[18] = 34                              // IKE_SA_INIT
	isakmp[19] = 0x08                            // initiator
	binary.BigEndian.PutUint32(isakmp[24:], uint32(len(isakmp)))
	binary.BigEndian.PutUint16(isakmp[30:], 200) // SA payload length: too long
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pcap")
	if err := os.WriteFile(bad, rawPcap(udp4(10500, 10500, isakmp)), 0o644); err != nil {
		t.Fatal(err)
	}
	// On a custom port it is not ISAKMP unless we say so.
	rep, err := CheckISAKMP(bad, Dissect{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Packets != 0 {
		t.Errorf("port 10500 dissected as ISAKMP without a decode-as: %d packets", rep.Packets)
	}
	rep, err = CheckISAKMP(bad, Dissect{IKEPorts: []int{10500}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Packets != 1 || len(rep.Problems) == 0 || !strings.Contains(rep.Problems[0], "frame 1:") {
		t.Errorf("malformed packet not reported: %d packets, problems %q", rep.Packets, rep.Problems)
	}
	// The same message, consistent, over NAT-T with the non-ESP marker.
	binary.BigEndian.PutUint16(isakmp[30:], 12)
	isakmp[28+4] = 0 // an empty SA payload: odd but well-formed framing
	good := filepath.Join(dir, "good.pcap")
	if err := os.WriteFile(good, rawPcap(udp4(14500, 14500, append([]byte{0, 0, 0, 0}, isakmp...))), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err = CheckISAKMP(good, Dissect{NATTPorts: []int{14500}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Packets != 1 {
		t.Errorf("non-ESP-marker packet on port 14500: %d ISAKMP packets, want 1", rep.Packets)
	}
}

// udp4 wraps payload in IPv4/UDP from 192.0.2.1 to 192.0.2.2.
func udp4(sport, dport uint16, payload []byte) []byte {
	pkt := make([]byte, 28+len(payload))
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	pkt[8], pkt[9] = 64, 17
	copy(pkt[12:], []byte{192, 0, 2, 1, 192, 0, 2, 2})
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(pkt[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(pkt[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(pkt[20:], sport)
	binary.BigEndian.PutUint16(pkt[22:], dport)
	binary.BigEndian.PutUint16(pkt[24:], uint16(8+len(payload)))
	copy(pkt[28:], payload)
	return pkt
}

// rawPcap is a classic pcap file (LINKTYPE_RAW) holding the given packets.
func rawPcap(pkts ...[]byte) []byte {
	b := make([]byte, 24)
	binary.LittleEndian.PutUint32(b[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(b[4:], 2)
	binary.LittleEndian.PutUint16(b[6:], 4)
	binary.LittleEndian.PutUint32(b[16:], 65535)
	binary.LittleEndian.PutUint32(b[20:], 101)
	for i, p := range pkts {
		rec := make([]byte, 16)
		binary.LittleEndian.PutUint32(rec[0:], uint32(i+1))
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(p)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(p)))
		b = append(append(b, rec...), p...)
	}
	return b
}

func TestParseLibreswanIKESPIs(t *testing.T) {
	// Lines of pluto 4.10's debug log, as initiator of #1 (filed twice),
	// with a child #2 under the same SPIs and another conn's state.
	const log = `Nov 27 05:31:08.366673: | entry state hash_table_entries.ike_spis@0x5575052ab920 "t" #1: 00 00 00 00  00 00 00 00  00 00 00 00  00 00 00 00 initialized
Nov 27 05:31:08.366686: | entry state hash_table_entries.ike_spis@0x5575052ab920 "t" #1: 50 14 51 39  dc 1a d6 99  00 00 00 00  00 00 00 00 added to hash table bucket 0x5574df75b960
Nov 27 05:31:08.366690: | entry state hash_table_entries.ike_spis@0x5575052ab920 "t" #1: 50 14 51 39  dc 1a d6 99  06 fb fb df  b1 d3 e4 0b added to hash table bucket 0x5574df75b961
Nov 27 05:31:08.370253: | entry state hash_table_entries.ike_spis@0x5575052b2630 "t" #2: 50 14 51 39  dc 1a d6 99  06 fb fb df  b1 d3 e4 0b added to hash table bucket 0x5574df75b960
Nov 27 05:31:08.370255: | entry state hash_table_entries.ike_spis@0x5575052b2630 "u"[1] #3: 11 11 11 11  11 11 11 11  22 22 22 22  22 22 22 22 added to hash table bucket 0x5574df75b960
`
	for _, c := range []struct {
		conn       string
		serial     int
		spii, spir string
		ok         bool
	}{
		{"t", 1, "50145139dc1ad699", "06fbfbdfb1d3e40b", true},
		{"t", 2, "50145139dc1ad699", "06fbfbdfb1d3e40b", true},
		{"u", 3, "1111111111111111", "2222222222222222", true},
		{"t", 3, "", "", false},
		{"x", 1, "", "", false},
	} {
		spii, spir, ok := ParseLibreswanIKESPIs(log, c.conn, c.serial)
		if spii != c.spii || spir != c.spir || ok != c.ok {
			t.Errorf("%s #%d: %q %q %v; want %q %q %v", c.conn, c.serial, spii, spir, ok, c.spii, c.spir, c.ok)
		}
	}
}

func TestParseISAKMPFields(t *testing.T) {
	// tshark -T fields output for an INVALID_KE_PAYLOAD response on 500
	// and an IKE_AUTH request on 4500 (fields as ISAKMPMessages asks).
	for _, c := range []struct {
		line string
		want string
	}{
		{"7\t192.0.2.2\t\t500\t192.0.2.1\t\t500\t\t34\t0\t1\t0x00000000\t6fbd1cbd28b0e0a0\t0000000000000000\t17\t38\t",
			"frame 7 192.0.2.2:500->192.0.2.1:500 IKE_SA_INIT response #0 6fbd1cbd28b0e0a0:0000000000000000 len 38 KE 0 notify [17]"},
		{"3\t192.0.2.1\t\t500\t192.0.2.2\t\t500\t\t34\t1\t0\t0x00000000\t6fbd1cbd28b0e0a0\t0000000000000000\t16430,16388,16389\t280\t31",
			"frame 3 192.0.2.1:500->192.0.2.2:500 IKE_SA_INIT request #0 6fbd1cbd28b0e0a0:0000000000000000 len 280 KE 31 notify [16430 16388 16389]"},
		{"9\t\t2001:db8::1\t4500\t\t2001:db8::2\t4500\t\t35\tTrue\tFalse\t0x00000001\t6fbd1cbd28b0e0a0\t1f2e3d4c5b6a7988\t\t300\t",
			"frame 9 [2001:db8::1]:4500->[2001:db8::2]:4500 IKE_AUTH request #1 6fbd1cbd28b0e0a0:1f2e3d4c5b6a7988 len 300 KE 0 notify []"},
	} {
		m, err := parseISAKMPFields(strings.Split(c.line, "\t"))
		if err != nil {
			t.Errorf("%q: %v", c.line, err)
			continue
		}
		if got := m.String(); got != c.want {
			t.Errorf("%q:\n got %s\nwant %s", c.line, got, c.want)
		}
	}
}
