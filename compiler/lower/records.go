package lower

import (
	"cmp"
	"math/bits"
	"slices"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// policyRecords stamps each group's entries onto the identities of its
// label sets. It counts first, so that an oversized policy fails before
// anything big is allocated.
func policyRecords(s *addrSpace, lim Limits) (pol, ranges []byte, err error) {
	nPol, nRanges := 0, 0
	for _, ls := range s.labelSets {
		for _, g := range ls.groups() {
			if g != nil {
				n := len(ls.subjectClasses())
				nPol += n * len(g.exact)
				nRanges += n * len(g.ranges)
			}
		}
	}
	if err := lim.check(bundle.MapPolicy, nPol); err != nil {
		return nil, nil, err
	}
	if err := lim.check(bundle.MapPolicyRanges, nRanges); err != nil {
		return nil, nil, err
	}
	polSpec, _ := bundle.Spec(bundle.MapPolicy)
	rangeSpec, _ := bundle.Spec(bundle.MapPolicyRanges)
	pol = make([]byte, 0, nPol*(polSpec.KeySize+polSpec.ValueSize))
	ranges = make([]byte, 0, nRanges*(rangeSpec.KeySize+rangeSpec.ValueSize))

	// The policy map is by far the largest, so its records are emitted
	// already in key-byte order, which spares bundle.NewMap a sort of
	// millions of records: subjects in the order of their little-endian
	// bytes, and under each subject its label set's entries of both
	// directions, sorted once per label set (every identity of a label
	// set has the same entries).
	type subject struct {
		c  *class
		ls *labelSet
	}
	var subjects []subject
	sortedEntries := map[*labelSet][]policyEntryKey{}
	sortedRanges := map[*labelSet][]rangeEntryKey{}
	for _, ls := range s.labelSets {
		if ls.groups() == [4]*subjectGroup{} {
			continue
		}
		var es []policyEntryKey
		var rs []rangeEntryKey
		for _, g := range ls.groups() {
			if g == nil {
				continue
			}
			dirFlag := uint8(0)
			if g.dir == dsl.Egress {
				dirFlag = bpf.PolicyEgress
			}
			if g.audit {
				dirFlag |= bpf.PolicyAudit
			}
			for _, e := range g.exact {
				es = append(es, policyEntryKey{e, dirFlag | e.flags})
			}
			for _, r := range g.ranges {
				rs = append(rs, rangeEntryKey{r, dirFlag})
			}
		}
		slices.SortFunc(es, func(a, b policyEntryKey) int { return cmp.Compare(a.sortKey(), b.sortKey()) })
		sortedEntries[ls] = es
		slices.SortFunc(rs, compareRanges)
		sortedRanges[ls] = rs
		for _, c := range ls.subjectClasses() {
			subjects = append(subjects, subject{c, ls})
		}
	}
	// policy_ranges keys start with the prefix length (little endian, but
	// below 256) and go on big endian: their byte order is numeric order of
	// (prefix length, subject, remote, proto, flags, port).
	slices.SortFunc(subjects, func(a, b subject) int { return cmp.Compare(a.c.id, b.c.id) })
	for plen := 0; plen <= 16; plen++ {
		for _, sub := range subjects {
			rs := sortedRanges[sub.ls]
			i, _ := slices.BinarySearchFunc(rs, plen, func(r rangeEntryKey, p int) int { return r.port.bits - p })
			for ; i < len(rs) && rs[i].port.bits == plen; i++ {
				ranges = bundle.AppendPolicyRange(ranges, rangeKey(sub.c.id, rs[i].groupRange, rs[i].dirFlag), rs[i].val)
			}
		}
	}
	slices.SortFunc(subjects, func(a, b subject) int { return cmp.Compare(bits.ReverseBytes32(a.c.id), bits.ReverseBytes32(b.c.id)) })
	for _, sub := range subjects {
		for _, e := range sortedEntries[sub.ls] {
			k := bpf.PolicyKey{Subject: sub.c.id, Remote: e.remote, Port: e.port, Proto: e.proto, Flags: e.keyFlags}
			pol = bundle.AppendPolicy(pol, k, e.val)
		}
	}
	return pol, ranges, nil
}

// policyEntryKey is a group entry with the direction folded into its key
// flags.
type policyEntryKey struct {
	groupEntry
	keyFlags uint8
}

// sortKey is the entry's key bytes after the subject (remote and port
// little endian, proto, flags) as one big-endian number, so that numeric
// order is byte order.
func (e policyEntryKey) sortKey() uint64 {
	return uint64(bits.ReverseBytes32(e.remote))<<32 | uint64(bits.ReverseBytes16(e.port))<<16 | uint64(e.proto)<<8 | uint64(e.keyFlags)
}

// rangeEntryKey is a group range with its direction flag.
type rangeEntryKey struct {
	groupRange
	dirFlag uint8
}

// compareRanges orders a label set's ranges by the key bytes after the
// subject, prefix length first: (bits, remote, proto, flags, port).
func compareRanges(a, b rangeEntryKey) int {
	return cmp.Or(cmp.Compare(a.port.bits, b.port.bits), cmp.Compare(a.remote, b.remote), cmp.Compare(a.proto, b.proto),
		cmp.Compare(a.dirFlag, b.dirFlag), cmp.Compare(a.port.port, b.port.port))
}

// counterSlots sizes the counters array: one slot per rule id up to the
// highest (the datapath does not count ids beyond the array), plus a
// quarter, rounded up to a power of two, at least 64. The headroom lets a
// map-only apply add rules to the loaded generation's array, which is
// kept (docs/runtime.md, *Rule counters*).
func counterSlots(prog *ir.Program) uint32 {
	n := uint32(ir.FirstRuleID)
	if len(prog.Rules) > 0 {
		n = uint32(prog.Rules[len(prog.Rules)-1].ID) + 1
	}
	n = max(n+n/4, 64)
	return 1 << bits.Len32(n-1)
}

// count is the number of records in a map's encoded contents.
func count(name string, records []byte) int {
	s, err := bundle.Spec(name)
	if err != nil {
		return 0
	}
	return len(records) / (s.KeySize + s.ValueSize)
}

func rangeKey(subject uint32, r groupRange, dirFlag uint8) bpf.PolicyRangeKey {
	k := bpf.PolicyRangeKey{
		Prefixlen: uint32(bpf.PolicyRangeKeyFixedBits + r.port.bits),
		Proto:     r.proto,
		Flags:     dirFlag,
	}
	k.Subject = [4]byte{byte(subject >> 24), byte(subject >> 16), byte(subject >> 8), byte(subject)}
	k.Remote = [4]byte{byte(r.remote >> 24), byte(r.remote >> 16), byte(r.remote >> 8), byte(r.remote)}
	k.Port = [2]byte{byte(r.port.port >> 8), byte(r.port.port)}
	return k
}
