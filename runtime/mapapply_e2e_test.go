package runtime

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/polc-dev/polc/runtime/netnstest"
)

// podPolicy is e2ePolicy with api labelled apiLabels and one endpoint
// per pod (pod-NNN, sorted after web, api and db so they keep their
// indices), labelled app=api and a pod label of its own: each is another
// identity web may reach, so adding or removing one changes ipcache and
// policy entries.
func podPolicy(apiLabels string, pods []int) string {
	src := e2ePolicy("", "")
	// a rule on tier=b, so that api's tier decides its identity
	src = strings.Replace(src, "  ingress allow from app=api on tcp/8080\n}", "  ingress allow from app=api on tcp/8080\n  ingress allow from tier=b on tcp/7777\n}", 1)
	src = strings.Replace(src, "endpoint api labels(app=api)", "endpoint api labels("+apiLabels+")", 1)
	var sb strings.Builder
	for _, p := range pods {
		fmt.Fprintf(&sb, "endpoint zpod-%03d labels(app=api, pod=p%d) addr 10.201.%d.%d, fd00:201:200::%x\n", p, p, 200+p/250, p%250+1, p)
	}
	return sb.String() + src
}

// TestE2EMapOnlyApply: 200 single-pod changes, each applied map-only,
// under traffic. Every other change relabels api (app=api,tier=a ↔
// app=api,tier=b, which a rule of db names): api's identity changes, so its ipcache entry and every
// policy entry about it (web's egress to it, its own ingress) change
// together, and a packet that saw one map of the new policy with another
// of the old would be dropped (web's isolated egress has no entry for the
// identity). The other changes add or remove a pod. While they run, web
// opens a new UDP flow to api every few milliseconds and keeps an
// established TCP connection to api busy: no attempt may fail. After each
// change, allowed and denied flows are checked. Then a change that takes
// api out of web's policy (app=apx) must stop the established
// connection at once; a change of a rule is map-only too, and the first CIDR
// peer (the prefix lookup) takes the full path.
func TestE2EMapOnlyApply(t *testing.T) {
	netnstest.RequireRoot(t)
	changes := 200
	if testing.Short() {
		changes = 20
	}
	// 60 pods to start with, so the maps' sizes have room for the pods
	// added (a bundle whose records would not fit takes the full path)
	var pods []int
	for p := 1; p <= 60; p++ {
		pods = append(pods, p)
	}
	nextPod := 61
	label := func(i int) string { return "app=api, tier=" + string(rune('a'+i%2)) }
	w := newE2EWorld(t, compileBundle(t, podPolicy(label(0), pods)))
	conns := map[string]net.Conn{}
	for _, dst := range []net.IP{w.api.V4, w.api.V6} {
		c, err := netnstest.DialTCP(w.web.NS, dst, 8080, trafficTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[dst.String()] = c
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var once sync.Once
	halt := func() { once.Do(func() { close(stop) }); wg.Wait() }
	defer halt()
	var attempts, failed atomic.Int64
	var connMu sync.Mutex // the established connections: the loop's, or the checks'
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			dst := w.api.V4
			if i%2 == 1 {
				dst = w.api.V6
			}
			attempts.Add(1)
			if err := netnstest.UDPEcho(w.web.NS, dst, 5353, trafficTimeout); err != nil {
				failed.Add(1)
				t.Errorf("new flow web → %s during the changes: %v", dst, err)
			}
			if i%8 == 0 {
				connMu.Lock()
				for _, c := range conns {
					if err := netnstest.RoundTrip(c, []byte("ping\n"), trafficTimeout); err != nil {
						failed.Add(1)
						t.Errorf("established web → %s during the changes: %v", c.RemoteAddr(), err)
					}
				}
				connMu.Unlock()
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()

	quick := func(what string, flows []flow) {
		t.Helper()
		for _, f := range flows {
			for _, dst := range []net.IP{f.to.V4, f.to.V6} {
				timeout := trafficTimeout
				if !f.allow {
					timeout = 150 * time.Millisecond
				}
				err := netnstest.TCPEcho(f.from.NS, dst, f.port, timeout)
				if f.allow && err != nil {
					t.Errorf("%s: tcp %s → %s:%d should pass: %v", what, f.from.V4, dst, f.port, err)
				}
				if !f.allow && err == nil {
					t.Errorf("%s: tcp %s → %s:%d should be dropped but got through", what, f.from.V4, dst, f.port)
				}
			}
		}
	}
	apply := func(what, src string, want string) *LoadResult {
		t.Helper()
		res, err := w.host.Apply(w.name, compileBundle(t, src))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if res.Path != want {
			t.Fatalf("%s: applied %q (%s), want %q", what, res.Path, res.Why, want)
		}
		return res
	}

	apiLabel := label(0)
	for i := 1; i <= changes && !t.Failed(); i++ {
		what := ""
		if i%2 == 1 {
			apiLabel = label((i + 1) / 2)
			what = "relabel api " + apiLabel
		} else if n := len(pods); i%4 == 0 {
			what = fmt.Sprintf("remove zpod-%03d", pods[n/2])
			pods = append(pods[:n/2], pods[n/2+1:]...)
		} else {
			pods = append(pods, nextPod)
			what = fmt.Sprintf("add zpod-%03d", nextPod)
			nextPod++
		}
		res := apply(what, podPolicy(apiLabel, pods), PathMapOnly)
		total := 0
		for _, d := range res.Deltas {
			total += d.Added + d.Changed + d.Removed
		}
		if total == 0 {
			t.Fatalf("%s: a map-only apply that changed no entry: %+v", what, res.Deltas)
		}
		quick(what, []flow{
			{w.web, w.api, "tcp", 8080, true},
			{w.db, w.web, "tcp", 8080, true},
			{w.web, w.api, "tcp", 9090, false},
			{w.api, w.web, "tcp", 8080, false},
		})
	}
	halt()
	t.Logf("%d map-only changes, %d new flows during them, %d failed", changes, attempts.Load(), failed.Load())

	// Revocation: api leaves web's egress policy (app=apx); the
	// established connections stop at their next packet.
	apply("revoke api", podPolicy("app=apx", pods), PathMapOnly)
	for _, c := range conns {
		if err := netnstest.RoundTrip(c, []byte("ping\n"), 500*time.Millisecond); err == nil {
			t.Errorf("established web → %s still passes after the change that denies it", c.RemoteAddr())
		}
	}
	quick("revoked", []flow{{w.web, w.api, "tcp", 8080, false}})

	// A rule change: the same programs, so map-only too.
	src := strings.Replace(podPolicy(label(0), pods), "ingress allow from app=db on tcp/8080\n", "ingress allow from app=db on tcp/8080, tcp/9090\n", 1)
	apply("change a rule", src, PathMapOnly)
	quick("after the rule change", []flow{{w.web, w.api, "tcp", 8080, true}, {w.db, w.web, "tcp", 9090, true}, {w.api, w.web, "tcp", 9090, false}})
	// The first CIDR peer: the prefix lookup is compiled in
	// (cfg_has_prefixes4), so the full path, and its verdicts.
	src = strings.Replace(src, "ingress allow from app=db on tcp/8080, tcp/9090\n", "ingress allow from app=db on tcp/8080, tcp/9090\n  ingress allow from 192.0.2.0/24 on tcp/8080\n", 1)
	res := apply("a CIDR peer", src, PathFull)
	if res.Why != "programs, constants or layout differ" {
		t.Errorf("full apply because %q", res.Why)
	}
	quick("after the full apply", []flow{{w.web, w.api, "tcp", 8080, true}, {w.db, w.web, "tcp", 9090, true}})
	sts, err := w.host.Status(w.name)
	if err != nil || len(sts) != 1 {
		t.Fatal(sts, err)
	}
	if st := sts[0]; st.ApplyPath != PathFull || st.StandbyStale {
		t.Errorf("status: path %q, standby stale %v; want full, false", sts[0].ApplyPath, sts[0].StandbyStale)
	}
}

// TestMapOnlyApplyCold: a Host that did not commit the loaded generation
// (another polc process) reads the standby slots back from the kernel,
// and gets the same delta as one that remembers them.
func TestMapOnlyApplyCold(t *testing.T) {
	netnstest.RequireRoot(t)
	w := newE2EWorld(t, compileBundle(t, podPolicy("app=api", nil)))
	next := compileBundle(t, podPolicy("app=api", []int{1}))
	cold := *w.host
	cold.cache = nil
	res, err := cold.Apply(w.name, next)
	if err != nil {
		t.Fatal(err)
	}
	if res.Path != PathMapOnly {
		t.Fatalf("path %q (%s)", res.Path, res.Why)
	}
	want := map[string]MapDelta{}
	for _, d := range res.Deltas {
		want[d.Map] = d
	}
	if d := want["ipcache4"]; d.Added != 1 || d.Changed != 0 || d.Removed != 0 {
		t.Errorf("ipcache4 delta %+v, want one added", d)
	}
	// And back, warm: the cache holds next.
	res, err = cold.Apply(w.name, compileBundle(t, podPolicy("app=api", nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range res.Deltas {
		if f := want[d.Map]; d.Added != f.Removed || d.Removed != f.Added || d.Changed != f.Changed {
			t.Errorf("%s: back %+v, forth %+v", d.Map, d, f)
		}
	}
	w.check(t, "after two map-only applies", []flow{{w.web, w.api, "tcp", 8080, true}, {w.web, w.api, "tcp", 9090, false}})
}

// TestE2ECrashDuringMapOnlyApply kills a map-only apply (of a change that
// revokes web → api) at each point: after staging and after the switch the
// old policy must be in force once recovered (recovery switches the
// generation back), after the commit the new one; and a map-only apply
// after each kill, which finds the standby slots stale and reads them
// back, must give exactly its policy.
func TestE2ECrashDuringMapOnlyApply(t *testing.T) {
	netnstest.RequireRoot(t)
	pods := []int{1, 2, 3}
	w := newE2EWorld(t, compileBundle(t, podPolicy("app=api", pods)))
	revoked := podPolicy("app=apx", pods)
	allowed := []flow{{w.web, w.api, "tcp", 8080, true}, {w.web, w.api, "tcp", 9090, false}}
	denied := []flow{{w.web, w.api, "tcp", 8080, false}}
	gen := uint32(1)
	for _, point := range []string{CrashApplyAfterStage, CrashApplyAfterSwitch, CrashApplyAfterCommit} {
		runCrashing(t, w.host, point, "apply", w.name, 0, 0, helperPolicyEnv+"="+revoked)
		st, err := w.host.recover(w.name)
		if err != nil {
			t.Fatalf("%s: recover: %v", point, err)
		}
		if point == CrashApplyAfterCommit {
			gen++
			if st.Generation != gen || st.ApplyPath != PathMapOnly {
				t.Fatalf("%s: recovered %+v", point, st)
			}
			checkClean(t, w.host, w.name, gen)
			w.check(t, point+", recovered", denied)
		} else {
			if st.Generation != gen {
				t.Fatalf("%s: recovered generation %d, want %d", point, st.Generation, gen)
			}
			checkClean(t, w.host, w.name, gen)
			w.check(t, point+", recovered", allowed)
		}
		// back to the base policy (map-only, from stale standby slots)
		// and its verdicts, then on to the next crash point from there
		if point == CrashApplyAfterCommit {
			res, err := w.host.Apply(w.name, compileBundle(t, podPolicy("app=api", pods)))
			if err != nil || res.Path != PathMapOnly {
				t.Fatalf("apply after the kill: %+v, %v", res, err)
			}
			w.host.Wait()
			gen++
			w.check(t, "map-only apply after the kills", allowed)
		}
	}
	res, err := w.host.Apply(w.name, compileBundle(t, revoked))
	if err != nil || res.Path != PathMapOnly {
		t.Fatalf("revoking apply: %+v, %v", res, err)
	}
	w.check(t, "revoked after the kills", denied)
}
