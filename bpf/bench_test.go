package bpf

import (
	"encoding/binary"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// BenchmarkDatapath measures ns/packet with BPF_PROG_TEST_RUN (b.N
// repeats in the kernel) for the empty-program floor, the interface
// binding's lookup alone (an empty program plus the inlined
// iface_endpoints lookup: what binding costs every packet), a packet
// delivered to an address not its endpoint's (parse, binding, one
// ipcache lookup, a drop with its event), an established flow,
// a new flow decided by an exact policy entry and a new flow decided by a
// port range (and the exact one again with ConstPolicyHints), as the
// policy grows. Each result is also reported as a ratio
// to the empty program measured in the same run, just before it (x-empty). `make bench-datapath` runs it; docs/performance.md has a table.
func BenchmarkDatapath(b *testing.B) {
	requireBPF(b)
	empty, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "Dual BSD/GPL",
	})
	if err != nil {
		b.Fatal(err)
	}
	defer empty.Close()
	est := tcp(epB.v4, epA.v4, 40000, 80, tcpACK).bytes()
	// subject D has exact rules only: with hints one policy lookup decides
	exact := tcp(epB.v4, epD.v4, 40001, 80, tcpSYN).bytes()
	ranged := tcp(epB.v4, epA.v4, 40002, 9003, tcpSYN).bytes()
	notLocal := tcp(world.v4, far.v4, 40003, 80, tcpSYN).bytes()
	// frames meet the ingress program on the interface of their
	// destination's endpoint (notLocal: some endpoint's)
	bindIngress := func(d *datapath, frame []byte) {
		d.setBinding(d.bindFor(ProgEndpointIngress, frame))
	}

	// The floor is measured next to each case (best of three short runs),
	// so that the ratio survives neighbours loading the machine.
	floorNow := func(b *testing.B) time.Duration {
		best := time.Duration(math.MaxInt64)
		for range 3 {
			_, d, err := empty.Benchmark(est, 200_000, nil)
			if err != nil {
				b.Fatal(err)
			}
			best = min(best, d)
		}
		return best
	}
	run := func(b *testing.B, prog *ebpf.Program, frame []byte, want uint32) {
		floor := floorNow(b)
		ret, per, err := prog.Benchmark(frame, b.N, b.ResetTimer)
		if err != nil {
			b.Fatal(err)
		}
		if ret != want {
			b.Fatalf("verdict %d, want %d", ret, want)
		}
		b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
		b.ReportMetric(float64(per.Nanoseconds())/float64(floor.Nanoseconds()), "x-empty")
	}
	b.Run("empty", func(b *testing.B) { run(b, empty, est, actOK) })
	bindOnly := loadDatapath(b, map[string]uint32{}, nil)
	bindOnly.setBinding(idA)
	lookup, err := bindingLookupProgram(bindOnly.coll.Maps[MapIfaceEndpoints])
	if err != nil {
		b.Fatal(err)
	}
	defer lookup.Close()
	b.Run("binding-lookup", func(b *testing.B) { run(b, lookup, est, actOK) })

	for _, n := range []int{10, 1000, 10000, 100000} {
		// established flows: the first packet creates the entry
		dEst := loadBenchDatapath(b, n, map[string]uint32{ConstGeneration: 1})
		in := dEst.coll.Programs[ProgEndpointIngress]
		bindIngress(dEst, est)
		if ret, _ := dEst.decideQuiet(in, est); ret != actOK {
			b.Fatalf("established flow denied")
		}
		// new flows: a zero TCP lifetime makes every repeat a new flow
		// that goes through policy and (re)creates its conntrack entry
		dNew := loadBenchDatapath(b, n, map[string]uint32{ConstGeneration: 1, ConstCTLifetimeTCP: 0})
		inNew := dNew.coll.Programs[ProgEndpointIngress]
		dHints := loadBenchDatapath(b, n, map[string]uint32{ConstGeneration: 1, ConstCTLifetimeTCP: 0, ConstPolicyHints: 1})
		inHints := dHints.coll.Programs[ProgEndpointIngress]
		b.Run(fmt.Sprintf("policy=%d/wrong-destination", n), func(b *testing.B) {
			bindIngress(dEst, notLocal)
			run(b, in, notLocal, actShot)
		})
		b.Run(fmt.Sprintf("policy=%d/established", n), func(b *testing.B) {
			bindIngress(dEst, est)
			run(b, in, est, actOK)
		})
		b.Run(fmt.Sprintf("policy=%d/new-exact", n), func(b *testing.B) {
			bindIngress(dNew, exact)
			run(b, inNew, exact, actOK)
		})
		b.Run(fmt.Sprintf("policy=%d/new-range", n), func(b *testing.B) {
			bindIngress(dNew, ranged)
			run(b, inNew, ranged, actOK)
		})
		b.Run(fmt.Sprintf("policy=%d/new-exact-hints", n), func(b *testing.B) {
			bindIngress(dHints, exact)
			run(b, inHints, exact, actOK)
		})
	}
}

