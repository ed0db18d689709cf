/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The XDP fast path for IPv6 (NAT66): the common packets of TCP/UDP flows,
 * translated by the TC path's own code (parse_ipv6, ct6.h, nat6_flow_out,
 * nat6_rewrite) and redirected device to device, as xdp.h does for IPv4.
 * The programs (kvx_xdp_port6, kvx_xdp_up6) are tail-called by the XDP
 * entry points for IPv6 frames (abi.h kvx_xdp6progs).
 *
 * The same rule as xdp.h: only what it does exactly as TC would, and
 * everything else to TC (XDP_PASS) before a map or a byte is touched:
 * - not a fast-path class: ICMPv6, fragments, an extension header chain,
 *   hop limit expiring, too big for the uplink (TC answers those), a
 *   guest's packet to a mapped address (hairpin), a zero UDP checksum
 *   (invalid: TC drops it counted): XDP_TO_TC;
 * - a checksum left to offload: XDP_TO_TC_CSUM; a next hop without a
 *   neighbour entry, a device a redirect does not reach, a guest whose
 *   port is unknown: XDP_TO_TC_DEV.
 * What kvmxdp does not translate at all (relay mode, which stays on TC;
 * neighbour discovery, link-local and multicast; the host's own traffic;
 * sources TC drops as spoofed or martian) passes uncounted: TC counts it.
 */
#ifndef KVX_XDP6_H
#define KVX_XDP6_H

#include "xdp.h"
#include "nat6.h"

/* Passed to TC uncounted (see above). */
#define KVX_XDP6_QUIET (KVX_R_MAX + 11)

/* The fast path takes the fixed header alone: a chain is rare, and the
 * checksum walk (l4_csum_complete) takes L4 offsets of IPv4's range. */
#define KVX_XDP6_L4_OFF (ETH_HLEN + 40)

static __always_inline int csum_complete6(kvx_ctx_t *ctx, const struct kvx_pkt6 *p6)
{
	if (p6->p.ip_end > 0x3fff)
		return 0;
	return l4_csum_complete(ctx, p6->p.l4_off << 16 | p6->p.ip_end, p6->p.proto | KVX_CSUM_V6);
}

/* A TCP or UDP packet the fast path may take at all: whole, one header. */
static __always_inline int xdp6_class(const struct kvx_pkt6 *p6)
{
	return (p6->p.proto == IPPROTO_TCP || p6->p.proto == IPPROTO_UDP) && p6->p.l4_ok &&
	       !pkt_is_fragment(&p6->p) && p6->p.l4_off == KVX_XDP6_L4_OFF;
}

/*
 * A guest's frame to the host's MAC, up to the translation: parsed into
 * p6, classified as nat6_guest_check does, routed into rw (the uplink, the
 * next hop's MACs).  KVX_CONTINUE: the fast path's; KVX_XDP6_QUIET; else
 * the XDP_TO_TC* reason.  Not inlined: the parser's temporaries stay off
 * the program's frame, as nat6_guest_check's.
 */
static __noinline int xdp6_guest_check(kvx_ctx_t *ctx, struct kvx_pkt6 *p6, struct nat6_rewrite *rw)
{
	const struct kvx_cfg *cfg = cfg_get();
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	struct kvx_xdev_val *up;
	int rc;

	if (!p6 || !rw || !cfg || !cfg6 || cfg6->mode != KVX_V6_NAT66 ||
	    parse_ipv6(ctx, p6) != PARSE_OK)
		return KVX_XDP6_QUIET;
	/* The host's (ND, link-local, multicast, the guests' own prefix) or
	 * a spoofed source (TC drops it). */
	if (pkt6_is_host_local(p6) || !prefix6_has(cfg6->subnet, cfg6->subnet_len, p6->saddr) ||
	    prefix6_has(cfg6->subnet, cfg6->subnet_len, p6->daddr))
		return KVX_XDP6_QUIET;
	if (!addr6_is_zero(cfg6->uplink_addr) && nat6_hairpin_target(p6))
		return KVX_R_XDP_TO_TC;
	if (addr6_eq(p6->daddr, cfg6->uplink_addr))
		return KVX_XDP6_QUIET;
	if (!xdp6_class(p6) || p6->p.ttl <= 1 || (p6->flags & KVX_PKT6_F_UDP_NO_CSUM) ||
	    addr6_is_zero(cfg6->uplink_addr))
		return KVX_R_XDP_TO_TC;
	if (!csum_complete6(ctx, p6))
		return KVX_R_XDP_TO_TC_CSUM;
	/* From the bridge, as the stack would route it. */
	rc = fib6_route(ctx, p6, rw, cfg->bridge_ifindex);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return KVX_R_XDP_TO_TC_DEV;
	if (rc != BPF_FIB_LKUP_RET_SUCCESS || rw->ifindex != cfg->uplink_ifindex)
		return KVX_R_XDP_TO_TC;
	/* Too big for the uplink: TC answers it with a Packet Too Big.  The
	 * device's MTU, as TC's lookup tests it (is_skb_forwardable). */
	if (ctx_exceeds_mtu(ctx, rw->ifindex, 0, NULL))
		return KVX_R_XDP_TO_TC;
	up = xdev_get(rw->ifindex);
	if (!up || !(up->flags & KVX_XDEV_F_TX))
		return KVX_R_XDP_TO_TC_DEV;
	rw->macs = 1;
	addr6_copy(rw->addr, cfg6->uplink_addr);
	pkt_tcp_options(ctx, &p6->p);
	return KVX_CONTINUE;
}

