// Package ir holds polc's intermediate representation: a checked,
// normalized policy with every name resolved, every address parsed and
// every default made explicit. The front end (package compiler) produces it;
// the lowering, the reference evaluator and the test harness read it.
//
// Normal form, which every consumer may rely on:
//   - Endpoints sorted by name, Policies sorted by name, Rules by ID.
//   - Labels sorted by key; selectors' requirements sorted by key then
//     operator, their values sorted and unique.
//   - Prefixes masked (10.0.1.7/8 becomes 10.0.0.0/8); host addresses are
//     /32 or /128; lists of prefixes sorted and unique.
//   - A rule's Peers and Ports are never empty: "any peer" is one PeerAny,
//     "any protocol" is one PortMatch with Proto == ProtoAny. Named cidrsets
//     are expanded to PeerCIDR entries (Set records the name).
package ir

import (
	"net/netip"
	"strconv"

	"github.com/polc-dev/polc/dsl"
)

// Program is the IR of one build: everything the files on the command line
// (and their imports) declare.
type Program struct {
	Sources   []Source
	Endpoints []*Endpoint
	Policies  []*Policy
	Rules     []*Rule // Rules[i].ID == FirstRuleID+RuleID(i)
	Prefilter []netip.Prefix
	Tests     []*Test
	// DropTunnels makes every endpoint's hooks drop tunnel protocols
	// (TunnelProtos) whatever the policy says: the datapath judges a
	// tunnel by its outer header only, so what it carries would pass
	// unseen. Set by --drop-tunnels, not by the policy files.
	DropTunnels bool
}

// TunnelProtos are the IP protocols DropTunnels drops: IP in IP (4),
// IPv6 in IP (41), GRE (47), EtherIP (97), L2TPv3 (115) and MPLS in IP
// (137). Tunnels over UDP (VXLAN, Geneve) are UDP flows that rules decide.
var TunnelProtos = []Proto{4, 41, 47, 97, 115, 137}

// Source is one file that went into the build.
type Source struct {
	Path   string
	SHA256 string // hex
}

// Label is one key=value of an endpoint.
type Label struct {
	Key   string
	Value string
}

// Labels is a label set, sorted by key with unique keys.
type Labels []Label

// Get returns the value of key and whether it is present.
func (ls Labels) Get(key string) (string, bool) {
	for _, l := range ls {
		if l.Key == key {
			return l.Value, true
		}
	}
	return "", false
}

// Endpoint is a workload: local (on this host: hooks on its interface, a
// subject of the policies that select it) or, with Remote, on another
// node: an identity that rules see as a peer and nothing more. Both kinds
// share identities by label set.
type Endpoint struct {
	Name   string
	Pos    dsl.Pos
	Labels Labels
	Addrs  []netip.Prefix // sorted; IPv4 before IPv6
	// Remote: the endpoint lives on another node. It is never a subject
	// (Policy.Subjects lists local endpoints only), has no hooks, no
	// conntrack table and no interface binding here; its addresses are
	// not the world's.
	Remote bool
}

// Selector is a conjunction of requirements; no requirements selects every
// endpoint.
type Selector struct {
	Reqs []Requirement
}

// Requirement is one label test.
type Requirement struct {
	Key    string
	Op     dsl.Op
	Values []string
}

// Matches reports whether labels satisfy every requirement.
func (s Selector) Matches(labels Labels) bool {
	for _, r := range s.Reqs {
		if !r.Matches(labels) {
			return false
		}
	}
	return true
}

// Matches reports whether labels satisfy r. As in Kubernetes, != and notin
// hold when the key is absent.
func (r Requirement) Matches(labels Labels) bool {
	v, ok := labels.Get(r.Key)
	switch r.Op {
	case dsl.OpEq:
		return ok && len(r.Values) == 1 && v == r.Values[0]
	case dsl.OpNotEq:
		return !ok || len(r.Values) != 1 || v != r.Values[0]
	case dsl.OpIn:
		return ok && contains(r.Values, v)
	case dsl.OpNotIn:
		return !ok || !contains(r.Values, v)
	case dsl.OpExists:
		return ok
	case dsl.OpNotExists:
		return !ok
	}
	return false
}

