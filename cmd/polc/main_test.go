package main

import (
	"bytes"
	"strings"
	"testing"
)

// runPolc runs the CLI in-process and returns its exit status and output.
func runPolc(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestUsageErrorsExit2(t *testing.T) {
	cases := [][]string{
		{"no-such-command"},
		{"check"},                            // missing FILE
		{"check", "--no-such-flag", "x.pol"}, // unknown flag
		{"check", "-o", "xml", "x.pol"},      // bad output format
		{"fmt", "--to", "toml", "x.pol"},
	}
	for _, args := range cases {
		code, _, stderr := runPolc(t, args...)
		if code != exitUsage {
			t.Errorf("polc %s: exit %d, want %d (stderr %q)", strings.Join(args, " "), code, exitUsage, stderr)
		}
		if !strings.HasPrefix(stderr, "polc: ") {
			t.Errorf("polc %s: stderr %q does not start with \"polc: \"", strings.Join(args, " "), stderr)
		}
	}
}

func TestHelpOnEveryCommand(t *testing.T) {
	root := newRootCmd(nil, nil)
	for _, c := range root.Commands() {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		code, stdout, _ := runPolc(t, c.Name(), "--help")
		if code != exitOK {
			t.Errorf("polc %s --help: exit %d", c.Name(), code)
		}
		desc := c.Long
		if desc == "" {
			desc = c.Short
		}
		if !strings.Contains(stdout, "Usage:") || !strings.Contains(stdout, desc) {
			t.Errorf("polc %s --help: output lacks usage or description:\n%s", c.Name(), stdout)
		}
	}
}
