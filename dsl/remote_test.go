package dsl

import (
	"strings"
	"testing"
)

// TestRemoteEndpoint: `endpoint NAME remote ...` in the language and
// `remote: true` in YAML mark an endpoint as another node's, at the
// keyword; both print back (and convert) as they were; an endpoint may be
// called remote; remote takes only true or false in YAML; a misplaced
// remote is a syntax error that names it.
func TestRemoteEndpoint(t *testing.T) {
	src := "endpoint api remote labels(app=api) addr 10.0.0.2\nendpoint remote addr 10.0.0.3\nendpoint remote remote addr 10.0.0.4\n"
	for _, fast := range []bool{true, false} {
		polUseFastPath = fast
		f, ds := Parse("a.pol", []byte(src))
		polUseFastPath = true
		if ds.HasErrors() {
			t.Fatalf("fast path %v: %s", fast, ds.Format(nil))
		}
		e0, e1, e2 := f.Decls[0].(*Endpoint), f.Decls[1].(*Endpoint), f.Decls[2].(*Endpoint)
		if e0.Remote != (Pos{File: "a.pol", Line: 1, Col: 14}) || e1.Remote.IsValid() || e1.Name.Name != "remote" ||
			!e2.Remote.IsValid() || e2.Name.Name != "remote" {
			t.Errorf("fast path %v: remote at %v, %v, %v; names %s %s", fast, e0.Remote, e1.Remote, e2.Remote, e1.Name.Name, e2.Name.Name)
		}
		if got := string(Format(f)); got != src {
			t.Errorf("fast path %v: printed\n%s\nwant\n%s", fast, got, src)
		}
	}
	f, _ := Parse("a.pol", []byte(src))
	y := string(FormatYAML(f))
	if !strings.Contains(y, "- name: api\n    remote: true\n") {
		t.Errorf("YAML:\n%s", y)
	}
	back, ds := ParseYAML("a.yaml", []byte(y))
	if ds.HasErrors() {
		t.Fatal(ds.Format(nil))
	}
	if e := back.Decls[0].(*Endpoint); !e.Remote.IsValid() || back.Decls[1].(*Endpoint).Remote.IsValid() {
		t.Errorf("YAML read back: remote %v, %v", e.Remote, back.Decls[1].(*Endpoint).Remote)
	}
	if got := string(Format(back)); got != src {
		t.Errorf("YAML back to the language:\n%s\nwant\n%s", got, src)
	}
	for _, bad := range []string{"maybe", "[true]", "1"} {
		_, ds := ParseYAML("b.yaml", []byte("endpoints:\n- name: e\n  remote: "+bad+"\n  addrs: [10.0.0.1]\n"))
		if !ds.HasErrors() || !strings.Contains(ds.Format(nil), "b.yaml:3:11: expected true or false") {
			t.Errorf("remote: %s: %s", bad, ds.Format(nil))
		}
	}
	_, ds = Parse("c.pol", []byte("endpoint e labels(a=b) remote addr 10.0.0.1\n"))
	if !ds.HasErrors() || !strings.Contains(ds.Format(nil), `c.pol:1:24: expected "addr" after the labels, got "remote"`) {
		t.Errorf("remote after labels: %s", ds.Format(nil))
	}
}
