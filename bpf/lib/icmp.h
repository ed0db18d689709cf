/* SPDX-License-Identifier: GPL-2.0 */
/*
 * RELATED ICMP errors (RFC 5508): destination unreachable (incl.
 * fragmentation needed, for path-MTU discovery), time exceeded (traceroute)
 * and parameter problem quote the header of the packet they are about.  They
 * are matched by that quoted header and translated together with it: outer
 * address, quoted address and port/identifier, and every checksum involved.
 */
#ifndef KVX_ICMP_H
#define KVX_ICMP_H

#include "ct.h"
#include "csum.h"
#include "stats.h"
#include "clock.h"

/* Outer Ethernet + IPv4 (with options) + ICMP + quoted IPv4 + 8 bytes. */
#define KVX_ICMP_ERR_PULL (ETH_HLEN + 60 + 8 + 60 + 8)

static __always_inline int icmp_is_error(__u8 type)
{
	return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED ||
	       type == ICMP_PARAMETERPROB;
}

/* The quoted packet of an ICMP error. */
struct icmp_quote {
	__u32 ip_off;  /* quoted IPv4 header, from the start of the frame */
	__u32 l4_off;  /* quoted L4 header */
	__be32 saddr;
	__be32 daddr;
	__be16 sport;  /* quoted ICMP echo: the identifier, in both */
	__be16 dport;
	__u8 proto;
	__u8 tcp_csum; /* the quote reaches the TCP checksum field */
};

static __always_inline int icmp_parse_quote(kvx_ctx_t *ctx, const struct kvx_pkt *p,
					    struct icmp_quote *q)
{
	void *data, *data_end;
	struct iphdr *iph;
	__u8 *l4;
	__u32 ip_off = p->l4_off + sizeof(struct icmphdr);

	ctx_pull_len(ctx, KVX_ICMP_ERR_PULL);
	data = ctx_data(ctx);
	data_end = ctx_data_end(ctx);
	/* Bounded for the verifier: the outer IHL is 5..15. */
	if (ip_off > ETH_HLEN + 60 + sizeof(struct icmphdr))
		return -1;
	iph = data + ip_off;
	if ((void *)(iph + 1) > data_end)
		return -1;
	/* Only the first fragment of the quoted packet carries its ports. */
	if (iph->version != 4 || iph->ihl < 5 || (bpf_ntohs(iph->frag_off) & KVX_IP_OFFSET))
		return -1;
	q->ip_off = ip_off;
	q->l4_off = ip_off + iph->ihl * 4;
	q->saddr = iph->saddr;
	q->daddr = iph->daddr;
	q->proto = iph->protocol;
	q->sport = 0;
	q->dport = 0;
	q->tcp_csum = 0;

	/* RFC 792: at least the first 8 bytes of the L4 header are quoted. */
	if (q->l4_off > ETH_HLEN + 60 + sizeof(struct icmphdr) + 60)
		return -1;
	l4 = data + q->l4_off;
	if ((void *)(l4 + 8) > data_end || q->l4_off + 8 > p->ip_end)
		return proto_has_ports(q->proto) ? -1 : 0;
	switch (q->proto) {
	case IPPROTO_TCP:
		q->tcp_csum = (void *)(l4 + 18) <= data_end && q->l4_off + 18 <= p->ip_end;
		/* fall through */
	case IPPROTO_UDP:
		__builtin_memcpy(&q->sport, l4, 2);
		__builtin_memcpy(&q->dport, l4 + 2, 2);
		break;
	case IPPROTO_ICMP:
		/* Errors are only about echo messages, never about errors. */
		if (l4[0] != ICMP_ECHO && l4[0] != ICMP_ECHOREPLY)
			return -1;
		__builtin_memcpy(&q->sport, l4 + 4, 2);
		q->dport = q->sport;
		break;
	default:
		break;
	}
	return 0;
}

/*
 * Rewrite an ICMP error in place.  Inbound (to a guest): outer destination
 * and quoted source become the guest's.  Outbound (from a guest): outer
 * source and quoted destination become the external endpoint.  Direct writes
 * with RFC 1624 updates: every checksum stays valid, so the sum over the
 * whole datagram is unchanged and a CHECKSUM_COMPLETE skb->csum stays right.
 */
