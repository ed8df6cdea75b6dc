// Package diff compares what two programs allow: for every local endpoint
// and direction, which (remote, protocol, port) went from deny to allow
// (opened) and from allow to deny (closed), with the rules deciding on
// each side. It is exact: the address space is split into regions that
// neither program can tell apart (regions.go), the protocols and ports
// into intervals over which no rule of the subject changes its answer
// (cells.go), and one representative of each region × interval is asked
// of both programs' reference evaluators (compiler/eval). Nothing is
// sampled.
//
// The comparison is per observation point, as the datapath decides: the
// egress of the endpoint that sends and the ingress of the one that
// receives are compared separately. An endpoint is compared by name: one
// that exists in only one program counts as having no hooks in the
// other (everything passes there). An endpoint present in both whose
// addresses changed is compared at its address in each (so manifests
// whose placeholder addresses shift do not show as changes); its old
// address, as a remote, is not reported again.
package diff

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/polc-dev/polc/compiler/eval"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// Result is every change between two programs, grouped.
type Result struct {
	Changes []Change
}

// Opened and Closed count the changes of each kind.
func (r *Result) Opened() int { return r.count(true) }

// Closed counts the changes that close flows.
func (r *Result) Closed() int { return r.count(false) }

func (r *Result) count(opened bool) int {
	n := 0
	for _, c := range r.Changes {
		if c.Opened == opened {
			n++
		}
	}
	return n
}

// Change is one group of flows whose verdict changed the same way at the
// same kind of point: every subject × remote × the protocol interval.
type Change struct {
	Opened   bool          // deny → allow; false: allow → deny
	Dir      dsl.Direction // the subjects' hook: egress (subject sends) or ingress (subject receives)
	Subjects []string      // endpoint names, sorted
	Remotes  []Remote      // sorted: endpoints, then CIDRs, then the rest of the address space
	Proto    Proto
	// Lo..Hi are the destination ports (TCP, UDP, SCTP) or ICMP
	// type<<8|code (ICMP of the address family); 0..65535 for every one,
	// and for protocols without either.
	Lo, Hi   uint16
	Old, New Decision
}

// Proto is a protocol of a change, or every protocol but some.
type Proto struct {
	ir.Proto
	// Other marks the protocols outside Except (every one when Except
	// is empty): those no rule of the subject names.
	Other  bool
	Except []ir.Proto
}

// Remote is the other side of a change's flows: an endpoint's addresses,
// a prefix (outside some prefixes inside it), every address no endpoint
// owns, or every address.
type Remote struct {
	Endpoint string // an endpoint of either program
	// Only is "old" or "new" for an endpoint that exists in one program:
	// its addresses, which the other program treats as no endpoint's.
	Only string
	// Prefix is a region: the addresses of Prefix outside Except.
	Prefix netip.Prefix
	Except []netip.Prefix
	// World is every address no endpoint owns (in either program), and
	// Any every address, of Family: 4, 6, or 0 for both.
	World, Any bool
	Family     int
}

// Decision is one program's verdict on a change's flows.
type Decision struct {
	Allow bool
	// Rule decides; nil for a reserved id (Reserved: default-allow,
	// default-deny).
	Rule     *ir.Rule
	Reserved ir.RuleID
	// Absent: the program has no endpoint of the subject's name, so no
	// hook: everything passes.
	Absent bool
}

// Compare computes what changes from old to new.
func Compare(old, new *ir.Program) *Result {
	c := comparer{old: side{prog: old, ev: eval.New(old)}, new: side{prog: new, ev: eval.New(new)}}
	c.old.index()
	c.new.index()
	c.sameEndpoints = c.old.endpointsDigest == c.new.endpointsDigest
	c.units = c.remoteUnits()
	var raws []rawChange
	for _, name := range c.subjectNames() {
		for _, dir := range []dsl.Direction{dsl.Ingress, dsl.Egress} {
			if c.old.fingerprint(name, dir, c.sameEndpoints) == c.new.fingerprint(name, dir, c.sameEndpoints) {
				continue
			}
			raws = append(raws, c.compareSubject(name, dir)...)
		}
	}
	return &Result{Changes: c.group(raws)}
}

// side is one program with what the comparison needs of it.
type side struct {
	prog            *ir.Program
	ev              *eval.Evaluator
	endpoints       map[string]*ir.Endpoint
	endpointsDigest string
	ownersDigest    string
	selected        map[string]string // selector text → the prefixes of what it selects
}

