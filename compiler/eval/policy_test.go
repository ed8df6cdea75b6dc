package eval

import (
	"testing"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

func apiSel() ir.Selector { return sel(eq("app", "api")) }

// TestPolicy covers the stateless meaning: defaults, union, precedence,
// peers, L4 terms and both observation points.
func TestPolicy(t *testing.T) {
	web8080 := syn(webIP, 40000, apiIP, 8080)
	cases := []struct {
		name   string
		setup  func(b *builder)
		pkt    Packet
		want   want
		points []want // when not nil, the decisions at each point
	}{
		{"no policy: open both ways", nil, web8080, allowDefault, []want{allowDefault, allowDefault}},
		{"neither address local", nil, syn(worldIP, 1, "1.1.1.1", 80), allowDefault, []want{}},
		{"selected, no rule matches: default deny", func(b *builder) {
			b.policy("p", apiSel(), inAllow(nil, tcp(9090, 9090)))
		}, web8080, denyDefault, []want{allowDefault, denyDefault}},
		{"isolate without rules", func(b *builder) {
			b.policy("p", apiSel()).Isolates[dsl.Ingress] = true
		}, web8080, denyDefault, nil},
		{"isolated egress does not close ingress", func(b *builder) {
			b.policy("p", apiSel()).Isolates[dsl.Egress] = true
		}, web8080, allowDefault, nil},
		{"policy selecting someone else", func(b *builder) {
			b.policy("p", sel(eq("app", "db")), inAllow(nil, tcp(1, 1)))
		}, web8080, allowDefault, nil},
		{"allow rule", func(b *builder) {
			b.policy("p", apiSel(), inAllow(peers(selPeer(eq("app", "web"))), tcp(8080, 8080)))
		}, web8080, allowBy(0), []want{allowDefault, allowBy(0)}},
		{"union over policies: second policy opens it", func(b *builder) {
			b.policy("a", apiSel(), inAllow(nil, tcp(9090, 9090)))
			b.policy("b", apiSel(), inAllow(nil, tcp(8080, 8080)))
		}, web8080, allowBy(1), nil},
		{"union: another policy isolating does not undo an allow", func(b *builder) {
			b.policy("a", apiSel(), inAllow(nil, tcp(8080, 8080)))
			b.policy("b", sel(), inAllow(peers(cidr("192.0.2.0/24"))))
		}, web8080, allowBy(0), nil},
		{"lowest allow id", func(b *builder) {
			b.policy("a", apiSel(), inAllow(nil, tcp(8000, 9000)), inAllow(nil, tcp(8080, 8080)))
			b.policy("b", apiSel(), inAllow(nil))
		}, web8080, allowBy(0), nil},
		{"deny beats an earlier allow in the same policy", func(b *builder) {
			b.policy("a", apiSel(), inAllow(nil), inDeny(nil, tcp(8080, 8080)))
		}, web8080, denyBy(1), nil},
		{"deny beats a later allow in the same policy", func(b *builder) {
			b.policy("a", apiSel(), inDeny(nil, tcp(8080, 8080)), inAllow(nil))
		}, web8080, denyBy(0), nil},
		{"deny in one policy beats allow in another", func(b *builder) {
			b.policy("a", apiSel(), inAllow(nil, tcp(8080, 8080)))
			b.policy("b", sel(), inDeny(peers(selPeer(eq("app", "web")))))
		}, web8080, denyBy(1), nil},
		{"lowest deny id", func(b *builder) {
			b.policy("a", apiSel(), inAllow(nil))
			b.policy("b", apiSel(), inDeny(nil, tcp(8080, 8080)), inDeny(nil))
			b.policy("c", apiSel(), inDeny(nil, tcp(0, 65535)))
		}, web8080, denyBy(1), nil},
		{"deny that does not match leaves the allow", func(b *builder) {
			b.policy("a", apiSel(), inAllow(nil), inDeny(nil, tcp(22, 22)))
		}, web8080, allowBy(0), nil},
		{"egress point denies first", func(b *builder) {
			b.policy("web-out", sel(eq("app", "web")), outAllow(nil, udp(53, 53)))
			b.policy("api-in", apiSel(), inDeny(nil))
		}, web8080, denyDefault, []want{denyDefault, denyBy(1)}},
		{"ingress point denies", func(b *builder) {
			b.policy("web-out", sel(eq("app", "web")), outAllow(peers(selPeer(eq("app", "api")))))
			b.policy("api-in", apiSel(), inAllow(nil, tcp(9090, 9090)))
		}, web8080, denyDefault, []want{allowBy(0), denyDefault}},
		{"both points allow: first non-default rule", func(b *builder) {
			b.policy("web-out", sel(eq("app", "web")), outAllow(peers(selPeer(eq("app", "api")))))
		}, web8080, allowBy(0), []want{allowBy(0), allowDefault}},
		{"egress to world", func(b *builder) {
			b.policy("web-out", sel(eq("app", "web")), outAllow(peers(world), udp(53, 53)))
		}, pkt(ir.ProtoUDP, webIP, 5353, worldIP, 53), allowBy(0), []want{allowBy(0)}},
		{"world does not match a local endpoint", func(b *builder) {
			b.policy("web-out", sel(eq("app", "web")), outAllow(peers(world)))
		}, web8080, denyDefault, nil},
		{"world matches an address inside a named CIDR", func(b *builder) {
			b.policy("p", apiSel(), inAllow(peers(world)), inAllow(peers(cidr("192.0.2.0/24")), tcp(1, 1)))
		}, syn("192.0.2.66", 1, apiIP, 8080), allowBy(0), nil},
		{"CIDR matches an endpoint address inside it", func(b *builder) {
			b.policy("p", apiSel(), inAllow(peers(cidr("10.0.0.0/8"))))
		}, web8080, allowBy(0), nil},
		{"CIDR except", func(b *builder) {
			b.policy("p", apiSel(), inAllow(peers(cidr("10.0.0.0/8", "10.0.1.0/24"))))
		}, web8080, denyDefault, nil},
		{"CIDR except, outside the exception", func(b *builder) {
			b.policy("p", apiSel(), inAllow(peers(cidr("10.0.0.0/8", "10.0.1.0/24"))))
		}, syn(dbIP, 1, apiIP, 8080), allowBy(0), nil},
		{"same CIDR twice, one except", func(b *builder) {
			b.policy("p", apiSel(), inAllow(peers(cidr("10.0.0.0/8", "10.0.1.0/24"))), inAllow(peers(cidr("10.0.0.0/8")), tcp(8080, 8080)))
		}, web8080, allowBy(1), nil},
		{"CIDR of the other family", func(b *builder) {
			b.policy("p", apiSel(), inAllow(peers(cidr("::/0"))))
		}, web8080, denyDefault, nil},
		{"any peer", func(b *builder) {
			b.policy("p", apiSel(), inAllow(peers(anyPeer), tcp(8080, 8080)))
		}, syn(worldIP, 1, apiIP, 8080), allowBy(0), nil},
		{"several peers: any matches", func(b *builder) {
			b.policy("p", apiSel(), inAllow(peers(selPeer(eq("app", "db")), cidr("8.0.0.0/8"))))
		}, syn(worldIP, 1, apiIP, 8080), allowBy(0), nil},
		{"endpoint with a prefix is matched by selector", func(b *builder) {
			b.policy("p", apiSel(), inAllow(peers(selPeer(eq("app", "lab")))))
		}, syn(labIP, 1, apiIP, 8080), allowBy(0), nil},
		{"a subject with a prefix address", func(b *builder) {
			b.policy("p", sel(eq("app", "lab")), inAllow(nil, tcp(22, 22)))
		}, syn(webIP, 1, "10.0.4.200", 22), allowBy(0), []want{allowDefault, allowBy(0)}},
		{"v6", func(b *builder) {
			b.policy("p", apiSel(), inAllow(peers(selPeer(eq("app", "web"))), tcp(443, 443)))
		}, syn(webIP6, 1, apiIP6, 443), allowBy(0), []want{allowDefault, allowBy(0)}},
		{"v6 CIDR", func(b *builder) {
			b.policy("p", apiSel(), inAllow(peers(cidr("2001:db8::/32", "2001:db8::/64"))), inAllow(peers(cidr("2001:db8::/32"))))
		}, syn(world6, 1, apiIP6, 443), allowBy(1), nil},
		{"v6 world", func(b *builder) {
			b.policy("p", apiSel(), inAllow(peers(world)))
		}, syn(world6, 1, apiIP6, 443), allowBy(0), nil},
		{"v4 CIDR does not match v6", func(b *builder) {
			b.policy("p", apiSel(), inAllow(peers(cidr("0.0.0.0/0"))))
		}, syn(world6, 1, apiIP6, 443), denyDefault, nil},
		// L4
		{"any protocol matches udp", func(b *builder) {
			b.policy("p", apiSel(), inAllow(nil, anyProto))
		}, pkt(ir.ProtoUDP, webIP, 1, apiIP, 53), allowBy(0), nil},
		{"any protocol matches an unknown protocol", func(b *builder) {
			b.policy("p", apiSel(), inAllow(nil, tcp(1, 1)), inAllow(nil, anyProto))
		}, pkt(47, webIP, 0, apiIP, 0), allowBy(1), nil},
		{"tcp rule does not match udp", func(b *builder) {
			b.policy("p", apiSel(), inAllow(nil, tcp(53, 53)))
		}, pkt(ir.ProtoUDP, webIP, 1, apiIP, 53), denyDefault, nil},
		{"sctp port", func(b *builder) {
			b.policy("p", apiSel(), inAllow(nil, tcp(3868, 3868)), inAllow(nil, sctp(3868, 3868)))
		}, pkt(ir.ProtoSCTP, webIP, 1, apiIP, 3868), allowBy(1), nil},
		{"port range low edge", func(b *builder) {
			b.policy("p", apiSel(), inAllow(nil, tcp(8080, 8090)))
		}, syn(webIP, 1, apiIP, 8080), allowBy(0), nil},
		{"port range high edge", func(b *builder) {
			b.policy("p", apiSel(), inAllow(nil, tcp(8080, 8090)))
		}, syn(webIP, 1, apiIP, 8090), allowBy(0), nil},
		{"port range outside", func(b *builder) {
			b.policy("p", apiSel(), inAllow(nil, tcp(8080, 8090)))
		}, syn(webIP, 1, apiIP, 8091), denyDefault, nil},
		{"port is the destination port, not the source", func(b *builder) {
			b.policy("p", apiSel(), inAllow(nil, tcp(8080, 8080)))
		}, syn(webIP, 8080, apiIP, 1), denyDefault, nil},
		{"egress port is the remote's port", func(b *builder) {
			b.policy("p", sel(eq("app", "web")), outAllow(nil, tcp(8080, 8080)))
		}, web8080, allowBy(0), nil},
		{"whole port range", func(b *builder) {
			b.policy("p", apiSel(), inAllow(nil, tcp(0, 65535)))
		}, syn(webIP, 1, apiIP, 0), allowBy(0), nil},
		{"several L4 terms", func(b *builder) {
			b.policy("p", apiSel(), inAllow(nil, udp(53, 53), tcp(8080, 8080)))
		}, web8080, allowBy(0), nil},
		{"icmp type and code", func(b *builder) {
			b.policy("p", apiSel(), inAllow(nil, icmp(8, 0)))
		}, icmpPkt(ir.ProtoICMP, webIP, apiIP, 8, 0, 1), allowBy(0), nil},
		{"icmp wrong type", func(b *builder) {
			b.policy("p", apiSel(), inAllow(nil, icmp(8, 0)))
		}, icmpPkt(ir.ProtoICMP, webIP, apiIP, 13, 0, 1), denyDefault, nil},
		{"icmp wrong code", func(b *builder) {
			b.policy("p", apiSel(), inAllow(nil, icmp(3, 4)))
		}, icmpPkt(ir.ProtoICMP, webIP, apiIP, 3, 3, 0), denyDefault, nil},
		{"icmp any code", func(b *builder) {
			b.policy("p", apiSel(), inAllow(nil, icmp(3, -1)))
		}, icmpPkt(ir.ProtoICMP, webIP, apiIP, 3, 3, 0), allowBy(0), nil},
		{"icmp any type", func(b *builder) {
			b.policy("p", apiSel(), inAllow(nil, icmp(-1, -1)))
		}, icmpPkt(ir.ProtoICMP, webIP, apiIP, 42, 7, 0), allowBy(0), nil},
		{"icmp rule does not match icmpv6", func(b *builder) {
			b.policy("p", apiSel(), inAllow(nil, icmp(-1, -1)))
		}, icmpPkt(ir.ProtoICMPv6, webIP6, apiIP6, 128, 0, 1), denyDefault, nil},
		{"icmpv6 rule", func(b *builder) {
			b.policy("p", apiSel(), inAllow(nil, icmp(-1, -1)), inAllow(nil, icmp6(128, -1)))
		}, icmpPkt(ir.ProtoICMPv6, webIP6, apiIP6, 128, 0, 1), allowBy(1), nil},
		{"icmpv6 rule does not match icmp", func(b *builder) {
			b.policy("p", apiSel(), inAllow(nil, icmp6(-1, -1)))
		}, icmpPkt(ir.ProtoICMP, webIP, apiIP, 8, 0, 1), denyDefault, nil},
		{"deny by ICMP type under a broad allow", func(b *builder) {
			b.policy("p", apiSel(), inAllow(nil), inDeny(nil, icmp(13, -1)))
		}, icmpPkt(ir.ProtoICMP, webIP, apiIP, 13, 0, 1), denyBy(1), nil},
		{"hairpin: same endpoint both points", func(b *builder) {
			b.policy("p", apiSel(), inAllow(nil, tcp(1, 1)), outAllow(nil))
		}, syn(apiIP, 5, apiIP, 1), allowBy(1), []want{allowBy(1), allowBy(0)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := fixture()
			if tc.setup != nil {
				tc.setup(b)
			}
			got := b.eval().Eval(nil, tc.pkt)
			check(t, "packet", got, tc.want)
			if tc.points != nil {
				checkPoints(t, "packet", got, tc.points...)
			}
		})
	}
}

// TestSelectors checks each operator, absent keys and conjunctions, both
// as a policy's subject and as a rule's peer.
func TestSelectors(t *testing.T) {
	// Endpoints: db (app=db env=prod), lab (app=lab debug=true), web (app=web tier=frontend).
	cases := []struct {
		name     string
		sel      ir.Selector
		selected []string
	}{
		{"empty selects all", sel(), []string{"api", "db", "lab", "web"}},
		{"eq", sel(eq("app", "db")), []string{"db"}},
		{"eq absent key", sel(eq("env", "prod")), []string{"db"}},
		{"not eq holds when absent", sel(req("env", dsl.OpNotEq, "prod")), []string{"api", "lab", "web"}},
		{"in", sel(req("app", dsl.OpIn, "db", "web")), []string{"db", "web"}},
		{"in absent key", sel(req("tier", dsl.OpIn, "frontend", "x")), []string{"web"}},
		{"notin holds when absent", sel(req("tier", dsl.OpNotIn, "frontend")), []string{"api", "db", "lab"}},
		{"exists", sel(req("debug", dsl.OpExists)), []string{"lab"}},
		{"not exists", sel(req("debug", dsl.OpNotExists)), []string{"api", "db", "web"}},
		{"and", sel(req("app", dsl.OpIn, "db", "web"), req("env", dsl.OpNotExists)), []string{"web"}},
		{"and, nothing", sel(eq("app", "db"), eq("app", "web")), nil},
	}
	addrs := map[string]string{"api": apiIP, "db": dbIP, "lab": labIP, "web": webIP}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// As subject: a deny-all ingress policy.
			b := fixture()
			b.policy("p", tc.sel, inDeny(nil))
			// As peer: api's ingress allows the selected endpoints.
			b2 := fixture()
			b2.policy("p", apiSel(), inAllow(peers(ir.Peer{Kind: ir.PeerSelector, Selector: tc.sel})))
			e, e2 := b.eval(), b2.eval()
			for name, addr := range addrs {
				selected := false
				for _, s := range tc.selected {
					selected = selected || s == name
				}
				got := e.Eval(nil, syn(worldIP, 1, addr, 80))
				if (got.Verdict == dsl.VerdictDeny) != selected {
					t.Errorf("subject %s: got %s, selected=%v", name, got, selected)
				}
				if name == "api" {
					continue
				}
				got = e2.Eval(nil, syn(addr, 1, apiIP, 80))
				if (got.Verdict == dsl.VerdictAllow) != selected {
					t.Errorf("peer %s: got %s, selected=%v", name, got, selected)
				}
			}
		})
	}
}

