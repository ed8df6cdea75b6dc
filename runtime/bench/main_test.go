package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	polcrt "github.com/polc-dev/polc/runtime"
	"github.com/polc-dev/polc/runtime/netnstest"
)

// TestMain removes what a killed run left behind: its namespaces (which
// takes its netfilter rules and sets with them) and its polc pins.
func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		if _, err := netnstest.Sweep(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: sweep namespaces:", err)
		}
		sweepPins()
	}
	os.Exit(m.Run())
}

// sweepPins removes pin roots polc-bench-PID-* of processes that are gone.
func sweepPins() {
	dirs, _ := filepath.Glob(filepath.Join(polcrt.BPFFSMount, "polc-bench-*"))
	for _, d := range dirs {
		rest := strings.TrimPrefix(filepath.Base(d), "polc-bench-")
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || err == syscall.EPERM {
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			fmt.Fprintln(os.Stderr, "bench: remove stale pins:", err)
		}
	}
}
