package eval

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// Evaluator answers verdict questions about one program. It is immutable
// after New, so one Evaluator may serve several goroutines, each with its
// own Conntrack.
type Evaluator struct {
	prog *ir.Program
	gen  uint64

	endpoints []*ir.Endpoint
	byName    map[string]int                // endpoint name → index
	subjects  []subject                     // by endpoint index
	owners    prefixTable[int]              // endpoint address → endpoint index
	cidrs     prefixTable[[][]netip.Prefix] // rule CIDR → the Except lists it is written with
	prefilter []netip.Prefix
}

// subject is what the evaluator needs to decide for one endpoint as a
// subject, per direction (indexed by dsl.Direction).
type subject struct {
	// isolated and rules are the namespace level's: untiered policies.
	isolated [2]bool
	rules    [2][]*ir.Rule // from every enforcing policy that selects it, sorted by ID
	// audited: an audit policy selects it in that direction; then
	// allIsolated and allRules are what every policy, audit or not, says.
	audited     [2]bool
	allIsolated [2]bool
	allRules    [2][]*ir.Rule
	// admin and baseline are the rules of the tiered policies that
	// select it, in their tier's order: policy priority, policy name,
	// rule ID.
	admin, baseline [2][]tieredRule
}

// New indexes a program. The program must be checked IR (package compiler
// produces it); New does not modify it. Which policies select which
// endpoint is computed again from the selectors, not read from
// Policy.Subjects, so that a front-end mistake there shows up as a
// difference.
func New(p *ir.Program) *Evaluator {
	e := &Evaluator{
		prog:      p,
		endpoints: p.Endpoints,
		byName:    make(map[string]int, len(p.Endpoints)),
		subjects:  make([]subject, len(p.Endpoints)),
		owners:    newPrefixTable[int](),
		cidrs:     newPrefixTable[[][]netip.Prefix](),
		prefilter: p.Prefilter,
	}
	for i, ep := range p.Endpoints {
		if _, dup := e.byName[ep.Name]; !dup {
			e.byName[ep.Name] = i
		}
		for _, a := range ep.Addrs {
			// Ties (two endpoints with the same prefix) go to the first
			// endpoint by name; the checker rejects them anyway.
			if _, dup := e.owners.m[a.Masked()]; !dup {
				e.owners.add(a.Masked(), i)
			}
		}
	}
	rules := make(map[ir.RuleID]*ir.Rule, len(p.Rules))
	for _, r := range p.Rules {
		rules[r.ID] = r
		for _, peer := range r.Peers {
			if peer.Kind == ir.PeerCIDR {
				c := peer.CIDR.Masked()
				old := e.cidrs.m[c]
				e.cidrs.add(c, append(old, peer.Except))
			}
		}
	}
	for _, pol := range p.Policies {
		for i, ep := range p.Endpoints {
			if ep.Remote || !selects(pol.Subject, ep.Labels) {
				// a remote endpoint is never a subject here
				continue
			}
			s := &e.subjects[i]
			if pol.Tier != dsl.TierNone {
				// a tiered policy never isolates: its rules decide the
				// packets they match, in its tier
				tier := &s.admin
				if pol.Tier == dsl.TierBaseline {
					tier = &s.baseline
				}
				for _, id := range pol.Rules {
					if r := rules[id]; r != nil && (r.Dir == dsl.Ingress || r.Dir == dsl.Egress) {
						tier[r.Dir] = append(tier[r.Dir], tieredRule{r, pol})
					}
				}
				continue
			}
			for d := range s.isolated {
				if !pol.Audit {
					s.isolated[d] = s.isolated[d] || pol.Isolates[d]
				}
				s.allIsolated[d] = s.allIsolated[d] || pol.Isolates[d]
				s.audited[d] = s.audited[d] || (pol.Audit && pol.Isolates[d])
			}
			for _, id := range pol.Rules {
				if r := rules[id]; r != nil && (r.Dir == dsl.Ingress || r.Dir == dsl.Egress) {
					if !pol.Audit {
						s.rules[r.Dir] = append(s.rules[r.Dir], r)
					}
					s.allRules[r.Dir] = append(s.allRules[r.Dir], r)
					s.audited[r.Dir] = s.audited[r.Dir] || pol.Audit
				}
			}
		}
	}
	sortRules := func(rs []*ir.Rule) []*ir.Rule {
		slices.SortFunc(rs, func(a, b *ir.Rule) int { return int(a.ID) - int(b.ID) })
		return slices.CompactFunc(rs, func(a, b *ir.Rule) bool { return a.ID == b.ID })
	}
	for i := range e.subjects {
		for d := range e.subjects[i].rules {
			e.subjects[i].rules[d] = sortRules(e.subjects[i].rules[d])
			e.subjects[i].allRules[d] = sortRules(e.subjects[i].allRules[d])
			tierOrder(e.subjects[i].admin[d])
			tierOrder(e.subjects[i].baseline[d])
		}
	}
	return e
}

