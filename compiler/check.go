package compiler

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// check reports every semantic problem of the declarations in s, each at
// the token that is wrong. It reads the AST only; the parse helpers it uses
// (parsePrefix, parseCIDR, resolveSteps, ...) are the same ones normalize
// calls, so what check accepts normalize can build.
//
// Host bits: a CIDR in a rule, a cidrset or the prefilter with bits set
// beyond its length (10.0.0.1/8) gets a warning and is masked (10.0.0.0/8).
// On an endpoint the same thing is an error: 10.0.1.10/24 is usually an
// interface address with its subnet, and masking it would hand the endpoint
// the whole subnet.
func check(s *symbols) dsl.Diagnostics {
	c := &checker{syms: s, addrs: endpointAddrs(s)}
	c.endpoints()
	c.cidrsets()
	c.policies()
	c.prefilters()
	c.tests()
	return c.ds
}

type checker struct {
	syms  *symbols
	addrs map[string][]netip.Prefix // valid endpoint addresses, normal form
	ds    dsl.Diagnostics
}

// endpoints checks labels and addresses, and that no two endpoints share
// an address.
func (c *checker) endpoints() {
	type owned struct {
		prefix   netip.Prefix
		endpoint *dsl.Endpoint
		pos      dsl.Pos
		order    int // source order, to report at the later one
	}
	var all []owned
	for _, e := range c.syms.endpoints {
		seenKey := map[string]dsl.Pos{}
		for _, l := range e.Labels {
			if l.Key == "" {
				c.ds.Errorf(l.Pos, "empty label key")
				continue
			}
			if first, ok := seenKey[l.Key]; ok {
				c.ds.Errorf(l.Pos, "duplicate label key %q (first set at %s)", l.Key, first)
				continue
			}
			seenKey[l.Key] = l.Pos
		}
		if len(e.Addrs) == 0 {
			c.ds.Errorf(e.Name.Pos, "endpoint %q has no address", e.Name.Name)
		}
		for _, a := range e.Addrs {
			p, ok := parsePrefix(a, &c.ds)
			if !ok {
				continue
			}
			if m := p.Masked(); m != p {
				c.ds.Errorf(a.Pos, "endpoint address %s has bits set beyond the /%d prefix; write the host address %s or the prefix %s",
					p, p.Bits(), p.Addr(), m)
				continue
			}
			all = append(all, owned{p, e, a.Pos, len(all)})
		}
	}
	// Sorted by address then length, a prefix comes before the prefixes it
	// contains; a stack of the enclosing prefixes finds every overlap.
	sorted := slices.Clone(all)
	slices.SortStableFunc(sorted, func(a, b owned) int { return a.prefix.Compare(b.prefix) })
	var stack []owned
	for _, cur := range sorted {
		for len(stack) > 0 && !stack[len(stack)-1].prefix.Overlaps(cur.prefix) {
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 {
			first, second := stack[len(stack)-1], cur
			if second.order < first.order {
				first, second = second, first
			}
			switch {
			case first.endpoint == second.endpoint && first.prefix == second.prefix:
				c.ds.Warnf(second.pos, "address %s is listed twice", prefixString(second.prefix))
			case first.endpoint == second.endpoint:
				c.ds.Warnf(second.pos, "%s overlaps %s of the same endpoint", prefixString(second.prefix), prefixString(first.prefix))
			case first.prefix == second.prefix:
				c.ds.Errorf(second.pos, "address %s is already endpoint %q's (at %s); an address belongs to one endpoint",
					prefixString(second.prefix), first.endpoint.Name.Name, first.pos)
			default:
				c.ds.Errorf(second.pos, "%s overlaps %s of endpoint %q (at %s); an address belongs to one endpoint",
					prefixString(second.prefix), prefixString(first.prefix), first.endpoint.Name.Name, first.pos)
			}
		}
		stack = append(stack, cur)
	}
}

func (c *checker) cidrsets() {
	for _, set := range c.syms.cidrsets {
		for _, entry := range set.Entries {
			parseCIDR(entry, &c.ds)
		}
	}
}

func (c *checker) policies() {
	for _, p := range c.syms.policies {
		sel := c.selector(p.Select)
		if len(selectEndpoints(c.syms, sel)) == 0 {
			pos := p.Select.Pos
			if !pos.IsValid() {
				pos = p.Name.Pos
			}
			c.ds.Warnf(pos, "policy %q selects no endpoint", p.Name.Name)
		}
		c.tier(p)
		for _, r := range p.Rules {
			c.rule(r)
		}
	}
}

// tier checks a policy's place in the evaluation order: a tier needs a
// priority in 0..MaxPriority, a priority needs a tier, pass belongs to
// tiers, isolation and audit to the namespace level.
func (c *checker) tier(p *dsl.Policy) {
	name := p.Name.Name
	if p.Tier == dsl.TierNone {
		if p.PriorityPos.IsValid() {
			c.ds.Errorf(p.PriorityPos, `policy %q has a priority but no tier; write "tier admin priority %d" or "tier baseline priority %d", or drop the priority`,
				name, p.Priority, p.Priority)
		}
		for _, r := range p.Rules {
			if r.Action == dsl.Pass {
				c.ds.Errorf(r.Pos, `pass is for tiered policies (hand the packet to the next tier); policy %q has no tier: use allow or deny, or give the policy a tier ("tier admin priority N")`, name)
			}
		}
		return
	}
	// A front end that builds the AST itself (Kubernetes input) may set
	// Tier and Priority without positions: a priority is missing only
	// where a tier is written and a priority is not.
	prioPos := p.PriorityPos
	if !prioPos.IsValid() {
		prioPos = p.TierPos
	}
	if !prioPos.IsValid() {
		prioPos = p.Name.Pos
	}
	switch {
	case p.TierPos.IsValid() && !p.PriorityPos.IsValid():
		c.ds.Errorf(p.TierPos, `tier %s needs a priority from 0 (first) to %d, as in "tier %s priority 10"`, p.Tier, dsl.MaxPriority, p.Tier)
	case p.Priority < 0 || p.Priority > dsl.MaxPriority:
		c.ds.Errorf(prioPos, "priority %d is outside 0..%d", p.Priority, dsl.MaxPriority)
	}
	if p.Audit.IsValid() {
		c.ds.Errorf(p.Audit, "audit is for untiered policies; policy %q is in tier %s (audit of tiered policies is not supported)", name, p.Tier)
	}
	for _, d := range p.Isolate {
		c.ds.Errorf(d.Pos, "a tiered policy never isolates: its rules decide only the packets they match, others go on to the next level; drop isolate %s from policy %q (or the tier)", d.Dir, name)
	}
}

func (c *checker) rule(r *dsl.Rule) {
	switch {
	case r.Dir == dsl.Ingress && r.PeerWord == "to":
		c.ds.Errorf(r.PeerPos, `an ingress rule names its peers with "from", not "to"`)
	case r.Dir == dsl.Egress && r.PeerWord == "from":
		c.ds.Errorf(r.PeerPos, `an egress rule names its peers with "to", not "from"`)
	}
	for _, peer := range r.Peers {
		switch peer.Kind {
		case dsl.PeerSelector:
			sel := c.selector(peer.Selector)
			if len(selectEndpoints(c.syms, sel)) == 0 {
				c.ds.Warnf(peer.Pos, "peer %s selects no endpoint", sel)
			}
		case dsl.PeerCIDR:
			parseCIDR(peer.CIDR, &c.ds)
		}
	}
	for _, l4 := range r.Ports {
		parseL4(l4, &c.ds)
	}
}

// selector checks a selector and returns its normal form.
func (c *checker) selector(s dsl.Selector) ir.Selector {
	for _, r := range s.Reqs {
		if r.Key == "" {
			c.ds.Errorf(r.Pos, "empty label key in selector")
		}
		if (r.Op == dsl.OpIn || r.Op == dsl.OpNotIn) && len(r.Values) == 0 {
			c.ds.Errorf(r.Pos, "%q needs at least one value", opWord(r.Op))
		}
	}
	return normSelector(s)
}

func (c *checker) prefilters() {
	for _, pf := range c.syms.prefilters {
		for _, entry := range pf.Entries {
			peer, ok := parseCIDR(entry, &c.ds)
			if !ok {
				continue
			}
			p := peer.CIDR
			// One warning per entry: a /8 may cover thousands of endpoints.
			var covered []string
			first := ""
			for _, e := range c.syms.endpoints {
				for _, a := range c.addrs[e.Name.Name] {
					if p.Overlaps(a) && !slices.ContainsFunc(peer.Except, func(ex netip.Prefix) bool { return prefixContains(ex, a) }) {
						if len(covered) == 0 {
							first = prefixString(a)
						}
						covered = append(covered, e.Name.Name)
						break
					}
				}
			}
			switch len(covered) {
			case 0:
			case 1:
				c.ds.Warnf(entry.Prefix.Pos, "prefilter %s covers address %s of local endpoint %q; packets from outside with that source are dropped",
					prefixString(p), first, covered[0])
			default:
				c.ds.Warnf(entry.Prefix.Pos, "prefilter %s covers address %s of local endpoint %q and addresses of %d more endpoints; packets from outside with those sources are dropped",
					prefixString(p), first, covered[0], len(covered)-1)
			}
		}
	}
}

func (c *checker) tests() {
	for _, t := range c.syms.tests {
		resolveSteps(t, c.syms, c.addrs, &c.ds)
	}
}

// parseAddr parses an address as written. Zones and IPv4-mapped IPv6
// addresses are errors.
func parseAddr(t dsl.Text, ds *dsl.Diagnostics) (netip.Addr, bool) {
	a, err := netip.ParseAddr(t.Text)
	if err != nil {
		ds.Errorf(t.Pos, "invalid address %q: %s", t.Text, netipReason(err))
		return netip.Addr{}, false
	}
	if a.Zone() != "" {
		ds.Errorf(t.Pos, "address %q has a zone; zones are not supported", t.Text)
		return netip.Addr{}, false
	}
	if a.Is4In6() {
		ds.Errorf(t.Pos, "%q is an IPv4-mapped IPv6 address; write %s", t.Text, a.Unmap())
		return netip.Addr{}, false
	}
	return a, true
}

// parsePrefix parses an address (a host prefix, /32 or /128) or a CIDR as
// written, without masking it.
func parsePrefix(t dsl.Text, ds *dsl.Diagnostics) (netip.Prefix, bool) {
	if !strings.Contains(t.Text, "/") {
		a, ok := parseAddr(t, ds)
		if !ok {
			return netip.Prefix{}, false
		}
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	p, err := netip.ParsePrefix(t.Text)
	if err != nil {
		ds.Errorf(t.Pos, "invalid CIDR %q: %s", t.Text, netipReason(err))
		return netip.Prefix{}, false
	}
	if p.Addr().Is4In6() {
		ds.Errorf(t.Pos, "%q is an IPv4-mapped IPv6 prefix; write it as IPv4", t.Text)
		return netip.Prefix{}, false
	}
	return p, true
}

// netipReason keeps the last part of a net/netip error, the part that says
// what is wrong ("IPv4 field has value >255").
func netipReason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "): "); i >= 0 {
		msg = msg[i+3:]
	}
	return msg
}

