// Package interop tests our daemon against strongSwan and Libreswan in
// network namespaces. It needs root and the peers that .ci/run installs;
// without them the tests skip on a laptop and fail under CI=true.
package interop

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"goswan/internal/peers"
	"goswan/internal/testnet"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "goswan-interop-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := peers.BuildGoswan(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// memoryKernel keeps our Child SAs in the test-only memory back end: these
// tests are about the IKE exchanges; the data plane's interop is tested
// with the user-space back end.
var memoryKernel = []string{"GOSWAN_PLUTO_TEST_KERNEL=memory"}

// proposalCase is one IKE/ESP proposal as each side spells it.
type proposalCase struct {
	name          string
	ourIKE        string // ike= ("" for our defaults)
	ourESP        string // esp=
	theirIKE      string // strongSwan's proposals ("" for its defaults)
	theirESP      string
	fqdn          bool   // FQDN IDs (else IP address IDs)
	wantTheirEncr string // swanctl's encr-alg for the IKE SA
}

var proposalCases = []proposalCase{
	{"aes256-sha256-modp2048", "aes256-sha2_256-modp2048", "aes256-sha2_256", "aes256-sha256-modp2048", "aes256-sha256", true, "AES_CBC"},
	{"aes128gcm16-prfsha256-ecp256", "aes_gcm128-sha2_256-dh19", "aes_gcm128", "aes128gcm16-prfsha256-ecp256", "aes128gcm16", false, "AES_GCM_16"},
	{"aes256gcm16-prfsha384-ecp384", "aes_gcm256-sha2_384-dh20", "aes_gcm256", "aes256gcm16-prfsha384-ecp384", "aes256gcm16", true, "AES_GCM_16"},
	{"chacha20poly1305-prfsha256-curve25519", "chacha20_poly1305-sha2_256-dh31", "chacha20_poly1305", "chacha20poly1305-prfsha256-curve25519", "chacha20poly1305", false, "CHACHA20_POLY1305"},
	{"defaults", "", "", "", "", true, ""},
}

const psk = "interop test secret with some length to it"

// addrPlan is where one setup puts its addresses: ours and theirs on the
// veth from testnet.Pair, the protected subnets, and the address in each
// subnet that goes on lo (kernel-libipsec routes through an address of its
// own inside the protected subnet).
type addrPlan struct {
	our, their             string
	ourSubnet, theirSubnet string
	ourLo, theirLo         string
}

var (
	plan4 = addrPlan{"192.0.2.1", "192.0.2.2", "10.0.1.0/24", "10.0.2.0/24", "10.0.1.1", "10.0.2.1"}
	plan6 = addrPlan{"2001:db8::1", "2001:db8::2", "fd00:1::/64", "fd00:2::/64", "fd00:1::1", "fd00:2::1"}
)

// testbed is one setup: our pluto and strongSwan's charon in two
// namespaces joined by a veth.
type testbed struct {
	pl           *peers.Pluto
	ch           *peers.Charon
	ours, theirs *testnet.Namespace
	veth         *testnet.Veth
}

// setup makes two namespaces joined by a veth (ours 192.0.2.1, theirs
// 192.0.2.2), with our conn and their connection for pc.
func setup(t *testing.T, pc proposalCase, ourAuto string) (*peers.Pluto, *peers.Charon) {
	t.Helper()
	tb := setupPlan(t, pc, ourAuto, plan4)
	return tb.pl, tb.ch
}

