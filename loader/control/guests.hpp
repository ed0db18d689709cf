// SPDX-License-Identifier: GPL-2.0
// kvx_guest, the owners of guest addresses (abi.h), from libvirt's DHCP
// leases: the datapath learns owners from traffic; a lease makes its MAC
// the owner, which no traffic takes over (KVX_GUEST_F_LEASE).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

#include "model/leases.hpp"

namespace kvmxdp {

// A lease not applied: its address has an active learnt owner with another
// MAC, known before the lease (a guest with a static address the DHCP
// server did not know of).  dnsmasq hands out such an address when the
// owner does not answer its ping; the owner keeps it until it has been idle
// for KVX_GUEST_IDLE_NS, as against any other MAC.
struct LeaseConflict {
	uint32_t addr = 0; // host order
	MacAddr lease_mac{};
	MacAddr owner_mac{};
	uint64_t idle_ns = 0; // since the owner's last frame
};

// Learnt (not leased) owners: address (network order) -> MAC.
using LearntOwners = std::map<uint32_t, MacAddr>;

struct LeaseSync {
	size_t leased = 0;   // addresses owned through a current lease
	size_t released = 0; // leased owners whose lease ended
	std::vector<LeaseConflict> held;
	LearntOwners learnt; // after this sync: the next one's `known`
};

// Every current lease (expiry 0 or after wall_now) of an address in the
// subnet (network order) owns it, unless a learnt owner with another MAC
// holds it that was already in `known` (the learnt owners of the last sync;
// nullptr: none was made since the daemon started, and every learnt owner
// predates the leases read now) and is active (its last frame within
// KVX_GUEST_IDLE_NS of boot_now): that lease is held (LeaseSync::held).  A
// learnt owner that appeared since the last sync, beside a lease, may be a
// guest that sent first from the leased address: the lease wins.  An owner
// whose lease ended or left the file stays the owner as a learnt one, idle
// from boot_now on (KVX_GUEST_IDLE_NS before another MAC may take it).
LeaseSync sync_leases(int guest_fd, const std::vector<Lease> &leases, uint32_t subnet_be,
		      uint32_t mask_be, int64_t wall_now, uint64_t boot_now,
		      const LearntOwners *known);

} // namespace kvmxdp
