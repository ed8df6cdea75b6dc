package eval

import (
	"fmt"
	"testing"

	"github.com/polc-dev/polc/compiler/ir"
)

// icmpErrorTypes are the message types that count as errors quoting a
// packet, so that they may be related to a flow: those Linux conntrack
// treats as related, and those bpf/parse.h (polc_is_icmp_error) reads a
// quote from. Every other type of the family is not an error.
var icmpErrorTypes = map[ir.Proto]map[uint8]string{
	ir.ProtoICMP: {
		3:  "destination unreachable",
		4:  "source quench",
		5:  "redirect",
		11: "time exceeded",
		12: "parameter problem",
	},
	ir.ProtoICMPv6: {
		1: "destination unreachable",
		2: "packet too big",
		3: "time exceeded",
		4: "parameter problem",
	},
}

// TestICMPErrorTypes: for every ICMP type 0–255 in IPv4 and every ICMPv6
// type 0–255 in IPv6, an error-shaped message (with a quote) about a live
// flow, sent by a router back to the flow's source, is related exactly
// when its type is in icmpErrorTypes; any other type meets policy (here
// the source's isolated ingress: default deny) and changes no state. The
// datapath's side is the harness's TestICMPErrorTypesInKernel.
func TestICMPErrorTypes(t *testing.T) {
	b := fixture()
	b.policy("web", sel(eq("app", "web")), outAllow(peers(world), udp(53, 53), tcp(443, 443)),
		inAllow(peers(cidr("203.0.113.0/24"))))
	e := b.eval()
	fams := []struct {
		name          string
		proto         ir.Proto
		web, far, rtr string
	}{
		{"icmp", ir.ProtoICMP, webIP, worldIP, "192.0.2.254"},
		{"icmpv6", ir.ProtoICMPv6, webIP6, world6, "2001:db8::fe"},
	}
	for _, f := range fams {
		for typ := range 256 {
			typ := uint8(typ)
			name, isErr := icmpErrorTypes[f.proto][typ]
			if !isErr {
				name = "not an error"
			}
			t.Run(fmt.Sprintf("%s type %d (%s)", f.name, typ, name), func(t *testing.T) {
				if got := IsICMPError(f.proto, typ); got != isErr {
					t.Errorf("IsICMPError(%v, %d) = %v, want %v", f.proto, typ, got, isErr)
				}
				want := denyDefault
				if isErr {
					want = related
				}
				for _, flow := range []Packet{
					pkt(ir.ProtoUDP, f.web, 40000, f.far, 53),
					syn(f.web, 40001, f.far, 443),
				} {
					ct := NewConntrack()
					check(t, "flow", e.Eval(ct, flow), allowBy(0))
					errPkt := icmpError(f.proto, f.rtr, f.web, typ, flow)
					got := e.Eval(ct, errPkt)
					check(t, fmt.Sprintf("about %v", flow.Proto), got, want)
					if isErr {
						checkPoints(t, "points", got, related)
					}
					// the same message about a flow that does not exist
					// meets policy whatever its type
					other := flow
					other.SPort++
					check(t, "about no flow", e.Eval(ct, icmpError(f.proto, f.rtr, f.web, typ, other)), denyDefault)
					if ct.Len() != 1 {
						t.Errorf("the message changed the flows: %v", ct.Flows())
					}
				}
			})
		}
	}
	// Only ICMP and ICMPv6 have error types.
	for _, p := range []ir.Proto{ir.ProtoTCP, ir.ProtoUDP, ir.ProtoSCTP, 0, 47} {
		for typ := range 256 {
			if IsICMPError(p, uint8(typ)) {
				t.Errorf("IsICMPError(%v, %d) = true", p, typ)
			}
		}
	}
	// ICMP types are read only in their own family: ICMP in IPv6 and
	// ICMPv6 in IPv4 are protocols without ports, never related errors,
	// whatever the type byte.
	t.Run("other family", func(t *testing.T) {
		for _, f := range fams {
			foreign := ir.ProtoICMPv6
			if f.proto == ir.ProtoICMPv6 {
				foreign = ir.ProtoICMP
			}
			for typ := range icmpErrorTypes[foreign] {
				ct := NewConntrack()
				flow := pkt(ir.ProtoUDP, f.web, 40000, f.far, 53)
				check(t, "flow", e.Eval(ct, flow), allowBy(0))
				check(t, fmt.Sprintf("%v type %d in %s's family", foreign, typ, f.name),
					e.Eval(ct, icmpError(foreign, f.rtr, f.web, typ, flow)), denyDefault)
			}
		}
	})
}
