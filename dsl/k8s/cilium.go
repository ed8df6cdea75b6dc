package k8s

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/polc-dev/polc/dsl"
)

// The L3/L4 subset of cilium.io/v2 CiliumNetworkPolicy that polc compiles,
// modelled here rather than imported (Cilium's own types pull in most of
// Cilium). Fields of the real API that polc does not compile are listed
// with a `polc:"unsupported:REASON"` tag, so that using one is a clear
// error rather than an "unknown field" or, worse, silence.

type ciliumPolicy struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            *ciliumRule       `json:"spec,omitempty"`
	Specs           []ciliumRule      `json:"specs,omitempty"`
	Status          any               `json:"status,omitempty"`
}

type ciliumRule struct {
	EndpointSelector  *metav1.LabelSelector `json:"endpointSelector,omitempty"`
	NodeSelector      any                   `json:"nodeSelector,omitempty" polc:"unsupported:host policies make nodes their subjects; polc has no host endpoint, it enforces on pods"`
	Ingress           []ciliumIngress       `json:"ingress,omitempty"`
	IngressDeny       []ciliumIngress       `json:"ingressDeny,omitempty"`
	Egress            []ciliumEgress        `json:"egress,omitempty"`
	EgressDeny        []ciliumEgress        `json:"egressDeny,omitempty"`
	EnableDefaultDeny *ciliumDefaultDeny    `json:"enableDefaultDeny,omitempty"`
	Labels            []ciliumLabel         `json:"labels,omitempty"`
	Description       string                `json:"description,omitempty"`
	Log               any                   `json:"log,omitempty" polc:"unsupported:policy verdict logging"`
}

type ciliumDefaultDeny struct {
	Ingress *bool `json:"ingress,omitempty"`
	Egress  *bool `json:"egress,omitempty"`
}

type ciliumLabel struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Source string `json:"source,omitempty"`
}

type ciliumIngress struct {
	FromEndpoints  []metav1.LabelSelector `json:"fromEndpoints,omitempty"`
	FromCIDR       []string               `json:"fromCIDR,omitempty"`
	FromCIDRSet    []ciliumCIDRRule       `json:"fromCIDRSet,omitempty"`
	FromEntities   []string               `json:"fromEntities,omitempty"`
	ToPorts        []ciliumPortRule       `json:"toPorts,omitempty"`
	ICMPs          []ciliumICMPRule       `json:"icmps,omitempty"`
	FromRequires   any                    `json:"fromRequires,omitempty" polc:"unsupported:requirements across rules (deprecated in Cilium)"`
	FromGroups     any                    `json:"fromGroups,omitempty" polc:"unsupported:cloud provider groups"`
	FromNodes      []metav1.LabelSelector `json:"fromNodes,omitempty"`
	Authentication any                    `json:"authentication,omitempty" polc:"unsupported:mutual authentication"`
}

type ciliumEgress struct {
	ToEndpoints    []metav1.LabelSelector `json:"toEndpoints,omitempty"`
	ToCIDR         []string               `json:"toCIDR,omitempty"`
	ToCIDRSet      []ciliumCIDRRule       `json:"toCIDRSet,omitempty"`
	ToEntities     []string               `json:"toEntities,omitempty"`
	ToPorts        []ciliumPortRule       `json:"toPorts,omitempty"`
	ICMPs          []ciliumICMPRule       `json:"icmps,omitempty"`
	ToRequires     any                    `json:"toRequires,omitempty" polc:"unsupported:requirements across rules (deprecated in Cilium)"`
	ToServices     any                    `json:"toServices,omitempty" polc:"unsupported:service-based rules; name the backends with toEndpoints or toCIDR"`
	ToFQDNs        any                    `json:"toFQDNs,omitempty" polc:"unsupported:FQDN rules need a DNS proxy; polc compiles L3/L4"`
	ToGroups       any                    `json:"toGroups,omitempty" polc:"unsupported:cloud provider groups"`
	ToNodes        []metav1.LabelSelector `json:"toNodes,omitempty"`
	Authentication any                    `json:"authentication,omitempty" polc:"unsupported:mutual authentication"`
}

