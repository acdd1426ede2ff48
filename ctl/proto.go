// Package ctl is the control-socket protocol between pluto and its clients
// (whack, ipsec) over a unix stream socket, by default /run/pluto/pluto.ctl.
//
// The protocol is a small, versioned exchange of typed messages, modelled on
// strongSwan's VICI rather than on Libreswan's whack (which sends a raw C
// struct whose layout must match the build).
//
// # Wire format
//
// Every message, in either direction, is a frame:
//
//	+--------+--------+--------+--------+---------------------------+
//	|   length of the JSON object, uint32 big-endian | JSON object ... |
//	+--------+--------+--------+--------+---------------------------+
//
// A request frame may hold at most MaxRequestSize (1 MiB) of JSON; a client
// accepts replies up to MaxReplySize. A longer request gets a result with
// status 2 (StatusBadRequest) and the connection is closed, since the
// stream can no longer be trusted.
//
// A client sends a request:
//
//	{"v":1, "command":"up", "name":"west-east",
//	 "config":"/etc/ipsec.conf", "args":{"k":"v"}, "json":false}
//
// and the server answers with zero or more log messages, streamed while the
// request runs, and then exactly one result:
//
//	{"type":"log", "line":"initiating IKEv2 connection \"west-east\""}
//	{"type":"result", "status":0, "text":"...", "data":{...}, "error":"..."}
//
// A connection may carry several requests one after another; the server
// answers them in order. A client that hangs up while its request runs
// cancels the request.
package ctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Version is the protocol version this package speaks; it travels in every
// request's "v" field.
const Version = 1

// SupportedVersions lists the request versions the server accepts.
var SupportedVersions = []int{Version}

// Frame size limits, in bytes of JSON after the 4-byte length.
const (
	// MaxRequestSize bounds a client's request; the server refuses larger
	// frames with StatusBadRequest and closes the connection.
	MaxRequestSize = 1 << 20
	// MaxReplySize bounds one message from the server. Status output for
	// many connections can be larger than a request ever is.
	MaxReplySize = 64 << 20
)

// Status codes of a Result. The clients exit with the status code.
const (
	StatusOK             = 0 // done
	StatusFailed         = 1 // failed, for a reason given in Error
	StatusBadRequest     = 2 // malformed, oversized, wrong version or missing argument
	StatusUnknownCommand = 3 // no such command
	StatusNotImplemented = 4 // the daemon cannot do this yet
	StatusNotFound       = 5 // no such connection
)

// StatusText names a status code.
func StatusText(status int) string {
	switch status {
	case StatusOK:
		return "ok"
	case StatusFailed:
		return "failed"
	case StatusBadRequest:
		return "bad request"
	case StatusUnknownCommand:
		return "unknown command"
	case StatusNotImplemented:
		return "not implemented"
	case StatusNotFound:
		return "not found"
	}
	return fmt.Sprintf("status %d", status)
}

// Command names.
const (
	CmdStatus           = "status"
	CmdBriefStatus      = "briefstatus"
	CmdGlobalStatus     = "globalstatus"
	CmdTrafficStatus    = "trafficstatus"
	CmdConnectionStatus = "connectionstatus"
	CmdShowStates       = "showstates"
	CmdAdd              = "add"
	CmdReplace          = "replace"
	CmdDelete           = "delete"
	CmdUp               = "up"
	CmdDown             = "down"
	CmdListen           = "listen"
	CmdRereadSecrets    = "rereadsecrets"
	CmdRereadAll        = "rereadall"
	CmdShutdown         = "shutdown"
	CmdDebug            = "debug" // Args[ArgSet] holds the spec, e.g. "base no-crypt"
	CmdVersion          = "version"
	CmdPing             = "ping"
	CmdListCerts        = "listcerts"   // our certificates (certs/)
	CmdListCACerts      = "listcacerts" // the trust anchors (cacerts/)
	CmdListCRLs         = "listcrls"    // CRLs loaded (crls/) and fetched
	CmdListPubKeys      = "listpubkeys" // the public keys of our certificates and keys
	CmdFetchCRLs        = "fetchcrls"   // fetch the CRLs again now
)

// ArgSet is the Args key of CmdDebug: a space-separated debug spec.
const ArgSet = "set"

// commandSpec says what a command needs beyond its name.
type commandSpec struct {
	needsName bool     // Request.Name must be set
	needsArgs []string // these Args keys must be set and non-empty
}

