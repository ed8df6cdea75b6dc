package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/golden"
)

var (
	a4, b4 = netip.MustParseAddr("10.0.1.10"), netip.MustParseAddr("10.0.2.10")
	a6, b6 = netip.MustParseAddr("fd00::10"), netip.MustParseAddr("fd00::20")
)

// onesComplementOK is a second, plain implementation of the Internet
// checksum: the sum of the parts, checksum field included, must be 0xffff.
func onesComplementOK(parts ...[]byte) bool {
	var all []byte
	for _, p := range parts {
		all = append(all, p...)
	}
	if len(all)%2 == 1 {
		all = append(all, 0)
	}
	var s uint32
	for i := 0; i < len(all); i += 2 {
		s += uint32(all[i])<<8 | uint32(all[i+1])
		s = s&0xffff + s>>16
	}
	return s == 0xffff
}

// crc32cBitwise is CRC32c (Castagnoli, reflected) one bit at a time.
func crc32cBitwise(b []byte) uint32 {
	crc := ^uint32(0)
	for _, c := range b {
		crc ^= uint32(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0x82f63b78
			} else {
				crc >>= 1
			}
		}
	}
	return ^crc
}

func TestChecksumKnownAnswers(t *testing.T) {
	// RFC 1071, section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2.
	if got := Checksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != ^uint16(0xddf2) {
		t.Errorf("Checksum = %#x", got)
	}
	if got := crc32cBitwise([]byte("123456789")); got != 0xe3069283 {
		t.Errorf("crc32c check value = %#x", got)
	}
}

// verify checks a frame the way a receiver would, without the builder's
// code: lengths, the IPv4 header checksum and the L4 checksum over the
// pseudo-header (not for fragments, whose checksum covers the datagram).
func verify(t *testing.T, frame []byte) Summary {
	t.Helper()
	if !bytes.Equal(frame[0:6], DstMAC[:]) || !bytes.Equal(frame[6:12], SrcMAC[:]) {
		t.Errorf("MACs: % x", frame[:12])
	}
	s, err := Parse(frame)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	ip := frame[14:]
	var pseudo []byte
	switch s.EtherType {
	case EtherTypeIPv4:
		hl := int(ip[0]&0xf) * 4
		if !onesComplementOK(ip[:hl]) {
			t.Errorf("ipv4 header checksum")
		}
		if n := int(binary.BigEndian.Uint16(ip[2:])); n != len(ip) {
			t.Errorf("ipv4 total length %d, packet %d", n, len(ip))
		}
		seg := len(ip) - hl
		pseudo = append(append(append([]byte{}, ip[12:20]...), 0, ip[9]), byte(seg>>8), byte(seg))
	case EtherTypeIPv6:
		if n := int(binary.BigEndian.Uint16(ip[4:])); n != len(ip)-40 {
			t.Errorf("ipv6 payload length %d, payload %d", n, len(ip)-40)
		}
		seg := len(ip) - s.L3Len
		pseudo = append(append([]byte{}, ip[8:40]...), byte(seg>>24), byte(seg>>16), byte(seg>>8), byte(seg), 0, 0, 0, byte(s.Proto))
	default:
		return s
	}
	if s.Frag != nil {
		return s
	}
	seg := ip[s.L3Len:]
	switch s.Proto {
	case ir.ProtoTCP, ir.ProtoUDP, ir.ProtoICMPv6:
		if !onesComplementOK(pseudo, seg) {
			t.Errorf("%s checksum", s.Proto)
		}
	case ir.ProtoICMP:
		if !onesComplementOK(seg) {
			t.Errorf("icmp checksum")
		}
	case ir.ProtoSCTP:
		c := append([]byte{}, seg...)
		want := binary.LittleEndian.Uint32(c[8:])
		copy(c[8:12], []byte{0, 0, 0, 0})
		if got := crc32cBitwise(c); got != want {
			t.Errorf("sctp crc32c %#x, on the wire %#x", got, want)
		}
	}
	return s
}

func tcpSyn() Spec {
	return Spec{Proto: ir.ProtoTCP, Src: a4, Dst: b4, SPort: 40000, DPort: 8080, TCPFlags: ir.TCPSyn, Seq: 1000}
}

