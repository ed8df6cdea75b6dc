package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler"
	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/compiler/lower"
	"github.com/spf13/cobra"
)

func newBuildCmd() *cobra.Command {
	var dir, tarPath string
	c := &cobra.Command{
		Use:   "build FILE... (-o DIR | --tar FILE)",
		Short: "Compile policy files into a deterministic bundle",
		Long: `build compiles policy files into a bundle: a directory (-o DIR) or one tar
file (--tar FILE) holding manifest.json, the BPF object, one file of sorted
records per map, identities.json and rules.json (docs/bundle.md). The same
input always gives the same bytes. Diagnostics go to stderr; with errors, or
when the policy exceeds a map's capacity, nothing is written and the exit
status is 1.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if (dir == "") == (tarPath == "") {
				return usageError("build needs exactly one of -o DIR and --tar FILE")
			}
			prog, srcs, diags := compiler.Load(args)
			if diags.HasErrors() || prog == nil {
				if err := reportDiagnostics(c, &outputFlag{format: "text"}, srcs, diags); err != nil {
					return err
				}
				return quietFailure
			}
			fmt.Fprint(c.ErrOrStderr(), diags.Format(func(f string) []byte { return srcs[f] }))
			b, err := lower.Build(prog, bpf.Object(), lower.Options{Compiler: version})
			if err != nil {
				var ce *lower.CapacityError
				if errors.As(err, &ce) {
					return failure("%v", err)
				}
				return failure("build: %v", err)
			}
			if dir != "" {
				if err := bundle.Write(dir, b); err != nil {
					return usageError("write bundle: %v", err)
				}
				return nil
			}
			f, err := os.Create(tarPath)
			if err != nil {
				return usageError("write bundle: %v", err)
			}
			if err := bundle.WriteTar(f, b); err != nil {
				f.Close()
				return usageError("write bundle: %v", err)
			}
			if err := f.Close(); err != nil {
				return usageError("write bundle: %v", err)
			}
			return nil
		},
	}
	c.Flags().StringVarP(&dir, "output", "o", "", "write the bundle into this directory")
	c.Flags().StringVar(&tarPath, "tar", "", "write the bundle as this tar file")
	return c
}