// TestSubjectsFromSelectors checks that the evaluator computes who a policy
// selects from its selector, not from Policy.Subjects.
func TestSubjectsFromSelectors(t *testing.T) {
	b := fixture()
	b.policy("p", apiSel(), inDeny(nil)).Subjects = []string{"web"} // wrong on purpose
	e := b.eval()
	check(t, "api", e.Eval(nil, syn(webIP, 1, apiIP, 80)), denyBy(0))
	check(t, "web", e.Eval(nil, syn(apiIP, 1, webIP, 80)), allowDefault)
}

func TestResolve(t *testing.T) {
	b := fixture()
	b.p.Endpoints = append(b.p.Endpoints, endpoint("lab-host", labels("app", "lab2"), "10.0.4.9"))
	b.policy("p", apiSel(),
		inAllow(peers(cidr("10.0.0.0/8", "10.9.0.0/16"), cidr("192.0.2.0/24"), cidr("192.0.0.0/16"))),
		inAllow(peers(cidr("10.9.9.0/24"), cidr("2001:db8::/32"))))
	e := b.eval()
	cases := []struct{ addr, want string }{
		{webIP, "endpoint web"},
		{webIP6, "endpoint web"},
		{"10.0.4.7", "endpoint lab"},
		{"10.0.4.9", "endpoint lab-host"}, // /32 beats lab's /24
		{"10.1.2.3", "cidr 10.0.0.0/8"},
		{"10.9.1.1", "world"}, // inside the exception
		{"10.9.9.9", "cidr 10.9.9.0/24"},
		{"192.0.2.66", "cidr 192.0.2.0/24"},
		{"192.0.3.66", "cidr 192.0.0.0/16"},
		{"2001:db8::1", "cidr 2001:db8::/32"},
		{"fd00::99", "world"},
		{worldIP, "world"},
	}
	for _, tc := range cases {
		if got := e.Resolve(netipAddr(tc.addr)).String(); got != tc.want {
			t.Errorf("Resolve(%s) = %s, want %s", tc.addr, got, tc.want)
		}
	}
	// The point decisions carry the resolution.
	got := e.Eval(nil, syn("192.0.2.66", 1, apiIP, 80))
	if len(got.Points) != 1 || got.Points[0].RemoteIs.String() != "cidr 192.0.2.0/24" || got.Points[0].Subject.Name != "api" {
		t.Errorf("points: %s", got)
	}
}

