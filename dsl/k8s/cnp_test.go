package k8s

import (
	"strings"
	"testing"
)

func clusterNP(version, spec string) string {
	return "apiVersion: policy.networking.k8s.io/" + version + "\nkind: ClusterNetworkPolicy\nmetadata:\n  name: p\nspec:\n" + spec
}

func anp(spec string) string {
	return "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata:\n  name: p\nspec:\n" + spec
}

func banp(spec string) string {
	return "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\nmetadata:\n  name: default\nspec:\n" + spec
}

// Rule: a ClusterNetworkPolicy (v1alpha2 and v1beta1 alike) is one
// tiered policy named cnp.NAME with its tier and priority, never isolating;
// its rules keep their written order and actions (Accept, Deny, Pass);
// subjects and peers by namespaces (namespace labels) or pods (namespace
// AND pod labels); egress networks are CIDRs; ports by number or range per
// protocol.
func TestClusterNetworkPolicy(t *testing.T) {
	const spec = `  tier: Admin
  priority: 7
  subject:
    namespaces:
      matchLabels: {team: a}
  ingress:
  - name: from-b
    action: Accept
    from:
    - pods:
        namespaceSelector: {matchLabels: {team: b}}
        podSelector: {matchLabels: {app: web}}
    protocols:
    - tcp: {destinationPort: {number: 80}}
    - udp: {destinationPort: {range: {start: 5000, end: 5100}}}
  - action: Deny
    from:
    - namespaces: {}
  egress:
  - action: Pass
    to:
    - networks: [192.0.2.0/24, "2001:db8::/32"]
    - namespaces: {matchLabels: {team: b}}
    protocols:
    - sctp: {destinationPort: {number: 9003}}
`
	want := `
policy cnp.p tier admin priority 7 select {k8s:io.cilium.k8s.namespace.labels.team=a}
  ingress allow from {app=web, k8s:io.cilium.k8s.namespace.labels.team=b} on tcp/80, udp/5000-5100
  ingress deny from {}
  egress pass to 192.0.2.0/24 | 2001:db8::/32 | {k8s:io.cilium.k8s.namespace.labels.team=b} on sctp/9003
`
	wantPolicies(t, clusterNP("v1alpha2", spec), want)
	wantPolicies(t, clusterNP("v1beta1", spec), want)
	wantPolicies(t, clusterNP("v1beta1", `  tier: Baseline
  priority: 0
  subject:
    pods:
      namespaceSelector: {}
      podSelector: {matchLabels: {app: db}}
  egress:
  - action: Deny
    to:
    - networks: [0.0.0.0/0]
`), `
policy cnp.p tier baseline priority 0 select {app=db}
  egress deny to 0.0.0.0/0
`)
}

// Rule: AdminNetworkPolicy is the admin tier (Allow, Deny, Pass), named
// anp.NAME; BaselineAdminNetworkPolicy the baseline tier at priority 0
// (Allow, Deny), named banp.default; v1alpha1 ports are portNumber (TCP
// by default), portRange and namedPort.
func TestAdminNetworkPolicy(t *testing.T) {
	wantPolicies(t, anp(`  priority: 20
  subject:
    pods:
      namespaceSelector: {matchLabels: {team: a}}
      podSelector: {matchLabels: {app: db}}
  egress:
  - action: Allow
    to:
    - pods:
        namespaceSelector: {}
        podSelector: {matchLabels: {app: web}}
    ports:
    - portNumber: {port: 8080}
    - portNumber: {protocol: UDP, port: 53}
    - portRange: {protocol: SCTP, start: 100, end: 200}
  - action: Pass
    to:
    - namespaces: {matchLabels: {team: b}}
  - action: Deny
    to:
    - networks: [0.0.0.0/0]
`), `
policy anp.p tier admin priority 20 select {app=db, k8s:io.cilium.k8s.namespace.labels.team=a}
  egress allow to {app=web} on tcp/8080, udp/53, sctp/100-200
  egress pass to {k8s:io.cilium.k8s.namespace.labels.team=b}
  egress deny to 0.0.0.0/0
`)
	wantPolicies(t, banp(`  subject:
    namespaces: {}
  ingress:
  - action: Deny
    from:
    - namespaces: {matchLabels: {team: b}}
  - action: Allow
    from:
    - namespaces: {}
    ports:
    - portRange: {start: 1, end: 1024}
`), `
policy banp.default tier baseline priority 0 select {}
  ingress deny from {k8s:io.cilium.k8s.namespace.labels.team=b}
  ingress allow from {} on tcp/1-1024
`)
}

