/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * conntrack.h — flow state: lookup of established flows and their replies,
 * related ICMP errors, creation on allow, and the first-fragment verdicts
 * that later fragments follow.
 */
#ifndef POLC_CONNTRACK_H
#define POLC_CONNTRACK_H

#include "common.h"
#include "maps.h"
#include "policy.h"

#define POLC_NSEC 1000000000ull

enum polc_ct {
	POLC_CT_MISS = 0,
	POLC_CT_HIT,     /* established or reply, current generation: pass */
	POLC_CT_RECHECK, /* entry of another generation: st->flow/pol_dir set for policy */
};

/*
 * polc_ct_table is the conntrack table of the endpoint with index
 * endpoint, or NULL when it has none (no endpoint, or none bound here).
 * The verifier inlines the array-of-maps lookup.
 */
static __always_inline void *polc_ct_table(__u32 endpoint)
{
	return bpf_map_lookup_elem(&conntrack, &endpoint);
}

static __always_inline __u64 polc_ct_lifetime(__u8 proto)
{
	if (proto == POLC_PROTO_TCP)
		return (__u64)cfg_ct_lifetime_tcp * POLC_NSEC;
	return (__u64)cfg_ct_lifetime_other * POLC_NSEC;
}

/*
 * polc_ct_key sets k to the conntrack key of tuple t observed at hook dir:
 * the endpoint's address and port first (the source at egress, the
 * destination at ingress). echo is t's POLC_ECHO_* kind: an echo request
 * seen at egress or a reply seen at ingress belongs to an exchange the
 * endpoint started, and the reverse to one the remote started. With id 0
 * both exchanges have ports (0, 0); the echo field keeps them apart.
 */
static __always_inline void polc_ct_key(struct ct_key *k, const struct polc_tuple *t, __u8 dir, __u8 echo)
{
	if (dir == POLC_DIR_EGRESS) {
		__builtin_memcpy(k->laddr, t->saddr, 16);
		__builtin_memcpy(k->raddr, t->daddr, 16);
		k->lport = t->sport;
		k->rport = t->dport;
	} else {
		__builtin_memcpy(k->laddr, t->daddr, 16);
		__builtin_memcpy(k->raddr, t->saddr, 16);
		k->lport = t->dport;
		k->rport = t->sport;
	}
	k->proto = t->proto;
	k->family = t->family;
	k->echo = 0;
	if (echo == POLC_ECHO_REQUEST || echo == POLC_ECHO_REPLY)
		k->echo = (echo == POLC_ECHO_REQUEST) == (dir == POLC_DIR_EGRESS) ? POLC_CT_ECHO_LOCAL : POLC_CT_ECHO_REMOTE;
	k->pad = 0;
}

/*
 * polc_ct_refresh accounts a packet of a live flow and moves its expiry:
 * RST ends the flow at once (the RST itself passes), FIN shortens it to
 * cfg_ct_lifetime_closing; other packets extend an open flow (written at
 * most once a second, to keep the cache line quiet).
 */
static __always_inline void polc_ct_refresh(void *table, const struct ct_key *key, struct ct_value *v,
					    const struct pkt_state *st, __u64 now)
{
	__u64 life;

	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, st->len);
	if (key->proto == POLC_PROTO_TCP) {
		if (st->tcp_flags & POLC_TCP_RST) {
			bpf_map_delete_elem(table, key);
			return;
		}
		if (st->tcp_flags & POLC_TCP_FIN) {
			if (v->state != POLC_CT_CLOSING) {
				v->state = POLC_CT_CLOSING;
				v->expires = now + (__u64)cfg_ct_lifetime_closing * POLC_NSEC;
			}
			return;
		}
	}
	if (v->state == POLC_CT_CLOSING)
		return;
	life = polc_ct_lifetime(key->proto);
	if (v->expires < now + life - POLC_NSEC)
		v->expires = now + life;
}

/*
 * polc_ct_lookup looks up the packet's flow, st->flow (polc_entry sets it):
 * one probe finds both a later packet of a flow this hook opened and a
 * reply to a flow the endpoint's other hook opened. Only echo requests
 * open flows, and the key's echo field says which side sent them, so a
 * request only matches its own exchange and a reply only the request it
 * answers. A stale-generation hit asks for a policy recheck of the
 * original flow: same subject and remote, the direction that opened it and
 * its destination port. The endpoint's own table is the only one probed.
 */
