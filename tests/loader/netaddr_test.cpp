// SPDX-License-Identifier: GPL-2.0
#include <gtest/gtest.h>

#include "base/error.hpp"
#include "base/netaddr.hpp"
#include "kernel/netlink.hpp"
#include "base/text.hpp"

using namespace kvmxdp;

namespace {

// The error must name the bad value, so the user sees what to fix.
void expect_error_naming(const std::function<void()> &f, const std::string &value)
{
	try {
		f();
		ADD_FAILURE() << "no error for '" << value << "'";
	} catch (const Error &e) {
		EXPECT_NE(std::string(e.what()).find(value), std::string::npos)
			<< "message '" << e.what() << "' does not name '" << value << "'";
	}
}

} // namespace

TEST(Netaddr, ParseIpv4)
{
	EXPECT_EQ(parse_ipv4("10.0.0.1"), 0x0a000001u);
	EXPECT_EQ(parse_ipv4("255.255.255.255"), 0xffffffffu);
	EXPECT_EQ(format_ipv4(0xc0a80101u), "192.168.1.1");
	for (const char *bad :
	     {"", "10.0.0", "10.0.0.256", "10.0.0.1 ", "a.b.c.d", "1.2.3.4.5", "10.1", "::1"})
		expect_error_naming([&] { parse_ipv4(bad); }, bad);
}

TEST(Netaddr, ParseCidr)
{
	Ipv4Net n = parse_cidr("192.168.122.0/24");
	EXPECT_EQ(n.addr, 0xc0a87a00u);
	EXPECT_EQ(n.prefix, 24);
	EXPECT_EQ(n.mask(), 0xffffff00u);
	EXPECT_EQ(n.broadcast(), 0xc0a87affu);
	EXPECT_TRUE(n.contains(0xc0a87a05u));
	EXPECT_FALSE(n.contains(0xc0a87b05u));
	EXPECT_EQ(n.str(), "192.168.122.0/24");
	EXPECT_EQ(parse_cidr("10.0.0.0/8").mask(), 0xff000000u);
	EXPECT_EQ(parse_cidr("10.0.0.4/30").broadcast(), 0x0a000007u);

	for (const char *bad :
	     {"10.0.0.0", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/0", "10.0.0.0/31", "10.0.0.0/32",
	      "10.0.0.1/24", "10.0.0/24", "10.0.0.0/-1", "10.0.0.0/24x", "/24"})
		expect_error_naming([&] { parse_cidr(bad); }, bad);
	// Host bits: the message proposes the network.
	try {
		parse_cidr("10.1.2.3/16");
		FAIL();
	} catch (const Error &e) {
		EXPECT_NE(std::string(e.what()).find("10.1.0.0/16"), std::string::npos);
	}
}

TEST(Netaddr, NetworkOf)
{
	EXPECT_EQ(network_of(0x0a010203u, 16), parse_cidr("10.1.0.0/16"));
	EXPECT_EQ(network_of(0x0a010203u, 24).str(), "10.1.2.0/24");
}

TEST(Netaddr, ParsePortRange)
{
	EXPECT_EQ(parse_port_range("61000-65535"), (PortRange{61000, 65535}));
	EXPECT_EQ(parse_port_range("1-1"), (PortRange{1, 1}));
	EXPECT_EQ(parse_port_range("1-1").size(), 1u);
	EXPECT_EQ(parse_port_range("1-65535").size(), 65535u);
	for (const char *bad : {"", "100", "0-100", "100-99", "1-65536", "-5", "5-", "a-b", "1 -2",
				"+1-2", "1-2-3", "99999999999999999999999-1"})
		expect_error_naming([&] { parse_port_range(bad); }, bad);
}

TEST(Netaddr, ParseUintOverflow)
{
	EXPECT_EQ(parse_uint("18446744073709551615", UINT64_MAX, "n"), UINT64_MAX);
	EXPECT_THROW(parse_uint("18446744073709551616", UINT64_MAX, "n"), Error);
	EXPECT_THROW(parse_uint("65536", 65535, "n"), Error);
	EXPECT_EQ(parse_uint("065535", 65535, "n"), 65535u);
}

