package bpf

import (
	"strings"
	"testing"
)

// The world of the policy tests. Every endpoint has an IPv4 and an IPv6
// address; the policy entries are written by hand the way the compiler
// would lower them.
const (
	idA    = 256 // ingress-isolated, with ingress ranges
	idB    = 257 // local, open both ways
	idC    = 258 // egress-isolated
	idNet  = 300 // CIDR identity 192.0.2.0/24, 2001:db8:1::/48
	idBad  = 301 // CIDR identity 203.0.113.0/24, 2001:db8:bad::/48
	ruleR0 = 16
)

type addrs struct{ v4, v6 string }

var (
	epA   = addrs{"10.0.0.1", "fd00::1"}
	epB   = addrs{"10.0.0.2", "fd00::2"}
	epC   = addrs{"10.0.0.3", "fd00::3"}
	net1  = addrs{"192.0.2.7", "2001:db8:1::7"}
	bad   = addrs{"203.0.113.9", "2001:db8:bad::9"}
	world = addrs{"198.51.100.7", "2001:db8:ffff::7"}
	far   = addrs{"198.51.100.8", "2001:db8:ffff::8"}
)

func (a addrs) get(v6 bool) string {
	if v6 {
		return a.v6
	}
	return a.v4
}

// setupWorld fills ipcache and policy.
// Probe hints are set as the compiler would (they matter only with
// ConstPolicyHints).
func setupWorld(d *datapath) {
	hintsA := (HintAnyRemote | HintWorld | HintAnyPort | HintAnyProto) << IPCacheIngressHintShift
	hintsB := HintAnyProto << IPCacheIngressHintShift
	hintsC := HintAnyRemote << IPCacheEgressHintShift
	d.host(epA.v4, idA, IPCacheLocal|IPCacheIngressIsolated|IPCacheIngressRanges|hintsA)
	d.host(epA.v6, idA, IPCacheLocal|IPCacheIngressIsolated|IPCacheIngressRanges|hintsA)
	d.host(epB.v4, idB, IPCacheLocal|hintsB)
	d.host(epB.v6, idB, IPCacheLocal|hintsB)
	d.host(epC.v4, idC, IPCacheLocal|IPCacheEgressIsolated|hintsC)
	d.host(epC.v6, idC, IPCacheLocal|IPCacheEgressIsolated|hintsC)
	d.prefix("192.0.2.0/24", idNet, 0)
	d.prefix("2001:db8:1::/48", idNet, 0)
	d.prefix("203.0.113.0/24", idBad, 0)
	d.prefix("2001:db8:bad::/48", idBad, 0)

	any := PolicyAnyPort
	// A ingress
	d.policy(PolicyKey{Subject: idA, Remote: idB, Port: 80, Proto: 6}, VerdictAllow, 16)                // from B tcp/80
	d.policy(PolicyKey{Subject: idA, Remote: IdentityAny, Proto: 17, Flags: any}, VerdictAllow, 17)     // from any udp
	d.policy(PolicyKey{Subject: idA, Remote: idB, Proto: 132, Flags: any}, VerdictAllow, 19)            // from B sctp
	d.policy(PolicyKey{Subject: idA, Remote: IdentityAny, Port: 8 << 8, Proto: 1}, VerdictAllow, 20)    // echo request v4
	d.policy(PolicyKey{Subject: idA, Remote: IdentityAny, Port: 128 << 8, Proto: 58}, VerdictAllow, 20) // echo request v6
	d.portRange(idA, idNet, 6, 0, 8080, 8095, VerdictAllow, 21)                                         // from net tcp/8080-8095
	d.policy(PolicyKey{Subject: idA, Remote: idNet, Port: 8085, Proto: 6}, VerdictDeny, 22)             // deny from net tcp/8085
	d.policy(PolicyKey{Subject: idA, Remote: IdentityWorld, Proto: 6, Flags: any}, VerdictAllow, 23)    // from world tcp
	d.policy(PolicyKey{Subject: idA, Remote: idBad, Proto: 0, Flags: any}, VerdictDeny, 24)             // deny from bad, any proto
	d.portRange(idA, IdentityAny, 17, 0, 5000, 5007, VerdictDeny, 27)                                   // deny udp/5000-5007 from any
	d.policy(PolicyKey{Subject: idA, Remote: idC, Proto: 0, Flags: any}, VerdictAllow, 28)              // from C anything
	// B ingress: open, but one deny
	d.policy(PolicyKey{Subject: idB, Remote: idC, Proto: 0, Flags: any}, VerdictDeny, 25)
	// C egress
	d.policy(PolicyKey{Subject: idC, Remote: IdentityAny, Port: 443, Proto: 6, Flags: PolicyEgress}, VerdictAllow, 26)
}

