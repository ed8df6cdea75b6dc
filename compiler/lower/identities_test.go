package lower

import (
	"testing"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

func identityOf(t *testing.T, b *bundle.Bundle, endpoint string) []uint32 {
	t.Helper()
	var out []uint32
	for _, id := range b.Identities {
		for _, e := range id.Endpoints {
			if e == endpoint {
				out = append(out, id.ID)
			}
		}
	}
	return out
}

// Endpoints with the same labels share an identity unless a rule's CIDR
// contains one and not the other.
func TestIdentitiesSplitByCIDRMembership(t *testing.T) {
	prog := program(
		[]*ir.Endpoint{
			ep("web1", "app=web", "10.0.1.10"),
			ep("web2", "app=web", "192.168.0.5"),
			ep("web3", "app=web", "192.168.0.6"),
			ep("bare", ""), // no labels, no addresses
			ep("nolabels", "", "172.16.0.1"),
		},
		[]policySpec{{name: "p", subject: sel("app=api"), rules: []ruleSpec{
			in(dsl.Allow, peers(peerCIDR("10.0.0.0/8"))),
		}}},
	)
	b := mustBuild(t, prog)
	w1, w2, w3 := identityOf(t, b, "web1"), identityOf(t, b, "web2"), identityOf(t, b, "web3")
	if len(w1) != 1 || len(w2) != 1 || w1[0] == w2[0] || w2[0] != w3[0] {
		t.Errorf("identities web1 %v web2 %v web3 %v: want web1 apart, web2 = web3", w1, w2, w3)
	}
	names := idNames(b)
	if got := names[w1[0]]; got != "web1 in cidr 10.0.0.0/8" {
		t.Errorf("web1's identity is %q", got)
	}
	if n := identityOf(t, b, "nolabels"); len(n) != 1 || n[0] == bpf.IdentityWorld {
		t.Errorf("an endpoint without labels has identity %v, want its own", n)
	}
	if b.Identities[0].ID != bpf.IdentityWorld || b.Identities[0].Kind != bundle.IdentityWorld {
		t.Errorf("first identity %+v, want world", b.Identities[0])
	}
	for _, id := range b.Identities[1:] {
		if id.ID < bpf.FirstIdentity || id.ID >= bpf.FirstIdentity+identitySpace {
			t.Errorf("identity %d outside the compiler's range", id.ID)
		}
	}
}

// An endpoint with two addresses, one inside a rule CIDR, has two
// identities, and both carry its subject entries.
func TestIdentitiesPerAddress(t *testing.T) {
	prog := program(
		[]*ir.Endpoint{
			ep("a", "app=a", "10.0.0.1", "fd00::1"),
			ep("b", "app=b", "10.0.0.2"),
		},
		[]policySpec{{name: "p", subject: sel("app=a"), rules: []ruleSpec{
			in(dsl.Allow, peers(peerCIDR("fd00::/64")), tcp(80, 80)),
			in(dsl.Allow, peers(peerSel("app=b")), tcp(443, 443)),
		}}},
	)
	b := mustBuild(t, prog)
	diffLines(t, "policy", policyLines(b), []string{
		"a ingress a in cidr fd00::/64 tcp 80 allow 16",
		"a ingress b tcp 443 allow 17",
		"a in cidr fd00::/64 ingress a in cidr fd00::/64 tcp 80 allow 16",
		"a in cidr fd00::/64 ingress b tcp 443 allow 17",
		"a ingress cidr fd00::/64 tcp 80 allow 16",
		"a in cidr fd00::/64 ingress cidr fd00::/64 tcp 80 allow 16",
	})
}

// Identities depend only on what they describe: adding, removing and
// reordering unrelated declarations leaves them alone.
func TestIdentitiesStable(t *testing.T) {
	base := quickstart()
	b1 := mustBuild(t, base)

	eps := append([]*ir.Endpoint{ep("zz", "app=zz", "10.9.9.9"), ep("aa", "app=aa", "10.8.8.8")}, base.Endpoints...)
	pols := []policySpec{
		{name: "0-first", subject: sel("app=aa"), rules: []ruleSpec{in(dsl.Deny, peers(peerCIDR("172.16.0.0/12")))}},
		{name: "api-in", subject: sel("app=api"), rules: []ruleSpec{
			out(dsl.Allow, peers(peerWorld), udp(53, 53)),
			in(dsl.Allow, peers(peerSel("app=web")), tcp(8080, 8080)),
			in(dsl.Deny, peers(peerCIDR("192.0.2.66/32"))),
			out(dsl.Allow, peers(peerSel("app=db")), tcp(5432, 5432)),
			in(dsl.Allow, peers(peerCIDR("192.0.2.0/24"), peerCIDR("198.51.100.0/24", "198.51.100.128/25")), tcp(8080, 8090)),
		}},
		{name: "db-in", subject: sel("app=db"), rules: []ruleSpec{
			in(dsl.Allow, peers(peerSel("app=api,tier=backend")), tcp(5432, 5432)),
		}},
	}
	b2 := mustBuild(t, program(eps, pols))
	before, after := map[string]uint32{}, map[string]uint32{}
	for _, id := range b1.Identities {
		before[idNames(b1)[id.ID]] = id.ID
	}
	for _, id := range b2.Identities {
		after[idNames(b2)[id.ID]] = id.ID
	}
	for name, id := range before {
		if after[name] != id {
			t.Errorf("identity of %q changed from %d to %d", name, id, after[name])
		}
	}
}
