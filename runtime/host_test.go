package runtime

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/runtime/netnstest"
)

// trafficTimeout bounds what must succeed: generous, because the machine
// may be crowded; what must fail uses shorter timeouts.
const trafficTimeout = 2 * time.Second

// reach reports whether a reaches b by ICMP echo, TCP (echo server on
// 8080) and UDP (echo server on 5353), over IPv4 and IPv6.
func reach(a, b *netnstest.Endpoint, timeout time.Duration) map[string]error {
	out := map[string]error{}
	for _, ip := range []net.IP{b.V4, b.V6} {
		fam := "v4"
		if ip.To4() == nil {
			fam = "v6"
		}
		out["icmp"+fam] = netnstest.Ping(a.NS, ip, timeout)
		out["tcp"+fam] = netnstest.TCPEcho(a.NS, ip, 8080, timeout)
		out["udp"+fam] = netnstest.UDPEcho(a.NS, ip, 5353, timeout)
	}
	return out
}

func expectReach(t *testing.T, what string, a, b *netnstest.Endpoint, allowed bool) {
	t.Helper()
	timeout := trafficTimeout
	if !allowed {
		timeout = 300 * time.Millisecond // a drop is a timeout: keep it short
	}
	res := reach(a, b, timeout)
	keys := make([]string, 0, len(res))
	for k := range res {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		err := res[k]
		if allowed && err != nil {
			t.Errorf("%s: %s should pass: %v", what, k, err)
		}
		if !allowed && err == nil {
			t.Errorf("%s: %s should be dropped but got through", what, k)
		}
	}
}

// twoEndpoints is the topology most tests use: ep0 and ep1 routed by the
// host namespace, echo servers on ep1.
func twoEndpoints(t *testing.T) *netnstest.Topology {
	topo := netnstest.Routed(t, 2)
	netnstest.ServeTCP(t, topo.Endpoints[1].NS, 8080)
	netnstest.ServeUDP(t, topo.Endpoints[1].NS, 5353)
	return topo
}

func attachIn(t *testing.T, h *Host, ns *netnstest.NS, name, iface string, what AttachOptions) []Attachment {
	t.Helper()
	var made []Attachment
	if err := ns.Do(func() (err error) {
		made, err = h.Attach(name, iface, what)
		return err
	}); err != nil {
		t.Fatalf("attach %s to %s: %v", name, iface, err)
	}
	return made
}

func mustLoad(t *testing.T, h *Host, name string, mark, verdict uint32) {
	t.Helper()
	res, err := h.Load(name, testBundle(mark, verdict))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if !res.Changed || res.State.Generation != 1 {
		t.Fatalf("load: %+v", res)
	}
}

func mustApply(t *testing.T, h *Host, name string, mark, verdict uint32) *State {
	t.Helper()
	res, err := h.Apply(name, testBundle(mark, verdict))
	if err != nil {
		t.Fatalf("apply mark %d: %v", mark, err)
	}
	return res.State
}

