package logging

import (
	"errors"
	"strings"
	"testing"
)

func TestParseDebug(t *testing.T) {
	tests := []struct {
		specs []string
		base  Classes
		want  Classes
	}{
		{nil, None, None},
		{[]string{"base"}, None, Routing | Base},
		{[]string{"routing"}, None, Routing},
		{[]string{"debug-base"}, None, Base},
		{[]string{"base", "no-crypt"}, Crypt, Routing | Base},
		{[]string{"base cpu-usage"}, None, Routing | Base | CPUUsage},
		{[]string{"base,cpu-usage"}, None, Routing | Base | CPUUsage},
		{[]string{"base+private\tcrypt"}, None, Routing | Base | Private | Crypt},
		{[]string{"all"}, None, Routing | Base | CPUUsage | Refcnt},
		{[]string{"tmi"}, None, Routing | Base | CPUUsage | Refcnt | TMI},
		{[]string{"debug-tmi"}, None, TMI},
		{[]string{"all", "no-refcnt"}, None, Routing | Base | CPUUsage},
		{[]string{"none"}, All | Crypt, None},
		{[]string{"crypt", "none", "updown"}, Base, Updown},
		{[]string{"no-all"}, All | Private, Private},
		{[]string{"BASE", "No-Crypt"}, Crypt, BaseAlias},
		{[]string{"whackwatch add-prefix add-state"}, None, WhackWatch | AddPrefix | AddState},
		{[]string{" , "}, Base, Base},
	}
	for _, tt := range tests {
		got, err := ParseDebug(tt.specs, tt.base)
		if err != nil || got != tt.want {
			t.Errorf("ParseDebug(%q, %v) = %v, %v; want %v", tt.specs, tt.base, got, err, tt.want)
		}
	}
}

func TestParseDebugErrors(t *testing.T) {
	got, err := ParseDebug([]string{"base", "base,bogus"}, Crypt)
	if err == nil {
		t.Fatal("ParseDebug accepted bogus")
	}
	if got != Crypt {
		t.Errorf("on error ParseDebug returned %v, want the base %v", got, Crypt)
	}
	for _, want := range []string{`"bogus"`, "base", "cpu-usage", "private", "none"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	for _, bad := range []string{"no-none", "no-", "debug-all", "no-help"} {
		if _, err := ParseDebug([]string{bad}, None); err == nil || errors.Is(err, ErrHelp) {
			t.Errorf("ParseDebug(%q) = %v, want an unknown-class error", bad, err)
		}
	}
	if _, err := ParseDebug([]string{"base", "help"}, None); !errors.Is(err, ErrHelp) {
		t.Errorf("ParseDebug(help) = %v, want ErrHelp", err)
	}
}

func TestClassesString(t *testing.T) {
	tests := []struct {
		c    Classes
		want string
	}{
		{None, "none"},
		{Routing | Base, "base"},
		{Base, "debug-base"},
		{All, "all"},
		{TMIAlias, "tmi"},
		{TMI, "debug-tmi"},
		{All | Crypt | Private, "all+crypt+private"},
		{Routing | CPUUsage, "routing+cpu-usage"},
		{1 << 40, "0x10000000000"},
	}
	for _, tt := range tests {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("%#x.String() = %q, want %q", uint64(tt.c), got, tt.want)
		}
	}
	// every set of known classes reads back as itself
	for c := Classes(0); c < 1<<numClasses; c++ {
		back, err := ParseDebug([]string{c.String()}, None)
		if err != nil || back != c {
			t.Fatalf("ParseDebug(%q) = %v, %v; want %#x", c.String(), back, err, uint64(c))
		}
	}
}

func TestDebugHelp(t *testing.T) {
	help := DebugHelp()
	for _, ci := range classInfos {
		if !strings.Contains(help, ci.name) || !strings.Contains(help, ci.help) {
			t.Errorf("DebugHelp lacks %s: %s", ci.name, ci.help)
		}
	}
	for _, want := range []string{"none", "all", "no-", "routing, base, cpu-usage, refcnt"} {
		if !strings.Contains(help, want) {
			t.Errorf("DebugHelp lacks %q", want)
		}
	}
	if !strings.HasSuffix(help, "\n") {
		t.Error("DebugHelp does not end in a newline")
	}
}
