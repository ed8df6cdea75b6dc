package k8s

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzRead checks that no input makes the reader panic or hang; every
// problem must come back as a diagnostic.
func FuzzRead(f *testing.F) {
	paths, _ := filepath.Glob("../../testdata/k8s/*/policy.yaml")
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(testCluster))
	// Nodes with policies naming them, in one input.
	f.Add([]byte(nodeCluster + "---\n" + cnp("  endpointSelector: {}\n  ingress:\n  - fromEntities: [host, world, cluster]\n    fromEndpoints: [{matchLabels: {reserved:remote-node: \"\"}}]\n  egress:\n  - toNodes: [{matchLabels: {role: worker}}]\n    toEntities: [remote-node]\n    toCIDR: [192.168.0.0/16]\n")))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\n"))
	cluster := []byte(testCluster)
	f.Fuzz(func(t *testing.T, src []byte) {
		files, _ := ReadFiles([]Source{{Path: "c.yaml", Src: cluster}, {Path: "f.yaml", Src: src}})
		if len(files) != 2 {
			t.Fatalf("got %d files", len(files))
		}
	})
}
