package runtime

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/bundle"
)

// CrashEnv names the environment variable that makes polc kill itself
// (SIGKILL, no cleanup) at a named point of load, apply or unload; tests
// use it to prove that an interrupted run leaves the previous state in
// force. The points are the Crash* constants.
const CrashEnv = "POLC_TEST_CRASH_AT"

// Crash points.
const (
	CrashLoadAfterStage    = "load-after-stage"   // objects pinned, state not written
	CrashApplyAfterStage   = "apply-after-stage"  // new generation pinned, nothing switched
	CrashApplyAfterSwitch  = "apply-after-switch" // one attachment switched, state not written
	CrashApplyAfterCommit  = "apply-after-commit" // state written, old generation not removed
	CrashUnloadAfterMark   = "unload-after-mark"  // state marked unloading, nothing detached
	CrashUnloadAfterPass   = "unload-after-pass"  // every interface passes, programs still attached
	CrashUnloadAfterDetach = "unload-after-detach"
	CrashDetachAfterPass   = "detach-after-pass"   // the interface passes, programs still attached
	CrashDetachAfterLinks  = "detach-after-links"  // programs detached, state not written
	CrashAttachAfterFilter = "attach-after-filter" // a netlink tc filter installed by attach
)

// Host manages the bundles loaded on this machine. The zero value is not
// usable; NewHost gives the defaults.
type Host struct {
	// Root is the pin directory, one subdirectory per name.
	Root string
	// LockPath is the flock every changing operation holds.
	LockPath string
	// TCMode chooses tcx or netlink tc for new attachments.
	TCMode TCMode
	// Notices receives what the operator should know but is not an error
	// (the tcx fallback, recovered leftovers). May be nil.
	Notices io.Writer
	// ParseObject overrides how a bundle's object becomes a collection
	// spec (tests build programs in Go); nil parses the ELF.
	ParseObject func(*bundle.Bundle) (*ebpf.CollectionSpec, error)
	// CrashAt is a crash point (see CrashEnv) for tests.
	CrashAt string
	// ConntrackEntries sizes each endpoint's conntrack table at load (0:
	// ConntrackPerEndpoint). Apply keeps the tables, and their size.
	ConntrackEntries uint32
	// FullApply makes Apply load new programs even where a map-only
	// apply would do (benchmarks, tests).
	FullApply bool

	// cache: the content records of the last generation this Host
	// committed (mapapply.go).
	cache *contentCache
	// retiring is closed when the end of the last map-only apply is
	// done (Wait).
	retiring chan struct{}
	// layout: the shared layout of the last object parsed for it
	// (sharedLayoutOf), which costs a parse of the ELF.
	layout struct {
		object []byte
		value  string
	}
}

// NewHost returns a Host with the default root and lock, and CrashAt from
// the environment.
func NewHost() *Host {
	return &Host{Root: DefaultRoot, LockPath: DefaultLockPath, CrashAt: os.Getenv(CrashEnv)}
}

func (h *Host) crash(point string) {
	if h.CrashAt == point {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL is not instantaneous
	}
}

func (h *Host) notice(format string, args ...any) {
	if h.Notices != nil {
		fmt.Fprintf(h.Notices, "polc: "+format+"\n", args...)
	}
}

func (h *Host) pins(name string) pins { return pins(filepath.Join(h.rootDir(), name)) }

// rootDir is Root with symbolic links resolved, so that a root given as a
// link is followed everywhere, and cleaning up an empty root removes the
// directory, never the link (nor, through it, a root other bundles use).
func (h *Host) rootDir() string {
	if real, err := filepath.EvalSymlinks(h.Root); err == nil {
		return real
	}
	return h.Root
}

// begin checks the environment and the name, takes the host lock and
// recovers the name from an interrupted run. The caller must Unlock.
func (h *Host) begin(name string) (*hostLock, *State, error) {
	if err := ValidName(name); err != nil {
		return nil, nil, err
	}
	h.Wait() // the end of this Host's last map-only apply
	if os.Geteuid() != 0 {
		return nil, nil, fmt.Errorf("%w: polc needs root to load and attach BPF programs", ErrPrivilege)
	}
	lk, err := lockHost(h.LockPath, true)
	if err != nil {
		return nil, nil, err
	}
	// Under the lock: two runs that both find no bpffs would otherwise
	// both mount one, the second hiding the first one's pins.
	if err := EnsureBPFFS(h.Root); err != nil {
		lk.Unlock()
		return nil, nil, err
	}
	st, err := h.recover(name)
	if err != nil {
		lk.Unlock()
		return nil, nil, fmt.Errorf("recover %s: %w", name, err)
	}
	return lk, st, nil
}

func (h *Host) spec(b *bundle.Bundle) (*ebpf.CollectionSpec, error) {
	if h.ParseObject == nil {
		return nil, nil
	}
	return h.ParseObject(b)
}

