package compiler

import (
	"net/netip"
	"slices"

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
// conservative: when unsure, it is not reported.
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
	l := &linter{prog: prog, eps: eps, selectedBy: map[string][]string{}}
	for _, r := range prog.Rules {
		if msg := l.familyMismatch(r); msg != "" {
			ds.Warnf(r.Pos, "this rule can never match: %s", msg)
		}
	}
	for _, a := range prog.Rules {
		if a.Action != dsl.Allow || len(subjects[a.Policy]) == 0 {
			continue
		}
		for _, d := range prog.Rules {
			if d.Action != dsl.Deny || d.Dir != a.Dir || !subset(subjects[a.Policy], subjects[d.Policy]) {
				continue
			}
			if portsCover(d.Ports, a.Ports) && l.peersCover(d.Peers, a.Peers) {
				ds.Warnf(a.Pos, "this allow rule can never match: deny rule %d at %s covers it, and deny wins", d.ID, d.Pos)
				break
			}
		}
	}
	return ds
}

type linter struct {
	prog       *ir.Program
	eps        map[string]*ir.Endpoint
	selectedBy map[string][]string // by normalized selector text
}

// selected returns the endpoints sel selects, sorted.
func (l *linter) selected(sel ir.Selector) []string {
	key := sel.String()
	if names, ok := l.selectedBy[key]; ok {
		return names
	}
	names := []string{}
	for _, e := range l.prog.Endpoints {
		if sel.Matches(e.Labels) {
			names = append(names, e.Name)
		}
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
			for _, name := range l.selected(p.Selector) {
				for _, a := range l.eps[name].Addrs {
					peers |= familyOf(a.Addr())
				}
			}
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
