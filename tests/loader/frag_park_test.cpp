// The daemon's park of later fragments (IPv4 and IPv6) that arrived before
// their first (control/frag_park.hpp): its limits, the expiry, and the
// rewrite a parked fragment gets once its first fragment's kvx_frag (or
// kvx_frag6) entry exists (checked against a checksum computed here, RFC
// 1071 over the header).
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <optional>
#include <vector>

#include "control/frag_park.hpp"

namespace kvmxdp {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr uint32_t kGuest = 0xc0a87a0a;	 // 192.168.122.10
constexpr uint32_t kRemote = 0xc612000a; // 198.18.0.10
constexpr uint32_t kUplink = 0x0a4d0002; // 10.77.0.2
constexpr uint64_t kSec = 1000000000ULL;
constexpr uint64_t kT0 = 1000 * kSec;

// An IPv4 later fragment (offset 72 bytes) of a UDP datagram: 20-byte
// header, a correct checksum, `data` bytes of payload.
Bytes later_fragment(uint32_t src, uint32_t dst, uint16_t id, size_t data = 40, uint8_t ttl = 64)
{
	Bytes b(20 + data);
	b[0] = 0x45;
	b[2] = static_cast<uint8_t>(b.size() >> 8);
	b[3] = static_cast<uint8_t>(b.size());
	b[4] = static_cast<uint8_t>(id >> 8);
	b[5] = static_cast<uint8_t>(id);
	b[7] = 9; // offset 9 * 8 bytes, MF clear
	b[8] = ttl;
	b[9] = IPPROTO_UDP;
	const uint32_t s = htonl(src), d = htonl(dst);
	std::memcpy(&b[12], &s, 4);
	std::memcpy(&b[16], &d, 4);
	for (size_t i = 0; i < data; i++)
		b[20 + i] = static_cast<uint8_t>(0xa0 + i);
	return b;
}

// RFC 1071: the one's complement of the one's complement sum of the
// header's 16-bit words (the checksum field included): 0 when valid.
uint16_t header_sum(const Bytes &ip)
{
	const size_t ihl = (ip[0] & 0xfu) * 4;
	uint64_t sum = 0;
	for (size_t i = 0; i + 1 < ihl; i += 2)
		sum += static_cast<uint32_t>(ip[i]) * 256 + ip[i + 1];
	while (sum > 0xffff)
		sum = (sum >> 16) + (sum & 0xffff);
	return static_cast<uint16_t>(~sum & 0xffff);
}

// A kvx_fragq record as the datapath writes it (the largest class; OUT:
// from the guest whose MAC ends in mac_last).
Bytes record(const Bytes &ip, uint8_t dir, uint8_t mac_last = 0x0a)
{
	Bytes r(sizeof(kvx_fragq_rec));
	kvx_fragq_hdr h{};
	h.len = static_cast<uint16_t>(ip.size());
	h.dir = dir;
	if (dir == KVX_BIND_OUT) {
		const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x00, 0x00, mac_last};
		std::memcpy(h.mac, mac, 6);
	}
	std::memcpy(r.data(), &h, sizeof(h));
	std::memcpy(r.data() + sizeof(h), ip.data(), ip.size());
	return r;
}

kvx_frag_key key_of(const Bytes &ip, uint8_t dir)
{
	kvx_frag_key k{};
	std::memcpy(&k.saddr, &ip[12], 4);
	std::memcpy(&k.daddr, &ip[16], 4);
	std::memcpy(&k.id, &ip[4], 2);
	k.proto = ip[9];
	k.dir = dir;
	return k;
}

bool key_eq(const kvx_frag_key &a, const kvx_frag_key &b)
{
	return std::memcmp(&a, &b, sizeof(a)) == 0;
}

// kvx_frag as the datapath would have it: entries by key.
struct FakeFrag {
	std::vector<std::pair<kvx_frag_key, kvx_frag_val>> entries;
	int lookups = 0;
	void add(const kvx_frag_key &k, uint32_t addr, uint64_t created_ns, uint8_t mac_last = 0x11)
	{
		kvx_frag_val v{};
		v.addr = htonl(addr);
		for (int i = 0; i < 6; i++)
			v.guest_mac[i] = static_cast<uint8_t>(0x50 + i);
		v.guest_mac[5] = mac_last;
		v.created_ns = created_ns;
		entries.emplace_back(k, v);
	}
	FragPark::Lookup lookup()
	{
		return [this](const kvx_frag_key &k) -> std::optional<kvx_frag_val> {
			lookups++;
			for (const auto &[ek, ev] : entries)
				if (key_eq(ek, k))
					return ev;
			return std::nullopt;
		};
	}
};

uint64_t packets(const std::map<uint32_t, kvx_stat> &c, uint32_t r)
{
	auto it = c.find(r);
	return it == c.end() ? 0 : it->second.packets;
}

