package eval

import (
	"testing"

	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
)

// TestRemoteEndpoints: with db remote (another node's), a packet between
// db and a local endpoint is decided at the local hook alone; db's own
// policy is never asked (it is never a subject); selectors match db as a
// peer and world does not; a packet between db and another remote or the
// world meets no hook (Elsewhere, and is not dropped even malformed); a
// packet via db is unbound; conntrack is this node's: a flow that web's egress allows is tracked whatever db's
// node decides.
func TestRemoteEndpoints(t *testing.T) {
	b := fixture()
	b.p.Endpoints[1].Remote = true // db
	b.p.Endpoints[2].Remote = true // lab
	b.policy("web", sel(eq("app", "web")),
		outAllow(peers(selPeer(eq("app", "db"))), tcp(5432, 5432)), // 0
		outDeny(peers(world)),                 // 1
		outAllow(peers(anyPeer), tcp(80, 80)), // 2
	)
	b.policy("db", sel(eq("app", "db")), inAllow(peers(selPeer(eq("app", "api"))), tcp(5432, 5432))) // 3
	e := b.eval()

	res := e.Eval(nil, syn(webIP, 1, dbIP, 5432))
	check(t, "web -> db:5432", res, allowBy(0))
	checkPoints(t, "web -> db:5432", res, allowBy(0)) // web's egress only: db's ingress would deny web
	if res.Points[0].Subject.Name != "web" || res.Points[0].Dir != dsl.Egress {
		t.Errorf("web -> db: point %s", res.Points[0])
	}
	res = e.Eval(nil, syn(webIP, 1, dbIP, 80))
	check(t, "web -> db:80, world rules do not reach db", res, allowBy(2))

	res = e.Eval(nil, syn(dbIP, 1, webIP, 9))
	checkPoints(t, "db -> web", res, allowDefault) // web's ingress only, open
	if res.Points[0].Subject.Name != "web" || res.Points[0].Dir != dsl.Ingress {
		t.Errorf("db -> web: point %s", res.Points[0])
	}
	res = e.Eval(nil, syn(dbIP, 1, apiIP, 5432))
	checkPoints(t, "db -> api", res, allowDefault)

	for _, p := range []Packet{syn(dbIP, 1, "10.0.4.7", 80), syn(dbIP, 1, worldIP, 80), syn(worldIP, 1, dbIP, 5432)} {
		res := e.Eval(nil, p)
		if len(res.Points) != 0 || !e.Elsewhere(p.Src, p.Dst) {
			t.Errorf("%s -> %s: points %s, elsewhere %v", p.Src, p.Dst, res, e.Elsewhere(p.Src, p.Dst))
		}
		p.Malformed = true
		check(t, "malformed, elsewhere", e.Eval(nil, p), allowDefault)
	}
	if e.Elsewhere(netipAddr(webIP), netipAddr(dbIP)) || e.Elsewhere(netipAddr(worldIP), netipAddr(worldIP)) {
		t.Error("Elsewhere on a packet with a local end, or between world addresses")
	}
	if !e.HasRemote(netipAddr(webIP), netipAddr(dbIP)) || e.HasRemote(netipAddr(webIP), netipAddr(apiIP)) {
		t.Error("HasRemote")
	}
	if r := e.Resolve(netipAddr(dbIP)); r.Kind != ResolvedEndpoint || r.String() != "remote endpoint db" {
		t.Errorf("resolve db: %s", r)
	}

	via := syn(dbIP, 1, webIP, 80)
	via.Via = "db"
	check(t, "via a remote endpoint", e.Eval(nil, via), want{dsl.VerdictDeny, ir.RuleUnbound})

	ct := NewConntrack()
	e.Eval(ct, syn(webIP, 1, dbIP, 5432))
	check(t, "db's reply, tracked at web", e.Eval(ct, reply(syn(webIP, 1, dbIP, 5432))), established)
}
