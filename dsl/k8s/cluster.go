package k8s

import (
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

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
}

type namespace struct {
	name   string
	labels map[string]string
}

type pod struct {
	obj       *object
	namespace string
	name      string
	labels    map[string]string // every label of the endpoint, reserved ones included
	addrs     []netip.Prefix
	ports     []corev1.ContainerPort
	endpoint  *dsl.Endpoint
	// needsName is set when a named port splits rules per pod, so the pod
	// must carry LabelPodName.
	needsName bool
}

func newCluster() *cluster {
	return &cluster{namespaces: map[string]*namespace{}, byName: map[string]*pod{}, byObj: map[*object]*pod{}}
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
		ns = "default"
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
	if len(ep.Addrs) == 0 {
		return
	}
	name := ep.Name.Name
	if prev, dup := c.byName[name]; dup {
		ds.Errorf(o.at("metadata", "name"), "Pod %s/%s appears twice (first at %s)", ns, p.Name, prev.endpoint.Pos)
		return
	}
	var ports []corev1.ContainerPort
	for _, ctr := range p.Spec.Containers {
		ports = append(ports, ctr.Ports...)
	}
	sa := p.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	labels := maps.Clone(p.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelNamespace] = ns
	labels[LabelServiceAccount] = sa
	pd := &pod{obj: o, namespace: ns, name: p.Name, labels: labels, addrs: addrs, ports: ports, endpoint: ep}
	c.pods = append(c.pods, pd)
	c.byName[name] = pd
	c.byObj[o] = pd
}

// finish gives every pod its namespace's labels (known only once every
// file is read). A namespace with pods but no Namespace object has just the
// automatic kubernetes.io/metadata.name label.
func (c *cluster) finish() {
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

// writeLabels fills in the endpoints' labels, sorted by key, once the
// policies have said which pods need LabelPodName.
func (c *cluster) writeLabels() {
	for _, p := range c.pods {
		if p.needsName {
			p.labels[LabelPodName] = p.name
		}
		keys := slices.Sorted(maps.Keys(p.labels))
		p.endpoint.Labels = p.endpoint.Labels[:0]
		written := p.obj.fieldsAt("metadata", "labels")
		var missing *dsl.Pos // where a label the object does not write points
		for _, k := range keys {
			pos, ok := written[k]
			if !ok {
				if missing == nil {
					at := p.obj.at("metadata", "labels", k)
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
