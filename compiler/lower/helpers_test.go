package lower

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// Builders for hand-written IR in tests.

func ep(name, labels string, addrs ...string) *ir.Endpoint {
	e := &ir.Endpoint{Name: name}
	for _, kv := range strings.Split(labels, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			e.Labels = append(e.Labels, ir.Label{Key: k, Value: v})
		}
	}
	slices.SortFunc(e.Labels, func(a, b ir.Label) int { return strings.Compare(a.Key, b.Key) })
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			addr := netip.MustParseAddr(a)
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		e.Addrs = append(e.Addrs, p.Masked())
	}
	return e
}

// sel parses "app=web,tier=x" (= only) and "!key" (not exists).
func sel(s string) ir.Selector {
	var out ir.Selector
	for _, kv := range strings.Split(s, ",") {
		switch {
		case kv == "":
		case strings.HasPrefix(kv, "!"):
			out.Reqs = append(out.Reqs, ir.Requirement{Key: kv[1:], Op: dsl.OpNotExists})
		default:
			k, v, _ := strings.Cut(kv, "=")
			out.Reqs = append(out.Reqs, ir.Requirement{Key: k, Op: dsl.OpEq, Values: []string{v}})
		}
	}
	return out
}

func peerSel(s string) ir.Peer { return ir.Peer{Kind: ir.PeerSelector, Selector: sel(s)} }
func peerCIDR(cidr string, except ...string) ir.Peer {
	p := ir.Peer{Kind: ir.PeerCIDR, CIDR: netip.MustParsePrefix(cidr).Masked()}
	for _, e := range except {
		p.Except = append(p.Except, netip.MustParsePrefix(e).Masked())
	}
	slices.SortFunc(p.Except, comparePrefix)
	return p
}

var (
	peerWorld = ir.Peer{Kind: ir.PeerWorld}
	peerAny   = ir.Peer{Kind: ir.PeerAny}
	anyProto  = ir.PortMatch{Proto: ir.ProtoAny}
)

func tcp(lo, hi uint16) ir.PortMatch { return ir.PortMatch{Proto: ir.ProtoTCP, Lo: lo, Hi: hi} }
func udp(lo, hi uint16) ir.PortMatch { return ir.PortMatch{Proto: ir.ProtoUDP, Lo: lo, Hi: hi} }
func icmp(t, c int) ir.PortMatch {
	return ir.PortMatch{Proto: ir.ProtoICMP, ICMPType: t, ICMPCode: c}
}

type ruleSpec struct {
	dir    dsl.Direction
	action dsl.Action
	peers  []ir.Peer
	ports  []ir.PortMatch
}

func in(a dsl.Action, peers []ir.Peer, ports ...ir.PortMatch) ruleSpec {
	return ruleSpec{dsl.Ingress, a, peers, ports}
}
func out(a dsl.Action, peers []ir.Peer, ports ...ir.PortMatch) ruleSpec {
	return ruleSpec{dsl.Egress, a, peers, ports}
}
func peers(ps ...ir.Peer) []ir.Peer { return ps }

type policySpec struct {
	name    string
	subject ir.Selector
	isolate [2]bool
	rules   []ruleSpec
	// tier and priority make a tiered policy (which never isolates).
	tier     dsl.Tier
	priority int
}

// program builds a normal-form program: endpoints and policies sorted by
// name, rules numbered in policy order, subjects and isolation computed.
func program(eps []*ir.Endpoint, pols []policySpec, prefilter ...string) *ir.Program {
	p := &ir.Program{Sources: []ir.Source{{Path: "test.pol", SHA256: strings.Repeat("0", 64)}}}
	p.Endpoints = slices.Clone(eps)
	slices.SortFunc(p.Endpoints, func(a, b *ir.Endpoint) int { return strings.Compare(a.Name, b.Name) })
	pols = slices.Clone(pols)
	slices.SortFunc(pols, func(a, b policySpec) int { return strings.Compare(a.name, b.name) })
	for _, ps := range pols {
		pol := &ir.Policy{Name: ps.name, Subject: ps.subject, Isolates: ps.isolate, Tier: ps.tier, Priority: ps.priority}
		for _, e := range p.Endpoints {
			if ps.subject.Matches(e.Labels) && !e.Remote {
				pol.Subjects = append(pol.Subjects, e.Name)
			}
		}
		for _, rs := range ps.rules {
			id := ir.FirstRuleID + ir.RuleID(len(p.Rules))
			ports := rs.ports
			if len(ports) == 0 {
				ports = []ir.PortMatch{anyProto}
			}
			pr := rs.peers
			if len(pr) == 0 {
				pr = peers(peerAny)
			}
			p.Rules = append(p.Rules, &ir.Rule{
				ID: id, Policy: ps.name, Dir: rs.dir, Action: rs.action, Peers: pr, Ports: ports,
				Pos:  dsl.Pos{File: "test.pol", Line: int(id), Col: 3},
				Text: rs.dir.String() + " " + rs.action.String(),
				Tier: ps.tier, Priority: ps.priority,
			})
			pol.Rules = append(pol.Rules, id)
			if ps.tier == dsl.TierNone {
				pol.Isolates[rs.dir] = true
			}
		}
		p.Policies = append(p.Policies, pol)
	}
	rankTiers(p)
	for _, s := range prefilter {
		p.Prefilter = append(p.Prefilter, netip.MustParsePrefix(s))
	}
	return p
}

