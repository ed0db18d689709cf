/* SPDX-License-Identifier: GPL-2.0 */
/*
 * IPv6 relay mode (docs/ipv6.md "Relay mode in the datapath"): the guests
 * take addresses in the uplink's own prefix (kvx_cfg6.relay_prefix) and are
 * forwarded to and from the LAN without translation, as by a router that
 * proxies neighbour discovery for them (RFC 4389; OpenWrt odhcpd's "relay"
 * mode).  The uplink is a WiFi station, which can send frames with its own
 * MAC only: the LAN sees every guest address at the uplink's
 * MAC, and the guests see every LAN address at the bridge's.
 *
 * - Guest -> LAN/internet: the source must be in the prefix and owned by
 *   the frame's MAC (kvx_nd: claimed by a duplicate address detection no
 *   LAN host answered, the guest's own or, for an address it sends from
 *   unclaimed, the daemon's; taken by another MAC only by its DAD after
 *   KVX_GUEST_IDLE_NS, so a re-created VM gets its address back and a
 *   busy guest never loses it); routed by bpf_fib_lookup through the
 *   uplink only, hop limit - 1 (our Time Exceeded at 1, our Packet Too
 *   Big when too big, as NAT66), from the uplink's MAC.
 * - LAN/internet -> guest: the destination owned in kvx_nd: hop limit - 1,
 *   the bridge's MAC as source, the owner's as destination, to the bridge.
 * - ND proxy: a Neighbour Solicitation on the uplink for a guest's address
 *   is answered with the uplink's MAC; one from a guest for any other
 *   address of the prefix (a LAN host, the host's own) with the bridge's.
 *   The NS becomes the NA in place and goes back out of its device, as the
 *   ARP answers of nat.h do.
 * - Inbound is stateful by default (relay6_ct_in: the replies of the
 *   guests' flows, echo requests rate limited, and what the relay mappings
 *   open: relay6_opened); KVX_CFG6_F_INBOUND_OPEN lets everything in.
 * - Per guest (its bridge port's slot, kvx_brport, whatever MAC it sends
 *   from): at most KVX_ND_PER_GUEST addresses (kvx_gaddrs), a rate of
 *   relayed probes, and the stateful policy's flows in its flow quota.
 *
 * - DAD relay (RFC 4389 4.1.3.3, RFC 4862 5.4): a guest's probe makes its
 *   address pending and goes out of the uplink; a LAN host's defence (its
 *   NA, or its own probe) for a pending address comes back to the bridge,
 *   so that the guest's DAD fails, and the address is never owned.  A
 *   guest's frame never claims an address: one from an address nobody
 *   claimed makes it pending for the daemon's own probe (dad_probes 0),
 *   and is dropped (DROP_ND_UNCLAIMED) until a DAD ran its course.
 *
 * Link-local, multicast and the rest of neighbour and router discovery
 * stay the host's (PASS_ND).  Not yet: the XDP fast path.
 */
#ifndef KVX_RELAY6_H
#define KVX_RELAY6_H

#include "nat6.h"

/* Returned by the checks below: a Neighbour Solicitation to answer or not. */
#define KVX_RELAY_NS (KVX_CONTINUE + 1)
/* Returned by relay6_guest_check: to another guest's address. */
#define KVX_RELAY_GUEST (KVX_CONTINUE + 2)
/* Returned by relay6_ct_in: a new inbound flow through a relay mapping of
 * the whole address (KVX_NO_MAPPING: of its port). */
#define KVX_RELAY_OPEN_ADDR (KVX_R_MAX + 10)

/* In the relay prefix; none (length 0: the uplink lost its prefix) holds
 * nothing, where prefix6_has would take every address. */
static __always_inline int relay6_has(const struct kvx_cfg6 *cfg6, const __be32 *a)
{
	return cfg6->relay_len && prefix6_has(cfg6->relay_prefix, cfg6->relay_len, a);
}

/* One relayed probe from the guest whose MAC is mac (abi.h
 * KVX_ND_RELAY_BURST, KVX_ND_RELAY_INTERVAL_NS): a bucket of kvx_icmprl
 * keyed by its port's slot with the top byte 0x7e, apart from the
 * addresses' buckets in all likelihood (a collision costs a shared
 * budget, never a wrong verdict). */
static __always_inline int relay6_relay_take(const struct kvx_cfg *cfg, const __u8 *mac8)
{
	__be32 key = bpf_htonl(0x7e000000 | kvx_port_slot(brport_of8(mac8), cfg->guest_seed));

	return icmp_rl_take(key, clock_now_ns(), KVX_ND_RELAY_INTERVAL_NS, KVX_ND_RELAY_BURST);
}