// Rule: an ingress named port resolves on each subject: subjects on
// which the names resolve alike get a copy of the whole policy,
// cnp.NAME_portN, selecting them by name, with every rule in order and the
// names resolved; the original keeps the other subjects and drops the
// named ports. An egress named port resolves on the destination pods, in
// the policy itself.
func TestClusterNetworkPolicyNamedPorts(t *testing.T) {
	wantPolicies(t, clusterNP("v1alpha2", `  tier: Admin
  priority: 1
  subject:
    namespaces: {}
  ingress:
  - action: Accept
    from:
    - namespaces: {matchLabels: {team: b}}
    protocols:
    - destinationNamedPort: http
  - action: Deny
    from:
    - namespaces: {}
  egress:
  - action: Accept
    to:
    - namespaces: {}
    protocols:
    - destinationNamedPort: dns
`), `
policy cnp.p tier admin priority 1 select {k8s:io.kubernetes.pod.namespace notin (x)}
  ingress deny from {}
  egress allow to {k8s:io.kubernetes.pod.namespace=x, k8s:io.kubernetes.pod.name in (b)} on udp/53
policy cnp.p_port1 tier admin priority 1 select {k8s:io.kubernetes.pod.namespace=x, k8s:io.kubernetes.pod.name in (a)}
  ingress allow from {k8s:io.cilium.k8s.namespace.labels.team=b} on tcp/8080
  ingress deny from {}
  egress allow to {k8s:io.kubernetes.pod.namespace=x, k8s:io.kubernetes.pod.name in (b)} on udp/53
policy cnp.p_port2 tier admin priority 1 select {k8s:io.kubernetes.pod.namespace=x, k8s:io.kubernetes.pod.name in (b)}
  ingress allow from {k8s:io.cilium.k8s.namespace.labels.team=b} on tcp/8081
  ingress deny from {}
  egress allow to {k8s:io.kubernetes.pod.namespace=x, k8s:io.kubernetes.pod.name in (b)} on udp/53
`)
}

// Rule: the List kinds (ClusterNetworkPolicyList, AdminNetworkPolicyList,
// as kubectl prints them) stand for their items; metadata.namespace on
// these cluster-scoped kinds is ignored with a warning; a nodes peer
// without Node objects selects no address (a warning) and its rule
// matches nothing.
func TestTieredListsAndWarnings(t *testing.T) {
	wantPolicies(t, `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicyList
items:
- apiVersion: policy.networking.k8s.io/v1alpha2
  kind: ClusterNetworkPolicy
  metadata: {name: b}
  spec:
    tier: Admin
    priority: 2
    subject: {namespaces: {}}
- apiVersion: policy.networking.k8s.io/v1alpha1
  kind: AdminNetworkPolicy
  metadata: {name: a}
  spec:
    priority: 1
    subject: {namespaces: {}}
`, `
policy cnp.b tier admin priority 2 select {}
policy anp.a tier admin priority 1 select {}
`)
	wantDiags(t, clusterNP("v1alpha2", `  tier: Admin
  priority: 2
  subject: {namespaces: {}}
  egress:
  - action: Deny
    to:
    - nodes: {}
`)+"---\n"+strings.Replace(anp("  priority: 1\n  subject: {namespaces: {}}\n"), "  name: p\n", "  name: p\n  namespace: x\n", 1),
		`p.yaml:12:7: warning: a nodes peer selects no address: the input has no Node objects (kubectl get nodes -o yaml)`,
		`p.yaml:18:14: warning: AdminNetworkPolicy is cluster-scoped: metadata.namespace ignored`)
}

