// Package difftest is polc's differential tester: it generates random
// policies (as source text, compiled through the front end and the
// lowering) and random packet sequences, runs every packet through the
// kernel programs (package harness) and the reference evaluator, and
// reports every packet on which they differ — verdict, deciding rule, or
// the decision at any hook. Runs are seeded (math/rand/v2 PCG), so a
// mismatch is reproduced by its seed and policy number.
//
// It imports the compiler (to build what it tests), which package harness
// itself does not.
package difftest

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler"
	"github.com/polc-dev/polc/compiler/eval"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/compiler/lower"
	"github.com/polc-dev/polc/dsl"
	"github.com/polc-dev/polc/runtime/harness"
	"github.com/polc-dev/polc/runtime/packet"
)

// Options configure a run.
type Options struct {
	Seed     uint64
	Policies int // number of generated policies
	Packets  int // packets per policy (in sequences of one to four)
	// First is the number of the first policy: policy i is generated from
	// (Seed, i), so one policy can be rerun alone.
	First int
	// Log receives progress and the details of each mismatch (may be nil).
	Log io.Writer
	// MaxMismatches stops the run after this many (0: 20).
	MaxMismatches int
	// NoTiers leaves tiered policies (admin, baseline, pass) out of the
	// generated ones; by default about one policy in three has a tier.
	NoTiers bool
}

// Mismatch is one packet on which the kernel and the evaluator differ.
type Mismatch struct {
	Seed     uint64
	Policy   int
	Source   string   // the policy
	Sequence []string // the packets of the sequence up to this one
	Diff     string
}

func (m Mismatch) String() string {
	return fmt.Sprintf("seed %d policy %d: %s\n  sequence:\n    %s\n  policy:\n%s",
		m.Seed, m.Policy, m.Diff, strings.Join(m.Sequence, "\n    "), indent(m.Source, "    "))
}

// Stats is the result of a run.
type Stats struct {
	Policies, Packets, Sequences int
	// Rejected counts generated policies the compiler refused (a
	// generator bug; they are reported in the log).
	Rejected int
	// Known counts packets on which the kernel differs from the evaluator
	// in one of the ways docs/testing.md documents (per-hook conntrack),
	// by kind.
	Known      map[string]int
	Mismatches []Mismatch
	Duration   time.Duration
}

// Run generates and checks opts.Policies policies. It fails only when the
// kernel cannot be used; mismatches are in Stats.
func Run(opts Options) (Stats, error) {
	start := time.Now()
	st := Stats{Known: map[string]int{}}
	if opts.MaxMismatches == 0 {
		opts.MaxMismatches = 20
	}
	logf := func(format string, args ...any) {
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, format, args...)
		}
	}
	for i := opts.First; i < opts.First+opts.Policies; i++ {
		if len(st.Mismatches) >= opts.MaxMismatches {
			logf("stopping after %d mismatches\n", len(st.Mismatches))
			break
		}
		r := rand.New(rand.NewPCG(opts.Seed, uint64(i)))
		w := generate(r, nil, !opts.NoTiers)
		// One policy in five is replaced by a second one (same endpoints)
		// in the middle of each sequence, as `polc apply` does: the
		// second is loaded with the next generation and shares conntrack.
		var next *world
		if r.IntN(5) == 0 {
			w2 := generate(r, &w, !opts.NoTiers)
			next = &w2
		}
		src := w.src
		if next != nil {
			src = "# generation 1\n" + w.src + "# generation 2 (polc apply)\n" + next.src
		}
		ks, evs, err := loadGenerations(i, &w, next)
		if errors.Is(err, errKernel) {
			return st, fmt.Errorf("seed %d policy %d: %w", opts.Seed, i, err)
		}
		if err != nil {
			st.Rejected++
			logf("seed %d policy %d: %v\n%s\n", opts.Seed, i, err, src)
			continue
		}
		closeAll := func() {
			for _, k := range ks {
				k.Close()
			}
		}
		st.Policies++
		pg := &pgen{r: r, w: &w}
		for n := 0; n < opts.Packets; {
			seq := pg.sequence()
			st.Sequences++
			if err := ks[0].Reset(); err != nil {
				closeAll()
				return st, err
			}
			ct := eval.NewConntrack()
			var shown []string
			// With two generations, the switch comes after the first packet.
			for j, s := range seq {
				gen := 0
				if len(ks) > 1 && j > 0 {
					gen = 1
				}
				k, ev := ks[gen], evs[gen]
				c := s.frame()
				o, err := harness.Decide(ev, ct, k, c)
				if err != nil {
					closeAll()
					return st, fmt.Errorf("seed %d policy %d: %w", opts.Seed, i, err)
				}
				if len(ks) > 1 {
					s.what = fmt.Sprintf("%s (generation %d)", s.what, gen+1)
				}
				n++
				st.Packets++
				shown = append(shown, describe(s)+" => kernel "+kernelText(o.Kernel)+"; reference "+o.Reference.String())
				if d := o.Diff(); d != "" {
					if kind := knownDivergence(c.Ref); kind != "" {
						st.Known[kind]++
						if os.Getenv("POLC_DIFFTEST_SHOW_KNOWN") != "" && st.Known[kind] <= 3 {
							logf("KNOWN (%s) %s\n", kind, Mismatch{Seed: opts.Seed, Policy: i, Source: src, Sequence: shown, Diff: d})
						}
					} else {
						m := Mismatch{Seed: opts.Seed, Policy: i, Source: src, Sequence: shown, Diff: d}
						st.Mismatches = append(st.Mismatches, m)
						logf("MISMATCH %s\n", m)
					}
				}
			}
		}
		closeAll()
	}
	st.Duration = time.Since(start)
	return st, nil
}