// recover brings name back to its committed state: without a state, the
// whole directory is the leftover of an interrupted load; with one,
// generations other than the committed one, unlisted link pins and a
// half-written state are removed, and every attachment is switched back
// to the committed generation's program.
func (h *Host) recover(name string) (*State, error) {
	p := h.pins(name)
	if _, err := os.Stat(p.dir()); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	st, err := readState(p)
	if err != nil {
		return nil, err
	}
	if st == nil {
		h.notice("removing %s: the leftovers of an interrupted load or unload", p.dir())
		return nil, os.RemoveAll(p.dir())
	}
	if st.Unloading {
		h.notice("finishing the interrupted unload of %s", st.Name)
		return nil, h.finishUnload(p, st)
	}
	// Switch back first: the leftovers may hold the tail-call array of
	// the programs the links run. Only an interrupted apply (or its
	// rollback) leaves a link on another generation's program, and it
	// leaves that generation's directory behind too: without one, every
	// link runs the committed generation and there is nothing to look at
	// (which keeps a run's recovery from costing syscalls per attachment).
	gens, err := generations(p)
	if err != nil {
		return nil, err
	}
	interrupted := slices.ContainsFunc(gens, func(g uint32) bool { return g != st.Generation })
	switched := false
	for i := range st.Attachments {
		if !interrupted {
			break
		}
		a := &st.Attachments[i]
		progName := st.Hooks[a.Hook]
		prog, err := ebpf.LoadPinnedProgram(p.prog(st.Generation, progName), nil)
		if err != nil {
			return nil, fmt.Errorf("open program %s of generation %d: %w", progName, st.Generation, err)
		}
		want, _ := progID(prog)
		cur, live, err := linkState(p, a)
		if err == nil && live && a.Mode == ModeTC && cur == 0 {
			// A netlink filter in another network namespace: it cannot
			// be seen (nor switched) from here.
			h.notice("cannot check the tc filter on %s (network namespace %d) from here: run polc there if an apply was interrupted", a.Iface, a.Netns)
		} else if err == nil && live && cur != want {
			h.notice("switching %s back to generation %d", a.Link, st.Generation)
			err = switchProgram(p, a, prog)
			switched = true
		}
		prog.Close()
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	if interrupted {
		// A map-only apply switches the generation map, which the
		// generations share, before it commits: switch it back.
		if err := restoreGeneration(p, st); err != nil {
			return nil, err
		}
		switched = true
	}
	if switched {
		waitForInFlight()
	}
	keep := map[string]bool{stateFile: true, sharedDir: true, linksDir: true, attachmentsFile: true, filepath.Base(p.gen(st.Generation)): true}
	entries, err := os.ReadDir(p.dir())
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !keep[e.Name()] {
			h.notice("removing %s: the leftover of an interrupted run", filepath.Join(p.dir(), e.Name()))
			if err := os.RemoveAll(filepath.Join(p.dir(), e.Name())); err != nil {
				return nil, err
			}
		}
	}
	listed := map[string]bool{}
	for _, a := range st.Attachments {
		listed[a.Link] = true
	}
	links, _ := os.ReadDir(p.links())
	pinned := make(map[string]bool, len(links))
	for _, e := range links {
		rel := linksDir + "/" + e.Name()
		pinned[rel] = true
		if !listed[rel] {
			h.notice("detaching %s: attached by an interrupted run", rel)
			if err := detach(p, &Attachment{Link: rel}); err != nil {
				return nil, err
			}
		}
	}
	if err := h.finishDetaches(p, st, pinned); err != nil {
		return nil, err
	}
	return st, nil
}

// finishDetaches completes the detaches a kill interrupted: a tc
// attachment whose interface passes everything (passThrough ran) is
// detached, and an attachment whose link pin is gone (its detach ran) is
// dropped from the state, which would otherwise make every apply fail on
// it and status call a live interface gone.
func (h *Host) finishDetaches(p pins, st *State, pinned map[string]bool) error {
	if len(st.Attachments) == 0 {
		return nil
	}
	passing := map[int]bool{}
	if st.Detaching {
		bm, err := openBindingMaps(p, st.Generation)
		if err == nil {
			passing, err = bm.passing()
			bm.Close()
		}
		if err != nil {
			return err
		}
	}
	kept := st.Attachments[:0:0]
	var done []Attachment
	for _, a := range st.Attachments {
		pass := a.isTC() && passing[a.Ifindex]
		pinGone := a.Mode != ModeTC && !pinned[a.Link]
		if !pass && !pinGone {
			kept = append(kept, a)
			continue
		}
		h.notice("finishing the interrupted detach of %s from %s", a.Hook, a.Iface)
		if err := detach(p, &a); err != nil {
			return err
		}
		done = append(done, a)
	}
	if len(done) == 0 && !st.Detaching {
		return nil
	}
	if err := deleteAttachments(p, done...); err != nil {
		return err
	}
	st.Attachments, st.Detaching = kept, false
	if err := writeState(p, st); err != nil {
		return err
	}
	for _, a := range done {
		if a.isTC() && !boundElsewhere(st, a.Ifindex) {
			_ = h.unbind(p, st.Generation, a.Ifindex)
		}
	}
	h.dropConntrackTables(p, st, done)
	return nil
}

// leavingTC reports whether any of as is a tc attachment.
func leavingTC(as []Attachment) bool {
	return slices.ContainsFunc(as, func(a Attachment) bool { return a.isTC() })
}

func progID(p *ebpf.Program) (ebpf.ProgramID, error) {
	info, err := p.Info()
	if err != nil {
		return 0, err
	}
	id, _ := info.ID()
	return id, nil
}