// cases are built, verified independently, parsed back and (most) kept
// as golden hex dumps.
var cases = []struct {
	name string
	spec Spec
	want Summary // fields compared after Parse (zero fields ignored)
}{
	{"tcp4-syn", tcpSyn(), Summary{Proto: ir.ProtoTCP, Src: a4, Dst: b4, SPort: 40000, DPort: 8080, TCPFlags: ir.TCPSyn}},
	{"tcp4-options", func() Spec {
		s := tcpSyn()
		s.TCPOptions = []byte{2, 4, 0x05, 0xb4, 4, 2, 1} // MSS 1460, SACK permitted, NOP (padded)
		s.IPv4Options = []byte{7, 7, 4, 0, 0, 0, 0}      // record route
		s.Payload = []byte("hello")
		return s
	}(), Summary{Proto: ir.ProtoTCP, SPort: 40000, DPort: 8080, TCPFlags: ir.TCPSyn, L3Len: 28, Payload: []byte("hello")}},
	{"tcp6-ack", Spec{Proto: ir.ProtoTCP, Src: a6, Dst: b6, SPort: 8080, DPort: 40000, TCPFlags: ir.TCPAck | ir.TCPFin, Seq: 7, Ack: 9},
		Summary{Proto: ir.ProtoTCP, Src: a6, Dst: b6, SPort: 8080, DPort: 40000, TCPFlags: ir.TCPAck | ir.TCPFin, L3Len: 40}},
	{"udp4", Spec{Proto: ir.ProtoUDP, Src: a4, Dst: b4, SPort: 5353, DPort: 53, Payload: []byte{1, 2, 3}},
		Summary{Proto: ir.ProtoUDP, SPort: 5353, DPort: 53, Payload: []byte{1, 2, 3}}},
	{"udp6-ext", Spec{Proto: ir.ProtoUDP, Src: a6, Dst: b6, SPort: 1, DPort: 53,
		IPv6Ext: []Ext{{Type: ExtHopByHop}, {Type: ExtRouting}, {Type: ExtDestOpts, Data: []byte{1, 4, 0, 0, 0, 0, 1, 0}}}},
		Summary{Proto: ir.ProtoUDP, SPort: 1, DPort: 53, L3Len: 40 + 8 + 8 + 16}},
	{"sctp4-init", Spec{Proto: ir.ProtoSCTP, Src: a4, Dst: b4, SPort: 3868, DPort: 3868},
		Summary{Proto: ir.ProtoSCTP, SPort: 3868, DPort: 3868}},
	{"sctp6-data", Spec{Proto: ir.ProtoSCTP, Src: a6, Dst: b6, SPort: 5000, DPort: 3868, SCTPTag: 0xdeadbeef, Payload: []byte("abc")},
		Summary{Proto: ir.ProtoSCTP, SPort: 5000, DPort: 3868}},
	{"icmp4-echo", Spec{Proto: ir.ProtoICMP, Src: a4, Dst: b4, ICMPType: 8, ICMPID: 0x1234, ICMPSeq: 1, Payload: []byte("ping")},
		Summary{Proto: ir.ProtoICMP, ICMPType: 8, ICMPID: 0x1234, ICMPSeq: 1}},
	{"icmp6-echo-reply", Spec{Proto: ir.ProtoICMPv6, Src: b6, Dst: a6, ICMPType: 129, ICMPID: 7, ICMPSeq: 2},
		Summary{Proto: ir.ProtoICMPv6, ICMPType: 129, ICMPID: 7, ICMPSeq: 2}},
	{"icmp4-frag-needed", Spec{Proto: ir.ProtoICMP, Src: netip.MustParseAddr("192.0.2.1"), Dst: a4, ICMPType: 3, ICMPCode: 4, ICMPRest: 1400,
		Embedded: &Spec{Proto: ir.ProtoTCP, Src: a4, Dst: b4, SPort: 40000, DPort: 8080, TCPFlags: ir.TCPAck, Payload: make([]byte, 1000)}},
		Summary{Proto: ir.ProtoICMP, ICMPType: 3, ICMPCode: 4, ICMPRest: 1400,
			Embedded: &Summary{Proto: ir.ProtoTCP, Src: a4, Dst: b4, SPort: 40000, DPort: 8080}}},
	{"icmp4-unreach-8-bytes", Spec{Proto: ir.ProtoICMP, Src: b4, Dst: a4, ICMPType: 3, ICMPCode: 3, EmbeddedLen: 28,
		Embedded: &Spec{Proto: ir.ProtoUDP, Src: a4, Dst: b4, SPort: 5353, DPort: 53}},
		Summary{Proto: ir.ProtoICMP, ICMPType: 3, ICMPCode: 3,
			Embedded: &Summary{Proto: ir.ProtoUDP, Src: a4, Dst: b4, SPort: 5353, DPort: 53}}},
	{"icmp6-packet-too-big", Spec{Proto: ir.ProtoICMPv6, Src: netip.MustParseAddr("2001:db8::1"), Dst: a6, ICMPType: 2, ICMPRest: 1280,
		Embedded: &Spec{Proto: ir.ProtoTCP, Src: a6, Dst: b6, SPort: 1, DPort: 443, Payload: make([]byte, 2000)}},
		Summary{Proto: ir.ProtoICMPv6, ICMPType: 2, ICMPRest: 1280,
			Embedded: &Summary{Proto: ir.ProtoTCP, Src: a6, Dst: b6, SPort: 1, DPort: 443}}},
	{"icmp4-time-exceeded-echo", Spec{Proto: ir.ProtoICMP, Src: b4, Dst: a4, ICMPType: 11,
		Embedded: &Spec{Proto: ir.ProtoICMP, Src: a4, Dst: b4, ICMPType: 8, ICMPID: 77, ICMPSeq: 1, TTL: 1}},
		Summary{Proto: ir.ProtoICMP, ICMPType: 11,
			Embedded: &Summary{Proto: ir.ProtoICMP, ICMPType: 8, ICMPID: 77, TTL: 1}}},
	{"frag4-later", Spec{Proto: ir.ProtoUDP, Src: a4, Dst: b4, ID: 99, Frag: &Frag{Offset: 1480, More: true}, Payload: make([]byte, 16)},
		Summary{Proto: ir.ProtoUDP, ID: 99, Frag: &Frag{Offset: 1480, More: true}}},
	{"frag6-first", Spec{Proto: ir.ProtoUDP, Src: a6, Dst: b6, ID: 0xabcdef01, SPort: 1, DPort: 53, Frag: &Frag{More: true}, Payload: make([]byte, 8)},
		Summary{Proto: ir.ProtoUDP, ID: 0xabcdef01, SPort: 1, DPort: 53, Frag: &Frag{More: true}, L3Len: 48}},
	{"arp", Spec{EtherType: EtherTypeARP}, Summary{EtherType: EtherTypeARP, NonIP: true}},
}