func (s *side) index() {
	s.endpoints = make(map[string]*ir.Endpoint, len(s.prog.Endpoints))
	eps := slices.Clone(s.prog.Endpoints)
	slices.SortFunc(eps, func(a, b *ir.Endpoint) int { return cmp.Compare(a.Name, b.Name) })
	all, owners := sha256.New(), sha256.New()
	for _, ep := range eps {
		s.endpoints[ep.Name] = ep
		fmt.Fprintf(all, "%q %s %v;", ep.Name, ep.Labels, ep.Addrs)
		fmt.Fprintf(owners, "%q %v;", ep.Name, ep.Addrs)
	}
	s.endpointsDigest = hex.EncodeToString(all.Sum(nil))
	s.ownersDigest = hex.EncodeToString(owners.Sum(nil))
	s.selected = map[string]string{}
}

// fingerprint sums up everything that decides for subject name in dir,
// without rule ids or positions: equal fingerprints decide every flow
// alike. With the same endpoints on both sides a selector is its text;
// otherwise it is what it selects, and who owns which address. The
// namespace level's rules are a set (deny beats allow whatever the
// order); a tier's are a list, in its order (the first match decides).
func (s *side) fingerprint(name string, dir dsl.Direction, sameEndpoints bool) string {
	isolated, rules, ok := s.ev.SubjectRules(name, dir)
	admin, baseline, _ := s.ev.TieredRules(name, dir)
	switch {
	case !ok:
		return "absent"
	case !isolated && len(admin) == 0 && len(baseline) == 0:
		return "open"
	}
	var fp strings.Builder
	if isolated {
		keys := make([]string, 0, len(rules))
		for _, r := range rules {
			keys = append(keys, s.ruleKey(r, sameEndpoints))
		}
		slices.Sort(keys)
		fp.WriteString("isolated\n" + strings.Join(slices.Compact(keys), "\n"))
	} else {
		fp.WriteString("not isolated")
	}
	for _, tier := range []struct {
		name  string
		rules []*ir.Rule
	}{{"admin", admin}, {"baseline", baseline}} {
		if len(tier.rules) == 0 {
			continue
		}
		fp.WriteString("\n" + tier.name)
		for _, r := range tier.rules {
			fp.WriteString("\n  " + s.ruleKey(r, sameEndpoints))
		}
	}
	return fp.String()
}

// ruleKey is what a rule tests and does, without its id or position.
func (s *side) ruleKey(r *ir.Rule, sameEndpoints bool) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%v %v", r.Action, r.Ports)
	for _, p := range r.Peers {
		switch {
		case p.Kind == ir.PeerSelector && !sameEndpoints:
			fmt.Fprintf(&sb, " sel[%s]", s.selects(p.Selector))
		case p.Kind == ir.PeerWorld && !sameEndpoints:
			fmt.Fprintf(&sb, " world[%s]", s.ownersDigest)
		default:
			fmt.Fprintf(&sb, " %v/%s", p.Kind, p.String())
		}
	}
	return sb.String()
}

// selects is what a selector peer matches: the addresses of the endpoints
// it selects, as owned among all endpoints.
func (s *side) selects(sel ir.Selector) string {
	key := sel.String()
	if v, ok := s.selected[key]; ok {
		return v
	}
	var addrs []string
	for _, ep := range s.prog.Endpoints {
		if sel.Matches(ep.Labels) {
			for _, a := range ep.Addrs {
				addrs = append(addrs, a.Masked().String())
			}
		}
	}
	slices.Sort(addrs)
	v := strings.Join(addrs, ",") + "|" + s.ownersDigest
	s.selected[key] = v
	return v
}

type comparer struct {
	old, new      side
	sameEndpoints bool
	units         []unit
	tree          prefixTree
	regions       []region
	regionAt      map[netip.Prefix]int // prefix → its non-empty region's index
}

// unit is one remote as both programs are asked about it: at the same
// address, or, for an endpoint whose address changed, at its address in
// each program.
type unit struct {
	remote   Remote
	old, new netip.Addr
	// region is the region the unit is (nil for an endpoint whose address
	// changed); owned says an endpoint owns it.
	region *region
	owned  bool
}

