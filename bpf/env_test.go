package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// requireBPF skips a test that needs root, unless CI=true, where it fails:
// CI must run the kernel tests, never skip them.
func requireBPF(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatal("BPF tests need root, and CI=true forbids skipping them")
	}
	tb.Skip("BPF tests need root (set CI=true to make this a failure)")
}

// Verdicts returned by tc programs.
const (
	actOK   = 0 // TC_ACT_OK
	actShot = 2 // TC_ACT_SHOT
)

// datapath is one loaded collection with its tail calls in place.
type datapath struct {
	tb     testing.TB
	coll   *ebpf.Collection
	events *ringbuf.Reader
	// bound, when not nil, is the endpoint run binds the test
	// interface to; nil binds the endpoint that owns the hook's address
	// (see bindFor).
	bound *uint32
	// tables are the conntrack tables the datapath's endpoints have, by
	// endpoint index, created when a run binds an endpoint or an address
	// becomes local. Datapaths that share the conntrack map share it.
	tables map[uint32]*ebpf.Map
	inner  *ebpf.MapSpec // the tables' spec
}

// testIfindex is the interface BPF_PROG_TEST_RUN runs tc programs on:
// the loopback device of the calling thread's network namespace.
const testIfindex uint32 = 1

// otherEndpoint is the endpoint run binds when the hook's address is no
// local endpoint's: an interface of some other endpoint.
const otherEndpoint uint32 = 0xfff0

// localEndpoint is the endpoint index tests give a local address: its
// identity (tests give each endpoint an identity of its own).
func localEndpoint(id, flags uint32) uint32 {
	if flags&IPCacheLocal == 0 {
		return 0
	}
	return id
}

// ConstGeneration is not a constant of the object: the policy generation
// lives in MapGeneration. Tests give it with the constants, and
// loadDatapathSpec writes it there.
const ConstGeneration = "generation"

// testConsts are the constants tests load with unless they say otherwise:
// events on allow too, so that every packet reports its deciding rule.
func testConsts() map[string]uint32 {
	return map[string]uint32{ConstEventsAllow: 1, ConstGeneration: 1}
}

// loadDatapath loads the object with small maps and the given constants,
// fills the tail-call slots and opens the event reader. Maps named in
// share are reused (conntrack across generations).
func loadDatapath(tb testing.TB, consts map[string]uint32, share map[string]*ebpf.Map) *datapath {
	tb.Helper()
	return loadDatapathSized(tb, consts, share, 4096)
}

// loadDatapathSized is loadDatapath with every hash, LRU and LPM map sized
// to entries.
func loadDatapathSized(tb testing.TB, consts map[string]uint32, share map[string]*ebpf.Map, entries uint32) *datapath {
	tb.Helper()
	return loadDatapathSpec(tb, consts, share, entries, nil)
}

