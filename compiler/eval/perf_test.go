package eval

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// bigProgram generates 200 policies over 500 endpoints, five rules each.
func bigProgram() *builder {
	r := rand.New(rand.NewPCG(1, 2))
	var eps []*ir.Endpoint
	for i := range 500 {
		eps = append(eps, endpoint(fmt.Sprintf("ep%03d", i),
			labels("app", fmt.Sprintf("app%d", i%40), "team", fmt.Sprintf("t%d", i%7)),
			fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), fmt.Sprintf("fd00::1:%x", i+1)))
	}
	b := newBuilder(eps...)
	for i := range 200 {
		var rules []ir.Rule
		for range 5 {
			var peer ir.Peer
			switch r.IntN(4) {
			case 0:
				peer = selPeer(eq("app", fmt.Sprintf("app%d", r.IntN(40))))
			case 1:
				peer = cidr(fmt.Sprintf("10.%d.0.0/16", r.IntN(4)), fmt.Sprintf("10.%d.%d.0/24", r.IntN(4), r.IntN(4)))
			case 2:
				peer = world
			default:
				peer = selPeer(req("team", dsl.OpIn, "t1", "t2"))
			}
			lo := uint16(r.IntN(1000))
			port := tcp(lo, lo+uint16(r.IntN(10)))
			act := dsl.Allow
			if r.IntN(10) == 0 {
				act = dsl.Deny
			}
			rules = append(rules, rule(dsl.Direction(r.IntN(2)), act, peers(peer), port))
		}
		b.policy(fmt.Sprintf("p%03d", i), sel(eq("app", fmt.Sprintf("app%d", i%40))), rules...)
	}
	return b
}

func bigPackets(n int) []Packet {
	r := rand.New(rand.NewPCG(3, 4))
	addr := func() netip.Addr {
		if r.IntN(5) == 0 {
			return netip.AddrFrom4([4]byte{byte(r.IntN(4) + 9), byte(r.IntN(4)), byte(r.IntN(4)), 1})
		}
		i := r.IntN(500)
		return netip.AddrFrom4([4]byte{10, 1, byte(i / 250), byte(i%250 + 1)})
	}
	ps := make([]Packet, n)
	for i := range ps {
		ps[i] = Packet{Proto: ir.ProtoTCP, Src: addr(), Dst: addr(), SPort: uint16(30000 + r.IntN(1000)),
			DPort: uint16(r.IntN(1010)), TCPFlags: ir.TCPSyn}
	}
	return ps
}

// TestScale checks the evaluator is fast enough for differential testing:
// 20 000 packets over 200 policies in well under a second.
func TestScale(t *testing.T) {
	e := bigProgram().eval()
	ps := bigPackets(20000)
	ct := NewConntrack()
	start := time.Now()
	var allowed int
	for _, p := range ps {
		if e.Eval(ct, p).Verdict == dsl.VerdictAllow {
			allowed++
		}
	}
	d := time.Since(start)
	t.Logf("20000 packets in %v, %d allowed, %d flows", d, allowed, ct.Len())
	if allowed == 0 || allowed == len(ps) {
		t.Errorf("degenerate workload: %d of %d allowed", allowed, len(ps))
	}
	if d > 2*time.Second && !raceEnabled {
		t.Errorf("too slow: %v", d)
	}
}

func BenchmarkEval(b *testing.B) {
	e := bigProgram().eval()
	ps := bigPackets(1024)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		e.Eval(nil, ps[i%len(ps)])
	}
}

// naiveDecide is the decision at one point written as plainly as possible,
// scanning every policy and rule of the program: it checks the
// Evaluator's indexes.
func naiveDecide(p *ir.Program, subj *ir.Endpoint, dir dsl.Direction, remote netip.Addr, pk Packet) (dsl.Verdict, ir.RuleID) {
	var owner *ir.Endpoint
	bits := -1
	for _, ep := range p.Endpoints {
		for _, a := range ep.Addrs {
			if a.Contains(remote) && a.Bits() > bits {
				owner, bits = ep, a.Bits()
			}
		}
	}
	isolated := false
	minDeny, minAllow := ir.RuleID(0), ir.RuleID(0)
	for _, pol := range p.Policies {
		if !pol.Subject.Matches(subj.Labels) {
			continue
		}
		isolated = isolated || pol.Isolates[dir]
		for _, id := range pol.Rules {
			r := p.Rules[id-ir.FirstRuleID] // the IR's numbering contract
			if r.Dir != dir {
				continue
			}
			peerOK, portOK := false, false
			for _, peer := range r.Peers {
				switch peer.Kind {
				case ir.PeerAny:
					peerOK = true
				case ir.PeerWorld:
					peerOK = peerOK || owner == nil
				case ir.PeerSelector:
					peerOK = peerOK || owner != nil && peer.Selector.Matches(owner.Labels)
				case ir.PeerCIDR:
					in := peer.CIDR.Contains(remote)
					for _, x := range peer.Except {
						in = in && !x.Contains(remote)
					}
					peerOK = peerOK || in
				}
			}
			for _, m := range r.Ports {
				portOK = portOK || m.Proto == ir.ProtoAny || m.Proto == pk.Proto && m.Lo <= pk.DPort && pk.DPort <= m.Hi
			}
			if !peerOK || !portOK {
				continue
			}
			if r.Action == dsl.Deny && (minDeny == 0 || r.ID < minDeny) {
				minDeny = r.ID
			}
			if r.Action == dsl.Allow && (minAllow == 0 || r.ID < minAllow) {
				minAllow = r.ID
			}
		}
	}
	switch {
	case !isolated:
		return dsl.VerdictAllow, ir.RuleDefaultAllow
	case minDeny != 0:
		return dsl.VerdictDeny, minDeny
	case minAllow != 0:
		return dsl.VerdictAllow, minAllow
	}
	return dsl.VerdictDeny, ir.RuleDefaultDeny
}

func TestIndexesAgainstNaive(t *testing.T) {
	b := bigProgram()
	e := b.eval()
	for i, pk := range bigPackets(1000) {
		if i%3 == 1 {
			pk.Proto = ir.ProtoUDP
		}
		res := e.Eval(nil, pk)
		for _, pt := range res.Points {
			v, r := naiveDecide(b.p, pt.Subject, pt.Dir, pt.Remote, pk)
			if v != pt.Verdict || r != pt.Rule {
				t.Fatalf("packet %d %v: %s; naive: %s (%s)", i, pk, pt, v, ruleName(r))
			}
		}
	}
}
