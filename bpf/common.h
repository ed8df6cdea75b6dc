/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * common.h — types shared by every polc program: rule ids, verdicts,
 * directions, load-time constants and the layout of every map key and
 * value. bpf/types.go mirrors each struct here field by field; a Go test
 * checks both against the BTF of the compiled object.
 */
#ifndef POLC_COMMON_H
#define POLC_COMMON_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/*
 * Reserved rule ids: the same numbers as compiler/ir RuleID (a Go test
 * asserts it). Rules of the policy start at POLC_FIRST_RULE_ID.
 */
enum polc_rule {
	POLC_RULE_NONE          = 0,
	POLC_RULE_DEFAULT_ALLOW = 1, /* subject not local, or open in this direction */
	POLC_RULE_DEFAULT_DENY  = 2, /* isolated in this direction, no rule allowed it */
	POLC_RULE_ESTABLISHED   = 3, /* later packet or reply of a tracked, allowed flow */
	POLC_RULE_RELATED       = 4, /* ICMP error about a tracked, allowed flow */
	POLC_RULE_MALFORMED     = 5, /* truncated or malformed IP/L4 header */
	POLC_RULE_NON_IP        = 6, /* no IP policy applies: non-IP, or IPv6 neighbour discovery */
	POLC_RULE_FRAGMENT      = 7, /* non-first fragment of an unknown flow, selected subject */
	POLC_RULE_PREFILTER     = 8, /* source in a prefilter prefix (XDP) */
	POLC_RULE_SPOOFED_SOURCE = 9, /* sent by an endpoint from an address not its own */
	POLC_RULE_WRONG_DEST    = 10, /* delivered to an endpoint, to an address not its own */
	POLC_RULE_ETHERTYPE     = 11, /* neither ARP, IPv4 nor IPv6, or VLAN-tagged */
	POLC_RULE_UNBOUND       = 12, /* interface bound to no endpoint of the bundle */
	POLC_RULE_TUNNEL        = 13, /* a tunnel protocol at an endpoint, with cfg_drop_tunnels */
	POLC_RULE_AUDIT_DEFAULT_DENY = 14, /* audit: an audit policy's isolation would deny (passes) */
	POLC_FIRST_RULE_ID      = 16,
};

/* Verdicts in policy values, conntrack-related state and events. */
#define POLC_VERDICT_ALLOW 1
#define POLC_VERDICT_DENY  2
#define POLC_VERDICT_AUDIT 3 /* events only: passed, but an audit policy would deny (event.audit) */
#define POLC_VERDICT_PASS  4 /* policy values only: a tiered rule hands the packet to the next level */

/* Directions, from the endpoint's point of view. Equal to the PolicyEgress bit. */
#define POLC_DIR_INGRESS 0
#define POLC_DIR_EGRESS  1

/* Reserved identities (bpf/types.go). */
#define POLC_IDENTITY_ANY   0
#define POLC_IDENTITY_WORLD 1

/* ipcache_value.flags */
#define POLC_IPC_LOCAL            (1u << 0)
#define POLC_IPC_INGRESS_ISOLATED (1u << 1)
#define POLC_IPC_EGRESS_ISOLATED  (1u << 2)
#define POLC_IPC_INGRESS_RANGES   (1u << 3)
#define POLC_IPC_EGRESS_RANGES    (1u << 4)
/*
 * Probe hints, read only with cfg_policy_hints: the subject has policy or
 * policy_ranges entries of that class in that direction. Without a hint
 * the policy program skips the class's lookups. Ingress bits are
 * POLC_HINT_* << 5, egress bits POLC_HINT_* << 9.
 */
#define POLC_HINT_ANY_REMOTE (1u << 0) /* Remote = IdentityAny */
#define POLC_HINT_WORLD      (1u << 1) /* Remote = IdentityWorld */
#define POLC_HINT_ANY_PORT   (1u << 2) /* PolicyAnyPort with a protocol */
#define POLC_HINT_ANY_PROTO  (1u << 3) /* protocol 0 */
#define POLC_HINT_ALL        0xfu
#define POLC_IPC_INGRESS_HINT_SHIFT 5
#define POLC_IPC_EGRESS_HINT_SHIFT  9
/*
 * Audit: an audit policy selects the subject in that direction, so when
 * the enforcing policies allow a packet the policy program asks again with
 * every policy (keys with POLC_POLICY_AUDIT), and reports what would deny.
 */
#define POLC_IPC_INGRESS_AUDIT (1u << 13)
#define POLC_IPC_EGRESS_AUDIT  (1u << 14)
/*
 * An endpoint of another node (a node bundle's remote endpoint): never a
 * subject here, but not the world's either, so world rules do not reach it.
 */
