package bench

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// Kinds of traffic.
const (
	KindNew         = "new"         // every packet opens a flow never seen before
	KindEstablished = "established" // every packet belongs to an answered flow
)

// Options configures a suite run.
type Options struct {
	Sizes   []int    // N values
	Configs []Config // in table order; "none" should be first, "polc" present for ratios
	Rounds  int      // measured rounds (after one calibration round)
	// MaxPackets caps a burst; MinPackets is the least a burst sends.
	// Between them, the count gives about Budget of CPU per burst.
	MaxPackets, MinPackets int
	Budget                 time.Duration
	Flows                  int // established flows
	CPU                    int // the CPU the generator is pinned to
	// MaxN skips a configuration above a size (by name), e.g. linear
	// rulesets whose install would take too long.
	MaxN map[string]int
	// Strict makes a wrong delivery count fail the test; otherwise it is
	// reported in the result.
	Strict bool
}

// Result is one configuration at one size for one kind of traffic.
type Result struct {
	Config  string
	N       int
	Kind    string
	Packets int       // per burst
	Samples []float64 // ns/packet, one per round
	Install time.Duration
	Note    string
}

// Median of the samples.
func (r Result) Median() float64 {
	s := slices.Clone(r.Samples)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type installed struct {
	cfg   Config
	rig   *Rig
	reset func() error
	est   *Frames
	flows []Flow
	count map[string]int
	res   map[string]*Result
}

// Run measures every configuration at every size. Each size is a subtest
// whose rigs are removed when it ends.
func Run(t *testing.T, o Options) []Result {
	var all []Result
	seq := 0
	for _, n := range o.Sizes {
		t.Run(fmt.Sprintf("N=%d", n), func(t *testing.T) {
			rs := Ruleset{N: n}
			var ins []*installed
			for _, c := range o.Configs {
				if m, ok := o.MaxN[c.Name()]; ok && n > m {
					t.Logf("%s: skipped at N=%d (limit %d)", c.Name(), n, m)
					continue
				}
				r := NewRig(t, o.CPU)
				start := time.Now()
				reset, err := c.Install(t, r, rs)
				if err != nil {
					t.Fatalf("%s N=%d: install: %v", c.Name(), n, err)
				}
				took := time.Since(start)
				t.Logf("%s N=%d: installed in %v", c.Name(), n, took.Round(time.Millisecond))
				in := &installed{cfg: c, rig: r, reset: reset, flows: EstablishedFlows(o.Flows),
					count: map[string]int{}, res: map[string]*Result{}}
				in.est = BuildFrames(r.GenMAC, r.SinkMAC, in.flows, o.Flows)
				for _, k := range []string{KindNew, KindEstablished} {
					in.res[k] = &Result{Config: c.Name(), N: n, Kind: k, Install: took}
				}
				if err := checkDenied(in); err != nil {
					fail(t, o, in, err)
				}
				ins = append(ins, in)
			}
			// Round 0 calibrates the burst sizes and warms caches; rounds
			// rotate the order so that load drift spreads over configs.
			for round := 0; round <= o.Rounds; round++ {
				for j := range ins {
					in := ins[(j+round)%len(ins)]
					for _, kind := range []string{KindEstablished, KindNew} {
						count := in.count[kind]
						if round == 0 {
							count = o.MinPackets
						}
						c, err := burst(in, kind, count, seq)
						seq++
						if err != nil {
							fail(t, o, in, fmt.Errorf("%s: %w", kind, err))
							continue
						}
						if round == 0 {
							want := int(float64(o.Budget.Nanoseconds()) / max(c.NsPerPacket(), 1))
							in.count[kind] = max(o.MinPackets, min(o.MaxPackets, want))
							continue
						}
						r := in.res[kind]
						r.Packets = count
						r.Samples = append(r.Samples, c.NsPerPacket())
					}
				}
			}
			for _, in := range ins {
				for _, k := range []string{KindNew, KindEstablished} {
					r := in.res[k]
					t.Logf("%-15s N=%-6d %-11s %8.0f ns/packet (%d packets/burst, %v)", r.Config, r.N, r.Kind, r.Median(), r.Packets, fmtSamples(r.Samples))
					all = append(all, *r)
				}
			}
		})
	}
	return all
}

func fail(t *testing.T, o Options, in *installed, err error) {
	t.Helper()
	msg := fmt.Sprintf("%s N=%d: %v", in.cfg.Name(), in.res[KindNew].N, err)
	if o.Strict {
		t.Error(msg)
	} else {
		t.Log(msg)
	}
	for _, r := range in.res {
		if r.Note == "" {
			r.Note = err.Error()
		}
	}
}

// checkDenied sends traffic no rule allows: a filter must drop all of it,
// a baseline pass all of it.
func checkDenied(in *installed) error {
	const n = 256
	want := 0
	if !in.cfg.Filters() {
		want = n
	}
	_, got, err := in.rig.Send(BuildFrames(in.rig.GenMAC, in.rig.SinkMAC, DeniedFlows(n), n), want)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("denied traffic: %d of %d packets delivered, want %d", got, n, want)
	}
	return nil
}

