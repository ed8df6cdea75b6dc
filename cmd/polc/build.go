package main

import (
	"errors"
	"io"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/compiler/lower"
	"github.com/spf13/cobra"
)

func newBuildCmd() *cobra.Command {
	var dir, tarPath string
	var in inputFlags
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
			prog, err := in.compile(c, args)
			if err != nil {
				return err
			}
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
			if err := writeAtomic(tarPath, 0o644, func(w io.Writer) error { return bundle.WriteTar(w, b) }); err != nil {
				return usageError("write bundle: %v", err)
			}
			return nil
		},
	}
	c.Flags().StringVarP(&dir, "output", "o", "", "write the bundle into this directory")
	c.Flags().StringVar(&tarPath, "tar", "", "write the bundle as this tar file")
	addInputFlags(c, &in)
	return c
}