#define ICMP_RW_OUT 1      /* outbound: the source side is rewritten */
#define ICMP_RW_KEEP_TTL 2 /* the second rewrite of a hairpinned error */
static __noinline int icmp_err_rewrite(kvx_ctx_t *ctx, const struct kvx_pkt *p,
				       const struct icmp_quote *q, int how,
				       const struct nat_endpoint *to)
{
	int outbound = how & ICMP_RW_OUT;
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	struct iphdr *ip = data + ETH_HLEN;
	__u32 l4_off = p->l4_off, qip_off = q->ip_off, ql4_off = q->l4_off;
	struct icmphdr *ih;
	struct iphdr *qip;
	__u8 *ql4;
	__be32 *addr, *qaddr, old;
	__be16 *qport = NULL, oldp;
	__sum16 *ql4sum = NULL, sum, oldsum;
	__u16 old_ttl;
	int pseudo = 1;
	__u32 qhl = ql4_off - qip_off; /* quoted IHL * 4 */

	if (l4_off < ETH_HLEN + 20 || l4_off > ETH_HLEN + 60 || qip_off != l4_off + 8 ||
	    qhl < 20 || qhl > 60)
		return -1;
	/* qip and ql4 come from ih with constant-bounded offsets: the 6.1
	 * verifier keeps no bounds from register-to-register comparisons
	 * (qip_off == l4_off + 8), so data + qip_off would get no range. */
	ih = data + l4_off;
	qip = (void *)(ih + 1);
	ql4 = (__u8 *)qip + qhl;
	if ((void *)(ip + 1) > data_end || (void *)(ih + 1) > data_end ||
	    (void *)(qip + 1) > data_end || (void *)(ql4 + 8) > data_end)
		return -1;

	if (!(how & ICMP_RW_KEEP_TTL)) {
		old_ttl = *(__u16 *)&ip->ttl;
		ip->ttl--;
		ip->check = csum16_update(ip->check, old_ttl, *(__u16 *)&ip->ttl);
	}
	addr = outbound ? &ip->saddr : &ip->daddr;
	old = *addr;
	*addr = to->addr;
	ip->check = csum32_update(ip->check, old, to->addr);

	/* The quoted header: address, its header checksum, and the ICMP
	 * checksum that covers both. */
	qaddr = outbound ? &qip->daddr : &qip->saddr;
	old = *qaddr;
	*qaddr = to->addr;
	oldsum = qip->check;
	qip->check = csum32_update(oldsum, old, to->addr);
	sum = csum32_update(ih->checksum, old, to->addr);
	sum = csum16_update(sum, oldsum, qip->check);

	switch (q->proto) {
	case IPPROTO_TCP:
		qport = (__be16 *)(ql4 + (outbound ? 2 : 0));
		if (q->tcp_csum && (void *)(ql4 + 18) <= data_end)
			ql4sum = (__sum16 *)(ql4 + 16);
		break;
	case IPPROTO_UDP:
		qport = (__be16 *)(ql4 + (outbound ? 2 : 0));
		/* A zero UDP checksum means "none" and stays so. */
		if (*(__sum16 *)(ql4 + 6))
			ql4sum = (__sum16 *)(ql4 + 6);
		break;
	case IPPROTO_ICMP:
		qport = (__be16 *)(ql4 + 4);
		ql4sum = (__sum16 *)(ql4 + 2);
		pseudo = 0;
		break;
	default:
		break;
	}
	if (qport) {
		oldp = *qport;
		*qport = to->port;
		sum = csum16_update(sum, oldp, to->port);
		if (ql4sum) {
			__sum16 l4old = *ql4sum, l4new = l4old;

			if (pseudo)
				l4new = csum32_update(l4new, old, to->addr);
			l4new = csum16_update(l4new, oldp, to->port);
			if (q->proto == IPPROTO_UDP && !l4new)
				l4new = 0xffff;
			*ql4sum = l4new;
			sum = csum16_update(sum, l4old, l4new);
		}
	}
	ih->checksum = sum;
	return 0;
}

/*
 * The guest endpoint of an inbound ICMP error: the quoted packet is one a
 * guest sent (from its external endpoint to a remote), so it is looked up
 * as that remote's answer would be.  Only errors about an existing flow are
 * translated; anything else is the host's.
 */
static __always_inline int ct_related_in(const struct kvx_pkt *p, const struct icmp_quote *q,
					 struct nat_endpoint *guest)
{
	struct kvx_pkt a = {};
	struct kvx_bind_val *ib;
	struct kvx_ct_key k;
	struct kvx_ct_val *f;
	__u8 flags;

