package k8s

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	anpv1alpha1 "sigs.k8s.io/network-policy-api/apis/v1alpha1"
	cnpv1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/polc-dev/polc/dsl"
)

// The tiered kinds of sig-network's network-policy-api
// (sigs.k8s.io/network-policy-api): ClusterNetworkPolicy (v1alpha2,
// v1beta1), with its Admin and Baseline tiers, and the v1alpha1
// AdminNetworkPolicy and BaselineAdminNetworkPolicy it replaced. Each
// object becomes one tiered dsl.Policy (plus copies for ingress named
// ports, see tieredPolicies); docs/kubernetes.md states each rule.

// tieredPolicy reads an object of a tiered kind.
func (r *reader) tieredPolicy(o *object) []*dsl.Policy {
	switch kindOf(o) {
	case kindClusterNetworkPolicy:
		return r.clusterNetworkPolicy(o)
	case kindAdminNetworkPolicy:
		return r.adminNetworkPolicy(o, false)
	}
	return r.adminNetworkPolicy(o, true)
}

// tieredSource is one object of a tiered kind, in a form common to the
// three APIs: their rules, peers and ports differ only in spelling.
type tieredSource struct {
	what        string // the kind, for messages
	prefix      string // of the policy name: cnp., anp., banp.
	name        string
	tier        dsl.Tier
	tierPos     dsl.Pos
	priority    int
	priorityPos dsl.Pos
	subject     tieredSubject
	rules       []tieredRule
}

type tieredSubject struct {
	namespaces *metav1.LabelSelector
	pods       *tieredPods
}

// tieredPods is a NamespacedPod: pods matching podSelector in namespaces
// matching namespaceSelector.
type tieredPods struct {
	namespaceSelector, podSelector metav1.LabelSelector
}

type tieredRule struct {
	dir    dsl.Direction
	action string // as written: Accept, Allow, Deny, Pass
	name   string
	path   []any // of the rule
	peers  []tieredPeer
	ports  []tieredPort
	field  string // of the ports: protocols (CNP) or ports (ANP, BANP)
	hasL4  bool   // the ports field is present
	peerOf string // from or to
}

type tieredPeer struct {
	namespaces  *metav1.LabelSelector
	pods        *tieredPods
	nodes       *metav1.LabelSelector
	networks    []string
	domainNames []string
}

// tieredPort is one entry of protocols (CNP) or ports (ANP, BANP): a
// port, a range or a named port. portPath leads from the entry to what
// holds the number or range (tcp.destinationPort, portNumber...) or the
// name, for positions.
type tieredPort struct {
	proto      string // tcp, udp, sctp; any for a named port
	number     int32
	start, end int32
	named      string
	portPath   []any
}

// clusterNetworkPolicy reads a policy.networking.k8s.io/v1alpha2 or
// v1beta1 ClusterNetworkPolicy. The two versions' types are identical
// (the fields are checked against the object's own version); both decode
// into v1alpha2's.
func (r *reader) clusterNetworkPolicy(o *object) []*dsl.Policy {
	const what = "ClusterNetworkPolicy"
	specType := reflect.TypeFor[cnpv1alpha2.ClusterNetworkPolicySpec]()
	if o.apiVersion == cnpv1beta1.GroupVersion.String() {
		specType = reflect.TypeFor[cnpv1beta1.ClusterNetworkPolicySpec]()
	}
	var p cnpv1alpha2.ClusterNetworkPolicy
	decoded, ok := r.decodeTiered(o, what, specType, &p)
	if !decoded {
		return nil
	}
	src := &tieredSource{what: what, prefix: "cnp.", name: p.Name}
	ok = r.tieredMeta(o, src, p.Annotations) && ok
	switch p.Spec.Tier {
	case cnpv1alpha2.AdminTier:
		src.tier = dsl.TierAdmin
	case cnpv1alpha2.BaselineTier:
		src.tier = dsl.TierBaseline
	default:
		if present(o, "spec", "tier") {
			r.ds.Errorf(o.at("spec", "tier"), "%s: tier %q: expected Admin or Baseline", what, p.Spec.Tier)
		} else {
			r.ds.Errorf(o.at("spec"), "%s: spec.tier is required (Admin or Baseline)", what)
		}
		ok = false
	}
	src.tierPos = o.at("spec", "tier")
	ok = r.tieredPriority(o, src, p.Spec.Priority) && ok
	src.subject = tieredSubject{namespaces: p.Spec.Subject.Namespaces}
	if sp := p.Spec.Subject.Pods; sp != nil {
		src.subject.pods = &tieredPods{sp.NamespaceSelector, sp.PodSelector}
	}
	for i, in := range p.Spec.Ingress {
		rule := tieredRule{dir: dsl.Ingress, action: string(in.Action), name: in.Name, path: []any{"spec", "ingress", i}, field: "protocols", peerOf: "from"}
		for _, f := range in.From {
			rule.peers = append(rule.peers, cnpPeer(f.Namespaces, f.Pods, nil, nil, nil))
		}
		rule.ports, rule.hasL4 = cnpProtocols(in.Protocols), present(o, append(rule.path, "protocols")...)
		src.rules = append(src.rules, rule)
	}
	for i, eg := range p.Spec.Egress {
		rule := tieredRule{dir: dsl.Egress, action: string(eg.Action), name: eg.Name, path: []any{"spec", "egress", i}, field: "protocols", peerOf: "to"}
		for _, t := range eg.To {
			rule.peers = append(rule.peers, cnpPeer(t.Namespaces, t.Pods, t.Nodes, t.Networks, t.DomainNames))
		}
		rule.ports, rule.hasL4 = cnpProtocols(eg.Protocols), present(o, append(rule.path, "protocols")...)
		src.rules = append(src.rules, rule)
	}
	if !ok {
		r.tieredRulesCheckOnly(o, src)
		return nil
	}
	return r.tieredPolicies(o, src)
}

