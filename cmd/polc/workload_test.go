package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const workloadYAML = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  template:
    metadata:
      labels: {app: web}
    spec:
      containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: client, namespace: shop}
spec:
  template:
    metadata:
      labels: {app: client}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: http}]
`

// explain reasons about workloads through their placeholder addresses;
// build gives them no endpoint, so no made-up address reaches a bundle.
func TestWorkloadsPlaceholdersOnlyOutsideBuild(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(in, []byte(workloadYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		flow, verdict string
	}{
		{"tcp shop.deploy/client -> shop.deploy/web:8080", `"verdict": "allow"`},
		{"tcp shop.deploy/client -> shop.deploy/web:8081", `"verdict": "deny"`},
		{"tcp 100.64.0.1 -> 100.64.0.2:8080", `"verdict": "allow"`},
	} {
		code, stdout, stderr := runPolc(t, "explain", "--k8s", "--reference", "-o", "json", in, c.flow)
		if !strings.Contains(stdout, c.verdict) {
			t.Errorf("explain %s: exit %d, stdout %s, stderr %s; want %s", c.flow, code, stdout, stderr, c.verdict)
		}
		if !strings.Contains(stderr, "Deployment shop/web has no address: its endpoint shop.deploy/web gets the placeholder 100.64.0.2") {
			t.Errorf("explain: stderr lacks the placeholder warning:\n%s", stderr)
		}
	}
	code, stdout, stderr := runPolc(t, "ir", "--k8s", in)
	if code != 0 || !strings.Contains(stdout, "policy shop.web") || strings.Contains(stdout, "100.64.") || strings.Contains(stdout, "deploy/") {
		t.Errorf("ir: exit %d, placeholder endpoints in output:\n%s", code, stdout)
	}
	if !strings.Contains(stderr, "Deployment shop/web has no address: no endpoint") {
		t.Errorf("ir: stderr lacks the no-endpoint warning:\n%s", stderr)
	}
}

// --k8s takes directories; --namespace and --recursive need --k8s.
func TestK8sInputFlags(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.yaml"), []byte(workloadYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runPolc(t, "explain", "--k8s", "--reference", "-o", "json", dir, "tcp client -> shop.deploy/web:8080")
	if code != exitUsage || !strings.Contains(stderr, `did you mean "shop.deploy/client"?`) {
		t.Errorf("explain with a bare name: exit %d, stderr %s", code, stderr)
	}
	code, stdout, stderr = runPolc(t, "explain", "--k8s", "--reference", "-o", "json", dir, "tcp shop.deploy/client -> shop.deploy/web:8080")
	if code != exitOK || !strings.Contains(stdout, `"verdict": "allow"`) {
		t.Errorf("explain on a directory: exit %d, stdout %s, stderr %s", code, stdout, stderr)
	}
	for _, args := range [][]string{
		{"check", "-n", "shop", filepath.Join(dir, "app.yaml")},
		{"check", "-R", filepath.Join(dir, "app.yaml")},
		{"check", dir},
	} {
		if code, _, stderr := runPolc(t, args...); code != exitUsage {
			t.Errorf("polc %s: exit %d, want %d (stderr %s)", strings.Join(args, " "), code, exitUsage, stderr)
		}
	}
}
