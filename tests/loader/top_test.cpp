// SPDX-License-Identifier: GPL-2.0
// `kvmxdp top`'s screen: what an operator reads over ssh.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "verbs/top_verbs.hpp"

namespace kvmxdp {
namespace {

using nlohmann::json;

json guest(std::vector<std::string> addrs, const std::string &mac)
{
	return {{"addrs", addrs},	{"mac", mac},
		{"vm", nullptr},	{"dhcp_hostname", nullptr},
		{"shared_slot", false}, {"pps_out", 1500.0},
		{"pps_in", 0.0},	{"bps_out", 2.5e6},
		{"bps_in", 0.0},	{"flows_out", 3u},
		{"flows_in", 0u},	{"drops_per_s", 0.0}};
}

std::vector<std::string> lines(const std::string &s)
{
	std::vector<std::string> out;
	std::istringstream in(s);
	for (std::string l; std::getline(in, l);)
		out.push_back(l);
	return out;
}

// An IPv6-only guest's address is shown whole, and every row's MAC starts
// in the header's MAC column (a 39-character address no longer pushes
// its row's columns out of line).
TEST(TopScreen, Ipv6AddressWholeAndColumnsAligned)
{
	const std::string v6 = "2001:db8:1234:5678:9abc:def0:1234:5678";
	json s = {{"bridge", "virbr0"},
		  {"interval_s", 1.0},
		  {"guests",
		   {guest({"192.168.122.11"}, "52:54:00:00:00:01"),
		    guest({v6, "fd42::14"}, "52:54:00:00:00:02")}}};
	std::vector<std::string> l = lines(top_screen(s, 0));
	ASSERT_GE(l.size(), 5u);
	const size_t mac_col = l[2].find("MAC");
	ASSERT_NE(mac_col, std::string::npos);
	EXPECT_EQ(l[3].find("52:54:00:00:00:01"), mac_col) << l[3];
	EXPECT_EQ(l[4].find("52:54:00:00:00:02"), mac_col) << l[4];
	EXPECT_EQ(l[4].rfind(v6 + "+", 0), 0u) << l[4];
	EXPECT_EQ(l[3].rfind("192.168.122.11 ", 0), 0u) << l[3];
}

// IPv4 only: the column keeps its 15 characters.
TEST(TopScreen, Ipv4ColumnKeepsItsWidth)
{
	json s = {{"bridge", "virbr0"},
		  {"interval_s", 0.5},
		  {"guests", {guest({"10.0.0.1"}, "52:54:00:00:00:01")}}};
	std::vector<std::string> l = lines(top_screen(s, 0));
	ASSERT_GE(l.size(), 4u);
	EXPECT_EQ(l[2].find("MAC"), 16u) << l[2];
	EXPECT_EQ(l[3].find("52:54:00:00:00:01"), 16u) << l[3];
}

} // namespace
} // namespace kvmxdp
