package k8s

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/polc-dev/polc/dsl"
)

// testCluster is a small snapshot the unit tests' policies apply to:
// namespaces x (team=a) and y (team=b); pods x/a (app=web, named port
// http = TCP 8080), x/b (app=db, http = TCP 8081, dns = UDP 53) and y/c
// (app=web, no named port).
const testCluster = `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata:
    name: x
    labels:
      team: a
- apiVersion: v1
  kind: Namespace
  metadata:
    name: y
    labels:
      team: b
- apiVersion: v1
  kind: Pod
  metadata:
    name: a
    namespace: x
    labels:
      app: web
  spec:
    containers:
    - name: web
      ports:
      - name: http
        containerPort: 8080
  status:
    podIPs:
    - ip: 10.1.0.1
- apiVersion: v1
  kind: Pod
  metadata:
    name: b
    namespace: x
    labels:
      app: db
  spec:
    containers:
    - name: db
      ports:
      - name: http
        containerPort: 8081
        protocol: TCP
      - name: dns
        containerPort: 53
        protocol: UDP
  status:
    podIPs:
    - ip: 10.1.0.2
- apiVersion: v1
  kind: Pod
  metadata:
    name: c
    namespace: y
    labels:
      app: web
  spec:
    serviceAccountName: robot
    containers:
    - name: web
  status:
    podIP: 10.2.0.1
`

// readPolicies reads policy YAML against testCluster and renders the
// policies only (the endpoints are the same every time).
func readPolicies(t *testing.T, policy string) (string, dsl.Diagnostics) {
	t.Helper()
	files, ds := ReadFiles([]Source{{Path: "cluster.yaml", Src: []byte(testCluster)}, {Path: "p.yaml", Src: []byte(policy)}})
	return render(files[1]), ds
}

func wantPolicies(t *testing.T, policy, want string) {
	t.Helper()
	got, ds := readPolicies(t, policy)
	if len(ds) > 0 {
		t.Errorf("unexpected diagnostics:\n%s", ds.Error())
	}
	want = strings.TrimLeft(want, "\n")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("policies differ (-want +got):\n%s", diff)
	}
}

func wantDiags(t *testing.T, policy string, want ...string) {
	t.Helper()
	_, ds := readPolicies(t, policy)
	var got []string
	for _, d := range ds {
		got = append(got, d.String())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("diagnostics differ (-want +got):\n%s", diff)
	}
}

func netpol(spec string) string {
	return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n  namespace: x\nspec:\n" + spec
}

