// SPDX-License-Identifier: GPL-2.0
// Relay's kvx_nd kept to the uplink's prefix and the host's addresses
// (model/relay.hpp plan_nd_sync): renumbering forgets the old prefix's
// guests, the host's addresses are never a guest's.
#include <gtest/gtest.h>

#include <bpf/bpf.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include "base/netaddr6.hpp"
#include "base/fd.hpp"
#include "control/ra_watch.hpp"
#include "control/relay.hpp"
#include "kernel/netlink.hpp"
#include "kvmxdp/ct_rules.h"
#include "model/ra.hpp"
#include "model/relay.hpp"
#include "netns_child.hpp"
#include "privileges.hpp"

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
		e.val.last_seen_ns = kNow - 1000;
	// ::b pending since long, but never probed (a guest's frame claimed
	// it, the daemon's probe to come): nobody's, no route.
	have[1].val.dad_ns = kNow - 10 * KVX_ND_DAD_NS;
	RouteSync s = plan_relay_routes(have, kP1, {}, kNow);
	EXPECT_EQ(strs(s.add), std::vector<std::string>{"2001:db8:1::a"});
	EXPECT_TRUE(s.del.empty());
	// Probed, DAD still running: no route yet.
	have[1].val.dad_probes = 1;
	have[1].val.dad_ns = kNow - 1000;
	s = plan_relay_routes(have, kP1, {}, kNow);
	EXPECT_EQ(strs(s.add), std::vector<std::string>{"2001:db8:1::a"});
	// The pending one's DAD ran its course: routed too.  A route to an
	// address no guest owns any more goes; one in place stays.
	have[1].val.dad_ns = kNow - KVX_ND_DAD_NS;
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
	have[1].val.dad_ns = 1000;
	have[2].val.last_seen_ns = now - 1000;
	have[3].val.last_seen_ns = 0; // the host's: never expires
	EXPECT_EQ(strs(nd_expired(have, now)),
		  (std::vector<std::string>{"2001:db8:1::a", "2001:db8:1::b"}));
}

// A DAD that failed holds nothing for long: a defended entry goes
// kNdDupExpireNs after the LAN host's last defence, not after an hour; an
// entry whose DAD ran its course counts from that DAD.
TEST(RelayNd, DefendedEntriesExpireSoon)
{
	const uint64_t now = 2 * kNdExpireNs;
	std::vector<NdEntry> have = {entry("2001:db8:1::b", KVX_ND_DUP),
				     entry("2001:db8:1::c", KVX_ND_DUP),
				     entry("2001:db8:1::d", KVX_ND_PENDING)};
	for (NdEntry &e : have)
		e.val.last_seen_ns = now - 1000;
	have[0].val.dad_ns = now - kNdDupExpireNs - 1;
	have[1].val.dad_ns = now - kNdDupExpireNs + 1000;
	have[2].val.last_seen_ns = now - kNdExpireNs - 5000;
	have[2].val.dad_ns = now - kNdExpireNs + 1000;
	have[2].val.dad_probes = 1;
	EXPECT_EQ(strs(nd_expired(have, now)), std::vector<std::string>{"2001:db8:1::b"});
}

// What the daemon probes the LAN for: pending entries no probe went out
// for (claimed by a guest's frame).
TEST(RelayNd, FrameClaimsAreProbedByTheDaemon)
{
	std::vector<NdEntry> have = {entry("2001:db8:1::a", KVX_ND_PENDING),
				     entry("2001:db8:1::b", KVX_ND_PENDING),
				     entry("2001:db8:1::c", KVX_ND_OWNED),
				     entry("2001:db8:1::d", KVX_ND_DUP)};
	have[1].val.dad_probes = 1;
	EXPECT_EQ(strs(nd_to_probe(have)), std::vector<std::string>{"2001:db8:1::a"});
	EXPECT_FALSE(nd_owned(have[0].val, ~0ULL)) << "never probed: nobody's";
	EXPECT_TRUE(nd_owned(have[1].val, KVX_ND_DAD_NS));
	EXPECT_FALSE(nd_owned(have[1].val, KVX_ND_DAD_NS - 1));
}

// kvx_nd of ABI 10..16 carried into the 32-byte entries.
TEST(RelayNd, OlderEntriesAreCarriedOver)
{
	uint8_t old[24] = {0x52, 0x54, 0, 0, 7, 0xa0, KVX_ND_OWNED, 0};
	const uint32_t ifindex = 7;
	const uint64_t seen = 123456789;
	std::memcpy(old + 8, &ifindex, 4);
	std::memcpy(old + 16, &seen, 8);
	std::optional<kvx_nd_val> v = nd_from_abi16(old);
	ASSERT_TRUE(v.has_value());
	EXPECT_EQ(v->mac[5], 0xa0);
	EXPECT_EQ(v->state, KVX_ND_OWNED);
	EXPECT_EQ(v->ifindex, ifindex);
	EXPECT_EQ(v->last_seen_ns, seen);
	EXPECT_EQ(v->dad_probes, 0);
	old[6] = KVX_ND_PENDING;
	v = nd_from_abi16(old);
	ASSERT_TRUE(v.has_value());
	EXPECT_EQ(v->dad_ns, seen);
	EXPECT_EQ(v->dad_probes, 1);
	old[6] = KVX_ND_HOST;
	EXPECT_FALSE(nd_from_abi16(old).has_value());
}

