package ir

import (
	"net/netip"
	"strconv"
	"strings"
	"unicode"

	"github.com/polc-dev/polc/dsl"
)

// TextVersion is the first line of the text form; it changes when the
// form does.
const TextVersion = "polc-ir 1"

// Text prints the program in its stable text form: one record per line
// group, each group starting with a keyword in column 0 and its attributes
// indented by two spaces, groups separated by blank lines, in the order of
// the Program's fields. The same Program always gives the same bytes.
// docs/ir.md describes the form.
func (p *Program) Text() string {
	var b strings.Builder
	w := func(indent bool, words ...string) {
		if indent {
			b.WriteString("  ")
		}
		b.WriteString(strings.Join(words, " "))
		b.WriteByte('\n')
	}
	w(false, TextVersion)

	b.WriteByte('\n')
	for _, s := range p.Sources {
		digest := s.SHA256
		if digest == "" {
			digest = "-"
		}
		w(false, "source", s.Path, "sha256:"+digest)
	}

	for _, e := range p.Endpoints {
		b.WriteByte('\n')
		w(false, "endpoint", e.Name, "at", e.Pos.String())
		if e.Remote {
			w(true, "remote")
		}
		w(true, "labels", e.Labels.String())
		for _, a := range e.Addrs {
			w(true, "addr", a.String())
		}
	}

	for _, pol := range p.Policies {
		b.WriteByte('\n')
		w(false, "policy", pol.Name, "at", pol.Pos.String())
		if pol.Audit {
			w(true, "audit")
		}
		if pol.Tier != dsl.TierNone {
			w(true, "tier", pol.Tier.String(), "priority", strconv.Itoa(pol.Priority))
		}
		w(true, "select", pol.Subject.String())
		w(true, append([]string{"subjects"}, orNone(pol.Subjects)...)...)
		var iso []string
		for d, on := range pol.Isolates {
			if on {
				iso = append(iso, dsl.Direction(d).String())
			}
		}
		w(true, append([]string{"isolates"}, orNone(iso)...)...)
		ids := make([]string, len(pol.Rules))
		for i, id := range pol.Rules {
			ids[i] = strconv.FormatUint(uint64(id), 10)
		}
		w(true, append([]string{"rules"}, orNone(ids)...)...)
	}

	for _, r := range p.Rules {
		b.WriteByte('\n')
		w(false, "rule", strconv.FormatUint(uint64(r.ID), 10), "policy", r.Policy, "at", r.Pos.String())
		w(true, "text", r.Text)
		if r.Tier != dsl.TierNone {
			w(true, "tier", r.Tier.String(), "priority", strconv.Itoa(r.Priority), "rank", strconv.FormatUint(uint64(r.Rank), 10))
		}
		w(true, r.Dir.String(), r.Action.String())
		for _, peer := range r.Peers {
			words := []string{"peer", peer.Kind.String()}
			if peer.Kind == PeerSelector || peer.Kind == PeerCIDR {
				words = append(words, peer.String())
			}
			if peer.Set != "" {
				words = append(words, "set", peer.Set)
			}
			w(true, words...)
		}
		for _, pm := range r.Ports {
			w(true, "port", pm.String())
		}
	}

	if len(p.Prefilter) > 0 {
		b.WriteByte('\n')
		for _, pf := range p.Prefilter {
			w(false, "prefilter drop", pf.String())
		}
	}
	if p.DropTunnels {
		b.WriteByte('\n')
		w(false, "option drop-tunnels")
	}

	for _, t := range p.Tests {
		b.WriteByte('\n')
		w(false, "test", strconv.Quote(t.Name), "at", t.Pos.String())
		for i, s := range t.Steps {
			words := []string{"step", strconv.Itoa(i + 1), "at", s.Pos.String()}
			if s.Reply {
				words = append(words, "reply")
			}
			words = append(words, s.Packet.String())
			if s.Expect != nil {
				words = append(words, "expect", s.Expect.String())
			}
			w(true, words...)
		}
	}
	return b.String()
}

func orNone(words []string) []string {
	if len(words) == 0 {
		return []string{"-"}
	}
	return words
}

// String prints labels as `key=value key=value`, or `-` when there are none.
func (ls Labels) String() string {
	if len(ls) == 0 {
		return "-"
	}
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = Printable(l.Key) + "=" + Printable(l.Value)
	}
	return strings.Join(parts, " ")
}

// Printable is s as is when every rune of it prints, else Go-quoted, so
// that a label with control characters (an escape sequence, a newline)
// cannot rewrite a terminal or forge lines in the IR's text form.
func Printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0 {
		return s
	}
	return strconv.Quote(s)
}

