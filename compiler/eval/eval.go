package eval

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// Result is the verdict on one packet.
type Result struct {
	Verdict dsl.Verdict
	// Rule decided the verdict: the rule of the first point that denied
	// the packet; when it passed, the rule of the first point decided by
	// something other than default-allow, else ir.RuleDefaultAllow. Packets
	// decided before any point (unbound interface, prefilter, ethertype,
	// ARP) carry the reason.
	Rule ir.RuleID
	// Audit, for a packet that passes, is what the first point with an
	// audit verdict reports: the audit policy's rule (or
	// ir.RuleAuditDefaultDeny) that would have denied it. 0: none.
	Audit ir.RuleID
	// Points are the observation points in the order the packet meets them:
	// the sender's egress, then the destination's ingress. Both are
	// evaluated even when the first denies.
	Points []PointDecision
}

// PointDecision is the decision at one observation point.
type PointDecision struct {
	Subject *ir.Endpoint
	Dir     dsl.Direction
	Remote  netip.Addr
	// RemoteIs is the identity the remote address resolves to (for
	// explaining; matching does not use it).
	RemoteIs Resolution
	Verdict  dsl.Verdict
	Rule     ir.RuleID
	// Audit, at a point that passes the packet, is the rule of an audit
	// policy that would deny it, or ir.RuleAuditDefaultDeny when an audit
	// policy's isolation would; 0 when all policies pass it too.
	Audit ir.RuleID
	// Passes are the pass rules of tiered policies that sent the packet
	// on before Rule decided, in order: the admin tier's, then the
	// baseline tier's. Empty when the first level decided.
	Passes []ir.RuleID
	// Level is the level of the evaluation order that decided (the
	// deciding rule's tier and priority are the rule's, in the IR);
	// LevelNone when no policy did (established, related, malformed, ...).
	Level Level
}

// Level is a level of the evaluation order at one point.
type Level int

const (
	LevelNone      Level = iota // not decided by policy
	LevelAdmin                  // a rule of the admin tier
	LevelNamespace              // the untiered policies: a rule, or default-deny
	LevelBaseline               // a rule of the baseline tier
	LevelDefault                // nothing decided: default-allow
)

func (l Level) String() string {
	switch l {
	case LevelAdmin:
		return "admin"
	case LevelNamespace:
		return "namespace"
	case LevelBaseline:
		return "baseline"
	case LevelDefault:
		return "default"
	}
	return "none"
}

func (r Result) String() string {
	var b strings.Builder
	b.WriteString(r.Verdict.String() + " (" + ruleName(r.Rule) + ")")
	if r.Audit != 0 {
		b.WriteString(" audit: would be denied (" + ruleName(r.Audit) + ")")
	}
	for _, p := range r.Points {
		b.WriteString("; " + p.String())
	}
	return b.String()
}

func (p PointDecision) String() string {
	peer := "from"
	if p.Dir == dsl.Egress {
		peer = "to"
	}
	return p.Subject.Name + " " + p.Dir.String() + " " + peer + " " + p.Remote.String() +
		" [" + p.RemoteIs.String() + "]: " + p.Verdict.String() + " (" + ruleName(p.Rule) + passesText(p.Passes) + ")" + auditText(p.Audit)
}

// passesText is " after pass rule 17, rule 20" for the pass rules
// crossed, "" for none.
func passesText(ids []ir.RuleID) string {
	if len(ids) == 0 {
		return ""
	}
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = ruleName(id)
	}
	return " after pass " + strings.Join(names, ", ")
}

func auditText(id ir.RuleID) string {
	if id == 0 {
		return ""
	}
	return " audit: would be denied (" + ruleName(id) + ")"
}

// point is an observation point before it is decided.
type point struct {
	subject int
	dir     dsl.Direction
	remote  netip.Addr
}

