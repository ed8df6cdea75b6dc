package lower

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkCompileScale lowers generated programs (generateProgram) of 10
// to 100 000 rules over 10 to 10 000 endpoints and serializes the bundle.
// Besides ns/op it reports the map entries, the identities, and the peak
// resident memory of the process during the compile (VmHWM, reset through
// /proc/self/clear_refs after the program is generated, so it counts the IR
// plus everything Build and the bundle need). docs/performance.md has the
// table; regenerate it with
//
//	go test -run '^$' -bench CompileScale -benchtime 1x ./compiler/lower/
func BenchmarkCompileScale(b *testing.B) {
	for _, rules := range []int{10, 100, 1000, 10000, 100000} {
		for _, eps := range []int{10, 100, 1000, 10000} {
			b.Run(fmt.Sprintf("rules=%d/endpoints=%d", rules, eps), func(b *testing.B) {
				prog := generateProgram(rules, eps, 1)
				runtime.GC()
				resetPeakRSS()
				var entries, ids int
				cpu0 := cpuTime()
				b.ResetTimer()
				for range b.N {
					bd, err := Build(prog, nil, Options{})
					if err != nil {
						b.Fatal(err)
					}
					if _, err := bd.Files(); err != nil {
						b.Fatal(err)
					}
					entries = 0
					for _, m := range bd.Maps {
						entries += m.Len()
					}
					ids = len(bd.Identities)
				}
				b.StopTimer()
				b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
				b.ReportMetric(float64(entries), "entries")
				b.ReportMetric(float64(ids), "identities")
				if hwm := peakRSS(); hwm > 0 {
					b.ReportMetric(float64(hwm)/(1<<20), "peak-MiB")
				}
			})
		}
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
