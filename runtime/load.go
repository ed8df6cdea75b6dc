package runtime

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/bundle"
)

// LoadOptions configures Load.
type LoadOptions struct {
	// PinDir, when set, is where Load pins what it creates: maps under
	// PinDir/maps/NAME and programs under PinDir/progs/NAME. "" pins
	// nothing (the test harness).
	PinDir string
	// ReuseMaps are existing maps used instead of creating the object's
	// maps of the same names (conntrack across apply). Names the object
	// does not have are ignored. Load neither fills nor pins nor closes them.
	ReuseMaps map[string]*ebpf.Map
	// Generation is written into the generation map (bpf.MapGeneration):
	// the policy generation the datapath stamps into conntrack entries,
	// whose low bit selects the content maps' slot.
	Generation uint32
	// Spec is the parsed object; nil parses the bundle's Object. Tests pass
	// programs built with cilium/ebpf's asm package here.
	Spec *ebpf.CollectionSpec
	// ConntrackEntries, when non-zero, sizes the conntrack table of each
	// endpoint (the tables the outer conntrack map's template describes;
	// Load creates none).
	ConntrackEntries uint32
}

// Loaded is a bundle in the kernel: its programs by name, and its maps by
// name (reused maps included). A content map (bpf.ContentMaps) is the
// outer array; Content holds its inner maps, one per slot.
type Loaded struct {
	Programs map[string]*ebpf.Program
	Maps     map[string]*ebpf.Map
	Content  map[string][bpf.ContentSlots]*ebpf.Map
	// Generation is the generation Load wrote into the generation map.
	Generation uint32
	reused     map[string]bool
}

// Active is the inner map of content map name that the loaded generation
// looks up, or the map itself where the object has a plain map.
func (l *Loaded) Active(name string) *ebpf.Map {
	if in, ok := l.Content[name]; ok {
		return in[bpf.ContentSlot(l.Generation)]
	}
	return l.Maps[name]
}

// Close releases the programs and the maps Load created. What is pinned
// or attached stays in the kernel.
func (l *Loaded) Close() error {
	var errs []error
	for _, p := range l.Programs {
		errs = append(errs, p.Close())
	}
	for _, in := range l.Content {
		for _, m := range in {
			if m != nil {
				errs = append(errs, m.Close())
			}
		}
	}
	for n, m := range l.Maps {
		if !l.reused[n] {
			errs = append(errs, m.Close())
		}
	}
	return errors.Join(errs...)
}

// Load creates the bundle's maps with the manifest's sizes, fills them
// with batch updates, sets the constants, loads the programs the manifest
// names, fills the tail-call array per the manifest's layout, and pins all
// of it under opts.PinDir if set. On error nothing stays loaded and the
// pins it made are removed.
func Load(b *bundle.Bundle, opts LoadOptions) (_ *Loaded, err error) {
	spec, err := prepare(b, opts)
	if err != nil {
		return nil, err
	}
	man := &b.Manifest
	reuse := map[string]*ebpf.Map{}
	for n, m := range opts.ReuseMaps {
		if _, ok := spec.Maps[n]; ok {
			reuse[n] = m
		}
	}

	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: reuse})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load programs: %w", err)
		}
		return nil, fmt.Errorf("load bundle: %w", err)
	}
	l := &Loaded{Programs: coll.Programs, Maps: coll.Maps, Content: map[string][bpf.ContentSlots]*ebpf.Map{},
		Generation: opts.Generation, reused: map[string]bool{}}
	for n := range reuse {
		l.reused[n] = true
	}
	var pinned []string
	defer func() {
		if err != nil {
			for _, p := range pinned {
				_ = os.Remove(p)
			}
			l.Close()
		}
	}()

	// Content maps: every slot gets an inner map holding the bundle's
	// records, so that a map-only apply can start from either.
	for _, n := range bpf.ContentMaps {
		s, ok := spec.Maps[n]
		if !ok || s.Type != ebpf.ArrayOfMaps || l.reused[n] {
			continue
		}
		var in [bpf.ContentSlots]*ebpf.Map
		for slot := range uint32(bpf.ContentSlots) {
			m, err := ebpf.NewMap(s.InnerMap)
			if err != nil {
				return nil, fmt.Errorf("map %s slot %d: %w", n, slot, err)
			}
			in[slot] = m
			l.Content[n] = in
			if err := l.Maps[n].Put(slot, m); err != nil {
				return nil, fmt.Errorf("map %s slot %d: %w", n, slot, err)
			}
		}
	}
	if g, ok := l.Maps[bpf.MapGeneration]; ok {
		if err := g.Put(uint32(0), opts.Generation); err != nil {
			return nil, fmt.Errorf("map %s: %w", bpf.MapGeneration, err)
		}
	}
	for i := range b.Maps {
		mp := &b.Maps[i]
		if mp.Len() == 0 || l.reused[mp.Name] {
			continue
		}
		if in, ok := l.Content[mp.Name]; ok {
			for _, m := range in {
				if err := fill(m, mp); err != nil {
					return nil, err
				}
			}
			continue
		}
		if err := fill(l.Maps[mp.Name], mp); err != nil {
			return nil, err
		}
	}
	if tc := man.TailCalls; tc.Map != "" {
		pa := l.Maps[tc.Map]
		for _, s := range tc.Slots {
			if err := pa.Update(s.Index, l.Programs[s.Program], ebpf.UpdateAny); err != nil {
				return nil, fmt.Errorf("tail calls: slot %d ← %s: %w", s.Index, s.Program, err)
			}
		}
	}
	if opts.PinDir != "" {
		for _, kind := range []string{"maps", "progs"} {
			if err := os.MkdirAll(filepath.Join(opts.PinDir, kind), 0o700); err != nil {
				return nil, err
			}
		}
		for _, n := range sortedKeys(l.Maps) {
			// Data sections (.rodata, .bss, .data) live as long as the
			// programs using them, and bpffs refuses dots in names.
			if l.reused[n] || strings.HasPrefix(n, ".") {
				continue
			}
			p := filepath.Join(opts.PinDir, "maps", n)
			if err := l.Maps[n].Pin(p); err != nil {
				return nil, fmt.Errorf("pin map %s: %w", n, err)
			}
			pinned = append(pinned, p)
		}
		for _, n := range sortedKeys(l.Programs) {
			p := filepath.Join(opts.PinDir, "progs", n)
			if err := l.Programs[n].Pin(p); err != nil {
				return nil, fmt.Errorf("pin program %s: %w", n, err)
			}
			pinned = append(pinned, p)
		}
	}
	return l, nil
}