func TestFromIR(t *testing.T) {
	p := FromIR(ir.Packet{Proto: ir.ProtoTCP, Src: netipAddr(webIP), Dst: netipAddr(apiIP), SPort: 1, DPort: 2,
		TCPFlags: ir.TCPSyn, ICMPType: 3, ICMPCode: 4})
	want := Packet{Proto: ir.ProtoTCP, Src: netipAddr(webIP), Dst: netipAddr(apiIP), SPort: 1, DPort: 2,
		TCPFlags: ir.TCPSyn, ICMPType: 3, ICMPCode: 4}
	if p.Src != want.Src || p.Dst != want.Dst || p.Proto != want.Proto || p.SPort != 1 || p.DPort != 2 ||
		p.TCPFlags != want.TCPFlags || p.ICMPType != 3 || p.ICMPCode != 4 || p.Frag != nil || p.Embedded != nil {
		t.Errorf("FromIR = %+v", p)
	}
	if p.HopLimit != 64 {
		t.Errorf("FromIR hop limit %d, want 64", p.HopLimit)
	}
	if p.Via != "" || p.FromUplink {
		t.Errorf("FromIR: Via %q, FromUplink %v", p.Via, p.FromUplink)
	}
	if p := FromIR(ir.Packet{Proto: ir.ProtoUDP, Src: netipAddr(webIP), Dst: netipAddr(apiIP), DPort: 53, Via: "evil"}); p.Via != "evil" {
		t.Errorf("FromIR: Via %q, want evil", p.Via)
	}
	// neighbour discovery is sent with hop limit 255 (packet.SpecFromIR too)
	for typ, hl := range map[uint8]uint8{132: 64, 133: 255, 137: 255, 138: 64} {
		p := FromIR(ir.Packet{Proto: ir.ProtoICMPv6, Src: netipAddr(webIP6), Dst: netipAddr(apiIP6), ICMPType: typ})
		if p.HopLimit != hl {
			t.Errorf("FromIR icmpv6 type %d: hop limit %d, want %d", typ, p.HopLimit, hl)
		}
	}
}
