/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Header parsing into struct kvx_pkt: offsets and the fields the NAT needs.
 * Bounds are checked against both data_end (what is linear) and the IPv4
 * total length (what the sender claims), so a truncated packet never gets
 * translated from bytes beyond its end.
 */
#ifndef KVX_PARSE_H
#define KVX_PARSE_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include "proto.h"
#include <bpf/bpf_endian.h>
#include "ctx.h"

#define KVX_IP_MF 0x2000
#define KVX_IP_DF 0x4000
#define KVX_IP_OFFSET 0x1fff

enum parse_result {
	PARSE_OK = 0,
	PARSE_NOT_IPV4, /* not (untagged) IPv4 */
	PARSE_BAD_IP,   /* IPv4 header malformed or truncated */
	PARSE_NOT_IPV6, /* not (untagged) IPv6 */
	PARSE_EXTHDR,   /* IPv6: an extension header chain that is not walked */
};

struct kvx_pkt {
	__u32 ip_end;   /* ETH_HLEN + tot_len: where the IP datagram ends */
	__be32 saddr;
	__be32 daddr;
	__be16 sport;   /* TCP/UDP source port; ICMP echo: the identifier */
	__be16 dport;   /* TCP/UDP destination port; ICMP echo: the identifier */
	__u16 frag;     /* frag_off, host order (flags + offset) */
	__be16 ip_id;   /* identification: keys the fragments of one datagram */
	__u16 l4_off;   /* from the start of the frame (IPv4: at most ETH_HLEN + 60) */
	__u16 tcp_win;  /* TCP: the window, host order, unscaled */
	__u8 proto;
	__u8 ttl;
	__u8 tos;
	__u8 tcp_flags; /* TCP only: byte 13 of the header */
	/* 40 bytes in all: this struct sits in the frame of the bridge
	 * program, whose deepest call chain is at the verifier's stack
	 * limit, hence one byte for two protocols' fields. */
	union {
		__u8 icmp_type;  /* ICMP */
		__u8 tcp_wscale; /* TCP SYN: its window scale option, KVX_TCP_NO_WSCALE
				  * if none (set by tcp_syn_wscale before conntrack) */
	};
	__u8 l4_ok;     /* the L4 header we need is present */
	__u8 l4_hlen;   /* TCP/UDP header length (segments repeat it); else 0;
			 * with ip_end it gives a TCP payload's length (pkt_tcp_len) */
	__u8 _pad;
	/* TCP, host order: for conntrack's window checks (ct.h). */
	__u32 tcp_seq;
	__u32 tcp_ack;
};

_Static_assert(sizeof(struct kvx_pkt) == 40, "kvx_pkt: see the union");

#define KVX_TCP_NO_WSCALE 0xff

#define KVX_TCP_FIN 0x01
#define KVX_TCP_SYN 0x02
#define KVX_TCP_RST 0x04
#define KVX_TCP_ACK 0x10

/* TCP: the payload's length; a data offset beyond the datagram leaves
 * none. */
static __always_inline __u32 pkt_tcp_len(const struct kvx_pkt *p)
{
	__u32 hdr = p->l4_off + p->l4_hlen;

	return p->l4_hlen && p->ip_end > hdr ? p->ip_end - hdr : 0;
}

static __always_inline int pkt_is_fragment(const struct kvx_pkt *p)
{
	return p->frag & (KVX_IP_MF | KVX_IP_OFFSET);
}

/* A fragment after the first: no L4 header, only addresses to translate. */
static __always_inline int pkt_is_later_fragment(const struct kvx_pkt *p)
{
	return p->frag & KVX_IP_OFFSET;
}

/* Parse Ethernet + IPv4, and the L4 header of first fragments. */
/* The TCP header at l4 (frame offset off) into p, both families: ports,
 * flags, header length, sequence numbers and window for conntrack; l4_ok
 * only when the whole fixed header is in the frame and the datagram. */
