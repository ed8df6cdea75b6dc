package agent

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/runtime"
	"github.com/polc-dev/polc/runtime/netnstest"
)

// RouteIface takes the device of a direct route only when it is a veth
// (or matches the pattern): never a device behind a gateway, nor a bridge
// that stands for many pods.
func TestRouteIface(t *testing.T) {
	netnstest.RequireRoot(t)
	host, pod := netnstest.New(t, "ifhost"), netnstest.New(t, "ifpod")
	netnstest.Veth(t, host, "pv0", pod, "eth0")
	netnstest.AddAddr(t, host, "pv0", "10.204.0.1/24")
	netnstest.AddAddr(t, pod, "eth0", "10.204.0.2/24")
	h, err := host.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	bridge := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := h.LinkAdd(bridge); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(bridge); err != nil {
		t.Fatal(err)
	}
	netnstest.AddAddr(t, host, "br0", "10.203.0.1/24")
	_, dst, _ := net.ParseCIDR("10.205.0.0/24")
	if err := h.RouteAdd(&netlink.Route{Dst: dst, Gw: net.ParseIP("10.204.0.2")}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		pattern, addr, want, err string
	}{
		{"", "10.204.0.2", "pv0", ""},
		{"pv*", "10.204.0.2", "pv0", ""},
		{"cali*", "10.204.0.2", "", `leaves by pv0, which does not match --iface-pattern "cali*"`},
		{"", "10.203.0.2", "", "leaves by br0, a bridge, not a pod's veth"},
		{"br*", "10.203.0.2", "br0", ""},
		{"", "10.205.0.9", "", "no direct route to 10.205.0.9"}, // behind a gateway
		{"", "192.0.2.1", "", "route to 192.0.2.1"},             // no route at all
		{"", "not-an-ip", "", `"not-an-ip" is not an IP address`},
	} {
		var got string
		err := host.Do(func() (err error) {
			got, err = RouteIface{Pattern: tc.pattern}.Find(tc.addr)
			return err
		})
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("pattern %q, %s: %q, %v; want %s", tc.pattern, tc.addr, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("pattern %q, %s: %q, %v; want an error with %q", tc.pattern, tc.addr, got, err, tc.err)
		}
	}
}

type finderFunc func(addr string) (string, error)

func (f finderFunc) Find(addr string) (string, error) { return f(addr) }

// wanted binds each local pod in the bundle to its interface, and none of
// the pods whose addresses lead to one shared device.
func TestWanted(t *testing.T) {
	devs := map[string]string{"10.0.0.1": "cali1", "10.0.0.2": "cni0", "10.0.0.3": "cni0", "10.0.0.4": "cali4"}
	a, err := New(Config{Node: testNode, Name: "polc", Host: &runtime.Host{}, Client: fake.NewClientset(),
		Iface: finderFunc(func(addr string) (string, error) {
			if d, ok := devs[addr]; ok {
				return d, nil
			}
			return "", errors.New("no route")
		})})
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle.Bundle{Endpoints: []bundle.Endpoint{{Name: "shop.a"}, {Name: "shop.b"}, {Name: "shop.c"}, {Name: "shop.e"}}}
	want, missing := a.wanted(b, []localPod{
		{"shop.a", "10.0.0.1"}, {"shop.b", "10.0.0.2"}, {"shop.c", "10.0.0.3"},
		{"shop.d", "10.0.0.4"}, // not in the bundle
		{"shop.e", "10.0.0.5"}, // no route
	})
	if d := cmp.Diff(map[string]string{"cali1": "shop.a"}, want); d != "" {
		t.Errorf("wanted (-want +got):\n%s", d)
	}
	var got []string
	for _, m := range missing {
		got = append(got, m.endpoint+": "+m.err.Error())
	}
	if d := cmp.Diff([]string{"shop.c: cni0 also leads to shop.b", "shop.e: no route"}, got); d != "" {
		t.Errorf("missing (-want +got):\n%s", d)
	}
}
