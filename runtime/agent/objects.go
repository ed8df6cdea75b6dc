package agent

import (
	"encoding/json"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/polc-dev/polc/dsl/k8s"
)

// Cilium's policy resources, read through the dynamic client (no Cilium Go
// module needed: the objects go to dsl/k8s as YAML anyway).
var (
	CiliumNetworkPolicies            = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumnetworkpolicies"}
	CiliumClusterwideNetworkPolicies = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumclusterwidenetworkpolicies"}
)

// Watched is every resource the agent lists and watches: deploy/rbac.yaml
// grants get, list and watch on each (TestDeployRBAC), and the agent's
// test checks it touches no other (TestAgentFollowsTheAPI).
var Watched = []schema.GroupVersionResource{
	{Version: "v1", Resource: "pods"},
	{Version: "v1", Resource: "namespaces"},
	{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"},
	CiliumNetworkPolicies,
	CiliumClusterwideNetworkPolicies,
}

// snapshot is the informers' objects at one moment.
type snapshot struct {
	namespaces []*corev1.Namespace
	pods       []*corev1.Pod
	netpols    []*networkingv1.NetworkPolicy
	cilium     []*unstructured.Unstructured // CNPs and CCNPs
}

// sources renders the snapshot as the files `polc build --k8s` reads, one
// object a file, sorted, so that the same cluster state always gives the
// same sources (and the same bundle digest). Each file is named
// KIND/NAMESPACE/NAME (KIND/NAME when cluster-scoped), so a diagnostic's
// position names the object: "NetworkPolicy/shop/web:9:7: ...".
//
// Objects are pruned to what the reader uses: metadata is name,
// namespace and labels (a resourceVersion or a pod condition's timestamp
// would otherwise change the bundle on every status update), pods keep
// the fields that make endpoints (node, host network, service account,
// container ports, phase, addresses). Informer objects carry no
// apiVersion and kind; they are set here.
func (s *snapshot) sources() ([]k8s.Source, error) {
	var srcs []k8s.Source
	add := func(kind, ns, name string, obj map[string]any) error {
		b, err := json.MarshalIndent(obj, "", "  ")
		if err != nil {
			return fmt.Errorf("render %s %s/%s: %w", kind, ns, name, err)
		}
		path := kind + "/" + name
		if ns != "" {
			path = kind + "/" + ns + "/" + name
		}
		srcs = append(srcs, k8s.Source{Path: path, Src: append(b, '\n')})
		return nil
	}
	for _, n := range s.namespaces {
		if err := add("Namespace", "", n.Name, map[string]any{
			"apiVersion": "v1", "kind": "Namespace", "metadata": meta("", n.Name, n.Labels),
		}); err != nil {
			return nil, err
		}
	}
	for _, p := range s.pods {
		if err := add("Pod", p.Namespace, p.Name, renderPod(p)); err != nil {
			return nil, err
		}
	}
	for _, np := range s.netpols {
		if err := add("NetworkPolicy", np.Namespace, np.Name, map[string]any{
			"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
			"metadata": meta(np.Namespace, np.Name, np.Labels), "spec": np.Spec,
		}); err != nil {
			return nil, err
		}
	}
	for _, u := range s.cilium {
		obj := map[string]any{
			"apiVersion": u.GetAPIVersion(), "kind": u.GetKind(),
			"metadata": meta(u.GetNamespace(), u.GetName(), u.GetLabels()),
		}
		for _, f := range []string{"spec", "specs"} {
			if v, ok := u.Object[f]; ok {
				obj[f] = v
			}
		}
		if err := add(u.GetKind(), u.GetNamespace(), u.GetName(), obj); err != nil {
			return nil, err
		}
	}
	sort.SliceStable(srcs, func(i, j int) bool { return srcs[i].Path < srcs[j].Path })
	return srcs, nil
}

func meta(ns, name string, labels map[string]string) map[string]any {
	m := map[string]any{"name": name}
	if ns != "" {
		m["namespace"] = ns
	}
	if len(labels) > 0 {
		m["labels"] = labels
	}
	return m
}

func renderPod(p *corev1.Pod) map[string]any {
	var ctrs []map[string]any
	for _, c := range p.Spec.Containers {
		ctr := map[string]any{"name": c.Name}
		if len(c.Ports) > 0 {
			ctr["ports"] = c.Ports
		}
		ctrs = append(ctrs, ctr)
	}
	spec := map[string]any{"containers": ctrs}
	if p.Spec.NodeName != "" {
		spec["nodeName"] = p.Spec.NodeName
	}
	if p.Spec.HostNetwork {
		spec["hostNetwork"] = true
	}
	if p.Spec.ServiceAccountName != "" {
		spec["serviceAccountName"] = p.Spec.ServiceAccountName
	}
	status := map[string]any{}
	if p.Status.Phase != "" {
		status["phase"] = p.Status.Phase
	}
	if p.Status.PodIP != "" {
		status["podIP"] = p.Status.PodIP
	}
	if len(p.Status.PodIPs) > 0 {
		status["podIPs"] = p.Status.PodIPs
	}
	return map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": meta(p.Namespace, p.Name, p.Labels), "spec": spec, "status": status,
	}
}

// readOptions are the dsl/k8s options the agent reads the cluster with:
// the node's bundle, where the pods on this node are local endpoints and
// every other pod a remote identity (docs/kubernetes.md, "Node bundles").
func readOptions(node string) k8s.Options {
	return k8s.Options{Node: node}
}

// localPod is a pod of this node that policy applies to: it has an
// address, its own network namespace and is not over. A terminating pod
// (deletionTimestamp set) still sends and receives until it is gone, so
// it stays attached until the API server deletes it.
type localPod struct {
	endpoint string // NAMESPACE.POD, as dsl/k8s names it
	addr     string // status.podIP
}

func localPods(node string, pods []*corev1.Pod) []localPod {
	var out []localPod
	for _, p := range pods {
		if p.Spec.NodeName != node || p.Spec.HostNetwork || p.Status.PodIP == "" ||
			p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		out = append(out, localPod{endpoint: k8s.EndpointName(p.Namespace, p.Name), addr: p.Status.PodIP})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].endpoint < out[j].endpoint })
	return out
}
