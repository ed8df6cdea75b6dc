package compiler

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// lint reports warnings that are easiest to see on the IR: allow rules that
// can never decide anything because a deny rule covers them. Deny wins over
// allow whatever the order or the policy, so a deny rule of the same
// direction whose policy selects at least the allow rule's subjects, whose
// peers cover the allow's peers and whose ports cover its ports, shadows
// it. Coverage is judged on this build's endpoints (a selector covers
// another when it selects every endpoint the other selects) and is
// conservative: when unsure, it is not reported. Only untiered rules take
// part: in a tier the first match decides, whatever its action.
//
// It also warns about two policies of one tier with the same priority
// whose subjects overlap: their order then rests on their names alone.
func lint(prog *ir.Program) dsl.Diagnostics {
	var ds dsl.Diagnostics
	subjects := map[string][]string{}
	for _, p := range prog.Policies {
		subjects[p.Name] = p.Subjects
	}
	eps := map[string]*ir.Endpoint{}
	for _, e := range prog.Endpoints {
		eps[e.Name] = e
	}
	l := &linter{prog: prog, eps: eps, selectedBy: map[string][]string{}, familiesBy: map[string]int{}}
	for _, r := range prog.Rules {
		if msg := l.familyMismatch(r); msg != "" {
			ds.Warnf(r.Pos, "this rule can never match: %s", msg)
		}
	}
	// Each allow rule is compared only with the deny rules that can shadow
	// it: same direction, and a policy whose subjects include the allow
	// policy's (denyIndex). The first of them in rule order that covers it
	// is the one reported.
	idx := newDenyIndex(prog.Rules, subjects)
	for _, a := range prog.Rules {
		if a.Action != dsl.Allow || a.Tier != dsl.TierNone || len(subjects[a.Policy]) == 0 {
			continue
		}
		for _, d := range idx.candidates(a.Dir, a.Policy) {
			if portsCover(d.Ports, a.Ports) && l.peersCover(d.Peers, a.Peers) {
				ds.Warnf(a.Pos, "this allow rule can never match: deny rule %d at %s covers it, and deny wins", d.ID, d.Pos)
				break
			}
		}
	}
	samePriority(prog, &ds)
	return ds
}

// samePriority warns about each policy of a tier that has the priority of
// an earlier one (by name, the order they then take) and shares a subject
// with it.
func samePriority(prog *ir.Program, ds *dsl.Diagnostics) {
	type slot struct {
		tier     dsl.Tier
		priority int
	}
	seen := map[slot][]*ir.Policy{} // Program.Policies is sorted by name
	for _, p := range prog.Policies {
		if p.Tier == dsl.TierNone {
			continue
		}
		k := slot{p.Tier, p.Priority}
		for _, q := range seen[k] {
			if shared := firstShared(q.Subjects, p.Subjects); shared != "" {
				ds.Warnf(p.Pos, "policies %q (at %s) and %q are both tier %s priority %d and both select endpoint %s: "+
					"name order decides, so %q goes first; give them different priorities",
					q.Name, q.Pos, p.Name, p.Tier, p.Priority, shared, q.Name)
				break
			}
		}
		seen[k] = append(seen[k], p)
	}
}

// firstShared returns the first name of sorted list a that sorted list b
// holds too, or "".
func firstShared(a, b []string) string {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] == b[j]:
			return a[i]
		case a[i] < b[j]:
			i++
		default:
			j++
		}
	}
	return ""
}

// denyIndex finds, for an allow rule, the deny rules of its direction whose
// policy selects at least the allow policy's subjects, in rule order.
// Deny rules are grouped by direction and subject set (policies with the
// same subjects share a group), and each group is listed under every
// subject it has; the candidates for an allow policy are then the groups
// listed under one of its subjects that contain all of them, computed once
// per direction and policy. So the cost follows the deny rules that can
// matter, not all rules times all rules.
type denyIndex struct {
	subjects  map[string][]string // by policy name
	groups    map[denyGroupKey]*denyGroup
	bySubject map[denySubjectKey][]*denyGroup
	memo      map[denySubjectKey][]*ir.Rule // by direction and allow policy
}

type denyGroupKey struct {
	dir      dsl.Direction
	subjects string // subjectsKey
}

type denySubjectKey struct {
	dir  dsl.Direction
	name string
}

