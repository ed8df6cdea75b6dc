package runtime

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/polc-dev/polc/bpf"
)

// Monitor follows the events of one loaded bundle: the shared ring buffer
// every generation writes (drops always; allowed packets with the
// bundle's cfg_events_allow, or while a monitor asks for them), the count
// of events the full ring buffer refused, and the catalogs that name each
// generation's rules and endpoints. Events are consumed: two monitors of
// one bundle share its events between them.
type Monitor struct {
	p              pins
	name           string
	rd             *ringbuf.Reader
	lost, allow    *ebpf.Map
	mu             sync.Mutex
	catalogs       map[uint32]*Catalog
	allowRequested bool
	rec            ringbuf.Record
}

// ErrNoEventMaps: the loaded bundle has no events_lost and events_allow
// maps (loaded by an older polc).
var ErrNoEventMaps = errors.New("the loaded bundle predates monitoring (unload and load it again)")

// Monitor opens the events of the bundle loaded under name.
func (h *Host) Monitor(name string) (*Monitor, error) {
	st, release, err := h.readOnly(name)
	if err != nil {
		return nil, err
	}
	defer release()
	p := h.pins(name)
	open := func(n string) (*ebpf.Map, error) {
		m, err := ebpf.LoadPinnedMap(filepath.Join(p.shared(), n), nil)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", name, ErrNoEventMaps)
		}
		return m, err
	}
	events, err := open(bpf.MapEvents)
	if err != nil {
		return nil, err
	}
	defer events.Close()
	m := &Monitor{p: p, name: name, catalogs: map[uint32]*Catalog{}}
	if m.lost, err = open(bpf.MapEventsLost); err == nil {
		m.allow, err = open(bpf.MapEventsAllow)
	}
	if err == nil {
		m.rd, err = ringbuf.NewReader(events)
	}
	if err != nil {
		m.Close()
		return nil, err
	}
	if c, err := readCatalog(p, st.Generation); err == nil {
		m.catalogs[st.Generation] = c
	}
	return m, nil
}

// Next returns the next event, waiting until deadline at the most
// (os.ErrDeadlineExceeded then). The zero deadline waits for ever. An
// event is returned within bpf.EventPoll of its submission (the datapath
// batches its wake-ups; bpf.ReadEvent).
func (m *Monitor) Next(deadline time.Time) (bpf.Event, error) {
	var e bpf.Event
	if err := bpf.ReadEvent(m.rd, &m.rec, deadline); err != nil {
		return e, err
	}
	if _, err := binary.Decode(m.rec.RawSample, binary.NativeEndian, &e); err != nil {
		return e, fmt.Errorf("decode event: %w", err)
	}
	return e, nil
}

// Catalog names generation g's rules and endpoints; nil when the
// generation is gone (an apply retired it before the monitor looked) or
// has none.
func (m *Monitor) Catalog(g uint32) *Catalog {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.catalogs[g]; ok {
		return c
	}
	c, err := readCatalog(m.p, g)
	if err != nil {
		c = nil
	}
	m.catalogs[g] = c
	return c
}

// Lost is the number of events the full ring buffer has refused since
// the bundle was loaded.
func (m *Monitor) Lost() (uint64, error) { return sumPerCPU(m.lost) }

func sumPerCPU(m *ebpf.Map) (uint64, error) {
	var per []uint64
	if err := m.Lookup(uint32(0), &per); err != nil {
		return 0, err
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}

// AllowLease is how far ahead RequestAllowEvents asks for allow events:
// the monitor renews it every second, so allow events stop within this
// long after it ends, however it ends (kill -9 included).
const AllowLease = 3 * time.Second

// RequestAllowEvents asks the datapath to report allowed packets too for
// the next AllowLease; call it again (every second) to keep them coming.
func (m *Monitor) RequestAllowEvents() error {
	until := uint64(monotonicNow() + AllowLease)
	if err := m.allow.Update(uint32(0), until, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("request allow events: %w", err)
	}
	m.allowRequested = true
	return nil
}

// monotonicNow is CLOCK_MONOTONIC, which the datapath's clock reads.
func monotonicNow() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// Close stops the reading, and the allow events if this monitor asked for
// them.
func (m *Monitor) Close() error {
	var errs []error
	if m.allowRequested {
		errs = append(errs, m.allow.Update(uint32(0), uint64(0), ebpf.UpdateAny))
	}
	if m.rd != nil {
		errs = append(errs, m.rd.Close())
	}
	for _, mp := range []*ebpf.Map{m.lost, m.allow} {
		if mp != nil {
			errs = append(errs, mp.Close())
		}
	}
	return errors.Join(errs...)
}

// Generation is the generation the bundle runs now (it changes with
// apply).
func (h *Host) Generation(name string) (uint32, error) {
	st, release, err := h.readOnly(name)
	if err != nil {
		return 0, err
	}
	release()
	return st.Generation, nil
}
