/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The XDP fast path: the common packets of established and new
 * TCP/UDP flows, translated by the TC path's own code (parse.h, ct.h,
 * nat4_rewrite) and redirected device to device, without an skb.
 *
 * XDP only takes what it can do exactly as TC would, and hands everything
 * else to TC (XDP_PASS) *before* touching a map or a byte:
 * - frames whose L4 checksum is not complete (offloaded by the sender,
 *   see ctx_xdp.h): XDP_TO_TC_CSUM;
 * - next hops without a neighbour entry, devices an XDP redirect would not
 *   reach (kvx_xdev without KVX_XDEV_F_TX), guests whose port is unknown:
 *   XDP_TO_TC_DEV;
 * - from a guest: ICMP, fragments, hairpin, TTL expiring, too big...,
 *   and a new flow refused for want of a mapping (TC answers it with an
 *   ICMP error); to a guest: TTL expiring, too big for the bridge or the
 *   guest's port (TC answers those too): XDP_TO_TC;
 * - on the uplink, ICMP and fragments pass uncounted before any lookup
 *   (most are the host's own: telling a guest's echo reply or RELATED
 *   error apart would cost a binding lookup per host packet); TC counts
 *   what it translates of them.
 * A frame kvmxdp does not translate at all (the host's own traffic, ARP,
 * guest to guest) passes uncounted: the TC path counts it as it always did.
 * The checksum gate sums up to the IP length: a UDP datagram with bytes
 * after its own length fails it and goes to TC, which translates it.
 */
#ifndef KVX_XDP_H
#define KVX_XDP_H

#ifndef KVX_CTX_XDP
#error "xdp.h is for the XDP object (define KVX_CTX_XDP)"
#endif

#include "nat.h"

/* A learnt MAC is rewritten at most this often per guest (a hash update
 * per packet would cost more than the rest of the fast path). */
#define KVX_XFDB_REFRESH_NS 1000000000ULL

/* L4 segments longer than this go to TC (the sum is walked in 256-byte
 * blocks, a bounded loop for the verifier): 9000-byte jumbo frames fit. */
#define KVX_CSUM_BLOCKS 36

static __always_inline struct kvx_xdev_val *xdev_get(__u32 ifindex)
{
	return bpf_map_lookup_elem(&kvx_xdev, &ifindex);
}

/*
 * Is the L4 checksum of this TCP/UDP segment complete, i.e. does the whole
 * segment with the pseudo-header sum to 0xffff?  An offloaded frame's field
 * holds only the pseudo-header sum and fails (unless its payload happens to
 * sum to zero, and then its bytes are a valid checksummed segment anyway).
 * IPv4: a UDP zero checksum means "none", nothing to keep right.  IPv6 has
 * no such value (RFC 8200 8.1): its callers hand that frame to TC, which
 * drops it counted.
 * The pseudo-header's addresses are summed where they sit in the frame (the
 * fixed header's, untouched yet); its protocol and length words sum the
 * same for both families (RFC 768, RFC 8200 8.1: the zero bytes add
 * nothing).  A global function with scalar arguments (csum_complete()
 * packs them): the verifier checks its block loop once, not once per call
 * site and state.  fam_proto: the protocol, KVX_CSUM_V6 for IPv6.
 */
