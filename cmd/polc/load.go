package main

import (
	"fmt"

	"github.com/polc-dev/polc/compiler"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
	"github.com/polc-dev/polc/dsl/k8s"
	"github.com/spf13/cobra"
)

// inputFlags are the flags every command that reads policy has.
type inputFlags struct {
	k8s bool // read Kubernetes/Cilium objects instead of polc files
}

func addInputFlags(c *cobra.Command, in *inputFlags) {
	c.Flags().BoolVar(&in.k8s, "k8s", false,
		"read Kubernetes objects (NetworkPolicy, CiliumNetworkPolicy, Pod, Namespace; multi-document YAML or v1 List)")
}

// load compiles the files named on the command line into the IR, from
// polc sources (following imports) or from Kubernetes objects.
func (in *inputFlags) load(paths []string) (*ir.Program, compiler.Sources, dsl.Diagnostics) {
	if !in.k8s {
		return compiler.Load(paths)
	}
	files, contents, diags := k8s.ReadPaths(paths)
	srcs := compiler.Sources(contents)
	if diags.HasErrors() {
		return nil, srcs, diags
	}
	prog, more := compiler.Compile(files, srcs)
	return prog, srcs, append(diags, more...)
}

// compile loads the files and returns the program, after printing any
// warnings to stderr; with errors it prints them and returns quietFailure.
// out is the command's -o flag (nil if it has none): with -o json the
// errors go to stdout as check -o json prints them, so that stdout is
// always JSON.
func (in *inputFlags) compile(c *cobra.Command, out *outputFlag, paths []string) (*ir.Program, error) {
	prog, srcs, diags := in.load(paths)
	return compiled(c, out, prog, srcs, diags)
}

// compiled is compile's second half, for callers that load differently.
func compiled(c *cobra.Command, out *outputFlag, prog *ir.Program, srcs compiler.Sources, diags dsl.Diagnostics) (*ir.Program, error) {
	if out == nil {
		out = &outputFlag{format: "text"}
	}
	if diags.HasErrors() || prog == nil {
		if err := reportDiagnostics(c, out, srcs, diags); err != nil {
			return nil, err
		}
		return nil, quietFailure
	}
	diags.Sort()
	fmt.Fprint(c.ErrOrStderr(), diags.Format(func(f string) []byte { return srcs[f] }))
	return prog, nil
}