// parseCIDR checks a CIDR with its exceptions and returns it as a peer in
// normal form: masked (with a warning when that changes it), exceptions
// masked, sorted and unique.
func parseCIDR(c dsl.CIDR, ds *dsl.Diagnostics) (ir.Peer, bool) {
	p, ok := parsePrefix(c.Prefix, ds)
	if !ok {
		return ir.Peer{}, false
	}
	if m := p.Masked(); m != p {
		ds.Warnf(c.Prefix.Pos, "%s has bits set beyond the /%d prefix; it means %s", p, p.Bits(), m)
		p = m
	}
	peer := ir.Peer{Kind: ir.PeerCIDR, CIDR: p}
	for _, ext := range c.Except {
		e, ok := parsePrefix(ext, ds)
		if !ok {
			continue
		}
		if m := e.Masked(); m != e {
			ds.Warnf(ext.Pos, "%s has bits set beyond the /%d prefix; it means %s", e, e.Bits(), m)
			e = m
		}
		if e.Addr().Is4() != p.Addr().Is4() {
			ds.Errorf(ext.Pos, "except %s is %s but %s is %s", e, family(e.Addr()), p, family(p.Addr()))
			continue
		}
		if !p.Contains(e.Addr()) || e.Bits() < p.Bits() {
			ds.Errorf(ext.Pos, "except %s is not inside %s", e, p)
			continue
		}
		if e == p {
			ds.Warnf(ext.Pos, "except %s removes all of %s: the peer matches no address", e, p)
		}
		peer.Except = append(peer.Except, e)
	}
	slices.SortFunc(peer.Except, netip.Prefix.Compare)
	peer.Except = slices.Compact(peer.Except)
	return peer, true
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

var protoByName = map[string]ir.Proto{
	"any":    ir.ProtoAny,
	"tcp":    ir.ProtoTCP,
	"udp":    ir.ProtoUDP,
	"sctp":   ir.ProtoSCTP,
	"icmp":   ir.ProtoICMP,
	"icmpv6": ir.ProtoICMPv6,
}

// parseL4 checks an L4 term and returns it in normal form: a port-less
// tcp/udp/sctp term covers 0..65535, an ICMP term without type or code has
// -1 for them.
func parseL4(l dsl.L4, ds *dsl.Diagnostics) (ir.PortMatch, bool) {
	proto, known := protoByName[strings.ToLower(l.Proto)]
	if !known {
		ds.Errorf(l.Pos, "unknown protocol %q; want tcp, udp, sctp, icmp, icmpv6 or any", l.Proto)
		return ir.PortMatch{}, false
	}
	m := ir.PortMatch{Proto: proto}
	ok := true
	if proto.HasPorts() {
		m.Lo, m.Hi = 0, 65535
	}
	if l.Port == nil && l.PortEnd != nil {
		ds.Errorf(l.PortEnd.Pos, "a port range needs its first port: write %s/LO-%d", proto, l.PortEnd.Value)
		ok = false
	}
	if l.Port != nil {
		switch {
		case proto == ir.ProtoAny:
			ds.Errorf(l.Port.Pos, `"any" protocol has no ports; name the protocol, e.g. tcp/%d`, l.Port.Value)
			ok = false
		case !proto.HasPorts():
			ds.Errorf(l.Port.Pos, "%s has no ports; use \"%s type N\" to match a message type", proto, proto)
			ok = false
		default:
			lo, okLo := checkPort(l.Port, 1, ds)
			hi := lo
			okHi := true
			if l.PortEnd != nil {
				hi, okHi = checkPort(l.PortEnd, 1, ds)
			}
			if okLo && okHi && lo > hi {
				ds.Errorf(l.PortEnd.Pos, "port range %d-%d is empty: the first port is larger than the last", lo, hi)
				okHi = false
			}
			ok = ok && okLo && okHi
			m.Lo, m.Hi = lo, hi
		}
	}
	m.ICMPType, m.ICMPCode = -1, -1
	if !proto.IsICMP() {
		m.ICMPType, m.ICMPCode = 0, 0
		for _, n := range []*dsl.Int{l.ICMPType, l.ICMPCode} {
			if n != nil {
				ds.Errorf(n.Pos, "ICMP type and code apply to icmp and icmpv6, not %s", proto)
				ok = false
				break
			}
		}
		return m, ok
	}
	if l.ICMPType != nil {
		v, okT := checkByte(l.ICMPType, "type", ds)
		ok = ok && okT
		m.ICMPType = int(v)
	}
	if l.ICMPCode != nil {
		v, okC := checkByte(l.ICMPCode, "code", ds)
		ok = ok && okC
		m.ICMPCode = int(v)
		if l.ICMPType == nil {
			ds.Errorf(l.ICMPCode.Pos, `an ICMP code needs a type: write "%s type N code %d"`, proto, l.ICMPCode.Value)
			ok = false
		}
	}
	return m, ok
}

// checkPort checks that n is a port no lower than min.
func checkPort(n *dsl.Int, min int64, ds *dsl.Diagnostics) (uint16, bool) {
	if n.Value < min || n.Value > 65535 {
		ds.Errorf(n.Pos, "port %d is out of range %d..65535", n.Value, min)
		return 0, false
	}
	return uint16(n.Value), true
}

// checkByte checks an ICMP type or code.
func checkByte(n *dsl.Int, what string, ds *dsl.Diagnostics) (uint8, bool) {
	if n.Value < 0 || n.Value > 255 {
		ds.Errorf(n.Pos, "ICMP %s %d is out of range 0..255", what, n.Value)
		return 0, false
	}
	return uint8(n.Value), true
}

// endpointAddrs parses every endpoint's addresses into normal form,
// keeping the valid ones, by endpoint name.
func endpointAddrs(s *symbols) map[string][]netip.Prefix {
	var discard dsl.Diagnostics
	m := map[string][]netip.Prefix{}
	for _, e := range s.endpoints {
		var ps []netip.Prefix
		for _, a := range e.Addrs {
			if p, ok := parsePrefix(a, &discard); ok && p.Masked() == p {
				ps = append(ps, p)
			}
		}
		slices.SortFunc(ps, netip.Prefix.Compare)
		m[e.Name.Name] = slices.Compact(ps)
	}
	return m
}

// normLabels returns an endpoint's labels sorted by key; of two labels with
// the same key (an error check reports) the first is kept.
func normLabels(e *dsl.Endpoint) ir.Labels {
	ls := ir.Labels{}
	seen := map[string]bool{}
	for _, l := range e.Labels {
		if seen[l.Key] {
			continue
		}
		seen[l.Key] = true
		ls = append(ls, ir.Label{Key: l.Key, Value: l.Value})
	}
	slices.SortFunc(ls, func(a, b ir.Label) int { return cmp.Compare(a.Key, b.Key) })
	return ls
}

// normSelector returns a selector's normal form: requirements sorted by key
// then operator (then values), values sorted and unique, duplicates gone.
func normSelector(s dsl.Selector) ir.Selector {
	var sel ir.Selector
	for _, r := range s.Reqs {
		vals := slices.Clone(r.Values)
		slices.Sort(vals)
		vals = slices.Compact(vals)
		sel.Reqs = append(sel.Reqs, ir.Requirement{Key: r.Key, Op: r.Op, Values: vals})
	}
	slices.SortFunc(sel.Reqs, compareReq)
	sel.Reqs = slices.CompactFunc(sel.Reqs, func(a, b ir.Requirement) bool { return compareReq(a, b) == 0 })
	return sel
}

func compareReq(a, b ir.Requirement) int {
	return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.Op, b.Op), slices.Compare(a.Values, b.Values))
}

