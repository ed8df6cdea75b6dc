package harness

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/polc-dev/polc/compiler/eval"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
	"github.com/polc-dev/polc/runtime/packet"
)

func TestQuickstart(t *testing.T) {
	prog, ev, k := open(t, "../../testdata/quickstart.pol")
	res, err := RunTests(prog, ev, RunOptions{Kernel: k})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(prog.Tests) {
		t.Fatalf("ran %d tests, want %d", len(res), len(prog.Tests))
	}
	for _, tr := range res {
		for _, s := range tr.Steps {
			if !s.OK() {
				t.Errorf("%s step %d: %v", tr.Test.Name, s.Index+1, s.Problems)
			}
			if s.Kernel == nil || len(s.Kernel.Points) == 0 {
				t.Errorf("%s step %d: no hook ran: %+v", tr.Test.Name, s.Index+1, s.Kernel)
			}
		}
	}
}

// TestFailingPolicy: the deliberately failing tests fail in the kernel
// and in the reference alike, and the kernel and reference agree.
func TestFailingPolicy(t *testing.T) {
	prog, ev, k := open(t, "../../testdata/harness/failing.pol")
	res, err := RunTests(prog, ev, RunOptions{Kernel: k})
	if err != nil {
		t.Fatal(err)
	}
	failed := map[string]bool{}
	for _, tr := range res {
		failed[tr.Test.Name] = !tr.OK()
		for _, s := range tr.Steps {
			if d := s.Diff(); d != "" {
				t.Errorf("%s: kernel and reference disagree: %s", tr.Test.Name, d)
			}
		}
	}
	want := map[string]bool{"web reaches api": false, "wrong port": true, "denied network": true, "reply is not new": true}
	for name, f := range want {
		if failed[name] != f {
			t.Errorf("%s: failed %v, want %v", name, failed[name], f)
		}
	}
}

func TestRunFilter(t *testing.T) {
	prog, _ := compile(t, "../../testdata/quickstart.pol")
	ev := eval.New(prog)
	res, err := RunTests(prog, ev, RunOptions{Run: mustRegexp(t, "^reply")})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Test.Name != "reply of allowed flow" || len(res[0].Steps) != 2 {
		t.Fatalf("got %+v", res)
	}
	if s := res[0].Steps[1]; s.Kernel != nil || s.Reference.Rule != ir.RuleEstablished || !s.OK() {
		t.Errorf("reply on the reference alone: %+v", s)
	}
}

func TestDiff(t *testing.T) {
	web := &ir.Endpoint{Name: "web"}
	api := &ir.Endpoint{Name: "api"}
	ref := eval.Result{Verdict: dsl.VerdictDeny, Rule: 17, Points: []eval.PointDecision{
		{Subject: web, Dir: dsl.Egress, Verdict: dsl.VerdictAllow, Rule: ir.RuleDefaultAllow},
		{Subject: api, Dir: dsl.Ingress, Verdict: dsl.VerdictDeny, Rule: 17},
	}}
	a, b := netip.MustParseAddr("10.0.1.10"), netip.MustParseAddr("10.0.2.10")
	same := &KernelResult{Verdict: dsl.VerdictDeny, Rule: 17, Points: []KernelPoint{
		{Dir: dsl.Egress, Subject: a, Verdict: dsl.VerdictAllow, Rule: ir.RuleDefaultAllow},
		{Dir: dsl.Ingress, Subject: b, Verdict: dsl.VerdictDeny, Rule: 17},
	}}
	if d := (Outcome{ref, same}).Diff(); d != "" {
		t.Errorf("same decisions: %s", d)
	}
	if d := (Outcome{ref, nil}).Diff(); d != "" {
		t.Errorf("no kernel: %s", d)
	}
	otherRule := *same
	otherRule.Points = append([]KernelPoint(nil), same.Points...)
	otherRule.Points[0].Rule = ir.RuleEstablished
	if d := (Outcome{ref, &otherRule}).Diff(); !strings.Contains(d, "web egress: kernel allow (established), reference allow (default-allow)") {
		t.Errorf("a point's rule differs: %q", d)
	}
	oneHook := &KernelResult{Verdict: dsl.VerdictDeny, Rule: 17, Points: same.Points[1:]}
	if d := (Outcome{ref, oneHook}).Diff(); !strings.Contains(d, "points: kernel ran 10.0.2.10 ingress, reference observed web egress, api ingress") {
		t.Errorf("hooks differ: %q", d)
	}
	nonIP := eval.Result{Verdict: dsl.VerdictAllow, Rule: ir.RuleNonIP}
	kNonIP := &KernelResult{Verdict: dsl.VerdictAllow, Rule: ir.RuleNonIP, Points: []KernelPoint{{Dir: dsl.Egress, Verdict: dsl.VerdictAllow, Rule: ir.RuleNonIP}}}
	if d := (Outcome{nonIP, kNonIP}).Diff(); d != "" {
		t.Errorf("non-IP: %s", d)
	}
}

func TestRefFromFrame(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.1.10"), netip.MustParseAddr("10.0.2.10")
	inner := packet.Spec{Proto: ir.ProtoTCP, Src: a, Dst: b, SPort: 1, DPort: 2, TCPFlags: ir.TCPSyn}
	c := CaseFromSpec(packet.Spec{Proto: ir.ProtoICMP, Src: b, Dst: a, ICMPType: 3, ICMPCode: 3, Embedded: &inner}, false)
	if e := c.Ref.Embedded; e == nil || e.Src != a || e.DPort != 2 || c.Ref.ICMPType != 3 {
		t.Errorf("icmp error: %+v", c.Ref)
	}
	c = CaseFromSpec(packet.Spec{Proto: ir.ProtoUDP, Src: a, Dst: b, SPort: 1, DPort: 2, ID: 9, Frag: &packet.Frag{Offset: 64}}, true)
	if f := c.Ref.Frag; f == nil || f.ID != 9 || f.Offset != 64 || !c.Ref.FromUplink {
		t.Errorf("fragment: %+v", c.Ref)
	}
	bad := inner
	bad.Mangle.IPLength = 21
	if c = CaseFromSpec(bad, false); !c.Ref.Malformed || c.Ref.Src != a || c.Ref.Dst != b {
		t.Errorf("malformed: %+v", c.Ref)
	}
	if c = CaseFromSpec(packet.Spec{EtherType: packet.EtherTypeARP}, false); !c.Ref.NonIP {
		t.Errorf("arp: %+v", c.Ref)
	}
}
