package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/polc-dev/polc/golden"
)

// chdirRoot runs the test from the repository root, so paths read
// testdata/... as in golden files.
func chdirRoot(t *testing.T) {
	t.Helper()
	t.Chdir(filepath.Dir(golden.Dir()))
}

// writePolicy writes a policy file into a temporary directory and returns
// its path.
func writePolicy(t *testing.T, name, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// skipWithoutParser skips while the policy-language parser is a stub.
func skipWithoutParser(t *testing.T, stderr string) {
	t.Helper()
	if strings.Contains(stderr, "not built yet") {
		t.Skip("the policy language parser is not built yet")
	}
}

const withError = `endpoint api labels(app=api) addr 10.0.2.10
policy p {
  select app=api
  ingress allow from partnrs on tcp/80
}
`

const withWarning = `endpoint api labels(app=api) addr 10.0.2.10
policy p {
  select app=nobody
}
`

func TestCheckExitCodes(t *testing.T) {
	bad := writePolicy(t, "bad.pol", withError)
	code, stdout, stderr := runPolc(t, "check", bad)
	skipWithoutParser(t, stderr)
	if code != exitFailure || stdout != "" {
		t.Errorf("check with an error: exit %d, stdout %q; want exit 1 and no stdout", code, stdout)
	}
	want := bad + `:4:22: unknown cidrset "partnrs"` + "\n" +
		"      ingress allow from partnrs on tcp/80\n" +
		"                         ^\n"
	if stderr != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr, want)
	}

	warn := writePolicy(t, "warn.pol", withWarning)
	code, stdout, stderr = runPolc(t, "check", "-q", warn)
	if code != exitOK || stdout != "" || !strings.Contains(stderr, `:3:10: warning: policy "p" selects no endpoint`) {
		t.Errorf("check with a warning: exit %d, stdout %q, stderr %q; want exit 0 and the warning", code, stdout, stderr)
	}

	chdirRoot(t)
	code, stdout, stderr = runPolc(t, "check", "testdata/quickstart.pol")
	if want := "ok: read 1 file: 3 endpoints, 2 policies, 6 tests\n"; code != exitOK || stdout != want || stderr != "" {
		t.Errorf("check quickstart: exit %d, stdout %q, stderr %q; want the summary %q alone", code, stdout, stderr, want)
	}
	code, stdout, stderr = runPolc(t, "check", "-q", "testdata/quickstart.pol")
	if code != exitOK || stdout != "" || stderr != "" {
		t.Errorf("check -q quickstart: exit %d, stdout %q, stderr %q; want a silent success", code, stdout, stderr)
	}
	code, stdout, _ = runPolc(t, "check", "--k8s", "testdata/k8s/starwars")
	if want := "ok: read 2 files: 5 objects, 3 endpoints, 1 policy\n"; code != exitOK || stdout != want {
		t.Errorf("check --k8s starwars: exit %d, stdout %q; want %q", code, stdout, want)
	}
}

// TestMissingInputFile checks that every command that reads policy files
// treats a file named on the command line that cannot be read alike: exit
// 2 (usage or environment, as the root help says), nothing on stdout (not
// even with -o json), and "polc: FILE: REASON" on stderr.
func TestMissingInputFile(t *testing.T) {
	tmp := t.TempDir()
	missing := filepath.Join(tmp, "missing.pol")
	missingYAML := filepath.Join(tmp, "missing.yaml")
	const flow = "tcp 10.0.1.10 -> 10.0.2.10:8080"
	cases := []struct {
		name string
		args []string
		file string // the file stderr must name; missing if empty
	}{
		{"check", []string{"check", missing}, ""},
		{"check json", []string{"check", "-o", "json", missing}, ""},
		{"check k8s", []string{"check", "--k8s", missingYAML}, missingYAML},
		{"check second file", []string{"check", quickstartPol, missing}, ""},
		{"fmt", []string{"fmt", missing}, ""},
		{"fmt second file", []string{"fmt", quickstartPol, missing}, ""},
		{"fmt write", []string{"fmt", "-w", missing}, ""},
		{"fmt to yaml", []string{"fmt", "--to", "yaml", missing}, ""},
		{"fmt yaml", []string{"fmt", missingYAML}, missingYAML},
		{"ir", []string{"ir", missing}, ""},
		{"ir json", []string{"ir", "-o", "json", missing}, ""},
		{"ir k8s", []string{"ir", "--k8s", missingYAML}, missingYAML},
		{"build", []string{"build", missing, "-o", filepath.Join(tmp, "bundle")}, ""},
		{"build tar", []string{"build", missing, "--tar", filepath.Join(tmp, "bundle.tar")}, ""},
		{"build k8s", []string{"build", "--k8s", missingYAML, "-o", filepath.Join(tmp, "bundle")}, missingYAML},
		{"test", []string{"test", missing}, ""},
		{"test reference json", []string{"test", "--reference", "-o", "json", missing}, ""},
		{"test k8s", []string{"test", "--k8s", missingYAML}, missingYAML},
		{"test cases", []string{"test", "--cases", missingYAML}, missingYAML},
		{"explain", []string{"explain", missing, flow}, ""},
		{"explain json", []string{"explain", "--reference", "-o", "json", missing, flow}, ""},
		{"explain k8s", []string{"explain", "--k8s", missingYAML, flow}, missingYAML},
		{"directory", []string{"check", tmp}, tmp},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := tc.file
			if file == "" {
				file = missing
			}
			code, stdout, stderr := runPolc(t, tc.args...)
			if code != exitUsage {
				t.Errorf("polc %s: exit %d, want %d", strings.Join(tc.args, " "), code, exitUsage)
			}
			if stdout != "" {
				t.Errorf("polc %s: stdout %q, want nothing", strings.Join(tc.args, " "), stdout)
			}
			reason := "no such file or directory"
			if file == tmp {
				reason = "is a directory"
			}
			if want := "polc: " + file + ": " + reason + "\n"; stderr != want {
				t.Errorf("polc %s: stderr %q, want %q", strings.Join(tc.args, " "), stderr, want)
			}
		})
	}
	for _, out := range []string{"bundle", "bundle.tar"} {
		if _, err := os.Stat(filepath.Join(tmp, out)); err == nil {
			t.Errorf("build wrote %s despite a missing input", out)
		}
	}
}