#define KVX_CSUM_V6 0x100
__noinline int l4_csum_complete(kvx_ctx_t *ctx, __u32 offs, __u32 fam_proto)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	__u32 off = offs >> 16, end = offs & 0xffff, len = end - off, i;
	__u32 proto = fam_proto & 0xff;
	struct {
		__be16 proto;
		__be16 len;
	} ph = {bpf_htons(proto), bpf_htons(len)};
	__u8 tail[4] __attribute__((aligned(4))) = {};
	__s64 s;
	__u8 *c;

	if (off < ETH_HLEN + 20 || off > ETH_HLEN + 60 || end < off)
		return 0;
	if (proto == IPPROTO_UDP) {
		struct udphdr *uh = data + (off & 0x7f);

		if ((void *)(uh + 1) > data_end)
			return 0;
		if (!uh->check)
			return !(fam_proto & KVX_CSUM_V6);
	}
	/* The addresses: IPv4's 8 bytes at offset 12 of its header, IPv6's
	 * 32 at offset 8. */
	if (fam_proto & KVX_CSUM_V6) {
		c = data + ETH_HLEN + 8;
		if ((void *)(c + 32) > data_end)
			return 0;
		s = bpf_csum_diff(NULL, 0, (__be32 *)c, 32, 0);
	} else {
		c = data + ETH_HLEN + 12;
		if ((void *)(c + 8) > data_end)
			return 0;
		s = bpf_csum_diff(NULL, 0, (__be32 *)c, 8, 0);
	}
	if (s < 0)
		return 0;
	s = bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), s);
	for (i = 0; i < KVX_CSUM_BLOCKS; i++) {
		if (end - off < 256)
			break;
		c = data + (off & 0x3fff);
		if ((void *)(c + 256) > data_end)
			return 0;
		s = bpf_csum_diff(NULL, 0, (__be32 *)c, 256, s);
		off += 256;
	}
	if (end - off >= 256)
		return 0;
	/* The rest in power-of-two pieces (constant sizes for the verifier). */
#define KVX_CSUM_PIECE(n)                                                                          \
	if (end - off >= (n)) {                                                                    \
		c = data + (off & 0x3fff);                                                         \
		if ((void *)(c + (n)) > data_end)                                                  \
			return 0;                                                                  \
		s = bpf_csum_diff(NULL, 0, (__be32 *)c, (n), s);                                   \
		off += (n);                                                                        \
	}
	KVX_CSUM_PIECE(128)
	KVX_CSUM_PIECE(64)
	KVX_CSUM_PIECE(32)
	KVX_CSUM_PIECE(16)
	KVX_CSUM_PIECE(8)
	KVX_CSUM_PIECE(4)
#undef KVX_CSUM_PIECE
	/* 0-3 bytes: zero-padded, as the checksum's definition pads. */
	c = data + (off & 0x3fff);
	if (end - off >= 1) {
		if ((void *)(c + 1) > data_end)
			return 0;
		tail[0] = c[0];
	}
	if (end - off >= 2) {
		if ((void *)(c + 2) > data_end)
			return 0;
		tail[1] = c[1];
	}
	if (end - off >= 3) {
		if ((void *)(c + 3) > data_end)
			return 0;
		tail[2] = c[2];
	}
	s = bpf_csum_diff(NULL, 0, (__be32 *)tail, sizeof(tail), s);
	if (s < 0)
		return 0;
	/* bpf_csum_diff returns a 32-bit sum (folded to 16 bits since 6.13). */
	return csum_fold32((__u32)s) == 0xffff;
}

static __always_inline int csum_complete(kvx_ctx_t *ctx, const struct kvx_pkt *p)
{
	/* Offsets are masked to 14 bits for the verifier's packet-range
	 * arithmetic: longer frames (not XDP's: a linear frame is at most a
	 * page, jumbo frames 9k) go to TC. */
	if (p->ip_end > 0x3fff)
		return 0;
	return l4_csum_complete(ctx, p->l4_off << 16 | p->ip_end, p->proto);
}

/* XDP_PASS with a count: the TC path takes the frame from here. */
static __always_inline int to_tc(enum kvx_reason r, __u32 len)
{
	stats_count(r, len);
	return XDP_PASS;
}

/* A guest's packet no mapping can be made for is answered with an ICMP
 * error (nat.h refusal_code), which only TC builds: it goes there, to be
 * refused again and answered; any other drop stays here. */
static __always_inline int xdp_refused(enum kvx_reason r, __u32 len)
{
	return refusal_code(r) >= 0 ? to_tc(KVX_R_XDP_TO_TC, len) : verdict(r, len);
}

