package peers

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// SwanConn is one connection in swanctl.conf (connections.<Name>), with its
// PSK in the secrets section. Empty fields are left out, so strongSwan's
// defaults apply.
type SwanConn struct {
	Name        string
	LocalAddrs  []string // local_addrs
	RemoteAddrs []string // remote_addrs
	LocalPort   int      // local_port (0: default)
	RemotePort  int      // remote_port (0: default)
	LocalID     string   // local.id (auth = psk)
	RemoteID    string   // remote.id (auth = psk)
	PSK         string   // secrets.ike-<Name>: the shared secret for LocalID and RemoteID
	Proposals   []string // IKE proposals, e.g. "aes128gcm16-prfsha256-ecp256"
	// Encap forces UDP encapsulation (encap = yes): needed with
	// kernel-libipsec, which always sends ESP in UDP.
	Encap       bool
	Mobike      *bool  // mobike (nil: default)
	RekeyTime   string // rekey_time (IKE SA), e.g. "4h" or "0"
	ReauthTime  string // reauth_time
	OverTime    string // over_time
	DPDDelay    string // dpd_delay
	DPDTimeout  string // dpd_timeout
	KeyingTries int    // keyingtries (0: default)
	Children    []SwanChild
	// Extra holds more settings for the connection section, key = value.
	Extra map[string]string
}

// SwanChild is one child SA of a SwanConn (connections.<conn>.children.<Name>).
type SwanChild struct {
	Name         string
	LocalTS      []string // local_ts
	RemoteTS     []string // remote_ts
	ESPProposals []string // esp_proposals, e.g. "aes128gcm16"
	Mode         string   // mode: tunnel (default) or transport
	StartAction  string   // start_action: none, trap, start
	CloseAction  string   // close_action
	DPDAction    string   // dpd_action
	RekeyTime    string   // rekey_time
	LifeTime     string   // life_time
	Extra        map[string]string
}

// SwanctlConf renders conns as a swanctl.conf: a connections section and a
// secrets section with one ike-<Name> PSK per connection that has one.
func SwanctlConf(conns []SwanConn) (string, error) {
	var w confWriter
	w.open("connections")
	for _, c := range conns {
		if err := checkName("connection", c.Name); err != nil {
			return "", err
		}
		w.open(c.Name)
		w.kv("version", "2")
		w.list("local_addrs", c.LocalAddrs)
		w.list("remote_addrs", c.RemoteAddrs)
		w.num("local_port", c.LocalPort)
		w.num("remote_port", c.RemotePort)
		w.list("proposals", c.Proposals)
		if c.Encap {
			w.kv("encap", "yes")
		}
		if c.Mobike != nil {
			w.kv("mobike", yesNo(*c.Mobike))
		}
		w.kv("rekey_time", c.RekeyTime)
		w.kv("reauth_time", c.ReauthTime)
		w.kv("over_time", c.OverTime)
		w.kv("dpd_delay", c.DPDDelay)
		w.kv("dpd_timeout", c.DPDTimeout)
		w.num("keyingtries", c.KeyingTries)
		w.extra(c.Extra)
		w.open("local")
		w.kv("auth", "psk")
		w.kv("id", c.LocalID)
		w.close()
		w.open("remote")
		w.kv("auth", "psk")
		w.kv("id", c.RemoteID)
		w.close()
		w.open("children")
		for _, ch := range c.Children {
			if err := checkName("child", ch.Name); err != nil {
				return "", err
			}
			w.open(ch.Name)
			w.list("local_ts", ch.LocalTS)
			w.list("remote_ts", ch.RemoteTS)
			w.list("esp_proposals", ch.ESPProposals)
			w.kv("mode", ch.Mode)
			w.kv("start_action", ch.StartAction)
			w.kv("close_action", ch.CloseAction)
			w.kv("dpd_action", ch.DPDAction)
			w.kv("rekey_time", ch.RekeyTime)
			w.kv("life_time", ch.LifeTime)
			w.extra(ch.Extra)
			w.close()
		}
		w.close() // children
		w.close() // conn
	}
	w.close() // connections
	w.open("secrets")
	for _, c := range conns {
		if c.PSK == "" {
			continue
		}
		w.open("ike-" + c.Name)
		if c.LocalID != "" {
			w.kv("id-local", c.LocalID)
		}
		if c.RemoteID != "" {
			w.kv("id-remote", c.RemoteID)
		}
		w.kv("secret", strconv.Quote(c.PSK))
		w.close()
	}
	w.close()
	if w.err != nil {
		return "", w.err
	}
	return w.b.String(), nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func checkName(what, name string) error {
	if name == "" {
		return fmt.Errorf("swanctl.conf: %s without a name", what)
	}
	for _, r := range name {
		if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return fmt.Errorf("swanctl.conf: %s name %q: only letters, digits, '-' and '_' allowed", what, name)
		}
	}
	return nil
}

