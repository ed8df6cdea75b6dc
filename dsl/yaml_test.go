package dsl

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/polc-dev/polc/golden"
)

// yamlIgnorePos compares ASTs by content only.
var yamlIgnorePos = cmpopts.IgnoreTypes(Pos{})

// yamlIgnoreDoc also drops comments (the two front ends place file-level
// comments by different rules).
var yamlIgnoreDoc = cmpopts.IgnoreTypes(Pos{}, Doc{})

func yamlPtr[T any](v T) *T { return &v }

func yamlEq(k, v string) Requirement { return Requirement{Key: k, Op: OpEq, Values: []string{v}} }

func yamlSel(reqs ...Requirement) Selector { return Selector{Reqs: reqs} }

func yamlText(s string) Text { return Text{Text: s} }

func yamlNum(v int64) *Int { return &Int{Value: v} }

func yamlMustParse(t *testing.T, src string) *File {
	t.Helper()
	f, ds := ParseYAML("t.yaml", []byte(src))
	if len(ds) > 0 {
		t.Fatalf("ParseYAML:\n%s", ds.Format(func(string) []byte { return []byte(src) }))
	}
	return f
}

// yamlPolicy wraps rule lines into a policy so rule tests stay short.
func yamlPolicy(rules string) string {
	return "policies:\n  - name: p\n    select: {}\n" + rules
}