// TestMissingBundle checks that every command that reads a bundle treats a
// bundle path named on the command line that cannot be read as
// TestMissingInputFile treats a policy file: exit 2, nothing on stdout,
// "polc: PATH: REASON" on stderr. load and apply check the path before
// they touch the host, so this needs neither root nor BPF. (A path that
// exists but is not a bundle has its own message; see
// TestInspectNotABundleFile.)
func TestMissingBundle(t *testing.T) {
	tmp := t.TempDir()
	missing := filepath.Join(tmp, "bundle")
	missingTar := filepath.Join(tmp, "bundle.tar")
	underFile := filepath.Join(quickstartPol, "bundle") // a path through a regular file
	root := filepath.Join(tmp, "pins")
	cases := []struct {
		name   string
		args   []string
		path   string
		reason string
	}{
		{"inspect", []string{"inspect", missing}, missing, "no such file or directory"},
		{"inspect json", []string{"inspect", "-o", "json", missing}, missing, "no such file or directory"},
		{"inspect tar", []string{"inspect", missingTar}, missingTar, "no such file or directory"},
		{"inspect under a file", []string{"inspect", underFile}, underFile, "not a directory"},
		{"load", []string{"load", "--root", root, "--name", "x", missing}, missing, "no such file or directory"},
		{"load json", []string{"load", "--root", root, "--name", "x", "-o", "json", missingTar}, missingTar, "no such file or directory"},
		{"apply", []string{"apply", "--root", root, "x", missing}, missing, "no such file or directory"},
		{"apply json", []string{"apply", "--root", root, "-o", "json", "x", missingTar}, missingTar, "no such file or directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runPolc(t, tc.args...)
			if code != exitUsage {
				t.Errorf("polc %s: exit %d, want %d", strings.Join(tc.args, " "), code, exitUsage)
			}
			if stdout != "" {
				t.Errorf("polc %s: stdout %q, want nothing", strings.Join(tc.args, " "), stdout)
			}
			if want := "polc: " + tc.path + ": " + tc.reason + "\n"; stderr != want {
				t.Errorf("polc %s: stderr %q, want %q", strings.Join(tc.args, " "), stderr, want)
			}
		})
	}
	if _, err := os.Stat(root); err == nil {
		t.Errorf("load or apply created %s despite a missing bundle", root)
	}
}

// TestMissingImport checks the other side of TestMissingInputFile: a file
// that an import names is the policy's error, at the import (exit 1).
func TestMissingImport(t *testing.T) {
	path := writePolicy(t, "imports.pol", `import "missing.pol"`+"\n")
	code, _, stderr := runPolc(t, "check", path)
	if code != exitFailure || !strings.Contains(stderr, path+`:1:8: cannot import "missing.pol"`) {
		t.Errorf("exit %d, stderr %q; want 1 and a diagnostic at the import", code, stderr)
	}
}