/* Remember on which port a guest MAC was seen (see kvx_xfdb in abi.h). */
static __always_inline void xfdb_learn(const __u8 *mac, __u32 ifindex, __u64 now)
{
	struct kvx_xfdb_key k = {};
	struct kvx_xfdb_val *v, nv = {};
	struct kvx_xdev_val *port = xdev_get(ifindex);

	/* Only where the bridge itself learns (KVX_XDEV_F_LEARN).  A port with
	 * learning off (libvirt's macTableManager='libvirt': a static entry per
	 * guest) or locked (802.1X: entries only from the authenticator) must
	 * not let one frame move a MAC to it: the uplink program would deliver
	 * that guest's replies there, where the bridge never would.  The daemon
	 * fills kvx_xfdb from the bridge's entries for such ports. */
	if (!port || !(port->flags & KVX_XDEV_F_LEARN))
		return;
	/* What the bridge would not learn either: group and zero addresses. */
	if ((mac[0] & 1) || mac_is_zero(mac))
		return;
	__builtin_memcpy(k.mac, mac, ETH_ALEN);
	v = bpf_map_lookup_elem(&kvx_xfdb, &k);
	if (v && v->ifindex == ifindex && now - v->seen_ns < KVX_XFDB_REFRESH_NS)
		return;
	/* The daemon's copy of a static bridge entry, or of any entry of a
	 * port that does not learn (libvirt's static entry per guest, an
	 * authenticator's): that MAC lives there, and a frame carrying it on
	 * another port is a guest spoofing it.  The bridge decides a move (a
	 * static entry that is not sticky moves with a frame it learns from);
	 * the daemon follows it at its next sync. */
	if (v && (v->flags & KVX_XFDB_F_STATIC))
		return;
	if (v && v->ifindex != ifindex && !v->seen_ns) {
		struct kvx_xdev_val *home = xdev_get(v->ifindex);

		if (home && (home->flags & KVX_XDEV_F_PORT) && !(home->flags & KVX_XDEV_F_LEARN))
			return;
	}
	nv.ifindex = ifindex;
	nv.seen_ns = now;
	bpf_map_update_elem(&kvx_xfdb, &k, &nv, BPF_ANY);
}

/*
 * A frame of proto on a bridge port, to the host (the bridge's MAC): its
 * source MAC into macs as an 8-byte key (brport_elsewhere8, nd_owner: the
 * MAC, two zero bytes), the bridge's at KVX_GW_MAC_OFF.  0: not routed by
 * the host (another guest, a broadcast): the bridge's business.
 */
static __always_inline int xdp_frame_to_host(kvx_ctx_t *ctx, const struct kvx_cfg *cfg,
					     __be16 proto, __u8 *macs)
{
	struct ethhdr *eth = ctx_data(ctx);
	struct kvx_xdev_val *br;

	if ((void *)(eth + 1) > ctx_data_end(ctx) || eth->h_proto != proto)
		return 0;
	br = xdev_get(cfg->bridge_ifindex);
	if (!br || !mac_eq(eth->h_dest, br->mac))
		return 0;
	__builtin_memcpy(macs, eth->h_source, ETH_ALEN);
	macs[6] = macs[7] = 0;
	__builtin_memcpy(macs + KVX_GW_MAC_OFF, eth->h_dest, ETH_ALEN);
	return 1;
}

/* The rewrites, each in its own frame: the caller's frame must leave room
 * for ct_egress's call chain (512 bytes of stack for the whole chain). */
static __noinline int xdp_snat(kvx_ctx_t *ctx, const struct kvx_pkt *p,
			       const struct nat_endpoint *ext, const struct bpf_fib_lookup *fib)
{
	struct nat_rewrite rw = {};

	rw.src = 1;
	rw.saddr = ext->addr;
	rw.sport = ext->port;
	rw.smac = fib->smac;
	rw.dmac = fib->dmac;
	return nat4_rewrite(ctx, p, &rw);
}

static __noinline int xdp_dnat(kvx_ctx_t *ctx, const struct kvx_pkt *p,
			       const struct nat_endpoint *guest)
{
	struct nat_rewrite rw = {};

	rw.dst = 1;
	rw.daddr = guest->addr;
	rw.dport = guest->port;
	rw.smac = guest->gw_mac;
	rw.dmac = guest->guest_mac;
	return nat4_rewrite(ctx, p, &rw);
}

