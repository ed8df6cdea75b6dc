package lower

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler"
	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/compiler/eval"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
	"github.com/polc-dev/polc/runtime/harness"
	"github.com/polc-dev/polc/runtime/packet"
)

// tieredProgram is a small program with every combination of tiers the
// datapath must settle (issue 15): web, api and db, api isolated for
// ingress by an untiered policy, db and web isolated by none.
func tieredProgram() *ir.Program {
	web, db := peers(peerSel("app=web")), peers(peerSel("app=db"))
	return program(
		[]*ir.Endpoint{
			ep("web", "app=web", "10.0.1.10", "fd00::10"),
			ep("api", "app=api", "10.0.2.10", "fd00::20"),
			ep("db", "app=db", "10.0.3.10"),
		},
		[]policySpec{
			// namespace level: api's ingress
			{name: "api-in", subject: sel("app=api"), rules: []ruleSpec{
				in(dsl.Deny, web, tcp(80, 80)),               // admin allow overrides it
				in(dsl.Allow, web, tcp(8080, 8080)),          // admin deny overrides it
				in(dsl.Allow, web, tcp(9090, 9090)),          // reached through an admin pass
				in(dsl.Allow, web, tcp(443, 443)),            // reached through overlapping classes
				in(dsl.Allow, web, tcp(1500, 2500)),          // overlaps the admin range in part
				in(dsl.Allow, peers(peerWorld), udp(53, 53)), // world
			}},
			// admin tier; "a-pass" and "b-deny" overlap on 443 with
			// different remotes
			{name: "a-pass", subject: sel("app=api"), tier: dsl.TierAdmin, priority: 1, rules: []ruleSpec{
				in(dsl.Pass, peers(peerAny), tcp(443, 443)),
			}},
			{name: "b-deny", subject: sel("app=api"), tier: dsl.TierAdmin, priority: 2, rules: []ruleSpec{
				in(dsl.Deny, web, tcp(443, 443)),
			}},
			{name: "guard", subject: sel(""), tier: dsl.TierAdmin, priority: 10, rules: []ruleSpec{
				in(dsl.Allow, web, tcp(80, 80)),
				in(dsl.Deny, web, tcp(8080, 8080)),
				in(dsl.Pass, web, tcp(9090, 9091)),
				in(dsl.Deny, web, tcp(1000, 1999)),
				in(dsl.Pass, web, tcp(5432, 5432)),
				out(dsl.Allow, peers(peerWorld), udp(53, 53)),
			}},
			// baseline tier
			{name: "defaults", subject: sel(""), tier: dsl.TierBaseline, priority: 0, rules: []ruleSpec{
				in(dsl.Deny, web, tcp(5432, 5432)),
				in(dsl.Allow, peers(peerAny), tcp(7000, 7000)), // api is isolated: never applies there
				in(dsl.Pass, web, tcp(6000, 6000)),
				in(dsl.Deny, peers(peerAny), tcp(6000, 6001)), // after the pass: not reached from web
				out(dsl.Deny, peers(peerAny)),
			}},
			{name: "late", subject: sel("app=db"), tier: dsl.TierBaseline, priority: 5, rules: []ruleSpec{
				in(dsl.Allow, db, tcp(6000, 6000)),
			}},
		},
	)
}

// ruleOf is the id of the n-th rule of a policy.
func ruleOf(t testing.TB, prog *ir.Program, policy string, n int) ir.RuleID {
	t.Helper()
	for _, p := range prog.Policies {
		if p.Name == policy && n < len(p.Rules) {
			return p.Rules[n]
		}
	}
	t.Fatalf("no rule %d in policy %s", n, policy)
	return 0
}

type tierCase struct {
	name     string
	pkt      ir.Packet
	dir      dsl.Direction // the hook whose decision is expected
	verdict  uint8
	policy   string // the deciding rule: policy and index, or
	n        int
	reserved ir.RuleID // a reserved id (policy "")
}

