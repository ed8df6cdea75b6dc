package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/polc-dev/polc/runtime"
	"github.com/polc-dev/polc/runtime/netnstest"
)

// The agent against client-go's fake clientsets, on a real node: the
// pods web, api and db are the network namespaces of a netnstest.Routed
// topology (the agent runs in its host namespace and finds each pod's
// veth by the route to its address), with tcp/8080 servers. Every event
// is followed by a wait for the agent to enforce a new digest and by real
// connections.

const (
	testNode = "node-a"
	testNS   = "shop"
)

var podNames = []string{"web", "api", "db"}

// world is one agent on a routed topology, and the fake API it watches.
type world struct {
	t      testing.TB
	topo   *netnstest.Topology
	host   *runtime.Host
	client *fake.Clientset
	dyn    *dynamicfake.FakeDynamicClient
	agent  *Agent
	stop   func()
	// debounce is the agent's (0: the default).
	debounce time.Duration
}

func testPod(i int, app string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podNames[i], Namespace: testNS, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{NodeName: testNode, Containers: []corev1.Container{{Name: "c",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: netnstest.EndpointV4(i).String(),
			PodIPs: []corev1.PodIP{{IP: netnstest.EndpointV4(i).String()}, {IP: netnstest.EndpointV6(i).String()}}},
	}
}

// newWorld builds the topology and the fake API holding the namespace,
// a pod of another node, and the pods of idx; it starts no agent.
func newWorld(t testing.TB, idx ...int) *world {
	netnstest.RequireRoot(t)
	topo := netnstest.Routed(t, 3)
	for _, ep := range topo.Endpoints {
		netnstest.ServeTCP(t, ep.NS, 8080)
	}
	root := filepath.Join(runtime.BPFFSMount, fmt.Sprintf("polc-agent-test-%d-%06x", os.Getpid(), rand.IntN(1<<24)))
	host := &runtime.Host{Root: root, LockPath: filepath.Join(t.TempDir(), "polc.lock")}
	t.Cleanup(func() {
		if _, err := host.Unload("polc"); err != nil {
			t.Errorf("unload: %v", err)
		}
		if err := os.RemoveAll(root); err != nil {
			t.Errorf("remove %s: %v", root, err)
		}
	})
	objs := []k8sruntime.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNS, Labels: map[string]string{"team": "shop"}}},
		// A pod of another node: in the bundle, never attached here.
		&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "remote", Namespace: testNS, Labels: map[string]string{"app": "web"}},
			Spec:       corev1.PodSpec{NodeName: "node-b", Containers: []corev1.Container{{Name: "c"}}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.201.99.2"},
		},
	}
	for _, i := range idx {
		objs = append(objs, testPod(i, podNames[i]))
	}
	scheme := k8sruntime.NewScheme()
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{
		CiliumNetworkPolicies:            "CiliumNetworkPolicyList",
		CiliumClusterwideNetworkPolicies: "CiliumClusterwideNetworkPolicyList",
	})
	return &world{t: t, topo: topo, host: host, client: fake.NewClientset(objs...), dyn: dyn}
}

// start runs an agent until the test ends (or w.stop) and waits until it
// is ready.
func (w *world) start() {
	w.t.Helper()
	a, err := New(Config{
		Node: testNode, Name: "polc", Host: w.host, Client: w.client, Dynamic: w.dyn,
		Compiler: "agent-test", InNetns: w.topo.Host.Do, Debounce: w.debounce,
		Log: slog.New(slog.NewTextHandler(testLog{w.t}, nil)),
	})
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := a.Run(ctx); err != nil {
			w.t.Errorf("agent: %v", err)
		}
	}()
	var once sync.Once
	w.stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	w.t.Cleanup(w.stop)
	w.agent = a
	w.waitFor("ready", func(s Status) bool { return s.Ready() })
}

