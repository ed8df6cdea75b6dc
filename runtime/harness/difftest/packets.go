package difftest

import (
	"math/rand/v2"
	"net/netip"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/runtime/harness"
	"github.com/polc-dev/polc/runtime/packet"
)

// step is one generated packet of a sequence.
type step struct {
	spec     packet.Spec
	uplink   bool // arrives from outside: the prefilter sees it, no egress hook
	truncate int  // > 0: the frame is cut to this many bytes
	// via is the endpoint whose interface sends the packet, whatever its
	// source address ("": the source's own, or an uplink).
	via  string
	what string
}

// frame is the case of the step for the harness.
func (s step) frame() harness.Case {
	var c harness.Case
	if s.truncate == 0 {
		c = harness.CaseFromSpec(s.spec, s.uplink)
	} else {
		f := packet.Truncate(packet.Build(s.spec), s.truncate)
		c = harness.Case{Frame: f, Ref: harness.RefFromFrame(f, s.spec.Src, s.spec.Dst, s.uplink)}
	}
	c.Ref.Via = s.via
	return c
}

// pgen draws packets for one world.
type pgen struct {
	r *rand.Rand
	w *world
}

func (p *pgen) chance(f float64) bool { return p.r.Float64() < f }

// addr draws an address of family f: mostly local endpoints, else inside
// rule CIDRs, else outside.
func (p *pgen) addr(f int) netip.Addr {
	pools := [][]netip.Addr{p.w.local[f], p.w.local[f], p.w.local[f], p.w.inside[f], p.w.outside[f], p.w.prefilter[f]}
	for {
		pool := pools[p.r.IntN(len(pools))]
		if len(pool) > 0 {
			return pool[p.r.IntN(len(pool))]
		}
	}
}

func (p *pgen) port() uint16 {
	if len(p.w.ports) > 0 && p.chance(0.7) {
		return p.w.ports[p.r.IntN(len(p.w.ports))]
	}
	return uint16(1 + p.r.IntN(65535))
}

func (p *pgen) isLocal(a netip.Addr) bool {
	for _, l := range p.w.local[fam(a)] {
		if l == a {
			return true
		}
	}
	return false
}

// first draws the first packet of a flow.
func (p *pgen) first() packet.Spec {
	f := 0
	if len(p.w.local[1]) > 0 && (len(p.w.local[0]) == 0 || p.chance(0.35)) {
		f = 1
	}
	s := packet.Spec{Src: p.addr(f), Dst: p.addr(f)}
	for s.Src == s.Dst {
		s.Dst = p.addr(f)
	}
	icmp := ir.ProtoICMP
	if f == 1 {
		icmp = ir.ProtoICMPv6
	}
	switch k := p.r.IntN(20); {
	case k < 7:
		s.Proto = ir.ProtoTCP
		s.TCPFlags = ir.TCPSyn
		if p.chance(0.1) {
			s.TCPFlags = ir.TCPAck
		}
	case k < 11:
		s.Proto = ir.ProtoUDP
	case k < 13:
		s.Proto = ir.ProtoSCTP
	case k < 18:
		s.Proto = icmp
		s.ICMPType = 8
		if f == 1 {
			s.ICMPType = 128
		}
		switch {
		case p.chance(0.1):
			// any type and code: the edges of type/code encodings
			s.ICMPType, s.ICMPCode = uint8(p.r.IntN(256)), uint8(p.r.IntN(256))
		case p.chance(0.3):
			types := []uint8{0, 3, 11, 13}
			if f == 1 {
				types = []uint8{129, 1, 3, 135}
			}
			s.ICMPType = types[p.r.IntN(len(types))]
			s.ICMPCode = uint8(p.r.IntN(2))
			if p.chance(0.2) {
				s.ICMPCode = 255
			}
		}
		s.ICMPID = uint16(p.r.IntN(3)) // 0 too: testdata/harness/regress/icmp_echo_id0.pol
		s.ICMPSeq = 1
	default:
		// protocols polc does not name (IPv4 protocol 0 too, the value
		// policy keys use for "any protocol": harness.TestUnnamedProtocols)
		others := []ir.Proto{47, 50, 255}
		if f == 0 {
			others = append(others, 0)
		}
		s.Proto = others[p.r.IntN(len(others))]
	}
	// neighbour discovery passes only as sent on a link (hop limit 255)
	if s.Proto == ir.ProtoICMPv6 && s.ICMPType >= 133 && s.ICMPType <= 137 && p.chance(0.5) {
		s.TTL = 255
		// it passes unpoliced only where it cannot leave the link
		switch {
		case p.chance(0.2):
			s.Dst = netip.MustParseAddr([]string{"ff02::1", "ff02::1:ff00:10", "fe80::1", "ff05::2"}[p.r.IntN(4)])
		case p.chance(0.1):
			s.Src = netip.MustParseAddr([]string{"fe80::10", "::"}[p.r.IntN(2)])
		}
	}
	// header options the parser must walk
	switch {
	case f == 1 && p.chance(0.1):
		exts := []uint8{packet.ExtHopByHop, packet.ExtDestOpts, packet.ExtRouting}
		s.IPv6Ext = []packet.Ext{{Type: exts[p.r.IntN(len(exts))]}}
	case f == 0 && p.chance(0.05):
		s.IPv4Options = []byte{1, 1, 1} // NOPs
	}
	if s.Proto.HasPorts() {
		s.SPort = uint16(30000 + p.r.IntN(3))
		if p.chance(0.2) {
			s.SPort = p.port()
		}
		s.DPort = p.port()
		if p.chance(0.02) {
			s.DPort = 0
		}
	}
	return s
}