/* Bridge port ingress: a guest's IPv6 frame to the host (the bridge's MAC). */
static __always_inline int xdp6_from_guest(kvx_ctx_t *ctx)
{
	__u8 macs[16] __attribute__((aligned(8))); /* see KVX_GW_MAC_OFF */
	struct nat6_rewrite rw = {.src = 1};
	const struct kvx_cfg *cfg = cfg_get();
	__u32 len = ctx_len(ctx);
	struct kvx_pkt6 p6;
	__u64 now;
	int rc, r;

	if (!cfg || !xdp_frame_to_host(ctx, cfg, bpf_htons(ETH_P_IPV6), macs))
		return XDP_PASS;
	r = xdp6_guest_check(ctx, &p6, &rw);
	if (r == KVX_XDP6_QUIET)
		return XDP_PASS;
	if (r != KVX_CONTINUE)
		return to_tc(r, len);

	/* The port guard, as the port's kvx_port_in does for every frame XDP
	 * passes on (a redirected frame never reaches it). */
	rc = brport_elsewhere8(macs, ctx_ifindex(ctx));
	if (rc == 1)
		return verdict(KVX_R_DROP_MAC_ELSEWHERE, len);
	/* A MAC of no port yet that the port guard places (kvx_port_in, in
	 * front of TC): TC's, as the owner check goes by the MAC's port (a
	 * guest's new MAC on its own port takes its addresses, which count
	 * in its port's slot).  Its next frames come here.  Where the guard
	 * places nothing (off, a port that does not learn), TC's owner check
	 * sees it unplaced too: translated here. */
	if (rc == KVX_BRPORT_NONE && brport_places_on(ctx_ifindex(ctx)))
		return to_tc(KVX_R_XDP_TO_TC, len);
	/* From here on exactly the TC path's translation (nat6_from_guest). */
	gstats_set(macs, 0, cfg->guest_seed, 0);
	/* The MAC owns the address (owner6.h), recorded as seen on the
	 * bridge, as TC records it. */
	r = nd_owner(p6.saddr, macs, cfg->bridge_ifindex, KVX_OWN_NAT66);
	if (r != KVX_CONTINUE)
		return verdict(r, len);
	now = clock_now_ns();
	r = nat6_flow_out(cfg, &p6, macs, now, &rw);
	if (r != KVX_CONTINUE)
		return verdict(r, len);
	maybe_clamp_mss6(ctx, cfg, &p6.p);
	if (nat6_rewrite(ctx, &p6, &rw))
		return verdict(KVX_R_DROP_MALFORMED, len);
	/* Learnt for the bridge as IPv4's (xdp_from_guest). */
	xfdb_learn(macs, ctx_ifindex(ctx), now);
	stats_count(KVX_R_XDP_XLATE_OUT, len);
	return ctx_redirect(rw.ifindex);
}

/*
 * An uplink frame up to the translation: parsed into p6 and classified as
 * nat6_uplink_check does; *port: the bridge port of the guest its binding
 * delivers to, mac: that guest's MAC (8 bytes).  KVX_CONTINUE,
 * KVX_XDP6_QUIET or the XDP_TO_TC* reason.
 */
