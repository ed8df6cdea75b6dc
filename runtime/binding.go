package runtime

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/bundle"
)

// Interface bindings. Every interface polc's tc programs run on serves one
// endpoint of the bundle, and the datapath checks that the endpoint's side
// of each packet (the source of what it sends, the destination of what it
// receives) is one of that endpoint's addresses. The binding lives in the
// generation's iface_endpoints map (iface_endpoints_big for large
// ifindexes): ifindex → the endpoint's index in endpoints.json. An
// interface without a binding drops everything (docs/datapath.md).
//
// Order keeps every packet on a policed interface checked: attach writes
// the binding before it attaches the programs, detach removes it after it
// detaches them, and apply writes the new generation's bindings before it
// switches any interface to the new programs.
//
// The datapath knows an interface by ifindex alone, and ifindexes repeat
// across network namespaces: two interfaces of one bundle with the same
// ifindex must serve the same endpoint (attach refuses otherwise).

// endpointsPin is the name, inside a generation's directory, of the pinned
// map from endpoint names to their indices (endpointKey → uint32), which
// attach reads: the bundle itself is not kept on the host.
const endpointsPin = "endpoints"

// endpointKey keys the endpoints map: names can be long, a digest is not.
func endpointKey(name string) [sha256.Size]byte { return sha256.Sum256([]byte(name)) }

// pinEndpoints creates the endpoints map of a generation from the bundle
// and pins it at path.
func pinEndpoints(path string, eps []bundle.Endpoint) error {
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name: "polc_endpoints", Type: ebpf.Hash, KeySize: sha256.Size, ValueSize: 4,
		MaxEntries: uint32(max(1, len(eps))), Flags: bundle.MapFlagNoPrealloc,
	})
	if err != nil {
		return fmt.Errorf("create the endpoint map: %w", err)
	}
	defer m.Close()
	if len(eps) > 0 {
		keys := make([][sha256.Size]byte, len(eps))
		vals := make([]uint32, len(eps))
		for i, e := range eps {
			keys[i], vals[i] = endpointKey(e.Name), e.Index
		}
		if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
			return fmt.Errorf("fill the endpoint map: %w", err)
		}
	}
	_ = os.Remove(path)
	if err := m.Pin(path); err != nil {
		return fmt.Errorf("pin the endpoint map: %w", err)
	}
	return nil
}

// endpointIndex is the index of the endpoint called name in generation g,
// or 0 when the generation's bundle has no such endpoint.
func endpointIndex(p pins, g uint32, name string) (uint32, error) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(p.gen(g), endpointsPin), nil)
	if err != nil {
		return 0, fmt.Errorf("open the endpoint map of generation %d: %w", g, err)
	}
	defer m.Close()
	var idx uint32
	err = m.Lookup(endpointKey(name), &idx)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, nil
	}
	return idx, err
}

// endpointIndices is endpointIndex for each of names, with one open of
// the endpoint map.
func endpointIndices(p pins, g uint32, names map[string]uint32) (map[string]uint32, error) {
	out := make(map[string]uint32, len(names))
	if len(names) == 0 {
		return out, nil
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(p.gen(g), endpointsPin), nil)
	if err != nil {
		return nil, fmt.Errorf("open the endpoint map of generation %d: %w", g, err)
	}
	defer m.Close()
	for name := range names {
		var idx uint32
		if err := m.Lookup(endpointKey(name), &idx); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, err
		}
		out[name] = idx
	}
	return out, nil
}

// bindingMaps are a generation's iface_endpoints maps.
type bindingMaps struct {
	array, big *ebpf.Map
}

func openBindingMaps(p pins, g uint32) (bindingMaps, error) {
	arr, err := ebpf.LoadPinnedMap(p.genMap(g, bpf.MapIfaceEndpoints), nil)
	if err != nil {
		return bindingMaps{}, fmt.Errorf("open %s of generation %d: %w", bpf.MapIfaceEndpoints, g, err)
	}
	big, err := ebpf.LoadPinnedMap(p.genMap(g, bpf.MapIfaceEndpointsBig), nil)
	if err != nil {
		arr.Close()
		return bindingMaps{}, fmt.Errorf("open %s of generation %d: %w", bpf.MapIfaceEndpointsBig, g, err)
	}
	return bindingMaps{arr, big}, nil
}

func loadedBindingMaps(l *Loaded) (bindingMaps, error) {
	b := bindingMaps{l.Maps[bpf.MapIfaceEndpoints], l.Maps[bpf.MapIfaceEndpointsBig]}
	if b.array == nil || b.big == nil {
		return b, fmt.Errorf("the bundle's object has no %s and %s maps: it cannot bind interfaces to endpoints (rebuild it with this polc)",
			bpf.MapIfaceEndpoints, bpf.MapIfaceEndpointsBig)
	}
	return b, nil
}

func (b bindingMaps) Close() {
	b.array.Close()
	b.big.Close()
}

// set binds ifindex to endpoint index idx (0 unbinds).
func (b bindingMaps) set(ifindex int, idx uint32) error {
	if ifindex <= 0 {
		return fmt.Errorf("bind ifindex %d: not an interface", ifindex)
	}
	v := bpf.IfaceValue{Endpoint: idx}
	if ifindex < int(b.array.MaxEntries()) {
		if err := b.array.Update(uint32(ifindex), v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("bind ifindex %d: %w", ifindex, err)
		}
		return nil
	}
	if idx == 0 {
		if err := b.big.Delete(uint32(ifindex)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("unbind ifindex %d: %w", ifindex, err)
		}
		return nil
	}
	if err := b.big.Update(uint32(ifindex), v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bind ifindex %d: %w", ifindex, err)
	}
	return nil
}

// get returns the endpoint index ifindex is bound to (0: none).
func (b bindingMaps) get(ifindex int) (uint32, error) {
	var v bpf.IfaceValue
	m := b.array
	if ifindex >= int(b.array.MaxEntries()) {
		m = b.big
	}
	err := m.Lookup(uint32(ifindex), &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, nil
	}
	return v.Endpoint, err
}

// passing returns the ifindexes bound to bpf.EndpointPass (interfaces a
// detach or unload was taking polc off), reading each map in one batch.
func (b bindingMaps) passing() (map[int]bool, error) {
	out := map[int]bool{}
	n := int(b.array.MaxEntries())
	keys := make([]uint32, n)
	vals := make([]bpf.IfaceValue, n)
	var cursor ebpf.MapBatchCursor
	got, err := b.array.BatchLookup(&cursor, keys, vals, nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, fmt.Errorf("read %s: %w", bpf.MapIfaceEndpoints, err)
	}
	for i := range got {
		if vals[i].Endpoint == bpf.EndpointPass {
			out[int(keys[i])] = true
		}
	}
	var k uint32
	var v bpf.IfaceValue
	it := b.big.Iterate()
	for it.Next(&k, &v) {
		if v.Endpoint == bpf.EndpointPass {
			out[int(k)] = true
		}
	}
	return out, it.Err()
}

// isTC reports whether an attachment is one of the tc hooks, which run on
// an endpoint's interface and need its binding.
func (a *Attachment) isTC() bool { return a.Hook != bundle.HookUplinkXDP }