func cnpPeer(ns *metav1.LabelSelector, pods *cnpv1alpha2.NamespacedPod, nodes *metav1.LabelSelector, networks []cnpv1alpha2.CIDR, domains []cnpv1alpha2.DomainName) tieredPeer {
	p := tieredPeer{namespaces: ns, nodes: nodes}
	if pods != nil {
		p.pods = &tieredPods{pods.NamespaceSelector, pods.PodSelector}
	}
	for _, n := range networks {
		p.networks = append(p.networks, string(n))
	}
	for _, d := range domains {
		p.domainNames = append(p.domainNames, string(d))
	}
	return p
}

func cnpProtocols(ps []cnpv1alpha2.ClusterNetworkPolicyProtocol) []tieredPort {
	var out []tieredPort
	for _, p := range ps {
		var tp tieredPort
		var dp *cnpv1alpha2.Port
		switch {
		case p.TCP != nil:
			tp.proto, dp, tp.portPath = "tcp", p.TCP.DestinationPort, []any{"tcp", "destinationPort"}
		case p.UDP != nil:
			tp.proto, dp, tp.portPath = "udp", p.UDP.DestinationPort, []any{"udp", "destinationPort"}
		case p.SCTP != nil:
			tp.proto, dp, tp.portPath = "sctp", p.SCTP.DestinationPort, []any{"sctp", "destinationPort"}
		default:
			tp.proto, tp.named, tp.portPath = "any", p.DestinationNamedPort, []any{"destinationNamedPort"}
		}
		if dp != nil {
			tp.number = dp.Number
			if dp.Range != nil {
				tp.start, tp.end = dp.Range.Start, dp.Range.End
			}
		}
		out = append(out, tp)
	}
	return out
}

// adminNetworkPolicy reads a policy.networking.k8s.io/v1alpha1
// AdminNetworkPolicy (the admin tier, actions Allow, Deny and Pass) or,
// baseline set, a BaselineAdminNetworkPolicy (the baseline tier, actions
// Allow and Deny; the API allows one, named "default", with no priority:
// 0 here). A BaselineAdminNetworkPolicy's fields are checked against its
// own type; its spec, the AdminNetworkPolicy's without priority and
// domainNames, then decodes as an AdminNetworkPolicy's.
func (r *reader) adminNetworkPolicy(o *object, baseline bool) []*dsl.Policy {
	what, specType := "AdminNetworkPolicy", reflect.TypeFor[anpv1alpha1.AdminNetworkPolicySpec]()
	if baseline {
		what, specType = "BaselineAdminNetworkPolicy", reflect.TypeFor[anpv1alpha1.BaselineAdminNetworkPolicySpec]()
	}
	var p anpv1alpha1.AdminNetworkPolicy
	decoded, ok := r.decodeTiered(o, what, specType, &p)
	if !decoded {
		return nil
	}
	src := &tieredSource{what: what, prefix: "anp.", name: p.Name, tier: dsl.TierAdmin, tierPos: o.at("kind")}
	ok = r.tieredMeta(o, src, p.Annotations) && ok
	if baseline {
		src.prefix, src.tier, src.priorityPos = "banp.", dsl.TierBaseline, o.at("kind")
		if p.Name != "" && p.Name != "default" {
			r.ds.Errorf(o.at("metadata", "name"), "%s: name %q: the API allows one BaselineAdminNetworkPolicy, named \"default\"", what, p.Name)
			ok = false
		}
	} else {
		ok = r.tieredPriority(o, src, p.Spec.Priority) && ok
	}
	src.subject = anpSubject(p.Spec.Subject)
	for i, in := range p.Spec.Ingress {
		rule := tieredRule{dir: dsl.Ingress, action: string(in.Action), name: in.Name, path: []any{"spec", "ingress", i}, field: "ports", peerOf: "from"}
		for _, f := range in.From {
			rule.peers = append(rule.peers, anpPeer(f.Namespaces, f.Pods, nil, nil, nil))
		}
		rule.ports, rule.hasL4 = anpPorts(in.Ports), present(o, append(rule.path, "ports")...)
		src.rules = append(src.rules, rule)
	}
	for i, eg := range p.Spec.Egress {
		rule := tieredRule{dir: dsl.Egress, action: string(eg.Action), name: eg.Name, path: []any{"spec", "egress", i}, field: "ports", peerOf: "to"}
		for _, t := range eg.To {
			rule.peers = append(rule.peers, anpPeer(t.Namespaces, t.Pods, t.Nodes, t.Networks, t.DomainNames))
		}
		rule.ports, rule.hasL4 = anpPorts(eg.Ports), present(o, append(rule.path, "ports")...)
		src.rules = append(src.rules, rule)
	}
	if !ok {
		r.tieredRulesCheckOnly(o, src)
		return nil
	}
	return r.tieredPolicies(o, src)
}

