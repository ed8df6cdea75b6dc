package bpf

import (
	"testing"

	"github.com/cilium/ebpf/asm"
)

// TestOneClockRead: a packet reads the clock once, in its entry program
// (pkt_state.now carries it through the tail calls): each read is a
// helper call. Counted in the object's instructions, per program.
func TestOneClockRead(t *testing.T) {
	spec, err := Spec()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{ProgEndpointEgress: 1, ProgEndpointIngress: 1, ProgPolicy4: 0, ProgPolicy6: 0, ProgEpilogue: 0}
	for name, n := range want {
		p, ok := spec.Programs[name]
		if !ok {
			t.Fatalf("no program %s", name)
		}
		got := 0
		for _, ins := range p.Instructions {
			if !ins.IsBuiltinCall() {
				continue
			}
			switch asm.BuiltinFunc(ins.Constant) {
			case asm.FnKtimeGetCoarseNs, asm.FnKtimeGetNs, asm.FnJiffies64, asm.FnKtimeGetBootNs:
				got++
			}
		}
		if got != n {
			t.Errorf("%s reads the clock %d times, want %d", name, got, n)
		}
	}
}