type policyCase struct {
	name string
	prog string
	pkt  func(v6 bool) testPacket
	act  uint32
	rule uint32
}

func TestPolicyDecisions(t *testing.T) {
	in, out := ProgEndpointIngress, ProgEndpointEgress
	cases := []policyCase{
		{"tcp single port from B", in, func(v6 bool) testPacket { return tcp(epB.get(v6), epA.get(v6), 40000, 80, tcpSYN) }, actOK, 16},
		{"tcp other port from B: default deny", in, func(v6 bool) testPacket { return tcp(epB.get(v6), epA.get(v6), 40000, 81, tcpSYN) }, actShot, uint32(RuleDefaultDenyID)},
		{"udp any port from any remote", in, func(v6 bool) testPacket { return udp(epB.get(v6), epA.get(v6), 40000, 53) }, actOK, 17},
		{"udp any port from world", in, func(v6 bool) testPacket { return udp(world.get(v6), epA.get(v6), 40000, 9999) }, actOK, 17},
		{"sctp any port from B", in, func(v6 bool) testPacket { return sctp(epB.get(v6), epA.get(v6), 1, 2) }, actOK, 19},
		{"sctp from world: default deny", in, func(v6 bool) testPacket { return sctp(world.get(v6), epA.get(v6), 1, 2) }, actShot, uint32(RuleDefaultDenyID)},
		{"icmp echo from any", in, func(v6 bool) testPacket {
			if v6 {
				return icmp(world.v6, epA.v6, 128, 0, 7)
			}
			return icmp(world.v4, epA.v4, 8, 0, 7)
		}, actOK, 20},
		{"icmp other type: default deny", in, func(v6 bool) testPacket {
			if v6 {
				return icmp(world.v6, epA.v6, 139, 0, 7)
			}
			return icmp(world.v4, epA.v4, 13, 0, 7)
		}, actShot, uint32(RuleDefaultDenyID)},
		{"range low end from net", in, func(v6 bool) testPacket { return tcp(net1.get(v6), epA.get(v6), 1, 8080, tcpSYN) }, actOK, 21},
		{"range high end from net", in, func(v6 bool) testPacket { return tcp(net1.get(v6), epA.get(v6), 1, 8095, tcpSYN) }, actOK, 21},
		{"deny in range wins", in, func(v6 bool) testPacket { return tcp(net1.get(v6), epA.get(v6), 1, 8085, tcpSYN) }, actShot, 22},
		{"out of range from net: world rule covers CIDR identities", in, func(v6 bool) testPacket { return tcp(net1.get(v6), epA.get(v6), 1, 8096, tcpSYN) }, actOK, 23},
		{"tcp any port from world", in, func(v6 bool) testPacket { return tcp(world.get(v6), epA.get(v6), 1, 22, tcpSYN) }, actOK, 23},
		{"world rule does not cover local C", in, func(v6 bool) testPacket { return tcp(epB.get(v6), epA.get(v6), 1, 22, tcpSYN) }, actShot, uint32(RuleDefaultDenyID)},
		{"deny any proto from bad beats world tcp allow", in, func(v6 bool) testPacket { return tcp(bad.get(v6), epA.get(v6), 1, 22, tcpSYN) }, actShot, 24},
		{"deny any proto from bad: udp", in, func(v6 bool) testPacket { return udp(bad.get(v6), epA.get(v6), 1, 53) }, actShot, 24},
		{"deny range from any beats udp allow", in, func(v6 bool) testPacket { return udp(epB.get(v6), epA.get(v6), 1, 5003) }, actShot, 27},
		{"any proto allow from C", in, func(v6 bool) testPacket { return sctp(epC.get(v6), epA.get(v6), 1, 2) }, actOK, 28},
		{"open subject B: default allow", in, func(v6 bool) testPacket { return tcp(world.get(v6), epB.get(v6), 1, 22, tcpSYN) }, actOK, uint32(RuleDefaultAllowID)},
		{"open subject B still honours deny", in, func(v6 bool) testPacket { return udp(epC.get(v6), epB.get(v6), 1, 22) }, actShot, 25},
		{"A egress open", out, func(v6 bool) testPacket { return tcp(epA.get(v6), world.get(v6), 1, 22, tcpSYN) }, actOK, uint32(RuleDefaultAllowID)},
		{"C egress allowed port", out, func(v6 bool) testPacket { return tcp(epC.get(v6), world.get(v6), 1, 443, tcpSYN) }, actOK, 26},
		{"C egress other port: default deny", out, func(v6 bool) testPacket { return tcp(epC.get(v6), world.get(v6), 1, 444, tcpSYN) }, actShot, uint32(RuleDefaultDenyID)},
		{"C ingress open", in, func(v6 bool) testPacket { return tcp(world.get(v6), epC.get(v6), 1, 444, tcpSYN) }, actOK, uint32(RuleDefaultAllowID)},
		// on an endpoint's interface the endpoint's side is its own address
		{"to a non-local address: wrong destination", in, func(v6 bool) testPacket { return tcp(world.get(v6), far.get(v6), 1, 444, tcpSYN) }, actShot, uint32(RuleWrongDestinationID)},
		{"from a non-local address: spoofed", out, func(v6 bool) testPacket { return tcp(far.get(v6), epA.get(v6), 1, 444, tcpSYN) }, actShot, uint32(RuleSpoofedSourceID)},
	}
	for _, variant := range []string{"v4", "v6", "v4-hints", "v6-hints"} {
		v6 := strings.HasPrefix(variant, "v6")
		t.Run(variant, func(t *testing.T) {
			c := testConsts()
			if strings.HasSuffix(variant, "hints") {
				c[ConstPolicyHints] = 1
			}
			d := loadDatapath(t, c, nil)
			setupWorld(d)
			for _, c := range cases {
				// a fresh source port per case: no conntrack between cases
				act, rule := d.decide(c.prog, c.pkt(v6).bytes())
				if act != c.act || rule != c.rule {
					t.Errorf("%s: got action %d rule %d, want %d rule %d", c.name, act, rule, c.act, c.rule)
				}
			}
		})
	}
}

