// Package netnstest builds throwaway network topologies for end-to-end
// tests: uniquely named network namespaces joined by veth pairs, with
// addresses from 10.0.0.0/8 and fd00::/8 that exist only inside those
// namespaces. Everything a test creates is removed by t.Cleanup on every
// path, and Sweep removes what a killed test process left behind.
//
// It sits beside the runtime: e2e tests attach polc bundles to the veths
// of a Topology and send real TCP, UDP and ICMP between its endpoints.
package netnstest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Prefix starts the name of every namespace this package creates, followed
// by the creating process's pid, so that Sweep can tell leftovers of dead
// processes from namespaces a running test still uses.
const Prefix = "polct-"

// netnsDir is where iproute2 and vishvananda/netns bind-mount named
// namespaces.
const netnsDir = "/var/run/netns"

// NS is a named network namespace created by New.
type NS struct {
	Name   string
	Handle netns.NsHandle
}

// RequireRoot skips the test when it cannot create namespaces, unless the
// environment variable CI is set, in which case it fails: CI runs as root
// and must never skip these tests silently.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("end-to-end tests need root (CI=%s is set, so they may not be skipped)", os.Getenv("CI"))
	}
	t.Skip("end-to-end tests need root (set CI to make this a failure)")
}

// New creates a network namespace named Prefix<pid>-<random>-<role> with its
// loopback up, and registers its removal with t.Cleanup.
func New(t testing.TB, role string) *NS {
	t.Helper()
	name := fmt.Sprintf("%s%d-%06x-%s", Prefix, os.Getpid(), rand.IntN(1<<24), role)
	ns, err := create(name)
	if err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := ns.delete(); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	// Duplicate address detection would keep IPv6 addresses (link-local
	// ones too) tentative for seconds after interfaces come up.
	if err := ns.Do(func() error {
		for _, f := range []string{"/proc/sys/net/ipv6/conf/all/accept_dad", "/proc/sys/net/ipv6/conf/default/accept_dad"} {
			if err := os.WriteFile(f, []byte("0"), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("disable DAD in %s: %v", name, err)
	}
	h, err := netlink.NewHandleAt(ns.Handle)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("bring up lo in %s: %v", name, err)
	}
	return ns
}

func create(name string) (*NS, error) {
	// netns.NewNamed moves the calling thread into the new namespace; keep
	// the thread to ourselves and move it back before anyone else runs on it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	origin, err := netns.Get()
	if err != nil {
		return nil, err
	}
	defer origin.Close()
	h, err := netns.NewNamed(name)
	if err != nil {
		return nil, err
	}
	if err := netns.Set(origin); err != nil {
		// The thread is stuck in the wrong namespace: let it die with the
		// goroutine rather than return it to the scheduler.
		runtime.LockOSThread()
		h.Close()
		_ = netns.DeleteNamed(name)
		return nil, fmt.Errorf("return to the original netns: %w", err)
	}
	return &NS{Name: name, Handle: h}, nil
}

func (ns *NS) delete() error {
	if ns.Handle.IsOpen() {
		ns.Handle.Close()
	}
	err := netns.DeleteNamed(ns.Name)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Do runs fn on an OS thread that has joined the namespace. Sockets fn
// creates stay in the namespace and may be used from any goroutine after
// Do returns.
func (ns *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		origin, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer origin.Close()
		if err := netns.Set(ns.Handle); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", ns.Name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(origin); err != nil {
			// Leave the thread locked: Go ends it with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("leave netns %s: %w", ns.Name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Netlink returns a netlink handle bound to the namespace; close it.
func (ns *NS) Netlink() (*netlink.Handle, error) { return netlink.NewHandleAt(ns.Handle) }

// Veth creates a veth pair with end aIf in a and end bIf in b (both up).
// Interface names are per namespace, so tests may reuse them freely.
func Veth(t testing.TB, a *NS, aIf string, b *NS, bIf string) {
	t.Helper()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: aIf, Namespace: netlink.NsFd(a.Handle)},
		PeerName:      bIf,
		PeerNamespace: netlink.NsFd(b.Handle),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s/%s - %s/%s: %v", a.Name, aIf, b.Name, bIf, err)
	}
	for _, end := range []struct {
		ns *NS
		If string
	}{{a, aIf}, {b, bIf}} {
		if err := linkUp(end.ns, end.If); err != nil {
			t.Fatal(err)
		}
	}
}

func linkUp(ns *NS, ifname string) error {
	h, err := ns.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", ifname, ns.Name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up in %s: %w", ifname, ns.Name, err)
	}
	return nil
}

