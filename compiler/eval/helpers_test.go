package eval

import (
	"net/netip"
	"testing"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// The tests build IR by hand, independently of the front end.

type builder struct{ p *ir.Program }

func newBuilder(eps ...*ir.Endpoint) *builder {
	return &builder{p: &ir.Program{Endpoints: eps}}
}

func endpoint(name string, labels ir.Labels, addrs ...string) *ir.Endpoint {
	ep := &ir.Endpoint{Name: name, Labels: labels}
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			addr := netip.MustParseAddr(a)
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		ep.Addrs = append(ep.Addrs, p.Masked())
	}
	return ep
}

func labels(kv ...string) ir.Labels {
	var ls ir.Labels
	for i := 0; i < len(kv); i += 2 {
		ls = append(ls, ir.Label{Key: kv[i], Value: kv[i+1]})
	}
	return ls
}

// policy adds a policy whose rules are numbered after the program's
// existing rules, and whose Isolates follow its rules plus isolate.
func (b *builder) policy(name string, subj ir.Selector, rules ...ir.Rule) *ir.Policy {
	pol := &ir.Policy{Name: name, Subject: subj}
	for _, r := range rules {
		r := r
		r.ID = ir.FirstRuleID + ir.RuleID(len(b.p.Rules))
		r.Policy = name
		pol.Isolates[r.Dir] = true
		pol.Rules = append(pol.Rules, r.ID)
		b.p.Rules = append(b.p.Rules, &r)
	}
	for _, ep := range b.p.Endpoints {
		if subj.Matches(ep.Labels) {
			pol.Subjects = append(pol.Subjects, ep.Name)
		}
	}
	b.p.Policies = append(b.p.Policies, pol)
	return pol
}

func (b *builder) eval() *Evaluator { return New(b.p) }

func sel(reqs ...ir.Requirement) ir.Selector { return ir.Selector{Reqs: reqs} }

func req(key string, op dsl.Op, values ...string) ir.Requirement {
	return ir.Requirement{Key: key, Op: op, Values: values}
}

func eq(k, v string) ir.Requirement { return req(k, dsl.OpEq, v) }

func rule(dir dsl.Direction, act dsl.Action, peers []ir.Peer, ports ...ir.PortMatch) ir.Rule {
	if len(peers) == 0 {
		peers = []ir.Peer{anyPeer}
	}
	if len(ports) == 0 {
		ports = []ir.PortMatch{anyProto}
	}
	return ir.Rule{Dir: dir, Action: act, Peers: peers, Ports: ports}
}

func inAllow(peers []ir.Peer, ports ...ir.PortMatch) ir.Rule {
	return rule(dsl.Ingress, dsl.Allow, peers, ports...)
}
func inDeny(peers []ir.Peer, ports ...ir.PortMatch) ir.Rule {
	return rule(dsl.Ingress, dsl.Deny, peers, ports...)
}
func outAllow(peers []ir.Peer, ports ...ir.PortMatch) ir.Rule {
	return rule(dsl.Egress, dsl.Allow, peers, ports...)
}
func outDeny(peers []ir.Peer, ports ...ir.PortMatch) ir.Rule {
	return rule(dsl.Egress, dsl.Deny, peers, ports...)
}

func peers(ps ...ir.Peer) []ir.Peer { return ps }

func selPeer(reqs ...ir.Requirement) ir.Peer {
	return ir.Peer{Kind: ir.PeerSelector, Selector: sel(reqs...)}
}

func cidr(c string, except ...string) ir.Peer {
	p := ir.Peer{Kind: ir.PeerCIDR, CIDR: netip.MustParsePrefix(c).Masked()}
	for _, x := range except {
		p.Except = append(p.Except, netip.MustParsePrefix(x).Masked())
	}
	return p
}

var (
	world    = ir.Peer{Kind: ir.PeerWorld}
	anyPeer  = ir.Peer{Kind: ir.PeerAny}
	anyProto = ir.PortMatch{Proto: ir.ProtoAny}
)

func tcp(lo, hi uint16) ir.PortMatch  { return ir.PortMatch{Proto: ir.ProtoTCP, Lo: lo, Hi: hi} }
func udp(lo, hi uint16) ir.PortMatch  { return ir.PortMatch{Proto: ir.ProtoUDP, Lo: lo, Hi: hi} }
func sctp(lo, hi uint16) ir.PortMatch { return ir.PortMatch{Proto: ir.ProtoSCTP, Lo: lo, Hi: hi} }
func icmp(typ, code int) ir.PortMatch {
	return ir.PortMatch{Proto: ir.ProtoICMP, ICMPType: typ, ICMPCode: code}
}
func icmp6(typ, code int) ir.PortMatch {
	return ir.PortMatch{Proto: ir.ProtoICMPv6, ICMPType: typ, ICMPCode: code}
}