func TestBuild(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			frame := Build(tc.spec)
			got := verify(t, frame)
			// Compare only what the case names.
			want := tc.want
			if want.EtherType == 0 {
				want.EtherType = got.EtherType
			}
			pick := func(s Summary) Summary {
				r := Summary{EtherType: s.EtherType, NonIP: s.NonIP, Proto: s.Proto}
				if want.Src.IsValid() {
					r.Src, r.Dst = s.Src, s.Dst
				}
				if want.L3Len != 0 {
					r.L3Len = s.L3Len
				}
				if want.Payload != nil {
					r.Payload = s.Payload
				}
				if want.TTL != 0 {
					r.TTL = s.TTL
				}
				if want.ID != 0 {
					r.ID = s.ID
				}
				r.SPort, r.DPort, r.TCPFlags, r.Frag = s.SPort, s.DPort, s.TCPFlags, s.Frag
				r.ICMPType, r.ICMPCode, r.ICMPID, r.ICMPSeq = s.ICMPType, s.ICMPCode, s.ICMPID, s.ICMPSeq
				if want.ICMPRest != 0 {
					r.ICMPRest = s.ICMPRest
				}
				return r
			}
			if diff := cmp.Diff(pick(want), pick(got), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("parsed back (-want +got):\n%s", diff)
			}
			if want.Embedded != nil {
				if got.Embedded == nil {
					t.Fatal("no embedded packet")
				}
				w, g := *want.Embedded, *got.Embedded
				if g.Proto != w.Proto || g.SPort != w.SPort || g.DPort != w.DPort || g.ICMPType != w.ICMPType || g.ICMPID != w.ICMPID ||
					w.Src.IsValid() && (g.Src != w.Src || g.Dst != w.Dst) || w.TTL != 0 && g.TTL != w.TTL {
					t.Errorf("embedded: got %+v, want %+v", g, w)
				}
			}
			golden.Check(t, "packet/"+tc.name+".hex", []byte(Dump(frame)))
		})
	}
}

