package k8s

import (
	"fmt"
	"strings"
	"testing"

	"github.com/polc-dev/polc/dsl"
)

// nodeCluster has two nodes, n1 (role=worker, zone=a; 192.168.0.1 and
// 203.0.113.1) and n2 (role=control-plane; 192.168.0.2 and fd00::2), and
// in namespace x pods a (app=web, on n1, named port http = TCP 8080),
// b (app=db, on n2) and c (app=web, on no node yet).
const nodeCluster = `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata:
    name: n1
    labels: {role: worker, zone: a}
  status:
    addresses:
    - {type: InternalIP, address: 192.168.0.1}
    - {type: ExternalIP, address: 203.0.113.1}
    - {type: Hostname, address: n1.example}
- apiVersion: v1
  kind: Node
  metadata:
    name: n2
    labels: {role: control-plane}
  status:
    addresses:
    - {type: InternalIP, address: 192.168.0.2}
    - {type: InternalIP, address: "fd00::2"}
- apiVersion: v1
  kind: Pod
  metadata: {name: a, namespace: x, labels: {app: web}}
  spec:
    nodeName: n1
    containers: [{name: web, ports: [{name: http, containerPort: 8080}]}]
  status: {podIP: 10.1.0.1}
- apiVersion: v1
  kind: Pod
  metadata: {name: b, namespace: x, labels: {app: db}}
  spec: {nodeName: n2, containers: [{name: db}]}
  status: {podIP: 10.1.0.2}
- apiVersion: v1
  kind: Pod
  metadata: {name: c, namespace: x, labels: {app: web}}
  spec: {containers: [{name: web}]}
  status: {podIP: 10.1.0.3}
`

func readNodePolicies(t *testing.T, policy string) string {
	t.Helper()
	files, ds := ReadFiles([]Source{{Path: "cluster.yaml", Src: []byte(nodeCluster)}, {Path: "p.yaml", Src: []byte(policy)}})
	if len(ds) > 0 {
		t.Errorf("unexpected diagnostics:\n%s", ds.Error())
	}
	return render(files[1])
}

func wantNodePolicies(t *testing.T, policy, want string) {
	t.Helper()
	got := readNodePolicies(t, policy)
	want = strings.TrimLeft(want, "\n")
	if got != want {
		t.Errorf("policies differ:\n--- want\n%s--- got\n%s", want, got)
	}
}

// Rule: with Node objects, world is every address that is no pod's and
// no node's (0.0.0.0/0 and ::/0 minus them); cluster is every pod and
// every node address; all is everything.
func TestCiliumNodeEntities(t *testing.T) {
	wantNodePolicies(t, cnp("  endpointSelector: {}\n  ingress:\n  - fromEntities: [world, all, cluster]\n  - fromEntities: [world-ipv6]\n"), `
policy cnp_x.p select {k8s:io.kubernetes.pod.namespace=x} isolate ingress
  ingress allow from 0.0.0.0/0 except 192.168.0.1, 203.0.113.1, 192.168.0.2, 10.1.0.1, 10.1.0.2, 10.1.0.3 | ::/0 except fd00::2 | any | {} | 192.168.0.1 | 203.0.113.1 | 192.168.0.2 | fd00::2
  ingress allow from ::/0 except fd00::2
`)
}

// Rule: host is the addresses of the subject's own node, remote-node those
// of every other node; a subject on no known node has no host and every
// node is remote to it. Subjects on which they mean different addresses
// get the rule in policies split off per group (ORIGINAL_nodeN, by pod
// name); when every subject sees the same addresses the rule stays in the
// policy. Named ports resolve on the subjects as usual; toward nodes only
// numbered ports count (nodes have no named ports).
func TestCiliumHostRemoteNode(t *testing.T) {
	wantNodePolicies(t, cnp(`  endpointSelector: {}
  ingress:
  - fromEntities: [host]
    toPorts: [{ports: [{port: http}]}]
  egress:
  - toEntities: [remote-node]
`), `
policy cnp_x.p select {k8s:io.kubernetes.pod.namespace=x} isolate ingress, egress
policy cnp_x.p_port1 select {k8s:io.kubernetes.pod.namespace=x, k8s:io.kubernetes.pod.name in (a)}
  ingress allow from 192.168.0.1 | 203.0.113.1 on tcp/8080
policy cnp_x.p_node1 select {k8s:io.kubernetes.pod.namespace=x, k8s:io.kubernetes.pod.name in (a)}
  egress allow to 192.168.0.2 | fd00::2
policy cnp_x.p_node2 select {k8s:io.kubernetes.pod.namespace=x, k8s:io.kubernetes.pod.name in (b)}
  egress allow to 192.168.0.1 | 203.0.113.1
policy cnp_x.p_node3 select {k8s:io.kubernetes.pod.namespace=x, k8s:io.kubernetes.pod.name in (c)}
  egress allow to 192.168.0.1 | 203.0.113.1 | 192.168.0.2 | fd00::2
`)
	// One subject: no split. Other peers of the rule stay in the policy.
	wantNodePolicies(t, cnp(`  endpointSelector: {matchLabels: {app: db}}
  ingressDeny:
  - fromEntities: [host, remote-node]
    fromEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
`), `
policy cnp_x.p select {app=db, k8s:io.kubernetes.pod.namespace=x} isolate ingress
  ingress deny from {app=web, k8s:io.kubernetes.pod.namespace=x} on tcp/22
  ingress deny from 192.168.0.2 | fd00::2 | 192.168.0.1 | 203.0.113.1 on tcp/22
`)
	// Egress to a node on a named port allows nothing.
	files, ds := ReadFiles([]Source{{Path: "cluster.yaml", Src: []byte(nodeCluster)},
		{Path: "p.yaml", Src: []byte(cnp("  endpointSelector: {}\n  egress:\n  - toEntities: [host]\n    toPorts: [{ports: [{port: http}]}]\n"))}})
	if got, want := diagStrings(ds), []string{`p.yaml:10:31: warning: named port "http" (any protocol) is declared by none of the pods the rule's peers select: it allows nothing`}; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("diagnostics: got %q, want %q", got, want)
	}
	if got, want := render(files[1]), "policy cnp_x.p select {k8s:io.kubernetes.pod.namespace=x} isolate egress\n"; got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// Rule: an endpoint selector whose only requirement is a reserved: label
