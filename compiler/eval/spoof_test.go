package eval

import (
	"net/netip"
	"testing"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// Addresses of the spoofing fixture's attacker.
const (
	evilIP  = "10.0.9.9"
	evilIP6 = "fd00::99"
)

var (
	spoofed   = want{dsl.VerdictDeny, ir.RuleSpoofedSource}
	nonIP     = want{dsl.VerdictAllow, ir.RuleNonIP}
	etherType = want{dsl.VerdictDeny, ir.RuleEtherType}
)

// spoofFixture is the standard fixture plus evil (app=evil, 10.0.9.9,
// fd00::99). api lets web open tcp/8080, udp/53 and pings (rule 0) and the
// world open tcp/443 (rule 1); web's ingress is isolated (only tcp/22
// from anywhere, rule 2), so a reply to web passes only as established.
// Nobody's egress is isolated: what stops evil is the binding of its
// interface, not policy.
func spoofFixture() *builder {
	b := newBuilder(
		endpoint("api", labels("app", "api"), apiIP, apiIP6),
		endpoint("evil", labels("app", "evil"), evilIP, evilIP6),
		endpoint("web", labels("app", "web", "tier", "frontend"), webIP, webIP6),
	)
	b.policy("api", apiSel(),
		inAllow(peers(selPeer(eq("app", "web"))), tcp(8080, 8080), udp(53, 53), icmp(8, -1), icmp6(128, -1)),
		inAllow(peers(world), tcp(443, 443)))
	b.policy("web", sel(eq("app", "web")), inAllow(nil, tcp(22, 22)))
	b.p.Prefilter = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	return b
}

func via(p Packet, name string) Packet { p.Via = name; return p }

// TestSpoofedSource: a packet that leaves evil's interface with another
// endpoint's source address (or one no endpoint owns) is dropped at evil's
// egress with spoofed-source, whatever policy would say, while the same
// packet sent by the address's owner passes.
func TestSpoofedSource(t *testing.T) {
	e := spoofFixture().eval()
	cases := []struct {
		name   string
		pkt    Packet
		want   want
		points []want
	}{
		{"tcp syn from web", syn(webIP, 40000, apiIP, 8080), allowBy(0), []want{allowDefault, allowBy(0)}},
		{"tcp syn as web via evil", via(syn(webIP, 40000, apiIP, 8080), "evil"), spoofed, []want{spoofed}},
		{"udp from web", pkt(ir.ProtoUDP, webIP, 5000, apiIP, 53), allowBy(0), []want{allowDefault, allowBy(0)}},
		{"udp as web via evil", via(pkt(ir.ProtoUDP, webIP, 5000, apiIP, 53), "evil"), spoofed, []want{spoofed}},
		{"ping from web", icmpPkt(ir.ProtoICMP, webIP, apiIP, 8, 0, 1), allowBy(0), []want{allowDefault, allowBy(0)}},
		{"ping as web via evil", via(icmpPkt(ir.ProtoICMP, webIP, apiIP, 8, 0, 1), "evil"), spoofed, []want{spoofed}},
		{"v6 tcp syn from web", syn(webIP6, 40000, apiIP6, 8080), allowBy(0), []want{allowDefault, allowBy(0)}},
		{"v6 tcp syn as web via evil", via(syn(webIP6, 40000, apiIP6, 8080), "evil"), spoofed, []want{spoofed}},
		{"v6 udp as web via evil", via(pkt(ir.ProtoUDP, webIP6, 5000, apiIP6, 53), "evil"), spoofed, []want{spoofed}},
		{"v6 ping from web", icmpPkt(ir.ProtoICMPv6, webIP6, apiIP6, 128, 0, 1), allowBy(0), []want{allowDefault, allowBy(0)}},
		{"v6 ping as web via evil", via(icmpPkt(ir.ProtoICMPv6, webIP6, apiIP6, 128, 0, 1), "evil"), spoofed, []want{spoofed}},
		{"via the source's own endpoint", via(syn(webIP, 40000, apiIP, 8080), "web"), allowBy(0), []want{allowDefault, allowBy(0)}},
		{"evil as itself", via(syn(evilIP, 40000, apiIP, 8080), "evil"), denyDefault, []want{allowDefault, denyDefault}},
		{"world source from the uplink", withUplink(syn(worldIP, 1, apiIP, 443)), allowBy(1), []want{allowBy(1)}},
		{"world source via evil", via(syn(worldIP, 1, apiIP, 443), "evil"), spoofed, []want{spoofed}},
		{"world to world via evil", via(syn(worldIP, 1, "1.1.1.1", 80), "evil"), spoofed, []want{spoofed}},
		{"v6 world source via evil", via(syn(world6, 1, apiIP6, 443), "evil"), spoofed, []want{spoofed}},
		// Via says where the packet comes from: FromUplink and the
		// prefilter do not apply to it.
		{"prefixed source via evil, marked uplink", withUplink(via(syn("192.0.2.1", 1, apiIP, 443), "evil")), spoofed, []want{spoofed}},
		{"prefixed source from the uplink", withUplink(syn("192.0.2.1", 1, apiIP, 443)), want{dsl.VerdictDeny, ir.RulePrefilter}, []want{}},
		// Malformed comes first.
		{"malformed via evil", malformed(via(syn(webIP, 1, apiIP, 8080), "evil")), want{dsl.VerdictDeny, ir.RuleMalformed},
			[]want{{dsl.VerdictDeny, ir.RuleMalformed}, {dsl.VerdictDeny, ir.RuleMalformed}}},
		{"no such endpoint", via(syn(webIP, 1, apiIP, 8080), "nobody"), want{dsl.VerdictDeny, ir.RuleUnbound}, []want{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, ct := range []*Conntrack{nil, NewConntrack()} {
				got := e.Eval(ct, tc.pkt)
				check(t, "packet", got, tc.want)
				checkPoints(t, "packet", got, tc.points...)
			}
		})
	}
}

func withUplink(p Packet) Packet { p.FromUplink = true; return p }
func malformed(p Packet) Packet  { p.Malformed = true; return p }

// TestSpoofedNeighbourDiscovery: neighbour discovery from a link-local or
// the unspecified address passes any endpoint's interface (that is how a
// host resolves neighbours and checks for duplicates before it has an
// address); from another endpoint's or a global address it is spoofed.
// Anything other than neighbour discovery from fe80:: is spoofed too.
func TestSpoofedNeighbourDiscovery(t *testing.T) {
	e := spoofFixture().eval()
	cases := []struct {
		name   string
		pkt    Packet
		want   want
		points []want
	}{
		{"solicitation from fe80::", via(ndPkt("fe80::1", apiIP6, 135), "evil"), nonIP, []want{nonIP, nonIP}},
		{"router solicitation from fe80:: to all routers", via(ndPkt("fe80::1", "ff02::2", 133), "evil"), nonIP, []want{nonIP}},
		{"duplicate address detection from ::", via(ndPkt("::", "ff02::1:ff00:99", 135), "evil"), nonIP, []want{nonIP}},
		{"advertisement from its own address", via(ndPkt(evilIP6, "fe80::20", 136), "evil"), nonIP, []want{nonIP}},
		{"advertisement from its own address off the link", via(ndPkt(evilIP6, apiIP6, 136), "evil"), nonIP, []want{allowDefault, nonIP}},
		{"solicitation from :: off the link", via(ndPkt("::", apiIP6, 135), "evil"), spoofed, []want{spoofed}},
		{"advertisement as web", via(ndPkt(webIP6, apiIP6, 136), "evil"), spoofed, []want{spoofed}},
		{"advertisement from a global address", via(ndPkt(world6, apiIP6, 136), "evil"), spoofed, []want{spoofed}},
		{"echo from fe80::", via(icmpPkt(ir.ProtoICMPv6, "fe80::1", apiIP6, 128, 0, 1), "evil"), spoofed, []want{spoofed}},
		{"udp from fe80::", via(pkt(ir.ProtoUDP, "fe80::1", 546, "ff02::1:2", 547), "evil"), spoofed, []want{spoofed}},
		{"solicitation from fe80:: with hop limit 64", via(hopLimit(ndPkt("fe80::1", apiIP6, 135), 64), "evil"), spoofed, []want{spoofed}},
		{"fe80:: owned by nobody, no via", ndPkt("fe80::1", apiIP6, 135), nonIP, []want{nonIP}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ct := NewConntrack()
			got := e.Eval(ct, tc.pkt)
			check(t, "packet", got, tc.want)
			checkPoints(t, "packet", got, tc.points...)
			if ct.Len() != 0 {
				t.Errorf("flows: %v", ct.Flows())
			}
		})
	}
}

