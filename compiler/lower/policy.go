package lower

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// A subjectGroup is the label sets selected, in one direction, by the same
// policies, at least one of which isolates that direction or is a tiered
// policy with rules in it. Its entries are computed once and stamped onto
// every identity of its label sets.
type subjectGroup struct {
	dir   dsl.Direction
	audit bool // the group of every policy, for the audit question (bpf.PolicyAudit)
	// isolated: an untiered policy of the group isolates the direction.
	// Then the main slot holds the untiered rules, and the baseline
	// rules, which can never apply, are left out; else it holds the
	// baseline rules (there are no untiered ones in the direction).
	isolated bool
	// tieredDeny: a tiered policy of the group has a deny rule in the
	// direction, so some packet at this hook may be denied even where
	// nothing isolates it: a later fragment of an unknown datagram is
	// dropped there too (bpf.IPCacheIngressTieredDeny).
	tieredDeny bool
	policies   []int // indices into Program.Policies, ascending
	exact      []groupEntry
	ranges     []groupRange
	hints      uint32 // bpf.Hint* for the classes the entries use
}

// groupEntry is a policy hash entry without its subject.
type groupEntry struct {
	remote uint32
	port   uint16
	proto  uint8
	flags  uint8 // PolicyAnyPort
	val    bpf.PolicyValue
}

// groupRange is a policy_ranges entry without its subject.
type groupRange struct {
	remote uint32
	port   portPrefix
	proto  uint8
	val    bpf.PolicyValue
}

// classKey is a (remote, protocol) class of one group.
type classKey struct {
	remote uint32
	proto  uint8
}

// classRules collects the rules of one class: those for every port, and
// those for some ports.
type classRules struct {
	anyPort verdictAcc
	ports   []portRule
}

// policyLowering holds what the policy step memoizes across groups.
type policyLowering struct {
	prog      *ir.Program
	space     *addrSpace
	selectors map[string][]uint32 // selector key → identities
	labelIdx  map[string][]*labelSet
	// ruleRemotes[i] memoizes remotes(prog.Rules[i]); a rule is lowered
	// once per subject group that includes its policy.
	ruleRemotes [][]uint32
	ruleDone    []bool
	// classes and arena are reused from group to group.
	classes map[classKey]*classRules
	arena   []classRules
}

// checkRanks makes sure every tiered rule has its own place in its tier's
// order (ir.Rule.Rank, from 1), which the policy values compare: a rank of
// 0 or one shared by two rules would make the first matching rule
// ambiguous.
func checkRanks(prog *ir.Program) error {
	seen := [3]map[uint32]ir.RuleID{}
	for _, r := range prog.Rules {
		if r.Tier == dsl.TierNone {
			continue
		}
		if r.Tier != dsl.TierAdmin && r.Tier != dsl.TierBaseline {
			return fmt.Errorf("rule %d of policy %s has tier %d, which is not a tier", r.ID, r.Policy, r.Tier)
		}
		if r.Rank == 0 {
			return fmt.Errorf("rule %d of %s policy %s has no rank", r.ID, r.Tier, r.Policy)
		}
		if seen[r.Tier] == nil {
			seen[r.Tier] = map[uint32]ir.RuleID{}
		}
		if other, ok := seen[r.Tier][r.Rank]; ok {
			return fmt.Errorf("rules %d and %d share rank %d in the %s tier", other, r.ID, r.Rank, r.Tier)
		}
		seen[r.Tier][r.Rank] = r.ID
	}
	return nil
}