func contains(vs []string, v string) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// Policy selects subjects and owns rules.
type Policy struct {
	Name     string
	Pos      dsl.Pos
	Subject  Selector
	Subjects []string // names of the local endpoints Subject selects, sorted
	// Isolates[dir] is true when the policy makes direction dir default-deny
	// for its subjects: it has a rule in that direction or says `isolate`.
	Isolates [2]bool
	Rules    []RuleID
	// Audit: the policy is reported, not enforced. Its rules and
	// isolation give a packet the enforcing policies pass an audit
	// verdict (it passes; the rule that would deny it is reported), and
	// never make a packet pass or drop.
	Audit bool
	// Tier and Priority place the policy in the evaluation order
	// (dsl.Tier). Tiered policies never isolate (Isolates is false).
	Tier     dsl.Tier
	Priority int
}

// RuleID identifies a rule, or a reserved reason for a verdict, everywhere:
// in the IR, the bundle's rules.json, the datapath's counters and events,
// and the evaluator's answers.
type RuleID uint32

// Reserved rule ids: the decisions that no rule of the policy made.
const (
	RuleNone         RuleID = 0 // no decision yet
	RuleDefaultAllow RuleID = 1 // no policy selects the subject in this direction: open
	RuleDefaultDeny  RuleID = 2 // selected in this direction and no rule allowed it
	RuleEstablished  RuleID = 3 // a later packet or reply of a tracked, allowed flow
	RuleRelated      RuleID = 4 // an ICMP error about a tracked, allowed flow
	RuleMalformed    RuleID = 5 // truncated or malformed IP/L4 header: dropped
	RuleNonIP        RuleID = 6 // no IP policy applies (non-IP, or IPv6 neighbour discovery): passed
	RuleFragment     RuleID = 7 // non-first fragment of an unknown flow where the subject is isolated, or a tiered deny rule selects it: dropped
	RulePrefilter    RuleID = 8 // source inside a prefilter prefix: dropped at XDP
	// RuleSpoofedSource: a packet an endpoint sends whose source address
	// is not one of that endpoint's (the interface's binding): dropped.
	RuleSpoofedSource RuleID = 9
	// RuleWrongDestination: a packet delivered to an endpoint's interface
	// whose destination address is not one of that endpoint's: dropped.
	RuleWrongDestination RuleID = 10
	// RuleEtherType: a frame on an endpoint interface that is neither
	// ARP, IPv4 nor IPv6, or carries a VLAN tag: dropped.
	RuleEtherType RuleID = 11
	// RuleUnbound: a packet on an interface that runs polc's programs but
	// is bound to no endpoint of the bundle: dropped.
	RuleUnbound RuleID = 12
	// RuleTunnel: a tunnel protocol (TunnelProtos) at an endpoint, with
	// Program.DropTunnels: dropped.
	RuleTunnel RuleID = 13
	// RuleAuditDefaultDeny: an audit policy isolates the subject and no
	// rule of any policy allows the packet, which the enforcing policies
	// pass: it passes, reported as what default-deny would do.
	RuleAuditDefaultDeny RuleID = 14

	// LastReservedRule is the highest reserved id in use.
	LastReservedRule = RuleAuditDefaultDeny

	// FirstRuleID is the id of the first rule of the policy; rules are
	// numbered from it in source order.
	FirstRuleID RuleID = 16
)

// ReservedName names a reserved rule id ("default-deny"), or "" for a rule.
func ReservedName(id RuleID) string {
	switch id {
	case RuleNone:
		return "none"
	case RuleDefaultAllow:
		return "default-allow"
	case RuleDefaultDeny:
		return "default-deny"
	case RuleEstablished:
		return "established"
	case RuleRelated:
		return "related"
	case RuleMalformed:
		return "malformed"
	case RuleNonIP:
		return "non-ip"
	case RuleFragment:
		return "fragment"
	case RulePrefilter:
		return "prefilter"
	case RuleSpoofedSource:
		return "spoofed-source"
	case RuleWrongDestination:
		return "wrong-destination"
	case RuleEtherType:
		return "ethertype"
	case RuleUnbound:
		return "unbound-interface"
	case RuleTunnel:
		return "tunnel"
	case RuleAuditDefaultDeny:
		return "audit-default-deny"
	}
	if id < FirstRuleID {
		return "reserved"
	}
	return ""
}