func TestYAMLConstructs(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []Decl
	}{{
		name: "imports",
		src:  "imports: [a.yaml, \"dir/b.pol\"]\n",
		want: []Decl{&Import{Path: yamlText("a.yaml")}, &Import{Path: yamlText("dir/b.pol")}},
	}, {
		name: "endpoint",
		src:  "endpoints:\n  - name: web\n    labels: {app: web, tier: frontend, v: 1}\n    addrs: [10.0.1.10, \"fd00::10\", 10.0.3.0/28]\n",
		want: []Decl{&Endpoint{
			Name:   Ident{Name: "web"},
			Labels: []Label{{Key: "app", Value: "web"}, {Key: "tier", Value: "frontend"}, {Key: "v", Value: "1"}},
			Addrs:  []Text{yamlText("10.0.1.10"), yamlText("fd00::10"), yamlText("10.0.3.0/28")},
		}},
	}, {
		name: "endpoint with empty label value",
		src:  "endpoints:\n  - name: web\n    labels: {app: \"\", x: }\n    addrs: [10.0.1.10]\n",
		want: []Decl{&Endpoint{
			Name:   Ident{Name: "web"},
			Labels: []Label{{Key: "app", Value: ""}, {Key: "x", Value: ""}},
			Addrs:  []Text{yamlText("10.0.1.10")},
		}},
	}, {
		name: "cidrset",
		src:  "cidrsets:\n  - name: partners\n    cidrs: [192.0.2.0/24, {cidr: 198.51.100.0/24, except: [198.51.100.128/25]}]\n",
		want: []Decl{&CIDRSet{
			Name: Ident{Name: "partners"},
			Entries: []CIDR{
				{Prefix: yamlText("192.0.2.0/24")},
				{Prefix: yamlText("198.51.100.0/24"), Except: []Text{yamlText("198.51.100.128/25")}},
			},
		}},
	}, {
		name: "policy with isolate and no rules",
		src:  "policies:\n  - name: lock\n    select: {}\n    isolate: [ingress, egress]\n",
		want: []Decl{&Policy{
			Name:    Ident{Name: "lock"},
			Select:  yamlSel(),
			Isolate: []DirectionAt{{Dir: Ingress}, {Dir: Egress}},
		}},
	}, {
		name: "selector as a map",
		src:  "policies:\n  - name: p\n    select: {app: api, tier: backend}\n",
		want: []Decl{&Policy{Name: Ident{Name: "p"}, Select: yamlSel(yamlEq("app", "api"), yamlEq("tier", "backend"))}},
	}, {
		name: "selector as a string",
		src:  "policies:\n  - name: p\n    select: app=api\n",
		want: []Decl{&Policy{Name: Ident{Name: "p"}, Select: yamlSel(yamlEq("app", "api"))}},
	}, {
		name: "selector as a braced string",
		src:  "policies:\n  - name: p\n    select: \"{a=b, c in (x,y), d exists, !e, f!=g, h notin (i)}\"\n",
		want: []Decl{&Policy{Name: Ident{Name: "p"}, Select: yamlSel(
			yamlEq("a", "b"),
			Requirement{Key: "c", Op: OpIn, Values: []string{"x", "y"}},
			Requirement{Key: "d", Op: OpExists},
			Requirement{Key: "e", Op: OpNotExists},
			Requirement{Key: "f", Op: OpNotEq, Values: []string{"g"}},
			Requirement{Key: "h", Op: OpNotIn, Values: []string{"i"}},
		)}},
	}, {
		name: "selector as a list",
		src:  "policies:\n  - name: p\n    select: [\"tier in (a,b)\", \"!debug\", env exists]\n",
		want: []Decl{&Policy{Name: Ident{Name: "p"}, Select: yamlSel(
			Requirement{Key: "tier", Op: OpIn, Values: []string{"a", "b"}},
			Requirement{Key: "debug", Op: OpNotExists},
			Requirement{Key: "env", Op: OpExists},
		)}},
	}, {
		name: "empty selector as a string",
		src:  "policies:\n  - name: p\n    select: \"{}\"\n",
		want: []Decl{&Policy{Name: Ident{Name: "p"}, Select: yamlSel()}},
	}, {
		name: "rules and peers",
		src: yamlPolicy(`    ingress:
      - action: allow
        from: [{select: {app: web}}, partners, {cidrset: other}, world, any, 192.0.2.66, {cidr: 10.0.0.0/8, except: [10.1.0.0/16, 10.2.0.0/16]}]
      - action: deny
    egress:
      - action: allow
        to: [{select: "tier in (backend)"}]
`),
		want: []Decl{&Policy{Name: Ident{Name: "p"}, Select: yamlSel(), Rules: []*Rule{
			{Dir: Ingress, Action: Allow, PeerWord: "from", Peers: []Peer{
				{Kind: PeerSelector, Selector: yamlSel(yamlEq("app", "web"))},
				{Kind: PeerSet, Set: Ident{Name: "partners"}},
				{Kind: PeerSet, Set: Ident{Name: "other"}},
				{Kind: PeerWorld},
				{Kind: PeerAny},
				{Kind: PeerCIDR, CIDR: CIDR{Prefix: yamlText("192.0.2.66")}},
				{Kind: PeerCIDR, CIDR: CIDR{Prefix: yamlText("10.0.0.0/8"), Except: []Text{yamlText("10.1.0.0/16"), yamlText("10.2.0.0/16")}}},
			}},
			{Dir: Ingress, Action: Deny},
			{Dir: Egress, Action: Allow, PeerWord: "to", Peers: []Peer{
				{Kind: PeerSelector, Selector: yamlSel(Requirement{Key: "tier", Op: OpIn, Values: []string{"backend"}})},
			}},
		}}},
	}, {
		name: "wrong peer word is kept for the checker",
		src:  yamlPolicy("    egress:\n      - action: allow\n        from: [world]\n"),
		want: []Decl{&Policy{Name: Ident{Name: "p"}, Select: yamlSel(), Rules: []*Rule{
			{Dir: Egress, PeerWord: "from", Peers: []Peer{{Kind: PeerWorld}}},
		}}},
	}, {
		name: "egress before ingress keeps the order",
		src:  yamlPolicy("    egress:\n      - action: deny\n    ingress:\n      - action: allow\n"),
		want: []Decl{&Policy{Name: Ident{Name: "p"}, Select: yamlSel(), Rules: []*Rule{
			{Dir: Egress, Action: Deny}, {Dir: Ingress, Action: Allow},
		}}},
	}, {
		name: "ports",
		src: yamlPolicy(`    ingress:
      - action: allow
        ports: [tcp/8080, tcp/8080-8090, UDP/53, sctp, any, icmp type 8 code 0, icmpv6 type 128,
                {proto: icmp, type: 3, code: 4}, {proto: tcp, port: 6000, endPort: 6010}, {proto: udp, port: 99999}]
`),
		want: []Decl{&Policy{Name: Ident{Name: "p"}, Select: yamlSel(), Rules: []*Rule{{Dir: Ingress, Ports: []L4{
			{Proto: "tcp", Port: yamlNum(8080)},
			{Proto: "tcp", Port: yamlNum(8080), PortEnd: yamlNum(8090)},
			{Proto: "udp", Port: yamlNum(53)},
			{Proto: "sctp"},
			{Proto: "any"},
			{Proto: "icmp", ICMPType: yamlNum(8), ICMPCode: yamlNum(0)},
			{Proto: "icmpv6", ICMPType: yamlNum(128)},
			{Proto: "icmp", ICMPType: yamlNum(3), ICMPCode: yamlNum(4)},
			{Proto: "tcp", Port: yamlNum(6000), PortEnd: yamlNum(6010)},
			{Proto: "udp", Port: yamlNum(99999)},
		}}}}},
	}, {
		name: "prefilter",
		src:  "prefilter: [203.0.113.0/24, {cidr: 198.18.0.0/15, except: [198.18.1.0/24]}]\n",
		want: []Decl{&Prefilter{Entries: []CIDR{
			{Prefix: yamlText("203.0.113.0/24")},
			{Prefix: yamlText("198.18.0.0/15"), Except: []Text{yamlText("198.18.1.0/24")}},
		}}},
	}, {
		name: "tests",
		src: `tests:
  - name: reply of allowed flow
    steps:
      - {packet: "tcp web -> api:8080", expect: allow}
      - {reply: true, expect: allow}
  - name: v6
    steps:
      - {packet: "udp [fd00::1]:5000 -> [fd00::2]:53", flags: [syn], expect: deny}
  - name: ping
    steps:
      - {packet: "icmp 10.0.1.10 -> api type 8 code 0", expect: allow}
  - name: tight
    steps:
      - {packet: "tcp web->10.0.2.10:80"}
      - {packet: "icmpv6 fd00::1 -> [fd00::2]", expect: deny}
`,
		want: []Decl{
			&Test{Name: yamlText("reply of allowed flow"), Steps: []*Step{
				{Packet: &Packet{Proto: yamlText("tcp"), Src: HostPort{Host: yamlText("web"), IsName: true}, Dst: HostPort{Host: yamlText("api"), IsName: true, Port: yamlNum(8080)}}, Expect: yamlPtr(VerdictAllow)},
				{Reply: true, Expect: yamlPtr(VerdictAllow)},
			}},
			&Test{Name: yamlText("v6"), Steps: []*Step{
				{Packet: &Packet{Proto: yamlText("udp"), Src: HostPort{Host: yamlText("fd00::1"), Port: yamlNum(5000)}, Dst: HostPort{Host: yamlText("fd00::2"), Port: yamlNum(53)}},
					Flags: []Text{yamlText("syn")}, Expect: yamlPtr(VerdictDeny)},
			}},
			&Test{Name: yamlText("ping"), Steps: []*Step{
				{Packet: &Packet{Proto: yamlText("icmp"), Src: HostPort{Host: yamlText("10.0.1.10")}, Dst: HostPort{Host: yamlText("api"), IsName: true},
					ICMPType: yamlNum(8), ICMPCode: yamlNum(0)}, Expect: yamlPtr(VerdictAllow)},
			}},
			&Test{Name: yamlText("tight"), Steps: []*Step{
				{Packet: &Packet{Proto: yamlText("tcp"), Src: HostPort{Host: yamlText("web"), IsName: true}, Dst: HostPort{Host: yamlText("10.0.2.10"), Port: yamlNum(80)}}},
				{Packet: &Packet{Proto: yamlText("icmpv6"), Src: HostPort{Host: yamlText("fd00::1")}, Dst: HostPort{Host: yamlText("fd00::2")}}, Expect: yamlPtr(VerdictDeny)},
			}},
		},
	}, {
		name: "via",
		src: `tests:
  - name: spoofed
    steps:
      - {packet: "tcp web -> api:8080", flags: [syn], via: evil, expect: deny}
      - {reply: true, via: x.evil}
      - {packet: "udp 192.0.2.1 -> api:53", via: "true", expect: deny}
`,
		want: []Decl{
			&Test{Name: yamlText("spoofed"), Steps: []*Step{
				{Packet: &Packet{Proto: yamlText("tcp"), Src: HostPort{Host: yamlText("web"), IsName: true}, Dst: HostPort{Host: yamlText("api"), IsName: true, Port: yamlNum(8080)}},
					Flags: []Text{yamlText("syn")}, Via: &Ident{Name: "evil"}, Expect: yamlPtr(VerdictDeny)},
				{Reply: true, Via: &Ident{Name: "x.evil"}},
				{Packet: &Packet{Proto: yamlText("udp"), Src: HostPort{Host: yamlText("192.0.2.1")}, Dst: HostPort{Host: yamlText("api"), IsName: true, Port: yamlNum(53)}},
					Via: &Ident{Name: "true"}, Expect: yamlPtr(VerdictDeny)},
			}},
		},
	}, {
		name: "sections keep their written order, documents too",
		src:  "tests:\n  - {name: t, steps: [{reply: true, expect: allow}]}\nimports: [a.yaml]\n---\nprefilter: [1.2.3.0/24]\n---\n---\nimports: [b.yaml]\n",
		want: []Decl{
			&Test{Name: yamlText("t"), Steps: []*Step{{Reply: true, Expect: yamlPtr(VerdictAllow)}}},
			&Import{Path: yamlText("a.yaml")},
			&Prefilter{Entries: []CIDR{{Prefix: yamlText("1.2.3.0/24")}}},
			&Import{Path: yamlText("b.yaml")},
		},
	}, {
		name: "aliases",
		src:  "endpoints:\n  - name: a\n    labels: &l {app: web}\n    addrs: &x [10.0.0.1]\n  - name: b\n    labels: *l\n    addrs: *x\n",
		want: []Decl{
			&Endpoint{Name: Ident{Name: "a"}, Labels: []Label{{Key: "app", Value: "web"}}, Addrs: []Text{yamlText("10.0.0.1")}},
			&Endpoint{Name: Ident{Name: "b"}, Labels: []Label{{Key: "app", Value: "web"}}, Addrs: []Text{yamlText("10.0.0.1")}},
		},
	}, {
		name: "empty",
		src:  "# nothing here\n",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := yamlMustParse(t, tt.src)
			if diff := cmp.Diff(tt.want, f.Decls, yamlIgnoreDoc, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("AST (-want +got):\n%s", diff)
			}
		})
	}
}

