/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * policy.h — identities (ipcache) and the policy decision for a new flow.
 */
#ifndef POLC_POLICY_H
#define POLC_POLICY_H

#include "common.h"
#include "maps.h"

/*
 * polc_content is slot gen & 1 of the content map outer (maps.h), NULL
 * only if the runtime left the slot empty.
 */
static __always_inline void *polc_content(void *outer, __u32 gen)
{
	__u32 slot = gen & 1;

	return bpf_map_lookup_elem(outer, &slot);
}

/*
 * polc_ipcache resolves an address: the host hash first (the hot path),
 * then, only when the bundle has prefixes of that family, the LPM trie.
 * Unknown everywhere → world, no flags, no endpoint. gen is the packet's
 * policy generation (pkt_state.generation).
 */
static __always_inline struct ipcache_value polc_ipcache(const __u8 *addr, __u8 family, __u32 gen)
{
	struct ipcache_value r = { .identity = POLC_IDENTITY_WORLD };
	struct ipcache_value *v = 0;
	void *m;

	/* a family no endpoint has: every address is the world's */
	if ((family == POLC_FAMILY_IPV4 && !cfg_has_ipv4) || (family == POLC_FAMILY_IPV6 && !cfg_has_ipv6))
		return r;
	if (family == POLC_FAMILY_IPV4) {
		m = polc_content(&ipcache4, gen);
		if (m)
			v = bpf_map_lookup_elem(m, addr);
		if (!v && cfg_has_prefixes4) {
			struct lpm_key4 k = { .prefixlen = 32 };

			__builtin_memcpy(k.addr, addr, 4);
			m = polc_content(&ipcache4_lpm, gen);
			if (m)
				v = bpf_map_lookup_elem(m, &k);
		}
	} else {
		m = polc_content(&ipcache6, gen);
		if (m)
			v = bpf_map_lookup_elem(m, addr);
		if (!v && cfg_has_prefixes6) {
			struct lpm_key6 k = { .prefixlen = 128 };

			__builtin_memcpy(k.addr, addr, 16);
			m = polc_content(&ipcache6_lpm, gen);
			if (m)
				v = bpf_map_lookup_elem(m, &k);
		}
	}
	if (v)
		r = *v;
	return r;
}

/*
 * struct polc_decision is the best hit of each slot over a packet's probes:
 * the lowest order wins (verdict 0: no hit yet).
 */
struct polc_decision {
	__u32 admin_order;
	__u32 admin_rule;
	__u32 order;
	__u32 rule;
	__u8 admin_verdict;
	__u8 verdict;
};

static __always_inline void polc_hit(struct polc_decision *d, const struct policy_value *v)
{
	if (!v)
		return;
	if (v->admin_verdict && (!d->admin_verdict || v->admin_order < d->admin_order)) {
		d->admin_verdict = v->admin_verdict;
		d->admin_order = v->admin_order;
		d->admin_rule = v->admin_rule;
	}
	if (v->verdict && (!d->verdict || v->order < d->order)) {
		d->verdict = v->verdict;
		d->order = v->order;
		d->rule = v->rule;
	}
}

/*
 * polc_settle applies the tiers to the best hits: the admin slot's verdict
 * unless it is empty or pass, else the main slot's unless it is empty or
 * pass; 0 when neither decides (the caller applies the default).
 */
static __always_inline __u8 polc_settle(const struct polc_decision *d, __u32 *rule)
{
	if (d->admin_verdict == POLC_VERDICT_ALLOW || d->admin_verdict == POLC_VERDICT_DENY) {
		*rule = d->admin_rule;
		return d->admin_verdict;
	}
	if (d->verdict == POLC_VERDICT_ALLOW || d->verdict == POLC_VERDICT_DENY) {
		*rule = d->rule;
		return d->verdict;
	}
	return 0;
}

/*
 * struct polc_asker is who is asked about st->flow: the subject (its
 * identity and ipcache flags), the remote, and the direction. The hook's own
 * decision asks the hook's subject; the peer check (polc_policy_decide) asks
 * the local remote in the opposite direction.
 */
