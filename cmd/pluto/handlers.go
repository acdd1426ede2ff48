package main

// The daemon's state and its answers to control-socket requests.
//
// Locking: d.mu guards conns and secrets. Handlers run concurrently, one
// goroutine per control connection; each takes d.mu only while it reads or
// swaps the tables, never while it writes to its client.

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"goswan/config"
	"goswan/ctl"
	"goswan/ike"
	"goswan/logging"
)

type daemon struct {
	s       *settings
	log     *logging.Logger
	started time.Time

	mu      sync.Mutex
	conns   []*config.Conn // loaded conns, in the order they were added
	secrets *config.Secrets

	ike *ikeStack // the IKE engine, its sockets and back end

	shutdown     chan struct{} // closed by a shutdown request
	shutdownOnce sync.Once
}

func newDaemon(s *settings, log *logging.Logger) *daemon {
	d := &daemon{s: s, log: log, started: time.Now(), shutdown: make(chan struct{})}
	if s.seedbits > 0 {
		seed := make([]byte, (s.seedbits+7)/8)
		if _, err := io.ReadFull(rand.Reader, seed); err != nil {
			log.Warnf("seedbits: reading %d bits from the system's random source: %v", s.seedbits, err)
		} else {
			log.Logf("seeded with %d bits from the system's random source", s.seedbits)
		}
	}
	return d
}