// Reserved rule ids as uint32 (the ir constants, checked in layout_test.go).
const (
	RuleDefaultAllowID = 1
	RuleDefaultDenyID  = 2
	RuleEstablishedID  = 3
	RuleRelatedID      = 4
	RuleMalformedID    = 5
	RuleNonIPID        = 6
	RuleFragmentID     = 7
	RulePrefilterID    = 8

	RuleSpoofedSourceID    = 9
	RuleWrongDestinationID = 10
	RuleEtherTypeID        = 11
	RuleUnboundID          = 12
	RuleTunnelID           = 13
)

// TestPolicyHints: with ConstPolicyHints, a class the subject's flags do
// not announce is not probed (which is why the compiler must set them).
func TestPolicyHints(t *testing.T) {
	c := testConsts()
	c[ConstPolicyHints] = 1
	d := loadDatapath(t, c, nil)
	setupWorld(d)
	in := ProgEndpointIngress
	d.expect("announced", in, udp(epB.v4, epA.v4, 1, 53), actOK, 17)
	d.host(epA.v4, idA, IPCacheLocal|IPCacheIngressIsolated|IPCacheIngressRanges|(HintWorld|HintAnyPort|HintAnyProto)<<IPCacheIngressHintShift)
	d.expect("any remote not announced", in, udp(epB.v4, epA.v4, 2, 53), actShot, RuleDefaultDenyID)
	d.host(epA.v4, idA, IPCacheLocal|IPCacheIngressIsolated|IPCacheIngressRanges|(HintAnyRemote|HintWorld|HintAnyProto)<<IPCacheIngressHintShift)
	d.expect("any port not announced", in, udp(epB.v4, epA.v4, 3, 53), actShot, RuleDefaultDenyID)
	d.host(epA.v4, idA, IPCacheLocal|IPCacheIngressIsolated|IPCacheIngressRanges|(HintAnyRemote|HintAnyPort|HintAnyProto)<<IPCacheIngressHintShift)
	d.expect("world entry for a CIDR identity not announced", in, tcp(net1.v4, epA.v4, 3, 22, tcpSYN), actShot, RuleDefaultDenyID)
	d.expect("world itself is the remote's own identity", in, tcp(world.v4, epA.v4, 3, 22, tcpSYN), actOK, 23)
	d.host(epA.v4, idA, IPCacheLocal|IPCacheIngressIsolated|IPCacheIngressRanges|(HintAnyRemote|HintWorld|HintAnyPort)<<IPCacheIngressHintShift)
	d.expect("any proto not announced", in, sctp(epC.v4, epA.v4, 3, 9), actShot, RuleDefaultDenyID)
}
