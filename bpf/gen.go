package bpf

// The BPF object is compiled for little-endian targets only (amd64, arm64).
// Flags are pinned so that regenerating gives the same bytes: bpf2go maps
// the source directory out of debug info, llvm-strip drops DWARF but keeps
// BTF, and include/asm stands in for the host architecture's <asm/...>
// headers (no -I/usr/include/<triplet>). Go types of keys and values are
// hand-written in types.go (-no-global-types) and checked against BTF.
//
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang-19 -strip llvm-strip-19 -target bpfel -no-global-types -cflags "-O2 -g -Wall -Werror -mcpu=v3 -Iinclude" polc polc.c