func TestYAMLPositions(t *testing.T) {
	src := `endpoints:
  - name: web
    labels: {app: web}
    addrs: [10.0.1.10]
policies:
  - name: p
    select: "app=api, tier in (a)"
    ingress:
      - action: allow
        from: [{select: {app: web}}, partners]
        ports: [tcp/8080-8090]
tests:
  - name: t
    steps:
      - {packet: "tcp web -> [fd00::2]:53", expect: allow}
prefilter: [1.2.3.0/24]
`
	f := yamlMustParse(t, src)
	at := func(line, col int) Pos { return Pos{File: "t.yaml", Line: line, Col: col} }
	e := f.Decls[0].(*Endpoint)
	p := f.Decls[1].(*Policy)
	r := p.Rules[0]
	s := f.Decls[2].(*Test).Steps[0]
	pf := f.Decls[3].(*Prefilter)
	for _, c := range []struct {
		what      string
		got, want Pos
	}{
		{"endpoint", e.Pos, at(2, 5)},
		{"endpoint name", e.Name.Pos, at(2, 11)},
		{"label", e.Labels[0].Pos, at(3, 14)},
		{"address", e.Addrs[0].Pos, at(4, 13)},
		{"policy", p.Pos, at(6, 5)},
		{"selector", p.Select.Pos, at(7, 13)},
		{"first requirement", p.Select.Reqs[0].Pos, at(7, 14)},
		{"second requirement", p.Select.Reqs[1].Pos, at(7, 23)},
		{"rule", r.Pos, at(9, 9)},
		{"peer word", r.PeerPos, at(10, 9)},
		{"selector peer", r.Peers[0].Pos, at(10, 16)},
		{"selector peer's selector", r.Peers[0].Selector.Pos, at(10, 25)},
		{"set peer", r.Peers[1].Set.Pos, at(10, 38)},
		{"l4", r.Ports[0].Pos, at(11, 17)},
		{"port", r.Ports[0].Port.Pos, at(11, 21)},
		{"port end", r.Ports[0].PortEnd.Pos, at(11, 26)},
		{"step", s.Pos, at(15, 9)},
		{"packet", s.Packet.Pos, at(15, 19)},
		{"src", s.Packet.Src.Pos, at(15, 23)},
		{"dst", s.Packet.Dst.Pos, at(15, 30)},
		{"dst host", s.Packet.Dst.Host.Pos, at(15, 31)},
		{"dst port", s.Packet.Dst.Port.Pos, at(15, 40)},
		{"expect", s.ExpectPos, at(15, 45)},
		{"prefilter", pf.Pos, at(16, 1)},
		{"prefilter entry", pf.Entries[0].Prefix.Pos, at(16, 13)},
	} {
		if c.got != c.want {
			t.Errorf("%s at %v, want %v", c.what, c.got, c.want)
		}
	}
}

func TestYAMLComments(t *testing.T) {
	src := `# header

# about endpoints
endpoints:
  - name: a
    addrs: [10.0.0.1]
  # b's doc
  #   indented
  - name: b
    addrs: [10.0.0.2]
policies:
  - name: p
    select: {}
    # closed both ways
    isolate: [ingress, egress]
    ingress:
      # why
      - action: allow
# prefilter doc
prefilter: [1.2.3.0/24]
# the end
`
	f := yamlMustParse(t, src)
	docs := []Doc{
		f.Decls[0].(*Endpoint).Doc,
		f.Decls[1].(*Endpoint).Doc,
		f.Decls[2].(*Policy).Rules[0].Doc,
		f.Decls[3].(*Prefilter).Doc,
	}
	want := []Doc{{"about endpoints"}, {"b's doc", "  indented"}, {"why"}, {"prefilter doc"}}
	if diff := cmp.Diff(want, docs); diff != "" {
		t.Errorf("docs (-want +got):\n%s", diff)
	}
	// A blank line separates the file's header from the first key's comment.
	if diff := cmp.Diff([]Doc{{"header"}}, f.Header); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Doc{"closed both ways"}, f.Decls[2].(*Policy).IsolateDoc); diff != "" {
		t.Errorf("isolate doc (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"the end"}, f.Trailing); diff != "" {
		t.Errorf("trailing (-want +got):\n%s", diff)
	}
	out := yamlCheckRoundTrip(t, "comments", f)
	if !strings.HasPrefix(string(out), "# header\n\n# about endpoints\nendpoints:\n") {
		t.Errorf("FormatYAML does not keep the header apart by a blank line:\n%s", out)
	}
}

