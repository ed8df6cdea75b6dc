package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/polc-dev/polc/runtime"
)

func newInspectCmd() *cobra.Command {
	var out outputFlag
	c := &cobra.Command{
		Use:   "inspect BUNDLE",
		Short: "Verify a bundle and print everything in it",
		Long: `inspect reads a bundle (a directory or a tar file), verifies every digest
and record, and prints its manifest, programs, tail-call layout, constants,
identities with their labels or prefixes, every map entry decoded, and the
rules. -o json prints the same for tools. A corrupt bundle exits 1, and so
does one that load would refuse before the verifier: a constant, map or
program its object lacks, a tail-call slot beyond its program array, an
unknown hook.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			b, err := readBundle(args[0])
			if err != nil {
				return err
			}
			if err := runtime.Validate(b); err != nil {
				return failure("%s: the bundle would not load: %v", args[0], err)
			}
			if out.json() {
				return writeJSON(c.OutOrStdout(), b.Decode())
			}
			fmt.Fprint(c.OutOrStdout(), b.Text())
			return nil
		},
	}
	addOutputFlag(c, &out)
	return c
}
