package dsl

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// The YAML front end reads the same model as the policy language into the
// same AST. docs/yaml.md documents the shape; in short, a document is a map
// whose keys are sections (imports, endpoints, cidrsets, policies, prefilter,
// tests) read in the order written, and a file may hold several documents.
//
// The reader works on yaml.Node trees, never on Go structs, so that every
// AST node gets the position of the YAML node it came from and every problem
// (unknown field, wrong type, duplicate key) can be reported where it is,
// all of them at once.

// ParseYAML reads a policy written in YAML into the same AST as Parse.
func ParseYAML(path string, src []byte) (f *File, ds Diagnostics) {
	r := &yamlReader{path: path}
	f = &File{Path: path}
	defer func() {
		// yaml.v3 reports its own errors by value; this is a last line of
		// defence so that no input, however odd, crashes the caller.
		if p := recover(); p != nil {
			r.ds.Errorf(Pos{File: path, Line: 1, Col: 1}, "YAML reader failed: %v", p)
			ds = r.ds
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var docs []*yaml.Node
	for {
		doc := new(yaml.Node)
		err := dec.Decode(doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			r.syntaxError(err, src)
			break
		}
		docs = append(docs, doc)
	}
	for i, doc := range docs {
		r.document(f, doc, i == len(docs)-1)
	}
	if len(docs) == 0 && len(r.ds) == 0 {
		// yaml.v3 yields no document for a file of comments alone.
		f.Trailing = yamlDocLines(string(src))
	}
	r.ds.Sort()
	return f, r.ds
}

// yamlSections are the top-level keys of a document, in canonical order.
var yamlSections = []string{"imports", "endpoints", "cidrsets", "policies", "prefilter", "tests"}

// maxYAMLNodes bounds the work aliases can cause (a "billion laughs"
// document expands exponentially).
const maxYAMLNodes = 200000

type yamlReader struct {
	path string
	ds   Diagnostics
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserErrors are the messages of yaml.v3's parser (as opposed to its
// scanner). The parser reports 0-based line numbers, the scanner 1-based.
var yamlParserErrors = []string{
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected '-' indicator",
	"did not find expected <document start>",
	"did not find expected <stream-start>",
	"did not find expected key",
	"did not find expected node content",
	"found duplicate %TAG directive",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found undefined tag handle",
}

// syntaxError turns a yaml.v3 error into a diagnostic.
func (r *yamlReader) syntaxError(err error, src []byte) {
	pos, msg := YAMLSyntaxError(r.path, err, src)
	r.ds.Errorf(pos, "YAML syntax error: %s", msg)
}

// YAMLSyntaxError says where in src (the file at path) a yaml.v3 syntax
// error is and what it is. yaml.v3 gives a line (not always) and no
// column; for the common mistakes (a tab in indentation, a key indented
// deeper than its siblings) the column is found from the text.
func YAMLSyntaxError(path string, err error, src []byte) (Pos, string) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	pos := Pos{File: path, Line: 1, Col: 1}
	if m := yamlLineRe.FindStringSubmatch(err.Error()); m != nil {
		msg = m[2]
		if n, err := strconv.Atoi(m[1]); err == nil && n > 0 {
			pos.Line = n
			if slices.Contains(yamlParserErrors, msg) {
				pos.Line++
			}
		}
	}
	lines := strings.Split(string(src), "\n")
	switch msg {
	case "found character that cannot start any token":
		// Most often a tab in indentation; point at it.
		for i := pos.Line - 1; i >= 0 && i < len(lines); i++ {
			l := lines[i]
			indent := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
			if j := strings.IndexByte(indent, '\t'); j >= 0 {
				pos.Line, pos.Col = i+1, j+1
				msg += " (a tab: indent YAML with spaces)"
				break
			}
		}
	case "mapping values are not allowed in this context":
		// A key indented deeper than its siblings, or a colon inside a
		// plain value: point at the colon.
		if i := pos.Line - 1; i >= 0 && i < len(lines) {
			l := strings.TrimRight(lines[i], "\r")
			for j := 0; j < len(l); j++ {
				if l[j] == ':' && (j+1 == len(l) || l[j+1] == ' ') {
					pos.Col = j + 1
					break
				}
			}
		}
	}
	return pos, msg
}

func (r *yamlReader) pos(n *yaml.Node) Pos {
	return Pos{File: r.path, Line: n.Line, Col: n.Column}
}

func (r *yamlReader) errorf(n *yaml.Node, format string, args ...any) {
	r.ds.Errorf(r.pos(n), format, args...)
}

// yamlDeref follows an alias to the node it names.
func yamlDeref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// checkAliases walks a document as the readers will (through aliases) and
// reports aliases that refer to themselves or whose expansion exceeds
// maxYAMLNodes. The readers follow aliases freely once it has passed.
func (r *yamlReader) checkAliases(doc *yaml.Node) bool {
	expanded := 0 // nodes reached through an alias
	onPath := map[*yaml.Node]bool{}
	// origin is the outermost alias being expanded (nil: none), which is
	// where a user would fix an alias bomb.
	var walk func(n, origin *yaml.Node) bool
	walk = func(n, origin *yaml.Node) bool {
		if origin != nil {
			expanded++
			if expanded > maxYAMLNodes {
				r.errorf(origin, "alias *%s expands to more than %d nodes", origin.Value, maxYAMLNodes)
				return false
			}
		}
		if n.Kind == yaml.AliasNode {
			if n.Alias == nil {
				r.errorf(n, "unknown alias *%s", n.Value)
				return false
			}
			if onPath[n.Alias] {
				r.errorf(n, "alias *%s refers to itself", n.Value)
				return false
			}
			if origin == nil {
				origin = n
			}
			return walk(n.Alias, origin)
		}
		onPath[n] = true
		defer delete(onPath, n)
		for _, c := range n.Content {
			if !walk(c, origin) {
				return false
			}
		}
		return true
	}
	return walk(doc, nil)
}

// yamlDescribe names a node's type for "expected X, got Y" messages.
func yamlDescribe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a map"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing"
		case "!!int", "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		}
		return "a string"
	}
	return "something else"
}

func (r *yamlReader) expect(n *yaml.Node, kind yaml.Kind, what string) bool {
	if n.Kind == kind {
		return true
	}
	r.errorf(n, "expected %s, got %s", what, yamlDescribe(n))
	return false
}

// yamlField is one key of a map with its value.
type yamlField struct {
	key, val *yaml.Node
}

// fields returns the keys of map n that are among known, reporting unknown
// and duplicate keys; ctx names the map for messages ("in policy").
func (r *yamlReader) fields(n *yaml.Node, ctx string, known []string) []yamlField {
	var out []yamlField
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := yamlDeref(n.Content[i]), yamlDeref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			r.errorf(k, "expected a field name, got %s", yamlDescribe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			r.errorf(k, "duplicate key %q (first at line %d)", k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		if k.Value == "<<" {
			r.errorf(k, "merge keys (<<) are not supported")
			continue
		}
		if !slices.Contains(known, k.Value) {
			r.errorf(k, "unknown field %q %s%s", k.Value, ctx, yamlSuggest(k.Value, known))
			// Read a near miss as what it was surely meant to be, so that
			// the problems inside it are reported too.
			if g := yamlClosest(k.Value, known); g != "" && !yamlMapHasKey(n, g) {
				guess := *k
				guess.Value = g
				out = append(out, yamlField{&guess, v})
			}
			continue
		}
		out = append(out, yamlField{k, v})
	}
	return out
}

// yamlSuggest returns "; did you mean "x"?" for the known word closest to w,
// or the list of known words when none is close.
func yamlSuggest(w string, known []string) string {
	if s := DidYouMean(w, known); s != "" {
		return s
	}
	return " (want " + yamlJoinOr(known) + ")"
}

// yamlClosest returns the known word within a few typos of w, or "".
func yamlClosest(w string, known []string) string {
	best, bestD := "", -1
	for _, k := range known {
		d := yamlEditDistance(strings.ToLower(w), k)
		if bestD < 0 || d < bestD {
			best, bestD = k, d
		}
	}
	if bestD >= 0 && bestD <= max(1, len(best)/3) {
		return best
	}
	return ""
}

func yamlMapHasKey(n *yaml.Node, key string) bool {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := yamlDeref(n.Content[i]); k.Kind == yaml.ScalarNode && k.Value == key {
			return true
		}
	}
	return false
}