// pkt builds a packet "proto src:sport -> dst:dport" (ports ignored for ICMP).
func pkt(proto ir.Proto, src string, sport uint16, dst string, dport uint16) Packet {
	return Packet{Proto: proto, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), SPort: sport, DPort: dport}
}

func syn(src string, sport uint16, dst string, dport uint16) Packet {
	p := pkt(ir.ProtoTCP, src, sport, dst, dport)
	p.TCPFlags = ir.TCPSyn
	return p
}

func icmpPkt(proto ir.Proto, src, dst string, typ, code uint8, id uint16) Packet {
	p := pkt(proto, src, 0, dst, 0)
	p.ICMPType, p.ICMPCode, p.ICMPID = typ, code, id
	return p
}

// reply returns the reverse of p: addresses and ports swapped, TCP flags
// ACK, an ICMP request turned into its reply.
func reply(p Packet) Packet {
	p.Src, p.Dst = p.Dst, p.Src
	p.SPort, p.DPort = p.DPort, p.SPort
	if p.Proto == ir.ProtoTCP {
		p.TCPFlags = ir.TCPAck
	}
	if t, ok := ICMPReplyType(p.Proto, p.ICMPType); ok {
		p.ICMPType = t
	}
	return p
}

func withFlags(p Packet, f uint8) Packet { p.TCPFlags = f; return p }

func ruleID(n int) ir.RuleID { return ir.FirstRuleID + ir.RuleID(n) }

// want is an expected verdict with its deciding rule.
type want struct {
	v    dsl.Verdict
	rule ir.RuleID
}

var (
	allowDefault = want{dsl.VerdictAllow, ir.RuleDefaultAllow}
	denyDefault  = want{dsl.VerdictDeny, ir.RuleDefaultDeny}
	established  = want{dsl.VerdictAllow, ir.RuleEstablished}
	related      = want{dsl.VerdictAllow, ir.RuleRelated}
)

func allowBy(n int) want { return want{dsl.VerdictAllow, ruleID(n)} }
func denyBy(n int) want  { return want{dsl.VerdictDeny, ruleID(n)} }

func check(t *testing.T, what string, got Result, w want) {
	t.Helper()
	if got.Verdict != w.v || got.Rule != w.rule {
		t.Errorf("%s: got %s, want %s (%s)", what, got, w.v, ruleName(w.rule))
	}
}

// checkPoints compares the decisions at each point, in order.
func checkPoints(t *testing.T, what string, got Result, ws ...want) {
	t.Helper()
	if len(got.Points) != len(ws) {
		t.Errorf("%s: got %d points (%s), want %d", what, len(got.Points), got, len(ws))
		return
	}
	for i, w := range ws {
		p := got.Points[i]
		if p.Verdict != w.v || p.Rule != w.rule {
			t.Errorf("%s: point %d: got %s, want %s (%s)", what, i, p, w.v, ruleName(w.rule))
		}
	}
}

// Addresses of the standard fixture.
const (
	webIP   = "10.0.1.10"
	webIP6  = "fd00::10"
	apiIP   = "10.0.2.10"
	apiIP6  = "fd00::20"
	dbIP    = "10.0.3.10"
	labIP   = "10.0.4.7" // inside lab's /24
	worldIP = "8.8.8.8"
	world6  = "2001:db8::1"
)

// fixture has four endpoints:
//
//	api  app=api                     10.0.2.10, fd00::20
//	db   app=db env=prod             10.0.3.10
//	lab  app=lab debug=true          10.0.4.0/24
//	web  app=web tier=frontend       10.0.1.10, fd00::10
func fixture() *builder {
	return newBuilder(
		endpoint("api", labels("app", "api"), apiIP, apiIP6),
		endpoint("db", labels("app", "db", "env", "prod"), dbIP),
		endpoint("lab", labels("app", "lab", "debug", "true"), "10.0.4.0/24"),
		endpoint("web", labels("app", "web", "tier", "frontend"), webIP, webIP6),
	)
}

func netipAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
