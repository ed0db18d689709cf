/* SPDX-License-Identifier: GPL-2.0 */
/*
 * NAT66 (docs/ipv6.md): the programs the entry points tail-call an IPv6
 * frame into.  Guests on kvx_cfg6.subnet leave from kvx_cfg6.uplink_addr
 * with the IPv4 path's behaviour (endpoint-independent mapping, APDF or
 * --eif, the NAT port range minus the host's); neighbour and router
 * discovery, link-local and multicast stay the host's.  A guest's address
 * is its MAC's (owner6.h: its DAD probe or first frame claims it), so that
 * one guest cannot leave from, or use the 1:1 address of, another's.  Mode
 * off (or relay,
 * not in the datapath yet): every frame is the host's (PASS_NOT_IP), as
 * before IPv6 existed here.
 *
 * Static mappings (ct6.h): port forwards on the uplink address or another
 * address, and 1:1 addresses (TCP, UDP, ICMPv6 echo, and the protocols
 * translated by address alone: proto6_address_only), inbound to them
 * delivered to their guest, the guest's packets out from them.  ICMPv6
 * errors about a flow are translated with their quote (icmp6.h),
 * fragments by their first fragment (kvx_frag6).
 *
 * Not translated yet (dropped from guests, counted; the host's from the
 * uplink): other protocols (at 1:1 addresses: those with a pseudo-header
 * checksum, and ESP/AH, which the header walk refuses).  Never passed to
 * the host from a guest once it is bound for the outside: with IPv6
 * forwarding on the bridge the host would route it out with its private
 * source.
 */
#ifndef KVX_NAT6_H
#define KVX_NAT6_H

#include "nat.h"
#include "ct6.h"
#include "icmp6.h"
#include "nd6.h"
#include "owner6.h"

/* Returned by nat6_guest_check: a guest's duplicate address detection
 * probe (nat6_guest_dad). */
#define KVX_NAT6_DAD (KVX_R_MAX + 9)

/* Is a in prefix/len (len 0..128)? */
static __always_inline int prefix6_has(const __be32 *prefix, __u32 len, const __be32 *a)
{
	__u32 i;

#pragma unroll
	for (i = 0; i < 4; i++) {
		__u32 bits;

		if (len <= 32 * i)
			return 1;
		bits = len - 32 * i;
		if (bits >= 32) {
			if (a[i] != prefix[i])
				return 0;
			continue;
		}
		return !((a[i] ^ prefix[i]) & bpf_htonl(0xffffffffU << (32 - bits)));
	}
	return 1;
}

/*
 * An announced mapped address (kvx_extaddr6, KVX_EXT_F_ARP: the daemon's
 * DAD found it free and the uplink answers for it), not held: ours on the
 * uplink's link.  Suspended (another network), probing or in conflict, it
 * may be another node's.
 */
static __always_inline int extaddr6_announced(const __be32 *a)
{
	const struct kvx_extaddr_val *ea;
	struct kvx_extaddr6_key k;

	addr6_copy(k.addr, a);
	ea = bpf_map_lookup_elem(&kvx_extaddr6, &k);
	return ea && (ea->flags & KVX_EXT_F_ARP) &&
	       !(ea->flags & (KVX_EXT_F_SUSPENDED | KVX_EXT_F_PROBING | KVX_EXT_F_CONFLICT));
}

/* Neighbour discovery, router discovery, MLD (RFC 4861, 2710, 3810): from
 * the uplink, the host's.  (From a guest only by their addresses:
 * nat6_guest_check.) */
static __always_inline int icmp6_is_nd(const struct kvx_pkt *p)
{
	return p->proto == KVX_IPPROTO_ICMPV6 && p->l4_ok &&
	       ((p->icmp_type >= ICMPV6_MLD_QUERY && p->icmp_type <= ICMPV6_REDIRECT) ||
		p->icmp_type == ICMPV6_MLD2_REPORT);
}

/* Protocols a 1:1 mapping translates by address alone: their own checks
 * do not cover the IPv6 addresses (GRE's optional checksum is over GRE,
 * SCTP's CRC32c over SCTP: RFC 2784, 9260; the tunnelled packets of IPv4-
 * and IPv6-in-IPv6 have their own).  Others with a pseudo-header checksum
 * that kvmxdp does not know (DCCP, UDP-Lite, OSPFv3, PIM...) would arrive
 * corrupted: not translated. */
static __always_inline int proto6_address_only(__u8 proto)
{
	return proto == IPPROTO_GRE || proto == IPPROTO_SCTP || proto == IPPROTO_IPIP ||
	       proto == IPPROTO_IPV6;
}

static __always_inline int proto6_has_ports(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == KVX_IPPROTO_ICMPV6;
}

/*
 * attach --clamp-mss for IPv6 SYNs, NAT66 and relay alike, where IPv4's
 * clamps (out of the uplink and in from it; not between guests).  The
 * value is an IPv4 MSS, the path MTU - 40 (what the doctor and the
 * iptables import suggest): over the same path the IPv6 header is 20 bytes
 * longer, so IPv6 gets 20 less, but never below 1220, what the IPv6
 * minimum MTU carries (RFC 8200 5: every IPv6 link takes 1280 bytes).
 */
#define KVX_MSS6_MIN 1220
static __always_inline void maybe_clamp_mss6(kvx_ctx_t *ctx, const struct kvx_cfg *cfg,
					     const struct kvx_pkt *p)
{
	__u16 mss = cfg->clamp_mss;

	if (mss && p->proto == IPPROTO_TCP && (p->tcp_flags & KVX_TCP_SYN) &&
	    !pkt_is_later_fragment(p))
		tcp_clamp_mss(ctx, p, mss < KVX_MSS6_MIN + 20 ? KVX_MSS6_MIN : mss - 20);
}

/* The host's link-local business: DAD (source ::), link-local either
 * side, multicast. */
static __always_inline int pkt6_is_host_local(const struct kvx_pkt6 *p6)
{
	return addr6_is_zero(p6->saddr) || addr6_is_linklocal(p6->saddr) ||
	       addr6_is_linklocal(p6->daddr) || addr6_is_mcast(p6->daddr);
}

/*
 * IPv6: the lookup of fib_route (from the device the stack sees the packet
 * on, with its mark), without its route cache (IPv4 slots); the answer
 * into rw.  tot_len 0: TC's lookup tests the skb against the egress
 * device's MTU GSO-aware, as the kernel's forwarding does (its learnt path
 * MTUs are for the host's own traffic, and a length would make the lookup
 * answer from them); XDP's tests nothing, its caller does.  Needs IPv6
 * forwarding on that device (else FWD_DISABLED).  Not inlined: the
 * lookup's 64 bytes stay off the frame of the program, whose chain down to
 * bind6_claim is near the verifier's 512 bytes.
 */
static __noinline int fib6_route(kvx_ctx_t *ctx, const struct kvx_pkt6 *p6, struct nat6_rewrite *rw,
				 __u32 ifindex)
{
	struct bpf_fib_lookup fib;
	__u32 mark = ctx_mark(ctx);
	__u32 flags = mark ? BPF_FIB_LOOKUP_MARK : 0;
	int rc;

	if (!p6 || !rw)
		return -1;
	__builtin_memset(&fib, 0, sizeof(fib));
	fib.family = AF_INET6;
	fib.l4_protocol = p6->p.proto;
	if (p6->p.proto == IPPROTO_TCP || p6->p.proto == IPPROTO_UDP) {
		fib.sport = p6->p.sport;
		fib.dport = p6->p.dport;
	}
	__builtin_memcpy(fib.ipv6_src, p6->saddr, 16);
	__builtin_memcpy(fib.ipv6_dst, p6->daddr, 16);
	fib.ifindex = ifindex;
	*(__u32 *)fib.smac = mark; /* the 6.10 uapi's input "mark" */
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), flags);
	if (rc == -22 /* -EINVAL */ && flags)
		return KVX_FIB_NO_MARK_SUPPORT;
	rw->ifindex = fib.ifindex;
	rw->mtu = fib.mtu_result;
	__builtin_memcpy(rw->nh, fib.ipv6_dst, 16);
	__builtin_memcpy(rw->smac, fib.smac, ETH_ALEN);
	__builtin_memcpy(rw->dmac, fib.dmac, ETH_ALEN);
	return rc;
}

/*
 * A guest's packet bound for the outside, NAT66 and relay alike: routed
 * (into rw) through the uplink only (the host's other devices are not the
 * guests' to reach), with the hop limit and the route's MTU checked per
 * segment (NO_NEIGH skips the lookup's MTU test, and the lookup passes any
 * GSO skb whole).  KVX_CONTINUE with rw->macs set when the lookup gave
 * them; DROP_HOP_LIMIT and DROP_TOO_BIG for the caller to answer
 * (icmp6_reply); a route that is the host's (one of its addresses, an
 * unreachable route it answers) is passed.  From here on a packet is
 * never passed to the host, which would route it out with its source
 * untranslated (IPv6 forwarding on the bridge).
 */
