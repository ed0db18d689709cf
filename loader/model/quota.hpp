// SPDX-License-Identifier: GPL-2.0
// The per-guest flow quota (kvx_cfg.flow_quota, kvx_gflows): its default
// and the counters' indexing, as the datapath computes them.  Pure.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "base/netaddr.hpp"
#include "kvmxdp/abi.h"

namespace kvmxdp {

// Per-guest flow quota (kvx_cfg.flow_quota) when attach has no
// --flow-quota: a quarter of the conntrack table, so that one flooding
// guest leaves three quarters to the others.
constexpr uint32_t kDefaultQuotaShare = 4;
uint32_t default_flow_quota(uint32_t ct_size);
// Per-guest port limit (kvx_cfg.guest_ports, RFC 6888 REQ-4) when attach
// has no --guest-ports: 7/8 of the NAT pool, so that one guest churning
// through connections leaves an eighth (some 4500 ports of the default
// pool) to the others, and a single guest still gets nearly all of it.
// The eighth is rounded down: a tiny --nat-ports range (fewer than 8
// ports) has no limit short of the range itself.
constexpr uint32_t kGuestPortsShareEighths = 7;
uint32_t default_guest_ports(uint32_t pool_size);
// Tenants of shared ports per guest (kvx_cfg.tenant_cap): an eighth of the
// binding table, whatever the port limit (abi.h kvx_gtenant), so that one
// guest at its limit opening ever new endpoints leaves most of the table
// to the others.
constexpr uint32_t kTenantCapShare = 8;
uint32_t default_tenant_cap(uint32_t bind_size);
// kvx_guest (abi.h), one owner per guest address: its size for a subnet.
uint32_t guest_map_size(uint32_t subnet_mask_be);
// Guest MAC -> the bridge port the daemon placed it on (kvx_brport).
using GuestPorts = std::map<MacAddr, uint32_t>;
// The kvx_gflows slot of the guest whose MAC is mac, as the datapath
// computes it (ct.h mac_slot, seed kvx_cfg.guest_seed): its bridge port's
// (kvmxdp/ct_rules.h kvx_port_slot), port 0's while ports does not place
// it.  A guest is its port: fresh MACs buy no quota.
uint32_t mac_slot(const uint8_t *mac, const GuestPorts &ports, uint32_t seed);
// The kvx_gflows slot a flow of guest address addr_be (network order)
// counts against: its owner's (kvx_guest) mac_slot; without an owner yet,
// the address's (kvx_guest_slot).
uint32_t guest_slot(const kvx_guest_val *owner, uint32_t addr_be, uint32_t seed,
		    const GuestPorts &ports);
// A fresh kvx_cfg.guest_seed (the kernel's random source) whose slot tag
// (ct_rules.h kvx_ct_slot_tag) is none of the tags taken: the records (abi.h
// kvx_ct_val.slot) of the flows and bindings found, so that none of them
// reads as a slot of the new seed.  taken has 65536 entries (a tag is 16
// bits, never 0); a draw whose tag is taken is drawn again.
uint32_t new_guest_seed(const std::vector<bool> &taken);
// The tags of the seeds the records in flows' values were made with
// (kvx_ct_val.slot >> 16; 0: none), for new_guest_seed.
std::vector<bool> ct_slot_tags(const std::vector<uint32_t> &records);

} // namespace kvmxdp