// Eval decides one packet and updates ct (which may be nil for a stateless
// evaluation). In order:
//
//  1. A packet sent via an interface that is bound to no endpoint of the
//     program (Via names none, or a remote endpoint, which has no
//     interface here) is dropped (ir.RuleUnbound).
//  2. From an uplink (FromUplink, and no Via), a source inside the
//     prefilter is dropped (ir.RulePrefilter).
//  3. A frame with a VLAN tag, IP or not, is dropped (ir.RuleEtherType),
//     and so is a non-IP frame other than ARP; no points.
//  4. ARP passes (ir.RuleNonIP); no points.
//  5. A malformed packet is dropped at every point (ir.RuleMalformed),
//     also when it has none, unless it is another node's business
//     (Elsewhere: it passes, as any packet no hook here sees).
//  6. A packet sent via an endpoint that does not own its source address
//     is dropped at that endpoint's egress point (ir.RuleSpoofedSource),
//     unless it is neighbour discovery (as in 7) from fe80::/10 or ::,
//     which any interface may send. It goes no further: the result has
//     that one point, and no state changes.
//  7. An unfragmented ICMPv6 neighbour discovery message (types 133–137,
//     hop limit 255) passes at every point like non-IP (ir.RuleNonIP),
//     without state.
//     7b. With Program.DropTunnels, a tunnel protocol (ir.TunnelProtos) is
//     dropped at every point (ir.RuleTunnel), without state.
//  8. A non-first fragment takes, at each point, the decision its
//     datagram's first fragment got there under the current generation
//     (the datapath's frags records carry the generation too); unknown,
//     or seen only under another generation, it is dropped
//     (ir.RuleFragment) at points whose subject is isolated in that
//     direction, or selected there by a tiered policy with a deny rule in
//     that direction (some packet may be denied there), and passes
//     elsewhere.
//  9. An ICMP error about a tracked flow passes (ir.RuleRelated).
//  10. A packet of a tracked flow, either way, passes (ir.RuleEstablished);
//     if the flow was created under another generation, each point instead
//     asks policy again about the flow's first packet, and a flow no longer
//     allowed is forgotten.
//  11. Otherwise policy decides at each point.
//
// A packet that passes creates a flow (when it starts one), or refreshes or
// (RST) ends its flow. A dropped packet creates nothing, and a spoofed one
// (6) changes nothing at all. A first fragment, passed or dropped (but not
// spoofed), is remembered for the rest of its datagram.
func (e *Evaluator) Eval(ct *Conntrack, pkt Packet) Result {
	via := -1
	if pkt.Via != "" {
		i, ok := e.byName[pkt.Via]
		if !ok || e.endpoints[i].Remote { // a remote endpoint has no interface here
			return Result{Verdict: dsl.VerdictDeny, Rule: ir.RuleUnbound}
		}
		via = i
	}
	if via < 0 && pkt.FromUplink && pkt.Src.IsValid() && e.Prefiltered(pkt.Src) {
		return Result{Verdict: dsl.VerdictDeny, Rule: ir.RulePrefilter}
	}
	if pkt.badEtherType() {
		return Result{Verdict: dsl.VerdictDeny, Rule: ir.RuleEtherType}
	}
	if pkt.NonIP {
		return Result{Verdict: dsl.VerdictAllow, Rule: ir.RuleNonIP}
	}
	pts := e.points(&pkt, via)
	res := Result{Points: make([]PointDecision, len(pts))}
	for i, pt := range pts {
		res.Points[i] = PointDecision{
			Subject:  e.endpoints[pt.subject],
			Dir:      pt.dir,
			Remote:   pt.remote,
			RemoteIs: e.Resolve(pt.remote),
		}
	}
	if (pkt.Malformed || !pkt.wellFormed()) && !(len(pts) == 0 && e.Elsewhere(pkt.Src, pkt.Dst)) {
		// a packet between remote endpoints meets no hook here: it is
		// not this node's to drop
		for i := range pts {
			res.Points[i].Verdict, res.Points[i].Rule = dsl.VerdictDeny, ir.RuleMalformed
		}
		res.Verdict, res.Rule = dsl.VerdictDeny, ir.RuleMalformed
		return res
	}

	// An endpoint that sends another's address (or one no endpoint owns)
	// is stopped at its own egress: the packet gets no further, so no
	// other point sees it, and it touches no state.
	if via >= 0 && e.owner(pkt.Src) != via && !(pkt.ndExempt(dsl.Egress) && linkLocalOrUnspecified(pkt.Src)) {
		res.Points = res.Points[:1] // points puts the Via endpoint's egress first
		res.Points[0].Verdict, res.Points[0].Rule = dsl.VerdictDeny, ir.RuleSpoofedSource
		res.Verdict, res.Rule = dsl.VerdictDeny, ir.RuleSpoofedSource
		return res
	}
	set := func(i int, v dsl.Verdict, r ir.RuleID) { res.Points[i].Verdict, res.Points[i].Rule = v, r }
	setDecided := func(i int, d decision) {
		p := &res.Points[i]
		p.Verdict, p.Rule, p.Audit, p.Passes, p.Level = d.verdict, d.rule, d.audit, d.passes, d.level
	}

	ndAll := pkt.neighbourDiscovery()
	for _, pt := range pts {
		ndAll = ndAll && pkt.ndExempt(pt.dir)
	}
	switch {
	case ndAll:
		// IPv6's ARP: no payload policy applies, and nothing is tracked.
		for i := range pts {
			set(i, dsl.VerdictAllow, ir.RuleNonIP)
		}
		res.combine()
		return res

	case e.prog.DropTunnels && slices.Contains(ir.TunnelProtos, pkt.Proto):
		// What a tunnel carries would pass unseen: dropped at every
		// point, before fragments and state.
		for i := range pts {
			set(i, dsl.VerdictDeny, ir.RuleTunnel)
		}
		res.combine()
		return res

	case pkt.laterFragment():
		first := ct.fragment(&pkt, e.gen)
		for i, pt := range pts {
			switch fp, ok := first.decision(pt); {
			case ok:
				set(i, fp.verdict, fp.rule)
			case e.subjects[pt.subject].isolated[pt.dir], e.subjects[pt.subject].tieredDeny(pt.dir):
				set(i, dsl.VerdictDeny, ir.RuleFragment)
			default:
				set(i, dsl.VerdictAllow, ir.RuleDefaultAllow)
			}
		}
		res.combine()
		return res
	}

	key, flow, reply := ct.lookup(&pkt)
	switch {
	case ct != nil && ct.related(&pkt, e.gen):
		for i := range pts {
			set(i, dsl.VerdictAllow, ir.RuleRelated)
		}
		flow = nil // an error refreshes nothing
	case flow != nil && flow.gen == e.gen:
		for i := range pts {
			set(i, dsl.VerdictAllow, ir.RuleEstablished)
		}
	case flow != nil:
		// Created under another policy: is the flow still allowed? Each
		// point asks about the flow's first packet, which met the same
		// subject in the other direction when this packet is a reply.
		orig := key.originalPacket()
		for i, pt := range pts {
			dir := pt.dir
			if reply {
				dir = 1 - dir
			}
			setDecided(i, e.decide(pt.subject, dir, pt.remote, &orig))
		}
	default:
		for i, pt := range pts {
			if pkt.ndExempt(pt.dir) {
				// ND that leaves the link is policed at the sender's
				// egress only
				set(i, dsl.VerdictAllow, ir.RuleNonIP)
				continue
			}
			setDecided(i, e.decide(pt.subject, pt.dir, pt.remote, &pkt))
		}
	}
	res.combine()

	if ct == nil {
		return res
	}
	switch {
	case res.Verdict == dsl.VerdictAllow && flow != nil:
		ct.passed(key, flow, reply, &pkt, e.gen)
	case res.Verdict == dsl.VerdictAllow:
		ct.create(&pkt, e.gen) // only a packet that starts a flow creates one
	case flow != nil:
		ct.forget(key) // a stale flow that policy no longer allows
	}
	if pkt.firstFragment() {
		fps := make([]fragPoint, len(pts))
		for i, pt := range pts {
			fps[i] = fragPoint{pt.subject, pt.dir, res.Points[i].Verdict, res.Points[i].Rule}
		}
		ct.rememberFragment(&pkt, e.gen, fps)
	}
	return res
}

