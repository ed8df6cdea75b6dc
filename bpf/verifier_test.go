package bpf

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// verifierBudget is how many instructions the verifier may walk for one
// program before this test calls it a regression (the kernel's limit is
// 1 000 000; today's programs need a few tens of thousands at most).
const verifierBudget = 200_000

// verifierTotalBudget bounds the instructions of every program together:
// a bundle's reload pays them all. About 45 000 since the L4 parser is
// verified once and the policy probes after the first are a global
// function (they were 140 000: docs/performance.md).
const verifierTotalBudget = 50_000

// TestVerifierStats loads every program with verifier statistics on and
// keeps the verification effort in check (it is paid at every load). It
// logs each program's instructions and verification time and their sums
// (the times depend on the machine's load; the instructions do not).
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
	insns := regexp.MustCompile(`processed (\d+) insns`)
	usec := regexp.MustCompile(`verification time (\d+) usec`)
	total, totalTime := 0, time.Duration(0)
	for _, name := range []string{ProgEndpointEgress, ProgEndpointIngress, ProgPolicy4, ProgPolicy6, ProgEpilogue, ProgPrefilter} {
		p := coll.Programs[name]
		if p == nil {
			t.Errorf("program %s missing", name)
			continue
		}
		m := insns.FindStringSubmatch(p.VerifierLog)
		u := usec.FindStringSubmatch(p.VerifierLog)
		if m == nil || u == nil {
			t.Errorf("%s: no statistics in verifier log %q", name, p.VerifierLog)
			continue
		}
		n, _ := strconv.Atoi(m[1])
		us, _ := strconv.Atoi(u[1])
		total += n
		totalTime += time.Duration(us) * time.Microsecond
		t.Logf("%s: verifier processed %d instructions in %v", name, n, time.Duration(us)*time.Microsecond)
		if n > verifierBudget {
			t.Errorf("%s: verifier processed %d instructions, budget %d", name, n, verifierBudget)
		}
	}
	t.Logf("all programs: %d instructions in %v", total, totalTime)
	if total > verifierTotalBudget {
		t.Errorf("all programs: verifier processed %d instructions, budget %d", total, verifierTotalBudget)
	}
}
