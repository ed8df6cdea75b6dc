package bundle

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/polc-dev/polc/bpf"
)

// Names of the maps a bundle carries (the object's names, bpf.Map*).
const (
	MapIPCache4     = bpf.MapIPCache4     // IPv4 host address → IPCacheValue
	MapIPCache6     = bpf.MapIPCache6     // IPv6 host address → IPCacheValue
	MapIPCache4LPM  = bpf.MapIPCache4LPM  // IPv4 prefix (LPMKey4) → IPCacheValue
	MapIPCache6LPM  = bpf.MapIPCache6LPM  // IPv6 prefix (LPMKey6) → IPCacheValue
	MapPolicy       = bpf.MapPolicy       // PolicyKey → PolicyValue
	MapPolicyRanges = bpf.MapPolicyRanges // PolicyRangeKey → PolicyValue
	MapPrefilter4   = bpf.MapPrefilter4   // LPMKey4 → uint32 (reserved, 1)
	MapPrefilter6   = bpf.MapPrefilter6   // LPMKey6 → uint32 (reserved, 1)
	// MapCounters carries no records, only its size: one slot per rule id
	// up to the highest the bundle uses.
	MapCounters = bpf.MapCounters // uint32 rule id → per-CPU Counter
)

// MapNames lists every map a bundle carries, in manifest order.
var MapNames = []string{
	MapIPCache4, MapIPCache6, MapIPCache4LPM, MapIPCache6LPM,
	MapPolicy, MapPolicyRanges, MapPrefilter4, MapPrefilter6, MapCounters,
}

var le = binary.LittleEndian

// Key and value layouts, one per record shape.
var (
	addr4Fields = []Field{{"addr", 0, 4, "bytes"}}
	addr6Fields = []Field{{"addr", 0, 16, "bytes"}}
	lpm4Fields  = []Field{{"prefixlen", 0, 4, "u32"}, {"addr", 4, 4, "bytes"}}
	lpm6Fields  = []Field{{"prefixlen", 0, 4, "u32"}, {"addr", 4, 16, "bytes"}}
	ipcacheVal  = []Field{{"identity", 0, 4, "u32"}, {"flags", 4, 4, "u32"}, {"endpoint", 8, 4, "u32"}}
	policyKey   = []Field{{"subject", 0, 4, "u32"}, {"remote", 4, 4, "u32"}, {"port", 8, 2, "u16"}, {"proto", 10, 1, "u8"}, {"flags", 11, 1, "u8"}}
	policyVal   = []Field{{"verdict", 0, 1, "u8"}, {"admin_verdict", 1, 1, "u8"}, {"tier", 2, 1, "u8"}, {"pad", 3, 1, "u8"}, {"rule", 4, 4, "u32"}, {"order", 8, 4, "u32"}, {"admin_rule", 12, 4, "u32"}, {"admin_order", 16, 4, "u32"}}
	rangeKey    = []Field{{"prefixlen", 0, 4, "u32"}, {"subject", 4, 4, "bytes"}, {"remote", 8, 4, "bytes"}, {"proto", 12, 1, "u8"}, {"flags", 13, 1, "u8"}, {"port", 14, 2, "bytes"}}
	ruleVal     = []Field{{"rule", 0, 4, "u32"}}
	u32Key      = []Field{{"rule", 0, 4, "u32"}}
	counterVal  = []Field{{"packets", 0, 8, "u64"}, {"bytes", 8, 8, "u64"}}
)

// Spec returns the spec of the content map called name, without max
// entries, count or digest.
func Spec(name string) (MapSpec, error) {
	s := MapSpec{Name: name}
	switch name {
	case MapIPCache4:
		s.Type, s.KeyType, s.Key = MapHash, "[4]byte", addr4Fields
	case MapIPCache6:
		s.Type, s.KeyType, s.Key = MapHash, "[16]byte", addr6Fields
	case MapIPCache4LPM, MapPrefilter4:
		s.Type, s.KeyType, s.Key = MapLPMTrie, "bpf.LPMKey4", lpm4Fields
	case MapIPCache6LPM, MapPrefilter6:
		s.Type, s.KeyType, s.Key = MapLPMTrie, "bpf.LPMKey6", lpm6Fields
	case MapPolicy:
		s.Type, s.KeyType, s.Key = MapHash, "bpf.PolicyKey", policyKey
		s.ValueType, s.Value = "bpf.PolicyValue", policyVal
	case MapPolicyRanges:
		s.Type, s.KeyType, s.Key = MapLPMTrie, "bpf.PolicyRangeKey", rangeKey
		s.ValueType, s.Value = "bpf.PolicyValue", policyVal
	case MapCounters:
		s.Type, s.KeyType, s.Key = MapPerCPUArray, "uint32", u32Key
		s.ValueType, s.Value = "bpf.Counter", counterVal
	default:
		return s, fmt.Errorf("unknown map %q", name)
	}
	switch name {
	case MapIPCache4, MapIPCache6, MapIPCache4LPM, MapIPCache6LPM:
		s.ValueType, s.Value = "bpf.IPCacheValue", ipcacheVal
	case MapPrefilter4, MapPrefilter6:
		s.ValueType, s.Value = "uint32", ruleVal
	}
	if s.Type == MapLPMTrie {
		s.Flags = MapFlagNoPrealloc
	}
	s.KeySize = fieldsSize(s.Key)
	s.ValueSize = fieldsSize(s.Value)
	return s, nil
}

