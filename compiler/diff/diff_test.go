package diff

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/polc-dev/polc/compiler"
	"github.com/polc-dev/polc/compiler/eval"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

func compile(t testing.TB, src string) *ir.Program {
	t.Helper()
	path := filepath.Join(t.TempDir(), "p.pol")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	prog, srcs, diags := compiler.Load([]string{path})
	if diags.HasErrors() || prog == nil {
		t.Fatalf("compile:\n%s\n%s", diags.Format(func(f string) []byte { return srcs[f] }), src)
	}
	return prog
}

func TestLastAddrAndRegions(t *testing.T) {
	for _, c := range []struct{ p, last string }{
		{"10.0.0.0/8", "10.255.255.255"}, {"10.1.2.3/32", "10.1.2.3"}, {"0.0.0.0/0", "255.255.255.255"},
		{"10.0.0.0/13", "10.7.255.255"}, {"fd00::/64", "fd00::ffff:ffff:ffff:ffff"},
	} {
		if got := lastAddr(netip.MustParsePrefix(c.p)); got.String() != c.last {
			t.Errorf("lastAddr(%s) = %s, want %s", c.p, got, c.last)
		}
	}
	// 10.0.0.0/31 is carved out entirely by its two hosts: no region
	prog := compile(t, `endpoint a labels(app=a) addr 10.0.0.0
endpoint b labels(app=b) addr 10.0.0.1
policy p { select app=a
  ingress allow from 10.0.0.0/31, 10.0.0.0/24 except 10.0.0.128/25 }
`)
	tree := regions(prog)
	var got []string
	for _, r := range tree.regions {
		got = append(got, fmt.Sprintf("%s-%d@%s", r.prefix, len(r.except), r.rep))
	}
	want := []string{"0.0.0.0/0-1@0.0.0.0", "10.0.0.0/24-2@10.0.0.2", "10.0.0.0/32-0@10.0.0.0", "10.0.0.1/32-0@10.0.0.1", "10.0.0.128/25-0@10.0.0.128", "::/0-0@::"}
	if !slices.Equal(got, want) {
		t.Errorf("regions:\n%v\nwant\n%v", got, want)
	}
}

// gen writes random policy sources over a small world, so that random
// packets often meet its boundaries.
type gen struct {
	r *rand.Rand
	// tiers: about half the policies are admin or baseline, with
	// priorities that tie now and then, and pass rules.
	tiers bool
}

var (
	genPorts = []string{"tcp/22", "tcp/80", "tcp/80-90", "tcp/8080-8090", "tcp", "udp/53", "udp/1000-2000", "sctp/9",
		"icmp type 8", "icmp type 3 code 1", "icmp", "icmpv6 type 128", "icmpv6", "any"}
	genCIDRs = []string{"10.0.0.0/16", "10.0.1.0/24", "192.0.2.0/24", "192.0.2.0/26", "198.51.100.7", "fd00::/64",
		"2001:db8::/32", "10.0.0.0/8 except 10.0.2.0/24", "192.0.2.0/24 except 192.0.2.64/26, 192.0.2.3"}
)

type genEndpoint struct {
	name, labels string
	addrs        []string
}

func (g *gen) endpoints() []genEndpoint {
	var eps []genEndpoint
	for i := range 3 + g.r.IntN(4) {
		ep := genEndpoint{name: fmt.Sprintf("e%d", i), labels: fmt.Sprintf("app=a%d, tier=t%d", g.r.IntN(3), g.r.IntN(2))}
		ep.addrs = []string{fmt.Sprintf("10.0.%d.%d", g.r.IntN(3), 1+i)}
		if g.r.IntN(2) == 0 {
			ep.addrs = append(ep.addrs, fmt.Sprintf("fd00::%x", i+1))
		}
		eps = append(eps, ep)
	}
	return eps
}

func (g *gen) rule(tiered bool) string {
	dir, verb := "ingress", "from"
	if g.r.IntN(2) == 0 {
		dir, verb = "egress", "to"
	}
	action := "allow"
	switch n := g.r.IntN(4); {
	case n == 0:
		action = "deny"
	case n == 1 && tiered:
		action = "pass"
	}
	var peer string
	switch g.r.IntN(5) {
	case 0, 1:
		peer = fmt.Sprintf("app=a%d", g.r.IntN(3))
	case 2:
		peer = genCIDRs[g.r.IntN(len(genCIDRs))]
	case 3:
		peer = "world"
	default:
		peer = "any"
	}
	var ports []string
	for range 1 + g.r.IntN(2) {
		ports = append(ports, genPorts[g.r.IntN(len(genPorts))])
	}
	return fmt.Sprintf("  %s %s %s %s on %s\n", dir, action, verb, peer, strings.Join(ports, ", "))
}

