package lower

import (
	"container/heap"
	"slices"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// SmallRange is the largest port interval (in ports) that the lowering
// expands into exact policy entries instead of policy_ranges prefixes. An
// exact entry is a hash hit on the hot path; a range costs an LPM lookup
// for every new flow of the subject, so small ranges are cheaper expanded.
const SmallRange = 16

// slotHit is one rule as a policy value's slot sees it (bpf.PolicyValue):
// its verdict, id and order (lower decides).
type slotHit struct {
	order   uint32
	verdict uint8
	id      ir.RuleID
}

// slotOf places a rule: the admin slot for admin rules (order = rank), else
// the main slot: untiered rules by bpf.OrderUntiered (deny beats allow,
// then the lowest id), baseline rules by rank.
func slotOf(r *ir.Rule) (admin bool, h slotHit) {
	h.id = r.ID
	switch r.Action {
	case dsl.Deny:
		h.verdict = bpf.VerdictDeny
	case dsl.Pass:
		h.verdict = bpf.VerdictPass
	default:
		h.verdict = bpf.VerdictAllow
	}
	if r.Tier == dsl.TierNone {
		h.order = bpf.OrderUntiered(h.verdict, uint32(r.ID))
	} else {
		h.order = r.Rank
	}
	return r.Tier == dsl.TierAdmin, h
}

// verdictAcc accumulates the rules of one class: per slot the rule of
// lowest order (verdict 0: none).
type verdictAcc struct {
	admin, main slotHit
	baseline    bool // the main slot's rules are baseline rules
}

func (v *verdictAcc) add(admin bool, h slotHit) {
	p := &v.main
	if admin {
		p = &v.admin
	}
	if p.verdict == 0 || h.order < p.order {
		*p = h
	}
}

func (v verdictAcc) empty() bool { return v.admin.verdict == 0 && v.main.verdict == 0 }

// value is the class's precomputed value: both slots.
func (v verdictAcc) value() bpf.PolicyValue {
	pv := bpf.PolicyValue{
		Verdict: v.main.verdict, Rule: uint32(v.main.id), Order: v.main.order,
		AdminVerdict: v.admin.verdict, AdminRule: uint32(v.admin.id), AdminOrder: v.admin.order,
	}
	if v.baseline && v.main.verdict != 0 {
		pv.Tier = bpf.TierBaseline
	}
	return pv
}

// portRule is one rule's port interval inside a class.
type portRule struct {
	lo, hi uint16
	admin  bool
	hit    slotHit
}

// portInterval is a maximal run of ports with one value.
type portInterval struct {
	lo, hi uint16
	acc    verdictAcc
}

// hitHeap is a min-heap of slot hits by order.
type hitHeap []slotHit

func (h hitHeap) Len() int           { return len(h) }
func (h hitHeap) Less(i, j int) bool { return h[i].order < h[j].order }
func (h hitHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *hitHeap) Push(x any)        { *h = append(*h, x.(slotHit)) }
func (h *hitHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// splitPorts splits overlapping port rules into disjoint intervals, each
// with the combined value of the rules covering it (both slots, each the
// covering rule of lowest order); adjacent intervals with the same value
// are merged, ports no rule covers are left out. baseline says the main
// slot's rules are baseline rules. It sweeps the interval ends in order,
// keeping the active rules of each slot in a min-heap by order (removed
// lazily): O(n log n).
func splitPorts(rules []portRule, baseline bool) []portInterval {
	switch len(rules) {
	case 0:
		return nil
	case 1:
		// The common case: one rule names the class's ports.
		acc := verdictAcc{baseline: baseline}
		acc.add(rules[0].admin, rules[0].hit)
		return []portInterval{{rules[0].lo, rules[0].hi, acc}}
	}
	type event struct {
		at    uint32 // port, or 65536 for "after the last port"
		start bool
		r     int
	}
	evs := make([]event, 0, 2*len(rules))
	for i, r := range rules {
		evs = append(evs, event{uint32(r.lo), true, i}, event{uint32(r.hi) + 1, false, i})
	}
	slices.SortFunc(evs, func(a, b event) int { return int(a.at) - int(b.at) })
	var admin, main hitHeap
	active := map[ir.RuleID]int{} // a rule is in one slot only
	var out []portInterval
	top := func(h *hitHeap) slotHit {
		for h.Len() > 0 && active[(*h)[0].id] == 0 {
			heap.Pop(h)
		}
		if h.Len() == 0 {
			return slotHit{}
		}
		return (*h)[0]
	}
	for i := 0; i < len(evs); {
		at := evs[i].at
		for ; i < len(evs) && evs[i].at == at; i++ {
			r := rules[evs[i].r]
			if evs[i].start {
				if active[r.hit.id] == 0 {
					if r.admin {
						heap.Push(&admin, r.hit)
					} else {
						heap.Push(&main, r.hit)
					}
				}
				active[r.hit.id]++
			} else {
				active[r.hit.id]--
			}
		}
		if i == len(evs) || at > 65535 {
			break
		}
		acc := verdictAcc{admin: top(&admin), main: top(&main), baseline: baseline}
		if acc.empty() {
			continue
		}
		hi := uint16(evs[i].at - 1)
		if n := len(out); n > 0 && out[n-1].acc.value() == acc.value() && uint32(out[n-1].hi)+1 == at {
			out[n-1].hi = hi
		} else {
			out = append(out, portInterval{uint16(at), hi, acc})
		}
	}
	return out
}

// portPrefix is a block of ports: the 1<<(16-bits) ports from port on.
type portPrefix struct {
	port uint16
	bits int // significant bits, 0..16
}

// portPrefixes encodes lo..hi as the fewest aligned blocks: at each step
// the largest block that starts at lo and stays inside the interval.
func portPrefixes(lo, hi uint16) []portPrefix {
	var out []portPrefix
	l, h := uint32(lo), uint32(hi)
	for l <= h {
		size := uint32(1)
		for bits := 16; bits > 0; bits-- {
			next := size << 1
			if l%next != 0 || l+next-1 > h {
				break
			}
			size = next
		}
		bits := 16
		for s := size; s > 1; s >>= 1 {
			bits--
		}
		out = append(out, portPrefix{uint16(l), bits})
		l += size
	}
	return out
}
