/* SPDX-License-Identifier: GPL-2.0 */
#ifndef KVX_STATS_H
#define KVX_STATS_H

#include "maps.h"

/* One counter bump per packet, with a named reason (abi.h KVX_REASONS). */
static __always_inline void stats_count(enum kvx_reason reason, __u32 bytes)
{
	__u32 key = reason;
	struct kvx_stat *st = bpf_map_lookup_elem(&kvx_stats, &key);

	if (st) {
		st->packets++;
		st->bytes += bytes;
	}
}

#endif /* KVX_STATS_H */
