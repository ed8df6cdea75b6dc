package k8s_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/eval"
	"github.com/polc-dev/polc/compiler/lower"
	"github.com/polc-dev/polc/runtime/harness"
)

// TestScenariosKernel runs every cell of every testdata/k8s matrix through
// the kernel programs (BPF_PROG_TEST_RUN, via the harness), which also
// compares each decision with the reference evaluator. It needs root; CI
// (CI=true) must run it.
func TestScenariosKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("BPF tests need root, and CI=true forbids skipping them")
		}
		t.Skip("BPF tests need root (set CI=true to make this a failure)")
	}
	paths, err := filepath.Glob("../../testdata/k8s/*/reach.txt")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no scenarios found: %v", err)
	}
	for _, path := range paths {
		t.Run(filepath.Base(filepath.Dir(path)), func(t *testing.T) {
			prog := compileScenario(t, path)
			b, err := lower.Build(prog, bpf.Object(), lower.Options{Compiler: "test"})
			if err != nil {
				t.Fatalf("lower: %v", err)
			}
			k, err := harness.Open(b)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			defer k.Close()
			results, err := harness.RunTests(prog, eval.New(prog), harness.RunOptions{Kernel: k})
			if err != nil {
				t.Fatal(err)
			}
			failed := 0
			for _, tr := range results {
				for _, sr := range tr.Steps {
					for _, p := range sr.Problems {
						if failed < 20 {
							t.Errorf("%s: %s: step %d: %s", sr.Step.ExpectPos, tr.Test.Name, sr.Index+1, p)
						}
						failed++
					}
				}
			}
			if failed > 20 {
				t.Errorf("... %d problems in all", failed)
			}
			t.Logf("%d cells checked in the kernel", len(results))
		})
	}
}
