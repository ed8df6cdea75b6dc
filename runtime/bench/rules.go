package bench

import (
	"bytes"
	"fmt"
	"net/netip"
)

// Ruleset is the same N rules for every configuration: allow UDP to
// SinkPort from N-1 host addresses the traffic never uses, then from
// FlowNet, where all the traffic comes from; everything else to the sink
// is dropped. A linear filter therefore walks all N rules for every new
// flow, while a set or polc looks the source up once.
type Ruleset struct{ N int }

// Sources returns the N allowed sources, FlowNet last.
func (rs Ruleset) Sources() []netip.Prefix {
	out := make([]netip.Prefix, 0, rs.N)
	for k := range rs.N - 1 {
		out = append(out, netip.PrefixFrom(addOther(k), 32))
	}
	return append(out, FlowNet)
}

func addOther(k int) netip.Addr { return addAddr(OtherBase, k) }

// prefixString prints host prefixes as plain addresses.
func prefixString(p netip.Prefix) string {
	if p.Bits() == 32 {
		return p.Addr().String()
	}
	return p.String()
}

// SinkEndpoint is the endpoint the sink's interface serves in Policy.
const SinkEndpoint = "sink"

// Policy is the ruleset in polc's language: one rule per source.
func (rs Ruleset) Policy() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "endpoint %s labels(app=sink) addr %s\n\npolicy sink-in {\n  select app=sink\n", SinkEndpoint, SinkAddr)
	for _, p := range rs.Sources() {
		fmt.Fprintf(&b, "  ingress allow from %s on udp/%d\n", prefixString(p), SinkPort)
	}
	b.WriteString("}\n")
	return b.Bytes()
}

// ctAccept is the first rule of every stateful netfilter ruleset.
const iptCTAccept = "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n"

// IPTablesLinear is an iptables-restore file: conntrack first, then one
// rule per source, then drop.
func (rs Ruleset) IPTablesLinear() []byte {
	var b bytes.Buffer
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	b.WriteString(iptCTAccept)
	for _, p := range rs.Sources() {
		fmt.Fprintf(&b, "-A INPUT -s %s -p udp --dport %d -j ACCEPT\n", p, SinkPort)
	}
	fmt.Fprintf(&b, "-A INPUT -i %s -j DROP\nCOMMIT\n", IfName)
	return b.Bytes()
}

// IPSetName is the hash:net set of the ipset configuration.
const IPSetName = "polcbench"

// IPSet is an `ipset restore` file with every source in one hash:net set.
func (rs Ruleset) IPSet() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "create %s hash:net family inet hashsize 1024 maxelem %d\n", IPSetName, max(65536, 2*rs.N))
	for _, p := range rs.Sources() {
		fmt.Fprintf(&b, "add %s %s\n", IPSetName, p)
	}
	return b.Bytes()
}

// IPTablesSet is the iptables-restore file that matches the ipset.
func (rs Ruleset) IPTablesSet() []byte {
	var b bytes.Buffer
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	b.WriteString(iptCTAccept)
	fmt.Fprintf(&b, "-A INPUT -m set --match-set %s src -p udp --dport %d -j ACCEPT\n", IPSetName, SinkPort)
	fmt.Fprintf(&b, "-A INPUT -i %s -j DROP\nCOMMIT\n", IfName)
	return b.Bytes()
}

// NftLinear is an `nft -f` file: conntrack first, one rule per source,
// then drop.
func (rs Ruleset) NftLinear() []byte {
	var b bytes.Buffer
	b.WriteString("table ip polcbench {\n  chain input {\n    type filter hook input priority 0; policy accept;\n")
	b.WriteString("    ct state established,related accept\n")
	for _, p := range rs.Sources() {
		fmt.Fprintf(&b, "    ip saddr %s udp dport %d accept\n", prefixString(p), SinkPort)
	}
	fmt.Fprintf(&b, "    iifname %q drop\n  }\n}\n", IfName)
	return b.Bytes()
}

// NftSet is an `nft -f` file with the sources in one interval set.
func (rs Ruleset) NftSet() []byte {
	var b bytes.Buffer
	b.WriteString("table ip polcbench {\n  set allowed {\n    type ipv4_addr; flags interval;\n    elements = {")
	for i, p := range rs.Sources() {
		if i > 0 {
			b.WriteString(",")
		}
		if i%8 == 0 {
			b.WriteString("\n      ")
		} else {
			b.WriteString(" ")
		}
		b.WriteString(prefixString(p))
	}
	b.WriteString("\n    }\n  }\n  chain input {\n    type filter hook input priority 0; policy accept;\n")
	b.WriteString("    ct state established,related accept\n")
	fmt.Fprintf(&b, "    ip saddr @allowed udp dport %d accept\n", SinkPort)
	fmt.Fprintf(&b, "    iifname %q drop\n  }\n}\n", IfName)
	return b.Bytes()
}
