package harness

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/compiler/eval"
	"github.com/polc-dev/polc/compiler/ir"
	"github.com/polc-dev/polc/dsl"
	"github.com/polc-dev/polc/runtime"
)

// Return codes of the programs under BPF_PROG_TEST_RUN.
const (
	tcActOK   = 0 // TC_ACT_OK
	tcActShot = 2 // TC_ACT_SHOT
	xdpDrop   = 1 // XDP_DROP
	xdpPass   = 2 // XDP_PASS
)

// Kernel is a bundle loaded for testing: its programs and maps in the
// kernel, pinned nowhere and attached nowhere, with events enabled for
// allowed packets too, so that every program run reports its deciding rule.
// A Kernel is not safe for concurrent use.
type Kernel struct {
	loaded  *runtime.Loaded
	events  *ringbuf.Reader
	egress  *ebpf.Program
	ingress *ebpf.Program
	xdp     *ebpf.Program // nil when the bundle has no prefilter
	has4    bool          // cfg_has_ipv4: IPv4 has subjects at all
	has6    bool
	// The ipcache maps, looked up once: ipcache reads them for every
	// packet. The LPM tries are nil when the bundle has no prefixes.
	ipcache4, ipcache4LPM, ipcache6, ipcache6LPM *ebpf.Map
	// ifaces binds the interface programs run on under
	// BPF_PROG_TEST_RUN (testIfindex) to an endpoint before each run.
	ifaces *ebpf.Map
	// endpoints are the bundle's endpoint indices by name.
	endpoints map[string]uint32
	// names are the bundle's endpoint names by index.
	names map[uint32]string
	// conntrack is the array of per-endpoint conntrack tables; tables are
	// the tables (shared with a Share kernel), placed holds the indices
	// whose slot this kernel has filled.
	conntrack *ebpf.Map
	tables    *ctTables
	placed    map[uint32]bool
	// host runs the programs, in a network namespace of the harness's
	// own (netns.go).
	host *hostThread
}

// testIfindex is the interface a tc program meets a packet on under
// BPF_PROG_TEST_RUN: the loopback device of the calling thread's network
// namespace. The harness binds it to the endpoint whose hook it runs.
const testIfindex uint32 = 1

// ErrPrivilege is returned (wrapped) by Open when the process may not
// load BPF programs.
var ErrPrivilege = errors.New("insufficient privileges to load BPF programs")

// Open loads b for testing. The bundle is not modified: the harness's one
// change, cfg_events_allow = 1, is made on a copy of its manifest.
func Open(b *bundle.Bundle) (*Kernel, error) { return OpenWith(b, OpenOptions{}) }

// OpenOptions configure OpenWith.
type OpenOptions struct {
	// Generation sets the policy generation stamped into conntrack (0
	// keeps the object's default, 0).
	Generation uint32
	// Share, when set, is a loaded Kernel whose connection state (the
	// endpoints' conntrack tables, by endpoint name, and the frags map)
	// the new one uses, as `polc apply` keeps conntrack across bundles.
	// Reset on either empties both.
	Share *Kernel
}

// ctTables are the conntrack tables of the endpoints a harness has run
// hooks of, by endpoint name, created on first use (as attach does):
// shared by a Kernel and those opened to Share its state.
type ctTables struct {
	byName map[string]*ebpf.Map
	refs   int
}

// harnessConntrackEntries sizes each endpoint's table: what `polc load`
// gives endpoints by default.
const harnessConntrackEntries = runtime.ConntrackPerEndpoint

func (c *ctTables) release() error {
	c.refs--
	if c.refs > 0 {
		return nil
	}
	var errs []error
	for _, m := range c.byName {
		errs = append(errs, m.Close())
	}
	return errors.Join(errs...)
}

// table places endpoint idx's conntrack table (created on first use) in
// the kernel's conntrack array.
func (k *Kernel) table(idx uint32) error {
	name, ok := k.names[idx]
	if !ok || k.placed[idx] {
		return nil
	}
	m := k.tables.byName[name]
	if m == nil {
		var err error
		if m, err = ebpf.NewMap(runtime.ConntrackTableSpec(harnessConntrackEntries)); err != nil {
			return fmt.Errorf("conntrack table of %s: %w", name, err)
		}
		k.tables.byName[name] = m
	}
	if err := k.conntrack.Update(idx, m, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("conntrack table of %s: %w", name, err)
	}
	k.placed[idx] = true
	return nil
}

