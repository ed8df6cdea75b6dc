package dsl

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/alecthomas/participle/v2"
	"github.com/alecthomas/participle/v2/lexer"
)

// maxDiagnostics caps the errors one file reports; past it, the rest of a
// garbage file would only bury the first, useful, messages.
const polMaxDiagnostics = 50

// Parse reads a file in the policy language. It returns the AST of every
// declaration it could read and a diagnostic for each one it could not.
//
// How: the lexer reads the whole file (comments kept apart), the token
// stream is cut into declarations at their leading keywords, and each
// declaration is parsed on its own by the participle grammar of its kind
// (plain endpoints and policies by a fast path that builds the same
// grammar structs; see polFast); so a bad declaration yields one error and
// the good ones still yield AST.
// Comments are then attached to the declaration, rule or isolate line that
// follows them (File.Trailing after the last one).
func Parse(path string, src []byte) (*File, Diagnostics) {
	var ds Diagnostics
	f := &File{Path: path}
	all, errOffs := polLexSource(path, src, &ds)

	// Comments go apart; the code tokens are compacted in place.
	var comments []lexer.Token
	code := all[:0]
	for _, t := range all {
		if t.Type == tokComment {
			comments = append(comments, t)
		} else {
			code = append(code, t)
		}
	}
	p := &polParser{lexErrs: errOffs}
	for _, c := range polSplitDecls(code) {
		p.decl(c)
	}
	ds = append(ds, p.ds...)
	ds.Sort()
	if len(ds) > polMaxDiagnostics {
		last := ds[polMaxDiagnostics-1].Pos
		ds = append(ds[:polMaxDiagnostics:polMaxDiagnostics], Diagnostic{Pos: last, Msg: "too many errors"})
	}

	f.Decls = p.decls
	// The comments above the first declaration, up to the last blank line
	// before it, are the file's header; the others go to the next anchor
	// (declaration, rule, isolate line).
	if len(p.anchors) > 0 {
		f.Header, comments = polSplitHeader(comments, code[0])
	}
	a := 0
	for _, c := range comments {
		for a < len(p.anchors) && p.anchors[a].offset < c.Pos.Offset {
			a++
		}
		text := polCommentText(c.Value)
		if a < len(p.anchors) {
			*p.anchors[a].doc = append(*p.anchors[a].doc, text)
		} else {
			f.Trailing = append(f.Trailing, text)
		}
	}
	return f, ds
}

// polSplitHeader takes the file's header from comments: the comment lines
// before the first code token first, up to the last blank line between them
// and first, in paragraphs as blank lines separate them. It returns the
// header and the comments left.
func polSplitHeader(comments []lexer.Token, first lexer.Token) ([]Doc, []lexer.Token) {
	var header []Doc
	var para Doc
	end := 0 // comments[:end] are the header
	for i := 0; i < len(comments) && comments[i].Pos.Offset < first.Pos.Offset; i++ {
		para = append(para, polCommentText(comments[i].Value))
		next := first.Pos.Line
		if i+1 < len(comments) && comments[i+1].Pos.Offset < first.Pos.Offset {
			next = comments[i+1].Pos.Line
		}
		if next > comments[i].Pos.Line+1 {
			header = append(header, para)
			para, end = nil, i+1
		}
	}
	return header, comments[end:]
}

// commentText strips the '#', one space after it and trailing blanks.
func polCommentText(s string) string {
	s = strings.TrimPrefix(s, "#")
	s = strings.TrimPrefix(s, " ")
	return strings.TrimRight(s, " \t\r")
}

// chunk is one declaration's tokens; end is the token after them (the next
// declaration's keyword or EOF).
type polChunk struct {
	toks []lexer.Token
	end  lexer.Token
}

// splitDecls cuts code (ending with EOF) before each keyword that starts a
// declaration. A declaration keyword inside a declaration starts a new one
// only where the old one cannot continue with it: at brace depth 0 or first
// on its line, and never as a name (after endpoint, policy, ...) or a value
// (after =, != or inside a value list). So a missing '}' costs one
// declaration, not the rest of the file.
func polSplitDecls(code []lexer.Token) []polChunk {
	var out []polChunk
	start := 0
	braces, parens := 0, 0
	for i := 0; i < len(code)-1; i++ {
		t := code[i]
		if i > start && t.Type == tokKeyword && polDeclKeywords[t.Value] {
			prev := code[i-1]
			split := true
			switch {
			case prev.Type == tokPunct && (prev.Value == "=" || prev.Value == "!="):
				split = false
			case prev.Type == tokKeyword && polDeclKeywords[prev.Value]:
				split = false
			case parens > 0:
				split = !(prev.Type == tokPunct && (prev.Value == "(" || prev.Value == ","))
			case braces > 0:
				split = prev.Pos.Line != t.Pos.Line
			}
			if split {
				out = append(out, polChunk{toks: code[start:i], end: t})
				start = i
				braces, parens = 0, 0
			}
		}
		if t.Type == tokPunct {
			switch t.Value {
			case "{":
				braces++
			case "}":
				braces = max(braces-1, 0)
			case "(":
				parens++
			case ")":
				parens = max(parens-1, 0)
			}
		}
	}
	if start < len(code)-1 {
		out = append(out, polChunk{toks: code[start : len(code)-1], end: code[len(code)-1]})
	}
	return out
}

type polAnchor struct {
	offset int
	doc    *Doc
}

type polParser struct {
	lexErrs []int // offsets where the lexer reported errors
	ds      Diagnostics
	decls   []Decl
	anchors []polAnchor
}

func (p *polParser) errorf(at lexer.Position, format string, args ...any) {
	p.ds.Errorf(polToPos(at), format, args...)
}

// hasLexError reports whether the lexer already complained inside c; such
// a declaration is not parsed, since its tokens are incomplete.
func (p *polParser) hasLexError(c polChunk) bool {
	i := sort.SearchInts(p.lexErrs, c.toks[0].Pos.Offset) // lexErrs is sorted
	return i < len(p.lexErrs) && p.lexErrs[i] < c.end.Pos.Offset
}

