package k8s

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/polc-dev/polc/dsl"
)

// Reserved labels that the reader puts on every pod's endpoint besides the
// pod's own labels. Their keys contain ':', which no Kubernetes label key
// can, so a pod cannot fake them. The names are Cilium's, so a
// CiliumNetworkPolicy that names them (with or without the `k8s:` source
// prefix) means the same thing here.
const (
	// LabelNamespace holds the pod's namespace.
	LabelNamespace = "k8s:io.kubernetes.pod.namespace"
	// LabelNamespaceLabels prefixes each label of the pod's namespace:
	// namespace label team=a becomes k8s:io.cilium.k8s.namespace.labels.team=a.
	LabelNamespaceLabels = "k8s:io.cilium.k8s.namespace.labels."
	// LabelServiceAccount holds the pod's service account.
	LabelServiceAccount = "k8s:io.cilium.k8s.policy.serviceaccount"
	// LabelPodName holds the pod's name. Only pods that a named port must
	// tell apart carry it (see docs/kubernetes.md), so that pods with the
	// same labels keep sharing one identity otherwise.
	LabelPodName = "k8s:io.kubernetes.pod.name"
)

// namespaceNameLabel is the label the API server puts on every namespace.
const namespaceNameLabel = "kubernetes.io/metadata.name"

// EndpointName is the name of the endpoint the reader makes for a pod:
// "NAMESPACE.POD". Namespace names cannot contain dots, so the first dot
// separates the two.
func EndpointName(namespace, pod string) string { return namespace + "." + pod }

// cluster is the snapshot the policies apply to: namespaces and pods from
// every input file.
type cluster struct {
	namespaces map[string]*namespace
	pods       []*pod // with an endpoint, in input order
	byObj      map[*object]*pod
	byName     map[string]*pod
	defaultNS  string // the namespace of objects that name none

	nodes      []*node // Node objects, in input order (node.go)
	nodeByName map[string]*node
}

type namespace struct {
	name   string
	labels map[string]string
}

type pod struct {
	obj       *object
	kind      string // Pod, or the workload kind whose pods this endpoint stands for
	labelPath []any  // where the object writes the pod's labels
	namespace string
	name      string
	labels    map[string]string // every label of the endpoint, reserved ones included
	addrs     []netip.Prefix
	ports     []corev1.ContainerPort
	endpoint  *dsl.Endpoint
	// nodeName is the pod's spec.nodeName (a workload's pod template's):
	// the node it runs on, "" when not scheduled; nodePath is where the
	// object writes it.
	nodeName string
	nodePath []any
	// needsName is set when a named port splits rules per pod, so the pod
	// must carry LabelPodName.
	needsName bool
}

func newCluster(defaultNS string) *cluster {
	return &cluster{namespaces: map[string]*namespace{}, byName: map[string]*pod{}, byObj: map[*object]*pod{}, defaultNS: defaultNS}
}

