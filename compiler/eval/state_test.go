package eval

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
	"github.com/polc-dev/polc/runtime/packet"
)

// step is one packet of a sequence with its expected verdict.
type step struct {
	pkt  Packet
	want want
}

func runSeq(t *testing.T, e *Evaluator, ct *Conntrack, steps ...step) {
	t.Helper()
	for i, s := range steps {
		check(t, "step "+string(rune('0'+i)), e.Eval(ct, s.pkt), s.want)
	}
}

// webToAPI: web may open tcp/8080 on api; both directions isolated on both
// sides, so replies pass only through conntrack.
func webToAPI() *builder {
	b := fixture()
	b.policy("web", sel(eq("app", "web")), outAllow(peers(selPeer(eq("app", "api"))), tcp(8080, 8080), icmp(8, -1), udp(53, 53)),
		inAllow(peers(cidr("203.0.113.0/24"))))
	b.policy("api", apiSel(), inAllow(peers(selPeer(eq("app", "web"))), tcp(8080, 8080), icmp(8, -1), udp(53, 53)),
		outAllow(peers(cidr("203.0.113.0/24"))))
	return b
}

func TestConntrack(t *testing.T) {
	s := syn(webIP, 40000, apiIP, 8080)
	ack := withFlags(s, ir.TCPAck)
	synack := withFlags(reply(s), ir.TCPSyn|ir.TCPAck)
	rst := ir.TCPRst | ir.TCPAck
	fin := ir.TCPFin | ir.TCPAck
	ping := icmpPkt(ir.ProtoICMP, webIP, apiIP, 8, 0, 77)
	dns := pkt(ir.ProtoUDP, webIP, 5353, apiIP, 53)

	t.Run("reply without state is denied", func(t *testing.T) {
		e := webToAPI().eval()
		check(t, "synack", e.Eval(NewConntrack(), synack), denyDefault)
		check(t, "stateless", e.Eval(nil, synack), denyDefault)
	})
	t.Run("tcp reply and later packets", func(t *testing.T) {
		e := webToAPI().eval()
		ct := NewConntrack()
		res := e.Eval(ct, s)
		check(t, "syn", res, allowBy(0))
		checkPoints(t, "syn", res, allowBy(0), allowBy(2))
		res = e.Eval(ct, synack)
		check(t, "synack", res, established)
		checkPoints(t, "synack", res, established, established)
		runSeq(t, e, ct, step{ack, established}, step{reply(ack), established})
		if ct.Len() != 1 {
			t.Errorf("flows: %v", ct.Flows())
		}
	})
	t.Run("other ports are not the flow", func(t *testing.T) {
		e := webToAPI().eval()
		ct := NewConntrack()
		runSeq(t, e, ct, step{s, allowBy(0)},
			step{withFlags(reply(syn(webIP, 40001, apiIP, 8080)), ir.TCPAck), denyDefault},
			step{pkt(ir.ProtoUDP, apiIP, 8080, webIP, 40000), denyDefault})
	})
	t.Run("denied packet creates nothing", func(t *testing.T) {
		e := webToAPI().eval()
		ct := NewConntrack()
		bad := syn(webIP, 40000, apiIP, 9999)
		runSeq(t, e, ct, step{bad, denyDefault}, step{reply(bad), denyDefault})
		if ct.Len() != 0 {
			t.Errorf("flows: %v", ct.Flows())
		}
	})
	t.Run("open side: flow from world tracked at one point", func(t *testing.T) {
		e := webToAPI().eval()
		ct := NewConntrack()
		in := syn("203.0.113.5", 999, webIP, 22)
		res := e.Eval(ct, in)
		check(t, "syn", res, allowBy(1))
		res = e.Eval(ct, reply(in))
		check(t, "reply", res, established)
		checkPoints(t, "reply", res, established)
	})
	t.Run("rst ends the flow", func(t *testing.T) {
		e := webToAPI().eval()
		ct := NewConntrack()
		runSeq(t, e, ct, step{s, allowBy(0)}, step{withFlags(reply(s), rst), established}, step{reply(ack), denyDefault})
		ct = NewConntrack()
		runSeq(t, e, ct, step{s, allowBy(0)}, step{withFlags(s, rst), established}, step{reply(ack), denyDefault})
	})
	t.Run("rst creates nothing", func(t *testing.T) {
		e := webToAPI().eval()
		ct := NewConntrack()
		runSeq(t, e, ct, step{withFlags(s, rst), allowBy(0)}, step{reply(ack), denyDefault})
	})
	t.Run("fin: both sides close, the flow stays until it would expire", func(t *testing.T) {
		e := webToAPI().eval()
		ct := NewConntrack()
		runSeq(t, e, ct,
			step{s, allowBy(0)}, step{synack, established},
			step{withFlags(s, fin), established},
			step{reply(ack), established},
			step{withFlags(reply(s), fin), established},
			step{ack, established},
			step{reply(ack), established})
		if fs := ct.Flows(); len(fs) != 1 || !fs[0].FinOrig || !fs[0].FinReply {
			t.Errorf("flows: %+v", fs)
		}
		runSeq(t, e, ct, step{withFlags(s, rst), established}, step{reply(ack), denyDefault})
	})
	t.Run("fin from one side keeps the flow", func(t *testing.T) {
		e := webToAPI().eval()
		ct := NewConntrack()
		runSeq(t, e, ct, step{s, allowBy(0)}, step{withFlags(s, fin), established},
			step{reply(ack), established}, step{reply(ack), established}, step{ack, established})
	})
	t.Run("udp reply", func(t *testing.T) {
		e := webToAPI().eval()
		ct := NewConntrack()
		runSeq(t, e, ct, step{dns, allowBy(0)}, step{reply(dns), established}, step{dns, established})
	})
	t.Run("icmp echo reply", func(t *testing.T) {
		e := webToAPI().eval()
		ct := NewConntrack()
		r := reply(ping)
		if r.ICMPType != 0 {
			t.Fatal(r)
		}
		check(t, "unsolicited reply", e.Eval(ct, r), denyDefault)
		runSeq(t, e, ct, step{ping, allowBy(0)}, step{r, established}, step{ping, established})
		other := r
		other.ICMPID = 78
		check(t, "reply with another id", e.Eval(ct, other), denyDefault)
		back := ping // a request in the reply direction is not a reply
		back.Src, back.Dst = back.Dst, back.Src
		check(t, "request back", e.Eval(ct, back), denyDefault)
	})
	t.Run("icmpv6 echo reply", func(t *testing.T) {
		b := fixture()
		b.policy("api", apiSel(), inAllow(nil, icmp6(128, 0)), outDeny(nil))
		e := b.eval()
		ct := NewConntrack()
		p := icmpPkt(ir.ProtoICMPv6, webIP6, apiIP6, 128, 0, 5)
		runSeq(t, e, ct, step{p, allowBy(0)}, step{reply(p), established})
	})
	t.Run("non-request icmp creates nothing", func(t *testing.T) {
		b := fixture()
		b.policy("api", apiSel(), inAllow(nil, icmp(-1, -1)), outDeny(nil))
		e := b.eval()
		ct := NewConntrack()
		runSeq(t, e, ct, step{icmpPkt(ir.ProtoICMP, webIP, apiIP, 9, 0, 5), allowBy(0)})
		if ct.Len() != 0 {
			t.Errorf("flows: %v", ct.Flows())
		}
	})
	t.Run("a protocol without ports is tracked by addresses", func(t *testing.T) {
		b := fixture()
		b.policy("api", apiSel(), inAllow(nil), outDeny(nil))
		e := b.eval()
		ct := NewConntrack()
		gre := pkt(47, webIP, 0, apiIP, 0)
		runSeq(t, e, ct, step{reply(gre), denyBy(1)}, step{gre, allowBy(0)}, step{reply(gre), established})
		check(t, "another protocol", e.Eval(ct, pkt(50, apiIP, 0, webIP, 0)), denyBy(1))
	})
	t.Run("icmp timestamp creates nothing", func(t *testing.T) {
		b := fixture()
		b.policy("api", apiSel(), inAllow(nil), outDeny(nil))
		e := b.eval()
		ct := NewConntrack()
		ts := icmpPkt(ir.ProtoICMP, webIP, apiIP, 13, 0, 5)
		runSeq(t, e, ct, step{ts, allowBy(0)})
		ts.Src, ts.Dst, ts.ICMPType = ts.Dst, ts.Src, 14
		runSeq(t, e, ct, step{ts, denyBy(1)})
	})
	t.Run("established skips a deny", func(t *testing.T) {
		// A flow allowed before a deny applies keeps going in the same
		// generation: policy is not consulted for tracked flows.
		b := fixture()
		b.policy("api", apiSel(), inAllow(nil, tcp(8080, 8080)), outDeny(peers(selPeer(eq("app", "web")))))
		e := b.eval()
		ct := NewConntrack()
		runSeq(t, e, ct, step{s, allowBy(0)}, step{synack, established})
	})
}