type genPolicy struct {
	sel      string
	tier     string // "", admin or baseline
	priority int
	rules    []string
}

func (g *gen) policies() []genPolicy {
	var ps []genPolicy
	for range 1 + g.r.IntN(4) {
		p := genPolicy{sel: fmt.Sprintf("app=a%d", g.r.IntN(3))}
		if g.r.IntN(3) == 0 {
			p.sel = fmt.Sprintf("tier=t%d", g.r.IntN(2))
		}
		g.tier(&p)
		for range 1 + g.r.IntN(4) {
			p.rules = append(p.rules, g.rule(p.tier != ""))
		}
		ps = append(ps, p)
	}
	return ps
}

// tier puts p in a tier, or none, when the generator makes tiers.
func (g *gen) tier(p *genPolicy) {
	if !g.tiers {
		return
	}
	p.tier, p.priority = []string{"", "", "admin", "baseline"}[g.r.IntN(4)], g.r.IntN(3)
}

func source(eps []genEndpoint, ps []genPolicy) string {
	var sb strings.Builder
	for _, e := range eps {
		fmt.Fprintf(&sb, "endpoint %s labels(%s) addr %s\n", e.name, e.labels, strings.Join(e.addrs, ", "))
	}
	for i, p := range ps {
		tier := ""
		if p.tier != "" {
			tier = fmt.Sprintf(" tier %s priority %d", p.tier, p.priority)
		}
		fmt.Fprintf(&sb, "policy p%d%s {\n  select %s\n%s}\n", i, tier, p.sel, strings.Join(p.rules, ""))
	}
	return sb.String()
}

// mutate changes the world a little: a rule rewritten, added or removed,
// a selector, an endpoint's labels, an endpoint added, removed or moved.
func (g *gen) mutate(eps []genEndpoint, ps []genPolicy) ([]genEndpoint, []genPolicy) {
	eps = slices.Clone(eps)
	ps = slices.Clone(ps)
	for i := range ps {
		ps[i].rules = slices.Clone(ps[i].rules)
	}
	for range 1 + g.r.IntN(2) {
		p := &ps[g.r.IntN(len(ps))]
		n := 8
		if g.tiers {
			n = 10
		}
		switch g.r.IntN(n) {
		case 0, 1:
			p.rules[g.r.IntN(len(p.rules))] = g.rule(p.tier != "")
		case 2:
			p.rules = append(p.rules, g.rule(p.tier != ""))
		case 3:
			if len(p.rules) > 1 {
				i := g.r.IntN(len(p.rules))
				p.rules = append(p.rules[:i], p.rules[i+1:]...)
			}
		case 4:
			p.sel = fmt.Sprintf("app=a%d", g.r.IntN(3))
		case 5:
			e := &eps[g.r.IntN(len(eps))]
			e.labels = fmt.Sprintf("app=a%d, tier=t%d", g.r.IntN(3), g.r.IntN(2))
		case 6:
			if g.r.IntN(2) == 0 && len(eps) > 2 {
				eps = eps[:len(eps)-1]
			} else {
				eps = append(eps, genEndpoint{name: fmt.Sprintf("n%d", len(eps)), labels: "app=a1, tier=t0", addrs: []string{fmt.Sprintf("10.0.1.%d", 100+len(eps))}})
			}
		case 7:
			e := &eps[g.r.IntN(len(eps))]
			e.addrs = slices.Clone(e.addrs)
			e.addrs[0] = fmt.Sprintf("10.0.2.%d", 200+g.r.IntN(50))
		case 8:
			// another priority: the tier's order changes
			if p.tier != "" {
				p.priority = g.r.IntN(3)
			}
		case 9:
			// rules swapped: in a tier, the first match changes
			if len(p.rules) > 1 {
				i, j := g.r.IntN(len(p.rules)), g.r.IntN(len(p.rules))
				p.rules[i], p.rules[j] = p.rules[j], p.rules[i]
			}
		}
	}
	return eps, ps
}

