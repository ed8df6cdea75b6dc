package k8s

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polc-dev/polc/golden"
)

// TestBadInputs compares the diagnostics of each testdata/bad/k8s file,
// read against the conformance cluster (testdata/k8s/houses.yaml),
// with golden/bad/k8s/NAME.txt: every error of a file, at its
// file:line:col, in one run.
func TestBadInputs(t *testing.T) {
	cluster, err := os.ReadFile("../../testdata/k8s/houses.yaml")
	if err != nil {
		t.Fatal(err)
	}
	paths, _ := filepath.Glob("../../testdata/bad/k8s/*.yaml")
	if len(paths) < 8 {
		t.Fatalf("want at least 8 testdata/bad/k8s/*.yaml, found %d", len(paths))
	}
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			file := "testdata/bad/k8s/" + name + ".yaml"
			_, ds := ReadFiles([]Source{{Path: "cluster.yaml", Src: cluster}, {Path: file, Src: src}})
			if !ds.HasErrors() {
				t.Fatalf("no errors for %s", path)
			}
			for _, d := range ds {
				if d.Pos.File != file || d.Pos.Line == 0 {
					t.Errorf("diagnostic not at a position in the file: %s", d)
				}
			}
			golden.Check(t, "bad/k8s/"+name+".txt", []byte(ds.Format(func(string) []byte { return src })))
		})
	}
}
