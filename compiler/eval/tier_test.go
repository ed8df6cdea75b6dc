package eval

import (
	"slices"
	"testing"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// tiered adds a policy of tier t with priority prio: it never isolates.
// Its rules get a Rank that is deliberately wrong (descending), so the
// tests also show that the evaluator orders a tier from the policies and
// rule ids, as the meaning says, not from Rank.
func (b *builder) tiered(name string, t dsl.Tier, prio int, subj ir.Selector, rules ...ir.Rule) *ir.Policy {
	pol := b.policy(name, subj, rules...)
	pol.Isolates = [2]bool{}
	pol.Tier, pol.Priority = t, prio
	for _, id := range pol.Rules {
		r := b.p.Rules[id-ir.FirstRuleID]
		r.Tier, r.Priority, r.Rank = t, prio, uint32(1000-len(b.p.Rules))
	}
	return pol
}

func admin(b *builder, name string, prio int, rules ...ir.Rule) *ir.Policy {
	return b.tiered(name, dsl.TierAdmin, prio, apiSel(), rules...)
}

func baseline(b *builder, name string, prio int, rules ...ir.Rule) *ir.Policy {
	return b.tiered(name, dsl.TierBaseline, prio, apiSel(), rules...)
}

func inPass(peers []ir.Peer, ports ...ir.PortMatch) ir.Rule {
	return rule(dsl.Ingress, dsl.Pass, peers, ports...)
}

// TestTiers covers the order of the tiers at one point (api's ingress,
// from an address outside so that it is the only point): admin first
// match, pass to the namespace level, baseline where the namespace level
// does not isolate, default allow. passes are the pass rules crossed.
func TestTiers(t *testing.T) {
	from := syn(worldIP, 40000, apiIP, 8080)
	cases := []struct {
		name   string
		setup  func(b *builder)
		want   want
		passes []int
		level  Level
	}{
		{"admin allow beats a namespace default-deny", func(b *builder) {
			admin(b, "guard", 10, inAllow(nil, tcp(8080, 8080)))
			b.policy("api-in", apiSel(), inAllow(nil, tcp(22, 22)))
		}, allowBy(0), nil, LevelAdmin},
		{"admin allow beats a namespace deny", func(b *builder) {
			b.policy("api-in", apiSel(), inDeny(nil))
			admin(b, "guard", 10, inAllow(nil, tcp(8080, 8080)))
		}, allowBy(1), nil, LevelAdmin},
		{"admin deny beats a namespace allow", func(b *builder) {
			b.policy("api-in", apiSel(), inAllow(nil))
			admin(b, "guard", 10, inDeny(peers(world)))
		}, denyBy(1), nil, LevelAdmin},
		{"admin deny on a subject no namespace policy selects", func(b *builder) {
			admin(b, "guard", 10, inDeny(nil, tcp(8080, 8080)))
		}, denyBy(0), nil, LevelAdmin},
		{"admin: the first matching rule of a policy decides", func(b *builder) {
			admin(b, "guard", 10, inAllow(nil, tcp(8080, 8080)), inDeny(nil))
		}, allowBy(0), nil, LevelAdmin},
		{"admin: a lower priority decides first", func(b *builder) {
			admin(b, "a-late", 20, inAllow(nil))
			admin(b, "z-early", 5, inDeny(nil))
		}, denyBy(1), nil, LevelAdmin},
		{"admin: same priority, name order", func(b *builder) {
			admin(b, "b", 10, inDeny(nil))
			admin(b, "a", 10, inAllow(nil))
		}, allowBy(1), nil, LevelAdmin},
		{"admin: a rule that does not match leaves the namespace level", func(b *builder) {
			admin(b, "guard", 10, inDeny(nil, tcp(22, 22)))
			b.policy("api-in", apiSel(), inAllow(nil, tcp(8080, 8080)))
		}, allowBy(1), nil, LevelNamespace},
		{"admin pass to a namespace allow", func(b *builder) {
			admin(b, "guard", 10, inPass(nil), inDeny(nil))
			b.policy("api-in", apiSel(), inAllow(nil, tcp(8080, 8080)))
		}, allowBy(2), []int{0}, LevelNamespace},
		{"admin pass to a namespace default-deny", func(b *builder) {
			admin(b, "guard", 10, inPass(peers(world)))
			b.policy("api-in", apiSel(), inAllow(nil, tcp(22, 22)))
		}, denyDefault, []int{0}, LevelNamespace},
		{"admin pass skips later admin policies", func(b *builder) {
			admin(b, "first", 1, inPass(nil))
			admin(b, "second", 2, inDeny(nil))
		}, allowDefault, []int{0}, LevelDefault},
		{"admin pass to a baseline deny", func(b *builder) {
			admin(b, "guard", 10, inPass(nil))
			baseline(b, "base", 0, inDeny(nil, tcp(8080, 8080)))
		}, denyBy(1), []int{0}, LevelBaseline},
		{"baseline deny where nothing isolates", func(b *builder) {
			baseline(b, "base", 0, inDeny(nil, tcp(8080, 8080)))
		}, denyBy(0), nil, LevelBaseline},
		{"baseline allow", func(b *builder) {
			baseline(b, "base", 0, inAllow(nil, tcp(8080, 8080)), inDeny(nil))
		}, allowBy(0), nil, LevelBaseline},
		{"baseline: a lower priority decides first", func(b *builder) {
			baseline(b, "a", 7, inDeny(nil))
			baseline(b, "b", 3, inAllow(nil))
		}, allowBy(1), nil, LevelBaseline},
		{"baseline overridden by a namespace allow", func(b *builder) {
			baseline(b, "base", 0, inDeny(nil))
			b.policy("api-in", apiSel(), inAllow(nil, tcp(8080, 8080)))
		}, allowBy(1), nil, LevelNamespace},
		{"baseline allow does not open a namespace default-deny", func(b *builder) {
			baseline(b, "base", 0, inAllow(nil))
			b.policy("api-in", apiSel(), inAllow(nil, tcp(22, 22)))
		}, denyDefault, nil, LevelNamespace},
		{"baseline applies when the namespace level isolates the other direction", func(b *builder) {
			baseline(b, "base", 0, inDeny(nil))
			b.policy("api-out", apiSel(), outAllow(nil))
		}, denyBy(0), nil, LevelBaseline},
		{"baseline pass to default allow", func(b *builder) {
			baseline(b, "base", 0, inPass(nil, tcp(8080, 8080)))
			baseline(b, "later", 5, inDeny(nil))
		}, allowDefault, []int{0}, LevelDefault},
		{"admin pass, then baseline pass", func(b *builder) {
			admin(b, "guard", 10, inPass(nil))
			baseline(b, "base", 0, inPass(nil), inDeny(nil))
		}, allowDefault, []int{0, 1}, LevelDefault},
		{"tiered policies of another subject", func(b *builder) {
			b.tiered("db-guard", dsl.TierAdmin, 0, sel(eq("app", "db")), inDeny(nil))
			b.tiered("db-base", dsl.TierBaseline, 0, sel(eq("app", "db")), inDeny(nil))
		}, allowDefault, nil, LevelDefault},
		{"tiered rules of the other direction", func(b *builder) {
			admin(b, "guard", 10, rule(dsl.Egress, dsl.Deny, nil))
			baseline(b, "base", 0, rule(dsl.Egress, dsl.Deny, nil))
		}, allowDefault, nil, LevelDefault},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := fixture()
			c.setup(b)
			res := b.eval().Eval(nil, from)
			check(t, "result", res, c.want)
			checkPoints(t, "points", res, c.want)
			var want []ir.RuleID
			for _, n := range c.passes {
				want = append(want, ruleID(n))
			}
			if got := res.Points[0].Passes; !slices.Equal(got, want) {
				t.Errorf("passes %v, want %v", got, want)
			}
			if got := res.Points[0].Level; got != c.level {
				t.Errorf("level %v, want %v", got, c.level)
			}
		})
	}
}

