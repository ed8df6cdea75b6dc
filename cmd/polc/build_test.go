package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/compiler/lower"
)

const quickstartPol = "../../testdata/quickstart.pol"

// Building twice gives the same bytes, as a directory and as a tar.
func TestBuildDeterministic(t *testing.T) {
	tmp := t.TempDir()
	for _, d := range []string{"a", "b"} {
		if code, _, stderr := runPolc(t, "build", quickstartPol, "-o", filepath.Join(tmp, d)); code != exitOK {
			t.Fatalf("build: exit %d: %s", code, stderr)
		}
		if code, _, stderr := runPolc(t, "build", quickstartPol, "--tar", filepath.Join(tmp, d+".tar")); code != exitOK {
			t.Fatalf("build --tar: exit %d: %s", code, stderr)
		}
	}
	ta, _ := os.ReadFile(filepath.Join(tmp, "a.tar"))
	tb, _ := os.ReadFile(filepath.Join(tmp, "b.tar"))
	if len(ta) == 0 || !bytes.Equal(ta, tb) {
		t.Error("two tars of the same build differ")
	}
	err := filepath.WalkDir(filepath.Join(tmp, "a"), func(p string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(filepath.Join(tmp, "a"), p)
		x, _ := os.ReadFile(p)
		y, err := os.ReadFile(filepath.Join(tmp, "b", rel))
		if err != nil || !bytes.Equal(x, y) {
			t.Errorf("%s differs between two builds", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestInspect(t *testing.T) {
	tmp := t.TempDir()
	dir, tarPath := filepath.Join(tmp, "b"), filepath.Join(tmp, "b.tar")
	runPolc(t, "build", quickstartPol, "-o", dir)
	runPolc(t, "build", quickstartPol, "--tar", tarPath)
	code, text, stderr := runPolc(t, "inspect", dir)
	if code != exitOK {
		t.Fatalf("inspect: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"format 5,", "bundle sha256:", "tail calls", "identities (", "{app=web,tier=frontend}", "endpoints (3)", "endpoint 3 web",
		"198.51.100.128/25", "policy (", "tcp    5432", "rules (", "testdata/quickstart.pol:11:3"} {
		if !strings.Contains(text, want) {
			t.Errorf("inspect output lacks %q", want)
		}
	}
	if code, fromTar, _ := runPolc(t, "inspect", tarPath); code != exitOK || fromTar != text {
		t.Errorf("inspect of the tar: exit %d, same output %v", code, fromTar == text)
	}
	code, js, _ := runPolc(t, "inspect", "-o", "json", dir)
	var decoded struct {
		Manifest struct{ Format int }
		Policy   []struct{ Rule uint32 }
	}
	if code != exitOK || json.Unmarshal([]byte(js), &decoded) != nil || decoded.Manifest.Format != bundle.FormatVersion || len(decoded.Policy) == 0 {
		t.Errorf("inspect -o json: exit %d, %+v", code, decoded)
	}
}

func TestInspectCorrupt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "b")
	runPolc(t, "build", quickstartPol, "-o", dir)
	p := filepath.Join(dir, "maps", "policy.bin")
	data, _ := os.ReadFile(p)
	data[0] ^= 1
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runPolc(t, "inspect", dir)
	if code != exitFailure || !strings.Contains(stderr, "corrupt bundle") || !strings.Contains(stderr, "maps/policy.bin") {
		t.Errorf("inspect of a corrupt bundle: exit %d, stderr %q", code, stderr)
	}
}

func TestBuildUsage(t *testing.T) {
	for _, args := range [][]string{
		{"build", quickstartPol},
		{"build", quickstartPol, "-o", "x", "--tar", "y"},
		{"inspect"},
		{"inspect", filepath.Join(t.TempDir(), "missing")},
	} {
		if code, _, stderr := runPolc(t, args...); code != exitUsage {
			t.Errorf("polc %s: exit %d, want %d (%s)", strings.Join(args, " "), code, exitUsage, stderr)
		}
	}
}

// TestInspectChecksLikeLoad: a bundle whose manifest load would refuse
// before the verifier (a constant its object lacks, a tail-call slot
// beyond the program array, an unknown hook) is refused by inspect too.
func TestInspectChecksLikeLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bundle")
	if code, _, stderr := runPolc(t, "build", quickstartPol, "-o", dir); code != exitOK {
		t.Fatalf("build: exit %d: %s", code, stderr)
	}
	orig, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		edit func(m map[string]any)
		want string
	}{
		{"unknown constant", func(m map[string]any) {
			m["constants"] = append(m["constants"].([]any), map[string]any{"name": "cfg_nonexistent", "size": 4, "value": 1})
		}, "constant cfg_nonexistent: the object has no such variable"},
		{"tail-call slot 100", func(m map[string]any) {
			m["tail_calls"].(map[string]any)["slots"].([]any)[0].(map[string]any)["index"] = 100
		}, "slot 100 (tc_policy4) is beyond the program array's 8 slots"},
		{"unknown hook", func(m map[string]any) {
			m["programs"].([]any)[0].(map[string]any)["hooks"] = []any{"tc/somewhere"}
		}, `unknown hook "tc/somewhere"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal(orig, &m); err != nil {
				t.Fatal(err)
			}
			c.edit(m)
			data, err := json.MarshalIndent(m, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "manifest.json"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runPolc(t, "inspect", dir)
			if code != exitFailure || stdout != "" || !strings.Contains(stderr, c.want) {
				t.Errorf("inspect: exit %d, stdout %d bytes, stderr %q; want exit 1 saying %q", code, len(stdout), stderr, c.want)
			}
		})
	}
}

// TestCheckFindsCapacity: a policy that needs more entries in a map than
// its limit fails check (exit 1, as a diagnostic, in JSON too) as it fails
// build: check lowers the program like build.
func TestCheckFindsCapacity(t *testing.T) {
	old := buildLimits
	buildLimits = lower.Limits{bundle.MapPrefilter4: 1}
	t.Cleanup(func() { buildLimits = old })
	p := writePolicy(t, "p.pol", "endpoint a labels(app=a) addr 10.0.0.1\nprefilter drop from 192.0.2.0/24, 198.51.100.0/24\n")
	const want = "map prefilter4 needs 2 entries, more than its limit of 1"
	code, _, stderr := runPolc(t, "check", p)
	if code != exitFailure || !strings.Contains(stderr, want) {
		t.Errorf("check: exit %d, stderr %q; want exit 1 saying %q", code, stderr, want)
	}
	code, stdout, _ := runPolc(t, "check", "-o", "json", p)
	var js struct{ Diagnostics []jsonDiagnostic }
	err := json.Unmarshal([]byte(stdout), &js)
	if d := js.Diagnostics; code != exitFailure || err != nil || len(d) != 1 || !strings.Contains(d[0].Message, want) || d[0].Severity != "error" {
		t.Errorf("check -o json: exit %d, %q", code, stdout)
	}
	if code, _, stderr := runPolc(t, "build", p, "-o", filepath.Join(t.TempDir(), "b")); code != exitFailure || !strings.Contains(stderr, want) {
		t.Errorf("build: exit %d, stderr %q", code, stderr)
	}
}
