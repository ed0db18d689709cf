/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Incremental checksum updates (RFC 1624) for one rewritten address and
 * port/identifier, through the context layer.  Offsets, not pointers: the
 * helpers invalidate packet pointers, so they run after all direct writes.
 */
#ifndef KVX_CSUM_H
#define KVX_CSUM_H

#include <stddef.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/icmp.h>
#include "ctx_skb.h"

#define KVX_IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))

struct csum_edit {
	__u32 l4_csum_off; /* 0: no L4 checksum to fix */
	__u8 l4_pseudo;    /* the L4 checksum covers the IPv4 pseudo-header */
	__u8 udp;          /* UDP: a zero checksum means "none" and stays 0 */
	__be16 old_port;
	__be16 new_port;
	__be32 old_addr;
	__be32 new_addr;
	__u16 old_ttl_word; /* ttl + protocol, as on the wire */
	__u16 new_ttl_word;
};

static __always_inline int csum_apply(kvx_ctx_t *ctx, const struct csum_edit *e)
{
	__u64 mz = e->udp ? BPF_F_MARK_MANGLED_0 : 0;

	if (ctx_l3_csum_replace(ctx, KVX_IP_CSUM_OFF, e->old_ttl_word, e->new_ttl_word, 2))
		return -1;
	if (ctx_l3_csum_replace(ctx, KVX_IP_CSUM_OFF, e->old_addr, e->new_addr, 4))
		return -1;
	if (!e->l4_csum_off)
		return 0;
	/*
	 * TCP/UDP: the address is part of the pseudo-header.  For a
	 * CHECKSUM_PARTIAL skb BPF_F_PSEUDO_HDR updates the pseudo-header sum
	 * held in the field; the port change is then left to the device.
	 * ICMP has no pseudo-header: never pass BPF_F_PSEUDO_HDR for it
	 * (cilium #25576).
	 */
	if (e->l4_pseudo &&
	    ctx_l4_csum_replace(ctx, e->l4_csum_off, e->old_addr, e->new_addr,
				BPF_F_PSEUDO_HDR | mz | sizeof(e->new_addr)))
		return -1;
	if (e->old_port != e->new_port &&
	    ctx_l4_csum_replace(ctx, e->l4_csum_off, e->old_port, e->new_port,
				mz | sizeof(e->new_port)))
		return -1;
	return 0;
}

#endif /* KVX_CSUM_H */
