package dsl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/polc-dev/polc/golden"
)

// polIgnorePos compares ASTs without positions.
var polIgnorePos = cmpopts.IgnoreTypes(Pos{})

func polAt(line, col int) Pos { return Pos{File: "t.pol", Line: line, Col: col} }

func polMustParse(t *testing.T, src string) *File {
	t.Helper()
	f, ds := Parse("t.pol", []byte(src))
	if len(ds) > 0 {
		t.Fatalf("Parse(%q):\n%s", src, ds.Format(func(string) []byte { return []byte(src) }))
	}
	return f
}

func polVP(v Verdict) *Verdict { return &v }

// TestParseDecls checks the AST of each construct, positions included.
func TestParseDecls(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []Decl
	}{{
		name: "import",
		src:  `import "common.pol"`,
		want: []Decl{&Import{Pos: polAt(1, 1), Path: Text{Pos: polAt(1, 8), Text: "common.pol"}}},
	}, {
		name: "endpoint",
		src:  `endpoint web-1 labels(app=web, "k8s.io/name"=x, v=1.2, n=7, ip=10.0.0.1, role=test) addr 10.0.1.10, fd00::10, 10.0.2.0/30`,
		want: []Decl{&Endpoint{
			Pos:  polAt(1, 1),
			Name: Ident{Pos: polAt(1, 10), Name: "web-1"},
			Labels: []Label{
				{Pos: polAt(1, 23), Key: "app", Value: "web"},
				{Pos: polAt(1, 32), Key: "k8s.io/name", Value: "x"},
				{Pos: polAt(1, 49), Key: "v", Value: "1.2"},
				{Pos: polAt(1, 56), Key: "n", Value: "7"},
				{Pos: polAt(1, 61), Key: "ip", Value: "10.0.0.1"},
				{Pos: polAt(1, 74), Key: "role", Value: "test"},
			},
			Addrs: []Text{{Pos: polAt(1, 90), Text: "10.0.1.10"}, {Pos: polAt(1, 101), Text: "fd00::10"}, {Pos: polAt(1, 111), Text: "10.0.2.0/30"}},
		}},
	}, {
		name: "endpoint without labels",
		src:  "endpoint db addr ::1",
		want: []Decl{&Endpoint{Pos: polAt(1, 1), Name: Ident{Pos: polAt(1, 10), Name: "db"}, Addrs: []Text{{Pos: polAt(1, 18), Text: "::1"}}}},
	}, {
		name: "cidrset",
		src:  "cidrset p = 192.0.2.0/24, 198.51.100.0/24 except 198.51.100.128/25, 2001:db8::/32 except (2001:db8:1::/48, 2001:db8:2::1)",
		want: []Decl{&CIDRSet{
			Pos:  polAt(1, 1),
			Name: Ident{Pos: polAt(1, 9), Name: "p"},
			Entries: []CIDR{
				{Pos: polAt(1, 13), Prefix: Text{Pos: polAt(1, 13), Text: "192.0.2.0/24"}},
				{Pos: polAt(1, 27), Prefix: Text{Pos: polAt(1, 27), Text: "198.51.100.0/24"}, Except: []Text{{Pos: polAt(1, 50), Text: "198.51.100.128/25"}}},
				{Pos: polAt(1, 69), Prefix: Text{Pos: polAt(1, 69), Text: "2001:db8::/32"}, Except: []Text{{Pos: polAt(1, 91), Text: "2001:db8:1::/48"}, {Pos: polAt(1, 108), Text: "2001:db8:2::1"}}},
			},
		}},
	}, {
		name: "prefilter",
		src:  "prefilter drop from 203.0.113.0/24, fd00::/8",
		want: []Decl{&Prefilter{Pos: polAt(1, 1), Entries: []CIDR{
			{Pos: polAt(1, 21), Prefix: Text{Pos: polAt(1, 21), Text: "203.0.113.0/24"}},
			{Pos: polAt(1, 37), Prefix: Text{Pos: polAt(1, 37), Text: "fd00::/8"}},
		}}},
	}, {
		name: "test",
		src:  `test "t" { tcp web:1000 -> api:8080 flags syn, ack; reply expect deny; icmpv6 [fd00::1] -> 10.0.0.2 type 8 code 0 expect allow }`,
		want: []Decl{&Test{Pos: polAt(1, 1), Name: Text{Pos: polAt(1, 6), Text: "t"}, Steps: []*Step{
			{Pos: polAt(1, 12), Packet: &Packet{
				Pos:   polAt(1, 12),
				Proto: Text{Pos: polAt(1, 12), Text: "tcp"},
				Src:   HostPort{Pos: polAt(1, 16), Host: Text{Pos: polAt(1, 16), Text: "web"}, IsName: true, Port: &Int{Pos: polAt(1, 20), Value: 1000}},
				Dst:   HostPort{Pos: polAt(1, 28), Host: Text{Pos: polAt(1, 28), Text: "api"}, IsName: true, Port: &Int{Pos: polAt(1, 32), Value: 8080}},
			}, Flags: []Text{{Pos: polAt(1, 43), Text: "syn"}, {Pos: polAt(1, 48), Text: "ack"}}},
			{Pos: polAt(1, 53), Reply: true, Expect: polVP(VerdictDeny), ExpectPos: polAt(1, 59)},
			{Pos: polAt(1, 72), Packet: &Packet{
				Pos:      polAt(1, 72),
				Proto:    Text{Pos: polAt(1, 72), Text: "icmpv6"},
				Src:      HostPort{Pos: polAt(1, 79), Host: Text{Pos: polAt(1, 80), Text: "fd00::1"}},
				Dst:      HostPort{Pos: polAt(1, 92), Host: Text{Pos: polAt(1, 92), Text: "10.0.0.2"}},
				ICMPType: &Int{Pos: polAt(1, 106), Value: 8},
				ICMPCode: &Int{Pos: polAt(1, 113), Value: 0},
			}, Expect: polVP(VerdictAllow), ExpectPos: polAt(1, 115)},
		}}},
	}, {
		name: "test with via",
		src:  `test "t" { udp 10.0.0.9 -> api:53 via web; tcp web -> api:80 flags syn via evil expect deny }`,
		want: []Decl{&Test{Pos: polAt(1, 1), Name: Text{Pos: polAt(1, 6), Text: "t"}, Steps: []*Step{
			{Pos: polAt(1, 12), Packet: &Packet{
				Pos:   polAt(1, 12),
				Proto: Text{Pos: polAt(1, 12), Text: "udp"},
				Src:   HostPort{Pos: polAt(1, 16), Host: Text{Pos: polAt(1, 16), Text: "10.0.0.9"}},
				Dst:   HostPort{Pos: polAt(1, 28), Host: Text{Pos: polAt(1, 28), Text: "api"}, IsName: true, Port: &Int{Pos: polAt(1, 32), Value: 53}},
			}, Via: &Ident{Pos: polAt(1, 39), Name: "web"}},
			{Pos: polAt(1, 44), Packet: &Packet{
				Pos:   polAt(1, 44),
				Proto: Text{Pos: polAt(1, 44), Text: "tcp"},
				Src:   HostPort{Pos: polAt(1, 48), Host: Text{Pos: polAt(1, 48), Text: "web"}, IsName: true},
				Dst:   HostPort{Pos: polAt(1, 55), Host: Text{Pos: polAt(1, 55), Text: "api"}, IsName: true, Port: &Int{Pos: polAt(1, 59), Value: 80}},
			}, Flags: []Text{{Pos: polAt(1, 68), Text: "syn"}}, Via: &Ident{Pos: polAt(1, 76), Name: "evil"},
				Expect: polVP(VerdictDeny), ExpectPos: polAt(1, 81)},
		}}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := polMustParse(t, tt.src)
			if diff := cmp.Diff(tt.want, f.Decls); diff != "" {
				t.Errorf("Parse(%q) (-want +got):\n%s", tt.src, diff)
			}
		})
	}
}

