package k8s

import (
	"reflect"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/polc-dev/polc/dsl"
)

// networkPolicy turns a networking.k8s.io/v1 NetworkPolicy into policies
// with Kubernetes' meaning; docs/kubernetes.md states each rule.
func (r *reader) networkPolicy(o *object) []*dsl.Policy {
	const what = "NetworkPolicy"
	_, spec := field(o.node, "spec")
	before := len(r.ds)
	checkTopFields(o, []string{"apiVersion", "kind", "metadata", "spec", "status"}, &r.ds)
	_, meta := field(o.node, "metadata")
	checkFields(o, meta, reflect.TypeFor[metav1.ObjectMeta](), what+" metadata", &r.ds)
	checkFields(o, spec, reflect.TypeFor[networkingv1.NetworkPolicySpec](), what, &r.ds)
	if len(r.ds) > before {
		return nil
	}
	var np networkingv1.NetworkPolicy
	if err := decode(o.node, &np); err != nil {
		r.ds.Errorf(o.pos(o.node), "%s: %v", what, err)
		return nil
	}
	if np.Name == "" {
		r.ds.Errorf(o.pos(o.node), "%s has no metadata.name", what)
		return nil
	}
	ns := np.Namespace
	if ns == "" {
		ns = r.cl.defaultNS
	}
	sel, ok := r.k8sSelector(o, &np.Spec.PodSelector, []any{"spec", "podSelector"}, "")
	if !ok {
		return nil
	}
	sel.Reqs = append(sel.Reqs, namespaceReq(o.at("metadata", "namespace"), ns))
	b := r.newPolicy(&dsl.Policy{
		Pos:    o.pos(o.node),
		Doc:    dsl.Doc{"NetworkPolicy " + ns + "/" + np.Name},
		Name:   dsl.Ident{Pos: o.at("metadata", "name"), Name: ns + "." + np.Name},
		Select: sel,
	})
	if pos, ok := r.auditAnnotation(o, np.Annotations); ok {
		b.main.Audit = pos
	}

	// policyTypes, inferred as the API server does when absent: Ingress
	// always, Egress when there are egress rules.
	types := map[networkingv1.PolicyType]dsl.Pos{}
	if len(np.Spec.PolicyTypes) == 0 {
		types[networkingv1.PolicyTypeIngress] = o.at("spec")
		if len(np.Spec.Egress) > 0 {
			types[networkingv1.PolicyTypeEgress] = o.at("spec", "egress")
		}
	}
	for i, t := range np.Spec.PolicyTypes {
		if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
			r.ds.Errorf(o.at("spec", "policyTypes", i), "%s: policy type %q: expected Ingress or Egress", what, t)
			continue
		}
		types[t] = o.at("spec", "policyTypes", i)
	}
	// A policy type isolates its direction whatever the rules say: with no
	// rules it allows nothing.
	if pos, ok := types[networkingv1.PolicyTypeIngress]; ok {
		b.isolate(pos, dsl.Ingress)
	} else if len(np.Spec.Ingress) > 0 {
		r.ds.Warnf(o.at("spec", "ingress"), "%s: ingress rules ignored: policyTypes does not include Ingress", what)
	}
	if pos, ok := types[networkingv1.PolicyTypeEgress]; ok {
		b.isolate(pos, dsl.Egress)
	} else if len(np.Spec.Egress) > 0 {
		r.ds.Warnf(o.at("spec", "egress"), "%s: egress rules ignored: policyTypes does not include Egress", what)
	}

	if _, ok := types[networkingv1.PolicyTypeIngress]; ok {
		for i, rule := range np.Spec.Ingress {
			r.k8sRule(o, b, ns, dsl.Ingress, rule.From, rule.Ports, []any{"spec", "ingress", i}, "from")
		}
	}
	if _, ok := types[networkingv1.PolicyTypeEgress]; ok {
		for i, rule := range np.Spec.Egress {
			r.k8sRule(o, b, ns, dsl.Egress, rule.To, rule.Ports, []any{"spec", "egress", i}, "to")
		}
	}
	return b.policies()
}

func namespaceReq(pos dsl.Pos, ns string) dsl.Requirement {
	return dsl.Requirement{Pos: pos, Key: LabelNamespace, Op: dsl.OpEq, Values: []string{ns}}
}

