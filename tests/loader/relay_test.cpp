// SPDX-License-Identifier: GPL-2.0
// Relay's kvx_nd kept to the uplink's prefix and the host's addresses
// (model/relay.hpp plan_nd_sync): renumbering forgets the old prefix's
// guests, the host's addresses are never a guest's.
#include <gtest/gtest.h>

#include <algorithm>

#include "base/netaddr6.hpp"
#include "model/ra.hpp"
#include "model/relay.hpp"

using namespace kvmxdp;

namespace {

NdEntry entry(const char *a, uint8_t state)
{
	NdEntry e;
	e.addr = parse_ipv6(a);
	e.val.state = state;
	e.val.mac[5] = 7;
	return e;
}

std::vector<std::string> strs(const std::vector<Ipv6Addr> &v)
{
	std::vector<std::string> out;
	for (const Ipv6Addr &a : v)
		out.push_back(format_ipv6(a));
	std::sort(out.begin(), out.end());
	return out;
}

const Ipv6Net kP1{parse_ipv6("2001:db8:1::"), 64};
const Ipv6Net kP2{parse_ipv6("2001:db8:2::"), 64};

} // namespace

TEST(RelayNd, KeptToThePrefix)
{
	const std::vector<NdEntry> have = {entry("2001:db8:1::a", KVX_ND_OWNED),
					   entry("2001:db8:1::b", KVX_ND_PENDING),
					   entry("2001:db8:1::10", KVX_ND_HOST)};
	const std::vector<Ipv6Addr> host = {parse_ipv6("2001:db8:1::10")};
	// Nothing to do when all is as it should be.
	NdSync s = plan_nd_sync(have, kP1, host);
	EXPECT_TRUE(s.del.empty());
	EXPECT_TRUE(s.host.empty());
	// Renumbered: every entry of the old prefix goes, the host's new
	// address is listed.
	s = plan_nd_sync(have, kP2, {parse_ipv6("2001:db8:2::10")});
	EXPECT_EQ(strs(s.del),
		  (std::vector<std::string>{"2001:db8:1::10", "2001:db8:1::a", "2001:db8:1::b"}));
	EXPECT_EQ(strs(s.host), std::vector<std::string>{"2001:db8:2::10"});
	// No prefix now (a network without relay): everything goes.
	s = plan_nd_sync(have, std::nullopt, host);
	EXPECT_EQ(s.del.size(), 3u);
	EXPECT_TRUE(s.host.empty());
}

TEST(RelayNd, TheHostsAddressesAreNoGuests)
{
	// A new temporary address of the host that a guest had taken: the
	// host's now.  One the host lost: forgotten (a guest may take it).
	const std::vector<NdEntry> have = {entry("2001:db8:1::a", KVX_ND_OWNED),
					   entry("2001:db8:1::10", KVX_ND_HOST)};
	const NdSync s = plan_nd_sync(have, kP1,
				      {parse_ipv6("2001:db8:1::a"), parse_ipv6("2001:db8:1::a"),
				       parse_ipv6("fd00::1")});
	EXPECT_EQ(strs(s.del), std::vector<std::string>{"2001:db8:1::10"});
	// Once, and never one outside the prefix.
	EXPECT_EQ(strs(s.host), std::vector<std::string>{"2001:db8:1::a"});
}

// The RA kvmxdp sends on the bridge, byte for byte (RFC 4861 4.2, 4.6.1,
// 4.6.2, 4.6.4).
TEST(RouterAdvertisement, Bytes)
{
	RaParams p;
	p.router_lifetime = 1800;
	p.mtu = 1500;
	p.mac = {0x02, 0x6b, 0x76, 0x00, 0x01, 0x01};
	p.prefixes = {{kP1, 600, 300}, {kP2, 7000, 0}};
	// clang-format off
	const std::vector<uint8_t> want = {
		134, 0, 0, 0,		    // type, code, checksum (the kernel's)
		64, 0, 0x07, 0x08,	    // cur hop limit, M/O clear, router lifetime 1800
		0, 0, 0, 0, 0, 0, 0, 0,	    // reachable time, retrans timer
		1, 1, 0x02, 0x6b, 0x76, 0, 1, 1, // source link-layer address
		5, 1, 0, 0, 0, 0, 0x05, 0xdc,	 // MTU 1500
		3, 4, 64, 0xc0,			 // prefix information, /64, L and A
		0, 0, 0x02, 0x58,		 // valid 600
		0, 0, 0x01, 0x2c,		 // preferred 300
		0, 0, 0, 0,			 // reserved
		0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		3, 4, 64, 0xc0,			 // the old prefix, deprecated
		0, 0, 0x1b, 0x58,		 // valid 7000
		0, 0, 0, 0,			 // preferred 0
		0, 0, 0, 0,
		0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	};
	// clang-format on
	EXPECT_EQ(build_ra(p), want);
	// No prefix to route (the network allows no relay now): router
	// lifetime 0, no options but the ones given; preferred never beyond
	// valid (RFC 4861 6.2.1).
	RaParams q;
	q.router_lifetime = 0;
	q.prefixes = {{kP1, 10, 300}};
	const std::vector<uint8_t> got = build_ra(q);
	ASSERT_EQ(got.size(), 16u + 32u);
	EXPECT_EQ(got[6], 0);
	EXPECT_EQ(got[7], 0);
	EXPECT_EQ(got[16 + 11], 10); // preferred clamped to valid
}

