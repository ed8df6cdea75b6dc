package eval

import (
	"net/netip"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// Packet describes a packet as the evaluator sees it: the fields the
// datapath parses, plus the odd cases (non-IP, malformed, fragments). The
// address family is implied by Src and Dst.
type Packet struct {
	// NonIP marks a frame that is neither IPv4 nor IPv6; of the other
	// fields only EtherType, VLAN, FromUplink and Via are read.
	NonIP bool
	// EtherType is the frame's Ethernet type, read only with NonIP: ARP
	// (0x0806) passes, every other type is dropped (ir.RuleEtherType).
	EtherType uint16
	// VLAN marks a frame that carries an 802.1Q or 802.1ad tag, whatever
	// it holds (IP or not): it is dropped (ir.RuleEtherType).
	VLAN bool
	// Malformed marks a truncated or otherwise bad IP or L4 header.
	Malformed bool
	// FromUplink says the packet arrived on an uplink (where the XDP
	// prefilter runs) rather than from a local endpoint: the prefilter
	// applies, and the source is not observed at an egress point. It is
	// ignored when Via is set.
	FromUplink bool
	// Via names the endpoint whose interface sent the packet: its egress
	// is the packet's first observation point, whoever owns Src, and the
	// packet is spoofed there unless that endpoint owns Src (see Eval).
	// "" means the interface of the endpoint that owns Src, or an uplink
	// when no endpoint owns it (see FromUplink). A name that is no
	// endpoint of the program is an interface bound to none
	// (ir.RuleUnbound).
	Via string

	// Proto is the L4 protocol. ICMP (ir.ProtoICMP) counts as ICMP only in
	// IPv4 and ICMPv6 only in IPv6; carried in the other family it is a
	// protocol number without ports, like any protocol polc does not name:
	// the ICMP fields are ignored, the flow is tracked by addresses, and
	// only rules on the protocol without a type or code (or on any
	// protocol) match it.
	Proto        ir.Proto
	Src, Dst     netip.Addr
	SPort, DPort uint16 // TCP, UDP, SCTP
	TCPFlags     uint8  // ir.TCP* bits
	ICMPType     uint8  // ICMP, ICMPv6
	ICMPCode     uint8
	ICMPID       uint16 // the identifier of echo requests and replies
	// HopLimit is the IPv6 hop limit (IPv4 TTL). Only neighbour discovery
	// reads it: a message of types 133–137 is one only with hop limit 255
	// (RFC 4861), which no router forwards.
	HopLimit uint8

	// Embedded is the original packet an ICMP error (see IsICMPError:
	// destination unreachable, source quench, redirect, time exceeded,
	// packet too big, parameter problem) carries; nil for other packets.
	Embedded *Embedded
	// Frag is set for a fragment of a larger datagram; nil otherwise.
	Frag *Fragment
}

// Embedded is the header of the packet an ICMP error reports on, as
// written inside the error (so its source is the error's destination).
// Proto and the ports are those after any IPv6 extension headers of the
// quoted packet, which the datapath walks as well.
type Embedded struct {
	Proto        ir.Proto
	Src, Dst     netip.Addr
	SPort, DPort uint16
	ICMPType     uint8 // when the original was itself ICMP (an echo request)
	ICMPID       uint16
}

// Fragment describes an IPv4 or IPv6 fragment. A packet with Offset 0 and
// More false (an IPv6 "atomic" fragment) is treated as unfragmented.
type Fragment struct {
	ID     uint32 // IPv4 identification or IPv6 fragment identification
	Offset uint16 // in bytes; 0 for the first fragment
	More   bool   // more fragments follow
}

// FromIR converts a test step's packet, Via included. The ICMP id is
// zero; the hop limit is DefaultHopLimit's (runtime/packet.SpecFromIR
// builds the same frame). FromUplink is left false: the caller knows where
// the packet comes from.
func FromIR(p ir.Packet) Packet {
	return Packet{
		Via:      p.Via,
		Proto:    p.Proto,
		Src:      p.Src,
		Dst:      p.Dst,
		SPort:    p.SPort,
		DPort:    p.DPort,
		TCPFlags: p.TCPFlags,
		ICMPType: p.ICMPType,
		ICMPCode: p.ICMPCode,
		HopLimit: DefaultHopLimit(p.Proto, p.ICMPType),
	}
}

// DefaultHopLimit is the hop limit (TTL) a test step's packet is sent with:
// 255 for ICMPv6 types 133–137, as neighbour discovery is sent (so that a
// test about neighbour discovery is about valid messages), 64 otherwise.
func DefaultHopLimit(proto ir.Proto, icmpType uint8) uint8 {
	if proto == ir.ProtoICMPv6 && icmpType >= icmp6RouterSolicit && icmpType <= icmp6Redirect {
		return 255
	}
	return 64
}

// NativeICMP reports whether proto is the ICMP of addr's family: ICMP in
// IPv4, ICMPv6 in IPv6. Only then are its type, code and identifier read.
func NativeICMP(proto ir.Proto, addr netip.Addr) bool {
	return (proto == ir.ProtoICMP && addr.Is4()) || (proto == ir.ProtoICMPv6 && addr.Is6())
}

// icmp reports whether the packet is ICMP of its family (see Proto).
func (p *Packet) icmp() bool { return NativeICMP(p.Proto, p.Src) }

func (p *Packet) firstFragment() bool {
	return p.Frag != nil && p.Frag.Offset == 0 && p.Frag.More
}

func (p *Packet) laterFragment() bool { return p.Frag != nil && p.Frag.Offset > 0 }

// neighbourDiscovery reports whether the packet is an ICMPv6 neighbour
// discovery message (router solicitation or advertisement, neighbour
// solicitation or advertisement, redirect) that is not fragmented and has
// hop limit 255: these pass like ARP does for IPv4. Receivers drop
// fragmented ones (RFC 6980) and ones with another hop limit (RFC 4861:
// they were routed, so they come from off the link), so those meet policy
// like any ICMPv6 message.
func (p *Packet) neighbourDiscovery() bool {
	return p.Proto == ir.ProtoICMPv6 && p.Src.Is6() && p.HopLimit == 255 &&
		(p.Frag == nil || (p.Frag.Offset == 0 && !p.Frag.More)) &&
		p.ICMPType >= icmp6RouterSolicit && p.ICMPType <= icmp6Redirect
}

// ndStaysOnLink reports whether neighbour discovery an endpoint sends
// cannot leave the link, so that it may pass its egress unpoliced: the
// kernel never forwards a packet with a link-local, multicast or loopback
// source or destination. Any other destination could be forwarded (the
// datapath asks the FIB, which passes the host's own addresses too; the
// evaluator's host, like the harness's network namespace, has none but
// loopback and routes every other address out), so such ND meets policy
// like any ICMPv6: otherwise it would be a channel past egress policy.
func (p *Packet) ndStaysOnLink() bool {
	return unroutable(p.Src) || unroutable(p.Dst)
}

func unroutable(a netip.Addr) bool {
	return a.Is6() && (a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsLoopback())
}

// ndExempt reports whether neighbour discovery passes at a point of
// direction dir unpoliced: always into an endpoint (only the host itself
// can send it there with hop limit 255), out of one when it stays on the
// link.
func (p *Packet) ndExempt(dir dsl.Direction) bool {
	return p.neighbourDiscovery() && (dir == dsl.Ingress || p.ndStaysOnLink())
}

// wellFormed reports whether the addresses can be read: both valid and of
// the same family.
func (p *Packet) wellFormed() bool {
	return p.Src.IsValid() && p.Dst.IsValid() && p.Src.Is4() == p.Dst.Is4()
}

// etherTypeARP is the Ethernet type of ARP, the only non-IP frame that
// passes.
const etherTypeARP uint16 = 0x0806

// badEtherType reports whether the frame is dropped for what it carries:
// a VLAN tag, or a payload that is neither IP nor ARP.
func (p *Packet) badEtherType() bool {
	return p.VLAN || (p.NonIP && p.EtherType != etherTypeARP)
}

// linkLocalOrUnspecified reports whether a is in fe80::/10 or is ::, the
// sources neighbour discovery may use before (or instead of) an
// endpoint's own addresses.
func linkLocalOrUnspecified(a netip.Addr) bool {
	return linkLocal6.Contains(a) || a == netip.IPv6Unspecified()
}

var linkLocal6 = netip.MustParsePrefix("fe80::/10")

// ICMP message types the evaluator distinguishes.
const (
	icmp4EchoReply    = 0
	icmp4DestUnreach  = 3
	icmp4SourceQuench = 4
	icmp4Redirect     = 5
	icmp4EchoRequest  = 8
	icmp4TimeExceeded = 11
	icmp4ParamProblem = 12

	icmp6DestUnreach   = 1 // 1–4: also packet too big (2), time exceeded (3)
	icmp6ParamProblem  = 4
	icmp6EchoRequest   = 128
	icmp6EchoReply     = 129
	icmp6RouterSolicit = 133 // 133–137: neighbour discovery (RFC 4861)
	icmp6Redirect      = 137
)

// IsICMPError reports whether an ICMP (proto ir.ProtoICMP) or ICMPv6
// message type is an error that carries an original packet, and so may be
// related to a flow. These are the types Linux conntrack treats as related
// (and bpf/parse.h's polc_is_icmp_error): for ICMP destination
// unreachable, source quench, redirect, time exceeded and parameter
// problem; for ICMPv6 destination unreachable, packet too big, time
// exceeded and parameter problem. Every other type (echo, timestamp,
// router advertisement, ICMPv6 informational 128–255, ...) is not.
func IsICMPError(proto ir.Proto, typ uint8) bool {
	switch proto {
	case ir.ProtoICMP:
		switch typ {
		case icmp4DestUnreach, icmp4SourceQuench, icmp4Redirect, icmp4TimeExceeded, icmp4ParamProblem:
			return true
		}
		return false
	case ir.ProtoICMPv6:
		return typ >= icmp6DestUnreach && typ <= icmp6ParamProblem
	}
	return false
}

// icmpRequests maps each ICMP request type that creates a flow to the type
// of its reply: only echo, as in the datapath.
var icmpRequests = map[ir.Proto]map[uint8]uint8{
	ir.ProtoICMP:   {icmp4EchoRequest: icmp4EchoReply},
	ir.ProtoICMPv6: {icmp6EchoRequest: icmp6EchoReply},
}

// icmpRequestOf returns the request type whose reply typ is.
func icmpRequestOf(proto ir.Proto, typ uint8) (uint8, bool) {
	for req, rep := range icmpRequests[proto] {
		if rep == typ {
			return req, true
		}
	}
	return 0, false
}

// ICMPReplyType returns the type of the reply to a request that creates a
// flow (echo request 8 → echo reply 0; ICMPv6 128 → 129), and false for
// every other type.
func ICMPReplyType(proto ir.Proto, typ uint8) (uint8, bool) {
	rep, ok := icmpRequests[proto][typ]
	return rep, ok
}
