package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const nodeYAML = `apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: api, labels: {app: api}}
spec: {nodeName: n2}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: db, labels: {app: db}}
spec: {nodeName: n2}
status: {podIP: 10.0.0.3}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-in}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: db}}}]
`

// TestNodeFlag: --node needs --k8s and a name (exit 2); build --node
// writes a bundle whose endpoints.json has the node's pods only; explain
// on a node bundle says a packet between other nodes' pods is elsewhere
// (exit 0) and names the remote endpoint of a packet it decides half of.
func TestNodeFlag(t *testing.T) {
	chdirRoot(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(in, []byte(nodeYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"build", "--node", "n1", "testdata/quickstart.pol", "-o", filepath.Join(dir, "x")},
		{"check", "--node", "n1", "testdata/quickstart.pol"},
		{"build", "--k8s", "--node=", in, "-o", filepath.Join(dir, "x")},
	} {
		code, _, stderr := runPolc(t, args...)
		if code != 2 || !strings.Contains(stderr, "--node needs") {
			t.Errorf("%v: exit %d, stderr %s", args, code, stderr)
		}
	}

	code, stdout, stderr := runPolc(t, "check", "--k8s", "--node", "n1", in)
	if code != 0 || !strings.Contains(stdout, "3 endpoints (2 remote)") {
		t.Errorf("check: exit %d\n%s%s", code, stdout, stderr)
	}

	out := filepath.Join(dir, "n1")
	if code, _, stderr := runPolc(t, "build", "--k8s", "--node", "n1", in, "-o", out); code != 0 {
		t.Fatalf("build: exit %d: %s", code, stderr)
	}
	raw, err := os.ReadFile(filepath.Join(out, "endpoints.json"))
	if err != nil {
		t.Fatal(err)
	}
	var eps []struct {
		Index uint32 `json:"index"`
		Name  string `json:"name"`
	}
	if err := json.Unmarshal(raw, &eps); err != nil || len(eps) != 1 || eps[0].Name != "default.web" || eps[0].Index != 1 {
		t.Errorf("endpoints.json of n1: %s (%v)", raw, err)
	}

	code, stdout, stderr = runPolc(t, "explain", "--reference", "--k8s", "--node", "n1", in, "tcp default.db -> default.api:80")
	if code != 0 || !strings.Contains(stdout, "verdict:      elsewhere") {
		t.Errorf("explain elsewhere: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = runPolc(t, "explain", "--reference", "--k8s", "--node", "n1", in, "tcp default.web -> default.api:80")
	if code != 0 || !strings.Contains(stdout, "destination:  10.0.0.2 is remote endpoint default.api") ||
		!strings.Contains(stdout, "verdict:      allow") ||
		!strings.Contains(stdout, "default.api is a remote endpoint: its own node's bundle decides its half") {
		t.Errorf("explain half: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = runPolc(t, "explain", "--reference", "--k8s", "--node", "n2", in, "tcp default.web -> default.api:80")
	if code != 0 || !strings.Contains(stdout, "verdict:      deny") {
		t.Errorf("explain on n2: exit %d\n%s", code, stdout)
	}
}
