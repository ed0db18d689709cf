/* SPDX-License-Identifier: GPL-2.0 */
/*
 * IPv4 masquerade: the two packet paths (guest -> outside, outside -> guest)
 * and the header rewrite they share.  Hook-specific details sit behind the
 * context layer (ctx_skb.h), so this compiles for TC today and for XDP with
 * a ctx_xdp.h.
 */
#ifndef KVX_NAT_H
#define KVX_NAT_H

#include "ctx_skb.h"
#include "parse.h"
#include "csum.h"
#include "fib.h"
#include "ct.h"
#include "stats.h"

enum nat_side {
	NAT_SRC, /* SNAT: rewrite source address/port */
	NAT_DST, /* DNAT: rewrite destination address/port */
};

static __always_inline int reason_is_drop(enum kvx_reason r)
{
	switch (r) {
#define KVX_X_DROP(name, drop, desc)                                                               \
	case KVX_R_##name:                                                                         \
		return drop;
		KVX_REASONS(KVX_X_DROP)
#undef KVX_X_DROP
	default:
		return 1;
	}
}

/* The one exit for every packet that is not translated. */
static __always_inline int verdict(enum kvx_reason r, __u32 len)
{
	stats_count(r, len);
	return reason_is_drop(r) ? CTX_DROP : CTX_PASS;
}

static __always_inline int subnet_has(const struct kvx_cfg *cfg, __be32 addr)
{
	return (addr & cfg->subnet_mask) == cfg->subnet_addr;
}

static __always_inline int is_mcast_or_bcast(const struct kvx_cfg *cfg, __be32 addr)
{
	return (bpf_ntohl(addr) >> 28) == 0xe || addr == 0xffffffff ||
	       addr == (cfg->subnet_addr | ~cfg->subnet_mask);
}

/*
 * Rewrite one side of the packet: address, port (TCP/UDP) or echo id (ICMP),
 * TTL - 1, and the MACs; then fix the checksums incrementally.  All direct
 * writes happen first: the checksum helpers invalidate packet pointers.
 */
static __always_inline int nat4_rewrite(kvx_ctx_t *ctx, const struct kvx_pkt *p,
					enum nat_side side, __be32 new_addr, __be16 new_port,
					const __u8 *smac, const __u8 *dmac)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_HLEN;
	struct csum_edit e = {};
	__u32 l4_off = p->l4_off;
	__be16 *port = NULL;
	void *l4;

	if ((void *)(ip + 1) > data_end)
		return -1;
	/* ihl is 5..15: tell the verifier too. */
	if (l4_off < ETH_HLEN + 20 || l4_off > ETH_HLEN + 60)
		return -1;
	l4 = data + l4_off;

	switch (p->proto) {
	case IPPROTO_TCP: {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return -1;
		port = side == NAT_SRC ? &th->source : &th->dest;
		e.l4_csum_off = l4_off + offsetof(struct tcphdr, check);
		e.l4_pseudo = 1;
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end)
			return -1;
		port = side == NAT_SRC ? &uh->source : &uh->dest;
		e.l4_csum_off = l4_off + offsetof(struct udphdr, check);
		e.l4_pseudo = 1;
		e.udp = 1;
		break;
	}
	case IPPROTO_ICMP: {
		struct icmphdr *ih = l4;

		if ((void *)(ih + 1) > data_end)
			return -1;
		port = &ih->un.echo.id;
		e.l4_csum_off = l4_off + offsetof(struct icmphdr, checksum);
		break;
	}
	default:
		break;
	}

	if (smac)
		__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	if (dmac)
		__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);

	e.old_ttl_word = *(__u16 *)&ip->ttl;
	ip->ttl--;
	e.new_ttl_word = *(__u16 *)&ip->ttl;

	if (side == NAT_SRC) {
		e.old_addr = ip->saddr;
		ip->saddr = new_addr;
	} else {
		e.old_addr = ip->daddr;
		ip->daddr = new_addr;
	}
	e.new_addr = new_addr;
	if (port) {
		e.old_port = *port;
		e.new_port = new_port;
		*port = new_port;
	}
	return csum_apply(ctx, &e);
}