static __always_inline void parse_tcp(struct kvx_pkt *p, void *l4, void *data_end, __u32 off)
{
	struct tcphdr *th = l4;

	if ((void *)(th + 1) > data_end || off + sizeof(*th) > p->ip_end)
		return;
	p->sport = th->source;
	p->dport = th->dest;
	p->tcp_flags = ((__u8 *)th)[13];
	p->l4_hlen = th->doff * 4;
	p->tcp_wscale = KVX_TCP_NO_WSCALE;
	p->tcp_seq = bpf_ntohl(th->seq);
	p->tcp_ack = bpf_ntohl(th->ack_seq);
	p->tcp_win = bpf_ntohs(th->window);
	p->l4_ok = 1;
}

static __always_inline enum parse_result parse_ipv4(kvx_ctx_t *ctx, struct kvx_pkt *p)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	struct ethhdr *eth = data;
	struct iphdr *ip;
	__u32 ihl_len, tot_len;

	if ((void *)(eth + 1) > data_end)
		return PARSE_NOT_IPV4;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return PARSE_NOT_IPV4;

	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return PARSE_BAD_IP;
	if (ip->version != 4 || ip->ihl < 5)
		return PARSE_BAD_IP;
	ihl_len = ip->ihl * 4;
	tot_len = bpf_ntohs(ip->tot_len);
	/* Frames may carry Ethernet padding after tot_len, never less. */
	if (tot_len < ihl_len || tot_len > ctx_len(ctx) - ETH_HLEN)
		return PARSE_BAD_IP;
	if ((void *)ip + ihl_len > data_end)
		return PARSE_BAD_IP;

	p->l4_off = ETH_HLEN + ihl_len;
	p->ip_end = ETH_HLEN + tot_len;
	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->proto = ip->protocol;
	p->ttl = ip->ttl;
	p->tos = ip->tos;
	p->ip_id = ip->id;
	p->frag = bpf_ntohs(ip->frag_off);
	p->sport = 0;
	p->dport = 0;
	p->tcp_flags = 0;
	p->icmp_type = 0;
	p->l4_ok = 0;
	p->l4_hlen = 0;
	p->tcp_seq = 0;
	p->tcp_ack = 0;
	p->tcp_win = 0;
	p->_pad = 0;

	/* Later fragments have no L4 header. */
	if (p->frag & KVX_IP_OFFSET)
		return PARSE_OK;

	void *l4 = data + p->l4_off;

	switch (p->proto) {
	case IPPROTO_TCP:
		parse_tcp(p, l4, data_end, p->l4_off);
		break;
	case IPPROTO_UDP: {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end || p->l4_off + sizeof(*uh) > p->ip_end)
			break;
		p->sport = uh->source;
		p->dport = uh->dest;
		p->l4_hlen = sizeof(*uh);
		p->l4_ok = 1;
		break;
	}
	case IPPROTO_ICMP: {
		struct icmphdr *ih = l4;

		if ((void *)(ih + 1) > data_end || p->l4_off + sizeof(*ih) > p->ip_end)
			break;
		p->icmp_type = ih->type;
		/* Echo request/reply: the identifier plays the role of both
		 * ports (RFC 5508 section 3.1). */
		p->sport = ih->un.echo.id;
		p->dport = ih->un.echo.id;
		p->l4_ok = 1;
		break;
	}
	case IPPROTO_UDPLITE:
	case IPPROTO_DCCP: {
		/* Address-only NAT, but the checksum field (offset 6 of both
		 * headers, as in UDP's) must be there to be updated. */
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end || p->l4_off + sizeof(*uh) > p->ip_end)
			break;
		p->l4_ok = 1;
		break;
	}
	default:
		/* Address-only NAT for other protocols. */
		p->l4_ok = 1;
		break;
	}
	return PARSE_OK;
}

/*
 * IPv6: the family-neutral fields in the embedded kvx_pkt (proto = the
 * final next header, ttl = the hop limit, ports, TCP fields, l4_off,
 * ip_end; frag as IPv4's host-order flags + offset, from a Fragment
 * header), so that every helper taking a kvx_pkt (conntrack's TCP
 * tracking, the SYN options) works unchanged; p.saddr and p.daddr hold a
 * fold of the addresses (hashes only: kvx_tw_bits).  The addresses
 * themselves follow.
 */
