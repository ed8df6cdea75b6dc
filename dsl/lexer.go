package dsl

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/alecthomas/participle/v2/lexer"
)

// The lexer is hand-written because the language's tokens depend on a little
// context that regular expressions express badly: a '-' belongs to a name
// (api-in) unless it starts "->" or follows a number (8080-8090), and a run of
// hex digits and colons is an IPv6 address only when it has two colons
// (fd00::10) — api:8080 is a name, ':' and a port.

// Token types, as participle sees them (Symbols). Keywords are their own type
// so that a grammar slot for a name (@Word) never accepts one.
const (
	tokComment lexer.TokenType = -(iota + 2)
	tokString                  // "…" with Go escapes; Value keeps the quotes
	tokWord                    // a name or key: letter or '_' first, then letters, digits, '_', '.', '-'
	tokKeyword                 // a reserved word (see polKeywords)
	tokInt                     // decimal digits
	tokDWord                   // digits first but not a number or address: 1.2, 3d (label values only)
	tokAddr4                   // 10.0.1.10
	tokAddr6                   // fd00::10, ::1
	tokPrefix                  // 10.0.0.0/8, 2001:db8::/32
	tokPunct                   // { } ( ) [ ] , ; : = != ! -> / -
)

// polTokSymbols is a function, not a variable: the parsers are built during
// package initialization through an interface call that Go's initialization
// order cannot see.
func polTokSymbols() map[string]lexer.TokenType {
	return map[string]lexer.TokenType{
		"EOF":     lexer.EOF,
		"Comment": tokComment,
		"String":  tokString,
		"Word":    tokWord,
		"Keyword": tokKeyword,
		"Int":     tokInt,
		"DWord":   tokDWord,
		"Addr4":   tokAddr4,
		"Addr6":   tokAddr6,
		"Prefix":  tokPrefix,
		"Punct":   tokPunct,
	}
}

// keywords are reserved: they cannot be names or label keys (quote a key to
// use one), but a label value may be a keyword (role=test), because a value
// position is never ambiguous.
var polKeywords = map[string]bool{
	"import": true, "endpoint": true, "labels": true, "addr": true,
	"cidrset": true, "except": true, "policy": true, "select": true,
	"isolate": true, "ingress": true, "egress": true, "allow": true,
	"deny": true, "from": true, "to": true, "world": true, "any": true,
	"in": true, "notin": true, "exists": true, "on": true,
	"tcp": true, "udp": true, "sctp": true, "icmp": true, "icmpv6": true,
	"type": true, "code": true, "prefilter": true, "drop": true,
	"test": true, "reply": true, "flags": true, "expect": true,
	"syn": true, "ack": true, "fin": true, "rst": true, "psh": true, "urg": true,
}

// declKeywords start a top-level declaration.
var polDeclKeywords = map[string]bool{
	"import": true, "endpoint": true, "cidrset": true,
	"policy": true, "prefilter": true, "test": true,
}

// lexSource splits src into tokens (comments included, whitespace dropped)
// and reports every lexical error; it skips what it cannot read and goes on.
// The last token is always EOF.
// It also returns the offsets of the errors.
func polLexSource(path string, src []byte, ds *Diagnostics) ([]lexer.Token, []int) {
	// Token values are substrings of one copy of src, not a string each.
	l := &polLexState{path: path, src: src, text: string(src), line: 1, lineStart: 0}
	l.toks = make([]lexer.Token, 0, len(src)/4+1) // about one token per 4 bytes of policy
	l.run(ds)
	return l.toks, l.errOffs
}

type polLexState struct {
	path      string
	src       []byte
	text      string // src as a string
	off       int
	line      int
	lineStart int
	toks      []lexer.Token
	errOffs   []int
}

func (l *polLexState) pos(off int) lexer.Position {
	return lexer.Position{Filename: l.path, Offset: off, Line: l.line, Column: off - l.lineStart + 1}
}

