package harness

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRegressions runs every policy of testdata/harness/regress in the
// kernel. Each is a mismatch the differential tester found (or a
// documented difference), kept as a policy test. A file whose first
// comment line is "# xfail: REASON" records a difference that is not fixed
// yet: the test checks that the kernel still disagrees with the reference
// there, and fails once it agrees, so that the marker is removed with the
// fix.
func TestRegressions(t *testing.T) {
	paths, err := filepath.Glob("../../testdata/harness/regress/*.pol")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no regression policies: %v", err)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			xfail := xfailReason(t, path)
			prog, ev, k := open(t, path)
			res, err := RunTests(prog, ev, RunOptions{Kernel: k})
			if err != nil {
				t.Fatal(err)
			}
			disagree := false
			for _, tr := range res {
				for _, s := range tr.Steps {
					if s.Diff() != "" {
						disagree = true
					}
					if xfail == "" && !s.OK() {
						t.Errorf("%s, step %d: %s", tr.Test.Name, s.Index+1, strings.Join(s.Problems, "; "))
					}
				}
			}
			if xfail != "" {
				if !disagree {
					t.Errorf("marked xfail (%s) but the kernel and the reference now agree: remove the xfail line", xfail)
				} else {
					t.Logf("still differs, as expected: %s", xfail)
				}
			}
		})
	}
}

func xfailReason(t *testing.T, path string) string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if sc.Scan() {
		if r, ok := strings.CutPrefix(sc.Text(), "# xfail:"); ok {
			return strings.TrimSpace(r)
		}
	}
	return ""
}
