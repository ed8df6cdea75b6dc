package compiler

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/polc-dev/polc/compiler/eval"
	"github.com/polc-dev/polc/compiler/ir"
)

// TestSpoofingTestdata runs the tests of testdata/spoofing (tests that
// send packets `via` another endpoint's interface) on the reference
// evaluator, checks that every step gets its expected verdict and that the
// spoofed ones are decided by spoofed-source, and that the .pol and YAML
// versions compile to the same program. (These policies stay out of
// testdata/lang, whose bundles and kernel runs are pinned elsewhere.)
func TestSpoofingTestdata(t *testing.T) {
	t.Chdir(repoRoot())
	var texts []string
	for _, path := range []string{"testdata/spoofing/binding.pol", "testdata/spoofing/binding.yaml"} {
		prog, srcs, ds := Load([]string{path})
		skipIfNoParser(t, ds)
		if ds.HasErrors() {
			t.Fatalf("%s:\n%s", path, ds.Format(func(f string) []byte { return srcs[f] }))
		}
		texts = append(texts, meaning(prog.Text()))
		e := eval.New(prog)
		vias, spoofed := 0, 0
		for _, test := range prog.Tests {
			ct := eval.NewConntrack()
			for i, st := range test.Steps {
				pkt := eval.FromIR(st.Packet)
				pkt.FromUplink = st.Packet.Via == "" && e.Resolve(st.Packet.Src).Kind != eval.ResolvedEndpoint
				res := e.Eval(ct, pkt)
				if st.Packet.Via != "" {
					vias++
				}
				if res.Rule == ir.RuleSpoofedSource {
					spoofed++
				}
				if st.Expect != nil && res.Verdict != *st.Expect {
					t.Errorf("%s: test %q step %d: %s, want %s", st.Pos, test.Name, i+1, res, *st.Expect)
				}
			}
		}
		if vias < 8 || spoofed < 6 {
			t.Errorf("%s: %d steps with via, %d spoofed: the file lost its point", path, vias, spoofed)
		}
	}
	if diff := cmp.Diff(texts[0], texts[1]); diff != "" {
		t.Errorf("binding.pol and binding.yaml differ (-pol +yaml):\n%s", diff)
	}
}
