package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/polc-dev/polc/compiler"
	"github.com/polc-dev/polc/dsl"
	"github.com/spf13/cobra"
)

func newFmtCmd() *cobra.Command {
	var write bool
	var to string
	c := &cobra.Command{
		Use:   "fmt [-w] FILE...",
		Short: "Print policy files in canonical form",
		Long: `fmt prints each file in canonical form: the policy language for .pol files,
YAML for .yaml/.yml files. Formatting is idempotent and keeps the meaning:
parsing the output gives the same AST as parsing the input.

With -w the files are rewritten in place (only when they change). With
--to pol or --to yaml, a file is printed in the other syntax instead.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if to != "" && to != "pol" && to != "yaml" {
				return usageError("unknown --to %q: want pol or yaml", to)
			}
			if write && to != "" {
				return usageError("-w and --to cannot be used together")
			}
			// An unreadable file stops fmt before it prints or rewrites any.
			if err := checkInputs(args...); err != nil {
				return err
			}
			failed, printedYAML := false, false
			for _, path := range args {
				src, err := os.ReadFile(path)
				if err != nil {
					return inputError(path, err)
				}
				isYAML := compiler.IsYAML(path)
				var f *dsl.File
				var diags dsl.Diagnostics
				if isYAML {
					f, diags = dsl.ParseYAML(path, src)
				} else {
					f, diags = dsl.Parse(path, src)
				}
				if diags.HasErrors() {
					diags.Sort()
					fmt.Fprint(c.ErrOrStderr(), diags.Format(func(string) []byte { return src }))
					failed = true
					continue
				}
				var outYAML bool
				switch to {
				case "":
					outYAML = isYAML
				case "yaml":
					outYAML = true
				}
				var formatted []byte
				if outYAML {
					formatted = dsl.FormatYAML(f)
				} else {
					formatted = dsl.Format(f)
				}
				if !write {
					// Several YAML files printed one after the other are
					// documents of one stream, not one map with every key
					// twice.
					if outYAML && printedYAML {
						io.WriteString(c.OutOrStdout(), "---\n")
					}
					printedYAML = printedYAML || outYAML
					c.OutOrStdout().Write(formatted)
					continue
				}
				if bytes.Equal(formatted, src) {
					continue
				}
				info, err := os.Stat(path)
				if err != nil {
					return inputError(path, err)
				}
				if err := writeAtomic(path, info.Mode().Perm(), func(w io.Writer) error {
					_, err := w.Write(formatted)
					return err
				}); err != nil {
					return usageError("%v", err)
				}
			}
			if failed {
				return quietFailure
			}
			return nil
		},
	}
	c.Flags().BoolVarP(&write, "write", "w", false, "rewrite files in place")
	c.Flags().StringVar(&to, "to", "", "print in another syntax: pol or yaml")
	return c
}

// writeAtomic replaces path with what write produces, through a temporary
// file and a rename, so a failure or crash never leaves a half-written file.
// A symlink is followed: the file it points at is replaced, not the link.
func writeAtomic(path string, perm os.FileMode, write func(io.Writer) error) error {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