func hooksOf(b *bundle.Bundle) map[string]string {
	hooks := map[string]string{}
	for _, p := range b.Manifest.Programs {
		for _, hk := range p.Hooks {
			hooks[hk] = p.Name
		}
	}
	return hooks
}

// LoadResult says what Load or Apply did.
type LoadResult struct {
	State   *State
	Changed bool // false: the same bundle was already in force
	// Path is how: PathLoad, PathFull or PathMapOnly ("" when unchanged).
	Path string
	// Why is, for a full apply, why it could not be map-only.
	Why string
	// Deltas are a map-only apply's changes, per content map.
	Deltas []MapDelta
}

// Load loads b under name: staged into gen-1, then committed by writing
// the state. Loading the bundle that is already loaded does nothing;
// loading a different one under a taken name fails (use Apply).
func (h *Host) Load(name string, b *bundle.Bundle) (*LoadResult, error) {
	digest, err := BundleDigest(b)
	if err != nil {
		return nil, err
	}
	lk, st, err := h.begin(name)
	if err != nil {
		return nil, err
	}
	defer lk.Unlock()
	if st != nil {
		if st.BundleDigest == digest {
			return &LoadResult{State: st}, nil
		}
		return nil, fmt.Errorf("%w: %s runs bundle %.12s; use apply to replace it", ErrAlreadyLoaded, name, st.BundleDigest)
	}
	if n := h.ConntrackEntries; n != 0 && (n < ConntrackMinEntries || n > ConntrackMaxEntries) {
		return nil, fmt.Errorf("conntrack entries %d: each endpoint's table holds %d to %d flows", n, ConntrackMinEntries, ConntrackMaxEntries)
	}
	spec, err := h.spec(b)
	if err != nil {
		return nil, err
	}
	layout, err := h.sharedLayoutOf(b, spec)
	if err != nil {
		return nil, err
	}
	p := h.pins(name)
	fail := func(err error) (*LoadResult, error) {
		_ = os.RemoveAll(p.dir())
		_ = os.Remove(h.rootDir()) // only if empty
		return nil, err
	}
	if err := os.MkdirAll(p.shared(), 0o700); err != nil {
		return fail(err)
	}
	const gen = 1
	ct := h.ConntrackEntries
	if ct == 0 {
		ct = ConntrackPerEndpoint
	}
	l, err := Load(b, LoadOptions{PinDir: p.gen(gen), Generation: gen, Spec: spec, ConntrackEntries: ct})
	if err != nil {
		return fail(err)
	}
	defer l.Close()
	for _, n := range SharedMaps {
		if _, ok := l.Maps[n]; ok {
			if err := os.Rename(p.genMap(gen, n), filepath.Join(p.shared(), n)); err != nil {
				return fail(err)
			}
		}
	}
	if _, err := loadedBindingMaps(l); err != nil {
		return fail(err)
	}
	if err := pinEndpoints(filepath.Join(p.gen(gen), endpointsPin), b.Endpoints); err != nil {
		return fail(err)
	}
	if err := pinCatalog(filepath.Join(p.gen(gen), catalogPin), b); err != nil {
		return fail(err)
	}
	if err := createAttachments(p); err != nil {
		return fail(err)
	}
	h.crash(CrashLoadAfterStage)
	st = &State{
		Name: name, Generation: gen, BundleDigest: digest,
		SourceDigest: b.Manifest.SourceDigest, Compiler: b.Manifest.Compiler, SharedLayout: layout,
		Updated: time.Now().UTC(), Hooks: hooksOf(b), Attachments: []Attachment{}, ConntrackEntries: ct,
		ProgramsDigest: programsDigest(b), ApplyPath: PathLoad,
	}
	if err := writeState(p, st); err != nil {
		return fail(fmt.Errorf("commit: %w", err))
	}
	h.remember(name, st, b)
	return &LoadResult{State: st, Changed: true, Path: PathLoad}, nil
}

