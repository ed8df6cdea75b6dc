package harness

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/polc-dev/polc/compiler/eval"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/runtime/packet"
)

// Case is one packet to decide: its bytes for the kernel and its
// description for the evaluator, which must say the same thing.
type Case struct {
	Frame []byte
	Ref   eval.Packet
}

// CaseFromIR makes the case of a test step's packet (or of a flow that
// ParseFlow read). A packet whose source is not a local endpoint's
// address arrives on an uplink, so the prefilter applies to it.
func CaseFromIR(ev *eval.Evaluator, p ir.Packet) Case {
	ref := eval.FromIR(p)
	// A remote endpoint's packets reach this node from outside, as the
	// world's do: through an uplink (and its prefilter), no egress hook.
	r := ev.Resolve(p.Src)
	ref.FromUplink = r.Kind != eval.ResolvedEndpoint || r.Endpoint.Remote
	return Case{Frame: packet.FromIR(p), Ref: ref}
}

// CaseFromSpec makes the case of any frame the packet builder can make:
// the evaluator's packet is read back from the bytes (packet.Parse), so
// odd packets (fragments, ICMP errors, malformed headers) are described
// exactly as sent. Malformed frames keep the spec's addresses, which pick
// the hooks. uplink says the frame arrives from outside.
func CaseFromSpec(s packet.Spec, uplink bool) Case {
	frame := packet.Build(s)
	return Case{Frame: frame, Ref: RefFromFrame(frame, s.Src, s.Dst, uplink)}
}

// RefFromFrame describes a frame for the evaluator. src and dst are used
// when the frame is malformed (Parse cannot read them).
func RefFromFrame(frame []byte, src, dst netip.Addr, uplink bool) eval.Packet {
	sum, err := packet.Parse(frame)
	if err != nil {
		return eval.Packet{Malformed: true, Src: src, Dst: dst, FromUplink: uplink}
	}
	if sum.NonIP {
		return eval.Packet{NonIP: true, EtherType: sum.EtherType, VLAN: packet.IsVLAN(sum.EtherType), FromUplink: uplink}
	}
	p := eval.Packet{
		FromUplink: uplink,
		Proto:      sum.Proto,
		Src:        sum.Src,
		Dst:        sum.Dst,
		SPort:      sum.SPort,
		DPort:      sum.DPort,
		TCPFlags:   sum.TCPFlags,
		ICMPType:   sum.ICMPType,
		ICMPCode:   sum.ICMPCode,
		ICMPID:     sum.ICMPID,
		HopLimit:   sum.TTL,
	}
	if sum.Frag != nil {
		p.Frag = &eval.Fragment{ID: sum.ID, Offset: sum.Frag.Offset, More: sum.Frag.More}
	}
	if e := sum.Embedded; e != nil && eval.IsICMPError(sum.Proto, sum.ICMPType) {
		p.Embedded = &eval.Embedded{Proto: e.Proto, Src: e.Src, Dst: e.Dst, SPort: e.SPort, DPort: e.DPort,
			ICMPType: e.ICMPType, ICMPID: e.ICMPID}
	}
	return p
}

// Outcome is one packet's decision by the evaluator and (when it ran) the
// kernel.
type Outcome struct {
	Reference eval.Result
	Kernel    *KernelResult // nil: the kernel was not asked
}

// Diff describes how the kernel's decision differs from the evaluator's:
// the overall verdict and rule, and the verdict and rule at each
// observation point. It is "" when they agree or the kernel did not run.
// When the evaluator stops a packet before any point (non-IP, prefilter,
// or no local endpoint on either side), only the overall decision is
// compared.
func (o Outcome) Diff() string {
	k := o.Kernel
	if k == nil {
		return ""
	}
	r := o.Reference
	var diffs []string
	if k.Verdict != r.Verdict || k.Rule != r.Rule || k.Audit != r.Audit {
		diffs = append(diffs, fmt.Sprintf("overall: kernel %s (%s%s), reference %s (%s%s)",
			k.Verdict, RuleName(k.Rule), auditName(k.Audit), r.Verdict, RuleName(r.Rule), auditName(r.Audit)))
	}
	// Frames judged before addresses (non-IP: passed or dropped by
	// ethertype) have no points in the reference; the kernel runs them
	// through the sending endpoint's hook.
	beforeAddrs := r.Rule == ir.RuleNonIP || r.Rule == ir.RuleEtherType || r.Rule == ir.RuleUnbound
	if len(r.Points) > 0 || (len(k.Points) > 0 && !beforeAddrs) {
		if len(k.Points) != len(r.Points) {
			diffs = append(diffs, fmt.Sprintf("points: kernel ran %s, reference observed %s",
				kernelPointList(k.Points), refPointList(r.Points)))
		} else {
			for i, kp := range k.Points {
				rp := r.Points[i]
				if kp.Dir != rp.Dir || kp.Verdict != rp.Verdict || kp.Rule != rp.Rule || kp.Audit != rp.Audit {
					diffs = append(diffs, fmt.Sprintf("%s %s: kernel %s (%s%s), reference %s (%s%s)",
						rp.Subject.Name, rp.Dir, kp.Verdict, RuleName(kp.Rule), auditName(kp.Audit), rp.Verdict, RuleName(rp.Rule), auditName(rp.Audit)))
				}
			}
		}
	}
	return strings.Join(diffs, "; ")
}

func kernelPointList(ps []KernelPoint) string {
	if len(ps) == 0 {
		return "no hook"
	}
	var s []string
	for _, p := range ps {
		s = append(s, p.Subject.String()+" "+p.Dir.String())
	}
	return strings.Join(s, ", ")
}

func refPointList(ps []eval.PointDecision) string {
	if len(ps) == 0 {
		return "no point"
	}
	var s []string
	for _, p := range ps {
		s = append(s, p.Subject.Name+" "+p.Dir.String())
	}
	return strings.Join(s, ", ")
}

// RuleName is a rule id in short form: a reserved name ("default-deny")
// or "rule N".
func RuleName(id ir.RuleID) string {
	if n := ir.ReservedName(id); n != "" {
		return n
	}
	return "rule " + strconv.Itoa(int(id))
}

// LookupRule returns the rule with id, or nil for reserved and unknown ids.
func LookupRule(prog *ir.Program, id ir.RuleID) *ir.Rule {
	if id < ir.FirstRuleID {
		return nil
	}
	i := int(id - ir.FirstRuleID)
	if i < len(prog.Rules) && prog.Rules[i].ID == id {
		return prog.Rules[i]
	}
	for _, r := range prog.Rules {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// RuleSource is where a rule id comes from: "file:line" for a rule of the
// policy, the reserved name otherwise ("default-deny").
func RuleSource(prog *ir.Program, id ir.RuleID) string {
	if r := LookupRule(prog, id); r != nil {
		return r.Pos.File + ":" + strconv.Itoa(r.Pos.Line)
	}
	return RuleName(id)
}

// auditName is ", audit: RULE" for an audit rule, "" for none.
func auditName(id ir.RuleID) string {
	if id == 0 {
		return ""
	}
	return ", audit: " + RuleName(id)
}
