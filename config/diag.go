package config

import (
	"fmt"
	"strings"
)

// Diagnostic is one error or warning about a configuration file, naming
// the line to blame.
type Diagnostic struct {
	File    string
	Line    int
	Section string // `conn "west"`, "config setup", or "" outside a section
	Keyword string // the keyword at fault, or ""
	Value   string // the value at fault, or ""
	Msg     string
}

// Error formats the diagnostic as
//
//	file:line: conn "west": dpdaction="explode": allowed values are ...
func (d *Diagnostic) Error() string {
	var b strings.Builder
	if d.File != "" {
		b.WriteString(d.File)
		if d.Line > 0 {
			fmt.Fprintf(&b, ":%d", d.Line)
		}
		b.WriteString(": ")
	}
	if d.Section != "" {
		b.WriteString(d.Section)
		b.WriteString(": ")
	}
	if d.Keyword != "" {
		b.WriteString(d.Keyword)
		if d.Value != "" {
			fmt.Fprintf(&b, "=%q", d.Value)
		}
		b.WriteString(": ")
	}
	b.WriteString(d.Msg)
	return b.String()
}

// Errors is every error found in a configuration; it is returned as the
// error of Load, Parse and LoadSecrets.
type Errors []*Diagnostic

// Error returns one diagnostic a line.
func (e Errors) Error() string {
	s := make([]string, len(e))
	for i, d := range e {
		s[i] = d.Error()
	}
	return strings.Join(s, "\n")
}

func connSection(name string) string { return fmt.Sprintf("conn %q", name) }