static __noinline int xdp6_uplink_check(kvx_ctx_t *ctx, struct kvx_pkt6 *p6, __u32 *port, __u8 *mac)
{
	const struct kvx_cfg *cfg = cfg_get();
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	struct kvx_bind6_val *ib;

	if (!p6 || !port || !mac || !cfg || !cfg6 || cfg6->mode != KVX_V6_NAT66 ||
	    parse_ipv6(ctx, p6) != PARSE_OK)
		return KVX_XDP6_QUIET;
	/* ICMPv6 (the host's ND and errors, mostly), fragments and chains:
	 * TC, uncounted, as IPv4's ICMP (xdp.h). */
	if (!xdp6_class(p6) || pkt6_is_host_local(p6) ||
	    prefix6_has(cfg6->subnet, cfg6->subnet_len, p6->daddr))
		return KVX_XDP6_QUIET;
	/* A binding of the uplink's address, a port forward or a 1:1
	 * mapping (ct6_ingress's lookups); none: the host's. */
	ib = bind6_in_find(p6->p.proto, p6->daddr, p6->p.dport);
	if (!ib)
		return KVX_XDP6_QUIET;
	/* Another address of the host's that a dynamic binding was made on
	 * (the uplink's before a change): the host's, as nat6_uplink_check
	 * says. */
	if (!(ib->bind.flags & (KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE)) &&
	    (addr6_is_zero(cfg6->uplink_addr) || !addr6_eq(p6->daddr, cfg6->uplink_addr)))
		return KVX_XDP6_QUIET;
	if (inbound6_martian(cfg6, p6))
		return KVX_XDP6_QUIET; /* TC drops and counts it */
	if (p6->p.ttl <= 1 || (p6->flags & KVX_PKT6_F_UDP_NO_CSUM))
		return KVX_R_XDP_TO_TC;
	__builtin_memcpy(mac, ib->bind.guest_mac, ETH_ALEN);
	*port = xdp_guest_port(mac);
	if (!*port)
		return KVX_R_XDP_TO_TC_DEV;
	/* The redirect skips the bridge and its MTU test: a frame larger
	 * than the bridge or the port takes goes to TC, which answers it
	 * with a Packet Too Big. */
	if (ctx_exceeds_mtu(ctx, cfg->bridge_ifindex, 0, NULL) ||
	    ctx_exceeds_mtu(ctx, *port, 0, NULL))
		return KVX_R_XDP_TO_TC;
	if (!csum_complete6(ctx, p6))
		return KVX_R_XDP_TO_TC_CSUM;
	pkt_tcp_options(ctx, &p6->p);
	return KVX_CONTINUE;
}

/* Uplink ingress: IPv6 replies to guests' flows, traffic to mappings. */
static __always_inline int xdp6_from_uplink(kvx_ctx_t *ctx)
{
	__u8 mac[8] __attribute__((aligned(8))) = {};
	struct nat_endpoint guest = {};
	struct nat6_rewrite rw = {};
	const struct kvx_cfg *cfg = cfg_get();
	__u32 len = ctx_len(ctx), port = 0;
	struct kvx_pkt6 p6;
	int r;

	if (!cfg)
		return XDP_PASS;
	r = xdp6_uplink_check(ctx, &p6, &port, mac);
	if (r == KVX_XDP6_QUIET)
		return XDP_PASS;
	if (r != KVX_CONTINUE)
		return to_tc(r, len);

	/* From here on exactly the TC path's translation (nat6_from_uplink). */
	r = nat6_flow_in(cfg, &p6, clock_now_ns(), &guest, &rw);
	/* The host's after all (no flow of the binding wants it): TC sees
	 * it next and counts it. */
	if (r == KVX_R_PASS_HOST)
		return XDP_PASS;
	if (r != KVX_CONTINUE)
		return verdict(r, len);
	/* The binding read again by ct6_ingress: changed since the port was
	 * found by its MAC (the daemon forgets the MAC of a guest whose port
	 * went, a reuse gave it to another guest), the frame would go to
	 * one guest's port with another's address or no MAC at all. */
	if (!mac_eq(guest.guest_mac, mac) || mac_is_zero(guest.gw_mac))
		return verdict(KVX_R_DROP_BROKEN_PAIR, len);
	gstats6_set_in(cfg, guest.guest_mac, rw.addr);
	maybe_clamp_mss6(ctx, cfg, &p6.p);
	rw.macs = 1;
	__builtin_memcpy(rw.smac, guest.gw_mac, ETH_ALEN);
	__builtin_memcpy(rw.dmac, guest.guest_mac, ETH_ALEN);
	if (nat6_rewrite(ctx, &p6, &rw))
		return verdict(KVX_R_DROP_MALFORMED, len);
	stats_count(KVX_R_XDP_XLATE_IN, len);
	return ctx_redirect(port);
}

#endif /* KVX_XDP6_H */
