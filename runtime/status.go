package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/cilium/ebpf"

	"github.com/polc-dev/polc/bpf"
)

// Status describes one loaded bundle.
type Status struct {
	State
	Maps      []MapStatus       `json:"maps"`
	Conntrack []ConntrackStatus `json:"conntrack"` // the bound endpoints' tables
	// EventsLost counts the events the ring buffer had no room for (nil:
	// the bundle predates the count).
	EventsLost  *uint64            `json:"events_lost,omitempty"`
	Counters    *CounterTotals     `json:"counters,omitempty"`
	Attachments []AttachmentStatus `json:"attachments"`
}

// MapStatus is a map's fill level.
type MapStatus struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Entries    int    `json:"entries"` // -1 where counting makes no sense (arrays, ring buffers)
	MaxEntries uint32 `json:"max_entries"`
	Shared     bool   `json:"shared,omitempty"` // survives apply
}

// CounterTotals sums the counters map (packets and bytes per rule id, per
// CPU) over rules and CPUs.
type CounterTotals struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// AttachmentStatus is an attachment and whether it still enforces.
type AttachmentStatus struct {
	Attachment
	Live bool `json:"live"` // false: the interface is gone
}

// Status reports the named bundle, or every bundle when name is "". It
// takes the host lock shared, so it waits for a running load or apply.
func (h *Host) Status(name string) ([]Status, error) {
	ok, err := IsBPFFS(h.Root)
	if errors.Is(err, os.ErrPermission) {
		return nil, fmt.Errorf("%w: read %s: %v", ErrPrivilege, h.Root, err)
	}
	if err != nil || !ok { // nothing was ever loaded
		if name != "" {
			return nil, fmt.Errorf("%s: %w", name, ErrNotLoaded)
		}
		return nil, nil
	}
	lk, err := lockHost(h.LockPath, false)
	if err != nil {
		return nil, err
	}
	defer lk.Unlock()
	names := []string{name}
	if name == "" {
		entries, err := os.ReadDir(h.rootDir())
		if err != nil {
			return nil, err
		}
		names = names[:0]
		for _, e := range entries {
			if e.IsDir() {
				names = append(names, e.Name())
			}
		}
	} else if err := ValidName(name); err != nil {
		return nil, err
	}
	var out []Status
	for _, n := range names {
		p := h.pins(n)
		st, err := readState(p)
		if err != nil {
			return nil, err
		}
		if st == nil {
			if name != "" {
				return nil, fmt.Errorf("%s: %w", name, ErrNotLoaded)
			}
			continue
		}
		s := Status{State: *st}
		s.Maps = append(mapStatuses(filepath.Join(p.gen(st.Generation), "maps"), false), mapStatuses(p.shared(), true)...)
		sort.Slice(s.Maps, func(i, j int) bool { return s.Maps[i].Name < s.Maps[j].Name })
		s.Counters = counterTotals(p.genMap(st.Generation, bpf.MapCounters))
		s.Conntrack = conntrackStatuses(p, st)
		if m, err := ebpf.LoadPinnedMap(filepath.Join(p.shared(), bpf.MapEventsLost), nil); err == nil {
			if n, err := sumPerCPU(m); err == nil {
				s.EventsLost = &n
			}
			m.Close()
		}
		for _, a := range st.Attachments {
			_, live, err := linkState(p, &a)
			s.Attachments = append(s.Attachments, AttachmentStatus{Attachment: a, Live: err == nil && live})
		}
		out = append(out, s)
	}
	return out, nil
}

func mapStatuses(dir string, shared bool) []MapStatus {
	entries, _ := os.ReadDir(dir)
	var out []MapStatus
	for _, e := range entries {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, e.Name()), nil)
		if err != nil {
			continue
		}
		if in := activeContent(dir, e.Name(), m); in != nil {
			// a content map: the slot in force
			m.Close()
			m = in
		}
		out = append(out, MapStatus{
			Name: e.Name(), Type: m.Type().String(), Entries: countEntries(m),
			MaxEntries: m.MaxEntries(), Shared: shared,
		})
		m.Close()
	}
	return out
}

// countEntries walks the keys of hash-like maps (bounded by max entries).
func countEntries(m *ebpf.Map) int {
	switch m.Type() {
	case ebpf.Hash, ebpf.LRUHash, ebpf.LPMTrie, ebpf.PerCPUHash, ebpf.LRUCPUHash:
	default:
		return -1
	}
	key := make([]byte, m.KeySize())
	var next []byte = make([]byte, m.KeySize())
	n := 0
	var cur any // nil: first key
	for n <= int(m.MaxEntries()) {
		if err := m.NextKey(cur, &next); err != nil {
			break // ErrKeyNotExist: done
		}
		n++
		copy(key, next)
		cur = key
	}
	return n
}

func counterTotals(pin string) *CounterTotals {
	m, err := ebpf.LoadPinnedMap(pin, nil)
	if err != nil {
		return nil
	}
	defer m.Close()
	if m.Type() != ebpf.PerCPUArray || m.ValueSize() != 16 {
		return nil
	}
	t := &CounterTotals{}
	var vals []CounterTotals
	for i := uint32(0); i < m.MaxEntries(); i++ {
		if err := m.Lookup(i, &vals); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				continue
			}
			return nil
		}
		for _, v := range vals {
			t.Packets += v.Packets
			t.Bytes += v.Bytes
		}
	}
	return t
}

// readOnly takes the host lock shared and reads the state of the bundle
// loaded under name; release drops the lock.
func (h *Host) readOnly(name string) (st *State, release func(), err error) {
	if err := ValidName(name); err != nil {
		return nil, nil, err
	}
	ok, err := IsBPFFS(h.Root)
	if errors.Is(err, os.ErrPermission) {
		return nil, nil, fmt.Errorf("%w: read %s: %v", ErrPrivilege, h.Root, err)
	}
	if err != nil || !ok {
		return nil, nil, fmt.Errorf("%s: %w", name, ErrNotLoaded)
	}
	lk, err := lockHost(h.LockPath, false)
	if err != nil {
		return nil, nil, err
	}
	st, err = readState(h.pins(name))
	if err == nil && st == nil {
		err = fmt.Errorf("%s: %w", name, ErrNotLoaded)
	}
	if err != nil {
		lk.Unlock()
		return nil, nil, err
	}
	return st, lk.Unlock, nil
}

// activeContent is the inner map in force of the content map outer pinned
// in dir as name, or nil when it is not one.
func activeContent(dir, name string, outer *ebpf.Map) *ebpf.Map {
	if outer.Type() != ebpf.ArrayOfMaps || !slices.Contains(bpf.ContentMaps, name) {
		return nil
	}
	g, err := ebpf.LoadPinnedMap(filepath.Join(dir, bpf.MapGeneration), nil)
	if err != nil {
		return nil
	}
	defer g.Close()
	var gen, id uint32
	if g.Lookup(uint32(0), &gen) != nil || outer.Lookup(bpf.ContentSlot(gen), &id) != nil {
		return nil
	}
	in, err := ebpf.NewMapFromID(ebpf.MapID(id))
	if err != nil {
		return nil
	}
	return in
}
