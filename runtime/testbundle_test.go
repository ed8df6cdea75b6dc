package runtime

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/runtime/netnstest"
)

// The test datapath: a stand-in for bpf/ built with the asm package, so
// that loading, pinning, attaching and apply are tested without clang.
//
//	tc_entry   (both tc hooks) drops a packet on an interface that
//	           iface_endpoints binds to no endpoint and passes one on an
//	           interface bound to bpf.EndpointPass, like the real
//	           datapath; else tail-calls slot 0 of "tailcalls"; an empty
//	           slot drops, so a prog array left unfilled shows as loss.
//	tc_policy  (slot 0) counts the packet in the shared "frags" map,
//	           drops unless genmark[0] equals the mark compiled into the
//	           program — a packet that met a program of one bundle and
//	           maps of another would be dropped — and returns verdict[0].
//	xdp_prefilter passes everything.
const (
	tcActOK   = 0
	tcActShot = 2
)

// testEndpoint is the one endpoint of a test bundle; tests bind every
// interface they attach to it.
const testEndpoint = "ep"

// testBundle returns a bundle whose tc verdict is verdict (tcActOK or
// tcActShot) and whose programs and genmark carry mark.
func testBundle(mark, verdict uint32) *bundle.Bundle {
	rec := func(k, v uint32) []byte {
		b := binary.LittleEndian.AppendUint32(nil, k)
		return binary.LittleEndian.AppendUint32(b, v)
	}
	arr := func(name string, data []byte) bundle.Map {
		return bundle.Map{MapSpec: bundle.MapSpec{Name: name, Type: "array", KeySize: 4, ValueSize: 4, MaxEntries: 1}, Data: data}
	}
	b := &bundle.Bundle{
		Manifest: bundle.Manifest{
			Compiler: "runtime-test",
			Sources:  []bundle.Source{{Path: "asm", SHA256: fmt.Sprintf("%08x%08x", mark, verdict)}},
			Programs: []bundle.Program{
				{Name: "tc_entry", Hooks: []string{bundle.HookEndpointEgress, bundle.HookEndpointIngress}},
				{Name: "tc_policy"},
				{Name: "xdp_prefilter", Hooks: []string{bundle.HookUplinkXDP}},
			},
			TailCalls: bundle.TailCalls{Map: "tailcalls", Size: 4, Slots: []bundle.Slot{{Index: 0, Program: "tc_policy"}}},
		},
		Object:    []byte(fmt.Sprintf("asm:%d", mark)),
		Maps:      []bundle.Map{arr("genmark", rec(0, mark)), arr("verdict", rec(0, verdict))},
		Endpoints: []bundle.Endpoint{{Index: 1, Name: testEndpoint, Addrs: []string{}}},
	}
	b.Manifest.Maps = []bundle.MapSpec{b.Maps[0].MapSpec, b.Maps[1].MapSpec}
	return b
}

