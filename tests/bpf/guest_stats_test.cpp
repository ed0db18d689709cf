// Per-guest counters (kvx_gstats, bpf/lib/stats.h): real frames through the
// TC programs, then the guest's slot read back and compared with what was
// sent: packets and frame bytes each way, drops under their class, nothing
// charged to a guest for what kvmxdp hands to the host, and another guest's
// slot untouched.
#include <linux/pkt_cls.h>

#include "fixture.hpp"

namespace kvmxdp::test {
namespace {

using namespace testpkt;

class GuestStatsTest : public UpIngressTest {
protected:
	void SetUp() override
	{
		UpIngressTest::SetUp();
		own_address(dp(), kGuestA);
		own_address(dp(), kGuestB);
		ASSERT_NE(dp().gstats_slot(kGuestA) & (KVX_GSTATS_SLOTS - 1),
			  dp().gstats_slot(kGuestB) & (KVX_GSTATS_SLOTS - 1))
			<< "the two guests share a counter slot with this seed";
	}
	static std::uint64_t drops(const kvx_gstat &g)
	{
		std::uint64_t n = 0;
		for (int i = 0; i < KVX_GD_MAX; i++)
			n += g.drops[i];
		return n;
	}
};

TEST_F(GuestStatsTest, TranslatedPacketsAndBytesEachWay)
{
	const Stats s0 = dp().stats(); // kvx_stats is not cleared between tests
	std::uint64_t out_bytes = 0;
	Packet sent;
	for (std::size_t len : {16u, 100u, 1000u}) {
		const Packet p = from_guest(make_udp(kGuestA, 40000, kRemote1, 53, len));
		out_bytes += p.build().size();
		sent = establish(p);
	}
	const Packet reply = from_uplink(reply_to(sent));
	const Bytes reply_frame = reply.build();
	const Packet delivered = dnat(reply, kGuestA, 40000);
	run_up(reply, TC_ACT_REDIRECT, KVX_R_XLATE_IN, delivered);
	run_up(reply, TC_ACT_REDIRECT, KVX_R_XLATE_IN, delivered);

	const kvx_gstat a = dp().gstats(kGuestA);
	EXPECT_EQ(a.pkts_out, 3u);
	EXPECT_EQ(a.bytes_out, out_bytes);
	EXPECT_EQ(a.pkts_in, 2u);
	EXPECT_EQ(a.bytes_in, 2 * reply_frame.size());
	EXPECT_EQ(drops(a), 0u);
	// Equal to the verdict counters: these were the only packets.
	const Stats s = dp().stats();
	EXPECT_EQ(s.by_reason[KVX_R_XLATE_OUT].bytes - s0.by_reason[KVX_R_XLATE_OUT].bytes,
		  a.bytes_out);
	EXPECT_EQ(s.by_reason[KVX_R_XLATE_IN].bytes - s0.by_reason[KVX_R_XLATE_IN].bytes,
		  a.bytes_in);

	const kvx_gstat b = dp().gstats(kGuestB);
	EXPECT_EQ(b.pkts_out + b.pkts_in + b.bytes_out + b.bytes_in + drops(b), 0u)
		<< "another guest's slot moved";
}

TEST_F(GuestStatsTest, DropsCountedUnderTheirClass)
{
	kvx_cfg c = dp().cfg();
	c.flow_quota = 1;
	dp().set_cfg(c);
	establish(from_guest(make_udp(kGuestA, 40000, kRemote1, 53)));
	const Packet over = from_guest(make_udp(kGuestA, 40001, kRemote1, 53));
	run_case(dp(), Prog::BrIngress, over, TC_ACT_SHOT, KVX_R_DROP_GUEST_QUOTA);
	const kvx_gstat a = dp().gstats(kGuestA);
	EXPECT_EQ(a.pkts_out, 1u);
	EXPECT_EQ(a.drops[KVX_GD_QUOTA], 1u);
	EXPECT_EQ(drops(a), 1u);
}

// A frame with B's MAC and A's address: dropped as spoofing, charged to
// the sender (B's MAC), not to A whose address it used.
TEST_F(GuestStatsTest, SpoofChargedToTheSendingMac)
{
	Packet p = from_guest(make_udp(kGuestA, 40000, kRemote1, 53));
	p.src_mac = kGuestBMac;
	run_case(dp(), Prog::BrIngress, p, TC_ACT_SHOT, KVX_R_DROP_SPOOF_MAC);
	EXPECT_EQ(dp().gstats(kGuestB).drops[KVX_GD_SPOOF], 1u);
	EXPECT_EQ(drops(dp().gstats(kGuestA)), 0u);
	EXPECT_EQ(dp().gstats(kGuestA).pkts_out, 0u);
}

// Handed to the host (TTL 1: the stack sends time exceeded) is not the
// guest's translated traffic; and the mark it set is gone: a drop on the
// uplink right after is charged to nobody.
TEST_F(GuestStatsTest, PassedToHostNotCharged)
{
	Packet p = from_guest(make_udp(kGuestA, 40000, kRemote1, 53));
	p.ttl = 1;
	run_case(dp(), Prog::BrIngress, p, TC_ACT_OK, KVX_R_PASS_TTL);
	run_up(from_uplink(make_udp(kRemote1, 53, kGuestB, 40000)), TC_ACT_SHOT,
	       KVX_R_DROP_TO_SUBNET);
	for (std::uint32_t g : {kGuestA, kGuestB}) {
		const kvx_gstat s = dp().gstats(g);
		EXPECT_EQ(s.pkts_out + s.pkts_in + drops(s), 0u) << ip4_str(g);
	}
}

// A mark some earlier run left set on a CPU (a path that named its guest
// and then ended without the one counter bump) is not taken by the next
// packet: every program starts with no guest named.
TEST_F(GuestStatsTest, StaleMarkNotTakenByTheNextPacket)
{
	kvx_gcur stale{};
	stale.slot = dp().gstats_slot(kGuestA) & (KVX_GSTATS_SLOTS - 1);
	stale.flags = KVX_GCUR_F_SET;
	dp().set_gcur(stale);
	run_up(from_uplink(make_udp(kRemote1, 53, kGuestB, 40000)), TC_ACT_SHOT,
	       KVX_R_DROP_TO_SUBNET);
	const kvx_gstat s = dp().gstats(kGuestA);
	EXPECT_EQ(s.pkts_out + s.pkts_in + drops(s), 0u) << "charged to a stale mark";
}

} // namespace
} // namespace kvmxdp::test
