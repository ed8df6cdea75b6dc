package compiler

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// irOpts compares netip values by their text.
var irOpts = cmp.Options{
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
}

func mustNormalize(t *testing.T, files ...*dsl.File) *ir.Program {
	t.Helper()
	syms, ds := resolve(files)
	ds = append(ds, check(syms)...)
	if ds.HasErrors() {
		t.Fatalf("errors: %v", ds)
	}
	return normalize(syms)
}

func lbl(k, v string) ir.Label { return ir.Label{Key: k, Value: v} }

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestNormalizeQuickstart(t *testing.T) {
	prog := mustNormalize(t, quickstartAST())

	wantEndpoints := []*ir.Endpoint{
		{Name: "api", Pos: at(4, 1), Labels: ir.Labels{lbl("app", "api"), lbl("tier", "backend")}, Addrs: []netip.Prefix{pfx("10.0.2.10/32"), pfx("fd00::20/128")}},
		{Name: "db", Pos: at(5, 1), Labels: ir.Labels{lbl("app", "db"), lbl("tier", "backend")}, Addrs: []netip.Prefix{pfx("10.0.3.10/32")}},
		{Name: "web", Pos: at(3, 1), Labels: ir.Labels{lbl("app", "web"), lbl("tier", "frontend")}, Addrs: []netip.Prefix{pfx("10.0.1.10/32"), pfx("fd00::10/128")}},
	}
	if diff := cmp.Diff(wantEndpoints, prog.Endpoints, irOpts); diff != "" {
		t.Errorf("endpoints (-want +got):\n%s", diff)
	}

	eq := func(k, v string) ir.Requirement { return ir.Requirement{Key: k, Op: dsl.OpEq, Values: []string{v}} }
	wantPolicies := []*ir.Policy{
		{Name: "api-in", Pos: at(9, 1), Subject: ir.Selector{Reqs: []ir.Requirement{eq("app", "api")}}, Subjects: []string{"api"},
			Isolates: [2]bool{true, true}, Rules: []ir.RuleID{16, 17, 18, 19, 20}},
		{Name: "db-in", Pos: at(18, 1), Subject: ir.Selector{Reqs: []ir.Requirement{eq("app", "db")}}, Subjects: []string{"db"},
			Isolates: [2]bool{true, false}, Rules: []ir.RuleID{21}},
	}
	if diff := cmp.Diff(wantPolicies, prog.Policies, irOpts); diff != "" {
		t.Errorf("policies (-want +got):\n%s", diff)
	}

	tcp := func(lo, hi uint16) []ir.PortMatch { return []ir.PortMatch{{Proto: ir.ProtoTCP, Lo: lo, Hi: hi}} }
	wantRules := []*ir.Rule{
		{ID: 16, Policy: "api-in", Pos: at(11, 3), Text: "ingress allow from app=web on tcp/8080", Dir: dsl.Ingress, Action: dsl.Allow,
			Peers: []ir.Peer{{Kind: ir.PeerSelector, Selector: ir.Selector{Reqs: []ir.Requirement{eq("app", "web")}}}}, Ports: tcp(8080, 8080)},
		{ID: 17, Policy: "api-in", Pos: at(12, 3), Text: "ingress allow from partners on tcp/8080-8090", Dir: dsl.Ingress, Action: dsl.Allow,
			Peers: []ir.Peer{
				{Kind: ir.PeerCIDR, CIDR: pfx("192.0.2.0/24"), Set: "partners"},
				{Kind: ir.PeerCIDR, CIDR: pfx("198.51.100.0/24"), Except: []netip.Prefix{pfx("198.51.100.128/25")}, Set: "partners"},
			}, Ports: tcp(8080, 8090)},
		{ID: 18, Policy: "api-in", Pos: at(13, 3), Text: "ingress deny from 192.0.2.66", Dir: dsl.Ingress, Action: dsl.Deny,
			Peers: []ir.Peer{{Kind: ir.PeerCIDR, CIDR: pfx("192.0.2.66/32")}}, Ports: []ir.PortMatch{{Proto: ir.ProtoAny}}},
		{ID: 19, Policy: "api-in", Pos: at(14, 3), Text: "egress allow to app=db on tcp/5432", Dir: dsl.Egress, Action: dsl.Allow,
			Peers: []ir.Peer{{Kind: ir.PeerSelector, Selector: ir.Selector{Reqs: []ir.Requirement{eq("app", "db")}}}}, Ports: tcp(5432, 5432)},
		{ID: 20, Policy: "api-in", Pos: at(15, 3), Text: "egress allow to world on udp/53", Dir: dsl.Egress, Action: dsl.Allow,
			Peers: []ir.Peer{{Kind: ir.PeerWorld}}, Ports: []ir.PortMatch{{Proto: ir.ProtoUDP, Lo: 53, Hi: 53}}},
		{ID: 21, Policy: "db-in", Pos: at(20, 3), Text: "ingress allow from {app=api, tier=backend} on tcp/5432", Dir: dsl.Ingress, Action: dsl.Allow,
			Peers: []ir.Peer{{Kind: ir.PeerSelector, Selector: ir.Selector{Reqs: []ir.Requirement{eq("app", "api"), eq("tier", "backend")}}}}, Ports: tcp(5432, 5432)},
	}
	if diff := cmp.Diff(wantRules, prog.Rules, irOpts); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]netip.Prefix{pfx("203.0.113.0/24")}, prog.Prefilter, irOpts); diff != "" {
		t.Errorf("prefilter (-want +got):\n%s", diff)
	}
	if len(prog.Tests) != 6 {
		t.Fatalf("%d tests, want 6", len(prog.Tests))
	}
}