// TestParsePolicy checks rules, peers, selectors and L4 terms.
func TestParsePolicy(t *testing.T) {
	src := `policy p {
  select {}
  isolate ingress, egress
  ingress allow from app=web, {a!=b, c in (d, e), f notin (g), h exists, !i}, world, any, set1, 10.0.0.0/8 except 10.1.0.0/16 on tcp/80, udp/1000-2000, sctp, icmp type 3 code 4, icmpv6, any
  egress deny to fd00::1
  ingress allow
}`
	f := polMustParse(t, src)
	p := f.Decls[0].(*Policy)
	want := &Policy{
		Pos:     polAt(1, 1),
		Name:    Ident{Pos: polAt(1, 8), Name: "p"},
		Select:  Selector{Pos: polAt(2, 10)},
		Isolate: []DirectionAt{{Pos: polAt(3, 11), Dir: Ingress}, {Pos: polAt(3, 20), Dir: Egress}},
		Rules: []*Rule{{
			Pos: polAt(4, 3), Dir: Ingress, Action: Allow, PeerPos: polAt(4, 17), PeerWord: "from",
			Peers: []Peer{
				{Pos: polAt(4, 22), Kind: PeerSelector, Selector: Selector{Pos: polAt(4, 22), Reqs: []Requirement{{Pos: polAt(4, 22), Key: "app", Op: OpEq, Values: []string{"web"}}}}},
				{Pos: polAt(4, 31), Kind: PeerSelector, Selector: Selector{Pos: polAt(4, 31), Reqs: []Requirement{
					{Pos: polAt(4, 32), Key: "a", Op: OpNotEq, Values: []string{"b"}},
					{Pos: polAt(4, 38), Key: "c", Op: OpIn, Values: []string{"d", "e"}},
					{Pos: polAt(4, 51), Key: "f", Op: OpNotIn, Values: []string{"g"}},
					{Pos: polAt(4, 64), Key: "h", Op: OpExists},
					{Pos: polAt(4, 74), Key: "i", Op: OpNotExists},
				}}},
				{Pos: polAt(4, 79), Kind: PeerWorld},
				{Pos: polAt(4, 86), Kind: PeerAny},
				{Pos: polAt(4, 91), Kind: PeerSet, Set: Ident{Pos: polAt(4, 91), Name: "set1"}},
				{Pos: polAt(4, 97), Kind: PeerCIDR, CIDR: CIDR{Pos: polAt(4, 97), Prefix: Text{Pos: polAt(4, 97), Text: "10.0.0.0/8"}, Except: []Text{{Pos: polAt(4, 115), Text: "10.1.0.0/16"}}}},
			},
			Ports: []L4{
				{Pos: polAt(4, 130), Proto: "tcp", Port: &Int{Pos: polAt(4, 134), Value: 80}},
				{Pos: polAt(4, 138), Proto: "udp", Port: &Int{Pos: polAt(4, 142), Value: 1000}, PortEnd: &Int{Pos: polAt(4, 147), Value: 2000}},
				{Pos: polAt(4, 153), Proto: "sctp"},
				{Pos: polAt(4, 159), Proto: "icmp", ICMPType: &Int{Pos: polAt(4, 169), Value: 3}, ICMPCode: &Int{Pos: polAt(4, 176), Value: 4}},
				{Pos: polAt(4, 179), Proto: "icmpv6"},
				{Pos: polAt(4, 187), Proto: "any"},
			},
		}, {
			Pos: polAt(5, 3), Dir: Egress, Action: Deny, PeerPos: polAt(5, 15), PeerWord: "to",
			Peers: []Peer{{Pos: polAt(5, 18), Kind: PeerCIDR, CIDR: CIDR{Pos: polAt(5, 18), Prefix: Text{Pos: polAt(5, 18), Text: "fd00::1"}}}},
		}, {
			Pos: polAt(6, 3), Dir: Ingress, Action: Allow,
		}},
	}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("policy (-want +got):\n%s", diff)
	}
}