func tierCases() []tierCase {
	pk := func(proto ir.Proto, src, dst string, port uint16) ir.Packet {
		return ir.Packet{Proto: proto, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), SPort: 40000, DPort: port, TCPFlags: ir.TCPSyn}
	}
	const web, api, db, world = "10.0.1.10", "10.0.2.10", "10.0.3.10", "8.8.8.8"
	allow, deny := bpf.VerdictAllow, bpf.VerdictDeny
	return []tierCase{
		{"admin allow over untiered deny", pk(ir.ProtoTCP, web, api, 80), dsl.Ingress, allow, "guard", 0, 0},
		{"admin allow over untiered deny, v6", pk(ir.ProtoTCP, "fd00::10", "fd00::20", 80), dsl.Ingress, allow, "guard", 0, 0},
		{"admin deny over untiered allow", pk(ir.ProtoTCP, web, api, 8080), dsl.Ingress, deny, "guard", 1, 0},
		{"pass to the namespace level", pk(ir.ProtoTCP, web, api, 9090), dsl.Ingress, allow, "api-in", 2, 0},
		{"pass to the namespace level, default deny", pk(ir.ProtoTCP, web, api, 9091), dsl.Ingress, deny, "", 0, ir.RuleDefaultDeny},
		{"pass to baseline, not isolated", pk(ir.ProtoTCP, web, db, 5432), dsl.Ingress, deny, "defaults", 0, 0},
		{"baseline ignored where untiered isolates", pk(ir.ProtoTCP, web, api, 7000), dsl.Ingress, deny, "", 0, ir.RuleDefaultDeny},
		{"baseline applies where nothing isolates", pk(ir.ProtoTCP, web, db, 7000), dsl.Ingress, allow, "defaults", 1, 0},
		{"baseline pass to default allow", pk(ir.ProtoTCP, web, db, 6000), dsl.Ingress, allow, "", 0, ir.RuleDefaultAllow},
		{"baseline rule after another's pass", pk(ir.ProtoTCP, api, db, 6000), dsl.Ingress, deny, "defaults", 3, 0},
		{"baseline by priority", pk(ir.ProtoTCP, db, db, 6000), dsl.Ingress, deny, "defaults", 3, 0},
		{"overlapping classes: pass of rank 1 over deny of rank 2", pk(ir.ProtoTCP, web, api, 443), dsl.Ingress, allow, "api-in", 3, 0},
		{"overlapping classes: another remote", pk(ir.ProtoTCP, db, api, 443), dsl.Ingress, deny, "", 0, ir.RuleDefaultDeny},
		{"admin range alone", pk(ir.ProtoTCP, web, api, 1200), dsl.Ingress, deny, "guard", 3, 0},
		{"admin range over untiered range", pk(ir.ProtoTCP, web, api, 1700), dsl.Ingress, deny, "guard", 3, 0},
		{"untiered range beyond the admin one", pk(ir.ProtoTCP, web, api, 2200), dsl.Ingress, allow, "api-in", 4, 0},
		{"beyond both ranges", pk(ir.ProtoTCP, web, api, 2600), dsl.Ingress, deny, "", 0, ir.RuleDefaultDeny},
		{"untiered world", pk(ir.ProtoUDP, world, api, 53), dsl.Ingress, allow, "api-in", 5, 0},
		{"admin egress over baseline", pk(ir.ProtoUDP, web, world, 53), dsl.Egress, allow, "guard", 5, 0},
		{"baseline egress deny", pk(ir.ProtoTCP, web, world, 80), dsl.Egress, deny, "defaults", 4, 0},
		{"baseline egress to an endpoint", pk(ir.ProtoTCP, web, api, 80), dsl.Egress, deny, "defaults", 4, 0},
	}
}

func (c tierCase) want(t testing.TB, prog *ir.Program) decision {
	if c.policy == "" {
		return decision{c.verdict, c.reserved}
	}
	return decision{c.verdict, ruleOf(t, prog, c.policy, c.n)}
}

// TestTiersLowering checks the tiered program's entries, looked up as the
// datapath does, against expected verdicts and rules and against the
// reference meaning at both hooks of every packet.
func TestTiersLowering(t *testing.T) {
	prog := tieredProgram()
	b := mustBuild(t, prog)
	dp := newDatapath(t, b)
	ref := refEval{prog}
	for _, c := range tierCases() {
		eg, in, egOK, inOK := dp.observe(c.pkt)
		weg, win, wegOK, winOK := ref.observe(c.pkt)
		if eg != weg || in != win || egOK != wegOK || inOK != winOK {
			t.Errorf("%s: datapath egress %v ingress %v, meaning egress %v ingress %v", c.name, eg, in, weg, win)
		}
		got, ok := in, inOK
		if c.dir == dsl.Egress {
			got, ok = eg, egOK
		}
		if want := c.want(t, prog); !ok || got != want {
			t.Errorf("%s: %s decision %v (hook %v), want %v", c.name, c.dir, got, ok, want)
		}
	}
	// db and web are isolated by no untiered policy: the ipcache says so
	for _, line := range ipcacheLines(b) {
		if (strings.HasPrefix(line, "10.0.1.10 ") || strings.HasPrefix(line, "10.0.3.10 ")) && containsWord(line, "ingress-isolated") {
			t.Errorf("ipcache %s: isolated by tiered policies alone", line)
		}
	}
	if !containsLine(ipcacheLines(b), "10.0.2.10 api local,ingress-isolated") {
		t.Errorf("api is not ingress-isolated:\n%v", ipcacheLines(b))
	}
}