// confWriter writes strongSwan's settings syntax, refusing values that would
// break it.
type confWriter struct {
	b     strings.Builder
	depth int
	err   error
}

func (w *confWriter) indent() { w.b.WriteString(strings.Repeat("  ", w.depth)) }

func (w *confWriter) open(name string) {
	w.indent()
	w.b.WriteString(name + " {\n")
	w.depth++
}

func (w *confWriter) close() {
	w.depth--
	w.indent()
	w.b.WriteString("}\n")
}

func (w *confWriter) kv(k, v string) {
	if v == "" {
		return
	}
	if strings.ContainsAny(v, "\n{}#") && !(strings.HasPrefix(v, `"`) && !strings.Contains(v, "\n")) {
		if w.err == nil {
			w.err = fmt.Errorf("swanctl.conf: value %q for %s contains a newline, brace or '#'", v, k)
		}
		return
	}
	w.indent()
	fmt.Fprintf(&w.b, "%s = %s\n", k, v)
}

func (w *confWriter) list(k string, vs []string) { w.kv(k, strings.Join(vs, ",")) }

func (w *confWriter) num(k string, n int) {
	if n != 0 {
		w.kv(k, strconv.Itoa(n))
	}
}

func (w *confWriter) extra(m map[string]string) {
	for _, k := range sortedKeys(m) {
		w.kv(k, m[k])
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// IKESA is one IKE SA as `swanctl --list-sas` reports it.
type IKESA struct {
	Name         string // the connection's name
	UniqueID     int
	Version      int
	State        string // CREATED, CONNECTING, ESTABLISHED, REKEYING, DELETING, ...
	LocalHost    string
	LocalPort    int
	LocalID      string
	RemoteHost   string
	RemotePort   int
	RemoteID     string
	Initiator    bool
	InitiatorSPI uint64
	ResponderSPI uint64
	NATAny       bool // some NAT detected (or faked, as kernel-libipsec does)
	EncrAlg      string
	EncrKeysize  int
	IntegAlg     string
	PRFAlg       string
	DHGroup      string
	// Proposal is the negotiated suite in swanctl's pretty form, e.g.
	// "AES_GCM_16-128/PRF_HMAC_SHA2_256/ECP_256".
	Proposal string
	Children []ChildSA
	// Raw holds every scalar the daemon sent, by its vici key.
	Raw map[string]string
}

// ChildSA is one child SA of an IKESA.
type ChildSA struct {
	Name        string
	UniqueID    int
	ReqID       int
	State       string // INSTALLED, REKEYING, ...
	Mode        string // TUNNEL, TRANSPORT
	Protocol    string // ESP, AH
	Encap       bool
	SPIIn       uint32
	SPIOut      uint32
	EncrAlg     string
	EncrKeysize int
	IntegAlg    string
	DHGroup     string
	// Proposal is the negotiated suite, e.g. "AES_GCM_16-128".
	Proposal   string
	BytesIn    uint64
	PacketsIn  uint64
	BytesOut   uint64
	PacketsOut uint64
	LocalTS    []string
	RemoteTS   []string
	Raw        map[string]string
}

func (sa IKESA) hasInstalled(children []string) bool {
	for _, name := range children {
		if _, ok := sa.Child(name); !ok {
			return false
		}
	}
	return true
}

// Child returns the child SA called name in state INSTALLED, if any.
func (sa IKESA) Child(name string) (ChildSA, bool) {
	for _, c := range sa.Children {
		if c.Name == name && c.State == "INSTALLED" {
			return c, true
		}
	}
	return ChildSA{}, false
}

// viciNode is one section of swanctl's --pretty output.
type viciNode struct {
	name     string
	kv       map[string]string
	lists    map[string][]string
	sections []*viciNode
}

// parsePretty parses swanctl's --pretty output: "name {" opens a section,
// "}" closes it, "key = [" starts a list ended by "]", "key = value" is a
// scalar. It returns the top-level sections (events and the reply).
func parsePretty(text string) ([]*viciNode, error) {
	root := &viciNode{}
	stack := []*viciNode{root}
	var listKey string
	inList := false
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" {
			continue
		}
		cur := stack[len(stack)-1]
		switch {
		case inList:
			if line == "]" {
				inList = false
				continue
			}
			cur.lists[listKey] = append(cur.lists[listKey], line)
		case line == "}":
			if len(stack) == 1 {
				return nil, fmt.Errorf("swanctl output line %d: unbalanced '}'", i+1)
			}
			stack = stack[:len(stack)-1]
		case strings.HasSuffix(line, " {") && !strings.Contains(line, " = "):
			n := &viciNode{name: strings.TrimSuffix(line, " {"), kv: map[string]string{}, lists: map[string][]string{}}
			cur.sections = append(cur.sections, n)
			stack = append(stack, n)
		case strings.Contains(line, " = "):
			if len(stack) == 1 {
				return nil, fmt.Errorf("swanctl output line %d: %q outside any section", i+1, line)
			}
			k, v, _ := strings.Cut(line, " = ")
			if v == "[" {
				listKey, inList = k, true
				cur.lists[k] = []string{}
				continue
			}
			cur.kv[k] = v
		default:
			// swanctl prints log lines and messages too; ignore them at
			// the top level only.
			if len(stack) > 1 {
				return nil, fmt.Errorf("swanctl output line %d: unexpected %q", i+1, line)
			}
		}
	}
	if len(stack) != 1 || inList {
		return nil, fmt.Errorf("swanctl output ends inside a section")
	}
	return root.sections, nil
}

