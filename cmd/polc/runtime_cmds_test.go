package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/polc-dev/polc/runtime"
	"github.com/polc-dev/polc/runtime/netnstest"
)

// cliRoot is a pin root of the test's own, removed at the end.
func cliRoot(t *testing.T) string {
	t.Helper()
	netnstest.RequireRoot(t)
	root := filepath.Join(runtime.BPFFSMount, fmt.Sprintf("polc-clitest-%d", os.Getpid()))
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	return root
}

func TestRuntimeCommandsUsage(t *testing.T) {
	root := cliRoot(t)
	cases := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"status", "--root", root}, exitOK, "no bundles loaded\n"},
		{[]string{"status", "--root", root, "-o", "json"}, exitOK, "[]\n"},
		{[]string{"load", "--root", root, "testdata/none"}, exitUsage, ""},               // no --name
		{[]string{"load", "--root", root, "--name", "x", "/nonexistent"}, exitUsage, ""}, // no bundle
		{[]string{"attach", "--root", root, "x"}, exitUsage, ""},                         // no interface
		{[]string{"attach", "--root", root, "x", "--iface", "lo=a"}, exitUsage, ""},      // not loaded
		{[]string{"status", "--root", root, "x"}, exitUsage, ""},                         // not loaded
		{[]string{"unload", "--root", root, "x"}, exitOK, "x: not loaded\n"},
		{[]string{"unload", "--root", root, "bad.name"}, exitUsage, ""}, // bpffs refuses dots
	}
	for _, c := range cases {
		code, stdout, stderr := runPolc(t, c.args...)
		if code != c.code || (c.out != "" && stdout != c.out) {
			t.Errorf("polc %s: exit %d, stdout %q, stderr %q; want exit %d, stdout %q",
				strings.Join(c.args, " "), code, stdout, stderr, c.code, c.out)
		}
	}
}

// TestRuntimeCommandsLifecycle builds a bundle, loads it, attaches it to a
// veth inside namespaces of the test's own, and unloads it, all through
// the CLI.
func TestRuntimeCommandsLifecycle(t *testing.T) {
	root := cliRoot(t)
	dir := filepath.Join(t.TempDir(), "bundle")
	policy := writePolicy(t, "p.pol", `endpoint a labels(app=a) addr 10.201.1.2
endpoint a2 labels(app=a) addr 10.201.1.3
policy a {
  select app=a
  ingress allow from 10.201.1.1 on tcp/80
}
`)
	if code, _, stderr := runPolc(t, "build", policy, "-o", dir); code != exitOK {
		t.Fatalf("build: exit %d: %s", code, stderr)
	}
	for _, n := range []string{"1", "255", "4194305"} {
		if code, _, stderr := runPolc(t, "load", "--root", root, "--name", "clitest", "--conntrack-entries", n, dir); code != exitUsage || !strings.Contains(stderr, "each endpoint's table holds 256 to 4194304 flows") {
			t.Errorf("load --conntrack-entries %s: exit %d, %q; want a usage error", n, code, stderr)
		}
	}
	code, stdout, stderr := runPolc(t, "load", "--root", root, "--name", "clitest", "--conntrack-entries", "1000", dir)
	if code == exitFailure && strings.Contains(stderr, "corrupt bundle") {
		// polc build wrote a bundle its own reader rejects: a bundle-format
		// bug that the build and inspect tests report.
		t.Skipf("polc build output does not verify: %s", stderr)
	}
	if code != exitOK || !strings.Contains(stdout, "generation 1") {
		t.Fatalf("load: exit %d, %q, %q", code, stdout, stderr)
	}
	t.Cleanup(func() { runPolc(t, "unload", "--root", root, "clitest") })
	if code, stdout, _ := runPolc(t, "load", "--root", root, "--name", "clitest", dir); code != exitOK || !strings.Contains(stdout, "already in force") {
		t.Errorf("second load: exit %d, %q", code, stdout)
	}
	if code, _, _ := runPolc(t, "apply", "--root", root, "clitest", dir); code != exitOK {
		t.Errorf("apply of the same bundle: exit %d", code)
	}

	host := netnstest.New(t, "clihost")
	ep := netnstest.New(t, "cliep")
	netnstest.Veth(t, ep, "eth0", host, "pe0")
	var attachOut string
	if err := host.Do(func() error {
		var code int
		// without a binding, with an endpoint the bundle lacks, and with
		// one on an uplink: usage errors that name what to write
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"--iface", "pe0"}, "--iface pe0=ENDPOINT"},
			{[]string{"--iface", "pe0="}, "--iface pe0=ENDPOINT"},
			{[]string{"--iface", "pe0=b"}, `no endpoint "b"`},
			{[]string{"--xdp", "pe0=a"}, "serves no endpoint"},
		} {
			code, stdout, stderr := runPolc(t, append([]string{"attach", "--root", root, "clitest"}, c.args...)...)
			if code != exitUsage || stdout != "" || !strings.Contains(stderr, c.want) {
				t.Errorf("attach %v: exit %d, stdout %q, stderr %q; want exit 2 saying %q", c.args, code, stdout, stderr, c.want)
			}
		}
		code, attachOut, stderr = runPolc(t, "attach", "--root", root, "clitest", "--iface", "pe0=a")
		if code != exitOK {
			return fmt.Errorf("attach: exit %d: %s", code, stderr)
		}
		// the same interface as another endpoint: refused
		if code, _, stderr := runPolc(t, "attach", "--root", root, "clitest", "--iface", "pe0=a2"); code != exitUsage || !strings.Contains(stderr, `already serves endpoint "a"`) {
			return fmt.Errorf("attach as another endpoint: exit %d: %s", code, stderr)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Count(attachOut, "attached") != 2 || !strings.Contains(attachOut, "on pe0 as endpoint a") {
		t.Errorf("attach printed %q", attachOut)
	}

	code, stdout, stderr = runPolc(t, "status", "--root", root, "-o", "json")
	var sts []runtime.Status
	if code != exitOK || json.Unmarshal([]byte(stdout), &sts) != nil || len(sts) != 1 {
		t.Fatalf("status: exit %d, %q, %q", code, stdout, stderr)
	}
	if s := sts[0]; s.Name != "clitest" || s.Generation != 1 || len(s.Attachments) != 2 || !s.Attachments[0].Live || s.Attachments[0].Endpoint != "a" {
		t.Errorf("status: %+v", s)
	}
	if s := sts[0]; len(s.Conntrack) != 1 || s.Conntrack[0] != (runtime.ConntrackStatus{Endpoint: "a", Entries: 0, MaxEntries: 1000}) {
		t.Errorf("status conntrack: %+v, want a's empty table of 1000", s.Conntrack)
	}
	if code, stdout, _ := runPolc(t, "status", "--root", root, "clitest"); code != exitOK || !strings.Contains(stdout, "endpoint a") ||
		!regexp.MustCompile(`(?m)^  conntrack +a +lru_hash +0/1000 +kept across apply$`).MatchString(stdout) {
		t.Errorf("status does not show the binding and a's conntrack table: exit %d, %q", code, stdout)
	}
	if code, stdout, _ := runPolc(t, "unload", "--root", root, "clitest"); code != exitOK || stdout != "clitest: unloaded\n" {
		t.Errorf("unload: exit %d, %q", code, stdout)
	}
	if _, err := os.Stat(filepath.Join(root, "clitest")); !os.IsNotExist(err) {
		t.Errorf("pins left after unload")
	}
}