TEST(FragPark, OutboundFragmentTranslatedOnceItsFirstPassed)
{
	FragPark park;
	const Bytes ip = later_fragment(kGuest, kRemote, 0x1234);
	const Bytes rec = record(ip, KVX_BIND_OUT);
	park.take(rec.data(), rec.size(), kT0);
	EXPECT_EQ(park.size(), 1u);
	EXPECT_EQ(park.bytes(), ip.size());
	FakeFrag frag;
	EXPECT_TRUE(park.step(frag.lookup(), kT0).empty()) << "its first fragment not seen yet";
	EXPECT_EQ(frag.lookups, 1);

	frag.add(key_of(ip, KVX_BIND_OUT), kUplink, kT0 + 1000);
	// Not looked up again before its check is due (10 ms at first).
	EXPECT_TRUE(park.step(frag.lookup(), kT0 + 5000000).empty());
	EXPECT_EQ(frag.lookups, 1);
	EXPECT_EQ(park.wait_ms(kT0 + 5000000), 5);
	auto out = park.step(frag.lookup(), kT0 + 10000000);
	ASSERT_EQ(out.size(), 1u);
	EXPECT_EQ(park.size(), 0u);
	EXPECT_EQ(park.bytes(), 0u);
	EXPECT_EQ(park.wait_ms(kT0), -1);

	const FragSend &s = out[0];
	EXPECT_EQ(s.dir, KVX_BIND_OUT);
	EXPECT_EQ(s.dst_mac, (MacAddr{0x50, 0x51, 0x52, 0x53, 0x54, 0x11}));
	ASSERT_EQ(s.ip.size(), ip.size());
	uint32_t src, dst;
	std::memcpy(&src, &s.ip[12], 4);
	std::memcpy(&dst, &s.ip[16], 4);
	EXPECT_EQ(ntohl(src), kUplink) << "source: the external address";
	EXPECT_EQ(ntohl(dst), kRemote);
	EXPECT_EQ(s.ip[8], 63) << "forwarded: TTL one less";
	EXPECT_EQ(header_sum(s.ip), 0) << "IP header checksum valid";
	EXPECT_NE(std::memcmp(&s.ip[10], &ip[10], 2), 0) << "and computed anew";
	// Nothing else changes: id, flags and offset, protocol, the data.
	EXPECT_TRUE(std::equal(ip.begin() + 4, ip.begin() + 8, s.ip.begin() + 4));
	EXPECT_EQ(s.ip[9], ip[9]);
	EXPECT_TRUE(std::equal(ip.begin() + 20, ip.end(), s.ip.begin() + 20));
}

TEST(FragPark, InboundFragmentTranslatedToTheGuest)
{
	FragPark park;
	const Bytes ip = later_fragment(kRemote, kUplink, 0x4321);
	const Bytes rec = record(ip, KVX_BIND_IN);
	park.take(rec.data(), rec.size(), kT0);
	FakeFrag frag;
	frag.add(key_of(ip, KVX_BIND_IN), kGuest, kT0, 0x0a);
	auto out = park.step(frag.lookup(), kT0 + 1);
	ASSERT_EQ(out.size(), 1u);
	EXPECT_EQ(out[0].dir, KVX_BIND_IN);
	EXPECT_EQ(out[0].dst_mac[5], 0x0a);
	uint32_t src, dst;
	std::memcpy(&src, &out[0].ip[12], 4);
	std::memcpy(&dst, &out[0].ip[16], 4);
	EXPECT_EQ(ntohl(src), kRemote);
	EXPECT_EQ(ntohl(dst), kGuest) << "destination: the guest";
	EXPECT_EQ(header_sum(out[0].ip), 0);
}

TEST(FragPark, OnlyItsOwnDatagramsEntry)
{
	// Another id, another direction, another protocol: not its datagram.
	FragPark park;
	const Bytes ip = later_fragment(kGuest, kRemote, 0x1111);
	const Bytes rec = record(ip, KVX_BIND_OUT);
	park.take(rec.data(), rec.size(), kT0);
	FakeFrag frag;
	Bytes other = later_fragment(kGuest, kRemote, 0x1112);
	frag.add(key_of(other, KVX_BIND_OUT), kUplink, kT0);
	frag.add(key_of(ip, KVX_BIND_IN), kUplink, kT0);
	kvx_frag_key tcp = key_of(ip, KVX_BIND_OUT);
	tcp.proto = IPPROTO_TCP;
	frag.add(tcp, kUplink, kT0);
	EXPECT_TRUE(park.step(frag.lookup(), kT0).empty());
	EXPECT_EQ(park.size(), 1u);
}

TEST(FragPark, StaleEntryIsNotFollowed)
{
	// An entry older than the fragment lifetime is an earlier datagram's
	// with the same id, as the datapath's frag_lookup says.
	FragPark park;
	const Bytes ip = later_fragment(kGuest, kRemote, 0x2222);
	const Bytes rec = record(ip, KVX_BIND_OUT);
	park.take(rec.data(), rec.size(), kT0);
	FakeFrag frag;
	frag.add(key_of(ip, KVX_BIND_OUT), kUplink, kT0 - (KVX_FRAG_TIMEOUT_S + 1) * kSec);
	EXPECT_TRUE(park.step(frag.lookup(), kT0).empty());
	EXPECT_EQ(park.size(), 1u);
}

TEST(FragPark, ExpiresAfterTheFragmentLifetime)
{
	FragPark park;
	const Bytes ip = later_fragment(kGuest, kRemote, 0x3333);
	const Bytes rec = record(ip, KVX_BIND_OUT);
	park.take(rec.data(), rec.size(), kT0);
	FakeFrag frag;
	const uint64_t life = KVX_FRAG_TIMEOUT_S * kSec;
	EXPECT_TRUE(park.step(frag.lookup(), kT0 + life - 1).empty());
	EXPECT_EQ(park.size(), 1u);
	// Past its first second, looked for seldom (250 ms).
	EXPECT_EQ(park.wait_ms(kT0 + life - 1), 1) << "its expiry comes first";
	frag.add(key_of(ip, KVX_BIND_OUT), kUplink, kT0 + life);
	EXPECT_TRUE(park.step(frag.lookup(), kT0 + life).empty()) << "expired, never sent";
	EXPECT_EQ(park.size(), 0u);
	EXPECT_EQ(park.bytes(), 0u);
	auto c = park.take_counts();
	EXPECT_EQ(packets(c, KVX_R_FRAG_PARK_EXPIRED), 1u);
	EXPECT_EQ(c[KVX_R_FRAG_PARK_EXPIRED].bytes, ip.size() + 14);
	EXPECT_TRUE(park.take_counts().empty()) << "counts are taken once";
}