#define POLC_IPC_REMOTE_ENDPOINT (1u << 15)
/*
 * A tiered policy with a deny rule in that direction selects the subject:
 * some packet may be denied there although nothing isolates it, so a later
 * fragment of an unknown datagram is dropped, as where it is isolated.
 */
#define POLC_IPC_INGRESS_TIERED_DENY (1u << 16)
#define POLC_IPC_EGRESS_TIERED_DENY  (1u << 17)

/* policy_key.flags */
#define POLC_POLICY_EGRESS  (1u << 0)
#define POLC_POLICY_ANYPORT (1u << 1)
#define POLC_POLICY_AUDIT   (1u << 2) /* an entry of every policy, audit ones too */

/* Address families in conntrack keys, fragment keys and events. */
#define POLC_FAMILY_IPV4 4
#define POLC_FAMILY_IPV6 6

/* Protocols, defined here to keep the kernel's libc-flavoured headers out. */
#define POLC_PROTO_ICMP   1
#define POLC_PROTO_TCP    6
#define POLC_PROTO_UDP    17
#define POLC_PROTO_ICMPV6 58
#define POLC_PROTO_SCTP   132

/* conntrack_value.state */
#define POLC_CT_OPEN    1 /* allowed flow, normal lifetime */
#define POLC_CT_CLOSING 2 /* FIN seen: short lifetime */

/* TCP flag bits (byte 13 of the TCP header). */
#define POLC_TCP_FIN 0x01
#define POLC_TCP_SYN 0x02
#define POLC_TCP_RST 0x04

/*
 * Load-time constants, all __u32 so that the compiler sets every one the
 * same way. Defaults are the safe ones: every feature on; the compiler
 * turns off what a bundle does not need so the verifier prunes it.
 */
volatile const __u32 cfg_has_ipv4 = 1;        /* 0: no IPv4 endpoint: every IPv4 address is the world's */
volatile const __u32 cfg_has_ipv6 = 1;        /* 0: no IPv6 endpoint: every IPv6 address is the world's */
volatile const __u32 cfg_has_prefixes4 = 1;   /* ipcache4_lpm has entries */
volatile const __u32 cfg_has_prefixes6 = 1;   /* ipcache6_lpm has entries */
volatile const __u32 cfg_has_ranges = 1;      /* policy_ranges has entries */
volatile const __u32 cfg_events_allow = 0;    /* 1: also emit events for allowed packets */
volatile const __u32 cfg_policy_hints = 0;    /* 1: ipcache flags carry POLC_HINT_* bits: skip absent classes */
volatile const __u32 cfg_slot_policy4 = 0;    /* tailcalls slot of tc_policy4 */
volatile const __u32 cfg_slot_policy6 = 1;    /* tailcalls slot of tc_policy6 */
volatile const __u32 cfg_slot_epilogue = 2;   /* tailcalls slot of tc_epilogue */
volatile const __u32 cfg_ct_lifetime_tcp = 21600;  /* seconds, open TCP flow */
volatile const __u32 cfg_ct_lifetime_closing = 10; /* seconds, TCP flow after FIN */
volatile const __u32 cfg_ct_lifetime_other = 60;   /* seconds, UDP, SCTP, ICMP, other */
volatile const __u32 cfg_frag_lifetime = 30;       /* seconds, a first fragment's verdict */
volatile const __u32 cfg_drop_tunnels = 0;         /* 1: endpoints' hooks drop tunnel protocols (polc_is_tunnel) */

/* Value of ipcache4, ipcache6, ipcache4_lpm, ipcache6_lpm. */
struct ipcache_value {
	__u32 identity;
	__u32 flags;    /* POLC_IPC_* */
	__u32 endpoint; /* the local endpoint owning the address (its index, from 1); 0: none */
};

/*
 * Value of iface_endpoints and iface_endpoints_big: the endpoint an
 * interface serves (its index, as in ipcache_value.endpoint). The runtime
 * writes it before it attaches the interface and deletes it after it
 * detaches; 0 (an array slot never written) means unbound.
 */
struct iface_value {
	__u32 endpoint;
};

/*
 * iface_value.endpoint of an interface the runtime is taking polc off
 * (detach, unload): both its hooks pass everything at once, so that a
 * kill half-way through leaves no interface with one direction policed and
 * the other not (replies would miss their conntrack entries).
 */
#define POLC_ENDPOINT_PASS 0xffffffffu

/* Keys of the v4 LPM tries (ipcache4_lpm, prefilter4). */
struct lpm_key4 {
	__u32 prefixlen;
	__u8 addr[4];
};