// Apply replaces the bundle loaded under name with b, atomically per
// packet, keeping the shared maps (conntrack). See docs/runtime.md:
//
//  1. stage: load b as generation G+1 under gen-(G+1), reusing shared/*;
//  2. switch: update every attachment's link to the new program (each
//     packet runs either the old program with the old maps or the new one
//     with the new maps);
//  3. commit: write the state with generation G+1;
//  4. remove gen-G.
//
// A failure before the commit switches back and removes the stage; a kill
// is undone by the next run's recovery.
func (h *Host) Apply(name string, b *bundle.Bundle) (*LoadResult, error) {
	digest, err := BundleDigest(b)
	if err != nil {
		return nil, err
	}
	lk, st, err := h.begin(name)
	if err != nil {
		return nil, err
	}
	unlock := true
	defer func() {
		if unlock {
			lk.Unlock()
		}
	}()
	if st == nil {
		return nil, fmt.Errorf("%s: %w (use load)", name, ErrNotLoaded)
	}
	if st.BundleDigest == digest {
		return &LoadResult{State: st}, nil
	}
	spec, err := h.spec(b)
	if err != nil {
		return nil, err
	}
	layout, err := h.sharedLayoutOf(b, spec)
	if err != nil {
		return nil, err
	}
	if layout != st.SharedLayout {
		return nil, fmt.Errorf("%w: the flows %s tracks cannot carry over to this bundle (built by %s, loaded one by %s); "+
			"run unload and load instead, which forgets tracked flows", ErrSharedLayout, name, orUnknown(b.Manifest.Compiler), orUnknown(st.Compiler))
	}
	p := h.pins(name)
	hooks := hooksOf(b)
	bindings := map[int]uint32{}  // ifindex → the endpoint's index in b
	tables := map[string]uint32{} // bound endpoint → its index in b
	for _, a := range st.Attachments {
		if hooks[a.Hook] == "" {
			return nil, fmt.Errorf("%w: the new bundle has no program for %s, attached to %s: detach it first", ErrMissingHook, a.Hook, a.Iface)
		}
		if !a.isTC() {
			continue
		}
		if a.Endpoint == "" {
			return nil, fmt.Errorf("%w: %s on %s was attached without an endpoint (by an older polc): detach it, then attach it with --iface %s=ENDPOINT",
				ErrBinding, a.Hook, a.Iface, a.Iface)
		}
		e := b.EndpointNamed(a.Endpoint)
		if e == nil {
			return nil, fmt.Errorf("%w: the new bundle has no endpoint %q, which %s serves: detach %s first (polc detach %s --iface %s), or keep the endpoint",
				ErrBinding, a.Endpoint, a.Iface, a.Iface, name, a.Iface)
		}
		bindings[a.Ifindex] = e.Index
		tables[a.Endpoint] = e.Index
	}
	why := "--full"
	if !h.FullApply {
		// bound endpoints keep their indices (keepIndices); the full
		// path renumbers them itself, so it gets b as it is
		mb, mt, err := keepIndices(p, st, b, tables)
		if err != nil {
			mb, mt = b, tables
		}
		why = h.mapOnlyReason(p, st, mb, mt)
		if why == "" {
			res, retire, err := h.applyMapOnly(name, p, st, mb, digest)
			if err != nil {
				return nil, err
			}
			// The new policy is in force: the rest needs a grace period,
			// so it runs on, under the lock, after Apply returns.
			done := make(chan struct{})
			h.retiring, unlock = done, false
			go func() {
				defer close(done)
				defer lk.Unlock()
				retire()
			}()
			return res, nil
		}
	}
	reuse := map[string]*ebpf.Map{}
	defer func() {
		for _, m := range reuse {
			m.Close()
		}
	}()
	for _, n := range SharedMaps {
		m, err := ebpf.LoadPinnedMap(filepath.Join(p.shared(), n), nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("open shared map %s: %w", n, err)
		}
		reuse[n] = m
	}

	// 1. Stage.
	old, gen := st.Generation, st.Generation+1
	stage := p.gen(gen)
	l, err := Load(b, LoadOptions{PinDir: stage, ReuseMaps: reuse, Generation: gen, Spec: spec})
	if err != nil {
		_ = os.RemoveAll(stage)
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			err = fmt.Errorf("%w (the shared maps %v changed shape: unload and load instead)", err, SharedMaps)
		}
		return nil, err
	}
	defer l.Close()
	// The new generation's conntrack tables and bindings, before any
	// interface runs its programs.
	bm, err := loadedBindingMaps(l)
	if err == nil {
		err = pinEndpoints(filepath.Join(stage, endpointsPin), b.Endpoints)
	}
	if err == nil {
		err = pinCatalog(filepath.Join(stage, catalogPin), b)
	}
	for _, ep := range sortedKeys(tables) {
		if err != nil {
			break
		}
		_, err = placeConntrackTable(p, st, l.Maps[bpf.MapConntrack], ep, tables[ep])
	}
	for ifindex, idx := range bindings {
		if err != nil {
			break
		}
		err = bm.set(ifindex, idx)
	}
	if err != nil {
		_ = os.RemoveAll(stage)
		return nil, err
	}
	h.crash(CrashApplyAfterStage)

	// 2. Switch.
	var switched []*Attachment
	rollback := func(cause error) (*LoadResult, error) {
		errs := []error{cause}
		for _, a := range switched {
			prog, err := ebpf.LoadPinnedProgram(p.prog(old, st.Hooks[a.Hook]), nil)
			if err == nil {
				err = switchProgram(p, a, prog)
				prog.Close()
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("roll back %s: %w", a.Iface, err))
			}
		}
		waitForInFlight()
		_ = os.RemoveAll(stage)
		return nil, errors.Join(errs...)
	}
	for i := range st.Attachments {
		a := &st.Attachments[i]
		if _, live, err := linkState(p, a); err == nil && !live {
			h.notice("%s on %s: the interface is gone; keeping the attachment record until detach", a.Hook, a.Iface)
			continue
		}
		if err := switchProgram(p, a, l.Programs[hooks[a.Hook]]); err != nil {
			return rollback(err)
		}
		switched = append(switched, a)
		h.crash(CrashApplyAfterSwitch)
	}

	// 3. Commit.
	st.Generation, st.BundleDigest = gen, digest
	st.SourceDigest, st.Compiler = b.Manifest.SourceDigest, b.Manifest.Compiler
	st.Hooks, st.Updated = hooks, time.Now().UTC()
	st.ProgramsDigest, st.ApplyPath, st.StandbyStale = programsDigest(b), PathFull, false
	st.FullBecause = why
	if err := writeState(p, st); err != nil {
		st.Generation = old
		return rollback(fmt.Errorf("commit: %w", err))
	}
	h.crash(CrashApplyAfterCommit)

	// 4. Retire the old generation, once no packet runs its programs,
	// carrying its rules' counts over to the same rules of the new one.
	waitForInFlight()
	if err := carryCounters(p, old, gen, b); err != nil {
		h.notice("the rule counters start again at 0: %v", err)
	}
	if err := os.RemoveAll(p.gen(old)); err != nil {
		h.notice("remove generation %d: %v (the next run retries)", old, err)
	}
	h.remember(name, st, b)
	return &LoadResult{State: st, Changed: true, Path: PathFull, Why: why}, nil
}

