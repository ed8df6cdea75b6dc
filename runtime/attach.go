package runtime

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/polc-dev/polc/compiler/bundle"
)

// TCMode chooses how tc programs are attached.
type TCMode string

const (
	TCAuto    TCMode = ""        // tcx where the kernel has it, else netlink
	TCForceX  TCMode = "tcx"     // tcx or fail
	TCNetlink TCMode = "netlink" // clsact qdisc + bpf filter (what kernels before 6.6 have)
)

// tcFilterPriority and tcFilterHandle identify polc's clsact filter.
const (
	tcFilterPriority = 1
	tcFilterHandle   = 0x9011c
)

// tcxAttachType maps a tc hook to the host-side direction: packets an
// endpoint sends arrive on the host side's ingress, packets sent to it
// leave through the host side's egress.
func tcxAttachType(hook string) (ebpf.AttachType, bool) {
	switch hook {
	case bundle.HookEndpointEgress:
		return ebpf.AttachTCXIngress, true
	case bundle.HookEndpointIngress:
		return ebpf.AttachTCXEgress, true
	}
	return 0, false
}

// hookPinName is the short name of a hook in link pin names.
func hookPinName(hook string) string {
	switch hook {
	case bundle.HookEndpointEgress:
		return "tc-ingress"
	case bundle.HookEndpointIngress:
		return "tc-egress"
	case bundle.HookUplinkXDP:
		return "xdp"
	}
	return "unknown"
}

// attach attaches prog for a.Hook to a.Ifindex (in the calling thread's
// network namespace) and, for links, pins the link at pin. It fills a.Mode.
//
// A netlink tc filter holds its program by itself and leaves no pin that
// recovery could find, so for one attach first calls record (when not
// nil), which must commit the attachment: a kill after installing the
// filter then leaves it recorded (apply switches it, unload deletes it),
// and a kill before leaves a record of a filter that is not there, which
// is harmless (not live; deleting it succeeds). A pinned link needs no
// record first: recovery detaches link pins the state does not list.
func attach(a *Attachment, prog *ebpf.Program, pin string, mode TCMode, record func(*Attachment) error) error {
	if a.Hook == bundle.HookUplinkXDP {
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: a.Ifindex})
		if err != nil {
			return fmt.Errorf("attach XDP to %s: %w", a.Iface, err)
		}
		a.Mode = ModeXDP
		return pinLink(l, pin)
	}
	at, ok := tcxAttachType(a.Hook)
	if !ok {
		return fmt.Errorf("unknown hook %q", a.Hook)
	}
	if mode != TCNetlink {
		l, err := link.AttachTCX(link.TCXOptions{Interface: a.Ifindex, Program: prog, Attach: at})
		if err == nil {
			a.Mode = ModeTCX
			return pinLink(l, pin)
		}
		if !errors.Is(err, ebpf.ErrNotSupported) || mode == TCForceX {
			return fmt.Errorf("attach tcx %s to %s: %w", hookPinName(a.Hook), a.Iface, err)
		}
	}
	a.Mode = ModeTC
	a.Link = ""
	if record != nil {
		if err := record(a); err != nil {
			return err
		}
	}
	return tcFilterReplace(a, prog)
}

func pinLink(l link.Link, pin string) error {
	defer l.Close()
	_ = os.Remove(pin) // a stale pin from an interrupted run
	if err := l.Pin(pin); err != nil {
		return fmt.Errorf("pin link %s: %w", pin, err)
	}
	return nil
}

func tcParent(hook string) uint32 {
	if hook == bundle.HookEndpointIngress {
		return netlink.HANDLE_MIN_EGRESS
	}
	return netlink.HANDLE_MIN_INGRESS
}

