package bpf

import (
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/polc-dev/polc/compiler/ir"
)

// TestCountersAndEvents: every verdict is counted under its rule id; drops
// always produce an event, allows only with ConstEventsAllow.
func TestCountersAndEvents(t *testing.T) {
	c := testConsts()
	c[ConstEventsAllow] = 0
	d := loadDatapath(t, c, nil)
	setupWorld(d)
	in := ProgEndpointIngress

	allowed := tcp(epB.v4, epA.v4, 40000, 80, tcpSYN).bytes()
	for i := 0; i < 3; i++ {
		if act := d.run(in, allowed); act != actOK {
			t.Fatalf("allowed packet: %d", act)
		}
	}
	d.noEvent()
	if got := d.counter(16); got.Packets != 1 || got.Bytes != uint64(len(allowed)) {
		t.Errorf("rule 16 counter %+v", got)
	}
	if got := d.counter(RuleEstablishedID); got.Packets != 2 || got.Bytes != 2*uint64(len(allowed)) {
		t.Errorf("established counter %+v", got)
	}

	denied := tcp(epB.v6, epA.v6, 40001, 81, tcpSYN)
	if act := d.run(in, denied.bytes()); act != actShot {
		t.Fatalf("denied packet: %d", act)
	}
	e := d.event()
	want := Event{
		Rule: RuleDefaultDenyID, Verdict: VerdictDeny, Dir: DirIngress, Family: FamilyIPv6, Proto: 6,
		Saddr: denied.src.As16(), Daddr: denied.dst.As16(), Sport: 40001, Dport: 81,
		Subject: idA, Remote: idB, Len: uint32(len(denied.bytes())), Generation: 1,
	}
	if e != want {
		t.Errorf("event\n got %+v\nwant %+v", e, want)
	}
	if got := d.counter(RuleDefaultDenyID); got.Packets != 1 {
		t.Errorf("default deny counter %+v", got)
	}

	// ICMP events carry type<<8|code as the destination port
	if act := d.run(in, icmp(world.v4, epA.v4, 13, 0, 1).bytes()); act != actShot {
		t.Fatalf("icmp timestamp: %d", act)
	}
	if e := d.event(); e.Dport != 13<<8 || e.Sport != 0 || e.Proto != 1 || e.Remote != IdentityWorld || e.Family != FamilyIPv4 {
		t.Errorf("icmp event %+v", e)
	}

	// malformed and non-IP
	bad := tcp(epB.v4, epA.v4, 1, 80, tcpSYN).bytes()
	bad[14] = 0x44
	d.run(in, bad)
	if e := d.event(); e.Rule != RuleMalformedID || e.Verdict != VerdictDeny || e.Subject != 0 {
		t.Errorf("malformed event %+v", e)
	}
	arp := tcp(epB.v4, epA.v4, 1, 80, tcpSYN)
	arp.etherType = 0x0806
	d.run(in, arp.bytes())
	d.noEvent()
	if got := d.counter(RuleMalformedID); got.Packets != 1 {
		t.Errorf("malformed counter %+v", got)
	}
	if got := d.counter(RuleNonIPID); got.Packets != 1 {
		t.Errorf("non-IP counter %+v", got)
	}
}

