package agent

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/polc-dev/polc/dsl"
	"github.com/polc-dev/polc/dsl/k8s"
)

func testSnapshot() *snapshot {
	return &snapshot{
		namespaces: []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: testNS, Labels: map[string]string{"team": "shop"}, ResourceVersion: "7"}}},
		pods:       []*corev1.Pod{testPod(1, "api"), testPod(0, "web")},
		netpols:    []*networkingv1.NetworkPolicy{apiIngress("web")},
		cilium: []*unstructured.Unstructured{{Object: map[string]any{
			"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy",
			"metadata": map[string]any{"name": "all", "resourceVersion": "9"},
			"spec":     map[string]any{"endpointSelector": map[string]any{}},
			"status":   map[string]any{"nodes": map[string]any{}},
		}}},
	}
}

func paths(srcs []k8s.Source) []string {
	var out []string
	for _, s := range srcs {
		out = append(out, s.Path)
	}
	return out
}

// Each object is one file named KIND/NS/NAME, sorted; what changes on
// every status update (resourceVersion, conditions, timestamps) is not in
// it, so it does not change the bundle; what the reader uses is.
func TestSources(t *testing.T) {
	snap := testSnapshot()
	srcs, err := snap.sources()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"CiliumClusterwideNetworkPolicy/all", "Namespace/shop", "NetworkPolicy/shop/api-ingress", "Pod/shop/api", "Pod/shop/web"}
	if d := cmp.Diff(want, paths(srcs)); d != "" {
		t.Fatalf("paths (-want +got):\n%s", d)
	}
	for _, s := range srcs {
		for _, volatile := range []string{"resourceVersion", "creationTimestamp", "conditions", `"status": {`} {
			if strings.Contains(string(s.Src), volatile) && !(volatile == `"status": {` && strings.HasPrefix(s.Path, "Pod/")) {
				t.Errorf("%s holds %s:\n%s", s.Path, volatile, s.Src)
			}
		}
	}
	// A status update that changes nothing the reader uses.
	busy := testSnapshot()
	p := busy.pods[0]
	p.ResourceVersion = "123"
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
	p.Status.StartTime = &metav1.Time{Time: metav1.Now().Time}
	p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
	again, err := busy.sources()
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(srcs, again); d != "" {
		t.Errorf("a status update changed the sources (-before +after):\n%s", d)
	}
	// A relabel does.
	busy.pods[0].Labels = map[string]string{"app": "other"}
	relabelled, _ := busy.sources()
	if cmp.Equal(srcs, relabelled) {
		t.Error("a relabel did not change the sources")
	}
	// What dsl/k8s reads from them: endpoints with addresses, the policies.
	files, diags := k8s.ReadFiles(srcs, readOptions(testNode))
	if diags.HasErrors() {
		t.Fatalf("read: %v", diags)
	}
	var b strings.Builder
	for _, f := range files {
		b.WriteString(f.Path + ":\n" + string(dsl.Format(f)))
	}
	got := b.String()
	for _, w := range []string{
		"Pod/shop/api:\n# Pod shop/api\nendpoint shop.api labels(app=api, ",
		`"k8s:io.cilium.k8s.namespace.labels.team"=shop`, // the namespace's labels
		"addr 10.201.2.2, fd00:201:2::2\n",
		"Pod/shop/web:\n# Pod shop/web\nendpoint shop.web labels(app=web, ",
		"NetworkPolicy/shop/api-ingress:\n# NetworkPolicy shop/api-ingress\npolicy shop.api-ingress {",
		`ingress allow from {app=web, "k8s:io.kubernetes.pod.namespace"=shop} on tcp/8080`,
		"CiliumClusterwideNetworkPolicy/all:\n# CiliumClusterwideNetworkPolicy all\npolicy ccnp_all {",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("read declarations lack %q:\n%s", w, got)
		}
	}
}

// Only this node's pods with an address, their own network and not over
// are attached.
func TestLocalPods(t *testing.T) {
	other := testPod(0, "web")
	other.Name, other.Spec.NodeName = "elsewhere", "node-b"
	host := testPod(0, "web")
	host.Name, host.Spec.HostNetwork = "hostnet", true
	done := testPod(0, "web")
	done.Name, done.Status.Phase = "done", corev1.PodSucceeded
	pending := testPod(0, "web")
	pending.Name, pending.Status.PodIP, pending.Status.PodIPs = "pending", "", nil
	terminating := testPod(2, "db")
	terminating.DeletionTimestamp = &metav1.Time{Time: metav1.Now().Time}
	got := localPods(testNode, []*corev1.Pod{testPod(1, "api"), other, host, done, pending, terminating, testPod(0, "web")})
	want := []localPod{{"shop.api", "10.201.2.2"}, {"shop.db", "10.201.3.2"}, {"shop.web", "10.201.1.2"}}
	if d := cmp.Diff(want, got, cmp.AllowUnexported(localPod{})); d != "" {
		t.Errorf("local pods (-want +got):\n%s", d)
	}
}