// An RA as the uplink hears it: the SLAAC /64s (A set, valid lifetime),
// not the on-link-only ones, not a longer prefix; an option of length 0
// makes the message invalid (RFC 4861 6.1.2).
TEST(RelayFollow, RouterAdvertisementsAreParsed)
{
	RaParams p;
	p.router_lifetime = 0;
	p.mac = {0x52, 0x54, 0, 0, 0, 1};
	p.prefixes.push_back({kP1, 600, 300});
	p.prefixes.push_back({Ipv6Net{parse_ipv6("2001:db8:9::"), 48}, 600, 300});
	std::vector<uint8_t> ra = build_ra(p);
	const Ipv6Addr from = parse_ipv6("fe80::66");
	std::optional<RaHeard> h = parse_ra(ra.data(), ra.size(), from);
	ASSERT_TRUE(h.has_value());
	EXPECT_EQ(h->from, from);
	EXPECT_EQ(h->router_lifetime, 0);
	ASSERT_EQ(h->slaac.size(), 1u);
	EXPECT_EQ(h->slaac[0], kP1);
	// Valid lifetime 0: the prefix is withdrawn, no SLAAC prefix.
	p.prefixes = {{kP2, 0, 0}};
	ra = build_ra(p);
	h = parse_ra(ra.data(), ra.size(), from);
	ASSERT_TRUE(h.has_value());
	EXPECT_TRUE(h->slaac.empty());
	ra[17] = 0; // the first option's length
	EXPECT_FALSE(parse_ra(ra.data(), ra.size(), from).has_value());
	EXPECT_FALSE(parse_ra(ra.data(), 15, from).has_value());
}

// A LAN host's forged RA makes the kernel take its prefix (and may make
// it the freshest): relay keeps the prefix it has while the kernel still
// has it, unless a router of the host's default route that announced the
// current prefix announces the new one (renumbering); a prefix that is
// gone gives way to the kernel's choice.
TEST(RelayFollow, OnlyTheDefaultRouterMovesThePrefix)
{
	const Ipv6Addr router = parse_ipv6("fe80::1"), forger = parse_ipv6("fe80::66");
	const std::vector<Ipv6Net> both = {kP1, kP2};
	RaHeard real{router, 1800, {kP1}, {}};
	const RaHeard forged{forger, 0, {kP2}, {}};
	// The forger's prefix is the kernel's choice now: refused.
	RelayFollow f = follow_relay_prefix(kP1, kP2, both, {router}, {real, forged});
	EXPECT_EQ(f.prefix, kP1);
	EXPECT_EQ(f.refused, kP2);
	EXPECT_TRUE(f.solicit);
	// Nothing heard yet (the daemon just started): refused too.
	f = follow_relay_prefix(kP1, kP2, both, {router}, {});
	EXPECT_EQ(f.prefix, kP1);
	// A forger that made itself a default router, but never announced the
	// current prefix: refused.
	f = follow_relay_prefix(kP1, kP2, both, {router, forger}, {real, forged});
	EXPECT_EQ(f.prefix, kP1);
	// The host's router renumbers (announces both): followed.
	real.slaac.push_back(kP2);
	f = follow_relay_prefix(kP1, kP2, both, {router}, {real, forged});
	EXPECT_EQ(f.prefix, kP2);
	EXPECT_FALSE(f.refused.has_value());
	// The current prefix is gone from the uplink: the kernel's choice.
	f = follow_relay_prefix(kP1, kP2, {kP2}, {router}, {forged});
	EXPECT_EQ(f.prefix, kP2);
	// No relay possible now, or nothing yet: the kernel's word.
	EXPECT_FALSE(follow_relay_prefix(kP1, std::nullopt, both, {router}, {}).prefix.has_value());
	EXPECT_EQ(follow_relay_prefix(std::nullopt, kP2, both, {router}, {}).prefix, kP2);
}

// Renumbering by a router that no longer announces the old prefix (a CPE
// back with a new ISP prefix, RFC 8978), heard only after the daemon
// started: its latest RA alone moves relay; a forger's latest RA, or the
// router's latest that still has the current prefix without the new one,
// does not; the kernel deprecating the current prefix does.
TEST(RelayFollow, TheRoutersLatestRaRenumbers)
{
	const Ipv6Addr router = parse_ipv6("fe80::1"), forger = parse_ipv6("fe80::66");
	const std::vector<Ipv6Net> both = {kP1, kP2};
	// The router's only RA since the restart lists kP2 alone.
	const RaHeard now_b{router, 1800, {kP2}, {kP2}};
	RelayFollow f = follow_relay_prefix(kP1, kP2, both, {router}, {now_b});
	EXPECT_EQ(f.prefix, kP2);
	EXPECT_FALSE(f.refused.has_value());
	EXPECT_FALSE(f.solicit);
	// The same from a LAN host that is no default router: refused.
	const RaHeard forged{forger, 1800, {kP2}, {kP2}};
	f = follow_relay_prefix(kP1, kP2, both, {router}, {forged});
	EXPECT_EQ(f.prefix, kP1);
	EXPECT_EQ(f.refused, kP2);
	// The router's latest RA still has kP1 only (kP2 heard from it once,
	// long ago, never with kP1): kept.
	const RaHeard still_a{router, 1800, {kP2}, {kP1}};
	f = follow_relay_prefix(kP1, kP2, both, {router}, {still_a});
	EXPECT_EQ(f.prefix, kP1);
	// The kernel deprecated kP1 (preferred 0) and the router's latest RA
	// no longer has it: the kernel's choice.
	const Ipv6Net kP3{parse_ipv6("2001:db8:3::"), 64};
	const RaHeard moved_on{router, 1800, {kP3}, {kP3}};
	f = follow_relay_prefix(kP1, kP2, both, {router}, {moved_on}, true);
	EXPECT_EQ(f.prefix, kP2);
	EXPECT_FALSE(f.refused.has_value());
	// A forged RA deprecated kP1 while the router still announces it, or
	// nothing heard yet (the daemon just started): kept.
	const RaHeard keeps{router, 1800, {kP1}, {kP1}};
	EXPECT_EQ(follow_relay_prefix(kP1, kP2, both, {router}, {keeps, forged}, true).prefix, kP1);
	EXPECT_EQ(follow_relay_prefix(kP1, kP2, both, {router}, {}, true).prefix, kP1);
	// A second default router announcing its own prefix alone, while the
	// first still announces the current one: kept; once the first's
	// latest RA drops it too: the kernel's choice.
	const Ipv6Addr second = parse_ipv6("fe80::2");
	const RaHeard other{second, 1800, {kP2}, {kP2}};
	f = follow_relay_prefix(kP1, kP2, both, {router, second}, {keeps, other});
	EXPECT_EQ(f.prefix, kP1);
	EXPECT_EQ(f.refused, kP2);
	EXPECT_EQ(follow_relay_prefix(kP1, kP2, both, {router, second}, {moved_on, other}).prefix,
		  kP2);
}

