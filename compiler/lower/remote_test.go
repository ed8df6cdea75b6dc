package lower

import (
	"testing"

	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

func remote(e *ir.Endpoint) *ir.Endpoint { e.Remote = true; return e }

// TestRemoteEndpoints: a remote endpoint's addresses are in the ipcache
// with its identity (shared with local endpoints of the same labels) and
// only the remote-endpoint flag: not local, not isolated, no endpoint
// index; endpoints.json lists the local endpoints alone, numbered from 1
// among themselves; a label set of remote endpoints only gets no policy
// entries of its own, but is a remote identity of selector peers; world
// entries stay world entries.
func TestRemoteEndpoints(t *testing.T) {
	prog := program(
		[]*ir.Endpoint{
			remote(ep("a-api", "app=api", "10.0.1.1")), // sorts first: indices skip it
			ep("b-api", "app=api", "10.0.0.2"),
			remote(ep("db", "app=db", "10.0.1.3")),
			ep("web", "app=web", "10.0.0.1"),
		},
		[]policySpec{
			{name: "api-in", subject: sel("app=api"), rules: []ruleSpec{in(dsl.Allow, peers(peerSel("app=web")), tcp(80, 80))}},
			{name: "db-in", subject: sel("app=db"), rules: []ruleSpec{in(dsl.Allow, peers(peerSel("app=api")), tcp(5432, 5432))}},
			{name: "web-out", subject: sel("app=web"), rules: []ruleSpec{
				out(dsl.Allow, peers(peerSel("app=db")), tcp(5432, 5432)),
				out(dsl.Deny, peers(peerWorld)),
			}},
		},
	)
	b := mustBuild(t, prog)
	diffLines(t, "ipcache", ipcacheLines(b), []string{
		"10.0.0.1 web local,egress-isolated,egress-hints=world+anyport+anyproto",
		"10.0.0.2 b-api in remote a-api local,ingress-isolated",
		"10.0.1.1 b-api in remote a-api remote-endpoint",
		"10.0.1.3 remote db remote-endpoint",
	})
	for _, r := range b.Decode().IPCache {
		want := map[string]uint32{"10.0.0.1": 2, "10.0.0.2": 1}[r.Prefix]
		if r.Endpoint != want {
			t.Errorf("ipcache %s: endpoint index %d, want %d", r.Prefix, r.Endpoint, want)
		}
	}
	want := []bundle.Endpoint{{Index: 1, Name: "b-api", Addrs: []string{"10.0.0.2"}}, {Index: 2, Name: "web", Addrs: []string{"10.0.0.1"}}}
	if len(b.Endpoints) != len(want) || b.Endpoints[0].Name != want[0].Name || b.Endpoints[0].Index != 1 ||
		b.Endpoints[1].Name != want[1].Name || b.Endpoints[1].Index != 2 {
		t.Errorf("endpoints.json: %+v, want %+v", b.Endpoints, want)
	}
	diffLines(t, "policy", policyLines(b), []string{
		"b-api in remote a-api ingress web tcp 80 allow 16",
		"web egress remote db tcp 5432 allow 18",
		"web egress world any * deny 19",
	})
}
