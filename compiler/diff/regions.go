package diff

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/polc-dev/polc/compiler/ir"
)

// region is a set of addresses over which neither program can tell two
// addresses apart: a prefix of either program (an endpoint's address, a
// rule's CIDR or except, or everything) minus the prefixes of either
// program inside it. Every test a rule makes of an address — which
// endpoint owns it (the longest endpoint prefix holding it), whether a
// CIDR or an except holds it — has one answer for the whole region,
// because every prefix that could answer otherwise is carved out of it.
// So one address of the region (rep) stands for all of it.
type region struct {
	prefix netip.Prefix
	except []netip.Prefix // the prefixes carved out: prefix's children
	rep    netip.Addr     // an address of the region
}

// prefixTree is every prefix of both programs, each under the narrowest
// one holding it.
type prefixTree struct {
	regions  []region                        // the non-empty ones
	children map[netip.Prefix][]netip.Prefix // sorted by first address
	parent   map[netip.Prefix]netip.Prefix   // absent for the roots
}

// regions splits the address space by the prefixes of both programs.
// Regions that are empty (carved out entirely) are left out.
func regions(progs ...*ir.Program) prefixTree {
	set := map[netip.Prefix]bool{
		netip.MustParsePrefix("0.0.0.0/0"): true,
		netip.MustParsePrefix("::/0"):      true,
	}
	for _, p := range progs {
		for _, ep := range p.Endpoints {
			for _, a := range ep.Addrs {
				set[a.Masked()] = true
			}
		}
		for _, r := range p.Rules {
			for _, peer := range r.Peers {
				if peer.Kind != ir.PeerCIDR {
					continue
				}
				set[peer.CIDR.Masked()] = true
				for _, x := range peer.Except {
					set[x.Masked()] = true
				}
			}
		}
	}
	prefixes := make([]netip.Prefix, 0, len(set))
	for p := range set {
		prefixes = append(prefixes, p)
	}
	// by first address, the wider prefix first: a prefix follows every
	// prefix that holds it
	slices.SortFunc(prefixes, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	t := prefixTree{children: map[netip.Prefix][]netip.Prefix{}, parent: map[netip.Prefix]netip.Prefix{}}
	var stack []netip.Prefix // the open prefixes, each holding the next
	for _, p := range prefixes {
		for len(stack) > 0 && !holds(stack[len(stack)-1], p) {
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 {
			parent := stack[len(stack)-1]
			t.children[parent] = append(t.children[parent], p)
			t.parent[p] = parent
		}
		stack = append(stack, p)
	}
	t.regions = make([]region, 0, len(prefixes))
	for _, p := range prefixes {
		if rep, ok := firstOutside(p, t.children[p]); ok {
			t.regions = append(t.regions, region{prefix: p, except: t.children[p], rep: rep})
		}
	}
	return t
}

// holds reports whether prefix a holds prefix b (a family's root holds
// every prefix of the family).
func holds(a, b netip.Prefix) bool {
	return a.Addr().Is4() == b.Addr().Is4() && a.Bits() <= b.Bits() && a.Contains(b.Addr())
}

// firstOutside returns the first address of p outside every child
// (children are disjoint, inside p, and sorted by first address).
func firstOutside(p netip.Prefix, children []netip.Prefix) (netip.Addr, bool) {
	a := p.Addr()
	for _, c := range children {
		if a.Less(c.Addr()) {
			return a, true
		}
		a = lastAddr(c).Next()
		if !a.IsValid() || !p.Contains(a) {
			return netip.Addr{}, false
		}
	}
	return a, true
}

// lastAddr is the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		switch {
		case bits >= 8:
			bits -= 8
		case bits > 0:
			b[i] |= 0xff >> bits
			bits = 0
		default:
			b[i] = 0xff
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
