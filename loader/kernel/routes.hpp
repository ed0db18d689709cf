// SPDX-License-Identifier: GPL-2.0
// `attach --uplink auto`: the uplink is the device of the host's IPv4
// default route, followed when NetworkManager (or dhclient, or the user)
// moves that route to another device: WiFi -> dock -> phone tether.
//
// The choice is the kernel's own for a packet to the outside: the main
// table's default routes, lowest metric first (fib_table_lookup walks the
// aliases of 0.0.0.0/0 by priority).  It is a pure function over a route
// list so that the unit tests can feed it every shape of table.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kernel/netlink.hpp"

namespace kvmxdp {

// The spelling of the mode on the command line and in the config.
inline constexpr const char *kUplinkAuto = "auto";

// One IPv4 route as rtnetlink reports it (first nexthop only: the device
// of a multipath default route is the first hop's).
struct RouteEntry {
	int family = 0;	       // AF_INET
	uint32_t table = 0;    // RT_TABLE_MAIN = 254
	uint8_t dst_len = 0;   // 0: a default route
	uint8_t type = 0;      // RTN_UNICAST = 1
	uint32_t metric = 0;   // RTA_PRIORITY
	int ifindex = 0;       // the (first) nexthop's device
	uint32_t gateway = 0;  // host order; 0: a device route
	uint32_t nh_flags = 0; // RTNH_F_*
};

// The route whose device is the uplink, or nullopt if there is no usable
// default route.  Usable: IPv4, main table, 0.0.0.0/0, unicast, a device,
// not dead (RTNH_F_DEAD), not one of `exclude` (the guests' bridge: never
// its own uplink).  Lowest metric wins; equal metrics: the first listed,
// as the kernel uses the first alias of equal priority.  A route whose
// link has no carrier (RTNH_F_LINKDOWN) is still used, as the kernel does
// unless ignore_routes_with_linkdown is set.
std::optional<RouteEntry> choose_uplink_route(const std::vector<RouteEntry> &routes,
					      const std::vector<int> &exclude = {});

// The gateway of the main table's default route through ifindex (lowest
// metric; of equal ones the first), 0 for a device route; nullopt if there
// is none.  The network identity of a mapping (model/mapping.hpp NetId).
std::optional<uint32_t> default_gateway(const std::vector<RouteEntry> &routes, int ifindex);

// Every IPv4 route of the caller's network namespace (all tables).
std::vector<RouteEntry> ipv4_routes(NlSocket &nl);
std::optional<LinkInfo> find_link_by_index(NlSocket &nl, int ifindex);

// The device `--uplink auto` resolves to now: the chosen default route's
// device; without a usable default route, `previous` if that device
// exists (sticky: a suspend or a reconnect removes the route for a while,
// which must not move or flush anything); "" if there is none (waiting).
std::string auto_uplink_device(NlSocket &nl, int bridge_ifindex, const std::string &previous);

} // namespace kvmxdp
