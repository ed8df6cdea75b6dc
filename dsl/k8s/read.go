package k8s

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/polc-dev/polc/dsl"
)

// Source is one input file.
type Source struct {
	Path string // as it should appear in positions
	Src  []byte
}

// ReadPaths reads the files at paths from disk and then does what
// ReadFiles does. A directory stands for its *.yaml, *.yml and *.json
// files in name order (and, with Options.Recursive, those of its
// subdirectories, like kubectl -R); "-" is standard input, named
// "<stdin>". It also returns each file's contents by path (for showing
// diagnostics and for the program's source digests); a file that cannot be
// read is an error diagnostic, and the other files are still read.
func ReadPaths(paths []string, opts ...Options) ([]*dsl.File, map[string][]byte, dsl.Diagnostics) {
	var opt Options
	if len(opts) > 0 {
		opt = opts[0]
	}
	var ds dsl.Diagnostics
	srcs := make([]Source, 0, len(paths))
	contents := make(map[string][]byte, len(paths))
	read := func(p string) {
		if _, dup := contents[p]; dup {
			return // named twice (a file inside a directory also named)
		}
		b, err := readInput(p, opt.Stdin)
		if p == "-" {
			p = StdinName
		}
		if err != nil {
			ds.Errorf(dsl.Pos{File: p}, "%v", err)
			return
		}
		srcs = append(srcs, Source{Path: p, Src: b})
		contents[p] = b
	}
	for _, p := range paths {
		if info, err := os.Stat(p); p != "-" && err == nil && info.IsDir() {
			files, err := dirInputs(p, opt.Recursive)
			if err != nil {
				ds.Errorf(dsl.Pos{File: p}, "%v", err)
			}
			for _, f := range files {
				read(f)
			}
			continue
		}
		read(p)
	}
	files, more := ReadFiles(srcs, opts...)
	ds = append(ds, more...)
	ds.Sort()
	return files, contents, ds
}

// StdinName is the name standard input ("-") goes by in positions.
const StdinName = "<stdin>"

// MaxInputSize bounds one input file (and standard input).
const MaxInputSize = 64 << 20

func readInput(p string, stdin io.Reader) ([]byte, error) {
	var r io.Reader
	if p == "-" {
		r = stdin
		if r == nil {
			r = os.Stdin
		}
	} else {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, MaxInputSize+1))
	if err == nil && len(b) > MaxInputSize {
		err = fmt.Errorf("larger than %d MiB", MaxInputSize>>20)
	}
	return b, err
}

// dirInputs lists the Kubernetes files of a directory: *.yaml, *.yml and
// *.json, in name order, descending into subdirectories when recursive
// (hidden ones, like .git, excepted). A directory without any is an
// error, as it is for kubectl.
func dirInputs(dir string, recursive bool) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != dir && (!recursive || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".yaml", ".yml", ".json":
			if d.Type().IsRegular() || d.Type()&fs.ModeSymlink != 0 {
				files = append(files, p)
			}
		}
		return nil
	})
	if err == nil && len(files) == 0 {
		err = errors.New("no .yaml, .yml or .json files in the directory (use -R for subdirectories)")
		if recursive {
			err = errors.New("no .yaml, .yml or .json files in the directory or below")
		}
	}
	return files, err
}

// Options change how objects are read.
type Options struct {
	// Placeholders gives endpoints to Pods without an address and to
	// workloads (Deployments, StatefulSets...), with addresses from
	// PlaceholderRange. It is for reasoning about manifests (check,
	// explain, test); a bundle built for a host must not carry made-up
	// addresses, so without it such objects get no endpoint (a warning).
	Placeholders bool
	// Namespace is the namespace of objects whose metadata names none
	// (kubectl's -n); empty means "default".
	Namespace string
	// Stdin is read for the path "-" by ReadPaths (os.Stdin when nil).
	Stdin io.Reader
	// Recursive makes ReadPaths read the subdirectories of a directory.
	Recursive bool
	// Objects, when set, is given the number of objects read (List
	// items counted one by one).
	Objects *int
	// Node, when set, reads the snapshot for one node's bundle: pods
	// whose spec.nodeName is Node are local endpoints, every other pod
	// (other nodes', unscheduled ones and workloads' placeholders, with
	// a warning for those without spec.nodeName) a remote endpoint, which
	// policies see as a peer only. Empty: every pod is local.
	Node string
	// Services, when set, is given the Services read, with their
	// backends (for flows and matrices that name a Service).
	Services **Services
}

