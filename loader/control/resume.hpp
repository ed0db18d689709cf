// SPDX-License-Identifier: GPL-2.0
// Resuming over pinned maps: attach again (a restart, an upgrade) reuses
// the maps pinned by the previous attach, so conntrack and bindings survive.
// What happens to each map is a row of kResumeTable; decide_resume() is the
// pure decision for one map (unit-tested), attach does the I/O.
#pragma once

#include <linux/bpf.h>

#include <cstdint>
#include <optional>
#include <string>

#include "kernel/maps.hpp"
#include "kvmxdp/abi.h"

namespace kvmxdp {

// Where a map's max_entries comes from.
enum class SizeFrom {
	Object,	  // the BPF object's own
	CtSize,	  // --ct-size, else the pinned map's, else the config's (or the default)
	BindSize, // --bind-size, likewise
	Subnet,	  // one entry per guest address (model/quota.hpp guest_map_size)
	// The IPv6 tables: as many entries as the IPv4 table of the same kind
	// (--ct-size and --bind-size size both families: with Happy Eyeballs
	// a dual-stack guest opens most of its flows over IPv6), one when
	// IPv6 is off (a hash map cannot have none).
	Ct6Size,
	Bind6Size,
	// The guests' IPv6 address owners (kvx_nd): KVX_ND_DEFAULT_SIZE with
	// IPv6 on (either mode), else one.
	NdSize,
};

// Which difference of a pinned map makes a fresh map instead of a refusal
// (a refusal asks for `kvmxdp detach`, which drops conntrack state).
enum class ReplaceIf {
	Never,
	Resized,   // same layout, another size: the old content is expendable
	Differs,   // any difference: the content is derived (attach recounts it)
	ValueSize, // kvx_cfg of an older ABI version: rewritten by attach anyway
	// Another size or another value layout of the same key (kvx_nd
	// before ABI 18): replaced, attach carries the entries over.
	Layout,
};

struct MapResumeRule {
	const char *map;
	// The layout this build's programs declare for it (bpf/lib/maps.h,
	// from the abi.h types): what every reader of the pin checks first
	// (pinned_layout, find_pinned).
	MapLayout layout;
	SizeFrom size;
	ReplaceIf replace;
	// A resume without this map pinned is refused (the core tables).
	bool required;
	// Said when a resized map is replaced: "PATH has N <entries>, this
	// kvmxdp M: <resized_note>"; null: replaced silently.
	const char *entries;
	const char *resized_note;
};

// Every map of the TC object (tests/loader checks the table against it).
inline constexpr MapResumeRule kResumeTable[] = {
	// Rewritten by every attach (its guest_seed kept by a resume); tables of ABI versions
	// KVX_ABI_TABLES_SINCE..KVX_ABI_VERSION share this layout (abi.h).
	{KVX_MAP_CFG,
	 {BPF_MAP_TYPE_ARRAY, sizeof(__u32), sizeof(kvx_cfg)},
	 SizeFrom::Object,
	 ReplaceIf::ValueSize,
	 true,
	 nullptr,
	 nullptr},
	{KVX_MAP_CT,
	 {BPF_MAP_TYPE_HASH, sizeof(kvx_ct_key), sizeof(kvx_ct_val)},
	 SizeFrom::CtSize,
	 ReplaceIf::Never,
	 true,
	 nullptr,
	 nullptr},
	{KVX_MAP_BIND,
	 {BPF_MAP_TYPE_HASH, sizeof(kvx_bind_key), sizeof(kvx_bind_val)},
	 SizeFrom::BindSize,
	 ReplaceIf::Never,
	 true,
	 nullptr,
	 nullptr},
	// A newer kvmxdp with more verdict reasons: the counters restart.
	{KVX_MAP_STATS,
	 {BPF_MAP_TYPE_PERCPU_ARRAY, sizeof(__u32), sizeof(kvx_stat)},
	 SizeFrom::Object,
	 ReplaceIf::Resized,
	 false,
	 "counters",
	 "counters restart from zero (conntrack kept)"},
	// Counters per guest slot (KVX_GFLOWS_MAX of them): another size (one
	// sized to a subnet by an older kvmxdp) starts afresh (attach
	// recounts them from kvx_ct).
	{KVX_MAP_GFLOWS,
	 {BPF_MAP_TYPE_ARRAY, sizeof(__u32), sizeof(kvx_gflows_val)},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
	// Address owners, one per guest address: another subnet size starts
	// afresh (owners are learnt again from traffic and leases).
	{KVX_MAP_GUEST,
	 {BPF_MAP_TYPE_HASH, sizeof(__be32), sizeof(kvx_guest_val)},
	 SizeFrom::Subnet,
	 ReplaceIf::Resized,
	 false,
	 nullptr,
	 nullptr},
	// The datapath's per-CPU scratch: no state.
	{KVX_MAP_SCRATCH,
	 {BPF_MAP_TYPE_PERCPU_ARRAY, sizeof(__u32), sizeof(kvx_ct_val)},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
	// Per-guest counters: another layout restarts them.
	{KVX_MAP_GSTATS,
	 {BPF_MAP_TYPE_PERCPU_ARRAY, sizeof(__u32), sizeof(kvx_gstat)},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
	// The packet's guest, per CPU: no state.
	{KVX_MAP_GCUR,
	 {BPF_MAP_TYPE_PERCPU_ARRAY, sizeof(__u32), sizeof(kvx_gcur)},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
	// The timestamp of the TCP segment being processed, per CPU: no state.
	{KVX_MAP_TCPTS,
	 {BPF_MAP_TYPE_PERCPU_ARRAY, sizeof(__u32), sizeof(kvx_tcpts)},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
	// Hints for early drop, checked against kvx_ct before use: expendable
	// (an array of ABI 3..21 is replaced).
	{KVX_MAP_HALFOPEN,
	 {BPF_MAP_TYPE_LRU_HASH, sizeof(__u32), sizeof(kvx_halfopen_val)},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
	// The same for kvx_ct6 (created when an older kvmxdp pinned none).
	{KVX_MAP_HALFOPEN6,
	 {BPF_MAP_TYPE_LRU_HASH, sizeof(__u32), sizeof(kvx_halfopen6_val)},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
	// Each guest's closed ports, checked against kvx_bind before use:
	// expendable.
	{KVX_MAP_GTW,
	 {BPF_MAP_TYPE_ARRAY, sizeof(__u32), sizeof(kvx_gtw_val)},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
	// Each guest's recently bound ports, port overlapping's candidates,
	// checked against kvx_bind before use: expendable (an array of ABI 13
	// and 14 is replaced).
	{KVX_MAP_GOWN,
	 {BPF_MAP_TYPE_LRU_HASH, sizeof(__u32), sizeof(kvx_gtw_val)},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
	// Port overlapping's claims: state like kvx_bind's (a shared port's
	// replies find their endpoint there), sized as kvx_ct (one per flow at
	// most); created when a kvmxdp of ABI 11 or older pinned none (no
	// port was shared then).
	{KVX_MAP_OVL,
	 {BPF_MAP_TYPE_HASH, sizeof(kvx_ovl_key), sizeof(kvx_ovl_val)},
	 SizeFrom::CtSize,
	 ReplaceIf::Never,
	 false,
	 nullptr,
	 nullptr},
	// Rate-limit buckets of the ICMP errors kvmxdp sends: expendable.
	{KVX_MAP_ICMPRL,
	 {BPF_MAP_TYPE_LRU_HASH, sizeof(__be32), sizeof(kvx_icmprl_val)},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
	// Per-guest port counters, recounted from kvx_bind at attach.
	{KVX_MAP_GPORTS,
	 {BPF_MAP_TYPE_ARRAY, sizeof(__u32), sizeof(__u32)},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
	// Tenants per guest (port overlapping), recounted from kvx_bind at
	// attach.
	{KVX_MAP_GTENANT,
	 {BPF_MAP_TYPE_ARRAY, sizeof(__u32), sizeof(__u32)},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
	// Relay's addresses per guest: recounted from kvx_nd by the daemon.
	{KVX_MAP_GADDRS,
	 {BPF_MAP_TYPE_ARRAY, sizeof(__u32), sizeof(__u32)},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
	// Derived from the host's sockets and rewritten by every attach.
	{KVX_MAP_PORTX,
	 {BPF_MAP_TYPE_ARRAY, sizeof(__u32), sizeof(__u64)},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
	// The rest: reused if they match, created if not pinned (a map a
	// newer kvmxdp added).
	{KVX_MAP_EXTADDR,
	 {BPF_MAP_TYPE_HASH, sizeof(__be32), sizeof(kvx_extaddr_val)},
	 SizeFrom::Object,
	 ReplaceIf::Never,
	 false,
	 nullptr,
	 nullptr},
	{KVX_MAP_FRAG,
	 {BPF_MAP_TYPE_LRU_HASH, sizeof(kvx_frag_key), sizeof(kvx_frag_val)},
	 SizeFrom::Object,
	 ReplaceIf::Never,
	 false,
	 nullptr,
	 nullptr},
	{KVX_MAP_FRAG6,
	 {BPF_MAP_TYPE_LRU_HASH, sizeof(kvx_frag6_key), sizeof(kvx_frag6_val)},
	 SizeFrom::Object,
	 ReplaceIf::Never,
	 false,
	 nullptr,
	 nullptr},
	// The host's fragment marks: 30 s hints (a lost one copies the
	// datagram's later fragments to the park as well); created when a
	// kvmxdp of ABI 24 or older pinned none.
	{KVX_MAP_FRAGHOST,
	 {BPF_MAP_TYPE_LRU_HASH, sizeof(kvx_frag_key), sizeof(kvx_fraghost_val)},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
	{KVX_MAP_FRAGHOST6,
	 {BPF_MAP_TYPE_LRU_HASH, sizeof(kvx_frag6_key), sizeof(kvx_fraghost_val)},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
	// Copies of fragments on their way to the daemon's park: transient,
	// another size starts an empty ring.
	{KVX_MAP_FRAGQ,
	 {BPF_MAP_TYPE_RINGBUF, 0, 0},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
	{KVX_MAP_XDEV,
	 {BPF_MAP_TYPE_HASH, sizeof(__u32), sizeof(kvx_xdev_val)},
	 SizeFrom::Object,
	 ReplaceIf::Never,
	 false,
	 nullptr,
	 nullptr},
	{KVX_MAP_XFDB,
	 {BPF_MAP_TYPE_HASH, sizeof(kvx_xfdb_key), sizeof(kvx_xfdb_val)},
	 SizeFrom::Object,
	 ReplaceIf::Never,
	 false,
	 nullptr,
	 nullptr},
	// Rewritten from netlink by every attach and by the daemon.
	{KVX_MAP_HOSTTUN,
	 {BPF_MAP_TYPE_HASH, sizeof(kvx_hosttun_key), sizeof(kvx_hosttun_val)},
	 SizeFrom::Object,
	 ReplaceIf::Never,
	 false,
	 nullptr,
	 nullptr},
	{KVX_MAP_HOSTADDR,
	 {BPF_MAP_TYPE_HASH, sizeof(__be32), sizeof(__u32)},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
	{KVX_MAP_GUARD,
	 {BPF_MAP_TYPE_ARRAY, sizeof(__u32), sizeof(__u64)},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
	// The datapath's placements per port: a budget's count, created when
	// a kvmxdp of ABI 29 or older pinned none.
	{KVX_MAP_BRPLACE,
	 {BPF_MAP_TYPE_LRU_HASH, sizeof(__u32), sizeof(kvx_brplace_val)},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
	// IPv6: rewritten by every attach, like kvx_cfg.
	{KVX_MAP_CFG6,
	 {BPF_MAP_TYPE_ARRAY, sizeof(__u32), sizeof(kvx_cfg6)},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
	// The IPv6 programs: libbpf points the slots at the programs of each
	// load, a reused pin included; nothing else is kept in it.
	{KVX_MAP_V6PROGS,
	 {BPF_MAP_TYPE_PROG_ARRAY, sizeof(__u32), sizeof(__u32)},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
	// Reused at the same size, so that IPv6 flows survive a restart as
	// IPv4's do; IPv6 turned on or off, or another --ct-size, starts
	// them afresh (the IPv4 tables refuse a resize instead: they are the
	// required core).
	{KVX_MAP_CT6,
	 {BPF_MAP_TYPE_HASH, sizeof(kvx_ct6_key), sizeof(kvx_ct6_val)},
	 SizeFrom::Ct6Size,
	 ReplaceIf::Resized,
	 false,
	 "IPv6 flows",
	 "IPv6 conntrack starts afresh"},
	{KVX_MAP_BIND6,
	 {BPF_MAP_TYPE_HASH, sizeof(kvx_bind6_key), sizeof(kvx_bind6_val)},
	 SizeFrom::Bind6Size,
	 ReplaceIf::Resized,
	 false,
	 "IPv6 bindings",
	 "IPv6 NAT bindings start afresh"},
	// IPv6 mapped addresses and their announcement state: reused (an
	// announced address stays announced across a restart).
	{KVX_MAP_EXTADDR6,
	 {BPF_MAP_TYPE_HASH, sizeof(kvx_extaddr6_key), sizeof(kvx_extaddr_val)},
	 SizeFrom::Object,
	 ReplaceIf::Never,
	 false,
	 nullptr,
	 nullptr},
	// IPv6 turned on or off, or the 24-byte entries of ABI 10..16:
	// replaced, and attach carries the guests' entries over
	// (control/relay.hpp carry_nd; an address is claimed only by
	// duplicate address detection, which a guest runs once).
	{KVX_MAP_ND,
	 {BPF_MAP_TYPE_HASH, sizeof(kvx_nd_key), sizeof(kvx_nd_val)},
	 SizeFrom::NdSize,
	 ReplaceIf::Layout,
	 false,
	 "guest IPv6 addresses",
	 "replaced, the guests' addresses carried over"},
	// Guest MAC -> bridge port: the daemon's copy of the bridge's
	// forwarding database.
	{KVX_MAP_BRPORT,
	 {BPF_MAP_TYPE_HASH, sizeof(kvx_xfdb_key), sizeof(kvx_xfdb_val)},
	 SizeFrom::Object,
	 ReplaceIf::Differs,
	 false,
	 nullptr,
	 nullptr},
};

// Its row; a map without one gets {name, no layout, Object, Never, not
// required} (reused if it matches the object's, created if not pinned).
MapResumeRule resume_rule(const std::string &map);
// What a reader of the pinned map checks (a map of kResumeTable).
MapLayout pinned_layout(const char *map);

// The sizes attach asks for.
struct MapSizes {
	std::optional<uint32_t> ct;   // --ct-size
	std::optional<uint32_t> bind; // --bind-size
	uint32_t ct_default = 0;      // the config's, else KVX_CT_DEFAULT_SIZE
	uint32_t bind_default = 0;    // the config's, else KVX_BIND_DEFAULT_SIZE
	uint32_t guests = 0;	      // for the subnet (kvx_guest)
	// The IPv4 tables' pinned sizes (a resume), which their IPv6 twins
	// follow like they do.
	std::optional<uint32_t> ct_pinned;
	std::optional<uint32_t> bind_pinned;
	bool ipv6 = false; // kvx_cfg6.mode is not KVX_V6_OFF: the v6 tables and kvx_nd are sized
};

enum class ResumeAction {
	Create,	 // not pinned: created and pinned
	Reuse,	 // the pinned map, as it is
	Replace, // a fresh map pinned over the old one
};

struct ResumeDecision {
	ResumeAction action = ResumeAction::Create;
	uint32_t max_entries = 0; // of the map the programs will use
	std::string note;	  // for the log, when replacing says something
};

struct PinnedMap {
	MapInfo info;
	std::string path;
	// kvx_cfg only: the ABI version its value carries.
	std::optional<uint32_t> abi_version;
};

// One map: spec is the map as this object creates it (max_entries: the
// object's own).  Throws Error when the pinned map cannot be used.
ResumeDecision decide_resume(const MapResumeRule &rule, const MapInfo &spec,
			     const std::optional<PinnedMap> &pinned, const MapSizes &sizes);

} // namespace kvmxdp
