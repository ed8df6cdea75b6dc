package lower

import (
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPortPrefixes(t *testing.T) {
	cases := []struct {
		lo, hi uint16
		want   []portPrefix
	}{
		{0, 65535, []portPrefix{{0, 0}}},
		{8080, 8080, []portPrefix{{8080, 16}}},
		{8080, 8095, []portPrefix{{8080, 12}}},
		{8080, 8090, []portPrefix{{8080, 13}, {8088, 15}, {8090, 16}}},
		{1, 65534, []portPrefix{{1, 16}, {2, 15}, {4, 14}, {8, 13}, {16, 12}, {32, 11}, {64, 10}, {128, 9}, {256, 8}, {512, 7},
			{1024, 6}, {2048, 5}, {4096, 4}, {8192, 3}, {16384, 2}, {32768, 2}, {49152, 3}, {57344, 4}, {61440, 5}, {63488, 6},
			{64512, 7}, {65024, 8}, {65280, 9}, {65408, 10}, {65472, 11}, {65504, 12}, {65520, 13}, {65528, 14}, {65532, 15}, {65534, 16}}},
		{0x0800, 0x08ff, []portPrefix{{0x0800, 8}}},
		{1024, 65535, []portPrefix{{1024, 6}, {2048, 5}, {4096, 4}, {8192, 3}, {16384, 2}, {32768, 1}}},
	}
	for _, c := range cases {
		if d := cmp.Diff(c.want, portPrefixes(c.lo, c.hi), cmp.AllowUnexported(portPrefix{})); d != "" {
			t.Errorf("portPrefixes(%d, %d) (-want +got):\n%s", c.lo, c.hi, d)
		}
	}
}

// TestPortPrefixesCover checks on random intervals that the blocks are
// aligned, disjoint, in order and cover exactly lo..hi, and that there are
// at most 2·16−2 of them (the bound for the fewest prefixes).
func TestPortPrefixesCover(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		lo, hi := uint16(r.IntN(65536)), uint16(r.IntN(65536))
		if lo > hi {
			lo, hi = hi, lo
		}
		next := uint32(lo)
		ps := portPrefixes(lo, hi)
		for _, p := range ps {
			size := uint32(1) << (16 - p.bits)
			if uint32(p.port) != next || uint32(p.port)%size != 0 {
				t.Fatalf("%d-%d: block %+v not aligned or not contiguous", lo, hi, p)
			}
			next += size
		}
		if next != uint32(hi)+1 || len(ps) > 30 {
			t.Fatalf("%d-%d: blocks %+v", lo, hi, ps)
		}
	}
}

func TestSplitPorts(t *testing.T) {
	got := splitPorts([]portRule{
		{1, 100, false, 16},
		{50, 60, true, 17},
		{55, 200, false, 18},
		{300, 300, false, 20},
		{301, 310, false, 20},
		{400, 410, true, 22},
		{405, 420, true, 21},
	})
	want := []portInterval{
		{1, 49, verdictAcc{allow: 16}},
		{50, 60, verdictAcc{deny: 17, allow: 16}}, // 55..60 also has 18: same value, merged
		{61, 100, verdictAcc{allow: 16}},
		{101, 200, verdictAcc{allow: 18}},
		{300, 310, verdictAcc{allow: 20}}, // adjacent, same rule: merged
		{400, 404, verdictAcc{deny: 22}},
		{405, 420, verdictAcc{deny: 21}},
	}
	if d := cmp.Diff(want, got, cmp.AllowUnexported(portInterval{}, verdictAcc{})); d != "" {
		t.Errorf("splitPorts (-want +got):\n%s", d)
	}
	if got := splitPorts([]portRule{{0, 65535, false, 16}, {65535, 65535, true, 17}}); len(got) != 2 || got[1].lo != 65535 || got[1].hi != 65535 {
		t.Errorf("splitPorts at the top port: %+v", got)
	}
}
