// SPDX-License-Identifier: GPL-2.0
// Compile-time proof that the C++ side sees the ABI header (bpf/include/
// kvmxdp/abi.h) with exactly the layout the BPF programs were built with.
// The header is included, never copied; these asserts catch a compiler or
// packing difference and force a KVX_ABI_VERSION bump to be deliberate.
#pragma once

#include <netinet/in.h>

#include <cstddef>

#include "kvmxdp/abi.h"
#include "kvmxdp/ct_rules.h"

namespace kvmxdp::abi {

static_assert(KVX_ABI_VERSION == 32, "ABI changed: review abi_check.hpp and bump");
// Version 3 changed the state tables: pinned tables of 1..2 are not reused;
// version 5 appended to kvx_cfg (rewritten by every attach) and gave
// kvx_bind_val's padding a meaning that its zero reads as "none"; version 6
// added kvx_gtw and made tw_remotes age (its zero still reads as "none");
// version 7 added the IPv6 maps, none of the IPv4 layouts changed; version 8
// only reasons; version 12 added kvx_gaddrs and a kvx_nd state; version 13
// added kvx_ovl, kvx_gown and KVX_BIND_F_SHARED (0 in older entries: nothing
// shared); version 14 added kvx_gtenant; version 15 made kvx_gown an LRU
// hash keyed by the full guest slot (and added KVX_CT_F_HALFOPEN); version 16
// appended kvx_cfg.tenant_cap; version 17 added the ring kvx_fragq and gave
// kvx_frag_val's MACs a meaning in OUT entries (0 in older ones: their parked
// fragments are not sent); version 18 gave kvx_nd_val
// dad_probes and dad_ns (32 bytes: a pinned 24-byte kvx_nd is replaced and
// its entries carried over) and added kvx_brport; version 19 only a kvx_xdev flag
// (KVX_XDEV_F_LEARN); version 20 gave kvx_frag IN entries of addr 0 a meaning
// (the host's datagram) and kvx_fragq records a 16-byte header and three
// sizes (the ring is not pinned state: nothing carried over); version 21 gave
// kvx_xfdb_val's padding a meaning (flags: 0 in older entries, nothing static);
// version 22 made kvx_halfopen an LRU hash keyed by the full guest slot (a
// pinned array is replaced: hints only) and added kvx_halfopen6; version 23
// made the rings 64 entries with push numbers and a hole to refill, and
// kvx_scratch two entries (both replaced: no state); version 24 gave IPv6
// bindings the TIME_WAIT flags and tw_remotes, and an IPv6 flow's
// ct.ext_addr its counted slot (0 in older entries); version
// 25 moved the host's fragment marks to kvx_fraghost and kvx_fraghost6 (the
// addr-0 IN entries older versions left in kvx_frag/kvx_frag6 still read
// as the host's); version 26 gave kvx_ct_tcp.fin_ts (was padding) and map
// kvx_tcpts; version 27 added map kvx_hostaddr (created when absent); version
// 28 added map kvx_guard (created when absent), flags (kvx_brport's
// KVX_BRPORT_F_HELD, 0 in older entries: the port guard drops nothing; two
// kvx_xdev flags) and a reason; version 29 slotted the quotas by bridge port
// (attach recounts them) and gave kvx_scratch a third entry (replaced: no
// state); version 30 added map kvx_brplace (created when absent) and a
// reason; version 31 split kvx_ct_val.pkts_in into a 32-bit count and the
// flow's counted slot (both families; 0 in older entries: none) and gave a
// dynamic OUT half's tw_remotes (unused there) its counted slot; version 32
// added the XDP object's program array kvx_xdp6progs (pinned by the daemon
// with its XDP links, none of the shared tables).
static_assert(KVX_ABI_TABLES_SINCE == 3);
static_assert(sizeof(kvx_brplace_val) == 16);
static_assert(offsetof(kvx_brplace_val, window_ns) == 0);
static_assert(offsetof(kvx_brplace_val, placed) == 8);
// kvx_ct_val.slot keeps a guest slot in 16 bits (ct_rules.h kvx_ct_slot_rec).
static_assert(KVX_GFLOWS_MAX <= 0x10000);

static_assert(sizeof(kvx_bind_key) == 8);
static_assert(offsetof(kvx_bind_key, dir) == 0);
static_assert(offsetof(kvx_bind_key, proto) == 1);
static_assert(offsetof(kvx_bind_key, port) == 2);
static_assert(offsetof(kvx_bind_key, addr) == 4);

static_assert(sizeof(kvx_bind_val) == 32);
static_assert(offsetof(kvx_bind_val, addr) == 0);
static_assert(offsetof(kvx_bind_val, port) == 4);
static_assert(offsetof(kvx_bind_val, flags) == 6);
static_assert(offsetof(kvx_bind_val, guest_mac) == 8);
static_assert(offsetof(kvx_bind_val, gw_mac) == 14);
static_assert(offsetof(kvx_bind_val, tw_remotes) == 20);
static_assert(offsetof(kvx_bind_val, slot) == 20);
static_assert(offsetof(kvx_bind_val, last_used_ns) == 24);

// Values stored in the tables: renumbering them misreads pinned entries.
static_assert(KVX_BIND_OUT == 0 && KVX_BIND_IN == 1);
static_assert(KVX_BIND_F_STATIC == 1 && KVX_BIND_F_ONE_TO_ONE == 2);
static_assert(KVX_BIND_F_MULTI == 4 && KVX_BIND_F_TW == 8 && KVX_BIND_F_RFIN == 16 &&
	      KVX_BIND_F_FLUSHED == 32 && KVX_BIND_F_SHARED == 64);
static_assert(KVX_PROTO_ANY == 0);

// kvx_ovl: (shared port, remote) -> guest endpoint (ct.h ovl_claim).
static_assert(sizeof(kvx_ovl_key) == 16);
static_assert(offsetof(kvx_ovl_key, ext_addr) == 0);
static_assert(offsetof(kvx_ovl_key, rem_addr) == 4);
static_assert(offsetof(kvx_ovl_key, ext_port) == 8);
static_assert(offsetof(kvx_ovl_key, rem_port) == 10);
static_assert(offsetof(kvx_ovl_key, proto) == 12);
static_assert(offsetof(kvx_ovl_key, _pad) == 13);
static_assert(sizeof(kvx_ovl_val) == 16);
static_assert(offsetof(kvx_ovl_val, addr) == 0);
static_assert(offsetof(kvx_ovl_val, port) == 4);
static_assert(offsetof(kvx_ovl_val, owner_port) == 6);
static_assert(offsetof(kvx_ovl_val, created_ns) == 8);

static_assert(sizeof(kvx_ct_key) == 16);
static_assert(offsetof(kvx_ct_key, int_addr) == 0);
static_assert(offsetof(kvx_ct_key, rem_addr) == 4);
static_assert(offsetof(kvx_ct_key, int_port) == 8);
static_assert(offsetof(kvx_ct_key, rem_port) == 10);
static_assert(offsetof(kvx_ct_key, proto) == 12);
static_assert(offsetof(kvx_ct_key, _pad) == 13);

static_assert(sizeof(kvx_ct_val) == 80);
static_assert(offsetof(kvx_ct_val, last_seen_ns) == 0);
static_assert(offsetof(kvx_ct_val, created_ns) == 8);
static_assert(offsetof(kvx_ct_val, ext_addr) == 16);
static_assert(offsetof(kvx_ct_val, ext_port) == 20);
static_assert(offsetof(kvx_ct_val, state) == 22);
static_assert(offsetof(kvx_ct_val, flags) == 23);
static_assert(offsetof(kvx_ct_val, pkts_out) == 24);
static_assert(offsetof(kvx_ct_val, pkts_in) == 32);
static_assert(offsetof(kvx_ct_val, slot) == 36);
static_assert(offsetof(kvx_ct_val, tcp) == 40);
static_assert(sizeof(kvx_ct_tcp) == 20);
static_assert(offsetof(kvx_ct_tcp, end) == 0);
static_assert(offsetof(kvx_ct_tcp, maxend) == 4);
static_assert(offsetof(kvx_ct_tcp, ack) == 8);
static_assert(offsetof(kvx_ct_tcp, maxwin) == 12);
static_assert(offsetof(kvx_ct_tcp, wscale) == 16);
static_assert(offsetof(kvx_ct_tcp, flags) == 17);
static_assert(offsetof(kvx_ct_tcp, fin_ts) == 18);
static_assert(KVX_CT_TCP_F_TS == 32 && KVX_CT_TCP_F_FIN_TAKEN == 64);
static_assert(KVX_CT_SIDE_GUEST == 0 && KVX_CT_SIDE_REMOTE == 1);
static_assert(KVX_CT_TCP_F_SYN == 1 && KVX_CT_TCP_F_ACK == 2 && KVX_CT_TCP_F_WSCALE == 4 &&
	      KVX_CT_TCP_F_LOOSE == 8 && KVX_CT_TCP_F_FIN == 16);

static_assert(KVX_CT_NONE == 0 && KVX_CT_SYN_SENT == 1 && KVX_CT_ESTABLISHED == 2 &&
	      KVX_CT_FIN_WAIT == 3 && KVX_CT_TIME_WAIT == 4 && KVX_CT_CLOSE == 5 &&
	      KVX_CT_UDP == 6 && KVX_CT_SYN_RECV == 7 && KVX_CT_STATE_MAX == 8);
static_assert(KVX_CT_F_SEEN_REPLY == 1 && KVX_CT_F_FIN_OUT == 2 && KVX_CT_F_FIN_IN == 4 &&
	      KVX_CT_F_INBOUND == 8 && KVX_CT_F_STATIC == 16 && KVX_CT_F_ONE_TO_ONE == 32 &&
	      KVX_CT_F_SYNACK == 64);
// The shared rules (ct_rules.h) name the protocols without <linux/in.h>.
static_assert(KVX_IPPROTO_ICMP == IPPROTO_ICMP && KVX_IPPROTO_TCP == IPPROTO_TCP &&
	      KVX_IPPROTO_UDP == IPPROTO_UDP);

static_assert(sizeof(kvx_timeouts) == 40);
static_assert(offsetof(kvx_timeouts, tcp_syn_sent) == 0);
static_assert(offsetof(kvx_timeouts, tcp_established) == 4);
static_assert(offsetof(kvx_timeouts, tcp_fin_wait) == 8);
static_assert(offsetof(kvx_timeouts, tcp_time_wait) == 12);
static_assert(offsetof(kvx_timeouts, tcp_close) == 16);
static_assert(offsetof(kvx_timeouts, udp) == 20);
static_assert(offsetof(kvx_timeouts, udp_stream) == 24);
static_assert(offsetof(kvx_timeouts, icmp) == 28);
static_assert(offsetof(kvx_timeouts, other) == 32);
static_assert(offsetof(kvx_timeouts, tcp_syn_recv) == 36);

static_assert(sizeof(kvx_cfg) == 104);
static_assert(offsetof(kvx_cfg, abi_version) == 0);
static_assert(offsetof(kvx_cfg, flags) == 4);
static_assert(offsetof(kvx_cfg, uplink_addr) == 8);
static_assert(offsetof(kvx_cfg, uplink_ifindex) == 12);
static_assert(offsetof(kvx_cfg, bridge_ifindex) == 16);
static_assert(offsetof(kvx_cfg, subnet_addr) == 20);
static_assert(offsetof(kvx_cfg, subnet_mask) == 24);
static_assert(offsetof(kvx_cfg, nat_port_lo) == 28);
static_assert(offsetof(kvx_cfg, nat_port_hi) == 30);
static_assert(offsetof(kvx_cfg, timeouts) == 32);
static_assert(offsetof(kvx_cfg, uplink_mac) == 72);
static_assert(offsetof(kvx_cfg, clamp_mss) == 78);
static_assert(offsetof(kvx_cfg, flow_quota) == 80);
static_assert(offsetof(kvx_cfg, gw_addr) == 84);
static_assert(offsetof(kvx_cfg, guest_seed) == 88);
static_assert(offsetof(kvx_cfg, nat_skip_lo) == 92);
static_assert(offsetof(kvx_cfg, nat_skip_hi) == 94);
static_assert(offsetof(kvx_cfg, guest_ports) == 96);
static_assert(offsetof(kvx_cfg, tenant_cap) == 100);
static_assert(KVX_PORTX_WORDS * 64 == 65536);
static_assert(KVX_CFG_F_EIF == 1);
static_assert(KVX_CFG_F_OVERLAP == 2);

// kvx_gflows: counters per guest slot (ct_rules.h kvx_guest_slot masks).
static_assert((KVX_GFLOWS_MAX & (KVX_GFLOWS_MAX - 1)) == 0);
static_assert(sizeof(kvx_gflows_val) == 16);
static_assert(offsetof(kvx_gflows_val, out) == 0);
static_assert(offsetof(kvx_gflows_val, in) == 4);
static_assert(offsetof(kvx_gflows_val, reclaim_ns) == 8);

// kvx_gstats[slot & (KVX_GSTATS_SLOTS - 1)]: per-guest counters.
static_assert((KVX_GSTATS_SLOTS & (KVX_GSTATS_SLOTS - 1)) == 0);
static_assert(KVX_GSTATS_SLOTS <= KVX_GFLOWS_MAX);
static_assert(KVX_GD_MAX == 6);
static_assert(sizeof(kvx_gstat) == 32 + 8 * KVX_GD_MAX);
static_assert(offsetof(kvx_gstat, pkts_out) == 0);
static_assert(offsetof(kvx_gstat, bytes_out) == 8);
static_assert(offsetof(kvx_gstat, pkts_in) == 16);
static_assert(offsetof(kvx_gstat, bytes_in) == 24);
static_assert(offsetof(kvx_gstat, drops) == 32);
static_assert(sizeof(kvx_gcur) == 8);
static_assert(sizeof(kvx_tcpts) == 16);

static_assert((KVX_HALFOPEN_GUESTS & (KVX_HALFOPEN_GUESTS - 1)) == 0);
static_assert(sizeof(kvx_halfopen_val) == 8 + KVX_HALFOPEN_RING * (4 + sizeof(kvx_ct_key)));
static_assert(offsetof(kvx_halfopen_val, next) == 0);
static_assert(offsetof(kvx_halfopen_val, hole) == 4);
static_assert(offsetof(kvx_halfopen_val, seq) == 8);
static_assert(offsetof(kvx_halfopen_val, keys) == 8 + 4 * KVX_HALFOPEN_RING);
static_assert((KVX_HALFOPEN_RING & (KVX_HALFOPEN_RING - 1)) == 0);
static_assert(sizeof(kvx_halfopen6_val) == 8 + KVX_HALFOPEN_RING * (4 + sizeof(kvx_ct6_key)));
static_assert(offsetof(kvx_halfopen6_val, next) == 0);
static_assert(offsetof(kvx_halfopen6_val, hole) == 4);
static_assert(offsetof(kvx_halfopen6_val, seq) == 8);
static_assert(offsetof(kvx_halfopen6_val, keys) == 8 + 4 * KVX_HALFOPEN_RING);
// kvx_gtw: rings of closed ports per guest slot (ct.h gtw_push).
static_assert((KVX_GTW_GUESTS & (KVX_GTW_GUESTS - 1)) == 0);
static_assert((KVX_GTW_RING & (KVX_GTW_RING - 1)) == 0);
static_assert(sizeof(kvx_gtw_val) == 8 + KVX_GTW_RING * 2);
static_assert(offsetof(kvx_gtw_val, next) == 0);
static_assert(offsetof(kvx_gtw_val, _pad) == 4);
static_assert(offsetof(kvx_gtw_val, ports) == 8);
// tw_remotes: two generations and the epoch in 32 bits, bit 0 free.
static_assert(1 + 3 + 2 * KVX_TW_GEN_BITS == 32);

static_assert(sizeof(kvx_extaddr_val) == 8);
static_assert(offsetof(kvx_extaddr_val, flags) == 0);
static_assert(offsetof(kvx_extaddr_val, _pad) == 4);
static_assert(KVX_EXT_F_ARP == 1 && KVX_EXT_F_SUSPENDED == 2 && KVX_EXT_F_PROBING == 4 &&
	      KVX_EXT_F_CONFLICT == 8);

static_assert(sizeof(kvx_hostrev_key) == 16);
static_assert(offsetof(kvx_hostrev_key, sock_cookie) == 0);
static_assert(offsetof(kvx_hostrev_key, guest_addr) == 8);
static_assert(offsetof(kvx_hostrev_key, guest_port) == 12);
static_assert(offsetof(kvx_hostrev_key, proto) == 14);
static_assert(offsetof(kvx_hostrev_key, _pad) == 15);

static_assert(sizeof(kvx_hostrev_val) == 8);
static_assert(offsetof(kvx_hostrev_val, ext_addr) == 0);
static_assert(offsetof(kvx_hostrev_val, ext_port) == 4);
static_assert(offsetof(kvx_hostrev_val, _pad) == 6);

static_assert(sizeof(kvx_frag_key) == 12);
static_assert(offsetof(kvx_frag_key, saddr) == 0);
static_assert(offsetof(kvx_frag_key, daddr) == 4);
static_assert(offsetof(kvx_frag_key, id) == 8);
static_assert(offsetof(kvx_frag_key, proto) == 10);
static_assert(offsetof(kvx_frag_key, dir) == 11);

static_assert(sizeof(kvx_frag_val) == 24);
static_assert(offsetof(kvx_frag_val, addr) == 0);
static_assert(offsetof(kvx_frag_val, guest_mac) == 4);
static_assert(offsetof(kvx_frag_val, gw_mac) == 10);
static_assert(offsetof(kvx_frag_val, created_ns) == 16);

static_assert(sizeof(kvx_fraghost_val) == 8);
static_assert(offsetof(kvx_fraghost_val, created_ns) == 0);

static_assert(sizeof(kvx_fragq_hdr) == 16);
static_assert(offsetof(kvx_fragq_hdr, len) == 0);
static_assert(offsetof(kvx_fragq_hdr, dir) == 2);
static_assert(offsetof(kvx_fragq_hdr, mac) == 4);
static_assert(sizeof(kvx_fragq_rec) == 16 + KVX_FRAGQ_DATA);
static_assert(offsetof(kvx_fragq_rec, data) == 16);
// The classes: a record of each is a multiple of 8 bytes (the ring's
// alignment), and they grow.
static_assert((16 + KVX_FRAGQ_DATA_S) % 8 == 0 && (16 + KVX_FRAGQ_DATA_M) % 8 == 0);
static_assert(KVX_FRAGQ_DATA_S >= 20 && KVX_FRAGQ_DATA_S < KVX_FRAGQ_DATA_M &&
	      KVX_FRAGQ_DATA_M < KVX_FRAGQ_DATA);
static_assert(KVX_FRAG_HOST == 0); // never a guest's address
// The ring takes whole records: a power of 2 pages, larger than one.
static_assert((KVX_FRAGQ_BYTES & (KVX_FRAGQ_BYTES - 1)) == 0 && KVX_FRAGQ_BYTES % 4096 == 0);
static_assert(KVX_FRAGQ_DATA < 65536); // kvx_fragq_hdr.len

static_assert(sizeof(kvx_frag6_key) == 40);
static_assert(offsetof(kvx_frag6_key, saddr) == 0);
static_assert(offsetof(kvx_frag6_key, daddr) == 16);
static_assert(offsetof(kvx_frag6_key, id) == 32);
static_assert(offsetof(kvx_frag6_key, proto) == 36);
static_assert(offsetof(kvx_frag6_key, dir) == 37);

static_assert(sizeof(kvx_frag6_val) == 40);
static_assert(offsetof(kvx_frag6_val, addr) == 0);
static_assert(offsetof(kvx_frag6_val, guest_mac) == 16);
static_assert(offsetof(kvx_frag6_val, gw_mac) == 22);
static_assert(offsetof(kvx_frag6_val, created_ns) == 32);

// kvx_hosttun[(remote, proto)]: the host's tunnel peers.
static_assert(sizeof(kvx_hosttun_key) == 8);
static_assert(offsetof(kvx_hosttun_key, remote) == 0);
static_assert(offsetof(kvx_hosttun_key, proto) == 4);
static_assert(offsetof(kvx_hosttun_key, _pad) == 5);
static_assert(sizeof(kvx_hosttun_val) == 8);
static_assert(offsetof(kvx_hosttun_val, ifindex) == 0);
static_assert(offsetof(kvx_hosttun_val, _pad) == 4);

// kvx_xdev[ifindex] and kvx_xfdb[MAC] (the XDP path).
static_assert(sizeof(kvx_xdev_val) == 8);
static_assert(offsetof(kvx_xdev_val, mac) == 0);
static_assert(offsetof(kvx_xdev_val, flags) == 6);
static_assert(KVX_XDEV_F_TX == 1 && KVX_XDEV_F_BRIDGE == 2 && KVX_XDEV_F_PORT == 4 &&
	      KVX_XDEV_F_LEARN == 8);

static_assert(sizeof(kvx_xfdb_key) == 8);
static_assert(offsetof(kvx_xfdb_key, mac) == 0);
static_assert(offsetof(kvx_xfdb_key, _pad) == 6);

static_assert(sizeof(kvx_xfdb_val) == 16);
static_assert(offsetof(kvx_xfdb_val, ifindex) == 0);
static_assert(offsetof(kvx_xfdb_val, flags) == 4);
static_assert(offsetof(kvx_xfdb_val, seen_ns) == 8);

// kvx_guest: __be32 address -> owner.
static_assert(sizeof(kvx_guest_val) == 16);
static_assert(offsetof(kvx_guest_val, mac) == 0);
static_assert(offsetof(kvx_guest_val, flags) == 6);
static_assert(offsetof(kvx_guest_val, seen_ns) == 8);

static_assert(sizeof(kvx_stat) == 16);
static_assert(offsetof(kvx_stat, packets) == 0);
static_assert(offsetof(kvx_stat, bytes) == 8);

// The per-CPU counter array is indexed by enum kvx_reason.
static_assert(KVX_R_XLATE_OUT == 0);
static_assert(KVX_R_MAX > KVX_R_DROP_BROKEN_PAIR);
static_assert(KVX_R_DROP_GUEST_QUOTA > KVX_R_XLATE_RELATED_OUT); // appended
// Appended in version 3, in this order (a reason's index is its counter).
static_assert(KVX_R_DROP_TOO_BIG_IN > KVX_R_DROP_GUEST_QUOTA);
static_assert(KVX_R_DROP_FWMARK > KVX_R_DROP_TOO_BIG_IN);
static_assert(KVX_R_DROP_SPOOF_MAC > KVX_R_DROP_FWMARK);
static_assert(KVX_R_DROP_PROTO_ZERO > KVX_R_DROP_SPOOF_MAC);
static_assert(KVX_R_DROP_HOST_TUNNEL > KVX_R_DROP_PROTO_ZERO);
static_assert(KVX_R_DROP_MARTIAN_IN > KVX_R_DROP_HOST_TUNNEL);
static_assert(KVX_R_PASS_OVERLAP > KVX_R_DROP_MARTIAN_IN);
static_assert(KVX_R_DROP_TCP_WINDOW > KVX_R_PASS_OVERLAP);
static_assert(KVX_R_ICMP_SENT > KVX_R_DROP_TCP_WINDOW);
static_assert(KVX_R_ICMP_RATELIMITED > KVX_R_ICMP_SENT);

static_assert(sizeof(kvx_icmprl_val) == 16);
static_assert(offsetof(kvx_icmprl_val, last_ns) == 0);
static_assert(offsetof(kvx_icmprl_val, tokens_ns) == 8);

// Appended in version 5.
static_assert(KVX_R_DROP_GUEST_PORTS == KVX_R_ICMP_RATELIMITED + 1);
// Appended in version 7.
static_assert(KVX_R_PASS_ND == KVX_R_DROP_GUEST_PORTS + 1);
static_assert(KVX_R_DROP_UDP_NO_CSUM == KVX_R_PASS_ND + 2);
// Appended in version 8.
static_assert(KVX_R_DROP_HOP_LIMIT == KVX_R_DROP_UDP_NO_CSUM + 1);
static_assert(KVX_R_DROP_PROTO_UNTRANSLATED == KVX_R_DROP_HOP_LIMIT + 1);
// Appended in version 9.
static_assert(KVX_R_RELAY_OUT == KVX_R_DROP_PROTO_UNTRANSLATED + 1);
static_assert(KVX_R_RELAY_IN == KVX_R_RELAY_OUT + 1);
static_assert(KVX_R_ND_PROXY_NA == KVX_R_RELAY_IN + 1);
// Appended in version 12.
static_assert(KVX_R_ND_RELAY == KVX_R_ND_PROXY_NA + 1);
static_assert(KVX_R_DROP_ND_DUPLICATE == KVX_R_ND_RELAY + 1);
static_assert(KVX_R_DROP_GUEST_ADDRS == KVX_R_DROP_ND_DUPLICATE + 1);
static_assert(KVX_R_DROP_GUEST_ADDRS + 1 == KVX_R_FRAG_PARKED);
// Appended in version 17.
static_assert(KVX_R_FRAG_PARKED_HOST == KVX_R_FRAG_PARKED + 1);
static_assert(KVX_R_FRAG_REINJECTED == KVX_R_FRAG_PARKED + 2);
static_assert(KVX_R_FRAG_PARK_FULL == KVX_R_FRAG_PARKED + 3);
static_assert(KVX_R_FRAG_PARK_EXPIRED == KVX_R_FRAG_PARKED + 4);
static_assert(KVX_R_FRAG_REINJECT_FAILED == KVX_R_FRAG_PARKED + 5);
// Appended in version 18.
static_assert(KVX_R_DROP_ND_UNCLAIMED == KVX_R_FRAG_REINJECT_FAILED + 1);
static_assert(KVX_R_DROP_ND_RELAY_LIMIT == KVX_R_DROP_ND_UNCLAIMED + 1);
// Appended in version 20.
static_assert(KVX_R_FRAG_PARK_HOST == KVX_R_DROP_ND_RELAY_LIMIT + 1);
static_assert(KVX_R_FRAG_PARK_STALE == KVX_R_FRAG_PARK_HOST + 1);
static_assert(KVX_R_FRAG_PARK_RATELIMITED == KVX_R_FRAG_PARK_STALE + 1);
// Appended in version 28.
static_assert(KVX_R_DROP_MAC_ELSEWHERE == KVX_R_FRAG_PARK_RATELIMITED + 1);
// Appended in version 30.
static_assert(KVX_R_DROP_MAC_NEW == KVX_R_DROP_MAC_ELSEWHERE + 1);
static_assert(KVX_R_DROP_MAC_NEW == KVX_R_MAX - 1);
// kvx_brport's flag beside kvx_xfdb's (one value type).
static_assert((KVX_BRPORT_F_HELD & KVX_XFDB_F_STATIC) == 0);
static_assert(KVX_GUARD_LEASE_NS < KVX_GUARD_SETTLE_NS);
static_assert(KVX_ND_PER_GUEST > 0);
// kvx_brport is keyed and valued as kvx_xfdb.
static_assert(sizeof(kvx_xfdb_key) == 8 && sizeof(kvx_xfdb_val) == 16);
static_assert(KVX_ND_DAD_PROBES > 0 && KVX_ND_DAD_PROBES < 256);

// IPv6 (version 7).  The values embed the IPv4 ones at offset 0, so that
// the family-neutral rules (ct_rules.h, the GC) read both through one type.
static_assert(sizeof(kvx_cfg6) == 80);
static_assert(offsetof(kvx_cfg6, mode) == 0);
static_assert(offsetof(kvx_cfg6, flags) == 4);
static_assert(offsetof(kvx_cfg6, uplink_addr) == 8);
static_assert(offsetof(kvx_cfg6, subnet) == 24);
static_assert(offsetof(kvx_cfg6, gw_addr) == 40);
static_assert(offsetof(kvx_cfg6, relay_prefix) == 56);
static_assert(offsetof(kvx_cfg6, subnet_len) == 72);
static_assert(offsetof(kvx_cfg6, relay_len) == 73);
static_assert(offsetof(kvx_cfg6, bridge_mac) == 74); // version 9: was padding
static_assert(KVX_V6_OFF == 0 && KVX_V6_NAT66 == 1 && KVX_V6_RELAY == 2);
static_assert(KVX_V6_BR == 0 && KVX_V6_UP == 1 && KVX_V6_BR_RELAY == 2 && KVX_V6_UP_RELAY == 3 &&
	      KVX_V6_BR_HAIRPIN == 4 && KVX_V6_MAX == 5);
static_assert(KVX_XDP6_PORT == 0 && KVX_XDP6_UP == 1 && KVX_XDP6_MAX == 2);

static_assert(sizeof(kvx_ct6_key) == 40);
static_assert(offsetof(kvx_ct6_key, int_addr) == 0);
static_assert(offsetof(kvx_ct6_key, rem_addr) == 16);
static_assert(offsetof(kvx_ct6_key, int_port) == 32);
static_assert(offsetof(kvx_ct6_key, rem_port) == 34);
static_assert(offsetof(kvx_ct6_key, proto) == 36);
static_assert(sizeof(kvx_ct6_val) == sizeof(kvx_ct_val) + 16);
static_assert(offsetof(kvx_ct6_val, ct) == 0);
static_assert(offsetof(kvx_ct6_val, ext_addr) == sizeof(kvx_ct_val));

static_assert(sizeof(kvx_bind6_key) == 20);
static_assert(offsetof(kvx_bind6_key, dir) == 0);
static_assert(offsetof(kvx_bind6_key, proto) == 1);
static_assert(offsetof(kvx_bind6_key, port) == 2);
static_assert(offsetof(kvx_bind6_key, addr) == 4);
static_assert(sizeof(kvx_bind6_val) == sizeof(kvx_bind_val) + 16);
static_assert(offsetof(kvx_bind6_val, bind) == 0);
static_assert(offsetof(kvx_bind6_val, addr) == sizeof(kvx_bind_val));

// Relay (version 9).
static_assert(sizeof(kvx_nd_key) == 16);
static_assert(sizeof(kvx_nd_val) == 32);
static_assert(offsetof(kvx_nd_val, mac) == 0);
static_assert(offsetof(kvx_nd_val, state) == 6);
static_assert(offsetof(kvx_nd_val, dad_probes) == 7);
static_assert(offsetof(kvx_nd_val, ifindex) == 8);
static_assert(offsetof(kvx_nd_val, last_seen_ns) == 16);
static_assert(offsetof(kvx_nd_val, dad_ns) == 24);
static_assert(KVX_ND_PENDING == 1 && KVX_ND_OWNED == 2 && KVX_ND_HOST == 3 && KVX_ND_DUP == 4);

// IPv6 mapped addresses (version 11).
static_assert(sizeof(kvx_extaddr6_key) == 16);
static_assert(offsetof(kvx_extaddr6_key, addr) == 0);
static_assert(sizeof(kvx_hostrev6_key) == 32);
static_assert(offsetof(kvx_hostrev6_key, guest_addr) == 8);
static_assert(offsetof(kvx_hostrev6_key, guest_port) == 24);
static_assert(offsetof(kvx_hostrev6_key, proto) == 26);
static_assert(sizeof(kvx_hostrev6_val) == 20);
static_assert(offsetof(kvx_hostrev6_val, ext_port) == 16);

} // namespace kvmxdp::abi
