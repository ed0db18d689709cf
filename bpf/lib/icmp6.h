/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ICMPv6 errors about translated flows (RFC 4443 types 1-4: destination
 * unreachable, packet too big, time exceeded, parameter problem), RFC
 * 5508's rules applied to IPv6 as icmp.h applies them to IPv4: an error
 * quotes the packet it is about, is matched by that quoted header to a
 * flow, and is translated together with it: the outer address, the quoted
 * address and port (echo: identifier), the quoted L4 checksum when the
 * quote reaches it, and the ICMPv6 checksum over all of it.  Unlike ICMPv4,
 * the ICMPv6 checksum covers the pseudo-header (RFC 4443 2.3), so the
 * outer address change is in it too.  Lengths never change: a Parameter
 * Problem's pointer and a Packet Too Big's MTU stay right as they are.
 */
#ifndef KVX_ICMP6_H
#define KVX_ICMP6_H

#include "ct6.h"
#include "csum_math.h"

#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PARAMPROB 4

/* nat6_guest_check: a guest's ICMPv6 error, routed out of the uplink, to
 * be translated by its quote (nat6_icmp_error_out). */
#define KVX_ICMP6_ERR (KVX_R_MAX + 4)
/* nat6_guest_check / nat6_uplink_check: a later fragment (nat6_frag_out /
 * nat6_frag_in). */
#define KVX_FRAG6_LATER (KVX_R_MAX + 5)
/* nat6_guest_check: to a mapped address or port, back to a guest
 * (nat6_hairpin_target); nat6_from_guest then returns KVX_TC_HAIRPIN6, no
 * TC verdict, for kvx_br6 to tail-call kvx_br6_hairpin. */
#define KVX_HAIRPIN6 (KVX_R_MAX + 7)
#define KVX_TC_HAIRPIN6 0x4b76

static __always_inline int icmp6_is_error(__u8 type)
{
	return type >= ICMPV6_DEST_UNREACH && type <= ICMPV6_PARAMPROB;
}

/* The quoted packet of an ICMPv6 error. */
struct icmp6_quote {
	__u32 l4_off; /* quoted L4 header, from the start of the frame */
	__be32 saddr[4];
	__be32 daddr[4];
	__be16 sport; /* quoted echo: the identifier, in both */
	__be16 dport;
	__u8 proto;
	__u8 csum_off; /* the quoted L4 checksum's offset in its header; 0: not quoted */
	__u16 ih_off;  /* the error's own ICMPv6 header, from the start of the frame */
};

/* The last offset of the error's ICMPv6 header for which the quoted fixed
 * header still lies within the linear KVX_PULL6_LEN bytes. */
#define KVX_ICMP6_IH_MAX (KVX_PULL6_LEN - sizeof(struct kvx_icmp6hdr) - sizeof(struct kvx_ipv6hdr))

/*
 * The quote, read from the frame that parse_ipv6 parsed into p6 (its first
 * KVX_PULL6_LEN bytes linear), after the error's own ICMPv6 header, where
 * parse_ipv6 found it: behind the fixed header, or behind an outer
 * extension chain it walked (a router's hop-by-hop or destination options
 * header, RFC 8200 4; the error quotes the same way).  The quoted fixed
 * header, its extension
 * chain (walked as parse_ipv6 walks a packet's, but only the quoted bytes:
 * RFC 4443 quotes "as much of the invoking packet as possible", and a
 * quote may end anywhere), then the quoted ports.  -1: nothing we could
 * have sent (a quote too short to hold the ports, a later fragment, a
 * protocol we do not translate, an ICMPv6 message other than an echo).
 */
