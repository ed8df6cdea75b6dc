package bpf

import (
	"encoding/binary"
	"net"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/polc-dev/polc/runtime/netnstest"
)

// TestSpoofedSource: on the interface bound to an endpoint, a packet the
// endpoint sends must come from one of its addresses. Taking another
// endpoint's address, or the world's, is dropped before conntrack and
// policy, counted and reported as spoofed-source; the real owner of the
// address still passes on its own interface.
func TestSpoofedSource(t *testing.T) {
	out := ProgEndpointEgress
	forFamilies(t, func(t *testing.T, v6 bool) {
		d := loadDatapath(t, testConsts(), nil)
		setupWorld(d)
		echo := func(src string) testPacket {
			if v6 {
				return icmp(src, epA.v6, 128, 0, 7)
			}
			return icmp(src, epA.v4, 8, 0, 7)
		}
		// B may send tcp/80 and any udp to A; C is egress-isolated.
		d.bind(idC)
		d.expect("C sends tcp as B", out, tcp(epB.get(v6), epA.get(v6), 40000, 80, tcpSYN), actShot, RuleSpoofedSourceID)
		d.expect("C sends udp as B", out, udp(epB.get(v6), epA.get(v6), 40000, 53), actShot, RuleSpoofedSourceID)
		d.expect("C sends an echo request as B", out, echo(epB.get(v6)), actShot, RuleSpoofedSourceID)
		d.expect("C sends as the world", out, udp(world.get(v6), epA.get(v6), 40000, 53), actShot, RuleSpoofedSourceID)
		d.expect("C sends as a CIDR identity", out, udp(net1.get(v6), epA.get(v6), 40000, 53), actShot, RuleSpoofedSourceID)
		if got := len(d.ctEntries()); got != 0 {
			t.Errorf("spoofed packets created %d conntrack entries", got)
		}
		if c := d.counter(RuleSpoofedSourceID); c.Packets != 5 {
			t.Errorf("spoofed-source counter: %d packets, want 5", c.Packets)
		}
		// the event carries the packet as sent
		d.bind(idC)
		d.run(out, udp(epB.get(v6), epA.get(v6), 40001, 53).bytes())
		ev := d.event()
		if ev.Rule != RuleSpoofedSourceID || ev.Verdict != VerdictDeny || ev.Dir != DirEgress || ev.Sport != 40001 || ev.Dport != 53 {
			t.Errorf("spoofed event: %+v", ev)
		}

		// B on its own interface: policy decides, and the reply passes
		d.bindAuto()
		d.expect("B sends tcp/80 as itself", out, tcp(epB.get(v6), epA.get(v6), 40000, 80, tcpSYN), actOK, RuleDefaultAllowID)
		d.expect("A's ingress allows it", ProgEndpointIngress, tcp(epB.get(v6), epA.get(v6), 40000, 80, tcpSYN), actOK, 16)
		d.expect("A replies", out, tcp(epB.get(v6), epA.get(v6), 40000, 80, tcpSYN).reply(tcpSYN|tcpACK), actOK, RuleEstablishedID)
		// a spoofed reply on the wrong interface does not ride the flow
		d.bind(idC)
		d.expect("C forges A's reply", out, tcp(epB.get(v6), epA.get(v6), 40000, 80, tcpSYN).reply(tcpACK), actShot, RuleSpoofedSourceID)
	})
}

// TestWrongDestination: a packet delivered on an endpoint's interface must
// be for one of that endpoint's addresses.
func TestWrongDestination(t *testing.T) {
	in := ProgEndpointIngress
	forFamilies(t, func(t *testing.T, v6 bool) {
		d := loadDatapath(t, testConsts(), nil)
		setupWorld(d)
		d.bind(idB) // B's interface, open both ways
		d.expect("for A on B's interface", in, tcp(world.get(v6), epA.get(v6), 1, 80, tcpSYN), actShot, RuleWrongDestinationID)
		d.expect("for the world on B's interface", in, udp(epC.get(v6), world.get(v6), 1, 53), actShot, RuleWrongDestinationID)
		d.expect("for B on B's interface", in, udp(world.get(v6), epB.get(v6), 1, 53), actOK, RuleDefaultAllowID)
		if c := d.counter(RuleWrongDestinationID); c.Packets != 2 {
			t.Errorf("wrong-destination counter: %d packets, want 2", c.Packets)
		}
	})
}

