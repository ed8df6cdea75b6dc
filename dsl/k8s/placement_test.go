package k8s_test

import (
	"strings"
	"testing"

	"github.com/polc-dev/polc/dsl"
	"github.com/polc-dev/polc/dsl/k8s"
)

const placementInput = `apiVersion: v1
kind: Pod
metadata: {name: here, labels: {app: a}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: there, labels: {app: a}}
spec: {nodeName: n2}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: pending, labels: {app: b}}
status: {podIP: 10.0.0.3}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: pinned}
spec:
  template:
    metadata: {labels: {app: c}}
    spec: {nodeName: n1}
`

// TestNodePlacement: with Options.Node, pods whose spec.nodeName is the
// node (a workload's pod template's too) are local endpoints, pods of
// other nodes are remote at their spec.nodeName, and pods without one are
// remote with a warning; without Node every endpoint is local.
func TestNodePlacement(t *testing.T) {
	remote := func(opts k8s.Options) (map[string]dsl.Pos, dsl.Diagnostics) {
		f, ds := k8s.Read("p.yaml", []byte(placementInput), opts)
		if ds.HasErrors() {
			t.Fatal(ds.Format(nil))
		}
		out := map[string]dsl.Pos{}
		for _, d := range f.Decls {
			if e, ok := d.(*dsl.Endpoint); ok {
				out[e.Name.Name] = e.Remote
			}
		}
		return out, ds
	}
	got, ds := remote(k8s.Options{Placeholders: true, Node: "n1"})
	if len(got) != 4 || got["default.here"].IsValid() || got["default.deploy/pinned"].IsValid() ||
		got["default.there"] != (dsl.Pos{File: "p.yaml", Line: 10, Col: 18}) || !got["default.pending"].IsValid() {
		t.Errorf("remote positions: %v", got)
	}
	w := ds.Format(nil)
	if !strings.Contains(w, "p.yaml:13:1: warning: Pod default/pending has no spec.nodeName: remote on node n1 (only pods scheduled to n1 are local)") ||
		strings.Count(w, "spec.nodeName") != 1 || strings.Contains(w, "no Node object") {
		t.Errorf("warnings:\n%s", w)
	}
	got, ds = remote(k8s.Options{Placeholders: true})
	for name, pos := range got {
		if pos.IsValid() {
			t.Errorf("without Node, %s is remote", name)
		}
	}
	if strings.Contains(ds.Format(nil), "nodeName") {
		t.Errorf("warnings without Node:\n%s", ds.Format(nil))
	}

	// A node no pod runs on: every endpoint remote, and a warning, unless
	// the input has a Node object of that name.
	got, ds = remote(k8s.Options{Placeholders: true, Node: "n3"})
	for name, pos := range got {
		if !pos.IsValid() {
			t.Errorf("on n3, %s is local", name)
		}
	}
	if !strings.Contains(ds.Format(nil), `p.yaml: warning: node "n3": no Node object of that name and no pod on it: every endpoint is remote`) {
		t.Errorf("unknown node:\n%s", ds.Format(nil))
	}
	withNode := placementInput + "---\napiVersion: v1\nkind: Node\nmetadata: {name: n3}\n"
	_, ds = k8s.Read("p.yaml", []byte(withNode), k8s.Options{Placeholders: true, Node: "n3"})
	if strings.Contains(ds.Format(nil), "no Node object") {
		t.Errorf("a Node object n3 exists:\n%s", ds.Format(nil))
	}
}