// yamlCheckRoundTrip formats f, reads it back, and checks the AST is unchanged
// and that formatting again changes nothing.
func yamlCheckRoundTrip(t *testing.T, name string, f *File) []byte {
	t.Helper()
	out := FormatYAML(f)
	g, ds := ParseYAML(name, out)
	if len(ds) > 0 {
		t.Fatalf("%s: reading the formatted output:\n%s\noutput:\n%s", name, ds.Format(func(string) []byte { return out }), out)
	}
	if diff := cmp.Diff(f.Decls, g.Decls, yamlIgnorePos, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("%s: AST changed by FormatYAML (-before +after):\n%s\noutput:\n%s", name, diff, out)
	}
	if diff := cmp.Diff(f.Trailing, g.Trailing, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("%s: trailing comments changed (-before +after):\n%s", name, diff)
	}
	if diff := cmp.Diff(f.Header, g.Header, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("%s: header changed (-before +after):\n%s", name, diff)
	}
	if again := FormatYAML(g); string(again) != string(out) {
		t.Errorf("%s: FormatYAML is not idempotent:\n%s", name, cmp.Diff(string(out), string(again)))
	}
	return out
}

func TestFormatYAMLRoundTrip(t *testing.T) {
	files, _ := filepath.Glob("../testdata/yaml/*.yaml")
	if len(files) < 3 {
		t.Fatalf("want testdata/yaml/*.yaml, found %d files", len(files))
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			f, ds := ParseYAML(path, src)
			if len(ds) > 0 {
				t.Fatalf("ParseYAML:\n%s", ds.Format(func(string) []byte { return src }))
			}
			yamlCheckRoundTrip(t, path, f)
		})
	}
}

func TestFormatYAMLCanonical(t *testing.T) {
	src := `policies:
  - name: p
    select: [app=web]
    egress:
      - action: deny
        to: [{cidr: 10.0.0.0/8}, {cidrset: s}]
        ports: [{proto: tcp, port: 80}, TCP/81]
`
	want := `policies:
  - name: p
    select: {app: web}
    egress:
      - action: deny
        to: [10.0.0.0/8, s]
        ports: [tcp/80, tcp/81]
`
	if got := string(FormatYAML(yamlMustParse(t, src))); got != want {
		t.Errorf("FormatYAML:\n%s", cmp.Diff(want, got))
	}
}

// TestFormatYAMLFromLanguage covers ASTs only the policy language produces:
// declarations interleaved across sections, several prefilters, rules of
// both directions mixed, peers without a peer word.
func TestFormatYAMLFromLanguage(t *testing.T) {
	f := &File{Decls: []Decl{
		&Endpoint{Name: Ident{Name: "a"}, Addrs: []Text{yamlText("10.0.0.1")}},
		&Policy{Name: Ident{Name: "p"}, Select: yamlSel(
			Requirement{Key: "app", Op: OpEq, Values: []string{"x"}},
			Requirement{Key: "app", Op: OpEq, Values: []string{"y"}},
		), Rules: []*Rule{
			{Dir: Ingress, Action: Allow, PeerWord: "from", Peers: []Peer{{Kind: PeerSet, Set: Ident{Name: "x.web"}}}},
			{Dir: Egress, Action: Deny},
			{Dir: Ingress, Action: Deny, Peers: []Peer{{Kind: PeerCIDR, CIDR: CIDR{Prefix: yamlText("weird")}}}},
		}},
		&Endpoint{Name: Ident{Name: "b"}, Addrs: []Text{yamlText("10.0.0.2")}},
		&Prefilter{Doc: Doc{"first"}, Entries: []CIDR{{Prefix: yamlText("1.0.0.0/8")}}},
		&Prefilter{Entries: []CIDR{{Prefix: yamlText("2.0.0.0/8")}}},
	}, Trailing: []string{"bye"}}
	out := FormatYAML(f)
	want := `endpoints:
  - name: a
    addrs: [10.0.0.1]

policies:
  - name: p
    select: [app=x, app=y]
    ingress:
      - action: allow
        from: [x.web]
      - action: deny
        from: [{cidr: weird}]
    egress:
      - action: deny
---
endpoints:
  - name: b
    addrs: [10.0.0.2]

# first
prefilter: [1.0.0.0/8]
---
prefilter: [2.0.0.0/8]

# bye
`
	if string(out) != want {
		t.Errorf("FormatYAML:\n%s", cmp.Diff(want, string(out)))
	}
	g := yamlMustParse(t, string(out))
	// Rules come back grouped by direction; everything else is unchanged.
	p := f.Decls[1].(*Policy)
	p.Rules = []*Rule{p.Rules[0], p.Rules[2], p.Rules[1]}
	p.Rules[1].PeerWord = "from"
	if diff := cmp.Diff(f, g, yamlIgnorePos, cmpopts.EquateEmpty(), cmpopts.IgnoreFields(File{}, "Path")); diff != "" {
		t.Errorf("AST (-want +got):\n%s", diff)
	}
}

func TestFormatYAMLEmpty(t *testing.T) {
	if out := FormatYAML(&File{}); len(out) != 0 {
		t.Errorf("FormatYAML(empty) = %q", out)
	}
	f := &File{Trailing: []string{"only a comment"}}
	yamlCheckRoundTrip(t, "trailing", f)
}

