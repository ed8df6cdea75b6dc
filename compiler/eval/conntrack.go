package eval

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// Conntrack is the connection state the caller keeps across the packets of
// a sequence, like the datapath's conntrack map. Entries never expire on
// their own (sequences are short); TCP RST and FIN remove them as described
// in docs/testing.md. The zero value is ready to use; it is not safe for
// concurrent use.
type Conntrack struct {
	flows map[flowKey]*flowState
	frags map[fragKey]*fragState
}

// NewConntrack returns an empty connection table.
func NewConntrack() *Conntrack { return &Conntrack{} }

// flowKey is a flow in its original orientation (as its first packet
// travelled). For ICMP echo the identifier is the source "port" and the
// request type the destination "port"; protocols without ports have 0.
type flowKey struct {
	proto        ir.Proto
	src, dst     netip.Addr
	sport, dport uint16
}

type flowState struct {
	gen uint64
	// finOrig and finReply record a FIN seen from the flow's originator and
	// from its responder.
	finOrig, finReply bool
}

// fragKey identifies the fragments of one datagram.
type fragKey struct {
	proto    ir.Proto
	src, dst netip.Addr
	id       uint32
}

// fragState remembers the decisions of a first fragment.
type fragState struct {
	gen    uint64
	points []fragPoint
}

type fragPoint struct {
	subject int
	dir     dsl.Direction
	verdict dsl.Verdict
	rule    ir.RuleID
}

// Flow is one tracked flow, for inspection.
type Flow struct {
	Proto        ir.Proto
	Src, Dst     netip.Addr // as the flow's first packet travelled
	SPort, DPort uint16     // for ICMP: the identifier and the request type
	Generation   uint64
	FinOrig      bool // the originator has sent a FIN
	FinReply     bool // the responder has sent a FIN
}

// Flows lists the tracked flows in a stable order.
func (c *Conntrack) Flows() []Flow {
	var fs []Flow
	for k, s := range c.flows {
		fs = append(fs, Flow{k.proto, k.src, k.dst, k.sport, k.dport, s.gen, s.finOrig, s.finReply})
	}
	slices.SortFunc(fs, func(a, b Flow) int {
		return cmp.Or(cmp.Compare(a.Proto, b.Proto), a.Src.Compare(b.Src), a.Dst.Compare(b.Dst),
			cmp.Compare(a.SPort, b.SPort), cmp.Compare(a.DPort, b.DPort))
	})
	return fs
}

// Len returns the number of tracked flows.
func (c *Conntrack) Len() int { return len(c.flows) }

// originalKey returns the key the packet would have as the first packet of
// a new flow, and whether such a packet creates a flow at all: every
// protocol does (those without ports by addresses alone), except ICMP and
// ICMPv6 in their own family, where only echo requests do.
func originalKey(p *Packet) (flowKey, bool) {
	if p.icmp() {
		if _, ok := ICMPReplyType(p.Proto, p.ICMPType); ok {
			return flowKey{p.Proto, p.Src, p.Dst, p.ICMPID, uint16(p.ICMPType)}, true
		}
		return flowKey{}, false
	}
	if !p.Proto.HasPorts() {
		return flowKey{p.Proto, p.Src, p.Dst, 0, 0}, true
	}
	return flowKey{p.Proto, p.Src, p.Dst, p.SPort, p.DPort}, true
}

// lookup finds the flow the packet belongs to, in either orientation.
// reply is true when the packet travels against the flow's orientation.
// An ICMP echo request only matches its flow's orientation and an echo
// reply only the reverse one, whatever the identifier (0 included).
func (c *Conntrack) lookup(p *Packet) (k flowKey, s *flowState, reply bool) {
	if c == nil || c.flows == nil {
		return flowKey{}, nil, false
	}
	if p.icmp() {
		if k, ok := originalKey(p); ok {
			if s := c.flows[k]; s != nil {
				return k, s, false
			}
		} else if req, ok := icmpRequestOf(p.Proto, p.ICMPType); ok {
			k = flowKey{p.Proto, p.Dst, p.Src, p.ICMPID, uint16(req)}
			if s := c.flows[k]; s != nil {
				return k, s, true
			}
		}
		return flowKey{}, nil, false
	}
	k, _ = originalKey(p)
	if s := c.flows[k]; s != nil {
		return k, s, false
	}
	k = flowKey{k.proto, k.dst, k.src, k.dport, k.sport}
	if s := c.flows[k]; s != nil {
		return k, s, true
	}
	return flowKey{}, nil, false
}

