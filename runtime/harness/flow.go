package harness

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
	"github.com/polc-dev/polc/dsl/k8s"
)

// ParseFlow reads the packet `polc explain` asks about, written like a
// test packet of the language (docs/language.md), with endpoint names
// resolved against prog:
//
//	tcp 10.0.1.10:40000 -> 10.0.2.10:8080
//	udp web -> api:53
//	sctp [fd00::1]:5000 -> [fd00::2]:80
//	icmp 10.0.1.10 -> 10.0.2.10 type 8 code 0
//	icmpv6 web -> api
//	tcp web -> api:8080 flags ack
//	tcp web -> api:8080 flags syn via evil
//
// As in tests: the source port defaults to 40000, tcp, udp and sctp need a
// destination port, icmp without a type is an echo request, a TCP packet
// without flags is a SYN, and an endpoint name stands for its first
// address of the family both sides share (IPv4 first). The options (type,
// code, flags, via) follow the destination; `via NAME` names the endpoint
// of prog whose interface sends the packet (ir.Packet.Via), whatever its
// source address: without it, the packet leaves from the interface of the
// endpoint that owns the source, if any.
func ParseFlow(prog *ir.Program, s string) (ir.Packet, error) {
	var p ir.Packet
	words := strings.Fields(strings.ReplaceAll(s, "->", " -> "))
	bad := func(format string, args ...any) (ir.Packet, error) {
		return ir.Packet{}, fmt.Errorf("flow %q: %s", s, fmt.Sprintf(format, args...))
	}
	if len(words) < 4 || words[2] != "->" {
		return bad("want PROTO SRC -> DST, e.g. 'tcp 10.0.1.10:40000 -> 10.0.2.10:8080' or 'icmp web -> api type 8 code 0'")
	}
	switch strings.ToLower(words[0]) {
	case "tcp":
		p.Proto = ir.ProtoTCP
	case "udp":
		p.Proto = ir.ProtoUDP
	case "sctp":
		p.Proto = ir.ProtoSCTP
	case "icmp":
		p.Proto = ir.ProtoICMP
	case "icmpv6":
		p.Proto = ir.ProtoICMPv6
	default:
		return bad("unknown protocol %q: want tcp, udp, sctp, icmp or icmpv6", words[0])
	}
	src, err := parseFlowHost(words[1])
	if err != nil {
		return bad("source: %v", err)
	}
	dst, err := parseFlowHost(words[3])
	if err != nil {
		return bad("destination: %v", err)
	}

	// Options: type N, code N, flags F[,F...], via NAME.
	typ, code := -1, -1
	flagsSet := false
	for rest := words[4:]; len(rest) > 0; {
		switch strings.ToLower(rest[0]) {
		case "via":
			if len(rest) < 2 {
				return bad("via needs an endpoint name")
			}
			if p.Via != "" {
				return bad("via given twice")
			}
			if flowEndpoint(prog, rest[1]) == nil {
				return bad("unknown endpoint %q after via%s", rest[1], suggestEndpoint(prog, rest[1]))
			}
			p.Via = rest[1]
			rest = rest[2:]
		case "type", "code":
			if len(rest) < 2 {
				return bad("%s needs a number", rest[0])
			}
			if !p.Proto.IsICMP() {
				return bad("ICMP %s on a %s packet", rest[0], p.Proto)
			}
			n, err := strconv.ParseUint(rest[1], 10, 8)
			if err != nil {
				return bad("%s %q: want 0 to 255", rest[0], rest[1])
			}
			if strings.EqualFold(rest[0], "type") {
				typ = int(n)
			} else {
				code = int(n)
			}
			rest = rest[2:]
		case "flags":
			if p.Proto != ir.ProtoTCP {
				return bad("TCP flags on a %s packet", p.Proto)
			}
			// The flags run to the next option: "syn, ack" is two
			// words.
			end := 1
			for end < len(rest) && !flowOptions[strings.ToLower(rest[end])] {
				end++
			}
			list := strings.Join(rest[1:end], ",")
			rest = rest[end:]
			for _, f := range strings.Split(list, ",") {
				if f == "" {
					continue
				}
				bit, ok := tcpFlags[strings.ToLower(f)]
				if !ok {
					return bad("unknown TCP flag %q: want syn, ack, fin, rst, psh or urg", f)
				}
				p.TCPFlags |= bit
				flagsSet = true
			}
			if !flagsSet {
				return bad("flags needs at least one flag")
			}
		default:
			return bad("unexpected %q: want type, code, flags or via", rest[0])
		}
	}
	if code >= 0 && typ < 0 {
		return bad("an ICMP code needs a type")
	}

	// Ports.
	if p.Proto.HasPorts() {
		p.SPort = 40000
		if src.port >= 0 {
			p.SPort = uint16(src.port)
		}
		if dst.port < 0 {
			return bad("a %s packet needs a destination port, e.g. %s:80", p.Proto, dst.host)
		}
		p.DPort = uint16(dst.port)
	} else if src.port >= 0 || dst.port >= 0 {
		return bad("%s packets have no ports", p.Proto)
	}

	// Family and addresses.
	var v6 bool
	switch {
	case src.addr.IsValid() && dst.addr.IsValid() && src.addr.Is4() != dst.addr.Is4():
		return bad("mixed address families: %s and %s", src.addr, dst.addr)
	case src.addr.IsValid():
		v6 = src.addr.Is6()
	case dst.addr.IsValid():
		v6 = dst.addr.Is6()
	case p.Proto == ir.ProtoICMP:
		v6 = false
	case p.Proto == ir.ProtoICMPv6:
		v6 = true
	default:
		e1, e2 := flowEndpoint(prog, src.host), flowEndpoint(prog, dst.host)
		if e1 != nil && e2 != nil {
			_, s4 := firstAddr(e1, false)
			_, d4 := firstAddr(e2, false)
			v6 = !(s4 && d4)
		}
	}
	if p.Proto == ir.ProtoICMP && v6 {
		return bad("icmp is IPv4: use icmpv6 for IPv6 addresses")
	}
	if p.Proto == ir.ProtoICMPv6 && !v6 {
		return bad("icmpv6 is IPv6: use icmp for IPv4 addresses")
	}
	for _, h := range []*flowHost{&src, &dst} {
		if h.addr.IsValid() {
			continue
		}
		e := flowEndpoint(prog, h.host)
		if e == nil {
			return bad("unknown endpoint %q (an address or an endpoint name)%s", h.host, suggestEndpoint(prog, h.host))
		}
		a, ok := firstAddr(e, v6)
		if !ok {
			fam := "IPv4"
			if v6 {
				fam = "IPv6"
			}
			return bad("endpoint %q has no %s address", h.host, fam)
		}
		h.addr = a
	}
	p.Src, p.Dst = src.addr, dst.addr

	if p.Proto.IsICMP() {
		p.ICMPType = 8
		if p.Proto == ir.ProtoICMPv6 {
			p.ICMPType = 128
		}
		if typ >= 0 {
			p.ICMPType = uint8(typ)
		}
		if code >= 0 {
			p.ICMPCode = uint8(code)
		}
	}
	if p.Proto == ir.ProtoTCP && !flagsSet {
		p.TCPFlags = ir.TCPSyn
	}
	return p, nil
}

