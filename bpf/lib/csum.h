/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Incremental checksum updates (RFC 1624) through the context layer, one
 * changed field at a time.  Offsets, not pointers: the helpers invalidate
 * packet pointers, so they run after all direct writes.
 */
#ifndef KVX_CSUM_H
#define KVX_CSUM_H

#include <stddef.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include "proto.h"
#include "ctx.h"
#include "csum_math.h"

#define KVX_IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))

/* Where the L4 checksum of a packet lives and what it covers. */
struct csum_l4 {
	__u32 off;    /* 0: no L4 checksum to fix */
	__u8 pseudo;  /* covers the IPv4 pseudo-header (TCP, UDP) */
	__u8 udp;     /* UDP: a zero checksum means "none" and stays 0 */
};

/*
 * An IPv4 address changed: the L4 side.  (The IPv4 header checksum is
 * nat4_rewrite's, by plain arithmetic: see csum_ip_rewrite.)  TCP/UDP: the
 * address is part of the pseudo-header; for a CHECKSUM_PARTIAL skb
 * BPF_F_PSEUDO_HDR updates the pseudo-header sum the field holds (cilium
 * #16604).  ICMP has no pseudo-header: never BPF_F_PSEUDO_HDR for it
 * (cilium #25576).
 */
static __always_inline int csum_l4_addr(kvx_ctx_t *ctx, const struct csum_l4 *l4, __be32 from,
					__be32 to)
{
	if (from == to || !l4->off || !l4->pseudo)
		return 0;
	return ctx_l4_csum_replace(ctx, l4->off, from, to,
				   BPF_F_PSEUDO_HDR | (l4->udp ? BPF_F_MARK_MANGLED_0 : 0) |
					   sizeof(to));
}

/*
 * An IPv6 address changed (the 16 bytes at from, now to): the L4 side, by
 * the difference of the two (RFC 1624) as a pseudo-header change.  TCP, UDP
 * and ICMPv6 all cover the pseudo-header (RFC 8200 8.1, RFC 4443 2.3):
 * l4->pseudo is set for all three.  There is no IP header checksum.
 */
static __always_inline int csum_l4_addr6(kvx_ctx_t *ctx, const struct csum_l4 *l4,
					 const __be32 *from, const __be32 *to)
{
	__s64 diff;

	if (!l4->off)
		return 0;
	diff = bpf_csum_diff((__be32 *)from, 16, (__be32 *)to, 16, 0);
	if (diff < 0)
		return -1;
	return ctx_l4_csum_replace(ctx, l4->off, 0, (__u32)diff,
				   BPF_F_PSEUDO_HDR | (l4->udp ? BPF_F_MARK_MANGLED_0 : 0));
}

/* A port or ICMP echo identifier changed: covered by the L4 checksum only;
 * for a CHECKSUM_PARTIAL skb the helper leaves the field to the device. */
static __always_inline int csum_port(kvx_ctx_t *ctx, const struct csum_l4 *l4, __be16 from,
				     __be16 to)
{
	if (from == to || !l4->off)
		return 0;
	return ctx_l4_csum_replace(ctx, l4->off, from, to,
				   (l4->udp ? BPF_F_MARK_MANGLED_0 : 0) | sizeof(to));
}

/*
 * The IPv4 header checksum after a rewrite of the TTL word and the
 * addresses (the new values already in the header), by the arithmetic
 * above: the header checksum is never offloaded, and the skb helper
 * (bpf_l3_csum_replace) does this same arithmetic and nothing more, at a
 * helper call per field (~5 ns each, bench/tcprof).  The header's sum does
 * not change, so a CHECKSUM_COMPLETE skb->csum stays right.  An unchanged
 * field leaves the checksum as it is (~HC + ~m + m == ~HC in one's
 * complement, and HC is never 0xffff), so no test for it is needed.
 */
static __always_inline void csum_ip_rewrite(struct iphdr *ip, __u16 old_ttl_word,
					    __be32 old_saddr, __be32 old_daddr)
{
	__sum16 c = csum16_update(ip->check, old_ttl_word, *(__u16 *)&ip->ttl);

	c = csum32_update(c, old_saddr, ip->saddr);
	ip->check = csum32_update(c, old_daddr, ip->daddr);
}

#endif /* KVX_CSUM_H */
