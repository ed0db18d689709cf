// SPDX-License-Identifier: GPL-2.0
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <cstdio>
#include <cstring>

#include "base/error.hpp"
#include "error_of.hpp"
#include "kvmxdp/abi.h"
#include "model/libvirt.hpp"
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

// What is the host's own on the uplink's side is no mapping's, --force or
// not: a secondary address (the probe never sees the host's own), any
// other link's address, the uplink network's network and broadcast
// addresses.  The uplink's own for a forward is `uplink` spelt out.
TEST(MappingCheck, RefusesTheHostsAddressesAndTheNetworksEnds)
{
	MappingContext cx = ctx();
	cx.host_addrs = {parse_ipv4("192.168.1.50"), parse_ipv4("192.168.1.60"),
			 parse_ipv4("10.8.0.1"), parse_ipv4("192.168.122.1")};
	for (bool force : {false, true}) {
		cx.force = force;
		struct Case {
			const char *ext, *guest, *proto, *needle;
		} cases[] = {
			{"192.168.1.60", "192.168.122.9", "", "is an address of this host"},
			{"10.8.0.1", "192.168.122.9", "", "is an address of this host"},
			{"192.168.1.0", "192.168.122.9", "",
			 "is the network address of the uplink's network 192.168.1.0/24"},
			{"192.168.1.255:80", "192.168.122.9:80", "tcp",
			 "is the broadcast address of the uplink's network"},
		};
		for (const auto &c : cases) {
			std::string err = error_of([&] {
				check_mapping(parse_mapping(c.ext, c.guest, c.proto), {}, cx);
			});
			EXPECT_NE(err.find(c.needle), std::string::npos)
				<< c.ext << " force=" << force << " -> '" << err << "'";
		}
	}
	cx.force = false;
	EXPECT_NO_THROW(
		check_mapping(parse_mapping("192.168.1.50:80", "192.168.122.9:80", "tcp"), {}, cx));
	EXPECT_NO_THROW(check_mapping(parse_mapping("192.168.1.61", "192.168.122.9", ""), {}, cx));
	// A forward takes only its ports, so it may use another of the host's
	// addresses (several public addresses, one service each).
	EXPECT_NO_THROW(
		check_mapping(parse_mapping("192.168.1.60:80", "192.168.122.9:80", "tcp"), {}, cx));
	// A /31 uplink (RFC 3021): both of its addresses are hosts'.
	cx.uplink_net = Ipv4Net{parse_ipv4("192.168.1.50"), 31};
	cx.host_addrs = {parse_ipv4("192.168.1.50")};
	EXPECT_NO_THROW(check_mapping(parse_mapping("192.168.1.51", "192.168.122.9", ""), {}, cx));
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

MappingContext ctx6()
{
	MappingContext c = ctx();
	c.subnet6 = parse_subnet6("fd42::/64", "--subnet6");
	c.uplink_addr6 = parse_ipv6("2001:db8:1::10");
	c.uplink_nets6 = {network_of6(parse_ipv6("2001:db8:1::10"), 64)};
	return c;
}

TEST(MappingParse6, BracketedPortsBareOneToOne)
{
	Mapping f = parse_mapping("[uplink]:2222", "[fd42::14]:22", "tcp");
	EXPECT_TRUE(f.v6);
	EXPECT_TRUE(f.ext_uplink);
	EXPECT_EQ(f.guest_addr6, parse_ipv6("fd42::14"));
	EXPECT_EQ(f.guest_ports.lo, 22);
	EXPECT_EQ(f.str(), "[uplink]:2222 [fd42::14]:22 tcp");
	EXPECT_EQ(f.ext_str(), "[uplink]:2222");
	EXPECT_EQ(f.guest_str(), "[fd42::14]:22");

	Mapping lit = parse_mapping("[2001:DB8:1::5]:8080-8081", "[fd42::14]:80-81", "tcp");
	EXPECT_EQ(lit.ext_addr6, parse_ipv6("2001:db8:1::5"));
	// Printed canonically (RFC 5952: lower case, shortest).
	EXPECT_EQ(lit.str(), "[2001:db8:1::5]:8080-8081 [fd42::14]:80-81 tcp");

	Mapping one = parse_mapping("2001:db8:1::101", "fd42::101", "");
	EXPECT_TRUE(one.v6);
	EXPECT_TRUE(one.one_to_one());
	EXPECT_EQ(one.str(), "2001:db8:1::101 fd42::101");
	// A bracketed address without a port is an address too.
	EXPECT_TRUE(parse_mapping("[2001:db8:1::101]", "[fd42::101]", "") == one);
	// The same text in another family is another mapping.
	EXPECT_FALSE(parse_mapping("uplink:2222", "192.168.122.14:22", "tcp") == f);
	// What str() and the config print reads back as the same mapping.
	for (const Mapping &m : {f, lit, one})
		EXPECT_TRUE(parse_mapping(m.ext_str(), m.guest_str(), m.proto_str()) == m)
			<< m.str();
}

TEST(MappingParse6, MalformedAmbiguousAndMixed)
{
	struct Case {
		const char *ext, *guest, *proto, *needle;
	} cases[] = {
		{"[fd42::1", "[fd42::14]:22", "tcp", "'[' without ']'"},
		{"[uplink]:2222", "[fd42::14:22", "tcp", "'[fd42::14:22': '[' without ']'"},
		{"fd42::1]:22", "[fd42::14]:22", "tcp", "']' without '['"},
		{"[fd42::zz]:22", "[fd42::14]:22", "tcp", "invalid IPv6 address 'fd42::zz'"},
		{"[uplink]:2222", "[uplink]:22", "tcp", "invalid IPv6 address 'uplink'"},
		{"[fd42::1]22", "[fd42::14]:22", "tcp", "need ':PORT' after ']'"},
		{"[fd42::1]:0", "[fd42::14]:22", "tcp", "'[fd42::1]:0'"},
		{"[fd42::1]:2-1", "[fd42::14]:22", "tcp", "'[fd42::1]:2-1'"},
		// A bare address where a port is wanted: bracket it.
		{"[uplink]:2222", "fd42::1:22", "tcp", "'fd42::1:22' is ambiguous"},
		{"[uplink]:2222", "fd42::1:22", "tcp", "'[fd42::1]:22'"},
		{"2001:db8::1:8080", "fd42::1:80", "tcp", "'2001:db8::1:8080' is ambiguous"},
		{"2001:db8::1::80", "[fd42::1]:80", "tcp", "[IPV6]:PORT"},
		// One family per mapping.
		{"uplink:2222", "[fd42::14]:22", "tcp", "mixes IPv4 and IPv6"},
		{"[uplink]:2222", "192.168.122.14:22", "tcp", "mixes IPv4 and IPv6"},
		{"2001:db8:1::101", "192.168.122.101", "", "mixes IPv4 and IPv6"},
		{"[uplink]", "fd42::101", "", "'[uplink]' cannot be mapped 1:1"},
		{"[uplink]:2222", "[fd42::14]:22", "", "needs --proto"},
		{"[uplink]:2222-2223", "[fd42::14]:22", "tcp", "differ in length"},
	};
	for (const auto &c : cases) {
		std::string err = error_of([&] { parse_mapping(c.ext, c.guest, c.proto); });
		EXPECT_NE(err.find(c.needle), std::string::npos)
			<< c.ext << " " << c.guest << " " << c.proto << " -> " << err;
		EXPECT_EQ(err.find('\n'), std::string::npos) << err;
	}
}

// kvx_extaddr6 holds KVX_EXTADDR6_MAX literal addresses: the next new one
// is refused in one line saying so (past it the map refused the entry and
// the mapping stayed held for good), while more mappings on an address
// already there, [uplink] forwards and the uplink's own address written
// out need no entry.
TEST(MappingCheck6, AtMostTheMappedAddressesTheDatapathAnnounces)
{
	std::vector<Mapping> have;
	auto lit = [](unsigned i) {
		char a[64];
		std::snprintf(a, sizeof(a), "2001:db8:1::1:%x", i);
		return std::string(a);
	};
	auto guest = [](unsigned i) {
		char a[64];
		std::snprintf(a, sizeof(a), "fd42::1:%x", i);
		return std::string(a);
	};
	for (unsigned i = 0; i < KVX_EXTADDR6_MAX; i++)
		have.push_back(parse_mapping(lit(i), guest(i), ""));
	have.push_back(parse_mapping("[2001:db8:1::5]:80", "[fd42::5]:80", "tcp"));
	have.pop_back(); // the 256 1:1 addresses alone fill it
	const std::string err = error_of([&] {
		check_mapping(parse_mapping("[2001:db8:1::5]:80", "[fd42::5]:80", "tcp"), have,
			      ctx6());
	});
	EXPECT_NE(err.find("256 IPv6 external addresses are mapped already"), std::string::npos)
		<< err;
	EXPECT_NE(err.find("[2001:db8:1::5]:80"), std::string::npos) << err;
	EXPECT_EQ(err.find('\n'), std::string::npos) << err;
	EXPECT_NO_THROW(
		check_mapping(parse_mapping("[uplink]:80", "[fd42::5]:80", "tcp"), have, ctx6()));
	EXPECT_NO_THROW(check_mapping(parse_mapping("[2001:db8:1::10]:81", "[fd42::5]:81", "tcp"),
				      have, ctx6()));
	have.pop_back();
	EXPECT_NO_THROW(check_mapping(parse_mapping("[2001:db8:1::5]:80", "[fd42::5]:80", "tcp"),
				      have, ctx6()));
	have.push_back(parse_mapping("[2001:db8:1::5]:80", "[fd42::5]:80", "tcp"));
	EXPECT_NO_THROW(check_mapping(parse_mapping("[2001:db8:1::5]:81", "[fd42::5]:81", "tcp"),
				      have, ctx6()));
}

TEST(MappingCheck6, SameRulesAsIpv4)
{
	std::vector<Mapping> have = {
		parse_mapping("2001:db8:1::101", "fd42::101", ""),
		parse_mapping("[uplink]:2222-2230", "[fd42::7]:22-30", "tcp"),
		// An IPv4 mapping's ports are its own family's.
		parse_mapping("uplink:3000", "192.168.122.7:30", "tcp"),
	};
	EXPECT_NO_THROW(check_mapping(parse_mapping("[2001:db8:1::5]:8080", "[fd42::14]:80", "tcp"),
				      have, ctx6()));
	EXPECT_NO_THROW(check_mapping(parse_mapping("[uplink]:3000", "[fd42::7]:3000", "tcp"), have,
				      ctx6()));
	EXPECT_NO_THROW(
		check_mapping(parse_mapping("[uplink]:2222", "[fd42::7]:22", "udp"), have, ctx6()));
	struct Case {
		Mapping m;
		const char *needle;
	} cases[] = {
		{parse_mapping("2001:db8:1::101", "fd42::9", ""), "one external address"},
		{parse_mapping("2001:db8:1::105", "fd42::101", ""), "already has a 1:1"},
		{parse_mapping("[2001:db8:1::101]:80", "[fd42::9]:80", "tcp"),
		 "one external address"},
		// The uplink's address written out is [uplink].
		{parse_mapping("[2001:db8:1::10]:2225", "[fd42::9]:80", "tcp"),
		 "external ports overlap"},
		{parse_mapping("[uplink]:2300", "[fd42::7]:25", "tcp"), "guest ports overlap"},
		{parse_mapping("[uplink]:62000", "[fd42::9]:80", "tcp"), "NAT port range"},
		{parse_mapping("2001:db8:1::106", "fd43::5", ""),
		 "not a host address in fd42::/64"},
		{parse_mapping("2001:db8:1::106", "fd42::", ""), "not a host address in"},
		{parse_mapping("2001:db8:1::10", "fd42::9", ""), "uplink's own address"},
		{parse_mapping("2001:db8:2::9", "fd42::9", ""), "--force"},
		{parse_mapping("fd42::77", "fd42::9", ""), "inside the guests' prefix"},
		{parse_mapping("fe80::1", "fd42::9", ""), "link-local"},
		{parse_mapping("ff02::1", "fd42::9", ""), "link-local or multicast"},
		{parse_mapping("::ffff:192.168.1.9", "fd42::9", ""), "not ::/8"},
	};
	for (const auto &c : cases) {
		std::string err = error_of([&] { check_mapping(c.m, have, ctx6()); });
		EXPECT_NE(err.find(c.needle), std::string::npos)
			<< c.m.str() << " -> '" << err << "'";
	}
	MappingContext forced = ctx6();
	forced.force = true;
	EXPECT_NO_THROW(check_mapping(parse_mapping("2001:db8:2::9", "fd42::9", ""), have, forced));
	// NAT66 off: no IPv6 mapping, said so.
	MappingContext off = ctx();
	EXPECT_NE(error_of([&] {
			  check_mapping(parse_mapping("[uplink]:80", "[fd42::9]:80", "tcp"), {},
					off);
		  }).find("NAT66 is off"),
		  std::string::npos);
}

// Any address of the host (another link's, a temporary one of the uplink)
// is refused for 1:1, even with --force; a forward on it takes only its
// ports, as on the uplink's address.
TEST(MappingCheck6, RefusesTheHostsAddressesForOneToOne)
{
	MappingContext cx = ctx6();
	cx.host_addrs6 = {parse_ipv6("2001:db8:1::10"), parse_ipv6("2001:db8:1::33"),
			  parse_ipv6("2001:db8:77::1"), parse_ipv6("fe80::1")};
	for (bool force : {false, true}) {
		cx.force = force;
		for (const char *ext : {"2001:db8:1::33", "2001:db8:77::1"}) {
			const std::string err = error_of(
				[&] { check_mapping(parse_mapping(ext, "fd42::9", ""), {}, cx); });
			EXPECT_NE(err.find(std::string(ext) + " is an address of this host"),
				  std::string::npos)
				<< ext << " force=" << force << " -> '" << err << "'";
		}
	}
	cx.force = false;
	EXPECT_NO_THROW(
		check_mapping(parse_mapping("[2001:db8:1::33]:80", "[fd42::9]:80", "tcp"), {}, cx));
	EXPECT_NO_THROW(check_mapping(parse_mapping("2001:db8:1::34", "fd42::9", ""), {}, cx));
	// Not known (empty): not checked.
	cx.host_addrs6.clear();
	EXPECT_NO_THROW(check_mapping(parse_mapping("2001:db8:1::33", "fd42::9", ""), {}, cx));
}

TEST(MappingEntries6, PairsInKvxBind6)
{
	const Ipv6Addr up = parse_ipv6("2001:db8:1::10");
	auto e =
		mapping_entries6(parse_mapping("[uplink]:2222-2223", "[fd42::7]:22-23", "tcp"), up);
	ASSERT_EQ(e.size(), 4u);
	EXPECT_EQ(e[0].key.dir, KVX_BIND_IN);
	EXPECT_EQ(e[1].key.dir, KVX_BIND_IN);
	EXPECT_EQ(e[2].key.dir, KVX_BIND_OUT);
	EXPECT_EQ(ntohs(e[1].key.port), 2223);
	EXPECT_EQ(0, std::memcmp(e[1].key.addr, up.data(), 16));
	EXPECT_EQ(0, std::memcmp(e[1].val.addr, parse_ipv6("fd42::7").data(), 16));
	EXPECT_EQ(e[1].val.bind.addr, 0u); // the IPv4 slot stays 0
	EXPECT_EQ(ntohs(e[1].val.bind.port), 23);
	EXPECT_EQ(e[1].val.bind.flags, KVX_BIND_F_STATIC);
	EXPECT_EQ(0, std::memcmp(e[3].key.addr, parse_ipv6("fd42::7").data(), 16));
	EXPECT_EQ(ntohs(e[3].val.bind.port), 2223);
	// [uplink] without a NAT66 address: nothing yet; no IPv4 entries ever.
	EXPECT_TRUE(
		mapping_entries6(parse_mapping("[uplink]:2222", "[fd42::7]:22", "tcp"), {}).empty());
	EXPECT_TRUE(mapping_entries(parse_mapping("[uplink]:2222", "[fd42::7]:22", "tcp"),
				    parse_ipv4("192.168.1.50"))
			    .empty());
	auto one = mapping_entries6(parse_mapping("2001:db8:1::101", "fd42::101", ""), up);
	ASSERT_EQ(one.size(), 2u);
	EXPECT_EQ(one[0].key.proto, KVX_PROTO_ANY);
	EXPECT_EQ(one[0].val.bind.flags, KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE);
	EXPECT_EQ(0, std::memcmp(one[0].key.addr, parse_ipv6("2001:db8:1::101").data(), 16));
	EXPECT_EQ(0, std::memcmp(one[1].val.addr, parse_ipv6("2001:db8:1::101").data(), 16));
}

// Relay mode's mappings: one endpoint, a guest's own IPv6 address (and
// ports), written back and read again as the same mapping; the forms that
// would translate or name no guest's address are refused in one line.
TEST(MappingRelay, OneEndpointIsAGuestsOwnAddress)
{
	Mapping port = parse_mapping("[2001:db8:1::5054:ff:fe00:7]:22", "", "tcp");
	EXPECT_TRUE(port.opens());
	EXPECT_FALSE(port.one_to_one());
	EXPECT_EQ(port.guest_addr6, parse_ipv6("2001:db8:1::5054:ff:fe00:7"));
	EXPECT_EQ(port.guest_ports.lo, 22);
	EXPECT_EQ(port.str(), "[2001:db8:1:0:5054:ff:fe00:7]:22 tcp"); // RFC 5952
	Mapping addr = parse_mapping("2001:db8:1::5054:ff:fe00:7", "", "");
	EXPECT_TRUE(addr.opens());
	EXPECT_TRUE(addr.one_to_one());
	EXPECT_EQ(addr.str(), "2001:db8:1:0:5054:ff:fe00:7");
	// The config's spelling (GUEST written out) and the explicit one.
	for (const Mapping &m : {port, addr})
		EXPECT_TRUE(parse_mapping(m.ext_str(), m.guest_str(), m.proto_str()) == m)
			<< m.str();
	EXPECT_TRUE(parse_mapping("[2001:db8:1::7]:80-81", "[2001:db8:1::7]:80-81", "udp") ==
		    parse_mapping("[2001:db8:1::7]:80-81", "", "udp"));
	// NAT66's mappings never map an address to itself.
	EXPECT_FALSE(parse_mapping("2001:db8:1::101", "fd42::101", "").opens());
	EXPECT_FALSE(parse_mapping("[uplink]:22", "[fd42::7]:22", "tcp").opens());

	struct Case {
		const char *ext, *guest, *proto, *needle;
	} cases[] = {
		{"192.168.1.7", "", "", "'192.168.1.7' needs a GUEST"},
		{"uplink:22", "", "tcp", "needs a GUEST"},
		{"[uplink]:22", "", "tcp", "needs a GUEST"},
		{"[2001:db8:1::7]:2222", "[2001:db8:1::7]:22", "tcp", "same ports on both sides"},
		{"[2001:db8:1::7]:22", "", "", "needs --proto"},
		{"2001:db8:1::7", "", "tcp", "ambiguous"},
	};
	for (const auto &c : cases) {
		const std::string err = error_of([&] { parse_mapping(c.ext, c.guest, c.proto); });
		EXPECT_NE(err.find(c.needle), std::string::npos)
			<< c.ext << " '" << c.guest << "' " << c.proto << " -> " << err;
		EXPECT_EQ(err.find('\n'), std::string::npos) << err;
	}
}

TEST(MappingRelay, OnTheUplinksPrefixNotTheHostsNorNat66s)
{
	MappingContext cx = ctx6();
	cx.host_addrs6 = {parse_ipv6("2001:db8:1::33")};
	std::vector<Mapping> have = {
		parse_mapping("[2001:db8:1::7]:22", "", "tcp"),
		parse_mapping("2001:db8:1::101", "fd42::101", ""),
	};
	// Another port, another protocol, another guest: fine; no NAT port
	// range (the address is no host's) and no kvx_extaddr6 entry.
	for (const char *ok : {"[2001:db8:1::7]:80", "[2001:db8:1::8]:62000"})
		EXPECT_NO_THROW(check_mapping(parse_mapping(ok, "", "tcp"), have, cx)) << ok;
	EXPECT_NO_THROW(check_mapping(parse_mapping("[2001:db8:1::7]:22", "", "udp"), have, cx));
	EXPECT_NO_THROW(check_mapping(parse_mapping("2001:db8:1::9", "", ""), have, cx));
	struct Case {
		Mapping m;
		const char *needle;
	} cases[] = {
		{parse_mapping("[2001:db8:1::7]:20-22", "", "tcp"), "external ports overlap"},
		{parse_mapping("2001:db8:1::7", "", ""), "one external address, two mappings"},
		{parse_mapping("2001:db8:1::101", "", ""), "one external address, two mappings"},
		{parse_mapping("2001:db8:1::10", "", ""), "is an address of this host"},
		{parse_mapping("[2001:db8:1::33]:22", "", "tcp"), "is an address of this host"},
		{parse_mapping("[fd42::7]:22", "", "tcp"), "inside the guests' NAT66 prefix"},
		{parse_mapping("[2001:db8:2::7]:22", "", "tcp"), "not on the uplink's prefix"},
		{parse_mapping("fe80::7", "", ""), "link-local"},
	};
	for (const auto &c : cases) {
		const std::string err = error_of([&] { check_mapping(c.m, have, cx); });
		EXPECT_NE(err.find(c.needle), std::string::npos)
			<< c.m.str() << " -> '" << err << "'";
		EXPECT_EQ(err.find('\n'), std::string::npos) << err;
	}
	// Relay forwards its own prefix only: --force routes nothing there.
	cx.force = true;
	EXPECT_NE(error_of([&] {
			  check_mapping(parse_mapping("[2001:db8:2::7]:22", "", "tcp"), have, cx);
		  }).find("not on the uplink's prefix"),
		  std::string::npos);
	// Running: the relay prefix itself (another on-link prefix, say the
	// one renumbering deprecated, is no relay's).
	cx.force = false;
	cx.uplink_nets6.push_back(network_of6(parse_ipv6("2001:db8:5::1"), 64));
	cx.relay_prefix6 = network_of6(parse_ipv6("2001:db8:5::"), 64);
	EXPECT_NO_THROW(check_mapping(parse_mapping("[2001:db8:5::7]:22", "", "tcp"), have, cx));
	const std::string off = error_of(
		[&] { check_mapping(parse_mapping("[2001:db8:1::7]:23", "", "tcp"), have, cx); });
	EXPECT_NE(off.find("2001:db8:1::7 is not in the relay prefix 2001:db8:5::/64"),
		  std::string::npos)
		<< off;
	// Relay mode runs with no NAT66 prefix: not needed.
	MappingContext relay = ctx6();
	relay.subnet6.reset();
	EXPECT_NO_THROW(check_mapping(parse_mapping("[2001:db8:1::7]:22", "", "tcp"), {}, relay));
	// The pairs: the address to itself, as NAT66's (IN halves first).
	auto e = mapping_entries6(parse_mapping("[2001:db8:1::7]:22", "", "tcp"), {});
	ASSERT_EQ(e.size(), 2u);
	EXPECT_EQ(e[0].key.dir, KVX_BIND_IN);
	EXPECT_EQ(0, std::memcmp(e[0].key.addr, e[0].val.addr, 16));
	EXPECT_EQ(e[0].key.port, e[0].val.bind.port);
	EXPECT_EQ(e[0].val.bind.flags, KVX_BIND_F_STATIC);
	auto a = mapping_entries6(parse_mapping("2001:db8:1::7", "", ""), {});
	ASSERT_EQ(a.size(), 2u);
	EXPECT_EQ(a[0].val.bind.flags, KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE);
	EXPECT_EQ(0, std::memcmp(a[0].key.addr, a[0].val.addr, 16));
	// No MAC: the datapath records the first owner it lets traffic in to.
	for (const auto &x : {e[0], a[0]})
		EXPECT_EQ(0, std::memcmp(x.val.bind.guest_mac, "\0\0\0\0\0\0", 6));
	// A relay mapping takes no announced address: the datapath's
	// KVX_EXTADDR6_MAX literal addresses are NAT66's.
	std::vector<Mapping> many;
	for (unsigned i = 0; i < KVX_EXTADDR6_MAX + 4; i++) {
		char t[64];
		std::snprintf(t, sizeof(t), "2001:db8:1::2:%x", i);
		many.push_back(parse_mapping(t, "", ""));
	}
	EXPECT_NO_THROW(
		check_mapping(parse_mapping("2001:db8:1::101", "fd42::101", ""), many, ctx6()));
	// Never made by a hook (libvirt metadata): `map add` only.
	const std::string hook = error_of([&] {
		check_permanent({parse_mapping("[2001:db8:1::7]:22", "", "tcp")}, {}, std::nullopt,
				{61000, 65535}, std::nullopt);
	});
	EXPECT_NE(hook.find("is made with `kvmxdp map add`"), std::string::npos) << hook;
}

TEST(MappingPending, MadeWhenTheyCanBe)
{
	const NetId home{parse_cidr("192.168.1.0/24"), parse_ipv4("192.168.1.1"),
			 "02:00:00:00:00:01"};
	const NetId cafe{parse_cidr("10.0.0.0/24"), parse_ipv4("10.0.0.1"), "02:00:00:00:00:02"};
	StaticMapping made, no_lease, home_addr, clash;
	made.m = parse_mapping("uplink:2222", "192.168.122.10:22", "tcp");
	made.network = home;
	no_lease.m = parse_mapping("uplink:2223", "0.0.0.0:22", "tcp");
	no_lease.lease_mac = "52:54:00:00:00:02";
	no_lease.pending = "x";
	home_addr.m = parse_mapping("192.168.1.101", "192.168.122.11", "");
	home_addr.pending = "x";
	// The port another VM's forward holds: waits until that one goes.
	clash.m = parse_mapping("uplink:2222", "192.168.122.12:22", "tcp");
	clash.pending = "x";
	std::vector<StaticMapping> ms = {made, no_lease, home_addr, clash};

	// No uplink address (boot before WiFi): all wait, saying why.
	bool changed = false;
	MappingContext none = ctx();
	none.uplink_addr = 0;
	none.uplink_net.reset();
	EXPECT_TRUE(promote_pending(ms, none, std::nullopt, &changed).empty());
	EXPECT_TRUE(changed);
	EXPECT_EQ(ms[1].pending, "no address for MAC 52:54:00:00:00:02 yet (no DHCP lease)");
	EXPECT_EQ(ms[2].pending, "the uplink has no IPv4 address yet");
	EXPECT_FALSE(mapping_active(ms[2], home));
	promote_pending(ms, none, std::nullopt, &changed);
	EXPECT_FALSE(changed); // the same reasons: nothing to save

	// Roaming: the home address is not on the café's network.
	MappingContext at_cafe = ctx();
	at_cafe.uplink_addr = parse_ipv4("10.0.0.7");
	at_cafe.uplink_net = cafe.net;
	EXPECT_TRUE(promote_pending(ms, at_cafe, cafe).empty());
	EXPECT_NE(ms[2].pending.find("is not on the uplink's network 10.0.0.0/24"),
		  std::string::npos)
		<< ms[2].pending;
	EXPECT_NE(ms[3].pending.find("external ports overlap"), std::string::npos) << ms[3].pending;
	// A reason given with its context (the hook: the guest moved) keeps
	// the context while the same reason holds, and loses it once
	// another one blocks.
	const std::string still = ms[3].pending;
	ms[3].pending = "its guest moved to 192.168.122.12: " + still;
	const std::string with_context = ms[3].pending;
	promote_pending(ms, at_cafe, cafe, &changed);
	EXPECT_EQ(ms[3].pending, with_context);
	EXPECT_FALSE(changed);
	ms[3].pending = ":" + still; // one character longer, no ": "
	promote_pending(ms, at_cafe, cafe, &changed);
	EXPECT_EQ(ms[3].pending, still);
	ms[3].pending = "its guest moved to 192.168.122.12: something else";
	promote_pending(ms, at_cafe, cafe, &changed);
	EXPECT_EQ(ms[3].pending, still);
	EXPECT_TRUE(changed);

	// Home, and the lease came: made and tied to this network.
	ms[1].m.guest_addr = parse_ipv4("192.168.122.13");
	auto idx = promote_pending(ms, ctx(), home, &changed);
	EXPECT_EQ(idx, (std::vector<size_t>{1, 2}));
	EXPECT_TRUE(ms[1].pending.empty());
	EXPECT_TRUE(ms[2].pending.empty());
	EXPECT_TRUE(ms[2].network == home);
	EXPECT_TRUE(mapping_active(ms[2], home));
	EXPECT_FALSE(mapping_active(ms[2], cafe));
	EXPECT_FALSE(ms[3].pending.empty());

	// The other VM's forward went: the waiting one is made.
	ms.erase(ms.begin());
	EXPECT_EQ(promote_pending(ms, ctx(), home), (std::vector<size_t>{2}));
	// Recorded mappings are checked without the pending ones.
	ms.push_back(clash);
	EXPECT_NO_THROW(check_recorded_mappings(ms, ctx().subnet, ctx().nat_ports));
}

// A metadata mapping's claim is checked again when it is made (the hook
// checked it when the domain started; a host service may listen on its
// port by now, the allow-list may have changed): refused, it waits with
// the reason; the administrator's own mappings are not asked.
TEST(MappingPending, MetadataClaimCheckedAgainWhenMade)
{
	const NetId home{parse_cidr("192.168.1.0/24"), parse_ipv4("192.168.1.1"),
			 "02:00:00:00:00:01"};
	StaticMapping meta, forced, cli;
	meta.m = parse_mapping("uplink:2222", "192.168.122.10:22", "tcp");
	meta.vm = "web1";
	meta.from_metadata = true;
	meta.pending = "x";
	forced = meta;
	forced.m = parse_mapping("uplink:2223", "192.168.122.10:23", "tcp");
	forced.metadata_force = true;
	cli.m = parse_mapping("uplink:2224", "192.168.122.10:24", "tcp");
	cli.vm = "web1";
	cli.pending = "x";
	std::vector<StaticMapping> ms = {meta, forced, cli};
	std::vector<std::pair<uint16_t, bool>> asked;
	const auto refusal = [&](const StaticMapping &sm) -> std::string {
		asked.emplace_back(sm.m.ext_ports.lo, sm.metadata_force);
		return sm.metadata_force ? "" : "a host service listens on tcp port 2222";
	};
	EXPECT_EQ(promote_pending(ms, ctx(), home, nullptr, refusal), (std::vector<size_t>{1, 2}));
	EXPECT_EQ(ms[0].pending, "a host service listens on tcp port 2222");
	EXPECT_EQ(asked, (std::vector<std::pair<uint16_t, bool>>{{2222, false}, {2223, true}}));
}

// A `map add ... vm:NAME` mapping of a stopped domain waits for its start:
// the daemon never makes it on its own (a lease for its MAC may be
// another guest's asking), a metadata one with the same text is not it.
TEST(MappingPending, StoppedVmsMappingWaitsForItsStart)
{
	const NetId home{parse_cidr("192.168.1.0/24"), parse_ipv4("192.168.1.1"),
			 "02:00:00:00:00:01"};
	StaticMapping cli, other;
	cli.m = parse_mapping("uplink:2222", "192.168.122.10:22", "tcp");
	cli.vm = "web1";
	cli.lease_mac = "52:54:00:00:00:02";
	cli.pending = vm_stopped_reason("web1");
	EXPECT_TRUE(waits_for_vm_start(cli));
	other = cli;
	other.from_metadata = true; // a hook's, its domain gone (demote_stopped_domains)
	EXPECT_TRUE(waits_for_vm_start(other));
	other = cli;
	other.pending = "the uplink has no IPv4 address yet";
	EXPECT_FALSE(waits_for_vm_start(other));

	std::vector<StaticMapping> ms = {cli};
	MappingContext c = ctx();
	bool changed = true;
	EXPECT_TRUE(promote_pending(ms, c, home, &changed).empty());
	EXPECT_FALSE(changed);
	EXPECT_EQ(ms[0].pending, vm_stopped_reason("web1"));
	EXPECT_FALSE(mapping_active(ms[0], home));
}

// After a crash no "stopped" hook comes: a domain's metadata mappings go
// out of the datapath while libvirt does not run it (no status file), and
// the daemon does not make them again; `map add` ones and other domains'
// are left alone.
TEST(MappingPending, MetadataOfADomainNotRunningWaitsForItsStart)
{
	const NetId home{parse_cidr("192.168.1.0/24"), parse_ipv4("192.168.1.1"),
			 "02:00:00:00:00:01"};
	StaticMapping fwd, one, cli, db, plain;
	fwd.m = parse_mapping("uplink:2222", "192.168.122.10:22", "tcp");
	fwd.vm = "web1";
	fwd.from_metadata = true;
	fwd.network = home;
	one = fwd;
	one.m = parse_mapping("192.168.1.101", "192.168.122.10", "");
	one.pending = "no address for MAC 52:54:00:00:00:02 yet (no DHCP lease)";
	cli = fwd;
	cli.m = parse_mapping("uplink:2223", "192.168.122.10:80", "tcp");
	cli.from_metadata = false;
	db = fwd;
	db.vm = "db1";
	db.m = parse_mapping("uplink:8081", "192.168.122.11:80", "tcp");
	plain.m = parse_mapping("uplink:8082", "192.168.122.12:80", "tcp");
	plain.network = home;
	std::vector<StaticMapping> ms = {fwd, one, cli, db, plain};
	std::vector<std::string> asked;
	auto running = [&](const std::string &vm) {
		asked.push_back(vm);
		return vm == "db1";
	};
	bool changed = false;
	EXPECT_EQ(demote_stopped_domains(ms, running, &changed), std::vector<size_t>{0});
	EXPECT_TRUE(changed);
	EXPECT_EQ(asked, (std::vector<std::string>{"web1", "db1"})) << "each domain once";
	EXPECT_EQ(ms[0].pending, vm_stopped_reason("web1"));
	EXPECT_EQ(ms[1].pending, vm_stopped_reason("web1"));
	EXPECT_FALSE(mapping_active(ms[0], home));
	EXPECT_EQ(ms[2].pending, "") << "map add vm: is the administrator's";
	EXPECT_EQ(ms[3].pending, "") << "db1 runs";
	EXPECT_EQ(ms[4].pending, "");
	MappingContext c = ctx();
	EXPECT_TRUE(promote_pending(ms, c, home, &changed).empty());
	EXPECT_EQ(ms[0].pending, vm_stopped_reason("web1"));
	// Again: nothing more to do.
	EXPECT_TRUE(demote_stopped_domains(ms, running, &changed).empty());
	EXPECT_FALSE(changed);
}

// A lease of 52:54:00:00:00:LAST.
Lease lease(const char *addr, uint8_t last, int64_t expiry)
{
	Lease l;
	l.addr = parse_ipv4(addr);
	l.mac = {0x52, 0x54, 0, 0, 0, last};
	l.expiry = expiry;
	return l;
}

// web1 (lease-only, MAC ...:01) had .10: a 1:1 address and a forward to
// its :22; db1 (MAC ...:02) had .11.  web1's lease ran out while it was
// down and db1's lease moved it onto .10.  The lease file says .10 is
// db1's: web1's mappings are the stale ones, clash (the 1:1) or not (the
// forward would reach db1's :22), and wait for web1's next lease.
TEST(MappingPending, LeaseMovedOntoAStaleMappingsAddressKeepsIt)
{
	constexpr int64_t now = 1000;
	StaticMapping web1, web1_ssh, db1;
	web1.m = parse_mapping("192.168.1.101", "192.168.122.10", "");
	web1.vm = "web1";
	web1.lease_mac = "52:54:00:00:00:01";
	web1_ssh = web1;
	web1_ssh.m = parse_mapping("uplink:2222", "192.168.122.10:22", "tcp");
	db1.m = parse_mapping("192.168.1.102", "192.168.122.11", "");
	db1.vm = "db1";
	db1.lease_mac = "52:54:00:00:00:02";
	std::vector<StaticMapping> ms = {web1, web1_ssh, db1};
	const std::vector<Lease> leases = {lease("192.168.122.10", 1, 900),
					   lease("192.168.122.10", 2, 4600)};
	ASSERT_EQ(follow_leases(ms, leases, now).size(), 1u);
	MappingContext c = ctx();
	c.force = true;
	const auto held = hold_clashing(ms, {2}, c, leases, now);
	ASSERT_EQ(held.size(), 2u);
	EXPECT_NE(held[0].find("vm web1: 192.168.1.101 192.168.122.10 waits: guest "
			       "192.168.122.10 is leased to vm db1 now"),
		  std::string::npos)
		<< held[0];
	EXPECT_TRUE(ms[2].pending.empty()) << ms[2].pending;
	EXPECT_EQ(ms[2].m.guest_addr, parse_ipv4("192.168.122.10"));
	for (size_t k : {0, 1}) {
		EXPECT_EQ(ms[k].pending, "no address for MAC 52:54:00:00:00:01: its lease of "
					 "192.168.122.10 went to vm db1");
		EXPECT_EQ(ms[k].m.guest_addr, 0u);
	}
	EXPECT_NO_THROW(check_recorded_mappings(ms, c.subnet, c.nat_ports));
	// The daemon does not make them again on db1's address...
	const NetId home{parse_cidr("192.168.1.0/24"), parse_ipv4("192.168.1.1"), ""};
	EXPECT_TRUE(promote_pending(ms, ctx(), home).empty());
	// ...but once web1's next lease moves them there.
	const std::vector<Lease> later = {lease("192.168.122.10", 2, 4600),
					  lease("192.168.122.14", 1, 4600)};
	EXPECT_EQ(follow_leases(ms, later, now).size(), 2u);
	EXPECT_EQ(promote_pending(ms, ctx(), home), (std::vector<size_t>{0, 1}));
	EXPECT_EQ(ms[1].m.guest_addr, parse_ipv4("192.168.122.14"));
}

// A fixed address (a static host entry: no lease_mac) that the lease file
// gives db1 now: its clashing 1:1 waits; a mapping whose MAC holds a
// current lease of that address too (a guest asking under another's MAC)
// is not judged stale: the moved one waits, as does one whose clash is
// not about the address.
TEST(MappingPending, LeaseMovedClashesDecidedByTheLeaseFile)
{
	constexpr int64_t now = 1000;
	StaticMapping web1, db1;
	web1.m = parse_mapping("192.168.1.101", "192.168.122.10", "");
	web1.vm = "web1";
	db1.m = parse_mapping("192.168.1.102", "192.168.122.10", "");
	db1.vm = "db1";
	db1.lease_mac = "52:54:00:00:00:02";
	std::vector<Lease> leases = {lease("192.168.122.10", 2, 4600)};
	MappingContext c = ctx();
	c.force = true;
	std::vector<StaticMapping> ms = {web1, db1};
	auto held = hold_clashing(ms, {1}, c, leases, now);
	ASSERT_EQ(held.size(), 1u) << held[0];
	EXPECT_NE(ms[0].pending.find("is leased to vm db1 now"), std::string::npos)
		<< ms[0].pending;
	EXPECT_EQ(ms[0].m.guest_addr, parse_ipv4("192.168.122.10"));
	EXPECT_TRUE(ms[1].pending.empty());

	// web1 leases .10 too (current): no guess, db1 waits.
	ms = {web1, db1};
	ms[0].lease_mac = "52:54:00:00:00:01";
	leases.push_back(lease("192.168.122.10", 1, 4600));
	held = hold_clashing(ms, {1}, c, leases, now);
	ASSERT_EQ(held.size(), 1u);
	EXPECT_EQ(held[0].rfind("vm db1: its guest moved to 192.168.122.10: ", 0), 0u) << held[0];
	EXPECT_NE(ms[1].pending.find("the guest already has a 1:1 address"), std::string::npos)
		<< ms[1].pending;
	EXPECT_TRUE(ms[0].pending.empty());
	EXPECT_FALSE(mapping_active(ms[1], std::nullopt));
	EXPECT_NO_THROW(check_recorded_mappings(ms, c.subnet, c.nat_ports));

	// Not about the guest address: the external one is web1's.
	StaticMapping taken = db1;
	taken.m = parse_mapping("192.168.1.101", "192.168.122.12", "");
	ms = {web1, taken};
	held = hold_clashing(ms, {1}, c, leases, now);
	ASSERT_EQ(held.size(), 1u);
	EXPECT_NE(ms[1].pending.find("one external address, two mappings"), std::string::npos)
		<< ms[1].pending;
	EXPECT_TRUE(ms[0].pending.empty());

	// A move onto a free address holds nothing.
	ms = {web1, db1};
	ms[1].m.guest_addr = parse_ipv4("192.168.122.12");
	EXPECT_TRUE(hold_clashing(ms, {1}, c, leases, now).empty());
}

// A pending IPv6 mapping (a network hook's, the bridge not attached yet)
// is made in the context the daemon builds from kvx_cfg6 once NAT66 runs,
// as IPv4's are.
TEST(MappingPending, Ipv6MadeWhenNat66Runs)
{
	StaticMapping fwd, lit;
	fwd.m = parse_mapping("[uplink]:8083", "[fd42:98::12]:80", "tcp");
	fwd.libvirt_network = "default";
	fwd.from_metadata = true;
	fwd.pending = "bridge 'kb1' is not attached";
	lit = fwd;
	lit.m = parse_mapping("[2001:db8:1::5]:8084", "[fd42:98::12]:81", "tcp");
	std::vector<StaticMapping> ms = {fwd, lit};
	NetId home{parse_cidr("192.168.1.0/24"), parse_ipv4("192.168.1.1"), ""};
	home.v6 = Uplink6Net{
		{network_of6(parse_ipv6("2001:db8:1::"), 64)}, parse_ipv6("fe80::1"), ""};
	kvx_cfg6 off{};
	off.mode = KVX_V6_OFF;
	bool changed = false;
	MappingContext c = promotion_context(parse_cidr("192.168.122.0/24"), {61000, 65535},
					     parse_ipv4("192.168.1.50"), home, off, {});
	EXPECT_TRUE(promote_pending(ms, c, home, &changed).empty());
	EXPECT_NE(ms[0].pending.find("NAT66 is not running"), std::string::npos) << ms[0].pending;

	kvx_cfg6 nat66{};
	nat66.mode = KVX_V6_NAT66;
	std::memcpy(nat66.subnet, parse_ipv6("fd42:98::").data(), 16);
	nat66.subnet_len = 64;
	c = promotion_context(parse_cidr("192.168.122.0/24"), {61000, 65535},
			      parse_ipv4("192.168.1.50"), home, nat66,
			      {network_of6(parse_ipv6("2001:db8:1::"), 64)});
	// No NAT66 address yet: the literal one is made, [uplink] waits.
	EXPECT_EQ(promote_pending(ms, c, home, &changed), (std::vector<size_t>{1}));
	EXPECT_EQ(ms[0].pending, "the uplink has no IPv6 address yet");
	EXPECT_FALSE(ms[1].network.has_value()); // IPv6: tied by network6 alone
	EXPECT_TRUE(ms[1].network6.has_value());
	std::memcpy(nat66.uplink_addr, parse_ipv6("2001:db8:1::2").data(), 16);
	c = promotion_context(parse_cidr("192.168.122.0/24"), {61000, 65535},
			      parse_ipv4("192.168.1.50"), home, nat66,
			      {network_of6(parse_ipv6("2001:db8:1::"), 64)});
	EXPECT_EQ(promote_pending(ms, c, home), (std::vector<size_t>{0}));
	EXPECT_TRUE(mapping_active(ms[0], home));
	// A guest outside the prefix stays pending, saying so.
	StaticMapping out = fwd;
	out.m = parse_mapping("[uplink]:8085", "[fd99::12]:80", "tcp");
	ms.push_back(out);
	EXPECT_TRUE(promote_pending(ms, c, home).empty());
	EXPECT_NE(ms[2].pending.find("is not a host address in fd42:98::/64"), std::string::npos)
		<< ms[2].pending;
}

// IPv6 mappings are tied to the network they were made on as IPv4's are:
// the on-link prefix holding the address (else the prefix of NAT66's
// address), the default router's link-local and its MAC.
TEST(MappingNetwork6, TiedToPrefixAndRouter)
{
	const Ipv6Addr up6 = parse_ipv6("2001:db8:1::2");
	const std::string mac = "52:54:00:00:00:01";
	NetId home{parse_cidr("192.168.1.0/24"), parse_ipv4("192.168.1.1"), ""};
	home.v6 = Uplink6Net{{network_of6(parse_ipv6("2001:db8:1::"), 64),
			      network_of6(parse_ipv6("2001:db8:7::"), 64)},
			     parse_ipv6("fe80::1"),
			     mac};
	StaticMapping one, fwd, routed, v4;
	one.m = parse_mapping("2001:db8:7::101", "fd42::101", "");
	fwd.m = parse_mapping("[uplink]:2222", "[fd42::14]:22", "tcp");
	routed.m = parse_mapping("2001:db8:99::5", "fd42::105", ""); // --force, routed to us
	v4.m = parse_mapping("192.168.1.101", "192.168.122.101", "");
	for (StaticMapping *sm : {&one, &fwd, &routed, &v4})
		tie_to_network(*sm, home, up6);
	ASSERT_TRUE(one.network6);
	EXPECT_EQ(one.network6->str(), "2001:db8:7::/64 via fe80::1 at 52:54:00:00:00:01");
	ASSERT_TRUE(fwd.network6);
	EXPECT_EQ(fwd.network6->prefix.str(), "2001:db8:1::/64");
	ASSERT_TRUE(routed.network6);
	EXPECT_EQ(routed.network6->prefix.str(), "2001:db8:1::/64"); // the uplink address's
	EXPECT_FALSE(one.network.has_value());
	// An IPv4 mapping records IPv4's identity only.
	ASSERT_TRUE(v4.network);
	EXPECT_FALSE(v4.network->v6.has_value());
	EXPECT_FALSE(v4.network6.has_value());

	EXPECT_TRUE(mapping_active(one, home));
	EXPECT_TRUE(mapping_active(fwd, home));
	NetId renumbered = home;
	renumbered.v6->prefixes = {network_of6(parse_ipv6("2001:db8:1::"), 64)};
	EXPECT_FALSE(mapping_active(one, renumbered));
	EXPECT_TRUE(mapping_active(fwd, renumbered));
	// The ISP renumbers the uplink's own prefix: `[uplink]` forwards
	// follow NAT66's new address behind the same router; a literal
	// address off its prefix is not ours any more.
	NetId isp_renumbered = home;
	isp_renumbered.v6->prefixes = {network_of6(parse_ipv6("2001:db8:2::"), 64)};
	EXPECT_TRUE(mapping_active(fwd, isp_renumbered));
	EXPECT_FALSE(mapping_active(one, isp_renumbered));
	EXPECT_FALSE(mapping_active(routed, isp_renumbered));
	NetId cafe = home; // the same prefix behind another router's MAC
	cafe.v6->router_mac = "52:54:00:00:00:99";
	EXPECT_FALSE(mapping_active(one, cafe));
	EXPECT_FALSE(mapping_active(fwd, cafe));
	EXPECT_TRUE(mapping_active(v4, cafe)); // IPv4's gateway is the same
	NetId other_router = home;
	other_router.v6->router = parse_ipv6("fe80::2");
	EXPECT_FALSE(mapping_active(one, other_router));
	NetId unresolved = home;
	unresolved.v6->router_mac.clear();
	EXPECT_FALSE(mapping_active(one, unresolved)) << "no proof it is the same network";
	NetId no_v6 = home;
	no_v6.v6.reset();
	EXPECT_FALSE(mapping_active(one, no_v6));
	EXPECT_FALSE(mapping_active(one, std::nullopt));
	EXPECT_TRUE(mapping_active(v4, no_v6));

	// Recorded without the router's MAC: prefix and router decide.
	StaticMapping old = one;
	old.network6->router_mac.clear();
	EXPECT_TRUE(mapping_active(old, cafe));
	EXPECT_FALSE(mapping_active(old, other_router));
	// Untied (an older config, or made without IPv6 on the uplink).
	StaticMapping untied = one;
	untied.network6.reset();
	EXPECT_TRUE(mapping_active(untied, cafe));
	EXPECT_TRUE(mapping_active(untied, std::nullopt));
	StaticMapping none = one;
	tie_to_network(none, no_v6, up6);
	EXPECT_FALSE(none.network6.has_value());
	// Pending: never active.
	StaticMapping pending = one;
	pending.pending = "waits";
	EXPECT_FALSE(mapping_active(pending, home));
}

// A mapping made while the IPv6 network had no default router is tied to
// its prefix alone: a router that appears later is the same network (the
// daemon records it, learn_router6), another prefix is not.  Before, the
// mapping recorded router :: and was suspended for good once a router came.
TEST(MappingNetwork6, MadeWithoutARouterLearnsTheOneThatComes)
{
	const Ipv6Addr up6 = parse_ipv6("2001:db8:1::2");
	NetId bare{parse_cidr("192.168.1.0/24"), parse_ipv4("192.168.1.1"), ""};
	bare.v6 = Uplink6Net{{network_of6(parse_ipv6("2001:db8:1::"), 64)}, Ipv6Addr{}, ""};
	StaticMapping one, fwd;
	one.m = parse_mapping("2001:db8:1::101", "fd42::101", "");
	fwd.m = parse_mapping("[uplink]:2222", "[fd42::14]:22", "tcp");
	for (StaticMapping *sm : {&one, &fwd})
		tie_to_network(*sm, bare, up6);
	ASSERT_TRUE(one.network6);
	EXPECT_EQ(one.network6->router, Ipv6Addr{});
	EXPECT_TRUE(mapping_active(one, bare));
	EXPECT_FALSE(learn_router6(one, bare)) << "nothing to learn yet";

	NetId routed = bare;
	routed.v6->router = parse_ipv6("fe80::1");
	routed.v6->router_mac = "52:54:00:00:00:01";
	EXPECT_TRUE(mapping_active(one, routed));
	EXPECT_TRUE(mapping_active(fwd, routed));
	NetId elsewhere = routed;
	elsewhere.v6->prefixes = {network_of6(parse_ipv6("2001:db8:9::"), 64)};
	EXPECT_FALSE(mapping_active(one, elsewhere));
	EXPECT_FALSE(mapping_active(fwd, elsewhere)) << "no router recorded: the prefix names it";
	EXPECT_FALSE(learn_router6(one, elsewhere));
	NetId no_v6 = routed;
	no_v6.v6.reset();
	EXPECT_FALSE(mapping_active(one, no_v6));

	// Learnt on its network: from then on the router decides, as for a
	// mapping made with it.
	EXPECT_TRUE(learn_router6(one, routed));
	EXPECT_EQ(one.network6->str(), "2001:db8:1::/64 via fe80::1 at 52:54:00:00:00:01");
	EXPECT_FALSE(learn_router6(one, routed));
	NetId cafe = routed;
	cafe.v6->router_mac = "52:54:00:00:00:99";
	EXPECT_FALSE(mapping_active(one, cafe));
	// A router's MAC learnt the same way.
	NetId unresolved = routed;
	unresolved.v6->router_mac.clear();
	StaticMapping late = fwd;
	EXPECT_TRUE(learn_router6(late, unresolved));
	EXPECT_EQ(late.network6->router_mac, "");
	EXPECT_TRUE(learn_router6(late, routed));
	EXPECT_EQ(late.network6->router_mac, "52:54:00:00:00:01");
}

// A pending IPv6 mapping the daemon makes is tied to the network it is
// made on, as `map add` ties one.
TEST(MappingNetwork6, PendingMadeIsTied)
{
	StaticMapping lit;
	lit.m = parse_mapping("[2001:db8:1::5]:8084", "[fd42:98::12]:81", "tcp");
	lit.pending = "bridge 'kb1' is not attached";
	std::vector<StaticMapping> ms = {lit};
	NetId home{parse_cidr("192.168.1.0/24"), parse_ipv4("192.168.1.1"), ""};
	home.v6 = Uplink6Net{
		{network_of6(parse_ipv6("2001:db8:1::"), 64)}, parse_ipv6("fe80::1"), ""};
	kvx_cfg6 nat66{};
	nat66.mode = KVX_V6_NAT66;
	std::memcpy(nat66.subnet, parse_ipv6("fd42:98::").data(), 16);
	nat66.subnet_len = 64;
	std::memcpy(nat66.uplink_addr, parse_ipv6("2001:db8:1::2").data(), 16);
	MappingContext c = promotion_context(parse_cidr("192.168.122.0/24"), {61000, 65535},
					     parse_ipv4("192.168.1.50"), home, nat66,
					     {network_of6(parse_ipv6("2001:db8:1::"), 64)});
	EXPECT_EQ(promote_pending(ms, c, home), (std::vector<size_t>{0}));
	ASSERT_TRUE(ms[0].network6);
	EXPECT_EQ(ms[0].network6->str(), "2001:db8:1::/64 via fe80::1");
	EXPECT_TRUE(mapping_active(ms[0], home));
	NetId away = home;
	away.v6->prefixes = {network_of6(parse_ipv6("2001:db8:2::"), 64)};
	EXPECT_FALSE(mapping_active(ms[0], away));

	// On an IPv6-only uplink (no IPv4 address): tied to the IPv6 network
	// alone, where an IPv4 pending mapping waits.
	StaticMapping four;
	four.m = parse_mapping("192.168.1.101", "192.168.122.11", "");
	four.pending = "the uplink has no IPv4 address";
	std::vector<StaticMapping> only6 = {lit, four};
	NetId v6net;
	v6net.v6 = home.v6;
	MappingContext c6 = promotion_context(parse_cidr("192.168.122.0/24"), {61000, 65535}, 0,
					      v6net, nat66,
					      {network_of6(parse_ipv6("2001:db8:1::"), 64)});
	EXPECT_EQ(promote_pending(only6, c6, v6net), (std::vector<size_t>{0}));
	ASSERT_TRUE(only6[0].network6);
	EXPECT_EQ(only6[0].network6->str(), "2001:db8:1::/64 via fe80::1");
	EXPECT_FALSE(only6[1].pending.empty());
	EXPECT_FALSE(only6[1].network);

	// With no IPv6 network on the uplink (NAT66 configured, an IPv4-only
	// network) a literal IPv6 mapping waits: made now it would be tied
	// to nothing and announced wherever the uplink goes.
	std::vector<StaticMapping> only4 = {lit};
	NetId v4net{parse_cidr("192.168.1.0/24"), parse_ipv4("192.168.1.1"), ""};
	MappingContext c4 = promotion_context(parse_cidr("192.168.122.0/24"), {61000, 65535},
					      parse_ipv4("192.168.1.50"), v4net, nat66, {});
	EXPECT_TRUE(promote_pending(only4, c4, v4net).empty());
	EXPECT_EQ(only4[0].pending, "the uplink has no global IPv6 prefix yet");
	EXPECT_FALSE(only4[0].network6);
}

// `map del` deletes what it names: a hook's pending twin recorded first
// is not the administrator's mapping beside it, and the hooks delete their
// own active one only.
TEST(MappingDelete, NamesExactlyOneRecord)
{
	StaticMapping hook, admin, cli, net;
	hook.m = parse_mapping("10.99.0.5", "192.168.122.11", "");
	hook.vm = "web1";
	hook.from_metadata = true;
	hook.pending = "not on the uplink's network";
	admin.m = hook.m;
	std::vector<StaticMapping> ms = {hook, admin};
	const MappingOwner plain{};
	const MappingOwner web1_meta{"web1", "", true};
	EXPECT_EQ(mapping_to_delete(ms, hook.m, plain, false, "br0"), 1u);
	EXPECT_EQ(error_of([&] { mapping_to_delete(ms, hook.m, web1_meta, true, "br0"); }),
		  "no mapping '10.99.0.5 192.168.122.11' on bridge 'br0' of vm web1 in the "
		  "datapath (recorded for: vm web1 (pending), map add)");
	ms[0].pending.clear(); // made: the hook's own now
	ms[1].m = parse_mapping("10.99.0.6", "192.168.122.12", "");
	EXPECT_EQ(mapping_to_delete(ms, hook.m, web1_meta, true, "br0"), 0u);
	// Only a hook's recorded: a plain spec still deletes it (the one record).
	EXPECT_EQ(mapping_to_delete(ms, hook.m, plain, false, "br0"), 0u);
	// vm:web1 names the domain's; a network's twin beside a domain's: say.
	cli = hook;
	cli.from_metadata = false;
	cli.pending.clear();
	net = hook;
	net.vm.clear();
	net.libvirt_network = "default";
	ms = {net, cli};
	EXPECT_EQ(mapping_to_delete(ms, hook.m, {"web1", "", false}, false, "br0"), 1u);
	ms = {net, hook};
	EXPECT_NE(error_of([&] {
			  mapping_to_delete(ms, hook.m, plain, false, "br0");
		  }).find("is recorded 2 times (network default (pending), vm web1 (pending))"),
		  std::string::npos);
	EXPECT_NE(error_of([&] {
			  mapping_to_delete(ms, parse_mapping("10.99.0.7", "192.168.122.11", ""),
					    plain, false, "br0");
		  }).find("no mapping '10.99.0.7 192.168.122.11' on bridge 'br0'"),
		  std::string::npos);
	// Twins of one owner (an older config): the active one, in the datapath.
	StaticMapping waiting = cli;
	waiting.pending = vm_stopped_reason("web1");
	ms = {waiting, cli};
	EXPECT_EQ(mapping_to_delete(ms, cli.m, {"web1", "", false}, false, "br0"), 1u);
}

// What no waiting fixes in a hook's mappings: refused (the hook fails),
// never a pending mapping; what may pass is not judged here.
TEST(MappingPending, PermanentProblemsOfAHooksMappings)
{
	const Ipv4Net subnet = parse_cidr("192.168.122.0/24");
	const PortRange nat{61000, 65535};
	StaticMapping admin, other_vm;
	admin.m = parse_mapping("uplink:2240", "192.168.122.12:80", "tcp");
	other_vm.m = parse_mapping("uplink:2241", "192.168.122.12:81", "tcp");
	other_vm.vm = "db1";
	const std::vector<StaticMapping> rec = {admin, other_vm};
	auto err = [&](std::vector<Mapping> ms) {
		return error_of([&] { check_permanent(ms, rec, subnet, nat, std::nullopt); });
	};
	EXPECT_EQ(err({parse_mapping("uplink:8090", "10.5.5.5:80", "tcp")}),
		  "mapping 'uplink:8090 10.5.5.5:80 tcp': guest 10.5.5.5 is not a host address in "
		  "192.168.122.0/24");
	EXPECT_NE(err({parse_mapping("192.168.122.50", "192.168.122.11", "")}).find("lies inside"),
		  std::string::npos);
	EXPECT_NE(err({parse_mapping("uplink:62000", "192.168.122.11:80", "tcp")})
			  .find("overlap the NAT port range"),
		  std::string::npos);
	EXPECT_NE(err({parse_mapping("uplink:2240", "192.168.122.11:80", "tcp")})
			  .find("(a `map add` mapping: delete it, or change the metadata)"),
		  std::string::npos);
	EXPECT_NE(err({parse_mapping("uplink:2250", "192.168.122.11:80", "tcp"),
		       parse_mapping("uplink:2250", "192.168.122.11:81", "tcp")})
			  .find("external ports overlap"),
		  std::string::npos);
	// Another domain's port, an unknown guest address (its lease to come),
	// a bridge not attached (no subnet): may pass.
	EXPECT_EQ(err({parse_mapping("uplink:2241", "192.168.122.11:80", "tcp")}), "");
	EXPECT_EQ(err({parse_mapping("uplink:2251", "0.0.0.0:80", "tcp")}), "");
	EXPECT_EQ(error_of([&] {
			  check_permanent({parse_mapping("uplink:8090", "10.5.5.5:80", "tcp")}, {},
					  std::nullopt, {}, std::nullopt);
		  }),
		  "");
}

// Reasons can quote libvirt XML: recorded and shown without control
// characters, bounded, still valid UTF-8 (the config refuses others).
TEST(MappingPending, ReasonsSanitized)
{
	EXPECT_EQ(pending_reason("a\nb\x1b[31m"), "a\\x0ab\\x1b[31m");
	const std::string big = "forward 1: '" + std::string(400, 'x') + "'";
	EXPECT_EQ(pending_reason(big).size(), kPendingReasonMax);
	EXPECT_EQ(pending_reason(big).substr(kPendingReasonMax - 3), "...");
	// Cut before a multi-byte character, not inside it.
	std::string utf = std::string(kPendingReasonMax - 4, 'y') + "\xc3\xa9\xc3\xa9zz";
	const std::string r = pending_reason(utf);
	EXPECT_LE(r.size(), kPendingReasonMax);
	EXPECT_EQ(r.substr(r.size() - 4), "y...");
	// ... nor inside an escape.
	std::string esc = std::string(kPendingReasonMax - 5, 'y') + "\x01\x01";
	const std::string e = pending_reason(esc);
	EXPECT_EQ(e.size(), kPendingReasonMax - 2);
	EXPECT_EQ(e.substr(e.size() - 4), "y...");
}

} // namespace
} // namespace kvmxdp
