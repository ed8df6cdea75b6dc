//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * polc.c — the programs of polc's datapath. Their behaviour comes entirely
 * from map contents and load-time constants (common.h, maps.h); see
 * docs/datapath.md.
 *
 *   tc_endpoint_egress   tc, host side ingress of an endpoint's veth
 *   tc_endpoint_ingress  tc, host side egress of an endpoint's veth
 *        │ parse, ipcache, conntrack fast path, related ICMP, fragments
 *        ▼ tail call tailcalls[cfg_slot_policy4 | cfg_slot_policy6]
 *   tc_policy4, tc_policy6   the policy decision for a new flow
 *        ▼ tail call tailcalls[cfg_slot_epilogue]
 *   tc_epilogue          conntrack create, fragment verdict, counters, events
 *
 *   xdp_prefilter        XDP on uplinks: drop listed source prefixes
 */
#include "common.h"
#include "maps.h"
#include "parse.h"
#include "policy.h"
#include "conntrack.h"
#include "verdict.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/*
 * Keep these types in BTF (they are not map keys or values): bpf/types.go
 * is checked against struct event, and the reserved rule ids against
 * compiler/ir. Constant null pointers live in .rodata, so no .bss map.
 */
const struct event *const polc_btf_event = 0;
const enum polc_rule *const polc_btf_rule = 0;
/* the conntrack tables' value: the maps name it only through a pointer */
const struct ct_value *const polc_btf_ct_value = 0;
/* the content maps' keys and values: named only through their inner maps */
const struct ipcache_value *const polc_btf_ipcache_value = 0;
const struct lpm_key4 *const polc_btf_lpm_key4 = 0;
const struct lpm_key6 *const polc_btf_lpm_key6 = 0;
const struct policy_key *const polc_btf_policy_key = 0;
const struct policy_range_key *const polc_btf_policy_range_key = 0;
const struct policy_value *const polc_btf_policy_value = 0;

static __always_inline struct pkt_state *polc_state(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&scratch, &zero);
}

static __always_inline int polc_isolated(const struct pkt_state *st, __u8 dir)
{
	return st->subject_flags & (dir == POLC_DIR_EGRESS ? POLC_IPC_EGRESS_ISOLATED : POLC_IPC_INGRESS_ISOLATED);
}

/*
 * polc_finish hands a decided packet to the epilogue. With the epilogue
 * slot empty the verdict is still enforced and counted, but no conntrack
 * entry or fragment verdict is recorded.
 */
static __always_inline int polc_finish(struct __sk_buff *skb, struct pkt_state *st)
{
	bpf_tail_call(skb, &tailcalls, cfg_slot_epilogue);
	return polc_verdict(st, st->verdict, st->rule);
}

/*
 * polc_bound_endpoint is the endpoint the packet's interface serves
 * (iface_endpoints), 0 when the interface is bound to none.
 */
static __always_inline __u32 polc_bound_endpoint(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct iface_value *b = bpf_map_lookup_elem(&iface_endpoints, &ifindex);

	/* an array slot exists for every index below its size */
	if (!b)
		b = bpf_map_lookup_elem(&iface_endpoints_big, &ifindex);
	return b ? b->endpoint : 0;
}

#define POLC_AF_INET6 10

/*
 * polc_ndp_stays_on_link: ND an endpoint sends passes unpoliced only if
 * it cannot leave the link: to a link-local or link-scope multicast
 * address, or to an address of the host itself (its gateway), which the
 * FIB says is not forwarded. Anything else, ND-shaped or not, would be
 * routed on (a covert channel past egress policy), so it meets policy.
 * What the host sends an endpoint with hop limit 255 can only come from
 * the host: a router would have lowered it.
 */
static __always_inline int polc_ndp_stays_on_link(struct __sk_buff *skb, const struct pkt_state *st, __u8 dir)
{
	struct bpf_fib_lookup fib = {};

	if (dir == POLC_DIR_INGRESS || polc_ip6_linklocal(st->tuple.daddr) || polc_ip6_ll_multicast(st->tuple.daddr))
		return 1;
	fib.family = POLC_AF_INET6;
	fib.ifindex = skb->ifindex;
	__builtin_memcpy(fib.ipv6_src, st->tuple.saddr, 16);
	__builtin_memcpy(fib.ipv6_dst, st->tuple.daddr, 16);
	return bpf_fib_lookup(skb, &fib, sizeof(fib), 0) == BPF_FIB_LKUP_RET_NOT_FWDED;
}

/*
 * polc_linklocal_ndp: neighbour discovery whose endpoint-side address is
 * link-local in scope, so that it cannot be an endpoint's own address: at
 * egress from fe80::/10 or :: (duplicate address detection), at ingress to
 * fe80::/10 or ff02::/16 (solicited-node and all-nodes multicast). It
 * passes the address check, then ND passes as it does for any address.
 */