func anpSubject(s anpv1alpha1.AdminNetworkPolicySubject) tieredSubject {
	out := tieredSubject{namespaces: s.Namespaces}
	if s.Pods != nil {
		out.pods = &tieredPods{s.Pods.NamespaceSelector, s.Pods.PodSelector}
	}
	return out
}

func anpPeer(ns *metav1.LabelSelector, pods *anpv1alpha1.NamespacedPod, nodes *metav1.LabelSelector, networks []anpv1alpha1.CIDR, domains []anpv1alpha1.DomainName) tieredPeer {
	p := tieredPeer{namespaces: ns, nodes: nodes}
	if pods != nil {
		p.pods = &tieredPods{pods.NamespaceSelector, pods.PodSelector}
	}
	for _, n := range networks {
		p.networks = append(p.networks, string(n))
	}
	for _, d := range domains {
		p.domainNames = append(p.domainNames, string(d))
	}
	return p
}

func anpPorts(ps *[]anpv1alpha1.AdminNetworkPolicyPort) []tieredPort {
	if ps == nil {
		return nil
	}
	var out []tieredPort
	for _, p := range *ps {
		var tp tieredPort
		switch {
		case p.PortNumber != nil:
			tp.proto, tp.number, tp.portPath = anpProto(p.PortNumber.Protocol), p.PortNumber.Port, []any{"portNumber"}
		case p.PortRange != nil:
			tp.proto, tp.start, tp.end, tp.portPath = anpProto(p.PortRange.Protocol), p.PortRange.Start, p.PortRange.End, []any{"portRange"}
		case p.NamedPort != nil:
			tp.proto, tp.named, tp.portPath = "any", *p.NamedPort, []any{"namedPort"}
		}
		out = append(out, tp)
	}
	return out
}

// anpProto maps a v1alpha1 protocol (TCP when empty, the API's default)
// to polc's; anything else is kept for tieredPort to report.
func anpProto(p any) string {
	s := fmt.Sprint(p)
	switch s {
	case "", "TCP":
		return "tcp"
	case "UDP":
		return "udp"
	case "SCTP":
		return "sctp"
	}
	return "?" + s
}

// decodeTiered checks o's fields against the API's types and decodes it
// into out. decoded is whether out holds the object (to look for more
// errors in), clean whether there was no error.
func (r *reader) decodeTiered(o *object, what string, specType reflect.Type, out any) (decoded, clean bool) {
	before := len(r.ds)
	checkTopFields(o, []string{"apiVersion", "kind", "metadata", "spec", "status"}, &r.ds)
	_, meta := field(o.node, "metadata")
	checkFields(o, meta, reflect.TypeFor[metav1.ObjectMeta](), what+" metadata", &r.ds)
	_, spec := field(o.node, "spec")
	r.removedFields(o, spec, what)
	checkFields(o, spec, specType, what, &r.ds)
	if spec == nil {
		r.ds.Errorf(o.at("kind"), "%s has no spec", what)
		return false, false
	}
	fieldErrors := len(r.ds) > before
	if err := decode(o.node, out); err != nil {
		if !fieldErrors { // else the field errors say it better
			r.ds.Errorf(o.pos(o.node), "%s: %v", what, err)
		}
		return false, false
	}
	return true, !fieldErrors
}