// tieredRule is a rule of a tiered policy with its policy.
type tieredRule struct {
	rule *ir.Rule
	pol  *ir.Policy
}

// tierOrder sorts a tier's rules as the meaning says, from the policies
// rather than from Rule.Rank (which the lowering uses): by the policy's
// priority, then its name, then rule ID.
func tierOrder(rs []tieredRule) {
	slices.SortFunc(rs, func(a, b tieredRule) int {
		if a.pol.Priority != b.pol.Priority {
			return cmp.Compare(a.pol.Priority, b.pol.Priority)
		}
		if a.pol.Name != b.pol.Name {
			return strings.Compare(a.pol.Name, b.pol.Name)
		}
		return cmp.Compare(a.rule.ID, b.rule.ID)
	})
}

// WithGeneration returns an Evaluator for the same program that stamps the
// flows it creates with gen, and treats flows stamped with another
// generation as created under another policy (see Eval). It models `polc
// apply`: build the new program's Evaluator with the next generation and
// keep using the same Conntrack. New's generation is 0.
func (e *Evaluator) WithGeneration(gen uint64) *Evaluator {
	c := *e
	c.gen = gen
	return &c
}

// Generation returns the generation set by WithGeneration.
func (e *Evaluator) Generation() uint64 { return e.gen }

// Program returns the program the Evaluator was built from.
func (e *Evaluator) Program() *ir.Program { return e.prog }

// ResolutionKind says what an address resolved to.
type ResolutionKind int

const (
	ResolvedWorld    ResolutionKind = iota // no endpoint, no CIDR named in a rule
	ResolvedEndpoint                       // an endpoint's address, local or remote (Endpoint.Remote)
	ResolvedCIDR                           // inside a CIDR some rule names
)

// Resolution is the identity an address resolves to, for explaining
// verdicts. Matching never uses it: rules are matched against addresses.
type Resolution struct {
	Kind     ResolutionKind
	Endpoint *ir.Endpoint // ResolvedEndpoint
	// Prefix is the endpoint's address prefix that holds the address
	// (ResolvedEndpoint) or the CIDR (ResolvedCIDR).
	Prefix netip.Prefix
}

func (r Resolution) String() string {
	switch r.Kind {
	case ResolvedEndpoint:
		if r.Endpoint.Remote {
			return "remote endpoint " + r.Endpoint.Name
		}
		return "endpoint " + r.Endpoint.Name
	case ResolvedCIDR:
		return "cidr " + r.Prefix.String()
	}
	return "world"
}

// Resolve says which identity addr has: the endpoint that owns it
// (longest prefix among endpoint addresses), else the longest CIDR named in
// a rule's peer that holds it outside that peer's exceptions, else world.
func (e *Evaluator) Resolve(addr netip.Addr) Resolution {
	if i, pfx, ok := e.owners.lookup(addr, nil); ok {
		return Resolution{Kind: ResolvedEndpoint, Endpoint: e.endpoints[i], Prefix: pfx}
	}
	inside := func(excepts [][]netip.Prefix) bool {
		for _, ex := range excepts {
			if !containsAny(ex, addr) {
				return true
			}
		}
		return false
	}
	if _, pfx, ok := e.cidrs.lookup(addr, inside); ok {
		return Resolution{Kind: ResolvedCIDR, Prefix: pfx}
	}
	return Resolution{Kind: ResolvedWorld}
}

// owner returns the index of the endpoint owning addr, or -1.
func (e *Evaluator) owner(addr netip.Addr) int {
	if i, _, ok := e.owners.lookup(addr, nil); ok {
		return i
	}
	return -1
}