func TestGeneration(t *testing.T) {
	s := syn(webIP, 40000, apiIP, 8080)
	synack := withFlags(reply(s), ir.TCPSyn|ir.TCPAck)
	ack := withFlags(s, ir.TCPAck)

	t.Run("still allowed: re-admitted by the rule, then established", func(t *testing.T) {
		e := webToAPI().eval()
		ct := NewConntrack()
		runSeq(t, e, ct, step{s, allowBy(0)})
		e2 := webToAPI().eval().WithGeneration(1)
		res := e2.Eval(ct, synack)
		// The reply asks, at each point, about the flow's first packet:
		// api's ingress (rule 2), web's egress (rule 0).
		check(t, "reply after apply", res, allowBy(2))
		checkPoints(t, "reply after apply", res, allowBy(2), allowBy(0))
		runSeq(t, e2, ct, step{ack, established}, step{synack, established})
		if fs := ct.Flows(); len(fs) != 1 || fs[0].Generation != 1 {
			t.Errorf("flows: %v", fs)
		}
	})
	t.Run("no longer allowed", func(t *testing.T) {
		e := webToAPI().eval()
		ct := NewConntrack()
		runSeq(t, e, ct, step{s, allowBy(0)}, step{synack, established})
		b := fixture()
		b.policy("api", apiSel(), inAllow(nil, tcp(9090, 9090)))
		e2 := b.eval().WithGeneration(1)
		res := e2.Eval(ct, synack)
		check(t, "reply after apply", res, denyDefault)
		checkPoints(t, "reply after apply", res, denyDefault, allowDefault)
		// The flow is forgotten: the next packet is new, for either policy.
		if ct.Len() != 0 {
			t.Errorf("flows: %v", ct.Flows())
		}
		check(t, "ack after apply", e2.Eval(ct, ack), denyDefault)
		check(t, "old generation", e.Eval(ct, ack), allowBy(0))
	})
	t.Run("newly denied by a deny rule", func(t *testing.T) {
		e := webToAPI().eval()
		ct := NewConntrack()
		runSeq(t, e, ct, step{s, allowBy(0)})
		b := webToAPI()
		b.policy("block", apiSel(), inDeny(peers(selPeer(eq("app", "web")))))
		check(t, "reply after apply", b.eval().WithGeneration(2).Eval(ct, synack), denyBy(4))
	})
	t.Run("related needs the current generation", func(t *testing.T) {
		e := webToAPI().eval()
		ct := NewConntrack()
		runSeq(t, e, ct, step{s, allowBy(0)})
		errPkt := icmpError(ir.ProtoICMP, apiIP, webIP, 3, s)
		check(t, "same generation", e.Eval(ct, errPkt), related)
		check(t, "other generation", e.WithGeneration(1).Eval(ct, errPkt), denyDefault)
	})
}