// loadDatapathSpec is loadDatapathSized with a last edit of the spec.
func loadDatapathSpec(tb testing.TB, consts map[string]uint32, share map[string]*ebpf.Map, entries uint32, edit func(*ebpf.CollectionSpec)) *datapath {
	tb.Helper()
	requireBPF(tb)
	spec, err := Spec()
	if err != nil {
		tb.Fatal(err)
	}
	for _, ms := range spec.Maps {
		switch ms.Type {
		case ebpf.Hash, ebpf.LRUHash, ebpf.LPMTrie:
			ms.MaxEntries = entries
		}
	}
	for _, n := range ContentMaps {
		spec.Maps[n].InnerMap.MaxEntries = entries
	}
	// room for every endpoint index tests use (identities, otherEndpoint)
	spec.Maps[MapConntrack].MaxEntries = 1 << 16
	spec.Maps[MapConntrack].InnerMap.MaxEntries = entries
	spec.Maps[MapCounters].MaxEntries = 256
	spec.Maps[MapEvents].MaxEntries = 1 << 16
	for name, v := range consts {
		if name == ConstGeneration {
			continue
		}
		vs, ok := spec.Variables[name]
		if !ok {
			tb.Fatalf("no constant %s", name)
		}
		if err := vs.Set(v); err != nil {
			tb.Fatalf("set %s: %v", name, err)
		}
	}
	if edit != nil {
		edit(spec)
	}
	// A shared content map is its inner map in this datapath's slot
	// (a generation of its own, with the same policy, as a full apply
	// makes it); the generation map is never shared.
	content := map[string]*ebpf.Map{}
	replace := map[string]*ebpf.Map{}
	for n, m := range share {
		base, _, alias := strings.Cut(n, "/")
		switch {
		case slices.Contains(ContentMaps, base):
			if !alias {
				content[n] = m
			}
		case n != MapGeneration:
			replace[n] = m
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: replace})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			tb.Fatalf("verifier: %+v", ve)
		}
		tb.Fatal(err)
	}
	tb.Cleanup(coll.Close)
	fillContentSlots(tb, coll, spec, consts[ConstGeneration], content)
	slot := func(name string, def uint32) uint32 {
		if v, ok := consts[name]; ok {
			return v
		}
		return def
	}
	for prog, s := range map[string]uint32{
		ProgPolicy4:  slot(ConstSlotPolicy4, DefaultSlotPolicy4),
		ProgPolicy6:  slot(ConstSlotPolicy6, DefaultSlotPolicy6),
		ProgEpilogue: slot(ConstSlotEpilogue, DefaultSlotEpilogue),
	} {
		if err := coll.Maps[MapTailCalls].Put(s, coll.Programs[prog]); err != nil {
			tb.Fatalf("tail call slot %d: %v", s, err)
		}
	}
	rd, err := ringbuf.NewReader(coll.Maps[MapEvents])
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rd.Close() })
	d := &datapath{tb: tb, coll: coll, events: rd, tables: map[uint32]*ebpf.Map{}, inner: spec.Maps[MapConntrack].InnerMap.Copy()}
	if outer, ok := share[MapConntrack]; ok {
		d.tables = sharedTables[outer]
	} else {
		sharedTables[coll.Maps[MapConntrack]] = d.tables
		tb.Cleanup(func() {
			delete(sharedTables, coll.Maps[MapConntrack])
			for _, m := range d.tables {
				m.Close()
			}
		})
	}
	return d
}

// fillContentSlots gives every content map an empty inner map in each
// slot, writes gen into MapGeneration, and puts the inner maps of gen's
// slot under the content maps' names in coll.Maps (the outer maps under
// NAME/outer), so tests fill the policy as plain maps. A map in shared
// is the inner map of gen's slot instead of a new one.
func fillContentSlots(tb testing.TB, coll *ebpf.Collection, spec *ebpf.CollectionSpec, gen uint32, shared map[string]*ebpf.Map) {
	tb.Helper()
	for _, n := range ContentMaps {
		outer := coll.Maps[n]
		coll.Maps[n+"/outer"] = outer
		for s := range uint32(ContentSlots) {
			var m *ebpf.Map
			var err error
			if sm := shared[n]; sm != nil && s == ContentSlot(gen) {
				m, err = sm.Clone()
			} else {
				m, err = ebpf.NewMap(spec.Maps[n].InnerMap)
			}
			if err == nil {
				err = outer.Put(s, m)
			}
			if err != nil {
				tb.Fatalf("%s slot %d: %v", n, s, err)
			}
			if s == ContentSlot(gen) {
				coll.Maps[n] = m
			} else {
				coll.Maps[fmt.Sprintf("%s/%d", n, s)] = m
			}
		}
	}
	if err := coll.Maps[MapGeneration].Put(uint32(0), gen); err != nil {
		tb.Fatal(err)
	}
}

// sharedTables are the conntrack tables of each loaded conntrack map, so
// that a datapath reusing another's map knows its tables.
var sharedTables = map[*ebpf.Map]map[uint32]*ebpf.Map{}

// table is endpoint ep's conntrack table, created (and put into the
// conntrack map) on first use.
func (d *datapath) table(ep uint32) *ebpf.Map {
	d.tb.Helper()
	if m := d.tables[ep]; m != nil {
		return m
	}
	m, err := ebpf.NewMap(d.inner)
	if err == nil {
		err = d.coll.Maps[MapConntrack].Put(ep, m)
	}
	if err != nil {
		d.tb.Fatalf("conntrack table of endpoint %d: %v", ep, err)
	}
	d.tables[ep] = m
	return m
}

