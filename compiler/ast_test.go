package compiler

import (
	"strings"
	"testing"

	"github.com/polc-dev/polc/dsl"
)

// Builders for hand-made ASTs. Every node gets a position on the line the
// test gives; columns are fixed per kind of node so tests can name them.

const testFile = "t.pol"

func at(line, col int) dsl.Pos { return dsl.Pos{File: testFile, Line: line, Col: col} }

func txt(line, col int, s string) dsl.Text { return dsl.Text{Pos: at(line, col), Text: s} }

func num(line, col int, v int64) *dsl.Int { return &dsl.Int{Pos: at(line, col), Value: v} }

// ep is `endpoint NAME labels(k=v, ...) addr A, ...` on line: the name at
// column 10, label i at 20+i, address i at 40+10*i.
func ep(line int, name, labels string, addrs ...string) *dsl.Endpoint {
	e := &dsl.Endpoint{Pos: at(line, 1), Name: dsl.Ident{Pos: at(line, 10), Name: name}}
	if labels != "" {
		for i, kv := range strings.Split(labels, ",") {
			k, v, _ := strings.Cut(kv, "=")
			e.Labels = append(e.Labels, dsl.Label{Pos: at(line, 20+i), Key: k, Value: v})
		}
	}
	for i, a := range addrs {
		e.Addrs = append(e.Addrs, txt(line, 40+10*i, a))
	}
	return e
}

// sel parses a tiny selector syntax for tests: "k=v,k!=v,k in a|b,k notin
// a|b,k exists,!k"; requirement i is at column col+i.
func sel(line, col int, s string) dsl.Selector {
	out := dsl.Selector{Pos: at(line, col)}
	if s == "" {
		return out
	}
	for i, term := range strings.Split(s, ",") {
		r := dsl.Requirement{Pos: at(line, col+i)}
		switch {
		case strings.HasPrefix(term, "!"):
			r.Key, r.Op = term[1:], dsl.OpNotExists
		case strings.HasSuffix(term, " exists"):
			r.Key, r.Op = strings.TrimSuffix(term, " exists"), dsl.OpExists
		case strings.Contains(term, " notin "):
			k, v, _ := strings.Cut(term, " notin ")
			r.Key, r.Op, r.Values = k, dsl.OpNotIn, strings.Split(v, "|")
		case strings.Contains(term, " in "):
			k, v, _ := strings.Cut(term, " in ")
			r.Key, r.Op, r.Values = k, dsl.OpIn, strings.Split(v, "|")
		case strings.Contains(term, "!="):
			k, v, _ := strings.Cut(term, "!=")
			r.Key, r.Op, r.Values = k, dsl.OpNotEq, []string{v}
		default:
			k, v, _ := strings.Cut(term, "=")
			r.Key, r.Op, r.Values = k, dsl.OpEq, []string{v}
		}
		out.Reqs = append(out.Reqs, r)
	}
	return out
}

func cidr(line, col int, prefix string, except ...string) dsl.CIDR {
	c := dsl.CIDR{Pos: at(line, col), Prefix: txt(line, col, prefix)}
	for i, e := range except {
		c.Except = append(c.Except, txt(line, col+20+10*i, e))
	}
	return c
}

func selPeer(line, col int, s string) dsl.Peer {
	return dsl.Peer{Pos: at(line, col), Kind: dsl.PeerSelector, Selector: sel(line, col, s)}
}

func cidrPeer(line, col int, prefix string, except ...string) dsl.Peer {
	return dsl.Peer{Pos: at(line, col), Kind: dsl.PeerCIDR, CIDR: cidr(line, col, prefix, except...)}
}

func setPeer(line, col int, name string) dsl.Peer {
	return dsl.Peer{Pos: at(line, col), Kind: dsl.PeerSet, Set: dsl.Ident{Pos: at(line, col), Name: name}}
}

func worldPeer(line, col int) dsl.Peer { return dsl.Peer{Pos: at(line, col), Kind: dsl.PeerWorld} }

// l4 builds an L4 term at column col: port at col+10, port end at col+15,
// type at col+20, code at col+25. A negative value means absent.
func l4(line, col int, proto string, port, end, typ, code int64) dsl.L4 {
	l := dsl.L4{Pos: at(line, col), Proto: proto}
	if port >= 0 {
		l.Port = num(line, col+10, port)
	}
	if end >= 0 {
		l.PortEnd = num(line, col+15, end)
	}
	if typ >= 0 {
		l.ICMPType = num(line, col+20, typ)
	}
	if code >= 0 {
		l.ICMPCode = num(line, col+25, code)
	}
	return l
}

func tcpPort(line, col int, port int64) dsl.L4 { return l4(line, col, "tcp", port, -1, -1, -1) }

// rule builds `DIR ACTION from|to PEERS on PORTS` on line; the from/to
// keyword at column 15.
func rule(line int, dir dsl.Direction, action dsl.Action, peers []dsl.Peer, ports ...dsl.L4) *dsl.Rule {
	r := &dsl.Rule{Pos: at(line, 3), Dir: dir, Action: action, Peers: peers, Ports: ports}
	if len(peers) > 0 {
		r.PeerPos = at(line, 15)
		r.PeerWord = "from"
		if dir == dsl.Egress {
			r.PeerWord = "to"
		}
	}
	return r
}

func peers(ps ...dsl.Peer) []dsl.Peer { return ps }

