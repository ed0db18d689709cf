// SPDX-License-Identifier: GPL-2.0
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include "base/error.hpp"
#include "error_of.hpp"
#include "model/mapping.hpp"

namespace kvmxdp {
namespace {

using test::error_of;

MappingContext ctx()
{
	MappingContext c;
	c.subnet = parse_cidr("192.168.122.0/24");
	c.nat_ports = {61000, 65535};
	c.uplink_addr = parse_ipv4("192.168.1.50");
	c.uplink_net = parse_cidr("192.168.1.0/24");
	return c;
}

TEST(MappingParse, OneToOne)
{
	Mapping m = parse_mapping("192.168.1.101", "192.168.122.101", "");
	EXPECT_TRUE(m.one_to_one());
	EXPECT_EQ(m.ext_addr, parse_ipv4("192.168.1.101"));
	EXPECT_EQ(m.guest_addr, parse_ipv4("192.168.122.101"));
	EXPECT_EQ(m.str(), "192.168.1.101 192.168.122.101");
}

TEST(MappingParse, PortForwardRangeAndUplinkWord)
{
	Mapping m = parse_mapping("uplink:2222-2223", "192.168.122.101:22-23", "tcp");
	EXPECT_TRUE(m.ext_uplink);
	EXPECT_EQ(m.proto, MappingProto::Tcp);
	EXPECT_EQ(m.ext_ports.lo, 2222);
	EXPECT_EQ(m.guest_ports.hi, 23);
	EXPECT_EQ(m.str(), "uplink:2222-2223 192.168.122.101:22-23 tcp");
	EXPECT_EQ(parse_mapping("192.168.1.100:53", "192.168.122.5:53", "udp").proto,
		  MappingProto::Udp);
}

TEST(MappingParse, BadInputNamesTheValue)
{
	struct Case {
		const char *ext, *guest, *proto, *needle;
	} cases[] = {
		{"192.168.1", "192.168.122.2", "", "'192.168.1'"},
		{"192.168.1.1", "guest", "", "'guest'"},
		{"192.168.1.1:0", "192.168.122.2:22", "tcp", "'192.168.1.1:0'"},
		{"192.168.1.1:70000", "192.168.122.2:22", "tcp", "'192.168.1.1:70000'"},
		{"192.168.1.1:22", "192.168.122.2", "tcp", "both sides"},
		{"192.168.1.1:22", "192.168.122.2:22", "", "--proto"},
		{"192.168.1.1:22", "192.168.122.2:22", "sctp", "'sctp'"},
		{"192.168.1.1", "192.168.122.2", "tcp", "--proto tcp"},
		{"192.168.1.1:20-22", "192.168.122.2:22", "tcp", "differ in length"},
		{"uplink", "192.168.122.2", "", "'uplink'"},
	};
	for (const auto &c : cases) {
		std::string err = error_of([&] { parse_mapping(c.ext, c.guest, c.proto); });
		EXPECT_NE(err.find(c.needle), std::string::npos)
			<< c.ext << " " << c.guest << " " << c.proto << " -> " << err;
	}
}

TEST(MappingCheck, AcceptsTheSeedRecipe)
{
	std::vector<Mapping> have;
	for (const char *pair : {"101", "102", "103"}) {
		Mapping m = parse_mapping(std::string("192.168.1.") + pair,
					  std::string("192.168.122.") + pair, "");
		EXPECT_NO_THROW(check_mapping(m, have, ctx()));
		have.push_back(m);
	}
	Mapping fwd = parse_mapping("192.168.1.100:2222", "192.168.122.101:22", "tcp");
	EXPECT_NO_THROW(check_mapping(fwd, have, ctx()));
}

TEST(MappingCheck, RejectsConflictsAndBadPlaces)
{
	std::vector<Mapping> have = {parse_mapping("192.168.1.101", "192.168.122.101", ""),
				     parse_mapping("uplink:2222-2230", "192.168.122.7:22-30",
						   "tcp")};
	struct Case {
		Mapping m;
		const char *needle;
		bool force;
	} cases[] = {
		{parse_mapping("192.168.1.101", "192.168.122.9", ""), "one external address",
		 false},
		{parse_mapping("192.168.1.105", "192.168.122.101", ""), "already has a 1:1", false},
		{parse_mapping("192.168.1.101:80", "192.168.122.9:80", "tcp"),
		 "one external address", false},
		{parse_mapping("192.168.1.50:2225", "192.168.122.9:80", "tcp"),
		 "external ports overlap", false},
		{parse_mapping("uplink:2300", "192.168.122.7:25", "tcp"), "guest ports overlap",
		 false},
		{parse_mapping("uplink:62000", "192.168.122.9:80", "tcp"), "NAT port range", false},
		{parse_mapping("192.168.1.106", "192.168.123.5", ""), "not a host address in",
		 false},
		{parse_mapping("192.168.1.106", "192.168.122.255", ""), "not a host address in",
		 false},
		{parse_mapping("192.168.1.50", "192.168.122.9", ""), "uplink's own address", false},
		{parse_mapping("10.9.9.9", "192.168.122.9", ""), "--force", false},
		{parse_mapping("192.168.122.77", "192.168.122.9", ""), "inside the guest subnet",
		 false},
	};
	for (const auto &c : cases) {
		MappingContext cx = ctx();
		cx.force = c.force;
		std::string err = error_of([&] { check_mapping(c.m, have, cx); });
		EXPECT_NE(err.find(c.needle), std::string::npos)
			<< c.m.str() << " -> '" << err << "'";
	}
	// --force lifts only the network check; a UDP forward may share TCP's ports.
	MappingContext forced = ctx();
	forced.force = true;
	EXPECT_NO_THROW(
		check_mapping(parse_mapping("10.9.9.9", "192.168.122.9", ""), have, forced));
	EXPECT_NO_THROW(check_mapping(parse_mapping("uplink:2222", "192.168.122.7:22", "udp"), have,
				      ctx()));
}

TEST(MappingEntries, InHalvesFirstInNetworkOrder)
{
	Mapping fwd = parse_mapping("uplink:2222-2223", "192.168.122.7:22-23", "tcp");
	auto e = mapping_entries(fwd, parse_ipv4("192.168.1.50"));
	ASSERT_EQ(e.size(), 4u);
	EXPECT_EQ(e[0].key.dir, KVX_BIND_IN);
	EXPECT_EQ(e[1].key.dir, KVX_BIND_IN);
	EXPECT_EQ(e[2].key.dir, KVX_BIND_OUT);
	EXPECT_EQ(e[0].key.proto, IPPROTO_TCP);
	EXPECT_EQ(ntohs(e[1].key.port), 2223);
	EXPECT_EQ(ntohl(e[1].key.addr), parse_ipv4("192.168.1.50"));
	EXPECT_EQ(ntohl(e[1].val.addr), parse_ipv4("192.168.122.7"));
	EXPECT_EQ(ntohs(e[1].val.port), 23);
	EXPECT_EQ(e[1].val.flags, KVX_BIND_F_STATIC);
	EXPECT_EQ(ntohs(e[3].key.port), 23);
	EXPECT_EQ(ntohs(e[3].val.port), 2223);
	// No uplink address yet: nothing to install.
	EXPECT_TRUE(mapping_entries(fwd, 0).empty());

	auto one = mapping_entries(parse_mapping("192.168.1.101", "192.168.122.101", ""), 0);
	ASSERT_EQ(one.size(), 2u);
	EXPECT_EQ(one[0].key.proto, KVX_PROTO_ANY);
	EXPECT_EQ(one[0].val.flags, KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE);
	EXPECT_EQ(ntohl(one[1].key.addr), parse_ipv4("192.168.122.101"));
	EXPECT_EQ(ntohl(one[1].val.addr), parse_ipv4("192.168.1.101"));
}

} // namespace
} // namespace kvmxdp
