package compiler

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// normalize builds the IR of checked declarations, in the normal form
// package ir documents. Rules are numbered from ir.FirstRuleID in load
// order: file by file, policy by policy, rule by rule as written. A rule's
// peers and ports keep the order they were written in (a cidrset expands in
// place, its entries in normal-form order); tests keep source order.
// Sources are filled in by the caller.
// localEndpoints are the names that are local endpoints' (a remote
// endpoint is never a subject), in a new slice.
func localEndpoints(s *symbols, names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		if !s.endpointByName[n].Remote.IsValid() {
			out = append(out, n)
		}
	}
	return out
}

func normalize(s *symbols) *ir.Program {
	var discard dsl.Diagnostics // check has reported everything already
	addrs := endpointAddrs(s)
	prog := &ir.Program{
		Endpoints: []*ir.Endpoint{},
		Policies:  []*ir.Policy{},
		Rules:     []*ir.Rule{},
		Prefilter: []netip.Prefix{},
		Tests:     []*ir.Test{},
	}
	for _, e := range s.endpoints {
		prog.Endpoints = append(prog.Endpoints, &ir.Endpoint{
			Name:   e.Name.Name,
			Pos:    e.Pos,
			Labels: normLabels(e),
			Addrs:  slices.Clone(addrs[e.Name.Name]),
			Remote: e.Remote.IsValid(),
		})
	}
	slices.SortFunc(prog.Endpoints, func(a, b *ir.Endpoint) int { return cmp.Compare(a.Name, b.Name) })

	id := ir.FirstRuleID
	for _, p := range s.policies {
		pol := &ir.Policy{
			Name:    p.Name.Name,
			Pos:     p.Pos,
			Subject: normSelector(p.Select),
			Rules:   []ir.RuleID{},
			Audit:   p.Audit.IsValid(),
			Tier:    p.Tier,
		}
		if p.Tier != dsl.TierNone {
			pol.Priority = p.Priority
		}
		pol.Subjects = localEndpoints(s, selectEndpoints(s, pol.Subject))
		for _, d := range p.Isolate {
			isolate(pol, d.Dir)
		}
		for _, r := range p.Rules {
			isolate(pol, r.Dir)
			rule := &ir.Rule{
				ID:     id,
				Policy: pol.Name,
				Pos:    r.Pos,
				Dir:    r.Dir,
				Action: r.Action,
				Peers:  normPeers(r.Peers, s, &discard),
				Ports:  normPorts(r.Ports, &discard),
				Audit:  pol.Audit,
				Tier:   pol.Tier,
				// Rank: rankTiers, once every policy is known
				Priority: pol.Priority,
			}
			rule.Text = ruleText(r, rule, &discard)
			prog.Rules = append(prog.Rules, rule)
			pol.Rules = append(pol.Rules, id)
			id++
		}
		prog.Policies = append(prog.Policies, pol)
	}
	slices.SortFunc(prog.Policies, func(a, b *ir.Policy) int { return cmp.Compare(a.Name, b.Name) })
	rankTiers(prog)

	for _, pf := range s.prefilters {
		for _, entry := range pf.Entries {
			if peer, ok := parseCIDR(entry, &discard); ok {
				prog.Prefilter = append(prog.Prefilter, subtractPrefixes(peer.CIDR, peer.Except)...)
			}
		}
	}
	slices.SortFunc(prog.Prefilter, netip.Prefix.Compare)
	prog.Prefilter = slices.Compact(prog.Prefilter)

	for _, t := range s.tests {
		prog.Tests = append(prog.Tests, &ir.Test{
			Name:  t.Name.Text,
			Pos:   t.Pos,
			Steps: resolveSteps(t, s, addrs, &discard),
		})
	}
	return prog
}

// rankTiers numbers the rules of each tier from 1 in the tier's order:
// by the policy's priority, then the policy's name, then rule ID. Both
// directions share one numbering; untiered rules keep Rank 0.
func rankTiers(prog *ir.Program) {
	byID := make(map[ir.RuleID]*ir.Rule, len(prog.Rules))
	for _, r := range prog.Rules {
		byID[r.ID] = r
	}
	for _, tier := range []dsl.Tier{dsl.TierAdmin, dsl.TierBaseline} {
		var pols []*ir.Policy
		for _, pol := range prog.Policies {
			if pol.Tier == tier {
				pols = append(pols, pol)
			}
		}
		slices.SortStableFunc(pols, func(a, b *ir.Policy) int {
			return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(a.Name, b.Name))
		})
		rank := uint32(0)
		for _, pol := range pols {
			for _, id := range pol.Rules { // in ID order
				rank++
				byID[id].Rank = rank
			}
		}
	}
}

// isolate marks direction dir default-deny for pol's subjects; a tiered
// policy never isolates.
func isolate(pol *ir.Policy, dir dsl.Direction) {
	if pol.Tier != dsl.TierNone {
		return
	}
	if dir == dsl.Ingress || dir == dsl.Egress {
		pol.Isolates[dir] = true
	}
}

