package logging

import (
	"errors"
	"fmt"
	"strings"
)

// Classes is a set of debug classes, the bits that pluto's --debug and
// ipsec.conf's plutodebug= turn on. A debug line is written when any of
// the classes it is logged under is on (Libreswan's DBGP() tests with &).
//
// The classes and their order follow Libreswan 5 (lib/libswan/debug.c);
// the aliases base, all and tmi are ranges of that list, so base covers
// routing, all covers base plus cpu-usage and refcnt, and tmi covers all
// plus tmi. updown, crypt, private, whackwatch, add-prefix and add-state
// are only ever turned on by name.
type Classes uint64

// The debug classes.
const (
	Routing    Classes = 1 << iota // connection routing changes and the kernel updates they cause
	Base                           // general debug logging
	CPUUsage                       // CPU time used per event
	Refcnt                         // reference count changes
	TMI                            // too much information
	Updown                         // run the updown script with shell tracing
	Crypt                          // cryptographic operations: logs secrets
	Private                        // keys and other secret material
	WhackWatch                     // keep control clients attached for the whole negotiation
	AddPrefix                      // add the connection/state prefix to debug lines
	AddState                       // add the SA's state name to debug lines

	numClasses = iota
)

// The aliases, as in Libreswan.
const (
	None      Classes = 0
	BaseAlias         = Routing | Base
	All               = BaseAlias | CPUUsage | Refcnt
	TMIAlias          = All | TMI
)

// ErrHelp is returned by ParseDebug when a spec asks for "help"; the
// caller prints DebugHelp() and exits, as pluto --debug help does.
var ErrHelp = errors.New("logging: debug help requested")

type classInfo struct {
	name string
	help string
}

var classInfos = [numClasses]classInfo{
	{"routing", "connection routing changes and the kernel updates they cause"},
	{"base", "general debug logging; the usual choice"},
	{"cpu-usage", "CPU time used while processing each event"},
	{"refcnt", "changes to reference counts (for hunting leaks)"},
	{"tmi", "far more detail than anyone wants"},
	{"updown", "run the updown script with shell tracing (set -x)"},
	{"crypt", "cryptographic operations: DANGER, logs secret values"},
	{"private", "keys and other private material: DANGER"},
	{"whackwatch", "keep control clients attached for the whole negotiation"},
	{"add-prefix", "add the connection/state prefix to debug lines"},
	{"add-state", "add the SA's state name to debug lines"},
}

type aliasInfo struct {
	name string
	set  Classes
}

// aliases are looked up before class names, as Libreswan does; the class
// that shares an alias's name is reached as debug-NAME.
var aliases = []aliasInfo{
	{"base", BaseAlias},
	{"all", All},
	{"tmi", TMIAlias},
}

// ParseDebug applies specs, in order, to base and returns the result.
// Each spec is a list of words separated by spaces, tabs, commas or '+'
// (so "--debug base --debug no-crypt" and plutodebug="base cpu-usage"
// both work). A word is:
//
//   - none: clear every class;
//   - an alias (base, all, tmi) or a class name, optionally written
//     debug-NAME (which names the class, never the alias): turn it on;
//   - no-WORD: turn WORD off;
//   - help: stop and return ErrHelp (print DebugHelp()).
//
// Words are matched without regard to case. An unknown word is an error
// that names it and lists the allowed ones; the returned Classes is then
// base unchanged.
func ParseDebug(specs []string, base Classes) (Classes, error) {
	c := base
	for _, spec := range specs {
		words := strings.FieldsFunc(spec, func(r rune) bool {
			return r == ' ' || r == '\t' || r == ',' || r == '+' || r == '\n'
		})
		for _, word := range words {
			w := strings.ToLower(word)
			switch w {
			case "none":
				c = None
				continue
			case "help":
				return c, ErrHelp
			}
			no := false
			if rest, ok := strings.CutPrefix(w, "no-"); ok {
				no, w = true, rest
			}
			set, ok := lookupClass(w)
			if !ok {
				return base, fmt.Errorf("logging: unknown debug class %q in %q (allowed: %s)",
					word, spec, allowedWords())
			}
			if no {
				c &^= set
			} else {
				c |= set
			}
		}
	}
	return c, nil
}

func lookupClass(w string) (Classes, bool) {
	name, explicit := strings.CutPrefix(w, "debug-")
	if !explicit {
		for _, a := range aliases {
			if a.name == name {
				return a.set, true
			}
		}
	}
	for i, ci := range classInfos {
		if ci.name == name {
			return 1 << i, true
		}
	}
	return 0, false
}

func allowedWords() string {
	var b strings.Builder
	b.WriteString("none")
	for _, a := range aliases {
		b.WriteString(", ")
		b.WriteString(a.name)
	}
	for _, ci := range classInfos {
		if isAliasName(ci.name) {
			continue
		}
		b.WriteString(", ")
		b.WriteString(ci.name)
	}
	b.WriteString(", help; prefix no- to turn one off, debug- to name a class that shares an alias's name")
	return b.String()
}

func isAliasName(name string) bool {
	for _, a := range aliases {
		if a.name == name {
			return true
		}
	}
	return false
}

// className is how String spells a single class: plain, or debug-NAME
// where the plain name would be read back as an alias.
func className(i int) string {
	if isAliasName(classInfos[i].name) {
		return "debug-" + classInfos[i].name
	}
	return classInfos[i].name
}

// String returns the set as ParseDebug reads it back: "none" for the
// empty set, otherwise the largest alias it contains (tmi, all or base)
// followed by the remaining classes, joined by '+'. Bits that name no
// class are written in hex.
func (c Classes) String() string {
	if c == None {
		return "none"
	}
	var parts []string
	rest := c
	for i := len(aliases) - 1; i >= 0; i-- {
		if rest&aliases[i].set == aliases[i].set {
			parts = append(parts, aliases[i].name)
			rest &^= aliases[i].set
			break
		}
	}
	for i := range numClasses {
		if rest&(1<<i) != 0 {
			parts = append(parts, className(i))
			rest &^= 1 << i
		}
	}
	if rest != 0 {
		parts = append(parts, fmt.Sprintf("%#x", uint64(rest)))
	}
	return strings.Join(parts, "+")
}

// DebugHelp returns the listing that pluto --debug help prints: the
// aliases with the classes each covers, then every class with what it
// logs.
func DebugHelp() string {
	width := 0
	for _, ci := range classInfos {
		width = max(width, len(ci.name))
	}
	var b strings.Builder
	b.WriteString("debug classes; separate with spaces, commas or '+', prefix no- to turn one off:\n")
	b.WriteString("aliases:\n")
	fmt.Fprintf(&b, "  %-*s  %s\n", width, "none", "turn every class off")
	for _, a := range aliases {
		var names []string
		for i := range numClasses {
			if a.set&(1<<i) != 0 {
				names = append(names, classInfos[i].name)
			}
		}
		fmt.Fprintf(&b, "  %-*s  %s\n", width, a.name, strings.Join(names, ", "))
	}
	b.WriteString("classes:\n")
	for _, ci := range classInfos {
		name := ci.name
		note := ""
		if isAliasName(name) {
			note = fmt.Sprintf(" (alone: debug-%s)", name)
		}
		fmt.Fprintf(&b, "  %-*s  %s%s\n", width, name, ci.help, note)
	}
	return b.String()
}
