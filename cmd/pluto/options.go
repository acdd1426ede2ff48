package main

// The command line of ipsec-pluto(8), spelled as in the man page, plus the
// goswan additions (--use-userspace, --use-netstack, --ikeport, --natikeport,
// --ctlgroup). Flags are parsed into options; options are then merged with
// the `config setup` section of --config (the command line wins) into the
// settings the daemon runs with.

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"goswan/kernel"
)

// Default paths, as Libreswan's.
const (
	defaultRundir      = "/run/pluto"
	defaultSecretsfile = "/etc/ipsec.secrets"
	defaultIpsecdir    = "/etc/ipsec.d"
	defaultNssdir      = "/var/lib/ipsec/nss"
)

// options holds the command line as given; flagSet remembers which flags
// were set so that the merge with `config setup` knows who wins.
type options struct {
	help, version, nofork        bool
	rundir                       string
	leakDetective, efenceProtect bool
	stderrlog                    bool
	logfile                      string
	logNoTime, logNoAppend       bool
	logNoIP, logNoAudit          bool
	config, secretsfile          string
	ipsecdir, nssdir, coredir    string
	vendorid                     string
	uniqueids                    bool
	virtualPrivate               string
	keepAlive                    int
	forceBusy, crlStrict         bool
	crlCheckInterval             int
	ocspEnable, ocspStrict       bool
	ocspTimeout                  int
	ocspURI, ocspMethod          string
	ocspCacheMinAge              int
	ocspCacheMaxAge              int
	listen                       []string
	nhelpers, seedbits           int
	statsbin                     string
	secctxAttrType               int
	useXFRM, useBSDKAME          bool
	useUserspace, useNetstack    bool
	ikeport, natikeport          int
	ctlGroup                     string
	tunName                      string
	netstackSOCKS5               []string
	netstackForward              []string
	netstackExpose               []string
	debug                        debugSpecs // --debug and --no-debug, in the order given
	flags                        *pflag.FlagSet
}

// debugSpecs collects --debug CLASS and --no-debug CLASS in command-line
// order, so that "--debug all --no-debug crypt" means what it says.
type debugSpecs struct {
	specs *[]string
	neg   bool
}

func (d debugSpecs) String() string { return strings.Join(*d.specs, " ") }
func (d debugSpecs) Type() string   { return "CLASS" }
func (d debugSpecs) Set(v string) error {
	for _, c := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
		if d.neg {
			c = "no-" + strings.TrimPrefix(c, "no-")
		}
		*d.specs = append(*d.specs, c)
	}
	return nil
}

