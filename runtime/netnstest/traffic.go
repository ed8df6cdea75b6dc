package netnstest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Ping sends one ICMP (or ICMPv6) echo request from ns to dst and waits up
// to timeout for the matching reply. It uses a raw socket, so it needs no
// ping binary.
func Ping(ns *NS, dst net.IP, timeout time.Duration) error {
	c, err := ListenICMP(ns, dst.To4() == nil)
	if err != nil {
		return err
	}
	defer c.Close()
	id := uint16(rand.IntN(1 << 16))
	if err := c.Send(dst, c.EchoRequest(), id, 1); err != nil {
		return err
	}
	return c.Expect(dst, c.EchoReply(), id, timeout)
}

// ICMPConn is a raw ICMP or ICMPv6 socket in a namespace, for echo
// requests and replies with chosen identifiers.
type ICMPConn struct {
	conn net.PacketConn
	v6   bool
}

// ListenICMP opens a raw ICMP (v6=false) or ICMPv6 socket in ns.
func ListenICMP(ns *NS, v6 bool) (*ICMPConn, error) {
	network := "ip4:icmp"
	if v6 {
		network = "ip6:ipv6-icmp"
	}
	c := &ICMPConn{v6: v6}
	if err := ns.Do(func() (err error) {
		c.conn, err = net.ListenPacket(network, "")
		return err
	}); err != nil {
		return nil, fmt.Errorf("raw icmp socket in %s: %w", ns.Name, err)
	}
	return c, nil
}

// EchoRequest and EchoReply are the message types of the socket's family.
func (c *ICMPConn) EchoRequest() byte {
	if c.v6 {
		return 128
	}
	return 8
}

// EchoReply: see EchoRequest.
func (c *ICMPConn) EchoReply() byte {
	if c.v6 {
		return 129
	}
	return 0
}

// Close closes the socket.
func (c *ICMPConn) Close() error { return c.conn.Close() }

// Send sends an echo message of type typ with identifier id.
func (c *ICMPConn) Send(dst net.IP, typ byte, id, seq uint16) error {
	msg := make([]byte, 16)
	msg[0] = typ
	binary.BigEndian.PutUint16(msg[4:], id)
	binary.BigEndian.PutUint16(msg[6:], seq)
	copy(msg[8:], "polc-e2e")
	if !c.v6 {
		binary.BigEndian.PutUint16(msg[2:], checksum(msg))
	} // the kernel computes ICMPv6 checksums on raw sockets
	_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := c.conn.WriteTo(msg, &net.IPAddr{IP: dst}); err != nil {
		return fmt.Errorf("send icmp type %d to %s: %w", typ, dst, err)
	}
	return nil
}

// Expect waits up to timeout for an echo message of type typ with
// identifier id from src.
func (c *ICMPConn) Expect(src net.IP, typ byte, id uint16, timeout time.Duration) error {
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 1500)
	for {
		n, from, err := c.conn.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("icmp type %d from %s: %w", typ, src, err)
		}
		p := buf[:n]
		if !c.v6 && n > 20 && p[0]>>4 == 4 { // raw IPv4 sockets deliver the IP header
			p = p[int(p[0]&0x0f)*4:]
		}
		if len(p) >= 8 && p[0] == typ && binary.BigEndian.Uint16(p[4:]) == id &&
			from.(*net.IPAddr).IP.Equal(src) {
			return nil
		}
	}
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// Echo servers: ServeTCP and ServeUDP listen in ns on port (both address
// families) and echo every byte back until t ends.

// ServeTCP starts a TCP echo server in ns on [::]:port.
func ServeTCP(t testing.TB, ns *NS, port int) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort("::", strconv.Itoa(port)))
		return err
	}); err != nil {
		t.Fatalf("listen tcp/%d in %s: %v", port, ns.Name, err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c, c)
				c.Close()
			}()
		}
	}()
}

// ServeUDP starts a UDP echo server in ns on [::]:port.
func ServeUDP(t testing.TB, ns *NS, port int) {
	t.Helper()
	ServeUDPLog(t, ns, port)
}

// UDPLog is what a UDP echo server received.
type UDPLog struct {
	mu   sync.Mutex
	seen map[string]bool // payloads
}

// Got reports whether the server received a datagram with this payload.
func (l *UDPLog) Got(payload string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen[payload]
}

// ServeUDPLog is ServeUDP that also records every payload it receives, so
// a test can tell a datagram that was dropped from one whose echo was.
func ServeUDPLog(t testing.TB, ns *NS, port int) *UDPLog {
	t.Helper()
	log := &UDPLog{seen: map[string]bool{}}
	var pc net.PacketConn
	if err := ns.Do(func() (err error) {
		pc, err = net.ListenPacket("udp", net.JoinHostPort("::", strconv.Itoa(port)))
		return err
	}); err != nil {
		t.Fatalf("listen udp/%d in %s: %v", port, ns.Name, err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			log.mu.Lock()
			log.seen[string(buf[:n])] = true
			log.mu.Unlock()
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	return log
}

// DialTCP connects from ns to dst:port within timeout.
func DialTCP(ns *NS, dst net.IP, port int, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", net.JoinHostPort(dst.String(), strconv.Itoa(port)), timeout)
		return err
	})
	return c, err
}

// TCPEcho connects from ns to an echo server at dst:port, sends a line and
// checks it comes back, all within timeout.
func TCPEcho(ns *NS, dst net.IP, port int, timeout time.Duration) error {
	c, err := DialTCP(ns, dst, port, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	return RoundTrip(c, []byte("hello polc\n"), timeout)
}

// UDPEcho sends one datagram from ns to an echo server at dst:port and
// waits for it to come back within timeout.
func UDPEcho(ns *NS, dst net.IP, port int, timeout time.Duration) error {
	var c net.Conn
	if err := ns.Do(func() (err error) {
		c, err = net.Dial("udp", net.JoinHostPort(dst.String(), strconv.Itoa(port)))
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	return RoundTrip(c, []byte("hello polc"), timeout)
}

// RoundTrip writes msg on c and reads the same bytes back within timeout.
func RoundTrip(c net.Conn, msg []byte, timeout time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != string(msg) {
		return errors.New("echo returned different bytes")
	}
	return nil
}
