package k8s

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkPodManyLabels reads one Pod with n labels: linear in n (it was
// quadratic, 35 s at 100 000 labels, while each label's position was
// looked up by walking the labels mapping again).
func BenchmarkPodManyLabels(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			var src strings.Builder
			src.WriteString("apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  namespace: default\n  labels:\n")
			for i := range n {
				fmt.Fprintf(&src, "    k%d: v%d\n", i, i)
			}
			src.WriteString("status:\n  podIP: 10.0.0.1\n")
			data := []byte(src.String())
			for b.Loop() {
				if _, ds := ReadFiles([]Source{{Path: "pod.yaml", Src: data}}); ds.HasErrors() {
					b.Fatal(ds)
				}
			}
		})
	}
}
