package harness

import (
	"os"
	"regexp"
	"testing"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler"
	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/compiler/eval"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/compiler/lower"
)

// requireBPF skips a test that needs root, unless CI=true, where it fails.
func requireBPF(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatal("BPF tests need root, and CI=true forbids skipping them")
	}
	tb.Skip("BPF tests need root (set CI=true to make this a failure)")
}

// compile loads policy files into the IR and its bundle.
func compile(tb testing.TB, paths ...string) (*ir.Program, *bundle.Bundle) {
	tb.Helper()
	prog, srcs, diags := compiler.Load(paths)
	if diags.HasErrors() || prog == nil {
		tb.Fatalf("compile %v:\n%s", paths, diags.Format(func(f string) []byte { return srcs[f] }))
	}
	b, err := lower.Build(prog, bpf.Object(), lower.Options{Compiler: "test"})
	if err != nil {
		tb.Fatalf("lower: %v", err)
	}
	return prog, b
}

// open compiles and loads policy files into the kernel.
func open(tb testing.TB, paths ...string) (*ir.Program, *eval.Evaluator, *Kernel) {
	tb.Helper()
	requireBPF(tb)
	prog, b := compile(tb, paths...)
	k, err := Open(b)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { k.Close() })
	return prog, eval.New(prog), k
}

func mustRegexp(tb testing.TB, s string) *regexp.Regexp {
	tb.Helper()
	re, err := regexp.Compile(s)
	if err != nil {
		tb.Fatal(err)
	}
	return re
}