func containsWord(s, w string) bool {
	return slices.Contains(strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' }), w)
}

func containsLine(lines []string, prefix string) bool {
	return slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, prefix) })
}

// TestTiersUntieredUnchanged: an untiered program's entries carry no
// tiered slot, and a tiered policy that selects no endpoint changes no
// entry and no ipcache flag.
func TestTiersUntieredUnchanged(t *testing.T) {
	base := mustBuild(t, quickstart())
	for _, row := range base.Decode().Policy {
		if row.Admin != nil || row.Tier != "" {
			t.Errorf("untiered program has a tiered entry: %+v", row)
		}
	}
	prog := quickstart()
	prog.Policies = append(prog.Policies, &ir.Policy{Name: "z-nobody", Subject: sel("app=nobody"), Tier: dsl.TierAdmin, Priority: 3,
		Rules: []ir.RuleID{ir.RuleID(len(prog.Rules)) + ir.FirstRuleID}})
	prog.Rules = append(prog.Rules, &ir.Rule{ID: ir.RuleID(len(prog.Rules)) + ir.FirstRuleID, Policy: "z-nobody", Dir: dsl.Ingress,
		Action: dsl.Deny, Peers: peers(peerAny), Ports: []ir.PortMatch{anyProto}, Tier: dsl.TierAdmin, Priority: 3, Rank: 1})
	tiered := mustBuild(t, prog)
	diffLines(t, "policy entries", policyLines(tiered), policyLines(base))
	diffLines(t, "ipcache", ipcacheLines(tiered), ipcacheLines(base))
}

// requireBPF skips a test that needs root, unless CI=true, where it fails.
func requireBPF(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("BPF tests need root, and CI=true forbids skipping them")
	}
	t.Skip("BPF tests need root (set CI=true to make this a failure)")
}