// originalPacket rebuilds the first packet of a flow from its key, as far
// as policy needs it.
func (k flowKey) originalPacket() Packet {
	p := Packet{Proto: k.proto, Src: k.src, Dst: k.dst}
	if p.icmp() {
		p.ICMPID, p.ICMPType = k.sport, uint8(k.dport)
	} else {
		p.SPort, p.DPort = k.sport, k.dport
	}
	return p
}

// passed updates the table after a packet of a tracked flow passed: the
// generation is refreshed, an RST removes the flow, and a FIN marks its
// sender's side as closing. A closing flow stays (the datapath lets it
// expire after a short timeout, which the evaluator does not model).
func (c *Conntrack) passed(k flowKey, s *flowState, reply bool, p *Packet, gen uint64) {
	s.gen = gen
	if p.Proto != ir.ProtoTCP {
		return
	}
	if p.TCPFlags&ir.TCPRst != 0 {
		delete(c.flows, k)
		return
	}
	if p.TCPFlags&ir.TCPFin != 0 {
		if reply {
			s.finReply = true
		} else {
			s.finOrig = true
		}
	}
}

// forget removes a flow that policy no longer allows.
func (c *Conntrack) forget(k flowKey) { delete(c.flows, k) }

// create starts tracking a new flow after its first packet passed. A TCP
// RST starts nothing.
func (c *Conntrack) create(p *Packet, gen uint64) {
	k, ok := originalKey(p)
	if !ok || (p.Proto == ir.ProtoTCP && p.TCPFlags&ir.TCPRst != 0) {
		return
	}
	if c.flows == nil {
		c.flows = make(map[flowKey]*flowState)
	}
	c.flows[k] = &flowState{gen: gen, finOrig: p.Proto == ir.ProtoTCP && p.TCPFlags&ir.TCPFin != 0}
}

// related reports whether p is an ICMP error about a flow of generation
// gen: the packet it embeds belongs to the flow (as one of its packets or
// one of its replies), is of the error's family, and was sent by the
// error's destination (errors travel back to the sender).
func (c *Conntrack) related(p *Packet, gen uint64) bool {
	if p.Embedded == nil || !p.icmp() || !IsICMPError(p.Proto, p.ICMPType) {
		return false
	}
	em := p.Embedded
	if !em.Src.IsValid() || !em.Dst.IsValid() || em.Src.Is4() != p.Src.Is4() || em.Dst.Is4() != p.Src.Is4() || em.Src != p.Dst {
		return false
	}
	inner := Packet{Proto: em.Proto, Src: em.Src, Dst: em.Dst, SPort: em.SPort, DPort: em.DPort,
		ICMPType: em.ICMPType, ICMPID: em.ICMPID}
	_, s, _ := c.lookup(&inner)
	return s != nil && s.gen == gen
}

func fragKeyOf(p *Packet) fragKey {
	return fragKey{p.Proto, p.Src, p.Dst, p.Frag.ID}
}

// fragment returns the remembered first fragment of p's datagram.
func (c *Conntrack) fragment(p *Packet, gen uint64) *fragState {
	if c == nil || c.frags == nil {
		return nil
	}
	if f := c.frags[fragKeyOf(p)]; f != nil && f.gen == gen {
		return f
	}
	return nil
}

func (c *Conntrack) rememberFragment(p *Packet, gen uint64, points []fragPoint) {
	if c.frags == nil {
		c.frags = make(map[fragKey]*fragState)
	}
	c.frags[fragKeyOf(p)] = &fragState{gen: gen, points: points}
}