// Unload detaches everything attached under name and removes its pins.
// Unloading a name that is not loaded does nothing and returns false.
//
// It refuses (ErrOtherNetns, changing nothing) while a netlink tc filter
// of name sits in another network namespace that still exists: it cannot
// be deleted from here, and once the generation's pins are gone the
// kernel empties the tail-call array its entry program uses, so it would
// drop every packet on its interface.
func (h *Host) Unload(name string) (bool, error) {
	lk, st, err := h.begin(name)
	if err != nil {
		return false, err
	}
	defer lk.Unlock()
	if st == nil {
		_ = os.Remove(h.rootDir()) // only if empty
		return false, nil
	}
	p := h.pins(name)
	ns := currentNetns()
	if err := foreignFilters(name, st, ns); err != nil {
		return false, err
	}
	// The intent first: from here on any run finishes the unload.
	st.Unloading = true
	if err := writeState(p, st); err != nil {
		return false, fmt.Errorf("mark %s unloading: %w", name, err)
	}
	h.crash(CrashUnloadAfterMark)
	if err := h.finishUnload(p, st); err != nil {
		return false, err
	}
	return true, nil
}

// finishUnload takes a bundle marked Unloading off every interface and
// removes its pins. Every bound interface passes everything first (both
// directions at once, see passThrough), so that no kill on the way leaves
// an interface policed one way only; then the programs are detached.
func (h *Host) finishUnload(p pins, st *State) error {
	h.passThrough(p, st, st.Attachments)
	h.crash(CrashUnloadAfterPass)
	var errs []error
	for i := range st.Attachments {
		a := &st.Attachments[i]
		// A netlink filter of another namespace is gone with it (see
		// foreignFilters): detach drops it.
		if err := detach(p, a); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	waitForInFlight()
	h.crash(CrashUnloadAfterDetach)
	// Removing the state first is the commit: a kill after it leaves a
	// directory without state, which recovery removes.
	if err := os.Remove(p.state()); err != nil {
		return err
	}
	if err := os.RemoveAll(p.dir()); err != nil {
		return err
	}
	_ = os.Remove(h.rootDir()) // only if empty
	return nil
}

// passThrough makes the bound interfaces of as pass everything (the
// datapath's EndpointPass binding), both hooks of each in one map
// update: the first step of taking polc off them. An ifindex that another
// attachment of st, not in as, shares (another namespace) is left alone.
// Failures only cost the symmetry, so they are notices.
func (h *Host) passThrough(p pins, st *State, as []Attachment) {
	var bm *bindingMaps
	for i := range as {
		a := &as[i]
		if !a.isTC() || sharedWithOthers(st, as, a.Ifindex) {
			continue
		}
		if bm == nil {
			m, err := openBindingMaps(p, st.Generation)
			if err != nil {
				h.notice("%v", err)
				return
			}
			defer m.Close()
			bm = &m
		}
		if err := bm.set(a.Ifindex, bpf.EndpointPass); err != nil {
			h.notice("%v", err)
		}
	}
}

// sharedWithOthers reports whether a tc attachment of st that is not one
// of as uses the binding of ifindex.
func sharedWithOthers(st *State, as []Attachment, ifindex int) bool {
	for i := range st.Attachments {
		a := &st.Attachments[i]
		if !a.isTC() || a.Ifindex != ifindex {
			continue
		}
		if !slices.ContainsFunc(as, func(b Attachment) bool {
			return b.Link == a.Link && b.Hook == a.Hook && b.Netns == a.Netns && b.Ifindex == a.Ifindex
		}) {
			return true
		}
	}
	return false
}

// AttachOptions says what Attach attaches to an interface.
type AttachOptions struct {
	TC  bool // both tc hooks (the endpoint's ingress and egress)
	XDP bool // the XDP prefilter
	// Endpoint is the endpoint of the bundle the interface serves; the tc
	// hooks need it (see binding.go).
	Endpoint string
}

// Attach attaches name's programs to the interface iface of the calling
// thread's network namespace and pins the links. Hooks already attached
// there are left alone. It returns the attachments it made.
func (h *Host) Attach(name, iface string, what AttachOptions) ([]Attachment, error) {
	return h.AttachAll(name, []AttachRequest{{Iface: iface, AttachOptions: what}})
}

// AttachRequest is one interface for AttachAll and what to attach to it.
type AttachRequest struct {
	Iface string
	AttachOptions
}

// AttachAll is Attach for many interfaces under one lock and one
// recovery, in order, stopping at the first error (what was attached
// before it stays). Attaching n interfaces costs time linear in n.
func (h *Host) AttachAll(name string, reqs []AttachRequest) ([]Attachment, error) {
	lk, st, err := h.begin(name)
	if err != nil {
		return nil, err
	}
	defer lk.Unlock()
	if st == nil {
		return nil, fmt.Errorf("%s: %w", name, ErrNotLoaded)
	}
	var made []Attachment
	for _, r := range reqs {
		m, err := h.attachOne(name, st, r.Iface, r.AttachOptions)
		made = append(made, m...)
		if err != nil {
			return made, err
		}
	}
	return made, nil
}

// attachOne attaches what to iface for AttachAll, under its lock.
func (h *Host) attachOne(name string, st *State, iface string, what AttachOptions) (_ []Attachment, retErr error) {
	ifc, err := InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", iface, err)
	}
	var hooks []string
	if what.TC {
		hooks = append(hooks, bundle.HookEndpointEgress, bundle.HookEndpointIngress)
	}
	if what.XDP {
		hooks = append(hooks, bundle.HookUplinkXDP)
	}
	p := h.pins(name)
	if err := os.MkdirAll(p.links(), 0o700); err != nil {
		return nil, err
	}
	ns := currentNetns()
	if what.TC {
		unbind, err := h.bind(p, st, ns, ifc, what.Endpoint)
		if err != nil {
			return nil, err
		}
		// A failure before both hooks are attached unbinds again (unless
		// another attachment shares the binding).
		defer func() {
			if retErr != nil {
				unbind()
			}
		}()
	}
	var made []Attachment
	for _, hook := range hooks {
		progName := st.Hooks[hook]
		if progName == "" {
			return made, fmt.Errorf("bundle %s has no program for %s", name, hook)
		}
		attached := false
		if st.mentions(ns, ifc, hook) {
			attached, err = h.reconcile(p, st, ns, ifc, hook)
			if err != nil {
				return made, err
			}
		}
		if attached {
			continue // already attached: idempotent
		}
		if err := h.refuseStacked(name, ns, ifc, hook); err != nil {
			return made, err
		}
		prog, err := ebpf.LoadPinnedProgram(p.prog(st.Generation, progName), nil)
		if err != nil {
			return made, fmt.Errorf("open program %s: %w", progName, err)
		}
		a := Attachment{
			Iface: iface, Ifindex: ifc.Index, Netns: ns, Hook: hook,
			Link: fmt.Sprintf("%s/%d-%d-%s", linksDir, ns, ifc.Index, hookPinName(hook)),
		}
		if a.isTC() {
			a.Endpoint = what.Endpoint
		}
		// A netlink filter is recorded before it is installed (see attach):
		// nothing else would find it after a kill.
		recorded := false
		record := func(a *Attachment) error {
			if err := putAttachment(p, a); err != nil {
				return err
			}
			st.Attachments = append(st.Attachments, *a)
			recorded = true
			return nil
		}
		err = attach(&a, prog, linkPin(p, &a), h.TCMode, record)
		prog.Close()
		if err != nil {
			if recorded {
				// The filter was not installed: drop its record.
				st.Attachments = st.Attachments[:len(st.Attachments)-1]
				if werr := deleteAttachments(p, a); werr != nil {
					err = errors.Join(err, werr)
				}
			}
			return made, err
		}
		if a.Mode == ModeTC {
			h.crash(CrashAttachAfterFilter)
		}
		if a.Mode == ModeTC && h.TCMode == TCAuto {
			h.notice("the kernel has no tcx: %s attached with a netlink clsact filter", iface)
		}
		if !recorded {
			if err := putAttachment(p, &a); err != nil {
				_ = detach(p, &a)
				return made, err
			}
			st.Attachments = append(st.Attachments, a)
		}
		st.noteAttached(&a)
		made = append(made, a)
	}
	return made, nil
}