// openKernel builds prog with the real BPF object and loads it for
// BPF_PROG_TEST_RUN (closed when the test ends).
func openKernel(t *testing.T, prog *ir.Program) *harness.Kernel {
	t.Helper()
	b, err := Build(prog, bpf.Object(), Options{Compiler: "test"})
	if err != nil {
		t.Fatal(err)
	}
	k, err := harness.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// TestTiersKernel runs the tiered cases through the kernel programs
// (BPF_PROG_TEST_RUN via the harness) and checks each hook's verdict and
// rule, with the same expectations as TestTiersLowering.
func TestTiersKernel(t *testing.T) {
	requireBPF(t)
	prog := tieredProgram()
	k := openKernel(t, prog)
	ref := refEval{prog}
	for _, c := range tierCases() {
		if err := k.Reset(); err != nil {
			t.Fatal(err)
		}
		res, err := k.Run(packet.FromIR(c.pkt), c.pkt.Src, c.pkt.Dst, false)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		weg, win, _, _ := ref.observe(c.pkt)
		seen := map[dsl.Direction]bool{}
		for _, p := range res.Points {
			got := decision{bpf.VerdictAllow, p.Rule}
			if p.Verdict == dsl.VerdictDeny {
				got.verdict = bpf.VerdictDeny
			}
			want := win
			if p.Dir == dsl.Egress {
				want = weg
			}
			if p.Dir == c.dir {
				want = c.want(t, prog)
			}
			seen[p.Dir] = true
			if got != want {
				t.Errorf("%s: kernel %s %v, want %v", c.name, p.Dir, got, want)
			}
		}
		if !seen[c.dir] {
			t.Errorf("%s: no %s hook ran (%s)", c.name, c.dir, fmt.Sprint(res.Points))
		}
	}
}

// TestTiersAuditKernel: the audit question asks every policy with the same
// tiers. api is ingress-isolated by an untiered policy and audited by an
// audit policy that allows nothing on 81 and denies 82.
func TestTiersAuditKernel(t *testing.T) {
	requireBPF(t)
	web := peers(peerSel("app=web"))
	prog := program(
		[]*ir.Endpoint{ep("web", "app=web", "10.0.1.10"), ep("api", "app=api", "10.0.2.10")},
		[]policySpec{
			{name: "api-in", subject: sel("app=api"), rules: []ruleSpec{
				in(dsl.Allow, web, tcp(80, 80)),
				in(dsl.Allow, web, tcp(82, 82)),
			}},
			{name: "guard", subject: sel("app=api"), tier: dsl.TierAdmin, priority: 1, rules: []ruleSpec{
				in(dsl.Allow, web, tcp(81, 81)),
				in(dsl.Pass, web, tcp(82, 82)),
			}},
			{name: "strict", subject: sel("app=api"), rules: []ruleSpec{
				in(dsl.Deny, web, tcp(82, 82)),
			}},
		},
	)
	for _, p := range prog.Policies {
		if p.Name == "strict" {
			p.Audit = true
			for _, id := range p.Rules {
				prog.Rules[id-ir.FirstRuleID].Audit = true
			}
		}
	}
	k := openKernel(t, prog)
	for _, c := range []struct {
		port        uint16
		rule, audit ir.RuleID
	}{
		{80, ruleOf(t, prog, "api-in", 0), 0},
		// admin allow: every policy allows (without the admin rule in
		// the audit question, audit-default-deny)
		{81, ruleOf(t, prog, "guard", 0), 0},
		// admin pass: the audit policy's deny
		{82, ruleOf(t, prog, "api-in", 1), ruleOf(t, prog, "strict", 0)},
	} {
		if err := k.Reset(); err != nil {
			t.Fatal(err)
		}
		pkt := ir.Packet{Proto: ir.ProtoTCP, Src: netip.MustParseAddr("10.0.1.10"), Dst: netip.MustParseAddr("10.0.2.10"), SPort: 40000, DPort: c.port, TCPFlags: ir.TCPSyn}
		res, err := k.Run(packet.FromIR(pkt), pkt.Src, pkt.Dst, false)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, p := range res.Points {
			if p.Dir != dsl.Ingress {
				continue
			}
			found = true
			if p.Verdict != dsl.VerdictAllow || p.Rule != c.rule || p.Audit != c.audit {
				t.Errorf("port %d: ingress %v rule %d audit %d, want allow rule %d audit %d", c.port, p.Verdict, p.Rule, p.Audit, c.rule, c.audit)
			}
		}
		if !found {
			t.Errorf("port %d: no ingress hook ran", c.port)
		}
	}
}

// TestTiersThousandAdminPolicies: 1 000 admin policies on a subject add
// entries, not lookups. The hot class (B's tcp/80) keeps its untiered
// allow in the main slot and gains the lowest-rank pass in its admin slot,
// and the subject's ipcache flags (isolation, probe hints, ranges) stay
// those of the untiered program: the datapath probes the same keys. This
// is the world bpf's BenchmarkDatapath tiers=1000 cases load
// (addAdminTier).
func TestTiersThousandAdminPolicies(t *testing.T) {
	eps := []*ir.Endpoint{ep("b", "app=b", "10.0.0.2"), ep("d", "app=d", "10.0.0.4")}
	untiered := policySpec{name: "d-in", subject: sel("app=d"), rules: []ruleSpec{
		in(dsl.Allow, peers(peerSel("app=b")), tcp(80, 80)),
	}}
	pols := []policySpec{untiered}
	for i := range 1000 {
		pols = append(pols, policySpec{name: fmt.Sprintf("admin%04d", i), subject: sel("app=d"), tier: dsl.TierAdmin, priority: i, rules: []ruleSpec{
			in(dsl.Deny, peers(peerCIDR(fmt.Sprintf("172.16.%d.%d/32", i/256, i%256))), tcp(uint16(1000+i), uint16(1000+i))),
			in(dsl.Pass, peers(peerSel("app=b")), tcp(80, 80)),
			in(dsl.Deny, peers(peerSel("app=b")), tcp(uint16(20000+i), uint16(20000+i))),
		}})
	}
	base, tiered := mustBuild(t, program(eps, []policySpec{untiered})), program(eps, pols)
	b := mustBuild(t, tiered)
	// the same flags, hints and ranges as without the admin tier, so the
	// same probes; only d's tiered-deny flag is new (it drops later
	// fragments of unknown datagrams, which the isolation does anyway)
	got := endpointIPCache(b)
	for i, l := range got {
		if strings.HasPrefix(l, "10.0.0.4 ") {
			if !strings.Contains(l, ",ingress-tiered-deny") {
				t.Errorf("d lacks ingress-tiered-deny: %s", l)
			}
			got[i] = strings.Replace(l, ",ingress-tiered-deny", "", 1)
		}
	}
	diffLines(t, "ipcache of the endpoints", got, endpointIPCache(base))
	rows := b.Decode().Policy
	if len(rows) != 1+2*1000 {
		t.Errorf("%d policy entries, want %d", len(rows), 1+2*1000)
	}
	names := idNames(b)
	hot := 0
	for _, r := range rows {
		if names[r.Remote] != "b" || r.Lo != 80 {
			continue
		}
		hot++
		want := ruleOf(t, tiered, "admin0000", 1)
		if r.Verdict != "allow" || ir.RuleID(r.Rule) != ruleOf(t, tiered, "d-in", 0) || r.Admin == nil ||
			*r.Admin != (bundle.AdminSlot{Verdict: "pass", Rule: uint32(want), Rank: 2}) {
			t.Errorf("hot class %+v (admin %+v), want allow %d with admin pass %d rank 2", r, r.Admin, ruleOf(t, tiered, "d-in", 0), want)
		}
	}
	if hot != 1 {
		t.Errorf("%d entries for b tcp/80, want 1", hot)
	}
	if len(b.Decode().PolicyRanges) != 0 {
		t.Errorf("range entries: %v", b.Decode().PolicyRanges)
	}
}

// endpointIPCache is the ipcache lines of local endpoints' addresses.
func endpointIPCache(b *bundle.Bundle) []string {
	var out []string
	for _, l := range ipcacheLines(b) {
		if containsWord(l, "local") {
			out = append(out, l)
		}
	}
	return out
}

// TestTiersTestdataKernel loads testdata/tiers (the language's tiered
// example) into the kernel and checks its own tests, then every probe
// packet of TestGoldenBundles, kernel against the reference evaluator
// (compiler/eval), verdict and rule at each hook.
func TestTiersTestdataKernel(t *testing.T) {
	requireBPF(t)
	t.Chdir("../..")
	for _, path := range []string{"testdata/tiers/tiers.pol", "testdata/tiers/tiers.yaml"} {
		t.Run(path, func(t *testing.T) {
			prog, _, diags := compiler.Load([]string{path})
			if diags.HasErrors() || prog == nil {
				t.Fatalf("load: %v", diags)
			}
			k := openKernel(t, prog)
			ev := eval.New(prog)
			results, err := harness.RunTests(prog, ev, harness.RunOptions{Kernel: k})
			if err != nil {
				t.Fatal(err)
			}
			if len(results) == 0 {
				t.Fatal("no tests in the policy")
			}
			for _, tr := range results {
				for _, sr := range tr.Steps {
					for _, p := range sr.Problems {
						t.Errorf("%s: step %d: %s", tr.Test.Name, sr.Index+1, p)
					}
				}
			}
			n, checked := 0, 0
			for _, p := range probePackets(prog) {
				// Hairpin packets of protocols without ports differ
				// in the rule alone, without tiers too (quickstart
				// has it): the kernel's egress opens a conntrack
				// entry the ingress then reports as established,
				// the evaluator says default-allow.
				if p.Src == p.Dst && !p.Proto.HasPorts() && !p.Proto.IsICMP() {
					continue
				}
				if err := k.Reset(); err != nil {
					t.Fatal(err)
				}
				o, err := harness.Decide(ev, eval.NewConntrack(), k, harness.CaseFromIR(ev, p))
				if err != nil {
					t.Fatal(err)
				}
				checked++
				if d := o.Diff(); d != "" {
					t.Errorf("%s: %s", harness.FormatPacket(p), d)
					if n++; n > 20 {
						t.Fatal("too many differences")
					}
				}
			}
			if checked < 100 {
				t.Errorf("only %d probe packets", checked)
			}
			t.Logf("%d tests, %d probe packets in the kernel", len(results), checked)
		})
	}
}

// TestTiersBadRanks: a tiered rule without a rank, or two rules of a tier
// with one rank, fail the build with an error, not an arbitrary order.
func TestTiersBadRanks(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(p *ir.Program)
		want string
	}{
		{"no rank", func(p *ir.Program) { p.Rules[2].Rank = 0 }, "rule 18 of admin policy guard has no rank"},
		{"shared rank", func(p *ir.Program) { p.Rules[3].Rank = p.Rules[2].Rank }, "rules 18 and 19 share rank 1 in the admin tier"},
		{"not a tier", func(p *ir.Program) { p.Rules[2].Tier = 7 }, "rule 18 of policy guard has tier 7, which is not a tier"},
	} {
		prog := program([]*ir.Endpoint{ep("web", "app=web", "10.0.1.10")}, []policySpec{
			{name: "a-in", subject: sel(""), rules: []ruleSpec{in(dsl.Allow, nil), in(dsl.Deny, nil)}},
			{name: "guard", subject: sel(""), tier: dsl.TierAdmin, priority: 1, rules: []ruleSpec{in(dsl.Allow, nil), in(dsl.Deny, nil)}},
		})
		c.edit(prog)
		_, err := Build(prog, nil, Options{})
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}
