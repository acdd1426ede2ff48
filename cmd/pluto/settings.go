package main

// settings: the command line merged with `config setup` (the command line
// wins), validated, in the types the rest of the daemon reads.

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"goswan/config"
	"goswan/kernel"
	"goswan/logging"
	"goswan/tun"
)

// syslogEnv points the syslog destination somewhere else than /dev/log, as
// "NETWORK:ADDRESS" (for example unixgram:/tmp/log.sock); the tests use it.
const syslogEnv = "GOSWAN_PLUTO_SYSLOG"

// settings is everything the daemon runs with. The IKE code reads the
// protocol settings from here.
type settings struct {
	rundir   string
	ctlGroup string

	log   logging.Options
	debug logging.Classes

	configPath string
	cfg        *config.Config // nil without --config

	secretsfile string // a glob
	ipsecdir    string
	nssdir      string
	coredir     string

	vendorid         string
	uniqueids        bool
	virtualPrivate   config.VirtualPrivate
	keepAlive        time.Duration
	forceBusy        bool
	crlStrict        bool
	crlCheckInterval time.Duration
	ocspEnable       bool
	ocspStrict       bool
	ocspTimeout      time.Duration
	ocspURI          string
	ocspMethod       string // get or post
	ocspCacheMinAge  time.Duration
	ocspCacheMaxAge  time.Duration
	listen           []netip.Addr
	nhelpers         int // resolved: 0 means inline
	seedbits         int
	statsbin         string
	secctxAttrType   int
	backend          kernel.Backend
	ikeport          int
	natikeport       int
	ddosIKEThreshold int

	// The user-space data planes.
	tunName         string
	netstackSOCKS5  []string
	netstackForward []tun.Forward
	netstackExpose  []tun.Expose

	leakDetective bool
	efenceProtect bool

	warnings []string // said on stderr before detaching and in the log
}

