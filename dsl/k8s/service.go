package k8s

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/polc-dev/polc/dsl"
)

// Services are the Kubernetes Services of a snapshot with their backends,
// for the test inputs that name a Service (a flow's or a matrix's
// destination, `svc/NS/NAME:PORT` or a cluster IP). A Service is not
// policy: it changes which packet reaches the policy hooks, never what a
// policy means. docs/kubernetes.md, "Services", states each rule.
//
// ReadFiles fills one in when Options.Services is set. The zero value (and
// nil) has no Service.
type Services struct {
	list   []*Service          // by namespace, then name
	byName map[string]*Service // "NS/NAME"
	// endpoints holds the EndpointSlices and v1 Endpoints of each
	// Service, by "NS/NAME", whether or not the Service is in the input.
	endpoints map[string]*serviceEndpoints
	cl        *cluster
}

// Service is one v1 Service.
type Service struct {
	Pos          dsl.Pos
	Namespace    string
	Name         string
	ClusterIPs   []netip.Addr // none for headless and ExternalName Services
	Headless     bool         // clusterIP: None
	ExternalName string       // type ExternalName: the DNS name it aliases
	Ports        []ServicePort
	selector     map[string]string // empty: none
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name   string
	Proto  string // tcp, udp or sctp
	Port   int32
	Target intstr.IntOrString // the backends' port: a number, or a container port's name
}

func (p ServicePort) String() string {
	s := fmt.Sprintf("%d/%s", p.Port, p.Proto)
	if p.Name != "" {
		s += " (" + p.Name + ")"
	}
	return s
}

// Ref is how flows name the Service: svc/NS/NAME.
func (s *Service) Ref() string { return "svc/" + s.Namespace + "/" + s.Name }

// serviceEndpoints are the EndpointSlices (or, without any, the v1
// Endpoints subsets) of one Service: each a set of endpoints sharing ports.
type serviceEndpoints struct {
	pos        dsl.Pos // the first object's
	fromSlices bool
	sets       []endpointSet
}

type endpointSet struct {
	ports []endpointPort
	addrs []endpointAddr
}

type endpointPort struct {
	name  string
	proto string
	port  int32
}

type endpointAddr struct {
	addr   netip.Addr
	podRef string // "NS/NAME" of targetRef when it is a Pod
}

// Target is where a packet to a Service goes: one backend, at its port.
type Target struct {
	// Endpoint is the backend pod's endpoint name (NS.POD); empty for an
	// address that is no pod's.
	Endpoint string
	Addrs    []netip.Addr // the backend's addresses
	Port     uint16
}

// Translation is what a packet to a Service becomes at its source.
type Translation struct {
	Service *Service
	Port    ServicePort // zero for a headless Service reached by number
	Targets []Target    // in name order (pods first, then addresses)
	// NoBackend, when there is no target, says why: such a packet is
	// dropped (Cilium) or rejected (kube-proxy), never delivered.
	NoBackend string
}

func (t Target) String() string {
	h := t.Endpoint
	if h == "" {
		h = t.Addrs[0].String()
		if t.Addrs[0].Is6() {
			h = "[" + h + "]"
		}
	}
	return h + ":" + strconv.Itoa(int(t.Port))
}

