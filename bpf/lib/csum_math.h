/* SPDX-License-Identifier: GPL-2.0 */
#ifndef KVX_CSUM_MATH_H
#define KVX_CSUM_MATH_H

#include <linux/types.h>

/*
 * Plain RFC 1624 arithmetic on a checksum field, for fields that no skb
 * helper knows about (the headers quoted inside an ICMP error) and for XDP
 * (ctx_xdp.h), where it gives the bytes the TC helpers give a fully
 * checksummed skb (the kernel's csum_replace2/4 do the same sums).
 * HC' = ~(~HC + ~m + m'); one's complement sums do not care about byte
 * order as long as every operand is read from the packet the same way.
 */
static __always_inline __u16 csum_fold32(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

static __always_inline __sum16 csum16_update(__sum16 hc, __be16 from, __be16 to)
{
	__u32 s = (__u16)~hc + (__u16)~from + (__u16)to;

	return (__sum16)~csum_fold32(s);
}

static __always_inline __sum16 csum32_update(__sum16 hc, __be32 from, __be32 to)
{
	__u32 s = (__u16)~hc + (__u16)~(from & 0xffff) + (__u16)~(from >> 16) + (to & 0xffff) +
		  (to >> 16);

	return (__sum16)~csum_fold32(s);
}

/* A 128-bit field (an IPv6 address) changed: four 32-bit updates. */
static __always_inline __sum16 csum128_update(__sum16 hc, const __be32 *from, const __be32 *to)
{
	hc = csum32_update(hc, from[0], to[0]);
	hc = csum32_update(hc, from[1], to[1]);
	hc = csum32_update(hc, from[2], to[2]);
	return csum32_update(hc, from[3], to[3]);
}

#endif /* KVX_CSUM_MATH_H */
