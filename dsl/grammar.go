package dsl

import (
	"github.com/alecthomas/participle/v2"
	"github.com/alecthomas/participle/v2/lexer"
)

// The participle grammar, one root per declaration kind: Parse cuts the
// token stream into declarations and parses each with the parser for its
// leading keyword, so that one bad declaration costs only itself. These
// types are the concrete syntax; parse.go turns them into the AST.

type gImport struct {
	Pos  lexer.Position
	Path *gString `parser:"'import' @@"`
}

type gEndpoint struct {
	Pos    lexer.Position
	Name   *gName    `parser:"'endpoint' @@"`
	Remote *gRemote  `parser:"@@?"`
	Labels []*gLabel `parser:"( 'labels' '(' @@ ( ',' @@ )* ')' )?"`
	Addrs  []*gAddr  `parser:"'addr' @@ ( ',' @@ )*"`
}

// gRemote is the `remote` keyword after an endpoint's name.
type gRemote struct {
	Pos lexer.Position
	Kw  string `parser:"@'remote'"`
}

type gLabel struct {
	Pos   lexer.Position
	Key   *gKey   `parser:"@@"`
	Value *gValue `parser:"'=' @@"`
}

type gCIDRSet struct {
	Pos     lexer.Position
	Name    *gName   `parser:"'cidrset' @@ '='"`
	Entries []*gCIDR `parser:"@@ ( ',' @@ )*"`
}

type gCIDR struct {
	Pos    lexer.Position
	Prefix *gAddr   `parser:"@@"`
	Except []*gAddr `parser:"( 'except' ( @@ | '(' @@ ( ',' @@ )* ')' ) )?"`
}

type gPolicy struct {
	Pos      lexer.Position
	Name     *gName     `parser:"'policy' @@"`
	Audit    *gAudit    `parser:"@@?"`
	Tier     *gTier     `parser:"@@?"`
	Priority *gPriority `parser:"@@? '{'"`
	Select   *gSelector `parser:"'select' @@"`
	Items    []*gItem   `parser:"@@* '}'"`
}

// gTier is `tier admin` or `tier baseline` after a policy's name. Like
// audit, tier, admin, baseline and priority are words, not keywords: they
// mean something only here, so older names may still use them.
type gTier struct {
	Pos  lexer.Position
	Tier string `parser:"'tier' @( 'admin' | 'baseline' )"`
}

// gPriority is `priority N`; the checker wants it with a tier, 0..1000.
type gPriority struct {
	Pos   lexer.Position
	Value *gInt `parser:"'priority' @@"`
}

// gAudit is the `audit` keyword after a policy's name.
type gAudit struct {
	Pos lexer.Position
	Kw  string `parser:"@'audit'"`
}

type gItem struct {
	Isolate *gIsolate `parser:"  @@"`
	Rule    *gRule    `parser:"| @@"`
}

type gIsolate struct {
	Pos  lexer.Position
	Dirs []*gDir `parser:"'isolate' @@ ( ',' @@ )*"`
}

type gRule struct {
	Pos      lexer.Position
	Dir      string     `parser:"@( 'ingress' | 'egress' )"`
	Action   string     `parser:"@( 'allow' | 'deny' | 'pass' )"`
	PeerWord *gPeerWord `parser:"( @@"`
	Peers    []*gPeer   `parser:"  @@ ( ',' @@ )* )?"`
	Ports    []*gL4     `parser:"( 'on' @@ ( ',' @@ )* )?"`
}

type gPeer struct {
	Pos      lexer.Position
	World    bool       `parser:"  @'world'"`
	Any      bool       `parser:"| @'any'"`
	CIDR     *gCIDR     `parser:"| @@"`
	Selector *gSelector `parser:"| @@"`
	Set      *gName     `parser:"| @@"`
}

type gSelector struct {
	Pos    lexer.Position
	Braced bool    `parser:"( @'{'"`
	Reqs   []*gReq `parser:"  ( @@ ( ',' @@ )* )? '}'"`
	Single *gReq   `parser:"| @@ )"`
}

type gReq struct {
	Pos    lexer.Position
	Not    *gKey     `parser:"  '!' @@"`
	Key    *gKey     `parser:"| @@ ("`
	Op     string    `parser:"    @( '=' | '!=' )"`
	Value  *gValue   `parser:"    @@"`
	ListOp string    `parser:"  | @( 'in' | 'notin' )"`
	Values []*gValue `parser:"    '(' @@ ( ',' @@ )* ')'"`
	Exists bool      `parser:"  | @'exists' )"`
}