// TestUnboundInterface: an interface that runs the programs but is bound
// to no endpoint passes nothing, not even ARP.
func TestUnboundInterface(t *testing.T) {
	d := loadDatapath(t, testConsts(), nil)
	setupWorld(d)
	d.bind(0)
	arp := tcp(epB.v4, epA.v4, 1, 80, tcpSYN)
	arp.etherType = 0x0806
	for _, prog := range []string{ProgEndpointEgress, ProgEndpointIngress} {
		d.expect(prog+": tcp", prog, tcp(epB.v4, epA.v4, 1, 80, tcpSYN), actShot, RuleUnboundID)
		d.expect(prog+": arp", prog, arp, actShot, RuleUnboundID)
	}
}

// TestLinkLocalNeighbourDiscovery: neighbour discovery from link-local or
// unspecified sources (egress) and to link-local or link-scope multicast
// destinations (ingress) is no endpoint's address but passes the check;
// other link-local traffic does not.
func TestLinkLocalNeighbourDiscovery(t *testing.T) {
	in, out := ProgEndpointIngress, ProgEndpointEgress
	d := loadDatapath(t, testConsts(), nil)
	setupWorld(d)
	d.bind(idC)
	d.expect("NS from fe80:: to solicited-node", out, nd("fe80::3", "ff02::1:ff00:1", 135), actOK, RuleNonIPID)
	d.expect("DAD NS from ::", out, nd("::", "ff02::1:ff00:3", 135), actOK, RuleNonIPID)
	d.expect("RS from fe80::", out, nd("fe80::3", "ff02::2", 133), actOK, RuleNonIPID)
	d.expect("NS from the endpoint's own address", out, nd(epC.v6, "ff02::1:ff00:1", 135), actOK, RuleNonIPID)
	d.expect("NS from another endpoint's address", out, nd(epB.v6, "ff02::1:ff00:1", 135), actShot, RuleSpoofedSourceID)
	d.expect("udp from fe80::", out, udp("fe80::3", "fe80::1", 546, 547), actShot, RuleSpoofedSourceID)
	d.expect("echo from fe80::", out, icmp("fe80::3", "fe80::1", 128, 0, 1), actShot, RuleSpoofedSourceID)
	lowHop := nd("fe80::3", "ff02::1:ff00:1", 135)
	lowHop.hopLimit = 64 // not neighbour discovery (RFC 4861)
	d.expect("NS with hop limit 64 from fe80::", out, lowHop, actShot, RuleSpoofedSourceID)

	d.expect("RA to all-nodes", in, nd("fe80::1", "ff02::1", 134), actOK, RuleNonIPID)
	d.expect("NS to the solicited-node group", in, nd("fe80::1", "ff02::1:ff00:3", 135), actOK, RuleNonIPID)
	d.expect("NS to fe80::", in, nd("fe80::1", "fe80::3", 135), actOK, RuleNonIPID)
	d.expect("NS to the endpoint's address", in, nd("fe80::1", epC.v6, 135), actOK, RuleNonIPID)
	d.expect("NS to another endpoint's address", in, nd("fe80::1", epB.v6, 135), actShot, RuleWrongDestinationID)
	d.expect("echo to ff02::1", in, icmp("fe80::1", "ff02::1", 128, 0, 1), actShot, RuleWrongDestinationID)
}