/*
 * A DAD probe relayed to the other side (RFC 4389 4.1.3.3): out of ifindex
 * from mac, all else as it came (hop limit 255, its nonce option, RFC
 * 7527, by which the prober knows its own probe).  From :: it carries no
 * link-layer address to rewrite (RFC 4861 7.1.1; nd_target refuses one
 * that does).
 */
static __always_inline int nd_relay_ns(kvx_ctx_t *ctx, const __u8 *mac, __u32 ifindex, __u32 len)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	struct ethhdr *eth = data;
	struct kvx_nd_msg *ns = data + ETH_HLEN + sizeof(struct kvx_ipv6hdr);

	if ((void *)ns + KVX_ND_NS_MIN > data_end || !ifindex)
		return -1;
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	stats_count(KVX_R_ND_RELAY, len);
	return ctx_redirect(ifindex);
}

/*
 * The stateful inbound policy (kvx_cfg6.flags without
 * KVX_CFG6_F_INBOUND_OPEN), as a home router's IPv6 firewall (RFC 6092):
 * what a guest sends out makes or refreshes its flow in kvx_ct6, keyed as
 * NAT66's with the guest's own address and port as the external side
 * (ext_addr = int_addr), with conntrack's TCP tracking and timeouts (ct.h;
 * the daemon's GC expires them); from outside only the replies of those
 * flows come in.  TCP, UDP and echo are tracked; other protocols, chains
 * not walked and later fragments go out untracked (no reply of theirs
 * comes in, but later fragments: without their first they are nothing).
 */
static __always_inline int relay6_tracked(const struct kvx_pkt6 *p6)
{
	return p6->p.l4_ok && !pkt_is_later_fragment(&p6->p) &&
	       (p6->p.proto == IPPROTO_TCP || p6->p.proto == IPPROTO_UDP ||
		(p6->p.proto == KVX_IPPROTO_ICMPV6 && p6->p.icmp_type == ICMPV6_ECHO_REQUEST));
}

/* A guest's packet on its flow: KVX_CONTINUE, KVX_NO_MAPPING (no flow yet:
 * relay6_ct_create) or a drop reason (a TCP segment that opens none, as
 * NAT66: a SYN or a bare ACK, tcp_may_open; RST/FIN outside the window). */
static __noinline int relay6_ct_out(const struct kvx_pkt6 *p6)
{
	struct kvx_ct6_key k;
	struct kvx_ct6_val *f;

	if (!p6)
		return KVX_R_DROP_MALFORMED;
	ct6_key_init(&k, p6->p.proto, p6->saddr, p6->p.sport, p6->daddr, p6->p.dport);
	f = bpf_map_lookup_elem(&kvx_ct6, &k);
	if (!f)
		return tcp_may_open(&p6->p, CT_DIR_OUT) ? KVX_NO_MAPPING : KVX_R_DROP_TCP_NO_FLOW;
	return ct_update(&f->ct, &p6->p, CT_DIR_OUT, clock_now_ns());
}

/*
 * Its new flow; another CPU's of the same packet is as good.  It counts
 * against the guest's flow quota as NAT66's and IPv4's do (kvx_gflows, the
 * slot of the MAC that owns the address in kvx_nd: ct6_slot, and the
 * daemon's recount, find it there), so a guest's relay flows cannot take
 * kvx_ct6 from the others.
 */
static __noinline int relay6_ct_create(const struct kvx_pkt6 *p6)
{
	const struct kvx_cfg *cfg = cfg_get();
	struct kvx_ct6_key k;
	struct kvx_ct6_val v;
	__u64 now = clock_now_ns();
	__u32 slot;
	int err;

	if (!p6 || !cfg)
		return KVX_R_DROP_MALFORMED;
	slot = ct6_slot(cfg, p6->p.proto, p6->saddr, p6->p.sport, p6->saddr, p6->p.sport);
	err = ct6_quota_check(cfg, slot, 0, p6, now);
	if (err != KVX_CONTINUE)
		return err;
	ct6_key_init(&k, p6->p.proto, p6->saddr, p6->p.sport, p6->daddr, p6->p.dport);
	ct_val_init(&v.ct, &p6->p, CT_DIR_OUT, p6->p.sport, 0, now);
	addr6_copy(v.ext_addr, p6->saddr);
	v.ct.slot = kvx_ct_slot_rec(slot, cfg->guest_seed); /* kvx_ct_val.slot */
	err = bpf_map_update_elem(&kvx_ct6, &k, &v, BPF_NOEXIST);
	if (!err)
		gflows6_add(slot, 0, 1);
	return !err || err == -EEXIST ? KVX_CONTINUE : KVX_R_DROP_TABLE_FULL;
}

