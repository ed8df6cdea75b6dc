package runtime

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/runtime/netnstest"
)

// TestCrashDuringApplyNetlink: a kill after switching the first netlink
// tc filter leaves that filter running the staged generation's program.
// Recovery must switch it back before removing the stage: removing the
// stage unpins its tail-call array, which the kernel then empties, and the
// filter's entry program would drop everything.
func TestCrashDuringApplyNetlink(t *testing.T) {
	h := testHost(t)
	h.TCMode = TCNetlink
	topo := twoEndpoints(t)
	a, b := topo.Endpoints[0], topo.Endpoints[1]
	const name = "crashnl"
	mustLoad(t, h, name, 1, tcActOK)
	attachIn(t, h, topo.Host, name, a.HostIf, AttachOptions{TC: true, Endpoint: testEndpoint})
	expectReach(t, "netlink allow", a, b, true)
	// The child forks from a thread in the host namespace, so it runs
	// there (netlink filters are found by ifindex in their namespace).
	if err := topo.Host.Do(func() error {
		runCrashing(t, h, CrashApplyAfterSwitch, "apply", name, 100, tcActShot)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := topo.Host.Do(func() error {
		_, err := h.recover(name)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	checkClean(t, h, name, 1)
	expectReach(t, "after recovery from a crash mid-switch (netlink)", a, b, true)
	if err := topo.Host.Do(func() error {
		_, err := h.Unload(name)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// TestNetlinkAttachAfterFilterGone: attaching again where the netlink
// filter has gone (qdisc deleted, interface recreated) must attach again,
// not report "already attached".
func TestNetlinkAttachAfterFilterGone(t *testing.T) {
	h := testHost(t)
	h.TCMode = TCNetlink
	topo := twoEndpoints(t)
	a, b := topo.Endpoints[0], topo.Endpoints[1]
	const name = "nlgone"
	mustLoad(t, h, name, 1, tcActShot)
	attachIn(t, h, topo.Host, name, a.HostIf, AttachOptions{TC: true, Endpoint: testEndpoint})
	expectReach(t, "netlink deny", a, b, false)
	if err := topo.Host.Do(func() error {
		l, err := netlink.LinkByName(a.HostIf)
		if err != nil {
			return err
		}
		return netlink.QdiscDel(&netlink.GenericQdisc{
			QdiscAttrs: netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
			QdiscType:  "clsact",
		})
	}); err != nil {
		t.Fatal(err)
	}
	expectReach(t, "filter removed behind polc's back", a, b, true)
	var sts []Status
	if err := topo.Host.Do(func() (err error) {
		sts, err = h.Status(name)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, as := range sts[0].Attachments {
		if as.Live {
			t.Errorf("status reports %s on %s live, but its filter is gone", as.Hook, as.Iface)
		}
	}
	made := attachIn(t, h, topo.Host, name, a.HostIf, AttachOptions{TC: true, Endpoint: testEndpoint})
	if len(made) != 2 {
		t.Errorf("attach again made %d attachments, want 2", len(made))
	}
	expectReach(t, "re-attached deny", a, b, false)
	if err := topo.Host.Do(func() error {
		_, err := h.Unload(name)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// TestAttachRenamedInterface: attaching to an interface that is already
// attached under its old name (renamed since) must not make a second
// record of the same link pin, and detaching the old name must not take
// away what the new name's attachment enforces.
func TestAttachRenamedInterface(t *testing.T) {
	h := testHost(t)
	topo := netnstest.Routed(t, 1)
	ep := topo.Endpoints[0]
	const name = "renamed"
	mustLoad(t, h, name, 1, tcActOK)
	attachIn(t, h, topo.Host, name, ep.HostIf, AttachOptions{TC: true, Endpoint: testEndpoint})
	const newName = "polcren0"
	if err := topo.Host.Do(func() error {
		l, err := netlink.LinkByName(ep.HostIf)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetDown(l); err != nil {
			return err
		}
		if err := netlink.LinkSetName(l, newName); err != nil {
			return err
		}
		return netlink.LinkSetUp(l)
	}); err != nil {
		t.Fatal(err)
	}
	attachIn(t, h, topo.Host, name, newName, AttachOptions{TC: true, Endpoint: testEndpoint})
	if err := topo.Host.Do(func() error {
		_, err := h.Detach(name, ep.HostIf, AttachOptions{TC: true, Endpoint: testEndpoint})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var sts []Status
	if err := topo.Host.Do(func() (err error) {
		sts, err = h.Status(name)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	live := 0
	for _, a := range sts[0].Attachments {
		if a.Iface != newName {
			t.Errorf("attachment recorded under %s, want %s: %+v", a.Iface, newName, a)
		}
		if a.Live {
			live++
		}
	}
	if live != 2 || len(sts[0].Attachments) != 2 {
		t.Errorf("after detaching the old name: %d of %d attachments live, want 2 of 2: %+v", live, len(sts[0].Attachments), sts[0].Attachments)
	}
	if _, err := h.Unload(name); err != nil {
		t.Fatal(err)
	}
}

// TestNetlinkNamespaceGone: netlink tc attachments whose network
// namespace was deleted must neither block apply nor resist detach.
func TestNetlinkNamespaceGone(t *testing.T) {
	h := testHost(t)
	h.TCMode = TCNetlink
	const name = "nlnsgone"
	mustLoad(t, h, name, 1, tcActOK)
	var iface string
	t.Run("topology", func(t *testing.T) {
		topo := netnstest.Routed(t, 1)
		iface = topo.Endpoints[0].HostIf
		made := attachIn(t, h, topo.Host, name, iface, AttachOptions{TC: true, Endpoint: testEndpoint})
		if !netnsAlive(made[0].Netns) {
			t.Errorf("namespace %d of a live topology not found", made[0].Netns)
		}
		if _, err := h.Apply(name, testBundle(3, tcActOK)); err == nil {
			t.Errorf("apply from another namespace than a live netlink attachment's succeeded")
		}
	}) // the namespaces are deleted
	if _, err := h.Apply(name, testBundle(2, tcActOK)); err != nil {
		t.Errorf("apply with attachments in a deleted namespace: %v", err)
	}
	removed, err := h.Detach(name, iface, AttachOptions{TC: true, Endpoint: testEndpoint})
	if err != nil || len(removed) != 2 {
		t.Errorf("detach from a deleted namespace: removed %d, %v", len(removed), err)
	}
	if _, err := h.Unload(name); err != nil {
		t.Fatal(err)
	}
}

// TestCrashDuringAttachNetlink: a kill right after attach installed a
// netlink tc filter must not leave a filter no record mentions: the next
// apply or unload would remove the pins of the generation it runs, the
// kernel would empty that generation's tail-call array, and the filter
// would drop every packet on the interface.
func TestCrashDuringAttachNetlink(t *testing.T) {
	h := testHost(t)
	h.TCMode = TCNetlink
	topo := twoEndpoints(t)
	a, b := topo.Endpoints[0], topo.Endpoints[1]
	crashAttach := func(name, iface string) {
		t.Helper()
		// The child forks from a thread in the host namespace, so it
		// attaches there.
		if err := topo.Host.Do(func() error {
			runCrashing(t, h, CrashAttachAfterFilter, "attach", name, 0, 0,
				helperIfaceEnv+"="+iface, helperTCModeEnv+"="+string(TCNetlink))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	polcFilters := func(iface string) (n int) {
		t.Helper()
		if err := topo.Host.Do(func() error {
			ifc, err := netlink.LinkByName(iface)
			if err != nil {
				return err
			}
			for _, hook := range []string{bundle.HookEndpointEgress, bundle.HookEndpointIngress} {
				_, live, err := tcFilterState(&Attachment{Iface: iface, Ifindex: ifc.Attrs().Index, Hook: hook})
				if err != nil {
					return err
				}
				if live {
					n++
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Killed mid-attach, then apply.
	const name = "crashattnl"
	mustLoad(t, h, name, 1, tcActOK)
	crashAttach(name, a.HostIf)
	if polcFilters(a.HostIf) == 0 {
		t.Fatalf("no filter installed on %s before the kill", a.HostIf)
	}
	expectReach(t, "after a kill mid-attach", a, b, true)
	if err := topo.Host.Do(func() error {
		_, err := h.Apply(name, testBundle(2, tcActOK))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	checkClean(t, h, name, 2)
	expectReach(t, "apply after a kill mid-attach", a, b, true)
	if err := topo.Host.Do(func() error {
		_, err := h.Apply(name, testBundle(3, tcActShot))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	expectReach(t, "deny applied after a kill mid-attach", a, b, false)
	if err := topo.Host.Do(func() error {
		_, err := h.Unload(name)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if n := polcFilters(a.HostIf); n != 0 {
		t.Errorf("%d polc filters left on %s after unload", n, a.HostIf)
	}
	expectReach(t, "unloaded", a, b, true)

	// Killed mid-attach, then unload.
	const name2 = "crashattnl2"
	mustLoad(t, h, name2, 1, tcActOK)
	crashAttach(name2, b.HostIf)
	expectReach(t, "after a kill mid-attach", a, b, true)
	if err := topo.Host.Do(func() error {
		_, err := h.Unload(name2)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if n := polcFilters(b.HostIf); n != 0 {
		t.Errorf("%d polc filters left on %s after unload", n, b.HostIf)
	}
	expectReach(t, "unload after a kill mid-attach", a, b, true)
}

// TestUnloadNetlinkOtherNamespace: unloading from another network
// namespace than a live netlink tc filter's must refuse and change
// nothing: the filter cannot be deleted from there, and once the
// generation's pins were gone its emptied tail-call array would drop every
// packet on the interface.
func TestUnloadNetlinkOtherNamespace(t *testing.T) {
	h := testHost(t)
	h.TCMode = TCNetlink
	topo := twoEndpoints(t)
	a, b := topo.Endpoints[0], topo.Endpoints[1]
	const name = "nlforeign"
	mustLoad(t, h, name, 1, tcActOK)
	attachIn(t, h, topo.Host, name, a.HostIf, AttachOptions{TC: true, Endpoint: testEndpoint})
	expectReach(t, "netlink allow", a, b, true)

	ok, err := h.Unload(name) // from the test's own namespace
	if !errors.Is(err, ErrOtherNetns) || !IsEnvironment(err) || ok {
		t.Fatalf("unload from another namespace: %v, %v; want ErrOtherNetns", ok, err)
	}
	if want := "nsenter --net=/var/run/netns/" + topo.Host.Name; !strings.Contains(err.Error(), want) &&
		!strings.Contains(err.Error(), "nsenter --net=/run/netns/"+topo.Host.Name) {
		t.Errorf("error %q does not say how to enter %s", err, topo.Host.Name)
	}
	t.Logf("refused: %v", err)
	if _, err := os.Stat(h.pins(name).state()); err != nil {
		t.Errorf("refused unload removed the state: %v", err)
	}
	checkClean(t, h, name, 1)
	expectReach(t, "after a refused unload", a, b, true)

	if err := topo.Host.Do(func() error {
		ok, err := h.Unload(name)
		if err == nil && !ok {
			err = errors.New("not unloaded")
		}
		return err
	}); err != nil {
		t.Fatalf("unload from the filter's namespace: %v", err)
	}
	if _, err := os.Stat(h.pins(name).dir()); !os.IsNotExist(err) {
		t.Errorf("pins left after unload: %v", pinTree(t, h, name))
	}
	expectReach(t, "unloaded", a, b, true)
}

// TestStackedBundles: a second bundle on an interface that already runs
// one is refused (with tcx the first one's verdict ends the chain, so the
// second would show as attached and do nothing), naming the bundle there;
// another interface takes it, and once the first is detached, so does
// this one. Both tc modes.
func TestStackedBundles(t *testing.T) {
	for _, mode := range []TCMode{TCForceX, TCNetlink} {
		t.Run(string(mode), func(t *testing.T) {
			h := testHost(t)
			h.TCMode = mode
			topo := twoEndpoints(t)
			a, b := topo.Endpoints[0], topo.Endpoints[1]
			mustLoad(t, h, "first", 1, tcActOK)
			mustLoad(t, h, "second", 2, tcActShot)
			t.Cleanup(func() {
				_ = topo.Host.Do(func() error {
					_, _ = h.Unload("second")
					_, _ = h.Unload("first")
					return nil
				})
			})
			attachIn(t, h, topo.Host, "first", a.HostIf, AttachOptions{TC: true, Endpoint: testEndpoint})
			err := topo.Host.Do(func() error {
				_, err := h.Attach("second", a.HostIf, AttachOptions{TC: true, Endpoint: testEndpoint})
				return err
			})
			if !errors.Is(err, ErrStacked) || !strings.Contains(err.Error(), "bundle first") {
				t.Fatalf("second bundle on %s: %v, want ErrStacked naming the first", a.HostIf, err)
			}
			st, err := h.Status("second")
			if err != nil {
				t.Fatal(err)
			}
			if n := len(st[0].Attachments); n != 0 {
				t.Errorf("the refused attach left %d attachments", n)
			}
			expectReach(t, "first bundle still in force", a, b, true)
			attachIn(t, h, topo.Host, "second", b.HostIf, AttachOptions{TC: true, Endpoint: testEndpoint})
			if err := topo.Host.Do(func() error {
				_, err := h.Detach("first", a.HostIf, AttachOptions{TC: true})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			attachIn(t, h, topo.Host, "second", a.HostIf, AttachOptions{TC: true, Endpoint: testEndpoint})
		})
	}
}

// TestManyAttachments: 2 500 interfaces (5 000 attachments, more than
// the state's JSON could once hold) attach in one AttachAll, are all
// recorded and live, and unload cleanly. The time it takes is in
// docs/runtime.md (linear: 10 000 attachments in about 2.5 s).
func TestManyAttachments(t *testing.T) {
	h := testHost(t)
	ns := netnstest.New(t, "many")
	const n = 2500
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "link add v%d type veth peer name p%d\nlink set v%d up\n", i, i, i)
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Fatalf("ip (iproute2) is needed: %v", err)
	}
	cmd := exec.Command(ip, "-n", ns.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("create %d veth pairs: %v: %s", n, err, out)
	}
	const name = "many"
	mustLoad(t, h, name, 1, tcActOK)
	reqs := make([]AttachRequest, n)
	for i := range reqs {
		reqs[i] = AttachRequest{Iface: fmt.Sprintf("v%d", i), AttachOptions: AttachOptions{TC: true, Endpoint: testEndpoint}}
	}
	var made []Attachment
	if err := ns.Do(func() (err error) { made, err = h.AttachAll(name, reqs); return err }); err != nil {
		t.Fatal(err)
	}
	if len(made) != 2*n {
		t.Fatalf("made %d attachments, want %d", len(made), 2*n)
	}
	var st []Status
	if err := ns.Do(func() (err error) { st, err = h.Status(name); return err }); err != nil {
		t.Fatal(err)
	}
	live := 0
	for _, a := range st[0].Attachments {
		if a.Live {
			live++
		}
	}
	if len(st[0].Attachments) != 2*n || live != 2*n {
		t.Errorf("status: %d attachments, %d live; want %d", len(st[0].Attachments), live, 2*n)
	}
	if err := ns.Do(func() error { _, err := h.Unload(name); return err }); err != nil {
		t.Fatal(err)
	}
}