// setupPlan is setup with the addresses of ap.
func setupPlan(t *testing.T, pc proposalCase, ourAuto string, ap addrPlan) testbed {
	t.Helper()
	peers.RequireCharon(t)
	ours, theirs, veth := testnet.Pair(t, "ours", "theirs")
	ours.AddLoopbackAddr(t, netip.MustParseAddr(ap.ourLo))
	theirs.AddLoopbackAddr(t, netip.MustParseAddr(ap.theirLo))
	ourID, theirID := ap.our, ap.their
	if pc.fqdn {
		ourID, theirID = "@ours.example", "@theirs.example"
	}
	conf := "conn interop\n\tleft=" + ap.our + "\n\tleftid=" + ourID + "\n\tleftsubnet=" + ap.ourSubnet + "\n" +
		"\tright=" + ap.their + "\n\trightid=" + theirID + "\n\trightsubnet=" + ap.theirSubnet + "\n" +
		"\tauthby=secret\n\tencapsulation=yes\n\tauto=" + ourAuto + "\n"
	if pc.ourIKE != "" {
		conf += "\tike=" + pc.ourIKE + "\n\tesp=" + pc.ourESP + "\n"
	}
	pl := peers.StartPluto(t, ours, peers.PlutoConfig{
		BinDir: binDir, Conf: conf, Secrets: ourID + " " + theirID + " : PSK \"" + psk + "\"\n",
		Args: []string{"--use-netstack", "--listen", ap.our}, Env: memoryKernel,
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("our pluto's log:\n%s", testnet.Tail(pl.Log(), 80))
		}
	})
	swanID := func(id string) string { return strings.TrimPrefix(id, "@") }
	child := peers.SwanChild{Name: "interop", LocalTS: []string{ap.theirSubnet}, RemoteTS: []string{ap.ourSubnet}}
	if pc.theirESP != "" {
		child.ESPProposals = []string{pc.theirESP}
	}
	sc := peers.SwanConn{
		Name: "interop", LocalAddrs: []string{ap.their}, RemoteAddrs: []string{ap.our},
		LocalID: swanID(theirID), RemoteID: swanID(ourID), PSK: psk, Encap: true,
		Children: []peers.SwanChild{child},
	}
	if pc.theirIKE != "" {
		sc.Proposals = []string{pc.theirIKE}
	}
	ch := peers.StartCharon(t, theirs, peers.CharonConfig{}, sc)
	return testbed{pl: pl, ch: ch, ours: ours, theirs: theirs, veth: veth}
}

// checkEstablished compares both sides' views of the IKE SA and Child SA.
func checkEstablished(t *testing.T, pl *peers.Pluto, ch *peers.Charon, pc proposalCase, weInitiated bool) {
	t.Helper()
	checkEstablishedPlan(t, pl, ch, pc, weInitiated, plan4)
}

// checkEstablishedPlan is checkEstablished with the addresses of ap.
func checkEstablishedPlan(t *testing.T, pl *peers.Pluto, ch *peers.Charon, pc proposalCase, weInitiated bool, ap addrPlan) {
	t.Helper()
	sa, err := ch.WaitEstablished("interop", 10*time.Second, "interop")
	if err != nil {
		t.Fatalf("strongSwan: %v", err)
	}
	st, err := pl.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.IKESAs) != 1 || st.IKESAs[0].Established.IsZero() {
		t.Fatalf("our IKE SAs: %+v", st.IKESAs)
	}
	ours := st.IKESAs[0]
	if ours.Initiator != weInitiated || sa.Initiator == weInitiated {
		t.Errorf("roles: we initiator=%v, strongSwan initiator=%v; want us %v", ours.Initiator, sa.Initiator, weInitiated)
	}
	if ours.SPIi != fmt.Sprintf("%016x", sa.InitiatorSPI) || ours.SPIr != fmt.Sprintf("%016x", sa.ResponderSPI) {
		t.Errorf("IKE SPIs: ours %s:%s, strongSwan %016x:%016x", ours.SPIi, ours.SPIr, sa.InitiatorSPI, sa.ResponderSPI)
	}
	if pc.wantTheirEncr != "" && sa.EncrAlg != pc.wantTheirEncr {
		t.Errorf("strongSwan negotiated %s (%s); want %s", sa.EncrAlg, sa.Proposal, pc.wantTheirEncr)
	}
	if len(st.ChildSAs) != 1 {
		t.Fatalf("our Child SAs: %+v", st.ChildSAs)
	}
	child, ok := sa.Child("interop")
	if !ok {
		t.Fatalf("strongSwan has no installed child: %+v", sa.Children)
	}
	oc := st.ChildSAs[0]
	if oc.SPIIn != child.SPIOut || oc.SPIOut != child.SPIIn {
		t.Errorf("Child SA SPIs: ours in/out %08x/%08x, strongSwan in/out %08x/%08x", oc.SPIIn, oc.SPIOut, child.SPIIn, child.SPIOut)
	}
	if !oc.Encap || !child.Encap {
		t.Errorf("UDP encapsulation: ours %v, strongSwan %v; both must encapsulate (kernel-libipsec)", oc.Encap, child.Encap)
	}
	if !strings.HasPrefix(strings.Join(oc.LocalTS, ","), ap.ourSubnet) {
		t.Errorf("our Child SA's local TS %v", oc.LocalTS)
	}
	t.Logf("established: ours %s / %s; strongSwan %s / %s", ours.Algorithms, oc.Algorithms, sa.Proposal, child.Proposal)
}

