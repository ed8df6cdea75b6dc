package harness

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/polc-dev/polc/compiler/eval"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/runtime/packet"
)

// openGenerations loads two policies as `polc apply` would: the second
// with the next generation, sharing the first one's connection state.
func openGenerations(t *testing.T, src1, src2 string) ([2]*eval.Evaluator, [2]*Kernel) {
	t.Helper()
	requireBPF(t)
	var evs [2]*eval.Evaluator
	var ks [2]*Kernel
	for i, src := range []string{src1, src2} {
		path := filepath.Join(t.TempDir(), "gen.pol")
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		prog, b := compile(t, path)
		opts := OpenOptions{Generation: uint32(i + 1)}
		if i > 0 {
			opts.Share = ks[0]
		}
		k, err := OpenWith(b, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { k.Close() })
		ks[i], evs[i] = k, eval.New(prog).WithGeneration(uint64(i+1))
	}
	return evs, ks
}

const genEndpoints = `
endpoint a labels(app=a) addr 10.0.1.10
endpoint b labels(app=b) addr 10.0.1.11
`

// TestApplyKeepsFlows: a flow allowed under the first policy and still
// allowed under the second stays established; one the second policy
// denies is dropped at its next packet and forgotten — in the kernel and
// in the reference alike.
func TestApplyKeepsFlows(t *testing.T) {
	evs, ks := openGenerations(t,
		genEndpoints+"policy b-in { select app=b\n ingress allow from app=a on tcp/80, tcp/81 }\n",
		genEndpoints+"policy b-in { select app=b\n ingress allow from app=a on tcp/80 }\npolicy a-in { select app=a\n isolate ingress }\n")
	a, b := netip.MustParseAddr("10.0.1.10"), netip.MustParseAddr("10.0.1.11")
	syn := func(dport uint16) packet.Spec {
		return packet.Spec{Proto: ir.ProtoTCP, Src: a, Dst: b, SPort: 40000, DPort: dport, TCPFlags: ir.TCPSyn}
	}
	reply := func(dport uint16) packet.Spec {
		return packet.Spec{Proto: ir.ProtoTCP, Src: b, Dst: a, SPort: dport, DPort: 40000, TCPFlags: ir.TCPAck}
	}
	for _, c := range []struct {
		port     uint16
		gen2Rule ir.RuleID // the reply's overall rule under generation 2
		verdict  string
	}{
		{80, ir.FirstRuleID, "allow"},    // rechecked: a's ingress asks b-in about a→b:80 again
		{81, ir.RuleDefaultDeny, "deny"}, // no longer allowed
	} {
		if err := ks[0].Reset(); err != nil {
			t.Fatal(err)
		}
		ct := eval.NewConntrack()
		steps := []struct {
			gen  int
			spec packet.Spec
		}{{0, syn(c.port)}, {0, reply(c.port)}, {1, reply(c.port)}, {1, reply(c.port)}}
		for i, s := range steps {
			o, err := Decide(evs[s.gen], ct, ks[s.gen], CaseFromSpec(s.spec, false))
			if err != nil {
				t.Fatal(err)
			}
			// port 81, step 4: the recheck at step 3 denied the flow at
			// b's egress and, although a's ingress allowed the reply, a's
			// entry is forgotten too (b's ingress denies it), so a's
			// isolated ingress judges this packet by policy, as the
			// reference does.
			d := o.Diff()
			if d != "" {
				t.Errorf("port %d, step %d: %s", c.port, i+1, d)
			}
			if i == 2 && (o.Reference.Verdict.String() != c.verdict) {
				t.Errorf("port %d: reply after apply: %s, want %s", c.port, o.Reference, c.verdict)
			}
			if i == 3 && c.port == 81 && o.Reference.Verdict.String() != "deny" {
				t.Errorf("port 81: second reply after apply: %s, want deny", o.Reference)
			}
		}
	}
}

