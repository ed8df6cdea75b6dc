package eval_test

import (
	"fmt"
	"net/netip"

	"github.com/polc-dev/polc/compiler/eval"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// A policy lets web open tcp/8080 on api; the reply passes through
// conntrack, and an unrelated packet from api is denied by default.
func Example() {
	web := &ir.Endpoint{Name: "web", Labels: ir.Labels{{Key: "app", Value: "web"}},
		Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.1.10/32")}}
	api := &ir.Endpoint{Name: "api", Labels: ir.Labels{{Key: "app", Value: "api"}},
		Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.2.10/32")}}
	rule := &ir.Rule{ID: ir.FirstRuleID, Policy: "api", Dir: dsl.Ingress, Action: dsl.Allow,
		Peers: []ir.Peer{{Kind: ir.PeerSelector, Selector: ir.Selector{Reqs: []ir.Requirement{{Key: "app", Op: dsl.OpEq, Values: []string{"web"}}}}}},
		Ports: []ir.PortMatch{{Proto: ir.ProtoTCP, Lo: 8080, Hi: 8080}}}
	pol := &ir.Policy{Name: "api", Subject: ir.Selector{Reqs: []ir.Requirement{{Key: "app", Op: dsl.OpEq, Values: []string{"api"}}}},
		Subjects: []string{"api"}, Isolates: [2]bool{true, true}, Rules: []ir.RuleID{rule.ID}}
	prog := &ir.Program{Endpoints: []*ir.Endpoint{api, web}, Policies: []*ir.Policy{pol}, Rules: []*ir.Rule{rule}}

	e := eval.New(prog)
	ct := eval.NewConntrack()
	syn := eval.Packet{Proto: ir.ProtoTCP, Src: netip.MustParseAddr("10.0.1.10"), Dst: netip.MustParseAddr("10.0.2.10"),
		SPort: 40000, DPort: 8080, TCPFlags: ir.TCPSyn}
	fmt.Println(e.Eval(ct, syn))
	synack := eval.Packet{Proto: ir.ProtoTCP, Src: syn.Dst, Dst: syn.Src, SPort: 8080, DPort: 40000, TCPFlags: ir.TCPSyn | ir.TCPAck}
	fmt.Println(e.Eval(ct, synack))
	other := synack
	other.SPort = 9999
	fmt.Println(e.Eval(ct, other).Rule == ir.RuleDefaultDeny)
	// Output:
	// allow (rule 16); web egress to 10.0.2.10 [endpoint api]: allow (default-allow); api ingress from 10.0.1.10 [endpoint web]: allow (rule 16)
	// allow (established); api egress to 10.0.1.10 [endpoint web]: allow (established); web ingress from 10.0.2.10 [endpoint api]: allow (established)
	// true
}
