package diff

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// clusterSource writes a policy of nRules rules over nEndpoints endpoints,
// shaped like a microservice cluster (apps of ~10 endpoints, a policy of
// 10 rules per app, peers mostly app selectors, some CIDRs and world);
// edit changes one port of one rule.
func clusterSource(nRules, nEndpoints int, edit bool) string {
	var sb strings.Builder
	apps := max(1, nEndpoints/10)
	for i := range nEndpoints {
		n := i + 256
		fmt.Fprintf(&sb, "endpoint ep%05d labels(app=a%d, env=e%d) addr 10.%d.%d.%d\n", i, i%apps, i%3, n>>16&255, n>>8&255, n&255)
	}
	ports := []int{22, 53, 80, 443, 3306, 5432, 6379, 8080, 8443, 9090}
	for p := 0; p*10 < nRules; p++ {
		fmt.Fprintf(&sb, "policy pol%05d {\n  select app=a%d\n", p, p%apps)
		for r := range min(10, nRules-p*10) {
			port := ports[(p*7+r)%len(ports)]
			if edit && p == nRules/20 && r == 3 {
				port = 9999
			}
			switch r % 5 {
			case 0, 1, 2:
				fmt.Fprintf(&sb, "  ingress allow from app=a%d on tcp/%d\n", (p*13+r)%apps, port)
			case 3:
				fmt.Fprintf(&sb, "  egress allow to 172.%d.%d.0/24 on tcp/%d\n", 16+(p+r)%16, (p*3+r)%256, port)
			default:
				fmt.Fprintf(&sb, "  egress allow to world on udp/%d\n", port)
			}
		}
		sb.WriteString("}\n")
	}
	return sb.String()
}

// BenchmarkCompare: two 10 000-rule × 1 000-endpoint programs that differ
// in one rule (docs/performance.md, "polc diff"). The programs are
// compiled once, outside the timing.
func BenchmarkCompare(b *testing.B) {
	t0 := time.Now()
	old := compile(b, clusterSource(10000, 1000, false))
	new := compile(b, clusterSource(10000, 1000, true))
	b.ReportMetric(float64(time.Since(t0).Milliseconds())/2, "compile-ms/program")
	var changes int
	for b.Loop() {
		changes = len(Compare(old, new).Changes)
	}
	if changes == 0 {
		b.Fatal("no change found")
	}
}