func hopLimit(p Packet, hl uint8) Packet { p.HopLimit = hl; return p }

// TestSpoofedState: a spoofed packet goes no further than its own egress:
// it creates no flow, neither refreshes, ends nor forgets the flow of the
// address it forges, and a spoofed first fragment is not remembered.
func TestSpoofedState(t *testing.T) {
	s := syn(webIP, 40000, apiIP, 8080)
	t.Run("no flow: the reply is not established", func(t *testing.T) {
		e := spoofFixture().eval()
		ct := NewConntrack()
		runSeq(t, e, ct, step{via(s, "evil"), spoofed}, step{reply(s), denyDefault})
		if ct.Len() != 0 {
			t.Errorf("flows: %v", ct.Flows())
		}
		// The same from web itself.
		runSeq(t, e, ct, step{s, allowBy(0)}, step{reply(s), established})
	})
	t.Run("a spoofed packet of a live flow is dropped and changes nothing", func(t *testing.T) {
		e := spoofFixture().eval()
		ct := NewConntrack()
		rst := withFlags(s, ir.TCPRst|ir.TCPAck)
		fin := withFlags(s, ir.TCPFin|ir.TCPAck)
		res := e.Eval(ct, s)
		check(t, "syn", res, allowBy(0))
		res = e.Eval(ct, via(rst, "evil"))
		check(t, "spoofed rst", res, spoofed)
		checkPoints(t, "spoofed rst", res, spoofed)
		check(t, "spoofed fin", e.Eval(ct, via(fin, "evil")), spoofed)
		if fs := ct.Flows(); len(fs) != 1 || fs[0].FinOrig || fs[0].FinReply {
			t.Fatalf("flows: %+v", fs)
		}
		check(t, "reply", e.Eval(ct, reply(s)), established)
	})
	t.Run("a spoofed packet does not recheck or forget a stale flow", func(t *testing.T) {
		b := spoofFixture()
		ct := NewConntrack()
		check(t, "syn", b.eval().Eval(ct, s), allowBy(0))
		// Generation 1 closes api's ingress to web: the flow is stale and
		// no longer allowed, but only a packet of the flow may find out.
		b2 := spoofFixture()
		b2.p.Policies, b2.p.Rules = nil, nil
		b2.policy("api", apiSel(), inAllow(peers(world), tcp(443, 443)))
		e2 := New(b2.p).WithGeneration(1)
		check(t, "spoofed", e2.Eval(ct, via(withFlags(s, ir.TCPAck), "evil")), spoofed)
		if fs := ct.Flows(); len(fs) != 1 || fs[0].Generation != 0 {
			t.Fatalf("flows after the spoofed packet: %+v", fs)
		}
		check(t, "web's own packet", e2.Eval(ct, withFlags(s, ir.TCPAck)), denyDefault)
		if ct.Len() != 0 {
			t.Errorf("flows: %v", ct.Flows())
		}
	})
	t.Run("a spoofed first fragment is not remembered", func(t *testing.T) {
		e := spoofFixture().eval()
		ct := NewConntrack()
		first := via(pkt(ir.ProtoUDP, webIP, 5000, apiIP, 53), "evil")
		first.Frag = &Fragment{ID: 7, More: true}
		later := first
		later.Frag = &Fragment{ID: 7, Offset: 1480}
		res := e.Eval(ct, first)
		check(t, "first", res, spoofed)
		checkPoints(t, "first", res, spoofed)
		res = e.Eval(ct, later)
		check(t, "later", res, spoofed)
		checkPoints(t, "later", res, spoofed)
		// the same later fragment from web: its datagram is unknown at
		// api (api's ingress is isolated)
		later.Via = ""
		res = e.Eval(ct, later)
		checkPoints(t, "later from web", res, allowDefault, want{dsl.VerdictDeny, ir.RuleFragment})
		if ct.Len() != 0 {
			t.Errorf("flows: %v", ct.Flows())
		}
	})
	t.Run("a later fragment via evil is spoofed even when unknown", func(t *testing.T) {
		e := spoofFixture().eval()
		later := via(pkt(ir.ProtoUDP, webIP, 5000, apiIP, 53), "evil")
		later.Frag = &Fragment{ID: 8, Offset: 8}
		res := e.Eval(NewConntrack(), later)
		check(t, "later", res, spoofed)
		checkPoints(t, "later", res, spoofed)
	})
	t.Run("a spoofed error is not related", func(t *testing.T) {
		e := spoofFixture().eval()
		ct := NewConntrack()
		check(t, "syn", e.Eval(ct, s), allowBy(0))
		// api's unreachable about web's syn, sent by evil as api.
		unreach := icmpPkt(ir.ProtoICMP, apiIP, webIP, 3, 3, 0)
		unreach.Embedded = &Embedded{Proto: ir.ProtoTCP, Src: s.Src, Dst: s.Dst, SPort: s.SPort, DPort: s.DPort}
		res := e.Eval(ct, via(unreach, "evil"))
		check(t, "spoofed error", res, spoofed)
		checkPoints(t, "spoofed error", res, spoofed)
		check(t, "api's own error", e.Eval(ct, unreach), related)
	})
}

