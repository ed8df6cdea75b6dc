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
	// Endpoint is the index of the local endpoint that owns the address
	// (from 1, see bundle.Endpoint); 0 for addresses no endpoint owns.
	// The datapath compares it with the interface's binding (IfaceValue).
	Endpoint uint32
}

// IfaceValue binds an interface (maps iface_endpoints and
// iface_endpoints_big, keyed by uint32 ifindex) to the endpoint it serves.
// The runtime writes it; bundles carry no entries. Endpoint 0 is unbound.
type IfaceValue struct {
	Endpoint uint32
}

// EndpointPass is the IfaceValue.Endpoint of an interface the runtime is
// detaching: both its hooks pass everything, without counting, so that a
// kill half-way through a detach or unload never leaves one direction
// policed and the other not.
const EndpointPass uint32 = 0xffffffff

// IfaceArraySize is the number of ifindexes iface_endpoints (an array,
// looked up without a helper call) holds; larger ifindexes go into
// iface_endpoints_big.
const IfaceArraySize = 65536

// IPCacheValue flags. The isolation and range bits describe the endpoint as
// a subject, copied onto each of its addresses so that one lookup answers
// both "who is this" and "how is it policed".
const (
	IPCacheLocal           uint32 = 1 << 0 // a local endpoint's address: it can be a subject
	IPCacheIngressIsolated uint32 = 1 << 1 // some policy selects it for ingress: default deny
	IPCacheEgressIsolated  uint32 = 1 << 2 // some policy selects it for egress: default deny
	IPCacheIngressRanges   uint32 = 1 << 3 // policy_ranges has ingress entries for it
	IPCacheEgressRanges    uint32 = 1 << 4 // policy_ranges has egress entries for it
	// IPCacheIngressAudit and IPCacheEgressAudit: an audit policy selects
	// the subject in that direction, and the policy maps hold its entries
	// of every policy (PolicyAudit) for the audit question.
	IPCacheIngressAudit uint32 = 1 << 13
	IPCacheEgressAudit  uint32 = 1 << 14
	// IPCacheRemoteEndpoint: an endpoint of another node (a node bundle's
	// remote endpoint). Not the world's (no world probe), never a subject
	// (no other flag, Endpoint 0, so it fails every hook's address check).
	IPCacheRemoteEndpoint uint32 = 1 << 15
	// IPCacheIngressTieredDeny and IPCacheEgressTieredDeny: a tiered
	// policy with a deny rule in that direction selects the identity, so
	// a later fragment of an unknown datagram is dropped there
	// (RuleFragment) even when nothing isolates the direction.
	IPCacheIngressTieredDeny uint32 = 1 << 16
	IPCacheEgressTieredDeny  uint32 = 1 << 17
)

// Probe hints in IPCacheValue.Flags, read by the datapath only when
// ConstPolicyHints is 1 (a promise by the compiler that it sets them for
// every subject). A hint says the subject has policy or policy_ranges
// entries of that class in that direction; the policy program skips the
// lookups of classes without a hint. Without ConstPolicyHints every class
// is probed, so the hints are an optimisation, never a meaning.
//
// Shift the Hint* bits by IPCacheIngressHintShift or
// IPCacheEgressHintShift: flags |= HintAnyPort << IPCacheIngressHintShift.
const (
	HintAnyRemote uint32 = 1 << 0 // entries with Remote = IdentityAny
	HintWorld     uint32 = 1 << 1 // entries with Remote = IdentityWorld
	HintAnyPort   uint32 = 1 << 2 // entries with PolicyAnyPort and a protocol
	HintAnyProto  uint32 = 1 << 3 // entries with protocol 0

	IPCacheIngressHintShift = 5
	IPCacheEgressHintShift  = 9
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
// with PolicyAnyPort. Each hit holds the verdicts precomputed for its
// class (PolicyValue); the datapath combines hits slot by slot, lowest
// order first.
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
	// PolicyAudit: the entry is of every policy, audit ones included; the
	// datapath asks these only for audited subjects, about what the
	// enforcing entries allow. Also in PolicyRangeKey.Flags.
	PolicyAudit uint8 = 1 << 2
)

// PolicyValue holds the verdicts precomputed for a key's class, in two
// slots (docs/datapath.md): the admin slot, the admin tier's rule of
// lowest rank among those matching the class; and the main slot, the
// namespace level's verdict (untiered rules) or, in a direction no
// untiered policy isolates, the baseline tier's. Verdict 0 is an empty
// slot. Over a packet's probes the datapath keeps, per slot, the hit of
// lowest order; then the admin slot decides unless empty or pass, else the
// main slot unless empty or pass, else the subject's default.
type PolicyValue struct {
	Verdict      uint8 // main slot: 0, VerdictAllow, VerdictDeny or VerdictPass
	AdminVerdict uint8 // admin slot: 0, VerdictAllow, VerdictDeny or VerdictPass
	Tier         uint8 // the main slot's tier (TierBaseline or 0); for dumps, the datapath ignores it
	Pad          uint8
	Rule         uint32 // main slot: the deciding rule id (see compiler/ir RuleID)
	// Order ranks main-slot hits, lowest first: for untiered rules
	// OrderUntiered (deny beats allow, then the lowest rule id), for
	// baseline rules the rule's rank.
	Order      uint32
	AdminRule  uint32 // admin slot: the deciding rule id
	AdminOrder uint32 // admin slot: the rule's rank
}