// removedFields reports, as unsupported, the fields of earlier
// network-policy-api releases that the current types lack: sameLabels and
// notSameLabels (of a v1alpha1 namespaces peer, a NamespacedPeer, before
// v0.1.3), which checkFields would call unknown. It reports them
// under a clearer message and takes checkFields' "unknown field" for the
// same key out afterwards (see dropUnknownAt).
func (r *reader) removedFields(o *object, spec *yaml.Node, what string) {
	for _, dir := range [][2]string{{"ingress", "from"}, {"egress", "to"}} {
		_, rules := field(spec, dir[0])
		if rules == nil || rules.Kind != yaml.SequenceNode {
			continue
		}
		for _, rule := range rules.Content {
			_, peers := field(rule, dir[1])
			if peers == nil || peers.Kind != yaml.SequenceNode {
				continue
			}
			for _, peer := range peers.Content {
				_, ns := field(peer, "namespaces")
				for _, old := range []string{"sameLabels", "notSameLabels"} {
					if k, _ := field(ns, old); k != nil {
						r.ds.Errorf(o.pos(k), "%s: field %q is not supported: it was removed from the API in network-policy-api v0.1.3; polc reads the v0.3.0 types", what, old)
						r.hideUnknown = append(r.hideUnknown, o.pos(k))
					}
				}
			}
		}
	}
}

// tieredMeta checks the metadata of a cluster-scoped tiered object. It
// reports false after an error.
func (r *reader) tieredMeta(o *object, src *tieredSource, annotations map[string]string) bool {
	if src.name == "" {
		r.ds.Errorf(o.pos(o.node), "%s has no metadata.name", src.what)
		return false
	}
	if present(o, "metadata", "namespace") {
		r.ds.Warnf(o.at("metadata", "namespace"), "%s is cluster-scoped: metadata.namespace ignored", src.what)
	}
	if v, set := annotations[AuditAnnotation]; set && v != "false" {
		r.ds.Errorf(o.at("metadata", "annotations", AuditAnnotation), "annotation %s: audit mode is not supported on %s (a tiered policy)", AuditAnnotation, src.what)
		return false
	}
	return true
}

// tieredPriority checks spec.priority: required, 0 to 1000.
func (r *reader) tieredPriority(o *object, src *tieredSource, prio int32) bool {
	src.priority = int(prio)
	src.priorityPos = o.at("spec", "priority")
	if !present(o, "spec", "priority") {
		r.ds.Errorf(o.at("spec"), "%s: spec.priority is required (0 to %d)", src.what, dsl.MaxPriority)
		return false
	}
	if prio < 0 || prio > dsl.MaxPriority {
		r.ds.Errorf(src.priorityPos, "%s: priority %d: expected 0 to %d", src.what, prio, dsl.MaxPriority)
		return false
	}
	return true
}

// tieredRulesCheckOnly converts src's rules for their errors only, so that
// one run reports every error of the object.
func (r *reader) tieredRulesCheckOnly(o *object, src *tieredSource) {
	r.tieredSubjectSelector(o, src.subject, []any{"spec", "subject"}, src.what)
	for i := range src.rules {
		r.tieredRuleSpec(o, src, &src.rules[i], true)
	}
}