// bindingLookupProgram is a tc program that does what every packet pays
// for its interface's binding: look skb->ifindex up in iface_endpoints (an
// array: the verifier inlines the lookup) and test the value.
func bindingLookupProgram(m *ebpf.Map) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.SchedCLS,
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 40, asm.Word), // __sk_buff.ifindex
			asm.StoreMem(asm.RFP, -4, asm.R2, asm.Word),
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.LoadMem(asm.R0, asm.R0, 0, asm.Word),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("ok"),
			asm.Return(),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
			asm.Return(),
		},
		License: "Dual BSD/GPL",
	})
}

func (d *datapath) decideQuiet(p *ebpf.Program, frame []byte) (uint32, error) {
	ret, err := p.Run(&ebpf.RunOptions{Data: frame})
	return ret, err
}

// A subject with exact rules only.
const idD = 259

var epD = addrs{"10.0.0.4", "fd00::4"}

// loadBenchDatapath loads a datapath whose policy has n entries in the
// hash and n in the range trie (plus the test world's), and n hosts.
func loadBenchDatapath(b *testing.B, n int, consts map[string]uint32) *datapath {
	d := loadDatapathSized(b, consts, nil, uint32(n)+4096)
	setupWorld(d)
	d.portRange(idA, idB, 6, 0, 9000, 9015, VerdictAllow, 30)
	d.host(epD.v4, idD, IPCacheLocal|IPCacheIngressIsolated)
	d.policy(PolicyKey{Subject: idD, Remote: idB, Port: 80, Proto: 6}, VerdictAllow, 31)
	keys := make([]PolicyKey, n)
	vals := make([]PolicyValue, n)
	rkeys := make([]PolicyRangeKey, n)
	hosts := make([][4]byte, n)
	hvals := make([]IPCacheValue, n)
	for i := range n {
		subj := uint32(1000 + i/50)
		keys[i] = PolicyKey{Subject: subj, Remote: uint32(2000 + i%50), Port: uint16(i), Proto: 6}
		vals[i] = PolicyValue{Verdict: VerdictAllow, Rule: uint32(100 + i%100)}
		rk := PolicyRangeKey{Prefixlen: PolicyRangeKeyFixedBits + 12, Proto: 6}
		binary.BigEndian.PutUint32(rk.Subject[:], subj)
		binary.BigEndian.PutUint32(rk.Remote[:], uint32(2000+i%50))
		binary.BigEndian.PutUint16(rk.Port[:], uint16(i%4096)<<4)
		rkeys[i] = rk
		binary.BigEndian.PutUint32(hosts[i][:], 0x0a800000+uint32(i))
		hvals[i] = IPCacheValue{Identity: subj, Flags: IPCacheLocal | IPCacheIngressIsolated}
	}
	for _, fill := range []struct {
		m    string
		k, v any
	}{{MapPolicy, keys, vals}, {MapPolicyRanges, rkeys, vals}, {MapIPCache4, hosts, hvals}} {
		if _, err := d.coll.Maps[fill.m].BatchUpdate(fill.k, fill.v, nil); err != nil {
			b.Fatalf("fill %s: %v", fill.m, err)
		}
	}
	return d
}