type testLog struct{ t testing.TB }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Logf("%s", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// waitFor polls the agent's status until cond holds.
func (w *world) waitFor(what string, cond func(Status) bool) Status {
	w.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := w.agent.Status()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: timed out; status %+v", what, s)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// change runs fn against the API and waits until the agent enforces a
// new bundle.
func (w *world) change(what string, fn func(ctx context.Context) error) Status {
	w.t.Helper()
	before := w.agent.Status().BundleDigest
	if err := fn(context.Background()); err != nil {
		w.t.Fatalf("%s: %v", what, err)
	}
	return w.waitFor(what, func(s Status) bool { return s.Ready() && s.BundleDigest != before })
}

type reach struct {
	from, to int
	allow    bool
}

// check connects over IPv4 and IPv6 to tcp/8080 for each reach.
func (w *world) check(what string, rs ...reach) {
	w.t.Helper()
	var wg sync.WaitGroup
	errs := make([]string, 2*len(rs))
	for i, r := range rs {
		from, to := w.topo.Endpoints[r.from], w.topo.Endpoints[r.to]
		for j, dst := range []net.IP{to.V4, to.V6} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				timeout := 3 * time.Second
				if !r.allow {
					timeout = 400 * time.Millisecond
				}
				err := netnstest.TCPEcho(from.NS, dst, 8080, timeout)
				desc := fmt.Sprintf("%s: %s → %s", what, podNames[r.from], net.JoinHostPort(dst.String(), "8080"))
				switch {
				case r.allow && err != nil:
					errs[2*i+j] = desc + " should pass: " + err.Error()
				case !r.allow && err == nil:
					errs[2*i+j] = desc + " should be dropped but got through"
				}
			}()
		}
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			w.t.Error(e)
		}
	}
}

func (w *world) attachedIfaces() string {
	var out []string
	for _, a := range w.agent.Status().Attached {
		out = append(out, a.Iface+"="+a.Endpoint)
	}
	return strings.Join(out, " ")
}

func apiIngress(from string) *networkingv1.NetworkPolicy {
	port := intstr.FromInt32(8080)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "api-ingress", Namespace: testNS},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": from}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &port}},
			}},
		},
	}
}

