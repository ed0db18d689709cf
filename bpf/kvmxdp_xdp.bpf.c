/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kvmxdp XDP entry points: the fast path in front of the TC programs
 * (lib/xdp.h, lib/xdp6.h).  Built from the same lib headers with the XDP
 * context layer; shares every map of kvmxdp_tc (the loader hands it their
 * fds) but its own program array.
 */
#define KVX_CTX_XDP 1
#include "xdp6.h"

SEC("xdp")
int kvx_xdp_port6(struct xdp_md *ctx);
SEC("xdp")
int kvx_xdp_up6(struct xdp_md *ctx);

/*
 * The IPv6 programs (abi.h kvx_xdp6progs), filled by libbpf when the
 * object loads; the daemon pins the array next to its XDP links.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, KVX_XDP6_MAX);
	__type(key, __u32);
	__array(values, int(struct xdp_md *));
} kvx_xdp6progs SEC(".maps") = {
	.values =
		{
			[KVX_XDP6_PORT] = (void *)&kvx_xdp_port6,
			[KVX_XDP6_UP] = (void *)&kvx_xdp_up6,
		},
};

/*
 * An IPv6 frame continues in its own program (its own stack and verifier
 * budget); an empty slot returns here, where the IPv4 program hands the
 * frame to TC.  In the entry function itself, as the TC programs' (a tail
 * call from a subprogram is limited by its callers' frames).
 */
static __always_inline void xdp6_tail_call(struct xdp_md *ctx, __u32 slot)
{
	struct ethhdr *eth = ctx_data(ctx);

	if ((void *)(eth + 1) <= ctx_data_end(ctx) && eth->h_proto == bpf_htons(ETH_P_IPV6))
		bpf_tail_call(ctx, &kvx_xdp6progs, slot);
}

/* A bridge port (veth of a container or netns guest): guests' frames to
 * the host, translated and redirected to the uplink. */
SEC("xdp")
int kvx_xdp_port(struct xdp_md *ctx)
{
	gstats_clear();
	xdp6_tail_call(ctx, KVX_XDP6_PORT);
	return xdp_from_guest(ctx);
}

/* The uplink (a wired NIC with native XDP): replies for guests' flows,
 * translated and redirected to the guest's bridge port. */
SEC("xdp")
int kvx_xdp_up(struct xdp_md *ctx)
{
	gstats_clear();
	xdp6_tail_call(ctx, KVX_XDP6_UP);
	return xdp_from_uplink(ctx);
}

/* Tail-called from kvx_xdp_port: a guest's IPv6 frame (NAT66). */
SEC("xdp")
int kvx_xdp_port6(struct xdp_md *ctx)
{
	return xdp6_from_guest(ctx);
}

/* Tail-called from kvx_xdp_up: an IPv6 frame from the uplink (NAT66). */
SEC("xdp")
int kvx_xdp_up6(struct xdp_md *ctx)
{
	return xdp6_from_uplink(ctx);
}

char LICENSE[] SEC("license") = "GPL";