// tieredPolicies turns src into policies: the object's policy, named
// PREFIX+NAME, with its rules in written order (ingress, then egress; the
// two directions never meet). When ingress rules name ports, which resolve
// on each subject, the subjects of every namespace where a name resolves
// are grouped by what the names resolve to, and each group gets a copy,
// PREFIX+NAME_portN, selecting those pods by name and holding every rule
// of the object with the names resolved; the original leaves those
// namespaces out and drops the named ports. So every subject sees the
// object's rules in their order, in one policy.
func (r *reader) tieredPolicies(o *object, src *tieredSource) []*dsl.Policy {
	sel, ok := r.tieredSubjectSelector(o, src.subject, []any{"spec", "subject"}, src.what)
	var specs []ruleSpec
	var keep []bool
	for i := range src.rules {
		spec, k, good := r.tieredRuleSpec(o, src, &src.rules[i], false)
		ok = ok && good
		specs = append(specs, spec)
		keep = append(keep, k)
	}
	if !ok {
		return nil
	}
	doc := fmt.Sprintf("%s %s (%s tier, priority %d)", src.what, src.name, src.tier, src.priority)
	main := &dsl.Policy{
		Pos:         o.pos(o.node),
		Doc:         dsl.Doc{doc},
		Name:        dsl.Ident{Pos: o.at("metadata", "name"), Name: src.prefix + src.name},
		Select:      sel,
		Tier:        src.tier,
		TierPos:     src.tierPos,
		Priority:    src.priority,
		PriorityPos: src.priorityPos,
	}
	b := r.newPolicy(main)
	subjects := b.subjects()

	// Group the subjects by what the ingress named ports resolve to.
	type group struct {
		pods     []*pod
		resolved map[int][]dsl.L4 // by rule index
		what     []string
	}
	var groups []*group
	bySig := map[string]*group{}
	declared := map[[2]int]bool{}
	type resolution struct {
		resolved map[int][]dsl.L4
		sig      string
		what     []string
	}
	res := make([]resolution, len(subjects))
	split := map[string]bool{} // namespaces with a subject that resolves a name
	for k, p := range subjects {
		resolved := map[int][]dsl.L4{}
		var sig, what []string
		for i, spec := range specs {
			if !keep[i] || spec.dir != dsl.Ingress {
				continue
			}
			for j, np := range spec.named {
				n, proto, found := p.namedPort(np.name, np.proto)
				if !found {
					continue
				}
				declared[[2]int{i, j}] = true
				resolved[i] = append(resolved[i], dsl.L4{Pos: np.pos, Proto: proto, Port: &dsl.Int{Pos: np.pos, Value: int64(n)}})
				sig = append(sig, fmt.Sprintf("%d.%d=%s/%d", i, j, proto, n))
				what = append(what, fmt.Sprintf("%s=%s/%d", np.name, proto, n))
			}
		}
		res[k] = resolution{resolved, strings.Join(sig, ","), what}
		if len(sig) > 0 {
			split[p.namespace] = true
		}
	}
	// Every subject of a namespace where a name resolves goes in a copy
	// (those on which none does too), so that the original can leave
	// those namespaces out: pod names are only unique in a namespace.
	for k, p := range subjects {
		if !split[p.namespace] {
			continue
		}
		key := p.namespace + " " + res[k].sig
		g := bySig[key]
		if g == nil {
			g = &group{resolved: res[k].resolved, what: res[k].what}
			bySig[key] = g
			groups = append(groups, g)
		}
		g.pods = append(g.pods, p)
	}
	for i, spec := range specs {
		if !keep[i] || spec.dir != dsl.Ingress {
			continue
		}
		for j, np := range spec.named {
			if !declared[[2]int{i, j}] {
				b.warnUndeclared(np, dsl.Ingress)
			}
		}
	}

	// The original: every rule, ingress named ports dropped.
	for i, spec := range specs {
		if !keep[i] {
			continue
		}
		if spec.dir == dsl.Ingress && len(spec.named) > 0 {
			if len(spec.ports) == 0 {
				continue // only named ports, none of which this policy's subjects have
			}
			spec.named = nil
		}
		b.add(spec)
	}
	if len(groups) > 0 {
		var nss []string
		for ns := range split {
			nss = append(nss, ns)
		}
		slices.Sort(nss)
		main.Select.Reqs = append(main.Select.Reqs, dsl.Requirement{Pos: main.Select.Pos, Key: LabelNamespace, Op: dsl.OpNotIn, Values: nss})
		r.tieredSplit = append(r.tieredSplit, main)
	}
	r.tiered = append(r.tiered, main)
	out := b.policies()
	if out == nil {
		return nil
	}
	for n, g := range groups {
		for _, p := range g.pods {
			p.needsName = true
		}
		cs := dsl.Selector{Pos: sel.Pos, Reqs: slices.Clone(sel.Reqs)}
		if !hasNamespaceEq(cs, g.pods[0].namespace) {
			cs.Reqs = append(cs.Reqs, namespaceReq(sel.Pos, g.pods[0].namespace))
		}
		cs.Reqs = append(cs.Reqs, dsl.Requirement{Pos: sel.Pos, Key: LabelPodName, Op: dsl.OpIn, Values: sortedPodNames(g.pods)})
		note := "named ports " + strings.Join(g.what, ", ") + " on " + podList(g.pods)
		if len(g.what) == 0 {
			note = "no named port on " + podList(g.pods)
		}
		cp := &dsl.Policy{
			Pos:         main.Pos,
			Doc:         dsl.Doc{doc, note},
			Name:        dsl.Ident{Pos: main.Name.Pos, Name: fmt.Sprintf("%s_port%d", main.Name.Name, n+1)},
			Select:      cs,
			Tier:        main.Tier,
			TierPos:     main.TierPos,
			Priority:    main.Priority,
			PriorityPos: main.PriorityPos,
		}
		cb := r.newPolicy(cp)
		for i, spec := range specs {
			if !keep[i] {
				continue
			}
			spec.quiet = true
			if spec.dir == dsl.Ingress && len(spec.named) > 0 {
				spec.ports = append(slices.Clone(spec.ports), g.resolved[i]...)
				spec.named = nil
				if len(spec.ports) == 0 {
					continue
				}
			}
			cb.add(spec)
		}
		if !r.claimName(cp.Name.Name, cp.Name.Pos) {
			continue
		}
		out = append(out, cp)
	}
	return out
}

