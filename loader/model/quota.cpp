// SPDX-License-Identifier: GPL-2.0
#include "model/quota.hpp"

#include <arpa/inet.h>

#include "kvmxdp/abi.h"
#include "kvmxdp/ct_rules.h"

namespace kvmxdp {

uint32_t default_flow_quota(uint32_t ct_size)
{
	uint32_t q = ct_size / kDefaultQuotaShare;
	return q ? q : 1;
}

uint32_t gflows_size(uint32_t subnet_mask_be)
{
	uint32_t hosts = ~ntohl(subnet_mask_be); // 2^host_bits - 1
	return hosts >= KVX_GFLOWS_MAX - 1 ? KVX_GFLOWS_MAX : hosts + 1;
}

uint32_t gflows_index(uint32_t addr_be, uint32_t subnet_mask_be)
{
	return kvx_gflows_index(addr_be, subnet_mask_be);
}

} // namespace kvmxdp