func addr4(s string) [4]byte   { return netip.MustParseAddr(s).As4() }
func addr16(s string) [16]byte { return netip.MustParseAddr(s).As16() }

// host puts an address into ipcache4/ipcache6.
func (d *datapath) host(addr string, id, flags uint32) {
	d.tb.Helper()
	a := netip.MustParseAddr(addr)
	var err error
	if ep := localEndpoint(id, flags); ep != 0 {
		d.table(ep)
	}
	if a.Is4() {
		err = d.coll.Maps[MapIPCache4].Put(a.As4(), IPCacheValue{id, flags, localEndpoint(id, flags)})
	} else {
		err = d.coll.Maps[MapIPCache6].Put(a.As16(), IPCacheValue{id, flags, localEndpoint(id, flags)})
	}
	if err != nil {
		d.tb.Fatal(err)
	}
}

// prefix puts a prefix into ipcache4_lpm/ipcache6_lpm.
func (d *datapath) prefix(p string, id, flags uint32) {
	d.tb.Helper()
	pf := netip.MustParsePrefix(p)
	var err error
	if ep := localEndpoint(id, flags); ep != 0 {
		d.table(ep)
	}
	if pf.Addr().Is4() {
		err = d.coll.Maps[MapIPCache4LPM].Put(LPMKey4{uint32(pf.Bits()), pf.Addr().As4()}, IPCacheValue{id, flags, localEndpoint(id, flags)})
	} else {
		err = d.coll.Maps[MapIPCache6LPM].Put(LPMKey6{uint32(pf.Bits()), pf.Addr().As16()}, IPCacheValue{id, flags, localEndpoint(id, flags)})
	}
	if err != nil {
		d.tb.Fatal(err)
	}
}

func (d *datapath) policy(k PolicyKey, verdict uint8, rule uint32) {
	d.tb.Helper()
	if err := d.coll.Maps[MapPolicy].Put(k, PolicyValue{Verdict: verdict, Rule: rule, Order: OrderUntiered(verdict, rule)}); err != nil {
		d.tb.Fatal(err)
	}
}

// portRange puts the range [lo, hi] (aligned: a single prefix) into policy_ranges.
func (d *datapath) portRange(subject, remote uint32, proto, flags uint8, lo, hi uint16, verdict uint8, rule uint32) {
	d.tb.Helper()
	bits := 16
	for span := uint32(hi) - uint32(lo) + 1; span > 1; span >>= 1 {
		bits--
	}
	k := PolicyRangeKey{Prefixlen: uint32(PolicyRangeKeyFixedBits + bits), Proto: proto, Flags: flags}
	binary.BigEndian.PutUint32(k.Subject[:], subject)
	binary.BigEndian.PutUint32(k.Remote[:], remote)
	binary.BigEndian.PutUint16(k.Port[:], lo)
	if err := d.coll.Maps[MapPolicyRanges].Put(k, PolicyValue{Verdict: verdict, Rule: rule, Order: OrderUntiered(verdict, rule)}); err != nil {
		d.tb.Fatal(err)
	}
}

// bind binds the test interface to endpoint ep for every later run
// (0: unbound).
func (d *datapath) bind(ep uint32) {
	d.tb.Helper()
	d.bound = &ep
}

// bindAuto undoes bind: run binds the hook's own endpoint again.
func (d *datapath) bindAuto() { d.bound = nil }