// local returns the index of the local endpoint owning addr, or -1: the
// endpoint whose hooks see its packets.
func (e *Evaluator) local(addr netip.Addr) int {
	if i := e.owner(addr); i >= 0 && !e.endpoints[i].Remote {
		return i
	}
	return -1
}

// Elsewhere reports whether a packet from src to dst is no business of
// this program's node: no local endpoint sends or receives it, and a
// remote endpoint does (so another node's bundle decides it).
func (e *Evaluator) Elsewhere(src, dst netip.Addr) bool {
	if e.local(src) >= 0 || e.local(dst) >= 0 {
		return false
	}
	return e.owner(src) >= 0 || e.owner(dst) >= 0
}

// HasRemote reports whether the packet has a remote endpoint at either
// end: this node decides only the local end's half of it.
func (e *Evaluator) HasRemote(src, dst netip.Addr) bool {
	for _, a := range []netip.Addr{src, dst} {
		if i := e.owner(a); i >= 0 && e.endpoints[i].Remote {
			return true
		}
	}
	return false
}

// Prefiltered reports whether the XDP prefilter drops a packet from src
// arriving on an uplink.
func (e *Evaluator) Prefiltered(src netip.Addr) bool { return containsAny(e.prefilter, src) }

// EvalPrefilter reports whether p's prefilter drops a packet from src
// arriving on an uplink.
func EvalPrefilter(p *ir.Program, src netip.Addr) (drop bool) { return containsAny(p.Prefilter, src) }

// decide applies policy at one point: subject si in direction dir, remote
// address remote, for the L4 fields of pkt, in the order of the tiers:
//
//  1. the admin tier: its first matching rule decides; pass goes on to 2;
//  2. the namespace level (untiered policies): if one isolates the
//     subject in dir, deny beats allow, else default-deny; if none does,
//     on to 3;
//  3. the baseline tier, like the admin tier; pass goes on to 4;
//  4. default-allow.
//
// The decision is the enforcing policies'. When they pass the packet and
// an audit policy selects the subject in dir, every policy (audit ones
// too) is asked the same way; if that denies, audit is its rule
// (ir.RuleAuditDefaultDeny for the default), and the packet still passes.
func (e *Evaluator) decide(si int, dir dsl.Direction, remote netip.Addr, pkt *Packet) decision {
	s := &e.subjects[si]
	d := e.decideTiers(s, dir, s.isolated[dir], s.rules[dir], remote, pkt)
	if d.verdict != dsl.VerdictAllow || !s.audited[dir] {
		return d
	}
	if a := e.decideTiers(s, dir, s.allIsolated[dir], s.allRules[dir], remote, pkt); a.verdict == dsl.VerdictDeny {
		d.audit = a.rule
		if d.audit == ir.RuleDefaultDeny {
			d.audit = ir.RuleAuditDefaultDeny
		}
	}
	return d
}

// decision is what decide says at one point.
type decision struct {
	verdict dsl.Verdict
	rule    ir.RuleID
	audit   ir.RuleID
	// passes are the pass rules the packet crossed on the way to rule,
	// in order: an admin rule's, then a baseline rule's.
	passes []ir.RuleID
	level  Level
}

// decideTiers decides with the tiers of s and one namespace level
// tieredDeny reports whether a tiered policy that selects the subject has
// a deny rule in dir: a packet at that hook may be denied even where
// nothing isolates it.
func (s *subject) tieredDeny(dir dsl.Direction) bool {
	for _, tier := range [][2][]tieredRule{s.admin, s.baseline} {
		for _, tr := range tier[dir] {
			if tr.rule.Action == dsl.Deny {
				return true
			}
		}
	}
	return false
}

