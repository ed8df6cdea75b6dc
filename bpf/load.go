package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// Spec returns the datapath's collection spec from the embedded object.
// Callers set MaxEntries and constants (Const*) on it before loading, and
// fill MapTailCalls with the programs at the slots they chose.
func Spec() (*ebpf.CollectionSpec, error) {
	spec, err := loadPolc()
	if err != nil {
		return nil, fmt.Errorf("bpf: load embedded object: %w", err)
	}
	return spec, nil
}