// tcFilterReplace installs or atomically replaces polc's bpf filter (the
// kernel swaps the filter's program in one step).
func tcFilterReplace(a *Attachment, prog *ebpf.Program) error {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: a.Ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	if err := netlink.QdiscAdd(qdisc); err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("add clsact qdisc to %s: %w", a.Iface, err)
	}
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: a.Ifindex, Parent: tcParent(a.Hook), Handle: tcFilterHandle,
			Protocol: unix.ETH_P_ALL, Priority: tcFilterPriority,
		},
		Fd: prog.FD(), Name: "polc", DirectAction: true,
	}
	if err := netlink.FilterReplace(f); err != nil {
		return fmt.Errorf("tc filter %s on %s: %w", hookPinName(a.Hook), a.Iface, err)
	}
	return nil
}

// tcFilterState finds polc's filter for a (in the calling thread's
// network namespace): the program it runs, or live false when the filter,
// its clsact qdisc or its interface is gone.
func tcFilterState(a *Attachment) (ebpf.ProgramID, bool, error) {
	ifc := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: a.Ifindex}}
	filters, err := netlink.FilterList(ifc, tcParent(a.Hook))
	if err != nil {
		if errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EINVAL) {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("list tc filters of %s: %w", a.Iface, err)
	}
	for _, f := range filters {
		if bf, ok := f.(*netlink.BpfFilter); ok && bf.Handle == tcFilterHandle && bf.Priority == tcFilterPriority {
			return ebpf.ProgramID(bf.Id), true, nil
		}
	}
	return 0, false, nil
}

func tcFilterDel(a *Attachment) error {
	f := &netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{
		LinkIndex: a.Ifindex, Parent: tcParent(a.Hook), Handle: tcFilterHandle,
		Protocol: unix.ETH_P_ALL, Priority: tcFilterPriority,
	}}
	err := netlink.FilterDel(f)
	if err != nil && (errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.EINVAL)) {
		return nil
	}
	return err
}

// switchProgram makes an attachment run prog: an atomic link update for
// tcx and XDP, a filter replace for netlink tc.
func switchProgram(p pins, a *Attachment, prog *ebpf.Program) error {
	if a.Mode == ModeTC {
		// A filter is found by ifindex, which means something else in
		// another namespace.
		if ns := currentNetns(); ns != a.Netns {
			return fmt.Errorf("%w: %s on %s is a netlink tc filter in network namespace %d: run polc there (this is %d)", ErrOtherNetns, a.Hook, a.Iface, a.Netns, ns)
		}
		return tcFilterReplace(a, prog)
	}
	l, err := link.LoadPinnedLink(linkPin(p, a), nil)
	if err != nil {
		return fmt.Errorf("open link %s: %w", a.Link, err)
	}
	defer l.Close()
	if err := l.Update(prog); err != nil {
		return fmt.Errorf("update link %s: %w", a.Link, err)
	}
	return nil
}

// linkState describes a pinned link: the program it runs and whether its
// interface still exists. For a netlink tc filter it looks the filter up
// (live: it is still there); a filter in another network namespace cannot
// be seen by ifindex from here and is reported live, program unknown (0).
func linkState(p pins, a *Attachment) (prog ebpf.ProgramID, live bool, err error) {
	if a.Mode == ModeTC {
		if currentNetns() != a.Netns {
			return 0, netnsAlive(a.Netns), nil
		}
		return tcFilterState(a)
	}
	l, err := link.LoadPinnedLink(linkPin(p, a), nil)
	if err != nil {
		return 0, false, err
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return 0, false, err
	}
	switch {
	case info.TCX() != nil:
		live = info.TCX().Ifindex != 0
	case info.XDP() != nil:
		live = info.XDP().Ifindex != 0
	}
	return info.Program, live, nil
}

