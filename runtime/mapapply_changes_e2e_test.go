package runtime

import (
	"fmt"
	"strings"
	"testing"

	"github.com/polc-dev/polc/runtime/netnstest"
)

// TestMapOnlyApplyCommonChanges: the changes a node agent applies most —
// a pod added (and then attached), relabelled and removed (detached
// first), a policy added and removed, a rule edited — each applied
// map-only (LoadResult.Path), with the verdicts after each. The fourth
// endpoint, pod, is a netns of its own, named to sort after the bound
// ones first; then as a pod sorting before them, which the bundle numbers
// first (renumbering the bound ones): map-only too, the bound endpoints
// keep their indices (keepIndices) and established flows.
func TestMapOnlyApplyCommonChanges(t *testing.T) {
	netnstest.RequireRoot(t)
	h := testHost(t)
	h.ParseObject = nil // the real object
	topo := netnstest.Routed(t, 4)
	for _, ep := range topo.Endpoints {
		netnstest.ServeTCP(t, ep.NS, 8080)
		netnstest.ServeTCP(t, ep.NS, 9090)
	}
	w := &e2eWorld{topo: topo, web: topo.Endpoints[0], api: topo.Endpoints[1], db: topo.Endpoints[2], host: h, name: "changes"}
	pod := topo.Endpoints[3]
	podAddr := netnstest.EndpointV4(3).String() + ", " + netnstest.EndpointV6(3).String()
	// policy returns the base policy with the pod (name, labels; none
	// when name is "") and extra policies
	policy := func(name, labels, extra string) string {
		src := e2ePolicy("", "") + extra
		if name != "" {
			src = fmt.Sprintf("endpoint %s labels(%s) addr %s\n", name, labels, podAddr) + src
		}
		return src
	}
	if _, err := h.Load(w.name, compileBundle(t, policy("", "", ""))); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := h.Unload(w.name); err != nil {
			t.Errorf("unload: %v", err)
		}
	})
	for i, ep := range topo.Endpoints[:3] {
		attachIn(t, h, topo.Host, w.name, ep.HostIf, AttachOptions{TC: true, Endpoint: e2eEndpoints[i]})
	}
	apply := func(what, src, want string) *LoadResult {
		t.Helper()
		res, err := h.Apply(w.name, compileBundle(t, src))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		h.Wait()
		if res.Path != want {
			t.Fatalf("%s: applied %s (%s), want %s", what, res.Path, res.Why, want)
		}
		return res
	}
	base := []flow{{w.web, w.api, "tcp", 8080, true}, {w.web, w.api, "tcp", 9090, false}, {w.db, w.web, "tcp", 8080, true}}

	// a pod with api's labels: web may reach it, it may not reach web
	apply("pod added", policy("zpod", "app=api", ""), PathMapOnly)
	attachIn(t, h, topo.Host, w.name, pod.HostIf, AttachOptions{TC: true, Endpoint: "zpod"})
	w.check(t, "pod added", append(base, flow{w.web, pod, "tcp", 8080, true}, flow{w.web, pod, "tcp", 9090, false}, flow{pod, w.web, "tcp", 8080, false}))

	// relabelled as db: now it may reach web, web may not reach it
	apply("pod relabelled", policy("zpod", "app=db", ""), PathMapOnly)
	w.check(t, "pod relabelled", append(base, flow{w.web, pod, "tcp", 8080, false}, flow{pod, w.web, "tcp", 8080, true}, flow{pod, w.api, "tcp", 8080, false}))

	// a policy added: web accepts api on tcp/9090
	webin := "\npolicy webin {\n  select app=web\n  ingress allow from app=api on tcp/9090\n}\n"
	apply("policy added", policy("zpod", "app=db", webin), PathMapOnly)
	w.check(t, "policy added", append(base, flow{w.api, w.web, "tcp", 9090, true}, flow{pod, w.web, "tcp", 9090, false}))

	// a rule edited: from app=api to app=db
	edited := strings.Replace(webin, "from app=api", "from app=db", 1)
	apply("rule edited", policy("zpod", "app=db", edited), PathMapOnly)
	w.check(t, "rule edited", append(base, flow{w.api, w.web, "tcp", 9090, false}, flow{pod, w.web, "tcp", 9090, true}))

	// a policy removed: db's, so db (and the pod) no longer isolate
	// their ingress: api reaches them on tcp/9090
	noDB := strings.Replace(policy("zpod", "app=db", edited), "policy db {\n  select app=db\n  ingress allow from app=api on tcp/8080\n}\n", "", 1)
	if noDB == policy("zpod", "app=db", edited) {
		t.Fatal("the db policy is not in the source")
	}
	apply("policy removed", noDB, PathMapOnly)
	w.check(t, "policy removed", append(base, flow{w.api, w.db, "tcp", 9090, true}, flow{w.api, pod, "tcp", 9090, true}, flow{w.web, w.db, "tcp", 8080, false}))

	// the pod removed: detached first (as the agent does), then applied
	if err := topo.Host.Do(func() error { _, err := h.Detach(w.name, pod.HostIf, AttachOptions{TC: true}); return err }); err != nil {
		t.Fatal(err)
	}
	apply("pod removed", policy("", "", ""), PathMapOnly)
	w.check(t, "pod removed", append(base, flow{w.api, w.db, "tcp", 9090, false}, flow{w.api, w.db, "tcp", 8080, true}))

	// a pod whose name sorts before the bound ones: the bundle numbers
	// it 1 and every bound endpoint one higher; the runtime keeps theirs
	// and gives the pod a free index. An established connection web → api
	// carries on (its conntrack table stays where it is).
	conn, err := netnstest.DialTCP(w.web.NS, w.api.V4, 8080, trafficTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	b := compileBundle(t, policy("aaa", "app=api", ""))
	if e := b.EndpointNamed("api"); e == nil || e.Index != 2 {
		t.Fatalf("the bundle numbers api %+v, want 2 (after aaa)", e)
	}
	res, err := h.Apply(w.name, b)
	if err != nil {
		t.Fatal(err)
	}
	h.Wait()
	if res.Path != PathMapOnly {
		t.Fatalf("pod sorting first: applied %s (%s), want map-only", res.Path, res.Why)
	}
	if err := netnstest.RoundTrip(conn, []byte("ping\n"), trafficTimeout); err != nil {
		t.Errorf("established web → api after the pod sorting first: %v", err)
	}
	attachIn(t, h, topo.Host, w.name, pod.HostIf, AttachOptions{TC: true, Endpoint: "aaa"})
	sts, err := h.Status(w.name)
	if err != nil || len(sts) != 1 {
		t.Fatal(sts, err)
	}
	idx := map[string]uint32{}
	for _, ep := range []string{"aaa", "api", "db", "web"} {
		if idx[ep], err = endpointIndex(h.pins(w.name), sts[0].Generation, ep); err != nil {
			t.Fatal(err)
		}
	}
	if idx["web"] != 3 || idx["api"] != 1 || idx["db"] != 2 || idx["aaa"] != 4 {
		t.Errorf("endpoint indices %v, want web 3, api 1, db 2 as loaded and aaa 4", idx)
	}
	w.check(t, "pod sorting first", append(base, flow{w.web, pod, "tcp", 8080, true}, flow{pod, w.web, "tcp", 8080, false}, flow{pod, w.db, "tcp", 8080, true}, flow{pod, w.db, "tcp", 9090, false}))

	// and removed again: detached first, then applied without it
	if err := topo.Host.Do(func() error { _, err := h.Detach(w.name, pod.HostIf, AttachOptions{TC: true}); return err }); err != nil {
		t.Fatal(err)
	}
	apply("pod sorting first removed", policy("", "", ""), PathMapOnly)
	w.check(t, "pod sorting first removed", base)
}