func TestCheckJSON(t *testing.T) {
	bad := writePolicy(t, "bad.pol", withError+"policy q { select app=nobody }\n")
	code, stdout, stderr := runPolc(t, "check", "-o", "json", bad)
	skipWithoutParser(t, stdout)
	if code != exitFailure || stderr != "" {
		t.Errorf("exit %d, stderr %q; want 1 and nothing on stderr", code, stderr)
	}
	var got struct {
		Diagnostics []map[string]any `json:"diagnostics"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	if len(got.Diagnostics) != 2 || got.Diagnostics[1]["severity"] != "warning" {
		t.Fatalf("%d diagnostics, want 2 (an error, then a warning):\n%s", len(got.Diagnostics), stdout)
	}
	first := got.Diagnostics[0]
	want := map[string]any{"file": bad, "line": 4.0, "col": 22.0, "severity": "error", "message": `unknown cidrset "partnrs"`}
	for k, v := range want {
		if first[k] != v {
			t.Errorf("diagnostic %s = %v, want %v", k, first[k], v)
		}
	}
	if len(first) != len(want) {
		t.Errorf("diagnostic has keys %v, want exactly %v", first, want)
	}

	good := writePolicy(t, "good.pol", "endpoint api labels(app=api) addr 10.0.2.10\n")
	code, stdout, _ = runPolc(t, "check", "-o", "json", good)
	if code != exitOK || strings.TrimSpace(stdout) != `{
  "diagnostics": []
}` {
		t.Errorf("clean file: exit %d, stdout %q", code, stdout)
	}
}

func TestIR(t *testing.T) {
	chdirRoot(t)
	code, stdout, stderr := runPolc(t, "ir", "testdata/quickstart.pol")
	skipWithoutParser(t, stderr)
	if code != exitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	want, err := os.ReadFile(filepath.Join(golden.Dir(), "ir", "quickstart.pol.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if stdout != string(want) {
		t.Errorf("polc ir differs from golden/ir/quickstart.pol.txt:\n%s", stdout)
	}

	code, stdout, _ = runPolc(t, "ir", "-o", "json", "testdata/quickstart.pol")
	var prog map[string]any
	if code != exitOK || json.Unmarshal([]byte(stdout), &prog) != nil || prog["Rules"] == nil {
		t.Errorf("ir -o json: exit %d, stdout %.200q", code, stdout)
	}

	bad := writePolicy(t, "bad.pol", withError)
	code, stdout, stderr = runPolc(t, "ir", bad)
	if code != exitFailure || stdout != "" || !strings.Contains(stderr, "unknown cidrset") {
		t.Errorf("ir with an error: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	warn := writePolicy(t, "warn.pol", withWarning)
	code, stdout, stderr = runPolc(t, "ir", warn)
	if code != exitOK || !strings.HasPrefix(stdout, "polc-ir ") || !strings.Contains(stderr, "warning:") {
		t.Errorf("ir with a warning: exit %d, stdout %.100q, stderr %q", code, stdout, stderr)
	}
}

func TestFmt(t *testing.T) {
	chdirRoot(t)
	code, stdout, stderr := runPolc(t, "fmt", "testdata/quickstart.pol")
	skipWithoutParser(t, stderr)
	if code == exitOK && stdout == "" {
		t.Skip("dsl.Format is not built yet")
	}
	if code != exitOK || stdout == "" || stderr != "" {
		t.Fatalf("fmt quickstart: exit %d, stdout %.100q, stderr %q", code, stdout, stderr)
	}
	// The example is in canonical form: fmt reproduces it byte for byte.
	if src, err := os.ReadFile("testdata/quickstart.pol"); err != nil || stdout != string(src) {
		t.Errorf("fmt quickstart differs from the file (%v):\n%s", err, cmp.Diff(string(src), stdout))
	}
	// Formatting keeps the meaning: the formatted file has the same IR
	// (but for positions and digests).
	formatted := writePolicy(t, "q.pol", stdout)
	_, again, _ := runPolc(t, "fmt", formatted)
	if again != stdout {
		t.Errorf("fmt is not idempotent")
	}
	_, irOrig, _ := runPolc(t, "ir", "testdata/quickstart.pol")
	_, irFmt, _ := runPolc(t, "ir", formatted)
	if stripPositions(irOrig) != stripPositions(irFmt) {
		t.Errorf("fmt changed the IR:\n%s\n---\n%s", stripPositions(irOrig), stripPositions(irFmt))
	}

	broken := writePolicy(t, "broken.pol", "policy {\n")
	code, stdout, stderr = runPolc(t, "fmt", broken)
	if code != exitFailure || stdout != "" || !strings.Contains(stderr, broken+":1:") {
		t.Errorf("fmt of a broken file: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// stripPositions drops what depends on the file rather than on the
// meaning: source lines and " at FILE:L:C".
func stripPositions(ir string) string {
	var out []string
	for _, line := range strings.Split(ir, "\n") {
		if strings.HasPrefix(line, "source ") {
			continue
		}
		if i := strings.Index(line, " at "); i >= 0 {
			rest := line[i+4:]
			if j := strings.IndexByte(rest, ' '); j >= 0 {
				line = line[:i] + rest[j:]
			} else {
				line = line[:i]
			}
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

// TestBundleFIFO: a FIFO named as a bundle is refused at once (opening it
// to look for a tar header would block until something writes to it).
func TestBundleFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "bundle.tar")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var code int
	var stderr string
	go func() {
		defer close(done)
		code, _, stderr = runPolc(t, "inspect", fifo)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("inspect of a FIFO hangs")
	}
	if code != exitUsage || !strings.Contains(stderr, "not a named pipe") {
		t.Errorf("inspect of a FIFO: exit %d, stderr %q; want exit 2", code, stderr)
	}
}