// TestEmptySlots: with a policy slot empty the subject's default decides;
// with the epilogue slot empty verdicts hold but no conntrack is recorded.
func TestEmptySlots(t *testing.T) {
	in := ProgEndpointIngress
	t.Run("policy", func(t *testing.T) {
		d := loadDatapath(t, testConsts(), nil)
		setupWorld(d)
		if err := d.coll.Maps[MapTailCalls].Delete(uint32(DefaultSlotPolicy4)); err != nil {
			t.Fatal(err)
		}
		d.expect("isolated subject", in, tcp(epB.v4, epA.v4, 1, 80, tcpSYN), actShot, RuleDefaultDenyID)
		d.expect("open subject", in, tcp(epA.v4, epB.v4, 1, 80, tcpSYN), actOK, RuleDefaultAllowID)
		d.expect("v6 unaffected", in, tcp(epB.v6, epA.v6, 1, 80, tcpSYN), actOK, 16)
	})
	t.Run("epilogue", func(t *testing.T) {
		d := loadDatapath(t, testConsts(), nil)
		setupWorld(d)
		if err := d.coll.Maps[MapTailCalls].Delete(uint32(DefaultSlotEpilogue)); err != nil {
			t.Fatal(err)
		}
		p := tcp(epB.v4, epA.v4, 1, 80, tcpSYN)
		d.expect("allowed", in, p, actOK, 16)
		d.expect("again: no conntrack", in, p, actOK, 16)
		d.expect("denied", in, tcp(epB.v4, epA.v4, 1, 81, tcpSYN), actShot, RuleDefaultDenyID)
		if n := len(d.ctEntries()); n != 0 {
			t.Errorf("%d conntrack entries", n)
		}
		if got := d.counter(16); got.Packets != 2 {
			t.Errorf("rule 16 counted %d", got.Packets)
		}
	})
	t.Run("custom layout", func(t *testing.T) {
		c := testConsts()
		c[ConstSlotPolicy4], c[ConstSlotPolicy6], c[ConstSlotEpilogue] = 7, 3, 5
		d := loadDatapath(t, c, nil)
		setupWorld(d)
		d.expect("v4", in, tcp(epB.v4, epA.v4, 1, 80, tcpSYN), actOK, 16)
		d.expect("v6", in, tcp(epB.v6, epA.v6, 1, 80, tcpSYN), actOK, 16)
		d.expect("v6 established", in, tcp(epB.v6, epA.v6, 1, 80, tcpACK), actOK, RuleEstablishedID)
	})
}

// TestVerifierVariants loads the object with each feature switch flipped:
// the verifier must accept every combination the compiler may emit.
func TestVerifierVariants(t *testing.T) {
	variants := []map[string]uint32{
		{},
		{ConstHasIPv4: 0},
		{ConstHasIPv6: 0},
		{ConstHasPrefixes4: 0, ConstHasPrefixes6: 0, ConstHasRanges: 0},
		{ConstEventsAllow: 1},
		{ConstHasIPv4: 0, ConstHasIPv6: 0, ConstEventsAllow: 1, ConstHasRanges: 0},
	}
	for _, v := range variants {
		d := loadDatapath(t, v, nil)
		if len(d.coll.Programs) != 6 {
			t.Errorf("%v: %d programs", v, len(d.coll.Programs))
		}
	}
	// features off really switch lookups off
	d := loadDatapath(t, map[string]uint32{ConstHasPrefixes4: 0, ConstHasIPv6: 0, ConstEventsAllow: 1}, nil)
	setupWorld(d)
	d.expect("no v4 prefixes: CIDR identity unknown → world", ProgEndpointIngress, tcp(net1.v4, epA.v4, 1, 8085, tcpSYN), actOK, 23)
	// without IPv6 endpoints every IPv6 address is the world's, so no
	// endpoint's interface carries IPv6 for it
	d.bind(idA)
	d.expect("no IPv6: not the endpoint's address", ProgEndpointIngress, tcp(epB.v6, epA.v6, 1, 81, tcpSYN), actShot, RuleWrongDestinationID)
	d.expect("no IPv6: not the endpoint's source", ProgEndpointEgress, tcp(epA.v6, epB.v6, 1, 81, tcpSYN), actShot, RuleSpoofedSourceID)
}

// TestEventsAllowOnRequest: with cfg_events_allow off, allowed packets are
// reported only while events_allow holds a time still to come.
func TestEventsAllowOnRequest(t *testing.T) {
	d := loadDatapath(t, map[string]uint32{ConstEventsAllow: 0, ConstGeneration: 3}, nil)
	setupWorld(d)
	allowed := udp(world.v4, epB.v4, 5, 53).bytes() // B is open
	set := func(until uint64) {
		t.Helper()
		if err := d.coll.Maps[MapEventsAllow].Put(uint32(0), until); err != nil {
			t.Fatal(err)
		}
	}
	if act := d.run(ProgEndpointIngress, allowed); act != actOK {
		t.Fatalf("allowed packet: %d", act)
	}
	d.noEvent()
	set(monotonicNow(t) + uint64(10*time.Second))
	d.run(ProgEndpointIngress, allowed)
	if e := d.event(); e.Verdict != VerdictAllow || e.Generation != 3 {
		t.Errorf("event while requested: %+v", e)
	}
	set(monotonicNow(t) - uint64(time.Second))
	d.run(ProgEndpointIngress, allowed)
	d.noEvent()
	set(0)
	d.run(ProgEndpointIngress, allowed)
	d.noEvent()
}

