/* SPDX-License-Identifier: GPL-2.0 */
#ifndef KVX_FIB_H
#define KVX_FIB_H

#include <linux/in.h>
#include "parse.h"

#ifndef AF_INET
#define AF_INET 2
#endif

/*
 * Route the (untranslated) packet as the kernel would, from the device the
 * stack sees it arrive on: the bridge (TC runs there; XDP runs on a port,
 * which has no forwarding of its own, so it names the bridge too).  Needs
 * forwarding enabled on that device (else FWD_DISABLED).
 * TC passes tot_len 0 so the kernel checks the skb itself against the
 * egress MTU, which is GSO-aware (is_skb_forwardable), instead of a plain
 * length that a TSO super-packet would always exceed; XDP frames are never
 * GSO, so XDP passes the IP length and gets FRAG_NEEDED from the lookup.
 */
static __always_inline int fib_route(kvx_ctx_t *ctx, const struct kvx_pkt *p,
				     struct bpf_fib_lookup *fib, __u32 ifindex, __u16 tot_len)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = AF_INET;
	fib->tos = p->tos;
	fib->l4_protocol = p->proto;
	if (p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP) {
		fib->sport = p->sport;
		fib->dport = p->dport;
	}
	fib->ipv4_src = p->saddr;
	fib->ipv4_dst = p->daddr;
	fib->tot_len = tot_len;
	fib->ifindex = ifindex;
	return bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
}

#endif /* KVX_FIB_H */
