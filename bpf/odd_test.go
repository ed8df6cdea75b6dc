package bpf

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/runtime/packet"
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
		// errors go back to the quoted packet's sender: an error to A about
		// B's live flow is not A's business
		bflow := tcp(epB.get(v6), world.get(v6), 35000, 22, tcpSYN)
		d.expect("B's flow", out, bflow, actOK, RuleDefaultAllowID)
		d.expect("error to A about B's flow", in, unreach(bflow), actShot, RuleDefaultDenyID)
		// a third party: C (egress isolated, a router on A's path, say)
		// sends A an error about A's flow; it is related at C's egress as
		// at A's ingress, since the flow is live at A
		fromC := unreach(flow)
		fromC.src = netip.MustParseAddr(epC.get(v6))
		d.expect("third party's error, at its egress", out, fromC, actOK, RuleRelatedID)
		d.expect("third party's error, at A's ingress", in, fromC, actOK, RuleRelatedID)
		fromC = unreach(tcp(epA.get(v6), world.get(v6), 33002, 22, tcpSYN))
		fromC.src = netip.MustParseAddr(epC.get(v6))
		d.expect("third party's error about nothing", out, fromC, actShot, RuleDefaultDenyID)
		if !v6 {
			return
		}
		// a quoted IPv6 packet's extension headers are walked, up to the
		// outer parser's limit (6); headers quoted without L4 or cut short
		// make the error unrelated, not malformed
		withExt := func(p testPacket, ext ...uint8) testPacket {
			p.ipv6Ext = ext
			return p
		}
		for _, ext := range [][]uint8{{0}, {60}, {43}, {51}, {0, 43, 60}, {0, 60, 43, 51, 60, 60}} {
			what := fmt.Sprintf("error quoting headers %v", ext)
			d.expect(what, in, unreach(withExt(flow, ext...)), actOK, RuleRelatedID)
			d.expect(what+" (udp, 8 bytes of L4)", in, unreach(withExt(uflow, ext...)), actOK, RuleRelatedID)
			d.expect(what+" (echo)", in, unreach(withExt(echo, ext...)), actOK, RuleRelatedID)
			d.expect(what+" (reply)", in, unreach(withExt(acc.reply(tcpACK), ext...)), actOK, RuleRelatedID)
			d.expect(what+" (no such flow)", in, unreach(withExt(tcp(epA.v6, world.v6, 33001, 22, tcpSYN), ext...)), actShot, RuleDefaultDenyID)
			cut := unreach(withExt(flow, ext...))
			cut.payload = cut.payload[:40+4]
			d.expect(what+" cut inside them", in, cut, actShot, RuleDefaultDenyID)
			cut = unreach(withExt(flow, ext...))
			cut.payload = cut.payload[:40+8*len(ext)+2]
			d.expect(what+" cut inside the ports", in, cut, actShot, RuleDefaultDenyID)
		}
		d.expect("error quoting 7 headers", in, unreach(withExt(flow, 0, 60, 60, 60, 60, 60, 60)), actShot, RuleDefaultDenyID)
		// a header whose length runs past the quote
		long := unreach(withExt(tcp(epA.v6, world.v6, 33000, 22, tcpSYN), 60))
		long.payload[40+1] = 4 // 40 bytes
		d.expect("error quoting a header longer than the quote", in, long, actShot, RuleDefaultDenyID)
		// a quoted non-first fragment has no L4 header: ports 0, so only a
		// flow without ports (tracked by addresses) can be related to it
		gre := testPacket{src: netip.MustParseAddr(epA.v6), dst: netip.MustParseAddr(world.v6), proto: 47, payload: []byte("gre.....")}
		d.expect("gre flow", out, gre, actOK, RuleDefaultAllowID)
		later := func(p testPacket) testPacket {
			p.fragID, p.fragOffset = 5, 8
			return withExt(p, 60)
		}
		d.expect("error quoting a later fragment of gre", in, unreach(later(gre)), actOK, RuleRelatedID)
		d.expect("error quoting a later fragment of tcp", in, unreach(later(flow)), actShot, RuleDefaultDenyID)
		d.expect("error quoting a later fragment of an echo", in, unreach(later(echo)), actShot, RuleDefaultDenyID)
		first := flow
		first.fragID, first.moreFrags = 6, true
		d.expect("error quoting a first fragment", in, unreach(withExt(first, 0)), actOK, RuleRelatedID)
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
		{"ethernet only, non-IP", []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0xcc}, actShot, RuleEtherTypeID},
		{"ihl 4", mutate(tcp(epB.v4, epA.v4, 1, 80, tcpSYN), func(b []byte) { b[14] = 0x44 }), actShot, RuleMalformedID},
		{"ip version 5", mutate(tcp(epB.v4, epA.v4, 1, 80, tcpSYN), func(b []byte) { b[14] = 0x55 }), actShot, RuleMalformedID},
		{"total length beyond packet", mutate(tcp(epB.v4, epA.v4, 1, 80, tcpSYN), func(b []byte) { binary.BigEndian.PutUint16(b[16:], 100) }), actShot, RuleMalformedID},
		{"total length below ihl", mutate(tcp(epB.v4, epA.v4, 1, 80, tcpSYN), func(b []byte) { binary.BigEndian.PutUint16(b[16:], 19) }), actShot, RuleMalformedID},
		{"tcp data offset 4", mutate(tcp(epB.v4, epA.v4, 1, 80, tcpSYN), func(b []byte) { b[14+20+12] = 4 << 4 }), actShot, RuleMalformedID},
		{"tcp data offset beyond payload", mutate(tcp(epB.v4, epA.v4, 1, 80, tcpSYN), func(b []byte) { b[14+20+12] = 6 << 4 }), actShot, RuleMalformedID},
		{"udp length beyond payload", mutate(udp(epB.v4, epA.v4, 1, 53), func(b []byte) { binary.BigEndian.PutUint16(b[14+20+4:], 9) }), actShot, RuleMalformedID},
		{"udp in an ipv6 atomic fragment, length beyond payload", mutate(func() testPacket { p := udp(epB.v6, epA.v6, 8, 53); p.fragID = 5; return p }(), func(b []byte) { binary.BigEndian.PutUint16(b[14+40+8+4:], 9) }), actShot, RuleMalformedID},
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