TEST(FragPark, FullParkGivesUpTheOldest)
{
	FragParkLimits l;
	l.max_frags = 4;
	FragPark park(l);
	FakeFrag frag;
	// Four sources, so that no source's share is what limits.
	for (uint16_t i = 0; i < 6; i++) {
		const Bytes ip = later_fragment(kGuest + i % 4, kRemote, 0x4000 + i);
		const Bytes rec = record(ip, KVX_BIND_OUT);
		park.take(rec.data(), rec.size(), kT0 + i);
		frag.add(key_of(ip, KVX_BIND_OUT), kUplink, kT0);
	}
	EXPECT_EQ(park.size(), 4u);
	EXPECT_EQ(packets(park.take_counts(), KVX_R_FRAG_PARK_FULL), 2u);
	auto out = park.step(frag.lookup(), kT0 + 10);
	ASSERT_EQ(out.size(), 4u);
	// The newest four: ids 0x4002..0x4005, in arrival order.
	for (size_t i = 0; i < 4; i++)
		EXPECT_EQ(out[i].ip[4] << 8 | out[i].ip[5], 0x4002 + static_cast<int>(i));
}

TEST(FragPark, BytesLimit)
{
	FragParkLimits l;
	l.max_bytes = 1000;
	FragPark park(l);
	for (uint16_t i = 0; i < 3; i++) {
		const Bytes ip = later_fragment(kGuest + i, kRemote, 0x5000 + i, 400);
		const Bytes rec = record(ip, KVX_BIND_OUT);
		park.take(rec.data(), rec.size(), kT0 + i);
	}
	EXPECT_EQ(park.size(), 2u);
	EXPECT_LE(park.bytes(), 1000u);
	EXPECT_EQ(packets(park.take_counts(), KVX_R_FRAG_PARK_FULL), 1u);
}

TEST(FragPark, OneSourceTakesOnlyItsShare)
{
	// A flooding source fills its share and then only replaces its own
	// oldest fragments: another source's fragment still finds room, and
	// so does a datagram the flooding source reorders now (its first
	// fragment is a moment behind), both sent once their first passes.
	FragParkLimits l;
	l.max_frags = 16;
	l.per_share = 4;
	FragPark park(l);
	for (uint16_t i = 0; i < 100; i++) {
		const Bytes ip = later_fragment(kRemote, kUplink, i);
		const Bytes rec = record(ip, KVX_BIND_IN);
		park.take(rec.data(), rec.size(), kT0 + i);
	}
	EXPECT_EQ(park.size(), 4u);
	EXPECT_EQ(packets(park.take_counts(), KVX_R_FRAG_PARK_FULL), 96u);
	const Bytes other = later_fragment(kRemote + 1, kUplink, 0x6000);
	Bytes rec = record(other, KVX_BIND_IN);
	park.take(rec.data(), rec.size(), kT0 + 200);
	const Bytes own = later_fragment(kRemote, kUplink, 0x6001);
	rec = record(own, KVX_BIND_IN);
	park.take(rec.data(), rec.size(), kT0 + 201);
	EXPECT_EQ(park.size(), 5u);
	EXPECT_EQ(packets(park.take_counts(), KVX_R_FRAG_PARK_FULL), 1u) << "the source's oldest";
	FakeFrag frag;
	frag.add(key_of(other, KVX_BIND_IN), kGuest, kT0 + 200);
	frag.add(key_of(own, KVX_BIND_IN), kGuest, kT0 + 201);
	frag.add(key_of(later_fragment(kRemote, kUplink, 96), KVX_BIND_IN), kGuest, kT0);
	auto out = park.step(frag.lookup(), kT0 + 202);
	ASSERT_EQ(out.size(), 2u) << "the flood's id 96 was given up for the newer one";
	EXPECT_EQ(out[0].ip[4] << 8 | out[0].ip[5], 0x6000);
	EXPECT_EQ(out[1].ip[4] << 8 | out[1].ip[5], 0x6001);
	// Each distinct datagram looked up once per step.
	EXPECT_EQ(frag.lookups, 5);
	EXPECT_EQ(park.size(), 3u);
}

TEST(FragPark, EachDirectionHasItsOwnRoom)
{
	// A guest's reordered fragment, then a flood of orphans from 300
	// sources on the uplink: the flood gives up its own oldest, never the
	// guest's fragment, which is sent once its first passes.
	FragPark park;
	const Bytes mine = later_fragment(kGuest, kRemote, 0x1357);
	Bytes rec = record(mine, KVX_BIND_OUT);
	park.take(rec.data(), rec.size(), kT0);
	for (uint16_t i = 0; i < 300; i++) {
		rec = record(later_fragment(kRemote + 1 + i, kUplink, 0x100 + i), KVX_BIND_IN);
		park.take(rec.data(), rec.size(), kT0 + 1 + i);
	}
	EXPECT_EQ(park.size(KVX_BIND_IN), 256u);
	EXPECT_EQ(park.size(KVX_BIND_OUT), 1u);
	EXPECT_EQ(packets(park.take_counts(), KVX_R_FRAG_PARK_FULL), 44u);
	FakeFrag frag;
	frag.add(key_of(mine, KVX_BIND_OUT), kUplink, kT0 + 1000);
	auto out = park.step(frag.lookup(), kT0 + 2000);
	ASSERT_EQ(out.size(), 1u);
	EXPECT_EQ(out[0].dir, KVX_BIND_OUT);
	EXPECT_EQ(out[0].ip[4] << 8 | out[0].ip[5], 0x1357);
}

