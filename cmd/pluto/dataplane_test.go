package main

import (
	"net/netip"
	"strings"
	"testing"

	"goswan/config"
	"goswan/kernel"
)

// TestNetstackRefusesTransport: with --use-netstack a type=transport conn
// is refused when it is loaded, with words that say why, and the data
// plane is not started by it.
func TestNetstackRefusesTransport(t *testing.T) {
	s := &settings{backend: kernel.Netstack}
	dp := newDataPlane(s, nil, nil)
	c := &config.Conn{Name: "tr", Type: "transport",
		Left:  config.End{Addr: netip.MustParseAddr("192.0.2.1"), SourceIP: netip.MustParseAddr("10.0.1.1")},
		Right: config.End{Addr: netip.MustParseAddr("192.0.2.2")}}
	err := dp.addConn(c)
	if err == nil || !strings.Contains(err.Error(), "type=transport is not supported with --use-netstack") {
		t.Fatalf("addConn(type=transport) on a netstack: %v", err)
	}
	if dp.us != nil {
		t.Fatal("the data plane started for a refused conn")
	}
}

// TestTransportTunnelAddrs: a transport conn's subnets (the host itself)
// are never tunnel addresses; its sourceip= is.
func TestTransportTunnelAddrs(t *testing.T) {
	host := netip.MustParsePrefix("192.0.2.1/32")
	c := &config.Conn{Type: "transport", Left: config.End{Addr: host.Addr(), Subnets: []netip.Prefix{host}}}
	if got := tunnelAddrs(c, []netip.Addr{host.Addr()}); len(got) != 0 {
		t.Errorf("transport conn: tunnel addresses %v, want none", got)
	}
	c.Type = "tunnel"
	if got := tunnelAddrs(c, []netip.Addr{host.Addr()}); len(got) != 1 {
		t.Errorf("tunnel conn with a one-host subnet: tunnel addresses %v, want it", got)
	}
	c.Type = "transport"
	c.Left.SourceIP = netip.MustParseAddr("10.0.1.1")
	if got := tunnelAddrs(c, []netip.Addr{host.Addr()}); len(got) != 1 || got[0] != c.Left.SourceIP {
		t.Errorf("transport conn with sourceip: tunnel addresses %v, want [%v]", got, c.Left.SourceIP)
	}
}