type ciliumCIDRRule struct {
	CIDR              string   `json:"cidr,omitempty"`
	Except            []string `json:"except,omitempty"`
	CIDRGroupRef      any      `json:"cidrGroupRef,omitempty" polc:"unsupported:CiliumCIDRGroup references"`
	CIDRGroupSelector any      `json:"cidrGroupSelector,omitempty" polc:"unsupported:CiliumCIDRGroup selectors"`
}

type ciliumPortRule struct {
	Ports          []ciliumPort `json:"ports,omitempty"`
	Rules          any          `json:"rules,omitempty" polc:"unsupported:L7 rules (HTTP, Kafka, DNS) need a proxy; polc compiles L3/L4"`
	TerminatingTLS any          `json:"terminatingTLS,omitempty" polc:"unsupported:TLS interception is L7"`
	OriginatingTLS any          `json:"originatingTLS,omitempty" polc:"unsupported:TLS interception is L7"`
	ServerNames    any          `json:"serverNames,omitempty" polc:"unsupported:TLS SNI matching is L7"`
	Listener       any          `json:"listener,omitempty" polc:"unsupported:Envoy listeners are L7"`
}

type ciliumPort struct {
	Port     *intstr.IntOrString `json:"port,omitempty"`
	EndPort  int32               `json:"endPort,omitempty"`
	Protocol string              `json:"protocol,omitempty"`
}

type ciliumICMPRule struct {
	Fields []ciliumICMPField `json:"fields,omitempty"`
}

type ciliumICMPField struct {
	Family string             `json:"family,omitempty"`
	Type   intstr.IntOrString `json:"type"`
}

// ciliumPolicy turns a CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy
// into one policy per rule (spec, then each of specs).
func (r *reader) ciliumPolicy(o *object) []*dsl.Policy {
	what := o.kind
	clusterwide := kindOf(o) == kindCiliumClusterwide
	before := len(r.ds)
	checkTopFields(o, []string{"apiVersion", "kind", "metadata", "spec", "specs", "status"}, &r.ds)
	_, meta := field(o.node, "metadata")
	checkFields(o, meta, reflect.TypeFor[metav1.ObjectMeta](), what+" metadata", &r.ds)
	for _, name := range []string{"spec", "specs"} {
		_, n := field(o.node, name)
		t := reflect.TypeFor[ciliumRule]()
		if name == "specs" {
			t = reflect.TypeFor[[]ciliumRule]()
		}
		checkFields(o, n, t, what, &r.ds)
	}
	// Fields polc does not read are reported above; go on converting the
	// rest so that every error in the object shows in one run.
	fieldErrors := len(r.ds) > before
	var cp ciliumPolicy
	if err := decode(o.node, &cp); err != nil {
		if !fieldErrors { // else the field errors say it better
			r.ds.Errorf(o.pos(o.node), "%s: %v", what, err)
		}
		return nil
	}
	if cp.Metadata.Name == "" {
		r.ds.Errorf(o.pos(o.node), "%s has no metadata.name", what)
		return nil
	}
	ns := cp.Metadata.Namespace
	base := "cnp_"
	if clusterwide {
		ns = ""
		base = "ccnp_" + cp.Metadata.Name
	} else {
		if ns == "" {
			ns = r.cl.defaultNS
		}
		base += ns + "." + cp.Metadata.Name
	}
	if cp.Spec == nil && len(cp.Specs) == 0 {
		r.ds.Errorf(o.pos(o.node), "%s has neither spec nor specs", what)
		return nil
	}
	desc := what + " " + ns + "/" + cp.Metadata.Name
	if clusterwide {
		desc = what + " " + cp.Metadata.Name
	}
	var out []*dsl.Policy
	if cp.Spec != nil {
		out = append(out, r.ciliumRule(o, cp.Spec, []any{"spec"}, ns, base, desc)...)
	}
	for i := range cp.Specs {
		out = append(out, r.ciliumRule(o, &cp.Specs[i], []any{"specs", i}, ns,
			fmt.Sprintf("%s_%d", base, i+1), fmt.Sprintf("%s, specs[%d]", desc, i))...)
	}
	if pos, ok := r.auditAnnotation(o, cp.Metadata.Annotations); ok {
		for _, p := range out {
			p.Audit = pos
		}
	}
	return out
}

