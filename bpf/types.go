// Package bpf holds polc's datapath: the C sources of the tc and XDP
// programs, their bpf2go bindings, and the Go types of every map key and
// value. The compiler fills maps with these types; the runtime loads them.
//
// The layout here is the contract between the lowering (compiler/) and the
// C code (bpf/*.h); a test checks every type against the BTF in the object.
package bpf

// Reserved identities. Every other identity is assigned by the compiler
// (endpoints and CIDR prefixes), starting at FirstIdentity.
const (
	// IdentityAny is never assigned to an address: in a PolicyKey it
	// means "any remote".
	IdentityAny uint32 = 0
	// IdentityWorld is the identity of every address the ipcache does not
	// know. Policy entries for it also apply to every non-local identity
	// (CIDR identities), because `world` means "not a local endpoint".
	IdentityWorld uint32 = 1
	// FirstIdentity is the first identity the compiler assigns.
	FirstIdentity uint32 = 256
)

// IPCacheValue is what an address resolves to (maps ipcache4, ipcache6 keyed
// by the address for hosts; ipcache4_lpm, ipcache6_lpm keyed by an LPMKey
// for prefixes).
type IPCacheValue struct {
	Identity uint32
	Flags    uint32 // IPCache* bits
}

// IPCacheValue flags. The isolation and range bits describe the endpoint as
// a subject, copied onto each of its addresses so that one lookup answers
// both "who is this" and "how is it policed".
const (
	IPCacheLocal           uint32 = 1 << 0 // a local endpoint's address: it can be a subject
	IPCacheIngressIsolated uint32 = 1 << 1 // some policy selects it for ingress: default deny
	IPCacheEgressIsolated  uint32 = 1 << 2 // some policy selects it for egress: default deny
	IPCacheIngressRanges   uint32 = 1 << 3 // policy_ranges has ingress entries for it
	IPCacheEgressRanges    uint32 = 1 << 4 // policy_ranges has egress entries for it
)

// LPMKey4 keys the IPv4 LPM tries (ipcache4_lpm, prefilter4).
type LPMKey4 struct {
	Prefixlen uint32
	Addr      [4]byte // network byte order
}

// LPMKey6 keys the IPv6 LPM tries (ipcache6_lpm, prefilter6).
type LPMKey6 struct {
	Prefixlen uint32
	Addr      [16]byte
}

// PolicyKey keys the policy hash map. A new flow is looked up with the
// remote set to the remote's identity and to IdentityAny (and to
// IdentityWorld when the remote is not local), and for each with the exact
// protocol and port, the protocol with PolicyAnyPort, and protocol 0 (any)
// with PolicyAnyPort. Each hit holds the verdict precomputed for its class;
// the datapath combines hits: any deny wins, with the lowest rule id; else
// any allow, with the lowest rule id; else the subject's default.
//
// For ICMP and ICMPv6 the "port" is type<<8 | code.
type PolicyKey struct {
	Subject uint32 // the subject endpoint's identity
	Remote  uint32 // the remote identity, or IdentityAny
	Port    uint16 // destination port (host byte order); 0 with PolicyAnyPort
	Proto   uint8  // IP protocol; 0 means any protocol
	Flags   uint8  // PolicyEgress, PolicyAnyPort
}

// PolicyKey flags.
const (
	PolicyEgress  uint8 = 1 << 0 // the entry governs the subject's egress (else ingress)
	PolicyAnyPort uint8 = 1 << 1 // the entry matches every port of Proto
)

// PolicyValue is a precomputed verdict.
type PolicyValue struct {
	Verdict uint8 // VerdictAllow or VerdictDeny
	Pad     [3]uint8
	Rule    uint32 // the deciding rule id (see compiler/ir RuleID)
}

// Verdicts stored in PolicyValue.
const (
	VerdictAllow uint8 = 1
	VerdictDeny  uint8 = 2
)

// PolicyRangeKey keys the policy_ranges LPM trie, which holds port
// intervals that are not single ports, encoded as the fewest prefixes of
// the port. It is consulted only for subjects whose ipcache entry has the
// direction's IPCache*Ranges flag. Every field but Port is matched
// exactly, so Prefixlen = 80 + (number of significant port bits).
type PolicyRangeKey struct {
	Prefixlen uint32
	Subject   [4]byte // big endian
	Remote    [4]byte // big endian; IdentityAny for any remote
	Proto     uint8
	Flags     uint8   // PolicyEgress only
	Port      [2]byte // big endian, so that a prefix covers the high bits
}

// PolicyRangeKeyFixedBits is the number of key bits before the port.
const PolicyRangeKeyFixedBits = 80
