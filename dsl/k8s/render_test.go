package k8s

import (
	"fmt"
	"strings"

	"github.com/polc-dev/polc/dsl"
)

// render prints the AST the reader produced in a compact form for tests
// and golden files: one line per endpoint, policy and rule, without
// positions (tests that care about positions check them directly).
func render(files ...*dsl.File) string {
	var b strings.Builder
	for _, f := range files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *dsl.Endpoint:
				var labels []string
				for _, l := range d.Labels {
					labels = append(labels, l.Key+"="+l.Value)
				}
				var addrs []string
				for _, a := range d.Addrs {
					addrs = append(addrs, a.Text)
				}
				fmt.Fprintf(&b, "endpoint %s labels(%s) addr %s\n", d.Name.Name, strings.Join(labels, ", "), strings.Join(addrs, ", "))
			case *dsl.Policy:
				audit := ""
				if d.Audit.IsValid() {
					audit = " audit"
				}
				if d.Tier != dsl.TierNone {
					audit += fmt.Sprintf(" tier %s priority %d", d.Tier, d.Priority)
				}
				fmt.Fprintf(&b, "policy %s%s select %s", d.Name.Name, audit, renderSelector(d.Select))
				if len(d.Isolate) > 0 {
					var dirs []string
					for _, i := range d.Isolate {
						dirs = append(dirs, i.Dir.String())
					}
					fmt.Fprintf(&b, " isolate %s", strings.Join(dirs, ", "))
				}
				b.WriteString("\n")
				for _, r := range d.Rules {
					b.WriteString("  " + renderRule(r) + "\n")
				}
			default:
				fmt.Fprintf(&b, "%T\n", d)
			}
		}
	}
	return b.String()
}

func renderRule(r *dsl.Rule) string {
	s := r.Dir.String() + " " + r.Action.String()
	if len(r.Peers) > 0 {
		var ps []string
		for _, p := range r.Peers {
			ps = append(ps, renderPeer(p))
		}
		s += " " + r.PeerWord + " " + strings.Join(ps, " | ")
	}
	if len(r.Ports) > 0 {
		var ls []string
		for _, l := range r.Ports {
			ls = append(ls, renderL4(l))
		}
		s += " on " + strings.Join(ls, ", ")
	}
	return s
}

func renderPeer(p dsl.Peer) string {
	switch p.Kind {
	case dsl.PeerSelector:
		return renderSelector(p.Selector)
	case dsl.PeerCIDR:
		s := p.CIDR.Prefix.Text
		if len(p.CIDR.Except) > 0 {
			var es []string
			for _, e := range p.CIDR.Except {
				es = append(es, e.Text)
			}
			s += " except " + strings.Join(es, ", ")
		}
		return s
	case dsl.PeerSet:
		return p.Set.Name
	case dsl.PeerWorld:
		return "world"
	case dsl.PeerAny:
		return "any"
	}
	return "?"
}

func renderSelector(s dsl.Selector) string {
	if len(s.Reqs) == 0 {
		return "{}"
	}
	var rs []string
	for _, r := range s.Reqs {
		switch r.Op {
		case dsl.OpEq:
			rs = append(rs, r.Key+"="+r.Values[0])
		case dsl.OpNotEq:
			rs = append(rs, r.Key+"!="+r.Values[0])
		case dsl.OpIn:
			rs = append(rs, r.Key+" in ("+strings.Join(r.Values, ",")+")")
		case dsl.OpNotIn:
			rs = append(rs, r.Key+" notin ("+strings.Join(r.Values, ",")+")")
		case dsl.OpExists:
			rs = append(rs, r.Key+" exists")
		case dsl.OpNotExists:
			rs = append(rs, "!"+r.Key)
		}
	}
	return "{" + strings.Join(rs, ", ") + "}"
}

func renderL4(l dsl.L4) string {
	s := l.Proto
	if l.Port != nil {
		s += fmt.Sprintf("/%d", l.Port.Value)
		if l.PortEnd != nil {
			s += fmt.Sprintf("-%d", l.PortEnd.Value)
		}
	}
	if l.ICMPType != nil {
		s += fmt.Sprintf(" type %d", l.ICMPType.Value)
	}
	if l.ICMPCode != nil {
		s += fmt.Sprintf(" code %d", l.ICMPCode.Value)
	}
	return s
}
