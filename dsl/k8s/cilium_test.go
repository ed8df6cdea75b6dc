package k8s

import "testing"

func cnp(spec string) string {
	return "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: p\n  namespace: x\nspec:\n" + spec
}

// Rule: a namespaced policy's endpointSelector and its fromEndpoints /
// toEndpoints selectors are scoped to the policy's namespace, unless a
// selector names the namespace label or a namespace label
// (io.cilium.k8s.namespace.labels.*, as Cilium's getEndpointSelector
// decides); keys may carry the k8s: or any: source prefix, and Cilium's
// namespace label names map onto polc's.
func TestCiliumSelectors(t *testing.T) {
	wantPolicies(t, cnp(`  endpointSelector:
    matchLabels: {k8s:app: web}
  ingress:
  - fromEndpoints:
    - {}
    - matchLabels: {any:app: db}
    - matchLabels: {k8s:io.kubernetes.pod.namespace: y}
    - matchLabels: {io.cilium.k8s.namespace.labels.team: b, io.cilium.k8s.policy.serviceaccount: robot}
    - matchLabels: {k8s:io.cilium.k8s.namespace.labels.faction: alliance}
    - matchExpressions: [{key: io.cilium.k8s.namespace.labels.tier, operator: Exists}]
    - matchLabels: {io.cilium.k8s.policy.serviceaccount: robot}
`), `
policy cnp_x.p select {app=web, k8s:io.kubernetes.pod.namespace=x} isolate ingress
  ingress allow from {k8s:io.kubernetes.pod.namespace=x} | {app=db, k8s:io.kubernetes.pod.namespace=x} | {k8s:io.kubernetes.pod.namespace=y} | {k8s:io.cilium.k8s.namespace.labels.team=b, k8s:io.cilium.k8s.policy.serviceaccount=robot} | {k8s:io.cilium.k8s.namespace.labels.faction=alliance} | {k8s:io.cilium.k8s.namespace.labels.tier exists} | {k8s:io.cilium.k8s.policy.serviceaccount=robot, k8s:io.kubernetes.pod.namespace=x}
`)
}

// Rule: a clusterwide policy is not scoped to a namespace.
func TestCiliumClusterwide(t *testing.T) {
	wantPolicies(t, `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata:
  name: p
spec:
  endpointSelector: {}
  egress:
  - toEndpoints:
    - matchLabels: {app: db}
`, `
policy ccnp_p select {} isolate egress
  egress allow to {app=db}
`)
}

// Rule: without Node objects, entities world, all and cluster are
// PeerWorld, PeerAny and every pod, and host and remote-node select no
// address (a warning says why); init, unmanaged and none select nothing;
// health selects nothing (a warning) and cannot be denied; ingress and
// unknown entities are errors. (With Node objects: TestCiliumNodeEntities.)
func TestCiliumEntities(t *testing.T) {
	wantPolicies(t, cnp("  endpointSelector: {}\n  ingress:\n  - fromEntities: [world, all, cluster]\n"), `
policy cnp_x.p select {k8s:io.kubernetes.pod.namespace=x} isolate ingress
  ingress allow from world | any | {}
`)
	wantPolicies(t, cnp("  endpointSelector: {}\n  ingress:\n  - fromEntities: [world-ipv4]\n  - fromEntities: [init, unmanaged, none]\n"), `
policy cnp_x.p select {k8s:io.kubernetes.pod.namespace=x} isolate ingress
  ingress allow from 0.0.0.0/0 except 10.1.0.1, 10.1.0.2, 10.2.0.1
`)
	wantDiags(t, cnp("  endpointSelector: {}\n  ingress:\n  - fromEntities: [host]\n  - fromEntities: [remote-node]\n"),
		`p.yaml:9:20: warning: entity host selects no address: the input has no Node objects (kubectl get nodes -o yaml)`,
		`p.yaml:10:20: warning: entity remote-node selects no address: the input has no Node objects (kubectl get nodes -o yaml)`)
	wantDiags(t, cnp("  endpointSelector: {}\n  ingress:\n  - fromEntities: [health]\n  egressDeny:\n  - toEntities: [health]\n"),
		`p.yaml:9:20: warning: CiliumNetworkPolicy: entity "health" selects nothing here: the cilium-health endpoints' addresses are in no object polc reads`,
		`p.yaml:11:18: CiliumNetworkPolicy: entity "health" cannot be denied here: the cilium-health endpoints' addresses are in no object polc reads, so polc cannot tell their traffic from the world's`)
	wantDiags(t, cnp("  endpointSelector: {}\n  ingress:\n  - fromEntities: [ingress, hosts]\n"),
		`p.yaml:9:20: CiliumNetworkPolicy: entity "ingress" is not supported: it is Cilium's Envoy ingress proxy, which polc does not model`,
		`p.yaml:9:29: CiliumNetworkPolicy: entity "hosts" is not supported: polc reads all, world, world-ipv4, world-ipv6, cluster, host, remote-node, kube-apiserver, health, init, unmanaged and none`)
}