func TestICMPErrorSize(t *testing.T) {
	v4 := Build(cases[9].spec) // frag-needed around a 1040-byte packet
	if len(v4)-14 != 576 {
		t.Errorf("icmp4 error: %d bytes of IP, want 576", len(v4)-14)
	}
	v6 := Build(cases[11].spec)
	if len(v6)-14 != 1280 {
		t.Errorf("icmp6 error: %d bytes of IP, want 1280", len(v6)-14)
	}
	short := Build(cases[10].spec)
	if len(short)-14 != 20+8+28 {
		t.Errorf("icmp4 error with EmbeddedLen 28: %d bytes", len(short)-14)
	}
}

func TestFragments(t *testing.T) {
	for _, base := range []Spec{
		{Proto: ir.ProtoUDP, Src: a4, Dst: b4, SPort: 5000, DPort: 53, ID: 4242},
		{Proto: ir.ProtoTCP, Src: a6, Dst: b6, SPort: 5000, DPort: 443, ID: 4242, TCPFlags: ir.TCPAck,
			IPv6Ext: []Ext{{Type: ExtHopByHop}}},
	} {
		base.Payload = make([]byte, 1000)
		for i := range base.Payload {
			base.Payload[i] = byte(i)
		}
		whole := transport(base) // the unfragmented segment, checksum included
		frames := Fragments(base, 300)
		if len(frames) != (len(whole)+295)/296 {
			t.Fatalf("%s: %d fragments of %d bytes", base.Proto, len(frames), len(whole))
		}
		var data []byte
		for i, f := range frames {
			s := verify(t, f)
			if s.Frag == nil || int(s.Frag.Offset) != len(data) || s.Frag.More != (i < len(frames)-1) || s.ID != 4242 {
				t.Errorf("%s fragment %d: %+v, id %d, at %d", base.Proto, i, s.Frag, s.ID, len(data))
			}
			data = append(data, f[14+s.L3Len:]...)
		}
		if !bytes.Equal(data, whole) {
			t.Errorf("%s: reassembled %d bytes differ from the %d-byte segment", base.Proto, len(data), len(whole))
		}
		first, _ := Parse(frames[0])
		if first.SPort != 5000 || first.Proto != base.Proto {
			t.Errorf("first fragment: %+v", first)
		}
	}
}

