package compiler

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polc-dev/polc/compiler/lower"
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

// generateSource writes a policy file in the language, shaped like
// generateProgram in compiler/lower/gen_test.go (a microservice cluster):
// nEndpoints endpoints in apps of ~10 over three environments (every fourth
// with an IPv6 address too), one policy per (app, env) slice with ~10
// rules: half single-port allows from an (app, env) selector, 5 % a
// 100-port range from an app, 10 % egress to an external /24, 5 % denies
// from a /24 with an except, 5 % egress to world on udp/53, 5 % ICMP echo to
// any, 1 % a /28 over endpoint addresses, 4 % denies from an app, the rest
// egress to an app; a prefilter and one test per 1 000 rules.
// Deterministic for a seed.
func generateSource(nRules, nEndpoints int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	apps := max(1, nEndpoints/10)
	envs := []string{"dev", "prod", "stage"}
	var b bytes.Buffer
	b.WriteString("# generated: ")
	fmt.Fprintf(&b, "%d rules over %d endpoints\n\n", nRules, nEndpoints)
	for i := range nEndpoints {
		n := i + 256
		fmt.Fprintf(&b, "endpoint ep%05d labels(app=a%d, env=%s) addr 10.%d.%d.%d", i, i%apps, envs[(i/apps)%3], n>>16&255, n>>8&255, n&255)
		if i%4 == 0 {
			fmt.Fprintf(&b, ", fd00::%x", n)
		}
		b.WriteString("\n")
	}
	ports := []int{22, 53, 80, 443, 3306, 5432, 6379, 8080, 8443, 9090, 9200, 11211, 15000, 27017}
	app := func() string { return fmt.Sprintf("a%d", r.IntN(apps)) }
	for p := 0; p*10 < nRules; p++ {
		fmt.Fprintf(&b, "\n# slice %d\npolicy pol%05d {\n  select {app=a%d, env=%s}\n", p, p, p%apps, envs[(p/apps)%3])
		for range min(10, nRules-p*10) {
			port := ports[r.IntN(len(ports))]
			switch x := r.IntN(100); {
			case x < 50:
				fmt.Fprintf(&b, "  ingress allow from {app=%s, env=%s} on tcp/%d\n", app(), envs[r.IntN(3)], port)
			case x < 55:
				fmt.Fprintf(&b, "  ingress allow from app=%s on tcp/8000-8099\n", app())
			case x < 65:
				m := r.IntN(4096)
				fmt.Fprintf(&b, "  egress allow to 172.%d.%d.0/24 on tcp/443\n", 16+m/256, m%256)
			case x < 70:
				m := r.IntN(256)
				fmt.Fprintf(&b, "  ingress deny from 198.18.%d.0/24 except 198.18.%d.128/26\n", m, m)
			case x < 75:
				b.WriteString("  egress allow to world on udp/53\n")
			case x < 80:
				b.WriteString("  egress allow to any on icmp type 8\n")
			case x < 81:
				m := r.IntN(max(1, nEndpoints/16))
				n := m*16 + 256
				fmt.Fprintf(&b, "  ingress allow from 10.%d.%d.%d/28 on tcp/22\n", n>>16&255, n>>8&255, n&255)
			case x < 85:
				fmt.Fprintf(&b, "  ingress deny from app=%s on tcp/%d\n", app(), port)
			default:
				fmt.Fprintf(&b, "  egress allow to app=%s on tcp/%d\n", app(), port)
			}
		}
		b.WriteString("}\n")
	}
	b.WriteString("\nprefilter drop from 203.0.113.0/24\n\n")
	for t := 0; t*1000 < nRules; t++ {
		src, dst := r.IntN(nEndpoints), r.IntN(nEndpoints)
		fmt.Fprintf(&b, "test \"t%d\" { tcp ep%05d -> ep%05d:80 flags syn expect deny }\n", t, src, dst)
	}
	return b.Bytes()
}

// BenchmarkBuildFromSource is `polc build` end to end without the file
// writes: read and parse a generated source file (generateSource), run the
// compiler passes, lower the IR and serialize the bundle (Bundle.Files),
// without the BPF object. Besides ns/op it reports the CPU time of the
// process per build (user + system, GC included), each phase's wall time,
// and the peak resident memory during the build (VmHWM, reset through
// /proc/self/clear_refs after the source is written, so it includes the
// test binary). docs/performance.md has the table; regenerate it with
//
//	go test -run '^$' -bench BuildFromSource -benchtime 1x -count 3 ./compiler/
func BenchmarkBuildFromSource(b *testing.B) {
	for _, size := range []struct{ rules, eps int }{
		{1000, 100}, {10000, 1000}, {20000, 2000}, {50000, 5000}, {100000, 10000},
	} {
		b.Run(fmt.Sprintf("rules=%d/endpoints=%d", size.rules, size.eps), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "gen.pol")
			if err := os.WriteFile(path, generateSource(size.rules, size.eps, 1), 0o644); err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			resetPeakRSS()
			var parse, comp, low time.Duration
			var entries int
			cpu0 := cpuTime()
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				files, srcs, ds := load([]string{path}, LoadOptions{})
				if ds.HasErrors() {
					b.Fatal(ds)
				}
				t1 := time.Now()
				prog, ds := Compile(files, srcs)
				if ds.HasErrors() {
					b.Fatal(ds)
				}
				t2 := time.Now()
				bd, err := lower.Build(prog, nil, lower.Options{})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := bd.Files(); err != nil {
					b.Fatal(err)
				}
				t3 := time.Now()
				parse, comp, low = parse+t1.Sub(t0), comp+t2.Sub(t1), low+t3.Sub(t2)
				entries = 0
				for _, m := range bd.Maps {
					entries += m.Len()
				}
			}
			b.StopTimer()
			n := float64(b.N)
			b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/n, "cpu-ms/op")
			b.ReportMetric(float64(parse.Milliseconds())/n, "parse-ms/op")
			b.ReportMetric(float64(comp.Milliseconds())/n, "compile-ms/op")
			b.ReportMetric(float64(low.Milliseconds())/n, "lower-ms/op")
			b.ReportMetric(float64(entries), "entries")
			if hwm := peakRSS(); hwm > 0 {
				b.ReportMetric(float64(hwm)/(1<<20), "peak-MiB")
			}
		})
	}
}

// cpuTime is the user and system CPU time of the process so far: on a
// shared machine it says more than the wall clock.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// resetPeakRSS resets VmHWM to the current RSS (Linux ≥ 4.0).
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS returns VmHWM in bytes, or 0 where /proc is not there.
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmHWM:")); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(rest)), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkManyLabels compiles one endpoint with n labels and a policy
// that selects it: the cost must grow linearly with n (it grew with n²,
// 36 s at 100 000 labels, until the selector index kept a set of keys).
func BenchmarkManyLabels(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			var src strings.Builder
			src.WriteString("endpoint a labels(")
			for i := range n {
				if i > 0 {
					src.WriteString(", ")
				}
				fmt.Fprintf(&src, "k%d=v%d", i, i)
			}
			src.WriteString(") addr 10.0.0.1\npolicy p {\n  select k1=v1\n  ingress allow from k5=v5\n}\n")
			f, ds := dsl.Parse("labels.pol", []byte(src.String()))
			if ds.HasErrors() {
				b.Fatal(ds)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, ds := Compile([]*dsl.File{f}, nil); ds.HasErrors() {
					b.Fatal(ds)
				}
			}
		})
	}
}