// reverse is the reply to s.
func reverse(s packet.Spec) packet.Spec {
	r := s
	r.Src, r.Dst = s.Dst, s.Src
	r.SPort, r.DPort = s.DPort, s.SPort
	switch {
	case s.Proto == ir.ProtoTCP:
		r.TCPFlags = ir.TCPAck
		if s.TCPFlags&ir.TCPSyn != 0 {
			r.TCPFlags = ir.TCPSyn | ir.TCPAck
		}
	case s.Proto == ir.ProtoICMP && s.ICMPType == 8:
		r.ICMPType = 0
	case s.Proto == ir.ProtoICMPv6 && s.ICMPType == 128:
		r.ICMPType = 129
	}
	return r
}

// sequence draws a few packets that share state.
func (p *pgen) sequence() []step {
	s := p.first()
	st := func(s packet.Spec, what string) step { return step{spec: s, uplink: !p.isLocal(s.Src), what: what} }
	seq := []step{st(s, "first")}
	// now and then the first packet leaves from some endpoint's interface,
	// its own or another's (spoofed): what follows shows that a spoofed
	// packet left no state
	if len(p.w.endpoints) > 0 && p.chance(0.12) {
		seq[0].via = p.w.endpoints[p.r.IntN(len(p.w.endpoints))]
		seq[0].uplink = false
		seq[0].what = "first via " + seq[0].via
	}
	switch k := p.r.IntN(10); {
	case k < 2:
		// a single packet
	case k < 6:
		r := reverse(s)
		seq = append(seq, st(r, "reply"))
		if p.chance(0.4) {
			again := s
			if s.Proto == ir.ProtoTCP {
				again.TCPFlags = ir.TCPAck
				switch k := p.r.IntN(10); {
				case k < 3:
					again.TCPFlags = ir.TCPRst
				case k < 5:
					again.TCPFlags = ir.TCPFin | ir.TCPAck
				}
			}
			seq = append(seq, st(again, "again"))
			if p.chance(0.5) {
				seq = append(seq, st(r, "reply again"))
			}
		}
	case k < 8:
		// an ICMP error about the flow, sent back to its source by the
		// destination or by a router outside; or, after the reply, an
		// error about the reply sent back to the responder
		about, aboutReply := s, false
		if p.chance(0.3) {
			about, aboutReply = reverse(s), true
			seq = append(seq, st(about, "reply"))
		}
		// The error quotes the IP header and 8 bytes of L4 (RFC 792) or,
		// like most routers, all it can.
		e := packet.Spec{Dst: about.Src, Embedded: &about}
		if p.chance(0.5) {
			e.EmbeddedLen = len(packet.IP(about)) - len(l4Bytes(about)) + 8
		}
		e.Src = about.Dst
		if p.chance(0.3) {
			e.Src = p.addr(fam(s.Src))
		}
		// every error type both sides relate, port unreachable most often
		if s.Src.Is4() {
			e.Proto, e.ICMPType, e.ICMPCode = ir.ProtoICMP, 3, 3
			if p.chance(0.5) {
				t := [][2]uint8{{11, 0}, {4, 0}, {5, 1}, {12, 0}}[p.r.IntN(4)]
				e.ICMPType, e.ICMPCode = t[0], t[1]
			}
		} else {
			e.Proto, e.ICMPType, e.ICMPCode = ir.ProtoICMPv6, 1, 4
			if p.chance(0.5) {
				t := [][2]uint8{{2, 0}, {3, 0}, {4, 0}}[p.r.IntN(3)]
				e.ICMPType, e.ICMPCode = t[0], t[1]
			}
		}
		if e.Src != e.Dst {
			if !aboutReply && p.chance(0.5) {
				seq = append(seq, st(reverse(s), "reply"))
			}
			seq = append(seq, st(e, "icmp error"))
		}
	case k < 9 && s.Proto.HasPorts():
		// a fragmented datagram: the first fragment, then a later one
		first := s
		first.ID = uint32(1 + p.r.IntN(1000))
		first.Frag = &packet.Frag{Offset: 0, More: true}
		later := first
		later.Frag = &packet.Frag{Offset: 64, More: false}
		later.Payload = []byte("fragment payload")
		seq = []step{st(later, "orphan fragment")}
		if p.chance(0.7) {
			seq = []step{st(first, "first fragment"), st(later, "later fragment")}
		}
	default:
		// a malformed packet (a length that cuts the L4 header, a bad
		// header length, a frame cut short), or a non-IP frame
		if p.chance(0.7) {
			bad := st(s, "malformed")
			switch p.r.IntN(4) {
			case 0:
				bad.spec.Mangle.IPLength = 21
				if s.Src.Is6() {
					bad.spec.Mangle.IPLength = 1
				}
			case 1:
				if s.Proto == ir.ProtoTCP {
					bad.spec.Mangle.TCPDataOffset = uint8([]int{2, 15}[p.r.IntN(2)])
				} else if s.Src.Is4() {
					bad.spec.Mangle.IHL = 4
				} else {
					bad.spec.Mangle.Version = 4
				}
			default:
				// cut inside the L4 header (BPF_PROG_TEST_RUN refuses, with
				// EINVAL, a frame shorter than its IP header, so cuts inside
				// the IP header cannot be tested this way)
				l3 := len(packet.IP(s)) - len(l4Bytes(s))
				bad.truncate = 14 + l3 + p.r.IntN(8)
			}
			if p.isLocal(s.Src) || p.isLocal(s.Dst) {
				seq = []step{bad}
			}
		} else {
			seq = []step{p.nonIP(s)}
		}
	}
	return seq
}

// nonIP draws a frame that is not plain IP: ARP, another ethertype, or s
// behind one or two VLAN tags.
func (p *pgen) nonIP(s packet.Spec) step {
	typ := []uint16{packet.EtherTypeARP, packet.EtherTypeARP, 0x88cc, 0x8847, packet.EtherTypeVLAN, packet.EtherTypeQinQ, packet.EtherTypeVLAN91}[p.r.IntN(7)]
	nip := packet.Spec{EtherType: typ}
	if packet.IsVLAN(typ) {
		// the tag (VLAN 0: a priority tag), then the IP frame's type and packet
		inner := packet.Build(s)[12:]
		if typ == packet.EtherTypeQinQ {
			inner = append([]byte{0x81, 0x00, 0, 0}, inner...)
		}
		nip.Payload = append([]byte{0, 0}, inner...)
	}
	return step{spec: nip, what: "non-ip"}
}

// l4Bytes is the L4 part of a packet (what follows its IP headers).
func l4Bytes(s packet.Spec) []byte {
	sum, err := packet.ParseIP(packet.IP(s))
	if err != nil {
		return nil
	}
	return packet.IP(s)[sum.L3Len:]
}