struct polc_asker {
	__u32 subject;
	__u32 subject_flags;
	__u32 remote;
	__u32 remote_flags;
	__u8 dir;
};

/*
 * polc_probe_remote looks up every class for one remote' (identity, any or
 * world); hints (POLC_HINT_*) say which port classes can exist. A packet
 * without ports (st->portless: a protocol other than TCP, UDP, SCTP and the
 * ICMP of its family) is asked about the any-port classes only, so that
 * ICMP in IPv6 never matches a rule on ICMP types.
 */
static __always_inline void polc_probe_remote(struct polc_decision *d, const struct pkt_state *st,
					      __u32 subject, __u32 remote, __u8 egress, int ranges, __u32 hints)
{
	void *pol = polc_content(&policy, st->generation);
	struct policy_key k = {
		.subject = subject,
		.remote = remote,
		.port = st->policy_port,
		.proto = st->flow.proto,
		.flags = egress,
	};

	if (!pol)
		return;
	/* (proto, port); a packet without ports has none to match */
	if (!st->portless)
		polc_hit(d, bpf_map_lookup_elem(pol, &k));
	/* (proto, any port) */
	k.port = 0;
	k.flags = egress | POLC_POLICY_ANYPORT;
	if (hints & POLC_HINT_ANY_PORT)
		polc_hit(d, bpf_map_lookup_elem(pol, &k));
	/* (any protocol, any port) */
	if (k.proto && (hints & POLC_HINT_ANY_PROTO)) {
		k.proto = 0;
		polc_hit(d, bpf_map_lookup_elem(pol, &k));
	}
	if (ranges) {
		struct policy_range_key rk = {
			.prefixlen = POLC_RANGE_FULL_PREFIX,
			.proto = st->flow.proto,
			.flags = egress,
		};
		__u32 s = bpf_htonl(subject), r = bpf_htonl(remote);
		__u16 p = bpf_htons(st->policy_port);

		__builtin_memcpy(rk.subject, &s, 4);
		__builtin_memcpy(rk.remote, &r, 4);
		__builtin_memcpy(rk.port, &p, 2);
		void *pr = polc_content(&policy_ranges, st->generation);

		if (pr)
			polc_hit(d, bpf_map_lookup_elem(pr, &rk));
	}
}

/*
 * polc_policy_ask decides the flow st->flow for one asker: the admin tier's
 * first matching rule unless it passes; else the main slot: at the namespace
 * level any deny wins (lowest rule id), else any allow (lowest rule id), or,
 * where no untiered policy isolates, the baseline tier's first matching
 * rule unless it passes; else the subject's default for the direction
 * (default-deny only when an untiered policy isolates it). It returns the
 * verdict and sets *rule.
 */
static __always_inline __u8 polc_policy_ask(const struct pkt_state *st, const struct polc_asker *a, __u32 *rule)
{
	struct polc_decision d = {};
	__u8 egress = a->dir == POLC_DIR_EGRESS;
	__u32 isolated = egress ? POLC_IPC_EGRESS_ISOLATED : POLC_IPC_INGRESS_ISOLATED;
	__u32 rflag = egress ? POLC_IPC_EGRESS_RANGES : POLC_IPC_INGRESS_RANGES;
	int ranges = cfg_has_ranges && (a->subject_flags & rflag) && !st->portless;
	__u32 hints = POLC_HINT_ALL;
	__u8 verdict;

	if (cfg_policy_hints)
		hints = (a->subject_flags >> (egress ? POLC_IPC_EGRESS_HINT_SHIFT : POLC_IPC_INGRESS_HINT_SHIFT)) &
			POLC_HINT_ALL;

	polc_probe_remote(&d, st, a->subject, a->remote, egress, ranges, hints);
	if (hints & POLC_HINT_ANY_REMOTE)
		polc_probe_remote(&d, st, a->subject, POLC_IDENTITY_ANY, egress, ranges, hints);
	/* world also covers every identity that is no endpoint's (CIDR identities) */
	if ((hints & POLC_HINT_WORLD) && !(a->remote_flags & (POLC_IPC_LOCAL | POLC_IPC_REMOTE_ENDPOINT)) &&
	    a->remote != POLC_IDENTITY_WORLD)
		polc_probe_remote(&d, st, a->subject, POLC_IDENTITY_WORLD, egress, ranges, hints);

	verdict = polc_settle(&d, rule);
	if (verdict)
		return verdict;
	if (a->subject_flags & isolated) {
		*rule = POLC_RULE_DEFAULT_DENY;
		return POLC_VERDICT_DENY;
	}
	*rule = POLC_RULE_DEFAULT_ALLOW;
	return POLC_VERDICT_ALLOW;
}

