package harness

import (
	"fmt"
	"regexp"

	"github.com/polc-dev/polc/compiler/eval"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// StepResult is one packet of a test.
type StepResult struct {
	Index int // 0-based position in the test
	Step  *ir.Step
	Outcome
	// Problems says what went wrong: a verdict other than expected (from
	// the kernel or the reference), or a disagreement between them.
	// Empty means the step passed.
	Problems []string
	// Elsewhere: the packet is between remote endpoints (or a remote
	// endpoint and the world), so no hook of this node's bundle sees it
	// and its expectation is not checked here; another node's bundle
	// decides it.
	Elsewhere bool
	// RemoteHalf: the step expects deny, one end is a remote endpoint and
	// this node's hook allows: the remote endpoint's node decides the
	// other half, which may deny. Not a failure; nothing here can tell.
	RemoteHalf bool
}

// OK reports whether the step passed.
func (s *StepResult) OK() bool { return len(s.Problems) == 0 }

// TestResult is one test of the policy.
type TestResult struct {
	Test  *ir.Test
	Steps []StepResult
}

// OK reports whether every step passed.
func (t *TestResult) OK() bool {
	for i := range t.Steps {
		if !t.Steps[i].OK() {
			return false
		}
	}
	return true
}

// RunOptions configure RunTests.
type RunOptions struct {
	// Kernel runs the packets through the kernel programs as well; nil
	// runs them through the evaluator alone (--reference).
	Kernel *Kernel
	// Run selects tests by name (nil: all).
	Run *regexp.Regexp
}

// RunTests runs the tests of prog. Each test starts on an empty host (no
// conntrack, no fragment state, in the kernel and in the evaluator); its
// steps share that state, so replies and established flows are tested.
// Every step runs, also after one failed, so that a report is complete.
// An error means the kernel could not be asked at all.
func RunTests(prog *ir.Program, ev *eval.Evaluator, opts RunOptions) ([]TestResult, error) {
	var out []TestResult
	for _, t := range prog.Tests {
		if opts.Run != nil && !opts.Run.MatchString(t.Name) {
			continue
		}
		tr, err := RunTest(prog, ev, opts.Kernel, t)
		if err != nil {
			return out, fmt.Errorf("test %q: %w", t.Name, err)
		}
		out = append(out, tr)
	}
	return out, nil
}

// RunTest runs one test on a fresh host. On a node bundle (a program with
// remote endpoints) a packet meets this node's hooks only: a remote
// endpoint's packets arrive from an uplink at the local destination's
// ingress, packets to one leave through the local sender's egress, and a
// packet between two remote endpoints meets none (StepResult.Elsewhere).
// An expected deny that this node's half allows is left to the other node
// (StepResult.RemoteHalf); an expected allow that it denies is a failure,
// since a packet passes only if every hook on its path passes it.
func RunTest(prog *ir.Program, ev *eval.Evaluator, k *Kernel, t *ir.Test) (TestResult, error) {
	tr := TestResult{Test: t}
	if k != nil {
		if err := k.Reset(); err != nil {
			return tr, err
		}
	}
	ct := eval.NewConntrack()
	for i := range t.Steps {
		st := &t.Steps[i]
		c := CaseFromIR(ev, st.Packet)
		o, err := Decide(ev, ct, k, c)
		if err != nil {
			return tr, fmt.Errorf("step %d: %w", i+1, err)
		}
		sr := StepResult{Index: i, Step: st, Outcome: o}
		sr.Elsewhere = ev.Elsewhere(st.Packet.Src, st.Packet.Dst)
		sr.RemoteHalf = !sr.Elsewhere && st.Expect != nil && *st.Expect == dsl.VerdictDeny &&
			o.Reference.Verdict == dsl.VerdictAllow && ev.HasRemote(st.Packet.Src, st.Packet.Dst)
		if st.Expect != nil && !sr.Elsewhere && !sr.RemoteHalf {
			want := *st.Expect
			if o.Kernel != nil && o.Kernel.Verdict != want {
				sr.Problems = append(sr.Problems, fmt.Sprintf("kernel: want %s, got %s (%s)",
					want, o.Kernel.Verdict, RuleSource(prog, o.Kernel.Rule)))
			}
			if o.Reference.Verdict != want {
				sr.Problems = append(sr.Problems, fmt.Sprintf("reference: want %s, got %s (%s)",
					want, o.Reference.Verdict, RuleSource(prog, o.Reference.Rule)))
			}
		}
		if d := o.Diff(); d != "" {
			sr.Problems = append(sr.Problems, "kernel and reference disagree: "+d)
		}
		tr.Steps = append(tr.Steps, sr)
	}
	return tr, nil
}

// Decide runs one case through the evaluator (with state ct, which may be
// nil) and, when k is not nil, through the kernel.
func Decide(ev *eval.Evaluator, ct *eval.Conntrack, k *Kernel, c Case) (Outcome, error) {
	o := Outcome{Reference: ev.Eval(ct, c.Ref)}
	if k == nil {
		return o, nil
	}
	kr, err := k.RunRef(c.Frame, c.Ref)
	if err != nil {
		return o, err
	}
	o.Kernel = &kr
	return o, nil
}