// groupSubjects finds each label set's policies and forms the subject
// groups, in a deterministic order.
func groupSubjects(prog *ir.Program, s *addrSpace) ([]*subjectGroup, error) {
	epIndex := make(map[string]int, len(prog.Endpoints))
	for i, e := range prog.Endpoints {
		epIndex[e.Name] = i
	}
	policies := map[*labelSet][]int{}
	for pi, p := range prog.Policies {
		for _, name := range p.Subjects {
			ei, ok := epIndex[name]
			if !ok {
				return nil, fmt.Errorf("policy %s selects endpoint %q, which does not exist", p.Name, name)
			}
			ls := s.epLabels[ei]
			if ps := policies[ls]; len(ps) == 0 || ps[len(ps)-1] != pi {
				policies[ls] = append(ps, pi)
			}
		}
	}
	// tieredRules[pi][dir]: policy pi is tiered and has rules in dir;
	// tieredDeny[pi][dir]: deny rules among them.
	tieredRules := make([][2]bool, len(prog.Policies))
	tieredDeny := make([][2]bool, len(prog.Policies))
	for pi, p := range prog.Policies {
		if p.Tier == dsl.TierNone {
			continue
		}
		for _, rid := range p.Rules {
			if i := int(rid - ir.FirstRuleID); rid >= ir.FirstRuleID && i < len(prog.Rules) {
				r := prog.Rules[i]
				tieredRules[pi][r.Dir] = true
				tieredDeny[pi][r.Dir] = tieredDeny[pi][r.Dir] || r.Action == dsl.Deny
			}
		}
	}
	var groups []*subjectGroup
	byKey := map[string]*subjectGroup{}
	// The key (direction and policies) determines the isolation too.
	group := func(dir dsl.Direction, ps []int, audit, isolated, deny bool) *subjectGroup {
		var kb strings.Builder
		kb.WriteString(dir.String())
		if audit {
			kb.WriteString(",audit")
		}
		for _, pi := range ps {
			kb.WriteByte(',')
			kb.WriteString(strconv.Itoa(pi))
		}
		g := byKey[kb.String()]
		if g == nil {
			g = &subjectGroup{dir: dir, policies: ps, audit: audit, isolated: isolated, tieredDeny: deny}
			byKey[kb.String()] = g
			groups = append(groups, g)
		}
		return g
	}
	for _, ls := range s.labelSets {
		all := policies[ls]
		var enforcing []int
		for _, pi := range all {
			if !prog.Policies[pi].Audit {
				enforcing = append(enforcing, pi)
			}
		}
		for _, dir := range []dsl.Direction{dsl.Ingress, dsl.Egress} {
			isolated, audited, tiered, deny := false, false, false, false
			for _, pi := range all {
				p := prog.Policies[pi]
				// only untiered policies isolate (the IR says tiered
				// ones never do; the datapath's default must agree
				// with the main slot's rules even if one did)
				untiered := p.Tier == dsl.TierNone
				isolated = isolated || (p.Isolates[dir] && !p.Audit && untiered)
				audited = audited || (p.Isolates[dir] && p.Audit && untiered)
				tiered = tiered || (tieredRules[pi][dir] && !p.Audit)
				deny = deny || (tieredDeny[pi][dir] && !p.Audit)
			}
			if isolated || tiered {
				ls.group[dir] = group(dir, enforcing, false, isolated, deny)
			}
			// the audit question: every policy, asked only when the
			// enforcing ones allow; an audit policy isolates the
			// direction, so baseline rules cannot apply there
			if audited {
				ls.audit[dir] = group(dir, all, true, true, false)
			}
		}
	}
	return groups, nil
}