static __always_inline int polc_ct_lookup(struct pkt_state *st, __u64 now)
{
	void *table = polc_ct_table(st->endpoint);
	struct ct_value *v;

	if (!table)
		return POLC_CT_MISS;
	v = bpf_map_lookup_elem(table, &st->flow);
	if (!v)
		return POLC_CT_MISS;
	if (v->expires <= now) {
		st->ct_expired = 1;
		return POLC_CT_MISS;
	}
	if (v->generation == st->generation) {
		polc_ct_refresh(table, &st->flow, v, st, now);
		return POLC_CT_HIT;
	}
	if (v->origin != st->tuple.dir) {
		/* a reply: the flow was opened the other way */
		st->pol_dir = v->origin;
		if (st->echo == POLC_ECHO_REPLY)
			/* the original was an echo request */
			st->policy_port = (st->tuple.family == POLC_FAMILY_IPV4 ? 8 : 128) << 8;
		else
			st->policy_port = st->tuple.sport;
	}
	return POLC_CT_RECHECK;
}

/*
 * polc_ct_live: is the flow with key live in the table of the endpoint
 * that owns key->laddr (entries are only ever made there)? owner is that
 * endpoint's index when the caller knows it, 0 to look it up.
 */
static __always_inline int polc_ct_live(const struct ct_key *key, __u32 owner, __u32 gen, __u64 now)
{
	void *table;
	struct ct_value *v;

	if (!owner)
		owner = polc_ipcache(key->laddr, key->family, gen).endpoint;
	table = polc_ct_table(owner);
	if (!table)
		return 0;
	v = bpf_map_lookup_elem(table, key);
	return v && v->expires > now && v->generation == gen;
}

/*
 * polc_ct_related: is this ICMP error about a live flow? Errors travel back
 * to the quoted packet's sender, so the quote's source must be the error's
 * destination. The flow is then looked up as the sender's own hooks keep
 * it (the quote observed at egress: laddr = the sender) and, at an egress
 * hook, as the hook's own endpoint keeps it (the quote observed at ingress:
 * laddr = its destination) — the usual case of an endpoint answering what
 * it received, or a local router's view of a flow to one of its
 * neighbours. So an error sent by a third party (a local endpoint that
 * routes, say) passes its egress when the flow is live at either end, as
 * in the reference. A quoted echo request or reply names its exchange by
 * the key's echo field (polc_ct_key); any other quoted ICMP message
 * belongs to no flow. Each view is looked up in the table of the endpoint
 * it belongs to (the one owning its laddr): the hook's own when that is
 * the hook's endpoint, another local endpoint's otherwise.
 */
static __always_inline int polc_ct_related(struct pkt_state *st, __u64 now)
{
	const __u64 *q = (const __u64 *)st->inner.saddr, *d = (const __u64 *)st->tuple.daddr;
	struct ct_key k;

	if (st->inner_echo == POLC_ECHO_OTHER)
		return 0;
	if (q[0] != d[0] || q[1] != d[1])
		return 0;
	polc_ct_key(&k, &st->inner, POLC_DIR_EGRESS, st->inner_echo);
	/* at ingress the error's destination is the hook's endpoint */
	if (polc_ct_live(&k, st->tuple.dir == POLC_DIR_INGRESS ? st->endpoint : 0, st->generation, now))
		return 1;
	if (st->tuple.dir != POLC_DIR_EGRESS)
		return 0;
	polc_ct_key(&k, &st->inner, POLC_DIR_INGRESS, st->inner_echo);
	return polc_ct_live(&k, 0, st->generation, now);
}

/*
 * polc_ct_rewrite turns an expired entry into nv in place: a lookup and
 * a few stores instead of an LRU update, which takes a free node (or
 * evicts one), links it and frees the old. The expiry goes last, so that
 * a packet of the flow on another CPU sees the entry expired (a miss: it
 * meets policy itself) until its other fields are nv's, and at worst
 * live with the old generation (a recheck). Counters are reset as a new
 * entry's are.
 */
