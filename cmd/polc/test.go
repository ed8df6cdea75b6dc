package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler"
	"github.com/polc-dev/polc/compiler/eval"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/compiler/lower"
	"github.com/polc-dev/polc/dsl"
	"github.com/polc-dev/polc/dsl/k8s"
	"github.com/polc-dev/polc/dsl/k8s/cases"
	"github.com/polc-dev/polc/runtime/harness"
)

func newTestCmd() *cobra.Command {
	var (
		out       outputFlag
		in        harnessInputs
		runRE     string
		reference bool
	)
	c := &cobra.Command{
		Use:   "test FILE...",
		Short: "Run a policy's tests through the kernel programs and the reference evaluator",
		Long: `test compiles policy files, loads the bundle into the kernel without pinning or
attaching it, and runs every packet of every test block through the
datapath's programs with BPF_PROG_TEST_RUN: the source's egress hook, then
the destination's ingress hook (after the XDP prefilter for a source that is
not a local endpoint). The steps of one test share connection tracking, so
replies and established flows are tested; each test starts on an empty host.
Every packet also goes through the reference evaluator, and the kernel's
verdict and deciding rule must agree with it at every hook.

The table shows, for each packet: the test, the step, the expected verdict,
the kernel's and the reference's verdicts, and the deciding rule (file:line,
or a reserved reason such as default-deny or established). The exit status
is 1 if any test fails or the kernel and the reference disagree on any
packet, 2 if the programs cannot be loaded (loading needs root; --reference
runs the tests on the reference evaluator alone).

On a node's bundle (--k8s --node NAME, or files with remote endpoints) a
packet meets this node's hooks only: one from a remote endpoint arrives
at the local destination's ingress, one to a remote endpoint leaves
through the local sender's egress. A packet between two remote endpoints
is another node's business: RESULT says "elsewhere" and its expectation
is not checked. A packet expected to be denied that one end's remote
endpoint may deny on its own node, and this node's hook passes, says
"remote half". Neither is a failure.

--k8s reads the files as Kubernetes objects; --cases FILE adds the tests of a
reachability matrix (docs/testing.md) and implies --k8s. A matrix column may
be a Service (svc/NS/NAME or a cluster IP): each cell is then a test per
backend, translated at the source (docs/kubernetes.md, "Services").`,
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			var re *regexp.Regexp
			if runRE != "" {
				var err error
				if re, err = regexp.Compile(runRE); err != nil {
					return usageError("--run: %v", err)
				}
			}
			prog, err := in.load(c, &out, args)
			if err != nil {
				return err
			}
			if len(prog.Tests) == 0 {
				fmt.Fprintln(c.ErrOrStderr(), "polc: no tests in", strings.Join(args, " "))
				if out.json() {
					return writeHarnessJSON(c.OutOrStdout(), testReportJSON(prog, nil, false))
				}
				return nil
			}
			var k *harness.Kernel
			if !reference {
				if k, err = openKernel(prog); err != nil {
					return err
				}
				defer k.Close()
			}
			res, err := harness.RunTests(prog, eval.New(prog), harness.RunOptions{Kernel: k, Run: re})
			if err != nil {
				// the kernel could not be asked: an environment error
				return usageError("%v", err)
			}
			if re != nil && len(res) == 0 {
				fmt.Fprintf(c.ErrOrStderr(), "polc: no test matches --run %q\n", runRE)
			}
			switch {
			case out.json():
				err = writeHarnessJSON(c.OutOrStdout(), testReportJSON(prog, res, k != nil))
			case len(res) > 0:
				err = writeTestTable(c.OutOrStdout(), prog, res, k != nil)
			}
			if err != nil {
				return err
			}
			for i := range res {
				if !res[i].OK() {
					return quietFailure
				}
			}
			return nil
		},
	}
	addOutputFlag(c, &out)
	in.addFlags(c)
	c.Flags().StringVar(&runRE, "run", "", "run only the tests whose names match this regular expression")
	c.Flags().BoolVar(&reference, "reference", false, "run the tests on the reference evaluator alone (no BPF, no root needed)")
	return c
}

// harnessInputs are the input flags of test and explain: --k8s, as every
// command that reads policy has, and --cases.
type harnessInputs struct {
	inputFlags
	cases string
}

func (in *harnessInputs) addFlags(c *cobra.Command) {
	addInputFlags(c, &in.inputFlags)
	c.Flags().StringVar(&in.cases, "cases", "", "add the tests of this reachability matrix file (implies --k8s)")
}