/*
 * Echo requests to a guest come in under the stateful policy too (RFC 4890
 * 4.3.1: a firewall should let them reach the hosts behind it, so that
 * they can be diagnosed), untracked (the reply goes out as any packet),
 * and rate limited per guest address: KVX_RELAY_ECHO_BURST at once, then
 * one per KVX_RELAY_ECHO_INTERVAL_NS, the rest DROP_FILTERED, so that a
 * LAN host's ping flood costs a guest no more than that.  The bucket is
 * one of kvx_icmprl's, keyed by the fold of the guest's address with its
 * top bit flipped: never the bucket of the errors kvmxdp sends that guest
 * (keyed by the plain fold), so a flood spends none of their budget.
 */
#define KVX_RELAY_ECHO_INTERVAL_NS 10000000ULL /* 100 a second */
#define KVX_RELAY_ECHO_BURST 50

static __always_inline int relay6_echo_in(const struct kvx_pkt6 *p6)
{
	__be32 key = addr6_fold(p6->daddr) ^ bpf_htonl(0x80000000);

	return icmp_rl_take(key, clock_now_ns(), KVX_RELAY_ECHO_INTERVAL_NS, KVX_RELAY_ECHO_BURST) ?
		       KVX_CONTINUE :
		       KVX_R_DROP_FILTERED;
}

/*
 * Does relay mapping ib (its IN half) open to the guest owner (the MAC that
 * owns the address in kvx_nd now)?  A mapping is its first owner's: the
 * MAC is recorded by the first packet that reaches it (even one it then
 * refuses: not a SYN, over the quota), and a guest that takes
 * the address later (its owner gone for KVX_GUEST_IDLE_NS) gets nothing
 * through it, so that the clients of the guest the mapping was made for
 * never reach another (`map del` and `map add` give it to the new one).
 */
static __always_inline int relay6_mapping_owner(struct kvx_bind6_val *ib, const __u8 *owner)
{
	if (mac_is_zero(ib->bind.guest_mac))
		__builtin_memcpy(ib->bind.guest_mac, owner, ETH_ALEN);
	return mac_eq(ib->bind.guest_mac, owner);
}

/*
 * What the relay mappings open of p6's destination, a guest's address
 * owned by owner: KVX_RELAY_OPEN_ADDR all of it (`map add ADDR`),
 * KVX_NO_MAPPING p6's port (`map add '[ADDR]:PORT' --proto P`), 0
 * nothing.  The daemon writes them in relay mode only, as NAT66's static
 * pairs with the guest's own address and port on both sides (kvx_bind6);
 * a NAT66 mapping never maps an address to itself (its external address
 * is outside the guests' prefix), so its pairs, if any, open nothing here.
 */
static __noinline int relay6_opened(const struct kvx_pkt6 *p6, const __u8 *owner)
{
	struct kvx_bind6_key ik;
	struct kvx_bind6_val *ib;

	if (!p6 || !owner)
		return 0;
	bind6_key_init(&ik, KVX_BIND_IN, KVX_PROTO_ANY, p6->daddr, 0);
	ib = bpf_map_lookup_elem(&kvx_bind6, &ik);
	if (ib && (ib->bind.flags & KVX_BIND_F_ONE_TO_ONE) && addr6_eq(ib->addr, p6->daddr))
		return relay6_mapping_owner(ib, owner) ? KVX_RELAY_OPEN_ADDR : 0;
	if (p6->p.proto != IPPROTO_TCP && p6->p.proto != IPPROTO_UDP)
		return 0;
	bind6_key_init(&ik, KVX_BIND_IN, p6->p.proto, p6->daddr, p6->p.dport);
	ib = bpf_map_lookup_elem(&kvx_bind6, &ik);
	if (!ib || !(ib->bind.flags & KVX_BIND_F_STATIC) || !addr6_eq(ib->addr, p6->daddr) ||
	    ib->bind.port != p6->p.dport)
		return 0;
	return relay6_mapping_owner(ib, owner) ? KVX_NO_MAPPING : 0;
}

/*
 * From outside to a guest, stateful: a reply on one of its flows; a later
 * fragment; an ICMPv6 error that quotes a packet the guest sent (its
 * quoted source is the guest: Packet Too Big must come in, RFC 4890 4.3.1;
 * the quote's ports are not looked up); an echo request (relay6_echo_in);
 * what a relay mapping opens (relay6_opened): a new TCP or UDP flow
 * (KVX_NO_MAPPING or KVX_RELAY_OPEN_ADDR: the caller makes it, ct6_create),
 * opened as NAT66's to a static mapping (only by a SYN, half-open until the
 * handshake completes, within the guest's quota of inbound flows), and to
 * a whole address any other protocol, untracked, as a bridge would.  Else
 * DROP_FILTERED.
 */