func fieldsSize(fs []Field) int {
	f := fs[len(fs)-1]
	return f.Offset + f.Size
}

// NewMap builds the map called name from records (each key then value, of
// the spec's sizes, concatenated in any order). It sorts them by key
// bytes (unless they already are: a caller with millions of records can
// emit them in order) and rejects duplicate keys; MaxEntries is left for
// the caller.
func NewMap(name string, records []byte) (Map, error) {
	spec, err := Spec(name)
	if err != nil {
		return Map{}, err
	}
	n := spec.KeySize + spec.ValueSize
	if len(records)%n != 0 {
		return Map{}, fmt.Errorf("map %s: %d bytes is not a whole number of %d-byte records", name, len(records), n)
	}
	data := records
	if !sorted(records, n, spec.KeySize) {
		data = sortRecords(records, n, spec.KeySize)
	}
	for i := n; i < len(data); i += n {
		if bytes.Equal(data[i-n:i-n+spec.KeySize], data[i:i+spec.KeySize]) {
			return Map{}, fmt.Errorf("map %s: duplicate key %x", name, data[i:i+spec.KeySize])
		}
	}
	return Map{MapSpec: spec, Data: data}, nil
}

// sorted reports whether the records are in non-decreasing key order.
func sorted(data []byte, n, keySize int) bool {
	for i := n; i < len(data); i += n {
		if bytes.Compare(data[i-n:i-n+keySize], data[i:i+keySize]) > 0 {
			return false
		}
	}
	return true
}

// sortRecords sorts n-byte records by their first keySize bytes, which
// must be unique. Keys of up to 16 bytes are read as two big-endian words
// (the same order as the bytes) and radix-sorted a byte at a time,
// skipping digits that are equal in every key: linear, and several times
// faster than a comparison sort on millions of policy entries.
func sortRecords(data []byte, n, keySize int) []byte {
	count := len(data) / n
	if keySize > 16 {
		idx := make([]int, count)
		for i := range idx {
			idx[i] = i
		}
		slices.SortFunc(idx, func(a, b int) int { return bytes.Compare(data[a*n:a*n+keySize], data[b*n:b*n+keySize]) })
		out := make([]byte, 0, len(data))
		for _, i := range idx {
			out = append(out, data[i*n:(i+1)*n]...)
		}
		return out
	}
	if n-keySize > 24 {
		panic("bundle: record values are at most 24 bytes")
	}
	// A rec carries the whole record, so that the sorted output is
	// written sequentially with no gather from data.
	type rec struct {
		w [2]uint64 // key bytes 0..7 and 8..15, big endian
		v [24]byte  // value bytes
	}
	recs := make([]rec, count)
	var kb [16]byte
	for i := range recs {
		r := data[i*n : (i+1)*n]
		copy(kb[:], r[:keySize])
		recs[i].w = [2]uint64{binary.BigEndian.Uint64(kb[:8]), binary.BigEndian.Uint64(kb[8:])}
		copy(recs[i].v[:], r[keySize:])
	}
	tmp := make([]rec, count)
	var counts [256]int
	// Least significant byte first: word 1 then word 0, low bits first.
	// (Byte digits keep the scatter within 256 runs, which caches well.)
	for d := range 16 {
		word, shift := 1-d/8, uint(d%8)*8
		clear(counts[:])
		for _, r := range recs {
			counts[r.w[word]>>shift&0xff]++
		}
		if count == 0 || counts[recs[0].w[word]>>shift&0xff] == count {
			continue // the same digit everywhere: nothing to do
		}
		sum := 0
		for k, c := range counts {
			counts[k] = sum
			sum += c
		}
		for _, r := range recs {
			k := r.w[word] >> shift & 0xff
			tmp[counts[k]] = r
			counts[k]++
		}
		recs, tmp = tmp, recs
	}
	out := make([]byte, len(data))
	for i, r := range recs {
		o := out[i*n : (i+1)*n]
		binary.BigEndian.PutUint64(kb[:8], r.w[0])
		binary.BigEndian.PutUint64(kb[8:], r.w[1])
		copy(o, kb[:keySize])
		copy(o[keySize:], r.v[:])
	}
	return out
}

