package lower

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// The address pool random programs draw from: nested prefixes, hosts
// inside and outside them, in both families.
var (
	poolEndpointAddrs = []string{"10.0.0.1", "10.0.0.2", "10.0.0.9", "10.0.0.130", "10.0.1.5", "192.168.1.1",
		"10.0.0.16/30", "10.0.0.17", "10.0.0.128/29", "10.0.0.0/25", "fd00::1", "fd00::2", "fd00::1:0/126"}
	poolCIDRs = []string{"10.0.0.0/8", "10.0.0.0/24", "10.0.0.0/28", "10.0.0.8/29", "10.0.0.128/25",
		"10.0.0.1/32", "10.0.0.16/31", "0.0.0.0/0", "192.168.0.0/16", "fd00::/64", "fd00::/127", "::/0", "10.0.0.130/32"}
	poolExcepts = []string{"10.0.0.0/28", "10.0.0.1/32", "10.0.0.8/30", "10.0.0.128/26", "10.0.0.16/31",
		"10.0.0.18/32", "192.168.1.0/24", "fd00::/127", "fd00::1:0/127", "10.0.0.130/32"}
	poolProbeAddrs = []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.9", "10.0.0.11", "10.0.0.16", "10.0.0.17",
		"10.0.0.18", "10.0.0.19", "10.0.0.129", "10.0.0.130", "10.0.0.200", "10.0.1.5", "10.9.9.9", "192.168.1.1",
		"192.168.2.2", "8.8.8.8", "fd00::1", "fd00::2", "fd00::3", "fd00::1:0", "fd00::1:3", "fd00::ff", "2001:db8::1"}
	poolPorts = []uint16{0, 1, 7, 8, 15, 16, 17, 22, 23, 31, 32, 53, 80, 443, 1000, 1023, 1024, 8080, 8090, 65535}
)

// randomProgram makes a small random program; with tiers some of its
// policies are admin or baseline ones.
func randomProgram(r *rand.Rand, tiers bool) *ir.Program {
	labels := func() string {
		s := ""
		if r.IntN(4) > 0 {
			s += "app=" + []string{"a", "b", "c"}[r.IntN(3)]
		}
		if r.IntN(2) == 0 {
			s += ",tier=" + []string{"x", "y"}[r.IntN(2)]
		}
		return s
	}
	selector := func() ir.Selector {
		switch r.IntN(5) {
		case 0:
			return sel("")
		case 1:
			return sel("!tier")
		case 2:
			return sel("tier=" + []string{"x", "y"}[r.IntN(2)])
		}
		return sel("app=" + []string{"a", "b", "c"}[r.IntN(3)])
	}
	var eps []*ir.Endpoint
	used := map[string]bool{}
	for i := range 1 + r.IntN(6) {
		var addrs []string
		for range 1 + r.IntN(2) {
			a := poolEndpointAddrs[r.IntN(len(poolEndpointAddrs))]
			if !used[a] {
				used[a] = true
				addrs = append(addrs, a)
			}
		}
		if len(addrs) == 0 {
			continue
		}
		e := ep(fmt.Sprintf("e%d", i), labels(), addrs...)
		sortAddrs(e.Addrs)
		eps = append(eps, e)
	}
	peer := func() ir.Peer {
		switch r.IntN(6) {
		case 0:
			return peerAny
		case 1:
			return peerWorld
		case 2, 3:
			return ir.Peer{Kind: ir.PeerSelector, Selector: selector()}
		}
		var ex []string
		for range r.IntN(3) {
			ex = append(ex, poolExcepts[r.IntN(len(poolExcepts))])
		}
		p := peerCIDR(poolCIDRs[r.IntN(len(poolCIDRs))])
		for _, e := range ex {
			ep := netip.MustParsePrefix(e)
			if ep.Addr().BitLen() == p.CIDR.Addr().BitLen() && ep.Bits() > p.CIDR.Bits() && p.CIDR.Contains(ep.Addr()) {
				p.Except = append(p.Except, ep)
			}
		}
		p.Except = uniqPrefixes(p.Except)
		return p
	}
	port := func() ir.PortMatch {
		pick := func() uint16 { return poolPorts[r.IntN(len(poolPorts))] }
		switch r.IntN(8) {
		case 0:
			return anyProto
		case 1:
			return ir.PortMatch{Proto: []ir.Proto{ir.ProtoICMP, ir.ProtoICMPv6}[r.IntN(2)], ICMPType: []int{-1, 0, 8}[r.IntN(3)], ICMPCode: []int{-1, 0, 1}[r.IntN(3)]}
		case 2:
			return ir.PortMatch{Proto: 47}
		case 3:
			return tcp(0, 65535)
		}
		lo, hi := pick(), pick()
		if lo > hi {
			lo, hi = hi, lo
		}
		return ir.PortMatch{Proto: []ir.Proto{ir.ProtoTCP, ir.ProtoUDP, ir.ProtoSCTP}[r.IntN(3)], Lo: lo, Hi: hi}
	}
	var pols []policySpec
	for i := range r.IntN(5) {
		ps := policySpec{name: fmt.Sprintf("p%d", i), subject: selector()}
		if tiers {
			// a third admin, a sixth baseline, with few priorities
			// so that some tie (then the name orders them)
			switch r.IntN(6) {
			case 0, 1:
				ps.tier = dsl.TierAdmin
			case 2:
				ps.tier = dsl.TierBaseline
			}
			if ps.tier != dsl.TierNone {
				ps.priority = r.IntN(3) * 10
			}
		}
		if r.IntN(4) == 0 && ps.tier == dsl.TierNone {
			ps.isolate[r.IntN(2)] = true
		}
		for range r.IntN(5) {
			rs := ruleSpec{dir: dsl.Direction(r.IntN(2)), action: dsl.Action(r.IntN(2))}
			if ps.tier != dsl.TierNone {
				rs.action = []dsl.Action{dsl.Allow, dsl.Deny, dsl.Pass}[r.IntN(3)]
			}
			for range 1 + r.IntN(2) {
				rs.peers = append(rs.peers, peer())
			}
			for range 1 + r.IntN(2) {
				rs.ports = append(rs.ports, port())
			}
			ps.rules = append(ps.rules, rs)
		}
		pols = append(pols, ps)
	}
	return program(eps, pols)
}