// lowerGroup computes a group's entries: for each (remote, protocol) class
// the verdict of its any-port rules and of each disjoint port interval.
func (pl *policyLowering) lowerGroup(g *subjectGroup) error {
	if pl.classes == nil {
		pl.classes = map[classKey]*classRules{}
		pl.ruleRemotes = make([][]uint32, len(pl.prog.Rules))
		pl.ruleDone = make([]bool, len(pl.prog.Rules))
	}
	classes := pl.classes
	clear(classes)
	pl.arena = pl.arena[:0]
	for _, pi := range g.policies {
		for _, rid := range pl.prog.Policies[pi].Rules {
			i := int(rid - ir.FirstRuleID)
			if rid < ir.FirstRuleID || i >= len(pl.prog.Rules) || pl.prog.Rules[i].ID != rid {
				return fmt.Errorf("policy %s lists rule %d, which the program does not hold", pl.prog.Policies[pi].Name, rid)
			}
			r := pl.prog.Rules[i]
			if r.Dir != g.dir {
				continue
			}
			// Baseline rules only where no untiered policy isolates;
			// untiered rules only where one does (always so: an
			// untiered policy with rules in a direction isolates it).
			if (r.Tier == dsl.TierBaseline && g.isolated) || (r.Tier == dsl.TierNone && !g.isolated) {
				continue
			}
			admin, hit := slotOf(r)
			if !pl.ruleDone[i] {
				pl.ruleRemotes[i], pl.ruleDone[i] = pl.remotes(r), true
			}
			for _, pm := range r.Ports {
				proto, anyPort, ivs := portClass(pm)
				for _, remote := range pl.ruleRemotes[i] {
					k := classKey{remote, proto}
					c := classes[k]
					if c == nil {
						c = pl.newClassRules()
						c.anyPort.baseline = !g.isolated
						classes[k] = c
					}
					if anyPort {
						c.anyPort.add(admin, hit)
					}
					for _, iv := range ivs {
						c.ports = append(c.ports, portRule{iv[0], iv[1], admin, hit})
					}
				}
			}
		}
	}
	keys := make([]classKey, 0, len(classes))
	for k := range classes {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b classKey) int {
		if a.remote != b.remote {
			return cmp.Compare(a.remote, b.remote)
		}
		return int(a.proto) - int(b.proto)
	})
	for _, k := range keys {
		c := classes[k]
		g.hints |= classHints(k, !c.anyPort.empty())
		if !c.anyPort.empty() {
			g.exact = append(g.exact, groupEntry{k.remote, 0, k.proto, bpf.PolicyAnyPort, c.anyPort.value()})
		}
		for _, iv := range splitPorts(c.ports, !g.isolated) {
			val := iv.acc.value()
			if int(iv.hi)-int(iv.lo)+1 <= SmallRange {
				for p := int(iv.lo); p <= int(iv.hi); p++ {
					g.exact = append(g.exact, groupEntry{k.remote, uint16(p), k.proto, 0, val})
				}
				continue
			}
			for _, pp := range portPrefixes(iv.lo, iv.hi) {
				g.ranges = append(g.ranges, groupRange{k.remote, pp, k.proto, val})
			}
		}
	}
	return nil
}

// newClassRules hands out a cleared classRules from an arena of chunks
// (pointers into a chunk stay valid when the next chunk is allocated).
func (pl *policyLowering) newClassRules() *classRules {
	if len(pl.arena) == cap(pl.arena) {
		pl.arena = make([]classRules, 0, max(64, 2*cap(pl.arena)))
	}
	pl.arena = append(pl.arena, classRules{})
	return &pl.arena[len(pl.arena)-1]
}

// classHints are the probe hints a class needs: the datapath skips the
// lookups of classes a subject does not announce (bpf.ConstPolicyHints).
// A proto-0 class is only ever any-port; an any-port entry of a protocol
// needs HintAnyPort. A packet whose IP protocol is 0 itself finds the
// proto-0 entries through the any-port probe of its own protocol, so
// proto-0 classes announce HintAnyPort too.
func classHints(k classKey, anyPort bool) uint32 {
	var h uint32
	switch k.remote {
	case bpf.IdentityAny:
		h |= bpf.HintAnyRemote
	case bpf.IdentityWorld:
		h |= bpf.HintWorld
	}
	if k.proto == 0 {
		h |= bpf.HintAnyProto | bpf.HintAnyPort
	} else if anyPort {
		h |= bpf.HintAnyPort
	}
	return h
}

