package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/polc-dev/polc/golden"
)

func TestExplainGolden(t *testing.T) {
	chdirRoot(t)
	q := "testdata/quickstart.pol"
	const svcCluster, svcPolicy = "testdata/k8s/services/cluster.yaml", "testdata/k8s/services/policy.yaml"
	const tiers = "testdata/tiers/tiers.pol"
	cases := []struct {
		golden string
		args   []string
		kernel bool
	}{
		{"allow-by-rule.txt", []string{"explain", q, "tcp 10.0.1.10:40000 -> 10.0.2.10:8080"}, true},
		{"default-deny.txt", []string{"explain", q, "tcp web -> db:5432"}, true},
		{"deny-rule.txt", []string{"explain", q, "tcp 192.0.2.66 -> api:8080"}, true},
		{"cidr-except.txt", []string{"explain", q, "tcp 198.51.100.200 -> api:8085"}, true},
		{"egress-world.txt", []string{"explain", q, "udp api -> 8.8.8.8:53"}, true},
		{"ipv6.txt", []string{"explain", q, "tcp [fd00::10]:40000 -> [fd00::20]:8080"}, true},
		{"icmp.txt", []string{"explain", q, "icmp 10.0.1.10 -> 10.0.2.10 type 8 code 0"}, true},
		{"prefilter.txt", []string{"explain", q, "icmp 203.0.113.5 -> api"}, true},
		{"no-hook.txt", []string{"explain", q, "sctp 192.0.2.1:5 -> 198.51.100.1:80"}, true},
		{"json.txt", []string{"explain", "-o", "json", q, "tcp web -> api:8080"}, true},
		{"reference.txt", []string{"explain", "--reference", q, "tcp web -> api:9999"}, false},
		{"bad-flow.txt", []string{"explain", "--reference", q, "tcp web -> nobody:80"}, false},
		{"service.txt", []string{"explain", "--k8s", svcCluster, svcPolicy, "udp default.foo -> 10.96.0.10:53"}, true},
		{"service-denied.txt", []string{"explain", "--k8s", svcCluster, svcPolicy, "udp default.bar -> svc/kube-system/kube-dns:dns"}, true},
		{"service-no-backend.txt", []string{"explain", "--k8s", svcCluster, svcPolicy, "tcp default.foo -> svc/default/empty:80"}, false},
		{"service-json.txt", []string{"explain", "--reference", "-o", "json", "--k8s", svcCluster, svcPolicy, "tcp default.foo -> svc/default/kubernetes:443"}, false},
		{"tiers-admin-allow.txt", []string{"explain", tiers, "tcp mon -> api:9100"}, true},
		{"tiers-admin-deny.txt", []string{"explain", tiers, "tcp web -> 192.0.2.1:443"}, true},
		{"tiers-pass-namespace.txt", []string{"explain", tiers, "udp web -> dns:53"}, true},
		{"tiers-pass-baseline.txt", []string{"explain", tiers, "tcp mon -> db:5432"}, true},
		{"tiers-baseline-pass.txt", []string{"explain", tiers, "tcp mon -> lab:8443"}, true},
		{"tiers-json.txt", []string{"explain", "--reference", "-o", "json", tiers, "tcp mon -> db:5432"}, false},
		{"service-unknown.txt", []string{"explain", "--reference", "--k8s", svcCluster, svcPolicy, "udp default.foo -> svc/kube-system/kubedns:53"}, false},
	}
	for _, c := range cases {
		t.Run(c.golden, func(t *testing.T) {
			if c.kernel {
				requireRoot(t)
			}
			got, _ := transcript(t, c.args...)
			golden.Check(t, "explain/"+c.golden, []byte(got))
		})
	}
}

func TestExplainJSONVerdict(t *testing.T) {
	chdirRoot(t)
	for flow, want := range map[string]string{
		"tcp web -> api:8080":   "allow",
		"tcp web -> db:5432":    "deny",
		"udp api -> 8.8.8.8:53": "allow",
	} {
		code, stdout, stderr := runPolc(t, "explain", "--reference", "-o", "json", "testdata/quickstart.pol", flow)
		if code != exitOK {
			t.Fatalf("%s: exit %d, stderr %q", flow, code, stderr)
		}
		var got map[string]any
		if err := json.Unmarshal([]byte(stdout), &got); err != nil {
			t.Fatalf("%s: not one JSON object: %v\n%s", flow, err, stdout)
		}
		if got["verdict"] != want {
			t.Errorf("%s: verdict %v, want %q", flow, got["verdict"], want)
		}
		if !strings.Contains(stdout, "->") {
			t.Errorf("%s: the packet should read as written (no HTML escapes):\n%s", flow, stdout)
		}
	}
}

// TestExplainTiersJSON: a point's JSON carries the pass rules crossed and
// the level that decided; the rules carry their tier and priority.
func TestExplainTiersJSON(t *testing.T) {
	chdirRoot(t)
	code, stdout, stderr := runPolc(t, "explain", "--reference", "-o", "json", "testdata/tiers/tiers.pol", "udp web -> dns:53")
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var got struct {
		Verdict string
		Points  []struct {
			Subject string
			Level   string
			Rule    struct{ Policy, Tier string }
			Passes  []struct {
				ID       uint32
				Tier     string
				Priority *int
			}
		}
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	if got.Verdict != "allow" || len(got.Points) != 2 {
		t.Fatalf("got %+v", got)
	}
	web, dns := got.Points[0], got.Points[1]
	if web.Subject != "web" || web.Level != "namespace" || web.Rule.Policy != "web-out" || web.Rule.Tier != "" ||
		len(web.Passes) != 1 || web.Passes[0].ID != 20 || web.Passes[0].Tier != "admin" || web.Passes[0].Priority == nil || *web.Passes[0].Priority != 10 {
		t.Errorf("web egress: got %+v", web)
	}
	if dns.Subject != "dns" || dns.Level != "" || len(dns.Passes) != 0 {
		t.Errorf("dns ingress (no tier decides or passes): got %+v", dns)
	}
}

// TestAuditFlagRefusesTiers: --audit cannot put a tiered policy in audit
// mode (not supported), so it refuses the program rather than leave the
// tiers enforcing.
func TestAuditFlagRefusesTiers(t *testing.T) {
	chdirRoot(t)
	code, _, stderr := runPolc(t, "check", "--audit", "testdata/tiers/tiers.pol")
	if code != exitFailure || !strings.Contains(stderr, `testdata/tiers/tiers.pol:20:1: --audit: policy "guardrails" is in tier admin`) ||
		!strings.Contains(stderr, `policy "defaults" is in tier baseline`) {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
	if code, _, stderr := runPolc(t, "check", "--audit", "testdata/quickstart.pol"); code != exitOK {
		t.Errorf("untiered: exit %d, stderr:\n%s", code, stderr)
	}
}
