package bench

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/bundle"
	polcrt "github.com/polc-dev/polc/runtime"
)

// Config is one way of filtering the sink's traffic.
type Config interface {
	// Name is the configuration's name in tables and in BENCH_CONFIGS.
	Name() string
	// Filters reports whether the configuration drops traffic that no
	// rule allows (the baselines do not).
	Filters() bool
	// Install puts the ruleset in place on r. reset, if not nil, empties
	// the configuration's own flow state between rounds (the sink's
	// netfilter conntrack is flushed for every configuration).
	Install(t testing.TB, r *Rig, rs Ruleset) (reset func() error, err error)
}

type simple struct {
	name    string
	filters bool
	install func(t testing.TB, r *Rig, rs Ruleset) (func() error, error)
}

func (c simple) Name() string  { return c.name }
func (c simple) Filters() bool { return c.filters }
func (c simple) Install(t testing.TB, r *Rig, rs Ruleset) (func() error, error) {
	return c.install(t, r, rs)
}

// NoFilter installs nothing.
func NoFilter() Config {
	return simple{"none", false, func(testing.TB, *Rig, Ruleset) (func() error, error) { return nil, nil }}
}

// EmptyTC attaches a program that only returns TCX_NEXT where polc's
// ingress program goes (the generator side's tcx egress): the floor of
// any tc BPF filter.
func EmptyTC() Config {
	return simple{"empty-tc", false, func(t testing.TB, r *Rig, _ Ruleset) (func() error, error) {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Type:         ebpf.SchedCLS,
			License:      "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1 /* TCX_NEXT */), asm.Return()},
		})
		if err != nil {
			return nil, fmt.Errorf("empty program: %w", err)
		}
		t.Cleanup(func() { prog.Close() })
		var l link.Link
		if err := r.Gen.Do(func() error {
			idx, err := netInterfaceIndex(IfName)
			if err != nil {
				return err
			}
			l, err = link.AttachTCX(link.TCXOptions{Interface: idx, Program: prog, Attach: ebpf.AttachTCXEgress})
			return err
		}); err != nil {
			return nil, fmt.Errorf("attach empty program: %w", err)
		}
		t.Cleanup(func() { l.Close() })
		return nil, nil
	}}
}

// Polc compiles the ruleset with compile, loads the bundle with
// runtime.Host under a private pin root and attaches it to the
// generator's side of the veth (the host side of the sink endpoint).
func Polc(compile func(src []byte) (*bundle.Bundle, error)) Config {
	return simple{"polc", true, func(t testing.TB, r *Rig, rs Ruleset) (func() error, error) {
		b, err := compile(rs.Policy())
		if err != nil {
			return nil, fmt.Errorf("compile: %w", err)
		}
		root := filepath.Join(polcrt.BPFFSMount, fmt.Sprintf("polc-bench-%d-%06x", os.Getpid(), rand.IntN(1<<24)))
		h := &polcrt.Host{Root: root, LockPath: filepath.Join(t.TempDir(), "polc.lock")}
		const name = "bench"
		if _, err := h.Load(name, b); err != nil {
			return nil, fmt.Errorf("load: %w", err)
		}
		t.Cleanup(func() {
			if _, err := h.Unload(name); err != nil {
				t.Errorf("unload: %v", err)
			}
			_ = os.RemoveAll(root)
		})
		if err := r.Gen.Do(func() error {
			_, err := h.Attach(name, IfName, polcrt.AttachOptions{TC: true, Endpoint: SinkEndpoint})
			return err
		}); err != nil {
			return nil, fmt.Errorf("attach: %w", err)
		}
		ct, err := h.ConntrackTable(name, SinkEndpoint)
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { ct.Close() })
		return func() error { return clearMap(ct) }, nil
	}}
}

// clearMap deletes every entry of a hash map.
func clearMap(m *ebpf.Map) error {
	var keys []bpf.CTKey
	var k bpf.CTKey
	var v []byte
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		return err
	}
	for len(keys) > 0 {
		n := min(len(keys), 4096)
		if _, err := m.BatchDelete(keys[:n], nil); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			// Fall back to one by one (an entry may have gone meanwhile).
			for _, key := range keys[:n] {
				_ = m.Delete(key)
			}
		}
		keys = keys[n:]
	}
	return nil
}

// IPTables is iptables (the legacy x_tables backend: the classic linear
// walk) with one rule per source after a conntrack ESTABLISHED rule.
func IPTables() Config {
	return simple{"iptables", true, func(_ testing.TB, r *Rig, rs Ruleset) (func() error, error) {
		return nil, r.InSink(rs.IPTablesLinear(), "iptables-legacy-restore")
	}}
}

// IPSet is iptables with one rule matching an ipset hash:net of every
// source.
func IPSet() Config {
	return simple{"iptables+ipset", true, func(_ testing.TB, r *Rig, rs Ruleset) (func() error, error) {
		if err := r.InSink(rs.IPSet(), "ipset", "restore"); err != nil {
			return nil, err
		}
		return nil, r.InSink(rs.IPTablesSet(), "iptables-legacy-restore")
	}}
}

// NftLinear is nftables with one rule per source.
func NftLinear() Config {
	return simple{"nft", true, func(_ testing.TB, r *Rig, rs Ruleset) (func() error, error) {
		return nil, r.InSink(rs.NftLinear(), "nft", "-f", "-")
	}}
}

// NftSet is nftables with one rule matching an interval set of every
// source.
func NftSet() Config {
	return simple{"nft-set", true, func(_ testing.TB, r *Rig, rs Ruleset) (func() error, error) {
		return nil, r.InSink(rs.NftSet(), "nft", "-f", "-")
	}}
}