// icmpError is an ICMP error from src to dst about orig.
func icmpError(proto ir.Proto, src, dst string, typ uint8, orig Packet) Packet {
	p := icmpPkt(proto, src, dst, typ, 0, 0)
	p.Embedded = &Embedded{Proto: orig.Proto, Src: orig.Src, Dst: orig.Dst, SPort: orig.SPort, DPort: orig.DPort,
		ICMPType: orig.ICMPType, ICMPID: orig.ICMPID}
	return p
}

func TestRelated(t *testing.T) {
	s := syn(webIP, 40000, apiIP, 8080)
	router := "203.0.113.1" // web and api accept 203.0.113.0/24 on one side only
	cases := []struct {
		name string
		pkt  Packet
		want want
	}{
		{"unreachable back to the source, from the destination", icmpError(ir.ProtoICMP, apiIP, webIP, 3, s), related},
		{"time exceeded from a router", icmpError(ir.ProtoICMP, "8.8.4.4", webIP, 11, s), related},
		{"parameter problem", icmpError(ir.ProtoICMP, "8.8.4.4", webIP, 12, s), related},
		{"about the reply direction, to the responder", icmpError(ir.ProtoICMP, webIP, apiIP, 3, reply(s)), related},
		{"travelling with the flow, not back to its sender: policy decides", icmpError(ir.ProtoICMP, webIP, apiIP, 3, s), denyDefault},
		{"unrelated flow: policy decides", icmpError(ir.ProtoICMP, apiIP, webIP, 3, syn(webIP, 40001, apiIP, 8080)), denyDefault},
		{"source quench", icmpError(ir.ProtoICMP, apiIP, webIP, 4, s), related},
		{"redirect from a router", icmpError(ir.ProtoICMP, "8.8.4.4", webIP, 5, s), related},
		{"not an error type: policy decides", func() Packet {
			p := icmpError(ir.ProtoICMP, apiIP, webIP, 3, s)
			p.ICMPType = 13 // timestamp request
			return p
		}(), denyDefault},
		{"error without embedded packet: policy decides", icmpPkt(ir.ProtoICMP, apiIP, webIP, 3, 0, 0), denyDefault},
		{"router allowed by policy", icmpError(ir.ProtoICMP, router, webIP, 3, syn(webIP, 1, apiIP, 1)), allowBy(1)},
		{"about the echo", icmpError(ir.ProtoICMP, "8.8.4.4", webIP, 11, icmpPkt(ir.ProtoICMP, webIP, apiIP, 8, 0, 77)), related},
		{"about another echo id", icmpError(ir.ProtoICMP, "8.8.4.4", webIP, 11, icmpPkt(ir.ProtoICMP, webIP, apiIP, 8, 0, 78)), denyDefault},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := webToAPI().eval()
			ct := NewConntrack()
			runSeq(t, e, ct, step{s, allowBy(0)}, step{icmpPkt(ir.ProtoICMP, webIP, apiIP, 8, 0, 77), allowBy(0)})
			check(t, "error", e.Eval(ct, tc.pkt), tc.want)
			if ct.Len() != 2 {
				t.Errorf("an error changed the flows: %v", ct.Flows())
			}
		})
	}
	t.Run("icmpv6 packet too big", func(t *testing.T) {
		b := fixture()
		b.policy("web", sel(eq("app", "web")), outAllow(nil, tcp(443, 443)), inDeny(nil))
		e := b.eval()
		ct := NewConntrack()
		s6 := syn(webIP6, 1000, world6, 443)
		runSeq(t, e, ct, step{s6, allowBy(0)},
			step{icmpError(ir.ProtoICMPv6, "2001:db8::fe", webIP6, 2, s6), related},
			step{icmpError(ir.ProtoICMPv6, "2001:db8::fe", webIP6, 2, syn(webIP6, 1001, world6, 443)), denyBy(1)},
			// An ICMPv6 error with an IPv4 packet inside is not related.
			step{icmpError(ir.ProtoICMPv6, "2001:db8::fe", webIP6, 2, syn(webIP, 1000, worldIP, 443)), denyBy(1)})
	})
	t.Run("icmpv6 error quoting extension headers", func(t *testing.T) {
		// read from frames as the harness does: the quoted packet's
		// extension headers are walked (bpf TestRelatedICMP is the
		// datapath's side)
		b := fixture()
		b.policy("web", sel(eq("app", "web")), outAllow(nil, tcp(443, 443), udp(53, 53)), inDeny(nil))
		e := b.eval()
		web, far, router := netipAddr(webIP6), netipAddr(world6), netipAddr("2001:db8::fe")
		for _, ext := range [][]packet.Ext{{{Type: packet.ExtDestOpts}},
			{{Type: packet.ExtHopByHop}, {Type: packet.ExtRouting}, {Type: packet.ExtDestOpts}}} {
			ct := NewConntrack()
			out := packet.Spec{Proto: ir.ProtoTCP, Src: web, Dst: far, SPort: 1000, DPort: 443, TCPFlags: ir.TCPSyn, IPv6Ext: ext}
			u := packet.Spec{Proto: ir.ProtoUDP, Src: web, Dst: far, SPort: 1000, DPort: 53, IPv6Ext: ext}
			other := out
			other.SPort = 1001
			errAbout := func(s packet.Spec, n int) Packet {
				return fromFrame(t, packet.Build(packet.Spec{Proto: ir.ProtoICMPv6, Src: router, Dst: web, ICMPType: 2,
					ICMPRest: 1280, Embedded: &s, EmbeddedLen: n}))
			}
			sum, err := packet.ParseIP(packet.IP(out))
			if err != nil {
				t.Fatal(err)
			}
			what := fmt.Sprintf("%d headers", len(ext))
			runSeq(t, e, ct, step{fromFrame(t, packet.Build(out)), allowBy(0)}, step{fromFrame(t, packet.Build(u)), allowBy(0)})
			check(t, what+": about tcp", e.Eval(ct, errAbout(out, 0)), related)
			check(t, what+": about tcp, 8 bytes of L4", e.Eval(ct, errAbout(out, sum.L3Len+8)), related)
			check(t, what+": about udp", e.Eval(ct, errAbout(u, sum.L3Len+8)), related)
			check(t, what+": about another flow", e.Eval(ct, errAbout(other, 0)), denyBy(1))
			check(t, what+": cut inside the headers", e.Eval(ct, errAbout(out, 40+4)), denyBy(1))
		}
	})
}

