package dsl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// polCheckFormat checks that Format keeps the meaning of src and is
// idempotent; src must parse without errors.
func polCheckFormat(t *testing.T, name string, src []byte) {
	t.Helper()
	f1, ds := Parse(name, src)
	if len(ds) > 0 {
		t.Fatalf("%s:\n%s", name, ds.Format(func(string) []byte { return src }))
	}
	out1 := Format(f1)
	f2, ds := Parse(name, out1)
	if len(ds) > 0 {
		t.Fatalf("%s: formatted output does not parse:\n%s\n%s", name, ds.Format(func(string) []byte { return out1 }), out1)
	}
	if diff := cmp.Diff(f1, f2, polIgnorePos); diff != "" {
		t.Errorf("%s: formatting changed the AST (-before +after):\n%s\nformatted:\n%s", name, diff, out1)
	}
	if out2 := Format(f2); string(out2) != string(out1) {
		t.Errorf("%s: Format is not idempotent (-first +second):\n%s", name, cmp.Diff(string(out1), string(out2)))
	}
}

func TestFormatRoundTripTestdata(t *testing.T) {
	for _, path := range polValidFiles(t) {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		polCheckFormat(t, path, src)
	}
}

func TestFormatCanonical(t *testing.T) {
	tests := []struct{ name, in, want string }{{
		name: "spacing and blank lines",
		in: `endpoint web   labels( app = web,tier=frontend )   addr 10.0.1.10,fd00::10
endpoint api addr 10.0.2.10
cidrset p=192.0.2.0/24 except(192.0.2.1)   ,10.0.0.0/8 except (10.1.0.0/16,10.2.0.0/16)
policy a{select{app=api,tier=backend}ingress allow from{app=web},world,any,p,10.0.0.1 on tcp/80-90,udp/53,icmp type 8 code 0,any egress deny}
prefilter drop from 203.0.113.0/24
test "t"{tcp web->[fd00::10]:80 flags syn,ack expect allow;reply expect deny}
`,
		want: `endpoint web labels(app=web, tier=frontend) addr 10.0.1.10, fd00::10
endpoint api addr 10.0.2.10

cidrset p = 192.0.2.0/24 except 192.0.2.1, 10.0.0.0/8 except (10.1.0.0/16, 10.2.0.0/16)

policy a {
  select {app=api, tier=backend}
  ingress allow from app=web, world, any, p, 10.0.0.1 on tcp/80-90, udp/53, icmp type 8 code 0, any
  egress deny
}

prefilter drop from 203.0.113.0/24

test "t" { tcp web -> [fd00::10]:80 flags syn, ack expect allow; reply expect deny }
`,
	}, {
		name: "quoting",
		in:   `endpoint e labels("app"=web, "k8s.io/name"="x", "a b"="", v="1.2", w=test, x="10.0.0.0/8", y="fd00::1", "type"=x, z="\u00e9") addr 10.0.0.1` + "\n",
		want: `endpoint e labels(app=web, "k8s.io/name"=x, "a b"="", v=1.2, w=test, x="10.0.0.0/8", y="fd00::1", "type"=x, z="é") addr 10.0.0.1` + "\n",
	}, {
		name: "selectors",
		in:   `policy p { select {} ingress allow from {a!=1}, {b in (x,y)}, {c notin (z)}, {d exists}, {!e}, {f=g, !h} }`,
		want: `policy p {
  select {}
  ingress allow from a!=1, b in (x, y), c notin (z), d exists, !e, {f=g, !h}
}
`,
	}, {
		name: "comments and isolate",
		in: `# head
endpoint a addr 1.2.3.4   # eol
policy p {
  select {}
  ingress allow
  #   iso
  isolate egress
  isolate ingress
  # rule
  egress allow
}
# tail`,
		want: `# head
endpoint a addr 1.2.3.4

# eol
policy p {
  select {}
  #   iso
  isolate egress, ingress
  ingress allow
  # rule
  egress allow
}

# tail
`,
	}, {
		name: "long test",
		in:   `test "a rather long test name" { tcp web:40001 -> api:8080 flags syn expect allow; reply flags syn, ack expect allow }`,
		want: `test "a rather long test name" {
  tcp web:40001 -> api:8080 flags syn expect allow
  reply flags syn, ack expect allow
}
`,
	}, {
		name: "via",
		in:   `test "spoofed"{tcp web->api:8080 flags syn,ack via   evil expect deny;reply via evil;udp 192.0.2.1->api:53 via web expect deny}`,
		want: `test "spoofed" {
  tcp web -> api:8080 flags syn, ack via evil expect deny
  reply via evil
  udp 192.0.2.1 -> api:53 via web expect deny
}
`,
	}, {
		name: "header kept apart by one blank line",
		in:   "# title\n\n\n\n# web's doc\nendpoint web addr 10.0.0.1\n",
		want: "# title\n\n# web's doc\nendpoint web addr 10.0.0.1\n",
	}, {
		name: "header without doc",
		in:   "\n\n# title\n#\n# more\n  \t\nendpoint web addr 10.0.0.1\n",
		want: "# title\n#\n# more\n\nendpoint web addr 10.0.0.1\n",
	}, {
		name: "header paragraphs",
		in:   "# licence\n\n\n# title\n\n# doc\npolicy p { select {} }\n",
		want: "# licence\n\n# title\n\n# doc\npolicy p {\n  select {}\n}\n",
	}, {
		name: "no blank line, no header",
		in:   "# doc\nendpoint web addr 10.0.0.1\n\n# b's doc\n\nendpoint b addr 10.0.0.2\n",
		want: "# doc\nendpoint web addr 10.0.0.1\n\n# b's doc\nendpoint b addr 10.0.0.2\n",
	}, {
		name: "only comments",
		in:   "# just\n#\n# comments\n",
		want: "# just\n#\n# comments\n",
	}, {
		name: "empty",
		in:   "",
		want: "",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, ds := Parse("t.pol", []byte(tt.in))
			if len(ds) > 0 {
				t.Fatal(ds)
			}
			got := string(Format(f))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Format (-want +got):\n%s", diff)
			}
			polCheckFormat(t, "t.pol", []byte(tt.in))
		})
	}
}

