// SPDX-License-Identifier: GPL-2.0
// Duplicate address detection of IPv6 mapped addresses (model/dad.hpp): the
// probe and the announcement byte for byte (RFC 4861 4.3, 4.4; the checksum
// recomputed here from the RFC 8200 8.1 pseudo-header, not by dad.cpp's
// code), what a received message means (RFC 4862 5.4.3, 5.4.4, RFC 7527's
// nonce), and the state kvx_extaddr6 gets from what DAD found.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "base/netaddr6.hpp"
#include "kvmxdp/abi.h"
#include "model/dad.hpp"

using namespace kvmxdp;

namespace {

const Ipv6Addr kTarget = parse_ipv6("2001:db8:1::1:2345");
const DadNonce kNonce{1, 2, 3, 4, 5, 6};
const MacAddr kMac{0x02, 0x6b, 0x76, 0, 0, 0x02};

// RFC 1071 over the pseudo-header (source, destination, upper-layer length,
// next header 58) and the message, folded: 0xffff for a right checksum.
uint16_t verify_sum(const std::vector<uint8_t> &p)
{
	std::vector<uint8_t> ph(p.begin() + 8, p.begin() + 40);
	const size_t len = p.size() - 40;
	for (int s = 24; s >= 0; s -= 8)
		ph.push_back(static_cast<uint8_t>(len >> s));
	ph.insert(ph.end(), {0, 0, 0, 58});
	ph.insert(ph.end(), p.begin() + 40, p.end());
	if (ph.size() % 2)
		ph.push_back(0);
	uint64_t s = 0;
	for (size_t i = 0; i < ph.size(); i += 2)
		s += static_cast<uint64_t>(ph[i]) << 8 | ph[i + 1];
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return static_cast<uint16_t>(s);
}

// The bytes with the checksum field zeroed, to compare layouts.
std::vector<uint8_t> no_sum(std::vector<uint8_t> p)
{
	p[42] = p[43] = 0;
	return p;
}

std::vector<uint8_t> hdr(const char *src, const char *dst, uint16_t plen)
{
	std::vector<uint8_t> b = {
		0x60, 0,  0, 0, static_cast<uint8_t>(plen >> 8), static_cast<uint8_t>(plen),
		58,   255};
	for (const char *a : {src, dst}) {
		const Ipv6Addr x = parse_ipv6(a);
		b.insert(b.end(), x.begin(), x.end());
	}
	return b;
}

// An NA or NS for kTarget as another node sends it.
std::vector<uint8_t> nd(uint8_t type, const char *src, const char *dst,
			const std::vector<uint8_t> &opts)
{
	std::vector<uint8_t> p = hdr(src, dst, static_cast<uint16_t>(24 + opts.size()));
	p.insert(p.end(), {type, 0, 0, 0, type == 136 ? uint8_t{0x20} : uint8_t{0}, 0, 0, 0});
	p.insert(p.end(), kTarget.begin(), kTarget.end());
	p.insert(p.end(), opts.begin(), opts.end());
	const uint16_t s = static_cast<uint16_t>(~verify_sum(p));
	p[42] = static_cast<uint8_t>(s >> 8);
	p[43] = static_cast<uint8_t>(s);
	return p;
}

} // namespace

TEST(Dad, SolicitedNodeGroupAndItsMac)
{
	EXPECT_EQ(format_ipv6(solicited_node(kTarget)), "ff02::1:ff01:2345");
	EXPECT_EQ(ipv6_multicast_mac(solicited_node(kTarget)),
		  (MacAddr{0x33, 0x33, 0xff, 0x01, 0x23, 0x45}));
}

TEST(Dad, ProbeBytes)
{
	const auto p = build_dad_ns(kTarget, kNonce);
	std::vector<uint8_t> want = hdr("::", "ff02::1:ff01:2345", 32);
	want.insert(want.end(), {135, 0, 0, 0, 0, 0, 0, 0});
	want.insert(want.end(), kTarget.begin(), kTarget.end());
	want.insert(want.end(), {14, 1, 1, 2, 3, 4, 5, 6}); // the nonce option
	EXPECT_EQ(no_sum(p), want);
	EXPECT_EQ(verify_sum(p), 0xffff);
}