// The RA watch remembers the default routers' RAs only, a bounded number
// of prefixes each: 10k RAs from distinct link-local sources with 45
// prefixes each leave it with the real router's prefix, which is still
// followed.
TEST(RaWatch, BoundedAndOnlyTheDefaultRouters)
{
	const Ipv6Addr router = parse_ipv6("fe80::1");
	const auto t0 = RaWatch::Clock::now();
	RaWatch w;
	w.record(RaHeard{router, 1800, {kP1}, {}}, t0, {router});
	std::vector<Ipv6Net> many;
	for (int i = 0; i < 45; i++) {
		Ipv6Addr a = parse_ipv6("2001:db8:77::");
		a[6] = static_cast<uint8_t>(i);
		many.push_back(Ipv6Net{a, 64});
	}
	std::vector<Ipv6Addr> flood;
	for (int i = 0; i < 10000; i++) {
		Ipv6Addr src = parse_ipv6("fe80::");
		src[14] = static_cast<uint8_t>(i >> 8);
		src[15] = static_cast<uint8_t>(i);
		src[13] = 0x99;
		flood.push_back(src);
		w.record(RaHeard{src, 1800, many, {}}, t0 + std::chrono::milliseconds(i), {router});
	}
	EXPECT_EQ(w.stored(), 1u);
	// Even as default routers (a forger the kernel took as one, 10k
	// times), the watch holds at most kRaMaxRouters x kRaMaxPrefixes.
	std::vector<Ipv6Addr> routers = flood;
	routers.push_back(router);
	for (int i = 0; i < 10000; i++) {
		const auto t = t0 + std::chrono::seconds(20 + i);
		w.record(RaHeard{flood[static_cast<size_t>(i)], 1800, many, {}}, t, routers);
		// The real router's unsolicited RAs (MaxRtrAdvInterval).
		if (i % 600 == 0)
			w.record(RaHeard{router, 1800, {kP1}, {}}, t, routers);
	}
	EXPECT_LE(w.stored(), RaWatch::kRaMaxRouters * RaWatch::kRaMaxPrefixes);
	EXPECT_LE(w.heard(t0 + std::chrono::seconds(20000)).size(), RaWatch::kRaMaxRouters);
	// The real router renumbers (its latest RA: kP2 alone) and is heard.
	const auto t1 = t0 + std::chrono::seconds(20000);
	w.record(RaHeard{router, 1800, {kP2}, {}}, t1, routers);
	const std::vector<RaHeard> h = w.heard(t1);
	auto it = std::find_if(h.begin(), h.end(),
			       [&](const RaHeard &r) { return r.from == router; });
	ASSERT_NE(it, h.end());
	EXPECT_EQ(it->latest, std::vector<Ipv6Net>{kP2});
	EXPECT_EQ(follow_relay_prefix(kP1, kP2, {kP1, kP2}, {router}, h).prefix, kP2);
	// A router past kRaHeardKeep is forgotten.
	w.record(RaHeard{router, 1800, {kP2}, {}}, t1 + RaWatch::kRaHeardKeep, {router});
	EXPECT_EQ(w.stored(), 1u);
}

namespace {

MacAddr mac_n(uint8_t port, uint32_t i)
{
	return MacAddr{0x52,
		       0x54,
		       port,
		       static_cast<uint8_t>(i >> 16),
		       static_cast<uint8_t>(i >> 8),
		       static_cast<uint8_t>(i)};
}

} // namespace

// A guest that moves its addresses to ever new MACs: with room in the map
// every MAC stays on its port (the port guard placed each at its first
// frame: what it claimed counts in its port's slot; taking placements back
// would free that slot for more).  When the map runs short (the bridge
// has more than 3/4 of its capacity in MACs), the cap holds owners too,
// and the owners already placed keep their places.
TEST(Brport, OwnersBeyondThePortsShareStayUnplaced)
{
	std::map<MacAddr, uint32_t> fdb, have;
	std::set<MacAddr> owners;
	for (uint32_t i = 0; i < 200; i++) {
		fdb[mac_n(1, i)] = 10;
		owners.insert(mac_n(1, i));
		have[mac_n(1, i)] = 10; // the guard's placements
	}
	const BrportPlan roomy = plan_brport(fdb, have, owners, 4096);
	EXPECT_TRUE(roomy.put.empty());
	EXPECT_TRUE(roomy.del.empty()) << "every MAC of the port kept while the map has room";
	EXPECT_EQ(roomy.unplaced, 0u);
	// 200 MACs, and 10 on port 20, in a map of 256: beyond 3/4 of it (192),
	// port 10 is cut to what fits beside port 20's (182).  The first
	// placed ones (by an earlier sync): the highest MACs.
	for (uint32_t i = 0; i < 10; i++)
		fdb[mac_n(2, i)] = 20;
	have.clear();
	for (uint32_t i = 200 - 182; i < 200; i++)
		have[mac_n(1, i)] = 10;
	const BrportPlan p = plan_brport(fdb, have, owners, 256);
	ASSERT_EQ(p.put.size(), 10u) << "only port 20's, all of them";
	for (const auto &[m, port] : p.put)
		EXPECT_EQ(port, 20u);
	EXPECT_TRUE(p.del.empty()) << "the placed owners keep their places";
	EXPECT_EQ(p.unplaced, 200u - 182);
}

