package lower

import (
	"bytes"
	"testing"

	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

func bundleBytes(t *testing.T, b *bundle.Bundle) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := bundle.WriteTar(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The same program gives the same bytes, build after build (maps are
// iterated in random order inside the lowering: this catches any leak of
// that order into the output).
func TestBuildDeterministic(t *testing.T) {
	for _, prog := range []func() *ir.Program{quickstart, func() *ir.Program { return generateProgram(200, 100, 3) }} {
		first := bundleBytes(t, mustBuild(t, prog()))
		for range 5 {
			if again := bundleBytes(t, mustBuild(t, prog())); !bytes.Equal(first, again) {
				t.Fatal("two builds of the same program differ")
			}
		}
	}
}

func TestLayout(t *testing.T) {
	b := mustBuild(t, quickstart())
	slots := map[string]uint32{}
	for _, s := range b.Manifest.TailCalls.Slots {
		slots[s.Program] = s.Index
	}
	if len(slots) != 3 || slots["tc_policy4"] != 0 || slots["tc_policy6"] != 1 || slots["tc_epilogue"] != 2 {
		t.Errorf("quickstart slots %v", slots)
	}

	// No IPv6 endpoint: no IPv6 program, slots packed, cfg_slot_policy6
	// points at an empty slot; no prefixes, no ranges, no prefilter.
	v4 := program([]*ir.Endpoint{ep("a", "app=a", "10.0.0.1")}, []policySpec{{name: "p", subject: sel("app=a"), rules: []ruleSpec{
		in(dsl.Allow, peers(peerSel("app=a")), tcp(80, 80)),
	}}})
	b = mustBuild(t, v4)
	want := map[string]uint64{
		"cfg_has_ipv4": 1, "cfg_has_ipv6": 0, "cfg_has_prefixes4": 0, "cfg_has_prefixes6": 0, "cfg_has_ranges": 0,
		"cfg_slot_policy4": 0, "cfg_slot_epilogue": 1, "cfg_slot_policy6": 2,
	}
	for name, v := range want {
		if got, ok := b.Constant(name); !ok || got != v {
			t.Errorf("%s = %d (set %v), want %d", name, got, ok, v)
		}
	}
	for _, p := range b.Manifest.Programs {
		if p.Name == "tc_policy6" || p.Name == "xdp_prefilter" {
			t.Errorf("program %s laid out for an IPv4-only policy without prefilter", p.Name)
		}
	}
	if len(b.Manifest.TailCalls.Slots) != 2 {
		t.Errorf("slots %+v", b.Manifest.TailCalls.Slots)
	}
}

func TestBuildRejectsSharedAddress(t *testing.T) {
	prog := program([]*ir.Endpoint{ep("a", "", "10.0.0.1"), ep("b", "", "10.0.0.1")}, nil)
	if _, err := Build(prog, nil, Options{}); err == nil {
		t.Error("two endpoints with one address: no error")
	}
}

func TestRulesFile(t *testing.T) {
	b := mustBuild(t, quickstart())
	if len(b.Rules) != int(ir.LastReservedRule)+6 {
		t.Fatalf("%d rules", len(b.Rules))
	}
	if r := b.Rules[1]; r.ID != 2 || r.Name != "default-deny" {
		t.Errorf("rules[1] = %+v", r)
	}
	if r := b.Rules[ir.LastReservedRule]; r.ID != 16 || r.File != "test.pol" || r.Line != 16 || r.Policy != "api-in" || r.Text == "" {
		t.Errorf("first rule = %+v", r)
	}
}

// policyRecords emits both policy maps already sorted, so that NewMap
// need not sort millions of records.
func TestPolicyRecordsSorted(t *testing.T) {
	prog := generateProgram(2000, 300, 5)
	space, err := splitAddressSpace(prog)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := groupSubjects(prog, space)
	if err != nil {
		t.Fatal(err)
	}
	pl := &policyLowering{prog: prog, space: space, selectors: map[string][]uint32{}}
	for _, g := range groups {
		if err := pl.lowerGroup(g); err != nil {
			t.Fatal(err)
		}
	}
	pol, ranges, err := policyRecords(space, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{bundle.MapPolicy: pol, bundle.MapPolicyRanges: ranges} {
		m, err := bundle.NewMap(name, bytes.Clone(data))
		if err != nil {
			t.Fatal(err)
		}
		if len(data) == 0 || !bytes.Equal(m.Data, data) {
			t.Errorf("%s: %d bytes not emitted in key order", name, len(data))
		}
	}
}
