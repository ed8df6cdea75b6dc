//go:build 386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm

package bpf

// Object returns the BPF object (ELF with BTF) that bpf2go embedded: what
// `polc build` copies into a bundle. The caller must not modify it.
func Object() []byte { return _PolcBytes }
