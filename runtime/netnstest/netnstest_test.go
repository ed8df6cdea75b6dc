package netnstest

import (
	"os"
	"testing"
	"time"
)

func TestRoutedTraffic(t *testing.T) {
	RequireRoot(t)
	topo := Routed(t, 2)
	a, b := topo.Endpoints[0], topo.Endpoints[1]
	ServeTCP(t, b.NS, 8080)
	ServeUDP(t, b.NS, 5353)
	for _, dst := range [][2]any{{b.V4, "v4"}, {b.V6, "v6"}} {
		ip := b.V4
		if dst[1] == "v6" {
			ip = b.V6
		}
		if err := Ping(a.NS, ip, 2*time.Second); err != nil {
			t.Errorf("ping %s: %v", ip, err)
		}
		if err := TCPEcho(a.NS, ip, 8080, 2*time.Second); err != nil {
			t.Errorf("tcp %s: %v", ip, err)
		}
		if err := UDPEcho(a.NS, ip, 5353, 2*time.Second); err != nil {
			t.Errorf("udp %s: %v", ip, err)
		}
	}
	// Nothing listens on 8081: the connection is refused, not timed out.
	if err := TCPEcho(a.NS, b.V4, 8081, 2*time.Second); err == nil {
		t.Errorf("tcp to a closed port succeeded")
	}
}

func TestCleanupRemovesNamespaces(t *testing.T) {
	RequireRoot(t)
	var name string
	t.Run("inner", func(t *testing.T) {
		ns := New(t, "gone")
		name = ns.Name
		if _, err := os.Stat(netnsDir + "/" + name); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := os.Stat(netnsDir + "/" + name); !os.IsNotExist(err) {
		t.Fatalf("netns %s still exists after cleanup (err=%v)", name, err)
	}
	if _, err := Sweep(); err != nil {
		t.Fatal(err)
	}
}