struct kvx_pkt6 {
	struct kvx_pkt p;
	__be32 saddr[4];
	__be32 daddr[4];
	__u32 flags;	/* KVX_PKT6_F_* */
	__be32 frag_id; /* Fragment header: the identification (p.frag says if any) */
};

#define KVX_PKT6_F_UDP_NO_CSUM (1U << 0) /* UDP with checksum 0 (invalid in IPv6) */

/* At most this many extension headers are walked (RFC 8200 section 4.1
 * orders six kinds; the walk allows each once, destination options twice,
 * so a chain it takes has at most five). */
#define KVX_EXTHDR_MAX 8
/* Headers up to here are made linear and parsed: a chain that ends beyond
 * it is not walked (DROP_EXTHDR).  Ethernet, the fixed header, 8 headers of
 * 24 bytes, a TCP header with options. */
#define KVX_PULL6_LEN (ETH_HLEN + 40 + 256 + 60)

static __always_inline __be32 addr6_fold(const __be32 *a)
{
	return a[0] ^ a[1] ^ a[2] ^ a[3];
}

/* The L4 header at p->l4_off (TCP, UDP, ICMPv6), as parse_ipv4 reads it. */
static __always_inline void parse_l4_v6(void *data, void *data_end, struct kvx_pkt6 *p6)
{
	struct kvx_pkt *p = &p6->p;
	__u32 off = p->l4_off;
	void *l4;

	if (off > KVX_PULL6_LEN)
		return;
	l4 = data + off;
	switch (p->proto) {
	case IPPROTO_TCP:
		parse_tcp(p, l4, data_end, off);
		break;
	case IPPROTO_UDP: {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end || off + sizeof(*uh) > p->ip_end)
			break;
		p->sport = uh->source;
		p->dport = uh->dest;
		p->l4_hlen = sizeof(*uh);
		p->l4_ok = 1;
		if (!uh->check)
			p6->flags |= KVX_PKT6_F_UDP_NO_CSUM;
		break;
	}
	case KVX_IPPROTO_ICMPV6: {
		struct kvx_icmp6hdr *ih = l4;

		if ((void *)(ih + 1) > data_end || off + sizeof(*ih) > p->ip_end)
			break;
		p->icmp_type = ih->type;
		p->sport = ih->id;
		p->dport = ih->id;
		p->l4_ok = 1;
		break;
	}
	default:
		break;
	}
}

/*
 * Parse Ethernet + IPv6 + its extension headers + the L4 header.  Hop-by-
 * hop (first only, RFC 8200 4.3), destination options, routing with no
 * segments left (else the destination is not final: RFC 8200 4.4) and
 * fragment headers are skipped, each length-checked against the frame and
 * the payload length; ESP, AH, the other extension headers, a header
 * repeated (RFC 8200 4.1: each once, destination options twice), a chain
 * of more than KVX_EXTHDR_MAX headers or one that is cut short:
 * PARSE_EXTHDR.  The
 * fixed header's fields are filled whenever the result is not
 * PARSE_NOT_IPV6 / PARSE_BAD_IP (the callers classify by address first).
 */
