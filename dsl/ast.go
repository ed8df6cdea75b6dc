package dsl

import "strconv"

// The AST is what both front ends (the policy language and YAML) produce and
// what the compiler's passes read. It is purely syntactic: addresses, CIDRs
// and names are kept as written, with positions, so that the compiler can
// report every semantic problem at the place the user wrote it.

// Pos is a position in a source file. Line and Col are 1-based; Col counts
// bytes. The zero Pos means "no position".
type Pos struct {
	File string
	Line int
	Col  int
}

// IsValid reports whether p carries a real position.
func (p Pos) IsValid() bool { return p.Line > 0 }

func (p Pos) String() string {
	switch {
	case !p.IsValid() && p.File == "":
		return "-"
	case !p.IsValid():
		return p.File
	}
	return p.File + ":" + strconv.Itoa(p.Line) + ":" + strconv.Itoa(p.Col)
}

// File is one parsed source file.
type File struct {
	Path string
	// Header holds the file's own comment: the comment paragraphs above the
	// first declaration that a blank line separates from it (a title, a
	// licence), in order. The comment lines directly above the first
	// declaration are its Doc. Only a file with declarations has a header.
	Header []Doc
	Decls  []Decl // in source order
	// Trailing holds comment lines after the last declaration.
	Trailing []string
}

// Decl is one top-level declaration: *Import, *Endpoint, *CIDRSet, *Policy,
// *Prefilter or *Test.
type Decl interface {
	DeclPos() Pos
	decl()
}

// Doc holds the comment lines (without the leading '#') written directly
// above a declaration or rule; the printer puts them back.
type Doc []string

// Ident is a name as written.
type Ident struct {
	Pos  Pos
	Name string
}

// Text is an address, CIDR or other literal kept as written
// ("10.0.1.10", "fd00::10", "10.0.0.0/8").
type Text struct {
	Pos  Pos
	Text string
}

// Int is an integer literal (a port, an ICMP type or code). Value is what
// was written; range checks belong to the compiler.
type Int struct {
	Pos   Pos
	Value int64
}

// Import is `import "other.pol"`. The path is relative to the importing
// file's directory.
type Import struct {
	Pos  Pos
	Doc  Doc
	Path Text
}

// Endpoint is a workload: `endpoint web labels(app=web) addr 10.0.1.10, fd00::10`.
type Endpoint struct {
	Pos  Pos
	Doc  Doc
	Name Ident
	// Remote, when valid, is where the endpoint says `remote`: a workload
	// of another node, which rules see as a peer but which has no hooks
	// here and is never a subject.
	Remote Pos
	Labels []Label
	Addrs  []Text
}

// Label is key=value on an endpoint.
type Label struct {
	Pos   Pos
	Key   string
	Value string
}

// CIDRSet is a named list of prefixes: `cidrset partners = 192.0.2.0/24, ...`.
type CIDRSet struct {
	Pos     Pos
	Doc     Doc
	Name    Ident
	Entries []CIDR
}

// CIDR is a prefix with optional exceptions: `10.0.0.0/8 except 10.1.0.0/16`.
type CIDR struct {
	Pos    Pos
	Prefix Text
	Except []Text
}

// Policy selects subjects and lists rules per direction.
type Policy struct {
	Pos    Pos
	Doc    Doc
	Name   Ident
	Select Selector
	// Isolate lists directions the policy makes default-deny for its
	// subjects even without rules (`isolate ingress, egress`), as a
	// Kubernetes NetworkPolicy with an empty ingress list does.
	Isolate []DirectionAt
	// IsolateDoc holds the comment lines above the policy's `isolate`
	// line(s); the printer writes all directions on one line under it.
	IsolateDoc Doc
	Rules      []*Rule
	// Audit, when valid, is where the policy says `audit`: its rules and
	// isolation are reported (would-deny), never enforced.
	Audit Pos
	// Tier puts the policy in an ordered tier (`tier admin priority 10`):
	// TierNone (the default) is the namespace level, where deny beats
	// allow; in TierAdmin and TierBaseline the first matching rule, in
	// the order (priority, policy name, rule order), decides, and `pass`
	// hands the packet to the next tier. TierPos is where `tier` is
	// written (zero when absent).
	Tier    Tier
	TierPos Pos
	// Priority orders the policies of a tier, 0 (first) to 1000;
	// PriorityPos is where it is written (zero when absent).
	Priority    int
	PriorityPos Pos
}

// Tier is the level of a policy in the evaluation order: admin, then the
// namespace level (untiered policies), then baseline.
type Tier int

const (
	TierNone     Tier = iota // namespace level: deny beats allow, isolation
	TierAdmin                // before TierNone; cannot be overridden below it
	TierBaseline             // after TierNone; only for directions no TierNone policy isolates
)

func (t Tier) String() string {
	switch t {
	case TierAdmin:
		return "admin"
	case TierBaseline:
		return "baseline"
	}
	return "none"
}

// MaxPriority is the highest priority a tiered policy may have.
const MaxPriority = 1000

// DirectionAt is a direction keyword with its position.
type DirectionAt struct {
	Pos Pos
	Dir Direction
}

// Direction is the side of the subject a rule governs.
type Direction int

