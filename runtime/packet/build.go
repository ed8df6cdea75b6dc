package packet

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"

	"github.com/polc-dev/polc/compiler/ir"
)

// Ethernet addresses of every frame Build makes.
var (
	SrcMAC = [6]byte{0x02, 0, 0, 0, 0, 0x01}
	DstMAC = [6]byte{0x02, 0, 0, 0, 0, 0x02}
)

// EtherTypes.
const (
	EtherTypeIPv4 uint16 = 0x0800
	EtherTypeARP  uint16 = 0x0806
	EtherTypeIPv6 uint16 = 0x86dd
	// VLAN tag protocol identifiers: 802.1Q, 802.1ad (QinQ) and the
	// older 0x9100 some switches use for an outer tag.
	EtherTypeVLAN   uint16 = 0x8100
	EtherTypeQinQ   uint16 = 0x88a8
	EtherTypeVLAN91 uint16 = 0x9100
)

// IPv6 extension header types (next-header values).
const (
	ExtHopByHop  uint8 = 0
	ExtRouting   uint8 = 43
	ExtFragment  uint8 = 44
	ExtDestOpts  uint8 = 60
	NoNextHeader uint8 = 59
)

// Spec describes one frame. The zero value of each field is a sensible
// default; only the addresses are required for an IP packet. The family
// follows the addresses.
type Spec struct {
	// EtherType overrides the Ethernet type; 0 follows the addresses.
	// Setting IPv4 for IPv6 addresses (or the reverse) makes a mismatched
	// frame. Any other type makes a non-IP frame: the Ethernet header, then
	// Payload (for ARP without a Payload, a minimal request).
	EtherType uint16

	Proto    ir.Proto
	Src, Dst netip.Addr
	TTL      uint8 // IPv4 TTL or IPv6 hop limit; 0 means 64
	TOS      uint8 // IPv4 TOS or IPv6 traffic class
	// ID is the IPv4 identification (low 16 bits) and the IPv6 fragment
	// header's identification.
	ID       uint32
	DontFrag bool // IPv4 DF
	// IPv4Options are raw IPv4 options, padded with zeros (end of list) to
	// a multiple of 4 bytes.
	IPv4Options []byte
	// IPv6Ext are IPv6 extension headers, in order, before the fragment
	// header (if Frag is set).
	IPv6Ext []Ext
	// Frag makes the packet one fragment. With Offset 0 it carries the L4
	// header and Payload (checksummed as if the datagram ended there); with
	// Offset > 0 it carries Payload only. Fragments splits a whole datagram
	// correctly instead.
	Frag *Frag

	SPort, DPort uint16 // TCP, UDP, SCTP
	TCPFlags     uint8  // ir.TCP* bits
	Seq, Ack     uint32
	Window       uint16 // 0 means 65535
	// TCPOptions are raw TCP options, padded with zeros to a multiple of 4.
	TCPOptions []byte
	SCTPTag    uint32 // verification tag

	ICMPType, ICMPCode uint8
	ICMPID, ICMPSeq    uint16 // echo and other informational messages
	// ICMPRest is the four bytes after the checksum of an ICMP message
	// other than echo: the MTU of "fragmentation needed" (low 16 bits) or
	// ICMPv6 "packet too big", the pointer of "parameter problem".
	ICMPRest uint32
	// Embedded is the original packet an ICMP error carries (its IP
	// header and what follows); set it for error types.
	Embedded *Spec
	// EmbeddedLen caps the bytes of the embedded packet; 0 keeps as much
	// as fits in 576 bytes (IPv4) or 1280 bytes (IPv6) of error.
	EmbeddedLen int

	// Payload follows the L4 header (for SCTP, it becomes a DATA chunk;
	// without it, the packet carries an INIT chunk).
	Payload []byte

	// Mangle breaks the packet on purpose.
	Mangle Mangle
}

