// Command polc compiles network policy into eBPF bundles, proves their
// verdicts in the kernel, and loads them on hosts.
//
// Exit status: 0 success; 1 a policy or test failure (diagnostics, failing
// tests, denied verdicts are not failures); 2 a usage or environment error,
// such as a file named on the command line that cannot be read.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1 // the policy has errors, or a test failed
	exitUsage   = 2 // bad flags or arguments, or the environment lacks something
)

// exitError carries an exit status out of a command. A nil-message
// exitError exits quietly (the command already printed what it had to).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func failure(format string, args ...any) error {
	return &exitError{code: exitFailure, msg: fmt.Sprintf(format, args...)}
}

func usageError(format string, args ...any) error {
	return &exitError{code: exitUsage, msg: fmt.Sprintf(format, args...)}
}

// quietFailure exits 1 without printing more.
var quietFailure = &exitError{code: exitFailure}

// version is set at link time by the Makefile; bundles record it.
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(stderr, "polc:", ee.msg)
		}
		return ee.code
	}
	// cobra's own errors: unknown commands and flags, wrong argument counts.
	fmt.Fprintln(stderr, "polc:", err)
	return exitUsage
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "polc",
		Short: "Compile network policy to eBPF, prove it in the kernel, load it on hosts",
		Long: `polc compiles network policy (its own language, YAML, or Kubernetes
NetworkPolicy and CiliumNetworkPolicy objects) into a deterministic bundle of
eBPF programs and precomputed map contents, proves the bundle's verdicts in
the kernel with BPF_PROG_TEST_RUN, and loads bundles on hosts.

Exit status: 0 ok, 1 policy or test failure, 2 usage or environment error
(a FILE that cannot be read is one).`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError("%v (see '%s --help')", err, c.CommandPath())
	})
	root.AddCommand(
		newCheckCmd(),
		newFmtCmd(),
		newIRCmd(),
		newBuildCmd(),
		newInspectCmd(),
		newLoadCmd(),
		newAttachCmd(),
		newDetachCmd(),
		newApplyCmd(),
		newUnloadCmd(),
		newStatusCmd(),
		newTestCmd(),
		newExplainCmd(),
		newDiffCmd(),
		newMonitorCmd(),
		newMetricsCmd(),
		newAgentCmd(),
	)
	// Wrong argument counts are usage errors too, and say where help is.
	for _, sub := range root.Commands() {
		if args := sub.Args; args != nil {
			sub.Args = func(c *cobra.Command, a []string) error {
				if err := args(c, a); err != nil {
					return usageError("%s: %v (see '%s --help')", c.Name(), err, c.CommandPath())
				}
				return nil
			}
		}
	}
	return root
}

// outputFlag is the -o flag every command that prints results has.
type outputFlag struct{ format string }

func addOutputFlag(c *cobra.Command, o *outputFlag) {
	c.Flags().StringVarP(&o.format, "output", "o", "text", "output format: text or json")
}

func (o *outputFlag) validate() error {
	if o.format != "text" && o.format != "json" {
		return usageError("unknown output format %q: want text or json", o.format)
	}
	return nil
}

func (o *outputFlag) json() bool { return o.format == "json" }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
