package main

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/runtime"
	"github.com/polc-dev/polc/runtime/packet"
)

// BenchmarkMonitor measures how many events polc monitor (-o json, the
// costlier output) takes per second. The datapath's own ingress program
// drops a packet again and again under BPF_PROG_TEST_RUN, so that every
// run is one event in the bundle's ring buffer; the monitor reads,
// names and prints them (to io.Discard). "paced" sends 1 000 events every
// 10 ms (100 000/s) and reports what was lost (must be 0); "flood" sends
// as fast as the kernel can and reports the rate monitor kept up with
// and the share it lost (docs/performance.md).
func BenchmarkMonitor(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	dir := b.TempDir()
	src := filepath.Join(dir, "p.pol")
	if err := os.WriteFile(src, []byte("endpoint a labels(app=a) addr 10.9.0.1\nendpoint b labels(app=b) addr 10.9.0.2\npolicy b { select app=b\n  ingress allow from app=a on udp/53 }\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	var out, errOut nopBuf
	if code := run([]string{"build", "-o", filepath.Join(dir, "bundle"), src}, &out, &errOut); code != exitOK {
		b.Fatalf("build: %s", errOut)
	}
	root := filepath.Join(runtime.BPFFSMount, fmt.Sprintf("polc-monbench-%d-%06x", os.Getpid(), rand.IntN(1<<24)))
	defer os.RemoveAll(root)
	if code := run([]string{"load", "--root", root, "--name", "mb", filepath.Join(dir, "bundle")}, &out, &errOut); code != exitOK {
		b.Fatalf("load: %s", errOut)
	}
	defer run([]string{"unload", "--root", root, "mb"}, &out, &errOut)
	gen := filepath.Join(root, "mb", "gen-1")
	prog, err := ebpf.LoadPinnedProgram(filepath.Join(gen, "progs", bpf.ProgEndpointIngress), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer prog.Close()
	// BPF_PROG_TEST_RUN runs on loopback (ifindex 1): bind it to b in
	// this bundle's own map (nothing is attached to it)
	ifaces, err := ebpf.LoadPinnedMap(filepath.Join(gen, "maps", bpf.MapIfaceEndpoints), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ifaces.Close()
	if err := ifaces.Put(uint32(1), bpf.IfaceValue{Endpoint: 2}); err != nil { // b: index 2
		b.Fatal(err)
	}
	frame := packet.Build(packet.Spec{Proto: ir.ProtoUDP, Src: netip.MustParseAddr("10.9.0.1"), Dst: netip.MustParseAddr("10.9.0.2"), SPort: 4000, DPort: 54})
	h := runtime.NewHost()
	h.Root = root
	for _, c := range []struct {
		name  string
		burst uint32
		pace  time.Duration
	}{{"paced-100k", 1000, 10 * time.Millisecond}, {"flood", 10000, 0}} {
		b.Run(c.name, func(b *testing.B) {
			m, err := h.Monitor("mb")
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			lost0, _ := m.Lost()
			w := bufio.NewWriterSize(io.Discard, 64<<10)
			r := &monitorRun{m: m, w: w, json: true}
			done := make(chan struct{})
			finished := make(chan error, 1)
			go func() { finished <- r.loop(done) }()
			const total = 400_000
			start := time.Now()
			next := start
			for sent := uint32(0); sent < total; sent += c.burst {
				if _, err := prog.Run(&ebpf.RunOptions{Data: frame, Repeat: c.burst}); err != nil {
					b.Fatal(err)
				}
				if c.pace > 0 {
					next = next.Add(c.pace)
					time.Sleep(time.Until(next))
				}
			}
			sending := time.Since(start)
			// let the monitor drain what is left
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				lost, _ := m.Lost()
				if uint64(r.seen)+lost-lost0 >= total {
					break
				}
			}
			elapsed := time.Since(start)
			close(done)
			if err := <-finished; err != nil {
				b.Fatal(err)
			}
			lost, _ := m.Lost()
			b.ReportMetric(float64(total)/sending.Seconds(), "sent/s")
			b.ReportMetric(float64(r.seen)/elapsed.Seconds(), "read/s")
			b.ReportMetric(float64(lost-lost0), "lost")
			if c.pace > 0 && lost != lost0 {
				b.Errorf("lost %d events at 100 000/s", lost-lost0)
			}
		})
	}
}

type nopBuf struct{ s string }

func (n *nopBuf) Write(p []byte) (int, error) { n.s += string(p); return len(p), nil }
func (n nopBuf) String() string               { return n.s }