static __always_inline int icmp6_parse_quote(kvx_ctx_t *ctx, const struct kvx_pkt6 *p6,
					     struct icmp6_quote *q)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	__u32 end = p6->p.ip_end, off = p6->p.l4_off, i, l4_avail;
	struct kvx_ipv6hdr *qip;
	__u8 nh, *l4;

	if (off < ETH_HLEN + sizeof(struct kvx_ipv6hdr) || off > KVX_ICMP6_IH_MAX)
		return -1;
	kvx_index_barrier(off);
	off &= 0x1ff;
	q->ih_off = off;
	off += sizeof(struct kvx_icmp6hdr);
	qip = data + off;
	if ((void *)(qip + 1) > data_end || off + sizeof(*qip) > end || (qip->ver_tc >> 4) != 6)
		return -1;
	addr6_copy(q->saddr, qip->saddr);
	addr6_copy(q->daddr, qip->daddr);
	nh = qip->nexthdr;
	off += sizeof(*qip);

	/* Unrolled, as parse_ipv6's walk (6.1's check_cfg). */
#pragma unroll
	for (i = 0; i < KVX_EXTHDR_MAX; i++) {
		__u8 *h;

		if (nh != KVX_IPPROTO_HOPOPTS && nh != KVX_IPPROTO_DSTOPTS &&
		    nh != KVX_IPPROTO_ROUTING && nh != KVX_IPPROTO_FRAGMENT)
			break;
		if (off > KVX_PULL6_LEN - 8)
			return -1;
		h = data + off;
		if ((void *)(h + 8) > data_end || off + 8 > end)
			return -1;
		if (nh == KVX_IPPROTO_FRAGMENT) {
			/* Only a first fragment quotes the ports. */
			if ((h[2] << 8 | h[3]) & 0xfff8)
				return -1;
			off += 8;
		} else {
			off += ((__u32)h[1] + 1) * 8;
		}
		nh = h[0];
	}
	if (off > KVX_PULL6_LEN - 8)
		return -1;
	kvx_index_barrier(off);
	off &= 0x1ff;
	l4 = data + off;
	l4_avail = end > off ? end - off : 0;
	q->l4_off = off;
	q->proto = nh;
	q->csum_off = 0;
	switch (nh) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		if ((void *)(l4 + 4) > data_end || l4_avail < 4)
			return -1;
		__builtin_memcpy(&q->sport, l4, 2);
		__builtin_memcpy(&q->dport, l4 + 2, 2);
		q->csum_off = nh == IPPROTO_TCP ? offsetof(struct tcphdr, check) :
						  offsetof(struct udphdr, check);
		break;
	case KVX_IPPROTO_ICMPV6:
		/* Errors are only about echo messages, never about errors. */
		if ((void *)(l4 + 8) > data_end || l4_avail < 8 ||
		    (l4[0] != ICMPV6_ECHO_REQUEST && l4[0] != ICMPV6_ECHO_REPLY))
			return -1;
		__builtin_memcpy(&q->sport, l4 + 4, 2);
		q->dport = q->sport;
		q->csum_off = offsetof(struct kvx_icmp6hdr, checksum);
		break;
	default:
		return -1;
	}
	/* A truncated quote: the checksum it does not hold is left alone. */
	if ((__u32)q->csum_off + 2 > l4_avail)
		q->csum_off = 0;
	return 0;
}

/*
 * The guest of an inbound ICMPv6 error: the quoted packet is one a guest
 * sent, as translated (from the uplink address and the NAT port, a
 * forward's or a 1:1 address, to a remote).  Its binding gives the guest
 * endpoint (a 1:1 address's keeps the port), and the flow must exist
 * with exactly the quoted remote address and port (RFC 5927: an error is
 * believed only about a flow it names): a LAN host that guesses a NAT port
 * cannot inject errors into other flows of it.  rw receives the guest's
 * address and port, and its MACs (when the binding knows them: else the
 * kernel resolves them).  KVX_R_PASS_HOST: not about a flow of ours (the
 * host's own flows get errors too).
 */
static __noinline int ct6_related_in(const struct kvx_pkt6 *p6, const struct icmp6_quote *q,
				     struct nat6_rewrite *rw)
{
	struct kvx_bind6_val *ib;
	struct kvx_ct6_key k;
	struct kvx_ct6_val *f;