// tieredSubjectSelector converts a subject (or a namespaces/pods peer):
// exactly one of namespaces (every pod of the namespaces it selects) and
// pods (pods its podSelector selects in namespaces its namespaceSelector
// selects).
func (r *reader) tieredSubjectSelector(o *object, s tieredSubject, path []any, what string) (dsl.Selector, bool) {
	set := setKeys(o, path...)
	if !present(o, path...) {
		r.ds.Errorf(o.at(path...), "%s: spec.subject is required", what)
		return dsl.Selector{}, false
	}
	if len(set) != 1 {
		r.ds.Errorf(o.at(path...), "%s: %s needs exactly one of namespaces and pods", what, path[len(path)-1])
		return dsl.Selector{}, false
	}
	return r.tieredPodsSelector(o, s.namespaces, s.pods, path, what)
}

func (r *reader) tieredPodsSelector(o *object, namespaces *metav1.LabelSelector, pods *tieredPods, path []any, what string) (dsl.Selector, bool) {
	sel := dsl.Selector{Pos: o.at(path...)}
	// The API requires podSelector (and, in v1alpha1, namespaceSelector)
	// in pods: an object without one cannot exist.
	if namespaces == nil {
		ok := true
		for _, f := range []string{"namespaceSelector", "podSelector"} {
			if !present(o, append(slices.Clone(path), "pods", f)...) && (f == "podSelector" || what != "ClusterNetworkPolicy") {
				r.ds.Errorf(o.at(append(slices.Clone(path), "pods")...), "%s: pods needs %s (write {} for every one)", what, f)
				ok = false
			}
		}
		if !ok {
			return sel, false
		}
	}
	if namespaces != nil {
		s, ok := r.k8sSelector(o, namespaces, append(slices.Clone(path), "namespaces"), LabelNamespaceLabels)
		if !ok {
			return sel, false
		}
		sel.Reqs = s.Reqs
		return sel, true
	}
	ns, ok1 := r.k8sSelector(o, &pods.namespaceSelector, append(slices.Clone(path), "pods", "namespaceSelector"), LabelNamespaceLabels)
	ps, ok2 := r.k8sSelector(o, &pods.podSelector, append(slices.Clone(path), "pods", "podSelector"), "")
	if !ok1 || !ok2 {
		return sel, false
	}
	sel.Reqs = append(ps.Reqs, ns.Reqs...)
	return sel, true
}

