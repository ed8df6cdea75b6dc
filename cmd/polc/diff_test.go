package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polc-dev/polc/golden"
)

// TestDiffGolden: the quickstart under hand-made edits, each diffed
// against the original; edits that change nothing give an empty diff.
func TestDiffGolden(t *testing.T) {
	chdirRoot(t)
	q := "testdata/quickstart.pol"
	d := func(f string) string { return "testdata/diff/" + f }
	k8sApp, k8sPol := "testdata/k8s/recipe-limit-app/app.yaml", "testdata/k8s/recipe-limit-app/policy.yaml"
	cases := []struct {
		golden string
		args   []string
		exit   int
	}{
		{"add-rule.txt", []string{"diff", q, "--", d("add-rule.pol")}, exitFailure},
		{"remove-rule.txt", []string{"diff", q, "--", d("remove-rule.pol")}, exitFailure},
		{"selector.txt", []string{"diff", q, "--", d("selector.pol")}, exitFailure},
		{"except.txt", []string{"diff", q, "--", d("except.pol")}, exitFailure},
		{"port-range.txt", []string{"diff", q, "--", d("port-range.pol")}, exitFailure},
		{"add-deny.txt", []string{"diff", q, "--", d("add-deny.pol")}, exitFailure},
		{"rename.txt", []string{"diff", q, "--", d("rename.pol")}, exitOK},
		{"split.txt", []string{"diff", q, "--", d("split-endpoints.pol"), d("split-policies.pol")}, exitOK},
		{"reorder.txt", []string{"diff", d("split-endpoints.pol"), d("split-policies.pol"), "--", d("split-policies.pol"), d("split-endpoints.pol")}, exitOK},
		{"reverse.txt", []string{"diff", d("add-deny.pol"), "--", q}, exitFailure},
		{"k8s.txt", []string{"diff", "-q", "--k8s", k8sApp, k8sPol, "--", k8sApp, d("k8s-limit-app-edit.yaml")}, exitFailure},
		{"fail-on-opened.txt", []string{"diff", "--fail-on", "opened", q, "--", d("add-deny.pol")}, exitOK},
		{"fail-on-closed.txt", []string{"diff", "--fail-on", "closed", q, "--", d("add-deny.pol")}, exitFailure},
		{"json.txt", []string{"diff", "-o", "json", q, "--", d("except.pol")}, exitFailure},
		{"tier-priority.txt", []string{"diff", "testdata/tiers/tiers.pol", "--", d("tier-priority.pol")}, exitFailure},
		{"tier-priority-json.txt", []string{"diff", "-o", "json", "testdata/tiers/tiers.pol", "--", d("tier-priority.pol")}, exitFailure},
		{"no-dash.txt", []string{"diff", q, d("except.pol")}, exitUsage},
		{"one-side.txt", []string{"diff", q, "--"}, exitUsage},
		{"errors.txt", []string{"diff", q, "--", "testdata/bad/check/bad_cidr.pol"}, exitUsage},
		{"missing.txt", []string{"diff", q, "--", "testdata/diff/nothing.pol"}, exitUsage},
		{"bad-fail-on.txt", []string{"diff", "--fail-on", "maybe", q, "--", q}, exitUsage},
	}
	for _, c := range cases {
		t.Run(c.golden, func(t *testing.T) {
			got, code := transcript(t, c.args...)
			if code != c.exit {
				t.Errorf("exit %d, want %d:\n%s", code, c.exit, got)
			}
			golden.Check(t, "diff/"+c.golden, []byte(got))
		})
	}
}