/* Keys of the v6 LPM tries (ipcache6_lpm, prefilter6). */
struct lpm_key6 {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Key of the policy hash map; see PolicyKey in types.go. */
struct policy_key {
	__u32 subject;
	__u32 remote;
	__u16 port;  /* host byte order; 0 with POLC_POLICY_ANYPORT */
	__u8 proto;  /* 0: any protocol (only with POLC_POLICY_ANYPORT) */
	__u8 flags;  /* POLC_POLICY_* */
};

/*
 * Value of policy and policy_ranges: the verdicts precomputed for the key's
 * class, in two slots (docs/datapath.md). The admin slot holds the admin
 * tier's rule of lowest rank among those matching the class; the main slot
 * the namespace level's (untiered) or, for a direction no untiered policy
 * isolates, the baseline tier's. A verdict of 0 is an empty slot. The
 * datapath keeps, per slot, the hit of lowest order over its probes.
 */
struct policy_value {
	__u8 verdict;       /* main slot: 0, POLC_VERDICT_ALLOW, _DENY or _PASS */
	__u8 admin_verdict; /* admin slot: 0, POLC_VERDICT_ALLOW, _DENY or _PASS */
	__u8 tier;          /* the main slot's tier: 0 untiered, 2 baseline (for dumps; not read) */
	__u8 pad;
	__u32 rule;         /* main slot: the deciding rule id */
	__u32 order;        /* main slot: untiered deny → rule, allow → 1<<30 | rule; baseline → rank */
	__u32 admin_rule;   /* admin slot: the deciding rule id */
	__u32 admin_order;  /* admin slot: the rule's rank */
};

/* Key of the policy_ranges LPM trie; prefixlen = 80 + significant port bits. */
struct policy_range_key {
	__u32 prefixlen;
	__u8 subject[4]; /* big endian */
	__u8 remote[4];  /* big endian */
	__u8 proto;
	__u8 flags;      /* POLC_POLICY_EGRESS only */
	__u8 port[2];    /* big endian */
};
#define POLC_RANGE_FULL_PREFIX 96

/*
 * A packet's tuple as observed at one hook (pkt_state.tuple, .inner). IPv4
 * addresses fill addr[0..3], the rest 0. For ICMP echo: request sport = id,
 * dport = 0; reply sport = 0, dport = id, so a reply's reversed tuple is its
 * request's tuple.
 */
struct polc_tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;  /* host byte order */
	__u16 dport;  /* host byte order */
	__u8 proto;
	__u8 family;  /* POLC_FAMILY_* */
	__u8 dir;     /* POLC_DIR_* of the hook that observed it */
	__u8 pad;
} __attribute__((aligned(8))); /* addresses copy 8 bytes at a time */

/*
 * Key of conntrack: a flow as one endpoint sees it, the endpoint's side
 * first whatever the packet's direction (polc_ct_key). A packet and its
 * reply, at the endpoint's two hooks, have the same key, so one probe finds
 * either; the value's origin tells which hook opened the flow. Flows
 * between two local endpoints have one entry at each (laddr differs), so
 * A→B checked at A's egress does not let B's ingress skip policy.
 */
struct ct_key {
	__u8 laddr[16]; /* the endpoint's (subject's) address */
	__u8 raddr[16]; /* the remote's */
	__u16 lport;    /* host byte order; ICMP echo: the tracking ports */
	__u16 rport;
	__u8 proto;
	__u8 family;    /* POLC_FAMILY_* */
	__u8 echo;      /* POLC_CT_ECHO_*: who sent the echo request, 0 otherwise */
	__u8 pad;
} __attribute__((aligned(8)));
#define POLC_CT_ECHO_LOCAL  1 /* the endpoint pings the remote */
#define POLC_CT_ECHO_REMOTE 2 /* the remote pings the endpoint */

/*
 * Value of conntrack. Times are bpf_ktime_get_coarse_ns(): CLOCK_MONOTONIC
 * at tick resolution (cheaper than the precise clock on the hot path), so
 * userspace writes CLOCK_MONOTONIC nanoseconds.
 */
struct ct_value {
	__u64 expires;    /* ns; an entry at or past it is a miss */
	__u64 packets;    /* both directions */
	__u64 bytes;
	__u32 rule;       /* rule that allowed the flow */
	__u32 generation; /* the policy generation that decided (map generation) */
	__u8 state;       /* POLC_CT_* */
	__u8 origin;      /* POLC_DIR_* of the hook whose packet opened the flow */
	__u8 pad[6];
};