// reconcile looks at the records of hook in namespace ns that name iface
// or its ifindex (an interface renamed since it was attached keeps its
// index, and so its link pin): it reports whether ifc is attached there,
// renaming the record when the interface was renamed, and drops the
// records whose attachment is gone (an interface deleted and recreated).
// A live record of another interface that now bears ifc's old name is
// left alone.
func (h *Host) reconcile(p pins, st *State, ns uint64, ifc *net.Interface, hook string) (bool, error) {
	attached, changed := false, false
	kept := st.Attachments[:0:0]
	var dropped []Attachment
	for _, a := range st.Attachments {
		if a.Netns != ns || a.Hook != hook || (a.Iface != ifc.Name && a.Ifindex != ifc.Index) {
			kept = append(kept, a)
			continue
		}
		_, live, err := linkState(p, &a)
		switch {
		case err == nil && live && a.Ifindex == ifc.Index:
			if a.Iface != ifc.Name {
				h.notice("%s was renamed %s: updating its attachment", a.Iface, ifc.Name)
				a.Iface, changed = ifc.Name, true
				if err := putAttachment(p, &a); err != nil {
					return false, err
				}
			}
			attached = true
			kept = append(kept, a)
		case err == nil && live:
			// The interface this was attached to was renamed, and
			// another one now has its old name.
			if other, err := interfaceByIndex(a.Ifindex); err == nil && other.Name != a.Iface {
				a.Iface, changed = other.Name, true
				if err := putAttachment(p, &a); err != nil {
					return false, err
				}
			}
			kept = append(kept, a)
		default:
			_ = detach(p, &a)
			dropped = append(dropped, a)
			changed = true
		}
	}
	if !changed {
		return attached, nil
	}
	st.Attachments = kept
	st.index = nil // rebuilt when next asked
	return attached, deleteAttachments(p, dropped...)
}

