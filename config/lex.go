package config

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// maxFileSize bounds what one configuration file may hold; maxIncludeDepth
// bounds include nesting (Libreswan allows 10).
const (
	maxFileSize     = 16 << 20
	maxIncludeDepth = 10
)

// source reads files and expands include patterns. The default reads the
// file system; tests and fuzzing use an in-memory one.
type source struct {
	readFile func(path string) ([]byte, error)
	glob     func(pattern string) ([]string, error)
}

var osSource = source{readFile: readRegularFile, glob: filepath.Glob}

// readRegularFile reads a regular file of at most maxFileSize bytes, so
// that an include of /dev/zero or a FIFO cannot hang the parser.
func readRegularFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFileSize)
	}
	return b, nil
}

// kv is one key=value line.
type kv struct {
	key   string // canonical spelling
	as    string // as written
	value string
	file  string
	line  int
}

// section is one config setup or conn section as written.
type section struct {
	setup bool
	name  string // conn name; "" for config setup
	file  string
	line  int
	kvs   []kv
}

func (s *section) title() string {
	if s.setup {
		return "config setup"
	}
	return connSection(s.name)
}

// lexer splits files into sections, following includes.
type lexer struct {
	src      source
	sections []*section
	files    []string
	errs     Errors
	warns    []*Diagnostic
	stack    []string // files being read, for include loops
}

func (l *lexer) errorf(file string, line int, sec, format string, args ...any) {
	l.errs = append(l.errs, &Diagnostic{File: file, Line: line, Section: sec, Msg: fmt.Sprintf(format, args...)})
}

// lexFile lexes one file whose contents are src.
func (l *lexer) lexFile(name string, src []byte) {
	l.files = append(l.files, name)
	l.stack = append(l.stack, filepath.Clean(name))
	defer func() { l.stack = l.stack[:len(l.stack)-1] }()

	var cur *section
	lines := strings.Split(string(src), "\n")
	for i, text := range lines {
		n := i + 1
		text = strings.TrimSuffix(text, "\r")
		trimmed := strings.TrimSpace(text)
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		if text[0] == ' ' || text[0] == '\t' {
			if cur == nil {
				l.errorf(name, n, "", "indented line %q is not inside a section (a section starts with config setup or conn NAME at column 0)", trimmed)
				continue
			}
			l.lexKV(cur, name, n, trimmed)
			continue
		}
		cur = nil
		fields := strings.Fields(stripComment(trimmed))
		switch {
		case len(fields) == 2 && fields[0] == "config" && fields[1] == "setup":
			cur = &section{setup: true, file: name, line: n}
			l.sections = append(l.sections, cur)
		case len(fields) >= 1 && fields[0] == "conn":
			if len(fields) != 2 {
				l.errorf(name, n, "", "want conn NAME")
				continue
			}
			cur = &section{name: fields[1], file: name, line: n}
			l.sections = append(l.sections, cur)
		case len(fields) >= 1 && fields[0] == "include":
			if len(fields) != 2 {
				l.errorf(name, n, "", "want include PATTERN (a single file name or glob, without white space)")
				continue
			}
			l.include(name, n, fields[1])
		case len(fields) >= 1 && fields[0] == "version":
			if len(fields) != 2 || (fields[1] != "2" && fields[1] != "2.0") {
				l.errorf(name, n, "", "only version 2 is supported")
			}
		case len(fields) >= 1 && fields[0] == "config":
			l.errorf(name, n, "", "unknown section %q (want config setup)", strings.Join(fields, " "))
		default:
			l.errorf(name, n, "", "syntax error: %q is not config setup, conn NAME, include PATTERN or version 2 (keyword lines must be indented)", trimmed)
		}
	}
}

// stripComment removes a # comment that starts the text or follows white
// space.
func stripComment(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t') {
			return strings.TrimSpace(s[:i])
		}
	}
	return s
}

// lexKV reads an indented key=value line into sec.
func (l *lexer) lexKV(sec *section, file string, line int, text string) {
	eq := strings.IndexByte(text, '=')
	if eq <= 0 {
		l.errorf(file, line, sec.title(), "syntax error: want keyword=value, got %q", text)
		return
	}
	key := strings.TrimSpace(text[:eq])
	if strings.ContainsAny(key, " \t\"") {
		l.errorf(file, line, sec.title(), "syntax error: bad keyword %q", key)
		return
	}
	rest := strings.TrimLeft(text[eq+1:], " \t")
	var value string
	switch {
	case strings.HasPrefix(rest, "\""):
		end := strings.IndexByte(rest[1:], '"')
		if end < 0 {
			l.errs = append(l.errs, &Diagnostic{File: file, Line: line, Section: sec.title(), Keyword: key, Msg: "unterminated quoted value"})
			return
		}
		value = rest[1 : end+1]
		rest = rest[end+2:]
	case strings.HasPrefix(rest, "{"):
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			l.errs = append(l.errs, &Diagnostic{File: file, Line: line, Section: sec.title(), Keyword: key, Msg: "missing } in list value"})
			return
		}
		value = rest[:end+1]
		rest = rest[end+1:]
	case strings.HasPrefix(rest, "#"):
		// key= #comment: an empty value
		rest = ""
	default:
		end := strings.IndexAny(rest, " \t")
		if end < 0 {
			end = len(rest)
		}
		value, rest = rest[:end], rest[end:]
	}
	if r := strings.TrimSpace(rest); r != "" && r[0] != '#' {
		l.errs = append(l.errs, &Diagnostic{File: file, Line: line, Section: sec.title(), Keyword: key,
			Msg: fmt.Sprintf("unexpected %q after the value (quote a value that contains white space)", r)})
		return
	}
	sec.kvs = append(sec.kvs, kv{key: key, as: key, value: value, file: file, line: line})
}

// include reads the files matching pattern, relative to the including
// file's directory.
func (l *lexer) include(from string, line int, pattern string) {
	if !filepath.IsAbs(pattern) {
		pattern = filepath.Join(filepath.Dir(from), pattern)
	}
	if len(l.stack) >= maxIncludeDepth {
		l.errorf(from, line, "", "include %s: includes nested more than %d deep", pattern, maxIncludeDepth)
		return
	}
	matches, err := l.src.glob(pattern)
	if err != nil {
		l.errorf(from, line, "", "include %s: %v", pattern, err)
		return
	}
	if len(matches) == 0 {
		if !strings.ContainsAny(pattern, "*?[") {
			l.errorf(from, line, "", "include %s: no such file", pattern)
		}
		return
	}
	for _, m := range matches {
		clean := filepath.Clean(m)
		for i, s := range l.stack {
			if s == clean {
				loop := append(append([]string{}, l.stack[i:]...), clean)
				l.errorf(from, line, "", "include loop: %s", strings.Join(loop, " -> "))
				return
			}
		}
		b, err := l.src.readFile(m)
		if err != nil {
			l.errorf(from, line, "", "include %s: %v", m, err)
			continue
		}
		l.lexFile(m, b)
	}
}