// AddAddr assigns a CIDR ("10.1.2.3/24", "fd00::1/64") to ifname in ns.
// IPv6 addresses skip duplicate address detection so they are usable at once.
func AddAddr(t testing.TB, ns *NS, ifname, cidr string) {
	t.Helper()
	if err := addAddr(ns, ifname, cidr); err != nil {
		t.Fatal(err)
	}
}

func addAddr(ns *NS, ifname, cidr string) error {
	h, err := ns.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", ifname, ns.Name, err)
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		return err
	}
	if addr.IP.To4() == nil {
		addr.Flags |= unix.IFA_F_NODAD
	}
	if err := h.AddrAdd(l, addr); err != nil {
		return fmt.Errorf("add %s to %s in %s: %w", cidr, ifname, ns.Name, err)
	}
	if addr.IP.To4() == nil && l.Attrs().Flags&net.FlagUp != 0 {
		return waitLocalRoute(h, addr.IP, ns.Name)
	}
	return nil
}

// waitLocalRoute waits until the kernel routes ip as local. An IPv6
// address, even without DAD, enters the local table from a work queue
// some time after RTM_NEWADDR returns: a FIB lookup (the datapath's
// bpf_fib_lookup, a test's packet) right after AddrAdd may not find it yet.
func waitLocalRoute(h *netlink.Handle, ip net.IP, ns string) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		routes, err := h.RouteGet(ip)
		if err == nil && len(routes) > 0 && routes[0].Type == unix.RTN_LOCAL {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s in %s: not routed as local 2 s after it was added (%v, %v)", ip, ns, routes, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Endpoint is one workload namespace of a Topology, joined to the host
// namespace by a veth pair.
type Endpoint struct {
	NS     *NS
	IfName string // the endpoint's side, "eth0"
	HostIf string // the host's side, in Topology.Host
	V4, V6 net.IP // the endpoint's addresses
	// HostV4 and HostV6 are the host side's addresses (the endpoint's gateway).
	HostV4, HostV6 net.IP
}

// Topology is a host namespace that routes between endpoint namespaces,
// the way a node routes between its pods: policy is enforced on the host's
// side of each endpoint's veth.
type Topology struct {
	Host      *NS
	Endpoints []*Endpoint
}

// EndpointV4 and EndpointV6 give the addresses Routed assigns to endpoint
// i (0-based), so tests can write policies before building the topology.
func EndpointV4(i int) net.IP { return net.IPv4(10, 201, byte(i+1), 2).To4() }

// EndpointV6 is EndpointV4's IPv6 counterpart.
func EndpointV6(i int) net.IP { return net.ParseIP(fmt.Sprintf("fd00:201:%d::2", i+1)) }

// Option changes how Routed builds a topology.
type Option func(*config)

type config struct{ staticNeighbors bool }

// StaticNeighbors adds permanent IPv6 neighbor entries on both sides of
// every veth, so that IPv6 traffic needs no neighbor discovery (ICMPv6
// 135/136) — for datapaths that police it.
func StaticNeighbors() Option { return func(c *config) { c.staticNeighbors = true } }

// Routed builds a host namespace and n endpoint namespaces. Endpoint i
// has eth0 with 10.201.<i+1>.2/24 and fd00:201:<i+1>::2/64 and default
// routes via the host side "pe<i>" (…1). The host forwards IPv4 and IPv6.
func Routed(t testing.TB, n int, opts ...Option) *Topology {
	t.Helper()
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	topo := &Topology{Host: New(t, "host")}
	if err := topo.Host.Do(func() error {
		for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
			if err := os.WriteFile(f, []byte("1"), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("enable forwarding: %v", err)
	}
	for i := range n {
		ep := &Endpoint{
			NS:     New(t, "ep"+strconv.Itoa(i)),
			IfName: "eth0",
			HostIf: "pe" + strconv.Itoa(i),
			V4:     EndpointV4(i),
			V6:     EndpointV6(i),
			HostV4: net.IPv4(10, 201, byte(i+1), 1).To4(),
			HostV6: net.ParseIP(fmt.Sprintf("fd00:201:%d::1", i+1)),
		}
		Veth(t, ep.NS, ep.IfName, topo.Host, ep.HostIf)
		AddAddr(t, ep.NS, ep.IfName, ep.V4.String()+"/24")
		AddAddr(t, ep.NS, ep.IfName, ep.V6.String()+"/64")
		AddAddr(t, topo.Host, ep.HostIf, ep.HostV4.String()+"/24")
		AddAddr(t, topo.Host, ep.HostIf, ep.HostV6.String()+"/64")
		if err := defaultRoutes(ep); err != nil {
			t.Fatal(err)
		}
		if cfg.staticNeighbors {
			if err := staticNeighbors(topo.Host, ep); err != nil {
				t.Fatal(err)
			}
		}
		topo.Endpoints = append(topo.Endpoints, ep)
	}
	// Wait until every endpoint reaches its gateway over both families:
	// links come up and neighbors resolve asynchronously, and a test's
	// first packet must not race them.
	for _, ep := range topo.Endpoints {
		for _, gw := range []net.IP{ep.HostV4, ep.HostV6} {
			var err error
			for range 20 {
				if err = Ping(ep.NS, gw, 250*time.Millisecond); err == nil {
					break
				}
			}
			if err != nil {
				t.Fatalf("%s cannot reach its gateway %s: %v", ep.NS.Name, gw, err)
			}
		}
	}
	return topo
}

func defaultRoutes(ep *Endpoint) error {
	h, err := ep.NS.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(ep.IfName)
	if err != nil {
		return err
	}
	for _, gw := range []net.IP{ep.HostV4, ep.HostV6} {
		if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw}); err != nil {
			return fmt.Errorf("default route via %s in %s: %w", gw, ep.NS.Name, err)
		}
	}
	return nil
}

func staticNeighbors(host *NS, ep *Endpoint) error {
	epH, err := ep.NS.Netlink()
	if err != nil {
		return err
	}
	defer epH.Close()
	hostH, err := host.Netlink()
	if err != nil {
		return err
	}
	defer hostH.Close()
	epLink, err := epH.LinkByName(ep.IfName)
	if err != nil {
		return err
	}
	hostLink, err := hostH.LinkByName(ep.HostIf)
	if err != nil {
		return err
	}
	for _, n := range []struct {
		h    *netlink.Handle
		on   netlink.Link
		ip   net.IP
		peer netlink.Link
	}{{epH, epLink, ep.HostV6, hostLink}, {hostH, hostLink, ep.V6, epLink}} {
		if err := n.h.NeighSet(&netlink.Neigh{
			LinkIndex: n.on.Attrs().Index, Family: netlink.FAMILY_V6, State: netlink.NUD_PERMANENT,
			IP: n.ip, HardwareAddr: n.peer.Attrs().HardwareAddr,
		}); err != nil {
			return fmt.Errorf("static neighbor %s: %w", n.ip, err)
		}
	}
	return nil
}

// Sweep deletes namespaces this package created in processes that no
// longer run (a test killed before its cleanup). It returns their names.
func Sweep() ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		name := e.Name()
		rest, ok := strings.CutPrefix(name, Prefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || processAlive(pid) {
			continue
		}
		if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("%s: %w", filepath.Join(netnsDir, name), err))
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