static __always_inline int guest6_route_out(kvx_ctx_t *ctx, const struct kvx_cfg *cfg,
					    const struct kvx_pkt6 *p6, struct nat6_rewrite *rw)
{
	int rc = fib6_route(ctx, p6, rw, ctx_ifindex(ctx));

	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
	case BPF_FIB_LKUP_RET_NO_NEIGH:
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		break;
	case BPF_FIB_LKUP_RET_NOT_FWDED:
		return KVX_R_PASS_LOCAL; /* another address of the host's */
	case BPF_FIB_LKUP_RET_BLACKHOLE:
	case BPF_FIB_LKUP_RET_UNREACHABLE:
	case BPF_FIB_LKUP_RET_PROHIBIT:
		/* The host answers these (ICMPv6 unreachable), routes nothing. */
		return KVX_R_PASS_NO_ROUTE;
	case KVX_FIB_NO_MARK_SUPPORT:
		return KVX_R_DROP_FWMARK;
	default:
		return KVX_R_DROP_FIB;
	}
	if (rw->ifindex != cfg->uplink_ifindex)
		return KVX_R_DROP_OTHER_IFACE;
	if (p6->p.ttl <= 1)
		return KVX_R_DROP_HOP_LIMIT;
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED ||
	    ((rc == BPF_FIB_LKUP_RET_NO_NEIGH || ctx_gso_size(ctx)) &&
	     ctx_exceeds_mtu(ctx, rw->ifindex, pkt_seg_len(ctx, &p6->p), &rw->mtu)))
		return KVX_R_DROP_TOO_BIG;
	/* NO_NEIGH: the kernel resolves the next hop and fills the MACs. */
	rw->macs = rc == BPF_FIB_LKUP_RET_SUCCESS;
	return KVX_CONTINUE;
}

/* Out of ifindex: with rw's MACs when it has them (set by the rewrite),
 * else by the kernel's resolution of nh (bpf_redirect_neigh). */
static __always_inline int redirect6(const struct nat6_rewrite *rw, __u32 ifindex, const __be32 *nh)
{
	struct bpf_redir_neigh n = {
		.nh_family = AF_INET6,
	};

	if (rw->macs)
		return ctx_redirect(ifindex);
	__builtin_memcpy(n.ipv6_nh, nh, 16);
	return bpf_redirect_neigh(ifindex, &n, sizeof(n), 0);
}

/*
 * Rewrite one side to rw's address and port, hop limit - 1, the MACs when
 * given; then the L4 checksum incrementally (csum_l4_addr6, csum_port).
 * A protocol translated by address alone (proto6_address_only, 1:1
 * mappings): the address only.  keep_hl: the hop limit stays (the second
 * side of a hairpin, one hop in all).
 * All direct writes happen first: the checksum helpers invalidate packet
 * pointers.
 */
static __noinline int nat6_rewrite(kvx_ctx_t *ctx, const struct kvx_pkt6 *p6,
				   const struct nat6_rewrite *rw)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	struct ethhdr *eth = data;
	struct kvx_ipv6hdr *ip6 = data + ETH_HLEN;
	struct csum_l4 l4c = {};
	__be32 old[4], new[4];
	__be16 *pp = NULL, old_port = 0, port;
	__u32 l4_off;
	void *l4;
	int src;

	if (!p6 || !rw || (void *)(ip6 + 1) > data_end)
		return -1;
	/* A later fragment: no L4 header, and no checksum over the addresses
	 * (the first fragment's L4 checksum covers them, and is fixed there). */
	if (pkt_is_later_fragment(&p6->p)) {
		if (rw->macs) {
			__builtin_memcpy(eth->h_source, rw->smac, ETH_ALEN);
			__builtin_memcpy(eth->h_dest, rw->dmac, ETH_ALEN);
		}
		if (!rw->keep_hl)
			ip6->hop_limit--;
		if (rw->src)
			addr6_copy(ip6->saddr, rw->addr);
		else
			addr6_copy(ip6->daddr, rw->addr);
		return 0;
	}
	l4_off = p6->p.l4_off;
	if (l4_off < ETH_HLEN + sizeof(*ip6) || l4_off > KVX_PULL6_LEN)
		return -1;
	/* Masked behind a barrier: clang folds the test above into one the
	 * verifier draws no bound from. */
	kvx_index_barrier(l4_off);
	l4 = data + (l4_off & 0x1ff);
	switch (p6->p.proto) {
	case IPPROTO_TCP: {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return -1;
		pp = rw->src ? &th->source : &th->dest;
		l4c.off = l4_off + offsetof(struct tcphdr, check);
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end)
			return -1;
		pp = rw->src ? &uh->source : &uh->dest;
		l4c.off = l4_off + offsetof(struct udphdr, check);
		l4c.udp = 1;
		break;
	}
	case KVX_IPPROTO_ICMPV6: {
		struct kvx_icmp6hdr *ih = l4;

		if ((void *)(ih + 1) > data_end)
			return -1;
		pp = &ih->id;
		l4c.off = l4_off + offsetof(struct kvx_icmp6hdr, checksum);
		break;
	}
	default:
		if (!proto6_address_only(p6->p.proto))
			return -1;
		break;
	}
	l4c.pseudo = 1;
	if (pp && (void *)(pp + 1) > data_end) /* for the verifier: pp is computed apart */
		return -1;

	src = rw->src;
	port = rw->port;
	if (rw->macs) {
		__builtin_memcpy(eth->h_source, rw->smac, ETH_ALEN);
		__builtin_memcpy(eth->h_dest, rw->dmac, ETH_ALEN);
	}
	if (!rw->keep_hl)
		ip6->hop_limit--;
	addr6_copy(new, rw->addr);
	if (src) {
		addr6_copy(old, ip6->saddr);
		addr6_copy(ip6->saddr, new);
	} else {
		addr6_copy(old, ip6->daddr);
		addr6_copy(ip6->daddr, new);
	}
	if (!pp)
		return 0;
	old_port = *pp;
	*pp = port;

	if (csum_l4_addr6(ctx, &l4c, old, new) || csum_port(ctx, &l4c, old_port, port))
		return -1;
	return 0;
}

/* A datagram's key (kvx_frag6, kvx_fraghost6), as nat.h frag_key_of. */
static __always_inline void frag6_key_of(struct kvx_frag6_key *k, const struct kvx_pkt6 *p6,
					 __u8 dir)
{
	__builtin_memset(k, 0, sizeof(*k));
	addr6_copy(k->saddr, p6->saddr);
	addr6_copy(k->daddr, p6->daddr);
	k->id = p6->frag_id;
	k->proto = p6->p.proto;
	k->dir = dir;
}

/*
 * IPv6 fragments (RFC 8200 4.5; abi.h kvx_frag6): only the first carries
 * the L4 header, so its translation is remembered per datagram for the
 * later ones, as IPv4's frag_remember / frag_lookup do: addr the new
 * address, guest_mac the sending guest's (OUT: its later fragments must
 * come from it) or the one to deliver to (IN), gw_mac the next hop's (OUT:
 * with which the daemon sends a parked fragment; zero when the kernel
 * resolves it) or the bridge's as the guest uses it (IN).  addr NULL: an
 * inbound first fragment no guest took, the host's: a mark in
 * kvx_fraghost6 (abi.h), so that its later fragments go to the host
 * without the park.  Not inlined: the key and value stay off the programs'
 * frames.
 */
static __noinline void frag6_remember(const struct kvx_pkt6 *p6, __u8 dir, const __be32 *addr,
				      const __u8 *guest_mac, const __u8 *gw_mac)
{
	struct kvx_frag6_key k;
	struct kvx_frag6_val v;

	if (!p6 || !(p6->p.frag & KVX_IP_MF) || pkt_is_later_fragment(&p6->p))
		return;
	frag6_key_of(&k, p6, dir);
	__builtin_memset(&v, 0, sizeof(v));
	v.created_ns = clock_now_ns();
	if (!addr) {
		bpf_map_update_elem(&kvx_fraghost6, &k, &v.created_ns, BPF_ANY);
		return;
	}
	addr6_copy(v.addr, addr);
	if (guest_mac)
		__builtin_memcpy(v.guest_mac, guest_mac, ETH_ALEN);
	if (gw_mac)
		__builtin_memcpy(v.gw_mac, gw_mac, ETH_ALEN);
	bpf_map_update_elem(&kvx_frag6, &k, &v, BPF_ANY);
}

/*
 * A later fragment's translation into rw (the address; inbound also the
 * MACs).  -1: no first fragment seen in the last KVX_FRAG_TIMEOUT_S (an
 * older entry is an earlier datagram's: deleted, never followed); -2
 * (outbound): the first fragment came from another MAC; -3 (inbound): the
 * first fragment went to the host.
 */
static __noinline int frag6_find(const struct kvx_pkt6 *p6, __u8 dir, const __u8 *src_mac,
				 struct nat6_rewrite *rw)
{
	struct kvx_frag6_key k;
	struct kvx_frag6_val *v;

	if (!p6 || !src_mac || !rw)
		return -1;
	frag6_key_of(&k, p6, dir);
	v = bpf_map_lookup_elem(&kvx_frag6, &k);
	if (v && frag_stale(v->created_ns, clock_now_ns())) {
		bpf_map_delete_elem(&kvx_frag6, &k);
		v = NULL;
	}
	if (!v) {
		struct kvx_fraghost_val *h;

		/* No guest's: the host's mark, if any (after the guests':
		 * a mark never takes a guest's datagram away). */
		if (dir != KVX_BIND_IN)
			return -1;
		h = bpf_map_lookup_elem(&kvx_fraghost6, &k);
		if (!h)
			return -1;
		if (frag_stale(h->created_ns, clock_now_ns())) {
			bpf_map_delete_elem(&kvx_fraghost6, &k);
			return -1;
		}
		return -3;
	}
	/* The host's, marked by a version before 25 (abi.h). */
	if (addr6_is_zero(v->addr))
		return dir == KVX_BIND_IN ? -3 : -1;
	addr6_copy(rw->addr, v->addr);
	if (dir == KVX_BIND_OUT)
		return mac_eq(v->guest_mac, src_mac) ? 0 : -2;
	if (!mac_is_zero(v->guest_mac)) {
		rw->macs = 1;
		__builtin_memcpy(rw->smac, v->gw_mac, ETH_ALEN);
		__builtin_memcpy(rw->dmac, v->guest_mac, ETH_ALEN);
	}
	return 0;
}

