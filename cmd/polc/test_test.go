package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/polc-dev/polc/golden"
)

// requireRoot skips a test that loads BPF programs, unless CI=true, where
// it fails.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test loads BPF programs and needs root; CI=true forbids skipping it")
	}
	t.Skip("this test loads BPF programs and needs root (set CI=true to make this a failure)")
}

// transcript is what golden/test and golden/explain hold: the command,
// its stdout, its stderr when not empty, and its exit status.
func transcript(t *testing.T, args ...string) (string, int) {
	t.Helper()
	code, stdout, stderr := runPolc(t, args...)
	var b strings.Builder
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = a
		if strings.ContainsAny(a, " ^|()>") {
			quoted[i] = "'" + a + "'"
		}
	}
	b.WriteString("$ polc " + strings.Join(quoted, " ") + "\n")
	b.WriteString(stdout)
	if stderr != "" {
		b.WriteString("--- stderr\n" + stderr)
	}
	b.WriteString("--- exit " + string(rune('0'+code)) + "\n")
	return b.String(), code
}

func TestTestGolden(t *testing.T) {
	chdirRoot(t)
	cases := []struct {
		golden string
		args   []string
		kernel bool
		code   int
	}{
		{"quickstart.txt", []string{"test", "testdata/quickstart.pol"}, true, exitOK},
		{"stateful.txt", []string{"test", "testdata/harness/stateful.pol"}, true, exitOK},
		{"failing.txt", []string{"test", "testdata/harness/failing.pol"}, true, exitFailure},
		{"run.txt", []string{"test", "--run", "^(tls|dns)", "testdata/harness/stateful.pol"}, true, exitOK},
		{"quickstart-json.txt", []string{"test", "-o", "json", "--run", "reply", "testdata/quickstart.pol"}, true, exitOK},
		{"failing-reference.txt", []string{"test", "--reference", "testdata/harness/failing.pol"}, false, exitFailure},
		{"tests-reference.txt", []string{"test", "--reference", "testdata/lang/tests.pol"}, false, exitOK},
		{"tiers.txt", []string{"test", "testdata/tiers/tiers.pol"}, true, exitOK},
		{"no-match.txt", []string{"test", "--reference", "--run", "nothing", "testdata/quickstart.pol"}, false, exitOK},
		{"k8s-cases.txt", []string{"test", "--cases", "testdata/k8s/egress-dns/reach.txt", "--run", `^udp/53 x\.a `}, true, exitOK},
		{"k8s-services.txt", []string{"test", "--cases", "testdata/k8s/services/reach.txt", "--run", `^udp/53 default\.(foo|bar) -> svc/`}, true, exitOK},
		{"k8s-services-bad.txt", []string{"test", "--reference", "--cases", "testdata/k8s/services/bad/reach.txt"}, false, exitFailure},
	}
	for _, c := range cases {
		t.Run(c.golden, func(t *testing.T) {
			if c.kernel {
				requireRoot(t)
			}
			got, code := transcript(t, c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d:\n%s", code, c.code, got)
			}
			golden.Check(t, "test/"+c.golden, []byte(got))
		})
	}
}

func TestTestJSON(t *testing.T) {
	chdirRoot(t)
	code, stdout, stderr := runPolc(t, "test", "--reference", "-o", "json", "testdata/harness/failing.pol")
	if code != exitFailure {
		t.Fatalf("exit %d, want 1; stderr %q", code, stderr)
	}
	var rep testReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	if rep.Kernel || rep.Passed != 1 || rep.Failed != 3 || len(rep.Tests) != 4 {
		t.Errorf("got kernel %v, %d passed, %d failed, %d tests; want false, 1, 3, 4", rep.Kernel, rep.Passed, rep.Failed, len(rep.Tests))
	}
	if s := rep.Tests[2].Steps[0]; s.Pass || s.Reference.Rule.Line != 10 || len(s.Problems) == 0 {
		t.Errorf("denied network: %+v", s)
	}
}

func TestTestUsage(t *testing.T) {
	chdirRoot(t)
	for _, args := range [][]string{
		{"test"},
		{"test", "--run", "(", "testdata/quickstart.pol"},
		{"test", "-o", "yaml", "testdata/quickstart.pol"},
	} {
		if code, _, stderr := runPolc(t, args...); code != exitUsage {
			t.Errorf("polc %s: exit %d, want 2 (stderr %q)", strings.Join(args, " "), code, stderr)
		}
	}
	bad := writePolicy(t, "bad.pol", withError)
	if code, _, _ := runPolc(t, "test", "--reference", bad); code != exitFailure {
		t.Errorf("test of a policy with errors: exit %d, want 1", code)
	}
}
