// Package packet builds the bytes of test packets: Ethernet frames carrying
// IPv4 or IPv6 (with options, extension headers and fragments) and TCP,
// UDP, SCTP, ICMP or ICMPv6, with correct checksums, plus the malformed
// variants the datapath must drop. The harness feeds them to the kernel
// programs with BPF_PROG_TEST_RUN; Parse reads them back, for tests and for
// showing what was sent.
//
// Everything is deterministic: the same Spec always gives the same bytes
// (fixed MAC addresses, no random ids), so packets can be compared with
// golden files. The package reads the IR's packet type and nothing else
// from the compiler.
package packet
