package lower

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

func TestIPCacheQuickstart(t *testing.T) {
	diffLines(t, "ipcache", ipcacheLines(mustBuild(t, quickstart())), []string{
		"10.0.1.10 web local",
		"10.0.2.10 api local,ingress-isolated,egress-isolated,ingress-hints=anyport+anyproto,egress-hints=world",
		"10.0.3.10 db local,ingress-isolated",
		"fd00::10 web local",
		"fd00::20 api local,ingress-isolated,egress-isolated,ingress-hints=anyport+anyproto,egress-hints=world",
		// nested rule prefixes: the /32 carries both
		"192.0.2.0/24 cidr 192.0.2.0/24",
		"192.0.2.66 cidr 192.0.2.0/24 + 192.0.2.66/32",
		// the except hole resolves to what is outside the CIDR: world
		"198.51.100.0/24 cidr 198.51.100.0/24 except 198.51.100.128/25",
		"198.51.100.128/25 world",
	})
}

// An except inside a nested prefix resolves to the next-outer prefix's
// identity, not to world; an endpoint inside a rule CIDR carries it; a
// rule prefix inside an endpoint's prefix is still that endpoint's.
func TestIPCacheNestedExcepts(t *testing.T) {
	prog := program(
		[]*ir.Endpoint{
			ep("in", "app=x", "10.1.2.3"),
			ep("hole", "app=x", "10.1.9.9"),
			ep("net", "app=n", "10.7.0.0/24"),
		},
		[]policySpec{{name: "p", subject: sel("app=x"), rules: []ruleSpec{
			in(dsl.Allow, peers(peerCIDR("10.0.0.0/8"))),
			in(dsl.Allow, peers(peerCIDR("10.1.0.0/16", "10.1.9.0/24"))),
			in(dsl.Deny, peers(peerCIDR("10.7.0.128/25"))),
		}}},
	)
	diffLines(t, "ipcache", ipcacheLines(mustBuild(t, prog)), []string{
		"10.0.0.0/8 cidr 10.0.0.0/8",
		"10.1.0.0/16 cidr 10.0.0.0/8 + 10.1.0.0/16 except 10.1.9.0/24",
		"10.1.9.0/24 cidr 10.0.0.0/8",
		"10.1.2.3 in in cidr 10.0.0.0/8 + 10.1.0.0/16 except 10.1.9.0/24 local,ingress-isolated,ingress-hints=anyport+anyproto",
		"10.1.9.9 hole in cidr 10.0.0.0/8 local,ingress-isolated,ingress-hints=anyport+anyproto",
		"10.7.0.0/24 net in cidr 10.0.0.0/8 local",
		"10.7.0.128/25 net in cidr 10.0.0.0/8 + 10.7.0.128/25 local",
	})
}

func TestIPCacheRangesFlag(t *testing.T) {
	prog := program(
		[]*ir.Endpoint{ep("a", "app=a", "10.0.0.1")},
		[]policySpec{{name: "p", subject: sel("app=a"), rules: []ruleSpec{
			out(dsl.Allow, peers(peerAny), tcp(1024, 65535)),
			in(dsl.Allow, peers(peerAny), tcp(1, 16)),
		}}},
	)
	diffLines(t, "ipcache", ipcacheLines(mustBuild(t, prog)), []string{
		"10.0.0.1 a local,ingress-isolated,egress-isolated,egress-ranges,ingress-hints=any,egress-hints=any",
	})
}

// Every address carries the index of the endpoint that owns it (for the
// interface binding), also where the class alone would not need an entry:
// an endpoint inside another's prefix with the same labels, and a rule
// prefix inside an endpoint's prefix.
func TestIPCacheEndpoints(t *testing.T) {
	prog := program(
		[]*ir.Endpoint{
			ep("a-net", "app=x", "10.1.0.0/24", "fd00::/120"),
			ep("b-host", "app=x", "10.1.0.5", "fd00::5"),
			ep("c", "app=c", "10.2.0.1"),
		},
		[]policySpec{{name: "p", subject: sel("app=c"), rules: []ruleSpec{
			in(dsl.Allow, peers(peerCIDR("10.1.0.128/25"))),
		}}},
	)
	b := mustBuild(t, prog)
	got := map[string]uint32{}
	for _, r := range b.Decode().IPCache {
		got[r.Prefix] = r.Endpoint
	}
	want := map[string]uint32{
		"10.1.0.0/24": 1, "fd00::/120": 1, "10.1.0.128/25": 1,
		"10.1.0.5": 2, "fd00::5": 2,
		"10.2.0.1": 3,
	}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s: endpoint %d, want %d", p, got[p], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("ipcache has %d entries, want %d: %v", len(got), len(want), got)
	}
	wantEPs := []bundle.Endpoint{
		{Index: 1, Name: "a-net", Addrs: []string{"10.1.0.0/24", "fd00::/120"}},
		{Index: 2, Name: "b-host", Addrs: []string{"10.1.0.5", "fd00::5"}},
		{Index: 3, Name: "c", Addrs: []string{"10.2.0.1"}},
	}
	if diff := cmp.Diff(wantEPs, b.Endpoints); diff != "" {
		t.Errorf("endpoints (-want +got):\n%s", diff)
	}
}
