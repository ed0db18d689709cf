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
static __noinline int icmp_err_rewrite(kvx_ctx_t *ctx, const struct kvx_pkt *p,
				       const struct icmp_quote *q, int outbound,
				       const struct nat_endpoint *to)
{
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

	old_ttl = *(__u16 *)&ip->ttl;
	ip->ttl--;
	ip->check = csum16_update(ip->check, old_ttl, *(__u16 *)&ip->ttl);
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
	if (!bpf_map_lookup_elem(&kvx_ct, &k))
		return KVX_R_PASS_HOST;
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

#endif /* KVX_ICMP_H */
