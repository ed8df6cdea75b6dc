package dsl

import (
	"strconv"
	"strings"
)

// polTestLineMax is the longest one-line test the printer writes; longer
// tests get one step per line.
const polTestLineMax = 100

// Format prints f in canonical policy-language form (what `polc fmt`
// writes): declarations in source order, a blank line between declarations
// of different kinds and around policies, documented declarations and
// multi-line tests; one rule per line, indented two spaces, inside policies;
// canonical spacing; keys and values quoted only where a bare word cannot
// hold them; comments put back above what they document, and the file's
// header first, each of its paragraphs followed by one blank line. Parsing
// the output gives the input's AST (positions aside), and formatting is
// idempotent.
func Format(f *File) []byte {
	var b strings.Builder
	for _, para := range f.Header {
		if len(para) > 0 {
			polWriteDoc(&b, "", para)
			b.WriteByte('\n')
		}
	}
	var prev Decl
	prevTall := false
	for _, d := range f.Decls {
		text := polDeclText(d)
		tall := strings.Count(text, "\n") > 1
		doc := polDeclDoc(d)
		if prev != nil && (polKind(prev) != polKind(d) || prevTall || tall || len(doc) > 0) {
			b.WriteByte('\n')
		}
		polWriteDoc(&b, "", doc)
		b.WriteString(text)
		prev, prevTall = d, tall || polKind(d) == "policy"
	}
	if len(f.Trailing) > 0 {
		if prev != nil {
			b.WriteByte('\n')
		}
		polWriteDoc(&b, "", Doc(f.Trailing))
	}
	return []byte(b.String())
}

func polKind(d Decl) string {
	switch d.(type) {
	case *Import:
		return "import"
	case *Endpoint:
		return "endpoint"
	case *CIDRSet:
		return "cidrset"
	case *Policy:
		return "policy"
	case *Prefilter:
		return "prefilter"
	case *Test:
		return "test"
	}
	return ""
}

func polDeclDoc(d Decl) Doc {
	switch d := d.(type) {
	case *Import:
		return d.Doc
	case *Endpoint:
		return d.Doc
	case *CIDRSet:
		return d.Doc
	case *Policy:
		return d.Doc
	case *Prefilter:
		return d.Doc
	case *Test:
		return d.Doc
	}
	return nil
}

func polWriteDoc(b *strings.Builder, indent string, doc Doc) {
	for _, text := range doc {
		for _, line := range strings.Split(text, "\n") {
			b.WriteString(indent)
			b.WriteByte('#')
			if line != "" {
				b.WriteByte(' ')
				b.WriteString(line)
			}
			b.WriteByte('\n')
		}
	}
}

// polDeclText is a declaration without its doc comment, ending in "\n".
func polDeclText(d Decl) string {
	var b strings.Builder
	switch d := d.(type) {
	case *Import:
		b.WriteString("import " + strconv.Quote(d.Path.Text))
	case *Endpoint:
		b.WriteString("endpoint " + d.Name.Name)
		if d.Remote.IsValid() {
			b.WriteString(" remote")
		}
		if len(d.Labels) > 0 {
			b.WriteString(" labels(")
			for i, l := range d.Labels {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(polKeyText(l.Key) + "=" + polValueText(l.Value))
			}
			b.WriteString(")")
		}
		b.WriteString(" addr ")
		for i, a := range d.Addrs {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(a.Text)
		}
	case *CIDRSet:
		b.WriteString("cidrset " + d.Name.Name + " = " + polCIDRList(d.Entries))
	case *Prefilter:
		b.WriteString("prefilter drop from " + polCIDRList(d.Entries))
	case *Policy:
		b.WriteString("policy " + d.Name.Name)
		if d.Audit.IsValid() {
			b.WriteString(" audit")
		}
		if d.Tier != TierNone {
			b.WriteString(" tier " + d.Tier.String())
		}
		if d.Tier != TierNone || d.PriorityPos.IsValid() {
			b.WriteString(" priority " + strconv.Itoa(d.Priority))
		}
		b.WriteString(" {\n")
		b.WriteString("  select " + polSelectorText(d.Select) + "\n")
		polWriteDoc(&b, "  ", d.IsolateDoc)
		if len(d.Isolate) > 0 {
			b.WriteString("  isolate ")
			for i, dir := range d.Isolate {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(dir.Dir.String())
			}
			b.WriteString("\n")
		}
		for _, r := range d.Rules {
			polWriteDoc(&b, "  ", r.Doc)
			b.WriteString("  " + polRuleText(r) + "\n")
		}
		b.WriteString("}")
	case *Test:
		head := "test " + strconv.Quote(d.Name.Text) + " {"
		steps := make([]string, len(d.Steps))
		for i, s := range d.Steps {
			steps[i] = polStepText(s)
		}
		line := head + " " + strings.Join(steps, "; ") + " }"
		if len(line) <= polTestLineMax && !strings.Contains(line, "\n") {
			b.WriteString(line)
			break
		}
		b.WriteString(head + "\n")
		for _, s := range steps {
			b.WriteString("  " + s + "\n")
		}
		b.WriteString("}")
	}
	b.WriteString("\n")
	return b.String()
}