// Ext is one IPv6 extension header.
type Ext struct {
	Type uint8 // ExtHopByHop, ExtRouting, ExtDestOpts, or any other value
	// Data is the header after its next-header and length bytes. It is
	// padded to a multiple of 8 bytes in all (with PadN options for
	// hop-by-hop and destination options). An empty routing header gets
	// type 0 with no segments left.
	Data []byte
}

// Frag places a packet in a fragmented datagram.
type Frag struct {
	Offset uint16 // in bytes; a multiple of 8
	More   bool   // MF: more fragments follow
}

// Mangle holds the deliberate mistakes; the zero value builds a correct
// packet.
type Mangle struct {
	Version       uint8  // IP version nibble; 0 keeps 4 or 6
	IHL           uint8  // IPv4 header length in 32-bit words; 0 computes it
	IPLength      uint16 // IPv4 total length or IPv6 payload length; 0 computes it
	TCPDataOffset uint8  // TCP header length in 32-bit words; 0 computes it
	BadIPChecksum bool   // flip the IPv4 header checksum
	BadL4Checksum bool   // flip the TCP, UDP, SCTP, ICMP or ICMPv6 checksum
}

// Build returns the frame s describes.
func Build(s Spec) []byte {
	if s.EtherType != 0 && s.EtherType != EtherTypeIPv4 && s.EtherType != EtherTypeIPv6 {
		return append(ethernet(s.EtherType), nonIPPayload(s)...)
	}
	typ := s.EtherType
	if typ == 0 {
		typ = etherType(s)
	}
	return append(ethernet(typ), IP(s)...)
}

// Truncate returns a copy of the first n bytes of frame (all of it when
// shorter), for truncated-header cases. Length fields are left as they
// were, so they claim more than is there.
func Truncate(frame []byte, n int) []byte {
	n = max(0, min(n, len(frame)))
	return append([]byte(nil), frame[:n]...)
}

// Fragments builds the datagram s describes and splits everything after
// its IP header (the L4 header, then Payload) into fragments of at most
// size bytes (rounded down to a multiple of 8, at least 8), each a frame.
// The L4 checksum covers the whole datagram. s.Frag is ignored.
func Fragments(s Spec, size int) [][]byte {
	s.Frag = nil
	l4 := transport(s)
	size = max(8, size&^7)
	var frames [][]byte
	for off := 0; off < len(l4) || off == 0; off += size {
		end := min(off+size, len(l4))
		f := s
		f.Frag = &Frag{Offset: uint16(off), More: end < len(l4)}
		frames = append(frames, append(ethernet(etherType(s)), ipWith(f, l4[off:end])...))
		if end == len(l4) {
			break
		}
	}
	return frames
}

func etherType(s Spec) uint16 {
	if s.Src.Is6() || !s.Src.IsValid() && s.Dst.Is6() {
		return EtherTypeIPv6
	}
	return EtherTypeIPv4
}

func ethernet(typ uint16) []byte {
	b := make([]byte, 14)
	copy(b[0:6], DstMAC[:])
	copy(b[6:12], SrcMAC[:])
	binary.BigEndian.PutUint16(b[12:], typ)
	return b
}

func nonIPPayload(s Spec) []byte {
	if s.Payload != nil || s.EtherType != EtherTypeARP {
		return s.Payload
	}
	// A minimal ARP request: Ethernet/IPv4, who has 0.0.0.0.
	arp := []byte{0, 1, 8, 0, 6, 4, 0, 1}
	arp = append(arp, SrcMAC[:]...)
	arp = append(arp, 0, 0, 0, 0)
	arp = append(arp, make([]byte, 6+4)...)
	return arp
}

// IP returns the packet s describes without the Ethernet header.
func IP(s Spec) []byte {
	if s.Frag != nil && s.Frag.Offset > 0 {
		return ipWith(s, s.Payload)
	}
	return ipWith(s, transport(s))
}

func is6(s Spec) bool { return etherType(s) == EtherTypeIPv6 }