static __noinline int relay6_ct_in(kvx_ctx_t *ctx, const struct kvx_pkt6 *p6, const __u8 *owner)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	const struct kvx_cfg *cfg = cfg_get();
	struct kvx_ct6_key k;
	struct kvx_ct6_val *f;
	__u64 now = clock_now_ns();
	int open, r, icmp;
	__u8 state;

	if (!p6 || !cfg)
		return KVX_R_DROP_FILTERED;
	if (pkt_is_later_fragment(&p6->p))
		return KVX_CONTINUE;
	/* icmp_type is parsed only with the header (l4_ok). */
	icmp = p6->p.l4_ok && p6->p.proto == KVX_IPPROTO_ICMPV6;
	if (icmp && p6->p.icmp_type < 128) {
		__u32 off = p6->p.l4_off;
		struct kvx_ipv6hdr *q;

		if (off > KVX_PULL6_LEN)
			return KVX_R_DROP_FILTERED;
		kvx_index_barrier(off);
		q = data + (off & 0x1ff) + sizeof(struct kvx_icmp6hdr);
		if ((void *)(q + 1) > data_end || !addr6_eq(q->saddr, p6->daddr))
			return KVX_R_DROP_FILTERED;
		return KVX_CONTINUE;
	}
	if (icmp && p6->p.icmp_type == ICMPV6_ECHO_REQUEST)
		return relay6_echo_in(p6);
	/* Nothing to track (no transport header parsed: another protocol,
	 * a chain not walked, ESP; an ICMPv6 informational message but an
	 * echo reply): only to an opened address, which takes it as a bridge
	 * would (untracked: no flow, no quota; the guest's own stack judges
	 * it). */
	if (!p6->p.l4_ok || (icmp && p6->p.icmp_type != ICMPV6_ECHO_REPLY) ||
	    (p6->p.proto != IPPROTO_TCP && p6->p.proto != IPPROTO_UDP && !icmp))
		return relay6_opened(p6, owner) == KVX_RELAY_OPEN_ADDR ? KVX_CONTINUE :
									 KVX_R_DROP_FILTERED;
	ct6_key_init(&k, p6->p.proto, p6->daddr, p6->p.dport, p6->saddr, p6->p.sport);
	f = bpf_map_lookup_elem(&kvx_ct6, &k);
	if (f) {
		state = f->ct.state;
		r = ct_update(&f->ct, &p6->p, CT_DIR_IN, now);
		/* A SYN that reopened a closed flow from outside: half-open
		 * again, in the guest's early-drop ring (ct6_ingress). */
		if (r == KVX_CONTINUE && state != KVX_CT_SYN_RECV && f->ct.state == KVX_CT_SYN_RECV)
			ct6_halfopen_push(cfg, &k, f);
		return r;
	}
	open = p6->p.proto == KVX_IPPROTO_ICMPV6 ? 0 : relay6_opened(p6, owner);
	if (!open)
		return KVX_R_DROP_FILTERED;
	if (!tcp_may_open(&p6->p, CT_DIR_IN))
		return KVX_R_DROP_TCP_NO_FLOW;
	/* The guest's quota of flows opened from outside (a LAN flood
	 * cannot take its outbound share), in its kvx_nd owner's slot, the
	 * one ct6_create counts the flow in. */
	r = ct6_quota_check(cfg, ct6_nd_slot(cfg, p6->daddr), KVX_CT_F_INBOUND, p6, now);
	return r == KVX_CONTINUE ? open : r;
}

/*
 * Out of the device the route chose (rw): hop limit - 1 and the MACs when
 * the lookup gave them, else the kernel resolves the next hop.  Nothing
 * else changes (but a clamped MSS: maybe_clamp_mss6): no address, no
 * checksum (the hop limit is not in the pseudo-header).
 */
static __always_inline int relay6_send(kvx_ctx_t *ctx, const struct nat6_rewrite *rw)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	struct ethhdr *eth = data;
	struct kvx_ipv6hdr *ip6 = data + ETH_HLEN;

	if ((void *)(ip6 + 1) > data_end)
		return -1;
	ip6->hop_limit--;
	if (rw->macs) {
		__builtin_memcpy(eth->h_source, rw->smac, ETH_ALEN);
		__builtin_memcpy(eth->h_dest, rw->dmac, ETH_ALEN);
	}
	return redirect6(rw, rw->ifindex, rw->nh);
}