// Validate checks everything about b that Load checks before it touches
// the kernel: that the object parses, has every map of the manifest with
// the records' sizes, every constant with its size, every program the
// manifest names, and a program array that holds every tail-call slot.
// polc inspect runs it, so that a bundle inspect accepts is one load
// accepts (the verifier aside).
func Validate(b *bundle.Bundle) error {
	_, err := prepare(b, LoadOptions{})
	return err
}

// prepare is the part of Load that needs no kernel: the collection spec
// set up from the manifest (sizes, constants, programs, tail-call array).
func prepare(b *bundle.Bundle, opts LoadOptions) (spec *ebpf.CollectionSpec, err error) {
	spec = opts.Spec
	if spec == nil {
		spec, err = ebpf.LoadCollectionSpecFromReader(bytes.NewReader(b.Object))
		if err != nil {
			return nil, fmt.Errorf("parse BPF object: %w", err)
		}
	} else {
		spec = spec.Copy()
	}
	man := &b.Manifest
	for _, s := range man.Programs {
		for _, hk := range s.Hooks {
			switch hk {
			case bundle.HookEndpointEgress, bundle.HookEndpointIngress, bundle.HookUplinkXDP:
			default:
				return nil, fmt.Errorf("program %s: unknown hook %q", s.Name, hk)
			}
		}
	}
	for i := range b.Maps {
		ms := &b.Maps[i].MapSpec
		s, ok := spec.Maps[ms.Name]
		if !ok {
			return nil, fmt.Errorf("map %s: the object has no such map", ms.Name)
		}
		if s.Type == ebpf.ArrayOfMaps && slices.Contains(bpf.ContentMaps, ms.Name) {
			// the records go into the inner maps, one per slot
			if s.InnerMap == nil || s.MaxEntries != bpf.ContentSlots {
				return nil, fmt.Errorf("map %s: the object's array of maps is not %d slots of one map", ms.Name, bpf.ContentSlots)
			}
			s.Contents = nil
			s = s.InnerMap
		}
		if int(s.KeySize) != ms.KeySize || int(s.ValueSize) != ms.ValueSize {
			return nil, fmt.Errorf("map %s: the bundle's records are %d+%d bytes, the object's map %d+%d",
				ms.Name, ms.KeySize, ms.ValueSize, s.KeySize, s.ValueSize)
		}
		if ms.MaxEntries > 0 {
			s.MaxEntries = ms.MaxEntries
		}
		s.Contents = nil
	}
	for _, c := range man.Constants {
		if err := setConstant(spec, c.Name, c.Size, c.Value); err != nil {
			return nil, err
		}
	}
	// One conntrack table per endpoint (the runtime creates them when it
	// binds interfaces): the array has a slot for every endpoint index.
	ct, ok := spec.Maps[bpf.MapConntrack]
	if !ok || ct.Type != ebpf.ArrayOfMaps || ct.InnerMap == nil || ct.InnerMap.Type != ebpf.LRUHash ||
		int(ct.InnerMap.KeySize) != binary.Size(bpf.CTKey{}) || int(ct.InnerMap.ValueSize) != binary.Size(bpf.CTValue{}) {
		return nil, fmt.Errorf("map %s: the object has no per-endpoint conntrack tables this polc knows (rebuild the bundle with this polc)", bpf.MapConntrack)
	}
	// Room for a quarter more endpoints, so that a map-only apply can add
	// endpoints (the array is not switched).
	ct.MaxEntries = conntrackSlots(len(b.Endpoints))
	ct.Contents = nil
	if n := opts.ConntrackEntries; n != 0 {
		ct.InnerMap.MaxEntries = n
	}
	// A reused map keeps the size it was created with.
	for n, m := range opts.ReuseMaps {
		if s, ok := spec.Maps[n]; ok && m != nil {
			s.MaxEntries = m.MaxEntries()
		}
	}
	// Load only the programs the manifest names (hooks and tail calls):
	// each costs verifier time.
	if want := manifestPrograms(man); len(want) > 0 {
		for n := range spec.Programs {
			if !want[n] {
				delete(spec.Programs, n)
			}
		}
		for n := range want {
			if spec.Programs[n] == nil {
				return nil, fmt.Errorf("program %s: the object has no such program", n)
			}
		}
	}
	if tc := man.TailCalls; tc.Map != "" {
		s, ok := spec.Maps[tc.Map]
		if !ok || s.Type != ebpf.ProgramArray {
			return nil, fmt.Errorf("tail calls: the object has no program array %q", tc.Map)
		}
		if tc.Size > 0 {
			s.MaxEntries = tc.Size
		}
		s.Contents = nil
		for _, sl := range tc.Slots {
			if sl.Index >= s.MaxEntries {
				return nil, fmt.Errorf("tail calls: slot %d (%s) is beyond the program array's %d slots", sl.Index, sl.Program, s.MaxEntries)
			}
		}
	}
	return spec, nil
}