// ciliumRule converts one Cilium rule. ns is the policy's namespace, ""
// for a clusterwide policy.
func (r *reader) ciliumRule(o *object, cr *ciliumRule, path []any, ns, name, desc string) []*dsl.Policy {
	what := o.kind
	sub := func(p ...any) []any { return append(slices.Clone(path), p...) }
	if cr.EndpointSelector == nil {
		if cr.NodeSelector != nil {
			return nil // reported as a field polc does not read
		}
		r.ds.Errorf(o.at(path...), "%s: endpointSelector is missing", what)
		return nil
	}
	sel, ok := r.ciliumSelector(o, cr.EndpointSelector, sub("endpointSelector"))
	if !ok {
		return nil
	}
	// A namespaced policy only ever selects pods of its own namespace.
	if ns != "" {
		sel.Reqs = append(sel.Reqs, namespaceReq(o.at("metadata", "namespace"), ns))
	}
	b := r.newPolicy(&dsl.Policy{
		Pos:    o.at(path...),
		Doc:    dsl.Doc{desc},
		Name:   dsl.Ident{Pos: o.at("metadata", "name"), Name: name},
		Select: sel,
	})

	// Default deny: on for each direction with rules (allow or deny),
	// unless enableDefaultDeny says otherwise.
	for _, d := range []struct {
		dir      dsl.Direction
		field    string
		hasRules bool
		enable   *bool
	}{
		{dsl.Ingress, "ingress", len(cr.Ingress)+len(cr.IngressDeny) > 0, defaultDeny(cr.EnableDefaultDeny, dsl.Ingress)},
		{dsl.Egress, "egress", len(cr.Egress)+len(cr.EgressDeny) > 0, defaultDeny(cr.EnableDefaultDeny, dsl.Egress)},
	} {
		switch {
		case d.enable != nil && !*d.enable && d.hasRules:
			r.ds.Errorf(o.at(sub("enableDefaultDeny", d.field)...),
				"%s: enableDefaultDeny.%s: false with %s rules is not supported: in polc a policy with rules in a direction makes it default-deny", what, d.field, d.field)
			b.isolate(o.at(sub("enableDefaultDeny", d.field)...), d.dir) // to go on reading the rules
		case d.enable != nil && *d.enable:
			b.isolate(o.at(sub("enableDefaultDeny", d.field)...), d.dir)
		case d.enable == nil && d.hasRules:
			_, fieldNode := walk(o.node, sub(d.field)...)
			if fieldNode != nil {
				b.isolate(o.at(sub(d.field)...), d.dir)
			} else {
				b.isolate(o.at(sub(d.field+"Deny")...), d.dir)
			}
		}
	}

	for i := range cr.Ingress {
		r.ciliumIngressRule(o, b, ns, &cr.Ingress[i], sub("ingress", i), dsl.Allow)
	}
	for i := range cr.IngressDeny {
		r.ciliumIngressRule(o, b, ns, &cr.IngressDeny[i], sub("ingressDeny", i), dsl.Deny)
	}
	for i := range cr.Egress {
		r.ciliumEgressRule(o, b, ns, &cr.Egress[i], sub("egress", i), dsl.Allow)
	}
	for i := range cr.EgressDeny {
		r.ciliumEgressRule(o, b, ns, &cr.EgressDeny[i], sub("egressDeny", i), dsl.Deny)
	}
	return b.policies()
}

func defaultDeny(d *ciliumDefaultDeny, dir dsl.Direction) *bool {
	if d == nil {
		return nil
	}
	if dir == dsl.Egress {
		return d.Egress
	}
	return d.Ingress
}

func (r *reader) ciliumIngressRule(o *object, b *policyBuilder, ns string, ir *ciliumIngress, path []any, action dsl.Action) {
	r.ciliumCommonRule(o, b, ns, dsl.Ingress, action, path, ciliumPeers{
		endpoints: ir.FromEndpoints, cidrs: ir.FromCIDR, cidrSets: ir.FromCIDRSet, entities: ir.FromEntities, nodes: ir.FromNodes,
		endpointsField: "fromEndpoints", cidrField: "fromCIDR", cidrSetField: "fromCIDRSet", entitiesField: "fromEntities", nodesField: "fromNodes",
	}, ir.ToPorts, ir.ICMPs)
}

