package lower

import (
	"container/heap"
	"slices"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/ir"
)

// SmallRange is the largest port interval (in ports) that the lowering
// expands into exact policy entries instead of policy_ranges prefixes. An
// exact entry is a hash hit on the hot path; a range costs an LPM lookup
// for every new flow of the subject, so small ranges are cheaper expanded.
const SmallRange = 16

// verdictAcc accumulates the rules of one class: the lowest deny and the
// lowest allow rule id (0: none).
type verdictAcc struct {
	deny, allow ir.RuleID
}

func (v *verdictAcc) add(deny bool, id ir.RuleID) {
	p := &v.allow
	if deny {
		p = &v.deny
	}
	if *p == 0 || id < *p {
		*p = id
	}
}

func (v verdictAcc) empty() bool { return v.deny == 0 && v.allow == 0 }

// value is the class's precomputed verdict: deny with the lowest deny rule,
// else allow with the lowest allow rule.
func (v verdictAcc) value() bpf.PolicyValue {
	if v.deny != 0 {
		return bpf.PolicyValue{Verdict: bpf.VerdictDeny, Rule: uint32(v.deny)}
	}
	return bpf.PolicyValue{Verdict: bpf.VerdictAllow, Rule: uint32(v.allow)}
}

// portRule is one rule's port interval inside a class.
type portRule struct {
	lo, hi uint16
	deny   bool
	id     ir.RuleID
}

// portInterval is a maximal run of ports with one verdict.
type portInterval struct {
	lo, hi uint16
	acc    verdictAcc
}

// idHeap is a min-heap of rule ids.
type idHeap []ir.RuleID

func (h idHeap) Len() int           { return len(h) }
func (h idHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h idHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *idHeap) Push(x any)        { *h = append(*h, x.(ir.RuleID)) }
func (h *idHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// splitPorts splits overlapping port rules into disjoint intervals, each
// with the combined verdict of the rules covering it; adjacent intervals
// with the same precomputed value (verdict and deciding rule) are merged, ports no rule covers are left out.
// It sweeps the interval ends in order, keeping the active deny and allow
// ids in min-heaps (removed lazily): O(n log n).
func splitPorts(rules []portRule) []portInterval {
	switch len(rules) {
	case 0:
		return nil
	case 1:
		// The common case: one rule names the class's ports.
		var acc verdictAcc
		acc.add(rules[0].deny, rules[0].id)
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
	var deny, allow idHeap
	active := map[ir.RuleID]int{} // per (id, action): rules are one action each
	var out []portInterval
	top := func(h *idHeap) ir.RuleID {
		for h.Len() > 0 && active[(*h)[0]] == 0 {
			heap.Pop(h)
		}
		if h.Len() == 0 {
			return 0
		}
		return (*h)[0]
	}
	for i := 0; i < len(evs); {
		at := evs[i].at
		for ; i < len(evs) && evs[i].at == at; i++ {
			r := rules[evs[i].r]
			if evs[i].start {
				if active[r.id] == 0 {
					if r.deny {
						heap.Push(&deny, r.id)
					} else {
						heap.Push(&allow, r.id)
					}
				}
				active[r.id]++
			} else {
				active[r.id]--
			}
		}
		if i == len(evs) || at > 65535 {
			break
		}
		acc := verdictAcc{deny: top(&deny), allow: top(&allow)}
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