/*
 * ICMPv6 errors kvmxdp sends a guest itself (RFC 4443), as icmp_reply
 * does for IPv4: the frame becomes the error about it, from saddr (the
 * bridge's link-local address) back to its sender, out of the device it
 * came in on (MACs swapped).  type/code/mtu in tcm (KVX_ICMP_TCM).  The
 * quote is the offending packet's first KVX_ICMP6_QUOTE bytes (even): its
 * headers, which is all a receiver's stack reads, not the 1232 bytes RFC
 * 4443 3.1 allows (the sum is taken by icmp_sum, 88 bytes a call).  The
 * quoted TCP/UDP checksum gets icmp_reply's fixed point, so that a
 * CHECKSUM_PARTIAL skb finished later leaves the bytes as sent.  Never
 * about an ICMPv6 error, a multicast or unspecified address, a frame sent
 * to a multicast MAC or from one; rate limited by kvx_icmprl (keyed by a
 * fold of the destination) and the global budgets, a guest's Packet Too Big
 * only by its own.  lan: to a LAN host (verdict_uplink6): its Packet Too
 * Big too by the destination's bucket and the answers' budget, so that LAN
 * traffic too big for the bridge (a 1:1 address takes any) cannot spend
 * the budget the guests' path-MTU discovery lives on.
 * -1: nothing sent, the caller drops.
 */
#define KVX_ICMP6_QUOTE 168

/* icmp_sum of up to 2 * KVX_ICMP_SUM_MAX bytes (even), in two calls. */
static __always_inline __u32 icmp_sum2(const void *p, const void *data_end, __u32 len)
{
	__u32 sum = icmp_sum(p, data_end, len);

	if (len > KVX_ICMP_SUM_MAX)
		sum += icmp_sum(p + KVX_ICMP_SUM_MAX, data_end, len - KVX_ICMP_SUM_MAX);
	return sum;
}
#define ICMPV6_PKT_TOOBIG 2
#define ICMPV6_TIME_EXCEED 3

static __noinline int icmp6_reply(kvx_ctx_t *ctx, const struct kvx_pkt6 *p6, __u32 tcm,
				  const __be32 *saddr, int lan)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	struct ethhdr *eth = data;
	struct kvx_ipv6hdr *ip6 = data + ETH_HLEN;
	struct kvx_icmp6hdr *ih;
	__u32 quote, sum, l4q = 0, csum_off = 0;
	__be32 src[4], dst[4];
	__u8 mac[ETH_ALEN];
	__u16 n;

	if (!p6 || !saddr || (void *)(ip6 + 1) > data_end || addr6_is_zero(saddr))
		return -1;
	if ((eth->h_dest[0] & 1) || (eth->h_source[0] & 1) || addr6_is_mcast(ip6->daddr) ||
	    addr6_is_mcast(ip6->saddr) || addr6_is_zero(ip6->saddr))
		return -1;
	if (p6->p.proto == KVX_IPPROTO_ICMPV6 && (!p6->p.l4_ok || p6->p.icmp_type < 128))
		return -1;
	quote = p6->p.ip_end - ETH_HLEN;
	if (quote > KVX_ICMP6_QUOTE)
		quote = KVX_ICMP6_QUOTE;
	quote &= ~1U;
	if (quote < sizeof(*ip6) || ETH_HLEN + quote > ctx_len(ctx))
		return -1;
	/* The quoted TCP/UDP checksum, when the quote holds it. */
	if (!pkt_is_fragment(&p6->p) && p6->p.l4_ok &&
	    (p6->p.proto == IPPROTO_TCP || p6->p.proto == IPPROTO_UDP)) {
		l4q = p6->p.l4_off - ETH_HLEN;
		csum_off = p6->p.proto == IPPROTO_TCP ? offsetof(struct tcphdr, check) :
							offsetof(struct udphdr, check);
		if (l4q + csum_off + 2 > quote)
			csum_off = 0;
	}
	if (!icmp_rl_allow(addr6_fold(ip6->saddr), !lan && tcm >> 24 == ICMPV6_PKT_TOOBIG)) {
		stats_count(KVX_R_ICMP_RATELIMITED, 0);
		return -1;
	}
	addr6_copy(dst, ip6->saddr);
	addr6_copy(src, saddr);
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	if (ctx_icmp_reshape(ctx, ETH_HLEN + quote, sizeof(*ip6) + sizeof(*ih)))
		return -1;

	data = ctx_data(ctx);
	data_end = ctx_data_end(ctx);
	ip6 = data + ETH_HLEN;
	ih = (void *)(ip6 + 1);
	if ((void *)(ih + 1) > data_end)
		return -1;
	if (csum_off) {
		__u8 *l4 = (__u8 *)(ih + 1) + (l4q & 0xff);
		__sum16 *f = (void *)(l4 + csum_off);

		if ((void *)(f + 1) > data_end)
			return -1;
		*f = 0;
		n = ~csum_fold32(icmp_sum2(l4, data_end, quote - l4q));
		*f = (__sum16)(n >> 1 | n << 15);
	}
	ip6->ver_tc = 0x60;
	ip6->tc_flow = 0;
	ip6->flow_lo = 0;
	ip6->payload_len = bpf_htons(sizeof(*ih) + quote);
	ip6->nexthdr = KVX_IPPROTO_ICMPV6;
	ip6->hop_limit = 64;
	addr6_copy(ip6->saddr, src);
	addr6_copy(ip6->daddr, dst);
	ih->type = tcm >> 24;
	ih->code = tcm >> 16;
	ih->checksum = 0;
	*(__be32 *)&ih->id = bpf_htonl(tcm & 0xffff);
	/* RFC 4443 2.3: the pseudo-header's addresses, length and next
	 * header, then the message. */
	sum = icmp_sum(ip6->saddr, data_end, 32) + bpf_htons(sizeof(*ih) + quote) +
	      bpf_htons(KVX_IPPROTO_ICMPV6);
	sum += icmp_sum2(ih, data_end, sizeof(*ih) + quote);
	ih->checksum = ~csum_fold32(sum);

	stats_count(KVX_R_ICMP_SENT, ctx_len(ctx));
	return ctx_redirect(ctx_ifindex(ctx));
}

/*
 * Rewrite an ICMPv6 error in place, to rw's address and port.  Inbound (to
 * a guest, !rw->src): the outer destination and the quoted source (the
 * uplink address and the NAT port) become the guest's.  Outbound (a
 * guest's error, rw->src): the outer source and the quoted destination
 * become the external endpoint.  Hop limit - 1 (not with rw->keep_hl: the
 * second rewrite of a hairpinned error, one hop in all); the MACs when
 * given.  Direct writes with RFC 1624 updates, every checksum kept valid:
 * the sum over the whole datagram does not change (the ICMPv6 checksum
 * takes up the outer address's difference), so a CHECKSUM_COMPLETE
 * skb->csum stays right.  A zero quoted UDP checksum stays 0 (invalid in
 * IPv6, but not ours to fix).
 */
static __noinline int icmp6_err_rewrite(kvx_ctx_t *ctx, const struct icmp6_quote *q,
					const struct nat6_rewrite *rw)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	struct ethhdr *eth = data;
	struct kvx_ipv6hdr *ip6 = data + ETH_HLEN;
	struct kvx_icmp6hdr *ih;
	struct kvx_ipv6hdr *qip;
	__be32 old[4], *addr, *qaddr;
	__u32 ql4_off, csum_off, ih_off;
	__be16 *qport, oldp, port;
	__sum16 sum, *ql4sum = NULL;
	__u8 *ql4;

	if (!q || !rw || (void *)(ip6 + 1) > data_end)
		return -1;
	/* The error's ICMPv6 header where icmp6_parse_quote found it (behind
	 * an outer extension chain, maybe). */
	ih_off = q->ih_off;
	if (ih_off < ETH_HLEN + sizeof(*ip6) || ih_off > KVX_ICMP6_IH_MAX)
		return -1;
	kvx_index_barrier(ih_off);
	ih = data + (ih_off & 0x1ff);
	qip = (void *)(ih + 1);
	if ((void *)(qip + 1) > data_end)
		return -1;
	ql4_off = q->l4_off;
	if (ql4_off < ih_off + sizeof(*ih) + sizeof(*qip) || ql4_off > KVX_PULL6_LEN - 8)
		return -1;
	kvx_index_barrier(ql4_off);
	ql4 = data + (ql4_off & 0x1ff);
	if (q->proto == KVX_IPPROTO_ICMPV6) {
		if ((void *)(ql4 + 8) > data_end)
			return -1;
		qport = (__be16 *)(ql4 + 4);
	} else {
		if ((void *)(ql4 + 4) > data_end)
			return -1;
		qport = (__be16 *)(ql4 + (rw->src ? 2 : 0));
	}
	csum_off = q->csum_off;
	if (csum_off == 2 || csum_off == 6 || csum_off == 16) {
		__sum16 *f = (void *)(ql4 + csum_off);

		if ((void *)(f + 1) <= data_end && !(q->proto == IPPROTO_UDP && !*f))
			ql4sum = f;
	}

	if (rw->macs) {
		__builtin_memcpy(eth->h_source, rw->smac, ETH_ALEN);
		__builtin_memcpy(eth->h_dest, rw->dmac, ETH_ALEN);
	}
	if (!rw->keep_hl)
		ip6->hop_limit--;
	addr = rw->src ? ip6->saddr : ip6->daddr;
	qaddr = rw->src ? qip->daddr : qip->saddr;
	/* The outer address: in the pseudo-header of the ICMPv6 checksum.
	 * (rw->addr read in place: a copy here took kvx_up6's chain through
	 * nat6_icmp_error_in to 6.1's 512-byte limit.) */
	addr6_copy(old, addr);
	addr6_copy(addr, rw->addr);
	sum = csum128_update(ih->checksum, old, rw->addr);
	/* The quoted address: in the message, and in the quoted L4 checksum's
	 * pseudo-header (TCP, UDP and ICMPv6 alike). */
	addr6_copy(old, qaddr);
	addr6_copy(qaddr, rw->addr);
	sum = csum128_update(sum, old, rw->addr);
	port = rw->port;
	oldp = *qport;
	*qport = port;
	sum = csum16_update(sum, oldp, port);
	if (ql4sum) {
		__sum16 l4old = *ql4sum, l4new;

		l4new = csum128_update(l4old, old, rw->addr);
		l4new = csum16_update(l4new, oldp, port);
		if (q->proto == IPPROTO_UDP && !l4new)
			l4new = 0xffff;
		*ql4sum = l4new;
		sum = csum16_update(sum, l4old, l4new);
	}
	ih->checksum = sum;
	return 0;
}