// Rule: CIDR rules select addresses that are no pod's: pods' addresses
// inside the prefix become exceptions, and a CIDR that only pods fill
// matches nothing.
func TestCiliumCIDR(t *testing.T) {
	wantPolicies(t, cnp(`  endpointSelector: {}
  egress:
  - toCIDR: [10.0.0.0/8, 10.1.0.1/32, 192.0.2.0/24]
    toCIDRSet:
    - cidr: 10.0.0.0/8
      except: [10.1.0.0/16]
`), `
policy cnp_x.p select {k8s:io.kubernetes.pod.namespace=x} isolate egress
  egress allow to 10.0.0.0/8 except 10.1.0.1, 10.1.0.2, 10.2.0.1 | 192.0.2.0/24 | 10.0.0.0/8 except 10.1.0.0/16, 10.2.0.1
`)
}

// Rule: toPorts: protocol ANY (or none) is TCP, UDP and SCTP; port "0" or
// none is every port; endPort a range; named ports resolve per pod; icmps
// are icmp/icmpv6 terms with a type (number or Cilium's name).
func TestCiliumPorts(t *testing.T) {
	wantPolicies(t, cnp(`  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - toPorts:
    - ports:
      - port: "80"
      - {port: "1000", endPort: 2000, protocol: UDP}
      - {protocol: SCTP}
      - {port: http, protocol: TCP}
    icmps:
    - fields:
      - {type: 8}
      - {family: IPv6, type: EchoRequest}
`), `
policy cnp_x.p select {app=db, k8s:io.kubernetes.pod.namespace=x} isolate ingress
  ingress allow on tcp/80, udp/80, sctp/80, udp/1000-2000, sctp, icmp type 8, icmpv6 type 128
policy cnp_x.p_port1 select {app=db, k8s:io.kubernetes.pod.namespace=x, k8s:io.kubernetes.pod.name in (b)}
  ingress allow on tcp/8081
`)
}

// Rule: a rule with neither peers nor ports (`- {}`) matches nothing but
// still turns default deny on; a rule with only ports applies to every
// peer. Deny rules also turn default deny on; enableDefaultDeny sets it.
func TestCiliumDefaultDeny(t *testing.T) {
	wantPolicies(t, cnp("  endpointSelector: {}\n  ingress:\n  - {}\n  egressDeny:\n  - toEntities: [world]\n"), `
policy cnp_x.p select {k8s:io.kubernetes.pod.namespace=x} isolate ingress, egress
  egress deny to world
`)
	wantPolicies(t, cnp("  endpointSelector: {}\n  enableDefaultDeny: {ingress: true}\n"), `
policy cnp_x.p select {k8s:io.kubernetes.pod.namespace=x} isolate ingress
`)
	wantDiags(t, cnp("  endpointSelector: {}\n  enableDefaultDeny: {ingress: false}\n  ingress:\n  - fromEntities: [all]\n"),
		"p.yaml:8:32: CiliumNetworkPolicy: enableDefaultDeny.ingress: false with ingress rules is not supported: in polc a policy with rules in a direction makes it default-deny")
}

// Rule: deny rules become deny rules, whatever else allows.
func TestCiliumDeny(t *testing.T) {
	wantPolicies(t, cnp(`  endpointSelector: {}
  ingress:
  - fromEntities: [all]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: "5432", protocol: TCP}]}]
`), `
policy cnp_x.p select {k8s:io.kubernetes.pod.namespace=x} isolate ingress
  ingress allow from any
  ingress deny from {app=db, k8s:io.kubernetes.pod.namespace=x} on tcp/5432
`)
}

// Rule: specs is a list of rules, each its own policy.
func TestCiliumSpecs(t *testing.T) {
	wantPolicies(t, `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: y}
specs:
- endpointSelector: {}
  ingress: [{fromEntities: [world]}]
- endpointSelector: {matchLabels: {app: web}}
  egress: [{toEntities: [cluster]}]
`, `
policy cnp_y.p_1 select {k8s:io.kubernetes.pod.namespace=y} isolate ingress
  ingress allow from world
policy cnp_y.p_2 select {app=web, k8s:io.kubernetes.pod.namespace=y} isolate egress
  egress allow to {}
`)
}

