// Command polc-difftest runs the differential tester (package difftest)
// for longer than `make test` does: `make difftest N=100000` runs it with
// N packets, 100 per generated policy, on a fresh seed (printed, so a run
// can be repeated with -seed). It prints the counts, every mismatch with
// its policy and packet sequence, and exits 1 if there was any.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/polc-dev/polc/runtime/harness/difftest"
)

func main() {
	var (
		packets   = flag.Int("n", 20000, "packets to check in all")
		perPolicy = flag.Int("per-policy", 100, "packets per generated policy")
		seed      = flag.Uint64("seed", 0, "seed (0: from the clock)")
		first     = flag.Int("first", 0, "number of the first policy (rerun one policy of a seed)")
		max       = flag.Int("max-mismatches", 20, "stop after this many mismatches")
		verbose   = flag.Bool("v", false, "also print documented differences as they happen")
		tiers     = flag.Bool("tiers", true, "generate tiered policies (admin, baseline, pass) too")
	)
	flag.Parse()
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	policies := max1(*packets / max1(*perPolicy))
	fmt.Printf("polc-difftest: seed %d, %d policies x %d packets\n", *seed, policies, *perPolicy)
	opts := difftest.Options{Seed: *seed, Policies: policies, Packets: *perPolicy, First: *first,
		Log: os.Stdout, MaxMismatches: *max, NoTiers: !*tiers}
	if *verbose {
		os.Setenv("POLC_DIFFTEST_SHOW_KNOWN", "1")
	}
	st, err := difftest.Run(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "polc-difftest:", err)
		os.Exit(2)
	}
	fmt.Printf("seed %d: %d policies, %d sequences, %d packets checked in %v\n",
		*seed, st.Policies, st.Sequences, st.Packets, st.Duration.Round(time.Millisecond))
	fmt.Printf("documented differences (per-hook conntrack, docs/testing.md): %v\n", st.Known)
	fmt.Printf("rejected policies (generator bugs): %d\n", st.Rejected)
	fmt.Printf("mismatches: %d\n", len(st.Mismatches))
	if len(st.Mismatches) > 0 || st.Rejected > 0 {
		fmt.Printf("rerun with: make difftest N=%d SEED=%d\n", *packets, *seed)
		os.Exit(1)
	}
}

func max1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}