// ipWith wraps data (an L4 segment or a part of one) in s's IP header(s).
func ipWith(s Spec, data []byte) []byte {
	if is6(s) {
		return ipv6(s, data)
	}
	return ipv4(s, data)
}

func ttl(s Spec) uint8 {
	if s.TTL == 0 {
		return 64
	}
	return s.TTL
}

func ipv4(s Spec, data []byte) []byte {
	opts := pad(s.IPv4Options, 4)
	h := make([]byte, 20, 20+len(opts)+len(data))
	hl := 20 + len(opts)
	version, ihl := uint8(4), uint8(hl/4)
	if s.Mangle.Version != 0 {
		version = s.Mangle.Version
	}
	if s.Mangle.IHL != 0 {
		ihl = s.Mangle.IHL
	}
	h[0] = version<<4 | ihl&0x0f
	h[1] = s.TOS
	total := uint16(hl + len(data))
	if s.Mangle.IPLength != 0 {
		total = s.Mangle.IPLength
	}
	binary.BigEndian.PutUint16(h[2:], total)
	binary.BigEndian.PutUint16(h[4:], uint16(s.ID))
	var frag uint16
	if s.DontFrag {
		frag |= 0x4000
	}
	if s.Frag != nil {
		if s.Frag.More {
			frag |= 0x2000
		}
		frag |= s.Frag.Offset / 8 & 0x1fff
	}
	binary.BigEndian.PutUint16(h[6:], frag)
	h[8] = ttl(s)
	h[9] = uint8(s.Proto)
	src, dst := s.Src.Unmap().As4(), s.Dst.Unmap().As4()
	copy(h[12:16], src[:])
	copy(h[16:20], dst[:])
	h = append(h, opts...)
	sum := Checksum(h)
	if s.Mangle.BadIPChecksum {
		sum = ^sum
	}
	binary.BigEndian.PutUint16(h[10:], sum)
	return append(h, data...)
}

func ipv6(s Spec, data []byte) []byte {
	// Extension headers, chained by next-header, the fragment header last.
	exts := s.IPv6Ext
	if s.Frag != nil {
		exts = append(exts[:len(exts):len(exts)], Ext{Type: ExtFragment})
	}
	var ext []byte
	for i, x := range exts {
		next := uint8(s.Proto)
		if i+1 < len(exts) {
			next = exts[i+1].Type
		}
		ext = append(ext, extHeader(s, x, next)...)
	}
	h := make([]byte, 40, 40+len(ext)+len(data))
	version := uint8(6)
	if s.Mangle.Version != 0 {
		version = s.Mangle.Version
	}
	binary.BigEndian.PutUint32(h[0:], uint32(version)<<28|uint32(s.TOS)<<20)
	plen := uint16(len(ext) + len(data))
	if s.Mangle.IPLength != 0 {
		plen = s.Mangle.IPLength
	}
	binary.BigEndian.PutUint16(h[4:], plen)
	h[6] = uint8(s.Proto)
	if len(exts) > 0 {
		h[6] = exts[0].Type
	}
	h[7] = ttl(s)
	src, dst := s.Src.As16(), s.Dst.As16()
	copy(h[8:24], src[:])
	copy(h[24:40], dst[:])
	h = append(h, ext...)
	return append(h, data...)
}

func extHeader(s Spec, x Ext, next uint8) []byte {
	if x.Type == ExtFragment && x.Data == nil && s.Frag != nil {
		b := make([]byte, 8)
		b[0] = next
		off := s.Frag.Offset &^ 7
		if s.Frag.More {
			off |= 1
		}
		binary.BigEndian.PutUint16(b[2:], off)
		binary.BigEndian.PutUint32(b[4:], s.ID)
		return b
	}
	data := x.Data
	if x.Type == ExtRouting && data == nil {
		data = make([]byte, 6) // type 0, no segments left
	}
	b := append([]byte{next, 0}, data...)
	switch x.Type {
	case ExtHopByHop, ExtDestOpts:
		b = padOptions(b)
	default:
		b = pad(b, 8)
	}
	b[1] = uint8(len(b)/8 - 1)
	return b
}