func (p *polParser) decl(c polChunk) {
	head := c.toks[0]
	if head.Type != tokKeyword || !polDeclKeywords[head.Value] {
		if !p.hasLexError(c) {
			p.errorf(head.Pos, "expected a declaration (import, endpoint, cidrset, policy, prefilter or test), got %s", polDescribe(head))
		}
		return
	}
	if p.hasLexError(c) {
		return
	}
	var d Decl
	var err error
	switch head.Value {
	case "import":
		var g *gImport
		if g, err = polParseChunk(importParser, c); err == nil {
			d = p.importDecl(g)
		}
	case "endpoint":
		var g *gEndpoint
		if polUseFastPath {
			g = polFastEndpoint(c)
		}
		if g == nil {
			g, err = polParseChunk(endpointParser, c)
		}
		if err == nil {
			d = p.endpoint(g)
		}
	case "cidrset":
		var g *gCIDRSet
		if g, err = polParseChunk(cidrsetParser, c); err == nil {
			d = p.cidrset(g)
		}
	case "policy":
		var g *gPolicy
		if polUseFastPath {
			g = polFastPolicy(c)
		}
		if g == nil {
			g, err = polParseChunk(policyParser, c)
		}
		if err == nil {
			d = p.policy(g)
		}
	case "prefilter":
		var g *gPrefilter
		if g, err = polParseChunk(prefilterParser, c); err == nil {
			d = p.prefilter(g)
		}
	case "test":
		var g *gTest
		if g, err = polParseChunk(testParser, c); err == nil {
			d = p.test(g)
		}
	}
	if err != nil {
		p.syntaxError(c, err)
		return
	}
	if d != nil {
		p.decls = append(p.decls, d)
	}
}

// parseChunk runs one declaration through participle. A panic inside the
// parser library would be a bug there or in the grammar; it becomes an
// error so that no input can crash polc.
func polParseChunk[G any](pp *participle.Parser[G], c polChunk) (g *G, err error) {
	defer func() {
		if r := recover(); r != nil {
			g, err = nil, participle.Errorf(c.toks[0].Pos, "internal parser error: %v", r)
		}
	}()
	end := c.end
	end.Type = lexer.EOF
	pl, err := lexer.Upgrade(&polSliceLexer{toks: c.toks, end: end})
	if err != nil {
		return nil, err
	}
	return pp.ParseFromLexer(pl)
}

// ---- from grammar to AST ----

func polPos(p lexer.Position) Pos { return polToPos(p) }

func (p *polParser) importDecl(g *gImport) Decl {
	d := &Import{Pos: polPos(g.Pos), Path: p.str(g.Path)}
	p.anchor(g.Pos, &d.Doc)
	return d
}

func (p *polParser) anchor(at lexer.Position, doc *Doc) {
	p.anchors = append(p.anchors, polAnchor{offset: at.Offset, doc: doc})
}

func (p *polParser) str(g *gString) Text {
	s, _ := strconv.Unquote(g.Raw) // the lexer checked it
	return Text{Pos: polPos(g.Pos), Text: s}
}

func (p *polParser) endpoint(g *gEndpoint) Decl {
	d := &Endpoint{Pos: polPos(g.Pos), Name: polIdent(g.Name)}
	p.anchor(g.Pos, &d.Doc)
	if g.Remote != nil {
		d.Remote = polPos(g.Remote.Pos)
	}
	for _, l := range g.Labels {
		d.Labels = append(d.Labels, Label{Pos: polPos(l.Pos), Key: polKey(l.Key), Value: polValue(l.Value)})
	}
	for _, a := range g.Addrs {
		d.Addrs = append(d.Addrs, polAddr(a))
	}
	return d
}

func polIdent(g *gName) Ident { return Ident{Pos: polPos(g.Pos), Name: g.Name} }
func polAddr(g *gAddr) Text   { return Text{Pos: polPos(g.Pos), Text: g.Text} }

func polKey(g *gKey) string {
	if g.Quoted != nil {
		s, _ := strconv.Unquote(*g.Quoted)
		return s
	}
	return *g.Bare
}

func polValue(g *gValue) string {
	if g.Quoted != nil {
		s, _ := strconv.Unquote(*g.Quoted)
		return s
	}
	return *g.Bare
}

func (p *polParser) cidrset(g *gCIDRSet) Decl {
	d := &CIDRSet{Pos: polPos(g.Pos), Name: polIdent(g.Name)}
	p.anchor(g.Pos, &d.Doc)
	for _, e := range g.Entries {
		d.Entries = append(d.Entries, polCidr(e))
	}
	return d
}

func polCidr(g *gCIDR) CIDR {
	c := CIDR{Pos: polPos(g.Pos), Prefix: polAddr(g.Prefix)}
	for _, e := range g.Except {
		c.Except = append(c.Except, polAddr(e))
	}
	return c
}

func (p *polParser) policy(g *gPolicy) Decl {
	d := &Policy{Pos: polPos(g.Pos), Name: polIdent(g.Name), Select: p.selector(g.Select)}
	if g.Audit != nil {
		d.Audit = polPos(g.Audit.Pos)
	}
	if g.Tier != nil {
		d.TierPos, d.Tier = polPos(g.Tier.Pos), TierAdmin
		if g.Tier.Tier == "baseline" {
			d.Tier = TierBaseline
		}
	}
	if g.Priority != nil {
		d.PriorityPos = polPos(g.Priority.Pos)
		if n := p.integer(g.Priority.Value); n != nil {
			d.Priority = polClampPriority(n.Value)
		}
	}
	p.anchor(g.Pos, &d.Doc)
	for _, it := range g.Items {
		if it.Isolate != nil {
			p.anchor(it.Isolate.Pos, &d.IsolateDoc)
			for _, dir := range it.Isolate.Dirs {
				d.Isolate = append(d.Isolate, DirectionAt{Pos: polPos(dir.Pos), Dir: polDirection(dir.Dir)})
			}
			continue
		}
		r := p.rule(it.Rule)
		p.anchor(it.Rule.Pos, &r.Doc)
		d.Rules = append(d.Rules, r)
	}
	return d
}

