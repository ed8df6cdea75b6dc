/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * maps.h — every map of the datapath. Sizes here are defaults; the runtime
 * (from the bundle's manifest) sets MaxEntries before loading.
 */
#ifndef POLC_MAPS_H
#define POLC_MAPS_H

#include "common.h"

/*
 * The policy content: ipcache (hash and trie per family), policy and
 * policy_ranges. Each is an array of two maps (slots 0 and 1) of the same
 * shape; a packet reads the generation map once at entry and looks up
 * slot generation & 1 in every one of them (polc_content), so that a
 * map-only apply can fill the standby slot and switch all six maps, and
 * the generation conntrack is stamped with, with one update of the
 * generation map (docs/runtime.md, *Map-only apply*). The verifier
 * inlines the outer lookups.
 */

/* Host addresses → identity: the hot path, one exact-key hash lookup. */
struct ipcache4_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u8[4]);
	__type(value, struct ipcache_value);
	__uint(max_entries, 65536);
};

struct ipcache6_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u8[16]);
	__type(value, struct ipcache_value);
	__uint(max_entries, 65536);
};

/* Prefixes → identity: consulted only on a hash miss and cfg_has_prefixes*. */
struct ipcache4_lpm_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm_key4);
	__type(value, struct ipcache_value);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
};

struct ipcache6_lpm_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm_key6);
	__type(value, struct ipcache_value);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
};

/* (subject, remote, port, proto, flags) → precomputed verdict of that class. */
struct policy_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct policy_key);
	__type(value, struct policy_value);
	__uint(max_entries, 65536);
};

/* Port ranges as prefixes of the port; only for subjects with *_RANGES. */
struct policy_ranges_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct policy_range_key);
	__type(value, struct policy_value);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
};

#define POLC_CONTENT_MAP(name)                                   \
	struct {                                                 \
		__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);        \
		__type(key, __u32);                              \
		__uint(max_entries, POLC_CONTENT_SLOTS);         \
		__array(values, struct name##_inner);            \
	} name SEC(".maps")

#define POLC_CONTENT_SLOTS 2
POLC_CONTENT_MAP(ipcache4);
POLC_CONTENT_MAP(ipcache6);
POLC_CONTENT_MAP(ipcache4_lpm);
POLC_CONTENT_MAP(ipcache6_lpm);
POLC_CONTENT_MAP(policy);
POLC_CONTENT_MAP(policy_ranges);

/*
 * The policy generation in force (slot 0): stamped into conntrack
 * entries, fragment verdicts and events, and its low bit is the slot of
 * the content maps packets look up. The runtime writes it at load and
 * switches a map-only apply with one update of it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} generation SEC(".maps");

/*
 * Conntrack: one table of allowed flows per endpoint, keyed endpoint side
 * first (struct ct_key), in an array indexed by the endpoint's index (the
 * interface binding's). An endpoint that opens flows faster than its table
 * holds evicts only its own least recently used flows, never another
 * endpoint's. The runtime creates a table when it binds an endpoint's
 * interface and carries it over apply; a slot without a table tracks
 * nothing (its flows always meet policy). max_entries of both are set at
 * load: the outer from the bundle's endpoints, the tables' per endpoint.
 */
struct ct_table {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct_key);
	__type(value, struct ct_value);
	__uint(max_entries, 8192);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, 1024);
	__array(values, struct ct_table);
} conntrack SEC(".maps");

/* Verdicts of first fragments, for the later fragments of the datagram. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct frag_key);
	__type(value, struct frag_value);
	__uint(max_entries, 8192);
} frags SEC(".maps");

/* Packets and bytes per rule id (per CPU; sum over CPUs to read). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(max_entries, 1024);
} counters SEC(".maps");

/*
 * struct event records: every drop, and allows with cfg_events_allow or
 * while events_allow asks for them.
 */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

/* Events that found the ring buffer full (per CPU; sum to read). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} events_lost SEC(".maps");

/*
 * Allow events on request: until the CLOCK_MONOTONIC time (ns) in slot 0,
 * allowed packets are reported too. `polc monitor --allow` keeps moving it
 * a few seconds ahead, so the events stop soon after the monitor does,
 * however it ends. 0: off.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} events_allow SEC(".maps");

/* Source prefixes dropped at XDP. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm_key4);
	__type(value, __u32);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} prefilter4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm_key6);
	__type(value, __u32);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} prefilter6 SEC(".maps");

/*
 * Interface → endpoint binding (struct iface_value), keyed by ifindex.
 * Indices below POLC_IFACE_ARRAY_SIZE live in an array, whose lookup the
 * verifier inlines (no helper call on the hot path); larger ones, which
 * hosts reach after many interfaces have come and gone, in a hash. The
 * runtime fills both; the bundle carries no entries.
 */
#define POLC_IFACE_ARRAY_SIZE 65536
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct iface_value);
	__uint(max_entries, POLC_IFACE_ARRAY_SIZE);
} iface_endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct iface_value);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} iface_endpoints_big SEC(".maps");

/* Tail-call slots; the compiler lays them out (cfg_slot_*). */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 8);
} tailcalls SEC(".maps");

/* Per-packet state between tail calls (one slot per CPU). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct pkt_state);
	__uint(max_entries, 1);
} scratch SEC(".maps");

#endif /* POLC_MAPS_H */
