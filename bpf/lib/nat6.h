/* SPDX-License-Identifier: GPL-2.0 */
/*
 * IPv6 datapath (docs/ipv6.md): the programs the entry points tail-call an
 * IPv6 frame into.  Until NAT66 lands here, IPv6 stays the host's: every
 * frame is counted PASS_NOT_IP and passed, as the IPv4 programs did.
 */
#ifndef KVX_NAT6_H
#define KVX_NAT6_H

#include "nat.h"

static __always_inline int nat6_from_guest(kvx_ctx_t *ctx)
{
	return verdict(KVX_R_PASS_NOT_IP, ctx_len(ctx));
}

static __always_inline int nat6_from_uplink(kvx_ctx_t *ctx)
{
	return verdict(KVX_R_PASS_NOT_IP, ctx_len(ctx));
}

#endif /* KVX_NAT6_H */