type gL4 struct {
	Pos     lexer.Position
	Port    string `parser:"( @( 'tcp' | 'udp' | 'sctp' )"`
	First   *gInt  `parser:"  ( '/' @@"`
	Last    *gInt  `parser:"    ( '-' @@ )? )?"`
	ICMP    string `parser:"| @( 'icmp' | 'icmpv6' )"`
	Type    *gInt  `parser:"  ( 'type' @@"`
	Code    *gInt  `parser:"    ( 'code' @@ )? )?"`
	AnyProt bool   `parser:"| @'any' )"`
}

type gPrefilter struct {
	Pos     lexer.Position
	Entries []*gCIDR `parser:"'prefilter' 'drop' 'from' @@ ( ',' @@ )*"`
}

type gTest struct {
	Pos   lexer.Position
	Name  *gString `parser:"'test' @@ '{'"`
	Steps []*gStep `parser:"@@ ( ';'? @@ )* '}'"`
}

type gStep struct {
	Pos    lexer.Position
	Reply  bool     `parser:"( @'reply'"`
	Packet *gPacket `parser:"| @@ )"`
	Flags  []*gFlag `parser:"( 'flags' @@ ( ',' @@ )* )?"`
	// 'via' is not a keyword (see polStepVia): the literal matches the
	// word by value.
	Via    *gName   `parser:"( 'via' @@ )?"`
	Expect *gExpect `parser:"@@?"`
}

type gExpect struct {
	Pos     lexer.Position
	Verdict string `parser:"'expect' @( 'allow' | 'deny' )"`
}

type gPacket struct {
	Pos   lexer.Position
	Proto string `parser:"@( 'tcp' | 'udp' | 'sctp' | 'icmp' | 'icmpv6' )"`
	Src   *gHost `parser:"@@"`
	Dst   *gHost `parser:"'->' @@"`
	Type  *gInt  `parser:"( 'type' @@"`
	Code  *gInt  `parser:"  ( 'code' @@ )? )?"`
}

type gHost struct {
	Pos  lexer.Position
	Name *gName  `parser:"( @@"`
	V4   *gAddr4 `parser:"| @@"`
	V6   *gAddr6 `parser:"| '[' @@ ']' )"`
	Port *gInt   `parser:"( ':' @@ )?"`
}

// Leaves: one token each, with its position.

type gDir struct {
	Pos lexer.Position
	Dir string `parser:"@( 'ingress' | 'egress' )"`
}

type gPeerWord struct {
	Pos  lexer.Position
	Word string `parser:"@( 'from' | 'to' )"`
}

type gFlag struct {
	Pos  lexer.Position
	Flag string `parser:"@( 'syn' | 'ack' | 'fin' | 'rst' | 'psh' | 'urg' )"`
}

type gName struct {
	Pos  lexer.Position
	Name string `parser:"@Word"`
}

type gString struct {
	Pos lexer.Position
	Raw string `parser:"@String"`
}

type gInt struct {
	Pos  lexer.Position
	Text string `parser:"@Int"`
}

type gAddr struct {
	Pos  lexer.Position
	Text string `parser:"@( Addr4 | Addr6 | Prefix )"`
}

type gAddr4 struct {
	Pos  lexer.Position
	Text string `parser:"@Addr4"`
}

type gAddr6 struct {
	Pos  lexer.Position
	Text string `parser:"@Addr6"`
}

type gKey struct {
	Pos    lexer.Position
	Bare   *string `parser:"  @Word"`
	Quoted *string `parser:"| @String"`
}

type gValue struct {
	Pos    lexer.Position
	Bare   *string `parser:"  @( Word | Keyword | Int | DWord | Addr4 )"`
	Quoted *string `parser:"| @String"`
}

func polBuildParser[G any]() *participle.Parser[G] {
	return participle.MustBuild[G](
		participle.Lexer(polTokenDef{}),
		participle.Elide("Comment"),
		participle.UseLookahead(3),
	)
}

var (
	importParser    = polBuildParser[gImport]()
	endpointParser  = polBuildParser[gEndpoint]()
	cidrsetParser   = polBuildParser[gCIDRSet]()
	policyParser    = polBuildParser[gPolicy]()
	prefilterParser = polBuildParser[gPrefilter]()
	testParser      = polBuildParser[gTest]()
)