static __always_inline int polc_linklocal_ndp(const struct pkt_state *st, __u8 dir)
{
	if (!polc_is_ndp(st))
		return 0;
	if (dir == POLC_DIR_EGRESS)
		return polc_ip6_linklocal(st->tuple.saddr) || polc_ip6_unspecified(st->tuple.saddr);
	return polc_ip6_linklocal(st->tuple.daddr) || polc_ip6_ll_multicast(st->tuple.daddr);
}

static __always_inline int polc_entry(struct __sk_buff *skb, __u8 dir)
{
	struct pkt_state *st = polc_state();
	struct ipcache_value ipc;
	__u32 zero = 0, *gen;
	__u32 endpoint;
	__u8 *subj, *other;
	__u64 now;
	int r;

	if (!st)
		return TC_ACT_OK; /* cannot happen: the map has a slot per CPU */
	__builtin_memset(st, 0, sizeof(*st));
	/* one read: the content slot and the generation of the whole packet */
	gen = bpf_map_lookup_elem(&generation, &zero);
	st->generation = gen ? *gen : 0;
	/* the one clock read of the packet (each costs a helper call) */
	st->now = bpf_ktime_get_coarse_ns();
	st->len = skb->len;
	st->tuple.dir = dir;
	st->pol_dir = dir;

	/* an interface polc polices but that serves no endpoint passes nothing */
	endpoint = polc_bound_endpoint(skb);
	if (!endpoint)
		return polc_verdict(st, POLC_VERDICT_DENY, POLC_RULE_UNBOUND);
	/* an interface being detached passes everything, both ways at once */
	if (endpoint == POLC_ENDPOINT_PASS)
		return TC_ACT_OK;
	/*
	 * A VLAN tag the stack has already taken off (as it does before tc
	 * ingress) is in the skb, not the data: the frame is tagged all the
	 * same, and the stack may deliver it untagged (VLAN 0) past policy.
	 */
	if (skb->vlan_present)
		return polc_verdict(st, POLC_VERDICT_DENY, POLC_RULE_ETHERTYPE);

	r = polc_parse(skb, st);
	/* ARP passes; every other non-IP ethertype (VLAN tags too) drops */
	if (r == POLC_PARSE_ARP)
		return polc_verdict(st, POLC_VERDICT_ALLOW, POLC_RULE_NON_IP);
	if (r == POLC_PARSE_NON_IP)
		return polc_verdict(st, POLC_VERDICT_DENY, POLC_RULE_ETHERTYPE);
	/* truncated or malformed headers drop, whoever the subject */
	if (r != POLC_PARSE_OK)
		return polc_verdict(st, POLC_VERDICT_DENY, POLC_RULE_MALFORMED);

	/*
	 * The endpoint's side of the packet must be the bound endpoint's
	 * address: its source when the endpoint sends, its destination when
	 * it receives. So an endpoint cannot act as another (or as the world),
	 * and a packet routed onto the wrong interface does not get in.
	 */
	subj = dir == POLC_DIR_EGRESS ? st->tuple.saddr : st->tuple.daddr;
	other = dir == POLC_DIR_EGRESS ? st->tuple.daddr : st->tuple.saddr;
	ipc = polc_ipcache(subj, st->tuple.family, st->generation);
	if (ipc.endpoint != endpoint) {
		if (polc_linklocal_ndp(st, dir) && polc_ndp_stays_on_link(skb, st, dir))
			return polc_verdict(st, POLC_VERDICT_ALLOW, POLC_RULE_NON_IP);
		return polc_verdict(st, POLC_VERDICT_DENY,
				    dir == POLC_DIR_EGRESS ? POLC_RULE_SPOOFED_SOURCE : POLC_RULE_WRONG_DEST);
	}
	/*
	 * IPv6 neighbour discovery that stays on the link passes like ARP: no
	 * policy, no conntrack. Other ND meets policy as ICMPv6.
	 */
	if (polc_is_ndp(st) && polc_ndp_stays_on_link(skb, st, dir))
		return polc_verdict(st, POLC_VERDICT_ALLOW, POLC_RULE_NON_IP);
	/* tunnels, when the bundle says so: what they carry would pass unseen */
	if (cfg_drop_tunnels && polc_is_tunnel(st->tuple.proto))
		return polc_verdict(st, POLC_VERDICT_DENY, POLC_RULE_TUNNEL);
	st->subject = ipc.identity;
	st->subject_flags = ipc.flags;
	st->endpoint = endpoint;
	now = st->now;

	/* a non-first fragment has no ports: follow its first fragment */
	if (st->frag == POLC_FRAG_LATER) {
		struct frag_value *fv = polc_frag_lookup(st, now);

		if (fv)
			return polc_verdict(st, fv->verdict, fv->rule);
		/* unknown: dropped wherever some packet may be denied */
		if (polc_isolated(st, dir) ||
		    (st->subject_flags &
		     (dir == POLC_DIR_EGRESS ? POLC_IPC_EGRESS_TIERED_DENY : POLC_IPC_INGRESS_TIERED_DENY)))
			return polc_verdict(st, POLC_VERDICT_DENY, POLC_RULE_FRAGMENT);
		return polc_verdict(st, POLC_VERDICT_ALLOW, POLC_RULE_DEFAULT_ALLOW);
	}

	polc_ct_key(&st->flow, &st->tuple, dir, st->echo);
	if (st->has_inner) {
		/* ICMP error about a live flow at this endpoint */
		if (polc_ct_related(st, now))
			return polc_verdict(st, POLC_VERDICT_ALLOW, POLC_RULE_RELATED);
	} else if (st->echo != POLC_ECHO_OTHER) {
		r = polc_ct_lookup(st, now);
		/* established flow or its reply: no policy */
		if (r == POLC_CT_HIT) {
			polc_frag_remember(st, POLC_VERDICT_ALLOW, POLC_RULE_ESTABLISHED, now);
			return polc_verdict(st, POLC_VERDICT_ALLOW, POLC_RULE_ESTABLISHED);
		}
		if (r == POLC_CT_RECHECK)
			st->kind = POLC_KIND_RECHECK;
	}
	/* the remote's identity is needed from here on only (not on the fast path) */
	ipc = polc_ipcache(other, st->tuple.family, st->generation);
	st->remote = ipc.identity;
	st->remote_flags = ipc.flags;

	if (st->tuple.family == POLC_FAMILY_IPV4)
		bpf_tail_call(skb, &tailcalls, cfg_slot_policy4);
	else
		bpf_tail_call(skb, &tailcalls, cfg_slot_policy6);

	/* empty policy slot: the subject's default for the direction */
	if (polc_isolated(st, st->pol_dir)) {
		st->verdict = POLC_VERDICT_DENY;
		st->rule = POLC_RULE_DEFAULT_DENY;
	} else {
		st->verdict = POLC_VERDICT_ALLOW;
		st->rule = POLC_RULE_DEFAULT_ALLOW;
	}
	return polc_finish(skb, st);
}