// TestFormatQuickstartReadable keeps the example's shape: one line per
// endpoint and test, blank lines between kinds.
func TestFormatQuickstartReadable(t *testing.T) {
	src, err := os.ReadFile("../testdata/quickstart.pol")
	if err != nil {
		t.Fatal(err)
	}
	f, ds := Parse("quickstart.pol", src)
	if len(ds) > 0 {
		t.Fatal(ds)
	}
	out := string(Format(f))
	for _, want := range []string{
		"endpoint web labels(app=web, tier=frontend) addr 10.0.1.10, fd00::10\nendpoint api",
		"\n\npolicy api-in {\n  select app=api\n  ingress allow from app=web on tcp/8080\n",
		"test \"reply of allowed flow\" { tcp web -> api:8080 expect allow; reply expect allow }\ntest",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("formatted quickstart lacks %q:\n%s", want, out)
		}
	}
}

// TestParseHeader checks which comments make the file's header: those a
// blank line separates from the first declaration, in paragraphs.
func TestParseHeader(t *testing.T) {
	tests := []struct {
		name, src string
		header    []Doc
		doc       Doc
		trailing  []string
	}{
		{"none", "endpoint a addr 1.2.3.4\n", nil, nil, nil},
		{"doc only", "# doc\n# more\nendpoint a addr 1.2.3.4\n", nil, Doc{"doc", "more"}, nil},
		{"header only", "# title\n\nendpoint a addr 1.2.3.4\n", []Doc{{"title"}}, nil, nil},
		{"header and doc", "# title\n#\n\n\n# doc\nendpoint a addr 1.2.3.4 # eol\n", []Doc{{"title", ""}}, Doc{"doc"}, []string{"eol"}},
		{"paragraphs", "# a\n\n# b\n# c\n\n# doc\nendpoint a addr 1.2.3.4\n", []Doc{{"a"}, {"b", "c"}}, Doc{"doc"}, nil},
		{"comments alone", "# a\n\n# b\n", nil, nil, []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := polMustParse(t, tt.src)
			var doc Doc
			if len(f.Decls) > 0 {
				doc = polDeclDoc(f.Decls[0])
			}
			if diff := cmp.Diff(tt.header, f.Header, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("header (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.doc, doc, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("first declaration's doc (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.trailing, f.Trailing, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("trailing (-want +got):\n%s", diff)
			}
		})
	}
}

// polCanonicalFiles are the testdata files written in canonical form, so
// that `polc fmt` reproduces them byte for byte: the examples users read
// first. The other testdata files are parser and compiler inputs, aligned
// by hand or deliberately odd, and are only required to round-trip.
var polCanonicalFiles = []string{
	"../testdata/quickstart.pol",
}

func TestFormatCanonicalFiles(t *testing.T) {
	for _, path := range polCanonicalFiles {
		t.Run(filepath.Base(path), func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			f, ds := Parse(path, src)
			if len(ds) > 0 {
				t.Fatalf("%s", ds.Format(func(string) []byte { return src }))
			}
			if diff := cmp.Diff(string(src), string(Format(f))); diff != "" {
				t.Errorf("%s is not in canonical form; 'polc fmt -w %s' rewrites it (-file +formatted):\n%s", path, path, diff)
			}
		})
	}
}
