// SPDX-License-Identifier: GPL-2.0
#include "kernel/routes.hpp"

#include <arpa/inet.h>
#include <linux/rtnetlink.h>
#include <netlink/cache.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "base/error.hpp"

namespace kvmxdp {

namespace {

struct CacheDeleter {
	void operator()(nl_cache *c) const { nl_cache_free(c); }
};

} // namespace

std::optional<RouteEntry> choose_uplink_route(const std::vector<RouteEntry> &routes,
					      const std::vector<int> &exclude)
{
	std::optional<RouteEntry> best;
	for (const auto &r : routes) {
		if (r.family != AF_INET || r.table != RT_TABLE_MAIN || r.dst_len != 0 ||
		    r.type != RTN_UNICAST || r.ifindex <= 0 || (r.nh_flags & RTNH_F_DEAD))
			continue;
		if (std::find(exclude.begin(), exclude.end(), r.ifindex) != exclude.end())
			continue;
		// Strictly lower only: of equal metrics the first one stays.
		if (!best || r.metric < best->metric)
			best = r;
	}
	return best;
}

std::optional<uint32_t> default_gateway(const std::vector<RouteEntry> &routes, int ifindex)
{
	const RouteEntry *best = nullptr;
	for (const auto &r : routes) {
		// The main table's routes, as /proc/net/route shows them (no
		// broadcast or multicast entries there).
		if (r.family != AF_INET || r.table != RT_TABLE_MAIN || r.dst_len != 0 ||
		    r.type == RTN_BROADCAST || r.type == RTN_MULTICAST || r.ifindex != ifindex)
			continue;
		if (!best || r.metric < best->metric)
			best = &r;
	}
	if (!best)
		return std::nullopt;
	return best->gateway;
}

std::vector<RouteEntry> ipv4_routes(NlSocket &nl)
{
	nl_cache *raw = nullptr;
	int err = rtnl_route_alloc_cache(nl.get(), AF_INET, 0, &raw);
	if (err < 0)
		throw Error(std::string("dump IPv4 routes: ") + nl_geterror(err));
	std::unique_ptr<nl_cache, CacheDeleter> cache(raw);
	std::vector<RouteEntry> out;
	for (nl_object *o = nl_cache_get_first(raw); o; o = nl_cache_get_next(o)) {
		auto *r = reinterpret_cast<rtnl_route *>(o);
		RouteEntry e;
		e.family = rtnl_route_get_family(r);
		e.table = rtnl_route_get_table(r);
		nl_addr *dst = rtnl_route_get_dst(r);
		e.dst_len = static_cast<uint8_t>(dst ? nl_addr_get_prefixlen(dst) : 0);
		e.type = rtnl_route_get_type(r);
		e.metric = rtnl_route_get_priority(r);
		if (rtnl_route_get_nnexthops(r) > 0) {
			rtnl_nexthop *nh = rtnl_route_nexthop_n(r, 0);
			e.ifindex = rtnl_route_nh_get_ifindex(nh);
			e.nh_flags = rtnl_route_nh_get_flags(nh);
			nl_addr *gw = rtnl_route_nh_get_gateway(nh);
			if (gw && nl_addr_get_len(gw) == 4) {
				uint32_t be;
				std::memcpy(&be, nl_addr_get_binary_addr(gw), 4);
				e.gateway = ntohl(be);
			}
		}
		out.push_back(e);
	}
	return out;
}

std::optional<LinkInfo> find_link_by_index(NlSocket &nl, int ifindex)
{
	rtnl_link *link = nullptr;
	int err = rtnl_link_get_kernel(nl.get(), ifindex, nullptr, &link);
	if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV)
		return std::nullopt;
	if (err < 0)
		throw Error("look up interface index " + std::to_string(ifindex) + ": " +
			    nl_geterror(err));
	const char *name = rtnl_link_get_name(link);
	std::string n = name ? name : "";
	rtnl_link_put(link);
	if (n.empty())
		return std::nullopt;
	// The full record (kind, MAC) the way the rest of the loader reads it.
	return find_link(nl, n);
}

std::string auto_uplink_device(NlSocket &nl, int bridge_ifindex, const std::string &previous)
{
	if (auto r = choose_uplink_route(ipv4_routes(nl), {bridge_ifindex}))
		if (auto link = find_link_by_index(nl, r->ifindex))
			return link->name;
	if (!previous.empty() && find_link(nl, previous))
		return previous;
	return "";
}

} // namespace kvmxdp
