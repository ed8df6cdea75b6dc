package bpf

import (
	"encoding/binary"
	"net/netip"
)

// testPacket describes a packet for the datapath tests. It is a small
// builder of our own; runtime/packet holds the general one.
type testPacket struct {
	src, dst     netip.Addr
	proto        uint8
	sport, dport uint16
	tcpFlags     uint8
	icmpType     uint8
	icmpCode     uint8
	icmpID       uint16
	payload      []byte // L4 payload (for ICMP errors: the quoted packet)
	// fragments: fragID with fragOffset (in 8-byte units) and moreFrags
	fragID     uint32
	fragOffset uint16
	moreFrags  bool
	ipv6Ext    []uint8 // IPv6 extension headers (next-header values) before L4
	etherType  uint16  // overrides the ethertype when non-zero
	hopLimit   uint8   // IPv4 TTL or IPv6 hop limit; 0 means 64
}

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

func tcp(src, dst string, sport, dport uint16, flags uint8) testPacket {
	return testPacket{src: netip.MustParseAddr(src), dst: netip.MustParseAddr(dst), proto: 6, sport: sport, dport: dport, tcpFlags: flags}
}

func udp(src, dst string, sport, dport uint16) testPacket {
	return testPacket{src: netip.MustParseAddr(src), dst: netip.MustParseAddr(dst), proto: 17, sport: sport, dport: dport}
}

func sctp(src, dst string, sport, dport uint16) testPacket {
	return testPacket{src: netip.MustParseAddr(src), dst: netip.MustParseAddr(dst), proto: 132, sport: sport, dport: dport}
}

func icmp(src, dst string, typ, code uint8, id uint16) testPacket {
	s := netip.MustParseAddr(src)
	p := uint8(1)
	if s.Is6() {
		p = 58
	}
	return testPacket{src: s, dst: netip.MustParseAddr(dst), proto: p, icmpType: typ, icmpCode: code, icmpID: id}
}

// nd is an ICMPv6 neighbour discovery message (133–137) as a neighbour
// sends it: hop limit 255.
func nd(src, dst string, typ uint8) testPacket {
	p := icmp(src, dst, typ, 0, 0)
	p.hopLimit = 255
	return p
}

func (p testPacket) ttl() uint8 {
	if p.hopLimit == 0 {
		return 64
	}
	return p.hopLimit
}

// reply swaps addresses and ports.
func (p testPacket) reply(flags uint8) testPacket {
	p.src, p.dst = p.dst, p.src
	p.sport, p.dport = p.dport, p.sport
	p.tcpFlags = flags
	return p
}

func (p testPacket) l4() []byte {
	var b []byte
	switch {
	case p.proto == 6:
		b = make([]byte, 20)
		binary.BigEndian.PutUint16(b[0:], p.sport)
		binary.BigEndian.PutUint16(b[2:], p.dport)
		b[12] = 5 << 4
		b[13] = p.tcpFlags
		binary.BigEndian.PutUint16(b[14:], 65535)
	case p.proto == 17:
		b = make([]byte, 8)
		binary.BigEndian.PutUint16(b[0:], p.sport)
		binary.BigEndian.PutUint16(b[2:], p.dport)
		binary.BigEndian.PutUint16(b[4:], uint16(8+len(p.payload)))
	case p.proto == 132:
		b = make([]byte, 12)
		binary.BigEndian.PutUint16(b[0:], p.sport)
		binary.BigEndian.PutUint16(b[2:], p.dport)
	case p.proto == 1 || p.proto == 58:
		b = make([]byte, 8)
		b[0] = p.icmpType
		b[1] = p.icmpCode
		binary.BigEndian.PutUint16(b[4:], p.icmpID)
	}
	return append(b, p.payload...)
}

// ip returns the IP packet (no Ethernet header).
func (p testPacket) ip() []byte {
	l4 := p.l4()
	body := l4
	if p.fragOffset != 0 {
		body = l4[:8] // a later fragment carries payload, not the header
	}
	if p.src.Is4() {
		h := make([]byte, 20)
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(body)))
		binary.BigEndian.PutUint16(h[4:], uint16(p.fragID))
		fo := p.fragOffset & 0x1fff
		if p.moreFrags {
			fo |= 0x2000
		}
		binary.BigEndian.PutUint16(h[6:], fo)
		h[8] = p.ttl()
		h[9] = p.proto
		s, d := p.src.As4(), p.dst.As4()
		copy(h[12:], s[:])
		copy(h[16:], d[:])
		var sum uint32
		for i := 0; i < 20; i += 2 {
			sum += uint32(binary.BigEndian.Uint16(h[i:]))
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
		return append(h, body...)
	}
	var ext []byte
	nh := p.proto
	// the fragment header goes last, just before L4
	if p.fragID != 0 || p.moreFrags || p.fragOffset != 0 {
		f := make([]byte, 8)
		f[0] = nh
		fo := p.fragOffset << 3
		if p.moreFrags {
			fo |= 1
		}
		binary.BigEndian.PutUint16(f[2:], fo)
		binary.BigEndian.PutUint32(f[4:], p.fragID)
		ext = f
		nh = 44
	}
	for i := len(p.ipv6Ext) - 1; i >= 0; i-- {
		e := make([]byte, 8)
		e[0] = nh
		ext = append(e, ext...)
		nh = p.ipv6Ext[i]
	}
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(ext)+len(body)))
	h[6] = nh
	h[7] = p.ttl()
	s, d := p.src.As16(), p.dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	h = append(h, ext...)
	return append(h, body...)
}

// bytes returns the Ethernet frame.
func (p testPacket) bytes() []byte {
	eth := make([]byte, 14)
	copy(eth[0:], []byte{2, 0, 0, 0, 0, 2})
	copy(eth[6:], []byte{2, 0, 0, 0, 0, 1})
	et := uint16(0x0800)
	if p.src.Is6() {
		et = 0x86dd
	}
	if p.etherType != 0 {
		et = p.etherType
	}
	binary.BigEndian.PutUint16(eth[12:], et)
	return append(eth, p.ip()...)
}
