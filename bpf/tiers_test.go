package bpf

import (
	"encoding/binary"
	"testing"
)

// TestTierSlots checks polc_policy_ask's two-slot decision on values
// written by hand the way the compiler lowers tiered policy (docs/
// datapath.md, "The value: two slots"): per slot the hit of lowest order
// over all probes, then the admin slot unless empty or pass, the main slot
// unless empty or pass, the default. A is ingress-isolated (an untiered
// policy); B is open (its main slot holds baseline rules).
func TestTierSlots(t *testing.T) {
	for _, hints := range []bool{false, true} {
		c := testConsts()
		if hints {
			c[ConstPolicyHints] = 1
		}
		d := loadDatapath(t, c, nil)
		setupWorld(d)
		put := func(k PolicyKey, v PolicyValue) {
			t.Helper()
			if err := d.coll.Maps[MapPolicy].Put(k, v); err != nil {
				t.Fatal(err)
			}
		}
		untiered := func(verdict uint8, rule uint32) PolicyValue {
			return PolicyValue{Verdict: verdict, Rule: rule, Order: OrderUntiered(verdict, rule)}
		}
		admin := func(v PolicyValue, verdict uint8, rule, rank uint32) PolicyValue {
			v.AdminVerdict, v.AdminRule, v.AdminOrder = verdict, rule, rank
			return v
		}
		baseline := func(verdict uint8, rule, rank uint32) PolicyValue {
			return PolicyValue{Verdict: verdict, Rule: rule, Order: rank, Tier: TierBaseline}
		}
		any := PolicyAnyPort
		// A (isolated): B's tcp/80 is untiered allow 16 (setupWorld)
		put(PolicyKey{Subject: idA, Remote: idB, Port: 80, Proto: 6}, admin(untiered(VerdictAllow, 16), VerdictDeny, 100, 3))
		put(PolicyKey{Subject: idA, Remote: idB, Port: 81, Proto: 6}, admin(untiered(VerdictDeny, 40), VerdictAllow, 101, 4))
		put(PolicyKey{Subject: idA, Remote: idB, Port: 82, Proto: 6}, admin(untiered(VerdictAllow, 41), VerdictPass, 102, 5))
		put(PolicyKey{Subject: idA, Remote: idB, Port: 83, Proto: 6}, admin(PolicyValue{}, VerdictPass, 103, 6))
		// overlapping classes: pass for any remote (rank 1) over deny for B (rank 2)
		put(PolicyKey{Subject: idA, Remote: IdentityAny, Port: 84, Proto: 6}, admin(PolicyValue{}, VerdictPass, 104, 1))
		put(PolicyKey{Subject: idA, Remote: idB, Port: 84, Proto: 6}, admin(untiered(VerdictAllow, 42), VerdictDeny, 105, 2))
		// and the other way round: deny for B of rank 1 over pass for any of rank 2
		put(PolicyKey{Subject: idA, Remote: IdentityAny, Port: 85, Proto: 6}, admin(PolicyValue{}, VerdictPass, 106, 2))
		put(PolicyKey{Subject: idA, Remote: idB, Port: 85, Proto: 6}, admin(untiered(VerdictAllow, 43), VerdictDeny, 107, 1))
		// main slot across classes: an any-port deny (order 44) beats an exact allow
		put(PolicyKey{Subject: idA, Remote: idC, Port: 86, Proto: 6}, untiered(VerdictAllow, 45))
		put(PolicyKey{Subject: idA, Remote: idC, Proto: 6, Flags: any}, untiered(VerdictDeny, 44))
		// B (open): baseline in the main slot
		put(PolicyKey{Subject: idB, Remote: idA, Port: 90, Proto: 6}, baseline(VerdictDeny, 50, 2))
		put(PolicyKey{Subject: idB, Remote: IdentityAny, Port: 90, Proto: 6}, baseline(VerdictAllow, 51, 3))
		put(PolicyKey{Subject: idB, Remote: idA, Port: 91, Proto: 6}, baseline(VerdictDeny, 52, 2))
		put(PolicyKey{Subject: idB, Remote: IdentityAny, Port: 91, Proto: 6}, baseline(VerdictPass, 53, 1))
		put(PolicyKey{Subject: idB, Remote: idA, Port: 92, Proto: 6}, admin(baseline(VerdictDeny, 54, 4), VerdictPass, 108, 7))
		put(PolicyKey{Subject: idB, Remote: idA, Port: 93, Proto: 6}, admin(PolicyValue{}, VerdictPass, 109, 8))
		put(PolicyKey{Subject: idB, Remote: idA, Port: 94, Proto: 6}, admin(PolicyValue{}, VerdictDeny, 110, 9))
		// an admin range over an untiered exact entry
		rk := PolicyRangeKey{Prefixlen: PolicyRangeKeyFixedBits + 8, Proto: 6}
		binary.BigEndian.PutUint32(rk.Subject[:], idA)
		binary.BigEndian.PutUint32(rk.Remote[:], idB)
		binary.BigEndian.PutUint16(rk.Port[:], 0x1000)
		if err := d.coll.Maps[MapPolicyRanges].Put(rk, admin(PolicyValue{}, VerdictDeny, 111, 10)); err != nil {
			t.Fatal(err)
		}
		put(PolicyKey{Subject: idA, Remote: idB, Port: 0x1010, Proto: 6}, untiered(VerdictAllow, 46))
		hintsB := (HintAnyRemote | HintAnyProto) << IPCacheIngressHintShift
		d.host(epB.v4, idB, IPCacheLocal|hintsB)

		in := ProgEndpointIngress
		for _, c := range []struct {
			name string
			pkt  testPacket
			act  uint32
			rule uint32
		}{
			{"admin deny over untiered allow", tcp(epB.v4, epA.v4, 1, 80, tcpSYN), actShot, 100},
			{"admin allow over untiered deny", tcp(epB.v4, epA.v4, 2, 81, tcpSYN), actOK, 101},
			{"admin pass, untiered allow", tcp(epB.v4, epA.v4, 3, 82, tcpSYN), actOK, 41},
			{"admin pass, isolated: default deny", tcp(epB.v4, epA.v4, 4, 83, tcpSYN), actShot, RuleDefaultDenyID},
			{"pass of rank 1 for any remote over deny of rank 2", tcp(epB.v4, epA.v4, 5, 84, tcpSYN), actOK, 42},
			{"deny of rank 1 over pass of rank 2 for any remote", tcp(epB.v4, epA.v4, 6, 85, tcpSYN), actShot, 107},
			{"untiered deny of another class beats allow", tcp(epC.v4, epA.v4, 7, 86, tcpSYN), actShot, 44},
			{"baseline: lowest rank across classes", tcp(epA.v4, epB.v4, 8, 90, tcpSYN), actShot, 50},
			{"baseline pass of rank 1: default allow", tcp(epA.v4, epB.v4, 9, 91, tcpSYN), actOK, RuleDefaultAllowID},
			{"admin pass to baseline", tcp(epA.v4, epB.v4, 10, 92, tcpSYN), actShot, 54},
			{"admin pass, open: default allow", tcp(epA.v4, epB.v4, 11, 93, tcpSYN), actOK, RuleDefaultAllowID},
			{"admin deny on an open subject", tcp(epA.v4, epB.v4, 12, 94, tcpSYN), actShot, 110},
			{"admin range over untiered exact", tcp(epB.v4, epA.v4, 13, 0x1010, tcpSYN), actShot, 111},
		} {
			act, rule := d.decide(in, c.pkt.bytes())
			if act != c.act || rule != c.rule {
				t.Errorf("hints %v: %s: action %d rule %d, want %d rule %d", hints, c.name, act, rule, c.act, c.rule)
			}
		}
	}
}
