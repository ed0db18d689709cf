// SPDX-License-Identifier: GPL-2.0
// kvx_guest, the owners of guest addresses (abi.h), from libvirt's DHCP
// leases: the datapath learns owners from traffic; a lease makes its MAC
// the owner, which no traffic takes over (KVX_GUEST_F_LEASE).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "model/leases.hpp"

namespace kvmxdp {

struct LeaseSync {
	size_t leased = 0;   // addresses owned through a current lease
	size_t released = 0; // leased owners whose lease ended
};

// Every current lease (expiry 0 or after wall_now) of an address in the
// subnet (network order) owns it, whatever owned it before; an owner whose
// lease ended or left the file stays the owner as a learnt one, idle from
// boot_now on (KVX_GUEST_IDLE_NS before another MAC may take it).
LeaseSync sync_leases(int guest_fd, const std::vector<Lease> &leases, uint32_t subnet_be,
		      uint32_t mask_be, int64_t wall_now, uint64_t boot_now);

} // namespace kvmxdp