// testSpec is the ParseObject of the test datapath: the mark is the
// genmark record, as a compiler would bake it into the program.
func testSpec(b *bundle.Bundle) (*ebpf.CollectionSpec, error) {
	_, v := b.Map("genmark").Record(0)
	mark := int32(binary.LittleEndian.Uint32(v))
	lookup := func(m string) asm.Instructions {
		return asm.Instructions{
			asm.LoadMapPtr(asm.R1, 0).WithReference(m),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
		}
	}
	policy := asm.Instructions{asm.StoreImm(asm.RFP, -4, 0, asm.Word)}
	policy = append(policy, lookup("frags")...)
	policy = append(policy,
		asm.JEq.Imm(asm.R0, 0, "marks"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
	)
	policy = append(policy, lookup("genmark")...)
	policy[len(policy)-4] = policy[len(policy)-4].WithSymbol("marks")
	policy = append(policy,
		asm.JEq.Imm(asm.R0, 0, "drop"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Word),
		asm.JNE.Imm(asm.R1, mark, "drop"),
	)
	policy = append(policy, lookup("verdict")...)
	policy = append(policy,
		asm.JEq.Imm(asm.R0, 0, "drop"),
		asm.LoadMem(asm.R0, asm.R0, 0, asm.Word),
		asm.Return(),
		asm.Mov.Imm(asm.R0, tcActShot).WithSymbol("drop"),
		asm.Return(),
	)
	array := func(v uint32) *ebpf.MapSpec {
		return &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: v, MaxEntries: 1}
	}
	spec := &ebpf.CollectionSpec{
		Maps: map[string]*ebpf.MapSpec{
			"frags": array(8),
			// per-endpoint conntrack tables, as in the real datapath (unused)
			bpf.MapConntrack: {Type: ebpf.ArrayOfMaps, KeySize: 4, ValueSize: 4, MaxEntries: 2,
				InnerMap: ConntrackTableSpec(ConntrackMinEntries)},
			"genmark":                array(4),
			"verdict":                array(4),
			"tailcalls":              {Type: ebpf.ProgramArray, KeySize: 4, ValueSize: 4, MaxEntries: 4},
			bpf.MapIfaceEndpoints:    {Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: bpf.IfaceArraySize},
			bpf.MapIfaceEndpointsBig: {Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 64},
		},
		Programs: map[string]*ebpf.ProgramSpec{
			"tc_entry": {Type: ebpf.SchedCLS, License: "GPL", Instructions: asm.Instructions{
				asm.Mov.Reg(asm.R6, asm.R1),
				asm.LoadMem(asm.R2, asm.R1, 40, asm.Word), // __sk_buff.ifindex
				asm.StoreMem(asm.RFP, -4, asm.R2, asm.Word),
				asm.LoadMapPtr(asm.R1, 0).WithReference(bpf.MapIfaceEndpoints),
				asm.Mov.Reg(asm.R2, asm.RFP),
				asm.Add.Imm(asm.R2, -4),
				asm.FnMapLookupElem.Call(),
				asm.JEq.Imm(asm.R0, 0, "unbound"),
				asm.LoadMem(asm.R0, asm.R0, 0, asm.Word),
				asm.JEq.Imm(asm.R0, 0, "unbound"),
				asm.JEq.Imm32(asm.R0, -1, "pass"), // bpf.EndpointPass
				asm.Mov.Reg(asm.R1, asm.R6),
				asm.LoadMapPtr(asm.R2, 0).WithReference("tailcalls"),
				asm.Mov.Imm(asm.R3, 0),
				asm.FnTailCall.Call(),
				asm.Mov.Imm(asm.R0, tcActShot).WithSymbol("unbound"),
				asm.Return(),
				asm.Mov.Imm(asm.R0, tcActOK).WithSymbol("pass"),
				asm.Return(),
			}},
			"tc_policy": {Type: ebpf.SchedCLS, License: "GPL", Instructions: policy},
			"xdp_prefilter": {Type: ebpf.XDP, License: "GPL", Instructions: asm.Instructions{
				asm.Mov.Imm(asm.R0, 2), // XDP_PASS
				asm.Return(),
			}},
		},
	}
	for n, m := range spec.Maps {
		m.Name = n
	}
	for n, p := range spec.Programs {
		p.Name = n
	}
	return spec, nil
}

// testHost returns a Host pinning under a directory of its own (removed at
// the end of the test) with the test datapath.
func testHost(t testing.TB) *Host {
	t.Helper()
	netnstest.RequireRoot(t)
	root := filepath.Join(BPFFSMount, fmt.Sprintf("polc-test-%d-%06x", os.Getpid(), rand.IntN(1<<24)))
	h := &Host{
		Root:        root,
		LockPath:    filepath.Join(t.TempDir(), "polc.lock"),
		ParseObject: testSpec,
		Notices:     testWriter{t},
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(root); err != nil {
			t.Errorf("remove %s: %v", root, err)
		}
	})
	return h
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
	return len(p), nil
}
