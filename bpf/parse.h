/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * parse.h — Ethernet, IPv4, IPv6 (with extension headers), TCP, UDP, SCTP,
 * ICMP and ICMPv6 into a pkt_state. Every read is bounds-checked: the hot
 * headers (Ethernet, IP, L4) through polc_load, which reads the linear data
 * directly and falls back to bpf_skb_load_bytes; the rare ones (IPv6
 * extension headers, packets quoted in ICMP errors) through
 * bpf_skb_load_bytes alone, which keeps verification small. A read that
 * fails means the packet ends early: a header we need that is cut is a
 * malformed packet.
 */
#ifndef POLC_PARSE_H
#define POLC_PARSE_H

#include "common.h"

#define POLC_ETH_HLEN 14
#define POLC_ETH_P_IP 0x0800
#define POLC_ETH_P_IPV6 0x86DD
#define POLC_ETH_P_ARP 0x0806

/* IPv6 extension headers walked, at most POLC_MAX_EXTHDRS of them. */
#define POLC_NH_HOPOPTS 0
#define POLC_NH_ROUTING 43
#define POLC_NH_FRAGMENT 44
#define POLC_NH_AH 51
#define POLC_NH_DSTOPTS 60
#define POLC_MAX_EXTHDRS 6

enum polc_parse {
	POLC_PARSE_OK = 0,
	POLC_PARSE_ARP,
	POLC_PARSE_NON_IP, /* any other ethertype (VLAN tags included), or a runt frame */
	POLC_PARSE_MALFORMED,
};

/*
 * polc_load copies len bytes at off into to: straight from the linear
 * packet data when it holds them (the common case, no helper call), else
 * with bpf_skb_load_bytes, which also reaches non-linear data and fails
 * beyond the end of the packet. A failure is a truncated packet.
 */
static __always_inline int polc_load(struct __sk_buff *skb, __u32 off, void *to, const __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	if (off < 0x4000 && data + off + len <= end) {
		__builtin_memcpy(to, data + off, len);
		return 0;
	}
	return bpf_skb_load_bytes(skb, off, to, len);
}

struct polc_ipv4 {
	__u8 vihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__be16 check;
	__u8 saddr[4];
	__u8 daddr[4];
};

