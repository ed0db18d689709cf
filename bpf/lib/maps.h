/* SPDX-License-Identifier: GPL-2.0 */
/* Map definitions.  Layouts live in kvmxdp/abi.h; sizes are defaults that
 * the loader overrides with bpf_map__set_max_entries() before load. */
#ifndef KVX_MAPS_H
#define KVX_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "kvmxdp/abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kvx_cfg);
} kvx_cfg SEC(".maps");

/*
 * Plain (preallocated) hash maps, not LRU: an LRU map evicts one half of a
 * live NAT pair (cilium #29305; docs/pitfalls.md, lru-half-pairs).  A full
 * table is a counted drop of the new flow; expiry is the daemon's GC, and
 * the datapath reclaims expired flows itself when an insert finds kvx_ct
 * full (ct.h ct_reclaim).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KVX_BIND_DEFAULT_SIZE);
	__type(key, struct kvx_bind_key);
	__type(value, struct kvx_bind_val);
} kvx_bind SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KVX_CT_DEFAULT_SIZE);
	__type(key, struct kvx_ct_key);
	__type(value, struct kvx_ct_val);
} kvx_ct SEC(".maps");

/* Port overlapping's claims (abi.h kvx_ovl), sized as kvx_ct by the
 * loader.  A plain hash for the reason above (an evicted claim would send
 * its flow's replies to the port's owner); not preallocated: empty unless
 * a guest runs out of ports, and an element is never reused under a
 * lookup's pointer. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, KVX_CT_DEFAULT_SIZE);
	__type(key, struct kvx_ovl_key);
	__type(value, struct kvx_ovl_val);
} kvx_ovl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KVX_R_MAX);
	__type(key, __u32);
	__type(value, struct kvx_stat);
} kvx_stats SEC(".maps");

/* Few entries: one per mapped external address. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __be32);
	__type(value, struct kvx_extaddr_val);
} kvx_extaddr SEC(".maps");

/* IPv6 mapped addresses and whether they are announced (abi.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KVX_EXTADDR6_MAX);
	__type(key, struct kvx_extaddr6_key);
	__type(value, struct kvx_extaddr_val);
} kvx_extaddr6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KVX_FRAG_DEFAULT_SIZE);
	__type(key, struct kvx_frag_key);
	__type(value, struct kvx_frag_val);
} kvx_frag SEC(".maps");

/* The host's inbound datagrams (abi.h): apart from the guests' entries. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KVX_FRAG_DEFAULT_SIZE);
	__type(key, struct kvx_frag_key);
	__type(value, struct kvx_fraghost_val);
} kvx_fraghost SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KVX_FRAG_DEFAULT_SIZE);
	__type(key, struct kvx_frag6_key);
	__type(value, struct kvx_fraghost_val);
} kvx_fraghost6 SEC(".maps");

/* Later fragments ahead of their first, for the daemon's park (abi.h). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, KVX_FRAGQ_BYTES);
} kvx_fragq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KVX_FRAG_DEFAULT_SIZE);
	__type(key, struct kvx_frag6_key);
	__type(value, struct kvx_frag6_val);
} kvx_frag6 SEC(".maps");

/* Flow counts per guest address for the flow quota (abi.h).  The loader
 * sizes it to the subnet (at most KVX_GFLOWS_MAX).  Mappable: the daemon's
 * GC corrects it with atomic adds (control/gc.cpp). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, KVX_GFLOWS_MAX);
	__type(key, __u32);
	__type(value, struct kvx_gflows_val);
} kvx_gflows SEC(".maps");

/* Guest address -> owning MAC (abi.h); the loader sizes it to the subnet,
 * as kvx_gflows. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KVX_GFLOWS_MAX);
	__type(key, __be32);
	__type(value, struct kvx_guest_val);
} kvx_guest SEC(".maps");

/* Per-CPU scratch (abi.h KVX_MAP_SCRATCH). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KVX_SCRATCH_SLOTS);
	__type(key, __u32);
	__type(value, struct kvx_ct_val);
} kvx_scratch SEC(".maps");

/* Per-guest counters (abi.h kvx_gstats): per-CPU, no atomics on the
 * per-packet path; a reader sums the CPUs of the slots it shows. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KVX_GSTATS_SLOTS);
	__type(key, __u32);
	__type(value, struct kvx_gstat);
} kvx_gstats SEC(".maps");

/* The guest the current packet is charged to (abi.h kvx_gcur). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kvx_gcur);
} kvx_gcur SEC(".maps");

/* The timestamp of the TCP SYN or FIN being processed (abi.h kvx_tcpts). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kvx_tcpts);
} kvx_tcpts SEC(".maps");

/* Half-open inbound flows per guest slot, for early drop (abi.h). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KVX_HALFOPEN_GUESTS);
	__type(key, __u32);
	__type(value, struct kvx_halfopen_val);
} kvx_halfopen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KVX_HALFOPEN_GUESTS);
	__type(key, __u32);
	__type(value, struct kvx_halfopen6_val);
} kvx_halfopen6 SEC(".maps");

/* A guest's first ring is made from this (never written: .bss, as the
 * values are larger than the per-CPU scratch and the stack allows). */