// TestRuntimeErrorExitCodes: what the host or the request is wrong about
// exits 2, what the kernel refuses in the bundle exits 1.
func TestRuntimeErrorExitCodes(t *testing.T) {
	cases := []struct {
		err  error
		code int
	}{
		{fmt.Errorf("x: %w", runtime.ErrOtherNetns), exitUsage},
		{fmt.Errorf("x: %w", runtime.ErrMissingHook), exitUsage},
		{fmt.Errorf("x: %w", runtime.ErrBinding), exitUsage},
		{fmt.Errorf("x: %w", runtime.ErrStacked), exitUsage},
		{fmt.Errorf("x: %w", runtime.ErrPrivateMounts), exitUsage},
		{&os.PathError{Op: "mkdir", Path: "/x", Err: syscall.EROFS}, exitUsage},
		{errors.New("load programs: verifier says no"), exitFailure},
	}
	for _, c := range cases {
		var ee *exitError
		if err := runtimeError(c.err); !errors.As(err, &ee) || ee.code != c.code {
			t.Errorf("%v: exit %v, want %d", c.err, err, c.code)
		}
	}
}

// TestReadOnlyBPFFS: a root on a read-only bpf filesystem is the host's
// problem, not the bundle's: exit 2.
func TestReadOnlyBPFFS(t *testing.T) {
	root := cliRoot(t)
	dir := filepath.Join(t.TempDir(), "bundle")
	if code, _, stderr := runPolc(t, "build", quickstartPol, "-o", dir); code != exitOK {
		t.Fatalf("build: exit %d: %s", code, stderr)
	}
	ro := root + "-ro"
	if err := os.MkdirAll(ro, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(ro) })
	if err := syscall.Mount("bpf", ro, "bpf", syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("mount a read-only bpffs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(ro, 0) })
	code, _, stderr := runPolc(t, "load", "--root", filepath.Join(ro, "polc"), "--name", "x", dir)
	if code != exitUsage || !strings.Contains(stderr, "read-only file system") {
		t.Errorf("load onto a read-only bpffs: exit %d, stderr %q; want exit 2", code, stderr)
	}
}
