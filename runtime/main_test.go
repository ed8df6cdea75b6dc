package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/polc-dev/polc/runtime/netnstest"
)

// TestMain removes what killed test runs left behind: their namespaces and
// their pin directories (polc-test-PID-*, see testHost).
func TestMain(m *testing.M) {
	if os.Geteuid() == 0 && os.Getenv(helperEnv) == "" {
		if removed, err := netnstest.Sweep(); err != nil {
			fmt.Fprintln(os.Stderr, "sweep namespaces:", err)
		} else if len(removed) > 0 {
			fmt.Fprintln(os.Stderr, "removed leftover namespaces:", removed)
		}
		sweepPins()
	}
	os.Exit(m.Run())
}

func sweepPins() {
	dirs, _ := filepath.Glob(filepath.Join(BPFFSMount, "polc-test-*"))
	for _, d := range dirs {
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), "polc-test-"), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || syscall.Kill(pid, 0) == nil {
			continue
		}
		fmt.Fprintln(os.Stderr, "removing leftover pins", d)
		_ = os.RemoveAll(d)
	}
}
