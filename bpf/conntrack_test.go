package bpf

import (
	"fmt"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

func forFamilies(t *testing.T, f func(t *testing.T, v6 bool)) {
	for _, v6 := range []bool{false, true} {
		name := "v4"
		if v6 {
			name = "v6"
		}
		t.Run(name, func(t *testing.T) { f(t, v6) })
	}
}

func monotonicNow(t *testing.T) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

// ctKeyOf is the conntrack key of p observed at the hook dir, as
// polc_ct_key computes it: the endpoint's side first, ICMP echo by the ports
// of its request and the side that sent it.
func ctKeyOf(p testPacket, dir uint8) CTKey {
	k := CTKey{Proto: p.proto, Family: FamilyIPv4}
	var src, dst [16]byte
	if p.src.Is6() {
		k.Family = FamilyIPv6
		src, dst = p.src.As16(), p.dst.As16()
	} else {
		s, d := p.src.As4(), p.dst.As4()
		copy(src[:], s[:])
		copy(dst[:], d[:])
	}
	sport, dport := p.sport, p.dport
	request, reply := uint8(8), uint8(0)
	native := uint8(1)
	if p.src.Is6() {
		request, reply, native = 128, 129, 58
	}
	echo := p.proto == native && (p.icmpType == request || p.icmpType == reply)
	if echo {
		sport, dport = p.icmpID, 0
		if p.icmpType == reply {
			sport, dport = 0, p.icmpID
		}
		k.Echo = CTEchoRemote
		if (p.icmpType == request) == (dir == DirEgress) {
			k.Echo = CTEchoLocal
		}
	}
	if dir == DirEgress {
		k.Laddr, k.Raddr, k.Lport, k.Rport = src, dst, sport, dport
	} else {
		k.Laddr, k.Raddr, k.Lport, k.Rport = dst, src, dport, sport
	}
	return k
}

func (d *datapath) expect(what, prog string, p testPacket, act, rule uint32) {
	d.tb.Helper()
	gotAct, gotRule := d.decide(prog, p.bytes())
	if gotAct != act || gotRule != rule {
		d.tb.Errorf("%s: got action %d rule %d, want %d rule %d", what, gotAct, gotRule, act, rule)
	}
}

func TestConntrack(t *testing.T) {
	in, out := ProgEndpointIngress, ProgEndpointEgress
	forFamilies(t, func(t *testing.T, v6 bool) {
		d := loadDatapath(t, testConsts(), nil)
		setupWorld(d)

		syn := tcp(epB.get(v6), epA.get(v6), 40000, 80, tcpSYN)
		d.expect("new flow", in, syn, actOK, 16)
		key := ctKeyOf(syn, DirIngress)
		e, ok := d.ctEntries()[key]
		if !ok {
			t.Fatalf("no conntrack entry %+v; have %+v", key, d.ctEntries())
		}
		now := monotonicNow(t)
		if e.Rule != 16 || e.Generation != 1 || e.State != CTOpen || e.Packets != 1 ||
			e.Bytes != uint64(len(syn.bytes())) || e.Expires < now+21000*uint64(time.Second) {
			t.Errorf("entry %+v", e)
		}

		// the same packet at B's egress hook is B's decision, not A's flow
		d.expect("other hook does not skip policy", out, syn, actOK, RuleDefaultAllowID)

		// established: the policy entry is no longer needed
		if err := d.coll.Maps[MapPolicy].Delete(PolicyKey{Subject: idA, Remote: idB, Port: 80, Proto: 6}); err != nil {
			t.Fatal(err)
		}
		d.expect("established fast path", in, tcp(epB.get(v6), epA.get(v6), 40000, 80, tcpACK), actOK, RuleEstablishedID)
		d.expect("reply", out, syn.reply(tcpSYN|tcpACK), actOK, RuleEstablishedID)
		if e := d.ctEntries()[key]; e.Packets != 3 {
			t.Errorf("entry counts %d packets, want 3", e.Packets)
		}
		// RST passes and ends the flow
		d.expect("rst", out, syn.reply(tcpRST), actOK, RuleEstablishedID)
		if _, ok := d.ctEntries()[key]; ok {
			t.Errorf("entry survived RST")
		}
		d.expect("after rst: policy again", in, tcp(epB.get(v6), epA.get(v6), 40000, 80, tcpACK), actShot, RuleDefaultDenyID)

		// replies pass where the reverse direction is isolated (C egress)
		for _, p := range []testPacket{
			tcp(world.get(v6), epC.get(v6), 1000, 444, tcpSYN),
			udp(world.get(v6), epC.get(v6), 1000, 53),
			sctp(world.get(v6), epC.get(v6), 1000, 9),
			echoRequest(world.get(v6), epC.get(v6), 99),
		} {
			d.expect("open ingress", in, p, actOK, RuleDefaultAllowID)
			r := p.reply(tcpSYN | tcpACK)
			if p.proto == 1 || p.proto == 58 {
				r = echoReply(epC.get(v6), world.get(v6), 99)
			}
			d.expect("reply through isolated egress", out, r, actOK, RuleEstablishedID)
			if p.proto == 6 || p.proto == 17 {
				// not the reply: other port
				r.sport++
				d.expect("not a reply", out, r, actShot, RuleDefaultDenyID)
			}
		}
		// an echo with id 0 does not open other ICMP messages
		d.expect("echo id 0", in, echoRequest(world.get(v6), epA.get(v6), 0), actOK, 20)
		other := icmp(world.get(v6), epA.get(v6), 13, 0, 0)
		if v6 {
			other.icmpType = 139
		}
		d.expect("other icmp after echo id 0", in, other, actShot, RuleDefaultDenyID)
		d.expect("other icmp back after echo id 0", out, icmp(epA.get(v6), world.get(v6), other.icmpType, 0, 0), actOK, RuleDefaultAllowID)
		// an unsolicited echo reply is not a reply
		d.expect("unsolicited echo reply", out, echoReply(epC.get(v6), world.get(v6), 98), actShot, RuleDefaultDenyID)

		// FIN shortens the flow's life
		fin := tcp(world.get(v6), epC.get(v6), 1001, 444, tcpSYN)
		d.expect("open", in, fin, actOK, RuleDefaultAllowID)
		d.expect("fin", out, fin.reply(tcpFIN|tcpACK), actOK, RuleEstablishedID)
		e = d.ctEntries()[ctKeyOf(fin, DirIngress)]
		if e.State != CTClosing || e.Expires > monotonicNow(t)+11*uint64(time.Second) {
			t.Errorf("after FIN: %+v", e)
		}
	})
}

func echoRequest(src, dst string, id uint16) testPacket {
	p := icmp(src, dst, 8, 0, id)
	if p.src.Is6() {
		p.icmpType = 128
	}
	p.sport = id // conntrack ports of an echo request
	return p
}

func echoReply(src, dst string, id uint16) testPacket {
	p := icmp(src, dst, 0, 0, id)
	if p.src.Is6() {
		p.icmpType = 129
	}
	p.dport = id
	return p
}

// TestConntrackGeneration: entries of an older policy generation are
// checked against the current policy by their next packet.
func TestConntrackGeneration(t *testing.T) {
	in, out := ProgEndpointIngress, ProgEndpointEgress
	forFamilies(t, func(t *testing.T, v6 bool) {
		d1 := loadDatapath(t, testConsts(), nil)
		setupWorld(d1)
		keep := tcp(epB.get(v6), epA.get(v6), 40001, 80, tcpSYN)
		lose := udp(epB.get(v6), epA.get(v6), 40002, 53)
		loseReply := tcp(epB.get(v6), epA.get(v6), 40003, 80, tcpSYN)
		d1.expect("gen1 keep", in, keep, actOK, 16)
		d1.expect("gen1 lose", in, lose, actOK, 17)
		d1.expect("gen1 loseReply", in, loseReply, actOK, 16)

		share := map[string]*ebpf.Map{}
		for _, m := range []string{MapIPCache4, MapIPCache6, MapIPCache4LPM, MapIPCache6LPM, MapPolicy, MapPolicyRanges, MapConntrack, MapFrags, MapCounters} {
			share[m] = d1.coll.Maps[m]
		}
		c := testConsts()
		c[ConstGeneration] = 2
		d2 := loadDatapath(t, c, share)
		// generation 2 no longer allows udp from any, nor tcp/80 from B after the first check
		if err := d2.coll.Maps[MapPolicy].Delete(PolicyKey{Subject: idA, Remote: IdentityAny, Proto: 17, Flags: PolicyAnyPort}); err != nil {
			t.Fatal(err)
		}
		d2.expect("gen2 recheck allows", in, keep.reply(tcpACK).reply(tcpACK), actOK, 16)
		if e := d2.ctEntries()[ctKeyOf(keep, DirIngress)]; e.Generation != 2 {
			t.Errorf("rechecked entry generation %d, want 2", e.Generation)
		}
		d2.expect("gen2 then established", in, keep, actOK, RuleEstablishedID)
		d2.expect("gen2 recheck denies", in, lose, actShot, RuleDefaultDenyID)
		if _, ok := d2.ctEntries()[ctKeyOf(lose, DirIngress)]; ok {
			t.Errorf("denied entry kept")
		}
		// a reply of a stale flow rechecks the original flow
		if err := d2.coll.Maps[MapPolicy].Delete(PolicyKey{Subject: idA, Remote: idB, Port: 80, Proto: 6}); err != nil {
			t.Fatal(err)
		}
		d2.expect("gen2 stale reply denied", out, loseReply.reply(tcpSYN|tcpACK), actShot, RuleDefaultDenyID)
		if _, ok := d2.ctEntries()[ctKeyOf(loseReply, DirIngress)]; ok {
			t.Errorf("denied entry kept")
		}
		d2.expect("gen2 current entry untouched", out, keep.reply(tcpACK), actOK, RuleEstablishedID)
	})
}

// TestConntrackFromGo: an entry written by Go is honoured by the kernel.
func TestConntrackFromGo(t *testing.T) {
	d := loadDatapath(t, testConsts(), nil)
	setupWorld(d)
	p := tcp(world.v4, epA.v4, 5, 6, tcpACK)
	k := ctKeyOf(p, DirIngress)
	v := CTValue{Expires: monotonicNow(t) + uint64(time.Minute), Rule: 99, Generation: 1, State: CTOpen}
	if err := d.table(idA).Put(k, v); err != nil {
		t.Fatal(err)
	}
	d.expect("go entry", ProgEndpointIngress, p, actOK, RuleEstablishedID)
	d.expect("go entry reply", ProgEndpointEgress, p.reply(tcpACK), actOK, RuleEstablishedID)
	// expired, and opened the other way, under another rule and generation
	v = CTValue{Expires: monotonicNow(t) - uint64(time.Second), // the datapath's coarse clock lags by up to a tick
		Packets: 50, Bytes: 5000, Rule: 99, Generation: 0, State: CTClosing, Origin: DirEgress}
	if err := d.table(idA).Put(k, v); err != nil {
		t.Fatal(err)
	}
	d.expect("expired entry is a miss", ProgEndpointIngress, p, actOK, 23)
	// the new flow's entry replaces the expired one (rewritten in place)
	// with nothing of it left
	var got CTValue
	if err := d.table(idA).Lookup(k, &got); err != nil {
		t.Fatal(err)
	}
	now := monotonicNow(t)
	want := CTValue{Expires: got.Expires, Packets: 1, Bytes: uint64(len(p.bytes())), Rule: 23, Generation: 1, State: CTOpen, Origin: DirIngress}
	if got != want || got.Expires < now+uint64(21600-60)*uint64(time.Second) {
		t.Errorf("re-created entry %+v, want %+v expiring in 21600 s (cfg_ct_lifetime_tcp)", got, want)
	}
	d.expect("re-created entry", ProgEndpointIngress, p, actOK, RuleEstablishedID)
}

// TestEchoIdentifiers: an echo reply is looked up in conntrack whatever its
// identifier, 0 included (its tracking ports are (0, 0), like any other ICMP
// message's), so the reply to an allowed ping passes as established into an
// isolated direction. Requests are looked up only as sent and replies only
// reversed, so with id 0 neither passes as the other.
func TestEchoIdentifiers(t *testing.T) {
	in, out := ProgEndpointIngress, ProgEndpointEgress
	forFamilies(t, func(t *testing.T, v6 bool) {
		for _, id := range []uint16{0, 0x1234} {
			t.Run(fmt.Sprintf("id %#x", id), func(t *testing.T) {
				d := loadDatapath(t, testConsts(), nil)
				setupWorld(d)
				// C: ingress open, egress isolated (tcp/443 only)
				d.expect("ping to C", in, echoRequest(world.get(v6), epC.get(v6), id), actOK, RuleDefaultAllowID)
				d.expect("reply through C's isolated egress", out, echoReply(epC.get(v6), world.get(v6), id), actOK, RuleEstablishedID)
				d.expect("second reply", out, echoReply(epC.get(v6), world.get(v6), id), actOK, RuleEstablishedID)
				// a request from C back is not the earlier request's reply
				d.expect("request from C, same id", out, echoRequest(epC.get(v6), world.get(v6), id), actShot, RuleDefaultDenyID)
				// A: egress open, ingress isolated (echo requests only)
				d.expect("ping from A", out, echoRequest(epA.get(v6), world.get(v6), id), actOK, RuleDefaultAllowID)
				d.expect("reply into A's isolated ingress", in, echoReply(world.get(v6), epA.get(v6), id), actOK, RuleEstablishedID)
				d.expect("reply from another host", in, echoReply(far.get(v6), epA.get(v6), id), actShot, RuleDefaultDenyID)
				// a reply sent the way the request went is not established
				d.expect("reply from A, same id", out, echoReply(epA.get(v6), world.get(v6), id), actOK, RuleDefaultAllowID)
				// only requests create entries: one at C's ingress, one at A's egress
				if n := len(d.ctEntries()); n != 2 {
					t.Errorf("%d conntrack entries, want 2: %+v", n, d.ctEntries())
				}
				// an ICMP error quoting a message that is not echo is not
				// related, even when its ports (0, 0) equal an echo's with id 0
				unreach := icmp(far.get(v6), epA.get(v6), 3, 1, 0)
				quoted := icmp(epA.get(v6), world.get(v6), 13, 0, id)
				if v6 {
					unreach.icmpType, unreach.icmpCode = 1, 3
					quoted.icmpType = 139
				}
				unreach.payload = quoted.ip()
				d.expect("error quoting other icmp", in, unreach, actShot, RuleDefaultDenyID)
				unreach.payload = echoReply(epA.get(v6), world.get(v6), id).ip()
				d.expect("error quoting an echo reply A did not send as one", in, unreach, actShot, RuleDefaultDenyID)
				unreach.payload = echoRequest(epA.get(v6), world.get(v6), id).ip()
				d.expect("error quoting A's echo request", in, unreach, actOK, RuleRelatedID)
			})
		}
	})
}

// TestConntrackPerEndpoint: each endpoint has a conntrack table of its
// own, so an endpoint opening flows by the thousand (a flood to the
// world) evicts only its own: another endpoint's idle flow keeps its
// entry, and its reply into an isolated direction still passes. With one
// table shared by all endpoints the flood evicted it.
func TestConntrackPerEndpoint(t *testing.T) {
	const size = 256
	in, out := ProgEndpointIngress, ProgEndpointEgress
	forFamilies(t, func(t *testing.T, v6 bool) {
		d := loadDatapathSized(t, testConsts(), nil, size)
		setupWorld(d)
		// C is egress-isolated: its replies need C's entry
		syn := tcp(world.get(v6), epC.get(v6), 40000, 22, tcpSYN)
		d.expect("world opens a flow to C", in, syn, actOK, RuleDefaultAllowID)
		// B, open both ways, opens size*40 flows to the world
		for i := range size * 40 {
			if act := d.run(out, udp(epB.get(v6), far.get(v6), uint16(10000+i), 53).bytes()); act != actOK {
				t.Fatalf("flood packet %d: action %d", i, act)
			}
		}
		d.drainEvents()
		if n := len(d.ctEntriesOf(idB)); n > size || n < size/2 {
			t.Errorf("B's table has %d entries, want its own flows up to its size %d", n, size)
		}
		if _, ok := d.ctEntriesOf(idC)[ctKeyOf(syn, DirIngress)]; !ok {
			t.Fatalf("C's entry was evicted by B's flood (C's table holds %d entries)", len(d.ctEntriesOf(idC)))
		}
		d.expect("C's reply after B's flood", out, syn.reply(tcpSYN|tcpACK), actOK, RuleEstablishedID)
		// B's own oldest flows are what it lost
		d.expect("B's first flow is forgotten: its reply meets policy", in,
			udp(far.get(v6), epB.get(v6), 53, 10000), actOK, RuleDefaultAllowID)
	})
}

// drainEvents reads and drops every event waiting in the ring buffer.
func (d *datapath) drainEvents() {
	d.tb.Helper()
	for {
		d.events.SetDeadline(time.Now().Add(10 * time.Millisecond))
		if _, err := d.events.Read(); err != nil {
			return
		}
	}
}
