package compiler_test

import (
	"fmt"

	"github.com/polc-dev/polc/compiler"
)

// Load compiles files and their imports; every rule gets an id, a position
// and its canonical text, which is how verdicts are explained.
func ExampleLoad() {
	prog, _, diags := compiler.Load([]string{"../testdata/quickstart.pol"})
	if diags.HasErrors() {
		fmt.Print(diags)
		return
	}
	for _, r := range prog.Rules {
		fmt.Printf("%d %s: %s\n", r.ID, r.Policy, r.Text)
	}
	// Output:
	// 16 api-in: ingress allow from app=web on tcp/8080
	// 17 api-in: ingress allow from partners on tcp/8080-8090
	// 18 api-in: ingress deny from 192.0.2.66
	// 19 api-in: egress allow to app=db on tcp/5432
	// 20 api-in: egress allow to world on udp/53
	// 21 db-in: ingress allow from {app=api, tier=backend} on tcp/5432
}