// polClampPriority keeps a written priority in int range (a no-op where
// int has 64 bits); the checker reports anything outside 0..MaxPriority.
func polClampPriority(v int64) int {
	switch {
	case v > math.MaxInt:
		return math.MaxInt
	case v < math.MinInt:
		return math.MinInt
	}
	return int(v)
}

func polDirection(s string) Direction {
	if s == "egress" {
		return Egress
	}
	return Ingress
}

func (p *polParser) rule(g *gRule) *Rule {
	r := &Rule{Pos: polPos(g.Pos), Dir: polDirection(g.Dir), Action: Allow}
	switch g.Action {
	case "deny":
		r.Action = Deny
	case "pass":
		r.Action = Pass
	}
	if g.PeerWord != nil {
		r.PeerPos = polPos(g.PeerWord.Pos)
		r.PeerWord = g.PeerWord.Word
	}
	for _, pe := range g.Peers {
		q := Peer{Pos: polPos(pe.Pos)}
		switch {
		case pe.World:
			q.Kind = PeerWorld
		case pe.Any:
			q.Kind = PeerAny
		case pe.CIDR != nil:
			q.Kind, q.CIDR = PeerCIDR, polCidr(pe.CIDR)
		case pe.Selector != nil:
			q.Kind, q.Selector = PeerSelector, p.selector(pe.Selector)
		case pe.Set != nil:
			q.Kind, q.Set = PeerSet, polIdent(pe.Set)
		}
		r.Peers = append(r.Peers, q)
	}
	for _, l := range g.Ports {
		r.Ports = append(r.Ports, p.l4(l))
	}
	return r
}

func (p *polParser) selector(g *gSelector) Selector {
	s := Selector{Pos: polPos(g.Pos)}
	reqs := g.Reqs
	if !g.Braced {
		reqs = []*gReq{g.Single}
	}
	for _, q := range reqs {
		r := Requirement{Pos: polPos(q.Pos)}
		switch {
		case q.Not != nil:
			r.Key, r.Op = polKey(q.Not), OpNotExists
		case q.Exists:
			r.Key, r.Op = polKey(q.Key), OpExists
		case q.ListOp != "":
			r.Key, r.Op = polKey(q.Key), OpIn
			if q.ListOp == "notin" {
				r.Op = OpNotIn
			}
			for _, v := range q.Values {
				r.Values = append(r.Values, polValue(v))
			}
		default:
			r.Key, r.Op, r.Values = polKey(q.Key), OpEq, []string{polValue(q.Value)}
			if q.Op == "!=" {
				r.Op = OpNotEq
			}
		}
		s.Reqs = append(s.Reqs, r)
	}
	return s
}

func (p *polParser) integer(g *gInt) *Int {
	if g == nil {
		return nil
	}
	v, err := strconv.ParseInt(g.Text, 10, 64)
	if err != nil {
		p.errorf(g.Pos, "number %s is too large", g.Text)
	}
	return &Int{Pos: polPos(g.Pos), Value: v}
}

func (p *polParser) l4(g *gL4) L4 {
	l := L4{Pos: polPos(g.Pos)}
	switch {
	case g.Port != "":
		l.Proto, l.Port, l.PortEnd = g.Port, p.integer(g.First), p.integer(g.Last)
	case g.ICMP != "":
		l.Proto, l.ICMPType, l.ICMPCode = g.ICMP, p.integer(g.Type), p.integer(g.Code)
	default:
		l.Proto = "any"
	}
	return l
}

func (p *polParser) prefilter(g *gPrefilter) Decl {
	d := &Prefilter{Pos: polPos(g.Pos)}
	p.anchor(g.Pos, &d.Doc)
	for _, e := range g.Entries {
		d.Entries = append(d.Entries, polCidr(e))
	}
	return d
}

func (p *polParser) test(g *gTest) Decl {
	d := &Test{Pos: polPos(g.Pos), Name: p.str(g.Name)}
	for _, s := range g.Steps {
		st := &Step{Pos: polPos(s.Pos), Reply: s.Reply}
		if s.Packet != nil {
			st.Packet = p.packet(s.Packet)
		}
		for _, fl := range s.Flags {
			st.Flags = append(st.Flags, Text{Pos: polPos(fl.Pos), Text: fl.Flag})
		}
		if s.Via != nil {
			via := polIdent(s.Via)
			st.Via = &via
		}
		if s.Expect != nil {
			v := VerdictAllow
			if s.Expect.Verdict == "deny" {
				v = VerdictDeny
			}
			st.Expect, st.ExpectPos = &v, polPos(s.Expect.Pos)
		}
		d.Steps = append(d.Steps, st)
	}
	if last := d.Steps[len(d.Steps)-1]; last.Expect == nil {
		p.ds.Errorf(last.Pos, "the last step of test %q needs \"expect allow\" or \"expect deny\"", d.Name.Text)
		return nil
	}
	p.anchor(g.Pos, &d.Doc)
	return d
}

func (p *polParser) packet(g *gPacket) *Packet {
	return &Packet{
		Pos:      polPos(g.Pos),
		Proto:    Text{Pos: polPos(g.Pos), Text: g.Proto},
		Src:      p.host(g.Src),
		Dst:      p.host(g.Dst),
		ICMPType: p.integer(g.Type),
		ICMPCode: p.integer(g.Code),
	}
}

func (p *polParser) host(g *gHost) HostPort {
	h := HostPort{Pos: polPos(g.Pos), Port: p.integer(g.Port)}
	switch {
	case g.Name != nil:
		h.Host, h.IsName = Text{Pos: polPos(g.Name.Pos), Text: g.Name.Name}, true
	case g.V4 != nil:
		h.Host = Text{Pos: polPos(g.V4.Pos), Text: g.V4.Text}
	case g.V6 != nil:
		h.Host = Text{Pos: polPos(g.V6.Pos), Text: g.V6.Text}
	}
	return h
}

