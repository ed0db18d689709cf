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

// A lease that took its address from an active learnt owner with another
// MAC: a guest that uses a static address the DHCP server did not know of
// (dnsmasq hands it out when that guest does not answer its ping), or one
// that sent from the address before its lease was read.  The DHCP server
// is the authority on the addresses it hands out: were an address that a
// guest used first to stay that guest's, a guest that sends from every
// free address of the DHCP range would keep new VMs from their leases.
// The daemon says so instead.
struct LeaseTakeover {
	uint32_t addr = 0; // host order
	MacAddr lease_mac{};
	MacAddr owner_mac{};
	uint64_t idle_ns = 0; // since the owner's last frame
};

struct LeaseSync {
	size_t leased = 0;   // addresses owned through a current lease
	size_t released = 0; // leased owners whose lease ended
	std::vector<LeaseTakeover> taken;
};

// Every current lease (expiry 0 or after wall_now) of an address in the
// subnet (network order) owns it, whatever owned it before (an active
// learnt owner with another MAC: LeaseSync::taken); an owner whose lease
// ended or left the file stays the owner as a learnt one, idle from
// boot_now on (KVX_GUEST_IDLE_NS before another MAC may take it).
LeaseSync sync_leases(int guest_fd, const std::vector<Lease> &leases, uint32_t subnet_be,
		      uint32_t mask_be, int64_t wall_now, uint64_t boot_now);

} // namespace kvmxdp