// tieredRuleSpec converts one rule. keep is false for a rule that matches
// nothing (its node peers select no node). checkOnly: for the errors only.
func (r *reader) tieredRuleSpec(o *object, src *tieredSource, rule *tieredRule, checkOnly bool) (spec ruleSpec, keep, ok bool) {
	what := src.what
	sub := func(p ...any) []any { return append(slices.Clone(rule.path), p...) }
	spec = ruleSpec{pos: o.at(rule.path...), dir: rule.dir, peerPos: o.at(sub(rule.peerOf)...)}
	if rule.name != "" {
		spec.doc = dsl.Doc{"rule " + rule.name}
	}
	ok = true
	switch {
	case !present(o, sub("action")...):
		r.ds.Errorf(spec.pos, "%s: the rule needs an action (%s)", what, orList(src))
		ok = false
	case rule.action == "Accept" && slices.Contains(tieredActions(src), "Accept"),
		rule.action == "Allow" && slices.Contains(tieredActions(src), "Allow"):
		spec.action = dsl.Allow
	case rule.action == "Deny":
		spec.action = dsl.Deny
	case rule.action == "Pass" && slices.Contains(tieredActions(src), "Pass"):
		spec.action = dsl.Pass
	default:
		r.ds.Errorf(o.at(sub("action")...), "%s: action %q: expected %s", what, rule.action, orList(src))
		ok = false
	}

	// Peers: at least one; each exactly one kind.
	if len(rule.peers) == 0 {
		r.ds.Errorf(spec.pos, "%s: the rule needs at least one peer in %s", what, rule.peerOf)
		ok = false
	}
	hasAddrPeer := false
	for j, p := range rule.peers {
		ppath := sub(rule.peerOf, j)
		set := setKeys(o, ppath...)
		if len(set) != 1 {
			r.ds.Errorf(o.at(ppath...), "%s: a peer needs exactly one of %s", what, peerKinds(rule.dir, src))
			ok = false
			continue
		}
		switch {
		case p.namespaces != nil || p.pods != nil:
			s, good := r.tieredPodsSelector(o, p.namespaces, p.pods, ppath, what)
			if !good {
				ok = false
				continue
			}
			spec.peers = append(spec.peers, dsl.Peer{Pos: o.at(ppath...), Kind: dsl.PeerSelector, Selector: s})
		case p.nodes != nil:
			hasAddrPeer = true
			peers, good := r.tieredNodes(o, p.nodes, append(ppath, "nodes"))
			if !good {
				ok = false
				continue
			}
			spec.peers = append(spec.peers, peers...)
		case len(p.networks) > 0:
			hasAddrPeer = true
			for k, n := range p.networks {
				pos := o.at(append(ppath, "networks", k)...)
				pfx, err := netip.ParsePrefix(n)
				if err != nil || pfx.Masked() != pfx {
					r.ds.Errorf(pos, "%s: network %q: expected a CIDR with no host bits set (10.0.0.0/8, fd00::/8)", what, n)
					ok = false
					continue
				}
				spec.peers = append(spec.peers, dsl.Peer{Pos: pos, Kind: dsl.PeerCIDR, CIDR: dsl.CIDR{Pos: pos, Prefix: dsl.Text{Pos: pos, Text: n}}})
			}
		case len(p.domainNames) > 0:
			r.ds.Errorf(o.keyAt(append(ppath, "domainNames")...), "%s: domainNames is not supported: polc has no peers by DNS name", what)
			ok = false
		default:
			r.ds.Errorf(o.at(append(ppath, set[0])...), "%s: %s: expected at least one item", what, set[0])
			ok = false
		}
	}

	// Ports.
	if rule.hasL4 && len(rule.ports) == 0 {
		r.ds.Errorf(o.at(sub(rule.field)...), "%s: %s: expected at least one item (leave it out for every port)", what, rule.field)
		ok = false
	}
	for k, p := range rule.ports {
		epath := sub(rule.field, k)
		set := setKeys(o, epath...)
		if len(set) != 1 {
			r.ds.Errorf(o.at(epath...), "%s: a %s entry needs exactly one of %s", what, strings.TrimSuffix(rule.field, "s"), portKinds(src))
			ok = false
			continue
		}
		ppath := append(slices.Clone(epath), p.portPath...)
		ppos := o.at(ppath...)
		if strings.HasPrefix(p.proto, "?") {
			r.ds.Errorf(o.at(append(epath, set[0], "protocol")...), "%s: protocol %q: expected TCP, UDP or SCTP", what, p.proto[1:])
			ok = false
			continue
		}
		if p.proto == "any" {
			switch {
			case hasAddrPeer:
				r.ds.Errorf(ppos, "%s: a named port cannot go with nodes or networks peers (they have no named ports)", what)
				ok = false
			case validPortName(p.named) != "":
				r.ds.Errorf(ppos, "%s: named port %q: %s", what, p.named, validPortName(p.named))
				ok = false
			default:
				spec.named = append(spec.named, namedPort{pos: ppos, proto: "any", name: p.named})
			}
			continue
		}
		// Which of a number and a range: CNP's destinationPort holds
		// exactly one; ANP's entry is portNumber or portRange.
		isRange := set[0] == "portRange"
		npath, rpath := append(slices.Clone(ppath), "port"), ppath
		if src.prefix == "cnp." {
			keys := setKeys(o, ppath...)
			if len(keys) != 1 {
				if present(o, ppath...) {
					r.ds.Errorf(ppos, "%s: destinationPort needs exactly one of number and range", what)
				} else {
					r.ds.Errorf(o.at(append(epath, set[0])...), "%s: %s needs destinationPort", what, set[0])
				}
				ok = false
				continue
			}
			isRange = keys[0] == "range"
			npath, rpath = append(slices.Clone(ppath), "number"), append(slices.Clone(ppath), "range")
		}
		l4 := dsl.L4{Pos: o.at(epath...), Proto: p.proto}
		if isRange {
			if !portOK(p.start) || !portOK(p.end) || p.start >= p.end {
				r.ds.Errorf(o.at(rpath...), "%s: port range %d-%d: expected 1 <= start < end <= 65535", what, p.start, p.end)
				ok = false
				continue
			}
			l4.Port = &dsl.Int{Pos: o.at(append(rpath, "start")...), Value: int64(p.start)}
			l4.PortEnd = &dsl.Int{Pos: o.at(append(rpath, "end")...), Value: int64(p.end)}
		} else {
			if !portOK(p.number) {
				r.ds.Errorf(o.at(npath...), "%s: port %d: expected 1 to 65535", what, p.number)
				ok = false
				continue
			}
			l4.Port = &dsl.Int{Pos: o.at(npath...), Value: int64(p.number)}
		}
		spec.ports = append(spec.ports, l4)
	}
	if !ok || checkOnly {
		return spec, false, ok
	}
	if hasAddrPeer && len(spec.peers) == 0 {
		return spec, false, true // its node peers select no node: matches nothing
	}
	return spec, true, true
}

