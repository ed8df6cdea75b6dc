package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/ringbuf"
)

// BenchmarkDatapath measures ns/packet with BPF_PROG_TEST_RUN (b.N
// repeats in the kernel), each case also as a ratio to an empty SchedCLS
// program measured in the same run just before it (x-empty). The
// datapath is loaded as bundles ship it (shippingConsts: probe hints on,
// no allow events, the default lifetimes and map sizes: a conntrack table
// of 8 192 flows per endpoint, a 1 MiB event ring), with 10 and 1 000 000
// entries in policy, policy_ranges and ipcache4. Cases, IPv4 TCP from a
// local endpoint to an ingress-isolated one:
//
//   - established: a packet of a tracked flow.
//   - fresh: a new flow every packet (a wrapper program bumps the source
//     port, 65 536 tuples against a table of 8 192), against a conntrack
//     table kept full beforehand, so every packet misses and its insert
//     evicts. The wrapper's own cost (measured around an empty program)
//     is taken off.
//   - recreated: one tuple whose entry has just expired (TCP lifetime 0):
//     policy, then the entry written again over the expired one.
//   - drop-reader: a new flow policy denies, with a goroutine reading the
//     event ring as `polc monitor` does (events/pkt says how many it saw).
//   - denied: a new flow policy denies (default-deny), no reader.
//   - tiers=1000/fresh: fresh, with 1 000 admin policies on D
//     (addAdminTier), the flow passed by the admin tier and allowed by
//     the untiered rule; tiers=1000/admin-deny: a new flow an admin rule
//     denies (no reader).
//
// BenchmarkDatapathParts has the per-component breakdown. `make
// bench-datapath` runs both; docs/performance.md has the tables.
func BenchmarkDatapath(b *testing.B) {
	requireBPF(b)
	m := newBenchMeter(b)
	est := tcp(epB.v4, epD.v4, 40000, 80, tcpACK).bytes()
	fresh := tcp(epB.v4, epD.v4, 1, 80, tcpSYN).bytes()
	recreated := tcp(epB.v4, epD.v4, 40001, 80, tcpSYN).bytes()
	denied := tcp(epB.v4, epD.v4, 40002, 81, tcpSYN).bytes()

	b.Run("empty", func(b *testing.B) { m.run(b, m.empty, est, actOK) })
	for _, n := range []int{10, 1_000_000} {
		d := loadBenchDatapath(b, n, shippingConsts(nil), nil)
		// the same maps, behind programs whose TCP flows expire at once
		dRe := loadBenchDatapath(b, n, shippingConsts(map[string]uint32{ConstCTLifetimeTCP: 0}), d.coll.Maps)
		in := d.coll.Programs[ProgEndpointIngress]
		d.setBinding(idD)
		dRe.setBinding(idD)
		if ret, _ := d.decideQuiet(in, est); ret != actOK {
			b.Fatalf("established flow denied")
		}
		b.Run(fmt.Sprintf("policy=%d/established", n), func(b *testing.B) {
			m.run(b, in, est, actOK)
		})
		b.Run(fmt.Sprintf("policy=%d/fresh", n), func(b *testing.B) {
			m.runFresh(b, d, in, fresh)
		})
		b.Run(fmt.Sprintf("policy=%d/recreated", n), func(b *testing.B) {
			m.run(b, dRe.coll.Programs[ProgEndpointIngress], recreated, actOK)
		})
		b.Run(fmt.Sprintf("policy=%d/drop-reader", n), func(b *testing.B) {
			stop := d.readEvents(b)
			m.run(b, in, denied, actShot)
			stop()
		})
		b.Run(fmt.Sprintf("policy=%d/denied", n), func(b *testing.B) {
			m.run(b, in, denied, actShot)
		})
		// the same world with 1 000 admin policies on D
		dT := loadBenchDatapath(b, n, shippingConsts(nil), nil)
		addAdminTier(b, dT, 1000)
		dT.setBinding(idD)
		b.Run(fmt.Sprintf("policy=%d/tiers=1000/fresh", n), func(b *testing.B) {
			m.runFresh(b, dT, dT.coll.Programs[ProgEndpointIngress], fresh)
		})
		b.Run(fmt.Sprintf("policy=%d/tiers=1000/admin-deny", n), func(b *testing.B) {
			m.run(b, dT.coll.Programs[ProgEndpointIngress], tcp(epB.v4, epD.v4, 40003, 20500, tcpSYN).bytes(), actShot)
		})
	}
}

