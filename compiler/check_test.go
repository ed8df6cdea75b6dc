package compiler

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/polc-dev/polc/dsl"
)

// base declares two endpoints most cases use.
func base() []dsl.Decl {
	return []dsl.Decl{
		ep(1, "web", "app=web", "10.0.1.10", "fd00::10"),
		ep(2, "api", "app=api", "10.0.2.10"),
	}
}

func with(decls ...dsl.Decl) *dsl.File { return file(append(base(), decls...)...) }

func ingress(line int, ps []dsl.Peer, ports ...dsl.L4) *dsl.Policy {
	return policy(10, "p", "app=api", rule(line, dsl.Ingress, dsl.Allow, ps, ports...))
}

func tcpTest(line int, steps ...*dsl.Step) *dsl.Test { return test(line, "t", steps...) }

func TestCheck(t *testing.T) {
	allow := expect(dsl.VerdictAllow)
	cases := []struct {
		name string
		f    *dsl.File
		want []string
	}{
		{"clean", with(ingress(12, peers(selPeer(12, 20, "app=web")), tcpPort(12, 30, 80))), nil},
		{"bad CIDR", with(ingress(12, peers(cidrPeer(12, 20, "10.0.0.300/8")))),
			[]string{`t.pol:12:20: invalid CIDR "10.0.0.300/8": IPv4 field has value >255`}},
		{"bad address", with(ingress(12, peers(cidrPeer(12, 20, "10.0.0")))),
			[]string{`t.pol:12:20: invalid address "10.0.0": IPv4 address too short`}},
		{"host bits in a rule CIDR: warning", with(ingress(12, peers(cidrPeer(12, 20, "10.0.0.1/8")))),
			[]string{`t.pol:12:20: warning: 10.0.0.1/8 has bits set beyond the /8 prefix; it means 10.0.0.0/8`}},
		{"host bits on an endpoint: error", file(ep(1, "web", "app=web", "10.0.1.10/24")),
			[]string{`t.pol:1:40: endpoint address 10.0.1.10/24 has bits set beyond the /24 prefix; write the host address 10.0.1.10 or the prefix 10.0.1.0/24`}},
		{"IPv4-mapped address", file(ep(1, "web", "app=web", "::ffff:10.0.0.1")),
			[]string{`t.pol:1:40: "::ffff:10.0.0.1" is an IPv4-mapped IPv6 address; write 10.0.0.1`}},
		{"same address on two endpoints", file(ep(1, "a", "app=a", "10.0.0.1"), ep(2, "b", "app=b", "10.0.0.1")),
			[]string{`t.pol:2:40: address 10.0.0.1 is already endpoint "a"'s (at t.pol:1:40); an address belongs to one endpoint`}},
		{"overlapping endpoint prefixes", file(ep(1, "a", "app=a", "10.0.0.5"), ep(2, "b", "app=b", "fd00::1", "10.0.0.0/29")),
			[]string{`t.pol:2:50: 10.0.0.0/29 overlaps 10.0.0.5 of endpoint "a" (at t.pol:1:40); an address belongs to one endpoint`}},
		{"address twice on one endpoint", file(ep(1, "a", "app=a", "10.0.0.5", "10.0.0.5")),
			[]string{`t.pol:1:50: warning: address 10.0.0.5 is listed twice`}},
		{"duplicate label key", file(ep(1, "a", "app=a,app=b", "10.0.0.5")),
			[]string{`t.pol:1:21: duplicate label key "app" (first set at t.pol:1:20)`}},
		{"empty label key", file(ep(1, "a", "=b", "10.0.0.5")),
			[]string{`t.pol:1:20: empty label key`}},
		{"port 0", with(ingress(12, nil, tcpPort(12, 30, 0))),
			[]string{`t.pol:12:40: port 0 is out of range 1..65535`}},
		{"port too large", with(ingress(12, nil, l4(12, 30, "udp", 1000, 70000, -1, -1))),
			[]string{`t.pol:12:45: port 70000 is out of range 1..65535`}},
		{"reversed range", with(ingress(12, nil, l4(12, 30, "udp", 2000, 1000, -1, -1))),
			[]string{`t.pol:12:45: port range 2000-1000 is empty: the first port is larger than the last`}},
		{"range without first port", with(ingress(12, nil, l4(12, 30, "udp", -1, 90, -1, -1))),
			[]string{`t.pol:12:45: a port range needs its first port: write udp/LO-90`}},
		{"port on icmp", with(ingress(12, nil, l4(12, 30, "icmp", 80, -1, -1, -1))),
			[]string{`t.pol:12:40: icmp has no ports; use "icmp type N" to match a message type`}},
		{"port on any", with(ingress(12, nil, l4(12, 30, "any", 80, -1, -1, -1))),
			[]string{`t.pol:12:40: "any" protocol has no ports; name the protocol, e.g. tcp/80`}},
		{"ICMP type out of range", with(ingress(12, nil, l4(12, 30, "icmp", -1, -1, 256, 0))),
			[]string{`t.pol:12:50: ICMP type 256 is out of range 0..255`}},
		{"ICMP code without type", with(ingress(12, nil, l4(12, 30, "icmpv6", -1, -1, -1, 3))),
			[]string{`t.pol:12:55: an ICMP code needs a type: write "icmpv6 type N code 3"`}},
		{"type on tcp", with(ingress(12, nil, l4(12, 30, "tcp", 80, -1, 8, -1))),
			[]string{`t.pol:12:50: ICMP type and code apply to icmp and icmpv6, not tcp`}},
		{"except outside", with(ingress(12, peers(cidrPeer(12, 20, "10.0.0.0/16", "10.1.0.0/24")))),
			[]string{`t.pol:12:40: except 10.1.0.0/24 is not inside 10.0.0.0/16`}},
		{"except wider", with(ingress(12, peers(cidrPeer(12, 20, "10.0.0.0/16", "10.0.0.0/8")))),
			[]string{`t.pol:12:40: except 10.0.0.0/8 is not inside 10.0.0.0/16`}},
		{"except of the other family", with(ingress(12, peers(cidrPeer(12, 20, "10.0.0.0/16", "fd00::/64")))),
			[]string{`t.pol:12:40: except fd00::/64 is IPv6 but 10.0.0.0/16 is IPv4`}},
		{"except everything", with(ingress(12, peers(cidrPeer(12, 20, "10.0.0.0/16", "10.0.0.0/16")))),
			[]string{`t.pol:12:40: warning: except 10.0.0.0/16 removes all of 10.0.0.0/16: the peer matches no address`}},
		{"from in egress", with(policy(10, "p", "app=api", &dsl.Rule{Pos: at(12, 3), Dir: dsl.Egress, PeerPos: at(12, 15), PeerWord: "from", Peers: peers(worldPeer(12, 20))})),
			[]string{`t.pol:12:15: an egress rule names its peers with "to", not "from"`}},
		{"to in ingress", with(policy(10, "p", "app=api", &dsl.Rule{Pos: at(12, 3), Dir: dsl.Ingress, PeerPos: at(12, 15), PeerWord: "to", Peers: peers(worldPeer(12, 20))})),
			[]string{`t.pol:12:15: an ingress rule names its peers with "from", not "to"`}},
		{"policy selects nothing", with(policy(10, "p", "app=nope")),
			[]string{`t.pol:11:10: warning: policy "p" selects no endpoint`}},
		{"peer selects nothing", with(ingress(12, peers(selPeer(12, 20, "app=web,tier=x")))),
			[]string{`t.pol:12:20: warning: peer {app=web, tier=x} selects no endpoint`}},
		{"empty key in selector", with(ingress(12, peers(selPeer(12, 20, "=x")))),
			[]string{`t.pol:12:20: empty label key in selector`, `t.pol:12:20: warning: peer =x selects no endpoint`}},
		{"prefilter covers an endpoint", with(&dsl.Prefilter{Pos: at(20, 1), Entries: []dsl.CIDR{cidr(20, 20, "10.0.0.0/8")}}),
			[]string{`t.pol:20:20: warning: prefilter 10.0.0.0/8 covers address 10.0.1.10 of local endpoint "web" and addresses of 1 more endpoints; packets from outside with those sources are dropped`}},
		{"prefilter covers one endpoint", with(&dsl.Prefilter{Pos: at(20, 1), Entries: []dsl.CIDR{cidr(20, 20, "fd00::/8")}}),
			[]string{`t.pol:20:20: warning: prefilter fd00::/8 covers address fd00::10 of local endpoint "web"; packets from outside with that source are dropped`}},
		{"prefilter except outside", with(&dsl.Prefilter{Pos: at(20, 1), Entries: []dsl.CIDR{cidr(20, 20, "192.0.2.0/24", "192.0.3.0/25")}}),
			[]string{`t.pol:20:40: except 192.0.3.0/25 is not inside 192.0.2.0/24`}},
		{"prefilter except spares an endpoint", with(&dsl.Prefilter{Pos: at(20, 1), Entries: []dsl.CIDR{cidr(20, 20, "10.0.0.0/8", "10.0.1.0/24")}}),
			[]string{`t.pol:20:20: warning: prefilter 10.0.0.0/8 covers address 10.0.2.10 of local endpoint "api"; packets from outside with that source are dropped`}},
		{"test: unknown endpoint", with(tcpTest(20, step(20, 10, packet(20, "tcp", host(20, 30, "wbe", -1), host(20, 40, "api", 80)), allow))),
			[]string{`t.pol:20:30: unknown endpoint "wbe"; did you mean "web"?`}},
		{"test: unknown via endpoint", with(tcpTest(20, &dsl.Step{Pos: at(20, 10), Packet: packet(20, "tcp", host(20, 30, "web", -1), host(20, 40, "api", 80)), Via: &dsl.Ident{Pos: at(20, 60), Name: "apj"}, Expect: allow})),
			[]string{`t.pol:20:60: unknown endpoint "apj"; did you mean "api"?`}},
		{"test: via on a reply", with(tcpTest(20, step(20, 10, packet(20, "tcp", host(20, 30, "web", -1), host(20, 40, "api", 80)), nil), &dsl.Step{Pos: at(20, 70), Reply: true, Via: &dsl.Ident{Pos: at(20, 76), Name: "web"}, Expect: allow})),
			[]string{`t.pol:20:76: "via" does not apply to a reply: a reply is sent by the previous packet's destination; write the packet out to send it via another endpoint`}},
		{"test: missing destination port", with(tcpTest(20, step(20, 10, packet(20, "udp", host(20, 30, "web", -1), host(20, 40, "api", -1)), allow))),
			[]string{`t.pol:20:40: a udp packet needs a destination port, e.g. api:80`}},
		{"test: mixed families", with(tcpTest(20, step(20, 10, packet(20, "tcp", host(20, 30, "10.0.0.1", -1), host(20, 40, "fd00::1", 80)), allow))),
			[]string{`t.pol:20:40: mixed address families: 10.0.0.1 is IPv4, fd00::1 is IPv6`}},
		{"test: endpoint lacks the family", with(tcpTest(20, step(20, 10, packet(20, "tcp", host(20, 30, "fd00::1", -1), host(20, 40, "api", 80)), allow))),
			[]string{`t.pol:20:40: endpoint "api" has no IPv6 address`}},
		{"test: icmp with IPv6", with(tcpTest(20, step(20, 10, packet(20, "icmp", host(20, 30, "fd00::1", -1), host(20, 40, "web", -1)), allow))),
			[]string{`t.pol:20:20: icmp is IPv4 only; use icmpv6 with IPv6 addresses`}},
		{"test: flags on udp", with(tcpTest(20, &dsl.Step{Pos: at(20, 10), Packet: packet(20, "udp", host(20, 30, "web", -1), host(20, 40, "api", 53)), Flags: []dsl.Text{txt(20, 60, "syn")}, Expect: allow})),
			[]string{`t.pol:20:60: TCP flags on a udp packet`}},
		{"test: reply first", with(tcpTest(20, replyStep(20, 10, allow))),
			[]string{`t.pol:20:10: "reply" cannot be the first step: there is no packet to reply to`}},
		{"test: last step without expect", with(tcpTest(20, step(20, 10, packet(20, "tcp", host(20, 30, "web", -1), host(20, 40, "api", 80)), nil))),
			[]string{`t.pol:20:10: the last step of a test needs "expect allow" or "expect deny"`}},
		{"test: port on icmp", with(tcpTest(20, step(20, 10, packet(20, "icmp", host(20, 30, "web", -1), host(20, 40, "api", 7)), allow))),
			[]string{`t.pol:20:50: icmp packets have no ports`}},
		{"families never meet", with(policy(10, "p", "app=api",
			rule(12, dsl.Ingress, dsl.Allow, peers(cidrPeer(12, 20, "10.0.0.0/8")), l4(12, 30, "icmpv6", -1, -1, -1, -1)),
			rule(13, dsl.Ingress, dsl.Allow, peers(selPeer(13, 20, "app=api")), l4(13, 30, "icmpv6", -1, -1, -1, -1)),
			rule(14, dsl.Ingress, dsl.Allow, peers(cidrPeer(14, 20, "fd00::/8")), l4(14, 30, "icmp", -1, -1, -1, -1), l4(14, 40, "icmpv6", -1, -1, -1, -1)),
			rule(15, dsl.Ingress, dsl.Allow, peers(selPeer(15, 20, "app=web")), l4(15, 30, "icmp", -1, -1, -1, -1)),
		)),
			[]string{
				`t.pol:12:3: warning: this rule can never match: icmpv6 is IPv6 and every peer is IPv4`,
				`t.pol:13:3: warning: this rule can never match: icmpv6 is IPv6 and every peer is IPv4`,
			}},
		{"shadowed allow", with(policy(10, "p", "app=api",
			rule(12, dsl.Ingress, dsl.Allow, peers(selPeer(12, 20, "app=web")), tcpPort(12, 30, 80)),
			rule(13, dsl.Ingress, dsl.Deny, peers(cidrPeer(13, 20, "10.0.0.0/8"), cidrPeer(13, 30, "fd00::/8"))),
		)),
			[]string{`t.pol:12:3: warning: this allow rule can never match: deny rule 17 at t.pol:13:3 covers it, and deny wins`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, ds := Compile([]*dsl.File{c.f}, nil)
			got := diagStrings(ds)
			want := c.want
			if want == nil {
				want = []string{}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("diagnostics (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCheckReportsEverything puts many problems in one file: all of them
// are reported, sorted, in one run.
func TestCheckReportsEverything(t *testing.T) {
	f := with(
		ep(3, "web", "app=x", "10.0.1.10"),
		policy(10, "p", "app=api",
			rule(12, dsl.Ingress, dsl.Allow, peers(setPeer(12, 20, "nope")), tcpPort(12, 30, 0)),
			rule(13, dsl.Ingress, dsl.Allow, peers(cidrPeer(13, 20, "10.0.0.0/33")), l4(13, 30, "icmp", -1, -1, 300, -1)),
		),
		tcpTest(20, replyStep(20, 10, nil)),
	)
	_, ds := Compile([]*dsl.File{f}, nil)
	want := []string{
		`t.pol:3:10: endpoint "web" is already declared at t.pol:1:10`,
		`t.pol:12:20: unknown cidrset "nope"`,
		`t.pol:12:40: port 0 is out of range 1..65535`,
		`t.pol:13:20: invalid CIDR "10.0.0.0/33": prefix length out of range`,
		`t.pol:13:50: ICMP type 300 is out of range 0..255`,
		`t.pol:20:10: "reply" cannot be the first step: there is no packet to reply to`,
		`t.pol:20:10: the last step of a test needs "expect allow" or "expect deny"`,
	}
	if diff := cmp.Diff(want, diagStrings(ds)); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
}

// TestCheckTierWithoutPositions: an AST built by another front end (the
// Kubernetes reader) may carry a tier and a priority without positions;
// it is checked by value, and a priority out of range is still reported.
func TestCheckTierWithoutPositions(t *testing.T) {
	mk := func(prio int) *dsl.File {
		return &dsl.File{Path: "k8s", Decls: []dsl.Decl{
			&dsl.Endpoint{Name: dsl.Ident{Name: "a"}, Addrs: []dsl.Text{{Text: "10.0.0.1"}}},
			&dsl.Policy{Name: dsl.Ident{Name: "cnp"}, Tier: dsl.TierAdmin, Priority: prio,
				Rules: []*dsl.Rule{{Dir: dsl.Ingress, Action: dsl.Pass}}},
		}}
	}
	prog, ds := Compile([]*dsl.File{mk(7)}, nil)
	if ds.HasErrors() || prog == nil {
		t.Fatalf("priority 7 without positions: %v", ds)
	}
	if r := prog.Rules[0]; r.Tier != dsl.TierAdmin || r.Priority != 7 || r.Rank != 1 || prog.Policies[0].Isolates != [2]bool{} {
		t.Errorf("got rule %+v, policy %+v", r, prog.Policies[0])
	}
	if _, ds := Compile([]*dsl.File{mk(1001)}, nil); !ds.HasErrors() || !strings.Contains(ds.Error(), "priority 1001 is outside 0..1000") {
		t.Errorf("priority 1001: got %v", ds)
	}
}