// (isolation and untiered rules).
func (e *Evaluator) decideTiers(s *subject, dir dsl.Direction, isolated bool, rules []*ir.Rule, remote netip.Addr, pkt *Packet) decision {
	var d decision
	if r := e.firstMatch(s.admin[dir], remote, pkt); r != nil {
		if r.Action != dsl.Pass {
			d.verdict, d.rule, d.level = actionVerdict(r.Action), r.ID, LevelAdmin
			return d
		}
		d.passes = append(d.passes, r.ID)
	}
	if isolated {
		d.verdict, d.rule = e.decideBy(true, rules, remote, pkt)
		d.level = LevelNamespace
		return d
	}
	if r := e.firstMatch(s.baseline[dir], remote, pkt); r != nil {
		if r.Action != dsl.Pass {
			d.verdict, d.rule, d.level = actionVerdict(r.Action), r.ID, LevelBaseline
			return d
		}
		d.passes = append(d.passes, r.ID)
	}
	d.verdict, d.rule, d.level = dsl.VerdictAllow, ir.RuleDefaultAllow, LevelDefault
	return d
}

// firstMatch returns the first rule of a tier, in its order, that matches
// the packet, or nil.
func (e *Evaluator) firstMatch(tier []tieredRule, remote netip.Addr, pkt *Packet) *ir.Rule {
	if len(tier) == 0 {
		return nil
	}
	owner := e.owner(remote)
	for _, t := range tier {
		if e.ruleMatches(t.rule, remote, owner, pkt) {
			return t.rule
		}
	}
	return nil
}

func actionVerdict(a dsl.Action) dsl.Verdict {
	if a == dsl.Deny {
		return dsl.VerdictDeny
	}
	return dsl.VerdictAllow
}

// decideBy decides with one set of policies of the namespace level:
// isolation and rules.
func (e *Evaluator) decideBy(isolated bool, rules []*ir.Rule, remote netip.Addr, pkt *Packet) (dsl.Verdict, ir.RuleID) {
	if !isolated {
		return dsl.VerdictAllow, ir.RuleDefaultAllow
	}
	owner := e.owner(remote)
	allow := ir.RuleNone
	for _, r := range rules { // sorted by ID: the first match of a kind is the lowest
		if r.Action == dsl.Allow && allow != ir.RuleNone {
			continue
		}
		if !e.ruleMatches(r, remote, owner, pkt) {
			continue
		}
		if r.Action == dsl.Deny {
			return dsl.VerdictDeny, r.ID
		}
		allow = r.ID
	}
	if allow != ir.RuleNone {
		return dsl.VerdictAllow, allow
	}
	return dsl.VerdictDeny, ir.RuleDefaultDeny
}

func (e *Evaluator) ruleMatches(r *ir.Rule, remote netip.Addr, owner int, pkt *Packet) bool {
	l4 := false
	for _, m := range r.Ports {
		if portMatches(m, pkt) {
			l4 = true
			break
		}
	}
	if !l4 {
		return false
	}
	for i := range r.Peers {
		if e.peerMatches(&r.Peers[i], remote, owner) {
			return true
		}
	}
	return false
}

func (e *Evaluator) peerMatches(p *ir.Peer, remote netip.Addr, owner int) bool {
	switch p.Kind {
	case ir.PeerSelector:
		return owner >= 0 && selects(p.Selector, e.endpoints[owner].Labels)
	case ir.PeerCIDR:
		return p.CIDR.Contains(remote) && !containsAny(p.Except, remote)
	case ir.PeerWorld:
		return owner < 0
	case ir.PeerAny:
		return true
	}
	return false
}

// portMatches matches the L4 term m against the packet's protocol and
// destination port (or ICMP type and code). ICMP outside its family has no
// type or code: only a term without them matches it.
func portMatches(m ir.PortMatch, pkt *Packet) bool {
	switch {
	case m.Proto == ir.ProtoAny:
		return true
	case m.Proto != pkt.Proto:
		return false
	case m.Proto.HasPorts():
		return m.Lo <= pkt.DPort && pkt.DPort <= m.Hi
	case m.Proto.IsICMP() && !pkt.icmp():
		return m.ICMPType < 0 && m.ICMPCode < 0
	case m.Proto.IsICMP():
		return (m.ICMPType < 0 || m.ICMPType == int(pkt.ICMPType)) &&
			(m.ICMPCode < 0 || m.ICMPCode == int(pkt.ICMPCode))
	}
	return true
}