// AppendIPCacheHost appends an ipcache4/ipcache6 record.
func AppendIPCacheHost(b []byte, addr netip.Addr, v bpf.IPCacheValue) []byte {
	b = append(b, addr.AsSlice()...)
	return appendIPCacheValue(b, v)
}

// AppendIPCacheLPM appends an ipcache4_lpm/ipcache6_lpm record.
func AppendIPCacheLPM(b []byte, p netip.Prefix, v bpf.IPCacheValue) []byte {
	return appendIPCacheValue(appendLPMKey(b, p), v)
}

// AppendPrefilter appends a prefilter4/prefilter6 record. The value is
// reserved; the datapath expects 1.
func AppendPrefilter(b []byte, p netip.Prefix) []byte {
	return le.AppendUint32(appendLPMKey(b, p), 1)
}

func appendLPMKey(b []byte, p netip.Prefix) []byte {
	b = le.AppendUint32(b, uint32(p.Bits()))
	return append(b, p.Addr().AsSlice()...)
}

func appendIPCacheValue(b []byte, v bpf.IPCacheValue) []byte {
	b = le.AppendUint32(b, v.Identity)
	b = le.AppendUint32(b, v.Flags)
	return le.AppendUint32(b, v.Endpoint)
}

// AppendPolicy appends a policy record.
func AppendPolicy(b []byte, k bpf.PolicyKey, v bpf.PolicyValue) []byte {
	b = le.AppendUint32(b, k.Subject)
	b = le.AppendUint32(b, k.Remote)
	b = le.AppendUint16(b, k.Port)
	b = append(b, k.Proto, k.Flags)
	return appendPolicyValue(b, v)
}

// AppendPolicyRange appends a policy_ranges record.
func AppendPolicyRange(b []byte, k bpf.PolicyRangeKey, v bpf.PolicyValue) []byte {
	b = le.AppendUint32(b, k.Prefixlen)
	b = append(b, k.Subject[:]...)
	b = append(b, k.Remote[:]...)
	b = append(b, k.Proto, k.Flags)
	b = append(b, k.Port[:]...)
	return appendPolicyValue(b, v)
}

func appendPolicyValue(b []byte, v bpf.PolicyValue) []byte {
	b = append(b, v.Verdict, v.AdminVerdict, v.Tier, v.Pad)
	b = le.AppendUint32(b, v.Rule)
	b = le.AppendUint32(b, v.Order)
	b = le.AppendUint32(b, v.AdminRule)
	return le.AppendUint32(b, v.AdminOrder)
}

// DecodeIPCacheValue decodes an ipcache value.
func DecodeIPCacheValue(b []byte) bpf.IPCacheValue {
	return bpf.IPCacheValue{Identity: le.Uint32(b), Flags: le.Uint32(b[4:]), Endpoint: le.Uint32(b[8:])}
}

// DecodeHostKey decodes an ipcache4/ipcache6 key.
func DecodeHostKey(b []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(b)
	return a
}

// DecodeLPMKey decodes an LPMKey4 or LPMKey6 as a prefix.
func DecodeLPMKey(b []byte) netip.Prefix {
	a, _ := netip.AddrFromSlice(b[4:])
	return netip.PrefixFrom(a, int(le.Uint32(b)))
}

// DecodePolicyKey decodes a policy key.
func DecodePolicyKey(b []byte) bpf.PolicyKey {
	return bpf.PolicyKey{Subject: le.Uint32(b), Remote: le.Uint32(b[4:]), Port: le.Uint16(b[8:]), Proto: b[10], Flags: b[11]}
}

// DecodePolicyValue decodes a policy or policy_ranges value.
func DecodePolicyValue(b []byte) bpf.PolicyValue {
	return bpf.PolicyValue{Verdict: b[0], AdminVerdict: b[1], Tier: b[2], Pad: b[3], Rule: le.Uint32(b[4:]),
		Order: le.Uint32(b[8:]), AdminRule: le.Uint32(b[12:]), AdminOrder: le.Uint32(b[16:])}
}

// DecodePolicyRangeKey decodes a policy_ranges key.
func DecodePolicyRangeKey(b []byte) bpf.PolicyRangeKey {
	var k bpf.PolicyRangeKey
	k.Prefixlen = le.Uint32(b)
	copy(k.Subject[:], b[4:8])
	copy(k.Remote[:], b[8:12])
	k.Proto, k.Flags = b[12], b[13]
	copy(k.Port[:], b[14:16])
	return k
}