	if (!p6 || !q || !rw)
		return KVX_R_PASS_HOST;
	if (!addr6_eq(q->saddr, p6->daddr))
		return KVX_R_PASS_HOST;
	ib = bind6_in_find(q->proto, q->saddr, q->sport);
	if (!ib)
		return KVX_R_PASS_HOST;
	rw->port = ib->bind.flags & KVX_BIND_F_ONE_TO_ONE ? q->sport : ib->bind.port;
	addr6_copy(rw->addr, ib->addr);
	if (!mac_is_zero(ib->bind.guest_mac)) {
		rw->macs = 1;
		__builtin_memcpy(rw->smac, ib->bind.gw_mac, ETH_ALEN);
		__builtin_memcpy(rw->dmac, ib->bind.guest_mac, ETH_ALEN);
	}
	ct6_key_init(&k, q->proto, rw->addr, rw->port, q->daddr, q->dport);
	f = bpf_map_lookup_elem(&kvx_ct6, &k);
	if (!f || !addr6_eq(f->ext_addr, q->saddr) || f->ct.ext_port != q->sport)
		return KVX_R_PASS_HOST;
	if (p6->p.ttl <= 1)
		return KVX_R_DROP_TTL_IN;
	return KVX_CONTINUE;
}

/*
 * The external endpoint of a guest's own ICMPv6 error about an inbound
 * packet (quoted: remote -> guest, as the guest got it): the flow it
 * belongs to knows it, and the binding of that endpoint must belong to the
 * frame's MAC (bind6_mac_owns): guest B does not send errors about guest
 * A's flows.  Into ext_addr and *ext_port.  No flow: KVX_R_DROP_ICMP_TYPE,
 * never passed (the host would route it out untranslated).
 */
static __noinline int ct6_related_out(const struct kvx_pkt6 *p6, const struct icmp6_quote *q,
				      const __u8 *macs, __be32 *ext_addr, __be16 *ext_port)
{
	struct kvx_bind6_val *ib;
	struct kvx_ct6_key k;
	struct kvx_ct6_val *f;

	if (!p6 || !q || !macs || !ext_addr || !ext_port)
		return KVX_R_DROP_ICMP_TYPE;
	/* About a packet the guest got, and to its sender: never an error
	 * from the uplink address to a third host of the guest's choosing. */
	if (!addr6_eq(q->daddr, p6->saddr) || !addr6_eq(q->saddr, p6->daddr))
		return KVX_R_DROP_ICMP_TYPE;
	ct6_key_init(&k, q->proto, q->daddr, q->dport, q->saddr, q->sport);
	f = bpf_map_lookup_elem(&kvx_ct6, &k);
	/* The uplink address, or a mapped one (a 1:1 address, a literal
	 * forward's); never the guest's own (relay's flows: no NAT). */
	if (!f || addr6_eq(f->ext_addr, q->daddr))
		return KVX_R_DROP_ICMP_TYPE;
	addr6_copy(ext_addr, f->ext_addr);
	*ext_port = f->ct.ext_port;
	ib = bind6_in_find(q->proto, ext_addr, *ext_port);
	if (!ib || !addr6_eq(ib->addr, q->daddr) ||
	    (ib->bind.flags & KVX_BIND_F_ONE_TO_ONE ? *ext_port : ib->bind.port) != q->dport)
		return KVX_R_DROP_ICMP_TYPE;
	/* A static mapping's MAC is learnt from the guest's first packet
	 * through it (ct6_lookup_out): an error may be that packet. */
	if (!bind6_mac_owns(ib, macs, clock_now_ns()) && !mac_is_zero(ib->bind.guest_mac))
		return KVX_R_DROP_SPOOF_MAC;
	return KVX_CONTINUE;
}

#endif /* KVX_ICMP6_H */