func TestNormalizeDefaults(t *testing.T) {
	f := file(
		ep(1, "a", "app=a", "10.0.0.1"),
		policy(3, "p", "",
			rule(5, dsl.Ingress, dsl.Allow, nil),
			rule(6, dsl.Egress, dsl.Deny, nil,
				l4(6, 30, "tcp", -1, -1, -1, -1),
				l4(6, 40, "icmp", -1, -1, -1, -1),
				l4(6, 50, "icmpv6", -1, -1, 128, -1),
				l4(6, 60, "udp", 53, 53, -1, -1),
				l4(6, 70, "sctp", -1, -1, -1, -1)),
		),
	)
	prog := mustNormalize(t, f)
	r := prog.Rules
	if diff := cmp.Diff([]ir.Peer{{Kind: ir.PeerAny}}, r[0].Peers, irOpts); diff != "" {
		t.Errorf("empty peers (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]ir.PortMatch{{Proto: ir.ProtoAny}}, r[0].Ports); diff != "" {
		t.Errorf("empty ports (-want +got):\n%s", diff)
	}
	want := []ir.PortMatch{
		{Proto: ir.ProtoTCP, Lo: 0, Hi: 65535},
		{Proto: ir.ProtoICMP, ICMPType: -1, ICMPCode: -1},
		{Proto: ir.ProtoICMPv6, ICMPType: 128, ICMPCode: -1},
		{Proto: ir.ProtoUDP, Lo: 53, Hi: 53},
		{Proto: ir.ProtoSCTP, Lo: 0, Hi: 65535},
	}
	if diff := cmp.Diff(want, r[1].Ports); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}
	if r[0].Text != "ingress allow" || r[1].Text != "egress deny on tcp, icmp, icmpv6 type 128, udp/53, sctp" {
		t.Errorf("texts %q, %q", r[0].Text, r[1].Text)
	}
	if got := prog.Policies[0]; got.Subject.String() != "{}" || len(got.Subjects) != 1 || got.Isolates != [2]bool{true, true} {
		t.Errorf("policy %+v", got)
	}
}

func TestNormalizeSelectorsAndMasking(t *testing.T) {
	f := file(
		ep(1, "b", "tier=x,app=b", "fd00::2", "10.0.0.2"),
		ep(2, "a", "app=a", "10.0.0.1"),
		cidrset(3, "s", cidr(3, 20, "192.0.2.9/24"), cidr(3, 40, "10.0.0.0/8", "10.2.0.0/16", "10.1.0.0/16", "10.1.0.0/16"), cidr(3, 60, "192.0.2.0/24")),
		policy(5, "z", "tier in y|x|x,app exists,!debug",
			rule(7, dsl.Ingress, dsl.Allow, peers(setPeer(7, 20, "s"), cidrPeer(7, 30, "172.16.0.1/12"))),
		),
		&dsl.Policy{Pos: at(9, 1), Name: dsl.Ident{Pos: at(9, 8), Name: "isolating"}, Select: sel(10, 10, "app=a"),
			Isolate: []dsl.DirectionAt{{Pos: at(10, 20), Dir: dsl.Egress}}},
		&dsl.Prefilter{Pos: at(12, 1), Entries: []dsl.CIDR{cidr(12, 20, "203.0.113.7/24"), cidr(12, 40, "198.51.100.0/24"), cidr(12, 60, "203.0.113.0/24"), cidr(13, 20, "192.0.2.0/24", "192.0.2.0/25")}},
	)
	prog := mustNormalize(t, f)
	if got := []string{prog.Endpoints[0].Name, prog.Endpoints[1].Name}; got[0] != "a" || got[1] != "b" {
		t.Errorf("endpoints not sorted: %v", got)
	}
	if diff := cmp.Diff([]netip.Prefix{pfx("10.0.0.2/32"), pfx("fd00::2/128")}, prog.Endpoints[1].Addrs, irOpts); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
	if got := prog.Endpoints[1].Labels.String(); got != "app=b tier=x" {
		t.Errorf("labels %q", got)
	}
	z := prog.Policies[1]
	if got := z.Subject.String(); got != "{app exists, !debug, tier in (x, y)}" {
		t.Errorf("selector %q", got)
	}
	if diff := cmp.Diff([]string{"b"}, z.Subjects); diff != "" {
		t.Errorf("subjects (-want +got):\n%s", diff)
	}
	var peers []string
	for _, p := range prog.Rules[0].Peers {
		peers = append(peers, p.String()+" set="+p.Set)
	}
	want := []string{
		"10.0.0.0/8 except (10.1.0.0/16, 10.2.0.0/16) set=s",
		"192.0.2.0/24 set=s",
		"172.16.0.0/12 set=",
	}
	if diff := cmp.Diff(want, peers); diff != "" {
		t.Errorf("peers (-want +got):\n%s", diff)
	}
	if got := prog.Rules[0].Text; got != "ingress allow from s, 172.16.0.0/12" {
		t.Errorf("text %q", got)
	}
	iso := prog.Policies[0]
	if iso.Name != "isolating" || iso.Isolates != [2]bool{false, true} || len(iso.Rules) != 0 {
		t.Errorf("isolating policy %+v", iso)
	}
	if diff := cmp.Diff([]netip.Prefix{pfx("192.0.2.128/25"), pfx("198.51.100.0/24"), pfx("203.0.113.0/24")}, prog.Prefilter, irOpts); diff != "" {
		t.Errorf("prefilter (-want +got):\n%s", diff)
	}
}

