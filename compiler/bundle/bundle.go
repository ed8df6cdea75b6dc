package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
)

// FormatVersion is the bundle format this package writes and reads.
// Format 2 added endpoints.json and the endpoint field of ipcache values
// (the interface binding); format 3 objects keep one conntrack table per
// endpoint (an array of maps), which the runtime fills; format 4 objects
// keep the policy content maps as arrays of two maps and the generation
// in a map (a map-only apply switches both with one update); format 5
// policy values have two slots, admin and main, for tiered policy
// (bpf.PolicyValue).
const FormatVersion = 5

// File names inside a bundle.
const (
	ManifestFile   = "manifest.json"
	ObjectFile     = "polc.bpf.o"
	IdentitiesFile = "identities.json"
	EndpointsFile  = "endpoints.json"
	RulesFile      = "rules.json"
	MapDir         = "maps"
)

// ByteOrder is the byte order of every host-order field in map records: the
// kernel stores keys and values in the CPU's order, and polc targets
// little-endian machines (x86-64, arm64).
const ByteOrder = "little-endian"

// Bundle is a compiled policy in memory. Build one with the compiler (or by
// hand in tests), then Write it; Read gives it back verified.
type Bundle struct {
	Manifest   Manifest
	Object     []byte
	Maps       []Map // in Manifest.Maps order after Seal
	Identities []Identity
	Endpoints  []Endpoint
	Rules      []Rule
}

// Manifest is manifest.json: what a loader needs to know before it looks at
// any other file.
type Manifest struct {
	Format       int        `json:"format"`
	Compiler     string     `json:"compiler"`
	SourceDigest string     `json:"source_digest"` // SHA-256 over Sources (see SourceDigest)
	Sources      []Source   `json:"sources"`
	ByteOrder    string     `json:"byte_order"`
	Object       FileRef    `json:"object"`
	Programs     []Program  `json:"programs"`
	TailCalls    TailCalls  `json:"tail_calls"`
	Constants    []Constant `json:"constants"`
	Maps         []MapSpec  `json:"maps"`
	Identities   FileRef    `json:"identities"`
	Endpoints    FileRef    `json:"endpoints"`
	Rules        FileRef    `json:"rules"`
}

// Source is one input file of the build.
type Source struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// FileRef names a file of the bundle with its size and digest.
type FileRef struct {
	File   string `json:"file"`
	Size   int    `json:"size"`
	SHA256 string `json:"sha256"`
}

// Program is a BPF program of the object that the bundle uses, and where
// the runtime attaches it. Programs reached only by tail calls have no hooks.
type Program struct {
	Name  string   `json:"name"`
	Hooks []string `json:"hooks,omitempty"`
}

// Hook names used in Program.Hooks.
const (
	// HookEndpointEgress is tc on the host side of each endpoint's veth,
	// ingress direction: packets the endpoint sends.
	HookEndpointEgress = "tc/endpoint-egress"
	// HookEndpointIngress is tc on the host side of each endpoint's veth,
	// egress direction: packets sent to the endpoint.
	HookEndpointIngress = "tc/endpoint-ingress"
	// HookUplinkXDP is XDP on each uplink, for the prefilter.
	HookUplinkXDP = "xdp/uplink"
)

// TailCalls is the layout of the PROG_ARRAY: which program each slot
// holds. Slots not listed stay empty.
type TailCalls struct {
	Map   string `json:"map"`
	Size  uint32 `json:"size"`
	Slots []Slot `json:"slots"`
}

// Slot is one filled PROG_ARRAY slot.
type Slot struct {
	Index   uint32 `json:"index"`
	Program string `json:"program"`
}

// Constant is a `volatile const` global of the object, set at load time.
type Constant struct {
	Name  string `json:"name"`
	Size  int    `json:"size"` // bytes: 1, 2, 4 or 8
	Value uint64 `json:"value"`
}

// Map types.
const (
	MapHash        = "hash"
	MapLPMTrie     = "lpm_trie"
	MapPerCPUArray = "percpu_array"
)

// MapFlagNoPrealloc is BPF_F_NO_PREALLOC, which LPM tries require.
const MapFlagNoPrealloc uint32 = 1

// MapSpec describes one map whose contents the bundle carries.
type MapSpec struct {
	Name       string  `json:"name"`
	Type       string  `json:"type"`
	KeyType    string  `json:"key_type"` // the Go type in package bpf
	ValueType  string  `json:"value_type"`
	KeySize    int     `json:"key_size"`
	ValueSize  int     `json:"value_size"`
	MaxEntries uint32  `json:"max_entries"`
	Flags      uint32  `json:"flags"`
	Key        []Field `json:"key"`
	Value      []Field `json:"value"`
	Entries    int     `json:"entries"`
	File       string  `json:"file"`
	SHA256     string  `json:"sha256"`
}

