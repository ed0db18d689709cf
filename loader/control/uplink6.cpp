// SPDX-License-Identifier: GPL-2.0
#include "control/uplink6.hpp"

#include "kernel/netlink.hpp"

namespace kvmxdp {

namespace {

// Any host on the LAN can send router advertisements: a flood of made-up
// prefixes (thc-ipv6's flood_router6) makes a prefix route of each.  The
// log line and status list the first ones and count the rest.
constexpr size_t kLogPrefixes = 4;
constexpr size_t kStatusPrefixes = 32;

} // namespace

Uplink6View read_uplink6(NlSocket &nl, int ifindex, const std::optional<Ipv6Addr> &keep)
{
	const std::vector<Ipv6IfAddr> addrs = ipv6_addrs(nl, ifindex);
	const std::vector<Ipv6Route> routes = ipv6_routes(nl, ifindex);
	// RFC 6724 rule 8 toward the default router the kernel routes
	// through first, when it has a global address (almost always it is
	// link-local and tells nothing).
	std::optional<Ipv6Addr> gateway;
	if (const auto routers = default_routers6(routes, 1); !routers.empty())
		gateway = routers.front();
	Uplink6View v;
	v.choice = choose_uplink_ipv6(addrs, gateway, keep);
	v.prefixes = onlink_prefixes(addrs, routes);
	v.relay = relay_check(addrs, routes, ipv6_ra_managed(nl, ifindex));
	return v;
}

std::string Uplink6View::summary() const
{
	std::string s = choice.addr ? format_ipv6(choice.addr->addr) + " (" + choice.why + ")" :
				      "none (" + choice.why + ")";
	s += ", on-link prefixes";
	if (prefixes.empty())
		s += " none";
	for (size_t n = 0; n < prefixes.size() && n < kLogPrefixes; n++)
		s += " " + prefixes[n].net.str() +
		     (prefixes[n].from_ra ? " (router advertisement)" : "");
	if (prefixes.size() > kLogPrefixes)
		s += " and " + std::to_string(prefixes.size() - kLogPrefixes) + " more";
	s += "; relay " + std::string(relay.possible ? "possible: " : "refused: ") + relay.why;
	return s;
}

nlohmann::json uplink6_json(const Uplink6View &v)
{
	using nlohmann::json;
	json prefixes = json::array();
	for (size_t n = 0; n < v.prefixes.size() && n < kStatusPrefixes; n++) {
		const Ipv6Prefix &p = v.prefixes[n];
		prefixes.push_back({{"prefix", p.net.str()},
				    {"from_ra", p.from_ra},
				    {"autoconf", p.autoconf},
				    {"has_addr", p.has_addr}});
	}
	const auto &c = v.choice;
	return {{"uplink_addr", c.addr ? json(format_ipv6(c.addr->addr)) : json(nullptr)},
		{"uplink_addr_kind",
		 c.addr ? json(c.temporary ? "temporary" : "stable") : json(nullptr)},
		{"uplink_addr_deprecated", c.addr && c.deprecated},
		{"uplink_addr_why", c.why},
		{"prefixes", prefixes},
		{"prefixes_omitted", v.prefixes.size() - prefixes.size()},
		{"relay",
		 {{"possible", v.relay.possible},
		  {"prefix", v.relay.prefix ? json(v.relay.prefix->str()) : json(nullptr)},
		  {"why", v.relay.why}}}};
}

void hand_over_accept_ra(const Sysctl &sys, Config &cfg, const std::string &bridge,
			 std::optional<std::string> &saved, std::string &dev, const std::string &to,
			 const AcceptRaWritten &written)
{
	if (saved && dev != to) {
		const std::string key = accept_ra_key(dev);
		const std::optional<std::string> cur = sys.try_read(key);
		if (auto v = accept_ra_release(cfg, bridge, dev, *saved, cur)) {
			sys.write(key, *v);
			written(key, *cur, *v);
		}
		saved.reset();
	}
	if (!saved && !to.empty()) {
		const std::string key = accept_ra_key(to);
		if (auto cur = sys.try_read(key); cur && *cur == "1") {
			sys.write(key, "2");
			written(key, *cur, "2");
			saved = *cur;
		}
	}
	dev = saved ? to : std::string();
}

} // namespace kvmxdp