func newFlagSet(o *options, stderr io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet("pluto", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	o.flags = fs
	specs := []string{}
	o.debug = debugSpecs{specs: &specs}

	fs.BoolVar(&o.help, "help", false, "show this usage message")
	fs.BoolVar(&o.version, "version", false, "show the version")

	fs.BoolVar(&o.nofork, "nofork", false, `stay in the foreground; print "Pluto initialized" once the lock file and control socket exist`)
	fs.StringVar(&o.rundir, "rundir", defaultRundir, "run directory holding pluto.pid (the lock file) and pluto.ctl (the control socket)")
	fs.StringVar(&o.ctlGroup, "ctlgroup", "", "group (name or gid) allowed to use pluto.ctl; the socket is then mode 0660 instead of 0600")
	fs.BoolVar(&o.leakDetective, "leak-detective", false, "at shutdown, report SAs, goroutines and pooled buffers not released, and exit non-zero if any")
	fs.BoolVar(&o.efenceProtect, "efence-protect", false, "accepted for compatibility; Go's memory safety makes it unnecessary")

	fs.BoolVar(&o.stderrlog, "stderrlog", false, "log to standard error instead of syslog")
	fs.StringVar(&o.logfile, "logfile", "", "log to FILE instead of syslog (appended to; see logfile=)")
	fs.BoolVar(&o.logNoTime, "log-no-time", false, "no timestamp prefix on lines written to a file or standard error (logtime=no)")
	fs.BoolVar(&o.logNoAppend, "log-no-append", false, "truncate the log file at start instead of appending (logappend=no)")
	fs.BoolVar(&o.logNoIP, "log-no-ip", false, "replace every IP address in the log with a placeholder (logip=no)")
	fs.BoolVar(&o.logNoAudit, "log-no-audit", false, "do not write audit lines (audit-log=no)")

	fs.StringVar(&o.config, "config", "", "read `config setup` from FILE and load its conns that have auto=add, ondemand or start")
	fs.StringVar(&o.secretsfile, "secretsfile", defaultSecretsfile, "the secrets file; a glob: every matching file is read")
	fs.StringVar(&o.ipsecdir, "ipsecdir", defaultIpsecdir, "directory that relative include and key paths are resolved against")
	fs.StringVar(&o.nssdir, "nssdir", defaultNssdir, "the trust store, a folder of PEM or DER files (no NSS database): cacerts/ the trusted CAs; certs/ our certificates, each optionally followed by its intermediates, named by leftcert= (file name, nickname or CN); private/ their keys (PKCS#8, PKCS#1, SEC1; mode 0700; encrypted keys go in ipsec.secrets as ': RSA|ECDSA|EDDSA FILE \"PASSPHRASE\"'); crls/ CRLs. Reloaded by \"ipsec rereadall\"")
	fs.StringVar(&o.coredir, "coredir", "", "directory where a crash report with every goroutine's stack is written if the daemon panics (default: the run directory)")

	fs.StringVar(&o.vendorid, "vendorid", "", "the Vendor ID to send (default: goswan's own)")
	fs.BoolVar(&o.uniqueids, "uniqueids", false, "a new IKE SA for a peer ID replaces the older ones (uniqueids=yes)")
	fs.StringVar(&o.virtualPrivate, "virtual-private", "", "subnets a peer behind NAT may claim, as %v4:10.0.0.0/8,%v6:fd00::/8,%v4:!10.1.0.0/16")
	fs.IntVar(&o.keepAlive, "keep-alive", 20, "seconds between NAT-T keep-alive packets sent from behind a NAT")
	fs.BoolVar(&o.forceBusy, "force-busy", false, "always answer IKE_SA_INIT with a COOKIE (DoS mode), for testing")
	fs.BoolVar(&o.crlStrict, "crl-strict", false, "refuse certificates whose CRL is not loaded or is stale")
	fs.IntVar(&o.crlCheckInterval, "crlcheckinterval", 0, "seconds between CRL refreshes; when set, CRLs are also fetched from the certificates' HTTP distribution points (0: never, only crls/)")
	fs.BoolVar(&o.ocspEnable, "ocsp-enable", false, "check the peer's certificates with their OCSP responder (ocsp-enable=yes)")
	fs.BoolVar(&o.ocspStrict, "ocsp-strict", false, "refuse a certificate whose OCSP responder cannot be reached or answers unknown (ocsp-strict=yes)")
	fs.IntVar(&o.ocspTimeout, "ocsp-timeout", 2, "seconds to wait for an OCSP responder (ocsp-timeout=)")
	fs.StringVar(&o.ocspURI, "ocsp-uri", "", "ask this OCSP responder instead of the one the certificate names (ocsp-uri=)")
	fs.StringVar(&o.ocspMethod, "ocsp-method", "get", "OCSP request method: get or post (ocsp-method=)")
	fs.IntVar(&o.ocspCacheMinAge, "ocsp-cache-min-age", 3600, "seconds an OCSP answer is kept at least (ocsp-cache-min-age=)")
	fs.IntVar(&o.ocspCacheMaxAge, "ocsp-cache-max-age", 86400, "seconds an OCSP answer is kept at most (ocsp-cache-max-age=)")
	fs.StringSliceVar(&o.listen, "listen", nil, "listen for IKE on these addresses only (repeatable or comma-separated; default: all)")
	fs.IntVar(&o.nhelpers, "nhelpers", -1, "crypto workers: -1 one per CPU less one (at least one), 0 do crypto inline, N exactly N")
	fs.IntVar(&o.seedbits, "seedbits", 0, "bits of extra seed to read from the system's random source at start (0: none)")
	fs.StringVar(&o.statsbin, "statsbin", "", "program run with an SA's details when it is established or deleted")
	fs.IntVar(&o.secctxAttrType, "secctx-attr-type", 32001, "the IKE attribute type used for labeled IPsec (32001..32767)")

	fs.BoolVar(&o.useXFRM, "use-xfrm", false, "install SAs into the Linux kernel over XFRM netlink (default on Linux)")
	fs.BoolVar(&o.useBSDKAME, "use-bsdkame", false, "install SAs through PF_KEY v2 (default on the BSDs)")
	fs.BoolVar(&o.useUserspace, "use-userspace", false, "do ESP in this process on a kernel TUN device")
	fs.BoolVar(&o.useNetstack, "use-netstack", false, "do ESP in this process on a gVisor netstack: no root, no /dev/net/tun")
	fs.StringVar(&o.tunName, "tun-name", "ipsec0", "name of the TUN device of --use-userspace")
	fs.StringArrayVar(&o.netstackSOCKS5, "netstack-socks5", nil, "with --use-netstack: serve a SOCKS5 proxy on ADDR:PORT whose connections leave from the tunnel (repeatable)")
	fs.StringArrayVar(&o.netstackForward, "netstack-forward", nil, "with --use-netstack: tcp|udp:[LISTENADDR:]PORT=REMOTEADDR:PORT listens on the host and connects through the tunnel (repeatable)")
	fs.StringArrayVar(&o.netstackExpose, "netstack-expose", nil, "with --use-netstack: tcp|udp:PORT=HOSTADDR:PORT listens on the tunnel address and connects to a service on the host (repeatable)")
	fs.IntVar(&o.ikeport, "ikeport", 500, "UDP port for IKE")
	fs.IntVar(&o.natikeport, "natikeport", 4500, "UDP port for IKE and ESP in UDP after NAT traversal")

	fs.Var(o.debug, "debug", "turn on debug CLASS (repeatable): none, base, cpu-usage, all, no-CLASS; help lists the classes")
	fs.Var(debugSpecs{specs: &specs, neg: true}, "no-debug", "turn off debug CLASS (repeatable)")
	return fs
}

// parseOptions reads args (without the program name).
func parseOptions(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := newFlagSet(o, stderr)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (pluto takes only options)", fs.Arg(0))
	}
	return o, nil
}

