/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * verdict.h — the end of every verdict path: per-rule counters, events and
 * the tc return code.
 */
#ifndef POLC_VERDICT_H
#define POLC_VERDICT_H

#include "common.h"
#include "maps.h"

static __always_inline void polc_count(__u32 rule, __u32 len)
{
	struct counter *c = bpf_map_lookup_elem(&counters, &rule);

	/* a rule id beyond the map's size is not counted */
	if (c) {
		c->packets++;
		c->bytes += len;
	}
}

static __always_inline void polc_event(const struct pkt_state *st, __u8 verdict, __u32 rule)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	/* ring full: the rule's counter still has the packet; count the loss */
	if (!e) {
		__u32 zero = 0;
		__u64 *lost = bpf_map_lookup_elem(&events_lost, &zero);

		if (lost)
			*lost += 1;
		return;
	}
	e->rule = rule;
	e->verdict = verdict;
	e->dir = st->tuple.dir;
	e->family = st->tuple.family;
	e->proto = st->tuple.proto;
	__builtin_memcpy(e->saddr, st->tuple.saddr, 16);
	__builtin_memcpy(e->daddr, st->tuple.daddr, 16);
	e->sport = st->ev_sport;
	e->dport = st->ev_dport;
	e->subject = st->subject;
	e->remote = st->remote;
	e->len = st->len;
	e->generation = st->generation;
	e->audit = 0;
	if (verdict == POLC_VERDICT_ALLOW && st->audit) {
		e->verdict = POLC_VERDICT_AUDIT;
		e->audit = st->audit;
	}
	bpf_ringbuf_submit(e, 0);
}

/* polc_allow_requested: does a monitor ask for allow events right now? */
static __always_inline int polc_allow_requested(void)
{
	__u32 zero = 0;
	__u64 *until = bpf_map_lookup_elem(&events_allow, &zero);

	return until && *until && bpf_ktime_get_coarse_ns() < *until;
}

/*
 * polc_verdict counts, reports (drops always, allows with cfg_events_allow
 * or on a monitor's request) and returns the tc action.
 */
static __always_inline int polc_verdict(const struct pkt_state *st, __u8 verdict, __u32 rule)
{
	polc_count(rule, st->len);
	if (verdict != POLC_VERDICT_ALLOW) {
		polc_event(st, verdict, rule);
		return TC_ACT_SHOT;
	}
	/* audited: passes, counted under the audit rule too, always reported */
	if (st->audit) {
		polc_count(st->audit, st->len);
		polc_event(st, verdict, rule);
	} else if (cfg_events_allow || polc_allow_requested())
		polc_event(st, verdict, rule);
	return TC_ACT_OK;
}

#endif /* POLC_VERDICT_H */