func (l *polLexState) emit(t lexer.TokenType, start int) {
	l.toks = append(l.toks, lexer.Token{Type: t, Value: l.text[start:l.off], Pos: l.pos(start)})
}

func polIsLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func polIsDigit(c byte) bool  { return c >= '0' && c <= '9' }
func polIsHex(c byte) bool    { return polIsDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
func polIsAlnum(c byte) bool  { return polIsLetter(c) || polIsDigit(c) || c == '_' }

func (l *polLexState) at(i int) byte {
	if i < len(l.src) {
		return l.src[i]
	}
	return 0
}

func (l *polLexState) run(ds *Diagnostics) {
	for l.off < len(l.src) {
		c := l.src[l.off]
		start := l.off
		switch {
		case c == '\n':
			l.off++
			l.line++
			l.lineStart = l.off
		case c == ' ' || c == '\t' || c == '\r':
			l.off++
		case c == '#':
			for l.off < len(l.src) && l.src[l.off] != '\n' {
				l.off++
			}
			l.emit(tokComment, start)
		case c == '"':
			l.lexString(ds)
		case l.ipv6Len() > 0:
			l.off += l.ipv6Len()
			l.prefixLen()
			if strings.Contains(l.text[start:l.off], "/") {
				l.emit(tokPrefix, start)
			} else {
				l.emit(tokAddr6, start)
			}
		case polIsDigit(c):
			l.lexNumberish()
		case polIsLetter(c) || c == '_':
			l.lexWord()
		case c == '-' && l.at(l.off+1) == '>', c == '!' && l.at(l.off+1) == '=':
			l.off += 2
			l.emit(tokPunct, start)
		case strings.IndexByte("{}()[],;:=!/-", c) >= 0:
			l.off++
			l.emit(tokPunct, start)
		default:
			l.badChar(ds)
		}
	}
	l.toks = append(l.toks, lexer.Token{Type: lexer.EOF, Pos: l.pos(l.off)})
}

// badChar reports an unexpected character and skips to the next space, so a
// run of garbage gives one error.
func (l *polLexState) badChar(ds *Diagnostics) {
	p := l.pos(l.off)
	r, size := utf8.DecodeRune(l.src[l.off:])
	var what string
	switch {
	case r == utf8.RuneError && size <= 1:
		what = fmt.Sprintf("invalid UTF-8 byte 0x%02x", l.src[l.off])
	case r == 0:
		what = "NUL byte"
	case r < ' ' || r == 0x7f:
		what = fmt.Sprintf("control character %U", r)
	default:
		what = fmt.Sprintf("unexpected character %q", r)
	}
	ds.Errorf(polToPos(p), "%s", what)
	l.errOffs = append(l.errOffs, l.off)
	l.off += max(size, 1)
	for l.off < len(l.src) {
		c := l.src[l.off]
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			break
		}
		l.off++
	}
}

// lexString reads a Go-style double-quoted string. An unterminated string
// ends at the end of its line.
func (l *polLexState) lexString(ds *Diagnostics) {
	start := l.off
	l.off++
	for {
		if l.off >= len(l.src) || l.src[l.off] == '\n' {
			ds.Errorf(polToPos(l.pos(start)), "unterminated string")
			l.errOffs = append(l.errOffs, start)
			return
		}
		c := l.src[l.off]
		if c == '\\' && l.off+1 < len(l.src) && l.src[l.off+1] != '\n' {
			l.off += 2
			continue
		}
		l.off++
		if c == '"' {
			break
		}
	}
	raw := l.text[start:l.off]
	if _, err := strconv.Unquote(raw); err != nil {
		ds.Errorf(polToPos(l.pos(start)), "invalid string %s: use Go escapes (\\\" \\\\ \\n \\t \\xNN \\uNNNN) and valid UTF-8", raw)
		l.errOffs = append(l.errOffs, start)
		return
	}
	l.emit(tokString, start)
}