// Rule: each pod with an address is an endpoint NAMESPACE.POD with its
// labels, the reserved labels, and the addresses of status.podIPs (or
// status.podIP).
func TestPodEndpoints(t *testing.T) {
	files, ds := Read("c.yaml", []byte(testCluster))
	if len(ds) > 0 {
		t.Fatal(ds)
	}
	want := `endpoint x.a labels(app=web, k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=x, k8s:io.cilium.k8s.namespace.labels.team=a, k8s:io.cilium.k8s.policy.serviceaccount=default, k8s:io.kubernetes.pod.namespace=x) addr 10.1.0.1
endpoint x.b labels(app=db, k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=x, k8s:io.cilium.k8s.namespace.labels.team=a, k8s:io.cilium.k8s.policy.serviceaccount=default, k8s:io.kubernetes.pod.namespace=x) addr 10.1.0.2
endpoint y.c labels(app=web, k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=y, k8s:io.cilium.k8s.namespace.labels.team=b, k8s:io.cilium.k8s.policy.serviceaccount=robot, k8s:io.kubernetes.pod.namespace=y) addr 10.2.0.1
`
	if diff := cmp.Diff(want, render(files)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	ep := files.Decls[0].(*dsl.Endpoint)
	if got, want := ep.Name.Pos.String(), "c.yaml:19:11"; got != want {
		t.Errorf("endpoint name at %s, want %s", got, want)
	}
	if got, want := ep.Addrs[0].Pos.String(), "c.yaml:31:11"; got != want {
		t.Errorf("address at %s, want %s", got, want)
	}
}

// Rule: pods in the host's network or terminated get no endpoint, nor
// (without Options.Placeholders) do pods without an address, with a
// warning; a namespace without a Namespace object still has its
// kubernetes.io/metadata.name label.
func TestPodsWithoutEndpoint(t *testing.T) {
	src := `apiVersion: v1
kind: Pod
metadata: {name: pending, namespace: z}
status: {phase: Pending}
---
apiVersion: v1
kind: Pod
metadata: {name: host, namespace: z}
spec: {hostNetwork: true}
status: {podIP: 192.168.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: done, namespace: z}
status: {phase: Succeeded, podIP: 10.9.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: run, namespace: z}
status: {phase: Running, podIPs: [{ip: 10.9.0.2}, {ip: "fd00::2"}]}
`
	f, ds := Read("p.yaml", []byte(src))
	wantDiags := []string{"p.yaml:1:1: warning: Pod z/pending has no address: no endpoint (check, explain and test give it a placeholder address; build does not)"}
	if diff := cmp.Diff(wantDiags, diagStrings(ds)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	want := "endpoint z.run labels(k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=z, k8s:io.cilium.k8s.policy.serviceaccount=default, k8s:io.kubernetes.pod.namespace=z) addr 10.9.0.2, fd00::2\n"
	if diff := cmp.Diff(want, render(f)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// Rule: the subject is the podSelector within the policy's namespace; a
// policy type isolates its direction even with no rules (deny-all).
func TestSubjectAndDenyAll(t *testing.T) {
	wantPolicies(t, netpol("  podSelector: {}\n  policyTypes: [Ingress, Egress]\n"), `
policy x.p select {k8s:io.kubernetes.pod.namespace=x} isolate ingress, egress
`)
	wantPolicies(t, netpol("  podSelector:\n    matchLabels: {app: web}\n  ingress: []\n"), `
policy x.p select {app=web, k8s:io.kubernetes.pod.namespace=x} isolate ingress
`)
}

// Rule: policyTypes, when absent, is Ingress plus Egress when the policy
// has egress rules (an empty egress list does not count); rules of a type
// that policyTypes leaves out are ignored with a warning.
func TestPolicyTypesInference(t *testing.T) {
	wantPolicies(t, netpol("  podSelector: {}\n  egress:\n  - {}\n"), `
policy x.p select {k8s:io.kubernetes.pod.namespace=x} isolate ingress, egress
  egress allow
`)
	wantPolicies(t, netpol("  podSelector: {}\n  egress: []\n"), `
policy x.p select {k8s:io.kubernetes.pod.namespace=x} isolate ingress
`)
	wantPolicies(t, netpol("  podSelector: {}\n  policyTypes: [Egress]\n"), `
policy x.p select {k8s:io.kubernetes.pod.namespace=x} isolate egress
`)
	wantDiags(t, netpol("  podSelector: {}\n  policyTypes: [Egress]\n  ingress:\n  - {}\n"),
		"p.yaml:9:3: warning: NetworkPolicy: ingress rules ignored: policyTypes does not include Ingress")
}

// Rule: a peer with only a podSelector means pods of the policy's
// namespace; only a namespaceSelector, every pod of the namespaces it
// selects (by their labels, prefixed); both in one peer, pods that match
// both; two peers, either. Empty selectors select everything in scope.
func TestPeers(t *testing.T) {
	wantPolicies(t, netpol(`  podSelector: {}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: web}}
    - namespaceSelector: {matchLabels: {team: b}}
    - podSelector: {matchLabels: {app: web}}
      namespaceSelector: {matchLabels: {team: b}}
    - podSelector: {}
    - namespaceSelector: {}
    - podSelector: {}
      namespaceSelector: {}
`), `
policy x.p select {k8s:io.kubernetes.pod.namespace=x} isolate ingress
  ingress allow from {app=web, k8s:io.kubernetes.pod.namespace=x} | {k8s:io.cilium.k8s.namespace.labels.team=b} | {app=web, k8s:io.cilium.k8s.namespace.labels.team=b} | {k8s:io.kubernetes.pod.namespace=x} | {} | {}
`)
}

// Rule: a rule with no peers (absent or empty from/to) admits every peer,
// addresses outside the cluster included; a rule with no ports matches
// every protocol and port.
func TestEmptyRule(t *testing.T) {
	wantPolicies(t, netpol("  podSelector: {}\n  ingress:\n  - from: []\n    ports: []\n  - {}\n"), `
policy x.p select {k8s:io.kubernetes.pod.namespace=x} isolate ingress
  ingress allow
  ingress allow
`)
}

// Rule: ipBlock is a CIDR peer with its exceptions; it matches any address
// inside, pods' included.
func TestIPBlock(t *testing.T) {
	wantPolicies(t, netpol(`  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock:
        cidr: 10.0.0.0/8
        except: [10.1.0.0/16, 10.2.0.0/16]
    - ipBlock: {cidr: "fd00::/64"}
`), `
policy x.p select {k8s:io.kubernetes.pod.namespace=x} isolate egress
  egress allow to 10.0.0.0/8 except 10.1.0.0/16, 10.2.0.0/16 | fd00::/64
`)
}

// Rule: a port without protocol is TCP; endPort makes an inclusive range;
// a protocol without port is every port of that protocol.
func TestPorts(t *testing.T) {
	wantPolicies(t, netpol(`  podSelector: {}
  ingress:
  - ports:
    - port: 80
    - protocol: UDP
      port: 1000
      endPort: 2000
    - protocol: SCTP
`), `
policy x.p select {k8s:io.kubernetes.pod.namespace=x} isolate ingress
  ingress allow on tcp/80, udp/1000-2000, sctp
`)
}

// Rule: an ingress named port is resolved on each subject pod; pods on
// which it resolves alike share a policy split off the original, which
// selects them by name. Pods without the name get nothing from the term.
func TestNamedPortIngress(t *testing.T) {
	wantPolicies(t, netpol(`  podSelector: {}
  ingress:
  - from:
    - namespaceSelector: {}
    ports:
    - port: http
    - port: 9000
`), `
policy x.p select {k8s:io.kubernetes.pod.namespace=x} isolate ingress
  ingress allow from {} on tcp/9000
policy x.p_port1 select {k8s:io.kubernetes.pod.namespace=x, k8s:io.kubernetes.pod.name in (a)}
  ingress allow from {} on tcp/8080
policy x.p_port2 select {k8s:io.kubernetes.pod.namespace=x, k8s:io.kubernetes.pod.name in (b)}
  ingress allow from {} on tcp/8081
`)
	// The protocol must match the container port's: TCP dns is no pod's,
	// which is worth a warning (the entry allows nothing).
	got, ds := readPolicies(t, netpol("  podSelector: {}\n  ingress:\n  - ports:\n    - {port: dns, protocol: UDP}\n    - {port: dns}\n"))
	want := `policy x.p select {k8s:io.kubernetes.pod.namespace=x} isolate ingress
policy x.p_port1 select {k8s:io.kubernetes.pod.namespace=x, k8s:io.kubernetes.pod.name in (b)}
  ingress allow on udp/53
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("policies differ (-want +got):\n%s", diff)
	}
	wantWarn := `p.yaml:11:14: warning: named port "dns" (tcp) is declared by none of the pods the policy selects: it allows nothing`
	if len(ds) != 1 || ds[0].String() != wantWarn {
		t.Errorf("diagnostics: %v, want %s", ds, wantWarn)
	}
}

// Rule: an egress named port is resolved on each destination pod that the
// rule's peers cover; the peers become those pods, by namespace and name.
func TestNamedPortEgress(t *testing.T) {
	wantPolicies(t, netpol(`  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
  - to:
    - namespaceSelector: {}
    - ipBlock: {cidr: 10.2.0.0/16}
    ports:
    - port: http
`), `
policy x.p select {app=web, k8s:io.kubernetes.pod.namespace=x} isolate egress
  egress allow to {k8s:io.kubernetes.pod.namespace=x, k8s:io.kubernetes.pod.name in (a)} on tcp/8080
  egress allow to {k8s:io.kubernetes.pod.namespace=x, k8s:io.kubernetes.pod.name in (b)} on tcp/8081
`)
	// Only pods that need it carry the pod-name label.
	files, ds := ReadFiles([]Source{{Path: "c.yaml", Src: []byte(testCluster)}, {Path: "p.yaml", Src: []byte(netpol(
		"  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - ports: [{port: dns, protocol: UDP}]\n"))}})
	if len(ds) > 0 {
		t.Fatal(ds)
	}
	for _, d := range files[0].Decls {
		ep := d.(*dsl.Endpoint)
		has := strings.Contains(render(&dsl.File{Decls: []dsl.Decl{ep}}), LabelPodName+"=")
		if has != (ep.Name.Name == "x.b") {
			t.Errorf("endpoint %s: pod-name label present = %v", ep.Name.Name, has)
		}
	}
}

// Rule: matchExpressions map In, NotIn, Exists and DoesNotExist onto the
// same operators; matchLabels come first, sorted by key.
func TestSelectorOperators(t *testing.T) {
	wantPolicies(t, netpol(`  podSelector:
    matchLabels: {z: "1", a: "2"}
    matchExpressions:
    - {key: tier, operator: In, values: [x, y]}
    - {key: tier, operator: NotIn, values: [z]}
    - {key: env, operator: Exists}
    - {key: debug, operator: DoesNotExist}
`), `
policy x.p select {a=2, z=1, tier in (x,y), tier notin (z), env exists, !debug, k8s:io.kubernetes.pod.namespace=x} isolate ingress
`)
}

// Rule: names. A NetworkPolicy is NAMESPACE.NAME, a CiliumNetworkPolicy
// cnp_NAMESPACE.NAME, a clusterwide one ccnp_NAME; the same object twice
// is an error.
func TestPolicyNames(t *testing.T) {
	wantDiags(t, netpol("  podSelector: {}\n")+"---\n"+netpol("  podSelector: {}\n"),
		"p.yaml:12:9: policy x.p appears twice (first at p.yaml:4:9)")
}

// Rule: errors name the field at its position, and a policy with errors
// produces nothing.
func TestNetworkPolicyErrors(t *testing.T) {
	for _, tc := range []struct {
		name, spec string
		want       []string
	}{
		{"unknown field", "  podSelector: {}\n  ingres: []\n",
			[]string{`p.yaml:8:3: NetworkPolicy: unknown field "ingres"`}},
		{"wrong shape", "  podSelector: []\n",
			[]string{`p.yaml:7:16: NetworkPolicy: expected a mapping, found a list`}},
		{"port word", "  podSelector: {}\n  ingress:\n  - ports:\n    - endPort: x\n",
			[]string{`p.yaml:10:16: NetworkPolicy: expected a number, found "x"`}},
		{"bad protocol", "  podSelector: {}\n  ingress:\n  - ports:\n    - protocol: ICMP\n",
			[]string{`p.yaml:10:17: NetworkPolicy: protocol "ICMP": expected TCP, UDP or SCTP`}},
		{"endPort alone", "  podSelector: {}\n  ingress:\n  - ports:\n    - endPort: 90\n",
			[]string{`p.yaml:10:16: NetworkPolicy: endPort needs port`}},
		{"endPort named", "  podSelector: {}\n  ingress:\n  - ports:\n    - {port: http, endPort: 90}\n",
			[]string{`p.yaml:10:29: NetworkPolicy: endPort cannot go with the named port "http"`}},
		{"quoted number", "  podSelector: {}\n  ingress:\n  - ports:\n    - port: \"80\"\n",
			[]string{`p.yaml:10:13: NetworkPolicy: port "80": must contain at least one letter (a-z)`}},
		{"empty peer", "  podSelector: {}\n  ingress:\n  - from:\n    - {}\n",
			[]string{`p.yaml:10:7: NetworkPolicy: a peer needs podSelector, namespaceSelector or ipBlock`}},
		{"ipBlock and selector", "  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/8}\n      podSelector: {}\n",
			[]string{`p.yaml:10:7: NetworkPolicy: a peer with ipBlock cannot also have podSelector or namespaceSelector`}},
		{"bad operator", "  podSelector:\n    matchExpressions:\n    - {key: a, operator: Equals, values: [b]}\n",
			[]string{`p.yaml:9:7: label selector operator "Equals": expected In, NotIn, Exists or DoesNotExist`}},
		{"bad label value", "  podSelector:\n    matchLabels: {app: \"a b\"}\n",
			[]string{`p.yaml:7:3: invalid label selector: values[0][app]: Invalid value: "a b": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`}},
		{"bad policy type", "  podSelector: {}\n  policyTypes: [Both]\n",
			[]string{`p.yaml:8:17: NetworkPolicy: policy type "Both": expected Ingress or Egress`}},
	} {
		t.Run(tc.name, func(t *testing.T) { wantDiags(t, netpol(tc.spec), tc.want...) })
	}
}

// Rule: positions. Policies point at their object, rules at their list
// item, requirements at their key, ports at their field.
func TestPositions(t *testing.T) {
	src := netpol(`  podSelector:
    matchLabels:
      app: web
  ingress:
  - from:
    - ipBlock:
        cidr: 10.0.0.0/8
    ports:
    - port: 80
`)
	f, ds := Read("p.yaml", []byte(src))
	if len(ds) > 0 {
		t.Fatal(ds)
	}
	p := f.Decls[0].(*dsl.Policy)
	r := p.Rules[0]
	for _, c := range []struct {
		what string
		got  dsl.Pos
		want string
	}{
		{"policy", p.Pos, "p.yaml:1:1"},
		{"name", p.Name.Pos, "p.yaml:4:9"},
		{"requirement", p.Select.Reqs[0].Pos, "p.yaml:9:7"},
		{"isolate", p.Isolate[0].Pos, "p.yaml:6:1"},
		{"rule", r.Pos, "p.yaml:11:5"},
		{"from", r.PeerPos, "p.yaml:11:5"},
		{"peer", r.Peers[0].Pos, "p.yaml:12:7"},
		{"cidr", r.Peers[0].CIDR.Prefix.Pos, "p.yaml:13:15"},
		{"port", r.Ports[0].Port.Pos, "p.yaml:15:13"},
	} {
		if c.got.String() != c.want {
			t.Errorf("%s at %s, want %s", c.what, c.got, c.want)
		}
	}
}

// Rule: input is multi-document YAML and List documents; other kinds are
// skipped with a warning; policy kinds polc does not read are errors;
// broken YAML is reported at its line.
func TestInput(t *testing.T) {
	src := `apiVersion: v1
kind: ConfigMap
metadata: {name: s}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: gnp}
---
`
	_, ds := Read("in.yaml", []byte(src))
	want := []string{
		"in.yaml:2:7: warning: v1 ConfigMap ignored: polc reads Pods, workloads (Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs), Namespaces, Nodes, Services (with EndpointSlices, Endpoints) and network policies",
		"in.yaml:6:7: projectcalico.org/v3 GlobalNetworkPolicy is not supported: polc reads networking.k8s.io/v1 NetworkPolicy, cilium.io/v2 CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy, and policy.networking.k8s.io ClusterNetworkPolicy (v1alpha2, v1beta1), AdminNetworkPolicy and BaselineAdminNetworkPolicy (v1alpha1)",
	}
	var got []string
	for _, d := range ds {
		got = append(got, d.String())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	_, ds = Read("bad.yaml", []byte("kind: Pod\napiVersion: v1\nmetadata:\n  name: [\n"))
	if len(ds) != 1 || ds[0].Pos.Line == 0 || !strings.Contains(ds[0].Msg, "invalid YAML") {
		t.Errorf("broken YAML: got %v", ds)
	}
}

func TestReadPaths(t *testing.T) {
	files, srcs, ds := ReadPaths([]string{"../../testdata/k8s/cluster.yaml", "../../testdata/k8s/named-ports/policy.yaml", "missing.yaml"})
	var errs dsl.Diagnostics
	for _, d := range ds {
		if d.Severity == dsl.Error {
			errs = append(errs, d)
		}
	}
	if len(errs) != 1 || errs[0].Pos.File != "missing.yaml" {
		t.Errorf("diagnostics: %v", ds)
	}
	if len(files) != 2 || len(srcs) != 2 || files[1].Path != "../../testdata/k8s/named-ports/policy.yaml" {
		t.Errorf("got %d files, %d sources", len(files), len(srcs))
	}
}

// Rule: a List's fields are apiVersion, kind, metadata and items; any
// other (a misspelled items key, which would read as an empty list and
// drop every object in it) is an error at its key. Policy objects may have
// only apiVersion, kind, metadata, spec (specs for Cilium) and status, and
// only ObjectMeta's fields in metadata.
func TestUnknownTopLevelFields(t *testing.T) {
	list := func(key string) string {
		return "apiVersion: v1\nkind: List\n" + key + ":\n- " + strings.ReplaceAll(netpol("  podSelector: {}\n"), "\n", "\n  ") + "\n"
	}
	wantDiags(t, list("item"), `p.yaml:3:1: List: unknown field "item" (a List has apiVersion, kind, metadata, items); did you mean "items"?`)
	wantDiags(t, list("Items"), `p.yaml:3:1: List: unknown field "Items" (a List has apiVersion, kind, metadata, items); did you mean "items"?`)
	wantPolicies(t, list("items"), `
policy x.p select {k8s:io.kubernetes.pod.namespace=x} isolate ingress
`)
	wantDiags(t, netpol("  podSelector: {}\n")+"description: allow web\n",
		`p.yaml:8:1: NetworkPolicy: unknown field "description" (a NetworkPolicy has apiVersion, kind, metadata, spec, status)`)
	wantDiags(t, strings.Replace(netpol("  podSelector: {}\n"), "  namespace: x", "  namespce: x", 1),
		`p.yaml:5:3: NetworkPolicy metadata: unknown field "namespce"`)
	wantDiags(t, cnp("  endpointSelector: {}\n")+"description: allow web\n",
		`p.yaml:8:1: CiliumNetworkPolicy: unknown field "description" (a CiliumNetworkPolicy has apiVersion, kind, metadata, spec, specs, status)`)
}

func diagStrings(ds dsl.Diagnostics) []string {
	var got []string
	for _, d := range ds {
		got = append(got, d.String())
	}
	return got
}

// Rule: with Options.Placeholders, a workload's pod template is an
// endpoint NS.KIND/NAME (deploy, sts, ds, rs, job, cronjob) with the
// template's labels and service account, and every endpoint without an
// address gets one from PlaceholderRange in namespace-then-name order,
// skipping addresses real pods have; each gets a warning.
func TestWorkloadPlaceholders(t *testing.T) {
	src := `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  template:
    metadata:
      labels: {app: web}
    spec:
      serviceAccountName: websa
      containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  jobTemplate:
    spec:
      template:
        metadata:
          labels: {app: tick}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: kube-system}
spec:
  template:
    spec: {hostNetwork: true}
---
apiVersion: v1
kind: Pod
metadata: {name: real, namespace: a}
status: {podIP: 100.64.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: manifest, namespace: a}
`
	f, ds := Read("w.yaml", []byte(src), Options{Placeholders: true})
	wantDiags := []string{
		"w.yaml:12:1: warning: CronJob default/tick has no address: its endpoint default.cronjob/tick gets the placeholder 100.64.0.3",
		"w.yaml:1:1: warning: Deployment shop/web has no address: its endpoint shop.deploy/web gets the placeholder 100.64.0.4",
		"w.yaml:34:1: warning: Pod a/manifest has no address: its endpoint a.manifest gets the placeholder 100.64.0.2",
	}
	got := diagStrings(ds)
	slices.Sort(got)
	if diff := cmp.Diff(wantDiags, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	want := `endpoint shop.deploy/web labels(app=web, k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=shop, k8s:io.cilium.k8s.policy.serviceaccount=websa, k8s:io.kubernetes.pod.namespace=shop) addr 100.64.0.4
endpoint default.cronjob/tick labels(app=tick, k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=default, k8s:io.cilium.k8s.policy.serviceaccount=default, k8s:io.kubernetes.pod.namespace=default) addr 100.64.0.3
endpoint a.real labels(k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=a, k8s:io.cilium.k8s.policy.serviceaccount=default, k8s:io.kubernetes.pod.namespace=a) addr 100.64.0.1
endpoint a.manifest labels(k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=a, k8s:io.cilium.k8s.policy.serviceaccount=default, k8s:io.kubernetes.pod.namespace=a) addr 100.64.0.2
`
	if diff := cmp.Diff(want, render(f)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// Rule: an apiVersion polc does not read for a kind it reads is reported
// at the apiVersion with the version it reads; a miscased apiVersion or
// kind key is an unknown field, not an unknown kind; YAML syntax errors
// point at the line (and, for an over-indented key, the colon).
func TestErrorWording(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"apiVersion: networking.k8s.io/v1beta1\nkind: NetworkPolicy\nmetadata: {name: a}\n",
			"e.yaml:1:13: networking.k8s.io/v1beta1 NetworkPolicy is not supported: polc reads NetworkPolicy as networking.k8s.io/v1"},
		{"apiVersion: cilium.io/v1\nkind: CiliumNetworkPolicy\nmetadata: {name: a}\n",
			"e.yaml:1:13: cilium.io/v1 CiliumNetworkPolicy is not supported: polc reads CiliumNetworkPolicy as cilium.io/v2"},
		{"apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: a}\n",
			"e.yaml:1:13: warning: extensions/v1beta1 Deployment ignored: polc reads Deployment as apps/v1"},
		{"apiversion: v1\nkind: Pod\nmetadata: {name: a}\n",
			`e.yaml:1:1: unknown field "apiversion" (did you mean "apiVersion"?)`},
		{"apiVersion: v1\nKind: Pod\nmetadata: {name: a}\n",
			`e.yaml:2:1: unknown field "Kind" (did you mean "kind"?)`},
		{"kind: Pod\nmetadata: {name: a}\n", "e.yaml:1:7: Pod has no apiVersion"},
		{"apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n   labels: x\n",
			"e.yaml:5:10: invalid YAML: mapping values are not allowed in this context"},
		{"apiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {x: [1, }\n",
			"e.yaml:3:1: invalid YAML: did not find expected node content"},
	} {
		_, ds := Read("e.yaml", []byte(c.src))
		if diff := cmp.Diff([]string{c.want}, diagStrings(ds)); diff != "" {
			t.Errorf("%q: (-want +got):\n%s", c.src, diff)
		}
	}
}

// Rule: a key written twice in one mapping is an error at the second, in
// every document and at any depth, as the API server's decoder refuses
// it: two documents joined without `---` (`cat a.yaml b.yaml`) would
// otherwise read as one object, the second's fields over the first's, and
// the policy would be dropped silently.
func TestDuplicateKeys(t *testing.T) {
	pod := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  labels: {app: x}\nstatus: {podIP: 10.0.0.1}\n"
	np := "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelector: {}}\n"
	for _, c := range []struct {
		src  string
		want []string
	}{
		{pod + np, []string{
			`e.yaml:7:1: duplicate key "apiVersion" (first at line 1)`,
			`e.yaml:8:1: duplicate key "kind" (first at line 2)`,
			`e.yaml:9:1: duplicate key "metadata" (first at line 3)`,
		}},
		{"apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  labels: {app: x, app: y}\nstatus: {podIP: 10.0.0.1}\n---\n" +
			"apiVersion: v1\nkind: Pod\nmetadata: {name: b}\nstatus: {podIP: 10.0.0.2, podIP: 10.0.0.3}\n", []string{
			`e.yaml:5:20: duplicate key "app" (first at line 5)`,
			`e.yaml:11:27: duplicate key "podIP" (first at line 11)`,
		}},
	} {
		_, ds := Read("e.yaml", []byte(c.src))
		var errs []string
		for _, d := range diagStrings(ds) {
			if !strings.Contains(d, "warning:") {
				errs = append(errs, d)
			}
		}
		if diff := cmp.Diff(c.want, errs); diff != "" {
			t.Errorf("%q: (-want +got):\n%s", c.src, diff)
		}
	}
	// the same objects apart are read without complaint
	if _, ds := Read("e.yaml", []byte(pod+"---\n"+np)); ds.HasErrors() {
		t.Errorf("separate documents: %v", ds)
	}
}

// Rule: ReadPaths reads a directory's .yaml, .yml and .json files in name
// order (subdirectories only with Recursive, hidden ones never), "-" from
// Options.Stdin as <stdin>, and Options.Namespace is the namespace of
// objects that name none.
func TestReadPathsDirsStdinNamespace(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pod := func(name, ip string) string {
		return "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + "}\nstatus: {podIP: " + ip + "}\n"
	}
	write("b.yml", pod("b", "10.0.0.2"))
	write("a.yaml", pod("a", "10.0.0.1"))
	write("c.json", `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "c"}, "status": {"podIP": "10.0.0.3"}}`)
	write("notes.txt", "not read")
	write("sub/d.yaml", pod("d", "10.0.0.4"))
	write(".git/e.yaml", pod("e", "10.0.0.5"))
	names := func(files []*dsl.File) []string {
		var got []string
		for _, f := range files {
			for _, d := range f.Decls {
				if e, ok := d.(*dsl.Endpoint); ok {
					got = append(got, filepath.Base(f.Path)+":"+e.Name.Name)
				}
			}
		}
		return got
	}
	stdin := strings.NewReader(pod("s", "10.0.0.9"))
	files, _, ds := ReadPaths([]string{dir, "-"}, Options{Namespace: "shop", Stdin: stdin})
	if len(ds) > 0 {
		t.Fatal(ds)
	}
	want := []string{"a.yaml:shop.a", "b.yml:shop.b", "c.json:shop.c", "<stdin>:shop.s"}
	if diff := cmp.Diff(want, names(files)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	files, _, ds = ReadPaths([]string{dir}, Options{Recursive: true})
	if len(ds) > 0 {
		t.Fatal(ds)
	}
	want = []string{"a.yaml:default.a", "b.yml:default.b", "c.json:default.c", "d.yaml:default.d"}
	if diff := cmp.Diff(want, names(files)); diff != "" {
		t.Errorf("recursive: (-want +got):\n%s", diff)
	}
	empty := t.TempDir()
	_, _, ds = ReadPaths([]string{empty})
	if got := diagStrings(ds); len(got) != 1 || !strings.Contains(got[0], "no .yaml, .yml or .json files in the directory") {
		t.Errorf("empty directory: %v", got)
	}
}