TEST(Dad, AnnouncementBytes)
{
	const auto p = build_unsolicited_na(kTarget, kMac);
	std::vector<uint8_t> want = hdr("2001:db8:1::1:2345", "ff02::1", 32);
	// Not Solicited (unsolicited), Override (RFC 4861 7.2.6).
	want.insert(want.end(), {136, 0, 0, 0, 0x20, 0, 0, 0});
	want.insert(want.end(), kTarget.begin(), kTarget.end());
	want.insert(want.end(), {2, 1, 0x02, 0x6b, 0x76, 0, 0, 0x02});
	EXPECT_EQ(no_sum(p), want);
	EXPECT_EQ(verify_sum(p), 0xffff);
}

TEST(Dad, AdvertisementForTheTargetIsADuplicate)
{
	const auto na = nd(136, "2001:db8:1::1:2345", "ff02::1", {2, 1, 0x52, 0x54, 0, 0, 0, 1});
	EXPECT_EQ(dad_check(na.data(), na.size(), kTarget, kNonce), DadSeen::Duplicate);
	// For another target, truncated, a wrong checksum, a hop limit that is
	// not 255, a zero-length option: nothing (RFC 4861 7.1.2).
	const Ipv6Addr other = parse_ipv6("2001:db8:1::1:2346");
	EXPECT_EQ(dad_check(na.data(), na.size(), other, kNonce), DadSeen::Nothing);
	EXPECT_EQ(dad_check(na.data(), na.size() - 1, kTarget, kNonce), DadSeen::Nothing);
	auto bad = na;
	bad[43] ^= 1;
	EXPECT_EQ(dad_check(bad.data(), bad.size(), kTarget, kNonce), DadSeen::Nothing);
	bad = na;
	bad[7] = 254;
	EXPECT_EQ(dad_check(bad.data(), bad.size(), kTarget, kNonce), DadSeen::Nothing);
	const auto zero_opt = nd(136, "2001:db8:1::7", "ff02::1", {2, 0, 0, 0, 0, 0, 0, 0});
	EXPECT_EQ(dad_check(zero_opt.data(), zero_opt.size(), kTarget, kNonce), DadSeen::Nothing);
}

TEST(Dad, AnotherNodesProbeIsADuplicateOursIsNot)
{
	const auto theirs = nd(135, "::", "ff02::1:ff01:2345", {14, 1, 9, 9, 9, 9, 9, 9});
	EXPECT_EQ(dad_check(theirs.data(), theirs.size(), kTarget, kNonce), DadSeen::Duplicate);
	const auto none = nd(135, "::", "ff02::1:ff01:2345", {});
	EXPECT_EQ(dad_check(none.data(), none.size(), kTarget, kNonce), DadSeen::Duplicate);
	// Our own probe looped back (a WiFi access point reflects multicast):
	// RFC 7527's nonce tells.
	const auto ours = build_dad_ns(kTarget, kNonce);
	EXPECT_EQ(dad_check(ours.data(), ours.size(), kTarget, kNonce), DadSeen::Nothing);
	// Address resolution by a node that has an address claims nothing.
	const auto resolve =
		nd(135, "2001:db8:1::9", "ff02::1:ff01:2345", {1, 1, 0x52, 0x54, 0, 0, 0, 9});
	EXPECT_EQ(dad_check(resolve.data(), resolve.size(), kTarget, kNonce), DadSeen::Nothing);
	// A probe sent unicast is invalid (RFC 4861 7.1.1).
	const auto unicast = nd(135, "::", "2001:db8:1::1:2345", {});
	EXPECT_EQ(dad_check(unicast.data(), unicast.size(), kTarget, kNonce), DadSeen::Nothing);
}

