package main

import (
	"strings"
	"testing"
)

// agent refuses to start, with exit 2 and a reason, without a node, with
// an unknown --cilium, or without a cluster to talk to.
func TestAgentUsage(t *testing.T) {
	t.Setenv("NODE_NAME", "")
	t.Setenv("KUBECONFIG", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"agent"}, "agent needs --node NAME"},
		{[]string{"agent", "--node", "n1", "--cilium", "maybe"}, `unknown --cilium "maybe"`},
		{[]string{"agent", "--node", "n1", "--kubeconfig", "/nonexistent/kubeconfig"}, "kubernetes client:"},
		{[]string{"agent", "--node", "n1", "extra"}, "unknown command"},
	} {
		code, _, stderr := runPolc(t, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("polc %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
}
