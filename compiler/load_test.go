package compiler

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/polc-dev/polc/dsl"
)

// fakeParse understands one declaration: lines `import "PATH"`. Every other
// line is ignored, so loader tests do not depend on the real parser.
func fakeParse(path string, src []byte) (*dsl.File, dsl.Diagnostics) {
	f := &dsl.File{Path: path}
	for i, line := range strings.Split(string(src), "\n") {
		rest, ok := strings.CutPrefix(line, "import ")
		if !ok {
			continue
		}
		f.Decls = append(f.Decls, &dsl.Import{
			Pos:  dsl.Pos{File: path, Line: i + 1, Col: 1},
			Path: dsl.Text{Pos: dsl.Pos{File: path, Line: i + 1, Col: 8}, Text: strings.Trim(rest, `"`)},
		})
	}
	return f, nil
}

// writeTree writes files (path → contents) under a temporary directory and
// changes into it, so paths in positions are relative.
func writeTree(t *testing.T, files map[string]string) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
}

func loadedPaths(files []*dsl.File) []string {
	var out []string
	for _, f := range files {
		out = append(out, f.Path)
	}
	return out
}

func TestLoadOrderIsPostOrderAndReadsEachFileOnce(t *testing.T) {
	writeTree(t, map[string]string{
		"main.pol":       "import \"lib/a.pol\"\nimport \"lib/b.pol\"\n",
		"lib/a.pol":      "import \"common.pol\"\n",
		"lib/b.pol":      "import \"common.pol\"\nimport \"../other.pol\"\n",
		"lib/common.pol": "",
		"other.pol":      "",
		"unrelated.pol":  "",
		"lib/unused.pol": "",
	})
	files, srcs, ds := loadWith([]string{"main.pol", "other.pol", "unrelated.pol"}, LoadOptions{}, fakeParse)
	if len(ds) > 0 {
		t.Fatalf("diagnostics: %v", ds)
	}
	want := []string{"lib/common.pol", "lib/a.pol", "other.pol", "lib/b.pol", "main.pol", "unrelated.pol"}
	if diff := cmp.Diff(want, loadedPaths(files)); diff != "" {
		t.Errorf("load order (-want +got):\n%s", diff)
	}
	if len(srcs) != len(want) {
		t.Errorf("sources: %d files, want %d", len(srcs), len(want))
	}
	for _, p := range want {
		if _, ok := srcs[p]; !ok {
			t.Errorf("sources lack %s", p)
		}
	}
}

func TestLoadImportCycle(t *testing.T) {
	writeTree(t, map[string]string{
		"a.pol": "import \"b.pol\"\n",
		"b.pol": "\nimport \"a.pol\"\n",
	})
	files, _, ds := loadWith([]string{"a.pol"}, LoadOptions{}, fakeParse)
	want := []string{"b.pol:2:8: import cycle: a.pol -> b.pol -> a.pol"}
	if diff := cmp.Diff(want, diagStrings(ds)); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"b.pol", "a.pol"}, loadedPaths(files)); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}

func TestLoadSelfImport(t *testing.T) {
	writeTree(t, map[string]string{"a.pol": "import \"./a.pol\"\n"})
	_, _, ds := loadWith([]string{"a.pol"}, LoadOptions{}, fakeParse)
	want := []string{"a.pol:1:8: import cycle: a.pol -> a.pol"}
	if diff := cmp.Diff(want, diagStrings(ds)); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
}

func TestLoadMissingFiles(t *testing.T) {
	writeTree(t, map[string]string{"a.pol": "import \"nope.pol\"\n"})
	_, _, ds := loadWith([]string{"a.pol", "missing.pol"}, LoadOptions{}, fakeParse)
	ds.Sort()
	want := []string{
		"a.pol:1:8: cannot import \"nope.pol\": open nope.pol: no such file or directory",
		"missing.pol: open missing.pol: no such file or directory",
	}
	if diff := cmp.Diff(want, diagStrings(ds)); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
	if ds[1].Pos.IsValid() {
		t.Errorf("an unreadable command-line file has a line: %v", ds[1].Pos)
	}
}

func TestLoadSameFileTwiceOnCommandLine(t *testing.T) {
	writeTree(t, map[string]string{"a.pol": ""})
	files, _, ds := loadWith([]string{"a.pol", "./a.pol"}, LoadOptions{}, fakeParse)
	if len(ds) > 0 || len(files) != 1 {
		t.Errorf("got %d files, diagnostics %v; want one file", len(files), ds)
	}
}

// Imports are confined: to policy files, regular files, inside the
// directory tree of the command-line file (or an import root), so that a
// policy cannot make polc read or echo any other file. The diagnostics
// name the path and never show its contents.
func TestLoadImportConfinement(t *testing.T) {
	writeTree(t, map[string]string{
		"repo/main.pol":       "",
		"repo/sub/ok.pol":     "",
		"repo/sub/inner.pol":  "import \"../sub/ok.pol\"\n",
		"outside/secret.pol":  "SECRET",
		"outside/shared.yaml": "",
	})
	if err := os.Symlink("../../outside/secret.pol", "repo/sub/link.pol"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo("repo/fifo.pol", 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", "repo/zero.pol"); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	abs := filepath.Join(wd, "outside", "secret.pol")
	outside := "it is outside " + filepath.Join(wd, "repo") + ", the directory of the file on the command line; imports stay inside it unless --import-root names another directory"
	cases := []struct {
		name, imports string
		opts          LoadOptions
		want          []string
	}{
		{"inside, also through ..", "import \"sub/inner.pol\"\n", LoadOptions{}, []string{}},
		{"dot-dot out", "import \"../outside/secret.pol\"\n", LoadOptions{},
			[]string{`repo/main.pol:1:8: cannot import "../outside/secret.pol": ` + outside}},
		{"absolute", "import \"" + abs + "\"\n", LoadOptions{},
			[]string{`repo/main.pol:1:8: cannot import "` + abs + `": ` + outside}},
		{"a symbolic link out", "import \"sub/link.pol\"\n", LoadOptions{},
			[]string{`repo/main.pol:1:8: cannot import "sub/link.pol": ` + outside}},
		{"not a policy file", "import \"/etc/shadow\"\n", LoadOptions{},
			[]string{`repo/main.pol:1:8: cannot import "/etc/shadow": only policy files (.pol, .yaml, .yml) can be imported`}},
		{"a FIFO", "import \"fifo.pol\"\n", LoadOptions{},
			[]string{`repo/main.pol:1:8: cannot import "fifo.pol": not a regular file but a named pipe`}},
		{"a device behind a link", "import \"zero.pol\"\n", LoadOptions{ImportRoots: []string{"/dev"}},
			[]string{`repo/main.pol:1:8: cannot import "zero.pol": not a regular file but a device`}},
		{"an import root", "import \"../outside/secret.pol\"\nimport \"../outside/shared.yaml\"\n", LoadOptions{ImportRoots: []string{"outside"}}, []string{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := os.WriteFile("repo/main.pol", []byte(c.imports), 0o644); err != nil {
				t.Fatal(err)
			}
			_, srcs, ds := loadWith([]string{"repo/main.pol"}, c.opts, fakeParse)
			if diff := cmp.Diff(c.want, diagStrings(ds)); diff != "" {
				t.Errorf("diagnostics (-want +got):\n%s", diff)
			}
			if len(c.want) > 0 {
				for p, src := range srcs {
					if strings.Contains(string(src), "SECRET") {
						t.Errorf("read %s, which the policy may not import", p)
					}
				}
			}
		})
	}
}