var commands = map[string]commandSpec{
	CmdStatus:           {},
	CmdBriefStatus:      {},
	CmdGlobalStatus:     {},
	CmdTrafficStatus:    {},
	CmdConnectionStatus: {}, // Name is optional: all connections without one
	CmdShowStates:       {},
	CmdAdd:              {needsName: true},
	CmdReplace:          {needsName: true},
	CmdDelete:           {needsName: true},
	CmdUp:               {needsName: true},
	CmdDown:             {needsName: true},
	CmdListen:           {},
	CmdRereadSecrets:    {},
	CmdRereadAll:        {},
	CmdShutdown:         {},
	CmdDebug:            {needsArgs: []string{ArgSet}},
	CmdVersion:          {},
	CmdPing:             {},
	CmdListCerts:        {},
	CmdListCACerts:      {},
	CmdListCRLs:         {},
	CmdListPubKeys:      {},
	CmdFetchCRLs:        {},
}

// Commands returns the known command names, sorted.
func Commands() []string {
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// KnownCommand reports whether name is a command of this protocol version.
func KnownCommand(name string) bool {
	_, ok := commands[name]
	return ok
}

// Request is what a client asks of the daemon.
type Request struct {
	// Version is the protocol version; Client.Do fills in Version when zero.
	Version int `json:"v"`
	// Command is one of the Cmd* names.
	Command string `json:"command"`
	// Name is the connection name, for the commands about one connection.
	Name string `json:"name,omitempty"`
	// Config is the absolute path of the ipsec.conf the client wants used
	// (add, replace, rereadall); empty means the daemon's own.
	Config string `json:"config,omitempty"`
	// Args holds command-specific arguments, e.g. ArgSet for CmdDebug.
	Args map[string]string `json:"args,omitempty"`
	// JSON asks for the machine form of the answer in Result.Data.
	JSON bool `json:"json,omitempty"`
}

// Validate checks the request's version, command and required arguments.
// It returns nil or a Result with the status to answer with.
func (r *Request) Validate() *Result {
	if !slices.Contains(SupportedVersions, r.Version) {
		return Errorf(StatusBadRequest, "unsupported protocol version %d (supported: %s)",
			r.Version, versionList())
	}
	if r.Command == "" {
		return Errorf(StatusBadRequest, "request has no command")
	}
	spec, ok := commands[r.Command]
	if !ok {
		return Errorf(StatusUnknownCommand, "unknown command %q", r.Command)
	}
	if spec.needsName && r.Name == "" {
		return Errorf(StatusBadRequest, "command %q needs a connection name", r.Command)
	}
	for _, k := range spec.needsArgs {
		if r.Args[k] == "" {
			return Errorf(StatusBadRequest, "command %q needs argument %q", r.Command, k)
		}
	}
	return nil
}

func versionList() string {
	s := make([]string, len(SupportedVersions))
	for i, v := range SupportedVersions {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, ", ")
}

// DecodeRequest parses one request frame's JSON and validates it. On failure
// it returns a nil request and the error Result to send back.
func DecodeRequest(b []byte) (*Request, *Result) {
	var req Request
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, Errorf(StatusBadRequest, "malformed request: %v", err)
	}
	if res := req.Validate(); res != nil {
		return nil, res
	}
	return &req, nil
}

// Result is the daemon's final answer to a request.
type Result struct {
	// Status is one of the Status* codes.
	Status int `json:"status"`
	// Error says what went wrong when Status is not StatusOK.
	Error string `json:"error,omitempty"`
	// Text is the human form of the answer, possibly several lines.
	Text string `json:"text,omitempty"`
	// Data is the machine form of the answer, for clients that set
	// Request.JSON.
	Data json.RawMessage `json:"data,omitempty"`
}

// OK returns a successful Result with the given human text.
func OK(text string) *Result { return &Result{Status: StatusOK, Text: text} }

// Errorf returns a Result with the given status and a formatted Error.
func Errorf(status int, format string, args ...any) *Result {
	return &Result{Status: status, Error: fmt.Sprintf(format, args...)}
}

// WithData returns a successful Result with text and v encoded as Data.
func WithData(text string, v any) (*Result, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("ctl: encoding result data: %w", err)
	}
	return &Result{Status: StatusOK, Text: text, Data: b}, nil
}

// Err returns nil when r is a success and otherwise an error carrying the
// status and r.Error.
func (r *Result) Err() error {
	if r.Status == StatusOK {
		return nil
	}
	return &StatusError{Status: r.Status, Msg: r.Error}
}

// StatusError is a non-OK Result as an error.
type StatusError struct {
	Status int
	Msg    string
}

func (e *StatusError) Error() string {
	if e.Msg == "" {
		return StatusText(e.Status)
	}
	return e.Msg
}

// Message types from server to client.
const (
	msgLog    = "log"
	msgResult = "result"
)

// message is one frame from the server: a log line or the final result.
type message struct {
	Type string `json:"type"`
	Line string `json:"line,omitempty"`
	*Result
}

// ErrFrameTooLarge is returned by readFrame for a frame over the limit.
var ErrFrameTooLarge = errors.New("ctl: message too large")
