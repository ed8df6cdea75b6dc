package dsl

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestParseTier: `tier`, `priority` and `pass` fill Policy.Tier, TierPos,
// Priority, PriorityPos and Rule.Action, on the fast path and through
// participle alike.
func TestParseTier(t *testing.T) {
	src := `policy guard tier admin priority 10 {
  select {}
  egress pass to ns=kube-system
}
policy base tier baseline priority 0 {
  select {}
}
policy p priority 7 {
  select {}
}`
	for _, fast := range []bool{true, false} {
		polUseFastPath = fast
		f := polMustParse(t, src)
		polUseFastPath = true
		g, b, p := f.Decls[0].(*Policy), f.Decls[1].(*Policy), f.Decls[2].(*Policy)
		type tierOf struct {
			Tier        Tier
			TierPos     Pos
			Priority    int
			PriorityPos Pos
		}
		got := []tierOf{{g.Tier, g.TierPos, g.Priority, g.PriorityPos}, {b.Tier, b.TierPos, b.Priority, b.PriorityPos}, {p.Tier, p.TierPos, p.Priority, p.PriorityPos}}
		want := []tierOf{
			{TierAdmin, polAt(1, 14), 10, polAt(1, 25)},
			{TierBaseline, polAt(5, 13), 0, polAt(5, 27)},
			{TierNone, Pos{}, 7, polAt(8, 10)},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("fast path %v: tiers (-want +got):\n%s", fast, diff)
		}
		if len(g.Rules) != 1 || g.Rules[0].Action != Pass {
			t.Errorf("fast path %v: rules %+v, want one pass rule", fast, g.Rules)
		}
	}
}

// TestTierWordsAreNames: tier, admin, baseline, priority and pass are
// words, not keywords, so names written before tiers existed still parse.
func TestTierWordsAreNames(t *testing.T) {
	src := `endpoint pass labels(tier=admin) addr 10.0.0.1
cidrset priority = 10.1.0.0/16
policy tier {
  select tier=baseline
  ingress allow from priority
}
policy admin tier admin priority 1 {
  select {}
  ingress pass from priority
}`
	f := polMustParse(t, src)
	if n := len(f.Decls); n != 4 {
		t.Fatalf("%d declarations, want 4", n)
	}
	if p := f.Decls[2].(*Policy); p.Name.Name != "tier" || p.Tier != TierNone {
		t.Errorf("policy tier: got name %q tier %v", p.Name.Name, p.Tier)
	}
	if p := f.Decls[3].(*Policy); p.Name.Name != "admin" || p.Tier != TierAdmin || p.Rules[0].Action != Pass || p.Rules[0].Peers[0].Kind != PeerSet {
		t.Errorf("policy admin: got %+v", p)
	}
}
