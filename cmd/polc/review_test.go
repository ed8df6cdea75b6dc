package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/dsl"
)

// Wrong argument counts say where help is, like bad flags do.
func TestArgCountErrorsPointToHelp(t *testing.T) {
	for _, args := range [][]string{{"check"}, {"inspect", "a", "b"}, {"fmt"}, {"apply", "x"}} {
		code, stdout, stderr := runPolc(t, args...)
		want := "(see 'polc " + args[0] + " --help')"
		if code != exitUsage || stdout != "" || !strings.Contains(stderr, want) {
			t.Errorf("polc %s: exit %d, stdout %q, stderr %q; want exit 2 and %q",
				strings.Join(args, " "), code, stdout, stderr, want)
		}
	}
}

// With -o json, a policy with errors still prints JSON on stdout (the
// diagnostics, as check -o json prints them), for ir, test and explain.
func TestJSONOutputOnPolicyErrors(t *testing.T) {
	bad := writePolicy(t, "bad.pol", withError)
	for _, args := range [][]string{
		{"ir", "-o", "json", bad},
		{"test", "--reference", "-o", "json", bad},
		{"explain", "--reference", "-o", "json", bad, "tcp 10.0.0.1 -> 10.0.2.10:80"},
	} {
		code, stdout, stderr := runPolc(t, args...)
		skipWithoutParser(t, stderr)
		var got struct {
			Diagnostics []jsonDiagnostic `json:"diagnostics"`
		}
		if err := json.Unmarshal([]byte(stdout), &got); err != nil || code != exitFailure {
			t.Errorf("polc %s: exit %d, stdout not JSON (%v): %q, stderr %q", strings.Join(args, " "), code, err, stdout, stderr)
			continue
		}
		if len(got.Diagnostics) != 1 || got.Diagnostics[0].Line != 4 || !strings.Contains(got.Diagnostics[0].Message, "unknown cidrset") {
			t.Errorf("polc %s: diagnostics %+v", strings.Join(args, " "), got.Diagnostics)
		}
	}
}

