// Package eval is polc's reference evaluator: it computes the verdict of a
// packet from the IR alone, following the meaning in docs/ (DESIGN.md,
// section 1) as directly as it can. It shares no code with the lowering on
// purpose: the test harness runs the same packets through the kernel
// programs and through this package, and any difference is a bug in one of
// them. `polc explain` uses it to name the rule that decided a verdict.
//
// A packet from A to B is observed at two points, as in the datapath: the
// sender's egress (the endpoint whose interface it leaves, Packet.Via, or
// else the endpoint A's address belongs to) and then B's ingress (when B's
// address is a local endpoint's). A sender that does not own A is spoofing
// it, and its egress denies the packet. The packet passes when no point
// denies it. At each point the admin tier, the namespace level (untiered
// policies) and the baseline tier decide in that order (docs/language.md,
// "Tiers"). State (conntrack) lives in a *Conntrack the caller keeps across
// the packets of a sequence. docs/testing.md describes every rule.
package eval
