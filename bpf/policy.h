/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * policy.h — identities (ipcache) and the policy decision for a new flow.
 */
#ifndef POLC_POLICY_H
#define POLC_POLICY_H

#include "common.h"
#include "maps.h"

/*
 * polc_ipcache resolves an address: the host hash first (the hot path),
 * then, only when the bundle has prefixes of that family, the LPM trie.
 * Unknown everywhere → world, no flags.
 */
static __always_inline struct ipcache_value polc_ipcache(const __u8 *addr, __u8 family)
{
	struct ipcache_value r = { .identity = POLC_IDENTITY_WORLD };
	struct ipcache_value *v;

	if (family == POLC_FAMILY_IPV4) {
		v = bpf_map_lookup_elem(&ipcache4, addr);
		if (!v && cfg_has_prefixes4) {
			struct lpm_key4 k = { .prefixlen = 32 };

			__builtin_memcpy(k.addr, addr, 4);
			v = bpf_map_lookup_elem(&ipcache4_lpm, &k);
		}
	} else {
		v = bpf_map_lookup_elem(&ipcache6, addr);
		if (!v && cfg_has_prefixes6) {
			struct lpm_key6 k = { .prefixlen = 128 };

			__builtin_memcpy(k.addr, addr, 16);
			v = bpf_map_lookup_elem(&ipcache6_lpm, &k);
		}
	}
	if (v)
		r = *v;
	return r;
}

struct polc_decision {
	__u32 deny;  /* lowest deny rule hit, or 0 */
	__u32 allow; /* lowest allow rule hit, or 0 */
};

static __always_inline void polc_hit(struct polc_decision *d, const struct policy_value *v)
{
	if (!v)
		return;
	if (v->verdict == POLC_VERDICT_DENY) {
		if (!d->deny || v->rule < d->deny)
			d->deny = v->rule;
	} else if (v->verdict == POLC_VERDICT_ALLOW) {
		if (!d->allow || v->rule < d->allow)
			d->allow = v->rule;
	}
}

/*
 * polc_probe_remote looks up every class for one remote' (identity, any or
 * world); hints (POLC_HINT_*) say which port classes can exist. A packet
 * without ports (st->portless: a protocol other than TCP, UDP, SCTP and the
 * ICMP of its family) is asked about the any-port classes only, so that
 * ICMP in IPv6 never matches a rule on ICMP types.
 */
static __always_inline void polc_probe_remote(struct polc_decision *d, const struct pkt_state *st,
					      __u32 remote, __u8 egress, int ranges, __u32 hints)
{
	struct policy_key k = {
		.subject = st->subject,
		.remote = remote,
		.port = st->policy_port,
		.proto = st->flow.proto,
		.flags = egress,
	};

	/* (proto, port); a packet without ports has none to match */
	if (!st->portless)
		polc_hit(d, bpf_map_lookup_elem(&policy, &k));
	/* (proto, any port) */
	k.port = 0;
	k.flags = egress | POLC_POLICY_ANYPORT;
	if (hints & POLC_HINT_ANY_PORT)
		polc_hit(d, bpf_map_lookup_elem(&policy, &k));
	/* (any protocol, any port) */
	if (k.proto && (hints & POLC_HINT_ANY_PROTO)) {
		k.proto = 0;
		polc_hit(d, bpf_map_lookup_elem(&policy, &k));
	}
	if (ranges) {
		struct policy_range_key rk = {
			.prefixlen = POLC_RANGE_FULL_PREFIX,
			.proto = st->flow.proto,
			.flags = egress,
		};
		__u32 s = bpf_htonl(st->subject), r = bpf_htonl(remote);
		__u16 p = bpf_htons(st->policy_port);

		__builtin_memcpy(rk.subject, &s, 4);
		__builtin_memcpy(rk.remote, &r, 4);
		__builtin_memcpy(rk.port, &p, 2);
		polc_hit(d, bpf_map_lookup_elem(&policy_ranges, &rk));
	}
}

/*
 * polc_policy_decide sets st->verdict and st->rule for the flow st->flow,
 * asked in direction st->pol_dir: any deny wins (lowest rule id), else any
 * allow (lowest rule id), else the subject's default for the direction.
 */
static __always_inline void polc_policy_decide(struct pkt_state *st)
{
	struct polc_decision d = {};
	__u8 egress = st->pol_dir == POLC_DIR_EGRESS;
	__u32 isolated = egress ? POLC_IPC_EGRESS_ISOLATED : POLC_IPC_INGRESS_ISOLATED;
	__u32 rflag = egress ? POLC_IPC_EGRESS_RANGES : POLC_IPC_INGRESS_RANGES;
	int ranges = cfg_has_ranges && (st->subject_flags & rflag) && !st->portless;
	__u32 hints = POLC_HINT_ALL;

	if (cfg_policy_hints)
		hints = (st->subject_flags >> (egress ? POLC_IPC_EGRESS_HINT_SHIFT : POLC_IPC_INGRESS_HINT_SHIFT)) &
			POLC_HINT_ALL;

	polc_probe_remote(&d, st, st->remote, egress, ranges, hints);
	if (hints & POLC_HINT_ANY_REMOTE)
		polc_probe_remote(&d, st, POLC_IDENTITY_ANY, egress, ranges, hints);
	/* world also covers every non-local identity (CIDR identities) */
	if ((hints & POLC_HINT_WORLD) && !(st->remote_flags & POLC_IPC_LOCAL) && st->remote != POLC_IDENTITY_WORLD)
		polc_probe_remote(&d, st, POLC_IDENTITY_WORLD, egress, ranges, hints);

	if (d.deny) {
		st->verdict = POLC_VERDICT_DENY;
		st->rule = d.deny;
	} else if (d.allow) {
		st->verdict = POLC_VERDICT_ALLOW;
		st->rule = d.allow;
	} else if (st->subject_flags & isolated) {
		st->verdict = POLC_VERDICT_DENY;
		st->rule = POLC_RULE_DEFAULT_DENY;
	} else {
		st->verdict = POLC_VERDICT_ALLOW;
		st->rule = POLC_RULE_DEFAULT_ALLOW;
	}
}

#endif /* POLC_POLICY_H */
