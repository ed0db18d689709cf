/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kvmxdp XDP entry points: the fast path in front of the TC programs
 * (lib/xdp.h).  Built from the same lib headers with the XDP context layer;
 * shares every map of kvmxdp_tc (the loader hands it their fds).
 */
#define KVX_CTX_XDP 1
#include "xdp.h"

/* A bridge port (veth of a container or netns guest): guests' frames to
 * the host, translated and redirected to the uplink. */
SEC("xdp")
int kvx_xdp_port(struct xdp_md *ctx)
{
	gstats_clear();
	return xdp_from_guest(ctx);
}

/* The uplink (a wired NIC with native XDP): replies for guests' flows,
 * translated and redirected to the guest's bridge port. */
SEC("xdp")
int kvx_xdp_up(struct xdp_md *ctx)
{
	gstats_clear();
	return xdp_from_uplink(ctx);
}

char LICENSE[] SEC("license") = "GPL";