// TestEventsLost: drops that find the ring buffer full are counted in
// events_lost, so that a reader can tell how many it missed.
func TestEventsLost(t *testing.T) {
	d := loadDatapathSpec(t, testConsts(), nil, 4096, func(s *ebpf.CollectionSpec) {
		s.Maps[MapEvents].MaxEntries = 4096 // room for about 50 events
	})
	setupWorld(d)
	denied := tcp(epB.v4, epA.v4, 40001, 81, tcpSYN).bytes()
	const sent = 200
	for range sent {
		if act := d.run(ProgEndpointIngress, denied); act != actShot {
			t.Fatalf("denied packet: %d", act)
		}
	}
	got := 0
	for {
		d.events.SetDeadline(time.Now().Add(10 * time.Millisecond))
		if _, err := d.events.Read(); err != nil {
			break
		}
		got++
	}
	var per []uint64
	if err := d.coll.Maps[MapEventsLost].Lookup(uint32(0), &per); err != nil {
		t.Fatal(err)
	}
	lost := 0
	for _, n := range per {
		lost += int(n)
	}
	if got == sent || got+lost != sent {
		t.Errorf("%d events read, %d counted lost, of %d drops", got, lost, sent)
	}
}

// TestAudit: a subject with audit entries gets, for a packet its
// enforcing entries allow, the answer of every policy: a deny (or no
// allow at all) passes the packet all the same, reported as an audit
// event naming the rule that would deny, and counted under it; an allow
// reports nothing.
func TestAudit(t *testing.T) {
	d := loadDatapath(t, map[string]uint32{ConstEventsAllow: 0, ConstGeneration: 1}, nil)
	setupWorld(d)
	// B is open; an audit policy isolates its ingress: deny tcp/22 from
	// anyone (rule 40), allow tcp/443 from the world (rule 41)
	d.host(epB.v4, idB, IPCacheLocal|IPCacheIngressAudit)
	d.policy(PolicyKey{Subject: idB, Remote: IdentityAny, Port: 22, Proto: 6, Flags: PolicyAudit}, VerdictDeny, 40)
	d.policy(PolicyKey{Subject: idB, Remote: IdentityWorld, Port: 443, Proto: 6, Flags: PolicyAudit}, VerdictAllow, 41)
	in := ProgEndpointIngress
	for _, c := range []struct {
		name  string
		port  uint16
		audit uint32
	}{
		{"audit deny rule", 22, 40},
		{"audit default deny", 80, uint32(ir.RuleAuditDefaultDeny)},
		{"audit allow", 443, 0},
	} {
		before := d.counter(c.audit)
		if act := d.run(in, tcp(world.v4, epB.v4, 4000+c.port, c.port, tcpSYN).bytes()); act != actOK {
			t.Errorf("%s: action %d, want pass", c.name, act)
		}
		if c.audit == 0 {
			d.noEvent()
			continue
		}
		e := d.event()
		if e.Verdict != VerdictAudit || e.Audit != c.audit || e.Rule != RuleDefaultAllowID {
			t.Errorf("%s: event %+v, want audit %d with rule default-allow", c.name, e, c.audit)
		}
		if got := d.counter(c.audit); got.Packets != before.Packets+1 {
			t.Errorf("%s: audit rule counted %d packets, want %d", c.name, got.Packets, before.Packets+1)
		}
	}
	// the audited flow was allowed: its next packet is established, not audited again
	est := d.counter(RuleEstablishedID)
	if act := d.run(in, tcp(world.v4, epB.v4, 4022, 22, tcpACK).bytes()); act != actOK {
		t.Errorf("established after audit: action %d", act)
	}
	d.noEvent()
	if got := d.counter(RuleEstablishedID); got.Packets != est.Packets+1 {
		t.Errorf("established after audit: counted %d, want %d", got.Packets, est.Packets+1)
	}
	// an enforced deny stays a drop, whatever the audit entries say
	if act := d.run(in, tcp(epC.v4, epB.v4, 5000, 443, tcpSYN).bytes()); act != actShot {
		t.Errorf("enforced deny: action %d", act)
	}
	if e := d.event(); e.Verdict != VerdictDeny || e.Audit != 0 {
		t.Errorf("enforced deny event %+v", e)
	}
}