func TestMalformed(t *testing.T) {
	syn := Build(tcpSyn())
	syn6 := Build(Spec{Proto: ir.ProtoTCP, Src: a6, Dst: b6, SPort: 1, DPort: 2, IPv6Ext: []Ext{{Type: ExtDestOpts}}})
	mangled := func(m Mangle) []byte { s := tcpSyn(); s.Mangle = m; return Build(s) }
	cases := []struct {
		name  string
		frame []byte
		want  error
	}{
		{"short ethernet", Truncate(syn, 10), ErrTruncated},
		{"cut ipv4 header", Truncate(syn, 14+19), ErrTruncated},
		{"cut tcp header", Truncate(syn, 14+20+19), ErrTruncated},
		{"cut ipv6 header", Truncate(syn6, 14+39), ErrTruncated},
		{"cut ipv6 extension", Truncate(syn6, 14+40+7), ErrTruncated},
		{"cut ipv6 tcp", Truncate(syn6, 14+48+10), ErrTruncated},
		{"IHL below 5", mangled(Mangle{IHL: 4}), ErrMalformed},
		{"IHL past the packet", mangled(Mangle{IHL: 15}), ErrMalformed},
		{"version 5", mangled(Mangle{Version: 5}), ErrMalformed},
		{"total length below header", mangled(Mangle{IPLength: 10}), ErrMalformed},
		{"total length past the frame", mangled(Mangle{IPLength: 400}), ErrTruncated},
		{"tcp data offset 4", mangled(Mangle{TCPDataOffset: 4}), ErrMalformed},
		{"tcp data offset past the segment", mangled(Mangle{TCPDataOffset: 15}), ErrMalformed},
		{"ipv6 packet in an ipv4 ethertype", Build(Spec{EtherType: EtherTypeIPv4, Proto: ir.ProtoUDP, Src: a6, Dst: b6}), ErrMalformed},
	}
	for _, tc := range cases {
		_, err := Parse(tc.frame)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Parse error %v, want %v", tc.name, err, tc.want)
		}
	}
	// An ICMP error quoting too little is not malformed: it has no Embedded.
	cut, err := Parse(Build(Spec{Proto: ir.ProtoICMP, Src: b4, Dst: a4, ICMPType: 3, EmbeddedLen: 12,
		Embedded: &Spec{Proto: ir.ProtoUDP, Src: a4, Dst: b4}}))
	if err != nil || cut.Embedded != nil || len(cut.Payload) != 12 {
		t.Errorf("icmp error with a cut embedded packet: %+v, %v", cut, err)
	}
	// A shorter length field leaves trailing bytes (Ethernet padding), which is fine.
	if _, err := Parse(append(Build(tcpSyn()), 0, 0, 0, 0)); err != nil {
		t.Errorf("trailing padding: %v", err)
	}
	// Bad checksums still parse; receivers (not Parse) reject them.
	bad := mangled(Mangle{BadIPChecksum: true, BadL4Checksum: true})
	if _, err := Parse(bad); err != nil {
		t.Errorf("bad checksums: %v", err)
	}
	if onesComplementOK(bad[14:34]) || onesComplementOK(bad[26:34], []byte{0, 6, 0, 20}, bad[34:]) {
		t.Error("mangled checksums verify")
	}
	if got := Truncate(syn, 1000); !bytes.Equal(got, syn) {
		t.Error("Truncate past the end")
	}
}

func TestFromIR(t *testing.T) {
	p := ir.Packet{Proto: ir.ProtoICMPv6, Src: a6, Dst: b6, ICMPType: 128}
	s := verify(t, FromIR(p))
	if s.ICMPType != 128 || s.ICMPID != 0 || s.ICMPSeq != 1 || s.Src != a6 {
		t.Errorf("icmpv6 echo: %+v", s)
	}
	if s.TTL != 64 {
		t.Errorf("icmpv6 echo: hop limit %d, want 64", s.TTL)
	}
	p = ir.Packet{Proto: ir.ProtoTCP, Src: a4, Dst: b4, SPort: 1, DPort: 2, TCPFlags: ir.TCPSyn | ir.TCPAck}
	s = verify(t, FromIR(p))
	if s.TCPFlags != ir.TCPSyn|ir.TCPAck || s.DPort != 2 {
		t.Errorf("tcp: %+v", s)
	}
	// neighbour discovery goes out with hop limit 255 (eval.DefaultHopLimit)
	for typ, hl := range map[uint8]uint8{132: 64, 133: 255, 135: 255, 137: 255, 138: 64} {
		p := ir.Packet{Proto: ir.ProtoICMPv6, Src: a6, Dst: b6, ICMPType: typ}
		if s := verify(t, FromIR(p)); s.TTL != hl || s.ICMPType != typ {
			t.Errorf("icmpv6 type %d: hop limit %d, want %d", typ, s.TTL, hl)
		}
	}
}

