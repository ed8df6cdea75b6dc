package bpf

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/polc-dev/polc/compiler/ir"
)

// TestLayoutMatchesBTF checks every Go key and value type against the BTF
// of the compiled object: same size, same fields in the same order at the
// same offsets with the same sizes. C and Go cannot drift apart.
func TestLayoutMatchesBTF(t *testing.T) {
	spec, err := Spec()
	if err != nil {
		t.Fatal(err)
	}
	maps := []struct {
		name       string
		key, value any
	}{
		{MapIPCache4, [4]byte{}, IPCacheValue{}},
		{MapIPCache6, [16]byte{}, IPCacheValue{}},
		{MapIPCache4LPM, LPMKey4{}, IPCacheValue{}},
		{MapIPCache6LPM, LPMKey6{}, IPCacheValue{}},
		{MapPolicy, PolicyKey{}, PolicyValue{}},
		{MapPolicyRanges, PolicyRangeKey{}, PolicyValue{}},
		{MapConntrack, uint32(0), nil}, // its tables' records: below
		{MapFrags, FragKey{}, FragValue{}},
		{MapCounters, uint32(0), Counter{}},
		{MapEventsLost, uint32(0), uint64(0)},
		{MapEventsAllow, uint32(0), uint64(0)},
		{MapPrefilter4, LPMKey4{}, uint32(0)},
		{MapPrefilter6, LPMKey6{}, uint32(0)},
		{MapTailCalls, uint32(0), uint32(0)},
		{MapScratch, uint32(0), PacketState{}},
		{MapIfaceEndpoints, uint32(0), IfaceValue{}},
		{MapIfaceEndpointsBig, uint32(0), IfaceValue{}},
		{MapGeneration, uint32(0), uint32(0)},
	}
	seen := map[string]bool{MapEvents: true}
	for _, m := range maps {
		seen[m.name] = true
		ms, ok := spec.Maps[m.name]
		if !ok {
			t.Errorf("map %s not in the object", m.name)
			continue
		}
		if slices.Contains(ContentMaps, m.name) {
			if ms.Type != ebpf.ArrayOfMaps || ms.MaxEntries != ContentSlots || ms.InnerMap == nil {
				t.Errorf("%s: %v of %d, want an array of %d maps", m.name, ms.Type, ms.MaxEntries, ContentSlots)
				continue
			}
			ms = ms.InnerMap
		}
		checkType(t, m.name+" key", ms.Key, reflect.TypeOf(m.key))
		if m.value != nil {
			checkType(t, m.name+" value", ms.Value, reflect.TypeOf(m.value))
		}
	}
	if ct := spec.Maps[MapConntrack]; ct.Type != ebpf.ArrayOfMaps || ct.InnerMap == nil || ct.InnerMap.Type != ebpf.LRUHash {
		t.Errorf("conntrack: %v of %v, want an array of LRU hashes", ct.Type, ct.InnerMap)
	} else {
		checkType(t, "conntrack table key", ct.InnerMap.Key, reflect.TypeOf(CTKey{}))
		checkType(t, "conntrack table value", ct.InnerMap.Value, reflect.TypeOf(CTValue{}))
	}
	for name := range spec.Maps {
		if !seen[name] && !strings.HasPrefix(name, ".") {
			t.Errorf("map %s has no Go type in this test", name)
		}
	}
	var ev *btf.Struct
	if err := spec.Types.TypeByName("event", &ev); err != nil {
		t.Fatalf("struct event not in BTF: %v", err)
	}
	checkType(t, "event", ev, reflect.TypeOf(Event{}))
	if got := spec.Maps[MapTailCalls].MaxEntries; got != TailCallSlots {
		t.Errorf("tailcalls has %d slots, TailCallSlots = %d", got, TailCallSlots)
	}
}