// (matchLabels {reserved:NAME: ""} or NAME Exists) means that entity, and
// is not scoped to the policy's namespace; a reserved label among other
// requirements, with a value or another operator, or one Cilium does not
// have, is an error.
func TestCiliumReservedLabels(t *testing.T) {
	wantNodePolicies(t, cnp(`  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints:
    - matchLabels: {reserved:host: ""}
    - matchExpressions: [{key: reserved:world, operator: Exists}]
    - matchLabels: {app: db}
`), `
policy cnp_x.p select {app=web, k8s:io.kubernetes.pod.namespace=x} isolate ingress
  ingress allow from 0.0.0.0/0 except 192.168.0.1, 203.0.113.1, 192.168.0.2, 10.1.0.1, 10.1.0.2, 10.1.0.3 | ::/0 except fd00::2 | {app=db, k8s:io.kubernetes.pod.namespace=x}
policy cnp_x.p_node1 select {app=web, k8s:io.kubernetes.pod.namespace=x, k8s:io.kubernetes.pod.name in (a)}
  ingress allow from 192.168.0.1 | 203.0.113.1
`)
	wantDiags(t, cnp(`  endpointSelector: {}
  ingress:
  - fromEndpoints:
    - matchLabels: {reserved:host: "x"}
    - matchExpressions: [{key: reserved:host, operator: DoesNotExist}]
    - matchLabels: {reserved:cluster: ""}
    - matchLabels: {reserved:remote-node: "", app: db}
`),
		`p.yaml:10:21: label "reserved:host": reserved labels have no value ("x")`,
		`p.yaml:11:26: label "reserved:host": polc reads a reserved label with the operator Exists only (or in matchLabels)`,
		`p.yaml:12:21: label "reserved:cluster": Cilium has no such reserved label (it has host, remote-node, world, world-ipv4, world-ipv6, health, init, unmanaged, kube-apiserver, ingress, none)`,
		`p.yaml:13:21: label "reserved:remote-node": polc reads a reserved label only alone in its selector, where it means that entity`)
}

// Rule: fromNodes / toNodes select the nodes whose labels match (keys plain
// or with any:), as the nodes' addresses, whichever node the subject is
// on; a selector matching no node adds nothing. Without Node objects they
// select nothing, with a warning.
func TestCiliumFromNodes(t *testing.T) {
	wantNodePolicies(t, cnp(`  endpointSelector: {}
  egress:
  - toNodes: [{matchLabels: {role: worker}}, {matchExpressions: [{key: any:role, operator: In, values: [control-plane]}]}]
  ingress:
  - fromNodes: [{matchLabels: {zone: a}}]
  - fromNodes: [{matchLabels: {zone: b}}]
`), `
policy cnp_x.p select {k8s:io.kubernetes.pod.namespace=x} isolate ingress, egress
  ingress allow from 192.168.0.1 | 203.0.113.1
  egress allow to 192.168.0.1 | 203.0.113.1 | 192.168.0.2 | fd00::2
`)
	wantDiags(t, cnp("  endpointSelector: {}\n  ingress:\n  - fromNodes: [{}]\n"),
		`p.yaml:9:17: warning: fromNodes selects no address: the input has no Node objects (kubectl get nodes -o yaml)`)
}

