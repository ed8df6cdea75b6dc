package lower

import (
	"fmt"
	"math/rand/v2"
	"net/netip"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// generateProgram makes a synthetic program of about nRules rules over
// nEndpoints endpoints, shaped like a microservice cluster: apps of ~10
// endpoints in three environments, one policy per (app, env) slice with
// ~10 rules, peers mostly app selectors, some external CIDRs (with
// excepts), a few CIDRs over endpoint addresses, world and any; ports
// mostly single, some ranges and ICMP. Deterministic for a seed.
func generateProgram(nRules, nEndpoints int, seed uint64) *ir.Program {
	r := rand.New(rand.NewPCG(seed, 1))
	apps := max(1, nEndpoints/10)
	envs := []string{"dev", "prod", "stage"}
	var eps []*ir.Endpoint
	for i := range nEndpoints {
		n := i + 256
		addrs := []string{fmt.Sprintf("10.%d.%d.%d", n>>16&255, n>>8&255, n&255)}
		if i%4 == 0 {
			addrs = append(addrs, fmt.Sprintf("fd00::%x", n))
		}
		eps = append(eps, ep(fmt.Sprintf("ep%05d", i), fmt.Sprintf("app=a%d,env=%s", i%apps, envs[(i/apps)%3]), addrs...))
	}
	ports := []uint16{22, 53, 80, 443, 3306, 5432, 6379, 8080, 8443, 9090, 9200, 11211, 15000, 27017}
	app := func() string { return fmt.Sprintf("a%d", r.IntN(apps)) }
	var pols []policySpec
	for p := 0; p*10 < nRules; p++ {
		ps := policySpec{name: fmt.Sprintf("pol%05d", p), subject: sel(fmt.Sprintf("app=a%d,env=%s", p%apps, envs[(p/apps)%3]))}
		for range min(10, nRules-p*10) {
			port := ports[r.IntN(len(ports))]
			var rs ruleSpec
			switch x := r.IntN(100); {
			case x < 50:
				rs = in(dsl.Allow, peers(peerSel("app="+app()+",env="+envs[r.IntN(3)])), tcp(port, port))
			case x < 55: // 5%: a port range
				rs = in(dsl.Allow, peers(peerSel("app="+app())), tcp(8000, 8099))
			case x < 65:
				m := r.IntN(4096)
				rs = out(dsl.Allow, peers(peerCIDR(fmt.Sprintf("172.%d.%d.0/24", 16+m/256, m%256))), tcp(443, 443))
			case x < 70:
				m := r.IntN(256)
				rs = in(dsl.Deny, peers(peerCIDR(fmt.Sprintf("198.18.%d.0/24", m), fmt.Sprintf("198.18.%d.128/26", m))))
			case x < 75:
				rs = out(dsl.Allow, peers(peerWorld), udp(53, 53))
			case x < 80:
				rs = out(dsl.Allow, peers(peerAny), icmp(8, -1))
			case x < 81:
				m := r.IntN(max(1, nEndpoints/16))
				n := m*16 + 256
				rs = in(dsl.Allow, peers(peerCIDR(fmt.Sprintf("10.%d.%d.%d/28", n>>16&255, n>>8&255, n&255))), tcp(22, 22))
			case x < 85:
				rs = in(dsl.Deny, peers(peerSel("app="+app())), tcp(port, port))
			default:
				rs = out(dsl.Allow, peers(peerSel("app="+app())), tcp(port, port))
			}
			ps.rules = append(ps.rules, rs)
		}
		pols = append(pols, ps)
	}
	prog := program(eps, pols)
	prog.Prefilter = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
	return prog
}
