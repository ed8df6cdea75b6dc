package bundle_test

import (
	"fmt"
	"log"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/bundle"
)

// Reading a bundle and walking a map's records, as a loader does.
func Example() {
	b, err := bundle.Read("/var/lib/polc/bundles/web")
	if err != nil {
		log.Fatal(err) // errors.Is(err, bundle.ErrCorrupt) for a damaged bundle
	}
	m := b.Map(bundle.MapPolicy)
	fmt.Println(m.Name, m.Type, m.MaxEntries)
	for i := 0; i < m.Len(); i++ {
		k, v := m.Record(i) // raw bytes, as the kernel wants them
		key, val := bundle.DecodePolicyKey(k), bundle.DecodePolicyValue(v)
		fmt.Println(key.Subject, key.Remote, key.Proto, key.Port, val.Verdict, val.Rule)
	}
	if v, ok := b.Constant(bpf.ConstHasIPv6); ok {
		fmt.Println("IPv6:", v)
	}
}