// Detach removes name's attachments from iface (in the calling thread's
// network namespace, or in any namespace when the interface is gone);
// what selects tc, XDP or both. Detaching what is not attached does
// nothing.
func (h *Host) Detach(name, iface string, what AttachOptions) ([]Attachment, error) {
	lk, st, err := h.begin(name)
	if err != nil {
		return nil, err
	}
	defer lk.Unlock()
	if st == nil {
		return nil, fmt.Errorf("%s: %w", name, ErrNotLoaded)
	}
	p := h.pins(name)
	ns := currentNetns()
	var leaving []Attachment
	kept := st.Attachments[:0:0]
	for _, a := range st.Attachments {
		isXDP := a.Hook == bundle.HookUplinkXDP
		if a.Iface != iface || (isXDP && !what.XDP) || (!isXDP && !what.TC) {
			kept = append(kept, a)
			continue
		}
		// Interface names repeat across namespaces: detach in the
		// namespace of the attachment, or anywhere once it is gone.
		if _, live, err := linkState(p, &a); a.Netns != ns && err == nil && live {
			kept = append(kept, a)
			continue
		}
		leaving = append(leaving, a)
	}
	if len(leaving) == 0 {
		return nil, nil
	}
	// The interface passes everything first, both ways at once: a kill
	// from here on leaves it unpoliced in both directions, never in one,
	// and the next run's recovery finishes the detach (the state says one
	// is under way; it looks for pass bindings).
	if leavingTC(leaving) {
		st.Detaching = true
		if err := writeState(p, st); err != nil {
			return nil, err
		}
	}
	h.passThrough(p, st, leaving)
	h.crash(CrashDetachAfterPass)
	var removed []Attachment
	for _, a := range leaving {
		if err := detach(p, &a); err != nil {
			return removed, err
		}
		removed = append(removed, a)
	}
	h.crash(CrashDetachAfterLinks)
	if err := deleteAttachments(p, removed...); err != nil {
		return removed, err
	}
	st.Attachments, st.Detaching = kept, false
	if err := writeState(p, st); err != nil {
		return removed, err
	}
	// Unbind after the programs are gone from the interface, unless
	// another attachment (the same ifindex in another namespace) still
	// serves the endpoint.
	for _, a := range removed {
		if a.isTC() && !boundElsewhere(st, a.Ifindex) {
			if err := h.unbind(p, st.Generation, a.Ifindex); err != nil {
				h.notice("%v (harmless: nothing of %s runs on %s any more)", err, name, a.Iface)
			}
		}
	}
	h.dropConntrackTables(p, st, removed)
	return removed, nil
}

// refuseStacked fails with ErrStacked when another bundle loaded under
// h.Root runs on ifc's hook: with tcx the first program's verdict ends
// the chain, so a second bundle would show as attached and do nothing
// (and two bindings of one interface could disagree).
func (h *Host) refuseStacked(name string, ns uint64, ifc *net.Interface, hook string) error {
	entries, err := os.ReadDir(h.rootDir())
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() || e.Name() == name {
			continue
		}
		p := h.pins(e.Name())
		st, err := readState(p)
		if err != nil || st == nil {
			continue // another name's trouble is its own recovery's
		}
		for i := range st.Attachments {
			a := &st.Attachments[i]
			if a.Netns != ns || a.Ifindex != ifc.Index || a.Hook != hook {
				continue
			}
			if _, live, err := linkState(p, a); err != nil || !live {
				continue
			}
			return fmt.Errorf("%w: %s already runs bundle %s on %s; two bundles on one interface do not combine (the first verdict ends the chain): detach it first (polc detach %s --iface %s)",
				ErrStacked, ifc.Name, st.Name, hook, st.Name, ifc.Name)
		}
	}
	return nil
}

