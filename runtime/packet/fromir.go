package packet

import "github.com/polc-dev/polc/compiler/ir"

// SpecFromIR describes a test step's packet: ICMP echo and informational
// messages get identifier 0 (as eval.FromIR assumes) and sequence 1, TCP
// gets sequence 1000 (and acknowledgement 1 when ACK is set). ICMPv6
// neighbour discovery (types 133–137) gets hop limit 255, as neighbours
// send it, everything else Build's default 64 (eval.DefaultHopLimit).
func SpecFromIR(p ir.Packet) Spec {
	s := Spec{
		Proto:    p.Proto,
		Src:      p.Src,
		Dst:      p.Dst,
		SPort:    p.SPort,
		DPort:    p.DPort,
		TCPFlags: p.TCPFlags,
		ICMPType: p.ICMPType,
		ICMPCode: p.ICMPCode,
	}
	switch {
	case p.Proto == ir.ProtoTCP:
		s.Seq = 1000
		if p.TCPFlags&ir.TCPAck != 0 {
			s.Ack = 1
		}
	case p.Proto.IsICMP() && icmpHasID(p.Proto, p.ICMPType):
		s.ICMPSeq = 1
	case p.Proto == ir.ProtoICMPv6 && p.ICMPType >= 133 && p.ICMPType <= 137:
		s.TTL = 255
	}
	return s
}

// FromIR builds the frame of a test step's packet.
func FromIR(p ir.Packet) []byte { return Build(SpecFromIR(p)) }
