package runtime

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/bundle"
)

// Map-only apply (docs/runtime.md). When a new bundle has the loaded
// generation's programs — the same object, programs, tail calls,
// constants, map sizes and prefilter, which programsDigest fingerprints
// (rules may differ) — apply loads nothing: it writes the difference
// between the two bundles' content maps (bpf.ContentMaps) into the
// standby slot of each and a counters base for the new rules, then
// switches every packet to that slot, and to the new
// generation number, with one update of the generation map. Packets read
// the generation once at entry, so each sees the whole old policy or the
// whole new one. Once no packet can still use the old slot it gets the
// same difference, so both slots hold the policy in force again.

// Apply paths, as LoadResult.Path and State.ApplyPath report them.
const (
	PathLoad    = "load"
	PathFull    = "full"     // new programs, new maps, links switched
	PathMapOnly = "map-only" // the same programs: content maps updated, one generation switch
)

// MapDelta is what a map-only apply changed in one content map.
type MapDelta struct {
	Map     string `json:"map"`
	Added   int    `json:"added"`
	Changed int    `json:"changed"`
	Removed int    `json:"removed"`
}

// programsDigest fingerprints everything of b that a map-only apply
// keeps from the loaded generation: the object, programs and hooks, tail
// calls, constants, every map's shape, and the size and records of every
// map other than the content maps and the counters. Not the rules: a
// map-only apply rebases the kept counters map for the new rules
// (rebaseCounters), and mapOnlyReason checks that the rule ids fit it.
func programsDigest(b *bundle.Bundle) string {
	m := &b.Manifest
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "object %s\n", m.Object.SHA256)
	for _, p := range m.Programs {
		fmt.Fprintf(&buf, "program %s %v\n", p.Name, p.Hooks)
	}
	fmt.Fprintf(&buf, "tailcalls %s %d %v\n", m.TailCalls.Map, m.TailCalls.Size, m.TailCalls.Slots)
	for _, c := range m.Constants {
		fmt.Fprintf(&buf, "const %s %d %d\n", c.Name, c.Size, c.Value)
	}
	for _, s := range m.Maps {
		fmt.Fprintf(&buf, "map %s %s %d %d %d", s.Name, s.Type, s.KeySize, s.ValueSize, s.Flags)
		// a content map's records, and the rule ids, need only fit
		// (mapOnlyReason)
		if !slices.Contains(bpf.ContentMaps, s.Name) && s.Name != bpf.MapCounters {
			fmt.Fprintf(&buf, " %d %s", s.MaxEntries, s.SHA256)
		}
		buf.WriteByte('\n')
	}
	sum := sha256.Sum256(buf.Bytes())
	return hex.EncodeToString(sum[:])
}

// contentCache remembers the content maps' records of the generation this
// Host last committed, when both slots hold them: the next map-only apply
// then computes its delta without reading the kernel.
type contentCache struct {
	name   string
	gen    uint32
	digest string
	maps   map[string]*bundle.Map
}

func (h *Host) remember(name string, st *State, b *bundle.Bundle) {
	c := &contentCache{name: name, gen: st.Generation, digest: st.BundleDigest, maps: map[string]*bundle.Map{}}
	for _, n := range bpf.ContentMaps {
		if m := b.Map(n); m != nil {
			c.maps[n] = m
		}
	}
	h.cache = c
}

// cached is the cache when it describes what both slots of name hold now.
func (h *Host) cached(name string, st *State) *contentCache {
	c := h.cache
	if c == nil || c.name != name || c.gen != st.Generation || c.digest != st.BundleDigest || st.StandbyStale {
		return nil
	}
	return c
}