// A guest flooding the bridge with made-up MACs cuts only its own port:
// another port's hundred containers all keep their places.
TEST(Brport, AFloodCutsOnlyTheFloodingPort)
{
	std::map<MacAddr, uint32_t> fdb;
	for (uint32_t i = 0; i < 6000; i++)
		fdb[mac_n(1, i)] = 10;
	for (uint32_t i = 0; i < 100; i++)
		fdb[mac_n(2, i)] = 20;
	const BrportPlan p = plan_brport(fdb, {}, {}, 4096);
	size_t on10 = 0, on20 = 0;
	for (const auto &[m, port] : p.put)
		(port == 10 ? on10 : on20)++;
	EXPECT_EQ(on20, 100u);
	EXPECT_EQ(on10, 3072u - 100);
	// Many ports beyond 3/4 of the map: each keeps kBrportPerPort (the
	// level that fits, 51, is below it).
	std::map<MacAddr, uint32_t> wide;
	for (uint32_t port = 0; port < 60; port++)
		for (uint32_t i = 0; i < 100; i++)
			wide[mac_n(static_cast<uint8_t>(port + 3), i)] = 100 + port;
	const BrportPlan w = plan_brport(wide, {}, {}, 4096);
	std::map<uint32_t, size_t> per;
	for (const auto &[m, port] : w.put)
		per[port]++;
	ASSERT_EQ(per.size(), 60u);
	for (const auto &[port, n] : per)
		EXPECT_EQ(n, kBrportPerPort) << port;
}

// A guest on port 10 that rotated through 5000 MACs (all learnt by the
// bridge, one of them owning an address) leaves room in a 4096-entry
// kvx_brport for the guest booted on port 20 (port 10 is cut to 3071): its MAC is placed (its DAD
// counts in its own port's slot, not in the shared one the rotating guest
// keeps at its limits).
TEST(Brport, ARotatingGuestLeavesRoomForTheOthers)
{
	std::map<MacAddr, uint32_t> fdb, have;
	for (uint32_t i = 0; i < 5000; i++) {
		fdb[mac_n(1, i)] = 10;
		// What the unbounded sync had written: the map full of them.
		if (i < 4096)
			have[mac_n(1, i)] = 10;
	}
	const MacAddr owner = mac_n(1, 4500), fresh = mac_n(2, 1);
	fdb[fresh] = 20;
	const BrportPlan p = plan_brport(fdb, have, {owner}, 4096);
	std::map<MacAddr, uint32_t> after = have;
	for (const MacAddr &m : p.del)
		after.erase(m);
	for (const auto &[m, port] : p.put)
		after[m] = port;
	EXPECT_LE(after.size(), 4096u);
	ASSERT_TRUE(after.count(fresh));
	EXPECT_EQ(after[fresh], 20u);
	ASSERT_TRUE(after.count(owner));
	EXPECT_EQ(after[owner], 10u);
	size_t on10 = 0;
	for (const auto &[m, port] : after)
		on10 += port == 10;
	EXPECT_EQ(on10, 3072u - 1) << "cut to what fits beside port 20's one";
	EXPECT_EQ(p.unplaced, 5001u - after.size());
	// Applied again: nothing changes.
	const BrportPlan again = plan_brport(fdb, after, {owner}, 4096);
	EXPECT_TRUE(again.put.empty());
	EXPECT_TRUE(again.del.empty());
	// A map too small for every port's share: each port's first MAC
	// before any port's second.
	std::map<MacAddr, uint32_t> many;
	for (uint32_t port = 0; port < 8; port++)
		for (uint32_t i = 0; i < 4; i++)
			many[mac_n(static_cast<uint8_t>(port), i)] = 100 + port;
	const BrportPlan small = plan_brport(many, {}, {}, 8);
	ASSERT_EQ(small.put.size(), 8u);
	std::set<uint32_t> ports;
	for (const auto &[m, port] : small.put)
		ports.insert(port);
	EXPECT_EQ(ports.size(), 8u);
}

// An address owner the bridge forgot (quiet for its ageing time) stays on
// its port while the port is the bridge's; one whose port went (its VM's
// tap deleted) is gone, its addresses free; a MAC that owns nothing is
// left to plan_brport, and one the bridge still knows is not touched.
TEST(Brport, QuietOwnersStayPlacedAndGoneOnesAreReleased)
{
	const MacAddr quiet = mac_n(1, 1), gone = mac_n(1, 2), idle = mac_n(1, 3),
		      talking = mac_n(1, 4), moved = mac_n(1, 5);
	const std::map<MacAddr, uint32_t> have = {
		{quiet, 10}, {gone, 11}, {idle, 10}, {talking, 10}, {moved, 11}};
	const std::map<MacAddr, uint32_t> fdb = {{talking, 10}, {moved, 12}};
	const std::set<MacAddr> owners = {quiet, gone, talking, moved};
	const BrportAging a = plan_brport_aging(fdb, have, owners, {10, 12});
	EXPECT_EQ(a.keep, (std::map<MacAddr, uint32_t>{{quiet, 10}}));
	EXPECT_EQ(a.gone, std::set<MacAddr>{gone});
	// Kept in the plan: the quiet owner keeps its place.
	std::map<MacAddr, uint32_t> f = fdb;
	f.insert(a.keep.begin(), a.keep.end());
	const BrportPlan p = plan_brport(f, have, owners, 4096);
	EXPECT_EQ(std::count(p.del.begin(), p.del.end(), quiet), 0);
	EXPECT_EQ(std::count(p.del.begin(), p.del.end(), gone), 1);
	EXPECT_EQ(std::count(p.del.begin(), p.del.end(), idle), 1);
}