TEST(FragPark, GuestShareIsItsMacNotItsAddresses)
{
	// One guest sending from four addresses fills one share; another
	// guest (another MAC) from the same addresses still finds room, and
	// so do the other direction's fragments from those addresses.
	FragParkLimits l;
	l.per_share = 8;
	FragPark park(l);
	for (uint16_t i = 0; i < 100; i++) {
		const Bytes rec =
			record(later_fragment(kGuest + i % 4, kRemote, i), KVX_BIND_OUT, 0x0a);
		park.take(rec.data(), rec.size(), kT0 + i);
	}
	EXPECT_EQ(park.size(KVX_BIND_OUT), 8u) << "one share for all its addresses";
	EXPECT_EQ(packets(park.take_counts(), KVX_R_FRAG_PARK_FULL), 92u);
	const Bytes other = later_fragment(kGuest, kRemote, 0x4000);
	Bytes rec = record(other, KVX_BIND_OUT, 0x0b);
	park.take(rec.data(), rec.size(), kT0 + 200);
	EXPECT_EQ(park.size(KVX_BIND_OUT), 9u);
	EXPECT_TRUE(park.take_counts().empty()) << "nothing given up for it";
	FakeFrag frag;
	frag.add(key_of(other, KVX_BIND_OUT), kUplink, kT0 + 200);
	auto out = park.step(frag.lookup(), kT0 + 201);
	ASSERT_EQ(out.size(), 1u);
	EXPECT_EQ(out[0].ip[4] << 8 | out[0].ip[5], 0x4000);
}

TEST(FragPark, HostsDatagramIsGivenUpUnsent)
{
	// Its first fragment went to the host (KVX_FRAG_HOST), as did this
	// fragment when it was parked: nothing to send, counted.
	FragPark park;
	const Bytes ip = later_fragment(kRemote, kUplink, 0x2468);
	const Bytes rec = record(ip, KVX_BIND_IN);
	park.take(rec.data(), rec.size(), kT0);
	FakeFrag frag;
	frag.add(key_of(ip, KVX_BIND_IN), 0, kT0 + 1000);
	EXPECT_TRUE(park.step(frag.lookup(), kT0 + 2000).empty());
	EXPECT_EQ(park.size(), 0u);
	EXPECT_EQ(park.bytes(), 0u);
	auto c = park.take_counts();
	EXPECT_EQ(packets(c, KVX_R_FRAG_PARK_HOST), 1u);
	EXPECT_EQ(c[KVX_R_FRAG_PARK_HOST].bytes, ip.size() + 14);
	EXPECT_EQ(packets(c, KVX_R_FRAG_REINJECT_FAILED), 0u);
}

TEST(FragPark, OnlyAFirstFragmentWithinTheReorderWindow)
{
	// A fragment joins a datagram whose first fragment passed within
	// 2 s of its parking, before or after; a first fragment 10 s later
	// (or 3 s earlier) with the same id is another datagram's: the
	// fragment is given up, never sent into it.
	struct Case {
		int64_t created_rel_ns;
		bool sent;
	};
	const Case cases[] = {
		{10 * static_cast<int64_t>(kSec), false},
		{-3 * static_cast<int64_t>(kSec), false},
		{static_cast<int64_t>(KVX_FRAG_REORDER_NS) - 1000, true},
		{-static_cast<int64_t>(KVX_FRAG_REORDER_NS) + 1000, true},
		{static_cast<int64_t>(KVX_FRAG_REORDER_NS) + 1000, false},
	};
	for (const Case &c : cases) {
		FragPark park;
		const Bytes ip = later_fragment(kRemote, kUplink, 0x3579);
		const Bytes rec = record(ip, KVX_BIND_IN);
		park.take(rec.data(), rec.size(), kT0);
		FakeFrag frag;
		const uint64_t created = kT0 + static_cast<uint64_t>(c.created_rel_ns);
		frag.add(key_of(ip, KVX_BIND_IN), kGuest, created);
		const uint64_t now = std::max(created, kT0) + 1;
		EXPECT_EQ(park.step(frag.lookup(), now).size(), c.sent ? 1u : 0u)
			<< "entry made " << c.created_rel_ns << " ns from the parking";
		EXPECT_EQ(park.size(), 0u);
		EXPECT_EQ(packets(park.take_counts(), KVX_R_FRAG_PARK_STALE), c.sent ? 0u : 1u);
	}
}