// TierBaseline in PolicyValue.Tier: the main slot holds a baseline rule.
const TierBaseline uint8 = 2

// OrderAllow is added to an untiered allow rule's id to make its order:
// every deny (order = its id) sorts before every allow.
const OrderAllow uint32 = 1 << 30

// OrderUntiered is the main-slot order of an untiered rule.
func OrderUntiered(verdict uint8, rule uint32) uint32 {
	if verdict == VerdictAllow {
		return OrderAllow | rule
	}
	return rule
}

// Verdicts stored in PolicyValue.
const (
	VerdictAllow uint8 = 1
	VerdictDeny  uint8 = 2
	// VerdictAudit is an Event's verdict only: the packet passed, and
	// Event.Audit is the audit policy's rule that would have denied it.
	VerdictAudit uint8 = 3
	// VerdictPass is a PolicyValue slot's only: a tiered rule hands the
	// packet to the next level.
	VerdictPass uint8 = 4
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

// Names of the programs in the object.
const (
	// ProgEndpointEgress is the tc entry program for traffic from an
	// endpoint (attach at the host side's ingress of its veth).
	ProgEndpointEgress = "tc_endpoint_egress"
	// ProgEndpointIngress is the tc entry program for traffic to an
	// endpoint (attach at the host side's egress of its veth).
	ProgEndpointIngress = "tc_endpoint_ingress"
	ProgPolicy4         = "tc_policy4"  // tail call: policy decision, IPv4
	ProgPolicy6         = "tc_policy6"  // tail call: policy decision, IPv6
	ProgEpilogue        = "tc_epilogue" // tail call: conntrack, counters, events
	ProgPrefilter       = "xdp_prefilter"
)

// Names of the maps in the object.
const (
	// The content maps (ContentMaps) are ARRAY_OF_MAPS of ContentSlots
	// inner maps of the type given here; packets look up slot
	// generation & 1 (MapGeneration).
	MapIPCache4     = "ipcache4"      // HASH [4]byte → IPCacheValue
	MapIPCache6     = "ipcache6"      // HASH [16]byte → IPCacheValue
	MapIPCache4LPM  = "ipcache4_lpm"  // LPM_TRIE LPMKey4 → IPCacheValue
	MapIPCache6LPM  = "ipcache6_lpm"  // LPM_TRIE LPMKey6 → IPCacheValue
	MapPolicy       = "policy"        // HASH PolicyKey → PolicyValue
	MapPolicyRanges = "policy_ranges" // LPM_TRIE PolicyRangeKey → PolicyValue
	// MapGeneration (ARRAY 1 × uint32) holds the policy generation in
	// force: stamped into conntrack, fragment verdicts and events, and
	// its low bit selects the content maps' slot. One update of it
	// switches a map-only apply.
	MapGeneration  = "generation"
	MapConntrack   = "conntrack"    // ARRAY_OF_MAPS uint32 (endpoint index) → LRU_HASH CTKey → CTValue, one per endpoint
	MapFrags       = "frags"        // LRU_HASH FragKey → FragValue
	MapCounters    = "counters"     // PERCPU_ARRAY uint32 (rule id) → Counter
	MapEvents      = "events"       // RINGBUF of Event
	MapEventsLost  = "events_lost"  // PERCPU_ARRAY 1 × uint64: events the full ring buffer refused
	MapEventsAllow = "events_allow" // ARRAY 1 × uint64: allow events until this CLOCK_MONOTONIC ns
	MapPrefilter4  = "prefilter4"   // LPM_TRIE LPMKey4 → uint32 (reserved, write 1)
	MapPrefilter6  = "prefilter6"   // LPM_TRIE LPMKey6 → uint32 (reserved, write 1)
	MapTailCalls   = "tailcalls"    // PROG_ARRAY, slots from Const*Slot*
	// MapIfaceEndpoints and MapIfaceEndpointsBig bind interfaces to
	// endpoints: ARRAY and HASH uint32 (ifindex) → IfaceValue.
	MapIfaceEndpoints    = "iface_endpoints"
	MapIfaceEndpointsBig = "iface_endpoints_big"
	MapScratch           = "scratch" // PERCPU_ARRAY, per-packet state between tail calls
)

// ContentMaps are the maps whose contents make up a policy, double
// buffered (ContentSlots inner maps each) so that a new policy with the
// same programs switches with one update of MapGeneration.
var ContentMaps = []string{MapIPCache4, MapIPCache6, MapIPCache4LPM, MapIPCache6LPM, MapPolicy, MapPolicyRanges}

// ContentSlots is the number of inner maps of each content map.
const ContentSlots = 2

// ContentSlot is the slot of the content maps generation gen uses.
func ContentSlot(gen uint32) uint32 { return gen & 1 }

// Tail-call slots: how many MapTailCalls has, and where the programs go
// when the Const*Slot* constants are left at their defaults.
const (
	TailCallSlots       = 8
	DefaultSlotPolicy4  = 0
	DefaultSlotPolicy6  = 1
	DefaultSlotEpilogue = 2
)

// Load-time constants (volatile const __u32 in bpf/common.h). Every one is
// a uint32; set them with CollectionSpec.Variables[name].Set(uint32(v)).
// Defaults turn every feature on, so an unset switch costs speed, never
// correctness.
const (
	ConstHasIPv4           = "cfg_has_ipv4"            // 0: no IPv4 endpoint; every IPv4 address is the world's, unlooked (default 1)
	ConstHasIPv6           = "cfg_has_ipv6"            // 0: no IPv6 endpoint; every IPv6 address is the world's, unlooked (default 1)
	ConstHasPrefixes4      = "cfg_has_prefixes4"       // ipcache4_lpm is consulted on a hash miss (default 1)
	ConstHasPrefixes6      = "cfg_has_prefixes6"       // ipcache6_lpm is consulted on a hash miss (default 1)
	ConstHasRanges         = "cfg_has_ranges"          // policy_ranges is consulted for subjects with *Ranges (default 1)
	ConstEventsAllow       = "cfg_events_allow"        // 1: emit events for allowed packets too (default 0)
	ConstPolicyHints       = "cfg_policy_hints"        // 1: ipcache flags carry Hint* bits; absent classes are not probed (default 0)
	ConstSlotPolicy4       = "cfg_slot_policy4"        // tailcalls slot of tc_policy4 (default 0)
	ConstSlotPolicy6       = "cfg_slot_policy6"        // tailcalls slot of tc_policy6 (default 1)
	ConstSlotEpilogue      = "cfg_slot_epilogue"       // tailcalls slot of tc_epilogue (default 2)
	ConstCTLifetimeTCP     = "cfg_ct_lifetime_tcp"     // seconds an open TCP flow lives idle (default 21600)
	ConstCTLifetimeClosing = "cfg_ct_lifetime_closing" // seconds a TCP flow lives after FIN (default 10)
	ConstCTLifetimeOther   = "cfg_ct_lifetime_other"   // seconds a UDP/SCTP/ICMP/other flow lives idle (default 60)
	ConstFragLifetime      = "cfg_frag_lifetime"       // seconds a first fragment's verdict is kept (default 30)
	ConstDropTunnels       = "cfg_drop_tunnels"        // 1: endpoints' hooks drop tunnel protocols (default 0)
)

// Directions (from the endpoint's point of view), as in CTValue.Origin,
// Tuple.Dir and Event.Dir. DirEgress equals PolicyEgress.
const (
	DirIngress uint8 = 0
	DirEgress  uint8 = 1
)

// Families in CTKey, FragKey and Event.
const (
	FamilyIPv4 uint8 = 4
	FamilyIPv6 uint8 = 6
)

// CTKey keys the conntrack map: a flow as one endpoint sees it, the
// endpoint's (subject's) address and port first whichever way the packet
// goes. A packet at the endpoint's egress hook has Laddr = source, at its
// ingress hook Laddr = destination, so a flow and its replies share one key
// and one probe finds it; CTValue.Origin records which hook opened it.
// Flows between two local endpoints have an entry at each.
//
// IPv4 addresses fill the first 4 bytes of each address, the rest zero.
// Ports are in host byte order. ICMP echo is tracked with the ports of the
// request (id, 0) as the request's sender sees them, and Echo says which
// side sent the request; other ICMP messages are not tracked.
type CTKey struct {
	Laddr  [16]byte
	Raddr  [16]byte
	Lport  uint16
	Rport  uint16
	Proto  uint8
	Family uint8 // FamilyIPv4 or FamilyIPv6
	Echo   uint8 // CTEchoLocal or CTEchoRemote for ICMP echo, else 0
	Pad    uint8
}

// CTKey.Echo: which side sent the echo request.
const (
	CTEchoLocal  uint8 = 1 // the endpoint pings the remote
	CTEchoRemote uint8 = 2 // the remote pings the endpoint
)

// Tuple is a packet as observed at one hook (PacketState.Tuple and .Inner),
// in the same encoding as CTKey's fields.
type Tuple struct {
	Saddr  [16]byte
	Daddr  [16]byte
	Sport  uint16
	Dport  uint16
	Proto  uint8
	Family uint8
	Dir    uint8 // DirIngress or DirEgress: the hook that observed it
	Pad    uint8
}

// CTValue is a tracked, allowed flow. Expires is in CLOCK_MONOTONIC
// nanoseconds (the datapath reads bpf_ktime_get_coarse_ns, the same clock
// at tick resolution); an entry at or past it is a miss. An
// entry whose Generation differs from MapGeneration's is
// checked against policy again by its next packet (refreshed on allow,
// deleted on deny).
type CTValue struct {
	Expires    uint64
	Packets    uint64 // both directions
	Bytes      uint64
	Rule       uint32 // the rule that allowed the flow
	Generation uint32
	State      uint8 // CTOpen or CTClosing
	Origin     uint8 // DirIngress or DirEgress: the hook whose packet opened the flow
	Pad        [6]uint8
}

// CTValue states.
const (
	CTOpen    uint8 = 1 // normal lifetime
	CTClosing uint8 = 2 // FIN seen: ConstCTLifetimeClosing
)

// FragKey keys the frags map: one fragmented datagram at one endpoint in
// one direction.
type FragKey struct {
	Saddr  [16]byte
	Daddr  [16]byte
	ID     uint32 // IPv4 identification or IPv6 fragment id
	Proto  uint8
	Family uint8
	Dir    uint8
	Pad    uint8
}

// FragValue is the verdict of a datagram's first fragment, which its later
// fragments follow. A record whose Generation differs from the loaded
// MapGeneration's was decided under another policy: later fragments treat
// the first fragment as unknown (RuleFragment where the subject is
// isolated, else RuleDefaultAllow).
type FragValue struct {
	Expires    uint64
	Rule       uint32
	Generation uint32 // MapGeneration's when the first fragment was decided
	Verdict    uint8
	Pad        [7]uint8
}

// Counter is one CPU's count for a rule id in the counters map (index =
// rule id; the compiler sizes the map to the highest rule id + 1).
type Counter struct {
	Packets uint64
	Bytes   uint64
}

// Event is a record of the events ring buffer: every dropped packet, and
// allowed ones when ConstEventsAllow is 1. For ICMP/ICMPv6, Sport is 0 and
// Dport is type<<8|code. Subject and Remote are 0 when the packet was
// decided before they were looked up: Subject for non-IP, IPv6 neighbour
// discovery and malformed packets, Remote also for packets of non-local subjects and packets
// decided by conntrack (established, related) or by a fragment's verdict.
type Event struct {
	Rule    uint32
	Verdict uint8
	Dir     uint8
	Family  uint8
	Proto   uint8
	Saddr   [16]byte
	Daddr   [16]byte
	Sport   uint16
	Dport   uint16
	Subject uint32
	Remote  uint32
	Len     uint32
	// Generation is the cfg_generation of the programs that decided (the
	// policy generation: 1 after load, one more per apply).
	Generation uint32
	// Audit, with VerdictAudit, is the audit rule that would have denied
	// the packet (Rule is the one that passed it).
	Audit uint32
}

// PacketState is the value of the scratch map: the state the tc programs
// pass between tail calls, one per CPU. It is internal to the datapath —
// nothing outside bpf/ reads or writes it — and is here so that every map
// value has a Go type checked against the object.
type PacketState struct {
	Tuple        Tuple  // the packet as observed (Dir = the hook's direction)
	Flow         CTKey  // its conntrack key: to create, refresh or forget
	Inner        Tuple  // ICMP error: the quoted packet's tuple
	Now          uint64 // bpf_ktime_get_coarse_ns(), read once at entry
	Subject      uint32
	SubjectFlags uint32
	Remote       uint32
	RemoteFlags  uint32
	Rule         uint32
	Len          uint32
	FragID       uint32
	Endpoint     uint32 // index of the endpoint the interface serves
	Audit        uint32 // the policy allows, but this audit rule would deny (0: none)
	Generation   uint32 // MapGeneration's value, read once at entry
	PolicyPort   uint16
	EvSport      uint16
	EvDport      uint16
	Verdict      uint8
	PolDir       uint8
	Kind         uint8
	TCPFlags     uint8
	Frag         uint8
	Track        uint8
	HasInner     uint8
	Echo         uint8 // POLC_ECHO_* (common.h)
	InnerEcho    uint8
	Portless     uint8
	HopLimit     uint8
	CTSkip       uint8 // 1: the local remote's hook denies the flow: no conntrack entry
	CTExpired    uint8 // 1: the flow's conntrack entry exists, expired: rewritten in place
	Pad          [4]uint8
}