// TestYAMLQuickstartMatchesLanguage checks that the YAML mirror of the
// quickstart reads into the same AST as the policy-language original.
func TestYAMLQuickstartMatchesLanguage(t *testing.T) {
	ysrc, err := os.ReadFile("../testdata/yaml/quickstart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	psrc, err := os.ReadFile("../testdata/quickstart.pol")
	if err != nil {
		t.Fatal(err)
	}
	yf, ds := ParseYAML("quickstart.yaml", ysrc)
	if len(ds) > 0 {
		t.Fatalf("ParseYAML:\n%s", ds.Format(func(string) []byte { return ysrc }))
	}
	pf, ds := Parse("quickstart.pol", psrc)
	if len(ds) > 0 {
		t.Fatalf("Parse:\n%s", ds.Format(func(string) []byte { return psrc }))
	}
	if diff := cmp.Diff(pf.Decls, yf.Decls, yamlIgnoreDoc, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("quickstart.yaml differs from quickstart.pol (-pol +yaml):\n%s", diff)
	}
	// The language's AST converts to YAML and back unchanged.
	yamlCheckRoundTrip(t, "quickstart.pol", pf)
}

func TestYAMLBad(t *testing.T) {
	files, _ := filepath.Glob("../testdata/bad/yaml/*.yaml")
	if len(files) < 10 {
		t.Fatalf("want at least 10 testdata/bad/yaml/*.yaml, found %d", len(files))
	}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			file := "testdata/bad/yaml/" + name + ".yaml"
			_, ds := ParseYAML(file, src)
			if !ds.HasErrors() {
				t.Fatalf("no errors for %s", path)
			}
			ds.Sort()
			golden.Check(t, "bad/yaml/"+name+".txt", []byte(ds.Format(func(string) []byte { return src })))
		})
	}
}

// TestFormatYAMLOddText covers text that YAML must quote or escape and
// hosts that need brackets.
func TestFormatYAMLOddText(t *testing.T) {
	host := func(h string, port int64) HostPort {
		hp := HostPort{Host: yamlText(h), IsName: !yamlLooksLikeAddr(h)}
		if port >= 0 {
			hp.Port = yamlNum(port)
		}
		return hp
	}
	f := &File{Decls: []Decl{
		&Import{Path: yamlText("a dir/with: colon.yaml"), Doc: Doc{"", "  indented", "# hash"}},
		&Endpoint{Name: Ident{Name: "e"}, Labels: []Label{{Key: "v", Value: "1"}, {Key: "b", Value: "true"}, {Key: "n", Value: ""}},
			Addrs: []Text{yamlText("::1"), yamlText("- x"), yamlText("null"), yamlText("a\nb")}},
		&Test{Name: yamlText("multi\nline: name #1"), Steps: []*Step{
			{Packet: &Packet{Proto: yamlText("udp"), Src: host("1:2", -1), Dst: host("fd00::2", 53)}},
			{Packet: &Packet{Proto: yamlText("tcp"), Src: host("10.0.0.1", 1), Dst: host("::", -1)}, Expect: yamlPtr(VerdictDeny)},
		}},
	}}
	yamlCheckRoundTrip(t, "odd", f)
}

// TestYAMLAndLanguageConvert checks `polc fmt --to pol` and `--to yaml`:
// every YAML test file printed in the policy language reads back to the
// same AST, comments included, and so does every .pol file printed as YAML.
func TestYAMLAndLanguageConvert(t *testing.T) {
	yamls, _ := filepath.Glob("../testdata/yaml/*.yaml")
	spoofing, _ := filepath.Glob("../testdata/spoofing/*.yaml")
	for _, path := range append(yamls, spoofing...) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			f, ds := ParseYAML(path, src)
			if len(ds) > 0 {
				t.Fatalf("ParseYAML:\n%s", ds)
			}
			pol := Format(f)
			g, ds := Parse("converted.pol", pol)
			if len(ds) > 0 {
				t.Fatalf("Parse(Format(yaml)):\n%s\n%s", ds.Format(func(string) []byte { return pol }), pol)
			}
			if diff := cmp.Diff(f.Decls, g.Decls, yamlIgnorePos, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("AST changed by the conversion (-yaml +pol):\n%s\n%s", diff, pol)
			}
		})
	}
	pols, _ := filepath.Glob("../testdata/*.pol")
	more, _ := filepath.Glob("../testdata/lang/*.pol")
	spoofingPols, _ := filepath.Glob("../testdata/spoofing/*.pol")
	for _, path := range append(append(pols, more...), spoofingPols...) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			f, ds := Parse(path, src)
			if ds.HasErrors() {
				t.Skipf("not a valid policy:\n%s", ds)
			}
			yamlCheckRoundTrip(t, path, f)
		})
	}
}

// yamlFromPol parses policy-language text, failing the test on any error.
func yamlFromPol(t *testing.T, name, src string) *File {
	t.Helper()
	f, ds := Parse(name, []byte(src))
	if len(ds) > 0 {
		t.Fatalf("Parse:\n%s\nsource:\n%s", ds.Format(func(string) []byte { return []byte(src) }), src)
	}
	return f
}

// yamlGroupRules puts each policy's rules in the order FormatYAML writes
// them: grouped by direction, the direction that comes first first.
func yamlGroupRules(f *File) {
	for _, d := range f.Decls {
		p, ok := d.(*Policy)
		if !ok || len(p.Rules) == 0 {
			continue
		}
		first := p.Rules[0].Dir
		var a, b []*Rule
		for _, r := range p.Rules {
			if r.Dir == first {
				a = append(a, r)
			} else {
				b = append(b, r)
			}
		}
		p.Rules = append(a, b...)
	}
}

