package difftest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
)

// world is a generated policy: its source text, plus what the packet
// generator needs to aim at interesting addresses and ports.
type world struct {
	src         string
	endpointSrc string // the endpoint declarations alone
	// addresses by family (false: IPv4), in groups the packet generator
	// draws from: local endpoint addresses, addresses inside the CIDRs
	// rules name (and their exceptions), and outside addresses.
	local, inside, outside [2][]netip.Addr
	prefilter              [2][]netip.Addr // sources the prefilter drops
	ports                  []uint16        // rule port boundaries: lo-1, lo, hi, hi+1
	endpoints              []string        // endpoint names, for packets sent via an interface
}

// Label vocabulary: small, so that selectors often match.
var labelKeys = []string{"app", "tier", "env", "debug"}
var labelValues = map[string][]string{
	"app":   {"web", "api", "db", "cache"},
	"tier":  {"front", "back"},
	"env":   {"prod", "dev"},
	"debug": {"on"},
}

// CIDRs rules may name: some contain endpoints (10.0.0.0/8, fd00::/64),
// some are outside, some have exceptions that cut out endpoints.
type cidrChoice struct {
	text   string
	prefix netip.Prefix
	except []netip.Prefix
}

func cidr(p string, except ...string) cidrChoice {
	c := cidrChoice{text: p, prefix: netip.MustParsePrefix(p)}
	if len(except) == 1 {
		c.text += " except " + except[0]
	} else if len(except) > 1 {
		c.text += " except (" + strings.Join(except, ", ") + ")"
	}
	for _, e := range except {
		c.except = append(c.except, netip.MustParsePrefix(e))
	}
	return c
}

var cidrPool = []cidrChoice{
	cidr("10.0.0.0/8"),
	cidr("10.0.1.0/24"),
	cidr("10.0.1.0/28"),
	cidr("10.0.1.12/30"),
	cidr("10.0.1.0/24", "10.0.1.8/29"),
	cidr("10.0.0.0/8", "10.0.1.0/28", "10.0.2.0/24"),
	cidr("10.0.2.0/23"),
	cidr("192.0.2.0/24"),
	cidr("192.0.2.64/26"),
	cidr("192.0.2.0/24", "192.0.2.128/25"),
	cidr("198.51.100.0/24", "198.51.100.128/25"),
	cidr("0.0.0.0/0", "10.0.0.0/8"),
	cidr("0.0.0.0/0"),
	cidr("192.0.2.66/32"),
	cidr("fd00::/64"),
	cidr("fd00::/120", "fd00::10/126"),
	cidr("fd00::/16"),
	cidr("2001:db8::/32", "2001:db8:1::/48"),
	cidr("2001:db8:1::/48"),
	cidr("::/0", "fd00::/16"),
}

// Outside addresses: world, and in the CIDRs above.
var outsidePool = [2][]netip.Addr{
	{mustAddr("192.0.2.1"), mustAddr("192.0.2.66"), mustAddr("192.0.2.70"), mustAddr("192.0.2.200"),
		mustAddr("198.51.100.7"), mustAddr("198.51.100.200"), mustAddr("203.0.113.9"), mustAddr("8.8.8.8"),
		mustAddr("10.9.9.9"), mustAddr("10.0.2.77"), mustAddr("10.0.3.1")},
	{mustAddr("2001:db8::1"), mustAddr("2001:db8:1::7"), mustAddr("2001:db8:ffff::7"),
		mustAddr("fd00::99"), mustAddr("fd00:1::5"), mustAddr("2606:4700::1111")},
}