// pinTree lists what is pinned under the name's directory.
func pinTree(t *testing.T, h *Host, name string) []string {
	t.Helper()
	var out []string
	dir := h.pins(name).dir()
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// checkClean fails if anything but the committed generation is pinned.
func checkClean(t *testing.T, h *Host, name string, gen uint32) {
	t.Helper()
	for _, p := range pinTree(t, h, name) {
		top, _, _ := strings.Cut(p, "/")
		if top != stateFile && top != sharedDir && top != linksDir && top != attachmentsFile && top != "gen-"+strconv.Itoa(int(gen)) {
			t.Errorf("leftover pin %s (committed generation %d)", p, gen)
		}
	}
}

func sharedCounter(t *testing.T, h *Host, name string) uint64 {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(filepath.Join(h.pins(name).shared(), bpf.MapFrags), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var v uint64
	if err := m.Lookup(uint32(0), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestLoadAttachApplyUnload(t *testing.T) {
	h := testHost(t)
	topo := twoEndpoints(t)
	a, b := topo.Endpoints[0], topo.Endpoints[1]
	expectReach(t, "no policy", a, b, true)

	const name = "lifecycle"
	mustLoad(t, h, name, 1, tcActShot)
	// Loading the same bundle again changes nothing; a different one is refused.
	if res, err := h.Load(name, testBundle(1, tcActShot)); err != nil || res.Changed {
		t.Fatalf("second load: %+v, %v", res, err)
	}
	if _, err := h.Load(name, testBundle(2, tcActOK)); !errors.Is(err, ErrAlreadyLoaded) {
		t.Fatalf("load of another bundle: %v, want ErrAlreadyLoaded", err)
	}
	expectReach(t, "loaded, not attached", a, b, true)

	made := attachIn(t, h, topo.Host, name, a.HostIf, AttachOptions{TC: true, Endpoint: testEndpoint})
	if len(made) != 2 || made[0].Mode != ModeTCX {
		t.Fatalf("attach: %+v", made)
	}
	attachIn(t, h, topo.Host, name, b.HostIf, AttachOptions{XDP: true})
	if again := attachIn(t, h, topo.Host, name, a.HostIf, AttachOptions{TC: true, Endpoint: testEndpoint}); len(again) != 0 {
		t.Fatalf("second attach made %+v", again)
	}
	expectReach(t, "deny attached", a, b, false)

	st := mustApply(t, h, name, 2, tcActOK)
	if st.Generation != 2 {
		t.Fatalf("generation %d after apply", st.Generation)
	}
	checkClean(t, h, name, 2)
	before := sharedCounter(t, h, name)
	expectReach(t, "allow applied", a, b, true)
	if after := sharedCounter(t, h, name); after <= before {
		t.Errorf("shared counter %d → %d: the new generation does not use the old map", before, after)
	}
	if res, err := h.Apply(name, testBundle(2, tcActOK)); err != nil || res.Changed {
		t.Fatalf("re-apply of the same bundle: %+v, %v", res, err)
	}

	sts, err := h.Status("")
	if err != nil || len(sts) != 1 {
		t.Fatalf("status: %+v, %v", sts, err)
	}
	s := sts[0]
	if s.Generation != 2 || len(s.Attachments) != 3 || !s.Attachments[0].Live {
		t.Errorf("status: %+v", s)
	}
	if i := slices.IndexFunc(s.Maps, func(m MapStatus) bool { return m.Name == bpf.MapFrags }); i < 0 || !s.Maps[i].Shared {
		t.Errorf("status maps: %+v", s.Maps)
	}
	if len(s.Conntrack) != 1 || s.Conntrack[0].Endpoint != testEndpoint || s.Conntrack[0].MaxEntries != ConntrackPerEndpoint {
		t.Errorf("status conntrack tables: %+v, want one of %d entries for %q", s.Conntrack, ConntrackPerEndpoint, testEndpoint)
	}

	mustApply(t, h, name, 3, tcActShot)
	expectReach(t, "deny applied", a, b, false)
	if err := topo.Host.Do(func() error {
		_, err := h.Detach(name, a.HostIf, AttachOptions{TC: true, Endpoint: testEndpoint})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	expectReach(t, "detached", a, b, true)

	mustApply(t, h, name, 4, tcActShot)
	attachIn(t, h, topo.Host, name, a.HostIf, AttachOptions{TC: true, Endpoint: testEndpoint})
	expectReach(t, "re-attached", a, b, false)

	if ok, err := h.Unload(name); err != nil || !ok {
		t.Fatalf("unload: %v, %v", ok, err)
	}
	if ok, err := h.Unload(name); err != nil || ok {
		t.Fatalf("second unload: %v, %v", ok, err)
	}
	if _, err := os.Stat(h.pins(name).dir()); !os.IsNotExist(err) {
		t.Errorf("pins left after unload: %v", pinTree(t, h, name))
	}
	expectReach(t, "unloaded", a, b, true)
	if _, err := h.Status(name); !errors.Is(err, ErrNotLoaded) {
		t.Errorf("status after unload: %v", err)
	}
}

// TestApplyUnderTraffic applies 200 bundles while connections exchange
// data in both directions: every apply switches both tc links of both
// endpoints, and a packet that met a program of one bundle and maps of
// another would be dropped (see testSpec). No round trip may fail.
func TestApplyUnderTraffic(t *testing.T) {
	h := testHost(t)
	topo := twoEndpoints(t)
	a, b := topo.Endpoints[0], topo.Endpoints[1]
	const name = "churn"
	mustLoad(t, h, name, 1, tcActOK)
	attachIn(t, h, topo.Host, name, a.HostIf, AttachOptions{TC: true, Endpoint: testEndpoint})
	attachIn(t, h, topo.Host, name, b.HostIf, AttachOptions{TC: true, Endpoint: testEndpoint})

	var conns []net.Conn
	for _, ip := range []net.IP{b.V4, b.V6} {
		c, err := netnstest.DialTCP(a.NS, ip, 8080, trafficTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var trips, failures atomic.Int64
	var firstErr atomic.Value
	loop := func(f func() error) {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := f(); err != nil {
				failures.Add(1)
				firstErr.CompareAndSwap(nil, err)
				return
			}
			trips.Add(1)
		}
	}
	for i, c := range conns {
		wg.Add(1)
		go loop(func() error { return netnstest.RoundTrip(c, []byte("established "+strconv.Itoa(i)), 2*time.Second) })
	}
	wg.Add(2)
	go loop(func() error { return netnstest.UDPEcho(a.NS, b.V4, 5353, 2*time.Second) })
	go loop(func() error { return netnstest.Ping(a.NS, b.V6, 2*time.Second) })

	start := time.Now()
	const applies = 200
	for i := range applies {
		mustApply(t, h, name, uint32(i+2), tcActOK)
	}
	took := time.Since(start)
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d applies in %s (%s each), %d round trips", applies, took, took/applies, trips.Load())
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d traffic loops failed during apply; first: %v", n, firstErr.Load())
	}
	if trips.Load() < applies {
		t.Errorf("only %d round trips during %d applies", trips.Load(), applies)
	}
	sts, err := h.Status(name)
	if err != nil || sts[0].Generation != applies+1 {
		t.Fatalf("status after %d applies: %+v, %v", applies, sts, err)
	}
	checkClean(t, h, name, applies+1)
	if _, err := h.Unload(name); err != nil {
		t.Fatal(err)
	}
}

// The helper process: re-executed test binary that runs one Host
// operation with a crash point set.
const helperEnv = "POLC_RUNTIME_TEST_HELPER"

func TestHelperProcess(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("helper process for the crash tests")
	}
	var op, root, lock, name string
	var mark, verdict uint32
	if _, err := fmt.Sscan(spec, &op, &root, &lock, &name, &mark, &verdict); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	h := &Host{Root: root, LockPath: lock, ParseObject: testSpec, CrashAt: os.Getenv(CrashEnv)}
	var err error
	if src := os.Getenv(helperPolicyEnv); src != "" {
		// A real bundle, compiled from policy source.
		h.ParseObject = nil
		_, err = h.Apply(name, compileBundle(t, src))
		h.Wait()
		op = "done"
	}
	switch op {
	case "apply":
		_, err = h.Apply(name, testBundle(mark, verdict))
	case "load":
		_, err = h.Load(name, testBundle(mark, verdict))
	case "unload":
		_, err = h.Unload(name)
	case "attach":
		h.TCMode = TCMode(os.Getenv(helperTCModeEnv))
		_, err = h.Attach(name, os.Getenv(helperIfaceEnv), AttachOptions{TC: true, Endpoint: testEndpoint})
	case "detach":
		_, err = h.Detach(name, os.Getenv(helperIfaceEnv), AttachOptions{TC: true})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// helperIfaceEnv and helperTCModeEnv tell the helper's "attach" which
// interface (of the namespace it runs in) and which tc mode.
const (
	helperIfaceEnv  = "POLC_RUNTIME_TEST_IFACE"
	helperTCModeEnv = "POLC_RUNTIME_TEST_TC_MODE"
)

// helperPolicyEnv holds policy source the helper compiles and applies
// instead of a test-datapath bundle.
const helperPolicyEnv = "POLC_RUNTIME_TEST_POLICY"

// runCrashing runs op in a child process that kills itself at point.
func runCrashing(t *testing.T, h *Host, point, op, name string, mark, verdict uint32, env ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("%s=%s %s %s %s %d %d", helperEnv, op, h.Root, h.LockPath, name, mark, verdict),
		CrashEnv+"="+point)
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper %s at %s: want death by SIGKILL, got %v\n%s", op, point, err, out)
	}
}

// TestCrashDuringApply kills polc at each point of apply and shows the
// previous policy in force: at once where nothing was switched yet, and
// after the next run's recovery where some links were.
func TestCrashDuringApply(t *testing.T) {
	h := testHost(t)
	topo := twoEndpoints(t)
	a, b := topo.Endpoints[0], topo.Endpoints[1]
	const name = "crash"
	mustLoad(t, h, name, 1, tcActOK)
	attachIn(t, h, topo.Host, name, a.HostIf, AttachOptions{TC: true, Endpoint: testEndpoint})
	attachIn(t, h, topo.Host, name, b.HostIf, AttachOptions{TC: true, Endpoint: testEndpoint})
	// Keep one connection open throughout: it must survive every crash.
	conn, err := netnstest.DialTCP(a.NS, b.V4, 8080, trafficTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// Killed after staging: the deny bundle is pinned aside, the allow
	// bundle enforces, and the next run removes the stage.
	runCrashing(t, h, CrashApplyAfterStage, "apply", name, 100, tcActShot)
	if _, err := os.Stat(h.pins(name).gen(2)); err != nil {
		t.Errorf("no staged generation after the crash: %v", err)
	}
	expectReach(t, "after a crash after staging", a, b, true)
	if err := netnstest.RoundTrip(conn, []byte("still here"), trafficTimeout); err != nil {
		t.Fatalf("established connection broken: %v", err)
	}

	// Killed after switching the first link: recovery switches it back.
	runCrashing(t, h, CrashApplyAfterSwitch, "apply", name, 101, tcActShot)
	sts, err := h.Status(name)
	if err != nil || sts[0].Generation != 1 {
		t.Fatalf("status after a crash mid-switch: %+v, %v", sts, err)
	}
	st, err := h.recover(name) // what every changing command does first
	if err != nil || st.Generation != 1 {
		t.Fatalf("recover: %+v, %v", st, err)
	}
	checkClean(t, h, name, 1)
	expectReach(t, "after recovery from a crash mid-switch", a, b, true)
	if err := netnstest.RoundTrip(conn, []byte("still here"), trafficTimeout); err != nil {
		t.Fatalf("established connection broken: %v", err)
	}

	// Killed after the commit: the new bundle is in force; recovery only
	// removes the old generation.
	runCrashing(t, h, CrashApplyAfterCommit, "apply", name, 102, tcActShot)
	expectReach(t, "after a crash after the commit", a, b, false)
	st = mustApply(t, h, name, 103, tcActOK)
	if st.Generation != 3 {
		t.Errorf("generation %d, want 3", st.Generation)
	}
	checkClean(t, h, name, 3)
	expectReach(t, "after the next apply", a, b, true)

	// A killed load leaves nothing behind once the next run recovers.
	runCrashing(t, h, CrashLoadAfterStage, "load", "crash-load", 1, tcActOK)
	if _, err := h.Unload("crash-load"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(h.pins("crash-load").dir()); !os.IsNotExist(err) {
		t.Errorf("a killed load left %v", pinTree(t, h, "crash-load"))
	}
	if _, err := h.Unload(name); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentApply runs applies from several goroutines (each with its
// own lock file descriptor, like separate processes): they serialize.
func TestConcurrentApply(t *testing.T) {
	h := testHost(t)
	const name = "concurrent"
	mustLoad(t, h, name, 1, tcActOK)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				if _, err := h.Apply(name, testBundle(uint32(1000+w*10+i), tcActOK)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	sts, err := h.Status(name)
	if err != nil || sts[0].Generation != 21 {
		t.Fatalf("status: %+v, %v", sts, err)
	}
	checkClean(t, h, name, 21)
	if _, err := h.Unload(name); err != nil {
		t.Fatal(err)
	}
}

// TestNetlinkTC forces the clsact fallback that kernels without tcx use.
func TestNetlinkTC(t *testing.T) {
	h := testHost(t)
	h.TCMode = TCNetlink
	topo := twoEndpoints(t)
	a, b := topo.Endpoints[0], topo.Endpoints[1]
	const name = "netlink"
	mustLoad(t, h, name, 1, tcActShot)
	made := attachIn(t, h, topo.Host, name, a.HostIf, AttachOptions{TC: true, Endpoint: testEndpoint})
	if len(made) != 2 || made[0].Mode != ModeTC {
		t.Fatalf("attach: %+v", made)
	}
	expectReach(t, "netlink deny", a, b, false)
	// Apply replaces the filter's program; the netlink socket is bound to
	// the namespace, so run it there.
	if err := topo.Host.Do(func() error {
		_, err := h.Apply(name, testBundle(2, tcActOK))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	expectReach(t, "netlink allow", a, b, true)
	if err := topo.Host.Do(func() error {
		_, err := h.Apply(name, testBundle(3, tcActShot))
		if err == nil {
			_, err = h.Unload(name)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	expectReach(t, "netlink unloaded", a, b, true)
}

func TestEnvironmentErrors(t *testing.T) {
	netnstest.RequireRoot(t)
	h := &Host{Root: t.TempDir(), LockPath: filepath.Join(t.TempDir(), "lock"), ParseObject: testSpec}
	_, err := h.Load("x", testBundle(1, tcActOK))
	if !errors.Is(err, ErrNoBPFFS) || !IsEnvironment(err) {
		t.Errorf("load on tmpfs: %v, want ErrNoBPFFS", err)
	}
	h = testHost(t)
	if _, err := h.Load("../evil", testBundle(1, tcActOK)); err == nil {
		t.Errorf("load with a bad name succeeded")
	}
	if _, err := h.Apply("nothing", testBundle(1, tcActOK)); !errors.Is(err, ErrNotLoaded) {
		t.Errorf("apply of nothing: %v", err)
	}
}

// TestInterfaceGone deletes the namespaces under attached links: status
// reports the attachments as not live, apply skips them, and unload still
// removes everything.
func TestInterfaceGone(t *testing.T) {
	h := testHost(t)
	const name = "gone"
	mustLoad(t, h, name, 1, tcActOK)
	t.Run("topology", func(t *testing.T) {
		topo := netnstest.Routed(t, 1)
		attachIn(t, h, topo.Host, name, topo.Endpoints[0].HostIf, AttachOptions{TC: true, Endpoint: testEndpoint})
	}) // the namespaces are deleted; the kernel removes their veths soon after
	var live []string
	for range 50 {
		sts, err := h.Status(name)
		if err != nil || len(sts[0].Attachments) != 2 {
			t.Fatalf("status: %+v, %v", sts, err)
		}
		live = live[:0]
		for _, a := range sts[0].Attachments {
			if a.Live {
				live = append(live, a.Link)
			}
		}
		if len(live) == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(live) > 0 {
		t.Errorf("attachments on deleted interfaces still reported live: %v", live)
	}
	mustApply(t, h, name, 2, tcActOK)
	if ok, err := h.Unload(name); err != nil || !ok {
		t.Fatalf("unload: %v, %v", ok, err)
	}
}

// TestPrivateMountNamespace: under 'ip netns exec', which gives polc a
// mount namespace of its own with /sys remounted, a load would mount a
// bpf filesystem that vanishes with the namespace, and report success:
// it is refused instead (with the nsenter advice). A mount namespace that
// still shares the host's bpffs ('unshare -m') loads as usual, and the
// host sees it.
func TestPrivateMountNamespace(t *testing.T) {
	h := testHost(t)
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ip (iproute2) is needed: %v", err)
		}
		t.Skip("no ip binary")
	}
	ns := fmt.Sprintf("polct-%d-mnt", os.Getpid())
	if out, err := exec.Command(ipPath, "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(ipPath, "netns", "del", ns).Run() })
	helper := func(wrap ...string) ([]byte, error) {
		args := append(wrap, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=load %s %s pm 1 0", helperEnv, h.Root, h.LockPath))
		return cmd.CombinedOutput()
	}
	out, err := helper(ipPath, "netns", "exec", ns)
	if err == nil || !strings.Contains(string(out), "private mount namespace") || !strings.Contains(string(out), "nsenter --net=") {
		t.Errorf("load under ip netns exec: %v\n%s", err, out)
	}
	if st, err := h.Status("pm"); err == nil {
		t.Errorf("the refused load is visible: %+v", st)
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return
	}
	if out, err := helper(unshare, "-m"); err != nil {
		t.Fatalf("load under unshare -m: %v\n%s", err, out)
	}
	if _, err := h.Status("pm"); err != nil {
		t.Errorf("a load in a mount namespace sharing the host's bpffs is not visible: %v", err)
	}
	if _, err := h.Unload("pm"); err != nil {
		t.Fatal(err)
	}
}

// TestRootSymlink: a --root that is a symbolic link is followed
// everywhere: unloading the last bundle removes the (empty) directory it
// points to, never the link, and unloading one of two leaves the other
// loaded and the link in place.
func TestRootSymlink(t *testing.T) {
	h := testHost(t)
	real := h.Root
	link := filepath.Join(t.TempDir(), "root-link")
	if err := os.MkdirAll(real, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	h.Root = link
	mustLoad(t, h, "one", 1, tcActOK)
	mustLoad(t, h, "two", 2, tcActOK)
	if _, err := h.Unload("one"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the root link is gone after unloading one of two bundles: %v", err)
	}
	if st, err := h.Status(""); err != nil || len(st) != 1 || st[0].Name != "two" {
		t.Fatalf("status after unloading one: %+v, %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(real, "two", "state")); err != nil {
		t.Errorf("two's pins are gone: %v", err)
	}
	if _, err := h.Unload("two"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("unloading the last bundle removed the root link: %v", err)
	}
}

// TestApplyMissingHook: apply refuses, with ErrMissingHook and changing
// nothing, a bundle without a program for a hook the loaded one is
// attached to.
func TestApplyMissingHook(t *testing.T) {
	h := testHost(t)
	topo := twoEndpoints(t)
	a := topo.Endpoints[0]
	const name = "nohook"
	mustLoad(t, h, name, 1, tcActOK)
	t.Cleanup(func() { _ = topo.Host.Do(func() error { _, err := h.Unload(name); return err }) })
	attachIn(t, h, topo.Host, name, a.HostIf, AttachOptions{XDP: true})
	b := testBundle(2, tcActOK)
	b.Manifest.Programs = b.Manifest.Programs[:2] // no xdp_prefilter
	err := topo.Host.Do(func() error { _, err := h.Apply(name, b); return err })
	if !errors.Is(err, ErrMissingHook) {
		t.Fatalf("apply without the attached XDP hook: %v, want ErrMissingHook", err)
	}
	checkClean(t, h, name, 1)
}

// TestCrashDuringDetachAndUnload kills polc at each point of detach and of
// unload, under a bundle that drops everything. An interface is never
// left policed in one direction only: right after the kill it is either
// still fully enforced or passes both ways (the pass binding comes before
// any program is detached). The next run finishes the job: the
// attachment is gone from the state (so apply does not trip over a
// missing link), or the bundle is gone.
func TestCrashDuringDetachAndUnload(t *testing.T) {
	for _, c := range []struct {
		op, point string
		// passes: traffic through a passes right after the kill
		passes bool
	}{
		{"detach", CrashDetachAfterPass, true},
		{"detach", CrashDetachAfterLinks, true},
		{"unload", CrashUnloadAfterMark, false},
		{"unload", CrashUnloadAfterPass, true},
		{"unload", CrashUnloadAfterDetach, true},
	} {
		t.Run(c.point, func(t *testing.T) {
			h := testHost(t)
			topo := twoEndpoints(t)
			a, b := topo.Endpoints[0], topo.Endpoints[1]
			const name = "crashdetach"
			mustLoad(t, h, name, 1, tcActShot)
			t.Cleanup(func() { _ = topo.Host.Do(func() error { _, _ = h.Unload(name); return nil }) })
			attachIn(t, h, topo.Host, name, a.HostIf, AttachOptions{TC: true, Endpoint: testEndpoint})
			expectReach(t, "the deny bundle in force", a, b, false)
			if err := topo.Host.Do(func() error {
				runCrashing(t, h, c.point, c.op, name, 0, 0, helperIfaceEnv+"="+a.HostIf)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			expectReach(t, "right after the kill", a, b, c.passes)
			var st *State
			if err := topo.Host.Do(func() (err error) {
				st, err = h.recover(name)
				return err
			}); err != nil {
				t.Fatalf("recovery: %v", err)
			}
			switch c.op {
			case "detach":
				if st == nil || len(st.Attachments) != 0 {
					t.Fatalf("after recovery: %+v, want the bundle loaded with no attachment", st)
				}
				if err := topo.Host.Do(func() error { _, err := h.Apply(name, testBundle(2, tcActShot)); return err }); err != nil {
					t.Errorf("apply after the interrupted detach: %v", err)
				}
			case "unload":
				if st != nil {
					t.Fatalf("after recovery: %+v, want the bundle unloaded", st)
				}
				if _, err := os.Stat(h.pins(name).dir()); !os.IsNotExist(err) {
					t.Errorf("pins left after the interrupted unload: %v", err)
				}
			}
			expectReach(t, "after recovery", a, b, true)
		})
	}
}