func TestOddPackets(t *testing.T) {
	b := fixture()
	b.policy("api", apiSel(), inAllow(nil, tcp(8080, 8080)))
	b.p.Prefilter = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:bad::/48")}
	e := b.eval()

	check(t, "ARP", e.Eval(nil, Packet{NonIP: true, EtherType: 0x0806}), want{dsl.VerdictAllow, ir.RuleNonIP})
	check(t, "other non-IP", e.Eval(nil, Packet{NonIP: true}), want{dsl.VerdictDeny, ir.RuleEtherType})

	mal := syn(webIP, 1, apiIP, 8080)
	mal.Malformed = true
	res := e.Eval(nil, mal)
	check(t, "malformed", res, want{dsl.VerdictDeny, ir.RuleMalformed})
	checkPoints(t, "malformed", res, want{dsl.VerdictDeny, ir.RuleMalformed}, want{dsl.VerdictDeny, ir.RuleMalformed})
	mal = syn(worldIP, 1, "1.1.1.1", 80)
	mal.Malformed = true
	check(t, "malformed, no point", e.Eval(nil, mal), want{dsl.VerdictDeny, ir.RuleMalformed})
	check(t, "mixed families", e.Eval(nil, syn(webIP, 1, apiIP6, 8080)), want{dsl.VerdictDeny, ir.RuleMalformed})
	check(t, "no addresses", e.Eval(nil, Packet{Proto: ir.ProtoTCP}), want{dsl.VerdictDeny, ir.RuleMalformed})

	bad := syn("198.51.100.7", 1, apiIP, 8080)
	check(t, "prefiltered source, not from uplink", e.Eval(nil, bad), allowBy(0))
	bad.FromUplink = true
	check(t, "prefiltered source from uplink", e.Eval(nil, bad), want{dsl.VerdictDeny, ir.RulePrefilter})
	bad6 := syn("2001:db8:bad::1", 1, apiIP6, 8080)
	bad6.FromUplink = true
	check(t, "prefiltered v6", e.Eval(nil, bad6), want{dsl.VerdictDeny, ir.RulePrefilter})
	good := syn("198.51.101.7", 1, apiIP, 8080)
	good.FromUplink = true
	check(t, "other source from uplink", e.Eval(nil, good), allowBy(0))
	// From an uplink, a local source address is not observed at its egress.
	spoof := syn(webIP, 1, apiIP, 8080)
	spoof.FromUplink = true
	checkPoints(t, "from uplink", e.Eval(nil, spoof), allowBy(0))

	if !EvalPrefilter(b.p, netip.MustParseAddr("198.51.100.255")) || EvalPrefilter(b.p, netip.MustParseAddr("198.51.99.1")) {
		t.Error("EvalPrefilter")
	}
}