// padOptions pads an IPv6 options header to a multiple of 8 with Pad1 or
// PadN.
func padOptions(b []byte) []byte {
	switch n := (8 - len(b)%8) % 8; n {
	case 0:
		return b
	case 1:
		return append(b, 0) // Pad1
	default:
		return append(append(b, 1, uint8(n-2)), make([]byte, n-2)...) // PadN
	}
}

// pad appends zeros to a multiple of n bytes.
func pad(b []byte, n int) []byte {
	b = append([]byte(nil), b...)
	for len(b)%n != 0 {
		b = append(b, 0)
	}
	return b
}

// transport returns the L4 segment with its checksum.
func transport(s Spec) []byte {
	var b []byte
	switch s.Proto {
	case ir.ProtoTCP:
		b = tcp(s)
	case ir.ProtoUDP:
		b = make([]byte, 8, 8+len(s.Payload))
		binary.BigEndian.PutUint16(b[0:], s.SPort)
		binary.BigEndian.PutUint16(b[2:], s.DPort)
		binary.BigEndian.PutUint16(b[4:], uint16(8+len(s.Payload)))
		b = append(b, s.Payload...)
		sum := pseudoChecksum(s, b)
		if sum == 0 {
			sum = 0xffff // 0 means "no checksum" in UDP
		}
		putSum(b[6:], sum, s.Mangle.BadL4Checksum)
	case ir.ProtoSCTP:
		b = sctp(s)
	case ir.ProtoICMP, ir.ProtoICMPv6:
		b = icmp(s)
	default:
		b = append([]byte(nil), s.Payload...)
	}
	return b
}