	if (q->saddr != p->daddr)
		return KVX_R_PASS_HOST;
	a.proto = q->proto;
	a.saddr = q->daddr;
	a.sport = q->dport;
	a.daddr = q->saddr;
	a.dport = q->sport;
	a.icmp_type = ICMP_ECHOREPLY; /* the answer to a quoted echo request */
	ib = bind_in_find(&a, &flags);
	if (!ib)
		return KVX_R_PASS_HOST;
	guest_of_binding(ib, flags, a.dport, guest);
	ct_key_init(&k, a.proto, guest->addr, guest->port, a.saddr, a.sport);
	if (!bpf_map_lookup_elem(&kvx_ct, &k)) {
		/* A shared port: the quoted flow may be another endpoint's of
		 * the guest (ct.h ovl_guest_port), found as its remote's
		 * answer would be. */
		if ((flags & KVX_CT_F_STATIC) || !ovl_guest_port(&a, ib, guest))
			return KVX_R_PASS_HOST;
		ct_key_init(&k, a.proto, guest->addr, guest->port, a.saddr, a.sport);
		f = bpf_map_lookup_elem(&kvx_ct, &k);
		if (!f || f->ext_addr != a.daddr || f->ext_port != a.dport)
			return KVX_R_PASS_HOST;
	}
	if (p->ttl <= 1)
		return KVX_R_DROP_TTL_IN;
	return KVX_CONTINUE;
}

/* The external endpoint for a guest's own ICMP error about an inbound
 * packet (quoted: remote -> guest): the flow it belongs to knows it. */
static __always_inline int ct_related_out(const struct kvx_pkt *p, const struct icmp_quote *q,
					  struct nat_endpoint *ext)
{
	struct kvx_ct_key k;
	struct kvx_ct_val *f;

	if (q->daddr != p->saddr)
		return KVX_R_DROP_ICMP_TYPE;
	ct_key_init(&k, q->proto, q->daddr, q->dport, q->saddr, q->sport);
	f = bpf_map_lookup_elem(&kvx_ct, &k);
	if (!f)
		return KVX_R_DROP_ICMP_TYPE;
	ext->addr = f->ext_addr;
	ext->port = f->ext_port;
	return KVX_CONTINUE;
}

/*
 * ICMP errors kvmxdp sends itself, in place of a packet it drops: the
 * guest's new flow for which no mapping can be made (RFC 5508 REQ-8),
 * inbound packets whose TTL expires on the way to a guest (REQ-10b) or too
 * big for the bridge with DF set (what ip_forward would answer).  One
 * builder for all of them: icmp_reply().
 */

/* Take one message from a destination's token bucket (abi.h KVX_MAP_ICMPRL). */
static __always_inline int icmp_rl_take(__be32 key, __u64 now, __u64 interval, __u64 burst)
{
	struct kvx_icmprl_val *v, nv = {};
	__u64 tokens;

	v = bpf_map_lookup_elem(&kvx_icmprl, &key);
	if (!v) {
		nv.last_ns = now;
		nv.tokens_ns = (burst - 1) * interval;
		bpf_map_update_elem(&kvx_icmprl, &key, &nv, BPF_ANY);
		return 1;
	}
	/* Unlocked, so approximate under concurrency: another CPU may have
	 * stored a later time (then no credit is added, never a wrap).  At
	 * worst a destination gets a message or two more than its burst. */
	tokens = v->tokens_ns;
	if (now > v->last_ns)
		tokens += now - v->last_ns;
	if (tokens > burst * interval)
		tokens = burst * interval;
	v->last_ns = now;
	if (tokens < interval) {
		v->tokens_ns = tokens;
		return 0;
	}
	v->tokens_ns = tokens - interval;
	return 1;
}

/*
 * The budgets of all destinations together, as icmp_msgs_per_sec /
 * icmp_msgs_burst: one for the answers kvmxdp owes guests and remotes, one
 * of its own for fragmentation needed, so that a flood of refused flows or
 * expiring TTLs (spoofed sources cost nothing) cannot starve path-MTU
 * discovery (the kernel never rate-limits frag needed: icmpv4_mask_allow).
 * Not in kvx_icmprl: an LRU map evicts the bucket under a flood of new
 * destinations, and an evicted bucket comes back full.  Each is one word,
 * the generic cell rate algorithm's theoretical arrival time (ns,
 * CLOCK_BOOTTIME): a message is allowed while that time is at most
 * burst - 1 intervals ahead of now, and moves it one interval on.  One
 * word can be updated atomically (cmpxchg): concurrent CPUs never hand out
 * the same credit twice; a CPU that loses the race sends nothing, which
 * errs on the side of the limit.  In .bss: zero (a full bucket) at load.
 */
