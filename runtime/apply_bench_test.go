package runtime

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/bundle"
)

// benchPolicyEntries is the size of BenchmarkApply's policy map.
const benchPolicyEntries = 100_000

// withPolicy is b with its policy map replaced by n synthetic records:
// subjects from base, and the verdicts of the first flip records denied
// instead of allowed. Sizes are fixed, so bundles made from one b differ
// in policy records only (the same programs).
func withPolicy(b *bundle.Bundle, n int, base uint32, flip int) *bundle.Bundle {
	cp := *b
	cp.Maps = slices.Clone(b.Maps)
	cp.Manifest.Maps = slices.Clone(b.Manifest.Maps)
	type rec struct{ k, v []byte }
	recs := make([]rec, n)
	for i := range n {
		k := bpf.PolicyKey{Subject: base + uint32(i/500), Remote: 300 + uint32(i%500), Port: 80, Proto: 6}
		v := bpf.PolicyValue{Verdict: bpf.VerdictAllow, Rule: 16}
		if i < flip {
			v.Verdict = bpf.VerdictDeny
		}
		kb, _ := binary.Append(nil, binary.LittleEndian, k)
		vb, _ := binary.Append(nil, binary.LittleEndian, v)
		recs[i] = rec{kb, vb}
	}
	sort.Slice(recs, func(i, j int) bool { return bytes.Compare(recs[i].k, recs[j].k) < 0 })
	var data []byte
	for _, r := range recs {
		data = append(append(data, r.k...), r.v...)
	}
	for i := range cp.Maps {
		if cp.Maps[i].Name != bpf.MapPolicy {
			continue
		}
		sum := sha256.Sum256(data)
		spec := cp.Maps[i].MapSpec
		spec.Entries, spec.MaxEntries, spec.SHA256 = n, 131072, hex.EncodeToString(sum[:])
		cp.Maps[i] = bundle.Map{MapSpec: spec, Data: data}
		for j := range cp.Manifest.Maps {
			if cp.Manifest.Maps[j].Name == bpf.MapPolicy {
				cp.Manifest.Maps[j] = spec
			}
		}
	}
	return &cp
}

// BenchmarkApply measures apply on a 100 000-entry policy: a change of
// 1, 10 and 100 entries applied map-only and, as the baseline of the same
// run, the full apply (new programs: what every apply cost before
// map-only apply), a change of 1 by a Host that must read the standby
// back (cold: a new polc process), and a whole-policy replacement both
// ways. Reported in
// ms (median of the rounds) and as ratios full / map-only. Run with
// -benchtime 1x (make bench).
func BenchmarkApply(b *testing.B) {
	h := testHost(b)
	h.ParseObject = nil // the real datapath
	base := compileBundle(b, podPolicy("app=api", nil))
	const name = "bench"
	if _, err := h.Load(name, withPolicy(base, benchPolicyEntries, 1000, 0)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if _, err := h.Unload(name); err != nil {
			b.Error(err)
		}
	})
	const rounds = 5
	round := 0
	cold := false
	apply := func(full bool, bu *bundle.Bundle, want string) time.Duration {
		h.FullApply = full
		if cold {
			h.cache = nil // as a new polc process: read the standby back
		}
		start := time.Now()
		res, err := h.Apply(name, bu)
		d := time.Since(start)
		h.Wait() // the old slot's copy, after the grace period: not timed
		if err != nil {
			b.Fatal(err)
		}
		if res.Path != want {
			b.Fatalf("applied %s (%s), want %s", res.Path, res.Why, want)
		}
		return d
	}
	median := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return float64(ds[len(ds)/2]) / float64(time.Millisecond)
	}
	// each bundle differs from the one in force: alternate the changed
	// entries' verdicts between two bundles (and the flips between runs)
	measure := func(full bool, changed int) float64 {
		var ds []time.Duration
		for range rounds {
			round++
			flip := 0
			if round%2 == 1 {
				flip = changed
			}
			want := PathMapOnly
			if full {
				want = PathFull
			}
			ds = append(ds, apply(full, withPolicy(base, benchPolicyEntries, 1000, flip), want))
		}
		// back to the base policy, unmeasured
		if round%2 == 1 {
			round++
			apply(false, withPolicy(base, benchPolicyEntries, 1000, 0), PathMapOnly)
		}
		return median(ds)
	}
	replace := func(full bool) float64 {
		var ds []time.Duration
		for r := range rounds {
			want := PathMapOnly
			if full {
				want = PathFull
			}
			ds = append(ds, apply(full, withPolicy(base, benchPolicyEntries, 1000+uint32(1000*(r%2+1)), 0), want))
		}
		apply(false, withPolicy(base, benchPolicyEntries, 1000, 0), PathMapOnly)
		return median(ds)
	}
	for range b.N {
		full := measure(true, 1)
		b.ReportMetric(full, "ms-full")
		for _, n := range []int{1, 10, 100} {
			m := measure(false, n)
			b.ReportMetric(m, fmt.Sprintf("ms-map-only-%d", n))
			b.ReportMetric(full/m, fmt.Sprintf("x-faster-%d", n))
		}
		cold = true
		c := measure(false, 1)
		cold = false
		b.ReportMetric(c, "ms-map-only-cold-1")
		b.ReportMetric(full/c, "x-faster-cold-1")
		rf, rm := replace(true), replace(false)
		b.ReportMetric(rf, "ms-replace-full")
		b.ReportMetric(rm, "ms-replace-map-only")
		b.ReportMetric(rf/rm, "x-faster-replace")
	}
}