// A guest that sent with another's MAC moved that MAC to its own port (the
// bridge learnt it there); its VM going must not free the owner's
// addresses while the move is recent (the owner is back on its port with
// its next frame).
TEST(Brport, AMacMovedLatelyIsNotReleasedWithItsNewPort)
{
	const MacAddr owner = mac_n(1, 1), plain = mac_n(1, 2);
	const std::map<MacAddr, uint32_t> have = {{owner, 11}, {plain, 11}};
	const std::set<MacAddr> owners = {owner, plain};
	const BrportAging a = plan_brport_aging({}, have, owners, {10}, {owner});
	EXPECT_TRUE(a.keep.empty());
	EXPECT_EQ(a.gone, std::set<MacAddr>{plain});
}

// A VM's bridge port deleted (its tap: the VM shut down or destroyed), in a
// network namespace of the test's own with a real bridge: its learnt IPv4
// owner is released, its leased one kept but marked KVX_GUEST_F_GONE, and
// the bindings that delivered to them forget the MAC (not a closed flow's,
// which the next SYN may take over, nor another port's guest's), and so do
// the host's neighbour entries; the lease is unmarked when its MAC is on a
// port again.
TEST(Brport, APortGoneReleasesItsOwnersAndTheirBindingsForgetTheMac)
{
	if (!kvmxdp::test::missing_capabilities({CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF}).empty())
		GTEST_SKIP() << "needs root";
	auto child = [] {
		using kvmxdp::test::child_fail;
		kvmxdp::test::netns_child_setup({
			// A MAC of its own, as libvirt's bridges: one taken from a
			// port changes when the port goes, and the kernel then
			// flushes the bridge's neighbour entries itself.
			"ip link add kvxbr address 02:00:00:00:00:01 type bridge",
			"ip link add kvxp1 type veth peer name kvxq1",
			"ip link add kvxp2 type veth peer name kvxq2",
			"ip link set kvxp1 master kvxbr",
			"ip link set kvxp2 master kvxbr",
			"ip link set kvxbr up",
			"ip link set kvxp1 up",
			"ip link set kvxp2 up",
			"ip link set kvxq1 up",
			"ip link set kvxq2 up",
			"bridge fdb add 52:54:00:00:00:0a dev kvxp1 master static",
			"bridge fdb add 52:54:00:00:00:0b dev kvxp1 master static",
			"bridge fdb add 52:54:00:00:00:0c dev kvxp2 master static",
			"ip addr add 192.168.122.1/24 dev kvxbr",
			"ip neigh add 192.168.122.10 lladdr 52:54:00:00:00:0a dev kvxbr nud stale",
			"ip neigh add 192.168.122.11 lladdr 52:54:00:00:00:0b dev kvxbr nud stale",
			"ip neigh add 192.168.122.12 lladdr 52:54:00:00:00:0c dev kvxbr nud stale",
		});
		const MacAddr leased{0x52, 0x54, 0, 0, 0, 0x0a}, learnt{0x52, 0x54, 0, 0, 0, 0x0b},
			other{0x52, 0x54, 0, 0, 0, 0x0c};
		Fd brport(bpf_map_create(BPF_MAP_TYPE_HASH, "t_brport", sizeof(kvx_xfdb_key),
					 sizeof(kvx_xfdb_val), 64, nullptr));
		Fd guest(bpf_map_create(BPF_MAP_TYPE_HASH, "t_guest", sizeof(__be32),
					sizeof(kvx_guest_val), 64, nullptr));
		Fd bind(bpf_map_create(BPF_MAP_TYPE_HASH, "t_bind", sizeof(kvx_bind_key),
				       sizeof(kvx_bind_val), 64, nullptr));
		if (brport.get() < 0 || guest.get() < 0 || bind.get() < 0)
			child_fail(std::string("bpf_map_create: ") + std::strerror(errno));
		const uint64_t now = 1000ULL * 1000000000;
		auto own = [&](uint8_t last, const MacAddr &m, uint16_t flags) {
			const __be32 a = htonl(0xc0a87a00 | last);
			kvx_guest_val v{};
			std::memcpy(v.mac, m.data(), 6);
			v.flags = flags;
			v.seen_ns = now;
			if (bpf_map_update_elem(guest.get(), &a, &v, BPF_ANY))
				child_fail("kvx_guest");
		};
		own(10, leased, KVX_GUEST_F_LEASE);
		own(11, learnt, 0);
		own(12, other, 0);
		// IN halves by external port: 1:1 to .10 (static), a dynamic
		// one and a closed flow's to .11, one to .12.
		auto key_of = [](uint16_t ext_port) {
			kvx_bind_key k{};
			k.dir = KVX_BIND_IN;
			k.proto = IPPROTO_UDP;
			k.port = htons(ext_port);
			k.addr = htonl(0x0a000002);
			return k;
		};
		auto bind_in = [&](uint16_t ext_port, uint8_t last, const MacAddr &m,
				   uint16_t flags) {
			const kvx_bind_key k = key_of(ext_port);
			kvx_bind_val v{};
			v.addr = htonl(0xc0a87a00 | last);
			v.flags = flags;
			std::memcpy(v.guest_mac, m.data(), 6);
			std::memcpy(v.gw_mac, other.data(), 6);
			v.last_used_ns = now;
			if (bpf_map_update_elem(bind.get(), &k, &v, BPF_ANY))
				child_fail("kvx_bind");
		};
		auto mac_of_bind = [&](uint16_t ext_port) {
			const kvx_bind_key k = key_of(ext_port);
			kvx_bind_val v{};
			if (bpf_map_lookup_elem(bind.get(), &k, &v))
				child_fail("kvx_bind entry " + std::to_string(ext_port) + " gone");
			MacAddr m;
			std::memcpy(m.data(), v.guest_mac, 6);
			return m;
		};
		bind_in(1010, 10, leased, KVX_BIND_F_STATIC | KVX_BIND_F_ONE_TO_ONE);
		bind_in(1011, 11, learnt, 0);
		bind_in(1012, 11, learnt, KVX_BIND_F_TW);
		bind_in(1013, 12, other, 0);
		auto owner = [&](uint8_t last) -> std::optional<kvx_guest_val> {
			const __be32 a = htonl(0xc0a87a00 | last);
			kvx_guest_val v{};
			if (bpf_map_lookup_elem(guest.get(), &a, &v))
				return std::nullopt;
			return v;
		};

		NlSocket nl;
		const auto br = find_link(nl, "kvxbr");
		if (!br)
			child_fail("no kvxbr");
		auto sync = [&] {
			return sync_brport(nl, br->ifindex, brport.get(), -1, guest.get(), now,
					   bind.get(), -1);
		};
		BrportSyncResult r = sync();
		if (r.added < 3 || r.released4 || r.gone4)
			child_fail("first sync: " + std::to_string(r.added) + " placed, " +
				   std::to_string(r.released4) + " released");

		if (std::system("ip link del kvxp1"))
			child_fail("ip link del kvxp1");
		r = sync();
		if (r.released4 != 1 || r.gone4 != 1 || r.unbound4 != 2)
			child_fail("port gone: " + std::to_string(r.released4) + " released, " +
				   std::to_string(r.gone4) + " leases gone, " +
				   std::to_string(r.unbound4) + " bindings forgot");
		if (owner(11))
			child_fail("the learnt owner of .11 is still there");
		auto l = owner(10);
		if (!l || l->flags != (KVX_GUEST_F_LEASE | KVX_GUEST_F_GONE) ||
		    std::memcmp(l->mac, leased.data(), 6))
			child_fail("the lease of .10 is not kept and marked gone");
		if (!owner(12) || std::memcmp(owner(12)->mac, other.data(), 6))
			child_fail("the other port's owner of .12 changed");
		if (mac_of_bind(1010) != MacAddr{} || mac_of_bind(1011) != MacAddr{})
			child_fail("a binding of the gone port still delivers to its MAC");
		if (mac_of_bind(1012) != learnt)
			child_fail("a closed flow's binding was rewritten");
		if (mac_of_bind(1013) != other)
			child_fail("the other port's guest's binding lost its MAC");
		// The host's neighbour entries of the gone MACs too.
		if (r.neigh_forgotten != 2 || neighbour_mac(nl, br->ifindex, 0xc0a87a0a) ||
		    neighbour_mac(nl, br->ifindex, 0xc0a87a0b))
			child_fail(
				"the bridge's neighbour entries of the gone MACs are still there: " +
				std::to_string(r.neigh_forgotten) + " forgotten");
		if (neighbour_mac(nl, br->ifindex, 0xc0a87a0c) != other)
			child_fail("the other port's guest's neighbour entry went");

		// The VM back, the same MAC (libvirt keeps it): unmarked.
		if (std::system("ip link add kvxp1 type veth peer name kvxq1 >/dev/null 2>&1") ||
		    std::system("ip link set kvxp1 master kvxbr up") ||
		    std::system("bridge fdb add 52:54:00:00:00:0a dev kvxp1 master static"))
			child_fail("kvxp1 again");
		r = sync();
		if (r.back4 != 1 || !owner(10) || owner(10)->flags != KVX_GUEST_F_LEASE)
			child_fail("the lease of .10 is still marked gone");

		// When a placement moved (kvx_brport seen_ns): from a port that
		// still exists, a move (what a spoofed frame does); from one
		// deleted meanwhile (a tap re-created while the daemon was
		// away), no move.
		auto placed = [&](const MacAddr &m) {
			kvx_xfdb_key k{};
			std::memcpy(k.mac, m.data(), 6);
			kvx_xfdb_val v{};
			if (bpf_map_lookup_elem(brport.get(), &k, &v))
				child_fail("MAC not placed");
			return v;
		};
		if (std::system("ip link del kvxp1") ||
		    std::system("ip link add kvxp1 type veth peer name kvxq1 >/dev/null 2>&1") ||
		    std::system("ip link set kvxp1 master kvxbr up") ||
		    std::system("bridge fdb add 52:54:00:00:00:0a dev kvxp1 master static"))
			child_fail("kvxp1 re-made");
		sync();
		const auto p1 = find_link(nl, "kvxp1");
		if (!p1 || placed(leased).ifindex != static_cast<uint32_t>(p1->ifindex) ||
		    placed(leased).seen_ns != 0)
			child_fail("a placement from a deleted port counted as a move");
		if (std::system("bridge fdb replace 52:54:00:00:00:0c dev kvxp1 master static"))
			child_fail("move :0c");
		r = sync();
		if (r.moved != 1 || placed(other).seen_ns != now)
			child_fail("a move from a port that exists is not timed");

		// The port guard's KVX_BRPORT_F_HELD: nothing without its state
		// (the calls above); static entries at once; an owner whose
		// entry went (aged out) stays placed for its addresses, not
		// held; a dynamic entry after KVX_GUARD_SETTLE_NS on its port
		// without a move, a move starting that over; none while off.
		PortGuardState guard;
		guard.on = true;
		auto gsync = [&](uint64_t t) {
			return sync_brport(nl, br->ifindex, brport.get(), -1, guest.get(), t,
					   bind.get(), -1, &guard);
		};
		auto held = [&](const MacAddr &m) {
			return (placed(m).flags & KVX_BRPORT_F_HELD) != 0;
		};
		if (held(other) || held(leased))
			child_fail("held without the guard's state");
		// Static entries at once (the ports' own permanent ones too), but
		// not :0c, which moved from a port that still exists just now.
		r = gsync(now);
		if (!held(leased) || held(other))
			child_fail(
				"a static entry not held at once, or one that moved lately held");
		if (std::system("bridge fdb del 52:54:00:00:00:0c dev kvxp1 master"))
			child_fail("del :0c");
		r = gsync(now + KVX_BRPORT_MOVE_HOLD_NS);
		if (held(other) || placed(other).ifindex != static_cast<uint32_t>(p1->ifindex) ||
		    placed(other).seen_ns != now)
			child_fail("an owner the bridge forgot is not kept placed, not held");
		const MacAddr dyn{0x52, 0x54, 0, 0, 0, 0x0d};
		const uint64_t settle = KVX_GUARD_SETTLE_NS, base = now + KVX_BRPORT_MOVE_HOLD_NS;
		if (std::system("bridge fdb add 52:54:00:00:00:0d dev kvxp2 master dynamic"))
			child_fail("add :0d");
		gsync(base + 1);
		if (held(dyn))
			child_fail("a MAC new on its port is held before it settled");
		gsync(base + settle);
		if (held(dyn))
			child_fail("held a nanosecond early");
		r = gsync(base + 1 + settle);
		if (r.held_changed != 1 || !held(dyn))
			child_fail("a dynamic entry settled on its port is not held");
		if (std::system("bridge fdb del 52:54:00:00:00:0d dev kvxp2 master"))
			child_fail("move :0d (del)");
		// A dynamic entry only on a port that learns or forwards: the
		// re-made kvxp1's peer up.
		if (std::system("ip link set kvxq1 up") ||
		    std::system("bridge fdb add 52:54:00:00:00:0d dev kvxp1 master dynamic"))
			child_fail("move :0d (add)");
		const uint64_t moved_at = base + 2 + settle, hold = KVX_BRPORT_MOVE_HOLD_NS;
		gsync(moved_at);
		if (held(dyn) || placed(dyn).ifindex != static_cast<uint32_t>(p1->ifindex))
			child_fail("a MAC that moved is still held, or not placed on its new port");
		// Moved from a port that still exists: not held for the move
		// hold, however settled.
		gsync(moved_at + hold - 1);
		if (held(dyn))
			child_fail("held within the move hold");
		uint64_t t = moved_at + hold;
		gsync(t);
		if (!held(dyn))
			child_fail("a MAC settled on its new port is not held after the move hold");
		// The guard saw it on another port meanwhile (a guest sending
		// with it faster than the daemon looks): not held, the mark
		// cleared, held again only after a settle without one.
		auto mark = [&](const MacAddr &m) {
			kvx_xfdb_key k{};
			std::memcpy(k.mac, m.data(), 6);
			kvx_xfdb_val v = placed(m);
			v.flags |= KVX_BRPORT_F_CONTESTED;
			if (bpf_map_update_elem(brport.get(), &k, &v, BPF_EXIST))
				child_fail("mark");
		};
		mark(dyn);
		gsync(++t);
		if (held(dyn) || (placed(dyn).flags & KVX_BRPORT_F_CONTESTED))
			child_fail("a contested MAC is still held, or its mark not cleared");
		gsync(t + settle - 1);
		if (held(dyn))
			child_fail("held again before a settle without a mark");
		t += settle;
		gsync(t);
		if (!held(dyn))
			child_fail("not held again after a settle without a mark");
		// A new daemon (no state) keeps what the last one held.
		PortGuardState fresh;
		fresh.on = true;
		sync_brport(nl, br->ifindex, brport.get(), -1, guest.get(), ++t, bind.get(), -1,
			    &fresh);
		if (!held(dyn))
			child_fail("a restarted daemon let go of a held MAC");
		guard.on = false;
		r = gsync(++t);
		if (held(dyn) || held(leased))
			child_fail("held with the guard off");
		std::_Exit(0);
	};
	EXPECT_EXIT(child(), ::testing::ExitedWithCode(0), "");
}