// mapOnlyReason says why b cannot be applied map-only over st ("" when it
// can): bound endpoints must keep their indices (interface bindings and
// conntrack tables are by index and not switched), and the conntrack
// array must have a slot for every endpoint.
func (h *Host) mapOnlyReason(p pins, st *State, b *bundle.Bundle, tables map[string]uint32) string {
	if st.ProgramsDigest == "" || st.ProgramsDigest != programsDigest(b) {
		return "programs, constants or layout differ"
	}
	loaded, err := endpointIndices(p, st.Generation, tables)
	for _, ep := range sortedKeys(tables) {
		if err != nil || loaded[ep] != tables[ep] {
			return fmt.Sprintf("bound endpoint %s is renumbered", ep)
		}
	}
	ct, err := ebpf.LoadPinnedMap(p.genMap(st.Generation, bpf.MapConntrack), nil)
	if err != nil {
		return "no conntrack array"
	}
	defer ct.Close()
	top := uint32(0)
	for _, e := range b.Endpoints {
		top = max(top, e.Index)
	}
	if top+1 > ct.MaxEntries() {
		return "more endpoints than the conntrack array has slots"
	}
	ctr, err := ebpf.LoadPinnedMap(p.genMap(st.Generation, bpf.MapCounters), nil)
	if err != nil {
		return "no counters map"
	}
	defer ctr.Close()
	if n := ruleSlots(b); n > ctr.MaxEntries() {
		return fmt.Sprintf("rule ids up to %d, the loaded counters map holds %d", n-1, ctr.MaxEntries())
	}
	if _, err := os.Stat(p.genMap(st.Generation, bpf.MapGeneration)); err != nil {
		return "the loaded generation has no " + bpf.MapGeneration
	}
	for _, n := range bpf.ContentMaps {
		size, err := contentSize(p.genMap(st.Generation, n))
		if err != nil {
			return fmt.Sprintf("the loaded generation's %s: %v", n, err)
		}
		if m := b.Map(n); m != nil && m.Len() > int(size) {
			return fmt.Sprintf("%s needs %d entries, the loaded one holds %d", n, m.Len(), size)
		}
	}
	return ""
}

// contentSize is the max entries of the inner maps of the content map
// pinned at pin.
func contentSize(pin string) (uint32, error) {
	outer, err := ebpf.LoadPinnedMap(pin, nil)
	if err != nil {
		return 0, err
	}
	defer outer.Close()
	var id uint32
	if err := outer.Lookup(uint32(0), &id); err != nil {
		return 0, err
	}
	in, err := ebpf.NewMapFromID(ebpf.MapID(id))
	if err != nil {
		return 0, err
	}
	defer in.Close()
	return in.MaxEntries(), nil
}

// applyMapOnly is Apply's map-only path; see the comment at the top.
//
// It returns once the new policy is in force, with the rest of the work
// (retireMapOnly) for the caller to run under the host lock.
func (h *Host) applyMapOnly(name string, p pins, st *State, b *bundle.Bundle, digest string) (*LoadResult, func(), error) {
	old, gen := st.Generation, st.Generation+1
	standby := bpf.ContentSlot(gen)
	cache := h.cached(name, st)
	h.cache = nil
	// From here on the standby slots may hold anything until the commit
	// says otherwise.
	if !st.StandbyStale {
		st.StandbyStale = true
		if err := writeState(p, st); err != nil {
			return nil, nil, fmt.Errorf("commit: %w", err)
		}
	}

	// 1. Stage: the same programs and maps, pinned again as gen-(G+1),
	// with the new bundle's endpoint names and catalog.
	stage := p.gen(gen)
	fail := func(err error) (*LoadResult, func(), error) {
		_ = os.RemoveAll(stage)
		return nil, nil, err
	}
	if err := repin(p.gen(old), stage); err != nil {
		return fail(err)
	}
	if err := pinEndpoints(filepath.Join(stage, endpointsPin), b.Endpoints); err != nil {
		return fail(err)
	}
	if err := pinCatalog(filepath.Join(stage, catalogPin), b); err != nil {
		return fail(err)
	}
	var deltas []MapDelta
	for _, n := range bpf.ContentMaps {
		want := b.Map(n)
		d, err := syncSlot(p.genMap(old, n), standby, cache, n, want)
		if err != nil {
			return fail(err)
		}
		deltas = append(deltas, d)
	}
	// The counters map is kept: a base for the new rules, from the
	// counts read now, just before the switch.
	if err := rebaseCounters(p, old, stage, b); err != nil {
		return fail(fmt.Errorf("rule counters: %w", err))
	}
	h.crash(CrashApplyAfterStage)

	// 2. Switch: one update, every packet from now on sees gen's slot.
	genMap, err := ebpf.LoadPinnedMap(p.genMap(old, bpf.MapGeneration), nil)
	if err != nil {
		return fail(fmt.Errorf("open %s: %w", bpf.MapGeneration, err))
	}
	defer genMap.Close()
	if err := genMap.Put(uint32(0), gen); err != nil {
		return fail(fmt.Errorf("switch the generation: %w", err))
	}
	h.crash(CrashApplyAfterSwitch)

	// 3. Commit.
	prev := *st
	st.Generation, st.BundleDigest = gen, digest
	st.SourceDigest, st.Compiler = b.Manifest.SourceDigest, b.Manifest.Compiler
	st.Updated, st.ApplyPath, st.FullBecause = time.Now().UTC(), PathMapOnly, ""
	if err := writeState(p, st); err != nil {
		*st = prev
		errs := []error{fmt.Errorf("commit: %w", err)}
		if err := genMap.Put(uint32(0), old); err != nil {
			errs = append(errs, fmt.Errorf("switch the generation back: %w", err))
		}
		waitForInFlight()
		_ = os.RemoveAll(stage)
		return nil, nil, errors.Join(errs...)
	}
	h.crash(CrashApplyAfterCommit)
	res := &LoadResult{State: st, Changed: true, Path: PathMapOnly, Deltas: deltas}
	bg := *st
	retire := func() { h.retireMapOnly(name, p, &bg, b, old, cache) }
	return res, retire, nil
}