func (c *comparer) subjectNames() []string {
	var names []string
	for n := range c.old.endpoints {
		names = append(names, n)
	}
	for n := range c.new.endpoints {
		if c.old.endpoints[n] == nil {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

func ownerName(ev *eval.Evaluator, a netip.Addr) string {
	if r := ev.Resolve(a); r.Kind == eval.ResolvedEndpoint {
		return r.Endpoint.Name
	}
	return ""
}

// remoteUnits lists the remotes to ask about: every region whose owner is
// the same in both programs, the regions of endpoints that exist in one
// program only, and each endpoint whose addresses changed, by name.
func (c *comparer) remoteUnits() []unit {
	var units []unit
	moved := map[string]bool{}
	c.tree = regions(c.old.prog, c.new.prog)
	c.regions = c.tree.regions
	c.regionAt = make(map[netip.Prefix]int, len(c.regions))
	for i := range c.regions {
		rg := &c.regions[i]
		c.regionAt[rg.prefix] = i
		o, n := ownerName(c.old.ev, rg.rep), ownerName(c.new.ev, rg.rep)
		switch {
		case o == n && o != "":
			units = append(units, unit{Remote{Endpoint: o}, rg.rep, rg.rep, rg, true})
		case o == n:
			units = append(units, unit{Remote{Prefix: rg.prefix, Except: rg.except}, rg.rep, rg.rep, rg, false})
		case o != "" && c.new.endpoints[o] != nil:
			moved[o] = true
		case n != "" && c.old.endpoints[n] != nil:
			moved[n] = true
		case o != "":
			units = append(units, unit{Remote{Endpoint: o, Only: "old"}, rg.rep, rg.rep, rg, true})
		default:
			units = append(units, unit{Remote{Endpoint: n, Only: "new"}, rg.rep, rg.rep, rg, true})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(moved)) {
		for _, v6 := range []bool{false, true} {
			o, okO := ownedAddr(c.old.ev, c.old.endpoints[name], v6)
			n, okN := ownedAddr(c.new.ev, c.new.endpoints[name], v6)
			switch {
			case okO && okN:
				units = append(units, unit{remote: Remote{Endpoint: name}, old: o, new: n, owned: true})
			case okO:
				units = append(units, unit{remote: Remote{Endpoint: name}, old: o, new: o, owned: true})
			case okN:
				units = append(units, unit{remote: Remote{Endpoint: name}, old: n, new: n, owned: true})
			}
		}
	}
	return units
}

// ownedAddr is an address of ep in the family that its program says ep
// owns.
func ownedAddr(ev *eval.Evaluator, ep *ir.Endpoint, v6 bool) (netip.Addr, bool) {
	for _, p := range ep.Addrs {
		if p.Addr().Is6() == v6 && ownerName(ev, p.Masked().Addr()) == ep.Name {
			return p.Masked().Addr(), true
		}
	}
	return netip.Addr{}, false
}

// rawChange is one remote unit × cell whose verdict changed at subject's
// dir hook.
type rawChange struct {
	subject  string
	dir      dsl.Direction
	unit     int // index in comparer.units
	cell     cell
	old, new Decision
}

func (c *comparer) compareSubject(name string, dir dsl.Direction) []rawChange {
	var matches []ir.PortMatch
	for _, s := range []*side{&c.old, &c.new} {
		if isolated, rules, ok := s.ev.SubjectRules(name, dir); ok && isolated {
			for _, r := range rules {
				matches = append(matches, r.Ports...)
			}
		}
		admin, baseline, _ := s.ev.TieredRules(name, dir)
		for _, r := range append(admin, baseline...) {
			matches = append(matches, r.Ports...)
		}
	}
	cells := [2][]cell{cellsFor(matches, false), cellsFor(matches, true)}
	var out []rawChange
	for ui, u := range c.units {
		fam := 0
		if u.old.Is6() {
			fam = 1
		}
		start := len(out)
		for _, cl := range cells[fam] {
			o := c.old.decide(name, dir, u.old, cl)
			n := c.new.decide(name, dir, u.new, cl)
			if o.Allow != n.Allow {
				out = append(out, rawChange{subject: name, dir: dir, unit: ui, cell: cl, old: o, new: n})
			}
		}
		out = append(out[:start], coalesce(out[start:])...)
	}
	return out
}

func (s *side) decide(name string, dir dsl.Direction, remote netip.Addr, cl cell) Decision {
	v, id, ok := s.ev.Decide(name, dir, remote, cl.packet(remote))
	if !ok {
		return Decision{Allow: true, Absent: true}
	}
	d := Decision{Allow: v == dsl.VerdictAllow}
	if ir.ReservedName(id) != "" {
		d.Reserved = id
	} else if i := int(id - ir.FirstRuleID); i >= 0 && i < len(s.prog.Rules) && s.prog.Rules[i].ID == id {
		d.Rule = s.prog.Rules[i]
	} else {
		d.Reserved = id
	}
	return d
}

// coalesce merges adjacent intervals of one protocol that changed the
// same way, decided by the same rules (raws are in cell order).
func coalesce(raws []rawChange) []rawChange {
	var out []rawChange
	for _, r := range raws {
		if k := len(out) - 1; k >= 0 {
			last := &out[k]
			if last.cell.sameProto(r.cell) && uint32(last.cell.hi)+1 == uint32(r.cell.lo) &&
				last.new.Allow == r.new.Allow && decisionKey(last.old) == decisionKey(r.old) && decisionKey(last.new) == decisionKey(r.new) {
				last.cell.hi = r.cell.hi
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// decisionKey identifies a decision across programs: a rule by its
// position and text (ids differ between programs).
func decisionKey(d Decision) string {
	switch {
	case d.Absent:
		return "absent"
	case d.Rule != nil:
		return fmt.Sprintf("%v %s:%d %s", d.Allow, d.Rule.Pos.File, d.Rule.Pos.Line, d.Rule.Text)
	}
	return fmt.Sprintf("%v %d", d.Allow, d.Reserved)
}

func remoteKey(r Remote) string {
	return fmt.Sprintf("%s|%s|%s|%v|%v|%v|%d", r.Endpoint, r.Only, r.Prefix, r.Except, r.World, r.Any, r.Family)
}

// group merges raw changes: first the remotes of one subject's change,
// then the subjects with the same remotes and change.
func (c *comparer) group(raws []rawChange) []Change {
	type first struct {
		c     Change
		units map[int]bool
	}
	byKey := map[string]*first{}
	var order []string
	for _, r := range raws {
		k := fmt.Sprintf("%s|%d|%s|%s|%s", r.subject, r.dir, r.cell.key(), decisionKey(r.old), decisionKey(r.new))
		g := byKey[k]
		if g == nil {
			g = &first{c: Change{Opened: r.new.Allow, Dir: r.dir, Subjects: []string{r.subject}, Proto: r.cell.proto(), Lo: r.cell.lo, Hi: r.cell.hi, Old: r.old, New: r.new}, units: map[int]bool{}}
			byKey[k] = g
			order = append(order, k)
		}
		g.units[r.unit] = true
	}
	bySubjects := map[string]*Change{}
	var out []*Change
	for _, k := range order {
		ch := byKey[k].c
		ch.Remotes = c.describe(byKey[k].units)
		var rk []string
		for _, r := range ch.Remotes {
			rk = append(rk, remoteKey(r))
		}
		k2 := fmt.Sprintf("%d|%s|%d-%d|%v|%s|%s|%s", ch.Dir, protoKey(ch.Proto), ch.Lo, ch.Hi, ch.Opened, decisionKey(ch.Old), decisionKey(ch.New), strings.Join(rk, ";"))
		if g := bySubjects[k2]; g != nil {
			g.Subjects = append(g.Subjects, ch.Subjects...)
			continue
		}
		cp := ch
		bySubjects[k2] = &cp
		out = append(out, &cp)
	}
	res := make([]Change, len(out))
	for i, ch := range out {
		slices.Sort(ch.Subjects)
		res[i] = *ch
	}
	slices.SortStableFunc(res, func(a, b Change) int {
		return cmp.Or(cmp.Compare(a.Subjects[0], b.Subjects[0]), cmp.Compare(a.Dir, b.Dir),
			cmp.Compare(protoKey(a.Proto), protoKey(b.Proto)), cmp.Compare(a.Lo, b.Lo))
	})
	return res
}

// describe names a set of remote units as briefly as is exact: every
// address of a family (all its units), every address no endpoint owns
// (all its unowned units), endpoints by name, and the prefix regions
// left, a prefix whose regions are all in the set named as a whole.
func (c *comparer) describe(set map[int]bool) []Remote {
	var out []Remote
	done := map[int]bool{}
	for _, fam := range []int{4, 6} {
		all, unowned, inAll, inUnowned := 0, 0, 0, 0
		for i, u := range c.units {
			if family(u.old) != fam {
				continue
			}
			all++
			if set[i] {
				inAll++
			}
			if !u.owned {
				unowned++
				if set[i] {
					inUnowned++
				}
			}
		}
		switch {
		case all > 0 && inAll == all:
			out = append(out, Remote{Any: true, Family: fam})
		case unowned > 0 && inUnowned == unowned:
			out = append(out, Remote{World: true, Family: fam})
		default:
			continue
		}
		for i, u := range c.units {
			if family(u.old) == fam && (inAll == all || !u.owned) {
				done[i] = true
			}
		}
	}
	// both families alike: one remote
	if len(out) == 2 && out[0].Any == out[1].Any {
		out = []Remote{{Any: out[0].Any, World: out[0].World}}
	}
	inSet := map[netip.Prefix]bool{}
	// endpoints: by name, with a family when the set holds the
	// endpoint's addresses of one family only
	famsIn := map[string]map[int]bool{}
	var names []string
	for i := range c.units {
		if !set[i] || done[i] {
			continue
		}
		u := &c.units[i]
		if u.owned {
			k := remoteKey(u.remote)
			if famsIn[k] == nil {
				famsIn[k] = map[int]bool{}
				names = append(names, k)
			}
			famsIn[k][family(u.old)] = true
		}
		if u.region != nil {
			inSet[u.region.prefix] = true
		}
	}
	for _, k := range names {
		var r Remote
		fams := map[int]bool{}
		for i := range c.units {
			if u := &c.units[i]; u.owned && remoteKey(u.remote) == k {
				r = u.remote
				fams[family(u.old)] = true
			}
		}
		if len(famsIn[k]) < len(fams) {
			for f := range famsIn[k] {
				r.Family = f
			}
		}
		out = append(out, r)
	}
	// prefix regions: a prefix whose regions are all in the set (its own
	// and every one inside it) is named whole
	var covered func(p netip.Prefix) bool
	memo := map[netip.Prefix]bool{}
	covered = func(p netip.Prefix) bool {
		if v, ok := memo[p]; ok {
			return v
		}
		_, nonEmpty := c.regionAt[p]
		v := !nonEmpty || inSet[p]
		if v {
			for _, ch := range c.childrenOf(p) {
				if !covered(ch) {
					v = false
					break
				}
			}
		}
		memo[p] = v
		return v
	}
	named := map[netip.Prefix]bool{} // prefixes named whole
	for i := range c.units {
		u := &c.units[i]
		if !set[i] || done[i] || u.owned || u.region == nil {
			continue
		}
		p := u.region.prefix
		// the widest prefix around p that is covered whole
		top := netip.Prefix{}
		for q := p; ; {
			if covered(q) {
				top = q
			}
			parent, ok := c.parentOf(q)
			if !ok {
				break
			}
			q = parent
		}
		if top.IsValid() {
			if !named[top] {
				named[top] = true
				out = append(out, Remote{Prefix: top})
			}
			continue
		}
		out = append(out, u.remote)
	}
	slices.SortFunc(out, compareRemotes)
	return out
}

// childrenOf is the prefixes carved out of p's region (its children in the
// prefix tree), and parentOf the prefix whose region p is carved from.
func (c *comparer) childrenOf(p netip.Prefix) []netip.Prefix { return c.tree.children[p] }

func (c *comparer) parentOf(p netip.Prefix) (netip.Prefix, bool) {
	q, ok := c.tree.parent[p]
	return q, ok
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

func compareRemotes(a, b Remote) int {
	rank := func(r Remote) int {
		switch {
		case r.Any:
			return 0
		case r.Endpoint != "":
			return 1
		case r.World:
			return 3
		}
		return 2
	}
	return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(a.Endpoint, b.Endpoint), cmp.Compare(a.Only, b.Only),
		cmp.Compare(a.Family, b.Family), a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()))
}

func protoKey(p Proto) string {
	if p.Other {
		return fmt.Sprintf("~other%v", p.Except)
	}
	return fmt.Sprintf("%03d", p.Proto)
}
