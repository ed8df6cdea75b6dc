package difftest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/polc-dev/polc/dsl"
)

// TestDifferential is the bounded run `make test` does: at least 20 000
// packets over at least 200 policies. POLC_DIFFTEST_POLICIES,
// POLC_DIFFTEST_PACKETS (per policy) and POLC_DIFFTEST_SEED change it;
// POLC_DIFFTEST_TIERS=0 leaves tiered policies out.
func TestDifferential(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the differential test needs root, and CI=true forbids skipping it")
		}
		t.Skip("the differential test needs root (set CI=true to make this a failure)")
	}
	opts := Options{Seed: 1, Policies: 200, Packets: 100, Log: testLog{t}}
	if testing.Short() {
		opts.Policies, opts.Packets = 20, 50
	}
	env := func(name string, v *int) {
		if s := os.Getenv(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			*v = n
		}
	}
	if os.Getenv("POLC_DIFFTEST_TIERS") == "0" {
		opts.NoTiers = true
	}
	env("POLC_DIFFTEST_POLICIES", &opts.Policies)
	env("POLC_DIFFTEST_PACKETS", &opts.Packets)
	if s := os.Getenv("POLC_DIFFTEST_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("POLC_DIFFTEST_SEED: %v", err)
		}
		opts.Seed = n
	}
	st, err := Run(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seed %d: %d policies, %d sequences, %d packets, %d rejected, known differences %v, %d mismatches, %v",
		opts.Seed, st.Policies, st.Sequences, st.Packets, st.Rejected, st.Known, len(st.Mismatches), st.Duration)
	if st.Rejected > 0 {
		t.Errorf("the compiler rejected %d generated policies (seed %d)", st.Rejected, opts.Seed)
	}
	for _, m := range st.Mismatches {
		t.Errorf("kernel and reference differ (rerun: POLC_DIFFTEST_SEED=%d, policy %d):\n%s", m.Seed, m.Policy, m)
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(string(b))
	return len(b), nil
}

// TestGeneratedPoliciesCompile: the generator writes only what the
// compiler accepts, tiers included, and it does write tiered policies
// with pass rules and ties of priority (no kernel needed).
func TestGeneratedPoliciesCompile(t *testing.T) {
	tiered, passes := 0, 0
	for i := range 400 {
		r := rand.New(rand.NewPCG(3, uint64(i)))
		w := generate(r, nil, true)
		prog, err := Compile(fmt.Sprintf("gen%d.pol", i), w.src)
		if err != nil {
			t.Fatalf("policy %d: %v\n%s", i, err, w.src)
		}
		for _, p := range prog.Policies {
			if p.Tier != dsl.TierNone {
				tiered++
			}
		}
		for _, r := range prog.Rules {
			if r.Action == dsl.Pass {
				passes++
			}
		}
	}
	if tiered < 100 || passes < 50 {
		t.Errorf("%d tiered policies and %d pass rules in 400 programs: the generator hardly makes tiers", tiered, passes)
	}
	// NoTiers: none at all
	for i := range 100 {
		w := generate(rand.New(rand.NewPCG(3, uint64(i))), nil, false)
		if strings.Contains(w.src, " tier admin ") || strings.Contains(w.src, " tier baseline ") {
			t.Fatalf("policy %d has a tier without tiers:\n%s", i, w.src)
		}
	}
}
