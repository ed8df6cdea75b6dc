package bench

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// Addresses of a rig. Everything lives only inside the rig's namespaces.
var (
	GenAddr  = netip.MustParseAddr("10.98.0.1") // the generator's veth end
	SinkAddr = netip.MustParseAddr("10.98.0.2") // the sink (the policed endpoint)
	// FlowNet holds the sources of the traffic the rules allow: the last
	// rule of every ruleset allows exactly this prefix.
	FlowNet = netip.MustParsePrefix("10.99.0.0/20")
	// DeniedNet holds sources no rule allows (a filter drops them).
	DeniedNet = netip.MustParsePrefix("10.99.16.0/24")
	// OtherBase is the first of the N-1 host addresses of the rules the
	// traffic does not match.
	OtherBase = netip.MustParseAddr("10.100.0.0")
)

// SinkPort is the UDP port every rule allows and every packet targets.
const SinkPort = 5000

// EstablishedSport is the source port of the established flows; new
// flows use ports from 1024 up, so the two never share a tuple.
const EstablishedSport = 7

// FrameLen is the size of every frame: Ethernet, IPv4, UDP and an 18-byte
// payload, the 60 bytes of a minimum Ethernet frame without FCS.
const FrameLen = 14 + 20 + 8 + 18

// Flow is one UDP 5-tuple towards the sink.
type Flow struct {
	Src   netip.Addr
	Sport uint16
}

// nthAddr returns the i-th address of p (wrapping inside p).
func nthAddr(p netip.Prefix, i int) netip.Addr {
	a := p.Masked().Addr().As4()
	size := uint32(1) << (32 - p.Bits())
	v := binary.BigEndian.Uint32(a[:]) + uint32(i)%size
	binary.BigEndian.PutUint32(a[:], v)
	return netip.AddrFrom4(a)
}

// addAddr returns a + i.
func addAddr(a netip.Addr, i int) netip.Addr {
	b := a.As4()
	binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(b[:])+uint32(i))
	return netip.AddrFrom4(b)
}

// EstablishedFlows returns n flows from FlowNet with EstablishedSport.
func EstablishedFlows(n int) []Flow {
	out := make([]Flow, n)
	for i := range out {
		out[i] = Flow{nthAddr(FlowNet, i), EstablishedSport}
	}
	return out
}

// NewFlows returns n distinct flows from FlowNet, the seq-th such batch:
// batches with different seq share no tuple (until 2^28 flows wrap).
func NewFlows(n, seq int) []Flow {
	hosts := 1 << (32 - FlowNet.Bits())
	perBatch := (n + hosts - 1) / hosts
	out := make([]Flow, n)
	for i := range out {
		port := (seq*perBatch + i/hosts) % (65536 - 1024)
		out[i] = Flow{nthAddr(FlowNet, i), uint16(1024 + port)}
	}
	return out
}

// DeniedFlows returns n flows from DeniedNet, which no rule allows.
func DeniedFlows(n int) []Flow {
	out := make([]Flow, n)
	for i := range out {
		out[i] = Flow{nthAddr(DeniedNet, i), uint16(1024 + i/256)}
	}
	return out
}

// Frames holds prebuilt frames in one buffer.
type Frames struct {
	buf []byte
	n   int
}

// Len is the number of frames.
func (f *Frames) Len() int { return f.n }

// Frame returns the i-th frame.
func (f *Frames) Frame(i int) []byte { return f.buf[i*FrameLen : (i+1)*FrameLen] }

// BuildFrames builds count frames from src to dst MAC, cycling over flows.
func BuildFrames(src, dst net.HardwareAddr, flows []Flow, count int) *Frames {
	f := &Frames{buf: make([]byte, count*FrameLen), n: count}
	for i := range count {
		putFrame(f.Frame(i), src, dst, flows[i%len(flows)])
	}
	return f
}

func putFrame(b []byte, srcMAC, dstMAC net.HardwareAddr, fl Flow) {
	copy(b[0:6], dstMAC)
	copy(b[6:12], srcMAC)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 20+8+18)
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	ip[8] = 64
	ip[9] = 17
	s, d := fl.Src.As4(), SinkAddr.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
	udp := b[34:42]
	binary.BigEndian.PutUint16(udp[0:], fl.Sport)
	binary.BigEndian.PutUint16(udp[2:], SinkPort)
	binary.BigEndian.PutUint16(udp[4:], 8+18)
	// UDP checksum 0: none, which IPv4 allows; the sink does not verify.
	copy(b[42:], "polc-bench-payload")
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
