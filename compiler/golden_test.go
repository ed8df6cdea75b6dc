package compiler

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/polc-dev/polc/dsl"
	"github.com/polc-dev/polc/golden"
)

// repoRoot is the directory above golden/; tests change into it so that
// paths in positions read testdata/....
func repoRoot() string { return filepath.Dir(golden.Dir()) }

// skipIfNoParser skips a test while the parsers are not built yet.
func skipIfNoParser(t *testing.T, ds dsl.Diagnostics) {
	t.Helper()
	for _, d := range ds {
		if strings.Contains(d.Msg, "not built yet") {
			t.Skipf("parser not built yet: %s", d)
		}
	}
}

func glob(t *testing.T, patterns ...string) []string {
	t.Helper()
	var out []string
	for _, p := range patterns {
		m, err := filepath.Glob(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m...)
	}
	slices.Sort(out)
	return out
}

// TestGoldenIR compiles every policy under testdata/ (top level, lang/,
// yaml/, spoofing/, tiers/) that has no errors and compares its IR text with
// golden/ir/<path under testdata, '/' as '_'>.txt. It also checks that two
// loads give the same bytes.
func TestGoldenIR(t *testing.T) {
	t.Chdir(repoRoot())
	files := glob(t, "testdata/*.pol", "testdata/lang/*.pol", "testdata/yaml/*.yaml", "testdata/yaml/*.yml",
		"testdata/spoofing/*.pol", "testdata/spoofing/*.yaml", "testdata/tiers/*.pol", "testdata/tiers/*.yaml")
	if len(files) == 0 {
		t.Fatal("no policies under testdata/")
	}
	for _, path := range files {
		rel := strings.TrimPrefix(filepath.ToSlash(path), "testdata/")
		t.Run(rel, func(t *testing.T) {
			prog, srcs, ds := Load([]string{path})
			skipIfNoParser(t, ds)
			if ds.HasErrors() {
				if path == filepath.Join("testdata", "quickstart.pol") {
					t.Fatalf("quickstart has errors:\n%s", ds.Format(func(f string) []byte { return srcs[f] }))
				}
				t.Skipf("has errors, no IR:\n%s", ds.Format(func(f string) []byte { return srcs[f] }))
			}
			text := prog.Text()
			golden.Check(t, "ir/"+strings.ReplaceAll(rel, "/", "_")+".txt", []byte(text))
			again, _, _ := Load([]string{path})
			if again.Text() != text {
				t.Errorf("two loads give different IR text")
			}
		})
	}
}

// TestGoldenBadCheck compiles every testdata/bad/check/*.pol (and *.yaml,
// for what only YAML can write) and compares
// its sorted diagnostics, formatted with source lines, with
// golden/bad/check/NAME.txt. Every one of them must report something.
func TestGoldenBadCheck(t *testing.T) {
	t.Chdir(repoRoot())
	files := glob(t, "testdata/bad/check/*.pol", "testdata/bad/check/*.yaml")
	if len(files) < 20 {
		t.Errorf("%d bad inputs under testdata/bad/check, want at least 20", len(files))
	}
	for _, path := range files {
		name := filepath.Base(path)
		name = strings.TrimSuffix(strings.TrimSuffix(name, ".pol"), ".yaml")
		t.Run(name, func(t *testing.T) {
			_, srcs, ds := Load([]string{path})
			skipIfNoParser(t, ds)
			if len(ds) == 0 {
				t.Fatalf("no diagnostics")
			}
			for _, d := range ds {
				if strings.Contains(d.Msg, "syntax") || strings.Contains(d.Msg, "unexpected") {
					t.Errorf("a check input must parse: %s", d)
				}
			}
			golden.Check(t, "bad/check/"+name+".txt", []byte(ds.Format(func(f string) []byte { return srcs[f] })))
		})
	}
}

// TestLoadUnreadable: a command-line file that cannot be read is reported
// at its path, without a line, and gives no program.
func TestLoadUnreadable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nope.pol")
	prog, _, ds := Load([]string{path})
	if prog != nil || len(ds) != 1 || ds[0].Pos != (dsl.Pos{File: path}) || !strings.Contains(ds[0].Msg, "no such file") {
		t.Errorf("got program %v, diagnostics %v", prog, ds)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("file exists")
	}
}

// TestFrontEndsAgree: a policy under testdata/yaml/ with a namesake .pol
// under testdata/ or testdata/lang/ (or, for testdata/tiers/, beside it)
// must compile to the same IR, but for
// positions and sources.
func TestFrontEndsAgree(t *testing.T) {
	t.Chdir(repoRoot())
	pairs := 0
	for _, y := range glob(t, "testdata/yaml/*.yaml", "testdata/tiers/*.yaml") {
		base := strings.TrimSuffix(filepath.Base(y), ".yaml") + ".pol"
		for _, p := range []string{filepath.Join("testdata", base), filepath.Join("testdata", "lang", base), filepath.Join(filepath.Dir(y), base)} {
			if _, err := os.Stat(p); err != nil {
				continue
			}
			pairs++
			t.Run(base, func(t *testing.T) {
				py, _, dy := Load([]string{y})
				pp, _, dp := Load([]string{p})
				skipIfNoParser(t, append(dy, dp...))
				if py == nil || pp == nil {
					t.Skipf("errors: %v %v", dy, dp)
				}
				if a, b := meaning(pp.Text()), meaning(py.Text()); a != b {
					t.Errorf("%s and %s differ (-pol +yaml):\n%s", p, y, cmp.Diff(a, b))
				}
			})
		}
	}
	if pairs == 0 {
		t.Skip("no pairs")
	}
}

// meaning drops from an IR text what depends on the file rather than on
// the policy: source lines and positions.
func meaning(text string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "source ") {
			continue
		}
		if i := strings.Index(line, " at "); i >= 0 {
			rest := line[i+4:]
			if j := strings.IndexByte(rest, ' '); j >= 0 {
				line = line[:i] + rest[j:]
			} else {
				line = line[:i]
			}
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}