func TestFragments(t *testing.T) {
	first := syn(webIP, 40000, apiIP, 8080)
	first.Frag = &Fragment{ID: 7, Offset: 0, More: true}
	later := pkt(ir.ProtoTCP, webIP, 0, apiIP, 0)
	later.Frag = &Fragment{ID: 7, Offset: 1480, More: false}
	otherID := later
	otherID.Frag = &Fragment{ID: 8, Offset: 1480}
	fragDeny := want{dsl.VerdictDeny, ir.RuleFragment}

	t.Run("later fragment follows the allowed first", func(t *testing.T) {
		e := webToAPI().eval()
		ct := NewConntrack()
		runSeq(t, e, ct, step{first, allowBy(0)})
		res := e.Eval(ct, later)
		check(t, "later", res, allowBy(0))
		checkPoints(t, "later", res, allowBy(0), allowBy(2))
		check(t, "other id", e.Eval(ct, otherID), fragDeny)
		checkPoints(t, "other id", e.Eval(ct, otherID), fragDeny, fragDeny)
		check(t, "stateless", e.Eval(nil, later), fragDeny)
		check(t, "other generation", e.WithGeneration(1).Eval(ct, later), fragDeny)
	})
	t.Run("later fragment of a denied first", func(t *testing.T) {
		e := webToAPI().eval()
		ct := NewConntrack()
		f := first
		f.DPort = 9999
		runSeq(t, e, ct, step{f, denyDefault})
		res := e.Eval(ct, later)
		check(t, "later", res, denyDefault)
		checkPoints(t, "later", res, denyDefault, denyDefault)
	})
	t.Run("unknown fragment passes where not isolated", func(t *testing.T) {
		b := fixture()
		b.policy("api", apiSel(), inAllow(nil))
		e := b.eval()
		res := e.Eval(NewConntrack(), later)
		check(t, "later", res, fragDeny)
		checkPoints(t, "later", res, allowDefault, fragDeny)
		check(t, "to an open subject", e.Eval(nil, pkt(ir.ProtoUDP, apiIP, 0, webIP, 0)), allowDefault)
		open := pkt(ir.ProtoUDP, apiIP, 0, webIP, 0)
		open.Frag = &Fragment{ID: 1, Offset: 8}
		check(t, "fragment to an open subject", e.Eval(nil, open), allowDefault)
	})
	t.Run("first fragment of an established flow", func(t *testing.T) {
		e := webToAPI().eval()
		ct := NewConntrack()
		s := syn(webIP, 40000, apiIP, 8080)
		r := withFlags(reply(s), ir.TCPAck)
		r.Frag = &Fragment{ID: 9, More: true}
		l := pkt(ir.ProtoTCP, apiIP, 0, webIP, 0)
		l.Frag = &Fragment{ID: 9, Offset: 8}
		runSeq(t, e, ct, step{s, allowBy(0)}, step{r, established}, step{l, established})
	})
	t.Run("first fragment of another generation", func(t *testing.T) {
		// web egress open, api ingress isolated under both generations
		b := fixture()
		b.policy("api", apiSel(), inAllow(peers(selPeer(eq("app", "web"))), tcp(8080, 8080)))
		e1, e2 := b.eval().WithGeneration(1), b.eval().WithGeneration(2)
		ct := NewConntrack()
		runSeq(t, e1, ct, step{first, allowBy(0)}, step{later, allowBy(0)})
		// the record is generation 1's: unknown to generation 2, whatever
		// it said (its rule id belongs to the old program)
		res := e2.Eval(ct, later)
		check(t, "after apply", res, fragDeny)
		checkPoints(t, "after apply", res, allowDefault, fragDeny)
		check(t, "after apply, again", e2.Eval(ct, later), fragDeny)
		check(t, "the old generation still follows it", e1.Eval(ct, later), allowBy(0))
		// the flow is stale too: its first fragment is rechecked, then followed
		check(t, "first fragment again", e2.Eval(ct, first), allowBy(0))
		checkPoints(t, "later after the new first", e2.Eval(ct, later), allowDefault, allowBy(0))
		d := first
		d.DPort, d.Frag = 9999, &Fragment{ID: 10, More: true}
		l := later
		l.Frag = &Fragment{ID: 10, Offset: 8}
		runSeq(t, e1, ct, step{d, denyDefault})
		check(t, "later of a denied first after apply", e2.Eval(ct, l), fragDeny)
		runSeq(t, e2, ct, step{d, denyDefault}, step{l, denyDefault})
	})
	t.Run("atomic fragment is a whole packet", func(t *testing.T) {
		e := webToAPI().eval()
		p := first
		p.Frag = &Fragment{ID: 3}
		check(t, "atomic", e.Eval(nil, p), allowBy(0))
	})
}