// k8sRenderToPol turns the compact text of golden/k8s/*.txt (what the
// Kubernetes reader's tests print: policies without braces, label keys
// unquoted, peers separated by " | ", exceptions without parentheses)
// into the policy language, keys and values quoted as the printer would.
func k8sRenderToPol(t *testing.T, src string) string {
	t.Helper()
	// splitTop splits s at sep outside parentheses and braces.
	splitTop := func(s, sep string) []string {
		var out []string
		depth, start := 0, 0
		for i := 0; i < len(s); i++ {
			switch s[i] {
			case '(', '{':
				depth++
			case ')', '}':
				depth--
			}
			if depth == 0 && strings.HasPrefix(s[i:], sep) {
				out = append(out, s[start:i])
				start = i + len(sep)
				i += len(sep) - 1
			}
		}
		return append(out, s[start:])
	}
	selector := func(s string) string {
		if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") {
			t.Fatalf("selector %q: want braces", s)
		}
		inner := s[1 : len(s)-1]
		if inner == "" {
			return "{}"
		}
		var parts []string
		for _, q := range splitTop(inner, ", ") {
			var r Requirement
			list := func(k, vs string) {
				r.Key = k
				r.Values = strings.Split(strings.TrimSuffix(vs, ")"), ",")
			}
			switch {
			case strings.HasPrefix(q, "!"):
				r = Requirement{Key: q[1:], Op: OpNotExists}
			case strings.HasSuffix(q, " exists"):
				r = Requirement{Key: strings.TrimSuffix(q, " exists"), Op: OpExists}
			case strings.Contains(q, " notin ("):
				k, vs, _ := strings.Cut(q, " notin (")
				r.Op = OpNotIn
				list(k, vs)
			case strings.Contains(q, " in ("):
				k, vs, _ := strings.Cut(q, " in (")
				r.Op = OpIn
				list(k, vs)
			case strings.Contains(q, "!="):
				k, v, _ := strings.Cut(q, "!=")
				r = Requirement{Key: k, Op: OpNotEq, Values: []string{v}}
			case strings.Contains(q, "="):
				k, v, _ := strings.Cut(q, "=")
				r = Requirement{Key: k, Op: OpEq, Values: []string{v}}
			default:
				t.Fatalf("requirement %q", q)
			}
			parts = append(parts, polRequirementText(r))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	peer := func(p string) string {
		switch {
		case strings.HasPrefix(p, "{"):
			return selector(p)
		case strings.Contains(p, " except "):
			c, ex, _ := strings.Cut(p, " except ")
			return c + " except (" + ex + ")"
		}
		return p
	}
	var b strings.Builder
	inPolicy := false
	closePolicy := func() {
		if inPolicy {
			b.WriteString("}\n")
			inPolicy = false
		}
	}
	for _, line := range strings.Split(strings.TrimRight(src, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "#"):
			b.WriteString(line + "\n")
		case strings.HasPrefix(line, "policy "):
			closePolicy()
			head, sel, ok := strings.Cut(strings.TrimPrefix(line, "policy "), " select ")
			if !ok {
				t.Fatalf("policy line %q", line)
			}
			sel, iso, _ := strings.Cut(sel, " isolate ")
			b.WriteString("policy " + head + " {\n  select " + selector(sel) + "\n")
			if iso != "" {
				b.WriteString("  isolate " + iso + "\n")
			}
			inPolicy = true
		case strings.HasPrefix(line, "  ") && inPolicy:
			words := strings.SplitN(strings.TrimSpace(line), " ", 3)
			if len(words) < 2 {
				t.Fatalf("rule line %q", line)
			}
			rest := ""
			if len(words) == 3 {
				rest = words[2]
			}
			rule := words[0] + " " + words[1]
			if pw, peers, ok := strings.Cut(rest, " "); ok && (pw == "from" || pw == "to") {
				peers, ports, _ := strings.Cut(peers, " on ")
				var ps []string
				for _, p := range strings.Split(peers, " | ") {
					ps = append(ps, peer(p))
				}
				rule += " " + pw + " " + strings.Join(ps, ", ")
				rest = ""
				if ports != "" {
					rest = "on " + ports
				}
			}
			if rest != "" {
				rule += " " + rest
			}
			b.WriteString("  " + rule + "\n")
		case strings.HasPrefix(line, "endpoint "):
			closePolicy()
			head, addrs, ok := strings.Cut(strings.TrimPrefix(line, "endpoint "), " addr ")
			name, labels, _ := strings.Cut(head, " labels(")
			labels = strings.TrimSuffix(labels, ")")
			if !ok {
				t.Fatalf("endpoint line %q", line)
			}
			b.WriteString("endpoint " + name)
			if labels != "" {
				var ls []string
				for _, l := range strings.Split(labels, ", ") {
					k, v, _ := strings.Cut(l, "=")
					ls = append(ls, polKeyText(k)+"="+polValueText(v))
				}
				b.WriteString(" labels(" + strings.Join(ls, ", ") + ")")
			}
			b.WriteString(" addr " + addrs + "\n")
		default:
			t.Fatalf("unknown line %q", line)
		}
	}
	closePolicy()
	return b.String()
}

// TestYAMLKubernetesGolden converts every policy the Kubernetes reader
// produces in golden/k8s/ (policy names such as x.ingress-http and
// cnp_x.web, label keys such as k8s:io.kubernetes.pod.namespace) to YAML
// and back: the AST must not change, positions and comments aside.
func TestYAMLKubernetesGolden(t *testing.T) {
	files, _ := filepath.Glob("../golden/k8s/*.txt")
	if len(files) < 10 {
		t.Fatalf("want golden/k8s/*.txt, found %d files", len(files))
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			pol := k8sRenderToPol(t, string(src))
			f := yamlFromPol(t, filepath.Base(path)+".pol", pol)
			if len(f.Decls) == 0 {
				t.Fatalf("no declarations in:\n%s", pol)
			}
			out := FormatYAML(f)
			g, ds := ParseYAML("k8s.yaml", out)
			if len(ds) > 0 {
				t.Fatalf("ParseYAML(FormatYAML):\n%s\noutput:\n%s", ds.Format(func(string) []byte { return out }), out)
			}
			yamlGroupRules(f)
			if diff := cmp.Diff(f.Decls, g.Decls, yamlIgnoreDoc, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("AST changed by FormatYAML (-pol +yaml):\n%s\nyaml:\n%s", diff, out)
			}
			if again := FormatYAML(g); string(again) != string(out) {
				t.Errorf("FormatYAML is not idempotent:\n%s", cmp.Diff(string(out), string(again)))
			}
		})
	}
}