// String prints a selector in the policy language: `{}` for the empty
// selector, `app=web` for one requirement, `{a=b, c in (x, y)}` for several.
func (s Selector) String() string {
	switch len(s.Reqs) {
	case 0:
		return "{}"
	case 1:
		return s.Reqs[0].String()
	}
	parts := make([]string, len(s.Reqs))
	for i, r := range s.Reqs {
		parts[i] = r.String()
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// String prints a requirement in the policy language.
func (r Requirement) String() string {
	key := Printable(r.Key)
	vals := make([]string, len(r.Values))
	for i, v := range r.Values {
		vals[i] = Printable(v)
	}
	val := ""
	if len(vals) > 0 {
		val = vals[0]
	}
	switch r.Op {
	case dsl.OpEq:
		return key + "=" + val
	case dsl.OpNotEq:
		return key + "!=" + val
	case dsl.OpIn:
		return key + " in (" + strings.Join(vals, ", ") + ")"
	case dsl.OpNotIn:
		return key + " notin (" + strings.Join(vals, ", ") + ")"
	case dsl.OpExists:
		return key + " exists"
	case dsl.OpNotExists:
		return "!" + key
	}
	return key + " ?op" + strconv.Itoa(int(r.Op))
}

func (k PeerKind) String() string {
	switch k {
	case PeerSelector:
		return "selector"
	case PeerCIDR:
		return "cidr"
	case PeerWorld:
		return "world"
	case PeerAny:
		return "any"
	}
	return "peer-kind-" + strconv.Itoa(int(k))
}

// String prints a peer in the policy language (a cidrset's entry as its
// CIDR): `app=web`, `10.0.0.0/8 except 10.1.0.0/16`, `world`, `any`. A host
// prefix prints as its address.
func (p Peer) String() string {
	switch p.Kind {
	case PeerSelector:
		return p.Selector.String()
	case PeerCIDR:
		s := hostOrPrefix(p.CIDR)
		switch len(p.Except) {
		case 0:
		case 1:
			s += " except " + hostOrPrefix(p.Except[0])
		default:
			ex := make([]string, len(p.Except))
			for i, e := range p.Except {
				ex[i] = hostOrPrefix(e)
			}
			s += " except (" + strings.Join(ex, ", ") + ")"
		}
		return s
	}
	return p.Kind.String()
}

func hostOrPrefix(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// String prints an L4 term in the policy language: `any`, `tcp` (every
// port), `tcp/80`, `udp/1000-2000`, `icmp`, `icmp type 8`,
// `icmpv6 type 128 code 0`.
func (m PortMatch) String() string {
	s := m.Proto.String()
	switch {
	case m.Proto.HasPorts():
		if m.Lo == 0 && m.Hi == 65535 {
			return s
		}
		s += "/" + strconv.Itoa(int(m.Lo))
		if m.Hi != m.Lo {
			s += "-" + strconv.Itoa(int(m.Hi))
		}
	case m.Proto.IsICMP():
		if m.ICMPType >= 0 {
			s += " type " + strconv.Itoa(m.ICMPType)
		}
		if m.ICMPCode >= 0 {
			s += " code " + strconv.Itoa(m.ICMPCode)
		}
	}
	return s
}

// TCPFlagsString prints TCP flags as `syn,ack` (in the order syn, ack,
// fin, rst, psh, urg), or `-` for none.
func TCPFlagsString(f uint8) string {
	var names []string
	for _, fl := range []struct {
		bit  uint8
		name string
	}{{TCPSyn, "syn"}, {TCPAck, "ack"}, {TCPFin, "fin"}, {TCPRst, "rst"}, {TCPPsh, "psh"}, {TCPUrg, "urg"}} {
		if f&fl.bit != 0 {
			names = append(names, fl.name)
		}
	}
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, ",")
}

// String prints a packet as `tcp 10.0.1.10:40000 -> 10.0.2.10:8080 flags
// syn`, `udp [fd00::1]:5000 -> [fd00::2]:53` or `icmp 10.0.0.1 -> 10.0.0.2
// type 8 code 0`, followed by `via NAME` when Via is set.
func (p Packet) String() string {
	s := p.Proto.String() + " "
	if p.Proto.HasPorts() {
		s += netip.AddrPortFrom(p.Src, p.SPort).String() + " -> " + netip.AddrPortFrom(p.Dst, p.DPort).String()
	} else {
		s += p.Src.String() + " -> " + p.Dst.String()
	}
	switch {
	case p.Proto == ProtoTCP:
		s += " flags " + TCPFlagsString(p.TCPFlags)
	case p.Proto.IsICMP():
		s += " type " + strconv.Itoa(int(p.ICMPType)) + " code " + strconv.Itoa(int(p.ICMPCode))
	}
	if p.Via != "" {
		s += " via " + p.Via
	}
	return s
}