// Rule is one allow or deny rule.
type Rule struct {
	ID     RuleID
	Policy string
	Pos    dsl.Pos
	Text   string // the rule in canonical source form, for explaining verdicts
	Dir    dsl.Direction
	Action dsl.Action
	Peers  []Peer      // never empty
	Ports  []PortMatch // never empty
	Audit  bool        // the rule's policy is in audit mode
	// Tier is the rule's policy's tier. In TierAdmin and TierBaseline,
	// Rank is the rule's place in its tier's order, from 1: by the
	// policy's Priority, then the policy's name, then rule ID; the
	// matching rule of lowest Rank decides, Pass going on to the next
	// tier. Rank is 0 for untiered rules. Action is Pass only in a tier.
	Tier     dsl.Tier
	Priority int
	Rank     uint32
}

// PeerKind says what a peer matches.
type PeerKind int

const (
	PeerSelector PeerKind = iota // the addresses of endpoints (local or remote) whose labels match
	PeerCIDR                     // addresses inside CIDR and outside every Except
	PeerWorld                    // every address that belongs to no endpoint, local or remote
	PeerAny                      // every address
)

// Peer is one remote side a rule names.
type Peer struct {
	Kind     PeerKind
	Selector Selector     // PeerSelector
	CIDR     netip.Prefix // PeerCIDR
	Except   []netip.Prefix
	Set      string // the cidrset this came from, "" if written inline
}

// Proto is an IP protocol number; ProtoAny matches every protocol.
type Proto uint8

const (
	ProtoAny    Proto = 0
	ProtoICMP   Proto = 1
	ProtoTCP    Proto = 6
	ProtoUDP    Proto = 17
	ProtoICMPv6 Proto = 58
	ProtoSCTP   Proto = 132
)

func (p Proto) String() string {
	switch p {
	case ProtoAny:
		return "any"
	case ProtoICMP:
		return "icmp"
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMPv6:
		return "icmpv6"
	case ProtoSCTP:
		return "sctp"
	}
	return "proto-" + strconv.Itoa(int(p))
}

// HasPorts reports whether the protocol has ports.
func (p Proto) HasPorts() bool { return p == ProtoTCP || p == ProtoUDP || p == ProtoSCTP }

// IsICMP reports whether the protocol is ICMP or ICMPv6.
func (p Proto) IsICMP() bool { return p == ProtoICMP || p == ProtoICMPv6 }

// PortMatch is one L4 term of a rule.
type PortMatch struct {
	Proto Proto
	// Lo..Hi is the inclusive destination port range for TCP, UDP and
	// SCTP; every port is 0..65535. Unused (zero) for other protocols.
	Lo, Hi uint16
	// ICMPType and ICMPCode restrict ICMP/ICMPv6; -1 means any.
	ICMPType, ICMPCode int
}

// Test is a policy's own test: packets with expected verdicts.
type Test struct {
	Name  string
	Pos   dsl.Pos
	Steps []Step
}

// Step is one packet of a test.
type Step struct {
	Pos    dsl.Pos
	Reply  bool   // the packet is the reverse of the previous step's
	Packet Packet // always filled in, also for replies
	// Expect is the verdict the packet must get; nil when the step is only
	// there to set up state (the last step of a test always has one).
	Expect    *dsl.Verdict
	ExpectPos dsl.Pos
}

// TCP flags, as in the TCP header.
const (
	TCPFin uint8 = 1 << 0
	TCPSyn uint8 = 1 << 1
	TCPRst uint8 = 1 << 2
	TCPPsh uint8 = 1 << 3
	TCPAck uint8 = 1 << 4
	TCPUrg uint8 = 1 << 5
)

// Packet is a well-formed packet as a test describes it.
type Packet struct {
	Proto    Proto
	Src, Dst netip.Addr
	SPort    uint16 // TCP/UDP/SCTP
	DPort    uint16
	TCPFlags uint8
	ICMPType uint8 // ICMP/ICMPv6
	ICMPCode uint8
	// Via names the endpoint whose interface the packet leaves from (a
	// test's `via NAME`). "" means the interface of the endpoint that owns
	// Src, or the outside (an uplink) when no endpoint owns it. A packet
	// sent via an endpoint that does not own Src is spoofed
	// (RuleSpoofedSource).
	Via string
}