// Rule: CIDR rules select no node address either (Cilium's default
// policy-cidr-match-mode): nodes' addresses inside the prefix are
// exceptions. A NetworkPolicy ipBlock keeps covering them.
func TestCiliumCIDRNodes(t *testing.T) {
	wantNodePolicies(t, cnp("  endpointSelector: {}\n  egress:\n  - toCIDR: [192.168.0.0/16, 192.168.0.1/32]\n"), `
policy cnp_x.p select {k8s:io.kubernetes.pod.namespace=x} isolate egress
  egress allow to 192.168.0.0/16 except 192.168.0.1, 192.168.0.2
`)
	wantNodePolicies(t, netpol("  podSelector: {}\n  egress:\n  - to: [{ipBlock: {cidr: 192.168.0.0/16}}]\n"), `
policy x.p select {k8s:io.kubernetes.pod.namespace=x} isolate ingress, egress
  egress allow to 192.168.0.0/16
`)
}

// Rule: v1 Node objects are read leniently (name, labels, the InternalIP
// and ExternalIP of status.addresses; other address types are names) and
// become no endpoint. An address that is no IP, a node named twice, an
// address two nodes (or a node and a pod) claim, a Node without a name and
// another API version of Node are errors at their position. Placeholder
// addresses skip node addresses.
func TestNodes(t *testing.T) {
	files, ds := ReadFiles([]Source{{Path: "cluster.yaml", Src: []byte(nodeCluster)}})
	if len(ds) > 0 {
		t.Fatalf("unexpected diagnostics:\n%s", ds.Error())
	}
	if got, want := len(files[0].Decls), 3; got != want {
		t.Errorf("%d declarations, want %d (one per pod, none for nodes)", got, want)
	}
	src := `apiVersion: v1
kind: Node
metadata: {name: n1}
status:
  addresses:
  - {type: InternalIP, address: 192.168.0.300}
  - {type: ExternalIP, address: "fe80::1%eth0"}
  - {type: InternalIP, address: 192.168.0.1}
---
apiVersion: v1
kind: Node
metadata: {name: n1}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status:
  addresses: [{type: InternalIP, address: 192.168.0.1}]
---
apiVersion: v1
kind: Node
metadata: {labels: {a: b}}
---
apiVersion: v1beta1
kind: Node
metadata: {name: n3}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: x}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 192.168.0.1}
`
	_, ds = ReadFiles([]Source{{Path: "n.yaml", Src: []byte(src)}})
	want := []string{
		`n.yaml:6:33: Node n1: InternalIP "192.168.0.300" is not an IP address`,
		`n.yaml:7:33: Node n1: ExternalIP "fe80::1%eth0" is not an IP address`,
		`n.yaml:12:18: Node "n1" appears twice`,
		`n.yaml:18:43: Node n2: address 192.168.0.1 is also node n1's`,
		`n.yaml:20:1: Node has no metadata.name`,
		`n.yaml:24:13: v1beta1 Node is not supported: polc reads Node as v1`,
		`n.yaml:32:17: Pod x/p: address 192.168.0.1 is also node n1's (a pod on the node's own address needs hostNetwork: true)`,
	}
	if diff := cmpStrings(want, diagStrings(ds)); diff != "" {
		t.Error(diff)
	}

	// Placeholders skip node addresses.
	src = `apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 100.64.0.1}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: x}
spec: {template: {metadata: {labels: {app: web}}, spec: {containers: [{name: c}]}}}
`
	files, _ = ReadFiles([]Source{{Path: "n.yaml", Src: []byte(src)}}, Options{Placeholders: true})
	if got, want := render(files[0]), "endpoint x.deploy/web labels(app=web, k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=x, k8s:io.cilium.k8s.policy.serviceaccount=default, k8s:io.kubernetes.pod.namespace=x) addr 100.64.0.2\n"; got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func cmpStrings(want, got []string) string {
	if strings.Join(want, "\n") == strings.Join(got, "\n") {
		return ""
	}
	return "diagnostics differ:\n--- want\n" + strings.Join(want, "\n") + "\n--- got\n" + strings.Join(got, "\n")
}

// Rule: a node address peer points at what named it: the entity, the
// reserved: selector or the fromNodes entry; the split policy at the
// original.
func TestNodePeerPositions(t *testing.T) {
	files, ds := ReadFiles([]Source{{Path: "cluster.yaml", Src: []byte(nodeCluster)}, {Path: "p.yaml", Src: []byte(cnp(`  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEntities: [host]
  - fromEndpoints: [{matchLabels: {reserved:remote-node: ""}}]
  - fromNodes: [{matchLabels: {zone: a}}]
`))}})
	if len(ds) > 0 {
		t.Fatal(ds)
	}
	var got []string
	for _, d := range files[1].Decls {
		if p, ok := d.(*dsl.Policy); ok {
			for _, r := range p.Rules {
				got = append(got, fmt.Sprintf("%s %s", r.Peers[0].Pos, r.Peers[0].CIDR.Prefix.Text))
			}
		}
	}
	want := []string{"p.yaml:9:20 192.168.0.2", "p.yaml:10:21 192.168.0.1", "p.yaml:11:17 192.168.0.1"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got %q, want %q", got, want)
	}
}