// Read reads one file of Kubernetes objects; see ReadFiles.
func Read(path string, src []byte, opts ...Options) (*dsl.File, dsl.Diagnostics) {
	files, ds := ReadFiles([]Source{{Path: path, Src: src}}, opts...)
	return files[0], ds
}

// ReadFiles reads files of Kubernetes objects (multi-document YAML, and
// List documents as `kubectl get -o yaml` prints them) that together make a
// cluster snapshot, and returns one AST file per input, in input order:
// an endpoint per Pod and workload, and policies for each NetworkPolicy,
// CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy, in the order the
// objects appear. The files are read together because a policy in one file
// can depend on pods and namespaces in another (named ports, namespace
// labels).
//
// Every declaration points at the object it came from. Errors name the
// field at its file:line:col; unrelated kinds (ConfigMaps...)
// are skipped with a warning. Services, EndpointSlices and Endpoints make
// no declaration: they are for test inputs (Options.Services) and Cilium's
// kube-apiserver entity. At most one Options applies.
func ReadFiles(srcs []Source, opts ...Options) ([]*dsl.File, dsl.Diagnostics) {
	var opt Options
	if len(opts) > 0 {
		opt = opts[0]
	}
	ns := opt.Namespace
	if ns == "" {
		ns = "default"
	}
	r := &reader{cl: newCluster(ns), names: map[string]dsl.Pos{}}
	r.svc = newServices(r.cl)
	files := make([]*dsl.File, len(srcs))
	objs := make([][]*object, len(srcs))
	for i, s := range srcs {
		files[i] = &dsl.File{Path: s.Path}
		objs[i] = splitObjects(s.Path, s.Src, &r.ds)
	}
	if opt.Objects != nil {
		*opt.Objects = 0
		for _, os := range objs {
			*opt.Objects += len(os)
		}
	}
	// First the cluster, which every policy is resolved against.
	for _, os := range objs {
		for _, o := range os {
			switch kindOf(o) {
			case kindNamespace:
				r.cl.addNamespace(o, &r.ds)
			case kindPod:
				r.cl.addPod(o, &r.ds)
			case kindWorkload:
				r.cl.addWorkload(o, &r.ds)
			case kindNode:
				r.cl.addNode(o, &r.ds)
			case kindService:
				r.svc.addService(o, &r.ds)
			case kindEndpointSlice:
				r.svc.addEndpointSlice(o, &r.ds)
			case kindEndpoints:
				r.svc.addEndpoints(o, &r.ds)
			}
		}
	}
	r.cl.finish(opt.Placeholders, &r.ds)
	r.cl.checkNodeAddrs(&r.ds)
	if opt.Node != "" {
		_, known := r.cl.nodeByName[opt.Node]
		at := dsl.Pos{}
		if len(srcs) > 0 {
			at = dsl.Pos{File: srcs[0].Path}
		}
		r.cl.place(opt.Node, known, at, &r.ds)
	}
	r.svc.finish()
	for i, os := range objs {
		for _, o := range os {
			switch kindOf(o) {
			case kindPod, kindWorkload:
				if p := r.podOf(o); p != nil {
					files[i].Decls = append(files[i].Decls, p.endpoint)
				}
			case kindNamespace, kindNode, kindService, kindEndpointSlice, kindEndpoints:
			case kindNetworkPolicy:
				for _, p := range r.networkPolicy(o) {
					files[i].Decls = append(files[i].Decls, p)
				}
			case kindCilium, kindCiliumClusterwide:
				for _, p := range r.ciliumPolicy(o) {
					files[i].Decls = append(files[i].Decls, p)
				}
			case kindClusterNetworkPolicy, kindAdminNetworkPolicy, kindBaselineAdminNetworkPolicy:
				for _, p := range r.tieredPolicy(o) {
					files[i].Decls = append(files[i].Decls, p)
				}
			case kindUnsupportedPolicy:
				if v, ok := readVersions[o.kind]; ok {
					r.ds.Errorf(o.at("apiVersion"), "%s %s is not supported: polc reads %s as %s", o.apiVersion, o.kind, o.kind, v)
					break
				}
				r.ds.Errorf(o.at("kind"), "%s %s is not supported: polc reads networking.k8s.io/v1 NetworkPolicy, cilium.io/v2 CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy, and policy.networking.k8s.io ClusterNetworkPolicy (v1alpha2, v1beta1), AdminNetworkPolicy and BaselineAdminNetworkPolicy (v1alpha1)", o.apiVersion, o.kind)
			default:
				if v, ok := readVersions[o.kind]; ok {
					r.ds.Warnf(o.at("apiVersion"), "%s %s ignored: polc reads %s as %s", o.apiVersion, o.kind, o.kind, v)
					break
				}
				r.ds.Warnf(o.at("kind"), "%s %s ignored: polc reads Pods, workloads (Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs), Namespaces, Nodes, Services (with EndpointSlices, Endpoints) and network policies", o.apiVersion, o.kind)
			}
		}
	}
	r.checkTierOrder()
	r.dropUnknownAt()
	r.cl.writeLabels()
	if opt.Services != nil {
		*opt.Services = r.svc
	}
	r.ds.Sort()
	return files, r.ds
}

