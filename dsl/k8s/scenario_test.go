package k8s_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/polc-dev/polc/compiler"
	"github.com/polc-dev/polc/compiler/eval"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
	"github.com/polc-dev/polc/dsl/k8s"
	"github.com/polc-dev/polc/dsl/k8s/cases"
)

// TestScenarios runs every testdata/k8s scenario (a cluster snapshot, its
// policies and the reachability matrix they must produce) through the
// compiler and the reference evaluator, and checks every cell of every
// matrix: the first packet's verdict and, for reachable cells, that the
// reply passes too.
func TestScenarios(t *testing.T) {
	paths, err := filepath.Glob("../../testdata/k8s/*/reach.txt")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no scenarios found: %v", err)
	}
	for _, path := range paths {
		name := filepath.Base(filepath.Dir(path))
		t.Run(name, func(t *testing.T) {
			prog := compileScenario(t, path)
			ev := eval.New(prog)
			checked := 0
			for _, test := range prog.Tests {
				ct := eval.NewConntrack()
				for _, step := range test.Steps {
					res := ev.Eval(ct, eval.FromIR(step.Packet))
					if step.Expect == nil {
						continue
					}
					checked++
					if res.Verdict != *step.Expect {
						what := "packet"
						if step.Reply {
							what = "reply"
						}
						t.Errorf("%s: %s: %s: want %s, got %s", step.ExpectPos, test.Name, what, *step.Expect, res)
						break // the rest of the test follows from this packet
					}
				}
			}
			if len(prog.Tests) == 0 {
				t.Fatal("the matrix checks nothing")
			}
			t.Logf("%d cells, %d packets checked", len(prog.Tests), checked)
		})
	}
}

// compileScenario reads a matrix file, the Kubernetes files it loads, and
// compiles them with the matrix's cells as tests.
func compileScenario(t *testing.T, path string) *ir.Program {
	t.Helper()
	return compileScenarioWith(t, path, k8s.Options{Placeholders: true}, nil)
}

// compileScenarioWith is compileScenario with reader options, and edit
// (when not nil) applied to each file the matrix loads before reading it.
func compileScenarioWith(t *testing.T, path string, opts k8s.Options, edit func(path string, src []byte) []byte) *ir.Program {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cf, ds := cases.Parse(path, src)
	if len(ds) > 0 {
		t.Fatalf("matrix:\n%s", ds.Format(nil))
	}
	srcs := compiler.Sources{path: src}
	var inputs []k8s.Source
	for _, p := range cf.LoadPaths() {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			b = edit(p, b)
		}
		inputs = append(inputs, k8s.Source{Path: p, Src: b})
		srcs[p] = b
	}
	var svcs *k8s.Services
	opts.Services = &svcs
	files, ds := k8s.ReadFiles(inputs, opts)
	if ds.HasErrors() {
		t.Fatalf("reading:\n%s", ds.Format(func(f string) []byte { return srcs[f] }))
	}
	tests, ds := svcs.TranslateTests(cf.Tests())
	if len(ds) > 0 {
		t.Fatalf("translating to Services' backends:\n%s", ds.Format(func(f string) []byte { return srcs[f] }))
	}
	tf := &dsl.File{Path: path}
	for _, test := range tests {
		tf.Decls = append(tf.Decls, test)
	}
	prog, cds := compiler.Compile(append(files, tf), srcs)
	if cds.HasErrors() {
		t.Fatalf("compiling:\n%s", cds.Format(func(f string) []byte { return srcs[f] }))
	}
	return prog
}