// addAdminTier adds to d's policy what the compiler makes of n admin
// policies selecting D (compiler/lower TestTiersThousandAdminPolicies
// checks it), policy i of priority i with three ingress rules: deny from a
// CIDR identity of its own on tcp/(1000+i), pass from B on tcp/80, deny
// from B on tcp/(20000+i). Priorities are resolved at compile time: B's
// tcp/80 class keeps its untiered allow (rule 31) in the main slot and
// gains the lowest-rank pass in the admin slot, so a fresh flow from B to
// D:80 takes the longest decision (admin pass, then the namespace level)
// with the same lookups as without tiers; every other rule is an entry
// the packet never looks up. D's flags (no probe hints) stay as they are.
func addAdminTier(b *testing.B, d *datapath, n int) {
	const firstRule = 1000
	var keys []PolicyKey
	var vals []PolicyValue
	admin := func(k PolicyKey, v PolicyValue, verdict uint8, rule, rank uint32) {
		v.AdminVerdict, v.AdminRule, v.AdminOrder = verdict, rule, rank
		keys, vals = append(keys, k), append(vals, v)
	}
	for i := range n {
		rule, rank := uint32(firstRule+3*i), uint32(3*i+1)
		admin(PolicyKey{Subject: idD, Remote: uint32(3000 + i), Port: uint16(1000 + i), Proto: 6}, PolicyValue{}, VerdictDeny, rule, rank)
		admin(PolicyKey{Subject: idD, Remote: idB, Port: uint16(20000 + i), Proto: 6}, PolicyValue{}, VerdictDeny, rule+2, rank+2)
	}
	admin(PolicyKey{Subject: idD, Remote: idB, Port: 80, Proto: 6},
		PolicyValue{Verdict: VerdictAllow, Rule: 31, Order: OrderUntiered(VerdictAllow, 31)}, VerdictPass, firstRule+1, 2)
	if _, err := d.coll.Maps[MapPolicy].BatchUpdate(keys, vals, nil); err != nil {
		b.Fatalf("fill the admin tier: %v", err)
	}
}

// shippingConsts are the constants a bundle of the benchmark's world
// gets from the compiler (compiler/lower layout.go) and the runtime
// (generation), plus extra.
func shippingConsts(extra map[string]uint32) map[string]uint32 {
	c := map[string]uint32{
		ConstGeneration:   1,
		ConstHasIPv4:      1,
		ConstHasIPv6:      1,
		ConstHasPrefixes4: 1,
		ConstHasPrefixes6: 1,
		ConstHasRanges:    1,
		ConstPolicyHints:  1,
		ConstEventsAllow:  0,
	}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// benchMeter measures cases against the empty program.
type benchMeter struct {
	empty *ebpf.Program
}

func newBenchMeter(b *testing.B) *benchMeter {
	empty, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "Dual BSD/GPL",
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { empty.Close() })
	return &benchMeter{empty: empty}
}

// best is the shortest of three short runs of prog: the floor is
// measured next to each case so that the ratio survives neighbours
// loading the machine.
func best(b *testing.B, prog *ebpf.Program, frame []byte) time.Duration {
	d := time.Duration(math.MaxInt64)
	for range 3 {
		_, t, err := prog.Benchmark(frame, 200_000, nil)
		if err != nil {
			b.Fatal(err)
		}
		d = min(d, t)
	}
	return d
}

func (m *benchMeter) report(b *testing.B, per, floor time.Duration) {
	b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
	b.ReportMetric(float64(per.Nanoseconds())/float64(floor.Nanoseconds()), "x-empty")
}

func (m *benchMeter) run(b *testing.B, prog *ebpf.Program, frame []byte, want uint32) {
	floor := best(b, m.empty, frame)
	ret, per, err := prog.Benchmark(frame, b.N, b.ResetTimer)
	if err != nil {
		b.Fatal(err)
	}
	if ret != want {
		b.Fatalf("verdict %d, want %d", ret, want)
	}
	m.report(b, per, floor)
}

// runFresh measures prog on a new tuple every packet: a wrapper bumps
// the frame's TCP source port (BPF_PROG_TEST_RUN keeps the frame between
// repeats) and tail-calls prog. The endpoint's conntrack table is filled
// first (twice its size in fresh flows), so the run is at steady state:
// every insert evicts. Reported: the wrapper around prog, less the
// wrapper around the empty program, plus the empty program.
func (m *benchMeter) runFresh(b *testing.B, d *datapath, prog *ebpf.Program, frame []byte) {
	wrapped := freshWrapper(b, prog)
	wrappedEmpty := freshWrapper(b, m.empty)
	f := append([]byte(nil), frame...)
	size := int(d.inner.MaxEntries)
	if ret, _, err := wrapped.Benchmark(f, 2*size, nil); err != nil || ret != actOK {
		b.Fatalf("fill conntrack: verdict %d, %v", ret, err)
	}
	if n := len(tableEntries(b, d.table(idD))); n < size/2 {
		b.Fatalf("conntrack holds %d flows after %d fresh ones, want about %d", n, 2*size, size)
	}
	// go on where the fill ended: its last flows are in the table
	binary.LittleEndian.PutUint16(f[34:], binary.LittleEndian.Uint16(f[34:])+uint16(2*size))
	floor := best(b, m.empty, f)
	wrap := best(b, wrappedEmpty, f) - floor
	ret, per, err := wrapped.Benchmark(f, b.N, b.ResetTimer)
	if err != nil {
		b.Fatal(err)
	}
	if ret != actOK {
		b.Fatalf("verdict %d, want %d", ret, actOK)
	}
	m.report(b, per-max(wrap, 0), floor)
}

