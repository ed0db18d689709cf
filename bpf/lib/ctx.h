/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Which context layer the datapath is built for: the XDP object defines
 * KVX_CTX_XDP before including anything, everything else is TC.
 */
#ifndef KVX_CTX_H
#define KVX_CTX_H

#ifdef KVX_CTX_XDP
#include "ctx_xdp.h"
#else
#include "ctx_skb.h"
#endif

#endif /* KVX_CTX_H */