// load checks and compiles the inputs, printing diagnostics to stderr;
// errors make it return a quiet failure.
func (in *harnessInputs) load(c *cobra.Command, out *outputFlag, args []string) (*ir.Program, error) {
	if len(args) == 0 && in.cases == "" {
		return nil, usageError("%s needs at least one FILE", c.Name())
	}
	inputs := args
	if in.cases != "" {
		inputs = append([]string{in.cases}, args...)
	}
	if in.cases != "" {
		in.k8s = true // --cases implies --k8s
	}
	if err := in.checkInputs(c, inputs); err != nil {
		return nil, err
	}
	var (
		prog  *ir.Program
		srcs  compiler.Sources
		diags dsl.Diagnostics
	)
	if in.cases != "" {
		in.placeholders = true
		prog, srcs, diags = loadCases(in.cases, args, in.k8sOptions())
		if prog != nil {
			prog.DropTunnels = in.dropTunnels
		}
	} else {
		in.placeholders = true
		prog, srcs, diags = in.inputFlags.load(args)
	}
	return compiled(c, out, prog, srcs, diags)
}

// loadCases reads a reachability matrix, the Kubernetes files it loads and
// those on the command line, and compiles them with the matrix's cells as
// tests.
func loadCases(casesPath string, paths []string, opt k8s.Options) (*ir.Program, compiler.Sources, dsl.Diagnostics) {
	srcs := compiler.Sources{}
	var diags dsl.Diagnostics
	src, err := os.ReadFile(casesPath)
	if err != nil {
		diags.Errorf(dsl.Pos{File: casesPath}, "%v", err)
		return nil, srcs, diags
	}
	srcs[casesPath] = src
	cf, ds := cases.Parse(casesPath, src)
	diags = append(diags, ds...)
	if ds.HasErrors() {
		return nil, srcs, diags
	}
	if opt.Services == nil {
		opt.Services = new(*k8s.Services)
	}
	files, contents, ds := k8s.ReadPaths(append(cf.LoadPaths(), paths...), opt)
	for p, b := range contents {
		srcs[p] = b
	}
	diags = append(diags, ds...)
	if ds.HasErrors() {
		return nil, srcs, diags
	}
	// Cells whose destination is a Service test its backends.
	tests, ds := (*opt.Services).TranslateTests(cf.Tests())
	diags = append(diags, ds...)
	if ds.HasErrors() {
		return nil, srcs, diags
	}
	tf := &dsl.File{Path: cf.Path}
	for _, t := range tests {
		tf.Decls = append(tf.Decls, t)
	}
	prog, ds := compiler.Compile(append(files, tf), srcs)
	return prog, srcs, append(diags, ds...)
}

// openKernel builds the program's bundle and loads it for testing. A host
// that cannot load BPF is an environment error (exit 2) with a hint.
func openKernel(prog *ir.Program) (*harness.Kernel, error) {
	b, err := lower.Build(prog, bpf.Object(), lower.Options{Compiler: version})
	if err != nil {
		return nil, failure("build: %v", err)
	}
	k, err := harness.Open(b)
	if errors.Is(err, harness.ErrPrivilege) {
		return nil, usageError("cannot load BPF programs: this needs root (CAP_BPF and CAP_NET_ADMIN);\n"+
			"  run as root, or add --reference to run the tests on the reference evaluator alone\n  (%v)", err)
	}
	if err != nil {
		return nil, usageError("%v\n  (--reference uses the reference evaluator alone)", err)
	}
	return k, nil
}

// stepName is a step's number, and "reply" for replies.
func stepName(s *harness.StepResult) string {
	n := fmt.Sprint(s.Index + 1)
	if s.Step.Reply {
		n += " reply"
	}
	return n
}

