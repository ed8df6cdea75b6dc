package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/compiler/ir"
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
status is 1. -o DIR replaces a previous bundle in DIR whole, through a
temporary directory beside it, so a failed write leaves DIR as it was; a
non-empty DIR that holds no bundle is refused. On success it prints the
bundle's root digest (sha256:HEX, over every file through manifest.json):
pass it to load and apply as --digest so a host loads exactly this bundle.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if (dir == "") == (tarPath == "") {
				return usageError("build needs exactly one of -o DIR and --tar FILE")
			}
			prog, err := in.compile(c, nil, args)
			if err != nil {
				return err
			}
			b, err := lowerProgram(prog)
			if err != nil {
				return err
			}
			if dir != "" {
				if err := writeBundleDir(dir, b); err != nil {
					return usageError("write bundle: %v", err)
				}
				return printBuilt(c.OutOrStdout(), dir, b)
			}
			if err := writeAtomic(tarPath, 0o644, func(w io.Writer) error { return bundle.WriteTar(w, b) }); err != nil {
				return usageError("write bundle: %v", err)
			}
			return printBuilt(c.OutOrStdout(), tarPath, b)
		},
	}
	c.Flags().StringVarP(&dir, "output", "o", "", "write the bundle into this directory")
	c.Flags().StringVar(&tarPath, "tar", "", "write the bundle as this tar file")
	addInputFlags(c, &in)
	return c
}

// writeBundle is bundle.Write; tests replace it to fail half-way.
var writeBundle = bundle.Write

// writeBundleDir writes the bundle into a fresh directory next to dir and
// swaps it in with renames, so that a failure half-way leaves dir as it was
// (a previous bundle stays whole, a missing dir stays missing) instead of
// an old manifest next to new files. Like bundle.Write it refuses to
// replace a non-empty directory that holds no bundle.
func writeBundleDir(dir string, b *bundle.Bundle) error {
	dir = filepath.Clean(dir)
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real // replace what a symlink points at, not the link
	}
	ents, err := os.ReadDir(dir)
	exists := err == nil
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case len(ents) > 0:
		if _, err := os.Stat(filepath.Join(dir, bundle.ManifestFile)); err != nil {
			return fmt.Errorf("%s is not empty and holds no bundle: refusing to overwrite it", dir)
		}
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".new-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := writeBundle(tmp, b); err != nil {
		return err
	}
	if !exists {
		return os.Rename(tmp, dir)
	}
	old, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".old-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(old)
	if err := os.Rename(dir, filepath.Join(old, "b")); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		// put the previous bundle back
		_ = os.Rename(filepath.Join(old, "b"), dir)
		return err
	}
	return nil
}

// printBuilt says where the bundle went and its root digest.
func printBuilt(w io.Writer, where string, b *bundle.Bundle) error {
	d, err := b.RootDigest()
	if err != nil {
		return failure("build: %v", err)
	}
	fmt.Fprintf(w, "%s: bundle %s\n", where, d)
	return nil
}

// buildLimits are the map limits build and check lower with; tests lower
// them to reach a limit with a small policy.
var buildLimits lower.Limits

// lowerProgram lowers prog into a bundle, as build does and check does to
// find what only the lowering can (a map beyond its limit), with the same
// error (exit 1).
func lowerProgram(prog *ir.Program) (*bundle.Bundle, error) {
	b, err := lower.Build(prog, bpf.Object(), lower.Options{Compiler: version, Limits: buildLimits})
	if err != nil {
		var ce *lower.CapacityError
		if errors.As(err, &ce) {
			return nil, failure("%v", err)
		}
		return nil, failure("build: %v", err)
	}
	return b, nil
}
