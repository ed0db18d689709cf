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

// The record size the ring gives an IPv4 packet of n bytes: its header and
// the smallest class that holds it.
std::size_t record_size(std::size_t n)
{
	const std::size_t data = n <= KVX_FRAGQ_DATA_S ? KVX_FRAGQ_DATA_S :
				 n <= KVX_FRAGQ_DATA_M ? KVX_FRAGQ_DATA_M :
							 KVX_FRAGQ_DATA;
	return sizeof(kvx_fragq_hdr) + data;
}

// The one record the ring holds: p's IPv4 packet as sent, in direction dir,
// from the guest whose MAC is mac (OUT) or none (IN).
void expect_parked(Datapath &dp, const Packet &p, std::uint8_t dir, const Mac &mac = Mac{})
{
	auto recs = dp.fragq_drain();
	ASSERT_EQ(recs.size(), 1u);
	const Bytes frame = p.build();
	const Bytes ip(frame.begin() + 14, frame.end());
	ASSERT_EQ(recs[0].size(), record_size(ip.size())) << "a record of its size class";
	kvx_fragq_hdr h;
	std::memcpy(&h, recs[0].data(), sizeof(h));
	EXPECT_EQ(h.len, ip.size());
	EXPECT_EQ(h.dir, dir);
	EXPECT_EQ(mac_of(h.mac), mac) << "the share it counts against";
	const Bytes data(recs[0].begin() + sizeof(h), recs[0].begin() + sizeof(h) + h.len);
	EXPECT_EQ(data, ip) << "the record holds the packet's bytes as they came";
}

TEST_F(FragParkTest, GuestFragmentAheadOfItsFirstIsParkedAndDropped)
{
	const Packet later = from_guest(later_fragment(kGuestA, kRemote1, 0x6161));
	run_br(later, TC_ACT_SHOT, KVX_R_FRAG_PARKED);
	expect_parked(dp(), later, KVX_BIND_OUT, kGuestAMac);
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
	expect_parked(dp(), later, KVX_BIND_OUT, kGuestAMac);
}

