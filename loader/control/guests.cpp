// SPDX-License-Identifier: GPL-2.0
#include "control/guests.hpp"

#include <arpa/inet.h>
#include <bpf/bpf.h>

#include <cstring>
#include <map>

#include "base/error.hpp"
#include "kernel/maps.hpp"
#include "kvmxdp/abi.h"

namespace kvmxdp {

LeaseSync sync_leases(int guest_fd, const std::vector<Lease> &leases, uint32_t subnet_be,
		      uint32_t mask_be, int64_t wall_now, uint64_t boot_now)
{
	LeaseSync r;
	std::map<uint32_t, const Lease *> want; // network order
	for (const Lease &l : leases) {
		const uint32_t a = htonl(l.addr);
		if ((a & mask_be) != subnet_be || (l.expiry && l.expiry <= wall_now))
			continue;
		want[a] = &l; // the file's last entry for an address wins
	}
	for (const auto &[a, l] : want) {
		kvx_guest_val v{};
		const __be32 k = a;
		if (bpf_map_lookup_elem(guest_fd, &k, &v) == 0) {
			const bool same_mac = std::memcmp(v.mac, l->mac.data(), 6) == 0;
			if ((v.flags & KVX_GUEST_F_LEASE) && same_mac) {
				r.leased++;
				continue;
			}
			// seen_ns ahead of boot_now (the datapath refreshed it
			// since boot_now was read) is active.
			const uint64_t idle = boot_now > v.seen_ns ? boot_now - v.seen_ns : 0;
			if (!(v.flags & KVX_GUEST_F_LEASE) && !same_mac &&
			    idle < KVX_GUEST_IDLE_NS) {
				LeaseTakeover t;
				t.addr = ntohl(a);
				t.lease_mac = l->mac;
				std::memcpy(t.owner_mac.data(), v.mac, 6);
				t.idle_ns = idle;
				r.taken.push_back(t);
			}
		}
		kvx_guest_val nv{};
		std::memcpy(nv.mac, l->mac.data(), 6);
		nv.flags = KVX_GUEST_F_LEASE;
		nv.seen_ns = boot_now;
		check_libbpf(bpf_map_update_elem(guest_fd, &k, &nv, BPF_ANY), "update",
			     KVX_MAP_GUEST);
		r.leased++;
	}
	for (const auto &[k, v] : dump_hash<__be32, kvx_guest_val>(guest_fd)) {
		if (!(v.flags & KVX_GUEST_F_LEASE) || want.count(k))
			continue;
		kvx_guest_val nv = v;
		nv.flags = static_cast<__u16>(v.flags & ~(KVX_GUEST_F_LEASE | KVX_GUEST_F_GONE));
		nv.seen_ns = boot_now;
		// BPF_EXIST: an entry the datapath replaced meanwhile is left alone.
		if (bpf_map_update_elem(guest_fd, &k, &nv, BPF_EXIST) == 0)
			r.released++;
	}
	return r;
}

} // namespace kvmxdp
