/* SPDX-License-Identifier: GPL-2.0 */
#ifndef KVX_STATS_H
#define KVX_STATS_H

#include "maps.h"
#include "kvmxdp/ct_rules.h"

/*
 * Per-guest counters (abi.h kvx_gstats).  A program names the guest a
 * packet belongs to once it knows it (gstats_set); the packet's one
 * counter bump (stats_count) charges that guest under the same reason and
 * clears the mark, so no verdict site has to name the guest and a packet
 * is never charged twice.  Both are BPF-to-BPF calls: one copy each, off
 * the stack of the main paths, which sit near the verifier's limit.
 */

/* The class a verdict counts under for its guest: -1 translated (out or
 * in, by the mark), -2 not the guest's translated traffic nor a drop of it
 * (handed to the host stack or to TC, ARP, kvmxdp's own ICMP). */
static __always_inline int gstats_class(__u32 r)
{
	switch (r) {
	case KVX_R_XLATE_OUT:
	case KVX_R_XLATE_IN:
	case KVX_R_XLATE_HAIRPIN:
	case KVX_R_XLATE_RELATED_IN:
	case KVX_R_XLATE_RELATED_OUT:
	case KVX_R_XDP_XLATE_OUT:
	case KVX_R_XDP_XLATE_IN:
	case KVX_R_RELAY_OUT:
	case KVX_R_RELAY_IN:
		return -1;
	case KVX_R_DROP_GUEST_QUOTA:
	case KVX_R_DROP_GUEST_PORTS:
	case KVX_R_DROP_GUEST_ADDRS:
	case KVX_R_DROP_ND_RELAY_LIMIT:
		return KVX_GD_QUOTA;
	case KVX_R_DROP_TABLE_FULL:
	case KVX_R_DROP_PORTS_EXHAUSTED:
	case KVX_R_DROP_NO_UPLINK_ADDR:
	case KVX_R_DROP_HOST_TUNNEL:
		return KVX_GD_NO_MAPPING;
	case KVX_R_DROP_SPOOF_MAC:
	case KVX_R_DROP_ND_UNCLAIMED:
		return KVX_GD_SPOOF;
	case KVX_R_DROP_TOO_BIG:
	case KVX_R_DROP_TOO_BIG_IN:
		return KVX_GD_TOO_BIG;
	case KVX_R_DROP_TCP_NO_FLOW:
	case KVX_R_DROP_TCP_WINDOW:
		return KVX_GD_TCP;
	default:
		break;
	}
#define KVX_X_GDROP(name, drop, desc)                                                              \
	if (r == KVX_R_##name)                                                                     \
		return drop ? KVX_GD_OTHER : -2;
	KVX_REASONS(KVX_X_GDROP)
#undef KVX_X_GDROP
	return -2;
}

#ifdef KVX_NO_GUEST_STATS
/* A measurement build (cmake -DKVMXDP_BPF_EXTRA_FLAGS=-DKVX_NO_GUEST_STATS):
 * the per-guest counters compiled out, so the benchmark can put a number on
 * what they cost (bench/README.md, --kvmxdp-base).  Never shipped. */
static __always_inline void gstats_take(__u32 reason, __u32 bytes) {}
static __always_inline void gstats_set(const __u8 *mac, __be32 addr, __u32 seed, __u32 flags) {}
static __always_inline void gstats_clear(void) {}
#else
static __noinline void gstats_take(__u32 reason, __u32 bytes)
{
	__u32 zero = 0, slot, flags;
	struct kvx_gcur *cur = bpf_map_lookup_elem(&kvx_gcur, &zero);
	struct kvx_gstat *st;
	int c;

	if (!cur || !(cur->flags & KVX_GCUR_F_SET))
		return;
	slot = cur->slot;
	flags = cur->flags;
	cur->flags = 0;
	c = gstats_class(reason);
	if (c == -2)
		return;
	st = bpf_map_lookup_elem(&kvx_gstats, &slot);
	if (!st)
		return;
	if (c >= 0) {
		if (c < KVX_GD_MAX)
			st->drops[c]++;
	} else if (flags & KVX_GCUR_F_IN) {
		st->pkts_in++;
		st->bytes_in += bytes;
	} else {
		st->pkts_out++;
		st->bytes_out += bytes;
	}
}

/* The packet being processed is the guest's at addr, whose frames carry
 * mac (NULL or zero: an address without a known owner); flags
 * KVX_GCUR_F_IN for a packet to it. */
static __noinline void gstats_set(const __u8 *mac, __be32 addr, __u32 seed, __u32 flags)
{
	__u32 zero = 0;
	struct kvx_gcur *cur = bpf_map_lookup_elem(&kvx_gcur, &zero);
	const __u8 *owner = mac;

	if (!cur)
		return;
	if (owner && !(owner[0] | owner[1] | owner[2] | owner[3] | owner[4] | owner[5]))
		owner = NULL;
	cur->slot = kvx_guest_slot(owner, addr, seed) & (KVX_GSTATS_SLOTS - 1);
	cur->flags = KVX_GCUR_F_SET | (flags & KVX_GCUR_F_IN);
}

/* Every program starts with no guest named: a path that named one and
 * ended without the counter bump (or an XDP run that handed its frame to
 * TC) must not have the next packet on this CPU charged to that guest. */
static __always_inline void gstats_clear(void)
{
	__u32 zero = 0;
	struct kvx_gcur *cur = bpf_map_lookup_elem(&kvx_gcur, &zero);

	if (cur)
		cur->flags = 0;
}
#endif /* KVX_NO_GUEST_STATS */

/* The machine-wide counter of a reason alone: a count beside the packet's
 * own reason, which the packet's guest is not charged for. */
static __always_inline void stats_count_global(enum kvx_reason reason, __u32 bytes)
{
	__u32 key = reason;
	struct kvx_stat *st = bpf_map_lookup_elem(&kvx_stats, &key);

	if (st) {
		st->packets++;
		st->bytes += bytes;
	}
}

/* One counter bump per packet, with a named reason (abi.h KVX_REASONS). */
static __always_inline void stats_count(enum kvx_reason reason, __u32 bytes)
{
	stats_count_global(reason, bytes);
	gstats_take(reason, bytes);
}

#endif /* KVX_STATS_H */