// selectEndpoints returns the names of the endpoints sel selects, sorted.
// Results are cached by selector: large builds repeat a few selectors many
// times.
func selectEndpoints(s *symbols, sel ir.Selector) []string {
	if s.labels == nil {
		s.labels = map[string]ir.Labels{}
		s.selected = map[string][]string{}
		for _, e := range s.endpoints {
			s.labels[e.Name.Name] = normLabels(e)
			s.sortedNames = append(s.sortedNames, e.Name.Name)
		}
		slices.Sort(s.sortedNames)
		labels := make([]ir.Labels, len(s.sortedNames))
		for i, name := range s.sortedNames {
			labels[i] = s.labels[name]
		}
		s.index = newSelectorIndex(labels)
	}
	key := sel.String()
	if names, ok := s.selected[key]; ok {
		return names
	}
	names := []string{}
	for _, i := range s.index.match(sel) {
		names = append(names, s.sortedNames[i])
	}
	s.selected[key] = names
	return names
}

// selectorIndex finds the endpoints a selector selects without testing
// every endpoint against it: the endpoints that have a label (key=value) or
// a key are listed under it, and a selector with a requirement that needs
// a label (=, in, exists) only tests the endpoints listed under the
// requirement with the fewest. The result is what testing every endpoint
// in order would give.
type selectorIndex struct {
	labels  []ir.Labels
	byLabel map[ir.Label][]int // endpoints (positions in labels) by label
	byKey   map[string][]int   // endpoints by label key
}

