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

/*
 * Event wake-ups are batched. A submit that wakes the reader costs more
 * than the rest of a drop (irq_work, then the reader's wake-up), and with
 * the default flags every event that finds a caught-up reader pays it, so
 * a drop flood would pay it per packet. Events are submitted without
 * wake-up, except one each time the unread data reaches a multiple of
 * POLC_EVENTS_WAKEUP_BYTES (about 230 events): the record whose
 * reservation crossed it wakes the reader. Fewer events than that wait
 * for the reader's own poll (runtime.EventPoll: readers wait at most that
 * long before they look), which bounds how late any event is seen.
 */
#define POLC_EVENTS_WAKEUP_BYTES (16u << 10)
/* a record's share of the ring: the event and its 8-byte header, 8-aligned */
#define POLC_EVENT_RECORD_BYTES ((sizeof(struct event) + 8 + 7) & ~7ul)

static __always_inline __u64 polc_event_wakeup(void)
{
	/* the unread data, this record's reservation included */
	__u64 unread = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);

	if (unread >= POLC_EVENTS_WAKEUP_BYTES && unread % POLC_EVENTS_WAKEUP_BYTES < POLC_EVENT_RECORD_BYTES)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
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
	bpf_ringbuf_submit(e, polc_event_wakeup());
}

/* polc_allow_requested: does a monitor ask for allow events at the packet's time? */
static __always_inline int polc_allow_requested(const struct pkt_state *st)
{
	__u32 zero = 0;
	__u64 *until = bpf_map_lookup_elem(&events_allow, &zero);

	return until && *until && st->now < *until;
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
	} else if (cfg_events_allow || polc_allow_requested(st))
		polc_event(st, verdict, rule);
	return TC_ACT_OK;
}

#endif /* POLC_VERDICT_H */
