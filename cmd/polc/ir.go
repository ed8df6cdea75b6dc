package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newIRCmd() *cobra.Command {
	var out outputFlag
	var in inputFlags
	c := &cobra.Command{
		Use:   "ir FILE...",
		Short: "Print the checked, normalized IR of policy files",
		Long: `ir compiles policy files into polc's intermediate representation and prints
it in a stable text form (the form golden/ holds). Diagnostics go to stderr;
with errors no IR is printed and the exit status is 1 (with -o json, the
errors are printed on stdout as check -o json prints them).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			prog, err := in.compile(c, &out, args)
			if err != nil {
				return err
			}
			if out.json() {
				return writeJSON(c.OutOrStdout(), prog)
			}
			fmt.Fprint(c.OutOrStdout(), prog.Text())
			return nil
		},
	}
	addOutputFlag(c, &out)
	addInputFlags(c, &in)
	return c
}