// OpenWith is Open with options: a generation and shared connection
// state, to test what happens to live flows when a policy is replaced.
func OpenWith(b *bundle.Bundle, opts OpenOptions) (_ *Kernel, err error) {
	cp := *b
	cp.Manifest.Constants = slices.Clone(b.Manifest.Constants)
	found := false
	for i := range cp.Manifest.Constants {
		if cp.Manifest.Constants[i].Name == bpf.ConstEventsAllow {
			cp.Manifest.Constants[i].Value, found = 1, true
		}
	}
	if !found {
		cp.Manifest.Constants = append(cp.Manifest.Constants, bundle.Constant{Name: bpf.ConstEventsAllow, Size: 4, Value: 1})
	}
	lo := runtime.LoadOptions{PinDir: "", Generation: opts.Generation}
	if opts.Share != nil {
		lo.ReuseMaps = map[string]*ebpf.Map{
			bpf.MapFrags: opts.Share.loaded.Maps[bpf.MapFrags],
		}
	}
	l, err := runtime.Load(&cp, lo)
	if err != nil {
		if errors.Is(err, os.ErrPermission) || runtime.IsEnvironment(err) {
			return nil, fmt.Errorf("%w: %v", ErrPrivilege, err)
		}
		return nil, fmt.Errorf("load bundle: %w", err)
	}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	k := &Kernel{
		loaded:  l,
		egress:  l.Programs[bpf.ProgEndpointEgress],
		ingress: l.Programs[bpf.ProgEndpointIngress],
		xdp:     l.Programs[bpf.ProgPrefilter],
		has4:    true,
		has6:    true,
	}
	if v, ok := b.Constant(bpf.ConstHasIPv4); ok {
		k.has4 = v != 0
	}
	if v, ok := b.Constant(bpf.ConstHasIPv6); ok {
		k.has6 = v != 0
	}
	if k.egress == nil || k.ingress == nil {
		return nil, fmt.Errorf("bundle: programs %s and %s are required", bpf.ProgEndpointEgress, bpf.ProgEndpointIngress)
	}
	for _, name := range []string{bpf.MapEvents, bpf.MapConntrack, bpf.MapFrags, bpf.MapIPCache4, bpf.MapIPCache6, bpf.MapIfaceEndpoints} {
		if l.Maps[name] == nil {
			return nil, fmt.Errorf("bundle: map %s is missing", name)
		}
	}
	k.ipcache4, k.ipcache4LPM = l.Active(bpf.MapIPCache4), l.Active(bpf.MapIPCache4LPM)
	k.ipcache6, k.ipcache6LPM = l.Active(bpf.MapIPCache6), l.Active(bpf.MapIPCache6LPM)
	k.ifaces = l.Maps[bpf.MapIfaceEndpoints]
	k.endpoints = make(map[string]uint32, len(b.Endpoints))
	k.names = make(map[uint32]string, len(b.Endpoints))
	for _, e := range b.Endpoints {
		k.endpoints[e.Name] = e.Index
		k.names[e.Index] = e.Name
	}
	k.conntrack, k.placed = l.Maps[bpf.MapConntrack], map[uint32]bool{}
	if opts.Share != nil {
		k.tables = opts.Share.tables
	} else {
		k.tables = &ctTables{byName: map[string]*ebpf.Map{}}
	}
	k.events, err = ringbuf.NewReader(l.Maps[bpf.MapEvents])
	if err != nil {
		return nil, fmt.Errorf("open events: %w", err)
	}
	k.tables.refs++
	if k.host, err = newHostThread(); err != nil {
		k.events.Close()
		k.tables.release()
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("%w: %v", ErrPrivilege, err)
		}
		return nil, err
	}
	return k, nil
}

