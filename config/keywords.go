package config

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"goswan/proposal"
)

// The keyword tables. A keyword is either supported (validated and turned
// into a typed field), known to Libreswan but not supported here yet (a
// warning), obsolete in Libreswan (a warning), or unknown (an error).
// Names are case-sensitive, as in Libreswan. The lists of Libreswan's
// keywords follow lib/libipsecconf/keywords.c of Libreswan 5.

// check validates a value; the error text says what is allowed.
type check func(v string) error

var (
	typeEnum = enum{words: []string{"tunnel", "transport", "passthrough", "drop", "reject"},
		aliases: map[string]string{"pass": "passthrough"}}
	autoEnum = enum{words: []string{"ignore", "add", "ondemand", "start"},
		aliases: map[string]string{"route": "ondemand", "up": "start"}}
	dpdActionEnum = enum{words: []string{"clear", "hold", "restart"},
		aliases: map[string]string{"restart_by_peer": "restart"}}
	encapsulationEnum = enum{words: []string{"yes", "no", "auto"}}
	fragmentationEnum = enum{words: []string{"yes", "no", "force"},
		aliases: map[string]string{"never": "no", "insist": "force"}}
	esnEnum      = enum{words: []string{"yes", "no", "either"}}
	sendcertEnum = enum{words: []string{"never", "sendifasked", "alwayssend"},
		aliases: map[string]string{"always": "alwayssend"}}
	authEnum = enum{words: []string{"never", "secret", "rsasig", "ecdsa", "eddsa", "null", "eaponly"},
		aliases: map[string]string{"rsa": "rsasig", "psk": "secret"}}
	ocspMethodEnum = enum{words: []string{"get", "post"}}
	protostackEnum = enum{words: []string{"xfrm", "bsdkame", "userspace", "netstack"},
		aliases: map[string]string{"netkey": "xfrm", "native": "xfrm", "auto": "xfrm", "kame": "bsdkame", "bsd": "bsdkame"}}
	authbyWords = []string{"secret", "rsasig", "rsa", "ecdsa", "eddsa", "null", "never",
		"rsa-sha1", "rsa-sha2", "rsa-sha2_256", "rsa-sha2_384", "rsa-sha2_512",
		"ecdsa-sha2", "ecdsa-sha2_256", "ecdsa-sha2_384", "ecdsa-sha2_512"}
)

func enumCheck(e enum) check   { return func(v string) error { _, err := e.parse(v); return err } }
func boolCheck(v string) error { _, err := parseBool(v); return err }
func secondsCheck(v string) error {
	_, err := parseDuration(v, time.Second)
	return err
}
func uintCheck(lo, hi uint64) check {
	return func(v string) error { _, err := parseUint(v, lo, hi); return err }
}
func anyCheck(string) error { return nil }

var debugWord = regexp.MustCompile(`^[+-]?[a-z0-9][a-z0-9_-]*$`)

func parseDebug(v string) ([]string, error) {
	words := splitList(v)
	for _, w := range words {
		if !debugWord.MatchString(strings.ToLower(w)) {
			return nil, fmt.Errorf("%q is not a debug class name", w)
		}
	}
	return words, nil
}

func parseListen(v string) ([]string, error) {
	words := splitList(v)
	for _, w := range words {
		if _, err := parseAddr(w); err != nil {
			return nil, err
		}
	}
	return words, nil
}

func parseNHelpers(v string) (int, error) {
	if v == "-1" {
		return -1, nil
	}
	n, err := parseUint(v, 0, 4096)
	if err != nil {
		return 0, errors.New("want -1 (one per CPU), 0 (none) or a number up to 4096")
	}
	return int(n), nil
}

func parseAuthBy(v string) ([]string, error) {
	words := strings.FieldsFunc(strings.ToLower(v), func(r rune) bool { return r == ',' || r == '|' || r == ' ' })
	if len(words) == 0 {
		return nil, errors.New("empty authby")
	}
	for _, w := range words {
		ok := false
		for _, a := range authbyWords {
			ok = ok || a == w
		}
		if !ok {
			return nil, fmt.Errorf("allowed values are %s", strings.Join(authbyWords, ", "))
		}
	}
	return words, nil
}

func parseKeyExchange(v string) (string, error) {
	switch strings.ToLower(v) {
	case "ikev2", "ike":
		return "ikev2", nil
	case "ikev1":
		return "", errors.New("IKEv1 is not supported; use ikev2")
	}
	return "", errors.New("allowed values are ikev2, ike")
}

func parseIKEv2(v string) error {
	switch strings.ToLower(v) {
	case "yes", "y", "on", "true", "insist", "propose", "always":
		return nil
	case "no", "n", "off", "false", "never", "permit":
		return errors.New("IKEv1 is not supported; only ikev2=yes is allowed")
	}
	return errors.New("allowed values are yes")
}

