package bpf

import (
	"encoding/binary"

	"github.com/cilium/ebpf"
	"testing"
)

// TestRelatedICMP: ICMP errors quoting a live flow pass into an isolated
// direction; errors quoting nothing meet policy.
func TestRelatedICMP(t *testing.T) {
	in, out := ProgEndpointIngress, ProgEndpointEgress
	forFamilies(t, func(t *testing.T, v6 bool) {
		d := loadDatapath(t, testConsts(), nil)
		setupWorld(d)
		unreach := func(quoted testPacket) testPacket {
			p := icmp(far.get(v6), epA.get(v6), 3, 1, 0)
			if v6 {
				p.icmpType, p.icmpCode = 1, 3
			}
			p.payload = quoted.ip()
			return p
		}
		// a flow A opened (egress is open)
		flow := tcp(epA.get(v6), world.get(v6), 33000, 22, tcpSYN)
		d.expect("flow", out, flow, actOK, RuleDefaultAllowID)
		d.expect("error about it", in, unreach(flow), actOK, RuleRelatedID)
		// an udp flow, quoted with only 8 bytes of L4
		uflow := udp(epA.get(v6), world.get(v6), 33000, 53)
		d.expect("udp flow", out, uflow, actOK, RuleDefaultAllowID)
		d.expect("error about udp", in, unreach(uflow), actOK, RuleRelatedID)
		// a flow A accepted; the error is about A's reply
		acc := tcp(world.get(v6), epA.get(v6), 34000, 22, tcpSYN)
		d.expect("accepted", in, acc, actOK, 23)
		d.expect("error about the reply", in, unreach(acc.reply(tcpACK)), actOK, RuleRelatedID)
		// error about an echo request A sent
		echo := echoRequest(epA.get(v6), world.get(v6), 4242)
		d.expect("echo", out, echo, actOK, RuleDefaultAllowID)
		d.expect("error about echo", in, unreach(echo), actOK, RuleRelatedID)
		// no such flow
		d.expect("error about nothing", in, unreach(tcp(epA.get(v6), world.get(v6), 33001, 22, tcpSYN)), actShot, RuleDefaultDenyID)
		// an error quoting too little is not related (nor malformed)
		short := unreach(flow)
		short.payload = short.payload[:10]
		d.expect("short quote", in, short, actShot, RuleDefaultDenyID)
	})
}

// TestTruncation: every proper prefix of a valid packet is dropped as
// malformed; the whole packet is allowed. BPF_PROG_TEST_RUN refuses frames
// shorter than Ethernet + the IP header with EINVAL, so for those offsets
// the test only checks that nothing but a drop comes out if the kernel
// ever does run them.
func TestTruncation(t *testing.T) {
	d := loadDatapath(t, testConsts(), nil)
	setupWorld(d)
	for _, p := range []testPacket{
		tcp(epB.v4, epA.v4, 40000, 80, tcpSYN),
		func() testPacket { p := udp(epB.v6, epA.v6, 40000, 53); p.payload = []byte("hello"); return p }(),
	} {
		frame := p.bytes()
		for n := 14; n < len(frame); n++ {
			// BPF_PROG_TEST_RUN itself refuses a frame whose IP header
			// is cut (EINVAL), so those offsets cannot reach the program.
			ipHdr := 14 + 20
			if p.src.Is6() {
				ipHdr = 14 + 40
			}
			if n < ipHdr {
				act, err := d.coll.Programs[ProgEndpointIngress].Run(&ebpf.RunOptions{Data: frame[:n]})
				if err != nil {
					continue // refused by the kernel
				}
				if rule := d.event().Rule; act != actShot || rule != RuleMalformedID {
					t.Errorf("proto %d truncated at %d of %d: action %d rule %d", p.proto, n, len(frame), act, rule)
				}
				continue
			}
			act, rule := d.decide(ProgEndpointIngress, frame[:n])
			if act != actShot || rule != RuleMalformedID {
				t.Errorf("proto %d truncated at %d of %d: action %d rule %d", p.proto, n, len(frame), act, rule)
			}
		}
		act, rule := d.decide(ProgEndpointIngress, frame)
		if act != actOK {
			t.Errorf("proto %d whole packet: action %d rule %d", p.proto, act, rule)
		}
	}
}

