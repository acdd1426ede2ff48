package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"goswan/proposal"
)

// Load reads the ipsec.conf at path with its includes. It returns the
// Config even when there are only warnings; when there is any error the
// error is an Errors holding all of them (the Config is still returned,
// holding what could be parsed).
func Load(path string) (*Config, error) {
	b, err := osSource.readFile(path)
	if err != nil {
		return nil, Errors{{File: path, Msg: err.Error()}}
	}
	return parse(path, b, osSource)
}

// Parse parses an ipsec.conf held in memory; filename names it in
// diagnostics and includes are resolved relative to its directory.
func Parse(filename string, src []byte) (*Config, error) {
	return parse(filename, src, osSource)
}

func parse(filename string, src []byte, fs source) (*Config, error) {
	l := &lexer{src: fs}
	l.lexFile(filename, src)
	r := &resolver{lexer: l, byName: map[string]*section{}, resolved: map[string]bool{}}
	cfg := &Config{Setup: DefaultSetup(), Files: l.files}
	r.check()
	r.setup(&cfg.Setup)
	cfg.Conns = r.conns()
	cfg.Warnings = l.warns
	if len(l.errs) > 0 {
		return cfg, l.errs
	}
	return cfg, nil
}

type resolver struct {
	*lexer
	byName   map[string]*section
	dflt     *section
	resolved map[string]bool // also= errors already reported
}

func (r *resolver) diag(warn bool, s *section, k kv, msg string) {
	d := &Diagnostic{File: k.file, Line: k.line, Section: s.title(), Keyword: k.as, Value: k.value, Msg: msg}
	if warn {
		r.warns = append(r.warns, d)
	} else {
		r.errs = append(r.errs, d)
	}
}

// check classifies and validates every key=value where it is written,
// rewrites keys to their canonical spelling, drops duplicates and
// indexes the conns by name.
func (r *resolver) check() {
	for _, s := range r.sections {
		if !s.setup {
			if prev, ok := r.byName[s.name]; ok {
				r.errs = append(r.errs, &Diagnostic{File: s.file, Line: s.line, Section: s.title(),
					Msg: fmt.Sprintf("conn %q is already defined at %s:%d", s.name, prev.file, prev.line)})
			} else {
				r.byName[s.name] = s
			}
			if s.name == "%default" && r.dflt == nil {
				r.dflt = s
			}
		}
		seen := map[string]kv{}
		kept := s.kvs[:0]
		for _, k := range s.kvs {
			class, canon, chk := classify(k.key, s.setup)
			k.key = canon
			switch class {
			case kwUnknown:
				r.diag(false, s, k, "unknown keyword")
				continue
			case kwWrongSection:
				if s.setup {
					r.diag(false, s, k, "not valid in config setup (it is a conn keyword)")
				} else {
					r.diag(false, s, k, "not valid in a conn (it is a config setup keyword)")
				}
				continue
			case kwUnsupported:
				r.diag(true, s, k, "Libreswan keyword not supported by goswan yet; ignored")
			case kwObsolete:
				r.diag(true, s, k, "obsolete keyword; ignored")
			}
			if k.key != "also" {
				if prev, ok := seen[k.key]; ok {
					r.diag(false, s, k, fmt.Sprintf("duplicate keyword, already set at %s:%d", prev.file, prev.line))
					continue
				}
				seen[k.key] = k
			}
			if class == kwUnsupported || class == kwObsolete {
				continue
			}
			if chk != nil && k.value != "" {
				if err := chk(k.value); err != nil {
					r.diag(false, s, k, err.Error())
					continue
				}
			}
			kept = append(kept, k)
		}
		s.kvs = kept
	}
}

