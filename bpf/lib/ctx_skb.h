/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Context layer for TC (struct __sk_buff).  The NAT code in nat.h/ct.h only
 * touches the packet through these functions, so the same code can be built
 * for XDP by providing ctx_xdp.h with the same names (direct writes and
 * manual RFC 1624 checksum updates instead of the skb helpers).
 */
#ifndef KVX_CTX_SKB_H
#define KVX_CTX_SKB_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

typedef struct __sk_buff kvx_ctx_t;

#define CTX_PASS TC_ACT_OK
#define CTX_DROP TC_ACT_SHOT

/* Enough linear data for Ethernet + the largest IPv4 header + a TCP header. */
#define KVX_PULL_LEN (ETH_HLEN + 60 + 20)

static __always_inline void *ctx_data(const kvx_ctx_t *ctx)
{
	return (void *)(long)ctx->data;
}

static __always_inline void *ctx_data_end(const kvx_ctx_t *ctx)
{
	return (void *)(long)ctx->data_end;
}

static __always_inline __u32 ctx_len(const kvx_ctx_t *ctx)
{
	return ctx->len;
}

/* Was the frame addressed to this device's MAC (or multicast/broadcast)?
 * A promiscuous bridge also sees unicast for other hosts (PACKET_OTHERHOST),
 * which the stack would drop: so must we, rather than route it. */
static __always_inline int ctx_frame_for_host(const kvx_ctx_t *ctx)
{
	return ctx->pkt_type != PACKET_OTHERHOST;
}

static __always_inline __u32 ctx_ifindex(const kvx_ctx_t *ctx)
{
	return ctx->ifindex;
}

/*
 * Headers may sit partly in paged data (GRO/GSO skbs, tap frags): make the
 * headers we parse linear once, up front, so direct packet access sees them.
 */
static __always_inline void ctx_pull_headers(kvx_ctx_t *ctx)
{
	__u32 linear = ctx->data_end - ctx->data;
	__u32 want = ctx->len < KVX_PULL_LEN ? ctx->len : KVX_PULL_LEN;

	if (linear < want)
		bpf_skb_pull_data(ctx, want);
}

/* ICMP errors quote a header after their own: make that linear too. */
static __always_inline void ctx_pull_len(kvx_ctx_t *ctx, __u32 len)
{
	__u32 want = ctx->len < len ? ctx->len : len;

	if ((__u32)(ctx->data_end - ctx->data) < want)
		bpf_skb_pull_data(ctx, want);
}

/*
 * Checksum updates.  The skb helpers know the skb's checksum state: for a
 * CHECKSUM_PARTIAL skb (virtio/veth offload) the L4 field only holds the
 * pseudo-header sum, so an address change must be applied as a
 * pseudo-header change (BPF_F_PSEUDO_HDR) and a port change must not touch
 * it at all -- inet_proto_csum_replace*() does exactly that (cilium #16604).
 */
static __always_inline int ctx_l3_csum_replace(kvx_ctx_t *ctx, __u32 off, __u32 from, __u32 to,
					       __u32 size)
{
	return bpf_l3_csum_replace(ctx, off, from, to, size);
}

static __always_inline int ctx_l4_csum_replace(kvx_ctx_t *ctx, __u32 off, __u32 from, __u32 to,
					       __u64 flags)
{
	return bpf_l4_csum_replace(ctx, off, from, to, flags);
}

/* GSO-aware check of the skb against the egress device's MTU, for when the
 * route lookup could not do it (NO_NEIGH skips the kernel's own check). */
static __always_inline int ctx_exceeds_mtu(kvx_ctx_t *ctx, __u32 ifindex)
{
	__u32 mtu_len = 0;

	return bpf_check_mtu(ctx, ifindex, &mtu_len, 0, 0) == BPF_MTU_CHK_RET_FRAG_NEEDED;
}

static __always_inline long ctx_redirect(__u32 ifindex)
{
	return bpf_redirect(ifindex, 0);
}

#endif /* KVX_CTX_SKB_H */