// TestForeignICMP: ICMP in IPv6 and ICMPv6 in IPv4 are protocol numbers
// without ports, as in the datapath: the header is not read, so a short
// one is not malformed, and nothing ICMP is filled in.
func TestForeignICMP(t *testing.T) {
	fam := func(s Spec) string {
		if s.Src.Is6() {
			return "ipv6"
		}
		return "ipv4"
	}
	for _, s := range []Spec{
		{Proto: ir.ProtoICMP, Src: a6, Dst: b6, ICMPType: 8, ICMPID: 7},
		{Proto: ir.ProtoICMPv6, Src: a4, Dst: b4, ICMPType: 128, ICMPID: 7},
		{Proto: ir.ProtoICMPv6, Src: a4, Dst: b4, ICMPType: 1, Embedded: &Spec{Proto: ir.ProtoUDP, Src: b4, Dst: a4, SPort: 1, DPort: 2}},
	} {
		frame := Build(s)
		got, err := Parse(frame)
		if err != nil || got.Proto != s.Proto || got.ICMPType != 0 || got.ICMPID != 0 || got.Embedded != nil ||
			got.SPort != 0 || got.DPort != 0 || len(got.Payload) != len(frame)-14-got.L3Len {
			t.Errorf("%v in %s: %+v, %v", s.Proto, fam(s), got, err)
		}
		s.Embedded = nil
		if got, err := Parse(cutL4(s, 2)); err != nil || len(got.Payload) != 2 {
			t.Errorf("%v in %s, 2 bytes: %+v, %v", s.Proto, fam(s), got, err)
		}
	}
	// the native ones still need their 8 bytes
	for _, s := range []Spec{{Proto: ir.ProtoICMP, Src: a4, Dst: b4, ICMPType: 8}, {Proto: ir.ProtoICMPv6, Src: a6, Dst: b6, ICMPType: 128}} {
		if _, err := Parse(cutL4(s, 2)); !errors.Is(err, ErrTruncated) {
			t.Errorf("%v in %s, 2 bytes: %v", s.Proto, fam(s), err)
		}
	}
}

// cutL4 builds s with only n bytes of L4, the IP length fields agreeing.
func cutL4(s Spec, n int) []byte {
	ip := IP(s)
	hl := 40
	if !s.Src.Is6() {
		hl = 20
	}
	b := append(ethernet(etherType(s)), ip[:hl+n]...)
	if s.Src.Is6() {
		binary.BigEndian.PutUint16(b[14+4:], uint16(n))
	} else {
		binary.BigEndian.PutUint16(b[14+2:], uint16(hl+n))
	}
	return b
}

func TestDump(t *testing.T) {
	got := Dump([]byte("0123456789abcdefXY"))
	want := "0000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66\n0010  58 59\n"
	if got != want {
		t.Errorf("Dump:\n%s", got)
	}
	if strings.Count(Dump(Build(tcpSyn())), "\n") != 4 {
		t.Error("Dump of a 54-byte frame")
	}
}

// TestUDPLengthInFragments: a first fragment's UDP length is the whole
// datagram's, beyond the fragment; Parse accepts it as the datapath does
// (bpf TestFragmentedUDP), but still wants at least 8. An IPv6 atomic
// fragment is a whole datagram and gets the full check.
func TestUDPLengthInFragments(t *testing.T) {
	for _, src := range []netip.Addr{a4, a6} {
		dst, udpOff := b4, 14+20
		if src.Is6() {
			dst, udpOff = b6, 14+40+8
		}
		frames := Fragments(Spec{Proto: ir.ProtoUDP, Src: src, Dst: dst, SPort: 5000, DPort: 53, ID: 7, Payload: make([]byte, 1000)}, 400)
		s, err := Parse(frames[0])
		if err != nil || s.SPort != 5000 || s.DPort != 53 || len(s.Payload) != 400-8 {
			t.Errorf("%s first fragment: %+v, %v", src, s, err)
		}
		if n := binary.BigEndian.Uint16(frames[0][udpOff+4:]); n != 1008 {
			t.Errorf("%s first fragment: udp length %d", src, n)
		}
		binary.BigEndian.PutUint16(frames[0][udpOff+4:], 7)
		if _, err := Parse(frames[0]); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s first fragment with udp length 7: %v", src, err)
		}
	}
	atomic := Build(Spec{Proto: ir.ProtoUDP, Src: a6, Dst: b6, SPort: 1, DPort: 53, Frag: &Frag{}, Payload: []byte("x")})
	if s, err := Parse(atomic); err != nil || s.Frag == nil || s.Frag.More {
		t.Fatalf("atomic fragment: %+v, %v", s, err)
	}
	binary.BigEndian.PutUint16(atomic[14+40+8+4:], 100)
	if _, err := Parse(atomic); !errors.Is(err, ErrMalformed) {
		t.Errorf("atomic fragment with udp length beyond the packet: %v", err)
	}
}