// TestEtherTypes: on an endpoint's interface ARP passes unpoliced, and
// every other ethertype, VLAN tags included, is dropped.
func TestEtherTypes(t *testing.T) {
	d := loadDatapath(t, testConsts(), nil)
	setupWorld(d)
	tagged := func(tpid uint16, inner []byte) []byte {
		b := append([]byte{}, inner[:12]...)
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, 0) // priority 0, VLAN 0
		return append(b, inner[12:]...)
	}
	withType := func(t uint16) []byte {
		b := tcp(epB.v4, epA.v4, 1, 80, tcpSYN).bytes()
		binary.BigEndian.PutUint16(b[12:], t)
		return b
	}
	ip4 := tcp(epB.v4, epA.v4, 1, 80, tcpSYN).bytes()
	ip6 := tcp(epB.v6, epA.v6, 1, 80, tcpSYN).bytes()
	cases := []struct {
		name  string
		frame []byte
		act   uint32
		rule  uint32
	}{
		{"802.1Q-tagged IPv4", tagged(0x8100, ip4), actShot, RuleEtherTypeID},
		{"802.1Q-tagged IPv6", tagged(0x8100, ip6), actShot, RuleEtherTypeID},
		{"802.1ad (QinQ) outer tag", tagged(0x88a8, tagged(0x8100, ip4)), actShot, RuleEtherTypeID},
		{"0x9100 tag", tagged(0x9100, ip4), actShot, RuleEtherTypeID},
		{"LLDP", withType(0x88cc), actShot, RuleEtherTypeID},
		{"PPPoE discovery", withType(0x8863), actShot, RuleEtherTypeID},
		{"MPLS", withType(0x8847), actShot, RuleEtherTypeID},
		{"ARP", withType(0x0806), actOK, RuleNonIPID},
		{"untagged IPv4", ip4, actOK, RuleDefaultAllowID},
	}
	for _, c := range cases {
		d.bind(idB)
		d.expect2(c.name+" (egress)", ProgEndpointEgress, c.frame, c.act, c.rule)
		d.bind(idA)
		if c.rule == RuleDefaultAllowID {
			continue // A's ingress has its own policy; the tag rule is the point
		}
		d.expect2(c.name+" (ingress)", ProgEndpointIngress, c.frame, c.act, c.rule)
	}
}

// TestBindingBeyondArray: an ifindex the array cannot hold is looked up in
// iface_endpoints_big. The test interface's ifindex (1) is made "large" by
// shrinking the array to one slot (ifindex 0).
func TestBindingBeyondArray(t *testing.T) {
	d := loadDatapathSpec(t, testConsts(), nil, 4096, func(spec *ebpf.CollectionSpec) {
		spec.Maps[MapIfaceEndpoints].MaxEntries = 1
	})
	setupWorld(d)
	pkt := udp(epB.v4, epA.v4, 1, 53)
	// run writes the array, which has no slot for ifindex 1: write the hash
	ret, err := d.coll.Programs[ProgEndpointEgress].Run(&ebpf.RunOptions{Data: pkt.bytes()})
	if err != nil {
		t.Fatal(err)
	}
	if ev := d.event(); ret != actShot || ev.Rule != RuleUnboundID {
		t.Fatalf("before binding: action %d rule %d, want drop unbound-interface", ret, ev.Rule)
	}
	if err := d.coll.Maps[MapIfaceEndpointsBig].Put(testIfindex, IfaceValue{Endpoint: idB}); err != nil {
		t.Fatal(err)
	}
	ret, err = d.coll.Programs[ProgEndpointEgress].Run(&ebpf.RunOptions{Data: pkt.bytes()})
	if err != nil {
		t.Fatal(err)
	}
	if ev := d.event(); ret != actOK || ev.Rule != RuleDefaultAllowID {
		t.Fatalf("bound in the hash: action %d rule %d, want pass default-allow", ret, ev.Rule)
	}
	if err := d.coll.Maps[MapIfaceEndpointsBig].Put(testIfindex, IfaceValue{Endpoint: idC}); err != nil {
		t.Fatal(err)
	}
	ret, err = d.coll.Programs[ProgEndpointEgress].Run(&ebpf.RunOptions{Data: pkt.bytes()})
	if err != nil {
		t.Fatal(err)
	}
	if ev := d.event(); ret != actShot || ev.Rule != RuleSpoofedSourceID {
		t.Fatalf("bound to another endpoint in the hash: action %d rule %d, want drop spoofed-source", ret, ev.Rule)
	}
}