type denyGroup struct {
	subjects []string
	rules    []denyRule
}

// denyRule is a deny rule with its place in Program.Rules.
type denyRule struct {
	index int
	rule  *ir.Rule
}

func newDenyIndex(rules []*ir.Rule, subjects map[string][]string) *denyIndex {
	x := &denyIndex{
		subjects:  subjects,
		groups:    map[denyGroupKey]*denyGroup{},
		bySubject: map[denySubjectKey][]*denyGroup{},
		memo:      map[denySubjectKey][]*ir.Rule{},
	}
	byPolicy := map[denySubjectKey]*denyGroup{}
	for i, d := range rules {
		subs := subjects[d.Policy]
		if d.Action != dsl.Deny || d.Tier != dsl.TierNone || len(subs) == 0 {
			continue // a deny without subjects is no superset of any allow's
		}
		pk := denySubjectKey{d.Dir, d.Policy}
		g := byPolicy[pk]
		if g == nil {
			key := denyGroupKey{d.Dir, subjectsKey(subs)}
			if g = x.groups[key]; g == nil {
				g = &denyGroup{subjects: subs}
				x.groups[key] = g
				for _, s := range subs {
					sk := denySubjectKey{d.Dir, s}
					x.bySubject[sk] = append(x.bySubject[sk], g)
				}
			}
			byPolicy[pk] = g
		}
		g.rules = append(g.rules, denyRule{i, d})
	}
	return x
}

// subjectsKey encodes a list of names as one string, each name prefixed by
// its length so that no two lists share a key.
func subjectsKey(names []string) string {
	var b strings.Builder
	for _, n := range names {
		b.WriteString(strconv.Itoa(len(n)))
		b.WriteByte(':')
		b.WriteString(n)
	}
	return b.String()
}

// candidates returns the deny rules of direction dir whose policy's
// subjects include those of policy pol (which has some), in rule order.
func (x *denyIndex) candidates(dir dsl.Direction, pol string) []*ir.Rule {
	if len(x.groups) == 0 {
		return nil
	}
	mk := denySubjectKey{dir, pol}
	if rules, ok := x.memo[mk]; ok {
		return rules
	}
	subs := x.subjects[pol]
	// Every candidate group contains each of subs: look under the subject
	// with the fewest groups.
	var groups []*denyGroup
	for i, s := range subs {
		gs := x.bySubject[denySubjectKey{dir, s}]
		if i == 0 || len(gs) < len(groups) {
			groups = gs
		}
		if len(groups) == 0 {
			break
		}
	}
	var found []denyRule
	for _, g := range groups {
		if subset(subs, g.subjects) {
			found = append(found, g.rules...)
		}
	}
	slices.SortFunc(found, func(a, b denyRule) int { return a.index - b.index })
	rules := make([]*ir.Rule, len(found))
	for i, d := range found {
		rules[i] = d.rule
	}
	x.memo[mk] = rules
	return rules
}

type linter struct {
	prog       *ir.Program
	eps        map[string]*ir.Endpoint
	selectedBy map[string][]string // by normalized selector text
	familiesBy map[string]int      // address families of the selected endpoints, by selector text
	index      *selectorIndex      // over prog.Endpoints, built on first use
}

// selected returns the endpoints sel selects, sorted.
func (l *linter) selected(sel ir.Selector) []string {
	key := sel.String()
	if names, ok := l.selectedBy[key]; ok {
		return names
	}
	if l.index == nil {
		labels := make([]ir.Labels, len(l.prog.Endpoints))
		for i, e := range l.prog.Endpoints {
			labels[i] = e.Labels
		}
		l.index = newSelectorIndex(labels)
	}
	names := []string{}
	for _, i := range l.index.match(sel) {
		names = append(names, l.prog.Endpoints[i].Name)
	}
	l.selectedBy[key] = names
	return names
}

func (l *linter) peersCover(ds, as []ir.Peer) bool {
	for _, a := range as {
		if a.Kind == ir.PeerSelector {
			if !l.endpointsCovered(ds, a.Selector) {
				return false
			}
			continue
		}
		if !slices.ContainsFunc(ds, func(d ir.Peer) bool { return peerCovers(d, a) }) {
			return false
		}
	}
	return true
}