// Rule: anything outside the L3/L4 subset is an error naming the field at
// its position — never ignored.
func TestCiliumUnsupported(t *testing.T) {
	for _, tc := range []struct {
		name, spec string
		want       []string
	}{
		{"fqdn", "  endpointSelector: {}\n  egress:\n  - toFQDNs:\n    - matchName: example.com\n",
			[]string{`p.yaml:9:5: CiliumNetworkPolicy: field "toFQDNs" is not supported: FQDN rules need a DNS proxy; polc compiles L3/L4`}},
		{"l7", "  endpointSelector: {}\n  ingress:\n  - toPorts:\n    - ports: [{port: \"80\"}]\n      rules:\n        http: [{method: GET}]\n",
			[]string{`p.yaml:11:7: CiliumNetworkPolicy: field "rules" is not supported: L7 rules (HTTP, Kafka, DNS) need a proxy; polc compiles L3/L4`}},
		{"services", "  endpointSelector: {}\n  egress:\n  - toServices: [{k8sService: {serviceName: s}}]\n",
			[]string{`p.yaml:9:5: CiliumNetworkPolicy: field "toServices" is not supported: service-based rules; name the backends with toEndpoints or toCIDR`}},
		{"requires", "  endpointSelector: {}\n  ingress:\n  - fromRequires: [{}]\n",
			[]string{`p.yaml:9:5: CiliumNetworkPolicy: field "fromRequires" is not supported: requirements across rules (deprecated in Cilium)`}},
		{"node selector", "  nodeSelector: {}\n",
			[]string{`p.yaml:7:3: CiliumNetworkPolicy: field "nodeSelector" is not supported: host policies make nodes their subjects; polc has no host endpoint, it enforces on pods`}},
		{"unknown", "  endpointSelector: {}\n  ingress:\n  - fromEndpoint: []\n",
			[]string{`p.yaml:9:5: CiliumNetworkPolicy: unknown field "fromEndpoint"`}},
		{"reserved label", "  endpointSelector: {matchLabels: {reserved:host: \"\"}}\n",
			[]string{`p.yaml:7:36: label "reserved:host": a reserved: label selects one of Cilium's entities; polc reads it only alone in a fromEndpoints or toEndpoints selector, as that entity`}},
		{"protocol", "  endpointSelector: {}\n  ingress:\n  - toPorts: [{ports: [{port: \"1\", protocol: ICMP}]}]\n",
			[]string{`p.yaml:9:46: CiliumNetworkPolicy: protocol "ICMP": expected TCP, UDP, SCTP or ANY`}},
		{"port range", "  endpointSelector: {}\n  ingress:\n  - toPorts: [{ports: [{port: \"80-90\"}]}]\n",
			[]string{`p.yaml:9:31: CiliumNetworkPolicy: port "80-90": expected a number or a port name; a name must contain at least one letter (a-z)`}},
		{"icmp name", "  endpointSelector: {}\n  ingress:\n  - icmps: [{fields: [{type: Echo}]}]\n",
			[]string{`p.yaml:9:30: CiliumNetworkPolicy: unknown icmp message type "Echo"`}},
		{"no selector", "  ingress: []\n",
			[]string{`p.yaml:6:1: CiliumNetworkPolicy: endpointSelector is missing`}},
	} {
		t.Run(tc.name, func(t *testing.T) { wantDiags(t, cnp(tc.spec), tc.want...) })
	}
}

// Rule: every error in a Cilium policy shows in one run: fields polc does
// not read, unsupported entities, reserved labels and node selectors polc
// cannot read, and enableDefaultDeny conflicts, across rules and objects.
func TestCiliumAllErrorsAtOnce(t *testing.T) {
	src := `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: a, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: x}}
  egress:
  - toFQDNs: [{matchName: example.com}]
  - toEntities: [outside]
  - toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]
  ingress:
  - fromEntities: [ingress]
  - fromNodes: [{matchLabels: {k8s:a: b}}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: b, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: x}}
  enableDefaultDeny: {ingress: false}
  ingress:
  - fromEndpoints: [{matchLabels: {reserved:host: "", app: x}}]
  ingressDeny:
  - fromEntities: [health]
`
	wantDiags(t, src,
		`p.yaml:7:5: CiliumNetworkPolicy: field "toFQDNs" is not supported: FQDN rules need a DNS proxy; polc compiles L3/L4`,
		`p.yaml:8:18: CiliumNetworkPolicy: entity "outside" is not supported: polc reads all, world, world-ipv4, world-ipv6, cluster, host, remote-node, kube-apiserver, health, init, unmanaged and none`,
		`p.yaml:9:54: CiliumNetworkPolicy: field "rules" is not supported: L7 rules (HTTP, Kafka, DNS) need a proxy; polc compiles L3/L4`,
		`p.yaml:11:20: CiliumNetworkPolicy: entity "ingress" is not supported: it is Cilium's Envoy ingress proxy, which polc does not model`,
		`p.yaml:12:32: label "k8s:a": a node selector matches Node labels: write the key without a source, or with any:`,
		`p.yaml:19:32: CiliumNetworkPolicy: enableDefaultDeny.ingress: false with ingress rules is not supported: in polc a policy with rules in a direction makes it default-deny`,
		`p.yaml:21:36: label "reserved:host": polc reads a reserved label only alone in its selector, where it means that entity`,
		`p.yaml:23:20: CiliumNetworkPolicy: entity "health" cannot be denied here: the cilium-health endpoints' addresses are in no object polc reads, so polc cannot tell their traffic from the world's`,
	)
}