// probeAddrs are addresses near every prefix the programs name.
func probeAddrs(r *rand.Rand, progs ...*ir.Program) []netip.Addr {
	out := []netip.Addr{netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("2001:db8:ffff::1"), netip.MustParseAddr("8.8.8.8")}
	add := func(p netip.Prefix) {
		p = p.Masked()
		out = append(out, p.Addr(), lastAddr(p))
		if prev := p.Addr().Prev(); prev.IsValid() {
			out = append(out, prev)
		}
		if next := lastAddr(p).Next(); next.IsValid() {
			out = append(out, next)
		}
		if p.Addr().Is4() && p.Bits() < 32 {
			b := p.Addr().As4()
			b[3] += byte(1 + r.IntN(3))
			out = append(out, netip.AddrFrom4(b))
		}
	}
	for _, p := range progs {
		for _, ep := range p.Endpoints {
			for _, a := range ep.Addrs {
				add(a)
			}
		}
		for _, rl := range p.Rules {
			for _, peer := range rl.Peers {
				if peer.Kind == ir.PeerCIDR {
					add(peer.CIDR)
					for _, x := range peer.Except {
						add(x)
					}
				}
			}
		}
	}
	return out
}

var probeProtos = []ir.Proto{ir.ProtoTCP, ir.ProtoUDP, ir.ProtoSCTP, ir.ProtoICMP, ir.ProtoICMPv6, 47}

func probePacket(r *rand.Rand, remote netip.Addr) eval.Packet {
	pkt := eval.Packet{Proto: probeProtos[r.IntN(len(probeProtos))], Src: remote, Dst: remote}
	ports := []uint16{0, 9, 21, 22, 23, 53, 79, 80, 85, 90, 91, 999, 1000, 1500, 2000, 2001, 8079, 8080, 8090, 8091, 65535}
	pkt.DPort = ports[r.IntN(len(ports))]
	types := []uint8{0, 3, 8, 128, 129, 255}
	pkt.ICMPType, pkt.ICMPCode = types[r.IntN(len(types))], uint8(r.IntN(3))
	return pkt
}

func verdictOf(ev *eval.Evaluator, subject string, dir dsl.Direction, remote netip.Addr, pkt eval.Packet) bool {
	v, _, ok := ev.Decide(subject, dir, remote, pkt)
	return !ok || v == dsl.VerdictAllow
}

// covers reports whether change c includes the flow: subject's dir hook,
// remote address a (owned as the programs say), the packet's L4 fields.
func covers(c Change, subject string, dir dsl.Direction, a netip.Addr, ownO, ownN string, pkt eval.Packet) bool {
	if c.Dir != dir || !slices.Contains(c.Subjects, subject) {
		return false
	}
	switch {
	case c.Proto.Other:
		if slices.Contains(c.Proto.Except, pkt.Proto) {
			return false
		}
	case c.Proto.Proto != pkt.Proto:
		return false
	case pkt.Proto.HasPorts():
		if pkt.DPort < c.Lo || pkt.DPort > c.Hi {
			return false
		}
	case eval.NativeICMP(pkt.Proto, a):
		if tc := uint16(pkt.ICMPType)<<8 | uint16(pkt.ICMPCode); tc < c.Lo || tc > c.Hi {
			return false
		}
	}
	for _, r := range c.Remotes {
		fam := r.Family == 0 || (r.Family == 4) == a.Is4()
		switch {
		case r.Any && fam:
			return true
		case r.World && fam && ownO == "" && ownN == "":
			return true
		case r.Endpoint != "" && fam && (r.Endpoint == ownO || r.Endpoint == ownN):
			return true
		case r.Endpoint == "" && !r.World && !r.Any && r.Prefix.Contains(a) && !slices.ContainsFunc(r.Except, func(x netip.Prefix) bool { return x.Contains(a) }):
			return true
		}
	}
	return false
}

// TestCompareIsExact: for random pairs of programs, a random flow is in
// a reported change exactly when the two programs' verdicts on it differ
// (the reference evaluator's, per hook), and in the change of the right
// kind. Addresses an endpoint of both programs moved to or from are
// compared by name instead (see the package doc), and checked so.
func TestCompareIsExact(t *testing.T) {
	t.Run("untiered", func(t *testing.T) { testCompareIsExact(t, false) })
	t.Run("tiers", func(t *testing.T) { testCompareIsExact(t, true) })
}