// Field is one field of a key or value record.
type Field struct {
	Name   string `json:"name"`
	Offset int    `json:"offset"`
	Size   int    `json:"size"`
	// Type is "u8", "u16", "u32", "u64" (host order, see ByteOrder) or "bytes"
	// (network order: addresses and LPM data).
	Type string `json:"type"`
}

// Map is one map's spec and its records: Entries records of KeySize +
// ValueSize bytes, sorted by key bytes, keys unique.
type Map struct {
	MapSpec
	Data []byte
}

// Len is the number of records.
func (m *Map) Len() int {
	if n := m.KeySize + m.ValueSize; n > 0 {
		return len(m.Data) / n
	}
	return 0
}

// Record returns the key and value of record i.
func (m *Map) Record(i int) (key, value []byte) {
	n := m.KeySize + m.ValueSize
	r := m.Data[i*n : (i+1)*n]
	return r[:m.KeySize], r[m.KeySize:]
}

// Map returns the map called name, or nil.
func (b *Bundle) Map(name string) *Map {
	for i := range b.Maps {
		if b.Maps[i].Name == name {
			return &b.Maps[i]
		}
	}
	return nil
}

// Constant returns the value of the constant called name and whether the
// bundle sets it.
func (b *Bundle) Constant(name string) (uint64, bool) {
	for _, c := range b.Manifest.Constants {
		if c.Name == name {
			return c.Value, true
		}
	}
	return 0, false
}

// Identity is one identity the compiler assigned (identities.json).
type Identity struct {
	ID        uint32   `json:"id"`
	Kind      string   `json:"kind"`                // IdentityEndpoint, IdentityCIDR or IdentityWorld
	Labels    []string `json:"labels,omitempty"`    // "key=value", sorted; endpoint identities
	CIDRs     []string `json:"cidrs,omitempty"`     // rule CIDRs (with excepts) that contain its addresses
	Endpoints []string `json:"endpoints,omitempty"` // local endpoints with this identity
	Remote    []string `json:"remote,omitempty"`    // remote endpoints (other nodes') with it
}

// Identity kinds.
const (
	IdentityEndpoint = "endpoint"
	IdentityCIDR     = "cidr"
	IdentityWorld    = "world"
)

// DigestPrefix starts every digest polc prints.
const DigestPrefix = "sha256:"

// RootDigest is the digest of the whole bundle, "sha256:HEX": the SHA-256
// of its sealed manifest.json, which holds the digest and size of every
// other file, the constants, the programs and their hooks and the tail-call
// layout. Two bundles with the same root digest are the same bundle, byte
// for byte; a bundle edited anywhere (a constant, a hook, a map together
// with its digest in the manifest) has another one. build and inspect
// print it; load and apply verify it with --digest.
func (b *Bundle) RootDigest() (string, error) {
	cp := *b
	cp.Manifest.Maps = slices.Clone(b.Manifest.Maps)
	cp.Maps = slices.Clone(b.Maps)
	files, err := cp.Files()
	if err != nil {
		return "", err
	}
	return DigestPrefix + Digest(files[0].Data), nil
}

// Endpoint is one entry of endpoints.json: a local endpoint and the index
// by which the datapath knows it (the endpoint field of ipcache values).
// The runtime binds an interface to an endpoint by writing its index into
// the interface map (docs/runtime.md). Indices run from 1, in name order.
type Endpoint struct {
	Index uint32   `json:"index"`
	Name  string   `json:"name"`
	Addrs []string `json:"addrs"`
}

// EndpointNamed returns the endpoint called name, or nil.
func (b *Bundle) EndpointNamed(name string) *Endpoint {
	for i := range b.Endpoints {
		if b.Endpoints[i].Name == name {
			return &b.Endpoints[i]
		}
	}
	return nil
}

// Rule is one entry of rules.json: what a rule id stands for.
type Rule struct {
	ID     uint32 `json:"id"`
	Name   string `json:"name,omitempty"` // reserved ids: "default-deny", ...
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
	Col    int    `json:"col,omitempty"`
	Policy string `json:"policy,omitempty"`
	Text   string `json:"text,omitempty"`
	// Verdict is what the rule (or reserved reason) decides: "allow",
	// "deny", "pass" (a tiered rule handing the packet to the next
	// level), or "audit" for the rules of audit policies (reported, never
	// enforced).
	Verdict string `json:"verdict,omitempty"`
	// Tier is "admin" or "baseline" for the rules of tiered policies (""
	// at the namespace level); Priority is their policy's priority and
	// Rank the rule's place in its tier's order, from 1 (ir.Rule.Rank).
	Tier     string `json:"tier,omitempty"`
	Priority *int   `json:"priority,omitempty"`
	Rank     uint32 `json:"rank,omitempty"`
}

// Digest is the hex SHA-256 of b.
func Digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// SourceDigest is the digest of a build's inputs: SHA-256 over one line
// "path NUL sha256 LF" per source, in the order given.
func SourceDigest(srcs []Source) string {
	h := sha256.New()
	for _, s := range srcs {
		fmt.Fprintf(h, "%s\x00%s\n", s.Path, s.SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))
}