// TestFragmentGeneration: a first fragment's verdict is recorded with the
// generation; after `polc apply` (another cfg_generation, shared maps) its
// later fragments treat it as unknown, and a first fragment decided under
// the new generation is followed again.
func TestFragmentGeneration(t *testing.T) {
	in := ProgEndpointIngress
	forFamilies(t, func(t *testing.T, v6 bool) {
		d1 := loadDatapath(t, testConsts(), nil)
		setupWorld(d1)
		frag := func(p testPacket, id uint32, off uint16, more bool) testPacket {
			p.fragID, p.fragOffset, p.moreFrags = id, off, more
			return p
		}
		allowed := tcp(epB.get(v6), epA.get(v6), 40000, 80, tcpSYN)
		denied := tcp(epB.get(v6), epA.get(v6), 40000, 81, tcpSYN)
		open := udp(world.get(v6), epB.get(v6), 1, 2)
		d1.expect("gen1 first allowed", in, frag(allowed, 90, 0, true), actOK, 16)
		d1.expect("gen1 first denied", in, frag(denied, 91, 0, true), actShot, RuleDefaultDenyID)
		d1.expect("gen1 first to an open subject", in, frag(open, 92, 0, true), actOK, RuleDefaultAllowID)
		for k, v := range fragEntries(t, d1) {
			if v.Generation != 1 {
				t.Errorf("frag %d: generation %d, want 1", k.ID, v.Generation)
			}
		}

		share := map[string]*ebpf.Map{}
		for _, m := range []string{MapIPCache4, MapIPCache6, MapIPCache4LPM, MapIPCache6LPM, MapPolicy, MapPolicyRanges, MapConntrack, MapFrags, MapCounters} {
			share[m] = d1.coll.Maps[m]
		}
		c := testConsts()
		c[ConstGeneration] = 2
		d2 := loadDatapath(t, c, share)
		d2.expect("gen2 later of an allowed first", in, frag(allowed, 90, 100, false), actShot, RuleFragmentID)
		d2.expect("gen2 later of a denied first", in, frag(denied, 91, 100, false), actShot, RuleFragmentID)
		d2.expect("gen2 later to an open subject", in, frag(open, 92, 100, false), actOK, RuleDefaultAllowID)
		d1.expect("gen1 still follows its own", in, frag(allowed, 90, 200, false), actOK, 16)
		// decided again under generation 2: followed, and stamped 2
		// (the flow's conntrack entry is of generation 1: rechecked, allowed by rule 16)
		d2.expect("gen2 first", in, frag(allowed, 90, 0, true), actOK, 16)
		d2.expect("gen2 later follows it", in, frag(allowed, 90, 100, false), actOK, 16)
		d2.expect("gen2 first denied", in, frag(denied, 91, 0, true), actShot, RuleDefaultDenyID)
		d2.expect("gen2 later follows the deny", in, frag(denied, 91, 100, false), actShot, RuleDefaultDenyID)
		for k, v := range fragEntries(t, d2) {
			if want := map[uint32]uint32{90: 2, 91: 2, 92: 1}[k.ID]; v.Generation != want {
				t.Errorf("frag %d: generation %d, want %d", k.ID, v.Generation, want)
			}
		}
		// written from Go: honoured only with the loaded generation
		k := FragKey{ID: 93, Proto: 6, Family: FamilyIPv4, Dir: DirIngress}
		src, dst := netip.MustParseAddr(epB.get(v6)), netip.MustParseAddr(epA.get(v6))
		if v6 {
			k.Family = FamilyIPv6
			k.Saddr, k.Daddr = src.As16(), dst.As16()
		} else {
			s4, d4 := src.As4(), dst.As4()
			copy(k.Saddr[:], s4[:])
			copy(k.Daddr[:], d4[:])
		}
		v := FragValue{Expires: monotonicNow(t) + uint64(time.Minute), Rule: 99, Generation: 2, Verdict: VerdictAllow}
		if err := d2.coll.Maps[MapFrags].Put(k, v); err != nil {
			t.Fatal(err)
		}
		d2.expect("from Go, current generation", in, frag(allowed, 93, 100, false), actOK, 99)
		v.Generation = 1
		if err := d2.coll.Maps[MapFrags].Put(k, v); err != nil {
			t.Fatal(err)
		}
		d2.expect("from Go, other generation", in, frag(allowed, 93, 100, false), actShot, RuleFragmentID)
	})
}

