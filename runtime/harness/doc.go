// Package harness proves verdicts in the kernel: it loads a bundle without
// pinning it, sends packets through the datapath's programs with
// BPF_PROG_TEST_RUN the way a host would meet them (the source's egress
// hook, then the destination's ingress hook, after the XDP prefilter for
// packets from outside), and compares every decision — verdict and
// deciding rule, at each observation point — with the reference evaluator
// (compiler/eval).
//
// It sits at the end of the pipeline, next to package runtime, and reads
// only the bundle, the IR (for tests and rule positions) and the
// evaluator; building the bundle is the caller's job (cmd/polc, and the
// differential tester in harness/difftest). `polc test` runs a policy's
// own tests through RunTests; `polc explain` runs one packet through
// Kernel.Run and the evaluator; ParseFlow reads explain's flow strings.
// OpenWith loads a second bundle with the next generation on the first
// one's connection state, as `polc apply` does, so that what happens to
// live flows can be compared too.
//
// docs/testing.md ("polc test, explain and differential testing")
// describes the observation model and the known differences between the
// kernel's per-hook conntrack and the evaluator's per-host one.
package harness