/* To the guest that owns the destination (dmac), from the bridge's MAC. */
static __always_inline void relay6_to_guest(struct nat6_rewrite *rw, const struct kvx_cfg *cfg,
					    const struct kvx_cfg6 *cfg6, const __u8 *dmac)
{
	rw->macs = 1;
	rw->ifindex = cfg->bridge_ifindex;
	__builtin_memcpy(rw->smac, cfg6->bridge_mac, ETH_ALEN);
	__builtin_memcpy(rw->dmac, dmac, ETH_ALEN);
}

/*
 * A guest's frame: parsed into p6, classified, routed into rw.
 * KVX_CONTINUE: forward it by rw; KVX_RELAY_NS: a Neighbour Solicitation;
 * else the reason to count it under.
 */
static __noinline int relay6_guest_check(kvx_ctx_t *ctx, struct kvx_pkt6 *p6,
					 struct nat6_rewrite *rw)
{
	__u8 mac[8] __attribute__((aligned(8))) = {};
	const struct kvx_cfg *cfg = cfg_get();
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	const struct kvx_nd_val *to;
	struct ethhdr *eth;
	enum parse_result pr;
	int rc;

	if (!p6 || !rw)
		return KVX_R_DROP_MALFORMED;
	ctx_pull_len(ctx, KVX_PULL6_LEN);
	if (!cfg || !cfg6 || cfg6->mode != KVX_V6_RELAY)
		return KVX_R_PASS_NOT_IP;
	pr = parse_ipv6(ctx, p6);
	if (pr == PARSE_NOT_IPV6)
		return KVX_R_PASS_NOT_IP;
	if (pr == PARSE_BAD_IP)
		return KVX_R_DROP_MALFORMED;
	eth = ctx_data(ctx);
	if ((void *)(eth + 1) > ctx_data_end(ctx))
		return KVX_R_DROP_MALFORMED;
	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	if (pr == PARSE_OK && p6->p.proto == KVX_IPPROTO_ICMPV6 && p6->p.l4_ok &&
	    p6->p.icmp_type == ICMPV6_NEIGH_SOL)
		return KVX_RELAY_NS;
	/* Link-local, multicast, DAD, router and neighbour discovery: the
	 * host's, and never forwarded (an ND message is valid only on its
	 * link, hop limit 255). */
	if (pkt6_is_host_local(p6) || icmp6_is_nd(&p6->p))
		return KVX_R_PASS_ND;
	/* The guest's from here on, forwarded or dropped: the frame's MAC
	 * (one counter slot with its IPv4, stats.h). */
	gstats_set(mac, 0, cfg->guest_seed, 0);
	/* The uplink lost its prefix (another network without one): nothing
	 * to forward from until the daemon writes the next. */
	if (!cfg6->relay_len)
		return KVX_R_DROP_NO_UPLINK_ADDR;
	if (!relay6_has(cfg6, p6->saddr) || addr6_eq(p6->saddr, cfg6->uplink_addr))
		return KVX_R_DROP_SPOOFED;
	rc = nd_owner(p6->saddr, mac, ctx_ifindex(ctx), 0);
	if (rc != KVX_CONTINUE)
		return rc;
	if (!ctx_frame_for_host(ctx))
		return KVX_R_PASS_OTHERHOST;
	/* Guests share the link and reach one another on it; a frame to
	 * another guest's address that came to the bridge's MAC goes there. */
	to = nd_lookup(p6->daddr);
	if (nd_val_owned(to, clock_now_ns())) {
		if (p6->p.ttl <= 1)
			return KVX_R_DROP_HOP_LIMIT;
		relay6_to_guest(rw, cfg, cfg6, to->mac);
		return KVX_RELAY_GUEST;
	}
	rc = guest6_route_out(ctx, cfg, p6, rw);
	if (rc != KVX_CONTINUE)
		return rc;
	/* A SYN's window scale, for conntrack's window checks of the flow
	 * the stateful policy tracks (without it a scaled window reads as
	 * tiny and the remote's FIN is dropped as outside it). */
	pkt_tcp_options(ctx, &p6->p);
	return KVX_CONTINUE;
}

/*
 * A guest's Neighbour Solicitation.  For an address of the prefix that no
 * guest owns (a LAN host, the host's own): answered with the bridge's MAC,
 * so that the guest sends it here.  A guest's DAD probe for an address
 * binds it to the guest's MAC as pending and is relayed to the LAN (within
 * the guest's relay rate: DROP_ND_RELAY_LIMIT), or is answered when the
 * address is the host's, one a LAN host just defended, or another MAC's
 * (owned or pending, its owner not idle).  Anything else
 * (for another guest, for a link-local address) is the bridge's and the
 * host's: the owner answers.
 */
