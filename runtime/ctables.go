package runtime

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"

	"github.com/polc-dev/polc/bpf"
)

// Conntrack tables. Every endpoint bound on the host has a table of its
// own (an LRU hash), so an endpoint that opens flows faster than its
// table holds forgets its own oldest flows and never another endpoint's.
// A generation's conntrack map is an array of maps indexed by endpoint
// index; the tables themselves are pinned under shared/conntrack/, named
// by the endpoint (conntrackPin), and outlive generations:
//
//   - attach creates the endpoint's table (or finds it) and puts it into
//     the generation's array before it writes the binding;
//   - apply puts every bound endpoint's table into the new generation's
//     array, at the endpoint's index there, before it switches a link;
//   - detach removes the table once no interface serves the endpoint;
//   - unload removes them all with the rest of the name's pins.
//
// A slot without a table tracks nothing: the endpoint's packets all meet
// policy, and replies into an isolated direction drop (never the reverse).

// conntrackDir is the directory of the tables, under shared/.
const conntrackDir = "conntrack"

// conntrackPin is where endpoint's table is pinned: bpffs names cannot
// hold every endpoint name (dots, slashes), a digest of it can.
func (p pins) conntrackPin(endpoint string) string {
	k := endpointKey(endpoint)
	return filepath.Join(p.shared(), conntrackDir, hex.EncodeToString(k[:16]))
}

// ConntrackTableSpec is the spec of one endpoint's table with n entries:
// what the datapath's struct ct_table declares (the outer map's template
// must agree in everything but the size).
func ConntrackTableSpec(n uint32) *ebpf.MapSpec {
	return &ebpf.MapSpec{
		Name: "polc_ct", Type: ebpf.LRUHash,
		KeySize: uint32(binary.Size(bpf.CTKey{})), ValueSize: uint32(binary.Size(bpf.CTValue{})),
		MaxEntries: n,
	}
}

// conntrackSize is the size of st's tables.
func conntrackSize(st *State) uint32 {
	if st.ConntrackEntries != 0 {
		return st.ConntrackEntries
	}
	return ConntrackPerEndpoint
}

// openConntrackTable returns endpoint's pinned table, creating and
// pinning it when it has none; created says which.
func openConntrackTable(p pins, st *State, endpoint string) (m *ebpf.Map, created bool, err error) {
	pin := p.conntrackPin(endpoint)
	m, err = ebpf.LoadPinnedMap(pin, nil)
	if err == nil {
		return m, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("open the conntrack table of %q: %w", endpoint, err)
	}
	if err := os.MkdirAll(filepath.Dir(pin), 0o700); err != nil {
		return nil, false, err
	}
	m, err = ebpf.NewMap(ConntrackTableSpec(conntrackSize(st)))
	if err != nil {
		return nil, false, fmt.Errorf("create the conntrack table of %q: %w", endpoint, err)
	}
	if err := m.Pin(pin); err != nil {
		m.Close()
		return nil, false, fmt.Errorf("pin the conntrack table of %q: %w", endpoint, err)
	}
	return m, true, nil
}

// placeConntrackTable puts endpoint's table (created if need be) into the
// conntrack array outer at index idx.
func placeConntrackTable(p pins, st *State, outer *ebpf.Map, endpoint string, idx uint32) (created bool, err error) {
	if outer.Type() != ebpf.ArrayOfMaps {
		return false, fmt.Errorf("%w: the loaded bundle keeps one conntrack map for every endpoint (loaded by an older polc): unload and load it again", ErrBinding)
	}
	m, created, err := openConntrackTable(p, st, endpoint)
	if err != nil {
		return false, err
	}
	defer m.Close()
	if err := outer.Update(idx, m, ebpf.UpdateAny); err != nil {
		if created {
			_ = os.Remove(p.conntrackPin(endpoint))
		}
		return false, fmt.Errorf("put the conntrack table of %q at index %d: %w", endpoint, idx, err)
	}
	return created, nil
}

// dropConntrackTable takes endpoint's table out of generation g's array
// (at idx, when non-zero) and unpins it: the kernel frees it once no
// array holds it.
func dropConntrackTable(p pins, g uint32, endpoint string, idx uint32) error {
	var errs []error
	if idx != 0 {
		outer, err := ebpf.LoadPinnedMap(p.genMap(g, bpf.MapConntrack), nil)
		if err == nil {
			if outer.Type() == ebpf.ArrayOfMaps {
				err = outer.Delete(idx)
				if errors.Is(err, ebpf.ErrKeyNotExist) {
					err = nil
				}
			}
			outer.Close()
		}
		errs = append(errs, err)
	}
	if err := os.Remove(p.conntrackPin(endpoint)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// servesElsewhere reports whether an attachment st lists serves endpoint.
func servesElsewhere(st *State, endpoint string) bool {
	for i := range st.Attachments {
		if st.Attachments[i].isTC() && st.Attachments[i].Endpoint == endpoint {
			return true
		}
	}
	return false
}

// ConntrackStatus is one endpoint's conntrack table: how full it is.
type ConntrackStatus struct {
	Endpoint   string `json:"endpoint"`
	Entries    int    `json:"entries"`
	MaxEntries uint32 `json:"max_entries"`
}

// conntrackStatuses reports the tables of the endpoints st's attachments
// serve, in the order they first appear.
func conntrackStatuses(p pins, st *State) []ConntrackStatus {
	out := []ConntrackStatus{}
	seen := map[string]bool{}
	for _, a := range st.Attachments {
		if !a.isTC() || a.Endpoint == "" || seen[a.Endpoint] {
			continue
		}
		seen[a.Endpoint] = true
		m, err := ebpf.LoadPinnedMap(p.conntrackPin(a.Endpoint), nil)
		if err != nil {
			continue
		}
		out = append(out, ConntrackStatus{Endpoint: a.Endpoint, Entries: countEntries(m), MaxEntries: m.MaxEntries()})
		m.Close()
	}
	return out
}

// ConntrackTable opens the conntrack table of endpoint in the bundle
// loaded under name (benchmarks empty it between runs). It exists while
// an interface serves the endpoint.
func (h *Host) ConntrackTable(name, endpoint string) (*ebpf.Map, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	m, err := ebpf.LoadPinnedMap(h.pins(name).conntrackPin(endpoint), nil)
	if err != nil {
		return nil, fmt.Errorf("open the conntrack table of %q in %s: %w", endpoint, name, err)
	}
	return m, nil
}
