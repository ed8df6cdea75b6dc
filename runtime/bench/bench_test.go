package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler"
	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/compiler/lower"
	"github.com/polc-dev/polc/runtime/netnstest"
)

// compilePolicy compiles policy source into a sealed bundle, as polc
// build does.
func compilePolicy(dir string) func([]byte) (*bundle.Bundle, error) {
	return func(src []byte) (*bundle.Bundle, error) {
		path := filepath.Join(dir, "bench.pol")
		if err := os.WriteFile(path, src, 0o644); err != nil {
			return nil, err
		}
		prog, srcs, diags := compiler.Load([]string{path})
		if diags.HasErrors() || prog == nil {
			return nil, fmt.Errorf("%s", diags.Format(func(f string) []byte { return srcs[f] }))
		}
		b, err := lower.Build(prog, bpf.Object(), lower.Options{Compiler: "bench"})
		if err != nil {
			return nil, err
		}
		if _, err := b.Files(); err != nil {
			return nil, err
		}
		return b, nil
	}
}

func allConfigs(t *testing.T) []Config {
	return []Config{NoFilter(), EmptyTC(), Polc(compilePolicy(t.TempDir())), IPTables(), IPSet(), NftLinear(), NftSet()}
}

func needTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"ip", "iptables-legacy-restore", "ipset", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is missing (apt-get install iptables ipset nftables iproute2)", tool)
			}
			t.Skipf("%s is missing (apt-get install iptables ipset nftables iproute2)", tool)
		}
	}
}

func lastCPU() int { return goruntime.NumCPU() - 1 }

// TestBenchShort runs the whole suite briefly, at N ≤ 1 000, to keep the
// harness working: every configuration must install, drop what no rule
// allows and deliver every allowed packet. Its numbers are not asserted.
func TestBenchShort(t *testing.T) {
	netnstest.RequireRoot(t)
	needTools(t)
	res := Run(t, Options{
		Sizes: []int{10, 1000}, Configs: allConfigs(t), Rounds: 1,
		MinPackets: 500, MaxPackets: 2000, Budget: 5 * time.Millisecond,
		Flows: 64, CPU: lastCPU(), Strict: true,
	})
	t.Log(Table(res))
}

// TestBench is the full comparison behind `make bench`; it runs only with
// POLC_BENCH=1. Knobs: BENCH_N (sizes, comma-separated), BENCH_CONFIGS
// (names), BENCH_RUNS (rounds), BENCH_PACKETS (max packets per burst),
// BENCH_LINEAR_MAX (largest N for the linear rulesets), BENCH_OUT (write
// the Markdown table there).
func TestBench(t *testing.T) {
	if os.Getenv("POLC_BENCH") != "1" {
		t.Skip("set POLC_BENCH=1 (make bench) to run the comparison")
	}
	netnstest.RequireRoot(t)
	needTools(t)
	sizes := envInts(t, "BENCH_N", []int{10, 100, 1000, 10000, 100000})
	configs := allConfigs(t)
	if names := os.Getenv("BENCH_CONFIGS"); names != "" {
		want := map[string]bool{}
		for _, n := range strings.Split(names, ",") {
			want[strings.TrimSpace(n)] = true
		}
		var sel []Config
		for _, c := range configs {
			if want[c.Name()] {
				sel = append(sel, c)
				delete(want, c.Name())
			}
		}
		if len(want) > 0 {
			t.Fatalf("BENCH_CONFIGS: unknown %v", want)
		}
		configs = sel
	}
	linearMax := envInts(t, "BENCH_LINEAR_MAX", []int{100000})[0]
	o := Options{
		Sizes: sizes, Configs: configs,
		Rounds:     envInts(t, "BENCH_RUNS", []int{9})[0],
		MinPackets: 1000, MaxPackets: envInts(t, "BENCH_PACKETS", []int{20000})[0],
		Budget: 100 * time.Millisecond, Flows: 1024, CPU: lastCPU(),
		MaxN: map[string]int{"iptables": linearMax, "nft": linearMax},
	}
	start := time.Now()
	res := Run(t, o)
	host, _ := os.Hostname()
	out := fmt.Sprintf("Measured %s on %s (%d CPUs, kernel %s) in %v; %d rounds, generator pinned to CPU %d.\n%s",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), host, goruntime.NumCPU(), kernelRelease(),
		time.Since(start).Round(time.Second), o.Rounds, o.CPU, Table(res))
	t.Log(out)
	if path := os.Getenv("BENCH_OUT"); path != "" {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func envInts(t *testing.T, name string, def []int) []int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(strings.ReplaceAll(f, "_", "")))
		if err != nil || v <= 0 {
			t.Fatalf("%s=%q: want positive integers, comma-separated", name, s)
		}
		out = append(out, v)
	}
	return out
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// TestBenchSpin keeps one configuration busy so that a profiler can watch
// it: POLC_BENCH_SPIN=CONFIG:N:KIND:DURATION (e.g. polc:1000:new:10s)
// sends bursts of that kind from the generator, pinned to the last CPU,
// until the duration has passed. Profile with, for example,
// `perf record -e cpu-clock -C <last cpu> -g -- sleep 5`.
func TestBenchSpin(t *testing.T) {
	spec := os.Getenv("POLC_BENCH_SPIN")
	if spec == "" {
		t.Skip("set POLC_BENCH_SPIN=CONFIG:N:KIND:DURATION")
	}
	netnstest.RequireRoot(t)
	f := strings.Split(spec, ":")
	if len(f) != 4 {
		t.Fatalf("POLC_BENCH_SPIN=%q: want CONFIG:N:KIND:DURATION", spec)
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatal(err)
	}
	d, err := time.ParseDuration(f[3])
	if err != nil {
		t.Fatal(err)
	}
	var cfg Config
	for _, c := range allConfigs(t) {
		if c.Name() == f[0] {
			cfg = c
		}
	}
	if cfg == nil {
		t.Fatalf("no configuration %q", f[0])
	}
	r := NewRig(t, lastCPU())
	reset, err := cfg.Install(t, r, Ruleset{N: n})
	if err != nil {
		t.Fatal(err)
	}
	in := &installed{cfg: cfg, rig: r, reset: reset, flows: EstablishedFlows(1024)}
	in.est = BuildFrames(r.GenMAC, r.SinkMAC, in.flows, len(in.flows))
	var costs []float64
	for seq, end := 0, time.Now().Add(d); time.Now().Before(end); seq++ {
		c, err := burst(in, f[2], 20000, seq)
		if err != nil {
			t.Fatal(err)
		}
		costs = append(costs, c.NsPerPacket())
	}
	t.Logf("%s N=%d %s: %s ns/packet", f[0], n, f[2], fmtSamples(costs))
}