/*
 * Hairpin (RFC 4787 REQ-9, RFC 5382 REQ-8), as IPv4's nat4_hairpin: a
 * guest's packet to an address and port kvx_bind6 maps (a 1:1 address, a
 * port forward on the uplink's address or a literal one, a binding of the
 * uplink's address: a hairpinned flow's reply) turns around on the bridge,
 * translated both ways (nat6_hairpin): the target guest sees the sender's
 * external endpoint.  Not a fragment (the later ones would not follow),
 * TCP, UDP or echo; or an ICMPv6 error to the uplink's or an announced
 * address, which may be about such a flow.  Not inlined: its key stays
 * off the chain's frames.
 */
static __noinline int nat6_hairpin_target(const struct kvx_pkt6 *p6)
{
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	struct kvx_bind6_key ik;
	struct kvx_bind6_val *ib;

	if (!p6 || !cfg6 || !p6->p.l4_ok || pkt_is_fragment(&p6->p) ||
	    !proto6_has_ports(p6->p.proto))
		return 0;
	/* The uplink's address or an announced mapped one, as IPv4's
	 * ext_addr_check: any other destination costs one lookup. */
	if (!addr6_eq(p6->daddr, cfg6->uplink_addr) && !extaddr6_announced(p6->daddr))
		return 0;
	/* An error to one of them may be about a hairpinned flow: its quote
	 * tells (nat6_icmp_error_hairpin). */
	if (p6->p.proto == KVX_IPPROTO_ICMPV6 && icmp6_is_error(p6->p.icmp_type))
		return 1;
	if (p6->p.proto == KVX_IPPROTO_ICMPV6 && p6->p.icmp_type != ICMPV6_ECHO_REQUEST &&
	    p6->p.icmp_type != ICMPV6_ECHO_REPLY)
		return 0;
	bind6_key_init(&ik, KVX_BIND_IN, KVX_PROTO_ANY, p6->daddr, 0);
	ib = bpf_map_lookup_elem(&kvx_bind6, &ik);
	if (ib && (ib->bind.flags & KVX_BIND_F_ONE_TO_ONE))
		return 1;
	bind6_key_init(&ik, KVX_BIND_IN, p6->p.proto, p6->daddr, p6->p.dport);
	return bpf_map_lookup_elem(&kvx_bind6, &ik) != NULL;
}

/*
 * Bridge: a guest's frame the host keeps (PASS_ND, PASS_LOCAL).  From an
 * address of the subnet, the owner's keeps the address alive (nd_seen);
 * another live owner's address is not the sender's to use with the host
 * (1: DROP_SPOOF_MAC): a Neighbour Solicitation from it (its source
 * link-layer option, or the kernel's reply) would teach the host's
 * neighbour cache the sender's MAC for it (RFC 4861 7.2.3), and the host's
 * services would answer the owner.  A Neighbour Advertisement, from any
 * source (its link-local one too), for another live owner's address is
 * refused the same (7.2.5: its target link-layer option overrides the
 * host's entry): the host's own traffic to that guest, and a mapping's
 * that has not seen its guest yet (delivered through the cache), would go
 * to the sender.  The target is read where it is, unchecked: an invalid
 * advertisement costs nothing to drop.  0: the host's.  A flag, not a
 * reason: the caller's verdict stays one of two constants for the
 * verifier.  A global function: the verifier checks it once, not once
 * per parse outcome that reaches the host.  Left: an advertisement behind
 * an extension header chain the parser does not walk (PARSE_EXTHDR) from a
 * link-local source.
 */
__noinline int nat6_guest_local(kvx_ctx_t *ctx, const struct kvx_pkt6 *p6)
{
	__u8 mac[8] __attribute__((aligned(8))) = {}; /* mac_eq: word loads */
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	void *data = ctx_data(ctx), *data_end = ctx_data_end(ctx);
	struct ethhdr *eth = data;
	__be32 target[4];
	__u32 off;

	if (!p6 || !cfg6 || (void *)(eth + 1) > data_end)
		return 0;
	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	if (prefix6_has(cfg6->subnet, cfg6->subnet_len, p6->saddr) && nd_seen(p6->saddr, mac))
		return 1;
	if (p6->p.proto != KVX_IPPROTO_ICMPV6 || !p6->p.l4_ok ||
	    p6->p.icmp_type != ICMPV6_NEIGH_ADV)
		return 0;
	off = p6->p.l4_off;
	if (off > KVX_PULL6_LEN || data + off + 24 > data_end)
		return 0;
	__builtin_memcpy(target, data + off + 8, sizeof(target));
	return prefix6_has(cfg6->subnet, cfg6->subnet_len, target) && nd_seen(target, mac);
}

/*
 * A guest's frame up to the binding: parsed into p6, classified, routed
 * (into rw).  Returns KVX_CONTINUE when it is to be translated, else the
 * reason to count it under.  Not inlined, as nat6_uplink_check: the
 * parser's and the checks' temporaries stay off the program's frame, on
 * the chain down to bind6_claim (the verifier allows 512 bytes in all).
 */
static __noinline int nat6_guest_check(kvx_ctx_t *ctx, struct kvx_pkt6 *p6, struct nat6_rewrite *rw)
{
	__u8 mac[8] __attribute__((aligned(8))) = {};
	const struct kvx_cfg *cfg = cfg_get();
	struct ethhdr *eth;
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	enum parse_result pr;
	int rc;

	if (!p6 || !rw)
		return KVX_R_DROP_MALFORMED;
	ctx_pull_len(ctx, KVX_PULL6_LEN);
	if (!cfg || !cfg6 || cfg6->mode != KVX_V6_NAT66)
		return KVX_R_PASS_NOT_IP;
	pr = parse_ipv6(ctx, p6);
	if (pr == PARSE_NOT_IPV6)
		return KVX_R_PASS_NOT_IP;
	if (pr == PARSE_BAD_IP)
		return KVX_R_DROP_MALFORMED;
	/* A DAD probe (from ::, to a solicited-node group, RFC 4862 5.4.2)
	 * claims its target. */
	if (pr == PARSE_OK && p6->p.proto == KVX_IPPROTO_ICMPV6 && p6->p.l4_ok &&
	    p6->p.icmp_type == ICMPV6_NEIGH_SOL && addr6_is_zero(p6->saddr) &&
	    addr6_is_mcast(p6->daddr))
		return KVX_NAT6_DAD;
	/* By address first: a link-local packet with a chain we do not walk
	 * is still the host's (it never leaves the link). */
	if (pkt6_is_host_local(p6))
		return nat6_guest_local(ctx, p6) ? KVX_R_DROP_SPOOF_MAC : KVX_R_PASS_ND;
	if (pr == PARSE_EXTHDR)
		return KVX_R_DROP_EXTHDR;
	/* Neighbour discovery between global addresses (NUD of the gateway's
	 * address) is to a local destination (below); an ND or MLD type to
	 * anywhere else is no ND at all, and passed up the host would route
	 * it out untranslated (with IPv6 forwarding on): it meets the
	 * anti-spoofing check and then DROP_ICMP_TYPE like any ICMPv6 type
	 * other than an echo request. */
	if (!prefix6_has(cfg6->subnet, cfg6->subnet_len, p6->saddr))
		return KVX_R_DROP_SPOOFED;
	if (prefix6_has(cfg6->subnet, cfg6->subnet_len, p6->daddr))
		return nat6_guest_local(ctx, p6) ? KVX_R_DROP_SPOOF_MAC : KVX_R_PASS_LOCAL;
	if (!ctx_frame_for_host(ctx))
		return KVX_R_PASS_OTHERHOST;
	/* Everything below may bind or use the source address's state (a
	 * flow, a binding, a 1:1 address, a hairpin, a fragment entry) or
	 * answer it (Time Exceeded, Packet Too Big: their budget is per
	 * source): the frame's MAC must own it (owner6.h), as
	 * guest_owner_check for IPv4.  nd_owner reads the MAC as 8 bytes. */
	eth = ctx_data(ctx);
	if ((void *)(eth + 1) > ctx_data_end(ctx))
		return KVX_R_DROP_MALFORMED;
	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	rc = nd_owner(p6->saddr, mac, ctx_ifindex(ctx), KVX_OWN_NAT66);
	if (rc != KVX_CONTINUE)
		return rc;
	/* To a mapped address or port: back to a guest (kvx_br6_hairpin). */
	if (!addr6_is_zero(cfg6->uplink_addr) && !(p6->flags & KVX_PKT6_F_UDP_NO_CSUM) &&
	    nat6_hairpin_target(p6))
		return KVX_HAIRPIN6;
	if (addr6_eq(p6->daddr, cfg6->uplink_addr))
		return KVX_R_PASS_LOCAL;

	rc = guest6_route_out(ctx, cfg, p6, rw);
	if (rc != KVX_CONTINUE)
		return rc;
	if (addr6_is_zero(cfg6->uplink_addr))
		return KVX_R_DROP_NO_UPLINK_ADDR;
	/* Other protocols only through a 1:1 mapping (nat6_from_guest). */
	if (!proto6_has_ports(p6->p.proto) && !proto6_address_only(p6->p.proto))
		return KVX_R_DROP_PROTO_UNTRANSLATED;
	addr6_copy(rw->addr, cfg6->uplink_addr);
	/* A later fragment goes by its first (frag6_find). */
	if (pkt_is_later_fragment(&p6->p))
		return KVX_FRAG6_LATER;
	if (proto6_has_ports(p6->p.proto) && !p6->p.l4_ok)
		return KVX_R_DROP_MALFORMED;
	if (p6->flags & KVX_PKT6_F_UDP_NO_CSUM)
		return KVX_R_DROP_UDP_NO_CSUM;
	/* Errors about the guest's inbound flows are translated by their
	 * quote; echo requests and replies go as flows (a reply leaves
	 * through the flow of the request it answers, or a 1:1 mapping:
	 * nat6_from_guest). */
	if (p6->p.proto == KVX_IPPROTO_ICMPV6 && icmp6_is_error(p6->p.icmp_type))
		/* An error fits the minimum MTU (RFC 4443 2.4 c): never
		 * fragmented by a sender that follows the RFC. */
		return pkt_is_fragment(&p6->p) ? KVX_R_DROP_FRAGMENT : KVX_ICMP6_ERR;
	if (p6->p.proto == KVX_IPPROTO_ICMPV6 && p6->p.icmp_type != ICMPV6_ECHO_REQUEST &&
	    p6->p.icmp_type != ICMPV6_ECHO_REPLY)
		return KVX_R_DROP_ICMP_TYPE;
	pkt_tcp_options(ctx, &p6->p);
	return KVX_CONTINUE;
}

