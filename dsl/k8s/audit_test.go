package k8s

import (
	"strings"
	"testing"
)

// Rule: the annotation polc.dev/audit: "true" puts a NetworkPolicy or a
// CiliumNetworkPolicy (every policy it becomes) in audit mode; "false"
// leaves it enforcing; anything else is an error at the annotation.
func TestAuditAnnotation(t *testing.T) {
	np := func(v string) string {
		return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n  namespace: x\n  annotations:\n    polc.dev/audit: " + v +
			"\nspec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - port: http\n"
	}
	cnp := "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: c\n  namespace: x\n  annotations: {polc.dev/audit: \"true\"}\n" +
		"specs:\n- endpointSelector: {}\n  ingress: [{fromEndpoints: [{}]}]\n- endpointSelector: {}\n  egress: [{toEndpoints: [{}]}]\n"
	for _, c := range []struct {
		src   string
		audit int // policies in audit mode
		all   int
	}{
		{np(`"true"`), 3, 3}, // the named port splits it: every part audit
		{np(`"false"`), 0, 3},
		{cnp, 2, 2},
	} {
		files, ds := ReadFiles([]Source{{Path: "cluster.yaml", Src: []byte(testCluster)}, {Path: "p.yaml", Src: []byte(c.src)}})
		if ds.HasErrors() {
			t.Fatalf("%s", ds.Error())
		}
		rendered := render(files[1])
		if got, all := strings.Count(rendered, " audit select "), strings.Count(rendered, "policy "); got != c.audit || all != c.all {
			t.Errorf("%d of %d policies in audit, want %d of %d:\n%s", got, all, c.audit, c.all, rendered)
		}
	}
	wantDiags(t, np(`"yes"`), `p.yaml:7:21: annotation polc.dev/audit: "yes", want "true" or "false"`)
}
