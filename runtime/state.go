package runtime

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"

	"github.com/polc-dev/polc/bpf"
)

// Pin layout of one loaded bundle, under Host.Root/NAME:
//
//	state              pinned 1-entry array map: the State as JSON (the commit point)
//	shared/MAP         maps that survive apply (frags, events)
//	shared/conntrack/E each bound endpoint's conntrack table (ctables.go)
//	gen-G/maps/MAP     generation G's other maps
//	gen-G/progs/PROG   generation G's programs
//	gen-G/endpoints    generation G's endpoint names → indices (binding.go)
//	gen-G/catalog      generation G's rules, identities, endpoints (catalog.go)
//	gen-G/counters_base rule counts carried over from earlier generations (counters.go)
//	links/NETNS-IFINDEX-HOOK pinned tcx and XDP links (they keep enforcement alive)
//
// bpffs refuses names with dots, so none of these (nor bundle names) has one.
//
// Anything else (gen-H for H ≠ the state's generation, state-new, link
// pins the state does not list) is the leftover of an interrupted run and
// is removed by recovery.
const (
	stateFile    = "state"
	stateNewFile = "state-new"
	sharedDir    = "shared"
	linksDir     = "links"
	genPrefix    = "gen-"
)

// SharedMaps are the maps a new generation reuses from the old one
// instead of creating them: fragment state that must survive apply, and
// the events ring buffer, so that a reader follows the bundle across
// applies. Conntrack survives apply too, as per-endpoint tables that each
// generation's conntrack array holds (ctables.go).
var SharedMaps = []string{bpf.MapFrags, bpf.MapEvents, bpf.MapEventsLost, bpf.MapEventsAllow}

// stateValueSize bounds the State's JSON (a few hundred bytes per
// attachment).
const stateValueSize = 256 << 10

// State is what is loaded under one name: written at every commit.
type State struct {
	Name string `json:"name"`
	// Generation counts loads and applies (1 after load); the datapath
	// stamps it into conntrack entries (cfg_generation), so entries of an
	// older generation are checked against the policy again.
	Generation   uint32    `json:"generation"`
	BundleDigest string    `json:"bundle_digest"` // SHA-256 of manifest.json
	SourceDigest string    `json:"source_digest"`
	Compiler     string    `json:"compiler,omitempty"`
	Updated      time.Time `json:"updated"`
	// SharedLayout fingerprints the layout of the shared maps' entries
	// and the conntrack tables' (see sharedLayout); apply keeps them only
	// for a bundle with the same.
	SharedLayout string `json:"shared_layout,omitempty"`
	// ConntrackEntries is the size of each endpoint's conntrack table
	// (0: ConntrackPerEndpoint), set at load.
	ConntrackEntries uint32 `json:"conntrack_entries,omitempty"`
	// Hooks maps each hook (bundle.Hook*) to the program that runs there.
	Hooks map[string]string `json:"hooks"`
	// Attachments are read from the attachments map (attachrecords.go);
	// the state's JSON holds them only where a polc before that map
	// wrote it, and writeState moves them into the map.
	Attachments []Attachment `json:"attachments,omitempty"`
	// ProgramsDigest fingerprints the generation's programs, constants
	// and layout (programsDigest): a bundle with the same is applied
	// map-only.
	ProgramsDigest string `json:"programs_digest,omitempty"`
	// ApplyPath is how the generation came in: load, full or map-only.
	ApplyPath string `json:"apply_path,omitempty"`
	// FullBecause is, when ApplyPath is full, why the apply could not be
	// map-only (LoadResult.Why).
	FullBecause string `json:"full_because,omitempty"`
	// StandbyStale: the content maps' standby slots may differ from the
	// active ones (a map-only apply is under way, or was cut short); the
	// next map-only apply reads them back from the kernel.
	StandbyStale bool `json:"standby_stale,omitempty"`
	// Unloading marks an unload under way: the next run finishes it.
	Unloading bool `json:"unloading,omitempty"`
	// Detaching marks a detach under way: the next run finishes the
	// detach of every interface bound to bpf.EndpointPass.
	Detaching bool `json:"detaching,omitempty"`

	// legacyAttachments: Attachments came from the JSON, not the map.
	legacyAttachments bool
	// index says which interfaces the attachments mention, so that
	// attaching a new interface need not scan them all (mentions).
	index map[ifaceKey]bool
}

// ifaceKey names what State.index knows: an ifindex in any namespace
// and hook (the rest zero), or a hook on an interface of a namespace by
// index or by name.
type ifaceKey struct {
	Netns   uint64
	Ifindex int
	Name    string
	Hook    string
}

func (st *State) indexed() map[ifaceKey]bool {
	if st.index == nil {
		st.index = map[ifaceKey]bool{}
		for i := range st.Attachments {
			st.noteAttached(&st.Attachments[i])
		}
	}
	return st.index
}

// mentionsIfindex reports whether an attachment in any namespace has ifc's
// ifindex (bindings are by ifindex). False: ifc binds without conflict.
func (st *State) mentionsIfindex(ifc *net.Interface) bool {
	return st.indexed()[ifaceKey{Ifindex: ifc.Index}]
}

// mentions reports whether an attachment of hook in ns may concern ifc:
// one with its ifindex or its name. False: ifc certainly has no such
// attachment, and reconcile has nothing to look at.
func (st *State) mentions(ns uint64, ifc *net.Interface, hook string) bool {
	x := st.indexed()
	return x[ifaceKey{Netns: ns, Ifindex: ifc.Index, Hook: hook}] || x[ifaceKey{Netns: ns, Name: ifc.Name, Hook: hook}]
}