type objectKind int

const (
	kindOther objectKind = iota
	kindNamespace
	kindPod
	kindNetworkPolicy
	kindCilium
	kindCiliumClusterwide
	kindUnsupportedPolicy
	kindWorkload
	kindNode
	kindService
	kindEndpointSlice
	kindEndpoints
	kindClusterNetworkPolicy
	kindAdminNetworkPolicy
	kindBaselineAdminNetworkPolicy
)

// readVersions is the API version polc reads each kind it reads in.
var readVersions = map[string]string{
	"Namespace": "v1", "Pod": "v1", "Node": "v1", "Service": "v1", "Endpoints": "v1", "EndpointSlice": "discovery.k8s.io/v1",
	"Deployment": "apps/v1", "ReplicaSet": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1",
	"Job": "batch/v1", "CronJob": "batch/v1",
	"NetworkPolicy":                  "networking.k8s.io/v1",
	"CiliumNetworkPolicy":            "cilium.io/v2",
	"CiliumClusterwideNetworkPolicy": "cilium.io/v2",
	"ClusterNetworkPolicy":           "policy.networking.k8s.io/v1alpha2 or v1beta1",
	"AdminNetworkPolicy":             "policy.networking.k8s.io/v1alpha1",
	"BaselineAdminNetworkPolicy":     "policy.networking.k8s.io/v1alpha1",
}

func kindOf(o *object) objectKind {
	switch {
	case o.apiVersion == "v1" && o.kind == "Namespace":
		return kindNamespace
	case o.apiVersion == "v1" && o.kind == "Pod":
		return kindPod
	case o.apiVersion == "v1" && o.kind == "Node":
		return kindNode
	case (o.apiVersion == "apps/v1" || o.apiVersion == "batch/v1") && workloadKinds[o.kind] != "":
		return kindWorkload
	case o.apiVersion == "v1" && o.kind == "Service":
		return kindService
	case o.apiVersion == "discovery.k8s.io/v1" && o.kind == "EndpointSlice":
		return kindEndpointSlice
	case o.apiVersion == "v1" && o.kind == "Endpoints":
		return kindEndpoints
	case o.apiVersion == "networking.k8s.io/v1" && o.kind == "NetworkPolicy":
		return kindNetworkPolicy
	case o.apiVersion == "cilium.io/v2" && o.kind == "CiliumNetworkPolicy":
		return kindCilium
	case o.apiVersion == "cilium.io/v2" && o.kind == "CiliumClusterwideNetworkPolicy":
		return kindCiliumClusterwide
	case (o.apiVersion == "policy.networking.k8s.io/v1alpha2" || o.apiVersion == "policy.networking.k8s.io/v1beta1") && o.kind == "ClusterNetworkPolicy":
		return kindClusterNetworkPolicy
	case o.apiVersion == "policy.networking.k8s.io/v1alpha1" && o.kind == "AdminNetworkPolicy":
		return kindAdminNetworkPolicy
	case o.apiVersion == "policy.networking.k8s.io/v1alpha1" && o.kind == "BaselineAdminNetworkPolicy":
		return kindBaselineAdminNetworkPolicy
	case strings.HasSuffix(o.kind, "NetworkPolicy") || o.kind == "Namespace" || o.kind == "Pod" || o.kind == "Node":
		// A policy kind (or a core kind) of an API version polc does not
		// read would change verdicts if ignored.
		return kindUnsupportedPolicy
	}
	return kindOther
}