TEST_F(FragParkTest, FullRingFallsBackToDrop)
{
	// Bounded: the ring holds what its size holds, then the fragments are
	// dropped as before the park (DROP_FRAGMENT), never sent untranslated;
	// unfragmented traffic goes on meanwhile.  (The budget is refilled
	// before each: what limits here is the ring.)
	const std::size_t big = KVX_FRAGQ_DATA - 20;
	const std::size_t fits = KVX_FRAGQ_BYTES / (record_size(KVX_FRAGQ_DATA) + 8);
	const std::size_t sent = fits + 8;
	const Stats before = dp().stats();
	for (std::size_t i = 0; i < sent; i++) {
		Packet later =
			later_fragment(kGuestA, kRemote1, static_cast<std::uint16_t>(0x7000 + i));
		later.payload = pattern(big, 0x5a);
		later = from_guest(later);
		dp().set_fragq_budget(KVX_BIND_OUT, 0);
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
	EXPECT_EQ(delta(KVX_R_FRAG_PARK_RATELIMITED), 0u);
	translate_out(from_guest(make_udp(kGuestA, 40052, kRemote1, 53, 64)));
	EXPECT_EQ(dp().fragq_drain().size(), parked);
	// Drained: room again.
	run_br(from_guest(later_fragment(kGuestA, kRemote1, 0x6666)), TC_ACT_SHOT,
	       KVX_R_FRAG_PARKED);
}

TEST_F(FragParkTest, RecordsAreSizedToTheFragment)
{
	// Three classes: a tiny orphan takes a small record, not a full one.
	const std::size_t sizes[] = {40,  KVX_FRAGQ_DATA_S - 20,     KVX_FRAGQ_DATA_S - 20 + 8,
				     400, KVX_FRAGQ_DATA_M - 20 + 8, KVX_FRAGQ_DATA - 20};
	std::uint16_t id = 0x6800;
	for (std::size_t n : sizes) {
		Packet later = later_fragment(kGuestA, kRemote1, id++);
		later.payload = pattern(n, 0x33);
		later = from_guest(later);
		run_br(later, TC_ACT_SHOT, KVX_R_FRAG_PARKED);
		expect_parked(dp(), later, KVX_BIND_OUT, kGuestAMac);
	}
}

TEST_F(FragParkTest, TinyOrphanFloodLeavesRoomForALegitimateFragment)
{
	// 300 tiny orphans from spoofed sources: as full-size records they
	// were more than the ring holds (~172), and the next fragment found
	// no room.  Sized to the fragment they take 300 small records, and a
	// guest's reordered full-size fragment is parked after them, as is an
	// inbound one.
	const Stats before = dp().stats();
	for (std::uint32_t i = 0; i < 300; i++) {
		Packet orphan = make_ip_proto(0xcb007100 + i, Topology::kUplinkAddr, kProtoUdp, 8);
		orphan.payload = pattern(8, 0x11);
		orphan.df = false;
		orphan.ip_id = static_cast<std::uint16_t>(0x1000 + i);
		orphan.frag_offset = 1;
		orphan.raw_l4 = true;
		RunResult r = dp().run(Prog::UpIngress, from_uplink(orphan).build(),
				       ingress_ifindex(Prog::UpIngress));
		ASSERT_EQ(r.verdict, TC_ACT_OK);
	}
	const Stats mid = dp().stats();
	EXPECT_EQ(mid.by_reason[KVX_R_FRAG_PARKED_HOST].packets -
			  before.by_reason[KVX_R_FRAG_PARKED_HOST].packets,
		  300u);
	Packet legit = later_fragment(kGuestA, kRemote1, 0x6a6a);
	legit.payload = pattern(KVX_FRAGQ_DATA - 20, 0x44);
	legit = from_guest(legit);
	run_br(legit, TC_ACT_SHOT, KVX_R_FRAG_PARKED);
	Packet in = from_uplink(later_fragment(kRemote1, Topology::kUplinkAddr, 0x6b6b));
	run_up(in, TC_ACT_OK, KVX_R_FRAG_PARKED_HOST);
	auto recs = dp().fragq_drain();
	ASSERT_EQ(recs.size(), 302u);
	for (std::size_t i = 0; i < 300; i++)
		EXPECT_EQ(recs[i].size(), sizeof(kvx_fragq_hdr) + KVX_FRAGQ_DATA_S);
	EXPECT_EQ(recs[300].size(), sizeof(kvx_fragq_hdr) + KVX_FRAGQ_DATA);
}

TEST_F(FragParkTest, InboundBudgetSpentLeavesTheGuestsTheirs)
{
	// A spoofed flood from the uplink spends the inbound budget only: an
	// inbound orphan is then not parked (PASS_HOST, as without the park,
	// and FRAG_PARK_RATELIMITED beside it), a guest's still is.
	dp().set_fragq_budget(KVX_BIND_IN, boot_ns() + 3600 * 1000000000ULL);
	const Packet in = from_uplink(later_fragment(kRemote1, Topology::kUplinkAddr, 0x6c6c));
	expect_park_refused(dp(), Prog::UpIngress, in.build(), TC_ACT_OK, KVX_R_PASS_HOST);
	const Packet out = from_guest(later_fragment(kGuestA, kRemote1, 0x6d6d));
	run_br(out, TC_ACT_SHOT, KVX_R_FRAG_PARKED);
	expect_parked(dp(), out, KVX_BIND_OUT, kGuestAMac);

	// And the other way round: a guest's flood does not spend the
	// inbound budget.
	dp().set_fragq_budget(KVX_BIND_IN, 0);
	dp().set_fragq_budget(KVX_BIND_OUT, boot_ns() + 3600 * 1000000000ULL);
	expect_park_refused(dp(), Prog::BrIngress, out.build(), TC_ACT_SHOT, KVX_R_DROP_FRAGMENT);
	run_up(in, TC_ACT_OK, KVX_R_FRAG_PARKED_HOST);
	expect_parked(dp(), in, KVX_BIND_IN);
}

TEST_F(FragParkTest, BudgetAllowsABurstThenLimits)
{
	// A full budget parks a quarter ring's worth of records in a burst,
	// then refuses: full-size records refill at one per ~0.76 ms (2 MB/s),
	// slower than this loop's packets on any machine but a very slow one:
	// what the loop's own duration refilled is allowed on top (a loaded
	// CI machine, sanitizers).
	const std::size_t rec = sizeof(kvx_fragq_hdr) + KVX_FRAGQ_DATA;
	const std::size_t burst = KVX_FRAGQ_BURST_BYTES / rec;
	const std::size_t sent = burst + 60;
	const Stats before = dp().stats();
	const std::uint64_t t0 = boot_ns();
	for (std::uint32_t i = 0; i < sent; i++) {
		Packet orphan = later_fragment(0xcb007100 + i % 7, Topology::kUplinkAddr,
					       static_cast<std::uint16_t>(0x2000 + i));
		orphan.payload = pattern(KVX_FRAGQ_DATA - 20, 0x22);
		RunResult r = dp().run(Prog::UpIngress, from_uplink(orphan).build(),
				       ingress_ifindex(Prog::UpIngress));
		ASSERT_EQ(r.verdict, TC_ACT_OK);
	}
	const std::uint64_t refilled = (boot_ns() - t0) / (rec * KVX_FRAGQ_NS_PER_BYTE);
	const std::size_t parked = dp().fragq_drain().size();
	const Stats s = dp().stats();
	auto delta = [&](kvx_reason r) {
		return s.by_reason[r].packets - before.by_reason[r].packets;
	};
	EXPECT_EQ(delta(KVX_R_FRAG_PARKED_HOST), parked);
	EXPECT_EQ(delta(KVX_R_PASS_HOST), sent - parked);
	EXPECT_EQ(delta(KVX_R_FRAG_PARK_RATELIMITED), sent - parked) << "each one not parked";
	EXPECT_GE(parked, burst);
	EXPECT_LE(parked, burst + refilled + 2) << "the refill is slow";
	if (burst + refilled + 2 < sent) {
		EXPECT_LT(parked, sent) << "some refused";
	}
}

// --- The host's own fragmented datagrams: never through the park ---

TEST_F(FragParkTest, HostsFirstFragmentSendsItsLaterOnesToTheHost)
{
	// A first fragment no guest takes goes to the host and marks its
	// datagram (kvx_fraghost, not the guests' kvx_frag): the later
	// fragments follow it there without a copy into the ring.
	Packet first = from_uplink(make_udp(kRemote1, 5353, Topology::kUplinkAddr, 9999, 64));
	first.mf = true;
	first.df = false;
	first.ip_id = 0x7171;
	run_up(first, TC_ACT_OK, KVX_R_PASS_HOST);
	EXPECT_TRUE(dp().frag_entries().empty()) << "no entry among the guests'";
	auto marks = dp().fraghost_keys();
	ASSERT_EQ(marks.size(), 1u);
	EXPECT_EQ(marks[0].dir, KVX_BIND_IN);
	EXPECT_EQ(marks[0].id, be16(0x7171));
	EXPECT_EQ(marks[0].saddr, be32(kRemote1));
	Packet later = from_uplink(later_fragment(kRemote1, Topology::kUplinkAddr, 0x7171));
	run_up(later, TC_ACT_OK, KVX_R_PASS_HOST);
	run_up(later, TC_ACT_OK, KVX_R_PASS_HOST);
	EXPECT_TRUE(dp().fragq_drain().empty()) << "nothing parked";
	// Another datagram (another id) is still parked: its first may be a
	// guest's.
	later.ip_id = 0x7172;
	run_up(later, TC_ACT_OK, KVX_R_FRAG_PARKED_HOST);
	EXPECT_EQ(dp().fragq_drain().size(), 1u);
}

TEST_F(FragParkTest, HostEntryNeverReplacesAGuestsDatagram)
{
	// A guest's reply datagram: its first fragment made the guest's entry.
	// A stray first fragment with the same key (same addresses, protocol
	// and id, ports no flow has) goes to the host but leaves the entry:
	// the datagram's later fragments still reach the guest.
	const std::uint16_t port =
		translate_out(from_guest(make_udp(kGuestA, 40060, kRemote1, 53)));
	Packet first = reply_to(snat(from_guest(make_udp(kGuestA, 40060, kRemote1, 53)), port));
	first.payload = pattern(64, 0x77);
	first.mf = true;
	first.df = false;
	first.ip_id = 0x7373;
	run_up(first, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(first, kGuestA, 40060));
	Packet stray = from_uplink(make_udp(kRemote1, 53, Topology::kUplinkAddr, 9998, 64));
	stray.mf = true;
	stray.df = false;
	stray.ip_id = 0x7373;
	run_up(stray, TC_ACT_OK, KVX_R_PASS_HOST);
	auto frags = dp().frag_entries();
	ASSERT_EQ(frags.size(), 1u);
	EXPECT_EQ(frags[0].second.addr, be32(kGuestA));
	EXPECT_EQ(dp().fraghost_keys().size(), 1u) << "the stray one marked the host's";
	Packet later = from_uplink(later_fragment(kRemote1, Topology::kUplinkAddr, 0x7373));
	later.ttl = first.ttl;
	run_up(later, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(later, kGuestA, 0));
}

TEST_F(FragParkTest, HostMarksFloodEvictsNoGuestsDatagram)
{
	// A LAN host sends first fragments to the uplink address, each with
	// another id: every one is the host's and marks its datagram.  Three
	// times the guests' table (an LRU): had the marks shared it, the
	// guest's datagram entry below would have been evicted, and its later
	// fragment parked instead of delivered.
	const std::uint16_t port =
		translate_out(from_guest(make_udp(kGuestA, 40070, kRemote1, 53)));
	Packet first = reply_to(snat(from_guest(make_udp(kGuestA, 40070, kRemote1, 53)), port));
	first.payload = pattern(64, 0x55);
	first.mf = true;
	first.df = false;
	first.ip_id = 0x4242;
	run_up(first, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(first, kGuestA, 40070));
	const std::uint32_t flood = 3 * KVX_FRAG_DEFAULT_SIZE;
	Packet mark = from_uplink(make_udp(kRemote2, 7, Topology::kUplinkAddr, 9, 8));
	mark.mf = true;
	mark.df = false;
	for (std::uint32_t i = 0; i < flood; i++) {
		mark.ip_id = static_cast<std::uint16_t>(i);
		const RunResult r =
			dp().run(Prog::UpIngress, mark.build(), ingress_ifindex(Prog::UpIngress));
		ASSERT_EQ(r.verdict, TC_ACT_OK) << "mark " << i;
	}
	// Full (an LRU evicts ahead of its size, a batch at a time).
	const std::size_t marks = dp().fraghost_keys().size();
	EXPECT_GT(marks, std::size_t{KVX_FRAG_DEFAULT_SIZE} * 3 / 4);
	EXPECT_LE(marks, std::size_t{KVX_FRAG_DEFAULT_SIZE});
	auto frags = dp().frag_entries();
	ASSERT_EQ(frags.size(), 1u) << "the guest's datagram is still steered";
	EXPECT_EQ(frags[0].second.addr, be32(kGuestA));
	Packet later = from_uplink(later_fragment(kRemote1, Topology::kUplinkAddr, 0x4242));
	later.ttl = first.ttl;
	run_up(later, TC_ACT_REDIRECT, KVX_R_XLATE_IN, dnat(later, kGuestA, 0));
	EXPECT_TRUE(dp().fragq_drain().empty()) << "nothing parked";
}

} // namespace
} // namespace kvmxdp::test
