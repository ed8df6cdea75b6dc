package runtime

import (
	"strings"
	"testing"

	"github.com/polc-dev/polc/compiler/bundle"
)

func recs(pairs ...byte) *bundle.Map {
	m := &bundle.Map{MapSpec: bundle.MapSpec{KeySize: 1, ValueSize: 1}}
	m.Data = append(m.Data, pairs...)
	return m
}

// TestDiffRecords: the delta between two sorted record sets, every case.
func TestDiffRecords(t *testing.T) {
	for _, c := range []struct {
		name       string
		have, want *bundle.Map
		up, del    string
		d          MapDelta
	}{
		{"same", recs(1, 10, 2, 20), recs(1, 10, 2, 20), "", "", MapDelta{}},
		{"none to some", nil, recs(1, 10, 2, 20), "\x01\x0a\x02\x14", "", MapDelta{Added: 2}},
		{"some to none", recs(1, 10, 2, 20), nil, "", "\x01\x02", MapDelta{Removed: 2}},
		{"changed", recs(1, 10, 2, 20), recs(1, 11, 2, 20), "\x01\x0b", "", MapDelta{Changed: 1}},
		{"interleaved", recs(1, 10, 3, 30, 5, 50), recs(2, 20, 3, 31, 6, 60), "\x02\x14\x03\x1f\x06\x3c", "\x01\x05",
			MapDelta{Added: 2, Changed: 1, Removed: 2}},
	} {
		up, del, d := diffRecords("m", c.have, c.want, 1, 1)
		d.Map = ""
		if d != c.d || string(up.Data) != c.up {
			t.Errorf("%s: delta %+v writes %q, want %+v writing %q", c.name, d, up.Data, c.d, c.up)
		}
		var ds string
		for _, k := range del {
			ds += string(k)
		}
		if ds != c.del {
			t.Errorf("%s: deletes %q, want %q", c.name, ds, c.del)
		}
	}
}

// TestProgramsDigest: what a map-only apply may change (content records
// and sizes, rules) leaves the digest alone; anything else changes it.
func TestProgramsDigest(t *testing.T) {
	a := compileBundle(t, podPolicy("app=api", nil))
	b := compileBundle(t, podPolicy("app=api", []int{1, 2, 3}))
	if programsDigest(a) != programsDigest(b) {
		t.Errorf("pods changed the programs digest")
	}
	// rules edited, added and removed: the counters map is rebased
	for name, src := range map[string]string{
		"edit":   strings.Replace(podPolicy("app=api", nil), "on tcp/7777", "on tcp/7778", 1),
		"add":    strings.Replace(podPolicy("app=api", nil), "on tcp/7777\n", "on tcp/7777\n  ingress allow from tier=b on tcp/7779\n", 1),
		"remove": strings.Replace(podPolicy("app=api", nil), "  ingress allow from tier=b on tcp/7777\n", "", 1),
	} {
		if c := compileBundle(t, src); programsDigest(c) != programsDigest(a) {
			t.Errorf("%s a rule: the programs digest changed", name)
		}
	}
	for name, edit := range map[string]func(*bundle.Bundle){
		"constant": func(x *bundle.Bundle) { x.Manifest.Constants[0].Value ^= 1 },
		"object":   func(x *bundle.Bundle) { x.Manifest.Object.SHA256 = "x" },
		"prefilter": func(x *bundle.Bundle) {
			for i := range x.Manifest.Maps {
				if x.Manifest.Maps[i].Name == "prefilter4" {
					x.Manifest.Maps[i].SHA256 = "x"
				}
			}
		},
	} {
		c := compileBundle(t, podPolicy("app=api", nil))
		edit(c)
		if programsDigest(c) == programsDigest(a) {
			t.Errorf("%s: a change the digest does not see", name)
		}
	}
}
