// IPv4 later fragments that arrive before their first (RFC 4787 REQ-14):
// the datapath's half of the park.  Such a fragment is copied whole into
// the ring kvx_fragq (kvx_fragq_rec: the IPv4 packet and its direction)
// and dropped (from a guest: never out with its private source) or also
// handed to the host (from the uplink: it may be the host's).  The daemon's
// half (park, rewrite, send) is tested in tests/loader/frag_park_test.cpp
// and end to end in vm-tests/frag_order.sh.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <cstring>

#include "fixture.hpp"

namespace kvmxdp::test {
namespace {

using namespace testpkt;

class FragParkTest : public BrIngressTest {
protected:
	RunResult run_up(const Packet &in, int verdict, kvx_reason reason,
			 const std::optional<Packet> &want = std::nullopt)
	{
		return run_case(dp(), Prog::UpIngress, in, verdict, reason, want);
	}
};

// A later fragment (offset 72 bytes) of a UDP datagram, 40 bytes of data.
Packet later_fragment(std::uint32_t src, std::uint32_t dst, std::uint16_t id)
{
	Packet p = make_ip_proto(src, dst, kProtoUdp, 40);
	p.payload = pattern(40, 0x5a);
	p.df = false;
	p.ip_id = id;
	p.frag_offset = 9;
	p.raw_l4 = true; // later fragment: no L4 header
	return p;
}

Mac mac_of(const __u8 (&m)[6])
{
	Mac out;
	std::memcpy(out.data(), m, 6);
	return out;
}

// The one record the ring holds: p's IPv4 packet as sent, in direction dir.
void expect_parked(Datapath &dp, const Packet &p, std::uint8_t dir)
{
	auto recs = dp.fragq_drain();
	ASSERT_EQ(recs.size(), 1u);
	const Bytes frame = p.build();
	const Bytes ip(frame.begin() + 14, frame.end());
	ASSERT_EQ(recs[0].size(), sizeof(kvx_fragq_rec));
	kvx_fragq_hdr h;
	std::memcpy(&h, recs[0].data(), sizeof(h));
	EXPECT_EQ(h.len, ip.size());
	EXPECT_EQ(h.dir, dir);
	const Bytes data(recs[0].begin() + sizeof(h), recs[0].begin() + sizeof(h) + h.len);
	EXPECT_EQ(data, ip) << "the record holds the packet's bytes as they came";
}

TEST_F(FragParkTest, GuestFragmentAheadOfItsFirstIsParkedAndDropped)
{
	const Packet later = from_guest(later_fragment(kGuestA, kRemote1, 0x6161));
	run_br(later, TC_ACT_SHOT, KVX_R_FRAG_PARKED);
	expect_parked(dp(), later, KVX_BIND_OUT);
	EXPECT_TRUE(dp().frag_entries().empty());
}

TEST_F(FragParkTest, InboundFragmentAheadOfItsFirstIsParkedAndPassed)
{
	// It may be the host's own datagram: the host gets it too.
	Packet later = from_uplink(later_fragment(kRemote1, Topology::kUplinkAddr, 0x6262));
	run_up(later, TC_ACT_OK, KVX_R_FRAG_PARKED_HOST);
	expect_parked(dp(), later, KVX_BIND_IN);
}

TEST_F(FragParkTest, InboundFragmentWhoseTtlExpiresIsNotParked)
{
	Packet later = from_uplink(later_fragment(kRemote1, Topology::kUplinkAddr, 0x6363));
	later.ttl = 1;
	run_up(later, TC_ACT_OK, KVX_R_PASS_HOST);
	EXPECT_TRUE(dp().fragq_drain().empty());
}

TEST_F(FragParkTest, WellOrderedDatagramParksNothing)
{
	// First fragment first: translated, remembered with the MACs of its
	// route (the daemon sends a parked fragment of it with them), and the
	// later fragment follows it without the ring.
	Packet first = from_guest(make_udp(kGuestA, 40050, kRemote1, 53, 64));
	first.mf = true;
	first.df = false;
	first.ip_id = 0x6464;
	translate_out(first);
	const Packet later = from_guest(later_fragment(kGuestA, kRemote1, 0x6464));
	run_br(later, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, snat(later, 0));
	EXPECT_TRUE(dp().fragq_drain().empty());
	auto frags = dp().frag_entries();
	ASSERT_EQ(frags.size(), 1u);
	EXPECT_EQ(frags[0].first.dir, KVX_BIND_OUT);
	EXPECT_EQ(mac_of(frags[0].second.guest_mac), Topology::kGatewayMac) << "next hop";
	EXPECT_EQ(mac_of(frags[0].second.gw_mac), Topology::kUplinkMac) << "the uplink's";
}

TEST_F(FragParkTest, ParkedFragmentsFirstTranslatesTheRest)
{
	// The parked fragment's datagram goes on as usual once its first
	// fragment passes: the daemon finds this kvx_frag entry.
	const Packet later = from_guest(later_fragment(kGuestA, kRemote1, 0x6565));
	run_br(later, TC_ACT_SHOT, KVX_R_FRAG_PARKED);
	Packet first = from_guest(make_udp(kGuestA, 40051, kRemote1, 53, 64));
	first.mf = true;
	first.df = false;
	first.ip_id = 0x6565;
	translate_out(first);
	auto frags = dp().frag_entries();
	ASSERT_EQ(frags.size(), 1u);
	EXPECT_EQ(frags[0].first.saddr, be32(kGuestA));
	EXPECT_EQ(frags[0].first.daddr, be32(kRemote1));
	EXPECT_EQ(frags[0].first.id, be16(0x6565));
	EXPECT_EQ(frags[0].second.addr, be32(Topology::kUplinkAddr));
	run_br(later, TC_ACT_REDIRECT, KVX_R_XLATE_OUT, snat(later, 0));
	expect_parked(dp(), later, KVX_BIND_OUT);
}

TEST_F(FragParkTest, FullRingFallsBackToDrop)
{
	// Bounded: the ring holds what its size holds, then the fragments are
	// dropped as before the park (DROP_FRAGMENT), never sent untranslated;
	// unfragmented traffic goes on meanwhile.
	const std::size_t fits = KVX_FRAGQ_BYTES / (sizeof(kvx_fragq_rec) + 8);
	const std::size_t sent = fits + 8;
	const Stats before = dp().stats();
	for (std::size_t i = 0; i < sent; i++) {
		const Packet later = from_guest(
			later_fragment(kGuestA, kRemote1, static_cast<std::uint16_t>(0x7000 + i)));
		RunResult r =
			dp().run(Prog::BrIngress, later.build(), ingress_ifindex(Prog::BrIngress));
		ASSERT_EQ(r.verdict, TC_ACT_SHOT);
	}
	const Stats s = dp().stats();
	auto delta = [&](kvx_reason r) {
		return s.by_reason[r].packets - before.by_reason[r].packets;
	};
	const std::uint64_t parked = delta(KVX_R_FRAG_PARKED);
	EXPECT_GE(parked, fits - 1);
	EXPECT_LE(parked, fits);
	EXPECT_EQ(parked + delta(KVX_R_DROP_FRAGMENT), sent);
	translate_out(from_guest(make_udp(kGuestA, 40052, kRemote1, 53, 64)));
	EXPECT_EQ(dp().fragq_drain().size(), parked);
	// Drained: room again.
	run_br(from_guest(later_fragment(kGuestA, kRemote1, 0x6666)), TC_ACT_SHOT,
	       KVX_R_FRAG_PARKED);
}

} // namespace
} // namespace kvmxdp::test