// endpointsCovered reports whether deny peers ds cover every address of
// every endpoint sel selects (and sel selects some: a peer that selects
// nothing has had its own warning).
func (l *linter) endpointsCovered(ds []ir.Peer, sel ir.Selector) bool {
	names := l.selected(sel)
	if len(names) == 0 {
		return false
	}
	for _, name := range names {
		e := l.eps[name]
		for _, addr := range e.Addrs {
			covered := slices.ContainsFunc(ds, func(d ir.Peer) bool {
				switch d.Kind {
				case ir.PeerAny:
					return true
				case ir.PeerSelector:
					return d.Selector.Matches(e.Labels)
				case ir.PeerCIDR:
					return cidrCovers(d, addr, nil)
				}
				return false
			})
			if !covered {
				return false
			}
		}
	}
	return true
}

// peerCovers reports whether deny peer d covers allow peer a, which is not
// a selector.
func peerCovers(d, a ir.Peer) bool {
	switch d.Kind {
	case ir.PeerAny:
		return true
	case ir.PeerWorld:
		return a.Kind == ir.PeerWorld
	case ir.PeerCIDR:
		return a.Kind == ir.PeerCIDR && cidrCovers(d, a.CIDR, a.Except)
	}
	return false
}

// Address families, as bits.
const (
	famV4 = 1 << iota
	famV6
)

// familyMismatch explains why a rule's peers and protocols share no address
// family (`from 10.0.0.0/8 on icmpv6`), or returns "".
func (l *linter) familyMismatch(r *ir.Rule) string {
	peers := 0
	for _, p := range r.Peers {
		switch p.Kind {
		case ir.PeerCIDR:
			peers |= familyOf(p.CIDR.Addr())
		case ir.PeerSelector:
			peers |= l.families(p.Selector)
		default:
			peers |= famV4 | famV6
		}
	}
	ports := 0
	for _, pm := range r.Ports {
		switch pm.Proto {
		case ir.ProtoICMP:
			ports |= famV4
		case ir.ProtoICMPv6:
			ports |= famV6
		default:
			ports |= famV4 | famV6
		}
	}
	if peers == 0 || peers&ports != 0 {
		return ""
	}
	if ports == famV4 {
		return "icmp is IPv4 and every peer is IPv6"
	}
	return "icmpv6 is IPv6 and every peer is IPv4"
}

// families returns the address families of the endpoints sel selects.
func (l *linter) families(sel ir.Selector) int {
	key := sel.String()
	if fams, ok := l.familiesBy[key]; ok {
		return fams
	}
	fams := 0
	for _, name := range l.selected(sel) {
		for _, a := range l.eps[name].Addrs {
			fams |= familyOf(a.Addr())
		}
	}
	l.familiesBy[key] = fams
	return fams
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return famV4
	}
	return famV6
}

// cidrCovers reports whether every address of p minus except is inside
// d's CIDR and outside its exceptions.
func cidrCovers(d ir.Peer, p netip.Prefix, except []netip.Prefix) bool {
	if !prefixContains(d.CIDR, p) {
		return false
	}
	for _, de := range d.Except {
		if !de.Overlaps(p) {
			continue
		}
		if !slices.ContainsFunc(except, func(ae netip.Prefix) bool { return prefixContains(ae, de) }) {
			return false
		}
	}
	return true
}

// prefixContains reports whether outer contains every address of inner.
func prefixContains(outer, inner netip.Prefix) bool {
	return outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

func portsCover(ds, as []ir.PortMatch) bool {
	for _, a := range as {
		if !slices.ContainsFunc(ds, func(d ir.PortMatch) bool { return portCovers(d, a) }) {
			return false
		}
	}
	return true
}

func portCovers(d, a ir.PortMatch) bool {
	switch {
	case d.Proto == ir.ProtoAny:
		return true
	case d.Proto != a.Proto:
		return false
	case d.Proto.HasPorts():
		return d.Lo <= a.Lo && a.Hi <= d.Hi
	case d.Proto.IsICMP():
		if d.ICMPType < 0 {
			return true
		}
		return d.ICMPType == a.ICMPType && (d.ICMPCode < 0 || d.ICMPCode == a.ICMPCode)
	}
	return true
}

// subset reports whether every element of a is in b (both sorted).
func subset(a, b []string) bool {
	for _, x := range a {
		if _, found := slices.BinarySearch(b, x); !found {
			return false
		}
	}
	return true
}