// ---- syntax errors in plain words ----

// participle's own messages name grammar nodes and, with backtracking, often
// point at the wrong token. So when a declaration fails to parse, a small
// recursive-descent walk over the same tokens (polExplainer, which follows
// the grammar in grammar.go step by step) finds the first token that does
// not fit and says what was expected there, in the user's words. The fuzz
// test checks that the two agree on which declarations are valid.

// syntaxError reports why participle rejected c.
func (p *polParser) syntaxError(c polChunk, err error) {
	if at, msg, ok := polExplain(c); ok {
		p.errorf(at, "%s", msg)
		return
	}
	// The explainer found nothing: fall back on participle's words.
	var perr participle.Error
	if errors.As(err, &perr) {
		p.errorf(perr.Position(), "syntax error: %s", perr.Message())
		return
	}
	p.errorf(c.toks[0].Pos, "syntax error: %v", err)
}

// polDescribe names a token for a message: "}", keyword "to", end of file.
func polDescribe(t lexer.Token) string {
	switch {
	case t.Type == lexer.EOF && t.Value == "":
		return "end of file"
	case t.Type == tokString:
		return "string " + t.Value
	case t.Type == tokKeyword:
		return fmt.Sprintf("keyword %q", t.Value)
	}
	return fmt.Sprintf("%q", t.Value)
}

type polExplainer struct {
	toks []lexer.Token
	end  lexer.Token
	i    int
	kv   int // index of the last label key or value read
}

// polSyntaxErr unwinds the explainer at the first error.
type polSyntaxErr struct {
	at  lexer.Position
	msg string
}

// polExplain walks c and returns the first syntax error in it.
func polExplain(c polChunk) (at lexer.Position, msg string, ok bool) {
	e := &polExplainer{toks: c.toks, end: c.end, kv: -1}
	defer func() {
		if r := recover(); r != nil {
			se, isErr := r.(polSyntaxErr)
			if !isErr {
				panic(r)
			}
			at, msg, ok = se.at, se.msg, true
		}
	}()
	e.decl()
	return lexer.Position{}, "", false
}

func (e *polExplainer) peek() lexer.Token { return e.peekAt(0) }

func (e *polExplainer) peekAt(k int) lexer.Token {
	if e.i+k < len(e.toks) {
		return e.toks[e.i+k]
	}
	return e.end
}

func (e *polExplainer) next() lexer.Token {
	t := e.peek()
	if e.i < len(e.toks) {
		e.i++
	}
	return t
}

// is reports whether the next token is one of the given keywords or
// punctuation marks.
func (e *polExplainer) is(vals ...string) bool { return polIsOneOf(e.peek(), vals...) }

func polIsOneOf(t lexer.Token, vals ...string) bool {
	if t.Type != tokKeyword && t.Type != tokPunct {
		return false
	}
	for _, v := range vals {
		if t.Value == v {
			return true
		}
	}
	return false
}

func (e *polExplainer) isType(types ...lexer.TokenType) bool {
	t := e.peek().Type
	for _, tt := range types {
		if t == tt {
			return true
		}
	}
	return false
}

// fail stops at the next token: "expected WHAT, got TOKEN".
func (e *polExplainer) fail(what string) {
	got := polDescribe(e.peek())
	if e.i >= len(e.toks) && e.end.Value != "" {
		got = fmt.Sprintf("the next declaration (%q on line %d)", e.end.Value, e.end.Pos.Line)
	}
	msg := fmt.Sprintf("expected %s, got %s", what, got)
	// k8s.io/name=x or app=a:b: a key or value with characters a bare word
	// cannot hold.
	if t := e.peek(); e.i > 0 && e.kv == e.i-1 && polIsOneOf(t, "/", ":") {
		if prev := e.toks[e.i-1]; prev.Pos.Offset+len(prev.Value) == t.Pos.Offset {
			msg += "; write keys and values with other characters in double quotes, as in \"k8s.io/name\""
		}
	}
	e.failMsg(msg)
}

// failMsg stops with msg at the next token or, when the declaration ran
// out of tokens, just after its last one: where the missing part belongs.
func (e *polExplainer) failMsg(msg string) {
	at := e.peek().Pos
	if e.i >= len(e.toks) && len(e.toks) > 0 {
		last := e.toks[len(e.toks)-1]
		at = last.Pos
		at.Column += len(last.Value)
		at.Offset += len(last.Value)
	}
	panic(polSyntaxErr{at: at, msg: msg})
}

// want consumes one of vals or fails with "expected what".
func (e *polExplainer) want(what string, vals ...string) lexer.Token {
	if !e.is(vals...) {
		e.fail(what)
	}
	return e.next()
}

func (e *polExplainer) decl() {
	head := e.next()
	switch head.Value {
	case "import":
		if !e.isType(tokString) {
			e.fail(`a file name in double quotes after "import"`)
		}
		e.next()
		e.done(`a new declaration after the import`)
	case "endpoint":
		e.name(`an endpoint name after "endpoint"`)
		if t := e.peek(); t.Type == tokWord && t.Value == "remote" {
			e.next() // not reserved: a word that means something only here
		}
		if e.is("labels") {
			e.next()
			e.want(`"(" after "labels"`, "(")
			for {
				e.label()
				if e.is(")") {
					e.next()
					break
				}
				e.want(`"," or ")" after a label`, ",")
			}
			e.want(`"addr" after the labels`, "addr")
		} else {
			e.want(`"remote", "labels" or "addr" after the endpoint name`, "labels", "addr")
		}
		e.addrList(`an address after "addr"`)
		e.done(`"," and another address, or a new declaration`)
	case "cidrset":
		e.name(`a cidrset name after "cidrset"`)
		e.want(`"=" after the cidrset name`, "=")
		e.cidrList(`an address or prefix after "="`)
		e.done(`"," and another prefix, "except", or a new declaration`)
	case "policy":
		e.policy()
	case "prefilter":
		e.want(`"drop" after "prefilter"`, "drop")
		e.want(`"from" after "prefilter drop"`, "from")
		e.cidrList(`an address or prefix after "from"`)
		e.done(`"," and another prefix, "except", or a new declaration`)
	case "test":
		e.test()
	}
}