// rankTiers numbers the rules of each tier as the checker does
// (ir.Rule.Rank): by policy priority, policy name, rule id, from 1.
func rankTiers(p *ir.Program) {
	pols := slices.Clone(p.Policies)
	slices.SortStableFunc(pols, func(a, b *ir.Policy) int {
		if a.Priority != b.Priority {
			return a.Priority - b.Priority
		}
		return strings.Compare(a.Name, b.Name)
	})
	var next [3]uint32
	for _, pol := range pols {
		if pol.Tier == dsl.TierNone {
			continue
		}
		for _, id := range pol.Rules {
			next[pol.Tier]++
			p.Rules[id-ir.FirstRuleID].Rank = next[pol.Tier]
		}
	}
}

func mustBuild(t testing.TB, p *ir.Program) *bundle.Bundle {
	t.Helper()
	b, err := Build(p, []byte("\x7fELF test object"), Options{Compiler: "test"})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return b
}

// quickstart is testdata/quickstart.pol, by hand.
func quickstart() *ir.Program {
	return program(
		[]*ir.Endpoint{
			ep("web", "app=web,tier=frontend", "10.0.1.10", "fd00::10"),
			ep("api", "app=api,tier=backend", "10.0.2.10", "fd00::20"),
			ep("db", "app=db,tier=backend", "10.0.3.10"),
		},
		[]policySpec{
			{name: "api-in", subject: sel("app=api"), rules: []ruleSpec{
				in(dsl.Allow, peers(peerSel("app=web")), tcp(8080, 8080)),
				in(dsl.Allow, peers(peerCIDR("192.0.2.0/24"), peerCIDR("198.51.100.0/24", "198.51.100.128/25")), tcp(8080, 8090)),
				in(dsl.Deny, peers(peerCIDR("192.0.2.66/32"))),
				out(dsl.Allow, peers(peerSel("app=db")), tcp(5432, 5432)),
				out(dsl.Allow, peers(peerWorld), udp(53, 53)),
			}},
			{name: "db-in", subject: sel("app=db"), rules: []ruleSpec{
				in(dsl.Allow, peers(peerSel("app=api,tier=backend")), tcp(5432, 5432)),
			}},
		},
		"203.0.113.0/24",
	)
}

// idName names an identity in test expectations: its endpoints'
// names (plus its CIDRs if any), "cidr A + B" for CIDR identities, world,
// any.
func idNames(b *bundle.Bundle) map[uint32]string {
	names := map[uint32]string{0: "any"}
	for _, id := range b.Identities {
		var parts []string
		if len(id.Endpoints) > 0 {
			parts = append(parts, strings.Join(id.Endpoints, ","))
		}
		if len(id.Remote) > 0 {
			parts = append(parts, "remote "+strings.Join(id.Remote, ","))
		}
		if len(id.CIDRs) > 0 {
			parts = append(parts, "cidr "+strings.Join(id.CIDRs, " + "))
		}
		if id.Kind == bundle.IdentityWorld {
			parts = []string{"world"}
		}
		names[id.ID] = strings.Join(parts, " in ")
	}
	return names
}

// policyLines renders the policy and policy_ranges entries as
// "subject dir remote proto ports verdict rule" lines, sorted.
func policyLines(b *bundle.Bundle) []string {
	names := idNames(b)
	d := b.Decode()
	var lines []string
	for i, rows := range [][]bundle.PolicyRow{d.Policy, d.PolicyRanges} {
		for _, r := range rows {
			ports := fmt.Sprint(r.Lo)
			switch {
			case r.AnyPort:
				ports = "*"
			case r.Lo != r.Hi:
				ports = fmt.Sprintf("%d-%d", r.Lo, r.Hi)
			}
			if i == 1 {
				ports = "range " + ports
			}
			lines = append(lines, fmt.Sprintf("%s %s %s %s %s %s %d", names[r.Subject], r.Dir, names[r.Remote], ir.Proto(r.Proto), ports, r.Verdict, r.Rule))
		}
	}
	slices.Sort(lines)
	return lines
}

// ipcacheLines renders the ipcache as "prefix identity flags" lines.
func ipcacheLines(b *bundle.Bundle) []string {
	names := idNames(b)
	var lines []string
	for _, r := range b.Decode().IPCache {
		lines = append(lines, strings.TrimSpace(fmt.Sprintf("%s %s %s", r.Prefix, names[r.Identity], strings.Join(r.Flags, ","))))
	}
	slices.Sort(lines)
	return lines
}

func diffLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	slices.Sort(want)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("%s (-want +got):\n%s", what, d)
	}
}