func yamlJoinOr(words []string) string {
	switch len(words) {
	case 0:
		return ""
	case 1:
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// yamlEditDistance counts the insertions, deletions, substitutions and
// transpositions of adjacent letters that turn a into b.
func yamlEditDistance(a, b string) int {
	if len(a) > 64 {
		return len(a) // not a typo of a field name; keep the work bounded
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// yamlDocLines turns yaml.v3 comment text into Doc lines: '#' and one space
// removed, blank lines dropped.
func yamlDocLines(comments ...string) Doc {
	var d Doc
	for _, c := range comments {
		for _, l := range strings.Split(c, "\n") {
			l = strings.TrimRight(l, " \t\r")
			if !strings.HasPrefix(strings.TrimLeft(l, " \t"), "#") {
				continue
			}
			l = strings.TrimPrefix(strings.TrimLeft(l, " \t"), "#")
			l = strings.TrimPrefix(l, " ")
			d = append(d, l)
		}
	}
	return d
}

// yamlParagraphs is yamlDocLines for a comment that blank lines divide
// into paragraphs: one Doc per paragraph.
func yamlParagraphs(c string) []Doc {
	var out []Doc
	var para Doc
	for _, l := range strings.Split(c, "\n") {
		if strings.TrimSpace(l) == "" {
			if len(para) > 0 {
				out = append(out, para)
			}
			para = nil
			continue
		}
		para = append(para, yamlDocLines(l)...)
	}
	if len(para) > 0 {
		out = append(out, para)
	}
	return out
}

func (r *yamlReader) document(f *File, doc *yaml.Node, last bool) {
	if !r.checkAliases(doc) {
		return
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return
	}
	top := yamlDeref(doc.Content[0])
	if last {
		defer func() {
			var foot []string
			if top.Kind == yaml.MappingNode && len(top.Content) > 0 {
				foot = append(foot, top.Content[len(top.Content)-2].FootComment)
			}
			foot = append(foot, top.FootComment, doc.FootComment)
			f.Trailing = append(f.Trailing, yamlDocLines(foot...)...)
		}()
	}
	if top.Kind == yaml.ScalarNode && top.ShortTag() == "!!null" {
		return // an empty document, perhaps with comments
	}
	if !r.expect(top, yaml.MappingNode, "a map of sections ("+yamlJoinOr(yamlSections)+")") {
		return
	}
	head := doc.HeadComment
	for _, fl := range r.fields(top, "at the top level", yamlSections) {
		n := len(f.Decls)
		switch fl.key.Value {
		case "imports":
			r.imports(f, fl.val)
		case "endpoints":
			r.list(fl.val, "a list of endpoints", func(it *yaml.Node) { r.endpoint(f, it) })
		case "cidrsets":
			r.list(fl.val, "a list of cidrsets", func(it *yaml.Node) { r.cidrset(f, it) })
		case "policies":
			r.list(fl.val, "a list of policies", func(it *yaml.Node) { r.policy(f, it) })
		case "prefilter":
			p := &Prefilter{Pos: r.pos(fl.key), Doc: yamlDocLines(fl.key.HeadComment)}
			p.Entries = r.cidrs(fl.val, "a list of CIDRs")
			f.Decls = append(f.Decls, p)
		case "tests":
			r.list(fl.val, "a list of tests", func(it *yaml.Node) { r.test(f, it) })
		}
		// Comments above a section key, or above the whole document, belong
		// to the first declaration that follows; but those above the whole
		// document (yaml.v3 keeps apart those a blank line separates from
		// the first key) are the file's header when that declaration is the
		// file's first, as in the policy language.
		if len(f.Decls) > n {
			var lead Doc
			if n == 0 {
				f.Header = yamlParagraphs(head)
			} else {
				lead = yamlDocLines(head)
			}
			head = ""
			if _, isPrefilter := f.Decls[n].(*Prefilter); !isPrefilter {
				lead = append(lead, yamlDocLines(fl.key.HeadComment)...)
			}
			if len(lead) > 0 {
				d := yamlDeclDoc(f.Decls[n])
				*d = append(lead, (*d)...)
			}
		}
	}
}

func yamlDeclDoc(d Decl) *Doc {
	switch d := d.(type) {
	case *Import:
		return &d.Doc
	case *Endpoint:
		return &d.Doc
	case *CIDRSet:
		return &d.Doc
	case *Policy:
		return &d.Doc
	case *Prefilter:
		return &d.Doc
	case *Test:
		return &d.Doc
	}
	return new(Doc)
}

// list calls each for every element of sequence n.
func (r *yamlReader) list(n *yaml.Node, what string, each func(*yaml.Node)) {
	if !r.expect(n, yaml.SequenceNode, what) {
		return
	}
	for _, it := range n.Content {
		each(yamlDeref(it))
	}
}

// scalar returns the text of a scalar node, reporting anything else.
func (r *yamlReader) scalar(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		r.errorf(n, "expected %s, got %s", what, yamlDescribe(n))
		return "", false
	}
	return n.Value, true
}

func (r *yamlReader) text(n *yaml.Node, what string) (Text, bool) {
	s, ok := r.scalar(n, what)
	return Text{Pos: r.pos(n), Text: s}, ok
}

// yamlIsName reports whether s is a NAME of the policy language (an
// endpoint, cidrset or policy name): exactly one bare word, not a keyword.
// It asks the language's own lexer, so that the two front ends accept the
// same names and `polc fmt --to pol` can print every name the reader took.
func yamlIsName(s string) bool {
	if s == "" {
		return false
	}
	var ds Diagnostics
	toks, _ := polLexSource("", []byte(s), &ds)
	return len(ds) == 0 && len(toks) == 2 && toks[0].Type == tokWord && toks[0].Value == s
}

// yamlNameProblem explains why s is not a name.
func yamlNameProblem(s string) string {
	if polKeywords[s] {
		return fmt.Sprintf("%q is a keyword of the policy language", s)
	}
	return "use letters, digits and '_', starting with a letter or '_'; '.' and '-' only between them"
}

func (r *yamlReader) ident(n *yaml.Node, what string) (Ident, bool) {
	s, ok := r.scalar(n, what)
	if !ok {
		return Ident{}, false
	}
	if !yamlIsName(s) {
		r.errorf(n, "invalid %s %q: %s", what, s, yamlNameProblem(s))
		return Ident{}, false
	}
	return Ident{Pos: r.pos(n), Name: s}, true
}

// integer reads a non-negative integer; range checks belong to the compiler.
func (r *yamlReader) integer(n *yaml.Node, what string) *Int {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float" && strings.Trim(n.Value, "0123456789") == "" {
		r.errorf(n, "%s %s does not fit in 64 bits", what, n.Value)
		return nil
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		r.errorf(n, "expected %s, got %s", what, yamlDescribe(n))
		return nil
	}
	var v int64
	if err := n.Decode(&v); err != nil {
		r.errorf(n, "%s %q does not fit in 64 bits", what, n.Value)
		return nil
	}
	if v < 0 {
		r.errorf(n, "expected %s, got %d", what, v)
		return nil
	}
	return &Int{Pos: r.pos(n), Value: v}
}

// requireName reports a missing name key.
func (r *yamlReader) requireName(n *yaml.Node, fs []yamlField, what string) {
	for _, fl := range fs {
		if fl.key.Value == "name" {
			return
		}
	}
	r.errorf(n, "%s needs a name", what)
}

func (r *yamlReader) imports(f *File, n *yaml.Node) {
	r.list(n, "a list of file paths", func(it *yaml.Node) {
		if t, ok := r.text(it, "a file path"); ok {
			f.Decls = append(f.Decls, &Import{Pos: t.Pos, Doc: yamlDocLines(it.HeadComment), Path: t})
		}
	})
}

func (r *yamlReader) endpoint(f *File, n *yaml.Node) {
	if !r.expect(n, yaml.MappingNode, "an endpoint (a map with name, labels and addrs)") {
		return
	}
	e := &Endpoint{Pos: r.pos(n), Doc: yamlDocLines(n.HeadComment)}
	fs := r.fields(n, "in endpoint", []string{"name", "remote", "labels", "addrs"})
	r.requireName(n, fs, "endpoint")
	hasAddrs := false
	for _, fl := range fs {
		switch fl.key.Value {
		case "name":
			e.Name, _ = r.ident(fl.val, "endpoint name")
		case "remote":
			e.Remote = r.flag(fl)
		case "labels":
			e.Labels = r.labels(fl.val)
		case "addrs":
			hasAddrs = true
			r.list(fl.val, "a list of addresses", func(it *yaml.Node) {
				if t, ok := r.text(it, "an address"); ok {
					e.Addrs = append(e.Addrs, t)
				}
			})
		}
	}
	if !hasAddrs {
		r.errorf(n, "endpoint needs addrs (a list of addresses)")
	}
	f.Decls = append(f.Decls, e)
}

// flag reads a boolean field (`audit: true`, `remote: true`): the key's
// position when true, no position when false or not a boolean (an error).
func (r *yamlReader) flag(fl yamlField) Pos {
	var b bool
	if fl.val.Kind != yaml.ScalarNode || fl.val.ShortTag() != "!!bool" || fl.val.Decode(&b) != nil {
		r.errorf(fl.val, "expected true or false, got %s", yamlDescribe(fl.val))
		return Pos{}
	}
	if !b {
		return Pos{}
	}
	return r.pos(fl.key)
}

// labelPairs reads a map of label keys to values (endpoint labels, or the
// map form of a selector). Keys and values are any strings, as in the
// policy language (where those that are not bare words are quoted); a
// value left empty (`debug:`) is the empty string.
func (r *yamlReader) labelPairs(n *yaml.Node, what string, each func(k, v *yaml.Node, key, value string)) {
	if !r.expect(n, yaml.MappingNode, what) {
		return
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := yamlDeref(n.Content[i]), yamlDeref(n.Content[i+1])
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			r.errorf(k, "merge keys (<<) are not supported; write \"<<\" in quotes for a label key")
			continue
		}
		key, ok := r.scalar(k, "a label key")
		if !ok {
			continue
		}
		if first, dup := seen[key]; dup {
			r.errorf(k, "duplicate key %q (first at line %d)", key, first.Line)
			continue
		}
		seen[key] = k
		value := ""
		if !(v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null" && v.Value == "") {
			if value, ok = r.scalar(v, "a label value"); !ok {
				continue
			}
		}
		each(k, v, key, value)
	}
}

func (r *yamlReader) labels(n *yaml.Node) []Label {
	var ls []Label
	r.labelPairs(n, "a map of labels", func(k, _ *yaml.Node, key, value string) {
		ls = append(ls, Label{Pos: r.pos(k), Key: key, Value: value})
	})
	return ls
}

func (r *yamlReader) cidrset(f *File, n *yaml.Node) {
	if !r.expect(n, yaml.MappingNode, "a cidrset (a map with name and cidrs)") {
		return
	}
	s := &CIDRSet{Pos: r.pos(n), Doc: yamlDocLines(n.HeadComment)}
	fs := r.fields(n, "in cidrset", []string{"name", "cidrs"})
	r.requireName(n, fs, "cidrset")
	for _, fl := range fs {
		switch fl.key.Value {
		case "name":
			s.Name, _ = r.ident(fl.val, "cidrset name")
		case "cidrs":
			s.Entries = r.cidrs(fl.val, "a list of CIDRs")
		}
	}
	f.Decls = append(f.Decls, s)
}

func (r *yamlReader) cidrs(n *yaml.Node, what string) []CIDR {
	var out []CIDR
	r.list(n, what, func(it *yaml.Node) {
		if c, ok := r.cidr(it); ok {
			out = append(out, c)
		}
	})
	return out
}

// cidr reads `10.0.0.0/8` or `{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}`.
func (r *yamlReader) cidr(n *yaml.Node) (CIDR, bool) {
	if n.Kind == yaml.ScalarNode {
		t, ok := r.text(n, "a CIDR")
		return CIDR{Pos: t.Pos, Prefix: t}, ok
	}
	if !r.expect(n, yaml.MappingNode, "a CIDR or a map with cidr and except") {
		return CIDR{}, false
	}
	return r.cidrMap(n, "in CIDR")
}

func (r *yamlReader) cidrMap(n *yaml.Node, ctx string) (CIDR, bool) {
	c := CIDR{Pos: r.pos(n)}
	ok := false
	for _, fl := range r.fields(n, ctx, []string{"cidr", "except"}) {
		switch fl.key.Value {
		case "cidr":
			c.Prefix, ok = r.text(fl.val, "a CIDR")
		case "except":
			r.list(fl.val, "a list of CIDRs", func(it *yaml.Node) {
				if t, ok := r.text(it, "a CIDR"); ok {
					c.Except = append(c.Except, t)
				}
			})
		}
	}
	if !ok && c.Prefix.Pos == (Pos{}) {
		r.errorf(n, "missing cidr")
	}
	return c, ok
}

func (r *yamlReader) policy(f *File, n *yaml.Node) {
	if !r.expect(n, yaml.MappingNode, "a policy (a map with name, select and rules)") {
		return
	}
	p := &Policy{Pos: r.pos(n), Doc: yamlDocLines(n.HeadComment)}
	fs := r.fields(n, "in policy", []string{"name", "audit", "tier", "priority", "select", "isolate", "ingress", "egress"})
	r.requireName(n, fs, "policy")
	hasSelect := false
	for _, fl := range fs {
		switch fl.key.Value {
		case "name":
			p.Name, _ = r.ident(fl.val, "policy name")
		case "audit":
			p.Audit = r.flag(fl)
		case "tier":
			s, ok := r.scalar(fl.val, "a tier (admin or baseline)")
			switch {
			case !ok:
			case s == "admin":
				p.Tier, p.TierPos = TierAdmin, r.pos(fl.key)
			case s == "baseline":
				p.Tier, p.TierPos = TierBaseline, r.pos(fl.key)
			default:
				r.errorf(fl.val, "unknown tier %q%s", s, yamlSuggest(s, []string{"admin", "baseline"}))
			}
		case "priority":
			if v := r.integer(fl.val, "a priority (0 to 1000)"); v != nil {
				p.Priority, p.PriorityPos = polClampPriority(v.Value), r.pos(fl.key)
			}
		case "select":
			hasSelect = true
			p.Select = r.selector(fl.val)
		case "isolate":
			p.IsolateDoc = yamlDocLines(fl.key.HeadComment)
			r.list(fl.val, "a list of directions (ingress, egress)", func(it *yaml.Node) {
				s, ok := r.scalar(it, "a direction (ingress or egress)")
				switch {
				case !ok:
				case s == "ingress":
					p.Isolate = append(p.Isolate, DirectionAt{Pos: r.pos(it), Dir: Ingress})
				case s == "egress":
					p.Isolate = append(p.Isolate, DirectionAt{Pos: r.pos(it), Dir: Egress})
				default:
					r.errorf(it, "unknown direction %q%s", s, yamlSuggest(s, []string{"ingress", "egress"}))
				}
			})
		case "ingress", "egress":
			dir := Ingress
			if fl.key.Value == "egress" {
				dir = Egress
			}
			r.list(fl.val, "a list of rules", func(it *yaml.Node) {
				if rule := r.rule(it, dir); rule != nil {
					p.Rules = append(p.Rules, rule)
				}
			})
		}
	}
	if !hasSelect {
		r.errorf(n, "policy needs select ({} selects every endpoint)")
	}
	f.Decls = append(f.Decls, p)
}

func (r *yamlReader) rule(n *yaml.Node, dir Direction) *Rule {
	if !r.expect(n, yaml.MappingNode, "a rule (a map with action, from/to and ports)") {
		return nil
	}
	rule := &Rule{Pos: r.pos(n), Doc: yamlDocLines(n.HeadComment), Dir: dir}
	hasAction := false
	for _, fl := range r.fields(n, "in rule", []string{"action", "from", "to", "ports"}) {
		switch fl.key.Value {
		case "action":
			s, ok := r.scalar(fl.val, "an action (allow, deny or pass)")
			switch {
			case !ok:
			case s == "allow":
				rule.Action = Allow
			case s == "deny":
				rule.Action = Deny
			case s == "pass":
				rule.Action = Pass
			default:
				r.errorf(fl.val, "unknown action %q%s", s, yamlSuggest(s, []string{"allow", "deny", "pass"}))
			}
			hasAction = true
		case "from", "to":
			if rule.PeerWord != "" {
				r.errorf(fl.key, "a rule has either from or to, not both")
				continue
			}
			rule.PeerWord, rule.PeerPos = fl.key.Value, r.pos(fl.key)
			r.list(fl.val, "a list of peers", func(it *yaml.Node) {
				if p, ok := r.peer(it); ok {
					rule.Peers = append(rule.Peers, p)
				}
			})
		case "ports":
			r.list(fl.val, "a list of protocols and ports", func(it *yaml.Node) {
				if l, ok := r.l4(it); ok {
					rule.Ports = append(rule.Ports, l)
				}
			})
		}
	}
	if !hasAction {
		r.errorf(n, "rule needs action (allow or deny)")
	}
	return rule
}

// yamlLooksLikeAddr tells an address or CIDR from a name: addresses start with
// a digit (IPv4) or contain a colon (IPv6).
func yamlLooksLikeAddr(s string) bool {
	return s != "" && (s[0] >= '0' && s[0] <= '9' || strings.Contains(s, ":"))
}

func (r *yamlReader) peer(n *yaml.Node) (Peer, bool) {
	p := Peer{Pos: r.pos(n)}
	if n.Kind == yaml.ScalarNode {
		s, ok := r.scalar(n, "a peer")
		switch {
		case !ok:
			return p, false
		case s == "world":
			p.Kind = PeerWorld
		case s == "any":
			p.Kind = PeerAny
		case yamlLooksLikeAddr(s):
			p.Kind = PeerCIDR
			p.CIDR = CIDR{Pos: p.Pos, Prefix: Text{Pos: p.Pos, Text: s}}
		case yamlIsName(s):
			p.Kind = PeerSet
			p.Set = Ident{Pos: p.Pos, Name: s}
		case strings.ContainsAny(s, "=!{") || strings.Contains(s, " in ") || strings.Contains(s, " notin ") || strings.HasSuffix(s, " exists"):
			r.errorf(n, "a selector peer is written {select: %s}", s)
			return p, false
		default:
			r.errorf(n, "expected world, any, a CIDR or a cidrset name, got %q", s)
			return p, false
		}
		return p, true
	}
	if !r.expect(n, yaml.MappingNode, "a peer (world, any, a CIDR, a cidrset name or a map)") {
		return p, false
	}
	// The map's keys say which kind of peer it is.
	kinds := []string{"select", "cidrset", "cidr"}
	var kind string
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := yamlDeref(n.Content[i]); k.Kind == yaml.ScalarNode && slices.Contains(kinds, k.Value) {
			kind = k.Value
			break
		}
	}
	switch kind {
	case "cidr":
		p.Kind = PeerCIDR
		c, ok := r.cidrMap(n, "in CIDR peer")
		p.CIDR = c
		return p, ok
	case "select", "cidrset":
		fs := r.fields(n, "in "+kind+" peer", []string{kind})
		if len(fs) == 0 {
			return p, false
		}
		if kind == "select" {
			p.Kind = PeerSelector
			p.Selector = r.selector(fs[0].val)
			return p, true
		}
		p.Kind = PeerSet
		id, ok := r.ident(fs[0].val, "cidrset name")
		p.Set = id
		return p, ok
	}
	r.errorf(n, "a peer map needs one of select, cidrset or cidr")
	return p, false
}

