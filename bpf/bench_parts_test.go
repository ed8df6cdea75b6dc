package bpf

import (
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// BenchmarkDatapathParts is the per-component breakdown of
// BenchmarkDatapath: tc programs that do one of the datapath's
// operations once, on its real maps (10 policy entries, a full conntrack
// table), each reported as ns/packet, as a ratio to the empty program
// (x-empty) and as what it adds to it (added-ns). A path's cost is
// roughly the sum of the operations it performs (docs/performance.md
// counts them).
func BenchmarkDatapathParts(b *testing.B) {
	requireBPF(b)
	m := newBenchMeter(b)
	d := loadBenchDatapath(b, 10, shippingConsts(nil), nil)
	d.setBinding(idD)
	frame := tcp(epB.v4, epD.v4, 1, 80, tcpSYN).bytes()
	// fill D's table with fresh flows, as the fresh case does
	if ret, _, err := freshWrapper(b, d.coll.Programs[ProgEndpointIngress]).Benchmark(frame, 2*int(d.inner.MaxEntries), nil); err != nil || ret != actOK {
		b.Fatalf("fill conntrack: %d, %v", ret, err)
	}
	ipc := d.coll.Maps[MapIPCache4].FD()
	pol := d.coll.Maps[MapPolicy].FD()
	ct := d.coll.Maps[MapConntrack].FD()
	ring := d.coll.Maps[MapEvents].FD()
	key4 := addr4(epB.v4)

	parts := []struct {
		name string
		code asm.Instructions
	}{
		{"coarse-clock", asm.Instructions{asm.FnKtimeGetCoarseNs.Call()}},
		{"ktime", asm.Instructions{asm.FnKtimeGetNs.Call()}},
		{"jiffies64", asm.Instructions{asm.FnJiffies64.Call()}},
		// a hit: the subject's or a host remote's lookup
		{"ipcache4-hit", append(stackKey(4, uint64(key4[0])|uint64(key4[1])<<8|uint64(key4[2])<<16|uint64(key4[3])<<24),
			lookup(ipc, 4, asm.FnMapLookupElem)...)},
		// a miss: a policy probe of a class the subject has no entry in
		{"policy-miss", append(stackKey(12, 0), lookup(pol, 12, asm.FnMapLookupElem)...)},
		// the endpoint's table (inlined array-of-maps lookup), a probe
		// that misses: the conntrack lookup of a new flow
		{"conntrack-miss", ctOp(ct, idD, false)},
		// an insert of a new key into the full table (evicts)
		{"conntrack-insert-fresh", ctOp(ct, idD, true)},
		{"ringbuf-submit", ringbufOp(ring, 0)},
		{"ringbuf-submit-nowakeup", ringbufOp(ring, 1)}, // BPF_RB_NO_WAKEUP
		{"tail-call-empty", tailCallOp(b, m.empty)},
		// the interface binding: iface_endpoints by skb->ifindex (an
		// array: the verifier inlines the lookup) and its test
		{"iface-binding", asm.Instructions{
			asm.LoadMem(asm.R2, asm.R6, 40, asm.Word), // __sk_buff.ifindex
			asm.StoreMem(asm.RFP, -4, asm.R2, asm.Word),
			asm.LoadMapPtr(asm.R1, d.coll.Maps[MapIfaceEndpoints].FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "unbound"),
			asm.LoadMem(asm.R0, asm.R0, 0, asm.Word),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("unbound"),
		}},
	}
	for _, p := range parts {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Type:         ebpf.SchedCLS,
			Instructions: append(append(asm.Instructions{asm.Mov.Reg(asm.R6, asm.R1)}, p.code...), asm.Mov.Imm(asm.R0, 0), asm.Return()),
			License:      "Dual BSD/GPL",
		})
		if err != nil {
			b.Fatalf("%s: %v", p.name, err)
		}
		b.Run(p.name, func(b *testing.B) {
			if len(p.name) > 7 && p.name[:7] == "ringbuf" {
				defer d.readEvents(b)()
			}
			floor := best(b, m.empty, frame)
			_, per, err := prog.Benchmark(frame, b.N, b.ResetTimer)
			if err != nil {
				b.Fatal(err)
			}
			m.report(b, per, floor)
			b.ReportMetric(float64((per - floor).Nanoseconds()), "added-ns")
		})
		prog.Close()
	}
}

