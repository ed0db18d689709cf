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

/*
 * One load of a context field at a constant offset, where it is used: clang
 * otherwise keeps &ctx->field in a register or on the stack and loads
 * through it later, which the verifier refuses ("dereference of modified
 * ctx ptr").
 */
#define ctx_load_u32(ctx, field)                                                                   \
	({                                                                                         \
		__u32 __v;                                                                         \
		asm volatile("%0 = *(u32 *)(%1 + %2)"                                              \
			     : "=r"(__v)                                                           \
			     : "r"(ctx), "i"(__builtin_offsetof(struct __sk_buff, field)));        \
		__v;                                                                               \
	})

/* Payload bytes per segment of a GSO skb (virtio/veth TSO, GRO); 0: none. */
static __always_inline __u32 ctx_gso_size(const kvx_ctx_t *ctx)
{
	return ctx_load_u32(ctx, gso_size);
}

/*
 * Does the packet exceed the MTU of ifindex?  seg_len: the IPv4 length of
 * the largest packet it leaves as (nat.h pkt_seg_len).  bpf_check_mtu()
 * answers for the skb as a whole and passes any GSO skb (as the route
 * lookup's is_skb_forwardable() does), which would let a TSO super-packet
 * through to a device that then drops every segment without an ICMP: for
 * GSO the segment is compared with the MTU the helper reports.
 * (BPF_MTU_CHK_SEGS would do the same in the kernel, but it needs the skb's
 * transport header, which a frame at TC ingress need not have set.)
 */
static __always_inline int ctx_exceeds_mtu(kvx_ctx_t *ctx, __u32 ifindex, __u32 seg_len,
					   __u32 *mtu)
{
	__u32 mtu_len = 0;
	long rc = bpf_check_mtu(ctx, ifindex, &mtu_len, 0, 0);

	if (mtu)
		*mtu = mtu_len; /* the helper reports the device's MTU either way */
	if (rc == BPF_MTU_CHK_RET_FRAG_NEEDED)
		return 1;
	return rc == BPF_MTU_CHK_RET_SUCCESS && ctx_gso_size(ctx) && seg_len > mtu_len;
}

/* The skb's mark (tc, nftables, a VPN's fwmark): routing policy may use it. */
static __always_inline __u32 ctx_mark(const kvx_ctx_t *ctx)
{
	return ctx_load_u32(ctx, mark);
}

/*
 * Turn the frame into room for an ICMP error about it (icmp.h icmp_reply):
 * cut it to keep bytes (Ethernet + the quoted part), then open room bytes
 * after the Ethernet header.  Cutting drops the skb's GSO state and a
 * CHECKSUM_COMPLETE skb->csum, which the new bytes would make wrong (an
 * unchanged length would keep it: then grow first); it refuses to cut
 * before the checksum field of a CHECKSUM_PARTIAL skb (__bpf_skb_min_len),
 * which icmp_reply deals with.  The adjust_room resets CHECKSUM_UNNECESSARY.
 */
static __always_inline int ctx_icmp_reshape(kvx_ctx_t *ctx, __u32 keep, __u32 room)
{
	if (ctx->len == keep && bpf_skb_change_tail(ctx, keep + 4, 0))
		return -1;
	if (bpf_skb_change_tail(ctx, keep, 0))
		return -1;
	return bpf_skb_adjust_room(ctx, room, BPF_ADJ_ROOM_MAC, 0) ? -1 : 0;
}

/*
 * Make the frame len bytes long, for a message written over it whole
 * (nd6.h nd_answer).  Always ends with a cut, which drops a
 * CHECKSUM_COMPLETE skb->csum that the rewrite would make wrong (see
 * ctx_icmp_reshape): a frame not longer than len is grown past it first.
 */
static __always_inline int ctx_set_len(kvx_ctx_t *ctx, __u32 len)
{
	if (ctx->len <= len && bpf_skb_change_tail(ctx, len + 4, 0))
		return -1;
	return bpf_skb_change_tail(ctx, len, 0) ? -1 : 0;
}

static __always_inline long ctx_redirect(__u32 ifindex)
{
	return bpf_redirect(ifindex, 0);
}

/* A copy of len bytes from off, linear or not (a fragment to park). */
static __always_inline int ctx_load_bytes(const kvx_ctx_t *ctx, __u32 off, void *to, __u32 len)
{
	return bpf_skb_load_bytes(ctx, off, to, len) ? -1 : 0;
}

#endif /* KVX_CTX_SKB_H */