// setup fills st from the config setup sections.
func (r *resolver) setup(st *Setup) {
	for _, s := range r.sections {
		if !s.setup {
			continue
		}
		for _, k := range s.kvs {
			if k.value == "" {
				continue
			}
			st.Set[k.key] = true
			v := k.value
			switch k.key {
			case "logfile":
				st.LogFile = v
			case "logtime":
				st.LogTime, _ = parseBool(v)
			case "logappend":
				st.LogAppend, _ = parseBool(v)
			case "logip":
				st.LogIP, _ = parseBool(v)
			case "audit-log":
				st.AuditLog, _ = parseBool(v)
			case "plutodebug":
				st.PlutoDebug, _ = parseDebug(v)
			case "uniqueids":
				st.UniqueIDs, _ = parseBool(v)
			case "virtual-private":
				st.VirtualPrivate, _ = ParseVirtualPrivate(v)
			case "keep-alive":
				st.KeepAlive, _ = parseDuration(v, time.Second)
			case "listen":
				words, _ := parseListen(v)
				for _, w := range words {
					a, _ := parseAddr(w)
					st.Listen = append(st.Listen, a)
				}
			case "nhelpers":
				st.NHelpers, _ = parseNHelpers(v)
			case "seedbits":
				n, _ := parseUint(v, 0, 1<<20)
				st.SeedBits = int(n)
			case "crl-strict":
				st.CRLStrict, _ = parseBool(v)
			case "crlcheckinterval":
				st.CRLCheckInterval, _ = parseDuration(v, time.Second)
			case "ocsp-enable":
				st.OCSPEnable, _ = parseBool(v)
			case "ocsp-strict":
				st.OCSPStrict, _ = parseBool(v)
			case "ocsp-uri":
				st.OCSPURI = v
			case "ocsp-timeout":
				st.OCSPTimeout, _ = parseDuration(v, time.Second)
			case "ocsp-method":
				st.OCSPMethod, _ = ocspMethodEnum.parse(v)
			case "ocsp-cache-min-age":
				st.OCSPCacheMinAge, _ = parseDuration(v, time.Second)
			case "ocsp-cache-max-age":
				st.OCSPCacheMaxAge, _ = parseDuration(v, time.Second)
			case "ikeport":
				st.IKEPort, _ = parsePort(v)
			case "nat-ikeport":
				st.NATIKEPort, _ = parsePort(v)
			case "protostack":
				st.ProtoStack, _ = protostackEnum.parse(v)
			case "ddos-ike-threshold":
				n, _ := parseUint(v, 0, 1<<31-1)
				st.DDoSIKEThreshold = int(n)
			case "netstack-socks5":
				st.NetstackSOCKS5 = splitList(v)
			case "netstack-forward":
				st.NetstackForward = splitList(v)
			case "netstack-expose":
				st.NetstackExpose = splitList(v)
			}
		}
	}
}

// conns resolves every conn except %default, in file order.
func (r *resolver) conns() []*Conn {
	var out []*Conn
	for _, s := range r.sections {
		if s.setup || s.name == "%default" || r.byName[s.name] != s {
			continue
		}
		merged := map[string]kv{}
		r.merge(s, merged, []string{s.name})
		if r.dflt != nil {
			r.merge(r.dflt, merged, []string{r.dflt.name})
		}
		out = append(out, buildConn(s, merged))
	}
	return out
}

// merge adds s's keys to merged, keys already there winning, then those of
// each also= section in order (depth first). path is the chain of also=
// sections leading to s, for loop reports.
func (r *resolver) merge(s *section, merged map[string]kv, path []string) {
	for _, k := range s.kvs {
		if k.key == "also" {
			continue
		}
		if _, ok := merged[k.key]; !ok {
			merged[k.key] = k
		}
	}
	for _, k := range s.kvs {
		if k.key != "also" {
			continue
		}
		target, ok := r.byName[k.value]
		switch {
		case k.value == "":
			r.reportOnce(s, k, "also= needs a conn name")
			continue
		case k.value == "%default":
			r.reportOnce(s, k, "also=%default is not allowed (conn %default applies to every conn)")
			continue
		case !ok:
			r.reportOnce(s, k, fmt.Sprintf("no conn named %q", k.value))
			continue
		}
		if i := slices.Index(path, k.value); i >= 0 {
			// Report each loop once, however many conns run into it.
			cycle := slices.Clone(path[i:])
			slices.Sort(cycle)
			if id := "loop:" + strings.Join(cycle, "\x00"); !r.resolved[id] {
				r.reportOnce(s, k, "also= loop: "+strings.Join(append(path[i:], k.value), " -> "))
				r.resolved[id] = true
			}
			continue
		}
		r.merge(target, merged, append(path, k.value))
	}
}

// reportOnce reports an also= error once, however many conns reach it.
func (r *resolver) reportOnce(s *section, k kv, msg string) {
	id := fmt.Sprintf("%s:%d", k.file, k.line)
	if r.resolved[id] {
		return
	}
	r.resolved[id] = true
	r.diag(false, s, k, msg)
}