TEST(FragDstMac, EntryMacElseNextHopOutElseGuestNeighbourIn)
{
	const MacAddr entry{0x50, 0x51, 0x52, 0x53, 0x54, 0x55};
	const MacAddr hop{0x02, 0, 0, 0, 0, 0x01};
	const MacAddr guest{0x52, 0x54, 0, 0, 0, 0x0a};
	std::vector<std::pair<int, uint32_t>> hops, neighs;
	const FragMacOf next_hop = [&](int ifindex, uint32_t a) -> std::optional<MacAddr> {
		hops.emplace_back(ifindex, ntohl(a));
		return hop;
	};
	const FragMacOf neighbour = [&](int ifindex, uint32_t a) -> std::optional<MacAddr> {
		neighs.emplace_back(ifindex, ntohl(a));
		if (ntohl(a) == kGuest)
			return guest;
		return std::nullopt;
	};
	const FragMacSources macs{next_hop, neighbour, {}, {}};
	FragMacCache cache;
	FragSend out;
	out.dir = KVX_BIND_OUT;
	out.ip = later_fragment(kUplink, kRemote, 1);
	out.dst_mac = entry;
	EXPECT_EQ(frag_dst_mac(out, 3, macs, cache), entry) << "the entry's";
	EXPECT_TRUE(hops.empty() && neighs.empty());

	out.dst_mac = {};
	EXPECT_EQ(frag_dst_mac(out, 3, macs, cache), hop);
	EXPECT_EQ(frag_dst_mac(out, 3, macs, cache), hop);
	ASSERT_EQ(hops.size(), 1u) << "once per destination in one step";
	EXPECT_EQ(hops[0], std::make_pair(3, kRemote));

	// Inbound without the guest's MAC (a mapping's first fragment before
	// the guest's MAC was learnt): the guest's neighbour entry on the
	// bridge, never a gateway.
	FragSend in;
	in.dir = KVX_BIND_IN;
	in.ip = later_fragment(kRemote, kGuest, 2);
	EXPECT_EQ(frag_dst_mac(in, 7, macs, cache), guest);
	ASSERT_EQ(neighs.size(), 1u);
	EXPECT_EQ(neighs[0], std::make_pair(7, kGuest));
	in.ip = later_fragment(kRemote, kGuest + 1, 3);
	EXPECT_EQ(frag_dst_mac(in, 7, macs, cache), std::nullopt) << "no neighbour entry: not sent";
	EXPECT_EQ(hops.size(), 1u) << "no next hop asked for inbound";
	EXPECT_EQ(frag_dst_mac(in, 7, FragMacSources{next_hop, {}, {}, {}}, cache), std::nullopt);

	// A step with fragments to many destinations: kFragLookupsPerStep
	// lookups, then no MAC (those already looked up still answered).
	FragMacCache many;
	hops.clear();
	out.dst_mac = {};
	for (uint32_t i = 0; i < 100; i++) {
		out.ip = later_fragment(kUplink, kRemote + i, 4);
		const auto mac = frag_dst_mac(out, 3, macs, many);
		EXPECT_EQ(mac.has_value(), i < kFragLookupsPerStep) << i;
	}
	EXPECT_EQ(hops.size(), kFragLookupsPerStep);
	out.ip = later_fragment(kUplink, kRemote, 5);
	EXPECT_EQ(frag_dst_mac(out, 3, macs, many), hop);
}

TEST(FragPark, RecordsThatAreNoLaterFragmentAreIgnored)
{
	FragPark park;
	Bytes first = later_fragment(kGuest, kRemote, 0x7000);
	first[6] = 0x20; // MF, offset 0: a first fragment
	first[7] = 0;
	Bytes v6 = later_fragment(kGuest, kRemote, 0x7001);
	v6[0] = 0x65;
	Bytes short_len = later_fragment(kGuest, kRemote, 0x7002);
	short_len[3] = static_cast<uint8_t>(short_len[3] + 1); // tot_len beyond the record
	for (const Bytes &ip : {first, v6, short_len}) {
		const Bytes rec = record(ip, KVX_BIND_OUT);
		park.take(rec.data(), rec.size(), kT0);
	}
	Bytes rec = record(later_fragment(kGuest, kRemote, 0x7003), 7); // no direction
	park.take(rec.data(), rec.size(), kT0);
	park.take(rec.data(), 4, kT0); // truncated record
	EXPECT_EQ(park.size(), 0u);
	EXPECT_EQ(packets(park.take_counts(), KVX_R_FRAG_REINJECT_FAILED), 5u);
}

TEST(FragPark, TranslateRefusesAnExpiringTtl)
{
	Bytes ip = later_fragment(kGuest, kRemote, 0x8000, 40, 1);
	EXPECT_FALSE(frag_translate(ip, KVX_BIND_OUT, htonl(kUplink)));
	ip = later_fragment(kGuest, kRemote, 0x8000, 40, 2);
	EXPECT_TRUE(frag_translate(ip, KVX_BIND_OUT, htonl(kUplink)));
	EXPECT_EQ(ip[8], 1);
	EXPECT_EQ(header_sum(ip), 0);
}

TEST(FragPark, ChecksumWithOptions)
{
	// A 24-byte header (one option word): the checksum covers all of it.
	Bytes ip = later_fragment(kRemote, kUplink, 0x9000);
	ip.insert(ip.begin() + 20, {0x01, 0x01, 0x01, 0x00}); // NOPs, EOL
	ip[0] = 0x46;
	ip[3] = static_cast<uint8_t>(ip.size());
	ASSERT_TRUE(frag_translate(ip, KVX_BIND_IN, htonl(kGuest)));
	EXPECT_EQ(header_sum(ip), 0);
	uint32_t dst;
	std::memcpy(&dst, &ip[16], 4);
	EXPECT_EQ(ntohl(dst), kGuest);
}

// --- IPv6 ---

const Ipv6Addr kGuest6{0xfd, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a};
const Ipv6Addr kRemote6{0x20, 0x01, 0x0d, 0xb8, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10};
const Ipv6Addr kUplink6{0x20, 0x01, 0x0d, 0xb8, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02};