// ParseListSAs parses the output of `swanctl --list-sas --pretty`.
func ParseListSAs(text string) ([]IKESA, error) {
	top, err := parsePretty(text)
	if err != nil {
		return nil, err
	}
	var sas []IKESA
	for _, ev := range top {
		if ev.name != "list-sa event" {
			continue
		}
		for _, n := range ev.sections {
			sa := IKESA{
				Name:         n.name,
				UniqueID:     atoi(n.kv["uniqueid"]),
				Version:      atoi(n.kv["version"]),
				State:        n.kv["state"],
				LocalHost:    n.kv["local-host"],
				LocalPort:    atoi(n.kv["local-port"]),
				LocalID:      n.kv["local-id"],
				RemoteHost:   n.kv["remote-host"],
				RemotePort:   atoi(n.kv["remote-port"]),
				RemoteID:     n.kv["remote-id"],
				Initiator:    n.kv["initiator"] == "yes",
				InitiatorSPI: hex64(n.kv["initiator-spi"]),
				ResponderSPI: hex64(n.kv["responder-spi"]),
				NATAny:       n.kv["nat-any"] == "yes",
				EncrAlg:      n.kv["encr-alg"],
				EncrKeysize:  atoi(n.kv["encr-keysize"]),
				IntegAlg:     n.kv["integ-alg"],
				PRFAlg:       n.kv["prf-alg"],
				DHGroup:      n.kv["dh-group"],
				Raw:          n.kv,
			}
			sa.Proposal = suite(sa.EncrAlg, sa.EncrKeysize, sa.IntegAlg, sa.PRFAlg, sa.DHGroup)
			for _, cs := range n.sections {
				if cs.name != "child-sas" {
					continue
				}
				for _, c := range cs.sections {
					ch := ChildSA{
						Name:        c.kv["name"],
						UniqueID:    atoi(c.kv["uniqueid"]),
						ReqID:       atoi(c.kv["reqid"]),
						State:       c.kv["state"],
						Mode:        c.kv["mode"],
						Protocol:    c.kv["protocol"],
						Encap:       c.kv["encap"] == "yes",
						SPIIn:       uint32(hex64(c.kv["spi-in"])),
						SPIOut:      uint32(hex64(c.kv["spi-out"])),
						EncrAlg:     c.kv["encr-alg"],
						EncrKeysize: atoi(c.kv["encr-keysize"]),
						IntegAlg:    c.kv["integ-alg"],
						DHGroup:     c.kv["dh-group"],
						BytesIn:     atou(c.kv["bytes-in"]),
						PacketsIn:   atou(c.kv["packets-in"]),
						BytesOut:    atou(c.kv["bytes-out"]),
						PacketsOut:  atou(c.kv["packets-out"]),
						LocalTS:     c.lists["local-ts"],
						RemoteTS:    c.lists["remote-ts"],
						Raw:         c.kv,
					}
					ch.Proposal = suite(ch.EncrAlg, ch.EncrKeysize, ch.IntegAlg, "", ch.DHGroup)
					sa.Children = append(sa.Children, ch)
				}
			}
			sas = append(sas, sa)
		}
	}
	return sas, nil
}

// suite joins algorithm names the way swanctl's pretty listing does.
func suite(encr string, keysize int, integ, prf, dh string) string {
	var parts []string
	if encr != "" {
		if keysize != 0 {
			encr += "-" + strconv.Itoa(keysize)
		}
		parts = append(parts, encr)
	}
	for _, p := range []string{integ, prf, dh} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "/")
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func atou(s string) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

func hex64(s string) uint64 {
	n, _ := strconv.ParseUint(s, 16, 64)
	return n
}