// bindFor is the endpoint the interface of prog serves when frame crosses
// it as its endpoint sent or receives it: the owner of the frame's source
// (egress) or destination (ingress) address in the ipcache, else
// otherEndpoint (so that the frame meets the address check).
func (d *datapath) bindFor(prog string, frame []byte) uint32 {
	d.tb.Helper()
	if d.bound != nil {
		return *d.bound
	}
	var addr netip.Addr
	if len(frame) >= 14 {
		egress := prog == ProgEndpointEgress
		switch binary.BigEndian.Uint16(frame[12:]) {
		case 0x0800:
			if len(frame) >= 34 {
				off := 30
				if egress {
					off = 26
				}
				addr = netip.AddrFrom4([4]byte(frame[off : off+4]))
			}
		case 0x86dd:
			if len(frame) >= 54 {
				off := 38
				if egress {
					off = 22
				}
				addr = netip.AddrFrom16([16]byte(frame[off : off+16]))
			}
		}
	}
	if !addr.IsValid() {
		return otherEndpoint
	}
	var v IPCacheValue
	found := false
	if addr.Is4() {
		found = d.coll.Maps[MapIPCache4].Lookup(addr.As4(), &v) == nil ||
			d.coll.Maps[MapIPCache4LPM].Lookup(LPMKey4{32, addr.As4()}, &v) == nil
	} else {
		found = d.coll.Maps[MapIPCache6].Lookup(addr.As16(), &v) == nil ||
			d.coll.Maps[MapIPCache6LPM].Lookup(LPMKey6{128, addr.As16()}, &v) == nil
	}
	if !found || v.Endpoint == 0 {
		return otherEndpoint
	}
	return v.Endpoint
}

// setBinding writes the test interface's binding.
func (d *datapath) setBinding(ep uint32) {
	d.tb.Helper()
	if ep != 0 && ep != EndpointPass {
		d.table(ep)
	}
	if err := d.coll.Maps[MapIfaceEndpoints].Put(testIfindex, IfaceValue{Endpoint: ep}); err != nil {
		d.tb.Fatal(err)
	}
}

// run sends the frame through a tc entry program, on the test interface
// bound as bindFor says, and returns the action.
func (d *datapath) run(prog string, frame []byte) uint32 {
	d.tb.Helper()
	if prog == ProgEndpointEgress || prog == ProgEndpointIngress {
		d.setBinding(d.bindFor(prog, frame))
	}
	ret, err := d.coll.Programs[prog].Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		d.tb.Fatalf("%s: %v", prog, err)
	}
	return ret
}

// event reads the next event, failing if there is none. The program run
// that made it has returned, so it is in the ring already (without a
// wake-up: bpf/verdict.h), and a deadline in the past reads it.
func (d *datapath) event() Event {
	d.tb.Helper()
	d.events.SetDeadline(time.Now())
	rec, err := d.events.Read()
	if err != nil {
		d.tb.Fatalf("no event: %v", err)
	}
	var e Event
	if _, err := binary.Decode(rec.RawSample, binary.NativeEndian, &e); err != nil {
		d.tb.Fatalf("decode event: %v", err)
	}
	return e
}

// noEvent asserts the ring buffer is empty.
func (d *datapath) noEvent() {
	d.tb.Helper()
	d.events.SetDeadline(time.Now().Add(10 * time.Millisecond))
	if rec, err := d.events.Read(); err == nil {
		d.tb.Fatalf("unexpected event of %d bytes", len(rec.RawSample))
	}
}

// decide runs a frame and returns the action and the deciding rule (from
// the event the packet produced; tests load with events on allow).
func (d *datapath) decide(prog string, frame []byte) (uint32, uint32) {
	d.tb.Helper()
	ret := d.run(prog, frame)
	e := d.event()
	return ret, e.Rule
}

// counter sums a rule's counter over CPUs.
func (d *datapath) counter(rule uint32) Counter {
	d.tb.Helper()
	var per []Counter
	if err := d.coll.Maps[MapCounters].Lookup(rule, &per); err != nil {
		d.tb.Fatal(err)
	}
	var c Counter
	for _, x := range per {
		c.Packets += x.Packets
		c.Bytes += x.Bytes
	}
	return c
}

// ctEntries lists the entries of every endpoint's conntrack table.
func (d *datapath) ctEntries() map[CTKey]CTValue {
	d.tb.Helper()
	out := map[CTKey]CTValue{}
	for _, m := range d.tables {
		maps.Copy(out, tableEntries(d.tb, m))
	}
	return out
}

// ctEntriesOf lists the entries of endpoint ep's conntrack table.
func (d *datapath) ctEntriesOf(ep uint32) map[CTKey]CTValue {
	d.tb.Helper()
	return tableEntries(d.tb, d.table(ep))
}

func tableEntries(tb testing.TB, m *ebpf.Map) map[CTKey]CTValue {
	tb.Helper()
	out := map[CTKey]CTValue{}
	var k CTKey
	var v CTValue
	it := m.Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	if err := it.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}
