/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Neighbour Discovery answers of the datapath (RFC 4861): the one NS -> NA
 * builder, for relay mode's ND proxy (relay6.h: guests' addresses on the
 * uplink, LAN addresses on the bridge) and for NAT66's announced mapped
 * addresses (nat6.h: kvx_extaddr6).  A valid Neighbour Solicitation in the
 * frame becomes the Neighbour Advertisement that answers it, in place, and
 * goes back out of the device it came in on, as the ARP answers of nat.h;
 * relay mode also relays a LAN host's advertisement (a defence of an
 * address a guest probes) to the guests through the same builder.
 */
#ifndef KVX_ND6_H
#define KVX_ND6_H

#include "ct6.h"
#include "icmp.h"
#include "icmp6.h"
#include "stats.h"

#define ICMPV6_NEIGH_SOL 135
#define ICMPV6_NEIGH_ADV 136
#define KVX_ND_OPT_TLLA 2 /* target link-layer address (RFC 4861 4.6.1) */
#define KVX_NA_F_SOLICITED 0x40000000U
#define KVX_NA_F_OVERRIDE 0x20000000U

/* A Neighbour Solicitation or Advertisement with one link-layer address
 * option (RFC 4861 4.3, 4.4): an NA we send is exactly this. */
struct kvx_nd_msg {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 flags; /* NA: R, S, O; NS: reserved */
	__be32 target[4];
	__u8 opt_type;
	__u8 opt_len; /* 8-byte units */
	__u8 lladdr[6];
};

#define KVX_ND_NS_MIN 24 /* an NS without options */
/* Returned by nat6_uplink_check: a Neighbour Solicitation, ours to
 * answer or the host's (nat6_uplink_ns). */
#define KVX_ND6_NS (KVX_R_MAX + 6)

#define KVX_ND_OPT_SLLA 1 /* source link-layer address (RFC 4861 4.6.1) */

/* ff02::1:ffXX:XXXX with the target's low 24 bits (RFC 4291 2.7.1). */
static __always_inline int nd_is_solicited_node(const __be32 *group, const __be32 *target)
{
	return group[0] == bpf_htonl(0xff020000) && !group[1] && group[2] == bpf_htonl(1) &&
	       (group[3] & bpf_htonl(0xff000000)) == bpf_htonl(0xff000000) &&
	       !((group[3] ^ target[3]) & bpf_htonl(0x00ffffff));
}

/*
 * The options after the 24 fixed bytes of an ND message len bytes long
 * (len <= KVX_ICMP_SUM_MAX, a multiple of 8): each longer than 0 (RFC
 * 4861 7.1.1, 7.1.2: a parser would loop forever on one; the kernel's
 * ndisc_parse_options refuses it) and none past the end; with no_slla,
 * no source link-layer address option (an NS from ::, 7.1.1).  At most
 * (88 - 24) / 8 options fit.
 */
static __always_inline int nd_opts_ok(const void *msg, const void *data_end, __u32 len, int no_slla)
{
	__u32 off = KVX_ND_NS_MIN;
	int i;

	for (i = 0; i < (KVX_ICMP_SUM_MAX - KVX_ND_NS_MIN) / 8; i++) {
		const __u8 *o;

		if (off >= len)
			break;
		if (off > KVX_ICMP_SUM_MAX - 2)
			return 0;
		o = msg + off;
		if ((void *)(o + 2) > data_end)
			return 0;
		if (!o[1] || (no_slla && o[0] == KVX_ND_OPT_SLLA))
			return 0;
		off += o[1] * 8;
	}
	return off == len;
}

/*
 * A Neighbour Solicitation we may answer or relay (RFC 4861 7.1.1): hop
 * limit 255 (it never crossed a router), code 0, at least 24 bytes, its
 * checksum right, no extension headers, a unicast target, every option
 * longer than 0 and within the message (nd_opts_ok); from :: only to a
 * multicast address and without a source link-layer address option; to a
 * multicast address only to the target's solicited-node group (7.2.2: a
 * node solicits nothing else; an NS to all nodes is no question about
 * this target).  A Neighbour Advertisement likewise (7.1.2): never from
 * ::, to a multicast address only unsolicited.  The caller has checked
 * the type.  Its target into target.  Options up to the sum's reach (88
 * bytes of message); a longer message is left to the host, as is any
 * invalid one (its ndisc discards it).
 */
static __noinline int nd_target(kvx_ctx_t *ctx, const struct kvx_pkt6 *p6, __be32 *target)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	struct kvx_ipv6hdr *ip6 = data + ETH_HLEN;
	struct kvx_nd_msg *ns = (void *)(ip6 + 1);
	__u32 len, sum;

	if (!p6 || !target || (void *)ns + KVX_ND_NS_MIN > data_end)
		return 0;
	if (p6->p.l4_off != ETH_HLEN + sizeof(*ip6) || p6->p.ttl != 255 || ns->code)
		return 0;
	len = p6->p.ip_end - p6->p.l4_off;
	if (len < KVX_ND_NS_MIN || len > KVX_ICMP_SUM_MAX || (len & 7))
		return 0;
	sum = icmp_sum(ip6->saddr, data_end, 32) + bpf_htons(len) + bpf_htons(KVX_IPPROTO_ICMPV6) +
	      icmp_sum(ns, data_end, len);
	if (csum_fold32(sum) != 0xffff)
		return 0;
	if ((void *)ns + KVX_ND_NS_MIN > data_end)
		return 0;
	if (addr6_is_mcast(ns->target))
		return 0;
	if (ns->type == ICMPV6_NEIGH_ADV ?
		    addr6_is_zero(ip6->saddr) || (addr6_is_mcast(ip6->daddr) &&
						  (ns->flags & bpf_htonl(KVX_NA_F_SOLICITED))) :
		    (addr6_is_zero(ip6->saddr) && !addr6_is_mcast(ip6->daddr)) ||
			    (addr6_is_mcast(ip6->daddr) &&
			     !nd_is_solicited_node(ip6->daddr, ns->target)))
		return 0;
	if (!nd_opts_ok(ns, data_end, len,
			ns->type == ICMPV6_NEIGH_SOL && addr6_is_zero(ip6->saddr)))
		return 0;
	addr6_copy(target, ns->target);
	return 1;
}

