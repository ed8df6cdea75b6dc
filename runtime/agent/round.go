package agent

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler"
	"github.com/polc-dev/polc/compiler/bundle"
	"github.com/polc-dev/polc/compiler/lower"
	"github.com/polc-dev/polc/dsl"
	"github.com/polc-dev/polc/dsl/k8s"
	"github.com/polc-dev/polc/runtime"
)

const digestPrefix = bundle.DigestPrefix

// ErrPolicy marks a round that failed because the cluster's objects do
// not compile (the diagnostics are in the message, at KIND/NS/NAME:line:col).
var ErrPolicy = errors.New("policy does not compile")

// round is one pass of the loop: compile what the informers hold, apply
// it, reconcile the attachments. A failure anywhere leaves what is in
// force in force; it is logged and shown in Status until a round succeeds.
func (a *Agent) round() {
	start := time.Now()
	digest, gen, res, err := a.enforce()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status.Rounds++
	a.status.LastRound = time.Since(start)
	a.status.Attached = a.attachedList() // detaches may have run before a failure
	if err != nil {
		a.status.Errors++
		a.status.LastError = err.Error()
		a.status.LastErrorAt = time.Now().UTC()
		a.log.Error("round failed; the last applied bundle stays in force", "bundle", a.status.BundleDigest, "err", err)
		return
	}
	changed := digest != a.status.BundleDigest
	a.status.BundleDigest, a.status.Generation = digest, gen
	if res.Changed {
		a.status.LastApply, a.status.LastApplyWhy = res.Path, res.Why
	}
	a.status.Applied, a.status.Adopted = true, false
	a.status.LastError, a.status.LastErrorAt = "", time.Time{}
	a.status.AppliedAt = time.Now().UTC()
	if changed {
		args := []any{"bundle", digest, "generation", gen, "attached", len(a.attached), "apply", res.Path}
		if res.Why != "" {
			args = append(args, "why", res.Why)
		}
		a.log.Info("enforcing", append(args, "took", time.Since(start).Round(time.Microsecond))...)
	}
}

// enforce compiles, applies and attaches; it returns the bundle in force
// and what the apply did.
//
// Order keeps bundle and attachments consistent: an interface that will
// not serve the same endpoint under the new bundle (its pod is gone, or
// its name now belongs to another pod) is detached first; then the bundle
// is applied; then the interfaces of new pods, whose endpoints the applied
// bundle has, are attached. So an interface never serves an endpoint the
// bundle in force lacks (Host.Apply refuses that anyway).
func (a *Agent) enforce() (digest string, gen uint32, res *runtime.LoadResult, err error) {
	snap, err := a.snapshot()
	if err != nil {
		return "", 0, nil, err
	}
	t0 := time.Now()
	b, err := a.compile(snap)
	a.mu.Lock()
	a.status.LastCompile = time.Since(t0)
	a.mu.Unlock()
	if err != nil {
		return "", 0, nil, err
	}
	want, missing := a.wanted(b, localPods(a.cfg.Node, snap.pods))
	a.reportMissing(missing)
	if err := a.detachStale(want); err != nil {
		return "", 0, nil, err
	}
	res, err = a.loadOrApply(b)
	if err != nil {
		return "", 0, nil, err
	}
	a.loaded = true
	if err := a.attachNew(want); err != nil {
		return "", 0, nil, err
	}
	return digestPrefix + res.State.BundleDigest, res.State.Generation, res, nil
}

// loadOrApply puts b in force: Apply over what is loaded, Load when
// nothing is (also when someone unloaded the bundle behind the agent's
// back: its attachments went with it).
func (a *Agent) loadOrApply(b *bundle.Bundle) (*runtime.LoadResult, error) {
	if a.loaded {
		res, err := a.cfg.Host.Apply(a.cfg.Name, b)
		if !errors.Is(err, runtime.ErrNotLoaded) {
			return res, err
		}
		a.log.Warn("the bundle was unloaded behind the agent's back; loading it again", "name", a.cfg.Name)
		clear(a.attached)
	}
	return a.cfg.Host.Load(a.cfg.Name, b)
}

// compile reads the snapshot's objects and builds the bundle in memory.
func (a *Agent) compile(snap *snapshot) (*bundle.Bundle, error) {
	srcs, err := snap.sources()
	if err != nil {
		return nil, err
	}
	files, diags := k8s.ReadFiles(srcs, readOptions(a.cfg.Node))

	contents := make(compiler.Sources, len(srcs))
	for _, s := range srcs {
		contents[s.Path] = s.Src
	}
	if !diags.HasErrors() {
		prog, more := compiler.Compile(files, contents)
		diags = append(diags, more...)
		if !diags.HasErrors() && prog != nil {
			b, err := lower.Build(prog, bpf.Object(), lower.Options{Compiler: a.cfg.Compiler})
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrPolicy, err)
			}
			return b, nil
		}
	}
	// Errors only: the warnings of a cluster (pods without an address,
	// objects polc ignores) would repeat every round.
	var errs []string
	for _, d := range diags {
		if d.Severity == dsl.Error {
			errs = append(errs, d.String())
		}
	}
	return nil, fmt.Errorf("%w:\n%s", ErrPolicy, strings.Join(errs, "\n"))
}