// The forwarding database as the port guard reads it (fdb_view): the
// bridge's own entries left out, static ones noted, and a MAC on two ports
// at once (a VLAN-filtering bridge, one MAC in two VLANs; this test's
// kernel may have no VLAN filtering, hence entries made up here) split:
// sync_brport holds it on neither port.
TEST(Brport, AMacOnTwoPortsAtOnceIsSplit)
{
	const MacAddr a{0x52, 0x54, 0, 0, 0, 0x0a}, twin{0x52, 0x54, 0, 0, 0, 0x0e},
		own{0x52, 0x54, 0, 0, 0, 0x01};
	const std::vector<FdbEntry> fdb{{a, 5, true},	 {twin, 5, false}, {twin, 6, false},
					{own, 3, false}, {own, 5, false},  {a, 5, true}};
	const FdbView v = fdb_view(fdb, 3);
	EXPECT_EQ(v.port, (std::map<MacAddr, uint32_t>{{a, 5}, {twin, 6}, {own, 5}}));
	EXPECT_EQ(v.split, std::set<MacAddr>{twin}) << "one MAC twice on one port is no split";
	EXPECT_EQ(v.fixed, (std::set<MacAddr>{twin, own}));
}

// NAT66's owners at attach from the guests' bindings: an address one MAC
// bound is that MAC's; one two MACs bound (a spoofer before owners
// existed) is nobody's yet, nor bindings without a MAC (a mapping no guest
// used yet) or outside the subnet.
TEST(NdSeed, OwnersFromTheGuestsBindings)
{
	const Ipv6Net subnet{parse_ipv6("fd42::"), 64};
	auto b = [](const char *a, uint8_t m) {
		BindOwner o;
		o.addr = parse_ipv6(a);
		o.mac = mac_n(9, m);
		return o;
	};
	BindOwner nomac = b("fd42::c", 0);
	nomac.mac = MacAddr{};
	const std::map<Ipv6Addr, MacAddr> s =
		plan_nd_seed({b("fd42::a", 1), b("fd42::a", 2), b("fd42::b", 4), nomac,
			      b("fd43::d", 5), b("fd42::e", 6), b("fd42::e", 6)},
			     subnet);
	EXPECT_EQ(s, (std::map<Ipv6Addr, MacAddr>{{parse_ipv6("fd42::b"), mac_n(9, 4)},
						  {parse_ipv6("fd42::e"), mac_n(9, 6)}}));
}

