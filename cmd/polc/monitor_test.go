package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/runtime"
	"github.com/polc-dev/polc/runtime/netnstest"
)

// TestMain lets tests run polc as a subprocess: the test binary itself,
// with POLC_TEST_AS_CLI=1, is polc.
func TestMain(m *testing.M) {
	if os.Getenv("POLC_TEST_AS_CLI") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// cliProcess is polc running as a subprocess.
type cliProcess struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr *bufio.Reader
	done   chan error
}

// startPolc starts polc with args and waits until it has printed a line
// on stderr that contains ready (which it returns).
func startPolc(t *testing.T, ready string, args ...string) (*cliProcess, string) {
	t.Helper()
	p := &cliProcess{cmd: exec.Command(os.Args[0], args...), done: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), "POLC_TEST_AS_CLI=1")
	p.cmd.Stdout = &p.stdout
	errPipe, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	p.stderr = bufio.NewReader(errPipe)
	lines := make(chan string, 1)
	go func() {
		for {
			line, err := p.stderr.ReadString('\n')
			if strings.Contains(line, ready) {
				lines <- line
				_, _ = io.Copy(io.Discard, p.stderr)
				break
			}
			if err != nil {
				lines <- "polc ended before it was ready: " + line
				break
			}
		}
		p.done <- p.cmd.Wait()
	}()
	select {
	case line := <-lines:
		if !strings.Contains(line, ready) {
			t.Fatal(line)
		}
		return p, line
	case <-time.After(10 * time.Second):
		t.Fatalf("polc %v: no %q on stderr within 10 s", args, ready)
	}
	return nil, ""
}

// stop interrupts the process and waits for it.
func (p *cliProcess) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		if err != nil {
			t.Errorf("polc %v: %v", p.cmd.Args[1:], err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("polc %v did not stop on SIGINT", p.cmd.Args[1:])
	}
}

func sendUDP(t *testing.T, ns *netnstest.NS, src, dst net.IP, port int) {
	t.Helper()
	sendUDPPayload(t, ns, src, dst, port, "hello")
}