// TestParseLexing checks the tricky corners of the lexer through the AST.
func TestParseLexing(t *testing.T) {
	tests := []struct {
		name, src string
		want      []Decl
	}{{
		name: "arrow after a name, dash inside one",
		src:  `test "t" { tcp web-1->api-in:80 expect allow }`,
		want: []Decl{&Test{Name: Text{Text: "t"}, Steps: []*Step{{Packet: &Packet{
			Proto: Text{Text: "tcp"},
			Src:   HostPort{Host: Text{Text: "web-1"}, IsName: true},
			Dst:   HostPort{Host: Text{Text: "api-in"}, IsName: true, Port: &Int{Value: 80}},
		}, Expect: polVP(VerdictAllow)}}}},
	}, {
		name: "range without spaces, v6 and names with colons",
		src:  "policy a-b { select x=y ingress allow from cafe::1 on tcp/8080-8090 }",
		want: []Decl{&Policy{Name: Ident{Name: "a-b"}, Select: Selector{Reqs: []Requirement{{Key: "x", Op: OpEq, Values: []string{"y"}}}}, Rules: []*Rule{{
			PeerWord: "from",
			Peers:    []Peer{{Kind: PeerCIDR, CIDR: CIDR{Prefix: Text{Text: "cafe::1"}}}},
			Ports:    []L4{{Proto: "tcp", Port: &Int{Value: 8080}, PortEnd: &Int{Value: 8090}}},
		}}}},
	}, {
		name: "hex-looking name with a port",
		src:  `test "t" { udp cafe:53 -> [::1]:53 expect deny }`,
		want: []Decl{&Test{Name: Text{Text: "t"}, Steps: []*Step{{Packet: &Packet{
			Proto: Text{Text: "udp"},
			Src:   HostPort{Host: Text{Text: "cafe"}, IsName: true, Port: &Int{Value: 53}},
			Dst:   HostPort{Host: Text{Text: "::1"}, Port: &Int{Value: 53}},
		}, Expect: polVP(VerdictDeny)}}}},
	}, {
		name: "escapes in strings, comments, CRLF",
		src:  "import \"a\\\"b\\u00e9.pol\" # trailing\r\n",
		want: []Decl{&Import{Path: Text{Text: "a\"bé.pol"}}},
	}, {
		name: "leading zeros",
		src:  "policy p { select {} ingress allow on tcp/080 }",
		want: []Decl{&Policy{Name: Ident{Name: "p"}, Rules: []*Rule{{Ports: []L4{{Proto: "tcp", Port: &Int{Value: 80}}}}}}},
	}, {
		name: "optional semicolons",
		src:  `test "t" { tcp a -> b:1 reply; reply expect allow }`,
		want: []Decl{&Test{Name: Text{Text: "t"}, Steps: []*Step{
			{Packet: &Packet{Proto: Text{Text: "tcp"}, Src: HostPort{Host: Text{Text: "a"}, IsName: true}, Dst: HostPort{Host: Text{Text: "b"}, IsName: true, Port: &Int{Value: 1}}}},
			{Reply: true},
			{Reply: true, Expect: polVP(VerdictAllow)},
		}}},
	}, {
		// via means something only after a packet: elsewhere it is a name
		// or a key like any other word.
		name: "via is not reserved",
		src: `endpoint via labels(via=via) addr 10.0.0.1
cidrset via-x = 10.1.0.0/16
policy via { select via=via ingress allow from via-x, via exists }
test "via" { tcp via:1 -> via:2 via via; reply via via expect allow }`,
		want: []Decl{
			&Endpoint{Name: Ident{Name: "via"}, Labels: []Label{{Key: "via", Value: "via"}}, Addrs: []Text{{Text: "10.0.0.1"}}},
			&CIDRSet{Name: Ident{Name: "via-x"}, Entries: []CIDR{{Prefix: Text{Text: "10.1.0.0/16"}}}},
			&Policy{Name: Ident{Name: "via"}, Select: Selector{Reqs: []Requirement{{Key: "via", Op: OpEq, Values: []string{"via"}}}}, Rules: []*Rule{{
				PeerWord: "from",
				Peers: []Peer{{Kind: PeerSet, Set: Ident{Name: "via-x"}},
					{Kind: PeerSelector, Selector: Selector{Reqs: []Requirement{{Key: "via", Op: OpExists}}}}},
			}}},
			&Test{Name: Text{Text: "via"}, Steps: []*Step{
				{Packet: &Packet{Proto: Text{Text: "tcp"}, Src: HostPort{Host: Text{Text: "via"}, IsName: true, Port: &Int{Value: 1}},
					Dst: HostPort{Host: Text{Text: "via"}, IsName: true, Port: &Int{Value: 2}}}, Via: &Ident{Name: "via"}},
				{Reply: true, Via: &Ident{Name: "via"}, Expect: polVP(VerdictAllow)},
			}},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := polMustParse(t, tt.src)
			if diff := cmp.Diff(tt.want, f.Decls, polIgnorePos); diff != "" {
				t.Errorf("Parse(%q) (-want +got):\n%s", tt.src, diff)
			}
		})
	}
}

