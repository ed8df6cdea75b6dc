// Package bench compares polc with the filters a user would otherwise pick
// (iptables, iptables with ipset, nftables with linear rules or a set) on
// the same traffic, side by side in one run.
//
// A rig is two network namespaces joined by a veth pair: the generator
// ("gen", the host side of the veth, where polc's tc programs attach as
// they would on a node) and the sink (the endpoint, whose INPUT chain
// holds the netfilter rules). The generator writes prebuilt UDP frames on
// an AF_PACKET socket with sendmmsg; the veth delivers each frame to the
// sink in softirq on the sending thread's CPU, so the sending thread's CPU
// time covers every filter's cost. Per-packet cost is that CPU time
// divided by the packets sent, the median of several interleaved rounds.
//
// It sits beside the runtime (it loads polc bundles with runtime.Host) and
// is driven from tests: TestBenchShort checks the harness in `make test`,
// TestBench (POLC_BENCH=1) produces docs/performance.md's comparison table.
package bench