func checkType(t *testing.T, what string, bt btf.Type, gt reflect.Type) {
	t.Helper()
	size, err := btf.Sizeof(bt)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if uintptr(size) != gt.Size() {
		t.Errorf("%s: C size %d, Go %s size %d", what, size, gt, gt.Size())
		return
	}
	s, ok := btf.UnderlyingType(bt).(*btf.Struct)
	if !ok {
		if gt.Kind() == reflect.Struct {
			t.Errorf("%s: C %s is not a struct, Go %s is", what, bt, gt)
		}
		return
	}
	if gt.Kind() != reflect.Struct || gt.NumField() != len(s.Members) {
		t.Errorf("%s: C struct %s has %d fields, Go %s has %d", what, s.Name, len(s.Members), gt, gt.NumField())
		return
	}
	for i, m := range s.Members {
		f := gt.Field(i)
		if norm(m.Name) != norm(f.Name) {
			t.Errorf("%s: field %d is %q in C, %q in Go", what, i, m.Name, f.Name)
		}
		if uintptr(m.Offset.Bytes()) != f.Offset {
			t.Errorf("%s.%s: C offset %d, Go offset %d", what, f.Name, m.Offset.Bytes(), f.Offset)
		}
		msize, err := btf.Sizeof(m.Type)
		if err != nil || uintptr(msize) != f.Type.Size() {
			t.Errorf("%s.%s: C size %d, Go size %d (%v)", what, f.Name, msize, f.Type.Size(), err)
		}
	}
}

func norm(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "")) }

// TestReservedRulesMatchIR checks that the C enum polc_rule has the
// compiler's reserved rule ids.
func TestReservedRulesMatchIR(t *testing.T) {
	spec, err := Spec()
	if err != nil {
		t.Fatal(err)
	}
	var e *btf.Enum
	if err := spec.Types.TypeByName("polc_rule", &e); err != nil {
		t.Fatalf("enum polc_rule not in BTF: %v", err)
	}
	got := map[string]uint64{}
	for _, v := range e.Values {
		got[v.Name] = v.Value
	}
	want := map[string]ir.RuleID{
		"POLC_RULE_NONE":               ir.RuleNone,
		"POLC_RULE_DEFAULT_ALLOW":      ir.RuleDefaultAllow,
		"POLC_RULE_DEFAULT_DENY":       ir.RuleDefaultDeny,
		"POLC_RULE_ESTABLISHED":        ir.RuleEstablished,
		"POLC_RULE_RELATED":            ir.RuleRelated,
		"POLC_RULE_MALFORMED":          ir.RuleMalformed,
		"POLC_RULE_NON_IP":             ir.RuleNonIP,
		"POLC_RULE_FRAGMENT":           ir.RuleFragment,
		"POLC_RULE_PREFILTER":          ir.RulePrefilter,
		"POLC_RULE_SPOOFED_SOURCE":     ir.RuleSpoofedSource,
		"POLC_RULE_WRONG_DEST":         ir.RuleWrongDestination,
		"POLC_RULE_ETHERTYPE":          ir.RuleEtherType,
		"POLC_RULE_UNBOUND":            ir.RuleUnbound,
		"POLC_RULE_TUNNEL":             ir.RuleTunnel,
		"POLC_RULE_AUDIT_DEFAULT_DENY": ir.RuleAuditDefaultDeny,
		"POLC_FIRST_RULE_ID":           ir.FirstRuleID,
	}
	for name, id := range want {
		v, ok := got[name]
		if !ok {
			t.Errorf("%s missing from enum polc_rule", name)
			continue
		}
		if v != uint64(id) {
			t.Errorf("%s = %d in C, %d in compiler/ir", name, v, id)
		}
	}
	if len(got) != len(want) {
		t.Errorf("enum polc_rule has %d values, want %d", len(got), len(want))
	}
	// the test's own shorthands
	for id, want := range map[uint32]ir.RuleID{
		RuleDefaultAllowID: ir.RuleDefaultAllow, RuleDefaultDenyID: ir.RuleDefaultDeny,
		RuleEstablishedID: ir.RuleEstablished, RuleRelatedID: ir.RuleRelated,
		RuleMalformedID: ir.RuleMalformed, RuleNonIPID: ir.RuleNonIP,
		RuleFragmentID: ir.RuleFragment, RulePrefilterID: ir.RulePrefilter,
		RuleSpoofedSourceID: ir.RuleSpoofedSource, RuleWrongDestinationID: ir.RuleWrongDestination,
		RuleEtherTypeID: ir.RuleEtherType, RuleUnboundID: ir.RuleUnbound, RuleTunnelID: ir.RuleTunnel,
	} {
		if id != uint32(want) {
			t.Errorf("test constant %d != ir %d", id, want)
		}
	}
}