func TestParseComments(t *testing.T) {
	src := `# header
# second line
endpoint web addr 10.0.0.1 # end of line
#
#   indented
policy p {
  # before select goes to the first rule or isolate line
  select {}
  # the isolate line
  isolate ingress
  # a rule
  ingress allow # after a rule
}
# trailing 1

#trailing 2
`
	f := polMustParse(t, src)
	ep := f.Decls[0].(*Endpoint)
	pol := f.Decls[1].(*Policy)
	checks := []struct {
		name      string
		got, want []string
	}{
		{"endpoint", ep.Doc, []string{"header", "second line"}},
		{"policy", pol.Doc, []string{"end of line", "", "  indented"}},
		{"isolate", pol.IsolateDoc, []string{"before select goes to the first rule or isolate line", "the isolate line"}},
		{"rule", pol.Rules[0].Doc, []string{"a rule"}},
		{"trailing", f.Trailing, []string{"after a rule", "trailing 1", "trailing 2"}},
	}
	for _, c := range checks {
		if diff := cmp.Diff(c.want, c.got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s doc (-want +got):\n%s", c.name, diff)
		}
	}
}

// TestParseTestdata parses every valid example.
func TestParseTestdata(t *testing.T) {
	for _, path := range polValidFiles(t) {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f, ds := Parse(path, src)
		if len(ds) > 0 {
			t.Errorf("%s:\n%s", path, ds.Format(func(string) []byte { return src }))
		}
		if len(f.Decls) == 0 {
			t.Errorf("%s: no declarations", path)
		}
	}
}

