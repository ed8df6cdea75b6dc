package bpf

import (
	"testing"

	"github.com/cilium/ebpf"
)

// A local endpoint whose ingress is isolated, for the split-flow tests.
const idE = 260

var epE = addrs{"10.0.0.5", "fd00::5"}

func setupSplit(d *datapath) {
	setupWorld(d)
	d.host(epE.v4, idE, IPCacheLocal|IPCacheIngressIsolated)
	d.host(epE.v6, idE, IPCacheLocal|IPCacheIngressIsolated)
}

// TestSplitFlow: a packet between two local endpoints that A's egress
// allows and E's ingress denies. A's hook still passes it with its own
// rule, but creates no conntrack entry (the flow was never allowed), so E
// cannot send the "reply" into A's isolated ingress as established. The
// same at an ingress hook whose local remote's egress denies. When both
// hooks allow, the entry is created as before.
func TestSplitFlow(t *testing.T) {
	in, out := ProgEndpointIngress, ProgEndpointEgress
	forFamilies(t, func(t *testing.T, v6 bool) {
		d := loadDatapath(t, testConsts(), nil)
		setupSplit(d)

		syn := tcp(epA.get(v6), epE.get(v6), 40000, 9999, tcpSYN)
		d.expect("A's egress allows", out, syn, actOK, RuleDefaultAllowID)
		d.expect("E's ingress denies", in, syn, actShot, RuleDefaultDenyID)
		if len(d.ctEntries()) != 0 {
			t.Errorf("split flow left conntrack entries %+v", d.ctEntries())
		}
		d.expect("E's reply leaves E", out, syn.reply(tcpSYN|tcpACK), actOK, RuleDefaultAllowID)
		d.expect("E's reply into A's isolated ingress", in, syn.reply(tcpSYN|tcpACK), actShot, RuleDefaultDenyID)
		if len(d.ctEntries()) != 0 {
			t.Errorf("denied reply left conntrack entries %+v", d.ctEntries())
		}
		// a rule that denies at the remote's ingress (B denies C) works the same
		cb := udp(epC.get(v6), epB.get(v6), 5000, 443)
		d.policy(PolicyKey{Subject: idC, Remote: idB, Proto: 17, Flags: PolicyEgress | PolicyAnyPort}, VerdictAllow, 40)
		d.expect("C's egress allows", out, cb, actOK, 40)
		d.expect("B's ingress denies", in, cb, actShot, 25)
		if len(d.ctEntries()) != 0 {
			t.Errorf("split flow left conntrack entries %+v", d.ctEntries())
		}

		// the ingress hook asks the local remote's egress too: C's egress
		// (isolated, tcp/443 only) refuses what A's ingress allows (rule 28)
		ca := tcp(epC.get(v6), epA.get(v6), 5003, 8000, tcpSYN)
		d.expect("A's ingress allows C", in, ca, actOK, 28)
		if len(d.ctEntries()) != 0 {
			t.Errorf("ingress split left conntrack entries %+v", d.ctEntries())
		}
		d.expect("A's answer to C is not established", out, ca.reply(tcpSYN|tcpACK), actOK, RuleDefaultAllowID)
		d.expect("C's egress", out, ca, actShot, RuleDefaultDenyID)

		// both hooks allow: A's egress entry as before
		ok := udp(epA.get(v6), epB.get(v6), 5001, 53)
		d.expect("A's egress allows B", out, ok, actOK, RuleDefaultAllowID)
		if _, found := d.ctEntries()[ctKeyOf(ok, DirEgress)]; !found {
			t.Errorf("no entry for a flow both hooks allow; have %+v", d.ctEntries())
		}
		d.expect("B's reply into A's isolated ingress", in, ok.reply(0), actOK, RuleEstablishedID)
		// a remote that is not local is not asked
		w := udp(epA.get(v6), world.get(v6), 5002, 53)
		d.expect("A's egress to world", out, w, actOK, RuleDefaultAllowID)
		if _, found := d.ctEntries()[ctKeyOf(w, DirEgress)]; !found {
			t.Errorf("no entry for a flow to world")
		}
	})
}

// TestSplitFlowGeneration: after `polc apply` the recheck of a stale entry
// asks the local remote's hook too. A flow A→E allowed by both under
// generation 1:
//   - generation 2 denies it at E's ingress: the recheck at A's ingress (E's
//     reply) still passes A's hook with A's rule, but forgets A's entry, so
//     the next packet from E meets A's isolated ingress policy;
//   - generation 2 isolates A's egress: the recheck at E's egress (E's
//     ingress entry, still allowed by E) forgets E's entry as well.
func TestSplitFlowGeneration(t *testing.T) {
	in, out := ProgEndpointIngress, ProgEndpointEgress
	for _, isolateA := range []bool{false, true} {
		name := "remote-ingress-denies"
		if isolateA {
			name = "subject-egress-denies"
		}
		t.Run(name, func(t *testing.T) {
			forFamilies(t, func(t *testing.T, v6 bool) {
				d1 := loadDatapath(t, testConsts(), nil)
				setupSplit(d1)
				d1.policy(PolicyKey{Subject: idE, Remote: idA, Port: 80, Proto: 6}, VerdictAllow, 41)
				syn := tcp(epA.get(v6), epE.get(v6), 40000, 80, tcpSYN)
				d1.expect("gen1 A's egress", out, syn, actOK, RuleDefaultAllowID)
				d1.expect("gen1 E's ingress", in, syn, actOK, 41)
				if n := len(d1.ctEntries()); n != 2 {
					t.Fatalf("gen1: %d conntrack entries, want 2", n)
				}

				share := map[string]*ebpf.Map{}
				for _, m := range []string{MapIPCache4, MapIPCache6, MapIPCache4LPM, MapIPCache6LPM, MapPolicy, MapPolicyRanges, MapConntrack, MapFrags, MapCounters} {
					share[m] = d1.coll.Maps[m]
				}
				c := testConsts()
				c[ConstGeneration] = 2
				d2 := loadDatapath(t, c, share)
				reply := syn.reply(tcpSYN | tcpACK)
				if !isolateA {
					if err := d2.coll.Maps[MapPolicy].Delete(PolicyKey{Subject: idE, Remote: idA, Port: 80, Proto: 6}); err != nil {
						t.Fatal(err)
					}
					d2.expect("gen2 E's egress recheck denies", out, reply, actShot, RuleDefaultDenyID)
					d2.expect("gen2 A's ingress recheck allows A's flow", in, reply, actOK, RuleDefaultAllowID)
				} else {
					d2.host(epA.get(v6), idA, IPCacheLocal|IPCacheIngressIsolated|IPCacheIngressRanges|IPCacheEgressIsolated|
						(HintAnyRemote|HintWorld|HintAnyPort|HintAnyProto)<<IPCacheIngressHintShift)
					d2.expect("gen2 E's egress recheck allows E's flow", out, reply, actOK, 41)
					d2.expect("gen2 A's ingress recheck denies", in, reply, actShot, RuleDefaultDenyID)
				}
				if len(d2.ctEntries()) != 0 {
					t.Errorf("gen2: recheck kept entries %+v", d2.ctEntries())
				}
				ack := syn.reply(tcpACK)
				d2.expect("gen2 next packet from E leaves E by policy", out, ack, actOK, RuleDefaultAllowID)
				d2.expect("gen2 next packet from E meets A's isolated ingress", in, ack, actShot, RuleDefaultDenyID)
			})
		})
	}
}
