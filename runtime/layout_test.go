package runtime

import (
	"errors"
	"slices"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/bundle"
)

// TestSharedLayoutSeesMeaning: the fingerprint follows the BTF of the
// shared maps' entries, so renaming or moving a field changes it even when
// every size stays the same (as when conntrack keys became
// endpoint-first), and nothing else in the object matters.
func TestSharedLayoutSeesMeaning(t *testing.T) {
	spec, err := bpf.Spec()
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle.Bundle{}
	base, err := sharedLayout(b, spec)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := sharedLayout(b, spec.Copy()); again != base {
		t.Fatalf("fingerprint not stable: %s, then %s", base, again)
	}
	// a map that is not shared does not count
	other := spec.Copy()
	other.Maps[bpf.MapPolicy].MaxEntries++
	if got, _ := sharedLayout(b, other); got != base {
		t.Errorf("a policy map change moved the fingerprint")
	}
	// nor does the size of the array of conntrack tables
	other = spec.Copy()
	other.Maps[bpf.MapConntrack].MaxEntries++
	if got, _ := sharedLayout(b, other); got != base {
		t.Errorf("a conntrack array size change moved the fingerprint")
	}
	// a conntrack table's key field renamed, same size and offset
	renamed := spec.Copy()
	key := btf.Copy(renamed.Maps[bpf.MapConntrack].InnerMap.Key)
	st, ok := btf.UnderlyingType(key).(*btf.Struct)
	if !ok {
		t.Fatalf("conntrack key is %T", key)
	}
	st.Members = slices.Clone(st.Members)
	st.Members[0].Name = "saddr"
	renamed.Maps[bpf.MapConntrack].InnerMap.Key = key
	if got, _ := sharedLayout(b, renamed); got == base {
		t.Errorf("renaming %s.laddr did not change the fingerprint", st.Name)
	}
}

// TestApplyRefusesOtherLayout: a bundle loaded by a polc that recorded no
// layout (or another one) is not applied over, and nothing changes.
func TestApplyRefusesOtherLayout(t *testing.T) {
	h := testHost(t)
	const name = "layout"
	mustLoad(t, h, name, 1, tcActOK)
	t.Cleanup(func() { _, _ = h.Unload(name) })
	p := h.pins(name)
	st, err := readState(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.SharedLayout == "" {
		t.Fatal("load recorded no shared layout")
	}
	st.SharedLayout = "" // as written by a polc before layouts
	if err := writeState(p, st); err != nil {
		t.Fatal(err)
	}
	before := pinTree(t, h, name)
	_, err = h.Apply(name, testBundle(2, tcActOK))
	if !errors.Is(err, ErrSharedLayout) {
		t.Fatalf("apply over another layout: %v, want ErrSharedLayout", err)
	}
	if got := pinTree(t, h, name); !slices.Equal(got, before) {
		t.Errorf("refused apply changed pins:\n%v\nwant\n%v", got, before)
	}
	if st, err := readState(p); err != nil || st.Generation != 1 {
		t.Errorf("state after refused apply: %+v, %v", st, err)
	}
}