// portClass maps an L4 term to its protocol key and either "every port"
// of the protocol or a list of inclusive port intervals. ICMP's "port" is
// type<<8 | code: a type with any code is one interval of 256; a code with
// any type (which the language may not even let one write) is 256 single
// ports.
func portClass(pm ir.PortMatch) (proto uint8, anyPort bool, ivs [][2]uint16) {
	proto = uint8(pm.Proto)
	switch {
	case pm.Proto == ir.ProtoAny:
		return 0, true, nil
	case pm.Proto.HasPorts():
		if pm.Lo == 0 && pm.Hi == 65535 {
			return proto, true, nil
		}
		return proto, false, [][2]uint16{{pm.Lo, pm.Hi}}
	case pm.Proto.IsICMP():
		code := uint16(pm.ICMPCode & 0xff)
		switch {
		case pm.ICMPType < 0 && pm.ICMPCode < 0:
			return proto, true, nil
		case pm.ICMPType < 0:
			for t := range uint16(256) {
				ivs = append(ivs, [2]uint16{t<<8 | code, t<<8 | code})
			}
			return proto, false, ivs
		}
		t := uint16(pm.ICMPType&0xff) << 8
		if pm.ICMPCode < 0 {
			return proto, false, [][2]uint16{{t, t | 0xff}}
		}
		return proto, false, [][2]uint16{{t | code, t | code}}
	}
	return proto, true, nil
}

// remotes returns the remote identities a rule's peers match, as the
// datapath sees them: IdentityAny for any peer, IdentityWorld for world
// (the datapath probes it for every non-local remote), and the identities
// of the matching endpoints and CIDR regions otherwise.
func (pl *policyLowering) remotes(r *ir.Rule) []uint32 {
	if len(r.Peers) == 1 {
		return pl.peerRemotes(r.Peers[0])
	}
	var ids []uint32
	for _, p := range r.Peers {
		ids = append(ids, pl.peerRemotes(p)...)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

var (
	anyRemote   = []uint32{bpf.IdentityAny}
	worldRemote = []uint32{bpf.IdentityWorld}
)

func (pl *policyLowering) peerRemotes(p ir.Peer) []uint32 {
	switch p.Kind {
	case ir.PeerAny:
		return anyRemote
	case ir.PeerWorld:
		return worldRemote
	case ir.PeerCIDR:
		a := pl.space.atoms[pl.space.atomIndex[atomText(p.CIDR, p.Except)]]
		ids := make([]uint32, len(a.classes))
		for i, c := range a.classes {
			ids[i] = c.id
		}
		return ids
	case ir.PeerSelector:
		return pl.selectorRemotes(p.Selector)
	}
	return nil
}

func selectorKey(s ir.Selector) string {
	var b strings.Builder
	for _, r := range s.Reqs {
		b.WriteString(r.Key)
		b.WriteByte(0)
		b.WriteString(strconv.Itoa(int(r.Op)))
		for _, v := range r.Values {
			b.WriteByte(1)
			b.WriteString(v)
		}
		b.WriteByte(2)
	}
	return b.String()
}

// selectorRemotes returns the identities of the endpoints a selector
// matches. Candidates come from an index on key=value when the selector
// has an = or in requirement, else from every label set.
func (pl *policyLowering) selectorRemotes(sel ir.Selector) []uint32 {
	key := selectorKey(sel)
	if ids, ok := pl.selectors[key]; ok {
		return ids
	}
	if pl.labelIdx == nil {
		pl.labelIdx = map[string][]*labelSet{}
		for _, ls := range pl.space.labelSets {
			for _, l := range ls.labels {
				k := l.Key + "=" + l.Value
				pl.labelIdx[k] = append(pl.labelIdx[k], ls)
			}
		}
	}
	cands := pl.space.labelSets
	for _, r := range sel.Reqs {
		if r.Op != dsl.OpEq && r.Op != dsl.OpIn {
			continue
		}
		var cs []*labelSet
		for _, v := range r.Values {
			cs = append(cs, pl.labelIdx[r.Key+"="+v]...)
		}
		if len(cs) < len(cands) {
			cands = cs
		}
	}
	var ids []uint32
	for _, ls := range cands {
		if sel.Matches(ls.labels) {
			for _, c := range ls.classes {
				ids = append(ids, c.id)
			}
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	pl.selectors[key] = ids
	return ids
}