// TestFragmentAcrossGenerations: a first fragment decided under one
// generation, then later fragments of the same datagram after `polc
// apply`. The first fragment's record belongs to the old policy, so the
// kernel (frag_value.generation) and the reference both treat it as
// unknown: where the new policy isolates the subject (b's ingress) the
// later fragment is dropped with `fragment`, where it does not (a's egress)
// it passes with `default-allow` — never with the old generation's rule id.
// A first fragment seen again under the new generation is followed again.
// This was an open difference (the frags map had no generation).
func TestFragmentAcrossGenerations(t *testing.T) {
	evs, ks := openGenerations(t,
		genEndpoints+"policy b-in { select app=b\n ingress allow from app=a on udp/53 }\n",
		genEndpoints+"policy b-in { select app=b\n isolate ingress }\n")
	first := packet.Spec{Proto: ir.ProtoUDP, Src: netip.MustParseAddr("10.0.1.10"), Dst: netip.MustParseAddr("10.0.1.11"),
		SPort: 5000, DPort: 53, ID: 7, Frag: &packet.Frag{Offset: 0, More: true}}
	later := first
	later.Frag = &packet.Frag{Offset: 64}
	later.Payload = []byte("the rest")
	ct := eval.NewConntrack()
	steps := []struct {
		gen  int
		spec packet.Spec
		rule ir.RuleID // the reference's overall rule
	}{
		{0, first, ir.FirstRuleID},
		{0, later, ir.FirstRuleID},     // follows the first fragment
		{1, later, ir.RuleFragment},    // stale record: unknown, b's ingress is isolated
		{1, later, ir.RuleFragment},    // still unknown
		{1, first, ir.RuleDefaultDeny}, // decided again under generation 2
		{1, later, ir.RuleDefaultDeny}, // follows it
	}
	for i, s := range steps {
		o, err := Decide(evs[s.gen], ct, ks[s.gen], CaseFromSpec(s.spec, false))
		if err != nil {
			t.Fatal(err)
		}
		if d := o.Diff(); d != "" {
			t.Errorf("step %d: %s", i+1, d)
		}
		if o.Reference.Rule != s.rule {
			t.Errorf("step %d: reference %s, want rule %d", i+1, o.Reference, s.rule)
		}
	}
}

// TestFragmentTieredDeny: a later fragment of an unknown datagram, at a
// hook whose subject only tiered policies select. Where one of them has
// a deny rule in that direction (b's ingress: an admin deny), some
// packet may be denied there, so the fragment, which carries no ports to
// judge, is dropped with `fragment` — it passed before, although the
// admin tier denies its datagram. Where the tiered rules can only allow
// or pass (a's egress) nothing can be denied and it passes with
// `default-allow`. Kernel and reference alike, and a first fragment the
// admin tier allows is still followed.
func TestFragmentTieredDeny(t *testing.T) {
	src := genEndpoints + `
policy guard tier admin priority 1 {
  select app=b
  ingress allow from app=a on udp/53
  ingress deny from app=a on udp
}
policy open tier admin priority 2 {
  select app=a
  egress pass to app=b on udp/54
  egress allow to app=b
}
`
	evs, ks := openGenerations(t, src, src)
	ev, k := evs[0], ks[0]
	a, b := netip.MustParseAddr("10.0.1.10"), netip.MustParseAddr("10.0.1.11")
	spec := func(src, dst netip.Addr, dport uint16, id uint32, off uint16, more bool) packet.Spec {
		s := packet.Spec{Proto: ir.ProtoUDP, Src: src, Dst: dst, SPort: 5000, DPort: dport, ID: id,
			Frag: &packet.Frag{Offset: off, More: more}}
		if off > 0 {
			s.Payload = []byte("the rest")
		}
		return s
	}
	ct := eval.NewConntrack()
	for i, s := range []struct {
		spec packet.Spec
		rule ir.RuleID // the reference's overall rule
	}{
		// a → b: a's egress allows (rule of open), b's ingress has an
		// admin deny: the orphan is dropped at b
		{spec(a, b, 0, 1, 64, false), ir.RuleFragment},
		// b → a: b's egress and a's ingress have no policy: passes
		{spec(b, a, 0, 2, 64, false), ir.RuleDefaultAllow},
		// a first fragment the admin tier allows (udp/53: open's rule 19 at a, guard's 16 at b), then its rest
		{spec(a, b, 53, 3, 0, true), ir.FirstRuleID + 3},
		{spec(a, b, 0, 3, 64, false), ir.FirstRuleID + 3},
		// a first fragment it denies (udp/99), then its rest
		{spec(a, b, 99, 4, 0, true), ir.FirstRuleID + 1},
		{spec(a, b, 0, 4, 64, false), ir.FirstRuleID + 1},
	} {
		o, err := Decide(ev, ct, k, CaseFromSpec(s.spec, false))
		if err != nil {
			t.Fatal(err)
		}
		if d := o.Diff(); d != "" {
			t.Errorf("step %d: %s", i+1, d)
		}
		if o.Reference.Rule != s.rule {
			t.Errorf("step %d: reference %s, want rule %d", i+1, o.Reference, s.rule)
		}
	}
}