// burst resets flow state, re-establishes the established flows, and
// measures count packets of kind. Every packet must be delivered.
func burst(in *installed, kind string, count, seq int) (Cost, error) {
	r := in.rig
	var frames *Frames
	switch kind {
	case KindEstablished:
		if err := r.FlushConntrack(); err != nil {
			return Cost{}, err
		}
		if in.reset != nil {
			if err := in.reset(); err != nil {
				return Cost{}, fmt.Errorf("reset: %w", err)
			}
		}
		// One packet per flow opens it, the sink's reply answers it.
		if _, got, err := r.Send(in.est, len(in.flows)); err != nil || got != len(in.flows) {
			return Cost{}, fmt.Errorf("opening flows: %d of %d delivered (%v)", got, len(in.flows), err)
		}
		if err := r.Reply(in.flows); err != nil {
			return Cost{}, err
		}
		frames = BuildFrames(r.GenMAC, r.SinkMAC, in.flows, count)
	case KindNew:
		frames = BuildFrames(r.GenMAC, r.SinkMAC, NewFlows(count, seq), count)
	}
	c, got, err := r.Send(frames, count)
	if err != nil {
		return Cost{}, err
	}
	if got != count {
		return c, fmt.Errorf("%d of %d allowed packets delivered", got, count)
	}
	return c, nil
}

func fmtSamples(s []float64) string {
	var b strings.Builder
	for i, v := range s {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%.0f", v)
	}
	return "[" + b.String() + "]"
}

// Table renders results as a Markdown table per kind: configuration, N,
// median ns/packet with the range over rounds, the ratios to no filter
// and to polc at the same N and kind, and the filter's own cost: the
// median over no filter's median, and its ratio to polc's.
func Table(results []Result) string {
	type key struct {
		cfg  string
		n    int
		kind string
	}
	med := map[key]float64{}
	for _, r := range results {
		if len(r.Samples) > 0 {
			med[key{r.Config, r.N, r.Kind}] = r.Median()
		}
	}
	var b strings.Builder
	for _, kind := range []string{KindNew, KindEstablished} {
		fmt.Fprintf(&b, "\n%s flows:\n\n", kind)
		b.WriteString("| configuration | N | ns/packet | min–max | × none | × polc | added ns | added × polc | packets/burst |\n")
		b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, r := range results {
			if r.Kind != kind {
				continue
			}
			note := ""
			if r.Note != "" {
				note = " (" + r.Note + ")"
			}
			m, ok := med[key{r.Config, r.N, kind}]
			if !ok {
				fmt.Fprintf(&b, "| %s%s | %d | – | – | – | – | – | – | – |\n", r.Config, note, r.N)
				continue
			}
			none, hasNone := med[key{"none", r.N, kind}]
			polc, hasPolc := med[key{"polc", r.N, kind}]
			ratio := func(v, base float64, ok bool) string {
				if !ok || base <= 0 {
					return "–"
				}
				return fmt.Sprintf("%.2f", v/base)
			}
			added, addedRatio := "–", "–"
			if hasNone {
				added = fmt.Sprintf("%.0f", m-none)
				if hasPolc && r.Config != "none" {
					addedRatio = ratio(m-none, polc-none, polc-none > 0)
				}
			}
			fmt.Fprintf(&b, "| %s%s | %d | %.0f | %.0f–%.0f | %s | %s | %s | %s | %d |\n",
				r.Config, note, r.N, m, slices.Min(r.Samples), slices.Max(r.Samples),
				ratio(m, none, hasNone), ratio(m, polc, hasPolc), added, addedRatio, r.Packets)
		}
	}
	return b.String()
}
