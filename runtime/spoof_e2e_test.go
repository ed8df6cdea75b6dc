package runtime

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/runtime/netnstest"
	"github.com/polc-dev/polc/runtime/packet"
)

// The anti-spoofing world: web, evil and api behind routed veths, each
// veth bound to its endpoint. api accepts web only, on port 9000 (udp and
// tcp) and echo requests.
type spoofWorld struct {
	topo           *netnstest.Topology
	web, evil, api *netnstest.Endpoint
	host           *Host
	name           string
	recv           *netnstest.UDPLog // api's udp/9000
}

const spoofPort = 9000

func newSpoofWorld(t *testing.T) *spoofWorld {
	netnstest.RequireRoot(t)
	h := testHost(t)
	h.ParseObject = nil
	topo := netnstest.Routed(t, 3)
	w := &spoofWorld{topo: topo, web: topo.Endpoints[0], evil: topo.Endpoints[1], api: topo.Endpoints[2], host: h, name: "spoof"}
	src := fmt.Sprintf(`endpoint web  labels(app=web)  addr %s, %s
endpoint evil labels(app=evil) addr %s, %s
endpoint api  labels(app=api)  addr %s, %s

policy api {
  select app=api
  ingress allow from app=web on udp/%d, tcp/%d, icmp type 8, icmpv6 type 128
}
`, w.web.V4, w.web.V6, w.evil.V4, w.evil.V6, w.api.V4, w.api.V6, spoofPort, spoofPort)
	loadAttached(t, h, topo, w.name, src, []string{"web", "evil", "api"})
	netnstest.ServeTCP(t, w.api.NS, spoofPort)
	w.recv = netnstest.ServeUDPLog(t, w.api.NS, spoofPort)
	return w
}

// eventLog collects the drop events of a loaded bundle.
type eventLog struct {
	mu     sync.Mutex
	events []bpf.Event
	stop   func()
}

func watchEvents(t *testing.T, h *Host, name string) *eventLog {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(h.pins(name).shared()+"/"+bpf.MapEvents, nil)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := ringbuf.NewReader(m)
	m.Close()
	if err != nil {
		t.Fatal(err)
	}
	l := &eventLog{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var rec ringbuf.Record
		for {
			if err := bpf.ReadEvent(rd, &rec, time.Time{}); err != nil {
				return
			}
			var e bpf.Event
			if _, err := binary.Decode(rec.RawSample, binary.NativeEndian, &e); err != nil {
				continue
			}
			l.mu.Lock()
			l.events = append(l.events, e)
			l.mu.Unlock()
		}
	}()
	l.stop = func() { rd.Close(); <-done }
	t.Cleanup(l.stop)
	return l
}

// count is the number of drops with rule rule of protocol proto from src
// to dst seen so far.
func (l *eventLog) count(rule ir.RuleID, proto uint8, src, dst net.IP) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		s, d := eventAddr(e.Saddr, e.Family), eventAddr(e.Daddr, e.Family)
		if e.Rule == uint32(rule) && e.Verdict == bpf.VerdictDeny && e.Proto == proto && s.Equal(src) && d.Equal(dst) {
			n++
		}
	}
	return n
}

// countRule is the number of drops with rule rule seen so far.
func (l *eventLog) countRule(rule ir.RuleID) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		if e.Rule == uint32(rule) && e.Verdict == bpf.VerdictDeny {
			n++
		}
	}
	return n
}

func netlinkRoute(ifindex int, dst *net.IPNet) *netlink.Route {
	return &netlink.Route{LinkIndex: ifindex, Dst: dst}
}

func eventAddr(a [16]byte, family uint8) net.IP {
	if family == bpf.FamilyIPv4 {
		return net.IP(a[:4])
	}
	return net.IP(a[:])
}