// suggestEndpoint is the "did you mean" for an unknown endpoint name: the
// endpoints of that name in any namespace (NS.NAME, NS.KIND/NAME: Kubernetes
// endpoints written without their namespace or kind), else the nearest
// name, else nothing.
func suggestEndpoint(prog *ir.Program, name string) string {
	var same, names []string
	for _, e := range prog.Endpoints {
		names = append(names, e.Name)
		_, local, ok := strings.Cut(e.Name, ".")
		if !ok {
			continue
		}
		_, bare, _ := strings.Cut(local, "/")
		if local == name || bare == name {
			same = append(same, e.Name)
		}
	}
	switch {
	case len(same) == 1:
		return fmt.Sprintf("; did you mean %q?", same[0])
	case len(same) > 1:
		slices.Sort(same)
		if len(same) > 5 {
			same = append(same[:5], "...")
		}
		return fmt.Sprintf("; did you mean one of %s?", strings.Join(same, ", "))
	}
	return dsl.DidYouMean(name, names)
}

// flowOptions are the words that start an option after the destination.
var flowOptions = map[string]bool{"type": true, "code": true, "flags": true, "via": true}

var tcpFlags = map[string]uint8{
	"fin": ir.TCPFin, "syn": ir.TCPSyn, "rst": ir.TCPRst,
	"psh": ir.TCPPsh, "ack": ir.TCPAck, "urg": ir.TCPUrg,
}

