// SPDX-License-Identifier: GPL-2.0
// Relay mode's table of address owners (kvx_nd, abi.h) as the control plane
// keeps it: the datapath learns the guests' entries; attach and the daemon
// make it follow the uplink's prefix and list the host's own addresses in
// it, so that no guest takes one (a guest that sent from the host's
// temporary address would receive the host's traffic).
#pragma once

#include <optional>
#include <vector>

#include "base/netaddr6.hpp"
#include "kvmxdp/abi.h"

namespace kvmxdp {

struct NdEntry {
	Ipv6Addr addr{};
	kvx_nd_val val{};
};

struct NdSync {
	std::vector<Ipv6Addr> del;  // entries to delete
	std::vector<Ipv6Addr> host; // KVX_ND_HOST entries to write
};

// What makes kvx_nd right for prefix (none: relay has no prefix now) and
// the host's addresses: every entry outside the prefix goes (renumbered,
// another network: those guests must take new addresses), and so does a
// host entry the host no longer has; each host address in the prefix gets
// a host entry, over a guest's (the host's address is the host's).
NdSync plan_nd_sync(const std::vector<NdEntry> &entries, const std::optional<Ipv6Net> &prefix,
		    const std::vector<Ipv6Addr> &host_addrs);

} // namespace kvmxdp
