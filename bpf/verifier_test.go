package bpf

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"
)

// verifierBudget is how many instructions the verifier may walk for one
// program before this test calls it a regression (the kernel's limit is
// 1 000 000; today's programs need a few tens of thousands at most).
const verifierBudget = 200_000

// TestVerifierStats loads every program with verifier statistics on and
// keeps the verification effort in check (it is paid at every load).
func TestVerifierStats(t *testing.T) {
	requireBPF(t)
	spec, err := Spec()
	if err != nil {
		t.Fatal(err)
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer coll.Close()
	re := regexp.MustCompile(`processed (\d+) insns`)
	for _, name := range []string{ProgEndpointEgress, ProgEndpointIngress, ProgPolicy4, ProgPolicy6, ProgEpilogue, ProgPrefilter} {
		p := coll.Programs[name]
		if p == nil {
			t.Errorf("program %s missing", name)
			continue
		}
		m := re.FindStringSubmatch(p.VerifierLog)
		if m == nil {
			t.Errorf("%s: no statistics in verifier log %q", name, p.VerifierLog)
			continue
		}
		n, _ := strconv.Atoi(m[1])
		t.Logf("%s: verifier processed %d instructions", name, n)
		if n > verifierBudget {
			t.Errorf("%s: verifier processed %d instructions, budget %d", name, n, verifierBudget)
		}
	}
}