// detach removes an attachment: unpins and detaches its link, or deletes
// its tc filter. An attachment already gone is not an error.
func detach(p pins, a *Attachment) error {
	if a.Mode == ModeTC {
		if ns := currentNetns(); ns != a.Netns {
			if !netnsAlive(a.Netns) {
				return nil // the namespace, its interfaces and filters are gone
			}
			return fmt.Errorf("%w: %s on %s is a netlink tc filter in network namespace %d: run polc there (this is %d)", ErrOtherNetns, a.Hook, a.Iface, a.Netns, ns)
		}
		return tcFilterDel(a)
	}
	l, err := link.LoadPinnedLink(linkPin(p, a), nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open link %s: %w", a.Link, err)
	}
	defer l.Close()
	if err := l.Detach(); err != nil && !errors.Is(err, ebpf.ErrNotSupported) && !errors.Is(err, syscall.ENOLINK) {
		return fmt.Errorf("detach %s: %w", a.Link, err)
	}
	return l.Unpin()
}

func linkPin(p pins, a *Attachment) string { return p.dir() + "/" + a.Link }

// currentNetns is the inode of the calling thread's network namespace.
func currentNetns() uint64 {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return 0
	}
	return st.Ino
}

// netnsAlive reports whether the network namespace with inode ino can
// still be found: a thread in it, a descriptor of it, or an nsfs mount of
// it (ip netns, container runtimes) in any mount namespace. A namespace
// none of these holds has been deleted with its interfaces and filters.
func netnsAlive(ino uint64) bool {
	want := fmt.Sprintf("net:[%d]", ino)
	procs, _ := os.ReadDir("/proc")
	seenMntns := map[string]bool{}
	for _, pe := range procs {
		pid := pe.Name()
		if pid[0] < '0' || pid[0] > '9' {
			continue
		}
		base := "/proc/" + pid
		tasks, _ := os.ReadDir(base + "/task")
		for _, te := range tasks {
			if l, _ := os.Readlink(base + "/task/" + te.Name() + "/ns/net"); l == want {
				return true
			}
		}
		fds, _ := os.ReadDir(base + "/fd")
		for _, fe := range fds {
			if l, _ := os.Readlink(base + "/fd/" + fe.Name()); l == want {
				return true
			}
		}
		mntns, _ := os.Readlink(base + "/ns/mnt")
		if mntns == "" || seenMntns[mntns] {
			continue
		}
		seenMntns[mntns] = true
		mi, err := os.ReadFile(base + "/mountinfo")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(mi), "\n") {
			// ID PARENT MAJ:MIN ROOT MOUNTPOINT ... - FSTYPE SOURCE ...
			pre, post, ok := strings.Cut(line, " - ")
			if !ok || !strings.HasPrefix(post, "nsfs ") {
				continue
			}
			if f := strings.Fields(pre); len(f) > 3 && f[3] == want {
				return true
			}
		}
	}
	return false
}

// membarrierCmdGlobal is MEMBARRIER_CMD_GLOBAL, which the kernel
// implements with synchronize_rcu().
const membarrierCmdGlobal = 1

// waitForInFlight returns once every packet that started in a program
// before the last link switch has left it. tc and XDP programs run inside
// an RCU read-side section, so one RCU grace period is enough. It matters
// before unpinning a replaced generation: when a PROG_ARRAY loses its last
// pin the kernel empties it, and a packet still in the old entry program
// would find its tail-call slots empty.
func waitForInFlight() {
	if _, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, membarrierCmdGlobal, 0, 0); errno != 0 {
		time.Sleep(50 * time.Millisecond) // far longer than any packet takes
	}
}

// InterfaceByName finds an interface of the calling thread's network
// namespace by name with one targeted netlink request. (net.InterfaceByName
// dumps every interface of the namespace, so attaching each of n
// interfaces would cost n²; a node has thousands.)
func InterfaceByName(name string) (*net.Interface, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, errors.New("no such network interface")
		}
		return nil, err
	}
	return &net.Interface{Index: l.Attrs().Index, Name: l.Attrs().Name}, nil
}

// interfaceByIndex is InterfaceByName by index.
func interfaceByIndex(index int) (*net.Interface, error) {
	l, err := netlink.LinkByIndex(index)
	if err != nil {
		return nil, err
	}
	return &net.Interface{Index: l.Attrs().Index, Name: l.Attrs().Name}, nil
}