// TestYAMLNamesMatchLanguage: a string is an endpoint, cidrset or policy
// name (and a set peer, and a host in a test packet) in YAML exactly when
// it is one in the policy language.
func TestYAMLNamesMatchLanguage(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"web", true},
		{"x.web", true},
		{"x.ingress-http", true},
		{"x.ingress-http_port1", true},
		{"cnp_x.name_1", true},
		{"ccnp_y-web-and-ping", true},
		{"_x", true},
		{"a_", true},
		{"A.B-C.1", true},
		{"x.1-2", true},
		{"Test", true},
		{"deadbeef", true},
		{"a.b.c.d", true},
		{"", false},
		{"web-", false},
		{"web.", false},
		{"a..b", false},
		{"a.-b", false},
		{"a-.b", false},
		{"-a", false},
		{".a", false},
		{"1web", false},
		{"10.0.0.1", false},
		{"test", false},
		{"world", false},
		{"any", false},
		{"allow", false},
		{"policy", false},
		{"web server", false},
		{" web", false},
		{"a:b", false},
		{"a/b", false},
		{"a#b", false},
		{`a"b`, false},
		{"é", false},
		{"web->api", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := yamlIsName(c.name); got != c.ok {
				t.Errorf("yamlIsName(%q) = %v, want %v", c.name, got, c.ok)
			}
			name := Ident{Name: c.name}
			f := &File{Decls: []Decl{
				&Endpoint{Name: name, Addrs: []Text{yamlText("10.0.0.1")}},
				&CIDRSet{Name: name, Entries: []CIDR{{Prefix: yamlText("10.0.0.0/8")}}},
				&Policy{Name: name, Select: yamlSel(), Rules: []*Rule{
					{Dir: Ingress, Action: Allow, PeerWord: "from", Peers: []Peer{{Kind: PeerSet, Set: name}}},
				}},
				&Test{Name: yamlText("t"), Steps: []*Step{{
					Packet: &Packet{Proto: yamlText("tcp"), Src: HostPort{Host: yamlText(c.name), IsName: true}, Dst: HostPort{Host: yamlText("10.0.0.2"), Port: yamlNum(80)}},
					Expect: yamlPtr(VerdictAllow),
				}}},
			}}
			pol := Format(f)
			pf, pds := Parse("n.pol", pol)
			out := FormatYAML(f)
			yf, yds := ParseYAML("n.yaml", out)
			// The language accepts the name if it reads it back unchanged
			// (Format prints names as they are).
			polOK := len(pds) == 0 && cmp.Equal(f.Decls, pf.Decls, yamlIgnorePos, cmpopts.EquateEmpty())
			if yamlOK := len(yds) == 0; polOK != c.ok || yamlOK != c.ok {
				t.Fatalf("name %q: language accepts it: %v, YAML: %v, want %v\nlanguage:\n%s%s\nYAML:\n%s%s", c.name, polOK, yamlOK, c.ok, pol, pds, out, yds)
			}
			if !c.ok {
				// Each of the four places reports the name.
				if n := strings.Count(yds.Error(), strconv.Quote(c.name)); n < 4 {
					t.Errorf("YAML reports %q %d times, want 4:\n%s", c.name, n, yds)
				}
				return
			}
			if diff := cmp.Diff(f.Decls, yf.Decls, yamlIgnorePos, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("YAML round trip (-want +got):\n%s\n%s", diff, out)
			}
			if diff := cmp.Diff(yf.Decls, pf.Decls, yamlIgnorePos, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("YAML and language differ (-yaml +pol):\n%s", diff)
			}
		})
	}
}

// yamlOddLabelText is label keys and values that are not bare words in one
// syntax or the other.
var yamlOddLabelText = []string{
	"app", "k8s:io.kubernetes.pod.namespace", "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name",
	"k8s.io/name", "io.cilium.k8s.policy.serviceaccount", "", "a b", " lead", "trail ",
	"type", "in", "notin", "exists", "world", "<<", "a=b", "a!=b", "a,b", "(x)", "{", "}", "!", "!x",
	`"`, `\`, `\"`, "a\nb", "\t", "\r\n", "é", "日本", "\x00", "\x7f", "\u2028", "\ufeff", "- x", "? x",
	"null", "~", "true", "no", "1", "1.2", "1e3", "0x1F", "fd00::1", "10.0.0.1", "#x", "a #b", "a: b", "a:b",
	"*x", "&x", "!x y", "%x", "@x", "`x", "|", ">", "---", "...", "'",
}

// TestYAMLLabelTextRoundTrip: every label key and value the language can
// write survives FormatYAML and ParseYAML, in endpoint labels and in every
// kind of requirement, in the map form and in requirement strings.
func TestYAMLLabelTextRoundTrip(t *testing.T) {
	for _, s := range append(yamlOddLabelText, "\xff", "a\xc3") {
		t.Run(strconv.Quote(s), func(t *testing.T) {
			reqs := []Requirement{
				yamlEq(s, s),
				yamlEq(s, "x"),
				yamlEq("k", s),
				{Key: s, Op: OpNotEq, Values: []string{s}},
				{Key: s, Op: OpIn, Values: []string{s, "x", s}},
				{Key: "k", Op: OpNotIn, Values: []string{s}},
				{Key: s, Op: OpExists},
				{Key: s, Op: OpNotExists},
			}
			var decls []Decl
			if utf8.ValidString(s) {
				// Endpoint labels are a YAML map, whose text is UTF-8.
				decls = append(decls, &Endpoint{Name: Ident{Name: "e"}, Labels: []Label{{Key: s, Value: s}, {Key: s + "2", Value: "v"}, {Key: "k", Value: s}}, Addrs: []Text{yamlText("10.0.0.1")}})
			}
			decls = append(decls,
				// The map form: equalities on distinct keys.
				&Policy{Name: Ident{Name: "m"}, Select: yamlSel(yamlEq(s, s), yamlEq(s+"2", "x")), Rules: []*Rule{
					{Dir: Egress, Action: Allow, PeerWord: "to", Peers: []Peer{{Kind: PeerSelector, Selector: yamlSel(yamlEq("k", s))}}},
				}},
				// Requirement strings.
				&Policy{Name: Ident{Name: "r"}, Select: yamlSel(reqs...), Rules: []*Rule{
					{Dir: Ingress, Action: Deny, PeerWord: "from", Peers: []Peer{{Kind: PeerSelector, Selector: yamlSel(reqs[3:]...)}}},
				}},
			)
			f := &File{Decls: decls}
			yamlCheckRoundTrip(t, "labels.yaml", f)
			// The language writes the same text (with Go escapes) and reads
			// it back the same.
			pol := Format(f)
			g := yamlFromPol(t, "labels.pol", string(pol))
			if diff := cmp.Diff(f.Decls, g.Decls, yamlIgnorePos, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("language round trip (-want +got):\n%s\n%s", diff, pol)
			}
			// A requirement as the language prints it is a YAML requirement
			// string meaning the same.
			for _, r := range reqs {
				text := polRequirementText(r)
				got, err := yamlParseRequirements(text, yamlStrPos{})
				if err != nil {
					t.Errorf("YAML rejects the language's %q: %s", text, err.msg)
					continue
				}
				if diff := cmp.Diff([]Requirement{r}, got, yamlIgnorePos); diff != "" {
					t.Errorf("YAML reads the language's %q differently (-want +got):\n%s", text, diff)
				}
			}
		})
	}
}

