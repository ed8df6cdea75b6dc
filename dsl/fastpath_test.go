package dsl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// parseBothWays parses src with and without the fast path for endpoints and
// policies and fails if the ASTs or diagnostics differ in anything,
// positions included: the fast path may make Parse faster, never different.
func parseBothWays(t *testing.T, name string, src []byte) {
	t.Helper()
	fast, fastDiags := Parse(name, src)
	polUseFastPath = false
	slow, slowDiags := Parse(name, src)
	polUseFastPath = true
	if d := cmp.Diff(slow, fast); d != "" {
		t.Fatalf("%s: the fast path changes the AST (-participle +fast):\n%s", name, d)
	}
	if d := cmp.Diff(slowDiags, fastDiags); d != "" {
		t.Fatalf("%s: the fast path changes the diagnostics (-participle +fast):\n%s", name, d)
	}
}

func TestFastPathMatchesParticiple(t *testing.T) {
	files, _ := filepath.Glob("../testdata/*.pol")
	more, _ := filepath.Glob("../testdata/*/*.pol")
	bad, _ := filepath.Glob("../testdata/bad/*/*.pol")
	files = append(append(files, more...), bad...)
	if len(files) < 20 {
		t.Fatalf("found only %d policy files", len(files))
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		parseBothWays(t, f, src)
	}
	// Near misses of what the fast path reads, each a place where it must
	// give up and leave the declaration (and its error) to participle.
	for _, src := range []string{
		"endpoint a labels(x=1, y=2) addr 10.0.0.1, fd00::1\n",
		"endpoint a labels(x=) addr 10.0.0.1\n",
		"endpoint a addr 10.0.0.1,\n",
		"endpoint test addr 10.0.0.1\n",
		`endpoint a labels("k8s:x"=y) addr 10.0.0.0/31` + "\n",
		"policy p { select {a=b, c in (d, e), !f, g exists, h notin (i)} ingress allow from {} on tcp/1-2, icmp type 8 code 0, any }\n",
		"policy p { select a=b isolate ingress, egress egress deny to world, any, 10.0.0.0/8 except (10.1.0.0/16, 10.2.0.0/16) }\n",
		"policy p { select a=b ingress allow from set1 on tcp/ }\n",
		"policy p { select a=b ingress allow to app=x }\n",
		"policy p { select a=b ingress allow from app=x on tcp/80-\n",
		"policy p { ingress allow }\n",
		"policy p { select a in () }\n",
		"endpoint via labels(via=via) addr 10.0.0.1\npolicy via { select via=via ingress allow from via, via exists }\n",
		"test \"t\" { tcp via -> via:1 via via expect deny }\n",
	} {
		parseBothWays(t, "near-miss.pol", []byte(src))
	}
}

func FuzzFastPath(f *testing.F) {
	files, _ := filepath.Glob("../testdata/*/*.pol")
	for _, p := range files {
		if src, err := os.ReadFile(p); err == nil && !strings.Contains(p, "many_errors") {
			f.Add(src)
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		parseBothWays(t, "fuzz.pol", src)
	})
}