type flowHost struct {
	host string     // as written, without the port
	addr netip.Addr // a literal, or filled in from an endpoint
	port int        // -1: none
}

// parseFlowHost reads ADDR, ADDR:PORT, [ADDR6], [ADDR6]:PORT, NAME or NAME:PORT.
func parseFlowHost(w string) (flowHost, error) {
	h := flowHost{port: -1}
	host, port := w, ""
	if strings.HasPrefix(w, "[") {
		end := strings.Index(w, "]")
		if end < 0 {
			return h, fmt.Errorf("%q: missing ]", w)
		}
		host, port = w[1:end], w[end+1:]
		if port != "" && !strings.HasPrefix(port, ":") {
			return h, fmt.Errorf("%q: want [ADDRESS]:PORT", w)
		}
		port = strings.TrimPrefix(port, ":")
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() {
			return h, fmt.Errorf("%q: not an IPv6 address", host)
		}
		if a.Is4In6() {
			return h, fmt.Errorf("%q: IPv4-mapped addresses are not supported; write the IPv4 address %s", host, a.Unmap())
		}
		if a.Zone() != "" {
			return h, fmt.Errorf("%q: addresses with a zone are not supported", host)
		}
		h.addr = a
	} else {
		if a, err := netip.ParseAddr(w); err == nil && a.Is6() && a.Zone() == "" && !a.Is4In6() {
			// An IPv6 address without a port needs no brackets.
			h.host, h.addr = w, a
			return h, nil
		}
		if strings.Count(w, ":") > 1 {
			return h, fmt.Errorf("%q: write IPv6 addresses with a port in brackets, e.g. [fd00::1]:80", w)
		}
		if i := strings.Index(w, ":"); i >= 0 {
			host, port = w[:i], w[i+1:]
		}
		if a, err := netip.ParseAddr(host); err == nil {
			h.addr = a
		} else if _, err := netip.ParsePrefix(host); err == nil {
			return h, fmt.Errorf("%q: a packet goes to one address, not a prefix", host)
		} else if host == "" || strings.ContainsAny(host, "[]") || strings.HasPrefix(host, "/") || strings.HasSuffix(host, "/") ||
			(host[0] >= '0' && host[0] <= '9' && strings.Count(host, ".") == 3) {
			// A name may hold a slash: a workload's endpoint, NS.deploy/NAME.
			return h, fmt.Errorf("%q: not an address or endpoint name", host)
		}
	}
	h.host = host
	if port != "" || strings.HasSuffix(w, ":") {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return h, fmt.Errorf("port %q: want 1 to 65535", port)
		}
		h.port = int(n)
	}
	return h, nil
}