struct kvx_halfopen6_val kvx_halfopen_zero;

/* Each guest's recently closed ports, for reuse at its port limit (abi.h
 * kvx_gtw). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KVX_GTW_GUESTS);
	__type(key, __u32);
	__type(value, struct kvx_gtw_val);
} kvx_gtw SEC(".maps");

/* Each guest's recently bound ports, per protocol, for port overlapping
 * (abi.h kvx_gown). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KVX_GOWN_GUESTS * 3);
	__type(key, __u32);
	__type(value, struct kvx_gtw_val);
} kvx_gown SEC(".maps");

/* Dynamic bindings per guest for the port limit (abi.h kvx_gports); sized
 * like kvx_gflows by the loader; mappable as kvx_gflows. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, KVX_GFLOWS_MAX);
	__type(key, __u32);
	__type(value, __u32);
} kvx_gports SEC(".maps");

/* Tenants per guest, bounded by the port limit (abi.h kvx_gtenant); as
 * kvx_gports. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, KVX_GFLOWS_MAX);
	__type(key, __u32);
	__type(value, __u32);
} kvx_gtenant SEC(".maps");

/* Ports the host listens on, never allocated (abi.h kvx_portx). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KVX_PORTX_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} kvx_portx SEC(".maps");

/* The XDP fast path's devices and learnt guest MACs (abi.h); the TC
 * object carries them too, so that one set of pins serves both. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KVX_XDEV_MAX);
	__type(key, __u32);
	__type(value, struct kvx_xdev_val);
} kvx_xdev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KVX_XFDB_SIZE);
	__type(key, struct kvx_xfdb_key);
	__type(value, struct kvx_xfdb_val);
} kvx_xfdb SEC(".maps");

/* The host's tunnel peers (abi.h), written by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KVX_HOSTTUN_MAX);
	__type(key, struct kvx_hosttun_key);
	__type(value, struct kvx_hosttun_val);
} kvx_hosttun SEC(".maps");

/* The host's own IPv4 addresses (abi.h), written by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KVX_HOSTADDR_MAX);
	__type(key, __be32);
	__type(value, __u32);
} kvx_hostaddr SEC(".maps");

/* Rate limit of kvmxdp's own ICMP errors (abi.h). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KVX_ICMPRL_SIZE);
	__type(key, __be32);
	__type(value, struct kvx_icmprl_val);
} kvx_icmprl SEC(".maps");

/* IPv6 (abi.h): configuration and the NAT66 tables.  One entry each here,
 * what IPv6 off costs; the loader sizes them when it is on.  Preallocated
 * for the reason above. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kvx_cfg6);
} kvx_cfg6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct kvx_ct6_key);
	__type(value, struct kvx_ct6_val);
} kvx_ct6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct kvx_bind6_key);
	__type(value, struct kvx_bind6_val);
} kvx_bind6 SEC(".maps");

/* Relay: guest addresses and their owners (abi.h); sized by the loader
 * when relay is on. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct kvx_nd_key);
	__type(value, struct kvx_nd_val);
} kvx_nd SEC(".maps");

/* Guest MAC -> bridge port (abi.h kvx_brport), written by the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KVX_BRPORT_SIZE);
	__type(key, struct kvx_xfdb_key);
	__type(value, struct kvx_xfdb_val);
} kvx_brport SEC(".maps");

/* Datapath placements per port (abi.h kvx_brplace, nat.h brport_place). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KVX_BRPLACE_SIZE);
	__type(key, __u32);
	__type(value, struct kvx_brplace_val);
} kvx_brplace SEC(".maps");

/* The port guard's lease (abi.h kvx_guard): [0] = held until, boot ns. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} kvx_guard SEC(".maps");

/* kvx_nd entries per guest (abi.h kvx_gaddrs); sized and indexed like
 * kvx_gflows, mmapable for the daemon's atomic corrections. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, KVX_GFLOWS_MAX);
	__type(key, __u32);
	__type(value, __u32);
} kvx_gaddrs SEC(".maps");

static __always_inline const struct kvx_cfg *cfg_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&kvx_cfg, &zero);
}

static __always_inline const struct kvx_cfg6 *cfg6_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&kvx_cfg6, &zero);
}

#endif /* KVX_MAPS_H */