TEST(Netaddr, LocalPortRange)
{
	EXPECT_EQ(parse_local_port_range("32768\t60999"), (PortRange{32768, 60999}));
	EXPECT_EQ(parse_local_port_range("1024 65000\n"), (PortRange{1024, 65000}));
	EXPECT_THROW(parse_local_port_range(""), Error);
	EXPECT_THROW(parse_local_port_range("32768"), Error);
	EXPECT_THROW(parse_local_port_range("60999\t32768"), Error);
}

TEST(Netaddr, DefaultNatPool)
{
	// Debian's default ephemeral range: 1024-65535 around it, a hole.
	NatPool p = default_nat_pool({32768, 60999});
	EXPECT_EQ(p.range, (PortRange{1024, 65535}));
	EXPECT_EQ(p.skip, (PortRange{32768, 60999}));
	EXPECT_EQ(p.size(), 31744u + 4536u);
	ASSERT_EQ(p.parts().size(), 2u);
	EXPECT_EQ(p.parts()[0], (PortRange{1024, 32767}));
	EXPECT_EQ(p.parts()[1], (PortRange{61000, 65535}));
	// An ephemeral range at either end clips the range instead.
	p = default_nat_pool({1024, 64511});
	EXPECT_EQ(p.range, (PortRange{64512, 65535}));
	EXPECT_EQ(p.skip, PortRange{});
	EXPECT_EQ(p.size(), 1024u);
	p = default_nat_pool({2048, 65535});
	EXPECT_EQ(p.range, (PortRange{1024, 2047}));
	EXPECT_EQ(p.parts(), (std::vector<PortRange>{{1024, 2047}}));
	// Below 1024 (privileged ports): the whole range.
	p = default_nat_pool({100, 900});
	EXPECT_EQ(p.range, (PortRange{1024, 65535}));
	EXPECT_EQ(p.size(), 64512u);
	// Fewer than 1024 ports left: the error names the range and asks for
	// --nat-ports.
	try {
		default_nat_pool({1024, 64512});
		FAIL();
	} catch (const Error &e) {
		EXPECT_NE(std::string(e.what()).find("--nat-ports"), std::string::npos);
		EXPECT_NE(std::string(e.what()).find("1024-64512"), std::string::npos);
	}
	EXPECT_THROW(default_nat_pool({1024, 65535}), Error);
	EXPECT_THROW(default_nat_pool({1500, 65000}), Error); // 476 + 535 ports
	EXPECT_NO_THROW(default_nat_pool({1600, 65000}));     // 576 + 535
}

TEST(Netaddr, NatRangeMustNotOverlapEphemeral)
{
	PortRange eph{32768, 60999};
	EXPECT_NO_THROW(check_nat_range({61000, 65535}, eph));
	EXPECT_NO_THROW(check_nat_range({20000, 32767}, eph));
	expect_error_naming([&] { check_nat_range({60999, 65535}, eph); }, "60999-65535");
	expect_error_naming([&] { check_nat_range({30000, 32768}, eph); }, "30000-32768");
	expect_error_naming([&] { check_nat_range({40000, 40010}, eph); }, "32768-60999");
}

TEST(Netaddr, InterfaceNames)
{
	for (const char *good : {"br0", "br0.10", "virbr0-nic", "wlp0s20f3", "br-\xc3\xbc", "a"})
		EXPECT_NO_THROW(check_ifname(good)) << good;
	// What the kernel refuses (dev_valid_name) and what kvmxdp refuses on
	// top: bytes that are no UTF-8 text, and control characters.
	const std::vector<std::pair<std::string, std::string>> bad = {
		{"", "''"},
		{"0123456789abcdef", "'0123456789abcdef'"},
		{".", "'.'"},
		{"..", "'..'"},
		{"a/b", "'a/b'"},
		{"a:b", "'a:b'"},
		{"a b", "'a b'"},
		{"a\nb", "'a\\x0ab'"},
		{"ku\xff", "'ku\\xff'"},
		{"ku\xc3", "'ku\\xc3'"},
		{"ku\xc0\xaf", "'ku\\xc0\\xaf'"}, // overlong '/'
		{"ku\x1b[2J", "'ku\\x1b[2J'"},
		{"ku\x7f", "'ku\\x7f'"},
		{"ku\xc2\x9b", "'ku\\xc2\\x9b'"}, // C1 CSI
	};
	for (const auto &[name, shown] : bad) {
		try {
			check_ifname(name);
			ADD_FAILURE() << "accepted " << printable(name);
		} catch (const Error &e) {
			EXPECT_EQ(std::string(e.what()), "invalid interface name " + shown);
		}
	}
}