func flowEndpoint(prog *ir.Program, name string) *ir.Endpoint {
	for _, e := range prog.Endpoints {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// firstAddr is an endpoint's first address of a family, as tests use it.
func firstAddr(e *ir.Endpoint, v6 bool) (netip.Addr, bool) {
	for _, p := range e.Addrs {
		if p.Addr().Is6() == v6 {
			return p.Masked().Addr(), true
		}
	}
	return netip.Addr{}, false
}

// FormatPacket writes a packet the way ParseFlow reads it.
func FormatPacket(p ir.Packet) string {
	host := func(a netip.Addr, port uint16) string {
		s := a.String()
		if a.Is6() {
			s = "[" + s + "]"
		}
		if p.Proto.HasPorts() {
			s += ":" + strconv.Itoa(int(port))
		}
		return s
	}
	s := p.Proto.String() + " " + host(p.Src, p.SPort) + " -> " + host(p.Dst, p.DPort)
	switch {
	case p.Proto.IsICMP():
		s += fmt.Sprintf(" type %d code %d", p.ICMPType, p.ICMPCode)
	case p.Proto == ir.ProtoTCP && p.TCPFlags != 0:
		var fs []string
		for _, f := range []struct {
			name string
			bit  uint8
		}{{"syn", ir.TCPSyn}, {"ack", ir.TCPAck}, {"fin", ir.TCPFin}, {"rst", ir.TCPRst}, {"psh", ir.TCPPsh}, {"urg", ir.TCPUrg}} {
			if p.TCPFlags&f.bit != 0 {
				fs = append(fs, f.name)
			}
		}
		s += " flags " + strings.Join(fs, ",")
	}
	if p.Via != "" {
		s += " via " + p.Via
	}
	return s
}

// ServiceFlow is a flow to a Kubernetes Service, as ParseServiceFlow
// translates it: the packet each backend gets.
type ServiceFlow struct {
	Dst         string // the destination as written
	Translation k8s.Translation
	// Packets holds, for each of Translation.Targets, the packet as the
	// policy hooks see it; none when the Service has no backend.
	Packets []ir.Packet
}

// ParseServiceFlow is ParseFlow for inputs with Kubernetes Services:
// a flow whose destination is a Service of svcs, written svc/NS/NAME:PORT
// (PORT a number or the Service's port name) or CLUSTER-IP:PORT, is
// translated as kube-proxy or Cilium would, by k8s.Services.Translate, to
// each backend at its target port. The source and options are as for
// ParseFlow. For a Service the packet returned is the first backend's
// (ServiceFlow.Packets[0]), the zero packet without backend; sf is nil
// for any other flow.
func ParseServiceFlow(prog *ir.Program, svcs *k8s.Services, s string) (p ir.Packet, sf *ServiceFlow, err error) {
	words := strings.Fields(strings.ReplaceAll(s, "->", " -> "))
	if len(words) < 4 || words[2] != "->" {
		p, err = ParseFlow(prog, s)
		return p, nil, err
	}
	host, port := words[3], ""
	var literal netip.Addr
	if strings.HasPrefix(host, "svc/") {
		if i := strings.LastIndex(host, ":"); i >= 0 {
			host, port = host[:i], host[i+1:]
		}
	} else if h, herr := parseFlowHost(host); herr == nil && h.addr.IsValid() && svcs.IsService(h.addr.String()) {
		host, literal = h.addr.String(), h.addr
		if h.port >= 0 {
			port = strconv.Itoa(h.port)
		}
	} else {
		p, err = ParseFlow(prog, s)
		return p, nil, err
	}
	bad := func(format string, args ...any) (ir.Packet, *ServiceFlow, error) {
		return ir.Packet{}, nil, fmt.Errorf("flow %q: %s", s, fmt.Sprintf(format, args...))
	}
	proto := strings.ToLower(words[0])
	if port == "" && (proto == "tcp" || proto == "udp" || proto == "sctp") {
		return bad("a %s packet needs a destination port, e.g. %s:%s", proto, words[3], "80")
	}
	tr, err := svcs.Translate(proto, host, port)
	if err != nil {
		return bad("%v", err)
	}
	sf = &ServiceFlow{Dst: words[3], Translation: tr}
	for _, t := range tr.Targets {
		var dst string
		switch a, ok := t.Addr(literal.Is6()); {
		case literal.IsValid() && !ok:
			return bad("backend %s of %s has no address of the family of %s", t, tr.Service.Ref(), literal)
		case literal.IsValid():
			dst = a.String()
		case t.Endpoint != "":
			dst = t.Endpoint
		default:
			dst = t.Addrs[0].String()
		}
		if port != "" {
			if strings.Contains(dst, ":") {
				dst = "[" + dst + "]"
			}
			dst += ":" + strconv.Itoa(int(t.Port))
		}
		words := slices.Clone(words)
		words[3] = dst
		rewritten := strings.Join(words, " ")
		bp, err := ParseFlow(prog, rewritten)
		if err != nil {
			return bad("to backend %s: %s", t, strings.TrimPrefix(err.Error(), fmt.Sprintf("flow %q: ", rewritten)))
		}
		sf.Packets = append(sf.Packets, bp)
	}
	if len(sf.Packets) > 0 {
		p = sf.Packets[0]
	}
	return p, sf, nil
}
