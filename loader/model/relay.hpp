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

// A guest's entry (owned, pending, defended) whose guest sent nothing from
// the address for this long is forgotten by the daemon: its temporary
// addresses (RFC 8981: a new one a day) would otherwise hold kvx_nd, and
// the guest's share of it, for ever.  Long against the datapath's
// KVX_GUEST_IDLE_NS: a guest that answers only when asked (a server with
// --ipv6-inbound open) sends from its address at least that often or
// nobody asked it anything; its next frame takes the address again.
inline constexpr uint64_t kNdExpireNs = 3600ULL * 1000 * 1000 * 1000;

// The guests' entries idle for kNdExpireNs at now (CLOCK_BOOTTIME ns).
std::vector<Ipv6Addr> nd_expired(const std::vector<NdEntry> &entries, uint64_t now_ns);

// The host's own packets to a relay guest: the host's route to the prefix
// is the uplink's (on the LAN: it would solicit the guest there, where
// only kvmxdp answers for it and forwards nothing the host sends), so the
// daemon routes each guest address to the bridge, as odhcpd's relay mode
// adds a /128 per neighbour it learns downstream.  The routes carry this
// routing protocol number (rtm_protocol; iproute2 prints it as a number,
// no well-known daemon uses it), so that the daemon and detach find and
// remove exactly theirs.
inline constexpr uint8_t kRelayRouteProto = 107;

struct RouteSync {
	std::vector<Ipv6Addr> add; // /128 routes to add
	std::vector<Ipv6Addr> del; // and to remove
};

// The routes that make `have` (kvmxdp's /128 routes on the bridge) what
// entries say at now: one per address of the prefix a guest owns (or whose
// DAD ran its course without a defence: as the datapath's nd_val_owned),
// none for the host's addresses, pending or defended ones, nor outside
// the prefix (none: relay has no prefix now: every route goes).
RouteSync plan_relay_routes(const std::vector<NdEntry> &entries,
			    const std::optional<Ipv6Net> &prefix, const std::vector<Ipv6Addr> &have,
			    uint64_t now_ns);

} // namespace kvmxdp