// An IPv6 later fragment (offset 72 bytes, M clear) of a UDP datagram with
// `data` bytes, after the extension headers `before` (each 8 bytes: hop
// by hop, destination options or routing, PadN inside).
Bytes later_fragment6(const Ipv6Addr &src, const Ipv6Addr &dst, uint32_t id, size_t data = 40,
		      uint8_t hop_limit = 64, const std::vector<uint8_t> &before = {},
		      uint8_t proto = IPPROTO_UDP)
{
	Bytes b(40);
	b[0] = 0x60;
	b[7] = hop_limit;
	std::memcpy(&b[8], src.data(), 16);
	std::memcpy(&b[24], dst.data(), 16);
	size_t nh_at = 6;
	for (uint8_t type : before) {
		b[nh_at] = type;
		nh_at = b.size();
		const uint8_t h[8] = {0, 0, 1, 4, 0, 0, 0, 0}; // PadN
		b.insert(b.end(), h, h + 8);
	}
	b[nh_at] = 44; // Fragment
	const uint8_t f[8] = {proto,
			      0,
			      0,
			      9 << 3,
			      static_cast<uint8_t>(id >> 24),
			      static_cast<uint8_t>(id >> 16),
			      static_cast<uint8_t>(id >> 8),
			      static_cast<uint8_t>(id)};
	b.insert(b.end(), f, f + 8);
	for (size_t i = 0; i < data; i++)
		b.push_back(static_cast<uint8_t>(0xb0 + i));
	b[4] = static_cast<uint8_t>((b.size() - 40) >> 8);
	b[5] = static_cast<uint8_t>(b.size() - 40);
	return b;
}

// The key the datapath's frag6_remember makes for ip's datagram (a
// later_fragment6 with `before` extension headers ahead of its Fragment
// header).
kvx_frag6_key key6_of(const Bytes &ip, uint8_t dir, size_t before = 0)
{
	const size_t frag = 40 + 8 * before;
	kvx_frag6_key k{};
	std::memcpy(k.saddr, &ip[8], 16);
	std::memcpy(k.daddr, &ip[24], 16);
	std::memcpy(&k.id, &ip[frag + 4], 4);
	k.proto = ip[frag];
	k.dir = dir;
	return k;
}

// kvx_frag6 as the datapath would have it.
struct FakeFrag6 {
	std::vector<std::pair<kvx_frag6_key, kvx_frag6_val>> entries;
	int lookups = 0;
	void add(const kvx_frag6_key &k, const Ipv6Addr &addr, uint64_t created_ns,
		 uint8_t guest_last = 0x0a, uint8_t gw_last = 0x77)
	{
		kvx_frag6_val v{};
		std::memcpy(v.addr, addr.data(), 16);
		const uint8_t guest[6] = {0x52, 0x54, 0x00, 0x00, 0x00, guest_last};
		std::memcpy(v.guest_mac, guest, 6);
		const uint8_t gw[6] = {0x02, 0, 0, 0, 0, gw_last};
		std::memcpy(v.gw_mac, gw, 6);
		v.created_ns = created_ns;
		entries.emplace_back(k, v);
	}
	FragPark::Lookup6 lookup()
	{
		return [this](const kvx_frag6_key &k) -> std::optional<kvx_frag6_val> {
			lookups++;
			for (const auto &[ek, ev] : entries)
				if (std::memcmp(&ek, &k, sizeof(k)) == 0)
					return ev;
			return std::nullopt;
		};
	}
};

TEST(FragPark6, OutboundFragmentTranslatedOnceItsFirstPassed)
{
	FragPark park;
	// Behind a hop-by-hop and a destination options header, as the
	// datapath's walk takes them.
	const Bytes ip = later_fragment6(kGuest6, kRemote6, 0xabcd0001, 40, 64, {0, 60});
	const Bytes rec = record(ip, KVX_BIND_OUT);
	park.take(rec.data(), rec.size(), kT0);
	ASSERT_EQ(park.size(), 1u);
	FakeFrag frag4;
	FakeFrag6 frag;
	EXPECT_TRUE(park.step(frag4.lookup(), frag.lookup(), kT0).empty());
	EXPECT_EQ(frag.lookups, 1);
	EXPECT_EQ(frag4.lookups, 0) << "an IPv6 datagram is not looked for in kvx_frag";

	kvx_frag6_key k{};
	std::memcpy(k.saddr, kGuest6.data(), 16);
	std::memcpy(k.daddr, kRemote6.data(), 16);
	k.id = htonl(0xabcd0001);
	k.proto = IPPROTO_UDP;
	k.dir = KVX_BIND_OUT;
	const kvx_frag6_key walked = key6_of(ip, KVX_BIND_OUT, 2);
	EXPECT_EQ(std::memcmp(&k, &walked, sizeof(k)), 0);
	frag.add(k, kUplink6, kT0 + 1000);
	auto out = park.step(frag4.lookup(), frag.lookup(), kT0 + 10000000);
	ASSERT_EQ(out.size(), 1u);
	EXPECT_EQ(park.size(), 0u);
	const FragSend &s = out[0];
	EXPECT_TRUE(s.v6());
	EXPECT_EQ(s.dir, KVX_BIND_OUT);
	EXPECT_EQ(s.dst_mac, (MacAddr{0x02, 0, 0, 0, 0, 0x77}))
		<< "the next hop its first fragment went to";
	ASSERT_EQ(s.ip.size(), ip.size());
	EXPECT_TRUE(std::equal(kUplink6.begin(), kUplink6.end(), s.ip.begin() + 8))
		<< "source: the external address";
	EXPECT_TRUE(std::equal(kRemote6.begin(), kRemote6.end(), s.ip.begin() + 24));
	EXPECT_EQ(s.ip[7], 63) << "forwarded: hop limit one less";
	// Nothing else changes: the first word, the length, the chain, the data.
	EXPECT_TRUE(std::equal(ip.begin(), ip.begin() + 7, s.ip.begin()));
	EXPECT_TRUE(std::equal(ip.begin() + 40, ip.end(), s.ip.begin() + 40));
}