/*
 * The guest an IPv6 packet to a guest belongs to, for its counters
 * (stats.h): the MAC its flow, binding or fragment entry delivers to, so
 * that its IPv6 counts in one slot with its IPv4 (kvx_guest_slot of the
 * MAC).  An entry without a MAC (a port forward to a guest that has not
 * sent yet) names the address instead, folded to the 32 bits gstats_set
 * takes; the loader folds it the same way (guest_stats.cpp).  A guest's
 * own frames are charged to their source MAC (gstats_set with address 0).
 */
static __always_inline void gstats6_set_in(const struct kvx_cfg *cfg, const __u8 *mac,
					   const __be32 *addr)
{
	gstats_set(mac, addr[0] ^ addr[1] ^ addr[2] ^ addr[3], cfg->guest_seed, KVX_GCUR_F_IN);
}

/* The exit of a guest's packet a router answers: counted under its reason,
 * answered from the bridge's link-local address (kvx_cfg6.gw_addr; none:
 * no answer). */
static __noinline int verdict_guest6(kvx_ctx_t *ctx, const struct kvx_pkt6 *p6, __u32 r, __u32 tcm)
{
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	int rc = verdict(r, ctx_len(ctx)), sent;

	if (!cfg6)
		return rc;
	sent = icmp6_reply(ctx, p6, tcm, cfg6->gw_addr, 0);
	return sent < 0 ? rc : sent;
}

/*
 * The exit of a LAN packet to a guest that a router answers: its hop limit
 * spent (Time Exceeded), too big for the bridge (Packet Too Big with the
 * bridge's MTU: an IPv6 router never fragments, and without it the sender's
 * path MTU discovery stalls).  Counted under its reason, answered from the
 * uplink's address as IPv4's verdict_uplink, and only for a frame sent to
 * the uplink's own MAC: not another host's unicast that a promiscuous
 * uplink sees, which a LAN host could use to make us answer in its name.
 * NAT66 and relay alike.  A global function, verified once: static,
 * icmp6_reply's states in each caller's context took kvx_up6 past a
 * million verified instructions.
 */
__noinline int verdict_uplink6(kvx_ctx_t *ctx, const struct kvx_pkt6 *p6, __u32 r)
{
	const struct kvx_cfg *cfg = cfg_get();
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	struct ethhdr *eth = ctx_data(ctx);
	int rc = verdict(r, ctx_len(ctx)), sent;
	__u32 mtu = 0;

	if (!cfg || !cfg6 || !p6 || (void *)(eth + 1) > ctx_data_end(ctx) ||
	    !mac_eq(eth->h_dest, cfg->uplink_mac) ||
	    (r != KVX_R_DROP_TTL_IN && r != KVX_R_DROP_TOO_BIG_IN))
		return rc;
	/* The bridge's MTU (the helper reports it whatever the length). */
	if (r == KVX_R_DROP_TOO_BIG_IN)
		ctx_exceeds_mtu(ctx, cfg->bridge_ifindex, 0, &mtu);
	sent = icmp6_reply(ctx, p6,
			   r == KVX_R_DROP_TTL_IN ? KVX_ICMP_TCM(ICMPV6_TIME_EXCEED, 0, 0) :
						    KVX_ICMP_TCM(ICMPV6_PKT_TOOBIG, 0, mtu),
			   cfg6->uplink_addr, 1);
	return sent < 0 ? rc : sent;
}

/*
 * Bridge: a guest's own ICMPv6 error about an inbound flow (its closed UDP
 * port answered to a remote that reached it through an --eif binding, say)
 * leaves from the flow's external endpoint (ct6_related_out); routed by
 * nat6_guest_check into rw.  Without a flow: dropped and counted, never
 * passed (the host would route it out with the guest's source).  Not
 * inlined: the quote stays off the program's frame.
 */
static __noinline int nat6_icmp_error_out(kvx_ctx_t *ctx, const struct kvx_pkt6 *p6,
					  struct nat6_rewrite *rw, __u32 len)
{
	struct icmp6_quote q = {};
	struct ethhdr *eth;
	__u8 macs[8] __attribute__((aligned(8))); /* mac_eq: word loads */
	int r;

	if (!p6 || !rw)
		return verdict(KVX_R_DROP_MALFORMED, len);
	eth = ctx_data(ctx);
	if ((void *)(eth + 1) > ctx_data_end(ctx))
		return verdict(KVX_R_DROP_MALFORMED, len);
	__builtin_memcpy(macs, eth->h_source, ETH_ALEN);
	if (icmp6_parse_quote(ctx, p6, &q))
		return verdict(KVX_R_DROP_ICMP_TYPE, len);
	r = ct6_related_out(p6, &q, macs, rw->addr, &rw->port);
	if (r != KVX_CONTINUE)
		return verdict(r, len);
	rw->src = 1;
	if (icmp6_err_rewrite(ctx, &q, rw))
		return verdict(KVX_R_DROP_MALFORMED, len);
	stats_count(KVX_R_XLATE_RELATED_OUT, len);
	return redirect6(rw, rw->ifindex, rw->nh);
}

/*
 * Bridge: a guest's later fragment, routed by nat6_guest_check into rw,
 * leaves from the address its first fragment left from; one ahead of its
 * first goes to the park (frag_park).  Not inlined, as the error paths.
 */
static __noinline int nat6_frag_out(kvx_ctx_t *ctx, const struct kvx_pkt6 *p6,
				    struct nat6_rewrite *rw, __u32 len)
{
	__u8 mac[8] __attribute__((aligned(8))); /* mac_eq: word loads */
	struct ethhdr *eth;
	int r;

	if (!p6 || !rw)
		return verdict(KVX_R_DROP_MALFORMED, len);
	eth = ctx_data(ctx);
	if ((void *)(eth + 1) > ctx_data_end(ctx))
		return verdict(KVX_R_DROP_MALFORMED, len);
	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	r = frag6_find(p6, KVX_BIND_OUT, mac, rw);
	/* Its first fragment is yet to come (RFC 4787 REQ-14, as IPv4's):
	 * a copy to the daemon's park, the fragment itself dropped. */
	if (r == -1)
		return frag_park(ctx, &p6->p, KVX_BIND_OUT, len, mac);
	if (r)
		return verdict(KVX_R_DROP_SPOOF_MAC, len);
	if (nat6_rewrite(ctx, p6, rw))
		return verdict(KVX_R_DROP_MALFORMED, len);
	stats_count(KVX_R_XLATE_OUT, len);
	return redirect6(rw, rw->ifindex, rw->nh);
}

/*
 * Bridge: a guest's DAD probe for an address of the prefix claims it for
 * the guest's MAC (nd_owner), and goes on to the host as any ND message
 * (the bridge took it to the other guests: one that has the address
 * defends it itself).  One for the address of another guest that is not
 * idle (it may have taken it by a frame without configuring it, so never
 * defends it) is answered from the bridge, so that the prober's DAD fails
 * and it picks another instead of one whose every frame is dropped.  The
 * host's own addresses the host defends.
 */
static __noinline int nat6_guest_dad(kvx_ctx_t *ctx, const struct kvx_pkt6 *p6, __u32 len)
{
	__u8 mac[8] __attribute__((aligned(8))) = {};
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	__be32 target[4];
	struct ethhdr *eth;
	int r;

	if (!p6 || !cfg6 || !nd_target(ctx, p6, target) ||
	    !prefix6_has(cfg6->subnet, cfg6->subnet_len, target))
		return verdict(KVX_R_PASS_ND, len);
	eth = ctx_data(ctx);
	if ((void *)(eth + 1) > ctx_data_end(ctx))
		return verdict(KVX_R_PASS_ND, len);
	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	r = nd_owner(target, mac, ctx_ifindex(ctx), KVX_OWN_PROBE | KVX_OWN_NAT66);
	if (r != KVX_R_DROP_ND_DUPLICATE || mac_is_zero(cfg6->bridge_mac))
		return verdict(KVX_R_PASS_ND, len);
	r = nd_answer(ctx, cfg6->bridge_mac, len, 0, 0);
	return r < 0 ? verdict(KVX_R_PASS_ND, len) : r;
}

/*
 * guest -> outside: the flow of a packet checked and routed into rw, and
 * its binding, made when new; KVX_CONTINUE with rw's external endpoint,
 * else the reason to drop it under.  Inlined into the programs of both
 * paths (TC's kvx_br6, XDP's kvx_xdp_port6): the calls below each start
 * their chain of frames from the program's.
 */