func TestRuleIDsFollowLoadOrder(t *testing.T) {
	a := file(policy(1, "zz", "", rule(2, dsl.Ingress, dsl.Allow, nil), rule(3, dsl.Egress, dsl.Allow, nil)))
	b := &dsl.File{Path: "b.pol", Decls: []dsl.Decl{policy(1, "aa", "", rule(2, dsl.Ingress, dsl.Deny, nil))}}
	prog := mustNormalize(t, a, b)
	var got []string
	for _, r := range prog.Rules {
		got = append(got, r.Policy+":"+r.Text)
	}
	want := []string{"zz:ingress allow", "zz:egress allow", "aa:ingress deny"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	if prog.Policies[0].Name != "aa" || prog.Policies[0].Rules[0] != 18 {
		t.Errorf("policies %+v", prog.Policies[0])
	}
	for i, r := range prog.Rules {
		if r.ID != ir.FirstRuleID+ir.RuleID(i) {
			t.Errorf("rule %d has id %d", i, r.ID)
		}
	}
}

func TestSubtractPrefixes(t *testing.T) {
	str := func(ps []netip.Prefix) []string {
		out := []string{}
		for _, p := range ps {
			out = append(out, p.String())
		}
		return out
	}
	cases := []struct {
		p      string
		except []string
		want   []string
	}{
		{"10.0.0.0/8", nil, []string{"10.0.0.0/8"}},
		{"10.0.0.0/8", []string{"10.0.0.0/8"}, []string{}},
		{"10.0.0.0/8", []string{"10.128.0.0/9"}, []string{"10.0.0.0/9"}},
		{"10.0.0.0/8", []string{"10.0.0.0/10"}, []string{"10.64.0.0/10", "10.128.0.0/9"}},
		{"192.0.2.0/30", []string{"192.0.2.1/32", "192.0.2.2/32"}, []string{"192.0.2.0/32", "192.0.2.3/32"}},
		{"2001:db8:dead::/48", []string{"2001:db8:dead:1::/64"}, []string{
			"2001:db8:dead::/64", "2001:db8:dead:2::/63", "2001:db8:dead:4::/62", "2001:db8:dead:8::/61",
			"2001:db8:dead:10::/60", "2001:db8:dead:20::/59", "2001:db8:dead:40::/58", "2001:db8:dead:80::/57",
			"2001:db8:dead:100::/56", "2001:db8:dead:200::/55", "2001:db8:dead:400::/54", "2001:db8:dead:800::/53",
			"2001:db8:dead:1000::/52", "2001:db8:dead:2000::/51", "2001:db8:dead:4000::/50", "2001:db8:dead:8000::/49",
		}},
	}
	for _, c := range cases {
		var ex []netip.Prefix
		for _, e := range c.except {
			ex = append(ex, pfx(e))
		}
		if diff := cmp.Diff(c.want, str(subtractPrefixes(pfx(c.p), ex))); diff != "" {
			t.Errorf("%s except %v (-want +got):\n%s", c.p, c.except, diff)
		}
	}
}