// tieredNodes converts a nodes peer: the addresses of the Node objects
// whose labels the selector matches (every node for an empty one).
func (r *reader) tieredNodes(o *object, ls *metav1.LabelSelector, path []any) ([]dsl.Peer, bool) {
	sel, ok := r.k8sSelector(o, ls, path, "")
	if !ok {
		return nil, false
	}
	pos := o.at(path...)
	r.needNodes(pos, "a nodes peer")
	var nodes []*node
	for _, n := range r.cl.nodes {
		if selectorMatches(sel, n.labels) {
			nodes = append(nodes, n)
		}
	}
	return nodePeers(pos, nodes), true
}

func portOK(p int32) bool { return p >= 1 && p <= 65535 }

func tieredActions(src *tieredSource) []string {
	switch src.prefix {
	case "cnp.":
		return []string{"Accept", "Deny", "Pass"}
	case "anp.":
		return []string{"Allow", "Deny", "Pass"}
	}
	return []string{"Allow", "Deny"}
}

func orList(src *tieredSource) string {
	a := tieredActions(src)
	return strings.Join(a[:len(a)-1], ", ") + " or " + a[len(a)-1]
}

func peerKinds(dir dsl.Direction, src *tieredSource) string {
	if dir == dsl.Ingress {
		return "namespaces and pods"
	}
	if src.prefix == "banp." {
		return "namespaces, pods, nodes and networks"
	}
	return "namespaces, pods, nodes, networks and domainNames"
}

func portKinds(src *tieredSource) string {
	if src.prefix == "cnp." {
		return "tcp, udp, sctp and destinationNamedPort"
	}
	return "portNumber, portRange and namedPort"
}

// validPortName says what is wrong with a port name, as the API server
// checks it; "" when nothing is.
func validPortName(n string) string {
	if n == "" {
		return "empty"
	}
	return strings.Join(validation.IsValidPortName(n), "; ")
}

// present reports whether the field path names exists in o and is not
// null.
func present(o *object, path ...any) bool {
	return nodeAt(o, path...) != nil
}

// nodeAt returns the node at path in o, nil when the path does not lead
// to one or leads to null.
func nodeAt(o *object, path ...any) *yaml.Node {
	n := deref(o.node)
	for _, p := range path {
		switch p := p.(type) {
		case string:
			_, n = field(n, p)
		case int:
			if n == nil || n.Kind != yaml.SequenceNode || p < 0 || p >= len(n.Content) {
				return nil
			}
			n = deref(n.Content[p])
		}
		if n == nil {
			return nil
		}
	}
	if isNull(n) {
		return nil
	}
	return n
}

// setKeys returns the keys of the mapping at path whose values are not
// null.
func setKeys(o *object, path ...any) []string {
	n := nodeAt(o, path...)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	var keys []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		if !isNull(n.Content[i+1]) {
			keys = append(keys, n.Content[i].Value)
		}
	}
	return keys
}

// checkTierOrder warns where the names of named-port copies break the
// order of objects of equal priority: a copy PREFIX+NAME_portN sorts after
// another object's PREFIX+NAME-x (or NAME.x, NAME0...), which the original
// sorts before. Both then hold the same priority in the same tier, an
// order the API leaves to the implementation; the warning says to make it
// explicit.
func (r *reader) checkTierOrder() {
	for _, s := range r.tieredSplit {
		for _, p := range r.tiered {
			if p == s || p.Tier != s.Tier || p.Priority != s.Priority {
				continue
			}
			rest, found := strings.CutPrefix(p.Name.Name, s.Name.Name)
			if !found || rest == "" || rest[0] >= '_' {
				continue
			}
			r.ds.Warnf(s.Name.Pos, "%s: its named-port copies (%s_portN) are ordered after %s, of the same tier and priority, which the policy itself precedes: give the two different priorities",
				s.Name.Name, s.Name.Name, p.Name.Name)
		}
	}
}

// dropUnknownAt removes the "unknown field" errors at the positions
// removedFields reported better.
func (r *reader) dropUnknownAt() {
	if len(r.hideUnknown) == 0 {
		return
	}
	out := r.ds[:0]
	for _, d := range r.ds {
		if slices.Contains(r.hideUnknown, d.Pos) && strings.Contains(d.Msg, "unknown field") {
			continue
		}
		out = append(out, d)
	}
	r.ds = out
}