/*
 * The NS in the frame becomes the NA that answers it (RFC 4861 7.2.4), for
 * its target at mac, and goes back out of the device it came in on: to
 * its sender (Solicited), or for a DAD probe (source ::) to all nodes.
 * Router 0; Override as na_flags says (KVX_NA_F_OVERRIDE or 0): an ND
 * proxy's answer has it 0 (RFC 4861 7.2.8, as Linux's proxy_ndp answers),
 * never overriding what a neighbour heard from the address's real owner;
 * the owner's own answer has it 1 (7.2.4: a mapped address is ours).  An
 * NA in the frame (a LAN host's defence of an address a guest probes,
 * relay6_uplink_nd) is relayed instead: its addresses, R and S kept,
 * Override cleared (RFC 4389 4.1.3.3), mac as its target's link-layer
 * address, out of out_ifindex.  The frame is cut or grown to the NA's
 * length; every byte is written, the checksum computed whole.
 */
static __noinline int nd_answer(kvx_ctx_t *ctx, const __u8 *mac, __u32 len_in, __u32 na_flags,
				__u32 out_ifindex)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	struct ethhdr *eth = data;
	struct kvx_ipv6hdr *ip6 = data + ETH_HLEN;
	struct kvx_nd_msg *na = (void *)(ip6 + 1);
	__be32 target[4], src[4], dst[4];
	__u8 dmac[ETH_ALEN];
	__u32 flags = na_flags & KVX_NA_F_OVERRIDE, sum;
	int relayed;

	if (!mac || (void *)na + KVX_ND_NS_MIN > data_end || (eth->h_source[0] & 1))
		return -1;
	addr6_copy(target, na->target);
	addr6_copy(src, na->target);
	relayed = na->type == ICMPV6_NEIGH_ADV;
	if (relayed) {
		addr6_copy(src, ip6->saddr);
		addr6_copy(dst, ip6->daddr);
		__builtin_memcpy(dmac, eth->h_dest, ETH_ALEN);
		flags = bpf_ntohl(na->flags) & ~KVX_NA_F_OVERRIDE;
	} else if (addr6_is_zero(ip6->saddr)) {
		/* ff02::1 at 33:33:00:00:00:01 (RFC 2464 7). */
		dst[0] = bpf_htonl(0xff020000);
		dst[1] = 0;
		dst[2] = 0;
		dst[3] = bpf_htonl(1);
		dmac[0] = 0x33;
		dmac[1] = 0x33;
		dmac[2] = 0;
		dmac[3] = 0;
		dmac[4] = 0;
		dmac[5] = 1;
	} else {
		addr6_copy(dst, ip6->saddr);
		__builtin_memcpy(dmac, eth->h_source, ETH_ALEN);
		flags |= KVX_NA_F_SOLICITED;
	}
	if (ctx_set_len(ctx, ETH_HLEN + sizeof(*ip6) + sizeof(*na)))
		return -1;
	data = ctx_data(ctx);
	data_end = ctx_data_end(ctx);
	eth = data;
	ip6 = data + ETH_HLEN;
	na = (void *)(ip6 + 1);
	if ((void *)(na + 1) > data_end)
		return -1;
	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	ip6->ver_tc = 0x60;
	ip6->tc_flow = 0;
	ip6->flow_lo = 0;
	ip6->payload_len = bpf_htons(sizeof(*na));
	ip6->nexthdr = KVX_IPPROTO_ICMPV6;
	ip6->hop_limit = 255;
	addr6_copy(ip6->saddr, src);
	addr6_copy(ip6->daddr, dst);
	na->type = ICMPV6_NEIGH_ADV;
	na->code = 0;
	na->checksum = 0;
	na->flags = bpf_htonl(flags);
	addr6_copy(na->target, target);
	na->opt_type = KVX_ND_OPT_TLLA;
	na->opt_len = 1;
	__builtin_memcpy(na->lladdr, mac, ETH_ALEN);
	sum = icmp_sum(ip6->saddr, data_end, 32) + bpf_htons(sizeof(*na)) +
	      bpf_htons(KVX_IPPROTO_ICMPV6) + icmp_sum(na, data_end, sizeof(*na));
	na->checksum = ~csum_fold32(sum);
	stats_count(relayed ? KVX_R_ND_RELAY : KVX_R_ND_PROXY_NA, len_in);
	return ctx_redirect(relayed ? out_ifindex : ctx_ifindex(ctx));
}

#endif /* KVX_ND6_H */
