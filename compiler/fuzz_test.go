package compiler

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/polc-dev/polc/dsl"
)

// FuzzCompile: whatever the parser accepts, the passes never panic, and a
// program they return prints the same text twice.
func FuzzCompile(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join(repoRoot(), "testdata", "*.pol"))
	more, _ := filepath.Glob(filepath.Join(repoRoot(), "testdata", "bad", "check", "*.pol"))
	for _, p := range append(seeds, more...) {
		if src, err := os.ReadFile(p); err == nil {
			f.Add(src)
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		file, ds := dsl.Parse("f.pol", src)
		if ds.HasErrors() || file == nil {
			return
		}
		prog, _ := Compile([]*dsl.File{file}, Sources{"f.pol": src})
		if prog != nil && prog.Text() != prog.Text() {
			t.Fatal("Text is not stable")
		}
	})
}