// yamlStrPos maps byte offsets in a scalar's value to source positions. Only a
// single-line plain or quoted scalar maps exactly; anything else points at
// the scalar's start.
type yamlStrPos struct {
	base  Pos
	exact bool
}

func (r *yamlReader) strPos(n *yaml.Node) yamlStrPos {
	sp := yamlStrPos{base: r.pos(n)}
	if strings.Contains(n.Value, "\n") {
		return sp
	}
	switch n.Style {
	case 0, yaml.FlowStyle:
		// A plain scalar has no escapes.
		sp.exact = true
	case yaml.DoubleQuotedStyle:
		if !strings.ContainsAny(n.Value, `"'\`) {
			sp.exact = true
			sp.base.Col++
		}
	case yaml.SingleQuotedStyle:
		// Only '' is an escape: '"k8s:app"=web' maps exactly.
		if !strings.Contains(n.Value, "'") {
			sp.exact = true
			sp.base.Col++
		}
	}
	return sp
}

func (sp yamlStrPos) at(off int) Pos {
	if !sp.exact {
		return sp.base
	}
	p := sp.base
	p.Col += off
	return p
}

// selector reads a selector: a map of equality requirements, a list of
// requirement strings, or one string of comma-separated requirements.
func (r *yamlReader) selector(n *yaml.Node) Selector {
	sel := Selector{Pos: r.pos(n)}
	switch n.Kind {
	case yaml.MappingNode:
		r.labelPairs(n, "a selector", func(k, _ *yaml.Node, key, value string) {
			sel.Reqs = append(sel.Reqs, Requirement{Pos: r.pos(k), Key: key, Op: OpEq, Values: []string{value}})
		})
		return sel
	case yaml.SequenceNode:
		for _, it := range n.Content {
			it = yamlDeref(it)
			if s, ok := r.scalar(it, "a label requirement such as \"app=web\""); ok {
				reqs, err := yamlParseRequirements(s, r.strPos(it))
				if err != nil {
					r.ds.Errorf(err.pos, "%s", err.msg)
					continue
				}
				sel.Reqs = append(sel.Reqs, reqs...)
			}
		}
		return sel
	}
	const what = "a selector (a map of labels, a list of requirements or a string)"
	if n.Kind == yaml.ScalarNode && n.ShortTag() != "!!str" {
		r.errorf(n, "expected %s, got %s", what, yamlDescribe(n))
		return sel
	}
	s, ok := r.scalar(n, what)
	if !ok {
		return sel
	}
	reqs, err := yamlParseRequirements(s, r.strPos(n))
	if err != nil {
		r.ds.Errorf(err.pos, "%s", err.msg)
		return sel
	}
	sel.Reqs = reqs
	return sel
}

type yamlPosError struct {
	pos Pos
	msg string
}

func yamlErrAt(p Pos, format string, args ...any) *yamlPosError {
	return &yamlPosError{pos: p, msg: fmt.Sprintf(format, args...)}
}

// yamlSelToken is a word or punctuation in a requirement string. A word is
// a label key or value, bare or quoted; text is its value and raw what was
// written. A quoted word is never an operator: `k "in" (a)` is an error.
type yamlSelToken struct {
	off    int
	text   string
	raw    string
	word   bool
	quoted bool
}

// yamlIsLabelChar reports whether c may appear in a bare key or value of a
// requirement string. Every bare key and value of the policy language is
// such a run; '/' is allowed too (k8s.io/name=x), as it always was here.
func yamlIsLabelChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' || c == '/'
}

// yamlReqWord writes a label key or value for a requirement string: bare
// when it reads back as one word, else as a Go double-quoted string, as the
// policy language writes it.
func yamlReqWord(s string) string {
	for i := 0; i < len(s); i++ {
		if !yamlIsLabelChar(s[i]) {
			return strconv.Quote(s)
		}
	}
	if s == "" {
		return `""`
	}
	return s
}

func yamlLexSelector(s string, sp yamlStrPos) ([]yamlSelToken, *yamlPosError) {
	var toks []yamlSelToken
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case yamlIsLabelChar(c):
			j := i
			for j < len(s) && yamlIsLabelChar(s[j]) {
				j++
			}
			toks = append(toks, yamlSelToken{off: i, text: s[i:j], raw: s[i:j], word: true})
			i = j
		case c == '"':
			// A Go string, as in the policy language: "k8s:app"=web.
			j := i + 1
			for j < len(s) && s[j] != '"' && s[j] != '\n' {
				if s[j] == '\\' && j+1 < len(s) && s[j+1] != '\n' {
					j++
				}
				j++
			}
			if j >= len(s) || s[j] != '"' {
				return nil, yamlErrAt(sp.at(i), "unterminated string in selector %q", s)
			}
			j++
			v, err := strconv.Unquote(s[i:j])
			if err != nil {
				return nil, yamlErrAt(sp.at(i), "invalid string %s in selector %q: use Go escapes (\\\" \\\\ \\n \\t \\xNN \\uNNNN)", s[i:j], s)
			}
			toks = append(toks, yamlSelToken{off: i, text: v, raw: s[i:j], word: true, quoted: true})
			i = j
		case c == '!' && i+1 < len(s) && s[i+1] == '=':
			toks = append(toks, yamlSelToken{off: i, text: "!=", raw: "!="})
			i += 2
		case strings.IndexByte("=!(),{}", c) >= 0:
			toks = append(toks, yamlSelToken{off: i, text: s[i : i+1], raw: s[i : i+1]})
			i++
		default:
			r, _ := utf8.DecodeRuneInString(s[i:])
			msg := fmt.Sprintf("unexpected %q in selector %q", r, s)
			if prev := len(toks) - 1; r == ':' && prev >= 0 && toks[prev].word && !toks[prev].quoted && toks[prev].off+len(toks[prev].raw) == i {
				// k8s:io.kubernetes.pod.namespace=x: a key or value with
				// characters a bare word cannot hold.
				msg += "; write keys and values with other characters in double quotes, as in \"k8s:app\"=web"
			}
			return nil, yamlErrAt(sp.at(i), "%s", msg)
		}
	}
	return toks, nil
}

// yamlParseRequirements reads `app=web`, `tier in (a, b)`, `!debug`,
// `env exists`, `k!=v`, `k notin (a)`, separated by commas and optionally
// wrapped in braces as in the policy language.
func yamlParseRequirements(s string, sp yamlStrPos) ([]Requirement, *yamlPosError) {
	toks, perr := yamlLexSelector(s, sp)
	if perr != nil {
		return nil, perr
	}
	i := 0
	peek := func() *yamlSelToken {
		if i < len(toks) {
			return &toks[i]
		}
		return nil
	}
	endPos := sp.at(len(s))
	want := func(what string) *yamlPosError {
		if t := peek(); t != nil {
			return yamlErrAt(sp.at(t.off), "expected %s in selector %q, got %q", what, s, t.raw)
		}
		return yamlErrAt(endPos, "expected %s at the end of selector %q", what, s)
	}
	braced := false
	if t := peek(); t != nil && t.raw == "{" {
		braced = true
		i++
	}
	var reqs []Requirement
	for {
		if t := peek(); braced && t != nil && t.raw == "}" && len(reqs) == 0 {
			break
		}
		t := peek()
		if t == nil {
			return nil, want("a label requirement")
		}
		req := Requirement{Pos: sp.at(t.off)}
		if t.raw == "!" {
			i++
			k := peek()
			if k == nil || !k.word {
				return nil, want("a label key after '!'")
			}
			i++
			req.Key, req.Op = k.text, OpNotExists
		} else {
			if !t.word {
				return nil, want("a label key")
			}
			req.Key = t.text
			i++
			op := peek()
			if op == nil {
				return nil, want("=, !=, in, notin or exists")
			}
			switch {
			case op.raw == "=" || op.raw == "!=":
				i++
				req.Op = OpEq
				if op.raw == "!=" {
					req.Op = OpNotEq
				}
				v := ""
				if t := peek(); t != nil && t.word {
					v = t.text
					i++
				}
				req.Values = []string{v}
			case op.word && (op.raw == "in" || op.raw == "notin"):
				i++
				req.Op = OpIn
				if op.raw == "notin" {
					req.Op = OpNotIn
				}
				if t := peek(); t == nil || t.raw != "(" {
					return nil, want("'('")
				}
				i++
				for {
					v := peek()
					if v == nil || !v.word {
						return nil, want("a label value")
					}
					req.Values = append(req.Values, v.text)
					i++
					sep := peek()
					if sep != nil && sep.raw == "," {
						i++
						continue
					}
					if sep != nil && sep.raw == ")" {
						i++
						break
					}
					return nil, want("',' or ')'")
				}
			case op.word && op.raw == "exists":
				i++
				req.Op = OpExists
			default:
				return nil, want("=, !=, in, notin or exists")
			}
		}
		reqs = append(reqs, req)
		if t := peek(); t != nil && t.raw == "," {
			i++
			continue
		}
		break
	}
	if braced {
		if t := peek(); t == nil || t.raw != "}" {
			return nil, want("'}'")
		}
		i++
	}
	if i < len(toks) {
		return nil, want("',' or the end")
	}
	return reqs, nil
}

var (
	yamlL4Protos     = []string{"tcp", "udp", "sctp", "icmp", "icmpv6", "any"}
	yamlPacketProtos = []string{"tcp", "udp", "sctp", "icmp", "icmpv6"}
	yamlTcpFlags     = []string{"syn", "ack", "fin", "rst", "psh", "urg"}
)

// l4 reads `tcp/8080`, `udp/1000-2000`, `icmp type 8 code 0`, `any`, or a
// map {proto, port, endPort, type, code}.
func (r *yamlReader) l4(n *yaml.Node) (L4, bool) {
	l := L4{Pos: r.pos(n)}
	if n.Kind == yaml.MappingNode {
		hasProto := false
		for _, fl := range r.fields(n, "in port", []string{"proto", "port", "endPort", "type", "code"}) {
			switch fl.key.Value {
			case "proto":
				s, ok := r.scalar(fl.val, "a protocol")
				if !ok {
					return l, false
				}
				if l.Proto, ok = r.checkProto(strings.ToLower(s), yamlL4Protos, r.pos(fl.val)); !ok {
					return l, false
				}
				hasProto = true
			case "port":
				l.Port = r.integer(fl.val, "a port number")
			case "endPort":
				l.PortEnd = r.integer(fl.val, "a port number")
			case "type":
				l.ICMPType = r.integer(fl.val, "an ICMP type")
			case "code":
				l.ICMPCode = r.integer(fl.val, "an ICMP code")
			}
		}
		if !hasProto {
			r.errorf(n, "port needs proto (%s)", yamlJoinOr(yamlL4Protos))
			return l, false
		}
		return l, true
	}
	s, ok := r.scalar(n, "a protocol and port such as tcp/8080, or a map")
	if !ok {
		return l, false
	}
	sp := r.strPos(n)
	words := yamlFieldsAt(s)
	if len(words) == 0 {
		r.errorf(n, "expected a protocol and port such as tcp/8080, got an empty string")
		return l, false
	}
	w := words[0]
	proto, ports, hasPorts := strings.Cut(w.text, "/")
	if l.Proto, ok = r.checkProto(strings.ToLower(proto), yamlL4Protos, sp.at(w.off)); !ok {
		return l, false
	}
	if hasPorts {
		first, last, isRange := strings.Cut(ports, "-")
		off := w.off + len(proto) + 1
		if l.Port, ok = r.digits(first, sp.at(off), "a port number", s); !ok {
			return l, false
		}
		if isRange {
			if l.PortEnd, ok = r.digits(last, sp.at(off+len(first)+1), "a port number", s); !ok {
				return l, false
			}
		}
	}
	l.ICMPType, l.ICMPCode, ok = r.icmpSuffix(words[1:], sp, s)
	return l, ok
}

func (r *yamlReader) checkProto(s string, known []string, p Pos) (string, bool) {
	if slices.Contains(known, s) {
		return s, true
	}
	r.ds.Errorf(p, "unknown protocol %q%s", s, yamlSuggest(s, known))
	return "", false
}

// digits reads a decimal number inside a string.
func (r *yamlReader) digits(s string, p Pos, what, whole string) (*Int, bool) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		r.ds.Errorf(p, "expected %s in %q, got %q", what, whole, s)
		return nil, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		r.ds.Errorf(p, "%s %q does not fit in 64 bits", what, s)
		return nil, false
	}
	return &Int{Pos: p, Value: v}, true
}

// icmpSuffix reads `[type N [code N]]` at the end of an L4 or packet string.
func (r *yamlReader) icmpSuffix(words []yamlWordAt, sp yamlStrPos, whole string) (typ, code *Int, ok bool) {
	i := 0
	if i < len(words) && words[i].text == "type" {
		if i+1 >= len(words) {
			r.ds.Errorf(sp.at(len(whole)), "expected an ICMP type after \"type\" in %q", whole)
			return nil, nil, false
		}
		if typ, ok = r.digits(words[i+1].text, sp.at(words[i+1].off), "an ICMP type", whole); !ok {
			return nil, nil, false
		}
		i += 2
		if i < len(words) && words[i].text == "code" {
			if i+1 >= len(words) {
				r.ds.Errorf(sp.at(len(whole)), "expected an ICMP code after \"code\" in %q", whole)
				return nil, nil, false
			}
			if code, ok = r.digits(words[i+1].text, sp.at(words[i+1].off), "an ICMP code", whole); !ok {
				return nil, nil, false
			}
			i += 2
		}
	}
	if i < len(words) {
		r.ds.Errorf(sp.at(words[i].off), "unexpected %q in %q (want \"type N code N\" or the end)", words[i].text, whole)
		return nil, nil, false
	}
	return typ, code, true
}

// yamlWordAt is a whitespace-separated word with its byte offset.
type yamlWordAt struct {
	off  int
	text string
}

// yamlFieldsAt splits s at white space and around "->".
func yamlFieldsAt(s string) []yamlWordAt {
	var out []yamlWordAt
	i := 0
	for i < len(s) {
		if s[i] == ' ' || s[i] == '\t' {
			i++
			continue
		}
		j := i
		for j < len(s) && s[j] != ' ' && s[j] != '\t' {
			j++
		}
		w := s[i:j]
		for off := i; w != ""; {
			k := strings.Index(w, "->")
			if k < 0 {
				out = append(out, yamlWordAt{off, w})
				break
			}
			if k > 0 {
				out = append(out, yamlWordAt{off, w[:k]})
			}
			out = append(out, yamlWordAt{off + k, "->"})
			w, off = w[k+2:], off+k+2
		}
		i = j
	}
	return out
}

func (r *yamlReader) test(f *File, n *yaml.Node) {
	if !r.expect(n, yaml.MappingNode, "a test (a map with name and steps)") {
		return
	}
	t := &Test{Pos: r.pos(n), Doc: yamlDocLines(n.HeadComment)}
	fs := r.fields(n, "in test", []string{"name", "steps"})
	r.requireName(n, fs, "test")
	hasSteps := false
	for _, fl := range fs {
		switch fl.key.Value {
		case "name":
			t.Name, _ = r.text(fl.val, "a test name")
		case "steps":
			hasSteps = true
			r.list(fl.val, "a list of steps", func(it *yaml.Node) {
				if s := r.step(it); s != nil {
					t.Steps = append(t.Steps, s)
				}
			})
			if len(fl.val.Content) == 0 && fl.val.Kind == yaml.SequenceNode {
				r.errorf(fl.val, "test needs at least one step")
			} else if k := len(t.Steps); k > 0 && t.Steps[k-1].Expect == nil && len(fl.val.Content) == k {
				r.ds.Errorf(t.Steps[k-1].Pos, "the last step of a test needs expect (allow or deny)")
			}
		}
	}
	if !hasSteps {
		r.errorf(n, "test needs steps")
	}
	f.Decls = append(f.Decls, t)
}

func (r *yamlReader) step(n *yaml.Node) *Step {
	if !r.expect(n, yaml.MappingNode, "a step (a map with packet or reply, and expect)") {
		return nil
	}
	s := &Step{Pos: r.pos(n)}
	ok := true
	for _, fl := range r.fields(n, "in step", []string{"packet", "reply", "flags", "via", "expect"}) {
		switch fl.key.Value {
		case "packet":
			packet, good := r.scalar(fl.val, "a packet such as \"tcp web -> api:8080\"")
			if !good {
				ok = false
				continue
			}
			if s.Packet, good = r.packet(packet, r.strPos(fl.val)); !good {
				ok = false
			}
		case "reply":
			if fl.val.Kind != yaml.ScalarNode || fl.val.ShortTag() != "!!bool" {
				r.errorf(fl.val, "expected true or false, got %s", yamlDescribe(fl.val))
				ok = false
				continue
			}
			var b bool
			if err := fl.val.Decode(&b); err != nil {
				r.errorf(fl.val, "expected true or false, got %q", fl.val.Value)
				ok = false
				continue
			}
			s.Reply = b
		case "flags":
			r.list(fl.val, "a list of TCP flags", func(it *yaml.Node) {
				t, good := r.text(it, "a TCP flag")
				if !good {
					ok = false
					return
				}
				if !slices.Contains(yamlTcpFlags, t.Text) {
					r.errorf(it, "unknown TCP flag %q%s", t.Text, yamlSuggest(t.Text, yamlTcpFlags))
					ok = false
					return
				}
				s.Flags = append(s.Flags, t)
			})
		case "via":
			via, good := r.ident(fl.val, "endpoint name")
			if !good {
				ok = false
				continue
			}
			s.Via = &via
		case "expect":
			verdict, good := r.scalar(fl.val, "allow or deny")
			switch {
			case !good:
				ok = false
			case verdict == "allow" || verdict == "deny":
				v := VerdictAllow
				if verdict == "deny" {
					v = VerdictDeny
				}
				s.Expect, s.ExpectPos = &v, r.pos(fl.key)
			default:
				r.errorf(fl.val, "unknown verdict %q%s", verdict, yamlSuggest(verdict, []string{"allow", "deny"}))
				ok = false
			}
		}
	}
	switch {
	case s.Reply && s.Packet != nil:
		r.errorf(n, "a step has either packet or reply: true, not both")
		ok = false
	case !s.Reply && s.Packet == nil && ok:
		r.errorf(n, "step needs packet or reply: true")
		ok = false
	}
	if !ok {
		return nil
	}
	return s
}

// packet reads `PROTO SRC -> DST [type N [code N]]`, where SRC and DST are
// an endpoint name or an address with an optional :port (IPv6 in brackets
// when it has a port).
func (r *yamlReader) packet(s string, sp yamlStrPos) (*Packet, bool) {
	words := yamlFieldsAt(s)
	if len(words) < 4 || words[2].text != "->" {
		r.ds.Errorf(sp.at(0), "bad packet %q: want PROTO SRC -> DST, such as \"tcp web -> api:8080\"", s)
		return nil, false
	}
	p := &Packet{Pos: sp.at(words[0].off)}
	proto, ok := r.checkProto(strings.ToLower(words[0].text), yamlPacketProtos, sp.at(words[0].off))
	if !ok {
		return nil, false
	}
	p.Proto = Text{Pos: sp.at(words[0].off), Text: proto}
	if p.Src, ok = r.hostPort(words[1], sp, s); !ok {
		return nil, false
	}
	if p.Dst, ok = r.hostPort(words[3], sp, s); !ok {
		return nil, false
	}
	if p.ICMPType, p.ICMPCode, ok = r.icmpSuffix(words[4:], sp, s); !ok {
		return nil, false
	}
	return p, true
}

func (r *yamlReader) hostPort(w yamlWordAt, sp yamlStrPos, whole string) (HostPort, bool) {
	hp := HostPort{Pos: sp.at(w.off)}
	host, port, hostOff, hasPort := w.text, "", 0, false
	switch {
	case strings.HasPrefix(host, "["):
		end := strings.IndexByte(host, ']')
		if end < 0 {
			r.ds.Errorf(hp.Pos, "missing ']' in %q", whole)
			return hp, false
		}
		rest := host[end+1:]
		host, hostOff = host[1:end], 1
		if rest != "" {
			if rest[0] != ':' {
				r.ds.Errorf(sp.at(w.off+end+1), "expected ':' and a port after ']' in %q", whole)
				return hp, false
			}
			port, hasPort = rest[1:], true
		}
	case strings.Count(host, ":") == 1:
		host, port, hasPort = strings.Cut(host, ":")
	}
	if host == "" {
		r.ds.Errorf(hp.Pos, "expected an endpoint name or an address in %q", whole)
		return hp, false
	}
	hp.Host = Text{Pos: sp.at(w.off + hostOff), Text: host}
	hp.IsName = !yamlLooksLikeAddr(host)
	if hp.IsName && !yamlIsName(host) {
		r.ds.Errorf(hp.Host.Pos, "expected an endpoint name or an address in %q, got %q", whole, host)
		return hp, false
	}
	if hasPort {
		var ok bool
		if hp.Port, ok = r.digits(port, sp.at(w.off+len(w.text)-len(port)), "a port number", whole); !ok {
			return hp, false
		}
	}
	return hp, true
}

// ---------------------------------------------------------------------------
// FormatYAML

// FormatYAML prints f in canonical YAML form: sections in a fixed shape,
// flow style for short lists, Doc comments as head comments. A new document
// starts whenever the declarations' order could not be kept in one map (a
// section that already appeared, or a second prefilter), so reading the
// output gives back the same declarations in the same order.
func FormatYAML(f *File) []byte {
	var docs []*yaml.Node
	var top *yaml.Node
	var used map[string]bool
	var lastKey string
	var section *yaml.Node
	for _, d := range f.Decls {
		key := yamlSectionKey(d)
		if key == "" {
			continue
		}
		if top == nil || (key != lastKey && used[key]) || (key == "prefilter" && lastKey == "prefilter") {
			top = &yaml.Node{Kind: yaml.MappingNode}
			docs = append(docs, &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{top}})
			used, lastKey = map[string]bool{}, ""
		}
		if key != lastKey {
			k := yamlStr(key)
			if p, ok := d.(*Prefilter); ok {
				k.HeadComment = yamlComment(p.Doc)
				top.Content = append(top.Content, k, yamlCidrsNode(p.Entries))
			} else {
				section = &yaml.Node{Kind: yaml.SequenceNode}
				top.Content = append(top.Content, k, section)
			}
			used[key], lastKey = true, key
		}
		if item := yamlDeclNode(d); item != nil {
			section.Content = append(section.Content, item)
		}
	}
	// Imports read best as a one-line list unless they carry comments.
	for _, doc := range docs {
		m := doc.Content[0]
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value != "imports" {
				continue
			}
			flow := true
			for _, it := range m.Content[i+1].Content {
				if it.HeadComment != "" {
					flow = false
				}
			}
			if flow {
				m.Content[i+1].Style = yaml.FlowStyle
			}
		}
	}
	// A comment above a document's first declaration reads best above its
	// section key (the reader puts it back on that declaration).
	for _, doc := range docs {
		m := doc.Content[0]
		if len(m.Content) > 0 && m.Content[0].HeadComment == "" {
			if items := m.Content[1]; items.Kind == yaml.SequenceNode && len(items.Content) > 0 {
				m.Content[0].HeadComment, items.Content[0].HeadComment = items.Content[0].HeadComment, ""
			}
		}
	}
	var header []string
	for _, para := range f.Header {
		if len(para) > 0 {
			header = append(header, yamlComment(para))
		}
	}
	var b bytes.Buffer
	if len(docs) == 0 {
		// Comments alone; the header only comes with declarations.
		if c := yamlComment(append(slices.Concat(f.Header...), f.Trailing...)); c != "" {
			b.WriteString(c)
			b.WriteByte('\n')
		}
		return b.Bytes()
	}
	// yaml.v3 prints a document's head comment with a blank line after it,
	// and reads it back apart from the first key's.
	docs[0].HeadComment = strings.Join(header, "\n\n")
	if len(f.Trailing) > 0 {
		docs[len(docs)-1].FootComment = yamlComment(f.Trailing)
	}
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	for _, doc := range docs {
		if err := enc.Encode(doc); err != nil {
			// Only malformed node trees fail to encode, and these are built
			// here; keep the output so far rather than crash.
			break
		}
	}
	enc.Close()
	return yamlSpaceSections(b.Bytes())
}

// yamlSpaceSections puts a blank line before each top-level key but the first
// of a document (with its head comment), for the reader's eyes. Lines at
// column 0 are only ever top-level keys, their comments and "---": the
// encoder indents everything nested, including block scalars.
func yamlSpaceSections(out []byte) []byte {
	lines := strings.SplitAfter(string(out), "\n")
	var b strings.Builder
	first := true
	for i, l := range lines {
		top := l != "" && l[0] != ' ' && l[0] != '\n'
		switch {
		case strings.HasPrefix(l, "---"):
			first = true
		case top && !first && (i == 0 || !strings.HasPrefix(lines[i-1], "#")) && strings.TrimSpace(lines[i-1]) != "":
			b.WriteByte('\n')
		}
		if top && !strings.HasPrefix(l, "---") {
			first = false
		}
		b.WriteString(l)
	}
	return []byte(b.String())
}

func yamlSectionKey(d Decl) string {
	switch d.(type) {
	case *Import:
		return "imports"
	case *Endpoint:
		return "endpoints"
	case *CIDRSet:
		return "cidrsets"
	case *Policy:
		return "policies"
	case *Prefilter:
		return "prefilter"
	case *Test:
		return "tests"
	}
	return ""
}

func yamlComment(d Doc) string {
	lines := make([]string, len(d))
	for i, l := range d {
		l = strings.ReplaceAll(strings.TrimRight(l, " \t\r"), "\n", " ")
		if l == "" {
			lines[i] = "#"
		} else {
			lines[i] = "# " + l
		}
	}
	return strings.Join(lines, "\n")
}

func yamlStr(s string) *yaml.Node {
	// YAML text is UTF-8; yaml.v3 refuses to print anything else as a string.
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: strings.ToValidUTF8(s, "\uFFFD")}
	if s == "<<" {
		// yaml.v3 prints it plain, which reads back as a merge key.
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

func yamlIntNode(v int64) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(v, 10)}
}

func yamlMapNode(flow bool, kv ...*yaml.Node) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode, Content: kv}
	if flow {
		n.Style = yaml.FlowStyle
	}
	return n
}

func yamlFlowSeq(items ...*yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle, Content: items}
}

func yamlDeclNode(d Decl) *yaml.Node {
	switch d := d.(type) {
	case *Import:
		n := yamlStr(d.Path.Text)
		n.HeadComment = yamlComment(d.Doc)
		return n
	case *Endpoint:
		n := yamlMapNode(false, yamlStr("name"), yamlStr(d.Name.Name))
		if d.Remote.IsValid() {
			n.Content = append(n.Content, yamlStr("remote"), &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
		}
		if len(d.Labels) > 0 {
			ls := yamlMapNode(true)
			for _, l := range d.Labels {
				ls.Content = append(ls.Content, yamlStr(l.Key), yamlStr(l.Value))
			}
			n.Content = append(n.Content, yamlStr("labels"), ls)
		}
		addrs := yamlFlowSeq()
		for _, a := range d.Addrs {
			addrs.Content = append(addrs.Content, yamlStr(a.Text))
		}
		n.Content = append(n.Content, yamlStr("addrs"), addrs)
		n.HeadComment = yamlComment(d.Doc)
		return n
	case *CIDRSet:
		n := yamlMapNode(false, yamlStr("name"), yamlStr(d.Name.Name), yamlStr("cidrs"), yamlCidrsNode(d.Entries))
		n.HeadComment = yamlComment(d.Doc)
		return n
	case *Policy:
		return yamlPolicyNode(d)
	case *Test:
		n := yamlMapNode(false, yamlStr("name"), yamlStr(d.Name.Text))
		steps := &yaml.Node{Kind: yaml.SequenceNode}
		for _, s := range d.Steps {
			steps.Content = append(steps.Content, yamlStepNode(s))
		}
		n.Content = append(n.Content, yamlStr("steps"), steps)
		n.HeadComment = yamlComment(d.Doc)
		return n
	}
	return nil
}

func yamlCidrsNode(cs []CIDR) *yaml.Node {
	n := yamlFlowSeq()
	for _, c := range cs {
		n.Content = append(n.Content, yamlCidrNode(c))
	}
	return n
}

func yamlCidrNode(c CIDR) *yaml.Node {
	if len(c.Except) == 0 {
		return yamlStr(c.Prefix.Text)
	}
	ex := yamlFlowSeq()
	for _, e := range c.Except {
		ex.Content = append(ex.Content, yamlStr(e.Text))
	}
	return yamlMapNode(true, yamlStr("cidr"), yamlStr(c.Prefix.Text), yamlStr("except"), ex)
}

func yamlPolicyNode(p *Policy) *yaml.Node {
	n := yamlMapNode(false, yamlStr("name"), yamlStr(p.Name.Name))
	if p.Audit.IsValid() {
		n.Content = append(n.Content, yamlStr("audit"), &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
	}
	if p.Tier != TierNone {
		n.Content = append(n.Content, yamlStr("tier"), yamlStr(p.Tier.String()))
	}
	if p.Tier != TierNone || p.PriorityPos.IsValid() {
		n.Content = append(n.Content, yamlStr("priority"), &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(p.Priority)})
	}
	n.Content = append(n.Content, yamlStr("select"), yamlSelectorNode(p.Select))
	if len(p.Isolate) > 0 {
		iso := yamlFlowSeq()
		for _, d := range p.Isolate {
			iso.Content = append(iso.Content, yamlStr(d.Dir.String()))
		}
		k := yamlStr("isolate")
		k.HeadComment = yamlComment(p.IsolateDoc)
		n.Content = append(n.Content, k, iso)
	}
	// Rules are grouped by direction, in the order the directions first
	// appear; deny beats allow whatever the order, and in a tier (where
	// the first match decides) only rules of one direction compete, in
	// the order they keep, so grouping keeps the meaning.
	var order []Direction
	groups := map[Direction]*yaml.Node{}
	for _, r := range p.Rules {
		g := groups[r.Dir]
		if g == nil {
			g = &yaml.Node{Kind: yaml.SequenceNode}
			groups[r.Dir] = g
			order = append(order, r.Dir)
		}
		g.Content = append(g.Content, yamlRuleNode(r))
	}
	for _, d := range order {
		n.Content = append(n.Content, yamlStr(d.String()), groups[d])
	}
	n.HeadComment = yamlComment(p.Doc)
	return n
}

func yamlRuleNode(r *Rule) *yaml.Node {
	n := yamlMapNode(false, yamlStr("action"), yamlStr(r.Action.String()))
	word := r.PeerWord
	if word == "" && len(r.Peers) > 0 {
		word = "from"
		if r.Dir == Egress {
			word = "to"
		}
	}
	if word != "" {
		peers := yamlFlowSeq()
		for _, p := range r.Peers {
			peers.Content = append(peers.Content, yamlPeerNode(p))
		}
		n.Content = append(n.Content, yamlStr(word), peers)
	}
	if len(r.Ports) > 0 {
		ports := yamlFlowSeq()
		for _, l := range r.Ports {
			ports.Content = append(ports.Content, yamlL4Node(l))
		}
		n.Content = append(n.Content, yamlStr("ports"), ports)
	}
	n.HeadComment = yamlComment(r.Doc)
	return n
}

func yamlPeerNode(p Peer) *yaml.Node {
	switch p.Kind {
	case PeerWorld:
		return yamlStr("world")
	case PeerAny:
		return yamlStr("any")
	case PeerSet:
		// A name is never world or any (keywords) and never looks like an
		// address, so the plain string reads back as this set; anything else
		// keeps the map form (and is an error, in either syntax).
		if yamlIsName(p.Set.Name) {
			return yamlStr(p.Set.Name)
		}
		return yamlMapNode(true, yamlStr("cidrset"), yamlStr(p.Set.Name))
	case PeerCIDR:
		if len(p.CIDR.Except) == 0 && yamlLooksLikeAddr(p.CIDR.Prefix.Text) {
			return yamlStr(p.CIDR.Prefix.Text)
		}
		n := yamlCidrNode(p.CIDR)
		if n.Kind == yaml.ScalarNode {
			n = yamlMapNode(true, yamlStr("cidr"), n)
		}
		return n
	}
	return yamlMapNode(true, yamlStr("select"), yamlSelectorNode(p.Selector))
}

// yamlSelectorNode prints a map when every requirement is an equality on a
// distinct key, else a list of requirement strings.
func yamlSelectorNode(s Selector) *yaml.Node {
	asMap := true
	seen := map[string]bool{}
	for _, r := range s.Reqs {
		if r.Op != OpEq || len(r.Values) != 1 || seen[r.Key] {
			asMap = false
		}
		// YAML text is UTF-8; a requirement string can still spell other
		// bytes with Go escapes (the language's "\xff").
		if !utf8.ValidString(r.Key) || len(r.Values) == 1 && !utf8.ValidString(r.Values[0]) {
			asMap = false
		}
		seen[r.Key] = true
	}
	if asMap {
		n := yamlMapNode(true)
		for _, r := range s.Reqs {
			n.Content = append(n.Content, yamlStr(r.Key), yamlStr(r.Values[0]))
		}
		return n
	}
	n := yamlFlowSeq()
	for _, r := range s.Reqs {
		n.Content = append(n.Content, yamlStr(yamlRequirementString(r)))
	}
	return n
}

func yamlRequirementString(r Requirement) string {
	k := yamlReqWord(r.Key)
	vs := make([]string, len(r.Values))
	for i, v := range r.Values {
		vs[i] = yamlReqWord(v)
	}
	first := ""
	if len(vs) > 0 {
		first = vs[0]
	}
	switch r.Op {
	case OpNotEq:
		return k + "!=" + first
	case OpIn:
		return k + " in (" + strings.Join(vs, ", ") + ")"
	case OpNotIn:
		return k + " notin (" + strings.Join(vs, ", ") + ")"
	case OpExists:
		return k + " exists"
	case OpNotExists:
		return "!" + k
	}
	return k + "=" + first
}

func yamlL4Node(l L4) *yaml.Node {
	if l.ICMPType == nil && l.ICMPCode == nil && (l.PortEnd == nil || l.Port != nil) {
		s := l.Proto
		if l.Port != nil {
			s += "/" + strconv.FormatInt(l.Port.Value, 10)
			if l.PortEnd != nil {
				s += "-" + strconv.FormatInt(l.PortEnd.Value, 10)
			}
		}
		return yamlStr(s)
	}
	n := yamlMapNode(true, yamlStr("proto"), yamlStr(l.Proto))
	for _, f := range []struct {
		key string
		v   *Int
	}{{"port", l.Port}, {"endPort", l.PortEnd}, {"type", l.ICMPType}, {"code", l.ICMPCode}} {
		if f.v != nil {
			n.Content = append(n.Content, yamlStr(f.key), yamlIntNode(f.v.Value))
		}
	}
	return n
}

func yamlStepNode(s *Step) *yaml.Node {
	n := yamlMapNode(true)
	if s.Reply {
		n.Content = append(n.Content, yamlStr("reply"), &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
	} else if s.Packet != nil {
		n.Content = append(n.Content, yamlStr("packet"), yamlStr(yamlPacketString(s.Packet)))
	}
	if len(s.Flags) > 0 {
		fl := yamlFlowSeq()
		for _, f := range s.Flags {
			fl.Content = append(fl.Content, yamlStr(f.Text))
		}
		n.Content = append(n.Content, yamlStr("flags"), fl)
	}
	if s.Via != nil {
		n.Content = append(n.Content, yamlStr("via"), yamlStr(s.Via.Name))
	}
	if s.Expect != nil {
		n.Content = append(n.Content, yamlStr("expect"), yamlStr(s.Expect.String()))
	}
	return n
}

func yamlPacketString(p *Packet) string {
	s := p.Proto.Text + " " + yamlHostPortString(p.Src) + " -> " + yamlHostPortString(p.Dst)
	if p.ICMPType != nil {
		s += " type " + strconv.FormatInt(p.ICMPType.Value, 10)
		if p.ICMPCode != nil {
			s += " code " + strconv.FormatInt(p.ICMPCode.Value, 10)
		}
	}
	return s
}

// yamlBracketHost puts an IPv6 address in brackets when a port follows it, or
// when a single colon would read as one.
func yamlBracketHost(host string, withPort bool) string {
	if n := strings.Count(host, ":"); n > 0 && (withPort || n == 1) {
		return "[" + host + "]"
	}
	return host
}

func yamlHostPortString(h HostPort) string {
	if h.Port == nil {
		return yamlBracketHost(h.Host.Text, false)
	}
	return yamlBracketHost(h.Host.Text, true) + ":" + strconv.FormatInt(h.Port.Value, 10)
}
