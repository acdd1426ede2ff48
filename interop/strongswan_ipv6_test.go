package interop

import (
	"goswan/internal/testnet"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestStrongSwanIPv6 negotiates over IPv6 (2001:db8::1 and ::2 on the
// veth; fd00:1::/64 and fd00:2::/64 protected, with an address of each on
// lo for kernel-libipsec), us as initiator and as responder, with one
// proposal and FQDN IDs: both sides agree on the IKE SA and Child SA, the
// IKE SA runs between the IPv6 addresses on port 4500 (UDP encapsulation
// forced), the Child SA's selectors are the IPv6 subnets, and a delete from
// either side leaves no SA.
func TestStrongSwanIPv6(t *testing.T) {
	pc := proposalCase{"aes128gcm16-prfsha256-ecp256", "aes_gcm128-sha2_256-dh19", "aes_gcm128", "aes128gcm16-prfsha256-ecp256", "aes128gcm16", true, "AES_GCM_16"}
	for _, weInitiate := range []bool{true, false} {
		role := "we-respond"
		if weInitiate {
			role = "we-initiate"
		}
		t.Run(role, func(t *testing.T) {
			start := time.Now()
			tb := setupPlan(t, pc, "add", plan6)
			waitIPv6(t, tb.ours, plan6.their)
			if weInitiate {
				if err := tb.pl.Up("interop"); err != nil {
					t.Fatal(err)
				}
			} else if err := tb.ch.Initiate("interop"); err != nil {
				t.Fatalf("strongSwan initiate: %v", err)
			}
			checkEstablishedPlan(t, tb.pl, tb.ch, pc, weInitiate, plan6)
			sa, err := tb.ch.WaitEstablished("interop", time.Second, "interop")
			if err != nil {
				t.Fatal(err)
			}
			if sa.LocalHost != plan6.their || sa.RemoteHost != plan6.our || sa.RemotePort != 4500 {
				t.Errorf("strongSwan's IKE SA runs %s <-> [%s]:%d; want %s <-> [%s]:4500", sa.LocalHost, sa.RemoteHost, sa.RemotePort, plan6.their, plan6.our)
			}
			child, _ := sa.Child("interop")
			if strings.Join(child.LocalTS, ",") != plan6.theirSubnet || strings.Join(child.RemoteTS, ",") != plan6.ourSubnet {
				t.Errorf("strongSwan's Child SA selectors %v === %v; want %s === %s", child.LocalTS, child.RemoteTS, plan6.theirSubnet, plan6.ourSubnet)
			}
			st, err := tb.pl.Status()
			if err != nil {
				t.Fatal(err)
			}
			// Our status adds protocol and ports to each selector.
			const any = ":0/0-65535"
			if oc := st.ChildSAs[0]; strings.Join(oc.LocalTS, ",") != plan6.ourSubnet+any || strings.Join(oc.RemoteTS, ",") != plan6.theirSubnet+any {
				t.Errorf("our Child SA's selectors %v === %v; want %s === %s", oc.LocalTS, oc.RemoteTS, plan6.ourSubnet+any, plan6.theirSubnet+any)
			}
			// With the path primed, nothing needs a retransmission.
			if strings.Contains(tb.pl.Log(), "retransmitting") {
				t.Errorf("we retransmitted over IPv6:\n%s", tb.pl.Log())
			}
			// Our log names the peer's address as [2001:db8::2]:4500.
			if err := tb.pl.WaitLog("with ["+plan6.their+"]:"+strconv.Itoa(4500), 2*time.Second); err != nil {
				t.Error(err)
			}
			// The initiator deletes.
			if weInitiate {
				err = tb.pl.Down("interop")
			} else {
				err = tb.ch.Terminate("interop")
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := tb.ch.WaitNoSAs(5 * time.Second); err != nil {
				t.Error(err)
			}
			if err := tb.pl.WaitNoSAs(5 * time.Second); err != nil {
				t.Error(err)
			}
			t.Logf("IPv6 %s: %v", role, time.Since(start))
		})
	}
}

// waitIPv6 waits until ns reaches addr with ping. Right after testnet.Pair
// the kernel holds IPv6 packets on the new veth for up to about a second
// (the first Neighbor Solicitation goes out only then; IPv4 is not
// affected), so without this the first IKE_SA_INIT request is retransmitted
// and a test's timing says nothing about us.
func waitIPv6(t *testing.T, ns *testnet.Namespace, addr string) {
	t.Helper()
	start := time.Now()
	for {
		out, err := ns.Run("ping", "-6", "-n", "-c", "1", "-W", "1", addr)
		if err == nil {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("IPv6 between the namespaces does not work: %v\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("IPv6 path ready after %v", time.Since(start).Round(time.Millisecond))
}