func ikeCheck(v string) error { _, err := proposal.ParseIKE(v); return err }
func espCheck(v string) error { _, err := proposal.ParseESP(v); return err }

// setupKeywords are the supported config setup keywords.
var setupKeywords = map[string]check{
	"logfile":            anyCheck,
	"logtime":            boolCheck,
	"logappend":          boolCheck,
	"logip":              boolCheck,
	"audit-log":          boolCheck,
	"plutodebug":         func(v string) error { _, err := parseDebug(v); return err },
	"uniqueids":          boolCheck,
	"virtual-private":    func(v string) error { _, err := ParseVirtualPrivate(v); return err },
	"keep-alive":         secondsCheck,
	"listen":             func(v string) error { _, err := parseListen(v); return err },
	"nhelpers":           func(v string) error { _, err := parseNHelpers(v); return err },
	"seedbits":           uintCheck(0, 1<<20),
	"crl-strict":         boolCheck,
	"crlcheckinterval":   secondsCheck,
	"ocsp-enable":        boolCheck,
	"ocsp-strict":        boolCheck,
	"ocsp-uri":           anyCheck,
	"ocsp-timeout":       secondsCheck,
	"ocsp-method":        enumCheck(ocspMethodEnum),
	"ocsp-cache-min-age": secondsCheck,
	"ocsp-cache-max-age": secondsCheck,
	"ikeport":            func(v string) error { _, err := parsePort(v); return err },
	"nat-ikeport":        func(v string) error { _, err := parsePort(v); return err },
	"protostack":         enumCheck(protostackEnum),
	"ddos-ike-threshold": uintCheck(0, 1<<31-1),
	"netstack-socks5":    anyCheck,
	"netstack-forward":   anyCheck,
	"netstack-expose":    anyCheck,
}

// setupAliases map old or alternative spellings to the canonical keyword.
var setupAliases = map[string]string{
	"plutostderrlog":     "logfile",
	"plutostderrlogtime": "logtime",
	"virtual_private":    "virtual-private",
	"natikeport":         "nat-ikeport",
}

// connKeywords are the supported conn keywords that have no left/right
// form.
var connKeywords = map[string]check{
	"also":                anyCheck,
	"type":                enumCheck(typeEnum),
	"auto":                enumCheck(autoEnum),
	"authby":              func(v string) error { _, err := parseAuthBy(v); return err },
	"ike":                 ikeCheck,
	"esp":                 espCheck,
	"ikelifetime":         secondsCheck,
	"ipsec-lifetime":      secondsCheck,
	"rekey":               boolCheck,
	"rekeymargin":         secondsCheck,
	"rekeyfuzz":           func(v string) error { _, err := parsePercent(v); return err },
	"dpddelay":            secondsCheck,
	"dpdtimeout":          secondsCheck,
	"dpdaction":           enumCheck(dpdActionEnum),
	"encapsulation":       enumCheck(encapsulationEnum),
	"fragmentation":       enumCheck(fragmentationEnum),
	"mobike":              boolCheck,
	"pfs":                 boolCheck,
	"narrowing":           boolCheck,
	"replay-window":       uintCheck(0, 1<<32-1),
	"esn":                 enumCheck(esnEnum),
	"keyexchange":         func(v string) error { _, err := parseKeyExchange(v); return err },
	"ikev2":               parseIKEv2,
	"retransmit-interval": func(v string) error { _, err := parseDuration(v, time.Millisecond); return err },
	"retransmit-timeout":  secondsCheck,
	"mark":                func(v string) error { _, err := parseMark(v); return err },
	"vti-interface":       anyCheck,
	"ipsec-interface":     anyCheck,
}

var connAliases = map[string]string{
	"salifetime":       "ipsec-lifetime",
	"lifetime":         "ipsec-lifetime",
	"keylife":          "ipsec-lifetime",
	"phase2alg":        "esp",
	"ikev1-dpdtimeout": "dpdtimeout",
}

// endKeywords are the supported left*/right* keywords, by suffix; ""
// is left= and right= themselves.
var endKeywords = map[string]check{
	"":          parseHost,
	"subnet":    func(v string) error { _, err := parseSubnets(v); return err },
	"subnets":   func(v string) error { _, err := parseSubnets(v); return err },
	"sourceip":  func(v string) error { _, err := parseAddr(v); return err },
	"protoport": func(v string) error { _, err := parseProtoPort(v); return err },
	"ikeport":   func(v string) error { _, err := parsePort(v); return err },
	"id":        parseID,
	"cert":      anyCheck,
	"sendcert":  enumCheck(sendcertEnum),
	"auth":      enumCheck(authEnum),
	"ca":        anyCheck,
}