// waitFor polls cond for up to two seconds.
func waitFor(cond func() bool) bool {
	for range 40 {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

// sendUDPFrom sends one datagram from ns with source address src (which
// must be on one of ns's interfaces) to dst:port.
func sendUDPFrom(ns *netnstest.NS, src, dst net.IP, port int, payload string) error {
	return ns.Do(func() error {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: src}, &net.UDPAddr{IP: dst, Port: port})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(payload))
		return err
	})
}

// dialTCPFrom tries to connect from ns with source address src.
func dialTCPFrom(ns *netnstest.NS, src, dst net.IP, port int, timeout time.Duration) error {
	return ns.Do(func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: timeout}
		c, err := d.Dial("tcp", net.JoinHostPort(dst.String(), strconv.Itoa(port)))
		if err == nil {
			c.Close()
		}
		return err
	})
}

// pingFrom sends one echo request from ns with source address src.
func pingFrom(ns *netnstest.NS, src, dst net.IP) error {
	return ns.Do(func() error {
		network, typ := "ip4:icmp", byte(8)
		if dst.To4() == nil {
			network, typ = "ip6:ipv6-icmp", 128
		}
		c, err := net.ListenPacket(network, src.String())
		if err != nil {
			return err
		}
		defer c.Close()
		msg := packet.Build(packet.Spec{Proto: icmpProto(dst), Src: addrOf(src), Dst: addrOf(dst), ICMPType: typ, ICMPID: 77, ICMPSeq: 1})
		l4 := msg[len(msg)-8:] // the echo header: type, code, checksum, id, seq
		_, err = c.WriteTo(l4, &net.IPAddr{IP: dst})
		return err
	})
}