// TestTiersAudit: with an audit policy, the audit question is the same
// decision with every policy, tiers included.
func TestTiersAudit(t *testing.T) {
	from := syn(worldIP, 40000, apiIP, 8080)
	t.Run("audit isolation takes the baseline's place", func(t *testing.T) {
		b := fixture()
		admin(b, "guard", 10, inPass(nil))
		baseline(b, "base", 0, inAllow(nil))
		b.policy("watch", apiSel(), inAllow(nil, tcp(22, 22))).Audit = true
		res := b.eval().Eval(nil, from)
		check(t, "result", res, allowBy(1))
		if res.Audit != ir.RuleAuditDefaultDeny || !slices.Equal(res.Points[0].Passes, []ir.RuleID{ruleID(0)}) {
			t.Errorf("got %s, want audit %s after pass rule 16", res, ruleName(ir.RuleAuditDefaultDeny))
		}
	})
	t.Run("an admin decision leaves nothing to audit", func(t *testing.T) {
		b := fixture()
		admin(b, "guard", 10, inAllow(nil))
		b.policy("watch", apiSel(), inDeny(nil)).Audit = true
		res := b.eval().Eval(nil, from)
		check(t, "result", res, allowBy(0))
		if res.Audit != 0 {
			t.Errorf("got %s, want no audit", res)
		}
	})
	t.Run("audit deny after an admin pass", func(t *testing.T) {
		b := fixture()
		admin(b, "guard", 10, inPass(nil))
		b.policy("watch", apiSel(), inDeny(nil)).Audit = true
		res := b.eval().Eval(nil, from)
		check(t, "result", res, allowDefault)
		if res.Audit != ruleID(1) {
			t.Errorf("got %s, want audit %s", res, ruleName(ruleID(1)))
		}
	})
}