// done checks that nothing is left of the declaration.
func (e *polExplainer) done(follow string) {
	if e.i >= len(e.toks) {
		return
	}
	// A word first on its line is more likely a misspelt declaration.
	if t := e.peek(); t.Type == tokWord && t.Pos.Line != e.toks[e.i-1].Pos.Line {
		e.fail("a declaration (import, endpoint, cidrset, policy, prefilter or test)")
	}
	e.fail(follow)
}

func (e *polExplainer) name(what string) {
	t := e.peek()
	if t.Type == tokKeyword {
		e.failMsg(fmt.Sprintf("expected %s, got keyword %q (keywords cannot be names)", what, t.Value))
	}
	if t.Type != tokWord {
		e.fail(what)
	}
	e.next()
}

func (e *polExplainer) label() {
	e.key("a label key")
	e.want(`"=" after the label key`, "=")
	e.value(`a label value after "="`)
}

func (e *polExplainer) key(what string) {
	t := e.peek()
	switch t.Type {
	case tokWord, tokString:
		e.kv = e.i
		e.next()
	case tokKeyword:
		e.failMsg(fmt.Sprintf("expected %s, got keyword %q (to use it as a label key, write it in double quotes)", what, t.Value))
	default:
		e.fail(what)
	}
}

func (e *polExplainer) value(what string) {
	switch e.peek().Type {
	case tokWord, tokKeyword, tokInt, tokDWord, tokAddr4, tokString:
		e.kv = e.i
		e.next()
	default:
		e.fail(what)
	}
}

func (e *polExplainer) addr(what string) {
	if !e.isType(tokAddr4, tokAddr6, tokPrefix) {
		e.fail(what)
	}
	e.next()
}

func (e *polExplainer) addrList(what string) {
	e.addr(what)
	for e.is(",") {
		e.next()
		e.addr(`an address after ","`)
	}
}

func (e *polExplainer) cidr(what string) {
	e.addr(what)
	if !e.is("except") {
		return
	}
	e.next()
	if e.is("(") {
		e.next()
		e.addr(`an address or prefix after "except ("`)
		for e.is(",") {
			e.next()
			e.addr(`an address or prefix after ","`)
		}
		e.want(`"," or ")" after the exceptions`, ")")
		return
	}
	e.addr(`an address, a prefix or "(" after "except"`)
}

func (e *polExplainer) cidrList(what string) {
	e.cidr(what)
	for e.is(",") {
		e.next()
		e.cidr(`an address or prefix after ","`)
	}
}

// isWord reports whether the next token is the word w: the words that
// mean something in one place only (audit, tier, priority, pass) are not
// keywords.
func (e *polExplainer) isWord(w string) bool {
	t := e.peek()
	return t.Type == tokWord && t.Value == w
}

func (e *polExplainer) policy() {
	e.name(`a policy name after "policy"`)
	follow := `"audit", "tier", "priority" or "{" after the policy name`
	if e.isWord("audit") {
		e.next()
		follow = `"tier", "priority" or "{" after "audit"`
	}
	if e.isWord("tier") {
		e.next()
		if !e.isWord("admin") && !e.isWord("baseline") {
			e.fail(`"admin" or "baseline" after "tier"`)
		}
		e.next()
		follow = `"priority" after the tier (as in "tier admin priority 10")`
	}
	if e.isWord("priority") {
		e.next()
		e.integer(`a priority number (0 to 1000) after "priority"`)
		follow = `"{" after the priority`
	}
	e.want(follow, "{")
	if !e.is("select") {
		e.failMsg(fmt.Sprintf(`unexpected %s; a policy needs "select" first`, polDescribe(e.peek())))
	}
	e.next()
	e.selector(`a selector after "select" (app=web, {app=web, tier=db} or {} for every endpoint)`)
	follow = `a rule ("ingress" or "egress"), "isolate" or "}"`
	for {
		switch {
		case e.is("}"):
			e.next()
			e.done(`a new declaration after the policy's "}"`)
			return
		case e.is("isolate"):
			e.next()
			e.want(`"ingress" or "egress" after "isolate"`, "ingress", "egress")
			for e.is(",") {
				e.next()
				e.want(`"ingress" or "egress" after ","`, "ingress", "egress")
			}
			follow = `",", a rule ("ingress" or "egress"), "isolate" or "}"`
		case e.is("ingress", "egress"):
			follow = e.rule()
		default:
			if e.i == len(e.toks) {
				e.fail(`"}" to close the policy`)
			}
			e.fail(follow)
		}
	}
}

// rule reads one rule and returns what may follow it.
func (e *polExplainer) rule() string {
	dir := e.next().Value
	if e.isWord("pass") {
		e.next()
	} else {
		e.want(fmt.Sprintf(`"allow", "deny" or "pass" after %q`, dir), "allow", "deny")
	}
	follow := `"from", "to", "on", another rule or "}"`
	if e.is("from", "to") {
		w := e.next().Value
		e.peer(fmt.Sprintf(`a peer after %q (a selector such as app=web, a cidrset name, an address or prefix, "world" or "any")`, w))
		for e.is(",") {
			e.next()
			e.peer(`a peer after ","`)
		}
		follow = `",", "on", another rule or "}"`
	}
	if e.is("on") {
		e.next()
		e.l4(`a protocol after "on" (tcp, udp, sctp, icmp, icmpv6 or any)`)
		for e.is(",") {
			e.next()
			e.l4(`a protocol after ","`)
		}
		follow = `",", another rule or "}"`
	}
	return follow
}