// TestYAMLOddLabels reads label keys and values that are not bare words,
// written as YAML allows, into what the language reads from its own
// spelling of them.
func TestYAMLOddLabels(t *testing.T) {
	for _, c := range []struct {
		name string
		yaml string // one policy's select value, or an endpoint's labels
		pol  string // the same in the language
	}{
		{"k8s key in a map", `select: {k8s:io.kubernetes.pod.namespace: x, pod: a}`, `select {"k8s:io.kubernetes.pod.namespace"=x, pod=a}`},
		{"k8s key in a quoted map key", `select: {"k8s:io.kubernetes.pod.namespace": x}`, `select "k8s:io.kubernetes.pod.namespace"=x`},
		{"k8s key in a string", `select: '"k8s:io.kubernetes.pod.namespace"=x'`, `select "k8s:io.kubernetes.pod.namespace"=x`},
		{"k8s key in a double-quoted string", `select: "\"k8s:io.kubernetes.pod.namespace\"=x"`, `select "k8s:io.kubernetes.pod.namespace"=x`},
		{"k8s keys in a list", `select: ['"k8s:io.kubernetes.pod.name" in (a, c)', '"k8s:io.kubernetes.pod.namespace"=z', '!"k8s:x"', '"k8s:y" exists', '"k8s:z" notin ("")']`,
			`select {"k8s:io.kubernetes.pod.name" in (a, c), "k8s:io.kubernetes.pod.namespace"=z, !"k8s:x", "k8s:y" exists, "k8s:z" notin ("")}`},
		{"braced string", `select: '{"k8s:a"=x, app=web}'`, `select {"k8s:a"=x, app=web}`},
		{"slash key, bare as ever", `select: "k8s.io/name=x"`, `select "k8s.io/name"=x`},
		{"quoted punctuation", `select: ['k in ("x", "{", ",", ")")', '"in" in (a)', '"exists" exists', '"{"="}"']`,
			`select {k in (x, "{", ",", ")"), "in" in (a), "exists" exists, "{"="}"}`},
		{"escapes", `select: ['"a\tb"="\u00e9\n"', 'k!=""', 'k=""']`, `select {"a\tb"="é\n", k!="", k=""}`},
		{"values of any text", `select: {a: "web server", b: "x=y, z", c: "", d: 1.2, e: true, f: "null", g: }`,
			`select {a="web server", b="x=y, z", c="", d=1.2, e=true, f=null, g=""}`},
		{"endpoint labels", `labels: {k8s:io.kubernetes.pod.namespace: x, "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name": kube-system, "a b": "c d", "<<": x, "": empty, type: "#1"}`,
			`labels("k8s:io.kubernetes.pod.namespace"=x, "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name"=kube-system, "a b"="c d", "<<"=x, ""=empty, "type"="#1")`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var ysrc, psrc string
			if strings.HasPrefix(c.yaml, "labels:") {
				ysrc = "endpoints:\n  - name: x.web\n    " + c.yaml + "\n    addrs: [10.0.0.1]\n"
				psrc = "endpoint x.web " + c.pol + " addr 10.0.0.1\n"
			} else {
				ysrc = "policies:\n  - name: cnp_x.name_1\n    " + c.yaml + "\n"
				psrc = "policy cnp_x.name_1 { " + c.pol + " }\n"
			}
			yf := yamlMustParse(t, ysrc)
			pf := yamlFromPol(t, "odd.pol", psrc)
			if diff := cmp.Diff(pf.Decls, yf.Decls, yamlIgnorePos, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("YAML and language differ (-pol +yaml):\n%s", diff)
			}
			yamlCheckRoundTrip(t, c.name, yf)
		})
	}
}

// TestFormatYAMLOddLabels pins how FormatYAML writes keys and values that
// are not bare words: quoted by YAML in maps, Go-quoted in requirement
// strings.
func TestFormatYAMLOddLabels(t *testing.T) {
	f := yamlFromPol(t, "odd.pol", `endpoint x.web labels("k8s:io.kubernetes.pod.namespace"=x, "<<"="a b", ""="") addr 10.0.0.1
policy x.ingress-http {
  select {"k8s:io.kubernetes.pod.namespace"=x, "k8s:io.kubernetes.pod.name" in (a, "b c")}
  ingress allow from {"k8s:io.kubernetes.pod.namespace"=z, app="v\n"}, cnp_x.name_1
  egress deny to {a=b, a=c, "k8s:x"!="", !"k8s:y"}
}
`)
	want := `endpoints:
  - name: x.web
    labels: {'k8s:io.kubernetes.pod.namespace': x, "<<": a b, "": ""}
    addrs: [10.0.0.1]

policies:
  - name: x.ingress-http
    select: ['"k8s:io.kubernetes.pod.namespace"=x', '"k8s:io.kubernetes.pod.name" in (a, "b c")']
    ingress:
      - action: allow
        from: [{select: {'k8s:io.kubernetes.pod.namespace': z, app: "v\n"}}, cnp_x.name_1]
    egress:
      - action: deny
        to: [{select: [a=b, a=c, '"k8s:x"!=""', '!"k8s:y"']}]
`
	out := yamlCheckRoundTrip(t, "odd", f)
	if string(out) != want {
		t.Errorf("FormatYAML:\n%s", cmp.Diff(want, string(out)))
	}
}