func (r *reader) ciliumEgressRule(o *object, b *policyBuilder, ns string, er *ciliumEgress, path []any, action dsl.Action) {
	r.ciliumCommonRule(o, b, ns, dsl.Egress, action, path, ciliumPeers{
		endpoints: er.ToEndpoints, cidrs: er.ToCIDR, cidrSets: er.ToCIDRSet, entities: er.ToEntities, nodes: er.ToNodes,
		endpointsField: "toEndpoints", cidrField: "toCIDR", cidrSetField: "toCIDRSet", entitiesField: "toEntities", nodesField: "toNodes",
	}, er.ToPorts, er.ICMPs)
}

type ciliumPeers struct {
	endpoints                                              []metav1.LabelSelector
	cidrs                                                  []string
	cidrSets                                               []ciliumCIDRRule
	entities                                               []string
	nodes                                                  []metav1.LabelSelector
	endpointsField, cidrField, cidrSetField, entitiesField string
	nodesField                                             string
}

// ciliumCommonRule converts one rule: its peers are the union of its
// endpoint selectors, CIDRs and entities; its L4 terms the union of its
// toPorts and icmps. A rule with no peer field but L4 terms applies to
// every peer; a rule with neither matches nothing (`ingress: [{}]` only
// turns default deny on).
func (r *reader) ciliumCommonRule(o *object, b *policyBuilder, ns string, dir dsl.Direction, action dsl.Action,
	path []any, cp ciliumPeers, toPorts []ciliumPortRule, icmps []ciliumICMPRule) {
	what := o.kind
	sub := func(p ...any) []any { return append(slices.Clone(path), p...) }
	spec := ruleSpec{pos: o.at(path...), dir: dir, action: action, peerPos: o.at(path...)}
	ok := true
	hasPeerField := len(cp.endpoints)+len(cp.cidrs)+len(cp.cidrSets)+len(cp.entities)+len(cp.nodes) > 0
	for i := range cp.endpoints {
		pos := o.at(sub(cp.endpointsField, i)...)
		// A selector on a reserved: label means that entity.
		if e, reserved, good := reservedEntity(o, &cp.endpoints[i], sub(cp.endpointsField, i), &r.ds); reserved || !good {
			ok = ok && good && r.ciliumEntity(what, pos, e, &spec)
			continue
		}
		sel, good := r.ciliumSelector(o, &cp.endpoints[i], sub(cp.endpointsField, i))
		if !good {
			ok = false
			continue
		}
		// In a namespaced policy a selector that names neither the
		// namespace label nor any namespace label
		// (io.cilium.k8s.namespace.labels.*) means pods of the policy's
		// namespace, as in Cilium (getEndpointSelector): a selector on
		// namespace labels reaches every namespace that has them.
		if ns != "" && !mentionsKey(sel, LabelNamespace) && !mentionsKeyPrefix(sel, LabelNamespaceLabels) {
			sel.Reqs = append(sel.Reqs, namespaceReq(pos, ns))
		}
		spec.peers = append(spec.peers, dsl.Peer{Pos: pos, Kind: dsl.PeerSelector, Selector: sel})
	}
	for i, c := range cp.cidrs {
		pos := o.at(sub(cp.cidrField, i)...)
		if peer, keep := r.ciliumCIDR(pos, dsl.CIDR{Pos: pos, Prefix: dsl.Text{Pos: pos, Text: c}}); keep {
			spec.peers = append(spec.peers, peer)
		}
	}
	for i, cs := range cp.cidrSets {
		ipath := sub(cp.cidrSetField, i)
		pos := o.at(ipath...)
		if cs.CIDR == "" {
			r.ds.Errorf(pos, "%s: %s needs cidr", what, cp.cidrSetField)
			ok = false
			continue
		}
		c := dsl.CIDR{Pos: pos, Prefix: dsl.Text{Pos: o.at(append(ipath, "cidr")...), Text: cs.CIDR}}
		for j, e := range cs.Except {
			c.Except = append(c.Except, dsl.Text{Pos: o.at(append(ipath, "except", j)...), Text: e})
		}
		if peer, keep := r.ciliumCIDR(pos, c); keep {
			spec.peers = append(spec.peers, peer)
		}
	}
	for i, e := range cp.entities {
		ok = r.ciliumEntity(what, o.at(sub(cp.entitiesField, i)...), e, &spec) && ok
	}
	for i := range cp.nodes {
		peers, good := r.ciliumNodes(o, &cp.nodes[i], sub(cp.nodesField, i))
		ok = ok && good
		spec.peers = append(spec.peers, peers...)
	}
	for i, pr := range toPorts {
		for j, p := range pr.Ports {
			l4s, named, good := r.ciliumPort(o, p, sub("toPorts", i, "ports", j))
			ok = ok && good
			spec.ports = append(spec.ports, l4s...)
			spec.named = append(spec.named, named...)
		}
		if len(pr.Ports) == 0 {
			// toPorts without ports restricts nothing at L4.
			spec.ports = append(spec.ports, dsl.L4{Pos: o.at(sub("toPorts", i)...), Proto: "any"})
		}
	}
	for i, ic := range icmps {
		for j, f := range ic.Fields {
			l4, good := r.ciliumICMP(o, f, sub("icmps", i, "fields", j))
			ok = ok && good
			spec.ports = append(spec.ports, l4)
		}
	}
	if !ok {
		return
	}
	hasL4 := len(spec.ports)+len(spec.named) > 0
	switch {
	case !hasPeerField && !hasL4:
		return // matches nothing; the direction is default-deny already
	case hasPeerField && len(spec.peers)+len(spec.sides) == 0:
		return // no peer selects any address (CIDRs only pods cover, nodes none): matches nothing
	}
	if slices.ContainsFunc(spec.ports, func(l dsl.L4) bool { return l.Proto == "any" && l.Port == nil }) {
		spec.ports = nil // one term that matches everything subsumes the others
	}
	b.add(spec)
}