// addNamespace records a Namespace object.
func (c *cluster) addNamespace(o *object, ds *dsl.Diagnostics) {
	var ns corev1.Namespace
	if err := decode(o.node, &ns); err != nil {
		ds.Errorf(o.pos(o.node), "Namespace: %v", err)
		return
	}
	if ns.Name == "" {
		ds.Errorf(o.pos(o.node), "Namespace has no metadata.name")
		return
	}
	if _, dup := c.namespaces[ns.Name]; dup {
		ds.Errorf(o.at("metadata", "name"), "Namespace %q appears twice", ns.Name)
		return
	}
	labels := maps.Clone(ns.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[namespaceNameLabel] = ns.Name
	c.namespaces[ns.Name] = &namespace{name: ns.Name, labels: labels}
}

// addPod records a Pod object. Pods that no policy can apply to get no
// endpoint: pods without an address yet, pods in the host's network
// namespace, and pods that have terminated (their addresses are free for
// reuse).
func (c *cluster) addPod(o *object, ds *dsl.Diagnostics) {
	var p corev1.Pod
	if err := decode(o.node, &p); err != nil {
		ds.Errorf(o.pos(o.node), "Pod: %v", err)
		return
	}
	if p.Name == "" {
		ds.Errorf(o.pos(o.node), "Pod has no metadata.name")
		return
	}
	ns := p.Namespace
	if ns == "" {
		ns = c.defaultNS
	}
	if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return
	}
	ep := &dsl.Endpoint{
		Pos:  o.pos(o.node),
		Doc:  dsl.Doc{"Pod " + ns + "/" + p.Name},
		Name: dsl.Ident{Pos: o.at("metadata", "name"), Name: EndpointName(ns, p.Name)},
	}
	var addrs []netip.Prefix
	ips := p.Status.PodIPs
	path := []any{"status", "podIPs"}
	if len(ips) == 0 && p.Status.PodIP != "" {
		ips = []corev1.PodIP{{IP: p.Status.PodIP}}
		path = []any{"status", "podIP"}
	}
	for i, ip := range ips {
		pos := o.at(append(path, i, "ip")...)
		if len(p.Status.PodIPs) == 0 {
			pos = o.at(path...)
		}
		ep.Addrs = append(ep.Addrs, dsl.Text{Pos: pos, Text: ip.IP})
		if a, err := netip.ParseAddr(ip.IP); err == nil {
			addrs = append(addrs, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
	}
	// A pod without an address yet (a manifest, not a running cluster)
	// gets a placeholder address in finish.
	c.add(o, "Pod", []any{"metadata", "labels"}, ns, p.Name, p.Labels, &p.Spec, ep, addrs, ds)
}

// add records one endpoint: a Pod, or the pods of a workload.
func (c *cluster) add(o *object, kind string, labelPath []any, ns, name string, podLabels map[string]string,
	spec *corev1.PodSpec, ep *dsl.Endpoint, addrs []netip.Prefix, ds *dsl.Diagnostics) {
	if prev, dup := c.byName[ep.Name.Name]; dup {
		ds.Errorf(o.at("metadata", "name"), "%s %s/%s appears twice (first at %s)", kind, ns, name, prev.endpoint.Pos)
		return
	}
	var ports []corev1.ContainerPort
	for _, ctr := range spec.Containers {
		ports = append(ports, ctr.Ports...)
	}
	sa := spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	labels := maps.Clone(podLabels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelNamespace] = ns
	labels[LabelServiceAccount] = sa
	pd := &pod{obj: o, kind: kind, labelPath: labelPath, namespace: ns, name: name, labels: labels, addrs: addrs, ports: ports, endpoint: ep,
		nodeName: spec.NodeName, nodePath: append(slices.Clone(labelPath[:len(labelPath)-2]), "spec", "nodeName")}
	c.pods = append(c.pods, pd)
	c.byName[ep.Name.Name] = pd
	c.byObj[o] = pd
}

// Workload kinds whose pod template becomes an endpoint, with the short
// name that prefixes the endpoint's pod name (NS.deploy/NAME).
var workloadKinds = map[string]string{
	"Deployment": "deploy", "ReplicaSet": "rs", "StatefulSet": "sts", "DaemonSet": "ds",
	"Job": "job", "CronJob": "cronjob",
}

// workload is what polc reads of a workload object: its pod template.
type workload struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     struct {
		Template    corev1.PodTemplateSpec `json:"template"`
		JobTemplate struct {
			Spec struct {
				Template corev1.PodTemplateSpec `json:"template"`
			} `json:"spec"`
		} `json:"jobTemplate"`
	} `json:"spec"`
}

// addWorkload records a workload (Deployment, StatefulSet, ...) as one
// endpoint standing for its pods: the pod template's labels, service
// account and container ports, and a placeholder address (finish).
func (c *cluster) addWorkload(o *object, ds *dsl.Diagnostics) {
	var w workload
	if err := decode(o.node, &w); err != nil {
		ds.Errorf(o.pos(o.node), "%s: %v", o.kind, err)
		return
	}
	if w.Metadata.Name == "" {
		ds.Errorf(o.pos(o.node), "%s has no metadata.name", o.kind)
		return
	}
	ns := w.Metadata.Namespace
	if ns == "" {
		ns = c.defaultNS
	}
	tmpl, path := &w.Spec.Template, []any{"spec", "template"}
	if o.kind == "CronJob" {
		tmpl, path = &w.Spec.JobTemplate.Spec.Template, []any{"spec", "jobTemplate", "spec", "template"}
	}
	if tmpl.Spec.HostNetwork {
		return
	}
	name := workloadKinds[o.kind] + "/" + w.Metadata.Name
	ep := &dsl.Endpoint{
		Pos:  o.pos(o.node),
		Doc:  dsl.Doc{fmt.Sprintf("%s %s/%s (its pods)", o.kind, ns, w.Metadata.Name)},
		Name: dsl.Ident{Pos: o.at("metadata", "name"), Name: EndpointName(ns, name)},
	}
	c.add(o, o.kind, append(slices.Clone(path), "metadata", "labels"), ns, name, tmpl.Labels, &tmpl.Spec, ep, nil, ds)
}

// PlaceholderRange holds the addresses polc gives endpoints that have
// none (manifests rather than a running cluster's objects): the shared
// address space, which no cluster's pods or the internet use.
var PlaceholderRange = netip.MustParsePrefix("100.64.0.0/10")

// placeholders deals with the endpoints that have no address. With give,
// each gets one from PlaceholderRange, in the order of namespace, then pod
// or workload name, so that the same objects get the same addresses
// whatever the files' order; addresses a real endpoint has are skipped.
// Without give they are dropped. Either way each object is warned about
// once.
func (c *cluster) placeholders(give bool, ds *dsl.Diagnostics) {
	var bare []*pod
	used := map[netip.Addr]bool{}
	for _, a := range c.nodeAddrs() {
		used[a.Addr()] = true
	}
	for _, p := range c.pods {
		if len(p.addrs) == 0 {
			bare = append(bare, p)
		}
		for _, a := range p.addrs {
			used[a.Addr()] = true
		}
	}
	if !give {
		for _, p := range bare {
			ds.Warnf(p.endpoint.Pos, "%s %s/%s has no address: no endpoint (check, explain and test give it a placeholder address; build does not)",
				p.kind, p.namespace, p.shortName())
			delete(c.byName, p.endpoint.Name.Name)
			delete(c.byObj, p.obj)
		}
		c.pods = slices.DeleteFunc(c.pods, func(p *pod) bool { return len(p.addrs) == 0 })
		return
	}
	slices.SortFunc(bare, func(a, b *pod) int { return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name)) })
	next := PlaceholderRange.Addr().Next()
	for _, p := range bare {
		for used[next] {
			next = next.Next()
		}
		if !PlaceholderRange.Contains(next) {
			ds.Errorf(p.endpoint.Pos, "%s %s/%s: no placeholder address left in %s", p.kind, p.namespace, p.shortName(), PlaceholderRange)
			continue
		}
		p.addrs = []netip.Prefix{netip.PrefixFrom(next, 32)}
		p.endpoint.Addrs = []dsl.Text{{Pos: p.endpoint.Pos, Text: next.String()}}
		ds.Warnf(p.endpoint.Pos, "%s %s/%s has no address: its endpoint %s gets the placeholder %s",
			p.kind, p.namespace, p.shortName(), p.endpoint.Name.Name, next)
		next = next.Next()
	}
}