func TestAgentFollowsTheAPI(t *testing.T) {
	w := newWorld(t, 0, 2) // web and db; api comes later
	w.start()
	if got, want := w.attachedIfaces(), "pe0=shop.web pe2=shop.db"; got != want {
		t.Fatalf("attached %q, want %q", got, want)
	}
	w.check("no policy", reach{0, 2, true}, reach{2, 0, true})
	netpols := w.client.NetworkingV1().NetworkPolicies(testNS)
	pods := w.client.CoreV1().Pods(testNS)

	w.change("policy created", func(ctx context.Context) error {
		_, err := netpols.Create(ctx, apiIngress("web"), metav1.CreateOptions{})
		return err
	})
	// shop.api sorts before shop.db, which the bundle renumbers: the
	// runtime keeps the attached endpoints' indices, so map-only still
	mapOnly := func(what string, s Status) {
		t.Helper()
		if s.LastApply != runtime.PathMapOnly || s.LastApplyWhy != "" {
			t.Errorf("%s: applied %q (%s), want map-only", what, s.LastApply, s.LastApplyWhy)
		}
	}
	mapOnly("pod added", w.change("pod added", func(ctx context.Context) error {
		_, err := pods.Create(ctx, testPod(1, "api"), metav1.CreateOptions{})
		return err
	}))
	if got, want := w.attachedIfaces(), "pe0=shop.web pe1=shop.api pe2=shop.db"; got != want {
		t.Fatalf("after pod added: attached %q, want %q", got, want)
	}
	w.check("api accepts web", reach{0, 1, true}, reach{2, 1, false}, reach{1, 2, true})

	// A local pod the host has no route of its own to: in the bundle,
	// not attached, and said so.
	s := w.change("pod without a route", func(ctx context.Context) error {
		lost := testPod(0, "lost")
		lost.Name, lost.Status.PodIP, lost.Status.PodIPs = "lost", "10.209.0.2", nil
		_, err := pods.Create(ctx, lost, metav1.CreateOptions{})
		return err
	})
	if len(s.Unattached) != 1 || s.Unattached[0].Endpoint != "shop.lost" || !strings.Contains(s.Unattached[0].Reason, "10.209.0.2") {
		t.Errorf("unattached %+v, want shop.lost with its address", s.Unattached)
	}
	if got, want := w.attachedIfaces(), "pe0=shop.web pe1=shop.api pe2=shop.db"; got != want {
		t.Errorf("after a pod without a route: attached %q, want %q", got, want)
	}
	mapOnly("pod without a route", s)
	mapOnly("pod without a route removed", w.change("pod without a route removed", func(ctx context.Context) error {
		return pods.Delete(ctx, "lost", metav1.DeleteOptions{})
	}))

	// A policy edited and a pod relabelled change maps only: applied in
	// place, without new programs (docs/runtime.md, Map-only apply).
	mapOnly("policy changed", w.change("policy changed", func(ctx context.Context) error {
		_, err := netpols.Update(ctx, apiIngress("db"), metav1.UpdateOptions{})
		return err
	}))
	w.check("api accepts db", reach{0, 1, false}, reach{2, 1, true})

	mapOnly("pod relabelled", w.change("pod relabelled", func(ctx context.Context) error {
		_, err := pods.Update(ctx, testPod(2, "other"), metav1.UpdateOptions{})
		return err
	}))
	w.check("db relabelled", reach{0, 1, false}, reach{2, 1, false})

	// A policy that does not compile: the last bundle stays in force,
	// the error is in the status and /readyz, naming the object.
	good := w.agent.Status()
	bad := apiIngress("web")
	bad.Name = "bad"
	bad.Spec.PodSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Sometimes"}}}
	if _, err := netpols.Create(context.Background(), bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s = w.waitFor("compile error", func(s Status) bool { return s.LastError != "" })
	if s.BundleDigest != good.BundleDigest || s.Generation != good.Generation || s.Ready() {
		t.Errorf("after a compile error: %+v, want %s generation %d still in force, not ready", s, good.BundleDigest, good.Generation)
	}
	if !strings.Contains(s.LastError, "NetworkPolicy/shop/bad:") {
		t.Errorf("the error does not name the object: %s", s.LastError)
	}
	srv := httptest.NewServer(w.agent.Handler())
	defer srv.Close()
	code, body := get(t, srv.URL+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "NetworkPolicy/shop/bad:") || !strings.Contains(body, good.BundleDigest) {
		t.Errorf("/readyz with a compile error: %d %q", code, body)
	}
	code, body = get(t, srv.URL+"/metrics")
	for _, m := range []string{"polc_agent_ready{node=\"node-a\"} 0", "polc_agent_bundle_info{digest=\"" + good.BundleDigest + "\"", "polc_agent_round_errors_total{node=\"node-a\"} "} {
		if code != http.StatusOK || !strings.Contains(body, m) {
			t.Errorf("/metrics with a compile error: %d, no %s in\n%s", code, m, body)
		}
	}
	if sts, err := w.host.Status("polc"); err != nil || "sha256:"+sts[0].BundleDigest != good.BundleDigest {
		t.Errorf("host status after a compile error: %v %v", sts, err)
	}
	w.check("compile error keeps the last bundle", reach{0, 1, false}, reach{2, 1, false})
	if err := netpols.Delete(context.Background(), "bad", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w.waitFor("bad policy deleted", func(s Status) bool { return s.Ready() })
	if code, body := get(t, srv.URL+"/readyz"); code != http.StatusOK || !strings.Contains(body, good.BundleDigest) {
		t.Errorf("/readyz once the bad policy is gone: %d %q", code, body)
	}
	w.check("bad policy deleted", reach{0, 1, false}, reach{2, 1, false})

	mapOnly("policy deleted", w.change("policy deleted", func(ctx context.Context) error {
		return netpols.Delete(ctx, "api-ingress", metav1.DeleteOptions{})
	}))
	w.check("no policy again", reach{0, 1, true}, reach{2, 1, true})

	cnps := w.dyn.Resource(CiliumNetworkPolicies).Namespace(testNS)
	s = w.change("Cilium policy created", func(ctx context.Context) error {
		_, err := cnps.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
			"metadata": map[string]any{"name": "api", "namespace": testNS},
			"spec": map[string]any{
				"endpointSelector": map[string]any{"matchLabels": map[string]any{"app": "api"}},
				"ingress": []any{map[string]any{
					"fromEndpoints": []any{map[string]any{"matchLabels": map[string]any{"app": "web"}}},
					"toPorts":       []any{map[string]any{"ports": []any{map[string]any{"port": "8080", "protocol": "TCP"}}}},
				}},
			},
		}}, metav1.CreateOptions{})
		return err
	})
	mapOnly("Cilium policy created", s)
	w.check("Cilium policy", reach{0, 1, true}, reach{2, 1, false})
	mapOnly("Cilium policy deleted", w.change("Cilium policy deleted", func(ctx context.Context) error {
		return cnps.Delete(ctx, "api", metav1.DeleteOptions{})
	}))
	w.check("Cilium policy gone", reach{0, 1, true}, reach{2, 1, true})

	mapOnly("pod removed", w.change("pod removed", func(ctx context.Context) error {
		return pods.Delete(ctx, "api", metav1.DeleteOptions{})
	}))
	if got, want := w.attachedIfaces(), "pe0=shop.web pe2=shop.db"; got != want {
		t.Fatalf("after pod removed: attached %q, want %q", got, want)
	}
	sts, err := w.host.Status("polc")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range sts[0].Attachments {
		if a.Iface == "pe1" {
			t.Errorf("pe1 still attached after its pod was removed: %+v", a)
		}
	}
	w.checkWatched()
}