enum {
	KVX_ICMPRL_ANSWERS,
	KVX_ICMPRL_PMTU,
	KVX_ICMPRL_GLOBALS,
};
__u64 kvx_icmprl_tat[KVX_ICMPRL_GLOBALS];

static __always_inline int icmp_rl_global(__u32 which, __u64 now)
{
	__u64 *tat = &kvx_icmprl_tat[which & 1];
	__u64 old = *(volatile __u64 *)tat, next;

	next = (old > now ? old : now) + KVX_ICMPRL_GLOBAL_INTERVAL_NS;
	if (next - now > KVX_ICMPRL_GLOBAL_BURST * KVX_ICMPRL_GLOBAL_INTERVAL_NS)
		return 0;
	return __sync_val_compare_and_swap(tat, old, next) == old;
}

/* Per destination, then all destinations together; fragmentation needed
 * only against its own global budget: a sender's path-MTU discovery must
 * not depend on what else was sent to it. */
static __always_inline int icmp_rl_allow(__be32 dst, int pmtu)
{
	__u64 now = clock_now_ns();

	if (pmtu)
		return icmp_rl_global(KVX_ICMPRL_PMTU, now);
	return icmp_rl_take(dst, now, KVX_ICMPRL_INTERVAL_NS, KVX_ICMPRL_BURST) &&
	       icmp_rl_global(KVX_ICMPRL_ANSWERS, now);
}

/* One's complement sum of len bytes (even, at most 88) at p, unfolded. */
#define KVX_ICMP_SUM_MAX (8 + 60 + 20)
static __always_inline __u32 icmp_sum(const void *p, const void *data_end, __u32 len)
{
	__u32 sum = 0, i;

	for (i = 0; i < KVX_ICMP_SUM_MAX; i += 2) {
		const __u16 *w = p + i;

		if (i >= len)
			break;
		/* One register for the test and the load: clang would
		 * otherwise re-derive the pointer after the test, and the
		 * verifier sees an unchecked one. */
		asm volatile("" : "+r"(w));
		if ((const void *)(w + 1) > data_end)
			break;
		sum += *w;
	}
	return sum;
}

/* Who never gets an error (RFC 1812 4.3.2.7, RFC 1122 3.2.2): a source
 * that is no single host (0/8, loopback, multicast, broadcast). */
static __always_inline int icmp_bad_source(__be32 a)
{
	__u32 h = bpf_ntohl(a);

	return (h >> 24) == 0 || (h >> 24) == 127 || (h >> 28) >= 0xe;
}

/* type, code and the next-hop MTU of a fragmentation needed, in one word. */
#define KVX_ICMP_TCM(type, code, mtu) ((__u32)(type) << 24 | (__u32)(code) << 16 | (__u16)(mtu))

/*
 * Turn the frame into an ICMP error about it, from saddr back to its
 * sender, and send it out of the device it came in on (MACs swapped).  The
 * quote is the offending IPv4 header and 8 bytes of what follows (RFC 792),
 * 20 for TCP (RFC 1812 asks for more; 20 reach the TCP checksum, see below).
 * -1: nothing sent (RFC 1812's exceptions, the rate limit, a frame that
 * cannot be reshaped), the caller drops.  The caller makes sure the frame
 * was sent to the host's own MAC (a promiscuous device also sees other
 * hosts' unicast, which the stack drops unanswered): the answer leaves
 * from the MAC the frame was sent to.  Not inlined: one copy for every
 * caller, its frame off the main path's stack.
 *
 * Checksums: both are computed in full.  A CHECKSUM_PARTIAL skb (a guest's
 * or a veth peer's TCP/UDP with offload) keeps that state through
 * bpf_skb_change_tail/adjust_room, and with it csum_start/csum_offset,
 * which now point into the quote: whoever finishes it later (a device
 * without offload, skb_checksum_help) sums from the quoted L4 header to the
 * end and stores the result in the quoted checksum field.  The field is
 * set to the one value that this leaves unchanged: with S the sum of the
 * quoted L4 bytes without it, P + S = ~P, i.e. P = ~S / 2, and halving in
 * one's complement arithmetic (mod 0xffff) is a rotation by one bit.  So
 * the bytes sent are the bytes the guest gets, finished or not.  The field
 * in a quote is not checked by anyone (the kernel's error handlers read
 * ports and sequence numbers only).
 */
