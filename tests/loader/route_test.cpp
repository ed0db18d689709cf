// SPDX-License-Identifier: GPL-2.0
// `--uplink auto`: which default route names the uplink (kernel/routes.hpp).
#include <gtest/gtest.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include "model/config.hpp"
#include "kernel/routes.hpp"

namespace kvmxdp {
namespace {

RouteEntry dflt(int ifindex, uint32_t metric, uint32_t gw = 0x0a000001)
{
	RouteEntry r;
	r.family = AF_INET;
	r.table = RT_TABLE_MAIN;
	r.dst_len = 0;
	r.type = RTN_UNICAST;
	r.metric = metric;
	r.ifindex = ifindex;
	r.gateway = gw;
	return r;
}

struct Case {
	const char *desc;
	std::vector<RouteEntry> routes;
	std::vector<int> exclude;
	int want_ifindex; // 0: none
};

std::vector<Case> cases()
{
	RouteEntry lan = dflt(3, 0);
	lan.dst_len = 24; // 10.0.0.0/24: not a default route
	RouteEntry local = dflt(3, 0);
	local.table = RT_TABLE_LOCAL;
	RouteEntry other_table = dflt(5, 0);
	other_table.table = 100; // a VPN's policy table: not the main one
	RouteEntry blackhole = dflt(0, 0);
	blackhole.type = RTN_BLACKHOLE;
	RouteEntry unreachable = dflt(4, 0);
	unreachable.type = RTN_UNREACHABLE;
	RouteEntry dead = dflt(4, 0);
	dead.nh_flags = RTNH_F_DEAD;
	RouteEntry linkdown = dflt(4, 50);
	linkdown.nh_flags = RTNH_F_LINKDOWN;
	RouteEntry v6 = dflt(4, 0);
	v6.family = AF_INET6;
	return {
		{"no routes: waiting", {}, {}, 0},
		{"only a connected route: waiting", {lan}, {}, 0},
		{"one default route (WiFi)", {lan, dflt(3, 600)}, {}, 3},
		{"dock plugged: ethernet metric 100 beats WiFi 600", {dflt(3, 600), dflt(4, 100)}, {}, 4},
		{"listed the other way round", {dflt(4, 100), dflt(3, 600)}, {}, 4},
		{"tether (metric 700) loses to WiFi (600)", {dflt(6, 700), dflt(3, 600)}, {}, 3},
		{"equal metrics: the first listed (the kernel's first alias)", {dflt(7, 100), dflt(3, 100)}, {}, 7},
		{"metric 0 (ip route add default without metric) beats all", {dflt(3, 600), dflt(8, 0)}, {}, 8},
		{"local table and other tables ignored", {local, other_table, dflt(3, 600)}, {}, 3},
		{"only another table's default: waiting", {other_table}, {}, 0},
		{"blackhole and unreachable defaults ignored", {blackhole, unreachable, dflt(3, 900)}, {}, 3},
		{"a dead nexthop ignored", {dead, dflt(3, 600)}, {}, 3},
		{"a link without carrier is still the kernel's choice", {linkdown, dflt(3, 600)}, {}, 4},
		{"IPv6 default ignored", {v6, dflt(3, 600)}, {}, 3},
		{"the bridge itself is never the uplink", {dflt(2, 0), dflt(3, 600)}, {2}, 3},
		{"only the bridge: waiting", {dflt(2, 0)}, {2}, 0},
		{"a route without a device ignored", {dflt(0, 0), dflt(3, 10)}, {}, 3},
	};
}

TEST(RouteChoice, Table)
{
	for (const auto &c : cases()) {
		auto r = choose_uplink_route(c.routes, c.exclude);
		if (c.want_ifindex == 0) {
			EXPECT_FALSE(r.has_value()) << c.desc << ": got ifindex " << r->ifindex;
		} else {
			ASSERT_TRUE(r.has_value()) << c.desc;
			EXPECT_EQ(c.want_ifindex, r->ifindex) << c.desc;
		}
	}
}

TEST(RouteChoice, KeepsGatewayAndMetricOfTheChoice)
{
	auto r = choose_uplink_route({dflt(3, 600, 0x0a4d0001), dflt(4, 100, 0x0a4f0001)});
	ASSERT_TRUE(r);
	EXPECT_EQ(0x0a4f0001u, r->gateway);
	EXPECT_EQ(100u, r->metric);
}

// The live dump parses (any namespace has at least its local routes).
TEST(RouteDump, ReadsTheKernelTable)
{
	NlSocket nl;
	auto routes = ipv4_routes(nl);
	for (const auto &r : routes)
		EXPECT_EQ(AF_INET, r.family);
	auto lo = find_link_by_index(nl, 1);
	ASSERT_TRUE(lo);
	EXPECT_EQ("lo", lo->name);
	EXPECT_FALSE(find_link_by_index(nl, 0x7ffffff0));
}

// The config records "auto" and the device followed now (none: null).
TEST(RouteConfig, AutoRoundTrip)
{
	Instance i;
	i.bridge = "virbr0";
	i.uplink_auto = true;
	i.uplink = "wlp2s0";
	i.subnet = parse_cidr("192.168.122.0/24");
	i.nat_ports = {61000, 65535};
	i.ct_size = 4096;
	i.bind_size = 2048;
	i.bpffs = "/sys/fs/bpf";
	i.pin_dir = "/sys/fs/bpf/kvmxdp/virbr0";
	Config c;
	c.instances.push_back(i);
	Instance waiting = i;
	waiting.bridge = "virbr1";
	waiting.pin_dir = "/sys/fs/bpf/kvmxdp/virbr1";
	waiting.uplink = ""; // no default route yet
	c.instances.push_back(waiting);
	Instance fixed = i;
	fixed.bridge = "virbr2";
	fixed.pin_dir = "/sys/fs/bpf/kvmxdp/virbr2";
	fixed.uplink_auto = false;
	c.instances.push_back(fixed);
	nlohmann::json j = to_json(c);
	EXPECT_EQ("auto", j["instances"][0]["uplink"]);
	EXPECT_EQ("wlp2s0", j["instances"][0]["uplink_device"]);
	EXPECT_EQ("auto", j["instances"][1]["uplink"]);
	EXPECT_TRUE(j["instances"][1]["uplink_device"].is_null());
	EXPECT_EQ("wlp2s0", j["instances"][2]["uplink"]);
	EXPECT_FALSE(j["instances"][2].contains("uplink_device"));
	Config back = config_from_json(j);
	ASSERT_EQ(3u, back.instances.size());
	EXPECT_TRUE(back.instances[0] == c.instances[0]);
	EXPECT_TRUE(back.instances[1] == c.instances[1]);
	EXPECT_TRUE(back.instances[2] == c.instances[2]);
}

TEST(DefaultGateway, TheMainTablesDefaultRouteViaTheDevice)
{
	RouteEntry lan = dflt(3, 0, 0);
	lan.dst_len = 24;
	RouteEntry vpn = dflt(3, 0, 0x0a0a0a01);
	vpn.table = 100;
	RouteEntry cheap = dflt(3, 100, 0x0a000001);
	RouteEntry dear = dflt(3, 600, 0x0a0000fe);
	RouteEntry other_dev = dflt(4, 0, 0xc0a80001);
	EXPECT_EQ(default_gateway({lan, vpn, dear, cheap, other_dev}, 3), 0x0a000001u)
		<< "lowest metric of the device's default routes in the main table";
	EXPECT_EQ(default_gateway({dflt(3, 10, 0x0a000001), dflt(3, 10, 0x0a000002)}, 3),
		  0x0a000001u)
		<< "equal metrics: the first";
	EXPECT_EQ(default_gateway({dflt(3, 0, 0)}, 3), 0u) << "a device route: no gateway";
	EXPECT_FALSE(default_gateway({lan, vpn, other_dev}, 3)) << "none via the device";
}

} // namespace
} // namespace kvmxdp
