package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/polc-dev/polc/runtime/netnstest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// IfName is the name of both ends of a rig's veth.
const IfName = "eth0"

// Rig is one generator namespace and one sink namespace joined by a veth
// pair. Each configuration gets its own rig, so their filters never meet
// and all of them can stay installed while rounds interleave.
type Rig struct {
	Gen, Sink       *netnstest.NS
	GenMAC, SinkMAC net.HardwareAddr
	Generator       *Generator
	sinkFD          int
	drained         uint64 // datagrams read from the sink's socket
}

// NewRig builds a rig; t.Cleanup removes it (deleting a namespace removes
// its netfilter rules, sets and conntrack table with it).
func NewRig(t testing.TB, cpu int) *Rig {
	t.Helper()
	r := &Rig{Gen: netnstest.New(t, "bgen"), Sink: netnstest.New(t, "bsink"), sinkFD: -1}
	for _, ns := range []*netnstest.NS{r.Gen, r.Sink} {
		// No IPv6: no router solicitations or MLD reports in the bursts.
		if err := ns.Do(func() error {
			return os.WriteFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", []byte("1"), 0o644)
		}); err != nil {
			t.Fatal(err)
		}
	}
	netnstest.Veth(t, r.Gen, IfName, r.Sink, IfName)
	netnstest.AddAddr(t, r.Gen, IfName, GenAddr.String()+"/24")
	netnstest.AddAddr(t, r.Sink, IfName, SinkAddr.String()+"/24")
	if err := r.wire(); err != nil {
		t.Fatal(err)
	}
	g, err := NewGenerator(r.Gen, IfName, cpu)
	if err != nil {
		t.Fatal(err)
	}
	r.Generator = g
	t.Cleanup(func() { g.Close() })
	if err := r.Sink.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		// Never read: after the first few datagrams each one is dropped
		// at the full receive queue, the same cost for every config.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: SinkPort}); err != nil {
			unix.Close(fd)
			return err
		}
		r.sinkFD = fd
		return nil
	}); err != nil {
		t.Fatalf("sink socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(r.sinkFD) })
	return r
}

// wire reads the MACs, adds static neighbours both ways (the sink's
// replies must not wait on ARP) and routes FlowNet back to the generator.
func (r *Rig) wire() error {
	gh, err := r.Gen.Netlink()
	if err != nil {
		return err
	}
	defer gh.Close()
	sh, err := r.Sink.Netlink()
	if err != nil {
		return err
	}
	defer sh.Close()
	gl, err := gh.LinkByName(IfName)
	if err != nil {
		return err
	}
	sl, err := sh.LinkByName(IfName)
	if err != nil {
		return err
	}
	r.GenMAC, r.SinkMAC = gl.Attrs().HardwareAddr, sl.Attrs().HardwareAddr
	if err := gh.NeighSet(&netlink.Neigh{LinkIndex: gl.Attrs().Index, Family: netlink.FAMILY_V4,
		State: netlink.NUD_PERMANENT, IP: SinkAddr.AsSlice(), HardwareAddr: r.SinkMAC}); err != nil {
		return fmt.Errorf("neighbour in gen: %w", err)
	}
	if err := sh.NeighSet(&netlink.Neigh{LinkIndex: sl.Attrs().Index, Family: netlink.FAMILY_V4,
		State: netlink.NUD_PERMANENT, IP: GenAddr.AsSlice(), HardwareAddr: r.GenMAC}); err != nil {
		return fmt.Errorf("neighbour in sink: %w", err)
	}
	_, flowNet, _ := net.ParseCIDR("10.99.0.0/16")
	if err := sh.RouteAdd(&netlink.Route{LinkIndex: sl.Attrs().Index, Dst: flowNet, Gw: GenAddr.AsSlice()}); err != nil {
		return fmt.Errorf("route to the flows in sink: %w", err)
	}
	return nil
}

// Delivered counts the datagrams that reached the sink's UDP layer: what
// no filter dropped. The socket is drained first; what it held is counted
// with the datagrams its full queue dropped and those for other ports.
// (InDatagrams counts at recvmsg, not on arrival, so it is not used.)
func (r *Rig) Delivered() (uint64, error) {
	buf := make([]byte, 64)
	for {
		_, _, err := unix.Recvfrom(r.sinkFD, buf, unix.MSG_DONTWAIT)
		if err != nil {
			break
		}
		r.drained++
	}
	n := r.drained
	err := r.Sink.Do(func() error {
		b, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		var names []string
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 0 || f[0] != "Udp:" {
				continue
			}
			if names == nil {
				names = f[1:]
				continue
			}
			for i, name := range names {
				switch name {
				case "NoPorts", "InErrors":
					v, err := strconv.ParseUint(f[i+1], 10, 64)
					if err != nil {
						return err
					}
					n += v
				}
			}
		}
		if names == nil {
			return fmt.Errorf("no Udp counters in /proc/net/snmp")
		}
		return nil
	})
	return n, err
}

// Send sends frames and waits until the sink has taken in want of them
// (or its count has stopped moving), so that receive work the kernel
// deferred to ksoftirqd is done and counted in Cost.Deferred. It returns
// the cost and how many of the frames the sink's UDP layer received.
func (r *Rig) Send(f *Frames, want int) (Cost, int, error) {
	before, err := r.Delivered()
	if err != nil {
		return Cost{}, 0, err
	}
	soft0 := taskRuntime(r.Generator.softirqd)
	c, err := r.Generator.Send(f)
	if err != nil {
		return c, 0, err
	}
	got, still := 0, 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		now, err := r.Delivered()
		if err != nil {
			return c, 0, err
		}
		n := int(now - before)
		if n >= want && want > 0 {
			got = n
			break
		}
		if n == got {
			still++
		} else {
			still = 0
		}
		got = n
		// 100 ms without progress: a starved ksoftirqd is slower
		// than that only on a badly overloaded machine.
		if still >= 20 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.Deferred = taskRuntime(r.Generator.softirqd) - soft0
	return c, got, nil
}

// Reply sends one datagram from the sink's socket to each flow's source,
// so that netfilter's conntrack sees the flows answered (established).
func (r *Rig) Reply(flows []Flow) error {
	for _, f := range flows {
		a := f.Src.As4()
		if err := unix.Sendto(r.sinkFD, []byte("r"), 0, &unix.SockaddrInet4{Port: int(f.Sport), Addr: a}); err != nil {
			return fmt.Errorf("reply to %s:%d: %w", f.Src, f.Sport, err)
		}
	}
	return nil
}

// FlushConntrack empties the sink's netfilter conntrack table.
func (r *Rig) FlushConntrack() error {
	h, err := r.Sink.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	if err := h.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
		return fmt.Errorf("flush conntrack in %s: %w", r.Sink.Name, err)
	}
	return nil
}

// InSink runs a command in the sink namespace with stdin.
func (r *Rig) InSink(stdin []byte, name string, args ...string) error {
	cmd := exec.Command("ip", append([]string{"netns", "exec", r.Sink.Name, name}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s in %s: %w\n%s", name, strings.Join(args, " "), r.Sink.Name, err, firstLines(out, 10))
	}
	return nil
}

func firstLines(b []byte, n int) string {
	lines := strings.SplitN(string(b), "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

func netInterfaceIndex(name string) (int, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return 0, err
	}
	return ifi.Index, nil
}