// k8sRule adds one NetworkPolicyIngressRule or NetworkPolicyEgressRule.
// Peers and ports each default to "all" when absent or empty: a rule with
// no ports matches every protocol and port.
func (r *reader) k8sRule(o *object, b *policyBuilder, ns string, dir dsl.Direction,
	peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, path []any, peerField string) {
	spec := ruleSpec{
		pos:     o.at(path...),
		dir:     dir,
		action:  dsl.Allow,
		peerPos: o.at(append(slices.Clone(path), peerField)...),
	}
	ok := true
	for i, p := range peers {
		peer, good := r.k8sPeer(o, ns, p, append(slices.Clone(path), peerField, i))
		ok = ok && good
		spec.peers = append(spec.peers, peer)
	}
	for i, p := range ports {
		ppath := append(slices.Clone(path), "ports", i)
		pos := o.at(ppath...)
		proto := "tcp"
		if p.Protocol != nil {
			switch *p.Protocol {
			case "TCP", "UDP", "SCTP":
				proto = strings.ToLower(string(*p.Protocol))
			default:
				r.ds.Errorf(o.at(append(ppath, "protocol")...), "NetworkPolicy: protocol %q: expected TCP, UDP or SCTP", *p.Protocol)
				ok = false
				continue
			}
		}
		switch {
		case p.Port == nil:
			if p.EndPort != nil {
				r.ds.Errorf(o.at(append(ppath, "endPort")...), "NetworkPolicy: endPort needs port")
				ok = false
				continue
			}
			spec.ports = append(spec.ports, dsl.L4{Pos: pos, Proto: proto})
		case p.Port.Type == intstr.String:
			if p.EndPort != nil {
				r.ds.Errorf(o.at(append(ppath, "endPort")...), "NetworkPolicy: endPort cannot go with the named port %q", p.Port.StrVal)
				ok = false
				continue
			}
			if errs := validation.IsValidPortName(p.Port.StrVal); len(errs) > 0 {
				r.ds.Errorf(o.at(append(ppath, "port")...), "NetworkPolicy: port %q: %s", p.Port.StrVal, strings.Join(errs, "; "))
				ok = false
				continue
			}
			spec.named = append(spec.named, namedPort{pos: o.at(append(ppath, "port")...), proto: proto, name: p.Port.StrVal})
		default:
			l4 := dsl.L4{Pos: pos, Proto: proto, Port: &dsl.Int{Pos: o.at(append(ppath, "port")...), Value: int64(p.Port.IntVal)}}
			if p.EndPort != nil {
				l4.PortEnd = &dsl.Int{Pos: o.at(append(ppath, "endPort")...), Value: int64(*p.EndPort)}
			}
			spec.ports = append(spec.ports, l4)
		}
	}
	if ok {
		b.add(spec)
	}
}

// k8sPeer converts one NetworkPolicyPeer: an ipBlock, or pods chosen by a
// podSelector (in the policy's namespace), a namespaceSelector (every pod
// of the namespaces it selects) or both (pods matching the podSelector in
// those namespaces).
func (r *reader) k8sPeer(o *object, ns string, p networkingv1.NetworkPolicyPeer, path []any) (dsl.Peer, bool) {
	pos := o.at(path...)
	if p.IPBlock != nil {
		if p.PodSelector != nil || p.NamespaceSelector != nil {
			r.ds.Errorf(pos, "NetworkPolicy: a peer with ipBlock cannot also have podSelector or namespaceSelector")
			return dsl.Peer{}, false
		}
		ipPath := append(slices.Clone(path), "ipBlock")
		c := dsl.CIDR{Pos: o.at(ipPath...), Prefix: dsl.Text{Pos: o.at(append(ipPath, "cidr")...), Text: p.IPBlock.CIDR}}
		if p.IPBlock.CIDR == "" {
			r.ds.Errorf(c.Pos, "NetworkPolicy: ipBlock needs cidr")
			return dsl.Peer{}, false
		}
		for i, e := range p.IPBlock.Except {
			c.Except = append(c.Except, dsl.Text{Pos: o.at(append(ipPath, "except", i)...), Text: e})
		}
		return dsl.Peer{Pos: pos, Kind: dsl.PeerCIDR, CIDR: c}, true
	}
	if p.PodSelector == nil && p.NamespaceSelector == nil {
		r.ds.Errorf(pos, "NetworkPolicy: a peer needs podSelector, namespaceSelector or ipBlock")
		return dsl.Peer{}, false
	}
	sel := dsl.Selector{Pos: pos}
	if p.PodSelector != nil {
		s, ok := r.k8sSelector(o, p.PodSelector, append(slices.Clone(path), "podSelector"), "")
		if !ok {
			return dsl.Peer{}, false
		}
		sel.Reqs = append(sel.Reqs, s.Reqs...)
	}
	if p.NamespaceSelector != nil {
		s, ok := r.k8sSelector(o, p.NamespaceSelector, append(slices.Clone(path), "namespaceSelector"), LabelNamespaceLabels)
		if !ok {
			return dsl.Peer{}, false
		}
		sel.Reqs = append(sel.Reqs, s.Reqs...)
	} else {
		sel.Reqs = append(sel.Reqs, namespaceReq(pos, ns))
	}
	return dsl.Peer{Pos: pos, Kind: dsl.PeerSelector, Selector: sel}, true
}