/*
 * polc_policy_audit asks every policy, audit ones too (the entries with
 * POLC_POLICY_AUDIT), about a flow the enforcing policies allow, with the
 * same tiers as polc_policy_ask: the deciding deny rule, or
 * POLC_RULE_AUDIT_DEFAULT_DENY when no rule decides (an audit entry set
 * exists only for subjects some untiered policy isolates), or 0 when every
 * policy allows it too. Without hints: audit is for rollout,
 * not for speed.
 */
static __always_inline __u32 polc_policy_audit(const struct pkt_state *st, const struct polc_asker *a)
{
	struct polc_decision d = {};
	__u8 flags = (a->dir == POLC_DIR_EGRESS) | POLC_POLICY_AUDIT;
	int ranges = cfg_has_ranges && !st->portless;
	__u32 rule = 0;

	polc_probe_remote(&d, st, a->subject, a->remote, flags, ranges, POLC_HINT_ALL);
	polc_probe_remote(&d, st, a->subject, POLC_IDENTITY_ANY, flags, ranges, POLC_HINT_ALL);
	if (!(a->remote_flags & (POLC_IPC_LOCAL | POLC_IPC_REMOTE_ENDPOINT)) && a->remote != POLC_IDENTITY_WORLD)
		polc_probe_remote(&d, st, a->subject, POLC_IDENTITY_WORLD, flags, ranges, POLC_HINT_ALL);
	switch (polc_settle(&d, &rule)) {
	case POLC_VERDICT_DENY:
		return rule;
	case POLC_VERDICT_ALLOW:
		return 0;
	}
	return POLC_RULE_AUDIT_DEFAULT_DENY;
}

/*
 * polc_policy_decide sets st->verdict and st->rule for the flow st->flow,
 * asked in direction st->pol_dir. When the hook allows and the remote is a
 * local endpoint, the remote's own hook will judge the same packet in the
 * opposite direction; it asks that policy too, and a denial
 * there sets st->ct_skip: the packet still passes this hook with this
 * hook's rule, but no conntrack entry is created (a recheck forgets it),
 * as in the reference, where a flow exists only if every hook allows it.
 * Both directions ask: on ingress the local remote's egress normally
 * allowed the packet already, but a recheck, or a packet that did not
 * come through the remote's hook, must not open a flow the remote's
 * egress would refuse. Only flows between two local endpoints pay for it.
 */
static __always_inline void polc_policy_decide(struct pkt_state *st)
{
	struct polc_asker a = {
		.subject = st->subject,
		.subject_flags = st->subject_flags,
		.remote = st->remote,
		.remote_flags = st->remote_flags,
		.dir = st->pol_dir,
	};
	__u32 rule;

	st->verdict = polc_policy_ask(st, &a, &st->rule);
	if (st->verdict != POLC_VERDICT_ALLOW)
		return;
	if (st->subject_flags & (st->pol_dir == POLC_DIR_EGRESS ? POLC_IPC_EGRESS_AUDIT : POLC_IPC_INGRESS_AUDIT))
		st->audit = polc_policy_audit(st, &a);
	if (!(st->remote_flags & POLC_IPC_LOCAL))
		return;
	a.subject = st->remote;
	a.subject_flags = st->remote_flags;
	a.remote = st->subject;
	a.remote_flags = st->subject_flags;
	a.dir = st->pol_dir ^ 1;
	if (polc_policy_ask(st, &a, &rule) != POLC_VERDICT_ALLOW)
		st->ct_skip = 1;
}

#endif /* POLC_POLICY_H */