func icmpProto(a net.IP) ir.Proto {
	if a.To4() == nil {
		return ir.ProtoICMPv6
	}
	return ir.ProtoICMP
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// TestE2ESpoofedSource is the attack: evil puts web's addresses on its own
// interface and sends as web to api, which accepts web. Every such packet
// (UDP, TCP SYN, ICMP echo; IPv4 and IPv6) is dropped at evil's veth as
// spoofed-source, while web itself still gets through and gets replies.
func TestE2ESpoofedSource(t *testing.T) {
	w := newSpoofWorld(t)
	ev := watchEvents(t, w.host, w.name)
	for _, fam := range []struct {
		name           string
		web, evil, api net.IP
		prefix         string
	}{
		{"v4", w.web.V4, w.evil.V4, w.api.V4, "/32"},
		{"v6", w.web.V6, w.evil.V6, w.api.V6, "/128"},
	} {
		t.Run(fam.name, func(t *testing.T) {
			// web is allowed, and replies reach it
			if err := netnstest.UDPEcho(w.web.NS, fam.api, spoofPort, 2*time.Second); err != nil {
				t.Fatalf("web → api udp/%d: %v", spoofPort, err)
			}
			if err := netnstest.TCPEcho(w.web.NS, fam.api, spoofPort, 2*time.Second); err != nil {
				t.Fatalf("web → api tcp/%d: %v", spoofPort, err)
			}
			if err := netnstest.Ping(w.web.NS, fam.api, 2*time.Second); err != nil {
				t.Fatalf("web → api ping: %v", err)
			}
			// evil as itself is not
			if err := sendUDPFrom(w.evil.NS, fam.evil, fam.api, spoofPort, "evil-as-evil-"+fam.name); err != nil {
				t.Fatal(err)
			}

			// evil takes web's address
			netnstest.AddAddr(t, w.evil.NS, w.evil.IfName, fam.web.String()+fam.prefix)
			payload := "evil-as-web-" + fam.name
			if err := sendUDPFrom(w.evil.NS, fam.web, fam.api, spoofPort, payload); err != nil {
				t.Fatal(err)
			}
			if err := dialTCPFrom(w.evil.NS, fam.web, fam.api, spoofPort, 500*time.Millisecond); err == nil {
				t.Errorf("evil connected to api as web")
			}
			if err := pingFrom(w.evil.NS, fam.web, fam.api); err != nil {
				t.Fatal(err)
			}
			icmp := uint8(1)
			if fam.name == "v6" {
				icmp = 58
			}
			for _, c := range []struct {
				what  string
				proto uint8
			}{{"udp", 17}, {"tcp", 6}, {"icmp", icmp}} {
				if !waitFor(func() bool { return ev.count(ir.RuleSpoofedSource, c.proto, fam.web, fam.api) > 0 }) {
					t.Errorf("no spoofed-source drop of evil's %s as web", c.what)
				}
			}
			time.Sleep(200 * time.Millisecond) // a datagram that got through would be in by now
			if w.recv.Got(payload) {
				t.Errorf("api received evil's datagram sent as web")
			}
			if w.recv.Got("evil-as-evil-" + fam.name) {
				t.Errorf("api received evil's datagram sent as itself")
			}
			if n := ev.count(ir.RuleSpoofedSource, 17, fam.evil, fam.api); n != 0 {
				t.Errorf("evil's own datagram counted as spoofed")
			}

			// web, the real owner, still passes on its own veth
			if err := netnstest.UDPEcho(w.web.NS, fam.api, spoofPort, 2*time.Second); err != nil {
				t.Errorf("web → api udp after the attack: %v", err)
			}
			if err := netnstest.TCPEcho(w.web.NS, fam.api, spoofPort, 2*time.Second); err != nil {
				t.Errorf("web → api tcp after the attack: %v", err)
			}
		})
	}
	st, err := w.host.Status(w.name)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range st[0].Attachments {
		want := map[string]string{w.web.HostIf: "web", w.evil.HostIf: "evil", w.api.HostIf: "api"}[a.Iface]
		if a.Endpoint != want || !a.Live {
			t.Errorf("status: %s serves %q (live %v), want %q", a.Iface, a.Endpoint, a.Live, want)
		}
	}
}

// TestE2EWrongDestination: the host routes api's address onto evil's veth
// (a mistake, or an attacker's route) and evil claims the address; the
// packets are dropped at evil's veth as wrong-destination instead of
// reaching evil.
func TestE2EWrongDestination(t *testing.T) {
	w := newSpoofWorld(t)
	ev := watchEvents(t, w.host, w.name)
	evilRecv := netnstest.ServeUDPLog(t, w.evil.NS, spoofPort)
	netnstest.AddAddr(t, w.evil.NS, w.evil.IfName, w.api.V4.String()+"/32")
	hl, err := w.topo.Host.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer hl.Close()
	link, err := hl.LinkByName(w.evil.HostIf)
	if err != nil {
		t.Fatal(err)
	}
	dst := &net.IPNet{IP: w.api.V4, Mask: net.CIDRMask(32, 32)}
	if err := hl.RouteAdd(netlinkRoute(link.Attrs().Index, dst)); err != nil {
		t.Fatal(err)
	}
	if err := sendUDPFrom(w.web.NS, w.web.V4, w.api.V4, spoofPort, "misrouted"); err != nil {
		t.Fatal(err)
	}
	if !waitFor(func() bool { return ev.count(ir.RuleWrongDestination, 17, w.web.V4, w.api.V4) > 0 }) {
		t.Errorf("no wrong-destination drop on evil's veth")
	}
	if evilRecv.Got("misrouted") {
		t.Errorf("evil received a datagram for api")
	}
	if w.recv.Got("misrouted") {
		t.Errorf("api received the datagram though the route pointed at evil")
	}
}

// TestE2EVLANTagged: a VLAN-tagged frame from web (VLAN 0, a priority tag
// the host would strip and deliver as plain IPv4) is dropped at web's veth
// as ethertype, while the same datagram untagged reaches api.
func TestE2EVLANTagged(t *testing.T) {
	w := newSpoofWorld(t)
	ev := watchEvents(t, w.host, w.name)
	hl, err := w.topo.Host.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer hl.Close()
	hostLink, err := hl.LinkByName(w.web.HostIf)
	if err != nil {
		t.Fatal(err)
	}
	el, err := w.web.NS.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer el.Close()
	webLink, err := el.LinkByName(w.web.IfName)
	if err != nil {
		t.Fatal(err)
	}
	spec := packet.Spec{Proto: ir.ProtoUDP, Src: addrOf(w.web.V4), Dst: addrOf(w.api.V4), SPort: 40000, DPort: spoofPort, Payload: []byte("tagged")}
	frame := packet.Build(spec)
	copy(frame[0:6], hostLink.Attrs().HardwareAddr)
	copy(frame[6:12], webLink.Attrs().HardwareAddr)
	tag := func(tpid uint16, f []byte) []byte {
		out := append([]byte{}, f[:12]...)
		out = binary.BigEndian.AppendUint16(out, tpid)
		out = binary.BigEndian.AppendUint16(out, 0)
		return append(out, f[12:]...)
	}
	send := func(f []byte) error {
		return w.web.NS.Do(func() error {
			fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Sendto(fd, f, 0, &unix.SockaddrLinklayer{Ifindex: webLink.Attrs().Index, Halen: 6})
		})
	}
	for _, f := range [][]byte{tag(0x8100, frame), tag(0x88a8, tag(0x8100, frame))} {
		if err := send(f); err != nil {
			t.Fatal(err)
		}
	}
	if !waitFor(func() bool { return ev.countRule(ir.RuleEtherType) >= 2 }) {
		t.Errorf("tagged frames were not dropped as ethertype (%d drops)", ev.countRule(ir.RuleEtherType))
	}
	time.Sleep(200 * time.Millisecond)
	if w.recv.Got("tagged") {
		t.Errorf("api received a VLAN-tagged datagram")
	}
	// the untagged frame, the control: the raw path works
	spec.Payload = []byte("untagged")
	frame = packet.Build(spec)
	copy(frame[0:6], hostLink.Attrs().HardwareAddr)
	copy(frame[6:12], webLink.Attrs().HardwareAddr)
	if err := send(frame); err != nil {
		t.Fatal(err)
	}
	if !waitFor(func() bool { return w.recv.Got("untagged") }) {
		t.Errorf("api did not receive the untagged datagram")
	}
}

// TestE2EApplyRebinds: apply keeps every interface bound to its endpoint
// although the new bundle numbers the endpoints differently (an endpoint
// that sorts first shifts every index), and refuses a bundle that lacks an
// endpoint an interface serves, changing nothing.
func TestE2EApplyRebinds(t *testing.T) {
	w := newSpoofWorld(t)
	base := fmt.Sprintf(`endpoint web  labels(app=web)  addr %s, %s
endpoint evil labels(app=evil) addr %s, %s
endpoint api  labels(app=api)  addr %s, %s
%%s
policy api {
  select app=api
  ingress allow from app=web on udp/%d, tcp/%d
}
`, w.web.V4, w.web.V6, w.evil.V4, w.evil.V6, w.api.V4, w.api.V6, spoofPort, spoofPort)
	shifted := fmt.Sprintf(base, "endpoint aaa labels(app=aaa) addr 10.250.0.1")
	if _, err := w.host.Apply(w.name, compileBundle(t, shifted)); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if err := netnstest.UDPEcho(w.web.NS, w.api.V4, spoofPort, 2*time.Second); err != nil {
		t.Errorf("web → api after an apply that renumbers endpoints: %v", err)
	}
	if err := netnstest.TCPEcho(w.web.NS, w.api.V6, spoofPort, 2*time.Second); err != nil {
		t.Errorf("web → api tcp6 after an apply that renumbers endpoints: %v", err)
	}
	netnstest.AddAddr(t, w.evil.NS, w.evil.IfName, w.web.V4.String()+"/32")
	if err := sendUDPFrom(w.evil.NS, w.web.V4, w.api.V4, spoofPort, "spoof-after-apply"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if w.recv.Got("spoof-after-apply") {
		t.Errorf("evil's datagram as web got through after apply")
	}

	// evil's endpoint gone from the new bundle: refused, nothing changes
	gone := fmt.Sprintf(`endpoint web  labels(app=web)  addr %s, %s
endpoint api  labels(app=api)  addr %s, %s
`, w.web.V4, w.web.V6, w.api.V4, w.api.V6)
	before, err := w.host.Status(w.name)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.host.Apply(w.name, compileBundle(t, gone))
	if !errors.Is(err, ErrBinding) || !strings.Contains(err.Error(), `no endpoint "evil"`) {
		t.Fatalf("apply without evil: %v, want ErrBinding naming evil", err)
	}
	after, err := w.host.Status(w.name)
	if err != nil {
		t.Fatal(err)
	}
	if after[0].Generation != before[0].Generation || after[0].BundleDigest != before[0].BundleDigest {
		t.Errorf("a refused apply changed the state: generation %d → %d", before[0].Generation, after[0].Generation)
	}
	if err := netnstest.UDPEcho(w.web.NS, w.api.V4, spoofPort, 2*time.Second); err != nil {
		t.Errorf("web → api after a refused apply: %v", err)
	}
}

// TestE2ENeighborDiscoveryLeak: an egress-isolated endpoint may not use
// neighbour discovery messages (hop limit 255, which pass unpoliced on the
// link) to reach an address off its link: a message of type 135 with a
// payload of its choosing, sent to api's global address, must not arrive.
// Its real neighbour discovery (with its gateway, the host's address on
// the veth) still works, so TCP to api does.
func TestE2ENeighborDiscoveryLeak(t *testing.T) {
	netnstest.RequireRoot(t)
	h := testHost(t)
	h.ParseObject = nil
	topo := netnstest.Routed(t, 2)
	web, api := topo.Endpoints[0], topo.Endpoints[1]
	netnstest.ServeTCP(t, api.NS, 8080)
	src := fmt.Sprintf(`endpoint web labels(app=web) addr %s
endpoint api labels(app=api) addr %s
policy web {
  select app=web
  egress allow to app=api on tcp/8080
}
`, web.V6, api.V6)
	loadAttached(t, h, topo, "ndleak", src, []string{"web", "api"})
	ev := watchEvents(t, h, "ndleak")

	// api listens for any ICMPv6 carrying the marker
	var rc net.PacketConn
	if err := api.NS.Do(func() (err error) {
		rc, err = net.ListenPacket("ip6:ipv6-icmp", "::")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := rc.ReadFrom(buf)
			if err != nil {
				return
			}
			if strings.Contains(string(buf[:n]), "exfiltrated") {
				got <- struct{}{}
				return
			}
		}
	}()
	send := func() error {
		return web.NS.Do(func() error {
			c, err := net.ListenPacket("ip6:ipv6-icmp", web.V6.String())
			if err != nil {
				return err
			}
			defer c.Close()
			sc, err := c.(*net.IPConn).SyscallConn()
			if err != nil {
				return err
			}
			var serr error
			if err := sc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, 255)
			}); err != nil {
				return err
			}
			if serr != nil {
				return serr
			}
			msg := append([]byte{135, 0, 0, 0, 0, 0, 0, 0}, api.V6.To16()...) // NS: reserved, target
			msg = append(msg, []byte("exfiltrated data")...)
			_, err = c.WriteTo(msg, &net.IPAddr{IP: api.V6})
			return err
		})
	}
	if err := send(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
		t.Errorf("a neighbour solicitation from egress-isolated web reached api, off its link")
	case <-time.After(500 * time.Millisecond):
	}
	if !waitFor(func() bool { return ev.count(ir.RuleDefaultDeny, 58, web.V6, api.V6) > 0 }) {
		t.Errorf("web's solicitation to api was not dropped by web's egress policy")
	}
	if err := netnstest.TCPEcho(web.NS, api.V6, 8080, 2*time.Second); err != nil {
		t.Errorf("tcp6 web → api:8080: %v", err)
	}
}
