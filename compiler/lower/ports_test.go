package lower

import (
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

func TestPortPrefixes(t *testing.T) {
	cases := []struct {
		lo, hi uint16
		want   []portPrefix
	}{
		{0, 65535, []portPrefix{{0, 0}}},
		{8080, 8080, []portPrefix{{8080, 16}}},
		{8080, 8095, []portPrefix{{8080, 12}}},
		{8080, 8090, []portPrefix{{8080, 13}, {8088, 15}, {8090, 16}}},
		{1, 65534, []portPrefix{{1, 16}, {2, 15}, {4, 14}, {8, 13}, {16, 12}, {32, 11}, {64, 10}, {128, 9}, {256, 8}, {512, 7},
			{1024, 6}, {2048, 5}, {4096, 4}, {8192, 3}, {16384, 2}, {32768, 2}, {49152, 3}, {57344, 4}, {61440, 5}, {63488, 6},
			{64512, 7}, {65024, 8}, {65280, 9}, {65408, 10}, {65472, 11}, {65504, 12}, {65520, 13}, {65528, 14}, {65532, 15}, {65534, 16}}},
		{0x0800, 0x08ff, []portPrefix{{0x0800, 8}}},
		{1024, 65535, []portPrefix{{1024, 6}, {2048, 5}, {4096, 4}, {8192, 3}, {16384, 2}, {32768, 1}}},
	}
	for _, c := range cases {
		if d := cmp.Diff(c.want, portPrefixes(c.lo, c.hi), cmp.AllowUnexported(portPrefix{})); d != "" {
			t.Errorf("portPrefixes(%d, %d) (-want +got):\n%s", c.lo, c.hi, d)
		}
	}
}

// TestPortPrefixesCover checks on random intervals that the blocks are
// aligned, disjoint, in order and cover exactly lo..hi, and that there are
// at most 2·16−2 of them (the bound for the fewest prefixes).
func TestPortPrefixesCover(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		lo, hi := uint16(r.IntN(65536)), uint16(r.IntN(65536))
		if lo > hi {
			lo, hi = hi, lo
		}
		next := uint32(lo)
		ps := portPrefixes(lo, hi)
		for _, p := range ps {
			size := uint32(1) << (16 - p.bits)
			if uint32(p.port) != next || uint32(p.port)%size != 0 {
				t.Fatalf("%d-%d: block %+v not aligned or not contiguous", lo, hi, p)
			}
			next += size
		}
		if next != uint32(hi)+1 || len(ps) > 30 {
			t.Fatalf("%d-%d: blocks %+v", lo, hi, ps)
		}
	}
}

// untiered and admin make the port rules of untiered and admin rules.
func untiered(lo, hi uint16, deny bool, id ir.RuleID) portRule {
	a := dsl.Allow
	if deny {
		a = dsl.Deny
	}
	admin, h := slotOf(&ir.Rule{ID: id, Action: a})
	return portRule{lo, hi, admin, h}
}

func tiered(tier dsl.Tier, lo, hi uint16, a dsl.Action, id ir.RuleID, rank uint32) portRule {
	admin, h := slotOf(&ir.Rule{ID: id, Action: a, Tier: tier, Rank: rank})
	return portRule{lo, hi, admin, h}
}

type ivValue struct {
	lo, hi uint16
	val    bpf.PolicyValue
}

func ivValues(ivs []portInterval) []ivValue {
	var out []ivValue
	for _, iv := range ivs {
		out = append(out, ivValue{iv.lo, iv.hi, iv.acc.value()})
	}
	return out
}

func allowV(id uint32) bpf.PolicyValue {
	return bpf.PolicyValue{Verdict: bpf.VerdictAllow, Rule: id, Order: bpf.OrderAllow | id}
}
func denyV(id uint32) bpf.PolicyValue {
	return bpf.PolicyValue{Verdict: bpf.VerdictDeny, Rule: id, Order: id}
}