// reader holds the state of one ReadFiles call.
type reader struct {
	ds    dsl.Diagnostics
	cl    *cluster
	svc   *Services
	names map[string]dsl.Pos // policy names given so far
	// tiered is every tiered object's policy, tieredSplit those that
	// ingress named ports split (cnp.go, checkTierOrder).
	tiered, tieredSplit []*dsl.Policy
	// hideUnknown are positions whose "unknown field" error a clearer
	// one replaces (cnp.go, removedFields).
	hideUnknown []dsl.Pos
}

func (r *reader) podOf(o *object) *pod { return r.cl.byObj[o] }

// claimName records a generated policy name, reporting a collision (which
// the naming scheme makes impossible short of an object appearing twice).
func (r *reader) claimName(name string, pos dsl.Pos) bool {
	if prev, dup := r.names[name]; dup {
		r.ds.Errorf(pos, "policy %s appears twice (first at %s)", name, prev)
		return false
	}
	r.names[name] = pos
	return true
}

// namedPort is a port given by name, resolved per pod.
type namedPort struct {
	pos   dsl.Pos
	proto string // tcp, udp, sctp, or any
	name  string
}

// ruleSpec is a rule before named ports are resolved.
type ruleSpec struct {
	pos     dsl.Pos
	doc     dsl.Doc
	dir     dsl.Direction
	action  dsl.Action
	peerPos dsl.Pos
	peers   []dsl.Peer // nil: any peer
	ports   []dsl.L4   // nil with no named ports: every protocol and port
	named   []namedPort
	// sides are peers that stand for node addresses depending on the
	// subject (host, remote-node): the rule is split per group of
	// subjects (node.go).
	sides []nodeSide
	// only, when set, restricts the rule to these subjects (one
	// namespace's), in a policy split off the main one; quiet keeps it
	// from warning about named ports (the caller has).
	only  []*pod
	quiet bool
}

// policyBuilder collects one source policy's output: the policy itself and
// the policies that named ports split off it.
type policyBuilder struct {
	r       *reader
	main    *dsl.Policy
	splits  []*dsl.Policy
	byKey   map[string]*dsl.Policy
	kinds   map[string]int // splits of each kind so far
	subject []*pod         // computed on first use
	haveSub bool
}

func (r *reader) newPolicy(main *dsl.Policy) *policyBuilder {
	return &policyBuilder{r: r, main: main, byKey: map[string]*dsl.Policy{}, kinds: map[string]int{}}
}

func (b *policyBuilder) policies() []*dsl.Policy {
	if !b.r.claimName(b.main.Name.Name, b.main.Name.Pos) {
		return nil
	}
	return append([]*dsl.Policy{b.main}, b.splits...)
}

func (b *policyBuilder) isolate(pos dsl.Pos, dir dsl.Direction) {
	for _, d := range b.main.Isolate {
		if d.Dir == dir {
			return
		}
	}
	b.main.Isolate = append(b.main.Isolate, dsl.DirectionAt{Pos: pos, Dir: dir})
}

func peerWord(dir dsl.Direction) string {
	if dir == dsl.Egress {
		return "to"
	}
	return "from"
}

