package compiler

import (
	"fmt"
	"testing"

	"github.com/polc-dev/polc/dsl"
)

// largeAST is a build of n endpoints in n/10 apps, one policy per app with
// five rules, and a test per policy.
func largeAST(n int) *dsl.File {
	var decls []dsl.Decl
	for i := 0; i < n; i++ {
		decls = append(decls, ep(i+1, fmt.Sprintf("e%d", i), fmt.Sprintf("app=a%d,tier=t%d", i/10, i%3),
			fmt.Sprintf("10.%d.%d.%d", i/65536, i/256%256, i%256), fmt.Sprintf("fd00::%x", i+1)))
	}
	for a := 0; a < n/10; a++ {
		line := n + 10*a
		decls = append(decls, policy(line, fmt.Sprintf("p%d", a), fmt.Sprintf("app=a%d", a),
			rule(line+2, dsl.Ingress, dsl.Allow, peers(selPeer(line+2, 20, fmt.Sprintf("app=a%d", (a+1)%(n/10)))), tcpPort(line+2, 40, 8080)),
			rule(line+3, dsl.Ingress, dsl.Allow, peers(selPeer(line+3, 20, "tier=t1")), l4(line+3, 40, "udp", 1000, 2000, -1, -1)),
			rule(line+4, dsl.Ingress, dsl.Deny, peers(cidrPeer(line+4, 20, "192.0.2.0/24", "192.0.2.0/28"))),
			rule(line+5, dsl.Egress, dsl.Allow, peers(worldPeer(line+5, 20)), l4(line+5, 40, "udp", 53, -1, -1, -1)),
			rule(line+6, dsl.Egress, dsl.Deny, peers(selPeer(line+6, 20, "tier in t0|t2")), l4(line+6, 40, "icmp", -1, -1, 8, -1)),
		))
		decls = append(decls, test(line+8, fmt.Sprintf("t%d", a),
			step(line+8, 10, packet(line+8, "tcp", host(line+8, 20, fmt.Sprintf("e%d", a*10), -1), host(line+8, 30, fmt.Sprintf("e%d", (a*10+10)%n), 8080)), expect(dsl.VerdictAllow))))
	}
	return file(decls...)
}

func BenchmarkCompile(b *testing.B) {
	for _, n := range []int{100, 2000} {
		f := largeAST(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				if _, ds := Compile([]*dsl.File{f}, nil); ds.HasErrors() {
					b.Fatal(ds)
				}
			}
		})
	}
}