func (o *options) changed(name string) bool { return o.flags.Changed(name) }

// backend returns the data plane the --use-* flags name, or "" if none.
func (o *options) backend() (kernel.Backend, error) {
	var chosen []kernel.Backend
	for b, set := range map[kernel.Backend]bool{
		kernel.XFRM: o.useXFRM, kernel.BSDKAME: o.useBSDKAME,
		kernel.Userspace: o.useUserspace, kernel.Netstack: o.useNetstack,
	} {
		if set {
			chosen = append(chosen, b)
		}
	}
	switch len(chosen) {
	case 0:
		return "", nil
	case 1:
		return chosen[0], nil
	}
	var names []string
	for _, b := range kernel.Backends {
		for _, c := range chosen {
			if b == c {
				names = append(names, b.Flag())
			}
		}
	}
	return "", fmt.Errorf("%s are mutually exclusive: choose one back end", strings.Join(names, " and "))
}

func usage(w io.Writer, fs *pflag.FlagSet) {
	fmt.Fprintf(w, `Usage: pluto [options]

pluto is goswan's IKEv2 daemon. It reads ipsec.conf and ipsec.secrets as
Libreswan does and is driven through its control socket by "ipsec" and
"whack". ESP runs in the kernel (--use-xfrm, --use-bsdkame) or in this
process (--use-userspace, --use-netstack).

Options:
%s
Exit status: 0 success, 1 error, 10 the lock file exists (another pluto is
running, or one died: remove RUNDIR/pluto.pid).
`, fs.FlagUsages())
}

// checkPort validates a UDP port flag or setting.
func checkPort(name string, p int) error {
	if p < 1 || p > 65535 {
		return fmt.Errorf("%s %d: a port must be 1..65535", name, p)
	}
	return nil
}

func itoa(i int) string { return strconv.Itoa(i) }