func testCompareIsExact(t *testing.T, tiers bool) {
	iterations := 300
	if testing.Short() {
		iterations = 60
	}
	checked, changed := 0, 0
	for seed := range uint64(iterations) {
		r := rand.New(rand.NewPCG(seed, 7))
		g := &gen{r: r, tiers: tiers}
		eps, ps := g.endpoints(), g.policies()
		eps2, ps2 := g.mutate(eps, ps)
		oldSrc, newSrc := source(eps, ps), source(eps2, ps2)
		old, new := compile(t, oldSrc), compile(t, newSrc)
		res := Compare(old, new)
		evO, evN := eval.New(old), eval.New(new)
		names := map[string]bool{}
		for _, ep := range old.Endpoints {
			names[ep.Name] = true
		}
		for _, ep := range new.Endpoints {
			names[ep.Name] = true
		}
		inBoth := func(n string) bool {
			return slices.ContainsFunc(old.Endpoints, func(e *ir.Endpoint) bool { return e.Name == n }) &&
				slices.ContainsFunc(new.Endpoints, func(e *ir.Endpoint) bool { return e.Name == n })
		}
		addrs := probeAddrs(r, old, new)
		nameList := slices.Sorted(maps.Keys(names))
		for range 3000 {
			subject := nameList[r.IntN(len(nameList))]
			dir := dsl.Direction(r.IntN(2))
			a := addrs[r.IntN(len(addrs))]
			pkt := probePacket(r, a)
			ownO, ownN := ownerName(evO, a), ownerName(evN, a)
			if ownO != ownN && (inBoth(ownO) || inBoth(ownN)) {
				continue // an endpoint moved here or away: compared by name
			}
			vo, vn := verdictOf(evO, subject, dir, a, pkt), verdictOf(evN, subject, dir, a, pkt)
			var hits []Change
			for _, c := range res.Changes {
				if covers(c, subject, dir, a, ownO, ownN, pkt) {
					hits = append(hits, c)
				}
			}
			checked++
			switch {
			case vo == vn && len(hits) > 0:
				t.Fatalf("seed %d: %s %v %s %+v: no change (%v), but reported in %+v\nold:\n%s\nnew:\n%s", seed, subject, dir, a, pkt, vo, hits, oldSrc, newSrc)
			case vo != vn && len(hits) != 1:
				t.Fatalf("seed %d: %s %v %s %+v: %v → %v, reported in %d changes %+v\nold:\n%s\nnew:\n%s", seed, subject, dir, a, pkt, vo, vn, len(hits), hits, oldSrc, newSrc)
			case vo != vn && hits[0].Opened != vn:
				t.Fatalf("seed %d: %s %v %s: %v → %v reported as opened=%v", seed, subject, dir, a, vo, vn, hits[0].Opened)
			case vo != vn:
				changed++
			}
		}
		// endpoints of both programs, by name at their own addresses
		for _, n := range nameList {
			if !inBoth(n) {
				continue
			}
			for _, v6 := range []bool{false, true} {
				ao, okO := ownedAddr(evO, endpointNamed(old, n), v6)
				an, okN := ownedAddr(evN, endpointNamed(new, n), v6)
				if !okO || !okN || ao == an {
					continue
				}
				for range 50 {
					subject := nameList[r.IntN(len(nameList))]
					dir := dsl.Direction(r.IntN(2))
					pkt := probePacket(r, ao)
					pktN := pkt
					pktN.Src, pktN.Dst = an, an
					vo, vn := verdictOf(evO, subject, dir, ao, pkt), verdictOf(evN, subject, dir, an, pktN)
					hit := slices.ContainsFunc(res.Changes, func(c Change) bool { return covers(c, subject, dir, ao, n, n, pkt) })
					if hit != (vo != vn) {
						t.Fatalf("seed %d: moved %s (%s → %s), %s %v %+v: %v → %v, reported %v\nold:\n%s\nnew:\n%s", seed, n, ao, an, subject, dir, pkt, vo, vn, hit, oldSrc, newSrc)
					}
				}
			}
		}
	}
	if changed == 0 || changed == checked {
		t.Fatalf("%d of %d probes changed: the generator does not exercise both cases", changed, checked)
	}
	t.Logf("%d probes, %d changed", checked, changed)
}

func endpointNamed(p *ir.Program, name string) *ir.Endpoint {
	for _, e := range p.Endpoints {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// TestSameProgramNoChange: a program against itself, rules reordered and
// policies renamed, changes nothing.
func TestSameProgramNoChange(t *testing.T) {
	for seed := range uint64(50) {
		g := &gen{r: rand.New(rand.NewPCG(seed, 9))}
		eps, ps := g.endpoints(), g.policies()
		shuffled := slices.Clone(ps)
		for i := range shuffled {
			shuffled[i].rules = slices.Clone(shuffled[i].rules)
			slices.Reverse(shuffled[i].rules)
		}
		slices.Reverse(shuffled)
		if res := Compare(compile(t, source(eps, ps)), compile(t, source(eps, shuffled))); len(res.Changes) != 0 {
			t.Fatalf("seed %d: %d changes between a program and itself reordered: %+v", seed, len(res.Changes), res.Changes)
		}
	}
}