// buildConn turns the merged keys of a conn into typed fields. The values
// were validated in check; parse errors cannot happen here.
func buildConn(s *section, merged map[string]kv) *Conn {
	c := &Conn{
		Name: s.name, File: s.file, Line: s.line,
		Type: "tunnel", Auto: "ignore", AuthBy: []string{"rsasig", "ecdsa"},
		IKELifetime: 8 * time.Hour, IPsecLifetime: 8 * time.Hour,
		Rekey: true, RekeyMargin: 9 * time.Minute, RekeyFuzz: 100,
		DPDAction: "hold", Encapsulation: "auto", Fragmentation: "yes",
		PFS: true, ReplayWindow: 128, ESN: "either", KeyExchange: "ikev2",
		RetransmitInterval: 500 * time.Millisecond, RetransmitTimeout: 60 * time.Second,
		Raw: map[string]string{},
	}
	c.Left.SendCert, c.Right.SendCert = "sendifasked", "sendifasked"
	for key, k := range merged {
		c.Raw[key] = k.value
		if k.value == "" {
			continue // key= resets to the default
		}
		c.set(key, k.value)
	}
	return c
}

func (c *Conn) set(key, v string) {
	secs := func() time.Duration { d, _ := parseDuration(v, time.Second); return d }
	yes := func() bool { b, _ := parseBool(v); return b }
	switch key {
	case "type":
		c.Type, _ = typeEnum.parse(v)
	case "auto":
		c.Auto, _ = autoEnum.parse(v)
	case "authby":
		c.AuthBy, _ = parseAuthBy(v)
	case "ike":
		c.IKE, _ = proposal.ParseIKE(v)
	case "esp":
		c.ESP, _ = proposal.ParseESP(v)
	case "ikelifetime":
		c.IKELifetime = secs()
	case "ipsec-lifetime":
		c.IPsecLifetime = secs()
	case "rekey":
		c.Rekey = yes()
	case "rekeymargin":
		c.RekeyMargin = secs()
	case "rekeyfuzz":
		c.RekeyFuzz, _ = parsePercent(v)
	case "dpddelay":
		c.DPDDelay = secs()
	case "dpdtimeout":
		c.DPDTimeout = secs()
	case "dpdaction":
		c.DPDAction, _ = dpdActionEnum.parse(v)
	case "encapsulation":
		c.Encapsulation, _ = encapsulationEnum.parse(v)
	case "fragmentation":
		c.Fragmentation, _ = fragmentationEnum.parse(v)
	case "mobike":
		c.MOBIKE = yes()
	case "pfs":
		c.PFS = yes()
	case "narrowing":
		c.Narrowing = yes()
	case "replay-window":
		n, _ := parseUint(v, 0, 1<<32-1)
		c.ReplayWindow = uint32(n)
	case "esn":
		c.ESN, _ = esnEnum.parse(v)
	case "retransmit-interval":
		c.RetransmitInterval, _ = parseDuration(v, time.Millisecond)
	case "retransmit-timeout":
		c.RetransmitTimeout = secs()
	case "mark":
		m, _ := parseMark(v)
		c.Mark = &m
	case "vti-interface":
		c.VTIInterface = v
	case "ipsec-interface":
		c.IPsecInterface = v
	default:
		if suffix, ok := strings.CutPrefix(key, "left"); ok {
			c.Left.set(suffix, v)
		} else if suffix, ok := strings.CutPrefix(key, "right"); ok {
			c.Right.set(suffix, v)
		}
	}
}

func (e *End) set(suffix, v string) {
	switch suffix {
	case "":
		e.Host = v
		e.Addr, _ = netip.ParseAddr(v)
	case "subnet":
		p, _ := parseSubnets(v)
		e.Subnets = append(p, e.Subnets...)
	case "subnets":
		p, _ := parseSubnets(v)
		e.Subnets = append(e.Subnets, p...)
	case "sourceip":
		e.SourceIP, _ = parseAddr(v)
	case "protoport":
		e.ProtoPort, _ = parseProtoPort(v)
	case "ikeport":
		e.IKEPort, _ = parsePort(v)
	case "id":
		e.ID = v
	case "cert":
		e.Cert = v
	case "sendcert":
		e.SendCert, _ = sendcertEnum.parse(v)
	case "auth":
		e.Auth, _ = authEnum.parse(v)
	case "ca":
		e.CA = v
	}
}