// retireMapOnly is the end of a map-only apply, once the new policy is in
// force: after a grace period no packet uses the old slot, which gets the
// new policy too; then gen-(G-1) goes. It runs after Apply returns, under
// the host lock Apply took (Host.Wait waits for it): a kill before it ends
// leaves the standby marked stale and the old generation's pins, which
// the next run's recovery removes.
func (h *Host) retireMapOnly(name string, p pins, st *State, b *bundle.Bundle, old uint32, cache *contentCache) {
	waitForInFlight()
	synced := true
	for _, n := range bpf.ContentMaps {
		if _, err := syncSlot(p.genMap(st.Generation, n), bpf.ContentSlot(old), cache, n, b.Map(n)); err != nil {
			h.notice("bring the standby copy of %s up to date: %v (the next apply reads it back)", n, err)
			synced = false
			break
		}
	}
	if synced {
		st.StandbyStale = false
		if err := writeState(p, st); err != nil {
			st.StandbyStale = true
		}
	}
	if err := os.RemoveAll(p.gen(old)); err != nil {
		h.notice("remove generation %d: %v (the next run retries)", old, err)
	}
	if !st.StandbyStale {
		h.remember(name, st, b)
	}
}

// repin pins every map and program pinned under from/maps and from/progs
// again under to: the same objects. (Not counters_base: rebaseCounters
// writes to's.)
func repin(from, to string) error {
	for _, kind := range []string{"maps", "progs"} {
		if err := os.MkdirAll(filepath.Join(to, kind), 0o700); err != nil {
			return err
		}
		es, err := os.ReadDir(filepath.Join(from, kind))
		if err != nil {
			return err
		}
		for _, e := range es {
			src, dst := filepath.Join(from, kind, e.Name()), filepath.Join(to, kind, e.Name())
			if err := repinOne(kind == "progs", src, dst); err != nil {
				return err
			}
		}
	}
	return nil
}

func repinOne(prog bool, src, dst string) error {
	// A map or program opened from a pin moves that pin when pinned
	// again; one made from a duplicate descriptor gets a pin of its own.
	if prog {
		pr, err := ebpf.LoadPinnedProgram(src, nil)
		if err != nil {
			return fmt.Errorf("open %s: %w", src, err)
		}
		defer pr.Close()
		fd, err := unix.Dup(pr.FD())
		if err != nil {
			return err
		}
		cp, err := ebpf.NewProgramFromFD(fd)
		if err != nil {
			return err
		}
		defer cp.Close()
		return cp.Pin(dst)
	}
	m, err := ebpf.LoadPinnedMap(src, nil)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer m.Close()
	fd, err := unix.Dup(m.FD())
	if err != nil {
		return err
	}
	cp, err := ebpf.NewMapFromFD(fd)
	if err != nil {
		return err
	}
	defer cp.Close()
	return cp.Pin(dst)
}

// syncSlot makes slot of the content map pinned at outerPin hold exactly
// want's records (nil: none), writing only the difference with what it
// holds: cache's records when cache is set, else what the kernel says.
func syncSlot(outerPin string, slot uint32, cache *contentCache, name string, want *bundle.Map) (MapDelta, error) {
	d := MapDelta{Map: name}
	if cache != nil {
		// the same records (their digest in the manifests): nothing to do
		if have := cache.maps[name]; (have == nil || have.Len() == 0) && (want == nil || want.Len() == 0) ||
			have != nil && want != nil && have.SHA256 != "" && have.SHA256 == want.SHA256 {
			return d, nil
		}
	}
	outer, err := ebpf.LoadPinnedMap(outerPin, nil)
	if err != nil {
		return d, fmt.Errorf("open %s: %w", name, err)
	}
	defer outer.Close()
	var id uint32
	if err := outer.Lookup(slot, &id); err != nil {
		return d, fmt.Errorf("%s slot %d: %w", name, slot, err)
	}
	inner, err := ebpf.NewMapFromID(ebpf.MapID(id))
	if err != nil {
		return d, fmt.Errorf("%s slot %d: %w", name, slot, err)
	}
	defer inner.Close()
	var have *bundle.Map
	if cache != nil {
		have = cache.maps[name]
	} else if have, err = readRecords(inner); err != nil {
		return d, fmt.Errorf("read %s slot %d: %w", name, slot, err)
	}
	up, del, d := diffRecords(name, have, want, int(inner.KeySize()), int(inner.ValueSize()))
	if err := deleteRecords(inner, del); err != nil {
		return d, fmt.Errorf("%s: %w", name, err)
	}
	if up.Len() > 0 {
		if err := fill(inner, up); err != nil {
			return d, err
		}
	}
	return d, nil
}

