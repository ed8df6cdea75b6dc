package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/polc-dev/polc/compiler/ir"
)

// Errors Parse wraps, with the header and offset that failed.
var (
	ErrTruncated = errors.New("truncated")
	ErrMalformed = errors.New("malformed")
)

// Summary is what Parse reads from a frame: the fields the datapath and
// the reference evaluator look at.
type Summary struct {
	EtherType uint16
	NonIP     bool // not IPv4 or IPv6; nothing else is filled in

	Proto    ir.Proto // the L4 protocol (after IPv6 extension headers)
	Src, Dst netip.Addr
	TTL      uint8
	ID       uint32 // IPv4 identification, or the IPv6 fragment header's
	// Frag is set for a fragment (MF set or a non-zero offset, or any
	// IPv6 fragment header).
	Frag *Frag
	// L3Len is the length of the IP header with options and extension
	// headers; L4 starts there.
	L3Len int

	SPort, DPort uint16
	TCPFlags     uint8
	// The ICMP fields are read for ICMP in IPv4 and ICMPv6 in IPv6 only;
	// the other family's ICMP is a protocol without ports (all of it is
	// Payload), as in the datapath.
	ICMPType, ICMPCode uint8
	ICMPID, ICMPSeq    uint16
	ICMPRest           uint32
	// Embedded is the packet an ICMP error carries, parsed leniently: it
	// is usually cut short, so only its headers up to the ports are
	// required, and when even those are missing Embedded stays nil
	// (Payload then holds the bytes).
	Embedded *Summary
	// Payload is what follows the L4 header (for a non-first fragment,
	// everything after the IP headers).
	Payload []byte
}

// Parse reads an Ethernet frame. It fails, wrapping ErrTruncated or
// ErrMalformed, where the datapath must drop the packet as malformed: a
// header cut short, a bad version, IHL or length, a TCP data offset
// outside the segment. It does not verify checksums.
func Parse(frame []byte) (Summary, error) {
	if len(frame) < 14 {
		return Summary{}, fmt.Errorf("ethernet header: %d bytes: %w", len(frame), ErrTruncated)
	}
	s := Summary{EtherType: binary.BigEndian.Uint16(frame[12:])}
	switch s.EtherType {
	case EtherTypeIPv4, EtherTypeIPv6:
	default:
		s.NonIP = true
		return s, nil
	}
	return s, parseIP(&s, frame[14:], false)
}

// ParseIP reads an IP packet without Ethernet header.
func ParseIP(b []byte) (Summary, error) {
	var s Summary
	if len(b) > 0 && b[0]>>4 == 6 {
		s.EtherType = EtherTypeIPv6
	} else {
		s.EtherType = EtherTypeIPv4
	}
	return s, parseIP(&s, b, false)
}

// parseIP fills s from the IP packet b. embedded relaxes the length checks
// for the cut-short packet inside an ICMP error.
func parseIP(s *Summary, b []byte, embedded bool) error {
	var l4 []byte
	var err error
	if s.EtherType == EtherTypeIPv6 {
		l4, err = parseIPv6(s, b, embedded)
	} else {
		l4, err = parseIPv4(s, b, embedded)
	}
	if err != nil {
		return err
	}
	if s.Frag != nil && s.Frag.Offset > 0 {
		s.Payload = l4
		return nil
	}
	return parseL4(s, l4, embedded)
}

func parseIPv4(s *Summary, b []byte, embedded bool) ([]byte, error) {
	if len(b) < 20 {
		return nil, fmt.Errorf("ipv4 header: %d bytes: %w", len(b), ErrTruncated)
	}
	if v := b[0] >> 4; v != 4 {
		return nil, fmt.Errorf("ipv4 header: version %d: %w", v, ErrMalformed)
	}
	hl := int(b[0]&0x0f) * 4
	if hl < 20 {
		return nil, fmt.Errorf("ipv4 header: IHL %d: %w", hl/4, ErrMalformed)
	}
	total := int(binary.BigEndian.Uint16(b[2:]))
	if total < hl {
		return nil, fmt.Errorf("ipv4 header: total length %d below header length %d: %w", total, hl, ErrMalformed)
	}
	if len(b) < hl {
		return nil, fmt.Errorf("ipv4 header: IHL %d, %d bytes: %w", hl/4, len(b), ErrTruncated)
	}
	if total > len(b) {
		if !embedded {
			return nil, fmt.Errorf("ipv4 packet: total length %d, %d bytes: %w", total, len(b), ErrTruncated)
		}
		total = len(b)
	}
	s.ID = uint32(binary.BigEndian.Uint16(b[4:]))
	if frag := binary.BigEndian.Uint16(b[6:]); frag&0x3fff != 0 {
		s.Frag = &Frag{Offset: frag & 0x1fff * 8, More: frag&0x2000 != 0}
	}
	s.TTL = b[8]
	s.Proto = ir.Proto(b[9])
	s.Src = netip.AddrFrom4([4]byte(b[12:16]))
	s.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	s.L3Len = hl
	return b[hl:total], nil
}