func newSelectorIndex(labels []ir.Labels) *selectorIndex {
	x := &selectorIndex{labels: labels, byLabel: map[ir.Label][]int{}, byKey: map[string][]int{}}
	for i, ls := range labels {
		// Labels.Get sees the first label of a key only. A set keeps this
		// linear for endpoints with very many labels.
		var seen map[string]bool
		if len(ls) > 8 {
			seen = make(map[string]bool, len(ls))
		}
		for j, l := range ls {
			var dup bool
			if seen != nil {
				dup = seen[l.Key]
				seen[l.Key] = true
			} else {
				dup = slices.ContainsFunc(ls[:j], func(m ir.Label) bool { return m.Key == l.Key })
			}
			if dup {
				continue
			}
			x.byLabel[l] = append(x.byLabel[l], i)
			x.byKey[l.Key] = append(x.byKey[l.Key], i)
		}
	}
	return x
}

// match returns the positions of the endpoints sel selects, ascending.
func (x *selectorIndex) match(sel ir.Selector) []int {
	// The narrowest requirement that only endpoints with some label meet.
	var best *ir.Requirement
	bestLen := len(x.labels)
	for i := range sel.Reqs {
		r := &sel.Reqs[i]
		n := -1
		switch r.Op {
		case dsl.OpEq:
			if len(r.Values) == 1 {
				n = len(x.byLabel[ir.Label{Key: r.Key, Value: r.Values[0]}])
			}
		case dsl.OpIn:
			n = 0
			for _, v := range uniqueValues(r.Values) {
				n += len(x.byLabel[ir.Label{Key: r.Key, Value: v}])
			}
		case dsl.OpExists:
			n = len(x.byKey[r.Key])
		}
		if n >= 0 && n < bestLen {
			best, bestLen = r, n
		}
	}
	var candidates []int
	switch {
	case best == nil:
		candidates = make([]int, len(x.labels))
		for i := range candidates {
			candidates[i] = i
		}
	case best.Op == dsl.OpEq:
		candidates = x.byLabel[ir.Label{Key: best.Key, Value: best.Values[0]}]
	case best.Op == dsl.OpIn:
		for _, v := range uniqueValues(best.Values) {
			candidates = append(candidates, x.byLabel[ir.Label{Key: best.Key, Value: v}]...)
		}
		slices.Sort(candidates) // an endpoint has one value per key: no duplicates
	case best.Op == dsl.OpExists:
		candidates = x.byKey[best.Key]
	}
	out := []int{}
	for _, i := range candidates {
		if sel.Matches(x.labels[i]) {
			out = append(out, i)
		}
	}
	return out
}

// uniqueValues returns vs sorted and without duplicates, in a new slice.
func uniqueValues(vs []string) []string {
	vs = slices.Clone(vs)
	slices.Sort(vs)
	return slices.Compact(vs)
}

// opWord is how the language writes a list operator.
func opWord(op dsl.Op) string {
	if op == dsl.OpNotIn {
		return "notin"
	}
	return "in"
}

// prefixString prints a host prefix as its address, others as CIDRs.
func prefixString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}
