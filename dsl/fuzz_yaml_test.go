package dsl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzParseYAML checks that no input makes the YAML reader fail (it turns a
// panic into a "YAML reader failed" diagnostic, which counts as a failure
// here) and that every input it accepts survives FormatYAML unchanged.
func FuzzParseYAML(f *testing.F) {
	for _, pattern := range []string{"../testdata/yaml/*.yaml", "../testdata/bad/yaml/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, path := range files {
			src, err := os.ReadFile(path)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(src)
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		file, ds := ParseYAML("fuzz.yaml", src)
		for _, d := range ds {
			if strings.HasPrefix(d.Msg, "YAML reader failed") {
				t.Fatalf("%v\ninput:\n%s", d, src)
			}
			if !d.Pos.IsValid() {
				t.Errorf("diagnostic without a position: %v", d)
			}
		}
		if ds.HasErrors() {
			return
		}
		out := FormatYAML(file)
		again, ds := ParseYAML("fuzz.yaml", out)
		if len(ds) > 0 {
			t.Fatalf("formatted output does not read back:\n%s\ninput:\n%s\noutput:\n%s", ds, src, out)
		}
		if diff := cmp.Diff(file, again, cmpopts.IgnoreTypes(Pos{}), cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("FormatYAML changed the AST (-input +output):\n%s\ninput:\n%s\noutput:\n%s", diff, src, out)
		}
		if out2 := FormatYAML(again); string(out2) != string(out) {
			t.Fatalf("FormatYAML is not idempotent:\n%s", cmp.Diff(string(out), string(out2)))
		}
	})
}