// noteAttached adds a to the index (when there is one).
func (st *State) noteAttached(a *Attachment) {
	if st.index == nil {
		return
	}
	st.index[ifaceKey{Ifindex: a.Ifindex}] = true
	st.index[ifaceKey{Netns: a.Netns, Ifindex: a.Ifindex, Hook: a.Hook}] = true
	st.index[ifaceKey{Netns: a.Netns, Name: a.Iface, Hook: a.Hook}] = true
}

// Attachment modes.
const (
	ModeTCX = "tcx" // a pinned tcx link
	ModeTC  = "tc"  // a netlink clsact bpf filter (kernels without tcx)
	ModeXDP = "xdp" // a pinned XDP link
)

// Attachment is one program attached to one interface.
type Attachment struct {
	Iface   string `json:"iface"`
	Ifindex int    `json:"ifindex"`
	Netns   uint64 `json:"netns"` // inode of the network namespace
	Hook    string `json:"hook"`
	Mode    string `json:"mode"`
	Link    string `json:"link,omitempty"` // pin, relative to the bundle's directory
	// Endpoint is the endpoint of the bundle the interface serves (tc
	// hooks; see binding.go). It outlives apply: the new bundle must have
	// an endpoint of that name.
	Endpoint string `json:"endpoint,omitempty"`
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$`)

// ValidName reports whether name can name a loaded bundle.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w %q: use letters, digits, '_' and '-', not starting with '-' (bpffs refuses dots)", ErrInvalidName, name)
	}
	return nil
}

// pins is the pin directory of one name.
type pins string

func (p pins) dir() string    { return string(p) }
func (p pins) state() string  { return filepath.Join(string(p), stateFile) }
func (p pins) shared() string { return filepath.Join(string(p), sharedDir) }
func (p pins) links() string  { return filepath.Join(string(p), linksDir) }
func (p pins) gen(g uint32) string {
	return filepath.Join(string(p), genPrefix+strconv.FormatUint(uint64(g), 10))
}
func (p pins) prog(g uint32, n string) string { return filepath.Join(p.gen(g), "progs", n) }
func (p pins) genMap(g uint32, n string) string {
	return filepath.Join(p.gen(g), "maps", n)
}

// readState returns the committed state, or nil when there is none.
func readState(p pins) (*State, error) {
	m, err := ebpf.LoadPinnedMap(p.state(), nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", p.state(), err)
	}
	defer m.Close()
	buf := make([]byte, m.ValueSize())
	if err := m.Lookup(uint32(0), &buf); err != nil {
		return nil, fmt.Errorf("read state %s: %w", p.state(), err)
	}
	n := binary.LittleEndian.Uint32(buf)
	if int(n) > len(buf)-4 {
		return nil, fmt.Errorf("state %s is corrupt (length %d)", p.state(), n)
	}
	var st State
	if err := json.Unmarshal(buf[4:4+n], &st); err != nil {
		return nil, fmt.Errorf("state %s is corrupt: %w", p.state(), err)
	}
	recs, err := readAttachments(p)
	if err != nil {
		return nil, err
	}
	if recs != nil || len(st.Attachments) == 0 {
		st.Attachments = recs
		if st.Attachments == nil {
			st.Attachments = []Attachment{}
		}
	} else {
		st.legacyAttachments = true
	}
	return &st, nil
}

// writeState commits st: one map update when the state map exists (a
// single syscall, so a kill cannot tear it), else a new map pinned aside
// and renamed into place.
func writeState(p pins, st *State) error {
	if st.legacyAttachments {
		// Written by a polc that kept them in the JSON: move them.
		if _, err := os.Stat(p.attachments()); errors.Is(err, os.ErrNotExist) {
			if err := createAttachments(p); err != nil {
				return err
			}
		}
		for i := range st.Attachments {
			if err := putAttachment(p, &st.Attachments[i]); err != nil {
				return err
			}
		}
		st.legacyAttachments = false
	}
	cp := *st
	cp.Attachments = nil // in their own map
	data, err := json.Marshal(&cp)
	if err != nil {
		return err
	}
	if len(data) > stateValueSize-4 {
		return fmt.Errorf("state of %s too large (%d bytes)", st.Name, len(data))
	}
	buf := make([]byte, stateValueSize)
	binary.LittleEndian.PutUint32(buf, uint32(len(data)))
	copy(buf[4:], data)

	m, err := ebpf.LoadPinnedMap(p.state(), nil)
	if err == nil {
		defer m.Close()
		return m.Update(uint32(0), buf, ebpf.UpdateExist)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("open state: %w", err)
	}
	m, err = ebpf.NewMap(&ebpf.MapSpec{
		Name: "polc_state", Type: ebpf.Array, KeySize: 4, ValueSize: stateValueSize, MaxEntries: 1,
	})
	if err != nil {
		return fmt.Errorf("create state map: %w", err)
	}
	defer m.Close()
	if err := m.Update(uint32(0), buf, ebpf.UpdateAny); err != nil {
		return err
	}
	tmp := filepath.Join(p.dir(), stateNewFile)
	_ = os.Remove(tmp)
	if err := m.Pin(tmp); err != nil {
		return err
	}
	return os.Rename(tmp, p.state())
}

// generations lists the gen-G directories present under p.
func generations(p pins) ([]uint32, error) {
	entries, err := os.ReadDir(p.dir())
	if err != nil {
		return nil, err
	}
	var gens []uint32
	for _, e := range entries {
		if s, ok := strings.CutPrefix(e.Name(), genPrefix); ok {
			if g, err := strconv.ParseUint(s, 10, 32); err == nil {
				gens = append(gens, uint32(g))
			}
		}
	}
	return gens, nil
}