static __always_inline int nat6_flow_out(const struct kvx_cfg *cfg, const struct kvx_pkt6 *p6,
					 const __u8 *macs, __u64 now, struct nat6_rewrite *rw)
{
	int r = ct6_egress(p6, macs, now, rw);

	if (r != KVX_NO_MAPPING)
		return r;
	/* A static mapping first: a guest endpoint with a port forward (or
	 * an address with a 1:1 mapping) leaves from its external one. */
	r = bind6_static(p6, macs, now, rw);
	/* An echo reply leaves only through its request's flow or a 1:1
	 * mapping, a protocol without ports only through a 1:1 mapping. */
	if (r == KVX_NO_MAPPING && p6->p.proto == KVX_IPPROTO_ICMPV6 &&
	    p6->p.icmp_type != ICMPV6_ECHO_REQUEST)
		r = KVX_R_DROP_ICMP_TYPE;
	if (r == KVX_NO_MAPPING && !proto6_has_ports(p6->p.proto))
		r = KVX_R_DROP_PROTO_UNTRANSLATED;
	if (r == KVX_NO_MAPPING) {
		r = bind6_reuse(p6, macs, now, &rw->port);
		if (r == KVX_NO_MAPPING)
			r = bind6_create(cfg, p6, (const struct nat_macs *)macs, now, &rw->port);
	}
	if (r == KVX_CONTINUE)
		r = ct6_commit_out(p6, rw, now);
	if (r == KVX_NO_MAPPING)
		r = ct6_create(p6, CT_DIR_OUT, rw);
	if (r == KVX_CT_RACE)
		r = ct6_race(p6, CT_DIR_OUT, rw);
	return r;
}

/*
 * outside -> guest: the flow of a packet to the uplink's address or a
 * mapped one, made when new (a static mapping's, EIF); KVX_CONTINUE with
 * the guest endpoint in guest and rw (address, port, static flags),
 * KVX_R_PASS_HOST when no binding or flow of one wants it, else the reason
 * to drop it under.  Inlined into each program, as nat6_flow_out.
 */
static __always_inline int nat6_flow_in(const struct kvx_cfg *cfg, const struct kvx_pkt6 *p6,
					__u64 now, struct nat_endpoint *guest,
					struct nat6_rewrite *rw)
{
	int r = ct6_ingress(cfg, p6, now, guest, rw->addr);

	rw->port = guest->port;
	rw->ct_flags = guest->flags;
	if (r == KVX_NO_MAPPING)
		r = ct6_create(p6, CT_DIR_IN, rw);
	if (r == KVX_CT_RACE)
		r = ct6_race(p6, CT_DIR_IN, rw);
	return r;
}

/* guest -> outside. */
static __always_inline int nat6_from_guest(kvx_ctx_t *ctx)
{
	__u8 macs[16] __attribute__((aligned(8))); /* see KVX_GW_MAC_OFF */
	struct nat6_rewrite rw = {.src = 1};
	const struct kvx_cfg *cfg;
	__u32 len = ctx_len(ctx);
	struct kvx_pkt6 p6;
	struct ethhdr *eth;
	__u64 now;
	int r;

	r = nat6_guest_check(ctx, &p6, &rw);
	cfg = cfg_get();
	eth = ctx_data(ctx);
	if (!cfg || (void *)(eth + 1) > ctx_data_end(ctx))
		return verdict(KVX_R_DROP_MALFORMED, len);
	__builtin_memcpy(macs, eth->h_source, ETH_ALEN);
	__builtin_memcpy(macs + KVX_GW_MAC_OFF, eth->h_dest, ETH_ALEN);
	/* The guest's from here on, translated or dropped (the error and
	 * fragment paths below too, and the hairpin's program, which the mark
	 * survives): the frame's MAC, as IPv4's (nat4_from_guest).  Passed
	 * verdicts are not counted for it (gstats_class). */
	if (r == KVX_NAT6_DAD)
		return nat6_guest_dad(ctx, &p6, len);
	if (r != KVX_R_DROP_MALFORMED)
		gstats_set(macs, 0, cfg->guest_seed, 0);
	if (r == KVX_R_DROP_HOP_LIMIT || r == KVX_R_DROP_TOO_BIG)
		return verdict_guest6(ctx, &p6, r,
				      r == KVX_R_DROP_HOP_LIMIT ?
					      KVX_ICMP_TCM(ICMPV6_TIME_EXCEED, 0, 0) :
					      KVX_ICMP_TCM(ICMPV6_PKT_TOOBIG, 0, rw.mtu));
	if (r == KVX_ICMP6_ERR)
		return nat6_icmp_error_out(ctx, &p6, &rw, len);
	if (r == KVX_FRAG6_LATER)
		return nat6_frag_out(ctx, &p6, &rw, len);
	if (r == KVX_HAIRPIN6)
		return KVX_TC_HAIRPIN6;
	if (r != KVX_CONTINUE)
		return verdict(r, len);
	now = clock_now_ns();
	r = nat6_flow_out(cfg, &p6, macs, now, &rw);
	if (r != KVX_CONTINUE)
		return verdict(r, len);
	if (pkt_is_fragment(&p6.p))
		frag6_remember(&p6, KVX_BIND_OUT, rw.addr, macs, rw.macs ? rw.dmac : NULL);
	maybe_clamp_mss6(ctx, cfg, &p6.p);
	if (nat6_rewrite(ctx, &p6, &rw))
		return verdict(KVX_R_DROP_MALFORMED, len);
	stats_count(KVX_R_XLATE_OUT, len);
	return redirect6(&rw, rw.ifindex, rw.nh);
}

/*
 * kvx_br6_hairpin: the frame nat6_guest_check found to go back to a guest,
 * parsed again (its own program) and checked as before.  KVX_ICMP6_ERR: an
 * ICMPv6 error (nat6_icmp_error_hairpin).
 */
static __noinline int nat6_hairpin_check(kvx_ctx_t *ctx, struct kvx_pkt6 *p6,
					 struct nat6_rewrite *out)
{
	const struct kvx_cfg6 *cfg6 = cfg6_get();

	if (!p6 || !out)
		return KVX_R_DROP_MALFORMED;
	ctx_pull_len(ctx, KVX_PULL6_LEN);
	if (!cfg6 || cfg6->mode != KVX_V6_NAT66 || parse_ipv6(ctx, p6) != PARSE_OK)
		return KVX_R_DROP_MALFORMED;
	if (!prefix6_has(cfg6->subnet, cfg6->subnet_len, p6->saddr))
		return KVX_R_DROP_SPOOFED;
	/* A `map del` since: the uplink's address is the host's, a literal
	 * one the LAN's (never passed up: it would be routed out with the
	 * guest's source). */
	if (!nat6_hairpin_target(p6))
		return addr6_eq(p6->daddr, cfg6->uplink_addr) ? KVX_R_PASS_LOCAL :
								KVX_R_DROP_BROKEN_PAIR;
	/* Its hop limit is ct6_related_in's to check, as for errors from
	 * the uplink. */
	if (p6->p.proto == KVX_IPPROTO_ICMPV6 && icmp6_is_error(p6->p.icmp_type))
		return KVX_ICMP6_ERR;
	if (p6->p.ttl <= 1)
		return KVX_R_DROP_HOP_LIMIT;
	if (addr6_is_zero(cfg6->uplink_addr))
		return KVX_R_DROP_NO_UPLINK_ADDR;
	/* A dynamic binding's external address (bind6_create). */
	addr6_copy(out->addr, cfg6->uplink_addr);
	pkt_tcp_options(ctx, &p6->p);
	return KVX_CONTINUE;
}

/*
 * Hairpin, the last step: the source rewritten to the sender's external
 * endpoint (p6's source by now), the destination to in's guest endpoint,
 * one hop; to the target guest on the bridge, from the bridge's MAC as the
 * sender addressed it.  Not inlined: the source's rewrite stays off the
 * program's frame (its chains are at 512 bytes).
 */
static __noinline int nat6_hairpin_out(kvx_ctx_t *ctx, const struct kvx_pkt6 *p6,
				       struct nat6_rewrite *in, const __u8 *guest_mac, __u32 len)
{
	struct nat6_rewrite src = {.src = 1};
	const struct kvx_cfg *cfg = cfg_get();
	struct ethhdr *eth = ctx_data(ctx);

	if (!p6 || !in || !guest_mac || !cfg || (void *)(eth + 1) > ctx_data_end(ctx))
		return verdict(KVX_R_DROP_MALFORMED, len);
	addr6_copy(src.addr, p6->saddr);
	src.port = p6->p.sport;
	in->src = 0;
	in->keep_hl = 1;
	in->macs = 0;
	if (!mac_is_zero(guest_mac)) {
		in->macs = 1;
		__builtin_memcpy(in->smac, eth->h_dest, ETH_ALEN);
		__builtin_memcpy(in->dmac, guest_mac, ETH_ALEN);
	}
	if (nat6_rewrite(ctx, p6, &src) || nat6_rewrite(ctx, p6, in))
		return verdict(KVX_R_DROP_MALFORMED, len);
	stats_count(KVX_R_XLATE_HAIRPIN, len);
	/* Out of the sender (above), into the target, as IPv4's hairpin. */
	gstats6_set_in(cfg, guest_mac, in->addr);
	gstats_take(KVX_R_XLATE_HAIRPIN, len);
	return redirect6(in, cfg->bridge_ifindex, in->addr);
}