// A claim whose probe cannot be sent (the uplink gone) is forgotten with
// its count in kvx_gaddrs, and the other claims are still tried.
TEST(RelayProbe, ASendFailureForgetsTheClaimAndItsCountAndGoesOn)
{
	KVX_SKIP_WITHOUT_BPF_PRIVILEGE();
	Fd nd(bpf_map_create(BPF_MAP_TYPE_HASH, "t_nd", sizeof(kvx_nd_key), sizeof(kvx_nd_val), 16,
			     nullptr));
	ASSERT_GE(nd.get(), 0) << std::strerror(errno);
	Fd ga(bpf_map_create(BPF_MAP_TYPE_ARRAY, "t_gaddrs", 4, 4, KVX_GFLOWS_MAX, nullptr));
	ASSERT_GE(ga.get(), 0) << std::strerror(errno);
	const uint32_t seed = 7;
	const uint32_t slot = kvx_port_slot(0, seed);
	const uint32_t two = 2;
	ASSERT_EQ(bpf_map_update_elem(ga.get(), &slot, &two, BPF_ANY), 0);
	for (const char *a : {"2001:db8:1::a", "2001:db8:1::b"}) {
		kvx_nd_key k{};
		const Ipv6Addr addr = parse_ipv6(a);
		std::memcpy(k.addr, addr.data(), 16);
		kvx_nd_val v{};
		v.state = KVX_ND_PENDING;
		v.mac[0] = 0x52;
		v.mac[5] = 1;
		ASSERT_EQ(bpf_map_update_elem(nd.get(), &k, &v, BPF_NOEXIST), 0);
	}
	ProbeCounters c;
	c.gaddrs_fd = ga.get();
	c.seed = seed;
	// No such device: every send fails.
	const ProbeResult r = probe_relay_claims(nd.get(), 0x7ffffff0, 1000, c);
	EXPECT_EQ(r.probed, 0u);
	EXPECT_EQ(r.failed, 2u);
	EXPECT_FALSE(r.error.empty());
	kvx_nd_key next{};
	EXPECT_NE(bpf_map_get_next_key(nd.get(), nullptr, &next), 0);
	uint32_t n = 99;
	ASSERT_EQ(bpf_map_lookup_elem(ga.get(), &slot, &n), 0);
	EXPECT_EQ(n, 0u);
}