// decision returns the first fragment's decision at pt.
func (f *fragState) decision(pt point) (fragPoint, bool) {
	if f == nil {
		return fragPoint{}, false
	}
	for _, fp := range f.points {
		if fp.subject == pt.subject && fp.dir == pt.dir {
			return fp, true
		}
	}
	return fragPoint{}, false
}

// points lists where the packet is observed: the sender's egress, then the
// destination's ingress. The sender is the endpoint via (an index, or -1)
// when the packet names the interface it left from, else the source's
// owner unless the packet arrived on an uplink. Only local endpoints have
// points: a remote endpoint's half of the packet is its node's business,
// so a packet between a remote endpoint and a local one is decided by the
// local hook alone, and one between two remote endpoints by none.
func (e *Evaluator) points(pkt *Packet, via int) []point {
	var pts []point
	switch {
	case via >= 0:
		pts = append(pts, point{via, dsl.Egress, pkt.Dst})
	case pkt.Src.IsValid() && !pkt.FromUplink:
		if s := e.local(pkt.Src); s >= 0 {
			pts = append(pts, point{s, dsl.Egress, pkt.Dst})
		}
	}
	if pkt.Dst.IsValid() {
		if d := e.local(pkt.Dst); d >= 0 {
			pts = append(pts, point{d, dsl.Ingress, pkt.Src})
		}
	}
	return pts
}

// combine sets the overall verdict from the points' decisions.
func (r *Result) combine() {
	for _, p := range r.Points {
		if p.Verdict == dsl.VerdictDeny {
			r.Verdict, r.Rule = dsl.VerdictDeny, p.Rule
			return
		}
	}
	r.Verdict, r.Rule = dsl.VerdictAllow, ir.RuleDefaultAllow
	for _, p := range r.Points {
		if r.Audit == 0 {
			r.Audit = p.Audit
		}
	}
	for _, p := range r.Points {
		if p.Rule != ir.RuleDefaultAllow {
			r.Rule = p.Rule
			return
		}
	}
}