// polBare reports whether s reads back as one token of an accepted type.
func polBare(s string, types ...int) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n#\"") {
		return false
	}
	var ds Diagnostics
	toks, _ := polLexSource("", []byte(s), &ds)
	if len(ds) > 0 || len(toks) != 2 || toks[0].Value != s {
		return false
	}
	for _, t := range types {
		if int(toks[0].Type) == t {
			return true
		}
	}
	return false
}

func polKeyText(k string) string {
	if polBare(k, int(tokWord)) {
		return k
	}
	return strconv.Quote(k)
}

func polValueText(v string) string {
	if polBare(v, int(tokWord), int(tokKeyword), int(tokInt), int(tokDWord), int(tokAddr4)) {
		return v
	}
	return strconv.Quote(v)
}

func polCIDRText(c CIDR) string {
	s := c.Prefix.Text
	switch len(c.Except) {
	case 0:
	case 1:
		s += " except " + c.Except[0].Text
	default:
		parts := make([]string, len(c.Except))
		for i, e := range c.Except {
			parts[i] = e.Text
		}
		s += " except (" + strings.Join(parts, ", ") + ")"
	}
	return s
}

func polCIDRList(cs []CIDR) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = polCIDRText(c)
	}
	return strings.Join(parts, ", ")
}

func polSelectorText(s Selector) string {
	parts := make([]string, len(s.Reqs))
	for i, r := range s.Reqs {
		parts[i] = polRequirementText(r)
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func polRequirementText(r Requirement) string {
	k := polKeyText(r.Key)
	values := func() string {
		vs := make([]string, len(r.Values))
		for i, v := range r.Values {
			vs[i] = polValueText(v)
		}
		return "(" + strings.Join(vs, ", ") + ")"
	}
	first := ""
	if len(r.Values) > 0 {
		first = polValueText(r.Values[0])
	}
	switch r.Op {
	case OpEq:
		return k + "=" + first
	case OpNotEq:
		return k + "!=" + first
	case OpIn:
		return k + " in " + values()
	case OpNotIn:
		return k + " notin " + values()
	case OpExists:
		return k + " exists"
	default:
		return "!" + k
	}
}

func polRuleText(r *Rule) string {
	s := r.Dir.String() + " " + r.Action.String()
	if len(r.Peers) > 0 {
		word := r.PeerWord
		if word == "" {
			word = "from"
			if r.Dir == Egress {
				word = "to"
			}
		}
		parts := make([]string, len(r.Peers))
		for i, p := range r.Peers {
			parts[i] = polPeerText(p)
		}
		s += " " + word + " " + strings.Join(parts, ", ")
	}
	if len(r.Ports) > 0 {
		parts := make([]string, len(r.Ports))
		for i, l := range r.Ports {
			parts[i] = polL4Text(l)
		}
		s += " on " + strings.Join(parts, ", ")
	}
	return s
}

func polPeerText(p Peer) string {
	switch p.Kind {
	case PeerCIDR:
		return polCIDRText(p.CIDR)
	case PeerSet:
		return p.Set.Name
	case PeerWorld:
		return "world"
	case PeerAny:
		return "any"
	}
	return polSelectorText(p.Selector)
}

func polIntText(i *Int) string { return strconv.FormatInt(i.Value, 10) }

func polL4Text(l L4) string {
	s := l.Proto
	switch {
	case l.Port != nil:
		s += "/" + polIntText(l.Port)
		if l.PortEnd != nil {
			s += "-" + polIntText(l.PortEnd)
		}
	case l.ICMPType != nil:
		s += polICMPText(l.ICMPType, l.ICMPCode)
	}
	return s
}

func polICMPText(typ, code *Int) string {
	if typ == nil {
		return ""
	}
	s := " type " + polIntText(typ)
	if code != nil {
		s += " code " + polIntText(code)
	}
	return s
}

func polStepText(s *Step) string {
	var b strings.Builder
	if s.Reply || s.Packet == nil {
		b.WriteString("reply")
	} else {
		p := s.Packet
		b.WriteString(p.Proto.Text + " " + polHostText(p.Src) + " -> " + polHostText(p.Dst))
		b.WriteString(polICMPText(p.ICMPType, p.ICMPCode))
	}
	if len(s.Flags) > 0 {
		b.WriteString(" flags ")
		for i, f := range s.Flags {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(f.Text)
		}
	}
	if s.Via != nil {
		b.WriteString(" " + polStepVia + " " + s.Via.Name)
	}
	if s.Expect != nil {
		b.WriteString(" expect " + s.Expect.String())
	}
	return b.String()
}

func polHostText(h HostPort) string {
	s := h.Host.Text
	if !h.IsName && strings.Contains(s, ":") {
		s = "[" + s + "]"
	}
	if h.Port != nil {
		s += ":" + polIntText(h.Port)
	}
	return s
}
