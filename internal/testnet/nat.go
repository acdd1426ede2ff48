package testnet

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
)

// NAT is a router namespace between an inside and an outside namespace
// that masquerades (source NAT, nftables) what leaves by the outside veth:
// the set-up for NAT traversal tests.
//
//	Inside 198.51.100.2/24 ── 198.51.100.1/24  Router  203.0.113.1/24 ── 203.0.113.2/24 Outside
//
// Inside's default route points at the router; Outside has no route back
// to 198.51.100.0/24, so only masqueraded traffic gets answers.
type NAT struct {
	Inside, Router, Outside *Namespace
	InsideLink, OutsideLink *Veth
	// InsideAddr and OutsideAddr are the end hosts' addresses; PublicAddr
	// is the router's outside address that Inside's traffic appears from.
	InsideAddr, OutsideAddr, PublicAddr netip.Addr
}

// NewNAT creates the three namespaces (labels prefixed with label) and the
// router's forwarding and masquerade rule (table "ip goswan_nat", with a
// counter).
func NewNAT(t testing.TB, label string) *NAT {
	t.Helper()
	n := &NAT{
		Inside:      NewNamespace(t, label+"in"),
		Router:      NewNamespace(t, label+"rt"),
		Outside:     NewNamespace(t, label+"out"),
		InsideAddr:  netip.MustParseAddr("198.51.100.2"),
		OutsideAddr: netip.MustParseAddr("203.0.113.2"),
		PublicAddr:  netip.MustParseAddr("203.0.113.1"),
	}
	n.InsideLink = Connect(t, n.Inside, n.Router,
		[]netip.Prefix{netip.MustParsePrefix("198.51.100.2/24")}, []netip.Prefix{netip.MustParsePrefix("198.51.100.1/24")})
	n.OutsideLink = Connect(t, n.Router, n.Outside,
		[]netip.Prefix{netip.MustParsePrefix("203.0.113.1/24")}, []netip.Prefix{netip.MustParsePrefix("203.0.113.2/24")})
	n.Inside.MustRun(t, "ip", "route", "add", "default", "via", "198.51.100.1")
	n.Router.MustRun(t, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
	rules := fmt.Sprintf(`table ip goswan_nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname %q counter masquerade
	}
}
`, n.OutsideLink.AName)
	cmd := n.Router.Command("nft", "-f", "-")
	cmd.Stdin = stringReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testnet: nft -f - in %s: %v: %s", n.Router.Name, err, out)
	}
	return n
}

var natCounterRE = regexp.MustCompile(`counter packets (\d+) bytes \d+ masquerade`)

// Masqueraded returns how many packets (connection starts) the masquerade
// rule has translated.
func (n *NAT) Masqueraded() (int, error) {
	out, err := n.Router.Run("nft", "list", "table", "ip", "goswan_nat")
	if err != nil {
		return 0, err
	}
	m := natCounterRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no masquerade counter in:\n%s", out)
	}
	return strconv.Atoi(m[1])
}