// startsRequirement reports whether the next tokens are KEY followed by an
// operator, as in app=web or env exists.
func (e *polExplainer) startsRequirement() bool {
	t := e.peek()
	if t.Type != tokWord && t.Type != tokString && t.Type != tokKeyword {
		return false
	}
	return polIsOneOf(e.peekAt(1), "=", "!=", "in", "notin", "exists")
}

func (e *polExplainer) peer(what string) {
	switch {
	case e.is("{", "!"):
		e.selector(what)
	case e.startsRequirement():
		e.selector(what)
	case e.is("world", "any"):
		e.next()
	case e.isType(tokAddr4, tokAddr6, tokPrefix):
		e.cidr(what)
	case e.isType(tokWord):
		e.next()
	default:
		e.name(what)
	}
}

func (e *polExplainer) selector(what string) {
	if !e.is("{") {
		if !e.is("!") && !e.isType(tokWord, tokString, tokKeyword) {
			e.fail(what)
		}
		e.requirement()
		return
	}
	e.next()
	if e.is("}") {
		e.next()
		return
	}
	for {
		e.requirement()
		if e.is("}") {
			e.next()
			return
		}
		e.want(`"," or "}" in the selector`, ",")
	}
}

func (e *polExplainer) requirement() {
	if e.is("!") {
		e.next()
		e.key(`a label key after "!"`)
		return
	}
	k := e.peek().Value
	e.key("a label requirement (app=web, tier in (a, b), env exists, !debug)")
	switch {
	case e.is("=", "!="):
		op := e.next().Value
		e.value(fmt.Sprintf("a label value after %q", k+op))
	case e.is("in", "notin"):
		op := e.next().Value
		e.want(fmt.Sprintf(`"(" after %q`, op), "(")
		e.value(`a label value after "("`)
		for e.is(",") {
			e.next()
			e.value(`a label value after ","`)
		}
		e.want(`"," or ")" in the value list`, ")")
	case e.is("exists"):
		e.next()
	default:
		e.fail(fmt.Sprintf(`"=", "!=", "in", "notin" or "exists" after label key %q`, k))
	}
}

func (e *polExplainer) l4(what string) {
	t := e.peek()
	switch {
	case e.is("tcp", "udp", "sctp"):
		e.next()
		if e.is("/") {
			e.next()
			e.integer(fmt.Sprintf(`a port number after "%s/"`, t.Value))
			if e.is("-") {
				e.next()
				e.integer(`the last port of the range after "-"`)
			}
		}
	case e.is("icmp", "icmpv6"):
		e.next()
		e.icmpTypeCode()
	case e.is("any"):
		e.next()
	default:
		e.fail(what)
	}
}

func (e *polExplainer) icmpTypeCode() {
	if !e.is("type") {
		return
	}
	e.next()
	e.integer(`an ICMP type number after "type"`)
	if e.is("code") {
		e.next()
		e.integer(`an ICMP code number after "code"`)
	}
}

func (e *polExplainer) integer(what string) {
	if !e.isType(tokInt) {
		e.fail(what)
	}
	e.next()
}

func (e *polExplainer) test() {
	if !e.isType(tokString) {
		e.fail(`the test's name in double quotes after "test"`)
	}
	e.next()
	e.want(`"{" after the test name`, "{")
	follow := e.step()
	for {
		switch {
		case e.is("}"):
			e.next()
			e.done(`a new declaration after the test's "}"`)
			return
		case e.is(";"):
			e.next()
			follow = e.step()
		case e.is("reply", "tcp", "udp", "sctp", "icmp", "icmpv6"):
			follow = e.step()
		default:
			if e.i == len(e.toks) {
				e.fail(`"}" to close the test`)
			}
			e.fail(follow)
		}
	}
}

const polStepStart = `a packet ("tcp", "udp", "sctp", "icmp", "icmpv6") or "reply"`

// step reads one step and returns what may follow it.
func (e *polExplainer) step() string {
	switch {
	case e.is("reply"):
		e.next()
	case e.is("tcp", "udp", "sctp", "icmp", "icmpv6"):
		e.next()
		e.host("the source address or endpoint name")
		e.want(`"->" after the source`, "->")
		e.host(`the destination address or endpoint name after "->"`)
		e.icmpTypeCode()
	default:
		e.fail(polStepStart)
	}
	follow := `"flags", "via", "expect", ";", another step or "}"`
	if e.is("flags") {
		e.next()
		e.want(`a TCP flag (syn, ack, fin, rst, psh, urg) after "flags"`, polFlags...)
		for e.is(",") {
			e.next()
			e.want(`a TCP flag (syn, ack, fin, rst, psh, urg) after ","`, polFlags...)
		}
		follow = `",", "via", "expect", ";", another step or "}"`
	}
	if t := e.peek(); t.Type == tokWord && t.Value == polStepVia {
		e.next()
		e.name(`an endpoint name after "via"`)
		follow = `"expect", ";", another step or "}"`
	}
	if e.is("expect") {
		e.next()
		e.want(`"allow" or "deny" after "expect"`, "allow", "deny")
		follow = `";", another step or "}"`
	}
	return follow
}

var polFlags = []string{"syn", "ack", "fin", "rst", "psh", "urg"}

// polStepVia introduces the endpoint whose interface a test packet leaves
// from (`tcp web -> api:80 via evil`). It is a contextual word, not a
// keyword: it means something only after a step's packet and flags, where
// no name can stand, so endpoints, cidrsets, policies and label keys
// written before it existed may still be called via.
const polStepVia = "via"

func (e *polExplainer) host(what string) {
	t := e.peek()
	switch t.Type {
	case tokWord, tokAddr4:
		e.next()
	case tokAddr6:
		e.failMsg(fmt.Sprintf("expected %s, got %q: write IPv6 addresses in packets in brackets, [%s]", what, t.Value, t.Value))
	case tokPrefix:
		e.failMsg(fmt.Sprintf("expected %s, got prefix %q: a packet needs a single address", what, t.Value))
	default:
		if e.is("[") {
			e.next()
			if !e.isType(tokAddr6) {
				e.fail(`an IPv6 address after "["`)
			}
			e.next()
			e.want(`"]" after the IPv6 address`, "]")
			break
		}
		e.name(what)
	}
	if e.is(":") {
		e.next()
		e.integer(`a port number after ":"`)
	}
}