/* Key of frags: a fragmented datagram at one observation point. */
struct frag_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 id;     /* IPv4 id (16 bits) or IPv6 fragment id */
	__u8 proto;
	__u8 family;
	__u8 dir;
	__u8 pad;
};

/*
 * Value of frags: the verdict of the first fragment. A record of another
 * generation is stale: its later fragments are treated as unknown.
 */
struct frag_value {
	__u64 expires;
	__u32 rule;
	__u32 generation; /* the policy generation that decided the first fragment */
	__u8 verdict;
	__u8 pad[7];
};

/* Value of counters (per CPU), indexed by rule id. */
struct counter {
	__u64 packets;
	__u64 bytes;
};

/*
 * A record in the events ring buffer. For ICMP/ICMPv6, sport is 0 and dport
 * is type<<8|code.
 */
struct event {
	__u32 rule;
	__u8 verdict;
	__u8 dir;
	__u8 family;
	__u8 proto;
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u32 subject; /* identity of the subject (0 when not looked up) */
	__u32 remote;  /* identity of the remote (0 when not looked up: conntrack or fragment decided) */
	__u32 len;     /* packet length */
	__u32 generation; /* the policy generation that decided */
	__u32 audit;      /* with POLC_VERDICT_AUDIT: the audit rule that would deny */
};

/* Kinds of decision the policy program makes (pkt_state.kind). */
#define POLC_KIND_NEW     0 /* no conntrack entry: create one on allow */
#define POLC_KIND_RECHECK 1 /* entry of an older generation: refresh on allow, delete on deny */

/*
 * ICMP message kinds (pkt_state.echo, inner_echo), for ICMP in IPv4 and
 * ICMPv6 in IPv6 only; 0 for every other packet. Echo requests are looked
 * up as sent only, echo replies reversed only (so that id 0, whose ports
 * are (0, 0) either way, cannot confuse the two); other ICMP messages are
 * never looked up.
 */
#define POLC_ECHO_NONE    0 /* not ICMP of its family */
#define POLC_ECHO_REQUEST 1
#define POLC_ECHO_REPLY   2
#define POLC_ECHO_OTHER   3 /* any other ICMP message: untracked */

/* Fragment position (pkt_state.frag). */
#define POLC_FRAG_NONE  0
#define POLC_FRAG_FIRST 1 /* offset 0, more fragments */
#define POLC_FRAG_LATER 2 /* offset > 0: no L4 header */

/*
 * Per-packet state carried across tail calls in the per-CPU scratch map
 * (skb->cb has only 20 bytes). A tail call runs on the same CPU without
 * preemption, so the entry's state is intact when the next program reads it.
 */
struct pkt_state {
	struct polc_tuple tuple; /* the packet as observed; dir = observation direction */
	struct ct_key flow;      /* its conntrack key: to create, refresh or forget */
	struct polc_tuple inner; /* ICMP error: the embedded packet's tuple */
	__u64 now;           /* bpf_ktime_get_coarse_ns(), read once at entry: the packet's time everywhere */
	__u32 subject;       /* identities and ipcache flags */
	__u32 subject_flags;
	__u32 remote;
	__u32 remote_flags;
	__u32 rule;          /* decision */
	__u32 len;
	__u32 frag_id;
	__u32 endpoint;      /* index of the endpoint the interface serves */
	__u32 audit;         /* the policy allows, but this audit rule would deny (0: none) */
	__u32 generation;    /* policy generation, read once at entry: its low bit picks the content slot */
	__u16 policy_port;   /* port (or ICMP type<<8|code) the policy is asked about */
	__u16 ev_sport;      /* ports reported in events */
	__u16 ev_dport;
	__u8 verdict;
	__u8 pol_dir;        /* direction the policy is asked about */
	__u8 kind;           /* POLC_KIND_* */
	__u8 tcp_flags;
	__u8 frag;           /* POLC_FRAG_* */
	__u8 track;          /* 1: create conntrack on allow */
	__u8 has_inner;      /* 1: ICMP error with a parsed inner tuple */
	__u8 echo;           /* POLC_ECHO_*: what the packet is, as ICMP of its family */
	__u8 inner_echo;     /* POLC_ECHO_*: what the quoted packet is, as ICMP */
	__u8 portless;       /* 1: no ports (not TCP, UDP, SCTP, ICMP of its family): any-port policy only */
	__u8 hop_limit;      /* IPv6 hop limit (neighbour discovery needs 255) */
	__u8 ct_skip;        /* 1: the local remote's hook denies the flow: no conntrack entry */
	__u8 ct_expired;     /* 1: the flow's conntrack entry exists, expired: rewrite it in place */
	__u8 pad[4];
};

#endif /* POLC_COMMON_H */