// freshWrapper is a tc program that adds 1 to the TCP source port of an
// IPv4 frame without options (offset 34) and tail-calls target.
func freshWrapper(b *testing.B, target *ebpf.Program) *ebpf.Program {
	slots := tailCallSlot(b, target)
	const sport = 34
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.SchedCLS,
		Instructions: asm.Instructions{
			asm.Mov.Reg(asm.R6, asm.R1),
			asm.LoadMem(asm.R2, asm.R1, 76, asm.Word), // __sk_buff.data
			asm.LoadMem(asm.R3, asm.R1, 80, asm.Word), // __sk_buff.data_end
			asm.Mov.Reg(asm.R4, asm.R2),
			asm.Add.Imm(asm.R4, sport+2),
			asm.JGT.Reg(asm.R4, asm.R3, "call"),
			asm.LoadMem(asm.R5, asm.R2, sport, asm.Half),
			asm.Add.Imm(asm.R5, 1),
			asm.StoreMem(asm.R2, sport, asm.R5, asm.Half),
			asm.Mov.Reg(asm.R1, asm.R6).WithSymbol("call"),
			asm.LoadMapPtr(asm.R2, slots.FD()),
			asm.Mov.Imm(asm.R3, 0),
			asm.FnTailCall.Call(),
			asm.Mov.Imm(asm.R0, 2),
			asm.Return(),
		},
		License: "Dual BSD/GPL",
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}

// tailCallSlot is a program array with target in slot 0.
func tailCallSlot(b *testing.B, target *ebpf.Program) *ebpf.Map {
	slots, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.ProgramArray, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { slots.Close() })
	if err := slots.Put(uint32(0), target); err != nil {
		b.Fatal(err)
	}
	return slots
}

// readEvents reads d's event ring in a goroutine, as `polc monitor`
// does (blocking in epoll between events), until the returned function
// is called; that reports events/pkt: the events the reader saw per
// packet of the benchmark.
func (d *datapath) readEvents(b *testing.B) func() {
	var seen atomic.Int64
	var stopping atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var rec ringbuf.Record
		for !stopping.Load() {
			d.events.SetDeadline(time.Now().Add(50 * time.Millisecond))
			err := d.events.ReadInto(&rec)
			if err == nil {
				seen.Add(1)
			} else if !errors.Is(err, ringbuf.ErrFlushed) && !errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
		}
	}()
	return func() {
		b.StopTimer()
		// let the reader drain what the run left in the ring
		for last := int64(-1); last != seen.Load(); {
			last = seen.Load()
			time.Sleep(100 * time.Millisecond)
		}
		stopping.Store(true)
		wg.Wait()
		b.ReportMetric(float64(seen.Load())/float64(b.N), "events/pkt")
	}
}

// A subject with exact rules only: with hints one policy lookup decides.
const idD = 259

var epD = addrs{"10.0.0.4", "fd00::4"}