/*
 * Hairpin of an ICMPv6 error (RFC 5508 REQ-7, as IPv4's
 * nat4_icmp_error_hairpin): guest B's error about a packet guest A sent it
 * through a mapped address or port (quoted: A's external endpoint -> B) is
 * translated as if it had gone out and come back: out as the error of B's
 * external endpoint (ct6_related_out), in to A (ct6_related_in, about A's
 * flow to that endpoint); one hop, every checksum kept valid by the two
 * rewrites.  Not about a hairpinned flow: to the uplink's address it is
 * the host's, as before (its own flows to a guest get errors too); to a
 * mapped address it is nobody's (only a hairpin reaches a guest from
 * there: the LAN cannot send from it) and dropped, never routed out to our
 * own address.  rw serves both rewrites in turn, the quote keeps what the
 * other needs: a second rewrite struct here took kvx_br6_hairpin's chain
 * past 6.1's 512 bytes of stack.  Not inlined: the quote stays off the
 * program's frame.
 */
static __noinline int nat6_icmp_error_hairpin(kvx_ctx_t *ctx, const struct kvx_pkt6 *p6,
					      struct nat6_rewrite *rw, const __u8 *macs,
					      __u32 len)
{
	const struct kvx_cfg *cfg = cfg_get();
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	struct icmp6_quote q = {};
	__u8 to_mac;
	int r;

	if (!p6 || !rw || !macs || !cfg || !cfg6)
		return verdict(KVX_R_DROP_MALFORMED, len);
	r = icmp6_parse_quote(ctx, p6, &q) ? KVX_R_DROP_ICMP_TYPE :
					      ct6_related_out(p6, &q, macs, rw->addr, &rw->port);
	if (r == KVX_CONTINUE) {
		/* Seen from A's side, the quoted packet went to B's external
		 * endpoint. */
		addr6_copy(q.daddr, rw->addr);
		q.dport = rw->port;
		__builtin_memset(rw, 0, sizeof(*rw));
		r = ct6_related_in(p6, &q, rw);
		if (r == KVX_R_PASS_HOST)
			r = KVX_R_DROP_ICMP_TYPE;
	}
	if (r != KVX_CONTINUE)
		return verdict(r != KVX_R_DROP_TTL_IN && addr6_eq(p6->daddr, cfg6->uplink_addr) ?
				       KVX_R_PASS_LOCAL :
				       r,
			       len);
	/* In to A (hop limit - 1, A's MACs), then out of B's external
	 * endpoint (q.daddr, q.dport), the hop limit kept; A's address goes
	 * into the quote's source, which the rewrites do not read. */
	if (icmp6_err_rewrite(ctx, &q, rw))
		return verdict(KVX_R_DROP_MALFORMED, len);
	addr6_copy(q.saddr, rw->addr);
	to_mac = rw->macs;
	addr6_copy(rw->addr, q.daddr);
	/* A quoted echo has one identifier, which the first rewrite made A's
	 * own (A sent the request): the second, of the quote's destination
	 * side, writes that one again, not the identifier B saw. */
	if (q.proto != KVX_IPPROTO_ICMPV6)
		rw->port = q.dport;
	rw->src = 1;
	rw->macs = 0;
	rw->keep_hl = 1;
	if (icmp6_err_rewrite(ctx, &q, rw))
		return verdict(KVX_R_DROP_MALFORMED, len);
	addr6_copy(rw->addr, q.saddr);
	rw->macs = to_mac;
	stats_count(KVX_R_XLATE_HAIRPIN, len);
	/* Out of B (named by nat6_hairpin), into A, as any hairpin. */
	gstats6_set_in(cfg, rw->dmac, rw->addr);
	gstats_take(KVX_R_XLATE_HAIRPIN, len);
	return redirect6(rw, cfg->bridge_ifindex, rw->addr);
}

/*
 * Hairpin, after nat6_hairpin_check: the sender's external endpoint (its
 * flow and binding, as any packet of it out: ct6_egress and the binding
 * steps of nat6_from_guest), then the packet as it would come back in from
 * that endpoint (ct6_ingress and its flow towards the target guest, as
 * nat6_from_uplink; rw is reused for the target), then nat6_hairpin_out.
 * Its own program (kvx_br6_hairpin, tail-called by kvx_br6): both halves
 * on kvx_br6's chains would not fit 512 bytes of stack.
 */
static __always_inline int nat6_hairpin(kvx_ctx_t *ctx)
{
	__u8 macs[16] __attribute__((aligned(8))); /* see KVX_GW_MAC_OFF */
	struct nat6_rewrite rw = {.src = 1};
	struct nat_endpoint guest = {};
	const struct kvx_cfg *cfg;
	__u32 len = ctx_len(ctx);
	struct kvx_pkt6 p6;
	struct ethhdr *eth;
	__u64 now;
	int r;

	r = nat6_hairpin_check(ctx, &p6, &rw);
	if (r != KVX_CONTINUE && r != KVX_ICMP6_ERR)
		return verdict(r, len);
	cfg = cfg_get();
	eth = ctx_data(ctx);
	if (!cfg || (void *)(eth + 1) > ctx_data_end(ctx))
		return verdict(KVX_R_DROP_MALFORMED, len);
	__builtin_memcpy(macs, eth->h_source, ETH_ALEN);
	__builtin_memcpy(macs + KVX_GW_MAC_OFF, eth->h_dest, ETH_ALEN);
	/* The sender's (kvx_br6 named it already; named again for a run of
	 * this program alone). */
	gstats_set(macs, 0, cfg->guest_seed, 0);
	if (r == KVX_ICMP6_ERR)
		return nat6_icmp_error_hairpin(ctx, &p6, &rw, macs, len);
	now = clock_now_ns();
	r = ct6_egress(&p6, macs, now, &rw);
	if (r == KVX_NO_MAPPING) {
		r = bind6_static(&p6, macs, now, &rw);
		if (r == KVX_NO_MAPPING && p6.p.proto == KVX_IPPROTO_ICMPV6 &&
		    p6.p.icmp_type != ICMPV6_ECHO_REQUEST)
			r = KVX_R_DROP_ICMP_TYPE;
		if (r == KVX_NO_MAPPING) {
			r = bind6_reuse(&p6, macs, now, &rw.port);
			if (r == KVX_NO_MAPPING)
				r = bind6_create(cfg, &p6, (const struct nat_macs *)macs, now,
						 &rw.port);
		}
		if (r == KVX_CONTINUE)
			r = ct6_commit_out(&p6, &rw, now);
		if (r == KVX_NO_MAPPING)
			r = ct6_create(&p6, CT_DIR_OUT, &rw);
		if (r == KVX_CT_RACE)
			r = ct6_race(&p6, CT_DIR_OUT, &rw);
	}
	if (r != KVX_CONTINUE)
		return verdict(r, len);
	/* As it comes back in, from the sender's external endpoint. */
	addr6_copy(p6.saddr, rw.addr);
	p6.p.sport = rw.port;
	if (p6.p.proto == KVX_IPPROTO_ICMPV6)
		p6.p.dport = rw.port;
	r = nat6_flow_in(cfg, &p6, now, &guest, &rw);
	/* Not the target's after all (a dynamic binding none of whose flows
	 * wants it): the uplink's address is the host's, as any other port
	 * of it; nothing was rewritten. */
	if (r == KVX_R_PASS_HOST)
		r = KVX_R_PASS_LOCAL;
	if (r != KVX_CONTINUE)
		return verdict(r, len);
	return nat6_hairpin_out(ctx, &p6, &rw, guest.guest_mac, len);
}

/* Sources no router forwards: the guests' prefix, our own addresses (the
 * uplink's, an announced mapped one: a LAN host sending from it would have
 * a guest's answer hairpinned into the address's guest), multicast,
 * unspecified and loopback (RFC 4291 2.5.2, 2.5.3). */
static __always_inline int inbound6_martian(const struct kvx_cfg6 *cfg6, const struct kvx_pkt6 *p6)
{
	return prefix6_has(cfg6->subnet, cfg6->subnet_len, p6->saddr) ||
	       addr6_eq(p6->saddr, cfg6->uplink_addr) || addr6_is_mcast(p6->saddr) ||
	       (!p6->saddr[0] && !p6->saddr[1] && !p6->saddr[2] &&
		!(p6->saddr[3] & ~bpf_htonl(1))) ||
	       extaddr6_announced(p6->saddr);
}

/*
 * A frame from the uplink up to the binding lookup: parsed into p6 and
 * classified.  KVX_CONTINUE: to the uplink address, a protocol a binding
 * may own.
 */
static __noinline int nat6_uplink_check(kvx_ctx_t *ctx, struct kvx_pkt6 *p6)
{
	const struct kvx_cfg *cfg = cfg_get();
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	enum parse_result pr;

	if (!p6)
		return KVX_R_PASS_HOST;
	ctx_pull_len(ctx, KVX_PULL6_LEN);
	if (!cfg || !cfg6 || cfg6->mode != KVX_V6_NAT66)
		return KVX_R_PASS_NOT_IP;
	pr = parse_ipv6(ctx, p6);
	if (pr == PARSE_NOT_IPV6)
		return KVX_R_PASS_NOT_IP;
	if (pr == PARSE_BAD_IP)
		return KVX_R_PASS_HOST;
	/* Neighbour Solicitations for an announced mapped address are ours
	 * to answer (nat6_uplink_ns); the others stay the host's. */
	if (pr == PARSE_OK && p6->p.proto == KVX_IPPROTO_ICMPV6 && p6->p.l4_ok &&
	    p6->p.icmp_type == ICMPV6_NEIGH_SOL)
		return KVX_ND6_NS;
	if (pkt6_is_host_local(p6))
		return KVX_R_PASS_ND;
	/* Nobody on the LAN routes into the guest prefix through us. */
	if (prefix6_has(cfg6->subnet, cfg6->subnet_len, p6->daddr))
		return KVX_R_DROP_TO_SUBNET;
	/* A chain we do not walk (ESP, AH: the host's own IPsec), ND, other
	 * protocols (but at 1:1 addresses), and anything not to the address
	 * guests leave from or a mapped one: the host's, as they would be
	 * without kvmxdp.  A later fragment has no L4 header: it goes by its
	 * first (frag6_find). */
	if (pr == PARSE_EXTHDR || icmp6_is_nd(&p6->p))
		return KVX_R_PASS_HOST;
	if (proto6_has_ports(p6->p.proto) ? !p6->p.l4_ok && !pkt_is_later_fragment(&p6->p) :
					    !proto6_address_only(p6->p.proto))
		return KVX_R_PASS_HOST;
	/* A later fragment has no ports to find a port forward by: it goes by
	 * its first fragment's entry whatever its destination (nat6_frag_in;
	 * none: the host's). */
	if ((addr6_is_zero(cfg6->uplink_addr) || !addr6_eq(p6->daddr, cfg6->uplink_addr) ||
	     !proto6_has_ports(p6->p.proto)) &&
	    !pkt_is_later_fragment(&p6->p) && !bind6_is_mapped(p6))
		return KVX_R_PASS_HOST;
	if (inbound6_martian(cfg6, p6))
		return KVX_R_DROP_MARTIAN_IN;
	if (pkt_is_later_fragment(&p6->p))
		return KVX_FRAG6_LATER;
	pkt_tcp_options(ctx, &p6->p);
	return KVX_CONTINUE;
}