// ---- fast path ----

// Most declarations of a large file are plain endpoints and policies. The
// participle parsers are general and slow (reflection, backtracking), so
// Parse first tries polFast, a small recursive-descent reader for those
// two kinds that builds the very same grammar structs participle would,
// positions included. It only accepts what it is sure of: at the first
// token it does not expect it gives up, and the declaration goes through
// participle (and, on a syntax error, through the explainer) as before. So
// the fast path can make Parse faster but never change what it returns.

// polUseFastPath turns the fast path off in tests, which check that Parse
// returns exactly the same with and without it.
var polUseFastPath = true

type polFast struct {
	toks []lexer.Token
	i    int
	ok   bool
}

func (f *polFast) peek() *lexer.Token {
	if f.i < len(f.toks) {
		return &f.toks[f.i]
	}
	return nil
}

// is reports whether the next token has value v (as participle's literal
// 'v' matches a token by value).
func (f *polFast) is(v string) bool {
	t := f.peek()
	return t != nil && t.Value == v
}

func (f *polFast) isType(tt lexer.TokenType) bool {
	t := f.peek()
	return t != nil && t.Type == tt
}

// want consumes a token of value v, or gives up.
func (f *polFast) want(v string) {
	if !f.is(v) {
		f.ok = false
		return
	}
	f.i++
}

func (f *polFast) next() lexer.Token {
	t := f.toks[f.i]
	f.i++
	return t
}

// polFastEndpoint and polFastPolicy parse chunk c, or return nil when the
// fast path is not sure.
func polFastEndpoint(c polChunk) *gEndpoint {
	f := &polFast{toks: c.toks, ok: true}
	g := f.endpoint()
	if !f.ok || f.i != len(f.toks) {
		return nil
	}
	return g
}

func polFastPolicy(c polChunk) *gPolicy {
	f := &polFast{toks: c.toks, ok: true}
	g := f.policy()
	if !f.ok || f.i != len(f.toks) {
		return nil
	}
	return g
}

func (f *polFast) name() *gName {
	if !f.isType(tokWord) {
		f.ok = false
		return nil
	}
	t := f.next()
	return &gName{Pos: t.Pos, Name: t.Value}
}

func (f *polFast) endpoint() *gEndpoint {
	g := &gEndpoint{Pos: f.peek().Pos}
	f.want("endpoint")
	if g.Name = f.name(); !f.ok {
		return nil
	}
	if f.is("remote") {
		g.Remote = &gRemote{Pos: f.next().Pos, Kw: "remote"}
	}
	if f.is("labels") {
		f.i++
		f.want("(")
		for f.ok {
			l := f.label()
			if !f.ok {
				return nil
			}
			g.Labels = append(g.Labels, l)
			if !f.is(",") {
				break
			}
			f.i++
		}
		f.want(")")
	}
	f.want("addr")
	for f.ok {
		a := f.addr()
		if !f.ok {
			return nil
		}
		g.Addrs = append(g.Addrs, a)
		if !f.is(",") {
			break
		}
		f.i++
	}
	return g
}

func (f *polFast) label() *gLabel {
	t := f.peek()
	if t == nil {
		f.ok = false
		return nil
	}
	l := &gLabel{Pos: t.Pos, Key: f.key()}
	f.want("=")
	if !f.ok {
		return nil
	}
	l.Value = f.value()
	return l
}

func (f *polFast) key() *gKey {
	t := f.peek()
	if t == nil || t.Type != tokWord && t.Type != tokString {
		f.ok = false
		return nil
	}
	f.i++
	v := t.Value
	if t.Type == tokWord {
		return &gKey{Pos: t.Pos, Bare: &v}
	}
	return &gKey{Pos: t.Pos, Quoted: &v}
}

func (f *polFast) value() *gValue {
	t := f.peek()
	if t == nil {
		f.ok = false
		return nil
	}
	v := t.Value
	switch t.Type {
	case tokWord, tokKeyword, tokInt, tokDWord, tokAddr4:
		f.i++
		return &gValue{Pos: t.Pos, Bare: &v}
	case tokString:
		f.i++
		return &gValue{Pos: t.Pos, Quoted: &v}
	}
	f.ok = false
	return nil
}

func (f *polFast) addr() *gAddr {
	t := f.peek()
	if t == nil || t.Type != tokAddr4 && t.Type != tokAddr6 && t.Type != tokPrefix {
		f.ok = false
		return nil
	}
	f.i++
	return &gAddr{Pos: t.Pos, Text: t.Value}
}

func (f *polFast) policy() *gPolicy {
	g := &gPolicy{Pos: f.peek().Pos}
	f.want("policy")
	if g.Name = f.name(); !f.ok {
		return nil
	}
	if f.is("audit") {
		g.Audit = &gAudit{Pos: f.next().Pos, Kw: "audit"}
	}
	if f.is("tier") {
		pos := f.next().Pos
		if !f.is("admin") && !f.is("baseline") {
			f.ok = false
			return nil
		}
		g.Tier = &gTier{Pos: pos, Tier: f.next().Value}
	}
	if f.is("priority") {
		pos := f.next().Pos
		n := f.integer()
		if !f.ok {
			return nil
		}
		g.Priority = &gPriority{Pos: pos, Value: n}
	}
	f.want("{")
	f.want("select")
	if !f.ok {
		return nil
	}
	if g.Select = f.selector(); !f.ok {
		return nil
	}
	for f.ok && !f.is("}") {
		switch {
		case f.is("ingress"), f.is("egress"):
			r := f.rule()
			if !f.ok {
				return nil
			}
			g.Items = append(g.Items, &gItem{Rule: r})
		case f.is("isolate"):
			is := &gIsolate{Pos: f.next().Pos}
			for f.ok {
				if !f.is("ingress") && !f.is("egress") {
					f.ok = false
					return nil
				}
				d := f.next()
				is.Dirs = append(is.Dirs, &gDir{Pos: d.Pos, Dir: d.Value})
				if !f.is(",") {
					break
				}
				f.i++
			}
			g.Items = append(g.Items, &gItem{Isolate: is})
		default:
			f.ok = false
			return nil
		}
	}
	f.want("}")
	return g
}

