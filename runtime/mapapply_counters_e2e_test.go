package runtime

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/polc-dev/polc/runtime/netnstest"
)

// counterPolicy is the three endpoints of e2ePolicy, with api accepting
// web on the UDP ports of rules, one rule per port, in that order.
func counterPolicy(rules ...int) string {
	addr := func(i int) string {
		return netnstest.EndpointV4(i).String() + ", " + netnstest.EndpointV6(i).String()
	}
	var sb strings.Builder
	for _, port := range rules {
		fmt.Fprintf(&sb, "  ingress allow from app=web on udp/%d\n", port)
	}
	return fmt.Sprintf(`endpoint web labels(app=web) addr %s
endpoint api labels(app=api) addr %s
endpoint db  labels(app=db)  addr %s

policy api {
  select app=api
%s}

policy db {
  select app=db
  ingress allow from app=api on tcp/8080
}
`, addr(0), addr(1), addr(2), sb.String())
}

// TestMapOnlyApplyCounters: rule counters across map-only applies that
// edit a rule (udp/5354 → udp/5355), add one before the others (so every
// kept rule changes id, and the new one takes the id of a rule with
// counts) and remove one, with real traffic: every new UDP flow web → api
// counts one packet at its rule. After each apply, RuleCounts (what
// status --rules and the metrics read) must show exactly the packets
// sent to each rule since it has been the same rule, and a full apply
// after them must carry those counts over. A bundle with more rule ids
// than the loaded counters map has slots is applied in full, and says so.
func TestMapOnlyApplyCounters(t *testing.T) {
	netnstest.RequireRoot(t)
	w := newE2EWorld(t, compileBundle(t, counterPolicy(5353, 5354, 5356)))
	for _, port := range []int{5354, 5355, 5356, 5357} {
		netnstest.ServeUDP(t, w.api.NS, port)
	}
	send := func(port, n int) {
		t.Helper()
		for range n {
			if err := netnstest.UDPEcho(w.web.NS, w.api.V4, port, trafficTimeout); err != nil {
				t.Fatalf("udp web → api:%d: %v", port, err)
			}
		}
	}
	expect := func(what string, want map[int]uint64) {
		t.Helper()
		rcs, err := w.host.RuleCounts(w.name)
		if err != nil {
			t.Fatal(err)
		}
		got := map[int]uint64{}
		for _, r := range rcs {
			var port int
			if _, err := fmt.Sscanf(r.Text, "ingress allow from app=web on udp/%d", &port); err == nil && r.Policy == "api" {
				if _, dup := got[port]; dup {
					t.Fatalf("%s: two rules for udp/%d", what, port)
				}
				got[port] = r.Packets
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: rule packets by port %v, want %v", what, got, want)
		}
	}
	apply := func(what, path string, rules ...int) *LoadResult {
		t.Helper()
		res, err := w.host.Apply(w.name, compileBundle(t, counterPolicy(rules...)))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if res.Path != path {
			t.Fatalf("%s: applied %s (%s), want %s", what, res.Path, res.Why, path)
		}
		w.host.Wait()
		return res
	}

	send(5353, 3)
	send(5354, 2)
	send(5356, 4)
	expect("loaded", map[int]uint64{5353: 3, 5354: 2, 5356: 4})

	// add udp/5357 first (it takes 5353's id), edit 5354 into 5355 (at
	// 5356's old id), remove 5356; 5353 moves to 5354's id
	apply("edit, add and remove", PathMapOnly, 5357, 5353, 5355)
	expect("after the map-only apply", map[int]uint64{5353: 3, 5355: 0, 5357: 0})
	send(5353, 2)
	send(5355, 5)
	send(5357, 1)
	expect("traffic after the map-only apply", map[int]uint64{5353: 5, 5355: 5, 5357: 1})
	if err := netnstest.UDPEcho(w.web.NS, w.api.V4, 5354, 300*time.Millisecond); err == nil {
		t.Errorf("udp/5354 still allowed after the edit")
	}

	// back: 5353 keeps its count at its first id again, 5354 and 5356
	// are new rules (at ids that counted other rules' packets)
	apply("back", PathMapOnly, 5353, 5354, 5356)
	expect("after the second map-only apply", map[int]uint64{5353: 5, 5354: 0, 5356: 0})
	send(5353, 1)
	send(5356, 2)
	expect("traffic after the second map-only apply", map[int]uint64{5353: 6, 5354: 0, 5356: 2})

	// a full apply carries the rebased counts into a new counters map
	w.host.FullApply = true
	apply("full", PathFull, 5356, 5353)
	w.host.FullApply = false
	expect("after the full apply", map[int]uint64{5353: 6, 5356: 2})
	send(5353, 1)
	expect("traffic after the full apply", map[int]uint64{5353: 7, 5356: 2})

	// more rule ids than the loaded counters map has slots: full
	many := []int{5353}
	want := map[int]uint64{5353: 7}
	for port := 6000; port < 6080; port++ {
		many = append(many, port)
		want[port] = 0
	}
	if res := apply("80 more rules", PathFull, many...); !strings.HasPrefix(res.Why, "rule ids up to ") ||
		!strings.HasSuffix(res.Why, "the loaded counters map holds 64") {
		t.Errorf("80 more rules: full because %q", res.Why)
	}
	expect("after 80 more rules", want)
}