/* Bridge ingress: a guest's packet on its way to the host or beyond. */
static __always_inline int nat4_from_guest(kvx_ctx_t *ctx)
{
	struct bpf_fib_lookup fib;
	struct nat_endpoint ext = {};
	struct kvx_pkt p = {};
	const struct kvx_cfg *cfg;
	__u8 macs[2 * ETH_ALEN]; /* guest (source) MAC, then the gateway MAC it used */
	__u32 len = ctx_len(ctx);
	int rc, r;

	ctx_pull_headers(ctx);
	cfg = cfg_get();
	if (!cfg)
		return CTX_PASS;

	switch (parse_ipv4(ctx, &p)) {
	case PARSE_NOT_IPV4:
		return verdict(KVX_R_PASS_NOT_IP, len);
	case PARSE_BAD_IP:
		return verdict(KVX_R_DROP_MALFORMED, len);
	default:
		break;
	}

	/* Anti-spoofing; 0.0.0.0 is a DHCP client (the stack never forwards it). */
	if (!subnet_has(cfg, p.saddr))
		return verdict(p.saddr ? KVX_R_DROP_SPOOFED : KVX_R_PASS_LOCAL, len);
	if (is_mcast_or_bcast(cfg, p.daddr))
		return verdict(KVX_R_PASS_MCAST, len);
	if (subnet_has(cfg, p.daddr))
		return verdict(KVX_R_PASS_LOCAL, len);

	rc = fib_route(ctx, &p, &fib);
	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
	case BPF_FIB_LKUP_RET_NO_NEIGH:
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		break;
	case BPF_FIB_LKUP_RET_NOT_FWDED:
		return verdict(KVX_R_PASS_LOCAL, len);
	case BPF_FIB_LKUP_RET_BLACKHOLE:
	case BPF_FIB_LKUP_RET_UNREACHABLE:
	case BPF_FIB_LKUP_RET_PROHIBIT:
		return verdict(KVX_R_PASS_NO_ROUTE, len);
	default:
		return verdict(KVX_R_DROP_FIB, len);
	}
	/*
	 * From here on the packet is bound for the outside.  With forwarding
	 * on, anything handed to the stack would leave with its private source
	 * (PITFALLS 12): only packets the stack will answer with an ICMP error
	 * and not forward (TTL, too big with DF) go up.
	 */
	if (fib.ifindex != cfg->uplink_ifindex)
		return verdict(KVX_R_DROP_OTHER_IFACE, len);
	if (p.ttl <= 1)
		return verdict(KVX_R_PASS_TTL, len);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return verdict(p.frag & KVX_IP_DF ? KVX_R_PASS_MTU : KVX_R_DROP_TOO_BIG, len);
	if (pkt_is_fragment(&p))
		return verdict(KVX_R_DROP_FRAGMENT, len);
	if (!cfg->uplink_addr)
		return verdict(KVX_R_DROP_NO_UPLINK_ADDR, len);
	if (!p.l4_ok)
		return verdict(KVX_R_DROP_MALFORMED, len);
	if (p.proto == IPPROTO_ICMP && p.icmp_type != ICMP_ECHO)
		return verdict(KVX_R_DROP_ICMP_TYPE, len);

	{
		struct ethhdr *eth = ctx_data(ctx);

		if ((void *)(eth + 1) > ctx_data_end(ctx))
			return verdict(KVX_R_DROP_MALFORMED, len);
		__builtin_memcpy(macs, eth->h_source, ETH_ALEN);
		__builtin_memcpy(macs + ETH_ALEN, eth->h_dest, ETH_ALEN);
	}

	r = ct_egress(cfg, &p, macs, macs + ETH_ALEN, bpf_ktime_get_boot_ns(), &ext);
	if (r != KVX_CONTINUE)
		return verdict(r, len);

	/* NO_NEIGH: the kernel resolves the next hop and fills the MACs. */
	if (nat4_rewrite(ctx, &p, NAT_SRC, ext.addr, ext.port,
			 rc == BPF_FIB_LKUP_RET_SUCCESS ? fib.smac : NULL,
			 rc == BPF_FIB_LKUP_RET_SUCCESS ? fib.dmac : NULL))
		return verdict(KVX_R_DROP_MALFORMED, len);

	stats_count(KVX_R_XLATE_OUT, len);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		struct bpf_redir_neigh nh = {
			.nh_family = AF_INET,
			.ipv4_nh = fib.ipv4_dst, /* the gateway after the lookup */
		};

		return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
	}
	return ctx_redirect(fib.ifindex);
}

/* Uplink ingress: replies to guests' flows; everything else is the host's. */
static __always_inline int nat4_from_uplink(kvx_ctx_t *ctx)
{
	struct nat_endpoint guest = {};
	struct kvx_pkt p = {};
	const struct kvx_cfg *cfg;
	__u32 len = ctx_len(ctx);
	int r;

	ctx_pull_headers(ctx);
	cfg = cfg_get();
	if (!cfg)
		return CTX_PASS;

	switch (parse_ipv4(ctx, &p)) {
	case PARSE_NOT_IPV4:
		return verdict(KVX_R_PASS_NOT_IP, len);
	case PARSE_BAD_IP:
		return verdict(KVX_R_PASS_HOST, len);
	default:
		break;
	}

	/* The recipe's FORWARD reject: nobody on the LAN routes into the guest
	 * subnet through us. */
	if (subnet_has(cfg, p.daddr))
		return verdict(KVX_R_DROP_TO_SUBNET, len);
	if (!cfg->uplink_addr || p.daddr != cfg->uplink_addr || pkt_is_fragment(&p) ||
	    !p.l4_ok || (p.proto == IPPROTO_ICMP && p.icmp_type != ICMP_ECHOREPLY))
		return verdict(KVX_R_PASS_HOST, len);

	r = ct_ingress(cfg, &p, bpf_ktime_get_boot_ns(), &guest);
	if (r != KVX_CONTINUE)
		return verdict(r, len);
	if (p.ttl <= 1)
		return verdict(KVX_R_DROP_TTL_IN, len);

	if (nat4_rewrite(ctx, &p, NAT_DST, guest.addr, guest.port, guest.gw_mac, guest.guest_mac))
		return verdict(KVX_R_DROP_MALFORMED, len);
	stats_count(KVX_R_XLATE_IN, len);
	return ctx_redirect(cfg->bridge_ifindex);
}

#endif /* KVX_NAT_H */