TEST(RouterAdvertisement, Schedule)
{
	// The first three at most 16 s apart, then 200..600 s.
	EXPECT_EQ(ra_next_interval_s(0, 0.0), 16u);
	EXPECT_EQ(ra_next_interval_s(2, 0.99), 16u);
	EXPECT_EQ(ra_next_interval_s(3, 0.0), 200u);
	EXPECT_EQ(ra_next_interval_s(3, 0.5), 400u);
	EXPECT_LE(ra_next_interval_s(9, 0.999999), 600u);
}

// The host's own packets to relay guests: a /128 route on the bridge per
// address a guest owns (model/relay.hpp plan_relay_routes).
TEST(RelayRoutes, OnePerOwnedGuestAddress)
{
	constexpr uint64_t kNow = 100ULL * 1000 * 1000 * 1000;
	std::vector<NdEntry> have = {entry("2001:db8:1::a", KVX_ND_OWNED),
				     entry("2001:db8:1::b", KVX_ND_PENDING),
				     entry("2001:db8:1::c", KVX_ND_DUP),
				     entry("2001:db8:1::10", KVX_ND_HOST),
				     entry("2001:db8:2::a", KVX_ND_OWNED)};
	for (NdEntry &e : have)
		e.val.last_seen_ns = kNow - 1000; // DAD still running for ::b
	RouteSync s = plan_relay_routes(have, kP1, {}, kNow);
	EXPECT_EQ(strs(s.add), std::vector<std::string>{"2001:db8:1::a"});
	EXPECT_TRUE(s.del.empty());
	// The pending one's DAD ran its course: routed too.  A route to an
	// address no guest owns any more goes; one in place stays.
	have[1].val.last_seen_ns = kNow - KVX_ND_DAD_NS;
	s = plan_relay_routes(have, kP1,
			      {parse_ipv6("2001:db8:1::a"), parse_ipv6("2001:db8:1::c"),
			       parse_ipv6("2001:db8:1::10")},
			      kNow);
	EXPECT_EQ(strs(s.add), std::vector<std::string>{"2001:db8:1::b"});
	EXPECT_EQ(strs(s.del), (std::vector<std::string>{"2001:db8:1::10", "2001:db8:1::c"}));
	// No prefix (a network without relay): every route goes.
	s = plan_relay_routes(have, std::nullopt, {parse_ipv6("2001:db8:1::a")}, kNow);
	EXPECT_TRUE(s.add.empty());
	EXPECT_EQ(strs(s.del), std::vector<std::string>{"2001:db8:1::a"});
}

TEST(RelayNd, IdleGuestEntriesExpire)
{
	const uint64_t now = kNdExpireNs + 5000;
	std::vector<NdEntry> have = {entry("2001:db8:1::a", KVX_ND_OWNED),
				     entry("2001:db8:1::b", KVX_ND_DUP),
				     entry("2001:db8:1::c", KVX_ND_OWNED),
				     entry("2001:db8:1::10", KVX_ND_HOST)};
	have[0].val.last_seen_ns = 1000;
	have[1].val.last_seen_ns = 1000;
	have[2].val.last_seen_ns = now - 1000;
	have[3].val.last_seen_ns = 0; // the host's: never expires
	EXPECT_EQ(strs(nd_expired(have, now)),
		  (std::vector<std::string>{"2001:db8:1::a", "2001:db8:1::b"}));
}