func TestMalformedAndOdd(t *testing.T) {
	in := ProgEndpointIngress
	d := loadDatapath(t, testConsts(), nil)
	setupWorld(d)
	mutate := func(p testPacket, f func(b []byte)) []byte {
		b := p.bytes()
		f(b)
		return b
	}
	cases := []struct {
		name  string
		frame []byte
		act   uint32
		rule  uint32
	}{
		{"arp passes", func() []byte { p := tcp(epB.v4, epA.v4, 1, 80, tcpSYN); p.etherType = 0x0806; return p.bytes() }(), actOK, RuleNonIPID},
		{"ethernet only, non-IP", []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0xcc}, actOK, RuleNonIPID},
		{"ihl 4", mutate(tcp(epB.v4, epA.v4, 1, 80, tcpSYN), func(b []byte) { b[14] = 0x44 }), actShot, RuleMalformedID},
		{"ip version 5", mutate(tcp(epB.v4, epA.v4, 1, 80, tcpSYN), func(b []byte) { b[14] = 0x55 }), actShot, RuleMalformedID},
		{"total length beyond packet", mutate(tcp(epB.v4, epA.v4, 1, 80, tcpSYN), func(b []byte) { binary.BigEndian.PutUint16(b[16:], 100) }), actShot, RuleMalformedID},
		{"total length below ihl", mutate(tcp(epB.v4, epA.v4, 1, 80, tcpSYN), func(b []byte) { binary.BigEndian.PutUint16(b[16:], 19) }), actShot, RuleMalformedID},
		{"tcp data offset 4", mutate(tcp(epB.v4, epA.v4, 1, 80, tcpSYN), func(b []byte) { b[14+20+12] = 4 << 4 }), actShot, RuleMalformedID},
		{"tcp data offset beyond payload", mutate(tcp(epB.v4, epA.v4, 1, 80, tcpSYN), func(b []byte) { b[14+20+12] = 6 << 4 }), actShot, RuleMalformedID},
		{"udp length beyond payload", mutate(udp(epB.v4, epA.v4, 1, 53), func(b []byte) { binary.BigEndian.PutUint16(b[14+20+4:], 9) }), actShot, RuleMalformedID},
		{"ipv6 version 4", mutate(udp(epB.v6, epA.v6, 1, 53), func(b []byte) { b[14] = 0x40 }), actShot, RuleMalformedID},
		{"ipv6 payload length beyond packet", mutate(udp(epB.v6, epA.v6, 1, 53), func(b []byte) { binary.BigEndian.PutUint16(b[18:], 9) }), actShot, RuleMalformedID},
		{"ipv6 two extension headers", func() []byte { p := udp(epB.v6, epA.v6, 2, 53); p.ipv6Ext = []uint8{0, 60}; return p.bytes() }(), actOK, 17},
		{"ipv6 six extension headers", func() []byte {
			p := udp(epB.v6, epA.v6, 3, 53)
			p.ipv6Ext = []uint8{0, 60, 43, 60, 60, 60}
			return p.bytes()
		}(), actOK, 17},
		{"ipv6 seven extension headers", func() []byte {
			p := udp(epB.v6, epA.v6, 4, 53)
			p.ipv6Ext = []uint8{0, 60, 43, 60, 60, 60, 60}
			return p.bytes()
		}(), actShot, RuleMalformedID},
		{"ipv6 extension header beyond payload", mutate(func() testPacket { p := udp(epB.v6, epA.v6, 5, 53); p.ipv6Ext = []uint8{60}; return p }(), func(b []byte) { b[14+40+1] = 9 }), actShot, RuleMalformedID},
		{"ipv6 no next header", func() []byte { p := udp(epB.v6, epA.v6, 6, 53); p.proto = 59; return p.bytes() }(), actShot, RuleDefaultDenyID},
		{"ipv4 options", func() []byte {
			b := udp(epB.v4, epA.v4, 7, 53).bytes()
			ip := append([]byte{}, b[14:34]...)
			ip[0] = 0x46
			binary.BigEndian.PutUint16(ip[2:], binary.BigEndian.Uint16(ip[2:])+4)
			out := append(append(append([]byte{}, b[:14]...), ip...), 1, 1, 1, 0)
			return append(out, b[34:]...)
		}(), actOK, 17},
	}
	for _, c := range cases {
		act, rule := d.decide(in, c.frame)
		if act != c.act || rule != c.rule {
			t.Errorf("%s: got action %d rule %d, want %d rule %d", c.name, act, rule, c.act, c.rule)
		}
	}
}

func TestFragments(t *testing.T) {
	in := ProgEndpointIngress
	forFamilies(t, func(t *testing.T, v6 bool) {
		d := loadDatapath(t, testConsts(), nil)
		setupWorld(d)
		frag := func(p testPacket, id uint32, off uint16, more bool) testPacket {
			p.fragID, p.fragOffset, p.moreFrags = id, off, more
			return p
		}
		allowed := tcp(epB.get(v6), epA.get(v6), 40000, 80, tcpSYN)
		denied := tcp(epB.get(v6), epA.get(v6), 40000, 81, tcpSYN)
		d.expect("first fragment allowed", in, frag(allowed, 77, 0, true), actOK, 16)
		d.expect("later fragment follows allow", in, frag(allowed, 77, 100, true), actOK, 16)
		d.expect("last fragment follows allow", in, frag(allowed, 77, 200, false), actOK, 16)
		d.expect("first fragment denied", in, frag(denied, 78, 0, true), actShot, RuleDefaultDenyID)
		d.expect("later fragment follows deny", in, frag(denied, 78, 100, false), actShot, RuleDefaultDenyID)
		d.expect("unknown later fragment to selected subject", in, frag(allowed, 79, 100, false), actShot, RuleFragmentID)
		d.expect("unknown later fragment to open subject", in, frag(tcp(world.get(v6), epB.get(v6), 1, 2, 0), 80, 100, false), actOK, RuleDefaultAllowID)
		d.expect("established first fragment", in, frag(allowed, 81, 0, true), actOK, RuleEstablishedID)
		d.expect("established later fragment", in, frag(allowed, 81, 100, false), actOK, RuleEstablishedID)
		tiny := frag(allowed, 82, 0, true)
		tiny.payload = nil
		b := tiny.bytes()
		d.expect2("first fragment with a short tcp header", in, b[:len(b)-4], actShot, RuleMalformedID)
	})
}

func (d *datapath) expect2(what, prog string, frame []byte, act, rule uint32) {
	d.tb.Helper()
	gotAct, gotRule := d.decide(prog, frame)
	if gotAct != act || gotRule != rule {
		d.tb.Errorf("%s: got action %d rule %d, want %d rule %d", what, gotAct, gotRule, act, rule)
	}
}