// ciliumEntity adds to spec the peers Cilium's entity e stands for
// (docs/kubernetes.md, Entities). It reports false after an error.
func (r *reader) ciliumEntity(what string, pos dsl.Pos, e string, spec *ruleSpec) bool {
	switch e {
	case "all":
		spec.peers = append(spec.peers, dsl.Peer{Pos: pos, Kind: dsl.PeerAny})
	case "world", "world-ipv4", "world-ipv6":
		spec.peers = append(spec.peers, r.worldPeers(pos, e)...)
	case "cluster":
		// Every pod, and every node (host and remote-node alike).
		spec.peers = append(spec.peers, dsl.Peer{Pos: pos, Kind: dsl.PeerSelector, Selector: dsl.Selector{Pos: pos}})
		spec.peers = append(spec.peers, nodePeers(pos, r.cl.nodes)...)
	case "host", "remote-node":
		r.needNodes(pos, "entity "+e)
		spec.sides = append(spec.sides, nodeSide{pos: pos, remote: e == "remote-node"})
	case "init", "unmanaged", "none":
		// init: endpoints whose identity is not known yet, and unmanaged:
		// pods Cilium does not manage. polc compiles every pod of the
		// input with its labels, so there are neither; none is empty.
	case "health":
		if spec.action == dsl.Deny {
			r.ds.Errorf(pos, "%s: entity \"health\" cannot be denied here: the cilium-health endpoints' addresses are in no object polc reads, so polc cannot tell their traffic from the world's", what)
			return false
		}
		r.ds.Warnf(pos, "%s: entity \"health\" selects nothing here: the cilium-health endpoints' addresses are in no object polc reads", what)
	case "kube-apiserver":
		peers, err := r.svc.apiServerPeers(pos)
		if err != nil {
			r.ds.Errorf(pos, "%s: entity %q: %v", what, e, err)
			return false
		}
		spec.peers = append(spec.peers, peers...)
	case "ingress":
		r.ds.Errorf(pos, "%s: entity \"ingress\" is not supported: it is Cilium's Envoy ingress proxy, which polc does not model", what)
		return false
	default:
		r.ds.Errorf(pos, "%s: entity %q is not supported: polc reads all, world, world-ipv4, world-ipv6, cluster, host, remote-node, kube-apiserver, health, init, unmanaged and none", what, e)
		return false
	}
	return true
}

// worldPeers returns the peers of the world entities: every address that
// is no pod's. Without Node objects that is polc's world; with them, node
// addresses are no world's either (they are host and remote-node, as in
// Cilium), so world becomes 0.0.0.0/0 and ::/0 minus the pods' and nodes'
// addresses. world-ipv4 and world-ipv6 are the one family's half.
func (r *reader) worldPeers(pos dsl.Pos, e string) []dsl.Peer {
	if e == "world" && len(r.cl.nodes) == 0 {
		return []dsl.Peer{{Pos: pos, Kind: dsl.PeerWorld}}
	}
	var peers []dsl.Peer
	for _, all := range []string{"0.0.0.0/0", "::/0"} {
		if (e == "world-ipv4" && all == "::/0") || (e == "world-ipv6" && all == "0.0.0.0/0") {
			continue
		}
		if peer, keep := r.ciliumCIDR(pos, dsl.CIDR{Pos: pos, Prefix: dsl.Text{Pos: pos, Text: all}}); keep {
			peers = append(peers, peer)
		}
	}
	return peers
}

