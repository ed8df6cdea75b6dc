package k8s

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polc-dev/polc/golden"
)

// TestGolden pins the policies each testdata/k8s scenario turns into
// (golden/k8s/SCENARIO.txt), so that a change in the translation shows up
// as a reviewable diff.
func TestGolden(t *testing.T) {
	cluster, err := os.ReadFile("../../testdata/k8s/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	paths, _ := filepath.Glob("../../testdata/k8s/*/policy.yaml")
	if len(paths) == 0 {
		t.Fatal("no scenarios")
	}
	for _, path := range paths {
		name := filepath.Base(filepath.Dir(path))
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// A scenario with a cluster of its own (cluster.yaml, or
			// another file its matrix loads) uses it.
			cl := Source{Path: "cluster.yaml", Src: cluster}
			if own, err := os.ReadFile(filepath.Join(filepath.Dir(path), "cluster.yaml")); err == nil {
				cl = Source{Path: name + "/cluster.yaml", Src: own}
			} else if other := matrixCluster(filepath.Join(filepath.Dir(path), "reach.txt")); other != "" {
				b, err := os.ReadFile(filepath.Join(filepath.Dir(path), other))
				if err != nil {
					t.Fatal(err)
				}
				cl = Source{Path: filepath.Base(other), Src: b}
			}
			files, ds := ReadFiles([]Source{cl, {Path: name + "/policy.yaml", Src: src}})
			if ds.HasErrors() {
				t.Fatal(ds)
			}
			out := render(files[1])
			for _, d := range ds {
				out += "# " + d.String() + "\n"
			}
			golden.Check(t, "k8s/"+name+".txt", []byte(out))
		})
	}
}

// matrixCluster returns the shared cluster file, outside the scenario's
// directory, that a matrix's load line names (../houses.yaml), or "".
func matrixCluster(reach string) string {
	b, err := os.ReadFile(reach)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "load" {
			continue
		}
		for _, p := range f[1:] {
			if strings.HasPrefix(p, "../") && filepath.Base(p) != "cluster.yaml" {
				return p
			}
		}
	}
	return ""
}
