package packet_test

import (
	"fmt"
	"net/netip"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/runtime/packet"
)

// An ICMP "port unreachable" about a UDP packet, parsed back.
func Example() {
	a, b := netip.MustParseAddr("10.0.1.10"), netip.MustParseAddr("10.0.2.10")
	frame := packet.Build(packet.Spec{
		Proto: ir.ProtoICMP, Src: b, Dst: a, ICMPType: 3, ICMPCode: 3,
		Embedded: &packet.Spec{Proto: ir.ProtoUDP, Src: a, Dst: b, SPort: 5353, DPort: 53},
	})
	s, err := packet.Parse(frame)
	fmt.Println(len(frame), err)
	fmt.Println(s.Proto, s.Src, "->", s.Dst, "type", s.ICMPType, "code", s.ICMPCode)
	fmt.Println("about", s.Embedded.Proto, s.Embedded.Src, s.Embedded.SPort, "->", s.Embedded.Dst, s.Embedded.DPort)
	// Output:
	// 70 <nil>
	// icmp 10.0.2.10 -> 10.0.1.10 type 3 code 3
	// about udp 10.0.1.10 5353 -> 10.0.2.10 53
}
