// Package agent is `polc agent`: the long-running process that keeps one
// Kubernetes node's bundle in step with the cluster.
//
// It owns the loop watch → debounce → compile → apply → attach: client-go
// informers (one shared factory for Pods, Namespaces and NetworkPolicies,
// a dynamic one for CiliumNetworkPolicies and
// CiliumClusterwideNetworkPolicies) feed a debounced trigger; each round
// renders the informers' objects as the YAML that `polc build --k8s`
// reads (dsl/k8s), compiles them into a bundle in memory, hands it to
// runtime.Host (Load the first time, Apply after), and reconciles the
// attachments of the node's pods: the host-side interface of every local
// pod with an address is attached as IF=ENDPOINT, the interfaces of gone
// pods are detached. It reports what it enforces over HTTP (Server) and
// keeps the state that `polc status` shows.
//
// It sits above the compiler and the runtime, like cmd/polc: package
// runtime itself never imports the compiler's passes. The runtime owns
// pinning, atomic apply and recovery; the agent never unloads, so a
// crash, a restart or SIGTERM leaves the last applied bundle pinned and in
// force. See docs/agent.md.
package agent