func parseIPv6(s *Summary, b []byte, embedded bool) ([]byte, error) {
	if len(b) < 40 {
		return nil, fmt.Errorf("ipv6 header: %d bytes: %w", len(b), ErrTruncated)
	}
	if v := b[0] >> 4; v != 6 {
		return nil, fmt.Errorf("ipv6 header: version %d: %w", v, ErrMalformed)
	}
	end := 40 + int(binary.BigEndian.Uint16(b[4:]))
	if end > len(b) {
		if !embedded {
			return nil, fmt.Errorf("ipv6 packet: payload length %d, %d bytes: %w", end-40, len(b)-40, ErrTruncated)
		}
		end = len(b)
	}
	b = b[:end]
	s.TTL = b[7]
	s.Src = netip.AddrFrom16([16]byte(b[8:24]))
	s.Dst = netip.AddrFrom16([16]byte(b[24:40]))
	next, off := b[6], 40
	for {
		switch next {
		case ExtHopByHop, ExtRouting, ExtDestOpts, ExtFragment:
		default:
			s.Proto = ir.Proto(next)
			s.L3Len = off
			return b[off:], nil
		}
		if len(b) < off+8 {
			return nil, fmt.Errorf("ipv6 extension header %d at %d: %w", next, off, ErrTruncated)
		}
		n := 8
		if next == ExtFragment {
			fo := binary.BigEndian.Uint16(b[off+2:])
			s.Frag = &Frag{Offset: fo &^ 7, More: fo&1 != 0}
			s.ID = binary.BigEndian.Uint32(b[off+4:])
		} else {
			n = (int(b[off+1]) + 1) * 8
			if len(b) < off+n {
				return nil, fmt.Errorf("ipv6 extension header %d at %d: %d bytes: %w", next, off, n, ErrTruncated)
			}
		}
		next, off = b[off], off+n
	}
}

func parseL4(s *Summary, b []byte, embedded bool) error {
	// Inside an ICMP error only the first 8 bytes of L4 are promised.
	need := func(n int, what string) error {
		if len(b) < n {
			return fmt.Errorf("%s header: %d bytes: %w", what, len(b), ErrTruncated)
		}
		return nil
	}
	switch s.Proto {
	case ir.ProtoTCP:
		if embedded {
			if err := need(8, "tcp"); err != nil {
				return err
			}
			s.SPort, s.DPort = binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])
			if len(b) >= 14 {
				s.TCPFlags = b[13]
			}
			return nil
		}
		if err := need(20, "tcp"); err != nil {
			return err
		}
		off := int(b[12]>>4) * 4
		if off < 20 || off > len(b) {
			return fmt.Errorf("tcp header: data offset %d in %d bytes: %w", off/4, len(b), ErrMalformed)
		}
		s.SPort, s.DPort = binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])
		s.TCPFlags = b[13]
		s.Payload = b[off:]
	case ir.ProtoUDP:
		if err := need(8, "udp"); err != nil {
			return err
		}
		s.SPort, s.DPort = binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])
		n := int(binary.BigEndian.Uint16(b[4:]))
		// The length covers the whole datagram, which a first fragment
		// holds only part of: there it need only be at least 8. An IPv6
		// atomic fragment (offset 0, no MF) is a whole datagram.
		switch {
		case embedded:
			return nil
		case s.Frag != nil && s.Frag.More && n >= 8:
			s.Payload = b[8:min(n, len(b))]
		case n < 8 || n > len(b):
			return fmt.Errorf("udp header: length %d in %d bytes: %w", n, len(b), ErrMalformed)
		default:
			s.Payload = b[8:n]
		}
	case ir.ProtoSCTP:
		n := 12
		if embedded {
			n = 8
		}
		if err := need(n, "sctp"); err != nil {
			return err
		}
		s.SPort, s.DPort = binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])
		s.Payload = b[min(12, len(b)):]
	case ir.ProtoICMP, ir.ProtoICMPv6:
		if !nativeICMP(s) {
			// ICMP in IPv6 or ICMPv6 in IPv4: a protocol number without
			// ports, whose header the datapath does not read
			s.Payload = b
			return nil
		}
		if err := need(8, s.Proto.String()); err != nil {
			return err
		}
		s.ICMPType, s.ICMPCode = b[0], b[1]
		s.ICMPRest = binary.BigEndian.Uint32(b[4:])
		if icmpHasID(s.Proto, s.ICMPType) {
			s.ICMPID, s.ICMPSeq = binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:])
		}
		s.Payload = b[8:]
		if isICMPError(s.Proto, s.ICMPType) && !embedded {
			inner := Summary{EtherType: EtherTypeIPv4}
			if s.Proto == ir.ProtoICMPv6 {
				inner.EtherType = EtherTypeIPv6
			}
			// An embedded packet too short to read leaves the error
			// unrelated (the datapath then judges it by policy), not
			// malformed: routers may quote little.
			if parseIP(&inner, b[8:], true) == nil {
				s.Embedded = &inner
				s.Payload = nil
			}
		}
	default:
		s.Payload = b
	}
	return nil
}

// nativeICMP reports whether s's protocol is the ICMP of its family (ICMP
// in IPv4, ICMPv6 in IPv6): only then is it read as ICMP.
func nativeICMP(s *Summary) bool {
	if s.EtherType == EtherTypeIPv6 {
		return s.Proto == ir.ProtoICMPv6
	}
	return s.Proto == ir.ProtoICMP
}

// isICMPError reports whether a message type carries an original packet:
// destination unreachable, time exceeded, parameter problem, and for ICMP
// source quench and redirect, for ICMPv6 packet too big (the datapath's
// polc_is_icmp_error and eval.IsICMPError).
func isICMPError(proto ir.Proto, typ uint8) bool {
	if proto == ir.ProtoICMPv6 {
		return typ >= 1 && typ <= 4
	}
	return typ == 3 || typ == 4 || typ == 5 || typ == 11 || typ == 12
}
