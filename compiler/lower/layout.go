package lower

import (
	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/bundle"
)

// features is what a policy uses, which decides the layout and constants.
type features struct {
	ipv4, ipv6 bool // some endpoint has an address of the family
	prefixes4  bool // ipcache4_lpm has entries
	prefixes6  bool
	ranges     bool // policy_ranges has entries
	prefilter  bool
	tunnels    bool // drop tunnel protocols at endpoints (ir.Program.DropTunnels)
}

// layout chooses the programs, the tail-call slots and the constants
// (constants the compiler does not decide — generation, lifetimes, events —
// are the runtime's). A
// policy program for a family is only laid out when some endpoint has an
// address of that family: packets of a family with no endpoint have no
// subject, and the entry drops them at the address check (cfg_has_ipv4/6
// = 0) before any tail call. Slots are numbered densely in the order policy4, policy6,
// epilogue; a constant for a program that is not laid out points at the
// first empty slot.
func layout(f features) ([]bundle.Program, bundle.TailCalls, []bundle.Constant) {
	progs := []bundle.Program{
		{Name: bpf.ProgEndpointEgress, Hooks: []string{bundle.HookEndpointEgress}},
		{Name: bpf.ProgEndpointIngress, Hooks: []string{bundle.HookEndpointIngress}},
	}
	tc := bundle.TailCalls{Map: bpf.MapTailCalls, Size: bpf.TailCallSlots}
	slot := func(name string, used bool) uint32 {
		if !used {
			return ^uint32(0) // fixed below
		}
		s := uint32(len(tc.Slots))
		tc.Slots = append(tc.Slots, bundle.Slot{Index: s, Program: name})
		progs = append(progs, bundle.Program{Name: name})
		return s
	}
	s4 := slot(bpf.ProgPolicy4, f.ipv4)
	s6 := slot(bpf.ProgPolicy6, f.ipv6)
	se := slot(bpf.ProgEpilogue, true)
	empty := uint32(len(tc.Slots))
	fix := func(s uint32) uint32 {
		if s == ^uint32(0) {
			return empty
		}
		return s
	}
	if f.prefilter {
		progs = append(progs, bundle.Program{Name: bpf.ProgPrefilter, Hooks: []string{bundle.HookUplinkXDP}})
	}
	b := func(v bool) uint64 {
		if v {
			return 1
		}
		return 0
	}
	consts := []bundle.Constant{
		{Name: bpf.ConstHasIPv4, Size: 4, Value: b(f.ipv4)},
		{Name: bpf.ConstHasIPv6, Size: 4, Value: b(f.ipv6)},
		{Name: bpf.ConstHasPrefixes4, Size: 4, Value: b(f.prefixes4)},
		{Name: bpf.ConstHasPrefixes6, Size: 4, Value: b(f.prefixes6)},
		{Name: bpf.ConstHasRanges, Size: 4, Value: b(f.ranges)},
		// Every subject's ipcache flags carry its probe hints (ipcache.go).
		{Name: bpf.ConstPolicyHints, Size: 4, Value: 1},
		{Name: bpf.ConstSlotEpilogue, Size: 4, Value: uint64(fix(se))},
		{Name: bpf.ConstSlotPolicy4, Size: 4, Value: uint64(fix(s4))},
		{Name: bpf.ConstSlotPolicy6, Size: 4, Value: uint64(fix(s6))},
	}
	if f.tunnels {
		consts = append(consts, bundle.Constant{Name: bpf.ConstDropTunnels, Size: 4, Value: 1})
	}
	return progs, tc, consts
}