// TestNeighbourDiscovery: ICMPv6 133–137 with hop limit 255 pass like
// non-IP, before any policy and without state, at every ingress point and
// at egress points when they stay on the link (link-local, multicast or
// loopback source or destination); ND that an endpoint sends to a global
// address meets its egress policy, as it could be forwarded off the link.
// Everything else about ICMPv6 (fragmented ND, ND with another hop limit)
// meets policy.
func TestNeighbourDiscovery(t *testing.T) {
	b := fixture()
	// web: egress tcp/443 only; api: ingress tcp/8080 only; no ICMPv6 rule.
	b.policy("web", sel(eq("app", "web")), outAllow(nil, tcp(443, 443)))
	b.policy("api", apiSel(), inAllow(nil, tcp(8080, 8080)))
	b.p.Prefilter = []netip.Prefix{netip.MustParsePrefix("2001:db8:bad::/48")}
	e := b.eval()
	nonIP := want{dsl.VerdictAllow, ir.RuleNonIP}

	ct := NewConntrack()
	for typ := uint8(133); typ <= 137; typ++ {
		for _, dst := range []string{"fe80::2", "ff02::1:ff00:20", "ff05::2", "::1"} {
			p := ndPkt(webIP6, dst, typ)
			res := e.Eval(ct, p)
			check(t, fmt.Sprintf("type %d to %s", typ, dst), res, nonIP)
			checkPoints(t, fmt.Sprintf("type %d to %s", typ, dst), res, nonIP)
		}
		p := ndPkt("fe80::1", apiIP6, typ)
		checkPoints(t, fmt.Sprintf("type %d from fe80:: to api", typ), e.Eval(ct, p), nonIP)
		// to a global address: web's egress polices it, api's ingress not
		p = ndPkt(webIP6, apiIP6, typ)
		res := e.Eval(ct, p)
		check(t, fmt.Sprintf("type %d", typ), res, denyDefault)
		checkPoints(t, fmt.Sprintf("type %d", typ), res, denyDefault, nonIP)
		res = e.Eval(ct, reply(p))
		check(t, fmt.Sprintf("type %d back", typ), res, nonIP)
		checkPoints(t, fmt.Sprintf("type %d back", typ), res, allowDefault, nonIP)
	}
	if ct.Len() != 0 {
		t.Errorf("neighbour discovery created flows: %v", ct.Flows())
	}
	checkPoints(t, "to the world", e.Eval(ct, ndPkt(webIP6, world6, 135)), denyDefault)
	check(t, "no local side", e.Eval(ct, ndPkt("fe80::1", "ff02::1", 134)), allowDefault)

	// not neighbour discovery
	check(t, "type 132", e.Eval(ct, icmpPkt(ir.ProtoICMPv6, webIP6, world6, 132, 0, 0)), denyDefault)
	check(t, "type 138", e.Eval(ct, icmpPkt(ir.ProtoICMPv6, world6, apiIP6, 138, 0, 0)), denyDefault)
	check(t, "echo request", e.Eval(ct, icmpPkt(ir.ProtoICMPv6, webIP6, world6, 128, 0, 1)), denyDefault)
	check(t, "icmpv4 type 135", e.Eval(ct, icmpPkt(ir.ProtoICMP, webIP, worldIP, 135, 0, 0)), denyDefault)
	v4 := icmpPkt(ir.ProtoICMPv6, webIP, worldIP, 135, 0, 0)
	v4.HopLimit = 255
	check(t, "icmpv6 over ipv4", e.Eval(ct, v4), denyDefault)
	// RFC 4861: only hop limit 255 is neighbour discovery; the rest was
	// routed here and meets policy
	for _, hl := range []uint8{0, 1, 64, 254} {
		for typ := uint8(133); typ <= 137; typ++ {
			p := ndPkt(webIP6, world6, typ)
			p.HopLimit = hl
			what := fmt.Sprintf("type %d, hop limit %d", typ, hl)
			checkPoints(t, what+", out of egress-isolated web", e.Eval(ct, p), denyDefault)
			p = ndPkt(world6, apiIP6, typ)
			p.HopLimit = hl
			checkPoints(t, what+", into ingress-isolated api", e.Eval(ct, p), denyDefault)
		}
	}
	off := ndPkt(world6, webIP6, 135)
	off.HopLimit = 64
	checkPoints(t, "hop limit 64 into open web ingress", e.Eval(ct, off), allowDefault)
	frag := ndPkt(world6, apiIP6, 135)
	frag.Frag = &Fragment{ID: 1, More: true}
	check(t, "first fragment", e.Eval(ct, frag), denyDefault)
	frag.Frag = &Fragment{ID: 2, Offset: 8}
	check(t, "later fragment", e.Eval(ct, frag), want{dsl.VerdictDeny, ir.RuleFragment})
	frag.Frag = &Fragment{ID: 3}
	check(t, "atomic fragment", e.Eval(ct, frag), nonIP)

	// what comes before: prefilter and malformed
	pre := ndPkt("2001:db8:bad::1", apiIP6, 136)
	pre.FromUplink = true
	check(t, "prefiltered", e.Eval(ct, pre), want{dsl.VerdictDeny, ir.RulePrefilter})
	mal := ndPkt(world6, apiIP6, 135)
	mal.Malformed = true
	check(t, "malformed", e.Eval(ct, mal), want{dsl.VerdictDeny, ir.RuleMalformed})
	if ct.Len() != 0 {
		t.Errorf("flows: %v", ct.Flows())
	}
}