// diffRecords compares two sorted record sets: the records to write
// (added or changed) and the keys to delete.
func diffRecords(name string, have, want *bundle.Map, ks, vs int) (*bundle.Map, [][]byte, MapDelta) {
	d := MapDelta{Map: name}
	up := &bundle.Map{MapSpec: bundle.MapSpec{Name: name, KeySize: ks, ValueSize: vs}}
	var del [][]byte
	hn, wn := 0, 0
	if have != nil {
		hn = have.Len()
	}
	if want != nil {
		wn = want.Len()
	}
	i, j := 0, 0
	for i < hn || j < wn {
		var c int
		switch {
		case i == hn:
			c = 1
		case j == wn:
			c = -1
		default:
			hk, _ := have.Record(i)
			wk, _ := want.Record(j)
			c = bytes.Compare(hk, wk)
		}
		switch {
		case c < 0:
			k, _ := have.Record(i)
			del = append(del, k)
			d.Removed++
			i++
		case c > 0:
			k, v := want.Record(j)
			up.Data = append(append(up.Data, k...), v...)
			d.Added++
			j++
		default:
			_, hv := have.Record(i)
			k, wv := want.Record(j)
			if !bytes.Equal(hv, wv) {
				up.Data = append(append(up.Data, k...), wv...)
				d.Changed++
			}
			i++
			j++
		}
	}
	return up, del, d
}

// readRecords is what m holds, sorted by key as bundles keep records:
// batch lookups where the map type has them, else a walk of its keys.
func readRecords(m *ebpf.Map) (*bundle.Map, error) {
	ks, vs := int(m.KeySize()), int(m.ValueSize())
	type rec struct{ k, v []byte }
	var recs []rec
	const chunk = 4096
	kt := reflect.SliceOf(reflect.ArrayOf(ks, reflect.TypeFor[byte]()))
	vt := reflect.SliceOf(reflect.ArrayOf(vs, reflect.TypeFor[byte]()))
	keys, vals := reflect.MakeSlice(kt, chunk, chunk), reflect.MakeSlice(vt, chunk, chunk)
	kb := unsafeBytes(keys, ks*chunk)
	vb := unsafeBytes(vals, vs*chunk)
	var cursor ebpf.MapBatchCursor
	batched := true
	for {
		n, err := m.BatchLookup(&cursor, keys.Interface(), vals.Interface(), nil)
		for i := range n {
			recs = append(recs, rec{slices.Clone(kb[i*ks : (i+1)*ks]), slices.Clone(vb[i*vs : (i+1)*vs])})
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			batched = false
			break
		}
	}
	if !batched {
		recs = recs[:0]
		it := m.Iterate()
		k, v := make([]byte, ks), make([]byte, vs)
		for it.Next(&k, &v) {
			recs = append(recs, rec{slices.Clone(k), slices.Clone(v)})
		}
		if err := it.Err(); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(recs, func(a, b rec) int { return bytes.Compare(a.k, b.k) })
	out := &bundle.Map{MapSpec: bundle.MapSpec{KeySize: ks, ValueSize: vs}}
	out.Data = make([]byte, 0, len(recs)*(ks+vs))
	for _, r := range recs {
		out.Data = append(append(out.Data, r.k...), r.v...)
	}
	return out, nil
}

// unsafeBytes is the backing array of s, a slice of byte arrays, as n bytes.
func unsafeBytes(s reflect.Value, n int) []byte {
	return unsafe.Slice((*byte)(s.UnsafePointer()), n)
}

// deleteRecords deletes keys from m: one batch where the map type has
// batch operations, else one by one (LPM tries).
func deleteRecords(m *ebpf.Map, keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	ks := int(m.KeySize())
	batch := reflect.MakeSlice(reflect.SliceOf(reflect.ArrayOf(ks, reflect.TypeFor[byte]())), len(keys), len(keys))
	for i, k := range keys {
		reflect.Copy(batch.Index(i), reflect.ValueOf(k))
	}
	if n, err := m.BatchDelete(batch.Interface(), nil); err == nil && n == len(keys) {
		return nil
	}
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete: %w", err)
		}
	}
	return nil
}

