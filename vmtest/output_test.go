package vmtest

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// caseOut is what the guest script printed for one case (see the markers
// in testdata/backends.sh).
type caseOut struct {
	name    string
	results map[string]string // KEY -> VALUE... of "@@result NAME KEY VALUE..."
	blocks  map[string]string // KIND -> text of "@@begin NAME KIND" ... "@@end"
	kinds   []string          // block kinds in the order printed
}

// parseOutput splits the console output into cases, in order.
func parseOutput(out string) ([]*caseOut, map[string]*caseOut) {
	var list []*caseOut
	byName := map[string]*caseOut{}
	get := func(name string) *caseOut {
		c := byName[name]
		if c == nil {
			c = &caseOut{name: name, results: map[string]string{}, blocks: map[string]string{}}
			byName[name] = c
			list = append(list, c)
		}
		return c
	}
	var cur *caseOut
	var kind string
	var buf strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if cur != nil {
			if l == "@@end" {
				if _, dup := cur.blocks[kind]; !dup {
					cur.kinds = append(cur.kinds, kind)
				}
				cur.blocks[kind] = buf.String()
				cur, kind = nil, ""
				buf.Reset()
				continue
			}
			buf.WriteString(l)
			buf.WriteByte('\n')
			continue
		}
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "@@case":
			if len(f) == 2 {
				get(f[1])
			}
		case "@@result":
			if len(f) >= 3 {
				get(f[1]).results[f[2]] = strings.Join(f[3:], " ")
			}
		case "@@begin":
			if len(f) == 3 {
				cur, kind = get(f[1]), f[2]
			}
		}
	}
	if cur != nil { // the output stopped inside a block
		cur.blocks[kind] = buf.String() + "(output ends here)\n"
		cur.kinds = append(cur.kinds, kind)
	}
	return list, byName
}

// seconds is the guest's uptime from t0 to t1 of the case.
func (c *caseOut) seconds() float64 {
	t0, err0 := strconv.ParseFloat(c.results["t0"], 64)
	t1, err1 := strconv.ParseFloat(c.results["t1"], 64)
	if err0 != nil || err1 != nil {
		return -1
	}
	return t1 - t0
}

// dump logs everything the case printed, for a failure.
func (c *caseOut) dump(t *testing.T) {
	t.Helper()
	var b strings.Builder
	keys := make([]string, 0, len(c.results))
	for k := range c.results {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(&b, "case %s: results:", c.name)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, c.results[k])
	}
	b.WriteString("\n")
	for _, k := range c.kinds {
		fmt.Fprintf(&b, "--- %s\n%s", k, c.blocks[k])
	}
	t.Log(b.String())
}

// rc checks that result key is "0" (an exit status).
func (c *caseOut) rc(t *testing.T, key, what string) bool {
	t.Helper()
	v, ok := c.results[key]
	switch {
	case !ok:
		t.Errorf("%s: never ran (no result %q)", what, key)
	case v != "0":
		t.Errorf("%s: exit status %s\n%s", what, v, c.blocks[key])
	default:
		return true
	}
	return false
}

func (c *caseOut) block(t *testing.T, kind string) (string, bool) {
	t.Helper()
	s, ok := c.blocks[kind]
	if !ok {
		t.Errorf("the guest printed no %s", kind)
	}
	return s, ok
}

func (c *caseOut) states(t *testing.T, kind string) []xState {
	t.Helper()
	s, ok := c.block(t, kind)
	if !ok {
		return nil
	}
	st, err := parseStates(s)
	if err != nil {
		t.Errorf("%s: %v", kind, err)
	}
	return st
}

func (c *caseOut) policies(t *testing.T, kind string) []xPolicy {
	t.Helper()
	s, ok := c.block(t, kind)
	if !ok {
		return nil
	}
	p, err := parsePolicies(s)
	if err != nil {
		t.Errorf("%s: %v", kind, err)
	}
	return p
}

// plutoStatus is the part of `ipsec status --json` the tests read.
type plutoStatus struct {
	Global struct {
		Backend string `json:"backend"`
	} `json:"global"`
	IKESAs []struct {
		Conn, State    string
		NATUs, NATPeer bool
	} `json:"ike_sas"`
	ChildSAs []childStatus `json:"child_sas"`
}

type childStatus struct {
	Conn                  string
	ReqID                 uint32
	SPIIn, SPIOut         uint32
	Mode                  string
	Encap                 bool
	Algorithms            string
	BytesIn, BytesOut     uint64
	PacketsIn, PacketsOut uint64
}

// status parses the `ipsec status --json` block kind; ok is false (and
// the test failed) when it is missing or not JSON.
func (c *caseOut) status(t *testing.T, kind string) (plutoStatus, bool) {
	t.Helper()
	var st plutoStatus
	s, ok := c.block(t, kind)
	if !ok || !c.rc(t, kind, "ipsec status --json ("+kind+")") {
		return st, false
	}
	if err := json.Unmarshal([]byte(s), &st); err != nil {
		t.Errorf("%s: %v\n%s", kind, err, s)
		return st, false
	}
	return st, true
}

// onlyChild returns the one Child SA of status kind.
func (c *caseOut) onlyChild(t *testing.T, kind string) (childStatus, bool) {
	t.Helper()
	st, ok := c.status(t, kind)
	if !ok {
		return childStatus{}, false
	}
	if len(st.ChildSAs) != 1 {
		t.Errorf("%s: want one Child SA, have %+v", kind, st.ChildSAs)
		return childStatus{}, false
	}
	return st.ChildSAs[0], true
}

// traffic is one entry of `ipsec trafficstatus --json`.
type traffic struct {
	Conn       string `json:"conn"`
	SPIIn      string `json:"spi_in"`
	SPIOut     string `json:"spi_out"`
	PacketsIn  uint64 `json:"packets_in"`
	PacketsOut uint64 `json:"packets_out"`
}

func TestParseOutput(t *testing.T) {
	list, m := parseOutput("noise\n@@case x\n@@result x t0 1.5\n@@begin x state-a\nsrc 1.1.1.1 dst 2.2.2.2\n@@end\n" +
		"[ 3.0] kernel says\n@@result x up-a 0\n@@result x t1 4.0\n@@case y\n@@begin y log-a\npartial")
	if len(list) != 2 || list[0].name != "x" || m["y"] == nil {
		t.Fatalf("cases %+v", list)
	}
	x := m["x"]
	if x.results["up-a"] != "0" || x.blocks["state-a"] != "src 1.1.1.1 dst 2.2.2.2\n" || x.seconds() != 2.5 {
		t.Errorf("x = %+v", x)
	}
	if !strings.Contains(m["y"].blocks["log-a"], "partial") {
		t.Errorf("y = %+v", m["y"])
	}
}