// stackKey writes a key of size bytes (a multiple of 4) at fp-size: the
// first 8 bytes are first (little endian), the rest zero.
func stackKey(size int16, first uint64) asm.Instructions {
	var code asm.Instructions
	for off := int16(0); off < size; off += 4 {
		v := int64(0)
		if off < 8 {
			v = int64(uint32(first >> (8 * off)))
		}
		code = append(code, asm.StoreImm(asm.RFP, off-size, v, asm.Word))
	}
	return code
}

// lookup calls fn (a lookup) on map fd with the key at fp-size.
func lookup(fd int, size int32, fn asm.BuiltinFunc) asm.Instructions {
	return asm.Instructions{
		asm.LoadMapPtr(asm.R1, fd),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -size),
		fn.Call(),
	}
}

// ctOp looks endpoint ep's table up in the conntrack map and probes it
// with a key that is in no table, or (insert) writes a new one: the key's
// first word counts up in the frame's source address, which stays in the
// frame between repeats.
func ctOp(ct int, ep uint32, insert bool) asm.Instructions {
	// key at fp-48 .. fp-9, endpoint at fp-4, value at fp-88 .. fp-49
	var code asm.Instructions
	for off := int16(-48); off < -8; off += 4 {
		code = append(code, asm.StoreImm(asm.RFP, off, 0, asm.Word))
	}
	code = append(code, asm.StoreImm(asm.RFP, -4, int64(ep), asm.Word), asm.StoreImm(asm.RFP, -48, -1, asm.Word))
	if insert {
		for off := int16(-88); off < -48; off += 4 {
			code = append(code, asm.StoreImm(asm.RFP, off, 0, asm.Word))
		}
		code = append(code,
			asm.LoadMem(asm.R2, asm.R6, 76, asm.Word), // data
			asm.LoadMem(asm.R3, asm.R6, 80, asm.Word), // data_end
			asm.Mov.Reg(asm.R4, asm.R2),
			asm.Add.Imm(asm.R4, 34),
			asm.JGT.Reg(asm.R4, asm.R3, "outer"),
			asm.LoadMem(asm.R5, asm.R2, 26, asm.Word),
			asm.Add.Imm(asm.R5, 1),
			asm.StoreMem(asm.R2, 26, asm.R5, asm.Word),
			asm.StoreMem(asm.RFP, -48, asm.R5, asm.Word),
		)
	}
	code = append(code,
		asm.LoadMapPtr(asm.R1, ct).WithSymbol("outer"),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "done"),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -48),
	)
	if insert {
		code = append(code,
			asm.Mov.Reg(asm.R3, asm.RFP),
			asm.Add.Imm(asm.R3, -88),
			asm.Mov.Imm(asm.R4, 0), // BPF_ANY
			asm.FnMapUpdateElem.Call(),
		)
	} else {
		code = append(code, asm.FnMapLookupElem.Call())
	}
	return append(code, asm.Mov.Imm(asm.R0, 0).WithSymbol("done"))
}

// ringbufOp reserves an event-sized record in the ring and submits it
// with flags.
func ringbufOp(ring int, flags int32) asm.Instructions {
	return asm.Instructions{
		asm.LoadMapPtr(asm.R1, ring),
		asm.Mov.Imm(asm.R2, int32(binary.Size(Event{}))),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnRingbufReserve.Call(),
		asm.JEq.Imm(asm.R0, 0, "full"),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.Mov.Imm(asm.R2, flags),
		asm.FnRingbufSubmit.Call(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("full"),
	}
}

// tailCallOp tail-calls target (which returns the verdict).
func tailCallOp(b *testing.B, target *ebpf.Program) asm.Instructions {
	slots := tailCallSlot(b, target)
	return asm.Instructions{
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, slots.FD()),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnTailCall.Call(),
	}
}