TEST(FragPark6, InboundFragmentTranslatedToTheGuestOrGivenUpForTheHost)
{
	FragPark park;
	const Bytes ip = later_fragment6(kRemote6, kUplink6, 0x51);
	const Bytes host = later_fragment6(kRemote6, kUplink6, 0x52);
	for (const Bytes &b : {ip, host}) {
		const Bytes rec = record(b, KVX_BIND_IN);
		park.take(rec.data(), rec.size(), kT0);
	}
	FakeFrag6 frag;
	frag.add(key6_of(ip, KVX_BIND_IN), kGuest6, kT0, 0x0b);
	frag.add(key6_of(host, KVX_BIND_IN), Ipv6Addr{}, kT0);
	auto out = park.step(FakeFrag().lookup(), frag.lookup(), kT0 + 1);
	ASSERT_EQ(out.size(), 1u);
	EXPECT_EQ(out[0].dir, KVX_BIND_IN);
	EXPECT_EQ(out[0].dst_mac, (MacAddr{0x52, 0x54, 0, 0, 0, 0x0b})) << "the guest's";
	EXPECT_TRUE(std::equal(kRemote6.begin(), kRemote6.end(), out[0].ip.begin() + 8));
	EXPECT_TRUE(std::equal(kGuest6.begin(), kGuest6.end(), out[0].ip.begin() + 24))
		<< "destination: the guest";
	EXPECT_EQ(out[0].ip[7], 63);
	EXPECT_TRUE(std::equal(ip.begin() + 40, ip.end(), out[0].ip.begin() + 40));
	EXPECT_EQ(park.size(), 0u);
	auto c = park.take_counts();
	EXPECT_EQ(packets(c, KVX_R_FRAG_PARK_HOST), 1u) << "its first went to the host";
}

TEST(FragPark6, GuestFragmentOfAnotherMacIsNotSent)
{
	// A guest's datagram's first fragment came from MAC ..:0a; a later
	// fragment parked from ..:0c with the same addresses and id: dropped
	// as the datapath drops it (frag6_find), never sent.
	FragPark park;
	const Bytes ip = later_fragment6(kGuest6, kRemote6, 0x61);
	const Bytes rec = record(ip, KVX_BIND_OUT, 0x0c);
	park.take(rec.data(), rec.size(), kT0);
	FakeFrag6 frag;
	frag.add(key6_of(ip, KVX_BIND_OUT), kUplink6, kT0, 0x0a);
	EXPECT_TRUE(park.step(FakeFrag().lookup(), frag.lookup(), kT0 + 1).empty());
	EXPECT_EQ(park.size(), 0u);
	EXPECT_EQ(packets(park.take_counts(), KVX_R_DROP_SPOOF_MAC), 1u);
}

TEST(FragPark6, InboundShareIsTheSourcesSlash64)
{
	// One LAN host may send from every address of its /64: its flood
	// fills one share; another /64's fragment still finds room.
	FragParkLimits l;
	l.per_share = 4;
	FragPark park(l);
	for (uint16_t i = 0; i < 50; i++) {
		Ipv6Addr src = kRemote6;
		src[14] = static_cast<uint8_t>(i >> 8);
		src[15] = static_cast<uint8_t>(i);
		const Bytes rec = record(later_fragment6(src, kUplink6, i), KVX_BIND_IN);
		park.take(rec.data(), rec.size(), kT0 + i);
	}
	EXPECT_EQ(park.size(), 4u);
	EXPECT_EQ(packets(park.take_counts(), KVX_R_FRAG_PARK_FULL), 46u);
	Ipv6Addr other = kRemote6;
	other[7] = 1; // another /64
	const Bytes rec = record(later_fragment6(other, kUplink6, 0x99), KVX_BIND_IN);
	park.take(rec.data(), rec.size(), kT0 + 100);
	EXPECT_EQ(park.size(), 5u);
	EXPECT_EQ(packets(park.take_counts(), KVX_R_FRAG_PARK_FULL), 0u);
}

TEST(FragPark6, Ipv4SourceAndIpv6PrefixNeverShare)
{
	// 2001:db8::/64's first 64 bits end in 32 zero bits: read as a
	// number they are IPv4's 32.1.13.184.  A flood from that /64 fills
	// its own share, not that IPv4 host's.
	FragParkLimits l;
	l.per_share = 4;
	FragPark park(l);
	const Ipv6Addr prefix = parse_ipv6("2001:db8::");
	for (uint16_t i = 0; i < 10; i++) {
		Ipv6Addr src = prefix;
		src[15] = static_cast<uint8_t>(i + 1);
		const Bytes rec = record(later_fragment6(src, kUplink6, i), KVX_BIND_IN);
		park.take(rec.data(), rec.size(), kT0 + i);
	}
	EXPECT_EQ(park.size(), 4u);
	EXPECT_EQ(packets(park.take_counts(), KVX_R_FRAG_PARK_FULL), 6u);
	const Bytes rec = record(later_fragment(0x20010db8, kUplink, 0x77), KVX_BIND_IN);
	park.take(rec.data(), rec.size(), kT0 + 100);
	EXPECT_EQ(park.size(), 5u);
	EXPECT_EQ(packets(park.take_counts(), KVX_R_FRAG_PARK_FULL), 0u)
		<< "the IPv4 host's fragment took nothing of the /64's";
}

