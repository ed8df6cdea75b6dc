package compiler

import (
	"net/netip"
	"strings"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// Test packets: check reports what resolveSteps finds wrong, normalize
// keeps the packets it builds. The rules that fill in what a test leaves
// out:
//
//   - Address family: an address literal decides it (two literals must
//     agree); else icmp means IPv4 and icmpv6 IPv6; else IPv4 when both
//     endpoints have an IPv4 address, IPv6 when both have an IPv6 one.
//     icmp with IPv6 addresses (or icmpv6 with IPv4) is an error.
//   - An endpoint name stands for its first address of that family in
//     normal form (the lowest one); for a prefix, its first address.
//   - The source port defaults to DefaultSourcePort; the destination port
//     of tcp, udp and sctp must be written.
//   - icmp/icmpv6 without type is an echo request (type 8 / 128, code 0).
//   - TCP flags default to SYN for the first packet of a flow in the test
//     and ACK for every later packet of it (replies included); written
//     flags replace the default.
//   - reply is the previous packet with addresses and ports swapped; an
//     ICMP echo request (8, or 128 for ICMPv6) becomes an echo reply (0 or
//     129). Other ICMP messages have no reply.
//   - via NAME (ir.Packet.Via) sends the packet from that endpoint's
//     interface, whatever its source address; without it the packet
//     leaves from the interface of the endpoint that owns the source, if
//     any. A reply has no via: the previous packet's destination sends it.

// DefaultSourcePort is the source port of a test packet that names none:
// an ephemeral port, the same on every packet so replies line up.
const DefaultSourcePort = 40000

// ICMP echo types.
const (
	icmpEchoRequest   = 8
	icmpEchoReply     = 0
	icmpv6EchoRequest = 128
	icmpv6EchoReply   = 129
)

var tcpFlagByName = map[string]uint8{
	"fin": ir.TCPFin, "syn": ir.TCPSyn, "rst": ir.TCPRst,
	"psh": ir.TCPPsh, "ack": ir.TCPAck, "urg": ir.TCPUrg,
}

type flowKey struct {
	proto      ir.Proto
	src, dst   netip.Addr
	sport, dpt uint16
}

// resolveSteps builds the concrete packets of a test, reporting into ds
// everything that prevents it. A step that cannot be built is left zero.
func resolveSteps(t *dsl.Test, s *symbols, addrs map[string][]netip.Prefix, ds *dsl.Diagnostics) []ir.Step {
	steps := make([]ir.Step, len(t.Steps))
	if len(t.Steps) == 0 {
		ds.Errorf(t.Name.Pos, "test %q has no steps", t.Name.Text)
		return steps
	}
	var prev ir.Packet
	prevOK := false
	flows := map[flowKey]bool{}
	for i, st := range t.Steps {
		step := ir.Step{Pos: st.Pos, Reply: st.Reply, ExpectPos: st.ExpectPos}
		if st.Expect != nil {
			v := *st.Expect // the IR shares no memory with the AST
			step.Expect = &v
		}
		var pkt ir.Packet
		ok := false
		switch {
		case st.Reply && i == 0:
			ds.Errorf(st.Pos, `"reply" cannot be the first step: there is no packet to reply to`)
		case st.Reply:
			if prevOK {
				pkt, ok = reversePacket(prev, st.Pos, ds)
			}
		case st.Packet == nil:
			ds.Errorf(st.Pos, "step has no packet")
		default:
			pkt, ok = resolvePacket(st.Packet, s, addrs, ds)
		}
		if st.Via != nil {
			switch {
			case st.Reply:
				ds.Errorf(st.Via.Pos, `"via" does not apply to a reply: a reply is sent by the previous packet's destination; write the packet out to send it via another endpoint`)
				ok = false
			case !s.knownEndpoint(st.Via, ds):
				ok = false
			case s.endpointByName[st.Via.Name].Remote.IsValid():
				ds.Errorf(st.Via.Pos, `"via" names %q, a remote endpoint: it has no interface on this node`, st.Via.Name)
				ok = false
			case ok:
				pkt.Via = st.Via.Name
			}
		}
		if ok && len(st.Flags) > 0 {
			if pkt.Proto != ir.ProtoTCP {
				ds.Errorf(st.Flags[0].Pos, "TCP flags on a %s packet", pkt.Proto)
				ok = false
			} else {
				pkt.TCPFlags = 0
				for _, f := range st.Flags {
					bit, known := tcpFlagByName[strings.ToLower(f.Text)]
					if !known {
						ds.Errorf(f.Pos, "unknown TCP flag %q; want syn, ack, fin, rst, psh or urg", f.Text)
						ok = false
					}
					pkt.TCPFlags |= bit
				}
			}
		} else if ok && pkt.Proto == ir.ProtoTCP {
			key := flowKey{pkt.Proto, pkt.Src, pkt.Dst, pkt.SPort, pkt.DPort}
			rev := flowKey{pkt.Proto, pkt.Dst, pkt.Src, pkt.DPort, pkt.SPort}
			if st.Reply || flows[key] || flows[rev] {
				pkt.TCPFlags = ir.TCPAck
			} else {
				pkt.TCPFlags = ir.TCPSyn
			}
		}
		if ok {
			flows[flowKey{pkt.Proto, pkt.Src, pkt.Dst, pkt.SPort, pkt.DPort}] = true
		}
		if i == len(t.Steps)-1 && st.Expect == nil {
			ds.Errorf(st.Pos, `the last step of a test needs "expect allow" or "expect deny"`)
		}
		step.Packet = pkt
		steps[i] = step
		prev, prevOK = pkt, ok
	}
	return steps
}

// knownEndpoint reports whether a test names a declared endpoint, and
// reports it at its position (with the closest name, if one is close)
// when it does not.
func (s *symbols) knownEndpoint(name *dsl.Ident, ds *dsl.Diagnostics) bool {
	if _, found := s.endpointByName[name.Name]; found {
		return true
	}
	names := make([]string, len(s.endpoints))
	for i, e := range s.endpoints {
		names[i] = e.Name.Name
	}
	ds.Errorf(name.Pos, "unknown endpoint %q%s", name.Name, dsl.DidYouMean(name.Name, names))
	return false
}

// reversePacket is the reply to p: it leaves from the interface of p's
// destination, so it has no Via.
func reversePacket(p ir.Packet, pos dsl.Pos, ds *dsl.Diagnostics) (ir.Packet, bool) {
	r := p
	r.Via = ""
	r.Src, r.Dst = p.Dst, p.Src
	r.SPort, r.DPort = p.DPort, p.SPort
	switch {
	case p.Proto == ir.ProtoICMP && p.ICMPType == icmpEchoRequest:
		r.ICMPType = icmpEchoReply
	case p.Proto == ir.ProtoICMPv6 && p.ICMPType == icmpv6EchoRequest:
		r.ICMPType = icmpv6EchoReply
	case p.Proto.IsICMP():
		ds.Errorf(pos, "cannot reply to %s type %d: only echo requests have replies; write the packet instead", p.Proto, p.ICMPType)
		return ir.Packet{}, false
	}
	return r, true
}

// side is one end of a test packet while it is being resolved.
type side struct {
	hp   dsl.HostPort
	lit  netip.Addr // an address literal
	name string     // an endpoint name
}

func resolvePacket(p *dsl.Packet, s *symbols, addrs map[string][]netip.Prefix, ds *dsl.Diagnostics) (ir.Packet, bool) {
	ok := true
	proto, known := protoByName[strings.ToLower(p.Proto.Text)]
	if !known || proto == ir.ProtoAny {
		ds.Errorf(p.Proto.Pos, "a test packet needs a protocol: tcp, udp, sctp, icmp or icmpv6, not %q", p.Proto.Text)
		return ir.Packet{}, false
	}
	pkt := ir.Packet{Proto: proto}

	// Hosts.
	sides := []*side{{hp: p.Src}, {hp: p.Dst}}
	for _, sd := range sides {
		if sd.hp.IsName {
			if !s.knownEndpoint(&dsl.Ident{Pos: sd.hp.Host.Pos, Name: sd.hp.Host.Text}, ds) {
				ok = false
				continue
			}
			sd.name = sd.hp.Host.Text
			continue
		}
		a, good := parseAddr(sd.hp.Host, ds)
		if !good {
			ok = false
			continue
		}
		sd.lit = a
	}

	// Ports.
	pkt.SPort = DefaultSourcePort
	for i, sd := range sides {
		port := sd.hp.Port
		if !proto.HasPorts() {
			if port != nil {
				ds.Errorf(port.Pos, "%s packets have no ports", proto)
				ok = false
			}
			continue
		}
		if port == nil {
			if i == 1 {
				ds.Errorf(sd.hp.Pos, "a %s packet needs a destination port, e.g. %s:80", proto, sd.hp.Host.Text)
				ok = false
			}
			continue
		}
		v, good := checkPort(port, 1, ds)
		ok = ok && good
		if i == 0 {
			pkt.SPort = v
		} else {
			pkt.DPort = v
		}
	}
	if !proto.HasPorts() {
		pkt.SPort = 0
	}

	// ICMP type and code.
	if proto.IsICMP() {
		pkt.ICMPType = icmpEchoRequest
		if proto == ir.ProtoICMPv6 {
			pkt.ICMPType = icmpv6EchoRequest
		}
		if p.ICMPType != nil {
			v, good := checkByte(p.ICMPType, "type", ds)
			ok = ok && good
			pkt.ICMPType = v
		}
		if p.ICMPCode != nil {
			v, good := checkByte(p.ICMPCode, "code", ds)
			ok = ok && good
			pkt.ICMPCode = v
			if p.ICMPType == nil {
				ds.Errorf(p.ICMPCode.Pos, `an ICMP code needs a type: write "%s ... type N code %d"`, proto, p.ICMPCode.Value)
				ok = false
			}
		}
	} else {
		for _, n := range []*dsl.Int{p.ICMPType, p.ICMPCode} {
			if n != nil {
				ds.Errorf(n.Pos, "ICMP type and code apply to icmp and icmpv6 packets, not %s", proto)
				ok = false
				break
			}
		}
	}
	if !ok {
		return ir.Packet{}, false
	}

	// Address family, then addresses.
	src, dst := sides[0], sides[1]
	var v6 bool
	switch {
	case src.lit.IsValid() && dst.lit.IsValid() && src.lit.Is4() != dst.lit.Is4():
		ds.Errorf(dst.hp.Host.Pos, "mixed address families: %s is %s, %s is %s", src.lit, family(src.lit), dst.lit, family(dst.lit))
		return ir.Packet{}, false
	case src.lit.IsValid():
		v6 = !src.lit.Is4()
	case dst.lit.IsValid():
		v6 = !dst.lit.Is4()
	case proto == ir.ProtoICMP:
		v6 = false
	case proto == ir.ProtoICMPv6:
		v6 = true
	default:
		has := func(name string, want6 bool) bool { _, ok := firstAddr(addrs[name], want6); return ok }
		switch {
		case has(src.name, false) && has(dst.name, false):
			v6 = false
		case has(src.name, true) && has(dst.name, true):
			v6 = true
		default:
			ds.Errorf(dst.hp.Host.Pos, "endpoints %q and %q have no address family in common", src.name, dst.name)
			return ir.Packet{}, false
		}
	}
	switch {
	case proto == ir.ProtoICMP && v6:
		ds.Errorf(p.Proto.Pos, "icmp is IPv4 only; use icmpv6 with IPv6 addresses")
		return ir.Packet{}, false
	case proto == ir.ProtoICMPv6 && !v6:
		ds.Errorf(p.Proto.Pos, "icmpv6 is IPv6 only; use icmp with IPv4 addresses")
		return ir.Packet{}, false
	}
	for i, sd := range sides {
		a := sd.lit
		if sd.name != "" {
			var found bool
			a, found = firstAddr(addrs[sd.name], v6)
			if !found {
				fam := "IPv4"
				if v6 {
					fam = "IPv6"
				}
				ds.Errorf(sd.hp.Host.Pos, "endpoint %q has no %s address", sd.name, fam)
				ok = false
				continue
			}
		}
		if i == 0 {
			pkt.Src = a
		} else {
			pkt.Dst = a
		}
	}
	return pkt, ok
}

// firstAddr returns the first address of the wanted family among prefixes
// in normal form.
func firstAddr(ps []netip.Prefix, v6 bool) (netip.Addr, bool) {
	for _, p := range ps {
		if p.Addr().Is6() == v6 {
			return p.Addr(), true
		}
	}
	return netip.Addr{}, false
}