// loadBenchDatapath loads a datapath whose policy has n entries in the
// hash and n in the range trie (plus the test world's), and n hosts, with
// the object's conntrack table and event ring sizes. With share (the maps
// of another bench datapath) it uses that one's policy and ipcache maps,
// already filled.
func loadBenchDatapath(b *testing.B, n int, consts map[string]uint32, share map[string]*ebpf.Map) *datapath {
	spec, err := Spec()
	if err != nil {
		b.Fatal(err)
	}
	ctEntries := spec.Maps[MapConntrack].InnerMap.MaxEntries
	ringSize := spec.Maps[MapEvents].MaxEntries
	var shared map[string]*ebpf.Map
	if share != nil {
		shared = map[string]*ebpf.Map{}
		for _, name := range []string{MapPolicy, MapPolicyRanges, MapIPCache4, MapIPCache6, MapIPCache4LPM, MapIPCache6LPM} {
			shared[name] = share[name]
		}
	}
	d := loadDatapathSpec(b, consts, shared, uint32(n)+4096, func(s *ebpf.CollectionSpec) {
		s.Maps[MapConntrack].InnerMap.MaxEntries = ctEntries
		s.Maps[MapEvents].MaxEntries = ringSize
	})
	if share != nil {
		return d
	}
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
		vals[i] = PolicyValue{Verdict: VerdictAllow, Rule: uint32(100 + i%100), Order: OrderUntiered(VerdictAllow, uint32(100+i%100))}
		rk := PolicyRangeKey{Prefixlen: PolicyRangeKeyFixedBits + 12, Proto: 6}
		binary.BigEndian.PutUint32(rk.Subject[:], subj)
		binary.BigEndian.PutUint32(rk.Remote[:], uint32(2000+i%50))
		binary.BigEndian.PutUint16(rk.Port[:], uint16(i%4096)<<4)
		rkeys[i] = rk
		binary.BigEndian.PutUint32(hosts[i][:], 0x0b000000+uint32(i))
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

func (d *datapath) decideQuiet(p *ebpf.Program, frame []byte) (uint32, error) {
	ret, err := p.Run(&ebpf.RunOptions{Data: frame})
	return ret, err
}

// BenchmarkDatapathTiers measures the fresh case of BenchmarkDatapath
// with and without 1 000 admin policies on the subject (addAdminTier),
// in alternating rounds of the same run, so that load from neighbours
// hits both alike: untiered-ns and tiered-ns are the best round of each
// (wrapper cost taken off, as in runFresh), x-empty the ratios to the
// empty program, and tiered/untiered the ratio of the two.
func BenchmarkDatapathTiers(b *testing.B) {
	requireBPF(b)
	m := newBenchMeter(b)
	fresh := tcp(epB.v4, epD.v4, 1, 80, tcpSYN).bytes()
	for _, n := range []int{10, 1_000_000} {
		d := loadBenchDatapath(b, n, shippingConsts(nil), nil)
		d.setBinding(idD)
		dT := loadBenchDatapath(b, n, shippingConsts(nil), nil)
		addAdminTier(b, dT, 1000)
		dT.setBinding(idD)
		b.Run(fmt.Sprintf("policy=%d/fresh", n), func(b *testing.B) {
			m.runPaired(b, [2]*datapath{d, dT}, fresh)
		})
	}
}

func (m *benchMeter) runPaired(b *testing.B, ds [2]*datapath, frame []byte) {
	// a round is a whole number of cycles of the 65 536 source ports, so
	// that each round starts on tuples long evicted
	const round, rounds = 4 << 16, 7
	wrapped := [2]*ebpf.Program{}
	for i, d := range ds {
		wrapped[i] = freshWrapper(b, d.coll.Programs[ProgEndpointIngress])
		size := int(d.inner.MaxEntries)
		if ret, _, err := wrapped[i].Benchmark(frame, 2*size, nil); err != nil || ret != actOK {
			b.Fatalf("fill conntrack: verdict %d, %v", ret, err)
		}
	}
	wrappedEmpty := freshWrapper(b, m.empty)
	f := append([]byte(nil), frame...)
	binary.LittleEndian.PutUint16(f[34:], binary.LittleEndian.Uint16(f[34:])+uint16(2*int(ds[0].inner.MaxEntries)))
	best := [2]time.Duration{math.MaxInt64, math.MaxInt64}
	floor, wrap := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
	b.ResetTimer()
	for range max(1, b.N/(2*round*rounds)) {
		for range rounds {
			_, e, err := m.empty.Benchmark(f, round, nil)
			if err != nil {
				b.Fatal(err)
			}
			_, w, err := wrappedEmpty.Benchmark(f, round, nil)
			if err != nil {
				b.Fatal(err)
			}
			floor, wrap = min(floor, e), min(wrap, w)
			for i := range wrapped {
				ret, t, err := wrapped[i].Benchmark(f, round, nil)
				if err != nil {
					b.Fatal(err)
				}
				if ret != actOK {
					b.Fatalf("verdict %d, want %d", ret, actOK)
				}
				best[i] = min(best[i], t)
			}
		}
	}
	b.StopTimer()
	wrapCost := max(wrap-floor, 0)
	per := [2]time.Duration{best[0] - wrapCost, best[1] - wrapCost}
	b.ReportMetric(float64(per[0].Nanoseconds()), "untiered-ns")
	b.ReportMetric(float64(per[1].Nanoseconds()), "tiered-ns")
	b.ReportMetric(float64(per[0])/float64(floor), "untiered-x-empty")
	b.ReportMetric(float64(per[1])/float64(floor), "tiered-x-empty")
	b.ReportMetric(float64(per[1])/float64(per[0]), "tiered/untiered")
}