// loadGenerations compiles and loads a policy, and the one that replaces
// it if any: generation 1, then generation 2 sharing its conntrack.
func loadGenerations(i int, w, next *world) ([]*harness.Kernel, []*eval.Evaluator, error) {
	var ks []*harness.Kernel
	var evs []*eval.Evaluator
	fail := func(err error) ([]*harness.Kernel, []*eval.Evaluator, error) {
		for _, k := range ks {
			k.Close()
		}
		return nil, nil, err
	}
	for g, w := range []*world{w, next} {
		if w == nil {
			break
		}
		prog, err := Compile(fmt.Sprintf("gen%d.pol", i), w.src)
		if err != nil {
			return fail(fmt.Errorf("the compiler rejected the generated policy: %w", err))
		}
		b, err := lower.Build(prog, bpf.Object(), lower.Options{Compiler: "difftest"})
		if err != nil {
			return fail(fmt.Errorf("lowering failed: %w", err))
		}
		opts := harness.OpenOptions{Generation: uint32(g + 1)}
		if g > 0 {
			opts.Share = ks[0]
		}
		k, err := harness.OpenWith(b, opts)
		if err != nil {
			return fail(fmt.Errorf("%w: %w", errKernel, err))
		}
		ks = append(ks, k)
		evs = append(evs, eval.New(prog).WithGeneration(uint64(g+1)))
	}
	return ks, evs, nil
}

var errKernel = errors.New("load")

// Compile compiles one generated source file.
func Compile(path, src string) (*ir.Program, error) {
	f, ds := dsl.Parse(path, []byte(src))
	if ds.HasErrors() {
		return nil, fmt.Errorf("%s", ds.Format(func(string) []byte { return []byte(src) }))
	}
	prog, ds := compiler.Compile([]*dsl.File{f}, compiler.Sources{path: []byte(src)})
	if ds.HasErrors() || prog == nil {
		return nil, fmt.Errorf("%s", ds.Format(func(string) []byte { return []byte(src) }))
	}
	return prog, nil
}

// Kinds of known differences.
const (
	knownThirdParty = "icmp error from a third party"
)

// knownDivergence names the known difference that explains a mismatch on
// p, or "".
func knownDivergence(p eval.Packet) string {
	if e := p.Embedded; e != nil && e.Dst != p.Src {
		return knownThirdParty
	}
	return ""
}

func describe(s step) string {
	sp := s.spec
	if sp.EtherType != 0 {
		return fmt.Sprintf("%s: ethertype %#04x", s.what, sp.EtherType)
	}
	p := ir.Packet{Proto: sp.Proto, Src: sp.Src, Dst: sp.Dst, SPort: sp.SPort, DPort: sp.DPort,
		TCPFlags: sp.TCPFlags, ICMPType: sp.ICMPType, ICMPCode: sp.ICMPCode}
	d := s.what + ": " + harness.FormatPacket(p)
	if sp.Proto.IsICMP() && sp.Embedded == nil {
		d += fmt.Sprintf(" id %d", sp.ICMPID)
	}
	if sp.Embedded != nil {
		d += " about [" + describe(step{spec: *sp.Embedded, what: "original"}) + "]"
	}
	if sp.Frag != nil {
		d += fmt.Sprintf(" fragment id %d offset %d more %v", sp.ID, sp.Frag.Offset, sp.Frag.More)
	}
	if len(sp.IPv4Options) > 0 || len(sp.IPv6Ext) > 0 {
		d += " with IP options"
	}
	if sp.Mangle != (packet.Mangle{}) {
		d += fmt.Sprintf(" mangled %+v", sp.Mangle)
	}
	if s.truncate > 0 {
		d += fmt.Sprintf(" cut to %d bytes", s.truncate)
	}
	if s.uplink {
		d += " (from an uplink)"
	}
	if s.via != "" {
		d += " (via " + s.via + ")"
	}
	return d
}

func kernelText(k *harness.KernelResult) string {
	if k == nil {
		return "-"
	}
	s := k.Verdict.String() + " (" + harness.RuleName(k.Rule) + ")"
	if k.Prefiltered {
		s += " at XDP"
	}
	for _, p := range k.Points {
		s += "; " + p.Subject.String() + " " + p.Dir.String() + ": " + p.Verdict.String() + " (" + harness.RuleName(p.Rule) + ")"
	}
	return s
}

func indent(s, pre string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return pre + strings.Join(lines, "\n"+pre)
}