// bind checks that ifc may serve endpoint in st's bundle and writes the
// binding. It returns the function that undoes what it wrote.
func (h *Host) bind(p pins, st *State, ns uint64, ifc *net.Interface, endpoint string) (func(), error) {
	if endpoint == "" {
		return nil, fmt.Errorf("%w: attaching %s needs the endpoint it serves: --iface %s=ENDPOINT (polc inspect BUNDLE lists the endpoints)",
			ErrBinding, ifc.Name, ifc.Name)
	}
	idx, err := endpointIndex(p, st.Generation, endpoint)
	if err != nil {
		return nil, err
	}
	if idx == 0 {
		return nil, fmt.Errorf("%w: bundle %s has no endpoint %q (polc inspect BUNDLE lists the endpoints)", ErrBinding, st.Name, endpoint)
	}
	shared := false
	for i := range st.Attachments {
		if !st.mentionsIfindex(ifc) {
			break // nothing with this ifindex anywhere: no conflict
		}
		a := &st.Attachments[i]
		if !a.isTC() || a.Ifindex != ifc.Index {
			continue
		}
		if _, live, err := linkState(p, a); err != nil || !live {
			continue // gone: reconcile drops its record
		}
		switch {
		case a.Endpoint == endpoint:
			shared = true
		case a.Netns == ns:
			return nil, fmt.Errorf("%w: %s already serves endpoint %q: detach it first to bind it to %q", ErrBinding, ifc.Name, a.Endpoint, endpoint)
		default:
			return nil, fmt.Errorf("%w: ifindex %d is %s in network namespace %d, which serves endpoint %q; the datapath tells interfaces apart by ifindex, so one bundle's interfaces with the same ifindex must serve the same endpoint",
				ErrBinding, ifc.Index, a.Iface, a.Netns, a.Endpoint)
		}
	}
	// the endpoint's conntrack table first: its flows are tracked from
	// the first packet the binding lets through
	outer, err := ebpf.LoadPinnedMap(p.genMap(st.Generation, bpf.MapConntrack), nil)
	if err != nil {
		return nil, fmt.Errorf("open %s of generation %d: %w", bpf.MapConntrack, st.Generation, err)
	}
	created, err := placeConntrackTable(p, st, outer, endpoint, idx)
	outer.Close()
	if err != nil {
		return nil, err
	}
	dropTable := func() {
		if created && !servesElsewhere(st, endpoint) {
			_ = dropConntrackTable(p, st.Generation, endpoint, idx)
		}
	}
	bm, err := openBindingMaps(p, st.Generation)
	if err != nil {
		dropTable()
		return nil, err
	}
	defer bm.Close()
	if err := bm.set(ifc.Index, idx); err != nil {
		dropTable()
		return nil, err
	}
	return func() {
		if !shared && !boundElsewhere(st, ifc.Index) {
			_ = h.unbind(p, st.Generation, ifc.Index)
		}
		dropTable()
	}, nil
}

// dropConntrackTables drops the conntrack table of each endpoint a tc
// attachment of gone served, once no attachment st lists serves it.
func (h *Host) dropConntrackTables(p pins, st *State, gone []Attachment) {
	for _, a := range gone {
		if !a.isTC() || a.Endpoint == "" || servesElsewhere(st, a.Endpoint) {
			continue
		}
		idx, err := endpointIndex(p, st.Generation, a.Endpoint)
		if err == nil {
			err = dropConntrackTable(p, st.Generation, a.Endpoint, idx)
		}
		if err != nil {
			h.notice("drop the conntrack table of %q: %v (unload frees it)", a.Endpoint, err)
		}
	}
}

func (h *Host) unbind(p pins, gen uint32, ifindex int) error {
	bm, err := openBindingMaps(p, gen)
	if err != nil {
		return err
	}
	defer bm.Close()
	return bm.set(ifindex, 0)
}

// boundElsewhere reports whether a tc attachment st still lists uses the
// binding of ifindex.
func boundElsewhere(st *State, ifindex int) bool {
	for i := range st.Attachments {
		if st.Attachments[i].isTC() && st.Attachments[i].Ifindex == ifindex {
			return true
		}
	}
	return false
}

// foreignFilters refuses, with ErrOtherNetns, to go on while one of st's
// netlink tc filters sits in a network namespace other than ns that still
// exists, naming each such namespace, its interfaces and how to get there.
func foreignFilters(name string, st *State, ns uint64) error {
	alive := map[uint64]bool{}
	ifaces := map[uint64][]string{}
	var order []uint64
	for _, a := range st.Attachments {
		if a.Mode != ModeTC || a.Netns == ns {
			continue
		}
		live, seen := alive[a.Netns]
		if !seen {
			live = netnsAlive(a.Netns) // else gone with its filters
			alive[a.Netns] = live
			if live {
				order = append(order, a.Netns)
			}
		}
		if live && !slices.Contains(ifaces[a.Netns], a.Iface) {
			ifaces[a.Netns] = append(ifaces[a.Netns], a.Iface)
		}
	}
	if len(order) == 0 {
		return nil
	}
	var where []string
	for _, n := range order {
		enter := "nsenter --net=/run/netns/NS"
		if path := netnsPath(n); path != "" {
			enter = "nsenter --net=" + path
		}
		where = append(where, fmt.Sprintf("on %s in network namespace %d (%s polc unload %s)",
			strings.Join(ifaces[n], ", "), n, enter, name))
	}
	return fmt.Errorf("%w: %s has netlink tc filters %s; they can be removed only from there, and unloading from here would leave them dropping every packet: run polc detach or polc unload there first",
		ErrOtherNetns, name, strings.Join(where, "; "))
}

// netnsPath is a path that names the network namespace with inode ino
// (an ip netns mount under /run/netns), or "" if there is none.
func netnsPath(ino uint64) string {
	for _, dir := range []string{"/run/netns", "/var/run/netns"} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			var st unix.Stat_t
			path := filepath.Join(dir, e.Name())
			if unix.Stat(path, &st) == nil && st.Ino == ino {
				return path
			}
		}
	}
	return ""
}
