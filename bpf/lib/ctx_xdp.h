/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Context layer for XDP (struct xdp_md): the same names as ctx_skb.h, so
 * parse.h, csum.h, ct.h and nat4_rewrite() build unchanged for the XDP
 * fast path (xdp.h).
 *
 * The difference that matters: XDP sees bytes, not an skb.  A frame whose
 * sender left the L4 checksum to offload (CHECKSUM_PARTIAL: virtio, veth,
 * tap) carries only the pseudo-header sum in the field, and nothing in an
 * xdp_md says so.  The skb helpers handle that state; plain arithmetic on
 * such a field and a redirect would send a wrong checksum (what broke
 * naive XDP SNAT).  So the fast path only ever rewrites frames whose L4
 * checksum it has verified over the whole segment (l4_csum_complete):
 * then the field is a real checksum and RFC 1624 updates keep it right.
 * Everything else is handed to the TC path (XDP_PASS).
 */
#ifndef KVX_CTX_XDP_H
#define KVX_CTX_XDP_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include "csum_math.h"

typedef struct xdp_md kvx_ctx_t;

#define CTX_PASS XDP_PASS
#define CTX_DROP XDP_DROP

/* The flag bits of bpf_l4_csum_replace() that matter here; the size is in
 * the low four bits, as for the helper. */
#define KVX_CSUM_SIZE_MASK 0xf

static __always_inline void *ctx_data(const kvx_ctx_t *ctx)
{
	return (void *)(long)ctx->data;
}

static __always_inline void *ctx_data_end(const kvx_ctx_t *ctx)
{
	return (void *)(long)ctx->data_end;
}

/* Programs without BPF_F_XDP_HAS_FRAGS only ever get linear frames. */
static __always_inline __u32 ctx_len(const kvx_ctx_t *ctx)
{
	return ctx->data_end - ctx->data;
}

static __always_inline __u32 ctx_ifindex(const kvx_ctx_t *ctx)
{
	return ctx->ingress_ifindex;
}

/* xdp_from_guest() compares the destination MAC with the bridge's itself
 * (an XDP program runs on the port, before the bridge decides). */
static __always_inline int ctx_frame_for_host(const kvx_ctx_t *ctx)
{
	return 1;
}

/* Linear already. */
static __always_inline void ctx_pull_headers(kvx_ctx_t *ctx)
{
}

static __always_inline void ctx_pull_len(kvx_ctx_t *ctx, __u32 len)
{
}

/* The 16-bit field at off, bounds-checked for the verifier. */
static __always_inline __sum16 *ctx_field16(kvx_ctx_t *ctx, __u32 off)
{
	void *data = ctx_data(ctx);
	__sum16 *f;

	/* Checksum fields sit in the first 128 bytes (L4 offset <= 74). */
	if (off > 126)
		return NULL;
	f = data + off;
	if ((void *)(f + 1) > ctx_data_end(ctx))
		return NULL;
	return f;
}

static __always_inline __sum16 ctx_csum_update(__sum16 hc, __u32 from, __u32 to, __u32 size)
{
	return size == 2 ? csum16_update(hc, from, to) : csum32_update(hc, from, to);
}

static __always_inline int ctx_l3_csum_replace(kvx_ctx_t *ctx, __u32 off, __u32 from, __u32 to,
					       __u32 size)
{
	__sum16 *f = ctx_field16(ctx, off);

	if (!f)
		return -1;
	*f = ctx_csum_update(*f, from, to, size);
	return 0;
}

/*
 * The frame's checksum is complete (verified), so BPF_F_PSEUDO_HDR changes
 * are ordinary ones.  BPF_F_MARK_MANGLED_0 (UDP): a zero field means "no
 * checksum" and stays zero, and a computed zero is sent as 0xffff.
 */
static __always_inline int ctx_l4_csum_replace(kvx_ctx_t *ctx, __u32 off, __u32 from, __u32 to,
					       __u64 flags)
{
	__sum16 *f = ctx_field16(ctx, off);
	__sum16 v;

	if (!f)
		return -1;
	if ((flags & BPF_F_MARK_MANGLED_0) && !*f)
		return 0;
	v = ctx_csum_update(*f, from, to, flags & KVX_CSUM_SIZE_MASK);
	if ((flags & BPF_F_MARK_MANGLED_0) && !v)
		v = (__sum16)0xffff;
	*f = v;
	return 0;
}

/* XDP frames are never GSO. */
static __always_inline __u32 ctx_gso_size(const kvx_ctx_t *ctx)
{
	return 0;
}

/* Exact for linear frames: XDP_REDIRECT would drop what the target cannot
 * take, so FRAG_NEEDED frames never reach here (fib_route checks tot_len). */
static __always_inline int ctx_exceeds_mtu(kvx_ctx_t *ctx, __u32 ifindex, __u32 seg_len,
					   __u32 *mtu)
{
	__u32 mtu_len = 0;
	int rc = bpf_check_mtu(ctx, ifindex, &mtu_len, 0, 0) == BPF_MTU_CHK_RET_FRAG_NEEDED;

	if (mtu)
		*mtu = mtu_len;
	return rc;
}

/* No skb, no mark yet: tc and netfilter mark packets after XDP. */
static __always_inline __u32 ctx_mark(const kvx_ctx_t *ctx)
{
	return 0;
}

/* XDP sends no ICMP errors: what would get one goes to TC (xdp.h). */
static __always_inline int ctx_icmp_reshape(kvx_ctx_t *ctx, __u32 keep, __u32 room)
{
	return -1;
}

/* Nor neighbour advertisements: ND is TC's (xdp6.h). */
static __always_inline int ctx_set_len(kvx_ctx_t *ctx, __u32 len)
{
	return -1;
}

static __always_inline long ctx_redirect(__u32 ifindex)
{
	return bpf_redirect(ifindex, 0);
}

/* XDP parks no fragments: fragments go to TC (xdp.h). */
static __always_inline int ctx_load_bytes(const kvx_ctx_t *ctx, __u32 off, void *to, __u32 len)
{
	return -1;
}

#endif /* KVX_CTX_XDP_H */
