package k8s

import (
	"path/filepath"
	"testing"

	"github.com/polc-dev/polc/dsl"
)

// TestPrintsAsPolicyLanguage checks that what the reader produces prints
// as policy language (dsl.Format, what `polc fmt` writes) that parses back
// to the same AST: names with dots and reserved label keys with ':'
// included.
func TestPrintsAsPolicyLanguage(t *testing.T) {
	paths, _ := filepath.Glob("../../testdata/k8s/*/policy.yaml")
	for _, p := range paths {
		files, _, _ := ReadPaths([]string{"../../testdata/k8s/cluster.yaml", p})
		for _, f := range files {
			out := dsl.Format(f)
			back, ds := dsl.Parse("x.pol", out)
			if len(ds) > 0 {
				t.Errorf("%s: %v\n%s", p, ds, out[:min(len(out), 3000)])
				continue
			}
			if render(back) != render(f) {
				t.Errorf("%s: round trip differs:\n%s\n----\n%s", p, render(f), render(back))
			}
		}
	}
}