func tcp(s Spec) []byte {
	opts := pad(s.TCPOptions, 4)
	hl := 20 + len(opts)
	b := make([]byte, 20, hl+len(s.Payload))
	binary.BigEndian.PutUint16(b[0:], s.SPort)
	binary.BigEndian.PutUint16(b[2:], s.DPort)
	binary.BigEndian.PutUint32(b[4:], s.Seq)
	binary.BigEndian.PutUint32(b[8:], s.Ack)
	off := uint8(hl / 4)
	if s.Mangle.TCPDataOffset != 0 {
		off = s.Mangle.TCPDataOffset
	}
	b[12] = off << 4
	b[13] = s.TCPFlags
	win := s.Window
	if win == 0 {
		win = 65535
	}
	binary.BigEndian.PutUint16(b[14:], win)
	b = append(b, opts...)
	b = append(b, s.Payload...)
	putSum(b[16:], pseudoChecksum(s, b), s.Mangle.BadL4Checksum)
	return b
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func sctp(s Spec) []byte {
	b := make([]byte, 12, 12+20+len(s.Payload)+3)
	binary.BigEndian.PutUint16(b[0:], s.SPort)
	binary.BigEndian.PutUint16(b[2:], s.DPort)
	binary.BigEndian.PutUint32(b[4:], s.SCTPTag)
	if len(s.Payload) == 0 {
		// INIT: initiate tag, a_rwnd, outbound and inbound streams, initial TSN.
		b = append(b, 1, 0, 0, 20, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1)
	} else {
		// DATA, unfragmented (B and E flags): TSN 1, stream 0, sequence 0, PPID 0.
		chunk := []byte{0, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint16(chunk[2:], uint16(16+len(s.Payload)))
		b = pad(append(append(b, chunk...), s.Payload...), 4)
	}
	// The CRC32c goes on the wire in little-endian order (RFC 4960, appendix B).
	sum := crc32.Checksum(b, castagnoli)
	if s.Mangle.BadL4Checksum {
		sum = ^sum
	}
	binary.LittleEndian.PutUint32(b[8:], sum)
	return b
}

// icmpHasID reports whether an ICMP message type carries an identifier
// and sequence number (echo and the other informational messages).
func icmpHasID(proto ir.Proto, typ uint8) bool {
	if proto == ir.ProtoICMPv6 {
		return typ == 128 || typ == 129
	}
	switch typ {
	case 0, 8, 13, 14, 15, 16, 17, 18:
		return true
	}
	return false
}

func icmp(s Spec) []byte {
	b := make([]byte, 8)
	b[0], b[1] = s.ICMPType, s.ICMPCode
	if s.Embedded == nil && icmpHasID(s.Proto, s.ICMPType) {
		binary.BigEndian.PutUint16(b[4:], s.ICMPID)
		binary.BigEndian.PutUint16(b[6:], s.ICMPSeq)
	} else {
		binary.BigEndian.PutUint32(b[4:], s.ICMPRest)
	}
	if s.Embedded != nil {
		inner := IP(*s.Embedded)
		limit := s.EmbeddedLen
		if limit == 0 {
			// What fits in the minimum MTU, as RFC 1812 and RFC 4443 ask.
			if s.Proto == ir.ProtoICMPv6 {
				limit = 1280 - 40 - extLen(s) - 8
			} else {
				limit = 576 - 20 - len(pad(s.IPv4Options, 4)) - 8
			}
		}
		b = append(b, inner[:min(limit, len(inner))]...)
	}
	b = append(b, s.Payload...)
	var sum uint16
	if s.Proto == ir.ProtoICMPv6 {
		sum = pseudoChecksum(s, b)
	} else {
		sum = Checksum(b)
	}
	putSum(b[2:], sum, s.Mangle.BadL4Checksum)
	return b
}

func extLen(s Spec) int {
	n := 0
	for _, x := range s.IPv6Ext {
		n += len(extHeader(s, x, 0))
	}
	return n
}

func putSum(b []byte, sum uint16, bad bool) {
	if bad {
		sum = ^sum
		if sum == 0 {
			sum = 1
		}
	}
	binary.BigEndian.PutUint16(b, sum)
}

// pseudoChecksum is the Internet checksum of the segment b with the IPv4
// or IPv6 pseudo-header of s (the checksum field in b must be zero).
func pseudoChecksum(s Spec, b []byte) uint16 {
	var ph []byte
	if is6(s) {
		src, dst := s.Src.As16(), s.Dst.As16()
		ph = append(ph, src[:]...)
		ph = append(ph, dst[:]...)
		ph = binary.BigEndian.AppendUint32(ph, uint32(len(b)))
		ph = append(ph, 0, 0, 0, uint8(s.Proto))
	} else {
		src, dst := s.Src.Unmap().As4(), s.Dst.Unmap().As4()
		ph = append(ph, src[:]...)
		ph = append(ph, dst[:]...)
		ph = append(ph, 0, uint8(s.Proto))
		ph = binary.BigEndian.AppendUint16(ph, uint16(len(b)))
	}
	return ^fold(sum(sum(0, ph), b))
}

// Checksum is the Internet checksum (RFC 1071) of b.
func Checksum(b []byte) uint16 { return ^fold(sum(0, b)) }

func sum(acc uint64, b []byte) uint64 {
	for i := 0; i+1 < len(b); i += 2 {
		acc += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if len(b)%2 == 1 {
		acc += uint64(b[len(b)-1]) << 8
	}
	return acc
}

func fold(acc uint64) uint16 {
	for acc > 0xffff {
		acc = acc&0xffff + acc>>16
	}
	return uint16(acc)
}

// IsVLAN reports whether an Ethernet type is a VLAN tag's.
func IsVLAN(etherType uint16) bool {
	return etherType == EtherTypeVLAN || etherType == EtherTypeQinQ || etherType == EtherTypeVLAN91
}
