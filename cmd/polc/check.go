package main

import (
	"fmt"
	"strings"

	"github.com/polc-dev/polc/compiler"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
	"github.com/spf13/cobra"
)

func newCheckCmd() *cobra.Command {
	var out outputFlag
	in := inputFlags{placeholders: true}
	var quiet bool
	c := &cobra.Command{
		Use:   "check FILE...",
		Short: "Report every error and warning in policy files",
		Long: `check parses and checks policy files (.pol, or .yaml/.yml) and everything
they import, and prints every diagnostic as file:line:col with the source
line. It exits 1 if there is any error; warnings alone exit 0. A policy
without errors is also lowered, as build would, so that what only the
lowering finds (a map beyond its limit) fails check as it fails build.
On success it prints one line of what it read (files, Kubernetes objects,
endpoints, policies, tests) unless -q.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			if err := in.checkInputs(c, args); err != nil {
				return err
			}
			prog, srcs, diags := in.load(args)
			if prog != nil && !diags.HasErrors() {
				if _, err := lowerProgram(prog); err != nil {
					// the policy as a whole: no line to point at
					diags.Errorf(dsl.Pos{File: args[0]}, "%s (polc build refuses it too)", strings.TrimPrefix(err.Error(), "build: "))
				}
			}
			if err := reportDiagnostics(c, &out, srcs, diags); err != nil {
				return err
			}
			if !quiet && !out.json() {
				fmt.Fprintln(c.OutOrStdout(), checkSummary(&in, len(srcs), prog))
			}
			return nil
		},
	}
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "print nothing on success but warnings")
	addOutputFlag(c, &out)
	addInputFlags(c, &in)
	return c
}

// jsonDiagnostic is how -o json prints a diagnostic.
type jsonDiagnostic struct {
	File     string `json:"file"`
	Line     int    `json:"line"`
	Col      int    `json:"col"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
}

// reportDiagnostics prints diags (to stderr as text, to stdout as JSON) and
// returns a failure if any is an error.
func reportDiagnostics(c *cobra.Command, out *outputFlag, srcs compiler.Sources, diags dsl.Diagnostics) error {
	diags.Sort()
	if out.json() {
		list := make([]jsonDiagnostic, 0, len(diags))
		for _, d := range diags {
			list = append(list, jsonDiagnostic{d.Pos.File, d.Pos.Line, d.Pos.Col, d.Severity.String(), d.Msg})
		}
		if err := writeJSON(c.OutOrStdout(), map[string]any{"diagnostics": list}); err != nil {
			return err
		}
	} else {
		fmt.Fprint(c.ErrOrStderr(), diags.Format(func(f string) []byte { return srcs[f] }))
	}
	if diags.HasErrors() {
		return quietFailure
	}
	return nil
}

// checkSummary is check's line on success: what it read.
func checkSummary(in *inputFlags, files int, prog *ir.Program) string {
	var parts []string
	if in.k8s {
		parts = append(parts, plural(in.objects, "object"))
	}
	eps := plural(len(prog.Endpoints), "endpoint")
	remote := 0
	for _, e := range prog.Endpoints {
		if e.Remote {
			remote++
		}
	}
	if remote > 0 {
		eps += fmt.Sprintf(" (%d remote)", remote)
	}
	parts = append(parts, eps, plural(len(prog.Policies), "policy"))
	if len(prog.Tests) > 0 {
		parts = append(parts, plural(len(prog.Tests), "test"))
	}
	return fmt.Sprintf("ok: read %s: %s", plural(files, "file"), strings.Join(parts, ", "))
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	if strings.HasSuffix(what, "y") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(what, "y"))
	}
	return fmt.Sprintf("%d %ss", n, what)
}