// needNodes warns when what (an entity, fromNodes) needs Node objects and
// the input has none: it then selects no address.
func (r *reader) needNodes(pos dsl.Pos, what string) {
	if len(r.cl.nodes) == 0 {
		r.ds.Warnf(pos, "%s selects no address: the input has no Node objects (kubectl get nodes -o yaml)", what)
	}
}

// reservedLabels are the names of Cilium's reserved labels (reserved:NAME)
// that a selector may name; each means the entity of that name.
var reservedLabels = []string{"host", "remote-node", "world", "world-ipv4", "world-ipv6", "health", "init", "unmanaged", "kube-apiserver", "ingress", "none"}

// reservedEntity reports whether the endpoint selector ls names a
// reserved: label and, if so, the entity it means. polc reads one only as
// Cilium writes them, alone in its selector: matchLabels
// {reserved:NAME: ""} or an Exists expression on it.
func reservedEntity(o *object, ls *metav1.LabelSelector, path []any, ds *dsl.Diagnostics) (entity string, reserved, ok bool) {
	const prefix = "reserved:"
	var key string
	var pos dsl.Pos
	count := len(ls.MatchLabels) + len(ls.MatchExpressions)
	for k, v := range ls.MatchLabels {
		if strings.HasPrefix(k, prefix) && (key == "" || k < key) {
			key, pos = k, o.keyAt(append(slices.Clone(path), "matchLabels", k)...)
			if v != "" {
				ds.Errorf(pos, "label %q: reserved labels have no value (%q)", k, v)
				return "", true, false
			}
		}
	}
	for i, e := range ls.MatchExpressions {
		if key == "" && strings.HasPrefix(e.Key, prefix) {
			key, pos = e.Key, o.at(append(slices.Clone(path), "matchExpressions", i)...)
			if e.Operator != metav1.LabelSelectorOpExists {
				ds.Errorf(pos, "label %q: polc reads a reserved label with the operator Exists only (or in matchLabels)", e.Key)
				return "", true, false
			}
		}
	}
	switch name := strings.TrimPrefix(key, prefix); {
	case key == "":
		return "", false, true
	case count > 1:
		ds.Errorf(pos, "label %q: polc reads a reserved label only alone in its selector, where it means that entity", key)
		return "", true, false
	case !slices.Contains(reservedLabels, name):
		ds.Errorf(pos, "label %q: Cilium has no such reserved label (it has %s)", key, strings.Join(reservedLabels, ", "))
		return "", true, false
	default:
		return name, true, true
	}
}

// ciliumNodes converts one fromNodes / toNodes selector: the addresses of
// the nodes whose labels it matches. Keys are Node labels, plain or with
// the any: source.
func (r *reader) ciliumNodes(o *object, ls *metav1.LabelSelector, path []any) ([]dsl.Peer, bool) {
	pos := o.at(path...)
	sel, ok := selectorReqs(o, ls, path, func(k string) (string, error) {
		if src, name, has := strings.Cut(k, ":"); has {
			if src != "any" {
				return "", fmt.Errorf("label %q: a node selector matches Node labels: write the key without a source, or with any:", k)
			}
			k = name
		}
		return k, nil
	}, &r.ds)
	if !ok {
		return nil, false
	}
	r.needNodes(pos, path[len(path)-2].(string))
	var nodes []*node
	for _, n := range r.cl.nodes {
		if selectorMatches(sel, n.labels) {
			nodes = append(nodes, n)
		}
	}
	return nodePeers(pos, nodes), true
}