static __noinline int relay6_guest_ns(kvx_ctx_t *ctx, const struct kvx_pkt6 *p6, __u32 len)
{
	__u8 mac[8] __attribute__((aligned(8))) = {};
	const struct kvx_cfg *cfg = cfg_get();
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	const struct kvx_nd_val *v;
	__be32 target[4];
	struct ethhdr *eth;
	int ours, r;

	if (!p6 || !cfg || !cfg6 || !nd_target(ctx, p6, target) || !relay6_has(cfg6, target) ||
	    mac_is_zero(cfg6->bridge_mac))
		return verdict(KVX_R_PASS_ND, len);
	eth = ctx_data(ctx);
	if ((void *)(eth + 1) > ctx_data_end(ctx))
		return verdict(KVX_R_PASS_ND, len);
	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	v = nd_lookup(target);
	ours = addr6_eq(target, cfg6->uplink_addr) || (v && v->state == KVX_ND_HOST);
	if (addr6_is_zero(p6->saddr) && !ours) {
		/* Its DAD: the address is pending, and the probe goes to the
		 * LAN (the uplink's MAC, a WiFi station's only one), where
		 * a host that has it defends it (relay6_uplink_nd).  A probe
		 * for another guest's address is answered by the bridge. */
		if (mac_is_zero(cfg->uplink_mac) || !cfg->uplink_ifindex)
			return verdict(KVX_R_PASS_ND, len);
		/* Before the claim: a probe the rate refuses must not leave
		 * a run behind that no LAN host heard. */
		if (!relay6_relay_take(cfg, mac))
			return verdict(KVX_R_DROP_ND_RELAY_LIMIT, len);
		r = nd_owner(target, mac, ctx_ifindex(ctx), KVX_OWN_PROBE);
		if (r == KVX_R_DROP_ND_DUPLICATE)
			ours = 1;
		else if (r == KVX_R_DROP_ND_RELAY_LIMIT)
			return verdict(r, len);
		else if (r != KVX_CONTINUE)
			return verdict(KVX_R_PASS_ND, len);
		else {
			r = nd_relay_ns(ctx, cfg->uplink_mac, cfg->uplink_ifindex, len);
			return r < 0 ? verdict(KVX_R_PASS_ND, len) : r;
		}
	}
	/* The host's address, one a LAN host defended, or another guest's:
	 * the guest's DAD fails at once, it takes another. */
	if (ours) {
		r = nd_answer(ctx, cfg6->bridge_mac, len, 0, 0);
		return r < 0 ? verdict(KVX_R_PASS_ND, len) : r;
	}
	/* Another guest's (the bridge took the NS to it: it answers for
	 * itself), or its own.  One a LAN host defended is the LAN host's:
	 * reached through us like any. */
	if (nd_val_guest(v))
		return verdict(KVX_R_PASS_ND, len);
	r = nd_answer(ctx, cfg6->bridge_mac, len, 0, 0);
	return r < 0 ? verdict(KVX_R_PASS_ND, len) : r;
}

static __always_inline int relay6_stateful(void)
{
	const struct kvx_cfg6 *cfg6 = cfg6_get();

	return cfg6 && !(cfg6->flags & KVX_CFG6_F_INBOUND_OPEN);
}

/* guest -> LAN/outside. */
static __always_inline int relay6_from_guest(kvx_ctx_t *ctx)
{
	struct nat6_rewrite rw = {};
	const struct kvx_cfg *cfg;
	__u32 len = ctx_len(ctx);
	struct kvx_pkt6 p6;
	int r;

	r = relay6_guest_check(ctx, &p6, &rw);
	if (r == KVX_RELAY_NS)
		return relay6_guest_ns(ctx, &p6, len);
	if (r == KVX_R_DROP_HOP_LIMIT || r == KVX_R_DROP_TOO_BIG)
		return verdict_guest6(ctx, &p6, r,
				      r == KVX_R_DROP_HOP_LIMIT ?
					      KVX_ICMP_TCM(ICMPV6_TIME_EXCEED, 0, 0) :
					      KVX_ICMP_TCM(ICMPV6_PKT_TOOBIG, 0, rw.mtu));
	if (r != KVX_CONTINUE && r != KVX_RELAY_GUEST)
		return verdict(r, len);
	/* Stateful: the flow its replies come back on (called here, not
	 * from the check: one chain of frames less deep). */
	if (r == KVX_CONTINUE && relay6_stateful() && relay6_tracked(&p6)) {
		int c = relay6_ct_out(&p6);

		if (c == KVX_NO_MAPPING)
			c = relay6_ct_create(&p6);
		if (c != KVX_CONTINUE)
			return verdict(c, len);
	}
	/* Only what leaves for the LAN is clamped, as IPv4's hairpin is
	 * not. */
	cfg = cfg_get();
	if (cfg && r == KVX_CONTINUE)
		maybe_clamp_mss6(ctx, cfg, &p6.p);
	stats_count(r == KVX_RELAY_GUEST ? KVX_R_RELAY_IN : KVX_R_RELAY_OUT, len);
	/* Out of the sender, and into the guest it goes to (as a hairpin). */
	if (cfg && r == KVX_RELAY_GUEST) {
		gstats_set(rw.dmac, 0, cfg->guest_seed, KVX_GCUR_F_IN);
		gstats_take(KVX_R_RELAY_IN, len);
	}
	r = relay6_send(ctx, &rw);
	return r < 0 ? verdict(KVX_R_DROP_MALFORMED, len) : r;
}