// resolve merges the options with --config's `config setup` and checks
// them. help is non-empty when the user asked for a listing (--debug help)
// instead of a daemon.
func resolve(o *options) (s *settings, help string, err error) {
	setup := config.DefaultSetup()
	s = &settings{}
	if o.config != "" {
		path, err := filepath.Abs(o.config)
		if err != nil {
			return nil, "", err
		}
		cfg, err := config.Load(path)
		if err != nil {
			return nil, "", fmt.Errorf("--config %s:\n%v", o.config, err)
		}
		s.configPath, s.cfg, setup = path, cfg, cfg.Setup
		for _, w := range cfg.Warnings {
			s.warnings = append(s.warnings, w.Error())
		}
	}
	// fromFile says whether `config setup` set key and the flag did not.
	fromFile := func(flag, key string) bool { return !o.changed(flag) && setup.Set[key] }

	s.rundir = o.rundir
	s.ctlGroup = o.ctlGroup
	s.secretsfile = o.secretsfile
	s.ipsecdir = o.ipsecdir
	s.nssdir = o.nssdir
	s.coredir = o.coredir
	if s.coredir == "" {
		s.coredir = s.rundir
	}
	s.vendorid = o.vendorid
	s.forceBusy = o.forceBusy
	s.seedbits = o.seedbits
	s.statsbin = o.statsbin
	s.leakDetective = o.leakDetective
	s.efenceProtect = o.efenceProtect

	// Logging.
	s.log = logging.Options{
		Stderr:   o.stderrlog,
		File:     o.logfile,
		NoAppend: o.logNoAppend,
		NoTime:   o.logNoTime,
		NoIP:     o.logNoIP,
		NoAudit:  o.logNoAudit,
	}
	if fromFile("logfile", "logfile") {
		s.log.File = setup.LogFile
	}
	if fromFile("log-no-time", "logtime") {
		s.log.NoTime = !setup.LogTime
	}
	if fromFile("log-no-append", "logappend") {
		s.log.NoAppend = !setup.LogAppend
	}
	if fromFile("log-no-ip", "logip") {
		s.log.NoIP = !setup.LogIP
	}
	if fromFile("log-no-audit", "audit-log") {
		s.log.NoAudit = !setup.AuditLog
	}
	if s.log.File != "" {
		abs, err := filepath.Abs(s.log.File)
		if err != nil {
			return nil, "", err
		}
		s.log.File = abs // the daemon may run in another directory
	}
	if !s.log.Stderr && s.log.File == "" {
		s.log.Syslog = true
		if v := os.Getenv(syslogEnv); v != "" {
			network, addr, ok := strings.Cut(v, ":")
			if !ok {
				return nil, "", fmt.Errorf("%s=%q: want NETWORK:ADDRESS", syslogEnv, v)
			}
			s.log.SyslogNetwork, s.log.SyslogAddr = network, addr
		}
	}

	// Debugging: plutodebug= first, then the command line on top.
	var specs []string
	if setup.Set["plutodebug"] {
		specs = append(specs, setup.PlutoDebug...)
	}
	specs = append(specs, (*o.debug.specs)...)
	for _, sp := range specs {
		if sp == "help" {
			return nil, logging.DebugHelp(), nil
		}
	}
	if s.debug, err = logging.ParseDebug(specs, 0); err != nil {
		return nil, "", fmt.Errorf("--debug: %v", err)
	}
	s.log.Debug = s.debug

	// Protocol settings.
	// Libreswan's default is uniqueids=yes (config.DefaultSetup): the
	// flag can only say yes.
	s.uniqueids = setup.UniqueIDs || o.uniqueids
	if o.changed("virtual-private") {
		if s.virtualPrivate, err = config.ParseVirtualPrivate(o.virtualPrivate); err != nil {
			return nil, "", fmt.Errorf("--virtual-private: %v", err)
		}
	} else if setup.Set["virtual-private"] {
		s.virtualPrivate = setup.VirtualPrivate
	}
	if o.keepAlive < 0 {
		return nil, "", fmt.Errorf("--keep-alive %d: the delay must be 0 or more seconds", o.keepAlive)
	}
	s.keepAlive = time.Duration(o.keepAlive) * time.Second
	if fromFile("keep-alive", "keep-alive") {
		s.keepAlive = setup.KeepAlive
	}
	s.crlStrict = o.crlStrict
	if fromFile("crl-strict", "crl-strict") {
		s.crlStrict = setup.CRLStrict
	}
	if o.crlCheckInterval < 0 {
		return nil, "", fmt.Errorf("--crlcheckinterval %d: the interval must be 0 or more seconds", o.crlCheckInterval)
	}
	s.crlCheckInterval = time.Duration(o.crlCheckInterval) * time.Second
	if fromFile("crlcheckinterval", "crlcheckinterval") {
		s.crlCheckInterval = setup.CRLCheckInterval
	}
	s.ocspEnable, s.ocspStrict, s.ocspURI, s.ocspMethod = o.ocspEnable, o.ocspStrict, o.ocspURI, o.ocspMethod
	if fromFile("ocsp-enable", "ocsp-enable") {
		s.ocspEnable = setup.OCSPEnable
	}
	if fromFile("ocsp-strict", "ocsp-strict") {
		s.ocspStrict = setup.OCSPStrict
	}
	if fromFile("ocsp-uri", "ocsp-uri") {
		s.ocspURI = setup.OCSPURI
	}
	if fromFile("ocsp-method", "ocsp-method") {
		s.ocspMethod = setup.OCSPMethod
	}
	if s.ocspMethod = strings.ToLower(s.ocspMethod); s.ocspMethod != "get" && s.ocspMethod != "post" {
		return nil, "", fmt.Errorf("--ocsp-method %q: want get or post", s.ocspMethod)
	}
	if s.ocspURI != "" && !strings.HasPrefix(s.ocspURI, "http://") && !strings.HasPrefix(s.ocspURI, "https://") {
		return nil, "", fmt.Errorf("--ocsp-uri %q: want an http:// or https:// URL", s.ocspURI)
	}
	for _, d := range []struct {
		flag, key string
		secs      int
		fileVal   time.Duration
		dst       *time.Duration
	}{
		{"ocsp-timeout", "ocsp-timeout", o.ocspTimeout, setup.OCSPTimeout, &s.ocspTimeout},
		{"ocsp-cache-min-age", "ocsp-cache-min-age", o.ocspCacheMinAge, setup.OCSPCacheMinAge, &s.ocspCacheMinAge},
		{"ocsp-cache-max-age", "ocsp-cache-max-age", o.ocspCacheMaxAge, setup.OCSPCacheMaxAge, &s.ocspCacheMaxAge},
	} {
		if d.secs < 0 {
			return nil, "", fmt.Errorf("--%s %d: want 0 or more seconds", d.flag, d.secs)
		}
		*d.dst = time.Duration(d.secs) * time.Second
		if fromFile(d.flag, d.key) {
			*d.dst = d.fileVal
		}
	}
	if o.changed("listen") {
		for _, a := range o.listen {
			addr, err := netip.ParseAddr(strings.TrimSpace(a))
			if err != nil {
				return nil, "", fmt.Errorf("--listen %q: not an IP address", a)
			}
			s.listen = append(s.listen, addr)
		}
	} else if setup.Set["listen"] {
		s.listen = setup.Listen
	}

	nhelpers := o.nhelpers
	if fromFile("nhelpers", "nhelpers") {
		nhelpers = setup.NHelpers
	}
	if s.nhelpers, err = resolveHelpers(nhelpers); err != nil {
		return nil, "", err
	}
	if fromFile("seedbits", "seedbits") {
		s.seedbits = setup.SeedBits
	}
	if s.seedbits < 0 || s.seedbits > 8192 {
		return nil, "", fmt.Errorf("--seedbits %d: allowed 0..8192", s.seedbits)
	}
	if o.secctxAttrType < 32001 || o.secctxAttrType > 32767 {
		return nil, "", fmt.Errorf("--secctx-attr-type %d: allowed 32001..32767 (a private-use IKE attribute type)", o.secctxAttrType)
	}
	s.secctxAttrType = o.secctxAttrType
	if s.statsbin != "" {
		if st, err := os.Stat(s.statsbin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return nil, "", fmt.Errorf("--statsbin %s: not an executable file", s.statsbin)
		}
	}

	s.ikeport, s.natikeport = o.ikeport, o.natikeport
	if fromFile("ikeport", "ikeport") {
		s.ikeport = setup.IKEPort
	}
	if fromFile("natikeport", "natikeport") {
		s.natikeport = setup.NATIKEPort
	}
	if err := checkPort("--ikeport", s.ikeport); err != nil {
		return nil, "", err
	}
	if err := checkPort("--natikeport", s.natikeport); err != nil {
		return nil, "", err
	}
	if s.ikeport == s.natikeport {
		return nil, "", fmt.Errorf("--ikeport and --natikeport are both %d: they must differ", s.ikeport)
	}
	s.ddosIKEThreshold = setup.DDoSIKEThreshold

	// The back end: a --use-* flag, else protostack=, else the system's.
	if s.backend, err = o.backend(); err != nil {
		return nil, "", err
	}
	if s.backend == "" && setup.Set["protostack"] {
		if s.backend, err = kernel.ParseBackend(setup.ProtoStack); err != nil {
			return nil, "", fmt.Errorf("%s: protostack=: %v", s.configPath, err)
		}
	}
	if s.backend == "" {
		s.backend = kernel.DefaultBackend
	}

	// The netstack's servers: the flags, else config setup.
	s.tunName = o.tunName
	socks, fwds, exps := o.netstackSOCKS5, o.netstackForward, o.netstackExpose
	if !o.changed("netstack-socks5") {
		socks = setup.NetstackSOCKS5
	}
	if !o.changed("netstack-forward") {
		fwds = setup.NetstackForward
	}
	if !o.changed("netstack-expose") {
		exps = setup.NetstackExpose
	}
	for _, a := range socks {
		if _, err := netip.ParseAddrPort(a); err != nil {
			return nil, "", fmt.Errorf("--netstack-socks5 %q: want ADDR:PORT", a)
		}
		s.netstackSOCKS5 = append(s.netstackSOCKS5, a)
	}
	for _, f := range fwds {
		fw, err := tun.ParseForward(f)
		if err != nil {
			return nil, "", fmt.Errorf("--netstack-forward: %v", err)
		}
		s.netstackForward = append(s.netstackForward, fw)
	}
	for _, x := range exps {
		ex, err := tun.ParseExpose(x)
		if err != nil {
			return nil, "", fmt.Errorf("--netstack-expose: %v", err)
		}
		s.netstackExpose = append(s.netstackExpose, ex)
	}
	if s.backend != kernel.Netstack && len(s.netstackSOCKS5)+len(s.netstackForward)+len(s.netstackExpose) > 0 {
		return nil, "", fmt.Errorf("--netstack-socks5, --netstack-forward and --netstack-expose need --use-netstack (the back end is %s)", s.backend.Flag())
	}
	return s, "", nil
}

// resolveHelpers turns --nhelpers into a worker count: -1 means one per CPU
// less one, but at least one, as Libreswan; 0 means crypto inline.
func resolveHelpers(n int) (int, error) {
	switch {
	case n == -1:
		return max(1, numCPU()-1), nil
	case n >= 0 && n <= 1024:
		return n, nil
	}
	return 0, fmt.Errorf("--nhelpers %d: allowed -1 (one per CPU less one), 0 (inline) or 1..1024", n)
}

func numCPU() int { return runtime.NumCPU() }
