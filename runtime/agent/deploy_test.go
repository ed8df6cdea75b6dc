package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// deployObjects reads every manifest in deploy/ into the Kubernetes API
// types, refusing fields the types do not have (a misspelled key would
// otherwise vanish), keyed KIND/NAME.
func deployObjects(t *testing.T) map[string]any {
	t.Helper()
	paths, err := filepath.Glob("../../deploy/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no manifests in deploy/: %v", err)
	}
	objs := map[string]any{}
	for _, p := range paths {
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(src))
		for {
			var doc map[string]any
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			js, err := json.Marshal(doc)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			var obj any
			switch kind := doc["kind"]; kind {
			case "Namespace":
				obj = &corev1.Namespace{}
			case "ServiceAccount":
				obj = &corev1.ServiceAccount{}
			case "ClusterRole":
				obj = &rbacv1.ClusterRole{}
			case "ClusterRoleBinding":
				obj = &rbacv1.ClusterRoleBinding{}
			case "DaemonSet":
				obj = &appsv1.DaemonSet{}
			default:
				t.Fatalf("%s: unexpected kind %v", p, kind)
			}
			jd := json.NewDecoder(bytes.NewReader(js))
			jd.DisallowUnknownFields()
			if err := jd.Decode(obj); err != nil {
				t.Fatalf("%s: %v %v: %v", p, doc["kind"], doc["metadata"], err)
			}
			name, _ := doc["metadata"].(map[string]any)["name"].(string)
			objs[doc["kind"].(string)+"/"+name] = obj
		}
	}
	return objs
}

// TestDeployRBAC checks that the ClusterRole grants get, list and watch
// on every resource the agent watches, that the binding gives it to the
// DaemonSet's service account, and nothing that writes.
func TestDeployRBAC(t *testing.T) {
	objs := deployObjects(t)
	role, _ := objs["ClusterRole/polc-agent"].(*rbacv1.ClusterRole)
	binding, _ := objs["ClusterRoleBinding/polc-agent"].(*rbacv1.ClusterRoleBinding)
	ds, _ := objs["DaemonSet/polc-agent"].(*appsv1.DaemonSet)
	if role == nil || binding == nil || ds == nil {
		t.Fatalf("deploy/ lacks the ClusterRole, ClusterRoleBinding or DaemonSet polc-agent: %v", objs)
	}
	for _, gvr := range Watched {
		for _, verb := range []string{"get", "list", "watch"} {
			ok := slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool {
				return slices.Contains(r.APIGroups, gvr.Group) && slices.Contains(r.Resources, gvr.Resource) && slices.Contains(r.Verbs, verb)
			})
			if !ok {
				t.Errorf("ClusterRole polc-agent does not grant %s on %s", verb, gvr.GroupResource())
			}
		}
	}
	for _, r := range role.Rules {
		for _, v := range r.Verbs {
			if v != "get" && v != "list" && v != "watch" {
				t.Errorf("ClusterRole polc-agent grants %s on %v: the agent only reads", v, r.Resources)
			}
		}
	}
	if binding.RoleRef.Kind != "ClusterRole" || binding.RoleRef.Name != role.Name {
		t.Errorf("the binding refers to %s %s", binding.RoleRef.Kind, binding.RoleRef.Name)
	}
	sa := ds.Spec.Template.Spec.ServiceAccountName
	if !slices.ContainsFunc(binding.Subjects, func(s rbacv1.Subject) bool {
		return s.Kind == "ServiceAccount" && s.Name == sa && s.Namespace == ds.Namespace
	}) {
		t.Errorf("the binding's subjects %v do not include the DaemonSet's service account %s/%s", binding.Subjects, ds.Namespace, sa)
	}
	if _, ok := objs["ServiceAccount/"+sa].(*corev1.ServiceAccount); !ok {
		t.Errorf("deploy/ has no ServiceAccount %s", sa)
	}
}

// TestDeployDaemonSet checks what the agent needs from its pod.
func TestDeployDaemonSet(t *testing.T) {
	ds, _ := deployObjects(t)["DaemonSet/polc-agent"].(*appsv1.DaemonSet)
	if ds == nil {
		t.Fatal("deploy/ has no DaemonSet polc-agent")
	}
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork {
		t.Error("not hostNetwork: the pods' veths are in the host's network namespace")
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("the agent's container is not privileged")
	}
	if !strings.Contains(c.Image, "@sha256:") {
		t.Errorf("image %q is not pinned by digest", c.Image)
	}
	if len(c.Args) == 0 || c.Args[0] != "agent" {
		t.Errorf("args %v do not run polc agent", c.Args)
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
	}) {
		t.Error("NODE_NAME does not come from the downward API's spec.nodeName")
	}
	port := 9465 // the default of --health-listen, unless args say otherwise
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--health-listen=:"); ok {
			if err := json.Unmarshal([]byte(v), &port); err != nil {
				t.Fatalf("--health-listen in %v: %v", c.Args, err)
			}
		}
	}
	for what, p := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != what || p.HTTPGet.Port.IntValue() != port {
			t.Errorf("no probe of %s on port %d: %+v", what, port, p)
		}
	}
	mounted := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounted[m.Name] = m.MountPath
	}
	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	for _, want := range []string{"/sys/fs/bpf", "/run/polc.lock"} {
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.MountPath == want && hostPaths[m.Name] == want
		}) {
			t.Errorf("the host's %s is not mounted at %s (mounts %v, host paths %v)", want, want, mounted, hostPaths)
		}
	}
}