// selects is the meaning of a selector, written out again here rather than
// borrowed from package ir: every requirement must hold; != and notin also
// hold when the key is absent.
func selects(s ir.Selector, labels ir.Labels) bool {
	for _, r := range s.Reqs {
		v, ok := "", false
		for _, l := range labels {
			if l.Key == r.Key {
				v, ok = l.Value, true
				break
			}
		}
		var holds bool
		switch r.Op {
		case dsl.OpEq:
			holds = ok && slices.Equal(r.Values, []string{v})
		case dsl.OpNotEq:
			holds = !ok || !slices.Equal(r.Values, []string{v})
		case dsl.OpIn:
			holds = ok && slices.Contains(r.Values, v)
		case dsl.OpNotIn:
			holds = !ok || !slices.Contains(r.Values, v)
		case dsl.OpExists:
			holds = ok
		case dsl.OpNotExists:
			holds = !ok
		}
		if !holds {
			return false
		}
	}
	return true
}

func containsAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// prefixTable is a longest-prefix-match table: a map per prefix plus the
// distinct prefix lengths in use, longest first, so a lookup costs one map
// probe per length in use rather than a scan of every prefix.
type prefixTable[V any] struct {
	m            map[netip.Prefix]V
	lens4, lens6 []int
}

func newPrefixTable[V any]() prefixTable[V] {
	return prefixTable[V]{m: make(map[netip.Prefix]V)}
}

func (t *prefixTable[V]) add(p netip.Prefix, v V) {
	t.m[p] = v
	lens := &t.lens6
	if p.Addr().Is4() {
		lens = &t.lens4
	}
	if !slices.Contains(*lens, p.Bits()) {
		*lens = append(*lens, p.Bits())
		slices.Sort(*lens)
		slices.Reverse(*lens)
	}
}

// lookup returns the value of the longest prefix holding a for which ok
// (when not nil) accepts the value.
func (t *prefixTable[V]) lookup(a netip.Addr, ok func(V) bool) (V, netip.Prefix, bool) {
	lens := t.lens6
	if a.Is4() {
		lens = t.lens4
	}
	for _, bits := range lens {
		p, err := a.Prefix(bits)
		if err != nil {
			continue
		}
		if v, hit := t.m[p]; hit && (ok == nil || ok(v)) {
			return v, p, true
		}
	}
	var zero V
	return zero, netip.Prefix{}, false
}

// ruleName is a rule id as the evaluator prints it.
func ruleName(id ir.RuleID) string {
	if n := ir.ReservedName(id); n != "" {
		return n
	}
	return "rule " + strconv.Itoa(int(id))
}

// Decide is the policy decision at one observation point, without the
// path around it (spoofing, fragments, conntrack, neighbour discovery):
// subject, the endpoint of that name, in direction dir, with remote the
// other side's address, for the L4 fields of pkt (Proto, DPort, ICMP type
// and code; pkt.Src says the address family, for ICMP). ok is false when
// the program has no endpoint called subject.
func (e *Evaluator) Decide(subject string, dir dsl.Direction, remote netip.Addr, pkt Packet) (v dsl.Verdict, rule ir.RuleID, ok bool) {
	i, ok := e.byName[subject]
	if !ok {
		return dsl.VerdictAllow, ir.RuleNone, false
	}
	d := e.decide(i, dir, remote, &pkt)
	return d.verdict, d.rule, true
}

// SubjectRules says what decides at the namespace level for the endpoint
// called subject in direction dir: whether an untiered policy isolates
// it, and the rules of every untiered policy that selects it, sorted by
// ID. ok is false when the program has no such endpoint. TieredRules has
// the rest.
func (e *Evaluator) SubjectRules(subject string, dir dsl.Direction) (isolated bool, rules []*ir.Rule, ok bool) {
	i, ok := e.byName[subject]
	if !ok {
		return false, nil, false
	}
	s := &e.subjects[i]
	return s.isolated[dir], s.rules[dir], true
}

// TieredRules returns the rules of the admin and the baseline policies
// that select the endpoint called subject, in direction dir, each tier in
// its order (the first match decides); ok is false when the program has
// no such endpoint.
func (e *Evaluator) TieredRules(subject string, dir dsl.Direction) (admin, baseline []*ir.Rule, ok bool) {
	i, ok := e.byName[subject]
	if !ok {
		return nil, nil, false
	}
	s := &e.subjects[i]
	for _, t := range s.admin[dir] {
		admin = append(admin, t.rule)
	}
	for _, t := range s.baseline[dir] {
		baseline = append(baseline, t.rule)
	}
	return admin, baseline, true
}