// A guest's port gone: its MAC leaves its dynamic IN halves (a re-created
// VM gets its addresses back at once), never a relay mapping's, which
// stays its first owner's while that guest is away.
TEST(RelayNd, GoneGuestsMacLeavesBindingsButNotRelayMappings)
{
	KVX_SKIP_WITHOUT_BPF_PRIVILEGE();
	Fd m(bpf_map_create(BPF_MAP_TYPE_HASH, "t_bind6", sizeof(kvx_bind6_key),
			    sizeof(kvx_bind6_val), 16, nullptr));
	ASSERT_GE(m.get(), 0) << std::strerror(errno);
	const Ipv6Addr g = parse_ipv6("2001:db8:1::7"), up = parse_ipv6("2001:db8:1::2");
	const MacAddr mac{0x52, 0x54, 0x00, 0x00, 0x00, 0x07};
	auto put = [&](const Ipv6Addr &ext, uint16_t port, uint16_t flags) {
		kvx_bind6_key k{};
		k.dir = KVX_BIND_IN;
		k.proto = IPPROTO_TCP;
		std::memcpy(k.addr, ext.data(), 16);
		k.port = htons(port);
		kvx_bind6_val v{};
		std::memcpy(v.addr, g.data(), 16);
		v.bind.port = htons(22);
		v.bind.flags = flags;
		std::memcpy(v.bind.guest_mac, mac.data(), 6);
		EXPECT_EQ(bpf_map_update_elem(m.get(), &k, &v, BPF_ANY), 0);
		return k;
	};
	const kvx_bind6_key dyn = put(up, 61000, 0), relay = put(g, 22, KVX_BIND_F_STATIC);
	EXPECT_EQ(forget_guest_macs6(m.get(), {{g, mac}}), 1u);
	kvx_bind6_val v{};
	ASSERT_EQ(bpf_map_lookup_elem(m.get(), &dyn, &v), 0);
	EXPECT_EQ(0, std::memcmp(v.bind.guest_mac, MacAddr{}.data(), 6)) << "forgotten";
	ASSERT_EQ(bpf_map_lookup_elem(m.get(), &relay, &v), 0);
	EXPECT_EQ(0, std::memcmp(v.bind.guest_mac, mac.data(), 6))
		<< "the relay mapping's owner kept";
}