// Libreswan 5 keywords not supported yet: accepted with a warning.
var (
	unsupportedSetup = words(`ikev1-policy curl-iface curl-timeout myvendorid syslog debug
		dnssec-enable dnssec-rootkey-file dnssec-anchors dumpdir ipsecdir nssdir secretsfile statsbin
		shuntlifetime global-redirect global-redirect-to
		ocsp-trustname ocsp-cache-size ddos-mode seccomp max-halfopen-ike ike-socket-bufsize ike-socket-errqueue
		nflog-all xfrmlifetime listen-tcp listen-udp drop-oppo-null expire-shunt-interval`)
	unsupportedConn = words(`hostaddrfamily clientaddrfamily ppk ppk-ids intermediate decap-dscp
		encap-dscp nopmtudisc pam-authorize send-redirect redirect-to accept-redirect
		accept-redirect-to nat-keepalive initial-contact cisco-unity send-no-esp-tfc iptfs
		iptfs-dont-frag iptfs-packet-size iptfs-max-queue-size iptfs-init-delay
		iptfs-reorder-window iptfs-drop-time fake-strongswan send-vendorid sha2-truncbug
		ms-dh-downgrade pfs-rekey-workaround require-id-on-certificate dns-match-id
		ipsec-max-bytes ipsec-max-packets ikepad nat-ikev1-method policy-label sec-label
		remote-peer-type remote_peer_type nm-configured xauthby xauthfail modecfgpull modecfgdns
		modecfgdomains modecfgbanner ignore-peer-dns mark-in mark-out vti-routing vti-shared
		nic-offload overlapip reauth keyingtries failureshunt negotiationshunt enable-tcp
		tcp-remoteport connalias ah phase2 compress metric sendca mtu priority tfc reqid nflog
		aggressive aggrmode debug plutodebug session-resumption`)
	unsupportedEnd = words(`interface-ip vti nexthop updown rsasigkey ecdsakey pubkey ckaid
		xauthserver xauthclient modecfgserver modecfgclient username xauthusername addresspool
		cat autheap groundhog`)
	obsoleteSetup = words(`interfaces klipsdebug oe nat_traversal force_keepalive disable_port_floating
		plutofork force_busy force-busy strictcrlpolicy crl_strict ocsp_strict ocsp_enable ocsp_uri
		ocsp_timeout ocsp_trust_name hidetos fragicmp overridemtu plutorestartoncrash perpeerlog
		perpeerlogdir myid keep_alive nat_ikeport secctx-attr-type ikev1-secctx-attr-type
		ddos-ike-treshold`)
	obsoleteConn = words(`connaddrfamily auth pfsgroup ikelifetime_ms salifetime_ms rekeymargin_ms
		labeled-ipsec loopback`)
)

func words(s string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(s) {
		m[w] = true
	}
	return m
}

// keywordClass is what the tables say about one keyword in one section.
type keywordClass int

const (
	kwUnknown keywordClass = iota
	kwSupported
	kwUnsupported
	kwObsolete
	kwWrongSection
	kwExtension // x-* keys: user extensions, ignored
)

// classify looks up key in a config setup (setup true) or conn section
// and returns its class, the canonical name and the checker.
func classify(key string, setup bool) (keywordClass, string, check) {
	if strings.HasPrefix(key, "x-") || strings.HasPrefix(key, "X-") {
		return kwExtension, key, nil
	}
	if setup {
		if a, ok := setupAliases[key]; ok {
			key = a
		}
		if c, ok := setupKeywords[key]; ok {
			return kwSupported, key, c
		}
		if unsupportedSetup[key] {
			return kwUnsupported, key, nil
		}
		if obsoleteSetup[key] {
			return kwObsolete, key, nil
		}
		if cl, _, _ := classify(key, false); cl != kwUnknown {
			return kwWrongSection, key, nil
		}
		return kwUnknown, key, nil
	}
	if a, ok := connAliases[key]; ok {
		key = a
	}
	if c, ok := connKeywords[key]; ok {
		return kwSupported, key, c
	}
	for _, side := range []string{"left", "right"} {
		if suffix, ok := strings.CutPrefix(key, side); ok {
			if c, ok := endKeywords[suffix]; ok {
				return kwSupported, key, c
			}
			if unsupportedEnd[suffix] {
				return kwUnsupported, key, nil
			}
		}
	}
	if unsupportedConn[key] {
		return kwUnsupported, key, nil
	}
	if obsoleteConn[key] {
		return kwObsolete, key, nil
	}
	if _, ok := setupKeywords[key]; ok || unsupportedSetup[key] || obsoleteSetup[key] || setupAliases[key] != "" {
		return kwWrongSection, key, nil
	}
	return kwUnknown, key, nil
}
