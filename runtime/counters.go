package runtime

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/bundle"
)

// Rule counters. The datapath counts packets and bytes per rule id in
// the generation's per-CPU counters map. A new generation numbers its rules
// afresh, so apply carries the counts of every rule that still exists —
// same policy and same rule text, or the same reserved reason — into
// gen-G/counters_base (a hash map, rule id → Counter), which readers add
// to the live counts. Rules that are new, or changed, start at 0. A full
// apply has a new counters map (carryCounters); a map-only apply keeps
// the map and rebases it (rebaseCounters).

const countersBasePin = "counters_base"

// RuleCount is one rule's packets and bytes since it was loaded (carried
// over applies while the rule stays the same).
type RuleCount struct {
	bundle.Rule
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// ruleKey identifies a rule across generations.
func ruleKey(r *bundle.Rule) string {
	if r.Name != "" {
		return "reserved\x00" + r.Name
	}
	return r.Policy + "\x00" + r.Text
}

// liveCounts sums generation g's counters over CPUs and adds its base: rule
// id → counts (ids without packets left out).
func liveCounts(p pins, g uint32) (map[uint32]bpf.Counter, error) {
	out := map[uint32]bpf.Counter{}
	m, err := ebpf.LoadPinnedMap(p.genMap(g, bpf.MapCounters), nil)
	if err != nil {
		return nil, fmt.Errorf("open the counters of generation %d: %w", g, err)
	}
	defer m.Close()
	var per []bpf.Counter
	for id := range m.MaxEntries() {
		if err := m.Lookup(id, &per); err != nil {
			return nil, fmt.Errorf("read the counter of rule %d: %w", id, err)
		}
		var c bpf.Counter
		for _, x := range per {
			c.Packets += x.Packets
			c.Bytes += x.Bytes
		}
		if c.Packets != 0 || c.Bytes != 0 {
			out[id] = c
		}
	}
	base, err := ebpf.LoadPinnedMap(filepath.Join(p.gen(g), countersBasePin), nil)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	defer base.Close()
	var id uint32
	var c bpf.Counter
	it := base.Iterate()
	for it.Next(&id, &c) {
		o := out[id]
		o.Packets += c.Packets
		o.Bytes += c.Bytes
		out[id] = o
	}
	return out, it.Err()
}

// carryCounters writes generation to's counters_base from generation
// from's counts, for the rules of b that from had too.
func carryCounters(p pins, from, to uint32, b *bundle.Bundle) error {
	cat, err := readCatalog(p, from)
	if err != nil {
		return err
	}
	counts, err := liveCounts(p, from)
	if err != nil {
		return err
	}
	byKey := map[string]bpf.Counter{}
	for i := range cat.Rules {
		if c, ok := counts[cat.Rules[i].ID]; ok {
			byKey[ruleKey(&cat.Rules[i])] = c
		}
	}
	var ids []uint32
	var vals []bpf.Counter
	for i := range b.Rules {
		k := ruleKey(&b.Rules[i])
		if c, ok := byKey[k]; ok {
			ids = append(ids, b.Rules[i].ID)
			vals = append(vals, c)
			delete(byKey, k) // a duplicate rule text does not count twice
		}
	}
	return pinBase(filepath.Join(p.gen(to), countersBasePin), ids, vals)
}

// RuleCounts reports every rule of the bundle loaded under name with its
// counts, the most packets first (then by id). It takes the host lock
// shared.
func (h *Host) RuleCounts(name string) ([]RuleCount, error) {
	st, release, err := h.readOnly(name)
	if err != nil {
		return nil, err
	}
	defer release()
	p := h.pins(name)
	cat, err := readCatalog(p, st.Generation)
	if err != nil {
		return nil, err
	}
	counts, err := liveCounts(p, st.Generation)
	if err != nil {
		return nil, err
	}
	out := make([]RuleCount, 0, len(cat.Rules))
	for _, r := range cat.Rules {
		c := counts[r.ID]
		out = append(out, RuleCount{Rule: r, Packets: c.Packets, Bytes: c.Bytes})
	}
	slices.SortStableFunc(out, func(a, b RuleCount) int {
		return cmp.Or(cmp.Compare(b.Packets, a.Packets), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// ruleSlots is the counters map size b's rule ids need: the highest + 1.
func ruleSlots(b *bundle.Bundle) uint32 {
	n := uint32(0)
	for i := range b.Rules {
		n = max(n, b.Rules[i].ID+1)
	}
	return n
}

// rebaseCounters writes stage's counters_base for a map-only apply of b
// over generation old, which keeps old's counters map (the same kernel
// map: live counts do not restart). A reader shows live + base, so for
// each rule of b at id i:
//
//   - the same rule (ruleKey) at id j in old: base = old's count of j
//     (live + base) − live(i), so it shows old's count plus what i
//     counts from now on; when j = i that is old's base, read nothing;
//   - a new or changed rule: base = −live(i), so it starts at 0 (and an
//     id a removed rule used shows none of its counts).
//
// The arithmetic is uint64 and wraps: live + base is right whatever the
// order of the two. Live counts are read just before the switch; packets
// counted between that read and the end of the grace period after it
// (old-generation packets still in flight) may be attributed to either
// rule at an id whose rule changed.
func rebaseCounters(p pins, old uint32, stage string, b *bundle.Bundle) error {
	cat, err := readCatalog(p, old)
	if err != nil {
		return err
	}
	oldBase := map[uint32]bpf.Counter{}
	bm, err := ebpf.LoadPinnedMap(filepath.Join(p.gen(old), countersBasePin), nil)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	default:
		var id uint32
		var c bpf.Counter
		it := bm.Iterate()
		for it.Next(&id, &c) {
			oldBase[id] = c
		}
		bm.Close()
		if err := it.Err(); err != nil {
			return err
		}
	}
	byKey := map[string]uint32{} // rule → its id in old
	for i := range cat.Rules {
		k := ruleKey(&cat.Rules[i])
		if _, dup := byKey[k]; !dup {
			byKey[k] = cat.Rules[i].ID
		}
	}
	ctr, err := ebpf.LoadPinnedMap(p.genMap(old, bpf.MapCounters), nil)
	if err != nil {
		return err
	}
	defer ctr.Close()
	live := map[uint32]bpf.Counter{}
	read := func(id uint32) (bpf.Counter, error) {
		if c, ok := live[id]; ok {
			return c, nil
		}
		var per []bpf.Counter
		var c bpf.Counter
		if id < ctr.MaxEntries() {
			if err := ctr.Lookup(id, &per); err != nil {
				return c, fmt.Errorf("read the counter of rule %d: %w", id, err)
			}
		}
		for _, x := range per {
			c.Packets += x.Packets
			c.Bytes += x.Bytes
		}
		live[id] = c
		return c, nil
	}
	var ids []uint32
	var vals []bpf.Counter
	for i := range b.Rules {
		id, k := b.Rules[i].ID, ruleKey(&b.Rules[i])
		j, same := byKey[k]
		delete(byKey, k) // a duplicate rule text does not count twice
		var base bpf.Counter
		switch {
		case same && j == id:
			base = oldBase[id]
		default:
			li, err := read(id)
			if err != nil {
				return err
			}
			if same {
				lj, err := read(j)
				if err != nil {
					return err
				}
				base.Packets, base.Bytes = lj.Packets+oldBase[j].Packets, lj.Bytes+oldBase[j].Bytes
			}
			base.Packets -= li.Packets
			base.Bytes -= li.Bytes
		}
		if base != (bpf.Counter{}) {
			ids = append(ids, id)
			vals = append(vals, base)
		}
	}
	return pinBase(filepath.Join(stage, countersBasePin), ids, vals)
}

// pinBase pins a counters_base holding ids → vals at pin (nothing when
// ids is empty).
func pinBase(pin string, ids []uint32, vals []bpf.Counter) error {
	if len(ids) == 0 {
		return nil
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "polc_ctr_base", Type: ebpf.Hash, KeySize: 4, ValueSize: 16, MaxEntries: uint32(len(ids))})
	if err != nil {
		return err
	}
	defer m.Close()
	if _, err := m.BatchUpdate(ids, vals, nil); err != nil {
		for i := range ids {
			if err := m.Update(ids[i], vals[i], ebpf.UpdateAny); err != nil {
				return err
			}
		}
	}
	return m.Pin(pin)
}