func writeTestTable(w io.Writer, prog *ir.Program, res []harness.TestResult, kernel bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TEST\tSTEP\tEXPECT\tKERNEL\tREFERENCE\tRULE\tRESULT")
	packets, failedPackets, failedTests, elsewhere, remoteHalf := 0, 0, 0, 0, 0
	for i := range res {
		tr := &res[i]
		if !tr.OK() {
			failedTests++
		}
		for j := range tr.Steps {
			s := &tr.Steps[j]
			packets++
			expect, kv, result := "-", "-", "ok"
			if s.Step.Expect != nil {
				expect = s.Step.Expect.String()
			}
			if s.Kernel != nil {
				kv = s.Kernel.Verdict.String()
			}
			switch {
			case !s.OK():
				result = "FAIL"
				failedPackets++
			case s.Elsewhere:
				result = "elsewhere"
				elsewhere++
			case s.RemoteHalf:
				result = "remote half"
				remoteHalf++
			}
			rule := harness.RuleSource(prog, s.Reference.Rule)
			if s.Kernel != nil && s.Kernel.Rule != s.Reference.Rule {
				rule += " (kernel: " + harness.RuleSource(prog, s.Kernel.Rule) + ")"
			}
			if a := s.Reference.Audit; a != 0 {
				rule += "; audit: would be denied by " + harness.RuleSource(prog, a)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", tr.Test.Name, stepName(s), expect, kv,
				s.Reference.Verdict, rule, result)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for i := range res {
		tr := &res[i]
		for j := range tr.Steps {
			s := &tr.Steps[j]
			if s.OK() {
				continue
			}
			fmt.Fprintf(w, "\n--- FAIL: %s, step %s (%s:%d)\n", tr.Test.Name, stepName(s), s.Step.Pos.File, s.Step.Pos.Line)
			fmt.Fprintf(w, "    packet:    %s\n", harness.FormatPacket(s.Step.Packet))
			for _, p := range s.Problems {
				fmt.Fprintf(w, "    %s\n", p)
			}
			for _, p := range s.Reference.Points {
				fmt.Fprintf(w, "    reference: %s %s: %s (%s)\n", p.Subject.Name, p.Dir, p.Verdict, ruleDetail(prog, p.Rule))
			}
			if s.Kernel != nil {
				for _, p := range s.Kernel.Points {
					fmt.Fprintf(w, "    kernel:    %s %s hook: %s (%s)\n", p.Subject, p.Dir, p.Verdict, ruleDetail(prog, p.Rule))
				}
				if s.Kernel.Prefiltered {
					fmt.Fprintf(w, "    kernel:    dropped by the XDP prefilter\n")
				}
			}
		}
	}
	what := "the reference evaluator alone (--reference)"
	if kernel {
		what = "the kernel and the reference evaluator"
	}
	fmt.Fprintln(w)
	if failedTests == 0 {
		fmt.Fprintf(w, "ok: %d tests, %d packets, on %s\n", len(res), packets, what)
	} else {
		fmt.Fprintf(w, "FAIL: %d of %d tests failed (%d of %d packets), on %s\n", failedTests, len(res), failedPackets, packets, what)
	}
	if elsewhere > 0 {
		fmt.Fprintf(w, "elsewhere: %d packets are between remote endpoints, no hook of this node sees them: other nodes' bundles decide them\n", elsewhere)
	}
	if remoteHalf > 0 {
		fmt.Fprintf(w, "remote half: %d packets expected to be denied pass this node's hook; the remote endpoint's node decides the other half\n", remoteHalf)
	}
	return nil
}

// ruleDetail is a rule id with its source and text: "rule 18 at
// quickstart.pol:13 (api-in): ingress deny from 192.0.2.66"; a tiered
// rule's policy comes with its tier and priority: "(guard, admin tier,
// priority 10)".
func ruleDetail(prog *ir.Program, id ir.RuleID) string {
	r := harness.LookupRule(prog, id)
	if r == nil {
		return harness.RuleName(id)
	}
	return fmt.Sprintf("rule %d at %s:%d (%s): %s", id, r.Pos.File, r.Pos.Line, rulePolicyText(r), r.Text)
}

// rulePolicyText is a rule's policy, with its tier and priority when it
// has a tier.
func rulePolicyText(r *ir.Rule) string {
	if r.Tier == dsl.TierNone {
		return r.Policy
	}
	return fmt.Sprintf("%s, %s tier, priority %d", r.Policy, r.Tier, r.Priority)
}

// writeHarnessJSON is writeJSON without HTML escapes, so that packets
// read "tcp a -> b" as written.
func writeHarnessJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// JSON shapes of `polc test -o json`.
type (
	testReport struct {
		Kernel bool       `json:"kernel"` // false with --reference
		Passed int        `json:"passed"`
		Failed int        `json:"failed"`
		Tests  []testJSON `json:"tests"`
	}
	testJSON struct {
		Name  string     `json:"name"`
		File  string     `json:"file"`
		Line  int        `json:"line"`
		Pass  bool       `json:"pass"`
		Steps []stepJSON `json:"steps"`
	}
	stepJSON struct {
		Step      int           `json:"step"`
		Reply     bool          `json:"reply"`
		Line      int           `json:"line"`
		Packet    string        `json:"packet"`
		Expect    string        `json:"expect,omitempty"`
		Kernel    *decisionJSON `json:"kernel,omitempty"`
		Reference decisionJSON  `json:"reference"`
		Pass      bool          `json:"pass"`
		Problems  []string      `json:"problems,omitempty"`
		// Node is "elsewhere" (no hook of this node sees the packet) or
		// "remote-half" (an expected deny is left to a remote
		// endpoint's node) on node bundles; empty otherwise.
		Node string `json:"node,omitempty"`
	}
	decisionJSON struct {
		Verdict     string      `json:"verdict"`
		Rule        ruleJSON    `json:"rule"`
		Audit       *ruleJSON   `json:"audit,omitempty"` // passed, but this audit rule would deny
		Prefiltered bool        `json:"prefiltered,omitempty"`
		Points      []pointJSON `json:"points"`
	}
	pointJSON struct {
		Subject string    `json:"subject"` // endpoint name (reference) or address (kernel)
		Dir     string    `json:"dir"`
		Verdict string    `json:"verdict"`
		Rule    ruleJSON  `json:"rule"`
		Audit   *ruleJSON `json:"audit,omitempty"`
		// Passes are the pass rules of tiered policies the packet
		// crossed before Rule decided (the reference only).
		Passes []ruleJSON `json:"passes,omitempty"`
		// Level is the level that decided, when a tiered policy took
		// part: admin, namespace, baseline or default.
		Level string `json:"level,omitempty"`
	}
	ruleJSON struct {
		ID     uint32 `json:"id"`
		Name   string `json:"name,omitempty"` // reserved ids
		File   string `json:"file,omitempty"`
		Line   int    `json:"line,omitempty"`
		Col    int    `json:"col,omitempty"`
		Policy string `json:"policy,omitempty"`
		Text   string `json:"text,omitempty"`
		// Tier and Priority are the rule's policy's, for a tiered rule.
		Tier     string `json:"tier,omitempty"`
		Priority *int   `json:"priority,omitempty"`
	}
)

func ruleToJSON(prog *ir.Program, id ir.RuleID) ruleJSON {
	r := harness.LookupRule(prog, id)
	if r == nil {
		return ruleJSON{ID: uint32(id), Name: harness.RuleName(id)}
	}
	j := ruleJSON{ID: uint32(id), File: r.Pos.File, Line: r.Pos.Line, Col: r.Pos.Col, Policy: r.Policy, Text: r.Text}
	if r.Tier != dsl.TierNone {
		prio := r.Priority
		j.Tier, j.Priority = r.Tier.String(), &prio
	}
	return j
}

func referenceJSON(prog *ir.Program, r eval.Result) decisionJSON {
	d := decisionJSON{Verdict: r.Verdict.String(), Rule: ruleToJSON(prog, r.Rule), Audit: auditJSON(prog, r.Audit), Points: []pointJSON{}}
	for _, p := range r.Points {
		pj := pointJSON{Subject: p.Subject.Name, Dir: p.Dir.String(), Verdict: p.Verdict.String(), Rule: ruleToJSON(prog, p.Rule), Audit: auditJSON(prog, p.Audit)}
		for _, id := range p.Passes {
			pj.Passes = append(pj.Passes, ruleToJSON(prog, id))
		}
		if tiersTookPart(prog, p) {
			pj.Level = p.Level.String()
		}
		d.Points = append(d.Points, pj)
	}
	return d
}

func kernelJSON(prog *ir.Program, k *harness.KernelResult) *decisionJSON {
	if k == nil {
		return nil
	}
	d := &decisionJSON{Verdict: k.Verdict.String(), Rule: ruleToJSON(prog, k.Rule), Audit: auditJSON(prog, k.Audit), Prefiltered: k.Prefiltered, Points: []pointJSON{}}
	for _, p := range k.Points {
		d.Points = append(d.Points, pointJSON{Subject: p.Subject.String(), Dir: p.Dir.String(), Verdict: p.Verdict.String(), Rule: ruleToJSON(prog, p.Rule), Audit: auditJSON(prog, p.Audit)})
	}
	return d
}

// auditJSON is the rule an audit policy would deny with, nil for none.
func auditJSON(prog *ir.Program, id ir.RuleID) *ruleJSON {
	if id == 0 {
		return nil
	}
	r := ruleToJSON(prog, id)
	return &r
}

func testReportJSON(prog *ir.Program, res []harness.TestResult, kernel bool) testReport {
	rep := testReport{Kernel: kernel, Tests: []testJSON{}}
	for i := range res {
		tr := &res[i]
		tj := testJSON{Name: tr.Test.Name, File: tr.Test.Pos.File, Line: tr.Test.Pos.Line, Pass: tr.OK()}
		if tj.Pass {
			rep.Passed++
		} else {
			rep.Failed++
		}
		for j := range tr.Steps {
			s := &tr.Steps[j]
			sj := stepJSON{
				Step: s.Index + 1, Reply: s.Step.Reply, Line: s.Step.Pos.Line,
				Packet:    harness.FormatPacket(s.Step.Packet),
				Kernel:    kernelJSON(prog, s.Kernel),
				Reference: referenceJSON(prog, s.Reference),
				Pass:      s.OK(),
				Problems:  s.Problems,
			}
			switch {
			case s.Elsewhere:
				sj.Node = "elsewhere"
			case s.RemoteHalf:
				sj.Node = "remote-half"
			}
			if s.Step.Expect != nil {
				sj.Expect = s.Step.Expect.String()
			}
			tj.Steps = append(tj.Steps, sj)
		}
		rep.Tests = append(rep.Tests, tj)
	}
	return rep
}
