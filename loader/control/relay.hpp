// SPDX-License-Identifier: GPL-2.0
// Relay mode's control plane on kvx_nd (model/relay.hpp plan_nd_sync
// applied): attach and the daemon call it with the uplink's prefix and
// addresses as rtnetlink shows them.
#pragma once

#include <optional>
#include <vector>

#include "base/netaddr6.hpp"
#include "kernel/netlink.hpp"

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

struct RelayRoutesResult {
	size_t expired = 0; // idle guest entries forgotten (model/relay.hpp kNdExpireNs)
	size_t added = 0;   // /128 routes to guests added on the bridge
	size_t removed = 0; // and removed
};

// The daemon's tick in relay mode: kvx_nd's idle guest entries forgotten,
// then the bridge's /128 routes to the guests (model/relay.hpp
// plan_relay_routes) made to match kvx_nd, in the caller's network
// namespace.  prefix none: every route goes.
RelayRoutesResult sync_relay_routes(NlSocket &nl, int bridge_ifindex, int nd_fd,
				    const std::optional<Ipv6Net> &prefix, uint64_t now_ns);

// Every route kvmxdp made on the bridge (kRelayRouteProto): detach, and a
// mode other than relay.  The number removed.
size_t remove_relay_routes(NlSocket &nl, int bridge_ifindex);

} // namespace kvmxdp