func policy(line int, name string, selector string, rules ...*dsl.Rule) *dsl.Policy {
	return &dsl.Policy{
		Pos:    at(line, 1),
		Name:   dsl.Ident{Pos: at(line, 8), Name: name},
		Select: sel(line+1, 10, selector),
		Rules:  rules,
	}
}

func cidrset(line int, name string, entries ...dsl.CIDR) *dsl.CIDRSet {
	return &dsl.CIDRSet{Pos: at(line, 1), Name: dsl.Ident{Pos: at(line, 9), Name: name}, Entries: entries}
}

// host is a HostPort at column col: an endpoint name when the text has no
// ':' or '.', else an address; port (when >= 0) at col+10.
func host(line, col int, h string, port int64) dsl.HostPort {
	hp := dsl.HostPort{Pos: at(line, col), Host: txt(line, col, h)}
	hp.IsName = !strings.ContainsAny(h, ".:")
	if port >= 0 {
		hp.Port = num(line, col+10, port)
	}
	return hp
}

func packet(line int, proto string, src, dst dsl.HostPort) *dsl.Packet {
	return &dsl.Packet{Pos: at(line, 20), Proto: txt(line, 20, proto), Src: src, Dst: dst}
}

func expect(v dsl.Verdict) *dsl.Verdict { return &v }

func step(line, col int, p *dsl.Packet, v *dsl.Verdict) *dsl.Step {
	s := &dsl.Step{Pos: at(line, col), Packet: p, Expect: v}
	if v != nil {
		s.ExpectPos = at(line, col+50)
	}
	return s
}

func replyStep(line, col int, v *dsl.Verdict) *dsl.Step {
	s := &dsl.Step{Pos: at(line, col), Reply: true, Expect: v}
	if v != nil {
		s.ExpectPos = at(line, col+10)
	}
	return s
}

func test(line int, name string, steps ...*dsl.Step) *dsl.Test {
	return &dsl.Test{Pos: at(line, 1), Name: txt(line, 6, name), Steps: steps}
}

func file(decls ...dsl.Decl) *dsl.File { return &dsl.File{Path: testFile, Decls: decls} }

// quickstartAST is testdata/quickstart.pol built by hand (positions are
// approximate).
func quickstartAST() *dsl.File {
	return file(
		ep(3, "web", "app=web,tier=frontend", "10.0.1.10", "fd00::10"),
		ep(4, "api", "app=api,tier=backend", "10.0.2.10", "fd00::20"),
		ep(5, "db", "app=db,tier=backend", "10.0.3.10/32"),
		cidrset(7, "partners", cidr(7, 20, "192.0.2.0/24"), cidr(7, 34, "198.51.100.0/24", "198.51.100.128/25")),
		policy(9, "api-in", "app=api",
			rule(11, dsl.Ingress, dsl.Allow, peers(selPeer(11, 22, "app=web")), tcpPort(11, 34, 8080)),
			rule(12, dsl.Ingress, dsl.Allow, peers(setPeer(12, 22, "partners")), l4(12, 34, "tcp", 8080, 8090, -1, -1)),
			rule(13, dsl.Ingress, dsl.Deny, peers(cidrPeer(13, 22, "192.0.2.66"))),
			rule(14, dsl.Egress, dsl.Allow, peers(selPeer(14, 22, "app=db")), tcpPort(14, 34, 5432)),
			rule(15, dsl.Egress, dsl.Allow, peers(worldPeer(15, 22)), l4(15, 34, "udp", 53, -1, -1, -1)),
		),
		policy(18, "db-in", "app=db",
			rule(20, dsl.Ingress, dsl.Allow, peers(selPeer(20, 22, "app=api,tier=backend")), tcpPort(20, 46, 5432)),
		),
		&dsl.Prefilter{Pos: at(23, 1), Entries: []dsl.CIDR{cidr(23, 21, "203.0.113.0/24")}},
		test(25, "web reaches api", step(25, 32, packet(25, "tcp", host(25, 36, "web", -1), host(25, 43, "api", 8080)), expect(dsl.VerdictAllow))),
		test(26, "partner on a range", step(26, 32, packet(26, "tcp", host(26, 36, "198.51.100.7", -1), host(26, 52, "api", 8085)), expect(dsl.VerdictAllow))),
		test(27, "blocked partner", step(27, 32, packet(27, "tcp", host(27, 36, "192.0.2.66", -1), host(27, 50, "api", 8080)), expect(dsl.VerdictDeny))),
		test(28, "reply of allowed flow",
			step(28, 32, packet(28, "tcp", host(28, 36, "web", -1), host(28, 43, "api", 8080)), expect(dsl.VerdictAllow)),
			replyStep(28, 70, expect(dsl.VerdictAllow))),
		test(29, "db only from api", step(29, 32, packet(29, "tcp", host(29, 36, "web", -1), host(29, 43, "db", 5432)), expect(dsl.VerdictDeny))),
		test(30, "api reaches db", step(30, 32, packet(30, "tcp", host(30, 36, "api", -1), host(30, 43, "db", 5432)), expect(dsl.VerdictAllow))),
	)
}

// compileFiles runs the semantic passes on hand-built files.
func compileFiles(t *testing.T, files ...*dsl.File) (string, dsl.Diagnostics) {
	t.Helper()
	prog, ds := Compile(files, Sources{testFile: []byte("x")})
	if prog == nil {
		return "", ds
	}
	return prog.Text(), ds
}

// diagStrings renders diagnostics one per line without source excerpts.
func diagStrings(ds dsl.Diagnostics) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.String())
	}
	return out
}