static __always_inline enum parse_result parse_ipv6(kvx_ctx_t *ctx, struct kvx_pkt6 *p6)
{
	void *data = ctx_data(ctx);
	void *data_end = ctx_data_end(ctx);
	struct kvx_pkt *p = &p6->p;
	struct ethhdr *eth = data;
	struct kvx_ipv6hdr *ip6;
	__u32 off, plen, i, seen = 0, bit;
	__u8 nh;

	if ((void *)(eth + 1) > data_end)
		return PARSE_NOT_IPV6;
	if (eth->h_proto != bpf_htons(ETH_P_IPV6))
		return PARSE_NOT_IPV6;
	ip6 = (void *)(eth + 1);
	if ((void *)(ip6 + 1) > data_end || (ip6->ver_tc >> 4) != 6)
		return PARSE_BAD_IP;
	plen = bpf_ntohs(ip6->payload_len);
	/* Frames may carry Ethernet padding after the payload, never less.
	 * (A jumbogram's payload length 0, RFC 2675, never crosses Ethernet.) */
	if (ETH_HLEN + sizeof(*ip6) + plen > ctx_len(ctx))
		return PARSE_BAD_IP;

	__builtin_memset(p, 0, sizeof(*p));
	p6->flags = 0;
	p6->frag_id = 0;
	__builtin_memcpy(p6->saddr, ip6->saddr, 16);
	__builtin_memcpy(p6->daddr, ip6->daddr, 16);
	p->saddr = addr6_fold(p6->saddr);
	p->daddr = addr6_fold(p6->daddr);
	p->ttl = ip6->hop_limit;
	p->tos = (ip6->ver_tc << 4) | (ip6->tc_flow >> 4);
	p->ip_end = ETH_HLEN + sizeof(*ip6) + plen;
	nh = ip6->nexthdr;
	off = ETH_HLEN + sizeof(*ip6);

	/* Unrolled: as a loop, clang lays it out with the back-edge as the
	 * fallthrough of a plain instruction, which 6.1's check_cfg refuses
	 * ("back-edge from insn"); later kernels take it. */
#pragma unroll
	for (i = 0; i < KVX_EXTHDR_MAX + 1; i++) {
		__u8 *h;

		if (nh != KVX_IPPROTO_HOPOPTS && nh != KVX_IPPROTO_DSTOPTS &&
		    nh != KVX_IPPROTO_ROUTING && nh != KVX_IPPROTO_FRAGMENT)
			break;
		if (i == KVX_EXTHDR_MAX || (nh == KVX_IPPROTO_HOPOPTS && i))
			return PARSE_EXTHDR;
		/* RFC 8200 4.1: each header once, destination options twice
		 * (before a routing header and before the upper layer).  A
		 * repeat is refused: with two fragment headers, the last one
		 * read would decide whether fragment data is taken for TCP. */
		bit = nh == KVX_IPPROTO_ROUTING	 ? 1 :
		      nh == KVX_IPPROTO_FRAGMENT ? 2 :
		      nh == KVX_IPPROTO_DSTOPTS	 ? (seen & 4 ? 8 : 4) :
						   16;
		if (seen & bit)
			return PARSE_EXTHDR;
		seen |= bit;
		if (off > KVX_PULL6_LEN - 8)
			return PARSE_EXTHDR;
		h = data + off;
		if ((void *)(h + 8) > data_end || off + 8 > p->ip_end)
			return PARSE_EXTHDR;
		if (nh == KVX_IPPROTO_FRAGMENT) {
			__u16 fo = (__u16)h[2] << 8 | h[3];

			/* Offset in 8-byte units and M, as IPv4's frag_off. */
			p->frag = (fo >> 3) | (fo & 1 ? KVX_IP_MF : 0);
			__builtin_memcpy(&p6->frag_id, h + 4, 4);
			off += 8;
		} else {
			if (nh == KVX_IPPROTO_ROUTING && h[3])
				return PARSE_EXTHDR;
			off += ((__u32)h[1] + 1) * 8;
		}
		nh = h[0];
	}
	switch (nh) {
	case KVX_IPPROTO_ESP:
	case KVX_IPPROTO_AH:
	case KVX_IPPROTO_MH:
	case KVX_IPPROTO_HIP:
	case KVX_IPPROTO_SHIM6:
	case KVX_IPPROTO_EXP1:
	case KVX_IPPROTO_EXP2:
		return PARSE_EXTHDR;
	default:
		break;
	}
	if (off > p->ip_end)
		return PARSE_EXTHDR;
	p->proto = nh;
	p->l4_off = off;
	if (!(p->frag & KVX_IP_OFFSET))
		parse_l4_v6(data, data_end, p6);
	return PARSE_OK;
}

#endif /* KVX_PARSE_H */