// ciliumCIDR returns the peer for a Cilium CIDR rule. Cilium's CIDR rules
// select only addresses that are not a managed endpoint's or a node's
// (policy-cidr-match-mode's default), so the pods' and nodes' addresses
// inside the prefix become exceptions. keep is false when those addresses
// cover the whole prefix.
func (r *reader) ciliumCIDR(pos dsl.Pos, c dsl.CIDR) (peer dsl.Peer, keep bool) {
	peer = dsl.Peer{Pos: pos, Kind: dsl.PeerCIDR, CIDR: c}
	pfx, ok := parsePrefix(c.Prefix.Text)
	if !ok {
		return peer, true // the compiler reports the bad prefix
	}
	var extra []dsl.Text
	addrs := r.cl.nodeAddrs()
	for _, p := range r.cl.pods {
		addrs = append(addrs, p.addrs...)
	}
	for _, a := range addrs {
		if a.Addr().BitLen() != pfx.Addr().BitLen() {
			continue
		}
		if a.Bits() <= pfx.Bits() && a.Contains(pfx.Addr()) {
			return peer, false
		}
		if pfx.Contains(a.Addr()) && !cidrExcepts(c, a.Addr()) {
			extra = append(extra, dsl.Text{Pos: pos, Text: a.Addr().String()})
		}
	}
	peer.CIDR.Except = append(slices.Clone(c.Except), extra...)
	return peer, true
}

func cidrExcepts(c dsl.CIDR, a netip.Addr) bool {
	for _, e := range c.Except {
		if ep, ok := parsePrefix(e.Text); ok && ep.Contains(a) {
			return true
		}
	}
	return false
}

func mentionsKey(sel dsl.Selector, key string) bool {
	return slices.ContainsFunc(sel.Reqs, func(r dsl.Requirement) bool { return r.Key == key })
}

// mentionsKeyPrefix reports whether a requirement of sel is on a key with
// the given prefix.
func mentionsKeyPrefix(sel dsl.Selector, prefix string) bool {
	return slices.ContainsFunc(sel.Reqs, func(r dsl.Requirement) bool { return strings.HasPrefix(r.Key, prefix) })
}

// ciliumPort converts one toPorts port. ANY (the default) means TCP, UDP
// and SCTP, as in Cilium; port "0" or no port means every port.
func (r *reader) ciliumPort(o *object, p ciliumPort, path []any) (l4s []dsl.L4, named []namedPort, ok bool) {
	what := o.kind
	pos := o.at(path...)
	sub := func(f string) dsl.Pos { return o.at(append(slices.Clone(path), f)...) }
	proto := strings.ToLower(p.Protocol)
	switch proto {
	case "", "any":
		proto = "any"
	case "tcp", "udp", "sctp":
	default:
		r.ds.Errorf(sub("protocol"), "%s: protocol %q: expected TCP, UDP, SCTP or ANY", what, p.Protocol)
		return nil, nil, false
	}
	protos := []string{proto}
	if proto == "any" {
		protos = []string{"tcp", "udp", "sctp"}
	}
	var port int64
	if p.Port != nil {
		if p.Port.Type == intstr.Int {
			port = int64(p.Port.IntVal)
		} else if n, err := strconv.ParseInt(p.Port.StrVal, 10, 64); err == nil {
			port = n
		} else if p.Port.StrVal != "" {
			if errs := validation.IsValidPortName(p.Port.StrVal); len(errs) > 0 {
				r.ds.Errorf(sub("port"), "%s: port %q: expected a number or a port name; a name %s", what, p.Port.StrVal, strings.Join(errs, "; "))
				return nil, nil, false
			}
			if p.EndPort != 0 {
				r.ds.Errorf(sub("endPort"), "%s: endPort cannot go with the named port %q", what, p.Port.StrVal)
				return nil, nil, false
			}
			return nil, []namedPort{{pos: sub("port"), proto: proto, name: p.Port.StrVal}}, true
		}
	}
	for _, pr := range protos {
		l4 := dsl.L4{Pos: pos, Proto: pr}
		if port != 0 {
			l4.Port = &dsl.Int{Pos: sub("port"), Value: port}
			if p.EndPort != 0 {
				l4.PortEnd = &dsl.Int{Pos: sub("endPort"), Value: int64(p.EndPort)}
			}
		} else if p.EndPort != 0 {
			r.ds.Errorf(sub("endPort"), "%s: endPort needs port", what)
			return nil, nil, false
		}
		l4s = append(l4s, l4)
	}
	return l4s, nil, true
}