// TestDiffJSON: -o json is one JSON document with every change.
func TestDiffJSON(t *testing.T) {
	chdirRoot(t)
	code, stdout, stderr := runPolc(t, "diff", "-o", "json", "testdata/quickstart.pol", "--", "testdata/diff/add-rule.pol")
	if code != exitFailure {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got jsonDiff
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatal(err)
	}
	want := jsonChange{Change: "opened", Direction: "ingress", Subjects: []string{"api"}, Remotes: []jsonRemote{{Endpoint: "web"}},
		Protocol: "tcp", Ports: &[2]uint16{8443, 8443}, Text: "tcp/8443",
		Old: diffJSONDecision{Verdict: "deny", Rule: "default-deny"},
		New: diffJSONDecision{Verdict: "allow", Rule: "ingress allow from app=web on tcp/8443", File: "testdata/diff/add-rule.pol", Line: 12, Policy: "api-in"}}
	if got.Opened != 1 || got.Closed != 0 || len(got.Changes) != 1 {
		t.Fatalf("got %+v", got)
	}
	c := got.Changes[0]
	if c.Change != want.Change || c.Direction != want.Direction || strings.Join(c.Subjects, ",") != "api" || len(c.Remotes) != 1 || c.Remotes[0].Endpoint != "web" || c.Remotes[0].CIDR != "" ||
		c.Protocol != want.Protocol || *c.Ports != *want.Ports || c.Old != want.Old || c.New != want.New || c.Text != want.Text {
		t.Errorf("change:\n%+v\nwant\n%+v", c, want)
	}
}

// TestDiffGit: --git REV compares the files with themselves at REV, in a
// repository made for the test; a file new since REV counts as empty.
func TestDiffGit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("git is not installed")
		}
		t.Skip("no git")
	}
	srcRoot, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.ReadFile(filepath.Join(srcRoot, "testdata/quickstart.pol"))
	if err != nil {
		t.Fatal(err)
	}
	edited, err := os.ReadFile(filepath.Join(srcRoot, "testdata/diff/port-range.pol"))
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	if err := os.MkdirAll(filepath.Join(repo, "policy"), 0o755); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(repo, "policy", "main.pol")
	if err := os.WriteFile(pol, root, 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", ".")
	git("commit", "-q", "-m", "one")
	if err := os.WriteFile(pol, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Join(repo, "policy"))
	code, stdout, stderr := runPolc(t, "diff", "--git", "HEAD", "main.pol")
	if code != exitFailure || !strings.Contains(stdout, "} → api  tcp/8091-8099\n") ||
		!strings.Contains(stdout, "was default-deny, now allowed by main.pol:12: ingress allow from partners on tcp/8080-8099") {
		t.Errorf("diff --git HEAD: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if code, stdout, _ := runPolc(t, "diff", "--git", "HEAD", "--fail-on", "closed", "main.pol"); code != exitOK || !strings.Contains(stdout, "opened") {
		t.Errorf("--fail-on closed: exit %d\n%s", code, stdout)
	}
	// the old side's rules are named REV:path
	removed, err := os.ReadFile(filepath.Join(srcRoot, "testdata/diff/remove-rule.pol"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pol, removed, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, _ := runPolc(t, "diff", "--git", "HEAD", "main.pol"); code != exitFailure ||
		!strings.Contains(stdout, "was allowed by HEAD:policy/main.pol:15: egress allow to world on udp/53, now default-deny") {
		t.Errorf("removed rule: exit %d\n%s", code, stdout)
	}
	if err := os.WriteFile(pol, root, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, _ := runPolc(t, "diff", "--git", "HEAD", "main.pol"); code != exitOK || stdout != "no change in what the policy allows\n" {
		t.Errorf("unchanged: exit %d %q", code, stdout)
	}
	// a file added since HEAD: everything in it is new
	extra := filepath.Join(repo, "policy", "cache.pol")
	if err := os.WriteFile(extra, []byte("endpoint cache labels(app=cache) addr 10.0.4.10\npolicy c { select app=cache\n ingress allow from app=api on tcp/6379 }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, _ := runPolc(t, "diff", "--git", "HEAD", "main.pol", "cache.pol"); code != exitFailure || !strings.Contains(stdout, "→ cache") {
		t.Errorf("new file: exit %d\n%s", code, stdout)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"diff", "--git", "no-such-rev", "main.pol"}, "--git no-such-rev"},
		{[]string{"diff", "--git", "HEAD", "main.pol", "--", "main.pol"}, "give no --"},
		{[]string{"diff", "--git", "HEAD", "/etc/hostname"}, "outside the repository"},
	} {
		if code, _, stderr := runPolc(t, c.args...); code != exitUsage || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, %q; want exit 2 saying %q", c.args, code, stderr, c.want)
		}
	}
	t.Chdir(t.TempDir())
	if code, _, stderr := runPolc(t, "diff", "--git", "HEAD", "x.pol"); code != exitUsage || !strings.Contains(stderr, "not inside a git repository") {
		t.Errorf("outside a repository: exit %d, %q", code, stderr)
	}
}