// TestNeighbourDiscoveryToTheHost: unicast neighbour discovery from an
// endpoint to a global address passes unpoliced only when that address is
// the host's own (its gateway): the FIB says it is not forwarded. ND to an
// address off the link would be routed on, a covert channel past egress
// policy, so it meets policy (C is egress-isolated: default deny). The
// program runs in a network namespace of the test's own, where the host
// has fd00:abcd::1 and a default route.
func TestNeighbourDiscoveryToTheHost(t *testing.T) {
	d := loadDatapath(t, testConsts(), nil)
	setupWorld(d)
	ns := netnstest.New(t, "fib")
	if err := ns.Do(func() error {
		up := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink"}, PeerName: "uplink-peer"}
		if err := netlink.LinkAdd(up); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(up); err != nil {
			return err
		}
		_, all, _ := net.ParseCIDR("::/0")
		return netlink.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Dst: all})
	}); err != nil {
		t.Fatal(err)
	}
	for _, forwarding := range []string{"1", "0"} {
		if err := ns.Do(func() error {
			return os.WriteFile("/proc/sys/net/ipv6/conf/all/forwarding", []byte(forwarding), 0o644)
		}); err != nil {
			t.Fatal(err)
		}
		if forwarding == "1" {
			netnstest.AddAddr(t, ns, "lo", "fd00:abcd::1/128")
		}
		run := func(p testPacket) (uint32, uint32) {
			var act, rule uint32
			if err := ns.Do(func() error {
				act, rule = d.decide(ProgEndpointEgress, p.bytes())
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			return act, rule
		}
		for typ := uint8(135); typ <= 136; typ++ {
			act, rule := run(nd(epC.v6, "fd00:abcd::1", typ))
			// without forwarding the FIB answers "forwarding disabled"
			// before it looks the address up: policy decides (C is
			// egress-isolated)
			wantAct, wantRule := uint32(actOK), uint32(RuleNonIPID)
			if forwarding == "0" {
				wantAct, wantRule = actShot, RuleDefaultDenyID
			}
			if act != wantAct || rule != wantRule {
				t.Errorf("forwarding %s: type %d to the host's address: action %d rule %d, want %d rule %d", forwarding, typ, act, rule, wantAct, wantRule)
			}
			if act, rule := run(nd(epC.v6, world.v6, typ)); act != actShot || rule != RuleDefaultDenyID {
				t.Errorf("forwarding %s: type %d off the link: action %d rule %d, want default deny", forwarding, typ, act, rule)
			}
		}
	}
}

// TestPassBinding: an interface bound to EndpointPass (being detached)
// passes everything at both hooks, spoofed and denied packets included,
// without counting or reporting them.
func TestPassBinding(t *testing.T) {
	d := loadDatapath(t, testConsts(), nil)
	setupWorld(d)
	d.bind(EndpointPass)
	for _, c := range []struct {
		prog string
		pkt  testPacket
	}{
		{ProgEndpointEgress, tcp(epC.v4, world.v4, 1, 444, tcpSYN)}, // C's egress denies it
		{ProgEndpointEgress, udp(epB.v4, world.v4, 1, 53)},          // spoofed on C's interface
		{ProgEndpointIngress, tcp(world.v4, epA.v4, 1, 81, tcpSYN)}, // A's ingress denies it
	} {
		if act := d.run(c.prog, c.pkt.bytes()); act != actOK {
			t.Errorf("%s: action %d, want pass", c.prog, act)
		}
	}
	d.noEvent()
	if n := len(d.ctEntries()); n != 0 {
		t.Errorf("%d conntrack entries", n)
	}
}