// Addr is the target's first address of a family.
func (t Target) Addr(v6 bool) (netip.Addr, bool) {
	for _, a := range t.Addrs {
		if a.Is6() == v6 {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// List returns the Services, by namespace then name.
func (s *Services) List() []*Service {
	if s == nil {
		return nil
	}
	return s.list
}

// serviceNameLabel links an EndpointSlice to its Service.
const serviceNameLabel = "kubernetes.io/service-name"

func newServices(cl *cluster) *Services {
	return &Services{byName: map[string]*Service{}, endpoints: map[string]*serviceEndpoints{}, cl: cl}
}

// addService records a v1 Service. Its fields are checked against the API
// type; only the ones that decide where packets go are used.
func (s *Services) addService(o *object, ds *dsl.Diagnostics) {
	var v corev1.Service
	ns, ok := s.decode(o, &v, &v.ObjectMeta, ds)
	if !ok {
		return
	}
	svc := &Service{Pos: o.pos(o.node), Namespace: ns, Name: v.Name, selector: v.Spec.Selector}
	key := ns + "/" + v.Name
	if prev, dup := s.byName[key]; dup {
		ds.Errorf(o.at("metadata", "name"), "Service %s appears twice (first at %s)", key, prev.Pos)
		return
	}
	switch v.Spec.Type {
	case corev1.ServiceTypeExternalName:
		svc.ExternalName = v.Spec.ExternalName
		if svc.ExternalName == "" {
			svc.ExternalName = "(none)"
		}
	default:
		ips, path := v.Spec.ClusterIPs, []any{"spec", "clusterIPs"}
		if len(ips) == 0 && v.Spec.ClusterIP != "" {
			ips, path = []string{v.Spec.ClusterIP}, []any{"spec", "clusterIP"}
		}
		for i, ip := range ips {
			if ip == corev1.ClusterIPNone {
				svc.Headless = true
				continue
			}
			pos := o.at(append(path, i)...)
			if len(v.Spec.ClusterIPs) == 0 {
				pos = o.at(path...)
			}
			a, err := netip.ParseAddr(ip)
			if err != nil || a.Zone() != "" {
				ds.Errorf(pos, "Service %s: cluster IP %q is not an IP address", key, ip)
				return
			}
			svc.ClusterIPs = append(svc.ClusterIPs, a.Unmap())
		}
	}
	for i, p := range v.Spec.Ports {
		proto := strings.ToLower(string(p.Protocol))
		switch proto {
		case "":
			proto = "tcp"
		case "tcp", "udp", "sctp":
		default:
			ds.Errorf(o.at("spec", "ports", i, "protocol"), "Service %s: protocol %q: want TCP, UDP or SCTP", key, p.Protocol)
			return
		}
		if p.Port < 1 || p.Port > 65535 {
			ds.Errorf(o.at("spec", "ports", i, "port"), "Service %s: port %d: want 1 to 65535", key, p.Port)
			return
		}
		t := p.TargetPort
		if t.Type == intstr.Int && t.IntVal == 0 || t.Type == intstr.String && t.StrVal == "" {
			t = intstr.FromInt32(p.Port) // the API server's default
		}
		if t.Type == intstr.Int && (t.IntVal < 1 || t.IntVal > 65535) {
			ds.Errorf(o.at("spec", "ports", i, "targetPort"), "Service %s: targetPort %d: want 1 to 65535 or a port name", key, t.IntVal)
			return
		}
		svc.Ports = append(svc.Ports, ServicePort{Name: p.Name, Proto: proto, Port: p.Port, Target: t})
	}
	s.byName[key] = svc
	s.list = append(s.list, svc)
}

// addEndpointSlice records a discovery.k8s.io/v1 EndpointSlice under the
// Service its kubernetes.io/service-name label names.
func (s *Services) addEndpointSlice(o *object, ds *dsl.Diagnostics) {
	var v discoveryv1.EndpointSlice
	ns, ok := s.decode(o, &v, &v.ObjectMeta, ds)
	if !ok {
		return
	}
	svcName := v.Labels[serviceNameLabel]
	if svcName == "" {
		ds.Warnf(o.at("metadata"), "EndpointSlice %s has no %s label: it belongs to no Service, ignored", v.Name, serviceNameLabel)
		return
	}
	switch v.AddressType {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6:
	case discoveryv1.AddressTypeFQDN:
		ds.Warnf(o.at("addressType"), "EndpointSlice %s/%s: FQDN endpoints name no address polc can resolve, ignored", ns, v.Name)
		return
	default:
		ds.Errorf(o.at("addressType"), "EndpointSlice %s/%s: addressType %q: want IPv4, IPv6 or FQDN", ns, v.Name, v.AddressType)
		return
	}
	var set endpointSet
	for i, p := range v.Ports {
		ep := endpointPort{proto: "tcp"}
		if p.Name != nil {
			ep.name = *p.Name
		}
		if p.Protocol != nil {
			ep.proto = strings.ToLower(string(*p.Protocol))
		}
		if p.Port == nil || *p.Port < 1 || *p.Port > 65535 {
			ds.Errorf(o.at("ports", i), "EndpointSlice %s/%s: a port needs a port number, 1 to 65535", ns, v.Name)
			return
		}
		ep.port = *p.Port
		set.ports = append(set.ports, ep)
	}
	for i, e := range v.Endpoints {
		// Only ready endpoints get traffic; no condition means ready.
		if e.Conditions.Ready != nil && !*e.Conditions.Ready {
			continue
		}
		ref := ""
		if e.TargetRef != nil && e.TargetRef.Kind == "Pod" {
			rns := e.TargetRef.Namespace
			if rns == "" {
				rns = ns
			}
			ref = rns + "/" + e.TargetRef.Name
		}
		for j, a := range e.Addresses {
			addr, err := netip.ParseAddr(a)
			if err != nil || addr.Unmap().Is6() != (v.AddressType == discoveryv1.AddressTypeIPv6) {
				ds.Errorf(o.at("endpoints", i, "addresses", j), "EndpointSlice %s/%s: %q is not an %s address", ns, v.Name, a, v.AddressType)
				return
			}
			set.addrs = append(set.addrs, endpointAddr{addr: addr.Unmap(), podRef: ref})
		}
	}
	se := s.endpointsOf(ns+"/"+svcName, o)
	if !se.fromSlices {
		se.sets = nil // slices decide over v1 Endpoints
	}
	se.fromSlices = true
	se.sets = append(se.sets, set)
}

// addEndpoints records v1 Endpoints, used when the Service has no
// EndpointSlice in the input.
func (s *Services) addEndpoints(o *object, ds *dsl.Diagnostics) {
	var v corev1.Endpoints
	ns, ok := s.decode(o, &v, &v.ObjectMeta, ds)
	if !ok {
		return
	}
	var sets []endpointSet
	for i, sub := range v.Subsets {
		var set endpointSet
		for _, p := range sub.Ports {
			proto := strings.ToLower(string(p.Protocol))
			if proto == "" {
				proto = "tcp"
			}
			set.ports = append(set.ports, endpointPort{name: p.Name, proto: proto, port: p.Port})
		}
		for j, a := range sub.Addresses { // NotReadyAddresses get no traffic
			addr, err := netip.ParseAddr(a.IP)
			if err != nil {
				ds.Errorf(o.at("subsets", i, "addresses", j, "ip"), "Endpoints %s/%s: %q is not an IP address", ns, v.Name, a.IP)
				return
			}
			ref := ""
			if a.TargetRef != nil && a.TargetRef.Kind == "Pod" {
				ref = cmp.Or(a.TargetRef.Namespace, ns) + "/" + a.TargetRef.Name
			}
			set.addrs = append(set.addrs, endpointAddr{addr: addr.Unmap(), podRef: ref})
		}
		sets = append(sets, set)
	}
	se := s.endpointsOf(ns+"/"+v.Name, o)
	if !se.fromSlices {
		se.sets = append(se.sets, sets...)
	}
}

// decode checks o against the API type of out (a pointer) and fills it,
// reporting what is wrong; meta is out's metadata. It returns the
// object's namespace.
func (s *Services) decode(o *object, out any, meta *metav1.ObjectMeta, ds *dsl.Diagnostics) (string, bool) {
	before := len(*ds)
	checkFields(o, o.node, reflect.TypeOf(out), o.kind, ds)
	if len(*ds) > before {
		return "", false
	}
	if err := decode(o.node, out); err != nil {
		ds.Errorf(o.pos(o.node), "%s: %v", o.kind, err)
		return "", false
	}
	if meta.Name == "" {
		ds.Errorf(o.pos(o.node), "%s has no metadata.name", o.kind)
		return "", false
	}
	return cmp.Or(meta.Namespace, s.cl.defaultNS), true
}

func (s *Services) endpointsOf(key string, o *object) *serviceEndpoints {
	se := s.endpoints[key]
	if se == nil {
		se = &serviceEndpoints{pos: o.pos(o.node)}
		s.endpoints[key] = se
	}
	return se
}

// finish sorts the Services once every file is read.
func (s *Services) finish() {
	slices.SortFunc(s.list, func(a, b *Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
}

// podByAddr returns the endpoint whose addresses include a.
func (s *Services) podByAddr(a netip.Addr) *pod {
	for _, p := range s.cl.pods {
		for _, pa := range p.addrs {
			if pa.Addr() == a {
				return p
			}
		}
	}
	return nil
}

// targets returns the backends of port p of svc, in name order: the
// endpoints of its EndpointSlices (or v1 Endpoints) when the input has
// any, else the ready pods of its namespace that its selector matches.
func (s *Services) targets(svc *Service, p ServicePort) ([]Target, string) {
	key := svc.Namespace + "/" + svc.Name
	if se := s.endpoints[key]; se != nil {
		return s.endpointTargets(se, p, svc.Headless), "its endpoints list no ready address for port " + p.String()
	}
	if len(svc.selector) == 0 {
		// An empty selector is no selector: the API server drops it
		// (omitempty), and the endpoint controllers give such a
		// Service no endpoints.
		return nil, "it has no selector and the input has no EndpointSlices or Endpoints for it"
	}
	var out []Target
	sel := labelsSelector(svc.selector)
	for _, pd := range s.cl.pods {
		if pd.namespace != svc.Namespace || !selectorMatches(sel, pd.labels) || !podReady(pd) {
			continue
		}
		port := p.Target.IntVal
		if p.Target.Type == intstr.String {
			n, _, ok := pd.namedPort(p.Target.StrVal, p.Proto)
			if !ok {
				continue // the endpoints controller skips a pod without the name
			}
			port = n
		}
		out = append(out, Target{Endpoint: pd.endpoint.Name.Name, Addrs: prefixAddrs(pd.addrs), Port: uint16(port)})
	}
	sortTargets(out)
	why := "its selector matches no ready pod of namespace " + svc.Namespace
	if len(out) == 0 && p.Target.Type == intstr.String {
		why += fmt.Sprintf(" that declares the port %q (%s)", p.Target.StrVal, p.Proto)
	}
	return out, why
}

// endpointTargets returns the addresses of se serving p: the endpoint
// ports of the same name and protocol. Addresses of one pod are one target.
//
// For a headless Service reached by number every address counts (the
// caller keeps the packet's port).
func (s *Services) endpointTargets(se *serviceEndpoints, p ServicePort, anyPort bool) []Target {
	var out []Target
	byPod := map[string]int{}
	for _, set := range se.sets {
		i := slices.IndexFunc(set.ports, func(ep endpointPort) bool { return ep.name == p.Name && ep.proto == p.Proto })
		if i < 0 && !anyPort {
			continue
		}
		port := uint16(p.Port)
		if i >= 0 {
			port = uint16(set.ports[i].port)
		}
		for _, ea := range set.addrs {
			pd := s.podByAddr(ea.addr)
			if pd == nil && ea.podRef != "" {
				ns, name, _ := strings.Cut(ea.podRef, "/")
				pd = s.cl.byName[EndpointName(ns, name)]
			}
			if pd == nil {
				out = append(out, Target{Addrs: []netip.Addr{ea.addr}, Port: port})
				continue
			}
			k := pd.endpoint.Name.Name + ":" + strconv.Itoa(int(port))
			if j, ok := byPod[k]; ok {
				if !slices.Contains(out[j].Addrs, ea.addr) {
					out[j].Addrs = append(out[j].Addrs, ea.addr)
				}
				continue
			}
			byPod[k] = len(out)
			addrs := prefixAddrs(pd.addrs)
			if !slices.Contains(addrs, ea.addr) {
				addrs = append([]netip.Addr{ea.addr}, addrs...)
			}
			out = append(out, Target{Endpoint: pd.endpoint.Name.Name, Addrs: addrs, Port: port})
		}
	}
	sortTargets(out)
	return slices.CompactFunc(out, func(a, b Target) bool { return a.String() == b.String() })
}

func sortTargets(ts []Target) {
	slices.SortFunc(ts, func(a, b Target) int {
		return cmp.Or(cmp.Compare(b2i(a.Endpoint == ""), b2i(b.Endpoint == "")) /* pods first */, cmp.Compare(a.Endpoint, b.Endpoint),
			a.Addrs[0].Compare(b.Addrs[0]), cmp.Compare(a.Port, b.Port))
	})
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func prefixAddrs(ps []netip.Prefix) []netip.Addr {
	out := make([]netip.Addr, len(ps))
	for i, p := range ps {
		out[i] = p.Addr()
	}
	return out
}

// labelsSelector is a Service's selector (equality on every key).
func labelsSelector(m map[string]string) dsl.Selector {
	var sel dsl.Selector
	for k, v := range m {
		sel.Reqs = append(sel.Reqs, dsl.Requirement{Key: k, Op: dsl.OpEq, Values: []string{v}})
	}
	return sel
}

// podReady reports whether a pod takes Service traffic: a Pod whose Ready
// condition is False does not; a Pod without conditions (a manifest) and a
// workload's placeholder do.
func podReady(p *pod) bool {
	if p.kind != "Pod" {
		return true
	}
	var v struct {
		Status struct {
			Conditions []corev1.PodCondition `json:"conditions"`
		} `json:"status"`
	}
	if decode(p.obj.node, &v) != nil {
		return true // addPod decoded it already; cannot happen
	}
	for _, c := range v.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status != corev1.ConditionFalse
		}
	}
	return true
}

// lookup finds a Service by its flow name, svc/NS/NAME.
func (s *Services) lookup(ref string) (*Service, error) {
	rest, _ := strings.CutPrefix(ref, "svc/")
	ns, name, ok := strings.Cut(rest, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("%q: name a Service svc/NAMESPACE/NAME", ref)
	}
	if s != nil {
		if svc := s.byName[ns+"/"+name]; svc != nil {
			return svc, nil
		}
	}
	var names, same []string
	for _, svc := range s.List() {
		names = append(names, svc.Ref())
		if svc.Name == name {
			same = append(same, svc.Ref())
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("unknown Service %q: the input has no Services", ref)
	}
	hint := dsl.DidYouMean(ref, names)
	if len(same) > 0 {
		hint = fmt.Sprintf("; did you mean %s?", strings.Join(same, " or "))
	}
	return nil, fmt.Errorf("unknown Service %q%s", ref, hint)
}

// byClusterIP finds the Service with cluster IP a.
func (s *Services) byClusterIP(a netip.Addr) *Service {
	for _, svc := range s.List() {
		if slices.Contains(svc.ClusterIPs, a.Unmap()) {
			return svc
		}
	}
	return nil
}

// IsService reports whether a destination as written (svc/NS/NAME, or an
// address) is a Service, so that Translate applies to it.
func (s *Services) IsService(host string) bool {
	if strings.HasPrefix(host, "svc/") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && s.byClusterIP(a) != nil
}

// Translate is what kube-proxy or Cilium does to a packet to a Service:
// the destination (svc/NS/NAME or a cluster IP, see IsService) and port
// (a number or, after a Service's name, a port name; "" for ICMP) become
// each backend at its target port. It is the one function flows (polc
// explain) and matrices (polc test --cases) translate with, so the
// reference evaluator and the kernel see the same packets.
func (s *Services) Translate(proto, host, port string) (Translation, error) {
	var svc *Service
	if strings.HasPrefix(host, "svc/") {
		var err error
		if svc, err = s.lookup(host); err != nil {
			return Translation{}, err
		}
	} else if a, err := netip.ParseAddr(host); err == nil {
		svc = s.byClusterIP(a)
	}
	if svc == nil {
		return Translation{}, fmt.Errorf("%q is no Service's", host)
	}
	tr := Translation{Service: svc}
	proto = strings.ToLower(proto)
	if svc.ExternalName != "" {
		tr.NoBackend = fmt.Sprintf("Service %s is of type ExternalName (%s): a DNS alias, with no cluster IP and no backend", svc.Ref(), svc.ExternalName)
		return tr, nil
	}
	n, numErr := strconv.ParseUint(port, 10, 16)
	if svc.Headless && (port == "" || numErr == nil) {
		return s.headless(tr, proto, uint16(n)), nil
	}
	if port == "" {
		tr.NoBackend = fmt.Sprintf("%s is not load-balanced: Service %s translates only TCP, UDP and SCTP", proto, svc.Ref())
		return tr, nil
	}
	i := slices.IndexFunc(svc.Ports, func(p ServicePort) bool {
		if numErr == nil {
			return p.Proto == proto && uint64(p.Port) == n
		}
		return p.Proto == proto && p.Name == port
	})
	if i < 0 {
		if numErr != nil {
			var names []string
			for _, p := range svc.Ports {
				if p.Name != "" && p.Proto == proto {
					names = append(names, p.Name)
				}
			}
			return tr, fmt.Errorf("Service %s has no %s port named %q%s", svc.Ref(), proto, port, dsl.DidYouMean(port, names))
		}
		tr.NoBackend = fmt.Sprintf("Service %s has no port %d/%s (its ports: %s)", svc.Ref(), n, proto, portList(svc.Ports))
		return tr, nil
	}
	tr.Port = svc.Ports[i]
	tr.Targets, tr.NoBackend = s.targets(svc, tr.Port)
	if len(tr.Targets) > 0 {
		tr.NoBackend = ""
	} else {
		tr.NoBackend = fmt.Sprintf("Service %s has no backend for port %s: %s", svc.Ref(), tr.Port, tr.NoBackend)
	}
	return tr, nil
}

// headless is a headless Service reached by a port number (or by ICMP):
// its name resolves to the backends' addresses, and the packet keeps its
// port (0 for ICMP).
func (s *Services) headless(tr Translation, proto string, port uint16) Translation {
	p := ServicePort{Proto: proto, Port: int32(port), Target: intstr.FromInt32(int32(port))}
	tr.Targets, tr.NoBackend = s.targets(tr.Service, p)
	for i := range tr.Targets {
		tr.Targets[i].Port = port
	}
	tr.Targets = slices.CompactFunc(tr.Targets, func(a, b Target) bool { return a.String() == b.String() })
	if len(tr.Targets) == 0 {
		tr.NoBackend = fmt.Sprintf("headless Service %s has no backend: %s", tr.Service.Ref(), tr.NoBackend)
	} else {
		tr.NoBackend = ""
	}
	return tr
}

func portList(ps []ServicePort) string {
	if len(ps) == 0 {
		return "none"
	}
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return strings.Join(out, ", ")
}

// apiServerPeers are the peers Cilium's kube-apiserver entity stands for:
// the addresses of the default/kubernetes Service's endpoints (its
// EndpointSlices, else its v1 Endpoints), which the API server itself
// maintains. An address that is a pod's is that pod; any other is the
// address alone.
func (s *Services) apiServerPeers(pos dsl.Pos) ([]dsl.Peer, error) {
	se := s.endpoints["default/kubernetes"]
	if se == nil {
		return nil, errors.New("the input has no EndpointSlice or Endpoints of the Service default/kubernetes, which give the API server's addresses")
	}
	var addrs []netip.Addr
	for _, set := range se.sets {
		for _, ea := range set.addrs {
			addrs = append(addrs, ea.addr)
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	var peers []dsl.Peer
	var pods []*pod
	for _, a := range slices.Compact(addrs) {
		if p := s.podByAddr(a); p != nil {
			if !slices.Contains(pods, p) {
				p.needsName = true
				pods = append(pods, p)
			}
			continue
		}
		pfx := netip.PrefixFrom(a, a.BitLen()).String()
		peers = append(peers, dsl.Peer{Pos: pos, Kind: dsl.PeerCIDR, CIDR: dsl.CIDR{Pos: pos, Prefix: dsl.Text{Pos: pos, Text: pfx}}})
	}
	if len(pods) > 0 {
		peers = append(peers, podPeers(pos, pods)...)
	}
	return peers, nil
}

// TranslateTests translates the tests whose first packet goes to a Service
// (a matrix column svc/NS/NAME or a cluster IP): such a test becomes one
// test per backend, "NAME via BACKEND:PORT", each expecting what the
// original expects, since a real client reaches whichever backend the load
// balancer picks. A test that expects a denial of a Service without a
// backend for the port holds as it is (no packet is delivered) and is
// dropped; one that expects it reachable is an error at its expectation.
// Other tests are returned as they are.
func (s *Services) TranslateTests(tests []*dsl.Test) ([]*dsl.Test, dsl.Diagnostics) {
	var out []*dsl.Test
	var ds dsl.Diagnostics
	for _, t := range tests {
		if len(t.Steps) == 0 || t.Steps[0].Packet == nil || !s.IsService(t.Steps[0].Packet.Dst.Host.Text) {
			out = append(out, t)
			continue
		}
		first := t.Steps[0]
		pkt := first.Packet
		port := ""
		if pkt.Dst.Port != nil {
			port = strconv.FormatInt(pkt.Dst.Port.Value, 10)
		}
		tr, err := s.Translate(pkt.Proto.Text, pkt.Dst.Host.Text, port)
		if err != nil {
			ds.Errorf(pkt.Dst.Pos, "%v", err)
			continue
		}
		if len(tr.Targets) == 0 {
			if first.Expect != nil && *first.Expect == dsl.VerdictAllow {
				ds.Errorf(first.ExpectPos, "%s: expected reachable, but no packet can be delivered: %s", t.Name.Text, tr.NoBackend)
			}
			continue
		}
		literal, litErr := netip.ParseAddr(pkt.Dst.Host.Text)
		for _, tg := range tr.Targets {
			dst := pkt.Dst
			switch a, ok := tg.Addr(literal.Is6()); {
			case litErr == nil && !ok:
				ds.Errorf(pkt.Dst.Pos, "%s: backend %s of %s has no address of the family of %s", t.Name.Text, tg, tr.Service.Ref(), literal)
				continue
			case litErr == nil:
				dst.Host = dsl.Text{Pos: dst.Host.Pos, Text: a.String()}
			case tg.Endpoint != "":
				dst.Host, dst.IsName = dsl.Text{Pos: dst.Host.Pos, Text: tg.Endpoint}, true
			default:
				dst.Host, dst.IsName = dsl.Text{Pos: dst.Host.Pos, Text: tg.Addrs[0].String()}, false
			}
			if dst.Port != nil {
				dst.Port = &dsl.Int{Pos: dst.Port.Pos, Value: int64(tg.Port)}
			}
			np := *pkt
			np.Dst = dst
			step := *first
			step.Packet = &np
			nt := *t
			nt.Name.Text = t.Name.Text + " via " + tg.String()
			nt.Steps = append([]*dsl.Step{&step}, t.Steps[1:]...)
			out = append(out, &nt)
		}
	}
	return out, ds
}