// A --root that is not on a bpf filesystem (a typo, or 'ip netns exec'
// remounting /sys) is said so, rather than a bare "no bundles loaded".
func TestStatusRootNotOnBPFFS(t *testing.T) {
	root := filepath.Join(t.TempDir(), "pins")
	code, stdout, stderr := runPolc(t, "status", "--root", root)
	if code != exitOK || stdout != "no bundles loaded\n" || !strings.Contains(stderr, "not on a bpf filesystem") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, stderr = runPolc(t, "status", "--root", root, "-o", "json")
	if code != exitOK || stdout != "[]\n" || !strings.Contains(stderr, "not on a bpf filesystem") {
		t.Errorf("-o json: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// unload takes -o json like every command that prints results.
func TestUnloadJSON(t *testing.T) {
	root := cliRoot(t)
	code, stdout, stderr := runPolc(t, "unload", "--root", root, "-o", "json", "nothere")
	var got struct {
		Name     string `json:"name"`
		Unloaded *bool  `json:"unloaded"`
	}
	if code != exitOK || json.Unmarshal([]byte(stdout), &got) != nil || got.Name != "nothere" || got.Unloaded == nil || *got.Unloaded {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// Attaching to an interface that does not exist is a usage error (2), with
// the interface named, not a kernel failure (1).
func TestAttachUnknownInterface(t *testing.T) {
	root := cliRoot(t)
	dir := filepath.Join(t.TempDir(), "bundle")
	policy := writePolicy(t, "p.pol", "endpoint a labels(app=a) addr 10.201.2.2\n")
	if code, _, stderr := runPolc(t, "build", policy, "-o", dir); code != exitOK {
		t.Fatalf("build: exit %d: %s", code, stderr)
	}
	if code, _, stderr := runPolc(t, "load", "--root", root, "--name", "revattach", dir); code != exitOK {
		t.Fatalf("load: exit %d: %s", code, stderr)
	}
	t.Cleanup(func() { runPolc(t, "unload", "--root", root, "revattach") })
	for _, flag := range []string{"--iface", "--xdp"} {
		iface := "polc-nope0"
		if flag == "--iface" {
			iface += "=a"
		}
		code, stdout, stderr := runPolc(t, "attach", "--root", root, "revattach", flag, iface)
		if code != exitUsage || stdout != "" || !strings.Contains(stderr, `interface "polc-nope0"`) {
			t.Errorf("attach %s polc-nope0: exit %d, stdout %q, stderr %q; want exit 2", flag, code, stdout, stderr)
		}
	}
}

// build -o DIR over an existing bundle that fails half-way leaves the old
// bundle whole, and leaves no temporary directories behind.
func TestBuildDirFailureKeepsOldBundle(t *testing.T) {
	chdirRoot(t)
	parent := t.TempDir()
	dir := filepath.Join(parent, "bundle")
	if code, _, stderr := runPolc(t, "build", "testdata/quickstart.pol", "-o", dir); code != exitOK {
		t.Fatalf("build: exit %d: %s", code, stderr)
	}
	before, err := bundle.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	orig := writeBundle
	t.Cleanup(func() { writeBundle = orig })
	writeBundle = func(d string, b *bundle.Bundle) error {
		// write everything but the manifest, as a crash half-way would
		os.MkdirAll(filepath.Join(d, bundle.MapDir), 0o755)
		os.WriteFile(filepath.Join(d, "polc.bpf.o"), []byte("half"), 0o644)
		return errors.New("disk full")
	}
	other := writePolicy(t, "other.pol", "endpoint a labels(app=a) addr 10.9.9.9\n")
	code, _, stderr := runPolc(t, "build", other, "-o", dir)
	if code != exitUsage || !strings.Contains(stderr, "disk full") {
		t.Errorf("failing build: exit %d, stderr %q", code, stderr)
	}
	after, err := bundle.Read(dir)
	if err != nil {
		t.Fatalf("the old bundle no longer reads: %v", err)
	}
	if after.Manifest.SourceDigest != before.Manifest.SourceDigest {
		t.Errorf("the old bundle changed")
	}
	ents, _ := os.ReadDir(parent)
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("left behind in %s: %v", parent, names)
	}
}

// fmt of several YAML files prints one valid YAML stream: the files are
// separate documents, so that no key appears twice in one map.
func TestFmtSeveralYAMLFiles(t *testing.T) {
	chdirRoot(t)
	code, stdout, stderr := runPolc(t, "fmt", "testdata/yaml/quickstart.yaml", "testdata/yaml/multi.yaml")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if _, diags := dsl.ParseYAML("out.yaml", []byte(stdout)); diags.HasErrors() {
		t.Errorf("fmt output is not valid YAML:\n%s", diags.Format(func(string) []byte { return []byte(stdout) }))
	}
	// one file prints as before, with no separator
	if _, single, _ := runPolc(t, "fmt", "testdata/yaml/quickstart.yaml"); strings.HasPrefix(single, "---") {
		t.Errorf("fmt of one file starts with a document separator")
	}
}

// A file that is not a tar at all (a policy passed by mistake) is not a
// bundle: a usage error (2) that says what a bundle is, not "corrupt
// bundle" (1). A truncated tar bundle is still corrupt.
func TestInspectNotABundleFile(t *testing.T) {
	chdirRoot(t)
	for _, args := range [][]string{
		{"inspect", "testdata/quickstart.pol"},
		{"inspect", "-o", "json", "testdata/quickstart.pol"},
		{"load", "--name", "x", "--root", t.TempDir(), "testdata/quickstart.pol"},
		{"apply", "--root", t.TempDir(), "x", "testdata/quickstart.pol"},
	} {
		code, stdout, stderr := runPolc(t, args...)
		if code != exitUsage || stdout != "" || !strings.Contains(stderr, "is not a bundle") {
			t.Errorf("polc %s: exit %d, stdout %q, stderr %q; want exit 2, not a bundle", strings.Join(args, " "), code, stdout, stderr)
		}
	}
	tarPath := filepath.Join(t.TempDir(), "b.tar")
	if code, _, stderr := runPolc(t, "build", "testdata/quickstart.pol", "--tar", tarPath); code != exitOK {
		t.Fatalf("build: exit %d: %s", code, stderr)
	}
	data, err := os.ReadFile(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tarPath, data[:3000], 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runPolc(t, "inspect", tarPath); code != exitFailure || !strings.Contains(stderr, "corrupt bundle") {
		t.Errorf("truncated tar: exit %d, stderr %q; want 1, corrupt bundle", code, stderr)
	}
}

// explain refuses IPv4-mapped IPv6 addresses, as test blocks do, instead
// of panicking in the packet builder.
func TestExplainIPv4MappedAddress(t *testing.T) {
	chdirRoot(t)
	for _, flow := range []string{
		"tcp [::ffff:10.0.1.10]:1 -> api:8080",
		"tcp [fd00::10]:1 -> [::ffff:10.0.2.10]:8080",
	} {
		code, stdout, stderr := runPolc(t, "explain", "--reference", "testdata/quickstart.pol", flow)
		if code != exitUsage || stdout != "" || !strings.Contains(stderr, "IPv4-mapped") {
			t.Errorf("explain %q: exit %d, stdout %q, stderr %.300q; want exit 2, IPv4-mapped", flow, code, stdout, stderr)
		}
	}
}

// fmt -w and build --tar write through a symlink (a ConfigMap mount, a
// dotfiles checkout) rather than replacing the link with a file.
func TestWriteFollowsSymlinks(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.pol")
	if err := os.WriteFile(real, []byte("endpoint  a labels(app=a)   addr 10.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.pol")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runPolc(t, "fmt", "-w", link)
	skipWithoutParser(t, stderr)
	if code != exitOK {
		t.Fatalf("fmt -w: exit %d: %s", code, stderr)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("fmt -w replaced the symlink %s with a file", link)
	}
	if got, _ := os.ReadFile(real); string(got) != "endpoint a labels(app=a) addr 10.0.0.1\n" {
		t.Errorf("the file the link points at was not formatted: %q", got)
	}

	tarReal := filepath.Join(dir, "b.tar")
	if err := os.WriteFile(tarReal, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tarLink := filepath.Join(dir, "link.tar")
	if err := os.Symlink(tarReal, tarLink); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runPolc(t, "build", real, "--tar", tarLink); code != exitOK {
		t.Fatalf("build --tar: exit %d: %s", code, stderr)
	}
	if fi, err := os.Lstat(tarLink); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("build --tar replaced the symlink %s with a file", tarLink)
	}
	if fi, err := os.Stat(tarReal); err != nil || fi.Size() == 0 {
		t.Errorf("build --tar did not write %s through the link", tarReal)
	}
}
