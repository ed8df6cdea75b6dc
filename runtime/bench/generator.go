package bench

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/polc-dev/polc/runtime/netnstest"
	"golang.org/x/sys/unix"
)

// batch is how many frames one sendmmsg call carries.
const batch = 64

// Generator sends prebuilt frames out of one interface through an
// AF_PACKET socket. It does not bypass the qdisc layer, so the frames go
// through the interface's tc (tcx) egress hook like any other packet.
type Generator struct {
	fd       int
	cpu      int
	softirqd int // pid of ksoftirqd/cpu
}

// NewGenerator opens the generator's socket on ifname in ns. The sending
// thread will be pinned to cpu.
func NewGenerator(ns *netnstest.NS, ifname string, cpu int) (*Generator, error) {
	g := &Generator{fd: -1, cpu: cpu, softirqd: ksoftirqd(cpu)}
	err := ns.Do(func() error {
		ifi, err := netInterfaceIndex(ifname)
		if err != nil {
			return err
		}
		// Protocol 0: the socket receives nothing, so it is no tap
		// on the interface and costs the traffic nothing.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind AF_PACKET to %s: %w", ifname, err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20); err != nil {
			unix.Close(fd)
			return err
		}
		g.fd = fd
		return nil
	})
	return g, err
}

// Close closes the socket.
func (g *Generator) Close() error {
	if g.fd < 0 {
		return nil
	}
	err := unix.Close(g.fd)
	g.fd = -1
	return err
}

// Cost is what sending a burst took.
type Cost struct {
	Packets int
	CPU     time.Duration // the sending thread's CPU time (user, system and softirq run on it)
	Wall    time.Duration
	Drops   int // frames the sender's own interface dropped (tc egress)
	// Deferred is the CPU time ksoftirqd of the generator's CPU ran
	// while the burst was sent and drained: receive work the kernel
	// deferred from the sending thread (see Rig.Send).
	Deferred time.Duration
}

// NsPerPacket is CPU nanoseconds per packet.
func (c Cost) NsPerPacket() float64 {
	return float64((c.CPU + c.Deferred).Nanoseconds()) / float64(c.Packets)
}

// ksoftirqd returns the pid of ksoftirqd/cpu, or 0.
func ksoftirqd(cpu int) int {
	want := fmt.Sprintf("ksoftirqd/%d\n", cpu)
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid > 1<<16 {
			continue
		}
		if b, err := os.ReadFile("/proc/" + d.Name() + "/comm"); err == nil && string(b) == want {
			return pid
		}
	}
	return 0
}

// taskRuntime is a task's CPU time from its schedstat, in nanoseconds.
func taskRuntime(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseInt(f[0], 10, 64)
	return time.Duration(v)
}

type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// Send sends every frame once, from a thread pinned to the generator's
// CPU, and returns the thread's CPU time and the wall time for it.
func (g *Generator) Send(f *Frames) (Cost, error) {
	n := f.Len()
	iovs := make([]unix.Iovec, n)
	hdrs := make([]mmsghdr, n)
	for i := range n {
		fr := f.Frame(i)
		iovs[i].Base = &fr[0]
		iovs[i].SetLen(len(fr))
		hdrs[i].hdr.Iov = &iovs[i]
		hdrs[i].hdr.SetIovlen(1)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return Cost{}, err
	}
	one.Set(g.cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		return Cost{}, fmt.Errorf("pin to cpu %d: %w", g.cpu, err)
	}
	defer unix.SchedSetaffinity(0, &old)
	runtime.Gosched() // let the migration happen before the clock starts

	cpu0, err := threadCPU()
	if err != nil {
		return Cost{}, err
	}
	wall0 := time.Now()
	drops := 0
	for off := 0; off < n; {
		k := min(batch, n-off)
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(g.fd), uintptr(unsafe.Pointer(&hdrs[off])), uintptr(k), 0, 0, 0)
		if errno == unix.EINTR || errno == unix.EAGAIN {
			continue
		}
		if errno == unix.ENOBUFS {
			// The first frame was dropped on the way out (a tc
			// filter's verdict): it is sent, and gone.
			drops++
			off++
			continue
		}
		if errno != 0 {
			return Cost{}, fmt.Errorf("sendmmsg: %w", errno)
		}
		off += int(r)
	}
	wall := time.Since(wall0)
	cpu1, err := threadCPU()
	if err != nil {
		return Cost{}, err
	}
	runtime.KeepAlive(iovs)
	runtime.KeepAlive(f)
	return Cost{Packets: n, CPU: cpu1 - cpu0, Wall: wall, Drops: drops}, nil
}

func threadCPU() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, err
	}
	return time.Duration(ts.Nano()), nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