// missingIface is a local pod whose interface was not found.
type missingIface struct {
	localPod
	err error
}

// wanted maps the host-side interface of every local pod that has an
// endpoint in b to that endpoint.
func (a *Agent) wanted(b *bundle.Bundle, pods []localPod) (map[string]string, []missingIface) {
	want := map[string]string{}
	shared := map[string]bool{}
	var missing []missingIface
	_ = a.cfg.InNetns(func() error {
		for _, p := range pods {
			if b.EndpointNamed(p.endpoint) == nil {
				continue
			}
			ifc, err := a.cfg.Iface.Find(p.addr)
			if err != nil {
				missing = append(missing, missingIface{p, err})
				continue
			}
			if other, dup := want[ifc]; dup {
				// Two pods behind one device: it is not a pod's own
				// interface (a bridge, a shared device); bind neither.
				missing = append(missing, missingIface{p, fmt.Errorf("%s also leads to %s", ifc, other)})
				shared[ifc] = true
				continue
			}
			want[ifc] = p.endpoint
		}
		return nil
	})
	for ifc := range shared {
		delete(want, ifc)
	}
	return want, missing
}

// reportMissing logs each local pod whose interface is not found once
// (a warning), and keeps the list for Status.
func (a *Agent) reportMissing(missing []missingIface) {
	now := make(map[string]string, len(missing))
	for _, m := range missing {
		reason := m.err.Error()
		now[m.endpoint] = reason
		if a.unattached[m.endpoint] != reason {
			a.log.Warn("not attaching a local pod: no interface of its own found", "endpoint", m.endpoint, "addr", m.addr, "err", m.err)
		}
	}
	a.unattached = now
	list := make([]Unattached, 0, len(now))
	for ep, reason := range now {
		list = append(list, Unattached{Endpoint: ep, Reason: reason})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Endpoint < list[j].Endpoint })
	a.mu.Lock()
	a.status.Unattached = list
	a.mu.Unlock()
}

func (a *Agent) detachStale(want map[string]string) error {
	var stale []string
	for ifc, ep := range a.attached {
		if want[ifc] != ep {
			stale = append(stale, ifc)
		}
	}
	sort.Strings(stale)
	return a.cfg.InNetns(func() error {
		for _, ifc := range stale {
			_, err := a.cfg.Host.Detach(a.cfg.Name, ifc, runtime.AttachOptions{TC: true})
			if errors.Is(err, runtime.ErrNotLoaded) {
				// Unloaded behind the agent's back: nothing is attached.
				clear(a.attached)
				a.loaded = false
				return nil
			}
			if err != nil {
				return fmt.Errorf("detach %s (endpoint %s): %w", ifc, a.attached[ifc], err)
			}
			a.log.Info("detached", "iface", ifc, "endpoint", a.attached[ifc])
			delete(a.attached, ifc)
		}
		return nil
	})
}

func (a *Agent) attachNew(want map[string]string) error {
	var reqs []runtime.AttachRequest
	for ifc, ep := range want {
		if a.attached[ifc] != ep {
			reqs = append(reqs, runtime.AttachRequest{Iface: ifc, AttachOptions: runtime.AttachOptions{TC: true, Endpoint: ep}})
		}
	}
	if len(reqs) == 0 {
		return nil
	}
	sort.Slice(reqs, func(i, j int) bool { return reqs[i].Iface < reqs[j].Iface })
	var errs []error
	_ = a.cfg.InNetns(func() error {
		for _, r := range reqs {
			// One at a time: an interface that vanished meanwhile (its pod
			// deleted) must not keep the others unattached. The next
			// round (a change, or the resync) tries the failed ones again.
			if _, err := a.cfg.Host.Attach(a.cfg.Name, r.Iface, r.AttachOptions); err != nil {
				errs = append(errs, fmt.Errorf("attach %s=%s: %w", r.Iface, r.Endpoint, err))
				continue
			}
			a.attached[r.Iface] = r.Endpoint
			a.log.Info("attached", "iface", r.Iface, "endpoint", r.Endpoint)
		}
		return nil
	})
	return errors.Join(errs...)
}

// attachedList is attached sorted by interface; a.mu held.
func (a *Agent) attachedList() []Attached {
	out := make([]Attached, 0, len(a.attached))
	for ifc, ep := range a.attached {
		out = append(out, Attached{Iface: ifc, Endpoint: ep})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Iface < out[j].Iface })
	return out
}