// shortName is the object's own name (a workload's without its kind).
func (p *pod) shortName() string { return strings.TrimPrefix(p.name, workloadKinds[p.kind]+"/") }

// finish gives every pod its namespace's labels (known only once every
// file is read), and endpoints without an address a placeholder one. A
// namespace with pods but no Namespace object has just the automatic
// kubernetes.io/metadata.name label.
func (c *cluster) finish(placeholders bool, ds *dsl.Diagnostics) {
	c.placeholders(placeholders, ds)
	for _, p := range c.pods {
		ns, ok := c.namespaces[p.namespace]
		if !ok {
			ns = &namespace{name: p.namespace, labels: map[string]string{namespaceNameLabel: p.namespace}}
			c.namespaces[p.namespace] = ns
		}
		for k, v := range ns.labels {
			p.labels[LabelNamespaceLabels+k] = v
		}
	}
}

// place makes the endpoints of pods that do not run on node remote
// (docs/kubernetes.md, "Node bundles"): with node "" every endpoint is
// local. A pod is local when its spec.nodeName (a workload's pod
// template's) is node; any other pod is remote, and one with no
// spec.nodeName (not scheduled, or a workload's placeholder) is remote
// with a warning, since nothing says it runs here. known says whether the
// input has a Node object called node; when it does not and no pod runs on
// node either, a warning says so (a typo makes every pod remote).
func (c *cluster) place(node string, known bool, at dsl.Pos, ds *dsl.Diagnostics) {
	if node == "" {
		return
	}
	local := 0
	for _, p := range c.pods {
		switch {
		case p.nodeName == node:
			local++
		case p.nodeName == "":
			p.endpoint.Remote = p.endpoint.Name.Pos
			ds.Warnf(p.endpoint.Pos, "%s %s/%s has no spec.nodeName: remote on node %s (only pods scheduled to %s are local)",
				p.kind, p.namespace, p.shortName(), node, node)
		default:
			p.endpoint.Remote = p.obj.at(p.nodePath...)
		}
	}
	if local == 0 && !known {
		ds.Warnf(at, "node %q: no Node object of that name and no pod on it: every endpoint is remote", node)
	}
}

