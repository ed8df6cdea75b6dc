package k8s_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler"
	"github.com/polc-dev/polc/compiler/lower"
	"github.com/polc-dev/polc/dsl/k8s"
)

// BenchmarkNodeEntities reads, compiles and lowers a cluster of 2 000 pods
// under a policy with world and host rules, without Node objects (world is
// polc's world, host selects nothing: the baseline) and with 50 (world
// becomes 0.0.0.0/0 and ::/0 minus every pod and node address, host is
// split per node). Compare the two in one run.
func BenchmarkNodeEntities(b *testing.B) {
	const pods, nodes = 2000, 50
	for _, withNodes := range []bool{false, true} {
		b.Run(fmt.Sprintf("nodes=%v", withNodes), func(b *testing.B) {
			var src strings.Builder
			src.WriteString("apiVersion: v1\nkind: List\nitems:\n")
			if withNodes {
				for n := range nodes {
					fmt.Fprintf(&src, "- {apiVersion: v1, kind: Node, metadata: {name: n%d}, status: {addresses: [{type: InternalIP, address: 192.168.%d.%d}]}}\n", n, n/250, n%250+1)
				}
			}
			for p := range pods {
				fmt.Fprintf(&src, "- {apiVersion: v1, kind: Pod, metadata: {name: p%d, namespace: x, labels: {app: a%d}}, spec: {nodeName: n%d, containers: [{name: c}]}, status: {podIP: 10.%d.%d.%d}}\n",
					p, p%20, p%nodes, p/65536, p/256%256, p%256+1)
			}
			policy := `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {}
  ingress:
  - fromEntities: [host]
  egress:
  - toEntities: [world]
`
			srcs := []k8s.Source{{Path: "c.yaml", Src: []byte(src.String())}, {Path: "p.yaml", Src: []byte(policy)}}
			for b.Loop() {
				files, ds := k8s.ReadFiles(srcs)
				if ds.HasErrors() {
					b.Fatal(ds)
				}
				prog, cds := compiler.Compile(files, nil)
				if cds.HasErrors() {
					b.Fatal(cds)
				}
				if _, err := lower.Build(prog, bpf.Object(), lower.Options{Compiler: "bench"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