/* Bridge port ingress: a guest's frame to the host (the bridge's MAC). */
static __always_inline int xdp_from_guest(kvx_ctx_t *ctx)
{
	struct bpf_fib_lookup fib;
	struct nat_endpoint ext = {};
	struct kvx_pkt p = {};
	const struct kvx_cfg *cfg;
	struct kvx_xdev_val *up;
	__u8 macs[16] __attribute__((aligned(8))); /* see KVX_GW_MAC_OFF */
	__u32 len = ctx_len(ctx);
	__u64 now;
	int rc, r;

	cfg = cfg_get();
	if (!cfg || !xdp_frame_to_host(ctx, cfg, bpf_htons(ETH_P_IP), macs))
		return XDP_PASS;
	if (parse_ipv4(ctx, &p) != PARSE_OK || (cfg->flags & KVX_CFG_F_OVERLAP))
		return XDP_PASS;
	/* What TC would not translate, or not the common way: TC decides. */
	if (!subnet_has(cfg, p.saddr) || is_mcast_or_bcast(cfg, p.daddr) ||
	    subnet_has(cfg, p.daddr) || (bpf_ntohl(p.daddr) >> 24) == 0)
		return XDP_PASS;
	if ((p.proto != IPPROTO_TCP && p.proto != IPPROTO_UDP) || !p.l4_ok ||
	    pkt_is_fragment(&p) || p.ttl <= 1 || !cfg->uplink_addr ||
	    p.saddr == cfg->subnet_addr || p.saddr == (cfg->subnet_addr | ~cfg->subnet_mask) ||
	    ext_addr_check(cfg, p.daddr) == KVX_CONTINUE /* hairpin */)
		return to_tc(KVX_R_XDP_TO_TC, len);
	if (!csum_complete(ctx, &p))
		return to_tc(KVX_R_XDP_TO_TC_CSUM, len);

	rc = fib_route(ctx, &p, &fib, cfg->bridge_ifindex, p.ip_end - ETH_HLEN);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return to_tc(KVX_R_XDP_TO_TC_DEV, len);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS || fib.ifindex != cfg->uplink_ifindex)
		return to_tc(KVX_R_XDP_TO_TC, len);
	up = xdev_get(fib.ifindex);
	if (!up || !(up->flags & KVX_XDEV_F_TX))
		return to_tc(KVX_R_XDP_TO_TC_DEV, len);

	/* The port guard, as the port's kvx_port_in does for every frame XDP
	 * passes on (a frame redirected here never reaches it). */
	rc = brport_elsewhere8(macs, ctx_ifindex(ctx));
	if (rc == 1)
		return verdict(KVX_R_DROP_MAC_ELSEWHERE, len);
	/* From here on exactly the TC path's translation. */
	gstats_set(macs, p.saddr, cfg->guest_seed, 0);
	r = guest_owner_check(p.saddr, macs);
	if (r != KVX_CONTINUE)
		return xdp_refused(r, len);
	/* A MAC of no port placed as the guard places it (a new port's guest:
	 * XDP is there a moment before the guard), only once the frame's
	 * source passed the owner check: a frame with another guest's MAC
	 * (not placed yet) must not place it on the sender's port, where the
	 * bridge never sees it. */
	if (rc == KVX_BRPORT_NONE && brport_place(macs, ctx_ifindex(ctx)))
		return verdict(KVX_R_DROP_MAC_NEW, len);
	now = clock_now_ns();
	pkt_tcp_options(ctx, &p);
	r = ct_egress(cfg, &p, macs, now, &ext);
	if (r != KVX_CONTINUE)
		return xdp_refused(r, len);
	maybe_clamp_mss(ctx, cfg, &p);
	if (xdp_snat(ctx, &p, &ext, &fib))
		return verdict(KVX_R_DROP_MALFORMED, len);
	/* Only a frame that bypasses the bridge is learnt for it, only once
	 * its source passed every check (a spoofed frame must not move a MAC
	 * to the spoofer's port; the daemon feeds kvx_xfdb to the FDB), and
	 * only on a port the bridge learns on. */
	xfdb_learn(macs, ctx_ifindex(ctx), now);
	stats_count(KVX_R_XDP_XLATE_OUT, len);
	return ctx_redirect(fib.ifindex);
}

