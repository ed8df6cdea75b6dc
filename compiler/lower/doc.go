// Package lower is the last pass of the compiler: it turns the IR into what
// the datapath reads — identities, the contents of the ipcache, policy and
// policy_ranges maps, the prefilter, the tail-call layout and the load-time
// constants — and assembles them into a bundle (package compiler/bundle).
//
// The steps, one file each:
//
//	identities.go  split the address space into regions of equal verdicts
//	               and give each distinct region class a stable identity
//	policy.go      per subject group and direction, the verdict of every
//	               (remote, protocol, port interval) class
//	ports.go       port intervals: disjoint splitting and prefix encoding
//	ipcache.go     address → identity + flags entries
//	layout.go      programs, tail-call slots and constants the policy needs
//	capacity.go    map sizes with headroom, and limits
//	records.go     the entries as map records, emitted in key order
//	build.go       all of the above into a *bundle.Bundle
//
// The lowering must agree exactly with the meaning in the IR (DESIGN.md §1),
// as the reference evaluator (compiler/eval) computes it; property_test.go
// checks that with a simulated datapath lookup on random programs.
package lower