// close deletes the SAs with the peers, removes them from the back end and
// closes the sockets.
func (d *daemon) close() {
	if d.ike != nil {
		d.ike.close()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.conns = nil
}

// saCount is the number of IKE and Child SAs the daemon still held after
// close.
func (d *daemon) saCount() int {
	if d.ike == nil {
		return 0
	}
	return d.ike.leftover
}

// currentSecrets is what the IKE engine reads the PSKs from.
func (d *daemon) currentSecrets() *config.Secrets {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.secrets
}

// loadSecrets reads --secretsfile. At start a missing or bad file is only
// logged, as Libreswan does: the daemon can still serve conns that need no
// secret. It returns the error for rereadsecrets to report.
func (d *daemon) loadSecrets(atStart bool) error {
	sec, err := config.LoadSecrets(d.s.secretsfile, d.s.ipsecdir)
	if sec != nil {
		for _, w := range sec.Warnings {
			d.log.Warnf("%v", w)
		}
	}
	if err != nil {
		d.log.Warnf("secrets: %v", err)
		if !atStart {
			return err
		}
		return nil
	}
	d.mu.Lock()
	d.secrets = sec
	d.mu.Unlock()
	if len(sec.Files) == 0 {
		d.log.Logf("no secrets file matched %q", d.s.secretsfile)
	}
	for _, f := range sec.Files {
		d.log.Logf("loading secrets from %q", f)
	}
	return nil
}

// loadConfigConns adds the conns of --config that have auto=add, ondemand
// or start, as "ipsec start" does with Libreswan, and returns the names of
// those to initiate.
func (d *daemon) loadConfigConns() (start []string) {
	if d.s.cfg == nil {
		return nil
	}
	for _, c := range d.s.cfg.Conns {
		if c.Auto == "ignore" || c.Auto == "" {
			continue
		}
		if err := d.addConn(c, d.log.Logf); err != nil {
			d.log.Warnf("%q: not loaded: %v", c.Name, err)
			continue
		}
		if c.Auto == "start" {
			start = append(start, c.Name)
		}
	}
	return start
}

// addConn puts c in the table and the engine, replacing a conn of the
// same name as Libreswan does.
func (d *daemon) addConn(c *config.Conn, logf func(string, ...any)) error {
	if d.ike != nil {
		if d.ike.dp != nil {
			if err := d.ike.dp.addConn(c); err != nil {
				return err
			}
		}
		if err := d.ike.eng.AddConn(c); err != nil {
			return err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, old := range d.conns {
		if old.Name == c.Name {
			logf("%q: replacing older connection", c.Name)
			d.conns = append(d.conns[:i:i], d.conns[i+1:]...)
			break
		}
	}
	d.conns = append(d.conns, c)
	ci := describeConn(c)
	logf("added IKEv2 connection %q: %s...%s", c.Name, endText(ci.Left, true), endText(ci.Right, false))
	return nil
}

func (d *daemon) findConn(name string) *config.Conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (d *daemon) connList() []*config.Conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*config.Conn(nil), d.conns...)
}

// handle answers one control request. Log lines written while it runs are
// streamed to the client as well as logged.
func (d *daemon) handle(ctx context.Context, req *ctl.Request, stream func(string)) *ctl.Result {
	// tell streams a line to this request's client, masked as the log
	// is; say also logs it.
	tell := func(line string) {
		if d.s.log.NoIP {
			line = logging.MaskAddresses(line)
		}
		stream(line)
	}
	say := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		d.log.Logf("%s", line)
		tell(line)
	}

	d.log.Debugf(logging.Base, "control request %q %s", req.Command, req.Name)
	switch req.Command {
	case ctl.CmdPing:
		return ctl.OK("pong")
	case ctl.CmdVersion:
		return d.data(req, "goswan pluto "+version, map[string]string{"version": version})
	case ctl.CmdShutdown:
		d.shutdownOnce.Do(func() { close(d.shutdown) })
		return ctl.OK("")
	case ctl.CmdAdd, ctl.CmdReplace:
		return d.add(req, say)
	case ctl.CmdDelete:
		return d.delete(req, say)
	case ctl.CmdUp:
		return d.up(ctx, req, tell)
	case ctl.CmdDown:
		return d.down(ctx, req, tell)
	case ctl.CmdListen:
		// The sockets are bound to the wildcard addresses (or to the
		// --listen ones), so new interfaces need no rescan.
		for _, a := range d.ike.socks.Bound() {
			say("listening for IKE messages on %s", a)
		}
		return ctl.OK("")
	case ctl.CmdRereadSecrets, ctl.CmdRereadAll:
		if err := d.loadSecrets(false); err != nil {
			return ctl.Errorf(ctl.StatusFailed, "secrets not reloaded, the old ones stay in use: %v", err)
		}
		if req.Command == ctl.CmdRereadAll {
			if err := d.rereadCerts(); err != nil {
				return ctl.Errorf(ctl.StatusFailed, "trust store %s not reloaded, the old one stays in use: %v", d.s.nssdir, err)
			}
			say("reloaded the trust store %s", d.s.nssdir)
		} else {
			// Keys of leftcert= may live in ipsec.secrets.
			d.ike.eng.ReloadCertificates()
		}
		return ctl.OK("")
	case ctl.CmdListCerts, ctl.CmdListCACerts, ctl.CmdListCRLs, ctl.CmdListPubKeys:
		return d.listCerts(req)
	case ctl.CmdFetchCRLs:
		return d.fetchCRLs(ctx, say)
	case ctl.CmdDebug:
		return d.setDebug(req)
	case ctl.CmdStatus:
		return d.status(req, true, true, true)
	case ctl.CmdBriefStatus:
		return d.status(req, true, false, false)
	case ctl.CmdConnectionStatus:
		return d.connectionStatus(req)
	case ctl.CmdGlobalStatus:
		return d.globalStatus(req)
	case ctl.CmdShowStates:
		return d.status(req, false, false, true)
	case ctl.CmdTrafficStatus:
		return d.trafficStatus(req)
	}
	return ctl.Errorf(ctl.StatusUnknownCommand, "unknown command %q", req.Command)
}

// data answers with text and, when the client asked for it, v as JSON.
func (d *daemon) data(req *ctl.Request, text string, v any) *ctl.Result {
	if !req.JSON {
		return ctl.OK(text)
	}
	res, err := ctl.WithData(text, v)
	if err != nil {
		return ctl.Errorf(ctl.StatusFailed, "%v", err)
	}
	return res
}

