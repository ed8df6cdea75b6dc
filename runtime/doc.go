// Package runtime puts compiled bundles into the kernel: it loads a
// bundle's programs and maps (Load, shared with the BPF_PROG_TEST_RUN
// harness), and on a host (Host) pins them under /sys/fs/bpf/polc/NAME/,
// attaches them to interfaces with pinned tcx and XDP links (netlink clsact
// filters where tcx is missing), replaces a loaded bundle atomically while
// keeping conntrack, and unloads and reports on them.
//
// It is the last stage of the pipeline (dsl → compiler → bundle → runtime)
// and imports only compiler/bundle and bpf, never the compiler's passes.
// docs/runtime.md describes the pin layout and the apply protocol.
package runtime