/*
 * A frame from the uplink: parsed and classified.  KVX_CONTINUE: to a
 * guest's address, the owner's MAC in dmac; KVX_RELAY_NS: a Neighbour
 * Solicitation or Advertisement; else the reason.
 */
static __noinline int relay6_uplink_check(kvx_ctx_t *ctx, struct kvx_pkt6 *p6, __u8 *dmac)
{
	const struct kvx_cfg *cfg = cfg_get();
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	const struct kvx_nd_val *to;
	enum parse_result pr;

	if (!p6 || !dmac)
		return KVX_R_PASS_HOST;
	ctx_pull_len(ctx, KVX_PULL6_LEN);
	if (!cfg || !cfg6 || cfg6->mode != KVX_V6_RELAY)
		return KVX_R_PASS_NOT_IP;
	pr = parse_ipv6(ctx, p6);
	if (pr == PARSE_NOT_IPV6)
		return KVX_R_PASS_NOT_IP;
	if (pr == PARSE_BAD_IP)
		return KVX_R_PASS_HOST;
	if (pr == PARSE_OK && p6->p.proto == KVX_IPPROTO_ICMPV6 && p6->p.l4_ok &&
	    (p6->p.icmp_type == ICMPV6_NEIGH_SOL || p6->p.icmp_type == ICMPV6_NEIGH_ADV))
		return KVX_RELAY_NS;
	if (pkt6_is_host_local(p6) || icmp6_is_nd(&p6->p))
		return KVX_R_PASS_ND;
	/* The host's own addresses, and those of the prefix no guest owns
	 * (the host answers or drops them: it forwards nothing from the
	 * uplink, all.forwarding stays 0). */
	if (!relay6_has(cfg6, p6->daddr) || addr6_eq(p6->daddr, cfg6->uplink_addr))
		return KVX_R_PASS_HOST;
	to = nd_lookup(p6->daddr);
	if (!nd_val_owned(to, clock_now_ns()))
		return KVX_R_PASS_HOST;
	__builtin_memcpy(dmac, to->mac, ETH_ALEN);
	/* Sources no router forwards (RFC 4291 2.5.2, 2.5.3), our own, and
	 * a guest's: a LAN host posing as one guest to another. */
	if (addr6_is_mcast(p6->saddr) || addr6_eq(p6->saddr, cfg6->uplink_addr) ||
	    (!p6->saddr[0] && !p6->saddr[1] && !p6->saddr[2] && !(p6->saddr[3] & ~bpf_htonl(1))) ||
	    nd_is_guest(p6->saddr))
		return KVX_R_DROP_MARTIAN_IN;
	if (p6->p.ttl <= 1)
		return KVX_R_DROP_TTL_IN;
	/* A redirect skips the forwarding path's MTU test. */
	if (ctx_exceeds_mtu(ctx, cfg->bridge_ifindex, pkt_seg_len(ctx, &p6->p), NULL))
		return KVX_R_DROP_TOO_BIG_IN;
	pkt_tcp_options(ctx, &p6->p);
	return KVX_CONTINUE;
}

/*
 * An NS or NA on the uplink.  An NS for a guest's address: answered with
 * the uplink's MAC (a LAN host's DAD probe for it too: defended).  While
 * the address is pending (the guest's DAD runs), a LAN host's defence of
 * it (its NA, or its own DAD probe: RFC 4862 5.4.3, 5.4.4) goes to the
 * guests, from the bridge's MAC, so that the guest's DAD fails; and the
 * address is marked KVX_ND_DUP, never owned.  Anything else is the host's
 * (its own addresses).  Our own frames (the uplink's MAC: an access point
 * may send a station's multicast back to it) are no LAN host's defence.
 */