// Close unloads everything Open loaded.
func (k *Kernel) Close() error {
	k.host.close()
	return errors.Join(k.events.Close(), k.loaded.Close(), k.tables.release())
}

// runProg runs prog once on frame, on the harness's host thread.
func (k *Kernel) runProg(prog *ebpf.Program, frame []byte) (ret uint32, err error) {
	k.host.do(func() { ret, err = prog.Run(&ebpf.RunOptions{Data: frame}) })
	return ret, err
}

// Reset empties the connection state (conntrack and fragment verdicts) and
// drains stray events, so that the next packet meets a fresh host.
func (k *Kernel) Reset() error {
	if err := clearMap(k.loaded.Maps[bpf.MapFrags]); err != nil {
		return fmt.Errorf("reset %s: %w", bpf.MapFrags, err)
	}
	for name, m := range k.tables.byName {
		if err := clearMap(m); err != nil {
			return fmt.Errorf("reset the conntrack table of %s: %w", name, err)
		}
	}
	for k.events.AvailableBytes() > 0 {
		k.events.SetDeadline(time.Now())
		if _, err := k.events.Read(); err != nil {
			break
		}
	}
	return nil
}

// clearMap deletes every entry of a hash map: it lists the keys first,
// since deleting while walking with NextKey can restart the walk.
func clearMap(m *ebpf.Map) error {
	var keys [][]byte
	for {
		next := make([]byte, m.KeySize())
		var err error
		if len(keys) == 0 {
			err = m.NextKey(nil, &next)
		} else {
			err = m.NextKey(keys[len(keys)-1], &next)
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return err
		}
		keys = append(keys, next)
	}
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

// Local reports whether the kernel's ipcache says addr is a local
// endpoint's address (so that the endpoint's hooks see its packets), the
// way the datapath looks it up: the host hash, then the prefix trie.
func (k *Kernel) Local(addr netip.Addr) (bool, error) {
	ep, err := k.owner(addr)
	return ep != 0, err
}

// owner is the index of the endpoint the kernel's ipcache says owns addr
// (0: none).
func (k *Kernel) owner(addr netip.Addr) (uint32, error) {
	v, ok, err := k.ipcache(addr)
	if !ok || v.Flags&bpf.IPCacheLocal == 0 {
		return 0, err
	}
	return v.Endpoint, err
}

// Identity returns the identity the kernel's ipcache gives addr
// (bpf.IdentityWorld when it has none).
func (k *Kernel) Identity(addr netip.Addr) (uint32, error) {
	v, ok, err := k.ipcache(addr)
	if !ok {
		return bpf.IdentityWorld, err
	}
	return v.Identity, err
}

func (k *Kernel) ipcache(addr netip.Addr) (bpf.IPCacheValue, bool, error) {
	var v bpf.IPCacheValue
	var host, lpm *ebpf.Map
	var hk, lk any
	if addr.Is4() {
		if !k.has4 {
			return v, false, nil
		}
		host, lpm = k.ipcache4, k.ipcache4LPM
		hk, lk = addr.As4(), bpf.LPMKey4{Prefixlen: 32, Addr: addr.As4()}
	} else {
		if !k.has6 {
			return v, false, nil
		}
		host, lpm = k.ipcache6, k.ipcache6LPM
		hk, lk = addr.As16(), bpf.LPMKey6{Prefixlen: 128, Addr: addr.As16()}
	}
	err := host.Lookup(hk, &v)
	if err == nil {
		return v, true, nil
	}
	if !errors.Is(err, ebpf.ErrKeyNotExist) {
		return v, false, fmt.Errorf("ipcache lookup %s: %w", addr, err)
	}
	if lpm == nil {
		return v, false, nil
	}
	err = lpm.Lookup(lk, &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return v, false, nil
	}
	if err != nil {
		return v, false, fmt.Errorf("ipcache lookup %s: %w", addr, err)
	}
	return v, true, nil
}

// KernelPoint is the decision of one tc program run: the endpoint's hook
// for one direction.
type KernelPoint struct {
	Dir     dsl.Direction
	Subject netip.Addr // the address whose endpoint the hook belongs to
	Verdict dsl.Verdict
	Rule    ir.RuleID
	// Audit is the audit rule the event reports for a packet that passed
	// but an audit policy would deny (0: none).
	Audit ir.RuleID
	// SubjectID and RemoteID are the identities the event reports (0 when
	// the datapath did not look them up, see bpf.Event).
	SubjectID, RemoteID uint32
}

// KernelResult is what the kernel did with one packet.
type KernelResult struct {
	Verdict dsl.Verdict
	Rule    ir.RuleID // decided like eval.Result.Rule
	Audit   ir.RuleID // like eval.Result.Audit
	// Prefiltered is set when the XDP prefilter dropped the packet; no
	// tc program ran then.
	Prefiltered bool
	Points      []KernelPoint
}

// Run sends one frame through the kernel as a host meets it. A frame
// from a non-local source arrives on an uplink (uplink true): the XDP
// prefilter sees it first, when the bundle has one. Then the source's
// egress hook runs when its address is local, and the destination's
// ingress hook when its is; both run even when the first drops, so the
// two decisions can be compared with the evaluator's. src and dst are the
// frame's addresses (invalid for non-IP frames: no hook is chosen by
// address then, and the frame goes through the egress hook only, as if
// sent by an endpoint). Each hook runs on an interface bound to its
// endpoint, as attach binds them.
func (k *Kernel) Run(frame []byte, src, dst netip.Addr, uplink bool) (KernelResult, error) {
	return k.run(frame, src, dst, uplink, "")
}

// RunVia is Run for a frame that leaves from the interface of the
// endpoint called via, whatever its source address: the egress hook runs
// bound to via, so a source that is not via's is dropped there
// (ir.RuleSpoofedSource), and the destination's ingress hook then does
// not run, since the packet never gets that far. A name that is no
// endpoint of the bundle is an interface bound to none. via "" is Run from
// no uplink.
func (k *Kernel) RunVia(frame []byte, src, dst netip.Addr, via string) (KernelResult, error) {
	return k.run(frame, src, dst, false, via)
}

// RunRef runs a frame the way the evaluator's description of it says it
// arrives: from an uplink, from an endpoint's interface (Via), or, for
// non-IP frames, from the interface of an endpoint.
func (k *Kernel) RunRef(frame []byte, ref eval.Packet) (KernelResult, error) {
	src, dst := ref.Src, ref.Dst
	if ref.NonIP {
		src, dst = netip.Addr{}, netip.Addr{}
	}
	if ref.Via != "" {
		return k.RunVia(frame, src, dst, ref.Via)
	}
	return k.Run(frame, src, dst, ref.FromUplink)
}

func (k *Kernel) run(frame []byte, src, dst netip.Addr, uplink bool, via string) (KernelResult, error) {
	var res KernelResult
	viaIndex := uint32(0)
	if via != "" {
		viaIndex = k.endpoints[via] // 0 for no endpoint: unbound
		uplink = false
	}
	if uplink && k.xdp != nil {
		ret, err := k.runProg(k.xdp, frame)
		if err != nil {
			return res, fmt.Errorf("run %s: %w", bpf.ProgPrefilter, err)
		}
		if ret == xdpDrop {
			res.Verdict, res.Rule, res.Prefiltered = dsl.VerdictDeny, ir.RulePrefilter, true
			return res, nil
		}
		if ret != xdpPass {
			return res, fmt.Errorf("%s returned %d", bpf.ProgPrefilter, ret)
		}
	}
	type hook struct {
		prog     *ebpf.Program
		dir      dsl.Direction
		subject  netip.Addr
		endpoint uint32 // the interface's binding
	}
	var hooks []hook
	if !src.IsValid() || !dst.IsValid() {
		// Non-IP or unreadable addresses: the endpoint that sent it
		// decides (via, or any: these frames are judged before addresses).
		ep := viaIndex
		if via == "" {
			ep = 1
		}
		hooks = append(hooks, hook{k.egress, dsl.Egress, src, ep})
	} else {
		switch {
		case via != "":
			hooks = append(hooks, hook{k.egress, dsl.Egress, src, viaIndex})
		case !uplink:
			if ep, err := k.owner(src); err != nil {
				return res, err
			} else if ep != 0 {
				hooks = append(hooks, hook{k.egress, dsl.Egress, src, ep})
			}
		}
		if ep, err := k.owner(dst); err != nil {
			return res, err
		} else if ep != 0 {
			hooks = append(hooks, hook{k.ingress, dsl.Ingress, dst, ep})
		}
	}
	for _, h := range hooks {
		if err := k.table(h.endpoint); err != nil {
			return res, err
		}
		if err := k.ifaces.Update(testIfindex, bpf.IfaceValue{Endpoint: h.endpoint}, ebpf.UpdateAny); err != nil {
			return res, fmt.Errorf("bind the test interface: %w", err)
		}
		p, err := k.runHook(h.prog, h.dir, frame)
		if err != nil {
			return res, err
		}
		p.Subject = h.subject
		res.Points = append(res.Points, p)
		// A spoofed packet, or one sent on an unbound interface (via
		// a remote endpoint, which has none here), is dropped on its
		// own interface: no other hook sees it (nor may it leave state
		// there).
		if p.Rule == ir.RuleSpoofedSource || p.Rule == ir.RuleUnbound {
			break
		}
	}
	res.combine()
	return res, nil
}

func (k *Kernel) runHook(prog *ebpf.Program, dir dsl.Direction, frame []byte) (KernelPoint, error) {
	p := KernelPoint{Dir: dir}
	name := bpf.ProgEndpointEgress
	if dir == dsl.Ingress {
		name = bpf.ProgEndpointIngress
	}
	ret, err := k.runProg(prog, frame)
	if err != nil {
		return p, fmt.Errorf("run %s: %w", name, err)
	}
	switch ret {
	case tcActOK:
		p.Verdict = dsl.VerdictAllow
	case tcActShot:
		p.Verdict = dsl.VerdictDeny
	default:
		return p, fmt.Errorf("%s returned %d", name, ret)
	}
	ev, err := k.event()
	if err != nil {
		return p, fmt.Errorf("%s: %w", name, err)
	}
	p.Rule, p.SubjectID, p.RemoteID = ir.RuleID(ev.Rule), ev.Subject, ev.Remote
	want := bpf.VerdictAllow
	if p.Verdict == dsl.VerdictDeny {
		want = bpf.VerdictDeny
	}
	if ev.Verdict == bpf.VerdictAudit && p.Verdict == dsl.VerdictAllow {
		want, p.Audit = bpf.VerdictAudit, ir.RuleID(ev.Audit)
	}
	if ev.Verdict != want {
		return p, fmt.Errorf("%s returned %d but reported verdict %d (rule %d)", name, ret, ev.Verdict, ev.Rule)
	}
	return p, nil
}

// event reads the event of the program run that just returned.
func (k *Kernel) event() (bpf.Event, error) {
	var ev bpf.Event
	// in the ring already, without a wake-up (bpf.EventPoll)
	k.events.SetDeadline(time.Now())
	rec, err := k.events.Read()
	if err != nil {
		return ev, fmt.Errorf("no event from the datapath: %w", err)
	}
	if _, err := binary.Decode(rec.RawSample, binary.NativeEndian, &ev); err != nil {
		return ev, fmt.Errorf("decode event: %w", err)
	}
	return ev, nil
}

// combine sets the overall verdict the way the evaluator does: the rule of
// the first point that denied, else of the first point not decided by
// default-allow.
func (r *KernelResult) combine() {
	for _, p := range r.Points {
		if p.Verdict == dsl.VerdictDeny {
			r.Verdict, r.Rule = dsl.VerdictDeny, p.Rule
			return
		}
	}
	r.Verdict, r.Rule = dsl.VerdictAllow, ir.RuleDefaultAllow
	for _, p := range r.Points {
		if r.Audit == 0 {
			r.Audit = p.Audit
		}
	}
	for _, p := range r.Points {
		if p.Rule != ir.RuleDefaultAllow {
			r.Rule = p.Rule
			return
		}
	}
}
