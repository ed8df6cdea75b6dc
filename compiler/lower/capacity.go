package lower

import (
	"fmt"
	"math/bits"

	"github.com/polc-dev/polc/compiler/bundle"
)

// Limits caps the entries of each content map (by bundle map name). A
// policy that needs more fails to build; nothing is ever truncated.
type Limits map[string]int

// DefaultLimits are sized for the kernel memory of a host agent: about
// 100 MiB for a full policy map, a few MiB for each of the others.
var DefaultLimits = Limits{
	bundle.MapIPCache4:     1 << 20,
	bundle.MapIPCache6:     1 << 20,
	bundle.MapIPCache4LPM:  1 << 18,
	bundle.MapIPCache6LPM:  1 << 18,
	bundle.MapPolicy:       1 << 22,
	bundle.MapPolicyRanges: 1 << 20,
	bundle.MapPrefilter4:   1 << 18,
	bundle.MapPrefilter6:   1 << 18,
}

// CapacityError says that a map's contents exceed its limit.
type CapacityError struct {
	Map          string
	Count, Limit int
}

func (e *CapacityError) Error() string {
	return fmt.Sprintf("map %s needs %d entries, more than its limit of %d", e.Map, e.Count, e.Limit)
}

// minEntries is the smallest max_entries a bundle gives a map, so that an
// unused map is still valid (the kernel rejects 0).
const minEntries = 16

// limit returns the limit for map name: from l, else the default.
func (l Limits) limit(name string) int {
	if n, ok := l[name]; ok {
		return n
	}
	return DefaultLimits[name]
}

// check fails when count exceeds the map's limit.
func (l Limits) check(name string, count int) error {
	if lim := l.limit(name); count > lim {
		return &CapacityError{Map: name, Count: count, Limit: lim}
	}
	return nil
}

// maxEntries sizes a map for count entries with a quarter of headroom,
// rounded up to a power of two (so that small policy changes rarely change
// the size), and never more than the limit.
func (l Limits) maxEntries(name string, count int) uint32 {
	n := count + count/4
	if n < minEntries {
		n = minEntries
	}
	n = 1 << bits.Len(uint(n-1))
	if lim := l.limit(name); n > lim {
		n = max(lim, count, minEntries)
	}
	return uint32(n)
}