func manifestPrograms(m *bundle.Manifest) map[string]bool {
	want := map[string]bool{}
	for _, p := range m.Programs {
		want[p.Name] = true
	}
	for _, s := range m.TailCalls.Slots {
		want[s.Program] = true
	}
	return want
}

func setConstant(spec *ebpf.CollectionSpec, name string, size int, v uint64) error {
	vs, ok := spec.Variables[name]
	if !ok {
		return fmt.Errorf("constant %s: the object has no such variable", name)
	}
	var val any
	switch size {
	case 1:
		val = uint8(v)
	case 2:
		val = uint16(v)
	case 4:
		val = uint32(v)
	case 8:
		val = v
	default:
		return fmt.Errorf("constant %s: unsupported size %d", name, size)
	}
	if err := vs.Set(val); err != nil {
		return fmt.Errorf("constant %s: %w", name, err)
	}
	return nil
}

// fill writes a bundle map's records into m: one batch update, or one
// update per record where the map type has no batch operations (LPM tries).
func fill(m *ebpf.Map, mp *bundle.Map) error {
	n := mp.Len()
	keys := reflect.MakeSlice(reflect.SliceOf(reflect.ArrayOf(mp.KeySize, reflect.TypeFor[byte]())), n, n)
	vals := reflect.MakeSlice(reflect.SliceOf(reflect.ArrayOf(mp.ValueSize, reflect.TypeFor[byte]())), n, n)
	for i := range n {
		k, v := mp.Record(i)
		reflect.Copy(keys.Index(i), reflect.ValueOf(k))
		reflect.Copy(vals.Index(i), reflect.ValueOf(v))
	}
	done, err := m.BatchUpdate(keys.Interface(), vals.Interface(), nil)
	if err == nil && done == n {
		return nil
	}
	for i := range n {
		k, v := mp.Record(i)
		if err := m.Update(k, v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("map %s: record %d: %w", mp.Name, i, err)
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// BundleDigest identifies a bundle: the SHA-256 of its manifest.json,
// which holds the digests of every other file.
func BundleDigest(b *bundle.Bundle) (string, error) {
	d, err := b.RootDigest()
	return strings.TrimPrefix(d, bundle.DigestPrefix), err
}

// ConntrackPerEndpoint is the default size of each endpoint's conntrack
// table: the flows one endpoint can have open at once before its least
// recently used are forgotten (its own only: every endpoint has a table
// of its own). An LRU table is preallocated, about 160 bytes an entry:
// 1.25 MiB per endpoint bound on the host. --conntrack-entries sets
// another size, from ConntrackMinEntries to ConntrackMaxEntries.
const (
	ConntrackPerEndpoint = 8192
	ConntrackMinEntries  = 256
	ConntrackMaxEntries  = 1 << 22
)

// conntrackSlots sizes the conntrack array for n endpoints (indices 1..n):
// a power of two with a quarter to spare, at least 64.
func conntrackSlots(n int) uint32 {
	want := uint32(n) + 1 + uint32(n)/4
	s := uint32(64)
	for s < want {
		s <<= 1
	}
	return s
}