// add adds the rules of spec. A rule with named ports becomes, besides the
// rule for its numbered ports, one rule per group of pods on which the
// names resolve to the same numbers: for ingress the pods are the subjects
// (so the rule goes into a policy split off for them); for egress they are
// the destination pods (so the rule's peers name them).
func (b *policyBuilder) add(spec ruleSpec) {
	rule := func(peers []dsl.Peer, ports []dsl.L4, doc dsl.Doc) *dsl.Rule {
		return &dsl.Rule{
			Pos: spec.pos, Doc: doc, Dir: spec.dir, Action: spec.action,
			PeerPos: spec.peerPos, PeerWord: peerWord(spec.dir),
			Peers: peers, Ports: ports,
		}
	}
	if len(spec.sides) > 0 {
		b.addSides(spec)
		return
	}
	// The policy the rule goes in (created on first use).
	target := func() *dsl.Policy {
		if spec.only != nil {
			return b.split(spec.pos, spec.only, "node")
		}
		return b.main
	}
	if len(spec.named) == 0 || len(spec.ports) > 0 {
		t := target()
		t.Rules = append(t.Rules, rule(spec.peers, spec.ports, spec.doc))
	}
	if len(spec.named) == 0 {
		return
	}
	var pods []*pod
	if spec.dir == dsl.Ingress {
		pods = b.subjects()
		if spec.only != nil {
			pods = spec.only
		}
	} else {
		for _, p := range b.r.cl.pods {
			if peersMatchPod(spec.peers, p) {
				pods = append(pods, p)
			}
		}
	}
	// Group the pods by what the names resolve to on them.
	type group struct {
		ports []dsl.L4
		what  []string
		pods  []*pod
	}
	var groups []*group
	bySig := map[string]*group{}
	declared := make([]bool, len(spec.named))
	for _, p := range pods {
		var ports []dsl.L4
		var sig, what []string
		for i, np := range spec.named {
			n, proto, ok := p.namedPort(np.name, np.proto)
			if !ok {
				continue
			}
			declared[i] = true
			ports = append(ports, dsl.L4{Pos: np.pos, Proto: proto, Port: &dsl.Int{Pos: np.pos, Value: int64(n)}})
			sig = append(sig, proto+"/"+strconv.Itoa(int(n)))
			what = append(what, fmt.Sprintf("%s=%s/%d", np.name, proto, n))
		}
		if len(ports) == 0 {
			continue // none of the names exists on this pod: nothing to allow
		}
		key := strings.Join(sig, ",")
		if spec.dir == dsl.Ingress {
			key = p.namespace + " " + key // a split policy's subjects share a namespace
		}
		g := bySig[key]
		if g == nil {
			g = &group{ports: ports, what: what}
			bySig[key] = g
			groups = append(groups, g)
		}
		g.pods = append(g.pods, p)
	}
	// A name no pod declares allows nothing: almost always a typo.
	for i, np := range spec.named {
		if !declared[i] && !spec.quiet {
			b.warnUndeclared(np, spec.dir)
		}
	}
	for _, g := range groups {
		for _, p := range g.pods {
			p.needsName = true
		}
		doc := append(slices.Clone(spec.doc), "named ports "+strings.Join(g.what, ", ")+" on "+podList(g.pods))
		if spec.dir == dsl.Egress {
			t := target()
			t.Rules = append(t.Rules, rule(podPeers(spec.peerPos, g.pods), g.ports, doc))
			continue
		}
		split := b.split(spec.pos, g.pods, "port")
		split.Rules = append(split.Rules, rule(spec.peers, g.ports, doc))
	}
}

// warnUndeclared warns that no pod an entry applies to declares the named
// port np, so that it allows nothing.
func (b *policyBuilder) warnUndeclared(np namedPort, dir dsl.Direction) {
	whose := "the pods the policy selects"
	if dir == dsl.Egress {
		whose = "the pods the rule's peers select"
	}
	proto := np.proto
	if proto == "any" {
		proto = "any protocol"
	}
	b.r.ds.Warnf(np.pos, "named port %q (%s) is declared by none of %s: it allows nothing", np.name, proto, whose)
}

// subjects returns the pods the main policy selects.
func (b *policyBuilder) subjects() []*pod {
	if !b.haveSub {
		b.subject = b.r.cl.matching(b.main.Select)
		b.haveSub = true
	}
	return b.subject
}

