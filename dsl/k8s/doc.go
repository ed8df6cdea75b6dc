// Package k8s reads Kubernetes cluster snapshots — Pods, Namespaces, Nodes,
// networking.k8s.io/v1 NetworkPolicies, the L3/L4 subset of Cilium's
// CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy, and the tiered
// ClusterNetworkPolicy (AdminNetworkPolicy, BaselineAdminNetworkPolicy) of
// sigs.k8s.io/network-policy-api — into polc's AST,
// so the compiler treats them like any other policy source. It is the only
// package that depends on the Kubernetes API types (and on
// network-policy-api's).
//
// Each pod with an address becomes an endpoint named "NAMESPACE.POD",
// labelled with its own labels plus reserved labels for its namespace,
// the namespace's labels and its service account. Nodes are no endpoints;
// their addresses are the peers of Cilium's host, remote-node and cluster
// entities and of fromNodes / toNodes. Each policy becomes one
// dsl.Policy (plus one per group of pods where named ports resolve
// differently), with the exact meaning its API gives it; docs/kubernetes.md
// states every rule and names the test that checks it.
//
// Subpackage cases reads reachability matrices, the expected results of
// a cluster snapshot, and turns them into policy tests.
package k8s