// TestTiersBothPoints: each point runs the tiers of its own subject and
// direction; a reply of a flow an admin rule allowed is established.
func TestTiersBothPoints(t *testing.T) {
	b := fixture()
	b.tiered("web-guard", dsl.TierAdmin, 1, sel(eq("app", "web")), rule(dsl.Egress, dsl.Pass, nil, tcp(8080, 8080)))
	b.policy("web-out", sel(eq("app", "web")), outAllow(peers(selPeer(eq("app", "api")))))
	admin(b, "api-guard", 2, inAllow(peers(selPeer(eq("app", "web"))), tcp(8080, 8080)))
	b.policy("api-in", apiSel(), inDeny(nil))
	ev := b.eval()
	ct := NewConntrack()
	p := syn(webIP, 40000, apiIP, 8080)
	res := ev.Eval(ct, p)
	checkPoints(t, "first packet", res, allowBy(1), allowBy(2))
	if !slices.Equal(res.Points[0].Passes, []ir.RuleID{ruleID(0)}) || res.Points[1].Passes != nil {
		t.Errorf("passes: got %s", res)
	}
	check(t, "reply", ev.Eval(ct, reply(p)), established)
	check(t, "other port", ev.Eval(nil, syn(webIP, 40000, apiIP, 8081)), denyBy(3))
}

// TestTiersUntieredUnchanged: tiers cost untiered programs nothing: no
// passes, and the namespace level is as before.
func TestTiersUntieredUnchanged(t *testing.T) {
	b := fixture()
	b.policy("api-in", apiSel(), inAllow(nil, tcp(8080, 8080)))
	res := b.eval().Eval(nil, syn(webIP, 1, apiIP, 8080))
	for _, p := range res.Points {
		if p.Passes != nil {
			t.Errorf("point %s has passes", p)
		}
	}
	if got, want := res.String(), "allow (rule 16); web egress to 10.0.2.10 [endpoint api]: allow (default-allow); api ingress from 10.0.1.10 [endpoint web]: allow (rule 16)"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// TestTieredRules lists the tiers in their order.
func TestTieredRules(t *testing.T) {
	b := fixture()
	admin(b, "b", 5, inDeny(nil), inAllow(nil))
	admin(b, "a", 5, inPass(nil))
	admin(b, "c", 1, inDeny(nil), rule(dsl.Egress, dsl.Deny, nil))
	baseline(b, "base", 0, inDeny(nil))
	ad, base, ok := b.eval().TieredRules("api", dsl.Ingress)
	ids := func(rs []*ir.Rule) (out []ir.RuleID) {
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	if !ok || !slices.Equal(ids(ad), []ir.RuleID{ruleID(3), ruleID(2), ruleID(0), ruleID(1)}) || !slices.Equal(ids(base), []ir.RuleID{ruleID(5)}) {
		t.Errorf("got admin %v baseline %v ok %v", ids(ad), ids(base), ok)
	}
	if _, _, ok := b.eval().TieredRules("nobody", dsl.Ingress); ok {
		t.Error("ok for an unknown endpoint")
	}
}