// ipv6Len returns the length of an IPv6 address starting at the current
// offset: a run of hex digits, ':' and '.' with at least two colons, not
// followed by a name character. It returns 0 if there is none.
func (l *polLexState) ipv6Len() int {
	i := l.off
	colons := 0
	for i < len(l.src) && (polIsHex(l.src[i]) || l.src[i] == ':' || l.src[i] == '.') {
		if l.src[i] == ':' {
			colons++
		}
		i++
	}
	// A trailing '.' belongs to no address.
	for i > l.off && l.src[i-1] == '.' {
		i--
	}
	if colons < 2 || polIsAlnum(l.at(i)) {
		return 0
	}
	return i - l.off
}

// prefixLen consumes "/digits" after an address.
func (l *polLexState) prefixLen() {
	if l.at(l.off) == '/' && polIsDigit(l.at(l.off+1)) {
		l.off++
		for polIsDigit(l.at(l.off)) {
			l.off++
		}
	}
}

// lexNumberish reads a token that starts with a digit: a number, an IPv4
// address (with an optional /len) or another digit-first word such as 1.2
// (a label value). It never contains '-', so 8080-8090 is three tokens.
func (l *polLexState) lexNumberish() {
	start := l.off
	for l.off < len(l.src) {
		c := l.src[l.off]
		if polIsAlnum(c) || c == '.' && polIsAlnum(l.at(l.off+1)) {
			l.off++
			continue
		}
		break
	}
	text := l.text[start:l.off]
	switch {
	case polIsAllDigits(text):
		l.emit(tokInt, start)
	case polIsIPv4Shape(text):
		l.prefixLen()
		if l.off > start+len(text) {
			l.emit(tokPrefix, start)
		} else {
			l.emit(tokAddr4, start)
		}
	default:
		l.emit(tokDWord, start)
	}
}

// lexWord reads a name, a key or a keyword. '.' and '-' continue a word only
// when a letter, digit or '_' follows, so web->api is web, ->, api.
func (l *polLexState) lexWord() {
	start := l.off
	for l.off < len(l.src) {
		c := l.src[l.off]
		if polIsAlnum(c) || (c == '.' || c == '-') && polIsAlnum(l.at(l.off+1)) {
			l.off++
			continue
		}
		break
	}
	if polKeywords[l.text[start:l.off]] {
		l.emit(tokKeyword, start)
	} else {
		l.emit(tokWord, start)
	}
}

func polIsAllDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !polIsDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

// isIPv4Shape reports whether s is four dot-separated runs of digits. The
// compiler checks the values.
func polIsIPv4Shape(s string) bool {
	parts := 0
	for {
		i := strings.IndexByte(s, '.')
		if i < 0 {
			return parts == 3 && polIsAllDigits(s)
		}
		if parts == 3 || !polIsAllDigits(s[:i]) {
			return false
		}
		parts++
		s = s[i+1:]
	}
}

func polToPos(p lexer.Position) Pos { return Pos{File: p.Filename, Line: p.Line, Col: p.Column} }

// tokenDef gives participle the token types; tokens themselves come from
// lexSource through sliceLexer, one declaration at a time.
type polTokenDef struct{}

func (polTokenDef) Symbols() map[string]lexer.TokenType { return polTokSymbols() }

func (polTokenDef) Lex(filename string, r io.Reader) (lexer.Lexer, error) {
	src, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var ds Diagnostics
	toks, _ := polLexSource(filename, src, &ds)
	if len(ds) > 0 {
		return nil, ds
	}
	return &polSliceLexer{toks: toks[:len(toks)-1], end: toks[len(toks)-1]}, nil
}

// sliceLexer replays tokens; after the last one it returns end.
type polSliceLexer struct {
	toks []lexer.Token
	end  lexer.Token
	i    int
}

func (s *polSliceLexer) Next() (lexer.Token, error) {
	if s.i < len(s.toks) {
		s.i++
		return s.toks[s.i-1], nil
	}
	return s.end, nil
}