// ndPkt is a neighbour discovery message as sent on the link: hop limit 255.
func ndPkt(src, dst string, typ uint8) Packet {
	p := icmpPkt(ir.ProtoICMPv6, src, dst, typ, 0, 0)
	p.HopLimit = 255
	return p
}

// fromFrame reads a frame the way the harness does (packet.Parse), so that
// the datapath's idea of a malformed packet is the evaluator's too.
func fromFrame(t *testing.T, frame []byte) Packet {
	t.Helper()
	s, err := packet.Parse(frame)
	if err != nil {
		return Packet{Malformed: true}
	}
	p := Packet{Proto: s.Proto, Src: s.Src, Dst: s.Dst, SPort: s.SPort, DPort: s.DPort, TCPFlags: s.TCPFlags,
		ICMPType: s.ICMPType, ICMPCode: s.ICMPCode, ICMPID: s.ICMPID, HopLimit: s.TTL}
	if s.Frag != nil {
		p.Frag = &Fragment{ID: s.ID, Offset: s.Frag.Offset, More: s.Frag.More}
	}
	if em := s.Embedded; em != nil && IsICMPError(s.Proto, s.ICMPType) {
		p.Embedded = &Embedded{Proto: em.Proto, Src: em.Src, Dst: em.Dst, SPort: em.SPort, DPort: em.DPort,
			ICMPType: em.ICMPType, ICMPID: em.ICMPID}
	}
	return p
}

// TestFragmentedUDP: a UDP datagram split by packet.Fragments. Its first
// fragment's UDP length covers the whole datagram, beyond the fragment;
// that is normal, not malformed, and the datagram is decided like the
// unfragmented one (bpf TestFragmentedUDP is the datapath's side).
func TestFragmentedUDP(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		src, dst := webIP, apiIP
		if v6 {
			src, dst = webIP6, apiIP6
		}
		spec := func(dport uint16, id uint32) packet.Spec {
			return packet.Spec{Proto: ir.ProtoUDP, Src: netipAddr(src), Dst: netipAddr(dst), SPort: 40000, DPort: dport,
				ID: id, Payload: make([]byte, 1000)}
		}
		e := webToAPI().eval()
		ct := NewConntrack()
		frames := packet.Fragments(spec(53, 1), 400)
		if len(frames) != 3 {
			t.Fatalf("%d fragments", len(frames))
		}
		for i, f := range frames {
			p := fromFrame(t, f)
			if p.Malformed {
				t.Fatalf("v6=%v: fragment %d does not parse", v6, i)
			}
			res := e.Eval(ct, p)
			check(t, fmt.Sprintf("v6=%v fragment %d", v6, i), res, allowBy(0))
			checkPoints(t, fmt.Sprintf("v6=%v fragment %d", v6, i), res, allowBy(0), allowBy(2))
		}
		// the reply datagram, fragmented too
		r := spec(40000, 2)
		r.Src, r.Dst, r.SPort = r.Dst, r.Src, 53
		for i, f := range packet.Fragments(r, 400) {
			check(t, fmt.Sprintf("v6=%v reply fragment %d", v6, i), e.Eval(ct, fromFrame(t, f)), established)
		}
		for i, f := range packet.Fragments(spec(54, 3), 400) {
			check(t, fmt.Sprintf("v6=%v denied fragment %d", v6, i), e.Eval(ct, fromFrame(t, f)), denyDefault)
		}
		// a UDP length below 8 is malformed, fragment or not
		first := packet.Fragments(spec(53, 4), 400)[0]
		off := 14 + 20
		if v6 {
			off = 14 + 40 + 8
		}
		binary.BigEndian.PutUint16(first[off+4:], 7)
		if !fromFrame(t, first).Malformed {
			t.Errorf("v6=%v: first fragment with udp length 7 parses", v6)
		}
	}
}