func sendUDPPayload(t *testing.T, ns *netnstest.NS, src, dst net.IP, port int, payload string) {
	t.Helper()
	if err := ns.Do(func() error {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: src}, &net.UDPAddr{IP: dst, Port: port})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(payload))
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// TestMonitorCountersMetrics: on two endpoints with real traffic, polc
// monitor (a subprocess, -o json --allow) reports each drop and each
// allowed flow with its rule's file:line, status --rules counts exactly
// the packets sent, apply carries the counts of an unchanged rule over,
// monitor's allow request ends with it, and polc metrics serves the same
// counts to a scrape.
func TestMonitorCountersMetrics(t *testing.T) {
	requireRoot(t)
	topo := netnstest.Routed(t, 2)
	a, b := topo.Endpoints[0], topo.Endpoints[1]
	udpLog := netnstest.ServeUDPLog(t, b.NS, 5353)
	dir := t.TempDir()
	policy := func(extra string) string {
		path := filepath.Join(dir, fmt.Sprintf("policy%d.pol", rand.IntN(1<<20)))
		src := fmt.Sprintf("endpoint a labels(app=a) addr %s\nendpoint b labels(app=b) addr %s\npolicy b {\n  select app=b\n%s  ingress allow from app=a on udp/5353\n}\n",
			netnstest.EndpointV4(0), netnstest.EndpointV4(1), extra)
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		out := path + ".bundle"
		if code, _, stderr := runPolc(t, "build", "-o", out, path); code != exitOK {
			t.Fatalf("build: %s", stderr)
		}
		return out
	}
	root := filepath.Join(runtime.BPFFSMount, fmt.Sprintf("polc-mon-%d-%06x", os.Getpid(), rand.IntN(1<<24)))
	t.Cleanup(func() {
		runPolc(t, "unload", "--root", root, "mon")
		_ = os.RemoveAll(root)
	})
	if code, _, stderr := runPolc(t, "load", "--root", root, "--name", "mon", policy("")); code != exitOK {
		t.Fatalf("load: %s", stderr)
	}
	if err := topo.Host.Do(func() error {
		for _, c := range [][]string{{a.HostIf + "=a"}, {b.HostIf + "=b"}} {
			if code, _, stderr := runPolc(t, "attach", "--root", root, "mon", "--iface", c[0]); code != exitOK {
				return fmt.Errorf("attach %s: %s", c[0], stderr)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	mon, ready := startPolc(t, "monitoring", "monitor", "--root", root, "-o", "json", "--allow", "--duration", "60s")
	if !strings.Contains(ready, "monitoring mon (generation 1): drops and allows") {
		t.Errorf("monitor said %q", ready)
	}
	const n = 5
	for range n {
		sendUDP(t, a.NS, netnstest.EndpointV4(0), netnstest.EndpointV4(1), 5353) // allowed, a new flow each
		sendUDP(t, a.NS, netnstest.EndpointV4(0), netnstest.EndpointV4(1), 5354) // dropped
	}
	time.Sleep(500 * time.Millisecond)
	mon.stop(t)
	var allowed, dropped int
	for _, line := range strings.Split(strings.TrimSpace(mon.stdout.String()), "\n") {
		var ev monitorEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("monitor printed %q: %v", line, err)
		}
		if ev.Endpoint != "b" || ev.Direction != "ingress" || ev.Proto != "udp" || ev.Src != netnstest.EndpointV4(0).String() || ev.DPort == nil {
			continue
		}
		switch {
		case *ev.DPort == 5353 && ev.Verdict == "allow" && ev.Rule.Line == 5 && strings.HasSuffix(ev.Rule.File, ".pol") && ev.Rule.Policy == "b" && ev.Remote == "a":
			allowed++
		case *ev.DPort == 5354 && ev.Verdict == "drop" && ev.Rule.Name == "default-deny" && ev.Generation == 1:
			dropped++
		}
	}
	if allowed != n || dropped != n {
		t.Errorf("monitor reported %d allowed flows and %d drops at b, want %d each:\n%s", allowed, dropped, n, mon.stdout.String())
	}
	// the allow request ended with the monitor
	m, err := ebpf.LoadPinnedMap(filepath.Join(root, "mon", "shared", bpf.MapEventsAllow), nil)
	if err != nil {
		t.Fatal(err)
	}
	var until uint64
	if err := m.Lookup(uint32(0), &until); err != nil || until != 0 {
		t.Errorf("events_allow after monitor: %d, %v; want 0", until, err)
	}
	m.Close()

	counts := func(line int) (rule, deny uint64) {
		t.Helper()
		code, stdout, stderr := runPolc(t, "status", "--root", root, "--rules", "mon", "-o", "json")
		var rcs []runtime.RuleCount
		if code != exitOK || json.Unmarshal([]byte(stdout), &rcs) != nil {
			t.Fatalf("status --rules: exit %d %q %q", code, stdout, stderr)
		}
		for _, r := range rcs {
			switch {
			case r.Line == line && r.Text == "ingress allow from app=a on udp/5353":
				rule = r.Packets
			case r.Name == "default-deny":
				deny = r.Packets
			}
		}
		return rule, deny
	}
	if rule, deny := counts(5); rule != n || deny != n {
		t.Errorf("status --rules: the rule %d packets, default-deny %d; want %d each", rule, deny, n)
	}
	if code, stdout, _ := runPolc(t, "status", "--root", root, "--rules", "mon"); code != exitOK ||
		!strings.Contains(stdout, "ingress allow from app=a on udp/5353") || !strings.HasPrefix(stdout, "PACKETS") {
		t.Errorf("status --rules: exit %d\n%s", code, stdout)
	}
	// apply: the unchanged rule moves to line 6 and keeps its count
	if code, _, stderr := runPolc(t, "apply", "--root", root, "mon", policy("  ingress allow from app=a on tcp/8080\n")); code != exitOK {
		t.Fatalf("apply: %s", stderr)
	}
	if rule, deny := counts(6); rule != n || deny != n {
		t.Errorf("after apply: the rule %d packets, default-deny %d; want %d each (carried over)", rule, deny, n)
	}

	// metrics
	srv, ready := startPolc(t, "serving metrics on", "metrics", "--root", root, "--listen", "127.0.0.1:0", "mon")
	url := strings.TrimSpace(strings.TrimPrefix(ready, "serving metrics on "))
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	want := []string{
		`polc_drops_total{bundle="mon",reason="default-deny"} 5`,
		`polc_generation{bundle="mon"} 2`,
		`polc_events_lost_total{bundle="mon"} 0`,
		`polc_conntrack_max_entries{bundle="mon",endpoint="b"} 8192`,
	}
	for _, w := range want {
		if !strings.Contains(text, w+"\n") {
			t.Errorf("metrics lack %q:\n%s", w, text)
		}
	}
	found := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "polc_rule_packets_total{") && strings.Contains(line, `line="6"`) && strings.Contains(line, `policy="b"`) && strings.HasSuffix(line, "} 5") {
			found = true
		}
	}
	if !found {
		t.Errorf("metrics lack the rule at line 6 with 5 packets:\n%s", text)
	}
	srv.stop(t)

	// audit: a policy that would deny a's datagrams lets them through and
	// reports each one
	auditDir := t.TempDir()
	auditSrc := filepath.Join(auditDir, "audit.pol")
	if err := os.WriteFile(auditSrc, []byte("policy b-next audit {\n  select app=b\n  ingress deny from app=a on udp/5353\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := strings.TrimSuffix(policy(""), ".bundle")
	auditBundle := filepath.Join(auditDir, "bundle")
	if code, _, stderr := runPolc(t, "build", "-o", auditBundle, base, auditSrc); code != exitOK {
		t.Fatalf("build with the audit policy: %s", stderr)
	}
	if code, _, stderr := runPolc(t, "apply", "--root", root, "mon", auditBundle); code != exitOK {
		t.Fatalf("apply: %s", stderr)
	}
	mon, _ = startPolc(t, "monitoring", "monitor", "--root", root, "-o", "json", "--verdict", "audit")
	for i := range n {
		sendUDPPayload(t, a.NS, netnstest.EndpointV4(0), netnstest.EndpointV4(1), 5353, fmt.Sprintf("audited %d", i))
	}
	deadline := time.Now().Add(5 * time.Second)
	for !udpLog.Got(fmt.Sprintf("audited %d", n-1)) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for i := range n {
		if !udpLog.Got(fmt.Sprintf("audited %d", i)) {
			t.Errorf("datagram %d did not reach b: audit must not drop", i)
		}
	}
	time.Sleep(300 * time.Millisecond)
	mon.stop(t)
	audited := 0
	for _, line := range strings.Split(strings.TrimSpace(mon.stdout.String()), "\n") {
		var ev monitorEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("monitor printed %q: %v", line, err)
		}
		if ev.Verdict == "audit" && ev.Endpoint == "b" && ev.Audit != nil && ev.Audit.Line == 3 && strings.HasSuffix(ev.Audit.File, "audit.pol") &&
			ev.Audit.Policy == "b-next" && ev.Rule.Line == 5 {
			audited++
		}
	}
	if audited != n {
		t.Errorf("monitor reported %d audit events, want %d:\n%s", audited, n, mon.stdout.String())
	}
	code, stdout, _ := runPolc(t, "status", "--root", root, "--rules", "mon", "-o", "json")
	var rcs []runtime.RuleCount
	if code != exitOK || json.Unmarshal([]byte(stdout), &rcs) != nil {
		t.Fatalf("status --rules: %d %q", code, stdout)
	}
	for _, r := range rcs {
		if r.Policy == "b-next" && (r.Packets != n || r.Verdict != "audit") {
			t.Errorf("audit rule: %d packets, verdict %q; want %d, audit", r.Packets, r.Verdict, n)
		}
	}
}
