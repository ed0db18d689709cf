// SPDX-License-Identifier: GPL-2.0
// Relay mode's control plane on kvx_nd (model/relay.hpp plan_nd_sync
// applied): attach and the daemon call it with the uplink's prefix and
// addresses as rtnetlink shows them.
#pragma once

#include <optional>
#include <vector>

#include "base/netaddr6.hpp"

namespace kvmxdp {

struct NdSyncResult {
	size_t deleted = 0; // entries of another prefix, host addresses gone
	size_t host = 0;    // host addresses written
};

NdSyncResult sync_relay_nd(int nd_fd, const std::optional<Ipv6Net> &prefix,
			   const std::vector<Ipv6Addr> &host_addrs);

// The uplink's global addresses (any state: a tentative one is the host's
// already), for sync_relay_nd.
std::vector<Ipv6Addr> host_addrs6(const std::vector<Ipv6IfAddr> &uplink_addrs);

} // namespace kvmxdp