// TestEchoIdentifiers: echo replies are matched to their request whatever
// the identifier, 0 included, in both families; a request matches only
// its own orientation and a reply only the reverse (bpf TestEchoIdentifiers
// is the datapath's side).
func TestEchoIdentifiers(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, id := range []uint16{0, 0x1234} {
			t.Run(fmt.Sprintf("v6=%v id %#x", v6, id), func(t *testing.T) {
				proto, web, api, req, rep := ir.ProtoICMP, webIP, apiIP, uint8(8), uint8(0)
				if v6 {
					proto, web, api, req, rep = ir.ProtoICMPv6, webIP6, apiIP6, 128, 129
				}
				b := fixture()
				// web: egress open, ingress isolated without ICMP; api: ingress
				// allows echo requests, egress isolated without ICMP
				b.policy("web", sel(eq("app", "web")), inAllow(nil, tcp(22, 22)))
				b.policy("api", apiSel(), inAllow(nil, icmp(8, -1), icmp6(128, -1)), outAllow(nil, tcp(443, 443)))
				e := b.eval()
				ct := NewConntrack()
				ping := icmpPkt(proto, web, api, req, 0, id)
				pong := icmpPkt(proto, api, web, rep, 0, id)
				check(t, "unsolicited reply", e.Eval(ct, pong), denyDefault)
				res := e.Eval(ct, ping)
				checkPoints(t, "ping", res, allowDefault, allowBy(1))
				res = e.Eval(ct, pong)
				check(t, "reply", res, established)
				checkPoints(t, "reply", res, established, established)
				check(t, "second reply", e.Eval(ct, pong), established)
				// not the other way round
				check(t, "request back", e.Eval(ct, icmpPkt(proto, api, web, req, 0, id)), denyDefault)
				check(t, "reply the way the request went", e.Eval(ct, icmpPkt(proto, web, api, rep, 0, id)), denyDefault)
				if ct.Len() != 1 {
					t.Errorf("flows: %v", ct.Flows())
				}
				// errors: about the request, related; about other ICMP, not
				about := func(o Packet) Packet {
					typ := uint8(3)
					if v6 {
						typ = 1
					}
					return icmpError(proto, api, web, typ, o)
				}
				check(t, "error about the ping", e.Eval(ct, about(ping)), related)
				other := icmpPkt(proto, web, api, 13, 0, id)
				if v6 {
					other.ICMPType = 139
				}
				check(t, "error about other icmp", e.Eval(ct, about(other)), denyDefault)
			})
		}
	}
}

// TestForeignICMP: ICMP in IPv6 and ICMPv6 in IPv4 are protocol numbers
// without ports: typed rules never match them, a rule on the protocol
// without a type does, and they are tracked by addresses (bpf
// TestForeignICMP is the datapath's side).
func TestForeignICMP(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v6=%v", v6), func(t *testing.T) {
			foreign, web, api := ir.ProtoICMPv6, webIP, apiIP
			typed, plain := icmp6(128, -1), ir.PortMatch{Proto: ir.ProtoICMPv6, ICMPType: -1, ICMPCode: -1}
			if v6 {
				foreign, web, api = ir.ProtoICMP, webIP6, apiIP6
				typed, plain = icmp(8, -1), ir.PortMatch{Proto: ir.ProtoICMP, ICMPType: -1, ICMPCode: -1}
			}
			zero := ir.PortMatch{Proto: foreign, ICMPType: 0, ICMPCode: 0}
			b := fixture()
			b.policy("api", apiSel(), inAllow(peers(selPeer(eq("app", "web"))), typed, zero), outAllow(nil, tcp(443, 443)))
			e := b.eval()
			ct := NewConntrack()
			p := icmpPkt(foreign, web, api, 8, 0, 5)
			if v6 {
				p.ICMPType = 128
			}
			check(t, "typed rules do not match", e.Eval(ct, p), denyDefault)
			z := icmpPkt(foreign, web, api, 0, 0, 0)
			check(t, "type 0 code 0 does not match either", e.Eval(ct, z), denyDefault)

			b = fixture()
			b.policy("api", apiSel(), inAllow(peers(selPeer(eq("app", "web"))), plain), outAllow(nil, tcp(443, 443)))
			e = b.eval()
			check(t, "protocol rule without type", e.Eval(ct, p), allowBy(0))
			check(t, "later packet, another type", e.Eval(ct, icmpPkt(foreign, web, api, 13, 0, 9)), established)
			check(t, "reply by addresses", e.Eval(ct, icmpPkt(foreign, api, web, 0, 0, 0)), established)
			if fs := ct.Flows(); len(fs) != 1 || fs[0].SPort != 0 || fs[0].DPort != 0 || fs[0].Proto != foreign {
				t.Errorf("flows: %+v", fs)
			}
			// an error about the flow is related: only native ICMP errors are errors
			errTyp := uint8(3)
			errProto := ir.ProtoICMP
			if v6 {
				errTyp, errProto = 1, ir.ProtoICMPv6
			}
			check(t, "native error about the foreign flow", e.Eval(ct, icmpError(errProto, api, web, errTyp, p)), related)
			fe := icmpError(foreign, "8.8.4.4", web, errTyp, p)
			if v6 {
				fe.Src = netipAddr("2001:db8::fe")
			}
			check(t, "a foreign \"error\" is not one", e.Eval(ct, fe), allowDefault)
		})
	}
}