var prefilterPool = []string{"203.0.113.0/24", "198.51.100.128/25", "2001:db8:dead::/48", "192.0.2.200/30"}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// fam is the family index of an address.
func fam(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

type gen struct {
	r *rand.Rand
	w world
	b strings.Builder
	// tiers: some policies are admin or baseline, with pass rules.
	tiers bool
}

func (g *gen) pick(n int) int        { return g.r.IntN(n) }
func (g *gen) chance(p float64) bool { return g.r.Float64() < p }

func pickOf[T any](g *gen, xs []T) T { return xs[g.pick(len(xs))] }

// generate writes a random, valid policy. With same set, it declares the
// same endpoints as same (the next policy of a `polc apply`). With tiers,
// about one policy in three is an admin or a baseline policy.
func generate(r *rand.Rand, same *world, tiers bool) world {
	g := &gen{r: r, tiers: tiers}
	if same != nil {
		g.b.WriteString(same.endpointSrc)
		g.w.local = same.local
	} else {
		g.endpoints()
	}
	g.w.endpointSrc = g.b.String()
	sets := g.cidrsets()
	nPol := 1 + g.pick(4)
	if g.chance(0.1) {
		nPol = 5 + g.pick(5) // now and then a bigger one
	}
	for i := range nPol {
		g.policy(i, sets)
	}
	if g.chance(0.3) {
		var ps []string
		for _, p := range prefilterPool {
			if g.chance(0.5) {
				ps = append(ps, p)
				pf := netip.MustParsePrefix(p)
				g.w.prefilter[fam(pf.Addr())] = append(g.w.prefilter[fam(pf.Addr())], pf.Addr().Next())
			}
		}
		if len(ps) > 0 {
			fmt.Fprintf(&g.b, "prefilter drop from %s\n", strings.Join(ps, ", "))
		}
	}
	for f := range 2 {
		g.w.outside[f] = slices.Clone(outsidePool[f])
	}
	slices.Sort(g.w.ports)
	g.w.ports = slices.Compact(g.w.ports)
	g.w.src = g.b.String()
	return g.w
}

func (g *gen) endpoints() {
	n := 2 + g.pick(5)
	if g.chance(0.1) {
		n = 8 + g.pick(5) // more label sets, more identities
	}
	for i := range n {
		var labels []string
		for _, k := range labelKeys {
			if g.chance(0.6) {
				labels = append(labels, k+"="+pickOf(g, labelValues[k]))
			}
		}
		var addrs []string
		add := func(a netip.Addr, p string) {
			addrs = append(addrs, p)
			g.w.local[fam(a)] = append(g.w.local[fam(a)], a)
		}
		v4, v6 := g.chance(0.85), g.chance(0.5)
		if !v4 && !v6 {
			v4 = true
		}
		if v4 {
			if i%3 == 2 && g.chance(0.5) {
				// a small prefix: 10.0.2.(8i)/30, four addresses
				base := netip.AddrFrom4([4]byte{10, 0, 2, byte(8 * i)})
				add(base, base.String()+"/30")
				add(base.Next().Next(), "")
				addrs = addrs[:len(addrs)-1]
			} else {
				a := netip.AddrFrom4([4]byte{10, 0, 1, byte(10 + i)})
				add(a, a.String())
				if g.chance(0.15) {
					// a second IPv4 address, elsewhere
					b := netip.AddrFrom4([4]byte{10, 0, 3, byte(10 + i)})
					add(b, b.String())
				}
			}
		}
		if v6 {
			a := netip.MustParseAddr(fmt.Sprintf("fd00::%x", 0x10+i))
			add(a, a.String())
		}
		fmt.Fprintf(&g.b, "endpoint e%d", i)
		if g.chance(0.2) {
			// another node's: a peer only (no hooks, never a subject)
			g.b.WriteString(" remote")
		}
		g.w.endpoints = append(g.w.endpoints, fmt.Sprintf("e%d", i))
		if len(labels) > 0 {
			fmt.Fprintf(&g.b, " labels(%s)", strings.Join(labels, ", "))
		}
		fmt.Fprintf(&g.b, " addr %s\n", strings.Join(addrs, ", "))
	}
}

func (g *gen) cidrsets() []string {
	var names []string
	for i := range g.pick(3) {
		n := 1 + g.pick(2)
		var parts []string
		for range n {
			c := pickOf(g, cidrPool)
			parts = append(parts, c.text)
			g.noteCIDR(c)
		}
		name := fmt.Sprintf("set%d", i)
		names = append(names, name)
		fmt.Fprintf(&g.b, "cidrset %s = %s\n", name, strings.Join(parts, ", "))
	}
	return names
}

// noteCIDR remembers addresses inside a CIDR and its exceptions.
func (g *gen) noteCIDR(c cidrChoice) {
	f := fam(c.prefix.Addr())
	g.w.inside[f] = append(g.w.inside[f], c.prefix.Addr(), lastAddr(c.prefix), c.prefix.Addr().Next())
	for _, e := range c.except {
		g.w.inside[f] = append(g.w.inside[f], e.Addr(), lastAddr(e))
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (g *gen) selector(allowEmpty bool) string {
	if allowEmpty && g.chance(0.1) {
		return "{}"
	}
	n := 1
	if g.chance(0.3) {
		n = 2
	}
	var reqs []string
	keys := slices.Clone(labelKeys)
	g.r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	for _, k := range keys[:n] {
		vs := labelValues[k]
		switch g.pick(10) {
		case 0:
			reqs = append(reqs, k+"!="+pickOf(g, vs))
		case 1:
			reqs = append(reqs, k+" in ("+strings.Join(vs[:1+g.pick(len(vs))], ", ")+")")
		case 2:
			reqs = append(reqs, k+" notin ("+pickOf(g, vs)+")")
		case 3:
			reqs = append(reqs, k+" exists")
		case 4:
			reqs = append(reqs, "!"+k)
		default:
			reqs = append(reqs, k+"="+pickOf(g, vs))
		}
	}
	if len(reqs) == 1 && g.chance(0.7) {
		return reqs[0]
	}
	return "{" + strings.Join(reqs, ", ") + "}"
}

// tierPriorities are few, so that priorities tie (name order decides)
// now and then, with the ends of the range.
var tierPriorities = []int{0, 1, 1, 2, 5, 1000}

func (g *gen) policy(i int, sets []string) {
	if g.tiers && g.chance(0.35) {
		// a tiered policy: no audit, no isolate (both errors)
		fmt.Fprintf(&g.b, "policy p%d tier %s priority %d {\n  select %s\n",
			i, pickOf(g, []string{"admin", "baseline"}), pickOf(g, tierPriorities), g.selector(true))
		for range g.pick(6) {
			g.rule(sets, true)
		}
		g.b.WriteString("}\n")
		return
	}
	audit := ""
	if g.chance(0.2) {
		audit = " audit"
	}
	fmt.Fprintf(&g.b, "policy p%d%s {\n  select %s\n", i, audit, g.selector(true))
	if g.chance(0.2) {
		fmt.Fprintf(&g.b, "  isolate %s\n", pickOf(g, []string{"ingress", "egress", "ingress, egress"}))
	}
	for range g.pick(6) {
		g.rule(sets, false)
	}
	g.b.WriteString("}\n")
}

func (g *gen) rule(sets []string, tiered bool) {
	dir, prep := "ingress", "from"
	if g.chance(0.45) {
		dir, prep = "egress", "to"
	}
	action := "allow"
	if g.chance(0.3) {
		action = "deny"
	} else if tiered && g.chance(0.35) {
		action = "pass"
	}
	fmt.Fprintf(&g.b, "  %s %s", dir, action)
	if g.chance(0.85) {
		var peers []string
		for range 1 + g.pick(2) {
			switch k := g.pick(10); {
			case k < 4:
				peers = append(peers, g.selector(false))
			case k < 7:
				c := pickOf(g, cidrPool)
				g.noteCIDR(c)
				peers = append(peers, c.text)
			case k == 7 && len(sets) > 0:
				peers = append(peers, pickOf(g, sets))
			case k == 8:
				peers = append(peers, "world")
			default:
				peers = append(peers, "any")
			}
		}
		fmt.Fprintf(&g.b, " %s %s", prep, strings.Join(peers, ", "))
	}
	if g.chance(0.8) {
		var terms []string
		for range 1 + g.pick(2) {
			terms = append(terms, g.l4())
		}
		fmt.Fprintf(&g.b, " on %s", strings.Join(terms, ", "))
	}
	g.b.WriteString("\n")
}

var interestingPorts = []uint16{1, 22, 53, 80, 443, 1024, 5432, 8080, 8090, 32768, 65535}

func (g *gen) l4() string {
	switch k := g.pick(20); {
	case k < 12:
		proto := pickOf(g, []string{"tcp", "tcp", "udp", "sctp"})
		switch g.pick(4) {
		case 0:
			return proto
		case 1, 2:
			p := pickOf(g, interestingPorts)
			if g.chance(0.5) {
				p = uint16(1 + g.pick(65535))
			}
			g.notePorts(p, p)
			return fmt.Sprintf("%s/%d", proto, p)
		default:
			lo := pickOf(g, interestingPorts)
			if g.chance(0.5) {
				lo = uint16(1 + g.pick(65000))
			}
			hi := uint32(lo) + uint32(g.pick(3000))
			if g.chance(0.1) {
				hi = 65535
			}
			hi = min(hi, 65535)
			g.notePorts(lo, uint16(hi))
			return fmt.Sprintf("%s/%d-%d", proto, lo, hi)
		}
	case k < 15:
		proto := pickOf(g, []string{"icmp", "icmpv6"})
		types := []int{8, 0, 3, 11}
		if proto == "icmpv6" {
			types = []int{128, 129, 1, 3}
		}
		switch g.pick(3) {
		case 0:
			return proto
		case 1:
			return fmt.Sprintf("%s type %d", proto, pickOf(g, types))
		default:
			return fmt.Sprintf("%s type %d code %d", proto, pickOf(g, types), g.pick(2))
		}
	default:
		return "any"
	}
}

func (g *gen) notePorts(lo, hi uint16) {
	for _, p := range []int{int(lo) - 1, int(lo), int(hi), int(hi) + 1} {
		if p >= 1 && p <= 65535 {
			g.w.ports = append(g.w.ports, uint16(p))
		}
	}
}
