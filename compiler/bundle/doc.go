// Package bundle is the on-disk format of a compiled policy: a directory (or
// one tar file) holding a manifest, the BPF object, one file of sorted
// fixed-size records per map, the identities and the rules. It sits between
// the compiler (which builds a Bundle in memory and writes it) and the
// runtime (which reads, verifies and loads it), so it imports only the bpf
// map types — never the compiler's passes.
//
// Layout of a bundle directory (docs/bundle.md is the full reference):
//
//	manifest.json     format version, compiler version, source digest,
//	                  programs and hooks, tail-call layout, constants, and
//	                  for each map its type, key/value layout, max entries,
//	                  record count and SHA-256
//	polc.bpf.o        the BPF object (ELF)
//	maps/NAME.bin     the map's records, key then value, sorted by key bytes
//	                  (counters.bin is empty: that map only carries a size)
//	identities.json   every identity with its labels or CIDRs
//	rules.json        rule id → source position, policy and text
//
// The same Bundle always gives the same bytes: no timestamps, sorted
// records, JSON with a fixed field order, tar headers with zero times.
package bundle