// split returns the policy split off the main one for pods (all in one
// namespace), creating it on first use: ORIGINAL_portN for named ports,
// ORIGINAL_nodeN for node peers (kind). Its pods carry LabelPodName.
func (b *policyBuilder) split(pos dsl.Pos, pods []*pod, kind string) *dsl.Policy {
	names := sortedPodNames(pods)
	key := kind + " " + pods[0].namespace + "/" + strings.Join(names, ",")
	if p := b.byKey[key]; p != nil {
		return p
	}
	for _, p := range pods {
		p.needsName = true
	}
	doc := fmt.Sprintf("named ports of %s, resolved on %s", b.main.Name.Name, podList(pods))
	if kind == "node" {
		doc = fmt.Sprintf("node addresses of %s, as seen from %s", b.main.Name.Name, podList(pods))
	}
	b.kinds[kind]++
	sel := dsl.Selector{Pos: b.main.Select.Pos, Reqs: slices.Clone(b.main.Select.Reqs)}
	if !hasNamespaceEq(sel, pods[0].namespace) {
		sel.Reqs = append(sel.Reqs, dsl.Requirement{Pos: pos, Key: LabelNamespace, Op: dsl.OpEq, Values: []string{pods[0].namespace}})
	}
	sel.Reqs = append(sel.Reqs, dsl.Requirement{Pos: pos, Key: LabelPodName, Op: dsl.OpIn, Values: names})
	p := &dsl.Policy{
		Pos:    b.main.Pos,
		Doc:    dsl.Doc{doc},
		Name:   dsl.Ident{Pos: b.main.Name.Pos, Name: fmt.Sprintf("%s_%s%d", b.main.Name.Name, kind, b.kinds[kind])},
		Select: sel,
		Audit:  b.main.Audit,
	}
	b.splits = append(b.splits, p)
	b.byKey[key] = p
	return p
}

func hasNamespaceEq(sel dsl.Selector, ns string) bool {
	for _, r := range sel.Reqs {
		if r.Key == LabelNamespace && r.Op == dsl.OpEq && len(r.Values) == 1 && r.Values[0] == ns {
			return true
		}
	}
	return false
}

// podPeers returns selector peers that match exactly pods: one per
// namespace, by pod name.
func podPeers(pos dsl.Pos, pods []*pod) []dsl.Peer {
	byNS := map[string][]*pod{}
	var order []string
	for _, p := range pods {
		if _, ok := byNS[p.namespace]; !ok {
			order = append(order, p.namespace)
		}
		byNS[p.namespace] = append(byNS[p.namespace], p)
	}
	slices.Sort(order)
	var peers []dsl.Peer
	for _, ns := range order {
		peers = append(peers, dsl.Peer{Pos: pos, Kind: dsl.PeerSelector, Selector: dsl.Selector{Pos: pos, Reqs: []dsl.Requirement{
			{Pos: pos, Key: LabelNamespace, Op: dsl.OpEq, Values: []string{ns}},
			{Pos: pos, Key: LabelPodName, Op: dsl.OpIn, Values: sortedPodNames(byNS[ns])},
		}}})
	}
	return peers
}

func podList(pods []*pod) string {
	names := make([]string, len(pods))
	for i, p := range pods {
		names[i] = p.endpoint.Name.Name
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// peersMatchPod reports whether any of peers (nil: any peer) covers an
// address of p.
func peersMatchPod(peers []dsl.Peer, p *pod) bool {
	if peers == nil {
		return true
	}
	for _, peer := range peers {
		switch peer.Kind {
		case dsl.PeerAny:
			return true
		case dsl.PeerSelector:
			if selectorMatches(peer.Selector, p.labels) {
				return true
			}
		case dsl.PeerCIDR:
			if cidrCovers(peer.CIDR, p.addrs) {
				return true
			}
		}
	}
	return false
}

// cidrCovers reports whether one of addrs lies inside c and outside its
// exceptions. Unparsable prefixes cover nothing (the compiler reports them).
func cidrCovers(c dsl.CIDR, addrs []netip.Prefix) bool {
	pfx, ok := parsePrefix(c.Prefix.Text)
	if !ok {
		return false
	}
	for _, a := range addrs {
		if pfx.Contains(a.Addr()) && !cidrExcepts(c, a.Addr()) {
			return true
		}
	}
	return false
}

// parsePrefix parses a CIDR or a bare address (a host prefix), masked.
func parsePrefix(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}