TEST(Dad, StateOfAMappedAddress)
{
	using V = DadVerdict;
	auto st = [](std::optional<uint32_t> have, std::optional<V> v) {
		const Ext6State s = decide_ext6(have, v);
		return std::to_string(s.flags) + (s.held ? " held" : "") +
		       (s.announce_now ? " announce" : "");
	};
	const std::string probing = std::to_string(KVX_EXT_F_PROBING) + " held";
	const std::string conflict = std::to_string(KVX_EXT_F_CONFLICT) + " held";
	const std::string announced = std::to_string(KVX_EXT_F_ARP);
	// New: probed first, announced when free, held when taken.
	EXPECT_EQ(st(std::nullopt, std::nullopt), probing);
	EXPECT_EQ(st(std::nullopt, V::Free), announced + " announce");
	EXPECT_EQ(st(std::nullopt, V::Duplicate), conflict);
	// Probing: stays until a verdict.
	EXPECT_EQ(st(KVX_EXT_F_PROBING, std::nullopt), probing);
	EXPECT_EQ(st(KVX_EXT_F_PROBING, V::Free), announced + " announce");
	EXPECT_EQ(st(KVX_EXT_F_PROBING, V::Duplicate), conflict);
	// A conflict stays one (a writer without DAD: `map del` of another
	// mapping, attach) until DAD finds the address free.
	EXPECT_EQ(st(KVX_EXT_F_CONFLICT, std::nullopt), conflict);
	EXPECT_EQ(st(KVX_EXT_F_CONFLICT, V::Duplicate), conflict);
	EXPECT_EQ(st(KVX_EXT_F_CONFLICT, V::Free), announced + " announce");
	// Announced stays announced, once.
	EXPECT_EQ(st(KVX_EXT_F_ARP, std::nullopt), announced);
	EXPECT_EQ(st(KVX_EXT_F_ARP, V::Free), announced);
}

TEST(Dad, RetryBacksOff)
{
	EXPECT_EQ(dad_retry_ms(1), kDadRetryMinMs);
	EXPECT_EQ(dad_retry_ms(2), 2 * kDadRetryMinMs);
	EXPECT_EQ(dad_retry_ms(4), 8 * kDadRetryMinMs);
	EXPECT_EQ(dad_retry_ms(5), kDadRetryMaxMs);
	EXPECT_EQ(dad_retry_ms(50), kDadRetryMaxMs);
}

// DupAddrDetectTransmits from the uplink's sysctl, read as the kernel
// writes it ("1\n"); 0 is no DAD; nonsense or unreadable: RFC 4862's 1.
TEST(Dad, TransmitsFromTheUplinksSysctl)
{
	EXPECT_EQ(dad_transmits_of(std::string("1\n")), 1);
	EXPECT_EQ(dad_transmits_of(std::string("3\n")), 3);
	EXPECT_EQ(dad_transmits_of(std::string("0\n")), 0);
	EXPECT_EQ(dad_transmits_of(std::string("1000\n")), kDadTransmitsMax);
	EXPECT_EQ(dad_transmits_of(std::string("99999999999999\n")), kDadTransmits);
	EXPECT_EQ(dad_transmits_of(std::string("-1\n")), kDadTransmits);
	EXPECT_EQ(dad_transmits_of(std::string("")), kDadTransmits);
	EXPECT_EQ(dad_transmits_of(std::nullopt), kDadTransmits);
}

// When the announced addresses go through DAD again: the uplink's carrier
// back, another device, another network; not at the first look, not while
// there is no carrier, not for a moment without an address.
TEST(Dad, AgainWhenTheLinkComesBackOrChanges)
{
	std::optional<DadLink> st;
	const DadLink home{7, true, "192.168.1.0/24 via 192.168.1.1 2001:db8:1::/64"};
	EXPECT_FALSE(dad_link_update(st, home));
	EXPECT_FALSE(dad_link_update(st, home));
	// Carrier lost (WiFi out of range), the address too: nothing yet.
	EXPECT_FALSE(dad_link_update(st, DadLink{7, false, ""}));
	EXPECT_FALSE(dad_link_update(st, DadLink{7, false, ""}));
	// Back, the same network: again (another node may have taken it).
	EXPECT_TRUE(dad_link_update(st, DadLink{7, true, ""}));
	EXPECT_FALSE(dad_link_update(st, home));
	// No address for a moment, carrier kept: the same network.
	EXPECT_FALSE(dad_link_update(st, DadLink{7, true, ""}));
	EXPECT_FALSE(dad_link_update(st, home));
	// Another network without a carrier flap (roaming), another device.
	EXPECT_TRUE(dad_link_update(st, DadLink{7, true, "10.0.0.0/24 via 10.0.0.1"}));
	EXPECT_TRUE(dad_link_update(st, DadLink{9, true, "10.0.0.0/24 via 10.0.0.1"}));
	EXPECT_FALSE(dad_link_update(st, DadLink{9, true, "10.0.0.0/24 via 10.0.0.1"}));
	// A daemon that starts without carrier: DAD once it comes.
	std::optional<DadLink> cold;
	EXPECT_FALSE(dad_link_update(cold, DadLink{7, false, ""}));
	EXPECT_TRUE(dad_link_update(cold, home));
}