const (
	Ingress Direction = iota // traffic to the subject; peers are sources
	Egress                   // traffic from the subject; peers are destinations
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// Action is what a rule does with the traffic it matches.
type Action int

const (
	Allow Action = iota
	Deny
	// Pass (tiered policies only) ends the evaluation of the rule's tier
	// for the packet: it goes on to the next tier.
	Pass
)

func (a Action) String() string {
	switch a {
	case Deny:
		return "deny"
	case Pass:
		return "pass"
	}
	return "allow"
}

// Rule is `ingress allow from PEER, ... on L4, ...`. No peers means any
// peer; no L4 terms means any protocol and port.
type Rule struct {
	Pos    Pos
	Doc    Doc
	Dir    Direction
	Action Action
	// PeerPos is the position of the `from`/`to` keyword (zero when absent);
	// PeerWord records which of the two was written, so the checker can
	// reject `ingress ... to` and `egress ... from`.
	PeerPos  Pos
	PeerWord string
	Peers    []Peer
	Ports    []L4
}

// PeerKind says what a peer names.
type PeerKind int

const (
	PeerSelector PeerKind = iota // local endpoints whose labels match
	PeerCIDR                     // addresses inside a prefix, minus exceptions
	PeerSet                      // a named cidrset
	PeerWorld                    // every address that is not a local endpoint's
	PeerAny                      // every address
)

// Peer is one element of a rule's `from`/`to` list.
type Peer struct {
	Pos      Pos
	Kind     PeerKind
	Selector Selector // PeerSelector
	CIDR     CIDR     // PeerCIDR
	Set      Ident    // PeerSet
}

// Selector is a conjunction of label requirements. The empty selector
// (written `{}`) matches every endpoint.
type Selector struct {
	Pos  Pos
	Reqs []Requirement
}

// Op is a label requirement's operator.
type Op int

const (
	OpEq        Op = iota // key=value
	OpNotEq               // key!=value (also true when key is absent)
	OpIn                  // key in (a, b)
	OpNotIn               // key notin (a, b) (also true when key is absent)
	OpExists              // key exists
	OpNotExists           // !key
)

// Requirement is one term of a selector.
type Requirement struct {
	Pos    Pos
	Key    string
	Op     Op
	Values []string // one for Eq/NotEq, several for In/NotIn, none otherwise
}

// L4 is one protocol/port term: `tcp/8080`, `udp/1000-2000`, `tcp`,
// `icmp type 8 code 0`, `any`.
type L4 struct {
	Pos   Pos
	Proto string // tcp, udp, sctp, icmp, icmpv6, any (as written, lower case)
	// Port is the first (or only) port; nil means every port.
	Port *Int
	// PortEnd is the last port of a range `a-b`; nil for a single port.
	PortEnd *Int
	// ICMPType and ICMPCode restrict icmp/icmpv6 terms; nil means any.
	ICMPType *Int
	ICMPCode *Int
}

// Prefilter is `prefilter drop from CIDR, ...`: dropped at XDP before
// anything else.
type Prefilter struct {
	Pos     Pos
	Doc     Doc
	Entries []CIDR
}

// Test is `test "name" { step; step ... }`.
type Test struct {
	Pos   Pos
	Doc   Doc
	Name  Text // without quotes
	Steps []*Step
}

// Verdict is the outcome a test expects.
type Verdict int

const (
	VerdictAllow Verdict = iota
	VerdictDeny
)

func (v Verdict) String() string {
	if v == VerdictDeny {
		return "deny"
	}
	return "allow"
}

// Step is one packet of a test, optionally with the verdict it must get.
// The last step of a test always has an Expect.
type Step struct {
	Pos Pos
	// Reply means "the reverse of the previous step's packet"; Packet is then nil.
	Reply  bool
	Packet *Packet
	// Flags are TCP flags as written (syn, ack, fin, rst, psh, urg); for a
	// TCP packet without flags the compiler picks SYN for a first packet
	// and ACK for a reply.
	Flags []Text
	// Via names the endpoint whose interface the packet leaves from (`via
	// evil`); nil means the interface of the endpoint that owns the
	// source address. The compiler checks that the endpoint exists and
	// rejects Via on a reply, which the previous packet's destination
	// sends.
	Via       *Ident
	Expect    *Verdict
	ExpectPos Pos
}

// Packet is `tcp web -> api:8080`, `icmp 10.0.0.1 -> 10.0.0.2 type 8 code 0`,
// `udp [fd00::1]:5000 -> [fd00::2]:53`.
type Packet struct {
	Pos      Pos
	Proto    Text // tcp, udp, sctp, icmp, icmpv6
	Src      HostPort
	Dst      HostPort
	ICMPType *Int
	ICMPCode *Int
}

// HostPort is an endpoint name or an address, with an optional port.
type HostPort struct {
	Pos    Pos
	Host   Text // endpoint name or address as written (IPv6 without brackets)
	IsName bool
	Port   *Int
}

func (d *Import) DeclPos() Pos    { return d.Pos }
func (d *Endpoint) DeclPos() Pos  { return d.Pos }
func (d *CIDRSet) DeclPos() Pos   { return d.Pos }
func (d *Policy) DeclPos() Pos    { return d.Pos }
func (d *Prefilter) DeclPos() Pos { return d.Pos }
func (d *Test) DeclPos() Pos      { return d.Pos }

func (*Import) decl()    {}
func (*Endpoint) decl()  {}
func (*CIDRSet) decl()   {}
func (*Policy) decl()    {}
func (*Prefilter) decl() {}
func (*Test) decl()      {}
