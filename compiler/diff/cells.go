package diff

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/polc-dev/polc/compiler/eval"
	"github.com/polc-dev/polc/compiler/ir"
)

// cell is a protocol and an interval of what rules test of it: the
// destination port (TCP, UDP, SCTP), the ICMP type<<8|code (ICMP of the
// address family), or nothing (0..65535: every packet alike). Over one cell every rule of the
// subject either matches every packet or none.
type cell struct {
	p      ir.Proto // the protocol, or with other its representative
	other  bool     // every protocol outside except
	except []ir.Proto
	lo, hi uint16
}

func (c cell) proto() Proto {
	if c.other {
		return Proto{Other: true, Except: c.except}
	}
	return Proto{Proto: c.p}
}

func (c cell) sameProto(d cell) bool { return c.p == d.p && c.other == d.other }

func (c cell) key() string {
	if c.other {
		return fmt.Sprintf("other%v", c.except)
	}
	return fmt.Sprintf("%d %d-%d", c.p, c.lo, c.hi)
}

// packet is the cell's representative, as seen with remote as the other
// side (its family decides whether ICMP is native).
func (c cell) packet(remote netip.Addr) eval.Packet {
	pkt := eval.Packet{Proto: c.p, Src: remote, Dst: remote}
	switch {
	case c.p.HasPorts():
		pkt.DPort = c.lo
	case eval.NativeICMP(c.p, remote):
		pkt.ICMPType, pkt.ICMPCode = uint8(c.lo>>8), uint8(c.lo)
	}
	return pkt
}

// cellsFor splits protocols and ports by the L4 terms of a subject's
// rules (in both programs), for remotes of one address family: each
// protocol a term names, in intervals at every term's bounds, then the
// other protocols as one cell.
func cellsFor(matches []ir.PortMatch, v6 bool) []cell {
	bounds := map[ir.Proto][]uint32{}
	for _, m := range matches {
		if m.Proto == ir.ProtoAny {
			continue
		}
		b := bounds[m.Proto]
		switch {
		case m.Proto.HasPorts():
			b = append(b, uint32(m.Lo), uint32(m.Hi)+1)
		case native(m.Proto, v6) && m.ICMPType >= 0:
			lo, hi := uint32(m.ICMPType)<<8, uint32(m.ICMPType)<<8|0xff
			if m.ICMPCode >= 0 {
				lo, hi = lo|uint32(m.ICMPCode), lo|uint32(m.ICMPCode)
			}
			b = append(b, lo, hi+1)
		}
		bounds[m.Proto] = b
	}
	protos := make([]ir.Proto, 0, len(bounds))
	for p := range bounds {
		protos = append(protos, p)
	}
	slices.Sort(protos)
	var cells []cell
	for _, p := range protos {
		if !p.HasPorts() && !native(p, v6) {
			// no ports, or ICMP of the other family: one cell, every
			// "port" (so that it merges with the other family's whole
			// range)
			cells = append(cells, cell{p: p, hi: 0xffff})
			continue
		}
		b := append(bounds[p], 0, 1<<16)
		slices.Sort(b)
		b = slices.Compact(b)
		for i := 0; i+1 < len(b); i++ {
			cells = append(cells, cell{p: p, lo: uint16(b[i]), hi: uint16(b[i+1] - 1)})
		}
	}
	// the other protocols: a number no term names stands for them all
	rep := ir.Proto(255)
	for slices.Contains(protos, rep) {
		rep--
	}
	return append(cells, cell{p: rep, other: true, except: protos})
}

// native reports whether p is ICMP of the family (types and codes).
func native(p ir.Proto, v6 bool) bool {
	return (p == ir.ProtoICMP && !v6) || (p == ir.ProtoICMPv6 && v6)
}
