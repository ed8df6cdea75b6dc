package harness_test

import (
	"fmt"

	"github.com/polc-dev/polc/compiler"
	"github.com/polc-dev/polc/compiler/eval"
	"github.com/polc-dev/polc/runtime/harness"
)

// ParseFlow reads the packets `polc explain` asks about; the reference
// evaluator decides them (Kernel.Run, as root, runs them in the kernel).
func ExampleParseFlow() {
	prog, _, _ := compiler.Load([]string{"../../testdata/quickstart.pol"})
	ev := eval.New(prog)
	for _, flow := range []string{
		"tcp web -> api:8080",
		"tcp [fd00::10]:40000 -> [fd00::20]:9090",
		"icmp 203.0.113.5 -> api type 8 code 0",
	} {
		pkt, err := harness.ParseFlow(prog, flow)
		if err != nil {
			fmt.Println(err)
			continue
		}
		c := harness.CaseFromIR(ev, pkt)
		res := ev.Eval(eval.NewConntrack(), c.Ref)
		fmt.Printf("%s: %s by %s\n", harness.FormatPacket(pkt), res.Verdict, harness.RuleSource(prog, res.Rule))
	}
	// Output:
	// tcp 10.0.1.10:40000 -> 10.0.2.10:8080 flags syn: allow by ../../testdata/quickstart.pol:11
	// tcp [fd00::10]:40000 -> [fd00::20]:9090 flags syn: deny by default-deny
	// icmp 203.0.113.5 -> 10.0.2.10 type 8 code 0: deny by prefilter
}