static __noinline int icmp_reply(kvx_ctx_t *ctx, __u32 tcm, __be32 saddr)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_HLEN;
	struct icmphdr *ih;
	struct iphdr *qip;
	__u32 hl, tot, quote, sum, csum_off = 0;
	__u8 mac[ETH_ALEN], proto, *l4;
	__be32 dst;
	__u16 n;

	if ((void *)(ip + 1) > data_end || !saddr)
		return -1;
	hl = ip->ihl * 4;
	if (hl < 20)
		return -1;
	l4 = (__u8 *)(ip + 1) + (hl - 20);
	if ((void *)(l4 + 8) > data_end)
		return -1;
	/* Not about a link-layer or IP broadcast/multicast, a later
	 * fragment, an ICMP error or a source that is no host. */
	dst = ip->saddr;
	if ((eth->h_dest[0] & 1) || (ip->frag_off & bpf_htons(KVX_IP_OFFSET)) ||
	    icmp_bad_source(dst) || (bpf_ntohl(ip->daddr) >> 28) >= 0xe)
		return -1;
	proto = ip->protocol;
	if (proto == IPPROTO_ICMP && (icmp_is_error(l4[0]) || l4[0] == ICMP_SOURCE_QUENCH ||
				      l4[0] == ICMP_REDIRECT || l4[0] > NR_ICMP_TYPES))
		return -1;
	tot = bpf_ntohs(ip->tot_len);
	if (tot < hl + 8 || ETH_HLEN + tot > ctx_len(ctx))
		return -1;
	quote = 8;
	if (proto == IPPROTO_TCP && tot >= hl + 20) {
		quote = 20;
		csum_off = offsetof(struct tcphdr, check);
	} else if (proto == IPPROTO_UDP) {
		csum_off = offsetof(struct udphdr, check);
	}
	if (!icmp_rl_allow(dst, tcm >> 16 == (ICMP_DEST_UNREACH << 8 | ICMP_FRAG_NEEDED))) {
		stats_count(KVX_R_ICMP_RATELIMITED, 0);
		return -1;
	}

	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	if (ctx_icmp_reshape(ctx, ETH_HLEN + hl + quote, sizeof(*ip) + sizeof(*ih)))
		return -1;

	data = ctx_data(ctx);
	data_end = ctx_data_end(ctx);
	ip = data + ETH_HLEN;
	ih = (void *)(ip + 1);
	qip = (void *)(ih + 1);
	if ((void *)(qip + 1) > data_end || hl > 60)
		return -1;
	l4 = (__u8 *)(qip + 1) + (hl - 20);
	if ((void *)(l4 + 8) > data_end)
		return -1;

	if (csum_off) {
		__sum16 *f = (void *)(l4 + csum_off);

		if ((void *)(f + 1) > data_end)
			return -1;
		*f = 0;
		n = ~csum_fold32(icmp_sum(l4, data_end, quote));
		*f = (__sum16)(n >> 1 | n << 15);
	}

	/* RFC 1812 4.3.2.5: ICMP errors go out with precedence 6. */
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0xc0;
	ip->tot_len = bpf_htons(sizeof(*ip) + sizeof(*ih) + hl + quote);
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = 64;
	ip->protocol = IPPROTO_ICMP;
	ip->check = 0;
	ip->saddr = saddr;
	ip->daddr = dst;
	ip->check = ~csum_fold32(icmp_sum(ip, data_end, sizeof(*ip)));

	ih->type = tcm >> 24;
	ih->code = tcm >> 16;
	ih->checksum = 0;
	ih->un.gateway = bpf_htonl(tcm & 0xffff);
	sum = icmp_sum(ih, data_end, sizeof(*ih) + hl + quote);
	ih->checksum = ~csum_fold32(sum);

	stats_count(KVX_R_ICMP_SENT, ctx_len(ctx));
	return ctx_redirect(ctx_ifindex(ctx));
}

#endif /* KVX_ICMP_H */