TEST(FragPark6, RecordsThatAreNoLaterFragmentAreIgnored)
{
	FragPark park;
	Bytes first = later_fragment6(kGuest6, kRemote6, 0x71);
	first[40 + 2] = 0;
	first[40 + 3] = 1; // offset 0, M: a first fragment
	Bytes long_len = later_fragment6(kGuest6, kRemote6, 0x72);
	long_len[5]++; // payload length beyond the record
	// Destination options after the Fragment header: the datapath walks
	// on into the fragment's data, so its key is not this one.
	const Bytes opts_after = later_fragment6(kGuest6, kRemote6, 0x73, 40, 64, {}, 60);
	// A hop-by-hop header that is not the first.
	const Bytes hbh_second = later_fragment6(kGuest6, kRemote6, 0x74, 40, 64, {60, 0});
	Bytes no_fragment = later_fragment6(kGuest6, kRemote6, 0x75);
	no_fragment[6] = IPPROTO_UDP; // no Fragment header at all
	for (const Bytes &ip : {first, long_len, opts_after, hbh_second, no_fragment}) {
		const Bytes rec = record(ip, KVX_BIND_OUT);
		park.take(rec.data(), rec.size(), kT0);
	}
	EXPECT_EQ(park.size(), 0u);
	EXPECT_EQ(packets(park.take_counts(), KVX_R_FRAG_REINJECT_FAILED), 5u);
	// Routing and destination options before it: taken.
	const Bytes rec =
		record(later_fragment6(kGuest6, kRemote6, 0x76, 40, 64, {60, 43}), KVX_BIND_OUT);
	park.take(rec.data(), rec.size(), kT0);
	EXPECT_EQ(park.size(), 1u);
}

TEST(FragPark6, TranslateRefusesAnExpiringHopLimit)
{
	Bytes ip = later_fragment6(kRemote6, kUplink6, 0x81, 40, 1);
	EXPECT_FALSE(frag_translate6(ip, KVX_BIND_IN, kGuest6));
	ip = later_fragment6(kRemote6, kUplink6, 0x81, 40, 2);
	EXPECT_TRUE(frag_translate6(ip, KVX_BIND_IN, kGuest6));
	EXPECT_EQ(ip[7], 1);
}

TEST(FragPark6, WithoutAnIpv6LookupItWaitsAndExpires)
{
	FragPark park;
	const Bytes rec = record(later_fragment6(kGuest6, kRemote6, 0x91), KVX_BIND_OUT);
	park.take(rec.data(), rec.size(), kT0);
	FakeFrag frag;
	EXPECT_TRUE(park.step(frag.lookup(), kT0 + 1).empty());
	EXPECT_EQ(park.size(), 1u);
	EXPECT_EQ(frag.lookups, 0);
	park.step(frag.lookup(), kT0 + uint64_t{KVX_FRAG_TIMEOUT_S} * kSec);
	EXPECT_EQ(park.size(), 0u);
	EXPECT_EQ(packets(park.take_counts(), KVX_R_FRAG_PARK_EXPIRED), 1u);
}

TEST(FragDstMac, Ipv6NextHopOutGuestNeighbourInSharedLimit)
{
	const MacAddr router{0x02, 0, 0, 0, 0, 0x01};
	const MacAddr guest{0x52, 0x54, 0, 0, 0, 0x0a};
	std::vector<Ipv6Addr> hops, neighs;
	FragMacSources macs;
	macs.next_hop = [&](int, uint32_t) -> std::optional<MacAddr> { return router; };
	macs.next_hop6 = [&](int ifindex, const Ipv6Addr &a) -> std::optional<MacAddr> {
		EXPECT_EQ(ifindex, 3);
		hops.push_back(a);
		return router;
	};
	macs.neighbour6 = [&](int ifindex, const Ipv6Addr &a) -> std::optional<MacAddr> {
		EXPECT_EQ(ifindex, 7);
		neighs.push_back(a);
		return a == kGuest6 ? std::optional<MacAddr>(guest) : std::nullopt;
	};
	FragMacCache cache;
	FragSend out;
	out.dir = KVX_BIND_OUT;
	out.ip = later_fragment6(kUplink6, kRemote6, 1);
	EXPECT_EQ(frag_dst_mac(out, 3, macs, cache), router);
	EXPECT_EQ(frag_dst_mac(out, 3, macs, cache), router);
	ASSERT_EQ(hops.size(), 1u) << "once per destination in one step";
	EXPECT_EQ(hops[0], kRemote6);
	FragSend in;
	in.dir = KVX_BIND_IN;
	in.ip = later_fragment6(kRemote6, kGuest6, 2);
	EXPECT_EQ(frag_dst_mac(in, 7, macs, cache), guest);
	ASSERT_EQ(neighs.size(), 1u);
	EXPECT_EQ(neighs[0], kGuest6);
	// IPv4 and IPv6 destinations count against one limit per step.
	for (uint32_t i = 0; i < 100; i++) {
		FragSend s;
		s.dir = KVX_BIND_OUT;
		s.ip = i % 2 ? later_fragment(kUplink, kRemote + i, 4) :
			       later_fragment6(kUplink6,
					       Ipv6Addr{0x20, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
							0, 1, static_cast<uint8_t>(i)},
					       4);
		frag_dst_mac(s, 3, macs, cache);
	}
	EXPECT_EQ(cache.size(), kFragLookupsPerStep);
}

} // namespace
} // namespace kvmxdp
