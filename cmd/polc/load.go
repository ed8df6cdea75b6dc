package main

import (
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