// TestStrongSwanInterop negotiates each proposal with us as initiator and
// as responder, checks both sides agree, and deletes from either side.
func TestStrongSwanInterop(t *testing.T) {
	for i, pc := range proposalCases {
		for _, weInitiate := range []bool{true, false} {
			role := "we-respond"
			if weInitiate {
				role = "we-initiate"
			}
			deleteFromUs := (i%2 == 0) == weInitiate
			t.Run(pc.name+"/"+role, func(t *testing.T) {
				pl, ch := setup(t, pc, "add")
				if weInitiate {
					if err := pl.Up("interop"); err != nil {
						t.Fatal(err)
					}
				} else if err := ch.Initiate("interop"); err != nil {
					t.Fatalf("strongSwan initiate: %v\n%s", err, ch.Log())
				}
				checkEstablished(t, pl, ch, pc, weInitiate)
				if deleteFromUs {
					if err := pl.Down("interop"); err != nil {
						t.Fatal(err)
					}
				} else if err := ch.Terminate("interop"); err != nil {
					t.Fatalf("strongSwan terminate: %v", err)
				}
				if err := ch.WaitNoSAs(10 * time.Second); err != nil {
					t.Errorf("strongSwan after delete (from us: %v): %v", deleteFromUs, err)
				}
				if err := pl.WaitNoSAs(10 * time.Second); err != nil {
					t.Errorf("us after delete (from us: %v): %v", deleteFromUs, err)
				}
			})
		}
	}
}

// TestStrongSwanAutoStart: our conn with auto=start comes up by itself.
func TestStrongSwanAutoStart(t *testing.T) {
	pl, ch := setup(t, proposalCases[3], "start")
	checkEstablished(t, pl, ch, proposalCases[3], true)
}

// TestStrongSwanWrongPSK: the peer refuses our PSK, and we say so.
func TestStrongSwanWrongPSK(t *testing.T) {
	peers.RequireCharon(t)
	ours, theirs, _ := testnet.Pair(t, "ours", "theirs")
	conf := "conn interop\n\tleft=192.0.2.1\n\tleftid=@ours.example\n\tright=192.0.2.2\n\trightid=@theirs.example\n" +
		"\tauthby=secret\n\tencapsulation=yes\n\tauto=add\n\tretransmit-timeout=5s\n"
	pl := peers.StartPluto(t, ours, peers.PlutoConfig{BinDir: binDir, Conf: conf,
		Secrets: "@ours.example @theirs.example : PSK \"not the secret strongSwan has\"\n",
		Args:    []string{"--use-netstack", "--listen", "192.0.2.1"}, Env: memoryKernel})
	peers.StartCharon(t, theirs, peers.CharonConfig{}, peers.SwanConn{Name: "interop", LocalAddrs: []string{"192.0.2.2"},
		RemoteAddrs: []string{"192.0.2.1"}, LocalID: "theirs.example", RemoteID: "ours.example", PSK: psk, Encap: true,
		Children: []peers.SwanChild{{Name: "interop", LocalTS: []string{"192.0.2.2/32"}, RemoteTS: []string{"192.0.2.1/32"}}}})
	err := pl.Up("interop")
	if err == nil || !strings.Contains(err.Error(), "AUTHENTICATION_FAILED") {
		t.Fatalf("up with the wrong PSK: %v; want a failure naming AUTHENTICATION_FAILED", err)
	}
	if err := pl.WaitLog("peer rejected our authentication", 5*time.Second); err != nil {
		t.Errorf("our log does not say in words that the peer rejected our PSK: %v\n%s", err, pl.Log())
	}
	if err := pl.WaitNoSAs(5 * time.Second); err != nil {
		t.Error(err)
	}
}
