// SPDX-License-Identifier: GPL-2.0
// The per-guest flow quota (kvx_cfg.flow_quota, kvx_gflows): its default
// and the counters' indexing, as the datapath computes them.  Pure.
#pragma once

#include <cstdint>

namespace kvmxdp {

// Per-guest flow quota (kvx_cfg.flow_quota) when attach has no
// --flow-quota: a quarter of the conntrack table, so that one flooding
// guest leaves three quarters to the others.
constexpr uint32_t kDefaultQuotaShare = 4;
uint32_t default_flow_quota(uint32_t ct_size);
// kvx_gflows (abi.h): its size for a subnet and a guest's index in it
// (the datapath's, kvmxdp/ct_rules.h kvx_gflows_index).
uint32_t gflows_size(uint32_t subnet_mask_be);
uint32_t gflows_index(uint32_t addr_be, uint32_t subnet_mask_be);

} // namespace kvmxdp