// writeLabels fills in the endpoints' labels, sorted by key, once the
// policies have said which pods need LabelPodName.
func (c *cluster) writeLabels() {
	for _, p := range c.pods {
		if p.needsName {
			p.labels[LabelPodName] = p.name
		}
		keys := slices.Sorted(maps.Keys(p.labels))
		p.endpoint.Labels = p.endpoint.Labels[:0]
		written := p.obj.fieldsAt(p.labelPath...)
		var missing *dsl.Pos // where a label the object does not write points
		for _, k := range keys {
			pos, ok := written[k]
			if !ok {
				if missing == nil {
					at := p.obj.at(append(slices.Clone(p.labelPath), k)...)
					missing = &at
				}
				pos = *missing
			}
			if strings.HasPrefix(k, "k8s:") {
				pos = p.endpoint.Name.Pos
			}
			p.endpoint.Labels = append(p.endpoint.Labels, dsl.Label{Pos: pos, Key: k, Value: p.labels[k]})
		}
	}
}

// matching returns the pods whose labels satisfy sel, in input order.
func (c *cluster) matching(sel dsl.Selector) []*pod {
	var out []*pod
	for _, p := range c.pods {
		if selectorMatches(sel, p.labels) {
			out = append(out, p)
		}
	}
	return out
}

// selectorMatches reports whether labels satisfy every requirement of sel,
// with Kubernetes' meaning (!= and notin hold when the key is absent).
func selectorMatches(sel dsl.Selector, labels map[string]string) bool {
	for _, r := range sel.Reqs {
		v, ok := labels[r.Key]
		var hold bool
		switch r.Op {
		case dsl.OpEq:
			hold = ok && len(r.Values) == 1 && v == r.Values[0]
		case dsl.OpNotEq:
			hold = !ok || len(r.Values) != 1 || v != r.Values[0]
		case dsl.OpIn:
			hold = ok && slices.Contains(r.Values, v)
		case dsl.OpNotIn:
			hold = !ok || !slices.Contains(r.Values, v)
		case dsl.OpExists:
			hold = ok
		case dsl.OpNotExists:
			hold = !ok
		}
		if !hold {
			return false
		}
	}
	return true
}

// namedPort returns the number and protocol of the container port called
// name on p. proto is "tcp", "udp" or "sctp", or "any" to accept the port
// whatever its protocol (Cilium's ANY).
func (p *pod) namedPort(name, proto string) (number int32, portProto string, ok bool) {
	for _, cp := range p.ports {
		if cp.Name != name {
			continue
		}
		pp := strings.ToLower(string(cp.Protocol))
		if pp == "" {
			pp = "tcp"
		}
		if proto == "any" || proto == pp {
			return cp.ContainerPort, pp, true
		}
	}
	return 0, "", false
}

// sortedPodNames returns the names of pods, sorted.
func sortedPodNames(pods []*pod) []string {
	names := make([]string, len(pods))
	for i, p := range pods {
		names[i] = p.name
	}
	sort.Strings(names)
	return names
}