/*
 * Uplink: an ICMPv6 error about a guest's flow (a router's Time Exceeded
 * for tracepath, a Packet Too Big for path-MTU discovery, a remote's Port
 * Unreachable) goes to that guest, translated (ct6_related_in); anything
 * else is the host's, whose own flows get errors too.  The MTU of a
 * Packet Too Big passes as is: the guest's path to the remote has it, and
 * an error is no larger than the IPv6 minimum MTU (RFC 4443 2.4 c), which
 * the bridge takes.  Not inlined: the quote stays off the program's frame
 * (whose chain down through ct6_related_in is within 6.1's 512 bytes only
 * as long as this frame holds the quote and rw alone).
 */
static __noinline int nat6_icmp_error_in(kvx_ctx_t *ctx, const struct kvx_cfg *cfg,
					 const struct kvx_pkt6 *p6, __u32 len)
{
	struct nat6_rewrite rw = {};
	struct icmp6_quote q = {};
	int r;

	if (!cfg || !p6 || icmp6_parse_quote(ctx, p6, &q))
		return verdict(KVX_R_PASS_HOST, len);
	r = ct6_related_in(p6, &q, &rw);
	if (r != KVX_CONTINUE)
		return verdict(r, len);
	gstats6_set_in(cfg, rw.dmac, rw.addr);
	if (icmp6_err_rewrite(ctx, &q, &rw))
		return verdict(KVX_R_DROP_MALFORMED, len);
	stats_count(KVX_R_XLATE_RELATED_IN, len);
	return redirect6(&rw, cfg->bridge_ifindex, rw.addr);
}

/*
 * Uplink: a later fragment of a datagram whose first fragment went to a
 * guest goes to that guest; one whose first went to the host goes there.
 * One ahead of its first, to an address a guest may be reached at (the
 * uplink's, by a protocol with ports; an announced mapped one), is copied
 * to the park and handed to the host too (it may be the host's own), as
 * IPv4's; to any other address it is the host's.  Not inlined, as the
 * error paths.  A drop to answer (its hop limit spent, too big for the
 * bridge) is returned as KVX_ANSWER_UPLINK6 + reason (above any TC verdict) for the caller to
 * answer (verdict_uplink6): called from here, its frame and icmp6_reply's
 * below this one's took kvx_up6's deepest chain past 6.1's 512 bytes.
 */
#define KVX_ANSWER_UPLINK6 0x10000
static __noinline int nat6_frag_in(kvx_ctx_t *ctx, const struct kvx_cfg *cfg,
				   const struct kvx_pkt6 *p6, __u32 len)
{
	const struct kvx_cfg6 *cfg6 = cfg6_get();
	__u8 none[8] __attribute__((aligned(8))) = {};
	struct nat6_rewrite rw = {};
	int r;

	if (!cfg || !cfg6 || !p6)
		return verdict(KVX_R_PASS_HOST, len);
	r = frag6_find(p6, KVX_BIND_IN, none, &rw);
	if (r == -1 && proto6_has_ports(p6->p.proto) && !addr6_is_zero(cfg6->uplink_addr) &&
	    addr6_eq(p6->daddr, cfg6->uplink_addr))
		return frag_park(ctx, &p6->p, KVX_BIND_IN, len, NULL);
	/* A mapped address is never the host's (nor on its interfaces): its
	 * copy is all that may reach a guest. */
	if (r == -1 && extaddr6_announced(p6->daddr))
		return frag_park(ctx, &p6->p, FRAG_PARK_IN_GUEST, len, NULL);
	if (r)
		return verdict(KVX_R_PASS_HOST, len);
	gstats6_set_in(cfg, rw.dmac, rw.addr);
	if (p6->p.ttl <= 1)
		return KVX_ANSWER_UPLINK6 + KVX_R_DROP_TTL_IN;
	if (ctx_exceeds_mtu(ctx, cfg->bridge_ifindex, pkt_seg_len(ctx, &p6->p), NULL))
		return KVX_ANSWER_UPLINK6 + KVX_R_DROP_TOO_BIG_IN;
	if (nat6_rewrite(ctx, p6, &rw))
		return verdict(KVX_R_DROP_MALFORMED, len);
	stats_count(KVX_R_XLATE_IN, len);
	return redirect6(&rw, cfg->bridge_ifindex, rw.addr);
}

/*
 * Uplink: a Neighbour Solicitation for an announced mapped address
 * (kvx_extaddr6 with KVX_EXT_F_ARP: the daemon's duplicate address
 * detection found it free) is answered with the uplink's MAC, as IPv4's
 * arp_answer answers ARP: a WiFi station can only receive frames to its
 * own MAC, and the address is never the host's.  A LAN host's duplicate
 * address detection for it is answered too (to all nodes: RFC 4862
 * 5.4.3 defends it).  Override set: the address is ours, not proxied
 * (RFC 4861 7.2.4).  A held address (probing, conflict) and everything
 * else are the host's.
 */
static __noinline int nat6_uplink_ns(kvx_ctx_t *ctx, const struct kvx_pkt6 *p6, __u32 len)
{
	const struct kvx_cfg *cfg = cfg_get();
	__be32 target[4];
	int r;

	if (!p6 || !cfg || mac_is_zero(cfg->uplink_mac) || !nd_target(ctx, p6, target) ||
	    !extaddr6_announced(target))
		return verdict(KVX_R_PASS_ND, len);
	r = nd_answer(ctx, cfg->uplink_mac, len, KVX_NA_F_OVERRIDE, 0);
	return r < 0 ? verdict(KVX_R_PASS_ND, len) : r;
}

/* outside -> guest. */
static __always_inline int nat6_from_uplink(kvx_ctx_t *ctx)
{
	struct nat_endpoint guest = {};
	struct nat6_rewrite rw = {};
	const struct kvx_cfg *cfg;
	__u32 len = ctx_len(ctx);
	struct kvx_pkt6 p6;
	__u64 now;
	int r;

	r = nat6_uplink_check(ctx, &p6);
	if (r == KVX_ND6_NS)
		return nat6_uplink_ns(ctx, &p6, len);
	if (r != KVX_CONTINUE && r != KVX_FRAG6_LATER)
		return verdict(r, len);
	cfg = cfg_get();
	if (!cfg)
		return verdict(KVX_R_PASS_HOST, len);
	if (r == KVX_FRAG6_LATER) {
		r = nat6_frag_in(ctx, cfg, &p6, len);
		return r >= KVX_ANSWER_UPLINK6 ? verdict_uplink6(ctx, &p6, r - KVX_ANSWER_UPLINK6) :
						 r;
	}
	if (p6.p.proto == KVX_IPPROTO_ICMPV6 && icmp6_is_error(p6.p.icmp_type)) {
		if (!pkt_is_fragment(&p6.p))
			return nat6_icmp_error_in(ctx, cfg, &p6, len);
		/* The host's, and so are its later fragments. */
		frag6_remember(&p6, KVX_BIND_IN, NULL, NULL, NULL);
		return verdict(KVX_R_PASS_HOST, len);
	}
	now = clock_now_ns();
	r = nat6_flow_in(cfg, &p6, now, &guest, &rw);
	if (r != KVX_CONTINUE) {
		/* No guest's: its later fragments go the way of the rest
		 * of the host's traffic, not to the park. */
		if (pkt_is_fragment(&p6.p))
			frag6_remember(&p6, KVX_BIND_IN, NULL, NULL, NULL);
		if (r == KVX_R_DROP_TTL_IN)
			return verdict_uplink6(ctx, &p6, r);
		return verdict(r, len);
	}
	gstats6_set_in(cfg, guest.guest_mac, rw.addr);
	/* A redirect skips the forwarding path's MTU test. */
	if (ctx_exceeds_mtu(ctx, cfg->bridge_ifindex, pkt_seg_len(ctx, &p6.p), NULL))
		return verdict_uplink6(ctx, &p6, KVX_R_DROP_TOO_BIG_IN);
	if (pkt_is_fragment(&p6.p))
		frag6_remember(&p6, KVX_BIND_IN, rw.addr, guest.guest_mac, guest.gw_mac);
	maybe_clamp_mss6(ctx, cfg, &p6.p);
	if (!mac_is_zero(guest.guest_mac)) {
		rw.macs = 1;
		__builtin_memcpy(rw.smac, guest.gw_mac, ETH_ALEN);
		__builtin_memcpy(rw.dmac, guest.guest_mac, ETH_ALEN);
	}
	if (nat6_rewrite(ctx, &p6, &rw))
		return verdict(KVX_R_DROP_MALFORMED, len);
	stats_count(KVX_R_XLATE_IN, len);
	return redirect6(&rw, cfg->bridge_ifindex, rw.addr);
}

#endif /* KVX_NAT6_H */