func sortAddrs(ps []netip.Prefix) {
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && comparePrefix(ps[j], ps[j-1]) < 0; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

func uniqPrefixes(ps []netip.Prefix) []netip.Prefix {
	sortAddrs(ps)
	var out []netip.Prefix
	for i, p := range ps {
		if i == 0 || p != ps[i-1] {
			out = append(out, p)
		}
	}
	return out
}

func randomPacket(r *rand.Rand) ir.Packet {
	var src, dst netip.Addr
	for {
		src = netip.MustParseAddr(poolProbeAddrs[r.IntN(len(poolProbeAddrs))])
		dst = netip.MustParseAddr(poolProbeAddrs[r.IntN(len(poolProbeAddrs))])
		if src.Is4() == dst.Is4() {
			break
		}
	}
	p := ir.Packet{Src: src, Dst: dst}
	switch r.IntN(6) {
	case 0:
		p.Proto = ir.ProtoICMP
		if src.Is6() {
			p.Proto = ir.ProtoICMPv6
		}
		p.ICMPType, p.ICMPCode = uint8([]int{0, 8, 3}[r.IntN(3)]), uint8(r.IntN(3))
	case 1:
		p.Proto = []ir.Proto{47, ir.ProtoSCTP, 0}[r.IntN(3)]
		if p.Proto == ir.ProtoSCTP {
			p.DPort = poolPorts[r.IntN(len(poolPorts))]
		}
	default:
		p.Proto = []ir.Proto{ir.ProtoTCP, ir.ProtoUDP}[r.IntN(2)]
		p.DPort = poolPorts[r.IntN(len(poolPorts))]
		if r.IntN(3) == 0 {
			p.DPort = uint16(r.IntN(65536))
		}
		p.SPort = 40000
	}
	return p
}

// TestLoweringAgreesWithMeaning builds random small programs and checks,
// packet by packet, that looking up the emitted maps the way the datapath
// does gives exactly the verdict and rule of a direct evaluation.
func TestLoweringAgreesWithMeaning(t *testing.T) {
	checkRandomPrograms(t, false, 7)
}

// TestTieredLoweringAgreesWithMeaning is TestLoweringAgreesWithMeaning
// with admin and baseline policies among the random ones.
func TestTieredLoweringAgreesWithMeaning(t *testing.T) {
	checkRandomPrograms(t, true, 15)
}

// checkRandomPrograms compares the simulated datapath with refEval on
// random programs (randomProgram(tiers)) of the random stream stream.
func checkRandomPrograms(t *testing.T, tiers bool, stream uint64) {
	programs, packets := 2000, 200
	if testing.Short() {
		programs = 300
	}
	tiered := 0
	for seed := range uint64(programs) {
		r := rand.New(rand.NewPCG(seed, stream))
		prog := randomProgram(r, tiers)
		if slices.ContainsFunc(prog.Policies, func(p *ir.Policy) bool { return p.Tier != dsl.TierNone }) {
			tiered++
		}
		b, err := Build(prog, nil, Options{})
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		dp := newDatapath(t, b)
		ref := refEval{prog}
		for range packets {
			p := randomPacket(r)
			eg, in, egOK, inOK := dp.observe(p)
			weg, win, wegOK, winOK := ref.observe(p)
			if egOK != wegOK || inOK != winOK || eg != weg || in != win {
				t.Fatalf("seed %d: packet %v %v:%d -> %v:%d (icmp %d/%d):\n datapath egress %v(%v) ingress %v(%v)\n meaning  egress %v(%v) ingress %v(%v)\n%s",
					seed, p.Proto, p.Src, p.SPort, p.Dst, p.DPort, p.ICMPType, p.ICMPCode, eg, egOK, in, inOK, weg, wegOK, win, winOK, describe(prog, b.Text()))
			}
		}
	}
	if tiers && tiered < programs/2 {
		t.Errorf("only %d of %d programs have a tiered policy", tiered, programs)
	}
}

func describe(prog *ir.Program, dump string) string {
	s := "program:\n"
	for _, e := range prog.Endpoints {
		s += fmt.Sprintf("  endpoint %s %v %v\n", e.Name, e.Labels, e.Addrs)
	}
	for _, p := range prog.Policies {
		s += fmt.Sprintf("  policy %s %+v subjects %v isolates %v tier %v priority %d\n", p.Name, p.Subject, p.Subjects, p.Isolates, p.Tier, p.Priority)
	}
	for _, r := range prog.Rules {
		s += fmt.Sprintf("  rule %d %s %v %v rank %d peers %+v ports %+v\n", r.ID, r.Policy, r.Dir, r.Action, r.Rank, r.Peers, r.Ports)
	}
	return s + dump
}
