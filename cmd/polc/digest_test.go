package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// digestRE finds the root digest build and inspect print.
var digestRE = regexp.MustCompile(`sha256:[0-9a-f]{64}`)

// TestBundleDigest: build prints the bundle's root digest and inspect the
// same one; load and apply with --digest take exactly that bundle and
// refuse (exit 1, nothing loaded) one whose manifest was edited, even when
// every file digest in it was kept consistent.
func TestBundleDigest(t *testing.T) {
	root := cliRoot(t)
	dir := filepath.Join(t.TempDir(), "bundle")
	code, out, stderr := runPolc(t, "build", quickstartPol, "-o", dir)
	digest := digestRE.FindString(out)
	if code != exitOK || digest == "" || !strings.HasPrefix(out, dir+": bundle sha256:") {
		t.Fatalf("build: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if _, text, _ := runPolc(t, "inspect", dir); digestRE.FindString(text) != digest {
		t.Errorf("inspect shows %q, build printed %s", digestRE.FindString(text), digest)
	}
	var js struct{ Digest string }
	if _, text, _ := runPolc(t, "inspect", "-o", "json", dir); json.Unmarshal([]byte(text), &js) != nil || js.Digest != digest {
		t.Errorf("inspect -o json digest %q, build printed %s", js.Digest, digest)
	}

	// Tamper: switch IPv4 off in the manifest. Every file digest still
	// matches, so the bundle reads fine; only the root digest tells.
	tampered := filepath.Join(t.TempDir(), "tampered")
	if err := os.CopyFS(tampered, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	man := filepath.Join(tampered, "manifest.json")
	src, err := os.ReadFile(man)
	if err != nil {
		t.Fatal(err)
	}
	edited := regexp.MustCompile(`("name": "cfg_has_ipv4",\s*"size": 4,\s*"value": )1`).ReplaceAll(src, []byte("${1}0"))
	if string(edited) == string(src) {
		t.Fatal("the manifest has no cfg_has_ipv4 = 1 to edit")
	}
	if err := os.WriteFile(man, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, text, _ := runPolc(t, "inspect", tampered); digestRE.FindString(text) == digest {
		t.Fatalf("the edited bundle has the original's digest")
	}
	code, out, stderr = runPolc(t, "load", "--root", root, "--name", "digest", "--digest", digest, tampered)
	if code != exitFailure || out != "" || !strings.Contains(stderr, "digest mismatch") {
		t.Errorf("load of the edited bundle with --digest: exit %d, stdout %q, stderr %q; want exit 1", code, out, stderr)
	}
	if _, err := os.Stat(filepath.Join(root, "digest")); !os.IsNotExist(err) {
		t.Errorf("a refused load left %s", filepath.Join(root, "digest"))
	}
	if code, _, stderr := runPolc(t, "load", "--root", root, "--name", "digest", "--digest", "sha256:abc", dir); code != exitUsage {
		t.Errorf("--digest sha256:abc: exit %d (%s), want 2", code, stderr)
	}

	// The real one, with or without the prefix.
	if code, _, stderr := runPolc(t, "load", "--root", root, "--name", "digest", "--digest", digest, dir); code != exitOK {
		t.Fatalf("load with its digest: exit %d: %s", code, stderr)
	}
	t.Cleanup(func() { runPolc(t, "unload", "--root", root, "digest") })
	if code, _, stderr := runPolc(t, "apply", "--root", root, "digest", tampered, "--digest", strings.TrimPrefix(digest, "sha256:")); code != exitFailure {
		t.Errorf("apply of the edited bundle with --digest: exit %d (%s), want 1", code, stderr)
	}
	if code, stdout, stderr := runPolc(t, "apply", "--root", root, "digest", dir, "--digest", strings.TrimPrefix(digest, "sha256:")); code != exitOK || !strings.Contains(stdout, "already in force") {
		t.Errorf("apply of the same bundle with its digest: exit %d, %q, %s", code, stdout, stderr)
	}
}