// normPeers returns a rule's peers in normal form: never empty (no peers is
// one PeerAny), cidrsets expanded in place.
func normPeers(peers []dsl.Peer, s *symbols, ds *dsl.Diagnostics) []ir.Peer {
	if len(peers) == 0 {
		return []ir.Peer{{Kind: ir.PeerAny}}
	}
	var out []ir.Peer
	for _, p := range peers {
		switch p.Kind {
		case dsl.PeerSelector:
			out = append(out, ir.Peer{Kind: ir.PeerSelector, Selector: normSelector(p.Selector)})
		case dsl.PeerCIDR:
			if peer, ok := parseCIDR(p.CIDR, ds); ok {
				out = append(out, peer)
			}
		case dsl.PeerSet:
			out = append(out, expandSet(s.cidrsetByName[p.Set.Name], ds)...)
		case dsl.PeerWorld:
			out = append(out, ir.Peer{Kind: ir.PeerWorld})
		case dsl.PeerAny:
			out = append(out, ir.Peer{Kind: ir.PeerAny})
		}
	}
	return out
}

// expandSet returns a cidrset's entries as peers, sorted by prefix and
// unique.
func expandSet(set *dsl.CIDRSet, ds *dsl.Diagnostics) []ir.Peer {
	if set == nil {
		return nil
	}
	var out []ir.Peer
	for _, e := range set.Entries {
		if peer, ok := parseCIDR(e, ds); ok {
			peer.Set = set.Name.Name
			out = append(out, peer)
		}
	}
	slices.SortFunc(out, func(a, b ir.Peer) int {
		return cmp.Or(a.CIDR.Compare(b.CIDR), slices.CompareFunc(a.Except, b.Except, netip.Prefix.Compare))
	})
	return slices.CompactFunc(out, func(a, b ir.Peer) bool {
		return a.CIDR == b.CIDR && slices.Equal(a.Except, b.Except)
	})
}

// normPorts returns a rule's L4 terms in normal form: never empty (none is
// one ProtoAny term).
func normPorts(ports []dsl.L4, ds *dsl.Diagnostics) []ir.PortMatch {
	if len(ports) == 0 {
		return []ir.PortMatch{{Proto: ir.ProtoAny}}
	}
	var out []ir.PortMatch
	for _, l := range ports {
		if m, ok := parseL4(l, ds); ok {
			out = append(out, m)
		}
	}
	return out
}

// ruleText prints a rule in canonical language form, as written but with
// normal-form selectors and CIDRs; a cidrset stays a name.
func ruleText(r *dsl.Rule, rule *ir.Rule, ds *dsl.Diagnostics) string {
	var b strings.Builder
	b.WriteString(r.Dir.String() + " " + r.Action.String())
	if len(r.Peers) > 0 {
		if r.Dir == dsl.Ingress {
			b.WriteString(" from ")
		} else {
			b.WriteString(" to ")
		}
		for i, p := range r.Peers {
			if i > 0 {
				b.WriteString(", ")
			}
			switch p.Kind {
			case dsl.PeerSelector:
				b.WriteString(normSelector(p.Selector).String())
			case dsl.PeerCIDR:
				peer, _ := parseCIDR(p.CIDR, ds)
				b.WriteString(peer.String())
			case dsl.PeerSet:
				b.WriteString(p.Set.Name)
			case dsl.PeerWorld:
				b.WriteString("world")
			case dsl.PeerAny:
				b.WriteString("any")
			}
		}
	}
	if len(r.Ports) > 0 {
		b.WriteString(" on ")
		for i, l := range r.Ports {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(l4Text(l))
		}
	}
	return b.String()
}

// l4Text prints an L4 term as written, lower case.
func l4Text(l dsl.L4) string {
	s := strings.ToLower(l.Proto)
	if l.Port != nil {
		s += "/" + strconv.FormatInt(l.Port.Value, 10)
		if l.PortEnd != nil && l.PortEnd.Value != l.Port.Value {
			s += "-" + strconv.FormatInt(l.PortEnd.Value, 10)
		}
	}
	if l.ICMPType != nil {
		s += " type " + strconv.FormatInt(l.ICMPType.Value, 10)
	}
	if l.ICMPCode != nil {
		s += " code " + strconv.FormatInt(l.ICMPCode.Value, 10)
	}
	return s
}

// subtractPrefixes returns the prefixes that cover p minus except: p
// itself when no exception touches it, nothing when one covers it, else the
// same for each half of p. The prefilter has no exceptions, so an entry
// `A except B` becomes the (at most bits(B)-bits(A) per exception)
// prefixes of A around B.
func subtractPrefixes(p netip.Prefix, except []netip.Prefix) []netip.Prefix {
	touching := false
	for _, e := range except {
		if prefixContains(e, p) {
			return nil
		}
		if e.Overlaps(p) {
			touching = true
		}
	}
	if !touching || p.Bits() == p.Addr().BitLen() {
		return []netip.Prefix{p}
	}
	lo := netip.PrefixFrom(p.Addr(), p.Bits()+1)
	hiAddr := p.Addr().AsSlice()
	bit := p.Bits()
	hiAddr[bit/8] |= 0x80 >> (bit % 8)
	a, _ := netip.AddrFromSlice(hiAddr)
	hi := netip.PrefixFrom(a, p.Bits()+1)
	return append(subtractPrefixes(lo, except), subtractPrefixes(hi, except)...)
}