// Rule: objects of one tier and priority are ordered by policy name
// (anp. before cnp.; then metadata.name). Named-port copies (NAME_portN)
// would sort after another object's NAME-x of the same priority, which
// the original precedes: a warning says so.
func TestTieredOrderWarning(t *testing.T) {
	obj := func(name, proto string) string {
		return strings.Replace(clusterNP("v1alpha2", `  tier: Admin
  priority: 4
  subject: {namespaces: {}}
  ingress:
  - action: Accept
    from: [{namespaces: {}}]
    protocols: [`+proto+`]
`), "name: p", "name: "+name, 1)
	}
	wantDiags(t, obj("web", "destinationNamedPort: http")+"---\n"+obj("web-2", "tcp: {destinationPort: {number: 1}}"),
		`p.yaml:4:9: warning: cnp.web: its named-port copies (cnp.web_portN) are ordered after cnp.web-2, of the same tier and priority, which the policy itself precedes: give the two different priorities`)
	wantDiags(t, obj("web", "destinationNamedPort: http")+"---\n"+obj("webz", "tcp: {destinationPort: {number: 1}}"))
}

// Rule: sameLabels is an error only where earlier releases had it (a
// peer's namespaces); as a label key it is a label key.
func TestSameLabelsAsLabelKey(t *testing.T) {
	wantPolicies(t, anp(`  priority: 3
  subject:
    namespaces: {matchLabels: {sameLabels: "yes"}}
  ingress:
  - action: Deny
    from:
    - namespaces: {matchLabels: {sameLabels: "yes"}}
`), `
policy anp.p tier admin priority 3 select {k8s:io.cilium.k8s.namespace.labels.sameLabels=yes}
  ingress deny from {k8s:io.cilium.k8s.namespace.labels.sameLabels=yes}
`)
}

// Rule: values of the wrong shape anywhere in a tiered object are errors
// at their position, never a panic.
func TestTieredOddShapes(t *testing.T) {
	for _, spec := range []string{
		"  tier: 1\n  priority: \"5\"\n  subject: []\n",
		"  tier: Admin\n  priority: 5\n  subject: {namespaces: {}}\n  ingress: {}\n",
		"  tier: Admin\n  priority: 5\n  subject: {namespaces: {}}\n  ingress:\n  - action: Deny\n    from: x\n",
		"  tier: Admin\n  priority: 5\n  subject: {namespaces: {}}\n  egress:\n  - action: Deny\n    to: [{networks: 10.0.0.0/8}]\n",
		"  tier: Admin\n  priority: 5\n  subject: {namespaces: {}}\n  egress:\n  - action: Deny\n    to: [{namespaces: {}}]\n    protocols: [{tcp: 5}, {udp: {destinationPort: 80}}]\n",
		"  tier: Admin\n  priority: 5\n  subject: {namespaces: {}}\n  egress:\n  - action: Deny\n    to: [null, {pods: null}]\n    protocols: [null]\n",
		"  tier: Admin\n  priority: 5\n  subject: {pods: {}}\n",
		"  tier: Admin\n  priority: 5\n  subject: {namespaces: {}}\n  egress:\n  - null\n  - action: [Deny]\n",
	} {
		_, ds := readPolicies(t, clusterNP("v1alpha2", spec))
		if !ds.HasErrors() {
			t.Errorf("no error for:\n%s", spec)
		}
		for _, d := range ds {
			if d.Pos.Line == 0 {
				t.Errorf("%q: diagnostic without a line: %s", spec, d)
			}
		}
	}
}