func (d *daemon) add(req *ctl.Request, say func(string, ...any)) *ctl.Result {
	path := req.Config
	if path == "" {
		path = d.s.configPath
	}
	if path == "" {
		return ctl.Errorf(ctl.StatusBadRequest, "add %q: no ipsec.conf: the daemon was started without --config and the request names none", req.Name)
	}
	if !filepath.IsAbs(path) {
		return ctl.Errorf(ctl.StatusBadRequest, "add %q: config path %q is not absolute", req.Name, path)
	}
	cfg, err := config.Load(path)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			say("%s", line)
		}
		return ctl.Errorf(ctl.StatusFailed, "add %q: %s has errors; nothing was loaded", req.Name, path)
	}
	c := cfg.Conn(req.Name)
	if c == nil {
		return ctl.Errorf(ctl.StatusNotFound, "no conn %q in %s", req.Name, path)
	}
	if req.Command == ctl.CmdReplace && d.findConn(req.Name) == nil {
		say("%q: not loaded before; adding it", req.Name)
	}
	if err := d.addConn(c, say); err != nil {
		return ctl.Errorf(ctl.StatusFailed, "add %q: %v", req.Name, err)
	}
	return ctl.OK("")
}

func (d *daemon) delete(req *ctl.Request, say func(string, ...any)) *ctl.Result {
	if d.findConn(req.Name) != nil && d.ike != nil {
		if err := d.ike.eng.DeleteConn(req.Name); err != nil {
			say("%q: %v", req.Name, err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, c := range d.conns {
		if c.Name == req.Name {
			d.conns = append(d.conns[:i:i], d.conns[i+1:]...)
			say("%q: deleting connection", req.Name)
			return ctl.OK("")
		}
	}
	return ctl.Errorf(ctl.StatusNotFound, "no connection named %q is loaded", req.Name)
}

func (d *daemon) setDebug(req *ctl.Request) *ctl.Result {
	specs := strings.FieldsFunc(req.Args[ctl.ArgSet], func(r rune) bool { return r == ' ' || r == ',' })
	for _, s := range specs {
		if s == "help" {
			return ctl.OK(logging.DebugHelp())
		}
	}
	c, err := logging.ParseDebug(specs, d.log.Debug())
	if err != nil {
		return ctl.Errorf(ctl.StatusBadRequest, "debug: %v", err)
	}
	d.log.SetDebug(c)
	d.log.Logf("debug classes now: %s", c)
	return d.data(req, "", map[string]string{"debug": c.String()})
}

// connInfo is the machine form of a loaded conn.
type connInfo struct {
	Name     string   `json:"name"`
	Source   string   `json:"source"`
	Left     endInfo  `json:"left"`
	Right    endInfo  `json:"right"`
	Type     string   `json:"type"`
	Auto     string   `json:"auto"`
	AuthBy   []string `json:"authby"`
	IKE      string   `json:"ike"`
	ESP      string   `json:"esp"`
	IKELife  string   `json:"ikelifetime"`
	IPsecLif string   `json:"ipsec_lifetime"`
	State    string   `json:"state"`
}

type endInfo struct {
	Host    string   `json:"host"`
	ID      string   `json:"id,omitempty"`
	Subnets []string `json:"subnets,omitempty"`
	IKEPort int      `json:"ikeport,omitempty"`
}

func describeEnd(e *config.End) endInfo {
	ei := endInfo{Host: e.Host, ID: e.ID, IKEPort: e.IKEPort}
	for _, p := range e.Subnets {
		ei.Subnets = append(ei.Subnets, p.String())
	}
	return ei
}

func describeConn(c *config.Conn) connInfo {
	orDefault := func(v string) string {
		if v == "" {
			return "default"
		}
		return v
	}
	return connInfo{
		Name: c.Name, Source: fmt.Sprintf("%s:%d", c.File, c.Line),
		Left: describeEnd(&c.Left), Right: describeEnd(&c.Right),
		Type: c.Type, Auto: c.Auto, AuthBy: c.AuthBy,
		IKE: orDefault(c.Raw["ike"]), ESP: orDefault(c.Raw["esp"]),
		IKELife: c.IKELifetime.String(), IPsecLif: c.IPsecLifetime.String(),
		State: "unrouted",
	}
}

// endText renders one side as Libreswan does: subnet===host[id].
func endText(e endInfo, left bool) string {
	host := e.Host
	if e.ID != "" {
		host += "[" + e.ID + "]"
	}
	if len(e.Subnets) == 0 {
		return host
	}
	sub := strings.Join(e.Subnets, ",")
	if left {
		return sub + "===" + host
	}
	return host + "===" + sub
}

func connText(ci connInfo) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%q: %s...%s; %s; type=%s; auto=%s\n", ci.Name, endText(ci.Left, true), endText(ci.Right, false), ci.State, ci.Type, ci.Auto)
	fmt.Fprintf(&b, "%q:   authby=%s; ike=%s; esp=%s; ikelifetime=%s; ipsec-lifetime=%s; from %s\n",
		ci.Name, strings.Join(ci.AuthBy, "+"), ci.IKE, ci.ESP, ci.IKELife, ci.IPsecLif, ci.Source)
	return b.String()
}

// globalInfo is the machine form of the daemon's own state.
type globalInfo struct {
	Version     string   `json:"version"`
	Backend     string   `json:"backend"`
	Uptime      string   `json:"uptime"`
	Config      string   `json:"config,omitempty"`
	Secrets     []string `json:"secrets_files"`
	IKEPort     int      `json:"ikeport"`
	NATIKEPort  int      `json:"natikeport"`
	Listen      []string `json:"listen,omitempty"`
	NHelpers    int      `json:"nhelpers"`
	Debug       string   `json:"debug"`
	Conns       int      `json:"connections"`
	IKESAs      int      `json:"ike_sas"`
	ChildSAs    int      `json:"child_sas"`
	UniqueIDs   bool     `json:"uniqueids"`
	KeepAlive   string   `json:"keep_alive"`
	CRLStrict   bool     `json:"crl_strict"`
	CRLCheck    string   `json:"crlcheckinterval"`
	OCSPEnable  bool     `json:"ocsp_enable"`
	OCSPStrict  bool     `json:"ocsp_strict"`
	NSSDir      string   `json:"nssdir"`
	VirtualPriv string   `json:"virtual_private,omitempty"`
}

func (d *daemon) global() globalInfo {
	d.mu.Lock()
	var files []string
	if d.secrets != nil {
		files = d.secrets.Files
	}
	n := len(d.conns)
	d.mu.Unlock()
	est := d.ike.eng.Status()
	g := globalInfo{
		Version: version, Backend: string(d.s.backend), Uptime: time.Since(d.started).Round(time.Second).String(),
		Config: d.s.configPath, Secrets: append([]string{}, files...), IKEPort: d.s.ikeport, NATIKEPort: d.s.natikeport,
		NHelpers: d.s.nhelpers, Debug: d.log.Debug().String(), Conns: n,
		IKESAs: len(est.IKESAs), ChildSAs: len(est.ChildSAs),
		UniqueIDs: d.s.uniqueids, KeepAlive: d.s.keepAlive.String(), CRLStrict: d.s.crlStrict,
		CRLCheck: d.s.crlCheckInterval.String(), OCSPEnable: d.s.ocspEnable, OCSPStrict: d.s.ocspStrict, NSSDir: d.s.nssdir,
		VirtualPriv: d.s.virtualPrivate.String(),
	}
	for _, a := range d.s.listen {
		g.Listen = append(g.Listen, a.String())
	}
	return g
}

// statusData is the machine form of "ipsec status".
type statusData struct {
	Global      *globalInfo         `json:"global,omitempty"`
	Connections []connInfo          `json:"connections"`
	IKESAs      []ike.IKESAStatus   `json:"ike_sas"`
	ChildSAs    []ike.ChildSAStatus `json:"child_sas"`
	Counters    *ike.Counters       `json:"counters,omitempty"`
	ESP         *espStatus          `json:"esp,omitempty"`
}

func (d *daemon) status(req *ctl.Request, global, conns, states bool) *ctl.Result {
	var b strings.Builder
	sd := statusData{Connections: []connInfo{}, IKESAs: []ike.IKESAStatus{}, ChildSAs: []ike.ChildSAStatus{}}
	est := d.ike.eng.Status()
	if global {
		g := d.global()
		sd.Global = &g
		listen := "all addresses"
		if len(g.Listen) > 0 {
			listen = strings.Join(g.Listen, ", ")
		}
		fmt.Fprintf(&b, "using kernel interface: %s\n", g.Backend)
		fmt.Fprintf(&b, "IKE port %d, NAT-T port %d, on %s\n", g.IKEPort, g.NATIKEPort, listen)
		fmt.Fprintf(&b, "pluto %s, up %s, %d crypto helpers, debug: %s\n", g.Version, g.Uptime, g.NHelpers, g.Debug)
	}
	if conns {
		b.WriteString("\nConnection list:\n\n")
		active := map[string]bool{}
		for _, c := range est.ChildSAs {
			active[c.Conn] = true
		}
		for _, c := range d.connList() {
			ci := describeConn(c)
			if active[c.Name] {
				ci.State = "established"
			}
			sd.Connections = append(sd.Connections, ci)
			b.WriteString(connText(ci))
		}
		fmt.Fprintf(&b, "\nTotal IPsec connections: loaded %d, active %d\n", len(sd.Connections), len(active))
	}
	if global || states {
		if global || conns {
			b.WriteString("\n")
		}
		b.WriteString(saText(est))
		sd.IKESAs = append(sd.IKESAs, est.IKESAs...)
		sd.ChildSAs = append(sd.ChildSAs, est.ChildSAs...)
		sd.Counters = &est.Counters
		if es := d.espStatus(); es != nil {
			sd.ESP = es
			b.WriteString(es.text())
		}
	}
	return d.data(req, strings.TrimRight(b.String(), "\n"), sd)
}

func (d *daemon) connectionStatus(req *ctl.Request) *ctl.Result {
	var list []connInfo
	var b strings.Builder
	for _, c := range d.connList() {
		if req.Name != "" && c.Name != req.Name {
			continue
		}
		ci := describeConn(c)
		list = append(list, ci)
		b.WriteString(connText(ci))
	}
	if req.Name != "" && len(list) == 0 {
		return ctl.Errorf(ctl.StatusNotFound, "no connection named %q is loaded", req.Name)
	}
	if list == nil {
		list = []connInfo{}
	}
	return d.data(req, strings.TrimRight(b.String(), "\n"), map[string]any{"connections": list})
}

// globalStatus prints key=value lines, as Libreswan's globalstatus does.
func (d *daemon) globalStatus(req *ctl.Request) *ctl.Result {
	g := d.global()
	kv := map[string]any{
		"config.setup.ikeport":          g.IKEPort,
		"config.setup.natikeport":       g.NATIKEPort,
		"config.setup.nhelpers":         g.NHelpers,
		"config.setup.uniqueids":        g.UniqueIDs,
		"config.setup.keep-alive":       g.KeepAlive,
		"config.setup.crl-strict":       g.CRLStrict,
		"config.setup.crlcheckinterval": g.CRLCheck,
		"config.setup.ocsp-enable":      g.OCSPEnable,
		"config.setup.ocsp-strict":      g.OCSPStrict,
		"config.setup.nssdir":           g.NSSDir,
		"config.setup.protostack":       g.Backend,
		"config.setup.virtual-private":  g.VirtualPriv,
		"config.setup.plutodebug":       g.Debug,
		"current.connections":           g.Conns,
		"current.states.all":            g.IKESAs + g.ChildSAs,
		"current.states.ikesa":          g.IKESAs,
		"current.states.childsa":        g.ChildSAs,
		"current.uptime":                g.Uptime,
		"current.version":               g.Version,
		"current.secrets.files":         len(g.Secrets),
		"current.states.iketype.ikev2":  g.IKESAs,
		"current.states.enumerate.half": 0,
	}
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%v\n", k, kv[k])
	}
	return d.data(req, strings.TrimRight(b.String(), "\n"), kv)
}
