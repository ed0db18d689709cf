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
};

struct kvx_pkt {
	__u32 ip_end;   /* ETH_HLEN + tot_len: where the IP datagram ends */
	__be32 saddr;
	__be32 daddr;
	__be16 sport;   /* TCP/UDP source port; ICMP echo: the identifier */
	__be16 dport;   /* TCP/UDP destination port; ICMP echo: the identifier */
	__u16 frag;     /* frag_off, host order (flags + offset) */
	__be16 ip_id;   /* identification: keys the fragments of one datagram */
	__u16 l4_off;   /* from the start of the frame (at most ETH_HLEN + 60) */
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
	case IPPROTO_TCP: {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end || p->l4_off + sizeof(*th) > p->ip_end)
			break;
		p->sport = th->source;
		p->dport = th->dest;
		p->tcp_flags = ((__u8 *)th)[13];
		p->l4_hlen = th->doff * 4;
		p->tcp_wscale = KVX_TCP_NO_WSCALE;
		p->tcp_seq = bpf_ntohl(th->seq);
		p->tcp_ack = bpf_ntohl(th->ack_seq);
		p->tcp_win = bpf_ntohs(th->window);
		p->l4_ok = 1;
		break;
	}
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

#endif /* KVX_PARSE_H */