func (f *polFast) rule() *gRule {
	dir := f.next()
	g := &gRule{Pos: dir.Pos, Dir: dir.Value}
	if !f.is("allow") && !f.is("deny") && !f.is("pass") {
		f.ok = false
		return nil
	}
	g.Action = f.next().Value
	if f.is("from") || f.is("to") {
		w := f.next()
		g.PeerWord = &gPeerWord{Pos: w.Pos, Word: w.Value}
		for f.ok {
			p := f.peer()
			if !f.ok {
				return nil
			}
			g.Peers = append(g.Peers, p)
			if !f.is(",") {
				break
			}
			f.i++
		}
	}
	if f.is("on") {
		f.i++
		for f.ok {
			l := f.l4()
			if !f.ok {
				return nil
			}
			g.Ports = append(g.Ports, l)
			if !f.is(",") {
				break
			}
			f.i++
		}
	}
	return g
}

// peer reads the peers participle's disjunction picks without doubt: world,
// any, a CIDR, a selector (braced, or a requirement: "!" or a key and an
// operator) and a cidrset name (a word that no operator follows).
func (f *polFast) peer() *gPeer {
	t := f.peek()
	if t == nil {
		f.ok = false
		return nil
	}
	g := &gPeer{Pos: t.Pos}
	switch {
	case t.Value == "world":
		f.i++
		g.World = true
	case t.Value == "any":
		f.i++
		g.Any = true
	case t.Type == tokAddr4 || t.Type == tokAddr6 || t.Type == tokPrefix:
		g.CIDR = f.cidr()
	case t.Value == "{" || t.Value == "!":
		g.Selector = f.selector()
	case (t.Type == tokWord || t.Type == tokString) && f.i+1 < len(f.toks) && polIsOneOf(f.toks[f.i+1], "=", "!=", "in", "notin", "exists"):
		g.Selector = f.selector()
	case t.Type == tokWord && (f.i+1 == len(f.toks) || f.toks[f.i+1].Value == "," || f.toks[f.i+1].Value == "on" || f.toks[f.i+1].Value == "}" ||
		f.toks[f.i+1].Value == "ingress" || f.toks[f.i+1].Value == "egress"):
		g.Set = f.name()
	default:
		f.ok = false
		return nil
	}
	if !f.ok {
		return nil
	}
	return g
}

func (f *polFast) cidr() *gCIDR {
	t := f.peek()
	g := &gCIDR{Pos: t.Pos, Prefix: f.addr()}
	if !f.ok || !f.is("except") {
		return g
	}
	f.i++
	if f.is("(") {
		f.i++
		for f.ok {
			a := f.addr()
			if !f.ok {
				return nil
			}
			g.Except = append(g.Except, a)
			if !f.is(",") {
				break
			}
			f.i++
		}
		f.want(")")
		return g
	}
	g.Except = append(g.Except, f.addr())
	return g
}

// selector reads a braced selector or a single requirement.
func (f *polFast) selector() *gSelector {
	t := f.peek()
	if t == nil {
		f.ok = false
		return nil
	}
	g := &gSelector{Pos: t.Pos}
	if t.Value != "{" {
		g.Single = f.req()
		return g
	}
	f.i++
	g.Braced = true
	if f.is("}") {
		f.i++
		return g
	}
	for f.ok {
		r := f.req()
		if !f.ok {
			return nil
		}
		g.Reqs = append(g.Reqs, r)
		if !f.is(",") {
			break
		}
		f.i++
	}
	f.want("}")
	return g
}

// req reads one requirement: !key, key=value, key!=value, key in (...),
// key notin (...) or key exists.
func (f *polFast) req() *gReq {
	t := f.peek()
	if t == nil {
		f.ok = false
		return nil
	}
	g := &gReq{Pos: t.Pos}
	if t.Value == "!" {
		f.i++
		g.Not = f.key()
		return g
	}
	if g.Key = f.key(); !f.ok {
		return nil
	}
	switch {
	case f.is("="), f.is("!="):
		g.Op = f.next().Value
		g.Value = f.value()
	case f.is("in"), f.is("notin"):
		g.ListOp = f.next().Value
		f.want("(")
		for f.ok {
			v := f.value()
			if !f.ok {
				return nil
			}
			g.Values = append(g.Values, v)
			if !f.is(",") {
				break
			}
			f.i++
		}
		f.want(")")
	case f.is("exists"):
		f.i++
		g.Exists = true
	default:
		f.ok = false
		return nil
	}
	return g
}

func (f *polFast) l4() *gL4 {
	t := f.peek()
	if t == nil {
		f.ok = false
		return nil
	}
	g := &gL4{Pos: t.Pos}
	switch t.Value {
	case "tcp", "udp", "sctp":
		f.i++
		g.Port = t.Value
		if f.is("/") {
			f.i++
			g.First = f.integer()
			if f.ok && f.is("-") {
				f.i++
				g.Last = f.integer()
			}
		}
	case "icmp", "icmpv6":
		f.i++
		g.ICMP = t.Value
		if f.is("type") {
			f.i++
			g.Type = f.integer()
			if f.ok && f.is("code") {
				f.i++
				g.Code = f.integer()
			}
		}
	case "any":
		f.i++
		g.AnyProt = true
	default:
		f.ok = false
		return nil
	}
	return g
}

func (f *polFast) integer() *gInt {
	if !f.isType(tokInt) {
		f.ok = false
		return nil
	}
	t := f.next()
	return &gInt{Pos: t.Pos, Text: t.Value}
}