/* Host-side ingress of the veth: traffic from the endpoint, its egress. */
SEC("tc")
int tc_endpoint_egress(struct __sk_buff *skb)
{
	return polc_entry(skb, POLC_DIR_EGRESS);
}

/* Host-side egress of the veth: traffic to the endpoint, its ingress. */
SEC("tc")
int tc_endpoint_ingress(struct __sk_buff *skb)
{
	return polc_entry(skb, POLC_DIR_INGRESS);
}

static __always_inline int polc_policy_prog(struct __sk_buff *skb)
{
	struct pkt_state *st = polc_state();

	if (!st)
		return TC_ACT_OK;
	polc_policy_decide(st);
	return polc_finish(skb, st);
}

/* Policy for IPv4 flows (the decision is identity-based, the same code). */
SEC("tc")
int tc_policy4(struct __sk_buff *skb)
{
	return polc_policy_prog(skb);
}

/* Policy for IPv6 flows. */
SEC("tc")
int tc_policy6(struct __sk_buff *skb)
{
	return polc_policy_prog(skb);
}

/* Records the decision (conntrack, fragments), counts, reports, enforces. */
SEC("tc")
int tc_epilogue(struct __sk_buff *skb)
{
	struct pkt_state *st = polc_state();

	if (!st)
		return TC_ACT_OK;
	polc_ct_commit(st, st->now);
	polc_frag_remember(st, st->verdict, st->rule, st->now);
	return polc_verdict(st, st->verdict, st->rule);
}

/*
 * XDP prefilter: drop packets whose source lies in a prefilter prefix.
 * Anything it cannot parse passes on to tc, which judges it.
 */
SEC("xdp")
int xdp_prefilter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__be16 proto;

	if (data + POLC_ETH_HLEN > end)
		return XDP_PASS;
	proto = *(__be16 *)(data + 12);
	if (proto == bpf_htons(POLC_ETH_P_IP)) {
		struct polc_ipv4 *ip = data + POLC_ETH_HLEN;
		struct lpm_key4 k = { .prefixlen = 32 };

		if ((void *)(ip + 1) > end)
			return XDP_PASS;
		__builtin_memcpy(k.addr, ip->saddr, 4);
		if (!bpf_map_lookup_elem(&prefilter4, &k))
			return XDP_PASS;
	} else if (proto == bpf_htons(POLC_ETH_P_IPV6)) {
		struct polc_ipv6 *ip6 = data + POLC_ETH_HLEN;
		struct lpm_key6 k = { .prefixlen = 128 };

		if ((void *)(ip6 + 1) > end)
			return XDP_PASS;
		__builtin_memcpy(k.addr, ip6->saddr, 16);
		if (!bpf_map_lookup_elem(&prefilter6, &k))
			return XDP_PASS;
	} else {
		return XDP_PASS;
	}
	polc_count(POLC_RULE_PREFILTER, end - data);
	return XDP_DROP;
}