static __always_inline void polc_ct_rewrite(struct ct_value *old, const struct ct_value *nv)
{
	old->packets = nv->packets;
	old->bytes = nv->bytes;
	old->rule = nv->rule;
	old->generation = nv->generation;
	old->state = nv->state;
	old->origin = nv->origin;
	/* an exchange (BPF_XCHG) is fully ordered: the stores above come first */
	__sync_lock_test_and_set(&old->expires, nv->expires);
}

/*
 * polc_ct_commit records the decision: an allowed new flow gets an entry,
 * a rechecked flow is refreshed (allow) or forgotten (deny). A flow the
 * local remote's hook denies (st->ct_skip, see polc_policy_decide) gets no
 * entry, and a rechecked one is forgotten, even though this hook allows.
 */
static __always_inline void polc_ct_commit(struct pkt_state *st, __u64 now)
{
	void *table = polc_ct_table(st->endpoint);

	if (!table)
		return;
	if (st->kind == POLC_KIND_RECHECK) {
		if (st->verdict != POLC_VERDICT_ALLOW || st->ct_skip) {
			bpf_map_delete_elem(table, &st->flow);
			return;
		}
		struct ct_value *v = bpf_map_lookup_elem(table, &st->flow);
		if (v) {
			v->generation = st->generation;
			v->rule = st->rule;
			polc_ct_refresh(table, &st->flow, v, st, now);
		}
		return;
	}
	if (st->verdict != POLC_VERDICT_ALLOW || st->ct_skip || !st->track)
		return;
	if (st->tuple.proto == POLC_PROTO_TCP && (st->tcp_flags & POLC_TCP_RST))
		return;
	struct ct_value nv = {
		.expires = now + polc_ct_lifetime(st->tuple.proto),
		.packets = 1,
		.bytes = st->len,
		.rule = st->rule,
		.generation = st->generation,
		.state = POLC_CT_OPEN,
		.origin = st->tuple.dir,
	};
	if (st->tuple.proto == POLC_PROTO_TCP && (st->tcp_flags & POLC_TCP_FIN)) {
		nv.state = POLC_CT_CLOSING;
		nv.expires = now + (__u64)cfg_ct_lifetime_closing * POLC_NSEC;
	}
	if (st->ct_expired) {
		struct ct_value *old = bpf_map_lookup_elem(table, &st->flow);

		if (old && old->expires <= now) {
			polc_ct_rewrite(old, &nv);
			return;
		}
	}
	bpf_map_update_elem(table, &st->flow, &nv, BPF_ANY);
}

static __always_inline void polc_frag_key(struct frag_key *k, const struct pkt_state *st)
{
	__builtin_memcpy(k->saddr, st->tuple.saddr, 16);
	__builtin_memcpy(k->daddr, st->tuple.daddr, 16);
	k->id = st->frag_id;
	k->proto = st->tuple.proto;
	k->family = st->tuple.family;
	k->dir = st->tuple.dir;
	k->pad = 0;
}

/* polc_frag_remember stores a first fragment's verdict for the later ones. */
static __always_inline void polc_frag_remember(const struct pkt_state *st, __u8 verdict, __u32 rule, __u64 now)
{
	struct frag_key k;
	struct frag_value v = {
		.expires = now + (__u64)cfg_frag_lifetime * POLC_NSEC,
		.rule = rule,
		.generation = st->generation,
		.verdict = verdict,
	};

	if (st->frag != POLC_FRAG_FIRST)
		return;
	polc_frag_key(&k, st);
	bpf_map_update_elem(&frags, &k, &v, BPF_ANY);
}

/*
 * polc_frag_lookup returns the first fragment's verdict, or NULL when it is
 * unknown: never seen, expired, or decided under another generation (its
 * verdict and rule id belong to the policy before `polc apply`).
 */
static __always_inline struct frag_value *polc_frag_lookup(const struct pkt_state *st, __u64 now)
{
	struct frag_key k;
	struct frag_value *v;

	polc_frag_key(&k, st);
	v = bpf_map_lookup_elem(&frags, &k);
	if (v && v->expires > now && v->generation == st->generation)
		return v;
	return 0;
}

#endif /* POLC_CONNTRACK_H */