// checkWatched checks that the agent listed and watched every resource of
// Watched and asked the API for nothing else (deploy/rbac.yaml grants
// Watched).
func (w *world) checkWatched() {
	w.t.Helper()
	seen := map[string]bool{}
	var actions []k8stesting.Action
	actions = append(actions, w.client.Actions()...)
	actions = append(actions, w.dyn.Actions()...)
	for _, act := range actions {
		gvr := act.GetResource()
		if act.GetVerb() != "list" && act.GetVerb() != "watch" {
			continue // the test's own creates, updates and deletes
		}
		if !slices.Contains(Watched, gvr) {
			w.t.Errorf("the agent %ss %v, which is not in Watched", act.GetVerb(), gvr)
		}
		seen[act.GetVerb()+" "+gvr.String()] = true
	}
	for _, gvr := range Watched {
		for _, verb := range []string{"list", "watch"} {
			if !seen[verb+" "+gvr.String()] {
				w.t.Errorf("the agent never %ss %v, which Watched lists", verb, gvr)
			}
		}
	}
}

// TestAgentRestartKeepsEnforcing stops the agent (as SIGTERM does) and
// starts another: the bundle stays in force in between, and the new agent
// adopts it.
func TestAgentRestartKeepsEnforcing(t *testing.T) {
	w := newWorld(t, 0, 1, 2)
	if _, err := w.client.NetworkingV1().NetworkPolicies(testNS).Create(context.Background(), apiIngress("web"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.start()
	first := w.agent.Status()
	w.stop()
	sts, err := w.host.Status("polc")
	if err != nil {
		t.Fatalf("after the agent stopped: %v", err)
	}
	if "sha256:"+sts[0].BundleDigest != first.BundleDigest || len(sts[0].Attachments) != 6 {
		t.Fatalf("after the agent stopped: %s with %d attachments, want %s with 6", sts[0].BundleDigest, len(sts[0].Attachments), first.BundleDigest)
	}
	w.check("agent stopped", reach{0, 1, true}, reach{2, 1, false})

	// The next agent adopts the bundle before its informers sync, and
	// applies the same one (same cluster, same digest).
	w.start()
	s := w.agent.Status()
	if s.BundleDigest != first.BundleDigest || s.Generation != first.Generation || s.Adopted {
		t.Errorf("restarted agent: %+v, want %s generation %d", s, first.BundleDigest, first.Generation)
	}
	if got, want := w.attachedIfaces(), "pe0=shop.web pe1=shop.api pe2=shop.db"; got != want {
		t.Errorf("restarted agent: attached %q, want %q", got, want)
	}
	w.check("agent restarted", reach{0, 1, true}, reach{2, 1, false})

	// Unloaded behind the agent's back: the next round loads and
	// attaches again.
	if _, err := w.host.Unload("polc"); err != nil {
		t.Fatal(err)
	}
	w.change("relabel after an unload", func(ctx context.Context) error {
		_, err := w.client.CoreV1().Pods(testNS).Update(ctx, testPod(2, "web"), metav1.UpdateOptions{})
		return err
	})
	if got, want := w.attachedIfaces(), "pe0=shop.web pe1=shop.api pe2=shop.db"; got != want {
		t.Errorf("after an unload: attached %q, want %q", got, want)
	}
	if s := w.agent.Status(); s.Generation != 1 {
		t.Errorf("after an unload: generation %d, want 1 (loaded again)", s.Generation)
	}
	w.check("loaded again", reach{0, 1, true}, reach{2, 1, true})
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