// polValidFiles lists testdata/**/*.pol outside testdata/bad.
func polValidFiles(t testing.TB) []string {
	var out []string
	err := filepath.WalkDir("../testdata", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "bad" {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".pol") {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("no testdata")
	}
	return out
}

// TestSyntaxErrors compares the diagnostics of each testdata/bad/syntax file
// with golden/bad/syntax/NAME.txt.
func TestSyntaxErrors(t *testing.T) {
	paths, err := filepath.Glob("../testdata/bad/syntax/*.pol")
	if err != nil || len(paths) < 15 {
		t.Fatalf("want at least 15 bad inputs, have %d (%v)", len(paths), err)
	}
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".pol")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			rel := "testdata/bad/syntax/" + name + ".pol"
			_, ds := Parse(rel, src)
			if !ds.HasErrors() {
				t.Fatalf("%s parsed without errors", rel)
			}
			golden.Check(t, "bad/syntax/"+name+".txt", []byte(ds.Format(func(string) []byte { return src })))
		})
	}
}

// TestSyntaxErrorsAllReported checks that independent errors are all found
// and the good declarations around them still parse.
func TestSyntaxErrorsAllReported(t *testing.T) {
	src, err := os.ReadFile("../testdata/bad/syntax/many_errors.pol")
	if err != nil {
		t.Fatal(err)
	}
	f, ds := Parse("many_errors.pol", src)
	if len(ds) != 5 {
		t.Errorf("got %d diagnostics, want 5:\n%v", len(ds), ds)
	}
	var kinds []string
	for _, d := range f.Decls {
		kinds = append(kinds, polKind(d))
	}
	if diff := cmp.Diff([]string{"endpoint", "policy", "test"}, kinds); diff != "" {
		t.Errorf("good declarations (-want +got):\n%s", diff)
	}
}