func TestSplitPorts(t *testing.T) {
	got := splitPorts([]portRule{
		untiered(1, 100, false, 16),
		untiered(50, 60, true, 17),
		untiered(55, 200, false, 18),
		untiered(300, 300, false, 20),
		untiered(301, 310, false, 20),
		untiered(400, 410, true, 22),
		untiered(405, 420, true, 21),
	}, false)
	want := []ivValue{
		{1, 49, allowV(16)},
		{50, 60, denyV(17)}, // 55..60 also has 18: same value, merged
		{61, 100, allowV(16)},
		{101, 200, allowV(18)},
		{300, 310, allowV(20)}, // adjacent, same rule: merged
		{400, 404, denyV(22)},
		{405, 420, denyV(21)},
	}
	if d := cmp.Diff(want, ivValues(got), cmp.AllowUnexported(ivValue{})); d != "" {
		t.Errorf("splitPorts (-want +got):\n%s", d)
	}
	if got := splitPorts([]portRule{untiered(0, 65535, false, 16), untiered(65535, 65535, true, 17)}, false); len(got) != 2 || got[1].lo != 65535 || got[1].hi != 65535 {
		t.Errorf("splitPorts at the top port: %+v", got)
	}
}

// TestSplitPortsTiers: admin and untiered rules overlapping in part give
// each interval both slots; the admin slot is the rule of lowest rank
// covering it, the main slot as without tiers.
func TestSplitPortsTiers(t *testing.T) {
	got := splitPorts([]portRule{
		untiered(1000, 2000, false, 16),
		untiered(1500, 1600, true, 17),
		tiered(dsl.TierAdmin, 1550, 3000, dsl.Pass, 20, 2),
		tiered(dsl.TierAdmin, 1800, 1900, dsl.Deny, 21, 1),
		tiered(dsl.TierAdmin, 2500, 2500, dsl.Allow, 22, 3),
	}, false)
	admin := func(v bpf.PolicyValue, verdict uint8, id, rank uint32) bpf.PolicyValue {
		v.AdminVerdict, v.AdminRule, v.AdminOrder = verdict, id, rank
		return v
	}
	pass20 := admin(bpf.PolicyValue{}, bpf.VerdictPass, 20, 2)
	want := []ivValue{
		{1000, 1499, allowV(16)},
		{1500, 1549, denyV(17)},
		{1550, 1600, admin(denyV(17), bpf.VerdictPass, 20, 2)},
		{1601, 1799, admin(allowV(16), bpf.VerdictPass, 20, 2)},
		{1800, 1900, admin(allowV(16), bpf.VerdictDeny, 21, 1)},
		{1901, 2000, admin(allowV(16), bpf.VerdictPass, 20, 2)},
		{2001, 3000, pass20}, // 2500 has rank 3 under rank 2: the same value
	}
	if d := cmp.Diff(want, ivValues(got), cmp.AllowUnexported(ivValue{})); d != "" {
		t.Errorf("splitPorts (-want +got):\n%s", d)
	}
	// baseline rules: the main slot by rank, marked as baseline
	got = splitPorts([]portRule{
		tiered(dsl.TierBaseline, 10, 20, dsl.Deny, 30, 2),
		tiered(dsl.TierBaseline, 15, 30, dsl.Pass, 31, 1),
	}, true)
	base := func(verdict uint8, id, rank uint32) bpf.PolicyValue {
		return bpf.PolicyValue{Verdict: verdict, Rule: id, Order: rank, Tier: bpf.TierBaseline}
	}
	want = []ivValue{{10, 14, base(bpf.VerdictDeny, 30, 2)}, {15, 30, base(bpf.VerdictPass, 31, 1)}}
	if d := cmp.Diff(want, ivValues(got), cmp.AllowUnexported(ivValue{})); d != "" {
		t.Errorf("splitPorts baseline (-want +got):\n%s", d)
	}
}
