package harness

import (
	"fmt"
	"net"
	"os"
	goruntime "runtime"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// hostThread runs the harness's program runs on one OS thread inside a
// network namespace of its own, so that what the datapath asks the
// kernel's FIB (is a neighbour discovery destination the host's own
// address?) does not depend on the machine polc runs on. The namespace
// is a host that forwards, has no address but loopback's and routes
// everything out of one uplink: every global address is off the link, as
// the reference evaluator assumes. BPF_PROG_TEST_RUN runs tc programs on
// the namespace's loopback device (testIfindex).
type hostThread struct {
	work chan func()
}

func newHostThread() (*hostThread, error) {
	h := &hostThread{work: make(chan func())}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: when the goroutine ends the thread ends, and
		// the namespace with it.
		goruntime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("network namespace for the harness: %w", err)
			return
		}
		if err := setUpHarnessHost(); err != nil {
			errc <- fmt.Errorf("network namespace for the harness: %w", err)
			return
		}
		errc <- nil
		for f := range h.work {
			f()
		}
	}()
	if err := <-errc; err != nil {
		return nil, err
	}
	return h, nil
}

// setUpHarnessHost configures the calling thread's (new) namespace.
func setUpHarnessHost() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return err
	}
	for _, f := range []string{"/proc/sys/net/ipv6/conf/all/forwarding", "/proc/sys/net/ipv4/ip_forward"} {
		if err := os.WriteFile(f, []byte("1"), 0o644); err != nil {
			return err
		}
	}
	up := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink"}, PeerName: "uplink-peer"}
	if err := netlink.LinkAdd(up); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(up); err != nil {
		return err
	}
	for _, d := range []string{"::/0", "0.0.0.0/0"} {
		_, dst, _ := net.ParseCIDR(d)
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Dst: dst}); err != nil {
			return err
		}
	}
	return nil
}

// do runs f on the namespace's thread and waits for it.
func (h *hostThread) do(f func()) {
	done := make(chan struct{})
	h.work <- func() { f(); close(done) }
	<-done
}

func (h *hostThread) close() { close(h.work) }