// restoreGeneration writes the committed generation into its generation
// map (where the object has one): an apply killed after a map-only
// switch, before its commit, leaves the next generation's number there.
func restoreGeneration(p pins, st *State) error {
	m, err := ebpf.LoadPinnedMap(p.genMap(st.Generation, bpf.MapGeneration), nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", bpf.MapGeneration, err)
	}
	defer m.Close()
	var cur uint32
	if err := m.Lookup(uint32(0), &cur); err == nil && cur == st.Generation {
		return nil
	}
	return m.Put(uint32(0), st.Generation)
}

// Wait returns once the work a map-only apply left running (bringing the
// old slot up to date, under the host lock) is done. Apply waits for it
// first; a process that ends after an apply should call it.
func (h *Host) Wait() {
	if h.retiring != nil {
		<-h.retiring
	}
}

// keepIndices returns b with its endpoints renumbered so that every bound
// endpoint (tables: name → its index in b) keeps the index it has in the
// loaded generation, with the tables by the new indices; b and tables
// themselves when none would move. Endpoints are numbered in name order,
// so a new pod sorting before a bound one would renumber it, and bindings
// and conntrack tables are by index and not switched: a map-only apply
// keeps them where they are and numbers the rest around them instead.
// Besides the endpoint list, an endpoint's index is only in the ipcache
// values (a content map, rewritten here). The other endpoints keep their
// index in b when it is free, else take the lowest free one. The bundle
// digest stays b's: only what is written to the kernel differs.
func keepIndices(p pins, st *State, b *bundle.Bundle, tables map[string]uint32) (*bundle.Bundle, map[string]uint32, error) {
	keep := map[string]uint32{}
	moved := false
	loaded, err := endpointIndices(p, st.Generation, tables)
	if err != nil {
		return nil, nil, err
	}
	for ep, i := range tables {
		idx := loaded[ep]
		if idx == 0 {
			return nil, nil, fmt.Errorf("bound endpoint %s has no index in generation %d", ep, st.Generation)
		}
		keep[ep] = idx
		moved = moved || idx != i
	}
	if !moved {
		return b, tables, nil
	}
	taken := map[uint32]bool{}
	for _, i := range keep {
		taken[i] = true
	}
	var rest []string
	for _, e := range b.Endpoints {
		switch _, bound := keep[e.Name]; {
		case bound:
		case !taken[e.Index]:
			keep[e.Name], taken[e.Index] = e.Index, true
		default:
			rest = append(rest, e.Name)
		}
	}
	next := uint32(1)
	for _, name := range rest {
		for taken[next] {
			next++
		}
		keep[name], taken[next] = next, true
	}
	perm := map[uint32]uint32{} // index in b → index written
	cp := *b
	cp.Endpoints = make([]bundle.Endpoint, len(b.Endpoints))
	for i, e := range b.Endpoints {
		perm[e.Index] = keep[e.Name]
		e.Index = keep[e.Name]
		cp.Endpoints[i] = e
	}
	slices.SortFunc(cp.Endpoints, func(x, y bundle.Endpoint) int { return int(x.Index) - int(y.Index) })
	cp.Maps = slices.Clone(b.Maps)
	cp.Manifest.Maps = slices.Clone(b.Manifest.Maps)
	off := int(unsafe.Offsetof(bpf.IPCacheValue{}.Endpoint))
	for i := range cp.Maps {
		m := &cp.Maps[i]
		switch m.Name {
		case bpf.MapIPCache4, bpf.MapIPCache6, bpf.MapIPCache4LPM, bpf.MapIPCache6LPM:
		default:
			continue
		}
		n := m.KeySize + m.ValueSize
		data := bytes.Clone(m.Data)
		for r := 0; r+n <= len(data); r += n {
			at := data[r+m.KeySize+off:]
			if v := binary.LittleEndian.Uint32(at); v != 0 {
				if nv, ok := perm[v]; ok {
					binary.LittleEndian.PutUint32(at, nv)
				}
			}
		}
		sum := sha256.Sum256(data)
		m.Data, m.SHA256 = data, hex.EncodeToString(sum[:])
		for j := range cp.Manifest.Maps {
			if cp.Manifest.Maps[j].Name == m.Name {
				cp.Manifest.Maps[j].SHA256 = m.SHA256
			}
		}
	}
	nt := make(map[string]uint32, len(tables))
	for ep := range tables {
		nt[ep] = keep[ep]
	}
	return &cp, nt, nil
}