func TestSyntaxErrorMessages(t *testing.T) {
	tests := []struct{ src, want string }{
		{"policy p { select {} ingress allow on tcp/http }", `t.pol:1:43: expected a port number after "tcp/", got "http"`},
		{"policy p { }", `t.pol:1:12: unexpected "}"; a policy needs "select" first`},
		{`import "x`, "t.pol:1:8: unterminated string"},
		{"endpoint to addr 1.2.3.4", `t.pol:1:10: expected an endpoint name after "endpoint", got keyword "to" (keywords cannot be names)`},
		{"endpoint a addr 1.2.3.4 b", `t.pol:1:25: expected "," and another address, or a new declaration, got "b"`},
		{"endpoint a labels(a=b/c) addr 1.2.3.4", `t.pol:1:22: expected "," or ")" after a label, got "/"; write keys and values with other characters in double quotes, as in "k8s.io/name"`},
		{"policy p { select {} ingress allow on tcp/1-2-3 }", `t.pol:1:46: expected ",", another rule or "}", got "-"`},
		{"policy p { select a b }", `t.pol:1:21: expected "=", "!=", "in", "notin" or "exists" after label key "a", got "b"`},
		{"test \"t\" { tcp a -> b:1 expect allow; }", `t.pol:1:39: expected a packet ("tcp", "udp", "sctp", "icmp", "icmpv6") or "reply", got "}"`},
		{"test \"t\" { tcp a -> b/24 expect allow }", `t.pol:1:22: expected "flags", "via", "expect", ";", another step or "}", got "/"`},
		{"test \"t\" { tcp a -> b:1 via expect allow }", `t.pol:1:29: expected an endpoint name after "via", got keyword "expect" (keywords cannot be names)`},
		{"test \"t\" { tcp a -> b:1 via }", `t.pol:1:29: expected an endpoint name after "via", got "}"`},
		{"test \"t\" { tcp a -> b:1 via 10.0.0.1 expect deny }", `t.pol:1:29: expected an endpoint name after "via", got "10.0.0.1"`},
		{"test \"t\" { tcp a -> b:1 via c flags syn expect deny }", `t.pol:1:31: expected "expect", ";", another step or "}", got keyword "flags"`},
		{"test \"t\" { tcp a -> b:1 flags syn, ack evil expect deny }", `t.pol:1:40: expected ",", "via", "expect", ";", another step or "}", got "evil"`},
		{"test \"t\" { tcp a -> b:1 expect deny via c }", `t.pol:1:37: expected ";", another step or "}", got "via"`},
		{"test \"t\" { tcp 10.0.0.0/8 -> b expect allow }", `t.pol:1:16: expected the source address or endpoint name, got prefix "10.0.0.0/8": a packet needs a single address`},
		{"\x00", "t.pol:1:1: NUL byte"},
	}
	for _, tt := range tests {
		_, ds := Parse("t.pol", []byte(tt.src))
		if got := ds.Error(); got != tt.want {
			t.Errorf("Parse(%q):\n got %s\nwant %s", tt.src, got, tt.want)
		}
	}
}

func TestParseNeverPanics(t *testing.T) {
	inputs := []string{
		"", "{", "}", strings.Repeat("{", 10000), strings.Repeat("policy p { select {", 500),
		"\xff\xfe", "test \"\" {", "policy", "endpoint a addr", `"`, "#", "[", "::", "1.2.3.4/", "a-", "-", "->",
		strings.Repeat("endpoint a addr 1.2.3.4 @\n", 200),
	}
	for _, in := range inputs {
		Parse("t.pol", []byte(in))
	}
	// The error count is capped.
	_, ds := Parse("t.pol", []byte(strings.Repeat("@\n", 1000)))
	if len(ds) != polMaxDiagnostics+1 || ds[len(ds)-1].Msg != "too many errors" {
		t.Errorf("got %d diagnostics, want %d ending in \"too many errors\"", len(ds), polMaxDiagnostics+1)
	}
}