// k8sSelector converts a LabelSelector, validated by apimachinery, into a
// selector whose keys are prefixed with keyPrefix (LabelNamespaceLabels for
// a namespaceSelector, whose labels the pods carry under that prefix).
func (r *reader) k8sSelector(o *object, ls *metav1.LabelSelector, path []any, keyPrefix string) (dsl.Selector, bool) {
	sel, ok := selectorReqs(o, ls, path, func(k string) (string, error) { return keyPrefix + k, nil }, &r.ds)
	if !ok {
		return sel, false
	}
	// What selectorReqs does not check: label syntax, as the API server does.
	if _, err := metav1.LabelSelectorAsSelector(ls); err != nil {
		r.ds.Errorf(o.at(path...), "invalid label selector: %v", err)
		return dsl.Selector{}, false
	}
	return sel, true
}

// selectorReqs converts a LabelSelector's matchLabels (sorted by key) and
// matchExpressions, mapping every key through mapKey.
func selectorReqs(o *object, ls *metav1.LabelSelector, path []any, mapKey func(string) (string, error), ds *dsl.Diagnostics) (dsl.Selector, bool) {
	sel := dsl.Selector{Pos: o.at(path...)}
	ok := true
	keys := make([]string, 0, len(ls.MatchLabels))
	for k := range ls.MatchLabels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		pos := o.keyAt(append(slices.Clone(path), "matchLabels", k)...)
		key, err := mapKey(k)
		if err != nil {
			ds.Errorf(pos, "%v", err)
			ok = false
			continue
		}
		sel.Reqs = append(sel.Reqs, dsl.Requirement{Pos: pos, Key: key, Op: dsl.OpEq, Values: []string{ls.MatchLabels[k]}})
	}
	for i, e := range ls.MatchExpressions {
		pos := o.at(append(slices.Clone(path), "matchExpressions", i)...)
		key, err := mapKey(e.Key)
		if err != nil {
			ds.Errorf(pos, "%v", err)
			ok = false
			continue
		}
		req := dsl.Requirement{Pos: pos, Key: key}
		switch e.Operator {
		case metav1.LabelSelectorOpIn:
			req.Op = dsl.OpIn
		case metav1.LabelSelectorOpNotIn:
			req.Op = dsl.OpNotIn
		case metav1.LabelSelectorOpExists:
			req.Op = dsl.OpExists
		case metav1.LabelSelectorOpDoesNotExist:
			req.Op = dsl.OpNotExists
		default:
			ds.Errorf(pos, "label selector operator %q: expected In, NotIn, Exists or DoesNotExist", e.Operator)
			ok = false
			continue
		}
		hasValues := req.Op == dsl.OpIn || req.Op == dsl.OpNotIn
		if hasValues != (len(e.Values) > 0) {
			if hasValues {
				ds.Errorf(pos, "label selector operator %s needs values", e.Operator)
			} else {
				ds.Errorf(pos, "label selector operator %s takes no values", e.Operator)
			}
			ok = false
			continue
		}
		if hasValues {
			req.Values = slices.Clone(e.Values)
		}
		sel.Reqs = append(sel.Reqs, req)
	}
	return sel, ok
}

// AuditAnnotation puts a NetworkPolicy or CiliumNetworkPolicy in audit
// mode (docs/kubernetes.md): "true" reports what its rules and isolation
// would deny and enforces nothing; "false" or no annotation enforces it.
const AuditAnnotation = "polc.dev/audit"

// auditAnnotation reads AuditAnnotation: ok with its position when it is
// "true"; any value other than "true" or "false" is an error.
func (r *reader) auditAnnotation(o *object, annotations map[string]string) (dsl.Pos, bool) {
	v, set := annotations[AuditAnnotation]
	if !set {
		return dsl.Pos{}, false
	}
	pos := o.at("metadata", "annotations", AuditAnnotation)
	switch v {
	case "true":
		return pos, true
	case "false":
		return dsl.Pos{}, false
	}
	r.ds.Errorf(pos, "annotation %s: %q, want \"true\" or \"false\"", AuditAnnotation, v)
	return dsl.Pos{}, false
}