/* The port a guest MAC is reachable on by XDP redirect, or 0. */
static __always_inline __u32 xdp_guest_port(const __u8 *guest_mac)
{
	struct kvx_xfdb_key k = {};
	struct kvx_xfdb_val *v;
	struct kvx_xdev_val *d;

	if (mac_is_zero(guest_mac))
		return 0;
	__builtin_memcpy(k.mac, guest_mac, ETH_ALEN);
	v = bpf_map_lookup_elem(&kvx_xfdb, &k);
	if (!v)
		return 0;
	d = xdev_get(v->ifindex);
	if (!d || (d->flags & (KVX_XDEV_F_TX | KVX_XDEV_F_PORT)) !=
			  (KVX_XDEV_F_TX | KVX_XDEV_F_PORT))
		return 0;
	return v->ifindex;
}

/* Uplink ingress: replies to guests' flows, traffic to mapped addresses. */
static __always_inline int xdp_from_uplink(kvx_ctx_t *ctx)
{
	struct nat_endpoint guest = {};
	struct kvx_pkt p = {};
	const struct kvx_cfg *cfg;
	struct kvx_bind_val *ib;
	__u32 len = ctx_len(ctx), port;
	__u8 flags;
	int r;

	{
		struct ethhdr *eth = ctx_data(ctx);

		if ((void *)(eth + 1) > ctx_data_end(ctx) || eth->h_proto != bpf_htons(ETH_P_IP))
			return XDP_PASS;
	}
	cfg = cfg_get();
	if (!cfg)
		return XDP_PASS;
	/* Martian sources: TC drops and counts them. */
	if (parse_ipv4(ctx, &p) != PARSE_OK || (cfg->flags & KVX_CFG_F_OVERLAP) ||
	    subnet_has(cfg, p.daddr) ||
	    ext_addr_check(cfg, p.daddr) != KVX_CONTINUE || inbound_martian(cfg, p.saddr))
		return XDP_PASS;
	if ((p.proto != IPPROTO_TCP && p.proto != IPPROTO_UDP) || !p.l4_ok ||
	    pkt_is_fragment(&p))
		return XDP_PASS; /* TC: ICMP, fragments, the host's own protocols */
	ib = bind_in_find(&p, &flags);
	if (!ib)
		return XDP_PASS; /* the host's own traffic */
	if (p.ttl <= 1)
		return to_tc(KVX_R_XDP_TO_TC, len);
	port = xdp_guest_port(ib->guest_mac);
	if (!port)
		return to_tc(KVX_R_XDP_TO_TC_DEV, len);
	/* The redirect skips the bridge, and with it the MTU test the TC path
	 * makes (nat4_from_uplink): a frame larger than the bridge (or the
	 * guest's port) takes goes to TC, which answers a DF one with
	 * fragmentation needed and drops the rest, counted.  Before any
	 * lookup that changes state: TC does all of it. */
	if (ctx_exceeds_mtu(ctx, cfg->bridge_ifindex, 0, NULL) ||
	    ctx_exceeds_mtu(ctx, port, 0, NULL))
		return to_tc(KVX_R_XDP_TO_TC, len);
	if (!csum_complete(ctx, &p))
		return to_tc(KVX_R_XDP_TO_TC_CSUM, len);

	/* From here on exactly the TC path's translation. */
	pkt_tcp_options(ctx, &p);
	r = ct_ingress(cfg, &p, clock_now_ns(), &guest);
	/* The host's after all (no flow of the binding wants it): TC sees
	 * it next and counts it, as the host's traffic above. */
	if (r == KVX_R_PASS_HOST)
		return XDP_PASS;
	if (r != KVX_CONTINUE)
		return verdict(r, len);
	gstats_set(guest.guest_mac, guest.addr, cfg->guest_seed, KVX_GCUR_F_IN);
	maybe_clamp_mss(ctx, cfg, &p);
	if (xdp_dnat(ctx, &p, &guest))
		return verdict(KVX_R_DROP_MALFORMED, len);
	stats_count(KVX_R_XDP_XLATE_IN, len);
	return ctx_redirect(port);
}

#endif /* KVX_XDP_H */
