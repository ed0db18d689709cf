// SPDX-License-Identifier: GPL-2.0
#include "model/quota.hpp"

#include <arpa/inet.h>
#include <sys/random.h>

#include <algorithm>

#include "base/error.hpp"
#include "kvmxdp/abi.h"
#include "kvmxdp/ct_rules.h"

namespace kvmxdp {

uint32_t default_flow_quota(uint32_t ct_size)
{
	uint32_t q = ct_size / kDefaultQuotaShare;
	return q ? q : 1;
}

uint32_t default_guest_ports(uint32_t pool_size)
{
	// The pool less an eighth of it rounded down: 7/8 of a large pool, all
	// of a tiny explicit --nat-ports (2 ports: a limit of 1 would refuse a
	// guest's second socket where the range itself has room).
	uint64_t keep = uint64_t{pool_size} * (8 - kGuestPortsShareEighths) / 8;
	uint32_t n = pool_size - static_cast<uint32_t>(keep);
	return n ? n : 1;
}

uint32_t default_tenant_cap(uint32_t bind_size)
{
	uint32_t n = bind_size / kTenantCapShare;
	return n ? n : 1;
}

uint32_t guest_map_size(uint32_t subnet_mask_be)
{
	uint32_t hosts = ~ntohl(subnet_mask_be); // 2^host_bits - 1
	return hosts >= KVX_GFLOWS_MAX - 1 ? KVX_GFLOWS_MAX : hosts + 1;
}

uint32_t mac_slot(const uint8_t *mac, const GuestPorts &ports, uint32_t seed)
{
	MacAddr m;
	std::copy(mac, mac + 6, m.begin());
	const auto p = ports.find(m);
	return kvx_port_slot(p == ports.end() ? 0 : p->second, seed);
}

uint32_t guest_slot(const kvx_guest_val *owner, uint32_t addr_be, uint32_t seed,
		    const GuestPorts &ports)
{
	return owner ? mac_slot(owner->mac, ports, seed) : kvx_guest_slot(nullptr, addr_be, seed);
}

uint32_t new_guest_seed(const std::vector<bool> &taken)
{
	// Every tag but 0 taken needs 65535 attaches' flows alive at once; the
	// bound only keeps a broken input from spinning (the last draw is
	// kept: a collision costs one flow's count, not the attach).
	uint32_t seed = 0;
	for (int i = 0; i < 1024; i++) {
		// getrandom(2) without flags blocks only before the kernel's
		// pool is initialised (early boot); a short read cannot happen
		// for 4 bytes.
		if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
			throw_errno("getrandom", "the quota slot key");
		const uint32_t tag = kvx_ct_slot_tag(seed);
		if (tag >= taken.size() || !taken[tag])
			break;
	}
	return seed;
}

std::vector<bool> ct_slot_tags(const std::vector<uint32_t> &records)
{
	std::vector<bool> taken(uint32_t{1} << 16);
	for (uint32_t rec : records)
		if (rec >> 16)
			taken[rec >> 16] = true;
	return taken;
}

} // namespace kvmxdp