// TestEtherTypes: only ARP passes among non-IP frames, and a VLAN tag
// drops a frame whatever it carries, IP included, before any point.
func TestEtherTypes(t *testing.T) {
	e := spoofFixture().eval()
	tagged := syn(webIP, 40000, apiIP, 8080)
	tagged.VLAN = true
	cases := []struct {
		name string
		pkt  Packet
		want want
	}{
		{"arp", Packet{NonIP: true, EtherType: 0x0806}, nonIP},
		{"arp from the uplink", Packet{NonIP: true, EtherType: 0x0806, FromUplink: true}, nonIP},
		{"arp via an endpoint", Packet{NonIP: true, EtherType: 0x0806, Via: "evil"}, nonIP},
		{"arp via no endpoint", Packet{NonIP: true, EtherType: 0x0806, Via: "nobody"}, want{dsl.VerdictDeny, ir.RuleUnbound}},
		{"no ethertype", Packet{NonIP: true}, etherType},
		{"rarp", Packet{NonIP: true, EtherType: 0x8035}, etherType},
		{"lldp", Packet{NonIP: true, EtherType: 0x88cc}, etherType},
		{"arp in a vlan", Packet{NonIP: true, EtherType: 0x0806, VLAN: true}, etherType},
		{"ip in a vlan", tagged, etherType},
		{"ip in a vlan via its endpoint", via(tagged, "web"), etherType},
		{"ip in a vlan from the uplink", withUplink(tagged), etherType},
		{"prefiltered ip in a vlan from the uplink", withUplink(func() Packet { p := tagged; p.Src = netipAddr("192.0.2.1"); return p }()),
			want{dsl.VerdictDeny, ir.RulePrefilter}},
		{"malformed ip in a vlan", malformed(tagged), etherType},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ct := NewConntrack()
			got := e.Eval(ct, tc.pkt)
			check(t, "frame", got, tc.want)
			checkPoints(t, "frame", got)
			if ct.Len() != 0 {
				t.Errorf("flows: %v", ct.Flows())
			}
		})
	}
	// An untagged IP packet is what it was.
	check(t, "ip", e.Eval(nil, syn(webIP, 40000, apiIP, 8080)), allowBy(0))
}