static __noinline int relay6_uplink_nd(kvx_ctx_t *ctx, const struct kvx_pkt6 *p6, __u32 len)
{
	const struct kvx_cfg *cfg = cfg_get();
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	struct kvx_nd_val *v;
	struct ethhdr *eth;
	__be32 target[4];
	__u64 now;
	int r;

	if (!p6 || !cfg || !cfg6 || !nd_target(ctx, p6, target) || !relay6_has(cfg6, target) ||
	    mac_is_zero(cfg->uplink_mac))
		return verdict(KVX_R_PASS_ND, len);
	eth = ctx_data(ctx);
	if ((void *)(eth + 1) > ctx_data_end(ctx) || mac_eq(eth->h_source, cfg->uplink_mac))
		return verdict(KVX_R_PASS_ND, len);
	v = nd_lookup(target);
	now = clock_now_ns();
	if (p6->p.icmp_type == ICMPV6_NEIGH_SOL && nd_val_owned(v, now)) {
		r = nd_answer(ctx, cfg->uplink_mac, len, 0, 0);
		return r < 0 ? verdict(KVX_R_PASS_ND, len) : r;
	}
	if (!v || (v->state != KVX_ND_PENDING && v->state != KVX_ND_DUP) ||
	    mac_is_zero(cfg6->bridge_mac) ||
	    (p6->p.icmp_type == ICMPV6_NEIGH_SOL && !addr6_is_zero(p6->saddr)) ||
	    (p6->p.icmp_type == ICMPV6_NEIGH_ADV && !addr6_is_mcast(p6->daddr)))
		return verdict(KVX_R_PASS_ND, len);
	v->state = KVX_ND_DUP;
	v->dad_ns = now;
	if (p6->p.icmp_type == ICMPV6_NEIGH_SOL)
		r = nd_relay_ns(ctx, cfg6->bridge_mac, cfg->bridge_ifindex, len);
	else
		r = nd_answer(ctx, cfg6->bridge_mac, len, 0, cfg->bridge_ifindex);
	return r < 0 ? verdict(KVX_R_PASS_ND, len) : r;
}

/* LAN/outside -> guest. */
static __always_inline int relay6_from_uplink(kvx_ctx_t *ctx)
{
	__u8 dmac[8] __attribute__((aligned(8))) = {};
	struct nat6_rewrite rw = {};
	const struct kvx_cfg *cfg;
	const struct kvx_cfg6 *cfg6;
	__u32 len = ctx_len(ctx);
	struct kvx_pkt6 p6;
	int r;

	r = relay6_uplink_check(ctx, &p6, dmac);
	if (r == KVX_RELAY_NS)
		return relay6_uplink_nd(ctx, &p6, len);
	cfg = cfg_get();
	cfg6 = cfg6_get();
	/* To a guest (dmac, its owner in kvx_nd), forwarded or dropped: its
	 * counters; martian sources are no traffic of its. */
	if (cfg && (r == KVX_CONTINUE || r == KVX_R_DROP_TTL_IN || r == KVX_R_DROP_TOO_BIG_IN))
		gstats_set(dmac, 0, cfg->guest_seed, KVX_GCUR_F_IN);
	if (cfg && (r == KVX_R_DROP_TTL_IN || r == KVX_R_DROP_TOO_BIG_IN))
		return verdict_uplink6(ctx, &p6, r);
	if (r != KVX_CONTINUE)
		return verdict(r, len);
	if (!cfg || !cfg6)
		return verdict(KVX_R_PASS_HOST, len);
	if (!(cfg6->flags & KVX_CFG6_F_INBOUND_OPEN)) {
		r = relay6_ct_in(ctx, &p6, dmac);
		/* A relay mapping's new flow, keyed and counted as the
		 * guest's own (ext == int); made here, not in the check: one
		 * chain of frames less deep. */
		if (r == KVX_NO_MAPPING || r == KVX_RELAY_OPEN_ADDR) {
			addr6_copy(rw.addr, p6.daddr);
			rw.port = p6.p.dport;
			rw.ct_flags = KVX_CT_F_STATIC |
				      (r == KVX_RELAY_OPEN_ADDR ? KVX_CT_F_ONE_TO_ONE : 0);
			r = ct6_create(&p6, CT_DIR_IN, &rw);
			if (r == KVX_CT_RACE)
				r = ct6_race(&p6, CT_DIR_IN, &rw);
		}
		if (r != KVX_CONTINUE)
			return verdict(r, len);
	}
	relay6_to_guest(&rw, cfg, cfg6, dmac);
	maybe_clamp_mss6(ctx, cfg, &p6.p);
	stats_count(KVX_R_RELAY_IN, len);
	r = relay6_send(ctx, &rw);
	return r < 0 ? verdict(KVX_R_DROP_MALFORMED, len) : r;
}

#endif /* KVX_RELAY6_H */