struct polc_ipv6 {
	__be32 vtcfl;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

/* ICMP and ICMPv6 share this prefix; id is meaningful for echo only. */
struct polc_icmp {
	__u8 type;
	__u8 code;
	__be16 check;
	__be16 id;
	__be16 seq;
};

static __always_inline int polc_is_icmp_error(__u8 family, __u8 type)
{
	if (family == POLC_FAMILY_IPV4)
		/* dest unreachable, source quench, redirect, time exceeded, parameter problem */
		return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
	/* dest unreachable, packet too big, time exceeded, parameter problem */
	return type >= 1 && type <= 4;
}

/*
 * polc_is_tunnel: IP protocols that carry other packets, which policy would
 * judge by the outer header alone: IP in IP (4), IPv6 in IP (41), GRE (47),
 * EtherIP (97), L2TPv3 (115), MPLS in IP (137). compiler/ir TunnelProtos.
 */
static __always_inline int polc_is_tunnel(__u8 proto)
{
	return proto == 4 || proto == 41 || proto == 47 || proto == 97 || proto == 115 || proto == 137;
}

/* fe80::/10, IPv6 link-local unicast. */
static __always_inline int polc_ip6_linklocal(const __u8 *a)
{
	return a[0] == 0xfe && (a[1] & 0xc0) == 0x80;
}

/* ::, the unspecified address (duplicate address detection sends from it). */
static __always_inline int polc_ip6_unspecified(const __u8 *a)
{
	__u64 hi, lo;

	__builtin_memcpy(&hi, a, 8);
	__builtin_memcpy(&lo, a + 8, 8);
	return !hi && !lo;
}

/* ff02::/16, IPv6 link-local scope multicast (all-nodes, solicited-node, ...). */
static __always_inline int polc_ip6_ll_multicast(const __u8 *a)
{
	return a[0] == 0xff && a[1] == 0x02;
}

/*
 * polc_is_ndp: an unfragmented ICMPv6 neighbour discovery message (router
 * solicitation 133, router advertisement 134, neighbour solicitation 135,
 * neighbour advertisement 136, redirect 137). Like ARP for IPv4, it passes
 * without policy or conntrack. Receivers drop fragmented ones (RFC 6980)
 * and ones with a hop limit other than 255 (RFC 4861: they did not come
 * from the link), so those meet policy like any ICMPv6. Call after a
 * successful parse.
 */
static __always_inline int polc_is_ndp(const struct pkt_state *st)
{
	__u8 type = st->policy_port >> 8;

	return st->tuple.family == POLC_FAMILY_IPV6 && st->tuple.proto == POLC_PROTO_ICMPV6 &&
	       st->frag == POLC_FRAG_NONE && st->hop_limit == 255 && type >= 133 && type <= 137;
}

/*
 * polc_icmp_ports sets the tracking ports of an ICMP message: echo request
 * (id, 0), echo reply (0, id), anything else (0, 0), and returns its kind
 * (POLC_ECHO_REQUEST, _REPLY or _OTHER). Only echo requests create
 * conntrack entries.
 */
static __always_inline __u8 polc_icmp_ports(__u8 family, struct polc_icmp *ic, __u16 *sport, __u16 *dport)
{
	__u8 req = family == POLC_FAMILY_IPV4 ? 8 : 128;
	__u8 rep = family == POLC_FAMILY_IPV4 ? 0 : 129;

	*sport = 0;
	*dport = 0;
	if (ic->type == req) {
		*sport = bpf_ntohs(ic->id);
		return POLC_ECHO_REQUEST;
	}
	if (ic->type == rep) {
		*dport = bpf_ntohs(ic->id);
		return POLC_ECHO_REPLY;
	}
	return POLC_ECHO_OTHER;
}

/*
 * polc_native_icmp: ICMP in IPv4 or ICMPv6 in IPv6. ICMP carried in IPv6
 * (or ICMPv6 in IPv4) is just a protocol number without ports.
 */
static __always_inline int polc_native_icmp(__u8 proto, __u8 family)
{
	return (proto == POLC_PROTO_ICMP && family == POLC_FAMILY_IPV4) ||
	       (proto == POLC_PROTO_ICMPV6 && family == POLC_FAMILY_IPV6);
}

/*
 * polc_inner_exthdrs walks the extension headers of an IPv6 packet quoted
 * in an ICMP error: the same headers and the same limit as polc_parse_ipv6,
 * read with bpf_skb_load_bytes from off (the quoted packet), len bytes
 * available. It leaves the L4 protocol in *proto and its offset (from off)
 * in *l4off, and returns 1 for a quoted non-first fragment (no L4 header),
 * 0 otherwise, or -1 when the chain cannot be read: cut short, or longer
 * than POLC_MAX_EXTHDRS.
 */
static __always_inline int polc_inner_exthdrs(struct __sk_buff *skb, __u32 off, __u32 len, __u8 *proto, __u32 *l4off)
{
	__u32 pos = sizeof(struct polc_ipv6);
	__u8 nh = *proto;

	for (int i = 0; i <= POLC_MAX_EXTHDRS; i++) {
		__u8 h[4];

		if (nh != POLC_NH_HOPOPTS && nh != POLC_NH_ROUTING && nh != POLC_NH_DSTOPTS && nh != POLC_NH_AH &&
		    nh != POLC_NH_FRAGMENT) {
			if (pos > len)
				return -1; /* the last header runs past the quote */
			*proto = nh;
			*l4off = pos;
			return 0;
		}
		/* every extension header is at least 8 bytes */
		if (pos > len || len - pos < 8 || bpf_skb_load_bytes(skb, off + pos, h, sizeof(h)) < 0)
			return -1;
		if (nh == POLC_NH_FRAGMENT) {
			if (((__u16)h[2] << 8 | h[3]) & 0xfff8) {
				*proto = h[0];
				*l4off = pos + 8;
				return 1;
			}
			pos += 8;
		} else {
			pos += nh == POLC_NH_AH ? ((__u32)h[1] + 2) * 4 : ((__u32)h[1] + 1) * 8;
		}
		nh = h[0];
	}
	return -1;
}

/*
 * polc_parse_inner reads the packet embedded in an ICMP error at off (len
 * bytes available) into st->inner, walking a quoted IPv6 packet's extension
 * headers. An inner packet we cannot read makes the error unrelated (it
 * then meets policy like any ICMP message), not malformed: routers may
 * quote little. A quoted IPv6 non-first fragment has no L4 header: its
 * ports are 0, and quoted ICMPv6 belongs to no flow.
 */
static __always_inline void polc_parse_inner(struct __sk_buff *skb, struct pkt_state *st, __u32 off, __u32 len)
{
	struct polc_tuple *in = &st->inner;
	__u32 l4off = 0;
	int later = 0;
	__u8 proto;

	if (st->tuple.family == POLC_FAMILY_IPV4) {
		struct polc_ipv4 ip;
		__u32 hl;

		if (len < sizeof(ip) || bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
			return;
		hl = (ip.vihl & 0xf) * 4;
		if ((ip.vihl >> 4) != 4 || hl < sizeof(ip))
			return;
		__builtin_memcpy(in->saddr, ip.saddr, 4);
		__builtin_memcpy(in->daddr, ip.daddr, 4);
		proto = ip.protocol;
		l4off = hl;
	} else {
		struct polc_ipv6 ip6;

		if (len < sizeof(ip6) || bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
			return;
		if ((bpf_ntohl(ip6.vtcfl) >> 28) != 6)
			return;
		proto = ip6.nexthdr;
		later = polc_inner_exthdrs(skb, off, len, &proto, &l4off);
		if (later < 0)
			return;
		__builtin_memcpy(in->saddr, ip6.saddr, 16);
		__builtin_memcpy(in->daddr, ip6.daddr, 16);
	}
	in->proto = proto;
	in->family = st->tuple.family;
	if (later) {
		/* no L4 header to read: tracked by addresses only */
		if (polc_native_icmp(proto, in->family))
			st->inner_echo = POLC_ECHO_OTHER;
	} else if (proto == POLC_PROTO_TCP || proto == POLC_PROTO_UDP || proto == POLC_PROTO_SCTP) {
		__be16 ports[2];

		if (l4off + 4 > len || bpf_skb_load_bytes(skb, off + l4off, ports, 4) < 0)
			return;
		in->sport = bpf_ntohs(ports[0]);
		in->dport = bpf_ntohs(ports[1]);
	} else if (polc_native_icmp(proto, in->family)) {
		struct polc_icmp ic;

		if (l4off + sizeof(ic) > len || bpf_skb_load_bytes(skb, off + l4off, &ic, sizeof(ic)) < 0)
			return;
		st->inner_echo = polc_icmp_ports(in->family, &ic, &in->sport, &in->dport);
	}
	st->has_inner = 1;
}

/*
 * polc_parse_l4 reads the L4 header at off, len bytes of IP payload
 * (st->frag already set). Too short for its protocol's fixed header →
 * malformed.
 */
static __always_inline int polc_parse_l4(struct __sk_buff *skb, struct pkt_state *st, __u32 off, __u32 len)
{
	struct polc_tuple *t = &st->tuple;
	__u8 proto = t->proto;

	st->track = 1;
	if (proto == POLC_PROTO_TCP) {
		__u8 th[14];
		__u32 doff;

		if (len < 20 || polc_load(skb, off, th, sizeof(th)) < 0)
			return POLC_PARSE_MALFORMED;
		doff = (th[12] >> 4) * 4;
		if (doff < 20 || doff > len)
			return POLC_PARSE_MALFORMED;
		t->sport = (__u16)th[0] << 8 | th[1];
		t->dport = (__u16)th[2] << 8 | th[3];
		st->tcp_flags = th[13];
	} else if (proto == POLC_PROTO_UDP) {
		__be16 uh[3];
		__u32 ulen;

		if (len < 8 || polc_load(skb, off, uh, sizeof(uh)) < 0)
			return POLC_PARSE_MALFORMED;
		ulen = bpf_ntohs(uh[2]);
		/* the length covers the whole datagram: a first fragment holds
		 * only part of it, so only an unfragmented one must fit */
		if (ulen < 8 || (ulen > len && st->frag != POLC_FRAG_FIRST))
			return POLC_PARSE_MALFORMED;
		t->sport = bpf_ntohs(uh[0]);
		t->dport = bpf_ntohs(uh[1]);
	} else if (proto == POLC_PROTO_SCTP) {
		__be16 ports[2];

		/* 12-byte common header; ports come first */
		if (len < 12 || polc_load(skb, off, ports, sizeof(ports)) < 0)
			return POLC_PARSE_MALFORMED;
		t->sport = bpf_ntohs(ports[0]);
		t->dport = bpf_ntohs(ports[1]);
	} else if (polc_native_icmp(proto, t->family)) {
		struct polc_icmp ic;

		if (len < sizeof(ic) || polc_load(skb, off, &ic, sizeof(ic)) < 0)
			return POLC_PARSE_MALFORMED;
		/* only echo requests create conntrack entries; echo replies, whatever
		 * their id, are looked up (reversed); other messages are not */
		st->echo = polc_icmp_ports(t->family, &ic, &t->sport, &t->dport);
		st->track = st->echo == POLC_ECHO_REQUEST;
		st->policy_port = (__u16)ic.type << 8 | ic.code;
		st->ev_dport = st->policy_port;
		if (polc_is_icmp_error(t->family, ic.type))
			polc_parse_inner(skb, st, off + sizeof(ic), len - sizeof(ic));
		return POLC_PARSE_OK;
	}
	/* any other protocol (also ICMP in IPv6, ICMPv6 in IPv4) has no ports:
	 * tracked by addresses and protocol alone, only any-port policy applies */
	st->portless = proto != POLC_PROTO_TCP && proto != POLC_PROTO_UDP && proto != POLC_PROTO_SCTP;
	st->policy_port = t->dport;
	st->ev_sport = t->sport;
	st->ev_dport = t->dport;
	return POLC_PARSE_OK;
}

static __always_inline int polc_parse_ipv4(struct __sk_buff *skb, struct pkt_state *st)
{
	struct polc_ipv4 ip;
	__u32 hl, tot, fo;

	if (polc_load(skb, POLC_ETH_HLEN, &ip, sizeof(ip)) < 0)
		return POLC_PARSE_MALFORMED;
	hl = (ip.vihl & 0xf) * 4;
	tot = bpf_ntohs(ip.tot_len);
	if ((ip.vihl >> 4) != 4 || hl < sizeof(ip) || tot < hl || POLC_ETH_HLEN + tot > skb->len)
		return POLC_PARSE_MALFORMED;
	st->tuple.family = POLC_FAMILY_IPV4;
	st->tuple.proto = ip.protocol;
	__builtin_memcpy(st->tuple.saddr, ip.saddr, 4);
	__builtin_memcpy(st->tuple.daddr, ip.daddr, 4);
	fo = bpf_ntohs(ip.frag_off);
	st->frag_id = bpf_ntohs(ip.id);
	if (fo & 0x1fff) {
		st->frag = POLC_FRAG_LATER;
		return POLC_PARSE_OK;
	}
	if (fo & 0x2000)
		st->frag = POLC_FRAG_FIRST;
	return polc_parse_l4(skb, st, POLC_ETH_HLEN + hl, tot - hl);
}

static __always_inline int polc_parse_ipv6(struct __sk_buff *skb, struct pkt_state *st)
{
	struct polc_ipv6 ip6;
	__u32 off = POLC_ETH_HLEN + sizeof(ip6), end;
	__u8 nh;

	if (polc_load(skb, POLC_ETH_HLEN, &ip6, sizeof(ip6)) < 0)
		return POLC_PARSE_MALFORMED;
	end = off + bpf_ntohs(ip6.payload_len);
	if ((bpf_ntohl(ip6.vtcfl) >> 28) != 6 || end > skb->len)
		return POLC_PARSE_MALFORMED;
	st->tuple.family = POLC_FAMILY_IPV6;
	st->hop_limit = ip6.hop_limit;
	__builtin_memcpy(st->tuple.saddr, ip6.saddr, 16);
	__builtin_memcpy(st->tuple.daddr, ip6.daddr, 16);
	nh = ip6.nexthdr;

	/* Walk the extension header chain: more than POLC_MAX_EXTHDRS → malformed. */
#pragma unroll
	for (int i = 0; i <= POLC_MAX_EXTHDRS; i++) {
		__u8 h[2];

		if (nh == POLC_NH_FRAGMENT) {
			struct {
				__u8 nexthdr;
				__u8 reserved;
				__be16 off_flags;
				__be32 id;
			} fh;
			__u32 fo;

			if (off + sizeof(fh) > end || bpf_skb_load_bytes(skb, off, &fh, sizeof(fh)) < 0)
				return POLC_PARSE_MALFORMED;
			off += sizeof(fh);
			nh = fh.nexthdr;
			fo = bpf_ntohs(fh.off_flags);
			st->frag_id = bpf_ntohl(fh.id);
			if (fo & 0xfff8) {
				st->tuple.proto = nh;
				st->frag = POLC_FRAG_LATER;
				return POLC_PARSE_OK;
			}
			if (fo & 1)
				st->frag = POLC_FRAG_FIRST;
			continue;
		}
		if (nh != POLC_NH_HOPOPTS && nh != POLC_NH_ROUTING && nh != POLC_NH_DSTOPTS && nh != POLC_NH_AH) {
			st->tuple.proto = nh;
			if (off > end)
				return POLC_PARSE_MALFORMED;
			return polc_parse_l4(skb, st, off, end - off);
		}
		if (off + 8 > end || bpf_skb_load_bytes(skb, off, h, sizeof(h)) < 0)
			return POLC_PARSE_MALFORMED;
		off += nh == POLC_NH_AH ? ((__u32)h[1] + 2) * 4 : ((__u32)h[1] + 1) * 8;
		nh = h[0];
	}
	return POLC_PARSE_MALFORMED;
}

/* polc_parse fills st from the packet; st must be zeroed. */
static __always_inline int polc_parse(struct __sk_buff *skb, struct pkt_state *st)
{
	__be16 proto;

	if (polc_load(skb, 12, &proto, sizeof(proto)) < 0)
		return POLC_PARSE_NON_IP;
	if (proto == bpf_htons(POLC_ETH_P_IP))
		return polc_parse_ipv4(skb, st);
	if (proto == bpf_htons(POLC_ETH_P_IPV6))
		return polc_parse_ipv6(skb, st);
	if (proto == bpf_htons(POLC_ETH_P_ARP))
		return POLC_PARSE_ARP;
	return POLC_PARSE_NON_IP;
}

#endif /* POLC_PARSE_H */