func fragEntries(t *testing.T, d *datapath) map[FragKey]FragValue {
	t.Helper()
	m := map[FragKey]FragValue{}
	var k FragKey
	var v FragValue
	it := d.coll.Maps[MapFrags].Iterate()
	for it.Next(&k, &v) {
		m[k] = v
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

func (d *datapath) expect2(what, prog string, frame []byte, act, rule uint32) {
	d.tb.Helper()
	gotAct, gotRule := d.decide(prog, frame)
	if gotAct != act || gotRule != rule {
		d.tb.Errorf("%s: got action %d rule %d, want %d rule %d", what, gotAct, gotRule, act, rule)
	}
}

// TestFragmentedUDP: the first fragment of a UDP datagram carries the
// datagram's length, which exceeds the fragment. It is decided by policy
// like any UDP packet, and the later fragments follow it. The frames come
// from runtime/packet.Fragments, which splits a real datagram.
func TestFragmentedUDP(t *testing.T) {
	in, out := ProgEndpointIngress, ProgEndpointEgress
	forFamilies(t, func(t *testing.T, v6 bool) {
		d := loadDatapath(t, testConsts(), nil)
		setupWorld(d)
		udpFrags := func(src string, sport uint16, dst string, dport uint16, id uint32) [][]byte {
			s := packet.Spec{Proto: ir.ProtoUDP, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst),
				SPort: sport, DPort: dport, ID: id, Payload: make([]byte, 1000)}
			frames := packet.Fragments(s, 400)
			if len(frames) != 3 {
				t.Fatalf("%d fragments", len(frames))
			}
			for i, f := range frames {
				if _, err := packet.Parse(f); err != nil {
					t.Fatalf("fragment %d does not parse: %v", i, err)
				}
			}
			return frames
		}
		for i, f := range udpFrags(world.get(v6), 40000, epA.get(v6), 53, 1) {
			d.expect2(fmt.Sprintf("allowed, fragment %d", i), in, f, actOK, 17)
		}
		for i, f := range udpFrags(world.get(v6), 40000, epA.get(v6), 5003, 2) {
			d.expect2(fmt.Sprintf("denied by a rule, fragment %d", i), in, f, actShot, 27)
		}
		for i, f := range udpFrags(epC.get(v6), 40000, world.get(v6), 53, 3) {
			d.expect2(fmt.Sprintf("egress default deny, fragment %d", i), out, f, actShot, RuleDefaultDenyID)
		}
		for i, f := range udpFrags(epB.get(v6), 40000, world.get(v6), 53, 4) {
			d.expect2(fmt.Sprintf("open subject, fragment %d", i), out, f, actOK, RuleDefaultAllowID)
		}
		// the reply of the allowed datagram's flow, fragmented too
		for i, f := range udpFrags(epA.get(v6), 53, world.get(v6), 40000, 5) {
			d.expect2(fmt.Sprintf("reply, fragment %d", i), out, f, actOK, RuleEstablishedID)
		}

		// A first fragment still needs a UDP length of at least 8.
		first := udpFrags(world.get(v6), 40000, epA.get(v6), 53, 6)[0]
		udpOff := 14 + 20
		if v6 {
			udpOff = 14 + 40 + 8
		}
		binary.BigEndian.PutUint16(first[udpOff+4:], 7)
		d.expect2("first fragment, udp length 7", in, first, actShot, RuleMalformedID)
		if _, err := packet.Parse(first); err == nil {
			t.Error("packet.Parse accepts a first fragment with udp length 7")
		}
	})
}

// TestNeighbourDiscovery: ICMPv6 133–137 with hop limit 255 pass like ARP
// (RuleNonIP), before any lookup and without conntrack, even where an
// isolated direction has no ICMPv6 rule. Other ICMPv6 messages, ND with
// another hop limit (not from the link) and fragmented ND meet policy.
func TestNeighbourDiscovery(t *testing.T) {
	in, out := ProgEndpointIngress, ProgEndpointEgress
	d := loadDatapath(t, testConsts(), nil)
	setupWorld(d)
	// C is egress-isolated (tcp/443 only), A ingress-isolated (ICMPv6 echo only).
	for typ := uint8(133); typ <= 137; typ++ {
		d.expect(fmt.Sprintf("type %d from an egress-isolated endpoint to fe80::", typ), out, nd(epC.v6, "fe80::1", typ), actOK, RuleNonIPID)
		d.expect(fmt.Sprintf("type %d to an ingress-isolated endpoint", typ), in, nd(world.v6, epA.v6, typ), actOK, RuleNonIPID)
		d.expect(fmt.Sprintf("type %d, link-local to multicast", typ), out, nd("fe80::3", "ff02::1:ff00:2", typ), actOK, RuleNonIPID)
		// from a link-local source it stays on the link whatever the
		// destination: the host never forwards such a packet
		d.expect(fmt.Sprintf("type %d from fe80:: to a global address", typ), out, nd("fe80::3", world.v6, typ), actOK, RuleNonIPID)
	}
	ns := nd(epC.v6, "ff02::1:ff00:2", 135)
	ns.payload = make([]byte, 16+8) // target address, source link-layer address option
	act := d.run(out, ns.bytes())
	e := d.event()
	if act != actOK || e.Rule != RuleNonIPID || e.Family != 6 || e.Proto != 58 || e.Dport != 135<<8 || e.Subject != 0 || e.Remote != 0 {
		t.Errorf("neighbour solicitation: action %d, event %+v", act, e)
	}
	if n := len(d.ctEntries()); n != 0 {
		t.Errorf("neighbour discovery created %d conntrack entries", n)
	}
	if got := d.counter(RuleNonIPID); got.Packets != 5*4+1 {
		t.Errorf("non-ip counter: %+v", got)
	}

	// not neighbour discovery: policy
	d.expect("type 132", out, icmp(epC.v6, world.v6, 132, 0, 0), actShot, RuleDefaultDenyID)
	d.expect("type 138", in, icmp(world.v6, epA.v6, 138, 0, 0), actShot, RuleDefaultDenyID)
	d.expect("echo request", out, icmp(epC.v6, world.v6, 128, 0, 1), actShot, RuleDefaultDenyID)
	// RFC 4861: valid ND has hop limit 255; anything less was routed here,
	// so ND types cannot carry off-link traffic past policy
	for _, hl := range []uint8{254, 64, 1} {
		for typ := uint8(133); typ <= 137; typ++ {
			p := nd(epC.v6, world.v6, typ)
			p.hopLimit = hl
			d.expect(fmt.Sprintf("type %d, hop limit %d, from an egress-isolated endpoint", typ, hl), out, p, actShot, RuleDefaultDenyID)
			p = nd(world.v6, epA.v6, typ)
			p.hopLimit = hl
			d.expect(fmt.Sprintf("type %d, hop limit %d, to an ingress-isolated endpoint", typ, hl), in, p, actShot, RuleDefaultDenyID)
		}
	}
	offLink := nd(world.v6, epB.v6, 135)
	offLink.hopLimit = 64
	d.expect("hop limit 64 to an open endpoint", in, offLink, actOK, RuleDefaultAllowID)
	d.expect("icmpv4 type 135", in, icmp(world.v4, epA.v4, 135, 0, 0), actShot, RuleDefaultDenyID)
	v4ttl := icmp(world.v4, epA.v4, 135, 0, 0)
	v4ttl.hopLimit = 255
	d.expect("icmpv4 type 135, ttl 255", in, v4ttl, actShot, RuleDefaultDenyID)
	v4 := icmp(world.v4, epA.v4, 0, 0, 0)
	v4.proto, v4.icmpType, v4.hopLimit = 58, 135, 255 // an ICMPv6 header inside IPv4
	d.expect("icmpv6 135 over ipv4", in, v4, actShot, RuleDefaultDenyID)
	frag := nd(world.v6, epA.v6, 135)
	frag.fragID, frag.moreFrags = 9, true
	d.expect("fragmented neighbour solicitation", in, frag, actShot, RuleDefaultDenyID)
	atomic := nd(world.v6, epA.v6, 136)
	atomic.fragID = 10 // fragment header, offset 0, no MF: a whole packet
	d.expect("atomic fragment", in, atomic, actOK, RuleNonIPID)
	short := nd(world.v6, epA.v6, 135).bytes()
	d.expect2("neighbour solicitation cut to 4 bytes", in, short[:len(short)-4], actShot, RuleMalformedID)
	// still malformed when the IPv6 header says so
	bad := nd(world.v6, epA.v6, 135).bytes()
	binary.BigEndian.PutUint16(bad[18:], 100)
	d.expect2("payload length beyond the frame", in, bad, actShot, RuleMalformedID)

	// with no IPv6 endpoint in the bundle, no global IPv6 source is an
	// endpoint's own; link-local ND still passes
	consts := testConsts()
	consts[ConstHasIPv6] = 0
	d6 := loadDatapath(t, consts, nil)
	d6.bind(idC)
	d6.expect("no ipv6 endpoints, global source", out, nd(epC.v6, world.v6, 135), actShot, RuleSpoofedSourceID)
	d6.expect("no ipv6 endpoints, link-local source", out, nd("fe80::c", "ff02::1:ff00:1", 135), actOK, RuleNonIPID)
}

// TestForeignICMP: ICMP (protocol 1) in IPv6 and ICMPv6 (58) in IPv4 are
// protocol numbers without ports, tracked by addresses: their header is
// not read (so it cannot be short), rules on ICMP types never match them,
// a rule on the protocol with no type does.
func TestForeignICMP(t *testing.T) {
	in, out := ProgEndpointIngress, ProgEndpointEgress
	forFamilies(t, func(t *testing.T, v6 bool) {
		d := loadDatapath(t, testConsts(), nil)
		setupWorld(d)
		native, foreign := uint8(1), uint8(58)
		if v6 {
			native, foreign = 58, 1
		}
		// A ingress, for both protocol numbers: type 0 code 0 (the port a
		// header-less packet would have) and type 0, any code
		for _, proto := range []uint8{1, 58} {
			d.policy(PolicyKey{Subject: idA, Remote: IdentityAny, Port: 0, Proto: proto}, VerdictAllow, 29)
			d.portRange(idA, IdentityAny, proto, 0, 0, 255, VerdictAllow, 30)
		}
		pkt := func(src, dst string, typ uint8) testPacket {
			p := icmp(src, dst, typ, 0, 0)
			p.proto = foreign
			return p
		}
		d.expect("native type 0 code 0", in, func() testPacket { p := icmp(world.get(v6), epA.get(v6), 0, 0, 0); p.proto = native; return p }(), actOK, 29)
		d.expect("foreign type 0: typed rules do not match", in, pkt(world.get(v6), epA.get(v6), 0), actShot, RuleDefaultDenyID)
		d.expect("foreign echo request: typed rules do not match", in, pkt(world.get(v6), epA.get(v6), 8), actShot, RuleDefaultDenyID)
		d.expect("any protocol from C", in, pkt(epC.get(v6), epA.get(v6), 8), actOK, 28)
		// the protocol with no type: an any-port entry
		d.policy(PolicyKey{Subject: idA, Remote: IdentityWorld, Proto: foreign, Flags: PolicyAnyPort}, VerdictAllow, 31)
		req := pkt(world.get(v6), epA.get(v6), 8)
		d.expect("protocol rule without type", in, req, actOK, 31)
		key := ctKeyOf(req, DirIngress) // ports 0, 0
		e, ok := d.ctEntries()[key]
		if !ok || e.Rule != 31 {
			t.Errorf("no conntrack entry %+v for the foreign flow (%v): %+v", key, ok, d.ctEntries())
		}
		d.expect("later packet, another type", in, pkt(world.get(v6), epA.get(v6), 13), actOK, RuleEstablishedID)
		d.expect("reply by addresses", out, pkt(epA.get(v6), world.get(v6), 0), actOK, RuleEstablishedID)
		// C egress is isolated: a foreign flow out is denied, one in is open and its reply passes
		d.expect("out of C", out, pkt(epC.get(v6), world.get(v6), 8), actShot, RuleDefaultDenyID)
		d.expect("into C", in, pkt(far.get(v6), epC.get(v6), 8), actOK, RuleDefaultAllowID)
		d.expect("reply out of C", out, pkt(epC.get(v6), far.get(v6), 0), actOK, RuleEstablishedID)
		// two bytes of "header": not malformed, the header is not read
		short := pkt(far.get(v6), epA.get(v6), 8).bytes()
		short = short[:len(short)-6]
		if v6 {
			binary.BigEndian.PutUint16(short[18:], 2)
		} else {
			binary.BigEndian.PutUint16(short[16:], 22)
			short[24], short[25] = 0, 0
			binary.BigEndian.PutUint16(short[24:], ipChecksum(short[14:34]))
		}
		d.expect2("two bytes of payload", in, short, actOK, 31)
		evShort := d.counter(31)
		if evShort.Packets != 2 {
			t.Errorf("rule 31 counted %d packets, want 2", evShort.Packets)
		}
		// an error quoting a foreign flow is related (tracked by addresses)
		unreach := icmp(far.get(v6), epA.get(v6), 3, 1, 0)
		if v6 {
			unreach.icmpType, unreach.icmpCode = 1, 3
		}
		unreach.payload = pkt(epA.get(v6), world.get(v6), 0).ip()
		d.expect("error quoting the foreign flow's reply", in, unreach, actOK, RuleRelatedID)
	})
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