// ICMP message types Cilium accepts by name.
var (
	icmpv4Types = map[string]int64{
		"EchoReply": 0, "DestinationUnreachable": 3, "Redirect": 5, "EchoRequest": 8,
		"RouterAdvertisement": 9, "RouterSelection": 10, "TimeExceeded": 11, "ParameterProblem": 12,
		"Timestamp": 13, "TimestampReply": 14, "Photuris": 40, "ExtendedEchoRequest": 42, "ExtendedEchoReply": 43,
	}
	icmpv6Types = map[string]int64{
		"DestinationUnreachable": 1, "PacketTooBig": 2, "TimeExceeded": 3, "ParameterProblem": 4,
		"EchoRequest": 128, "EchoReply": 129, "MulticastListenerQuery": 130, "MulticastListenerReport": 131,
		"MulticastListenerDone": 132, "RouterSolicitation": 133, "RouterAdvertisement": 134,
		"NeighborSolicitation": 135, "NeighborAdvertisement": 136, "RedirectMessage": 137,
		"RouterRenumbering": 138, "ICMPNodeInformationQuery": 139, "ICMPNodeInformationResponse": 140,
		"InverseNeighborDiscoverySolicitation": 141, "InverseNeighborDiscoveryAdvertisement": 142,
		"HomeAgentAddressDiscoveryRequest": 144, "HomeAgentAddressDiscoveryReply": 145,
		"MobilePrefixSolicitation": 146, "MobilePrefixAdvertisement": 147, "DuplicateAddressRequestCodeSuffix": 157,
		"DuplicateAddressConfirmationCodeSuffix": 158, "ExtendedEchoRequest": 160, "ExtendedEchoReply": 161,
	}
)

func (r *reader) ciliumICMP(o *object, f ciliumICMPField, path []any) (dsl.L4, bool) {
	what := o.kind
	pos := o.at(path...)
	l4 := dsl.L4{Pos: pos, Proto: "icmp"}
	names := icmpv4Types
	switch f.Family {
	case "", "IPv4":
	case "IPv6":
		l4.Proto = "icmpv6"
		names = icmpv6Types
	default:
		r.ds.Errorf(o.at(append(slices.Clone(path), "family")...), "%s: ICMP family %q: expected IPv4 or IPv6", what, f.Family)
		return l4, false
	}
	tpos := o.at(append(slices.Clone(path), "type")...)
	t := int64(f.Type.IntVal)
	if f.Type.Type == intstr.String {
		n, ok := names[f.Type.StrVal]
		if !ok {
			var err error
			if n, err = strconv.ParseInt(f.Type.StrVal, 10, 64); err != nil {
				r.ds.Errorf(tpos, "%s: unknown %s message type %q", what, l4.Proto, f.Type.StrVal)
				return l4, false
			}
		}
		t = n
	}
	l4.ICMPType = &dsl.Int{Pos: tpos, Value: t}
	return l4, true
}

// ciliumSelector converts an endpoint selector. Keys may carry Cilium's
// `k8s:` or `any:` source prefix; Cilium's names for the namespace, its
// labels and the service account become polc's reserved labels.
func (r *reader) ciliumSelector(o *object, ls *metav1.LabelSelector, path []any) (dsl.Selector, bool) {
	return selectorReqs(o, ls, path, ciliumKey, &r.ds)
}

func ciliumKey(k string) (string, error) {
	if src, name, ok := strings.Cut(k, ":"); ok {
		switch src {
		case "k8s", "any":
			k = name
		case "reserved":
			return "", fmt.Errorf("label %q: a reserved: label selects one of Cilium's entities; polc reads it only alone in a fromEndpoints or toEndpoints selector, as that entity", k)
		default:
			return "", fmt.Errorf("label %q: source %q is not supported: polc knows only pods' labels (k8s: or any:)", k, src)
		}
	}
	switch {
	case k == "io.kubernetes.pod.namespace":
		return LabelNamespace, nil
	case strings.HasPrefix(k, "io.cilium.k8s.namespace.labels."):
		return LabelNamespaceLabels + strings.TrimPrefix(k, "io.cilium.k8s.namespace.labels."), nil
	case k == "io.cilium.k8s.policy.serviceaccount":
		return LabelServiceAccount, nil
	case strings.HasPrefix(k, "io.cilium."):
		return "", fmt.Errorf("label %q is not supported: of Cilium's own labels polc knows io.kubernetes.pod.namespace, io.cilium.k8s.namespace.labels.* and io.cilium.k8s.policy.serviceaccount", k)
	}
	return k, nil
}
