package runtime

import (
	"errors"
	"net"
	"os"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/runtime/netnstest"
)

// tableEntries counts the entries of endpoint's pinned conntrack table,
// failing the test when it has none.
func tableEntries(t *testing.T, h *Host, name, endpoint string) (int, uint32) {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(h.pins(name).conntrackPin(endpoint), nil)
	if err != nil {
		t.Fatalf("conntrack table of %s: %v", endpoint, err)
	}
	defer m.Close()
	return countEntries(m), m.MaxEntries()
}

// tableAt is the id of the table generation g's conntrack array holds
// for endpoint (0: none).
func tableAt(t *testing.T, h *Host, name string, g uint32, endpoint string) ebpf.MapID {
	t.Helper()
	p := h.pins(name)
	idx, err := endpointIndex(p, g, endpoint)
	if err != nil || idx == 0 {
		t.Fatalf("index of %s in generation %d: %d, %v", endpoint, g, idx, err)
	}
	outer, err := ebpf.LoadPinnedMap(p.genMap(g, bpf.MapConntrack), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer outer.Close()
	var id uint32
	if err := outer.Lookup(idx, &id); errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0
	} else if err != nil {
		t.Fatal(err)
	}
	return ebpf.MapID(id)
}

func pinnedID(t *testing.T, pin string) ebpf.MapID {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(pin, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return id
}

// TestE2EConntrackPerEndpoint: every attached endpoint gets a conntrack
// table of its own, sized by Host.ConntrackEntries; an endpoint that opens
// flows by the thousand fills only its own (and its peer's) tables, so
// another endpoint's flow keeps its entry; apply hands the same tables to
// the new generation, at the endpoints' new indices; detach drops the
// table of the endpoint it leaves unserved.
func TestE2EConntrackPerEndpoint(t *testing.T) {
	h := testHost(t)
	h.ParseObject = nil
	h.ConntrackEntries = ConntrackMinEntries
	topo := netnstest.Routed(t, 3)
	for _, ep := range topo.Endpoints {
		netnstest.ServeUDP(t, ep.NS, 5353)
	}
	const name = "ct"
	// db may send api udp/5353 too: the flood
	loadAttached(t, h, topo, name, e2ePolicy("", "  ingress allow from app=db on udp/5353"), e2eEndpoints)
	web, api, db := topo.Endpoints[0], topo.Endpoints[1], topo.Endpoints[2]

	for _, ep := range e2eEndpoints {
		if n, size := tableEntries(t, h, name, ep); n != 0 || size != ConntrackMinEntries {
			t.Errorf("%s's table: %d entries of %d, want an empty table of %d", ep, n, size, ConntrackMinEntries)
		}
	}
	if err := sendUDPFrom(web.NS, netnstest.EndpointV4(0), netnstest.EndpointV4(1), 5353, "web"); err != nil {
		t.Fatal(err)
	}
	if n, _ := tableEntries(t, h, name, "web"); n != 1 {
		t.Fatalf("web's table has %d entries after one flow, want 1", n)
	}
	// db opens 4 tables' worth of flows to api
	if err := db.NS.Do(func() error {
		for range 4 * ConntrackMinEntries {
			c, err := net.DialUDP("udp", &net.UDPAddr{IP: netnstest.EndpointV4(2)}, &net.UDPAddr{IP: netnstest.EndpointV4(1), Port: 5353})
			if err != nil {
				return err
			}
			_, err = c.Write([]byte("flood"))
			c.Close()
			if err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, ep := range []string{"db", "api"} {
		if n, size := tableEntries(t, h, name, ep); n < int(size)/2 || n > int(size) {
			t.Errorf("%s's table: %d entries of %d after the flood, want it filled", ep, n, size)
		}
	}
	if n, _ := tableEntries(t, h, name, "web"); n != 1 {
		t.Errorf("web's table has %d entries after db's flood, want its 1 flow", n)
	}

	// apply: the same tables, at the endpoints' indices in the new bundle
	// (endpoints renumbered: a new one sorts first)
	src := "endpoint aaa labels(app=aaa) addr 10.99.0.1\n" + e2ePolicy("", "  ingress allow from app=db on udp/5353")
	if _, err := h.Apply(name, compileBundle(t, src)); err != nil {
		t.Fatal(err)
	}
	for _, ep := range e2eEndpoints {
		if got, want := tableAt(t, h, name, 2, ep), pinnedID(t, h.pins(name).conntrackPin(ep)); got != want {
			t.Errorf("generation 2 holds table %d for %s, want its pinned table %d", got, ep, want)
		}
	}
	if n, _ := tableEntries(t, h, name, "web"); n != 1 {
		t.Errorf("web's table has %d entries after apply, want its 1 flow", n)
	}
	sts, err := h.Status(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(sts[0].Conntrack) != 3 || sts[0].Conntrack[0].Endpoint != "web" || sts[0].Conntrack[0].Entries != 1 {
		t.Errorf("status conntrack: %+v", sts[0].Conntrack)
	}

	// detach web: its table goes; the others stay
	if err := topo.Host.Do(func() error {
		_, err := h.Detach(name, web.HostIf, AttachOptions{TC: true})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(h.pins(name).conntrackPin("web")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("web's table is still pinned after its detach: %v", err)
	}
	if id := tableAt(t, h, name, 2, "web"); id != 0 {
		t.Errorf("generation 2 still holds table %d for the detached web", id)
	}
	tableEntries(t, h, name, "api")
	_ = api
}
