package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// VirtualPrivate is the virtual-private= setting (also pluto's
// --virtual-private flag): the private networks a peer behind NAT may
// claim as its subnet, with exclusions.
type VirtualPrivate struct {
	Include []netip.Prefix
	Exclude []netip.Prefix
}

// ParseVirtualPrivate reads a comma-separated list of %v4:PREFIX,
// %v6:PREFIX, %v4:!PREFIX and %v6:!PREFIX entries (! excludes).
func ParseVirtualPrivate(s string) (VirtualPrivate, error) {
	var vp VirtualPrivate
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		family, net, ok := strings.Cut(item, ":")
		family = strings.ToLower(family)
		if !ok || (family != "%v4" && family != "%v6") {
			return VirtualPrivate{}, fmt.Errorf("%q: want %%v4:PREFIX, %%v6:PREFIX or %%v4:!PREFIX", item)
		}
		exclude := strings.HasPrefix(net, "!")
		net = strings.TrimPrefix(net, "!")
		p, err := netip.ParsePrefix(net)
		if err != nil {
			return VirtualPrivate{}, fmt.Errorf("%q: %q is not a prefix", item, net)
		}
		if p.Addr().Is4() != (family == "%v4") {
			return VirtualPrivate{}, fmt.Errorf("%q: address family does not match %s", item, family)
		}
		if p != p.Masked() {
			return VirtualPrivate{}, fmt.Errorf("%q: host bits set (did you mean %s?)", item, p.Masked())
		}
		if exclude {
			vp.Exclude = append(vp.Exclude, p)
		} else {
			vp.Include = append(vp.Include, p)
		}
	}
	return vp, nil
}

// Allows reports whether a peer may claim prefix: it must lie inside an
// included network and overlap no excluded one. An empty VirtualPrivate
// allows nothing.
func (vp VirtualPrivate) Allows(prefix netip.Prefix) bool {
	prefix = prefix.Masked()
	inside := false
	for _, in := range vp.Include {
		if in.Bits() <= prefix.Bits() && in.Contains(prefix.Addr()) {
			inside = true
			break
		}
	}
	if !inside {
		return false
	}
	for _, ex := range vp.Exclude {
		if ex.Overlaps(prefix) {
			return false
		}
	}
	return true
}

// String returns the setting in its file syntax.
func (vp VirtualPrivate) String() string {
	var s []string
	add := func(p netip.Prefix, bang string) {
		fam := "%v6:"
		if p.Addr().Is4() {
			fam = "%v4:"
		}
		s = append(s, fam+bang+p.String())
	}
	for _, p := range vp.Include {
		add(p, "")
	}
	for _, p := range vp.Exclude {
		add(p, "!")
	}
	return strings.Join(s, ",")
}