TEST(Text, Utf8AndPrintable)
{
	EXPECT_TRUE(is_utf8(""));
	EXPECT_TRUE(is_utf8("plain"));
	EXPECT_TRUE(is_utf8("\xc3\xbc\xe2\x82\xac\xf0\x9f\x98\x80")); // ü € 😀
	EXPECT_FALSE(is_utf8("\xff"));
	EXPECT_FALSE(is_utf8("\xc3"));		   // truncated
	EXPECT_FALSE(is_utf8("\xe0\x80\xaf"));	   // overlong
	EXPECT_FALSE(is_utf8("\xed\xa0\x80"));	   // surrogate
	EXPECT_FALSE(is_utf8("\xf4\x90\x80\x80")); // above U+10FFFF
	EXPECT_EQ(printable("br\xc3\xbc x"), "br\xc3\xbc x");
	EXPECT_EQ(printable("a\\b\tc\xff"), "a\\x5cb\\x09c\\xff");
}

TEST(NetAddr, NetworksOverlapWhenOneHoldsTheOther)
{
	const Ipv4Net guests = parse_cidr("192.168.122.0/24");
	EXPECT_TRUE(guests.overlaps(parse_cidr("192.168.0.0/16")));
	EXPECT_TRUE(parse_cidr("192.168.0.0/16").overlaps(guests));
	EXPECT_TRUE(guests.overlaps(guests));
	EXPECT_TRUE(guests.overlaps(parse_cidr("192.168.122.128/25")));
	EXPECT_FALSE(guests.overlaps(parse_cidr("192.168.123.0/24")));
	EXPECT_FALSE(guests.overlaps(parse_cidr("10.0.0.0/8")));
}

TEST(NetAddr, UplinkOverlapIgnoresAddedAndLinkScopeAddresses)
{
	const Ipv4Net guests = parse_cidr("192.168.122.0/24");
	IfAddr lan{parse_ipv4("10.77.0.2"), 24, false, 0, "ku0"};
	// ifindex 1: the loopback device (its name makes the label).
	IfAddr added{parse_ipv4("192.168.122.50"), 24, true, 0, added_address_label(1)};
	IfAddr link_local{parse_ipv4("192.168.122.9"), 24, false, 253, "ku0"};
	EXPECT_FALSE(uplink_overlap({lan, added, link_local}, 1, guests));
	IfAddr dhcp{parse_ipv4("192.168.122.77"), 23, false, 0, "ku0"};
	auto n = uplink_overlap({lan, dhcp}, 1, guests);
	ASSERT_TRUE(n);
	EXPECT_EQ(n->str(), "192.168.122.0/23");
}

// kvx_cfg.gw_addr, at attach and whenever the bridge's addresses change
// (Daemon::follow_gateway): the bridge's address in the guest subnet, not
// one of another network it may also hold.
TEST(NetAddr, SubnetGatewayIsTheBridgesAddressInTheSubnet)
{
	const Ipv4Net guests = parse_cidr("192.168.122.0/24");
	IfAddr other{parse_ipv4("10.9.0.1"), 24, false, 0, "kb0"};
	IfAddr wider{parse_ipv4("192.168.0.1"), 16, false, 0, "kb0"};
	IfAddr gw{parse_ipv4("192.168.122.1"), 24, false, 0, "kb0"};
	IfAddr renumbered{parse_ipv4("192.168.122.254"), 24, false, 0, "kb0"};
	EXPECT_EQ(subnet_gateway({}, guests), 0u);
	EXPECT_EQ(subnet_gateway({other, wider}, guests), 0u);
	EXPECT_EQ(format_ipv4(subnet_gateway({other, wider, gw}, guests)), "192.168.122.1");
	EXPECT_EQ(format_ipv4(subnet_gateway({renumbered}, guests)), "192.168.122.254");
}
