package dsl

import (
	"strings"
	"testing"
)

// TestAuditPolicy: `policy NAME audit {` in the language and `audit:
// true` in YAML mark a policy for audit, at the keyword; both print back
// (and convert) as they were; a policy may be called audit; audit takes
// only true or false in YAML.
func TestAuditPolicy(t *testing.T) {
	src := "policy web audit {\n  select app=web\n  ingress deny from any on tcp/22\n}\n\npolicy audit {\n  select app=x\n  isolate ingress\n}\n"
	for _, fast := range []bool{true, false} {
		polUseFastPath = fast
		f, ds := Parse("a.pol", []byte(src))
		polUseFastPath = true
		if ds.HasErrors() {
			t.Fatalf("fast path %v: %s", fast, ds.Format(nil))
		}
		p0, p1 := f.Decls[0].(*Policy), f.Decls[1].(*Policy)
		if p0.Audit != (Pos{File: "a.pol", Line: 1, Col: 12}) || p1.Audit.IsValid() || p1.Name.Name != "audit" {
			t.Errorf("fast path %v: audit at %v and %v, names %s %s", fast, p0.Audit, p1.Audit, p0.Name.Name, p1.Name.Name)
		}
		if got := string(Format(f)); got != src {
			t.Errorf("fast path %v: printed\n%s\nwant\n%s", fast, got, src)
		}
	}
	f, _ := Parse("a.pol", []byte(src))
	y := string(FormatYAML(f))
	if !strings.Contains(y, "- name: web\n    audit: true\n") {
		t.Errorf("YAML:\n%s", y)
	}
	back, ds := ParseYAML("a.yaml", []byte(y))
	if ds.HasErrors() {
		t.Fatal(ds.Format(nil))
	}
	if p := back.Decls[0].(*Policy); !p.Audit.IsValid() || back.Decls[1].(*Policy).Audit.IsValid() {
		t.Errorf("YAML read back: audit %v, %v", p.Audit, back.Decls[1].(*Policy).Audit)
	}
	for _, bad := range []string{"maybe", "[true]", "1"} {
		_, ds := ParseYAML("b.yaml", []byte("policies:\n- name: p\n  audit: "+bad+"\n  select: {}\n"))
		if !ds.HasErrors() || !strings.Contains(ds.Format(nil), "b.yaml:3:10: expected true or false") {
			t.Errorf("audit: %s: %s", bad, ds.Format(nil))
		}
	}
}
