package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/polc-dev/polc/compiler/diff"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
	"github.com/spf13/cobra"
)

func newDiffCmd() *cobra.Command {
	var out outputFlag
	in := inputFlags{placeholders: true}
	var gitRev, failOn string
	var quiet bool
	c := &cobra.Command{
		Use:   "diff OLD... -- NEW...  |  diff --git REV FILE...",
		Short: "Show which flows a policy change opens and which it closes",
		Long: `diff compiles two versions of a policy and prints every change in what
they allow, exactly (not by sampling): for each endpoint and direction, the
remotes (endpoints, CIDRs, the rest of the world) and protocols/ports that
went from deny to allow (opened) and from allow to deny (closed), and the
rule that decides on each side (file:line).

The old version's files come before --, the new one's after. With --git REV
the old version is the files as they are at git revision REV (the whole
tree of REV, so imports resolve as they did) and the new one the working
tree's: polc diff --git origin/main policy/*.pol.

Each endpoint is judged at its own hooks, as the datapath does: a flow
between two endpoints shows at the sender's egress and at the receiver's
ingress separately. An endpoint is compared by name; one in only one
version has no hooks in the other (everything passes there). Endpoints
without addresses (Kubernetes manifests) get placeholder addresses as in
check.

Exit status: 0 nothing changes, 1 reachability changes (with --fail-on
opened: only when a flow opens; closed: only when one closes), 2 errors in
either version or usage.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			if failOn != "any" && failOn != "opened" && failOn != "closed" {
				return usageError("--fail-on %q: want any, opened or closed", failOn)
			}
			oldPaths, newPaths, err := diffSides(c, args, gitRev)
			if err != nil {
				return err
			}
			var relabel func(string) string
			if gitRev != "" {
				tree, cleanup, err := gitTree(gitRev)
				if err != nil {
					return err
				}
				defer cleanup()
				if oldPaths, err = atRevision(tree.dir, tree.top, newPaths); err != nil {
					return err
				}
				relabel = func(f string) string {
					if rel, err := filepath.Rel(tree.dir, f); err == nil && !strings.HasPrefix(rel, "..") {
						return gitRev + ":" + filepath.ToSlash(rel)
					}
					return f
				}
			}
			oldProg, err := diffLoad(c, &in, &out, oldPaths, "old", quiet)
			if err != nil {
				return err
			}
			newProg, err := diffLoad(c, &in, &out, newPaths, "new", quiet)
			if err != nil {
				return err
			}
			if relabel != nil {
				for _, r := range oldProg.Rules {
					r.Pos.File = relabel(r.Pos.File)
				}
			}
			res := diff.Compare(oldProg, newProg)
			if out.json() {
				if err := writeJSON(c.OutOrStdout(), diffJSON(res)); err != nil {
					return err
				}
			} else {
				printDiff(c.OutOrStdout(), res)
			}
			switch {
			case failOn == "opened" && res.Opened() > 0, failOn == "closed" && res.Closed() > 0, failOn == "any" && len(res.Changes) > 0:
				return quietFailure
			}
			return nil
		},
	}
	c.Flags().StringVar(&gitRev, "git", "", "compare the FILEs with themselves at git revision `REV`")
	c.Flags().StringVar(&failOn, "fail-on", "any", "exit 1 on `any` change, or only when a flow is opened or closed")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "print no warnings (errors still)")
	addOutputFlag(c, &out)
	addInputFlags(c, &in)
	return c
}

// diffSides splits the arguments at -- into the old and the new files.
func diffSides(c *cobra.Command, args []string, gitRev string) (oldPaths, newPaths []string, err error) {
	dash := c.ArgsLenAtDash()
	if gitRev != "" {
		if dash >= 0 {
			return nil, nil, usageError("diff --git compares FILEs with themselves at REV: give no --")
		}
		return nil, args, nil
	}
	if dash < 0 {
		return nil, nil, usageError("diff needs the old files, --, then the new files (or --git REV FILE...)")
	}
	oldPaths, newPaths = args[:dash], args[dash:]
	if len(oldPaths) == 0 || len(newPaths) == 0 {
		return nil, nil, usageError("diff needs files on both sides of --")
	}
	stdin := 0
	for _, p := range args {
		if p == "-" {
			stdin++
		}
	}
	if stdin > 1 {
		return nil, nil, usageError("diff reads standard input (-) once: on one side only")
	}
	return oldPaths, newPaths, nil
}

// diffLoad compiles one side. Errors in it are printed and exit 2: exit 1
// means the policies differ.
func diffLoad(c *cobra.Command, in *inputFlags, out *outputFlag, paths []string, which string, quiet bool) (*ir.Program, error) {
	if len(paths) == 0 {
		return &ir.Program{}, nil // no file of the side exists (--git: all new)
	}
	if err := in.checkInputs(c, paths); err != nil {
		return nil, err
	}
	prog, srcs, diags := in.load(paths)
	if diags.HasErrors() || prog == nil {
		if err := reportDiagnostics(c, out, srcs, diags); err != nil && !errors.Is(err, quietFailure) {
			var ee *exitError
			if !errors.As(err, &ee) {
				return nil, err
			}
		}
		return nil, &exitError{code: exitUsage, msg: fmt.Sprintf("the %s policy has errors", which)}
	}
	if !quiet {
		diags.Sort()
		fmt.Fprint(c.ErrOrStderr(), diags.Format(func(f string) []byte { return srcs[f] }))
	}
	return prog, nil
}

// revTree is a git revision's tree written out to a directory.
type revTree struct {
	dir string // where it is written
	top string // the repository's top directory (the tree's root)
}

// gitTree writes the tree of rev (of the repository around the working
// directory) to a temporary directory.
func gitTree(rev string) (*revTree, func(), error) {
	if strings.HasPrefix(rev, "-") {
		return nil, nil, usageError("--git %q: not a revision", rev)
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return nil, nil, usageError("--git: not inside a git repository (%v)", gitError(err))
	}
	topDir := strings.TrimSpace(string(top))
	var arch bytes.Buffer
	// from the top: in a subdirectory git archives that subdirectory
	cmd := exec.Command("git", "-C", topDir, "archive", "--format=tar", rev)
	cmd.Stdout = &arch
	if err := cmd.Run(); err != nil {
		return nil, nil, usageError("--git %s: %v", rev, gitError(err))
	}
	dir, err := os.MkdirTemp("", "polc-diff-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	if err := untar(&arch, dir); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("--git %s: %w", rev, err)
	}
	return &revTree{dir: dir, top: topDir}, cleanup, nil
}

func gitError(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return strings.TrimSpace(string(ee.Stderr))
	}
	return err.Error()
}

// maxTreeBytes bounds what --git writes out of a revision.
const maxTreeBytes = 1 << 30

// untar writes the regular files and directories of a tar stream under
// dir, refusing names that would leave it.
func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(filepath.FromSlash(h.Name))
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, ".."+string(filepath.Separator)) {
			return fmt.Errorf("archive entry %q leaves the tree", h.Name)
		}
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if total += h.Size; total > maxTreeBytes {
				return fmt.Errorf("the revision's tree is larger than %d bytes", maxTreeBytes)
			}
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, io.LimitReader(tr, h.Size))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}

// atRevision maps the working tree's files to the revision's copies under
// dir; files the revision lacks are left out (new files).
func atRevision(dir, top string, paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		if p == "-" {
			return nil, usageError("diff --git compares files: not standard input")
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, err
		}
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			abs = real
		}
		topReal := top
		if real, err := filepath.EvalSymlinks(top); err == nil {
			topReal = real
		}
		rel, err := filepath.Rel(topReal, abs)
		if err != nil || strings.HasPrefix(rel, "..") {
			return nil, usageError("--git: %s is outside the repository %s", p, top)
		}
		old := filepath.Join(dir, rel)
		if _, err := os.Stat(old); err == nil {
			out = append(out, old)
		}
	}
	return out, nil
}

// printDiff prints the changes, one block each, and a summary line.
func printDiff(w io.Writer, res *diff.Result) {
	for _, c := range res.Changes {
		kind := "closed"
		if c.Opened {
			kind = "opened"
		}
		subjects, remotes := strings.Join(c.Subjects, ", "), remotesText(c.Remotes)
		flow := subjects + " → " + remotes
		if c.Dir == dsl.Ingress {
			flow = remotes + " → " + subjects
		}
		fmt.Fprintf(w, "%s  %s  %s\n", kind, flow, protoText(c.Proto, c.Lo, c.Hi))
		at := subjects
		if len(c.Subjects) > 1 {
			at = "each"
		}
		fmt.Fprintf(w, "        at the %s of %s: was %s, now %s\n", c.Dir, at, decisionText(c.Old), decisionText(c.New))
	}
	switch {
	case len(res.Changes) == 0:
		fmt.Fprintln(w, "no change in what the policy allows")
	default:
		fmt.Fprintf(w, "%d opened, %d closed\n", res.Opened(), res.Closed())
	}
}

func remotesText(rs []diff.Remote) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, remoteText(r))
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func remoteText(r diff.Remote) string {
	fam := map[int]string{0: "", 4: " (IPv4)", 6: " (IPv6)"}[r.Family]
	switch {
	case r.Any:
		return "any" + fam
	case r.World:
		return "world" + fam
	case r.Endpoint != "" && r.Only != "":
		return fmt.Sprintf("%s%s (only in the %s policy)", r.Endpoint, fam, r.Only)
	case r.Endpoint != "":
		return r.Endpoint + fam
	}
	name := r.Prefix.String()
	if r.Prefix.Bits() == 0 {
		name = "the rest of " + name
	}
	switch n := len(r.Except); {
	case n == 0:
		return name
	case r.Prefix.Bits() == 0:
		return fmt.Sprintf("%s (outside %d prefixes)", name, n)
	case n <= 3:
		var ex []string
		for _, x := range r.Except {
			ex = append(ex, x.String())
		}
		return name + " except " + strings.Join(ex, ", ")
	default:
		return fmt.Sprintf("%s except %d prefixes", name, n)
	}
}

func protoText(p diff.Proto, lo, hi uint16) string {
	if p.Other {
		if len(p.Except) == 0 {
			return "any protocol"
		}
		var names []string
		for _, x := range p.Except {
			names = append(names, x.String())
		}
		return "protocols other than " + strings.Join(names, ", ")
	}
	switch {
	case p.HasPorts() && lo == 0 && hi == 0xffff:
		return p.String()
	case p.HasPorts() && lo == hi:
		return fmt.Sprintf("%s/%d", p, lo)
	case p.HasPorts():
		return fmt.Sprintf("%s/%d-%d", p, lo, hi)
	case !p.IsICMP() || (lo == 0 && hi == 0xffff):
		return p.String()
	case lo&0xff == 0 && hi&0xff == 0xff && lo>>8 == hi>>8:
		return fmt.Sprintf("%s type %d", p, lo>>8)
	case lo&0xff == 0 && hi&0xff == 0xff:
		return fmt.Sprintf("%s types %d-%d", p, lo>>8, hi>>8)
	case lo>>8 == hi>>8 && lo == hi:
		return fmt.Sprintf("%s type %d code %d", p, lo>>8, lo&0xff)
	case lo>>8 == hi>>8:
		return fmt.Sprintf("%s type %d codes %d-%d", p, lo>>8, lo&0xff, hi&0xff)
	}
	return fmt.Sprintf("%s type/code %d/%d-%d/%d", p, lo>>8, lo&0xff, hi>>8, hi&0xff)
}

func decisionText(d diff.Decision) string {
	switch {
	case d.Absent:
		return "no such endpoint (no hooks: allowed)"
	case d.Rule != nil:
		verb := "denied"
		if d.Allow {
			verb = "allowed"
		}
		tier := ""
		if d.Rule.Tier != dsl.TierNone {
			tier = fmt.Sprintf(" (%s tier, priority %d)", d.Rule.Tier, d.Rule.Priority)
		}
		return fmt.Sprintf("%s by %s:%d%s: %s", verb, d.Rule.Pos.File, d.Rule.Pos.Line, tier, d.Rule.Text)
	}
	return ir.ReservedName(d.Reserved)
}

// The JSON form of a diff.
type (
	jsonDiff struct {
		Changes []jsonChange `json:"changes"`
		Opened  int          `json:"opened"`
		Closed  int          `json:"closed"`
	}
	jsonChange struct {
		Change    string           `json:"change"` // opened or closed
		Direction string           `json:"direction"`
		Subjects  []string         `json:"subjects"`
		Remotes   []jsonRemote     `json:"remotes"`
		Protocol  string           `json:"protocol"` // a name, or "other"
		Except    []string         `json:"except_protocols,omitempty"`
		Ports     *[2]uint16       `json:"ports,omitempty"`
		ICMP      *[2][2]uint8     `json:"icmp,omitempty"` // [[type, code], [type, code]]
		Old       diffJSONDecision `json:"old"`
		New       diffJSONDecision `json:"new"`
		Text      string           `json:"text"`
	}
	jsonRemote struct {
		Endpoint string   `json:"endpoint,omitempty"`
		CIDR     string   `json:"cidr,omitempty"`
		Except   []string `json:"except,omitempty"`
		World    bool     `json:"world,omitempty"` // every address no endpoint owns
		Any      bool     `json:"any,omitempty"`   // every address
		Family   int      `json:"family,omitempty"`
		Only     string   `json:"only_in,omitempty"`
	}
	diffJSONDecision struct {
		Verdict string `json:"verdict"` // allow or deny
		Rule    string `json:"rule"`    // a rule's text, or default-deny, default-allow, no-endpoint
		File    string `json:"file,omitempty"`
		Line    int    `json:"line,omitempty"`
		Policy  string `json:"policy,omitempty"`
		// Tier and Priority: the rule's policy's, for a tiered rule.
		Tier     string `json:"tier,omitempty"`
		Priority *int   `json:"priority,omitempty"`
	}
)

func diffJSON(res *diff.Result) jsonDiff {
	out := jsonDiff{Changes: []jsonChange{}, Opened: res.Opened(), Closed: res.Closed()}
	for _, c := range res.Changes {
		jc := jsonChange{
			Change: "closed", Direction: c.Dir.String(), Subjects: c.Subjects,
			Protocol: c.Proto.String(), Old: diffDecisionJSON(c.Old), New: diffDecisionJSON(c.New),
			Text: protoText(c.Proto, c.Lo, c.Hi),
		}
		if c.Opened {
			jc.Change = "opened"
		}
		switch {
		case c.Proto.Other:
			jc.Protocol = "other"
			for _, x := range c.Proto.Except {
				jc.Except = append(jc.Except, x.String())
			}
		case c.Proto.HasPorts():
			jc.Ports = &[2]uint16{c.Lo, c.Hi}
		case c.Proto.IsICMP() && !(c.Lo == 0 && c.Hi == 0xffff):
			jc.ICMP = &[2][2]uint8{{uint8(c.Lo >> 8), uint8(c.Lo)}, {uint8(c.Hi >> 8), uint8(c.Hi)}}
		}
		for _, r := range c.Remotes {
			jr := jsonRemote{Endpoint: r.Endpoint, World: r.World, Any: r.Any, Family: r.Family, Only: r.Only}
			if r.Endpoint == "" && !r.World && !r.Any {
				jr.CIDR = r.Prefix.String()
				for _, x := range r.Except {
					jr.Except = append(jr.Except, x.String())
				}
			}
			jc.Remotes = append(jc.Remotes, jr)
		}
		out.Changes = append(out.Changes, jc)
	}
	return out
}

func diffDecisionJSON(d diff.Decision) diffJSONDecision {
	j := diffJSONDecision{Verdict: "deny"}
	if d.Allow {
		j.Verdict = "allow"
	}
	switch {
	case d.Absent:
		j.Rule = "no-endpoint"
	case d.Rule != nil:
		j.Rule, j.File, j.Line, j.Policy = d.Rule.Text, d.Rule.Pos.File, d.Rule.Pos.Line, d.Rule.Policy
		if d.Rule.Tier != dsl.TierNone {
			prio := d.Rule.Priority
			j.Tier, j.Priority = d.Rule.Tier.String(), &prio
		}
	default:
		j.Rule = ir.ReservedName(d.Reserved)
	}
	return j
}
