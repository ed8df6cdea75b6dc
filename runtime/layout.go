package runtime

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/polc-dev/polc/bpf"
	"github.com/polc-dev/polc/compiler/bundle"
)

// ErrSharedLayout: the bundle's shared maps (frags, conntrack tables) are laid out
// differently from the loaded bundle's, so their entries cannot carry over
// an apply.
var ErrSharedLayout = errors.New("shared maps changed layout")

// sharedLayout fingerprints the key and value types of the maps a new
// generation reuses (SharedMaps): every struct's name and its members'
// names, offsets and sizes, as the object's BTF has them. Two bundles with
// the same fingerprint read each other's conntrack entries the same way;
// size checks alone would not notice fields that changed meaning.
// sharedLayoutOf is sharedLayout, remembered for the last object parsed
// (spec nil: from b.Object): an apply of a bundle with the same object
// parses no ELF.
func (h *Host) sharedLayoutOf(b *bundle.Bundle, spec *ebpf.CollectionSpec) (string, error) {
	if spec == nil && h.layout.object != nil && bytes.Equal(h.layout.object, b.Object) {
		return h.layout.value, nil
	}
	l, err := sharedLayout(b, spec)
	if err == nil && spec == nil {
		h.layout.object, h.layout.value = bytes.Clone(b.Object), l
	}
	return l, err
}

func sharedLayout(b *bundle.Bundle, spec *ebpf.CollectionSpec) (string, error) {
	if spec == nil {
		var err error
		if spec, err = ebpf.LoadCollectionSpecFromReader(bytes.NewReader(b.Object)); err != nil {
			return "", fmt.Errorf("read object: %w", err)
		}
	}
	var sb strings.Builder
	for _, n := range append(slices.Clone(SharedMaps), bpf.MapConntrack) {
		ms, ok := spec.Maps[n]
		if !ok {
			continue
		}
		if n == bpf.MapConntrack && ms.InnerMap != nil {
			// the tables carry over, not the array
			ms = ms.InnerMap
		}
		fmt.Fprintf(&sb, "%s %s %d %d %d;", n, ms.Type, ms.KeySize, ms.ValueSize, ms.Flags)
		for _, t := range []btf.Type{ms.Key, ms.Value} {
			if err := layoutOf(&sb, t, 0); err != nil {
				return "", fmt.Errorf("map %s: %w", n, err)
			}
			sb.WriteString(";")
		}
	}
	sum := sha256.Sum256([]byte(sb.String()))
	return hex.EncodeToString(sum[:8]), nil
}

func layoutOf(sb *strings.Builder, t btf.Type, depth int) error {
	if t == nil {
		return nil
	}
	if depth > 8 {
		return errors.New("type nests too deeply")
	}
	t = btf.UnderlyingType(t)
	size, err := btf.Sizeof(t)
	if err != nil {
		return err
	}
	switch t := t.(type) {
	case *btf.Struct:
		fmt.Fprintf(sb, "struct %s{", t.Name)
		for _, m := range t.Members {
			fmt.Fprintf(sb, "%s@%d:", m.Name, m.Offset)
			if err := layoutOf(sb, m.Type, depth+1); err != nil {
				return err
			}
			sb.WriteString(",")
		}
		sb.WriteString("}")
	case *btf.Array:
		fmt.Fprintf(sb, "[%d]", t.Nelems)
		return layoutOf(sb, t.Type, depth+1)
	default:
		fmt.Fprintf(sb, "%d", size)
	}
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown polc"
	}
	return s
}
