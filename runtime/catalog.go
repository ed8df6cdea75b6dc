package runtime

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/polc-dev/polc/compiler/bundle"
)

// The catalog of a generation: what its rule ids, identities and endpoint
// addresses stand for (the bundle's rules.json, identities.json and
// endpoints.json), so that monitor, status --rules and metrics can name
// them on a host that does not keep the bundle. bpffs holds only maps, so
// it is a gzipped JSON document cut into the values of an array map,
// pinned at gen-G/catalog (catalogPin).

const (
	catalogPin   = "catalog"
	catalogChunk = 64 << 10 // bytes per array value
	// catalogMax bounds what a catalog may hold once unpacked.
	catalogMax = 256 << 20
)

// Catalog names a generation's rules, identities and endpoints.
type Catalog struct {
	Rules      []bundle.Rule     `json:"rules"`
	Identities []bundle.Identity `json:"identities"`
	Endpoints  []bundle.Endpoint `json:"endpoints"`

	rules      map[uint32]*bundle.Rule
	identities map[uint32]*bundle.Identity
	owners     map[netip.Prefix]string // endpoint address → name
	bits4      []int                   // prefix lengths in owners, longest first
	bits6      []int
}

func catalogOf(b *bundle.Bundle) *Catalog {
	return &Catalog{Rules: b.Rules, Identities: b.Identities, Endpoints: b.Endpoints}
}

// index builds the lookups; call it once the catalog is filled.
func (c *Catalog) index() {
	c.rules = make(map[uint32]*bundle.Rule, len(c.Rules))
	for i := range c.Rules {
		c.rules[c.Rules[i].ID] = &c.Rules[i]
	}
	c.identities = make(map[uint32]*bundle.Identity, len(c.Identities))
	for i := range c.Identities {
		c.identities[c.Identities[i].ID] = &c.Identities[i]
	}
	c.owners = map[netip.Prefix]string{}
	seen := map[int]bool{}
	for _, e := range c.Endpoints {
		for _, a := range e.Addrs {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				addr, err2 := netip.ParseAddr(a)
				if err2 != nil {
					continue
				}
				p = netip.PrefixFrom(addr, addr.BitLen())
			}
			p = p.Masked()
			if _, dup := c.owners[p]; !dup {
				c.owners[p] = e.Name
			}
			key := p.Bits()
			if p.Addr().Is6() {
				key += 1000
			}
			if !seen[key] {
				seen[key] = true
				if p.Addr().Is4() {
					c.bits4 = append(c.bits4, p.Bits())
				} else {
					c.bits6 = append(c.bits6, p.Bits())
				}
			}
		}
	}
	for _, bs := range [][]int{c.bits4, c.bits6} { // longest first
		slices.Sort(bs)
		slices.Reverse(bs)
	}
}

// Rule returns the rule with id, or nil.
func (c *Catalog) Rule(id uint32) *bundle.Rule { return c.rules[id] }

// Identity returns the identity with id, or nil.
func (c *Catalog) Identity(id uint32) *bundle.Identity { return c.identities[id] }

// Owner is the name of the endpoint owning addr (longest prefix), or "".
func (c *Catalog) Owner(addr netip.Addr) string {
	bits := c.bits6
	if addr.Is4() {
		bits = c.bits4
	}
	for _, b := range bits {
		if p, err := addr.Prefix(b); err == nil {
			if n, ok := c.owners[p]; ok {
				return n
			}
		}
	}
	return ""
}

// pinCatalog writes b's catalog at path.
func pinCatalog(path string, b *bundle.Bundle) error {
	js, err := json.Marshal(catalogOf(b))
	if err != nil {
		return err
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	if _, err := zw.Write(js); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	data := binary.LittleEndian.AppendUint64(nil, uint64(z.Len()))
	data = append(data, z.Bytes()...)
	n := (len(data) + catalogChunk - 1) / catalogChunk
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "polc_catalog", Type: ebpf.Array, KeySize: 4, ValueSize: catalogChunk, MaxEntries: uint32(n)})
	if err != nil {
		return fmt.Errorf("create the catalog map: %w", err)
	}
	defer m.Close()
	for i := range n {
		chunk := make([]byte, catalogChunk)
		copy(chunk, data[i*catalogChunk:])
		if err := m.Update(uint32(i), chunk, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("fill the catalog map: %w", err)
		}
	}
	if err := m.Pin(path); err != nil {
		return fmt.Errorf("pin the catalog map: %w", err)
	}
	return nil
}

// ErrNoCatalog: the generation has no catalog (loaded by an older polc).
var ErrNoCatalog = errors.New("no catalog")

// readCatalog reads generation g's catalog.
func readCatalog(p pins, g uint32) (*Catalog, error) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(p.gen(g), catalogPin), nil)
	if err != nil {
		return nil, fmt.Errorf("%w for generation %d: %v", ErrNoCatalog, g, err)
	}
	defer m.Close()
	if m.ValueSize() != catalogChunk {
		return nil, fmt.Errorf("%w for generation %d: values of %d bytes", ErrNoCatalog, g, m.ValueSize())
	}
	var data []byte
	chunk := make([]byte, catalogChunk)
	for i := range m.MaxEntries() {
		if err := m.Lookup(i, &chunk); err != nil {
			return nil, fmt.Errorf("read the catalog of generation %d: %w", g, err)
		}
		data = append(data, chunk...)
	}
	if len(data) < 8 {
		return nil, fmt.Errorf("%w for generation %d: empty", ErrNoCatalog, g)
	}
	n := binary.LittleEndian.Uint64(data)
	if n > uint64(len(data)-8) {
		return nil, fmt.Errorf("catalog of generation %d: %d bytes announced, %d stored", g, n, len(data)-8)
	}
	zr, err := gzip.NewReader(bytes.NewReader(data[8 : 8+n]))
	if err != nil {
		return nil, fmt.Errorf("catalog of generation %d: %w", g, err)
	}
	js, err := io.ReadAll(io.LimitReader(zr, catalogMax+1))
	if err != nil {
		return nil, fmt.Errorf("catalog of generation %d: %w", g, err)
	}
	if len(js) > catalogMax {
		return nil, fmt.Errorf("catalog of generation %d: larger than %d bytes", g, catalogMax)
	}
	c := &Catalog{}
	if err := json.Unmarshal(js, c); err != nil {
		return nil, fmt.Errorf("catalog of generation %d: %w", g, err)
	}
	c.index()
	return c, nil
}
